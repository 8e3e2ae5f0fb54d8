"""The frozen values an architecture is made of: :class:`Node`, and a child's :class:`Lineage` of :class:`Step` s.

Also the JSON helpers they share with :class:`~.graph.Architecture`: :func:`canonical_json` (hashing and
equality) and :func:`key_names` (mapping keys in error messages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ArchitectureError

__all__ = ["Lineage", "Node", "Step", "canonical_json", "key_names"]


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a value (sorted keys, no spaces): equal values give equal texts."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _freeze_json(value: Any) -> Any:
    """Deep-copy a JSON value so that the copy can't be changed through the caller's reference.

    Raises TypeError for anything that is not plain JSON (object keys must be strings: json.dumps would
    otherwise turn ``1`` into ``"1"`` silently) and ValueError for NaN, infinities and circular values.
    """
    _require_string_keys(value)
    return json.loads(json.dumps(value, allow_nan=False))


def _require_string_keys(value: Any, depth: int = 0) -> None:
    if depth > 64:
        raise ValueError("nested more than 64 levels deep")
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"object keys must be strings, found {bad[0]!r}")
        for item in value.values():
            _require_string_keys(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _require_string_keys(item, depth + 1)



def key_names(keys: Any) -> list[str]:
    """Sorted printable names of mapping keys of any type (for error messages)."""
    return sorted(repr(k) if not isinstance(k, str) else k for k in keys)


@dataclass(frozen=True, eq=False)
class Node:
    """One operation of an architecture.

    ``attrs`` always holds every attribute of the operator, defaults filled in, so that equal nodes
    have equal dict forms.
    """

    id: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.attrs[name]

    def replace(self, *, inputs: Sequence[str] | None = None, **attrs: Any) -> Node:
        """A copy with other inputs and/or attributes (the result is checked when the
        architecture holding it is built)."""
        new_attrs = dict(self.attrs)
        new_attrs.update(attrs)
        return Node(self.id, self.op, tuple(inputs) if inputs is not None else self.inputs, new_attrs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "op": self.op, "inputs": list(self.inputs)}
        for key, value in self.attrs.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_dict()))


@dataclass(frozen=True, eq=False)
class Step:
    """One applied morphism: the operator's name, where it was applied and every parameter it drew.

    A step holds all that is needed to replay the morphism deterministically
    (:func:`nni_nas_ext.core.morphisms.replay`), e.g. the replication mapping of a widening.
    """

    op: str
    site: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "site": _freeze_json(dict(self.site)),
                "params": _freeze_json(dict(self.params))}

    @classmethod
    def from_dict(cls, data: Any) -> Step:
        where = "lineage step"
        if not isinstance(data, Mapping):
            raise ArchitectureError(None, f"a {where} must be a JSON object", repr(type(data).__name__))
        extra = set(data) - {"op", "site", "params"}
        if extra:
            raise ArchitectureError(None, f"a {where} has keys op, site, params", f"extra keys {key_names(extra)}")
        op, site, params = data.get("op"), data.get("site"), data.get("params", {})
        if not isinstance(op, str):
            raise ArchitectureError(None, f"a {where}'s 'op' must be a string", repr(op))
        for name, value in (("site", site), ("params", params)):
            if not isinstance(value, Mapping):
                raise ArchitectureError(None, f"a {where}'s {name!r} must be a JSON object", repr(value))
        try:
            return cls(op, _freeze_json(dict(site)), _freeze_json(dict(params)))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ArchitectureError(None, f"a {where} must be plain JSON", str(exc)) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_dict()))

    def describe(self) -> str:
        """Short human-readable form, e.g. ``widen(node=conv2, width=32)``."""
        parts = [f"{k}={v}" for k, v in self.site.items()]
        parts += [f"{k}={v}" for k, v in self.params.items() if not isinstance(v, (list, dict))]
        return f"{self.op}({', '.join(parts)})"


@dataclass(frozen=True)
class Lineage:
    """Where an architecture came from: its parent's id and the morphisms applied to the parent."""

    parent: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"parent": self.parent, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Any) -> Lineage:
        if not isinstance(data, Mapping) or set(data) != {"parent", "steps"}:
            raise ArchitectureError(None, "'lineage' must be an object with keys parent and steps", repr(data)[:200])
        if not isinstance(data["parent"], str) or not isinstance(data["steps"], list):
            raise ArchitectureError(None, "lineage 'parent' must be a string and 'steps' a list", repr(data)[:200])
        return cls(data["parent"], tuple(Step.from_dict(s) for s in data["steps"]))
