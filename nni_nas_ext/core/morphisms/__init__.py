"""Function-preserving network morphisms and their weight transformations.

Every operator cites its paper in its module docstring. See :mod:`.base` for the interface.
"""

from __future__ import annotations

from .base import Morphism, MorphismResult, Site, WeightTransform
from .branch import Branch
from .channels import NotApplicable
from .deepen import BN_EPS, Deepen, bn_identity, nni_bn_rule
from .kernel import WidenKernel
from .registry import MORPHISMS, create_morphism, list_morphisms, random_chain, replay
from .skip import AddSkip, ConcatSkip
from .widen import WIDTHS, Widen, next_width

__all__ = [
    "BN_EPS", "MORPHISMS", "WIDTHS", "AddSkip", "Branch", "ConcatSkip", "Deepen", "Morphism", "MorphismResult",
    "NotApplicable", "Site", "WeightTransform", "Widen", "WidenKernel", "bn_identity", "create_morphism",
    "list_morphisms", "next_width", "nni_bn_rule", "random_chain", "replay",
]
