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
tokens, masks and blocks, and actions into morphisms.

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

import base64
import binascii
import copy
import io
import math
import numbers
import pickle
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import Config, ConfigError, option, parse_config

__all__ = [
    "MAX_ACCURACY", "Action", "ControllerConfig", "DeeperAction", "EasController", "Step", "Trajectory",
    "WiderAction", "action_from_dict", "accuracy_reward",
]

STATE_FORMAT = "eas-controller"
STATE_VERSION = 1

#: Accuracies are clipped to at most this before ``tan(acc * pi / 2)`` (infinite at 1). [dev]: not in the paper.
MAX_ACCURACY = 0.999


def require_odd_kernels(config_name: str, kernels: Sequence[int]) -> None:
    """Net2Deeper kernels must be odd: an identity kernel needs a centre."""
    even = [k for k in kernels if k % 2 == 0]
    if even:
        raise ConfigError(f"{config_name}: 'kernels' must hold odd sizes only (an identity kernel needs a "
                          f"centre), but got {list(kernels)} with even {even}; use e.g. [1, 3, 5]",
                          key="kernels", value=list(kernels))


@dataclass(frozen=True)
class ControllerConfig(Config):
    """Configuration of :class:`EasController`.

    The defaults are the paper's values (Cai et al. 2018, Sec. 4, and the authors' code).
    """

    config_name: ClassVar[str] = "eas controller"

    embedding_dim: int = option(
        16, minimum=1, maximum=4096,
        doc="size of the layer-token embedding and of the deeper decoder's inputs (paper: 16)")
    hidden_size: int = option(
        50, minimum=1, maximum=4096,
        doc="units per direction of the one-layer bidirectional LSTM encoder; the deeper decoder has twice "
            "as many (paper: 50)")
    kernels: tuple[int, ...] = option(
        (1, 3, 5), minimum=1, maximum=31, non_empty=True, unique=True,
        doc="odd kernel sizes the Net2Deeper actor chooses from (paper: 1, 3, 5)")
    lr: float = option(
        2e-3, minimum=0.0, maximum=1.0,
        doc="learning rate of the controller's Adam optimiser (paper: 0.002)")
    baseline_decay: float = option(
        0.95, minimum=0.0, maximum=1.0,
        doc="weight of an episode's mean reward in the baseline, b <- b + baseline_decay * (mean(R) - b) "
            "(paper code: 0.95)")
    entropy_weight: float = option(
        1e-5, minimum=0.0, maximum=1.0,
        doc="weight of the entropy bonus in the controller's loss (paper: 1e-5)")
    vocab_size: int = option(
        256, minimum=1, maximum=1_000_000,
        doc="buckets layer tokens are hashed into (not in the paper, which enumerates its tokens)")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the parameter initialisation (sampling uses the generator given to each call)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_odd_kernels(self.config_name, self.kernels)


# --------------------------------------------------------------------------------------------------
# Actions and trajectories (plain values, JSON round trip)
# --------------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class WiderAction:
    """A Net2Wider decision: ``decisions[i]`` is whether layer ``i`` (token ``i``) is widened."""

    decisions: tuple[bool, ...]

    def __post_init__(self) -> None:
        if isinstance(self.decisions, (str, bytes)) or not isinstance(self.decisions, Sequence):
            raise TypeError(f"WiderAction.decisions must be a sequence of bools, but got {self.decisions!r}")
        bad = [d for d in self.decisions if not isinstance(d, bool)]
        if bad:
            raise TypeError(f"WiderAction.decisions must hold bools only, but got {bad[0]!r}")
        object.__setattr__(self, "decisions", tuple(self.decisions))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "wider", "decisions": list(self.decisions)}

    @classmethod
    def from_dict(cls, data: Any) -> WiderAction:
        action = action_from_dict(data)
        if not isinstance(action, cls):
            raise ValueError(f"expected a wider action, but got {data!r}")
        return action


@dataclass(frozen=True)
class DeeperAction:
    """A Net2Deeper decision: insert an identity layer with kernel ``kernel`` after token ``layer``.

    ``block`` indexes the ``blocks`` the actor was given; ``layer`` is an index into the tokens (one of
    ``blocks[block]``); ``kernel`` is the kernel size itself (one of ``ControllerConfig.kernels``).
    """

    block: int
    layer: int
    kernel: int

    def __post_init__(self) -> None:
        for name in ("block", "layer", "kernel"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise TypeError(f"DeeperAction.{name} must be an int >= 0, but got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "deeper", "block": self.block, "layer": self.layer, "kernel": self.kernel}

    @classmethod
    def from_dict(cls, data: Any) -> DeeperAction:
        action = action_from_dict(data)
        if not isinstance(action, cls):
            raise ValueError(f"expected a deeper action, but got {data!r}")
        return action


Action = Union[WiderAction, DeeperAction]


def action_from_dict(data: Any) -> Action:
    """A :class:`WiderAction` or :class:`DeeperAction` from its ``to_dict`` form (``kind`` tells which).

    Raises
    ------
    ValueError
        For anything else, naming what was wrong.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"an action must be a JSON object, but got {type(data).__name__}")
    kind = data.get("kind")
    keys = {"wider": {"kind", "decisions"}, "deeper": {"kind", "block", "layer", "kernel"}}
    if kind not in keys:
        raise ValueError(f"an action's 'kind' must be 'wider' or 'deeper', but got {kind!r}")
    if set(data) != keys[kind]:
        raise ValueError(f"a {kind} action has exactly the keys {sorted(keys[kind])}, but got {sorted(map(str, data))}")
    try:
        if kind == "wider":
            decisions = data["decisions"]
            if not isinstance(decisions, list):
                raise TypeError(f"'decisions' must be a list, but got {decisions!r}")
            return WiderAction(tuple(decisions))
        return DeeperAction(data["block"], data["layer"], data["kernel"])
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _check_tokens(tokens: Any) -> tuple[str, ...]:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise ValueError(f"tokens must be a sequence of strings (one per layer), but got {tokens!r}")
    tokens = tuple(tokens)
    if not tokens:
        raise ValueError("tokens must not be empty: the network needs at least one layer")
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise ValueError(f"tokens must be strings, but got {bad[0]!r}")
    return tokens


def _check_mask(mask: Any, n_tokens: int) -> tuple[bool, ...]:
    if isinstance(mask, (str, bytes)) or not isinstance(mask, Sequence):
        raise ValueError(f"mask must be a sequence of bools (one per token), but got {mask!r}")
    mask = tuple(mask)
    if len(mask) != n_tokens:
        raise ValueError(f"mask must have one entry per token (len(mask) == {n_tokens}), but has {len(mask)}")
    bad = [m for m in mask if not isinstance(m, bool)]
    if bad:
        raise ValueError(f"mask must hold bools only, but got {bad[0]!r}")
    return mask


def _check_blocks(blocks: Any, n_tokens: int) -> tuple[tuple[int, ...], ...]:
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
        raise ValueError(f"blocks must be a sequence of sequences of token indices, but got {blocks!r}")
    out = []
    seen: set[int] = set()
    for k, block in enumerate(blocks):
        if isinstance(block, (str, bytes)) or not isinstance(block, Sequence):
            raise ValueError(f"blocks[{k}] must be a sequence of token indices, but got {block!r}")
        for j in block:
            if not _is_int(j) or not 0 <= j < n_tokens:
                raise ValueError(f"blocks[{k}] must hold token indices in [0, {n_tokens - 1}], but holds {j!r}")
            if j in seen:
                raise ValueError(f"a token index may appear in one block only, but {j} appears twice (blocks[{k}])")
            seen.add(j)
        out.append(tuple(block))
    if not seen:
        raise ValueError(f"no block has a layer to deepen after (blocks={[list(b) for b in out]}); "
                         "give at least one non-empty block")
    return tuple(out)


def _check_action(action: Any, tokens: tuple[str, ...], mask: tuple[bool, ...] | None,
                  blocks: tuple[tuple[int, ...], ...] | None) -> None:
    """The action is possible under the mask (wider) or the blocks (deeper); the kernel is checked later."""
    if isinstance(action, WiderAction):
        if mask is None:
            raise ValueError("a wider action needs its mask")
        if len(action.decisions) != len(tokens):
            raise ValueError(f"a wider action has one decision per token ({len(tokens)}), "
                             f"but got {len(action.decisions)}")
        masked = [i for i, (d, m) in enumerate(zip(action.decisions, mask)) if d and not m]
        if masked:
            raise ValueError(f"a wider action cannot widen masked layers, but widens {masked}")
    elif isinstance(action, DeeperAction):
        if blocks is None:
            raise ValueError("a deeper action needs its blocks")
        if action.block >= len(blocks) or not blocks[action.block]:
            raise ValueError(f"a deeper action's block must index a non-empty block of {len(blocks)}, "
                             f"but got block {action.block}")
        if action.layer not in blocks[action.block]:
            raise ValueError(f"a deeper action's layer must be in its block {list(blocks[action.block])}, "
                             f"but got layer {action.layer}")
    else:
        raise TypeError(f"an action must be a WiderAction or a DeeperAction, but got {type(action).__name__}")


@dataclass(frozen=True)
class Step:
    """One actor call made while building a child: the network's tokens, the action, and its mask or blocks.

    A wider step carries ``mask`` (one bool per token) and no ``blocks``; a deeper step carries ``blocks``
    (token indices per block) and no ``mask``. Construction checks that the action is possible under them.
    """

    tokens: tuple[str, ...]
    action: Action
    mask: Optional[tuple[bool, ...]] = None
    blocks: Optional[tuple[tuple[int, ...], ...]] = None

    def __post_init__(self) -> None:
        tokens = _check_tokens(self.tokens)
        mask = blocks = None
        if isinstance(self.action, WiderAction):
            if self.blocks is not None:
                raise ValueError("a wider step has a mask, not blocks")
            mask = _check_mask(self.mask, len(tokens)) if self.mask is not None else None
        elif isinstance(self.action, DeeperAction):
            if self.mask is not None:
                raise ValueError("a deeper step has blocks, not a mask")
            blocks = _check_blocks(self.blocks, len(tokens)) if self.blocks is not None else None
        _check_action(self.action, tokens, mask, blocks)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "blocks", blocks)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tokens": list(self.tokens), "action": self.action.to_dict()}
        if self.mask is not None:
            out["mask"] = list(self.mask)
        if self.blocks is not None:
            out["blocks"] = [list(b) for b in self.blocks]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Step:
        if not isinstance(data, Mapping):
            raise ValueError(f"a trajectory step must be a JSON object, but got {type(data).__name__}")
        extra = set(data) - {"tokens", "action", "mask", "blocks"}
        if extra or "tokens" not in data or "action" not in data:
            raise ValueError(f"a trajectory step has the keys tokens, action and mask or blocks, but got "
                             f"{sorted(map(str, data))}")
        mask, blocks = data.get("mask"), data.get("blocks")
        if blocks is not None:
            if not isinstance(blocks, list) or not all(isinstance(b, list) for b in blocks):
                raise ValueError(f"a step's 'blocks' must be a list of lists, but got {blocks!r}")
            blocks = tuple(tuple(b) for b in blocks)
        if mask is not None and not isinstance(mask, list):
            raise ValueError(f"a step's 'mask' must be a list, but got {mask!r}")
        tokens = data["tokens"]
        if not isinstance(tokens, list):
            raise ValueError(f"a step's 'tokens' must be a list, but got {tokens!r}")
        try:
            return cls(tuple(tokens), action_from_dict(data["action"]),
                       tuple(mask) if mask is not None else None, blocks)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Trajectory:
    """The actor calls (wider and deeper, in order) that produced one child network."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if isinstance(self.steps, (str, bytes)) or not isinstance(self.steps, Sequence):
            raise TypeError(f"Trajectory.steps must be a sequence of Step, but got {self.steps!r}")
        bad = [s for s in self.steps if not isinstance(s, Step)]
        if bad:
            raise TypeError(f"Trajectory.steps must hold Step values, but got {type(bad[0]).__name__}")
        object.__setattr__(self, "steps", tuple(self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Any) -> Trajectory:
        if not isinstance(data, Mapping) or set(data) != {"steps"} or not isinstance(data["steps"], list):
            raise ValueError(f"a trajectory must be a JSON object {{'steps': [...]}}, but got {data!r:.80}")
        return cls(tuple(Step.from_dict(s) for s in data["steps"]))


# --------------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------------


class _ControllerNetwork(nn.Module):
    """Encoder, Net2Wider head and Net2Deeper decoder (Cai et al. 2018, Sec. 3)."""

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        e, h = config.embedding_dim, config.hidden_size
        d = 2 * h  # encoder outputs and state: both directions concatenated
        self.embedding = nn.Embedding(config.vocab_size, e)
        self.encoder = nn.LSTM(e, h, num_layers=1, batch_first=True, bidirectional=True)
        self.wider_head = nn.Linear(d, 1)
        self.decoder = nn.LSTMCell(e, d)
        self.decoder_start = nn.Parameter(torch.empty(e))
        self.block_query = nn.Linear(d, d)
        self.layer_query = nn.Linear(d, d)
        self.block_input = nn.Linear(d, e)
        self.layer_input = nn.Linear(d, e)
        self.kernel_head = nn.Linear(d, len(config.kernels))

    @torch.no_grad()
    def initialise(self, generator: torch.Generator) -> None:
        """Every parameter drawn from ``generator``, in a fixed order (see the module docstring)."""
        unit = math.sqrt(3.0)
        for name, param in self.named_parameters():
            if name.startswith("embedding.") or name == "decoder_start":
                nn.init.uniform_(param, -unit, unit, generator=generator)
            elif name.startswith(("encoder.", "decoder.")):
                bound = 1.0 / math.sqrt(self.encoder.hidden_size if name.startswith("encoder.")
                                        else self.decoder.hidden_size)
                nn.init.uniform_(param, -bound, bound, generator=generator)
            else:  # linear layers: weight and bias by the fan-in of the layer
                module = self.get_submodule(name.rsplit(".", 1)[0])
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(param, -bound, bound, generator=generator)


def _masked_log_softmax(scores: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (``-inf`` where not valid) and entropies, row-wise; every row has a valid entry."""
    logp = scores.masked_fill(~valid, float("-inf")).log_softmax(dim=-1)
    safe = logp.masked_fill(~valid, 0.0)
    entropy = -(logp.exp() * safe).sum(dim=-1)
    return logp, entropy


class EasController:
    """The EAS meta-controller (Cai et al. 2018, Sec. 3): sample Net2Wider / Net2Deeper actions, learn by REINFORCE.

    Parameters
    ----------
    config
        A :class:`ControllerConfig`, a mapping of its keys (validated by
        :func:`~nni_nas_ext.strategies.config.parse_config`), or ``None`` for the paper's defaults.

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
            self.network = _ControllerNetwork(config)
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

    def _encode(self, sequences: Sequence[tuple[str, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder outputs ``(B, L, 2H)`` (zero past each length) and final state ``h, c`` ``(B, 2H)``."""
        lengths = [len(s) for s in sequences]
        ids = torch.zeros(len(sequences), max(lengths), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, :len(seq)] = torch.tensor([self.token_id(t) for t in seq], dtype=torch.long)
        packed = pack_padded_sequence(self.network.embedding(ids), torch.tensor(lengths), batch_first=True,
                                      enforce_sorted=False)
        out, (h_n, c_n) = self.network.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=max(lengths))
        # h_n[0]: forward direction after the last token; h_n[1]: backward direction after the first token.
        return out, torch.cat([h_n[0], h_n[1]], dim=1), torch.cat([c_n[0], c_n[1]], dim=1)

    def _wider_forward(self, out: torch.Tensor, masks: Sequence[tuple[bool, ...]],
                       decisions: Optional[Sequence[tuple[bool, ...]]], generator: Optional[torch.Generator],
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies, unmasked counts ``(B,)`` and decisions ``(B, L)`` (sampled if not given)."""
        batch, length = out.shape[:2]
        valid = torch.zeros(batch, length, dtype=torch.bool)
        for i, mask in enumerate(masks):
            valid[i, :len(mask)] = torch.tensor(mask, dtype=torch.bool)
        logits = self.network.wider_head(out).squeeze(-1)  # (B, L)
        if decisions is None:
            uniform = torch.rand(batch, length, generator=generator, dtype=logits.dtype)
            chosen = (uniform < torch.sigmoid(logits)) & valid
        else:
            chosen = torch.zeros(batch, length, dtype=torch.bool)
            for i, d in enumerate(decisions):
                chosen[i, :len(d)] = torch.tensor(d, dtype=torch.bool)
        log_yes, log_no = F.logsigmoid(logits), F.logsigmoid(-logits)
        logp = torch.where(valid, torch.where(chosen, log_yes, log_no), 0.0).sum(dim=1)
        p = torch.sigmoid(logits)
        entropy = torch.where(valid, -(p * log_yes + (1 - p) * log_no), 0.0).sum(dim=1)
        return logp, entropy, valid.sum(dim=1).to(logp.dtype), chosen

    def _deeper_forward(self, out: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                        blocks_list: Sequence[tuple[tuple[int, ...], ...]],
                        actions: Optional[Sequence[DeeperAction]], generator: Optional[torch.Generator],
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies ``(B,)``, and the ``(block, layer, kernel index)`` choices ``(B, 3)``.

        The three decisions are made in turn by the decoder (Cai et al. 2018, Sec. 3); given ``actions``
        they are teacher-forced, otherwise sampled from ``generator``.
        """
        net = self.network
        batch, length, dim = out.shape
        scale = 1.0 / math.sqrt(dim)
        n_blocks = max(len(b) for b in blocks_list)
        member = torch.zeros(batch, n_blocks, length, dtype=out.dtype)
        for i, blocks in enumerate(blocks_list):
            for k, block in enumerate(blocks):
                member[i, k, list(block)] = 1.0
        sizes = member.sum(dim=-1)
        features = member @ out / sizes.clamp(min=1.0).unsqueeze(-1)  # (B, n_blocks, 2H): mean per block
        rows = torch.arange(batch)
        if actions is not None:
            given = torch.tensor([[a.block, a.layer, self.config.kernels.index(a.kernel)] for a in actions],
                                 dtype=torch.long)

        def choose(logp: torch.Tensor, t: int) -> torch.Tensor:
            if actions is not None:
                return given[:, t]
            return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)

        state = net.decoder(net.decoder_start.expand(batch, -1), (h, c))
        scores = (features @ net.block_query(state[0]).unsqueeze(-1)).squeeze(-1) * scale
        logp_block, ent_block = _masked_log_softmax(scores, sizes > 0)
        block = choose(logp_block, 0)

        state = net.decoder(net.block_input(features[rows, block]), state)
        scores = (out @ net.layer_query(state[0]).unsqueeze(-1)).squeeze(-1) * scale
        logp_layer, ent_layer = _masked_log_softmax(scores, member[rows, block] > 0)
        layer = choose(logp_layer, 1)

        state = net.decoder(net.layer_input(out[rows, layer]), state)
        logp_kernel = net.kernel_head(state[0]).log_softmax(dim=-1)
        ent_kernel = -(logp_kernel.exp() * logp_kernel).sum(dim=-1)
        kernel = choose(logp_kernel, 2)

        logp = logp_block[rows, block] + logp_layer[rows, layer] + logp_kernel[rows, kernel]
        return logp, ent_block + ent_layer + ent_kernel, torch.stack([block, layer, kernel], dim=1)

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
            w_logp, w_entropy, w_count, _ = self._wider_forward(
                out[wider], [steps[i].mask for i in wider],  # type: ignore[misc]
                [steps[i].action.decisions for i in wider], None)  # type: ignore[union-attr]
            index = torch.tensor(wider, dtype=torch.long)
            logp = logp.index_add(0, index, w_logp)
            entropy = entropy.index_add(0, index, w_entropy)
            count = count.index_add(0, index, w_count)
        if deeper:
            d_logp, d_entropy, _ = self._deeper_forward(
                out[deeper], h[deeper], c[deeper], [steps[i].blocks for i in deeper],  # type: ignore[misc]
                [steps[i].action for i in deeper], None)  # type: ignore[misc]
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
        tokens = _check_tokens(tokens)
        mask = _check_mask(mask, len(tokens))
        _check_generator(generator)
        with torch.no_grad():
            out, _, _ = self._encode([tokens])
            _, _, _, chosen = self._wider_forward(out, [mask], None, generator)
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
        tokens = _check_tokens(tokens)
        checked = _check_blocks(blocks, len(tokens))
        _check_generator(generator)
        with torch.no_grad():
            out, h, c = self._encode([tokens])
            _, _, chosen = self._deeper_forward(out, h, c, [checked], None, generator)
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
        step = Step(_check_tokens(tokens), action,
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

        mean_reward = sum(rewards_r) / len(rewards_r)
        baseline = self._baseline + self.config.baseline_decay * (mean_reward - self._baseline)
        advantages = torch.tensor(rewards_r, dtype=torch.float64) - baseline
        adv = advantages.to(logp.dtype)
        policy = -(adv[owner] * logp).sum() / len(trajectories)
        per_decision = torch.where(count > 0, entropy / count.clamp(min=1.0), 0.0)
        bonus = per_decision.mean() if len(steps) else torch.zeros(())
        loss = policy - self.config.entropy_weight * bonus

        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
        self.optimizer.step()
        self._baseline = float(baseline)
        self._updates += 1
        return {
            "loss": float(loss.detach()),
            "baseline": self._baseline,
            "mean_reward": float(mean_reward),
            "mean_accuracy": float(sum(accuracies) / len(accuracies)),
            "mean_advantage": float(advantages.mean()),
            "entropy": float(bonus.detach()),
            "updates": float(self._updates),
        }

    # ----------------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: config, baseline, update count, and the modules' and Adam's tensors.

        The tensors are ``torch.save`` bytes in base64 (exact). Generators are the caller's and not included.
        """
        buffer = io.BytesIO()
        torch.save({"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict()}, buffer)
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "baseline": self._baseline,
            "updates": self._updates,
            "tensors": base64.b64encode(buffer.getvalue()).decode("ascii"),
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
            raise ValueError(f"EAS controller state version {state.get('version')!r} is not the supported "
                             f"{STATE_VERSION}")
        config = parse_config(ControllerConfig, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the state was saved with another configuration (keys {diff} differ); "
                             "use EasController.from_state_dict(state)")
        baseline, updates, encoded = state.get("baseline"), state.get("updates"), state.get("tensors")
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise ValueError(f"the state's 'baseline' must be a finite number, but got {baseline!r}")
        if not _is_int(updates) or updates < 0:
            raise ValueError(f"the state's 'updates' must be an int >= 0, but got {updates!r}")
        if not isinstance(encoded, str):
            raise ValueError(f"the state's 'tensors' must be a base64 string, but got {type(encoded).__name__}")
        try:
            tensors = torch.load(io.BytesIO(base64.b64decode(encoded, validate=True)), weights_only=True)
            if not isinstance(tensors, dict) or set(tensors) != {"network", "optimizer"}:
                raise ValueError("expected the keys 'network' and 'optimizer'")
            saved_network = {k: v.clone() for k, v in self.network.state_dict().items()}
            saved_optimizer = copy.deepcopy(self.optimizer.state_dict())
            try:
                self.network.load_state_dict(tensors["network"])
                self.optimizer.load_state_dict(tensors["optimizer"])
            except Exception:
                self.network.load_state_dict(saved_network)
                self.optimizer.load_state_dict(saved_optimizer)
                raise
        except (binascii.Error, pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError,
                EOFError) as exc:
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


def accuracy_reward(accuracy: float) -> float:
    """``tan(min(accuracy, MAX_ACCURACY) * pi / 2)``: the paper's reward transform (Sec. 4), clipped ([dev]).

    Raises
    ------
    ValueError
        If ``accuracy`` is not a finite number in ``[0, 1]``.
    """
    if isinstance(accuracy, bool) or not isinstance(accuracy, numbers.Real) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"an accuracy must be a number in [0, 1], but got {accuracy!r}")
    return math.tan(min(float(accuracy), MAX_ACCURACY) * math.pi / 2)


def _check_generator(generator: Any) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, but got {type(generator).__name__}")
