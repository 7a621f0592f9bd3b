"""Audio sinks: a file (`WavSink`), a speaker (`SpeakerSink`) and an asyncio queue (`QueueSink`).

All share the `AudioSink` protocol: ``write(samples)`` takes mono audio of shape (T,) (or (T, C), mixed
down) at the sink's `sample_rate`, and ``close()`` finishes the sink (idempotent). No `write` blocks the
event loop for longer than a short file write or a lock; SpeakerSink hands audio to PortAudio's thread
through a jitter buffer.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import soundfile as sf

from streamer.audio.devices import DeviceInfo, find_device, negotiate_settings, sounddevice_module
from streamer.audio.io import check_samples
from streamer.audio.resample import StreamingResampler, check_rate
from streamer.audio.sources import chunk_samples
from streamer.errors import AudioError, AudioFileError, DeviceError

__all__ = ["AudioSink", "QueueSink", "SpeakerSink", "WavSink"]


@runtime_checkable
class AudioSink(Protocol):
    """Anything that takes audio: ``write(samples (T,) float32)`` then ``close()``."""

    def write(self, samples: np.ndarray) -> None: ...

    def close(self) -> None: ...


class WavSink:
    """Stream audio into a file (format from the extension; 16-bit PCM WAV by default).

    Samples are clipped to [-1, 1] for PCM subtypes. Parent directories are created. Use as a context
    manager or call `close()`, which flushes and finalises the header.
    """

    def __init__(self, path: str | os.PathLike, *, sample_rate: int, subtype: str = "PCM_16") -> None:
        self.path = Path(path)
        self.sample_rate = check_rate(sample_rate)
        self.subtype = subtype
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file: sf.SoundFile | None = sf.SoundFile(
                self.path, mode="w", samplerate=self.sample_rate, channels=1, subtype=subtype
            )
        except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
            raise AudioFileError(f"cannot open {self.path} for writing (subtype {subtype}): {e}") from e

    def write(self, samples: np.ndarray) -> None:
        """Append samples, shape (T,), at `sample_rate` Hz."""
        if self._file is None:
            raise AudioError(f"WavSink({self.path}) is closed")
        x = check_samples(samples, sample_rate=self.sample_rate, offset=self.frames_written)
        if self.subtype.startswith("PCM"):
            x = np.clip(x, -1.0, 1.0)
        self._file.write(x)
        self.frames_written += x.size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WavSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QueueSink:
    """An unbounded asyncio.Queue of float32 arrays; `close()` enqueues None to mark the end.

    Use from the event loop's thread only. ``async for samples in sink`` yields until the end marker.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
        self.closed = False

    def write(self, samples: np.ndarray) -> None:
        if self.closed:
            raise AudioError("QueueSink is closed")
        self.queue.put_nowait(check_samples(samples).copy())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    async def get(self) -> np.ndarray | None:
        """The next array, or None once the sink is closed and emptied."""
        return await self.queue.get()

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        while (item := await self.queue.get()) is not None:
            yield item


class SpeakerSink:
    """Play audio on an output device through a jitter buffer.

    `write` resamples to the device rate and appends to a thread-safe buffer, never waiting for the
    device. The PortAudio callback (its own thread) starts playing once `jitter_ms` of audio is
    buffered; when it later finds less than a block it plays what there is plus silence, counts one
    `underflows`, and waits again for `jitter_ms`. `drain()` plays out everything written (with no
    jitter wait and no underflow count for the final partial block); `close()` drains, then stops.

    Args:
        device: index or name substring; None = the default output device.
        sample_rate: rate of the written samples in Hz (the device may run at another rate).
        block_ms: PortAudio block length in ms.
        jitter_ms: audio buffered before playback (re)starts.
        sd: a sounddevice-like module; None = the real sounddevice.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        sample_rate: int,
        block_ms: int = 20,
        jitter_ms: int = 60,
        sd: Any = None,
    ) -> None:
        self.sample_rate = check_rate(sample_rate)
        self._sd = sounddevice_module(sd)
        self.device: DeviceInfo = find_device(device, kind="output", sd=self._sd)
        self.device_rate, self.channels = negotiate_settings(
            self._sd, self.device, kind="output", sample_rate=self.sample_rate
        )
        self.block_frames = chunk_samples(self.device_rate, block_ms)
        self.prebuffer_frames = self.device_rate * max(jitter_ms, 0) // 1000
        self.underflows = 0
        self.device_underflows = 0
        self.frames_played = 0
        self._resampler = StreamingResampler(self.sample_rate, self.device_rate)
        self._cond = threading.Condition()
        self._blocks: deque[np.ndarray] = deque()
        self._head = 0
        self._buffered = 0
        self._playing = False
        self._draining = False
        self._closed = False
        self._stream = self._open()

    def _open(self) -> Any:
        try:
            stream = self._sd.OutputStream(
                device=self.device.index,
                samplerate=self.device_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block_frames,
                callback=self._callback,
            )
            stream.start()
        except Exception as e:  # PortAudioError and friends
            msg = f"cannot open output device {self.device.index} ({self.device.name!r}): {e}"
            raise DeviceError(msg) from e
        return stream

    @property
    def buffered_ms(self) -> float:
        """Audio written but not yet handed to the device, in ms."""
        return 1000.0 * self._buffered / self.device_rate

    def write(self, samples: np.ndarray) -> None:
        """Queue samples, shape (T,), at `sample_rate` Hz for playback; returns at once."""
        if self._closed:
            raise AudioError("SpeakerSink is closed")
        self._append(self._resampler.process(check_samples(samples, sample_rate=self.sample_rate)))

    def _append(self, x: np.ndarray) -> None:
        if x.size:
            with self._cond:
                self._blocks.append(x)
                self._buffered += x.size

    # --- PortAudio thread ---------------------------------------------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if getattr(status, "output_underflow", False):
            self.device_underflows += 1
        with self._cond:
            if not self._playing:
                ready = self._buffered >= max(self.prebuffer_frames, 1)
                self._playing = ready or (self._draining and self._buffered > 0)
            got = self._take_into(outdata, frames) if self._playing else 0
            if self._playing and got < frames and not self._draining:
                self.underflows += 1
                self._playing = False
            if self._buffered == 0:
                self._cond.notify_all()
        outdata[got:] = 0.0
        self.frames_played += got

    def _take_into(self, outdata: np.ndarray, frames: int) -> int:
        filled = 0
        while filled < frames and self._blocks:
            head = self._blocks[0]
            n = min(head.size - self._head, frames - filled)
            outdata[filled : filled + n] = head[self._head : self._head + n, None]
            filled += n
            self._head += n
            if self._head == head.size:
                self._blocks.popleft()
                self._head = 0
        self._buffered -= filled
        return filled

    # --- ending ---------------------------------------------------------------------------------------
    def _start_drain(self) -> None:
        self._append(self._resampler.flush())
        self._resampler.reset()
        with self._cond:
            self._draining = True

    def drain(self, *, timeout: float | None = None) -> bool:
        """Block until everything written has been handed to the device; False on timeout.

        Ends the current stretch of audio (the resampler's tail is flushed); writing afterwards is fine.
        """
        self._start_drain()
        with self._cond:
            done = self._cond.wait_for(lambda: self._buffered == 0, timeout)
            self._draining = False
        return done

    async def adrain(self, *, timeout: float | None = None) -> bool:
        """`drain` for the event loop: polls every block instead of blocking the loop."""
        self._start_drain()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._buffered > 0 and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(self.block_frames / self.device_rate)
        with self._cond:
            self._draining = False
            return self._buffered == 0

    def close(self) -> None:
        """Drain (waiting at most the buffered duration + 1 s), then stop and close the stream."""
        if self._closed:
            return
        self._closed = True
        self.drain(timeout=self.buffered_ms / 1000 + 1.0)
        self._stop()

    async def aclose(self) -> None:
        """`close` for the event loop."""
        if self._closed:
            return
        self._closed = True
        await self.adrain(timeout=self.buffered_ms / 1000 + 1.0)
        self._stop()

    def _stop(self) -> None:
        try:
            self._stream.stop()
        finally:
            self._stream.close()

    def __enter__(self) -> SpeakerSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
