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
* **The paper's mix of children and continuations** (``children_first``, the default): from each incumbent,
  ``n_neighbours - 1`` children are proposed before its continuation, the paper's step of ``n_neigh - 1``
  children plus the retrained incumbent. (Proposing the continuation first, the older order, makes a
  treadmill: a continuation has more training than its parent, so it nearly always becomes the new
  incumbent and is continued at once; in a 60-CPU-minute Fashion-MNIST run 19 of 29 climbing trials were
  continuations of the seed network, and the search mostly trained the seed longer.) The children are
  compared with the incumbent's accuracy as told; the continuation, at the same number of epochs as the
  children, arrives in the same async step, and the best of them all is the incumbent.
* **No idle slot while the seed trains** (``seed_sibling``): a free slot trains a random morphism child
  of the seed *from scratch* for ``epochs_seed`` epochs (role ``child``, no parent). If it is better than
  the seed when the seed is told, it starts the climb instead. (Not in the paper.)
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
  with ``final_seed``, the default) on the slot the winner's final leaves free. With a time budget the two
  are scheduled so that no slot idles: the seed's final training starts on the first slot that frees after
  climbing stopped (the winner may still change then; the seed does not), the winner's when the last
  climbing trial is told, and each gets as many epochs as its cost estimate fits in the time left
  (``final_fill``: the winner's up to ``3 * epochs_final``, the seed's to the deadline, as it starts
  earlier and is usually smaller; else at most ``epochs_final``; at least one). An estimate is made before
  the trial runs; a machine that gets busier afterwards (other jobs, a test suite beside the search) makes
  it wrong, so each final training also carries the deadline itself (``Candidate.time_limit``: the time
  left less the scheduling latency) and its trial stops at the last epoch that fits
  (``stopped_at_deadline``).

Randomness: one generator (``config.seed``), drawn only when a child is proposed. Given the same results in
the same order (and the same budgets), the same candidates are proposed; a restored state continues exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.config import Config, option
from nni_nas_ext.core.jobs import Candidate

from ._bookkeeping import PHASE_DONE, PHASE_FAILED, PHASE_FINAL, PHASE_SEED, CandidateLedger, accuracy_of
from .base import Budget
from .nash import NashConfig, draw_children, nash_morphisms
from .trial_costs import TRAIN_VAL_FACTOR, TrialCosts, final_time_limit

__all__ = ["AsyncHillClimbing", "AsyncNashConfig", "Budget"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "nash-async-hill-climbing"
STATE_VERSION = 1

_CLIMB = "climb"
#: with ``final_fill``, a final training gets at most this many times ``epochs_final``
_FINAL_FILL_MAX = 3
#: the seed's final training starts while the last climbing trials run and fills its slot to the deadline (the
#: seed is usually the smallest network, so it may take many more epochs than the winner's in that time)
_SEED_FINAL_FILL_MAX = 1000


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
    children_first: bool = option(
        True, doc="from each incumbent, propose n_neighbours - 1 children before its continuation (the paper's "
                  "step); false: the continuation first (a treadmill that mostly trains the seed longer)")
    seed_sibling: bool = option(
        True, doc="while the seed trains, a free slot trains a random morphism child of the seed from scratch "
                  "for epochs_seed epochs; the better of the two starts the climb (no idle slot at the start)")
    final_fill: bool = option(
        True, doc="with a time budget, give the final trainings as many epochs as fit in the time left (up to "
                  "3 * epochs_final) so that the run ends at its deadline; false: at most epochs_final")
    final_seed: bool = option(
        True, doc="also train and test the seed in the final phase, on the slot the winner's final training "
                  "leaves free (the gain over the start, measured alike); false: the winner alone")


class AsyncHillClimbing(CandidateLedger):
    """NASH without step barriers, within a time budget (see the module docstring)."""

    log_name: ClassVar[str] = "NASH-async"
    state_format: ClassVar[str] = STATE_FORMAT
    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = AsyncNashConfig
    phases: ClassVar[tuple[str, ...]] = (PHASE_SEED, _CLIMB, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "step"
    logger: ClassVar[logging.Logger] = logger
    #: ``ask`` uses its :class:`~.base.Budget` (the NNI adapter passes one, a free slot at a time)
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
        self._proposed_from: dict[str, int] = {}  # children proposed from each incumbent
        self._sibling: str | None = None          # the seed phase's child from scratch
        self._stop_reason: str | None = None
        self._propose_seed(self.config.epochs_seed)
        self._outstanding.append(self._seed_id)

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self, budget: Budget | None = None) -> list[Candidate]:
        """Candidates to start now: up to ``budget.free_slots`` (else up to ``n_neighbours - 1`` running)."""
        if self._phase == PHASE_SEED:
            self._fill_seed_phase(budget)
        elif self._phase == _CLIMB:
            self._fill(budget)
        return super().ask()

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        if not super().tell(candidate_id, result, failure=failure):
            return False
        if candidate_id in self._outstanding:
            self._outstanding.remove(candidate_id)
        acc = self._val_acc(candidate_id)
        role = self._candidates[candidate_id].role
        if self._phase == PHASE_SEED:
            if candidate_id == self._seed_id and not self._fail_seed("climb"):
                self._incumbent, self._phase = self._seed_id, _CLIMB
                sibling = self._val_acc(self._sibling) if self._sibling is not None else None
                if sibling is not None and sibling > (acc if acc is not None else -math.inf):
                    logger.info("NASH-async: the seed's sibling %s (val acc %.4f) starts the climb", self._sibling,
                                sibling)
                    self._incumbent = self._sibling
        elif self._phase == _CLIMB and acc is not None and role in ("child", "incumbent") and \
                not self._stopped_early(candidate_id):
            best = self._val_acc(self._incumbent) if self._incumbent is not None else None
            if best is None or acc > best:
                logger.info("NASH-async: new incumbent %s (val acc %.4f > %s)", candidate_id, acc,
                            "none" if best is None else f"{best:.4f}")
                self._incumbent = candidate_id
        elif self._phase == PHASE_FINAL and not self._outstanding:
            self._phase = PHASE_DONE
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._state_head(),
            **self._state_ledger(),
            "incumbent": self._incumbent,
            "continued": list(self._continued),
            "outstanding": list(self._outstanding),
            "children": self._children,
            "proposed_from": dict(self._proposed_from),
            "sibling": self._sibling,
            "stop_reason": self._stop_reason,
            **self._state_tail(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        new["_outstanding"] = [str(c) for c in state["outstanding"]]
        new["_continued"] = [str(c) for c in state["continued"]]
        proposed_from = state.get("proposed_from", {})  # absent in states of version 1 before children_first
        if not isinstance(proposed_from, Mapping):
            raise ValueError(f"state key 'proposed_from' must be a mapping of candidate ids to counts, "
                             f"not {proposed_from!r}")
        new["_proposed_from"] = {str(k): int(v) for k, v in proposed_from.items()}
        sibling = state.get("sibling")
        new["_sibling"] = None if sibling is None else str(sibling)
        return set(new["_outstanding"]) | set(new["_continued"]) | set(new["_proposed_from"]) | \
            ({new["_sibling"]} if new["_sibling"] is not None else set())

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
                 "test_acc": accuracy_of(self._results[cid], "test_acc") if cid in self._results else None,
                 "failed": self._failures.get(cid), "early_stopped": self._stopped_early(cid)}
                for cid, c in self._candidates.items()]

    def _stopped_early(self, cid: str) -> bool:
        """Whether a candidate's trial reported that its early-stopping rule ended it."""
        return self._results.get(cid, {}).get("early_stopped") is True

    # ---- proposing ------------------------------------------------------------------------------

    def _max_children(self) -> int:
        limit = self.config.max_children
        return limit if limit is not None else self.config.n_steps * (self.config.n_neighbours - 1)

    def _fill_seed_phase(self, budget: Budget | None) -> None:
        """While the seed trains, a free slot trains a child of the seed from scratch (``seed_sibling``)."""
        if not self.config.seed_sibling or self._sibling is not None or budget is None or budget.free_slots is None:
            return
        if budget.free_slots - len(self._unasked) <= 0:
            return
        if self._trials_short(budget, 1):
            return  # the trials left are the climb's first and the final phase's
        children, note = draw_children(self.seed_architecture, 1, self.config, self._morphisms, self._rng,
                                       duplicate="the seed")
        if not children:
            logger.info("NASH-async: no sibling for the seed: %s", note)
            return
        sibling = self._propose(children[0], parent=None, epochs=self.config.epochs_seed, role="child")
        self._sibling = sibling.id
        self._children += 1
        self._outstanding.append(sibling.id)

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
        if self._stop_reason is None:
            return
        timed = budget is not None and budget.seconds_left is not None
        climbing = [cid for cid in self._outstanding if self._candidates[cid].role != "seed_final"]
        if timed and climbing and slots > 0 and self.config.final_seed and self._seed_final() is None:
            self._start_seed_final(budget)  # the seed does not wait for the winner: no idle slot
        if not climbing:
            self._start_final(budget)

    def _next(self, budget: Budget | None) -> Candidate | None:
        """The next candidate from the incumbent, or None (with :attr:`_stop_reason` set when climbing ends)."""
        incumbent = self._candidates[self._incumbent]  # type: ignore[index]
        parent = incumbent.id if self.config.inherit_weights else None
        epochs = self.config.epochs_neighbour
        can_continue = incumbent.id not in self._continued
        children_before = self.config.n_neighbours - 1 if self.config.children_first else 0
        want_child = not can_continue or self._proposed_from.get(incumbent.id, 0) < children_before
        if want_child and self._children >= self._max_children():
            if not can_continue:
                self._stop(f"{self._children} children proposed (max_children={self._max_children()})")
                return None
            want_child = False
        if self._trials_short(budget, 0):
            self._stop(f"{budget.trials_left} trial(s) left: kept for the final phase")  # type: ignore[union-attr]
            return None
        fits = self._fits(budget, epochs)
        if want_child:
            arch, why = self._draw_child(incumbent, fits)
            if arch is not None:
                self._children += 1
                self._proposed_from[incumbent.id] = self._proposed_from.get(incumbent.id, 0) + 1
                return self._propose(arch, parent=parent, epochs=epochs, role="child",
                                     **self._early_stop_rule(epochs))
            if not can_continue:
                self._stop(why)
                return None
        arch = incumbent.architecture.with_lineage(None)
        why = fits(arch)
        if why is not None:
            self._stop(f"the incumbent's continuation {why}")
            return None
        self._continued.append(incumbent.id)
        return self._propose(arch, parent=parent, epochs=epochs, role="incumbent")

    def _draw_child(self, incumbent: Candidate, fits: Any) -> tuple[Architecture | None, str]:
        """A new child of the incumbent that fits the time left, or None and why not."""
        seen, why = self._tried_from(incumbent.id), ""
        for _attempt in range(self.config.max_redraws):  # a child too costly for the time left is redrawn
            children, note = draw_children(incumbent.architecture, 1, self.config, self._morphisms, self._rng,
                                           seen=seen, duplicate="an architecture proposed from it before")
            if not children:
                return None, f"no new child of {incumbent.id}: {note}"
            seen.add(children[0].id)
            why = fits(children[0])
            if why is None:
                return children[0], ""
        return None, f"no child of {incumbent.id} fits in {self.config.max_redraws} draws: the last {why}"

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
            cost, reserve = self._estimate(arch, epochs), self._final_reserve(arch)
            if cost is None or reserve is None or cost + reserve <= budget.seconds_left:
                return None
            return (f"would need ~{cost:.0f} s and the final phase ~{reserve:.0f} s, but "
                    f"{budget.seconds_left:.0f} s are left")
        return check

    def _tried_from(self, parent_id: str) -> set[str]:
        """Architectures already proposed from this parent (a child is never proposed twice)."""
        return {c.architecture.id for c in self._candidates.values() if c.parent == parent_id} | \
            {self._candidates[parent_id].architecture.id}

    def _trials_short(self, budget: Budget | None, more: int) -> bool:
        """Whether proposing one more trial would leave fewer than the final phase's trials (the winner's and,
        with ``final_seed``, the seed's) plus ``more`` of NNI's ``maxTrialNumber``."""
        if budget is None or budget.trials_left is None:
            return False
        keep = 1 + (1 if self.config.final_seed else 0) + more
        return budget.trials_left - len(self._unasked) <= keep

    def _stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._notes.append(f"climbing stopped: {reason}")
        logger.info("NASH-async: climbing stopped: %s", reason)

    def _seed_final(self) -> str | None:
        return next((cid for cid, c in self._candidates.items() if c.role == "seed_final"), None)

    def _start_seed_final(self, budget: Budget | None) -> None:
        seed = self._candidates[self._seed_id]
        epochs = self._final_epochs(seed.architecture, budget, fill=_SEED_FINAL_FILL_MAX)
        self._outstanding.append(self._propose_seed_final(epochs, final_time_limit(budget)).id)

    def _start_final(self, budget: Budget | None) -> None:
        """The winner's final training (and the seed's, if it has not started yet)."""
        assert self._incumbent is not None
        winner = self._candidates[self._incumbent]
        epochs = self._final_epochs(winner.architecture, budget)
        self._outstanding.append(self._propose_final(winner.id, epochs, final_time_limit(budget)).id)
        if self.config.final_seed and self._seed_final() is None:
            self._start_seed_final(budget)
        self._phase = PHASE_FINAL

    # ---- the cost model (:mod:`.trial_costs`: from what trials reported; no clock here) -------------------

    def _costs(self) -> TrialCosts:
        return TrialCosts(self._candidates, self._results, self._epochs_trained)

    def _per_epoch(self, cid: str) -> float | None:
        return self._costs().per_epoch(cid)

    def _overhead(self) -> float:
        return self._costs().overhead()

    def _estimate(self, arch: Architecture, epochs: int, data_factor: float = 1.0) -> float | None:
        """Seconds a trial of ``arch`` for ``epochs`` would take (:meth:`TrialCosts.estimate`, the incumbent being
        the reference network); None before any measurement."""
        return self._costs().estimate(arch, epochs, self._incumbent, data_factor)

    def _final_reserve(self, candidate: Architecture) -> float | None:
        """Seconds to keep for the final phase if ``candidate`` is trained: its own final training or the
        incumbent's, whichever is costlier (the candidate may become the winner: a child too large for its
        final training to fit is never started), side by side with the seed's if that has not started."""
        seed = self.seed_architecture if self.config.final_seed and self._seed_final() is None else None
        return self._costs().final_reserve(candidate, self._incumbent, seed,  # type: ignore[arg-type]
                                           self.config.epochs_final)

    def _final_epochs(self, arch: Architecture, budget: Budget | None, fill: int = _FINAL_FILL_MAX) -> int:
        """Epochs of a final training of ``arch``: ``epochs_final`` without a time budget, else as many as fit
        in the time left (at most ``epochs_final``, or ``fill * epochs_final`` with ``final_fill``; at least 1)."""
        if budget is None or budget.seconds_left is None:
            return self.config.epochs_final
        top = self.config.epochs_final * (fill if self.config.final_fill else 1)
        fit = self._costs().epochs_within(arch, budget.seconds_left, top, self._incumbent, TRAIN_VAL_FACTOR)
        return self.config.epochs_final if fit is None else fit
