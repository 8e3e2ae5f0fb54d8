"""What ``python -m nni_nas_ext run`` checks before ``nnictl create`` starts anything.

NNI 3.0's ``nnictl create`` validates only its own schema; our tuner's ``classArgs`` are judged by the
dispatcher, seconds after the portal came up, and a failure there reaches only a log file. Everything that can
be checked on this machine is checked here first, in this order, and the first problem is raised as a
:class:`PreflightError` whose message names the file, the key, the value and what is allowed or the remedy:

1. the file is YAML, its top level a mapping, ``tuner`` a mapping, ``tuner.classArgs`` a mapping;
2. NNI's own experiment schema (``nni.experiment.config.ExperimentConfig``: unknown fields, types);
3. a tuner of ours (:data:`nni_nas_ext.nni.tuners.TUNERS`, the tuners of the registry of searches
   :data:`nni_nas_ext.registry.SEARCHES`, by ``name`` or ``className``; a name or class close to one of ours is
   refused with the match) has valid ``classArgs``: its own validator (unknown keys with close matches, types,
   ranges, NaN/inf, empty lists);
4. on NNI's remote training service, what a search needs there (:func:`~nni_nas_ext.nni.remote.remote_problems`:
   ``nniManagerIp``, a shared ``checkpoint_dir``, the key file in the ``trialCommand``, absolute paths, an
   uploadable ``trialCodeDirectory``);
5. with ``resources=True``: the datasets the search needs exist and load (the same
   :func:`~nni_nas_ext.trial_code.datasets.load_dataset` the dispatcher calls), FNA's ``seed_checkpoint``
   loads, N2N's ``teacher`` loads and fits the dataset, and ``checkpoint_dir`` is a folder this user can write or
   create and not a system folder (:func:`~nni_nas_ext.trial_code.checkpoints.checkpoint_dir_unusable`).

A tuner that is not ours passes steps 3 to 5 unjudged (nnictl and that tuner judge it).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PreflightError", "check_experiment_config"]


class PreflightError(ValueError):
    """The experiment config would fail after ``nnictl create``; the message says where, what and the remedy."""


@dataclass(frozen=True)
class _Needs:
    """What a validated search needs on this machine: datasets (key, root key, spec), folders, files."""

    datasets: list[tuple[str, str, Any]] = field(default_factory=list)
    checkpoint_dir: str | None = None
    seed_checkpoint: str | None = None
    teacher: str | None = None  # N2N's given teacher (an export folder or a checkpoint)


def check_experiment_config(path: str | Path, *, resources: bool = True) -> None:
    """Check the experiment config at ``path`` as the module docstring says; ``resources=False`` skips step 5.

    Raises
    ------
    PreflightError
        For the first problem found.
    """
    config = Path(path)
    data = _read(config)
    tuner = data.get("tuner")
    if tuner is None:
        return  # NNI's schema (below) and nnictl judge a config without a tuner
    if not isinstance(tuner, Mapping):
        raise PreflightError(f"{config}: 'tuner' must be a mapping such as {{name: NashHillClimbing, classArgs: "
                             f"{{...}}}}, but got {_show(tuner)} ({type(tuner).__name__})")
    class_args = tuner.get("classArgs")
    if class_args is None:
        class_args = {}
    if not isinstance(class_args, Mapping):
        raise PreflightError(f"{config}: 'tuner.classArgs' must be a mapping of setting names to values, e.g. "
                             f"{{n_steps: 2, dataset: digits}}, but got {_show(class_args)} "
                             f"({type(class_args).__name__}); write one 'key: value' per line under classArgs")
    _check_nni_schema(config, data)
    validator = _our_validator(config, tuner)
    if validator is None:
        return
    try:
        needs = _validate(validator, dict(class_args))
    except ValueError as exc:  # ConfigError included
        raise PreflightError(f"{config}: tuner.classArgs: {exc}") from None
    from .remote import remote_problems

    problems = remote_problems(data, class_args, base=config.parent)
    if problems:
        raise PreflightError(f"{config}: this search cannot run on the remote training service:\n- "
                             + "\n- ".join(problems))
    if resources:
        _check_resources(config, needs)


def _read(config: Path) -> dict[str, Any]:
    import yaml

    try:
        text = config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PreflightError(f"{config}: cannot be read ({exc}); give the path of a UTF-8 YAML experiment config"
                             ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = " ".join(x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        raise PreflightError(f"{config}: not valid YAML{at}: {problem or exc}; fix the syntax there (YAML nests "
                             f"by indentation with spaces; 'key: value' needs a space after the colon)") from None
    if not isinstance(data, dict):
        raise PreflightError(f"{config}: the top level must be a mapping of NNI's experiment fields "
                             f"(experimentName, trialCommand, tuner, ...), but got {_show(data)} "
                             f"({type(data).__name__}); start from config.yml")
    return data


def _check_nni_schema(config: Path, data: dict[str, Any]) -> None:
    """NNI's own validation of the experiment config (what ``nnictl create`` runs first)."""
    import dataclasses

    from nni.experiment.config import ExperimentConfig, utils

    known = {utils.case_insensitive(f.name): utils.camel_case(f.name) for f in dataclasses.fields(ExperimentConfig)
             if not f.name.startswith("_")}
    for key in data:
        if not isinstance(key, str) or utils.case_insensitive(key) not in known:
            close = difflib.get_close_matches(utils.case_insensitive(str(key)), list(known), n=2, cutoff=0.75)
            hint = f"; did you mean {' or '.join(repr(known[c]) for c in close)}?" if close else ""
            raise PreflightError(f"{config}: {key!r} is not a field of NNI's experiment config{hint} The fields "
                                 f"are {sorted(known.values())}")
    utils.set_base_path(config.resolve().parent)  # relative paths are relative to the config, as for nnictl
    try:
        ExperimentConfig(**data).validate()
    except Exception as exc:  # noqa: BLE001 - NNI raises ValueError, AttributeError, TypeError, AssertionError
        raise PreflightError(f"{config}: not a valid NNI experiment config: {type(exc).__name__}: {exc}") from None
    finally:
        utils.unset_base_path()


def _our_validator(config: Path, tuner: Mapping[str, Any]) -> Any | None:
    """The classArgs validator of the tuner the config names, ``None`` if it is not ours."""
    from .tuners import TUNERS

    names = {name.lower(): (name, validator) for name, (_, validator) in TUNERS.items()}
    classes = {f"{bridge.__module__}.{bridge.__qualname__}": validator for bridge, validator in TUNERS.values()}
    name, class_name = tuner.get("name"), tuner.get("className")
    if name is not None:
        if str(name).lower() in names:
            return names[str(name).lower()][1]()
        close = difflib.get_close_matches(str(name).lower(), list(names), n=2, cutoff=0.75)
        if close:
            raise PreflightError(f"{config}: tuner.name {name!r} is not a tuner; did you mean "
                                 f"{' or '.join(repr(names[c][0]) for c in close)}? This project's tuners are "
                                 f"{sorted(TUNERS)} (registered by `python -m nni_nas_ext setup`)")
        return None
    if class_name is not None:
        if str(class_name) in classes:
            return classes[str(class_name)]()
        if str(class_name).startswith("nni_nas_ext."):
            close = difflib.get_close_matches(str(class_name), list(classes), n=2)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise PreflightError(f"{config}: tuner.className {class_name!r} is not one of this project's tuners"
                                 f"{hint} They are {sorted(classes)}")
    return None


def _validate(validator: Any, class_args: dict[str, Any]) -> _Needs:
    """Run the tuner's validator; what the validated search needs (datasets, folders) for step 5."""
    from .fna import FnaClassArgsValidator, split_fna_settings
    from .tuners import NniStrategyClassArgsValidator, SearchClassArgsValidator

    validator.validate(class_args)
    if isinstance(validator, SearchClassArgsValidator):
        from .search import split_settings

        search, task, _ = split_settings(class_args, validator.search_name)
        teacher = getattr(search, "teacher", None)
        if teacher is not None:
            return _Needs([("dataset", "dataset_root", task.dataset_spec())], task.checkpoint_dir,  # type: ignore[attr-defined]
                          teacher=teacher)
    elif isinstance(validator, NniStrategyClassArgsValidator):
        from .baselines.nni_strategies import split_strategy_settings

        task = split_strategy_settings(class_args)[2]
    elif isinstance(validator, FnaClassArgsValidator):
        fna, task, _ = split_fna_settings(class_args)
        datasets = [("target_dataset", "target_root", task.dataset_spec("target"))]
        if fna.seed_checkpoint is None:
            datasets.append(("source_dataset", "source_root", task.dataset_spec("source")))
        return _Needs(datasets, task.checkpoint_dir, fna.seed_checkpoint)
    else:  # a tuner of ours without a known task: its validator is all we can run
        return _Needs()
    return _Needs([("dataset", "dataset_root", task.dataset_spec())], task.checkpoint_dir)


def _check_resources(config: Path, needs: _Needs) -> None:
    from nni_nas_ext.trial_code.checkpoints import checkpoint_dir_unusable
    from nni_nas_ext.trial_code.datasets import load_dataset

    if needs.checkpoint_dir is not None:
        problem = checkpoint_dir_unusable(needs.checkpoint_dir)
        if problem is not None:
            raise PreflightError(f"{config}: tuner.classArgs: checkpoint_dir {problem}")
    loaded: dict[Any, Any] = {}
    for key, root_key, spec in needs.datasets:
        if spec in loaded:
            continue
        try:
            loaded[spec] = load_dataset(spec)
        except Exception as exc:  # noqa: BLE001 - DatasetError, and whatever a damaged file raises
            raise PreflightError(f"{config}: tuner.classArgs: {key}={spec.name!r} ({root_key}={spec.root!r}) "
                                 f"cannot be loaded: {type(exc).__name__}: {exc}") from None
    if needs.seed_checkpoint is not None:
        from .fna import check_seed_checkpoint

        target = loaded[needs.datasets[0][2]]
        try:
            check_seed_checkpoint(needs.seed_checkpoint, target.input_shape[1])
        except ValueError as exc:
            raise PreflightError(f"{config}: tuner.classArgs: {exc}") from None
    if needs.teacher is not None:
        from .n2n import load_teacher

        data = loaded[needs.datasets[0][2]]
        try:
            arch = load_teacher(needs.teacher)[0]
        except ValueError as exc:
            raise PreflightError(f"{config}: tuner.classArgs: {exc}") from None
        if tuple(arch.input_shape) != tuple(data.input_shape) or arch.num_classes != data.num_classes:
            raise PreflightError(f"{config}: tuner.classArgs: teacher={needs.teacher!r} takes input "
                                 f"{tuple(arch.input_shape)} with {arch.num_classes} classes, but the dataset has "
                                 f"{tuple(data.input_shape)} with {data.num_classes}: give a teacher trained on it")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
