"""The morphism registry, replay of recorded steps, and random chains of morphisms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..architecture import Architecture, Lineage, Step
from ..errors import MorphismError, unknown_name
from .base import Morphism, MorphismResult, WeightTransform
from .branch import Branch
from .deepen import Deepen
from .kernel import WidenKernel
from .skip import AddSkip, ConcatSkip
from .widen import Widen

__all__ = ["MORPHISMS", "create_morphism", "list_morphisms", "random_chain", "replay"]

#: Every morphism by name. A literal dict: no registration side effects at import time.
MORPHISMS: dict[str, type[Morphism]] = {
    "deepen": Deepen,
    "widen": Widen,
    "add_skip": AddSkip,
    "concat_skip": ConcatSkip,
    "widen_kernel": WidenKernel,
    "branch": Branch,
}


def list_morphisms() -> list[str]:
    """Names of the registered morphisms."""
    return list(MORPHISMS)


def _lookup(name: str) -> type[Morphism]:
    try:
        return MORPHISMS[name]
    except (KeyError, TypeError):
        raise MorphismError(unknown_name("morphism", name, list(MORPHISMS))) from None


def create_morphism(name: str, **config: Any) -> Morphism:
    """A morphism by name with its configuration, e.g. ``create_morphism("widen", mode="noise")``."""
    cls = _lookup(name)
    try:
        return cls(**config)
    except TypeError as exc:
        fields = list(getattr(cls, "__dataclass_fields__", {}))
        raise MorphismError(f"{name}: bad configuration {config!r} ({exc}); it takes {fields}") from None


def replay(parent: Architecture, steps: Sequence[Step]) -> MorphismResult:
    """Re-apply recorded ``steps`` to ``parent``: the same child and weight transformation as when drawn.

    The child's lineage is ``(parent.id, steps)``.
    """
    arch, transforms = parent, []
    for i, step in enumerate(steps):
        try:
            arch, transform = _lookup(step.op)().realize(arch, step)
        except MorphismError as exc:
            raise MorphismError(f"replaying step {i} ({step.describe()}) on {arch.id}: {exc}") from None
        transforms.append(transform)
    return MorphismResult(arch.with_lineage(Lineage(parent.id, tuple(steps))), WeightTransform.compose(transforms))


def random_chain(parent: Architecture, morphisms: Sequence[Morphism], length: int,
                 rng: np.random.Generator) -> MorphismResult:
    """Apply ``length`` random morphisms in a row, as NASH builds a child (``n_NM`` morphisms).

    Each step draws an operator uniformly among those of ``morphisms`` that apply somewhere, then a
    site uniformly among its sites. The composition is one morphism: the child's lineage is
    ``(parent.id, [step_1, ..., step_length])`` and its transform the composition of the steps'.

    Raises
    ------
    MorphismError
        If at some step none of ``morphisms`` applies anywhere.
    """
    if length < 1:
        raise MorphismError(f"random_chain: length must be >= 1, but got {length}")
    if not morphisms:
        raise MorphismError("random_chain: give at least one morphism")
    arch, steps, transforms = parent, [], []
    for _ in range(length):
        options = [(m, sites) for m in morphisms if (sites := m.sites(arch))]
        if not options:
            raise MorphismError(f"no morphism of {[m.name for m in morphisms]} applies to {arch!r}")
        morphism, sites = options[int(rng.integers(len(options)))]
        site = sites[int(rng.integers(len(sites)))]
        step = morphism.propose(arch, site, rng)
        arch, transform = morphism.realize(arch, step)
        steps.append(step)
        transforms.append(transform)
    return MorphismResult(arch.with_lineage(Lineage(parent.id, tuple(steps))), WeightTransform.compose(transforms))
