"""Deepen: insert an identity layer (Net2DeeperNet).

Chen, Goodfellow, Shlens, *Net2Net: Accelerating Learning via Knowledge Transfer*, ICLR 2016, sec. 2.3;
Cai et al., *Efficient Architecture Search by Network Transformation* (EAS), AAAI 2018, sec. 3.2.

After a node whose output ``x`` is non-negative (a ReLU, or pooling of one), insert

* for an image tensor: ``conv(k x k, C -> C, identity kernel K[c, c, k//2, k//2] = 1) -> BN -> ReLU``;
* for a feature vector: ``linear(F -> F, identity) -> ReLU`` (EAS deepens fully connected layers so).

ReLU is idempotent on non-negative inputs, so the inserted layers compute ``x`` exactly, provided that
the BatchNorm is an identity too. **The BatchNorm identity is set from data** (EAS code,
``set_bn_identity``): with per-channel mean ``m`` and biased variance ``v`` of ``x`` on a calibration
batch, ``running_mean = m``, ``running_var = v``, ``beta = m``, ``gamma = sqrt(v + eps)``. In eval mode
that is the identity for any ``m, v``; in train mode, where BatchNorm normalises with the batch's own
statistics, it is the identity on the calibration batch and close to it on any batch like it, and the
running statistics stay put. ``m`` and ``v`` are therefore measured as training sees ``x``: with the
network's BatchNorm layers on batch statistics (:func:`~nni_nas_ext.core.builder.activation_moments`).
NNI's ``NetworkMorphism`` tuner uses ``gamma = 1, beta = 0, mean = 0, var = 1`` instead, which in train mode
standardises ``x`` and so changes the function (shown in ``tests/test_morphisms.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, Node, Step
from ..builder import activation_moments, state_key
from ..errors import MorphismError
from .base import Morphism, Site, StateDict, WeightTransform, insert_after, rewire

__all__ = ["BN_EPS", "Deepen", "bn_identity", "nni_bn_rule"]

#: The epsilon of ``torch.nn.BatchNorm{1,2}d`` (what the builder uses).
BN_EPS = 1e-5


@dataclass(frozen=True)
class Deepen(Morphism):
    """Insert an identity ``conv-BN-ReLU`` (or ``linear-ReLU``) after a non-negative node.

    Parameters
    ----------
    kernels
        Kernel sizes to draw from for a convolution (EAS uses {1, 3, 5}).
    """

    kernels: tuple[int, ...] = (1, 3, 5)
    name = "deepen"

    def __post_init__(self) -> None:
        if not self.kernels or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"Deepen: kernels must be odd positive integers, but got {self.kernels!r}")

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": nid} for nid in arch.topological_order]

    def check(self, arch: Architecture, site: Site) -> str | None:
        nid = site["node"]
        if nid == arch.output:
            return "the output node keeps its place"
        if not arch.is_nonnegative(nid):
            return f"{nid} ({arch.node(nid).op}) is not provably non-negative (a ReLU or pooling of one)"
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        if len(arch.shape(site["node"])) == 1:
            return Step(self.name, dict(site), {})
        return Step(self.name, dict(site), {"kernel": int(rng.choice(self.kernels))})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        anchor = step.site["node"]
        shape = arch.shape(anchor)
        taken: list[str] = []

        def fresh(prefix: str) -> str:
            taken.append(arch.fresh_id(prefix, taken))
            return taken[-1]

        if len(shape) == 3:
            kernel = step.params.get("kernel")
            if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
                raise MorphismError(f"deepen: params.kernel must be an odd positive integer, but got {kernel!r}")
            layer = Node(fresh("conv"), "conv", (anchor,), {
                "out_channels": shape[0], "kernel": kernel, "stride": 1, "padding": kernel // 2,
                "groups": 1, "bias": False})
            bn = Node(fresh("bn"), "bn", (layer.id,), {})
            new_nodes = [layer, bn, Node(fresh("relu"), "relu", (bn.id,), {})]
        else:
            layer = Node(fresh("linear"), "linear", (anchor,), {"out_features": shape[0], "bias": True})
            bn = None
            new_nodes = [layer, Node(fresh("relu"), "relu", (layer.id,), {})]
        nodes = rewire(arch.nodes, anchor, new_nodes[-1].id, skip=frozenset(taken))
        child = arch.with_nodes(insert_after(nodes, anchor, new_nodes))

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            ref = next(iter(state.values()))
            channels = shape[0]
            if bn is None:
                new[state_key(layer.id, "weight")] = torch.eye(channels, dtype=ref.dtype)
                new[state_key(layer.id, "bias")] = torch.zeros(channels, dtype=ref.dtype)
                return new
            assert isinstance(kernel, int)  # checked above for a convolution, the only layer with a BatchNorm
            weight = torch.zeros(channels, channels, kernel, kernel, dtype=ref.dtype)
            weight[torch.arange(channels), torch.arange(channels), kernel // 2, kernel // 2] = 1.0
            new[state_key(layer.id, "weight")] = weight
            new.update(bn_identity(bn.id, *_moments(arch, state, calibration, anchor), dtype=ref.dtype))
            return new

        return child, WeightTransform(transform, needs_calibration=bn is not None, description=step.describe())


def _moments(arch: Architecture, state: StateDict, calibration: Tensor | None, node: str) -> tuple[Tensor, Tensor]:
    assert calibration is not None  # WeightTransform checks this before calling
    return activation_moments(arch, state, calibration, [node])[node]


def bn_identity(node_id: str, mean: Tensor, var: Tensor, *, dtype: torch.dtype = torch.float32,
                eps: float = BN_EPS) -> dict[str, Tensor]:
    """State of a BatchNorm that is the identity on inputs with per-channel ``mean`` and ``var``.

    ``running_mean = beta = mean``, ``running_var = var``, ``gamma = sqrt(var + eps)``: in eval mode
    ``gamma * (x - mean) / sqrt(var + eps) + beta = x`` exactly for any ``x``.
    """
    return {
        state_key(node_id, "weight"): torch.sqrt(var + eps).to(dtype),
        state_key(node_id, "bias"): mean.to(dtype),
        state_key(node_id, "running_mean"): mean.to(dtype),
        state_key(node_id, "running_var"): var.to(dtype),
        state_key(node_id, "num_batches_tracked"): torch.tensor(0, dtype=torch.long),
    }


def nni_bn_rule(node_id: str, channels: int, *, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """The BatchNorm state NNI's ``NetworkMorphism`` tuner gives an inserted layer (for comparison).

    ``gamma = 1, beta = 0, running_mean = 0, running_var = 1`` (NNI 3.0,
    ``nni/algorithms/hpo/networkmorphism_tuner/layer_transformer.py``, ``deeper_conv_block``).
    """
    return {
        state_key(node_id, "weight"): torch.ones(channels, dtype=dtype),
        state_key(node_id, "bias"): torch.zeros(channels, dtype=dtype),
        state_key(node_id, "running_mean"): torch.zeros(channels, dtype=dtype),
        state_key(node_id, "running_var"): torch.ones(channels, dtype=dtype),
        state_key(node_id, "num_batches_tracked"): torch.tensor(0, dtype=torch.long),
    }
