"""The dispatcher bridge: an ``nni.nas`` strategy run under ``nnictl``, split by job.

* :mod:`.bridge` -- :class:`StrategyBridge`, the tuner that ``nnictl`` starts (subclass it and override
  ``build``), and :class:`BridgeClassArgsValidator`;
* :mod:`.loop` -- its command loop: one handler per command of the NNI manager, and the records they keep;
* :mod:`.engine` -- NNI's training-service execution engine on the bridge's one connection;
* :mod:`.state` -- the state file (:class:`BridgeState`) and its lossless JSON codec;
* :mod:`.budget` -- what is left of the experiment's time and trials;
* :mod:`.nnictl` -- ``nnictl algo register``, so that configs can name a bridge ``tuner: {name: ...}``.

Import-light: ``python -m nni`` imports the bridge before it connects to the manager, which waits only 10 s;
nothing here imports torch or ``nni.nas`` at import time.
"""

from __future__ import annotations

from .bridge import BridgeClassArgsValidator, StrategyBridge
from .nnictl import register_with_nnictl, unregister_from_nnictl
from .state import STATE_FILE_NAME, BridgeState, StateFileError, decode_state, encode_state

__all__ = [
    "STATE_FILE_NAME",
    "StrategyBridge",
    "BridgeClassArgsValidator",
    "BridgeState",
    "StateFileError",
    "encode_state",
    "decode_state",
    "register_with_nnictl",
    "unregister_from_nnictl",
]
