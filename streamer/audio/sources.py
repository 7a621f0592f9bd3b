"""Audio sources: async iterators of fixed-size chunks of mono float32 audio (16 kHz by default).

Naming rule: where the input carries its own rate (a file, a device), `sample_rate` is the rate you
want out; where the input is bare samples (`array_source`, `iterator_source`), `sample_rate` is the rate
of those samples and `target_rate` is the rate you want out.

Every chunk has exactly `chunk_samples(target_rate, chunk_ms)` samples. The last one is zero-padded
to full size when `pad_last=True` (the default; a stream of N samples then gives ceil(N / chunk)
chunks), or returned shorter when `pad_last=False`. Nothing is yielded for empty input.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

import numpy as np

from streamer.audio.io import audio_info, check_samples, open_audio
from streamer.audio.resample import StreamingResampler, check_rate
from streamer.errors import AudioError, AudioFileError

__all__ = ["Chunker", "array_source", "chunk_samples", "file_source", "iterator_source"]

FILE_BLOCK_FRAMES = 65536


def chunk_samples(sample_rate: int, chunk_ms: int) -> int:
    """Samples in one chunk: ``sample_rate * chunk_ms // 1000`` (2560 for 16 kHz, 160 ms); must be >= 1."""
    sample_rate = check_rate(sample_rate)
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int | np.integer) or chunk_ms <= 0:
        raise AudioError(f"chunk_ms must be a positive integer number of milliseconds, got {chunk_ms!r}")
    n = sample_rate * int(chunk_ms) // 1000
    if n < 1:
        raise AudioError(f"chunk_ms={chunk_ms} at {sample_rate} Hz is less than one sample")
    return n


class Chunker:
    """Re-chunk a stream: push blocks of any size (T,), pop chunks of exactly `chunk_samples`.

    Synchronous and not thread-safe; the async sources and MicrophoneSource share it. Popped chunks are
    fresh float32 arrays owned by the caller.
    """

    def __init__(self, chunk_samples: int, *, pad_last: bool = True) -> None:
        if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, int) or chunk_samples < 1:
            raise AudioError(f"chunk_samples must be a positive int, got {chunk_samples!r}")
        self.chunk_samples = chunk_samples
        self.pad_last = pad_last
        self._buf = np.zeros(0, dtype=np.float32)
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Samples pushed but not yet popped."""
        return self._buf.size - self._pos

    def __len__(self) -> int:
        """Number of full chunks ready to pop."""
        return self.buffered // self.chunk_samples

    def push(self, block: np.ndarray) -> None:
        """Append a block of float samples, shape (N,), N >= 0."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise AudioError(f"Chunker.push expects a 1-D block of shape (N,), got shape {block.shape}")
        if block.size:
            self._buf = np.concatenate([self._buf[self._pos :], block])
            self._pos = 0

    def pop(self) -> np.ndarray | None:
        """Return the next full chunk, shape (chunk_samples,), or None if fewer samples are buffered."""
        n = self.chunk_samples
        if self.buffered < n:
            return None
        chunk = self._buf[self._pos : self._pos + n].copy()
        self._pos += n
        return chunk

    def pop_all(self) -> Iterator[np.ndarray]:
        """Yield every full chunk that is ready."""
        while (chunk := self.pop()) is not None:
            yield chunk

    def flush(self) -> np.ndarray | None:
        """End of stream: the remaining partial chunk (zero-padded if `pad_last`), or None if empty.

        Call after `pop_all`; full chunks still buffered are an error.
        """
        rest = self.buffered
        if rest >= self.chunk_samples:
            raise AudioError(f"Chunker.flush() with {len(self)} full chunk(s) still buffered; pop them first")
        if rest == 0:
            return None
        tail = self._buf[self._pos :].copy()
        self._buf, self._pos = np.zeros(0, dtype=np.float32), 0
        if self.pad_last:
            tail = np.concatenate([tail, np.zeros(self.chunk_samples - rest, dtype=np.float32)])
        return tail

    def reset(self) -> None:
        """Drop everything buffered."""
        self._buf, self._pos = np.zeros(0, dtype=np.float32), 0


class _Pacer:
    """Sleep so that chunk i is released at t0 + (i + 1) * chunk_s on the monotonic clock, as a
    microphone would deliver it; deadlines are absolute, so sleep overshoot never accumulates."""

    def __init__(self, chunk_s: float) -> None:
        self.chunk_s = chunk_s
        self.t0: float | None = None
        self.count = 0

    async def wait(self) -> None:
        if self.t0 is None:
            self.t0 = time.monotonic()
        self.count += 1
        delay = self.t0 + self.count * self.chunk_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _chunked(
    blocks: AsyncIterator[np.ndarray] | Iterator[np.ndarray],
    *,
    resampler: StreamingResampler,
    chunker: Chunker,
    pacer: _Pacer | None,
) -> AsyncIterator[np.ndarray]:
    """Resample blocks (already float32 mono at resampler.orig_sr) and yield fixed chunks."""

    async def emit(out: np.ndarray) -> AsyncIterator[np.ndarray]:
        chunker.push(out)
        for chunk in chunker.pop_all():
            if pacer is not None:
                await pacer.wait()
            yield chunk

    if isinstance(blocks, AsyncIterator):
        async for block in blocks:
            async for chunk in emit(resampler.process(block)):
                yield chunk
    else:
        for block in blocks:
            async for chunk in emit(resampler.process(block)):
                yield chunk
    async for chunk in emit(resampler.flush()):
        yield chunk
    last = chunker.flush()
    if last is not None:
        if pacer is not None:
            await pacer.wait()
        yield last


def array_source(
    samples: np.ndarray,
    *,
    sample_rate: int,
    chunk_ms: int = 160,
    realtime: bool = False,
    pad_last: bool = True,
    target_rate: int = 16000,
) -> AsyncIterator[np.ndarray]:
    """Stream an in-memory signal as fixed chunks.

    Args:
        samples: shape (T,) or (T, C) (mixed down), float or int PCM, at `sample_rate` Hz.
        sample_rate: rate of `samples` in Hz.
        chunk_ms: chunk length in ms; chunks have `chunk_samples(target_rate, chunk_ms)` samples.
        realtime: pace chunks like a microphone (chunk i arrives (i + 1) * chunk_ms after the first read).
        pad_last: zero-pad the last chunk to full size (else it is shorter).
        target_rate: rate of the chunks in Hz.
    Validation (shape, dtype, NaN/Inf) happens here, before iteration starts.
    """
    sample_rate = check_rate(sample_rate)
    x = check_samples(samples, sample_rate=sample_rate)
    n = chunk_samples(target_rate, chunk_ms)
    pacer = _Pacer(n / target_rate) if realtime else None
    blocks = iter([x[i : i + FILE_BLOCK_FRAMES] for i in range(0, x.size, FILE_BLOCK_FRAMES)])
    return _chunked(
        blocks,
        resampler=StreamingResampler(sample_rate, target_rate),
        chunker=Chunker(n, pad_last=pad_last),
        pacer=pacer,
    )


def _file_blocks(path: str | os.PathLike) -> Iterator[np.ndarray]:
    with open_audio(path) as f:
        rate, start = int(f.samplerate), 0
        while True:
            try:
                data = f.read(FILE_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (RuntimeError, ValueError) as e:
                msg = f"cannot decode {path} after frame {start}: the file is corrupt ({e})"
                raise AudioFileError(msg) from e
            if data.shape[0] == 0:
                return
            try:
                yield check_samples(data, name=str(path), sample_rate=rate, offset=start)
            except AudioError as e:
                raise AudioFileError(str(e)) from e
            start += data.shape[0]


def file_source(
    path: str | os.PathLike,
    *,
    chunk_ms: int = 160,
    sample_rate: int = 16000,
    realtime: bool = False,
    pad_last: bool = True,
) -> AsyncIterator[np.ndarray]:
    """Stream an audio file as fixed chunks of mono float32 at `sample_rate` Hz.

    The file is checked when this is called (missing, empty, not audio, no frames -> AudioFileError),
    then decoded block by block while iterating, so long files are never loaded whole. The chunks equal
    those of ``array_source(x, sample_rate=sr)`` with ``x, sr = read_audio(path, sample_rate=None)``.
    Other arguments as `array_source`.
    """
    info = audio_info(path)
    n = chunk_samples(sample_rate, chunk_ms)
    pacer = _Pacer(n / sample_rate) if realtime else None
    return _chunked(
        _file_blocks(path),
        resampler=StreamingResampler(info.sample_rate, sample_rate),
        chunker=Chunker(n, pad_last=pad_last),
        pacer=pacer,
    )


async def _checked(blocks: AsyncIterable[np.ndarray] | Iterable[np.ndarray], rate: int) -> AsyncIterator:
    offset = 0
    if isinstance(blocks, AsyncIterable):
        async for block in blocks:
            x = check_samples(block, name="audio block", sample_rate=rate, offset=offset)
            offset += x.size
            yield x
    else:
        for block in blocks:
            x = check_samples(block, name="audio block", sample_rate=rate, offset=offset)
            offset += x.size
            yield x


def iterator_source(
    blocks: AsyncIterable[np.ndarray] | Iterable[np.ndarray],
    *,
    sample_rate: int,
    chunk_ms: int = 160,
    pad_last: bool = True,
    target_rate: int = 16000,
) -> AsyncIterator[np.ndarray]:
    """Re-chunk blocks of any size (each (N,) or (N, C), N may be 0) at `sample_rate` Hz into fixed
    chunks at `target_rate` Hz. Streaming-resampled, so the output equals offline `resample` of the
    concatenated blocks followed by chunking. A bad block raises AudioError when it is reached.
    """
    sample_rate = check_rate(sample_rate)
    n = chunk_samples(target_rate, chunk_ms)
    return _chunked(
        _checked(blocks, sample_rate),
        resampler=StreamingResampler(sample_rate, target_rate),
        chunker=Chunker(n, pad_last=pad_last),
        pacer=None,
    )
