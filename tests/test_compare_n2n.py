"""benchmarks/compare_n2n.py, the N2N benchmark, as a smoke test (--quick: digits, tiny budgets): a NASH teacher,
N2N and N2NRandom on it, the report, and a second call that resumes without running anything again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_n2n  # noqa: E402

pytestmark = pytest.mark.slow  # runs the benchmark script (issue 13: not in the fast suite)


def test_quick_run_writes_the_report_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert compare_n2n.main(["--quick", "--seeds", "0", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] is True and set(results["teachers"]) == {"0"}
    assert Path(results["teachers"]["0"]["checkpoint"]).is_file()
    assert set(results["runs"]) == {"n2n-seed0", "n2n_random-seed0"}
    for run in results["runs"].values():
        assert run["status"] == "finished", run["reason"]
        assert len(run["mean_rewards"]) == 2 and run["compression"] > 1.0
        assert run["teacher_params"] == results["teachers"]["0"]["params"]
        assert isinstance(run["criterion"], bool) and run["cpu_minutes"] >= 0
    summary = (tmp_path / "summary.md").read_text()
    assert "| n2n | 1 |" in summary and "| n2n_random | 1 |" in summary and "CPU-minutes" in summary
    assert (tmp_path / "rewards.png").stat().st_size > 0

    def no_more_runs(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(compare_n2n, "run_search", no_more_runs)
    assert compare_n2n.main(["--quick", "--seeds", "0", "--out", str(tmp_path)]) == 0
    assert compare_n2n.main(["--seeds", "0", "--out", str(tmp_path)]) == 2  # quick and full runs never mix


def test_two_jobs_run_two_seeds_at_once_and_merge_their_runs(tmp_path: Path) -> None:
    assert compare_n2n.main(["--quick", "--seeds", "0", "1", "--jobs", "2", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["teachers"]) == {"0", "1"}
    assert set(results["runs"]) == {f"{c}-seed{s}" for c in ("n2n", "n2n_random") for s in (0, 1)}
    assert all(run["status"] == "finished" for run in results["runs"].values())
    assert {p.name for p in tmp_path.glob("job*.log")} == {"job0.log", "job1.log"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| n2n | 2 |" in summary and "| n2n_random | 2 |" in summary


def test_a_bad_jobs_count_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        compare_n2n.main(["--quick", "--jobs", "0"])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
