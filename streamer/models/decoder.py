"""Incremental unit decoder: causal transformer layers over encoder frames and a CTC head.

Each encoder frame (20 ms) opens `upsample` CTC slots, so the decoder can emit up to that many target
units per frame, as soon as the source that justifies them has arrived. Greedy CTC collapse carries
only the last slot's token across chunks: the prefix is never re-read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from streamer.config import DictConfig
from streamer.models.layers import StreamingTransformer, TransformerState


@dataclass(frozen=True)
class DecoderConfig(DictConfig):
    input_dim: int = 160
    dim: int = 160
    num_heads: int = 4
    num_layers: int = 3
    context_frames: int = 64
    conv_kernel: int = 5
    num_units: int = 100
    upsample: int = 2
    dropout: float = 0.1

    @property
    def blank(self) -> int:
        return self.num_units


class DecoderState(NamedTuple):
    transformer: TransformerState
    last_token: Tensor  # (B,) int64, the previous CTC slot's argmax (blank at the start)


class UnitDecoder(nn.Module):
    """Encoder frames (B, T, input_dim) -> CTC logits (B, T * upsample, num_units + 1)."""

    causal = True
    stride = 1
    lookahead_frames = 0

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.input_dim, cfg.dim)
        self.transformer = StreamingTransformer(
            cfg.dim, cfg.num_heads, cfg.num_layers, context_frames=cfg.context_frames,
            conv_kernel=cfg.conv_kernel, dropout=cfg.dropout,
        )
        self.head = nn.Linear(cfg.dim, cfg.upsample * (cfg.num_units + 1))

    def init_state(self, batch_size: int) -> DecoderState:
        device = self.head.weight.device
        blank = torch.full((batch_size,), self.cfg.blank, dtype=torch.long, device=device)
        return DecoderState(self.transformer.init_state(batch_size), blank)

    def _logits(self, h: Tensor) -> Tensor:
        b, t, _ = h.shape
        return self.head(h).view(b, t * self.cfg.upsample, self.cfg.num_units + 1)

    def forward(self, enc: Tensor) -> Tensor:
        return self._logits(self.transformer(self.proj(enc)))

    def step_log_probs(self, enc: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """enc (B, T, D) -> CTC slot log-probabilities (B, T * upsample, num_units + 1), for a search on the
        host (streamer/models/ctc_search.py); `last_token` is left as it was, the search keeps its own."""
        h, tr = self.transformer.step(self.proj(enc), state.transformer)
        return torch.log_softmax(self._logits(h), dim=-1), DecoderState(tr, state.last_token)

    def step(self, enc: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """enc (B, T, D) -> emitted units (B, T * upsample) int64, -1 where nothing is emitted."""
        h, tr = self.transformer.step(self.proj(enc), state.transformer)
        units, last = ctc_emit(self._logits(h).argmax(-1), state.last_token, self.cfg.blank)
        return units, DecoderState(tr, last)


def ctc_emit(tokens: Tensor, last_token: Tensor, blank: int) -> tuple[Tensor, Tensor]:
    """Greedy CTC collapse of slots (B, S) given the slot before them: new non-blank tokens, else -1."""
    previous = torch.cat([last_token[:, None], tokens[:, :-1]], dim=1)
    emit = (tokens != blank) & (tokens != previous)
    return torch.where(emit, tokens, torch.full_like(tokens, -1)), tokens[:, -1]
