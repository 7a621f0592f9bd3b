"""Fixed-shape unit queue: emitted units -> exactly one chunk of vocoder frames per step.

The decoder emits 0..S units per chunk; speech needs them spread over time with durations. The queue
expands each unit by its duration (in 20 ms frames) into a fixed-size frame buffer and pops exactly
`frames_per_chunk` frames per step, so every input chunk yields one output chunk of audio (silence when
the queue is empty). When the backlog passes `backlog_frames`, durations shrink (never below one frame)
so that output latency stays bounded. All ops are gathers and comparisons on fixed shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from streamer.config import DictConfig


@dataclass(frozen=True)
class QueueConfig(DictConfig):
    num_units: int = 100
    frames_per_chunk: int = 8
    capacity_frames: int = 128
    backlog_frames: int = 24
    max_duration_frames: int = 6

    @property
    def silence(self) -> int:
        """The frame id that means 'no speech' (one past the last unit)."""
        return self.num_units


class QueueState(NamedTuple):
    frames: Tensor  # (B, capacity) int64 unit id per queued frame (silence beyond `count`)
    count: Tensor   # (B,) int64 number of queued frames


class UnitQueue(nn.Module):
    """units (B, S) int64 (-1 = none) -> frames (B, frames_per_chunk) int64 of unit ids or silence."""

    causal = True
    lookahead_frames = 0

    def __init__(self, cfg: QueueConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Mean duration of each unit in frames, learned from target speech (set by training).
        self.register_buffer("durations", torch.ones(cfg.num_units))

    def init_state(self, batch_size: int) -> QueueState:
        device = self.durations.device
        frames = torch.full((batch_size, self.cfg.capacity_frames), self.cfg.silence, dtype=torch.long,
                            device=device)
        return QueueState(frames, torch.zeros(batch_size, dtype=torch.long, device=device))

    def _expand(self, units: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
        """Units (B, S) -> (frame ids (B, S * max_dur), number of new frames (B,))."""
        cfg = self.cfg
        valid = units >= 0
        mean = self.durations[units.clamp(min=0)]
        over = (count - cfg.backlog_frames).clamp(min=0).to(mean.dtype)
        speed = (1.0 - over / cfg.capacity_frames).clamp(min=0.5)[:, None]
        dur = torch.round(mean * speed).clamp(1, cfg.max_duration_frames).long()
        dur = torch.where(valid, dur, torch.zeros_like(dur))
        ends = torch.cumsum(dur, dim=1)  # (B, S)
        slots = units.shape[1] * cfg.max_duration_frames
        pos = torch.arange(slots, device=units.device)
        which = (ends[:, None, :] <= pos[None, :, None]).sum(-1).clamp(max=units.shape[1] - 1)
        return torch.gather(units, 1, which), ends[:, -1]

    def step(self, units: Tensor, state: QueueState) -> tuple[Tensor, QueueState]:
        cfg = self.cfg
        new, added = self._expand(units, state.count)
        pos = torch.arange(cfg.capacity_frames, device=units.device)[None]
        offset = (pos - state.count[:, None]).clamp(0, new.shape[1] - 1)
        from_new = (pos >= state.count[:, None]) & (pos < (state.count + added)[:, None])
        silence = torch.full_like(state.frames, cfg.silence)
        frames = torch.where(pos < state.count[:, None], state.frames,
                             torch.where(from_new, torch.gather(new, 1, offset), silence))
        count = (state.count + added).clamp(max=cfg.capacity_frames)
        k = cfg.frames_per_chunk
        out = frames[:, :k]
        rest = torch.cat([frames[:, k:], silence[:, :k]], dim=1)
        return out, QueueState(rest, (count - k).clamp(min=0))
