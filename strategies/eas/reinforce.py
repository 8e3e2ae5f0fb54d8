"""REINFORCE for the EAS meta-controller: the reward transform, the moving-average baseline, the loss.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 3-4; the exact form is the authors' ``arch_manager.py::ArchManager.reward`` and
``rl_controller.py::ReinforceNet2NetController`` (github.com/han-cai/EAS). For one episode of ``N`` children::

    R_i = tan(acc_i * pi / 2)
    b <- b + baseline_decay * (mean_i R_i - b)   # baseline_decay = 0.95; updated BEFORE the advantages
    A_i = R_i - b
    loss = -(1/N) sum_i A_i sum_{decisions t of child i} log pi(a_t)  -  entropy_weight * H

where ``H`` is the mean over the episode's actor calls of each call's mean per-decision entropy (the code's
``entropy_term``). The code minimises ``-obj - entropy_penalty * entropy``, so entropy is a *bonus*.

**[dev]** Accuracies are clipped to ``[0, MAX_ACCURACY]`` (0.999, ``R <= tan(0.4995 pi) ~ 636.6``) before the
tangent, which is infinite at 1 (the code does not clip).

Pure tensor maths: :func:`reinforce_loss` takes the log-probabilities and entropies the controller computed
and returns the loss to differentiate; the optimiser step is the controller's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["MAX_ACCURACY", "Reinforce", "accuracy_reward", "optimiser_step", "reinforce_loss"]

#: Accuracies are clipped to at most this before ``tan(acc * pi / 2)`` (infinite at 1). [dev]: not in the paper.
MAX_ACCURACY = 0.999


def accuracy_reward(accuracy: float) -> float:
    """``tan(min(accuracy, MAX_ACCURACY) * pi / 2)``: the paper's reward transform (Sec. 4), clipped ([dev]).

    Raises
    ------
    ValueError
        If ``accuracy`` is not a finite number in ``[0, 1]``.
    """
    if isinstance(accuracy, bool) or not isinstance(accuracy, numbers.Real) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"an accuracy must be a number in [0, 1], but got {accuracy!r}")
    return math.tan(min(float(accuracy), MAX_ACCURACY) * math.pi / 2)


class Reinforce(NamedTuple):
    """One episode's REINFORCE terms (see the module docstring)."""

    loss: torch.Tensor  # to minimise; carries the gradients of ``logp`` and ``entropy``
    baseline: float  # b after this episode
    mean_reward: float  # mean transformed reward
    advantages: torch.Tensor  # A_i per child, float64
    bonus: torch.Tensor  # H, the entropy bonus term


def reinforce_loss(logp: torch.Tensor, entropy: torch.Tensor, count: torch.Tensor, owner: torch.Tensor,
                   rewards: Sequence[float], baseline: float, baseline_decay: float,
                   entropy_weight: float) -> Reinforce:
    """The REINFORCE loss of one episode (formulas in the module docstring).

    Parameters
    ----------
    logp, entropy, count
        Per actor call ``(S,)``: the log-probability and entropy of its action, and its number of decisions.
    owner
        Per actor call ``(S,)``: the index of the child it built.
    rewards
        Per child, its transformed reward ``R_i`` (:func:`accuracy_reward`).
    baseline
        The baseline ``b`` before this episode.
    baseline_decay, entropy_weight
        As in :class:`~.config.ControllerConfig`.
    """
    mean_reward = sum(rewards) / len(rewards)
    new_baseline = baseline + baseline_decay * (mean_reward - baseline)
    advantages = torch.tensor(list(rewards), dtype=torch.float64) - new_baseline
    adv = advantages.to(logp.dtype)
    policy = -(adv[owner] * logp).sum() / len(rewards)
    per_decision = torch.where(count > 0, entropy / count.clamp(min=1.0), 0.0)
    bonus = per_decision.mean() if len(logp) else torch.zeros(())
    loss = policy - entropy_weight * bonus
    return Reinforce(loss, float(new_baseline), float(mean_reward), advantages, bonus)


def optimiser_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One step of ``optimizer`` on ``loss``; a loss without gradients (an episode with no decision) changes nothing.

    Shared by the REINFORCE learners (EAS' and Path-level EAS' controllers, N2N's policy).
    """
    optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:
        loss.backward()
    optimizer.step()
