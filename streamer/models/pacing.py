"""Fixed-shape unit queue: emitted units -> exactly one chunk of vocoder frames per step.

The decoder emits 0..S units per chunk; speech needs them spread over time with durations. The queue
expands each unit by its duration (in 20 ms frames) into a fixed-size frame buffer and pops exactly
`frames_per_chunk` frames per step, so every input chunk yields one output chunk of audio (silence when
the queue is empty). When the backlog passes `backlog_frames`, durations shrink (never below one frame)
so that output latency stays bounded. All ops are gathers and comparisons on fixed shapes.

When the queue runs dry mid-utterance (the decoder is late), it can hold the last unit for up to `hold_frames`
more frames instead of falling silent at once, as a speaker lengthens a sound before a pause; a hold never delays
what comes next, since it only fills frames that would have been silence.

A unit's duration may depend on the units voiced before it (`duration_context` of them: espeak, like any
speaker, times a phoneme by its neighbours). The table then holds a mean per context, flattened, and the
state keeps the last units voiced; with no context it is one mean per unit.
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
    duration_context: int = 0  # previous units a duration is looked up by (0: one mean per unit)
    hold_frames: int = 0       # frames the last unit is held for when the queue runs dry (0: silence at once)

    @property
    def silence(self) -> int:
        """The frame id that means 'no speech' (one past the last unit)."""
        return self.num_units

    @property
    def table_size(self) -> int:
        """Entries of the duration table: one per unit after each context (num_units = none yet)."""
        return (self.num_units + 1) ** self.duration_context * self.num_units


class QueueState(NamedTuple):
    frames: Tensor  # (B, capacity) int64 unit id per queued frame (silence beyond `count`)
    count: Tensor   # (B,) int64 number of queued frames
    recent: Tensor  # (B, max(1, duration_context)) int64 last units voiced, oldest first (num_units: none)
    held: Tensor    # (B,) int64 frames the last unit has been held for since the queue ran dry


class UnitQueue(nn.Module):
    """units (B, S) int64 (-1 = none) -> frames (B, frames_per_chunk) int64 of unit ids or silence."""

    causal = True
    lookahead_frames = 0

    def __init__(self, cfg: QueueConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Mean duration in frames of each unit (after each context), learned from target speech.
        self.register_buffer("durations", torch.ones(cfg.table_size))

    def init_state(self, batch_size: int) -> QueueState:
        device = self.durations.device
        frames = torch.full((batch_size, self.cfg.capacity_frames), self.cfg.silence, dtype=torch.long,
                            device=device)
        recent = torch.full((batch_size, max(1, self.cfg.duration_context)), self.cfg.num_units, dtype=torch.long,
                            device=device)
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return QueueState(frames, zeros, recent, zeros.clone())

    def _lookup(self, units: Tensor, recent: Tensor) -> tuple[Tensor, Tensor]:
        """Each unit's table entry (B, S) after the units voiced before it, and the new `recent`."""
        c, k = self.cfg.duration_context, self.cfg.num_units
        unit = units.clamp(min=0)
        if c == 0:  # `recent` is then just the last unit voiced (what a hold voices)
            slots = torch.arange(units.shape[1], device=units.device)
            last = torch.where(units >= 0, slots[None], -1).amax(1, keepdim=True)
            return unit, torch.where(last >= 0, torch.gather(units, 1, last.clamp(min=0)), recent)
        ext = torch.cat([recent, units], dim=1)  # (B, c + S); the context counts as voiced
        n = ext.shape[1]
        pos = torch.arange(n, device=units.device)
        voiced = torch.cat([torch.ones_like(recent, dtype=torch.bool), units >= 0], dim=1)
        marks = torch.where(voiced, pos[None], torch.full_like(ext, -1))  # (B, n)
        # last voiced position at or before each position: a max over a lower-triangular mask (ONNX-friendly)
        upto = torch.where(pos[None, :, None] >= pos[None, None, :], marks[:, None, :], -1).amax(-1)  # (B, n)
        index, at = unit, (pos[c:] - 1)[None].expand_as(units)  # the position before each new unit
        for level in range(c):
            at = torch.gather(upto, 1, at.clamp(min=0))
            index = index + torch.gather(ext, 1, at) * (k * (k + 1) ** level)
            at = at - 1
        last = upto[:, -1:]
        picked = []
        for _ in range(c):
            picked.append(torch.gather(ext, 1, last))
            last = torch.gather(upto, 1, (last - 1).clamp(min=0))
        return index, torch.cat(picked[::-1], dim=1)

    def _expand(self, units: Tensor, count: Tensor, recent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Units (B, S) -> (frame ids (B, S * max_dur), number of new frames (B,), new recent units)."""
        cfg = self.cfg
        valid = units >= 0
        index, recent = self._lookup(units, recent)
        mean = self.durations[index]
        over = (count - cfg.backlog_frames).clamp(min=0).to(mean.dtype)
        speed = (1.0 - over / cfg.capacity_frames).clamp(min=0.5)[:, None]
        dur = torch.round(mean * speed).clamp(1, cfg.max_duration_frames).long()
        dur = torch.where(valid, dur, torch.zeros_like(dur))
        ends = torch.cumsum(dur, dim=1)  # (B, S)
        slots = units.shape[1] * cfg.max_duration_frames
        pos = torch.arange(slots, device=units.device)
        which = (ends[:, None, :] <= pos[None, :, None]).sum(-1).clamp(max=units.shape[1] - 1)
        return torch.gather(units, 1, which), ends[:, -1], recent

    def step(self, units: Tensor, state: QueueState) -> tuple[Tensor, QueueState]:
        cfg = self.cfg
        new, added, recent = self._expand(units, state.count, state.recent)
        pos = torch.arange(cfg.capacity_frames, device=units.device)[None]
        offset = (pos - state.count[:, None]).clamp(0, new.shape[1] - 1)
        from_new = (pos >= state.count[:, None]) & (pos < (state.count + added)[:, None])
        silence = torch.full_like(state.frames, cfg.silence)
        frames = torch.where(pos < state.count[:, None], state.frames,
                             torch.where(from_new, torch.gather(new, 1, offset), silence))
        count = (state.count + added).clamp(max=cfg.capacity_frames)
        k = cfg.frames_per_chunk
        out, held = self._hold(frames[:, :k], count, recent[:, -1], state.held)
        rest = torch.cat([frames[:, k:], silence[:, :k]], dim=1)
        return out, QueueState(rest, (count - k).clamp(min=0), recent, held)

    def _hold(self, out: Tensor, count: Tensor, last: Tensor, held: Tensor) -> tuple[Tensor, Tensor]:
        """The chunk's frames past the queued ones voice the last unit while the hold lasts."""
        cfg = self.cfg
        if cfg.hold_frames == 0:
            return out, held
        dry_from = count.clamp(max=cfg.frames_per_chunk)[:, None]  # first frame with nothing queued
        held = torch.where(count > 0, torch.zeros_like(held), held)  # queued frames restart the hold
        pos = torch.arange(cfg.frames_per_chunk, device=out.device)[None]
        fill = (pos >= dry_from) & (held[:, None] + pos - dry_from < cfg.hold_frames) & (last[:, None] < cfg.silence)
        out = torch.where(fill, last[:, None].expand_as(out), out)
        return out, (held + cfg.frames_per_chunk - dry_from[:, 0]).clamp(max=cfg.hold_frames)
