"""One trial: train one candidate, starting from its parent's weights, and report what it did.

The steps (issue: "trial code and weight inheritance"):

1. load the dataset (local files only) and check that the architecture fits it;
2. if the candidate has a parent, load the parent's checkpoint and replay the candidate's lineage on the
   parent's architecture (:func:`nni_nas_ext.core.replay`), which gives the weight transformation; apply it
   with a calibration batch of training images and measure the function-preservation error
   (:func:`nni_nas_ext.core.preservation_error`) and the starting validation accuracy;
3. train one cosine cycle (NASH, Elsken et al. 2017), reporting validation accuracy after every epoch; a
   child with an early-stopping rule (``Candidate.stop_after`` / ``stop_below``) whose validation accuracy
   after epoch ``stop_after`` is below ``stop_below`` stops there: the cycle is cut short (the schedule is
   not rescaled), and the rest goes on as usual, its result saying ``early_stopped: true`` and
   ``epochs_trained``; a candidate with a time limit (``Candidate.time_limit``, a budget-aware search's final
   trainings) stops likewise after the last epoch that leaves room, at its slowest epoch's pace, for one
   more epoch's worth of time (the test and the checkpoint) before the limit, its result saying
   ``stopped_at_deadline: true``;
4. evaluate (the test set only when the candidate says so: final trainings);
5. save the checkpoint (atomically) and only then report the final result, so that a child proposed on
   that result always finds its parent's weights.

LEMONADE (Elsken, Metzen, Hutter, ICLR 2019, arXiv 1804.09081): a child whose lineage holds a *compression*
morphism (remove a layer, remove a skip, shrink a width: the child does not compute its parent's function)
and that inherits its parent's weights is trained by knowledge distillation from its parent (Hinton et al.
2015; :mod:`.distillation`): the parent's network, built from the checkpoint step 2 loaded anyway, is the
teacher of step 3 (``TaskConfig.distill_weight``, ``distill_temperature``; 0 turns it off), and is freed
after training. The final result says ``distilled: true`` or ``false``; a compressed child's also gives its
``compression`` (parent's parameters / its own), ``parent_params`` and, N2N learning's reward against the parent
(Ashok et al. 2018; :mod:`nni_nas_ext.core.rewards`), ``n2n_reward``. With ``TaskConfig.measure_latency``
the trained network is also timed at batch 1 on the trial's device (:mod:`.latency`): ``latency_ms`` and
``latency_device`` in the final result, beside the architecture's ``params`` and ``macs`` (always there).

The final result is self-describing (it names the candidate), because NNI 3.0 may hand a trial another
trial's parameters (field notes, bug 1): the strategy trusts the result, not NNI's pairing. A failed
training (NaN loss, exception) reports ``{"default": 0.0, "candidate": ..., "failed": reason}`` and then
raises, so that NNI marks the trial failed.

Nothing here imports ``nni``: :func:`run_candidate` takes a :class:`Reporter`, and the NNI adapter passes
one that calls ``nni.report_intermediate_result`` / ``nni.report_final_result``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Protocol

import torch

from nni_nas_ext.core import Architecture, Step, build_module, preservation_error, replay, summarize
from nni_nas_ext.core.config import Config, ConfigError, option, parse_config
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.morphisms import COMPRESSIONS
from nni_nas_ext.core.rewards import n2n_reward

from .augment import AUGMENTATIONS, Augmentation
from .checkpoints import CheckpointStore, checkpoint_dir_error
from .datasets import DatasetSpec, Splits, list_datasets, load_dataset
from .distillation import DISTILL_TEMPERATURE, DISTILL_WEIGHT
from .latency import measure_latency
from .training import (MEMORY_FORMATS, PRECISIONS, EpochResult, Schedule, TrainingDiverged, evaluate, select_device,
                       train)

__all__ = ["Reporter", "TaskConfig", "TrialFailed", "default_checkpoint_dir", "run_candidate"]

_log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where a trial's results go (NNI in a real trial, a list in tests)."""

    def intermediate(self, metric: dict[str, Any]) -> None: ...

    def final(self, metric: dict[str, Any]) -> None: ...


class TrialFailed(RuntimeError):
    """The candidate could not be trained; its failure was reported first."""


class _StoppedEarly(Exception):
    """Raised from the epoch callback to end :func:`train` after an epoch (the candidate's early-stopping rule,
    or its time limit)."""


def _compresses(steps: Sequence[Step]) -> bool:
    """Whether a lineage holds a compression morphism (:data:`~nni_nas_ext.core.morphisms.COMPRESSIONS`: remove a
    layer or a skip, shrink a layer), whose child is trained by distillation from its parent (LEMONADE).

    Only those: the noise modes of widen and branch are approximate too (``chain_is_exact`` says so), but they are
    EAS's operators, whose children EAS trains without a teacher, as before.
    """
    return any(step.op in COMPRESSIONS for step in steps)


@dataclass(frozen=True)
class TaskConfig(Config):
    """What every trial of a search shares: the data, the optimiser, where checkpoints live.

    Validated on construction (and from ``classArgs`` with :func:`~nni_nas_ext.core.config.parse_config`):
    a wrong type or range names the key, the value and what is allowed.
    """

    config_name: ClassVar[str] = "task"

    dataset: str = option("digits", choices=list_datasets(), doc="the dataset (local files only; see README)")
    dataset_root: Optional[str] = option(None, doc="folder of the dataset's files; None: its default location")
    val_fraction: float = option(0.2, minimum=0.01, maximum=0.5,
                                 doc="share of the training set held out for validation (fixed seed)")
    split_seed: int = option(0, minimum=0, doc="seed of the validation split")
    limit: Optional[int] = option(None, minimum=2, doc="use at most this many training examples (None: all)")
    lr: float = option(0.05, minimum=1e-6, maximum=10.0, doc="start of the cosine cycle (NASH: 0.05)")
    lr_min: float = option(0.0, minimum=0.0, maximum=10.0, doc="end of the cosine cycle (NASH: 0)")
    batch_size: int = option(128, minimum=2, maximum=65536, doc="SGD batch size")
    momentum: float = option(0.9, minimum=0.0, maximum=0.999, doc="SGD momentum")
    weight_decay: float = option(5e-4, minimum=0.0, maximum=1.0, doc="L2 weight decay (not on biases or BN)")
    checkpoint_dir: Optional[str] = option(None, doc="absolute folder of the checkpoint store, one per search; None: "
                                                     "<experiment folder>/checkpoints")
    calibration_size: int = option(256, minimum=2, maximum=100000,
                                   doc="training images for the BatchNorm identity and the preservation check")
    augment: str = option("none", choices=list(AUGMENTATIONS),
                          doc="on-device augmentation of training batches: crop = random shifts (pad and crop), "
                              "crop+flip = also horizontal flips (not for digits or characters)")
    crop_padding: Optional[int] = option(None, minimum=1, maximum=16,
                                         doc="largest shift of crop, in pixels; None: an eighth of the image "
                                             "side, 1 to 4")
    device: str = option("auto", choices=["auto", "cpu", "cuda"], doc="auto: CUDA when the trial has a GPU")
    precision: str = option("auto", choices=list(PRECISIONS),
                            doc="auto: bfloat16 autocast on a CUDA GPU and on a CPU with native bfloat16 "
                                "(AVX512-BF16/AMX), float32 elsewhere; fp32: never autocast")
    memory_format: str = option("auto", choices=list(MEMORY_FORMATS),
                                doc="layout while training: auto = channels-last on the CPU and with autocast on "
                                    "CUDA; contiguous (with precision fp32) is the loop before channels-last")
    threads: int = option(1, minimum=0, maximum=1024, doc="torch CPU threads per trial (0: torch's default)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1, doc="base seed of initialisation and shuffling")
    distill_weight: float = option(DISTILL_WEIGHT, minimum=0.0, maximum=1.0,
                                   doc="a child of an approximate morphism (remove a layer or skip, shrink) that "
                                       "inherits weights learns from its parent: loss = (1 - w) CE + w T^2 KL "
                                       "(Hinton et al. 2015; LEMONADE); 0: never distil")
    distill_temperature: float = option(DISTILL_TEMPERATURE, minimum=1.0, maximum=100.0,
                                        doc="softmax temperature T of the distillation (Hinton et al. 2015: 2.5-4 "
                                            "for small networks)")
    measure_latency: bool = option(False, doc="time the trained network at batch 1 on the trial's device: "
                                              "latency_ms (median) and latency_device in the final result")
    latency_repeats: int = option(50, minimum=1, maximum=100000,
                                  doc="timed forward passes of measure_latency (the median is reported)")
    latency_warmup: int = option(10, minimum=0, maximum=100000,
                                 doc="untimed forward passes of measure_latency before the timed ones")

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = None if self.checkpoint_dir is None else checkpoint_dir_error(self.checkpoint_dir)
        if problem is not None:
            raise ConfigError(f"task: checkpoint_dir {problem}", key="checkpoint_dir", value=self.checkpoint_dir)
        if self.lr_min > self.lr:
            raise ConfigError(f"task: lr_min <= lr must hold, but got lr_min={self.lr_min}, lr={self.lr}",
                              key="lr_min", value=self.lr_min)
        try:
            self.dataset_spec()
        except ValueError as exc:
            raise ConfigError(f"task: dataset={self.dataset!r} with dataset_root={self.dataset_root!r}: {exc} "
                              f"(root is the setting dataset_root)", key="dataset", value=self.dataset) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskConfig:
        return parse_config(cls, data)

    def dataset_spec(self) -> DatasetSpec:
        return DatasetSpec(self.dataset, self.dataset_root, self.val_fraction, self.split_seed, self.limit)

    def augmentation(self, data: Splits) -> Augmentation:
        """The augmentation of training batches for ``data`` (padding with the normalised value of black)."""
        return Augmentation.for_data(self.augment, data.input_shape, data.mean, data.std, self.crop_padding)

    def schedule(self, epochs: int, seed: int = 0) -> Schedule:
        return Schedule(epochs=epochs, lr=self.lr, lr_min=self.lr_min, batch_size=self.batch_size,
                        momentum=self.momentum, weight_decay=self.weight_decay, seed=seed)


def default_checkpoint_dir() -> Path:
    """``<experiment folder>/checkpoints`` in an NNI trial.

    The trial's ``NNI_OUTPUT_DIR`` lies inside the experiment folder (``<exp>/environments/local-env/trials/<id>``
    on the local training service); the experiment folder is the ancestor named after ``NNI_EXP_ID``.
    """
    output = os.environ.get("NNI_OUTPUT_DIR")
    if not output:
        raise ValueError("checkpoint_dir is not set and this is not an NNI trial (no NNI_OUTPUT_DIR): give "
                         "TaskConfig(checkpoint_dir=<absolute folder>)")
    if os.environ.get("NNI_PLATFORM") == "remote":
        raise ValueError("checkpoint_dir is not set and this trial runs on a remote host (NNI_PLATFORM=remote): the "
                         "default would be this host's own folder, which the other hosts cannot read; set "
                         "tuner.classArgs.checkpoint_dir to a folder on storage every host reaches")
    here = Path(output).resolve()
    exp_id = os.environ.get("NNI_EXP_ID")
    for folder in here.parents:
        if exp_id and folder.name == exp_id:
            return folder / "checkpoints"
    return here.parents[1] / "checkpoints"


def _process_start_time() -> float:
    """Wall-clock time at which this process started (for "process start to first batch")."""
    try:
        import psutil  # a dependency of nni

        return float(psutil.Process().create_time())
    except Exception:  # pragma: no cover - psutil missing or /proc unreadable
        return time.time()


def _serial(candidate: Candidate) -> int:
    tail = candidate.id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _check_fits(arch: Architecture, data: Splits) -> None:
    if tuple(arch.input_shape) != tuple(data.input_shape) or arch.num_classes != data.num_classes:
        raise ValueError(
            f"the architecture takes input {tuple(arch.input_shape)} with {arch.num_classes} classes, but dataset "
            f"{data.spec.name!r} has {tuple(data.input_shape)} with {data.num_classes}: build the seed network "
            f"for this dataset (input_shape={tuple(data.input_shape)}, num_classes={data.num_classes})")


def run_candidate(candidate: Candidate, task: TaskConfig, reporter: Reporter, *,
                  data: Splits | None = None) -> dict[str, Any]:
    """Train ``candidate`` as described in the module docstring and return the final result it reported.

    ``data`` may be given to skip loading (tests, one process running several candidates).

    Raises
    ------
    TrialFailed
        After reporting a failed result, when training diverged or anything else went wrong.
    """
    clock: dict[str, float] = {}
    started = _process_start_time()
    t_enter = time.time()
    try:
        return _run(candidate, task, reporter, data, clock, started)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        _log.error("candidate %s failed: %s", candidate.id, reason, exc_info=not isinstance(exc, TrainingDiverged))
        reporter.final({"default": 0.0, "candidate": candidate.id, "arch_id": candidate.architecture.id,
                        "role": candidate.role, "step": candidate.step, "failed": reason[:2000],
                        "timings": {**clock, "total": round(time.time() - t_enter, 4)}})
        raise TrialFailed(reason) from exc


def _run(candidate: Candidate, task: TaskConfig, reporter: Reporter, data: Splits | None,
         clock: dict[str, float], started: float) -> dict[str, Any]:
    t_enter = time.time()
    clock["process_to_entry"] = round(t_enter - started, 4)  # process start, imports, NNI's parameter
    if task.threads:
        torch.set_num_threads(task.threads)
    device = select_device(task.device)
    serial = _serial(candidate)
    torch.manual_seed(task.seed * 100_003 + serial)
    arch = candidate.architecture
    _log.info("candidate %s (%s, step %d): %s, %d parameters, parent %s, %d epochs on %s, device %s",
              candidate.id, candidate.role, candidate.step, arch.id, arch.num_parameters(), candidate.parent,
              candidate.epochs, candidate.train_on, device)

    t = time.time()
    if data is None:
        data = load_dataset(task.dataset_spec())
        _log.info("%s", data.describe())
    clock["data"] = round(time.time() - t, 4)
    _check_fits(arch, data)
    store = CheckpointStore.open(task.checkpoint_dir or default_checkpoint_dir())
    if candidate.id in store:
        # Already trained: NNI re-runs the trials that were running at `nnictl stop`, including ones that had
        # finished while it stopped. Report the stored result again instead of training twice.
        meta = store.load(candidate.id).meta
        stored = meta.get("result")
        # only the very same training (candidate and task settings): a store shared by two searches must
        # not hand one search's results to the other
        if isinstance(stored, dict) and meta.get("candidate") == candidate.to_dict() and \
                meta.get("task") == task.to_dict():
            _log.info("candidate %s was trained before (checkpoint %s): reporting its result again, no training",
                      candidate.id, store.path(candidate.id))
            result = {**stored, "rerun": True, "timings": {"total": round(time.time() - t_enter, 4),
                                                           "process_total": round(time.time() - started, 4)}}
            reporter.final(result)
            return result

    # ---- weights: inherited from the parent (transformed) or a fresh initialisation ----------------------
    t = time.time()
    preservation: float | None = None
    applied: list[str] = []  # the morphisms this trial applied to its parent's weights
    state = None
    teacher: torch.nn.Module | None = None  # the parent's network, for a child of an approximate morphism
    compressed_from: tuple[int, float | None] | None = None  # a compressed child: its parent's params and val acc
    if candidate.parent is not None:
        parent = store.load(candidate.parent)
        calibration = data.train_x[: task.calibration_size]
        if parent.architecture.id == arch.id:
            state = parent.state_dict  # the same network trained further (incumbent, final training)
        else:
            if arch.lineage is None or arch.lineage.parent != parent.architecture.id:
                raise ValueError(
                    f"candidate {candidate.id}: its lineage names parent architecture "
                    f"{arch.lineage.parent if arch.lineage else None!r}, but checkpoint {candidate.parent!r} holds "
                    f"{parent.architecture.id!r}")
            result = replay(parent.architecture, arch.lineage.steps)
            if result.child.id != arch.id:
                raise ValueError(f"candidate {candidate.id}: replaying its lineage on the parent gives architecture "
                                 f"{result.child.id}, not {arch.id}")
            state = result.transform(parent.state_dict, calibration)
            applied = [step.describe() for step in arch.lineage.steps]
            err = preservation_error(parent.architecture, parent.state_dict, arch, state, calibration)
            preservation = float(err.relative)
            _log.info("weights transformed by %d morphism(s); preservation error %.3g (relative), %.3g (max abs)",
                      len(arch.lineage.steps), err.relative, err.max_abs)
            if _compresses(arch.lineage.steps):
                compressed_from = (parent.architecture.num_parameters(), _reported_accuracy(parent.meta))
            if task.distill_weight > 0 and _compresses(arch.lineage.steps):
                teacher = build_module(parent.architecture, parent.state_dict).to(device).requires_grad_(False)
                _log.info("a compression morphism: distilling from the parent %s (weight %.3g, temperature %.3g)",
                          candidate.parent, task.distill_weight, task.distill_temperature)
        del parent  # its weights live on in the child's module (and the teacher's) only
    module = build_module(arch, state).to(device)
    state = None
    clock["transform"] = round(time.time() - t, 4)

    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    start_val_acc = None
    t = time.time()
    if candidate.parent is not None or candidate.train_on == "train+val":  # a final's "default" (below)
        start_val_acc = evaluate(module, val_x, val_y)
        _log.info("validation accuracy before training: %.4f", start_val_acc)
    clock["start_evaluate"] = round(time.time() - t, 4)

    # ---- training: one cosine cycle --------------------------------------------------------------------
    seen_val = candidate.train_on == "train+val"
    if seen_val:
        x = torch.cat([data.train_x, data.val_x]).to(device)
        y = torch.cat([data.train_y, data.val_y]).to(device)
    else:
        x, y = data.train_x.to(device), data.train_y.to(device)
    first_batch: list[float] = []
    history: list[EpochResult] = []
    stopped: str | None = None  # why training ended before its last epoch: "rule" or "deadline"

    def on_epoch(r: EpochResult) -> None:
        nonlocal stopped
        history.append(r)
        _log.info("epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f (%.2f s)", r.epoch, candidate.epochs,
                  r.train_loss, r.train_accuracy, r.val_accuracy if r.val_accuracy is not None else math.nan,
                  r.seconds)
        # a final training sees the validation images: its "default" stays the validation accuracy of the weights
        # it started from (measured before; NNI needs a number), never one measured on images it trained on
        reporter.intermediate({"default": start_val_acc if seen_val else r.val_accuracy, "candidate": candidate.id,
                               "epoch": r.epoch, "train_loss": round(r.train_loss, 6)})
        if r.epoch < candidate.epochs and r.val_accuracy is not None and \
                candidate.stops_early(r.epoch, r.val_accuracy):
            _log.info("early stop after epoch %d: val acc %.4f < %.4f (the parent's final minus the margin)",
                      r.epoch, r.val_accuracy, candidate.stop_below)
            stopped = "rule"
            raise _StoppedEarly
        elapsed, slowest = time.time() - started, max(h.seconds for h in history)
        if candidate.past_deadline(r.epoch, elapsed, slowest):
            _log.warning("stopping after epoch %d of %d: %.1f s since the process started, epochs of up to %.2f s, "
                         "and a time limit of %.1f s (the machine ran slower than the search estimated)",
                         r.epoch, candidate.epochs, elapsed, slowest, candidate.time_limit)
            stopped = "deadline"
            raise _StoppedEarly

    t = time.time()
    try:
        epochs = train(module, x, y, task.schedule(candidate.epochs, seed=task.seed * 100_003 + serial),
                       validation=None if seen_val else (val_x, val_y), on_epoch=on_epoch,
                       on_first_batch=lambda: first_batch.append(time.time()),
                       augment=task.augmentation(data), precision=task.precision, memory_format=task.memory_format,
                       teacher=teacher, distill_weight=task.distill_weight,
                       distill_temperature=task.distill_temperature)
    except _StoppedEarly:
        epochs = history
    distilled = teacher is not None and bool(epochs)  # a teacher that taught at least one epoch
    teacher = None  # the parent's network is not kept beside the child's past training (its time is in "train")
    clock["train"] = round(time.time() - t, 4)  # the two below, and the reports to NNI
    clock["train_steps"] = round(sum(r.seconds - r.val_seconds for r in epochs), 4)
    clock["validation"] = round(sum(r.val_seconds for r in epochs), 4)
    clock["start_to_first_batch"] = round((first_batch[0] if first_batch else time.time()) - started, 4)
    # train() up to its first step; the first torch optimizer of a process imports torch._dynamo (~1 s)
    clock["train_setup"] = round((first_batch[0] if first_batch else t) - t, 4)

    # ---- evaluation ------------------------------------------------------------------------------------
    t = time.time()
    # the last epoch's validation saw these very weights (evaluate is deterministic): not computed twice
    if seen_val:
        val_acc = None
    elif epochs and epochs[-1].val_accuracy is not None:
        val_acc = epochs[-1].val_accuracy
    else:
        val_acc = evaluate(module, val_x, val_y)
    test_acc = evaluate(module, data.test_x.to(device), data.test_y.to(device)) if candidate.evaluate_test else None
    clock["evaluate"] = round(time.time() - t, 4)
    latency = None
    if task.measure_latency:
        t = time.time()
        latency = measure_latency(module, data.input_shape, device, warmup=task.latency_warmup,
                                  repeats=task.latency_repeats)
        clock["latency"] = round(time.time() - t, 4)
        _log.info("latency %.4f ms at batch 1 (median of %d) on %s", latency.median_ms, latency.repeats,
                  latency.device_name)

    # ---- checkpoint (holding the result, for re-runs), then the final result ----------------------------
    # "default" (NNI's ranking metric, the portal's accuracy column) is a validation accuracy on images the
    # weights had not trained on: for a final training, which trains on them, that of the weights it started
    # from (the winner's own), so the portal never ranks it above the winner; its figure is "test_acc"
    result: dict[str, Any] = {"default": start_val_acc if seen_val else val_acc}
    result.update({
        "summary": trial_summary(candidate, arch, applied),
        "lineage": trial_lineage(candidate, applied),
        "candidate": candidate.id,
        "arch_id": arch.id,
        "role": candidate.role,
        "step": candidate.step,
        "parent": candidate.parent,
        "morphisms": applied,
        "params": arch.num_parameters(),
        "macs": arch.num_macs(),
        "flops": arch.num_macs(),  # the same count under its first name (MACs, not FLOPs), kept for its readers
        "preservation_error": preservation,
        "distilled": distilled,
        "start_val_acc": start_val_acc,
        "epochs": candidate.epochs,
        "epochs_trained": len(epochs),
        "early_stopped": stopped == "rule",
        "stopped_at_deadline": stopped == "deadline",
        "train_on": candidate.train_on,
        "checkpoint": str(store.path(candidate.id)),
        "normalisation": data.preprocessing(),
        "timings": clock,
    })
    if compressed_from is not None:
        result.update(_compression_figures(arch.num_parameters(), val_acc, *compressed_from))
    if test_acc is not None:
        result["test_acc"] = test_acc
    if latency is not None:
        result["latency_ms"] = round(latency.median_ms, 4)
        result["latency_device"] = latency.device_name
    t = time.time()
    cpu_state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    store.save(candidate.id, arch, cpu_state,
               meta={"result": result, "candidate": candidate.to_dict(), "task": task.to_dict()})
    clock["checkpoint"] = round(time.time() - t, 4)
    clock["total"] = round(time.time() - t_enter, 4)
    clock["process_total"] = round(time.time() - started, 4)
    _log.info("final: val acc %s%s; timings %s", "-" if val_acc is None else f"{val_acc:.4f}",
              f", test acc {test_acc:.4f}" if test_acc is not None else "", clock)
    reporter.final(result)
    return result


def _reported_accuracy(meta: Mapping[str, Any]) -> float | None:
    """The validation accuracy (``default``) a checkpoint's trial reported, if it is a number in (0, 1]."""
    result = meta.get("result")
    value = result.get("default") if isinstance(result, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        return None
    return float(value)


def _compression_figures(params: int, val_acc: float | None, parent_params: int,
                         parent_acc: float | None) -> dict[str, Any]:
    """A compressed child's figures against its parent: ``compression`` (parent's parameters / the child's) and,
    with both validation accuracies known, ``n2n_reward`` (N2N learning's ``C (2 - C) * acc / parent_acc``,
    :func:`nni_nas_ext.core.rewards.n2n_reward`), what the N2N strategy learns from (its teacher is the parent)."""
    out: dict[str, Any] = {"compression": round(parent_params / max(1, params), 4), "parent_params": parent_params}
    if val_acc is not None and parent_acc is not None:
        out["n2n_reward"] = round(n2n_reward(params, parent_params, min(max(val_acc, 0.0), 1.0), parent_acc), 6)
    return out


def trial_lineage(candidate: Candidate, applied: list[str]) -> str:
    """Where a trial's weights came from, in a few words (the portal's ``lineage`` column)."""
    if candidate.parent is None:
        return "from scratch"
    if applied:
        return f"{candidate.parent} + {', '.join(applied)}"
    return f"continues {candidate.parent}"


def trial_summary(candidate: Candidate, arch: Architecture, applied: list[str]) -> str:
    """One line for the portal's trial table: the role, the layers, the parameters and the morphisms applied,
    e.g. ``child: conv3x3-32 > maxpool > conv3x3-64 > ... > fc-10 | 94,186 params | widen(node=conv2, ...)``."""
    role = f"{candidate.role} (train+val)" if candidate.train_on == "train+val" else candidate.role
    text = f"{role}: {summarize(arch)}"
    return f"{text} | {', '.join(applied)}" if applied else text
