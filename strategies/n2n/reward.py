"""N2N's reward, ``R = C (2 - C) * acc_student / acc_teacher``: :mod:`nni_nas_ext.core.rewards` (the trial reports it
too, so it lives in the core); re-exported here for the strategy.

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning*, ICLR 2018 (arXiv 1709.06030), Sec. 3.3.
"""

from __future__ import annotations

from nni_nas_ext.core.rewards import INVALID_REWARD, accuracy_ratio, compression, compression_reward, n2n_reward

__all__ = ["INVALID_REWARD", "accuracy_ratio", "compression", "compression_reward", "n2n_reward"]
