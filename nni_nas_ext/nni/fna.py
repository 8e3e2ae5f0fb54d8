"""FNA under NNI: ``nnictl create`` (tuner :class:`FnaTuner`) and the Python API (:func:`build_fna`).

Fang et al., *Fast Neural Network Adaptation via Parameter Remapping and Architecture Search*, ICLR 2020.
The pipeline (seed -> architecture adaptation -> parameter adaptation, optional baselines) is the pure
ask/tell :class:`~nni_nas_ext.strategies.fna.FnaPipeline`; NNI sees:

* the model space :class:`~nni_nas_ext.nni.mbconv_space.FnaModelSpace`: one custom mutable, the job as JSON;
* the evaluator: ``FunctionalEvaluator(train_fna_job, task=..., adaptation=...)``, which runs
  :func:`nni_nas_ext.trial_code.fna_trial.run_fna_job` in each trial;
* the strategy: :class:`~nni_nas_ext.nni.nas_strategy.MorphismStrategy` hosting the pipeline (it drives any
  ask/tell search whose proposals carry ``id``/``role``/``step``/``parent``/``epochs``/``to_dict`` and whose
  results name their job; reused unchanged);
* under nnictl, the dispatcher bridge :class:`FnaTuner` (``className: nni_nas_ext.nni.fna.FnaTuner``).

``classArgs`` (one flat mapping) are the keys of three typed configurations, validated before anything
runs (unknown keys with close matches, wrong types, ranges: the message names the key, the value and what
is allowed): :class:`~nni_nas_ext.strategies.fna.FnaConfig` (seed checkpoint, epochs of each phase,
baselines), :class:`~nni_nas_ext.trial_code.fna_trial.FnaTaskConfig` (datasets, limits, width, space,
training, threads) and :class:`~nni_nas_ext.trial_code.fna_adaptation.AdaptationConfig` without ``epochs``
(which is ``epochs_adapt``): lambda (``cost_lambda``), learning rates, warm-up... ``seed`` and
``batch_size`` go to every configuration that has them.

Import-light: nnictl's dispatcher imports this module and must connect to the manager within 10 s; torch
and ``nni.nas`` are imported when the search is built.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .dispatcher import BridgeClassArgsValidator, StrategyBridge

__all__ = ["FnaClassArgsValidator", "FnaTuner", "build_fna", "check_seed_checkpoint", "fna_settings",
           "split_fna_settings"]

#: AdaptationConfig keys that classArgs do not set directly (``epochs`` is ``epochs_adapt``).
_ADAPTATION_EXCLUDED = frozenset({"epochs"})


def _classes() -> tuple[type, type, type]:
    from nni_nas_ext.strategies.fna import FnaConfig
    from nni_nas_ext.trial_code.fna_adaptation import AdaptationConfig
    from nni_nas_ext.trial_code.fna_trial import FnaTaskConfig

    return FnaConfig, FnaTaskConfig, AdaptationConfig


def split_fna_settings(settings: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    """Validate flat settings (``classArgs``) into ``(FnaConfig, FnaTaskConfig, AdaptationConfig)``.

    Raises
    ------
    ConfigError
        Naming the key, the value and what is allowed (unknown keys get close matches).
    """
    from nni_nas_ext.core.config import ConfigError, parse_config

    settings = dict(settings or {})
    fna_cls, task_cls, adapt_cls = _classes()
    owners: dict[str, list[type]] = {}
    for cls in (fna_cls, task_cls, adapt_cls):
        for f in dataclasses.fields(cls):
            if f.init and not (cls is adapt_cls and f.name in _ADAPTATION_EXCLUDED):
                owners.setdefault(f.name, []).append(cls)
    parts: dict[type, dict[str, Any]] = {fna_cls: {}, task_cls: {}, adapt_cls: {}}
    for key, value in settings.items():
        if key not in owners:
            close = difflib.get_close_matches(str(key), list(owners), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
            raise ConfigError(f"FNA: unknown setting {key!r}{hint} Known settings are {sorted(owners)}.",
                              key=str(key), value=value)
        for cls in owners[key]:
            parts[cls][key] = value
    fna = parse_config(fna_cls, parts[fna_cls])
    task = parse_config(task_cls, parts[task_cls])
    adaptation_values = {"batch_size": task.batch_size, "seed": fna.seed, **parts[adapt_cls],
                         "epochs": fna.epochs_adapt}
    try:
        adaptation = parse_config(adapt_cls, adaptation_values)
    except ConfigError as exc:
        if exc.key == "warmup_epochs":
            raise ConfigError(f"FNA: warmup_epochs < epochs_adapt must hold (at least one epoch updates the "
                              f"architecture), but got warmup_epochs={adaptation_values.get('warmup_epochs')}, "
                              f"epochs_adapt={fna.epochs_adapt}; lower warmup_epochs or raise epochs_adapt",
                              key="warmup_epochs", value=adaptation_values.get("warmup_epochs")) from None
        raise
    return fna, task, adaptation


def fna_settings() -> list[tuple[str, str, str, str, str]]:
    """Every classArgs key as (name, type, default, range, doc), for the README and ``--help``."""
    from nni_nas_ext.core.config import describe_config

    fna_cls, task_cls, adapt_cls = _classes()
    rows = [tuple(r) for r in describe_config(fna_cls)] + [tuple(r) for r in describe_config(task_cls)]
    seen = {r[0] for r in rows}
    rows += [tuple(r) for r in describe_config(adapt_cls) if r.name not in seen and r.name not in _ADAPTATION_EXCLUDED]
    return rows  # type: ignore[return-value]


def check_seed_checkpoint(path: str, input_size: int) -> None:
    """Refuse a ``seed_checkpoint`` that is not a file or that FNA's seed loader cannot use, naming the key."""
    from nni_nas_ext.core.config import ConfigError
    from nni_nas_ext.trial_code.fna_trial import load_seed_checkpoint

    if not Path(path).is_file():
        raise ConfigError(f"FNA: seed_checkpoint={path!r} is not a file: give the absolute path of a torchvision "
                          "mobilenet_v2 state_dict or of a checkpoint of this project, or leave it out to train "
                          "the seed on source_dataset", key="seed_checkpoint", value=path)
    try:
        load_seed_checkpoint(path, input_size=input_size)
    except ValueError as exc:
        raise ConfigError(f"FNA: seed_checkpoint={path!r} cannot be used: {exc}", key="seed_checkpoint",
                          value=path) from None


def build_fna(settings: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    """``(model_space, evaluator, strategy)`` of the FNA pipeline with these settings.

    Loads the datasets it needs once (the target; the source when the seed is trained here), so missing
    data stops the search at once with the message that says where it looked; checks that a given
    ``seed_checkpoint`` loads.

    Example
    -------
    >>> from nni.nas.experiment import NasExperiment           # doctest: +SKIP
    >>> space, evaluator, strategy = build_fna({"target_dataset": "digits", "checkpoint_dir": "/tmp/fna"})
    >>> NasExperiment(space, evaluator, strategy).run(port=8081)
    >>> strategy.search.summary()
    """
    from nni_nas_ext.strategies.fna import FnaPipeline
    from nni_nas_ext.trial_code.datasets import load_dataset

    from .mbconv_space import FnaModelSpace, make_fna_evaluator
    from .nas_strategy import MorphismStrategy
    from .search import with_middleware

    fna, task, adaptation = split_fna_settings(settings)
    from .search import _check_checkpoint_dir

    _check_checkpoint_dir(task.checkpoint_dir)
    target = load_dataset(task.dataset_spec("target"))
    if fna.seed_checkpoint is None:
        load_dataset(task.dataset_spec("source"))
    else:
        check_seed_checkpoint(fna.seed_checkpoint, target.input_shape[1])
    adaptation_args = {k: v for k, v in adaptation.to_dict().items() if k not in _ADAPTATION_EXCLUDED}
    return (FnaModelSpace(), make_fna_evaluator(task.to_dict(), adaptation_args),
            MorphismStrategy(with_middleware(FnaPipeline(fna))))


class FnaClassArgsValidator(BridgeClassArgsValidator):
    """Validates the ``classArgs`` of :class:`FnaTuner` (every key, type and range; errors name key, value, remedy)."""

    def validate(self, class_args: dict[str, Any]) -> None:
        split_fna_settings(class_args)


class FnaTuner(StrategyBridge):
    """FNA (Fang et al., ICLR 2020) under nnictl: seed, architecture adaptation, parameter adaptation as trials."""

    class_args_validator = FnaClassArgsValidator

    def build(self, class_args: dict[str, Any]) -> tuple[Any, Any, Any]:
        return build_fna(class_args)


def __getattr__(name: str) -> Any:
    """``FnaModelSpace``, ``FnaJobMutable``, ``train_fna_job`` and ``MBConvModelSpace`` on first use (they import
    torch and ``nni.nas``, which this module must not import when the dispatcher starts)."""
    if name in ("FnaModelSpace", "FnaJobMutable", "train_fna_job", "make_fna_evaluator", "MBConvModelSpace"):
        from . import mbconv_space

        return getattr(mbconv_space, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
