"""Tests of the nnictl bridge: real ``nnictl`` experiments (marked e2e) with NNI's own strategies on a tiny space.

``nnictl`` starts the tiny bridge of ``_bridge_helpers.py`` (:class:`TinyBridge`, six architectures: a
width and an activation) and each trial imports the tiny space from it: a random search runs to the end,
invalid classArgs end the experiment at once, stop and resume do not re-run finished trials, and a search
that ends before the budget ends the experiment DONE. The fast in-process tests of the bridge are in
``test_bridge_in_process.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _bridge_helpers import ACTIVATIONS, TESTS_DIR, TINY_TUNER, WIDTHS, TinyBridge, TinyValidator
from nnictl_harness import NAS_TRIAL_COMMAND, NnictlExperiment, decode_metric, experiment_config, private_env
from nni_nas_ext.nni.dispatcher import STATE_FILE_NAME, register_with_nnictl, unregister_from_nnictl


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
        with NnictlExperiment.create(config, tmp_path, env={"PYTHONPATH": str(TESTS_DIR)}) as exp:
            # NNI 3.0's `nnictl create` does not run the registered classArgsValidator (only its legacy v1
            # config path does): the experiment starts, and the bridge's own validation ends it
            assert "bogus" not in exp.outputs[0], exp.outputs[0]
            status = exp.wait_for_status(timeout=60)
            diag = exp.diagnostics
            assert status == "ERROR", diag()
            assert exp.trial_jobs() == [], diag()  # "at once": it ended before NNI started a single trial
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
