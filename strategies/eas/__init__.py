"""EAS (Cai et al., AAAI 2018): reinforcement learning over Net2Net actions, and its random-search baseline.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873). The package, by job:

=================== ===========================================================================================
:mod:`.strategy`    :class:`EasSearch` and :class:`RandomNet2Net`: the episode loop as a pure ask/tell strategy
:mod:`.config`      :class:`EasConfig` (NNI ``classArgs``) and :class:`ControllerConfig`
:mod:`.encoding`    a network read as EAS' state: tokens, the Net2Wider mask, the Net2Deeper blocks
:mod:`.children`    a child of the start net: the actions applied as the core's morphisms
:mod:`.policies`    where actions come from: the meta-controller or uniform draws
:mod:`.controller`  :class:`EasController`, the meta-controller (sampling, REINFORCE step, state)
:mod:`.networks`    the controller's torch modules: BiLSTM encoder, Net2Wider head, Net2Deeper decoder
:mod:`.actions`     actions, actor calls (:class:`~.actions.Step`) and trajectories as JSON values
:mod:`.reinforce`   the reward transform and the REINFORCE loss
:mod:`.state`       the controller's tensors as plain JSON (no pickle)
=================== ===========================================================================================
"""

from __future__ import annotations

from .actions import Action, DeeperAction, Trajectory, WiderAction, action_from_dict
from .config import ControllerConfig, EasConfig
from .controller import EasController
from .encoding import LayerSequence, deeper_blocks, layer_sequence, tokens, wider_mask, widths_up_to
from .reinforce import MAX_ACCURACY, accuracy_reward
from .strategy import EasSearch, RandomNet2Net

__all__ = [
    "MAX_ACCURACY", "Action", "ControllerConfig", "DeeperAction", "EasConfig", "EasController", "EasSearch",
    "LayerSequence", "RandomNet2Net", "Trajectory", "WiderAction", "accuracy_reward", "action_from_dict",
    "deeper_blocks", "layer_sequence", "tokens", "wider_mask", "widths_up_to",
]
