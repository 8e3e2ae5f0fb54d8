"""Knowledge distillation from a parent network: the loss a child of an approximate morphism trains with.

LEMONADE (Elsken, Metzen, Hutter, *Efficient Multi-objective Neural Architecture Search via Lamarckian
Evolution*, ICLR 2019, arXiv 1804.09081, sec. 3) trains the children of *approximate* network morphisms
(remove a layer, shrink a width, remove a skip: the child no longer computes its parent's function) by
knowledge distillation with the parent as the teacher, so that the child recovers what the parent knew
(function-preserving children need no teacher: they start as their parent). The loss is Hinton, Vinyals and
Dean's (*Distilling the Knowledge in a Neural Network*, arXiv 1503.02531, sec. 2), a weighted average of the
cross-entropy with the labels and the cross-entropy with the teacher's soft targets at temperature ``T``,
the soft part multiplied by ``T**2`` "since the magnitudes of the gradients produced by the soft targets
scale as 1/T^2" (sec. 2). We write the soft part as a Kullback-Leibler divergence, which differs from the
cross-entropy only by the teacher's entropy, a constant of the student (same gradients)::

    loss = (1 - w) * CE(student, y) + w * T**2 * KL(softmax(teacher / T) || softmax(student / T))

the KL divergence averaged over the batch (``reduction="batchmean"``: the mathematical KL per example).

Defaults (:data:`DISTILL_WEIGHT`, :data:`DISTILL_TEMPERATURE`). Hinton et al. (sec. 2): "the best results
were generally obtained by using a considerably lower weight on the second objective function" (the
labels): ``w = 0.9`` leaves the labels 0.1. For the temperature, their MNIST experiment (sec. 3, recalled):
for a distilled net with many units per layer every temperature above 8 did about as well, but for a small
one (30 units per layer) temperatures from 2.5 to 4 did significantly better; our children are small
networks: ``T = 4``. LEMONADE's own weight and temperature are not checked here (unverified): these defaults
are Hinton's, not LEMONADE's. ``w = 0`` turns distillation off: :func:`~.training.train` then never runs the
teacher.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DISTILL_TEMPERATURE", "DISTILL_WEIGHT", "check_distillation", "distillation_loss", "soft_kl"]

#: Weight of the soft targets (Hinton et al. 2015, sec. 2: "a considerably lower weight" on the labels).
DISTILL_WEIGHT = 0.9
#: Softmax temperature of teacher and student (Hinton et al. 2015, sec. 3: 2.5-4 for small distilled nets).
DISTILL_TEMPERATURE = 4.0


def check_distillation(weight: object, temperature: object) -> None:
    """Raise :class:`ValueError` naming the value and what is allowed unless ``0 <= weight <= 1`` and
    ``temperature`` is a finite number > 0 (bools are not numbers here)."""
    def real(value: object) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))

    if not real(weight) or not 0.0 <= float(weight) <= 1.0:  # type: ignore[arg-type]
        raise ValueError(f"distill_weight must be a number in [0, 1] (0: no distillation; Hinton et al.: "
                         f"{DISTILL_WEIGHT}), but got distill_weight={weight!r}")
    if not real(temperature) or not float(temperature) > 0.0:  # type: ignore[arg-type]
        raise ValueError(f"distill_temperature must be a finite number > 0 (Hinton et al.: 2.5 to 4 for small "
                         f"networks; default {DISTILL_TEMPERATURE}), but got distill_temperature={temperature!r}")


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *,
                      weight: float = DISTILL_WEIGHT, temperature: float = DISTILL_TEMPERATURE) -> Tensor:
    """``(1 - w) * CE(student, y) + w * T**2 * KL(softmax(teacher / T) || softmax(student / T))`` (a scalar).

    Both cross-entropy and KL divergence are means over the batch; the logits are taken in float32 (under
    bfloat16 autocast too) so that the small differences of soft targets at high temperature are not
    rounded away. ``teacher_logits`` should carry no gradient (the teacher runs under ``torch.no_grad``);
    they are detached here all the same.

    Raises
    ------
    ValueError
        If ``weight`` or ``temperature`` is out of range (:func:`check_distillation`), or the logits differ
        in shape.
    """
    check_distillation(weight, temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must have one shape, but got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}: the teacher must be a network for the same classes")
    student = student_logits.float()
    teacher = teacher_logits.detach().float()
    hard = F.cross_entropy(student, labels)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return (1.0 - weight) * hard + weight * temperature ** 2 * soft


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = DISTILL_TEMPERATURE) -> float:
    """``KL(softmax(teacher / T) || softmax(student / T))`` averaged over the batch, as a float (for reports
    and tests: how far a student's soft predictions are from its teacher's)."""
    with torch.no_grad():
        return float(F.kl_div(F.log_softmax(student_logits.float() / temperature, dim=1),
                              F.log_softmax(teacher_logits.float() / temperature, dim=1),
                              reduction="batchmean", log_target=True))
