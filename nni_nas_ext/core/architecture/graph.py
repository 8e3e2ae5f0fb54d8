"""The :class:`Architecture` value: a validated graph of nodes, its queries, costs, content id and dict form.

Constructing one runs the checks of :mod:`.validation` (shape inference included); :meth:`Architecture.to_dict`
/ :meth:`Architecture.from_dict` round-trip exactly (nodes parsed by :mod:`.parsing`), with a format
``version`` and, for a child, its :class:`~.values.Lineage`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ArchitectureError
from .ops import INPUT, Shape
from .parsing import parse_node, positive_ints
from .validation import check_output, infer_shapes, topological_order
from .values import Lineage, Node, canonical_json, key_names

__all__ = ["FORMAT_VERSION", "Architecture"]

#: The version of the dict form this release writes and reads.
FORMAT_VERSION = 1


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
        if not positive_ints(self.input_shape, 3):
            raise ArchitectureError(None, "input_shape must be 3 positive integers (C, H, W)", repr(self.input_shape))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ArchitectureError(None, "num_classes must be a positive integer", repr(self.num_classes))
        by_id: dict[str, Node] = {}
        for node in self.nodes:
            if node.id in by_id:
                raise ArchitectureError(node.id, "node ids must be unique", "a second node with this id")
            by_id[node.id] = node
        object.__setattr__(self, "_by_id", by_id)
        order = topological_order(self.nodes, by_id)
        object.__setattr__(self, "_order", order)
        consumers: dict[str, list[str]] = {INPUT: [], **{n: [] for n in by_id}}
        for nid in order:
            for src in dict.fromkeys(by_id[nid].inputs):
                consumers[src].append(nid)
        object.__setattr__(self, "_consumers", {k: tuple(v) for k, v in consumers.items()})
        shapes, nonneg = infer_shapes(self.input_shape, by_id, order)
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_nonneg", nonneg)
        check_output(self.nodes, by_id, order, self.output, self.num_classes, shapes)

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
                total += node["out_features"] * self.in_channels(node.id)
                total += node["out_features"] if node["bias"] else 0
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
            cached = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]
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
                                    f"unknown keys {key_names(extra)}")
        missing = {"input_shape", "num_classes", "nodes", "output"} - set(data)
        if missing:
            raise ArchitectureError(None, "an architecture needs input_shape, num_classes, nodes and output",
                                    f"{sorted(missing)} missing")
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ArchitectureError(None, f"'version' must be {FORMAT_VERSION} (the format this release reads)",
                                    repr(version))
        if not positive_ints(data["input_shape"], 3):
            raise ArchitectureError(None, "input_shape must be 3 positive integers (C, H, W)",
                                    repr(data["input_shape"])[:100])
        nodes = data["nodes"]
        if not isinstance(nodes, (list, tuple)) or not nodes:
            raise ArchitectureError(None, "'nodes' must be a non-empty list", repr(nodes)[:100])
        lineage = data.get("lineage")
        return cls(tuple(data["input_shape"]), data["num_classes"],
                   tuple(parse_node(n, i) for i, n in enumerate(nodes)), data["output"],
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
        return hash(canonical_json(self.to_dict()))

    def __repr__(self) -> str:
        return (f"Architecture(id={self.id!r}, nodes={len(self.nodes)}, params={self.num_parameters()}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")
