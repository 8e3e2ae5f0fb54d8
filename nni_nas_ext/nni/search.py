"""Our searches wired into NNI by name: settings, model space, evaluator, strategy.

:func:`build_search` turns a strategy name (one of :func:`nni_nas_ext.strategies.list_strategies`: our searches
of the registry :data:`nni_nas_ext.registry.SEARCHES`) and one flat mapping of settings (NNI's ``classArgs``, or
keyword arguments in a notebook) into the three things ``nni.nas`` needs; :func:`build_nash` is it for NASH. The
keys are those of three typed configurations (a key that two of them share, ``seed``, goes to both):

* the strategy's configuration, e.g. :class:`~nni_nas_ext.strategies.nash.NashConfig` (steps, neighbours...);
* :class:`~nni_nas_ext.trial_code.trial.TaskConfig` -- the trials (dataset, optimiser, checkpoints...);
* :class:`SeedConfig` -- the seed network.

An unknown key, a wrong type or an out-of-range value raises :class:`~nni_nas_ext.core.config.ConfigError`
naming the key, the value and what is allowed, before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nni_nas_ext.core import Architecture
from nni_nas_ext.core.config import Config, ConfigError, describe_config, option, parse_config
from nni_nas_ext.search_spaces import create_seed
from nni_nas_ext.strategies import strategy_classes

__all__ = ["SeedConfig", "build_nash", "build_search", "run_in_process", "search_settings", "split_settings",
           "with_middleware"]


@dataclass(frozen=True)
class SeedConfig(Config):
    """The seed network; its input shape and class count come from the dataset."""

    config_name: ClassVar[str] = "seed"

    seed_network: str = option("nash", choices=["nash", "plain", "cells"],
                               doc="nash: conv-pool-conv-pool-conv-gap-fc (NASH's seed); plain: a plain CNN; cells: "
                                   "stages of plain cells between markers (Path-level EAS' seed, its default)")
    seed_widths: tuple[int, ...] = option((8, 16, 16), minimum=1, maximum=4096, non_empty=True,
                                          doc="nash seed: the widths of its three convolutions; cells seed: the "
                                              "width of each stage (the stem has the first)")
    seed_depth: int = option(4, minimum=2, maximum=200, doc="plain seed: weight layers")
    seed_width: int = option(8, minimum=1, maximum=4096, doc="plain seed: conv width")
    seed_cells_per_stage: int = option(2, minimum=1, maximum=64, doc="cells seed: cells per stage")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed_network == "nash" and len(self.seed_widths) != 3:
            raise ConfigError(f"seed: 'seed_widths' must have 3 items (one per convolution of the NASH seed), "
                              f"but got {list(self.seed_widths)}", key="seed_widths", value=list(self.seed_widths))

    def build(self, input_shape: tuple[int, int, int], num_classes: int) -> Architecture:
        if self.seed_network == "cells":
            return create_seed("cells", input_shape=input_shape, num_classes=num_classes, widths=self.seed_widths,
                               cells_per_stage=self.seed_cells_per_stage, stem_width=self.seed_widths[0])
        if self.seed_network == "nash":
            return create_seed("nash", input_shape=input_shape, num_classes=num_classes, widths=self.seed_widths)
        stages = 1 if min(input_shape[1:]) < 16 else 2
        return create_seed("plain", depth=self.seed_depth, input_shape=input_shape, num_classes=num_classes,
                           width=self.seed_width, stages=stages)


def _task_config() -> type[Config]:
    from nni_nas_ext.trial_code.trial import TaskConfig  # torch-heavy: imported when needed

    return TaskConfig


def split_settings(settings: Mapping[str, Any] | None, strategy: str = "nash") -> tuple[Config, Config, SeedConfig]:
    """Validate a flat mapping of settings into (strategy, task, seed) configurations."""
    settings = dict(settings or {})
    classes = (strategy_classes(strategy)[0], _task_config(), SeedConfig)
    owners: dict[str, list[type]] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.init:
                owners.setdefault(f.name, []).append(cls)
    parts: dict[type, dict[str, Any]] = {cls: {} for cls in classes}
    for key, value in settings.items():
        if key not in owners:
            close = difflib.get_close_matches(str(key), list(owners), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
            raise ConfigError(f"unknown setting {key!r}{hint} Known settings are {sorted(owners)}.", key=str(key),
                              value=value)
        for cls in owners[key]:  # "seed" seeds both the search and the trials
            parts[cls][key] = value
    needs = getattr(classes[0], "seed_network", None)  # a search that grows cells needs a seed that has them
    if needs is not None:
        given = parts[SeedConfig].setdefault("seed_network", needs)
        if given != needs:
            raise ConfigError(f"{strategy}: 'seed_network' must be {needs!r} (the search transforms the seed's cells), "
                              f"but got {given!r}; remove the key or set it to {needs!r}", key="seed_network",
                              value=given)
    search, task, seed = (parse_config(cls, parts[cls]) for cls in classes)
    search.check_task(task)  # a search that needs something of the trials says so (Config.check_task)
    return search, task, seed  # type: ignore[return-value]


def search_settings(strategy: str = "nash") -> list[tuple[str, str, str, str, str]]:
    """Every setting as (name, type, default, range, doc), for the README and ``--help``."""
    classes = (strategy_classes(strategy)[0], _task_config(), SeedConfig)
    return [tuple(row) for cls in classes for row in describe_config(cls)]  # type: ignore[misc]


def build_search(strategy: str, settings: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    """``(model_space, evaluator, strategy)`` for the search named ``strategy`` with these settings.

    Loads the dataset once (to size the seed network, and so that missing data stops the search at once
    with the message that says where it looked). A search whose configuration names a ``teacher`` (N2N) starts
    from that network instead of the seed: its weights are copied into the checkpoint store first
    (:func:`~nni_nas_ext.nni.n2n.import_teacher`).
    """
    from nni_nas_ext.trial_code.datasets import load_dataset

    from .evaluator import make_evaluator
    from .space import MorphismModelSpace
    from .nas_strategy import MorphismStrategy

    config, task, seed_config = split_settings(settings, strategy)
    _check_checkpoint_dir(task.checkpoint_dir)  # type: ignore[attr-defined]
    data = load_dataset(task.dataset_spec())  # type: ignore[attr-defined]
    teacher = getattr(config, "teacher", None)
    if teacher is not None:
        from .n2n import import_teacher

        seed = import_teacher(teacher, task.checkpoint_dir, data.input_shape,  # type: ignore[attr-defined]
                              data.num_classes)
    else:
        seed = seed_config.build(data.input_shape, data.num_classes)
    search = strategy_classes(strategy)[1](seed, config)
    return MorphismModelSpace(seed), make_evaluator(task.to_dict()), MorphismStrategy(with_middleware(search))


def run_in_process(strategy: str, settings: Mapping[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """Run the search named ``strategy`` to its end in this process, through NNI's sequential engine (one trial at
    a time, no nnictl, no portal); ``(its summary, the NNI strategy)`` (the strategy's ``search`` is the search
    under its middleware). The experiment is stopped whatever happens.
    """
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.experiment.config import SequentialEngineConfig

    space, evaluator, nni_strategy = build_search(strategy, settings)
    config = NasExperimentConfig("sequential", "simplified", "local")
    config.execution_engine = SequentialEngineConfig(continue_on_failure=True)
    experiment = NasExperiment(space, evaluator, nni_strategy, config)
    try:
        experiment.run(wait_completion=True)
        summary = nni_strategy.search.summary()
    finally:
        experiment.stop()
    return summary, nni_strategy


def with_middleware(search: Any) -> Any:
    """``search`` as the NNI adapters run it: a training it did before is answered, not run again
    (:class:`~nni_nas_ext.strategies.middleware.Deduplication`), and a trial lost without a result is run once more
    before the search hears of it (:class:`~nni_nas_ext.strategies.middleware.FailureHandler`)."""
    from nni_nas_ext.strategies.middleware import Deduplication, FailureHandler, chain

    return chain(search, Deduplication, FailureHandler)


def _check_checkpoint_dir(path: str | None) -> None:
    """Refuse, at the search's start, a ``checkpoint_dir`` the trials could not write (a file, a read-only
    or system folder): otherwise the first trial would fail minutes later without naming the key."""
    from nni_nas_ext.trial_code.checkpoints import checkpoint_dir_unusable

    problem = checkpoint_dir_unusable(path) if path else None
    if problem is not None:
        raise ConfigError(f"task: checkpoint_dir {problem}", key="checkpoint_dir", value=path)


def build_nash(settings: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    """NASH hill climbing (Elsken, Metzen, Hutter 2017): :func:`build_search` ``("nash", settings)``."""
    return build_search("nash", settings)
