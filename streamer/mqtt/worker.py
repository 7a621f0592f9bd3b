"""The MQTT worker: claims streams through a ``$share`` group and translates them in batched steps.

    tr = Translator.from_pretrained("en-es")
    worker = Worker(tr, connection=ConnectionConfig(host="broker"), config=WorkerConfig(max_streams=32))
    await worker.run()            # until worker.stop(); reconnects with backoff when the broker goes away

Protocol: docs/mqtt.md. Threading: the event loop decodes, checks and queues audio, and publishes;
``run_batch`` runs every ``Session`` call on one executor thread (streams.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import aiomqtt
import numpy as np

from streamer.errors import ProtocolError
from streamer.mqtt.connection import Backoff, ConnectionConfig
from streamer.mqtt.events import ClaimRequest, ReleaseRequest, make_event
from streamer.mqtt.protocol import (
    SUPPORTED_SAMPLE_RATES,
    AudioFrame,
    FrameFlags,
    decode_frame,
    encode_frame,
)
from streamer.mqtt.sequence import SequenceTracker
from streamer.mqtt.streams import (
    ErrorLimiter,
    Outcome,
    StreamSlot,
    Work,
    WorkerConfig,
    default_worker_id,
    run_batch,
)
from streamer.mqtt.topics import TopicKind, TopicScheme, validate_stream_id

if TYPE_CHECKING:
    from streamer.pipeline import Translator

__all__ = ["Worker", "WorkerConfig", "default_worker_id"]

log = logging.getLogger("streamer.mqtt.worker")


class Worker:
    """Serves streams from a broker with one ``Translator`` (see module docstring)."""

    def __init__(
        self,
        translator: Translator,
        *,
        connection: ConnectionConfig | None = None,
        config: WorkerConfig | None = None,
    ) -> None:
        self.translator = translator
        self.connection = connection or ConnectionConfig()
        self.config = config or WorkerConfig()
        self.topics = TopicScheme(self.config.prefix)
        self.worker_id = self.config.worker_id
        self.output_sample_rate = int(translator.output_sample_rate)
        if self.output_sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(
                f"translator output rate {self.output_sample_rate} Hz cannot be framed; "
                f"supported: {sorted(SUPPORTED_SAMPLE_RATES)}"
            )
        self.chunk_ms = float(translator.config.chunk_ms)
        self.connected = asyncio.Event()
        self.connections = 0  # successful connects so far
        self.dropped_publishes = 0  # publishes skipped while disconnected
        self._streams: dict[str, StreamSlot] = {}
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def streams(self) -> Mapping[str, StreamSlot]:
        """The streams this worker owns now (read-only view)."""
        return MappingProxyType(self._streams)

    def stop(self) -> None:
        """Ask ``run`` to end every stream (``ended`` ``shutdown``), disconnect and return."""
        self._stop.set()

    # -- main loop ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until ``stop()``. Reconnects with exponential backoff whenever the broker is lost."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamer-step")
        tasks = [asyncio.create_task(self._stepper()), asyncio.create_task(self._housekeeping())]
        backoff = Backoff(min_s=self.config.reconnect_min_s, max_s=self.config.reconnect_max_s)
        try:
            while not self._stop.is_set():
                try:
                    await self._session_with_broker(backoff)
                except aiomqtt.MqttError as exc:
                    self._client = None
                    self.connected.clear()
                    if self._stop.is_set():
                        break
                    delay = backoff.next_delay()
                    log.warning(
                        "worker %s: broker connection lost (%s); retrying in %.2f s",
                        self.worker_id,
                        exc,
                        delay,
                    )
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                    except TimeoutError:
                        pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._streams.clear()
            self._client = None
            self.connected.clear()
            await asyncio.to_thread(self._executor.shutdown, True)

    async def _session_with_broker(self, backoff: Backoff) -> None:
        kwargs = self.connection.client_kwargs(identifier=f"streamer-worker-{self.worker_id}")
        async with aiomqtt.Client(**kwargs) as client:
            await client.subscribe(self.topics.shared_claim_topic(self.config.group), qos=1)
            for sid in list(self._streams):
                await client.subscribe(self._stream_subscriptions(sid))
            self._client = client
            self.connections += 1
            backoff.reset()
            self.connected.set()
            log.info(
                "worker %s: connected to %s:%d, %d streams resumed",
                self.worker_id,
                self.connection.host,
                self.connection.port,
                len(self._streams),
            )
            serve = asyncio.create_task(self._serve(client))
            stop = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({serve, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if serve.done():
                serve.result()  # re-raises MqttError -> reconnect
                raise aiomqtt.MqttError("message stream ended")
            serve.cancel()
            await asyncio.gather(serve, return_exceptions=True)
            for slot in list(self._streams.values()):
                await self._end(slot, "shutdown")
            self._client = None

    def _stream_subscriptions(self, stream_id: str) -> list[tuple[str, int]]:
        return [(self.topics.in_topic(stream_id), 1), (self.topics.control_topic(stream_id), 1)]

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            try:
                await self._dispatch(msg)
            except aiomqtt.MqttError:
                raise
            except Exception:  # noqa: BLE001 - a bug triggered by one message must not stop every stream
                log.exception("worker %s: handling a message on %s failed", self.worker_id, msg.topic.value)

    async def _dispatch(self, msg: aiomqtt.Message) -> None:
        topic = msg.topic.value
        payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else str(msg.payload or "")
        if self.topics.is_claim_topic(topic):
            await self._on_claim(payload)
            return
        try:
            sid, kind = self.topics.parse(topic)
        except ProtocolError as exc:
            log.debug("ignoring message on %s: %s", topic, exc)
            return
        slot = self._streams.get(sid)
        if slot is None:
            return  # a stream we released a moment ago
        if kind is TopicKind.IN:
            await self._on_frame(slot, payload)
        elif kind is TopicKind.CONTROL:
            await self._on_control(slot, payload)

    # -- publishing -----------------------------------------------------------------------------------------
    async def _publish(self, topic: str, payload: bytes, *, qos: int) -> None:
        client = self._client
        if client is None:
            self.dropped_publishes += 1
            return
        try:
            await client.publish(topic, payload, qos=qos)
        except aiomqtt.MqttError as exc:
            self.dropped_publishes += 1
            log.debug("publish to %s failed: %s", topic, exc)

    async def _event(
        self, slot_or_sid: StreamSlot | str, kind: str, *, topic: str | None = None, **fields: Any
    ) -> None:
        sid = slot_or_sid if isinstance(slot_or_sid, str) else slot_or_sid.stream_id
        payload = make_event(kind, sid, **fields)
        await self._publish(topic or self.topics.events_topic(sid), payload, qos=1)

    async def _error(self, slot: StreamSlot, code: str, message: str, **fields: Any) -> None:
        count = slot.errors.admit(code)
        log.info("stream %s: %s: %s", slot.stream_id, code, message)
        if count is not None:
            await self._event(slot, "error", code=code, message=message, count=count, **fields)

    # -- claims, frames, control ----------------------------------------------------------------------------
    async def _on_claim(self, payload: bytes | bytearray | str) -> None:
        try:
            req = ClaimRequest.from_json(payload)
        except ProtocolError as exc:
            sid = _stream_id_of(payload)
            log.warning("worker %s: bad claim (%s)", self.worker_id, exc)
            if sid is not None:
                await self._publish(
                    self.topics.events_topic(sid),
                    make_event("error", sid, code="bad_claim", message=str(exc)),
                    qos=1,
                )
            return
        reply = req.reply_topic or self.topics.events_topic(req.stream_id)
        answer = {"worker_id": self.worker_id, "claim_id": req.claim_id, "client_id": req.client_id}
        if self._stop.is_set():
            await self._event(req.stream_id, "busy", topic=reply, reason="shutting_down", **answer)
            return
        slot = self._streams.get(req.stream_id)
        if slot is not None and slot.claim_id == req.claim_id:
            await self._event(req.stream_id, "claimed", topic=reply, **answer)
            return
        if slot is not None:
            await self._end(slot, "reclaimed")
        if len(self._streams) >= self.config.max_streams:
            await self._event(
                req.stream_id,
                "busy",
                topic=reply,
                reason="max_streams",
                max_streams=self.config.max_streams,
                **answer,
            )
            return
        self._streams[req.stream_id] = StreamSlot(
            stream_id=req.stream_id,
            claim_id=req.claim_id,
            client_id=req.client_id,
            sample_rate=req.sample_rate,
            session=self.translator.create_session(stream_id=req.stream_id),
            tracker=SequenceTracker(max_fill_samples=self.config.max_fill_samples),
            errors=ErrorLimiter(self.config.error_interval_s),
        )
        if self._client is not None:
            await self._client.subscribe(self._stream_subscriptions(req.stream_id))  # before "claimed"
        log.info("worker %s: claimed stream %s for %s", self.worker_id, req.stream_id, req.client_id)
        await self._event(req.stream_id, "claimed", topic=reply, **answer)

    async def _on_frame(self, slot: StreamSlot, payload: bytes | bytearray | str) -> None:
        slot.last_input = time.monotonic()
        slot.lost_since = None
        try:
            frame = decode_frame(payload, max_samples=self.config.max_frame_samples)  # type: ignore[arg-type]
        except ProtocolError as exc:
            await self._error(slot, "bad_frame", str(exc))
            return
        if frame.sample_rate != slot.sample_rate:
            await self._error(
                slot,
                "rate_changed",
                f"frame seq {frame.seq} is {frame.sample_rate} Hz; the stream is {slot.sample_rate} Hz",
                seq=frame.seq,
            )
            return
        decision = slot.tracker.observe(frame)
        if not decision.accept:
            await self._error(slot, decision.verdict.value, decision.message, seq=frame.seq)
            return
        slot.frames_in += 1
        slot.add_audio(frame.to_float32(), fill_samples=decision.fill_samples)
        if frame.is_end:
            slot.end_received = True
        self._wake.set()
        if not slot.started:
            slot.started = True
            await self._event(
                slot,
                "started",
                worker_id=self.worker_id,
                sample_rate=slot.sample_rate,
                output_sample_rate=self.output_sample_rate,
            )

    async def _on_control(self, slot: StreamSlot, payload: bytes | bytearray | str) -> None:
        try:
            req = ReleaseRequest.from_json(payload)
            if req.stream_id != slot.stream_id:
                raise ProtocolError(
                    f"release for stream {req.stream_id!r} sent on {slot.stream_id!r}'s topic"
                )
        except ProtocolError as exc:
            await self._error(slot, "bad_control", str(exc))
            return
        if not (req.applies_to(self.worker_id) and req.claim_id in (None, slot.claim_id)):
            return
        if req.will:
            log.info(
                "stream %s: client %s lost; waiting %.1f s for it",
                slot.stream_id,
                req.client_id,
                self.config.lost_grace_s,
            )
            slot.lost_since = slot.lost_since or time.monotonic()
        else:
            log.info("stream %s: released by %s", slot.stream_id, req.client_id)
            await self._end(slot, "released")

    async def _end(self, slot: StreamSlot, reason: str) -> None:
        if slot.closed:
            return
        slot.closed = True
        if self._streams.get(slot.stream_id) is slot:
            del self._streams[slot.stream_id]
        stats = slot.tracker.stats
        await self._event(
            slot,
            "ended",
            reason=reason,
            frames_in=slot.frames_in,
            frames_out=slot.frames_out,
            gaps=stats.gaps,
            dropped=stats.dropped,
        )
        client = self._client
        if client is not None and slot.stream_id not in self._streams:
            try:
                await client.unsubscribe([t for t, _ in self._stream_subscriptions(slot.stream_id)])
            except aiomqtt.MqttError as exc:
                log.debug("unsubscribe of %s failed: %s", slot.stream_id, exc)
        log.info("stream %s: ended (%s)", slot.stream_id, reason)

    # -- stepping and housekeeping --------------------------------------------------------------------------
    async def _stepper(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            slots = {i: s for i, s in enumerate(self._streams.values()) if s.has_work()}
            if not slots:
                continue
            work: list[Work] = [s.take_work(i) for i, s in slots.items()]
            job = partial(run_batch, self.translator, work, max_batch=self.config.max_batch)
            try:
                outcomes = await loop.run_in_executor(self._executor, job)
            except Exception as exc:  # noqa: BLE001 - run_batch isolates model errors; this is a bug
                log.exception("worker %s: batch job failed", self.worker_id)
                outcomes = [
                    Outcome(w.key, np.zeros(0, np.float32), 0, 0.0, False, False, str(exc)) for w in work
                ]
            for o in outcomes:
                await self._deliver(slots[o.key], o)
            if any(s.has_work() for s in self._streams.values()):
                self._wake.set()

    async def _deliver(self, slot: StreamSlot, o: Outcome) -> None:
        if slot.closed:
            return
        if o.error is not None:
            await self._error(slot, "internal", o.error)
            await self._end(slot, "error")
            return
        slot.ready_hint = o.ready
        if o.steps:
            slot.stepped_ms += self.chunk_ms
            slot.step_window.append(o.step_ms)
        final = o.done and slot.finishing
        if len(o.output) or final:
            flags = FrameFlags.START if slot.out_seq == 0 else FrameFlags.NONE
            if final:
                flags |= FrameFlags.END
            frame = AudioFrame.from_float(
                o.output, seq=slot.out_seq % 2**32, sample_rate=self.output_sample_rate, flags=flags
            )
            slot.out_seq += 1
            slot.frames_out += 1
            if slot.first_output_ms is None and len(o.output) and slot.first_input is not None:
                slot.first_output_ms = 1000.0 * (time.monotonic() - slot.first_input)
            await self._publish(
                self.topics.out_topic(slot.stream_id), encode_frame(frame), qos=1 if final else 0
            )
        if final:
            await self._end(slot, "end_of_stream")

    async def _housekeeping(self) -> None:
        tick = min(
            self.config.latency_interval_s, self.config.idle_timeout_s / 4, self.config.lost_grace_s / 4
        )
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for slot in list(self._streams.values()):
                if not slot.finishing and now - slot.last_input > self.config.idle_timeout_s:
                    await self._end(slot, "idle_timeout")
                elif slot.lost_since is not None and now - slot.lost_since > self.config.lost_grace_s:
                    await self._end(slot, "client_lost")
                elif slot.step_window and now - slot.last_latency_event >= self.config.latency_interval_s:
                    slot.last_latency_event = now
                    await self._event(slot, "latency", **slot.latency_fields(self.chunk_ms))


def _stream_id_of(payload: bytes | bytearray | str) -> str | None:
    """Best-effort stream id from a payload that failed validation (to address the error event)."""
    import json

    try:
        sid = json.loads(payload).get("stream_id")
        return validate_stream_id(sid)
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
