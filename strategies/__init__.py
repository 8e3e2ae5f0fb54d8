"""Network-transformation search strategies: NASH hill climbing, EAS, FNA, random baselines (``nni_nas_ext.strategies``).

Strategies are pure: they propose :class:`Candidate` values with ``ask()`` and learn results with
``tell()``; they never import ``nni`` nor touch files. :data:`STRATEGIES` maps each name to its typed
configuration class and its strategy class; :func:`create_strategy` builds one from NNI-style
``classArgs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.config import Config, ConfigRow, describe_config, parse_config
from nni_nas_ext.core.errors import unknown_name

from .base import SearchStrategy
from .eas import EasConfig, EasSearch, RandomNet2Net
from .fna import FnaConfig, FnaPipeline
from .nash import HillClimbing, NashConfig
from .nash_async import AsyncHillClimbing, AsyncNashConfig, Budget
from .random_morphism import RandomMorphismConfig, RandomMorphismSearch

__all__ = [
    "STRATEGIES", "AsyncHillClimbing", "AsyncNashConfig", "Budget", "EasConfig", "EasSearch", "FnaConfig",
    "FnaPipeline", "HillClimbing", "NashConfig", "RandomMorphismConfig", "RandomMorphismSearch", "RandomNet2Net",
    "SearchStrategy", "create_strategy", "describe_strategy", "list_strategies",
]

#: Every strategy by name: (configuration class, strategy class). A literal dict: nothing registers itself.
STRATEGIES: dict[str, tuple[type[Config], type[Any]]] = {
    "nash": (NashConfig, HillClimbing),
    "nash_async": (AsyncNashConfig, AsyncHillClimbing),
    "eas": (EasConfig, EasSearch),
    "net2net_random": (EasConfig, RandomNet2Net),
    "random_morphism": (RandomMorphismConfig, RandomMorphismSearch),
}


def list_strategies() -> list[str]:
    """Names of the registered strategies."""
    return list(STRATEGIES)


def _lookup(name: str) -> tuple[type[Config], type[Any]]:
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(unknown_name("strategy", name, list(STRATEGIES))) from None


def create_strategy(name: str, seed_architecture: Architecture,
                    config: Mapping[str, Any] | None = None) -> SearchStrategy:
    """A strategy by name, its configuration read from ``config`` (e.g. NNI ``classArgs``).

    Raises
    ------
    ValueError
        For an unknown name (with close matches); :class:`ConfigError` for a bad configuration.
    """
    config_cls, strategy_cls = _lookup(name)
    strategy: SearchStrategy = strategy_cls(seed_architecture, parse_config(config_cls, config))
    return strategy


def describe_strategy(name: str) -> list[ConfigRow]:
    """The configuration keys of a strategy: ``(name, type, default, range, doc)`` rows."""
    return describe_config(_lookup(name)[0])
