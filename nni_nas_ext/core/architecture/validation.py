"""Validation of an architecture's graph: topological order, shape inference and the output's reach.

Pure functions over the nodes, run by :class:`~.graph.Architecture` on construction, each raising
:class:`~nni_nas_ext.core.errors.ArchitectureError` naming the node, the rule and what was found:

* :func:`topological_order` -- every input exists, no cycle; Kahn's algorithm, stable in declared order;
* :func:`infer_shapes` -- each node's output shape (:func:`infer_shape`) and whether it is provably >= 0;
* :func:`check_output` -- the output node gives ``(num_classes,)`` and every node leads to it.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from ..errors import ArchitectureError
from .ops import INPUT, OPS, SIGN_PRESERVING, Shape
from .values import Node

__all__ = ["check_output", "infer_shape", "infer_shapes", "topological_order"]


def topological_order(nodes: Sequence[Node], by_id: Mapping[str, Node]) -> tuple[str, ...]:
    """Node ids in execution order (stable in the declared order of ``nodes``)."""
    for node in nodes:
        for src in node.inputs:
            if src != INPUT and src not in by_id:
                raise ArchitectureError(
                    node.id, "every input must be 'input' or the id of a node",
                    f"dangling input {src!r}")
    # Kahn's algorithm, stable in the declared order of the nodes.
    indegree = {n.id: len(set(n.inputs) - {INPUT}) for n in nodes}
    users: dict[str, list[str]] = {n.id: [] for n in nodes}
    for node in nodes:
        for src in set(node.inputs) - {INPUT}:
            users[src].append(node.id)
    position = {n.id: i for i, n in enumerate(nodes)}
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
    if len(order) != len(nodes):
        stuck = [n.id for n in nodes if indegree[n.id] > 0]
        raise ArchitectureError(stuck[0], "the graph must be acyclic", f"a cycle through {stuck}")
    return tuple(order)


def infer_shapes(input_shape: Shape, by_id: Mapping[str, Node], order: Sequence[str]
                 ) -> tuple[dict[str, Shape], dict[str, bool]]:
    """The output shape of every node (and of ``"input"``), and whether its output is provably >= 0."""
    shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
    nonneg: dict[str, bool] = {INPUT: False}
    for nid in order:
        node = by_id[nid]
        in_shapes = [shapes[i] for i in node.inputs]
        shapes[nid] = infer_shape(node, in_shapes)
        if node.op == "relu":
            nonneg[nid] = True
        elif node.op in SIGN_PRESERVING or (node.op == "add" and all(w >= 0 for w in _add_weights(node))):
            nonneg[nid] = all(nonneg[i] for i in node.inputs)
        else:
            nonneg[nid] = False
    return shapes, nonneg


def _add_weights(node: Node) -> tuple[float, ...]:
    """The weights of an ``add`` node's inputs (all 1.0 unless given)."""
    w = node.attrs.get("weights")
    return tuple(w) if w is not None else (1.0,) * len(node.inputs)


def check_output(nodes: Sequence[Node], by_id: Mapping[str, Node], order: Sequence[str], output: object,
                 num_classes: int, shapes: Mapping[str, Shape]) -> None:
    """``output`` is a node that produces ``(num_classes,)``, and every node leads to it."""
    if not isinstance(output, str) or output not in by_id:
        raise ArchitectureError(None, "'output' must be the id of a node", repr(output))
    if shapes[output] != (num_classes,):
        raise ArchitectureError(
            output, f"the output node must produce shape ({num_classes},) = (num_classes,)",
            f"shape {shapes[output]}")
    # Every node must lead to the output: dead nodes hold parameters that nothing trains.
    alive = {output}
    for nid in reversed(order):
        if nid in alive:
            alive.update(by_id[nid].inputs)
    for node in nodes:
        if node.id not in alive:
            raise ArchitectureError(node.id, f"every node must lead to the output {output!r}",
                                    "no path from this node to it")


def _spatial(node: Node, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ArchitectureError(node.id, f"{node.op} needs a (C, H, W) input", f"shape {shape}")
    return shape


def _window(node: Node, h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    if padding > kernel // 2:
        raise ArchitectureError(node.id, f"padding must be <= kernel // 2 = {kernel // 2}", f"padding {padding}")
    if kernel > h + 2 * padding or kernel > w + 2 * padding:
        raise ArchitectureError(
            node.id, "the kernel must fit the padded input (kernel <= size + 2 * padding)",
            f"kernel {kernel} on {h}x{w} with padding {padding}")
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def infer_shape(node: Node, in_shapes: Sequence[Shape]) -> Shape:
    """The output shape of ``node`` given its inputs' shapes (without the batch dimension)."""
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
    if op in ("bn", "relu", "dropout", "identity"):
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
