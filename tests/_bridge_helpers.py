"""The nnictl bridge's test doubles: the tiny search that real experiments run, and a scripted NNI manager.

The module doubles as the code the experiments of ``test_bridge_e2e.py`` (and ``test_nni_patch.py``,
``test_security_e2e.py``) run: ``nnictl`` starts :class:`TinyBridge` from this file (``codeDirectory`` is
this folder, :data:`TINY_TUNER`) and each trial imports :data:`TinySpace` and :func:`evaluate_tiny` from it.
The NNI dispatcher imports this module *before* connecting to the manager, which waits only 10 s: so nothing
heavy is imported at module level, and :data:`TinySpace` (a torch module) is defined on first access.

For the fast in-process tests (``test_bridge_in_process.py``, ``test_bridge_security.py``) it plays the NNI
manager's side of the command channel: :func:`start_bridge` runs the bridge in a thread against a fake
channel and a fake REST client, :func:`final_metric` and :func:`trial_end` make the manager's commands,
:func:`stop_bridge` terminates it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from nni_nas_ext.nni.dispatcher import BridgeClassArgsValidator, StrategyBridge

TESTS_DIR = Path(__file__).resolve().parent
WIDTHS = (2, 3, 4)
ACTIVATIONS = ("relu", "tanh")
STRATEGIES = ("random", "grid")


# ---- what the experiments run ---------------------------------------------------------------------------

def _define_tiny_space() -> type:
    import torch
    from nni import choice
    from nni.mutable import ensure_frozen
    from nni.nas.nn.pytorch import ModelSpace

    class TinySpace(ModelSpace):
        """Six architectures: a width and an activation; the "network" is one linear layer."""

        def __init__(self) -> None:
            super().__init__()
            self.width = ensure_frozen(self.add_mutable(choice("width", list(WIDTHS))))
            self.act = ensure_frozen(self.add_mutable(choice("act", list(ACTIVATIONS))))
            self.layer = torch.nn.Linear(1, 1)

        def forward(self, x: Any) -> Any:
            return self.layer(x)

    TinySpace.__module__ = __name__
    TinySpace.__qualname__ = "TinySpace"
    return TinySpace


def __getattr__(name: str) -> Any:  # PEP 562: TinySpace is built on first use (it imports torch)
    if name == "TinySpace":
        cls = _define_tiny_space()
        globals()["TinySpace"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def evaluate_tiny(model: Any, sleep: float = 0.0) -> None:
    """Report at once a self-describing metric: what this trial really ran."""
    import nni

    time.sleep(sleep)
    score = model.width / 10 + (0.05 if model.act == "tanh" else 0.0)
    nni.report_final_result({"default": score, "width": model.width, "act": model.act})


class TinyValidator(BridgeClassArgsValidator):
    def validate(self, class_args: dict[str, Any]) -> None:
        unknown = sorted(set(class_args) - {"strategy", "seed", "trial_sleep"})
        if unknown:
            raise ValueError(f"unknown classArgs {unknown}; allowed: strategy, seed, trial_sleep")
        strategy = class_args.get("strategy", "random")
        if strategy not in STRATEGIES:
            raise ValueError(f"classArgs.strategy must be one of {list(STRATEGIES)}, got {strategy!r}")


class TinyBridge(StrategyBridge):
    class_args_validator = TinyValidator
    trial_format = "nni"  # NNI's own models: trials run NNI's trial command

    def build(self, class_args: dict[str, Any]) -> tuple[Any, Any, Any]:
        from nni.nas.evaluator import FunctionalEvaluator
        from nni.nas.strategy import GridSearch, Random

        seed = int(class_args.get("seed", 0))
        strategy = Random(seed=seed) if class_args.get("strategy", "random") == "random" \
            else GridSearch(shuffle=True, seed=seed)
        space = __getattr__("TinySpace")()
        return space, FunctionalEvaluator(evaluate_tiny, sleep=float(class_args.get("trial_sleep", 0.0))), strategy


TINY_TUNER = {"codeDirectory": str(TESTS_DIR), "className": f"{__name__}.TinyBridge"}


# ---- in-process: the bridge against a scripted NNI manager ------------------------------------------------

def executable_tiny_space() -> Any:
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.space import SimplifiedModelSpace

    return SimplifiedModelSpace.from_model(__getattr__("TinySpace")(), FunctionalEvaluator(evaluate_tiny))


class _FakeChannel:
    """The manager's side of the tuner command channel, played by the test."""

    def __init__(self) -> None:
        import queue

        self.incoming: Any = queue.Queue()
        self.sent: list[tuple[Any, Any]] = []
        self._cond = __import__("threading").Condition()

    def push(self, command: Any, content: Any = "") -> None:
        self.incoming.put((command, content if isinstance(content, str) else json.dumps(content)))

    def _receive(self) -> tuple[Any, str]:
        return self.incoming.get(timeout=60)

    def _send(self, command: Any, data: Any) -> None:
        with self._cond:
            self.sent.append((command, data))
            self._cond.notify_all()

    def send_initialized(self) -> None:
        from nni.runtime.tuner_command_channel import CommandType

        self._send(CommandType.Initialized, "")

    def send_trial(self, parameter_id: int, parameters: Any, **_: Any) -> None:
        import nni
        from nni.runtime.tuner_command_channel import CommandType

        self._send(CommandType.NewTrialJob, {"parameter_id": parameter_id, "parameter_source": "algorithm",
                                             "parameters": json.loads(nni.dump(parameters)), "parameter_index": 0})

    def send_no_more_trial_jobs(self) -> None:
        from nni.runtime.tuner_command_channel import CommandType

        self._send(CommandType.NoMoreTrialJobs, "")

    def disconnect(self) -> None:
        pass

    def wait_sent(self, command: Any, count: int, timeout: float = 30) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len([d for c, d in self.sent if c == command]) >= count, timeout)
            found = [d for c, d in self.sent if c == command]
        assert ok, f"only {len(found)} {command} sent: {self.sent}"
        return found


class _FakeBinding:
    """The REST client of the engine (``nni.experiment.Experiment``), answering like a running experiment."""

    port, url_prefix, id = 0, None, "inproc"

    def __init__(self, trial_jobs: list[dict[str, Any]], status: str = "RUNNING") -> None:
        self.trial_jobs = trial_jobs
        self.status = status

    def get_status(self) -> str:
        return self.status

    def list_trial_jobs(self) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(trialJobId=t["trialJobId"], hyperParameters=[
            SimpleNamespace(**json.loads(text)) for text in t["hyperParameters"]]) for t in self.trial_jobs]

    def get_job_statistics(self) -> list[Any]:
        return []

    def update_search_space(self, space: Any) -> None:
        self.space = space

    def get_experiment_profile(self) -> dict[str, Any]:
        return {"params": {"maxTrialNumber": 100}}

    def update_max_trial_number(self, value: int) -> None:
        self.max_trial_number = value


def _recording_random(seed: int) -> Any:
    from nni.nas.execution.event import ModelEventType
    from nni.nas.strategy import Random

    class RecordingRandom(Random):
        """NNI's Random, remembering the final metrics and the trial ends it hears."""

        def _initialize(self, model_space: Any, engine: Any) -> Any:
            self.heard: list[tuple[dict[str, Any], Any]] = []
            self.ended: list[tuple[dict[str, Any], str]] = []
            engine.register_model_event_callback(ModelEventType.FinalMetric,
                                                 lambda event: self.heard.append((event.model.sample, event.metric)))
            engine.register_model_event_callback(
                ModelEventType.TrainingEnd, lambda event: self.ended.append((event.model.sample, event.status.value)))
            return model_space

    RecordingRandom.__module__ = __name__
    RecordingRandom.__qualname__ = "RecordingRandom"
    globals()["RecordingRandom"] = RecordingRandom
    return RecordingRandom(seed=seed)


class _InProcessBridge(TinyBridge):
    rest: dict[str, Any] = {}

    def _make_binding(self) -> Any:
        return _FakeBinding(self.rest.get("/trial-jobs", []))

    def _rest_get(self, api: str) -> Any:
        return self.rest[api]

    def build(self, class_args: dict[str, Any]) -> tuple[Any, Any, Any]:
        space, evaluator, _ = super().build(class_args)
        return space, evaluator, _recording_random(int(class_args.get("seed", 0)))


def start_bridge(monkeypatch: pytest.MonkeyPatch, rest: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    import threading

    import nni.runtime.msg_dispatcher_base as base

    monkeypatch.setattr(base, "dispatcher_env_vars",
                        base.dispatcher_env_vars._replace(NNI_TUNER_COMMAND_CHANNEL="ws://_unittest_bridge"))
    _InProcessBridge.rest = rest or {"/trial-jobs": []}  # a fresh experiment: no trial yet
    bridge = _InProcessBridge(strategy="random", seed=4)
    channel = _FakeChannel()
    bridge._channel = channel
    bridge.exit_code = None  # the bridge's SystemExit code, as the dispatcher process would exit with it

    def run() -> None:
        try:
            bridge.run()
        except SystemExit as exc:  # a thread cannot exit the process: kept for the test to assert
            bridge.exit_code = exc.code

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return bridge, channel, thread


def final_metric(parameter_id: int, trial_job_id: str, value: Any) -> dict[str, Any]:
    import nni

    return {"parameter_id": parameter_id, "trial_job_id": trial_job_id, "type": "FINAL", "sequence": 0,
            "value": nni.dump(value)}


def trial_end(parameter_id: int, trial_job_id: str, event: str = "SUCCEEDED") -> dict[str, Any]:
    return {"trial_job_id": trial_job_id, "event": event,
            "hyper_params": json.dumps({"parameter_id": parameter_id, "parameters": {}})}


def stop_bridge(channel: _FakeChannel, thread: Any) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    channel.push(CommandType.Terminate)
    thread.join(30)
    assert not thread.is_alive()
