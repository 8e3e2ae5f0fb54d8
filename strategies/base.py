"""The pure search-strategy interface, declared in full: ask for jobs, tell their results (``docs/design-nash.md``).

A strategy is plain data and logic: no ``nni``, no files, no clocks. Its randomness comes from one
seeded generator saved in :meth:`SearchStrategy.state_dict`. The NNI adapters drive it through exactly the
members declared here (never reaching for others by ``getattr``); deduplication and retries wrap it
(:mod:`.middleware`, after NNI's ``nni/nas/strategy/middleware.py``) rather than live inside it.

What a strategy proposes is generic (:data:`JobT`): :class:`~nni_nas_ext.core.jobs.Candidate` for the morphism
searches (NASH, EAS, LEMONADE, their baselines), :class:`~nni_nas_ext.core.jobs.FnaJob` for FNA's pipeline -- the
two payload kinds of the one wire format (:mod:`nni_nas_ext.wire`). Both have an ``id`` and a JSON ``to_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol, TypeVar, runtime_checkable

__all__ = ["Budget", "Job", "JobT", "SearchStrategy"]


@dataclass(frozen=True)
class Budget:
    """What the caller knows of the resources left (``None``: unknown / unlimited).

    The NNI adapter reads NNI's ``maxExperimentDuration`` and ``maxTrialNumber`` and passes a budget with every
    :meth:`SearchStrategy.ask` of a :attr:`~SearchStrategy.budget_aware` strategy, one free slot at a time.
    """

    free_slots: Optional[int] = None
    seconds_left: Optional[float] = None
    trials_left: Optional[int] = None


@runtime_checkable
class Job(Protocol):
    """What a strategy proposes: a unique id and a plain-JSON form (the wire format's ``job``)."""

    @property
    def id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


JobT = TypeVar("JobT", bound=Job, covariant=True)


@runtime_checkable
class SearchStrategy(Protocol[JobT]):
    """What every strategy offers.

    The life of a job: :meth:`ask` returns it once; the caller trains it and calls :meth:`tell` with its final
    result (a mapping whose ``"default"`` is the validation accuracy) or with ``failure=<reason>``. Between the
    two it is :attr:`pending`; a caller that lost its trial (a restart before the trial was started) hands it out
    again with :meth:`reissue_pending`. :attr:`finished` turns true when nothing more will be proposed and every
    proposed job was told.
    """

    #: Whether :meth:`ask` uses its ``budget`` (time and trials left, free slots): a budget-aware strategy plans
    #: what fits; the others ignore it and propose by their own schedule.
    budget_aware: bool

    def ask(self, budget: Budget | None = None) -> Sequence[JobT]:
        """Jobs to start now, each returned once; ``[]`` while waiting for results (or finished)."""
        ...

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        """Report a job's final result, or its failure.

        Returns ``True`` if the report was taken. A report for an unknown job, or a second one for the same
        job, is ignored with a logged warning and returns ``False``; it never raises (NNI can deliver metrics
        to the wrong trial). Callers may ignore the return value.
        """
        ...

    @property
    def finished(self) -> bool:
        """Whether the search is over (successfully or not; see :meth:`summary`)."""
        ...

    @property
    def pending(self) -> list[str]:
        """Ids of the jobs handed out by :meth:`ask` and not told yet."""
        ...

    def reissue_pending(self, ids: Sequence[str] | None = None) -> list[str]:
        """Hand pending jobs out again at the next :meth:`ask` (their trials were lost); ``None``: all of them.

        Returns the ids that will be handed out again (those of ``ids`` that are pending).
        """
        ...

    def job(self, job_id: str) -> JobT | None:
        """The job proposed under ``job_id`` (``None``: never proposed). With :meth:`result`, the strategy's ledger
        is the one record of what was proposed and learnt: the NNI adapters keep ids, not copies."""
        ...

    def result(self, job_id: str) -> Mapping[str, Any] | None:
        """A copy of the final result told for ``job_id`` and taken as a success (``None``: not told yet, told a
        failure, or never proposed)."""
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
