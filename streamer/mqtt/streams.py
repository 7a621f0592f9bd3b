"""Worker config, per-stream bookkeeping (event-loop side) and the batched step job (executor side).

Thread rule: a ``Session`` is touched only inside ``run_batch``, which runs on the worker's single
executor thread. The event loop owns a ``StreamSlot``. It appends decoded audio to ``slot.inbox``, and
``take_work`` hands that audio over to the next job in one swap.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from streamer.mqtt.events import validate_id
from streamer.mqtt.protocol import DEFAULT_MAX_SAMPLES
from streamer.mqtt.sequence import SequenceTracker
from streamer.mqtt.topics import DEFAULT_PREFIX, TopicScheme, validate_group

if TYPE_CHECKING:
    from streamer.pipeline import Session, Translator

__all__ = ["ErrorLimiter", "Outcome", "StreamSlot", "Work", "WorkerConfig", "default_worker_id", "run_batch"]

log = logging.getLogger("streamer.mqtt.worker")


def default_worker_id() -> str:
    """``{host}-{pid}-{random}``, reduced to the id alphabet."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker serves streams. Times in seconds.

    Attributes:
        prefix, group: topic prefix and ``$share`` group (workers of one group split the streams).
        worker_id: names this worker in events; default ``default_worker_id()``.
        max_streams: claims beyond this are answered ``busy``.
        max_batch: most sessions in one ``step_many`` call.
        idle_timeout_s: a stream without input for this long is ended (``idle_timeout``).
        lost_grace_s: after a client's last-will release, the stream is ended (``client_lost``) unless
            input resumes within this time (brokers publish wills on their own restart, too).
        max_frame_samples: larger ``in`` frames are refused (``bad_frame``).
        max_fill_samples: cap on the silence inserted for one sequence gap.
        latency_interval_s: period of ``latency`` events per active stream.
        error_interval_s: at most one ``error`` event per stream and code per this interval.
        reconnect_min_s, reconnect_max_s: reconnect backoff bounds.
    """

    prefix: str = DEFAULT_PREFIX
    group: str = "streamer"
    worker_id: str = field(default_factory=default_worker_id)
    max_streams: int = 16
    max_batch: int = 16
    idle_timeout_s: float = 10.0
    lost_grace_s: float = 3.0
    max_frame_samples: int = DEFAULT_MAX_SAMPLES
    max_fill_samples: int = 48_000
    latency_interval_s: float = 1.0
    error_interval_s: float = 1.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    def __post_init__(self) -> None:
        TopicScheme(self.prefix)
        validate_group(self.group)
        validate_id(self.worker_id, what="worker_id")
        for name in ("max_streams", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.idle_timeout_s, self.latency_interval_s, self.lost_grace_s) <= 0:
            raise ValueError("idle_timeout_s, latency_interval_s and lost_grace_s must be > 0")


class ErrorLimiter:
    """At most one error event per code every ``interval_s``; suppressed ones are counted into the next."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def admit(self, code: str, now: float | None = None) -> int | None:
        """Record one occurrence of ``code``; return how many to report now (>= 1), or None to stay quiet."""
        now = time.monotonic() if now is None else now
        count = self._pending.get(code, 0) + 1
        last = self._last.get(code)
        if last is not None and now - last < self.interval_s:
            self._pending[code] = count
            return None
        self._last[code] = now
        self._pending[code] = 0
        return count


@dataclass(frozen=True)
class Work:
    """What one job does for one stream: feed ``blocks`` (float32 at ``sample_rate``), maybe finish, step."""

    key: int
    session: Session
    blocks: tuple[np.ndarray, ...]
    sample_rate: int
    finish: bool


@dataclass(frozen=True)
class Outcome:
    """What one job produced for one stream (see ``Work.key``)."""

    key: int
    output: np.ndarray  # float32 (N,) at the translator's output rate; may be empty
    steps: int  # chunks stepped in this job (0 or 1)
    step_ms: float  # wall time of the batched call this stream took part in
    ready: bool  # another chunk is ready right now
    done: bool  # input finished and fully drained
    error: str | None = None


def run_batch(translator: Translator, work: Sequence[Work], *, max_batch: int) -> list[Outcome]:
    """Feed every stream its new audio, then step each ready stream once, ``max_batch`` at a time.

    Runs on the executor thread. A failing batched call is retried stream by stream, so that only the
    stream that fails gets an error.
    """
    errors: dict[int, str] = {}
    for w in work:
        try:
            for block in w.blocks:
                w.session.accept_waveform(block, sample_rate=w.sample_rate)
            if w.finish:
                w.session.input_finished()
        except Exception as exc:  # noqa: BLE001 - isolate one stream's bad input from the others
            log.exception("stream %s: feeding audio failed", w.session.stream_id)
            errors[w.key] = f"feeding audio failed: {exc}"
    ready = [w for w in work if w.key not in errors and translator.is_ready(w.session)]
    step_ms: dict[int, float] = {}
    for i in range(0, len(ready), max_batch):
        group = ready[i : i + max_batch]
        start = time.perf_counter()
        try:
            translator.step_many([w.session for w in group])
            elapsed = 1000.0 * (time.perf_counter() - start)
            step_ms.update((w.key, elapsed) for w in group)
        except Exception:  # noqa: BLE001 - find the offender by stepping each stream alone
            log.warning("batched step of %d streams failed; retrying one by one", len(group), exc_info=True)
            for w in group:
                start = time.perf_counter()
                try:
                    translator.step(w.session)
                    step_ms[w.key] = 1000.0 * (time.perf_counter() - start)
                except Exception as exc:  # noqa: BLE001
                    log.exception("stream %s: model step failed", w.session.stream_id)
                    errors[w.key] = f"model step failed: {exc}"
    out: list[Outcome] = []
    for w in work:
        if w.key in errors:
            out.append(Outcome(w.key, np.zeros(0, np.float32), 0, 0.0, False, False, errors[w.key]))
            continue
        s = w.session
        out.append(
            Outcome(
                key=w.key,
                output=s.read_output(),
                steps=1 if w.key in step_ms else 0,
                step_ms=step_ms.get(w.key, 0.0),
                ready=translator.is_ready(s),
                done=s.done,
            )
        )
    return out


@dataclass(eq=False)
class StreamSlot:
    """Event-loop-side state of one owned stream. Mutable; never shared with the executor thread."""

    stream_id: str
    claim_id: str
    client_id: str
    sample_rate: int
    session: Session
    tracker: SequenceTracker
    errors: ErrorLimiter
    created: float = field(default_factory=time.monotonic)
    inbox: list[np.ndarray] = field(default_factory=list)
    end_received: bool = False  # END frame seen; input_finished not yet handed to a job
    finishing: bool = False  # input_finished handed to a job
    ready_hint: bool = False  # the last job said another chunk is ready
    started: bool = False
    closed: bool = False
    last_input: float = field(default_factory=time.monotonic)
    lost_since: float | None = None  # a last-will release arrived; ended unless input resumes
    first_input: float | None = None
    first_output_ms: float | None = None
    frames_in: int = 0
    frames_out: int = 0
    out_seq: int = 0
    input_ms: float = 0.0  # audio received (incl. filled gaps), ms
    stepped_ms: float = 0.0  # audio stepped through the model, ms
    step_window: list[float] = field(default_factory=list)  # step_ms since the last latency event
    last_latency_event: float = field(default_factory=time.monotonic)

    def has_work(self) -> bool:
        """True if a job should visit this stream."""
        return not self.closed and (
            bool(self.inbox) or self.end_received or self.ready_hint or self.finishing
        )

    def take_work(self, key: int) -> Work:
        """Hand the inbox (and a pending finish) to a job, emptying them here."""
        blocks = tuple(self.inbox)
        self.inbox = []
        finish = self.end_received and not self.finishing
        if finish:
            self.finishing = True
        self.end_received = False
        return Work(key=key, session=self.session, blocks=blocks, sample_rate=self.sample_rate, finish=finish)

    def add_audio(self, samples: np.ndarray, *, fill_samples: int = 0) -> None:
        """Queue float32 samples at ``sample_rate``, preceded by ``fill_samples`` of silence (a gap)."""
        now = time.monotonic()
        if self.first_input is None:
            self.first_input = now
        if fill_samples:
            self.inbox.append(np.zeros(fill_samples, np.float32))
        if len(samples):
            self.inbox.append(samples)
        self.input_ms += 1000.0 * (len(samples) + fill_samples) / self.sample_rate

    def latency_fields(self, chunk_ms: float) -> dict[str, float]:
        """Numbers for a ``latency`` event; clears the step window."""
        window = np.asarray(self.step_window or [0.0])
        self.step_window = []
        fields = {
            "compute_ms_p50": round(float(np.percentile(window, 50)), 3),
            "compute_ms_p95": round(float(np.percentile(window, 95)), 3),
            "rtf": round(float(window.mean()) / chunk_ms, 4),
            "backlog_ms": round(max(0.0, self.input_ms - self.stepped_ms), 1),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
        }
        if self.first_output_ms is not None:
            fields["first_output_ms"] = round(self.first_output_ms, 1)
        return fields
