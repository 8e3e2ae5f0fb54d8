"""NNI's training-service execution engine, served by the bridge's one command loop.

NNI's ``TrainingServiceExecutionEngine`` would open a second connection to the manager, which replaces the
bridge's first one, and its listener thread dies on the ``ImportData`` and ``AddCustomizedTrialJob`` commands
that ``nnictl resume`` sends. :func:`make_engine` builds the same engine on the bridge's channel instead; the
bridge's command loop (:mod:`.loop`) feeds its callbacks.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nni.nas.execution import TrainingServiceExecutionEngine

    from .bridge import StrategyBridge

__all__ = ["make_engine"]


def make_engine(binding: Any, channel: Any, bridge: StrategyBridge) -> TrainingServiceExecutionEngine:
    """NNI's ``TrainingServiceExecutionEngine`` on the bridge's command channel (defined here: its base class
    imports ``nni.nas`` and torch, which the bridge imports only after connecting)."""
    from nni.nas.execution import TrainingServiceExecutionEngine
    from nni.nas.execution.engine import ExecutionEngine

    class BridgeExecutionEngine(TrainingServiceExecutionEngine):
        """NNI's training-service engine without its own connection to the manager.

        The parent's constructor would open a second connection (which replaces the bridge's at the manager)
        and start a listener thread that dies on commands it does not know. This constructor sets the same
        fields; the bridge feeds the parent's callbacks. Everything else is NNI's code.
        """

        def __init__(self) -> None:
            ExecutionEngine.__init__(self)
            self.nodejs_binding = binding
            self.fetch_intermediates = True
            self._models = {}
            self._submitted_cache = {}
            self._current_parameter_id = None
            self._workers = 0
            self._channel = channel
            self._stopped = False

        def submit_models(self, *models: Any) -> None:
            """NNI's ``submit_models``, except for what is sent: :meth:`StrategyBridge.trial_parameters`."""
            from nni.nas.space import ModelStatus

            self._check_running()
            for model in models:
                parameter_id = self._next_parameter_id()
                parameters = bridge.trial_parameters(parameter_id, model)
                self._models[parameter_id] = weakref.ref(model)
                self._submitted_cache[parameter_id] = model
                self._channel.send_trial(parameter_id=parameter_id, parameters=parameters)
                model.status = ModelStatus.Training
                self._workers -= 1
                bridge.record_submission(parameter_id, model)

        def _next_parameter_id(self) -> int:
            # NNI's guesses from the REST trial list, where a customized trial has no id (TypeError in max())
            if self._current_parameter_id is None:
                known = [int(k) for k in (bridge.state.trials if bridge.state else {})]
                known += [p["parameter_id"] for _, p in bridge.listed_parameters()
                          if isinstance(p.get("parameter_id"), int)]
                self._current_parameter_id = max(known, default=-1)
            self._current_parameter_id += 1
            return self._current_parameter_id

        def list_models(self, status: Any = None) -> Any:
            """The search's own models, from the bridge's records (NNI's version unpickles the parameters that
            the REST API lists, customized trials included)."""
            from nni.nas.space import ModelStatus

            records = dict(bridge.state.trials) if bridge.state else {}
            for key, record in records.items():
                parameter_id = int(key)
                model = self._find_reference_model(parameter_id)
                if model is None:
                    model = bridge.model_for(parameter_id)
                    if model is None:
                        continue
                    if record.get("status") == "finished":
                        model.status = ModelStatus.Trained
                        model.metrics.final = record.get("metric")
                    elif record.get("status") in ("submitted", "resumed"):
                        model.status = ModelStatus.Training
                    else:
                        model.status = ModelStatus.Failed
                if status is None or model.status == status:
                    yield model

        def budget_available(self) -> bool:
            # after Terminate the strategy ends quietly instead of failing on a stopped engine
            return not self._stopped and super().budget_available()

        def shutdown(self) -> None:
            self._stopped = True

    return BridgeExecutionEngine()
