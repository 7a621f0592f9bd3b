"""A SimulEval (1.1.x) speech-to-speech agent that runs a streamer `Translator`.

Needs ``pip install simuleval``. Run it with the SimulEval CLI, e.g.::

    simuleval --agent streamer/simuleval_agent.py --model-dir path/to/model \\
        --source source.txt --target target.txt --source-segment-size 160 \\
        --output out --latency-metrics StartOffset EndOffset --quality-metrics BLEU

(or ``--agent-class streamer.simuleval_agent.StreamerAgent`` with streamer importable). ``source.txt``
lists wav paths, one a line. Every policy call feeds the new source samples to the session and steps every
chunk that is complete; the output audio of those chunks goes out as one segment. SimulEval gives the
agent ONE policy call after the source is finished, so that call flushes the session (lookahead and queued
units) and writes the whole tail with ``finished=True``.

Like `streamer.latency.segments_from_chunks`, each chunk's output is trimmed of leading and trailing
silence (10 ms frames under ``--silence-db`` dBFS) and fully silent chunks are not written, so that
SimulEval's StartOffset / EndOffset count speech, as `streamer bench` does; ``--keep-silence`` writes the
raw audio instead. With ``--source-segment-size`` equal to the model chunk (160 ms) and 16 kHz sources the
segments are exactly those of `streamer bench` at that chunk size.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace

import numpy as np
from simuleval.agents import SpeechToSpeechAgent
from simuleval.agents.actions import Action, ReadAction, WriteAction
from simuleval.data.segments import SpeechSegment
from simuleval.utils import entrypoint

from streamer.config import DECODINGS
from streamer.engine import BackendConfig
from streamer.pipeline import Translator


def speech_span(x: np.ndarray, sample_rate: int, silence_db: float = -40.0, frame_ms: float = 10.0) -> np.ndarray:
    """`x` without its leading and trailing silent frames (RMS < silence_db dBFS); empty if all silent."""
    frame = max(1, round(sample_rate * frame_ms / 1000.0))
    starts = np.arange(0, x.size, frame)
    if starts.size == 0:
        return x[:0]
    power = np.add.reduceat(x.astype(np.float64) ** 2, starts) / np.diff(np.append(starts, x.size))
    voiced = np.flatnonzero(np.sqrt(power) >= 10.0 ** (silence_db / 20.0))
    if voiced.size == 0:
        return x[:0]
    return x[starts[voiced[0]]: min(starts[voiced[-1]] + frame, x.size)]


@entrypoint
class StreamerAgent(SpeechToSpeechAgent):
    """Streams SimulEval's source segments through one streamer session (reset per instance)."""

    def __init__(self, args: Namespace) -> None:
        backend = BackendConfig(name=args.backend, num_threads=args.threads)
        if args.model_dir:
            self.translator = Translator.from_dir(args.model_dir, backend=backend, decoding=args.decoding)
        else:
            self.translator = Translator.from_pretrained(args.pair, backend=backend, decoding=args.decoding)
        self.silence_db = args.silence_db
        self.keep_silence = args.keep_silence
        super().__init__(args)  # calls reset()

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        parser.add_argument("--model-dir", default=None, help="a streamer model folder (default: shipped --pair)")
        parser.add_argument("--pair", default="en-es", help="shipped language pair (default: en-es)")
        parser.add_argument("--backend", default="eager", help="streamer backend (default: eager)")
        parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
        parser.add_argument("--decoding", default="auto", choices=DECODINGS,
                            help="unit choice: the model's unit LM search, greedy, or auto (default)")
        parser.add_argument("--silence-db", type=float, default=-40.0, help="silence level, dBFS (default: -40)")
        parser.add_argument("--keep-silence", action="store_true", help="write raw chunk audio, silence included")

    def reset(self) -> None:
        super().reset()
        self.session = self.translator.create_session("simuleval")

    def _speech(self, chunk: np.ndarray) -> np.ndarray:
        if self.keep_silence:
            return chunk
        return speech_span(chunk, self.translator.output_sample_rate, self.silence_db)

    def policy(self) -> Action:
        states, session, tr = self.states, self.session, self.translator
        if states.source:
            session.accept_waveform(np.asarray(states.source, dtype=np.float32),
                                    sample_rate=states.source_sample_rate)
            states.source = []  # consumed: the session holds what it still needs
        if states.source_finished:
            session.input_finished()
        pieces = []
        while tr.is_ready(session):
            tr.step(session)
            pieces.append(self._speech(session.read_output()))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if not states.source_finished and audio.size == 0:
            return ReadAction()
        segment = SpeechSegment(content=audio.tolist(), sample_rate=tr.output_sample_rate,
                                finished=states.source_finished, tgt_lang=states.tgt_lang)
        return WriteAction(segment, finished=states.source_finished)
