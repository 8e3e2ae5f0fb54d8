"""The wire format of a trial's parameter: canonical, signed, robust to NNI's JavaScript round trip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nni_nas_ext.nni.nni_patch import nni_node_path
from nni_nas_ext.wire import (TrialPayload, WireError, canonical_json, decode_trial, encode_trial,
                              experiment_key_path, load_or_create_key, read_key)

KEY = bytes(range(32))
PAYLOAD = TrialPayload("candidate", {"id": "a-0001", "lr": 1.0, "scale": -0.0, "eps": 1e-05, "big": 1e300,
                                     "name": "é", "nested": [0.5, 2.0, {"z": 3}]},
                       {"task": {"checkpoint_dir": "/tmp/s", "momentum": 0.9}})


def test_a_payload_survives_nnis_javascript_round_trip() -> None:
    """``nnictl resume`` re-sends a trial's parameter after JSON.parse/JSON.stringify in NNI's manager."""
    envelope = encode_trial(PAYLOAD, 3, KEY)
    text = json.dumps({"parameter_id": 3, "parameters": envelope})
    node = nni_node_path() / "node"
    proc = subprocess.run([str(node), "-e", "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>"
                                          "process.stdout.write(JSON.stringify(JSON.parse(s))))"],
                          input=text, capture_output=True, text=True, check=True)
    assert proc.stdout != text  # JavaScript did rewrite it (1.0 -> 1, -0.0 -> 0, 1e-05 -> 0.00001)
    record = json.loads(proc.stdout)
    assert decode_trial(record["parameters"], record["parameter_id"], KEY) == PAYLOAD


def test_canonical_json_is_one_text_per_value() -> None:
    assert canonical_json({"b": 1.0, "a": [2, -0.0]}) == canonical_json({"a": [2.0, 0], "b": 1}) == b'{"a":[2,0],"b":1}'
    with pytest.raises(WireError, match="finite JSON"):
        canonical_json({"x": float("nan")})
    with pytest.raises(WireError, match="plain JSON"):
        canonical_json({"x": object()})


@pytest.mark.parametrize("kind, settings, message", [
    ("bogus", {"task": {}}, "kind must be one of"),
    ("candidate", {}, "exactly the keys \\['task'\\]"),
    ("fna_job", {"task": {}}, "exactly the keys \\['adaptation', 'task'\\]"),
    ("candidate", {"task": []}, "must be a JSON object"),
])
def test_malformed_payloads_are_refused(kind: str, settings: dict, message: str) -> None:
    with pytest.raises(WireError, match=message):
        TrialPayload(kind, {}, settings)


def test_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "exp" / "nni-nas-ext" / "trial-key"
    key = load_or_create_key(path)
    assert load_or_create_key(path) == key == read_key(path) and len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("short")
    with pytest.raises(WireError, match="must hold 64 hex digits"):
        read_key(path)


def test_where_a_process_finds_the_key(tmp_path: Path) -> None:
    exp = tmp_path / "abc123"
    trial = exp / "environments" / "local-env" / "trials" / "Xy9"
    assert experiment_key_path({"NNI_OUTPUT_DIR": str(trial), "NNI_EXP_ID": "abc123"}) == \
        exp / "nni-nas-ext" / "trial-key"
    assert experiment_key_path({"NNI_LOG_DIRECTORY": str(exp / "log")}) == exp / "nni-nas-ext" / "trial-key"
    assert experiment_key_path({"NNI_NAS_EXT_TRIAL_KEY_FILE": "/k/f", "NNI_LOG_DIRECTORY": "/x/log"}) == Path("/k/f")
    with pytest.raises(WireError, match="not inside a folder named after the experiment"):
        experiment_key_path({"NNI_OUTPUT_DIR": str(trial), "NNI_EXP_ID": "other"})
    with pytest.raises(WireError, match="must be an absolute path"):
        experiment_key_path({"NNI_NAS_EXT_TRIAL_KEY_FILE": "rel/key"})
    with pytest.raises(WireError, match="none of"):
        experiment_key_path({})
