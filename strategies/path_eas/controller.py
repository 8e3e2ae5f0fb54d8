"""Path-level EAS' meta-controller: a tree-structured bidirectional LSTM over the cell tree, trained by REINFORCE.

Cai, Yang, Zhang, Han, Yu, *Path-Level Network Transformation for Efficient Architecture Search*, ICML 2018,
sec. 3.3: the cell tree is encoded bottom-up and then top-down, so that every node's state sees its whole
subtree and its whole context; decisions are sampled from each leaf's two states. Here:

* **bottom-up**: a child-sum tree LSTM (Tai, Socher, Manning, ACL 2015, eq. 2-8) whose input at a node is the
  embedding of its token (a leaf's primitive, or ``add``/``concat``/``seq``);
* **top-down**: an ``LSTMCell`` from a node's state to each child, fed the child's bottom-up state;
* a leaf's features are ``[h_up, h_down]``; two linear heads give the *insert* logits (``none`` or a primitive)
  and the *expand* logits (``none``, ``add<n>``, ``concat<n>``), masked by :func:`~.decisions.leaf_options`.

REINFORCE as EAS (the same authors; :mod:`nni_nas_ext.strategies.eas.reinforce`): reward ``tan(acc * pi / 2)``,
moving-average baseline, entropy bonus, Adam. **Deviations**: the child-sum cell (the paper's exact tree-LSTM
variant is not recorded in ``ALGORITHMS.md``); decisions stop after ``max_edits`` transformations
(:mod:`.decisions`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nni_nas_ext.core.config import parse_config

from ..eas.reinforce import accuracy_reward, optimiser_step, reinforce_loss
from ..eas.state import encode_tensors, restore_tensors
from .config import PathEasConfig
from .decisions import LeafOptions, TreeTrajectory, draw_decisions, expand_choices, insert_choices

__all__ = ["TOKENS", "TreeController"]

STATE_FORMAT = "nni-nas-ext/path-eas-controller"
STATE_VERSION = 1
#: The node tokens the embedding knows; anything else is ``<other>``.
TOKENS = ("<other>", "identity", "bn", "relu", "add", "concat", "seq", "conv1x1", "conv3x3", "conv5x5", "conv7x7",
          "sepconv3x3", "sepconv5x5", "sepconv7x7", "gconv3x3", "maxpool3x3", "avgpool3x3")
_INDEX = {t: i for i, t in enumerate(TOKENS)}


class _Network(nn.Module):
    def __init__(self, embedding: int, hidden: int, n_insert: int, n_expand: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(len(TOKENS), embedding)
        self.w_iou = nn.Linear(embedding, 3 * hidden)
        self.u_iou = nn.Linear(hidden, 3 * hidden, bias=False)
        self.w_f = nn.Linear(embedding, hidden)
        self.u_f = nn.Linear(hidden, hidden, bias=False)
        self.down = nn.LSTMCell(hidden, hidden)
        self.insert_head = nn.Linear(2 * hidden, n_insert)
        self.expand_head = nn.Linear(2 * hidden, n_expand)

    def up(self, token: str, children: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Child-sum tree-LSTM cell (Tai et al. 2015): ``(h, c)`` of a node from its token and its children."""
        x = self.embed(torch.tensor(_INDEX.get(token, 0)))
        h_sum = sum((h for h, _ in children), torch.zeros(self.hidden))
        i, o, u = (self.w_iou(x) + self.u_iou(h_sum)).chunk(3)
        c = torch.sigmoid(i) * torch.tanh(u)
        for h_k, c_k in children:
            c = c + torch.sigmoid(self.w_f(x) + self.u_f(h_k)) * c_k
        return torch.sigmoid(o) * torch.tanh(c), c

    def leaf_features(self, tree: Any) -> list[torch.Tensor]:
        """``[h_up, h_down]`` of every leaf of a tree signature, left to right."""
        def encode(node: Any) -> Any:
            token, kids = _split(node)
            encoded = [encode(k) for k in kids]
            state = self.up(token, [e[1] for e in encoded])
            return (token, state, encoded)

        root = encode(tree)
        out: list[torch.Tensor] = []
        zero = torch.zeros(1, self.hidden)

        def descend(node: Any, down: tuple[torch.Tensor, torch.Tensor]) -> None:
            _, (h_up, _), kids = node
            h, c = self.down(h_up.unsqueeze(0), down)
            if not kids:
                out.append(torch.cat([h_up, h.squeeze(0)]))
            for kid in kids:
                descend(kid, (h, c))

        descend(root, (zero, zero))
        return out


def _split(node: Any) -> tuple[str, list[Any]]:
    """A tree signature's node: its token and its children (:meth:`nni_nas_ext.core.cells.Leaf.signature`...)."""
    if isinstance(node, str):
        return node, []
    if isinstance(node, Mapping) and len(node) == 1:
        (token, kids), = node.items()
        if isinstance(kids, list) and kids:
            return str(token), kids
    raise ValueError(f"not a cell tree signature: {node!r:.200}")


def _masked(logits: torch.Tensor, mask: Sequence[bool]) -> torch.distributions.Categorical:
    if len(mask) != len(logits) or not any(mask):
        raise ValueError(f"a mask must have {len(logits)} entries with at least one allowed, but got {list(mask)}")
    allowed = torch.tensor(list(mask))
    return torch.distributions.Categorical(logits=logits.masked_fill(~allowed, -math.inf))


class TreeController:
    """The meta-controller: samples a child's decisions on a tree, learns from an episode's rewards."""

    def __init__(self, config: PathEasConfig) -> None:
        self.config = config
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global generator: seed it here
            torch.manual_seed(config.seed)  # and leave it as it was (sampling uses the caller's generator)
            self.network = _Network(config.controller_embedding_dim, config.controller_hidden_size,
                                    len(insert_choices(config)), len(expand_choices(config)))
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.controller_lr)
        self._baseline = 0.0
        self._updates = 0

    def decide(self, tree: Any, options: Sequence[LeafOptions], generator: torch.Generator) -> TreeTrajectory:
        """Sample decisions leaf by leaf (insert, then expand) until ``max_edits`` are not ``none``."""
        with torch.no_grad():
            features = self.network.leaf_features(tree)
        if len(features) != len(options):
            raise ValueError(f"the tree has {len(features)} leaves but {len(options)} leaf options were given")
        heads = {"insert": self.network.insert_head, "expand": self.network.expand_head}

        def sample(position: int, kind: str, mask: tuple[bool, ...]) -> int:
            with torch.no_grad():
                probs = _masked(heads[kind](features[position]), mask).probs
            return int(torch.multinomial(probs, 1, generator=generator))

        return TreeTrajectory(tree, draw_decisions(options, self.config.max_edits, sample))

    def _evaluate(self, trajectory: TreeTrajectory) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of each decision of a trajectory, with gradients."""
        features = self.network.leaf_features(trajectory.tree)
        logps, entropies = [], []
        for d in trajectory.decisions:
            if d.leaf >= len(features):
                raise ValueError(f"a decision names leaf {d.leaf} of a tree with {len(features)} leaves")
            head = self.network.insert_head if d.kind == "insert" else self.network.expand_head
            dist = _masked(head(features[d.leaf]), d.mask)
            logps.append(dist.log_prob(torch.tensor(d.choice)))
            entropies.append(dist.entropy())
        if not logps:
            return torch.zeros(0), torch.zeros(0)
        return torch.stack(logps), torch.stack(entropies)

    def update(self, trajectories: Sequence[TreeTrajectory], accuracies: Sequence[float]) -> dict[str, float]:
        """One REINFORCE step on an episode (``tan(acc * pi / 2)`` rewards, the moving-average baseline)."""
        trajectories, accuracies = list(trajectories), list(accuracies)
        if not trajectories or len(trajectories) != len(accuracies):
            raise ValueError(f"update needs one accuracy per trajectory and at least one of each, but got "
                             f"{len(trajectories)} trajectories and {len(accuracies)} accuracies")
        rewards = [accuracy_reward(a) for a in accuracies]
        parts = [self._evaluate(t) for t in trajectories]
        logp = torch.cat([p[0] for p in parts])
        entropy = torch.cat([p[1] for p in parts])
        owner = torch.tensor([i for i, p in enumerate(parts) for _ in range(len(p[0]))], dtype=torch.long)
        terms = reinforce_loss(logp, entropy, torch.ones_like(logp), owner, rewards, self._baseline,
                               self.config.controller_baseline_decay, self.config.controller_entropy_weight)
        optimiser_step(self.optimizer, terms.loss)
        self._baseline = terms.baseline
        self._updates += 1
        return {"loss": float(terms.loss.detach()), "baseline": self._baseline, "mean_reward": terms.mean_reward,
                "mean_accuracy": float(sum(accuracies) / len(accuracies)),
                "mean_advantage": float(terms.advantages.mean()), "entropy": float(terms.bonus.detach()),
                "updates": float(self._updates)}

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: config, baseline, update count, the network's and Adam's tensors (base64, no pickle)."""
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.config.to_dict(),
                "baseline": self._baseline, "updates": self._updates,
                "tensors": encode_tensors(self.network, self.optimizer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` exactly; ``ValueError`` naming what is wrong (the controller unchanged)."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a path-level EAS controller state (expected 'format': {STATE_FORMAT!r})")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"path-level EAS controller state version {state.get('version')!r} is not the "
                             f"supported {STATE_VERSION}")
        config = parse_config(PathEasConfig, state.get("config"))
        if config != self.config:
            diff = sorted(k for k, v in config.to_dict().items() if self.config.to_dict()[k] != v)
            raise ValueError(f"the controller state was saved with another configuration (keys {diff} differ)")
        baseline, updates = state.get("baseline"), state.get("updates")
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise ValueError(f"the state's 'baseline' must be a finite number, but got {baseline!r}")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"the state's 'updates' must be an int >= 0, but got {updates!r}")
        restore_tensors(self.network, self.optimizer, state.get("tensors"))
        self._baseline, self._updates = float(baseline), updates
