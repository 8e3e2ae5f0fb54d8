"""The operator vocabulary of architectures: which ops exist, their attributes, defaults and arities.

:data:`OPS` maps each op name to its :class:`OpSpec` (the table of ops is in :mod:`nni_nas_ext.core.architecture`);
shape inference per op is in :mod:`.validation`, parsing of the attributes in :mod:`.parsing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["INPUT", "OPS", "REQUIRED", "SIGN_PRESERVING", "AttrSpec", "OpSpec", "Shape", "default_for"]

#: The reserved id of the graph input.
INPUT = "input"
#: A tensor shape without the batch dimension.
Shape = tuple[int, ...]
#: The default of an attribute that has none: the dict form must give it.
REQUIRED = object()


@dataclass(frozen=True)
class AttrSpec:
    """One attribute of an op: its kind, default and bounds."""

    kind: str  # 'int', 'float', 'bool', 'floats'
    default: Any = REQUIRED
    minimum: float | None = None
    maximum: float | None = None  # exclusive for floats, inclusive for ints


@dataclass(frozen=True)
class OpSpec:
    """One op: its attributes and how many inputs it takes (``max_inputs=None``: any number)."""

    attrs: Mapping[str, AttrSpec]
    min_inputs: int = 1
    max_inputs: int | None = 1


_POOL = {"kernel": AttrSpec("int", minimum=1), "stride": AttrSpec("int", None, minimum=1),
         "padding": AttrSpec("int", 0, minimum=0)}

OPS: Mapping[str, OpSpec] = {
    "conv": OpSpec({
        "out_channels": AttrSpec("int", minimum=1),
        "kernel": AttrSpec("int", minimum=1),
        "stride": AttrSpec("int", 1, minimum=1),
        "padding": AttrSpec("int", None, minimum=0),
        "groups": AttrSpec("int", 1, minimum=1),
        "bias": AttrSpec("bool", True),
    }),
    "bn": OpSpec({}),
    "relu": OpSpec({}),
    "maxpool": OpSpec(_POOL),
    "avgpool": OpSpec(_POOL),
    "gap": OpSpec({}),
    "linear": OpSpec({"out_features": AttrSpec("int", minimum=1), "bias": AttrSpec("bool", True)}),
    "dropout": OpSpec({"p": AttrSpec("float", 0.5, minimum=0.0, maximum=1.0)}),
    "identity": OpSpec({}),
    "add": OpSpec({"weights": AttrSpec("floats", None)}, min_inputs=2, max_inputs=None),
    "concat": OpSpec({}, min_inputs=2, max_inputs=None),
}

#: Operators whose output is non-negative whenever all their inputs are (used by deepen).
SIGN_PRESERVING = frozenset({"maxpool", "avgpool", "gap", "dropout", "identity", "concat"})


def default_for(op: str, name: str, attrs: Mapping[str, Any]) -> Any:
    """Defaults that depend on other attributes (``None`` if the attribute's default does not)."""
    if name == "padding" and op == "conv":
        return attrs["kernel"] // 2
    if name == "stride" and op in ("maxpool", "avgpool"):
        return attrs["kernel"]
    return None
