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

:class:`EasSearch` runs that loop over :class:`~nni_nas_ext.strategies.candidate.Candidate` values and never
trains anything itself (the contract of ``docs/design-nash.md``, as :class:`~.nash.HillClimbing`); the
meta-controller is :class:`~.eas_controller.EasController`. :class:`RandomNet2Net` is the same loop with
actions drawn uniformly at random and no learning: the paper's random-search baseline.

How a network is read as EAS' state (:func:`layer_sequence`)
------------------------------------------------------------
* **tokens**: the *layers* in topological order, ``conv-{filters}-{kernel}``, ``fc-{units}`` (linear) and
  ``pool`` (max, average and global average pooling); BatchNorm, ReLU and dropout are folded into the
  layer before them, as in the paper's token list. The output (classifier) layer is a token too, always
  masked ([dev] the authors' code leaves it out of the sequence).
* **wider mask**: the layers :class:`~nni_nas_ext.core.Widen` applies to with a next width on the ladder
  :data:`~nni_nas_ext.core.morphisms.WIDTHS` at most ``max_width``; pools and the output layer are masked.
* **blocks**: the layers grouped by the resolution of their output (the stages between two poolings of a
  plain CNN; the feature vectors after global pooling are the last block), in order. A block lists the
  layers after which :class:`~nni_nas_ext.core.Deepen` can insert, i.e. whose folded BN/ReLU/dropout
  tail ends in one of ``Deepen.sites`` (a ReLU): the output layer and a layer with no ReLU after it (a
  skip's 1x1 projection) are never listed, so a block may be empty (the controller never picks one).

**DAGs** (NASH's skips; the EAS search space here is the plain CNN / NASH seed family): a network with
skip connections is read as its layers in topological order. A skip's 1x1 projection is a ``conv-C-1``
token and its resolution-matching average pool a ``pool`` token (which does not split a block: blocks
follow resolution); ``add``/``concat`` merges are not tokens, so the encoder sees a linearisation of the
graph. The actions are the core's morphisms, which follow channels through merges: widening a layer that
an ``add`` couples to others widens them together (a coupled layer chosen in the same action is then
left as it is), and a layer whose activation comes after a merge (``conv-bn-add-relu``) cannot be
deepened after.

Actions as morphisms (so that a trial replays them on the parent's weights)
---------------------------------------------------------------------------
* a Net2Wider action widens every chosen layer to the next width of the ladder (one ``widen`` step each,
  ``morphism_mode`` exact or with EAS' symmetry-breaking noise);
* a Net2Deeper action ``(block, layer, kernel)`` inserts an identity ``conv(kernel)-BN-ReLU`` after the
  chosen layer's ReLU (one ``deepen`` step; after a fully connected layer an identity ``linear-ReLU``, the
  kernel being ignored there, as in the authors' code).

A child's lineage holds all its steps from the start net (:func:`nni_nas_ext.core.replay` rebuilds it).

Deviations from the paper and choices it leaves open (marked **[dev]**):

* Order of the actions: Net2Wider first, then Net2Deeper (``wider_first=true``, the default), as the
  authors' released convnet script applies them; ``wider_first=false`` puts the deeper actions first.
* **[dev]** An action with nothing to act on (no layer can be widened, no layer can be deepened after) is
  skipped without asking the controller, and is not part of the child's trajectory.
* **[dev]** Failed children (NaN loss, crashed trial) get reward 0 and are cached as such: a failed
  architecture is not retried (retries belong in a wrapper). A failed child never becomes the start net.
  If the seed fails the search stops.
* **[dev]** Rewards are the validation accuracies clipped to ``[0, 1]``; the controller clips them further
  to 0.999 before ``tan(acc * pi / 2)`` (see :mod:`.eas_controller`).
* **[dev]** The start net of an episode is the best net found so far, its accuracy being whatever it
  scored when trained (the seed: after ``epochs_start`` epochs; a child: after its ``epochs`` of
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

import base64
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Protocol, Union

import numpy as np
import torch

from nni_nas_ext.core.architecture import Architecture, Lineage, Step
from nni_nas_ext.core.morphisms import WIDTHS, Deepen, Widen

from ._bookkeeping import _DONE, _FAILED, _FINAL, _SEED, CandidateLedger, _json_copy
from .candidate import Candidate
from .config import Config, ConfigError, option
from .eas_controller import ControllerConfig, DeeperAction, require_odd_kernels, EasController, Trajectory, WiderAction
from .eas_controller import Step as ActorCall

__all__ = [
    "EasConfig", "EasSearch", "LayerSequence", "RandomNet2Net", "deeper_blocks",
    "layer_sequence", "tokens", "wider_mask", "widths_up_to",
]

logger = logging.getLogger(__name__)

STATE_VERSION = 1

# Phases of the search (seed, final, done and failed are the ledger's).
_EPISODE = "episode"

#: Operators that are EAS layers (tokens), and those of them that are pooling layers.
_LAYER_OPS = frozenset({"conv", "linear"})
_POOL_OPS = frozenset({"maxpool", "avgpool", "gap"})
#: Unary operators folded into the layer before them (BN and ReLU in the paper's token list).
_FOLDED_OPS = frozenset({"bn", "relu", "dropout"})


# --------------------------------------------------------------------------------------------------
# Architecture -> EAS state
# --------------------------------------------------------------------------------------------------


def widths_up_to(max_width: int, ladder: Sequence[int] = WIDTHS) -> tuple[int, ...]:
    """The width ladder cut at ``max_width`` (inclusive): the widths Net2Wider may grow a layer to."""
    widths = tuple(w for w in ladder if w <= max_width)
    if not widths:
        raise ValueError(f"max_width must be at least the smallest width of the ladder {tuple(ladder)}, "
                         f"but got {max_width!r}")
    return widths


@dataclass(frozen=True)
class LayerSequence:
    """A network read as EAS' state: its layers as tokens, the wider mask and the deeper blocks.

    Attributes
    ----------
    tokens
        One per layer in topological order: ``conv-{filters}-{kernel}``, ``fc-{units}``, ``pool``.
    nodes
        The node id of each token.
    wider_mask
        ``wider_mask[i]``: whether Net2Wider can widen layer ``i`` (False for pools, the output layer and
        layers at ``max_width``).
    blocks
        Token indices of the layers after which Net2Deeper can insert, grouped by resolution (stages).
    deepen_sites
        For each token index listed in ``blocks``: the node (the layer's ReLU) after which Deepen inserts.
    """

    tokens: tuple[str, ...]
    nodes: tuple[str, ...]
    wider_mask: tuple[bool, ...]
    blocks: tuple[tuple[int, ...], ...]
    deepen_sites: Mapping[int, str]

    @property
    def can_widen(self) -> bool:
        return any(self.wider_mask)

    @property
    def can_deepen(self) -> bool:
        return any(self.blocks)


def _token(arch: Architecture, nid: str) -> str | None:
    node = arch.node(nid)
    if node.op == "conv":
        return f"conv-{node['out_channels']}-{node['kernel']}"
    if node.op == "linear":
        return f"fc-{node['out_features']}"
    if node.op in _POOL_OPS:
        return "pool"
    return None


def _layers(arch: Architecture) -> list[tuple[str, str]]:
    """``(node id, token)`` of every layer, in topological order."""
    out = []
    for nid in arch.topological_order:
        token = _token(arch, nid)
        if token is not None:
            out.append((nid, token))
    return out


def tokens(arch: Architecture) -> list[str]:
    """The layers of ``arch`` as EAS tokens, in topological order (see the module docstring)."""
    return [token for _, token in _layers(arch)]


def wider_mask(arch: Architecture, max_width: int = WIDTHS[-1]) -> list[bool]:
    """Per token: whether Net2Wider can widen the layer (a next width on the ladder, at most ``max_width``)."""
    sites = {site["node"] for site in Widen(widths=widths_up_to(max_width)).sites(arch)}
    return [nid in sites for nid, _ in _layers(arch)]


def _deepen_site(arch: Architecture, nid: str, sites: set[str]) -> str | None:
    """The last Deepen site in the chain of BN/ReLU/dropout that follows layer ``nid`` alone, if any."""
    found, current = None, nid
    while True:
        consumers = arch.consumers(current)
        if len(consumers) != 1 or arch.node(consumers[0]).op not in _FOLDED_OPS:
            return found
        current = consumers[0]
        if current in sites:
            found = current


def _blocks(arch: Architecture, layers: Sequence[tuple[str, str]]) -> tuple[tuple[tuple[int, ...], ...],
                                                                           dict[int, str]]:
    sites = {site["node"] for site in Deepen().sites(arch)}
    groups: dict[tuple[int, ...], list[int]] = {}
    deepen_sites: dict[int, str] = {}
    for i, (nid, _) in enumerate(layers):
        if arch.node(nid).op not in _LAYER_OPS:
            continue
        group = groups.setdefault(arch.shape(nid)[1:], [])
        site = _deepen_site(arch, nid, sites)
        if site is not None:
            group.append(i)
            deepen_sites[i] = site
    return tuple(tuple(g) for g in groups.values()), deepen_sites


def deeper_blocks(arch: Architecture) -> list[list[int]]:
    """Token indices of the layers Net2Deeper can insert after, grouped by output resolution (stages)."""
    return [list(block) for block in _blocks(arch, _layers(arch))[0]]


def layer_sequence(arch: Architecture, max_width: int = WIDTHS[-1]) -> LayerSequence:
    """Tokens, wider mask and deeper blocks of ``arch`` at once (see the module docstring)."""
    layers = _layers(arch)
    blocks, deepen_sites = _blocks(arch, layers)
    return LayerSequence(tuple(t for _, t in layers), tuple(n for n, _ in layers),
                         tuple(wider_mask(arch, max_width)), blocks, deepen_sites)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def _controller_option(name: str) -> Any:
    """A field with the default, range and doc of :class:`ControllerConfig`'s ``name`` (no drift)."""
    field = next(f for f in dataclasses.fields(ControllerConfig) if f.name == name)
    return dataclasses.field(default=field.default, metadata=field.metadata)


@dataclass(frozen=True)
class EasConfig(Config):
    """Configuration of :class:`EasSearch` and :class:`RandomNet2Net` (NNI ``classArgs``).

    The defaults of the search budget are small, for CPU runs; the paper's values are in each key's doc.
    The ``controller_*`` keys configure :class:`~.eas_controller.EasController` (their defaults are the
    paper's); :class:`RandomNet2Net` ignores them.
    """

    config_name: ClassVar[str] = "eas"

    episodes: int = option(
        3, minimum=1, maximum=100_000,
        doc="episodes; each samples children_per_episode children of the best net so far (the paper's "
            "count is not recorded in ALGORITHMS.md)")
    children_per_episode: int = option(
        3, minimum=1, maximum=10_000,
        doc="children sampled per episode, the REINFORCE batch (paper: 10)")
    n_deeper: int = option(
        2, minimum=0, maximum=1_000,
        doc="Net2Deeper actions per child (paper: 5)")
    n_wider: int = option(
        2, minimum=0, maximum=1_000,
        doc="Net2Wider actions per child (paper: 4)")
    wider_first: bool = option(
        True,
        doc="apply the Net2Wider actions before the Net2Deeper ones, as the authors' convnet script does; "
            "false: deeper first")
    epochs: int = option(
        2, minimum=0, maximum=100_000,
        doc="epochs of every child's training from its start net's weights (paper: 20)")
    epochs_start: int = option(
        3, minimum=0, maximum=100_000,
        doc="epochs of the seed (start net) training before the search (the paper starts from a trained net)")
    epochs_final: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the final training on train+val of the winner and of the seed")
    max_width: int = option(
        256, minimum=WIDTHS[0], maximum=WIDTHS[-1],
        doc=f"layers grow along the width ladder {list(WIDTHS)} up to this; wider layers are masked "
            f"(paper: ladder 16, 32, 64, 96, 128, 192, 256, ...)")
    kernels: tuple[int, ...] = _controller_option("kernels")
    morphism_mode: str = option(
        "noise", choices=("exact", "replicate", "noise"),
        doc="'noise': EAS' symmetry-breaking noise N(0, (1e-2 std W)^2) on new units of a widening "
            "(paper); 'exact': exact and symmetry-breaking (new units: random in, zero out); 'replicate': "
            "Net2Net's exact copies")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the strategy's generators (widening mappings, controller sampling, random actions) "
            "and of the controller's initialisation")
    controller_embedding_dim: int = _controller_option("embedding_dim")
    controller_hidden_size: int = _controller_option("hidden_size")
    controller_lr: float = _controller_option("lr")
    controller_baseline_decay: float = _controller_option("baseline_decay")
    controller_entropy_weight: float = _controller_option("entropy_weight")
    controller_vocab_size: int = _controller_option("vocab_size")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_odd_kernels(self.config_name, self.kernels)
        if self.n_deeper + self.n_wider < 1:
            raise ConfigError(f"{self.config_name}: n_deeper + n_wider >= 1 must hold (a child needs an action), "
                              f"but got n_deeper={self.n_deeper}, n_wider={self.n_wider}", key="n_deeper",
                              value=self.n_deeper)

    def controller_config(self) -> ControllerConfig:
        """The :class:`ControllerConfig` of the ``controller_*`` keys, ``kernels`` and ``seed``."""
        return ControllerConfig(
            embedding_dim=self.controller_embedding_dim, hidden_size=self.controller_hidden_size,
            kernels=self.kernels, lr=self.controller_lr, baseline_decay=self.controller_baseline_decay,
            entropy_weight=self.controller_entropy_weight, vocab_size=self.controller_vocab_size, seed=self.seed)


# --------------------------------------------------------------------------------------------------
# Policies: where actions come from
# --------------------------------------------------------------------------------------------------


class ControllerLike(Protocol):
    """What :class:`EasSearch` needs of a meta-controller (:class:`~.eas_controller.EasController`)."""

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction: ...
    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]],
               generator: torch.Generator) -> DeeperAction: ...
    def update(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> Mapping[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _Policy(Protocol):
    def wider(self, seq: LayerSequence, rng: np.random.Generator) -> WiderAction: ...
    def deeper(self, seq: LayerSequence, rng: np.random.Generator) -> DeeperAction: ...
    def learn(self, trajectories: list[Trajectory], rewards: list[float]) -> dict[str, Any] | None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def _generator_state(generator: torch.Generator) -> str:
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def _set_generator_state(generator: torch.Generator, text: str) -> None:
    generator.set_state(torch.tensor(list(base64.b64decode(text, validate=True)), dtype=torch.uint8))


class _ControllerPolicy:
    """Actions sampled by the meta-controller from its own ``torch.Generator``; REINFORCE after each episode."""

    def __init__(self, controller: ControllerLike, seed: int) -> None:
        self.controller = controller
        self.generator = torch.Generator().manual_seed(seed)

    def wider(self, seq: LayerSequence, rng: np.random.Generator) -> WiderAction:
        return self.controller.wider(seq.tokens, seq.wider_mask, self.generator)

    def deeper(self, seq: LayerSequence, rng: np.random.Generator) -> DeeperAction:
        return self.controller.deeper(seq.tokens, seq.blocks, self.generator)

    def learn(self, trajectories: list[Trajectory], rewards: list[float]) -> dict[str, Any] | None:
        return _json_copy(dict(self.controller.update(trajectories, rewards)))

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "generator": _generator_state(self.generator)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        _set_generator_state(self.generator, state["generator"])


class _RandomPolicy:
    """Uniform actions from the strategy's generator, no learning (the paper's random-search baseline).

    Net2Wider: every layer that can be widened is, with probability 1/2 (the authors' code draws a fair
    coin per position). Net2Deeper: a non-empty block, a layer in it and a kernel, each uniformly.
    """

    def __init__(self, kernels: Sequence[int]) -> None:
        self.kernels = tuple(kernels)

    def wider(self, seq: LayerSequence, rng: np.random.Generator) -> WiderAction:
        return WiderAction(tuple(bool(m and rng.random() < 0.5) for m in seq.wider_mask))

    def deeper(self, seq: LayerSequence, rng: np.random.Generator) -> DeeperAction:
        candidates = [k for k, block in enumerate(seq.blocks) if block]
        block = candidates[int(rng.integers(len(candidates)))]
        layer = seq.blocks[block][int(rng.integers(len(seq.blocks[block])))]
        return DeeperAction(block, layer, self.kernels[int(rng.integers(len(self.kernels)))])

    def learn(self, trajectories: list[Trajectory], rewards: list[float]) -> dict[str, Any] | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


# --------------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------------


class _EpisodeSearch(CandidateLedger):
    """The episode loop shared by :class:`EasSearch` and :class:`RandomNet2Net`; a policy supplies the actions."""

    strategy_name: ClassVar[str] = ""
    state_version: ClassVar[int] = STATE_VERSION
    config_class: ClassVar[type[Config]] = EasConfig
    phases: ClassVar[tuple[str, ...]] = (_SEED, _EPISODE, _FINAL, _DONE, _FAILED)
    generation_key: ClassVar[str] = "episode"
    logger: ClassVar[logging.Logger] = logger
    config: EasConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.log_name = cls.state_format = cls.strategy_name  # the name is the state's format and the log prefix

    def __init__(self, seed_architecture: Architecture, config: Union[EasConfig, Mapping[str, Any], None],
                 policy: _Policy) -> None:
        super().__init__(seed_architecture, config)
        self._policy = policy
        self._widths = widths_up_to(self.config.max_width)
        self._widen = Widen(mode=self.config.morphism_mode, widths=self._widths)
        self._episode = 0
        self._round: list[str] = []  # candidate ids of the current phase (seed, episode or final)
        self._episodes: list[dict[str, Any]] = []
        self._cache: dict[str, str] = {}  # architecture id -> the candidate whose result it gets
        self._best: str | None = None
        seed = self._propose_seed(self.config.epochs_start)
        self._cache[seed.architecture.id] = seed.id
        self._round = [seed.id]

    # ---- the SearchStrategy interface -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON: config, candidates, results, cache, episodes, generators, policy state."""
        return {
            **self._state_head(),
            "policy": self._policy.state_dict(),
            **self._state_ledger(),
            "episode": self._episode,
            "round": list(self._round),
            "episodes": _json_copy(self._episodes),
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
        if self._phase == _SEED:
            if self._fail_seed("search"):
                return
            self._best = self._seed_id
        elif self._phase == _EPISODE:
            self._finish_episode()
        else:  # the final round
            self._phase = _DONE
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
        start = self._candidates[self._best]
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
        trajectories = [Trajectory.from_dict(child["trajectory"]) for child in record["children"]]
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

    def _draw_child(self, start: Architecture) -> tuple[Architecture, Trajectory, list[str], list[str]]:
        """A child of ``start``: the episode's actions applied in turn; its trajectory, actions and notes."""
        kinds = ["deeper"] * self.config.n_deeper + ["wider"] * self.config.n_wider
        if self.config.wider_first:
            kinds = ["wider"] * self.config.n_wider + ["deeper"] * self.config.n_deeper
        arch, steps, calls, actions, notes = start, [], [], [], []
        for i, kind in enumerate(kinds):
            seq = layer_sequence(arch, self.config.max_width)
            if kind == "wider":
                if not seq.can_widen:
                    notes.append(f"action {i} (wider) skipped: no layer can be widened")
                    continue
                wider = self._policy.wider(seq, self._rng)
                calls.append(ActorCall(seq.tokens, wider, mask=seq.wider_mask))  # checks the action
                arch, new_steps = self._apply_wider(arch, seq, wider)
                actions.append(f"wider({', '.join(s.site['node'] for s in new_steps)})")
            else:
                if not seq.can_deepen:
                    notes.append(f"action {i} (deeper) skipped: no layer can be deepened after")
                    continue
                deeper = self._policy.deeper(seq, self._rng)
                calls.append(ActorCall(seq.tokens, deeper, blocks=seq.blocks))  # checks the action
                if deeper.kernel not in self.config.kernels:
                    raise ValueError(f"a deeper action's kernel must be one of {list(self.config.kernels)}, "
                                     f"but got {deeper.kernel}")
                arch, step = self._apply_deeper(arch, seq, deeper)
                new_steps = [step]
                actions.append(f"deeper(block={deeper.block}, after={seq.nodes[deeper.layer]}, "
                               f"kernel={step.params.get('kernel', '-')})")
            steps.extend(new_steps)
        return arch.with_lineage(Lineage(start.id, tuple(steps))), Trajectory(tuple(calls)), actions, notes

    def _apply_wider(self, arch: Architecture, seq: LayerSequence, action: WiderAction
                     ) -> tuple[Architecture, list[Step]]:
        """Widen every chosen layer to its next width; a layer already widened along with another is kept."""
        widths = {nid: arch.shape(nid)[0] for nid in seq.nodes}
        steps = []
        for i, chosen in enumerate(action.decisions):
            nid = seq.nodes[i]
            if not (chosen and seq.wider_mask[i]) or arch.shape(nid)[0] != widths[nid]:
                continue
            site = {"node": nid}
            if self._widen.check(arch, site) is not None:
                continue
            step = self._widen.propose(arch, site, self._rng)
            arch = self._widen.realize(arch, step)[0]
            steps.append(step)
        return arch, steps

    def _apply_deeper(self, arch: Architecture, seq: LayerSequence, action: DeeperAction
                      ) -> tuple[Architecture, Step]:
        """Insert an identity layer after the chosen layer's ReLU (the kernel is ignored after a linear layer)."""
        site = seq.deepen_sites[action.layer]
        params = {} if len(arch.shape(site)) == 1 else {"kernel": action.kernel}
        step = Step("deepen", {"node": site}, params)
        return Deepen().realize(arch, step)[0], step

    def _start_final(self) -> None:
        assert self._best is not None
        self._episode += 1
        self._phase, self._round = _FINAL, self._propose_finals(self._best)

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
        config = self.coerce_config(config)
        if controller is None:
            controller = EasController(config.controller_config())
        self.controller = controller
        super().__init__(seed_architecture, config, _ControllerPolicy(controller, config.seed))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *, controller: Optional[ControllerLike] = None) -> EasSearch:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: EasSearch = cls._from_state(state, controller=controller)
        return strategy


class RandomNet2Net(_EpisodeSearch):
    """The random-search baseline of EAS (Cai et al. 2018, Sec. 4.1): the same episodes, random actions.

    Everything is as in :class:`EasSearch` (budget, caching, start net = the best so far, final phase)
    except that the actions are drawn uniformly (see :class:`_RandomPolicy`) and nothing is learnt. It
    takes :class:`EasConfig`; its ``controller_*`` keys are accepted and ignored, so that one configuration
    runs both for a comparison. [dev] The authors' code interleaves the wider and deeper actions in a random
    order; here they come in the configured order, as for :class:`EasSearch`.
    """

    strategy_name: ClassVar[str] = "net2net_random"

    def __init__(self, seed_architecture: Architecture,
                 config: Union[EasConfig, Mapping[str, Any], None] = None) -> None:
        config = self.coerce_config(config)
        super().__init__(seed_architecture, config, _RandomPolicy(config.kernels))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> RandomNet2Net:
        """A strategy with the state's configuration and seed architecture, continued from ``state``."""
        strategy: RandomNet2Net = cls._from_state(state)
        return strategy

