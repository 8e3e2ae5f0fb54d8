"""benchmarks/fna_compare.py on a tiny budget: FNA, its two baselines and NNI's Random at the same CPU cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_fna_compare_tiny_budget_writes_the_comparison(tmp_path: Path) -> None:
    out = tmp_path / "results" / "tiny.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "fna_compare.py"), "--config",
               str(ROOT / "examples" / "fna-tiny.yml"), "--set", "seed=1", "--out", "results/tiny.json"]  # relative
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["settings"]["seed"] == 1 and report["settings"]["baselines"] is True
    assert report["environment"]["nni"] == "3.0"
    rows = report["rows"]
    names = list(rows)
    assert names[:3] == ["FNA (param adaptation)", "(a) seed fine-tuned as is", "(b) derived arch from scratch"]
    assert names[3].startswith("(c) NNI Random, ")
    for name, row in rows.items():
        assert 0.0 <= row["test_acc"] <= 1.0 and row["params"] > 0 and row["madds"] > 0, name
        assert row["cpu_seconds"] > 0, name
    fna = report["fna"]
    # FNA's cost is the whole pipeline: the seed's training on the source task included
    assert rows["FNA (param adaptation)"]["cpu_seconds"] == pytest.approx(
        sum(fna[k]["cpu_seconds"] for k in ("seed", "adapt", "param")))
    # the derived architecture is what both the fine-tuning and the scratch baseline train
    assert rows["(b) derived arch from scratch"]["params"] == rows["FNA (param adaptation)"]["params"]

    random = report["random"]
    samples = random["every_sample"]
    assert len(samples) == random["samples"] == int(names[3].split(", ")[1].split()[0]) >= 1
    assert random["best_val_acc"] == max(s["val_acc"] for s in samples)  # chosen on validation
    assert random["cpu_seconds"] == pytest.approx(sum(s["cpu_seconds"] for s in samples))
    table = out.with_suffix(".md").read_text()
    assert "| (c) NNI Random" in table and "| FNA (param adaptation) |" in table
    assert (out.parent / "work" / "tiny").is_dir()  # NNI's and the checkpoints' files, beside the report
    assert not (tmp_path / "nni-experiments").exists()
