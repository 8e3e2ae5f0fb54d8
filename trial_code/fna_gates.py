"""FNA's architecture adaptation, its maths: ProxylessNAS binary gates, the cost term, the derivation.

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

The search loop itself (weight and architecture steps, the per-epoch validation, timing) is
:func:`nni_nas_ext.trial_code.fna_adaptation.adapt`, next to its settings
(:class:`~nni_nas_ext.trial_code.fna_adaptation.AdaptationConfig`). Everything here is torch maths on the
architecture parameters, used by that loop only: no training loop, no files, no clock, no ``nni``.

Deviations and choices (marked **[dev]**):

* **[dev]** The released FNA detection code (``fna_det``) mixes *all* ops weighted by ``softmax(alpha)``
  in its architecture step (DARTS-like); the adaptation uses ProxylessNAS's two-path binary gates, as the
  issue asks (one path in memory per layer plus one evaluated without a graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

__all__ = ["AdaptationSpace", "BinaryGateMixer", "alpha_gradient", "derive_choice", "expected_madds", "rescale_pair"]


class AdaptationSpace(Protocol):
    """What the adaptation needs of :class:`nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace` (its
    searchable layers, ops and MAdds, and the architecture a choice derives)."""

    def layer_slots(self) -> list[tuple[int, int]]: ...

    def ops(self, stage: int, layer: int) -> list[Any]: ...

    def op_madds(self, stage: int, layer: int) -> list[int]: ...

    def fixed_madds(self) -> int: ...

    def label(self, stage: int, layer: int) -> str: ...

    def derive(self, choice: Mapping[Any, int]) -> Any: ...


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
