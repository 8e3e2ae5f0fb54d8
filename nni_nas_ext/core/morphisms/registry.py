"""The morphism registry, replay of recorded steps, and random chains of morphisms.

Two literal tables: :data:`MORPHISMS`, the function-preserving operators (network morphisms), and
:data:`COMPRESSIONS`, LEMONADE's approximate network morphisms that shrink a network. :func:`create_morphism`,
:func:`replay` and :func:`step_is_exact` read both; a search draws from the table it is configured with.
"""

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
from .path_level import InsertLayer, ReplicateAdd, SplitConcat
from .remove import RemoveLayer, RemoveSkip
from .shrink import Shrink
from .skip import AddSkip, ConcatSkip
from .widen import Widen

__all__ = ["COMPRESSIONS", "MORPHISMS", "chain_is_exact", "create_morphism", "list_compressions", "list_morphisms",
           "random_chain", "replay", "step_is_exact"]

#: Every morphism by name. A literal dict: no registration side effects at import time.
MORPHISMS: dict[str, type[Morphism]] = {
    "deepen": Deepen,
    "widen": Widen,
    "add_skip": AddSkip,
    "concat_skip": ConcatSkip,
    "widen_kernel": WidenKernel,
    "branch": Branch,
    # path-level transformations (Cai et al., ICML 2018); insert_layer's pooling steps are not exact
    "replicate_add": ReplicateAdd,
    "split_concat": SplitConcat,
    "insert_layer": InsertLayer,
}


#: The compressions (approximate network morphisms: ``exact = False``), by name. Apart from
#: :data:`MORPHISMS`, so that what draws from that table keeps drawing function-preserving operators only.
COMPRESSIONS: dict[str, type[Morphism]] = {
    "remove_layer": RemoveLayer,
    "remove_skip": RemoveSkip,
    "shrink": Shrink,
}


def list_morphisms() -> list[str]:
    """Names of the registered function-preserving morphisms."""
    return list(MORPHISMS)


def list_compressions() -> list[str]:
    """Names of the registered compressions."""
    return list(COMPRESSIONS)


def _lookup(name: str) -> type[Morphism]:
    for table in (MORPHISMS, COMPRESSIONS):
        try:
            return table[name]
        except (KeyError, TypeError):
            continue
    raise MorphismError(unknown_name("morphism", name, [*MORPHISMS, *COMPRESSIONS]))


def step_is_exact(step: Step) -> bool:
    """Whether replaying ``step`` preserves the parent's function (eval mode, up to float rounding).

    ``False`` for a compression (its child is trained by knowledge distillation from the parent, as in
    LEMONADE) and for a widen or branch step drawn in ``"noise"`` mode (:meth:`Morphism.is_exact`).

    Raises
    ------
    MorphismError
        If ``step.op`` names no registered operator (as :func:`replay` would).
    """
    return _lookup(step.op).is_exact(step)


def chain_is_exact(steps: Sequence[Step]) -> bool:
    """Whether every one of ``steps`` is exact (:func:`step_is_exact`); ``True`` for no steps."""
    return all(step_is_exact(step) for step in steps)


def create_morphism(name: str, **config: Any) -> Morphism:
    """A morphism or compression by name with its configuration, e.g. ``create_morphism("widen", mode="noise")``."""
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
