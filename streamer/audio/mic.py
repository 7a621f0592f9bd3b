"""Microphone source: a sounddevice InputStream as an async iterator of fixed chunks.

The PortAudio callback runs on PortAudio's thread and only copies the block and hands it to the event
loop (`loop.call_soon_threadsafe`); mixing down, resampling and chunking happen on the loop when the
consumer asks for the next chunk. Nothing is lost silently: PortAudio input overflows are counted in
`overflows`, blocks dropped because the consumer fell behind in `dropped_blocks`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np

from streamer.audio.devices import DeviceInfo, find_device, negotiate_settings, sounddevice_module
from streamer.audio.resample import StreamingResampler, check_rate
from streamer.audio.sources import Chunker, chunk_samples
from streamer.errors import AudioError, DeviceError

__all__ = ["MicrophoneSource"]

_END = object()


class MicrophoneSource:
    """Fixed chunks, shape (chunk_samples,), float32 mono at `sample_rate` Hz, from an input device.

    ``async with MicrophoneSource() as mic: async for chunk in mic: ...``

    Args:
        device: index or case-insensitive name substring; None = the default input device.
        sample_rate: rate of the chunks in Hz. The device is opened at this rate if it supports it,
            else at its default rate, and resampled.
        chunk_ms: chunk length in ms (160 ms = 2560 samples at 16 kHz).
        block_ms: PortAudio block length in ms (one callback per block).
        max_queue_ms: audio allowed to wait for the consumer; newer blocks beyond it are dropped
            and counted in `dropped_blocks`.
        stall_timeout_s: raise DeviceError when no block arrives for this long (None = wait forever).
        sd: a sounddevice-like module (tests pass a fake); None = the real sounddevice.
    The device is looked up here (DeviceError, with a hint, when there is none); the stream opens on
    `start()` / `async with` / the first `__anext__`, and iteration ends after `close()` once the audio
    captured before it has been delivered (the last partial chunk zero-padded).
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        sample_rate: int = 16000,
        chunk_ms: int = 160,
        block_ms: int = 20,
        max_queue_ms: int = 2000,
        stall_timeout_s: float | None = 5.0,
        sd: Any = None,
    ) -> None:
        self.sample_rate = check_rate(sample_rate)
        self.chunk_samples = chunk_samples(self.sample_rate, chunk_ms)
        if block_ms <= 0 or max_queue_ms < block_ms:
            raise AudioError(f"need 0 < block_ms <= max_queue_ms, got {block_ms=} {max_queue_ms=}")
        self._sd = sounddevice_module(sd)
        self.device: DeviceInfo = find_device(device, kind="input", sd=self._sd)
        self.device_rate, self.channels = negotiate_settings(
            self._sd, self.device, kind="input", sample_rate=self.sample_rate
        )
        self.block_frames = chunk_samples(self.device_rate, block_ms)
        self.max_queue_blocks = max_queue_ms // block_ms
        self.stall_timeout_s = stall_timeout_s
        self.overflows = 0
        self.dropped_blocks = 0
        self.blocks_received = 0
        self._resampler = StreamingResampler(self.device_rate, self.sample_rate)
        self._chunker = Chunker(self.chunk_samples)
        self._ready: deque[np.ndarray] = deque()
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._closed = False
        self._ended = False

    async def __aenter__(self) -> MicrophoneSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open and start the input stream (idempotent); DeviceError if PortAudio refuses."""
        if self._stream is not None or self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        try:
            stream = self._sd.InputStream(
                device=self.device.index,
                samplerate=self.device_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block_frames,
                callback=self._callback,
                finished_callback=self._on_finished,
            )
            stream.start()
        except Exception as e:  # PortAudioError and friends
            msg = f"cannot open input device {self.device.index} ({self.device.name!r}): {e}"
            raise DeviceError(msg) from e
        self._stream = stream

    # --- PortAudio thread: copy and hand over, nothing else -------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if getattr(status, "input_overflow", False):
            self.overflows += 1
        try:
            self._loop.call_soon_threadsafe(self._enqueue, indata.copy())
        except RuntimeError:  # the event loop is closed
            self.dropped_blocks += 1

    def _on_finished(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._enqueue, _END)
        except RuntimeError:
            pass

    # --- event loop -----------------------------------------------------------------------------------
    def _enqueue(self, item: Any) -> None:
        if item is not _END:
            self.blocks_received += 1
            if self._queue.qsize() >= self.max_queue_blocks:
                self.dropped_blocks += 1
                return
        self._queue.put_nowait(item)

    def __aiter__(self) -> MicrophoneSource:
        return self

    async def __anext__(self) -> np.ndarray:
        await self.start()
        while not self._ready:
            if self._ended or self._queue is None:
                raise StopAsyncIteration
            item = await self._next_item()
            if item is _END:
                self._finish()
            else:
                self._chunker.push(self._resampler.process(self._mono(item)))
                self._ready.extend(self._chunker.pop_all())
        return self._ready.popleft()

    async def _next_item(self) -> Any:
        try:
            return await asyncio.wait_for(self._queue.get(), self.stall_timeout_s)
        except TimeoutError:
            raise DeviceError(
                f"input device {self.device.index} ({self.device.name!r}) delivered no audio "
                f"for {self.stall_timeout_s} s"
            ) from None

    def _mono(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            return block
        return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)

    def _finish(self) -> None:
        self._ended = True
        self._chunker.push(self._resampler.flush())
        self._ready.extend(self._chunker.pop_all())
        last = self._chunker.flush()
        if last is not None:
            self._ready.append(last)

    async def close(self) -> None:
        """Stop capturing (idempotent). Chunks already captured are still delivered by iteration."""
        if self._closed:
            return
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()
        if self._queue is not None:
            # After stop() no callback runs, and blocks it handed over are already scheduled on the loop;
            # call_soon runs after them, so END is queued behind every captured block.
            self._loop.call_soon(self._enqueue, _END)
