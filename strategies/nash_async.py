"""Asynchronous, budget-aware NASH: hill climbing with network morphisms that never waits at a step barrier.

Elsken, Metzen, Hutter, *Simple and Efficient Architecture Search for Convolutional Neural Networks*,
arXiv 1711.04528, Algorithm 1, scheduled asynchronously. **[dev]** Everything below is a deviation from the
paper's synchronous steps (which :class:`~nni_nas_ext.strategies.nash.HillClimbing` keeps):

* **No step barrier.** Whenever a trial slot is free, :meth:`AsyncHillClimbing.ask` proposes a candidate
  derived from the *current* incumbent: first its continuation (the same network trained ``epochs_neighbour``
  more epochs, role ``incumbent``; the paper retrains the incumbent in every step for the same reason: a
  child has had more training than its parent, so the parent must get it too before they are compared),
  then children (``n_morphisms`` random morphisms, role ``child``). The incumbent is the successful
  candidate with the highest validation accuracy told so far (ties: the earlier); when it changes, the next
  proposals derive from the new one. So no slot idles while the slowest candidate of a step finishes.
* **A child budget.** At most ``max_children`` morphism children (default ``n_steps * (n_neighbours - 1)``,
  the sync schedule's number), at most ``n_neighbours - 1`` training at once when the caller gives no slot
  count.
* **A time budget, when the caller gives one** (:class:`Budget`: seconds and trials left, free slots; the
  NNI adapter reads ``maxExperimentDuration`` and ``maxTrialNumber``). The strategy has no clock: it
  estimates the cost of a candidate from what the trials reported (``timings``: seconds per epoch of the
  parent, scaled by the ratio of MACs, plus the median per-trial overhead), never proposes one whose
  estimate does not fit in the time left *after* the reserve of the final phase, and starts the final
  phase as soon as nothing more fits and nothing is running. The final trainings' epochs are cut to what
  fits (at least one).
* **Early stopping of hopeless children.** A child carries a rule (``Candidate.stop_after`` /
  ``stop_below``): after ``early_stop_after`` epochs its trial stops if its validation accuracy is below
  the parent's (the incumbent's) final validation accuracy minus ``early_stop_margin``, saves its checkpoint
  and reports ``early_stopped: true`` with ``epochs_trained``. Such a result is a success that never becomes
  the incumbent; the cost model reads ``epochs_trained``. Only children get the rule (not the seed, the
  continuations or the finals), and only when they inherit weights: a child trained from scratch starts
  far below its parent, so the parent's accuracy says nothing about it after one epoch.
* **The final phase** is the ledger's: the winner continues from its own weights on train+val for
  ``epochs_final`` epochs and is tested once (role ``final``); the seed gets the same (``seed_final``,
  with ``final_seed``, the default) on the slot the winner's final leaves free.

Randomness: one generator (``config.seed``), drawn only when a child is proposed. Given the same results in
the same order (and the same budgets), the same candidates are proposed; a restored state continues exactly.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

from nni_nas_ext.core.architecture import Architecture

from ._bookkeeping import _DONE, _FAILED, _FINAL, _SEED, CandidateLedger, _accuracy
from .candidate import Candidate
from .config import Config, option
from .nash import NashConfig, draw_children, nash_morphisms

__all__ = ["AsyncHillClimbing", "AsyncNashConfig", "Budget"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "nash-async-hill-climbing"
STATE_VERSION = 1

_CLIMB = "climb"
#: train+val is larger than train: with the usual 20 % validation split, 1 / 0.8 = 1.25 times the data
_TRAIN_VAL_FACTOR = 1.25
#: margin on every cost estimate (the estimate comes from other networks' timings)
_SAFETY = 1.15


@dataclass(frozen=True)
class Budget:
    """What the caller knows of the resources left (``None``: unknown / unlimited)."""

    free_slots: Optional[int] = None
    seconds_left: Optional[float] = None
    trials_left: Optional[int] = None


@dataclass(frozen=True)
class AsyncNashConfig(NashConfig):
    """:class:`~nni_nas_ext.strategies.nash.NashConfig` plus the asynchronous schedule's own keys."""

    config_name: ClassVar[str] = "nash_async"

    max_children: Optional[int] = option(
        None, minimum=1, maximum=1_000_000,
        doc="morphism children proposed at most; null: n_steps * (n_neighbours - 1), as many as the "
            "synchronous schedule (a time budget usually ends the search first)")
    early_stop_after: int = option(
        1, minimum=0, maximum=1000,
        doc="a child's trial checks its validation accuracy after this many epochs and stops if it is below "
            "the parent's final validation accuracy minus early_stop_margin; 0: never (nor when it is not "
            "below epochs_neighbour)")
    early_stop_margin: float = option(
        0.05, minimum=0.0, maximum=1.0,
        doc="how far (accuracy, 0.05 = 5 points) a child may trail its parent at that check; wide because "
            "the child restarts the cosine cycle at the full learning rate, which costs accuracy early on, "
            "and a 4,000-image validation split is noisy by ~0.5 points: only children that lost what they "
            "inherited stop")
    final_seed: bool = option(
        True, doc="also train and test the seed in the final phase, on the slot the winner's final training "
                  "leaves free (the gain over the start, measured alike); false: the winner alone")


class AsyncHillClimbing(CandidateLedger):
    """NASH without step barriers, within a time budget (see the module docstring)."""

    log_name: ClassVar[str] = "NASH-async"
    state_format: ClassVar[str] = STATE_FORMAT
    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = AsyncNashConfig
    phases: ClassVar[tuple[str, ...]] = (_SEED, _CLIMB, _FINAL, _DONE, _FAILED)
    generation_key: ClassVar[str] = "step"
    logger: ClassVar[logging.Logger] = logger
    #: ``ask`` takes a :class:`Budget` (the NNI adapter passes one, a free slot at a time)
    budget_aware: ClassVar[bool] = True
    config: AsyncNashConfig

    def __init__(self, seed_architecture: Architecture,
                 config: Union[AsyncNashConfig, Mapping[str, Any], None] = None) -> None:
        super().__init__(seed_architecture, config)
        self._require_seed_within(self.config.max_parameters)
        self._morphisms = nash_morphisms(self.config)
        self._incumbent: str | None = None
        self._continued: list[str] = []      # incumbents whose continuation was proposed
        self._outstanding: list[str] = []    # proposed, not told (in proposal order)
        self._children = 0
        self._stop_reason: str | None = None
        self._propose_seed(self.config.epochs_seed)
        self._outstanding.append(self._seed_id)

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self, budget: Budget | None = None) -> list[Candidate]:  # type: ignore[override]
        """Candidates to start now: up to ``budget.free_slots`` (else up to ``n_neighbours - 1`` running)."""
        if self._phase == _CLIMB:
            self._fill(budget)
        return super().ask()

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        if not super().tell(candidate_id, result, failure=failure):
            return False
        if candidate_id in self._outstanding:
            self._outstanding.remove(candidate_id)
        acc = self._val_acc(candidate_id)
        role = self._candidates[candidate_id].role
        if self._phase == _SEED:
            if not self._fail_seed("climb"):
                self._incumbent, self._phase = self._seed_id, _CLIMB
        elif self._phase == _CLIMB and acc is not None and role in ("child", "incumbent") and \
                not self._stopped_early(candidate_id):
            best = self._val_acc(self._incumbent) if self._incumbent is not None else None
            if best is None or acc > best:
                logger.info("NASH-async: new incumbent %s (val acc %.4f > %s)", candidate_id, acc,
                            "none" if best is None else f"{best:.4f}")
                self._incumbent = candidate_id
        elif self._phase == _FINAL and not self._outstanding:
            self._phase = _DONE
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._state_head(),
            **self._state_ledger(),
            "incumbent": self._incumbent,
            "continued": list(self._continued),
            "outstanding": list(self._outstanding),
            "children": self._children,
            "stop_reason": self._stop_reason,
            **self._state_tail(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        new["_outstanding"] = [str(c) for c in state["outstanding"]]
        new["_continued"] = [str(c) for c in state["continued"]]
        return set(new["_outstanding"]) | set(new["_continued"])

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        new.update({"_incumbent": state["incumbent"], "_children": int(state["children"]),
                    "_stop_reason": state["stop_reason"]})

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> AsyncHillClimbing:
        strategy: AsyncHillClimbing = cls._from_state(state)
        return strategy

    def summary(self) -> dict[str, Any]:
        progress = {"stopped": self._stop_reason, "children": self._children,
                    "max_children": self._max_children(), "running": len(self._outstanding),
                    "early_stopped": sum(self._stopped_early(cid) for cid in self._results)}
        return self._summary("nash_async", progress, {})

    @property
    def incumbent(self) -> Candidate | None:
        return None if self._incumbent is None else self._candidates[self._incumbent]

    # ---- the ledger's hooks: every outstanding candidate is "the round" --------------------------------

    def _generation(self) -> int:
        return self._children

    def _current_round(self) -> list[str]:
        return self._outstanding

    def _close_round(self) -> None:
        """Nothing is running: if the climb cannot go on, start the final phase (decided in :meth:`_fill`)."""

    def _history(self) -> list[dict[str, Any]]:
        return [{"candidate": cid, "role": c.role, "parent": c.parent, "arch_id": c.architecture.id,
                 "params": c.architecture.num_parameters(), "val_acc": self._val_acc(cid),
                 "test_acc": _accuracy(self._results[cid], "test_acc") if cid in self._results else None,
                 "failed": self._failures.get(cid), "early_stopped": self._stopped_early(cid)}
                for cid, c in self._candidates.items()]

    def _stopped_early(self, cid: str) -> bool:
        """Whether a candidate's trial reported that its early-stopping rule ended it."""
        return self._results.get(cid, {}).get("early_stopped") is True

    # ---- proposing ------------------------------------------------------------------------------

    def _max_children(self) -> int:
        limit = self.config.max_children
        return limit if limit is not None else self.config.n_steps * (self.config.n_neighbours - 1)

    def _fill(self, budget: Budget | None) -> None:
        assert self._incumbent is not None
        if budget is not None and budget.free_slots is not None:
            slots = budget.free_slots - len(self._unasked)
        else:
            slots = self.config.n_neighbours - 1 - len(self._outstanding)
        while slots > 0 and self._stop_reason is None:
            candidate = self._next(budget)
            if candidate is None:
                break
            self._outstanding.append(candidate.id)
            slots -= 1
        if self._stop_reason is not None and not self._outstanding:
            self._start_final(budget)

    def _next(self, budget: Budget | None) -> Candidate | None:
        """The next candidate from the incumbent, or None (with :attr:`_stop_reason` set when climbing ends)."""
        incumbent = self._candidates[self._incumbent]  # type: ignore[index]
        parent = incumbent.id if self.config.inherit_weights else None
        epochs = self.config.epochs_neighbour
        continuing = incumbent.id not in self._continued
        if not continuing and self._children >= self._max_children():
            self._stop(f"{self._children} children proposed (max_children={self._max_children()})")
            return None
        if budget is not None:
            trials_needed = 1 + (1 if self.config.final_seed else 0)
            if budget.trials_left is not None and budget.trials_left - len(self._unasked) <= trials_needed:
                self._stop(f"{budget.trials_left} trial(s) left: kept for the final phase")
                return None
        fits = self._fits(budget, epochs)
        if continuing:
            arch = incumbent.architecture.with_lineage(None)
            why = fits(arch)
            if why is not None:
                self._stop(f"the incumbent's continuation {why}")
                return None
        else:
            seen, arch, why = self._tried_from(incumbent.id), None, None
            for _attempt in range(self.config.max_redraws):  # a child too costly for the time left is redrawn
                children, note = draw_children(incumbent.architecture, 1, self.config, self._morphisms, self._rng,
                                               seen=seen, duplicate="an architecture proposed from it before")
                if not children:
                    self._stop(f"no new child of {incumbent.id}: {note}")
                    return None
                seen.add(children[0].id)
                why = fits(children[0])
                if why is None:
                    arch = children[0]
                    break
            if arch is None:
                self._stop(f"no child of {incumbent.id} fits in {self.config.max_redraws} draws: the last {why}")
                return None
        if continuing:
            self._continued.append(incumbent.id)
            return self._propose(arch, parent=parent, epochs=epochs, role="incumbent")
        self._children += 1
        return self._propose(arch, parent=parent, epochs=epochs, role="child", **self._early_stop_rule(epochs))

    def _early_stop_rule(self, epochs: int) -> dict[str, Any]:
        """The rule a child of the incumbent carries (``stop_after``, ``stop_below``), or none (see the module
        docstring)."""
        after, parent_acc = self.config.early_stop_after, self._val_acc(self._incumbent)  # type: ignore[arg-type]
        if not 0 < after < epochs or not self.config.inherit_weights or parent_acc is None:
            return {}
        below = min(1.0, max(0.0, parent_acc - self.config.early_stop_margin))  # an accuracy, even if a report was not
        return {"stop_after": after, "stop_below": round(below, 6)}

    def _fits(self, budget: Budget | None, epochs: int) -> Any:
        """A check of a candidate architecture against the time left: None if it fits, else why not."""
        def check(arch: Architecture) -> str | None:
            if budget is None or budget.seconds_left is None:
                return None
            cost, reserve = self._estimate(arch, epochs), self._final_reserve()
            if cost is None or reserve is None or cost + reserve <= budget.seconds_left:
                return None
            return (f"would need ~{cost:.0f} s and the final phase ~{reserve:.0f} s, but "
                    f"{budget.seconds_left:.0f} s are left")
        return check

    def _tried_from(self, parent_id: str) -> set[str]:
        """Architectures already proposed from this parent (a child is never proposed twice)."""
        return {c.architecture.id for c in self._candidates.values() if c.parent == parent_id} | \
            {self._candidates[parent_id].architecture.id}

    def _stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._notes.append(f"climbing stopped: {reason}")
        logger.info("NASH-async: climbing stopped: %s", reason)

    def _start_final(self, budget: Budget | None) -> None:
        assert self._incumbent is not None
        epochs = self.config.epochs_final
        if budget is not None and budget.seconds_left is not None:
            epochs = self._final_epochs_that_fit(budget.seconds_left)
        ids = self._propose_finals(self._incumbent, epochs)
        if not self.config.final_seed:  # the ledger proposes the seed's too
            seed_final = ids.pop()
            del self._candidates[seed_final]
            self._unasked.remove(seed_final)
        self._outstanding.extend(ids)
        self._phase = _FINAL

    # ---- the cost model (from what trials reported; no clock here) --------------------------------------

    def _per_epoch(self, cid: str) -> float | None:
        result = self._results.get(cid)
        epochs = self._epochs_trained(cid)
        timings = result.get("timings") if result else None
        if not isinstance(timings, Mapping) or epochs <= 0:
            return None
        train = timings.get("train")
        setup = timings.get("train_setup", 0.0)
        if not isinstance(train, (int, float)) or not isinstance(setup, (int, float)):
            return None
        per_epoch = (float(train) - float(setup)) / epochs
        return per_epoch if per_epoch > 0 and math.isfinite(per_epoch) else None

    def _overhead(self) -> float:
        """Median seconds of a trial outside its epochs (process start, data, checkpoint), over told trials."""
        values = []
        for cid, result in self._results.items():
            timings = result.get("timings")
            per_epoch = self._per_epoch(cid)
            total = timings.get("process_total", timings.get("total")) if isinstance(timings, Mapping) else None
            if per_epoch is not None and isinstance(total, (int, float)):
                values.append(max(0.0, float(total) - per_epoch * self._epochs_trained(cid)))
        return statistics.median(values) if values else 0.0

    def _estimate(self, arch: Architecture, epochs: int, data_factor: float = 1.0) -> float | None:
        """Seconds a trial of ``arch`` for ``epochs`` would take: the incumbent's seconds per epoch scaled by
        MACs (the nearest measured network), plus the median overhead; None before any measurement."""
        ref = self._incumbent
        per_epoch = self._per_epoch(ref) if ref is not None else None
        if per_epoch is None:
            return None
        ref_macs = max(1, self._candidates[ref].architecture.num_macs())  # type: ignore[index]
        scaled = per_epoch * max(1, arch.num_macs()) / ref_macs
        return _SAFETY * (self._overhead() + epochs * scaled * data_factor)

    def _final_reserve(self) -> float | None:
        incumbent = self._candidates[self._incumbent]  # type: ignore[index]
        one = self._estimate(incumbent.architecture, self.config.epochs_final, _TRAIN_VAL_FACTOR)
        if one is None:
            return None
        if self.config.final_seed:
            seed = self._estimate(self.seed_architecture, self.config.epochs_final, _TRAIN_VAL_FACTOR)
            one = max(one, seed or 0.0)  # trained side by side, on two slots
        return one

    def _final_epochs_that_fit(self, seconds_left: float) -> int:
        incumbent = self._candidates[self._incumbent]  # type: ignore[index]
        for epochs in range(self.config.epochs_final, 0, -1):
            cost = self._estimate(incumbent.architecture, epochs, _TRAIN_VAL_FACTOR)
            if cost is None or cost <= seconds_left:
                return epochs
        return 1
