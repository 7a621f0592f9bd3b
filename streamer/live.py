"""`streamer live`: microphone (or a file played in real time) -> voice gate -> translator -> speaker (or file).

Threads, following STYLE principle 7: the PortAudio callbacks only copy and enqueue (MicrophoneSource,
SpeakerSink); the event loop moves chunks, writes sinks and draws the view; every VAD and model step runs
on one worker thread (`vad.GatedSession`, through a single-thread executor): the loop never runs a model.

Gating (docs/live.md): with the VAD on, audio reaches the translator delayed by the gate's pre-roll, with
everything but voice (plus pre-roll and hangover) replaced by zeros. While there is no voice and the
translator has nothing left to say, chunks are skipped: no model step, one chunk of silence out. After
voice the translator keeps stepping zeros until its unit queue is empty, then it is reset for the next
utterance. Every input chunk gives exactly one output chunk, so output time tracks input time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.audio.devices import find_device
from streamer.audio.io import audio_info
from streamer.audio.mic import MicrophoneSource
from streamer.audio.sinks import SpeakerSink, WavSink
from streamer.audio.sources import file_source
from streamer.live_view import LiveSnapshot, LiveView, to_db, view_enabled
from streamer.pipeline import Translator
from streamer.vad import GatedSession, GatedStep, VadConfig, VoiceGate, load_vad

__all__ = ["LiveConfig", "LiveSession", "LiveStats", "is_audio_path", "run_live"]

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3", ".opus"})
_END = object()


@dataclass(frozen=True)
class LiveConfig:
    """One live session. `input` / `output`: a device index or name (None = the default device), or a
    path to an audio file: an input file is played in real time as if it were a microphone, an output
    file is written instead of playing. Model: `model` (a folder) or the shipped `pair`."""

    input: str | None = None
    output: str | None = None
    pair: str = "en-es"
    model: str | None = None
    backend: str = "eager"
    decoding: str = "auto"   # unit choice (Translator.from_dir): the model's unit LM search, greedy, or auto
    threads: int | None = None
    record_in: str | None = None    # the 16 kHz input as the translator received it (before the gate)
    record_out: str | None = None   # exactly the audio sent to the output
    vad: bool = True
    vad_config: VadConfig = field(default_factory=VadConfig)
    duration_s: float | None = None  # stop after this much input audio
    block_ms: int = 20               # device block: one PortAudio callback per block
    jitter_ms: int = 60              # silence the speaker starts with: slack for compute jitter
    max_backlog_ms: int = 2000       # input waiting for the translator beyond this is dropped and counted
    view: str = "auto"               # "auto" (when stdout is a terminal), "on", "off"


@dataclass(frozen=True)
class LiveStats:
    """What a live session did. Times in seconds of audio unless named _ms."""

    input_s: float
    output_s: float
    chunks: int
    steps: int
    skipped_chunks: int
    utterances: int
    compute_p50_ms: float
    compute_p99_ms: float
    latency_ms: float
    overflows: int
    dropped: int
    underflows: int
    interrupted: bool
    vad: str

    def summary(self) -> str:
        return (f"live: {self.input_s:.2f} s in, {self.output_s:.2f} s out; {self.chunks} chunks, {self.steps} "
                f"model steps, {self.skipped_chunks} skipped as silence, {self.utterances} utterance(s); compute "
                f"p50 {self.compute_p50_ms:.1f} ms p99 {self.compute_p99_ms:.1f} ms; latency ~{self.latency_ms:.0f} "
                f"ms; overflows {self.overflows}, dropped {self.dropped}, underflows {self.underflows}; VAD {self.vad}"
                + ("; stopped by user" if self.interrupted else ""))


def is_audio_path(spec: str | None) -> bool:
    """True when `spec` names an audio file (by its suffix, or because it exists) rather than a device."""
    return spec is not None and (Path(spec).suffix.lower() in AUDIO_SUFFIXES or Path(spec).is_file())


def _device_spec(spec: str | None) -> int | str | None:
    return int(spec) if spec is not None and spec.strip().isdigit() else spec


class LiveSession:
    """A source, a translator and sinks, run by `await run()`. `stop()` ends it cleanly: captured input is
    translated, the translator flushed, the last words played or written and every file closed. Cancelling
    `run()` does the same, then re-raises CancelledError; a second cancellation during that flush aborts it
    (files are still closed and valid)."""

    def __init__(self, translator: Translator, config: LiveConfig, *, sd: Any = None) -> None:
        self.tr, self.config, self._sd = translator, config, sd
        self.chunk_ms = translator.config.chunk_ms
        if config.vad:
            self.gate: VoiceGate | None = VoiceGate(load_vad(config.vad_config.backend), config.vad_config)
            self.vad_name = self.gate.vad.name
        else:
            self.gate, self.vad_name = None, "off"
        self.mic: MicrophoneSource | None = None
        self._speaker: SpeakerSink | None = None
        if is_audio_path(config.input):
            info = audio_info(config.input)  # AudioFileError now, not mid-session
            self.source_label = f"{info.path.name} ({info.sample_rate} Hz, {info.duration_s:.1f} s, real time)"
        else:
            self.mic = MicrophoneSource(_device_spec(config.input), sample_rate=translator.sample_rate,
                                        chunk_ms=self.chunk_ms, block_ms=config.block_ms, sd=sd)
            d = self.mic.device
            self.source_label = f"mic {d.index} {d.name!r} {self.mic.device_rate} Hz"
        if is_audio_path(config.output):
            self.sink_label = f"file {config.output}"
        else:
            d = find_device(_device_spec(config.output), kind="output", sd=sd)
            self.sink_label = f"speaker {d.index} {d.name!r}"
        self._worker = GatedSession(translator, self.gate)
        self._stop_event = asyncio.Event()  # binds to the running loop on first use
        self._interrupted = False
        self._t0 = time.monotonic()
        self.chunks = self.steps = self.skipped = self.dropped_chunks = 0
        self.output_samples = 0
        self._compute: deque[float] = deque(maxlen=512)
        self._pipeline_ms: deque[float] = deque(maxlen=64)
        self._out_buffer_ms = 0.0
        self._last = dict(input_db=-120.0, output_db=-120.0, voice=False, prob=0.0)
        self.phase = self._worker.phase

    # --- numbers --------------------------------------------------------------------------------------
    def _percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._compute, float), q)) if self._compute else float("nan")

    @property
    def latency_ms(self) -> float:
        """Pipeline latency estimate: device block + chunk + measured wait and compute + gate delay + model
        lookahead + measured output buffer (+ device block). The translation lag the model learned is extra."""
        v = self.tr.config.vocoder
        lookahead_ms = 1000.0 * v.lookahead_frames * v.frame_samples / v.sample_rate
        measured = float(np.median(np.fromiter(self._pipeline_ms, float))) if self._pipeline_ms else 0.0
        blocks = self.config.block_ms * ((self.mic is not None) + (not is_audio_path(self.config.output)))
        gate_ms = self.gate.delay_ms if self.gate is not None else 0.0
        return blocks + self.chunk_ms + measured + gate_ms + lookahead_ms + self._out_buffer_ms

    def snapshot(self) -> LiveSnapshot:
        """The numbers the view draws; call on the event loop."""
        cfg = self.tr.config
        return LiveSnapshot(
            title=f"{cfg.source_lang}→{cfg.target_lang}", source=self.source_label, sink=self.sink_label,
            vad=self.vad_name, elapsed_s=time.monotonic() - self._t0, input_s=self.chunks * self.chunk_ms / 1000,
            input_db=self._last["input_db"], voice=self._last["voice"], voice_prob=self._last["prob"],
            output_db=self._last["output_db"], phase=self.phase, compute_p50_ms=self._percentile(50),
            compute_p99_ms=self._percentile(99), chunk_ms=self.chunk_ms, latency_ms=self.latency_ms,
            overflows=self.mic.overflows if self.mic else 0, dropped=self._dropped(),
            underflows=self._underflows(), steps=self.steps, skipped=self.skipped)

    def _dropped(self) -> int:
        return self.dropped_chunks + (self.mic.dropped_blocks if self.mic else 0)

    def _underflows(self) -> int:
        return self._speaker.underflows if self._speaker is not None else 0

    def stats(self) -> LiveStats:
        return LiveStats(
            input_s=self.chunks * self.chunk_ms / 1000, output_s=self.output_samples / self.tr.output_sample_rate,
            chunks=self.chunks, steps=self.steps, skipped_chunks=self.skipped, utterances=self._worker.utterances,
            compute_p50_ms=self._percentile(50), compute_p99_ms=self._percentile(99), latency_ms=self.latency_ms,
            overflows=self.mic.overflows if self.mic else 0, dropped=self._dropped(), underflows=self._underflows(),
            interrupted=self._interrupted, vad=self.vad_name)

    # --- control --------------------------------------------------------------------------------------
    def stop(self, *, interrupted: bool = True) -> None:
        """Ask the session to end (from the event loop's thread): stop the source, finish cleanly."""
        self._interrupted = self._interrupted or interrupted
        self._stop_event.set()

    async def run(self) -> LiveStats:
        """Run until the input ends, `duration_s` is reached, `stop()` or cancellation."""
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="streamer-live")
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._source_error: BaseException | None = None
        self._open_sinks()
        self._t0 = time.monotonic()
        pump = asyncio.create_task(self._pump())
        watcher = asyncio.create_task(self._watch(pump))
        cancelled = False
        try:
            try:
                await self._consume(loop)
            except asyncio.CancelledError:
                cancelled, self._interrupted = True, True
                self._stop_event.set()
                await self._consume(loop)
            self.phase = "stopping"
            fut = loop.run_in_executor(self._executor, self._worker.finish)
            try:
                step = await asyncio.shield(fut)
            except asyncio.CancelledError:  # a second Ctrl-C / cancel: cut the flush short after this step
                self._worker.abort.set()
                self._emit(await fut, time.monotonic(), final=True)
                raise
            self._emit(step, time.monotonic(), final=True)
            self.phase = "stopped"
            if self._speaker is not None:
                await self._speaker.aclose()
        finally:
            for task in (pump, watcher):
                task.cancel()
            self._close_sinks()
            if self.mic is not None:
                await self.mic.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
        if cancelled:
            raise asyncio.CancelledError
        if self._source_error is not None:
            raise self._source_error
        return self.stats()

    def _open_sinks(self) -> None:
        out_rate, cfg = self.tr.output_sample_rate, self.config
        self._files: list[WavSink] = []
        self._output: Any
        if is_audio_path(cfg.output):
            self._output = WavSink(cfg.output, sample_rate=out_rate)
            self._files.append(self._output)
        else:
            self._speaker = SpeakerSink(_device_spec(cfg.output), sample_rate=out_rate, block_ms=cfg.block_ms,
                                        jitter_ms=cfg.jitter_ms, sd=self._sd)
            self._output = self._speaker
        self._rec_in = WavSink(cfg.record_in, sample_rate=self.tr.sample_rate) if cfg.record_in else None
        self._rec_out = WavSink(cfg.record_out, sample_rate=out_rate) if cfg.record_out else None
        self._files += [f for f in (self._rec_in, self._rec_out) if f is not None]

    def _close_sinks(self) -> None:
        for f in self._files:
            f.close()
        if self._speaker is not None:
            self._speaker.close()  # no-op after aclose(); after an abort it plays out what it holds

    async def _pump(self) -> None:
        """Source -> queue. Full queue: the chunk is dropped and counted (the translator is too slow)."""
        limit = max(1, self.config.max_backlog_ms // self.chunk_ms)
        try:
            if self.mic is not None:
                source = self.mic
            else:
                source = file_source(self.config.input, chunk_ms=self.chunk_ms, sample_rate=self.tr.sample_rate,
                                     realtime=True)
            async for chunk in source:
                if self._queue.qsize() >= limit:
                    self.dropped_chunks += 1
                    continue
                self._queue.put_nowait((chunk, time.monotonic()))
        except asyncio.CancelledError:
            pass
        except Exception as e:  # a device that stalls or a file that turns out corrupt: end, then re-raise
            self._source_error = e
        finally:
            self._queue.put_nowait(_END)

    async def _watch(self, pump: asyncio.Task) -> None:
        """On stop(): close the microphone (what it captured still arrives) or stop reading the file."""
        await self._stop_event.wait()
        if self.mic is not None:
            await self.mic.close()
        else:
            pump.cancel()

    async def _consume(self, loop: asyncio.AbstractEventLoop) -> None:
        while (item := await self._queue.get()) is not _END:
            chunk, arrived = item
            self.chunks += 1
            self._last["input_db"] = to_db(float(np.sqrt(np.mean(chunk ** 2))))
            if self._rec_in is not None:
                self._rec_in.write(chunk)
            fut = loop.run_in_executor(self._executor, self._worker.process, chunk)
            try:
                step = await asyncio.shield(fut)
            except asyncio.CancelledError:
                self._emit(await fut, arrived)  # the step in flight finishes and its audio is kept
                raise
            self._emit(step, arrived)
            if self.config.duration_s is not None and self.chunks * self.chunk_ms >= 1000 * self.config.duration_s:
                self.stop(interrupted=False)

    def _emit(self, step: GatedStep, arrived: float, *, final: bool = False) -> None:
        self.steps += len(step.compute_ms)
        self.skipped += not step.compute_ms and not final
        self._compute.extend(step.compute_ms)
        self.phase = step.phase
        self._last.update(voice=step.voiced, prob=step.prob,
                          output_db=to_db(float(np.sqrt(np.mean(step.out ** 2)))) if len(step.out) else -120.0)
        if self._speaker is not None:
            if self.output_samples == 0:  # start `jitter_ms` behind: slack for compute jitter
                self._speaker.write(np.zeros(self.tr.output_sample_rate * self.config.jitter_ms // 1000, np.float32))
            self._out_buffer_ms = 0.8 * self._out_buffer_ms + 0.2 * self._speaker.buffered_ms
        self._output.write(step.out)
        if self._rec_out is not None:
            self._rec_out.write(step.out)
        self.output_samples += len(step.out)
        self._pipeline_ms.append(1000.0 * (time.monotonic() - arrived))


def load_live_translator(config: LiveConfig) -> Translator:
    from streamer.engine import BackendConfig

    backend = BackendConfig(name=config.backend, num_threads=config.threads)
    if config.model:
        return Translator.from_dir(config.model, backend=backend, decoding=config.decoding)
    return Translator.from_pretrained(config.pair, backend=backend, decoding=config.decoding)


def _check_endpoints(config: LiveConfig, sd: Any) -> None:
    """Fail fast, before loading a model, when an input or output device is missing."""
    if not is_audio_path(config.input):
        find_device(_device_spec(config.input), kind="input", sd=sd)
    if not is_audio_path(config.output):
        find_device(_device_spec(config.output), kind="output", sd=sd)


async def _main(session: LiveSession, show_view: bool) -> LiveStats:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    presses = 0

    def on_sigint() -> None:  # first Ctrl-C: finish cleanly; second: abort the flush
        nonlocal presses
        presses += 1
        if presses == 1:
            session.stop()
        else:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        installed = False
    try:
        if not show_view:
            return await session.run()
        async with LiveView(session.snapshot):
            return await session.run()
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def run_live(config: LiveConfig, *, sd: Any = None) -> LiveStats:
    """Run a live session to its end (input over, `duration_s`, or Ctrl-C) and return its stats.

    `sd` is a sounddevice-like module (tests pass a fake); None = the real sounddevice. Raises DeviceError
    (with a hint) when a device is missing, ModelError / AudioFileError for a bad model or input file,
    KeyboardInterrupt when a second Ctrl-C aborts the final flush.
    """
    _check_endpoints(config, sd)
    translator = load_live_translator(config)
    session = LiveSession(translator, config, sd=sd)
    try:
        return asyncio.run(_main(session, view_enabled(config.view)))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
