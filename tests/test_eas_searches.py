"""Whole EAS searches (Cai et al. 2018) beyond the fake controllers: the real controller, the random baseline.

The real :class:`EasController` (tiny) runs the search, restores exactly mid-episode and samples valid
actions on DAGs; :class:`RandomNet2Net` runs the same budget of random Net2Net actions without a
controller. Trials are trained by the fake trainer of ``_eas_helpers.py`` (no torch training).
"""

from __future__ import annotations

import json
import math

import numpy as np

from _eas_helpers import SEED_ARCH, SMALL, TINY, drive, eas, fake_result, trace
from nni_nas_ext.core import create_morphism, replay
from nni_nas_ext.strategies.eas import EasConfig, EasController, EasSearch, RandomNet2Net


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
