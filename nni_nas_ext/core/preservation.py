"""Measure how well a child network preserves its parent's function."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .architecture import Architecture
from .builder import build_module
from .morphisms.base import StateDict

__all__ = ["PreservationError", "max_output_difference", "preservation_error"]


@dataclass(frozen=True)
class PreservationError:
    """Largest absolute output difference, the parent's output scale, and their ratio."""

    max_abs: float
    scale: float

    @property
    def relative(self) -> float:
        """``max_abs / scale`` (``max_abs`` itself when the parent's outputs are all zero)."""
        return self.max_abs / self.scale if self.scale > 0 else self.max_abs


@torch.no_grad()
def preservation_error(parent: Architecture, parent_state: StateDict, child: Architecture,
                       child_state: StateDict, batch: Tensor, *, train_mode: bool = False) -> PreservationError:
    """Run parent and child on ``batch`` and compare their outputs.

    In eval mode (the default) BatchNorm uses running statistics, where the morphisms are exact. With
    ``train_mode=True`` BatchNorm normalises with the batch's statistics (as in the first training step;
    dropout is disabled all the same), where preservation is only approximate. Neither state is changed.
    """
    outs = []
    for arch, state in ((parent, parent_state), (child, child_state)):
        module = build_module(arch, {k: v.clone() for k, v in state.items()}).eval()
        if train_mode:
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.train()
        outs.append(module(batch).double())
    return PreservationError(float((outs[0] - outs[1]).abs().max()), float(outs[0].abs().max()))


def max_output_difference(parent: Architecture, parent_state: StateDict, child: Architecture,
                          child_state: StateDict, batch: Tensor) -> float:
    """The largest absolute difference between parent's and child's outputs on ``batch`` (eval mode)."""
    return preservation_error(parent, parent_state, child, child_state, batch).max_abs
