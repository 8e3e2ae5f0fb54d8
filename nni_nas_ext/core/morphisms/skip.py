"""Skip connections: additive and by concatenation.

Elsken, Metzen, Hutter, *Simple and efficient architecture search for CNNs* (NASH), arXiv 1711.04528,
sec. 4.1, network morphism types iii ("skip connections"); the additive form with a zero-initialised
projection follows NNI's ``NetworkMorphism`` tuner (``to_add_skip_model``), the concatenating one NNI's
``to_concat_skip_model`` with zero weights on the new input channels.

A site is a pair ``(source, target)``: ``source`` is an ancestor of ``target`` (or the network input)
with the same or a larger spatial size, an integer multiple of the target's; when larger, an average pool
with kernel and stride equal to the ratio brings it down.

* :class:`AddSkip`: ``target' = target + conv1x1(pool(source))`` with the 1x1 convolution zero: exact.
* :class:`ConcatSkip`: ``target' = concat(target, pool(source))``; every layer that reads ``target``
  gets zero weights on the new channels (followed through the graph like a widening): exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..architecture import INPUT, Architecture, Node, Step
from ..builder import state_key
from .base import Morphism, Site, StateDict, WeightTransform, insert_after, rewire
from .channels import NotApplicable, plan_channels

__all__ = ["AddSkip", "ConcatSkip"]

# Nodes that end a "layer" and so make sensible skip endpoints.
_ENDPOINTS = frozenset({"relu", "maxpool", "avgpool", "add", "concat"})


def _pool_ratio(arch: Architecture, source: str, target: str) -> int | None:
    (_, hs, ws), (_, ht, wt) = arch.shape(source), arch.shape(target)
    if hs % ht or ws % wt or hs // ht != ws // wt:
        return None
    return hs // ht


class _Skip(Morphism):
    site_keys = ("source", "target")

    def candidates(self, arch: Architecture) -> list[Site]:
        endpoints = [nid for nid in arch.topological_order
                     if arch.node(nid).op in _ENDPOINTS and len(arch.shape(nid)) == 3]
        out: list[Mapping[str, Any]] = []
        for target in endpoints:
            ancestors = arch.ancestors(target)
            direct = set(arch.node(target).inputs)
            for source in [INPUT, *endpoints]:
                if source in ancestors and source not in direct:
                    out.append({"source": source, "target": target})
        return out

    def check(self, arch: Architecture, site: Site) -> str | None:
        source, target = site["source"], site["target"]
        if target == INPUT or len(arch.shape(target)) != 3 or len(arch.shape(source)) != 3:
            return "source and target must be image tensors (C, H, W) and the target a node"
        if source not in arch.ancestors(target):
            return f"{source} is not an ancestor of {target}: the skip would not go forward"
        if _pool_ratio(arch, source, target) is None:
            return (f"the spatial size of {source} {arch.shape(source)[1:]} is not an equal integer multiple "
                    f"of {target}'s {arch.shape(target)[1:]}")
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        return Step(self.name, dict(site), {})

    @staticmethod
    def _pooled(arch: Architecture, source: str, target: str, fresh: list[str]) -> tuple[str, list[Node]]:
        ratio = _pool_ratio(arch, source, target)
        if ratio == 1:
            return source, []
        fresh.append(arch.fresh_id("avgpool", fresh))
        return fresh[-1], [Node(fresh[-1], "avgpool", (source,), {"kernel": ratio, "stride": ratio, "padding": 0})]


@dataclass(frozen=True)
class AddSkip(_Skip):
    """``target + conv1x1(pool(source))`` with a zero-initialised projection (exact)."""

    name = "add_skip"

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        source, target = step.site["source"], step.site["target"]
        fresh: list[str] = []
        src, pool = self._pooled(arch, source, target, fresh)
        fresh.append(arch.fresh_id("conv", fresh))
        proj = Node(fresh[-1], "conv", (src,), {"out_channels": arch.shape(target)[0], "kernel": 1, "stride": 1,
                                                 "padding": 0, "groups": 1, "bias": False})
        fresh.append(arch.fresh_id("add", fresh))
        merge = Node(fresh[-1], "add", (target, proj.id), {"weights": None})
        nodes = rewire(arch.nodes, target, merge.id, skip=frozenset(fresh))
        child = arch.with_nodes(insert_after(nodes, target, [*pool, proj, merge]))
        shape = (arch.shape(target)[0], arch.shape(source)[0], 1, 1)

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            new[state_key(proj.id, "weight")] = torch.zeros(shape, dtype=next(iter(state.values())).dtype)
            return new

        return child, WeightTransform(transform, description=step.describe())


@dataclass(frozen=True)
class ConcatSkip(_Skip):
    """``concat(target, pool(source))`` with zero weights on the new channels wherever they are read."""

    name = "concat_skip"

    def check(self, arch: Architecture, site: Site) -> str | None:
        reason = super().check(arch, site)
        if reason is not None:
            return reason
        try:
            self._plan(arch, site["source"], site["target"])
        except NotApplicable as exc:
            return str(exc)
        return None

    def sites(self, arch: Architecture) -> list[Site]:
        # The channel plan depends on the target alone: check it once per target.
        ok: dict[str, bool] = {}
        out = []
        for site in self.candidates(arch):
            if _Skip.check(self, arch, site) is not None:
                continue
            target = site["target"]
            if target not in ok:
                try:
                    self._plan(arch, site["source"], target)
                    ok[target] = True
                except NotApplicable:
                    ok[target] = False
            if ok[target]:
                out.append(site)
        return out

    @staticmethod
    def _plan(arch: Architecture, source: str, target: str):  # noqa: ANN205 - ChannelPlan
        width, extra = arch.shape(target)[0], arch.shape(source)[0]
        return plan_channels(arch, target, np.concatenate([np.arange(width), -np.ones(extra, dtype=np.int64)]),
                             gather_start=False)

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        source, target = step.site["source"], step.site["target"]
        plan = self._plan(arch, source, target)
        fresh: list[str] = []
        src, pool = self._pooled(arch, source, target, fresh)
        fresh.append(arch.fresh_id("concat", fresh))
        merge = Node(fresh[-1], "concat", (target, src), {})
        nodes = plan.resize(arch, rewire(arch.nodes, target, merge.id, skip=frozenset(fresh)))
        child = arch.with_nodes(insert_after(nodes, target, [*pool, merge]))

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            return plan.transform(state)

        return child, WeightTransform(transform, description=step.describe())
