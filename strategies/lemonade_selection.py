"""LEMONADE's selection maths: objectives of networks, their Pareto front, and sampling by inverse density.

Elsken, Metzen, Hutter, *Efficient Multi-objective Neural Architecture Search via Lamarckian Evolution*
(LEMONADE), ICLR 2019, arXiv 1804.09081, Algorithm 1. All objectives are minimised: the expensive one is the
validation error (``1 - default``), the cheap ones are chosen among :data:`CHEAP_OBJECTIVES`.

* :class:`Objectives` -- the objective vectors of networks, true values (for the front) and the
  log10-scaled cheap ones that the density is fitted on (**ours**: the paper does not say how it scales the
  cheap objectives; sizes and latencies span orders of magnitude, so equal ratios count as equal distances);
* :func:`inverse_density_choice` -- draw indices with probability proportional to ``1 / p_KDE``, the rule by
  which the paper samples parents from the front (Alg. 1, line 5) and accepts children (line 8), with the
  density fitted on the front's cheap objectives in both (our reading of Alg. 1: one ``p_KDE`` per
  generation; ``../shared/ALGORITHMS.md`` recalls a density over the children for the second).

Pure numpy on plain values: the strategy (:mod:`.lemonade`) feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.pareto import density, pareto_front

__all__ = ["CHEAP_OBJECTIVES", "NOMINAL_MS_PER_MAC", "Objectives", "cheap_values", "inverse_density_choice",
           "measured_latency"]

#: The cheap objectives a LEMONADE search can minimise beside the validation error: parameters and
#: multiply-accumulates of the architecture (known before training) and the latency the trial measures
#: (``latency_ms``: median milliseconds per image at batch 1 on the trial's device).
CHEAP_OBJECTIVES = ("params", "macs", "latency_ms")

#: The milliseconds per MAC assumed for a latency estimate when no trial has measured one (so that the search can
#: still run; the strategy notes it): 1 ms per million MACs.
NOMINAL_MS_PER_MAC = 1e-6


def measured_latency(result: Mapping[str, object] | None) -> float | None:
    """The ``latency_ms`` a trial reported: a finite positive number, else ``None``."""
    value = result.get("latency_ms") if result else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def cheap_values(arch: Architecture, objectives: Sequence[str], latency_ms: float) -> list[float]:
    """The cheap objective values of ``arch`` in the order of ``objectives`` (``latency_ms`` given: measured or
    estimated by the caller)."""
    out = []
    for name in objectives:
        if name == "params":
            out.append(float(arch.num_parameters()))
        elif name == "macs":
            out.append(float(arch.num_macs()))
        elif name == "latency_ms":
            out.append(float(latency_ms))
        else:
            raise ValueError(f"unknown cheap objective {name!r}: choose among {list(CHEAP_OBJECTIVES)}")
    return out


@dataclass(frozen=True)
class Objectives:
    """Objective vectors of networks: ``errors`` (validation error) and ``cheap`` (one row per network)."""

    errors: np.ndarray  # shape (n,)
    cheap: np.ndarray   # shape (n, k), true values (> 0)

    @classmethod
    def of(cls, errors: Sequence[float], cheap: Sequence[Sequence[float]]) -> Objectives:
        e = np.asarray(errors, dtype=np.float64).reshape(-1)
        c = np.asarray(cheap, dtype=np.float64)
        if c.ndim != 2 or len(c) != len(e):
            raise ValueError(f"one row of cheap objectives per error is needed, but got {c.shape} for {len(e)}")
        return cls(e, c)

    def points(self) -> np.ndarray:
        """The full objective vectors ``(error, cheap...)``, all minimised."""
        if not len(self.errors):
            return np.zeros((0, 1 + self.cheap.shape[1]))
        return np.column_stack([self.errors, self.cheap])

    def front(self) -> np.ndarray:
        """Indices of the non-dominated networks (:func:`nni_nas_ext.core.pareto.pareto_front`)."""
        return pareto_front(self.points())

    def log_cheap(self) -> np.ndarray:
        """The cheap objectives in log10 (each value floored at 1e-12), the space the density lives in."""
        return np.log10(np.maximum(self.cheap, 1e-12))


def inverse_density_choice(reference: np.ndarray, at: np.ndarray, size: int, rng: np.random.Generator, *,
                           replace: bool) -> np.ndarray:
    """Draw ``size`` indices of the rows of ``at`` with probability proportional to ``1 / p_KDE(at)``, where
    ``p_KDE`` is fitted on the rows of ``reference`` (both log-scaled cheap objectives).

    The weights are formed in log space (``-log p`` shifted by its maximum), so that a far-away point, whose
    density underflows to 0, gets the largest finite weight instead of an infinite one. Without replacement,
    ``size`` is capped at the number of rows.
    """
    n = len(at)
    if n == 0 or size <= 0:
        return np.zeros(0, dtype=np.int64)
    p = density(reference, at)
    log_w = -np.log(np.maximum(p, np.finfo(np.float64).tiny))
    w = np.exp(log_w - log_w.max())
    w = w / w.sum()
    k = size if replace else min(size, n)
    return np.asarray(rng.choice(n, size=k, replace=replace, p=w), dtype=np.int64)
