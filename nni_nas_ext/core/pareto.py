"""Pareto fronts, hypervolume and the kernel density that LEMONADE samples by (pure maths on arrays).

Every objective is **minimised** (validation error, parameters, MACs, milliseconds). Non-dominated sorting
and hypervolume come from ``moocore`` (López-Ibáñez et al.'s reference implementations, the library that
pymoo's ``HV`` indicator itself calls); we only validate the input and normalise.

* :func:`pareto_front` -- the indices of the non-dominated rows (duplicates of a front point: the first kept);
* :func:`hypervolume` -- the volume dominated by a set and bounded by a reference point;
* :func:`normalise` and :func:`normalised_hypervolume` -- the NAS-benchmark practice: each objective scaled to
  ``[0, 1]`` by given bounds, reference point ``1.01`` per axis (``../shared/ALGORITHMS.md``, LEMONADE);
* :func:`density` -- a Gaussian kernel density estimate (``scipy.stats.gaussian_kde``) of points in objective
  space, evaluated at points: LEMONADE's :math:`p_{KDE}` (Elsken, Metzen, Hutter, ICLR 2019, Alg. 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np
from scipy.stats import gaussian_kde

__all__ = ["HV_REFERENCE", "density", "hypervolume", "normalise", "normalised_hypervolume", "pareto_front"]

#: The reference point per axis of a normalised hypervolume (objectives scaled to [0, 1]).
HV_REFERENCE = 1.01


def _points(points: Sequence[Sequence[float]] | np.ndarray, what: str = "points") -> np.ndarray:
    """``points`` as a finite float array of shape (n, m), m >= 1 (n may be 0)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        return arr.reshape(0, 1)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{what} must be a 2-D array (one row per point, one column per objective), "
                         f"but got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what} must be finite, but row {int(bad[0])} column {int(bad[1])} is "
                         f"{float(arr[bad[0], bad[1]])!r}: drop failed trials before computing a front")
    return arr


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The indices (ascending) of the rows that no other row dominates, all objectives minimised.

    A row dominates another when it is no worse in every objective and better in one. Of several equal
    non-dominated rows only the first is kept, so that a front never holds two copies of one point.
    """
    arr = _points(points)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = np.asarray(moocore.is_nondominated(arr, maximise=False, keep_weakly=True), dtype=bool)
    out, seen = [], set()
    for i in np.flatnonzero(keep):  # equal points are all non-dominated (weakly): keep the first of them
        key = arr[i].tobytes()
        if key not in seen:
            seen.add(key)
            out.append(int(i))
    return np.asarray(out, dtype=np.int64)


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """The volume of objective space that ``points`` dominate and ``reference`` bounds (minimisation).

    Points that do not strictly dominate the reference add nothing; an empty set has volume 0.
    """
    arr = _points(points)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (arr.shape[1],):
        raise ValueError(f"the reference point must have one value per objective ({arr.shape[1]}), "
                         f"but got {ref.tolist()!r}")
    inside = arr[(arr < ref).all(axis=1)] if len(arr) else arr
    if len(inside) == 0:
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref))


def normalise(points: Sequence[Sequence[float]] | np.ndarray, lower: Sequence[float],
              upper: Sequence[float]) -> np.ndarray:
    """Scale each objective from ``[lower, upper]`` to ``[0, 1]`` (values outside go outside).

    ``lower < upper`` must hold per objective: fix the bounds of a comparison before looking at its runs
    (e.g. error in [0, 1], parameters in log10 between two stated sizes), so that runs share one scale.
    """
    arr = _points(points)
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if lo.shape != (arr.shape[1],) or hi.shape != (arr.shape[1],) or not (lo < hi).all():
        raise ValueError(f"lower < upper must hold for each of the {arr.shape[1]} objectives, but got "
                         f"lower={lo.tolist()!r}, upper={hi.tolist()!r}")
    return (arr - lo) / (hi - lo)


def normalised_hypervolume(points: Sequence[Sequence[float]] | np.ndarray, lower: Sequence[float],
                           upper: Sequence[float]) -> float:
    """:func:`hypervolume` of the points scaled by :func:`normalise`, reference :data:`HV_REFERENCE` per axis."""
    scaled = normalise(points, lower, upper)
    return hypervolume(scaled, [HV_REFERENCE] * scaled.shape[1])


def density(points: Sequence[Sequence[float]] | np.ndarray, at: Sequence[Sequence[float]] | np.ndarray, *,
            bandwidth: float | str | None = None) -> np.ndarray:
    """A Gaussian kernel density estimate fitted on ``points``, evaluated at each row of ``at``.

    LEMONADE (Elsken et al. 2019, sec. 3 and Alg. 1) fits :math:`p_{KDE}` on the cheap objectives of the
    current front and samples parents (and accepts children) with probability proportional to
    :math:`1 / p_{KDE}`, so sparse regions of the front are explored. The fit uses scipy's
    ``gaussian_kde`` (Scott's rule unless ``bandwidth`` says otherwise). **Our addition**: when the points
    are too few or too degenerate for a covariance (fewer points than dimensions + 1, or all equal in
    some objective), each objective is standardised by a unit scale and an isotropic kernel of width 1 is
    used, so that a front of one or two networks still gets a density (the paper starts from a few nets and
    does not say).
    """
    data = _points(points)
    query = _points(at, "at")
    if query.shape[1] != data.shape[1]:
        raise ValueError(f"'at' must have {data.shape[1]} objective(s) like the points, but has {query.shape[1]}")
    if len(data) == 0:
        raise ValueError("a density needs at least one point")
    if len(query) == 0:
        return np.zeros(0)
    spread = data.std(axis=0)
    if len(data) > data.shape[1] + 1 and (spread > 0).all():
        try:
            return np.asarray(gaussian_kde(data.T, bw_method=bandwidth)(query.T), dtype=np.float64)
        except np.linalg.LinAlgError:  # a singular covariance (points on a line in 2-D): fall through
            pass
    scale = np.where(spread > 0, spread, 1.0)
    d = (query[:, None, :] - data[None, :, :]) / scale
    return np.exp(-0.5 * (d ** 2).sum(axis=2)).mean(axis=1) / np.prod(scale)
