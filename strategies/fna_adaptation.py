"""FNA's architecture adaptation, its pure parts: the settings, the architecture parameters' maths, the derivation.

Fang et al., *Fast Neural Network Adaptation via Parameter Remapping and Architecture Search*, ICLR 2020,
sec. 3.3 (and FNA++, 2020): the seed's parameters are remapped into a super-network
(:class:`nni_nas_ext.search_spaces.mbconv_supernet.MBConvSuperNet`) and its architecture parameters ``alpha``
(one vector per searchable layer, one entry per candidate op) are learned on the target task with

    loss = CE + lambda * log_tau(MAdds),     MAdds = fixed + sum_layers sum_ops p_op * madds_op,  p = softmax(alpha)

(:func:`expected_madds`, differentiated exactly through ``softmax(alpha)`` over all ops, as ProxylessNAS
differentiates its expected latency). After the search each layer takes its ``argmax alpha`` op
(:func:`derive_choice`).

The architecture gradient of the task loss goes through ProxylessNAS's binary gates (Cai, Zhu, Han,
*ProxylessNAS*, ICLR 2019, sec. 3.2, "two-path" sampling; :class:`BinaryGateMixer`): per layer two ops
``i, j`` are drawn from ``softmax(alpha)`` without replacement, one of them is made active with the
probabilities ``q = softmax(alpha[[i, j]])``; the layer computes ``g_i * o_i(x) + g_j * o_j(x)`` with the
one-hot gates ``g``, so its value is the active op's output and ``dL/dg_k = <dL/dout, o_k(x)>``; then

    dL/dalpha_i += sum_{k in {i, j}} dL/dg_k * q_k * (delta_ik - q_i)            (ProxylessNAS eq. 4)

(:func:`alpha_gradient`) and after the Adam step the two alphas are shifted by one common offset so that
``logsumexp`` over the pair is what it was (:func:`rescale_pair`, ProxylessNAS's rescaling: the unsampled
ops keep their relative probability).

The search loop itself (weight and architecture steps, the per-epoch validation, timing) trains a network and
is trial code: :func:`nni_nas_ext.trial_code.fna_adaptation.adapt`. Everything here is pure torch maths on
the architecture parameters: no training loop, no files, no clock, no ``nni``.

Deviations and choices (marked **[dev]**):

* **[dev]** The released FNA detection code (``fna_det``) mixes *all* ops weighted by ``softmax(alpha)``
  in its architecture step (DARTS-like); the adaptation uses ProxylessNAS's two-path binary gates, as the
  issue asks (one path in memory per layer plus one evaluated without a graph).
* Defaults (:class:`AdaptationConfig`) from FNA's detection search configs (``fna_retinanet_fpn_search.py``):
  lambda 0.02 with log base 10, weight SGD lr 0.02 momentum 0.9 weight decay 1e-4, architecture Adam lr
  3e-4 betas (0.5, 0.999) weight decay 1e-3, gradient clipping at norm 35, half of the training set for each
  kind of step, initial alphas ``1e-3 * N(0, 1)``, 8 of 14 epochs weight-only. Epoch counts here are small
  CPU defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Protocol, cast

import torch
from torch import Tensor, nn

from .config import Config, ConfigError, option

__all__ = [
    "AdaptationConfig", "AdaptationSpace", "BinaryGateMixer", "alpha_gradient", "derive_choice", "expected_madds",
    "rescale_pair",
]


class AdaptationSpace(Protocol):
    """What the adaptation needs of :class:`nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace` (its
    searchable layers, ops and MAdds, and the architecture a choice derives)."""

    def layer_slots(self) -> list[tuple[int, int]]: ...

    def ops(self, stage: int, layer: int) -> list[Any]: ...

    def op_madds(self, stage: int, layer: int) -> list[int]: ...

    def fixed_madds(self) -> int: ...

    def label(self, stage: int, layer: int) -> str: ...

    def derive(self, choice: Mapping[Any, int]) -> Any: ...


@dataclass(frozen=True)
class AdaptationConfig(Config):
    """Settings of :func:`~nni_nas_ext.trial_code.fna_adaptation.adapt` (NNI ``classArgs`` of the FNA pipeline share
    these keys).

    Defaults are the FNA paper's / authors' configuration where known (see the module docstring), except
    the epoch counts, which are small for CPU runs.
    """

    config_name: ClassVar[str] = "adaptation"

    epochs: int = option(4, minimum=1, maximum=100_000,
                         doc="epochs of architecture adaptation, each one pass over the weight split (FNA "
                             "detection: 14)")
    warmup_epochs: int = option(1, minimum=0, maximum=100_000,
                                doc="first epochs with weight steps only, paths sampled uniformly (FNA "
                                    "detection: 8 of 14)")
    cost_lambda: float = option(0.02, minimum=0.0, maximum=1e6,
                                doc="lambda in loss = CE + lambda * log_base(expected MAdds) (FNA detection: 0.02)")
    log_base: float = option(10.0, minimum=1.0001, maximum=1e6,
                             doc="base tau of the logarithm of the MAdds term (FNA: 10)")
    weight_lr: float = option(0.02, minimum=1e-6, maximum=10.0,
                              doc="SGD learning rate of the weight steps, annealed by a cosine to 0 (FNA: 0.02)")
    weight_momentum: float = option(0.9, minimum=0.0, maximum=0.999, doc="SGD momentum of the weight steps (FNA: 0.9)")
    search_weight_decay: float = option(1e-4, minimum=0.0, maximum=1.0,
                                        doc="weight decay of the weight steps, not on biases or BatchNorm (FNA "
                                            "detection: 1e-4)")
    arch_lr: float = option(3e-4, minimum=0.0, maximum=10.0,
                            doc="Adam learning rate of the architecture parameters (FNA: 3e-4)")
    arch_beta1: float = option(0.5, minimum=0.0, maximum=0.999, doc="Adam beta1 of the architecture steps (FNA: 0.5)")
    arch_beta2: float = option(0.999, minimum=0.0, maximum=0.99999,
                               doc="Adam beta2 of the architecture steps (FNA: 0.999)")
    arch_weight_decay: float = option(1e-3, minimum=0.0, maximum=1.0,
                                      doc="Adam weight decay of the architecture parameters (FNA: 1e-3)")
    arch_fraction: float = option(0.5, minimum=0.05, maximum=0.95,
                                  doc="share of the target training set used by the architecture steps; the rest "
                                      "trains the weights (FNA: 0.5)")
    batch_size: int = option(64, minimum=2, maximum=65536, doc="batch size of both kinds of steps")
    grad_clip: Optional[float] = option(35.0, minimum=1e-6,
                                        doc="gradient norm clipping of both kinds of steps; null: none (FNA: 35)")
    bn_batches: int = option(8, minimum=0, maximum=100_000,
                             doc="training batches that re-estimate BatchNorm statistics of the argmax path before "
                                 "each epoch's validation (0: none; not in FNA, as Once-for-All)")
    alpha_init_std: float = option(1e-3, minimum=0.0, maximum=10.0,
                                   doc="initial architecture parameters ~ N(0, std^2) (FNA: 1e-3)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1,
                       doc="seed of the splits, path sampling, initial alphas and dropout")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"adaptation: warmup_epochs < epochs must hold (at least one epoch updates the "
                              f"architecture), but got warmup_epochs={self.warmup_epochs}, epochs={self.epochs}; "
                              "lower warmup_epochs or raise epochs", key="warmup_epochs", value=self.warmup_epochs)


# --------------------------------------------------------------------------------------------------
# ProxylessNAS binary gates
# --------------------------------------------------------------------------------------------------


def alpha_gradient(alpha: Tensor, pair: Sequence[int], gate_grads: Tensor) -> Tensor:
    """ProxylessNAS eq. 4 over a sampled pair: the gradient of ``alpha`` given ``dL/dg`` of the pair's gates.

    ``grad[i] = sum_k gate_grads[k] * q_k * (delta_ik - q_i)`` for ``i, k`` in ``pair``, ``q = softmax(alpha[pair])``;
    zero elsewhere. This is the exact gradient of ``sum_k q_k * gate_grads[k]`` with ``gate_grads`` held fixed.
    """
    idx = torch.as_tensor(list(pair), dtype=torch.long)
    q = torch.softmax(alpha.detach()[idx], dim=0)
    g = gate_grads.detach().to(q.dtype)
    local = q * (g - (q * g).sum())  # sum_k g_k q_k (delta_ik - q_i) = q_i (g_i - sum_k q_k g_k)
    out = torch.zeros_like(alpha.detach())
    out[idx] = local
    return out


@torch.no_grad()
def rescale_pair(alpha: Tensor, pair: Sequence[int], before: Tensor) -> None:
    """Shift ``alpha[pair]`` by one offset so that their ``logsumexp`` equals ``before``'s (ProxylessNAS).

    ``before`` are the pair's values before the optimiser step; the other ops' probabilities relative to
    the pair are thus unchanged by a step that only the pair's gates informed.
    """
    idx = torch.as_tensor(list(pair), dtype=torch.long)
    offset = torch.logsumexp(alpha[idx], 0) - torch.logsumexp(before, 0)
    alpha[idx] -= offset


class BinaryGateMixer:
    """The super-network's ``mixer`` hook for architecture steps: ProxylessNAS two-path binary gates.

    :meth:`sample` draws, for every layer, two distinct ops from ``softmax(alpha)`` and makes one of them
    active with ``softmax(alpha[pair])``; :meth:`__call__` (the hook ``mixer(x, layer)``) returns
    ``g_a * o_a(x) + g_b * o_b(x)`` where ``o_b`` (the inactive op) is computed without a graph, so only the
    active path is trained through and both gates receive ``dL/dg = <dL/dout, o(x)>``.
    :meth:`accumulate` turns the gates' gradients into ``alpha.grad`` (:func:`alpha_gradient`).

    Layers are identified by object identity: ``layers[k]`` uses ``alphas[k]``.
    """

    def __init__(self, layers: Sequence[nn.Module], alphas: Sequence[Tensor]) -> None:
        if len(layers) != len(alphas):
            raise ValueError(f"one alpha vector per layer is needed, but got {len(layers)} layers and "
                             f"{len(alphas)} alpha vectors")
        self.index = {id(layer): k for k, layer in enumerate(layers)}
        self.alphas = list(alphas)
        self.pairs: list[tuple[int, ...]] = [() for _ in layers]
        self.active: list[int] = [0 for _ in layers]
        self.gates: list[Tensor | None] = [None for _ in layers]

    def sample(self, generator: torch.Generator) -> None:
        """Draw each layer's pair and active op (two-path sampling)."""
        for k, alpha in enumerate(self.alphas):
            probs = torch.softmax(alpha.detach().double(), 0)
            if len(probs) < 2:
                self.pairs[k], self.active[k] = (0,), 0
                self.gates[k] = None
                continue
            pair = torch.multinomial(probs, 2, replacement=False, generator=generator).tolist()
            q = torch.softmax(alpha.detach().double()[pair], 0)
            which = int(torch.multinomial(q, 1, generator=generator))
            self.pairs[k] = tuple(int(i) for i in pair)
            self.active[k] = self.pairs[k][which]
            gates = torch.zeros(2, dtype=alpha.dtype, device=alpha.device)
            gates[which] = 1.0
            self.gates[k] = gates.requires_grad_(True)

    def __call__(self, x: Tensor, layer: nn.Module) -> Tensor:
        k = self.index[id(layer)]
        ops = cast(nn.ModuleList, layer.ops)
        gates = self.gates[k]
        if gates is None:
            return ops[self.active[k]](x)
        out = None
        for slot, op_index in enumerate(self.pairs[k]):
            if op_index == self.active[k]:
                y = ops[op_index](x)
            else:
                with torch.no_grad():
                    y = ops[op_index](x.detach())
            term = gates[slot] * y
            out = term if out is None else out + term
        assert out is not None
        return out

    def accumulate(self) -> None:
        """Add the binary gates' gradients to ``alpha.grad`` (call after ``loss.backward()``)."""
        for k, alpha in enumerate(self.alphas):
            gates = self.gates[k]
            if gates is None or gates.grad is None:
                continue
            grad = alpha_gradient(alpha, self.pairs[k], gates.grad)
            alpha.grad = grad if alpha.grad is None else alpha.grad + grad


# --------------------------------------------------------------------------------------------------
# The cost term and the derivation
# --------------------------------------------------------------------------------------------------


def expected_madds(alphas: Sequence[Tensor], madds: Sequence[Tensor], fixed: float) -> Tensor:
    """``fixed + sum_layers sum_ops softmax(alpha)_op * madds_op``, differentiable in the alphas."""
    total = torch.as_tensor(float(fixed), dtype=torch.float64)
    for alpha, table in zip(alphas, madds):
        total = total + (torch.softmax(alpha.double(), 0) * table).sum()
    return total


def derive_choice(space: AdaptationSpace, alphas: Sequence[Tensor]) -> dict[str, int]:
    """``{label: argmax alpha}`` per searchable layer (ties: the first op)."""
    return {space.label(s, l): int(torch.argmax(a.detach())) for (s, l), a in zip(space.layer_slots(), alphas)}
