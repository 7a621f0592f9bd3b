"""JSON events, claim and release requests: round trips, strict validation, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import ProtocolError, StreamIdError
from streamer.mqtt.events import (
    EVENT_KINDS,
    MAX_JSON_BYTES,
    ClaimRequest,
    Event,
    ReleaseRequest,
    make_event,
    parse_event,
)

VALID_FIELDS: dict[str, dict] = {
    "claimed": {"worker_id": "w1", "claim_id": "c1", "client_id": "dev-7"},
    "busy": {"worker_id": "w1", "claim_id": "c1", "reason": "max_streams", "max_streams": 8},
    "started": {"worker_id": "w1", "sample_rate": 48000, "output_sample_rate": 16000},
    "latency": {"start_offset_ms": 320.5, "chunk_ms_p95": 12, "rtf": 0.08},
    "error": {"code": "out_of_order", "message": "seq 3 after 5", "seq": 3, "count": 1},
    "ended": {"reason": "end_of_stream", "frames_in": 100, "frames_out": 20, "gaps": 0, "dropped": 1},
}


def test_every_kind_has_a_valid_example() -> None:
    assert (
        set(VALID_FIELDS) == set(EVENT_KINDS) == {"claimed", "busy", "started", "latency", "error", "ended"}
    )


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_event_round_trip(kind: str) -> None:
    payload = make_event(kind, "mic0", ts=1700000000.25, **VALID_FIELDS[kind])
    obj = json.loads(payload)
    assert obj["v"] == 1 and obj["kind"] == kind and obj["stream_id"] == "mic0"
    ev = parse_event(payload)
    assert isinstance(ev, Event)
    assert (ev.kind, ev.stream_id, ev.ts) == (kind, "mic0", 1700000000.25)
    assert dict(ev.fields) == VALID_FIELDS[kind]
    assert parse_event(ev.to_json()) == ev
    assert parse_event(payload.decode()) == ev  # str payloads work too


def test_event_fields_are_read_only_and_accessible() -> None:
    ev = parse_event(make_event("error", "s", code="duplicate", message="dup"))
    assert ev["code"] == "duplicate" and ev.get("seq") is None and ev.get("seq", 4) == 4
    with pytest.raises(TypeError):
        ev.fields["code"] = "x"  # type: ignore[index]


def test_make_event_defaults_ts_to_now() -> None:
    ev = parse_event(make_event("ended", "s", reason="idle_timeout"))
    assert ev.ts > 1.6e9


def test_extra_fields_are_kept() -> None:
    ev = parse_event(make_event("ended", "s", reason="shutdown", note="bye", detail={"a": [1, 2]}))
    assert ev["note"] == "bye" and ev["detail"] == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("kind", "stream_id", "fields", "match", "exc"),
    [
        ("hello", "s", {}, "unknown event kind 'hello'", ProtocolError),
        ("ended", "a/b", {"reason": "x"}, "separator", StreamIdError),
        ("ended", "s", {}, "missing required field 'reason'", ProtocolError),
        ("ended", "s", {"reason": 3}, "field 'reason' must be str", ProtocolError),
        ("ended", "s", {"reason": "x", "frames_in": 1.5}, "'frames_in' must be int", ProtocolError),
        ("ended", "s", {"reason": "x", "frames_in": True}, "'frames_in' must be int", ProtocolError),
        ("ended", "s", {"reason": "x", "v": 2}, "reserved names", ProtocolError),
        (
            "started",
            "s",
            {"worker_id": "w", "sample_rate": 1, "output_sample_rate": 16000},
            "sample rate 1 ",
            None,
        ),
        ("latency", "s", {"rtf": "fast"}, "'rtf' must be number", ProtocolError),
        ("latency", "s", {"rtf": float("nan")}, "'rtf' must be number", ProtocolError),
        ("error", "s", {"code": "bad code", "message": "m"}, "whitespace", ProtocolError),
        ("claimed", "s", {"worker_id": "w#1", "claim_id": "c"}, "wildcard '#'", ProtocolError),
        ("ended", "s", {"reason": "x", "blob": "y" * MAX_JSON_BYTES}, "limit is", ProtocolError),
        ("ended", "s", {"reason": "x", "obj": object()}, "not JSON-serialisable", ProtocolError),
    ],
)
def test_make_event_validates(kind: str, stream_id: str, fields: dict, match: str, exc: type | None) -> None:
    with pytest.raises(exc or ProtocolError, match=match):
        make_event(kind, stream_id, **fields)


def _raw(**obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"v": 1, "v": 1}', "duplicate JSON key 'v'"),
        (b'{"v": 1, "kind": "latency", "stream_id": "s", "ts": NaN}', "JSON constant NaN"),
        (b'{"v": 1, "kind": "latency", "stream_id": "s", "ts": 1, "x": Infinity}', "Infinity"),
        (_raw(kind="ended", stream_id="s", ts=1, reason="x"), "version v=None"),
        (_raw(v=2, kind="ended", stream_id="s", ts=1, reason="x"), "version v=2"),
        (_raw(v=True, kind="ended", stream_id="s", ts=1, reason="x"), "version v=True"),
        (_raw(v=1, kind="nope", stream_id="s", ts=1), "unknown event kind 'nope'"),
        (_raw(v=1, kind="ended", stream_id="s+", ts=1, reason="x"), "wildcard '\\+'"),
        (_raw(v=1, kind="ended", ts=1, reason="x"), "stream id must be a str"),
        (_raw(v=1, kind="ended", stream_id="s", reason="x"), "'ts' must be number"),
        (_raw(v=1, kind="ended", stream_id="s", ts="now", reason="x"), "'ts' must be number"),
        (_raw(v=1, kind="error", stream_id="s", ts=1, code="c"), "missing required field 'message'"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply|must be a JSON object"),
        (b"x" * (MAX_JSON_BYTES + 1), "limit is"),
    ],
)
def test_parse_event_rejects(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_event(payload)


def test_parse_event_rejects_non_bytes() -> None:
    with pytest.raises(ProtocolError, match="must be bytes or str"):
        parse_event(42)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_fuzz_parse_event_arbitrary_payload(payload: bytes | str) -> None:
    try:
        parse_event(payload)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from([*EVENT_KINDS, "claim", "x"]),
    stream_id=st.sampled_from(["s", "", "a/b", "ok-1"]) | st.text(max_size=5),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "worker_id",
                "claim_id",
                "reason",
                "code",
                "message",
                "seq",
                "sample_rate",
                "output_sample_rate",
                "rtf",
                "v",
                "ts",
            ]
        ),
        json_values,
        max_size=6,
    ),
)
def test_fuzz_parse_event_structured(kind: str, stream_id: str, extra: dict) -> None:
    obj = {"v": 1, "kind": kind, "stream_id": stream_id, "ts": 1.0, **extra}
    try:
        payload = json.dumps(obj).encode()
    except ValueError:
        return
    try:
        ev = parse_event(payload)
    except ProtocolError:
        return
    assert ev.kind == kind and ev.stream_id == stream_id
    assert parse_event(ev.to_json()) == ev  # anything accepted re-serialises to the same event


# --- claim and release -------------------------------------------------------------------------------------


def test_claim_round_trip() -> None:
    req = ClaimRequest(stream_id="mic0", client_id="dev-1", sample_rate=48000, reply_topic="inbox/dev-1")
    obj = json.loads(req.to_json())
    assert obj["kind"] == "claim" and obj["v"] == 1 and len(obj["claim_id"]) == 32
    assert ClaimRequest.from_json(req.to_json()) == req
    plain = ClaimRequest(stream_id="mic0", client_id="dev-1", sample_rate=16000)
    assert "reply_topic" not in json.loads(plain.to_json())
    assert ClaimRequest.from_json(plain.to_json()) == plain
    assert plain.claim_id != ClaimRequest(stream_id="mic0", client_id="dev-1", sample_rate=16000).claim_id


@pytest.mark.parametrize(
    ("obj", "match", "exc"),
    [
        ({"kind": "release"}, "expected 'claim'", ProtocolError),
        ({"stream_id": None}, "'stream_id' must be str", ProtocolError),
        ({"stream_id": "a b"}, "whitespace", StreamIdError),
        ({"client_id": "x/y"}, "client_id .* separator", ProtocolError),
        ({"claim_id": ""}, "claim_id is empty", ProtocolError),
        ({"sample_rate": 12345}, "unsupported sample rate 12345", ProtocolError),
        ({"sample_rate": "16000"}, "'sample_rate' must be int", ProtocolError),
        ({"reply_topic": "a/+/b"}, "wildcard", ProtocolError),
        ({"reply_topic": "$SYS/x"}, "reserve", ProtocolError),
        ({"reply_topic": 5}, "'reply_topic' must be str", ProtocolError),
        ({"v": 9}, "version v=9", ProtocolError),
    ],
)
def test_claim_validation(obj: dict, match: str, exc: type) -> None:
    base = {
        "v": 1,
        "kind": "claim",
        "stream_id": "s",
        "client_id": "c",
        "claim_id": "k",
        "sample_rate": 16000,
    }
    with pytest.raises(exc, match=match):
        ClaimRequest.from_json(json.dumps({**base, **obj}))


def test_claim_missing_field() -> None:
    with pytest.raises(ProtocolError, match="missing required field 'client_id'"):
        ClaimRequest.from_json(_raw(v=1, kind="claim", stream_id="s", claim_id="k", sample_rate=16000))


def test_release_round_trip_and_targeting() -> None:
    anyone = ReleaseRequest(stream_id="s", client_id="c")
    assert ReleaseRequest.from_json(anyone.to_json()) == anyone
    assert anyone.applies_to("w1") and anyone.applies_to("w2")
    one = ReleaseRequest(stream_id="s", client_id="c", worker_id="w2", claim_id="k")
    assert ReleaseRequest.from_json(one.to_json()) == one
    assert one.applies_to("w2") and not one.applies_to("w1")
    with pytest.raises(ProtocolError, match="expected 'release'"):
        ReleaseRequest.from_json(_raw(v=1, kind="claim", stream_id="s", client_id="c"))
    with pytest.raises(ProtocolError, match="'worker_id' must be str"):
        ReleaseRequest.from_json(_raw(v=1, kind="release", stream_id="s", client_id="c", worker_id=3))
    with pytest.raises(ProtocolError, match="missing required field 'client_id'"):
        ReleaseRequest.from_json(_raw(v=1, kind="release", stream_id="s"))
    will = ReleaseRequest(stream_id="s", client_id="c", will=True)
    assert json.loads(will.to_json())["will"] is True and ReleaseRequest.from_json(will.to_json()) == will
    assert "will" not in json.loads(anyone.to_json())
    with pytest.raises(ProtocolError, match="'will' must be a boolean"):
        ReleaseRequest.from_json(_raw(v=1, kind="release", stream_id="s", client_id="c", will=1))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_claim_and_release_only_raise_protocol_error(payload: bytes | str) -> None:
    for parse in (ClaimRequest.from_json, ReleaseRequest.from_json):
        try:
            parse(payload)
        except ProtocolError:
            pass
