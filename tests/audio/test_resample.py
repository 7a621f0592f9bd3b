"""Resampling: frequency and length preserved, rates validated, streaming equals offline."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audio.resample import StreamingResampler, check_rate, resample
from streamer.errors import AudioError


def sine(freq_hz: float, sample_rate: int, n: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq_hz * np.arange(n) / sample_rate)).astype(np.float32)


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * sample_rate / x.size)


@pytest.mark.parametrize("orig_sr", [8000, 22050, 44100, 48000])
def test_downsample_to_16k_keeps_frequency_and_length(orig_sr: int) -> None:
    n = orig_sr + 37  # about 1 s, a length that does not divide evenly
    y = resample(sine(1000.0, orig_sr, n), orig_sr, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - round(n * 16000 / orig_sr)) <= 1
    assert abs(peak_hz(y, 16000) - 1000.0) <= 2.0  # FFT bins are ~1 Hz wide here
    mid = y[1000:-1000]  # away from the filter's edge transients
    assert np.max(np.abs(mid)) == pytest.approx(0.5, abs=0.01)


def test_upsample_16k_to_48k() -> None:
    n = 16000 + 11
    y = resample(sine(3000.0, 16000, n), 16000, 48000)
    assert abs(y.size - round(n * 3)) <= 1
    assert abs(peak_hz(y, 48000) - 3000.0) <= 2.0
    assert np.max(np.abs(y[3000:-3000])) == pytest.approx(0.5, abs=0.01)


def test_content_above_target_nyquist_is_removed() -> None:
    y = resample(sine(7000.0, 48000, 48000), 48000, 8000)  # 7 kHz > 4 kHz Nyquist of 8 kHz
    assert np.sqrt(np.mean(y[800:-800] ** 2)) < 0.01


def test_same_rate_returns_a_float32_copy() -> None:
    x = sine(440.0, 16000, 100).astype(np.float64)
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32 and np.array_equal(y, x.astype(np.float32))
    y[0] = 9.0
    assert x[0] != 9.0


def test_empty_input_gives_empty_output() -> None:
    assert resample(np.zeros(0, np.float32), 48000, 16000).shape == (0,)


@pytest.mark.parametrize("bad", [0, -16000, 22050.5, "16000", None, True, float("nan")])
def test_bad_rates_are_rejected_with_the_argument_named(bad: object) -> None:
    with pytest.raises(AudioError, match="orig_sr must be a positive integer"):
        resample(np.zeros(10, np.float32), bad, 16000)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match="target_sr must be a positive integer"):
        StreamingResampler(16000, bad)  # type: ignore[arg-type]


def test_integral_float_rates_from_portaudio_are_accepted() -> None:
    assert check_rate(44100.0) == 44100
    assert check_rate(np.int64(8000)) == 8000


def test_non_mono_input_is_rejected() -> None:
    with pytest.raises(AudioError, match=r"1-D mono array.*\(10, 2\)"):
        resample(np.zeros((10, 2), np.float32), 48000, 16000)
    with pytest.raises(AudioError, match="floating point"):
        resample(np.zeros(10, np.int16), 48000, 16000)


@pytest.mark.parametrize(("orig_sr", "target_sr"), [(48000, 16000), (44100, 16000), (8000, 16000), (16000, 16000)])
def test_streaming_equals_offline(orig_sr: int, target_sr: int) -> None:
    rng = np.random.default_rng(orig_sr)
    x = (0.3 * rng.standard_normal(orig_sr // 2)).astype(np.float32)
    r = StreamingResampler(orig_sr, target_sr)
    pieces, i = [], 0
    while i < x.size:
        n = int(rng.choice([0, 1, 7, 160, 480, 1999]))
        pieces.append(r.process(x[i : i + n]))
        i += n
    pieces.append(r.flush())
    streamed = np.concatenate(pieces)
    offline = resample(x, orig_sr, target_sr)
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-6)


def test_streaming_resampler_flush_then_reset() -> None:
    r = StreamingResampler(48000, 16000)
    x = sine(440.0, 48000, 4800)
    first = np.concatenate([r.process(x), r.flush()])
    assert r.flush().size == 0  # a second flush has nothing left
    with pytest.raises(AudioError, match="after flush"):
        r.process(x)
    r.reset()
    second = np.concatenate([r.process(x), r.flush()])
    np.testing.assert_array_equal(first, second)
