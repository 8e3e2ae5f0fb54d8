"""How long a trial will take, estimated from what told trials reported (a budget-aware strategy's cost model).

Used by :class:`~nni_nas_ext.strategies.nash_async.AsyncHillClimbing` to decide what still fits in the time
left. No clock here: the figures are the ``timings`` trials report (``train``, ``train_setup``, ``total`` /
``process_total`` seconds) and the epochs they trained (fewer than planned when a trial stopped early).
The cost of a candidate is its architecture's own latest seconds per epoch when it was trained before, else
the reference network's (the incumbent's) scaled by the ratio of MACs; plus the median per-trial overhead
(process start, data, checkpoint), a safety margin and the scheduling latency.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from typing import Any

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.jobs import Candidate

from .base import Budget

__all__ = ["LATENCY", "SAFETY", "SAFETY_MEASURED", "TRAIN_VAL_FACTOR", "TrialCosts", "final_time_limit"]

#: train+val is larger than train: with the usual 20 % validation split, 1 / 0.8 = 1.25 times the data
TRAIN_VAL_FACTOR = 1.25
#: margin on a cost estimate that comes from other networks' timings (scaled by MACs)
SAFETY = 1.15
#: margin on a cost estimate from the same architecture's own measured epochs
SAFETY_MEASURED = 1.08
#: seconds between a proposal and its trial's start, and by which NNI's ``execDuration`` may lag (NNI updates it
#: on a timer; the trial is scheduled on a poll): added to every estimate
LATENCY = 5.0


def final_time_limit(budget: Budget | None) -> float | None:
    """A final training's :attr:`~nni_nas_ext.core.jobs.Candidate.time_limit`, proposed with ``budget``: the time
    left less the scheduling latency (its trial starts that much later, and NNI notes its end that much later), at
    least a second; None without a time budget."""
    if budget is None or budget.seconds_left is None:
        return None
    return round(max(1.0, budget.seconds_left - LATENCY), 3)


class TrialCosts:
    """Seconds per epoch, overhead and estimates, read from a strategy's candidates and told results.

    Parameters
    ----------
    candidates
        Every candidate by id.
    results
        The successful results by id, in the order they were told.
    epochs_trained
        The epochs a told candidate trained (its result's ``epochs_trained``, else its planned epochs).
    """

    def __init__(self, candidates: Mapping[str, Candidate], results: Mapping[str, Mapping[str, Any]],
                 epochs_trained: Callable[[str], int]) -> None:
        self.candidates = candidates
        self.results = results
        self.epochs_trained = epochs_trained

    def per_epoch(self, cid: str) -> float | None:
        """Seconds per training epoch of a told candidate (its ``train`` time less ``train_setup``), if reported."""
        result = self.results.get(cid)
        epochs = self.epochs_trained(cid)
        timings = result.get("timings") if result else None
        if not isinstance(timings, Mapping) or epochs <= 0:
            return None
        train = timings.get("train")
        setup = timings.get("train_setup", 0.0)
        if not isinstance(train, (int, float)) or not isinstance(setup, (int, float)):
            return None
        per_epoch = (float(train) - float(setup)) / epochs
        return per_epoch if per_epoch > 0 and math.isfinite(per_epoch) else None

    def overhead(self) -> float:
        """Median seconds of a trial outside its epochs (process start, data, checkpoint), over told trials."""
        values = []
        for cid, result in self.results.items():
            timings = result.get("timings")
            per_epoch = self.per_epoch(cid)
            total = timings.get("process_total", timings.get("total")) if isinstance(timings, Mapping) else None
            if per_epoch is not None and isinstance(total, (int, float)):
                values.append(max(0.0, float(total) - per_epoch * self.epochs_trained(cid)))
        return statistics.median(values) if values else 0.0

    def measured_per_epoch(self, arch_id: str) -> float | None:
        """Seconds per epoch on the training split of the latest told trial of this architecture."""
        for cid in reversed(list(self.results)):
            c = self.candidates[cid]
            if c.architecture.id == arch_id and c.train_on == "train":
                per_epoch = self.per_epoch(cid)
                if per_epoch is not None:
                    return per_epoch
        return None

    def estimate(self, arch: Architecture, epochs: int, reference: str | None,
                 data_factor: float = 1.0) -> float | None:
        """Seconds a trial of ``arch`` for ``epochs`` would take, plus the median overhead; None before any
        measurement. Seconds per epoch: the architecture's own latest measurement (margin
        :data:`SAFETY_MEASURED`), else the ``reference`` candidate's scaled by MACs (the nearest measured
        network; :data:`SAFETY`). ``data_factor`` scales the epochs' data (:data:`TRAIN_VAL_FACTOR` on train+val)."""
        own = self.measured_per_epoch(arch.id)
        if own is not None:
            return LATENCY + SAFETY_MEASURED * (self.overhead() + epochs * own * data_factor)
        per_epoch = self.per_epoch(reference) if reference is not None else None
        if per_epoch is None:
            return None
        ref_macs = max(1, self.candidates[reference].architecture.num_macs())  # type: ignore[index]
        scaled = per_epoch * max(1, arch.num_macs()) / ref_macs
        return LATENCY + SAFETY * (self.overhead() + epochs * scaled * data_factor)

    def epochs_within(self, arch: Architecture, seconds_left: float, top: int, reference: str | None,
                      data_factor: float = 1.0) -> int | None:
        """The most epochs of a trial of ``arch`` whose :meth:`estimate` fits in ``seconds_left``: at most
        ``top``, at least 1; None before any measurement (the estimate is affine in the epochs)."""
        one = self.estimate(arch, 1, reference, data_factor)
        two = self.estimate(arch, 2, reference, data_factor)
        if one is None or two is None:
            return None
        per_epoch, fixed = two - one, 2 * one - two
        if per_epoch <= 0:
            return top
        return int(min(top, max(1, math.floor((seconds_left - fixed) / per_epoch))))

    def final_reserve(self, candidate: Architecture, incumbent: str, seed: Architecture | None,
                      epochs: int) -> float | None:
        """Seconds of the final phase (``epochs`` on train+val) if ``candidate`` is trained: its own final
        training or the ``incumbent``'s, whichever is costlier, side by side with ``seed``'s (None: the seed's
        final training needs no reserve); None before any measurement."""
        one = self.estimate(self.candidates[incumbent].architecture, epochs, incumbent, TRAIN_VAL_FACTOR)
        own = self.estimate(candidate, epochs, incumbent, TRAIN_VAL_FACTOR)
        if one is None or own is None:
            return None
        one = max(one, own)
        if seed is not None:
            one = max(one, self.estimate(seed, epochs, incumbent, TRAIN_VAL_FACTOR) or 0.0)  # two slots
        return one
