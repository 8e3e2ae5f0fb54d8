"""Path-level EAS as a pure ask/tell strategy, and its random-decision baseline.

Cai, Yang, Zhang, Han, Yu, *Path-Level Network Transformation for Efficient Architecture Search*, ICML 2018
(arXiv 1806.02639)::

    start <- train(seed net with plain cells)                    # epochs_start epochs
    repeat episodes times:
        for each of children_per_episode children of start:
            decisions <- controller(tree of start's cell)       # tree LSTM: insert? primitive; expand? scheme, n
            child <- start with the decisions applied to every cell (function-preserving)
        train every new child `epochs` epochs from start's weights
        controller.update(decisions, validation accuracies)      # REINFORCE
        start <- the best net so far
    final: the best net and the seed trained on train+val, tested once

The loop is EAS' (:class:`~nni_nas_ext.strategies.eas.strategy._EpisodeSearch`: the same episodes, cache,
start net, final phase and state); what differs is where a child comes from (:mod:`.decisions`, with the tree
controller of :mod:`.controller`). :class:`PathLevelRandom` draws every decision uniformly among the allowed
ones under the same ``max_edits`` rule and learns nothing: the baseline that shows what the controller is worth.

Deviations from the paper (each also marked where it is made): decisions stop after ``max_edits``
transformations per child; replication breaks symmetry exactly (``replication: exact``); pooling is not offered
by default (it cannot start as an identity); the backbone is a plain stack of cells (``cell_cnn``), not
DenseNet/PyramidNet; the final phase is NASH's (winner and seed on train+val).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union, cast

import numpy as np
import torch

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.cells import cell_names, cell_tree, render
from nni_nas_ext.core.config import Config
from nni_nas_ext.core.jobs import Candidate

from .._bookkeeping import json_copy
from ..eas.strategy import _EpisodeSearch
from .config import PathEasConfig
from .controller import TreeController
from .decisions import LeafOptions, TreeTrajectory, apply_decisions, draw_decisions, leaf_options

__all__ = ["PathLevelEAS", "PathLevelRandom", "RandomTreePolicy", "TreePolicy"]

logger = logging.getLogger(__name__)


class TreePolicy:
    """Decisions sampled by the tree controller from its own ``torch.Generator``; REINFORCE after each episode."""

    def __init__(self, controller: TreeController, seed: int) -> None:
        self.controller = controller
        self.generator = torch.Generator().manual_seed(seed)

    def decide(self, tree: Any, options: list[LeafOptions], rng: np.random.Generator) -> TreeTrajectory:
        return self.controller.decide(tree, options, self.generator)

    def learn(self, trajectories: list[Any], rewards: list[float]) -> dict[str, Any] | None:
        return cast(dict, json_copy(self.controller.update(trajectories, rewards)))

    def state_dict(self) -> dict[str, Any]:
        state = base64.b64encode(self.generator.get_state().numpy().tobytes()).decode("ascii")
        return {"controller": self.controller.state_dict(), "generator": state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        raw = base64.b64decode(str(state["generator"]), validate=True)
        self.generator.set_state(torch.tensor(list(raw), dtype=torch.uint8))


class RandomTreePolicy:
    """Each decision uniform among its allowed choices, read in the controller's order, the same ``max_edits``."""

    def __init__(self, max_edits: int) -> None:
        self.max_edits = max_edits

    def decide(self, tree: Any, options: list[LeafOptions], rng: np.random.Generator) -> TreeTrajectory:
        def uniform(position: int, kind: str, mask: tuple[bool, ...]) -> int:
            allowed = [i for i, m in enumerate(mask) if m]
            return allowed[int(rng.integers(len(allowed)))]

        return TreeTrajectory(tree, draw_decisions(options, self.max_edits, uniform))

    def learn(self, trajectories: list[Any], rewards: list[float]) -> dict[str, Any] | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def _first_cell(arch: Architecture) -> str:
    names = cell_names(arch)
    if not names:
        raise ValueError("Path-level EAS needs a seed network with cells (identity nodes <name>_in and <name>_out "
                         "around each cell), e.g. seed_network: cells (nni_nas_ext.search_spaces.cell_cnn); "
                         f"this one has none: {arch!r}")
    return names[0]


class _PathEpisodes(_EpisodeSearch):
    """EAS' episode loop with children drawn on the cell tree (see the module docstring)."""

    config_class: ClassVar[type[Config]] = PathEasConfig
    config: PathEasConfig  # type: ignore[assignment]

    def __init__(self, seed_architecture: Architecture, config: Union[PathEasConfig, Mapping[str, Any], None],
                 policy: Union[TreePolicy, RandomTreePolicy]) -> None:
        _first_cell(seed_architecture)
        super().__init__(seed_architecture, config, policy)  # type: ignore[arg-type]

    def _init_actions(self) -> None:
        pass

    def _draw_child(self, start: Architecture) -> tuple[Architecture, Any, list[str], list[str]]:
        tree = cell_tree(start, _first_cell(start)).signature()
        options = leaf_options(start, self.config)
        policy = cast(Union[TreePolicy, RandomTreePolicy], self._policy)
        trajectory = policy.decide(tree, options, self._rng)
        child, done = apply_decisions(start, trajectory.decisions, options, self.config, self._rng)
        notes = [] if done else ["every decision was 'none': the child is its parent (its result is reused)"]
        return child, trajectory, done, notes

    def _load_trajectory(self, data: Any) -> Any:
        return TreeTrajectory.from_dict(data)

    def _extra_figures(self, c: Candidate) -> dict[str, Any]:
        return {"cell": render(cell_tree(c.architecture, _first_cell(c.architecture)))}


class PathLevelEAS(_PathEpisodes):
    """Path-level EAS (Cai et al., ICML 2018): a tree-LSTM controller transforms cells, trained by REINFORCE.

    Parameters
    ----------
    seed_architecture
        A network with cells (:func:`nni_nas_ext.search_spaces.cell_cnn`); any lineage is dropped.
    config
        A :class:`PathEasConfig`, a mapping of its keys (NNI ``classArgs``), or ``None`` for the defaults.
    controller
        The meta-controller; default ``TreeController(config)``.
    """

    strategy_name: ClassVar[str] = "path_eas"

    def __init__(self, seed_architecture: Architecture,
                 config: Union[PathEasConfig, Mapping[str, Any], None] = None, *,
                 controller: Optional[TreeController] = None) -> None:
        checked = cast(PathEasConfig, self.coerce_config(config))
        self.controller = controller if controller is not None else TreeController(checked)
        super().__init__(seed_architecture, checked, TreePolicy(self.controller, checked.seed))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *,
                        controller: Optional[TreeController] = None) -> PathLevelEAS:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: PathLevelEAS = cls._from_state(state, controller=controller)
        return strategy


class PathLevelRandom(_PathEpisodes):
    """Path-level EAS' loop with uniform random decisions and no learning (what the controller is measured by)."""

    strategy_name: ClassVar[str] = "path_eas_random"

    def __init__(self, seed_architecture: Architecture,
                 config: Union[PathEasConfig, Mapping[str, Any], None] = None) -> None:
        checked = cast(PathEasConfig, self.coerce_config(config))
        super().__init__(seed_architecture, checked, RandomTreePolicy(checked.max_edits))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PathLevelRandom:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: PathLevelRandom = cls._from_state(state)
        return strategy
