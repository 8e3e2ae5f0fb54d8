"""Widen a convolution or linear layer (Net2WiderNet).

Chen, Goodfellow, Shlens, *Net2Net*, ICLR 2016, sec. 2.2, eq. 5-6; Cai et al., *EAS*, AAAI 2018, sec. 3.1.

Layer ``i`` goes from ``n`` to ``q`` units with the random mapping ``g(j) = j`` for ``j < n`` and
``g(j)`` uniform in ``{0..n-1}`` for ``j >= n``. Incoming weights and bias are copied by ``g``; a
BatchNorm after the layer gathers gamma, beta, running mean and var by ``g``; the outgoing weights of the
next layer for unit ``j`` are divided by ``|{j' : g(j') = g(j)}|``. The change is followed through the
graph by :mod:`~nni_nas_ext.core.morphisms.channels` (depthwise convolutions, concatenations and residual
adds included).

Modes:

* ``"exact"`` (the default; **a deviation from Net2Net**, after the "random in, zero out" growth discussed by
  Evci et al., *GradMax*, ICLR 2022): the old units keep their weights, the new units get random incoming
  weights ``N(0, std(W)^2)`` (a seeded draw) and zero outgoing weights, so the function is preserved exactly
  and the new units differ from the old ones and from each other. Net2Net's copies instead receive the same
  gradients for ever: SGD cannot separate them, and the child gains MACs but no capacity.
* ``"replicate"``: Net2Net's function-preserving copies (the paper's operator, no noise).
* ``"noise"``: EAS' copies with ``N(0, (noise * std(W))^2)`` added to the incoming weights of the new units
  (function only approximately preserved).

A step records how it was made (``init: "fresh"`` for ``exact``; none for the copies), so a lineage replays
the same weights whichever mode the morphism was created with.

New widths follow EAS' width list (16, 32, 64, 96, 128, 192, 256, ...): the next value above the
current width; NNI's tuner doubles instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, Step
from ..builder import state_key
from ..errors import MorphismError
from .base import Morphism, Site, StateDict, WeightTransform, check_noise_mode, symmetry_noise
from .channels import ChannelPlan, NotApplicable, plan_channels

__all__ = ["WIDTHS", "Widen", "next_width"]

#: EAS' width list (Cai et al. 2018, appendix), extended below 16 and above 256.
WIDTHS = (4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def next_width(width: int, ladder: tuple[int, ...] = WIDTHS) -> int | None:
    """The first width of ``ladder`` above ``width`` (``None`` past its end)."""
    return next((w for w in ladder if w > width), None)


def _width(arch: Architecture, nid: str) -> int:
    return arch.shape(nid)[0]


@dataclass(frozen=True)
class Widen(Morphism):
    """Net2WiderNet on a full convolution (``groups=1``) or a hidden linear layer.

    Parameters
    ----------
    mode
        ``"exact"`` (random in, zero out), ``"replicate"`` (Net2Net's copies) or ``"noise"`` (copies with
        EAS' noise).
    noise
        Noise scale relative to ``std(W)`` in ``"noise"`` mode (EAS: 1e-2).
    widths
        The ladder of widths; a layer grows to the next one.
    """

    mode: str = "exact"
    noise: float = 1e-2
    widths: tuple[int, ...] = WIDTHS
    name = "widen"

    def __post_init__(self) -> None:
        check_noise_mode("Widen", self.mode, self.noise)
        if list(self.widths) != sorted(set(self.widths)) or not self.widths or self.widths[0] < 1:
            raise ValueError(f"Widen: widths must be increasing positive integers, but got {self.widths!r}")

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes
                if n.op == "linear" or n.op == "conv" and n["groups"] == 1]

    def check(self, arch: Architecture, site: Site) -> str | None:
        nid = site["node"]
        node = arch.node(nid)
        if not (node.op == "linear" or node.op == "conv" and node["groups"] == 1):
            return f"{nid} is a {node.op}{' with groups > 1' if node.op == 'conv' else ''}, not a full conv or linear"
        if next_width(_width(arch, nid), self.widths) is None:
            return f"{nid} is already {_width(arch, nid)} wide, the end of the width list {self.widths}"
        return _plan_reason(arch, nid)

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        nid = site["node"]
        n = _width(arch, nid)
        q = next_width(n, self.widths)
        assert q is not None
        params: dict = {"width": q, "replicate": [int(i) for i in rng.integers(0, n, q - n)]}
        if self.mode == "exact":
            params.update(init="fresh", seed=int(rng.integers(0, 2**31 - 1)))
        elif self.mode == "noise" and self.noise > 0:
            params.update(noise=float(self.noise), seed=int(rng.integers(0, 2**31 - 1)))
        return Step(self.name, dict(site), params)

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        nid = step.site["node"]
        n = _width(arch, nid)
        replicate, width = step.params.get("replicate"), step.params.get("width")
        if (not isinstance(width, int) or not isinstance(replicate, list) or len(replicate) != width - n
                or width <= n or not all(isinstance(i, int) and 0 <= i < n for i in replicate)):
            raise MorphismError(
                f"widen {nid}: params need width > {n} and 'replicate' = width - {n} indices in [0, {n}), "
                f"but got width={width!r}, replicate={str(replicate)[:80]}")
        init = step.params.get("init", "copy")
        if init not in ("copy", "fresh"):
            raise MorphismError(f"widen {nid}: params 'init' must be 'fresh' (random in, zero out) or absent "
                                f"(copies), but got {init!r}")
        mapping = np.concatenate([np.arange(n), np.asarray(replicate, dtype=np.int64)])
        plan = plan_channels(arch, nid, mapping, gather_start=True)
        if init == "fresh":
            plan = _fresh_plan(arch, nid, plan, n, width)
        child = arch.with_nodes(plan.resize(arch, list(arch.nodes)))
        noise, seed = float(step.params.get("noise", 0.0)), step.params.get("seed")

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = plan.transform(state)
            if init == "fresh":
                return _randomise_new_rows(arch, plan, state, new, int(seed or 0))
            if noise > 0:
                key = state_key(nid, "weight")
                w = new[key].clone()
                w[n:] += symmetry_noise(state[key], w[n:].shape, noise, int(seed or 0))
                new[key] = w
            return new

        return child, WeightTransform(transform, description=step.describe())


def _plan_reason(arch: Architecture, nid: str) -> str | None:
    try:
        plan_channels(arch, nid, np.arange(_width(arch, nid) + 1) % _width(arch, nid), gather_start=True)
    except NotApplicable as exc:
        return str(exc)
    return None


def _full_layer(arch: Architecture, nid: str) -> bool:
    node = arch.node(nid)
    return node.op == "linear" or node.op == "conv" and node["groups"] == 1


def _fresh_plan(arch: Architecture, nid: str, copies: ChannelPlan, n: int, width: int) -> ChannelPlan:
    """The plan of an ``exact`` widening: the new channels are ``-1`` (zero) where a full layer makes them
    (its rows, filled in by :func:`_randomise_new_rows`) and where a layer reads them (its columns: zero
    outgoing weights, old columns undivided); depthwise rows and BatchNorms follow the copies, so that the new
    channels carry a signal through them (a zero depthwise kernel would block their gradient)."""
    fresh = plan_channels(arch, nid, np.concatenate([np.arange(n), np.full(width - n, -1)]), gather_start=True)
    rows = {k: (fresh.rows[k] if _full_layer(arch, k) else m) for k, m in copies.rows.items()}
    return ChannelPlan(copies.start, copies.maps, rows, dict(fresh.cols), dict(copies.bns))


def _randomise_new_rows(arch: Architecture, plan: ChannelPlan, state: StateDict, new: dict[str, Tensor],
                        seed: int) -> dict[str, Tensor]:
    """Fill the new rows of every full layer the plan widens with ``N(0, std(W)^2)``, W its old weights
    (seeded: the same step gives the same weights); their biases stay zero."""
    for offset, (k, m) in enumerate(sorted(plan.rows.items())):
        if not _full_layer(arch, k) or not (m < 0).any():
            continue
        key = state_key(k, "weight")
        w = new[key].clone()
        rows = torch.as_tensor(np.flatnonzero(m < 0))
        w[rows] = symmetry_noise(state[key], w[rows].shape, 1.0, seed + offset)
        new[key] = w
    return new
