"""Worker internals that need no broker: error rate limiting, backoff, connection settings, batch jobs."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from streamer.mqtt.connection import Backoff, ConnectionConfig
from streamer.mqtt.sequence import SequenceTracker
from streamer.mqtt.streams import ErrorLimiter, StreamSlot, Work, run_batch


def test_error_limiter_counts_suppressed_errors() -> None:
    lim = ErrorLimiter(interval_s=1.0)
    assert lim.admit("dup", now=0.0) == 1
    assert lim.admit("dup", now=0.5) is None
    assert lim.admit("dup", now=0.9) is None
    assert lim.admit("other", now=0.9) == 1  # codes are limited separately
    assert lim.admit("dup", now=1.1) == 3  # this one plus the two held back
    assert lim.admit("dup", now=2.2) == 1


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(min_s=0.5, max_s=4.0, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(8)]
    bases = [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert all(0.5 * base <= d <= 1.5 * base for d, base in zip(delays, bases, strict=True))
    b.reset()
    assert b.next_delay() <= 0.75
    with pytest.raises(ValueError):
        Backoff(min_s=2, max_s=1)


def test_connection_config() -> None:
    c = ConnectionConfig.from_url("mqtts://dev%401:p%3Ass@broker.example:9999")
    assert (c.host, c.port, c.tls, c.username, c.password) == ("broker.example", 9999, True, "dev@1", "p:ss")
    assert ConnectionConfig.from_url("mqtts://h").port == 8883
    assert ConnectionConfig.from_url("mqtt://h").port == 1883
    kw = ConnectionConfig(tls=True, ca_file="/ca.pem").client_kwargs(identifier="x")
    assert kw["identifier"] == "x" and kw["tls_params"].ca_certs == "/ca.pem" and kw["clean_session"]
    assert "tls_params" not in ConnectionConfig().client_kwargs()
    for bad in [{"port": 0}, {"password": "p"}, {"ca_file": "/ca.pem"}, {"keepalive_s": 0}]:
        with pytest.raises(ValueError):
            ConnectionConfig(**bad)
    with pytest.raises(ValueError, match="mqtt://"):
        ConnectionConfig.from_url("http://h")


class FakeSession:
    def __init__(self, sid: str, *, fail_feed: bool = False, fail_step: bool = False) -> None:
        self.stream_id = sid
        self.fail_feed = fail_feed
        self.fail_step = fail_step
        self.pending = 0
        self.out: list[np.ndarray] = []
        self.finished = False

    def accept_waveform(self, x: np.ndarray, *, sample_rate: int) -> None:
        if self.fail_feed:
            raise ValueError("bad audio")
        self.pending += len(x)

    def input_finished(self) -> None:
        self.finished = True

    def read_output(self) -> np.ndarray:
        out = np.concatenate(self.out) if self.out else np.zeros(0, np.float32)
        self.out = []
        return out

    @property
    def done(self) -> bool:
        return self.finished and self.pending < 10


class FakeTranslator:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def is_ready(self, s: FakeSession) -> bool:
        return s.pending >= 10

    def step_many(self, sessions: list[FakeSession]) -> None:
        self.batches.append([s.stream_id for s in sessions])
        if any(s.fail_step for s in sessions):
            raise RuntimeError("boom")
        for s in sessions:
            s.pending -= 10
            s.out.append(np.ones(5, np.float32))

    def step(self, s: FakeSession) -> None:
        self.step_many([s])


def work(key: int, session: Any, n: int, finish: bool = False) -> Work:
    return Work(key, session, (np.zeros(n, np.float32),), 16000, finish)


def test_run_batch_batches_ready_streams_and_isolates_failures() -> None:
    tr = FakeTranslator()
    ok = [FakeSession(f"s{i}") for i in range(5)]
    feed_bad = FakeSession("feed", fail_feed=True)
    step_bad = FakeSession("step", fail_step=True)
    jobs = [work(i, s, 25) for i, s in enumerate(ok)] + [work(5, feed_bad, 25), work(6, step_bad, 25)]
    jobs.append(work(7, FakeSession("short"), 3))
    out = {o.key: o for o in run_batch(tr, jobs, max_batch=3)}  # type: ignore[arg-type]
    assert max(len(b) for b in tr.batches) == 3
    for i in range(5):
        assert out[i].error is None and out[i].steps == 1 and len(out[i].output) == 5 and out[i].ready
    assert "feeding audio failed: bad audio" in (out[5].error or "")
    assert "model step failed: boom" in (out[6].error or "")
    assert out[7].steps == 0 and not out[7].ready and out[7].error is None


def test_stream_slot_hands_over_its_inbox_once() -> None:
    slot = StreamSlot(
        stream_id="s",
        claim_id="k",
        client_id="c",
        sample_rate=16000,
        session=FakeSession("s"),  # type: ignore[arg-type]
        tracker=SequenceTracker(),
        errors=ErrorLimiter(),
    )
    assert not slot.has_work()
    slot.add_audio(np.ones(160, np.float32), fill_samples=320)
    assert slot.input_ms == pytest.approx(30.0) and slot.has_work()
    slot.end_received = True
    w = slot.take_work(1)
    assert [len(b) for b in w.blocks] == [320, 160] and w.finish and slot.finishing
    w2 = slot.take_work(1)
    assert w2.blocks == () and not w2.finish
    slot.step_window = [1.0, 3.0]
    fields = slot.latency_fields(chunk_ms=160.0)
    assert fields["compute_ms_p50"] == 2.0 and fields["rtf"] == pytest.approx(2.0 / 160, abs=1e-4)
    assert slot.step_window == []


def test_client_without_broker_raises_connect_error() -> None:
    import asyncio

    from streamer.mqtt.broker import find_free_port
    from streamer.mqtt.client import ConnectError, StreamClient

    async def main() -> None:
        c = StreamClient("s", connection=ConnectionConfig(port=find_free_port(), timeout_s=0.5))
        with pytest.raises(ConnectError, match="no connection"):
            await c.connect()

    asyncio.run(main())
