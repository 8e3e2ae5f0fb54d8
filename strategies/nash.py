"""NASH: hill climbing with network morphisms, as a pure ask/tell strategy.

Elsken, Metzen, Hutter, *Simple and Efficient Architecture Search for Convolutional Neural Networks*,
arXiv 1711.04528 (ICLR 2018 workshop), Algorithm 1 (see also ``ALGORITHMS.md``)::

    best <- train(seed net)                                   # epoch_seed epochs
    repeat n_steps times:
        children <- n_neigh - 1 nets, each = best + n_NM random morphisms (chained)
        train each child AND best for epoch_neigh epochs      # one cosine-annealed cycle (SGDR)
        best <- argmax validation accuracy                   # held-out split of the training set
    final: train best on train+val, report the test error once

:class:`HillClimbing` runs that loop over :class:`~nni_nas_ext.strategies.candidate.Candidate` values and
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
* The paper trains a step's networks one after another on one GPU; here they are proposed together and
  may train in parallel. Training (SGDR, lr 0.05 -> 0) and data splits belong to the trial code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import numpy as np

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.errors import MorphismError
from nni_nas_ext.core.morphisms import MORPHISMS, Morphism, create_morphism, random_chain

from .candidate import Candidate, candidate_id
from .config import Config, option, parse_config

__all__ = ["HillClimbing", "NashConfig"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "nash-hill-climbing"
STATE_VERSION = 1

# Phases of the search.
_SEED, _CLIMB, _FINAL, _DONE, _FAILED = "seed", "climb", "final", "done", "failed"


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
        "exact", choices=("exact", "noise"),
        doc="'exact' function preservation, or 'noise': symmetry-breaking noise on new units (widen, branch)")
    max_parameters: Optional[int] = option(
        None, minimum=1,
        doc="children with more parameters are redrawn; null: no limit (not in the paper)")
    max_redraws: int = option(
        50, minimum=1, maximum=100_000,
        doc="rejected draws (too large, duplicate, no morphism applies) tolerated per child before giving up")
    seed: int = option(
        0, minimum=0, maximum=2**63 - 1,
        doc="seed of the strategy's random generator (morphism choices)")


def _morphisms(config: NashConfig) -> list[Morphism]:
    out = []
    for name in config.morphisms:
        takes_mode = "mode" in {f.name for f in dataclasses.fields(MORPHISMS[name])}
        out.append(create_morphism(name, mode=config.morphism_mode) if takes_mode else create_morphism(name))
    return out


def _json_copy(value: Any) -> Any:
    """A plain-JSON deep copy: non-finite floats become None, unknown objects their ``str``."""
    if isinstance(value, Mapping):
        return {str(k): _json_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_copy(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return _json_copy(value.item())
    return str(value)


def _accuracy(result: Mapping[str, Any], key: str = "default") -> float | None:
    value = result.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class HillClimbing:
    """NASH hill climbing (Elsken et al. 2017, Algorithm 1) as a pure ask/tell strategy.

    Parameters
    ----------
    seed_architecture
        Where the search starts (e.g. :func:`nni_nas_ext.search_spaces.nash_seed`); any lineage it carries
        is dropped.
    config
        A :class:`NashConfig`, a mapping of its keys (NNI ``classArgs``; validated by
        :func:`~nni_nas_ext.strategies.config.parse_config`), or ``None`` for the defaults.

    The sequence of candidates:

    1. step 0: the seed (role ``seed``, ``epochs_seed``, no parent);
    2. steps 1..n_steps: the incumbent retrained (role ``incumbent``, same architecture, no lineage) and
       ``n_neighbours - 1`` children (role ``child``, lineage of ``n_morphisms`` steps from the
       incumbent's architecture), all with ``parent`` = the incumbent candidate and ``epochs_neighbour``;
       a step is proposed once every candidate of the previous one was told;
    3. final: the winner (role ``final``, parent = the incumbent) and the seed (role ``seed_final``,
       parent = the seed candidate), both ``epochs_final`` on ``"train+val"`` with ``evaluate_test``.

    The incumbent is the successful candidate of a step with the highest ``result["default"]`` (validation
    accuracy), ties going to the one proposed first. All randomness comes from one generator seeded by
    ``config.seed`` and drawn only when a step is proposed, so a strategy restored from
    :meth:`state_dict` proposes exactly what the original would have.
    """

    def __init__(self, seed_architecture: Architecture,
                 config: Union[NashConfig, Mapping[str, Any], None] = None) -> None:
        if not isinstance(seed_architecture, Architecture):
            raise TypeError(f"seed_architecture must be an Architecture, but got {type(seed_architecture).__name__}")
        if config is None or isinstance(config, Mapping):
            config = parse_config(NashConfig, config)
        elif not isinstance(config, NashConfig):
            raise TypeError(f"config must be a NashConfig or a mapping, but got {type(config).__name__}")
        self.config: NashConfig = config
        self.seed_architecture = seed_architecture.with_lineage(None)
        params = self.seed_architecture.num_parameters()
        if config.max_parameters is not None and params > config.max_parameters:
            raise ValueError(f"the seed architecture has {params} parameters, more than max_parameters="
                             f"{config.max_parameters}; raise max_parameters or start from a smaller seed")
        self._morphisms = _morphisms(config)
        self._rng = np.random.default_rng(config.seed)
        self._candidates: dict[str, Candidate] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, str] = {}
        self._unasked: list[str] = []
        self._serial = 0
        self._phase = _SEED
        self._step = 0
        self._rounds: list[dict[str, Any]] = []  # one per proposed round: step, phase, ids, incumbents, note
        self._incumbent: str | None = None
        self._notes: list[str] = []
        self._failure_reason: str | None = None
        self._stopped_early: str | None = None
        seed = self._propose(self.seed_architecture, parent=None, epochs=config.epochs_seed, role="seed")
        self._seed_id = seed.id
        self._open_round(_SEED, [seed.id])

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self) -> list[Candidate]:
        """Candidates not returned before, in proposal order; ``[]`` while a round is being trained."""
        out = [self._candidates[cid] for cid in self._unasked]
        self._unasked = []
        return out

    def tell(self, candidate_id: str, result: Mapping[str, Any] | None, *, failure: str | None = None) -> bool:
        """Record a candidate's final result (``result["default"]`` = validation accuracy) or its failure.

        A result whose ``"failed"`` key is set (the trial's failure report), or without a finite
        ``"default"``, counts as a failure. Returns ``False`` (with a warning, never raising) for an unknown
        candidate, a second report for the same one, or a result naming another candidate.
        """
        if not isinstance(candidate_id, str) or candidate_id not in self._candidates:
            logger.warning("NASH: ignoring a result for unknown candidate %r", candidate_id)
            return False
        if candidate_id in self._results or candidate_id in self._failures:
            logger.warning("NASH: ignoring a second result for candidate %s", candidate_id)
            return False
        if isinstance(result, Mapping) and result.get("candidate") not in (None, candidate_id):
            logger.warning("NASH: ignoring a result for %s that names candidate %r", candidate_id,
                           result.get("candidate"))
            return False
        reason = self._failure_of(result, failure)
        if reason is None:
            self._results[candidate_id] = _json_copy(result)
        else:
            logger.warning("NASH: candidate %s failed: %s", candidate_id, reason)
            self._failures[candidate_id] = reason
        if candidate_id in self._unasked:  # told before it was asked for: never hand it out
            self._unasked.remove(candidate_id)
        if all(self._told(cid) for cid in self._rounds[-1]["candidates"]):
            self._close_round()
        return True

    @property
    def finished(self) -> bool:
        return self._phase in (_DONE, _FAILED)

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON: config, seed, candidates, results, rounds, incumbent, generator state."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "seed_architecture": self.seed_architecture.to_dict(),
            "rng": _json_copy(self._rng.bit_generator.state),
            "candidates": [c.to_dict() for c in self._candidates.values()],
            "results": _json_copy(self._results),
            "failures": dict(self._failures),
            "unasked": list(self._unasked),
            "serial": self._serial,
            "phase": self._phase,
            "step": self._step,
            "rounds": _json_copy(self._rounds),
            "incumbent": self._incumbent,
            "seed_candidate": self._seed_id,
            "notes": list(self._notes),
            "failure_reason": self._failure_reason,
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
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a NASH state: expected 'format': {STATE_FORMAT!r}, but got "
                             f"{state.get('format') if isinstance(state, Mapping) else type(state).__name__!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"NASH state version {state.get('version')!r} is not the supported {STATE_VERSION}")
        config = parse_config(NashConfig, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the state was saved with another configuration (keys {diff} differ); "
                             "use HillClimbing.from_state_dict(state)")
        seed = Architecture.from_dict(state.get("seed_architecture"))
        if seed.id != self.seed_architecture.id:
            raise ValueError(f"the state was saved for seed architecture {seed.id}, not {self.seed_architecture.id}")
        try:
            candidates = [Candidate.from_dict(c) for c in state["candidates"]]
            by_id = {c.id: c for c in candidates}
            results = {str(k): dict(v) for k, v in state["results"].items()}
            failures = {str(k): str(v) for k, v in state["failures"].items()}
            unasked = [str(c) for c in state["unasked"]]
            rounds = [dict(r) for r in state["rounds"]]
            ids = set(results) | set(failures) | set(unasked) | {c for r in rounds for c in r["candidates"]}
            unknown = sorted(ids - set(by_id))
            if unknown:
                raise ValueError(f"candidates {unknown[:3]} are referred to but not listed")
            if state["phase"] not in (_SEED, _CLIMB, _FINAL, _DONE, _FAILED):
                raise ValueError(f"unknown phase {state['phase']!r}")
            rng = np.random.default_rng()
            rng.bit_generator.state = state["rng"]
            new = {
                "_candidates": by_id, "_results": results, "_failures": failures, "_unasked": unasked,
                "_rounds": rounds, "_rng": rng, "_serial": int(state["serial"]), "_phase": state["phase"],
                "_step": int(state["step"]), "_incumbent": state["incumbent"], "_seed_id": state["seed_candidate"],
                "_notes": [str(n) for n in state["notes"]], "_failure_reason": state["failure_reason"],
                "_stopped_early": state["stopped_early"],
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed NASH state: {type(exc).__name__}: {exc}") from None
        self.__dict__.update(new)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HillClimbing:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        if not isinstance(state, Mapping):
            raise ValueError(f"a NASH state is a JSON object, but got {type(state).__name__}")
        strategy = cls(Architecture.from_dict(state.get("seed_architecture")),
                       parse_config(NashConfig, state.get("config")))
        strategy.load_state_dict(state)
        return strategy

    def summary(self) -> dict[str, Any]:
        """Status, seed and winner figures, the winner's lineage of morphisms, per-step history, failures.

        All plain JSON. ``val_acc`` is a result's ``"default"``; ``test_acc`` comes from the final
        trainings (``None`` until they report). The winner is the current incumbent while running.
        """
        status = {_FAILED: "failed", _DONE: "finished"}.get(self._phase, "running")
        finals = {self._candidates[cid].role: cid for cid in self._candidates
                  if self._candidates[cid].role in ("final", "seed_final")}
        seed = self._figures(self._seed_id, finals.get("seed_final"))
        winner = None
        if self._incumbent is not None:
            winner = self._figures(self._incumbent, finals.get("final"))
            generations = self._ancestry(self._incumbent)
            winner["lineage"] = [d for g in generations for d in g.pop("describe")]
            winner["generations"] = generations
        return {
            "strategy": "nash",
            "status": status,
            "reason": self._failure_reason,
            "stopped_early": self._stopped_early,
            "step": self._step,
            "n_steps": self.config.n_steps,
            "seed": seed,
            "winner": winner,
            "history": [self._round_summary(r) for r in self._rounds],
            "failures": [{"candidate": cid, "role": self._candidates[cid].role, "step": self._candidates[cid].step,
                          "reason": reason} for cid, reason in self._failures.items()],
            "notes": list(self._notes),
            "n_candidates": len(self._candidates),
            # training cost so far: epochs of every candidate told, failures included
            "epochs_total": sum(c.epochs for cid, c in self._candidates.items() if self._told(cid)),
            "config": self.config.to_dict(),
        }

    # ---- extras ---------------------------------------------------------------------------------

    @property
    def incumbent(self) -> Candidate | None:
        """The current best candidate (``None`` before the seed reported)."""
        return None if self._incumbent is None else self._candidates[self._incumbent]

    @property
    def candidates(self) -> list[Candidate]:
        """Every candidate proposed so far, in proposal order."""
        return list(self._candidates.values())

    @property
    def pending(self) -> list[str]:
        """Ids of candidates handed out by :meth:`ask` and not told yet."""
        return [cid for cid in self._rounds[-1]["candidates"] if not self._told(cid) and cid not in self._unasked]

    def reissue_pending(self) -> list[str]:
        """Hand the pending candidates out again at the next :meth:`ask` (their trials were lost)."""
        ids = self.pending
        self._unasked.extend(ids)
        return ids

    # ---- the loop -------------------------------------------------------------------------------

    def _told(self, cid: str) -> bool:
        return cid in self._results or cid in self._failures

    @staticmethod
    def _failure_of(result: Any, failure: str | None) -> str | None:
        if failure is not None:
            return str(failure) or "failed (no reason given)"
        if result is None:
            return "no result was reported"
        if not isinstance(result, Mapping):
            return f"the result is not a mapping but a {type(result).__name__}"
        if result.get("failed"):
            return str(result["failed"])
        if _accuracy(result) is None:
            return f"the result has no finite number as 'default' (got {result.get('default')!r})"
        return None

    def _propose(self, arch: Architecture, *, parent: str | None, epochs: int, role: str,
                 train_on: str = "train", evaluate_test: bool = False) -> Candidate:
        candidate = Candidate(candidate_id(arch, self._serial), arch, parent, epochs, train_on, evaluate_test,
                              role, self._step)
        self._serial += 1
        self._candidates[candidate.id] = candidate
        self._unasked.append(candidate.id)
        return candidate

    def _open_round(self, phase: str, ids: list[str], note: str | None = None) -> None:
        self._phase = phase
        self._rounds.append({"step": self._step, "phase": phase, "candidates": ids,
                             "incumbent_before": self._incumbent, "incumbent_after": None, "note": note})

    def _close_round(self) -> None:
        current = self._rounds[-1]
        if self._phase == _SEED:
            if self._seed_id in self._failures:
                self._failure_reason = (f"the seed candidate {self._seed_id} failed "
                                        f"({self._failures[self._seed_id]}); there is nothing to climb from")
                self._phase = _FAILED
                logger.error("NASH: %s", self._failure_reason)
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
            self._phase = _DONE
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
                acc = _accuracy(self._results[cid])
                if acc is not None and acc > best_acc:
                    best, best_acc = cid, acc
        return best

    def _start_step(self) -> None:
        assert self._incumbent is not None
        incumbent = self._candidates[self._incumbent]
        children, note = self._draw_children(incumbent.architecture, self.config.n_neighbours - 1)
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
        ids = [self._propose(incumbent.architecture.with_lineage(None), parent=incumbent.id, epochs=epochs,
                             role="incumbent").id]
        ids += [self._propose(child, parent=incumbent.id, epochs=epochs, role="child").id for child in children]
        self._open_round(_CLIMB, ids, note)

    def _draw_children(self, parent: Architecture, n: int) -> tuple[list[Architecture], str | None]:
        """Up to ``n`` distinct children within ``max_parameters``, and why fewer if so."""
        limit, children, seen = self.config.max_parameters, [], {parent.id}
        for _ in range(n):
            rejected: Counter[str] = Counter()
            for _attempt in range(self.config.max_redraws):
                try:
                    child = random_chain(parent, self._morphisms, self.config.n_morphisms, self._rng).child
                except MorphismError as exc:
                    rejected[f"no morphism applies ({exc})"] += 1
                    continue
                if child.id in seen:
                    rejected["a duplicate of an architecture of this step"] += 1
                elif limit is not None and child.num_parameters() > limit:
                    rejected[f"more than max_parameters={limit} parameters"] += 1
                else:
                    seen.add(child.id)
                    children.append(child)
                    break
            else:
                why = ", ".join(f"{count} x {reason}" for reason, count in rejected.most_common())
                return children, (f"gave up after max_redraws={self.config.max_redraws} rejected draws for one "
                                  f"child of {parent.id} ({why})")
        return children, None

    def _start_final(self) -> None:
        assert self._incumbent is not None
        self._step += 1
        winner, seed = self._candidates[self._incumbent], self._candidates[self._seed_id]
        common = {"epochs": self.config.epochs_final, "train_on": "train+val", "evaluate_test": True}
        ids = [self._propose(winner.architecture.with_lineage(None), parent=winner.id, role="final", **common).id,
               self._propose(seed.architecture, parent=seed.id, role="seed_final", **common).id]
        self._open_round(_FINAL, ids)

    # ---- reporting ------------------------------------------------------------------------------

    def _figures(self, cid: str, final_id: str | None) -> dict[str, Any]:
        c = self._candidates[cid]
        result = self._results.get(cid)
        final = self._results.get(final_id) if final_id is not None else None
        return {
            "candidate": cid,
            "arch_id": c.architecture.id,
            "role": c.role,
            "step": c.step,
            "params": c.architecture.num_parameters(),
            "macs": c.architecture.num_macs(),
            "val_acc": None if result is None else _accuracy(result),
            "final_candidate": final_id,
            "test_acc": None if final is None else _accuracy(final, "test_acc"),
            "final_failed": self._failures.get(final_id) if final_id is not None else None,
        }

    def _ancestry(self, cid: str) -> list[dict[str, Any]]:
        """The morphisms from the seed to ``cid``: one entry per generation that applied some."""
        generations = []
        current: str | None = cid
        while current is not None:
            c = self._candidates[current]
            if c.architecture.lineage is not None:
                steps = c.architecture.lineage.steps
                generations.append({"step": c.step, "candidate": c.id, "parent_arch": c.architecture.lineage.parent,
                                    "arch_id": c.architecture.id, "steps": [s.to_dict() for s in steps],
                                    "describe": [s.describe() for s in steps]})
            current = c.parent
        return generations[::-1]

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
                "val_acc": None if result is None else _accuracy(result),
                "test_acc": None if result is None else _accuracy(result, "test_acc"),
                "failed": self._failures.get(cid),
            })
        return {"step": r["step"], "phase": r["phase"], "incumbent_before": r["incumbent_before"],
                "incumbent_after": r["incumbent_after"], "note": r["note"], "candidates": entries}

