"""Per-stream sequence tracking: classify each incoming frame as in order, after a gap, duplicate or late.

Policy (docs/mqtt.md, "Sequence numbers"):

- The first frame of a stream, a frame with START, or one with DISCONTINUITY is accepted whatever its seq;
  START and DISCONTINUITY never count as a gap.
- ``seq == last + 1`` (mod 2**32) is in order.
- ``seq`` ahead by ``d`` > 1 (less than 2**31 ahead) is a gap of ``d - 1`` lost frames: the frame is
  accepted, the loss is counted, and ``fill_samples`` says how much silence to insert before it
  (``missing * frame length``, capped) so that stream time, and with it latency accounting and the output's
  alignment, stays right. QoS 0 audio loses frames on purpose; that is not the client's fault.
- ``seq`` at or behind the newest accepted seq is a duplicate (already seen, within the window) or late
  (never seen, i.e. it arrives after the frames that followed it, or older than the window). Both are
  dropped and reported as an ``error`` event: by then the gap has been filled, and splicing audio back
  into the past is not possible in a streaming pipeline.
- Any frame after an END frame (without START) is dropped as ``after_end``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from streamer.mqtt.protocol import AudioFrame, FrameFlags

__all__ = ["SeqDecision", "SeqVerdict", "SequenceStats", "SequenceTracker"]

_MOD = 2**32
_HALF = 2**31


class SeqVerdict(enum.StrEnum):
    """What to do with a frame. The values double as ``error`` event codes for dropped frames."""

    FIRST = "first"  # first frame / START / DISCONTINUITY: accepted
    IN_ORDER = "in_order"  # accepted
    GAP = "gap"  # accepted after `missing` lost frames
    DUPLICATE = "duplicate"  # dropped
    OUT_OF_ORDER = "out_of_order"  # dropped: late or too old
    AFTER_END = "after_end"  # dropped


@dataclass(frozen=True)
class SeqDecision:
    """The tracker's answer for one frame.

    Attributes:
        verdict: see ``SeqVerdict``.
        seq: the frame's seq.
        expected: the seq that would have been in order (None before the first frame).
        missing: frames lost just before this one (GAP only, else 0).
        fill_samples: samples of silence to insert before this frame (GAP only, capped).
    """

    verdict: SeqVerdict
    seq: int
    expected: int | None
    missing: int = 0
    fill_samples: int = 0

    @property
    def accept(self) -> bool:
        """True if the frame should be fed to the pipeline."""
        return self.verdict in (SeqVerdict.FIRST, SeqVerdict.IN_ORDER, SeqVerdict.GAP)

    @property
    def message(self) -> str:
        """A human-readable description, used as the ``error`` event message for dropped frames."""
        exp = "none" if self.expected is None else str(self.expected)
        if self.verdict is SeqVerdict.GAP:
            return f"gap: expected seq {exp}, got {self.seq} ({self.missing} frames lost)"
        if self.verdict is SeqVerdict.DUPLICATE:
            return f"duplicate frame seq {self.seq} (expected {exp}); dropped"
        if self.verdict is SeqVerdict.OUT_OF_ORDER:
            return f"out-of-order frame seq {self.seq} arrived after newer frames (expected {exp}); dropped"
        if self.verdict is SeqVerdict.AFTER_END:
            return f"frame seq {self.seq} arrived after the END frame; dropped"
        return f"frame seq {self.seq} accepted"


@dataclass(frozen=True)
class SequenceStats:
    """Counters since the tracker was created (START does not reset them)."""

    received: int = 0
    accepted: int = 0
    gaps: int = 0
    missing: int = 0
    filled_samples: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    after_end: int = 0

    @property
    def dropped(self) -> int:
        """Frames received but not accepted."""
        return self.duplicates + self.out_of_order + self.after_end


class SequenceTracker:
    """Tracks one stream's sequence numbers (one direction). Not thread-safe; use from one task.

    Args:
        window: how many recent seqs are remembered to tell duplicates from late frames (>= 1).
        max_fill_samples: cap on the silence inserted for one gap, so a forged seq jump cannot make the
            worker synthesise hours of silence. Default 48000 (1 s at 48 kHz). 0 disables filling.
    """

    def __init__(self, *, window: int = 256, max_fill_samples: int = 48_000) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if max_fill_samples < 0:
            raise ValueError(f"max_fill_samples must be >= 0, got {max_fill_samples}")
        self._window = window
        self._max_fill = max_fill_samples
        self._newest: int | None = None
        self._seen = 0  # bit i set <=> seq (newest - i) was accepted
        self._ended = False
        self._stats = SequenceStats()

    @property
    def stats(self) -> SequenceStats:
        """A snapshot of the counters."""
        return self._stats

    @property
    def expected(self) -> int | None:
        """The next in-order seq, or None before the first frame."""
        return None if self._newest is None else (self._newest + 1) % _MOD

    @property
    def ended(self) -> bool:
        """True once an END frame was accepted (until the next START)."""
        return self._ended

    def _count(self, **delta: int) -> None:
        s = self._stats
        self._stats = SequenceStats(**{k: getattr(s, k) + delta.get(k, 0) for k in s.__dataclass_fields__})

    def _restart(self, seq: int) -> None:
        self._newest = seq
        self._seen = 1
        self._ended = False

    def observe(self, frame: AudioFrame) -> SeqDecision:
        """Classify ``frame`` and update the state (only accepted frames advance it)."""
        return self.observe_seq(frame.seq, frame.flags, num_samples=frame.num_samples)

    def observe_seq(
        self, seq: int, flags: FrameFlags | int = FrameFlags.NONE, *, num_samples: int = 0
    ) -> SeqDecision:
        """Like ``observe`` for a bare ``seq``; ``num_samples`` sizes the silence for a gap."""
        flags = FrameFlags(int(flags))
        expected = self.expected
        decision: SeqDecision
        if (
            self._newest is None
            or flags & FrameFlags.START
            or (flags & FrameFlags.DISCONTINUITY and not self._ended)
        ):
            self._restart(seq)
            decision = SeqDecision(SeqVerdict.FIRST, seq, expected)
            self._count(received=1, accepted=1)
        elif self._ended:
            decision = SeqDecision(SeqVerdict.AFTER_END, seq, expected)
            self._count(received=1, after_end=1)
        else:
            ahead = (seq - self._newest) % _MOD
            if 0 < ahead < _HALF:
                self._newest = seq
                self._seen = ((self._seen << ahead) | 1) & ((1 << self._window) - 1)
                if ahead == 1:
                    decision = SeqDecision(SeqVerdict.IN_ORDER, seq, expected)
                    self._count(received=1, accepted=1)
                else:
                    missing = ahead - 1
                    fill = min(missing * max(num_samples, 0), self._max_fill)
                    decision = SeqDecision(SeqVerdict.GAP, seq, expected, missing=missing, fill_samples=fill)
                    self._count(received=1, accepted=1, gaps=1, missing=missing, filled_samples=fill)
            else:
                behind = (self._newest - seq) % _MOD
                if behind < self._window and (self._seen >> behind) & 1:
                    decision = SeqDecision(SeqVerdict.DUPLICATE, seq, expected)
                    self._count(received=1, duplicates=1)
                else:
                    decision = SeqDecision(SeqVerdict.OUT_OF_ORDER, seq, expected)
                    self._count(received=1, out_of_order=1)
        if decision.accept and flags & FrameFlags.END:
            self._ended = True
        return decision

    def reset(self) -> None:
        """Forget the sequence state (not the counters): the next frame is treated as the first."""
        self._newest = None
        self._seen = 0
        self._ended = False
