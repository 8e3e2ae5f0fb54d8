"""NNI's own ``Random`` and ``RegularizedEvolution`` strategies over :class:`~.cnn_space.ConvStageSpace`.

:func:`build_nni_strategy_search` turns one flat mapping of settings (the ``classArgs`` of
:class:`nni_nas_ext.nni.tuners.NniStrategyTuner`) into ``(model_space, evaluator, strategy)`` for the
dispatcher bridge, which runs them under ``nnictl`` as it runs our searches. The keys are those of three
typed configurations (``seed`` goes to both the strategy and the trials):

* :class:`NniStrategyConfig` -- which NNI strategy, its parameters (NNI's names and defaults), epochs, and two
  options of the trials for the multi-objective benchmark, off by default: the size-penalised reward
  (``reward_size_weight``) and keeping the trained weights (``keep_weights``; see
  :mod:`nni_nas_ext.nni.baselines.cnn_space`);
* :class:`~nni_nas_ext.search_spaces.cnn_space.CnnSpaceConfig` -- the choices of the space;
* :class:`~nni_nas_ext.trial_code.trial.TaskConfig` -- the trials (dataset, split, lr, batch size, threads...),
  without the checkpoint keys (these trials keep no weights to inherit; ``keep_weights`` keeps them in the
  experiment's own store).

The strategies are NNI's, unchanged: ``Random`` samples uniformly (``nni/nas/strategy/bruteforce.py``);
``RegularizedEvolution`` is aging evolution (Real et al., *Regularized Evolution for Image Classifier
Architecture Search*, AAAI 2019, Algorithm 1; ``nni/nas/strategy/evolution.py``). Both run until NNI's
budget (``maxTrialNumber`` / ``maxExperimentDuration``) ends, or, with ``dedup``, the space is exhausted. They
maximise the trials' ``default``: the validation accuracy, or with ``reward_size_weight`` w > 0 the reward
``val_acc - w * log10(params)`` (MnasNet-style, Tan et al. CVPR 2019; the accuracy is then reported as
``val_acc``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from nni_nas_ext.core.config import Config, ConfigError, option, parse_config
from nni_nas_ext.search_spaces.cnn_space import CnnSpaceConfig

__all__ = ["NNI_STRATEGIES", "NniStrategyConfig", "build_nni_strategy_search", "split_strategy_settings"]

#: Our names of NNI's strategies.
NNI_STRATEGIES = ("random", "regularized_evolution")
#: TaskConfig keys these trials do not use.
_UNUSED_TASK_KEYS = frozenset({"checkpoint_dir", "calibration_size", "distill_weight", "distill_temperature"})
_EVOLUTION_ONLY = ("population_size", "sample_size", "mutation_prob", "crossover")


@dataclass(frozen=True)
class NniStrategyConfig(Config):
    """Which NNI strategy runs, with its parameters; ``None``: NNI's default (given in each doc)."""

    config_name: ClassVar[str] = "nni_strategy"

    strategy: str = option(choices=NNI_STRATEGIES,
                           doc="NNI's Random (uniform sampling) or RegularizedEvolution (Real et al. 2019)")
    epochs: int = option(2, minimum=0, maximum=100_000,
                         doc="epochs of the one cosine cycle that trains every sample from scratch")
    population_size: Optional[int] = option(None, minimum=1, maximum=1_000_000,
                                            doc="regularized_evolution: individuals kept (NNI: 100; the first "
                                                "population_size samples are random)")
    sample_size: Optional[int] = option(None, minimum=1, maximum=1_000_000,
                                        doc="regularized_evolution: tournament size, <= population_size (NNI: 25)")
    mutation_prob: Optional[float] = option(None, minimum=0.0, maximum=1.0,
                                            doc="regularized_evolution: probability to mutate each choice (NNI: 0.05)")
    crossover: Optional[bool] = option(None, doc="regularized_evolution: cross two tournament winners (NNI: false)")
    dedup: bool = option(True, doc="never sample one architecture twice (NNI: true)")
    reward_size_weight: float = option(
        0.0, minimum=0.0, maximum=1.0,
        doc="w > 0: the trials report default = val_acc - w * log10(params) (a MnasNet-style size-penalised "
            "reward, the accuracy as val_acc), which the strategy maximises; 0: the validation accuracy (not NNI's)")
    keep_weights: bool = option(
        False, doc="keep each trial's trained weights in <experiment folder>/checkpoints (safe format), named by "
                   "the result's 'weights' (not NNI's)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1, doc="seed of NNI's strategy and of the trials")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strategy == "random":
            given = [k for k in _EVOLUTION_ONLY if getattr(self, k) is not None]
            if given:
                raise ConfigError(f"nni_strategy: {given} apply to strategy 'regularized_evolution' only, but "
                                  f"strategy is 'random'; remove them or choose regularized_evolution",
                                  key=given[0], value=getattr(self, given[0]))
        else:
            population = 100 if self.population_size is None else self.population_size
            sample = 25 if self.sample_size is None else self.sample_size
            if sample > population:
                raise ConfigError(f"nni_strategy: sample_size <= population_size must hold, but got "
                                  f"sample_size={sample}, population_size={population} (NNI's defaults: 25 and 100)",
                                  key="sample_size", value=sample)

    def create(self) -> Any:
        """NNI's strategy object."""
        from nni.nas.strategy import Random, RegularizedEvolution

        if self.strategy == "random":
            return Random(dedup=self.dedup, seed=self.seed)
        given = {k: getattr(self, k) for k in _EVOLUTION_ONLY if getattr(self, k) is not None}
        return RegularizedEvolution(dedup=self.dedup, seed=self.seed, **given)


def _task_config() -> type[Config]:
    from nni_nas_ext.trial_code.trial import TaskConfig

    return TaskConfig


def split_strategy_settings(settings: Mapping[str, Any] | None) -> tuple[NniStrategyConfig, CnnSpaceConfig, Config]:
    """Validate a flat mapping of settings into (strategy, space, task) configurations.

    Raises
    ------
    ConfigError
        Naming the unknown key (with close matches), or the key, value and what is allowed.
    """
    settings = dict(settings or {})
    classes: tuple[type[Config], ...] = (NniStrategyConfig, CnnSpaceConfig, _task_config())
    owners: dict[str, list[type[Config]]] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.init and not (cls is classes[2] and f.name in _UNUSED_TASK_KEYS):
                owners.setdefault(f.name, []).append(cls)
    parts: dict[type[Config], dict[str, Any]] = {cls: {} for cls in classes}
    for key, value in settings.items():
        if key in _UNUSED_TASK_KEYS:
            raise ConfigError(f"{key!r} is not a setting of NNI's strategies: their trials keep no checkpoints "
                              f"(keep_weights: in the experiment's own folder), measure no function preservation "
                              f"and train from scratch (no parent to distil from); remove it", key=key, value=value)
        if key not in owners:
            close = difflib.get_close_matches(str(key), list(owners), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "."
            raise ConfigError(f"unknown setting {key!r}{hint} Known settings are {sorted(owners)}.", key=str(key),
                              value=value)
        for cls in owners[key]:
            parts[cls][key] = value
    if "strategy" not in settings:
        raise ConfigError(f"the setting 'strategy' is required: one of {list(NNI_STRATEGIES)}", key="strategy")
    strategy, space, task = (parse_config(cls, parts[cls]) for cls in classes)
    return strategy, space, task  # type: ignore[return-value]


def build_nni_strategy_search(settings: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    """``(model_space, evaluator, strategy)``: NNI's strategy over :class:`~.cnn_space.ConvStageSpace`.

    Loads the dataset once, to size the space (missing data stops the experiment at its start with the
    message that says where it looked).
    """
    from nni_nas_ext.trial_code.datasets import load_dataset

    from .cnn_space import ConvStageSpace, make_cnn_evaluator

    config, space_config, task = split_strategy_settings(settings)
    data = load_dataset(task.dataset_spec())  # type: ignore[attr-defined]
    space = ConvStageSpace(tuple(data.input_shape), data.num_classes, n_stages=space_config.n_stages,
                           depths=space_config.depths, widths=space_config.widths, kernels=space_config.kernels,
                           skip=space_config.skip)
    evaluator = make_cnn_evaluator(task.to_dict(), config.epochs, reward_size_weight=config.reward_size_weight,
                                   keep_weights=config.keep_weights)
    return space, evaluator, config.create()
