"""Candidate bookkeeping shared by the ask/tell strategies (:mod:`.nash`, :mod:`.eas`).

:class:`CandidateLedger` holds what every such strategy keeps the same way: candidates proposed with
serial ids, results and failures as told, the candidates not yet handed out, the phase, the seed and
the final phase (the winner and the seed trained on train+val), the figures and ancestry of a
candidate for summaries, and the plumbing of these parts in ``state_dict`` / ``load_state_dict``.
A strategy keeps its algorithm: what a round is, how it closes, what it adds to its state and summary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.config import Config, parse_config
from nni_nas_ext.core.jobs import Candidate, candidate_id

from .base import Budget

# Phases every strategy has; each adds its own between seed and final.
PHASE_SEED, PHASE_FINAL, PHASE_DONE, PHASE_FAILED = "seed", "final", "done", "failed"


def json_copy(value: Any) -> Any:
    """A plain-JSON deep copy: non-finite floats become None, unknown objects their ``str``."""
    if isinstance(value, Mapping):
        return {str(k): json_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_copy(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return json_copy(value.item())
    return str(value)


def accuracy_of(result: Mapping[str, Any], key: str = "default") -> float | None:
    """The finite number under ``key`` of a result (``"default"``: the validation accuracy), else ``None``."""
    value = result.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _failure_of(result: Any, failure: str | None, key: str = "default") -> str | None:
    """Why a report counts as a failure, or ``None`` for a success (a finite number under ``key``:
    ``"default"``, the validation accuracy; ``"test_acc"`` for a final training, which saw the validation
    images and so reports no validation accuracy)."""
    if failure is not None:
        return str(failure) or "failed (no reason given)"
    if result is None:
        return "no result was reported"
    if not isinstance(result, Mapping):
        return f"the result is not a mapping but a {type(result).__name__}"
    if result.get("failed"):
        return str(result["failed"])
    if accuracy_of(result, key) is None:
        return f"the result has no finite number as {key!r} (got {result.get(key)!r})"
    return None


def _require_architecture(seed_architecture: Any) -> None:
    if not isinstance(seed_architecture, Architecture):
        raise TypeError(f"seed_architecture must be an Architecture, but got {type(seed_architecture).__name__}")


class CandidateLedger:
    """The candidate bookkeeping of an ask/tell strategy; a subclass supplies the algorithm.

    A subclass sets the class attributes, implements :meth:`_generation` (the step or episode number
    given to new candidates), :meth:`_current_round` (ids of the round being trained),
    :meth:`_close_round` (called once every candidate of the round was told), :attr:`incumbent`
    and :meth:`_history` (per-round summaries); it calls :meth:`_propose_seed` once its own state is set.
    """

    #: Name in log messages and state errors.
    log_name: ClassVar[str] = ""
    #: The state's ``format`` and ``version``; the configuration class.
    state_format: ClassVar[str] = ""
    #: The registry's name of a search whose name is also its log name and its state's format (EAS, N2N and their
    #: random baselines): a subclass that sets it gets both.
    strategy_name: ClassVar[str] = ""
    state_version: ClassVar[int] = 1
    config_class: ClassVar[type[Config]] = Config
    #: All phases (checked when a state is loaded); the key naming ``Candidate.step`` in figures.
    phases: ClassVar[tuple[str, ...]] = (PHASE_SEED, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "step"
    logger: ClassVar[logging.Logger] = logging.getLogger(__name__)
    #: Whether :meth:`ask` uses its budget (:class:`~.base.SearchStrategy`); the ledger's own schedule ignores it.
    budget_aware: ClassVar[bool] = False

    config: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("strategy_name"):
            cls.log_name = cls.state_format = cls.strategy_name

    def _require_seed_within(self, max_parameters: int | None) -> None:
        """Refuse a seed architecture larger than ``max_parameters`` (None: no limit)."""
        params = self.seed_architecture.num_parameters()
        if max_parameters is not None and params > max_parameters:
            raise ValueError(f"the seed architecture has {params} parameters, more than max_parameters="
                             f"{max_parameters}; raise max_parameters or start from a smaller seed")

    @classmethod
    def coerce_config(cls, config: Config | Mapping[str, Any] | None) -> Config:
        """``config`` as a :attr:`config_class`: parsed from a mapping (None: the defaults), or checked for its type."""
        if config is None or isinstance(config, Mapping):
            return parse_config(cls.config_class, config)
        if not isinstance(config, cls.config_class):
            name = cls.config_class.__name__
            article = "an" if name[:1] in "AEIOU" else "a"
            raise TypeError(f"config must be {article} {name} or a mapping, but got {type(config).__name__}")
        return config

    def __init__(self, seed_architecture: Architecture, config: Config | Mapping[str, Any] | None) -> None:
        _require_architecture(seed_architecture)
        config = self.coerce_config(config)
        self.config = config
        self.seed_architecture = seed_architecture.with_lineage(None)
        self._rng = np.random.default_rng(config.seed)  # type: ignore[attr-defined]
        self._candidates: dict[str, Candidate] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, str] = {}
        self._unasked: list[str] = []
        self._serial = 0
        self._phase = PHASE_SEED
        self._seed_id = ""
        self._notes: list[str] = []
        self._failure_reason: str | None = None

    # ---- hooks ----------------------------------------------------------------------------------

    def _generation(self) -> int:
        raise NotImplementedError

    def _current_round(self) -> list[str]:
        raise NotImplementedError

    def _close_round(self) -> None:
        raise NotImplementedError

    @property
    def incumbent(self) -> Candidate | None:
        raise NotImplementedError

    def _history(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _extra_figures(self, c: Candidate) -> dict[str, Any]:
        """Keys a strategy adds to :meth:`_figures` after ``macs``."""
        return {}

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        """Parse the strategy's own parts of ``state`` into ``new``; the candidate ids they refer to."""
        return set()

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        """The last step of loading, once every check passed (restore what lives outside ``__dict__``)."""

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self, budget: Budget | None = None) -> list[Candidate]:
        """Candidates not returned before, in proposal order; ``[]`` while a round (step, episode) is being trained.

        ``budget`` is ignored here (:attr:`budget_aware` is false); budget-aware strategies plan with it first."""
        out = [self._candidates[cid] for cid in self._unasked]
        self._unasked = []
        return out

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        """Record a candidate's final result (``result["default"]`` = validation accuracy) or its failure.

        A result whose ``"failed"`` key is set (the trial's failure report), or without a finite
        ``"default"`` (``"test_acc"`` for a candidate trained on train+val: a final), counts as a failure.
        Returns ``False`` (with a warning, never raising) for an unknown candidate, a second report for the
        same one, or a result naming another candidate.
        """
        name, log = self.log_name, self.logger
        if not isinstance(candidate_id, str) or candidate_id not in self._candidates:
            log.warning("%s: ignoring a result for unknown candidate %r", name, candidate_id)
            return False
        if self._told(candidate_id):
            log.warning("%s: ignoring a second result for candidate %s", name, candidate_id)
            return False
        if isinstance(result, Mapping) and result.get("candidate") not in (None, candidate_id):
            log.warning("%s: ignoring a result for %s that names candidate %r", name, candidate_id,
                        result.get("candidate"))
            return False
        reason = _failure_of(result, failure,
                             "test_acc" if self._candidates[candidate_id].train_on == "train+val" else "default")
        if reason is None:
            self._results[candidate_id] = json_copy(result)
        else:
            log.warning("%s: candidate %s failed: %s", name, candidate_id, reason)
            self._failures[candidate_id] = reason
        if candidate_id in self._unasked:  # told before it was asked for: never hand it out
            self._unasked.remove(candidate_id)
        if all(self._told(cid) for cid in self._current_round()):
            self._close_round()
        return True

    @property
    def finished(self) -> bool:
        return self._phase in (PHASE_DONE, PHASE_FAILED)

    # ---- extras ---------------------------------------------------------------------------------

    @property
    def candidates(self) -> list[Candidate]:
        """Every candidate proposed so far, in proposal order."""
        return list(self._candidates.values())

    def job(self, job_id: str) -> Candidate | None:
        """The candidate proposed under ``job_id`` (``None``: never proposed)."""
        return self._candidates.get(job_id)

    def result(self, job_id: str) -> dict[str, Any] | None:
        """A copy of the successful final result of ``job_id`` (``None``: not told, failed or unknown)."""
        found = self._results.get(job_id)
        return None if found is None else json_copy(found)

    @property
    def pending(self) -> list[str]:
        """Ids of candidates handed out by :meth:`ask` and not told yet."""
        return [cid for cid in self._current_round() if not self._told(cid) and cid not in self._unasked]

    def reissue_pending(self, ids: Sequence[str] | None = None) -> list[str]:
        """Hand pending candidates out again at the next :meth:`ask` (their trials were lost).

        ``ids``: only these (each must be pending; others are ignored); ``None``: every pending one.
        """
        pending = self.pending
        chosen = pending if ids is None else [cid for cid in pending if cid in set(ids)]
        self._unasked.extend(chosen)
        return chosen

    # ---- proposing ------------------------------------------------------------------------------

    def _told(self, cid: str) -> bool:
        return cid in self._results or cid in self._failures

    def _epochs_trained(self, cid: str) -> int:
        """Epochs a told candidate trained: its result's ``epochs_trained`` (fewer when it stopped early), else
        ``Candidate.epochs``."""
        planned = self._candidates[cid].epochs
        trained = self._results.get(cid, {}).get("epochs_trained")
        if isinstance(trained, int) and not isinstance(trained, bool) and 0 <= trained <= planned:
            return trained
        return planned

    def _val_acc(self, cid: str) -> float | None:
        """The validation accuracy of a successful candidate, else ``None``."""
        return accuracy_of(self._results[cid]) if cid in self._results else None

    def _propose(self, arch: Architecture, *, parent: str | None, epochs: int, role: str,
                 train_on: str = "train", evaluate_test: bool = False, stop_after: int | None = None,
                 stop_below: float | None = None, time_limit: float | None = None) -> Candidate:
        candidate = Candidate(candidate_id(arch, self._serial), arch, parent, epochs, train_on, evaluate_test,
                              role, self._generation(), stop_after, stop_below, time_limit)
        self._serial += 1
        self._candidates[candidate.id] = candidate
        self._unasked.append(candidate.id)
        return candidate

    def _propose_seed(self, epochs: int) -> Candidate:
        seed = self._propose(self.seed_architecture, parent=None, epochs=epochs, role="seed")
        self._seed_id = seed.id
        return seed

    def _propose_finals(self, winner_id: str, epochs: int | None = None) -> list[str]:
        """The final phase: the winner (role ``final``) and the seed (``seed_final``) on train+val, tested,
        for ``epochs`` (default ``config.epochs_final``)."""
        return [self._propose_final(winner_id, epochs).id, self._propose_seed_final(epochs).id]

    def _propose_final(self, winner_id: str, epochs: int | None = None,
                       time_limit: float | None = None) -> Candidate:
        """The winner's final training (role ``final``): its own weights on train+val, tested once (within
        ``time_limit`` seconds, :attr:`Candidate.time_limit`)."""
        winner = self._candidates[winner_id]
        return self._propose(winner.architecture.with_lineage(None), parent=winner.id, role="final",
                             **self._final_args(epochs, time_limit))

    def _propose_seed_final(self, epochs: int | None = None, time_limit: float | None = None) -> Candidate:
        """The seed trained alike (role ``seed_final``): the gain over the start, measured the same way."""
        seed = self._candidates[self._seed_id]
        return self._propose(seed.architecture, parent=seed.id, role="seed_final",
                             **self._final_args(epochs, time_limit))

    def _final_args(self, epochs: int | None, time_limit: float | None = None) -> dict[str, Any]:
        return {"epochs": self.config.epochs_final if epochs is None else epochs,
                "train_on": "train+val", "evaluate_test": True, "time_limit": time_limit}

    def _fail_seed(self, what: str) -> bool:
        """If the seed failed: record why and stop the search (``True``); else ``False``."""
        if self._seed_id not in self._failures:
            return False
        self._failure_reason = (f"the seed candidate {self._seed_id} failed "
                                f"({self._failures[self._seed_id]}); there is nothing to {what} from")
        self._phase = PHASE_FAILED
        self.logger.error("%s: %s", self.log_name, self._failure_reason)
        return True

    # ---- state ----------------------------------------------------------------------------------

    def _state_head(self) -> dict[str, Any]:
        return {
            "format": self.state_format,
            "version": self.state_version,
            "config": self.config.to_dict(),
            "seed_architecture": self.seed_architecture.to_dict(),
            "rng": json_copy(self._rng.bit_generator.state),
        }

    def _state_ledger(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self._candidates.values()],
            "results": json_copy(self._results),
            "failures": dict(self._failures),
            "unasked": list(self._unasked),
            "serial": self._serial,
            "phase": self._phase,
        }

    def _state_tail(self) -> dict[str, Any]:
        return {"seed_candidate": self._seed_id, "notes": list(self._notes), "failure_reason": self._failure_reason}

    def _load_state(self, state: Any) -> None:
        """Check ``state`` against this strategy, parse it whole, then replace the state (or raise ValueError)."""
        name = self.log_name
        if not isinstance(state, Mapping) or state.get("format") != self.state_format:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not a {name} state: expected 'format': {self.state_format!r}, but got {found!r}")
        if state.get("version") != self.state_version:
            raise ValueError(f"{name} state version {state.get('version')!r} is not the supported "
                             f"{self.state_version}")
        config = parse_config(self.config_class, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the state was saved with another configuration (keys {diff} differ); "
                             f"use {type(self).__name__}.from_state_dict(state)")
        seed = Architecture.from_dict(state.get("seed_architecture"))
        if seed.id != self.seed_architecture.id:
            raise ValueError(f"the state was saved for seed architecture {seed.id}, not {self.seed_architecture.id}")
        try:
            by_id = {c.id: c for c in (Candidate.from_dict(c) for c in state["candidates"])}
            new: dict[str, Any] = {
                "_candidates": by_id,
                "_results": {str(k): dict(v) for k, v in state["results"].items()},
                "_failures": {str(k): str(v) for k, v in state["failures"].items()},
                "_unasked": [str(c) for c in state["unasked"]],
            }
            referred = set(new["_results"]) | set(new["_failures"]) | set(new["_unasked"])
            referred |= self._load_extra(state, new)
            unknown = sorted(referred - set(by_id))
            if unknown:
                raise ValueError(f"candidates {unknown[:3]} are referred to but not listed")
            if state["phase"] not in self.phases:
                raise ValueError(f"unknown phase {state['phase']!r}")
            rng = np.random.default_rng()
            rng.bit_generator.state = state["rng"]
            new.update({
                "_rng": rng, "_serial": int(state["serial"]), "_phase": state["phase"],
                "_seed_id": state["seed_candidate"], "_notes": [str(n) for n in state["notes"]],
                "_failure_reason": state["failure_reason"],
            })
            self._load_finish(state, new)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed {name} state: {type(exc).__name__}: {exc}") from None
        self.__dict__.update(new)

    @classmethod
    def _from_state(cls, state: Any, **kwargs: Any) -> Any:
        if not isinstance(state, Mapping):
            raise ValueError(f"a {cls.log_name} state is a JSON object, but got {type(state).__name__}")
        strategy = cls(Architecture.from_dict(state.get("seed_architecture")),
                       parse_config(cls.config_class, state.get("config")), **kwargs)
        strategy.load_state_dict(dict(state))  # type: ignore[attr-defined]
        return strategy

    # ---- reporting ------------------------------------------------------------------------------

    def _summary(self, strategy: str, progress: Mapping[str, Any], counts: Mapping[str, Any]) -> dict[str, Any]:
        """The summary: status, ``progress`` keys, seed, winner, history, failures, ``counts`` keys, cost."""
        status = {PHASE_FAILED: "failed", PHASE_DONE: "finished"}.get(self._phase, "running")
        finals = {c.role: cid for cid, c in self._candidates.items() if c.role in ("final", "seed_final")}
        seed = self._figures(self._seed_id, finals.get("seed_final"))
        winner = None
        best = self.incumbent
        if best is not None:
            winner = self._figures(best.id, finals.get("final"))
            generations = self._ancestry(best.id)
            winner["lineage"] = [d for g in generations for d in g.pop("describe")]
            winner["generations"] = generations
        return {
            "strategy": strategy,
            "status": status,
            "reason": self._failure_reason,
            **progress,
            "seed": seed,
            "winner": winner,
            "history": self._history(),
            "failures": [{"candidate": cid, "role": self._candidates[cid].role, "step": self._candidates[cid].step,
                          "reason": reason} for cid, reason in self._failures.items()],
            "notes": list(self._notes),
            "n_candidates": len(self._candidates),
            **counts,
            # training cost so far: epochs of every candidate told (as trained, when it stopped early), failures
            # included
            "epochs_total": sum(self._epochs_trained(cid) for cid in self._candidates if self._told(cid)),
            "config": self.config.to_dict(),
        }

    def _figures(self, cid: str, final_id: str | None) -> dict[str, Any]:
        c = self._candidates[cid]
        final = self._results.get(final_id) if final_id is not None else None
        return {
            "candidate": cid, "arch_id": c.architecture.id, "role": c.role, self.generation_key: c.step,
            "params": c.architecture.num_parameters(), "macs": c.architecture.num_macs(),
            **self._extra_figures(c),
            "val_acc": self._val_acc(cid),
            "final_candidate": final_id,
            "test_acc": None if final is None else accuracy_of(final, "test_acc"),
            "final_failed": self._failures.get(final_id) if final_id is not None else None,
        }

    def _origin(self, cid: str) -> str | None:
        """The candidate ``cid`` was derived from (its ``parent`` here; a search may know better)."""
        return self._candidates[cid].parent

    def _ancestry(self, cid: str) -> list[dict[str, Any]]:
        """The morphisms from the seed to ``cid`` (following :meth:`_origin`): one entry per generation that
        applied some."""
        generations = []
        current: str | None = cid
        while current is not None:
            c = self._candidates[current]
            if c.architecture.lineage is not None:
                steps = c.architecture.lineage.steps
                generations.append({self.generation_key: c.step, "candidate": c.id,
                                    "parent_arch": c.architecture.lineage.parent, "arch_id": c.architecture.id,
                                    "steps": [s.to_dict() for s in steps], "describe": [s.describe() for s in steps]})
            current = self._origin(current)
        return generations[::-1]
