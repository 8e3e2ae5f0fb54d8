"""Fast in-process tests of the nnictl bridge: the state codec, and the bridge against a scripted NNI manager.

The state codec stores NNI strategies' state as plain JSON and names what it cannot store. The bridge,
run in a thread by ``_bridge_helpers.start_bridge`` and fed the manager's commands by the test, covers
resume paths that a real experiment cannot produce on demand: results missed while stopped are replayed,
re-run trials are routed, and a trial's end follows the parameter it really ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _bridge_helpers import executable_tiny_space, final_metric, start_bridge, stop_bridge, trial_end
from nni_nas_ext.nni.dispatcher import STATE_FILE_NAME


def test_state_codec_round_trips_nni_strategy_state() -> None:
    import numpy as np
    from nni.nas.strategy import Random

    from nni_nas_ext.nni.dispatcher import decode_state, encode_state

    strategy = Random(seed=5)
    space = executable_tiny_space()

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


@pytest.mark.slow
def test_in_process_resume_replays_missed_results_and_routes_rerun_trials(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("NNI_MODE", raising=False)
    state_file = tmp_path / STATE_FILE_NAME

    # first session: three models submitted, one result heard, then nnictl stop
    bridge, channel, thread = start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.RequestTrialJobs, 3)
    trials = channel.wait_sent(CommandType.NewTrialJob, 3)
    assert [t["parameter_id"] for t in trials] == [0, 1, 2]
    samples = {t["parameter_id"]: t["parameters"]["sample"] for t in trials}
    metric_a = {"default": 0.1, "width": samples[0]["width"], "act": samples[0]["act"]}
    channel.push(CommandType.ReportMetricData, final_metric(0, "A", metric_a))
    channel.push(CommandType.TrialEnd, trial_end(0, "A"))
    stop_bridge(channel, thread)
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
    bridge, channel, thread = start_bridge(monkeypatch, rest)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.ImportData, [{"parameter": params[0], "value": nni.dump(metric_a), "trialJobId": "A"},
                                          {"parameter": params[1], "value": nni.dump(metric_b), "trialJobId": "B"}])
    channel.push(CommandType.AddCustomizedTrialJob, [{"parameter_id": 2, "parameter_source": "resumed",
                                                      "parameters": params[2], "parameter_index": 0}])
    channel.push(CommandType.RequestTrialJobs, 1)
    new = channel.wait_sent(CommandType.NewTrialJob, 1)
    channel.push(CommandType.ReportMetricData, final_metric(2, "C", metric_c))
    stop_bridge(channel, thread)

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


@pytest.mark.slow
def test_in_process_resume_ends_a_parameter_nni_never_made_a_trial_of(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop came between the dispatcher's TR and the manager's submission: NNI lists no trial of that
    parameter after the resume, so the strategy hears it end as failed instead of waiting for it forever."""
    from nni.runtime.tuner_command_channel import CommandType

    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("NNI_MODE", raising=False)
    bridge, channel, thread = start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.RequestTrialJobs, 3)
    trials = channel.wait_sent(CommandType.NewTrialJob, 3)
    samples = {t["parameter_id"]: t["parameters"]["sample"] for t in trials}
    params = {t["parameter_id"]: t["parameters"] for t in trials}
    stop_bridge(channel, thread)

    rest = {"/metric-data": [], "/trial-jobs": [
        {"trialJobId": tid, "status": "RUNNING",
         "hyperParameters": [json.dumps({"parameter_id": pid, "parameters": params[pid]})]}
        for tid, pid in (("A", 0), ("C", 2))]}  # parameter 1 never became a trial
    monkeypatch.setenv("NNI_MODE", "resume")
    bridge, channel, thread = start_bridge(monkeypatch, rest)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.ImportData, [])
    channel.push(CommandType.AddCustomizedTrialJob, [{"parameter_id": pid, "parameter_source": "resumed",
                                                      "parameters": params[pid], "parameter_index": 0}
                                                     for pid in (0, 2)])
    channel.push(CommandType.RequestTrialJobs, 1)
    channel.wait_sent(CommandType.NewTrialJob, 1)
    stop_bridge(channel, thread)

    assert bridge.strategy.ended == [(samples[1], "failed")]
    records = json.loads((tmp_path / STATE_FILE_NAME).read_text())["trials"]
    assert records["1"]["status"] == "LOST"
    assert records["0"]["status"] == records["2"]["status"] == "resumed"


def test_in_process_trial_end_follows_the_parameter_the_trial_really_ran(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("NNI_MODE", raising=False)
    bridge, channel, thread = start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.RequestTrialJobs, 2)
    channel.wait_sent(CommandType.NewTrialJob, 2)
    # FIFO bug: trial A received parameter 1, but NNI pairs A with parameter 0
    channel.push(CommandType.ReportMetricData, final_metric(1, "A", {"default": 0.5}))
    channel.push(CommandType.TrialEnd, trial_end(0, "A"))
    stop_bridge(channel, thread)
    records = json.loads((tmp_path / STATE_FILE_NAME).read_text())["trials"]
    assert records["1"]["status"] == "finished" and records["1"]["end_event"] == "SUCCEEDED"
    assert records["1"]["trial_job_id"] == "A"
    assert records["0"]["status"] == "submitted" and "end_event" not in records["0"]


def test_a_search_that_ends_counts_its_trials_and_checks_them_in_one_answer_of_the_rest_api() -> None:
    # CI stop 29: the count came from one GET /trial-jobs and the "every sent model is listed" check from a
    # second; a trial listed between the two closed the budget at 5 of 6 trials. Here the first GET lists five
    # trials and every later one six: the budget must close at 6.
    from nni_nas_ext.nni.dispatcher import StrategyBridge

    jobs = [{"trialJobId": f"t{i}", "hyperParameters": [json.dumps({"parameter_id": i, "parameters": {}})]}
            for i in range(6)]
    answers = iter([jobs[:5], jobs[:6], jobs[:6], jobs[:6]])

    class Binding:
        max_trial_number: int | None = None

        def get_status(self) -> str:
            return "RUNNING"

        def get_experiment_profile(self) -> dict[str, Any]:
            return {"params": {"maxTrialNumber": 10}}

        def update_max_trial_number(self, value: int) -> None:
            self.max_trial_number = value

    class Channel:
        def send_no_more_trial_jobs(self) -> None:
            self.ended = True

    bridge = object.__new__(StrategyBridge)  # not __init__: it would connect to a manager
    bridge.binding, bridge._channel, bridge._terminated = Binding(), Channel(), False
    bridge._sent_parameter_ids = set(range(6))
    bridge._rest_get = lambda api: next(answers)
    bridge._end_search()
    assert bridge._channel.ended
    assert bridge.binding.max_trial_number == 6
