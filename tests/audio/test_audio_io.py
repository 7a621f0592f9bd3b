"""Reading, writing and validating audio: formats, rates, stereo, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.audio.io import audio_info, check_samples, read_audio, write_audio
from streamer.audio.resample import resample
from streamer.errors import AudioError, AudioFileError

PCM16_ATOL = 2.0 / 32768  # one quantisation step each way, plus rounding


def sine(freq_hz: float, sample_rate: int, n: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq_hz * np.arange(n) / sample_rate)).astype(np.float32)


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.size)))) * sample_rate / x.size)


@pytest.mark.parametrize(
    ("ext", "rate", "subtype"),
    [("wav", 16000, "PCM_16"), ("wav", 44100, "PCM_24"), ("flac", 22050, "PCM_16"), ("wav", 8000, "FLOAT")],
)
def test_lossless_files_read_as_16k_mono(tmp_path: Path, ext: str, rate: int, subtype: str) -> None:
    x = sine(440.0, rate, rate // 2)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, x, rate, subtype=subtype)
    y, sr = read_audio(path)
    assert sr == 16000 and y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_allclose(y, resample(x, rate, 16000), atol=PCM16_ATOL)
    assert abs(peak_hz(y, 16000) - 440.0) < 3.0


def test_ogg_vorbis_reads_with_the_right_pitch_and_length(tmp_path: Path) -> None:
    x = sine(1000.0, 48000, 48000)
    path = tmp_path / "tone.ogg"
    sf.write(path, x, 48000)
    y, sr = read_audio(path)
    assert sr == 16000 and abs(y.size - 16000) <= 2
    assert abs(peak_hz(y, 16000) - 1000.0) < 3.0


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path: Path) -> None:
    s = sine(300.0, 44100, 22050, amp=1.0)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([0.6 * s, 0.2 * s], axis=1), 44100)
    y, sr = read_audio(path)
    assert sr == 16000
    np.testing.assert_allclose(y, resample(0.4 * s, 44100, 16000), atol=PCM16_ATOL)


def test_native_rate_is_kept_when_sample_rate_is_none(tmp_path: Path) -> None:
    x = sine(440.0, 22050, 1000)
    sf.write(tmp_path / "a.wav", x, 22050, subtype="FLOAT")
    y, sr = read_audio(tmp_path / "a.wav", sample_rate=None)
    assert sr == 22050
    np.testing.assert_array_equal(y, x)
    info = audio_info(tmp_path / "a.wav")
    assert (info.sample_rate, info.frames, info.channels) == (22050, 1000, 1)


# --- bad files -----------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"audio file not found: .*nope\.wav"):
        read_audio(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="is a directory"):
        read_audio(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioFileError, match=r"empty \(0 bytes\)"):
        read_audio(tmp_path / "empty.wav")


def test_wav_with_zero_frames(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    assert (tmp_path / "zero.wav").stat().st_size > 0
    with pytest.raises(AudioFileError, match=r"no samples \(0 frames\)"):
        read_audio(tmp_path / "zero.wav")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioFileError, match="not a recognised audio format, or the file is corrupt"):
        read_audio(tmp_path / "noise.wav")


def test_truncated_header(tmp_path: Path) -> None:
    sf.write(tmp_path / "ok.wav", sine(440.0, 16000, 1600), 16000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ok.wav").read_bytes()[:20])
    with pytest.raises(AudioFileError, match=r"cut\.wav.*corrupt"):
        read_audio(tmp_path / "cut.wav")


def test_text_file_renamed_to_wav(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(AudioFileError, match="not an audio file: it looks like text"):
        read_audio(tmp_path / "notes.wav")


def test_nan_samples_in_a_float_wav(tmp_path: Path) -> None:
    x = sine(440.0, 16000, 16000)
    x[8000] = np.nan
    x[9000] = np.inf
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"nan\.wav contains 2 non-finite .* NaN at sample 8000 \(t = 0\.500 s\)"):
        read_audio(tmp_path / "nan.wav")


# --- check_samples ------------------------------------------------------------------------------------


def test_int16_is_scaled_to_float() -> None:
    y = check_samples(np.array([-32768, 0, 16384, 32767], dtype=np.int16))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [-1.0, 0.0, 0.5, 32767 / 32768])


def test_other_integer_and_float_dtypes() -> None:
    np.testing.assert_array_equal(check_samples(np.array([0, 128, 255], np.uint8)), [-1.0, 0.0, 127 / 128])
    np.testing.assert_array_equal(check_samples(np.array([-(2**31), 2**30], np.int32)), [-1.0, 0.5])
    assert check_samples(np.ones(3, np.float64)).dtype == np.float32
    assert check_samples([0.0, 0.5]).tolist() == [0.0, 0.5]
    assert check_samples(np.zeros(0)).shape == (0,)


def test_two_d_time_by_channels_is_mixed_down() -> None:
    x = np.array([[1.0, 0.0], [0.5, 0.5], [-1.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(check_samples(x), [0.5, 0.5, -0.5])
    np.testing.assert_array_equal(check_samples(x[:, :1]), [1.0, 0.5, -1.0])


def test_channels_first_array_is_refused_with_a_hint() -> None:
    with pytest.raises(AudioError, match=r"shape \(2, 16000\).*transpose `\.T`"):
        check_samples(np.zeros((2, 16000), np.float32))


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (np.zeros((4, 2, 2)), "3-D shape"),
        (np.array(3.0), "0-D shape"),
        (np.zeros(4, np.complex64), "numeric"),
        (np.array(["a", "b"]), "numeric"),
        (np.zeros(4, bool), "numeric"),
        (np.zeros(4, np.int64), "unsupported integer sample dtype int64"),
    ],
)
def test_bad_arrays(bad: np.ndarray, pattern: str) -> None:
    with pytest.raises(AudioError, match=pattern):
        check_samples(bad, name="chunk")


def test_non_finite_report_count_kind_and_position() -> None:
    x = np.zeros(100, np.float32)
    x[[40, 41, 90]] = [-np.inf, np.nan, np.inf]
    with pytest.raises(AudioError, match=r"^chunk contains 3 non-finite value\(s\).*-Inf at sample 40$"):
        check_samples(x, name="chunk")
    with pytest.raises(AudioError, match=r"-Inf at sample 1040 \(t = 0\.065 s\)"):
        check_samples(x, sample_rate=16000, offset=1000)
    stereo = np.zeros((10, 2), np.float32)
    stereo[7, 1] = np.nan
    with pytest.raises(AudioError, match="1 non-finite.*NaN at sample 7, channel 1"):
        check_samples(stereo)


# --- write_audio --------------------------------------------------------------------------------------


def test_write_creates_parents_and_round_trips_pcm16(tmp_path: Path) -> None:
    x = sine(440.0, 16000, 4000)
    path = write_audio(tmp_path / "a" / "b" / "out.wav", x, sample_rate=16000)
    assert sf.info(path).subtype == "PCM_16"
    y, sr = read_audio(path, sample_rate=None)
    assert sr == 16000
    np.testing.assert_allclose(y, x, atol=PCM16_ATOL)


def test_write_clips_and_validates(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "loud.wav", np.array([1.5, -3.0, 0.25]), sample_rate=8000)
    y, _ = read_audio(path, sample_rate=None)
    np.testing.assert_allclose(y, [32767 / 32768, -1.0, 0.25], atol=1e-6)
    with pytest.raises(AudioError, match="NaN at sample 1"):
        write_audio(tmp_path / "bad.wav", np.array([0.0, np.nan]), sample_rate=8000)
    with pytest.raises(AudioError, match="sample_rate must be a positive integer"):
        write_audio(tmp_path / "bad.wav", np.zeros(3), sample_rate=0)
    assert not (tmp_path / "bad.wav").exists()
