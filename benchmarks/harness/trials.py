"""Reading a finished experiment: pure functions over NNI's REST records, and the figures made of them.

:func:`parse_trials` turns REST ``trial-jobs`` and ``metric-data`` into one record per trial with its outcome;
:func:`best_trial` picks a run's best; :func:`best_so_far`, :func:`curve_at`, :func:`aggregate` and
:func:`format_mean_std` are the curves and the mean +- std over seeds of the reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nni_nas_ext.results import decode_metric

REBUILD_KEYS = ("checkpoint", "sample", "graph")


def ms_to_seconds(value: Any) -> float | None:
    """An NNI REST time (milliseconds since the epoch) in seconds; None when it is not a number."""
    return float(value) / 1000.0 if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_trials(trial_jobs: Iterable[Mapping[str, Any]], metric_data: Iterable[Mapping[str, Any]],
                 started: float, budget_s: float) -> list[dict[str, Any]]:
    """One record per trial NNI started, from REST ``trial-jobs`` and ``metric-data``.

    ``elapsed_s`` is when the trial's final result arrived (else its end), in seconds since ``started``
    (the moment ``nnictl create`` was called). ``outcome`` is one of:

    * ``ok``: a search result counted in the comparison (valid ``default``, within the budget);
    * ``failed``: the trial reported a failure, NNI marked it failed, or its final metric is unusable;
    * ``after_budget``: its result arrived after the budget;
    * ``final``: the contestant's own final training on train+val (not a search result);
    * ``unfinished``: no final result (running when the budget ended, then killed).
    """
    finals: dict[str, tuple[Any, float | None]] = {}
    for record in metric_data:
        if record.get("type") == "FINAL":
            finals[str(record.get("trialJobId"))] = (decode_metric(record.get("data")),
                                                     ms_to_seconds(record.get("timestamp")))
    out = []
    for job in trial_jobs:
        trial_id = str(job.get("trialJobId"))
        metric, reported = finals.get(trial_id, (None, None))
        end = ms_to_seconds(job.get("endTime"))
        at = reported if reported is not None else end
        start = ms_to_seconds(job.get("startTime"))
        status = str(job.get("status", "?"))
        record: dict[str, Any] = {
            "trial": trial_id, "sequence": job.get("sequenceId"), "nni_status": status,
            "start_s": None if start is None else round(start - started, 3),
            "elapsed_s": None if at is None else round(at - started, 3),
            "metric": metric, "val_acc": None, "params": None, "rebuild": None, "failed": None,
        }
        if isinstance(metric, Mapping):
            record["val_acc"] = metric.get("default") if _number(metric.get("default")) else None
            record["params"] = metric.get("params") if isinstance(metric.get("params"), int) else None
            record["rebuild"] = next((k for k in REBUILD_KEYS if metric.get(k) is not None), None)
        if isinstance(metric, Mapping) and metric.get("failed"):
            outcome, record["failed"] = "failed", str(metric["failed"])[:500]
        elif metric is None:
            outcome = "failed" if status == "FAILED" else "unfinished"
            if status == "FAILED":
                record["failed"] = "NNI marked the trial FAILED without a final result"
        elif not isinstance(metric, Mapping) or record["val_acc"] is None:
            outcome, record["failed"] = "failed", f"final metric without a numeric 'default': {str(metric)[:200]}"
        elif metric.get("train_on") == "train+val" or metric.get("role") in ("final", "seed_final"):
            outcome = "final"
        elif record["elapsed_s"] is not None and record["elapsed_s"] > budget_s:
            outcome = "after_budget"
        else:
            outcome = "ok"
        record["outcome"] = outcome
        out.append(record)
    out.sort(key=lambda r: (r["elapsed_s"] is None, r["elapsed_s"] or 0.0, str(r["trial"])))
    return out


def best_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The counted trial with the highest validation accuracy; ties go to the one that finished first."""
    pool = [t for t in trials if t.get("outcome") == "ok"]
    return max(pool, key=lambda t: (t["val_acc"], -(t["elapsed_s"] or 0.0)), default=None)


def best_so_far(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The best-so-far curve of ``(time, accuracy)`` points: one point per improvement, in time order."""
    curve: list[tuple[float, float]] = []
    for t, acc in sorted(points, key=lambda p: p[0]):
        if not curve or acc > curve[-1][1]:
            curve.append((t, acc))
    return curve


def curve_at(curve: Sequence[tuple[float, float]], t: float) -> float:
    """The value of a best-so-far curve at time ``t`` (NaN before its first point)."""
    value = math.nan
    for time_, acc in curve:
        if time_ > t:
            break
        value = acc
    return value


def aggregate(values: Iterable[float | int | None]) -> tuple[float, float, int]:
    """``(mean, sample standard deviation, n)`` of the non-missing values; std 0 for n == 1, NaNs for n == 0."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def format_mean_std(values: Iterable[float | int | None], digits: int = 4, *, integer: bool = False,
                    signed: bool = False) -> str:
    """``mean ± std`` with ``digits`` decimals (just the value for one run, ``–`` for none).

    ``integer``: values are counts or sizes, shown with thousands separators; a mean that is not a whole
    number keeps one decimal. ``signed``: the mean with its sign (differences).
    """
    mean, std, n = aggregate(values)
    if n == 0:
        return "–"

    whole = abs(mean) >= 100 or all(abs(x - round(x)) < 1e-9 for x in (mean, std))

    def fmt(x: float) -> str:
        if not integer:
            return f"{x:.{digits}f}"
        return f"{round(x):,}" if whole else f"{x:,.1f}"

    shown = ("+" if signed and mean >= 0 else "") + fmt(mean)
    return shown if n == 1 else f"{shown} ± {fmt(std)}"
