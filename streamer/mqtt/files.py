"""Whole-file helpers over MQTT: send a recording (paced in real time or as fast as possible) and write
the translation to a file; record any stream's output. Built on ``StreamClient``."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.mqtt.client import ClientConfig, StreamClient
from streamer.mqtt.connection import ConnectionConfig
from streamer.mqtt.events import Event
from streamer.mqtt.protocol import SUPPORTED_SAMPLE_RATES, AudioFrame
from streamer.mqtt.sequence import SequenceTracker

__all__ = ["StreamReport", "record_stream", "send_file"]


@dataclass(frozen=True)
class StreamReport:
    """What happened to one stream, seen from the client. Times in ms.

    ``first_output_ms`` is wall-clock time from the first frame sent to the first translated frame
    received (network and compute included). ``output`` is the translated audio, float32 (N,) at
    ``output_sample_rate``, with lost frames filled with silence.
    """

    stream_id: str
    worker_id: str | None
    frames_sent: int
    frames_received: int
    input_ms: float
    output_ms: float
    output_sample_rate: int | None
    first_output_ms: float | None
    out_gaps: int
    ended_reason: str | None
    events: tuple[Event, ...]
    output: np.ndarray


async def _collect(
    client: StreamClient, *, timeout_s: float
) -> tuple[list[np.ndarray], int | None, float | None, int, int]:
    """Read out frames until the end: (pieces, rate, monotonic time of the first frame, frames, lost)."""
    tracker = SequenceTracker(max_fill_samples=10 * 48_000)
    pieces: list[np.ndarray] = []
    rate: int | None = None
    first: float | None = None
    count = 0
    frame: AudioFrame
    async for frame in client.frames(timeout_s=timeout_s):
        if first is None:
            first = time.monotonic()
        count += 1
        decision = tracker.observe(frame)
        if not decision.accept:
            continue
        if rate is not None and frame.sample_rate != rate:
            continue  # a worker never changes its output rate mid-stream
        rate = frame.sample_rate
        if decision.fill_samples:
            pieces.append(np.zeros(decision.fill_samples, np.float32))
        pieces.append(frame.to_float32())
    return pieces, rate, first, count, tracker.stats.missing


def _report(
    client: StreamClient,
    pieces: list[np.ndarray],
    rate: int | None,
    first_out: float | None,
    first_sent: float | None,
    frames: int,
    gaps: int,
    input_ms: float,
) -> StreamReport:
    output = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    ended = [e for e in client.events if e.kind == "ended"]
    first_ms = None if first_out is None or first_sent is None else 1000.0 * (first_out - first_sent)
    return StreamReport(
        stream_id=client.stream_id,
        worker_id=client.owner,
        frames_sent=client.frames_sent,
        frames_received=frames,
        input_ms=input_ms,
        output_ms=1000.0 * len(output) / rate if rate else 0.0,
        output_sample_rate=rate,
        first_output_ms=first_ms,
        out_gaps=gaps,
        ended_reason=ended[-1]["reason"] if ended else None,
        events=tuple(client.events),
        output=output,
    )


def _write(out_path: str | os.PathLike | None, output: np.ndarray, rate: int | None) -> None:
    if out_path is not None and rate is not None:
        from streamer.audio.io import write_audio

        write_audio(Path(out_path), output, sample_rate=rate)


async def send_file(
    path: str | os.PathLike,
    *,
    stream_id: str,
    out_path: str | os.PathLike | None = None,
    connection: ConnectionConfig | None = None,
    config: ClientConfig | None = None,
    realtime: bool = True,
    timeout_s: float = 30.0,
) -> StreamReport:
    """Translate an audio file through the workers on the broker.

    The file is sent at its own rate if that is supported, else resampled to 16 kHz; ``realtime`` paces
    frames by the wall clock (a live microphone), otherwise they go out as fast as possible. The
    translation is written to ``out_path`` (if given) at the worker's output rate. ``timeout_s`` bounds
    the wait for output after the last frame.
    """
    from streamer.audio.io import read_audio

    samples, rate = read_audio(path, sample_rate=None)
    if rate not in SUPPORTED_SAMPLE_RATES:
        samples, rate = read_audio(path, sample_rate=16000)
    pcm = AudioFrame.from_float(samples, seq=0, sample_rate=rate).samples
    async with StreamClient(stream_id, connection=connection, config=config) as client:
        await client.claim(sample_rate=rate)
        collector = asyncio.create_task(_collect(client, timeout_s=timeout_s))
        frame_s = client.config.frame_ms / 1000
        step = max(1, rate * client.config.frame_ms // 1000)
        start = time.monotonic()
        for i, begin in enumerate(range(0, len(pcm), step)):
            if realtime:
                await asyncio.sleep(max(0.0, start + i * frame_s - time.monotonic()))
            await client.send_frame(pcm[begin : begin + step])
        await client.end()
        pieces, out_rate, first_out, frames, lost = await collector
    report = _report(client, pieces, out_rate, first_out, start, frames, lost, 1000.0 * len(pcm) / rate)
    _write(out_path, report.output, out_rate)
    return report


async def record_stream(
    stream_id: str,
    out_path: str | os.PathLike | None = None,
    *,
    connection: ConnectionConfig | None = None,
    config: ClientConfig | None = None,
    timeout_s: float = 30.0,
) -> StreamReport:
    """Listen to a stream someone else sends: write its translated output until END, ``ended``, or
    ``timeout_s`` without a frame. Does not claim or release anything."""
    cfg = config or ClientConfig(last_will=False)
    if cfg.last_will:
        raise ValueError("record_stream must not register a release as last will; use last_will=False")
    async with StreamClient(stream_id, connection=connection, config=cfg) as client:
        pieces, rate, first, frames, lost = await _collect(client, timeout_s=timeout_s)
    report = _report(client, pieces, rate, first, first, frames, lost, 0.0)
    _write(out_path, report.output, rate)
    return report
