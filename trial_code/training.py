"""The training loop of a trial: SGD with one cosine cycle, data held as tensors on the device.

NASH trains every candidate with one cycle of SGDR, the learning rate annealed from 0.05 to 0 by a
cosine (Loshchilov and Hutter, *SGDR*, ICLR 2017, eq. 5 with a single restart period; Elsken et al.,
arXiv 1711.04528, sec. 5.1). For the small datasets this project runs offline, the whole training set
lives as one tensor on the training device and batches are drawn by a shuffled index (from a seeded
generator), with no data-loader processes; augmentation (:mod:`.augment`) runs on the batch, on the device.

Speed: the optimiser step is torch's fused SGD (one kernel for all parameters, where torch has it: the
same update rule as the per-parameter loop, ~0.1 ms less per step on a small CPU network, which is
a few percent of its step); on the CPU the loss is checked for NaN every step (free there), on an
accelerator every 32 steps (each check waits for the device); gradients are freed, not zeroed. On CUDA,
bfloat16 autocast with channels-last images is the default (``precision="auto"``); on the CPU,
channels-last always, with bfloat16 autocast where the CPU computes bfloat16 natively (AVX512-BF16,
AMX): measured by ``benchmarks/bench_cpu_formats.py`` on one thread of a Xeon with AMX, the NASH seed
for Fashion-MNIST and two children trained 2.1-2.8x as many images per CPU-second as in float32 NCHW
(channels-last alone: 1.3-1.4x) with the same validation accuracy within 0.1 points. ``precision="fp32",
memory_format="contiguous"`` is the loop as it was before.

A child of an approximate morphism (LEMONADE) trains against its parent as well as the labels: ``train(...,
teacher=parent)`` uses the distillation loss of :mod:`.distillation` (Hinton et al. 2015) on the same batches.

Deviations from the paper, both common practice: no weight decay on biases and BatchNorm parameters,
and a last batch of a single example is dropped from its epoch (BatchNorm cannot normalise one example
over a 1x1 map; the example is seen in other epochs, shuffled elsewhere).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .augment import Augmentation, shift_and_flip
from .distillation import DISTILL_TEMPERATURE, DISTILL_WEIGHT, check_distillation, distillation_loss

__all__ = ["MEMORY_FORMATS", "PRECISIONS", "EpochResult", "Schedule", "TrainingDiverged", "autocast_dtype",
           "cpu_has_native_bf16", "evaluate", "memory_format_of", "select_device", "train"]

_CHECK_EVERY = 32  # steps between divergence checks on an accelerator (each check waits for the device)
_AUGMENT_SEED_OFFSET = 0x9E3779B97F4A7C15  # the augmentation generator's seed: schedule.seed + this, mod 2**64

#: Values of ``train(precision=...)``, see :func:`autocast_dtype`.
PRECISIONS = ("auto", "fp32", "bf16")
#: Values of ``train(memory_format=...)``, see :func:`memory_format_of`.
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and the step."""


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Schedule:
    """How a candidate is trained: SGD with momentum over one cosine cycle (SGDR without restarts).

    Parameters
    ----------
    epochs
        Passes over the training data (0 evaluates the inherited weights only).
    lr, lr_min
        The cosine cycle's start and end (NASH: 0.05 -> 0).
    batch_size, momentum, weight_decay, nesterov
        SGD settings (``nesterov`` needs ``momentum > 0``).
    seed
        Seeds the shuffling (and nothing else: weight initialisation and dropout use torch's global
        generator, which the trial seeds).

    Raises
    ------
    ValueError
        Naming the field, the rule and the value, on a wrong type (a bool is not a number here) or a value
        out of range (non-finite learning rates included).
    """

    epochs: int
    lr: float = 0.05
    lr_min: float = 0.0
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def rule(name: str, ok: bool, text: str) -> None:
            if not ok:
                raise ValueError(f"Schedule: {name} must be {text}, but got {name}={getattr(self, name)!r}")

        rule("epochs", _is_int(self.epochs) and self.epochs >= 0, "an integer >= 0")
        rule("lr", _is_real(self.lr) and self.lr > 0, "a finite number > 0 (NASH: 0.05)")
        rule("lr_min", _is_real(self.lr_min) and 0 <= self.lr_min <= self.lr, f"a number in [0, lr={self.lr!r}]")
        rule("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1")
        rule("momentum", _is_real(self.momentum) and 0 <= self.momentum < 1, "a number in [0, 1)")
        rule("weight_decay", _is_real(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0")
        rule("nesterov", isinstance(self.nesterov, bool), "True or False")
        rule("nesterov", not (self.nesterov and self.momentum == 0), "False when momentum=0 (or set momentum > 0)")
        rule("seed", _is_int(self.seed) and -(2**63) <= self.seed < 2**64,
             "an integer in [-2**63, 2**64) (torch's seed range)")

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate of optimisation step ``step`` (0-based) of ``total``.

        ``lr_min + (lr - lr_min) * (1 + cos(pi * step / total)) / 2``: ``lr`` at step 0, ``lr_min`` at
        ``step == total`` (one past the last step, so the last step still learns a little).
        """
        if total < 1 or not 0 <= step <= total:
            raise ValueError(f"0 <= step <= total and total >= 1 must hold, but got step={step}, total={total}")
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * step / total))


@dataclass(frozen=True)
class EpochResult:
    """What one epoch did."""

    epoch: int  # 1-based
    train_loss: float  # mean over the examples seen, in train mode
    train_accuracy: float
    val_accuracy: float | None
    seconds: float  # the whole epoch, validation included
    val_seconds: float = 0.0  # of which validating (the rest: training steps)


def _device_of(module: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return fallback


@torch.no_grad()
def select_device(setting: str) -> torch.device:
    """The training device of a ``device`` setting: ``"cuda"``, or ``"auto"`` when a GPU is visible; else the CPU."""
    return torch.device("cuda" if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()) else "cpu")


def evaluate(module: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Accuracy of ``module`` on ``(x, y)`` in eval mode (the caller's train/eval mode is restored).

    The data is moved batch by batch to the module's device when it is elsewhere; an empty set gives 0.0.
    Batches of 256 by default: on one CPU thread, 1024 was ~15 % slower on a small CNN (cache misses).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, but got {len(x)} images and {len(y)} labels")
    was_training = module.training
    module.eval()
    device = _device_of(module, x.device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    try:
        for i in range(0, len(x), batch_size):
            logits = module(x[i:i + batch_size].to(device, non_blocking=True))
            correct += (logits.argmax(1) == y[i:i + batch_size].to(device, non_blocking=True)).sum()
    finally:
        module.train(was_training)
    return int(correct) / len(x) if len(x) else 0.0


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16; every CPU with AMX-BF16 has them too).

    Without them oneDNN emulates bfloat16 and autocast is not expected to pay (unmeasured here).
    """
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # torch's own check (cpuinfo)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype of mixed precision for ``precision`` on ``device``, or None for float32 throughout.

    ``"auto"`` means bfloat16 autocast on a CUDA device that supports it (Ampere and later: tensor cores,
    and no loss scaling needed as with float16) and on a CPU with native bfloat16
    (:func:`cpu_has_native_bf16`; see the module docstring for the measurement), float32 elsewhere;
    ``"bf16"`` asks for bfloat16 autocast on any device; ``"fp32"`` never uses it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, but got precision={precision!r}")
    if precision == "bf16" or (precision == "auto" and (
            (device.type == "cuda" and torch.cuda.is_bf16_supported())
            or (device.type == "cpu" and cpu_has_native_bf16()))):
        return torch.bfloat16
    return None


def memory_format_of(setting: str, device: torch.device, amp: torch.dtype | None) -> torch.memory_format:
    """The layout of images and convolution weights while training, for a ``memory_format`` setting.

    ``"channels_last"`` (NHWC) or ``"contiguous"`` (NCHW, torch's default) as asked; ``"auto"`` means
    channels-last on the CPU (oneDNN's own layout: 1.3-1.4x the images per CPU-second of NCHW in float32,
    measured, more with bfloat16) and with autocast on CUDA (what tensor cores read), NCHW elsewhere.
    Only 4-d tensors (images, conv weights) change layout; the module is handed back in NCHW whatever ran
    inside.
    """
    if setting not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, but got memory_format={setting!r}")
    if setting == "channels_last" or (setting == "auto" and (device.type == "cpu" or (
            amp is not None and device.type == "cuda"))):
        return torch.channels_last
    return torch.contiguous_format


def _optimizer(groups: list[dict], schedule: Schedule, device: torch.device) -> torch.optim.Optimizer:
    """SGD, fused into one kernel per step where torch has that kernel (CPU, CUDA): the same update rule,
    fewer kernel launches (on a small CPU network the step of the per-parameter loop costs ~1.6x as much)."""
    params = [p for g in groups for p in g["params"]]
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() and p.device == device for p in params)
    return torch.optim.SGD(groups, lr=schedule.lr, momentum=schedule.momentum, nesterov=schedule.nesterov,
                           fused=True if fused else None)


def train(module: nn.Module, x: Tensor, y: Tensor, schedule: Schedule, *,
          validation: tuple[Tensor, Tensor] | None = None,
          on_epoch: Callable[[EpochResult], None] | None = None,
          on_first_batch: Callable[[], None] | None = None,
          augment: Augmentation | None = None,
          precision: str = "auto", memory_format: str = "auto",
          teacher: nn.Module | None = None, distill_weight: float = DISTILL_WEIGHT,
          distill_temperature: float = DISTILL_TEMPERATURE) -> list[EpochResult]:
    """Train ``module`` in place on ``(x, y)``, which must already be on the module's device.

    One cosine cycle over ``schedule.epochs`` epochs, the learning rate set before every step. The
    shuffling comes from a generator seeded with ``schedule.seed``: the same schedule, data and initial
    weights give the same batches. ``augment`` (see :mod:`.augment`) transforms every batch on the device,
    with shifts and flips drawn for the whole epoch from a second CPU generator seeded from
    ``schedule.seed``, so the batches stay the same with or without augmentation and both are
    reproducible. ``precision`` (see :func:`autocast_dtype`) turns on bfloat16 autocast around the forward
    pass and the loss; ``memory_format`` (see :func:`memory_format_of`) chooses the layout of images and
    convolutions while training (the module is handed back in the default layout). ``on_first_batch`` is
    called once, just before the first step (for timing); ``on_epoch`` after every epoch with its
    :class:`EpochResult` (with the validation accuracy when ``validation`` is given). The module is left
    in train mode.

    With a ``teacher`` (a network on the module's device for the same classes) and ``distill_weight > 0``,
    the loss is :func:`~.distillation.distillation_loss` (Hinton et al. 2015; LEMONADE's training of
    approximate-morphism children): the teacher sees the very batches the module sees (augmented, in the
    training layout and precision), in eval mode and under ``torch.no_grad``, and is handed back in its own
    mode and the default layout. Its forward passes are part of every step's time. ``train_loss`` is then
    that loss. ``distill_weight=0`` never runs the teacher: the training is the plain one, bit for bit.

    On the CPU the same seed, inputs and settings give bit-identical weights run after run (with
    bfloat16 autocast too, on one machine).

    Raises
    ------
    TrainingDiverged
        If the loss becomes NaN or infinite (checked every step on the CPU, every few steps and at every
        epoch's end on an accelerator); the message names the epoch and the step.
    ValueError
        If the data is empty, ``x`` and ``y`` differ in length or device, or they are not on the module's
        device; if the teacher is elsewhere, or ``distill_weight`` / ``distill_temperature`` is out of range
        (:func:`~.distillation.check_distillation`).
    """
    if teacher is not None:
        check_distillation(distill_weight, distill_temperature)
    if schedule.epochs == 0:
        return []
    n = len(x)
    if n == 0 or len(y) != n:
        raise ValueError(f"training needs as many labels as images (at least one), but got {n} images and "
                         f"{len(y)} labels")
    device = _device_of(module, x.device)
    if x.device != device or y.device != device:
        raise ValueError(f"x ({x.device}), y ({y.device}) and the module ({device}) must be on one device: "
                         f"move the data with .to({str(device)!r}) first")
    active_teacher = teacher if teacher is not None and distill_weight > 0 else None  # the teacher that runs
    if active_teacher is not None and _device_of(active_teacher, device) != device:
        raise ValueError(f"the teacher ({_device_of(active_teacher, device)}) and the module ({device}) must be on one "
                         f"device: move the teacher with .to({str(device)!r}) first")
    amp = autocast_dtype(precision, device)
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)  # no weight decay on biases and BatchNorm
    groups = [g for g in ({"params": decay, "weight_decay": schedule.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if not groups:
        raise ValueError("the module has no trainable parameters")
    optimizer = _optimizer(groups, schedule, device)
    loss_fn = nn.CrossEntropyLoss()

    def objective(logits: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
        if active_teacher is None:
            return loss_fn(logits, yb)
        with torch.no_grad():
            soft = active_teacher(xb)
        return distillation_loss(logits, soft, yb, weight=distill_weight, temperature=distill_temperature)

    augment = augment if augment is not None and not augment.is_identity else None
    fill = augment.fill_on(device, x.dtype) if augment is not None else 0.0
    layout = memory_format_of(memory_format, device, amp)
    channels_last = layout == torch.channels_last and x.dim() == 4

    bs = schedule.batch_size
    starts = list(range(0, n, bs))
    if n > 1 and n - starts[-1] == 1:
        starts.pop()  # a batch of one example: dropped from this epoch (see the module docstring)
    seen = min(n, starts[-1] + bs)
    sizes = [min(bs, n - i) for i in starts]
    total = len(starts) * schedule.epochs
    on_cpu = device.type == "cpu"
    gen = torch.Generator().manual_seed(schedule.seed)
    aug_gen = torch.Generator().manual_seed((schedule.seed + _AUGMENT_SEED_OFFSET) % 2**64)
    results: list[EpochResult] = []
    step = 0
    module.train()
    teacher_was_training = active_teacher.training if active_teacher is not None else False
    if active_teacher is not None:
        active_teacher.eval()
    if channels_last:
        module.to(memory_format=torch.channels_last)
        if active_teacher is not None:
            active_teacher.to(memory_format=torch.channels_last)
    try:
        for epoch in range(1, schedule.epochs + 1):
            start = time.perf_counter()
            order = torch.randperm(n, generator=gen).to(device, non_blocking=True)
            params = augment.sample(n, aug_gen).to(device, non_blocking=True) if augment is not None else None
            losses = torch.empty(len(starts), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            checked = 0
            for k, i in enumerate(starts):
                idx = order[i:i + bs]
                xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                if params is not None:
                    xb = shift_and_flip(xb, params[i:i + bs], fill)
                if channels_last:
                    xb = xb.contiguous(memory_format=layout)
                if step == 0 and on_first_batch is not None:
                    on_first_batch()
                lr = schedule.lr_at(step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if amp is not None:
                    with torch.autocast(device.type, dtype=amp):
                        logits = module(xb)
                        loss = objective(logits, xb, yb)
                else:
                    logits = module(xb)
                    loss = objective(logits, xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                losses[k] = loss.detach()
                correct += (logits.detach().argmax(1) == yb).sum()
                if on_cpu:  # no device to wait for: check every step (a bad batch is named exactly)
                    if not math.isfinite(loss.item()):
                        _check_finite(losses[k:k + 1], epoch, k, len(starts), step - 1)
                    checked = k + 1
                elif (k + 1) % _CHECK_EVERY == 0 or k + 1 == len(starts):
                    _check_finite(losses[checked:k + 1], epoch, checked, len(starts), step - (k + 1 - checked))
                    checked = k + 1
            weights = torch.tensor(sizes, dtype=losses.dtype).to(device, non_blocking=True)
            train_loss = float((losses * weights).sum()) / seen
            train_accuracy = int(correct) / seen
            t_val = time.perf_counter()
            val = evaluate(module, *validation) if validation is not None else None
            end = time.perf_counter()
            result = EpochResult(epoch, train_loss, train_accuracy, val, end - start,
                                 end - t_val if validation is not None else 0.0)
            results.append(result)
            if on_epoch is not None:
                on_epoch(result)
    finally:
        if channels_last:
            module.to(memory_format=torch.contiguous_format)
            if active_teacher is not None:
                active_teacher.to(memory_format=torch.contiguous_format)
        if active_teacher is not None:
            active_teacher.train(teacher_was_training)
    return results


def _check_finite(losses: Tensor, epoch: int, first: int, steps_per_epoch: int, first_global: int) -> None:
    """Raise :class:`TrainingDiverged` naming the first non-finite loss among steps ``first...``."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        j = int(bad[0])
        value = float(losses[j])
        raise TrainingDiverged(
            f"the training loss became {value} in epoch {epoch}, step {first + j + 1} of {steps_per_epoch} "
            f"(optimisation step {first_global + j + 1} overall): lower the learning rate or check the inputs "
            "for NaN/inf")
