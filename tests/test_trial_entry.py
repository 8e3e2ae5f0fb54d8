"""The lean trial command: recognises our parameters, runs them over NNI's channel without nni.nas, nnictl e2e."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nni
import pytest

from nni_nas_ext.nni.trial_entry import OUR_EVALUATOR_FUNCTION, OUR_MODEL_SPACE, our_trial
from nni_nas_ext.search_spaces import nash_seed

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


def test_our_parameter_is_recognised_and_gives_candidate_and_task(tmp_path: Path) -> None:
    from nni_nas_ext.trial_code.trial import TaskConfig

    task = {"dataset": "digits", "checkpoint_dir": str(tmp_path)}
    frozen, cand = _frozen(task)
    parameters = json.loads(nni.dump(frozen))
    assert parameters["model_symbol"]["__nni_type__"] == OUR_MODEL_SPACE
    assert parameters["evaluator"]["__kwargs__"]["function"]["__nni_type__"] == OUR_EVALUATOR_FUNCTION
    found = our_trial(parameters)
    assert found is not None
    assert found[0] == cand.to_dict() and found[1] == TaskConfig.from_dict(task).to_dict()
    from nni_nas_ext.nni.space import ARCHITECTURE_LABEL
    assert ARCHITECTURE_LABEL == "architecture"  # the entry spells it out to avoid importing nni.nas


def test_anything_else_is_left_to_nni(tmp_path: Path) -> None:
    frozen, _ = _frozen({"dataset": "digits", "checkpoint_dir": str(tmp_path)})
    parameters = json.loads(nni.dump(frozen))
    other_function = json.loads(json.dumps(parameters))
    other_function["evaluator"]["__kwargs__"]["function"]["__nni_type__"] = "path:somewhere.else.train"
    other_space = json.loads(json.dumps(parameters))
    other_space["model_symbol"]["__nni_type__"] = "path:somewhere.Else"
    extra_argument = json.loads(json.dumps(parameters))
    extra_argument["evaluator"]["__kwargs__"]["epochs"] = 3
    not_frozen = {**parameters, "status": "initialized"}
    for other in (other_function, other_space, extra_argument, not_frozen, None, [], {"a": 1}):
        assert our_trial(other) is None


@pytest.mark.e2e
@pytest.mark.parametrize("entry", ["lean", "standard"])
def test_a_trial_process_over_nnis_http_channel(tmp_path: Path, entry: str) -> None:
    """A real trial process, NNI's environment and HTTP channel: same reports with either trial command;
    the lean one never imports pytorch_lightning."""
    bench = _bench()
    store = tmp_path / "store"
    task = {"dataset": "digits", "checkpoint_dir": str(store), "threads": 1}
    child = bench.child_of_seed(SEED)
    payload = bench.trial_payload(SEED, child, task, store, epochs=2)
    out = tmp_path / "trial"
    out.mkdir()
    with bench.TrialChannelServer(payload) as server:
        env = {**os.environ, "NNI_PLATFORM": "local", "NNI_EXP_ID": "e", "NNI_TRIAL_JOB_ID": "t",
               "NNI_TRIAL_SEQ_ID": "0", "NNI_SYS_DIR": str(out), "NNI_OUTPUT_DIR": str(out),
               "NNI_TRIAL_COMMAND_CHANNEL": server.url, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-X", "importtime", *bench.ENTRIES[entry]], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        metrics = server.metrics()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [m["type"] for _, m in metrics] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert all(m["parameter_id"] == 0 and m["trial_job_id"] == "t" for _, m in metrics)
    final = metrics[-1][1]["value"]
    assert final["candidate"] == f"{child.id}-0001" and final["preservation_error"] < 1e-5
    assert (store / f"{child.id}-0001.pt").is_file()
    assert ("pytorch_lightning" in proc.stderr) == (entry == "standard")


@pytest.mark.e2e
def test_nash_under_nnictl_with_the_lean_trial_command(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from nnictl_harness import PYTHON, NnictlExperiment, experiment_config

    class_args = {"n_steps": 1, "n_neighbours": 2, "n_morphisms": 2, "epochs_seed": 2, "epochs_neighbour": 1,
                  "epochs_final": 1, "dataset": "digits", "seed_widths": [4, 8, 8], "threads": 1, "seed": 0}
    config = experiment_config(tmp_path, name="lean-entry", trial_code_directory=ROOT,
                               trial_command=f"{PYTHON} -m nni_nas_ext.nni.trial_entry", trial_concurrency=2,
                               max_trial_number=10, maxExperimentDuration="5m",
                               tuner={"className": "nni_nas_ext.nni.tuners.NashTuner", "codeDirectory": str(ROOT),
                                      "classArgs": class_args})
    with NnictlExperiment.create(config, tmp_path) as exp:
        status = exp.wait_for_status({"DONE", "ERROR", "STOPPED"}, timeout=240)
        assert status == "DONE", exp.diagnostics()
        trials = exp.trial_jobs()
        finals = list(exp.final_metrics().values())
    assert trials and all(t["status"] == "SUCCEEDED" for t in trials), [t["status"] for t in trials]
    roles = sorted(f["role"] for f in finals)
    assert roles.count("seed") == 1 and "child" in roles and "final" in roles, roles
    assert all("failed" not in f for f in finals)
    children = [f for f in finals if f["role"] == "child" and f["morphisms"]]
    assert children and all(f["preservation_error"] < 1e-4 for f in children)
