"""The one registry of searches: every search nni-nas-ext runs, by name, and what each part of the tool calls it.

Each :class:`Search` names its strategy and its settings class (``"module:Class"``), the nnictl tuner it is
registered as (``python -m nni_nas_ext setup`` runs ``nnictl algo register`` for each), the bridge and
validator classes behind that tuner, the fixed ``classArgs`` that select it inside a shared tuner, and the
benchmark contestants that run it, per benchmark script. Readers:

* :func:`nni_nas_ext.strategies.create_strategy` (strategy and settings),
* :mod:`nni_nas_ext.nni.tuners` (``TUNERS``, ``nnictl algo register``) and :mod:`nni_nas_ext.nni.preflight`,
* :mod:`nni_nas_ext.nni.search` (settings splitting),
* ``python -m nni_nas_ext searches`` (the CLI's list),
* the benchmark harnesses (``benchmarks/harness/contestants.py``, ``benchmarks/compare_v2.py``,
  ``benchmarks/compare_pareto.py``).

A literal dict, as timm's ``create_model``/``list_models``: nothing registers itself at import time. References
are strings so that this module stays standard library only (the dispatcher imports the tuners, which must
connect to NNI's manager within seconds, before torch loads); :func:`resolve` imports one of *this
registry's own* references and nothing else, so no name from a config, a parameter or the network is ever
imported. ``tests/test_registry.py`` resolves every reference and checks each reader against this table.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["SEARCHES", "Search", "get_search", "list_searches", "resolve", "search_of_contestant",
           "search_of_tuner"]


@dataclass(frozen=True)
class Search:
    """One search: how the strategies, NNI, the CLI and the benchmarks know it.

    Parameters
    ----------
    name
        The search's name (``create_strategy(name, ...)``; the key of :data:`SEARCHES`).
    title
        One line for people: the algorithm and its paper.
    tuner
        The nnictl builtin tuner name (``tuner: {name: ...}`` in a config after ``setup``).
    bridge, validator
        ``"module:Class"`` of the nnictl tuner class and of its ``classArgs`` validator.
    settings
        ``"module:Class"`` of the typed settings (a :class:`~nni_nas_ext.core.config.Config`) of the strategy.
    strategy
        ``"module:Class"`` of our pure strategy; ``None`` for NNI's own strategies, which run inside NNI.
    class_args
        ``classArgs`` that select this search inside a tuner that hosts several (NNI's strategies).
    contestants
        Benchmark script -> the contestants of that script that run this search.
    """

    name: str
    title: str
    tuner: str
    bridge: str
    validator: str
    settings: str
    strategy: str | None = None
    class_args: Mapping[str, Any] = field(default_factory=dict)
    contestants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        """Whether the strategy is one of ours (pure, in ``nni_nas_ext.strategies``) rather than NNI's."""
        return self.strategy is not None

    @property
    def class_name(self) -> str:
        """The bridge as an nnictl config names it without registering (``tuner: {className: ...}``)."""
        module, _, attr = self.bridge.partition(":")
        return f"{module}.{attr}"

    def references(self) -> tuple[str, ...]:
        """Every ``"module:Class"`` this entry names."""
        refs = (self.bridge, self.validator, self.settings, self.strategy)
        return tuple(r for r in refs if r is not None)


_TUNERS = "nni_nas_ext.nni.tuners"
_STRATEGIES = "nni_nas_ext.strategies"


def _ours(name: str, title: str, tuner: str, bridge: str, strategy: str, settings: str,
          contestants: Mapping[str, tuple[str, ...]] | None = None, tuners: str = _TUNERS) -> Search:
    return Search(name=name, title=title, tuner=tuner, bridge=f"{tuners}:{bridge}Tuner",
                  validator=f"{tuners}:{bridge}ClassArgsValidator", strategy=f"{_STRATEGIES}.{strategy}",
                  settings=f"{_STRATEGIES}.{settings}", contestants=dict(contestants or {}))


def _nni_strategy(name: str, title: str, strategy: str, contestant: str,
                  more: Mapping[str, tuple[str, ...]] | None = None) -> Search:
    return Search(name=name, title=title, tuner="NniNasStrategy", bridge=f"{_TUNERS}:NniStrategyTuner",
                  validator=f"{_TUNERS}:NniStrategyClassArgsValidator",
                  settings="nni_nas_ext.nni.baselines.nni_strategies:NniStrategyConfig",
                  class_args={"strategy": strategy},
                  contestants={"compare": (contestant,), "compare_v2": (contestant,), **dict(more or {})})


#: Every search by name. The benchmark's contestants that are not a search of this table (``seed_only``: the
#: seed trained for the whole budget; NNI's NetworkMorphism *tuner*, an HPO tuner rather than a search) are
#: listed where they are defined, with the reason.
SEARCHES: Mapping[str, Search] = MappingProxyType({
    "nash": _ours("nash", "NASH hill climbing (Elsken, Metzen, Hutter 2017), children inherit their parents' weights",
                  "NashHillClimbing", "Nash", "nash:HillClimbing", "nash:NashConfig",
                  {"compare": ("nash", "nash_scratch")}),
    "nash_async": _ours("nash_async", "NASH without step barriers, budget-aware (maxExperimentDuration), "
                        "the final phase inside the budget", "NashAsync", "NashAsync",
                        "nash_async:AsyncHillClimbing", "nash_async:AsyncNashConfig",
                        {"compare_v2": ("nash", "nash_scratch", "nash_no_final_seed"), "compare_pareto": ("nash",)}),
    "eas": _ours("eas", "EAS (Cai et al. 2018): an RL meta-controller growing networks by Net2Net actions",
                 "EAS", "Eas", "eas:EasSearch", "eas:EasConfig", {"compare": ("eas",)}),
    "net2net_random": _ours("net2net_random", "EAS's episodes with uniformly random Net2Net actions (the "
                            "controller's baseline)", "Net2NetRandom", "Net2NetRandom", "eas:RandomNet2Net",
                            "eas:EasConfig", {"compare": ("net2net_random",)}),
    "path_eas": _ours("path_eas", "Path-level EAS (Cai et al. 2018): cells grown into trees by path-level "
                      "transformations, chosen by a tree-LSTM meta-controller trained by REINFORCE", "PathLevelEAS",
                      "PathLevelEas", "path_eas:PathLevelEAS", "path_eas:PathEasConfig", {"compare_v2": ("path_eas",)}),
    "path_eas_random": _ours("path_eas_random", "Path-level EAS's episodes with uniformly random decisions (the "
                             "controller's baseline)", "PathLevelRandom", "PathLevelRandom",
                             "path_eas:PathLevelRandom", "path_eas:PathEasConfig",
                             {"compare_v2": ("path_eas_random",)}),
    "random_morphism": _ours("random_morphism", "Random architectures of the morphism space trained from scratch "
                             "(NASH's own baseline)", "RandomMorphism", "RandomMorphism",
                             "random_morphism:RandomMorphismSearch", "random_morphism:RandomMorphismConfig",
                             {"compare": ("random_morphism",)}),
    "lemonade": _ours("lemonade", "LEMONADE (Elsken, Metzen, Hutter 2019): multi-objective Lamarckian evolution with "
                      "network and compression morphisms, a Pareto front of accuracy and size or latency",
                      "Lemonade", "Lemonade", "lemonade:LemonadeSearch", "lemonade:LemonadeConfig",
                      {"compare_pareto": ("lemonade",)}),
    "n2n": _ours("n2n", "N2N learning (Ashok et al. 2018): a teacher compressed by a two-stage RL policy (layer "
                 "removal, then shrinkage), students distilled from the teacher", "N2N", "N2N", "n2n:N2NSearch",
                 "n2n:N2NConfig"),
    "n2n_random": _ours("n2n_random", "N2N's episodes with uniformly random removal and shrinkage (the policy's "
                        "baseline)", "N2NRandom", "N2NRandom", "n2n:N2NRandom", "n2n:N2NConfig"),
    "fna": _ours("fna", "FNA (Fang et al. 2020): parameter remapping and MBConv architecture adaptation",
                 "FNA", "Fna", "fna:FnaPipeline", "fna:FnaConfig", {"fna_compare": ("fna",)},
                 tuners="nni_nas_ext.nni.fna"),
    "nni_random": _nni_strategy("nni_random", "NNI's Random strategy over the comparable CNN-stage space",
                                "random", "nni_random"),
    "nni_regularized_evolution": _nni_strategy(
        "nni_regularized_evolution", "NNI's RegularizedEvolution (Real et al. 2019) over the CNN-stage space",
        "regularized_evolution", "nni_regularized_evolution",
        {"compare_pareto": ("nni_regularized_evolution_size",)}),  # with reward_size_weight > 0
})


def list_searches(*, ours: bool | None = None) -> list[str]:
    """Names of the registered searches (``ours=True``: only our strategies; ``False``: only NNI's)."""
    return [n for n, s in SEARCHES.items() if ours is None or s.ours == ours]


def _unknown(kind: str, name: object, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}: known are {known}{hint}")


def get_search(name: str) -> Search:
    """The search called ``name``; an unknown name raises ``ValueError`` with the close matches."""
    try:
        return SEARCHES[name]
    except (KeyError, TypeError):
        raise _unknown("search", name, list(SEARCHES)) from None


def search_of_tuner(tuner: str, class_args: Mapping[str, Any] | None = None) -> Search:
    """The search an nnictl tuner name (and, for a shared tuner, its selecting ``classArgs``) runs."""
    runs = [s for s in SEARCHES.values() if s.tuner == tuner]
    if not runs:
        raise _unknown("tuner", tuner, sorted({s.tuner for s in SEARCHES.values()}))
    given = class_args or {}
    found = [s for s in runs if all(given.get(k) == v for k, v in s.class_args.items())]
    if len(found) != 1:
        keys = sorted({k for s in runs for k in s.class_args})
        choices = "; ".join(f"{s.name}: {dict(s.class_args)}" for s in runs)
        raise ValueError(f"tuner {tuner!r} runs {[s.name for s in runs]}: the classArgs {keys} choose one "
                         f"({choices}), but got {({k: given.get(k) for k in keys})}")
    return found[0]


def search_of_contestant(script: str, contestant: str) -> Search:
    """The search that benchmark ``script`` (e.g. ``"compare_v2"``) runs as ``contestant``."""
    for s in SEARCHES.values():
        if contestant in s.contestants.get(script, ()):
            return s
    known = sorted(c for s in SEARCHES.values() for c in s.contestants.get(script, ()))
    raise _unknown(f"contestant of {script}", contestant, known)


def resolve(reference: str) -> Any:
    """Import one of this registry's ``"module:Class"`` references (and nothing else)."""
    if not any(reference in s.references() for s in SEARCHES.values()):
        raise ValueError(f"{reference!r} is not a reference of the registry of searches: only the "
                         "registry's own classes are imported by name")
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)
