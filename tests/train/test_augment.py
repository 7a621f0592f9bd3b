"""Augmentation: seeded, finite, in range; each effect does what it says (measured with FFTs)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.train import augment
from streamer.train.augment import AugmentConfig, Augmenter

SR = 16_000


def _speechlike(seconds: float = 1.5, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonics of ``f0`` under two formant bumps, amplitude-modulated like syllables, plus a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) * (np.exp(-((f0 * k - 700) / 300) ** 2)
                                               + 0.4 * np.exp(-((f0 * k - 2300) / 500) ** 2))
            for k in range(1, int(7000 / f0)))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def _band_share(x: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(power[(f >= lo) & (f < hi)].sum() / power.sum())


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)])


EVERYTHING = AugmentConfig(p_silence=1, p_speed=1, p_vtlp=1, p_pitch=1, p_reverb=1, p_noise=1, p_babble=1,
                           p_mic=1, p_telephone=1, p_gain=1, gain_db=(10.0, 20.0), p_dc=1, dc_max=0.5)


def test_augmenter_is_deterministic_for_a_seed() -> None:
    x, others = _speechlike(), [_speechlike(1.0, 200, 1), _speechlike(0.7, 110, 2)]
    aug = Augmenter()
    a = aug(x, np.random.default_rng(11), babble=others)
    b = aug(x, np.random.default_rng(11), babble=others)
    np.testing.assert_array_equal(a, b)
    outs = [aug(x, np.random.default_rng(s), babble=others) for s in range(6)]
    assert len({o.tobytes() for o in outs}) == 6


@pytest.mark.parametrize("seed", range(8))
def test_output_is_finite_and_in_range(seed: int) -> None:
    x = _speechlike(seed=seed) * 3.0
    x[100] = np.nan
    x[200] = np.inf
    y = Augmenter(EVERYTHING)(x, np.random.default_rng(seed), babble=[_speechlike(0.5, 220, 9)])
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) > 0
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0


def test_telephone_band_removes_out_of_band_energy() -> None:
    x = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.3
    assert _band_share(x, 3400, 8000) > 0.4
    for mu in (False, True):
        y = augment.telephone_band(x, mu_law_codec=mu)
        assert len(y) == len(x)
        assert _band_share(y, 3400, 8000) < 1e-3
        assert _band_share(y, 0, 300) < 1e-3
        assert _band_share(y, 400, 3300) > 0.95
    np.testing.assert_array_equal(augment.telephone_band(x), augment.telephone_band(x))


def test_narrowband_keeps_the_low_band_that_telephone_removes() -> None:
    """A plain 8 kHz recording: nothing above 4 kHz, but unlike the telephone channel the band under
    300 Hz and up to 4 kHz is kept (what a real 8 kHz file looks like once resampled to 16 kHz)."""
    x = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.3
    for mu in (False, True):
        y = augment.narrowband(x, mu_law_codec=mu)
        assert len(y) == len(x) and y.dtype == np.float32
        assert _band_share(y, 4100, 8000) < 1e-3
        assert _band_share(y, 50, 300) == pytest.approx(_band_share(x, 50, 300) * 2, rel=0.2)
    assert _band_share(augment.telephone_band(x), 50, 300) < 1e-3
    y = augment.narrowband(x)
    x_low, y_low = (np.fft.irfft(np.fft.rfft(v) * (np.fft.rfftfreq(len(v), 1 / SR) < 3500), len(v)) for v in (x, y))
    assert np.corrcoef(x_low, y_low)[0, 1] > 0.99  # the kept band is the same signal, not just the same energy


def test_narrowband_is_drawn_only_for_clips_not_sent_through_the_telephone() -> None:
    x = _speechlike()
    only = dict(p_silence=0, p_speed=0, p_vtlp=0, p_pitch=0, p_reverb=0, p_noise=0, p_babble=0, p_mic=0, p_gain=0,
                p_dc=0, p_mu_law=0)
    narrow = Augmenter(AugmentConfig(**only, p_telephone=0, p_narrowband=1))(x, np.random.default_rng(0))
    np.testing.assert_allclose(narrow, np.clip(augment.narrowband(x), -1, 1))
    phone = Augmenter(AugmentConfig(**only, p_telephone=1, p_narrowband=1))(x, np.random.default_rng(0))
    np.testing.assert_allclose(phone, np.clip(augment.telephone_band(x), -1, 1))
    # p_narrowband 0 (the default) draws nothing: older configs' augmentation streams are unchanged
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    Augmenter(AugmentConfig(**only, p_telephone=0))(x, rng_a)
    rng_b.random(10)  # one draw per effect (no babble given), none for narrowband
    assert rng_a.random() == rng_b.random()
    Augmenter(AugmentConfig(**only, p_telephone=0, p_narrowband=1e-9))(x, rng_a)
    rng_b.random(10)
    assert rng_a.random() != rng_b.random()


@pytest.mark.parametrize("factor", [0.85, 1.0, 1.15])
def test_speed_changes_length_by_the_factor(factor: float) -> None:
    x = _speechlike()
    y = augment.speed(x, factor)
    assert abs(len(y) - len(x) / factor) <= 2
    assert _peak_hz(y) == pytest.approx(_peak_hz(x) * factor, rel=0.03)


def test_time_stretch_and_pitch_shift() -> None:
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stretched = augment.time_stretch(tone, 0.8)
    assert abs(len(stretched) - len(tone) / 0.8) <= 2
    assert _peak_hz(stretched) == pytest.approx(440, abs=5)
    shifted = augment.pitch_shift(tone, 3.0)
    assert len(shifted) == len(tone)
    assert _peak_hz(shifted) == pytest.approx(440 * 2 ** (3 / 12), rel=0.02)


def test_vtlp_moves_formants_not_harmonics() -> None:
    x = _speechlike(1.0, f0=150)
    np.testing.assert_allclose(augment.vtlp(x, 1.0), x, atol=1e-4)
    centroid = {}
    for alpha in (0.9, 1.1):
        y = augment.vtlp(x, alpha)
        assert len(y) == len(x)
        spec = np.abs(np.fft.rfft(y))
        f = np.fft.rfftfreq(len(y), 1 / SR)
        peaks = f[np.argsort(spec)[-5:]]
        assert np.all(np.abs(peaks / 150 - np.round(peaks / 150)) < 0.02), peaks  # still harmonics of f0
        centroid[alpha] = float((spec * f).sum() / spec.sum())
    assert centroid[1.1] > centroid[0.9] * 1.08


@pytest.mark.parametrize("snr_db", [5.0, 30.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_noise_at_requested_snr(snr_db: float, colour: str) -> None:
    x = _speechlike()
    y = augment.add_noise(x, np.random.default_rng(1), snr_db=snr_db, colour=colour)
    measured = 10 * np.log10(augment.speech_power(x) / np.mean((y - x) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_noise_colours_tilt() -> None:
    rng = np.random.default_rng(0)
    shares = {c: _band_share(augment.coloured_noise(SR, c, rng), 2000, 8000) for c in ("white", "pink", "brown")}
    assert shares["white"] > shares["pink"] > shares["brown"]
    with pytest.raises(ValueError):
        augment.coloured_noise(10, "purple", rng)


def test_babble_mixes_other_utterances() -> None:
    x = _speechlike()
    other = _speechlike(0.8, 230, 3)
    y = augment.add_babble(x, [other], np.random.default_rng(0), snr_db=10, talkers=3)
    assert len(y) == len(x) and not np.array_equal(x, y)
    assert 10 * np.log10(augment.speech_power(x) / np.mean((y - x) ** 2)) == pytest.approx(10, abs=0.5)


def test_reverb_adds_a_decaying_tail() -> None:
    x = np.zeros(SR, dtype=np.float32)
    x[:200] = 0.5
    y = augment.reverb(x, np.random.default_rng(0), rt60_s=0.6)
    assert len(y) == len(x)
    tail = [np.mean(y[a:a + 1600] ** 2) for a in (1600, 4800, 8000)]
    assert tail[0] > tail[1] > tail[2] > 0


def test_mic_filter_and_simple_effects() -> None:
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    low = augment.mic_filter(x, lowpass_hz=3000, highpass_hz=None)
    assert _band_share(low, 5000, 8000) < 0.05 * _band_share(x, 5000, 8000)
    high = augment.mic_filter(x, lowpass_hz=None, highpass_hz=300)
    assert _band_share(high, 0, 100) < 0.1 * _band_share(x, 0, 100)
    np.testing.assert_allclose(augment.gain(x, -6.0), x * 10 ** (-6 / 20), rtol=1e-5)
    assert np.mean(augment.dc_offset(x, 0.01)) == pytest.approx(np.mean(x) + 0.01, abs=1e-6)
    padded = augment.pad_silence(x, lead_s=0.25, trail_s=0.5)
    assert len(padded) == len(x) + 12_000 and not padded[:4000].any()


def test_config_from_dict_validates() -> None:
    cfg = AugmentConfig.from_dict({"p_telephone": 0.5, "speed": [0.9, 1.1]})
    assert cfg.p_telephone == 0.5 and cfg.speed == (0.9, 1.1)
    with pytest.raises(ValueError, match="unknown augment keys"):
        AugmentConfig.from_dict({"p_telefone": 0.5})
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(p_noise=1.5)
    with pytest.raises(augment.AudioError):
        augment.speed(np.zeros((2, 10), dtype=np.float32), 1.0)


def test_background_is_speechless_noise_at_its_level() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = augment.background(SR, rng, level_db=(-40.0, -40.0))
        assert x.dtype == np.float32 and len(x) == SR
        assert abs(10 * np.log10(np.mean(x**2)) + 40.0) < 0.01
    h = augment.hum(SR, np.random.default_rng(1))
    assert _peak_hz(h) in (50.0, 60.0)
    assert abs(np.sqrt(np.mean(h**2)) - 1.0) < 1e-3
