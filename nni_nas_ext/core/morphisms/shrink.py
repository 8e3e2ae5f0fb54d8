"""Shrink a convolution or hidden linear layer to its most important units (an approximate network morphism).

Elsken, Metzen, Hutter, *Efficient Multi-objective Neural Architecture Search via Lamarckian Evolution*
(LEMONADE), ICLR 2019, arXiv 1804.09081: besides the network morphisms, LEMONADE's operators include
*approximate* network morphisms that make a network smaller ("prune filters / shrink a layer"); their
children are trained by knowledge distillation from the parent. Ashok, Rhinehart, Beainy, Kitani, *N2N
Learning*, ICLR 2018, arXiv 1709.06030, stage 2 ("layer shrinkage") shrinks each layer likewise.

Which units stay:

* ``"l1"``: the units with the largest L1 norm of their incoming weights (the sum of the absolute values of
  a filter's kernel, or of a linear unit's row; the bias is not counted), after Li, Kadav, Durdanovic, Samet,
  Graf, *Pruning Filters for Efficient ConvNets*, ICLR 2017, sec. 3.1;
* ``"bn_scale"``: the units whose following BatchNorm has the largest ``|gamma|``, after Liu et al., *Learning
  Efficient Convolutional Networks through Network Slimming*, ICCV 2017. A layer without a BatchNorm as its
  only consumer falls back to ``"l1"``; the step records the criterion actually used.

Ties go to the lowest unit index (a stable sort of the scores, computed in float64 on the CPU); NaN scores rank
last. The kept indices, in ascending order, form a channel map that is a sorted subset of the old units, so
:func:`~nni_nas_ext.core.morphisms.channels.plan_channels` makes it an exact slice: the layer's rows, the
BatchNorms and depthwise convolutions after it, the layers absorbed by a residual add (their rows) and every
consumer's columns (scale 1) are gathered. The child's weights are therefore exactly slices of the parent's.

Deviations, all ours:

* the score is the shrunk layer's own; the layers a residual add absorbs keep the same units without a say;
* the new width steps down the ladder of widths that :class:`~.widen.Widen` steps up (EAS' width list), by
  ``1 .. max_steps`` rungs drawn uniformly; N2N draws a scale factor per layer instead (recalled: 0.1 ... 1.0);
* the kept indices depend on the parent's weights, so they are chosen inside the weight transformation; the
  step records the width and the criterion only (the architecture depends on the width alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, Step
from ..builder import state_key
from ..errors import ArchitectureError, MorphismError
from .base import Morphism, Site, StateDict, WeightTransform
from .channels import NotApplicable, plan_channels
from .widen import WIDTHS

__all__ = ["CRITERIA", "Shrink", "following_bn", "previous_width", "top_units", "unit_scores"]

#: The criteria by which :class:`Shrink` ranks the units of a layer.
CRITERIA = ("l1", "bn_scale")


def previous_width(width: int, ladder: tuple[int, ...] = WIDTHS) -> int | None:
    """The last width of ``ladder`` below ``width`` (``None`` when none is)."""
    below = [w for w in ladder if w < width]
    return below[-1] if below else None


def following_bn(arch: Architecture, node_id: str) -> str | None:
    """The BatchNorm that is the only consumer of ``node_id``, if there is one."""
    consumers = arch.consumers(node_id)
    if len(consumers) == 1 and arch.node(consumers[0]).op == "bn":
        return consumers[0]
    return None


def unit_scores(arch: Architecture, state: StateDict, node_id: str, criterion: str) -> np.ndarray:
    """The importance of each output unit of ``node_id`` by ``criterion`` (float64; larger is kept first)."""
    if criterion == "bn_scale":
        bn = following_bn(arch, node_id)
        if bn is None:
            raise MorphismError(f"shrink {node_id}: criterion 'bn_scale' needs a BatchNorm as the only consumer of "
                                f"{node_id}, but it feeds {list(arch.consumers(node_id))}; use 'l1'")
        return state[state_key(bn, "weight")].detach().to("cpu", torch.float64).abs().numpy()
    if criterion != "l1":
        raise MorphismError(f"shrink {node_id}: criterion must be one of {', '.join(map(repr, CRITERIA))}, "
                            f"but got {criterion!r}")
    weight = state[state_key(node_id, "weight")].detach().to("cpu", torch.float64)
    return weight.abs().flatten(1).sum(dim=1).numpy()


def top_units(scores: np.ndarray, width: int) -> np.ndarray:
    """Indices of the ``width`` largest ``scores``, ascending; ties go to the lowest index, NaN ranks last."""
    scores = np.asarray(scores, dtype=np.float64)
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not 1 <= width <= len(scores):
        raise ValueError(f"width must be an integer in [1, {len(scores)}], but got {width!r}")
    order = np.argsort(-scores, kind="stable")  # NaN sorts last
    return np.sort(order[:width]).astype(np.int64)


def _width(arch: Architecture, node_id: str) -> int:
    return arch.shape(node_id)[0]


def _shrunk(arch: Architecture, node_id: str, width: int) -> Architecture:
    """The child with ``node_id`` ``width`` wide (the widths downstream follow the channel map)."""
    plan = plan_channels(arch, node_id, np.arange(width), gather_start=True)
    return arch.with_nodes(plan.resize(arch, list(arch.nodes)))


def _kind_reason(arch: Architecture, nid: str) -> str | None:
    node = arch.node(nid)
    if not (node.op == "linear" or node.op == "conv" and node["groups"] == 1):
        return f"{nid} is a {node.op}{' with groups > 1' if node.op == 'conv' else ''}, not a full conv or linear"
    return None


def _structure_reason(arch: Architecture, site: Site) -> str | None:
    """Why ``site`` cannot be shrunk whatever the width ladder (``None``: it can)."""
    nid = site["node"]
    reason = _kind_reason(arch, nid)
    if reason is not None:
        return reason
    if nid == arch.output:
        return f"{nid} is the output layer: it keeps num_classes={arch.num_classes} outputs"
    if _width(arch, nid) < 2:
        return f"{nid} has a single unit: nothing to remove"
    try:
        _shrunk(arch, nid, _width(arch, nid) - 1)
    except NotApplicable as exc:
        return str(exc)
    except ArchitectureError as exc:  # pragma: no cover - the channel plan keeps every shape consistent
        return f"the child would be invalid: {exc}"
    return None


@dataclass(frozen=True)
class Shrink(Morphism):
    """Shrink a full convolution (``groups=1``) or a hidden linear layer, keeping its most important units.

    LEMONADE's approximate network morphism "shrink a layer / prune filters" (Elsken, Metzen, Hutter, ICLR 2019)
    and N2N's layer shrinkage (Ashok et al., ICLR 2018), with the L1 criterion of Li et al. (ICLR 2017) or the
    BatchNorm scale of Liu et al. (ICCV 2017). Approximate: the function changes, and a child is trained by
    distillation from its parent. The child's weights are exact slices of the parent's; ties go to the lowest
    index. Deviations (module docstring): the new width steps down the width ladder rather than by N2N's scale
    factors; layers tied to this one by a residual add keep the same units without a say.

    Parameters
    ----------
    criterion
        ``"l1"`` (L1 norm of a unit's incoming weights) or ``"bn_scale"`` (``|gamma|`` of the BatchNorm that
        follows; ``"l1"`` where there is none).
    widths
        The ladder of widths (that of :class:`~.widen.Widen` by default); a layer goes down to a width of it.
    max_steps
        The new width is drawn uniformly among the (up to) ``max_steps`` ladder widths just below the current
        width; 1: the previous width.
    """

    criterion: str = "l1"
    widths: tuple[int, ...] = WIDTHS
    max_steps: int = 1
    name = "shrink"
    exact = False

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"Shrink: criterion must be one of {', '.join(map(repr, CRITERIA))}, "
                             f"but got {self.criterion!r}")
        if list(self.widths) != sorted(set(self.widths)) or not self.widths or self.widths[0] < 1:
            raise ValueError(f"Shrink: widths must be increasing positive integers, but got {self.widths!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"Shrink: max_steps must be an integer >= 1, but got {self.max_steps!r}")

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes if n.op == "linear" or n.op == "conv" and n["groups"] == 1]

    def check(self, arch: Architecture, site: Site) -> str | None:
        nid = site["node"]
        reason = _kind_reason(arch, nid)
        if reason is None and nid != arch.output and previous_width(_width(arch, nid), self.widths) is None:
            return f"{nid} is {_width(arch, nid)} wide, at or below the bottom of the width list {self.widths}"
        return reason or _structure_reason(arch, site)

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        nid = site["node"]
        below = [w for w in self.widths if w < _width(arch, nid)][-self.max_steps:]
        width = below[int(rng.integers(len(below)))] if len(below) > 1 else below[0]
        criterion = self.criterion if self.criterion == "l1" or following_bn(arch, nid) is not None else "l1"
        return Step(self.name, dict(site), {"width": int(width), "criterion": criterion})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        # Not self.check: the ladder is the proposing instance's configuration; the step records the width.
        self.require(arch, step.site, check=_structure_reason)
        nid = step.site["node"]
        n = _width(arch, nid)
        width, criterion = step.params.get("width"), step.params.get("criterion")
        if (isinstance(width, bool) or not isinstance(width, int) or not 1 <= width < n
                or criterion not in CRITERIA or set(step.params) != {"width", "criterion"}):
            raise MorphismError(
                f"shrink {nid}: params are an integer 'width' in [1, {n}) and a 'criterion' of "
                f"{', '.join(map(repr, CRITERIA))}, but got {dict(step.params)!r}")
        if criterion == "bn_scale" and following_bn(arch, nid) is None:
            raise MorphismError(f"shrink {nid}: criterion 'bn_scale' needs a BatchNorm as the only consumer of "
                                f"{nid}, but it feeds {list(arch.consumers(nid))}")
        child = _shrunk(arch, nid, width)

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            kept = top_units(unit_scores(arch, state, nid, criterion), width)
            try:  # the plan's structure does not depend on which units are kept (checked with arange above)
                plan = plan_channels(arch, nid, kept, gather_start=True)
            except NotApplicable as exc:  # pragma: no cover - a safeguard for that claim
                raise MorphismError(f"shrink {nid}: keeping units {kept.tolist()}: {exc}") from None
            return plan.transform(state)

        return child, WeightTransform(transform, description=step.describe())
