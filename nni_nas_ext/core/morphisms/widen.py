"""Widen a convolution or linear layer (Net2WiderNet).

Chen, Goodfellow, Shlens, *Net2Net*, ICLR 2016, sec. 2.2, eq. 5-6; Cai et al., *EAS*, AAAI 2018, sec. 3.1.

Layer ``i`` goes from ``n`` to ``q`` units with the random mapping ``g(j) = j`` for ``j < n`` and
``g(j)`` uniform in ``{0..n-1}`` for ``j >= n``. Incoming weights and bias are copied by ``g``; a
BatchNorm after the layer gathers gamma, beta, running mean and var by ``g``; the outgoing weights of the
next layer for unit ``j`` are divided by ``|{j' : g(j') = g(j)}|``. The change is followed through the
graph by :mod:`~nni_nas_ext.core.morphisms.channels` (depthwise convolutions, concatenations and residual
adds included).

Modes: ``"exact"`` (function-preserving up to float rounding) and ``"noise"``: EAS adds
``N(0, (noise * std(W))^2)`` to the incoming weights of the new units only, to break the symmetry
between copies (the function is then only approximately preserved).

New widths follow EAS' width list (16, 32, 64, 96, 128, 192, 256, ...): the next value above the
current width; NNI's tuner doubles instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..architecture import Architecture, Step
from ..builder import state_key
from ..errors import MorphismError
from .base import Morphism, Site, StateDict, WeightTransform, check_noise_mode, symmetry_noise
from .channels import NotApplicable, plan_channels

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
        ``"exact"`` or ``"noise"`` (symmetry breaking as EAS).
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
        params = {"width": q, "replicate": [int(i) for i in rng.integers(0, n, q - n)]}
        if self.mode == "noise" and self.noise > 0:
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
        mapping = np.concatenate([np.arange(n), np.asarray(replicate, dtype=np.int64)])
        plan = plan_channels(arch, nid, mapping, gather_start=True)
        child = arch.with_nodes(plan.resize(arch, list(arch.nodes)))
        noise, seed = float(step.params.get("noise", 0.0)), step.params.get("seed")

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = plan.transform(state)
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
