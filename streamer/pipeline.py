"""Session (one stream's state and buffers) and Translator (runs the step graph for many sessions).

The caller owns the schedule, as in sherpa-onnx: feed audio with `accept_waveform`, step while
`is_ready`, read audio with `read_output`. `step_many` stacks the states of many sessions into one
batched call of the step graph and splits them after, which is how one process serves many streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamer.audio.io import check_samples
from streamer.audio.resample import StreamingResampler
from streamer.config import DECODINGS
from streamer.engine import SPLIT_BACKENDS, BackendConfig, Runner, load_runner
from streamer.errors import AudioError, BackendUnavailableError, ModelError
from streamer.models.ctc_search import CTCBeamSearch, load_search
from streamer.models.s2st import S2STConfig
from streamer.models.state import stack_states, unstack_states
from streamer.models.unit_lm import LM_NAME


def use_lm_search(decoding: str, lm_path: Path | None, backend: str) -> bool:
    """Whether `decoding` (DECODINGS) means the unit LM search at `lm_path` on `backend`: "lm" always (refused
    when there is no LM), "auto" where there is one and the backend runs the split graph, "greedy" never."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
    has_lm = lm_path is not None and lm_path.is_file()
    if decoding == "lm" and not has_lm:
        where = lm_path.parent if lm_path is not None else "the model"
        raise ModelError(f"decoding='lm' but {where} has no {LM_NAME}")
    return decoding == "lm" or (decoding == "auto" and has_lm and backend in SPLIT_BACKENDS)


@dataclass(frozen=True)
class TranslationResult:
    """What one session produced. Times in ms on the input audio clock."""

    stream_id: str
    units: np.ndarray            # (N,) int64 emitted target units, in order
    unit_chunks: np.ndarray      # (N,) int64 index of the input chunk during which each unit was emitted
    chunk_compute_ms: np.ndarray  # (C,) wall-clock compute attributed to each chunk step
    input_ms: float              # real input received (before padding)
    output_ms: float             # output audio produced
    chunk_ms: int


class Session:
    """One stream: its model state, input buffer (16 kHz) and output buffer. Cheap; holds no weights."""

    def __init__(self, translator: Translator, stream_id: str) -> None:
        self.translator = translator
        self.stream_id = stream_id
        self.reset()

    def reset(self) -> None:
        """Forget everything: a fresh state and empty buffers, ready for the next utterance."""
        self.state = self.translator.runner.init_state(1)
        search = self.translator.search
        self.search_state = search.init_state() if search is not None else None
        self._carry: list[int] = []  # units the search committed beyond one chunk's width, voiced next
        self._resamplers: dict[int, StreamingResampler] = {}
        self._pending = np.zeros(0, dtype=np.float32)
        self._output: list[np.ndarray] = []
        self._units: list[np.ndarray] = []
        self._unit_chunks: list[np.ndarray] = []
        self._compute_ms: list[float] = []
        self._input_samples = 0
        self._output_samples = 0
        self.chunks_done = 0
        self.finished = False
        self.flush_chunks = 0
        self.drained = False

    def accept_waveform(self, samples: np.ndarray, *, sample_rate: int) -> None:
        """Append audio: shape (T,) or (T, C), float in [-1, 1] or int PCM, at any `sample_rate`."""
        if self.finished:
            raise AudioError(f"stream {self.stream_id!r}: accept_waveform() after input_finished(); "
                             "call reset() to start a new utterance")
        x = check_samples(samples, sample_rate=sample_rate, offset=self._input_samples)
        resampler = self._resamplers.setdefault(
            int(sample_rate), StreamingResampler(sample_rate, self.translator.sample_rate))
        if len(self._resamplers) > 1:
            raise AudioError(f"stream {self.stream_id!r}: sample rate changed mid-stream "
                             f"(now {sample_rate} Hz, before {sorted(self._resamplers)}); call reset() first")
        self._input_samples += len(x)
        self._push(resampler.process(x))

    def _push(self, samples: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])

    def input_finished(self) -> None:
        """No more input: the resampler tail and a zero-padded last chunk are queued; the translator
        then keeps stepping silence until the decoder and the unit queue are drained."""
        if self.finished:
            return
        for resampler in self._resamplers.values():
            self._push(resampler.flush())
        chunk = self.translator.chunk_samples
        remainder = len(self._pending) % chunk
        if remainder:
            self._push(np.zeros(chunk - remainder, dtype=np.float32))
        self.finished = True

    @property
    def done(self) -> bool:
        """True once input is finished and everything it produced has been stepped out."""
        return self.finished and self.drained and len(self._pending) == 0

    def read_output(self) -> np.ndarray:
        """Output audio produced since the last call, float32 (N,) at `translator.output_sample_rate`."""
        if not self._output:
            return np.zeros(0, dtype=np.float32)
        out = np.concatenate(self._output)
        self._output = []
        return out

    def result(self) -> TranslationResult:
        rate = self.translator.sample_rate
        units = np.concatenate(self._units) if self._units else np.zeros(0, dtype=np.int64)
        chunks = np.concatenate(self._unit_chunks) if self._unit_chunks else np.zeros(0, dtype=np.int64)
        return TranslationResult(
            self.stream_id, units, chunks, np.asarray(self._compute_ms, dtype=np.float64),
            1000.0 * self._input_samples / rate,
            1000.0 * self._output_samples / self.translator.output_sample_rate, self.translator.config.chunk_ms,
        )

    def _next_chunk(self) -> np.ndarray:
        chunk = self.translator.chunk_samples
        if len(self._pending) >= chunk:
            piece, self._pending = self._pending[:chunk], self._pending[chunk:]
            return piece
        self.flush_chunks += 1
        return np.zeros(chunk, dtype=np.float32)

    def _record(self, audio: np.ndarray, units: np.ndarray, compute_ms: float) -> None:
        emitted = units[units >= 0]
        if len(emitted):
            self._units.append(emitted)
            self._unit_chunks.append(np.full(len(emitted), self.chunks_done, dtype=np.int64))
        self._output.append(audio)
        self._output_samples += len(audio)
        self._compute_ms.append(compute_ms)
        self.chunks_done += 1
        if self.finished and len(self._pending) == 0:
            queued = int(self.state.queue.count.reshape(-1)[0])
            quiet = queued == 0 and len(emitted) == 0 and not self._carry
            self.drained = (quiet and self.flush_chunks >= self.translator.min_flush_chunks) or (
                self.flush_chunks >= self.translator.max_flush_chunks)


class Translator:
    """Runs the step graph (through a backend runner) for any number of sessions."""

    min_flush_chunks = 2    # the vocoder's one-frame lookahead needs one more chunk out
    max_flush_chunks = 40   # a hard cap on the tail, in case the decoder never falls quiet

    def __init__(self, runner: Runner, search: CTCBeamSearch | None = None) -> None:
        if search is not None and not hasattr(runner, "listen"):
            raise BackendUnavailableError(
                f"the {getattr(runner, 'name', type(runner).__name__)} backend runs greedy decoding only; the "
                f"LM search needs {' or '.join(SPLIT_BACKENDS)} (or decoding='greedy')")
        self.runner = runner
        self.search = search
        self.config: S2STConfig = runner.config
        self.sample_rate = self.config.sample_rate
        self.output_sample_rate = self.config.vocoder.sample_rate
        self.chunk_samples = self.config.chunk_samples

    @classmethod
    def from_pretrained(cls, name: str = "en-es", *, backend: str | BackendConfig = "eager",
                        decoding: str = "auto") -> Translator:
        """A shipped model by language pair (see `streamer.assets`)."""
        from streamer.assets import model_dir

        return cls.from_dir(model_dir(name), backend=backend, decoding=decoding)

    @classmethod
    def from_dir(cls, path: str | Path, *, backend: str | BackendConfig = "eager", decoding: str = "auto"
                 ) -> Translator:
        """decoding: "lm" (beam search with the folder's unit LM), "greedy", or "auto" (the LM search where
        the folder has an LM and the backend runs it, else greedy)."""
        config = backend if isinstance(backend, BackendConfig) else BackendConfig(name=backend)
        lm_path = Path(path) / LM_NAME
        use_lm = use_lm_search(decoding, lm_path, config.name)
        runner = load_runner(Path(path), config, split=use_lm)
        return cls(runner, load_search(lm_path, runner.config.decoder.blank) if use_lm else None)

    def create_session(self, stream_id: str = "0") -> Session:
        return Session(self, stream_id)

    def is_ready(self, session: Session) -> bool:
        """True when the session has a full chunk buffered, or is finished but not yet drained."""
        return len(session._pending) >= self.chunk_samples or (session.finished and not session.drained)

    def step(self, session: Session) -> None:
        self.step_many([session])

    def step_many(self, sessions: Sequence[Session]) -> None:
        """One chunk for each session, in one batched call. Every session must be ready."""
        if not sessions:
            return
        not_ready = [s.stream_id for s in sessions if not self.is_ready(s)]
        if not_ready:
            raise ValueError(f"sessions not ready to step: {not_ready}")
        audio = torch.from_numpy(np.stack([s._next_chunk() for s in sessions]))
        state = stack_states([s.state for s in sessions]) if len(sessions) > 1 else sessions[0].state
        start = time.perf_counter()
        if self.search is None:
            out, units, state = self.runner.step(audio, state)
        else:
            log_probs, state = self.runner.listen(audio, state)
            units = torch.from_numpy(np.stack([self._search(s, lp) for s, lp in zip(sessions, log_probs.numpy(),
                                                                                    strict=True)]))
            out, state = self.runner.speak(units, state)
        compute_ms = 1000.0 * (time.perf_counter() - start)
        states = unstack_states(state) if len(sessions) > 1 else [state]
        out_np, units_np = out.numpy(), units.numpy()
        for i, session in enumerate(sessions):
            session.state = states[i]
            session._record(out_np[i], units_np[i], compute_ms)

    def _search(self, session: Session, log_probs: np.ndarray) -> np.ndarray:
        """One chunk of the session's unit search: the units to voice now, (max_units,) int64, -1 padded.
        Once the input is over, every hypothesis is settled at once; units beyond the chunk's width wait."""
        assert self.search is not None
        committed, session.search_state = self.search.step(log_probs, session.search_state)
        if session.finished and len(session._pending) == 0:
            rest, session.search_state = self.search.finish(session.search_state)
            committed += rest
        width = self.config.max_units
        session._carry += committed
        now, session._carry = session._carry[:width], session._carry[width:]
        return np.array(now + [-1] * (width - len(now)), dtype=np.int64)

    def flush(self, session: Session) -> None:
        """Step the session until everything it buffered has been translated."""
        while self.is_ready(session):
            self.step(session)

    def translate_array(self, samples: np.ndarray, *, sample_rate: int) -> np.ndarray:
        """Translate a whole recording, streamed chunk by chunk. Returns float32 audio at output rate."""
        return self.translate_whole(samples, sample_rate=sample_rate).read_output()

    def translate_whole(self, samples: np.ndarray, *, sample_rate: int, stream_id: str = "0") -> Session:
        """A fresh session fed a whole recording and flushed: its output and `result()` are complete."""
        session = self.create_session(stream_id)
        session.accept_waveform(samples, sample_rate=sample_rate)
        session.input_finished()
        self.flush(session)
        return session

    async def translate(self, source: AsyncIterator[np.ndarray], *, sample_rate: int,
                        session: Session | None = None) -> AsyncIterator[np.ndarray]:
        """Translate an async stream of blocks; yields output audio as soon as each chunk is stepped.

        Model steps run in the default thread pool, never on the event loop.
        """
        loop = asyncio.get_running_loop()
        session = session or self.create_session()
        async for block in source:
            session.accept_waveform(block, sample_rate=sample_rate)
            while self.is_ready(session):
                await loop.run_in_executor(None, self.step, session)
                yield session.read_output()
        session.input_finished()
        while self.is_ready(session):
            await loop.run_in_executor(None, self.step, session)
            yield session.read_output()
