"""N2N learning (Ashok et al., ICLR 2018): compress a teacher by learnt layer removal and shrinkage; a random baseline.

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning: Network to Network Compression via Policy Gradient Reinforcement
Learning*, ICLR 2018 (arXiv 1709.06030). The package, by job:

=================== ===========================================================================================
:mod:`.strategy`    :class:`N2NSearch` and :class:`N2NRandom`: the episode loop as a pure ask/tell strategy
:mod:`.config`      :class:`N2NConfig` (NNI ``classArgs``) and :class:`PolicyConfig`
:mod:`.layers`      the teacher read as the policies' state (layer features, masks); actions as compressions
:mod:`.students`    one student: stage 1's removals, then stage 2's ratios
:mod:`.policy`      :class:`N2NPolicy` (BiLSTM removal, LSTM shrinkage, REINFORCE) and :class:`RandomActions`
:mod:`.trajectory`  a student's decisions as a JSON value
:mod:`.reward`      ``R = C (2 - C) * acc_s / acc_t``
=================== ===========================================================================================
"""

from __future__ import annotations

from .config import RATIOS, N2NConfig, PolicyConfig
from .layers import FEATURES, LayerTable, apply_removals, apply_shrinkage, layer_table, shrink_width
from .policy import N2NPolicy, RandomActions
from .reward import INVALID_REWARD, accuracy_ratio, compression, compression_reward, n2n_reward
from .strategy import N2NRandom, N2NSearch, imported_teacher_id
from .students import Student, draw_student
from .trajectory import Trajectory

__all__ = [
    "FEATURES", "INVALID_REWARD", "RATIOS", "LayerTable", "N2NConfig", "N2NPolicy", "N2NRandom", "N2NSearch",
    "PolicyConfig", "RandomActions", "Student", "Trajectory", "accuracy_ratio", "apply_removals", "apply_shrinkage",
    "compression", "compression_reward", "draw_student", "imported_teacher_id", "layer_table", "n2n_reward",
    "shrink_width",
]
