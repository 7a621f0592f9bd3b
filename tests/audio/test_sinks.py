"""Sinks: WavSink round trip, QueueSink, SpeakerSink against a fake OutputStream pulled on a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.audio.devices import NO_OUTPUT_HINT
from streamer.audio.resample import resample
from streamer.audio.sinks import AudioSink, QueueSink, SpeakerSink, WavSink
from streamer.errors import AudioError, DeviceError


def wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def ramp(n: int, start: int = 1) -> np.ndarray:
    """Exact, never-zero float32 values, so silence inserted by the sink is visible."""
    return (np.arange(start, start + n) / 2.0**20).astype(np.float32)


def split(x: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, x.size, size=20))
    return np.split(x, cuts)


# --- WavSink / QueueSink ------------------------------------------------------------------------------


def test_sinks_share_the_protocol(tmp_path: Path) -> None:
    with WavSink(tmp_path / "x.wav", sample_rate=16000) as w:
        assert isinstance(w, AudioSink)
    assert isinstance(QueueSink(), AudioSink)


def test_wav_sink_streams_chunks_into_one_file(tmp_path: Path) -> None:
    x = (0.5 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    path = tmp_path / "sub" / "out.wav"
    with WavSink(path, sample_rate=16000) as sink:
        for piece in split(x):
            sink.write(piece)
        sink.write(np.array([2.0, -2.0]))  # clipped, not wrapped
        assert sink.frames_written == x.size + 2
    y, sr = sf.read(path, dtype="float32")
    assert sr == 16000 and sf.info(path).subtype == "PCM_16"
    np.testing.assert_allclose(y[:-2], x, atol=1 / 32768)
    np.testing.assert_allclose(y[-2:], [32767 / 32768, -1.0])
    sink.close()  # idempotent
    with pytest.raises(AudioError, match="closed"):
        sink.write(x)


def test_wav_sink_rejects_nan_with_stream_position(tmp_path: Path) -> None:
    with WavSink(tmp_path / "o.wav", sample_rate=8000) as sink:
        sink.write(np.zeros(800))
        with pytest.raises(AudioError, match=r"NaN at sample 803 \(t = 0\.100 s\)"):
            sink.write(np.array([0, 0, 0, np.nan]))


def test_queue_sink_delivers_copies_then_ends() -> None:
    async def main() -> list[np.ndarray]:
        sink = QueueSink()
        buf = np.ones(4, np.float32)
        sink.write(buf)
        buf[:] = 7  # reusing the buffer must not change what was queued
        sink.write(np.array([1, 2], np.int16))
        sink.close()
        with pytest.raises(AudioError, match="closed"):
            sink.write(buf)
        return [x async for x in sink]

    got = asyncio.run(main())
    assert [x.tolist() for x in got] == [[1.0] * 4, [1 / 32768, 2 / 32768]]


# --- SpeakerSink --------------------------------------------------------------------------------------


def speaker_sd(fake_sd, make_dev, **kw):
    sd = fake_sd([make_dev("Mic", 1, 0), make_dev("Speakers", 0, 2, 16000.0)], default=(0, 1), **kw)
    return sd


def test_all_written_audio_plays_in_order(fake_sd, make_dev) -> None:
    sd = speaker_sd(fake_sd, make_dev)
    sd.output["gate"] = threading.Event()  # the device starts pulling once everything is written
    sink = SpeakerSink(sample_rate=16000, sd=sd)
    assert (sink.device.name, sink.device_rate, sink.channels, sink.block_frames) == ("Speakers", 16000, 1, 320)
    x = ramp(16000 + 123)
    for piece in split(x):
        sink.write(piece)
    sd.output["gate"].set()
    sink.close()  # drains: returns once every sample went to the device
    out = sd.streams[0].output()[:, 0]
    np.testing.assert_array_equal(out[: x.size], x)
    np.testing.assert_array_equal(out[x.size :], 0.0)
    assert sink.underflows == 0 and sink.frames_played == x.size


def test_starved_playback_counts_underflows_and_keeps_order(fake_sd, make_dev) -> None:
    sd = speaker_sd(fake_sd, make_dev)
    sink = SpeakerSink(sample_rate=16000, jitter_ms=60, sd=sd)
    stream = sd.streams[0]
    first, second = ramp(1600), ramp(1600, start=5000)  # 100 ms each, more than the 60 ms jitter buffer
    sink.write(first)
    wait_until(lambda: sink.frames_played == first.size)
    pulls = stream.pulls
    wait_until(lambda: stream.pulls >= pulls + 5)  # the device keeps pulling and finds nothing
    assert sink.underflows == 1  # one starvation, not one per empty pull
    sink.write(second)
    wait_until(lambda: sink.frames_played == first.size + second.size)
    pulls = stream.pulls
    wait_until(lambda: stream.pulls >= pulls + 2)
    assert sink.underflows == 2  # playback restarted after the jitter wait and ran dry again
    sink.close()
    out = stream.output()[:, 0]
    np.testing.assert_array_equal(out[out != 0], np.concatenate([first, second]))


def test_audio_shorter_than_the_jitter_buffer_waits_until_drain(fake_sd, make_dev) -> None:
    sd = speaker_sd(fake_sd, make_dev)
    sink = SpeakerSink(sample_rate=16000, jitter_ms=60, sd=sd)
    x = ramp(640)  # 40 ms
    sink.write(x)
    wait_until(lambda: sd.streams[0].pulls >= 10)
    assert sink.frames_played == 0 and sink.underflows == 0
    assert sink.buffered_ms == pytest.approx(40.0)
    assert sink.drain(timeout=5.0)
    assert sink.frames_played == 640 and sink.underflows == 0
    sink.close()
    out = sd.streams[0].output()[:, 0]
    np.testing.assert_array_equal(out[out != 0], x)


def test_speaker_resamples_to_the_device_rate_and_fills_all_channels(fake_sd, make_dev) -> None:
    sd = fake_sd([make_dev("HDMI", 0, 2, 48000.0)], default=(-1, 0), rates={0: {48000}}, channels={0: {2}})
    sd.output["gate"] = threading.Event()
    sink = SpeakerSink(sample_rate=16000, sd=sd)
    assert (sink.device_rate, sink.channels) == (48000, 2)
    x = (0.5 * np.sin(2 * np.pi * 500 * np.arange(8000) / 16000)).astype(np.float32)
    for piece in split(x):
        sink.write(piece)
    sd.output["gate"].set()

    async def main() -> None:
        await sink.aclose()

    asyncio.run(main())
    out = sd.streams[0].output()
    expected = resample(x, 16000, 48000)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    np.testing.assert_allclose(out[: expected.size, 0], expected, atol=1e-6)
    assert sink.underflows == 0


def test_no_output_device_raises_with_a_hint(fake_sd, make_dev) -> None:
    sd = fake_sd([make_dev("Mic", 1, 0)], default=(0, -1))
    with pytest.raises(DeviceError) as err:
        SpeakerSink(sample_rate=16000, sd=sd)
    assert str(err.value) == NO_OUTPUT_HINT and "--output out.wav" in str(err.value)
