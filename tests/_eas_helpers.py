"""Shared pieces of the EAS tests (``tests/test_eas_*.py``): a fake trainer, a driver and fake controllers.

EAS is Cai et al. 2018, "Efficient Architecture Search by Network Transformation". The fake trainer's
validation accuracy is a function of the architecture (more parameters score higher) plus noise drawn
from a generator seeded by the candidate itself, so results do not depend on the order in which
candidates are told. :func:`drive` asks, trains (fake) and tells until a search finishes;
:class:`FakeController` (uniform choices, recording every call) and :class:`ScriptedController` (always
the same decisions) stand in for the real :class:`EasController`; :func:`eas` builds a small search on
:data:`SEED_ARCH`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import torch

from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.strategies import SearchStrategy
from nni_nas_ext.strategies.eas import DeeperAction, EasSearch, Trajectory, WiderAction

SEED_ARCH = nash_seed((1, 8, 8), 10, (4, 8, 8))
SMALL = {"wider_first": False, "episodes": 2, "children_per_episode": 3, "n_deeper": 2, "n_wider": 1, "epochs": 3,
         "epochs_start": 5, "epochs_final": 7, "max_width": 64, "seed": 0}
#: A tiny controller, to keep the real one fast.
TINY = {"controller_embedding_dim": 4, "controller_hidden_size": 8, "controller_vocab_size": 32}

Result = Optional[Mapping[str, Any]]


def fake_accuracy(c: Candidate, seed: int = 0) -> float:
    """Saturating in the parameter count, plus noise seeded by the candidate itself."""
    noise = np.random.default_rng([seed, int(c.architecture.id, 16), c.serial]).normal(0.0, 0.01)
    return float(1.0 - math.exp(-c.architecture.num_parameters() / 5000) + noise)


def fake_result(c: Candidate) -> dict[str, Any]:
    acc = fake_accuracy(c)
    out = {"default": acc, "candidate": c.id, "role": c.role, "epochs": c.epochs}
    if c.evaluate_test:
        out["test_acc"] = acc - 0.02
    return out


def drive(strategy: SearchStrategy, result: Callable[[Candidate], Any] = fake_result,
          max_rounds: int = 100, stop_after: int | None = None) -> list[Candidate]:
    """Ask, train (fake) and tell until finished (or ``stop_after`` tells); every candidate asked, in order."""
    asked_all: list[Candidate] = []
    told = 0
    for _ in range(max_rounds):
        if strategy.finished:
            return asked_all
        asked = strategy.ask()
        assert asked, "not finished, nothing pending, but ask() returned nothing"
        asked_all += asked
        for c in asked:
            if stop_after is not None and told >= stop_after:
                return asked_all
            r = result(c)
            if isinstance(r, str):
                assert strategy.tell(c.id, None, failure=r) is True
            else:
                assert strategy.tell(c.id, r) is True
            told += 1
    raise AssertionError(f"not finished after {max_rounds} rounds")


def trace(candidates: Sequence[Candidate]) -> list[tuple]:
    return [(c.id, c.parent, c.role, c.step, c.epochs, c.train_on) for c in candidates]


class FakeController:
    """The EasController interface: uniform choices from the given generator; records every call."""

    def __init__(self, kernels: Sequence[int] = (1, 3, 5)) -> None:
        self.kernels = tuple(kernels)
        self.calls: list[tuple[str, Any]] = []
        self.updates: list[tuple[list[Trajectory], list[float]]] = []

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction:
        self.calls.append(("wider", (tuple(tokens), tuple(mask))))
        coins = torch.rand(len(tokens), generator=generator).tolist()
        return WiderAction(tuple(bool(m and p < 0.5) for m, p in zip(mask, coins)))

    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]], generator: torch.Generator
               ) -> DeeperAction:
        self.calls.append(("deeper", (tuple(tokens), tuple(tuple(b) for b in blocks))))
        usable = [k for k, b in enumerate(blocks) if b]
        block = usable[int(torch.randint(len(usable), (1,), generator=generator))]
        layer = blocks[block][int(torch.randint(len(blocks[block]), (1,), generator=generator))]
        kernel = self.kernels[int(torch.randint(len(self.kernels), (1,), generator=generator))]
        return DeeperAction(block, layer, kernel)

    def update(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> dict[str, float]:
        self.updates.append((list(trajectories), list(rewards)))
        return {"updates": float(len(self.updates)), "mean_accuracy": float(np.mean(rewards))}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": [[[t.to_dict() for t in ts], rs] for ts, rs in self.updates]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = [([Trajectory.from_dict(t) for t in ts], list(rs)) for ts, rs in state["updates"]]


class ScriptedController(FakeController):
    """Always the same decisions: widen the first maskable layer; deepen after the first listed layer."""

    def __init__(self, *, widen: bool = True) -> None:
        super().__init__()
        self.widen = widen

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction:
        self.calls.append(("wider", (tuple(tokens), tuple(mask))))
        first = mask.index(True) if self.widen else -1
        return WiderAction(tuple(i == first for i in range(len(tokens))))

    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]], generator: torch.Generator
               ) -> DeeperAction:
        self.calls.append(("deeper", (tuple(tokens), tuple(tuple(b) for b in blocks))))
        block = next(k for k, b in enumerate(blocks) if b)
        return DeeperAction(block, blocks[block][0], 3)


def eas(controller: Any = None, **overrides: Any) -> EasSearch:
    return EasSearch(SEED_ARCH, {**SMALL, **overrides},
                     controller=FakeController() if controller is None else controller)
