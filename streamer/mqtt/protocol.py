"""Binary audio framing for the ``in`` and ``out`` topics: a 16-byte header, then PCM16 little-endian.

Layout of protocol version 1 (all integers little-endian)::

    offset size  field         notes
    0      2     magic         b"SA" (0x53 0x41)
    2      1     version       1
    3      1     flags         bit 0 START, bit 1 END, bit 2 DISCONTINUITY, bits 3-7 reserved (must be 0)
    4      4     seq           uint32 frame counter per stream and direction, wraps modulo 2**32
    8      4     sample_rate   uint32, one of SUPPORTED_SAMPLE_RATES
    12     4     num_samples   uint32, mono samples that follow
    16     2*n   samples       int16 little-endian PCM

``AudioFrame.samples`` is ``np.int16``, the wire type, so ``decode_frame(encode_frame(f)) == f`` exactly.
Use ``AudioFrame.from_float`` / ``AudioFrame.to_float32`` at the edges where the pipeline wants float32.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "FRAME_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "SUPPORTED_SAMPLE_RATES",
    "AudioFrame",
    "FrameFlags",
    "decode_frame",
    "encode_frame",
    "frame_size",
    "validate_sample_rate",
]

MAGIC = b"SA"
FRAME_VERSION = 1
_HEADER = struct.Struct("<2sBBIII")
HEADER_SIZE = _HEADER.size  # 16
SUPPORTED_SAMPLE_RATES: frozenset[int] = frozenset({8000, 16000, 22050, 24000, 32000, 44100, 48000})
DEFAULT_MAX_SAMPLES = 48_000  # one second at the highest supported rate; frames are normally 10-160 ms
_UINT32_MAX = 2**32 - 1
_PCM_SCALE = 32768.0


class FrameFlags(enum.IntFlag):
    """Per-frame flags. ``decode_frame`` refuses unknown bits, so they can be given a meaning later."""

    NONE = 0
    START = 0x01  # first frame of a stream (or of a new utterance): the receiver resets its sequence tracking
    END = 0x02  # last frame of a stream: the receiver flushes and ends the stream
    DISCONTINUITY = 0x04  # the sender skipped frames on purpose (e.g. after a reconnect): not a loss


_KNOWN_FLAGS = int(FrameFlags.START | FrameFlags.END | FrameFlags.DISCONTINUITY)


def validate_sample_rate(sample_rate: object) -> int:
    """Return ``sample_rate`` as int if it is one of SUPPORTED_SAMPLE_RATES, else raise ProtocolError."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ProtocolError(f"sample_rate must be an int, got {type(sample_rate).__name__}")
    if int(sample_rate) not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolError(
            f"unsupported sample rate {int(sample_rate)} Hz; supported: {sorted(SUPPORTED_SAMPLE_RATES)}"
        )
    return int(sample_rate)


@dataclass(frozen=True, eq=False)
class AudioFrame:
    """One frame of mono audio as carried on an ``in`` or ``out`` topic.

    Attributes:
        seq: frame counter, 0 <= seq <= 2**32 - 1, per stream and direction; wraps around.
        sample_rate: Hz, one of ``SUPPORTED_SAMPLE_RATES``.
        samples: ``(T,)`` np.int16, read-only. T may be 0 (e.g. a bare END frame).
        flags: ``FrameFlags``.

    The constructor validates every field and raises ProtocolError. ``samples`` is copied unless it already
    is a read-only int16 array, so a frame can never change after it is built. Equality compares samples by
    value.
    """

    seq: int
    sample_rate: int
    samples: np.ndarray
    flags: FrameFlags = FrameFlags.NONE

    def __post_init__(self) -> None:
        seq = self.seq
        if isinstance(seq, bool) or not isinstance(seq, int | np.integer):
            raise ProtocolError(f"seq must be an int, got {type(seq).__name__}")
        if not 0 <= int(seq) <= _UINT32_MAX:
            raise ProtocolError(f"seq {int(seq)} is outside uint32 range [0, {_UINT32_MAX}]")
        object.__setattr__(self, "seq", int(seq))
        object.__setattr__(self, "sample_rate", validate_sample_rate(self.sample_rate))
        flags = self.flags
        if isinstance(flags, bool) or not isinstance(flags, int | np.integer):
            raise ProtocolError(f"flags must be FrameFlags or int, got {type(flags).__name__}")
        if int(flags) & ~_KNOWN_FLAGS:
            raise ProtocolError(f"reserved flag bits set: 0x{int(flags) & ~_KNOWN_FLAGS & 0xFF:02x}")
        object.__setattr__(self, "flags", FrameFlags(int(flags)))
        samples = self.samples
        if not isinstance(samples, np.ndarray):
            raise ProtocolError(f"samples must be a numpy array, got {type(samples).__name__}")
        if samples.dtype != np.int16:
            raise ProtocolError(
                f"samples must be int16 PCM, got dtype {samples.dtype}; use AudioFrame.from_float"
            )
        if samples.ndim != 1:
            raise ProtocolError(f"samples must be mono with shape (T,), got shape {samples.shape}")
        if len(samples) > _UINT32_MAX:  # pragma: no cover - 8 GiB of audio
            raise ProtocolError(f"{len(samples)} samples do not fit the uint32 sample count")
        if samples.flags.writeable or not samples.flags.c_contiguous:
            samples = np.array(samples, dtype=np.int16, copy=True, order="C")
            samples.flags.writeable = False
        object.__setattr__(self, "samples", samples)

    @classmethod
    def from_float(
        cls, samples: Any, *, seq: int, sample_rate: int, flags: FrameFlags | int = FrameFlags.NONE
    ) -> AudioFrame:
        """Build a frame from float audio in [-1, 1] (shape ``(T,)``): scaled by 32768, rounded, clipped.

        Raises ProtocolError for non-finite samples or a wrong shape.
        """
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ProtocolError(f"samples must be mono with shape (T,), got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ProtocolError("samples hold NaN or Inf")
        pcm = np.clip(np.rint(x * _PCM_SCALE), -32768, 32767).astype(np.int16)
        pcm.flags.writeable = False  # so the constructor need not copy it again
        return cls(seq=seq, sample_rate=sample_rate, samples=pcm, flags=flags)

    def to_float32(self) -> np.ndarray:
        """Samples as ``(T,)`` float32 in [-1, 1): int16 / 32768 (exact inverse of ``from_float`` on PCM)."""
        return self.samples.astype(np.float32) / np.float32(_PCM_SCALE)

    @property
    def num_samples(self) -> int:
        """Number of samples T."""
        return int(self.samples.shape[0])

    @property
    def duration_ms(self) -> float:
        """Audio duration of the frame in milliseconds."""
        return 1000.0 * self.num_samples / self.sample_rate

    @property
    def is_start(self) -> bool:
        """True if the START flag is set."""
        return bool(self.flags & FrameFlags.START)

    @property
    def is_end(self) -> bool:
        """True if the END flag is set."""
        return bool(self.flags & FrameFlags.END)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AudioFrame):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.sample_rate == other.sample_rate
            and self.flags == other.flags
            and np.array_equal(self.samples, other.samples)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"AudioFrame(seq={self.seq}, sample_rate={self.sample_rate}, num_samples={self.num_samples}, "
            f"flags={self.flags!r})"
        )


def frame_size(num_samples: int) -> int:
    """Bytes on the wire for a frame of ``num_samples`` samples: 16 + 2 * num_samples."""
    return HEADER_SIZE + 2 * num_samples


def encode_frame(frame: AudioFrame) -> bytes:
    """Serialise ``frame`` to the version-1 wire format (see the module docstring)."""
    if not isinstance(frame, AudioFrame):
        raise ProtocolError(f"encode_frame needs an AudioFrame, got {type(frame).__name__}")
    header = _HEADER.pack(
        MAGIC, FRAME_VERSION, int(frame.flags), frame.seq, frame.sample_rate, frame.num_samples
    )
    return header + frame.samples.astype("<i2", copy=False).tobytes()


def decode_frame(
    data: bytes | bytearray | memoryview, *, max_samples: int = DEFAULT_MAX_SAMPLES
) -> AudioFrame:
    """Parse and validate one wire frame.

    Args:
        data: the MQTT payload.
        max_samples: the largest sample count accepted; larger frames are refused before any copy.

    Returns:
        An ``AudioFrame`` that owns its samples (the payload buffer is not referenced).

    Raises:
        ProtocolError: for every malformed payload, never anything else: not bytes, empty, bad magic,
            unknown version, truncated header, reserved flag bits, unsupported sample rate, oversize,
            odd PCM16 byte count, or a sample count that does not match the payload length.
        ValueError: only if ``max_samples`` itself is negative (a caller bug, not a payload problem).
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 0:
        raise ValueError(f"max_samples must be a non-negative int, got {max_samples!r}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"frame payload must be bytes, got {type(data).__name__}")
    buf: bytes | bytearray | memoryview = data
    if isinstance(data, memoryview):
        try:
            buf = data.cast("B")
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"frame payload is not a contiguous byte buffer: {exc}") from None
    n = len(buf)
    if n == 0:
        raise ProtocolError("empty frame payload")
    head = bytes(buf[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise ProtocolError(f"bad magic: expected {MAGIC!r}, got {head!r}")
    if n > len(MAGIC) and buf[len(MAGIC)] != FRAME_VERSION:
        raise ProtocolError(f"unknown frame version {buf[len(MAGIC)]}; supported: {FRAME_VERSION}")
    if n < HEADER_SIZE:
        raise ProtocolError(f"truncated header: got {n} bytes, the v{FRAME_VERSION} header is {HEADER_SIZE}")
    _, _, flags, seq, sample_rate, num_samples = _HEADER.unpack_from(buf, 0)
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(
            f"reserved flag bits set: 0x{flags & ~_KNOWN_FLAGS:02x} (flags byte 0x{flags:02x})"
        )
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolError(
            f"unsupported sample rate {sample_rate} Hz; supported: {sorted(SUPPORTED_SAMPLE_RATES)}"
        )
    if num_samples > max_samples:
        raise ProtocolError(
            f"oversize frame: header declares {num_samples} samples > max_samples={max_samples}"
        )
    payload = n - HEADER_SIZE
    if payload > 2 * max_samples:
        raise ProtocolError(
            f"oversize frame: {payload} payload bytes > {2 * max_samples} (max_samples={max_samples})"
        )
    if payload % 2:
        raise ProtocolError(f"odd PCM16 payload length: {payload} bytes is not a whole number of samples")
    if payload != 2 * num_samples:
        raise ProtocolError(
            f"length mismatch: header declares {num_samples} samples ({2 * num_samples} bytes), "
            f"payload has {payload} bytes"
        )
    samples = np.frombuffer(buf, dtype="<i2", count=num_samples, offset=HEADER_SIZE).astype(np.int16)
    samples.flags.writeable = False
    return AudioFrame(seq=seq, sample_rate=sample_rate, samples=samples, flags=FrameFlags(flags))
