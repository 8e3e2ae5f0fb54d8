"""``nni.nas`` strategies over the pure search strategies of :mod:`nni_nas_ext.strategies`.

:class:`MorphismStrategy` turns any ask/tell :class:`~nni_nas_ext.strategies.base.SearchStrategy` into a
real ``nni.nas.strategy.Strategy`` (the shape of NNI's own ``nni/nas/strategy/hpo.py``): it submits each
candidate the search asks for as a frozen :class:`~nni_nas_ext.nni.space.MorphismModelSpace`, and feeds the
trials' final results back. It works with NNI's training-service engine (``NasExperiment`` with the local
training service, or the nnictl bridge) and with the sequential engine.

Results are matched to candidates by the ``candidate`` field that every trial puts in its final result,
never by NNI's own pairing of trials and parameters, which NNI 3.0 can get wrong when several trials run at
once (field notes, bug 1). When the two disagree this class logs it: that is the bug, caught.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nni.nas.execution import ExecutionEngine
from nni.nas.execution.event import FinalMetricEvent, ModelEventType, TrainingEndEvent
from nni.nas.space import ExecutableModelSpace, ModelStatus
from nni.nas.strategy import Strategy

from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.results import flat_result
from nni_nas_ext.strategies.base import SearchStrategy
from nni_nas_ext.strategies.base import Budget

from .space import ARCHITECTURE_LABEL

__all__ = ["MorphismStrategy"]

_log = logging.getLogger(__name__)


def _sample_candidate_id(model: ExecutableModelSpace) -> str | None:
    sample = getattr(model, "sample", None) or {}
    value = sample.get(ARCHITECTURE_LABEL)
    return value.get("id") if isinstance(value, Mapping) else None


class MorphismStrategy(Strategy):
    """An ``nni.nas`` strategy that runs a pure ask/tell search over a morphism space.

    Parameters
    ----------
    search
        The pure search (e.g. :class:`~nni_nas_ext.strategies.nash.HillClimbing`).
    poll_interval
        Seconds between checks for new work while waiting for results.
    """

    def __init__(self, search: SearchStrategy[Candidate], *, poll_interval: float = 1.0,
                 budget_source: Callable[[], Budget | None] | None = None) -> None:
        super().__init__()
        self.search = search
        self.poll_interval = poll_interval
        #: what is left of the experiment's time and trials (the nnictl bridge sets it; None: unknown). A
        #: budget-aware search (``search.budget_aware``) gets it with every ``ask``, one free slot at a time.
        self.budget_source = budget_source
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._models: dict[str, ExecutableModelSpace] = {}  # candidate id -> the frozen model submitted
        # the ids of the candidates sent to NNI, in order: the candidates and their results are the search's
        # ledger (``search.job``, ``search.result``), not copied here
        self._submitted: list[str] = []
        self.mismatches: list[tuple[str, str]] = []  # (candidate NNI paired the result with, candidate reported)

    def extra_repr(self) -> str:
        search: Any = self.search
        while hasattr(search, "inner"):  # the search under its middleware
            search = search.inner
        return f"search={type(search).__name__}"

    # ---- lifecycle ----------------------------------------------------------------------------------

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        engine.register_model_event_callback(ModelEventType.FinalMetric, self._on_final_metric)
        engine.register_model_event_callback(ModelEventType.TrainingEnd, self._on_training_end)
        return model_space

    def _cleanup(self) -> None:
        self.engine.unregister_model_event_callback(ModelEventType.FinalMetric, self._on_final_metric)
        self.engine.unregister_model_event_callback(ModelEventType.TrainingEnd, self._on_training_end)

    def _run(self) -> None:
        if self.search.budget_aware:
            self._run_budget_aware()
            return
        while True:
            with self._lock:
                if self.search.finished:
                    break
                batch = self.search.ask()
            for candidate in batch:
                if not self.wait_for_resource():
                    _log.warning("NNI's trial budget (maxTrialNumber / maxExperimentDuration) is spent before the "
                                 "search finished; stopping with what has been found. Summary: %s",
                                 self.search.summary())
                    return
                self._submit(candidate)
            if not batch:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        _log.info("search finished: %s", self.search.summary())

    def _run_budget_aware(self) -> None:
        """One slot at a time: wait for a free slot, then ask with what is left of the budget."""
        while True:
            with self._lock:
                if self.search.finished:
                    break
            if not self.wait_for_resource():
                _log.warning("NNI's trial budget is spent before the search finished; stopping with what has been "
                             "found. Summary: %s", self.search.summary())
                return
            known = self.budget_source() if self.budget_source is not None else None
            budget = Budget(free_slots=1, seconds_left=known.seconds_left if known else None,
                            trials_left=known.trials_left if known else None)
            with self._lock:
                batch = self.search.ask(budget)
            for candidate in batch:
                self._submit(candidate)
            if not batch:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        _log.info("search finished: %s", self.search.summary())

    def _submit(self, candidate: Candidate) -> None:
        model = self.model_space.freeze({ARCHITECTURE_LABEL: candidate.to_dict()})
        with self._lock:
            self._models[candidate.id] = model
            if candidate.id not in self._submitted:  # (a job handed out again after a lost trial: once)
                self._submitted.append(candidate.id)
        _log.info("submitting candidate %s (%s, step %d, parent %s, %d epochs)", candidate.id, candidate.role,
                  candidate.step, candidate.parent, candidate.epochs)
        self.engine.submit_models(model)

    # ---- events (a listener thread with the training-service engine; inside submit_models sequentially) --

    def _on_final_metric(self, event: FinalMetricEvent) -> None:
        metric = flat_result(event.metric)  # the trial sent it in its portal form (nni_nas_ext.results)
        paired = _sample_candidate_id(event.model)
        if not isinstance(metric, Mapping) or not isinstance(metric.get("candidate"), str):
            _log.warning("ignoring a final result that does not name its candidate (NNI paired it with %s): %r",
                         paired, metric)
            return
        reported = metric["candidate"]
        if paired is not None and paired != reported:
            # NNI 3.0 bug 1: the trial trained another candidate than NNI recorded for it.
            _log.warning("NNI paired the result of candidate %s with the parameters of %s (NNI 3.0's FIFO parameter "
                         "bug; run `python -m nni_nas_ext.nni.nni_patch apply`); using the trial's own report",
                         reported, paired)
            with self._lock:
                self.mismatches.append((paired, reported))
        with self._lock:
            if "failed" in metric:
                self.search.tell(reported, None, failure=str(metric["failed"]))
            else:
                self.search.tell(reported, dict(metric))
        self._wake.set()

    def _on_training_end(self, event: TrainingEndEvent) -> None:
        if event.status == ModelStatus.Trained:
            return
        # A trial that died without reporting (killed, out of memory): only NNI's pairing names it.
        paired = _sample_candidate_id(event.model)
        if paired is not None:
            with self._lock:
                self.search.tell(paired, None, failure=f"the trial ended with status {event.status.value} "
                                                       f"without a result")
        self._wake.set()

    # ---- results and state ----------------------------------------------------------------------------

    @property
    def submitted(self) -> list[str]:
        """Ids of the candidates sent to NNI, in order."""
        with self._lock:
            return list(self._submitted)

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """The successful final results of the candidates sent to NNI, by candidate id, in submission order (read
        from the search's ledger: copies)."""
        with self._lock:
            found = {cid: self.search.result(cid) for cid in self._submitted}
        return {cid: dict(r) for cid, r in found.items() if r is not None}

    def sample_of(self, candidate_id: str) -> dict[str, Any] | None:
        """The NNI sample of a candidate the search proposed (``None``: unknown), rebuilt from the search's ledger:
        the bridge keeps the candidate's id, not a copy."""
        with self._lock:
            job = self.search.job(candidate_id)
        return None if job is None else {ARCHITECTURE_LABEL: job.to_dict()}

    @staticmethod
    def candidate_of(model: ExecutableModelSpace) -> str | None:
        """The id of the candidate a model (a frozen sample of this strategy) carries."""
        return _sample_candidate_id(model)

    def list_models(self, sort: bool = True, limit: int | None = None) -> Iterator[ExecutableModelSpace]:
        """The trained candidates' models: the winner's final training first, then by validation accuracy.

        NNI's own ordering sorts by the engine's metric, which NNI may have paired with the wrong trial
        (bug 1), and cannot sort dict metrics; this one uses the results the trials reported about
        themselves. With ``sort=False``: every submitted candidate, in submission order.
        """
        if sort:
            results = self.results
            ids = sorted(results, key=lambda c: (results[c].get("role") == "final", results[c]["default"]),
                         reverse=True)
        else:
            ids = self.submitted
        samples = [self.sample_of(c) for c in ids]
        for sample in [s for s in samples if s is not None][:limit]:
            yield self.model_space.freeze(sample)

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"search": self.search.state_dict(), "submitted": list(self._submitted),
                    "mismatches": [list(m) for m in self.mismatches]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        with self._lock:
            self.search.load_state_dict(state_dict["search"])
            # (states saved before the ledger was the search's alone held copies: "candidates" by id, "results")
            self._submitted = [str(c) for c in state_dict.get("submitted", state_dict.get("candidates", {}))]
            # Candidates whose trials NNI had when the experiment stopped are not handed out again: `nnictl resume`
            # re-runs those trials itself (and a re-run of a finished one re-reports its stored result). Those the
            # search had handed out but that were never submitted (the stop came first) go out again.
            pending = list(self.search.pending)
            unsubmitted = [cid for cid in pending if cid not in self._submitted]
            if unsubmitted:
                self.search.reissue_pending(unsubmitted)
            if pending:
                _log.info("restored with %d candidate(s) pending: %s re-run by NNI, %s handed out again",
                          len(pending), [c for c in pending if c not in unsubmitted] or "none", unsubmitted or "none")
            self.mismatches = [tuple(m) for m in state_dict.get("mismatches", [])]  # type: ignore[misc]
