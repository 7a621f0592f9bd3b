"""Causal speech encoder: log-mel front end (as a strided conv), conv subsampling, streaming transformer.

Audio (B, T) at 16 kHz -> features (B, T // 320, dim) at 50 frames per second. Output frame n depends
only on samples before `(n + 1) * 320`: no lookahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamer.config import DictConfig
from streamer.models.layers import (
    CausalConv1d,
    ConvState,
    StreamingTransformer,
    TransformerState,
    check_stride,
)


@dataclass(frozen=True)
class EncoderConfig(DictConfig):
    sample_rate: int = 16_000
    win_samples: int = 400   # 25 ms analysis window
    hop_samples: int = 160   # 10 ms mel hop; frames are 2 hops (20 ms)
    n_mels: int = 64
    dim: int = 160
    num_heads: int = 4
    num_layers: int = 6
    context_frames: int = 64  # 1.28 s of left attention context
    conv_kernel: int = 5
    dropout: float = 0.1

    @property
    def frame_samples(self) -> int:
        return 2 * self.hop_samples


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 20.0) -> np.ndarray:
    """HTK-style triangular mel filters, shape (n_fft // 2 + 1, n_mels)."""
    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(fmin)), to_mel(np.array(sample_rate / 2)), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (center - lower)
    falling = (upper - freqs[None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)


class LogMel(nn.Module):
    """Log-mel spectrogram computed by a fixed, strided causal conv (exportable, streamable).

    Audio (B, 1, T) -> (B, n_mels, T // hop). Frame n covers samples [n*hop - win + hop, (n+1)*hop).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        n_fft = cfg.win_samples
        n_freq = n_fft // 2 + 1
        self.stft = CausalConv1d(1, 2 * n_freq, n_fft, stride=cfg.hop_samples, bias=False)
        t = torch.arange(n_fft, dtype=torch.float64)
        f = torch.arange(n_freq, dtype=torch.float64)[:, None]
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * f * t / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        self.stft.conv.weight.data.copy_(basis[:, None, :].float())
        self.stft.conv.weight.requires_grad_(False)
        self.register_buffer("fbank", torch.from_numpy(mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels)))
        self.n_freq = n_freq

    def _mel(self, spec: Tensor) -> Tensor:
        power = spec[:, : self.n_freq] ** 2 + spec[:, self.n_freq:] ** 2
        return torch.log(torch.einsum("bft,fm->bmt", power, self.fbank) + 1e-6)

    def forward(self, audio: Tensor) -> Tensor:
        return self._mel(self.stft(audio))

    def step(self, audio: Tensor, state: ConvState) -> tuple[Tensor, ConvState]:
        spec, state = self.stft.step(audio, state)
        return self._mel(spec), state


class EncoderState(NamedTuple):
    mel: ConvState
    sub1: ConvState
    sub2: ConvState
    transformer: TransformerState


class CausalEncoder(nn.Module):
    """The causal SSL speech encoder. audio (B, T) -> (B, T // frame_samples, dim)."""

    causal = True
    lookahead_frames = 0

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stride = cfg.frame_samples
        self.logmel = LogMel(cfg)
        self.mel_norm = nn.LayerNorm(cfg.n_mels)  # per frame: removes overall gain
        self.sub1 = CausalConv1d(cfg.n_mels, cfg.dim, 4, stride=2)
        self.sub2 = CausalConv1d(cfg.dim, cfg.dim, 3)
        self.transformer = StreamingTransformer(
            cfg.dim, cfg.num_heads, cfg.num_layers, context_frames=cfg.context_frames,
            conv_kernel=cfg.conv_kernel, dropout=cfg.dropout,
        )

    def init_state(self, batch_size: int) -> EncoderState:
        return EncoderState(self.logmel.stft.init_state(batch_size), self.sub1.init_state(batch_size),
                            self.sub2.init_state(batch_size), self.transformer.init_state(batch_size))

    def _post_mel(self, mel: Tensor) -> Tensor:
        return self.mel_norm(mel.transpose(1, 2)).transpose(1, 2)

    def frontend(self, audio: Tensor) -> Tensor:
        """Offline conv front end: audio (B, T) -> (B, T // frame_samples, dim), before the transformer."""
        check_stride(audio.shape[-1], self.stride, "encoder input samples")
        x = self._post_mel(self.logmel(audio[:, None]))
        x = F.gelu(self.sub1(x))
        return F.gelu(self.sub2(x)).transpose(1, 2)

    def forward(self, audio: Tensor, *, return_layers: bool = False) -> Tensor | list[Tensor]:
        return self.transformer(self.frontend(audio), return_layers=return_layers)

    def step(self, audio: Tensor, state: EncoderState) -> tuple[Tensor, EncoderState]:
        mel, mel_state = self.logmel.step(audio[:, None], state.mel)
        x, sub1 = self.sub1.step(self._post_mel(mel), state.sub1)
        x, sub2 = self.sub2.step(F.gelu(x), state.sub2)
        y, tr = self.transformer.step(F.gelu(x).transpose(1, 2), state.transformer)
        return y, EncoderState(mel_state, sub1, sub2, tr)
