"""The report's charts: best validation accuracy against time, accuracy against each cost with its Pareto front,
and the hypervolume against time (matplotlib without pyplot: no global figure state, no display needed).

Every chart is written twice, ``<name>.svg`` (text kept as text, so a browser can find it) and ``<name>.png``.
Each drawn point is its own artist with a stable SVG id (matplotlib's ``gid``): ``<prefix>-point-<n>`` for the
networks, ``<prefix>-front`` for the staircase, so that a test (or a reader's script) can count them. Labels that
come from the experiment are drawn with ``parse_math=False`` (a ``$`` in a name is not TeX) and escaped by
matplotlib's SVG writer.

The Pareto front and the hypervolume are :mod:`nni_nas_ext.core.pareto`'s (objectives minimised: validation
error and the cost). The hypervolume is normalised (error in [0, 1]; log10 of the parameters between the whole
decades around this experiment's networks), so it compares the moments of one experiment, not two experiments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib
from matplotlib.figure import Figure

from nni_nas_ext.core.pareto import normalised_hypervolume, pareto_front

from .experiment import Experiment, Trial

__all__ = ["COSTS", "Chart", "accuracy_against_cost", "accuracy_against_time", "hypervolume_against_time",
           "save_figure", "validation_points"]

#: the costs a network is plotted against: (name, result keys, axis label)
COSTS = (("params", "parameters"), ("macs", "multiply-accumulates (MACs)"), ("latency_ms", "latency (ms)"))
_RC = {"svg.fonttype": "none"}
#: the largest PNG side, in pixels (a tall architecture graph is drawn at a lower resolution)
_MAX_PIXELS = 12_000


@dataclass(frozen=True)
class Chart:
    """A written figure: its name (``<name>.svg``, ``<name>.png``), what it shows and how many points it drew."""

    name: str
    title: str
    caption: str
    points: int


def save_figure(fig: Figure, out: Path, name: str, dpi: float = 110) -> None:
    """Write ``fig`` as ``out/<name>.svg`` and ``out/<name>.png``; the names are the report's own, never the data's."""
    width, height = fig.get_size_inches()
    dpi = min(dpi, _MAX_PIXELS / max(width, height))
    # svg.hashsalt: the ids of clip paths and markers are the same on every run and differ between the figures
    # that index.html embeds side by side
    with matplotlib.rc_context({**_RC, "svg.hashsalt": name, "figure.autolayout": False,
                                "figure.constrained_layout.use": False}):
        # The layout and the tight box once, for both files: a savefig with bbox_inches="tight" and a layout engine
        # runs the layout again and draws the figure twice (once to measure it), about a third of the report's time.
        fig.draw_without_rendering()
        box = fig.get_tightbbox().padded(matplotlib.rcParams["savefig.pad_inches"])
        fig.set_layout_engine(None)  # no engine (rc above): the axes keep the positions the layout found
        fig.savefig(out / f"{name}.svg", format="svg", metadata={"Date": None}, bbox_inches=box)
        fig.savefig(out / f"{name}.png", format="png", dpi=dpi, bbox_inches=box)


def _figure(width: float = 7.0, height: float = 4.2) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def validation_points(experiment: Experiment) -> list[Trial]:
    """The trained networks with a validation accuracy of their own: successful results, final trainings left out
    (they trained on the validation images; their ``default`` is their parent's)."""
    return [t for t in experiment.results() if t.accuracy is not None and not t.final_training]


def _label(i: int, text: str) -> dict[str, str]:
    """A legend label for the first of a series of one-point artists only."""
    return {"label": text} if i == 0 else {}


def _minutes(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else seconds / 60.0


def accuracy_against_time(experiment: Experiment, out: Path) -> Chart:
    """Every network's validation accuracy when its result arrived, the best so far as a staircase, and the test
    accuracy of the final trainings."""
    fig = _figure()
    ax = fig.add_subplot()
    trials = [t for t in validation_points(experiment) if t.result_s is not None]
    best: list[tuple[float, float]] = []
    for i, trial in enumerate(trials):
        x, y = _minutes(trial.result_s), trial.accuracy
        ax.plot([x], [y], "o", ms=5, color="tab:blue", alpha=0.7, gid=f"time-point-{i}",
                **_label(i, "a network's validation accuracy"))
        if not best or y > best[-1][1]:
            best.append((x, y))
    if best:
        end = max(_minutes(t.result_s) or 0.0 for t in trials)
        xs = [b[0] for b in best] + [end]
        ys = [b[1] for b in best] + [best[-1][1]]
        ax.step(xs, ys, where="post", color="tab:red", lw=1.8, gid="time-best", label="best so far")
    tested = [t for t in experiment.results() if t.final_training and t.result_s is not None and
              isinstance((t.result or {}).get("test_acc"), (int, float))]
    for i, trial in enumerate(tested):
        test_acc = float((trial.result or {})["test_acc"])
        ax.plot([_minutes(trial.result_s)], [test_acc], "*", ms=10, color="tab:green", gid=f"time-test-{i}",
                **_label(i, "test accuracy of a final training"))
    ax.set_xlabel("minutes since the experiment started (when the result arrived)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if trials or tested:
        ax.legend(loc="best", fontsize=8)  # where it hides the fewest points
    else:
        ax.text(0.5, 0.5, "no trial reported a validation accuracy", ha="center", transform=ax.transAxes)
    save_figure(fig, out, "accuracy-time")
    return Chart("accuracy-time", "Best validation accuracy against time",
                 "Each point is a trained network's validation accuracy (result key 'default') at the time NNI "
                 "stored its final result (MetricData.timestamp minus ExperimentProfile.startTime); the staircase is "
                 "the best so far. Stars: test accuracy ('test_acc') of the final trainings on train+val.",
                 len(trials))


def _staircase(ax, costs: Sequence[float], accuracies: Sequence[float], prefix: str, right: float) -> list[int]:
    """The Pareto front of (error, cost), both minimised, drawn as a staircase; returns the front's indices."""
    front = [int(i) for i in pareto_front([[1.0 - a, c] for a, c in zip(accuracies, costs)])]
    front.sort(key=lambda i: costs[i])
    xs = [costs[i] for i in front] + [right]
    ys = [accuracies[i] for i in front] + [accuracies[front[-1]]]
    ax.step(xs, ys, where="post", color="tab:red", lw=1.6, gid=f"{prefix}-front", label="Pareto front")
    return front


def accuracy_against_cost(experiment: Experiment, out: Path, cost: str, label: str) -> Optional[Chart]:
    """Validation accuracy against ``cost`` (``params``, ``macs``, ``latency_ms``) for every network that reported
    it, with the Pareto front; ``None`` (no chart) when no result carries the cost."""
    rows: list[tuple[Trial, float, str]] = []
    for trial in validation_points(experiment):
        value, key = (trial.params, "params") if cost == "params" else trial.cost(cost)
        if value is not None and key is not None:
            rows.append((trial, value, key))
    if not rows:
        return None
    name = f"accuracy-{cost.split('_')[0]}"
    prefix = cost.split("_")[0]
    fig = _figure()
    ax = fig.add_subplot()
    costs = [value for _, value, _ in rows]
    accuracies = [float(t.accuracy or 0.0) for t, _, _ in rows]
    labelled: set[str] = set()
    for i, (trial, value, _) in enumerate(rows):
        kind = "the seed" if trial.role == "seed" else "a trained network"
        colour = "tab:orange" if trial.role == "seed" else "tab:blue"
        ax.plot([value], [trial.accuracy], "o", ms=5, color=colour, alpha=0.75, gid=f"{prefix}-point-{i}",
                **({} if kind in labelled else {"label": kind}))
        labelled.add(kind)
    logarithmic = min(costs) > 0 and max(costs) / min(costs) > 5
    if logarithmic:
        ax.set_xscale("log")
    right = max(costs) * (1.3 if logarithmic else 1.05)
    front = _staircase(ax, costs, accuracies, prefix, right)
    ax.set_xlabel(label)
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)  # where it hides the fewest points
    save_figure(fig, out, name)
    keys = sorted({key for _, _, key in rows})
    missing = len(validation_points(experiment)) - len(rows)
    devices = sorted({str((t.result or {}).get("latency_device")) for t, _, _ in rows}) if cost == "latency_ms" else []
    measured = f" Measured on ('latency_device'; compare like with like): {'; '.join(devices)}." if devices else ""
    return Chart(name, f"Validation accuracy against {label}",
                 f"One point per trained network ({len(rows)}; the seed in orange), x from the result key(s) "
                 f"{', '.join(repr(k) for k in keys)}, y from 'default'; the staircase is the Pareto front "
                 f"({len(front)} networks: none has a lower error at a lower or equal cost)."
                 + (f" {missing} network(s) did not report this cost and are left out." if missing else "")
                 + measured, len(rows))


def _decades(values: Sequence[float]) -> tuple[float, float]:
    lo = math.floor(math.log10(min(values)))
    hi = math.ceil(math.log10(max(values)))
    return float(lo), float(hi if hi > lo else lo + 1)


def hypervolume_against_time(experiment: Experiment, out: Path) -> Optional[Chart]:
    """The normalised hypervolume of the front of (validation error, parameters) of the networks known so far, at
    each result's arrival; ``None`` when no network reported its parameters."""
    rows = [t for t in validation_points(experiment) if t.params is not None and t.params > 0 and
            t.result_s is not None]
    if not rows:
        return None
    lo, hi = _decades([float(t.params or 1.0) for t in rows])
    xs, ys, seen = [], [], []
    for trial in rows:
        seen.append([1.0 - float(trial.accuracy or 0.0), math.log10(float(trial.params or 1.0))])
        xs.append(_minutes(trial.result_s))
        ys.append(normalised_hypervolume(seen, [0.0, lo], [1.0, hi]))
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot()
    ax.step(xs, ys, where="post", color="tab:purple", lw=1.6, gid="hypervolume-line")
    for i, (x, y) in enumerate(zip(xs, ys)):
        ax.plot([x], [y], "o", ms=4, color="tab:purple", gid=f"hypervolume-point-{i}")
    ax.set_xlabel("minutes since the experiment started (when the result arrived)")
    ax.set_ylabel("normalised hypervolume")
    ax.grid(alpha=0.3)
    save_figure(fig, out, "hypervolume-time")
    return Chart("hypervolume-time", "Hypervolume of the front against time",
                 f"After each result: the hypervolume of the Pareto front of (validation error, log10 parameters) of "
                 f"the networks known so far, both minimised and scaled to [0, 1] (error in [0, 1]; log10 parameters "
                 f"in [{lo:g}, {hi:g}], the whole decades around this experiment's networks), reference point 1.01 per "
                 f"axis (nni_nas_ext.core.pareto). It compares moments of this experiment, not two experiments.",
                 len(rows))
