"""EAS (Cai et al. 2018): how an architecture reads as EAS's layer sequence, and the actions as morphisms.

The layer tokens, the wider mask and the deeper blocks of seed networks and of DAGs with skips; the
controller's wider and deeper actions applied as function-preserving morphisms whose lineage replays;
max_width and impossible actions. Driven by the fake trainer and the fake controllers of
``_eas_helpers.py`` (no torch training).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _eas_helpers import SEED_ARCH, SMALL, FakeController, ScriptedController, drive, eas, fake_result
from nni_nas_ext.core import build_module, create_morphism, max_output_difference, replay
from nni_nas_ext.core.morphisms import next_width
from nni_nas_ext.search_spaces import plain_cnn
from nni_nas_ext.strategies.eas import (
    WiderAction, deeper_blocks, layer_sequence, tokens, wider_mask, widths_up_to,
)


# --------------------------------------------------------------------------------------------------
# Architecture -> EAS state
# --------------------------------------------------------------------------------------------------


def test_tokens_mask_blocks_of_the_nash_seed() -> None:
    seq = layer_sequence(SEED_ARCH)
    assert seq.tokens == ("conv-4-3", "pool", "conv-8-3", "pool", "conv-8-3", "pool", "fc-10")
    assert seq.nodes == ("conv1", "maxpool1", "conv2", "maxpool2", "conv3", "gap1", "linear1")
    # pools and the output layer masked
    assert seq.wider_mask == (True, False, True, False, True, False, False)
    # one block per resolution (8x8, 4x4, 2x2, vectors); the output layer cannot be deepened after
    assert seq.blocks == ((0,), (2,), (4,), ())
    assert dict(seq.deepen_sites) == {0: "relu1", 2: "relu2", 4: "relu3"}
    assert tokens(SEED_ARCH) == list(seq.tokens)
    assert wider_mask(SEED_ARCH) == list(seq.wider_mask)
    assert deeper_blocks(SEED_ARCH) == [[0], [2], [4], []]


def test_tokens_mask_blocks_of_a_plain_cnn_and_max_width() -> None:
    arch = plain_cnn(6, (3, 16, 16), 10, width=8, stages=2)
    seq = layer_sequence(arch)
    assert seq.tokens == ("conv-8-3",) * 3 + ("pool",) + ("conv-16-3",) * 2 + ("pool", "fc-10")
    assert seq.blocks == ((0, 1, 2), (4, 5), ())
    assert seq.wider_mask == (True, True, True, False, True, True, False, False)
    # layers at max_width are masked: 16 is the end of the ladder cut at 16 (and at 20)
    for max_width in (16, 20):
        assert wider_mask(arch, max_width) == [True, True, True, False, False, False, False, False]
    assert widths_up_to(20) == (4, 8, 16)
    with pytest.raises(ValueError, match="max_width must be at least"):
        widths_up_to(3)


def test_dags_from_nash_skips_are_read_as_their_layers() -> None:
    rng = np.random.default_rng(0)
    site = {"source": "relu1", "target": "relu2"}  # 8x8 -> 4x4: an average pool on the skip
    added = create_morphism("add_skip").apply(SEED_ARCH, site, rng).child
    seq = layer_sequence(added)
    # the skip's pool and 1x1 projection are tokens; the add is not
    assert seq.tokens == ("conv-4-3", "pool", "conv-8-3", "pool", "conv-8-1", "pool", "conv-8-3", "pool", "fc-10")
    # blocks follow resolution: the skip's pool does not split the 4x4 block; the projection has no ReLU
    assert seq.blocks == ((0,), (2,), (6,), ())
    assert seq.wider_mask[4] is True  # the projection widens (with conv2, which the add couples it to)
    concatenated = create_morphism("concat_skip").apply(SEED_ARCH, site, rng).child
    seq = layer_sequence(concatenated)
    assert seq.tokens == ("conv-4-3", "pool", "conv-8-3", "pool", "pool", "conv-8-3", "pool", "fc-10")
    assert seq.blocks == ((0,), (2,), (5,), ())


def test_a_layer_whose_activation_follows_a_merge_is_not_deepened_after() -> None:
    site = {"source": "maxpool1", "target": "bn2"}
    morphism = create_morphism("add_skip")
    if morphism.check(SEED_ARCH, site) is not None:
        pytest.skip(f"add_skip does not target a BatchNorm here: {morphism.check(SEED_ARCH, site)}")
    child = morphism.apply(SEED_ARCH, site, np.random.default_rng(0)).child  # conv2-bn2-add-relu2
    seq = layer_sequence(child)
    assert seq.nodes.index("conv2") not in {i for b in seq.blocks for i in b}


# --------------------------------------------------------------------------------------------------
# Actions as morphisms
# --------------------------------------------------------------------------------------------------


def test_scripted_actions_give_the_expected_child_whose_lineage_replays() -> None:
    search = eas(ScriptedController(), episodes=1, children_per_episode=1, n_deeper=1, n_wider=1)
    children = [c for c in drive(search) if c.role == "child"]
    assert len(children) == 1
    child = children[0].architecture
    seq = layer_sequence(child)
    # deeper(block 0, after conv1, kernel 3): an identity conv-BN-ReLU after relu1 (conv-4-3); then
    # wider on the first maskable layer, conv1: 4 -> 8, the next width of the ladder
    assert seq.tokens[:3] == ("conv-8-3", "conv-4-3", "pool")
    assert [s.op for s in child.lineage.steps] == ["deepen", "widen"]
    assert child.lineage.steps[0].to_dict() == {"op": "deepen", "site": {"node": "relu1"}, "params": {"kernel": 3}}
    assert child.lineage.steps[1].params["width"] == next_width(4) == 8
    assert child.lineage.parent == SEED_ARCH.id
    assert replay(SEED_ARCH, child.lineage.steps).child.id == child.id


@pytest.mark.parametrize("mode", ["exact", "noise"])
def test_every_child_replays_from_its_parent(mode: str) -> None:
    search = eas(morphism_mode=mode, n_wider=2)
    asked = drive(search)
    by_id = {c.id: c for c in asked}
    children = [c for c in asked if c.role == "child"]
    assert children
    for c in children:
        parent = by_id[c.parent].architecture
        lineage = c.architecture.lineage
        assert lineage is not None and lineage.parent == parent.id
        assert replay(parent, lineage.steps).child.id == c.architecture.id
        assert sum(s.op == "deepen" for s in lineage.steps) == SMALL["n_deeper"]
        assert len(tokens(c.architecture)) == len(tokens(parent)) + SMALL["n_deeper"]
        noisy = [s for s in lineage.steps if s.op == "widen" and "noise" in s.params]
        assert bool(noisy) == (mode == "noise") or not any(s.op == "widen" for s in lineage.steps)


def test_children_preserve_the_start_nets_function_in_exact_mode() -> None:
    search = eas(morphism_mode="exact", episodes=1, children_per_episode=2, n_deeper=2, n_wider=2)
    seed = search.ask()[0]
    search.tell(seed.id, fake_result(seed))
    torch.manual_seed(0)
    parent = build_module(SEED_ARCH).eval()
    batch = torch.randn(8, *SEED_ARCH.input_shape)
    for c in search.ask():
        morphed = replay(SEED_ARCH, c.architecture.lineage.steps)
        state = morphed.transform(parent.state_dict(), batch)
        assert max_output_difference(SEED_ARCH, parent.state_dict(), morphed.child, state, batch) < 1e-5


def test_a_wider_action_widens_every_chosen_layer_to_the_next_width() -> None:
    class WidenAll(FakeController):
        def wider(self, tokens, mask, generator):  # type: ignore[no-untyped-def]
            return WiderAction(tuple(mask))

    search = eas(WidenAll(), episodes=1, children_per_episode=1, n_deeper=0, n_wider=2)
    child = [c for c in drive(search) if c.role == "child"][0].architecture
    before = {n: SEED_ARCH.shape(n)[0] for n in ("conv1", "conv2", "conv3")}
    after = {n: child.shape(n)[0] for n in before}
    assert after == {n: next_width(next_width(w)) for n, w in before.items()} == {"conv1": 16, "conv2": 32,
                                                                                  "conv3": 32}
    # the output layer is never widened
    assert child.shape("linear1") == (10,)


def test_max_width_stops_widening() -> None:
    class WidenAll(FakeController):
        def wider(self, tokens, mask, generator):  # type: ignore[no-untyped-def]
            self.calls.append(("wider", (tuple(tokens), tuple(mask))))
            return WiderAction(tuple(mask))

    controller = WidenAll()
    search = eas(controller, episodes=1, children_per_episode=1, n_deeper=0, n_wider=3, max_width=8)
    child = [c for c in drive(search) if c.role == "child"][0].architecture
    assert max(child.shape(n)[0] for n in ("conv1", "conv2", "conv3")) == 8
    # once nothing can be widened the action is skipped without asking the controller
    assert len(controller.calls) == 1
    notes = search.summary()["history"][0]["children"][0]["notes"]
    assert notes == ["action 1 (wider) skipped: no layer can be widened",
                     "action 2 (wider) skipped: no layer can be widened"]


def test_an_impossible_controller_action_is_refused() -> None:
    class Rogue(FakeController):
        def wider(self, tokens, mask, generator):  # type: ignore[no-untyped-def]
            return WiderAction((True,) * len(tokens))  # widens pools and the output layer

    search = eas(Rogue(), n_deeper=0, n_wider=1)
    seed = search.ask()[0]
    with pytest.raises(ValueError, match="cannot widen masked layers"):
        search.tell(seed.id, fake_result(seed))  # the first episode is sampled when the seed reports
    assert search.candidates == [seed]  # nothing was proposed
