"""benchmarks/bench_trial_loop.py: the loop comparison in process, and ``--quick`` end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nni_nas_ext.core import build_module
from nni_nas_ext.search_spaces import nash_seed

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_trial_loop.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_trial_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bare_loop_is_plain_sgd_over_the_given_order(bench) -> None:
    torch.manual_seed(0)
    arch = nash_seed((1, 8, 8), 10, widths=(4, 8, 8))
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    net = build_module(arch)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bench.bare_loop(net, x, y, torch.arange(64), batch_size=32)
    assert not torch.equal(before["layers.conv1.weight"], net.state_dict()["layers.conv1.weight"])
    # by hand: the same two SGD steps
    ref = build_module(arch, before)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for i in (0, 32):
        loss = torch.nn.functional.cross_entropy(ref(x[i:i + 32]), y[i:i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in ref.state_dict().items())


def test_compare_loops_measures_both_on_the_same_work(bench) -> None:
    arch = nash_seed((1, 8, 8), 10, widths=(4, 8, 8))
    x, y = torch.randn(256, 1, 8, 8), torch.randint(0, 10, (256,))
    result = bench.compare_loops(arch, x, y, batch_size=32, steps=4, repeats=2)
    assert result["steps"] == 4 and result["clock"] == "cpu"
    assert len(result["cpu_rates"]["bare"]) == len(result["wall_rates"]["ours"]) == 2
    assert result["bare_images_per_s"] > 0 and result["ours_images_per_s"] > 0
    assert result["bare_images_per_s"] == pytest.approx(sum(result["cpu_rates"]["bare"]) / 2)
    assert result["ratio"] == pytest.approx(result["ours_images_per_s"] / result["bare_images_per_s"])
    assert result["median_pair_ratio"] == pytest.approx(sum(result["ratios"]) / 2)
    with pytest.raises(ValueError, match="10 steps of 32 need 320 images, but the data has 256"):
        bench.compare_loops(arch, x, y, batch_size=32, steps=10, repeats=1)


@pytest.mark.e2e
def test_quick_run_prints_both_tables_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for row in ("| bare PyTorch loop", "| ours (trial_code.training.train)", "target: ours >= 0.9x bare",
                "| process start + imports", "| data load", "| weight transform", "| optimizer set-up",
                "| training steps",
                "| evaluation", "| checkpoint", "| final report -> process exit", "| total (Popen -> exit)",
                "of the trial (target >= 80%)"):
        assert row in text, f"missing {row!r} in:\n{text}"
    figures = json.loads(out.read_text())
    assert figures["loop"]["ratio"] > 0 and figures["loop"]["bare_images_per_s"] > 0
    (trial,) = figures["trials"]
    assert trial["entry"] == "lean" and 0 < trial["training_share"] < 1
    assert trial["preservation_error"] < 1e-5 and trial["intermediate_reports"] == trial["epochs"] == 2
    assert abs(trial["unaccounted_s"]) < 0.5  # the phases add up to the wall time
    assert trial["phases_s"]["training steps"] == trial["timings"]["train_steps"]
