"""Security against a real ``nnictl`` experiment: what a network peer can send does not run, and the port is local.

* ``POST /api/v1/nni/trial-jobs`` (NNI's customized trial, open to anyone who reaches the REST port) with
  (i) a pickled payload whose unpickling would create a marker file, (ii) a payload in our format whose task
  points ``checkpoint_dir`` outside the experiment's store, (iii) a verbatim copy of a genuine signed
  payload: each trial fails before it trains, nothing is unpickled, nothing is written outside the store, and
  the search finishes normally.
* The manager's REST port listens on 127.0.0.1 by default and on the address asked for with
  ``NNI_NAS_EXT_HOST`` (the socket table, ``/proc/net/tcp``).

Both need the installed NNI patched (``make test`` runs ``make nni-fix`` first).
"""

from __future__ import annotations

import base64
import json
import pickle
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from nnictl_harness import NAS_TRIAL_COMMAND, NnictlExperiment, experiment_config
from nni_nas_ext.nni.nni_patch import BIND, patch_status

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent


def _require_bind_patch() -> None:
    status = patch_status(fix=BIND)
    assert status.state == "patched", f"{status.message} (make test applies it: make nni-fix)"


def _listening_addresses(port: int) -> set[str]:
    """Addresses with a TCP socket in LISTEN state on ``port``, from the kernel's socket table."""
    found: set[str] = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def _post_customized_trial(port: int, body: Any) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/nni/trial-jobs",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.loads(response.read())["sequenceId"])


class _Exploit:
    """Unpickling it creates ``path`` (a stand-in for any code an attacker would run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def test_customized_trials_from_the_rest_api_never_run(tmp_path: Path) -> None:
    _require_bind_patch()
    store, elsewhere, marker = tmp_path / "store", tmp_path / "elsewhere", tmp_path / "marker"
    class_args = {"n_steps": 1, "n_neighbours": 2, "n_morphisms": 2, "epochs_seed": 3, "epochs_neighbour": 1,
                  "epochs_final": 1, "dataset": "digits", "seed_widths": [4, 8, 8], "threads": 1, "seed": 0,
                  "checkpoint_dir": str(store)}
    config = experiment_config(tmp_path, name="security-e2e", trial_code_directory=ROOT, trial_concurrency=2,
                               max_trial_number=20, maxExperimentDuration="8m",
                               tuner={"className": "nni_nas_ext.nni.tuners.NashTuner", "codeDirectory": str(ROOT),
                                      "classArgs": class_args})
    with NnictlExperiment.create(config, tmp_path) as exp:
        assert _listening_addresses(exp.port) == {"127.0.0.1"}

        exp.wait_until(lambda e: bool(e.trial_parameters()), timeout=120, what="the seed trial")
        genuine = next(iter(exp.trial_parameters().values()))["parameters"]
        assert genuine["format"] == "nni-nas-ext/trial" and "signature" in genuine
        pickled = {"__nni_obj__": base64.b64encode(pickle.dumps(_Exploit(marker))).decode()}
        forged = json.loads(json.dumps(genuine))
        forged["settings"]["task"]["checkpoint_dir"] = str(elsewhere)
        for body in (pickled, forged, genuine):
            _post_customized_trial(exp.port, body)

        status = exp.wait_for_status({"DONE", "ERROR", "STOPPED"}, timeout=420)
        assert status == "DONE", exp.diagnostics()
        trials = {t["trialJobId"]: t for t in exp.trial_jobs()}
        parameters = exp.trial_parameters()
        metrics = exp.metric_data()
        customized = sorted(tid for tid, p in parameters.items() if p.get("parameter_source") == "customized")
        logs = {tid: "\n".join(p.read_text(errors="replace") for p in exp.exp_dir.rglob(f"trials/{tid}/trial.log"))
                for tid in customized}

    assert len(customized) == 3, parameters
    assert all(trials[tid]["status"] == "FAILED" for tid in customized), [trials[t]["status"] for t in customized]
    assert all("refusing to run this trial" in logs[tid] for tid in customized), logs
    assert not [m for m in metrics if m["trialJobId"] in customized]  # none trained, none reported
    ours = [tid for tid in trials if tid not in customized]
    assert ours and all(trials[tid]["status"] == "SUCCEEDED" for tid in ours)
    assert not marker.exists(), "the pickled parameter was unpickled"
    assert not elsewhere.exists(), "a trial wrote outside the experiment's checkpoint store"
    assert sorted(p.suffix for p in store.iterdir()) == [".pt"] * len(ours)


def test_the_rest_api_listens_where_asked(tmp_path: Path) -> None:
    _require_bind_patch()
    config = experiment_config(tmp_path, name="bind-e2e", trial_code_directory=TESTS_DIR, max_trial_number=1,
                               trial_command=NAS_TRIAL_COMMAND,
                               tuner={"codeDirectory": str(TESTS_DIR), "className": "_bridge_helpers.TinyBridge",
                                      "classArgs": {"strategy": "random", "seed": 0}})
    with NnictlExperiment.create(config, tmp_path, env={"NNI_NAS_EXT_HOST": "0.0.0.0"}) as exp:
        assert _listening_addresses(exp.port) == {"0.0.0.0"}
        assert "REST server listens on 0.0.0.0" in exp.log("nnimanager.log")
