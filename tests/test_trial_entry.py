"""The trial command: runs only signed payloads of its experiment, never unpickles; NNI's channel. (Under a real
``nnictl`` experiment it is the default trial command of the shared NASH experiment: tests/test_nash_e2e.py.)"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nni  # noqa: F401 - the trial entry needs NNI installed: fail at collection if it is not
import pytest

from nni_nas_ext.nni.trial_entry import TrialRefused, metric_json, parse_record, receive_payload
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.wire import encode_trial, load_or_create_key

ROOT = Path(__file__).resolve().parents[1]
SEED = nash_seed((1, 8, 8), 10, widths=(4, 8, 8))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_trial_loop", ROOT / "benchmarks" / "bench_trial_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frozen(task: dict):
    from nni.nas.space import SimplifiedModelSpace

    from nni_nas_ext.nni.evaluator import make_evaluator
    from nni_nas_ext.nni.space import MorphismModelSpace, seed_candidate

    space = SimplifiedModelSpace.from_model(MorphismModelSpace(SEED), make_evaluator(task))
    cand = seed_candidate(SEED, epochs=2)
    return space.freeze({"architecture": cand.to_dict()}), cand


def _signed_record(tmp_path: Path, parameter_id: int = 7) -> tuple[dict, Path, object]:
    from nni_nas_ext.nni.evaluator import trial_payload_of

    task = {"dataset": "digits", "checkpoint_dir": str(tmp_path / "store")}
    frozen, cand = _frozen(task)
    key_file = tmp_path / "exp" / "nni-nas-ext" / "trial-key"
    parameters = encode_trial(trial_payload_of(frozen), parameter_id, load_or_create_key(key_file))
    record = {"parameter_id": parameter_id, "parameter_source": "algorithm", "parameters": parameters,
              "parameter_index": 0}
    return json.loads(json.dumps(record)), key_file, cand


def test_our_signed_parameter_gives_candidate_and_task(tmp_path: Path) -> None:
    from nni_nas_ext.trial_code.trial import TaskConfig

    record, key_file, cand = _signed_record(tmp_path)
    payload = receive_payload(record, key_file)
    assert payload.kind == "candidate" and payload.job == cand.to_dict()
    assert payload.settings["task"] == TaskConfig.from_dict(
        {"dataset": "digits", "checkpoint_dir": str(tmp_path / "store")}).to_dict()
    assert "__nni" not in json.dumps(record)  # nothing of NNI's pickled format on the wire


def _customized(record: dict) -> dict:
    # what NNI's manager makes of POST /api/v1/nni/trial-jobs with this body (nnimanager.js)
    return {"parameter_id": None, "parameter_source": "customized", "parameters": record["parameters"]}


def _other_store(record: dict) -> dict:
    forged = json.loads(json.dumps(record))
    forged["parameters"]["settings"]["task"]["checkpoint_dir"] = "/tmp/elsewhere"
    return forged


def _other_parameter_id(record: dict) -> dict:
    return {**record, "parameter_id": record["parameter_id"] + 1}


def _no_signature(record: dict) -> dict:
    forged = json.loads(json.dumps(record))
    del forged["parameters"]["signature"]
    return forged


def _extra_field(record: dict) -> dict:
    forged = json.loads(json.dumps(record))
    forged["parameters"]["extra"] = 1
    return forged


@pytest.mark.parametrize("forge, reason", [
    (_customized, "not created by the experiment's search"),
    (_other_store, "signature does not match"),
    (_other_parameter_id, "signature does not match"),
    (_no_signature, "no signature"),
    (_extra_field, "exactly the fields"),
    (lambda r: {**r, "parameters": {**r["parameters"], "version": 2}}, "version 2 is not supported"),
    (lambda r: {**r, "parameters": "not a payload"}, "not an nni-nas-ext trial payload"),
    (lambda r: [r], "must be a JSON object"),
])
def test_anything_not_signed_for_this_parameter_is_refused(tmp_path: Path, forge, reason: str) -> None:
    record, key_file, _ = _signed_record(tmp_path)
    with pytest.raises(TrialRefused, match=reason):
        receive_payload(forge(record), key_file)


def test_another_experiments_key_does_not_verify(tmp_path: Path) -> None:
    record, _, _ = _signed_record(tmp_path)
    other = load_or_create_key(tmp_path / "other" / "trial-key")
    assert len(other) == 32
    with pytest.raises(TrialRefused, match="signature does not match"):
        receive_payload(record, tmp_path / "other" / "trial-key")
    with pytest.raises(TrialRefused, match="does not exist"):
        receive_payload(record, tmp_path / "missing" / "trial-key")


def _refused_trial(tmp_path: Path, record_text: str, extra_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run the trial command on one parameter record over NNI's HTTP channel (the bench's fake manager)."""
    bench = _bench()
    out = tmp_path / "trial"
    out.mkdir(exist_ok=True)
    with bench.TrialChannelServer(record_text) as server:
        env = {**os.environ, "NNI_PLATFORM": "local", "NNI_EXP_ID": "e", "NNI_TRIAL_JOB_ID": "t",
               "NNI_TRIAL_SEQ_ID": "0", "NNI_SYS_DIR": str(out), "NNI_OUTPUT_DIR": str(out),
               "NNI_TRIAL_COMMAND_CHANNEL": server.url, "OMP_NUM_THREADS": "1",
               "NNI_NAS_EXT_TRIAL_KEY_FILE": str(tmp_path / "exp" / "nni-nas-ext" / "trial-key")}
        proc = subprocess.run([sys.executable, "-m", "nni_nas_ext.nni.trial_entry", *extra_args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        proc.metrics = server.metrics()  # type: ignore[attr-defined]
    return proc


@pytest.mark.e2e
def test_a_pickled_parameter_is_never_unpickled(tmp_path: Path) -> None:
    """NNI's pickled format (here: a payload whose unpickling would create a marker file) is refused by the
    trial command before anything runs; only --allow-nni-format lets NNI's format through."""
    import base64
    import pickle

    marker = tmp_path / "marker"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    blob = base64.b64encode(pickle.dumps(Exploit())).decode()
    record = json.dumps({"parameter_id": None, "parameter_source": "customized",
                         "parameters": {"__nni_obj__": blob}})
    _signed_record(tmp_path)  # the experiment's key exists: the refusal is not for want of a key
    proc = _refused_trial(tmp_path, record)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to run this trial" in proc.stderr and "--allow-nni-format" in proc.stderr
    assert not marker.exists() and proc.metrics == []


@pytest.mark.e2e
@pytest.mark.parametrize("entry", ["lean", "standard"])
def test_a_trial_process_over_nnis_http_channel(tmp_path: Path, entry: str) -> None:
    """A real trial process, NNI's environment and HTTP channel: same reports with either trial command;
    the lean one never imports pytorch_lightning."""
    bench = _bench()
    store = tmp_path / "store"
    task = {"dataset": "digits", "checkpoint_dir": str(store), "threads": 1}
    child = bench.child_of_seed(SEED)
    key_file = tmp_path / "trial-key" if entry == "lean" else None
    payload = bench.trial_payload(SEED, child, task, store, epochs=2, key_file=key_file)
    out = tmp_path / "trial"
    out.mkdir()
    with bench.TrialChannelServer(payload) as server:
        env = {**os.environ, "NNI_PLATFORM": "local", "NNI_EXP_ID": "e", "NNI_TRIAL_JOB_ID": "t",
               "NNI_TRIAL_SEQ_ID": "0", "NNI_SYS_DIR": str(out), "NNI_OUTPUT_DIR": str(out),
               "NNI_TRIAL_COMMAND_CHANNEL": server.url, "OMP_NUM_THREADS": "1"}
        if key_file is not None:
            env["NNI_NAS_EXT_TRIAL_KEY_FILE"] = str(key_file)
        proc = subprocess.run([sys.executable, "-X", "importtime", *bench.ENTRIES[entry]], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        metrics = server.metrics()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [m["type"] for _, m in metrics] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert [m["sequence"] for _, m in metrics] == [0, 1, 0]  # as nni.report_* number them
    assert all(m["parameter_id"] == 0 and m["trial_job_id"] == "t" for _, m in metrics)
    final = metrics[-1][1]["value"]
    assert final["candidate"] == f"{child.id}-0001" and final["preservation_error"] < 1e-5
    assert (store / f"{child.id}-0001.pt").is_file()
    assert ("pytorch_lightning" in proc.stderr) == (entry == "standard")
    # the lean trial imports neither nni (scipy.stats, pandas) nor scikit-learn (the digits come from its file)
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", proc.stderr, re.MULTILINE))
    assert ({"nni", "sklearn"} & imported == set()) == (entry == "lean"), {"nni", "sklearn"} & imported
    # either way the trial's log is NNI's trial.log in NNI_OUTPUT_DIR (what the portal shows), print()s included
    log = (out / "trial.log").read_text()
    assert "final: val acc" in log and "PRINT" in log, log[-2000:]


def test_metrics_are_plain_json_as_nni_dump_writes_them() -> None:
    import numpy as np

    assert json.loads(metric_json({"default": np.float32(0.5), "n": np.int64(3), "x": [1, "a"]})) == \
        {"default": 0.5, "n": 3, "x": [1, "a"]}
    assert metric_json(float("nan")) == "NaN"  # NNI's dump allows NaN too
    with pytest.raises(TypeError, match="plain JSON"):
        metric_json({"array": np.zeros(2)})


def test_a_record_that_is_not_ours_is_refused_without_nni_unless_allowed() -> None:
    with pytest.raises(TrialRefused, match="not JSON"):
        parse_record("{not json")
    with pytest.raises(TrialRefused, match="not a signed nni-nas-ext payload"):
        parse_record(json.dumps({"parameter_id": 3, "parameters": {"a": 1}}))
    assert parse_record(json.dumps({"parameter_id": 3, "parameters": {"a": 1}}), allow_nni_format=True) == \
        {"parameter_id": 3, "parameters": {"a": 1}}  # NNI's own nni.load, for NNI's strategies only
