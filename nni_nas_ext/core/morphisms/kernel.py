"""Widen a convolution's kernel by two.

Fang et al., *Fast Neural Network Adaptation via Parameter Remapping and Architecture Search* (FNA),
ICLR 2020, sec. 3.2 ("kernel-level remapping"): a ``k x k`` kernel is placed at the centre of a zero
``(k + 2) x (k + 2)`` kernel and the padding grows by one, so every output is the same sum as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from ..architecture import Architecture, Step
from ..builder import state_key
from .base import Morphism, Site, StateDict, WeightTransform

__all__ = ["WidenKernel"]


@dataclass(frozen=True)
class WidenKernel(Morphism):
    """``k -> k + 2`` with a zero border and ``padding + 1`` (exact).

    Parameters
    ----------
    max_kernel
        Largest kernel the morphism may produce.
    """

    max_kernel: int = 7
    name = "widen_kernel"

    def __post_init__(self) -> None:
        if not isinstance(self.max_kernel, int) or self.max_kernel < 3:
            raise ValueError(f"WidenKernel: max_kernel must be an integer >= 3, but got {self.max_kernel!r}")

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes if n.op == "conv"]

    def check(self, arch: Architecture, site: Site) -> str | None:
        node = arch.node(site["node"])
        if node.op != "conv":
            return f"{node.id} is a {node.op}, not a conv"
        if node["kernel"] + 2 > self.max_kernel:
            return f"{node.id}'s kernel {node['kernel']} + 2 would exceed max_kernel={self.max_kernel}"
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        return Step(self.name, dict(site), {})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        nid = step.site["node"]
        node = arch.node(nid)
        grown = node.replace(kernel=node["kernel"] + 2, padding=node["padding"] + 1)
        child = arch.with_nodes([grown if n.id == nid else n for n in arch.nodes])

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            key = state_key(nid, "weight")
            new[key] = F.pad(state[key], (1, 1, 1, 1))
            return new

        return child, WeightTransform(transform, description=step.describe())
