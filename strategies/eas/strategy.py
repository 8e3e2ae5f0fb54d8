"""EAS: reinforcement learning over Net2Net actions, as a pure ask/tell strategy; and its random baseline.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 3-4 and the authors' ``code/arch_search/arch_search_convnet_net2net.py``
(github.com/han-cai/EAS); see also ``ALGORITHMS.md``::

    start <- train(start net)                                 # epochs_start epochs
    repeat episodes times:
        for each of children_per_episode children of start:   # paper: 10
            net <- start
            n_deeper times: net <- Net2Deeper(net, controller.deeper(tokens(net), blocks(net)))   # paper: 5
            n_wider times:  net <- Net2Wider(net, controller.wider(tokens(net), mask(net)))       # paper: 4
        train every new child `epochs` epochs from start's weights (function-preserving init)  # paper: 20
        reward_i <- validation accuracy of child i (cached by architecture: a net is trained once)
        controller.update(trajectories, rewards)              # REINFORCE, tan(acc * pi / 2), baseline
        start <- the best net found so far
    final: train the best (and the seed) on train+val, report the test accuracy once

:class:`EasSearch` runs that loop over :class:`~nni_nas_ext.core.jobs.Candidate` values and never
trains anything itself (the contract of ``docs/design-nash.md``, as
:class:`~nni_nas_ext.strategies.nash.HillClimbing`); the meta-controller is :class:`~.controller.EasController`.
:class:`RandomNet2Net` is the same loop with actions drawn uniformly at random and no learning: the paper's
random-search baseline.

How a network is read as EAS' state is in :mod:`.encoding`; how a child is built from the actions, as the
core's morphisms a trial replays on the parent's weights, in :mod:`.children`; where actions come from
(controller or uniform draws) in :mod:`.policies`.

Deviations from the paper and choices it leaves open (marked **[dev]**):

* Order of the actions: Net2Wider first, then Net2Deeper (``wider_first=true``, the default), as the
  authors' released convnet script applies them; ``wider_first=false`` puts the deeper actions first.
* **[dev]** An action with nothing to act on (no layer can be widened, no layer can be deepened after) is
  skipped without asking the controller, and is not part of the child's trajectory.
* **[dev]** Failed children (NaN loss, crashed trial) get reward 0 and are cached as such: a failed
  architecture is not retried (retries belong in a wrapper). A failed child never becomes the start net.
  If the seed fails the search stops.
* **[dev]** Rewards are the validation accuracies clipped to ``[0, 1]``; the controller clips them further
  to 0.999 before ``tan(acc * pi / 2)`` (see :mod:`.reinforce`).
* **[dev]** The start net of an episode is the best net found so far (``start: best``; ``start: seed`` keeps the
  trained seed as every episode's start, to measure the controller on comparable episodes), its accuracy being
  whatever it scored when trained (the seed: after ``epochs_start`` epochs; a child: after its ``epochs`` of
  fine-tuning). Ties go to the net found first.
* **[dev]** Final phase as in NASH here: the winner and the seed are both trained ``epochs_final`` more
  epochs on train+val with the test set evaluated (the paper trains its best nets longer, from scratch
  or further; it is not recorded in ``ALGORITHMS.md``).
* **[dev]** Deepen's BatchNorm identity is set from data exactly (no noise); widening noise follows
  ``morphism_mode``. Max widths: one ladder and one ``max_width`` for convs and linear layers alike (the
  code has two lists).
* The paper trains an episode's children in parallel on 5 GPUs; here they are proposed together and
  may train in parallel. Training (SGD, cosine lr) and data splits belong to the trial code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union, cast

from nni_nas_ext.core.architecture import Architecture, Step
from nni_nas_ext.core.config import Config
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.morphisms import Widen

from .._bookkeeping import PHASE_DONE, PHASE_FAILED, PHASE_FINAL, PHASE_SEED, CandidateLedger, json_copy
from .actions import Trajectory
from .children import draw_child
from .config import EasConfig
from .controller import EasController
from .encoding import tokens, widths_up_to
from .policies import ControllerLike, ControllerPolicy, Learner, Policy, RandomPolicy

__all__ = ["EasSearch", "RandomNet2Net"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1

# Phases of the search (seed, final, done and failed are the ledger's).
_EPISODE = "episode"


class _EpisodeSearch(CandidateLedger):
    """The episode loop shared by :class:`EasSearch` and :class:`RandomNet2Net`; a policy supplies the actions."""

    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = EasConfig
    phases: ClassVar[tuple[str, ...]] = (PHASE_SEED, _EPISODE, PHASE_FINAL, PHASE_DONE, PHASE_FAILED)
    generation_key: ClassVar[str] = "episode"
    logger: ClassVar[logging.Logger] = logger
    config: EasConfig

    def __init__(self, seed_architecture: Architecture, config: Union[EasConfig, Mapping[str, Any], None],
                 policy: Learner) -> None:
        super().__init__(seed_architecture, config)
        self._policy = policy
        self._init_actions()
        self._episode = 0
        self._round: list[str] = []  # candidate ids of the current phase (seed, episode or final)
        self._episodes: list[dict[str, Any]] = []
        self._cache: dict[str, str] = {}  # architecture id -> the candidate whose result it gets
        self._best: str | None = None
        seed = self._propose_seed(self.config.epochs_start)
        self._cache[seed.architecture.id] = seed.id
        self._round = [seed.id]

    # ---- what a kind of episode search supplies (EAS' Net2Net actions here; Path-level EAS overrides) ---

    def _init_actions(self) -> None:
        """Set up what :meth:`_draw_child` needs (EAS: the width ladder and the Net2Wider morphism)."""
        self._widths = widths_up_to(self.config.max_width)
        self._widen = Widen(mode=self.config.morphism_mode, widths=self._widths)

    def _draw_child(self, start: Architecture) -> tuple[Architecture, Any, list[str], list[str]]:
        """A child of ``start``: the architecture (lineage from ``start``), its trajectory, actions and notes."""
        return draw_child(start, self.config, cast(Policy, self._policy), self._widen, self._rng)

    def _load_trajectory(self, data: Any) -> Any:
        """A trajectory back from its dict form (what :meth:`_draw_child` returned, after JSON)."""
        return Trajectory.from_dict(data)

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON: config, candidates, results, cache, episodes, generators, policy state."""
        return {
            **self._state_head(),
            "policy": self._policy.state_dict(),
            **self._state_ledger(),
            "episode": self._episode,
            "round": list(self._round),
            "episodes": json_copy(self._episodes),
            "cache": dict(self._cache),
            "best": self._best,
            **self._state_tail(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (after a JSON round trip, too).

        The state must come from a strategy of the same kind, configuration and seed architecture (build
        one with :meth:`from_state_dict` otherwise). Candidates asked for but not told stay pending.

        Raises
        ------
        ValueError
            Naming the mismatch or the malformed entry.
        """
        self._load_state(state)

    def _load_extra(self, state: Mapping[str, Any], new: dict[str, Any]) -> set[str]:
        new.update({
            "_round": [str(c) for c in state["round"]],
            "_episodes": [dict(e) for e in state["episodes"]],
            "_cache": {str(k): str(v) for k, v in state["cache"].items()},
            "_episode": int(state["episode"]), "_best": state["best"],
        })
        return set(new["_round"]) | set(new["_cache"].values())

    def _load_finish(self, state: Mapping[str, Any], new: dict[str, Any]) -> None:
        self._policy.load_state_dict(state["policy"])

    def summary(self) -> dict[str, Any]:
        """Status, seed and winner figures, the winner's lineage, per-episode history with rewards, failures.

        All plain JSON. ``val_acc`` is a result's ``"default"``; ``test_acc`` comes from the final
        trainings. The winner is the best net so far while running.
        """
        counts = {"n_children": sum(len(e["children"]) for e in self._episodes),
                  "cache_hits": sum(1 for e in self._episodes for child in e["children"] if child["cached"])}
        return self._summary(self.strategy_name, {"episode": self._episode, "episodes": self.config.episodes},
                             counts)

    # ---- extras ---------------------------------------------------------------------------------

    @property
    def incumbent(self) -> Candidate | None:
        """The best candidate so far, the start net of the next episode (``None`` before the seed reported)."""
        return None if self._best is None else self._candidates[self._best]

    # ---- the loop -------------------------------------------------------------------------------

    def _generation(self) -> int:
        return self._episode

    def _current_round(self) -> list[str]:
        return self._round

    def _close_round(self) -> None:
        if self._phase == PHASE_SEED:
            if self._fail_seed("search"):
                return
            self._best = self._seed_id
        elif self._phase == _EPISODE:
            self._finish_episode()
        else:  # the final round
            self._phase = PHASE_DONE
            return
        while self._episode < self.config.episodes:
            if self._start_episode():
                return  # candidates to train
            self._finish_episode()  # every child was cached: its rewards are known now
        self._start_final()

    def _reward(self, source: str) -> float:
        """The validation accuracy of ``source`` clipped to [0, 1]; 0 for a failed candidate."""
        acc = self._val_acc(source)
        return 0.0 if acc is None else min(max(acc, 0.0), 1.0)

    def _start_episode(self) -> bool:
        """Sample the episode's children of the best net; propose the new ones. Whether any was proposed."""
        assert self._best is not None
        start = self._candidates[self._best if self.config.start == "best" else self._seed_id]
        # draw every child first: an impossible action from the controller raises before anything is proposed
        drawn = [self._draw_child(start.architecture) for _ in range(self.config.children_per_episode)]
        self._episode += 1
        children, ids = [], []
        for child, trajectory, actions, notes in drawn:
            cached = child.id in self._cache
            if not cached:
                cid = self._propose(child, parent=start.id, epochs=self.config.epochs, role="child").id
                self._cache[child.id] = cid
                ids.append(cid)
            assert child.lineage is not None
            children.append({"arch_id": child.id, "source": self._cache[child.id], "cached": cached,
                             "params": child.num_parameters(), "actions": actions, "notes": notes,
                             "steps": [s.to_dict() for s in child.lineage.steps],
                             "trajectory": trajectory.to_dict()})
        self._episodes.append({"episode": self._episode, "start": start.id, "children": children,
                               "rewards": None, "controller": None, "best_after": None})
        self._phase, self._round = _EPISODE, ids
        return bool(ids)

    def _finish_episode(self) -> None:
        record = self._episodes[-1]
        rewards = [self._reward(child["source"]) for child in record["children"]]
        trajectories = [self._load_trajectory(child["trajectory"]) for child in record["children"]]
        record["rewards"] = rewards
        record["controller"] = self._policy.learn(trajectories, rewards)
        best = self._best
        best_acc = self._val_acc(best) if best is not None else None
        for child in record["children"]:  # strictly better: ties go to the net found first
            acc = None if child["cached"] else self._val_acc(child["source"])
            if acc is not None and (best_acc is None or acc > best_acc):
                best, best_acc = child["source"], acc
        self._best = best
        record["best_after"] = best
        logger.info("%s: episode %d done, rewards %s, best %s", self.strategy_name, self._episode, rewards, best)

    def _start_final(self) -> None:
        assert self._best is not None
        self._episode += 1
        self._phase, self._round = PHASE_FINAL, self._propose_finals(self._best)

    # ---- reporting ------------------------------------------------------------------------------

    def _extra_figures(self, c: Candidate) -> dict[str, Any]:
        return {"tokens": tokens(c.architecture)}

    def _history(self) -> list[dict[str, Any]]:
        return [self._episode_summary(e) for e in self._episodes]

    def _episode_summary(self, record: Mapping[str, Any]) -> dict[str, Any]:
        children = []
        for child, reward in zip(record["children"], record["rewards"] or [None] * len(record["children"])):
            source = child["source"]
            children.append({
                "candidate": None if child["cached"] else source, "cached_from": source if child["cached"] else None,
                "arch_id": child["arch_id"], "params": child["params"], "actions": child["actions"],
                "morphisms": [Step.from_dict(s).describe() for s in child["steps"]], "notes": child["notes"],
                "val_acc": self._val_acc(source), "reward": reward,
                "failed": self._failures.get(source),
            })
        return {"episode": record["episode"], "start": record["start"], "children": children,
                "rewards": record["rewards"], "controller": record["controller"], "best_after": record["best_after"]}


class EasSearch(_EpisodeSearch):
    """EAS (Cai et al. 2018): a meta-controller chooses Net2Deeper/Net2Wider actions, trained by REINFORCE.

    Parameters
    ----------
    seed_architecture
        The start net (e.g. :func:`nni_nas_ext.search_spaces.plain_cnn` or ``nash_seed``); any lineage is
        dropped.
    config
        An :class:`EasConfig`, a mapping of its keys (NNI ``classArgs``), or ``None`` for the defaults.
    controller
        The meta-controller; default ``EasController(config.controller_config())``. Any object with
        :class:`ControllerLike`'s methods will do (tests pass recording fakes).

    The sequence of candidates:

    1. episode 0: the seed (role ``seed``, ``epochs_start``, no parent);
    2. episodes 1..episodes: up to ``children_per_episode`` children of the best net so far (role
       ``child``, ``parent`` = the best net's candidate, lineage = every step from its architecture,
       ``epochs``). A child whose architecture was proposed before in the search (the seed, an earlier
       child, or a sibling) is not proposed again: it gets that candidate's accuracy as its reward. An
       episode is proposed once every candidate of the previous one was told; then the controller is
       updated with the episode's rewards, and the best net so far becomes the next start net;
    3. final: the best net (role ``final``) and the seed (role ``seed_final``), ``epochs_final`` on
       ``"train+val"`` with ``evaluate_test``.

    Randomness: the widening mappings come from a NumPy generator and the controller's samples from a
    ``torch.Generator``, both seeded by ``config.seed`` and saved in :meth:`state_dict` with the
    controller's state, so a restored strategy proposes exactly what the original would have.
    """

    strategy_name: ClassVar[str] = "eas"

    def __init__(self, seed_architecture: Architecture, config: Union[EasConfig, Mapping[str, Any], None] = None,
                 *, controller: Optional[ControllerLike] = None) -> None:
        checked = cast(EasConfig, self.coerce_config(config))
        if controller is None:
            controller = EasController(checked.controller_config())
        self.controller = controller
        super().__init__(seed_architecture, checked, ControllerPolicy(controller, checked.seed))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *, controller: Optional[ControllerLike] = None) -> EasSearch:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: EasSearch = cls._from_state(state, controller=controller)
        return strategy


class RandomNet2Net(_EpisodeSearch):
    """The random-search baseline of EAS (Cai et al. 2018, Sec. 4.1): the same episodes, random actions.

    Everything is as in :class:`EasSearch` (budget, caching, start net = the best so far, final phase)
    except that the actions are drawn uniformly (see :class:`~.policies.RandomPolicy`) and nothing is learnt. It
    takes :class:`EasConfig`; its ``controller_*`` keys are accepted and ignored, so that one configuration
    runs both for a comparison. [dev] The authors' code interleaves the wider and deeper actions in a random
    order; here they come in the configured order, as for :class:`EasSearch`.
    """

    strategy_name: ClassVar[str] = "net2net_random"

    def __init__(self, seed_architecture: Architecture,
                 config: Union[EasConfig, Mapping[str, Any], None] = None) -> None:
        checked = cast(EasConfig, self.coerce_config(config))
        super().__init__(seed_architecture, checked, RandomPolicy(checked.kernels))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> RandomNet2Net:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: RandomNet2Net = cls._from_state(state)
        return strategy
