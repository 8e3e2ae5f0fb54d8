"""The teacher read as N2N's state, and a student built from the two stages' actions by compression morphisms.

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning: Network to Network Compression via Policy Gradient
Reinforcement Learning*, ICLR 2018 (arXiv 1709.06030), Sec. 3: the state is the sequence of the network's
layers, each described by its type, kernel size, stride, padding and number of outputs. Here:

* **layers**: the ``conv``, ``linear`` and pooling nodes (max, average, global average) in topological order;
  BatchNorm, ReLU and dropout belong to the layer before them (as EAS' tokens, :mod:`..eas.encoding`);
* **features** (:data:`FEATURES`): one-hot type (conv, linear, pool), kernel / 7, stride / 4, padding / 3,
  log2(outputs) / 10, and whether the layer is removable / shrinkable where it stands. [dev] The paper's
  descriptor has no such flags; they tell the policy what its masks hide;
* **removal** (stage 1): a layer may go where :class:`~nni_nas_ext.core.morphisms.RemoveLayer` applies (a
  conv-BN-ReLU or linear-ReLU block that keeps its input's shape). The mask of layer ``i`` is computed on the
  network *with the removals decided before it*, so every combination of decisions is valid;
* **shrinkage** (stage 2): each remaining conv (groups 1) or hidden linear layer keeps ``ratio * width`` units
  (at least one), chosen by :class:`~nni_nas_ext.core.morphisms.Shrink` (the L1 criterion: the kept units' weights
  are exact slices of the teacher's). Layers that cannot shrink (the output layer, depthwise convs, single units)
  are masked: their ratio is 1. A layer a residual add ties to one shrunk before it already has its width.

The student is the teacher plus a lineage of compression steps (``remove_layer``, then ``shrink``), so a trial
replays it on the teacher's checkpoint and, the steps being compressions, distils from the teacher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from nni_nas_ext.core.architecture import Architecture, Lineage, Step
from nni_nas_ext.core.errors import MorphismError
from nni_nas_ext.core.morphisms import RemoveLayer, Shrink

__all__ = ["FEATURES", "LayerTable", "apply_removals", "apply_shrinkage", "layer_nodes", "layer_table", "removable",
           "shrink_width", "shrinkable"]

#: The names of a layer's features, in order.
FEATURES = ("conv", "linear", "pool", "kernel", "stride", "padding", "outputs", "removable", "shrinkable")

_POOLS = frozenset({"maxpool", "avgpool", "gap"})
_CRITERION = "l1"


def removable(arch: Architecture, node: str) -> bool:
    """Whether :class:`RemoveLayer` applies at ``node`` of ``arch``."""
    return RemoveLayer().check(arch, {"node": node}) is None


def shrinkable(arch: Architecture, node: str) -> bool:
    """Whether ``node`` can lose units: a full conv or hidden linear layer at least 2 wide that :class:`Shrink`
    can narrow by one unit (any width below its own is then possible)."""
    n = arch.node(node)
    if not (n.op == "linear" or n.op == "conv" and n["groups"] == 1) or node == arch.output:
        return False
    width = arch.shape(node)[0]
    if width < 2:
        return False
    try:
        Shrink().realize(arch, Step("shrink", {"node": node}, {"width": width - 1, "criterion": _CRITERION}))
    except MorphismError:
        return False
    return True


def shrink_width(width: int, ratio: float) -> int:
    """``max(1, round(ratio * width))``: the units a layer ``width`` wide keeps at ``ratio``."""
    return max(1, min(width, int(math.floor(ratio * width + 0.5))))


def _features(arch: Architecture, node: str) -> tuple[float, ...]:
    n = arch.node(node)
    kernel = n["kernel"] if n.op in ("conv", "maxpool", "avgpool") else 1
    stride = n["stride"] if n.op in ("conv", "maxpool", "avgpool") else 1
    padding = n["padding"] if n.op in ("conv", "maxpool", "avgpool") else 0
    outputs = arch.shape(node)[0]
    return (float(n.op == "conv"), float(n.op == "linear"), float(n.op in _POOLS), kernel / 7.0, stride / 4.0,
            padding / 3.0, math.log2(max(outputs, 1)) / 10.0, float(removable(arch, node)),
            float(shrinkable(arch, node)))


def layer_nodes(arch: Architecture) -> list[str]:
    """The layers of ``arch`` (conv, linear, pooling nodes) in topological order."""
    return [nid for nid in arch.topological_order if arch.node(nid).op in ("conv", "linear") or
            arch.node(nid).op in _POOLS]


@dataclass(frozen=True)
class LayerTable:
    """A network as the policies read it: the node, features and the static masks of each layer.

    ``removable[i]`` and ``shrinkable[i]`` hold in the network as it is (the removal mask of a sampled student is
    recomputed along its decisions, see :func:`apply_removals`).
    """

    nodes: tuple[str, ...]
    features: tuple[tuple[float, ...], ...]
    removable: tuple[bool, ...]
    shrinkable: tuple[bool, ...]
    widths: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.nodes)


def layer_table(arch: Architecture) -> LayerTable:
    """The layers of ``arch`` with their features and masks (see the module docstring)."""
    nodes = layer_nodes(arch)
    features = tuple(_features(arch, nid) for nid in nodes)
    return LayerTable(tuple(nodes), features, tuple(bool(f[7]) for f in features), tuple(bool(f[8]) for f in features),
                      tuple(arch.shape(nid)[0] for nid in nodes))


def apply_removals(teacher: Architecture, decide: Optional[Sequence[bool]] = None, *,
                   ask: Optional[Callable[[int], bool]] = None,
                   ) -> tuple[Architecture, list[Step], tuple[bool, ...], tuple[bool, ...]]:
    """Remove the layers chosen by ``decide`` (one bool per layer of :func:`layer_table`), in order.

    A layer's removal is only considered when it is removable in the network *after* the removals before it
    (its mask); a ``True`` for a masked layer is ignored. ``ask``, if given, is called as ``ask(i)`` for each
    unmasked layer instead of reading ``decide`` (the sampling policies decide as they go).

    Returns the reduced architecture (lineage: the removal steps from ``teacher``), the steps, the mask used at
    each layer, and the decisions taken (``False`` where masked).
    """
    nodes = layer_nodes(teacher)
    if decide is not None and len(decide) != len(nodes):
        raise ValueError(f"one removal decision per layer is needed: {len(nodes)} layers ({list(nodes)}), but got "
                         f"{len(decide)} decisions")
    arch = teacher
    steps: list[Step] = []
    mask: list[bool] = []
    taken: list[bool] = []
    for i, nid in enumerate(nodes):
        ok = nid in arch and removable(arch, nid)
        mask.append(ok)
        if not ok:
            taken.append(False)
            continue
        remove = bool(ask(i)) if ask is not None else bool(decide[i]) if decide is not None else False
        taken.append(remove)
        if remove:
            step = Step("remove_layer", {"node": nid}, {})
            arch, _ = RemoveLayer().realize(arch, step)
            steps.append(step)
    return arch.with_lineage(Lineage(teacher.id, tuple(steps))), steps, tuple(mask), tuple(taken)


def apply_shrinkage(teacher: Architecture, reduced: Architecture, removal_steps: Sequence[Step],
                    ratios: Sequence[float]) -> tuple[Architecture, list[Step]]:
    """Shrink each layer of ``reduced`` (one ratio per layer of :func:`layer_table` of ``reduced``) in order.

    Layer ``i`` goes to :func:`shrink_width` of its width in ``reduced``; it is left as it is when it is not
    shrinkable there or is already that narrow (a residual partner shrunk before it). Returns the student (its
    lineage: ``removal_steps`` and then the shrink steps, from ``teacher``) and the shrink steps.
    """
    table = layer_table(reduced)
    if len(ratios) != len(table):
        raise ValueError(f"one shrink ratio per remaining layer is needed: {len(table)} layers "
                         f"({list(table.nodes)}), but got {len(ratios)} ratios")
    arch = reduced
    steps: list[Step] = []
    for nid, width, ok, ratio in zip(table.nodes, table.widths, table.shrinkable, ratios):
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"a shrink ratio must be in (0, 1], but got {ratio!r} for layer {nid}")
        if not ok:
            continue
        target = shrink_width(width, ratio)
        if target >= arch.shape(nid)[0]:
            continue
        step = Step("shrink", {"node": nid}, {"width": int(target), "criterion": _CRITERION})
        arch, _ = Shrink().realize(arch, step)
        steps.append(step)
    return arch.with_lineage(Lineage(teacher.id, (*removal_steps, *steps))), steps
