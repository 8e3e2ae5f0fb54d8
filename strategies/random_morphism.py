"""Random architectures of the morphism space, each trained from scratch: NASH's own baseline.

Elsken, Metzen, Hutter, *Simple and Efficient Architecture Search for Convolutional Neural Networks*,
arXiv 1711.04528, Sec. 5.1 compare their hill climbing with random networks trained with the same schedule
(SGDR), which "already reach 6-7%" error on CIFAR-10 (``ALGORITHMS.md``). This strategy is that baseline
over *our* space, so that the comparison of issue 6 holds everything else fixed::

    samples <- [seed]
    while fewer than n_samples:
        k    <- uniform integer in [1, max_morphisms]
        arch <- seed + k random morphisms (chained; operators and sites drawn as in NASH)
        if arch is new (architecture id) and within max_parameters: samples += [arch]
    train every sample from a fresh initialisation for `epochs` epochs      # one cosine cycle
    winner <- argmax validation accuracy (ties: the first proposed)
    final: train the winner (from its weights) and the seed on train+val, report the test accuracy once

:class:`RandomMorphismSearch` runs that loop over :class:`~nni_nas_ext.core.jobs.Candidate`
values and trains nothing itself (the contract of :mod:`.base`). Samples do not depend on results, so they
are handed out as trials free up: at most ``max_in_flight`` are out (asked and not told) at any time, and
NNI's own budget (``maxTrialNumber``, ``maxExperimentDuration``) may end the search before ``n_samples``;
the best sample so far is then the result, without the final phase.

Choices the paper leaves open (marked **[dev]**):

* **[dev]** The seed is the first sample (zero morphisms), trained like every other sample; the final phase
  trains the winner *and* the seed on train+val, as :class:`~.nash.HillClimbing` does.
* **[dev]** The number of morphisms of a sample is uniform in ``[1, max_morphisms]``; with NASH's
  ``n_steps x n_morphisms`` as ``max_morphisms`` the samples reach as far from the seed as a NASH winner.
  Each chain is :func:`nni_nas_ext.core.random_chain`, so a sample carries its lineage from the seed (for
  the record: with ``parent=None`` the trial builds it with a fresh initialisation).
* **[dev]** Duplicates (an architecture proposed before) and samples above ``max_parameters`` are redrawn;
  after ``max_redraws`` rejected draws in a row sampling stops early (the reason is in the summary).
* **[dev]** Failed samples never win; a failed seed only loses its final training. If every sample failed
  the search ends failed.
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
from nni_nas_ext.core.morphisms import MORPHISMS

from ._bookkeeping import PHASE_DONE, PHASE_FAILED, PHASE_FINAL, CandidateLedger, accuracy_of
from .base import Budget
from .nash import draw_architecture, nash_morphisms

__all__ = ["RandomMorphismConfig", "RandomMorphismSearch"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "random-morphism-search"
STATE_VERSION = 1

# Phases of the search (final, done and failed are the ledger's).
_SAMPLE = "sample"


@dataclass(frozen=True)
class RandomMorphismConfig(Config):
    """Configuration of :class:`RandomMorphismSearch` (NNI ``classArgs``)."""

    config_name: ClassVar[str] = "random_morphism"

    n_samples: int = option(
        10, minimum=1, maximum=1_000_000,
        doc="architectures trained, the seed included (NNI's maxTrialNumber or maxExperimentDuration may end "
            "the search earlier)")
    max_morphisms: int = option(
        9, minimum=1, maximum=1_000,
        doc="each sample after the seed is the seed plus k chained random morphisms, k uniform in "
            "[1, max_morphisms] (NASH's n_steps x n_morphisms reaches as far)")
    epochs: int = option(
        2, minimum=0, maximum=100_000,
        doc="epochs of the one cosine cycle that trains every sample from scratch (compare NASH's "
            "epochs_neighbour; the paper's random nets: SGDR)")
    epochs_final: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the final training on train+val of the winner and of the seed (as NASH's)")
    morphisms: tuple[str, ...] = option(
        ("deepen", "widen", "add_skip", "concat_skip"), choices=tuple(MORPHISMS), non_empty=True, unique=True,
        doc="operators drawn uniformly among those that apply, as NASH's (paper: deepen, widen, skip add, "
            "skip concat)")
    morphism_mode: str = option(
        "exact", choices=("exact", "replicate", "noise"),
        doc="the morphisms' mode as NASH's; it changes the architecture only through the draws, since every "
            "sample starts from a fresh initialisation")
    max_parameters: Optional[int] = option(
        None, minimum=1,
        doc="samples with more parameters are redrawn; null: no limit")
    max_redraws: int = option(
        50, minimum=1, maximum=100_000,
        doc="rejected draws in a row (duplicate, too large, no morphism applies) before sampling stops")
    max_in_flight: int = option(
        4, minimum=1, maximum=10_000,
        doc="samples handed out and not yet reported at any time; at least NNI's trialConcurrency keeps "
            "every trial slot busy")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the strategy's random generator (morphism counts, operators, sites)")


class RandomMorphismSearch(CandidateLedger):
    """Random architectures of the morphism space trained from scratch (NASH's baseline), as ask/tell.

    Parameters
    ----------
    seed_architecture
        The seed network every sample grows from (its lineage, if any, is dropped).
    config
        A :class:`RandomMorphismConfig`, a mapping of its keys (NNI ``classArgs``), or ``None``.

    The candidates: the seed (role ``seed``, step 0) and the samples (role ``child``, steps 1, 2, ...), all
    with ``parent=None`` and ``epochs``; then the winner (role ``final``, parent = the winner) and the seed
    (role ``seed_final``, parent = the seed), ``epochs_final`` on ``"train+val"`` with ``evaluate_test``.
    Random draws happen only when a sample is proposed and never depend on results, so the same seed gives
    the same samples in the same order, and a strategy restored from :meth:`state_dict` goes on exactly.
    """

    log_name: ClassVar[str] = "RandomMorphism"
    state_format: ClassVar[str] = STATE_FORMAT
    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = RandomMorphismConfig
    phases: ClassVar[tuple[str, ...]] = (_SAMPLE, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "sample"
    logger: ClassVar[logging.Logger] = logger
    config: RandomMorphismConfig

    def __init__(self, seed_architecture: Architecture,
                 config: Union[RandomMorphismConfig, Mapping[str, Any], None] = None) -> None:
        super().__init__(seed_architecture, config)
        config = self.config
        self._require_seed_within(config.max_parameters)
        self._morphisms = nash_morphisms(config)  # type: ignore[arg-type]
        self._phase = _SAMPLE
        self._samples: list[str] = []
        self._finals: list[str] = []
        self._stopped_early: str | None = None
        self._samples.append(self._propose_seed(config.epochs).id)

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def ask(self, budget: Budget | None = None) -> list[Candidate]:
        """New samples up to ``max_in_flight`` out at once (and the final trainings when their turn comes); the
        budget is not used (a fixed number of samples)."""
        if self._phase == _SAMPLE:
            self._top_up()
            if all(self._told(cid) for cid in self._samples):
                self._close_round()  # sampling stopped early with every sample told: on to the final phase
        return super().ask()

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON: config, seed, candidates, results, samples, finals, generator state."""
        return {
            **self._state_head(),
            **self._state_ledger(),
            "samples": list(self._samples),
            "finals": list(self._finals),
            **self._state_tail(),
            "stopped_early": self._stopped_early,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (after a JSON round trip, too).

        Raises
        ------
        ValueError
            Naming the mismatch (configuration, seed) or the malformed entry; the strategy is unchanged then.
        """
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        new["_samples"] = [str(c) for c in state["samples"]]
        new["_finals"] = [str(c) for c in state["finals"]]
        return set(new["_samples"]) | set(new["_finals"])

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        stopped = state["stopped_early"]
        new["_stopped_early"] = None if stopped is None else str(stopped)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RandomMorphismSearch:
        """A search with the state's configuration and seed architecture, continued from ``state``."""
        search: RandomMorphismSearch = cls._from_state(state)
        return search

    def summary(self) -> dict[str, Any]:
        """Status, seed and winner figures (with the winner's morphisms from the seed), every sample, failures."""
        told = sum(self._told(cid) for cid in self._samples)
        progress = {"stopped_early": self._stopped_early, "n_samples": self.config.n_samples,
                    "sampled": len(self._samples), "trained": told}
        return self._summary("random_morphism", progress, {})

    @property
    def incumbent(self) -> Candidate | None:
        """The best sample reported so far (``None`` before any succeeded)."""
        best = self._best()
        return None if best is None else self._candidates[best]

    # ---- sampling ---------------------------------------------------------------------------------

    def _generation(self) -> int:
        return len(self._samples)

    def _current_round(self) -> list[str]:
        return self._finals if self._phase in (PHASE_FINAL, PHASE_DONE) else self._samples

    def _best(self) -> str | None:
        """The successful sample with the highest validation accuracy; ties: the first proposed."""
        best, best_acc = None, -math.inf
        for cid in self._samples:
            acc = self._val_acc(cid)
            if acc is not None and acc > best_acc:
                best, best_acc = cid, acc
        return best

    def _sampling_done(self) -> bool:
        return len(self._samples) >= self.config.n_samples or self._stopped_early is not None

    def _top_up(self) -> None:
        out = sum(not self._told(cid) for cid in self._samples)
        while out < self.config.max_in_flight and not self._sampling_done():
            arch = self._draw()
            if arch is None:
                break
            self._samples.append(self._propose(arch, parent=None, epochs=self.config.epochs, role="child").id)
            out += 1

    def _draw(self) -> Architecture | None:
        """A new architecture within ``max_parameters``, or ``None`` (and the reason noted) after max_redraws."""
        seen = {self._candidates[cid].architecture.id for cid in self._samples}
        arch, why = draw_architecture(
            self.seed_architecture, self._morphisms, self._rng,
            n_morphisms=lambda: int(self._rng.integers(1, self.config.max_morphisms + 1)), seen=seen,
            max_parameters=self.config.max_parameters, max_redraws=self.config.max_redraws,
            duplicate="an architecture sampled before")
        if arch is not None:
            return arch
        self._stopped_early = (f"sampling stopped after {len(self._samples)} of {self.config.n_samples} samples: "
                               f"max_redraws={self.config.max_redraws} rejected draws in a row ({why})")
        self._notes.append(self._stopped_early)
        logger.warning("RandomMorphism: %s", self._stopped_early)
        return None

    def _close_round(self) -> None:
        if self._phase == PHASE_FINAL:
            self._phase = PHASE_DONE
            return
        if not self._sampling_done():
            return  # every sample out so far is told; the next ask() hands out more
        best = self._best()
        if best is None:
            self._failure_reason = f"every one of the {len(self._samples)} samples failed; there is no winner"
            self._phase = PHASE_FAILED
            logger.error("RandomMorphism: %s", self._failure_reason)
            return
        logger.info("RandomMorphism: %d samples trained, winner %s", len(self._samples), best)
        self._phase = PHASE_FINAL
        if self._seed_id in self._results:
            self._finals = self._propose_finals(best)
        else:  # a failed seed has no weights to train further: the winner only
            winner = self._candidates[best]
            self._finals = [self._propose(winner.architecture.with_lineage(None), parent=winner.id, role="final",
                                          epochs=self.config.epochs_final, train_on="train+val",
                                          evaluate_test=True).id]

    # ---- reporting ------------------------------------------------------------------------------

    def _extra_figures(self, c: Candidate) -> dict[str, Any]:
        lineage = c.architecture.lineage
        return {"n_morphisms": 0 if lineage is None else len(lineage.steps)}

    def _history(self) -> list[dict[str, Any]]:
        rounds = [{"phase": _SAMPLE, "candidates": [self._entry(cid) for cid in self._samples]}]
        if self._finals:
            rounds.append({"phase": PHASE_FINAL, "candidates": [self._entry(cid) for cid in self._finals]})
        return rounds

    def _entry(self, cid: str) -> dict[str, Any]:
        c = self._candidates[cid]
        result = self._results.get(cid)
        lineage = c.architecture.lineage
        return {
            "candidate": cid, "role": c.role, "sample": c.step, "arch_id": c.architecture.id,
            "params": c.architecture.num_parameters(),
            "morphisms": [] if lineage is None else [s.describe() for s in lineage.steps],
            "val_acc": None if result is None else accuracy_of(result),
            "test_acc": None if result is None else accuracy_of(result, "test_acc"),
            "failed": self._failures.get(cid),
        }
