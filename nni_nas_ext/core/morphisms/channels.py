"""Channel maps: how a change in one node's output channels travels through the graph.

Widening (Net2WiderNet) and the concatenation skip both change the number of channels that one node
hands on. The change is described by a *channel map* ``M`` over the new channels: ``M[j] = i >= 0`` says
that new channel ``j`` carries a copy of old channel ``i``; ``M[j] = -1`` that it is a new channel that
no later layer may read (its consumers get zero weights for it).

:func:`plan_channels` follows a map forward from its start node:

* channel-wise nodes (BatchNorm, ReLU, pooling, dropout, global pooling, depthwise convolution) pass it
  on, and their per-channel parameters are gathered by it;
* a concatenation shifts it by the offsets of its inputs;
* a full convolution or linear layer *consumes* it: its input weights are gathered and divided by the
  number of copies of each old channel (Chen et al., *Net2Net*, ICLR 2016, eq. 5-6), zero for ``-1``;
* an add needs the same map on every input. An input that has none is *absorbed* when it is a chain of
  single-consumer channel-wise nodes ending in a convolution or linear layer: that layer's output rows
  are gathered by the map too (an exact extension of Net2Net to residual merges, our addition).

A map that reaches the output node, a grouped (non-depthwise) convolution, or an add it cannot reconcile
makes the morphism inapplicable there (:class:`NotApplicable` says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import Tensor

from ..architecture import INPUT, Architecture, Node
from ..builder import state_key
from .base import StateDict

__all__ = ["ChannelPlan", "NotApplicable", "plan_channels"]

_CHANNELWISE = frozenset({"bn", "relu", "maxpool", "avgpool", "dropout", "identity", "gap"})


class NotApplicable(Exception):
    """The channel change cannot be propagated exactly; the message says where and why."""


@dataclass
class ChannelPlan:
    """The result of :func:`plan_channels`: which nodes change and how."""

    start: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)  # output rows gathered (conv/linear)
    cols: dict[str, np.ndarray] = field(default_factory=dict)  # input columns gathered and divided
    bns: dict[str, np.ndarray] = field(default_factory=dict)   # BatchNorm parameters gathered

    def resize(self, arch: Architecture, nodes: list[Node]) -> list[Node]:
        """``nodes`` (those of ``arch``, possibly rewired) with the widths this plan changes."""
        out = []
        for node in nodes:
            m = self.rows.get(node.id)
            if m is None:
                out.append(node)
            elif node.op == "linear":
                out.append(node.replace(out_features=len(m)))
            elif node["groups"] == 1:
                out.append(node.replace(out_channels=len(m)))
            else:  # depthwise
                out.append(node.replace(out_channels=len(m), groups=len(m)))
        return out

    def transform(self, state: StateDict) -> dict[str, Tensor]:
        """Apply the plan to a state_dict (pure: returns a new dict)."""
        new = dict(state)
        for nid, m in self.rows.items():
            for name in ("weight", "bias"):
                key = state_key(nid, name)
                if key in new:
                    new[key] = _gather(new[key], m, dim=0, fill=0.0)
        for nid, m in self.cols.items():
            key = state_key(nid, "weight")
            w = new[key]
            counts = np.bincount(m[m >= 0], minlength=w.shape[1])
            scale = np.where(m >= 0, 1.0 / np.maximum(counts[np.maximum(m, 0)], 1), 0.0)
            shape = (1, -1) + (1,) * (w.dim() - 2)
            new[key] = _gather(w, m, dim=1, fill=0.0) * torch.as_tensor(scale, dtype=w.dtype).view(shape)
        for nid, m in self.bns.items():
            for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                key = state_key(nid, name)
                if key in new:
                    new[key] = _gather(new[key], m, dim=0, fill=fill)
        return new


def _gather(t: Tensor, m: np.ndarray, dim: int, fill: float) -> Tensor:
    index = torch.as_tensor(np.maximum(m, 0), dtype=torch.long)
    out = t.index_select(dim, index)
    if (m < 0).any():
        mask_shape = [1] * t.dim()
        mask_shape[dim] = len(m)
        mask = torch.as_tensor(m < 0).view(mask_shape)
        out = torch.where(mask, torch.full_like(out, fill), out)
    return out


def plan_channels(arch: Architecture, start: str, start_map: np.ndarray, *, gather_start: bool) -> ChannelPlan:
    """Follow ``start_map`` (the new channel map of ``start``'s output) through ``arch``.

    ``gather_start`` says whether ``start``'s own output rows are gathered (widening) or whether the
    new channels come from elsewhere (a concatenation inserted after ``start``).
    """
    plan = ChannelPlan(start, {start: np.asarray(start_map, dtype=np.int64)})
    if gather_start:
        plan.rows[start] = plan.maps[start]
    order = arch.topological_order
    # Only the consumers of a mapped node can change: visit those, in order, and stop once none is left (a
    # convolution that consumes the map ends it, so a widening usually visits a few nodes, not the network).
    reached = set(arch.consumers(start))
    for nid in order[order.index(start) + 1:]:
        if not reached:
            break
        if nid not in reached:
            continue
        reached.discard(nid)
        node = arch.node(nid)
        ins = [plan.maps.get(i) for i in node.inputs]
        first = cast(np.ndarray, ins[0])  # a node reached reads a mapped node: a one-input op's input is mapped
        op = node.op
        if op in _CHANNELWISE:
            plan.maps[nid] = first
            if op == "bn":
                plan.bns[nid] = first
        elif op == "conv" and node["groups"] == 1 or op == "linear":
            plan.cols[nid] = first
        elif op == "conv":
            if not node["groups"] == node["out_channels"] == arch.in_channels(nid):
                raise NotApplicable(f"{nid} is a grouped convolution (groups={node['groups']}): "
                                    "its groups would be split")
            plan.maps[nid] = plan.rows[nid] = first
        elif op == "concat":
            parts, offset = [], 0
            for src, m in zip(node.inputs, ins):
                width = arch.shape(src)[0]
                base = m if m is not None else np.arange(width)
                parts.append(np.where(base >= 0, base + offset, -1))
                offset += width
            plan.maps[nid] = np.concatenate(parts)
        elif op == "add":
            target = next(m for m in ins if m is not None)
            for src, m in zip(node.inputs, ins):
                if m is None:
                    _absorb(arch, plan, src, target, nid)
                elif not np.array_equal(m, target):
                    raise NotApplicable(f"the inputs of {nid} would carry different channel maps")
            plan.maps[nid] = target
        else:  # pragma: no cover - every op is handled above
            raise NotApplicable(f"{nid}: unhandled op {op}")
        if nid in plan.maps:
            reached.update(arch.consumers(nid))
    if arch.output in plan.maps:
        raise NotApplicable(f"the change would reach the output node {arch.output} "
                            f"(it must keep num_classes={arch.num_classes} outputs)")
    return plan


def _absorb(arch: Architecture, plan: ChannelPlan, nid: str, m: np.ndarray, consumer: str) -> None:
    """Give ``nid`` (an input of add ``consumer`` with no map yet) the map ``m`` by gathering rows."""
    if nid == INPUT:
        raise NotApplicable(f"{consumer} adds the network input, whose channels are fixed")
    if set(arch.consumers(nid)) != {consumer}:
        raise NotApplicable(f"{nid} feeds {consumer} and also {sorted(set(arch.consumers(nid)) - {consumer})}")
    if nid in plan.maps:
        if not np.array_equal(plan.maps[nid], m):
            raise NotApplicable(f"{nid} would need two channel maps")
        return
    node = arch.node(nid)
    plan.maps[nid] = m
    if node.op in _CHANNELWISE - {"gap"}:
        if node.op == "bn":
            plan.bns[nid] = m
        _absorb(arch, plan, node.inputs[0], m, nid)
    elif node.op == "linear" or node.op == "conv" and node["groups"] == 1:
        plan.rows[nid] = m
    elif node.op == "conv" and node["groups"] == node["out_channels"] == arch.in_channels(nid):
        plan.rows[nid] = m
        _absorb(arch, plan, node.inputs[0], m, nid)
    else:
        raise NotApplicable(f"{consumer} adds {nid} ({node.op}), whose channels cannot be remapped")
