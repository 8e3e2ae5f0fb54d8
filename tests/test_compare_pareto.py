"""The multi-objective benchmark (benchmarks/compare_pareto.py, issue 16): its parts without nnictl.

The front is chosen on validation error and parameters only; the size bins and the hypervolume with its fixed
bounds; the networks are tested from the weights their trials saved, by one function for every contestant; resume
skips finished runs and redoes failed ones; the summary and the plots; every contestant's config.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
pareto = importlib.import_module("compare_pareto")
v2 = importlib.import_module("compare_v2")


def _trial(trial: str, default: float, params: int, outcome: str = "ok", **metric: Any) -> dict[str, Any]:
    return {"trial": trial, "outcome": outcome, "elapsed_s": 60.0,
            "metric": {"default": default, "params": params, "checkpoint": f"/x/{trial}.pt", **metric}}


# ---- points and the front --------------------------------------------------------------------------------


def test_points_are_the_networks_trained_within_the_budget() -> None:
    trials = [
        _trial("a", 0.80, 10_000),
        _trial("f", 0.99, 1_000, outcome="final", role="final", train_on="train+val"),  # no validation error
        _trial("late", 0.95, 5_000, outcome="after_budget"),
        _trial("bad", 0.5, 5_000, outcome="failed", failed="TrainingDiverged"),
        {"trial": "killed", "outcome": "unfinished", "metric": None},
        _trial("noparams", 0.9, None),  # type: ignore[arg-type]
        # NNI's baseline with the size-penalised reward: default is the reward, the accuracy is val_acc
        _trial("nni", 0.8 - 0.02 * 4, 10_000, val_acc=0.8, checkpoint=None, weights="/x/nni-trial-00001.pt",
               sample={"stage0_depth": 1}),
    ]
    points = pareto.network_points(trials)
    assert [p["trial"] for p in points] == ["a", "nni"]
    assert points[1]["val_acc"] == 0.8 and points[1]["weights"] == "/x/nni-trial-00001.pt"
    assert points[1]["sample"] == {"stage0_depth": 1} and points[0]["checkpoint"] == "/x/a.pt"


def test_the_front_is_chosen_on_validation_error_and_parameters_only() -> None:
    points = pareto.network_points([
        _trial("a", 0.80, 10_000),
        _trial("b", 0.85, 50_000),
        _trial("c", 0.84, 60_000),   # worse on validation and larger than b: off the front...
        _trial("d", 0.90, 200_000),
        _trial("e", 0.79, 20_000),   # dominated by a
        _trial("b2", 0.85, 50_000),  # b's twin: one copy on the front
    ])
    tests = {"a": 0.81, "b": 0.86, "c": 0.99, "d": 0.91, "e": 0.995, "b2": 0.86}  # ...whatever its test accuracy
    for p in points:
        p["test_acc"] = tests[p["trial"]]  # known or not, the front does not look at it
    front = [points[i] for i in pareto.validation_front(points)]
    assert [p["trial"] for p in front] == ["a", "b", "d"]
    assert pareto.best_test_at(front, 100_000) == 0.86  # not c's 0.99, nor e's 0.995
    assert pareto.validation_front([]) == []


def test_best_test_accuracy_per_size_bin() -> None:
    front = [{"params": 25_000, "test_acc": 0.85}, {"params": 25_001, "test_acc": 0.88},
             {"params": 100_000, "test_acc": 0.90}, {"params": 480_000, "test_acc": 0.89},
             {"params": 20_000, "test_acc": None}]
    assert pareto.best_test_at(front, 25_000) == 0.85  # at most 25k: 25,000 counts, 25,001 does not
    assert pareto.best_test_at(front, 100_000) == 0.90
    assert pareto.best_test_at(front, 500_000) == 0.90
    assert pareto.best_test_at(front, 19_999) is None
    figures = pareto.run_figures(front)
    assert set(figures) == {"hypervolume", "best_test_acc_25k", "best_test_acc_100k", "best_test_acc_500k"}
    assert figures["best_test_acc_500k"] == 0.90
    assert pareto.run_figures([{"params": 600_000, "test_acc": 0.93}])["best_test_acc_500k"] is None


def test_hypervolume_has_fixed_bounds_and_reference() -> None:
    # error in [0, 1], log10 params in [3, 7], reference 1.01: 10^5 parameters at test acc 0.9 -> (0.1, 0.5)
    one = [{"params": 100_000, "test_acc": 0.9}]
    assert pareto.front_hypervolume(one) == pytest.approx((1.01 - 0.1) * (1.01 - 0.5))
    two = one + [{"params": 10_000, "test_acc": 0.8}]  # (0.2, 0.25)
    assert pareto.front_hypervolume(two) == pytest.approx(0.91 * 0.51 + 0.81 * 0.25)
    # values outside the bounds are clipped: 100 parameters count as 1,000, 10^8 as 10^7
    assert pareto.front_hypervolume([{"params": 100, "test_acc": 0.9}]) == pytest.approx(0.91 * 1.01)
    assert pareto.front_hypervolume([{"params": 10**8, "test_acc": 0.9}]) == pytest.approx(0.91 * 0.01)
    # a dominated point adds nothing; a network never tested counts for nothing; nothing is 0
    assert pareto.front_hypervolume(two + [{"params": 200_000, "test_acc": 0.85}]) == \
        pytest.approx(pareto.front_hypervolume(two))
    assert pareto.front_hypervolume(one + [{"params": 1_000, "test_acc": None}]) == \
        pytest.approx(pareto.front_hypervolume(one))
    assert pareto.front_hypervolume([]) == 0.0
    assert pareto.PROTOCOL["error_bounds"] == [0.0, 1.0] and pareto.PROTOCOL["log10_params_bounds"] == [3.0, 7.0]
    assert pareto.PROTOCOL["hv_reference"] == 1.01


def test_slot_fraction_is_the_busy_share() -> None:
    assert pareto.slot_fraction([(0, 10)], 10, 2) == pytest.approx(0.5)
    assert pareto.slot_fraction([], 10, 2) == 0.0
    assert pareto.slot_fraction([], 0, 2) is None


# ---- the test of a front network: from its saved weights, one function for everyone ------------------------


def test_front_networks_are_rebuilt_with_the_weights_their_trials_saved(tmp_path: Path) -> None:
    from nni_nas_ext.core import build_module
    from nni_nas_ext.search_spaces import nash_seed
    from nni_nas_ext.search_spaces.cnn_space import build_cnn_space_model
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    store = CheckpointStore(tmp_path / "checkpoints")
    x = torch.randn(5, 1, 8, 8)
    torch.manual_seed(0)
    arch = nash_seed((1, 8, 8), 10, widths=(4, 8, 8))
    ours = build_module(arch).eval()
    path = store.save(f"{arch.id}-0001", arch, ours.state_dict())
    sample = {f"stage{s}_{k}": v for s in range(3) for k, v in (("depth", 1), ("width", 4), ("kernel", 3),
                                                                   ("skip", "no"))}
    nni = build_cnn_space_model(sample, (1, 8, 8), 10).eval()
    weights = store.save_weights("nni-trial-00001", nni.state_dict(), meta={"rebuild": {"sample": sample}})
    for point, original in (({"trial": "t1", "checkpoint": str(path)}, ours),
                            ({"trial": "t2", "weights": str(weights), "sample": sample}, nni)):
        torch.manual_seed(1)  # another initialisation: only the saved weights can make the outputs equal
        rebuilt = pareto.trained_network(point, (1, 8, 8), 10).eval()
        with torch.no_grad():
            assert torch.equal(rebuilt(x), original(x)), point
    with pytest.raises(ValueError, match=r"trial t3 left no weights to test.*keep_weights"):
        pareto.trained_network({"trial": "t3", "sample": sample}, (1, 8, 8), 10)


# ---- resume, settings, the contestants ------------------------------------------------------------------


def test_a_second_invocation_skips_finished_runs_and_redoes_failed_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status = {"lemonade": "finished", "nash": "error"}
    calls: list[tuple[str, int]] = []

    def fake_run_one(contestant: str, seed: int, s: Any, out: Path, *, port: int, label: str,
                     say: Any) -> dict[str, Any]:
        calls.append((contestant, seed))
        return {"contestant": contestant, "seed": seed, "key": f"{contestant}-seed{seed}",
                "status": status[contestant], "error": "RuntimeError: boom"}

    monkeypatch.setattr(pareto, "run_one", fake_run_one)
    monkeypatch.setattr(pareto, "write_report", lambda results, out: None)
    argv = ["--contestants", "lemonade", "nash", "--seeds", "0", "1", "--dataset", "digits", "--out", str(tmp_path)]
    assert pareto.main(argv) == 1  # a run failed
    assert calls == [("lemonade", 0), ("nash", 0), ("lemonade", 1), ("nash", 1)]  # seed by seed
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["format"] == pareto.RESULTS_FORMAT and saved["protocol"] == json.loads(json.dumps(pareto.PROTOCOL))
    assert saved["settings"]["minutes"] == 15.0 and saved["settings"]["seed_widths"] == [32, 64, 128]

    calls.clear()
    status["nash"] = "finished"
    assert pareto.main(argv) == 0
    assert calls == [("nash", 0), ("nash", 1)]  # the finished lemonade runs are skipped
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert sorted((r["contestant"], r["seed"], r["status"]) for r in runs) == [
        ("lemonade", 0, "finished"), ("lemonade", 1, "finished"), ("nash", 0, "finished"), ("nash", 1, "finished")]
    assert pareto.pending({"runs": runs}, ["lemonade", "nash"], [0, 1, 2]) == [("lemonade", 2), ("nash", 2)]

    calls.clear()
    capsys.readouterr()
    assert pareto.main([*argv, "--minutes", "30"]) == 2  # other settings are refused, nothing runs
    assert "minutes: 15.0 in the file, 30.0 now" in capsys.readouterr().err
    saved = json.loads((tmp_path / "results.json").read_text())
    saved["protocol"]["reward_size_weight"] = 0.05
    (tmp_path / "results.json").write_text(json.dumps(saved))
    assert pareto.main(argv) == 2 and "another protocol" in capsys.readouterr().err
    assert pareto.main([*argv[:2], "lemonad", *argv[3:]]) == 2
    assert "did you mean 'lemonade'" in capsys.readouterr().err
    assert calls == []


def test_supersede_keeps_the_old_runs_and_needs_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    results = {"runs": [{"contestant": "nash", "seed": 0, "key": "nash-seed0", "status": "finished"}]}
    assert v2.supersede(results, ["nash"], "the schedule changed", known=list(pareto.CONTESTANTS)) == ["nash-seed0"]
    assert results["runs"] == [] and results["superseded"][0]["superseded"]["why"] == "the schedule changed"
    with pytest.raises(ValueError, match="did you mean 'lemonade'"):
        v2.supersede(results, ["lemonad"], "typo", known=list(pareto.CONTESTANTS))
    with pytest.raises(SystemExit) as exc:
        pareto.main(["--supersede", "nash", "--report-only"])
    assert exc.value.code == 2 and "--supersede needs --why" in capsys.readouterr().err


def test_every_contestant_gives_a_valid_config_with_the_whole_budget() -> None:
    from nni_nas_ext.nni.tuners import TUNERS

    s = pareto.SettingsPareto(minutes=15, dataset="digits", seed_widths=(32, 64, 128))
    validators = {f"{b.__module__}.{b.__qualname__}": v for b, v in TUNERS.values()}
    for name, make in pareto.CONTESTANTS.items():
        config = make(0, s)
        tuner = config["tuner"]
        validators[tuner["className"]]().validate(dict(tuner["classArgs"]))
        assert config["maxExperimentDuration"] == "900s" and config["trialConcurrency"] == 2, name
        assert tuner["classArgs"]["val_fraction"] == 0.2 and tuner["classArgs"]["split_seed"] == 0, name
    size = pareto.CONTESTANTS["nni_regularized_evolution_size"](0, s)["tuner"]["classArgs"]
    assert size["strategy"] == "regularized_evolution" and size["reward_size_weight"] == 0.02
    assert size["keep_weights"] is True and (size["population_size"], size["sample_size"]) == (10, 3)
    lemonade = pareto.CONTESTANTS["lemonade"](0, s)["tuner"]["classArgs"]
    assert lemonade["objectives"] == ["params"] and lemonade["max_children"] is None
    assert lemonade["seed_widths"] == [32, 64, 128] and lemonade["epochs_child"] == 2
    assert pareto.CONTESTANTS["nash"](0, s) == v2.CONTESTANTS["nash"](0, s)  # protocol v2's NASH, unchanged


# ---- the report -------------------------------------------------------------------------------------------


def _run(contestant: str, seed: int, front: list[tuple[int, float]]) -> dict[str, Any]:
    points = [{"params": p, "test_acc": a} for p, a in front]
    return {"contestant": contestant, "seed": seed, "key": f"{contestant}-seed{seed}", "status": "finished",
            "networks": len(points) + 3, "front": points, "idle_cpu_fraction": 0.02, **pareto.run_figures(points)}


def _results() -> dict[str, Any]:
    s = pareto.SettingsPareto(minutes=15, dataset="digits")
    runs = [_run("lemonade", 0, [(20_000, 0.88), (90_000, 0.91), (400_000, 0.92)]),
            _run("lemonade", 1, [(24_000, 0.86), (300_000, 0.925)]),
            _run("nash", 0, [(94_186, 0.90), (450_000, 0.93)]),
            _run("nash", 1, [(120_000, 0.905)]),
            {"contestant": "nni_regularized_evolution_size", "seed": 0, "key": "nni_regularized_evolution_size-seed0",
             "status": "error", "error": "NnictlFailed: nnictl create failed (exit 1)", "front": []}]
    return {"settings": s.to_dict(), "protocol": json.loads(json.dumps(pareto.PROTOCOL)), "runs": runs}


def _tables(lines: list[str]) -> list[list[str]]:
    """The markdown tables of ``lines``: header, separator and rows of each."""
    tables = []
    for i, line in enumerate(lines):
        if line.startswith("| ---"):
            end = i + 1
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            tables.append(lines[i - 1:end])
    return tables


def test_summary_table_and_paired_differences() -> None:
    text = pareto.summary_markdown(_results())
    lines = text.splitlines()
    tables = _tables(lines)
    assert len(tables) == 3  # per contestant, paired differences, per run
    for table in tables:
        assert len({row.count("|") for row in table}) == 1, table  # every row has the header's columns
    lemonade = next(line for line in lines if line.startswith("| lemonade |")).split(" | ")
    assert lemonade[1] == "2" and lemonade[3:6] == ["0.8700 ± 0.0141", "0.8850 ± 0.0354", "0.9225 ± 0.0035"]
    nash = next(line for line in lines if line.startswith("| nash |")).split(" | ")
    assert nash[3:6] == ["– (0/2)", "0.9000 (1/2)", "0.9175 ± 0.0177"]  # no nash front network <= 25k
    header = next(i for i, line in enumerate(lines) if line.startswith("Paired by seed, `lemonade` minus"))
    paired = next(line for line in lines[header:] if line.startswith("| nash |")).split(" | ")
    assert paired[2:] == ["–", "+1.00 ± 0.00 (n=1)", "+0.50 ± 2.12 (n=2) |"]
    hv = {r["key"]: r["hypervolume"] for r in _results()["runs"] if r["status"] == "finished"}
    diffs = [hv["lemonade-seed0"] - hv["nash-seed0"], hv["lemonade-seed1"] - hv["nash-seed1"]]
    assert paired[1] == f"{sum(diffs) / 2:+.4f} ± {abs(diffs[0] - diffs[1]) / math.sqrt(2):.4f} (n=2)"
    assert "| lemonade-seed0 | " in text and "| 0.8800 | 0.9100 | 0.9200 | 6 | 3 |" in text
    assert "| nash-seed1 | " in text and "| – | – | 0.9050 | 4 | 1 |" in text
    assert "- nni_regularized_evolution_size-seed0: NnictlFailed" in text
    assert "| nni_regularized_evolution_size |" not in text  # a failed run is in no table


def test_the_report_writes_summary_and_plots(tmp_path: Path) -> None:
    pareto.write_report(_results(), tmp_path)
    assert (tmp_path / "summary.md").read_text() == pareto.summary_markdown(_results())
    for name in ("fronts.png", "hypervolume.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
    assert not list(tmp_path.glob(".*tmp*"))
