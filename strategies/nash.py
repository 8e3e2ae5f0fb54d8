"""NASH: hill climbing with network morphisms, as a pure ask/tell strategy.

Elsken, Metzen, Hutter, *Simple and Efficient Architecture Search for Convolutional Neural Networks*,
arXiv 1711.04528 (ICLR 2018 workshop), Algorithm 1 (see also ``ALGORITHMS.md``)::

    best <- train(seed net)                                   # epoch_seed epochs
    repeat n_steps times:
        children <- n_neigh - 1 nets, each = best + n_NM random morphisms (chained)
        train each child AND best for epoch_neigh epochs      # one cosine-annealed cycle (SGDR)
        best <- argmax validation accuracy                   # held-out split of the training set
    final: train best on train+val, report the test error once

:class:`HillClimbing` runs that loop over :class:`~nni_nas_ext.core.jobs.Candidate` values and
never trains anything itself: the caller trains what :meth:`HillClimbing.ask` returns (a child starts from its
parent's checkpoint and replays its lineage there) and reports results with :meth:`HillClimbing.tell`.
Each child is :func:`nni_nas_ext.core.random_chain` of ``n_morphisms`` morphisms, each drawn uniformly
among the configured operators that apply, at a uniformly drawn site, as in the paper.

Deviations from the paper, and choices it leaves open (marked **[dev]** below):

* **[dev]** Final phase: besides the winner, the *seed* gets the same final training (train+val,
  ``epochs_final`` more epochs, test set evaluated), so that the search's gain over its starting point
  is measured under one protocol. The paper reports the winner only.
* **[dev]** Ties on validation accuracy: the candidate proposed first wins. Each step proposes the
  retrained incumbent first, so a child has to be strictly better to replace it.
* **[dev]** Failures (NaN loss, crashed trial): a failed candidate never becomes the incumbent; if a
  whole step fails the incumbent stays and the search goes on. If the seed fails the search stops.
* **[dev]** ``max_parameters``: children above it are redrawn (not in the paper; it bounds CPU runs).
  Children with an architecture already proposed in the same step are redrawn too. After
  ``max_redraws`` rejected draws for one child the step goes on with the children it has; if it has
  none, climbing stops early and the final phase starts (the reason is in :meth:`~HillClimbing.summary`).
* ``inherit_weights=false`` is the ablation that measures what inheritance is worth (not in the paper's
  algorithm; the paper compares with random networks trained with SGDR instead): every candidate after the
  seed (children, the retrained incumbent, both final trainings) gets ``parent=None`` and is trained from a
  fresh initialisation with the same schedule. The random draws are the same as with inheritance, so with the
  same seed the same children are proposed until the results differ. A child still carries its lineage (the
  morphisms from the incumbent's architecture), for the record; :meth:`~HillClimbing.summary` follows the
  incumbents through the rounds instead of through ``parent``.
* The paper trains a step's networks one after another on one GPU; here they are proposed together and
  may train in parallel. Training (SGDR, lr 0.05 -> 0) and data splits belong to the trial code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union, cast

import numpy as np

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.config import Config, option
from nni_nas_ext.core.errors import MorphismError
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.morphisms import MORPHISMS, Morphism, create_morphism, random_chain

from ._bookkeeping import PHASE_DONE, PHASE_FAILED, PHASE_FINAL, PHASE_SEED, CandidateLedger, accuracy_of, json_copy

__all__ = ["HillClimbing", "NashConfig", "draw_children", "nash_morphisms"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "nash-hill-climbing"
STATE_VERSION = 1

# Phases of the search (seed, final, done and failed are the ledger's).
_CLIMB = "climb"


@dataclass(frozen=True)
class NashConfig(Config):
    """Configuration of :class:`HillClimbing` (NNI ``classArgs``).

    The defaults are small, for CPU runs; the paper's values are given in each key's doc
    (``describe_config(NashConfig)`` lists them).
    """

    config_name: ClassVar[str] = "nash"

    n_steps: int = option(
        3, minimum=1, maximum=10_000,
        doc="hill-climbing steps (paper: 5 for the 12-hour CIFAR-10 result, 8 for one day)")
    n_neighbours: int = option(
        4, minimum=2, maximum=10_000,
        doc="trainings per step: n_neighbours - 1 children plus the incumbent retrained (paper n_neigh: 8)")
    n_morphisms: int = option(
        3, minimum=1, maximum=1_000,
        doc="morphisms chained to build one child (paper n_NM: 5)")
    epochs_seed: int = option(
        3, minimum=0, maximum=100_000,
        doc="epochs of the seed network's training (paper: 20)")
    epochs_neighbour: int = option(
        2, minimum=0, maximum=100_000,
        doc="epochs of one cosine cycle for every child and the retrained incumbent (paper epoch_neigh: 17)")
    epochs_final: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the final training on train+val of the winner and of the seed (Algorithm 1's "
            "epoch_final; its value in the paper is not recorded in ALGORITHMS.md)")
    morphisms: tuple[str, ...] = option(
        ("deepen", "widen", "add_skip", "concat_skip"), choices=tuple(MORPHISMS), non_empty=True, unique=True,
        doc="operators drawn uniformly among those that apply (paper: deepen, widen, skip add, skip concat; "
            "also available: widen_kernel, branch = the re-implementation's split-up)")
    morphism_mode: str = option(
        "exact", choices=("exact", "replicate", "noise"),
        doc="'exact': exact function preservation, new units and branches start different (random in, zero "
            "out; not in the paper); 'replicate': Net2Net's exact copies (the paper's); 'noise': copies with "
            "EAS' noise (widen, branch)")
    max_parameters: Optional[int] = option(
        None, minimum=1,
        doc="children with more parameters are redrawn; null: no limit (not in the paper)")
    max_redraws: int = option(
        50, minimum=1, maximum=100_000,
        doc="rejected draws (too large, duplicate, no morphism applies) tolerated per child before giving up")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the strategy's random generator (morphism choices)")
    inherit_weights: bool = option(
        True,
        doc="children, the retrained incumbent and the final trainings start from their parent's weights "
            "(NASH); false: from a fresh initialisation with the same schedule (the ablation; not in the paper)")


def nash_morphisms(config: NashConfig) -> list[Morphism]:
    """The configured operators, those that take a mode in ``config.morphism_mode``."""
    out = []
    for name in config.morphisms:
        takes_mode = "mode" in {f.name for f in dataclasses.fields(cast(Any, MORPHISMS[name]))}
        out.append(create_morphism(name, mode=config.morphism_mode) if takes_mode else create_morphism(name))
    return out


def draw_architecture(parent: Architecture, morphisms: list[Morphism], rng: np.random.Generator, *,
                      n_morphisms: Callable[[], int], seen: set[str], max_parameters: int | None,
                      max_redraws: int, duplicate: str) -> tuple[Architecture | None, str]:
    """A random chain of ``n_morphisms()`` morphisms from ``parent`` whose architecture is not in ``seen`` and
    has at most ``max_parameters``; after ``max_redraws`` rejected draws ``(None, why)``."""
    rejected: Counter[str] = Counter()
    for _attempt in range(max_redraws):
        length = n_morphisms()
        try:
            arch = random_chain(parent, morphisms, length, rng).child
        except MorphismError as exc:
            rejected[f"no morphism applies ({exc})"] += 1
            continue
        if arch.id in seen:
            rejected[duplicate] += 1
        elif max_parameters is not None and arch.num_parameters() > max_parameters:
            rejected[f"more than max_parameters={max_parameters} parameters"] += 1
        else:
            return arch, ""
    return None, ", ".join(f"{count} x {reason}" for reason, count in rejected.most_common())


def draw_children(parent: Architecture, n: int, config: NashConfig, morphisms: list[Morphism],
                  rng: np.random.Generator, seen: set[str] | None = None,
                  duplicate: str = "a duplicate of an architecture of this step",
                  ) -> tuple[list[Architecture], str | None]:
    """Up to ``n`` distinct children of ``parent`` (``config.n_morphisms`` random morphisms each) within
    ``config.max_parameters`` and not in ``seen``, and why fewer if so."""
    children: list[Architecture] = []
    seen = {parent.id} | set(seen or ())
    for _ in range(n):
        child, why = draw_architecture(parent, morphisms, rng, n_morphisms=lambda: config.n_morphisms, seen=seen,
                                       max_parameters=config.max_parameters, max_redraws=config.max_redraws,
                                       duplicate=duplicate)
        if child is None:
            return children, (f"gave up after max_redraws={config.max_redraws} rejected draws for one "
                              f"child of {parent.id} ({why})")
        seen.add(child.id)
        children.append(child)
    return children, None


class HillClimbing(CandidateLedger):
    """NASH hill climbing (Elsken et al. 2017, Algorithm 1) as a pure ask/tell strategy.

    Parameters
    ----------
    seed_architecture
        Where the search starts (e.g. :func:`nni_nas_ext.search_spaces.nash_seed`); any lineage it carries
        is dropped.
    config
        A :class:`NashConfig`, a mapping of its keys (NNI ``classArgs``; validated by
        :func:`~nni_nas_ext.core.config.parse_config`), or ``None`` for the defaults.

    The sequence of candidates:

    1. step 0: the seed (role ``seed``, ``epochs_seed``, no parent);
    2. steps 1..n_steps: the incumbent retrained (role ``incumbent``, same architecture, no lineage) and
       ``n_neighbours - 1`` children (role ``child``, lineage of ``n_morphisms`` steps from the
       incumbent's architecture), all with ``parent`` = the incumbent candidate and ``epochs_neighbour``;
       a step is proposed once every candidate of the previous one was told;
    3. final: the winner (role ``final``, parent = the incumbent) and the seed (role ``seed_final``,
       parent = the seed candidate), both ``epochs_final`` on ``"train+val"`` with ``evaluate_test``.

    With ``config.inherit_weights`` false the same sequence is proposed with ``parent=None`` everywhere
    (each candidate trained from scratch).

    The incumbent is the successful candidate of a step with the highest ``result["default"]`` (validation
    accuracy), ties going to the one proposed first. All randomness comes from one generator seeded by
    ``config.seed`` and drawn only when a step is proposed, so a strategy restored from
    :meth:`state_dict` proposes exactly what the original would have.
    """

    log_name: ClassVar[str] = "NASH"
    state_format: ClassVar[str] = STATE_FORMAT
    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = NashConfig
    phases: ClassVar[tuple[str, ...]] = (PHASE_SEED, _CLIMB, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "step"
    logger: ClassVar[logging.Logger] = logger
    config: NashConfig

    def __init__(self, seed_architecture: Architecture,
                 config: Union[NashConfig, Mapping[str, Any], None] = None) -> None:
        super().__init__(seed_architecture, config)
        config = self.config
        self._require_seed_within(config.max_parameters)
        self._morphisms = nash_morphisms(config)
        self._step = 0
        self._rounds: list[dict[str, Any]] = []  # one per proposed round: step, phase, ids, incumbents, note
        self._incumbent: str | None = None
        self._stopped_early: str | None = None
        self._open_round(PHASE_SEED, [self._propose_seed(config.epochs_seed).id])

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON: config, seed, candidates, results, rounds, incumbent, generator state."""
        return {
            **self._state_head(),
            **self._state_ledger(),
            "step": self._step,
            "rounds": json_copy(self._rounds),
            "incumbent": self._incumbent,
            **self._state_tail(),
            "stopped_early": self._stopped_early,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (after a JSON round trip, too).

        The state must come from a strategy with the same configuration and seed architecture (build one
        with :meth:`from_state_dict` otherwise). Candidates asked for but not told stay pending: they are
        not handed out again (see :meth:`reissue_pending` for trials lost in a restart).

        Raises
        ------
        ValueError
            Naming the mismatch or the malformed entry; the strategy is unchanged then.
        """
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        rounds = [dict(r) for r in state["rounds"]]
        new["_rounds"] = rounds
        return {c for r in rounds for c in r["candidates"]}

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        new.update({"_step": int(state["step"]), "_incumbent": state["incumbent"],
                    "_stopped_early": state["stopped_early"]})

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HillClimbing:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: HillClimbing = cls._from_state(state)
        return strategy

    def summary(self) -> dict[str, Any]:
        """Status, seed and winner figures, the winner's lineage of morphisms, per-step history, failures.

        All plain JSON. ``val_acc`` is a result's ``"default"``; ``test_acc`` comes from the final
        trainings (``None`` until they report). The winner is the current incumbent while running.
        """
        progress = {"stopped_early": self._stopped_early, "step": self._step, "n_steps": self.config.n_steps}
        return self._summary("nash", progress, {})

    # ---- extras ---------------------------------------------------------------------------------

    @property
    def incumbent(self) -> Candidate | None:
        """The current best candidate (``None`` before the seed reported)."""
        return None if self._incumbent is None else self._candidates[self._incumbent]

    # ---- the loop -------------------------------------------------------------------------------

    def _open_round(self, phase: str, ids: list[str], note: str | None = None) -> None:
        self._phase = phase
        self._rounds.append({"step": self._step, "phase": phase, "candidates": ids,
                             "incumbent_before": self._incumbent, "incumbent_after": None, "note": note})

    def _generation(self) -> int:
        return self._step

    def _current_round(self) -> list[str]:
        return self._rounds[-1]["candidates"]

    def _close_round(self) -> None:
        current = self._rounds[-1]
        if self._phase == PHASE_SEED:
            if self._fail_seed("climb"):
                return
            self._incumbent = self._seed_id
        elif self._phase == _CLIMB:
            best = self._best(current["candidates"])
            if best is None:
                note = f"step {self._step}: every candidate failed; the incumbent {self._incumbent} stays"
                self._notes.append(note)
                current["note"] = (current["note"] + "; " if current["note"] else "") + note
                logger.warning("NASH: %s", note)
            else:
                self._incumbent = best
        else:  # the final round
            current["incumbent_after"] = self._incumbent
            self._phase = PHASE_DONE
            return
        current["incumbent_after"] = self._incumbent
        logger.info("NASH: step %d done, incumbent %s", self._step, self._incumbent)
        if self._step >= self.config.n_steps:
            self._start_final()
        else:
            self._start_step()

    def _best(self, ids: list[str]) -> str | None:
        """The successful candidate with the highest validation accuracy; ties: the first proposed."""
        best, best_acc = None, -math.inf
        for cid in ids:
            if cid in self._results:
                acc = accuracy_of(self._results[cid])
                if acc is not None and acc > best_acc:
                    best, best_acc = cid, acc
        return best

    def _start_step(self) -> None:
        assert self._incumbent is not None
        incumbent = self._candidates[self._incumbent]
        children, note = draw_children(incumbent.architecture, self.config.n_neighbours - 1, self.config,
                                       self._morphisms, self._rng)
        if not children:
            self._stopped_early = f"climbing stopped before step {self._step + 1}: {note}"
            self._notes.append(self._stopped_early)
            logger.warning("NASH: %s", self._stopped_early)
            self._start_final()
            return
        self._step += 1
        if note is not None:
            note = f"step {self._step}: only {len(children)} of {self.config.n_neighbours - 1} children: {note}"
            self._notes.append(note)
            logger.warning("NASH: %s", note)
        epochs = self.config.epochs_neighbour
        parent = incumbent.id if self.config.inherit_weights else None
        ids = [self._propose(incumbent.architecture.with_lineage(None), parent=parent, epochs=epochs,
                             role="incumbent").id]
        ids += [self._propose(child, parent=parent, epochs=epochs, role="child").id for child in children]
        self._open_round(_CLIMB, ids, note)

    def _start_final(self) -> None:
        assert self._incumbent is not None
        self._step += 1
        if self.config.inherit_weights:
            ids = self._propose_finals(self._incumbent)
        else:  # the same two trainings, from scratch
            winner, seed = self._candidates[self._incumbent], self._candidates[self._seed_id]
            common: dict[str, Any] = {"parent": None, "epochs": self.config.epochs_final, "train_on": "train+val",
                      "evaluate_test": True}
            ids = [self._propose(winner.architecture.with_lineage(None), role="final", **common).id,
                   self._propose(seed.architecture, role="seed_final", **common).id]
        self._open_round(PHASE_FINAL, ids)

    def _origin(self, cid: str) -> str | None:
        """The candidate ``cid`` was derived from: its ``parent``, or without inheritance the incumbent of its round.

        So that the lineage (:meth:`_ancestry`) is the same with and without weight inheritance.
        """
        c = self._candidates[cid]
        if c.parent is not None or self.config.inherit_weights or c.role == "seed":
            return c.parent
        for r in self._rounds:
            if cid in r["candidates"]:
                return r["incumbent_before"]  # a climbing step's incumbent, or the winner of the final round
        return None

    # ---- reporting ------------------------------------------------------------------------------

    def _history(self) -> list[dict[str, Any]]:
        return [self._round_summary(r) for r in self._rounds]

    def _round_summary(self, r: Mapping[str, Any]) -> dict[str, Any]:
        entries = []
        for cid in r["candidates"]:
            c = self._candidates[cid]
            result = self._results.get(cid)
            lineage = c.architecture.lineage
            entries.append({
                "candidate": cid, "role": c.role, "arch_id": c.architecture.id,
                "params": c.architecture.num_parameters(),
                "morphisms": [] if lineage is None else [s.describe() for s in lineage.steps],
                "val_acc": None if result is None else accuracy_of(result),
                "test_acc": None if result is None else accuracy_of(result, "test_acc"),
                "failed": self._failures.get(cid),
            })
        return {"step": r["step"], "phase": r["phase"], "incumbent_before": r["incumbent_before"],
                "incumbent_after": r["incumbent_after"], "note": r["note"], "candidates": entries}

