"""Thin adapters between nni-nas-ext and Microsoft NNI 3.0.

* :mod:`nni_nas_ext.nni.dispatcher` -- :class:`~nni_nas_ext.nni.dispatcher.StrategyBridge`, the tuner that
  ``nnictl`` starts, hosting an ``nni.nas`` strategy and NNI's training-service execution engine.
* :mod:`nni_nas_ext.nni.nni_patch` -- the explicit fix of NNI 3.0's first-in-first-out parameter bug.
* :mod:`nni_nas_ext.nni.space`, :mod:`~nni_nas_ext.nni.nas_strategy`, :mod:`~nni_nas_ext.nni.evaluator` --
  the model space, strategy and evaluator of the morphism search.

This package is imported by the NNI dispatcher before it connects to the NNI manager, which waits only
10 s for that connection: it must stay import-light, so nothing here imports torch or ``nni.nas``.
Import the submodules you need explicitly.
"""

from __future__ import annotations

import warnings

from nni_nas_ext.console import torch_alias_filters

# ``import nni.nas`` walks torch.nn and warns for every class there that is not a module; on the locked torch
# two are not (``Buffer``, a tensor type, and ``LinearCrossEntropyOptions``, a settings class), and NNI rightly
# re-exports them unwrapped: the warnings ("your PyTorch version might not be supported") are noise. Only these
# two messages are filtered; any other class NNI does not expect still warns.
for _action, _message, _category in torch_alias_filters():
    warnings.filterwarnings(_action, message=_message, category=_category)
