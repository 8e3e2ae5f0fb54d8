"""LEMONADE (strategies/lemonade.py) driven by a fake trainer: the front, inverse-density sampling, compression
children, the budget, failures and the latency objective. The contract every strategy meets (ask/tell to the end,
reproducibility, state round trip) runs it too, in tests/test_nash.py."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.pareto import pareto_front
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.strategies import Budget, LemonadeSearch, trial_costs
from nni_nas_ext.strategies.lemonade_selection import Objectives, inverse_density_choice

SEED_ARCH = nash_seed((1, 8, 8), 10, (8, 16, 16))
SMALL = {"n_initial": 2, "n_generated": 8, "epochs_seed": 2, "epochs_child": 1, "max_children": 8, "max_running": 2,
         "final_front_max": 3, "seed": 0}
COMPRESSIONS = ("remove_layer", "shrink", "remove_skip")


def fake_result(c: Candidate, *, latency: bool = False, seconds_per_epoch: float = 10.0) -> dict[str, Any]:
    """Accuracy saturating in the parameters (so that size and accuracy trade off), noise seeded by the candidate;
    timings as a trial reports them; a latency proportional to the MACs when asked."""
    arch = c.architecture
    noise = np.random.default_rng([int(arch.id, 16), c.serial]).normal(0.0, 0.005)
    acc = float(1.0 - math.exp(-arch.num_parameters() / 3000) + noise)
    train = seconds_per_epoch * c.epochs
    out: dict[str, Any] = {"default": acc, "candidate": c.id, "arch_id": arch.id, "role": c.role,
                           "params": arch.num_parameters(), "flops": arch.num_macs(), "epochs_trained": c.epochs,
                           "timings": {"train": train, "train_setup": 0.0, "total": train + 3.0,
                                       "process_total": train + 5.0}}
    if c.evaluate_test:
        out["test_acc"] = acc - 0.01
    if latency:
        out["latency_ms"] = 1e-5 * arch.num_macs()
    return out


def lemonade(**overrides: Any) -> LemonadeSearch:
    return LemonadeSearch(SEED_ARCH, {**SMALL, **overrides})


def run(strategy: LemonadeSearch, failures: Mapping[str, str] | None = None, latency: bool = False,
        max_rounds: int = 200) -> list[Candidate]:
    """Ask, train (fake) and tell until finished; every candidate in the order asked."""
    asked_all: list[Candidate] = []
    for _ in range(max_rounds):
        if strategy.finished:
            return asked_all
        asked = strategy.ask()
        assert asked, "not finished, nothing running, but ask() returned nothing"
        asked_all += asked
        for c in asked:
            if failures and c.id in failures:
                assert strategy.tell(c.id, None, failure=failures[c.id])
            else:
                assert strategy.tell(c.id, fake_result(c, latency=latency))
    raise AssertionError(f"not finished after {max_rounds} rounds")


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


# ---- the search as a whole -----------------------------------------------------------------------------------


def test_a_run_ends_with_every_network_of_the_front_tested() -> None:
    strategy = lemonade()
    asked = run(strategy)
    summary = strategy.summary()
    assert summary["status"] == "finished" and summary["children"] == 8
    roles = Counter(c.role for c in asked)
    assert roles["seed"] == 1 and roles["child"] == 1 + 8  # the initial population's second network, 8 children
    front = summary["front"]
    assert 1 <= len(front) and all(row["candidate"] in strategy.front() for row in front)
    rows = [[r["objectives"]["val_error"], r["objectives"]["params"]] for r in front]
    assert not any(dominates(a, b) for a in rows for b in rows)  # a front: nobody dominates anybody
    finals = [c for c in asked if c.role in ("final", "seed_final")]
    assert all(c.evaluate_test and c.epochs == 0 and c.train_on == "train" for c in finals)
    tested = {c.parent for c in finals}
    assert len([c for c in finals if c.role == "final"]) == min(len(front), 3)
    assert summary["winner"]["candidate"] in tested and summary["winner"]["test_acc"] is not None
    assert summary["seed"]["test_acc"] is not None  # the start, tested alike
    # the winner is the most accurate network of the front
    assert summary["winner"]["val_acc"] == max(r["val_acc"] for r in front)


def test_the_front_is_the_non_dominated_set_of_all_trained_networks() -> None:
    strategy = lemonade()
    run(strategy)
    trained = [c for c in strategy.candidates if c.role in ("seed", "child")]
    points = [[1 - fake_result(c)["default"], c.architecture.num_parameters()] for c in trained]
    expected = {trained[i].id for i in pareto_front(points)}
    assert set(strategy.front()) == expected


def test_compression_children_are_smaller_and_inherit_their_parents_weights() -> None:
    strategy = lemonade(morphisms=list(COMPRESSIONS), n_initial=1, max_children=6)
    asked = run(strategy)
    children = [c for c in asked if c.role == "child"]
    assert children, strategy.summary()["notes"]
    by_id = {c.id: c for c in strategy.candidates}
    for child in children:
        parent = by_id[child.parent]
        assert child.architecture.lineage is not None
        assert child.architecture.lineage.parent == parent.architecture.id
        assert {s.op for s in child.architecture.lineage.steps} <= set(COMPRESSIONS)
        assert child.architecture.num_parameters() < parent.architecture.num_parameters()


def test_without_inheritance_children_start_fresh_but_finals_test_each_network_itself() -> None:
    strategy = lemonade(inherit_weights=False)
    asked = run(strategy)
    assert all(c.parent is None for c in asked if c.role == "child")
    finals = [c for c in asked if c.role in ("final", "seed_final")]
    assert finals and all(c.parent is not None and c.architecture.id == {x.id: x for x in asked}[c.parent]
                          .architecture.id for c in finals)


def test_epochs_final_trains_the_front_on_train_and_validation_first() -> None:
    strategy = lemonade(epochs_final=2)
    finals = [c for c in run(strategy) if c.role in ("final", "seed_final")]
    assert finals and all(c.epochs == 2 and c.train_on == "train+val" and c.evaluate_test for c in finals)


# ---- selection by inverse density ------------------------------------------------------------------------------


def test_parents_from_sparse_regions_of_the_front_are_sampled_more_often() -> None:
    # nine networks crowd around 10^4 parameters, one stands alone at 10^6
    rng = np.random.default_rng(1)
    front = np.concatenate([4.0 + rng.normal(0, 0.05, (9, 1)), [[6.0]]])
    picks = inverse_density_choice(front, front, 4000, np.random.default_rng(0), replace=True)
    share = np.mean(picks == 9)
    assert share > 0.3  # uniform sampling would give it 0.1
    crowd = Counter(int(p) for p in picks if p != 9)
    assert all(count > 0 for count in crowd.values()) and len(crowd) == 9  # but the crowd is not starved


def test_children_in_sparse_regions_are_accepted_more_often() -> None:
    front = np.array([[4.0], [4.1], [3.9], [4.05], [6.0]])
    children = np.array([[4.0], [4.02], [5.0]])
    rng = np.random.default_rng(0)
    chosen = Counter(int(inverse_density_choice(front, children, 1, rng, replace=False)[0]) for _ in range(2000))
    assert chosen[2] > chosen[0] + chosen[1]  # the child between the crowd and the lone network
    assert sorted(inverse_density_choice(front, children, 10, rng, replace=False).tolist()) == [0, 1, 2]


def test_objectives_are_error_and_cheap_values_and_the_density_lives_in_log10() -> None:
    objectives = Objectives.of([0.1, 0.2, 0.05], [[1000.0], [100.0], [10_000.0]])
    assert objectives.points().tolist() == [[0.1, 1000.0], [0.2, 100.0], [0.05, 10_000.0]]
    assert objectives.front().tolist() == [0, 1, 2]
    assert objectives.log_cheap().ravel().tolist() == pytest.approx([3.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="one row of cheap objectives per error"):
        Objectives.of([0.1], [[1.0], [2.0]])


# ---- budgets, failures --------------------------------------------------------------------------------------


def tell_all(strategy: LemonadeSearch, asked: list[Candidate], **kwargs: Any) -> None:
    for c in asked:
        assert strategy.tell(c.id, fake_result(c, **kwargs))


def test_no_child_is_started_that_cannot_finish_in_the_time_left() -> None:
    strategy = lemonade()
    tell_all(strategy, strategy.ask())  # the initial population, 10 s per epoch
    assert [c.role for c in strategy.ask(Budget(free_slots=1, seconds_left=1e6))] == ["child"]
    tight = strategy.ask(Budget(free_slots=1, seconds_left=5.0))
    assert tight == []  # a child still runs: the final phase waits for it
    assert "fits in the time left" in " ".join(strategy.summary()["notes"])
    running = [c for c in strategy.candidates if c.role == "child" and c.id in strategy.pending]
    tell_all(strategy, running)
    finals = strategy.ask(Budget(free_slots=1, seconds_left=5.0))
    assert finals and {c.role for c in finals} <= {"final", "seed_final"}


@pytest.mark.parametrize("epochs_final", [0, 2])
def test_the_final_trainings_carry_the_time_left_as_their_limit(epochs_final: int) -> None:
    # as NASH's finals do (tests/test_nash_async.py): a final slower than estimated stops at the deadline
    strategy, seconds_left, finals = lemonade(epochs_final=epochs_final, max_children=3), 900.0, []
    while not strategy.finished:
        asked = strategy.ask(Budget(free_slots=1, seconds_left=seconds_left))
        finals += [c for c in asked if c.role in ("final", "seed_final")]
        tell_all(strategy, asked)
        seconds_left -= 30.0
    assert finals and len({c.time_limit for c in finals}) == 1  # proposed together, with the same time left
    assert finals[0].time_limit == pytest.approx(seconds_left + 30.0 - trial_costs.LATENCY)
    assert all(c.time_limit is None for c in strategy.candidates if c.role not in ("final", "seed_final"))
    assert all(c.time_limit is None for c in run(lemonade(epochs_final=epochs_final, max_children=3))
               if c.role in ("final", "seed_final"))  # no time budget, no limit


def test_the_last_trials_are_kept_for_the_final_phase() -> None:
    strategy = lemonade()
    tell_all(strategy, strategy.ask())
    # the front holds 1 or 2 networks, whose tests and the seed's keep 2 or 3 trials: with 2 left, no child
    asked = strategy.ask(Budget(free_slots=1, trials_left=2))
    assert asked and {c.role for c in asked} <= {"final", "seed_final"}
    assert "kept for the final phase" in " ".join(strategy.summary()["notes"])


def test_a_failed_child_never_enters_the_front_and_the_search_goes_on() -> None:
    strategy = lemonade()
    tell_all(strategy, strategy.ask())
    first = strategy.ask()
    assert strategy.tell(first[0].id, None, failure="loss is NaN")
    tell_all(strategy, first[1:])
    assert first[0].id not in strategy.front()
    run(strategy)
    assert strategy.summary()["status"] == "finished"
    assert any(f["candidate"] == first[0].id for f in strategy.summary()["failures"])


def test_an_initial_population_that_fails_ends_the_search_with_the_reasons() -> None:
    strategy = lemonade()
    asked = strategy.ask()
    for c in asked:
        strategy.tell(c.id, None, failure=f"crash of {c.id}")
    summary = strategy.summary()
    assert strategy.finished and summary["status"] == "failed"
    assert "every network of the initial population failed" in summary["reason"]
    assert all(c.id in summary["reason"] for c in asked)


def test_one_surviving_network_of_the_initial_population_is_enough() -> None:
    strategy = lemonade()
    seed, other = strategy.ask()
    strategy.tell(other.id, None, failure="out of memory")
    strategy.tell(seed.id, fake_result(seed))
    assert [c.role for c in strategy.ask()] == ["child", "child"]


# ---- the latency objective ------------------------------------------------------------------------------------


def test_latency_is_measured_for_trained_networks_and_scaled_by_macs_for_children() -> None:
    strategy = lemonade(objectives=["params", "latency_ms"])
    asked = run(strategy, latency=True)
    front = strategy.summary()["front"]
    assert all(r["objectives"]["latency_ms"] == pytest.approx(1e-5 * r["macs"]) for r in front)
    by_id = {c.id: c for c in asked}
    child = next(c for c in asked if c.role == "child" and c.parent is not None)
    parent = by_id[child.parent]  # type: ignore[index]
    measured = 1e-5 * parent.architecture.num_macs()
    estimate = strategy._latency(child.architecture, parent.id)  # noqa: SLF001 - the [dev] rule of the docstring
    assert estimate == pytest.approx(measured * child.architecture.num_macs() / parent.architecture.num_macs())


def test_a_latency_objective_needs_the_trial_to_measure_it() -> None:
    from nni_nas_ext.nni.search import split_settings

    with pytest.raises(ConfigError, match="measure_latency: true"):
        split_settings({"objectives": ["params", "latency_ms"], "dataset": "digits"}, "lemonade")
    search, task, _ = split_settings({"objectives": ["latency_ms"], "measure_latency": True, "dataset": "digits"},
                                     "lemonade")
    assert search.objectives == ("latency_ms",) and task.measure_latency is True  # type: ignore[attr-defined]


@pytest.mark.parametrize(("settings", "message"), [
    ({"objectives": []}, "objectives"),
    ({"objectives": ["size"]}, "size"),
    ({"morphisms": ["deepen", "prune"]}, "prune"),
    ({"n_initial": 0}, "n_initial"),
    ({"epochs_final": -1}, "epochs_final"),
])
def test_settings_errors_name_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        lemonade(**settings)
