"""Remove a layer, a skip connection or a branch (approximate network morphisms that shrink a network).

Elsken, Metzen, Hutter, *Efficient Multi-objective Neural Architecture Search via Lamarckian Evolution*
(LEMONADE), ICLR 2019, arXiv 1804.09081: the approximate network morphisms "remove a layer" and "remove a skip
connection" make a network smaller; the function changes, and the child is trained by knowledge distillation
from its parent. Ashok, Rhinehart, Beainy, Kitani, *N2N Learning*, ICLR 2018, arXiv 1709.06030, stage 1
("layer removal") removes layers likewise.

* :class:`RemoveLayer` removes a ``conv-[BN]-ReLU`` block or a ``linear-[BN]-ReLU`` block whose output has the
  shape of its input; the block's consumers read its input instead. It is the inverse of
  :class:`~.deepen.Deepen`: deepening and then removing the inserted layer gives the parent back, weights
  included.
* :class:`RemoveSkip` drops one input of an ``add`` or ``concat`` merge (the inverse of
  :class:`~.skip.AddSkip`, :class:`~.skip.ConcatSkip` and :class:`~.branch.Branch`). Nodes that no longer lead
  to the output are pruned with their weights. A merge left with one input disappears and its consumers read
  that input. Dropping a concatenation's input removes its channels: the layers that read them lose the
  matching columns through a channel map (:mod:`.channels`) that is a sorted subset of the old channels, so
  the kept weights are exact slices of the parent's.

Neither draws anything: a step is its site. Deviations (ours): the paper removes "a layer"; we remove a whole
conv-BN-ReLU (linear-ReLU) block, and only where no shape changes (N2N gives shape-breaking students a fixed
negative reward instead); a removal that would not shrink the network (an identity skip, whose path holds no
parameters) or would make a node read one tensor twice is not offered. A dropped ``add`` input's weight goes
with it; when one input remains, its weight is dropped too (a replicated branch, averaged, is then exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from ..architecture import INPUT, Architecture, Node, Step
from ..builder import state_key
from ..errors import ArchitectureError
from .base import Morphism, Site, StateDict, WeightTransform, rewire
from .channels import ChannelPlan, NotApplicable, plan_channels

__all__ = ["RemoveLayer", "RemoveSkip", "drop_state", "prune_dead"]


class _Refusal(Exception):
    """A removal does not apply; the message says why."""


def prune_dead(nodes: Sequence[Node], output: str) -> tuple[list[Node], list[str]]:
    """``nodes`` without those that no longer lead to ``output``, and the ids of the removed ones (in order)."""
    by_id = {n.id: n for n in nodes}
    alive, stack = {output}, [output]
    while stack:
        for src in by_id[stack.pop()].inputs:
            if src != INPUT and src in by_id and src not in alive:
                alive.add(src)
                stack.append(src)
    return [n for n in nodes if n.id in alive], [n.id for n in nodes if n.id not in alive]


def drop_state(state: StateDict, removed: Iterable[str]) -> dict[str, Tensor]:
    """``state`` without the parameters and buffers of the ``removed`` nodes (a new dict; tensors shared)."""
    prefixes = tuple(state_key(nid, "") for nid in removed)
    return {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}


def _smaller(arch: Architecture, nodes: Sequence[Node], what: str) -> Architecture:
    """The child of these nodes; refused if invalid or not smaller than ``arch``."""
    try:
        child = arch.with_nodes(nodes)
    except ArchitectureError as exc:
        raise _Refusal(f"the child would be invalid: {exc}") from None
    if child.num_parameters() >= arch.num_parameters():
        raise _Refusal(f"{what} removes no parameters ({arch.num_parameters()} before and after): "
                       "the child would be no smaller")
    return child


@dataclass(frozen=True)
class RemoveLayer(Morphism):
    """Remove a ``conv-[BN]-ReLU`` or ``linear-[BN]-ReLU`` block whose output has its input's shape.

    The site is the block's conv or linear layer; its only consumer is the ReLU or a BatchNorm whose only
    consumer is the ReLU. The ReLU's consumers read the block's input instead, and the block's weights are
    dropped. The inverse of :class:`~.deepen.Deepen`.

    LEMONADE's approximate network morphism "remove a layer" (Elsken, Metzen, Hutter, ICLR 2019) and N2N's layer
    removal (Ashok et al., ICLR 2018). Deviations: a whole block goes, not a single layer, and only where no shape
    changes (N2N scores shape-breaking students with a fixed negative reward instead).
    """

    name = "remove_layer"
    exact = False

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes if n.op in ("conv", "linear")]

    def check(self, arch: Architecture, site: Site) -> str | None:
        try:
            self._build(arch, site["node"])
        except _Refusal as exc:
            return str(exc)
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        return Step(self.name, dict(site), {})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        child, removed = self._build(arch, step.site["node"])

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            return drop_state(state, removed)

        return child, WeightTransform(transform, description=step.describe())

    @staticmethod
    def _build(arch: Architecture, nid: str) -> tuple[Architecture, list[str]]:
        """The child without the block that ``nid`` starts, and the ids of the removed nodes."""
        node = arch.node(nid)
        if node.op not in ("conv", "linear"):
            raise _Refusal(f"{nid} is a {node.op}, not a conv or linear layer")
        if nid == arch.output:
            raise _Refusal(f"{nid} is the output layer: it gives the num_classes={arch.num_classes} logits")
        block = [nid]
        consumers = arch.consumers(nid)
        if len(consumers) == 1 and arch.node(consumers[0]).op == "bn":
            block.append(consumers[0])
            consumers = arch.consumers(consumers[0])
        if len(consumers) != 1 or arch.node(consumers[0]).op != "relu":
            raise _Refusal(f"{block[-1]} feeds {list(consumers)}, not a ReLU alone: {nid} does not start a "
                           "conv-BN-ReLU or linear-ReLU block")
        relu = consumers[0]
        block.append(relu)
        if relu == arch.output:
            raise _Refusal(f"the block ends in the output node {relu}, which keeps its place")
        source = node.inputs[0]
        if arch.shape(source) != arch.shape(relu):
            raise _Refusal(f"the block {nid}..{relu} maps {source}'s shape {arch.shape(source)} to "
                           f"{arch.shape(relu)}: its consumers could not read its input")
        twice = [c for c in arch.consumers(relu) if source in arch.node(c).inputs]
        if twice:
            raise _Refusal(f"{twice[0]} reads both {relu} and {source}: without the block it would read {source} "
                           "twice")
        nodes = rewire([n for n in arch.nodes if n.id not in block], relu, source)
        nodes, dead = prune_dead(nodes, arch.output)  # none in practice: the consumers now read the source
        return _smaller(arch, nodes, f"removing {nid}"), block + dead


@dataclass(frozen=True)
class RemoveSkip(Morphism):
    """Drop the input ``source`` of the ``add`` or ``concat`` node ``merge``; prune what no longer leads anywhere.

    Removes a skip connection or a branch: LEMONADE's approximate network morphism "remove a skip connection"
    (Elsken, Metzen, Hutter, ICLR 2019); the inverse of add_skip, concat_skip and branch. For a concatenation,
    the layers that read the dropped channels lose the matching columns (a sorted channel map through
    :func:`~.channels.plan_channels`). Deviations: branches (any input of a merge) go too, not only skips; an
    identity skip, whose removal saves no parameter, is not offered; a merge left with one input disappears
    and the weight of an ``add``'s remaining input goes with it.
    """

    name = "remove_skip"
    exact = False
    site_keys = ("merge", "source")

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"merge": nid, "source": src} for nid in arch.topological_order
                if arch.node(nid).op in ("add", "concat") for src in dict.fromkeys(arch.node(nid).inputs)]

    def check(self, arch: Architecture, site: Site) -> str | None:
        try:
            self._build(arch, site["merge"], site["source"])
        except _Refusal as exc:
            return str(exc)
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        return Step(self.name, dict(site), {})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        child, removed, plan = self._build(arch, step.site["merge"], step.site["source"])

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            return drop_state(plan.transform(state) if plan is not None else state, removed)

        return child, WeightTransform(transform, description=step.describe())

    @staticmethod
    def _build(arch: Architecture, merge: str, source: str) -> tuple[Architecture, list[str], ChannelPlan | None]:
        """The child, the ids of the removed nodes and, for a concatenation, the plan of the channels kept."""
        if merge not in arch or arch.node(merge).op not in ("add", "concat"):
            raise _Refusal(f"{merge} is not an add or concat node")
        node = arch.node(merge)
        inputs = list(node.inputs)
        if source not in inputs:
            raise _Refusal(f"{source} is not an input of {merge}, whose inputs are {inputs}")
        if inputs.count(source) > 1:
            raise _Refusal(f"{merge} reads {source} {inputs.count(source)} times: which one to drop is ambiguous")
        k = inputs.index(source)
        rest = inputs[:k] + inputs[k + 1:]
        plan: ChannelPlan | None = None
        if node.op == "concat":
            widths = [arch.shape(i)[0] for i in inputs]
            start, stop = sum(widths[:k]), sum(widths[:k + 1])
            kept = np.concatenate([np.arange(start), np.arange(stop, sum(widths))])
            try:
                plan = plan_channels(arch, merge, kept, gather_start=False)
            except NotApplicable as exc:
                raise _Refusal(str(exc)) from None
        if len(rest) == 1:
            survivor = rest[0]
            if merge == arch.output:
                raise _Refusal(f"{merge} is the output node: it keeps its place")
            twice = [c for c in arch.consumers(merge) if survivor in arch.node(c).inputs]
            if twice:
                raise _Refusal(f"{twice[0]} reads both {merge} and {survivor}: without {merge} it would read "
                               f"{survivor} twice")
            nodes = rewire([n for n in arch.nodes if n.id != merge], merge, survivor)
            removed = [merge]
        else:
            attrs: dict[str, Any] = {}
            if node.op == "add" and node["weights"] is not None:
                weights = [float(w) for w in node["weights"]]
                attrs["weights"] = tuple(weights[:k] + weights[k + 1:])
            nodes = [n.replace(inputs=rest, **attrs) if n.id == merge else n for n in arch.nodes]
            removed = []
        if plan is not None:
            nodes = plan.resize(arch, nodes)
        nodes, dead = prune_dead(nodes, arch.output)
        return _smaller(arch, nodes, f"dropping {source} from {merge}"), removed + dead, plan
