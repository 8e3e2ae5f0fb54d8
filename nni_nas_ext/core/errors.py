"""Error types of the architecture core.

Every error names what it is about, the rule that was broken and the value that was found, in the
manner of Optuna's ``distributions.py`` ("``low <= high`` must hold, but got ...").
"""

from __future__ import annotations

import difflib


class ArchitectureError(ValueError):
    """An architecture (or its dict form) breaks a rule.

    Parameters
    ----------
    node
        Id of the node the problem is at, or ``None`` for architecture-level problems.
    rule
        The rule that must hold, in words.
    found
        What was found instead.
    """

    def __init__(self, node: str | None, rule: str, found: str) -> None:
        self.node = node
        self.rule = rule
        self.found = found
        where = f"node {node!r}" if node is not None else "architecture"
        super().__init__(f"{where}: {rule}, but found {found}")


class MorphismError(ValueError):
    """A morphism cannot be applied as asked (unknown operator, bad site, malformed step)."""


def unknown_name(kind: str, name: object, known: list[str]) -> str:
    """``unknown <kind> 'x': known are [...]; did you mean 'y'?`` for the literal registries."""
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {name!r}: known are {known}{hint}"
