"""The trials of the FNA pipeline: train the seed, adapt the architecture, adapt the parameters.

Fang et al., *Fast Neural Network Adaptation via Parameter Remapping and Architecture Search*, ICLR 2020.
One function, :func:`run_fna_job`, runs one :class:`~nni_nas_ext.core.jobs.FnaJob`:

* ``seed``: a MobileNetV2 (:func:`nni_nas_ext.core.mbconv.mobilenet_v2`, ``width_mult``, the source
  images' size and channels) trained from scratch on the source dataset; its checkpoint is saved for the
  later jobs; reported: source validation accuracy (and source test accuracy, for information);
* ``adapt``: the seed's weights are moved to the target task (:func:`seed_for_target`), remapped into the
  super-network (:func:`nni_nas_ext.search_spaces.mbconv_supernet.remap_to_supernet`), and
  :func:`nni_nas_ext.trial_code.fna_adaptation.adapt` runs on the target's training split; every epoch
  reports the argmax path's validation accuracy and the expected MAdds; the final result names the
  derived architecture and choice;
* ``param``: parameter adaptation: remap again *from the seed* into the derived architecture
  (:func:`nni_nas_ext.core.remap.remap_state_dict`), measure its validation accuracy before fine-tuning,
  fine-tune (one cosine cycle, as every training of this project), evaluate the test set once;
* ``seed_finetune`` / ``scratch``: the baselines, same schedule: the seed architecture with the seed's
  weights, and the derived architecture from a fresh initialisation.

Final results are self-describing (``candidate`` = the job id, ``role``, ``arch_id``; NNI 3.0 may pair a
trial with another trial's parameters, field notes bug 1) and carry ``params``, ``madds`` and
``cpu_seconds`` (CPU time of the trial process: ``time.process_time``). A failure reports
``{"default": 0.0, "candidate": ..., "failed": reason}`` and raises :class:`~nni_nas_ext.trial_code.trial.TrialFailed`.

Seed checkpoints and the seed's move to the target task: :mod:`.fna_checkpoints` (its names are re-exported
here). Nothing is downloaded. Nothing here imports ``nni``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor

from nni_nas_ext.atomic import remove_stale_temporaries
from nni_nas_ext.core.config import Config, ConfigError, option, parse_config
from nni_nas_ext.core.jobs import FnaJob
from nni_nas_ext.core.mbconv import MBConvArchitecture, build_network, mobilenet_v2
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace
from nni_nas_ext.search_spaces.mbconv_supernet import MBConvSuperNet

from .checkpoints import checkpoint_dir_error
from .datasets import DatasetSpec, Splits, list_datasets, load_dataset
from .fna_adaptation import AdaptationConfig, AdaptationEpoch, adapt
from .fna_checkpoints import (
    LEGACY_CHECKPOINT_FORMAT, MBCONV_META_KEY, load_checkpoint, load_seed_checkpoint, save_checkpoint, seed_for_target,
)
from .training import EpochResult, Schedule, evaluate, select_device, train
from .trial import Reporter, TrialFailed, default_checkpoint_dir

__all__ = [
    "LEGACY_CHECKPOINT_FORMAT", "MBCONV_META_KEY", "FnaTaskConfig", "load_checkpoint", "load_seed_checkpoint",
    "run_fna_job", "save_checkpoint", "seed_for_target",
]

_log = logging.getLogger(__name__)



@dataclass(frozen=True)
class FnaTaskConfig(Config):
    """What every trial of an FNA pipeline shares: the two datasets, the seed's width, the space, training.

    ``lr`` .. ``weight_decay`` are the schedule of the seed's training and of every fine-tuning (parameter
    adaptation and the baselines): SGD with Nesterov momentum, one cosine cycle (as every training here).
    """

    config_name: ClassVar[str] = "fna-task"

    source_dataset: str = option("fashion-mnist", choices=list_datasets(),
                                 doc="the source task the seed is trained on (unless seed_checkpoint is given)")
    source_root: Optional[str] = option(None, doc="folder of the source dataset's files; null: its default location")
    source_limit: Optional[int] = option(3000, minimum=2, doc="use at most this many source training examples "
                                                              "(null: all)")
    target_dataset: str = option("mnist", choices=list_datasets(), doc="the target task the seed is adapted to")
    target_root: Optional[str] = option(None, doc="folder of the target dataset's files; null: its default location")
    target_limit: Optional[int] = option(3000, minimum=2, doc="use at most this many target training examples "
                                                              "(null: all)")
    val_fraction: float = option(0.2, minimum=0.01, maximum=0.5,
                                 doc="share of each training set held out for validation (fixed seed)")
    split_seed: int = option(0, minimum=0, doc="seed of the validation splits")
    width_mult: float = option(0.35, minimum=0.05, maximum=4.0,
                               doc="width multiplier of the MobileNetV2 seed (FNA: 1.0)")
    max_layers: int = option(4, minimum=1, maximum=8, doc="searchable layers per stage (FNA: 4)")
    kernels: tuple[int, ...] = option((3, 5, 7), minimum=1, maximum=15, non_empty=True, unique=True,
                                      doc="depthwise kernel sizes of the candidate ops, odd (FNA: 3, 5, 7)")
    expansions: tuple[int, ...] = option((3, 6), minimum=1, maximum=12, non_empty=True, unique=True,
                                         doc="expansion ratios of the candidate ops (FNA: 3, 6)")
    lr: float = option(0.05, minimum=1e-6, maximum=10.0,
                       doc="start of the cosine cycle of seed training and fine-tuning")
    lr_min: float = option(0.0, minimum=0.0, maximum=10.0, doc="end of the cosine cycle")
    batch_size: int = option(64, minimum=2, maximum=65536, doc="SGD batch size (also of the adaptation's steps)")
    momentum: float = option(0.9, minimum=0.0, maximum=0.999, doc="SGD momentum of seed training and fine-tuning")
    weight_decay: float = option(4e-5, minimum=0.0, maximum=1.0,
                                 doc="weight decay of seed training and fine-tuning, not on biases or BatchNorm "
                                     "(MobileNetV2: 4e-5)")
    checkpoint_dir: Optional[str] = option(None, doc="absolute folder for the seed's and fine-tuned checkpoints; "
                                                     "null: <experiment folder>/checkpoints")
    device: str = option("auto", choices=["auto", "cpu", "cuda"], doc="auto: CUDA when the trial has a GPU")
    threads: int = option(1, minimum=0, maximum=1024, doc="torch CPU threads per trial (0: torch's default)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1, doc="base seed of initialisation, shuffling and sampling")

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = None if self.checkpoint_dir is None else checkpoint_dir_error(self.checkpoint_dir)
        if problem is not None:
            raise ConfigError(f"fna-task: checkpoint_dir {problem}", key="checkpoint_dir", value=self.checkpoint_dir)
        if self.lr_min > self.lr:
            raise ConfigError(f"fna-task: lr_min <= lr must hold, but got lr_min={self.lr_min}, lr={self.lr}",
                              key="lr_min", value=self.lr_min)
        even = [k for k in self.kernels if k % 2 == 0]
        if even:
            raise ConfigError(f"fna-task: kernels must be odd (a centred depthwise kernel), but got {even[0]} in "
                              f"{list(self.kernels)}", key="kernels", value=list(self.kernels))
        for which in ("source", "target"):
            try:
                self.dataset_spec(which)
            except ValueError as exc:
                raise ConfigError(f"fna-task: {which}_dataset={getattr(self, f'{which}_dataset')!r} with {which}_root="
                                  f"{getattr(self, f'{which}_root')!r}: {exc} (root is the setting {which}_root)",
                                  key=f"{which}_dataset",
                                  value=getattr(self, f"{which}_dataset")) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FnaTaskConfig:
        return parse_config(cls, data)

    def dataset_spec(self, which: str) -> DatasetSpec:
        """The :class:`DatasetSpec` of ``"source"`` or ``"target"``."""
        return DatasetSpec(getattr(self, f"{which}_dataset"), getattr(self, f"{which}_root"), self.val_fraction,
                           self.split_seed, getattr(self, f"{which}_limit"))

    def schedule(self, epochs: int, seed: int) -> Schedule:
        return Schedule(epochs=epochs, lr=self.lr, lr_min=self.lr_min, batch_size=self.batch_size,
                        momentum=self.momentum, weight_decay=self.weight_decay, seed=seed)

    def space(self, seed: MBConvArchitecture) -> SuperNetSpace:
        """FNA's search space around ``seed`` with this configuration's slots and candidate ops."""
        return SuperNetSpace(seed, max_layers=self.max_layers, kernels=self.kernels, expansions=self.expansions)


# --------------------------------------------------------------------------------------------------
# The trial
# --------------------------------------------------------------------------------------------------


def _checkpoint_dir(task: FnaTaskConfig) -> Path:
    return Path(task.checkpoint_dir) if task.checkpoint_dir else default_checkpoint_dir()


def _writable_checkpoint_dir(task: FnaTaskConfig) -> Path:
    """:func:`_checkpoint_dir` for a job about to save, cleared of the stale temporaries of saves killed midway.

    A job killed while saving leaves ``.<job id>.pt.<random>.tmp`` behind; :func:`remove_stale_temporaries`
    removes those no write in progress can own and logs how many files and bytes went.
    """
    folder = _checkpoint_dir(task)
    remove_stale_temporaries(folder)
    return folder


def run_fna_job(job: FnaJob, task: FnaTaskConfig, adaptation: AdaptationConfig | Mapping[str, Any] | None,
                reporter: Reporter, *, data: Mapping[str, Splits] | None = None) -> dict[str, Any]:
    """Run one job of the FNA pipeline (module docstring) and return the final result it reported.

    ``adaptation``: the :class:`AdaptationConfig` (or its keys without ``epochs``, which is ``job.epochs``)
    of ``adapt`` jobs. ``data`` may hold already loaded ``"source"`` / ``"target"`` splits (tests,
    benchmarks); a ``dict`` is used as a cache (splits this job loads are added to it).

    Raises
    ------
    TrialFailed
        After reporting a failed result, when anything went wrong.
    """
    cpu0, t0 = time.process_time(), time.time()
    try:
        return _run(job, task, adaptation, reporter, data if isinstance(data, dict) else dict(data or {}), cpu0)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        _log.error("job %s failed: %s", job.id, reason, exc_info=True)
        reporter.final({"default": 0.0, "candidate": job.id, "role": job.role, "kind": job.kind,
                        "failed": reason[:2000], "cpu_seconds": round(time.process_time() - cpu0, 3),
                        "wall_seconds": round(time.time() - t0, 3)})
        raise TrialFailed(reason) from exc


def _adaptation_config(job: FnaJob, adaptation: AdaptationConfig | Mapping[str, Any] | None,
                       task: FnaTaskConfig) -> AdaptationConfig:
    if isinstance(adaptation, AdaptationConfig):
        return dataclasses.replace(adaptation, epochs=job.epochs)
    values = {"batch_size": task.batch_size, "seed": task.seed, **dict(adaptation or {}), "epochs": job.epochs}
    return parse_config(AdaptationConfig, values)


def _load(which: str, task: FnaTaskConfig, data: dict[str, Splits]) -> Splits:
    if which not in data:
        data[which] = load_dataset(task.dataset_spec(which))
        _log.info("%s: %s", which, data[which].describe())
    return data[which]


def _seed_weights(job: FnaJob, task: FnaTaskConfig, target: Splits) -> tuple[MBConvArchitecture, dict[str, Tensor]]:
    """The seed's architecture and weights, moved to the target task."""
    if job.parent is not None:
        path = _checkpoint_dir(task) / f"{job.parent}.pt"
        arch, state, _meta = load_checkpoint(path)
        _log.info("seed weights from job %s (%s)", job.parent, path)
    else:
        assert job.seed_checkpoint is not None
        arch, state = load_seed_checkpoint(job.seed_checkpoint, input_size=target.input_shape[1])
        _log.info("seed weights from %s: %s", job.seed_checkpoint, arch.id)
    return seed_for_target(arch, state, target.input_shape, target.num_classes, seed=task.seed)


def _run(job: FnaJob, task: FnaTaskConfig, adaptation: AdaptationConfig | Mapping[str, Any] | None,
         reporter: Reporter, data: dict[str, Splits], cpu0: float) -> dict[str, Any]:
    if task.threads:
        torch.set_num_threads(task.threads)
    device = select_device(task.device)
    torch.manual_seed(task.seed * 100_003 + job.serial)
    _log.info("FNA job %s (%s, %d epochs) on %s", job.id, job.kind, job.epochs, device)
    if job.kind == "seed":
        result = _train_seed(job, task, reporter, _load("source", task, data), device)
    elif job.kind == "adapt":
        result = _adapt(job, task, _adaptation_config(job, adaptation, task), reporter, _load("target", task, data),
                        device)
    else:
        result = _finetune(job, task, reporter, _load("target", task, data), device)
    result["cpu_seconds"] = round(time.process_time() - cpu0, 3)
    _log.info("final result of %s: %s", job.id, {k: v for k, v in result.items()
                                                  if k not in ("architecture", "probabilities", "history")})
    reporter.final(result)
    return result


def _common(job: FnaJob, arch: MBConvArchitecture) -> dict[str, Any]:
    return {"candidate": job.id, "role": job.role, "kind": job.kind, "arch_id": arch.id,
            "params": arch.num_parameters(), "madds": arch.num_madds(), "epochs": job.epochs}


def _epoch_reporter(job: FnaJob, reporter: Reporter, total: int) -> Any:
    def on_epoch(r: EpochResult) -> None:
        _log.info("epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f (%.1f s)", r.epoch, total, r.train_loss,
                  r.train_accuracy, r.val_accuracy if r.val_accuracy is not None else math.nan, r.seconds)
        reporter.intermediate({"default": r.val_accuracy, "candidate": job.id, "epoch": r.epoch,
                               "train_loss": round(r.train_loss, 6)})
    return on_epoch


def _train_seed(job: FnaJob, task: FnaTaskConfig, reporter: Reporter, source: Splits,
                device: torch.device) -> dict[str, Any]:
    c, h, _w = source.input_shape
    arch = mobilenet_v2(num_classes=source.num_classes, width_mult=task.width_mult, input_size=h, in_channels=c)
    module = build_network(arch).to(device)
    val_x, val_y = source.val_x.to(device), source.val_y.to(device)
    cpu = time.process_time()
    train(module, source.train_x.to(device), source.train_y.to(device),
          task.schedule(job.epochs, seed=task.seed * 100_003 + job.serial), validation=(val_x, val_y),
          on_epoch=_epoch_reporter(job, reporter, job.epochs))
    train_cpu = time.process_time() - cpu
    result = {"default": evaluate(module, val_x, val_y), **_common(job, arch),
              "dataset": source.spec.name, "source_test_acc": evaluate(module, source.test_x, source.test_y),
              "train_cpu_seconds": round(train_cpu, 3)}
    path = _writable_checkpoint_dir(task) / f"{job.id}.pt"
    save_checkpoint(path, arch, module.state_dict(), {"job": job.to_dict(), "val_acc": result["default"]})
    result["checkpoint"] = str(path)
    return result


def _adapt(job: FnaJob, task: FnaTaskConfig, config: AdaptationConfig, reporter: Reporter, target: Splits,
           device: torch.device) -> dict[str, Any]:
    from nni_nas_ext.search_spaces.mbconv_supernet import remap_to_supernet

    seed_arch, seed_state = _seed_weights(job, task, target)
    space = task.space(seed_arch)
    supernet = MBConvSuperNet(space)
    supernet.load_state_dict(remap_to_supernet(seed_arch, seed_state, space))
    supernet.to(device)
    val_x, val_y = target.val_x.to(device), target.val_y.to(device)
    seed_choice = _seed_choice(space)
    supernet.set_path(seed_choice)
    start_val_acc = evaluate(supernet, val_x, val_y)  # the seed's own path in the remapped super-network
    _log.info("super-network: %d slots, %d candidates each at most; seed path val acc %.4f", len(space.layer_slots()),
              max(len(space.ops(*s)) for s in space.layer_slots()), start_val_acc)

    def on_epoch(r: AdaptationEpoch) -> None:
        _log.info("adaptation epoch %d/%d%s: weight loss %.4f, arch loss %s, val acc %.4f, expected MAdds %.0f, "
                  "derived MAdds %d (%.1f s)", r.epoch, config.epochs, "" if r.arch_updates else " (warm-up)",
                  r.weight_loss, "-" if r.arch_loss is None else f"{r.arch_loss:.4f}", r.val_acc, r.expected_madds,
                  r.derived_madds, r.seconds)
        reporter.intermediate({"default": r.val_acc, "candidate": job.id, "epoch": r.epoch,
                               "expected_madds": round(r.expected_madds, 1), "derived_madds": r.derived_madds,
                               "weight_loss": round(r.weight_loss, 6), "arch_updates": r.arch_updates})

    cpu = time.process_time()
    outcome = adapt(supernet, space, target.train_x.to(device), target.train_y.to(device), val_x, val_y, config,
                    on_epoch=on_epoch)
    derived = outcome.architecture
    return {"default": outcome.history[-1].val_acc, **_common(job, derived), "architecture": derived.to_dict(),
            "choice": outcome.choice, "describe": derived.describe(), "seed_arch_id": seed_arch.id,
            "seed_params": seed_arch.num_parameters(), "seed_madds": seed_arch.num_madds(),
            "start_val_acc": start_val_acc, "expected_madds": outcome.history[-1].expected_madds,
            "probabilities": {k: [round(p, 4) for p in v] for k, v in outcome.probabilities.items()},
            "history": [{k: v for k, v in h.to_dict().items() if k != "choice"} for h in outcome.history],
            "adaptation": config.to_dict(), "train_cpu_seconds": round(time.process_time() - cpu, 3)}


def _seed_choice(space: SuperNetSpace) -> dict[str, int]:
    """The choice closest to the seed: its ops where it has layers, skips beyond its depth."""
    choice = {}
    for s, l in space.layer_slots():
        ops = space.ops(s, l)
        layers = space.seed.stages[s].layers
        want = layers[l] if l < len(layers) else None
        choice[space.label(s, l)] = ops.index(want) if want in ops else 0
    return choice


def _finetune(job: FnaJob, task: FnaTaskConfig, reporter: Reporter, target: Splits,
              device: torch.device) -> dict[str, Any]:
    from nni_nas_ext.core.remap import remap_state_dict

    seed_arch, seed_state = _seed_weights(job, task, target)
    if job.kind == "seed_finetune":
        arch, state = seed_arch, seed_state  # the seed as it is
    else:
        assert job.architecture is not None
        arch = MBConvArchitecture.from_dict(job.architecture)
        state = remap_state_dict(seed_arch, seed_state, arch) if job.kind == "param" else None
    module = build_network(arch)
    if state is not None:
        module.load_state_dict(state)
    module.to(device)
    val_x, val_y = target.val_x.to(device), target.val_y.to(device)
    start_val_acc = evaluate(module, val_x, val_y)
    _log.info("%s: %s, %d parameters, %d MAdds; val acc before fine-tuning %.4f", job.kind, arch.id,
              arch.num_parameters(), arch.num_madds(), start_val_acc)
    cpu = time.process_time()
    train(module, target.train_x.to(device), target.train_y.to(device),
          task.schedule(job.epochs, seed=task.seed * 100_003 + job.serial), validation=(val_x, val_y),
          on_epoch=_epoch_reporter(job, reporter, job.epochs))
    train_cpu = time.process_time() - cpu
    result = {"default": evaluate(module, val_x, val_y), **_common(job, arch), "start_val_acc": start_val_acc,
              "test_acc": evaluate(module, target.test_x.to(device), target.test_y.to(device)),
              "dataset": target.spec.name, "weights": "random init" if state is None else "remapped from the seed",
              "adapt_job": job.adapt, "train_cpu_seconds": round(train_cpu, 3)}
    path = _writable_checkpoint_dir(task) / f"{job.id}.pt"
    save_checkpoint(path, arch, module.state_dict(), {"job": job.to_dict(), "test_acc": result["test_acc"]})
    result["checkpoint"] = str(path)
    return result
