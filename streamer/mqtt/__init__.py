"""MQTT transport for streamer: wire framing, JSON control payloads, topics, and a test broker helper.

Devices publish PCM frames to ``{prefix}/{stream_id}/in`` and receive translated frames on ``.../out``;
see docs/mqtt.md for the full protocol. The worker and client (which need torch) are not imported here,
so ``import streamer.mqtt`` stays light.
"""

from streamer.mqtt.events import (
    EVENT_KINDS,
    ClaimRequest,
    Event,
    ReleaseRequest,
    make_event,
    new_claim_id,
    parse_event,
)
from streamer.mqtt.protocol import (
    DEFAULT_MAX_SAMPLES,
    HEADER_SIZE,
    SUPPORTED_SAMPLE_RATES,
    AudioFrame,
    FrameFlags,
    decode_frame,
    encode_frame,
)
from streamer.mqtt.sequence import SeqDecision, SequenceStats, SequenceTracker, SeqVerdict
from streamer.mqtt.topics import DEFAULT_PREFIX, TopicKind, TopicScheme, validate_stream_id

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_PREFIX",
    "EVENT_KINDS",
    "HEADER_SIZE",
    "SUPPORTED_SAMPLE_RATES",
    "AudioFrame",
    "ClaimRequest",
    "Event",
    "FrameFlags",
    "ReleaseRequest",
    "SeqDecision",
    "SeqVerdict",
    "SequenceStats",
    "SequenceTracker",
    "TopicKind",
    "TopicScheme",
    "decode_frame",
    "encode_frame",
    "make_event",
    "new_claim_id",
    "parse_event",
    "validate_stream_id",
]
