"""Our strategies as nnictl tuners: what a config's ``tuner`` names.

``tuner: {name: NashHillClimbing, classArgs: {...}}`` after ``python -m nni_nas_ext setup`` (which runs
``nnictl algo register``), or without registering::

    tuner:
      codeDirectory: .            # any folder; the class is imported from the installed package
      className: nni_nas_ext.nni.tuners.NashTuner
      classArgs: {...}

The registry of searches (:data:`nni_nas_ext.registry.SEARCHES`) says which tuner runs which search; :data:`TUNERS`
is read from it.

Import-light: nnictl's dispatcher imports this module and must connect to the manager within 10 s.
"""

from __future__ import annotations

from typing import Any

from nni_nas_ext.registry import SEARCHES, resolve

from .dispatcher import BridgeClassArgsValidator, StrategyBridge

__all__ = [
    "TUNERS", "EasClassArgsValidator", "EasTuner", "LemonadeClassArgsValidator", "LemonadeTuner",
    "N2NClassArgsValidator", "N2NRandomClassArgsValidator", "N2NRandomTuner", "N2NTuner",
    "NashAsyncClassArgsValidator", "NashAsyncTuner",
    "NashClassArgsValidator", "NashTuner", "Net2NetRandomClassArgsValidator", "Net2NetRandomTuner",
    "NniStrategyClassArgsValidator", "NniStrategyTuner", "PathLevelEasClassArgsValidator", "PathLevelEasTuner",
    "PathLevelRandomClassArgsValidator", "PathLevelRandomTuner", "RandomMorphismClassArgsValidator",
    "RandomMorphismTuner",
    "SearchClassArgsValidator", "SearchTuner", "register_all",
]


class SearchClassArgsValidator(BridgeClassArgsValidator):
    """Validates the ``classArgs`` of one of our searches (strategy, task and seed settings)."""

    search_name: str = ""

    def validate(self, class_args: dict[str, Any]) -> None:
        from .search import split_settings

        split_settings(class_args, self.search_name)


class SearchTuner(StrategyBridge):
    """A bridge that runs our search named :attr:`search_name` (:func:`nni_nas_ext.strategies.list_strategies`).

    (Not ``strategy``: the bridge keeps the ``nni.nas`` strategy it hosts under that name.)
    """

    search_name: str = ""

    def build(self, class_args: dict[str, Any]) -> tuple[Any, Any, Any]:
        from .search import build_search

        return build_search(self.search_name, class_args)


class NashClassArgsValidator(SearchClassArgsValidator):
    search_name = "nash"


class NashTuner(SearchTuner):
    """NASH hill climbing (Elsken, Metzen, Hutter 2017) under nnictl, children inheriting their parents' weights."""

    search_name = "nash"
    class_args_validator = NashClassArgsValidator


class NashAsyncClassArgsValidator(SearchClassArgsValidator):
    search_name = "nash_async"


class NashAsyncTuner(SearchTuner):
    """NASH without step barriers, within the experiment's time budget (``maxExperimentDuration``), under nnictl."""

    search_name = "nash_async"
    class_args_validator = NashAsyncClassArgsValidator


class EasClassArgsValidator(SearchClassArgsValidator):
    search_name = "eas"


class EasTuner(SearchTuner):
    """EAS (Cai et al. 2018): an RL meta-controller growing networks by Net2Net actions, under nnictl."""

    search_name = "eas"
    class_args_validator = EasClassArgsValidator


class Net2NetRandomClassArgsValidator(SearchClassArgsValidator):
    search_name = "net2net_random"


class Net2NetRandomTuner(SearchTuner):
    """EAS's episodes with uniformly random Net2Net actions: the baseline that measures the controller."""

    search_name = "net2net_random"
    class_args_validator = Net2NetRandomClassArgsValidator


class PathLevelEasClassArgsValidator(SearchClassArgsValidator):
    search_name = "path_eas"


class PathLevelEasTuner(SearchTuner):
    """Path-level EAS (Cai et al. 2018): cells grown into trees by a tree-LSTM meta-controller, under nnictl."""

    search_name = "path_eas"
    class_args_validator = PathLevelEasClassArgsValidator


class PathLevelRandomClassArgsValidator(SearchClassArgsValidator):
    search_name = "path_eas_random"


class PathLevelRandomTuner(SearchTuner):
    """Path-level EAS's episodes with uniformly random decisions: the baseline that measures the controller."""

    search_name = "path_eas_random"
    class_args_validator = PathLevelRandomClassArgsValidator


class RandomMorphismClassArgsValidator(SearchClassArgsValidator):
    search_name = "random_morphism"


class RandomMorphismTuner(SearchTuner):
    """Random architectures of the morphism space, each trained from scratch with the same schedule: NASH's baseline."""

    search_name = "random_morphism"
    class_args_validator = RandomMorphismClassArgsValidator


class LemonadeClassArgsValidator(SearchClassArgsValidator):
    search_name = "lemonade"


class LemonadeTuner(SearchTuner):
    """LEMONADE (Elsken, Metzen, Hutter 2019): a Pareto front of accuracy and size or latency, grown by network and
    compression morphisms with inherited weights, under nnictl."""

    search_name = "lemonade"
    class_args_validator = LemonadeClassArgsValidator


class N2NClassArgsValidator(SearchClassArgsValidator):
    search_name = "n2n"


class N2NTuner(SearchTuner):
    """N2N learning (Ashok et al. 2018): a teacher compressed by a two-stage RL policy (layer removal, then shrinkage),
    students distilled from the teacher, under nnictl."""

    search_name = "n2n"
    class_args_validator = N2NClassArgsValidator


class N2NRandomClassArgsValidator(SearchClassArgsValidator):
    search_name = "n2n_random"


class N2NRandomTuner(SearchTuner):
    """N2N's episodes with uniformly random removal and shrinkage: the baseline that measures the policy."""

    search_name = "n2n_random"
    class_args_validator = N2NRandomClassArgsValidator


class NniStrategyClassArgsValidator(BridgeClassArgsValidator):
    """Validates the ``classArgs`` of :class:`NniStrategyTuner` (strategy, its parameters, space and task)."""

    def validate(self, class_args: dict[str, Any]) -> None:
        from .baselines.nni_strategies import split_strategy_settings

        split_strategy_settings(class_args)


class NniStrategyTuner(StrategyBridge):
    """NNI's own ``Random`` or ``RegularizedEvolution`` strategy over our comparable CNN space, under nnictl.

    ``classArgs``: ``strategy`` (``random`` | ``regularized_evolution``) with that strategy's NNI parameters,
    the space's settings and the task's (see :mod:`nni_nas_ext.nni.baselines.nni_strategies`).
    """

    class_args_validator = NniStrategyClassArgsValidator
    trial_format = "nni"  # NNI's strategies: NNI's pickled models, NNI's trial command (README, "Security")

    def build(self, class_args: dict[str, Any]) -> tuple[Any, Any, Any]:
        from .baselines.nni_strategies import build_nni_strategy_search

        return build_nni_strategy_search(class_args)


def _tuners_of_registry() -> dict[str, tuple[type[StrategyBridge], type[BridgeClassArgsValidator]]]:
    """Each tuner of the registry of searches once (NNI's strategies share one), in the registry's order."""
    tuners: dict[str, tuple[type[StrategyBridge], type[BridgeClassArgsValidator]]] = {}
    for search in SEARCHES.values():
        if search.tuner not in tuners:  # this module's classes and nni.fna's (import-light too)
            tuners[search.tuner] = (resolve(search.bridge), resolve(search.validator))
    return tuners


#: builtin name -> (bridge class, classArgs validator), read from the registry of searches; registered by
#: ``python -m nni_nas_ext setup``.
TUNERS: dict[str, tuple[type[StrategyBridge], type[BridgeClassArgsValidator]]] = _tuners_of_registry()


def register_all() -> list[str]:
    """Register every tuner of :data:`TUNERS` with nnictl (idempotent); one line of what happened each."""
    from .dispatcher import register_with_nnictl

    lines = []
    for name, (bridge, validator) in TUNERS.items():
        outcome = register_with_nnictl(name, bridge, validator)
        lines.append(f"nnictl tuner {name!r} -> {bridge.__module__}.{bridge.__qualname__}: {outcome}")
    return lines
