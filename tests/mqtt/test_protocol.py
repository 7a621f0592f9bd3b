"""Binary audio framing: round trips, every malformed case, and fuzzing of decode_frame."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamer.errors import ProtocolError
from streamer.mqtt.protocol import (
    DEFAULT_MAX_SAMPLES,
    HEADER_SIZE,
    MAGIC,
    SUPPORTED_SAMPLE_RATES,
    AudioFrame,
    FrameFlags,
    decode_frame,
    encode_frame,
    frame_size,
)

RATES = sorted(SUPPORTED_SAMPLE_RATES)


def header(
    *,
    magic: bytes = MAGIC,
    version: int = 1,
    flags: int = 0,
    seq: int = 0,
    rate: int = 16000,
    count: int = 0,
) -> bytes:
    return struct.pack("<2sBBIII", magic, version, flags, seq, rate, count)


def pcm(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32768, size=n, dtype=np.int16)


# --- layout and round trips ---------------------------------------------------------------------------------


def test_header_is_16_bytes_and_layout_is_little_endian() -> None:
    frame = AudioFrame(seq=0x01020304, sample_rate=48000, samples=np.array([1, -2], np.int16), flags=3)
    data = encode_frame(frame)
    assert HEADER_SIZE == 16
    assert len(data) == frame_size(2) == 20
    assert data[:2] == b"SA"
    assert data[2] == 1  # version
    assert data[3] == 0x03  # START | END
    assert data[4:8] == bytes([4, 3, 2, 1])
    assert data[8:12] == (48000).to_bytes(4, "little")
    assert data[12:16] == (2).to_bytes(4, "little")
    assert data[16:] == b"\x01\x00\xfe\xff"


@pytest.mark.parametrize("rate", RATES)
def test_round_trip_every_rate(rate: int) -> None:
    frame = AudioFrame(seq=7, sample_rate=rate, samples=pcm(rate // 50))
    assert decode_frame(encode_frame(frame)) == frame


def test_round_trip_empty_end_frame_and_extremes() -> None:
    end = AudioFrame(seq=2**32 - 1, sample_rate=16000, samples=np.zeros(0, np.int16), flags=FrameFlags.END)
    back = decode_frame(encode_frame(end))
    assert back == end and back.is_end and not back.is_start and back.num_samples == 0
    loud = AudioFrame(seq=1, sample_rate=8000, samples=np.array([-32768, 32767, 0], np.int16))
    assert decode_frame(encode_frame(loud)).samples.tolist() == [-32768, 32767, 0]


def test_decode_accepts_bytearray_and_memoryview_and_owns_its_samples() -> None:
    data = bytearray(encode_frame(AudioFrame(seq=1, sample_rate=16000, samples=pcm(10))))
    f1 = decode_frame(data)
    f2 = decode_frame(memoryview(data))
    data[HEADER_SIZE:] = bytes(len(data) - HEADER_SIZE)  # mutate the buffer after decoding
    assert f1 == f2 and f1.samples.tolist() == pcm(10).tolist()
    assert not f1.samples.flags.writeable


def test_frame_is_immutable_and_copies_writable_input() -> None:
    x = pcm(4)
    original = x.copy()
    frame = AudioFrame(seq=0, sample_rate=16000, samples=x)
    x[:] = ~x  # every sample changes
    assert np.array_equal(frame.samples, original)
    with pytest.raises(ValueError):
        frame.samples[0] = 1
    with pytest.raises(AttributeError):
        frame.seq = 3  # type: ignore[misc]


def test_float_conversion() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], np.float32)
    frame = AudioFrame.from_float(x, seq=0, sample_rate=16000)
    assert frame.samples.tolist() == [0, 16384, -16384, 32767, -32768, 32767]
    assert np.allclose(frame.to_float32()[:3], [0.0, 0.5, -0.5])
    assert frame.to_float32().dtype == np.float32
    again = AudioFrame.from_float(frame.to_float32(), seq=0, sample_rate=16000)
    assert again == frame  # int16 -> float32 -> int16 is exact
    assert frame.duration_ms == pytest.approx(6 / 16)
    with pytest.raises(ProtocolError, match="NaN or Inf"):
        AudioFrame.from_float(np.array([np.nan], np.float32), seq=0, sample_rate=16000)
    with pytest.raises(ProtocolError, match="mono"):
        AudioFrame.from_float(np.zeros((2, 3)), seq=0, sample_rate=16000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq": -1}, "outside uint32"),
        ({"seq": 2**32}, "outside uint32"),
        ({"seq": True}, "seq must be an int"),
        ({"sample_rate": 11025}, "unsupported sample rate 11025"),
        ({"flags": 0x08}, "reserved flag bits set: 0x08"),
        ({"samples": np.zeros(3, np.float32)}, "int16"),
        ({"samples": np.zeros((2, 2), np.int16)}, "mono"),
        ({"samples": [1, 2]}, "numpy array"),
    ],
)
def test_frame_constructor_validates(kwargs: dict, match: str) -> None:
    args = {"seq": 0, "sample_rate": 16000, "samples": np.zeros(2, np.int16), **kwargs}
    with pytest.raises(ProtocolError, match=match):
        AudioFrame(**args)


# --- every malformed case -----------------------------------------------------------------------------------

GOOD = encode_frame(AudioFrame(seq=5, sample_rate=16000, samples=pcm(8)))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty frame payload"),
        (b"X", "bad magic"),
        (b"XY" + GOOD[2:], r"bad magic: expected b'SA', got b'XY'"),
        (b"\x00" * 64, "bad magic"),
        (b"SA\x02" + GOOD[3:], "unknown frame version 2"),
        (b"SA\x00", "unknown frame version 0"),
        (b"S", "truncated header: got 1 bytes"),
        (b"SA", "truncated header: got 2 bytes"),
        (GOOD[:15], "truncated header: got 15 bytes, the v1 header is 16"),
        (header(flags=0x80), r"reserved flag bits set: 0x80"),
        (header(flags=0x0B), r"reserved flag bits set: 0x08"),
        (header(rate=0), "unsupported sample rate 0 Hz"),
        (header(rate=44101), "unsupported sample rate 44101 Hz"),
        (header(count=DEFAULT_MAX_SAMPLES + 1), "oversize frame: header declares 48001 samples"),
        (header(count=1) + bytes(2 * DEFAULT_MAX_SAMPLES + 2), "oversize frame"),
        (header(count=2) + b"\x00\x00\x00", "odd PCM16 payload length: 3 bytes"),
        (
            header(count=3) + b"\x00\x00",
            r"length mismatch: header declares 3 samples \(6 bytes\), payload has 2",
        ),
        (header(count=0) + b"\x00\x00", "length mismatch"),
        (GOOD[:-2], "length mismatch"),
        (GOOD + b"\x00\x00", "length mismatch"),
    ],
)
def test_malformed_frames_raise_protocol_error(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_frame(data)


def test_max_samples_is_enforced_exactly() -> None:
    data = encode_frame(AudioFrame(seq=0, sample_rate=16000, samples=pcm(100)))
    assert decode_frame(data, max_samples=100).num_samples == 100
    with pytest.raises(ProtocolError, match="oversize frame: header declares 100 samples > max_samples=99"):
        decode_frame(data, max_samples=99)
    with pytest.raises(ValueError, match="max_samples"):
        decode_frame(data, max_samples=-1)


@pytest.mark.parametrize("payload", ["SA text", None, 12, 1.5, ["SA"]])
def test_non_bytes_payloads_are_protocol_errors(payload: object) -> None:
    with pytest.raises(ProtocolError, match="must be bytes"):
        decode_frame(payload)  # type: ignore[arg-type]


def test_non_contiguous_memoryview_is_a_protocol_error() -> None:
    view = memoryview(np.frombuffer(GOOD * 2, np.uint8)[::2].copy().reshape(-1)[::2])
    with pytest.raises(ProtocolError):
        decode_frame(view)


def test_protocol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_frame(b"nonsense")


# --- fuzzing ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes_only_raise_protocol_error(data: bytes) -> None:
    try:
        frame = decode_frame(data, max_samples=64)
    except ProtocolError:
        return
    assert encode_frame(frame) == data  # anything accepted is canonical


@settings(max_examples=300, deadline=None)
@given(
    magic=st.sampled_from([MAGIC, b"SB", b"\x00A"]),
    version=st.sampled_from([1, 1, 1, 0, 2, 255]),
    flags=st.integers(0, 255),
    seq=st.integers(0, 2**32 - 1),
    rate=st.sampled_from([*RATES, 0, 11025, 2**32 - 1]),
    count=st.integers(0, 2**32 - 1) | st.integers(0, 40),
    payload=st.binary(max_size=100),
    cut=st.integers(0, 200),
)
def test_fuzz_near_valid_frames_only_raise_protocol_error(
    magic: bytes, version: int, flags: int, seq: int, rate: int, count: int, payload: bytes, cut: int
) -> None:
    data = (header(magic=magic, version=version, flags=flags, seq=seq, rate=rate, count=count) + payload)[
        :cut
    ]
    try:
        frame = decode_frame(data, max_samples=50)
    except ProtocolError:
        return
    assert (frame.seq, frame.sample_rate, int(frame.flags), frame.num_samples) == (seq, rate, flags, count)
    assert encode_frame(frame) == data


frames = st.builds(
    AudioFrame,
    seq=st.integers(0, 2**32 - 1),
    sample_rate=st.sampled_from(RATES),
    samples=hnp.arrays(np.int16, st.integers(0, 2000)),
    flags=st.sampled_from(list(FrameFlags)) | st.integers(0, 7),
)


@settings(max_examples=200, deadline=None)
@given(frames)
def test_fuzz_round_trip_arbitrary_valid_frames(frame: AudioFrame) -> None:
    data = encode_frame(frame)
    assert len(data) == frame_size(frame.num_samples)
    assert decode_frame(data, max_samples=2000) == frame


@settings(max_examples=100, deadline=None)
@given(frames, st.data())
def test_fuzz_truncated_or_extended_valid_frames_are_refused(frame: AudioFrame, data: st.DataObject) -> None:
    wire = encode_frame(frame)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(ProtocolError):
        decode_frame(wire[:cut], max_samples=2000)
    extra = data.draw(st.binary(min_size=1, max_size=5))
    with pytest.raises(ProtocolError):
        decode_frame(wire + extra, max_samples=2000)
