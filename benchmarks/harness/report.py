"""The reports of a comparison: ``results.csv`` (one row per trial), ``summary.md`` (per contestant: mean +- std
over seeds; per run) and the plots ``best_val_vs_time.png`` and ``acc_vs_params.png``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nni_nas_ext.atomic import atomic_write

from .contestants import CONTESTANTS
from .trials import best_so_far, curve_at, format_mean_std

CSV_COLUMNS = ("contestant", "seed", "trial", "sequence", "nni_status", "outcome", "start_s", "elapsed_s", "val_acc",
               "params", "rebuild", "is_best", "failed")


def _ordered_runs(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    order = {name: i for i, name in enumerate(CONTESTANTS)}
    runs = list((results.get("runs") or {}).values())
    return sorted(runs, key=lambda r: (order.get(r["contestant"], len(order)), r["contestant"], r["seed"]))


def csv_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trial of every recorded run (columns :data:`CSV_COLUMNS`)."""
    rows = []
    for run in _ordered_runs(results):
        best = (run.get("best") or {}).get("trial")
        for t in run.get("trials") or []:
            row = {k: t.get(k) for k in CSV_COLUMNS if k in t}
            row.update(contestant=run["contestant"], seed=run["seed"], is_best=int(t["trial"] == best))
            rows.append({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    return rows


def csv_text(results: Mapping[str, Any]) -> str:
    """``results.csv``: a header of :data:`CSV_COLUMNS`, then :func:`csv_rows`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    return buffer.getvalue()


def contestant_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per contestant: its finished runs' figures, aggregated over seeds."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for run in _ordered_runs(results):
        if run.get("status") == "finished":
            by_name.setdefault(run["contestant"], []).append(run)
    rows = []
    for name, runs in by_name.items():
        finals = [r.get("final") or {} for r in runs]
        rows.append({
            "contestant": name,
            "seeds": [r["seed"] for r in runs],
            "best_val_acc": [(r.get("best") or {}).get("val_acc") for r in runs],
            "test_retrained": [(f.get("retrained") or {}).get("test_acc") for f in finals],
            "test_inherited": [(f.get("inherited") or {}).get("test_acc") for f in finals],
            "params": [(r.get("best") or {}).get("params") for r in runs],
            "trained": [(r.get("counts") or {}).get("ok", 0) for r in runs],
            "failures": [(r.get("counts") or {}).get("failed", 0) for r in runs],
            "final_seconds": [((f.get("retrained") or {}).get("seconds") or 0)
                              + ((f.get("inherited") or {}).get("seconds") or 0) if f else None for f in finals],
        })
    return rows


def summary_markdown(results: Mapping[str, Any]) -> str:
    """The comparison as markdown: settings, the per-contestant table, the per-run table, the machine."""
    s = results.get("settings") or {}
    runs = _ordered_runs(results)
    seeds = sorted({r["seed"] for r in runs})
    lines = [f"# NAS comparison on {s.get('dataset')}", ""]
    train_pool = (f"the first {s['limit']:,} images of the training pool" if s.get("limit")
                  else "the whole training pool")
    lines += [
        f"Budget: {s.get('minutes')} wall-clock minutes per (contestant, seed), NNI's `maxExperimentDuration`, "
        f"all overheads included; seeds {', '.join(map(str, seeds)) or '–'}; {s.get('concurrency')} trial(s) at a "
        f"time, {s.get('threads')} thread(s) each. Task: {s.get('dataset')}, {train_pool} split "
        f"{1 - float(s.get('val_fraction', 0.2)):.0%}/{float(s.get('val_fraction', 0.2)):.0%} train/validation "
        f"(split seed {s.get('split_seed')}); every candidate: SGD momentum {s.get('momentum')}, one cosine cycle "
        f"lr {s.get('lr')} -> {s.get('lr_min')}, batch {s.get('batch_size')}, {s.get('epochs')} epoch(s) where the "
        f"method has that setting. Final protocol: the best trial by validation accuracy, trained on train+val "
        f"for {s.get('final_epochs')} epochs (same schedule), test set evaluated once.",
        "",
        "| contestant | runs | best val acc | test acc (retrained) | test acc (inherited weights) | params of best "
        "| trials trained | trial failures | final training (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in contestant_rows(results):
        lines.append(
            f"| {row['contestant']} | {len(row['seeds'])} | {format_mean_std(row['best_val_acc'])} | "
            f"{format_mean_std(row['test_retrained'])} | {format_mean_std(row['test_inherited'])} | "
            f"{format_mean_std(row['params'], integer=True)} | {format_mean_std(row['trained'], integer=True)} | "
            f"{format_mean_std(row['failures'], integer=True)} | {format_mean_std(row['final_seconds'], 1)} |")
    lines += ["", "Mean ± sample standard deviation over seeds (a single run: its value). *best val acc*: the "
              "highest validation accuracy among the trials counted within the budget. *test acc (retrained)*: "
              "that architecture trained from scratch by the common final protocol; *(inherited weights)*: the "
              "same schedule continued from the weights its trial left (methods that keep weights only). "
              "*trials trained*: trials whose result arrived within the budget; *trial failures*: trials that "
              "failed or reported no usable result.", ""]
    lines += ["## Runs", "", "| contestant | seed | status | ended by | experiment | trials | failed | killed at "
              "budget | best val acc | found at (min) | params | test acc (retrained) | test acc (inherited) |",
              "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        b, c, f = r.get("best") or {}, r.get("counts") or {}, r.get("final") or {}
        exp = r.get("experiment") or {}

        def num(x: Any, d: int = 4) -> str:
            return "–" if x is None else (f"{x:,}" if isinstance(x, int) else f"{x:.{d}f}")

        lines.append(
            f"| {r['contestant']} | {r['seed']} | {r.get('status')} | {exp.get('ended_by', '–')} | "
            f"{exp.get('id') or '–'} | {c.get('ok', 0)} | {c.get('failed', 0)} | {c.get('unfinished', 0)} | "
            f"{num(b.get('val_acc'))} | {num(None if b.get('elapsed_s') is None else b['elapsed_s'] / 60, 2)} | "
            f"{num(b.get('params'))} | {num((f.get('retrained') or {}).get('test_acc'))} | "
            f"{num((f.get('inherited') or {}).get('test_acc'))} |")
    notes = [(r["key"], r.get("error") or r.get("note")) for r in runs if r.get("error") or r.get("note")]
    if notes:
        lines += ["", "Runs with a problem:", ""]
        lines += [f"- {key}: {str(text).splitlines()[0][:300]}" for key, text in notes]
    unavailable = results.get("unavailable") or {}
    if unavailable:
        lines += ["", "Contestants asked for but unavailable (not run):", ""]
        lines += [f"- {name}: {reason}" for name, reason in unavailable.items()]
    envs = [r.get("environment") for r in runs if r.get("environment")]
    if envs:
        e = envs[-1]
        commits = sorted({f"{x.get('git_commit', '?')[:10]}{' (dirty)' if x.get('git_dirty') else ''}" for x in envs})
        lines += ["", "## Machine and versions", "",
                  f"- machine: {e.get('cpu')}, {e.get('cores')} cores, {e.get('memory_gb')} GB, "
                  f"GPU: {', '.join(e.get('gpus') or []) or 'none'}; {e.get('platform')}",
                  f"- python {e.get('python')}, torch {e.get('torch')}, torchvision {e.get('torchvision')}, "
                  f"nni {e.get('nni')}, numpy {e.get('numpy')}, nni-nas-ext {e.get('nni_nas_ext')}",
                  f"- git commit(s): {', '.join(commits)}"]
        first = min((r.get("started") or "" for r in runs), default="")
        last = max((r.get("ended") or "" for r in runs), default="")
        lines.append(f"- runs from {first} to {last}")
    return "\n".join(lines) + "\n"


def contestant_colours(names: Sequence[str]) -> dict[str, Any]:
    """A tab10 colour per contestant, in registry order (others after), the same in every plot."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    order = [n for n in CONTESTANTS if n in names] + [n for n in names if n not in CONTESTANTS]
    return {name: palette(i % 10) for i, name in enumerate(order)}


def finish_figure(fig: Any, ax: Any, path: Path, *, legend: bool) -> None:
    """Grid, legend when asked, tight layout; save ``fig`` to ``path`` (110 dpi) and close it."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_best_vs_time(results: Mapping[str, Any], path: Path) -> None:
    """Best validation accuracy so far against minutes since the experiment's start, per contestant.

    Thin lines: one per seed; thick line: their mean where every seed has a result.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    budget_min = float((results.get("settings") or {}).get("minutes") or 1.0)
    runs = [r for r in _ordered_runs(results) if r.get("trials")]
    colours = contestant_colours([r["contestant"] for r in runs])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    grid = np.linspace(0.0, budget_min, 400)
    for name in colours:
        curves = []
        for run in (r for r in runs if r["contestant"] == name):
            points = [(t["elapsed_s"] / 60, t["val_acc"]) for t in run["trials"] if t["outcome"] == "ok"]
            curve = best_so_far(points)
            if not curve:
                continue
            curves.append(curve)
            xs = [p[0] for p in curve] + [budget_min]
            ys = [p[1] for p in curve] + [curve[-1][1]]
            ax.step(xs, ys, where="post", color=colours[name], alpha=0.35, linewidth=1)
            ax.plot([p[0] for p in curve], [p[1] for p in curve], "o", color=colours[name], alpha=0.5, markersize=3)
        if curves:
            values = np.array([[curve_at(c, t) for t in grid] for c in curves])
            mean = np.where(np.isnan(values).any(axis=0), np.nan, values.mean(axis=0))
            ax.plot(grid, mean, color=colours[name], linewidth=2.2, label=f"{name} (n={len(curves)})")
    ax.set_xlim(0, budget_min)
    ax.set_xlabel("elapsed time since nnictl create (minutes)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{(results.get('settings') or {}).get('dataset')}: best validation accuracy against time "
                 "(thick: mean over seeds)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_acc_vs_params(results: Mapping[str, Any], path: Path) -> None:
    """Validation accuracy against parameters (log scale) of every counted trial; each run's best ringed."""
    import matplotlib.pyplot as plt

    runs = [r for r in _ordered_runs(results) if r.get("trials")]
    colours = contestant_colours([r["contestant"] for r in runs])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for name in colours:
        xs, ys, bx, by = [], [], [], []
        for run in (r for r in runs if r["contestant"] == name):
            best = (run.get("best") or {}).get("trial")
            for t in run["trials"]:
                if t["outcome"] == "ok" and t.get("params"):
                    xs.append(t["params"])
                    ys.append(t["val_acc"])
                    if t["trial"] == best:
                        bx.append(t["params"])
                        by.append(t["val_acc"])
        if xs:
            ax.scatter(xs, ys, s=18, color=colours[name], alpha=0.6, label=f"{name} ({len(xs)})")
            ax.scatter(bx, by, s=90, facecolors="none", edgecolors=colours[name], linewidths=1.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{(results.get('settings') or {}).get('dataset')}: every trained architecture "
                 "(ringed: each run's best)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: Mapping[str, Any], out: Path) -> list[Path]:
    """results.csv, summary.md and the two PNGs from ``results`` (atomically each)."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("results.csv", csv_text(results)), ("summary.md", summary_markdown(results))):
        written.append(atomic_write(out / name, lambda h, t=text: h.write(t.encode("utf-8")), mode=0o644))
    for name, plot in (("best_val_vs_time.png", plot_best_vs_time), ("acc_vs_params.png", plot_acc_vs_params)):
        tmp = out / f".{name}.tmp.png"
        plot(results, tmp)
        os.replace(tmp, out / name)
        written.append(out / name)
    return written
