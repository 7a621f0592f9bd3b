"""MicrophoneSource against a fake sounddevice whose InputStream calls back from a real thread."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamer.audio.devices import NO_INPUT_HINT, list_devices
from streamer.audio.mic import MicrophoneSource
from streamer.audio.resample import resample
from streamer.errors import DeviceError


async def read_all(mic: MicrophoneSource) -> list[np.ndarray]:
    async with mic:
        return [chunk async for chunk in mic]


def test_every_block_arrives_in_order_at_16k(fake_sd, make_dev, ramp_fn) -> None:
    sd = fake_sd([make_dev("Built-in Mic", 1, 0, 16000.0)], default=(0, -1))
    sd.input.update(n_blocks=60, overflow_blocks={3, 17, 40})  # 60 blocks of 20 ms = 1.2 s
    mic = MicrophoneSource(sd=sd, chunk_ms=160, block_ms=20)
    assert (mic.device_rate, mic.channels, mic.block_frames) == (16000, 1, 320)
    chunks = asyncio.run(read_all(mic))
    assert all(c.shape == (2560,) and c.dtype == np.float32 for c in chunks)
    got = np.concatenate(chunks)
    expected = ramp_fn(0, 60 * 320)[:, 0]
    np.testing.assert_array_equal(got[: expected.size], expected)  # exact, nothing lost or reordered
    np.testing.assert_array_equal(got[expected.size :], 0.0)  # zero padding of the last chunk
    assert len(chunks) == -(-expected.size // 2560)
    assert mic.overflows == 3
    assert mic.blocks_received == 60 and mic.dropped_blocks == 0


def test_device_without_16k_is_opened_at_its_default_rate_and_resampled(fake_sd, make_dev) -> None:
    def tone(start: int, n: int, channels: int) -> np.ndarray:
        t = np.arange(start, start + n) / 48000
        x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        return np.stack([x, x], axis=1)[:, :channels]

    sd = fake_sd([make_dev("USB Mic", 2, 0, 48000.0)], default=(0, -1), rates={0: {48000}}, channels={0: {2}})
    sd.input.update(n_blocks=50, signal=tone)  # blocks of 480 frames at 48 kHz
    mic = MicrophoneSource(sd=sd)
    assert (mic.device_rate, mic.channels, mic.block_frames) == (48000, 2, 960)
    chunks = asyncio.run(read_all(mic))
    assert sd.streams[0].samplerate == 48000 and sd.streams[0].channels == 2
    expected = resample(tone(0, 50 * 960, 1)[:, 0], 48000, 16000)
    got = np.concatenate(chunks)
    np.testing.assert_allclose(got[: expected.size], expected, atol=1e-6)  # streaming == offline soxr
    np.testing.assert_array_equal(got[expected.size :], 0.0)


def test_blocks_beyond_the_queue_limit_are_dropped_and_counted(fake_sd, make_dev, ramp_fn) -> None:
    sd = fake_sd([make_dev("Mic", 1, 0, 16000.0)], default=(0, -1))
    sd.input.update(n_blocks=30, period_s=0.0, finish=False)

    async def main() -> tuple[MicrophoneSource, np.ndarray]:
        mic = MicrophoneSource(sd=sd, block_ms=20, chunk_ms=20, max_queue_ms=200)  # room for 10 blocks
        await mic.start()
        sd.streams[0]._thread.join()  # the "device" delivers 30 blocks while nobody reads
        for _ in range(50):
            if mic.blocks_received == 30:
                break
            await asyncio.sleep(0.01)
        await mic.close()
        return mic, np.concatenate([c async for c in mic])

    mic, got = asyncio.run(main())
    assert mic.blocks_received == 30 and mic.dropped_blocks == 20
    np.testing.assert_array_equal(got, ramp_fn(0, 10 * 320)[:, 0])  # the first 10 blocks, in order


def test_audio_captured_before_close_is_still_delivered(fake_sd, make_dev, ramp_fn) -> None:
    sd = fake_sd([make_dev("Mic", 1, 0, 16000.0)], default=(0, -1))
    sd.input.update(n_blocks=12, period_s=0.0, finish=False)

    async def main() -> np.ndarray:
        mic = MicrophoneSource(sd=sd, chunk_ms=20)
        await mic.start()
        sd.streams[0]._thread.join()  # blocks the loop: all 12 hand-overs are still pending on it
        await mic.close()
        return np.concatenate([c async for c in mic])

    np.testing.assert_array_equal(asyncio.run(main()), ramp_fn(0, 12 * 320)[:, 0])


def test_close_ends_iteration_and_is_idempotent(fake_sd, make_dev) -> None:
    sd = fake_sd([make_dev("Mic", 1, 0, 16000.0)], default=(0, -1))
    sd.input.update(n_blocks=10_000, period_s=0.002, finish=False)

    async def main() -> int:
        n = 0
        async with MicrophoneSource(sd=sd, chunk_ms=20) as mic:
            async for _ in mic:
                n += 1
                if n == 3:
                    await mic.close()
            await mic.close()
        return n

    n = asyncio.run(main())
    assert n >= 3
    assert not sd.streams[0]._thread.is_alive() and sd.streams[0].closed


def test_a_silent_device_raises_after_the_stall_timeout(fake_sd, make_dev) -> None:
    sd = fake_sd([make_dev("Dead Mic", 1, 0, 16000.0)], default=(0, -1))
    sd.input.update(n_blocks=0, finish=False)

    async def main() -> None:
        async with MicrophoneSource(sd=sd, stall_timeout_s=0.2) as mic:
            await mic.__anext__()

    with pytest.raises(DeviceError, match=r"'Dead Mic'.*delivered no audio for 0\.2 s"):
        asyncio.run(main())


@pytest.mark.parametrize("devices", [[], "output-only"])
def test_no_input_device_raises_with_the_hint(fake_sd, make_dev, devices) -> None:
    sd = fake_sd([make_dev("HDMI", 0, 2)] if devices else [], default=(-1, 0))
    with pytest.raises(DeviceError) as err:
        MicrophoneSource(sd=sd)
    assert str(err.value) == NO_INPUT_HINT
    assert "streamer devices" in str(err.value) and "--input file.wav" in str(err.value)


def test_a_device_that_accepts_no_setting_is_reported(fake_sd, make_dev) -> None:
    sd = fake_sd([make_dev("Odd Mic", 1, 0, 44100.0)], default=(0, -1), rates={0: {96000}})
    with pytest.raises(DeviceError, match=r"cannot open input device 0 \('Odd Mic'\).*44100 Hz"):
        MicrophoneSource(sd=sd)


def test_real_sounddevice_without_input_devices_gives_the_hint() -> None:
    if any(d.max_input_channels for d in list_devices()):
        pytest.skip("this machine has an audio input device")
    with pytest.raises(DeviceError, match="no audio input device found; run `streamer devices`"):
        MicrophoneSource()
