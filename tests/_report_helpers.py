"""An experiment folder laid out as a real run leaves it, for the report's fast tests (tests/test_report.py).

Each piece copies the format of the code that writes it:

* ``db/nni.sqlite``: the schema is NNI 3.0's own (``nni_node/core/sqlDatabase.js``, ``createTables``, verbatim);
  rows as ``storeExperimentProfile`` / ``storeTrialJobEvent`` / ``storeMetricData`` write them: a trial's
  ``WAITING`` event carries its parameter (the tuner's ``NewTrialJob`` content: ``parameter_id``, ``parameters``,
  ``parameter_source``, ``parameter_index``, ``version_info``; NNI's ``TunerCommandChannel.send_trial``), later
  events carry none; a metric's ``data`` is ``JSON.stringify`` of the string the trial sent (JSON in a JSON string);
* the parameter is our signed envelope made by :func:`nni_nas_ext.wire.encode_trial`, its job a real
  :class:`~nni_nas_ext.core.jobs.Candidate` (or :class:`~nni_nas_ext.core.jobs.FnaJob`);
* a final result has the keys ``trial_code/trial.py`` reports (a failure: its failure dict);
* ``checkpoint/nni_nas_ext_bridge_state.json`` is written by the bridge's own :class:`BridgeState`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nni_nas_ext.core import Candidate, candidate_id, create_morphism, random_chain
from nni_nas_ext.nni.dispatcher.state import STATE_FILE_NAME, BridgeState, encode_state
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.wire import TrialPayload, encode_trial

#: nni_node/core/sqlDatabase.js (NNI 3.0), createTables, verbatim
NNI_TABLES = """
create table TrialJobEvent (
    timestamp integer,
    trialJobId text,
    event text,
    data text,
    logPath text,
    sequenceId integer,
    message text,
    environmentId text);
create index TrialJobEvent_trialJobId on TrialJobEvent(trialJobId);
create index TrialJobEvent_event on TrialJobEvent(event);

create table MetricData (timestamp integer, trialJobId text, parameterId text, type text, sequence integer, data text);
create index MetricData_trialJobId on MetricData(trialJobId);
create index MetricData_type on MetricData(type);

create table ExperimentProfile (
    params text,
    id text,
    execDuration integer,
    startTime integer,
    endTime integer,
    logDir text,
    nextSequenceId integer,
    revision integer);
create index ExperimentProfile_id on ExperimentProfile(id);
"""

START_MS = 1_796_000_000_000
KEY = bytes(range(32))
TASK = {"task": {"dataset": "digits", "epochs_scale": 1}}


@dataclass
class FakeTrial:
    """One trial as NNI records it: its id, the job it was sent (or raw ``parameters``), its result and status."""

    trial_id: str
    job: Optional[dict[str, Any]]
    result: Optional[dict[str, Any]]
    status: str = "SUCCEEDED"
    kind: str = "candidate"
    parameters: Any = None  # the parameter when it is not one of ours (a customized trial, NNI's own)


def candidate_result(candidate: Candidate, default: float, *, test_acc: Optional[float] = None,
                     latency_ms: Optional[float] = None) -> dict[str, Any]:
    """The final result ``trial_code/trial.py`` reports for ``candidate`` (keys and kinds as there)."""
    arch = candidate.architecture
    applied = [step.describe() for step in arch.lineage.steps] if arch.lineage is not None else []
    result: dict[str, Any] = {
        "default": default, "summary": f"{candidate.role}: ...", "candidate": candidate.id, "arch_id": arch.id,
        "role": candidate.role, "step": candidate.step, "parent": candidate.parent, "morphisms": applied,
        "params": arch.num_parameters(), "macs": arch.num_macs(), "flops": arch.num_macs(),
        "preservation_error": 1e-7 if applied else None, "distilled": False,
        "start_val_acc": default - 0.01 if candidate.parent else None, "epochs": candidate.epochs,
        "epochs_trained": candidate.epochs, "early_stopped": False, "train_on": candidate.train_on,
        "checkpoint": f"/exp/checkpoints/{candidate.id}.pt", "normalisation": {"mean": [0.0], "std": [1.0]},
        "timings": {"total": 1.0, "process_total": 3.0},
    }
    if test_acc is not None:
        result["test_acc"] = test_acc
    if latency_ms is not None:  # with the task's measure_latency (trial_code/latency.py)
        result.update(latency_ms=latency_ms, latency_device="cpu: Intel(R) Xeon(R) CPU @ 2.20GHz, 1 thread")
    return result


def failed_result(candidate: Candidate, reason: str) -> dict[str, Any]:
    """What ``run_candidate`` reports when training fails."""
    return {"default": 0.0, "candidate": candidate.id, "arch_id": candidate.architecture.id, "role": candidate.role,
            "step": candidate.step, "failed": reason, "timings": {"total": 0.5}}


def nash_search(*, latency: bool = False) -> tuple[list[FakeTrial], dict[str, str]]:
    """A NASH search in miniature: seed; step 1: two children and the incumbent; step 2: two children of the best
    child (one fails) and the incumbent; the final trainings of the winner and the seed. Returns the trials and
    the candidate ids by name (seed, c1, c2, i3, c4, c5, i6, final, seed_final)."""
    seed_arch = nash_seed(input_shape=(1, 8, 8), num_classes=10, widths=(4, 8, 8))
    rng = np.random.default_rng(0)
    morphisms = [create_morphism(name) for name in ("deepen", "widen", "add_skip")]
    serial = iter(range(100))

    def make(arch, parent, role, step, **extra) -> Candidate:
        return Candidate(candidate_id(arch, next(serial)), arch, parent, extra.pop("epochs", 2),
                         extra.pop("train_on", "train"), extra.pop("evaluate_test", False), role, step)

    seed = make(seed_arch, None, "seed", 0)
    c1 = make(random_chain(seed_arch, morphisms, 2, rng).child, seed.id, "child", 1)
    c2 = make(random_chain(seed_arch, morphisms, 2, rng).child, seed.id, "child", 1)
    i3 = make(seed_arch, seed.id, "incumbent", 1)
    c4 = make(random_chain(c1.architecture, morphisms, 2, rng).child, c1.id, "child", 2)
    c5 = make(random_chain(c1.architecture, morphisms, 2, rng).child, c1.id, "child", 2)
    i6 = make(c1.architecture.with_lineage(None), c1.id, "incumbent", 2)
    final = make(c4.architecture.with_lineage(None), c4.id, "final", 3, train_on="train+val", evaluate_test=True)
    seed_final = make(seed_arch, seed.id, "seed_final", 3, train_on="train+val", evaluate_test=True)
    accuracy = {seed.id: 0.80, c1.id: 0.86, c2.id: 0.83, i3.id: 0.82, c4.id: 0.91, i6.id: 0.88}
    trials = []
    for n, cand in enumerate([seed, c1, c2, i3, c4, c5, i6, final, seed_final]):
        ms = 2.0 + cand.architecture.num_macs() / 1e5 if latency else None
        if cand is c5:
            result = failed_result(cand, "TrainingDiverged: the loss is NaN at epoch 1")
        elif cand.role in ("final", "seed_final"):
            result = candidate_result(cand, accuracy[cand.parent], test_acc=0.9 if cand is final else 0.78,
                                      latency_ms=ms)
        else:
            result = candidate_result(cand, accuracy[cand.id], latency_ms=ms)
        trials.append(FakeTrial(f"T{n:04d}", cand.to_dict(), result, "FAILED" if cand is c5 else "SUCCEEDED"))
    names = dict(zip(("seed", "c1", "c2", "i3", "c4", "c5", "i6", "final", "seed_final"),
                     (c.id for c in (seed, c1, c2, i3, c4, c5, i6, final, seed_final))))
    return trials, names


def nash_config(name: str = "nash-report") -> dict[str, Any]:
    """The experiment config as NNI's manager keeps it (ExperimentProfile.params: camelCase, the tuner's classArgs)."""
    return {"experimentName": name, "searchSpace": {}, "trialCommand": "python -m nni_nas_ext.nni.trial_entry",
            "trialCodeDirectory": "/repo", "trialConcurrency": 2, "maxTrialNumber": 30,
            "maxExperimentDuration": "15m",
            "tuner": {"className": "nni_nas_ext.nni.tuners.NashTuner", "codeDirectory": "/repo",
                      "classArgs": {"n_steps": 2, "n_neighbours": 3, "n_morphisms": 2, "dataset": "digits"}},
            "trainingService": {"platform": "local"}, "experimentWorkingDirectory": "/exp"}


def _parameter(n: int, trial: FakeTrial) -> str:
    """A WAITING event's data: the NewTrialJob content as NNI's TunerCommandChannel.send_trial dumps it."""
    if trial.job is None:
        parameters, parameter_id = trial.parameters, None
    else:
        parameters = encode_trial(TrialPayload(trial.kind, trial.job, dict(TASK, **(
            {"adaptation": {}} if trial.kind == "fna_job" else {}))), n, KEY)
        parameter_id = n
    return json.dumps({"parameter_id": parameter_id, "parameters": parameters, "parameter_source": "algorithm",
                       "parameter_index": 0, "version_info": {"python": [3, 11], "numpy": [2, 4], "nni": "3.0"}})


def write_experiment_folder(root: Path, exp_id: str, trials: list[FakeTrial], *, config: dict[str, Any],
                            search_state: Optional[dict[str, Any]] = None) -> Path:
    """Lay out ``<root>/<exp_id>`` as NNI (and our dispatcher, when ``search_state`` is given) would; the folder."""
    folder = root / exp_id
    (folder / "db").mkdir(parents=True)
    (folder / "log").mkdir()
    db = sqlite3.connect(folder / "db" / "nni.sqlite")
    db.executescript(NNI_TABLES)
    end = START_MS + 60_000 * (len(trials) + 1)
    for revision in (1, 2):  # the manager stores the profile again as the experiment goes on
        db.execute("insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
                   (json.dumps(config), exp_id, 50 * revision, START_MS, end if revision == 2 else None,
                    str(folder), len(trials), revision))
    for n, trial in enumerate(trials):
        submitted, started, ended = START_MS + 20_000 * n + 1_000, START_MS + 20_000 * n + 2_000, \
            START_MS + 20_000 * n + 30_000
        log = f"file://localhost:{folder}/environments/local-env/trials/{trial.trial_id}"
        db.execute("insert into TrialJobEvent values (?,?,?,?,?,?,?,?)",
                   (submitted, trial.trial_id, "WAITING", _parameter(n, trial), log, n, None, "local-env"))
        db.execute("insert into TrialJobEvent values (?,?,?,?,?,?,?,?)",
                   (started, trial.trial_id, "RUNNING", None, log, n, None, "local-env"))
        if trial.result is not None:
            periodical = {"default": trial.result.get("default"), "candidate": trial.result.get("candidate"),
                          "epoch": 1}
            db.execute("insert into MetricData values (?,?,?,?,?,?)",
                       (ended - 5_000, trial.trial_id, str(n), "PERIODICAL", 0, json.dumps(json.dumps(periodical))))
            db.execute("insert into MetricData values (?,?,?,?,?,?)",
                       (ended - 1_000, trial.trial_id, str(n), "FINAL", 0, json.dumps(json.dumps(trial.result))))
        db.execute("insert into TrialJobEvent values (?,?,?,?,?,?,?,?)",
                   (ended, trial.trial_id, trial.status, None, log, n, None, "local-env"))
    db.commit()
    db.close()
    if search_state is not None:
        (folder / "checkpoint").mkdir()
        state = BridgeState(folder / "checkpoint" / STATE_FILE_NAME)
        state.strategy_class = "nni_nas_ext.nni.nas_strategy.MorphismStrategy"
        state.strategy_state = encode_state({"search": search_state, "submitted": [], "mismatches": []})
        for n, trial in enumerate(trials):
            state.record(n, sample=None, status="finished", trial_job_id=trial.trial_id, metric=trial.result,
                         source="metric")
        state.save()
    return folder
