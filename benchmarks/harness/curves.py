"""A per-episode curve per contestant, mean +- std over seeds, as the RL benchmarks plot them (``compare_n2n.py``,
``eas_learning.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_mean_std_curves"]


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
