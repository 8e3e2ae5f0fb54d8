"""Tests of the nnictl bridge: real ``nnictl`` experiments (marked e2e) with NNI's own strategies on a tiny space,
and fast in-process tests that play the NNI manager's side of the command channel (resume paths that a real
experiment cannot produce on demand).

The module doubles as the code the experiments run: ``nnictl`` starts :class:`TinyBridge` from this file
(``codeDirectory`` is this folder) and each trial imports :data:`TinySpace` and :func:`evaluate_tiny` from it.
The NNI dispatcher imports this module *before* connecting to the manager, which waits only 10 s: so nothing
heavy is imported at module level, and :data:`TinySpace` (a torch module) is defined on first access.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from nnictl_harness import NAS_TRIAL_COMMAND, NnictlExperiment, decode_metric, experiment_config, private_env
from nni_nas_ext.nni.dispatcher import (
    STATE_FILE_NAME,
    BridgeClassArgsValidator,
    StrategyBridge,
    register_with_nnictl,
    unregister_from_nnictl,
)

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


# ---- the tests ------------------------------------------------------------------------------------------

TINY_TUNER = {"codeDirectory": str(TESTS_DIR), "className": f"{__name__}.TinyBridge"}


def _config(root: Path, class_args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("trial_command", NAS_TRIAL_COMMAND)  # the tiny bridge sends NNI's own models
    return experiment_config(root, tuner={**TINY_TUNER, "classArgs": class_args},
                             trial_code_directory=TESTS_DIR, **kwargs)


def _state(exp: NnictlExperiment) -> dict[str, Any]:
    return json.loads((exp.exp_dir / "checkpoint" / STATE_FILE_NAME).read_text())


def _ran(metric: dict[str, Any]) -> tuple[int, str]:
    return metric["width"], metric["act"]


@pytest.mark.e2e
def test_random_search_runs_to_done(tmp_path: Path) -> None:
    config = _config(tmp_path, {"strategy": "random", "seed": 1}, trial_concurrency=2, max_trial_number=4)
    with NnictlExperiment.create(config, tmp_path) as exp:
        status = exp.wait_for_status(timeout=150)
        diag = exp.diagnostics
        assert status == "DONE", diag()
        trials = exp.trial_jobs()
        assert len(trials) == 4 and all(t["status"] == "SUCCEEDED" for t in trials), diag()

        # every trial reported; the metric says what the trial ran, the bridge's record what it submitted
        metrics = [m for m in exp.metric_data() if m["type"] == "FINAL"]
        assert len(metrics) == 4, diag()
        records = _state(exp)["trials"]
        assert len(records) == 4 and all(r["status"] == "finished" for r in records.values()), records
        for m in metrics:
            reported = decode_metric(m["data"])
            sample = records[str(m["parameterId"])]["sample"]
            assert _ran(reported) == (sample["width"], sample["act"]), (m, sample)
        # Random deduplicates: four different architectures
        assert len({(r["sample"]["width"], r["sample"]["act"]) for r in records.values()}) == 4
        assert "has finished" in exp.log("dispatcher.log"), diag()


@pytest.mark.e2e
def test_invalid_class_args_end_the_experiment_at_once(tmp_path: Path) -> None:
    # the registered-name form of the config: `tuner: {name: ...}` after `nnictl algo register`
    env = private_env(tmp_path, {"PYTHONPATH": str(TESTS_DIR)})
    name = "NniNasExtTinyBridge"
    assert register_with_nnictl(name, TinyBridge, TinyValidator, env=env) == "registered"
    assert register_with_nnictl(name, TinyBridge, TinyValidator, env=env) == "unchanged"
    with pytest.raises(ValueError, match="got 'bogus'"):
        TinyValidator().validate_class_args(strategy="bogus")
    try:
        config = experiment_config(tmp_path, tuner={"name": name, "classArgs": {"strategy": "bogus"}},
                                   trial_code_directory=TESTS_DIR, max_trial_number=2)
        started = time.monotonic()
        with NnictlExperiment.create(config, tmp_path, env={"PYTHONPATH": str(TESTS_DIR)}) as exp:
            # NNI 3.0's `nnictl create` does not run the registered classArgsValidator (only its legacy v1
            # config path does): the experiment starts, and the bridge's own validation ends it
            assert "bogus" not in exp.outputs[0], exp.outputs[0]
            status = exp.wait_for_status(timeout=60)
            elapsed = time.monotonic() - started
            diag = exp.diagnostics
            assert status == "ERROR", diag()
            assert elapsed < 45, f"took {elapsed:.0f} s\n{diag()}"
            assert exp.trial_jobs() == [], diag()
            expected = "classArgs.strategy must be one of ['random', 'grid'], got 'bogus'"
            for log in ("dispatcher.log", "nnictl_stderr.log", "nnimanager.log"):
                assert expected in exp.log(log), f"{log}\n{diag()}"
            # NNI's REST status (the portal's and nnictl's) carries the reason too: the `reason` edit of NNI
            assert any(expected in error for error in exp.status()["errors"]), (exp.status(), diag())
    finally:
        assert unregister_from_nnictl(name, env=env) == "unregistered"
        assert unregister_from_nnictl(name, env=env) == "absent"


@pytest.mark.e2e
def test_stop_and_resume_continue_without_rerunning_finished_trials(tmp_path: Path) -> None:
    config = _config(tmp_path, {"strategy": "random", "seed": 2, "trial_sleep": 1.0},
                     trial_concurrency=1, max_trial_number=4)
    with NnictlExperiment.create(config, tmp_path) as exp:
        exp.wait_until(lambda e: sum(t["status"] == "SUCCEEDED" for t in e.trial_jobs()) >= 2, timeout=120,
                       what="two finished trials")
        exp.stop()
        before = _state(exp)
        finished_before = {k: r for k, r in before["trials"].items() if r["status"] == "finished"}
        assert len(finished_before) >= 2, before

        exp.resume()
        status = exp.wait_for_status(timeout=150)
        diag = exp.diagnostics
        assert status == "DONE", diag()

        after = _state(exp)
        assert len(after["sessions"]) == 2, after["sessions"]
        metrics = exp.final_metrics()
        succeeded = [t for t in exp.trial_jobs() if t["status"] == "SUCCEEDED"]
        ran = [_ran(metrics[t["trialJobId"]]) for t in succeeded]
        # no architecture ran twice: the restored strategy did not redo the finished trials
        assert len(ran) == len(set(ran)), f"{ran}\n{diag()}"
        assert len(succeeded) == 4, diag()
        for key, record in finished_before.items():
            assert after["trials"][key]["status"] == "finished"
            assert after["trials"][key]["metric"] == record["metric"]
        assert "Resume: strategy state" in exp.log("dispatcher.log"), diag()


@pytest.mark.e2e
def test_a_search_that_ends_before_the_budget_ends_done(tmp_path: Path) -> None:
    # grid search over the six architectures, with room for ten trials
    config = _config(tmp_path, {"strategy": "grid"}, trial_concurrency=2, max_trial_number=10)
    with NnictlExperiment.create(config, tmp_path) as exp:
        status = exp.wait_for_status(timeout=150)
        assert status == "DONE", exp.diagnostics()
        trials = exp.trial_jobs()
        assert len(trials) == 6 and all(t["status"] == "SUCCEEDED" for t in trials), exp.diagnostics()
        assert exp.rest("experiment")["params"]["maxTrialNumber"] == 6
        ran = {_ran(m) for m in exp.final_metrics().values()}
        assert ran == {(w, a) for w in WIDTHS for a in ACTIVATIONS}


# ---- in-process: the bridge against a scripted NNI manager ------------------------------------------------

def test_state_codec_round_trips_nni_strategy_state() -> None:
    import numpy as np
    from nni.nas.strategy import Random

    from nni_nas_ext.nni.dispatcher import decode_state, encode_state

    strategy = Random(seed=5)
    space = _executable_tiny_space()

    def draw(random: Random) -> dict[str, Any]:
        return random._retry_helper.retry(random.random, space).sample

    for _ in range(3):
        draw(strategy)
    state = strategy.state_dict()
    encoded = encode_state(state)
    json.dumps(encoded, allow_nan=False)  # plain JSON
    decoded = decode_state(json.loads(json.dumps(encoded)))
    assert decoded["dedup_history"] == state["dedup_history"]
    assert decoded["random_state"][0] == state["random_state"][0]
    assert np.array_equal(decoded["random_state"][1], state["random_state"][1])
    restored = Random()
    restored.load_state_dict(decoded)
    assert [draw(restored) for _ in range(3)] == [draw(strategy) for _ in range(3)]

    odd = {1: (float("inf"), b"\x00"), "s": {frozenset({("a", 1)})}, "n": np.float32(0.5), "i": np.int64(3)}
    back = decode_state(json.loads(json.dumps(encode_state(odd))))
    assert back == odd and type(back["i"]) is np.int64 and type(back["n"]) is np.float32


def test_state_codec_names_what_it_cannot_store() -> None:
    from nni_nas_ext.nni.dispatcher import encode_state

    class Opaque:
        def __reduce__(self) -> Any:
            raise TypeError("no")

    with pytest.raises(TypeError, match=r"state\['history'\]\[1\]: a .*Opaque cannot be stored"):
        encode_state({"history": [1, Opaque()]})


def _executable_tiny_space() -> Any:
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
        """NNI's Random, remembering the final metrics it hears."""

        def _initialize(self, model_space: Any, engine: Any) -> Any:
            self.heard: list[tuple[dict[str, Any], Any]] = []
            engine.register_model_event_callback(ModelEventType.FinalMetric,
                                                 lambda event: self.heard.append((event.model.sample, event.metric)))
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


def _start_bridge(monkeypatch: pytest.MonkeyPatch, rest: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    import threading

    import nni.runtime.msg_dispatcher_base as base

    monkeypatch.setattr(base, "dispatcher_env_vars",
                        base.dispatcher_env_vars._replace(NNI_TUNER_COMMAND_CHANNEL="ws://_unittest_bridge"))
    _InProcessBridge.rest = rest or {"/trial-jobs": []}  # a fresh experiment: no trial yet
    bridge = _InProcessBridge(strategy="random", seed=4)
    channel = _FakeChannel()
    bridge._channel = channel
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    return bridge, channel, thread


def _metric(parameter_id: int, trial_job_id: str, value: Any) -> dict[str, Any]:
    import nni

    return {"parameter_id": parameter_id, "trial_job_id": trial_job_id, "type": "FINAL", "sequence": 0,
            "value": nni.dump(value)}


def _trial_end(parameter_id: int, trial_job_id: str, event: str = "SUCCEEDED") -> dict[str, Any]:
    return {"trial_job_id": trial_job_id, "event": event,
            "hyper_params": json.dumps({"parameter_id": parameter_id, "parameters": {}})}


def _stop(channel: _FakeChannel, thread: Any) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    channel.push(CommandType.Terminate)
    thread.join(30)
    assert not thread.is_alive()


def test_in_process_resume_replays_missed_results_and_routes_rerun_trials(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("NNI_MODE", raising=False)
    state_file = tmp_path / STATE_FILE_NAME

    # first session: three models submitted, one result heard, then nnictl stop
    bridge, channel, thread = _start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.RequestTrialJobs, 3)
    trials = channel.wait_sent(CommandType.NewTrialJob, 3)
    assert [t["parameter_id"] for t in trials] == [0, 1, 2]
    samples = {t["parameter_id"]: t["parameters"]["sample"] for t in trials}
    metric_a = {"default": 0.1, "width": samples[0]["width"], "act": samples[0]["act"]}
    channel.push(CommandType.ReportMetricData, _metric(0, "A", metric_a))
    channel.push(CommandType.TrialEnd, _trial_end(0, "A"))
    _stop(channel, thread)
    first = json.loads(state_file.read_text())
    assert {k: r["status"] for k, r in first["trials"].items()} == {"0": "finished", "1": "submitted",
                                                                     "2": "submitted"}

    # second session (nnictl resume): B (parameter 1) finished while stopping, C (parameter 2) is re-run
    import nni

    metric_b = {"default": 0.2, "width": samples[1]["width"], "act": samples[1]["act"]}
    metric_c = {"default": 0.3, "width": samples[2]["width"], "act": samples[2]["act"]}
    params = {t["parameter_id"]: t["parameters"] for t in trials}
    rest = {
        "/metric-data": [
            {"trialJobId": tid, "parameterId": str(pid), "type": "FINAL", "sequence": 0,
             "data": json.dumps(nni.dump(value))}
            for tid, pid, value in (("A", 0, metric_a), ("B", 1, metric_b))],
        "/trial-jobs": [
            {"trialJobId": tid, "status": status,
             "hyperParameters": [json.dumps({"parameter_id": pid, "parameters": params[pid]})]}
            for tid, pid, status in (("A", 0, "SUCCEEDED"), ("B", 1, "SUCCEEDED"), ("C", 2, "RUNNING"))],
    }
    monkeypatch.setenv("NNI_MODE", "resume")
    bridge, channel, thread = _start_bridge(monkeypatch, rest)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.ImportData, [{"parameter": params[0], "value": nni.dump(metric_a), "trialJobId": "A"},
                                          {"parameter": params[1], "value": nni.dump(metric_b), "trialJobId": "B"}])
    channel.push(CommandType.AddCustomizedTrialJob, [{"parameter_id": 2, "parameter_source": "resumed",
                                                      "parameters": params[2], "parameter_index": 0}])
    channel.push(CommandType.RequestTrialJobs, 1)
    new = channel.wait_sent(CommandType.NewTrialJob, 1)
    channel.push(CommandType.ReportMetricData, _metric(2, "C", metric_c))
    _stop(channel, thread)

    # the strategy heard B's missed result (replayed) and C's (re-run trial), and proposed a new architecture
    heard = bridge.strategy.heard
    assert (samples[1], metric_b) in heard and (samples[2], metric_c) in heard and len(heard) == 2, heard
    assert new[0]["parameter_id"] == 3
    assert new[0]["parameters"]["sample"] not in samples.values()  # restored dedup: nothing redone
    second = json.loads(state_file.read_text())
    records = second["trials"]
    assert {k: r["status"] for k, r in records.items()} == {"0": "finished", "1": "finished", "2": "finished",
                                                            "3": "submitted"}
    assert records["1"]["source"] == "import" and records["1"]["metric"] == metric_b
    assert records["2"]["source"] == "metric" and records["2"]["trial_job_id"] == "C"
    assert records["0"] == first["trials"]["0"]
    assert [s["mode"] for s in second["sessions"]] == ["start", "resume"]


def test_in_process_trial_end_follows_the_parameter_the_trial_really_ran(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("NNI_MODE", raising=False)
    bridge, channel, thread = _start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.RequestTrialJobs, 2)
    channel.wait_sent(CommandType.NewTrialJob, 2)
    # FIFO bug: trial A received parameter 1, but NNI pairs A with parameter 0
    channel.push(CommandType.ReportMetricData, _metric(1, "A", {"default": 0.5}))
    channel.push(CommandType.TrialEnd, _trial_end(0, "A"))
    _stop(channel, thread)
    records = json.loads((tmp_path / STATE_FILE_NAME).read_text())["trials"]
    assert records["1"]["status"] == "finished" and records["1"]["end_event"] == "SUCCEEDED"
    assert records["1"]["trial_job_id"] == "A"
    assert records["0"]["status"] == "submitted" and "end_event" not in records["0"]
