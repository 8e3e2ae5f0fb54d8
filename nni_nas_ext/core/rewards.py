"""N2N's reward: compression times relative accuracy (pure maths; the strategy learns from it, a trial reports it).

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning*, ICLR 2018 (arXiv 1709.06030), Sec. 3.3::

    C  = 1 - params(student) / params(teacher)       # the relative compression
    Rc = C * (2 - C)                                   # rises steeply at first, flat near C = 1
    Ra = acc(student) / acc(teacher)
    R  = Rc * Ra

It lives in the core because both sides of the process boundary use it: the N2N strategy
(:mod:`nni_nas_ext.strategies.n2n`) and the trial, which reports a compressed child's ``n2n_reward`` against its
parent (:mod:`nni_nas_ext.trial_code.trial`). The paper gives invalid students (layers whose shapes no longer
match) a fixed reward of -1; the strategy cannot sample them (its policies' masks), so :data:`INVALID_REWARD` is
only used for a student whose training failed ([dev]: the paper has no such case).
"""

from __future__ import annotations

import math
import numbers

__all__ = ["INVALID_REWARD", "accuracy_ratio", "compression", "compression_reward", "n2n_reward"]

#: The reward of a student that could not be trained (the paper's reward of an invalid student, recalled: -1).
INVALID_REWARD = -1.0


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, but got {value!r}")
    return int(value)


def _accuracy(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be an accuracy in [0, 1], but got {value!r}")
    return float(value)


def compression(student_params: int, teacher_params: int) -> float:
    """``C = 1 - student_params / teacher_params`` (negative for a student larger than its teacher)."""
    s = _positive_int("student_params", student_params)
    t = _positive_int("teacher_params", teacher_params)
    return 1.0 - s / t


def compression_reward(c: float) -> float:
    """``Rc = C (2 - C)``: 0 at C = 0, 1 at C = 1 (the paper's non-linear compression reward)."""
    return c * (2.0 - c)


def accuracy_ratio(student_acc: float, teacher_acc: float) -> float:
    """``Ra = acc_student / acc_teacher``; the teacher's accuracy must be > 0."""
    s = _accuracy("student_acc", student_acc)
    t = _accuracy("teacher_acc", teacher_acc)
    if t <= 0.0:
        raise ValueError("teacher_acc must be > 0 (the reward divides by it), but got 0.0: the teacher learnt "
                         "nothing; train it longer (epochs_teacher) or give a trained teacher")
    return s / t


def n2n_reward(student_params: int, teacher_params: int, student_acc: float, teacher_acc: float) -> float:
    """``R = Rc * Ra`` (module docstring)."""
    return compression_reward(compression(student_params, teacher_params)) * accuracy_ratio(student_acc,
                                                                                           teacher_acc)
