"""The dispatcher bridge against crafted input: resume state files and trials it did not create (in process).

A state file in the experiment folder is data: an unknown tag, a value of the wrong shape or an unknown key is
refused with a message naming the file and the key, before the strategy is built, and nothing in it runs.
Metrics and trial ends of customized trials (no parameter id, or one the search never sent) are ignored.
"""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from _bridge_helpers import final_metric, start_bridge, stop_bridge, trial_end
from nni_nas_ext.nni.dispatcher import STATE_FILE_NAME, BridgeState, StateFileError, decode_state, encode_state


class _Exploit:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def _state_file(tmp_path: Path, **overrides: Any) -> Path:
    data = {"format": "nni-nas-ext bridge state", "version": 1, "saved_at": 0.0, "strategy_class": None,
            "strategy_state": None, "sessions": [], "trials": {}}
    data.update(overrides)
    path = tmp_path / STATE_FILE_NAME
    path.write_text(json.dumps(data))
    return path


def _pickle_tag(marker: Path) -> dict[str, Any]:
    """What an earlier version stored for values it could not write as JSON: now an unknown tag."""
    return {"__nni_nas_ext__": "nni", "dump": base64.b64encode(pickle.dumps(_Exploit(marker))).decode()}


BAD_FILES = [
    ({"strategy_state": {"history": [1, "MARKER"]}}, r"key strategy_state\['history'\]\[1\]: unknown tag 'nni'"),
    ({"strategy_state": {"__nni_nas_ext__": "ndarray", "dtype": "|O", "shape": [1], "base64": ""}},
     r"numeric dtype"),
    ({"strategy_state": {"__nni_nas_ext__": "float", "value": "__import__('os')"}}, r"one of 'nan', 'inf'"),
    ({"strategy_state": {"__nni_nas_ext__": "set", "items": [[1, 2]]}}, r"must be hashable"),
    ({"strategy_state": {"__nni_nas_ext__": "tuple"}}, r"needs a list 'items'"),
    ({"trials": {"0": {"parameter_id": "0"}}}, r"key 'trials'\['0'\] must be an object whose 'parameter_id'"),
    ({"trials": []}, r"key 'trials' must be an object"),
    ({"sessions": "x"}, r"key 'sessions' must be a list"),
    ({"strategy_class": 3}, r"key 'strategy_class' must be a string"),
    ({"extra": 1}, r"unknown key\(s\) \['extra'\]"),
    ({"version": 2}, r"state version 2 is not supported"),
    ({"format": "pickle"}, r"is not a bridge state file"),
]


@pytest.mark.parametrize("overrides, message", BAD_FILES)
def test_a_crafted_state_file_is_refused_naming_the_file_and_the_key(tmp_path: Path, overrides: dict[str, Any],
                                                                     message: str) -> None:
    marker = tmp_path / "marker"
    text = json.dumps(overrides).replace('"MARKER"', json.dumps(_pickle_tag(marker)))
    path = _state_file(tmp_path, **json.loads(text))
    with pytest.raises(StateFileError, match=message) as info:
        BridgeState.load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE_NAME
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(StateFileError, match="is not a JSON file"):
        BridgeState.load(path)


def test_the_codec_stores_nothing_it_would_have_to_unpickle() -> None:
    import numpy as np

    state = {"rng": ("MT19937", np.arange(3, dtype=np.uint32), 1, 0, 0.0), "seen": frozenset({"a", "b"}),
             "inf": float("inf"), 3: {"nested": (1, 2)}, "raw": b"\x00\x01", "n": np.float32(0.5)}
    encoded = json.loads(json.dumps(encode_state(state)))
    back = decode_state(encoded)
    assert back["seen"] == state["seen"] and back[3] == state[3] and back["raw"] == state["raw"]
    assert back["inf"] == float("inf") and back["n"] == np.float32(0.5)
    assert (back["rng"][1] == state["rng"][1]).all()
    with pytest.raises(TypeError, match="nothing is pickled"):
        encode_state({"f": lambda: None})


def test_resume_from_a_crafted_state_file_fails_visibly_and_runs_nothing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    marker = tmp_path / "marker"
    path = _state_file(tmp_path, strategy_state={"random_state": _pickle_tag(marker)})
    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("NNI_MODE", "resume")
    bridge, channel, thread = start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    thread.join(30)
    assert not thread.is_alive() and bridge.exit_code == 1  # the dispatcher exits with status 1
    errors = [data for command, data in channel.sent if command == CommandType.Error]
    assert len(errors) == 1 and str(path) in errors[0] and "unknown tag 'nni'" in errors[0], channel.sent
    assert not [c for c, _ in channel.sent if c == CommandType.NewTrialJob]
    assert not marker.exists()


def test_metrics_and_ends_of_trials_the_search_did_not_create_are_ignored(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.runtime.tuner_command_channel import CommandType

    monkeypatch.setenv("NNI_CHECKPOINT_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("NNI_MODE", raising=False)
    bridge, channel, thread = start_bridge(monkeypatch)
    channel.push(CommandType.Initialize, {})
    channel.push(CommandType.RequestTrialJobs, 1)
    channel.wait_sent(CommandType.NewTrialJob, 1)
    # a customized trial: NNI gives it no parameter id; another claims an id the search never sent
    channel.push(CommandType.ReportMetricData, {**final_metric(0, "X", {"default": 0.9}), "parameter_id": None})
    channel.push(CommandType.TrialEnd, {"trial_job_id": "X", "event": "FAILED",
                                        "hyper_params": json.dumps({"parameter_id": None, "parameters": {}})})
    channel.push(CommandType.ReportMetricData, final_metric(41, "Y", {"default": 0.9}))
    channel.push(CommandType.TrialEnd, trial_end(41, "Y"))
    # then the search's own trial reports: still heard
    channel.push(CommandType.ReportMetricData, final_metric(0, "A", {"default": 0.5}))
    channel.push(CommandType.TrialEnd, trial_end(0, "A"))
    stop_bridge(channel, thread)
    records = json.loads((tmp_path / STATE_FILE_NAME).read_text())["trials"]
    assert set(records) == {"0"} and records["0"]["trial_job_id"] == "A" and records["0"]["status"] == "finished"
    # (NNI's Random keeps no reference to its models, so NNI's engine may drop even the genuine result; the
    # point here is that the forged ones never reach the strategy)
    assert all(metric != {"default": 0.9} for _, metric in bridge.strategy.heard)
    assert not [c for c, _ in channel.sent if c == CommandType.Error]
