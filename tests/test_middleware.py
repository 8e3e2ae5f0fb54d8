"""The middleware of strategies/middleware.py on a scripted strategy whose jobs are known in advance: duplicates
answered with the earlier result, duplicates of a running job waiting for it, lost trials run again, states."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from nni_nas_ext.core.jobs import Candidate, candidate_id
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.strategies import Budget, SearchStrategy
from nni_nas_ext.strategies.middleware import (
    MIDDLEWARE_FORMAT, Deduplication, FailureHandler, chain, innermost_state, training_key,
)

ARCH = nash_seed((1, 8, 8), 10, (4, 8, 8))
LOST = "the trial ended with status FAILED without a result"


def job(serial: int, epochs: int = 2, step: int = 0) -> Candidate:
    return Candidate(candidate_id(ARCH, serial), ARCH, None, epochs, "train", False, "child", step)


class Scripted:
    """A minimal SearchStrategy: hands out ``rounds`` one at a time, the next once every job of one was told."""

    budget_aware = False

    def __init__(self, rounds: Sequence[Sequence[Candidate]]) -> None:
        self.rounds = [list(r) for r in rounds]
        self.jobs = {j.id: j for r in self.rounds for j in r}
        self.round = 0
        self.unasked = [j.id for j in self.rounds[0]]
        self.asked: list[str] = []
        self.told: dict[str, Any] = {}

    def ask(self, budget: Budget | None = None) -> list[Candidate]:
        out, self.unasked = self.unasked, []
        self.asked += [i for i in out if i not in self.asked]
        return [self.jobs[i] for i in out]

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        if candidate_id not in self.asked or candidate_id in self.told:
            return False
        self.told[candidate_id] = {"failure": failure} if failure is not None else dict(result or {})
        if all(j.id in self.told for j in self.rounds[self.round]) and self.round + 1 < len(self.rounds):
            self.round += 1
            self.unasked = [j.id for j in self.rounds[self.round]]
        return True

    @property
    def finished(self) -> bool:
        return len(self.told) == len(self.jobs)

    @property
    def pending(self) -> list[str]:
        return [i for i in self.asked if i not in self.told and i not in self.unasked]

    def reissue_pending(self, ids: Sequence[str] | None = None) -> list[str]:
        chosen = [i for i in self.pending if ids is None or i in ids]
        self.unasked += chosen
        return chosen

    def job(self, job_id: str) -> Candidate | None:
        return self.jobs.get(job_id)

    def result(self, job_id: str) -> Mapping[str, Any] | None:
        told = self.told.get(job_id)
        return None if told is None or "failure" in told else dict(told)

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.round, "unasked": list(self.unasked), "asked": list(self.asked), "told": dict(self.told)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round, self.unasked, self.asked = state["round"], list(state["unasked"]), list(state["asked"])
        self.told = dict(state["told"])

    def summary(self) -> dict[str, Any]:
        return {"status": "finished" if self.finished else "running", "told": len(self.told)}


def test_the_scripted_strategy_is_a_search_strategy() -> None:
    assert isinstance(Scripted([[job(0)]]), SearchStrategy)
    with pytest.raises(TypeError, match="wraps a SearchStrategy, but got object"):
        Deduplication(object())  # type: ignore[arg-type]


def test_the_training_key_ignores_only_id_and_step() -> None:
    assert training_key(job(0)) == training_key(job(0))
    assert training_key(job(1, step=3)) == training_key(job(2, step=5))
    assert training_key(job(1)) != training_key(job(2, epochs=3))
    key = json.loads(training_key(job(1)))
    assert "id" not in key and "step" not in key and key["epochs"] == 2


# ---- deduplication ------------------------------------------------------------------------------------------


def test_a_duplicate_of_a_finished_training_is_answered_with_its_result() -> None:
    a, b, c = job(0), job(1, step=1), job(2, epochs=3, step=1)
    inner = Scripted([[a], [b, c]])
    dedup = Deduplication(inner)
    assert dedup.ask() == [a]
    assert dedup.tell(a.id, {"default": 0.7, "candidate": a.id, "params": 100})
    assert dedup.ask() == [c]  # b trains what a trained: answered, not handed out
    assert inner.told[b.id] == {"default": 0.7, "candidate": b.id, "params": 100, "deduplicated_from": a.id}
    assert dedup.summary()["middleware"]["deduplication"] == {"duplicates_answered": 1, "trainings_remembered": 1}


def test_when_every_job_of_a_round_is_a_duplicate_the_strategy_is_asked_again() -> None:
    a, b, c = job(0), job(1, step=1), job(2, epochs=3, step=2)
    inner = Scripted([[a], [b], [c]])
    dedup = Deduplication(inner)
    dedup.ask()
    dedup.tell(a.id, {"default": 0.5, "candidate": a.id})
    assert dedup.ask() == [c]
    assert inner.told[b.id]["deduplicated_from"] == a.id


def test_a_duplicate_of_a_running_training_waits_for_its_result() -> None:
    a, b = job(0), job(1, step=1)
    inner = Scripted([[a, b]])
    dedup = Deduplication(inner)
    assert dedup.ask() == [a]
    assert b.id in dedup.pending  # handed out by the strategy, waiting in the middleware
    dedup.tell(a.id, {"default": 0.6, "candidate": a.id})
    assert inner.told[b.id]["default"] == 0.6 and inner.finished


def test_a_duplicate_of_a_failed_training_fails_with_the_reason() -> None:
    a, b = job(0), job(1, step=1)
    inner = Scripted([[a, b]])
    dedup = Deduplication(inner)
    dedup.ask()
    dedup.tell(a.id, None, failure="loss is NaN")
    assert inner.told[b.id] == {"failure": f"the same training as {a.id}, which failed: loss is NaN"}
    # a failed training is not remembered: the same job proposed later trains
    assert dedup.summary()["middleware"]["deduplication"]["trainings_remembered"] == 0


def test_deduplication_state_round_trips_while_a_duplicate_waits() -> None:
    a, b = job(0), job(1, step=1)
    dedup = Deduplication(Scripted([[a, b]]))
    dedup.ask()
    state = json.loads(json.dumps(dedup.state_dict()))
    assert state["format"] == MIDDLEWARE_FORMAT and state["kind"] == "deduplication"
    restored_inner = Scripted([[a, b]])
    restored = Deduplication(restored_inner)
    restored.load_state_dict(state)
    restored.tell(a.id, {"default": 0.6, "candidate": a.id})
    assert restored_inner.told[b.id]["deduplicated_from"] == a.id
    # a restart hands the waiting job out again: it keeps waiting, once
    fresh = Deduplication(Scripted([[a, b]]))
    fresh.load_state_dict(state)
    assert fresh.reissue_pending([b.id]) == [b.id] and fresh.ask() == []
    assert fresh.state_dict()["own"]["waiting"] == {training_key(a): [b.id]}


def test_a_running_job_handed_out_again_goes_out_again_not_to_wait_for_itself() -> None:
    a = job(0)
    dedup = Deduplication(Scripted([[a]]))
    assert dedup.ask() == [a]
    state = json.loads(json.dumps(dedup.state_dict()))
    fresh = Deduplication(Scripted([[a]]))
    fresh.load_state_dict(state)
    assert fresh.reissue_pending([a.id]) == [a.id] and fresh.ask() == [a]  # its trial never started: run it
    assert fresh.state_dict()["own"]["waiting"] == {}
    fresh.tell(a.id, {"default": 0.5, "candidate": a.id})
    assert fresh.state_dict()["own"]["done"][training_key(a)]["id"] == a.id


def test_a_state_saved_without_middleware_loads_into_it_and_wrong_states_are_refused() -> None:
    a = job(0)
    inner = Scripted([[a]])
    inner.ask()
    dedup = Deduplication(Scripted([[a]]))
    dedup.load_state_dict(inner.state_dict())  # an experiment saved before the middleware existed
    assert dedup.pending == [a.id] and dedup.summary()["middleware"]["deduplication"]["duplicates_answered"] == 0
    wrong = {"format": MIDDLEWARE_FORMAT, "version": 1, "kind": "failure_handler", "inner": {}, "own": {}}
    with pytest.raises(ValueError, match="not a deduplication state"):
        dedup.load_state_dict(wrong)
    with pytest.raises(ValueError, match="'own' must be an object"):
        dedup.load_state_dict({**wrong, "kind": "deduplication", "own": [1]})


# ---- failure handling -----------------------------------------------------------------------------------------


def test_a_lost_trial_is_handed_out_again_once_then_the_strategy_hears_of_it() -> None:
    a = job(0)
    inner = Scripted([[a]])
    handler = FailureHandler(inner, retries=1)
    assert handler.ask() == [a]
    assert handler.tell(a.id, None, failure=LOST) is True
    assert a.id not in inner.told and handler.ask() == [a]
    assert handler.tell(a.id, None, failure=LOST) is True
    assert inner.told[a.id] == {"failure": LOST}
    assert handler.summary()["middleware"]["failure_handler"] == {"retried": 1}


def test_a_lost_trial_goes_out_again_through_deduplication() -> None:
    a = job(0)
    inner = Scripted([[a]])
    search = chain(inner, Deduplication, FailureHandler)  # as the NNI adapters run a search
    assert search.ask() == [a]
    assert search.tell(a.id, None, failure=LOST) is True
    assert search.ask() == [a]  # the retry is not taken for a duplicate of itself
    search.tell(a.id, {"default": 0.7, "candidate": a.id})
    assert inner.told[a.id]["default"] == 0.7


def test_a_failure_the_trial_reported_itself_is_not_retried() -> None:
    a = job(0)
    inner = Scripted([[a]])
    handler = FailureHandler(inner, retries=3)
    handler.ask()
    handler.tell(a.id, None, failure="loss is NaN at epoch 2")
    assert inner.told[a.id] == {"failure": "loss is NaN at epoch 2"}


def test_failure_handler_settings_and_state() -> None:
    a = job(0)
    inner = Scripted([[a]])
    none = FailureHandler(inner, retries=0)
    none.ask()
    none.tell(a.id, None, failure=LOST)
    assert inner.told[a.id] == {"failure": LOST}
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="retries must be an integer >= 0"):
            FailureHandler(Scripted([[a]]), retries=bad)  # type: ignore[arg-type]
    handler = FailureHandler(Scripted([[a]]), retries=2)
    handler.ask()
    handler.tell(a.id, None, failure=LOST)
    restored = FailureHandler(Scripted([[a]]), retries=2)
    restored.load_state_dict(json.loads(json.dumps(handler.state_dict())))
    assert restored.state_dict()["own"] == {"attempts": {a.id: 1}}


# ---- composition ------------------------------------------------------------------------------------------------


def test_chain_wraps_innermost_first_and_reads_through_to_the_strategy() -> None:
    inner = Scripted([[job(0)]])
    wrapped = chain(inner, Deduplication, lambda s: FailureHandler(s, retries=2))
    assert isinstance(wrapped, FailureHandler) and isinstance(wrapped.inner, Deduplication)
    assert wrapped.inner.inner is inner and wrapped.retries == 2
    assert wrapped.rounds == inner.rounds  # a member beyond the interface, read through
    assert wrapped.budget_aware is False and isinstance(wrapped, SearchStrategy)
    state = wrapped.state_dict()
    assert innermost_state(state) == inner.state_dict()
    assert innermost_state(inner.state_dict()) == inner.state_dict()
    assert set(wrapped.summary()["middleware"]) == {"deduplication", "failure_handler"}


def test_the_report_unwraps_the_middleware_by_the_same_format_name() -> None:
    from nni_nas_ext.report import experiment

    assert experiment.MIDDLEWARE_FORMAT == MIDDLEWARE_FORMAT
