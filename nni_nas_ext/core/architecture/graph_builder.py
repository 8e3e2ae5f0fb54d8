"""A small builder for hand-written architectures: :class:`GraphBuilder` (each method appends a node)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from .graph import Architecture
from .ops import INPUT

__all__ = ["GraphBuilder"]


def _unary(op: str) -> Callable[..., str]:
    """A :class:`GraphBuilder` method that appends an ``op`` node reading ``x``."""
    def method(self: GraphBuilder, x: str, **attrs: Any) -> str:
        return self.node(op, [x], **attrs)
    method.__name__ = op
    method.__doc__ = f"Append a {op} node reading ``x``."
    return method


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

    bn = _unary("bn")
    relu = _unary("relu")
    gap = _unary("gap")
    dropout = _unary("dropout")
    identity = _unary("identity")

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
