"""Network-transformation search strategies: NASH hill climbing, EAS, Path-level EAS, FNA, LEMONADE, N2N, random
baselines.

Strategies are pure: they propose jobs (:class:`Candidate` values; FNA's :class:`FnaJob` values) with ``ask()``
and learn results with ``tell()``, the interface :class:`~.base.SearchStrategy` declares in full; they never
import ``nni`` nor touch files. Deduplication and failure handling wrap them (:mod:`.middleware`). The registry
of searches (:data:`nni_nas_ext.registry.SEARCHES`) says which strategy class and typed configuration class a
name means; :func:`create_strategy` builds one of ours (:func:`list_strategies`) from NNI-style ``classArgs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.config import Config, ConfigRow, describe_config, parse_config
from nni_nas_ext.core.errors import unknown_name
from nni_nas_ext.registry import SEARCHES, get_search, list_searches, resolve

from .base import Budget, Job, SearchStrategy
from .eas import EasConfig, EasSearch, RandomNet2Net
from .fna import FnaConfig, FnaPipeline
from .lemonade import LemonadeConfig, LemonadeSearch
from .n2n import N2NConfig, N2NRandom, N2NSearch
from .nash import HillClimbing, NashConfig
from .nash_async import AsyncHillClimbing, AsyncNashConfig
from .path_eas import PathEasConfig, PathLevelEAS, PathLevelRandom
from .random_morphism import RandomMorphismConfig, RandomMorphismSearch

__all__ = [
    "NONCONFORMING", "AsyncHillClimbing", "AsyncNashConfig", "Budget", "EasConfig", "EasSearch", "FnaConfig",
    "FnaPipeline", "HillClimbing", "Job", "LemonadeConfig", "LemonadeSearch", "N2NConfig",
    "N2NRandom", "N2NSearch", "NashConfig", "PathEasConfig", "PathLevelEAS", "PathLevelRandom", "RandomMorphismConfig",
    "RandomMorphismSearch", "RandomNet2Net", "SearchStrategy", "create_strategy", "describe_strategy",
    "list_strategies", "strategy_classes",
]

#: Our searches that :func:`create_strategy` cannot build, with how they differ from :class:`SearchStrategy`.
NONCONFORMING: Mapping[str, str] = MappingProxyType({
    "fna": "FnaPipeline(config) takes no seed_architecture (FNA starts from a seed checkpoint or trains its seed "
           "as its first job) and its ask() returns FnaJob values (a SearchStrategy[FnaJob]), not Candidate values; "
           "build it with FnaPipeline(config), or run it with the nnictl tuner 'FNA'",
})


def list_strategies() -> list[str]:
    """Names of the strategies :func:`create_strategy` builds: our searches of the registry
    (``list_searches(ours=True)``) that follow :class:`SearchStrategy`, i.e. all but :data:`NONCONFORMING`."""
    return [name for name in list_searches(ours=True) if name not in NONCONFORMING]


def strategy_classes(name: str) -> tuple[type[Config], type[Any]]:
    """The (configuration class, strategy class) of the strategy ``name``, as the registry of searches names them.

    Raises
    ------
    ValueError
        For an unknown name (with close matches), NNI's own strategies and :data:`NONCONFORMING` (with the reason).
    """
    if not isinstance(name, str) or name not in SEARCHES:
        raise ValueError(unknown_name("strategy", name, list_strategies()))
    if name in NONCONFORMING:
        raise ValueError(f"strategy {name!r} does not follow the SearchStrategy interface: {NONCONFORMING[name]}")
    search = get_search(name)
    if search.strategy is None:
        raise ValueError(f"{name!r} is NNI's own strategy, run inside NNI by the nnictl tuner {search.tuner!r}, not "
                         f"one of ours: known are {list_strategies()}")
    return resolve(search.settings), resolve(search.strategy)


def create_strategy(name: str, seed_architecture: Architecture,
                    config: Mapping[str, Any] | None = None) -> SearchStrategy:
    """A strategy by name, its configuration read from ``config`` (e.g. NNI ``classArgs``).

    Raises
    ------
    ValueError
        For an unknown name (with close matches), NNI's own strategies and :data:`NONCONFORMING` (with the
        reason); :class:`ConfigError` for a bad configuration.
    """
    config_cls, strategy_cls = strategy_classes(name)
    strategy: SearchStrategy = strategy_cls(seed_architecture, parse_config(config_cls, config))
    return strategy


def describe_strategy(name: str) -> list[ConfigRow]:
    """The configuration keys of a strategy: ``(name, type, default, range, doc)`` rows."""
    return describe_config(strategy_classes(name)[0])
