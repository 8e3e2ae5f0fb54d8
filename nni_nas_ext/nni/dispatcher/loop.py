"""The bridge's command loop: one handler per command of the NNI manager, and the records they keep.

One loop serves both the bridge and NNI's engine (:mod:`.engine`): it receives every command on the bridge's
connection, records what the search sent and heard in the :class:`~.state.BridgeState`, and feeds the
engine's callbacks. On ``nnictl resume`` it replays to the strategy the results that reached NNI but not the
strategy (``ImportData``), and routes the trials that NNI re-runs back to it (``AddCustomizedTrialJob``).
Metrics and trial ends of trials the search did not create (customized trials) are ignored.

Import-light: ``nni.nas`` and the REST client are imported by the handlers, after the bridge connected.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from nni.runtime.tuner_command_channel import CommandType

from nni_nas_ext.results import flat_result

from .state import BridgeState, plain_copy

if TYPE_CHECKING:
    from nni.experiment import Experiment
    from nni.nas.execution import TrainingServiceExecutionEngine
    from nni.nas.nn.pytorch import ModelSpace
    from nni.nas.space import ExecutableModelSpace
    from nni.nas.strategy import Strategy

__all__ = ["CommandLoop"]

_log = logging.getLogger(__name__)


def _load_metric(data: Any) -> Any:
    """A metric as the manager passes it on: the trial's ``nni.dump`` text (JSON for the plain values that
    trials report), possibly JSON-encoded once more by the REST API, a final result in its portal form
    (:func:`nni_nas_ext.results.flat_result` undoes it). Decoded with ``json`` only: anything that is not JSON
    stays a string; nothing is unpickled."""
    value = data
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return flat_result(value)


class CommandLoop:
    """The command loop of :class:`~nni_nas_ext.nni.dispatcher.bridge.StrategyBridge` (a mixin of it).

    The bridge sets the attributes below in its constructor and when the search is built, and provides
    ``resuming``, :meth:`on_resume`, ``_start_strategy`` and ``_save_state``.
    """

    _channel: Any
    _lock: threading.RLock
    _initialized: bool
    _terminated: bool
    _resumed_models: dict[int, ExecutableModelSpace]
    _sent_parameter_ids: set[int]
    _received: dict[str, int]
    _exec_space: ExecutableModelSpace | None
    strategy: Strategy | None
    model_space: ModelSpace | None
    engine: TrainingServiceExecutionEngine | None
    binding: Experiment | None
    state: BridgeState | None
    resuming: bool

    def on_resume(self, state: BridgeState, imported: list[dict[str, Any]]) -> None:
        raise NotImplementedError  # StrategyBridge.on_resume

    def _start_strategy(self) -> None:
        raise NotImplementedError  # StrategyBridge._start_strategy

    def _save_state(self) -> None:
        raise NotImplementedError  # StrategyBridge._save_state

    # ---- serving commands --------------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self.engine is not None

        while True:
            command, raw = self._channel._receive()
            if command is None or command is CommandType.Terminate:
                _log.info("Terminate received: saving state and exiting")
                self._terminated = True
                return
            try:
                self._handle(command, raw)
            except Exception:  # noqa: BLE001 - one bad command must not kill the dispatcher
                _log.exception("Failed to handle command %s", command)

    def _handle(self, command: CommandType, raw: str) -> None:
        from nni.runtime.tuner_command_channel.command_type import RequestTrialJobs

        engine = self.engine
        assert engine is not None
        if command is CommandType.Ping:
            return
        _log.debug("Command %s: %.300s", command, raw)
        if command is CommandType.Initialize:
            self._on_initialize()
        elif command is CommandType.RequestTrialJobs:
            engine._request_trial_jobs_callback(RequestTrialJobs(int(json.loads(raw))))
        elif command is CommandType.ReportMetricData:
            self._on_metric(json.loads(raw))  # JSON only: a metric is data, never unpickled
        elif command is CommandType.TrialEnd:
            self._on_trial_end(json.loads(raw))
        elif command is CommandType.ImportData:
            self._on_import_data(json.loads(raw))
        elif command is CommandType.AddCustomizedTrialJob:
            self._on_resumed_trials(json.loads(raw))
        elif command is CommandType.UpdateSearchSpace:
            pass  # the search space on the portal is informative only; the strategy owns the space
        else:
            _log.warning("Ignoring unsupported command %s", command)

    def _on_initialize(self) -> None:
        """``Initialize``: answer, then (once) show the space and start the strategy."""
        self._channel.send_initialized()
        if not self._initialized:
            self._initialized = True
            if not self.resuming:
                self._send_search_space()
            self._start_strategy()

    def _on_metric(self, data: dict[str, Any]) -> None:
        """``ReportMetricData``: record a final metric and pass every metric of the search's trials to the engine."""
        from nni.runtime.tuner_command_channel.command_type import ReportMetricData

        assert self.engine is not None
        if "value" in data:
            data["value"] = _load_metric(data["value"])
        fields = ("parameter_id", "type", "sequence", "value", "trial_job_id", "parameter_index")
        metric = ReportMetricData(**{k: data[k] for k in fields if k in data})
        if not self._is_ours(metric.parameter_id):
            _log.warning("Ignoring a metric of trial %s with parameter id %r: the search never sent that "
                         "parameter (a customized trial?)", metric.trial_job_id, metric.parameter_id)
            return
        with self._lock:
            if metric.trial_job_id is not None:
                self._received[metric.trial_job_id] = int(metric.parameter_id)
            if metric.type == "FINAL":
                self._record(metric.parameter_id, status="finished", trial_job_id=metric.trial_job_id,
                             source="metric", **self._metric_copy(metric.value))
            self.engine._report_metric_data_callback(metric)
            if metric.type == "FINAL":
                self._save_state()

    def _on_trial_end(self, data: dict[str, Any]) -> None:
        """``TrialEnd``: record how a trial of the search ended and tell the engine."""
        from nni.runtime.tuner_command_channel.command_type import TrialEnd

        assert self.engine is not None
        trial_job_id = data["trial_job_id"]
        parameter_id = json.loads(data["hyper_params"]).get("parameter_id")
        with self._lock:
            if not self._is_ours(self._received.get(trial_job_id, parameter_id)):
                _log.info("Trial %s (parameter id %r) ended %s; the search did not create it (a customized "
                          "trial), so nothing is recorded", trial_job_id, parameter_id, data.get("event"))
                return
            # NNI pairs the trial with the parameter it meant to send; a metric of the trial names the one
            # it really received (they differ under NNI 3.0's FIFO bug, see nni_patch)
            received = self._received.get(trial_job_id)
            if received is not None and received != parameter_id:
                _log.warning("Trial %s ran parameter %d but NNI pairs it with parameter %s (NNI 3.0 FIFO "
                             "parameter bug; `python -m nni_nas_ext.nni.nni_patch apply` fixes it)",
                             trial_job_id, received, parameter_id)
                parameter_id = received
            end = TrialEnd(trial_job_id=trial_job_id, parameter_ids=[parameter_id], event=data["event"])
            record = self.state.trials.get(str(parameter_id)) if self.state else None
            if record is not None:
                record.setdefault("trial_job_id", end.trial_job_id)
                record["end_event"] = end.event
                if record.get("status") != "finished":
                    record["status"] = end.event
            self.engine._trial_end_callback(end)
            self._save_state()

    def _send_search_space(self) -> None:
        """Show the space on the web portal, as NasExperiment does (informative only)."""
        assert self.model_space is not None and self.binding is not None
        legacy: dict[str, Any] = {}
        try:
            for label, mutable in self.model_space.simplify().items():
                try:
                    legacy[label] = mutable.as_legacy_dict()
                except NotImplementedError:
                    legacy[label] = {"_type": "choice", "_value": [type(mutable).__name__]}
            self.binding.update_search_space(legacy)
        except Exception:  # noqa: BLE001
            _log.warning("Could not show the search space on the web portal", exc_info=True)

    # ---- resume --------------------------------------------------------------------------------------------

    def _on_import_data(self, entries: list[dict[str, Any]]) -> None:
        """``ImportData``: every trial NNI knows with a final metric, ``{parameter, value, trialJobId}``.

        Results the strategy has not heard (the trial finished while the experiment was stopping) are recorded
        and replayed to it as final-metric events. The parameter id is taken from the metric record, which
        carries the id of the parameter the trial really received (NNI's trial/parameter pairing can be
        wrong, field notes bug 1).
        """
        assert self.state is not None and self.binding is not None and self.engine is not None
        from nni.nas.execution.event import FinalMetricEvent, TrainingEndEvent
        from nni.nas.space import ModelStatus

        known = {rec.get("trial_job_id") for rec in self.state.finished().values()}
        unknown = [e["trialJobId"] for e in entries if e.get("trialJobId") not in known]
        _log.info("ImportData: %d finished trial(s) from NNI, %d not yet in the bridge's records",
                  len(entries), len(unknown))
        if unknown:
            finals: dict[str, dict[str, Any]] = {}
            for metric in self._rest_get("/metric-data"):
                if metric.get("type") == "FINAL":
                    finals[metric["trialJobId"]] = metric
            for trial_job_id in unknown:
                final = finals.get(trial_job_id)
                if final is None:
                    continue
                parameter_id = int(final["parameterId"])
                value = _load_metric(final["data"])
                with self._lock:
                    record = self.state.trials.get(str(parameter_id))
                    replay = record is not None and record.get("status") != "finished"
                    self._record(parameter_id, status="finished", trial_job_id=trial_job_id, source="import",
                                 **self._metric_copy(value))
                    model = self.model_for(parameter_id) if replay else None
                    if model is not None:
                        _log.info("Replaying the result of trial %s (parameter %d) to the strategy",
                                  trial_job_id, parameter_id)
                        model.status = ModelStatus.Training
                        self.engine.dispatch_model_event(FinalMetricEvent(model, value))
                        self.engine.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Trained))
                    self._save_state()
        self.on_resume(self.state, entries)
        self._fail_lost_trials()

    def _fail_lost_trials(self) -> None:
        """After ``ImportData``: a parameter the search sent but of which NNI made no trial (the stop came between
        the dispatcher's ``TR`` and the manager's submission) ends as a trial lost without a result, so that the
        strategy (its ``FailureHandler``) hands the candidate out again instead of waiting for it forever.

        NNI's trial list is read only for the parameter ids it holds: nothing in it is run or trusted further."""
        assert self.state is not None and self.engine is not None
        from nni.nas.execution.event import TrainingEndEvent
        from nni.nas.space import ModelStatus

        listed = {p["parameter_id"] for _, p in self.listed_parameters()
                  if isinstance(p.get("parameter_id"), int) and not isinstance(p.get("parameter_id"), bool)}
        with self._lock:
            lost = sorted(int(k) for k, v in self.state.trials.items()
                          if v.get("status") == "submitted" and int(k) not in listed)
            for parameter_id in lost:
                self._record(parameter_id, status="LOST")
        if not lost:
            return
        _log.warning("Parameter id(s) %s were sent to NNI just before the stop but NNI made no trial of them: "
                     "their candidates count as lost without a result", lost)
        for parameter_id in lost:
            model = self.model_for(parameter_id)
            if model is not None:
                model.status = ModelStatus.Training
                self.engine.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Failed))
        self._save_state()

    def _on_resumed_trials(self, entries: list[dict[str, Any]]) -> None:
        """``AddCustomizedTrialJob``: trials that were running at ``nnictl stop`` and that NNI now re-runs with
        their old parameter ids; route their results to the strategy like those of fresh submissions."""
        assert self.state is not None and self.engine is not None
        from nni.nas.space import ModelStatus

        for entry in entries:
            parameter_id = entry.get("parameter_id")
            if parameter_id is None:
                continue
            parameter_id = int(parameter_id)
            model = self.model_for(parameter_id)
            with self._lock:
                if model is not None:
                    model.status = ModelStatus.Training
                    self._resumed_models[parameter_id] = model
                    self.engine._models[parameter_id] = weakref.ref(model)
                record = self.state.trials.get(str(parameter_id))
                if record is None or record.get("status") != "finished":
                    self._record(parameter_id, status="resumed", **self._job_reference(model))
        _log.info("NNI re-runs %d trial(s) of the stopped experiment: parameter ids %s", len(entries),
                  [e.get("parameter_id") for e in entries])
        self._save_state()

    # ---- what NNI lists, what the search sent ------------------------------------------------------------

    def _rest_get(self, api: str) -> Any:
        """GET from the manager's REST API (raw JSON: ``Experiment.list_trial_jobs`` fails on trials without
        a start time)."""
        from nni.experiment import rest

        assert self.binding is not None
        return rest.get(self.binding.port, api, self.binding.url_prefix)

    def listed_parameters(self, trials: list[dict[str, Any]] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(trial_job_id, packed parameter)`` for every parameter of every trial NNI lists (of ``trials``, one
        answer of ``GET /trial-jobs``, where the caller already holds it; otherwise asked now)."""
        result = []
        for trial in self._rest_get("/trial-jobs") if trials is None else trials:
            for text in trial.get("hyperParameters") or []:
                try:
                    result.append((trial["trialJobId"], json.loads(text)))
                except (TypeError, ValueError):
                    continue
        return result

    def _is_ours(self, parameter_id: Any) -> bool:
        """Whether the search sent ``parameter_id`` (this session or, after a resume, an earlier one)."""
        if isinstance(parameter_id, bool) or not isinstance(parameter_id, int):
            return False
        return parameter_id in self._sent_parameter_ids or \
            (self.state is not None and str(parameter_id) in self.state.trials)

    def model_for(self, parameter_id: int) -> ExecutableModelSpace | None:
        """The model of a parameter the search sent, rebuilt from the sample in the bridge's own records.

        Never from what NNI's REST API lists: that would trust whoever posted it (and NNI's format would have to
        be unpickled)."""
        record = self.state.trials.get(str(parameter_id)) if self.state is not None else None
        sample = record.get("sample") if record else None
        ledger = self._ledger()
        if sample is None and record and isinstance(record.get("candidate"), str) and ledger is not None:
            sample = ledger.sample_of(record["candidate"])
        if not isinstance(sample, dict) or self._exec_space is None:
            return None
        try:
            return self._exec_space.freeze(sample)
        except Exception:  # noqa: BLE001
            _log.warning("Could not rebuild the model of parameter %d from its recorded sample", parameter_id,
                         exc_info=True)
            return None

    def record_submission(self, parameter_id: int, model: ExecutableModelSpace) -> None:
        """Called by the engine in the strategy's thread right after a model is sent to NNI."""
        with self._lock:
            self._sent_parameter_ids.add(parameter_id)
            self._record(parameter_id, status="submitted", **self._job_reference(model))
            self._save_state()

    # ---- one ledger: the strategy's --------------------------------------------------------------------------

    def _ledger(self) -> Any:
        """The strategy, when it keeps the ledger of what it proposed and learnt (ours,
        :class:`~nni_nas_ext.nni.nas_strategy.MorphismStrategy`: the search's ``job`` and ``result``); else None.

        With a ledger, the bridge's record of a parameter names the candidate and copies neither its sample nor its
        final metric. NNI's own strategies (Random, RegularizedEvolution...) keep no ledger of their models: for
        them the record holds the sample (to rebuild the model NNI re-runs after a resume) and the metric (their
        ``list_models``)."""
        from nni_nas_ext.nni.nas_strategy import MorphismStrategy

        return self.strategy if isinstance(self.strategy, MorphismStrategy) else None

    def _job_reference(self, model: ExecutableModelSpace | None) -> dict[str, Any]:
        """What a record keeps of the model sent: the candidate's id (a strategy with a ledger) or the sample."""
        if model is None:
            return {}
        ledger = self._ledger()
        if ledger is not None:
            return {"candidate": ledger.candidate_of(model)}
        return {"sample": plain_copy(getattr(model, "sample", None))}

    def _metric_copy(self, value: Any) -> dict[str, Any]:
        """The final metric for a record: none where the strategy's ledger holds it."""
        return {} if self._ledger() is not None else {"metric": plain_copy(value)}

    def _record(self, parameter_id: int, **fields: Any) -> None:
        assert self.state is not None
        self.state.record(parameter_id, **fields)
