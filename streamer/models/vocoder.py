"""Streaming unit vocoder: unit frames (50 Hz) -> waveform, causal conv backbone + iSTFT head.

The vocos shape (backbone at frame rate, then a spectral head and inverse FFT), with convs padded on
the left only. The inverse DFT is a fixed matrix and overlap-add is a sum of static slices, so the graph
exports as plain matmuls. Output sample s renders the unit frame at `s - lookahead_frames * 320`: the
declared one-frame delay lets every window centre see the unit it renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamer.config import DictConfig
from streamer.models.layers import CausalConv1d, ConvState


@dataclass(frozen=True)
class VocoderConfig(DictConfig):
    num_units: int = 100
    sample_rate: int = 16_000
    frame_samples: int = 320  # one unit frame (20 ms)
    hop_samples: int = 160    # iSTFT hop: two sub-frames per unit frame
    n_fft: int = 640
    dim: int = 160
    num_blocks: int = 4
    kernel_size: int = 7
    lookahead_frames: int = 1

    @property
    def subframes(self) -> int:
        return self.frame_samples // self.hop_samples


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv + pointwise MLP with a residual. x (B, D, T)."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.dw = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim))

    def _rest(self, x: Tensor, h: Tensor) -> Tensor:
        return x + self.mlp(self.norm(h.transpose(1, 2))).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self._rest(x, self.dw(x))

    def step(self, x: Tensor, state: ConvState) -> tuple[Tensor, ConvState]:
        h, state = self.dw.step(x, state)
        return self._rest(x, h), state


class VocoderState(NamedTuple):
    conv_in: Tensor  # (B, D, P) input conv tail
    blocks: Tensor   # (B, N, D, P) every block's depthwise-conv tail, stacked
    ola: Tensor      # (B, R - 1, n_fft) the last R - 1 windowed frames, R = n_fft / hop


class UnitVocoder(nn.Module):
    """frames (B, T) int64 unit ids (num_units = silence) -> audio (B, T * frame_samples)."""

    causal = True

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        if cfg.n_fft % cfg.hop_samples or cfg.frame_samples % cfg.hop_samples:
            raise ValueError("n_fft and frame_samples must be multiples of hop_samples")
        self.cfg = cfg
        self.stride = 1
        self.lookahead_frames = cfg.lookahead_frames
        self.embed = nn.Embedding(cfg.num_units + 1, cfg.dim)
        self.conv_in = CausalConv1d(cfg.dim, cfg.dim, 3)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.kernel_size) for _ in range(cfg.num_blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        n_freq = cfg.n_fft // 2 + 1
        self.head = nn.Linear(cfg.dim, cfg.subframes * 2 * n_freq)
        self.register_buffer("idft", _inverse_dft(cfg.n_fft), persistent=False)
        self.n_freq = n_freq

    @property
    def overlap(self) -> int:
        return self.cfg.n_fft // self.cfg.hop_samples

    def init_state(self, batch_size: int) -> VocoderState:
        p = self.head.weight
        blocks = torch.stack([b.dw.init_state(batch_size).tail for b in self.blocks], dim=1)
        ola = torch.zeros(batch_size, self.overlap - 1, self.cfg.n_fft, dtype=p.dtype, device=p.device)
        return VocoderState(self.conv_in.init_state(batch_size).tail, blocks, ola)

    def _frames(self, h: Tensor) -> Tensor:
        """Backbone output (B, D, T) -> windowed time-domain frames (B, T * subframes, n_fft)."""
        b, _, t = h.shape
        spec = self.head(self.norm(h.transpose(1, 2))).view(b, t * self.cfg.subframes, 2, self.n_freq)
        log_mag, phase = spec[:, :, 0], spec[:, :, 1]
        mag = torch.exp(log_mag.clamp(max=8.0))
        real_imag = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
        return real_imag @ self.idft

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """Frames (B, R - 1 + N, n_fft), the first R - 1 from the past -> audio (B, N * hop)."""
        r, hop = self.overlap, self.cfg.hop_samples
        n = frames.shape[1] - (r - 1)
        out = sum(frames[:, r - 1 - j: r - 1 - j + n, j * hop:(j + 1) * hop] for j in range(r))
        return out.reshape(frames.shape[0], n * hop)

    def forward(self, frames: Tensor) -> Tensor:
        h = F.gelu(self.conv_in(self.embed(frames).transpose(1, 2)))
        for block in self.blocks:
            h = block(h)
        windows = self._frames(h)
        pad = windows.new_zeros(windows.shape[0], self.overlap - 1, self.cfg.n_fft)
        return self._overlap_add(torch.cat([pad, windows], dim=1))

    def step(self, frames: Tensor, state: VocoderState) -> tuple[Tensor, VocoderState]:
        h, conv_in = self.conv_in.step(self.embed(frames).transpose(1, 2), ConvState(state.conv_in))
        h = F.gelu(h)
        tails = []
        for i, block in enumerate(self.blocks):
            h, tail = block.step(h, ConvState(state.blocks[:, i]))
            tails.append(tail.tail)
        windows = torch.cat([state.ola, self._frames(h)], dim=1)
        audio = self._overlap_add(windows)
        return audio, VocoderState(conv_in.tail, torch.stack(tails, dim=1), windows[:, -(self.overlap - 1):])


def _inverse_dft(n_fft: int) -> Tensor:
    """(2 * n_freq, n_fft) matrix: [real | imag] spectrum -> Hann-windowed real frame (irfft)."""
    n_freq = n_fft // 2 + 1
    k = torch.arange(n_freq, dtype=torch.float64)[:, None]
    t = torch.arange(n_fft, dtype=torch.float64)[None]
    weight = torch.full((n_freq, 1), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once
    angle = 2 * math.pi * k * t / n_fft
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    basis = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) / n_fft
    return (basis * window).float()
