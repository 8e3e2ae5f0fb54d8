"""Network morphisms (function-preserving), compressions (approximate) and their weight transformations.

Every operator cites its paper in its module docstring. See :mod:`.base` for the interface and
:mod:`.registry` for the two tables (:data:`MORPHISMS`, :data:`COMPRESSIONS`).
"""

from __future__ import annotations

from .base import Morphism, MorphismResult, Site, WeightTransform
from .branch import Branch
from .channels import NotApplicable
from .deepen import BN_EPS, Deepen, bn_identity, nni_bn_rule
from .kernel import WidenKernel
from .path_level import (
    EXACT_PRIMITIVES, POOL_PRIMITIVES, PRIMITIVES, InsertLayer, ReplicateAdd, SplitConcat, layer_chain, layer_primitive,
    primitive_applies, split_sizes,
)
from .registry import (
    COMPRESSIONS, MORPHISMS, chain_is_exact, create_morphism, list_compressions, list_morphisms, random_chain, replay,
    step_is_exact,
)
from .remove import RemoveLayer, RemoveSkip, drop_state, prune_dead
from .shrink import CRITERIA, Shrink, following_bn, previous_width, top_units, unit_scores
from .skip import AddSkip, ConcatSkip
from .widen import WIDTHS, Widen, next_width

__all__ = [
    "BN_EPS", "MORPHISMS", "WIDTHS", "AddSkip", "Branch", "ConcatSkip", "Deepen", "Morphism", "MorphismResult",
    "NotApplicable", "Site", "WeightTransform", "Widen", "WidenKernel", "bn_identity", "create_morphism",
    "list_morphisms", "next_width", "nni_bn_rule", "random_chain", "replay",
]
__all__ += [
    "COMPRESSIONS", "CRITERIA", "RemoveLayer", "RemoveSkip", "Shrink", "chain_is_exact", "drop_state",
    "following_bn", "list_compressions", "previous_width", "prune_dead", "step_is_exact", "top_units",
    "unit_scores",
]
__all__ += [
    "EXACT_PRIMITIVES", "POOL_PRIMITIVES", "PRIMITIVES", "InsertLayer", "ReplicateAdd", "SplitConcat", "layer_chain",
    "layer_primitive", "primitive_applies", "split_sizes",
]
