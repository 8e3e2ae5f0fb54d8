"""End to end: a search (NASH, EAS) stopped with `nnictl stop` and continued with `nnictl resume`.

After the resume the search goes on from its saved state (for EAS: the controller's weights and optimiser
too): no candidate that finished before the stop is trained again, children still inherit their parents'
weights, and the search ends DONE.
"""

from __future__ import annotations

from pathlib import Path

import json

import pytest
from conftest import E2E_CLASS_ARGS, ROOT
from nnictl_harness import NnictlExperiment, experiment_config

from nni_nas_ext.results import SearchResults, decode_metric

pytestmark = pytest.mark.e2e


def _finished_candidates(exp: NnictlExperiment, *, trained_only: bool = False) -> list[str]:
    """Candidates of the final results (with ``trained_only``: not the re-reports of NNI's re-runs)."""
    finals = [decode_metric(m["data"]) for m in exp.metric_data() if m["type"] == "FINAL"]
    return [f.get("candidate") for f in finals if not (trained_only and f.get("rerun"))]


EAS_ARGS = {"episodes": 2, "children_per_episode": 2, "n_wider": 1, "n_deeper": 1, "epochs": 2, "epochs_start": 4,
            "epochs_final": 2, "morphism_mode": "exact", "max_width": 64, "dataset": "digits",
            "seed_widths": [4, 8, 8], "threads": 1, "seed": 4}
CASES = {
    "nash": ("NashTuner", {**E2E_CLASS_ARGS, "seed": 2}, 2 * 2),   # children: 2 steps x (3 - 1)
    "eas": ("EasTuner", EAS_ARGS, None),                            # children: cached duplicates vary
}


@pytest.mark.parametrize("search", list(CASES))
def test_stop_then_resume_continues_without_retraining(tmp_path: Path, search: str) -> None:
    tuner, class_args, n_children = CASES[search]
    config = experiment_config(
        tmp_path, name=f"{search}-resume", trial_code_directory=ROOT, trial_concurrency=2, max_trial_number=30,
        tuner={"className": f"nni_nas_ext.nni.tuners.{tuner}", "codeDirectory": str(ROOT), "classArgs": class_args},
        maxExperimentDuration="15m")
    with NnictlExperiment.create(config, tmp_path) as exp:
        # stop in the middle of step 1: the seed and at least one child are done
        exp.wait_until(lambda e: len(_finished_candidates(e)) >= 3, timeout=300, what="3 finished trials")
        before = set(_finished_candidates(exp))
        exp.stop()
        exp.resume()
        status = exp.wait_for_status({"DONE", "ERROR"}, timeout=600)
        assert status == "DONE", exp.diagnostics()
        finals = _finished_candidates(exp, trained_only=True)
        results = SearchResults.from_metric_data(exp.metric_data())
        state = json.loads((exp.exp_dir / "checkpoint" / "nni_nas_ext_bridge_state.json").read_text())

    assert len(finals) == len(set(finals)), f"a candidate was trained twice: {sorted(finals)}"
    assert before <= set(finals)  # (NNI re-runs the trials running at the stop; a finished one only re-reports)
    assert results.winner_final is not None and results.seed_final is not None  # the search reached its end
    for child in (r for r in results.results.values() if r["role"] == "child"):
        assert child["preservation_error"] < 1e-5
    if n_children is not None:
        assert len(results.by_role("child")) == n_children
    # one ledger: the search's state holds the candidates and results; the bridge's records only name them
    records = list(state["trials"].values())
    assert records and all(isinstance(r.get("candidate"), str) and "sample" not in r and "metric" not in r
                           for r in records), records[:2]
    assert {r["candidate"] for r in records} <= set(state["strategy_state"]["submitted"])
    if search == "eas":  # every episode's rewards reached the restored controller
        assert '"updates": 2' in json.dumps(state), "the controller did not make 2 updates across the resume"
