"""Asynchronous, budget-aware NASH on a fake clock: busy slots, the budget guard, the final phase, state."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.strategies import AsyncHillClimbing, Budget, create_strategy, trial_costs
from test_nash import SEED_ARCH, fake_accuracy

CONFIG = {"n_morphisms": 2, "epochs_seed": 4, "epochs_neighbour": 2, "epochs_final": 6, "n_steps": 1000,
          "n_neighbours": 3, "seed": 0}
OVERHEAD = 3.0  # seconds of a fake trial outside its epochs


def seconds_of(c: Candidate) -> float:
    """A fake trial's wall time: overhead + epochs x cost of an epoch (proportional to MACs; train+val 1.25x)."""
    per_epoch = 2.0 * c.architecture.num_macs() / SEED_ARCH.num_macs()
    return OVERHEAD + c.epochs * per_epoch * (1.25 if c.train_on == "train+val" else 1.0)


def result_of(c: Candidate, seconds: float) -> dict[str, Any]:
    acc = fake_accuracy(c) + 0.002 * c.serial  # later candidates trained longer: a little better
    out = {"default": acc, "candidate": c.id, "role": c.role, "epochs": c.epochs,
           "timings": {"train": seconds - OVERHEAD, "train_setup": 0.0, "process_total": seconds}}
    if c.evaluate_test:
        out["test_acc"] = acc - 0.01
    return out


def full_trial(c: Candidate) -> tuple[float, dict[str, Any]]:
    """A fake trial that trains every epoch: its wall time and its result."""
    return seconds_of(c), result_of(c, seconds_of(c))


def simulate(config: dict[str, Any], seconds: float | None, slots: int = 2,
             trial: Callable[[Candidate], tuple[float, dict[str, Any]]] = full_trial) -> dict[str, Any]:
    """Run the strategy on ``slots`` fake workers against a fake clock, as the NNI adapter does: whenever a
    slot is free, ask with one free slot and the time left; ``trial`` gives a candidate's wall time and
    result. Returns the timeline (``starts``: start, end and candidate of every trial)."""
    strategy = AsyncHillClimbing(SEED_ARCH, config)
    now, running, starts = 0.0, [], []
    stopped_at = None
    for _ in range(10_000):
        if strategy.finished:
            break
        while len(running) < slots:
            left = None if seconds is None else seconds - now
            batch = strategy.ask(Budget(free_slots=1, seconds_left=left))
            if not batch:
                break
            for c in batch:
                duration, result = trial(c)
                running.append((now + duration, c, result))
                starts.append((now, now + duration, c))
        if stopped_at is None and strategy._stop_reason is not None:
            stopped_at = now
        assert running, "nothing running and nothing proposed, but not finished"
        running.sort(key=lambda item: item[0])
        end, c, result = running.pop(0)
        now = end
        assert strategy.tell(c.id, result)
    assert strategy.finished
    return {"strategy": strategy, "end": now, "starts": starts, "stopped_at": stopped_at}


def slowed(duration: float, result: dict[str, Any], factor: float) -> tuple[float, dict[str, Any]]:
    """A fake trial's wall time and result on a machine ``factor`` times slower."""
    timings = {k: v * factor for k, v in result["timings"].items()}
    return duration * factor, {**result, "timings": timings}


def busy_fraction(starts: list[tuple[float, float, Candidate]], begin: float, end: float, slots: int) -> float:
    """Slot-seconds with a trial running between ``begin`` and ``end``, over ``slots * (end - begin)``."""
    busy = sum(max(0.0, min(e, end) - max(s, begin)) for s, e, _ in starts)
    return busy / (slots * (end - begin))


def test_every_slot_stays_busy_while_climbing() -> None:
    run = simulate(CONFIG, seconds=600.0)
    starts = run["starts"]
    seed_end = starts[0][1]
    assert run["stopped_at"] - seed_end > 0.5 * 600  # a real climb (the final phase takes ~1/3 here)
    assert 0.85 * 600 <= run["end"] <= 600  # most of the budget used, none overrun
    assert busy_fraction(starts, seed_end, run["stopped_at"], 2) == pytest.approx(1.0)
    roles = [c.role for _, _, c in starts]
    assert roles[0] == "seed" and sorted(roles[-2:]) == ["final", "seed_final"] and roles.count("child") >= 10


def test_no_trial_starts_that_cannot_finish_and_the_final_fits() -> None:
    for budget in (120.0, 300.0, 900.0):
        run = simulate(CONFIG, seconds=budget)
        assert run["end"] <= budget, (budget, run["end"])
        finals = [c.role for _, _, c in run["starts"] if c.role in ("final", "seed_final")]
        assert sorted(finals) == ["final", "seed_final"]
        for start, end, c in run["starts"]:
            assert end <= budget or c.role == "seed", (c.role, start, end)


def test_the_final_continues_the_winners_weights_on_train_and_val() -> None:
    run = simulate(CONFIG, seconds=400.0)
    strategy: AsyncHillClimbing = run["strategy"]
    final = next(c for _, _, c in run["starts"] if c.role == "final")
    winner = strategy.incumbent
    assert winner is not None and final.parent == winner.id
    assert final.architecture.id == winner.architecture.id and final.train_on == "train+val" and final.evaluate_test
    summary = strategy.summary()
    assert summary["status"] == "finished" and summary["winner"]["candidate"] == winner.id
    assert summary["winner"]["test_acc"] is not None


def test_the_incumbent_is_the_best_candidate_told_and_children_derive_from_it() -> None:
    run = simulate(CONFIG, seconds=600.0)
    strategy: AsyncHillClimbing = run["strategy"]
    accs = {cid: r["default"] for cid, r in strategy._results.items()
            if strategy._candidates[cid].role in ("seed", "child", "incumbent")}
    assert strategy.incumbent.id == max(accs, key=accs.get)
    # each incumbent is continued exactly once (the comparison the paper's retrained incumbent gives)
    continuations = [c.parent for _, _, c in run["starts"] if c.role == "incumbent"]
    assert len(continuations) == len(set(continuations))


def test_without_a_budget_it_stops_at_max_children() -> None:
    run = simulate({**CONFIG, "max_children": 7}, seconds=None)
    roles = [c.role for _, _, c in run["starts"]]
    assert roles.count("child") == 7 and sorted(roles[-2:]) == ["final", "seed_final"]


def test_trials_are_kept_for_the_final_phase() -> None:
    strategy = AsyncHillClimbing(SEED_ARCH, CONFIG)
    (seed,) = strategy.ask(Budget(free_slots=1, trials_left=4))
    strategy.tell(seed.id, result_of(seed, seconds_of(seed)))
    first = strategy.ask(Budget(free_slots=1, trials_left=3))
    assert [c.role for c in first] == ["child"]
    strategy.tell(first[0].id, result_of(first[0], seconds_of(first[0])))
    last = strategy.ask(Budget(free_slots=1, trials_left=2))  # the winner's and the seed's final trainings
    assert [c.role for c in last] == ["final", "seed_final"]


def test_same_seed_same_proposals_and_state_round_trip() -> None:
    a, b = simulate(CONFIG, seconds=300.0), simulate(CONFIG, seconds=300.0)
    assert [c.id for *_, c in a["starts"]] == [c.id for *_, c in b["starts"]]
    other = simulate({**CONFIG, "seed": 1}, seconds=300.0)
    assert [c.id for *_, c in other["starts"]] != [c.id for *_, c in a["starts"]]

    # stop half-way (two children running), save, restore, and go on: the same proposals as without stopping
    strategy = AsyncHillClimbing(SEED_ARCH, CONFIG)
    (seed,) = strategy.ask()
    strategy.tell(seed.id, result_of(seed, seconds_of(seed)))
    running = strategy.ask(Budget(free_slots=2, seconds_left=500.0))
    state = json.loads(json.dumps(strategy.state_dict()))
    restored = create_strategy("nash_async", SEED_ARCH, CONFIG)
    restored.load_state_dict(state)
    assert restored.pending == [c.id for c in running]
    for s in (strategy, restored):
        for c in running:
            s.tell(c.id, result_of(c, seconds_of(c)))
    assert [c.id for c in strategy.ask(Budget(free_slots=2, seconds_left=400.0))] == \
        [c.id for c in restored.ask(Budget(free_slots=2, seconds_left=400.0))]


def test_a_failed_seed_ends_the_search() -> None:
    strategy = AsyncHillClimbing(SEED_ARCH, CONFIG)
    (seed,) = strategy.ask()
    strategy.tell(seed.id, None, failure="NaN loss")
    assert strategy.finished and strategy.summary()["status"] == "failed"


def test_failed_children_never_become_incumbent() -> None:
    strategy = AsyncHillClimbing(SEED_ARCH, {**CONFIG, "max_children": 4})
    told = 0
    while not strategy.finished and told < 50:
        for c in strategy.ask():
            told += 1
            if c.role == "child":
                strategy.tell(c.id, None, failure="boom")
            else:
                strategy.tell(c.id, result_of(c, seconds_of(c)))
    assert strategy.finished and strategy.incumbent.role in ("seed", "incumbent")
    assert math.isfinite(strategy.summary()["winner"]["val_acc"])


# ---- early stopping of hopeless children ---------------------------------------------------------------

def hopeless(c: Candidate) -> bool:
    """About a third of the children lose what they inherited (seeded by the candidate itself)."""
    return c.role == "child" and np.random.default_rng([int(c.architecture.id, 16), c.serial]).random() < 0.35


def stopping_trial(c: Candidate) -> tuple[float, dict[str, Any]]:
    """A fake trial that honours the candidate's rule: after the first epoch a child is 0.01 behind where it
    ends, a hopeless one 0.2 behind; a stopped one takes the overhead and ``stop_after`` epochs and reports
    ``early_stopped`` and ``epochs_trained``."""
    seconds, result = full_trial(c)
    first = result["default"] - (0.2 if hopeless(c) else 0.01)
    if c.stop_after is None or not c.stops_early(c.stop_after, first):
        return seconds, {**result, "epochs_trained": c.epochs, "early_stopped": False}
    seconds = OVERHEAD + (seconds - OVERHEAD) * c.stop_after / c.epochs
    return seconds, {**result_of(c, seconds), "default": first, "epochs_trained": c.stop_after,
                     "early_stopped": True}


def test_children_alone_carry_the_rule_from_their_parents_accuracy() -> None:
    run = simulate(CONFIG, seconds=600.0, trial=stopping_trial)
    strategy: AsyncHillClimbing = run["strategy"]
    sibling = strategy._sibling  # the seed phase's child from scratch: no parent, no rule
    children = [c for _, _, c in run["starts"] if c.role == "child" and c.id != sibling]
    assert children and all(c.stop_after == 1 for c in children)
    assert strategy._candidates[sibling].stop_after is None and strategy._candidates[sibling].parent is None
    for c in children:
        parent_acc = strategy._results[c.parent]["default"]
        assert c.stop_below == pytest.approx(min(1.0, parent_acc - 0.05), abs=1e-6)  # fake accuracies pass 1
    others = [c for _, _, c in run["starts"] if c.role != "child"]
    assert {c.role for c in others} == {"seed", "incumbent", "final", "seed_final"}
    assert all(c.stop_after is None and c.stop_below is None for c in others)
    assert all("stop_after" not in c.to_dict() for c in others)


@pytest.mark.parametrize("change", [{"early_stop_after": 0}, {"early_stop_after": 2}, {"inherit_weights": False}])
def test_no_rule_when_disabled_as_long_as_the_cycle_or_without_inheritance(change: dict[str, Any]) -> None:
    run = simulate({**CONFIG, **change}, seconds=300.0, trial=stopping_trial)
    assert all(c.stop_after is None for _, _, c in run["starts"])
    assert run["strategy"].summary()["early_stopped"] == 0


def test_an_early_stopped_child_never_becomes_the_incumbent_and_is_counted() -> None:
    strategy = AsyncHillClimbing(SEED_ARCH, {**CONFIG, "children_first": False})
    (seed,) = strategy.ask()
    strategy.tell(seed.id, result_of(seed, seconds_of(seed)))
    (continuation,) = strategy.ask(Budget(free_slots=1))
    assert continuation.role == "incumbent"
    strategy.tell(continuation.id, result_of(continuation, seconds_of(continuation)))
    incumbent = strategy.incumbent
    (child,) = strategy.ask(Budget(free_slots=1))
    assert child.role == "child" and child.stop_after == 1
    # even a (fake) stopped result above the incumbent is not taken: the trial stopped, its cycle is unfinished
    seconds = OVERHEAD + (seconds_of(child) - OVERHEAD) / child.epochs
    stopped = {**result_of(child, seconds), "default": 0.999, "epochs_trained": 1, "early_stopped": True}
    assert strategy.tell(child.id, stopped)
    assert strategy.incumbent == incumbent
    summary = strategy.summary()
    assert summary["early_stopped"] == 1 and summary["children"] == 1 and summary["winner"]["candidate"] == incumbent.id
    assert next(h for h in summary["history"] if h["candidate"] == child.id)["early_stopped"] is True
    # the cost model reads epochs_trained: the seconds of one epoch, not half of them
    assert child.epochs == 2 and strategy._per_epoch(child.id) == pytest.approx(seconds - OVERHEAD)
    assert strategy._overhead() == pytest.approx(OVERHEAD)
    assert summary["epochs_total"] == seed.epochs + continuation.epochs + 1


def test_early_stopping_saves_trial_time_in_a_budgeted_run() -> None:
    on = simulate(CONFIG, seconds=600.0, trial=stopping_trial)
    off = simulate({**CONFIG, "early_stop_after": 0}, seconds=600.0, trial=stopping_trial)
    for run in (on, off):
        assert run["end"] <= 600.0
    strategy: AsyncHillClimbing = on["strategy"]
    stopped = [(start, end, c) for start, end, c in on["starts"] if strategy._results[c.id]["early_stopped"]]
    assert stopped and strategy.summary()["early_stopped"] == len(stopped)
    assert all(hopeless(c) and strategy._results[c.id]["epochs_trained"] == 1 for *_, c in stopped)
    assert strategy.incumbent.id not in {c.id for *_, c in stopped}
    # trial-seconds saved: what the stopped children would have taken, less what they took (the runs' paths
    # differ once a result arrives earlier, so counting children across the two runs would measure that too)
    saved = sum(seconds_of(c) - (end - start) for start, end, c in stopped)
    assert saved > 20.0  # 33 s of 1,200 slot-seconds with these settings: a stop saves one epoch of two
    assert off["strategy"].summary()["early_stopped"] == 0
    assert all(end - start == pytest.approx(seconds_of(c)) for start, end, c in off["starts"])


def test_candidate_rule_round_trip_and_old_candidates_unchanged() -> None:
    old = Candidate(f"{SEED_ARCH.id}-0007", SEED_ARCH, None, 3, "train", False, "seed", 0)
    data = old.to_dict()
    # a candidate without the rule serialises exactly as before the rule existed: same keys, same JSON, same id
    assert list(data) == ["id", "architecture", "parent", "epochs", "train_on", "evaluate_test", "role", "step"]
    again = Candidate.from_dict(json.loads(json.dumps(data)))
    assert again == old and again.id == f"{SEED_ARCH.id}-0007"
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(data, sort_keys=True)
    assert not old.stops_early(1, 0.0)

    ruled = Candidate(f"{SEED_ARCH.id}-0008", SEED_ARCH, f"{SEED_ARCH.id}-0007", 3, "train", False, "child", 1,
                      stop_after=1, stop_below=0.8)
    ruled_data = json.loads(json.dumps(ruled.to_dict()))
    assert ruled_data["stop_after"] == 1 and ruled_data["stop_below"] == 0.8
    assert Candidate.from_dict(ruled_data) == ruled and ruled.id == f"{SEED_ARCH.id}-0008"
    zero = Candidate.from_dict({**ruled_data, "stop_below": 0})  # canonical JSON writes 0.0 as 0
    assert isinstance(zero.stop_below, float) and zero.to_dict()["stop_below"] == 0.0
    assert ruled.stops_early(1, 0.79) and not ruled.stops_early(1, 0.8) and not ruled.stops_early(2, 0.1)
    assert not ruled.stops_early(1, None)

    for bad, pattern in [
        ({**ruled_data, "stop_after": None}, r"set together .* got stop_after=None, stop_below=0.8"),
        ({k: v for k, v in ruled_data.items() if k != "stop_below"}, r"set together .* stop_below=None"),
        ({**ruled_data, "stop_after": 0}, r"1 <= stop_after < epochs=3 .* but got 0"),
        ({**ruled_data, "stop_after": 3}, r"1 <= stop_after < epochs=3 .* but got 3"),
        ({**ruled_data, "stop_after": True}, r"stop_after must be an integer .* but got True"),
        ({**ruled_data, "stop_below": 1.01}, r"stop_below must be a finite accuracy in \[0, 1\], but got 1.01"),
        ({**ruled_data, "stop_below": -0.1}, r"stop_below must be .* but got -0.1"),
        ({**ruled_data, "stop_below": float("nan")}, r"stop_below must be .* but got nan"),
        ({**ruled_data, "stop_below": "0.5"}, r"stop_below must be .* but got '0.5'"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            Candidate.from_dict(bad)


def _final_seconds(c: Candidate, epochs: int) -> float:
    """The fake wall time of a final training of ``c``'s architecture for ``epochs``."""
    final = Candidate(c.id, c.architecture, c.id, epochs, "train+val", True, "final", 0)
    return seconds_of(final)


def test_no_slot_idles_from_the_start_to_the_final_phase() -> None:
    for budget in (600.0, 900.0):
        run = simulate(CONFIG, seconds=budget)
        starts, strategy = run["starts"], run["strategy"]
        # the seed phase: a child of the seed, from scratch, on the other slot
        (seed_start, _, seed), (sibling_start, _, sibling) = starts[:2]
        assert (seed.role, sibling.role, seed_start, sibling_start) == ("seed", "child", 0.0, 0.0)
        assert sibling.parent is None and sibling.epochs == seed.epochs and sibling.stop_after is None
        assert sibling.architecture.id != seed.architecture.id and sibling.id == strategy._sibling
        # the seed's final training starts on the first slot free after climbing stopped, the winner's on the
        # last; both end at most one of their epochs (plus the estimate's margin) before the deadline
        finals = {c.role: (start, end, c) for start, end, c in starts if c.role in ("final", "seed_final")}
        assert finals["seed_final"][0] == pytest.approx(run["stopped_at"])
        last_climb_end = max(end for _, end, c in starts if c.role not in ("final", "seed_final"))
        assert finals["final"][0] == pytest.approx(last_climb_end) and finals["final"][0] >= finals["seed_final"][0]
        assert busy_fraction(starts, 0.0, finals["final"][0], 2) == pytest.approx(1.0)
        for start, end, c in finals.values():
            epoch = _final_seconds(c, 2) - _final_seconds(c, 1)
            slack = epoch + trial_costs.SAFETY_MEASURED * (end - start) - (end - start) + trial_costs.LATENCY
            assert end <= budget and budget - end <= 1.1 * slack, (c.role, end)
        assert busy_fraction(starts, 0.0, budget, 2) >= 0.9


def test_children_come_before_their_parents_continuation_as_in_the_papers_step() -> None:
    for children_first in (True, False):
        # no time budget: no child is refused for time (then the continuation would come early, by design)
        run = simulate({**CONFIG, "children_first": children_first, "max_children": 30}, seconds=None)
        order = [c for _, _, c in run["starts"] if c.role in ("child", "incumbent") and c.parent is not None]
        continued = [c for c in order if c.role == "incumbent"]
        assert continued
        for cont in continued:
            before = [c for c in order[:order.index(cont)] if c.role == "child" and c.parent == cont.parent]
            if children_first:  # n_neighbours - 1 children of an incumbent, then its continuation
                assert len(before) == CONFIG["n_neighbours"] - 1, cont.id
            else:  # the continuation first
                assert before == [], cont.id
        if children_first:
            children = [c for c in order if c.role == "child"]
            assert len(children) >= 2 * len(continued)


def test_no_child_starts_whose_own_final_training_would_not_fit() -> None:
    """A child may become the winner: it starts only if it and then its own final training (``epochs_final``)
    fit in the time left, even when it is much larger than the incumbent."""
    for budget in (400.0, 900.0, 1200.0):  # budgets where the older guard (the incumbent's final) let one start
        run = simulate(CONFIG, seconds=budget)
        for start, end, c in run["starts"]:
            if c.role in ("child", "incumbent") and c.parent is not None:
                assert end + _final_seconds(c, CONFIG["epochs_final"]) <= budget, (c.id, start, end)


def test_a_time_limit_round_trips_and_decides_after_which_epoch_a_trial_stops() -> None:
    final = Candidate(f"{SEED_ARCH.id}-0009", SEED_ARCH, f"{SEED_ARCH.id}-0000", 5, "train+val", True, "final", 3,
                      time_limit=100)
    data = json.loads(json.dumps(final.to_dict()))
    assert data["time_limit"] == 100.0 and Candidate.from_dict(data) == final
    assert "time_limit" not in Candidate(f"{SEED_ARCH.id}-0001", SEED_ARCH, None, 2, "train", False, "seed",
                                         0).to_dict()  # a candidate without a limit serialises as it always did
    assert not final.past_deadline(1, elapsed=50.0, slowest_epoch=20.0)  # 50 + 2 x 20 <= 100
    assert final.past_deadline(1, elapsed=61.0, slowest_epoch=20.0)
    assert not final.past_deadline(5, elapsed=500.0, slowest_epoch=20.0)  # after the last epoch: nothing to stop
    assert not Candidate.from_dict({**data, "time_limit": None}).past_deadline(1, 1e9, 1e9)
    for bad in (0, -1.0, float("inf"), float("nan"), True, "100"):
        with pytest.raises(ValueError, match=r"time_limit must be null or a finite number of seconds > 0, but got"):
            Candidate.from_dict({**data, "time_limit": bad})


def honouring_trial(c: Candidate, factor: float = 1.0) -> tuple[float, dict[str, Any]]:
    """A fake trial on a machine ``factor`` times slower than the one measured, that stops at its time limit
    as the real one does (:meth:`Candidate.past_deadline` after every epoch; the fake has no latency)."""
    seconds, result = slowed(*full_trial(c), factor)
    epoch = (seconds - OVERHEAD * factor) / max(1, c.epochs)
    trained = c.epochs
    for k in range(1, c.epochs):
        if c.past_deadline(k, OVERHEAD * factor + k * epoch, epoch):
            trained = k
            break
    seconds = OVERHEAD * factor + trained * epoch
    return seconds, {**result, "epochs_trained": trained, "stopped_at_deadline": trained < c.epochs}


@pytest.mark.parametrize("budget", [300.0, 600.0])
def test_finals_carry_the_deadline_and_keep_it_when_the_machine_slows_down(budget: float) -> None:
    # from the moment the final phase is planned, every trial runs 1.5 times slower than the estimates say
    slow = False

    def trial(c: Candidate) -> tuple[float, dict[str, Any]]:
        nonlocal slow
        slow = slow or c.role in ("final", "seed_final")
        return honouring_trial(c, 1.5 if slow else 1.0)

    run = simulate(CONFIG, seconds=budget, trial=trial)
    finals = {c.role: (start, end, c) for start, end, c in run["starts"] if c.role in ("final", "seed_final")}
    for start, end, c in finals.values():
        assert c.time_limit == pytest.approx(budget - start - trial_costs.LATENCY, abs=1e-3)
        assert end <= budget, (c.role, end)
    assert all(c.time_limit is None for _, _, c in run["starts"] if c.role not in ("final", "seed_final"))
    assert any(run["strategy"]._results[c.id]["stopped_at_deadline"] for *_, c in finals.values())
    # the same slow finals without their limit run past the budget: what the limit is for
    slow = False
    unlimited = simulate(CONFIG, seconds=budget, trial=lambda c: trial(dataclasses.replace(c, time_limit=None)))
    assert unlimited["end"] > budget
    assert all(c.time_limit is None for _, _, c in simulate({**CONFIG, "max_children": 6}, seconds=None)["starts"])
