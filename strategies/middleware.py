"""Middleware: deduplication and failure handling wrapped around any strategy, not written inside each one.

The shape of NNI's ``nni/nas/strategy/middleware.py`` (``Chain``, ``Deduplication``, ``FailureHandler``) for our
ask/tell :class:`~.base.SearchStrategy`: a :class:`Middleware` *is* a strategy (every member of the interface,
delegated to the one it wraps) that intercepts :meth:`~Middleware.ask` and :meth:`~Middleware.tell`.
:func:`chain` wraps a strategy in several, innermost first. The NNI adapters run every search of ours through
``chain(search, Deduplication, FailureHandler)`` (:func:`nni_nas_ext.nni.search.build_search`).

* :class:`Deduplication` -- a job that would repeat a training already done (the same job but for its id and
  step: same architecture, parent weights, epochs, data, role) is not trained again: the strategy is told the
  earlier result at once (marked ``deduplicated_from``), and asked again. A duplicate of a job still training
  waits for it. (NNI's ``Deduplication`` replays the metric the same way.)
* :class:`FailureHandler` -- a trial lost without a result (killed, its machine gone: the adapter reports
  "... without a result") is handed out again up to ``retries`` times before the strategy hears of the
  failure; failures a trial reported itself (NaN loss, a bad setting) go straight through, since running them
  again gives the same failure.

Each middleware's own state rides in :meth:`Middleware.state_dict` beside the wrapped strategy's (a state saved
before the middleware existed loads as the wrapped strategy's own).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from .base import Budget, Job, SearchStrategy

__all__ = ["MIDDLEWARE_FORMAT", "Deduplication", "FailureHandler", "Middleware", "chain", "innermost_state",
           "training_key"]

logger = logging.getLogger(__name__)

MIDDLEWARE_FORMAT = "nni-nas-ext/middleware"
MIDDLEWARE_VERSION = 1

J = TypeVar("J", bound=Job)


class Middleware(Generic[J]):
    """A strategy that wraps another: each member of :class:`~.base.SearchStrategy` is delegated to ``inner``.

    Subclasses set :attr:`kind` and override :meth:`ask`, :meth:`tell`, :meth:`_own_state`, :meth:`_load_own`
    and :meth:`_own_summary` as they need. Members a strategy has beyond the interface (``incumbent``,
    ``candidates``, ``config``...) are read through to the wrapped strategy.
    """

    kind = "middleware"

    def __init__(self, inner: SearchStrategy[J]) -> None:
        if not isinstance(inner, SearchStrategy):
            raise TypeError(f"{type(self).__name__} wraps a SearchStrategy, but got {type(inner).__name__}")
        self.inner = inner

    # ---- the interface, delegated ---------------------------------------------------------------------------

    @property
    def budget_aware(self) -> bool:
        return self.inner.budget_aware

    def ask(self, budget: Budget | None = None) -> list[J]:
        return list(self.inner.ask(budget))

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        return self.inner.tell(candidate_id, result, failure=failure)

    @property
    def finished(self) -> bool:
        return self.inner.finished

    @property
    def pending(self) -> list[str]:
        return list(self.inner.pending)

    def reissue_pending(self, ids: Sequence[str] | None = None) -> list[str]:
        return self.inner.reissue_pending(ids)

    def job(self, job_id: str) -> J | None:
        return self.inner.job(job_id)

    def result(self, job_id: str) -> Mapping[str, Any] | None:
        return self.inner.result(job_id)

    def state_dict(self) -> dict[str, Any]:
        return {"format": MIDDLEWARE_FORMAT, "version": MIDDLEWARE_VERSION, "kind": self.kind,
                "inner": self.inner.state_dict(), "own": self._own_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a state of this middleware, or (a state saved before the middleware wrapped the strategy) the
        wrapped strategy's own, with this middleware's state empty."""
        if isinstance(state, Mapping) and state.get("format") == MIDDLEWARE_FORMAT:
            if state.get("version") != MIDDLEWARE_VERSION or state.get("kind") != self.kind:
                raise ValueError(f"not a {self.kind} state of version {MIDDLEWARE_VERSION}: got kind "
                                 f"{state.get('kind')!r}, version {state.get('version')!r}")
            own = state.get("own")
            if not isinstance(own, Mapping):
                raise ValueError(f"malformed {self.kind} state: 'own' must be an object, not {own!r}")
            self.inner.load_state_dict(dict(state["inner"]))
            self._load_own(own)
        else:
            self.inner.load_state_dict(state)
            self._load_own({})

    def summary(self) -> dict[str, Any]:
        out = dict(self.inner.summary())
        out["middleware"] = {**out.get("middleware", {}), self.kind: self._own_summary()}
        return out

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (during unpickling or a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ---- hooks --------------------------------------------------------------------------------------------

    def _own_state(self) -> dict[str, Any]:
        return {}

    def _load_own(self, own: Mapping[str, Any]) -> None:
        """Restore :meth:`_own_state`'s output (``{}``: start empty)."""

    def _own_summary(self) -> dict[str, Any]:
        return self._own_state()


def chain(strategy: SearchStrategy[J], *wrappers: Callable[[SearchStrategy[J]], Middleware[J]]) -> SearchStrategy[J]:
    """``strategy`` wrapped by each of ``wrappers`` in turn (the first innermost), e.g.
    ``chain(search, Deduplication, lambda s: FailureHandler(s, retries=2))``."""
    out: SearchStrategy[J] = strategy
    for wrap in wrappers:
        out = wrap(out)  # type: ignore[assignment]
    return out


def innermost_state(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """The wrapped strategy's own state inside a middleware's :meth:`Middleware.state_dict` (however deep), or
    ``state`` itself when it is not a middleware's: what readers of a saved search (reports) look into."""
    while isinstance(state, Mapping) and state.get("format") == MIDDLEWARE_FORMAT and isinstance(state.get("inner"),
                                                                                                 Mapping):
        state = state["inner"]
    return state


#: keys of a job's dict form that do not change what its trial trains
_NOT_TRAINING = frozenset({"id", "step"})


def training_key(job: Job) -> str:
    """What a job's trial trains, as canonical JSON: its dict form without its id and step."""
    data = {k: v for k, v in job.to_dict().items() if k not in _NOT_TRAINING}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False, default=str))


class Deduplication(Middleware[J]):
    """Never train the same job twice: answer a duplicate with the earlier result (see the module docstring).

    Parameters
    ----------
    inner
        The strategy.
    max_asks
        How many times one :meth:`ask` asks the strategy again after answering duplicates, at most.
    """

    kind = "deduplication"

    def __init__(self, inner: SearchStrategy[J], *, max_asks: int = 100) -> None:
        super().__init__(inner)
        if max_asks < 1:
            raise ValueError(f"Deduplication: max_asks must be >= 1, but got {max_asks!r}")
        self.max_asks = max_asks
        self._done: dict[str, dict[str, Any]] = {}    # training key -> {"id": source job, "result": its result}
        self._running: dict[str, str] = {}            # training key -> the job training it
        self._key_of: dict[str, str] = {}             # id of a job handed out or waiting -> its training key
        self._waiting: dict[str, list[str]] = {}      # training key -> duplicates waiting for the running job
        self._hits = 0

    def ask(self, budget: Budget | None = None) -> list[J]:
        out: list[J] = []
        for _ in range(self.max_asks):
            batch = list(self.inner.ask(budget))
            answered = False
            for job in batch:
                key = training_key(job)
                if key in self._done:
                    self._answer(job.id, self._done[key])
                    answered = True
                elif self._running.get(key) == job.id:  # handed out again (restart, lost trial): it goes out
                    self._key_of[job.id] = key
                    out.append(job)
                elif key in self._running:
                    self._key_of[job.id] = key
                    waiting = self._waiting.setdefault(key, [])
                    if job.id not in waiting:  # (handed out again after a restart: it was waiting already)
                        waiting.append(job.id)
                    logger.info("deduplication: %s waits for %s, which trains the same", job.id, self._running[key])
                else:
                    self._running[key] = job.id
                    self._key_of[job.id] = key
                    out.append(job)
            if not answered or out or self.inner.finished:
                break
        return out

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        taken = self.inner.tell(candidate_id, result, failure=failure)
        key = self._key_of.pop(candidate_id, None)
        if not taken or key is None or self._running.get(key) != candidate_id:
            return taken
        del self._running[key]
        ok = failure is None and isinstance(result, Mapping) and not result.get("failed")
        if ok:
            self._done[key] = {"id": candidate_id, "result": _json_copy(dict(result))}  # type: ignore[arg-type]
        for waiting in self._waiting.pop(key, []):
            self._key_of.pop(waiting, None)
            if ok:
                self._answer(waiting, self._done[key])
            else:
                self.inner.tell(waiting, None, failure=f"the same training as {candidate_id}, which failed: "
                                                        f"{failure or (result or {}).get('failed', 'no result')}")
        return taken

    def _answer(self, job_id: str, done: Mapping[str, Any]) -> None:
        self._hits += 1
        logger.info("deduplication: %s trains the same as %s: its result, not a new trial", job_id, done["id"])
        self.inner.tell(job_id, {**done["result"], "candidate": job_id, "deduplicated_from": done["id"]})

    def _own_state(self) -> dict[str, Any]:
        return {"done": dict(self._done), "running": dict(self._running), "key_of": dict(self._key_of),
                "waiting": {k: list(v) for k, v in self._waiting.items()}, "hits": self._hits}

    def _load_own(self, own: Mapping[str, Any]) -> None:
        try:
            self._done = {str(k): {"id": str(v["id"]), "result": dict(v["result"])}
                          for k, v in own.get("done", {}).items()}
            self._running = {str(k): str(v) for k, v in own.get("running", {}).items()}
            self._key_of = {str(k): str(v) for k, v in own.get("key_of", {}).items()}
            self._waiting = {str(k): [str(i) for i in v] for k, v in own.get("waiting", {}).items()}
            self._hits = int(own.get("hits", 0))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed deduplication state: {type(exc).__name__}: {exc}") from None

    def _own_summary(self) -> dict[str, Any]:
        return {"duplicates_answered": self._hits, "trainings_remembered": len(self._done)}


#: the failures of a trial that ended without reporting (the NNI adapter's wording): worth running again
LOST_TRIAL = re.compile(r"without a result")


class FailureHandler(Middleware[J]):
    """Hand a job lost without a result out again, up to ``retries`` times, before the strategy hears of it.

    Parameters
    ----------
    inner
        The strategy.
    retries
        Times one job is handed out again (0: every failure goes straight to the strategy).
    retry_if
        Which failure reasons are retried (default: :data:`LOST_TRIAL`, a trial that ended without a result).
    """

    kind = "failure_handler"

    def __init__(self, inner: SearchStrategy[J], *, retries: int = 1,
                 retry_if: Callable[[str], bool] = lambda reason: bool(LOST_TRIAL.search(reason))) -> None:
        super().__init__(inner)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"FailureHandler: retries must be an integer >= 0, but got {retries!r}")
        self.retries = retries
        self.retry_if = retry_if
        self._attempts: dict[str, int] = {}

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        if failure is not None and self.retry_if(str(failure)) and candidate_id in self.inner.pending and \
                self._attempts.get(candidate_id, 0) < self.retries:
            self._attempts[candidate_id] = self._attempts.get(candidate_id, 0) + 1
            self.inner.reissue_pending([candidate_id])
            logger.warning("%s was lost (%s): handed out again (retry %d of %d)", candidate_id, failure,
                           self._attempts[candidate_id], self.retries)
            return True
        return self.inner.tell(candidate_id, result, failure=failure)

    def _own_state(self) -> dict[str, Any]:
        return {"attempts": dict(self._attempts)}

    def _load_own(self, own: Mapping[str, Any]) -> None:
        attempts = own.get("attempts", {})
        if not isinstance(attempts, Mapping):
            raise ValueError(f"malformed failure_handler state: 'attempts' must be an object, not {attempts!r}")
        self._attempts = {str(k): int(v) for k, v in attempts.items()}

    def _own_summary(self) -> dict[str, Any]:
        return {"retried": sum(self._attempts.values())}
