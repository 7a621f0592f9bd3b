"""Worker and client end to end, with the tiny model and a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest

from streamer.mqtt.broker import MosquittoBroker
from streamer.mqtt.client import ClaimError, ClientConfig, StreamClient
from streamer.mqtt.connection import ConnectionConfig
from streamer.mqtt.events import ClaimRequest, ReleaseRequest, make_event, parse_event
from streamer.mqtt.protocol import AudioFrame, FrameFlags, encode_frame
from streamer.mqtt.topics import TopicScheme
from streamer.mqtt.worker import Worker, WorkerConfig

pytestmark = pytest.mark.mqtt
TOPICS = TopicScheme()
RATE = 16000


@pytest.fixture(scope="module")
def translator(tiny_model_dir: Path) -> Any:
    from streamer.pipeline import Translator

    return Translator.from_dir(tiny_model_dir)


def conn(broker: MosquittoBroker) -> ConnectionConfig:
    return ConnectionConfig(host=broker.host, port=broker.port, keepalive_s=2, timeout_s=5)


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@contextlib.asynccontextmanager
async def running(translator: Any, broker: MosquittoBroker, **cfg: Any) -> AsyncIterator[Worker]:
    worker = Worker(translator, connection=conn(broker), config=WorkerConfig(**{"worker_id": "w1", **cfg}))
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.connected.wait(), 5)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def client(broker: MosquittoBroker, sid: str, **cfg: Any) -> StreamClient:
    return StreamClient(sid, connection=conn(broker), config=ClientConfig(**cfg))


def test_end_to_end_stream(translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with running(translator, broker, latency_interval_s=0.1) as worker:
            async with client(broker, "e2e") as c:
                claimed = await c.claim(sample_rate=RATE)
                assert claimed["worker_id"] == "w1" and c.owner == "w1"
                assert "e2e" in worker.streams
                await c.send(tone(1.0), sample_rate=RATE)
                await asyncio.sleep(0.3)  # let a latency event go out mid-stream
                await c.end()
                frames = [f async for f in c.frames(timeout_s=10)]
                ended = await c.next_event(kinds=("ended",))
            assert frames[0].flags & FrameFlags.START and frames[-1].is_end
            assert [f.seq for f in frames] == list(range(len(frames)))
            assert all(f.sample_rate == translator.output_sample_rate for f in frames)
            out_ms = sum(f.duration_ms for f in frames)
            assert out_ms >= 1000  # at least as much output time as input time
            assert ended["reason"] == "end_of_stream" and ended["frames_out"] == len(frames)
            assert ended["frames_in"] == 50 + 1 and ended["gaps"] == 0 and ended["dropped"] == 0
            kinds = [e.kind for e in c.events]
            assert kinds[0] == "started" and "latency" in kinds and kinds[-1] == "ended"
            lat = next(e for e in c.events if e.kind == "latency")
            assert lat["compute_ms_p95"] >= lat["compute_ms_p50"] >= 0 and lat["rtf"] >= 0
            assert "e2e" not in worker.streams

    arun(main(), timeout_s=60)


def test_model_steps_run_off_the_event_loop_and_are_batched(
    translator: Any, broker: MosquittoBroker, arun: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    original = type(translator).step_many

    def spy(self: Any, sessions: Any) -> None:
        calls.append((threading.current_thread().name, len(sessions)))
        original(self, sessions)

    monkeypatch.setattr(type(translator), "step_many", spy)

    async def one(sid: str) -> int:
        async with client(broker, sid) as c:
            await c.claim(sample_rate=RATE)
            await c.send(tone(0.5), sample_rate=RATE, end=True)
            return len([f async for f in c.frames(timeout_s=10)])

    async def main() -> None:
        async with running(translator, broker):
            counts = await asyncio.gather(*(one(f"b{i}") for i in range(3)))
        assert all(n > 0 for n in counts)

    arun(main(), timeout_s=60)
    assert calls and all(name.startswith("streamer-step") for name, _ in calls)
    assert max(n for _, n in calls) > 1  # several streams shared one batched call


def test_busy_when_max_streams_reached(
    translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    async def main() -> None:
        async with running(translator, broker, max_streams=1):
            async with client(broker, "cap1") as c1, client(broker, "cap2", claim_attempts=2) as c2:
                await c1.claim(sample_rate=RATE)
                with pytest.raises(ClaimError, match="w1: max_streams"):
                    await c2.claim(sample_rate=RATE)

    arun(main())


def test_malformed_input_is_reported_and_other_streams_are_unaffected(
    translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    async def main() -> None:
        async with running(translator, broker, error_interval_s=0.0) as worker:
            async with (
                client(broker, "bad") as bad,
                client(broker, "good") as good,
                aiomqtt.Client(**broker.client_kwargs()) as raw,
            ):
                await bad.claim(sample_rate=RATE)
                await good.claim(sample_rate=RATE)
                await bad.send(tone(0.2), sample_rate=RATE)  # seqs 0..9
                async with asyncio.timeout(5):  # the raw client's frames must come after these
                    while worker.streams["bad"].frames_in < 10:
                        await asyncio.sleep(0.02)
                topic = TOPICS.in_topic("bad")
                await raw.publish(topic, b"garbage", qos=1)
                await raw.publish(
                    topic,
                    encode_frame(AudioFrame(seq=3, sample_rate=RATE, samples=np.zeros(320, np.int16))),
                    qos=1,
                )
                await raw.publish(
                    topic,
                    encode_frame(AudioFrame(seq=10, sample_rate=8000, samples=np.zeros(160, np.int16))),
                    qos=1,
                )
                await raw.publish(topic, b"SA\x01\x00" + bytes(12), qos=1)  # rate 0
                await raw.publish(TOPICS.control_topic("bad"), b"{not json", qos=1)
                await good.send(tone(0.5), sample_rate=RATE, end=True)
                good_frames = [f async for f in good.frames(timeout_s=10)]
                codes = set()
                while len(codes) < 4:
                    ev = await bad.next_event(kinds=("error",), timeout_s=5)
                    codes.add(ev["code"])
                assert codes == {"bad_frame", "duplicate", "rate_changed", "bad_control"}
                assert "bad" in worker.streams  # still served
                await bad.send(tone(0.2), sample_rate=RATE, end=True)
                bad_frames = [f async for f in bad.frames(timeout_s=10)]
            assert good_frames and good_frames[-1].is_end
            assert bad_frames and bad_frames[-1].is_end
            assert [e.kind for e in good.events if e.kind == "error"] == []

    arun(main(), timeout_s=60)


def test_idle_timeout_and_release(translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with running(translator, broker, idle_timeout_s=0.4) as worker:
            async with client(broker, "idle") as c, client(broker, "rel") as r:
                await c.claim(sample_rate=RATE)
                await c.send(tone(0.1), sample_rate=RATE)
                ended = await c.next_event(kinds=("ended",), timeout_s=5)
                assert ended["reason"] == "idle_timeout" and "idle" not in worker.streams
                await r.claim(sample_rate=RATE)
                await r.release()
                ended = await r.next_event(kinds=("ended",), timeout_s=5)
                assert ended["reason"] == "released" and "rel" not in worker.streams

    arun(main())


def test_claim_retry_is_idempotent_and_new_claim_id_reclaims(
    translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    async def main() -> None:
        async with running(translator, broker), aiomqtt.Client(**broker.client_kwargs()) as raw:
            await raw.subscribe(TOPICS.events_topic("rc"), qos=1)

            async def claim(req: ClaimRequest) -> Any:
                await raw.publish(TOPICS.claim_topic, req.to_json(), qos=1)
                async with asyncio.timeout(5):
                    async for msg in raw.messages:
                        return parse_event(msg.payload)

            first = ClaimRequest(stream_id="rc", client_id="c", sample_rate=RATE, claim_id="k1")
            assert (await claim(first)).kind == "claimed"
            again = await claim(first)
            assert again.kind == "claimed" and again["claim_id"] == "k1"
            ended = await claim(ClaimRequest(stream_id="rc", client_id="c", sample_rate=RATE, claim_id="k2"))
            assert ended.kind == "ended" and ended["reason"] == "reclaimed"
            async with asyncio.timeout(5):
                async for msg in raw.messages:
                    ev = parse_event(msg.payload)
                    assert ev.kind == "claimed" and ev["claim_id"] == "k2"
                    break
            await raw.publish(TOPICS.claim_topic, b'{"v": 1, "kind": "claim", "stream_id": "rc"}', qos=1)
            async with asyncio.timeout(5):
                async for msg in raw.messages:
                    ev = parse_event(msg.payload)
                    assert ev.kind == "error" and ev["code"] == "bad_claim"
                    break

    arun(main())


def test_client_releases_a_second_owner(
    translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    async def main() -> None:
        async with running(translator, broker) as worker:
            async with client(broker, "dup") as c, aiomqtt.Client(**broker.client_kwargs()) as raw:
                await raw.subscribe(TOPICS.control_topic("dup"), qos=1)
                await c.claim(sample_rate=RATE)
                fake = make_event(
                    "started", "dup", worker_id="w-ghost", sample_rate=RATE, output_sample_rate=RATE
                )
                await raw.publish(TOPICS.events_topic("dup"), fake, qos=1)
                async with asyncio.timeout(5):
                    async for msg in raw.messages:
                        req = ReleaseRequest.from_json(msg.payload)
                        assert req.worker_id == "w-ghost"
                        break
                await asyncio.sleep(0.2)
                assert "dup" in worker.streams  # the real owner ignored a release aimed at another worker
                assert all(e.get("worker_id") != "w-ghost" for e in c.events)

    arun(main())


def test_worker_reconnects_after_broker_restart_and_resumes(
    translator: Any, fresh_broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    async def main() -> None:
        cfg = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "lost_grace_s": 8.0}
        async with running(translator, fresh_broker, **cfg) as worker:
            async with client(fresh_broker, "rs") as c:
                await c.claim(sample_rate=RATE)
                await c.send(tone(0.3), sample_rate=RATE)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(fresh_broker.restart, down_s=0.3)
                async with asyncio.timeout(10):
                    while not (
                        worker.connections >= 2 and worker.connected.is_set() and c.connected.is_set()
                    ):
                        await asyncio.sleep(0.05)
                assert "rs" in worker.streams  # the session survived the outage (and the will mosquitto sent)
                await c.send(tone(0.3), sample_rate=RATE, end=True)
                frames = [f async for f in c.frames(timeout_s=10)]
                assert frames and frames[-1].is_end

    arun(main(), timeout_s=60)


def test_last_will_release_ends_stream_only_if_input_does_not_resume(
    translator: Any, broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    async def main() -> None:
        async with running(translator, broker, lost_grace_s=0.4) as worker:
            async with client(broker, "lw") as c, aiomqtt.Client(**broker.client_kwargs()) as raw:
                await c.claim(sample_rate=RATE)
                will = ReleaseRequest(stream_id="lw", client_id="x", will=True).to_json()
                await raw.publish(TOPICS.control_topic("lw"), will, qos=1)
                await asyncio.sleep(0.1)
                await c.send(tone(0.1), sample_rate=RATE)  # input resumes: the will is forgotten
                await asyncio.sleep(0.6)
                assert "lw" in worker.streams
                await raw.publish(TOPICS.control_topic("lw"), will, qos=1)
                ended = await c.next_event(kinds=("ended",), timeout_s=5)
                assert ended["reason"] == "client_lost" and "lw" not in worker.streams

    arun(main())
