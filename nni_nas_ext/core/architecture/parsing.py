"""Parsing of a node's dict form: the id, the op, the inputs and every attribute checked, defaults filled in.

:func:`parse_node` turns one entry of an architecture's ``"nodes"`` list into a :class:`~.values.Node` (or raises
:class:`~nni_nas_ext.core.errors.ArchitectureError` naming the node, the rule and the value);
:meth:`~.graph.Architecture.from_dict` parses the rest of the dict form with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ArchitectureError
from .ops import INPUT, OPS, REQUIRED, AttrSpec, default_for
from .values import Node, key_names

__all__ = ["parse_node", "positive_ints"]

_ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _finite(value: Any) -> bool:
    """A JSON number (not a bool) that converts to a finite float; huge integers are not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_attr(node_id: str, op: str, name: str, spec: AttrSpec, value: Any) -> Any:
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArchitectureError(node_id, f"{op} attribute {name!r} must be an integer", repr(value))
        if spec.minimum is not None and value < spec.minimum:
            raise ArchitectureError(node_id, f"{op} attribute {name!r} must be >= {int(spec.minimum)}", repr(value))
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ArchitectureError(node_id, f"{op} attribute {name!r} must be true or false", repr(value))
        return value
    if spec.kind == "float":
        if not _finite(value):
            raise ArchitectureError(node_id, f"{op} attribute {name!r} must be a finite number", repr(value))
        if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value >= spec.maximum:
            raise ArchitectureError(
                node_id, f"{op} attribute {name!r} must lie in [{spec.minimum}, {spec.maximum})", repr(value))
        return float(value)
    # floats: a list of finite numbers
    if not isinstance(value, (list, tuple)) or not all(_finite(v) for v in value):
        raise ArchitectureError(node_id, f"{op} attribute {name!r} must be a list of finite numbers", repr(value))
    return tuple(float(v) for v in value)


def parse_node(data: Any, index: int) -> Node:
    """The node of ``nodes[index]`` of a dict form, validated, every attribute of its op filled in."""
    if not isinstance(data, Mapping):
        raise ArchitectureError(None, f"nodes[{index}] must be a JSON object", repr(data)[:100])
    node_id = data.get("id")
    if not isinstance(node_id, str) or not _ID_PATTERN.fullmatch(node_id):
        raise ArchitectureError(
            None, f"nodes[{index}] needs an 'id' matching {_ID_PATTERN.pattern} (a valid module name)",
            repr(node_id)[:100])
    if node_id == INPUT:
        raise ArchitectureError(node_id, f"the id {INPUT!r} is reserved for the graph input", "it on a node")
    op = data.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ArchitectureError(node_id, f"'op' must be one of {sorted(OPS)}", repr(op)[:100])
    spec = OPS[op]
    inputs = data.get("inputs")
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs):
        raise ArchitectureError(node_id, "'inputs' must be a list of node ids", repr(inputs)[:100])
    if len(inputs) < spec.min_inputs or spec.max_inputs is not None and len(inputs) > spec.max_inputs:
        want = (f"exactly {spec.min_inputs}" if spec.max_inputs == spec.min_inputs
                else f"at least {spec.min_inputs}")
        raise ArchitectureError(node_id, f"{op} takes {want} input(s)", f"{len(inputs)}: {list(inputs)}")
    unknown = set(data) - {"id", "op", "inputs"} - set(spec.attrs)
    if unknown:
        raise ArchitectureError(
            node_id, f"{op} has attributes {sorted(spec.attrs) or 'none'}", f"unknown {key_names(unknown)}")
    attrs: dict[str, Any] = {}
    for name, attr in spec.attrs.items():
        if name in data and data[name] is not None:
            attrs[name] = _check_attr(node_id, op, name, attr, data[name])
        elif attr.default is REQUIRED:
            raise ArchitectureError(node_id, f"{op} needs attribute {name!r}", "it missing")
    for name, attr in spec.attrs.items():  # second pass: defaults that depend on other attributes
        if name not in attrs:
            attrs[name] = attr.default if attr.default is not None else default_for(op, name, attrs)
    return Node(node_id, op, tuple(inputs), attrs)


def positive_ints(value: Any, length: int) -> bool:
    """Whether ``value`` is a list or tuple of ``length`` integers >= 1 (bools excluded)."""
    return (isinstance(value, (list, tuple)) and len(value) == length
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))
