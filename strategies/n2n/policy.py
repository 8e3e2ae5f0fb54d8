"""N2N's two-stage policy (layer removal, then layer shrinkage), learnt by REINFORCE; and uniform random actions.

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning*, ICLR 2018 (arXiv 1709.06030), Sec. 3 (see ``ALGORITHMS.md``):

* **Stage 1, layer removal**: a bidirectional LSTM reads the teacher's layers (each a descriptor: type, kernel,
  stride, padding, outputs; :mod:`.layers`) and outputs, for each layer, the probability of removing it
  (a Bernoulli per layer: keep or remove).
* **Stage 2, layer shrinkage**: a recurrent policy reads the remaining layers one after the other and picks a
  width ratio for each from a discrete set; the previous layer's choice is part of its input, so the choices
  are made in turn.
* **REINFORCE** over several students per update, with a moving-average baseline: for one episode of ``N``
  students with rewards ``R_i`` (:mod:`.reward`), ``b <- b + decay * (mean R - b)``, ``A_i = R_i - b`` and
  ``loss = -(1/N) sum_i A_i (log pi_1(removals_i) + log pi_2(ratios_i)) - entropy_weight * H``, one Adam step;
  the loss is :func:`~..eas.reinforce.reinforce_loss`, shared with EAS (two actor calls per student).

Deviations (**[dev]**):

* Masks instead of the paper's penalty: a layer whose removal would break the network (a shape change, the
  output layer) is never offered to stage 1, and a layer that cannot shrink is never offered to stage 2; masked
  decisions count neither in the log-probability nor in the entropy. The removal mask of each layer is
  computed along the sampled decisions (:func:`~.layers.apply_removals`), so every student is valid.
* The layer descriptor is embedded by a linear layer with tanh before each LSTM, and carries two flags (can
  be removed, can shrink); the previous ratio enters stage 2 as a learnt embedding (a start token for the first
  layer and after a masked one).
* By default both stages sample every student and learn from its reward together; the paper trains removal
  first, then shrinkage on its result (recalled, not checked): ``N2NConfig.removal_episodes`` runs that schedule.
* The baseline's form and its decay 0.95 are EAS' code's (the paper's decay is not recorded); an optional
  entropy bonus (default 1e-4) is ours.

:class:`N2NPolicy` is pure: its randomness is the ``torch.Generator`` it holds (seeded by ``config.seed``, saved in
:meth:`N2NPolicy.state_dict`), its parameters are initialised from ``config.seed`` without touching torch's global
generator, and its state is plain JSON (tensors as raw bytes, :mod:`..eas.state`; no pickle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nni_nas_ext.core.config import parse_config

from .._bookkeeping import json_copy
from ..eas.reinforce import optimiser_step, reinforce_loss
from ..eas.state import encode_tensors, restore_tensors, tensor_from_json, tensor_to_json
from .config import PolicyConfig
from .layers import FEATURES
from .trajectory import Trajectory

__all__ = ["N2NPolicy", "PolicyNetwork", "RandomActions"]

STATE_FORMAT = "n2n-policy"
STATE_VERSION = 1


class PolicyNetwork(nn.Module):
    """The two stages' modules: removal (embedding, BiLSTM, sigmoid head); shrinkage (embeddings, LSTM cell,
    softmax head)."""

    def __init__(self, config: PolicyConfig, n_features: int = len(FEATURES)) -> None:
        super().__init__()
        e, h, k = config.embedding_dim, config.hidden_size, len(config.ratios)
        self.removal_embed = nn.Linear(n_features, e)
        self.removal_lstm = nn.LSTM(e, h, batch_first=True, bidirectional=True)
        self.removal_head = nn.Linear(2 * h, 1)
        self.shrink_embed = nn.Linear(n_features, e)
        self.previous = nn.Embedding(k + 1, e)  # row k: no previous ratio (the first layer, or after a masked one)
        self.shrink_cell = nn.LSTMCell(2 * e, h)
        self.shrink_head = nn.Linear(h, k)

    @torch.no_grad()
    def initialise(self, generator: torch.Generator) -> None:
        """Every parameter uniform in ``[-1/sqrt(n), 1/sqrt(n)]`` (n: the fan-in or the LSTM's hidden size;
        embeddings: unit variance), drawn from ``generator`` in a fixed order."""
        for name, param in self.named_parameters():
            if name.startswith("previous."):
                bound = math.sqrt(3.0)
            elif name.startswith("removal_lstm."):
                bound = 1.0 / math.sqrt(self.removal_lstm.hidden_size)
            elif name.startswith("shrink_cell."):
                bound = 1.0 / math.sqrt(self.shrink_cell.hidden_size)
            else:
                module = cast(nn.Linear, self.get_submodule(name.rsplit(".", 1)[0]))
                bound = 1.0 / math.sqrt(module.in_features)
            nn.init.uniform_(param, -bound, bound, generator=generator)

    def removal_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(L,)`` logits of "remove" for the layers ``features`` ``(L, F)``."""
        out, _ = self.removal_lstm(torch.tanh(self.removal_embed(features)).unsqueeze(0))
        return self.removal_head(out[0]).squeeze(-1)

    def shrink_logits(self, feature: torch.Tensor, previous: int,
                      state: Optional[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, Any]:
        """Logits ``(K,)`` of the ratios for one layer, and the LSTM state after it."""
        x = torch.cat([torch.tanh(self.shrink_embed(feature)), self.previous(torch.tensor(previous))]).unsqueeze(0)
        h, c = self.shrink_cell(x, state)
        return self.shrink_head(h)[0], (h, c)


def _features(rows: Sequence[Sequence[float]]) -> torch.Tensor:
    return torch.tensor([list(r) for r in rows], dtype=torch.float32).reshape(len(rows), len(FEATURES))


class N2NPolicy:
    """N2N's two-stage policy (module docstring): sample removals and ratios, learn by REINFORCE.

    Parameters
    ----------
    config
        A :class:`PolicyConfig`, a mapping of its keys, or ``None`` for the defaults.
    """

    def __init__(self, config: Union[PolicyConfig, Mapping[str, Any], None] = None) -> None:
        if config is None or isinstance(config, Mapping):
            config = parse_config(PolicyConfig, config)
        elif not isinstance(config, PolicyConfig):
            raise TypeError(f"config must be a PolicyConfig or a mapping, but got {type(config).__name__}")
        self.config: PolicyConfig = config
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global generator
            self.network = PolicyNetwork(config)
        self.network.initialise(torch.Generator().manual_seed(config.seed))
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.baseline = 0.0
        self.updates = 0

    @property
    def ratios(self) -> tuple[float, ...]:
        """The ratio set stage 2 chooses from (its indices are the actions)."""
        return self.config.ratios

    # ---- acting ---------------------------------------------------------------------------------

    def removal_probabilities(self, features: Sequence[Sequence[float]]) -> list[float]:
        """P(remove) of each layer (stage 1), before masking."""
        with torch.no_grad():
            return torch.sigmoid(self.network.removal_logits(_features(features))).tolist()

    def removal_ask(self, features: Sequence[Sequence[float]], rng: np.random.Generator) -> Callable[[int], bool]:
        """A function ``ask(i)`` drawing the removal of layer ``i`` (asked only for unmasked layers, in order) from
        the policy's own generator (``rng``, the strategy's, is not used)."""
        p = self.removal_probabilities(features)
        return lambda i: bool(torch.rand((), generator=self.generator).item() < p[i])

    def shrink(self, features: Sequence[Sequence[float]], mask: Sequence[bool],
               rng: np.random.Generator) -> tuple[int, ...]:
        """Stage 2: a ratio index for each layer where ``mask`` holds (-1 elsewhere), drawn in turn."""
        out: list[int] = []
        previous, state = len(self.config.ratios), None
        rows = _features(features)
        with torch.no_grad():
            for t, ok in enumerate(mask):
                logits, state = self.network.shrink_logits(rows[t], previous, state)
                if not ok:
                    out.append(-1)
                    previous = len(self.config.ratios)
                    continue
                choice = int(torch.multinomial(logits.softmax(-1), 1, generator=self.generator).item())
                out.append(choice)
                previous = choice
        return tuple(out)

    # ---- learning -------------------------------------------------------------------------------

    def log_prob(self, trajectory: Trajectory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per stage ``(2,)``: the log-probability and entropy of the trajectory's decisions (with gradients)
        and the number of decisions (unmasked layers)."""
        trajectory.check(len(self.config.ratios))
        removal_mask = torch.tensor(trajectory.removal_mask, dtype=torch.bool)
        chosen = torch.tensor(trajectory.removals, dtype=torch.bool)
        logits = self.network.removal_logits(_features(trajectory.removal_features))
        yes, no = F.logsigmoid(logits), F.logsigmoid(-logits)
        logp_1 = torch.where(removal_mask, torch.where(chosen, yes, no), 0.0).sum()
        p = torch.sigmoid(logits)
        entropy_1 = torch.where(removal_mask, -(p * yes + (1 - p) * no), 0.0).sum()
        logp_2, entropy_2 = torch.zeros(()), torch.zeros(())
        previous, state = len(self.config.ratios), None
        rows = _features(trajectory.shrink_features)
        for t, choice in enumerate(trajectory.ratios):
            logits_t, state = self.network.shrink_logits(rows[t], previous, state)
            if choice < 0:
                previous = len(self.config.ratios)
                continue
            logp_t = logits_t.log_softmax(-1)
            logp_2 = logp_2 + logp_t[choice]
            entropy_2 = entropy_2 - (logp_t.exp() * logp_t).sum()
            previous = choice
        count = torch.tensor([float(sum(trajectory.removal_mask)), float(sum(c >= 0 for c in trajectory.ratios))])
        return torch.stack([logp_1, logp_2]), torch.stack([entropy_1, entropy_2]), count

    def learn(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> dict[str, Any]:
        """One REINFORCE step on an episode (module docstring); returns its figures.

        Raises
        ------
        ValueError
            For no students, mismatched lengths, a non-finite reward or a malformed trajectory; the policy is
            unchanged then.
        """
        trajectories, rewards = list(trajectories), [float(r) for r in rewards]
        if not trajectories or len(trajectories) != len(rewards):
            raise ValueError(f"learn needs one reward per trajectory and at least one of each, but got "
                             f"{len(trajectories)} trajectories and {len(rewards)} rewards")
        if not all(math.isfinite(r) for r in rewards):
            raise ValueError(f"rewards must be finite numbers, but got {rewards}")
        parts = [self.log_prob(t) for t in trajectories]  # validates every trajectory before anything changes
        logp = torch.cat([p[0] for p in parts])
        entropy = torch.cat([p[1] for p in parts])
        count = torch.cat([p[2] for p in parts])
        owner = torch.arange(len(trajectories)).repeat_interleave(2)
        terms = reinforce_loss(logp, entropy, count, owner, rewards, self.baseline, self.config.baseline_decay,
                               self.config.entropy_weight)
        optimiser_step(self.optimizer, terms.loss)
        self.baseline = terms.baseline
        self.updates += 1
        return json_copy({"loss": float(terms.loss.detach()), "baseline": self.baseline,
                          "mean_reward": terms.mean_reward, "mean_advantage": float(terms.advantages.mean()),
                          "entropy": float(terms.bonus.detach()), "updates": self.updates})

    # ---- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: config, baseline, updates, the generator and the modules' and Adam's tensors (exact)."""
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.config.to_dict(),
                "baseline": self.baseline, "updates": self.updates,
                "generator": tensor_to_json(self.generator.get_state()),
                "tensors": encode_tensors(self.network, self.optimizer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` exactly (after a JSON round trip too); ``ValueError`` naming what is wrong."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not an N2N policy state: expected 'format': {STATE_FORMAT!r}, but got {found!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"N2N policy state version {state.get('version')!r} is not the supported {STATE_VERSION}")
        config = parse_config(PolicyConfig, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the policy state was saved with another configuration (keys {diff} differ); build "
                             "the policy with the state's configuration")
        baseline, updates = state.get("baseline"), state.get("updates")
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise ValueError(f"the policy state's 'baseline' must be a finite number, but got {baseline!r}")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"the policy state's 'updates' must be an int >= 0, but got {updates!r}")
        generator = tensor_from_json(state.get("generator"))
        if generator.dtype != torch.uint8:
            raise ValueError(f"the policy state's 'generator' must be a uint8 tensor, but got {generator.dtype}")
        try:
            restore_tensors(self.network, self.optimizer, state.get("tensors"))
        except ValueError as exc:
            raise ValueError(f"the policy state's 'tensors' cannot be restored: {exc}") from None
        self.generator.set_state(generator)
        self.baseline, self.updates = float(baseline), updates


class RandomActions:
    """Uniform actions, no learning (:class:`~.strategy.N2NRandom`): every unmasked layer is removed with
    probability 1/2, every unmasked ratio is drawn uniformly from the set; draws from the strategy's generator."""

    def __init__(self, ratios: Sequence[float]) -> None:
        self._ratios = tuple(ratios)

    @property
    def ratios(self) -> tuple[float, ...]:
        return self._ratios

    def removal_ask(self, features: Sequence[Sequence[float]], rng: np.random.Generator) -> Callable[[int], bool]:
        return lambda i: bool(rng.random() < 0.5)

    def shrink(self, features: Sequence[Sequence[float]], mask: Sequence[bool],
               rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(rng.integers(len(self._ratios))) if ok else -1 for ok in mask)

    def learn(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
