"""The mosquitto helper, and the MQTT behaviour the protocol relies on, against a real broker."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiomqtt
import numpy as np
import pytest

from streamer.mqtt.broker import BrokerError, MosquittoBroker, find_free_port, mqtt_ping
from streamer.mqtt.events import make_event, parse_event
from streamer.mqtt.protocol import AudioFrame, FrameFlags, decode_frame, encode_frame
from streamer.mqtt.topics import TopicScheme

pytestmark = pytest.mark.mqtt
TOPICS = TopicScheme()


async def _next_message(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        async for msg in client.messages:
            return msg
    raise AssertionError("message iterator ended")  # pragma: no cover


def test_broker_starts_and_answers_mqtt(broker: MosquittoBroker) -> None:
    assert broker.is_running and broker.pid is not None
    assert mqtt_ping(broker.host, broker.port) == 0
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert f"listener {broker.port} 127.0.0.1" in broker.config_path.read_text()
    assert "running" in broker.log_text()


def test_audio_and_event_round_trip_through_broker(broker: MosquittoBroker, arun: Callable[..., Any]) -> None:
    frame = AudioFrame(seq=3, sample_rate=16000, samples=np.arange(-160, 160, dtype=np.int16), flags=1)

    async def main() -> None:
        async with (
            aiomqtt.Client(**broker.client_kwargs(), identifier="sub") as sub,
            aiomqtt.Client(**broker.client_kwargs(), identifier="pub") as pub,
        ):
            await sub.subscribe(TOPICS.in_topic("rt"), qos=0)
            await sub.subscribe(TOPICS.events_topic("rt"), qos=1)
            await pub.publish(TOPICS.in_topic("rt"), encode_frame(frame), qos=0)
            msg = await _next_message(sub)
            assert msg.topic.value == "streamer/v1/rt/in"
            assert TOPICS.parse(msg.topic.value) == ("rt", "in")
            assert decode_frame(msg.payload) == frame
            await pub.publish(
                TOPICS.events_topic("rt"), make_event("ended", "rt", reason="end_of_stream"), qos=1
            )
            ev = parse_event((await _next_message(sub)).payload)
            assert ev.kind == "ended" and ev["reason"] == "end_of_stream"

    arun(main())


def test_shared_subscription_delivers_each_claim_to_exactly_one_worker(
    broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    """The claim flow depends on this: $share/{group}/... gives each message to one member of the group."""
    n = 20

    async def worker(name: str, ready: asyncio.Event, got: list[str], done: asyncio.Event) -> None:
        async with aiomqtt.Client(**broker.client_kwargs(), identifier=name) as c:
            await c.subscribe(TOPICS.shared_claim_topic("workers"), qos=1)
            ready.set()
            async for msg in c.messages:
                assert TOPICS.is_claim_topic(msg.topic.value)
                got.append(bytes(msg.payload).decode())
                if done.is_set():
                    return

    async def main() -> None:
        got_a: list[str] = []
        got_b: list[str] = []
        ready_a, ready_b, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(worker("wa", ready_a, got_a, done)),
            asyncio.create_task(worker("wb", ready_b, got_b, done)),
        ]
        await ready_a.wait()
        await ready_b.wait()
        async with aiomqtt.Client(**broker.client_kwargs(), identifier="claimer") as pub:
            for i in range(n):
                await pub.publish(TOPICS.claim_topic, f"c{i}".encode(), qos=1)
            async with asyncio.timeout(5):
                while len(got_a) + len(got_b) < n:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # would any message arrive twice?
        done.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert sorted(got_a + got_b, key=lambda s: int(s[1:])) == [f"c{i}" for i in range(n)]
        assert got_a and got_b  # both workers took a share

    arun(main())


def test_stop_then_restart_on_the_same_port(fresh_broker: MosquittoBroker, arun: Callable[..., Any]) -> None:
    port, pid = fresh_broker.port, fresh_broker.pid
    fresh_broker.stop()
    assert not fresh_broker.is_running and fresh_broker.pid is None
    with pytest.raises(OSError):
        mqtt_ping("127.0.0.1", port, timeout_s=0.5)
    fresh_broker.start()
    assert fresh_broker.port == port and fresh_broker.pid != pid
    assert mqtt_ping("127.0.0.1", port) == 0
    fresh_broker.restart(down_s=0.1)
    assert fresh_broker.port == port and fresh_broker.starts == 3

    async def main() -> None:  # a client can use the same address after the restarts
        async with aiomqtt.Client(**fresh_broker.client_kwargs()) as c:
            await c.subscribe("t/x", qos=1)
            await c.publish("t/x", b"after-restart", qos=1)
            assert (await _next_message(c)).payload == b"after-restart"

    arun(main())


def test_connected_client_sees_broker_loss_and_can_reconnect(
    fresh_broker: MosquittoBroker, arun: Callable[..., Any]
) -> None:
    """What the worker's reconnect loop relies on: loss surfaces as MqttError, the same address comes back."""

    async def main() -> None:
        client = aiomqtt.Client(**fresh_broker.client_kwargs(), identifier="survivor")
        async with client:
            await client.subscribe("t/loss", qos=1)
            await asyncio.to_thread(fresh_broker.kill)
            with pytest.raises(aiomqtt.MqttError):
                async with asyncio.timeout(5):
                    async for _ in client.messages:
                        pass
        await asyncio.to_thread(fresh_broker.start)
        async with aiomqtt.Client(**fresh_broker.client_kwargs(), identifier="survivor") as again:
            await again.subscribe("t/loss", qos=1)
            await again.publish("t/loss", b"back", qos=1)
            assert (await _next_message(again)).payload == b"back"

    arun(main())


def test_kill_and_start(fresh_broker: MosquittoBroker) -> None:
    port = fresh_broker.port
    fresh_broker.kill()
    assert not fresh_broker.is_running
    fresh_broker.start()
    assert fresh_broker.is_running and fresh_broker.port == port
    fresh_broker.start()  # no-op while running
    assert fresh_broker.starts == 2


def test_users_require_credentials(mosquitto_path: str, arun: Callable[..., Any]) -> None:
    with MosquittoBroker(executable=mosquitto_path, users={"dev1": "pa ss:wörd"}) as b:
        assert "allow_anonymous false" in b.config_path.read_text()
        assert mqtt_ping(b.host, b.port, username="dev1", password="pa ss:wörd") == 0
        assert mqtt_ping(b.host, b.port, username="dev1", password="wrong") == 5
        assert mqtt_ping(b.host, b.port) == 5

        async def main() -> None:
            async with aiomqtt.Client(**b.client_kwargs()) as c:
                await c.publish("t/auth", b"ok", qos=1)
            with pytest.raises(aiomqtt.MqttError):
                async with aiomqtt.Client(hostname=b.host, port=b.port, username="dev1", password="no"):
                    pass

        arun(main())


def test_close_removes_workdir_and_port_conflict_is_reported(mosquitto_path: str) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        b = MosquittoBroker(executable=mosquitto_path, port=taken, start_timeout_s=3)
        with pytest.raises(BrokerError, match="exited|CONNACK"):
            b.start()
        assert not b.is_running
        b.close()
        assert not b.config_path.parent.exists()


def test_missing_executable_and_free_port() -> None:
    b = MosquittoBroker(executable="/nonexistent/mosquitto")
    with pytest.raises(BrokerError, match="could not run"):
        b.start()
    b.close()
    assert 0 < find_free_port() < 65536


def test_frame_flags_survive_the_broker(broker: MosquittoBroker, arun: Callable[..., Any]) -> None:
    frames = [
        AudioFrame(seq=i, sample_rate=48000, samples=np.full(480, i, np.int16), flags=f)
        for i, f in enumerate([FrameFlags.START, FrameFlags.NONE, FrameFlags.END])
    ]

    async def main() -> list[AudioFrame]:
        async with aiomqtt.Client(**broker.client_kwargs()) as c:
            await c.subscribe(TOPICS.out_topic("flags"), qos=0)
            for f in frames:
                await c.publish(TOPICS.out_topic("flags"), encode_frame(f), qos=0)
            return [decode_frame((await _next_message(c)).payload) for _ in frames]

    assert arun(main()) == frames
