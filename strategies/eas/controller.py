"""The EAS meta-controller: a BiLSTM encoder with a Net2Wider and a Net2Deeper actor, trained by REINFORCE.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Section 3 and the authors' code (github.com/han-cai/EAS:
``code/meta_controller/base_controller.py``, ``rl_controller.py``, ``expdir_monitor/arch_manager.py``,
``arch_search/arch_search_convnet_net2net.py``); see also ``ALGORITHMS.md``:

* **Encoder**: each layer of the current network is a token (``conv-{filters}-{kernel}``, ``fc-{units}``,
  ``pool``); an embedding (16) feeds a one-layer bidirectional LSTM (50 units per direction).
* **Net2Wider actor**: one sigmoid classifier shared by all layers, on each layer's encoder output:
  "widen this layer?". Positions the caller masks out (pools, layers at maximal width) are never widened.
* **Net2Deeper actor**: an LSTM decoder whose state starts from the encoder's final state (both directions
  concatenated) makes three decisions in turn: a block (the layers between two poolings), a layer in that
  block, and a kernel size; the new identity layer goes after the chosen layer.
* **REINFORCE**: reward ``R = tan(acc * pi / 2)``, a moving-average baseline and an entropy bonus,
  Adam with lr 0.002. The exact form, confirmed in the authors' ``arch_manager.py::ArchManager.reward`` and
  ``rl_controller.py::ReinforceNet2NetController``, for one episode of ``N`` children::

      b <- 0                                       # once, when the search starts
      b <- b + baseline_decay * (mean_i R_i - b)   # baseline_decay = 0.95; updated BEFORE the advantages
      A_i = R_i - b
      loss = -(1/N) sum_i A_i sum_{decisions t of child i} log pi(a_t)  -  entropy_weight * H

  where ``H`` is the mean over the episode's actor calls of each call's mean per-decision entropy (the code's
  ``entropy_term``: a wider call averages over its unmasked layers, a deeper call over its three
  decisions). The code minimises ``-obj - entropy_penalty * entropy``, so entropy is a *bonus*.

:class:`EasController` is pure: it never touches files nor ``nni``, all its sampling randomness comes from
the ``torch.Generator`` passed in, and its parameters are initialised from ``config.seed`` without touching
torch's global generator. It does not know what an architecture is: the strategy turns networks into
tokens, masks and blocks, and actions into morphisms. Its parts: the torch modules and forward passes
(:mod:`.networks`), the actions and trajectories (:mod:`.actions`), the loss (:mod:`.reinforce`) and the
state's tensors as plain JSON, without pickle (:mod:`.state`).

Deviations from the paper and its code (marked **[dev]**):

* **[dev]** Tokens are hashed (CRC-32) into ``vocab_size`` buckets instead of being enumerated in a fixed
  vocabulary (the code lists ``conv-{4..40}-{1,3,5}``, ``fc-{8..80}``, ``pool``); any token string is
  accepted, and two tokens may share a bucket (then they share an embedding).
* **[dev]** The block and layer decisions are pointer-style heads: each block scores
  ``<W h, mean of its layers' encoder outputs> / sqrt(d)`` and each layer ``<W' h, its encoder output>
  / sqrt(d)`` (``h`` the decoder output), so any number of blocks and layers per block is allowed. The
  code uses fixed softmax heads over 5 blocks and 10 layers per block (layer index relative to its
  block) and feeds the embedding of the previous decision's *index* to the decoder; here the decoder's
  next input is a projection of the chosen block's (layer's) encoder feature.
* **[dev]** Empty blocks are masked at the block decision (the code masks only the layer decision).
* **[dev]** The kernel is always decided and counted in the log-probability; the code masks the kernel
  decision out when the chosen layer is fully connected (a strategy may ignore the kernel there).
* **[dev]** Accuracies are clipped to ``[0, MAX_ACCURACY]`` (0.999, ``R <= tan(0.4995 pi) ~ 636.6``)
  before the tangent, which is infinite at 1 (the code does not clip).
* Initialisation: the embeddings and the decoder's start input uniform in ``[-sqrt 3, sqrt 3]`` (unit
  variance, as the code); LSTM and linear weights and biases uniform in ``[-1/sqrt(n), 1/sqrt(n)]``
  (PyTorch's defaults; the TF code used Glorot-uniform and forget bias 1).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch

from nni_nas_ext.core.config import parse_config

from .actions import Action, DeeperAction, Step, Trajectory, WiderAction, check_blocks, check_mask, check_tokens
from .config import ControllerConfig
from .networks import ControllerNetwork
from .reinforce import accuracy_reward, optimiser_step, reinforce_loss
from .state import encode_tensors, restore_tensors

__all__ = ["EasController"]

STATE_FORMAT = "eas-controller"
#: 2: the tensors as JSON (dtype, shape, raw bytes); 1 held ``torch.save`` bytes, which strategies do not read.
STATE_VERSION = 2


class EasController:
    """The EAS meta-controller (Cai et al. 2018, Sec. 3): sample Net2Wider / Net2Deeper actions, learn by REINFORCE.

    Parameters
    ----------
    config
        A :class:`ControllerConfig`, a mapping of its keys (validated by
        :func:`~nni_nas_ext.core.config.parse_config`), or ``None`` for the paper's defaults.

    Attributes
    ----------
    network
        The torch modules (encoder, wider head, deeper decoder); its parameters are what Adam trains.
    optimizer
        ``torch.optim.Adam`` over ``network``'s parameters with ``lr = config.lr``.

    Notes
    -----
    :meth:`wider` and :meth:`deeper` sample without gradients; :meth:`update` recomputes the log-probabilities
    of the recorded :class:`Trajectory` steps under the current parameters (on-policy REINFORCE, one Adam step
    per episode as in the paper). The same state and generator state give the same samples.
    """

    def __init__(self, config: Union[ControllerConfig, Mapping[str, Any], None] = None) -> None:
        if config is None or isinstance(config, Mapping):
            config = parse_config(ControllerConfig, config)
        elif not isinstance(config, ControllerConfig):
            raise TypeError(f"config must be a ControllerConfig or a mapping, but got {type(config).__name__}")
        self.config: ControllerConfig = config
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global generator
            self.network = ControllerNetwork(config)
        self.network.initialise(torch.Generator().manual_seed(config.seed))
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self._baseline = 0.0  # b <- 0 at the start, as the paper's code (ArchManager.reward)
        self._updates = 0
        self._token_ids: dict[str, int] = {}

    # ----------------------------------------------------------------------------------------------
    # Introspection
    # ----------------------------------------------------------------------------------------------

    @property
    def baseline(self) -> float:
        """The moving-average baseline ``b`` of transformed rewards (0 before the first update)."""
        return self._baseline

    @property
    def updates(self) -> int:
        """How many :meth:`update` calls (Adam steps) the controller has made."""
        return self._updates

    def token_id(self, token: str) -> int:
        """The embedding row of ``token``: CRC-32 of its UTF-8 bytes modulo ``vocab_size`` ([dev], see module)."""
        tid = self._token_ids.get(token)
        if tid is None:
            tid = self._token_ids[token] = zlib.crc32(token.encode("utf-8")) % self.config.vocab_size
        return tid

    # ----------------------------------------------------------------------------------------------
    # Forward passes (batched over actor calls)
    # ----------------------------------------------------------------------------------------------

    # ----------------------------------------------------------------------------------------------
    # Forward passes (batched over actor calls)
    # ----------------------------------------------------------------------------------------------

    def _encode(self, sequences: Sequence[tuple[str, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder outputs ``(B, L, 2H)`` (zero past each length) and final state ``h, c`` ``(B, 2H)``."""
        lengths = [len(s) for s in sequences]
        ids = torch.zeros(len(sequences), max(lengths), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, :len(seq)] = torch.tensor([self.token_id(t) for t in seq], dtype=torch.long)
        return self.network.encode(ids, lengths)

    def _kernel_choices(self, actions: Sequence[DeeperAction]) -> torch.Tensor:
        """The ``(block, layer, kernel index)`` rows ``(B, 3)`` of given deeper actions."""
        return torch.tensor([[a.block, a.layer, self.config.kernels.index(a.kernel)] for a in actions],
                            dtype=torch.long)

    def _evaluate(self, steps: Sequence[Step]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per step: log-probability and entropy of its action (with grad), and its number of decisions.

        All steps are encoded in one batch; wider and deeper steps then go through their actor in one batch
        each. A :class:`Step` always carries the mask or blocks its action needs (checked on construction).
        """
        for step in steps:
            if isinstance(step.action, DeeperAction) and step.action.kernel not in self.config.kernels:
                raise ValueError(f"a deeper action's kernel must be one of {list(self.config.kernels)}, "
                                 f"but got {step.action.kernel}")
        n = len(steps)
        logp, entropy, count = torch.zeros(n), torch.zeros(n), torch.zeros(n)
        if not n:
            return logp, entropy, count
        out, h, c = self._encode([s.tokens for s in steps])
        wider = [i for i, s in enumerate(steps) if isinstance(s.action, WiderAction)]
        deeper = [i for i, s in enumerate(steps) if isinstance(s.action, DeeperAction)]
        if wider:
            w_logp, w_entropy, w_count, _ = self.network.wider_forward(
                out[wider], [steps[i].mask for i in wider],  # type: ignore[misc]
                [steps[i].action.decisions for i in wider], None)  # type: ignore[union-attr]
            index = torch.tensor(wider, dtype=torch.long)
            logp = logp.index_add(0, index, w_logp)
            entropy = entropy.index_add(0, index, w_entropy)
            count = count.index_add(0, index, w_count)
        if deeper:
            d_logp, d_entropy, _ = self.network.deeper_forward(
                out[deeper], h[deeper], c[deeper], [steps[i].blocks for i in deeper],  # type: ignore[misc]
                self._kernel_choices([steps[i].action for i in deeper]), None)  # type: ignore[misc]
            index = torch.tensor(deeper, dtype=torch.long)
            logp = logp.index_add(0, index, d_logp)
            entropy = entropy.index_add(0, index, d_entropy)
            count = count.index_add(0, index, torch.full((len(deeper),), 3.0))
        return logp, entropy, count

    # ----------------------------------------------------------------------------------------------
    # The actors
    # ----------------------------------------------------------------------------------------------

    def wider(self, tokens: Sequence[str], mask: Sequence[bool], generator: torch.Generator) -> WiderAction:
        """Sample a Net2Wider decision for every layer (Cai et al. 2018, Sec. 3, Net2Wider actor).

        Parameters
        ----------
        tokens
            One token per layer of the current network, e.g. ``conv-32-3``, ``pool``, ``fc-64``.
        mask
            ``mask[i]`` is whether layer ``i`` may be widened (False for pools and layers at their maximal
            width); masked layers are never widened and contribute nothing to log-probabilities and entropy.
        generator
            The source of randomness (a ``torch.Generator`` on the CPU).
        """
        tokens = check_tokens(tokens)
        mask = check_mask(mask, len(tokens))
        _check_generator(generator)
        with torch.no_grad():
            out, _, _ = self._encode([tokens])
            _, _, _, chosen = self.network.wider_forward(out, [mask], None, generator)
        return WiderAction(tuple(bool(d) for d in chosen[0].tolist()))

    def deeper(self, tokens: Sequence[str], blocks: Sequence[Sequence[int]], generator: torch.Generator,
               ) -> DeeperAction:
        """Sample a Net2Deeper decision: a block, a layer in it and a kernel (Cai et al. 2018, Sec. 3).

        Parameters
        ----------
        tokens
            One token per layer of the current network.
        blocks
            The token indices of each block (layers between poolings); empty blocks are never chosen. A
            token index may appear in one block at most; tokens in no block are never chosen.
        generator
            The source of randomness (a ``torch.Generator`` on the CPU).

        Raises
        ------
        ValueError
            When no block has a layer, or for malformed tokens or blocks.
        """
        tokens = check_tokens(tokens)
        checked = check_blocks(blocks, len(tokens))
        _check_generator(generator)
        with torch.no_grad():
            out, h, c = self._encode([tokens])
            _, _, chosen = self.network.deeper_forward(out, h, c, [checked], None, generator)
        block, layer, kernel = (int(v) for v in chosen[0].tolist())
        return DeeperAction(block, layer, self.config.kernels[kernel])

    def log_prob(self, tokens: Sequence[str], action: Action, *, mask: Optional[Sequence[bool]] = None,
                 blocks: Optional[Sequence[Sequence[int]]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of ``action`` under the current parameters, with gradients.

        For a :class:`WiderAction` (give ``mask``): the sum over unmasked layers of the Bernoulli
        log-probabilities and entropies. For a :class:`DeeperAction` (give ``blocks``): the sum of the three
        chosen log-softmax entries (block, layer, kernel) and of the three categorical entropies, each
        conditioned on the action's earlier decisions.

        Raises
        ------
        ValueError
            If the action is impossible (a masked layer widened, an empty block, a layer outside its
            block, an unknown kernel) or the mask / blocks are missing or malformed.
        """
        step = Step(check_tokens(tokens), action,
                    tuple(mask) if mask is not None else None,
                    tuple(tuple(b) for b in blocks) if blocks is not None else None)
        logp, entropy, _ = self._evaluate([step])
        return logp[0], entropy[0]

    # ----------------------------------------------------------------------------------------------
    # Learning
    # ----------------------------------------------------------------------------------------------

    def update(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> dict[str, float]:
        """One REINFORCE step on an episode of children (formulas in the module docstring).

        Parameters
        ----------
        trajectories
            For each child, the actor calls that produced it.
        rewards
            For each child, its validation accuracy in ``[0, 1]``; it is clipped to ``MAX_ACCURACY`` and
            transformed by :func:`accuracy_reward` (``tan(acc * pi / 2)``).

        Returns
        -------
        dict
            ``loss``, ``baseline`` (after this episode), ``mean_reward`` (transformed), ``mean_accuracy``,
            ``mean_advantage``, ``entropy`` (the bonus term ``H``) and ``updates`` (Adam steps so far).

        Raises
        ------
        ValueError
            For no children, mismatched lengths, an accuracy outside ``[0, 1]`` or not finite, or a step
            whose action is impossible; the controller is unchanged then.
        """
        trajectories = list(trajectories)
        accuracies = list(rewards)
        if not trajectories or len(trajectories) != len(accuracies):
            raise ValueError(f"update needs one accuracy per trajectory and at least one of each, but got "
                             f"{len(trajectories)} trajectories and {len(accuracies)} accuracies")
        for i, t in enumerate(trajectories):
            if not isinstance(t, Trajectory):
                raise TypeError(f"trajectories[{i}] must be a Trajectory, but got {type(t).__name__}")
        rewards_r = [accuracy_reward(a) for a in accuracies]  # validates every accuracy
        steps = [s for t in trajectories for s in t.steps]
        owner = torch.tensor([i for i, t in enumerate(trajectories) for _ in t.steps], dtype=torch.long)
        logp, entropy, count = self._evaluate(steps)  # validates every step before anything changes

        terms = reinforce_loss(logp, entropy, count, owner, rewards_r, self._baseline, self.config.baseline_decay,
                               self.config.entropy_weight)

        optimiser_step(self.optimizer, terms.loss)
        self._baseline = terms.baseline
        self._updates += 1
        return {
            "loss": float(terms.loss.detach()),
            "baseline": self._baseline,
            "mean_reward": terms.mean_reward,
            "mean_accuracy": float(sum(accuracies) / len(accuracies)),
            "mean_advantage": float(terms.advantages.mean()),
            "entropy": float(terms.bonus.detach()),
            "updates": float(self._updates),
        }

    # ----------------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: config, baseline, update count, and the modules' and Adam's tensors.

        The tensors are their dtype, shape and raw bytes in base64 (exact, :mod:`.state`; no pickle).
        Generators are the caller's and not included.
        """
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "baseline": self._baseline,
            "updates": self._updates,
            "tensors": encode_tensors(self.network, self.optimizer),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` exactly (after a JSON round trip, too).

        Raises
        ------
        ValueError
            If the state is malformed or was saved with another configuration (use :meth:`from_state_dict`
            then); the controller is unchanged.
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not an EAS controller state: expected 'format': {STATE_FORMAT!r}, but got {found!r}")
        if state.get("version") != STATE_VERSION:
            older = (" (version 1 held torch.save bytes, which are not read any more: start the search afresh)"
                     if state.get("version") == 1 else "")
            raise ValueError(f"EAS controller state version {state.get('version')!r} is not the supported "
                             f"{STATE_VERSION}{older}")
        config = parse_config(ControllerConfig, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the state was saved with another configuration (keys {diff} differ); "
                             "use EasController.from_state_dict(state)")
        baseline, updates = state.get("baseline"), state.get("updates")
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise ValueError(f"the state's 'baseline' must be a finite number, but got {baseline!r}")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"the state's 'updates' must be an int >= 0, but got {updates!r}")
        try:
            restore_tensors(self.network, self.optimizer, state.get("tensors"))
        except ValueError as exc:
            raise ValueError(f"the state's 'tensors' cannot be restored: {exc}") from None
        self._baseline = float(baseline)
        self._updates = updates

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> EasController:
        """A controller with the state's configuration, restored from it."""
        if not isinstance(state, Mapping):
            raise ValueError(f"not an EAS controller state: got {type(state).__name__}")
        controller = cls(parse_config(ControllerConfig, state.get("config")))
        controller.load_state_dict(state)
        return controller



def _check_generator(generator: Any) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, but got {type(generator).__name__}")
