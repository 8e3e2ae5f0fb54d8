"""Asynchronous NASH under a real ``nnictl`` experiment: it reads the time budget from NNI and ends inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnictl_harness import NnictlExperiment, candidates_in, experiment_config
from nni_nas_ext.results import SearchResults

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 70


def test_async_nash_finishes_inside_maxExperimentDuration(tmp_path: Path) -> None:  # noqa: N802
    class_args = {"n_steps": 1000, "n_neighbours": 3, "n_morphisms": 2, "epochs_seed": 2, "epochs_neighbour": 1,
                  "epochs_final": 2, "dataset": "digits", "seed_widths": [4, 8, 8], "threads": 1, "seed": 0}
    config = experiment_config(tmp_path, name="nash-async-e2e", trial_code_directory=ROOT, trial_concurrency=2,
                               max_trial_number=200, maxExperimentDuration=f"{BUDGET_S}s",
                               tuner={"className": "nni_nas_ext.nni.tuners.NashAsyncTuner",
                                      "codeDirectory": str(ROOT), "classArgs": class_args})
    with NnictlExperiment.create(config, tmp_path) as exp:
        status = exp.wait_for_status({"DONE", "ERROR", "STOPPED"}, timeout=BUDGET_S + 120)
        profile = exp.rest("experiment")
        trials = exp.trial_jobs()
        results = SearchResults.from_metric_data(exp.metric_data())
        finals = exp.final_metrics()
        limits = {c["role"]: c.get("time_limit") for p in exp.trial_parameters().values() for c in candidates_in(p)}
        dispatcher = exp.log("dispatcher.log")
    assert status == "DONE", dispatcher[-3000:]
    assert "climbing stopped" in dispatcher  # the budget, not the trial limit, ended the climb
    assert all(t["status"] == "SUCCEEDED" for t in trials), [t["status"] for t in trials]
    assert results.winner_final is not None and results.winner_final.get("test_acc") is not None
    roles = [r["role"] for r in results.results.values()]
    assert roles.count("child") >= 3 and roles.count("final") == 1
    # every trial ended inside the budget (NNI counts it from the experiment's start)
    start_ms = profile["startTime"]
    timeline = [(t["trialJobId"], r.get("role"), f'{r.get("epochs_trained")}/{r.get("epochs")}',
                 t["startTime"] - start_ms, t["endTime"] - start_ms)
                for t in trials for r in [finals.get(t["trialJobId"], {})]]
    assert max(t["endTime"] for t in trials) - start_ms <= BUDGET_S * 1000, timeline
    # the finals carried the deadline (Candidate.time_limit: the time left less the latency) to their trials
    assert 0 < limits["final"] < BUDGET_S and 0 < limits["seed_final"] < BUDGET_S and limits["seed"] is None, limits
