"""`streamer bench` latency runs: each utterance through a session, block by block, and its SimulEval scores.

``simulated`` steps as fast as possible on the audio clock; ``realtime`` paces the input like a
microphone (asyncio) and records when each block's output is ready. `streamer.bench` says what the
figures mean.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from streamer.bench_report import LatencyRun, UtteranceRun
from streamer.latency import ComputeStats, aggregate, compute_latency, segments_from_chunks

if TYPE_CHECKING:
    from streamer.pipeline import Session, Translator


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


@dataclass
class _Trace:
    """One utterance's run: per group of k steps its output audio, step times (ms) and arrival (ms)."""

    outputs: list[np.ndarray] = field(default_factory=list)
    steps_ms: list[list[float]] = field(default_factory=list)
    avail_ms: list[float] = field(default_factory=list)  # realtime only: wall clock since recording start
    first_delivery_ms: float = 0.0


def _step_group(tr: Translator, s: Session, k: int) -> tuple[np.ndarray, list[float]]:
    """Up to k steps while the session is ready; returns their output audio and step times (ms)."""
    times = []
    for _ in range(k):
        if not tr.is_ready(s):
            break
        t = time.perf_counter()
        tr.step(s)
        times.append(1000.0 * (time.perf_counter() - t))
    return s.read_output(), times


def _simulated(tr: Translator, audio: np.ndarray, k: int) -> _Trace:
    s, trace, block = tr.create_session("bench"), _Trace(), k * tr.chunk_samples
    for start in range(0, len(audio), block):
        s.accept_waveform(audio[start:start + block], sample_rate=tr.sample_rate)
        if start + block >= len(audio):
            s.input_finished()
        while tr.is_ready(s):
            out, times = _step_group(tr, s, k)
            trace.outputs.append(out)
            trace.steps_ms.append(times)
            if not s.finished:
                break
    return trace


async def _realtime(tr: Translator, audio: np.ndarray, k: int) -> _Trace:
    """Deliver one block per block duration (asyncio sleeps), step in the default executor."""
    loop = asyncio.get_running_loop()
    s, trace, block, rate = tr.create_session("bench"), _Trace(), k * tr.chunk_samples, tr.sample_rate
    queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
    t0 = time.perf_counter()

    async def microphone() -> None:
        for start in range(0, len(audio), block):
            end = min(start + block, len(audio))
            await asyncio.sleep(max(0.0, t0 + end / rate - time.perf_counter()))
            if start == 0:
                trace.first_delivery_ms = 1000.0 * (time.perf_counter() - t0)
            await queue.put(audio[start:end])
        await queue.put(None)

    mic, delivered = asyncio.create_task(microphone()), 0
    while (piece := await queue.get()) is not None:
        s.accept_waveform(piece, sample_rate=rate)
        delivered += len(piece)
        if delivered >= len(audio):
            s.input_finished()
        while tr.is_ready(s) and (s.finished or delivered - s.chunks_done * tr.chunk_samples >= block):
            out, times = await loop.run_in_executor(None, _step_group, tr, s, k)
            trace.avail_ms.append(1000.0 * (time.perf_counter() - t0))
            trace.outputs.append(out)
            trace.steps_ms.append(times)
    await mic
    return trace


def _score(trace: _Trace, name: str, source_ms: float, block_ms: float, chunk_ms: float, out_rate: int,
           silence_db: float, realtime: bool) -> UtteranceRun:
    group_ms = np.array([sum(t) for t in trace.steps_ms])
    deliver = np.minimum(block_ms * np.arange(1, len(group_ms) + 1), source_ms)
    if realtime:
        avail, first = np.asarray(trace.avail_ms), trace.first_delivery_ms
        lag = np.maximum.accumulate(np.maximum(avail - deliver, 0.0))
        compute_s = np.diff(lag, prepend=0.0) / 1000.0
    else:
        avail, first = np.zeros(len(group_ms)), float(deliver[0])
        for j in range(len(group_ms)):  # the paced clock
            avail[j] = max(avail[j - 1] if j else 0.0, deliver[j]) + group_ms[j]
        compute_s = group_ms / 1000.0
    segments = segments_from_chunks(trace.outputs, sample_rate=out_rate, source_ms=source_ms, chunk_ms=block_ms,
                                    compute_times_s=compute_s, silence_db=silence_db)
    voiced = [j for j, out in enumerate(trace.outputs)
              if segments_from_chunks([out], sample_rate=out_rate, source_ms=1.0, chunk_ms=1.0, silence_db=silence_db)]
    ttfa = float(avail[voiced[0]] - first) if voiced else math.nan
    steps_s = [t / 1000.0 for group in trace.steps_ms for t in group]
    return UtteranceRun(name, source_ms, compute_latency(source_ms, segments), ttfa,
                        ComputeStats.from_times(steps_s, chunk_ms))


def latency_run(tr: Translator, backend: str, utterances: Sequence[tuple[str, np.ndarray]], block_ms: int, *,
                mode: str, silence_db: float, tick: Callable[[], None]) -> LatencyRun:
    """Every utterance through a fresh session in blocks of `block_ms` (a multiple of the model chunk)."""
    k, rss0 = block_ms // tr.config.chunk_ms, rss_mb()
    runs, steps = [], []
    for name, audio in utterances:
        if mode == "realtime":
            trace = asyncio.run(_realtime(tr, audio, k))
        else:
            trace = _simulated(tr, audio, k)
        source_ms = 1000.0 * len(audio) / tr.sample_rate
        runs.append(_score(trace, name, source_ms, block_ms, tr.config.chunk_ms, tr.output_sample_rate,
                           silence_db, mode == "realtime"))
        steps += [t for group in trace.steps_ms for t in group]
        tick()
    ttfas = [r.ttfa_ms for r in runs if not math.isnan(r.ttfa_ms)]
    return LatencyRun(backend, block_ms, mode, aggregate([r.latency for r in runs]),
                      ComputeStats.from_times(np.asarray(steps) / 1000.0, tr.config.chunk_ms),
                      float(np.mean(ttfas)) if ttfas else math.nan, rss_mb(), rss_mb() - rss0, tuple(runs),
                      tuple(steps))
