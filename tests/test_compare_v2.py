"""Protocol v2 of the benchmark: its pure parts (idle CPU, paired differences, epochs that fit, contestants)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
v2 = importlib.import_module("compare_v2")


def test_idle_fraction_counts_slot_seconds_without_a_trial() -> None:
    assert v2.idle_fraction([(0, 10), (0, 10)], 10, 2) == 0.0
    assert v2.idle_fraction([(0, 10)], 10, 2) == pytest.approx(0.5)
    assert v2.idle_fraction([(0, 5), (5, 10), (0, 10)], 10, 2) == 0.0
    assert v2.idle_fraction([(-3, 4), (8, 30)], 10, 2) == pytest.approx(1 - 6 / 20)  # clipped to the run
    assert v2.idle_fraction([(0, 4)], 10, 2, harness=[(4, 10)]) == pytest.approx(1 - (4 + 12) / 20)
    assert v2.idle_fraction([], 0, 2) is None


def test_paired_differences_pair_by_seed() -> None:
    runs = [{"contestant": c, "seed": s, "status": "finished", "test_acc": a}
            for c, s, a in [("nash", 0, 0.93), ("nash", 1, 0.94), ("nni_random", 0, 0.92), ("nni_random", 1, 0.935),
                            ("seed_only", 1, 0.90)]]
    runs.append({"contestant": "nni_random", "seed": 2, "status": "error", "test_acc": None})
    diffs = v2.paired_differences(runs)
    assert diffs["nni_random"]["per_seed"] == pytest.approx({0: 0.01, 1: 0.005})
    assert diffs["nni_random"]["mean"] == pytest.approx(0.0075) and diffs["nni_random"]["n"] == 2
    assert diffs["seed_only"]["per_seed"] == pytest.approx({1: 0.04}) and diffs["seed_only"]["std"] == 0.0


def test_epochs_that_fit() -> None:
    assert v2.epochs_that_fit(100, 10, 50) == 9  # 10 s x 1.1 safety
    assert v2.epochs_that_fit(5, 10, 50) == 1
    assert v2.epochs_that_fit(10_000, 10, 7) == 7


def test_every_contestant_gives_a_valid_config_with_the_right_budget() -> None:
    from nni_nas_ext.nni.tuners import TUNERS

    s = v2.SettingsV2(minutes=30, final_window_minutes=5, dataset="digits")
    validators = {f"{b.__module__}.{b.__qualname__}": v for b, v in TUNERS.values()}
    for name, make in v2.CONTESTANTS.items():
        config = make(0, s)
        if config is None:
            assert name == "seed_only"
            continue
        tuner = config["tuner"]
        validators[tuner["className"]]().validate(dict(tuner["classArgs"]))
        expected = 1800 if name in v2.OWN_FINAL else 1500
        assert config["maxExperimentDuration"] == f"{expected}s", name
    assert v2.CONTESTANTS["nash_scratch"](0, s)["tuner"]["classArgs"]["inherit_weights"] is False


def test_summary_lists_contestants_and_paired_differences() -> None:
    s = v2.SettingsV2(minutes=30, dataset="digits")
    runs = [{"contestant": c, "seed": 0, "status": "finished", "test_acc": a, "test_acc_retrained": a - 0.01,
             "params": 1000, "trials": 12, "idle_cpu_fraction": 0.02, "key": f"{c}-seed0"}
            for c, a in [("nash", 0.93), ("nni_random", 0.92)]]
    text = v2.summary_markdown({"settings": s.to_dict(), "runs": runs})
    assert "| nash | 1 | 0.9300 |" in text and "| nni_random | 1 | +1.00 |" in text


def test_the_report_writes_summary_and_plots(tmp_path: Path) -> None:
    s = v2.SettingsV2(minutes=30, dataset="digits")
    trials = [{"outcome": "ok", "elapsed_s": 60.0 * i, "val_acc": 0.5 + 0.05 * i} for i in range(1, 5)]
    runs = [{"contestant": c, "seed": 0, "status": "finished", "test_acc": a, "test_acc_retrained": a - 0.01,
             "params": p, "trials": 4, "idle_cpu_fraction": 0.02, "key": f"{c}-seed0", "trial_records": trials}
            for c, a, p in [("nash", 0.93, 90_000), ("nni_random", 0.92, 50_000)]]
    v2.write_report({"settings": s.to_dict(), "runs": runs}, tmp_path)
    for name in ("summary.md", "best_val_vs_time.png", "acc_vs_params.png"):
        assert (tmp_path / name).stat().st_size > 1000 if name.endswith(".png") else (tmp_path / name).is_file()


def test_supersede_keeps_the_old_runs_with_the_reason_and_reruns_them() -> None:
    s = v2.SettingsV2(minutes=30, dataset="digits")
    runs = [{"contestant": c, "seed": 0, "status": "finished", "test_acc": a, "test_acc_retrained": a,
             "params": 1000, "trials": 12, "idle_cpu_fraction": 0.1, "key": f"{c}-seed0"}
            for c, a in [("nash", 0.93), ("nni_random", 0.92)]]
    results = {"settings": s.to_dict(), "runs": runs}
    assert v2.supersede(results, ["nash"], "the schedule changed") == ["nash-seed0"]
    assert [r["contestant"] for r in results["runs"]] == ["nni_random"]
    (old,) = results["superseded"]
    assert old["test_acc"] == 0.93 and old["superseded"]["why"] == "the schedule changed"
    text = v2.summary_markdown(results)
    assert "Superseded runs" in text and "nash-seed0 (test acc 0.93, idle 0.100): the schedule changed" in text
    assert "| nash |" not in text
    with pytest.raises(ValueError, match="nash_scratch"):
        v2.supersede(results, ["nash_scrach"], "typo")


def test_supersede_needs_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        v2.main(["--supersede", "nash", "--report-only"])
    assert exc.value.code == 2 and "--supersede needs --why" in capsys.readouterr().err


def test_path_eas_continues_its_best_network_from_the_inherited_weights_and_nni_s_start_from_scratch(
        tmp_path: Path) -> None:
    import torch

    from nni_nas_ext.core import build_module
    from nni_nas_ext.search_spaces import cell_cnn
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    arch = cell_cnn((1, 8, 8), 10, widths=(4, 8), cells_per_stage=1, stem_width=4)
    torch.manual_seed(0)
    trained = build_module(arch).state_dict()
    path = CheckpointStore(tmp_path).save("abc-0003", arch, trained)
    metric = {"checkpoint": str(path)}

    make, what = v2.final_network("path_eas", metric, (1, 8, 8), 10)
    assert "inherited" in what
    kept = make().state_dict()
    assert all(torch.equal(kept[k], trained[k]) for k in trained)

    make, what = v2.final_network("nni_random", metric, (1, 8, 8), 10)  # (a contestant that starts from scratch)
    assert "inherited" not in what
    torch.manual_seed(1)
    fresh = make().state_dict()
    assert not all(torch.equal(fresh[k], trained[k]) for k in trained if k.endswith("weight"))

    with pytest.raises(RuntimeError, match="path_eas_random's best trial left no checkpoint"):
        v2.final_network("path_eas_random", {"sample": {"a": 1}}, (1, 8, 8), 10)


def test_a_results_folder_holds_the_runs_of_one_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.machine import environment

    here = environment()["cpu"]
    xeon = "Intel(R) Xeon(R) Processor"
    runs = [{"contestant": "nash", "seed": 0, "status": "finished", "environment": {"cpu": xeon}},
            {"contestant": "nash", "seed": 1, "status": "error", "environment": {"cpu": "Other CPU"}}]
    assert v2.other_machines({"runs": runs}, "Intel(R) Xeon(R) Processor") == []
    assert v2.other_machines({"runs": runs}, "AMD EPYC") == ["Intel(R) Xeon(R) Processor"]
    assert v2.cpu_tag("Intel(R) Xeon(R) Processor") == "intel-xeon" and v2.cpu_tag("AMD EPYC") == "amd-epyc"

    out = tmp_path / "v2"
    out.mkdir()
    foreign = "Not " + str(here)
    settings = v2.parse_config(v2.SettingsV2, {  # what main() makes of the command line below
        "dataset": "digits", "limit": None, "minutes": 30.0, "epochs": 2, "seed_epochs": 4, "final_epochs": 10,
        "seed_widths": [32, 64, 128], "final_window_minutes": 5.0})
    results = {**v2.load(out / "results.json", settings), "runs": [{**runs[0], "environment": {"cpu": foreign}}]}
    v2.save(out / "results.json", results)
    before = (out / "results.json").read_text()
    code = v2.main(["--dataset", "digits", "--contestants", "seed_only", "--seeds", "0", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert foreign in err and "--out" in err and str(here) in err
    assert (out / "results.json").read_text() == before  # nothing ran, nothing lost
