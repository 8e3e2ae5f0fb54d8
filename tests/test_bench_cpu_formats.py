"""benchmarks/bench_cpu_formats.py: the order, the summaries, the decision criterion, and ``--quick`` end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_cpu_formats.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cpu_formats", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_variant_leads_once_per_cycle(bench) -> None:
    names = list(bench.VARIANTS)
    orders = [bench.rotated(names, r) for r in range(len(names))]
    assert orders[0] == names and orders[1] == [*names[1:], names[0]]
    assert sorted(o[0] for o in orders) == sorted(names)  # each variant runs first once
    assert all(sorted(o) == sorted(names) for o in orders) and bench.rotated(names, len(names)) == names


def test_speed_summary_is_the_median_and_its_ratio_to_the_baseline(bench) -> None:
    rates = {"fp32": [100.0, 120.0, 110.0], "bf16": [150.0, 300.0, 160.0]}
    out = bench.summarise_speed(rates)
    assert out["fp32"] == {"median": 110.0, "ratio": 1.0, "median_round_ratio": 1.0}
    assert out["bf16"]["median"] == 160.0 and out["bf16"]["ratio"] == pytest.approx(160 / 110)
    assert out["bf16"]["median_round_ratio"] == pytest.approx(1.5)  # rounds: 1.5, 2.5, 1.4545
    with pytest.raises(ValueError, match="baseline 'fp32'"):
        bench.summarise_speed({"bf16": [1.0]})
    with pytest.raises(ValueError, match="'bf16' has 1"):
        bench.summarise_speed({"fp32": [1.0, 2.0], "bf16": [1.0]})


def test_accuracy_tolerance_is_two_standard_errors_of_a_difference(bench) -> None:
    assert bench.accuracy_tolerance(0.85, 6000) == pytest.approx(2 * math.sqrt(2 * 0.85 * 0.15 / 6000))
    assert 0.012 < bench.accuracy_tolerance(0.85, 6000) < 0.014  # the docstring's 1.3 points
    assert bench.accuracy_tolerance(1.0, 100) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        bench.accuracy_tolerance(0.5, 0)


def _speed(ratios: dict[str, float]) -> dict[str, dict[str, float]]:
    return {v: {"ratio": r, "median": 100 * r, "median_round_ratio": r} for v, r in ratios.items()}


def test_decide_needs_speed_on_every_network_and_accuracy_within_noise(bench) -> None:
    speed = {"seed": _speed({"fp32": 1.0, "channels_last": 1.3, "bf16": 1.6, "channels_last+bf16": 2.4}),
             "child": _speed({"fp32": 1.0, "channels_last": 1.2, "bf16": 1.05, "channels_last+bf16": 2.0})}
    acc = {"seed": {"fp32": 0.85, "channels_last": 0.85, "bf16": 0.85, "channels_last+bf16": 0.845}}
    out = bench.decide(speed, acc, n_val=6000)
    assert out["adopt"] == "channels_last+bf16"  # the highest smallest speed-up among the passing
    assert not out["variants"]["bf16"]["faster"] and "1.05x < 1.10x" in out["variants"]["bf16"]["reasons"][0]
    assert out["variants"]["channels_last"]["passes"] and out["variants"]["channels_last"]["min_speedup"] == 1.2
    # an accuracy drop beyond two standard errors (1.3 points here) rules the fastest out
    acc["seed"]["channels_last+bf16"] = 0.83
    out = bench.decide(speed, acc, n_val=6000)
    assert out["adopt"] == "channels_last" and not out["variants"]["channels_last+bf16"]["accurate"]
    assert "2.00 points below fp32" in out["variants"]["channels_last+bf16"]["reasons"][0]
    # none faster by 10 %: nothing adopted
    slow = {"seed": _speed({"fp32": 1.0, "channels_last": 1.09, "bf16": 0.6, "channels_last+bf16": 0.9})}
    assert bench.decide(slow, acc, n_val=6000)["adopt"] is None


@pytest.mark.slow
def test_quick_run_writes_the_json_and_the_summary(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "cpu_formats.json").read_text())
    assert [n["name"] for n in result["networks"]] == ["seed", "child-3", "child-5"]
    for name in ("seed", "child-3", "child-5"):
        summary = result["speed"][name]["summary"]
        assert set(summary) == {"fp32", "channels_last", "bf16", "channels_last+bf16"}
        assert summary["fp32"]["ratio"] == 1.0 and all(len(v) == 2 for v in result["speed"][name]["cpu_rates"].values())
    assert set(result["accuracy"]) == {"seed", "child-3"}
    assert all(0.0 <= a <= 1.0 for a in result["accuracy"]["seed"]["val_accuracy"].values())
    assert isinstance(result["environment"]["native_bf16"], bool) and result["environment"]["torch_threads"] == 1
    summary_md = (tmp_path / "summary.md").read_text()
    assert "| seed |" in summary_md and "Decision:" in summary_md and "decision:" in proc.stdout
