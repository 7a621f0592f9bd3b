"""Sample-rate conversion with soxr: whole arrays (`resample`) and chunk by chunk (`StreamingResampler`).

Both use soxr's high-quality ("HQ") filter, and a stream fed in pieces gives the same samples as one
`resample` call on the whole signal (the tests check this to float32 precision).
"""

from __future__ import annotations

import numpy as np
import soxr

from streamer.errors import AudioError

__all__ = ["StreamingResampler", "check_rate", "resample"]

QUALITY = "HQ"


def check_rate(rate: object, *, name: str = "sample_rate") -> int:
    """Return `rate` as an int if it is a positive integer sample rate in Hz, else raise AudioError.

    Integral floats such as ``44100.0`` (what PortAudio reports) are accepted; ``True``, ``0``,
    negative numbers, ``22050.5`` and strings are not.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.integer | np.floating):
        raise AudioError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    if not np.isfinite(rate) or rate != int(rate) or rate <= 0:
        raise AudioError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    return int(rate)


def _as_mono_float32(samples: np.ndarray, *, name: str) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise AudioError(f"{name} must be a 1-D mono array of shape (T,), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(
            f"{name} must be floating point (use streamer.audio.check_samples to convert {x.dtype}), "
            f"got dtype {x.dtype}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono signal from `orig_sr` Hz to `target_sr` Hz.

    Args:
        samples: float array, shape (T,).
        orig_sr: rate of `samples` in Hz (positive int).
        target_sr: wanted rate in Hz (positive int).
    Returns:
        float32 array of shape (round(T * target_sr / orig_sr),); a copy even when the rates are equal.
    """
    orig_sr = check_rate(orig_sr, name="orig_sr")
    target_sr = check_rate(target_sr, name="target_sr")
    x = _as_mono_float32(samples, name="samples")
    if orig_sr == target_sr or x.size == 0:
        return x.copy()
    return soxr.resample(x, orig_sr, target_sr, quality=QUALITY).astype(np.float32, copy=False)


class StreamingResampler:
    """Resample a mono stream delivered in blocks of any size, without edge effects between blocks.

    ``np.concatenate([r.process(b) for b in blocks] + [r.flush()])`` equals
    ``resample(np.concatenate(blocks), orig_sr, target_sr)``. Output lags input by the filter delay, so
    `process` may return fewer samples than expected (even none); `flush` returns the rest.
    """

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        self.orig_sr = check_rate(orig_sr, name="orig_sr")
        self.target_sr = check_rate(target_sr, name="target_sr")
        self._stream: soxr.ResampleStream | None = None
        self._finished = False
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when both rates are equal and blocks are returned unchanged."""
        return self.orig_sr == self.target_sr

    def reset(self) -> None:
        """Forget all buffered input and start a new stream."""
        self._finished = False
        if not self.passthrough:
            self._stream = soxr.ResampleStream(self.orig_sr, self.target_sr, 1, dtype="float32", quality=QUALITY)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed one block, shape (N,) at `orig_sr`; return the float32 output ready so far, shape (M,)."""
        x = _as_mono_float32(chunk, name="chunk")
        if self._finished:
            raise AudioError("StreamingResampler.process() called after flush(); call reset() first")
        if self._stream is None:
            return x.copy()
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """End the stream: return the output still held in the filter, shape (M,), float32."""
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
