"""JSON control-plane payloads: events (worker -> client), claim and release requests (client -> worker).

Every payload is one UTF-8 JSON object of at most ``MAX_JSON_BYTES`` with ``"v": 1`` and a ``"kind"``.
Parsing is strict: duplicate keys, NaN/Infinity, wrong types, unknown kinds and missing required fields all
raise ProtocolError with the field named; unknown *extra* fields are kept (forward compatible).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from streamer.errors import ProtocolError
from streamer.mqtt.protocol import validate_sample_rate
from streamer.mqtt.topics import validate_name, validate_publish_topic, validate_stream_id

__all__ = [
    "EVENT_KINDS",
    "EVENT_SCHEMAS",
    "MAX_JSON_BYTES",
    "PAYLOAD_VERSION",
    "ClaimRequest",
    "Event",
    "ReleaseRequest",
    "make_event",
    "new_claim_id",
    "parse_event",
    "validate_id",
]

PAYLOAD_VERSION = 1
MAX_JSON_BYTES = 16 * 1024
_RESERVED = frozenset({"v", "kind", "stream_id", "ts"})
_Number = (int, float)

# kind -> (required fields, optional fields); each maps a field name to its type(s).
EVENT_SCHEMAS: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = MappingProxyType(
    {
        "claimed": ({"worker_id": str, "claim_id": str}, {"client_id": str}),
        "busy": ({"worker_id": str, "claim_id": str, "reason": str}, {"max_streams": int, "client_id": str}),
        "started": ({"worker_id": str, "sample_rate": int, "output_sample_rate": int}, {}),
        "latency": ({}, {}),  # every extra field must be a finite number (ms, rtf, counts)
        "error": ({"code": str, "message": str}, {"seq": int, "count": int}),
        "ended": ({"reason": str}, {"frames_in": int, "frames_out": int, "gaps": int, "dropped": int}),
    }
)
EVENT_KINDS: tuple[str, ...] = tuple(EVENT_SCHEMAS)


def validate_id(value: object, *, what: str) -> str:
    """A client id, worker id or claim id: 1..128 characters of ``[A-Za-z0-9_.-]``."""
    return validate_name(value, what=what, max_len=128)


def new_claim_id() -> str:
    """A fresh random claim id (32 hex digits)."""
    return uuid.uuid4().hex


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ProtocolError(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _load_json(payload: object, what: str) -> dict[str, Any]:
    """Decode a strict JSON object, raising only ProtocolError."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", errors="surrogatepass")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what} payload must be bytes or str, got {type(payload).__name__}")
    raw = bytes(payload)
    if len(raw) > MAX_JSON_BYTES:
        raise ProtocolError(f"{what} payload is {len(raw)} bytes; the limit is {MAX_JSON_BYTES}")
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} payload is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{what} payload is not valid JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise ProtocolError(f"{what} payload is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} payload must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version != PAYLOAD_VERSION or isinstance(version, bool):
        raise ProtocolError(f"{what} has version v={version!r}; supported: {PAYLOAD_VERSION}")
    return obj


def _dump_json(obj: Mapping[str, Any], what: str) -> bytes:
    try:
        data = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what} is not JSON-serialisable: {exc}") from None
    if len(data) > MAX_JSON_BYTES:
        raise ProtocolError(f"{what} is {len(data)} bytes of JSON; the limit is {MAX_JSON_BYTES}")
    return data


def _check_type(value: object, expected: Any, name: str, what: str) -> None:
    ok = isinstance(value, expected) and not isinstance(value, bool)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        exp = expected.__name__ if isinstance(expected, type) else "number"
        raise ProtocolError(f"{what} field {name!r} must be {exp}, got {value!r}")


def _check_event_fields(kind: str, fields: Mapping[str, Any]) -> None:
    what = f"{kind!r} event"
    required, optional = EVENT_SCHEMAS[kind]
    for name, typ in required.items():
        if name not in fields:
            raise ProtocolError(f"{what} is missing required field {name!r}")
        _check_type(fields[name], typ, name, what)
    for name, typ in optional.items():
        if name in fields:
            _check_type(fields[name], typ, name, what)
    if kind == "latency":
        for name, value in fields.items():
            _check_type(value, _Number, name, what)
    for name in ("worker_id", "claim_id", "client_id"):
        if name in fields:
            validate_id(fields[name], what=f"{what} field {name!r}")
    if "code" in fields:
        validate_id(fields["code"], what=f"{what} field 'code'")
    for name in ("sample_rate", "output_sample_rate"):
        if name in fields:
            validate_sample_rate(fields[name])


@dataclass(frozen=True)
class Event:
    """A parsed event. ``fields`` (read-only) holds all but ``v``, ``kind``, ``stream_id`` and ``ts``."""

    kind: str
    stream_id: str
    ts: float
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        """``fields.get(name, default)``."""
        return self.fields.get(name, default)

    def to_json(self) -> bytes:
        """Serialise back to a payload (``make_event`` with the same values)."""
        return make_event(self.kind, self.stream_id, ts=self.ts, **dict(self.fields))


def make_event(kind: str, stream_id: str, *, ts: float | None = None, **fields: Any) -> bytes:
    """Build the JSON payload of an event, validated exactly as ``parse_event`` validates it.

    Args:
        kind: one of ``EVENT_KINDS``: claimed, busy, started, latency, error, ended.
        stream_id: the stream the event is about.
        ts: wall-clock seconds since the epoch (``time.time()`` if omitted).
        **fields: the kind's fields (see ``EVENT_SCHEMAS``); extra JSON-serialisable fields are allowed.

    Raises:
        ProtocolError: unknown kind, missing/ill-typed field, a reserved field name, or too large.
        StreamIdError: invalid ``stream_id``.
    """
    if kind not in EVENT_SCHEMAS:
        raise ProtocolError(f"unknown event kind {kind!r}; expected one of {list(EVENT_KINDS)}")
    validate_stream_id(stream_id)
    clash = _RESERVED.intersection(fields)
    if clash:
        raise ProtocolError(f"event fields may not use reserved names {sorted(clash)}")
    _check_event_fields(kind, fields)
    stamp = time.time() if ts is None else ts
    _check_type(stamp, _Number, "ts", f"{kind!r} event")
    obj = {"v": PAYLOAD_VERSION, "kind": kind, "stream_id": stream_id, "ts": stamp, **fields}
    return _dump_json(obj, f"{kind!r} event")


def parse_event(payload: bytes | bytearray | memoryview | str) -> Event:
    """Parse and validate an event payload. Raises ProtocolError (StreamIdError for a bad stream id)."""
    obj = _load_json(payload, "event")
    kind = obj.pop("kind", None)
    if kind not in EVENT_SCHEMAS:
        raise ProtocolError(f"unknown event kind {kind!r}; expected one of {list(EVENT_KINDS)}")
    stream_id = validate_stream_id(obj.pop("stream_id", None))
    ts = obj.pop("ts", None)
    _check_type(ts, _Number, "ts", f"{kind!r} event")
    obj.pop("v")
    _check_event_fields(kind, obj)
    return Event(kind=kind, stream_id=stream_id, ts=float(ts), fields=MappingProxyType(obj))


@dataclass(frozen=True)
class ClaimRequest:
    """A client's request that some worker take ``stream_id``; published QoS 1 to ``{prefix}/claim``.

    Attributes:
        stream_id: the stream to translate.
        client_id: who asks (echoed in ``claimed``/``busy`` for logs).
        sample_rate: the rate of the audio the client will send, Hz (one of SUPPORTED_SAMPLE_RATES).
        claim_id: nonce that ties the answer to this request; a retry reuses it.
        reply_topic: where the worker answers ``claimed``/``busy``; None = the stream's events topic.
    """

    stream_id: str
    client_id: str
    sample_rate: int
    claim_id: str = field(default_factory=new_claim_id)
    reply_topic: str | None = None

    def __post_init__(self) -> None:
        validate_stream_id(self.stream_id)
        validate_id(self.client_id, what="client_id")
        validate_id(self.claim_id, what="claim_id")
        object.__setattr__(self, "sample_rate", validate_sample_rate(self.sample_rate))
        if self.reply_topic is not None:
            validate_publish_topic(self.reply_topic)

    def to_json(self) -> bytes:
        """The wire payload."""
        obj: dict[str, Any] = {
            "v": PAYLOAD_VERSION,
            "kind": "claim",
            "stream_id": self.stream_id,
            "client_id": self.client_id,
            "claim_id": self.claim_id,
            "sample_rate": self.sample_rate,
        }
        if self.reply_topic is not None:
            obj["reply_topic"] = self.reply_topic
        return _dump_json(obj, "claim request")

    @classmethod
    def from_json(cls, payload: bytes | bytearray | memoryview | str) -> ClaimRequest:
        """Parse and validate a claim payload; raises ProtocolError (StreamIdError for a bad stream id)."""
        obj = _load_json(payload, "claim request")
        if obj.get("kind") != "claim":
            raise ProtocolError(f"claim request has kind {obj.get('kind')!r}, expected 'claim'")
        for name, typ in (("stream_id", str), ("client_id", str), ("claim_id", str), ("sample_rate", int)):
            if name not in obj:
                raise ProtocolError(f"claim request is missing required field {name!r}")
            _check_type(obj[name], typ, name, "claim request")
        reply = obj.get("reply_topic")
        if reply is not None and not isinstance(reply, str):
            raise ProtocolError(f"claim request field 'reply_topic' must be str, got {reply!r}")
        return cls(
            stream_id=obj["stream_id"],
            client_id=obj["client_id"],
            sample_rate=obj["sample_rate"],
            claim_id=obj["claim_id"],
            reply_topic=reply,
        )


@dataclass(frozen=True)
class ReleaseRequest:
    """Ask the worker that owns ``stream_id`` to drop it now; sent QoS 1 to ``{prefix}/{stream_id}/control``.

    ``worker_id`` None means whichever worker owns it. A client also sends one to a second worker that
    answered ``claimed`` late (after a retry). ``will=True`` marks the copy registered as MQTT last will:
    brokers also publish wills when *they* shut down, so a worker treats it as "client lost" and ends the
    stream only if no input follows within a grace period (docs/mqtt.md, claim flow).
    """

    stream_id: str
    client_id: str
    worker_id: str | None = None
    claim_id: str | None = None
    will: bool = False

    def __post_init__(self) -> None:
        validate_stream_id(self.stream_id)
        validate_id(self.client_id, what="client_id")
        if self.worker_id is not None:
            validate_id(self.worker_id, what="worker_id")
        if self.claim_id is not None:
            validate_id(self.claim_id, what="claim_id")

    def applies_to(self, worker_id: str) -> bool:
        """True if the worker named ``worker_id`` should act on this request."""
        return self.worker_id is None or self.worker_id == worker_id

    def to_json(self) -> bytes:
        """The wire payload."""
        obj: dict[str, Any] = {
            "v": PAYLOAD_VERSION,
            "kind": "release",
            "stream_id": self.stream_id,
            "client_id": self.client_id,
        }
        if self.worker_id is not None:
            obj["worker_id"] = self.worker_id
        if self.claim_id is not None:
            obj["claim_id"] = self.claim_id
        if self.will:
            obj["will"] = True
        return _dump_json(obj, "release request")

    @classmethod
    def from_json(cls, payload: bytes | bytearray | memoryview | str) -> ReleaseRequest:
        """Parse and validate a release payload; raises ProtocolError."""
        obj = _load_json(payload, "release request")
        if obj.get("kind") != "release":
            raise ProtocolError(f"release request has kind {obj.get('kind')!r}, expected 'release'")
        for name in ("stream_id", "client_id"):
            if name not in obj:
                raise ProtocolError(f"release request is missing required field {name!r}")
        for name in ("worker_id", "claim_id"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                raise ProtocolError(f"release request field {name!r} must be str, got {obj[name]!r}")
        if not isinstance(obj.get("will", False), bool):
            raise ProtocolError(f"release request field 'will' must be a boolean, got {obj['will']!r}")
        return cls(
            stream_id=obj["stream_id"],
            client_id=obj["client_id"],
            worker_id=obj.get("worker_id"),
            claim_id=obj.get("claim_id"),
            will=obj.get("will", False),
        )
