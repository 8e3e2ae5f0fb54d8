"""End to end: `nnictl create` runs a NASH search (trialConcurrency 2); everything checked through NNI's REST API.

The experiment is the session fixture ``nash_experiment`` (tests/conftest.py): a tiny budget on digits with
exact morphisms, started exactly as a user starts one, with our tuner named in the config.
"""

from __future__ import annotations

import pytest

from nni_nas_ext.core import Architecture
from nnictl_harness import candidates_in
from nni_nas_ext.results import SearchResults

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def records(nash_experiment):
    trials = nash_experiment.trial_jobs()
    results = SearchResults.from_metric_data(nash_experiment.metric_data())
    return trials, results


def test_every_trial_succeeded_and_reported_a_self_describing_result(records, nash_experiment) -> None:
    trials, results = records
    assert len(trials) == 1 + 2 * 3 + 2, nash_experiment.diagnostics()
    assert {t["status"] for t in trials} == {"SUCCEEDED"}, nash_experiment.diagnostics()
    assert not results.failures
    assert {r["trial"] for r in results.results.values()} == {t["trialJobId"] for t in trials}
    for r in results.results.values():
        assert {"default", "arch_id", "params", "flops", "preservation_error", "epochs", "timings"} <= set(r)


def test_children_start_at_their_parents_final_accuracy(records) -> None:
    _, results = records
    children = [r for r in results.results.values() if r["role"] == "child"]
    assert len(children) == 2 * 2
    n_val = 1797 - 359 - 1294  # digits: the validation split (trial_code.datasets)
    for child in children:
        parent = results.results[child["parent"]]
        assert child["preservation_error"] < 1e-5, child
        assert abs(child["start_val_acc"] - parent["default"]) <= 1 / n_val + 1e-12, (child, parent)
        assert len(child["morphisms"]) == 3


def test_the_best_found_beats_the_seed(records) -> None:
    _, results = records
    assert results.best_search["default"] > results.seed["default"]
    assert "test_acc" in results.winner_final and "test_acc" in results.seed_final
    # the test set is seen by the two final trainings only
    assert {r["role"] for r in results.results.values() if "test_acc" in r} == {"final", "seed_final"}


def test_nni_records_for_each_trial_the_architecture_it_trained(records, nash_experiment) -> None:
    _, results = records
    recorded = nash_experiment.trial_parameters()
    by_trial = {r["trial"]: r for r in results.results.values()}
    for trial, parameters in recorded.items():
        found = list(candidates_in(parameters))
        assert len(found) == 1, (trial, parameters)
        candidate = found[0]
        assert candidate["id"] == by_trial[trial]["candidate"], (trial, candidate["id"], by_trial[trial]["candidate"])
        assert Architecture.from_dict(candidate["architecture"]).id == by_trial[trial]["arch_id"]


def test_the_experiment_ends_done_with_the_search(nash_experiment) -> None:
    assert nash_experiment.status()["status"] == "DONE"


def test_the_trials_ran_our_lean_trial_command(nash_experiment) -> None:
    # the trial command of config.yml and the examples (no nni.nas, no pytorch_lightning in the trial); the
    # tests above are its end-to-end test under nnictl
    command = nash_experiment.rest("experiment")["params"]["trialCommand"]
    assert command.endswith(" -m nni_nas_ext.nni.trial_entry"), command
