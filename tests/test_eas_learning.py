"""The EAS-learning harness (``benchmarks/eas_learning.py``, issue 19) in its quick mode: digits, tiny budgets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import eas_learning  # noqa: E402

pytestmark = pytest.mark.slow  # runs the benchmark script (issue 13: not in the fast suite)


def test_the_protocol_is_fixed_and_its_full_evaluation_never_saw_its_validation_images() -> None:
    import numpy as np

    assert eas_learning.EPISODES == 160 and eas_learning.SEARCH["start"] == "seed"
    order = np.random.default_rng(eas_learning.TASK["split_seed"]).permutation(60000)
    proxy = order[:eas_learning.TASK["limit"]]
    n_val = round(eas_learning.TASK["val_fraction"] * len(proxy))
    full = order[:eas_learning.FULL["limit"]]
    n_full = round(eas_learning.FULL["val_fraction"] * len(full))
    assert set(full[:n_full]) == set(proxy[:n_val])  # the same 1,000 validation images, trained on by nothing


def test_quick_runs_resume_and_the_rank_check_correlates(tmp_path: Path) -> None:
    out = tmp_path / "eas"
    assert eas_learning.main(["--quick", "--out", str(out), "--seeds", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"eas-seed0", "net2net_random-seed0"}
    for run in results["runs"].values():
        assert run["status"] == "finished" and len(run["episodes"]) == 2
        assert all(0.0 <= e["reward"] <= 1.0 for e in run["episodes"])
    assert results["runs"]["eas-seed0"]["episodes"][0]["controller"]["updates"] == 1.0
    assert results["runs"]["net2net_random-seed0"]["episodes"][0]["controller"] is None
    before = (out / "results.json").read_text()
    assert eas_learning.main(["--quick", "--out", str(out), "--seeds", "0"]) == 0  # nothing left to run
    assert json.loads((out / "results.json").read_text())["runs"] == json.loads(before)["runs"]
    assert eas_learning.main(["--quick", "--out", str(out), "--rank-check"]) == 0
    rank = json.loads((out / "results.json").read_text())["rank_check"]
    assert len(rank["networks"]) >= 4 and -1.0 <= rank["spearman"] <= 1.0
    assert eas_learning.main(["--quick", "--out", str(out), "--reevaluate"]) == 0
    assert eas_learning.main(["--quick", "--out", str(out), "--transfer", "--only", "eas-seed0"]) == 0
    assert eas_learning.main(["--quick", "--out", str(out), "--transfer", "--only", "net2net_random-seed0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["rank_check"] == rank  # kept beside the re-evaluation
    assert set(results["transfer"]) == set(results["runs"])  # each process added its own run
    for key, run in results["runs"].items():
        n = min(eas_learning.REEVAL["full_draws"], len(eas_learning._last_third_children(run)))
        assert len(results["transfer"][key]["networks"]) == n
    for key, run in results["runs"].items():
        again = results["reevaluation"][key]
        children = eas_learning._last_third_children(run)
        assert len(again["networks"]) == min(eas_learning.REEVAL["draws"], len(children))
        assert all(0.0 <= n["fresh_val_acc"] <= 1.0 for n in again["networks"])
        trained = {c["candidate"] or c["cached_from"] for c in children}
        assert {n["candidate"] for n in again["networks"]} <= trained
    summary = (out / "summary.md").read_text()
    assert "EAS minus Net2NetRandom, paired by seed (n=1)" in summary and "Rank check of the proxy" in summary
    assert "Re-evaluation" in summary and "| distinct | new |" in summary and "Fuller evaluation" in summary
    assert (out / "rewards.png").stat().st_size > 0
