"""The report of ``compare_pareto.py``: ``summary.md``, ``fronts.png`` and ``hypervolume.png`` from its results file.

Everything the report needs besides the runs is in the results file's ``protocol`` (size bins, hypervolume
bounds and reference, the reference contestant), so the report shows what the runs were measured with.
``order``: the contestants in the order of the tables (others after, by name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compare_v2 import paired_differences
from harness.report import contestant_colours, finish_figure
from harness.trials import format_mean_std

from nni_nas_ext.atomic import atomic_write


def figure_keys(protocol: Mapping[str, Any]) -> tuple[str, ...]:
    """The per-run figures the report shows: ``hypervolume`` and ``best_test_acc_<bin>`` per size bin."""
    return ("hypervolume", *(f"best_test_acc_{label}" for label in protocol["size_bins"]))


def _finished(results: Mapping[str, Any], order: Sequence[str]) -> tuple[list[Mapping[str, Any]], list[str]]:
    runs = [r for r in results["runs"] if r.get("status") == "finished"]
    present = {r["contestant"] for r in runs}
    names = [n for n in order if n in present] + sorted(present - set(order))
    return sorted(runs, key=lambda r: (names.index(r["contestant"]), r["seed"])), names


def _cell(values: Sequence[Any]) -> str:
    """mean +- std of the values that exist, and how many of the runs had one when some had none."""
    present = [v for v in values if v is not None]
    text = format_mean_std(present)
    return text if len(present) == len(values) else f"{text} ({len(present)}/{len(values)})"


def _diff_cell(d: Mapping[str, Any], key: str) -> str:
    if not d.get("n"):
        return "–"
    scale, digits = (1.0, 4) if key == "hypervolume" else (100.0, 2)  # accuracies in points
    return f"{scale * d['mean']:+.{digits}f} ± {scale * d['std']:.{digits}f} (n={d['n']})"


def summary_markdown(results: Mapping[str, Any], order: Sequence[str] = ()) -> str:
    """Per contestant mean +- std over seeds, the paired differences (reference minus each), every run."""
    s, protocol = results["settings"], results["protocol"]
    keys = figure_keys(protocol)
    reference = protocol["reference"]
    runs, names = _finished(results, order)
    bins = " | ".join(f"best test acc <= {label}" for label in protocol["size_bins"])
    lines = [f"# Pareto fronts on {s['dataset']}: {s['minutes']:g} wall-minutes x {s['concurrency']} slots "
             f"({s['minutes'] * s['concurrency']:g} CPU-minutes) per run", "",
             f"Fronts chosen on {protocol['front_on']}; each front network tested once after its run. Hypervolume "
             f"of (test error, log10 parameters), normalised: error in {protocol['error_bounds']}, log10 parameters "
             f"in {protocol['log10_params_bounds']}, reference {protocol['hv_reference']} per axis (larger is "
             "better). (k/n): only k of the n runs had a front network that small.", "",
             f"| contestant | runs | hypervolume | {bins} | networks | front | idle CPU |",
             "| --- |" + " ---: |" * (len(keys) + 4)]
    for name in names:
        rs = [r for r in runs if r["contestant"] == name]
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(_cell([r.get(k) for r in rs]) for k in keys)
                     + f" | {format_mean_std([r['networks'] for r in rs], integer=True)}"
                     f" | {format_mean_std([len(r['front']) for r in rs], integer=True)}"
                     f" | {format_mean_std([r.get('idle_cpu_fraction') for r in rs], 3)} |")
    diffs = {k: paired_differences(runs, reference=reference, key=k) for k in keys}
    others = [n for n in names if n != reference]
    if reference in names and others:
        lines += ["", f"Paired by seed, `{reference}` minus each contestant (mean ± std over the seeds both have a "
                  "figure for; accuracies in points):", "", f"| contestant | hypervolume | {bins} |",
                  "| --- |" + " ---: |" * len(keys)]
        lines += [f"| {n} | " + " | ".join(_diff_cell(diffs[k].get(n) or {}, k) for k in keys) + " |" for n in others]
    lines += ["", f"| run | hypervolume | {bins} | networks | front |", "| --- |" + " ---: |" * (len(keys) + 2)]
    lines += [f"| {r['key']} | " + " | ".join("–" if r.get(k) is None else f"{r[k]:.4f}" for k in keys)
              + f" | {r['networks']} | {len(r['front'])} |" for r in runs]
    old = results.get("superseded") or []
    if old:
        lines += ["", "Superseded runs (kept in `results.json` under `superseded`, not in the tables):", ""] + \
            [f"- {r['key']} (hypervolume {r.get('hypervolume')}): {r['superseded']['why']}" for r in old]
    problems = [r for r in results["runs"] if r.get("status") != "finished"]
    if problems:
        lines += ["", "Runs that did not finish:", ""] + [f"- {r['key']}: {r.get('error', '')[:300]}" for r in problems]
    return "\n".join(lines) + "\n"


def plot_fronts(results: Mapping[str, Any], path: Path, order: Sequence[str] = ()) -> None:
    """Every finished run's front: test error against parameters (log x), a colour per contestant, the size bins
    as dotted lines."""
    import matplotlib.pyplot as plt

    runs, names = _finished(results, order)
    colours = contestant_colours(names)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        front = sorted((p for p in r["front"] if p.get("test_acc") is not None), key=lambda p: p["params"])
        ax.plot([p["params"] for p in front], [1.0 - p["test_acc"] for p in front], marker="osd^v"[r["seed"] % 5],
                color=colours[r["contestant"]], alpha=0.8, linewidth=1, label=f"{r['contestant']} (seed {r['seed']})")
    for limit in results["protocol"]["size_bins"].values():
        ax.axvline(limit, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("test error (fronts chosen on validation)")
    finish_figure(fig, ax, path, legend=bool(runs))


def plot_hypervolume(results: Mapping[str, Any], path: Path, order: Sequence[str] = ()) -> None:
    """Each run's hypervolume (dots) and each contestant's mean +- std (bar)."""
    import matplotlib.pyplot as plt

    runs, names = _finished(results, order)
    colours = contestant_colours(names)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, name in enumerate(names):
        values = [r["hypervolume"] for r in runs if r["contestant"] == name and r.get("hypervolume") is not None]
        if not values:
            continue
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        ax.bar(i, mean, yerr=std, color=colours[name], alpha=0.4, capsize=6)
        ax.scatter([i] * len(values), values, color=colours[name], zorder=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("normalised hypervolume of (test error, log10 params)")
    finish_figure(fig, ax, path, legend=False)


def write_report(results: Mapping[str, Any], out: Path, order: Sequence[str] = ()) -> None:
    """``summary.md``, ``fronts.png`` and ``hypervolume.png`` in ``out`` (each replaced whole)."""
    import matplotlib

    matplotlib.use("Agg")
    text = summary_markdown(results, order)
    atomic_write(out / "summary.md", lambda h: h.write(text.encode()), mode=0o644)
    for name, plot in (("fronts.png", plot_fronts), ("hypervolume.png", plot_hypervolume)):
        tmp = out / f".{name}.tmp.png"
        plot(results, tmp, order)
        tmp.replace(out / name)
