"""N2N learning as a pure ask/tell strategy, and its random-action baseline.

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning: Network to Network Compression via Policy Gradient
Reinforcement Learning*, ICLR 2018 (arXiv 1709.06030); see ``ALGORITHMS.md``::

    teacher <- a trained network; acc_t <- its validation accuracy (measured once)
    repeat episodes times:
        students_per_episode times:
            student <- teacher with the layers stage 1 removes, then the widths stage 2 chooses
            train the student by knowledge distillation from the teacher for a few epochs
            R <- C (2 - C) * acc_student / acc_t,   C = 1 - params_student / params_teacher
        REINFORCE on the episode's rewards (moving-average baseline)
    final: the best student (by reward) trained longer, tested once

:class:`N2NSearch` runs that loop over :class:`~nni_nas_ext.core.jobs.Candidate` values and never trains anything
itself. A student is a candidate whose ``parent`` is the teacher's candidate and whose lineage holds compression
steps (``remove_layer``, ``shrink``): the trial replays them on the teacher's checkpoint (the kept units' weights
are exact slices of the teacher's) and, the steps being compressions, trains the student by distillation from
the teacher (``trial_code/trial.py``; ``distill_weight``, ``distill_temperature``). :class:`N2NRandom` is the
same loop with uniformly random actions and no learning: the baseline that shows what the policy is worth.

The teacher is either the seed network trained first (``epochs_teacher``; role ``seed``) or a given one
(``config.teacher``): then the NNI adapter puts its weights into the checkpoint store under
:func:`imported_teacher_id` before the search starts, and the first candidate measures it as it is (0 epochs,
parent that id).

Deviations from the paper and choices it leaves open (marked **[dev]**; the policy's are in :mod:`.policy`):

* **[dev]** A student whose training failed gets :data:`~.reward.INVALID_REWARD` (the paper's reward of an
  invalid student); invalid students cannot be sampled. A student equal to the teacher (nothing removed, every
  ratio 1) is not trained: its reward is 0 (``C = 0``). A student sampled before gets that training's result
  (cached by architecture), as EAS does.
* **[dev]** Accuracies are validation accuracies on the held-out split, clipped to [0, 1].
* **[dev]** Both stages decide every student and learn from its reward together (``removal_episodes = 0``, the
  default). The paper trains layer removal first and then shrinkage on its result (recalled): ``removal_episodes =
  k`` runs k removal-only episodes, then shrinks the best of their students (by reward) in the remaining episodes.
* **[dev]** Final phase: the student with the highest reward is trained ``epochs_final`` more epochs on train+val
  from its own weights (labels only: the trial distils a child from its parent only when the child's lineage
  compresses it, and here the parent is the student itself) and tested once (role ``final``); the teacher is
  tested once as it is (role ``seed_final``, 0 epochs), the reference of the compression's accuracy cost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union, cast

from nni_nas_ext.core.architecture import Architecture, Step
from nni_nas_ext.core.config import Config
from nni_nas_ext.core.jobs import Candidate, candidate_id

from .._bookkeeping import PHASE_DONE, PHASE_FAILED, PHASE_FINAL, PHASE_SEED, CandidateLedger, json_copy
from .config import N2NConfig
from .policy import N2NPolicy, RandomActions
from .reward import INVALID_REWARD, n2n_reward
from .students import ActionSource, draw_student
from .trajectory import Trajectory

__all__ = ["N2NRandom", "N2NSearch", "imported_teacher_id"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_EPISODE = "episode"


def imported_teacher_id(teacher: Architecture) -> str:
    """The checkpoint id under which a given teacher's weights are stored for the search (serial 0)."""
    return candidate_id(teacher.with_lineage(None), 0)


class _N2NLoop(CandidateLedger):
    """The episode loop shared by :class:`N2NSearch` and :class:`N2NRandom`; an action source decides."""

    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = N2NConfig
    phases: ClassVar[tuple[str, ...]] = (PHASE_SEED, _EPISODE, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "episode"
    logger: ClassVar[logging.Logger] = logger
    config: N2NConfig

    def __init__(self, seed_architecture: Architecture, config: Union[N2NConfig, Mapping[str, Any], None],
                 source: ActionSource) -> None:
        super().__init__(seed_architecture, config)
        self._source = source
        self._episode = 0
        self._round: list[str] = []
        self._episodes: list[dict[str, Any]] = []
        self._cache: dict[str, str] = {}  # architecture id -> the candidate whose result it gets
        self._best: str | None = None  # the student with the highest reward so far
        self._best_reward: float | None = None
        if self.config.teacher is not None:  # measured as it is, from the weights the adapter imported
            self._serial = 1  # serial 0 is the imported checkpoint's id
            seed = self._propose(self.seed_architecture, parent=imported_teacher_id(self.seed_architecture),
                                 epochs=0, role="seed")
            self._seed_id = seed.id
        else:
            seed = self._propose_seed(self.config.epochs_teacher)
        self._cache[seed.architecture.id] = seed.id
        self._round = [seed.id]

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON: config, candidates, results, episodes with trajectories, the policy."""
        return {**self._state_head(), "policy": self._source.state_dict(), **self._state_ledger(),
                "episode": self._episode, "round": list(self._round), "episodes": json_copy(self._episodes),
                "cache": dict(self._cache), "best": self._best, "best_reward": self._best_reward,
                **self._state_tail()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same kind, configuration and teacher); ``ValueError`` otherwise."""
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        best_reward = state["best_reward"]
        new.update({"_round": [str(c) for c in state["round"]], "_episodes": [dict(e) for e in state["episodes"]],
                    "_cache": {str(k): str(v) for k, v in state["cache"].items()}, "_episode": int(state["episode"]),
                    "_best": state["best"], "_best_reward": None if best_reward is None else float(best_reward)})
        return set(new["_round"]) | set(new["_cache"].values()) | ({state["best"]} if state["best"] else set())

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        self._source.load_state_dict(state["policy"])

    def summary(self) -> dict[str, Any]:
        """Status, teacher (``seed``) and best student (``winner``) figures, per-episode rewards, failures."""
        teacher = self._candidates[self._seed_id]
        progress = {"episode": self._episode, "episodes": self.config.episodes,
                    "teacher_val_acc": self._val_acc(self._seed_id),
                    "teacher_params": teacher.architecture.num_parameters(),
                    "mean_rewards": [e["mean_reward"] for e in self._episodes if e["rewards"] is not None]}
        counts = {"n_students": sum(len(e["students"]) for e in self._episodes),
                  "cache_hits": sum(1 for e in self._episodes for s in e["students"] if s["cached"])}
        out = self._summary(self.strategy_name, progress, counts)
        if out["winner"] is not None:
            out["winner"]["reward"] = self._best_reward
            out["winner"]["compression"] = teacher.architecture.num_parameters() / max(1, out["winner"]["params"])
        return out

    @property
    def incumbent(self) -> Candidate | None:
        """The student with the highest reward so far (``None`` before one was trained)."""
        return None if self._best is None else self._candidates[self._best]

    # ---- the loop -------------------------------------------------------------------------------

    def _generation(self) -> int:
        return self._episode

    def _current_round(self) -> list[str]:
        return self._round

    def _origin(self, cid: str) -> str | None:
        parent = self._candidates[cid].parent
        return parent if parent in self._candidates else None  # an imported teacher's checkpoint is no candidate

    def _close_round(self) -> None:
        if self._phase == PHASE_SEED:
            if self._fail_seed("compress"):
                return
            acc = self._val_acc(self._seed_id)
            if acc is None or acc <= 0.0:
                self._failure_reason = (f"the teacher {self._seed_id} has validation accuracy {acc!r}: the reward "
                                        "divides by it; train it longer (epochs_teacher) or give a trained teacher")
                self._phase = PHASE_FAILED
                logger.error("%s: %s", self.strategy_name, self._failure_reason)
                return
        elif self._phase == _EPISODE:
            self._finish_episode()
        else:
            self._phase = PHASE_DONE
            return
        while self._episode < self.config.episodes:
            if self._start_episode():
                return
            self._finish_episode()  # every student was known already: its reward is too
        self._start_final()

    def _start_episode(self) -> bool:
        """Sample the episode's students; propose the new ones. Whether any was proposed."""
        teacher = self._candidates[self._seed_id]
        stage, removals = self._stage()
        drawn = [draw_student(teacher.architecture, self._source, self._rng, stage=stage, removals=removals)
                 for _ in range(self.config.students_per_episode)]
        self._episode += 1
        students: list[dict[str, Any]] = []
        ids: list[str] = []
        for student in drawn:
            arch = student.architecture
            cached = arch.id in self._cache
            if not cached:
                cid = self._propose(arch, parent=teacher.id, epochs=self.config.epochs_student, role="child").id
                self._cache[arch.id] = cid
                ids.append(cid)
            students.append({"arch_id": arch.id, "source": self._cache[arch.id], "cached": cached,
                             "params": arch.num_parameters(), "macs": arch.num_macs(), "actions": student.actions(),
                             "trajectory": student.trajectory.to_dict()})
        self._episodes.append({"episode": self._episode, "stage": stage, "students": students, "rewards": None,
                               "mean_reward": None, "policy": None, "best_after": None})
        self._phase, self._round = _EPISODE, ids
        return bool(ids)

    def _stage(self) -> tuple[str, tuple[Step, ...]]:
        """Which stages decide the next episode's students, and the removals given to a shrinkage-only episode."""
        k = self.config.removal_episodes
        if k == 0:
            return "both", ()
        if self._episode < k:
            return "removal", ()
        best, best_reward = None, None
        for record in self._episodes:  # the removal episodes' best student (ties: the first); the teacher if none
            if record.get("stage") != "removal" or record["rewards"] is None:
                continue
            for student, reward in zip(record["students"], record["rewards"]):
                source = student["source"]
                if source != self._seed_id and self._val_acc(source) is not None and \
                        (best_reward is None or reward > best_reward):
                    best, best_reward = source, reward
        if best is None:
            return "shrink", ()
        lineage = self._candidates[best].architecture.lineage
        return "shrink", tuple(s for s in (lineage.steps if lineage else ()) if s.op == "remove_layer")

    def _reward(self, source: str) -> float:
        """R of the student trained as ``source`` (module docstring): 0 for the teacher itself, -1 if it failed."""
        if source == self._seed_id:
            return 0.0
        acc = self._val_acc(source)
        if acc is None:
            return INVALID_REWARD
        teacher = self._candidates[self._seed_id].architecture
        return n2n_reward(self._candidates[source].architecture.num_parameters(), teacher.num_parameters(),
                          min(max(acc, 0.0), 1.0), min(max(cast(float, self._val_acc(self._seed_id)), 0.0), 1.0))

    def _finish_episode(self) -> None:
        record = self._episodes[-1]
        rewards = [self._reward(s["source"]) for s in record["students"]]
        record["rewards"] = rewards
        record["mean_reward"] = sum(rewards) / len(rewards)
        record["policy"] = self._source.learn([Trajectory.from_dict(s["trajectory"]) for s in record["students"]],
                                              rewards)
        for student, reward in zip(record["students"], rewards):  # strictly better: ties go to the first found
            source = student["source"]
            if source != self._seed_id and self._val_acc(source) is not None and \
                    (self._best_reward is None or reward > self._best_reward):
                self._best, self._best_reward = source, reward
        record["best_after"] = self._best
        logger.info("%s: episode %d done, rewards %s, best %s (reward %s)", self.strategy_name, self._episode,
                    [round(r, 4) for r in rewards], self._best, self._best_reward)

    def _start_final(self) -> None:
        if self._best is None:
            self._failure_reason = "no student was trained successfully: there is nothing to export"
            self._phase = PHASE_FAILED
            logger.error("%s: %s", self.strategy_name, self._failure_reason)
            return
        self._episode += 1
        final = self._propose_final(self._best)
        teacher = self._candidates[self._seed_id]
        reference = self._propose(teacher.architecture, parent=teacher.id, epochs=0, role="seed_final",
                                  evaluate_test=True)
        self._phase, self._round = PHASE_FINAL, [final.id, reference.id]

    # ---- reporting ------------------------------------------------------------------------------

    def _history(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for record in self._episodes:
            rewards = record["rewards"] or [None] * len(record["students"])
            students = [{"candidate": None if s["cached"] else s["source"],
                         "cached_from": s["source"] if s["cached"] else None, "arch_id": s["arch_id"],
                         "params": s["params"], "macs": s["macs"], "actions": s["actions"],
                         "val_acc": self._val_acc(s["source"]), "reward": r, "failed": self._failures.get(s["source"])}
                        for s, r in zip(record["students"], rewards)]
            out.append({"episode": record["episode"], "stage": record.get("stage", "both"), "students": students,
                        "rewards": record["rewards"], "mean_reward": record["mean_reward"],
                        "policy": record["policy"], "best_after": record["best_after"]})
        return out


class N2NSearch(_N2NLoop):
    """N2N learning (Ashok et al. 2018): a two-stage policy removes and shrinks the teacher's layers, by REINFORCE.

    Parameters
    ----------
    seed_architecture
        The teacher's architecture (the seed network, or the architecture of ``config.teacher``); any lineage is
        dropped.
    config
        An :class:`~.config.N2NConfig`, a mapping of its keys (NNI ``classArgs``), or ``None``.
    policy
        The two-stage policy; default ``N2NPolicy(config.policy_config())``.

    Candidates: the teacher (role ``seed``); per episode up to ``students_per_episode`` students (role ``child``,
    parent the teacher, lineage of compression steps), proposed once every candidate of the previous episode was
    told; then the best student's final training (role ``final``) and the teacher's test (role ``seed_final``).
    The same seed, results and order give the same candidates; a restored state continues exactly.
    """

    strategy_name: ClassVar[str] = "n2n"

    def __init__(self, seed_architecture: Architecture, config: Union[N2NConfig, Mapping[str, Any], None] = None,
                 *, policy: Optional[N2NPolicy] = None) -> None:
        checked = cast(N2NConfig, self.coerce_config(config))
        self.policy = policy if policy is not None else N2NPolicy(checked.policy_config())
        super().__init__(seed_architecture, checked, self.policy)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> N2NSearch:
        """A strategy with the state's configuration and teacher, continued from ``state``."""
        strategy: N2NSearch = cls._from_state(state)
        return strategy


class N2NRandom(_N2NLoop):
    """N2N's episodes with uniformly random actions and no learning: the baseline at the same budget.

    Every layer that can be removed is removed with probability 1/2, every remaining layer that can shrink gets
    a ratio drawn uniformly from ``shrink_ratios``; the ``policy_*`` keys are accepted and ignored.
    """

    strategy_name: ClassVar[str] = "n2n_random"

    def __init__(self, seed_architecture: Architecture,
                 config: Union[N2NConfig, Mapping[str, Any], None] = None) -> None:
        checked = cast(N2NConfig, self.coerce_config(config))
        super().__init__(seed_architecture, checked, RandomActions(tuple(sorted(checked.shrink_ratios))))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> N2NRandom:
        """A strategy with the state's configuration and teacher, continued from ``state``."""
        strategy: N2NRandom = cls._from_state(state)
        return strategy
