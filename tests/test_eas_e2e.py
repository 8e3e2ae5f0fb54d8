"""End to end: `nnictl create` runs EAS for two episodes; checked through NNI's REST API and the saved state.

Trials succeed, children inherit their start net's weights (exact morphisms: preservation error below
1e-5, starting accuracy equal to the start net's within one validation example), and the validation
accuracies reach the controller as rewards (two REINFORCE updates in the strategy's saved state).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from nnictl_harness import NnictlExperiment, experiment_config

from nni_nas_ext.results import SearchResults

pytestmark = pytest.mark.e2e

CLASS_ARGS = {
    "episodes": 2, "children_per_episode": 3, "n_wider": 1, "n_deeper": 1, "epochs": 2, "epochs_start": 4,
    "epochs_final": 2, "morphism_mode": "exact", "max_width": 64,
    "dataset": "digits", "seed_widths": [4, 8, 8], "threads": 1, "seed": 3,
}


def _find(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _find(item, key)


def test_eas_under_nnictl(tmp_path: Path) -> None:
    config = experiment_config(
        tmp_path, name="eas-e2e", trial_code_directory=ROOT, trial_concurrency=2, max_trial_number=30,
        tuner={"className": "nni_nas_ext.nni.tuners.EasTuner", "codeDirectory": str(ROOT), "classArgs": CLASS_ARGS},
        maxExperimentDuration="15m")
    with NnictlExperiment.create(config, tmp_path) as exp:
        assert exp.wait_for_status({"DONE", "ERROR"}, timeout=600) == "DONE", exp.diagnostics()
        trials = exp.trial_jobs()
        results = SearchResults.from_metric_data(exp.metric_data())
        state = json.loads((exp.exp_dir / "checkpoint" / "nni_nas_ext_bridge_state.json").read_text())

    assert trials and {t["status"] for t in trials} == {"SUCCEEDED"}
    assert not results.failures
    children = results.by_role("child")
    assert children, "no child was trained"
    n_val = 1797 - 359 - 1294
    for child in children:
        start = results.results[child["parent"]]
        assert child["preservation_error"] < 1e-5, child
        assert abs(child["start_val_acc"] - start["default"]) <= 1 / n_val + 1e-12
    # the rewards reached the controller: one REINFORCE update per episode
    updates = [v for c in _find(state, "controller") if isinstance(c, dict) for v in _find(c, "updates")]
    assert 2 in updates, f"controller updates found in the saved state: {updates}"
    assert results.winner_final is not None and results.seed_final is not None
