"""The configuration of Path-level EAS (:class:`PathEasConfig`; NNI ``classArgs``).

Cai, Yang, Zhang, Han, Yu, *Path-Level Network Transformation for Efficient Architecture Search*, ICML 2018
(arXiv 1806.02639). Each key's doc gives the paper's value where ``ALGORITHMS.md`` records one; the budget
defaults are small, for CPU runs. The controller's keys (``controller_*``) keep EAS' values (the same authors'
REINFORCE set-up, :mod:`nni_nas_ext.strategies.eas.reinforce`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nni_nas_ext.core.config import Config, option
from nni_nas_ext.core.morphisms import PRIMITIVES

__all__ = ["PathEasConfig"]


@dataclass(frozen=True)
class PathEasConfig(Config):
    """Configuration of :class:`~.strategy.PathLevelEAS` and :class:`~.strategy.PathLevelRandom`."""

    config_name: ClassVar[str] = "path_eas"
    #: the seed network these searches need (``split_settings`` sets it, and refuses another)
    seed_network: ClassVar[str] = "cells"

    episodes: int = option(
        4, minimum=1, maximum=100_000,
        doc="episodes; each samples children_per_episode children of the best net so far")
    children_per_episode: int = option(
        4, minimum=1, maximum=10_000,
        doc="children sampled per episode, the REINFORCE batch (EAS: 10)")
    start: str = option(
        "best", choices=("best", "seed"),
        doc="the start net of every episode: 'best', the best net so far (paper); 'seed', always the trained seed "
            "(to measure the controller; the final phase still trains the best net found)")
    max_edits: int = option(
        2, minimum=1, maximum=64,
        doc="transformations per child at most: the controller's decisions are read leaf by leaf and stop at "
            "this many (a deviation: the paper decides at every node; on a CPU budget a child must stay small)")
    branches: tuple[int, ...] = option(
        (2, 3), minimum=2, maximum=8, non_empty=True, unique=True,
        doc="numbers of branches a node can be given (replication-add or split-concat)")
    primitives: tuple[str, ...] = option(
        ("conv1x1", "sepconv3x3", "sepconv5x5", "sepconv7x7", "gconv3x3"), choices=PRIMITIVES, non_empty=True,
        unique=True,
        doc="primitives of an inserted layer (paper: 1x1 conv, 3x3/5x5/7x7 separable or grouped conv, 3x3 max/avg "
            "pooling, identity); pooling is not function-preserving and is left out by default")
    replication: str = option(
        "exact", choices=("exact", "replicate"),
        doc="'exact': replication's copies get per-channel output scales that sum to n (exact, and the copies "
            "separate under training); 'replicate': the paper's plain copies (which stay copies)")
    epochs: int = option(
        2, minimum=0, maximum=100_000,
        doc="epochs of every child's training from its parent's weights")
    epochs_start: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the seed's training before the search")
    epochs_final: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the final training on train+val of the winner and of the seed")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the strategy's generators (replication scales, controller sampling, random decisions) and "
            "of the controller's initialisation")
    controller_embedding_dim: int = option(
        16, minimum=1, maximum=4096, doc="size of the node-token embedding (EAS: 16)")
    controller_hidden_size: int = option(
        50, minimum=1, maximum=4096, doc="units of the tree LSTM per direction (EAS: 50)")
    controller_lr: float = option(
        2e-3, minimum=0.0, maximum=1.0, doc="learning rate of the controller's Adam optimiser (EAS: 0.002)")
    controller_baseline_decay: float = option(
        0.95, minimum=0.0, maximum=1.0,
        doc="b <- b + baseline_decay * (mean(R) - b), the moving-average baseline (EAS code: 0.95)")
    controller_entropy_weight: float = option(
        1e-5, minimum=0.0, maximum=1.0, doc="weight of the entropy bonus in the controller's loss (EAS: 1e-5)")
