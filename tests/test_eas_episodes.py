"""EAS (Cai et al. 2018) episodes and state, driven by a fake trainer and fake controllers (no torch training).

An episode's roles, counts and parents, the controller's trajectories and rewards, duplicates and the
cache, ties, re-issued and failed candidates, misaddressed results; the state saved mid-episode and
restored. The fake trainer's validation accuracy is a function of the architecture plus noise seeded by
the candidate itself, so results do not depend on the order in which candidates are told; it and the
fake controllers are in ``_eas_helpers.py``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest

from _eas_helpers import (
    SEED_ARCH, SMALL, FakeController, ScriptedController, drive, eas, fake_accuracy, fake_result, trace,
)
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.strategies.eas import DeeperAction, EasSearch, RandomNet2Net, WiderAction


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


@pytest.mark.parametrize("start", ["best", "seed"])
def test_start_seed_keeps_the_seed_as_every_episodes_start_and_the_final_trains_the_best(start: str) -> None:
    search = eas(start=start, episodes=3)
    seed = search.ask()[0]
    search.tell(seed.id, fake_result(seed))
    parents, best_children = [], []
    while not search.finished:
        batch = search.ask()
        if batch[0].role != "child":
            finals = batch
            break
        parents.append({c.parent for c in batch})
        for c in batch:
            search.tell(c.id, fake_result(c))
        best_children.append(search.incumbent.id)
    if start == "seed":
        assert parents == [{seed.id}] * 3
    else:
        assert parents[1:] == [{b} for b in best_children[:-1]]
    assert finals[0].role == "final" and finals[0].parent == search.incumbent.id  # the best found, either way


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
