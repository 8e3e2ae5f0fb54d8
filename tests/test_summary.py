"""The one-line summary of an architecture (the portal's `summary` column)."""

from __future__ import annotations

import numpy as np

from nni_nas_ext.core import GraphBuilder, create_morphism, random_chain, summarize
from nni_nas_ext.search_spaces import nash_seed


def test_the_seed_reads_as_its_layers_and_parameters() -> None:
    seed = nash_seed((1, 28, 28), 10, widths=(32, 64, 128))
    assert summarize(seed) == ("conv3x3-32 > maxpool > conv3x3-64 > maxpool > conv3x3-128 > gap > fc-10 | "
                               "94,186 params")
    assert summarize(seed, params=False).endswith("gap > fc-10")


def test_strides_groups_and_merges_are_named() -> None:
    g = GraphBuilder((3, 16, 16), 5)
    a = g.relu(g.bn(g.conv("input", 8, 3, stride=2, padding=1)))
    b = g.conv(a, 8, 3, groups=8, padding=1)
    c = g.conv(a, 8, 1)
    merged = g.add(b, c)
    arch = g.build(g.linear(g.gap(g.concat(merged, a)), 5))
    text = summarize(arch, params=False)
    assert text.startswith("conv3x3-8/s2 > ")
    assert "conv3x3-8/g8" in text and "conv1x1-8" in text and "add(2)" in text and "concat(2)" in text
    assert "bn" not in text.split(" > ") and "relu" not in text.split(" > ")


def test_a_grown_network_says_what_grew() -> None:
    seed = nash_seed((1, 8, 8), 10, widths=(8, 16, 16))
    chain = random_chain(seed, [create_morphism("deepen")], 2, np.random.default_rng(0))
    def layers(arch) -> int:
        return sum(token.startswith(("conv", "fc-")) for token in summarize(arch, params=False).split(" > "))

    assert layers(chain.child) == layers(seed) + 2  # deepen adds a conv (in a conv stage) or an fc (after gap)
    assert summarize(chain.child).endswith(f"| {chain.child.num_parameters():,} params")
