"""The pure search-strategy interface: ask for candidates, tell their results (``docs/design-nash.md``).

A strategy is plain data and logic: no ``nni``, no files, no clocks. Its randomness comes from one
seeded generator saved in :meth:`SearchStrategy.state_dict`. The NNI adapters drive it; dedup, retries
and budgets wrap it rather than live inside it (NNI's ``nni/nas/strategy/middleware.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from nni_nas_ext.core.jobs import Candidate

__all__ = ["SearchStrategy"]


@runtime_checkable
class SearchStrategy(Protocol):
    """What every strategy offers.

    The life of a candidate: :meth:`ask` returns it once; the caller trains it and calls :meth:`tell`
    with its final result (a mapping whose ``"default"`` is the validation accuracy) or with
    ``failure=<reason>``. :attr:`finished` turns true when nothing more will be proposed and every
    proposed candidate was told.
    """

    def ask(self) -> list[Candidate]:
        """Candidates to start now, each returned once; ``[]`` while waiting for results (or finished)."""
        ...

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        """Report a candidate's final result, or its failure.

        Returns ``True`` if the report was taken. A report for an unknown candidate, or a second one
        for the same candidate, is ignored with a logged warning and returns ``False``; it never raises
        (NNI can deliver metrics to the wrong trial). Callers may ignore the return value.
        """
        ...

    @property
    def finished(self) -> bool:
        """Whether the search is over (successfully or not; see :meth:`summary`)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where it is, as JSON-serialisable data."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output."""
        ...

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable report: status, seed and winner figures, lineage, history, failures."""
        ...
