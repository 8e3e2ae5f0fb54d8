"""Protocol v2's plots (``compare_v2.py``): search progress against wall-clock time, and each run's returned network
(accuracy against parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .report import contestant_colours, finish_figure
from .trials import best_so_far

__all__ = ["plot_acc_vs_params", "plot_best_val_vs_time"]


def plot_best_val_vs_time(results: Mapping[str, Any], path: Path) -> None:
    """Best validation accuracy so far against wall-clock minutes, one line per run, a colour per contestant."""
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r.get("status") == "finished" and r.get("trial_records")]
    colours = contestant_colours(sorted({r["contestant"] for r in runs}))
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        curve = best_so_far((t["elapsed_s"] / 60, t["val_acc"]) for t in r["trial_records"]
                            if t.get("outcome") == "ok" and t.get("elapsed_s") is not None)
        if curve:
            xs, ys = zip(*curve)
            ax.step(xs, ys, where="post", color=colours[r["contestant"]], alpha=0.8,
                    label=f"{r['contestant']} (seed {r['seed']})")
    ax.set_xlabel("wall-clock minutes since nnictl create")
    ax.set_ylabel("best validation accuracy so far")
    settings = results["settings"]
    ax.set_title(f"Search progress ({settings['minutes']:g} min x {settings['concurrency']} slots)")
    finish_figure(fig, ax, path, legend=bool(runs))


def plot_acc_vs_params(results: Mapping[str, Any], path: Path) -> None:
    """Test accuracy of each run's returned network (filled) and retrained (hollow) against its parameters."""
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r.get("status") == "finished" and r.get("params")]
    colours = contestant_colours(sorted({r["contestant"] for r in runs}))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in colours:
        rs = [r for r in runs if r["contestant"] == name]
        ax.scatter([r["params"] for r in rs], [r["test_acc"] for r in rs], color=colours[name], label=name)
        ax.scatter([r["params"] for r in rs], [r["test_acc_retrained"] for r in rs], facecolors="none",
                   edgecolors=colours[name])
    ax.set_xscale("log")
    ax.set_xlabel("parameters of the returned network")
    ax.set_ylabel("test accuracy (filled: inside the budget; hollow: retrained)")
    finish_figure(fig, ax, path, legend=bool(runs))
