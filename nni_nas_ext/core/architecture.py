"""Architectures as frozen, JSON-serialisable values.

An :class:`Architecture` is a directed acyclic graph of typed :class:`Node` s over one image input of
shape ``(channels, height, width)`` and one output node that produces ``num_classes`` logits. It is a
value: constructing one validates it (shape inference included), morphisms return new ones and never
mutate their parent, and :meth:`Architecture.to_dict` / :meth:`Architecture.from_dict` round-trip
exactly. The genotype is kept apart from the ``torch`` module (see :mod:`nni_nas_ext.core.builder`), as
in DARTS' ``genotypes.py``.

Node types and their attributes (defaults in brackets):

========== ===================================================================== ===========
op          attributes                                                            shape
========== ===================================================================== ===========
conv        out_channels, kernel, stride [1], padding [kernel // 2], groups [1],  (C, H, W)
            bias [true]
bn          --                                                                    any
relu        --                                                                    any
maxpool     kernel, stride [kernel], padding [0]                                  (C, H, W)
avgpool     kernel, stride [kernel], padding [0]                                  (C, H, W)
gap         -- (global average pooling)                                           (C,H,W)->(C,)
linear      out_features, bias [true]                                             (F,)
dropout     p [0.5]                                                               any
add         weights [all 1.0]: the merge is ``sum_i weights[i] * inputs[i]``       same shapes
concat      -- (along channels / features)                                        same H, W
========== ===================================================================== ===========

The graph input is the reserved id ``"input"``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from .errors import ArchitectureError

__all__ = [
    "INPUT",
    "OPS",
    "Architecture",
    "GraphBuilder",
    "Lineage",
    "Node",
    "Shape",
    "Step",
]

INPUT = "input"
FORMAT_VERSION = 1
Shape = tuple[int, ...]
JsonValue = Union[None, bool, int, float, str, list, dict]

_ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_REQUIRED = object()


# --------------------------------------------------------------------------------------------------
# Operator specifications
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attr:
    kind: str  # 'int', 'float', 'bool', 'floats'
    default: Any = _REQUIRED
    minimum: float | None = None
    maximum: float | None = None  # exclusive for floats, inclusive for ints


@dataclass(frozen=True)
class _OpSpec:
    attrs: Mapping[str, _Attr]
    min_inputs: int = 1
    max_inputs: int | None = 1


_POOL = {"kernel": _Attr("int", minimum=1), "stride": _Attr("int", None, minimum=1),
         "padding": _Attr("int", 0, minimum=0)}

OPS: Mapping[str, _OpSpec] = {
    "conv": _OpSpec({
        "out_channels": _Attr("int", minimum=1),
        "kernel": _Attr("int", minimum=1),
        "stride": _Attr("int", 1, minimum=1),
        "padding": _Attr("int", None, minimum=0),
        "groups": _Attr("int", 1, minimum=1),
        "bias": _Attr("bool", True),
    }),
    "bn": _OpSpec({}),
    "relu": _OpSpec({}),
    "maxpool": _OpSpec(_POOL),
    "avgpool": _OpSpec(_POOL),
    "gap": _OpSpec({}),
    "linear": _OpSpec({"out_features": _Attr("int", minimum=1), "bias": _Attr("bool", True)}),
    "dropout": _OpSpec({"p": _Attr("float", 0.5, minimum=0.0, maximum=1.0)}),
    "add": _OpSpec({"weights": _Attr("floats", None)}, min_inputs=2, max_inputs=None),
    "concat": _OpSpec({}, min_inputs=2, max_inputs=None),
}

# Operators whose output is non-negative whenever all their inputs are (used by deepen).
_SIGN_PRESERVING = frozenset({"maxpool", "avgpool", "gap", "dropout", "concat"})


def _default_for(op: str, name: str, attrs: Mapping[str, Any]) -> Any:
    """Defaults that depend on other attributes."""
    if name == "padding" and op == "conv":
        return attrs["kernel"] // 2
    if name == "stride" and op in ("maxpool", "avgpool"):
        return attrs["kernel"]
    return None


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
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


def _finite(value: Any) -> bool:
    """A JSON number (not a bool) that converts to a finite float; huge integers are not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _key_names(keys: Any) -> list[str]:
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
        return hash(_canonical(self.to_dict()))


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
            raise ArchitectureError(None, f"a {where} has keys op, site, params", f"extra keys {_key_names(extra)}")
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
        return hash(_canonical(self.to_dict()))

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


# --------------------------------------------------------------------------------------------------
# Parsing of the dict form
# --------------------------------------------------------------------------------------------------


def _check_attr(node_id: str, op: str, name: str, spec: _Attr, value: Any) -> Any:
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


def _parse_node(data: Any, index: int) -> Node:
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
            node_id, f"{op} has attributes {sorted(spec.attrs) or 'none'}", f"unknown {_key_names(unknown)}")
    attrs: dict[str, Any] = {}
    for name, attr in spec.attrs.items():
        if name in data and data[name] is not None:
            attrs[name] = _check_attr(node_id, op, name, attr, data[name])
        elif attr.default is _REQUIRED:
            raise ArchitectureError(node_id, f"{op} needs attribute {name!r}", "it missing")
    for name, attr in spec.attrs.items():  # second pass: defaults that depend on other attributes
        if name not in attrs:
            attrs[name] = attr.default if attr.default is not None else _default_for(op, name, attrs)
    return Node(node_id, op, tuple(inputs), attrs)


def _positive_ints(value: Any, length: int) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == length
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))


# --------------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Architecture:
    """A validated network architecture.

    Parameters
    ----------
    input_shape
        ``(channels, height, width)`` of one input example.
    num_classes
        Number of output logits; the output node must produce shape ``(num_classes,)``.
    nodes
        The operations, in any order that the user likes to read; execution follows
        :attr:`topological_order`.
    output
        Id of the output node.
    lineage
        The parent and the morphisms that produced this architecture, if any. Not part of :attr:`id`.

    Raises
    ------
    ArchitectureError
        If any rule is broken: unknown op, duplicate or reserved id, dangling input, cycle, a node that
        does not lead to the output, shape or channel mismatch, a kernel that does not fit.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    nodes: tuple[Node, ...]
    output: str
    lineage: Lineage | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if not _positive_ints(self.input_shape, 3):
            raise ArchitectureError(None, "input_shape must be 3 positive integers (C, H, W)", repr(self.input_shape))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ArchitectureError(None, "num_classes must be a positive integer", repr(self.num_classes))
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            if node.id in by_id:
                raise ArchitectureError(node.id, "node ids must be unique", "a second node with this id")
            by_id[node.id] = node
        object.__setattr__(self, "_by_id", by_id)
        order = self._toposort(by_id)
        object.__setattr__(self, "_order", order)
        consumers: dict[str, list[str]] = {INPUT: [], **{n: [] for n in by_id}}
        for nid in order:
            for src in dict.fromkeys(by_id[nid].inputs):
                consumers[src].append(nid)
        object.__setattr__(self, "_consumers", {k: tuple(v) for k, v in consumers.items()})
        shapes, nonneg = self._infer_shapes(by_id, order)
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_nonneg", nonneg)
        self._check_output(shapes)

    # ---- validation ------------------------------------------------------------------------------

    def _toposort(self, by_id: Mapping[str, Node]) -> tuple[str, ...]:
        for node in self.nodes:
            for src in node.inputs:
                if src != INPUT and src not in by_id:
                    raise ArchitectureError(
                        node.id, "every input must be 'input' or the id of a node",
                        f"dangling input {src!r}")
        # Kahn's algorithm, stable in the declared order of the nodes.
        indegree = {n.id: len(set(n.inputs) - {INPUT}) for n in self.nodes}
        users: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for node in self.nodes:
            for src in set(node.inputs) - {INPUT}:
                users[src].append(node.id)
        position = {n.id: i for i, n in enumerate(self.nodes)}
        ready = [nid for nid, d in indegree.items() if d == 0]
        order: list[str] = []
        heap = [(position[n], n) for n in ready]
        heapq.heapify(heap)
        while heap:
            _, nid = heapq.heappop(heap)
            order.append(nid)
            for user in users[nid]:
                indegree[user] -= 1
                if indegree[user] == 0:
                    heapq.heappush(heap, (position[user], user))
        if len(order) != len(self.nodes):
            stuck = [n.id for n in self.nodes if indegree[n.id] > 0]
            raise ArchitectureError(stuck[0], "the graph must be acyclic", f"a cycle through {stuck}")
        return tuple(order)

    def _infer_shapes(self, by_id: Mapping[str, Node], order: Sequence[str]
                      ) -> tuple[dict[str, Shape], dict[str, bool]]:
        shapes: dict[str, Shape] = {INPUT: tuple(self.input_shape)}
        nonneg: dict[str, bool] = {INPUT: False}
        for nid in order:
            node = by_id[nid]
            in_shapes = [shapes[i] for i in node.inputs]
            shapes[nid] = _infer_node(node, in_shapes)
            if node.op == "relu":
                nonneg[nid] = True
            elif node.op in _SIGN_PRESERVING or (node.op == "add" and all(w >= 0 for w in self._weights(node))):
                nonneg[nid] = all(nonneg[i] for i in node.inputs)
            else:
                nonneg[nid] = False
        return shapes, nonneg

    @staticmethod
    def _weights(node: Node) -> tuple[float, ...]:
        w = node.attrs.get("weights")
        return tuple(w) if w is not None else (1.0,) * len(node.inputs)

    def _check_output(self, shapes: Mapping[str, Shape]) -> None:
        if not isinstance(self.output, str) or self.output not in self._by_id:  # type: ignore[attr-defined]
            raise ArchitectureError(None, "'output' must be the id of a node", repr(self.output))
        if shapes[self.output] != (self.num_classes,):
            raise ArchitectureError(
                self.output, f"the output node must produce shape ({self.num_classes},) = (num_classes,)",
                f"shape {shapes[self.output]}")
        # Every node must lead to the output: dead nodes hold parameters that nothing trains.
        alive = {self.output}
        for nid in reversed(self._order):  # type: ignore[attr-defined]
            if nid in alive:
                alive.update(self._by_id[nid].inputs)  # type: ignore[attr-defined]
        for node in self.nodes:
            if node.id not in alive:
                raise ArchitectureError(node.id, f"every node must lead to the output {self.output!r}",
                                        "no path from this node to it")

    # ---- queries ----------------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        """The node with this id; ``KeyError`` naming the known ids otherwise."""
        try:
            return self._by_id[node_id]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"no node {node_id!r}; nodes are {sorted(self._by_id)}") from None  # type: ignore[attr-defined]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id  # type: ignore[attr-defined]

    @property
    def topological_order(self) -> tuple[str, ...]:
        """Node ids in execution order (stable in the declared order)."""
        return self._order  # type: ignore[attr-defined]

    def shape(self, node_id: str) -> Shape:
        """Output shape of a node (or of ``"input"``), without the batch dimension."""
        return self._shapes[node_id]  # type: ignore[attr-defined]

    def consumers(self, node_id: str) -> tuple[str, ...]:
        """Ids of the nodes that read this node's output, in execution order."""
        return self._consumers[node_id]  # type: ignore[attr-defined]

    def is_nonnegative(self, node_id: str) -> bool:
        """Whether the node's output is provably >= 0 (a ReLU, or pooling/concat of such outputs)."""
        return self._nonneg[node_id]  # type: ignore[attr-defined]

    def ancestors(self, node_id: str) -> frozenset[str]:
        """Every node (and ``"input"``) the node depends on, itself excluded."""
        table = self.__dict__.get("_ancestors")
        if table is None:  # computed once for all nodes, in topological order
            table = {INPUT: frozenset()}
            for nid in self._order:  # type: ignore[attr-defined]
                inputs = self._by_id[nid].inputs  # type: ignore[attr-defined]
                table[nid] = frozenset(inputs).union(*(table[i] for i in inputs))
            object.__setattr__(self, "_ancestors", table)
        if node_id not in table:
            self.node(node_id)  # raises the KeyError that names the known ids
        return table[node_id]

    def in_channels(self, node_id: str) -> int:
        """Channels (or features) of a single-input node's input."""
        return self.shape(self.node(node_id).inputs[0])[0]

    def num_parameters(self) -> int:
        """Number of trainable parameters of the built module (computed from shapes alone)."""
        total = 0
        for node in self.nodes:
            if node.op == "conv":
                cin = self.in_channels(node.id)
                total += node["out_channels"] * (cin // node["groups"]) * node["kernel"] ** 2
                total += node["out_channels"] if node["bias"] else 0
            elif node.op == "linear":
                total += node["out_features"] * self.in_channels(node.id) + (node["out_features"] if node["bias"] else 0)
            elif node.op == "bn":
                total += 2 * self.shape(node.id)[0]
        return total

    def num_macs(self) -> int:
        """Multiply-accumulates of one forward pass of one example (convolutions and linear layers)."""
        total = 0
        for node in self.nodes:
            if node.op == "conv":
                c_out, h, w = self.shape(node.id)
                total += c_out * h * w * (self.in_channels(node.id) // node["groups"]) * node["kernel"] ** 2
            elif node.op == "linear":
                total += node["out_features"] * self.in_channels(node.id)
        return total

    def fresh_id(self, prefix: str, taken: Iterable[str] = ()) -> str:
        """The first id ``prefix<N>`` (N = 1, 2, ...) used neither here nor in ``taken``."""
        used = set(self._by_id) | set(taken)  # type: ignore[attr-defined]
        n = 1
        while f"{prefix}{n}" in used:
            n += 1
        return f"{prefix}{n}"

    @property
    def id(self) -> str:
        """Content hash of the structure (input shape, classes, nodes, output); lineage excluded."""
        cached = self.__dict__.get("_id")
        if cached is None:
            body = self.to_dict()
            body.pop("lineage", None)
            cached = hashlib.sha256(_canonical(body).encode()).hexdigest()[:16]
            object.__setattr__(self, "_id", cached)
        return cached

    def describe(self) -> str:
        """One line per node: id, op, inputs, attributes and output shape."""
        lines = [f"input {self.input_shape}"]
        for nid in self.topological_order:
            node = self.node(nid)
            attrs = ", ".join(f"{k}={v}" for k, v in node.attrs.items())
            lines.append(f"{nid:>12} = {node.op}({', '.join(node.inputs)}{'; ' + attrs if attrs else ''})"
                         f" -> {self.shape(nid)}")
        return "\n".join(lines)

    # ---- building new values ---------------------------------------------------------------------

    def with_nodes(self, nodes: Sequence[Node], output: str | None = None) -> Architecture:
        """A new architecture with these nodes (validated), no lineage."""
        return Architecture(self.input_shape, self.num_classes, tuple(nodes),
                            self.output if output is None else output)

    def with_lineage(self, lineage: Lineage | None) -> Architecture:
        """The same structure with another lineage."""
        return Architecture(self.input_shape, self.num_classes, self.nodes, self.output, lineage)

    # ---- (de)serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict; :meth:`from_dict` of it gives an equal architecture."""
        out: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "nodes": [n.to_dict() for n in self.nodes],
            "output": self.output,
        }
        if self.lineage is not None:
            out["lineage"] = self.lineage.to_dict()
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Any) -> Architecture:
        """Parse and validate the dict form; any problem raises :class:`ArchitectureError`."""
        if not isinstance(data, Mapping):
            raise ArchitectureError(None, "an architecture must be a JSON object", type(data).__name__)
        allowed = {"version", "input_shape", "num_classes", "nodes", "output", "lineage"}
        extra = set(data) - allowed
        if extra:
            raise ArchitectureError(None, f"an architecture has keys {sorted(allowed)}",
                                    f"unknown keys {_key_names(extra)}")
        missing = {"input_shape", "num_classes", "nodes", "output"} - set(data)
        if missing:
            raise ArchitectureError(None, "an architecture needs input_shape, num_classes, nodes and output",
                                    f"{sorted(missing)} missing")
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ArchitectureError(None, f"'version' must be {FORMAT_VERSION} (the format this release reads)",
                                    repr(version))
        if not _positive_ints(data["input_shape"], 3):
            raise ArchitectureError(None, "input_shape must be 3 positive integers (C, H, W)",
                                    repr(data["input_shape"])[:100])
        nodes = data["nodes"]
        if not isinstance(nodes, (list, tuple)) or not nodes:
            raise ArchitectureError(None, "'nodes' must be a non-empty list", repr(nodes)[:100])
        lineage = data.get("lineage")
        return cls(tuple(data["input_shape"]), data["num_classes"],
                   tuple(_parse_node(n, i) for i, n in enumerate(nodes)), data["output"],
                   None if lineage is None else Lineage.from_dict(lineage))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        if not isinstance(text, (str, bytes, bytearray)):
            raise ArchitectureError(None, "from_json takes a JSON string", type(text).__name__)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, 4300-digit integer limit, deep nesting
            raise ArchitectureError(None, "an architecture must be valid JSON", str(exc)[:200]) from None
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(_canonical(self.to_dict()))

    def __repr__(self) -> str:
        return (f"Architecture(id={self.id!r}, nodes={len(self.nodes)}, params={self.num_parameters()}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")


def _spatial(node: Node, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ArchitectureError(node.id, f"{node.op} needs a (C, H, W) input", f"shape {shape}")
    return shape  # type: ignore[return-value]


def _window(node: Node, h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    if padding > kernel // 2:
        raise ArchitectureError(node.id, f"padding must be <= kernel // 2 = {kernel // 2}", f"padding {padding}")
    if kernel > h + 2 * padding or kernel > w + 2 * padding:
        raise ArchitectureError(
            node.id, "the kernel must fit the padded input (kernel <= size + 2 * padding)",
            f"kernel {kernel} on {h}x{w} with padding {padding}")
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def _infer_node(node: Node, in_shapes: Sequence[Shape]) -> Shape:
    op, a = node.op, node.attrs
    if op == "conv":
        c, h, w = _spatial(node, in_shapes[0])
        if c % a["groups"] or a["out_channels"] % a["groups"]:
            raise ArchitectureError(
                node.id, "groups must divide both in_channels and out_channels",
                f"groups {a['groups']}, in_channels {c}, out_channels {a['out_channels']}")
        return (a["out_channels"], *_window(node, h, w, a["kernel"], a["stride"], a["padding"]))
    if op in ("maxpool", "avgpool"):
        c, h, w = _spatial(node, in_shapes[0])
        return (c, *_window(node, h, w, a["kernel"], a["stride"], a["padding"]))
    if op == "gap":
        return (_spatial(node, in_shapes[0])[0],)
    if op == "linear":
        if len(in_shapes[0]) != 1:
            raise ArchitectureError(node.id, "linear needs a flat (features,) input; put 'gap' before it",
                                    f"shape {in_shapes[0]}")
        return (a["out_features"],)
    if op in ("bn", "relu", "dropout"):
        return in_shapes[0]
    if op == "add":
        if len(set(in_shapes)) != 1:
            raise ArchitectureError(node.id, "all inputs of add must have the same shape",
                                    f"shapes {list(in_shapes)} from {list(node.inputs)}")
        if a["weights"] is not None and len(a["weights"]) != len(node.inputs):
            raise ArchitectureError(node.id, "add needs one weight per input",
                                    f"{len(a['weights'])} weights for {len(node.inputs)} inputs")
        return in_shapes[0]
    if op == "concat":
        ranks = {len(s) for s in in_shapes}
        if len(ranks) != 1 or len({s[1:] for s in in_shapes}) != 1:
            raise ArchitectureError(node.id, "inputs of concat must agree on every dimension but channels",
                                    f"shapes {list(in_shapes)} from {list(node.inputs)}")
        return (sum(s[0] for s in in_shapes), *in_shapes[0][1:])
    raise ArchitectureError(node.id, f"'op' must be one of {sorted(OPS)}", repr(op))  # unreachable via parsing


# --------------------------------------------------------------------------------------------------
# A small builder for hand-written architectures
# --------------------------------------------------------------------------------------------------


class GraphBuilder:
    """Write architectures as code: each method appends a node and returns its id.

    Examples
    --------
    >>> g = GraphBuilder((1, 8, 8), num_classes=10)
    >>> x = g.relu(g.bn(g.conv(g.input, 16, 3)))
    >>> arch = g.build(g.linear(g.gap(x), 10))
    """

    input = INPUT

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self._nodes: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}

    def node(self, op: str, inputs: Sequence[str], node_id: str | None = None, **attrs: Any) -> str:
        if node_id is None:
            self._counts[op] = self._counts.get(op, 0) + 1
            node_id = f"{op}{self._counts[op]}"
        self._nodes.append({"id": node_id, "op": op, "inputs": list(inputs), **attrs})
        return node_id

    def _unary(op: str) -> Callable[..., str]:  # noqa: N805 - a factory used in the class body
        def method(self: GraphBuilder, x: str, **attrs: Any) -> str:
            return self.node(op, [x], **attrs)
        method.__name__ = op
        method.__doc__ = f"Append a {op} node reading ``x``."
        return method

    bn = _unary("bn")
    relu = _unary("relu")
    gap = _unary("gap")
    dropout = _unary("dropout")
    del _unary

    def conv(self, x: str, out_channels: int, kernel: int, **attrs: Any) -> str:
        return self.node("conv", [x], out_channels=out_channels, kernel=kernel, **attrs)

    def maxpool(self, x: str, kernel: int = 2, **attrs: Any) -> str:
        return self.node("maxpool", [x], kernel=kernel, **attrs)

    def avgpool(self, x: str, kernel: int = 2, **attrs: Any) -> str:
        return self.node("avgpool", [x], kernel=kernel, **attrs)

    def linear(self, x: str, out_features: int, **attrs: Any) -> str:
        return self.node("linear", [x], out_features=out_features, **attrs)

    def add(self, *xs: str, **attrs: Any) -> str:
        return self.node("add", list(xs), **attrs)

    def concat(self, *xs: str) -> str:
        return self.node("concat", list(xs))

    def conv_bn_relu(self, x: str, out_channels: int, kernel: int = 3, **attrs: Any) -> str:
        return self.relu(self.bn(self.conv(x, out_channels, kernel, bias=False, **attrs)))

    def build(self, output: str) -> Architecture:
        return Architecture.from_dict({"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                                       "nodes": self._nodes, "output": output})
