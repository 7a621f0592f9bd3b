"""Device side of the MQTT protocol: claim a stream, send audio, receive translated audio and events.

    async with StreamClient("mic0", connection=ConnectionConfig(host="broker")) as c:
        await c.claim(sample_rate=16000)
        await c.send(samples, sample_rate=16000)      # float32 or int16 (T,), split into 20 ms frames
        await c.end()
        async for frame in c.frames(): ...             # AudioFrame at the worker's output rate

``send_file`` and ``record_stream`` wrap this for whole files. Protocol: docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import numpy as np

from streamer.errors import ProtocolError, StreamerError
from streamer.mqtt.connection import Backoff, ConnectionConfig
from streamer.mqtt.events import ClaimRequest, Event, ReleaseRequest, parse_event, validate_id
from streamer.mqtt.protocol import (
    DEFAULT_MAX_SAMPLES,
    AudioFrame,
    FrameFlags,
    decode_frame,
    encode_frame,
    validate_sample_rate,
)
from streamer.mqtt.sequence import SequenceTracker
from streamer.mqtt.topics import DEFAULT_PREFIX, TopicScheme, validate_stream_id

__all__ = ["ClaimError", "ClientConfig", "ConnectError", "StreamClient"]

log = logging.getLogger("streamer.mqtt.client")
_END = object()


class ClaimError(StreamerError, RuntimeError):
    """No worker took the stream: every attempt was answered ``busy`` or timed out."""


class ConnectError(StreamerError, ConnectionError):
    """The broker could not be reached in time."""


@dataclass(frozen=True)
class ClientConfig:
    """Client behaviour. Times in seconds.

    Attributes:
        prefix: topic prefix (must match the workers').
        client_id: names this client in claims; default random.
        frame_ms: audio per ``in`` frame (10-40 ms keeps latency low).
        claim_timeout_s, claim_attempts: wait per attempt, and attempts, before ``ClaimError``.
        max_frame_samples: larger ``out`` frames are refused.
        last_will: register a ``release`` as MQTT last will, so a dead client frees its worker slot.
    """

    prefix: str = DEFAULT_PREFIX
    client_id: str = field(default_factory=lambda: f"client-{secrets.token_hex(4)}")
    frame_ms: int = 20
    claim_timeout_s: float = 5.0
    claim_attempts: int = 3
    max_frame_samples: int = DEFAULT_MAX_SAMPLES
    last_will: bool = True

    def __post_init__(self) -> None:
        TopicScheme(self.prefix)
        validate_id(self.client_id, what="client_id")
        if not 1 <= self.frame_ms <= 1000 or self.claim_attempts < 1 or self.claim_timeout_s <= 0:
            raise ValueError(
                f"bad ClientConfig: frame_ms={self.frame_ms}, claim_attempts={self.claim_attempts}, "
                f"claim_timeout_s={self.claim_timeout_s}"
            )


class StreamClient:
    """One stream, seen from the device. Connects on ``__aenter__``, reconnects with backoff by itself.

    Received frames and events are queued until read with ``frames()`` / ``next_event()``; ``events``
    keeps every event. Frames sent while disconnected are dropped (their seqs are spent, so the worker
    sees a gap).
    """

    def __init__(
        self,
        stream_id: str,
        *,
        connection: ConnectionConfig | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.stream_id = validate_stream_id(stream_id)
        self.connection = connection or ConnectionConfig()
        self.config = config or ClientConfig()
        self.topics = TopicScheme(self.config.prefix)
        self.owner: str | None = None  # worker_id of the accepted claim
        self.claim_id: str | None = None
        self.sample_rate: int | None = None
        self.events: list[Event] = []
        self.out_tracker = SequenceTracker()
        self.frames_sent = 0
        self.frames_dropped = 0
        self.bad_frames = 0
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._seq = 0
        self._ended_input = False
        self._frames: asyncio.Queue[object] = asyncio.Queue()
        self._event_q: asyncio.Queue[Event] = asyncio.Queue()
        self._claim_q: asyncio.Queue[Event] = asyncio.Queue()
        self._released: set[str] = set()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- connection -----------------------------------------------------------------------------------------
    async def __aenter__(self) -> StreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Start the connection task and wait until connected (``ConnectError`` after ``timeout_s``)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self.connected.wait(), self.connection.timeout_s)
        except TimeoutError:
            await self.close()
            raise ConnectError(
                f"no connection to {self.connection.host}:{self.connection.port} "
                f"in {self.connection.timeout_s} s"
            ) from None

    async def close(self) -> None:
        """Disconnect (cleanly: the last will is not sent). Does not release the stream; call ``release``."""
        self._closing.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        backoff = Backoff()
        will = None
        if self.config.last_will:
            rel = ReleaseRequest(stream_id=self.stream_id, client_id=self.config.client_id, will=True)
            will = aiomqtt.Will(self.topics.control_topic(self.stream_id), rel.to_json(), qos=1)
        while not self._closing.is_set():
            try:
                kwargs = self.connection.client_kwargs(
                    identifier=f"{self.config.client_id}-{self.stream_id}", will=will
                )
                async with aiomqtt.Client(**kwargs) as client:
                    await client.subscribe(
                        [
                            (self.topics.out_topic(self.stream_id), 1),  # audio comes QoS 0; END QoS 1
                            (self.topics.events_topic(self.stream_id), 1),
                        ]
                    )
                    self._client = client
                    backoff.reset()
                    self.connected.set()
                    reader = asyncio.create_task(self._read(client))
                    closing = asyncio.create_task(self._closing.wait())
                    await asyncio.wait({reader, closing}, return_when=asyncio.FIRST_COMPLETED)
                    closing.cancel()
                    reader.cancel()
                    self._client = None
                    self.connected.clear()
                    if reader.done() and not reader.cancelled() and reader.exception():
                        raise reader.exception()  # type: ignore[misc]
            except aiomqtt.MqttError as exc:
                self._client = None
                self.connected.clear()
                if self._closing.is_set():
                    break
                delay = backoff.next_delay()
                log.warning(
                    "stream %s: broker connection lost (%s); retrying in %.2f s", self.stream_id, exc, delay
                )
                try:
                    await asyncio.wait_for(self._closing.wait(), delay)
                except TimeoutError:
                    pass

    async def _read(self, client: aiomqtt.Client) -> None:
        out_topic = self.topics.out_topic(self.stream_id)
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else str(msg.payload or "")
            if msg.topic.value == out_topic:
                try:
                    frame = decode_frame(payload, max_samples=self.config.max_frame_samples)  # type: ignore[arg-type]
                except ProtocolError as exc:
                    self.bad_frames += 1
                    log.warning("stream %s: bad out frame: %s", self.stream_id, exc)
                    continue
                self._frames.put_nowait(frame)
                continue
            try:
                ev = parse_event(payload)
            except ProtocolError as exc:
                log.warning("stream %s: bad event: %s", self.stream_id, exc)
                continue
            await self._on_event(ev)

    async def _on_event(self, ev: Event) -> None:
        worker = ev.get("worker_id")
        if ev.kind in ("claimed", "busy"):
            if ev.get("claim_id") != self.claim_id:
                return
            if ev.kind == "claimed":
                if self.owner is None:
                    self.owner = worker  # the first claimed answer wins
                elif worker != self.owner:
                    await self._release_foreign(worker)  # a late second owner
                    return
            self._claim_q.put_nowait(ev)
            return
        if self.owner is not None and worker is not None and worker != self.owner:
            await self._release_foreign(worker)  # a second owner: see docs/mqtt.md, claim flow step 7
            return
        self.events.append(ev)
        self._event_q.put_nowait(ev)
        if ev.kind == "ended":
            self._frames.put_nowait(_END)

    async def _release_foreign(self, worker_id: str) -> None:
        if worker_id in self._released:
            return
        self._released.add(worker_id)
        log.warning(
            "stream %s: worker %s also claims it (owner %s); releasing it",
            self.stream_id,
            worker_id,
            self.owner,
        )
        req = ReleaseRequest(stream_id=self.stream_id, client_id=self.config.client_id, worker_id=worker_id)
        await self._publish(self.topics.control_topic(self.stream_id), req.to_json(), qos=1)

    async def _publish(self, topic: str, payload: bytes, *, qos: int) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos)
            return True
        except aiomqtt.MqttError as exc:
            log.debug("stream %s: publish failed: %s", self.stream_id, exc)
            return False

    # -- the stream -----------------------------------------------------------------------------------------
    async def claim(self, *, sample_rate: int) -> Event:
        """Ask for a worker; return its ``claimed`` event. Retries one claim id; raises ``ClaimError``."""
        self.sample_rate = validate_sample_rate(sample_rate)
        req = ClaimRequest(stream_id=self.stream_id, client_id=self.config.client_id, sample_rate=sample_rate)
        self.claim_id = req.claim_id
        self.owner = None
        backoff = Backoff(min_s=0.2, max_s=2.0)
        answers: list[str] = []
        for attempt in range(self.config.claim_attempts):
            await self.connected.wait()
            await self._publish(self.topics.claim_topic, req.to_json(), qos=1)
            try:
                ev = await asyncio.wait_for(self._claim_q.get(), self.config.claim_timeout_s)
            except TimeoutError:
                answers.append("timeout")
            else:
                if ev.kind == "claimed":
                    return ev
                answers.append(f"{ev['worker_id']}: {ev['reason']}")
            if attempt + 1 < self.config.claim_attempts:
                await asyncio.sleep(backoff.next_delay())
        raise ClaimError(
            f"no worker took stream {self.stream_id!r} after {self.config.claim_attempts} "
            f"attempts ({'; '.join(answers) or 'no answer'})"
        )

    async def send(self, samples: np.ndarray, *, sample_rate: int | None = None, end: bool = False) -> int:
        """Send audio as ``frame_ms`` frames (QoS 0; the first and an ``end`` frame QoS 1); returns the count.

        ``samples``: ``(T,)`` float in [-1, 1] or int16 PCM, at the claimed rate.
        """
        rate = sample_rate or self.sample_rate
        if rate is None or rate != self.sample_rate:
            raise ProtocolError(f"send() at {rate} Hz but the stream was claimed at {self.sample_rate} Hz")
        x = np.asarray(samples)
        pcm = x if x.dtype == np.int16 else AudioFrame.from_float(x, seq=0, sample_rate=rate).samples
        step = max(1, rate * self.config.frame_ms // 1000)
        pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)] or [pcm[:0]]
        for i, piece in enumerate(pieces):
            await self.send_frame(piece, end=end and i == len(pieces) - 1)
        return len(pieces)

    async def send_frame(self, pcm: np.ndarray, *, end: bool = False) -> bool:
        """Send one int16 frame now. Returns False if it was dropped (not connected)."""
        if self.sample_rate is None:
            raise ProtocolError("claim() the stream before sending audio")
        if self._ended_input:
            raise ProtocolError(f"stream {self.stream_id!r}: send after end()")
        flags = FrameFlags.START if self._seq == 0 else FrameFlags.NONE
        if end:
            flags |= FrameFlags.END
            self._ended_input = True
        frame = AudioFrame(seq=self._seq % 2**32, sample_rate=self.sample_rate, samples=pcm, flags=flags)
        self._seq += 1
        ok = await self._publish(
            self.topics.in_topic(self.stream_id), encode_frame(frame), qos=1 if flags else 0
        )
        self.frames_sent += ok
        self.frames_dropped += not ok
        return ok

    async def end(self) -> None:
        """Mark the end of the input with an empty END frame (QoS 1); no-op if already ended."""
        if not self._ended_input:
            await self.send_frame(np.zeros(0, np.int16), end=True)

    async def release(self) -> None:
        """Tell the owning worker to drop the stream now."""
        req = ReleaseRequest(
            stream_id=self.stream_id,
            client_id=self.config.client_id,
            worker_id=self.owner,
            claim_id=self.claim_id,
        )
        await self._publish(self.topics.control_topic(self.stream_id), req.to_json(), qos=1)

    async def frames(self, *, timeout_s: float | None = None) -> AsyncIterator[AudioFrame]:
        """Yield translated frames until an END frame or an ``ended`` event (or ``timeout_s`` of silence)."""
        while True:
            try:
                item = await asyncio.wait_for(self._frames.get(), timeout_s)
            except TimeoutError:
                return
            if not isinstance(item, AudioFrame):  # the _END marker
                return
            yield item
            if item.is_end:
                return

    async def next_event(self, *, kinds: tuple[str, ...] = (), timeout_s: float = 10.0) -> Event:
        """The next event (of one of ``kinds``, if given); raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                ev = await self._event_q.get()
                if not kinds or ev.kind in kinds:
                    return ev
