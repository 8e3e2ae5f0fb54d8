"""Asynchronous, budget-aware NASH on a fake clock: busy slots, the budget guard, the final phase, state."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from nni_nas_ext.strategies import AsyncHillClimbing, Budget, Candidate, create_strategy
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


def simulate(config: dict[str, Any], seconds: float | None, slots: int = 2) -> dict[str, Any]:
    """Run the strategy on ``slots`` fake workers against a fake clock, as the NNI adapter does: whenever a
    slot is free, ask with one free slot and the time left. Returns the timeline."""
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
                duration = seconds_of(c)
                running.append((now + duration, c))
                starts.append((now, now + duration, c))
        if stopped_at is None and strategy._stop_reason is not None:
            stopped_at = now
        assert running, "nothing running and nothing proposed, but not finished"
        running.sort(key=lambda item: item[0])
        end, c = running.pop(0)
        now = end
        assert strategy.tell(c.id, result_of(c, seconds_of(c)))
    assert strategy.finished
    return {"strategy": strategy, "end": now, "starts": starts, "stopped_at": stopped_at}


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
    assert [c.role for c in first] == ["incumbent"]
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
