"""Path-level EAS (Cai, Yang, Zhang, Han, Yu, ICML 2018): cells grown into trees by path-level transformations,
chosen by a tree-structured LSTM meta-controller trained by REINFORCE; and its random-decision baseline.

* :mod:`.config` -- :class:`PathEasConfig` (NNI ``classArgs``);
* :mod:`.decisions` -- the decisions on a cell tree, their masks, and the child they build;
* :mod:`.controller` -- :class:`TreeController`, the tree LSTM and its REINFORCE step;
* :mod:`.strategy` -- :class:`PathLevelEAS` and :class:`PathLevelRandom` (EAS' episode loop).

The transformations themselves are the core's (:mod:`nni_nas_ext.core.morphisms.path_level`), and so is the
tree view of a cell (:mod:`nni_nas_ext.core.cells`).
"""

from __future__ import annotations

from .config import PathEasConfig
from .controller import TreeController
from .decisions import Decision, LeafOptions, TreeTrajectory, apply_decisions, leaf_options
from .strategy import PathLevelEAS, PathLevelRandom, RandomTreePolicy, TreePolicy

__all__ = ["Decision", "LeafOptions", "PathEasConfig", "PathLevelEAS", "PathLevelRandom", "RandomTreePolicy",
           "TreeController", "TreePolicy", "TreeTrajectory", "apply_decisions", "leaf_options"]
