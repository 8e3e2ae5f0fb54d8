"""Where EAS' actions come from: the meta-controller (learning by REINFORCE) or uniform draws (no learning).

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 3 (the controller) and Sec. 4.1 (the random-search baseline). A :class:`Policy`
answers the search's Net2Wider and Net2Deeper questions about a :class:`~.encoding.LayerSequence`, learns
from an episode's trajectories and rewards, and saves its state as plain JSON (the controller's generator
state as base64 of its bytes).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from .._bookkeeping import json_copy
from .actions import DeeperAction, Trajectory, WiderAction
from .encoding import LayerSequence

__all__ = ["ControllerLike", "ControllerPolicy", "Learner", "Policy", "RandomPolicy"]


class ControllerLike(Protocol):
    """What :class:`~.strategy.EasSearch` needs of a meta-controller (:class:`~.controller.EasController`)."""

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction: ...
    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]],
               generator: torch.Generator) -> DeeperAction: ...
    def update(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> Mapping[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Learner(Protocol):
    """What the episode loop needs of any policy: learn from an episode, save and restore its state."""

    def learn(self, trajectories: list[Any], rewards: list[float]) -> dict[str, Any] | None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Policy(Learner, Protocol):
    """Where :class:`~.strategy.EasSearch`'s actions come from, and what it learns from an episode."""

    def wider(self, seq: LayerSequence, rng: np.random.Generator) -> WiderAction: ...
    def deeper(self, seq: LayerSequence, rng: np.random.Generator) -> DeeperAction: ...


def _generator_state(generator: torch.Generator) -> str:
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def _set_generator_state(generator: torch.Generator, text: str) -> None:
    generator.set_state(torch.tensor(list(base64.b64decode(text, validate=True)), dtype=torch.uint8))


class ControllerPolicy:
    """Actions sampled by the meta-controller from its own ``torch.Generator``; REINFORCE after each episode."""

    def __init__(self, controller: ControllerLike, seed: int) -> None:
        self.controller = controller
        self.generator = torch.Generator().manual_seed(seed)

    def wider(self, seq: LayerSequence, rng: np.random.Generator) -> WiderAction:
        return self.controller.wider(seq.tokens, seq.wider_mask, self.generator)

    def deeper(self, seq: LayerSequence, rng: np.random.Generator) -> DeeperAction:
        return self.controller.deeper(seq.tokens, seq.blocks, self.generator)

    def learn(self, trajectories: list[Trajectory], rewards: list[float]) -> dict[str, Any] | None:
        return json_copy(dict(self.controller.update(trajectories, rewards)))

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "generator": _generator_state(self.generator)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        _set_generator_state(self.generator, state["generator"])


class RandomPolicy:
    """Uniform actions from the strategy's generator, no learning (the paper's random-search baseline).

    Net2Wider: every layer that can be widened is, with probability 1/2 (the authors' code draws a fair
    coin per position). Net2Deeper: a non-empty block, a layer in it and a kernel, each uniformly.
    """

    def __init__(self, kernels: Sequence[int]) -> None:
        self.kernels = tuple(kernels)

    def wider(self, seq: LayerSequence, rng: np.random.Generator) -> WiderAction:
        return WiderAction(tuple(bool(m and rng.random() < 0.5) for m in seq.wider_mask))

    def deeper(self, seq: LayerSequence, rng: np.random.Generator) -> DeeperAction:
        candidates = [k for k, block in enumerate(seq.blocks) if block]
        block = candidates[int(rng.integers(len(candidates)))]
        layer = seq.blocks[block][int(rng.integers(len(seq.blocks[block])))]
        return DeeperAction(block, layer, self.kernels[int(rng.integers(len(self.kernels)))])

    def learn(self, trajectories: list[Trajectory], rewards: list[float]) -> dict[str, Any] | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
