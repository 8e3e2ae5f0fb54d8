"""EAS (Cai et al. 2018) and its random baseline driven by a fake trainer (no torch training).

The fake trainer's validation accuracy is a function of the architecture (more parameters score higher)
plus noise drawn from a generator seeded by the candidate itself, so results do not depend on the order
in which candidates are told. Most tests use small fake controllers (recording, scripted); the real
:class:`EasController` runs the whole search in a few of them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import pytest
import torch

from nni_nas_ext.core import build_module, create_morphism, max_output_difference, replay
from nni_nas_ext.core.config import ConfigError, describe_config, parse_config
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.morphisms import WIDTHS, next_width
from nni_nas_ext.search_spaces import nash_seed, plain_cnn
from nni_nas_ext.strategies import SearchStrategy
from nni_nas_ext.strategies.eas import (
    ControllerConfig, DeeperAction, EasConfig, EasController, EasSearch, RandomNet2Net, Trajectory, WiderAction,
    deeper_blocks, layer_sequence, tokens, wider_mask, widths_up_to,
)

SEED_ARCH = nash_seed((1, 8, 8), 10, (4, 8, 8))
SMALL = {"wider_first": False, "episodes": 2, "children_per_episode": 3, "n_deeper": 2, "n_wider": 1, "epochs": 3,
         "epochs_start": 5, "epochs_final": 7, "max_width": 64, "seed": 0}
#: A tiny controller, to keep the real one fast.
TINY = {"controller_embedding_dim": 4, "controller_hidden_size": 8, "controller_vocab_size": 32}

Result = Optional[Mapping[str, Any]]


def fake_accuracy(c: Candidate, seed: int = 0) -> float:
    """Saturating in the parameter count, plus noise seeded by the candidate itself."""
    noise = np.random.default_rng([seed, int(c.architecture.id, 16), c.serial]).normal(0.0, 0.01)
    return float(1.0 - math.exp(-c.architecture.num_parameters() / 5000) + noise)


def fake_result(c: Candidate) -> dict[str, Any]:
    acc = fake_accuracy(c)
    out = {"default": acc, "candidate": c.id, "role": c.role, "epochs": c.epochs}
    if c.evaluate_test:
        out["test_acc"] = acc - 0.02
    return out


def drive(strategy: SearchStrategy, result: Callable[[Candidate], Any] = fake_result,
          max_rounds: int = 100, stop_after: int | None = None) -> list[Candidate]:
    """Ask, train (fake) and tell until finished (or ``stop_after`` tells); every candidate asked, in order."""
    asked_all: list[Candidate] = []
    told = 0
    for _ in range(max_rounds):
        if strategy.finished:
            return asked_all
        asked = strategy.ask()
        assert asked, "not finished, nothing pending, but ask() returned nothing"
        asked_all += asked
        for c in asked:
            if stop_after is not None and told >= stop_after:
                return asked_all
            r = result(c)
            if isinstance(r, str):
                assert strategy.tell(c.id, None, failure=r) is True
            else:
                assert strategy.tell(c.id, r) is True
            told += 1
    raise AssertionError(f"not finished after {max_rounds} rounds")


def trace(candidates: Sequence[Candidate]) -> list[tuple]:
    return [(c.id, c.parent, c.role, c.step, c.epochs, c.train_on) for c in candidates]


class FakeController:
    """The EasController interface: uniform choices from the given generator; records every call."""

    def __init__(self, kernels: Sequence[int] = (1, 3, 5)) -> None:
        self.kernels = tuple(kernels)
        self.calls: list[tuple[str, Any]] = []
        self.updates: list[tuple[list[Trajectory], list[float]]] = []

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction:
        self.calls.append(("wider", (tuple(tokens), tuple(mask))))
        coins = torch.rand(len(tokens), generator=generator).tolist()
        return WiderAction(tuple(bool(m and p < 0.5) for m, p in zip(mask, coins)))

    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]], generator: torch.Generator
               ) -> DeeperAction:
        self.calls.append(("deeper", (tuple(tokens), tuple(tuple(b) for b in blocks))))
        usable = [k for k, b in enumerate(blocks) if b]
        block = usable[int(torch.randint(len(usable), (1,), generator=generator))]
        layer = blocks[block][int(torch.randint(len(blocks[block]), (1,), generator=generator))]
        kernel = self.kernels[int(torch.randint(len(self.kernels), (1,), generator=generator))]
        return DeeperAction(block, layer, kernel)

    def update(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> dict[str, float]:
        self.updates.append((list(trajectories), list(rewards)))
        return {"updates": float(len(self.updates)), "mean_accuracy": float(np.mean(rewards))}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": [[[t.to_dict() for t in ts], rs] for ts, rs in self.updates]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = [([Trajectory.from_dict(t) for t in ts], list(rs)) for ts, rs in state["updates"]]


class ScriptedController(FakeController):
    """Always the same decisions: widen the first maskable layer; deepen after the first listed layer."""

    def __init__(self, *, widen: bool = True) -> None:
        super().__init__()
        self.widen = widen

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction:
        self.calls.append(("wider", (tuple(tokens), tuple(mask))))
        first = mask.index(True) if self.widen else -1
        return WiderAction(tuple(i == first for i in range(len(tokens))))

    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]], generator: torch.Generator
               ) -> DeeperAction:
        self.calls.append(("deeper", (tuple(tokens), tuple(tuple(b) for b in blocks))))
        block = next(k for k, b in enumerate(blocks) if b)
        return DeeperAction(block, blocks[block][0], 3)


def eas(controller: Any = None, **overrides: Any) -> EasSearch:
    return EasSearch(SEED_ARCH, {**SMALL, **overrides},
                     controller=FakeController() if controller is None else controller)


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


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------


def test_episode_structure_roles_counts_and_parents() -> None:
    search = eas()
    seed_round = search.ask()
    assert [(c.role, c.step, c.parent, c.epochs) for c in seed_round] == [("seed", 0, None, 5)]
    assert search.ask() == []  # nothing new while the seed trains
    search.tell(seed_round[0].id, fake_result(seed_round[0]))
    starts = [seed_round[0].id]
    for episode in (1, 2):
        children = search.ask()
        assert 1 <= len(children) <= SMALL["children_per_episode"]
        assert {(c.role, c.step, c.epochs, c.train_on, c.evaluate_test) for c in children} == \
            {("child", episode, 3, "train", False)}
        # every child starts from the start net: the best so far
        assert {c.parent for c in children} == {starts[-1]} == {search.incumbent.id}
        for c in children[:-1]:
            search.tell(c.id, fake_result(c))
            assert search.ask() == []  # the episode waits for all its children
        search.tell(children[-1].id, fake_result(children[-1]))
        best = max([search.incumbent, *children], key=lambda c: fake_accuracy(c))
        assert search.incumbent.id == best.id
        starts.append(best.id)
    finals = search.ask()
    assert [(c.role, c.parent, c.step, c.epochs, c.train_on, c.evaluate_test) for c in finals] == [
        ("final", starts[-1], 3, 7, "train+val", True), ("seed_final", seed_round[0].id, 3, 7, "train+val", True)]
    assert finals[0].architecture.lineage is None
    for c in finals:
        search.tell(c.id, fake_result(c))
    assert search.finished and search.ask() == []
    summary = json.loads(json.dumps(search.summary()))
    assert summary["status"] == "finished" and summary["strategy"] == "eas"
    assert summary["winner"]["candidate"] == starts[-1]
    assert summary["winner"]["test_acc"] == pytest.approx(fake_accuracy(finals[0]) - 0.02)
    assert summary["seed"]["test_acc"] == pytest.approx(fake_accuracy(finals[1]) - 0.02)
    assert [h["episode"] for h in summary["history"]] == [1, 2]
    assert [h["start"] for h in summary["history"]] == starts[:2]
    assert all(len(h["children"]) == 3 and len(h["rewards"]) == 3 for h in summary["history"])
    if summary["winner"]["candidate"] != summary["seed"]["candidate"]:
        assert summary["winner"]["lineage"] and all(isinstance(d, str) for d in summary["winner"]["lineage"])


def test_the_controller_gets_every_episodes_trajectories_and_rewards() -> None:
    controller = FakeController()
    search = eas(controller)
    drive(search)
    history = search.summary()["history"]
    assert len(controller.updates) == SMALL["episodes"]
    for (trajectories, rewards), episode in zip(controller.updates, history):
        assert len(trajectories) == len(rewards) == SMALL["children_per_episode"]
        # rewards: validation accuracies of the children (cached ones included), in the order sampled
        expected = [min(max(c["val_acc"], 0.0), 1.0) for c in episode["children"]]
        assert rewards == pytest.approx(expected) and episode["rewards"] == rewards
        for t in trajectories:  # deeper actions first (n_deeper = 2), then wider (n_wider = 1)
            assert [type(s.action) for s in t.steps] == [DeeperAction, DeeperAction, WiderAction]
        assert episode["controller"] == {"updates": float(history.index(episode) + 1),
                                         "mean_accuracy": pytest.approx(np.mean(rewards))}


def test_wider_first_applies_the_wider_actions_first() -> None:
    controller = FakeController()
    drive(eas(controller, wider_first=True, episodes=1))
    for t in controller.updates[0][0]:
        assert [type(s.action) for s in t.steps] == [WiderAction, DeeperAction, DeeperAction]


def test_a_duplicate_architecture_is_trained_once_and_still_rewarded() -> None:
    # the same actions every time: the 3 children of an episode are one architecture
    controller = ScriptedController()
    search = eas(controller, episodes=3)
    asked = drive(search)
    children = [c for c in asked if c.role == "child"]
    trained = [c.architecture.id for c in asked if c.role in ("seed", "child")]
    assert len(trained) == len(set(trained)) == 1 + 3  # the seed and one child per episode
    summary = search.summary()
    assert summary["cache_hits"] == 3 * 2
    for episode, (_, rewards) in zip(summary["history"], controller.updates):
        first, *twins = episode["children"]
        assert first["candidate"] is not None and first["cached_from"] is None
        assert all(t["candidate"] is None and t["cached_from"] == first["candidate"] for t in twins)
        assert rewards == [pytest.approx(first["val_acc"])] * 3
    assert len(children) == 3


def test_an_episode_of_cached_children_updates_at_once() -> None:
    # no deeper action and a wider action that widens nothing: every child is the start net itself
    controller = ScriptedController(widen=False)
    search = eas(controller, n_deeper=0, n_wider=1, episodes=2)
    asked = drive(search)
    assert [c.role for c in asked] == ["seed", "final", "seed_final"]
    seed_acc = fake_accuracy(asked[0])
    assert [r for _, r in controller.updates] == [[pytest.approx(seed_acc)] * 3] * 2
    assert search.summary()["winner"]["candidate"] == asked[0].id


def test_ties_keep_the_net_found_first() -> None:
    search = eas()
    asked = drive(search, lambda c: {"default": 0.5, "candidate": c.id})
    seed = asked[0]
    assert {c.parent for c in asked if c.role == "child"} == {seed.id}  # every episode starts from the seed
    assert search.summary()["winner"]["candidate"] == seed.id
    assert [c.parent for c in asked if c.role == "final"] == [seed.id]


def test_pending_candidates_can_be_reissued() -> None:
    search = eas()
    seed = search.ask()[0]
    search.tell(seed.id, fake_result(seed))
    children = search.ask()
    search.tell(children[0].id, fake_result(children[0]))
    assert search.pending == [c.id for c in children[1:]]
    assert search.reissue_pending() == [c.id for c in children[1:]]
    assert search.pending == []  # handed out again at the next ask
    assert [c.id for c in search.ask()] == [c.id for c in children[1:]]


def test_failed_children_get_reward_zero_and_are_not_retried() -> None:
    controller = ScriptedController()
    search = eas(controller, episodes=2)

    def result(c: Candidate) -> Any:
        return "CUDA out of memory" if c.role == "child" else fake_result(c)

    asked = drive(search, result)
    # episode 1's child failed: episode 2 starts from the seed again, draws the same child, and does not
    # train it again (a failure is cached)
    assert [c.role for c in asked] == ["seed", "child", "final", "seed_final"]
    assert [r for _, r in controller.updates] == [[0.0] * 3, [0.0] * 3]
    summary = search.summary()
    assert summary["winner"]["candidate"] == asked[0].id
    assert summary["failures"] == [{"candidate": asked[1].id, "role": "child", "step": 1,
                                    "reason": "CUDA out of memory"}]
    assert summary["history"][0]["children"][0]["failed"] == "CUDA out of memory"


def test_a_failed_seed_stops_the_search() -> None:
    search = eas()
    seed = search.ask()[0]
    assert search.tell(seed.id, {"default": 0.0, "candidate": seed.id, "failed": "NaN loss"})
    assert search.finished and search.ask() == []
    summary = search.summary()
    assert summary["status"] == "failed" and "NaN loss" in summary["reason"]
    assert summary["winner"] is None


def test_tell_ignores_unknown_duplicate_and_misaddressed_results(caplog: pytest.LogCaptureFixture) -> None:
    search = eas()
    seed = search.ask()[0]
    with caplog.at_level(logging.WARNING):
        assert search.tell("0123456789abcdef-0042", {"default": 0.5}) is False
        assert search.tell(seed.id, {"default": 0.5, "candidate": "0123456789abcdef-0042"}) is False
        assert search.tell(seed.id, fake_result(seed)) is True
        assert search.tell(seed.id, fake_result(seed)) is False
    assert "unknown candidate" in caplog.text and "second result" in caplog.text
    assert len(search.ask()) >= 1


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_after", [2, 3, 8])
def test_state_dict_round_trip_mid_episode_continues_identically(stop_after: int) -> None:
    reference = eas()
    full = drive(reference)

    first = eas()
    part = drive(first, stop_after=stop_after)
    state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
    restored = EasSearch.from_state_dict(state, controller=FakeController())
    assert restored.pending == first.pending
    pending = [c for c in part if c.id in set(first.pending)]
    for c in pending:  # the trials that were running report to the restored strategy
        assert restored.tell(c.id, fake_result(c))
    rest = drive(restored)
    assert trace(part + rest) == trace(full)
    assert [c.architecture.id for c in part + rest] == [c.architecture.id for c in full]
    assert restored.summary() == reference.summary()
    assert json.dumps(restored.state_dict(), sort_keys=True) == json.dumps(reference.state_dict(), sort_keys=True)


def test_state_dict_is_refused_for_another_config_or_kind() -> None:
    state = eas().state_dict()
    with pytest.raises(ValueError, match=r"another configuration \(keys \['episodes'\] differ\)"):
        eas(episodes=5).load_state_dict(state)
    with pytest.raises(ValueError, match="not a net2net_random state"):
        RandomNet2Net(SEED_ARCH, SMALL).load_state_dict(state)
    with pytest.raises(ValueError, match="malformed eas state"):
        eas().load_state_dict({k: v for k, v in state.items() if k != "cache"})


# --------------------------------------------------------------------------------------------------
# The real controller
# --------------------------------------------------------------------------------------------------


def test_the_real_controller_runs_the_search_and_restores_exactly() -> None:
    config = {**SMALL, **TINY}
    reference = EasSearch(SEED_ARCH, config)
    assert isinstance(reference.controller, EasController)
    assert reference.controller.config == EasConfig(**config).controller_config()
    full = drive(reference)
    assert reference.controller.updates == SMALL["episodes"]
    stats = [h["controller"] for h in reference.summary()["history"]]
    assert [s["updates"] for s in stats] == [1.0, 2.0] and all(math.isfinite(s["loss"]) for s in stats)

    first = EasSearch(SEED_ARCH, config)
    part = drive(first, stop_after=5)  # the seed, episode 1 (3 children at most) and part of episode 2
    restored = EasSearch.from_state_dict(json.loads(json.dumps(first.state_dict())))
    for c in part:
        if c.id in set(first.pending):
            restored.tell(c.id, fake_result(c))
    rest = drive(restored)
    assert trace(part + rest) == trace(full)
    assert restored.summary() == reference.summary()
    assert restored.controller.state_dict() == reference.controller.state_dict()


def test_the_real_controller_samples_valid_actions_on_dags() -> None:
    rng = np.random.default_rng(1)
    arch = create_morphism("add_skip").apply(SEED_ARCH, {"source": "relu1", "target": "relu2"}, rng).child
    search = EasSearch(arch, {**SMALL, **TINY, "episodes": 1})
    asked = drive(search)
    for c in asked:
        if c.role == "child":
            parent = arch
            assert replay(parent, c.architecture.lineage.steps).child.id == c.architecture.id


# --------------------------------------------------------------------------------------------------
# The random baseline
# --------------------------------------------------------------------------------------------------


def test_random_net2net_runs_the_same_budget_without_a_controller() -> None:
    random_search = RandomNet2Net(SEED_ARCH, {**SMALL, "controller_lr": 0.5})  # controller keys are ignored
    asked = drive(random_search)
    summary = random_search.summary()
    assert summary["strategy"] == "net2net_random" and summary["status"] == "finished"
    assert [h["controller"] for h in summary["history"]] == [None, None]
    assert summary["n_children"] == SMALL["episodes"] * SMALL["children_per_episode"]
    eas_summary = eas().summary()  # same structure of episodes
    assert {k for k in summary} == {k for k in eas_summary}
    roles = [c.role for c in asked]
    assert roles[0] == "seed" and roles[-2:] == ["final", "seed_final"]
    assert 1 <= roles.count("child") <= SMALL["episodes"] * SMALL["children_per_episode"]
    for c in asked:
        if c.role == "child":
            steps = c.architecture.lineage.steps
            assert sum(s.op == "deepen" for s in steps) == SMALL["n_deeper"]
            assert {s.params.get("kernel") for s in steps if s.op == "deepen"} <= {1, 3, 5}
    # reproducible from the seed, and restored exactly mid-episode
    assert trace(drive(RandomNet2Net(SEED_ARCH, SMALL))) == trace(asked)
    first = RandomNet2Net(SEED_ARCH, SMALL)
    part = drive(first, stop_after=3)
    restored = RandomNet2Net.from_state_dict(json.loads(json.dumps(first.state_dict())))
    for c in part:
        if c.id in set(first.pending):
            restored.tell(c.id, fake_result(c))
    assert trace(part + drive(restored)) == trace(drive(RandomNet2Net(SEED_ARCH, SMALL)))


def test_different_seeds_give_different_searches() -> None:
    a = trace(drive(RandomNet2Net(SEED_ARCH, {**SMALL, "seed": 1})))
    b = trace(drive(RandomNet2Net(SEED_ARCH, {**SMALL, "seed": 2})))
    assert a != b


# --------------------------------------------------------------------------------------------------
# Configuration and registry
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mapping", "message"), [
    ({"n_deeper": 0, "n_wider": 0}, r"n_deeper \+ n_wider >= 1 must hold .* n_deeper=0, n_wider=0"),
    ({"kernels": [1, 2]}, r"'kernels' must hold odd sizes only .* even \[2\]"),
    ({"children_per_episode": 0}, r"'children_per_episode' must be int in \[1, 10000\], but got 0"),
    ({"max_width": 2}, rf"'max_width' must be int in \[{WIDTHS[0]}, {WIDTHS[-1]}\], but got 2"),
    ({"controller_lr": 2.0}, r"'controller_lr' must be float in \[0, 1\], but got 2.0"),
    ({"morphism_mode": "noisy"}, r"did you mean 'noise'"),
    ({"controler_lr": 0.1}, r"unknown key 'controler_lr'; did you mean 'controller_lr'"),
])
def test_config_validation_messages(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(EasConfig, mapping)


def test_config_defaults_and_the_controller_config() -> None:
    config = EasConfig()
    controller = config.controller_config()
    assert controller == ControllerConfig(kernels=(1, 3, 5), seed=0)  # the paper's controller
    custom = EasConfig(controller_hidden_size=8, controller_lr=0.01, kernels=(3,), seed=4).controller_config()
    assert (custom.hidden_size, custom.lr, custom.kernels, custom.seed) == (8, 0.01, (3,), 4)
    docs = {row.name: row.doc for row in describe_config(EasConfig)}
    assert "paper: 10" in docs["children_per_episode"] and "paper: 0.002" in docs["controller_lr"]


def test_config_keys_do_not_collide_with_the_trial_and_seed_settings() -> None:
    from nni_nas_ext.nni.search import SeedConfig
    from nni_nas_ext.trial_code.trial import TaskConfig

    keys = {f.name for f in dataclasses.fields(EasConfig)}
    others = {f.name for cls in (TaskConfig, SeedConfig) for f in dataclasses.fields(cls)}
    assert keys & others == {"seed"}  # shared on purpose, as NASH's


def test_registry_entries_follow_the_strategy_protocol() -> None:
    from nni_nas_ext.strategies import STRATEGIES

    eas_strategies = {k: v for k, v in STRATEGIES.items() if k in ("eas", "net2net_random")}
    assert len(eas_strategies) == 2
    for name, (config_cls, strategy_cls) in eas_strategies.items():
        assert config_cls is EasConfig
        strategy = strategy_cls(SEED_ARCH, parse_config(config_cls, {**SMALL, **TINY}))
        assert isinstance(strategy, SearchStrategy)
        assert strategy.summary()["strategy"] == name
        assert json.loads(json.dumps(strategy.state_dict()))["format"] == name
    with pytest.raises(TypeError, match="seed_architecture must be an Architecture"):
        RandomNet2Net("nash")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be an EasConfig or a mapping"):
        RandomNet2Net(SEED_ARCH, 3)  # type: ignore[arg-type]
