"""Our strategies as nnictl tuners: what a config's ``tuner`` names.

``tuner: {name: NashHillClimbing, classArgs: {...}}`` after ``python -m nni_nas_ext setup`` (which runs
``nnictl algo register``), or without registering::

    tuner:
      codeDirectory: .            # any folder; the class is imported from the installed package
      className: nni_nas_ext.nni.tuners.NashTuner
      classArgs: {...}

Import-light: nnictl's dispatcher imports this module and must connect to the manager within 10 s.
"""

from __future__ import annotations

from typing import Any

from .bridge import BridgeClassArgsValidator, StrategyBridge

__all__ = ["TUNERS", "NashClassArgsValidator", "NashTuner", "SearchClassArgsValidator", "SearchTuner", "register_all"]


class SearchClassArgsValidator(BridgeClassArgsValidator):
    """Validates the ``classArgs`` of one of our searches (strategy, task and seed settings)."""

    strategy: str = ""

    def validate(self, class_args: dict[str, Any]) -> None:
        from .search import split_settings

        split_settings(class_args, self.strategy)


class SearchTuner(StrategyBridge):
    """A bridge that runs the search named :attr:`strategy` (:data:`nni_nas_ext.strategies.STRATEGIES`)."""

    strategy: str = ""

    def build(self, class_args: dict[str, Any]) -> tuple[Any, Any, Any]:
        from .search import build_search

        return build_search(self.strategy, class_args)


class NashClassArgsValidator(SearchClassArgsValidator):
    strategy = "nash"


class NashTuner(SearchTuner):
    """NASH hill climbing (Elsken, Metzen, Hutter 2017) under nnictl, children inheriting their parents' weights."""

    strategy = "nash"
    class_args_validator = NashClassArgsValidator


#: builtin name -> (bridge class, classArgs validator), registered by ``python -m nni_nas_ext setup``.
TUNERS: dict[str, tuple[type[StrategyBridge], type[BridgeClassArgsValidator]]] = {
    "NashHillClimbing": (NashTuner, NashClassArgsValidator),
}


def register_all() -> list[str]:
    """Register every tuner of :data:`TUNERS` with nnictl (idempotent); one line of what happened each."""
    from .bridge import register_with_nnictl

    lines = []
    for name, (bridge, validator) in TUNERS.items():
        outcome = register_with_nnictl(name, bridge, validator)
        lines.append(f"nnictl tuner {name!r} -> {bridge.__module__}.{bridge.__qualname__}: {outcome}")
    return lines
