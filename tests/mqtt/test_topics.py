"""Topic scheme and the validation of stream ids, prefixes, groups and reply topics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import ProtocolError, StreamIdError
from streamer.mqtt.topics import (
    DEFAULT_PREFIX,
    MAX_STREAM_ID_LEN,
    TopicKind,
    TopicScheme,
    parse_stream_topic,
    validate_prefix,
    validate_publish_topic,
    validate_stream_id,
)


@pytest.mark.parametrize(
    "sid", ["a", "mic0", "Dev_1.left-ch", "0", "...", "-", "x" * MAX_STREAM_ID_LEN, "claim"]
)
def test_valid_stream_ids(sid: str) -> None:
    assert validate_stream_id(sid) == sid


@pytest.mark.parametrize(
    ("sid", "match"),
    [
        ("", "stream id is empty"),
        ("x" * (MAX_STREAM_ID_LEN + 1), "65 characters long; the limit is 64"),
        ("a+b", "single-level wildcard '\\+' at index 1"),
        ("+", "wildcard"),
        ("room#1", "multi-level wildcard '#' at index 4"),
        ("#", "wildcard"),
        ("a/b", "separator '/' at index 1"),
        ("/", "separator"),
        ("a\x00b", "NUL"),
        ("a b", "whitespace \\(U\\+0020\\)"),
        ("a\tb", "whitespace \\(U\\+0009\\)"),
        ("a\nb", "whitespace"),
        ("a\u00a0b", "whitespace \\(U\\+00A0\\)"),
        ("café", "U\\+00E9"),
        ("日本", "U\\+65E5"),
        ("mic\u200b0", "U\\+200B"),
        ("ａ", "U\\+FF41"),  # fullwidth letter: .isalnum() would accept it, we don't
        ("$SYS", "'\\$'"),
        ("a:b", "':'"),
        ("a\ud800", "U\\+D800"),
    ],
)
def test_invalid_stream_ids(sid: str, match: str) -> None:
    with pytest.raises(StreamIdError, match=match):
        validate_stream_id(sid)


@pytest.mark.parametrize("bad", [None, 5, b"mic0", ["mic0"]])
def test_stream_id_must_be_str(bad: object) -> None:
    with pytest.raises(StreamIdError, match="must be a str"):
        validate_stream_id(bad)


def test_stream_id_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        validate_stream_id("a/b")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_accepted_stream_ids_are_safe_topic_levels(sid: str) -> None:
    try:
        validate_stream_id(sid)
    except StreamIdError:
        return
    assert 1 <= len(sid) <= 64 and sid.isascii()
    assert not set(sid) & set("+#/\x00 \t\r\n")
    assert TopicScheme().parse(TopicScheme().in_topic(sid)) == (sid, TopicKind.IN)


def test_default_scheme_topics() -> None:
    t = TopicScheme()
    assert t.prefix == DEFAULT_PREFIX == "streamer/v1"
    assert t.in_topic("mic0") == "streamer/v1/mic0/in"
    assert t.out_topic("mic0") == "streamer/v1/mic0/out"
    assert t.events_topic("mic0") == "streamer/v1/mic0/events"
    assert t.control_topic("mic0") == "streamer/v1/mic0/control"
    assert t.claim_topic == "streamer/v1/claim"
    assert t.shared_claim_topic("workers") == "$share/workers/streamer/v1/claim"
    assert t.stream_filter("events") == "streamer/v1/+/events"
    assert t.stream_topic("x", "out") == "streamer/v1/x/out"
    assert t.is_claim_topic("streamer/v1/claim") and not t.is_claim_topic("streamer/v1/claim/in")


def test_custom_prefix() -> None:
    t = TopicScheme("acme/site-3/s2st")
    assert t.out_topic("d1") == "acme/site-3/s2st/d1/out"
    assert t.parse("acme/site-3/s2st/d1/out") == ("d1", TopicKind.OUT)
    assert parse_stream_topic("acme/site-3/s2st/d1/events", prefix="acme/site-3/s2st") == (
        "d1",
        TopicKind.EVENTS,
    )


def test_topic_builders_validate_stream_ids() -> None:
    t = TopicScheme()
    for bad in ["+", "#", "a/b", "", "x" * 65]:
        with pytest.raises(StreamIdError):
            t.in_topic(bad)
    with pytest.raises(ProtocolError, match="unknown topic kind 'audio'"):
        t.stream_topic("s", "audio")
    with pytest.raises(ProtocolError, match="share group"):
        t.shared_claim_topic("a/b")
    with pytest.raises(ProtocolError, match="unknown topic kind"):
        t.stream_filter("nope")


@pytest.mark.parametrize(
    ("topic", "exc", "match"),
    [
        ("other/v1/s/in", ProtocolError, "not under the prefix"),
        ("streamer/v1", ProtocolError, "not under the prefix"),
        ("streamer/v1/claim", ProtocolError, "not of the form"),
        ("streamer/v1/s/in/extra", ProtocolError, "not of the form"),
        ("streamer/v1/s/audio", ProtocolError, "unknown kind 'audio'"),
        ("streamer/v1//in", StreamIdError, "empty"),
        ("streamer/v1/a+b/in", StreamIdError, "wildcard"),
        ("streamer/v10/s/in", ProtocolError, "not under the prefix"),
    ],
)
def test_parse_rejects(topic: str, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        TopicScheme().parse(topic)


@pytest.mark.parametrize(
    ("prefix", "match"),
    [
        ("", "empty"),
        ("/streamer", "empty level"),
        ("streamer/", "empty level"),
        ("a//b", "empty level"),
        ("$SYS/x", "starts with '\\$'"),
        ("a/+/b", "wildcard"),
        ("a/#", "wildcard"),
        ("a b", "whitespace"),
        (7, "must be a str"),
    ],
)
def test_invalid_prefixes(prefix: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        validate_prefix(prefix)
    with pytest.raises(ProtocolError):
        TopicScheme(prefix)  # type: ignore[arg-type]


def test_publish_topic_validation() -> None:
    assert validate_publish_topic("inbox/dev 1/ünïcode") == "inbox/dev 1/ünïcode"  # legal MQTT
    for bad, match in [
        ("", "empty"),
        ("a/+", "wildcard"),
        ("#", "wildcard"),
        ("$SYS/x", "reserve"),
        ("a\x00", "NUL"),
        ("a\ud800", "not valid UTF-8"),
        ("x" * 65536, "65536 bytes"),
        (None, "must be a str"),
    ]:
        with pytest.raises(ProtocolError, match=match):
            validate_publish_topic(bad)
