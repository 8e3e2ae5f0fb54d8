"""The EAS meta-controller's networks: a BiLSTM encoder, the Net2Wider head and the Net2Deeper decoder.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Section 3 (the architecture and its deviations are described in :mod:`.controller`).
:class:`ControllerNetwork` holds the parameters and runs the batched forward passes of both actors, on
token ids, masks and blocks: with given decisions (teacher-forced, for REINFORCE) or sampling them from a
``torch.Generator``. It knows nothing of tokens, actions or architectures; :class:`~.controller.EasController`
turns those into tensors.

* Initialisation: the embeddings and the decoder's start input uniform in ``[-sqrt 3, sqrt 3]`` (unit
  variance, as the authors' code); LSTM and linear weights and biases uniform in ``[-1/sqrt(n), 1/sqrt(n)]``
  (PyTorch's defaults; the TF code used Glorot-uniform and forget bias 1), all drawn from one generator.
* **[dev]** The block and layer decisions are pointer-style heads (see :mod:`.controller`): any number of
  blocks and of layers per block is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ControllerConfig

__all__ = ["ControllerNetwork", "masked_log_softmax"]


class ControllerNetwork(nn.Module):
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
                module = cast(nn.Linear, self.get_submodule(name.rsplit(".", 1)[0]))
                bound = 1.0 / math.sqrt(module.in_features)
                nn.init.uniform_(param, -bound, bound, generator=generator)

    def encode(self, ids: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder outputs ``(B, L, 2H)`` (zero past each length) and final state ``h, c`` ``(B, 2H)``.

        ``ids`` are the token rows ``(B, L)`` of the sequences, padded past each of ``lengths``.
        """
        packed = pack_padded_sequence(self.embedding(ids), torch.tensor(list(lengths)), batch_first=True,
                                      enforce_sorted=False)
        out, (h_n, c_n) = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=max(lengths))
        # h_n[0]: forward direction after the last token; h_n[1]: backward direction after the first token.
        return out, torch.cat([h_n[0], h_n[1]], dim=1), torch.cat([c_n[0], c_n[1]], dim=1)

    def wider_forward(self, out: torch.Tensor, masks: Sequence[tuple[bool, ...]],
                      decisions: Optional[Sequence[tuple[bool, ...]]], generator: Optional[torch.Generator],
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies, unmasked counts ``(B,)`` and decisions ``(B, L)`` (sampled if not given)."""
        batch, length = out.shape[:2]
        valid = torch.zeros(batch, length, dtype=torch.bool)
        for i, mask in enumerate(masks):
            valid[i, :len(mask)] = torch.tensor(mask, dtype=torch.bool)
        logits = self.wider_head(out).squeeze(-1)  # (B, L)
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

    def deeper_forward(self, out: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                       blocks_list: Sequence[tuple[tuple[int, ...], ...]], given: Optional[torch.Tensor],
                       generator: Optional[torch.Generator],
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies ``(B,)``, and the ``(block, layer, kernel index)`` choices ``(B, 3)``.

        The three decisions are made in turn by the decoder (Cai et al. 2018, Sec. 3); given the choices
        ``given`` ``(B, 3)`` they are teacher-forced, otherwise sampled from ``generator``.
        """
        batch, length, dim = out.shape
        scale = 1.0 / math.sqrt(dim)
        n_blocks = max(len(b) for b in blocks_list)
        member = torch.zeros(batch, n_blocks, length, dtype=out.dtype)
        for i, blocks in enumerate(blocks_list):
            for k, members in enumerate(blocks):
                member[i, k, list(members)] = 1.0
        sizes = member.sum(dim=-1)
        features = member @ out / sizes.clamp(min=1.0).unsqueeze(-1)  # (B, n_blocks, 2H): mean per block
        rows = torch.arange(batch)

        def choose(logp: torch.Tensor, t: int) -> torch.Tensor:
            if given is not None:
                return given[:, t]
            return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)

        state = self.decoder(self.decoder_start.expand(batch, -1), (h, c))
        scores = (features @ self.block_query(state[0]).unsqueeze(-1)).squeeze(-1) * scale
        logp_block, ent_block = masked_log_softmax(scores, sizes > 0)
        block = choose(logp_block, 0)

        state = self.decoder(self.block_input(features[rows, block]), state)
        scores = (out @ self.layer_query(state[0]).unsqueeze(-1)).squeeze(-1) * scale
        logp_layer, ent_layer = masked_log_softmax(scores, member[rows, block] > 0)
        layer = choose(logp_layer, 1)

        state = self.decoder(self.layer_input(out[rows, layer]), state)
        logp_kernel = self.kernel_head(state[0]).log_softmax(dim=-1)
        ent_kernel = -(logp_kernel.exp() * logp_kernel).sum(dim=-1)
        kernel = choose(logp_kernel, 2)

        logp = logp_block[rows, block] + logp_layer[rows, layer] + logp_kernel[rows, kernel]
        return logp, ent_block + ent_layer + ent_kernel, torch.stack([block, layer, kernel], dim=1)


def masked_log_softmax(scores: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (``-inf`` where not valid) and entropies, row-wise; every row has a valid entry."""
    logp = scores.masked_fill(~valid, float("-inf")).log_softmax(dim=-1)
    safe = logp.masked_fill(~valid, 0.0)
    entropy = -(logp.exp() * safe).sum(dim=-1)
    return logp, entropy
