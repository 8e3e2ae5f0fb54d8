"""A student of the teacher: stage 1's removals, then stage 2's ratios, as compression morphisms.

Ashok et al., *N2N Learning*, ICLR 2018 (arXiv 1709.06030), Sec. 3: the removal policy reads the teacher and
decides which layers go; the shrinkage policy reads what remains and decides how much each layer keeps. The
student's lineage is the teacher plus ``remove_layer`` and ``shrink`` steps (:mod:`.layers`), which a trial replays
on the teacher's checkpoint (kept units' weights are exact slices of the teacher's) before distilling from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from nni_nas_ext.core.architecture import Architecture, Step
from nni_nas_ext.core.morphisms import replay

from .layers import apply_removals, apply_shrinkage, layer_table
from .trajectory import Trajectory

__all__ = ["STAGES", "ActionSource", "Student", "draw_student"]


class ActionSource(Protocol):
    """Where a student's decisions come from: :class:`~.policy.N2NPolicy` or :class:`~.policy.RandomActions`."""

    @property
    def ratios(self) -> tuple[float, ...]: ...
    def removal_ask(self, features: Sequence[Sequence[float]], rng: np.random.Generator) -> Callable[[int], bool]: ...
    def shrink(self, features: Sequence[Sequence[float]], mask: Sequence[bool],
               rng: np.random.Generator) -> tuple[int, ...]: ...
    def learn(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Student:
    """A sampled student: its architecture (lineage from the teacher), the decisions, and readable actions."""

    architecture: Architecture
    trajectory: Trajectory
    removed: tuple[str, ...]
    ratios: Mapping[str, float]

    def actions(self) -> dict[str, Any]:
        """``{"removed": [nodes], "ratios": {node: ratio}}`` (ratios below 1 only)."""
        return {"removed": list(self.removed), "ratios": {k: v for k, v in self.ratios.items() if v < 1.0}}


#: Which stages decide: both (every student), removal only (no layer shrinks), shrinkage only (given removals).
STAGES = ("both", "removal", "shrink")


def draw_student(teacher: Architecture, source: ActionSource, rng: np.random.Generator, *, stage: str = "both",
                 removals: Sequence[Step] = ()) -> Student:
    """Sample one student of ``teacher``: removals (masked along the way), then a ratio per remaining layer (an
    index into ``source.ratios``).

    ``stage="removal"`` decides the removals only (every layer keeps its width); ``stage="shrink"`` takes the
    ``removals`` given (``remove_layer`` steps from the teacher) and decides the ratios only. The stage that does not
    decide has no decision in the trajectory (its masks are all false), so it learns nothing from this student.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(map(repr, STAGES))}, but got {stage!r}")
    if removals and stage != "shrink":
        raise ValueError(f"removals are given only with stage='shrink', but got stage={stage!r}")
    ratios = source.ratios
    table = layer_table(teacher)
    if stage == "shrink":
        reduced = replay(teacher, removals).child
        removal_steps = list(removals)
        gone = {step.site["node"] for step in removals}
        removal_mask = (False,) * len(table)
        removed_flags = tuple(nid in gone for nid in table.nodes)
    else:
        reduced, removal_steps, removal_mask, removed_flags = apply_removals(
            teacher, ask=source.removal_ask(table.features, rng))
    remaining = layer_table(reduced)
    shrink_mask = remaining.shrinkable if stage != "removal" else (False,) * len(remaining)
    choices = source.shrink(remaining.features, shrink_mask, rng) if any(shrink_mask) else (-1,) * len(remaining)
    chosen = [float(ratios[c]) if c >= 0 else 1.0 for c in choices]
    student, _ = apply_shrinkage(teacher, reduced, removal_steps, chosen)
    decided = tuple(r and m for r, m in zip(removed_flags, removal_mask))  # given removals are no decisions
    trajectory = Trajectory(table.features, removal_mask, decided, remaining.features, shrink_mask, tuple(choices))
    removed = tuple(nid for nid, r in zip(table.nodes, removed_flags) if r)
    return Student(student, trajectory, removed, dict(zip(remaining.nodes, chosen)))
