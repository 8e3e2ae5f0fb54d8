"""The comparison harness (benchmarks/compare.py, the package benchmarks/harness/): its pure parts, and one
tiny real run of two contestants.

The unit tests feed the harness synthetic NNI REST records and results files; the end-to-end test runs
``benchmarks/compare.py`` itself (two real ``nnictl`` experiments on digits, half a minute each), checks
every output, and runs the same command again to see it resume without doing anything new.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
from harness.contestants import CONTESTANTS, contestant_problem, eas, nash, nash_scratch  # noqa: E402
from harness.machine import environment  # noqa: E402
from harness.report import CSV_COLUMNS, csv_rows, csv_text, summary_markdown, write_report  # noqa: E402
from harness.results import load_results, new_results, pending_runs, run_key, save_results  # noqa: E402
from harness.retrain import train_and_test_pair  # noqa: E402
from harness.settings import Settings, SettingsMismatch, check_settings  # noqa: E402
from harness.trials import aggregate, best_so_far, best_trial, curve_at, format_mean_std, parse_trials  # noqa: E402

from nni_nas_ext.core.config import ConfigError, parse_config  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# Aggregation and curves
# --------------------------------------------------------------------------------------------------


def test_aggregate_mean_and_sample_std() -> None:
    mean, std, n = aggregate([0.8, 0.9, None])
    assert n == 2 and mean == pytest.approx(0.85) and std == pytest.approx(math.sqrt(0.005))
    assert aggregate([0.7]) == (0.7, 0.0, 1)
    mean, std, n = aggregate([None, float("nan")])
    assert n == 0 and math.isnan(mean) and math.isnan(std)


def test_format_mean_std() -> None:
    assert format_mean_std([0.8, 0.9]) == "0.8500 ± 0.0707"
    assert format_mean_std([0.8]) == "0.8000"
    assert format_mean_std([]) == "–"
    assert format_mean_std([1020, 1040], integer=True) == "1,030 ± 14"
    assert format_mean_std([5, 6], integer=True) == "5.5 ± 0.7"
    assert format_mean_std([5], integer=True) == "5"


def test_best_so_far_keeps_only_improvements_in_time_order() -> None:
    points = [(30.0, 0.5), (10.0, 0.4), (20.0, 0.3), (40.0, 0.5), (50.0, 0.7)]
    curve = best_so_far(points)
    assert curve == [(10.0, 0.4), (30.0, 0.5), (50.0, 0.7)]
    assert math.isnan(curve_at(curve, 5.0))
    assert curve_at(curve, 10.0) == 0.4
    assert curve_at(curve, 45.0) == 0.5
    assert curve_at(curve, 1e9) == 0.7
    assert best_so_far([]) == []


# --------------------------------------------------------------------------------------------------
# Reading NNI's REST records
# --------------------------------------------------------------------------------------------------

T0 = 1_000_000.0  # "nnictl create" was called at this Unix time


def _job(trial: str, status: str, start: float, end: float | None) -> dict[str, Any]:
    job = {"trialJobId": trial, "status": status, "sequenceId": int(trial[1:]), "startTime": (T0 + start) * 1000}
    if end is not None:
        job["endTime"] = (T0 + end) * 1000
    return job


def _final(trial: str, metric: Any, at: float) -> dict[str, Any]:
    # NNI stores the reported metric as a JSON string inside a JSON string
    return {"trialJobId": trial, "type": "FINAL", "timestamp": (T0 + at) * 1000, "sequence": 0,
            "data": json.dumps(json.dumps(metric))}


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    jobs = [
        _job("t0", "SUCCEEDED", 5, 21), _job("t1", "SUCCEEDED", 6, 31), _job("t2", "FAILED", 22, 25),
        _job("t3", "FAILED", 26, 28), _job("t4", "USER_CANCELED", 32, 61), _job("t5", "SUCCEEDED", 33, 62),
        _job("t6", "SUCCEEDED", 34, 40), _job("t7", "SUCCEEDED", 35, 45), _job("t8", "SUCCEEDED", 36, 50),
    ]
    metrics = [
        _final("t0", {"default": 0.5, "params": 1000, "checkpoint": "/x/a-0000.pt"}, 20),
        _final("t1", {"default": 0.7, "params": 2000, "sample": {"op": 1}}, 30),
        _final("t2", {"default": 0.0, "failed": "TrainingDiverged: nan"}, 24),
        # t3 failed without any final result; t4 was killed at the budget
        _final("t5", {"default": 0.9, "params": 3000, "graph": "{}"}, 61),  # after the 60 s budget
        _final("t6", {"default": 0.99, "params": 2000, "role": "final", "train_on": "train+val"}, 39),
        _final("t7", 0.95, 44),  # not a dict: breaks the contract
        _final("t8", {"default": 0.7, "params": 2500, "graph": "{}"}, 49),  # ties t1, later
        {"trialJobId": "t8", "type": "PERIODICAL", "timestamp": (T0 + 40) * 1000, "data": "0.1"},
    ]
    return jobs, metrics


def test_parse_trials_classifies_every_trial() -> None:
    jobs, metrics = _records()
    trials = parse_trials(jobs, metrics, T0, budget_s=60)
    outcome = {t["trial"]: t["outcome"] for t in trials}
    assert outcome == {"t0": "ok", "t1": "ok", "t2": "failed", "t3": "failed", "t4": "unfinished",
                       "t5": "after_budget", "t6": "final", "t7": "failed", "t8": "ok"}
    by_id = {t["trial"]: t for t in trials}
    assert by_id["t0"]["elapsed_s"] == pytest.approx(20) and by_id["t0"]["start_s"] == pytest.approx(5)
    assert by_id["t3"]["elapsed_s"] == pytest.approx(28)  # no metric: its end time
    assert by_id["t0"]["rebuild"] == "checkpoint" and by_id["t1"]["rebuild"] == "sample"
    assert by_id["t8"]["rebuild"] == "graph" and by_id["t1"]["params"] == 2000
    assert "TrainingDiverged" in by_id["t2"]["failed"] and "FAILED" in by_id["t3"]["failed"]
    assert "numeric 'default'" in by_id["t7"]["failed"]
    assert [t["trial"] for t in trials if t["elapsed_s"] is not None] == \
        sorted((t["trial"] for t in trials), key=lambda k: by_id[k]["elapsed_s"])
    best = best_trial(trials)
    assert best is not None and best["trial"] == "t1"  # the 0.9 came after the budget, the 0.99 is a final


# --------------------------------------------------------------------------------------------------
# Settings, resume, the registry
# --------------------------------------------------------------------------------------------------


def test_settings_mismatch_names_each_setting_and_the_remedy(tmp_path: Path) -> None:
    stored = Settings(minutes=8, limit=20000).to_dict()
    check_settings(stored, Settings(minutes=8, limit=20000), tmp_path / "results.json")
    with pytest.raises(SettingsMismatch) as info:
        check_settings(stored, Settings(minutes=4), tmp_path / "results.json")
    message = str(info.value)
    assert "minutes: 8.0 in the file, 4.0 now" in message and "limit: 20000 in the file, null now" in message
    assert "another --out" in message and "--minutes 8.0" in message and "--limit 20000" in message
    assert "epochs" not in message.replace("final_epochs", "")  # only the differing settings are named


def test_settings_validation_names_the_value() -> None:
    with pytest.raises(ConfigError, match="minutes"):
        parse_config(Settings, {"minutes": 0})
    with pytest.raises(ConfigError, match="did you mean 'minutes'"):
        parse_config(Settings, {"minute": 3})


def test_pending_runs_skip_finished_and_redo_failed() -> None:
    results = {"runs": {"nash-seed0": {"status": "finished"}, "nash-seed1": {"status": "error"}}}
    todo = pending_runs(results, ["nash", "net2net_random"], [0, 1])
    assert todo == [("nash", 1), ("net2net_random", 0), ("net2net_random", 1)]
    assert pending_runs({"runs": {}}, ["eas"], [3]) == [("eas", 3)]


def test_every_contestant_gets_the_same_task_and_budget() -> None:
    settings = Settings(dataset="digits", minutes=2.5, limit=600, epochs=3, concurrency=3)
    python = str(Path(sys.executable).absolute())
    shared = {"dataset": "digits", "limit": 600, "val_fraction": 0.2, "split_seed": 0, "lr": 0.05, "lr_min": 0.0,
              "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4, "threads": 1, "seed": 7}
    for name, make in CONTESTANTS.items():
        config = make(7, settings)
        assert config["maxExperimentDuration"] == "150s" and config["trialConcurrency"] == 3, name
        assert config["trialCommand"].startswith(python + " -m "), name
        assert config["trainingService"]["platform"] == "local"
        args = config["tuner"]["classArgs"]
        if name == "nni_network_morphism":  # a script trial: the task is on its command line
            words = config["trialCommand"].split()
            given = {words[i][2:].replace("-", "_"): words[i + 1]
                     for i in range(len(words)) if words[i].startswith("--")}
            assert {k: str(v) for k, v in shared.items()} == {k: given[k] for k in shared}
            assert given["epochs"] == "3" and args["input_width"] == 8 and args["n_output_node"] == 10
        else:
            assert {k: args[k] for k in shared} == shared, name
    assert nash_scratch(0, settings)["tuner"]["classArgs"]["inherit_weights"] is False
    assert "inherit_weights" not in nash(0, settings)["tuner"]["classArgs"]
    assert nash(0, settings)["tuner"]["classArgs"]["epochs_neighbour"] == 3
    assert eas(0, settings)["tuner"]["classArgs"]["epochs"] == 3


def test_final_training_pair_names_the_one_that_failed() -> None:
    settings = Settings(dataset="digits", limit=200, final_epochs=1, final_threads=2)

    def broken() -> torch.nn.Module:
        raise ValueError("no such layer: conv9")

    def tiny() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    with pytest.raises(RuntimeError, match=r"from inherited weights failed: ValueError: no such layer: conv9"):
        train_and_test_pair(tiny, broken, settings, 0)
    fresh, inherited = train_and_test_pair(tiny, tiny, settings, 0)
    assert fresh["threads"] == inherited["threads"] == 1 and fresh["params"] == 650
    assert fresh["test_acc"] == inherited["test_acc"]  # same seed, same net, each in its own process


def test_contestant_problem_says_why_a_contestant_cannot_run() -> None:
    settings = Settings(dataset="digits")
    assert contestant_problem(nash(0, settings)) is None
    missing = {**nash(0, settings), "tuner": {"className": "nni_nas_ext.nni.no_such_module.Tuner"}}
    assert "module 'nni_nas_ext.nni.no_such_module' not found" in contestant_problem(missing)
    bad = nash(0, settings)
    bad["tuner"]["classArgs"]["n_stepz"] = 3
    problem = contestant_problem(bad)
    assert problem is not None and "n_stepz" in problem and "n_steps" in problem
    script = {**nash(0, settings), "trialCommand": f"{sys.executable} -m nni_nas_ext.no_such_trial"}
    assert "trial module nni_nas_ext.no_such_trial" in contestant_problem(script)


def test_cli_refuses_other_settings_and_unknown_contestants(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = new_results(Settings(dataset="digits", minutes=8))
    save_results(tmp_path / "results.json", results)
    code = compare.main(["--contestants", "nash", "--dataset", "digits", "--minutes", "4", "--out", str(tmp_path)])
    assert code == 2 and "minutes: 8.0 in the file, 4.0 now" in capsys.readouterr().err
    code = compare.main(["--contestants", "nahs", "--dataset", "digits", "--minutes", "8", "--out", str(tmp_path)])
    assert code == 2 and "did you mean 'nash'" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text('{"format": "something else"}')
    code = compare.main(["--report-only", "--out", str(tmp_path / "other")])
    assert code == 2 and "not a results file" in capsys.readouterr().err
    assert load_results(tmp_path / "results.json")["runs"] == {}  # untouched


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def _synthetic_results() -> dict[str, Any]:
    results = new_results(Settings(dataset="digits", minutes=1))
    jobs, metrics = _records()
    for name, seed, shift in (("nash", 0, 0.0), ("nash", 1, 0.1), ("net2net_random", 0, -0.1)):
        trials = parse_trials(jobs, metrics, T0, 60)
        for t in trials:
            if t["val_acc"] is not None:
                t["val_acc"] = round(t["val_acc"] + shift, 4)
        best = best_trial(trials)
        results["runs"][run_key(name, seed)] = {
            "contestant": name, "seed": seed, "key": run_key(name, seed), "status": "finished",
            "experiment": {"id": f"exp{seed}", "ended_by": "budget"}, "trials": trials,
            "counts": {k: sum(t["outcome"] == k for t in trials) for k in ("ok", "failed", "unfinished")},
            "best": {k: best[k] for k in ("trial", "val_acc", "params", "elapsed_s", "rebuild")},
            "final": {"retrained": {"test_acc": 0.8 + shift, "seconds": 2.0},
                      "inherited": {"test_acc": 0.85 + shift, "seconds": 2.0} if name == "nash" else None},
            "environment": environment(), "started": "2026-01-01T00:00:00", "ended": "2026-01-01T00:01:00",
        }
    results["runs"]["eas-seed0"] = {"contestant": "eas", "seed": 0, "key": "eas-seed0", "status": "error",
                                    "error": "nnictl create failed (exit 1)"}
    results["unavailable"] = {"nni_random": "tuner X is not available here: module 'y' not found"}
    return results


def test_csv_has_one_row_per_trial() -> None:
    results = _synthetic_results()
    rows = csv_rows(results)
    assert len(rows) == 3 * 9
    assert list(rows[0]) == list(CSV_COLUMNS)
    best = [r for r in rows if r["is_best"] == 1]
    assert [(r["contestant"], r["seed"], r["trial"]) for r in best] == \
        [("nash", 0, "t1"), ("nash", 1, "t1"), ("net2net_random", 0, "t1")]
    text = csv_text(results)
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert text.count("\n") == 1 + 27


def test_summary_markdown_table() -> None:
    text = summary_markdown(_synthetic_results())
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| contestant | runs |"))
    assert lines[header + 1].startswith("| --- |")
    nash = lines[header + 2].split(" | ")
    assert nash[0] == "| nash" and nash[1] == "2"
    assert nash[2] == "0.7500 ± 0.0707"  # best val: 0.7 and 0.8
    assert nash[3] == "0.8500 ± 0.0707" and nash[4] == "0.9000 ± 0.0707"
    assert nash[5] == "2,000 ± 0" and nash[6] == "3 ± 0" and nash[7] == "3 ± 0"
    random = lines[header + 3].split(" | ")
    assert random[0] == "| net2net_random" and random[2] == "0.6000" and random[4] == "–"
    assert "eas-seed0: nnictl create failed" in text
    assert "- nni_random: tuner X is not available here" in text
    assert "## Machine and versions" in text and "torch" in text


def _check_png(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000, path
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600
    colours = {tuple(p) for p in (pixels[::3, ::3, :3] * 255).astype(int).reshape(-1, 3).tolist()}
    assert len(colours) > 50, f"{path}: {len(colours)} colours, a blank or trivial plot"


def test_write_report_writes_every_output(tmp_path: Path) -> None:
    written = write_report(_synthetic_results(), tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["acc_vs_params.png", "best_val_vs_time.png", "results.csv", "summary.md"]
    for name in ("acc_vs_params.png", "best_val_vs_time.png"):
        _check_png(tmp_path / name)
    assert not list(tmp_path.glob(".*tmp*"))


# --------------------------------------------------------------------------------------------------
# End to end: two real nnictl experiments, then a resume that does nothing new
# --------------------------------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.e2e
def test_compare_two_contestants_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--contestants", "nash,net2net_random",
               "--minutes", "0.75", "--seeds", "0", "--dataset", "digits", "--epochs", "1", "--final-epochs", "2",
               "--final-threads", "2", "--seed-widths", "4", "8", "8", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.monotonic() - start
    log = f"exit {first.returncode} after {seconds:.0f} s\n{first.stdout}\n{first.stderr}"
    assert first.returncode == 0, log

    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["minutes"] == 0.75 and results["budget_s"] == 45
    assert set(results["runs"]) == {"nash-seed0", "net2net_random-seed0"}, log
    for key, run in results["runs"].items():
        assert run["status"] == "finished", (key, run.get("error"))
        exp = run["experiment"]
        assert exp["id"] and not _port_open(exp["port"]), f"{key}: the experiment was not stopped"
        assert exp["ended_by"] in ("budget", "DONE")
        counted = [t for t in run["trials"] if t["outcome"] == "ok"]
        assert counted, f"{key}: no trial within the budget\n{log}"
        assert all(0 <= t["elapsed_s"] <= 45 and t["rebuild"] == "checkpoint" for t in counted)
        assert run["best"]["val_acc"] == max(t["val_acc"] for t in counted)
        for kind in ("retrained", "inherited"):  # both rebuild from our checkpoints
            final = run["final"][kind]
            assert 0.0 <= final["test_acc"] <= 1.0 and final["epochs"] == 2 and final["train_size"] == 1438
            assert final["threads"] == 1  # the pair ran side by side, a thread each
        assert run["final"]["retrained"]["params"] == run["best"]["params"]
        assert run["environment"]["nni"] == "3.0" and run["environment"]["cores"]
        assert run["config"]["trialCommand"].startswith(str(Path(sys.executable).absolute()))
        assert not list((out / "work" / key).rglob("*.pt")), "checkpoints are removed after a run"
        home = out / "work" / key / "home"
        assert home.is_dir()  # NNI's manifest went to the private HOME, not the user's
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(len(r["trials"]) for r in results["runs"].values())
    summary = (out / "summary.md").read_text()
    assert "| nash | 1 |" in summary and "| net2net_random | 1 |" in summary
    for name in ("best_val_vs_time.png", "acc_vs_params.png"):
        _check_png(out / name)

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "skipping nash-seed0" in again.stdout and "skipping net2net_random-seed0" in again.stdout
    assert "0 run(s) to do" in again.stdout and "experiment" not in again.stdout.split("0 run(s) to do")[1].lower()
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["runs"] == results["runs"]
    assert len(resumed["invocations"]) == 2
    print(f"first invocation: {seconds:.0f} s")
