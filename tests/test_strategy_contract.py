"""The contract every strategy of the registry meets (Optuna's ``BasicSamplerTestCase`` is the model): ask/tell to
the end, each job handed out once, reports for unknown or finished jobs ignored, the same seed giving the same
proposals, a state saved and restored mid-search continuing exactly, pending jobs handed out again, failures
handled, and the same behaviour under the middleware (deduplication, failure handling). FNA's pipeline, whose jobs
are :class:`FnaJob` values, meets the parts that do not need a seed architecture or randomness."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from test_fna import _adapt_result
from test_nash import SMALL_CONFIGS, drive, fake_result, seed_for, trace

from nni_nas_ext.core.jobs import Candidate, FnaJob
from nni_nas_ext.registry import list_searches
from nni_nas_ext.strategies import (
    NONCONFORMING, Budget, FnaPipeline, Job, SearchStrategy, create_strategy, list_strategies,
)
from nni_nas_ext.strategies.middleware import Deduplication, FailureHandler, chain

#: every strategy of ours, FNA included: name -> (make(seed), fake result of a job)
SMALL_FNA = {"baselines": True, "epochs_seed": 1, "epochs_adapt": 1, "epochs_param": 1}


def fna_result(job: FnaJob) -> dict[str, Any]:
    if job.kind == "adapt":
        return _adapt_result(job)
    out: dict[str, Any] = {"default": 0.5, "candidate": job.id}
    if job.role == "final":
        out["test_acc"] = 0.48
    return out


def make(name: str, seed: int = 0) -> SearchStrategy[Any]:
    if name == "fna":
        return FnaPipeline(SMALL_FNA)
    return create_strategy(name, seed_for(name), {**SMALL_CONFIGS[name], "seed": seed})


def result_for(name: str) -> Callable[[Any], dict[str, Any]]:
    return fna_result if name == "fna" else fake_result  # type: ignore[return-value]


ALL = [*list_strategies(), *NONCONFORMING]


def run_all(strategy: SearchStrategy[Any], result: Callable[[Any], Any], max_rounds: int = 200) -> list[Any]:
    """Ask and tell until finished (a result that is a string is told as a failure); every job in order."""
    jobs: list[Any] = []
    for _ in range(max_rounds):
        if strategy.finished:
            return jobs
        asked = list(strategy.ask())
        assert asked, "not finished, nothing pending, but ask() returned nothing"
        jobs += asked
        for job in asked:
            r = result(job)
            if isinstance(r, str):
                assert strategy.tell(job.id, None, failure=r) is True
            else:
                assert strategy.tell(job.id, r) is True
    raise AssertionError(f"not finished after {max_rounds} rounds")


# ---- every strategy ------------------------------------------------------------------------------------------


def test_every_strategy_has_a_small_config() -> None:
    ours = {n for n in list_searches(ours=True) if n not in NONCONFORMING}  # the registry's, FNA apart
    assert set(SMALL_CONFIGS) == ours == set(list_strategies())
    assert set(ALL) == set(list_searches(ours=True))


@pytest.mark.parametrize("name", ALL)
def test_contract_declares_the_whole_interface(name: str) -> None:
    strategy = make(name)
    assert isinstance(strategy, SearchStrategy)
    assert isinstance(strategy.budget_aware, bool)
    first = list(strategy.ask(Budget(free_slots=1, seconds_left=None, trials_left=None)))
    assert first and all(isinstance(job, Job) for job in first)
    assert sorted(strategy.pending) == sorted(job.id for job in first)


@pytest.mark.parametrize("name", ALL)
def test_contract_jobs_round_trip_and_are_handed_out_once(name: str) -> None:
    strategy, result = make(name), result_for(name)
    seen: set[str] = set()
    while not strategy.finished:
        asked = list(strategy.ask())
        assert asked and list(strategy.ask()) == []  # each job is handed out once
        for job in asked:
            assert job.id not in seen
            seen.add(job.id)
            assert type(job).from_dict(json.loads(json.dumps(job.to_dict()))) == job
        json.dumps(strategy.state_dict(), allow_nan=False)
        json.dumps(strategy.summary(), allow_nan=False)
        for job in asked:
            strategy.tell(job.id, result(job))
    assert list(strategy.ask()) == [] and strategy.pending == []
    assert json.loads(json.dumps(strategy.summary(), allow_nan=False))["status"] == "finished"


@pytest.mark.parametrize("name", ALL)
def test_contract_the_ledger_answers_for_every_job_and_result(name: str) -> None:
    """``job`` and ``result`` are the one ledger the NNI adapters read instead of keeping copies: every job handed
    out is found by its id, its result once told (a copy), a failure or an unknown id gives None; also wrapped."""
    for strategy in (make(name), chain(make(name), Deduplication, FailureHandler)):
        result = result_for(name)
        first = list(strategy.ask())
        assert strategy.job("0123456789abcdef-9999") is None and strategy.result("0123456789abcdef-9999") is None
        for job in first:
            assert strategy.job(job.id) == job and strategy.result(job.id) is None  # asked, not told
        told = result(first[0])
        strategy.tell(first[0].id, told)
        found = strategy.result(first[0].id)
        assert found == json.loads(json.dumps(told))
        found["default"] = -1.0  # a copy: the ledger is not changed through it
        assert strategy.result(first[0].id) == json.loads(json.dumps(told))
        if len(first) > 1:
            strategy.tell(first[1].id, None, failure="crashed")
            assert strategy.result(first[1].id) is None and strategy.job(first[1].id) == first[1]


@pytest.mark.parametrize("name", list_strategies())
def test_contract_runs_to_the_end_with_seed_and_winner_tested(name: str) -> None:
    strategy = make(name)
    run_all(strategy, fake_result)
    summary = json.loads(json.dumps(strategy.summary(), allow_nan=False))
    assert summary["status"] == "finished"
    assert summary["winner"]["test_acc"] is not None and summary["seed"]["test_acc"] is not None


@pytest.mark.parametrize("name", ALL)
def test_contract_ignores_unknown_and_repeated_reports(name: str, caplog: pytest.LogCaptureFixture) -> None:
    strategy, result = make(name), result_for(name)
    first = list(strategy.ask())[0]
    with caplog.at_level(logging.WARNING):
        assert strategy.tell("0123456789abcdef-9999", {"default": 1.0}) is False
        assert strategy.tell(None, {"default": 1.0}) is False  # type: ignore[arg-type]
        assert strategy.tell(first.id, result(first)) is True
        assert strategy.tell(first.id, {"default": 0.0}) is False
    assert "unknown" in caplog.text and "second result" in caplog.text


@pytest.mark.parametrize("name", list_strategies())
def test_contract_reproducible(name: str) -> None:
    def run(seed: int) -> list[tuple]:
        return trace(drive(make(name, seed)))

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("name", ALL)
def test_contract_state_round_trip(name: str) -> None:
    original, result = make(name), result_for(name)
    for _ in range(2):  # into the search, with jobs pending
        for job in list(original.ask()):
            original.tell(job.id, result(job))
    pending = list(original.ask())
    state = json.loads(json.dumps(original.state_dict()))
    restored = make(name)
    restored.load_state_dict(state)
    assert list(restored.ask()) == []  # the pending jobs were handed out already
    assert restored.pending == original.pending
    for strategy in (original, restored):
        for job in pending:
            strategy.tell(job.id, result(job))
    assert [j.to_dict() for j in run_all(original, result)] == [j.to_dict() for j in run_all(restored, result)]
    assert original.summary() == restored.summary()


@pytest.mark.parametrize("name", ALL)
def test_contract_pending_jobs_are_handed_out_again(name: str) -> None:
    strategy = make(name)
    first = list(strategy.ask())
    assert strategy.reissue_pending(["not-a-job"]) == []
    assert strategy.reissue_pending([first[0].id]) == [first[0].id]
    assert [job.id for job in strategy.ask()] == [first[0].id]
    assert sorted(strategy.reissue_pending()) == sorted(job.id for job in first)
    assert sorted(job.id for job in strategy.ask()) == sorted(job.id for job in first)


@pytest.mark.parametrize("name", ALL)
def test_contract_failures_never_stop_the_search_from_ending(name: str) -> None:
    """Every job but the first fails: the strategy still ends, with a JSON summary that says how."""
    strategy, result = make(name), result_for(name)
    first: list[str] = []

    def failing(job: Any) -> Any:
        if not first:
            first.append(job.id)
        return result(job) if job.id == first[0] else f"crash of {job.id}"

    run_all(strategy, failing)
    summary = json.loads(json.dumps(strategy.summary(), allow_nan=False))
    assert strategy.finished and summary["status"] in ("finished", "failed")
    assert list(strategy.ask()) == []


@pytest.mark.parametrize("name", ALL)
def test_contract_under_the_middleware(name: str) -> None:
    """The NNI adapters run every search through ``chain(search, Deduplication, FailureHandler)``: with no
    duplicate training and no lost trial, it proposes exactly what the strategy alone proposes."""
    result = result_for(name)
    bare = [j.to_dict() for j in run_all(make(name), result)]
    wrapped_strategy = chain(make(name), Deduplication, FailureHandler)
    assert isinstance(wrapped_strategy, SearchStrategy)
    wrapped = [j.to_dict() for j in run_all(wrapped_strategy, result)]
    middleware = wrapped_strategy.summary()["middleware"]
    assert middleware["failure_handler"] == {"retried": 0}
    if middleware["deduplication"]["duplicates_answered"] == 0:
        assert wrapped == bare
    else:  # the strategy proposed a training it had done before: answered, not run again
        assert len(wrapped) == len(bare) - middleware["deduplication"]["duplicates_answered"]


def test_candidate_strategies_propose_candidates_and_fna_proposes_fna_jobs() -> None:
    for name in ALL:
        jobs = list(make(name).ask())
        assert all(isinstance(job, FnaJob if name == "fna" else Candidate) for job in jobs), name


def test_a_result_mapping_with_a_failed_key_is_a_failure_for_every_strategy() -> None:
    for name in ALL:
        strategy = make(name)
        first = list(strategy.ask())[0]
        failed: Mapping[str, Any] = {"failed": "loss is NaN", "candidate": first.id}
        assert strategy.tell(first.id, failed) is True
        summary = json.loads(json.dumps(strategy.summary(), allow_nan=False))
        assert "loss is NaN" in json.dumps(summary), name
