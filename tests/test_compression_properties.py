"""Property tests of the compressions: random valid architectures (``_archgen``), random sites and chains.

* every compression at a random site gives a valid, smaller child whose weights are exact slices of the
  parent's (a shrink keeping the top units by its criterion) and that replays bit for bit;
* removing what deepen, add_skip, concat_skip or a replicated branch added gives the parent back exactly;
* random chains that mix morphisms and compressions replay exactly, and preserve the function whenever
  :func:`chain_is_exact` says so.

With ``CI`` set, hypothesis is derandomised so CI runs the same cases every time.
"""

from __future__ import annotations

import pytest

import math
import os

import numpy as np
import torch
from _archgen import distinct_state, random_architecture, random_batch, random_state
from _compression_helpers import check_child, expected_kept
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nni_nas_ext.core import (
    MORPHISMS, AddSkip, Architecture, Branch, ConcatSkip, Deepen, MorphismError, RemoveLayer, RemoveSkip, Shrink,
    build_module, chain_is_exact, preservation_error, random_chain, replay, state_key, step_is_exact,
)

TOLERANCE = 1e-5
EXAMPLES = 100
COMPRESS = [RemoveLayer(), RemoveSkip(), Shrink(), Shrink(criterion="bn_scale", max_steps=2)]
EXACT = [cls() for cls in MORPHISMS.values()]  # every morphism, exact mode (the default)

_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
                     suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@_settings
@given(arch_seed=st.integers(0, 2**32 - 1), site_seed=st.integers(0, 2**32 - 1))
def test_each_compression_gives_a_smaller_child_of_exact_slices(arch_seed: int, site_seed: int) -> None:
    parent = random_architecture(np.random.default_rng(arch_seed))
    state = distinct_state(parent, arch_seed % 10_000)
    before = {k: v.clone() for k, v in state.items()}
    batch = random_batch(parent, arch_seed % 7919)
    rng = np.random.default_rng(site_seed)
    for compression in COMPRESS:
        sites = compression.sites(parent)
        if not sites:
            continue
        result = compression.apply(parent, sites[int(rng.integers(len(sites)))], rng)
        step = result.steps[0]
        assert not step_is_exact(step)
        child_state = check_child(parent, state, result, batch)
        if isinstance(compression, Shrink):
            node = step.site["node"]
            below = [w for w in compression.widths if w < parent.shape(node)[0]]
            assert step.params["width"] in below[-compression.max_steps:]
            kept = expected_kept(parent, state, step)
            assert torch.equal(child_state[state_key(node, "weight")], state[state_key(node, "weight")][kept])
    assert all(torch.equal(before[k], state[k]) for k in state)  # the parent's weights are untouched


@_settings
@given(arch_seed=st.integers(0, 2**32 - 1), seed=st.integers(0, 2**32 - 1))
def test_removals_undo_deepen_skips_and_replicated_branches(arch_seed: int, seed: int) -> None:
    parent = random_architecture(np.random.default_rng(arch_seed))
    state = random_state(parent, arch_seed % 10_000)
    batch = random_batch(parent, arch_seed % 7919)
    rng = np.random.default_rng(seed)
    for grow in (Deepen(), AddSkip(), ConcatSkip(), Branch(mode="replicate")):
        sites = grow.sites(parent)
        if not sites:
            continue
        grown = grow.apply(parent, sites[int(rng.integers(len(sites)))], rng)
        new = [n for n in grown.child.nodes if n.id not in parent]
        if isinstance(grow, Deepen):
            layer = next(n.id for n in new if n.op in ("conv", "linear"))
            back = RemoveLayer().apply(grown.child, {"node": layer}, rng)
        else:
            merge = next(n for n in new if n.op in ("add", "concat"))
            back = RemoveSkip().apply(grown.child, {"merge": merge.id, "source": merge.inputs[1]}, rng)
        what = f"{grown.steps[0].describe()} then {back.steps[0].describe()}"
        assert back.child.with_lineage(None) == parent, what
        restored = back.transform(grown.transform(state, batch), batch)
        assert restored.keys() == state.keys(), what
        assert all(torch.equal(restored[k], state[k]) for k in state), what


@pytest.mark.slow
@_settings
@given(arch_seed=st.integers(0, 2**32 - 1), chain_seed=st.integers(0, 2**32 - 1), length=st.integers(2, 6))
def test_chains_of_morphisms_and_compressions_replay_exactly(arch_seed: int, chain_seed: int, length: int) -> None:
    parent = random_architecture(np.random.default_rng(arch_seed))
    state = random_state(parent, arch_seed % 10_000)
    batch = random_batch(parent, arch_seed % 7919)

    try:
        result = random_chain(parent, EXACT + COMPRESS, length, np.random.default_rng(chain_seed))
    except MorphismError as exc:  # removals can leave e.g. input-gap-linear, to which no operator applies
        assert "applies" in str(exc), exc
        assume(False)
    child_state = result.transform(state, batch)
    build_module(result.child, child_state)  # loads strictly
    error = preservation_error(parent, state, result.child, child_state, batch)
    assert math.isfinite(error.max_abs) and math.isfinite(error.relative), error
    if chain_is_exact(result.steps):
        assert error.relative <= TOLERANCE, [s.describe() for s in result.steps]
    assert chain_is_exact(result.steps) == all(s.op in MORPHISMS for s in result.steps)  # no noise mode here
    restored = Architecture.from_json(result.child.to_json())
    assert restored == result.child
    again = replay(parent, restored.lineage.steps)
    assert again.child == result.child
    again_state = again.transform(state, batch)
    assert again_state.keys() == child_state.keys()
    assert all(torch.equal(again_state[k], child_state[k]) for k in child_state)
