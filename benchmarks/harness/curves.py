"""The RL benchmarks' figures (``compare_n2n.py``, ``eas_learning.py``): a per-episode curve per contestant, mean +-
std over seeds; the last third of a run's episodes; differences of two contestants paired by seed."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["last_third", "paired_by_seed", "plot_mean_std_curves"]


def last_third(values: Sequence[float]) -> float:
    """The mean of the last third of a run's per-episode values (at least one episode)."""
    n = max(1, len(values) // 3)
    return statistics.mean(values[-n:])


def paired_by_seed(runs: Mapping[str, Mapping[str, Any]], a: str, b: str,
                   statistic: Callable[[Mapping[str, Any]], float]) -> dict[int, float]:
    """``statistic(run of a) - statistic(run of b)`` for every seed where both finished (runs keyed
    ``<contestant>-seed<seed>``, each with ``seed`` and ``status``), by seed."""
    out: dict[int, float] = {}
    for seed in sorted({int(r["seed"]) for r in runs.values()}):
        x, y = runs.get(f"{a}-seed{seed}"), runs.get(f"{b}-seed{seed}")
        if x and y and x.get("status") == y.get("status") == "finished":
            out[seed] = statistic(x) - statistic(y)
    return out


def plot_mean_std_curves(curves: Mapping[str, Sequence[Sequence[float]]], path: Path, *, xlabel: str, ylabel: str,
                         markers: bool = False, figsize: tuple[float, float] = (7, 4)) -> None:
    """One line per name: the mean over its runs of each episode's value (the runs cut to the shortest), with a
    +-1 std band; names without runs are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=figsize)
    for name, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        data = np.asarray([list(r)[:n] for r in runs])
        mean, std = data.mean(axis=0), data.std(axis=0)
        x = np.arange(1, n + 1)
        ax.plot(x, mean, marker="o" if markers else None, label=f"{name} ({len(runs)} seeds)")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
