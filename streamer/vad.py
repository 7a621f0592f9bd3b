"""Voice activity gating for live input: silence and background noise never reach the translator.

Two frame classifiers share one small protocol (`FrameVAD`: 32 ms frames of 16 kHz audio in, a speech
probability out):

- `SileroVAD`: the Silero VAD network (MIT) run with ONNX Runtime on one thread. Its weights ship inside
  the `silero-vad` wheel, so nothing is downloaded; we read the .onnx file from the installed package
  without importing it (importing it calls `torch.set_num_threads(1)` for the whole process) and keep
  its recurrent state explicit here. About 0.2 ms per frame on one CPU core.
- `EnergyVAD`: a fallback with no dependencies: band energy (250-4000 Hz) over a minimum-statistics
  noise floor, damped by spectral flatness (noise is flat, voiced speech is not).

`VoiceGate` turns frame probabilities into a gate with hysteresis, a hangover after speech and a
pre-roll before it: audio leaves the gate delayed by `delay_samples`, and a sample passes when voice
was detected within `preroll_ms` after it or `hangover_ms` before it; every other sample becomes 0.
The delay is what lets the pre-roll keep word starts that the classifier only recognises 30-100 ms
late. `GatedSession` puts a translator session behind the gate: no model step while there is nothing
to translate, exactly one chunk of output per chunk of input. docs/live.md gives the measured numbers.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamer.errors import StreamerError

if TYPE_CHECKING:
    from streamer.pipeline import Session, Translator

__all__ = [
    "EnergyVAD", "FrameVAD", "GateResult", "GatedSession", "GatedStep", "SileroVAD", "VadConfig", "VoiceGate",
    "load_vad",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the frame Silero VAD is built for
VAD_BACKENDS = ("auto", "silero", "energy")


@dataclass(frozen=True)
class VadConfig:
    """How the gate decides.

    backend: "silero", "energy", or "auto" (silero when `silero-vad` and `onnxruntime` are installed).
    threshold: a frame with speech probability >= threshold starts voice.
    neg_threshold: voice continues while the probability stays >= this (hysteresis).
    preroll_ms: audio kept before the first voiced frame; the gate delays audio by this plus one frame.
    hangover_ms: audio kept after the last voiced frame.
    """

    backend: str = "auto"
    threshold: float = 0.5
    neg_threshold: float = 0.35
    preroll_ms: int = 224
    hangover_ms: int = 256

    def __post_init__(self) -> None:
        if self.backend not in VAD_BACKENDS:
            raise ValueError(f"VAD backend must be one of {VAD_BACKENDS}, got {self.backend!r}")
        if not 0.0 <= self.neg_threshold <= self.threshold <= 1.0:
            raise ValueError(f"need 0 <= neg_threshold <= threshold <= 1, got {self.neg_threshold}, {self.threshold}")
        if self.preroll_ms < 0 or self.hangover_ms < 0:
            raise ValueError(f"preroll_ms and hangover_ms must be >= 0, got {self.preroll_ms}, {self.hangover_ms}")


class FrameVAD(Protocol):
    """Speech probability of consecutive frames: (FRAME_SAMPLES,) float32 at 16 kHz -> float in [0, 1]."""

    name: str

    def prob(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


def silero_model_path() -> Path | None:
    """The ONNX file inside the installed silero-vad package (found without importing it), or None."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "silero_vad.onnx"
    return path if path.is_file() else None


class SileroVAD:
    """Silero VAD v5+ on ONNX Runtime, one thread. State: an LSTM state (2, 1, 128) and the last 64 samples."""

    name = "silero"
    context_samples = 64

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path else silero_model_path()
        if path is None:
            raise StreamerError("silero VAD is not installed: `pip install silero-vad onnxruntime`, "
                                "or use the energy VAD")
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise StreamerError("silero VAD needs onnxruntime: `pip install onnxruntime`") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.context_samples, dtype=np.float32)

    def prob(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, np.asarray(frame, dtype=np.float32)])[None, :]
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[0, -self.context_samples:]
        return float(np.asarray(out).reshape(-1)[0])


class EnergyVAD:
    """Band energy above a tracked noise floor, damped by spectral flatness. No model, ~0.05 ms a frame.

    The noise floor is the minimum band energy over the last `floor_window_s` (minimum statistics), so
    it follows stationary noise within that time; the floor never goes below `min_floor_db`.
    """

    name = "energy"

    def __init__(self, *, floor_window_s: float = 3.0, min_floor_db: float = -75.0, snr_lo_db: float = 6.0,
                 snr_hi_db: float = 15.0, flat_lo: float = 0.3, flat_hi: float = 0.55) -> None:
        self.window_frames = max(1, round(floor_window_s * SAMPLE_RATE / FRAME_SAMPLES))
        self.min_floor_db, self.snr_lo_db, self.snr_hi_db = min_floor_db, snr_lo_db, snr_hi_db
        self.flat_lo, self.flat_hi = flat_lo, flat_hi
        freqs = np.fft.rfftfreq(FRAME_SAMPLES, 1 / SAMPLE_RATE)
        self._band = (freqs >= 250) & (freqs <= 4000)
        self._window = np.hanning(FRAME_SAMPLES).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self._history: deque[float] = deque(maxlen=self.window_frames)

    def features(self, frame: np.ndarray) -> tuple[float, float]:
        """(band energy in dB, spectral flatness in [0, 1]) of one frame."""
        power = np.abs(np.fft.rfft(np.asarray(frame, dtype=np.float32) * self._window)[self._band]) ** 2 + 1e-12
        energy_db = 10.0 * np.log10(power.mean() / FRAME_SAMPLES)
        flatness = float(np.exp(np.log(power).mean()) / power.mean())
        return float(energy_db), flatness

    def prob(self, frame: np.ndarray) -> float:
        energy_db, flatness = self.features(frame)
        self._history.append(energy_db)
        floor = max(min(self._history), self.min_floor_db)
        loud = np.clip((energy_db - floor - self.snr_lo_db) / (self.snr_hi_db - self.snr_lo_db), 0.0, 1.0)
        tonal = np.clip((self.flat_hi - flatness) / (self.flat_hi - self.flat_lo), 0.0, 1.0)
        return float(loud * tonal)


def load_vad(backend: str = "auto") -> FrameVAD:
    """A frame classifier by name; "auto" is silero when it can load, else energy (logged)."""
    if backend not in VAD_BACKENDS:
        raise ValueError(f"VAD backend must be one of {VAD_BACKENDS}, got {backend!r}")
    if backend == "energy":
        return EnergyVAD()
    try:
        return SileroVAD()
    except StreamerError as e:
        if backend == "silero":
            raise
        log.info("using the energy VAD: %s", e)
        return EnergyVAD()


@dataclass(frozen=True)
class GateResult:
    """What one `VoiceGate.process` call released.

    samples: (T,) float32, the input delayed by `delay_samples`, zero where the gate was closed.
    voiced: True when any released sample passed the gate.
    prob: the highest speech probability among the frames classified in this call (0 if none).
    vad_ms: wall-clock time spent classifying.
    """

    samples: np.ndarray
    voiced: bool
    prob: float
    vad_ms: float


class VoiceGate:
    """Streaming gate over 16 kHz mono audio: `process(x)` returns exactly len(x) samples, delayed.

    Frame g (32 ms) is classified when it is complete; frame f = g - P (P = pre-roll frames) is then
    decided: open when any frame in [f - H, g] was voiced (H = hangover frames). A sample is released
    once its frame is decided, which needs a fixed delay of (P + 1) frames. Not thread-safe: one caller.
    """

    def __init__(self, vad: FrameVAD, config: VadConfig = VadConfig()) -> None:
        self.vad = vad
        self.config = config
        self.preroll_frames = round(config.preroll_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES)
        self.hangover_frames = round(config.hangover_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES)
        self.delay_samples = (self.preroll_frames + 1) * FRAME_SAMPLES
        self.reset()

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self.delay_samples / SAMPLE_RATE

    def reset(self) -> None:
        """Forget everything; the delay line is refilled with (closed) zeros."""
        self.vad.reset()
        self._fifo = np.zeros(self.delay_samples, dtype=np.float32)  # samples not yet released
        self._fifo_start = -self.delay_samples  # absolute index of _fifo[0]
        self._pending = np.zeros(0, dtype=np.float32)  # samples of the frame being filled
        self._frames = 0  # frames classified
        self._voice = False  # hysteresis state
        self._last_voiced = -(1 << 30)  # index of the last voiced frame
        self._decided: deque[bool] = deque()  # open flag of frames _first_decided, _first_decided + 1, ...
        self._first_decided = 0
        self.voiced_frames = 0
        self.frames_classified = 0

    def _classify(self, frame: np.ndarray) -> float:
        p = self.vad.prob(frame)
        self._voice = p >= (self.config.neg_threshold if self._voice else self.config.threshold)
        g = self._frames
        self._frames += 1
        self.frames_classified += 1
        if self._voice:
            self._last_voiced = g
            self.voiced_frames += 1
        f = g - self.preroll_frames
        if f >= 0:
            self._decided.append(self._last_voiced >= f - self.hangover_frames)
        return p

    def process(self, samples: np.ndarray) -> GateResult:
        """Push (T,) float32 samples at 16 kHz; returns T samples, delayed by `delay_samples` and gated."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        start = time.perf_counter()
        self._pending = np.concatenate([self._pending, x])
        probs = [0.0]
        n_full = len(self._pending) // FRAME_SAMPLES
        for i in range(n_full):
            probs.append(self._classify(self._pending[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]))
        self._pending = self._pending[n_full * FRAME_SAMPLES:]
        vad_ms = 1000.0 * (time.perf_counter() - start)
        self._fifo = np.concatenate([self._fifo, x])
        out, voiced = self._release(len(x))
        return GateResult(out, voiced, max(probs), vad_ms)

    def flush(self) -> GateResult:
        """End of stream: decide the remaining frames (the future is silence) and release the
        `delay_samples` still held, so that the total output equals the total input plus the delay."""
        start = time.perf_counter()
        held = len(self._pending)
        if held:
            self._classify(np.concatenate([self._pending, np.zeros(FRAME_SAMPLES - held, np.float32)]))
            self._pending = np.zeros(0, dtype=np.float32)
        end_frame = (self._fifo_start + len(self._fifo) - 1) // FRAME_SAMPLES
        while self._first_decided + len(self._decided) <= end_frame:
            f = self._first_decided + len(self._decided)
            self._decided.append(self._last_voiced >= f - self.hangover_frames)
        vad_ms = 1000.0 * (time.perf_counter() - start)
        out, voiced = self._release(len(self._fifo))
        return GateResult(out, voiced, 0.0, vad_ms)

    def _release(self, n: int) -> tuple[np.ndarray, bool]:
        out, self._fifo = self._fifo[:n].copy(), self._fifo[n:]
        first = self._fifo_start
        self._fifo_start += n
        mask = np.zeros(n, dtype=bool)
        idx = np.arange(first, first + n)
        real = idx >= 0  # the initial zeros of the delay line are never voice
        if real.any():
            frames = idx[real] // FRAME_SAMPLES - self._first_decided
            if frames.max() >= len(self._decided):  # cannot happen with delay = (P + 1) frames
                raise RuntimeError("VoiceGate released a sample before its frame was decided")
            flags = np.fromiter(self._decided, dtype=bool, count=len(self._decided))
            mask[real] = flags[frames]
        out[~mask] = 0.0
        # Frames whose every sample has been released are no longer needed.
        done = min(max(0, self._fifo_start // FRAME_SAMPLES - self._first_decided), len(self._decided))
        for _ in range(done):
            self._decided.popleft()
        self._first_decided += done
        return out, bool(mask.any())


@dataclass(frozen=True)
class GatedStep:
    """What `GatedSession` made of one input chunk (or of the end of input).

    out: (N,) float32 output audio at the translator's output rate; compute_ms: one entry per model step run
    (empty when the chunk was skipped as silence); voiced/prob: the gate's view; phase: the state after it.
    """

    out: np.ndarray
    compute_ms: tuple[float, ...]
    voiced: bool
    prob: float
    phase: str


class GatedSession:
    """One translator session behind a voice gate (None = no gate): each input chunk gives one chunk out.

    Phases: "listening" (no voice: chunks are skipped, silence out, no model step), "speech" (gated audio
    goes in), "closing" (voice ended: zeros go in until the unit queue is empty for
    `min_flush_chunks` steps, at most `max_flush_chunks`; then "listening" and the session is reset before
    the next utterance), "on" (no gate: every chunk is stepped). Not thread-safe: call from one thread;
    `abort` may be set from any thread to cut `finish()` short.
    """

    def __init__(self, translator: Translator, gate: VoiceGate | None, *, stream_id: str = "live") -> None:
        self.tr = translator
        self.gate = gate
        self.abort = threading.Event()  # set from the loop to cut a final flush short
        self.session: Session = translator.create_session(stream_id)
        self.phase = "on" if gate is None else "listening"
        self.quiet = 0
        self.closing = 0
        self.utterances = 0 if gate is not None else 1

    def _silence(self, in_samples: int) -> np.ndarray:
        return np.zeros(in_samples * self.tr.output_sample_rate // self.tr.sample_rate, dtype=np.float32)

    def _run_steps(self) -> tuple[np.ndarray, tuple[float, ...]]:
        times = []
        while self.tr.is_ready(self.session) and not self.abort.is_set():
            start = time.perf_counter()
            self.tr.step(self.session)
            times.append(1000.0 * (time.perf_counter() - start))
        return self.session.read_output(), tuple(times)

    def _start_utterance(self) -> None:
        if self.phase == "listening":
            self.session.reset()
            self.utterances += 1

    def _quiet(self, units_before: int) -> bool:
        """The last step emitted no unit and left nothing queued to speak (the test `Translator.flush` uses)."""
        queued = int(self.session.state.queue.count.reshape(-1)[0])
        return queued == 0 and len(self.session.result().units) == units_before

    def process(self, chunk: np.ndarray) -> GatedStep:
        """One input chunk (chunk_samples,) at the model rate -> one chunk of output audio."""
        if self.gate is None:
            self.session.accept_waveform(chunk, sample_rate=self.tr.sample_rate)
            out, times = self._run_steps()
            return GatedStep(out, times, True, 1.0, self.phase)
        g = self.gate.process(chunk)
        if not g.voiced and self.phase == "listening":
            return GatedStep(self._silence(len(chunk)), (), False, g.prob, self.phase)
        self._start_utterance()
        units_before = len(self.session.result().units) if self.phase == "closing" else -1
        self.session.accept_waveform(g.samples, sample_rate=self.tr.sample_rate)
        out, times = self._run_steps()
        if g.voiced:
            self.phase, self.quiet, self.closing = "speech", 0, 0
        else:  # after voice: zeros go in until the unit queue has been spoken out
            self.phase, self.closing = "closing", self.closing + 1
            self.quiet = self.quiet + 1 if self._quiet(units_before) else 0
            if self.quiet >= self.tr.min_flush_chunks or self.closing >= self.tr.max_flush_chunks:
                self.phase = "listening"
        return GatedStep(out, times, g.voiced, g.prob, self.phase)

    def finish(self) -> GatedStep:
        """End of input: release the gate's delay line, then input_finished() and step until drained."""
        voiced = False
        if self.gate is not None:
            g = self.gate.flush()
            voiced = g.voiced
            if not g.voiced and self.phase == "listening":
                return GatedStep(self._silence(len(g.samples)), (), False, 0.0, self.phase)
            self._start_utterance()
            self.session.accept_waveform(g.samples, sample_rate=self.tr.sample_rate)
        self.session.input_finished()
        out, times = self._run_steps()
        self.phase = "listening" if self.gate is not None else "on"
        return GatedStep(out, times, voiced, 0.0, self.phase)
