"""Branch a layer into two parallel copies whose outputs are averaged.

Cai et al., *Path-Level Network Transformation for Efficient Architecture Search* (Path-level EAS),
ICML 2018, sec. 3.1 ("replication": ``x -> (f(x) + f(x)) / 2``); NASH's re-implementation calls it
"split-up". Exact: both copies hold the same weights. In ``"noise"`` mode the copy's weights get
``N(0, (noise * std(W))^2)`` noise so that the branches can drift apart in training (approximately
function-preserving); with exact copies they receive equal gradients and stay equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..architecture import Architecture, Node, Step
from ..builder import state_key
from .base import Morphism, Site, StateDict, WeightTransform, check_noise_mode, insert_after, rewire, symmetry_noise

__all__ = ["Branch"]


@dataclass(frozen=True)
class Branch(Morphism):
    """Replace a conv or hidden linear layer ``f`` by ``0.5 * f(x) + 0.5 * f'(x)`` with ``f' = f``.

    Parameters
    ----------
    mode
        ``"exact"`` or ``"noise"``.
    noise
        Noise scale relative to ``std(W)`` in ``"noise"`` mode.
    """

    mode: str = "exact"
    noise: float = 1e-2
    name = "branch"

    def __post_init__(self) -> None:
        check_noise_mode("Branch", self.mode, self.noise)

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes if n.op in ("conv", "linear")]

    def check(self, arch: Architecture, site: Site) -> str | None:
        node = arch.node(site["node"])
        if node.op not in ("conv", "linear"):
            return f"{node.id} is a {node.op}, not a conv or linear layer"
        if node.id == arch.output:
            return "the output layer keeps its place"
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        if self.mode == "noise" and self.noise > 0:
            return Step(self.name, dict(site), {"noise": float(self.noise), "seed": int(rng.integers(0, 2**31 - 1))})
        return Step(self.name, dict(site), {})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        nid = step.site["node"]
        node = arch.node(nid)
        copy_id = arch.fresh_id(node.op)
        merge_id = arch.fresh_id("add", [copy_id])
        copy = Node(copy_id, node.op, node.inputs, dict(node.attrs))
        merge = Node(merge_id, "add", (nid, copy_id), {"weights": (0.5, 0.5)})
        nodes = rewire(arch.nodes, nid, merge_id, skip=frozenset({copy_id, merge_id}))
        child = arch.with_nodes(insert_after(nodes, nid, [copy, merge]))
        noise, seed = float(step.params.get("noise", 0.0)), int(step.params.get("seed", 0))

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            for name in ("weight", "bias"):
                key = state_key(nid, name)
                if key in state:
                    new[state_key(copy_id, name)] = state[key].clone()
            if noise > 0:
                key = state_key(copy_id, "weight")
                new[key] = new[key] + symmetry_noise(new[key], new[key].shape, noise, seed)
            return new

        return child, WeightTransform(transform, description=step.describe())
