"""What one student's two stages decided, as a JSON value (what REINFORCE re-scores, what the state keeps).

Ashok et al., *N2N Learning*, ICLR 2018 (arXiv 1709.06030): a student is one pass of stage 1 (keep / remove per
layer of the teacher) and one of stage 2 (a ratio per remaining layer). A :class:`Trajectory` records the inputs
each stage saw (the layer features), the masks that held, and the decisions, so that the policy computes their
log-probabilities again under its current parameters (:meth:`~.policy.N2NPolicy.log_prob`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .layers import FEATURES

__all__ = ["Trajectory"]


def _rows(name: str, value: Any) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"a trajectory's {name!r} must be a list of feature rows, but got {value!r:.80}")
    rows = []
    for row in value:
        if not isinstance(row, (list, tuple)) or len(row) != len(FEATURES) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in row):
            raise ValueError(f"a trajectory's {name!r} rows hold {len(FEATURES)} finite numbers ({', '.join(FEATURES)})"
                             f", but got {row!r:.80}")
        rows.append(tuple(float(x) for x in row))
    return tuple(rows)


def _bools(name: str, value: Any, length: int) -> tuple[bool, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != length or not all(isinstance(x, bool) for x in value):
        raise ValueError(f"a trajectory's {name!r} must be {length} booleans (one per layer), but got {value!r:.80}")
    return tuple(value)


@dataclass(frozen=True)
class Trajectory:
    """One student's decisions.

    Attributes
    ----------
    removal_features, removal_mask, removals
        Stage 1: the teacher's layer features, whether each layer could be removed when its turn came, and
        whether it was (never where masked).
    shrink_features, shrink_mask, ratios
        Stage 2: the remaining layers' features, whether each could shrink, and the index of its ratio in the
        policy's ratio set (-1 where masked).
    """

    removal_features: tuple[tuple[float, ...], ...]
    removal_mask: tuple[bool, ...]
    removals: tuple[bool, ...]
    shrink_features: tuple[tuple[float, ...], ...]
    shrink_mask: tuple[bool, ...]
    ratios: tuple[int, ...]

    def __post_init__(self) -> None:
        n1, n2 = len(self.removal_features), len(self.shrink_features)
        if len(self.removal_mask) != n1 or len(self.removals) != n1:
            raise ValueError(f"stage 1 needs one mask entry and one decision per layer ({n1}), but got "
                             f"{len(self.removal_mask)} and {len(self.removals)}")
        if any(r and not m for r, m in zip(self.removals, self.removal_mask)):
            raise ValueError(f"a masked layer cannot be removed: mask {list(self.removal_mask)}, removals "
                             f"{list(self.removals)}")
        if len(self.shrink_mask) != n2 or len(self.ratios) != n2:
            raise ValueError(f"stage 2 needs one mask entry and one ratio per remaining layer ({n2}), but got "
                             f"{len(self.shrink_mask)} and {len(self.ratios)}")
        if any((r >= 0) != m for r, m in zip(self.ratios, self.shrink_mask)):
            raise ValueError(f"stage 2 chooses a ratio (index >= 0) exactly where its mask holds: mask "
                             f"{list(self.shrink_mask)}, ratios {list(self.ratios)}")

    def check(self, n_ratios: int) -> None:
        """Raise ``ValueError`` unless every ratio index is below ``n_ratios``."""
        bad = [r for r in self.ratios if r >= n_ratios]
        if bad:
            raise ValueError(f"ratio indices must be < {n_ratios} (the size of the ratio set), but got {bad}")

    def to_dict(self) -> dict[str, Any]:
        return {"removal_features": [list(r) for r in self.removal_features],
                "removal_mask": list(self.removal_mask), "removals": list(self.removals),
                "shrink_features": [list(r) for r in self.shrink_features],
                "shrink_mask": list(self.shrink_mask), "ratios": list(self.ratios)}

    @classmethod
    def from_dict(cls, data: Any) -> Trajectory:
        """The value of :meth:`to_dict`; ``ValueError`` naming what is malformed."""
        keys = {"removal_features", "removal_mask", "removals", "shrink_features", "shrink_mask", "ratios"}
        if not isinstance(data, Mapping) or set(data) != keys:
            found = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"a trajectory is a JSON object with the keys {sorted(keys)}, but got {found}")
        f1, f2 = _rows("removal_features", data["removal_features"]), _rows("shrink_features", data["shrink_features"])
        ratios = data["ratios"]
        if not isinstance(ratios, (list, tuple)) or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= -1 for r in ratios):
            raise ValueError(f"a trajectory's 'ratios' must be integers >= -1, but got {ratios!r:.80}")
        return cls(f1, _bools("removal_mask", data["removal_mask"], len(f1)),
                   _bools("removals", data["removals"], len(f1)), f2,
                   _bools("shrink_mask", data["shrink_mask"], len(f2)), tuple(ratios))
