"""MQTT topic scheme for streamer, and validation of the names that go into topics.

Every topic lives under a configurable prefix (default ``streamer/v1``)::

    {prefix}/claim                 claim requests (workers subscribe $share/{group}/{prefix}/claim)
    {prefix}/{stream_id}/in        audio frames, client -> worker
    {prefix}/{stream_id}/out       audio frames, worker -> client
    {prefix}/{stream_id}/events    JSON events, worker -> client
    {prefix}/{stream_id}/control   JSON control requests (release), client -> worker

``{prefix}/claim`` has one level after the prefix and stream topics have two, so a stream may even be
called ``claim`` without ambiguity.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from streamer.errors import ProtocolError, StreamIdError

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_STREAM_ID_LEN",
    "MAX_TOPIC_BYTES",
    "TopicKind",
    "TopicScheme",
    "parse_stream_topic",
    "validate_group",
    "validate_name",
    "validate_prefix",
    "validate_publish_topic",
    "validate_stream_id",
]

DEFAULT_PREFIX = "streamer/v1"
MAX_STREAM_ID_LEN = 64
MAX_TOPIC_BYTES = 65_535  # an MQTT topic is a UTF-8 string with a uint16 length
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")  # ASCII only: re's [A-Za-z0-9] never matches other scripts
# Characters with a specific reason to be refused, named in the error message.
_FORBIDDEN = {
    "+": "the MQTT single-level wildcard '+'",
    "#": "the MQTT multi-level wildcard '#'",
    "/": "the MQTT topic level separator '/'",
    "\x00": "a NUL character (forbidden in MQTT topics)",
}


class TopicKind(enum.StrEnum):
    """The last level of a per-stream topic."""

    IN = "in"
    OUT = "out"
    EVENTS = "events"
    CONTROL = "control"


def validate_name(
    value: object, *, what: str, max_len: int, error: type[ProtocolError] = ProtocolError
) -> str:
    """Check a name that is used as a topic level or an id: 1..max_len chars of ``[A-Za-z0-9_.-]``.

    Returns the name unchanged. Raises ``error`` (a ProtocolError subclass) naming the first bad character.
    """
    if not isinstance(value, str):
        raise error(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise error(f"{what} is empty")
    if len(value) > max_len:
        raise error(f"{what} is {len(value)} characters long; the limit is {max_len}")
    if _NAME_RE.fullmatch(value):
        return value
    for i, ch in enumerate(value):
        if _NAME_RE.fullmatch(ch):
            continue
        if ch in _FORBIDDEN:
            reason = _FORBIDDEN[ch]
        elif ch.isspace():
            reason = f"whitespace (U+{ord(ch):04X})"
        else:
            reason = f"the character {ch!r} (U+{ord(ch):04X})"
        raise error(f"{what} {value!r} holds {reason} at index {i}; only [A-Za-z0-9_.-] is allowed")
    raise AssertionError("unreachable")  # pragma: no cover


def validate_stream_id(stream_id: object) -> str:
    """Return ``stream_id`` if it is a valid stream id, else raise StreamIdError.

    A stream id is 1..64 ASCII characters from ``[A-Za-z0-9_.-]``. That refuses ``+``, ``#``, ``/``,
    NUL, whitespace and all non-ASCII text, so a stream id can never widen a subscription or add a level.
    """
    return validate_name(stream_id, what="stream id", max_len=MAX_STREAM_ID_LEN, error=StreamIdError)


def validate_group(group: object) -> str:
    """Return ``group`` if it is a valid shared-subscription group name (1..64 of ``[A-Za-z0-9_.-]``)."""
    return validate_name(group, what="share group", max_len=64)


def _check_topic_chars(topic: str, what: str) -> None:
    if "\x00" in topic:
        raise ProtocolError(f"{what} {topic!r} contains a NUL character")
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"{what} {topic!r} is not valid UTF-8 text: {exc.reason}") from None
    if len(encoded) > MAX_TOPIC_BYTES:
        raise ProtocolError(f"{what} is {len(encoded)} bytes of UTF-8; the MQTT limit is {MAX_TOPIC_BYTES}")


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a valid topic prefix, else raise ProtocolError.

    A prefix is one or more non-empty levels separated by ``/``, without wildcards, NUL, whitespace,
    a leading ``$`` (reserved for broker topics) or leading/trailing ``/``.
    """
    if not isinstance(prefix, str):
        raise ProtocolError(f"topic prefix must be a str, got {type(prefix).__name__}")
    if not prefix:
        raise ProtocolError("topic prefix is empty")
    if prefix.startswith("$"):
        raise ProtocolError(f"topic prefix {prefix!r} starts with '$', which brokers reserve for themselves")
    for level in prefix.split("/"):
        if not level:
            raise ProtocolError(f"topic prefix {prefix!r} has an empty level (leading, trailing or double /)")
        validate_name(level, what="topic prefix level", max_len=MAX_TOPIC_BYTES)
    return prefix


def validate_publish_topic(topic: object) -> str:
    """Return ``topic`` if a client may publish to it (used for claim reply topics), else raise ProtocolError.

    The topic must be non-empty UTF-8 of at most 65535 bytes without ``+``, ``#``, NUL, or a leading ``$``.
    """
    if not isinstance(topic, str):
        raise ProtocolError(f"topic must be a str, got {type(topic).__name__}")
    if not topic:
        raise ProtocolError("topic is empty")
    _check_topic_chars(topic, "topic")
    if "+" in topic or "#" in topic:
        raise ProtocolError(f"topic {topic!r} holds an MQTT wildcard; a publish topic may not")
    if topic.startswith("$"):
        raise ProtocolError(f"topic {topic!r} starts with '$', which brokers reserve for themselves")
    return topic


def _topic_kind(kind: TopicKind | str) -> TopicKind:
    try:
        return TopicKind(kind)
    except ValueError:
        known = [k.value for k in TopicKind]
        raise ProtocolError(f"unknown topic kind {kind!r}; expected one of {known}") from None


@dataclass(frozen=True)
class TopicScheme:
    """The topic names for one deployment. Build one per prefix; all methods are pure.

    >>> t = TopicScheme()
    >>> t.in_topic("mic0")
    'streamer/v1/mic0/in'
    >>> t.shared_claim_topic("workers")
    '$share/workers/streamer/v1/claim'
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def stream_topic(self, stream_id: str, kind: TopicKind | str) -> str:
        """``{prefix}/{stream_id}/{kind}``; validates the stream id and the kind."""
        kind = _topic_kind(kind)
        return f"{self.prefix}/{validate_stream_id(stream_id)}/{kind.value}"

    def in_topic(self, stream_id: str) -> str:
        """Audio frames into the worker for ``stream_id``."""
        return self.stream_topic(stream_id, TopicKind.IN)

    def out_topic(self, stream_id: str) -> str:
        """Translated audio frames out of the worker for ``stream_id``."""
        return self.stream_topic(stream_id, TopicKind.OUT)

    def events_topic(self, stream_id: str) -> str:
        """JSON events (claimed, busy, started, latency, error, ended) for ``stream_id``."""
        return self.stream_topic(stream_id, TopicKind.EVENTS)

    def control_topic(self, stream_id: str) -> str:
        """JSON control requests (release) from the client to the owning worker."""
        return self.stream_topic(stream_id, TopicKind.CONTROL)

    @property
    def claim_topic(self) -> str:
        """Where clients publish claim requests: ``{prefix}/claim``."""
        return f"{self.prefix}/claim"

    def shared_claim_topic(self, group: str) -> str:
        """Workers subscribe to ``$share/{group}/{prefix}/claim``; one worker of a group gets each claim."""
        return f"$share/{validate_group(group)}/{self.claim_topic}"

    def stream_filter(self, kind: TopicKind | str) -> str:
        """A subscription filter for one kind across all streams, e.g. ``{prefix}/+/events`` for a monitor."""
        kind = _topic_kind(kind)
        return f"{self.prefix}/+/{kind.value}"

    def parse(self, topic: str) -> tuple[str, TopicKind]:
        """Split a per-stream topic into ``(stream_id, kind)``.

        Raises ProtocolError if ``topic`` is not ``{prefix}/{stream_id}/{kind}`` for this prefix and a known
        kind, and StreamIdError if the stream id level is invalid.
        """
        if not isinstance(topic, str):
            raise ProtocolError(f"topic must be a str, got {type(topic).__name__}")
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise ProtocolError(f"topic {topic!r} is not under the prefix {self.prefix!r}")
        rest = topic[len(head) :].split("/")
        if len(rest) != 2:
            raise ProtocolError(f"topic {topic!r} is not of the form '{self.prefix}/<stream_id>/<kind>'")
        stream_id, kind = rest
        try:
            topic_kind = TopicKind(kind)
        except ValueError:
            raise ProtocolError(f"topic {topic!r} ends in unknown kind {kind!r}") from None
        return validate_stream_id(stream_id), topic_kind

    def is_claim_topic(self, topic: str) -> bool:
        """True if ``topic`` is this scheme's claim topic (as delivered, without the ``$share`` part)."""
        return topic == self.claim_topic


def parse_stream_topic(topic: str, *, prefix: str = DEFAULT_PREFIX) -> tuple[str, TopicKind]:
    """Module-level shortcut for ``TopicScheme(prefix).parse(topic)``."""
    return TopicScheme(prefix).parse(topic)
