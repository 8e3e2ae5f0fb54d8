"""Branch a layer into two parallel layers on the same input whose outputs are merged.

Cai et al., *Path-Level Network Transformation for Efficient Architecture Search* (Path-level EAS),
ICML 2018, sec. 3.1 ("replication": ``x -> (f(x) + f(x)) / 2``); NASH's re-implementation calls it
"split-up". Modes:

* ``"replicate"``: the paper's replication, two copies averaged (exact). Copies receive equal gradients and
  stay equal for ever.
* ``"exact"`` (the default; **a deviation from the paper**): ``f(x) = (W - R) x + b`` and ``f'(x) = R x``
  with ``R ~ N(0, std(W)^2)`` (seeded), merged by a plain sum: exact, and the branches hold different
  weights from the start. (Two linear branches on one input still compute one linear map between them;
  the branches become distinct functions once later morphisms grow one of them.)
* ``"noise"``: copies with ``N(0, (noise * std(W))^2)`` added to the new one, averaged (approximately
  function-preserving).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, Node, Step
from ..builder import state_key
from ..errors import MorphismError
from .base import Morphism, Site, StateDict, WeightTransform, check_noise_mode, insert_after, rewire, symmetry_noise

__all__ = ["Branch"]


@dataclass(frozen=True)
class Branch(Morphism):
    """Replace a conv or hidden linear layer ``f`` by two parallel layers whose merged outputs equal ``f``.

    Parameters
    ----------
    mode
        ``"exact"`` (a random split of the weights, summed), ``"replicate"`` (two copies averaged) or
        ``"noise"`` (copies with noise, averaged).
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
        if self.mode == "exact":
            return Step(self.name, dict(site), {"init": "split", "seed": int(rng.integers(0, 2**31 - 1))})
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
        init = step.params.get("init", "copy")
        if init not in ("copy", "split"):
            raise MorphismError(f"branch {nid}: params 'init' must be 'split' or absent (copies), but got {init!r}")
        weights = (1.0, 1.0) if init == "split" else (0.5, 0.5)
        merge = Node(merge_id, "add", (nid, copy_id), {"weights": weights})
        nodes = rewire(arch.nodes, nid, merge_id, skip=frozenset({copy_id, merge_id}))
        child = arch.with_nodes(insert_after(nodes, nid, [copy, merge]))
        noise, seed = float(step.params.get("noise", 0.0)), int(step.params.get("seed", 0))

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            if init == "split":
                key = state_key(nid, "weight")
                part = symmetry_noise(state[key], state[key].shape, 1.0, seed)
                new[key] = state[key] - part
                new[state_key(copy_id, "weight")] = part
                if state_key(nid, "bias") in state:
                    new[state_key(copy_id, "bias")] = torch.zeros_like(state[state_key(nid, "bias")])
                return new
            for name in ("weight", "bias"):
                key = state_key(nid, name)
                if key in state:
                    new[state_key(copy_id, name)] = state[key].clone()
            if noise > 0:
                key = state_key(copy_id, "weight")
                new[key] = new[key] + symmetry_noise(new[key], new[key].shape, noise, seed)
            return new

        return child, WeightTransform(transform, description=step.describe())
