"""LEMONADE: multi-objective Lamarckian evolution with network and compression morphisms (asynchronous).

Elsken, Metzen, Hutter, *Efficient Multi-objective Neural Architecture Search via Lamarckian Evolution*,
ICLR 2019, arXiv 1804.09081, Algorithm 1 (see ``../shared/ALGORITHMS.md``)::

    P <- a few small trained networks                                   # the initial population
    each generation:
        p_KDE <- kernel density estimate over f_cheap(P)
        sample n_pc parents from P with probability proportional to 1 / p_KDE(f_cheap(parent))
        each parent -> a child by a random operator: a network morphism or an approximate one
        accept n_ac children with probability proportional to 1 / p_KDE(f_cheap(child))  (no training)
        train the accepted children from their parents' weights (Lamarckian), compressed ones distilled
        P <- Pareto front of P and the trained children

The objectives are all minimised: the validation error (expensive, known after training) and the cheap
ones of ``objectives`` (parameters and MACs of the architecture; the latency the trial measures). The
strategy never trains: a child is a :class:`~nni_nas_ext.core.jobs.Candidate` whose ``parent`` is the
network it was derived from; the trial replays its lineage on that checkpoint and, when a step is an
approximate morphism (remove a layer, remove a skip, shrink), trains it by knowledge distillation from the
parent (the trial code's job, :mod:`nni_nas_ext.trial_code`).

Deviations from the paper and choices it leaves open (marked **[dev]**):

* **[dev] Asynchronous, one generation per free slot.** The paper trains ``n_ac`` accepted children per
  generation and waits for all of them. Here, whenever a trial slot frees, :meth:`LemonadeSearch.ask`
  runs a generation of one: it samples ``n_generated`` parents (with replacement) from the *current* front,
  draws one child of each, and accepts one child by inverse density, so no slot idles while the slowest
  child of a generation trains. The front is updated as each result arrives.
* **[dev] The initial population** is the seed network (``epochs_seed`` epochs) and ``n_initial - 1``
  random children of it drawn with the configured operators (compressions included, so that smaller
  networks are there from the start), trained from scratch alike. The paper starts from a few hand-picked
  small networks.
* **[dev] Cheap objectives in log10** for the density (:mod:`.lemonade_selection`); Scott's-rule Gaussian
  kernels (scipy), with a unit-width fallback when the front is too small for a covariance.
* **[dev] Latency of a child not yet trained**: its parent's measured latency scaled by the ratio of MACs
  (the paper's cheap objectives are all known before training; a measured latency is not).
* **[dev] A budget.** At most ``max_children`` children; with a time budget (:class:`~.nash_async.Budget`,
  from NNI's ``maxExperimentDuration``) a child whose estimated trial does not fit in the time left after the
  final phase's reserve is not accepted (the cost model of :mod:`.trial_costs`).
* **[dev] The final phase.** The networks of the final front (at most ``final_front_max``, spread along the
  first cheap objective, the most accurate always kept) are each evaluated once on the test set, from their
  own weights: with ``epochs_final = 0`` (the default) as they are; with ``epochs_final > 0`` after that many
  more epochs on train+val (role ``final``). The seed network is tested alike (role ``seed_final``) when it is
  not on the front, so that the summary shows the gain over the start as NASH's does. The paper reports the
  front's test errors after retraining. With a time budget each of them carries the time left when the phase
  starts (less the scheduling latency) as its :attr:`~nni_nas_ext.core.jobs.Candidate.time_limit`, as NASH's
  finals do: a final training that runs slower than estimated stops at the deadline and is still tested. A final
  that waits for a trial slot (more of them than slots) counts that limit from its own start: NNI's
  ``maxExperimentDuration`` may end it first.
* ``inherit_weights = false`` is the ablation of Lamarckism: the same draws, every child trained from a
  fresh initialisation (the final phase still evaluates each network's own weights).

Randomness: one generator (``config.seed``). Given the same results in the same order (and budgets), the same
candidates are proposed; a restored state continues exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union, cast

import numpy as np

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.config import Config, ConfigError, option
from nni_nas_ext.core.errors import MorphismError
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.morphisms import COMPRESSIONS, MORPHISMS, Morphism, create_morphism, random_chain

from ._bookkeeping import PHASE_DONE, PHASE_FAILED, PHASE_FINAL, PHASE_SEED, CandidateLedger, accuracy_of
from .lemonade_selection import (
    CHEAP_OBJECTIVES, NOMINAL_MS_PER_MAC, Objectives, cheap_values, inverse_density_choice, measured_latency,
)
from .base import Budget
from .trial_costs import TRAIN_VAL_FACTOR, TrialCosts, final_time_limit

__all__ = ["LemonadeConfig", "LemonadeSearch", "lemonade_operators"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "lemonade"
STATE_VERSION = 1

_EVOLVE = "evolve"
_OPERATORS = {**MORPHISMS, **COMPRESSIONS}


@dataclass(frozen=True)
class LemonadeConfig(Config):
    """Configuration of :class:`LemonadeSearch` (NNI ``classArgs``); defaults sized for CPU runs."""

    config_name: ClassVar[str] = "lemonade"

    objectives: tuple[str, ...] = option(
        ("params",), choices=CHEAP_OBJECTIVES, non_empty=True, unique=True,
        doc="cheap objectives minimised beside the validation error: params, macs, latency_ms (measured by the "
            "trial: needs measure_latency: true) (paper: parameters, or MACs/latency on ImageNet64)")
    n_initial: int = option(
        2, minimum=1, maximum=1000,
        doc="initial population: the seed and n_initial - 1 random children of it, trained from scratch (paper: "
            "a few small hand-made networks)")
    n_generated: int = option(
        32, minimum=1, maximum=100_000,
        doc="children drawn (from parents sampled by inverse density) for each one accepted and trained "
            "(paper n_pc: ~1000 per generation of n_ac ~ 8 trained)")
    n_morphisms: int = option(
        1, minimum=1, maximum=100,
        doc="operators chained to build one child (paper: one)")
    morphisms: tuple[str, ...] = option(
        ("deepen", "widen", "add_skip", "concat_skip", "remove_layer", "shrink", "remove_skip"),
        choices=tuple(_OPERATORS), non_empty=True, unique=True,
        doc="operators drawn uniformly among those that apply: network morphisms (deepen, widen, add_skip, "
            "concat_skip, widen_kernel, branch) and approximate ones (remove_layer, shrink, remove_skip)")
    morphism_mode: str = option(
        "exact", choices=("exact", "replicate", "noise"),
        doc="mode of widen and branch: 'exact' (random in, zero out), 'replicate' (Net2Net copies), 'noise'")
    epochs_seed: int = option(3, minimum=1, maximum=100_000, doc="epochs of each network of the initial population")
    epochs_child: int = option(
        2, minimum=1, maximum=100_000,
        doc="epochs of one cosine cycle for every child (paper: 20 with SGDR; ANM children by distillation)")
    epochs_final: int = option(
        0, minimum=0, maximum=100_000,
        doc="the final front's networks: 0 = tested as they are; > 0 = trained so many more epochs on "
            "train+val first")
    final_front_max: int = option(
        8, minimum=1, maximum=1000,
        doc="networks of the final front tested at most (spread along the first cheap objective; the most "
            "accurate always)")
    max_children: Optional[int] = option(
        40, minimum=1, maximum=1_000_000,
        doc="children trained at most; null: until the time or trial budget ends")
    max_running: int = option(
        2, minimum=1, maximum=10_000,
        doc="children training at once when the caller does not say how many slots are free")
    max_parameters: Optional[int] = option(
        None, minimum=1, doc="children with more parameters are not drawn; null: no limit (not in the paper)")
    max_redraws: int = option(
        50, minimum=1, maximum=100_000,
        doc="failed draws (no operator applies, duplicate, too large) tolerated per child before giving up")
    seed: int = option(0, minimum=0, maximum=2**31 - 1, doc="seed of the strategy's random generator")
    inherit_weights: bool = option(
        True, doc="children start from their parents' weights (Lamarckian, the paper); false: from a fresh "
                  "initialisation with the same draws (the ablation)")

    def check_task(self, task: Config) -> None:
        """Refuse a trial configuration that cannot report what these objectives need."""
        if "latency_ms" in self.objectives and not getattr(task, "measure_latency", False):
            raise ConfigError("lemonade: objectives include latency_ms, which the trial measures only with "
                              "measure_latency: true; set it, or choose params or macs", key="objectives",
                              value=list(self.objectives))


def lemonade_operators(config: LemonadeConfig) -> list[Morphism]:
    """The configured operators; those that take a mode get ``config.morphism_mode``."""
    out = []
    for name in config.morphisms:
        takes_mode = "mode" in {f.name for f in dataclasses.fields(cast(Any, _OPERATORS[name]))}
        out.append(create_morphism(name, mode=config.morphism_mode) if takes_mode else create_morphism(name))
    return out


class LemonadeSearch(CandidateLedger):
    """LEMONADE as a pure, asynchronous, budget-aware ask/tell strategy (see the module docstring)."""

    log_name: ClassVar[str] = "LEMONADE"
    state_format: ClassVar[str] = STATE_FORMAT
    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = LemonadeConfig
    phases: ClassVar[tuple[str, ...]] = (PHASE_SEED, _EVOLVE, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "generation"
    logger: ClassVar[logging.Logger] = logger
    budget_aware: ClassVar[bool] = True
    config: LemonadeConfig

    def __init__(self, seed_architecture: Architecture,
                 config: Union[LemonadeConfig, Mapping[str, Any], None] = None) -> None:
        super().__init__(seed_architecture, config)
        self._require_seed_within(self.config.max_parameters)
        self._operators = lemonade_operators(self.config)
        self._outstanding: list[str] = []
        self._initial: list[str] = []
        self._children = 0
        self._stop_reason: str | None = None
        seed = self._propose_seed(self.config.epochs_seed)
        self._initial.append(seed.id)
        seen = {seed.architecture.id}
        for _ in range(self.config.n_initial - 1):
            arch = self._draw(self.seed_architecture, seen)
            if arch is None:
                self._notes.append("the initial population is smaller than n_initial: no new child of the seed")
                break
            seen.add(arch.id)
            self._initial.append(self._propose(arch, parent=None, epochs=self.config.epochs_seed, role="child").id)
        self._outstanding.extend(self._initial)

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self, budget: Budget | None = None) -> list[Candidate]:
        """Candidates to start now: up to ``budget.free_slots`` (else up to ``max_running`` running)."""
        if self._phase == _EVOLVE:
            self._fill(budget)
        return super().ask()

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        if not super().tell(candidate_id, result, failure=failure):
            return False
        if candidate_id in self._outstanding:
            self._outstanding.remove(candidate_id)
        if self._phase == PHASE_SEED and candidate_id in self._initial:
            if any(cid in self._results for cid in self._initial):
                self._phase = _EVOLVE
            elif all(self._told(cid) for cid in self._initial):
                self._failure_reason = ("every network of the initial population failed: "
                                        + "; ".join(f"{cid}: {self._failures[cid]}" for cid in self._initial))
                self._phase = PHASE_FAILED
                logger.error("LEMONADE: %s", self._failure_reason)
        elif self._phase == PHASE_FINAL and not self._outstanding:
            self._phase = PHASE_DONE
        return True

    def state_dict(self) -> dict[str, Any]:
        return {**self._state_head(), **self._state_ledger(), "outstanding": list(self._outstanding),
                "initial": list(self._initial), "children": self._children, "stop_reason": self._stop_reason,
                **self._state_tail()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        new["_outstanding"] = [str(c) for c in state["outstanding"]]
        new["_initial"] = [str(c) for c in state["initial"]]
        return set(new["_outstanding"]) | set(new["_initial"])

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        stop = state["stop_reason"]
        new.update({"_children": int(state["children"]), "_stop_reason": None if stop is None else str(stop)})

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LemonadeSearch:
        strategy: LemonadeSearch = cls._from_state(state)
        return strategy

    # ---- what the search found ------------------------------------------------------------------

    def front(self) -> list[str]:
        """Ids of the trained networks on the Pareto front (validation error and the cheap objectives)."""
        ids = self._trained()
        if not ids:
            return []
        return [ids[i] for i in self._objectives(ids).front()]

    @property
    def incumbent(self) -> Candidate | None:
        """The most accurate network of the front (what a single-network export takes)."""
        ids = self.front()
        if not ids:
            return None
        order = list(self._candidates)
        best = max(ids, key=lambda cid: (cast(float, self._val_acc(cid)), -order.index(cid)))  # ties: the earlier
        return self._candidates[best]

    def summary(self) -> dict[str, Any]:
        finals = {self._candidates[cid].parent: cid for cid in self._candidates
                  if self._candidates[cid].role in ("final", "seed_final")}
        front = []
        for cid in self.front():
            row = self._figures(cid, finals.get(cid))
            row["objectives"] = dict(zip(("val_error", *self.config.objectives), self._objective_row(cid)))
            front.append(row)
        progress = {"stopped": self._stop_reason, "children": self._children, "max_children": self.config.max_children,
                    "running": len(self._outstanding), "objectives": ["val_error", *self.config.objectives]}
        out = self._summary("lemonade", progress, {"front": front})
        for key in ("seed", "winner"):  # the ledger's summary knows one final; here each tested network has its own
            entry = out.get(key)
            if entry is not None:
                final_id = finals.get(entry["candidate"])
                final = self._results.get(final_id) if final_id is not None else None
                entry.update({"final_candidate": final_id,
                              "test_acc": None if final is None else accuracy_of(final, "test_acc"),
                              "final_failed": self._failures.get(final_id) if final_id is not None else None})
        return out

    # ---- the ledger's hooks ---------------------------------------------------------------------

    def _generation(self) -> int:
        return self._children

    def _current_round(self) -> list[str]:
        return self._outstanding

    def _close_round(self) -> None:
        """Every outstanding candidate was told: nothing to do (the next ``ask`` decides)."""

    def _history(self) -> list[dict[str, Any]]:
        return [{"candidate": cid, "role": c.role, "parent": c.parent, "arch_id": c.architecture.id,
                 "generation": c.step, "params": c.architecture.num_parameters(),
                 "macs": c.architecture.num_macs(), "latency_ms": measured_latency(self._results.get(cid)),
                 "val_acc": self._val_acc(cid),
                 "test_acc": accuracy_of(self._results[cid], "test_acc") if cid in self._results else None,
                 "failed": self._failures.get(cid)}
                for cid, c in self._candidates.items()]

    # ---- objectives -----------------------------------------------------------------------------

    def _trained(self) -> list[str]:
        """Successful networks of the search (initial population and children), in proposal order."""
        return [cid for cid, c in self._candidates.items()
                if cid in self._results and c.role in ("seed", "child") and self._val_acc(cid) is not None]

    def _ms_per_mac(self) -> float:
        """Median measured milliseconds per MAC over the trained networks (for latencies not measured)."""
        ratios = [ms / max(1, self._candidates[cid].architecture.num_macs()) for cid in self._trained()
                  if (ms := measured_latency(self._results.get(cid))) is not None]
        return float(np.median(ratios)) if ratios else NOMINAL_MS_PER_MAC

    def _latency(self, arch: Architecture, measured_from: str | None) -> float:
        """A network's latency: measured by its trial, else its parent's scaled by MACs ([dev]), else the median
        measured ms per MAC times its MACs."""
        if measured_from is not None:
            own = measured_latency(self._results.get(measured_from))
            if own is not None and self._candidates[measured_from].architecture.id == arch.id:
                return own
            if own is not None:
                ref = max(1, self._candidates[measured_from].architecture.num_macs())
                return own * max(1, arch.num_macs()) / ref
        return self._ms_per_mac() * max(1, arch.num_macs())

    def _objective_row(self, cid: str) -> list[float]:
        arch = self._candidates[cid].architecture
        error = 1.0 - cast(float, self._val_acc(cid))
        return [error, *cheap_values(arch, self.config.objectives, self._latency(arch, cid))]

    def _objectives(self, ids: list[str]) -> Objectives:
        rows = [self._objective_row(cid) for cid in ids]
        return Objectives.of([r[0] for r in rows], [r[1:] for r in rows])

    # ---- proposing ------------------------------------------------------------------------------

    def _draw(self, parent: Architecture, seen: set[str]) -> Architecture | None:
        """A random chain of ``n_morphisms`` operators from ``parent``, new and within ``max_parameters``."""
        for _attempt in range(self.config.max_redraws):
            try:
                arch = random_chain(parent, self._operators, self.config.n_morphisms, self._rng).child
            except MorphismError:
                continue
            if arch.id in seen:
                continue
            if self.config.max_parameters is not None and arch.num_parameters() > self.config.max_parameters:
                continue
            return arch
        return None

    def _fill(self, budget: Budget | None) -> None:
        if budget is not None and budget.free_slots is not None:
            slots = budget.free_slots - len(self._unasked)
        else:
            slots = self.config.max_running - len(self._outstanding)
        while slots > 0 and self._stop_reason is None:
            candidate = self._next_child(budget)
            if candidate is None:
                break
            self._outstanding.append(candidate.id)
            slots -= 1
        if self._stop_reason is not None and not self._outstanding:
            self._start_final(budget)

    def _next_child(self, budget: Budget | None) -> Candidate | None:
        """One generation of one child (see the module docstring), or None with :attr:`_stop_reason` set."""
        limit = self.config.max_children
        if limit is not None and self._children >= limit:
            self._stop(f"{self._children} children proposed (max_children={limit})")
            return None
        front = self.front()
        if budget is not None and budget.trials_left is not None and \
                budget.trials_left - len(self._unasked) <= min(len(front), self.config.final_front_max) + 1:
            self._stop(f"{budget.trials_left} trial(s) left: kept for the final phase (the front's and the "
                       "seed's tests)")
            return None
        objectives = self._objectives(front)
        reference = objectives.log_cheap()
        parents = inverse_density_choice(reference, reference, self.config.n_generated, self._rng, replace=True)
        seen = {c.architecture.id for c in self._candidates.values()}
        drawn: list[tuple[Architecture, str]] = []
        too_costly = 0
        for index in parents:
            parent = self._candidates[front[int(index)]]
            arch = self._draw(parent.architecture, seen)
            if arch is None:
                continue
            seen.add(arch.id)
            if not self._fits(arch, parent.id, budget):
                too_costly += 1
                continue
            drawn.append((arch, parent.id))
        if not drawn:
            why = (f"none of {len(parents)} children fits in the time left ({too_costly} too costly)" if too_costly
                   else f"no new child could be drawn from the front ({len(front)} network(s))")
            self._stop(why)
            return None
        cheap = Objectives.of([0.0] * len(drawn), [
            cheap_values(arch, self.config.objectives, self._latency(arch, pid)) for arch, pid in drawn]).log_cheap()
        chosen = int(inverse_density_choice(reference, cheap, 1, self._rng, replace=False)[0])
        arch, parent_id = drawn[chosen]
        self._children += 1
        inherit_from = parent_id if self.config.inherit_weights else None
        return self._propose(arch, parent=inherit_from, epochs=self.config.epochs_child, role="child")

    def _fits(self, arch: Architecture, parent_id: str, budget: Budget | None) -> bool:
        """Whether a trial of ``arch`` and then the final phase fit in the time left (always, without a time
        budget or before any timing was reported)."""
        if budget is None or budget.seconds_left is None:
            return True
        costs = TrialCosts(self._candidates, self._results, self._epochs_trained)
        cost = costs.estimate(arch, self.config.epochs_child, parent_id)
        if cost is None:
            return True
        reserve = 0.0
        factor = TRAIN_VAL_FACTOR if self.config.epochs_final > 0 else 1.0
        for cid in self.front()[: self.config.final_front_max]:
            reserve += costs.estimate(self._candidates[cid].architecture, self.config.epochs_final, cid, factor) or 0.0
        return cost + reserve <= budget.seconds_left

    def _stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._notes.append(f"evolution stopped: {reason}")
        logger.info("LEMONADE: evolution stopped: %s", reason)

    def _final_members(self) -> list[str]:
        """The front's networks to test: all, or ``final_front_max`` spread along the first cheap objective (the
        most accurate always among them)."""
        front = self.front()
        cap = self.config.final_front_max
        if len(front) <= cap:
            return front
        best = max(front, key=lambda cid: cast(float, self._val_acc(cid)))
        ordered = sorted(front, key=lambda cid: self._objective_row(cid)[1])
        picks = {ordered[int(round(i))] for i in np.linspace(0, len(ordered) - 1, cap)}
        picks.add(best)
        while len(picks) > cap:  # the best was added to a full set: drop the pick nearest to it in the order
            rest = [cid for cid in ordered if cid in picks and cid != best]
            picks.discard(min(rest, key=lambda cid: abs(ordered.index(cid) - ordered.index(best))))
        return [cid for cid in front if cid in picks]

    def _start_final(self, budget: Budget | None = None) -> None:
        members = self._final_members()
        if not members:
            self._failure_reason = "no network was trained successfully: there is no front to test"
            self._phase = PHASE_FAILED
            return
        epochs = self.config.epochs_final
        limit = final_time_limit(budget)
        tested = [(cid, "final") for cid in members]
        if self._seed_id in self._results and self._seed_id not in members:
            tested.append((self._seed_id, "seed_final"))  # the start, measured alike (as NASH's final phase does)
        for cid, role in tested:
            arch = self._candidates[cid].architecture.with_lineage(None)
            final = self._propose(arch, parent=cid, epochs=epochs, role=role, time_limit=limit,
                                  train_on="train+val" if epochs > 0 else "train", evaluate_test=True)
            self._outstanding.append(final.id)
        self._phase = PHASE_FINAL
        logger.info("LEMONADE: final phase: %d network(s) of the front tested%s", len(members),
                    f" after {epochs} epoch(s) on train+val" if epochs else "")
