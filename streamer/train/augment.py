"""Seeded on-the-fly augmentation of 16 kHz float32 speech so synthetic voices carry over to people.

Every effect is a function of ``(samples, ...)`` taking a ``numpy.random.Generator`` when it is random;
``Augmenter(AugmentConfig)`` chains them with per-effect probabilities. Audio is ``(T,)`` float32; the
chain's output is always finite and in [-1, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from streamer.config import reject_unknown_keys
from streamer.errors import AudioError

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 128


def _check(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(f"expected mono samples of shape (T,), got shape {x.shape}")
    return np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``x`` to ``n`` samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


# ---------------------------------------------------------------- STFT helpers
def _stft(x: np.ndarray) -> np.ndarray:
    """(frames, N_FFT // 2 + 1) complex STFT, Hann window, hop ``HOP``, centred."""
    x = np.pad(x, (N_FFT // 2, N_FFT // 2 + HOP))
    n = 1 + (len(x) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    return np.fft.rfft(x[idx] * np.hanning(N_FFT + 1)[:-1], axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Inverse of ``_stft`` by weighted overlap-add, cropped to ``length`` samples."""
    win = np.hanning(N_FFT + 1)[:-1]
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * win
    out = np.zeros(HOP * (len(frames) - 1) + N_FFT)
    norm = np.zeros_like(out)
    for i, f in enumerate(frames):
        out[i * HOP: i * HOP + N_FFT] += f
        norm[i * HOP: i * HOP + N_FFT] += win**2
    out = out / np.maximum(norm, 1e-8)
    return _fit(out[N_FFT // 2:], length).astype(np.float32)


def _freq_filter(x: np.ndarray, gain_fn: Any, sample_rate: int) -> np.ndarray:
    """Zero-phase filter: multiply the zero-padded spectrum by ``gain_fn(freqs_hz)``."""
    n = 1 << int(np.ceil(np.log2(len(x) + 2048)))
    spec = np.fft.rfft(x, n=n)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    return np.fft.irfft(spec * gain_fn(freqs), n=n)[: len(x)].astype(np.float32)


# ---------------------------------------------------------------- effects
def speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster by resampling (pitch moves too): length becomes T / factor."""
    if not 0.25 <= factor <= 4.0:
        raise ValueError(f"speed factor {factor} outside 0.25..4")
    x = _check(samples)
    return soxr.resample(x, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def time_stretch(samples: np.ndarray, rate: float) -> np.ndarray:
    """Phase-vocoder tempo change keeping pitch: length becomes about T / rate."""
    x = _check(samples)
    spec = _stft(x)
    steps = np.arange(0, len(spec) - 1, rate)
    lo = steps.astype(int)
    frac = (steps - lo)[:, None]
    mag = (1 - frac) * np.abs(spec[lo]) + frac * np.abs(spec[lo + 1])
    advance = 2 * np.pi * HOP * np.arange(spec.shape[1]) / N_FFT
    dphase = np.angle(spec[lo + 1]) - np.angle(spec[lo]) - advance
    dphase -= 2 * np.pi * np.round(dphase / (2 * np.pi))
    phase = np.angle(spec[0]) + np.concatenate([np.zeros((1, spec.shape[1])),
                                                np.cumsum(advance + dphase, axis=0)[:-1]])
    return _istft(mag * np.exp(1j * phase), int(round(len(x) / rate)))


def pitch_shift(samples: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch (and formants) by ``semitones`` keeping the duration: stretch, then resample."""
    x = _check(samples)
    ratio = 2.0 ** (semitones / 12.0)
    return _fit(speed(time_stretch(x, 1.0 / ratio), ratio), len(x))


def vtlp(samples: np.ndarray, alpha: float, *, sample_rate: int = SAMPLE_RATE,
         boundary_hz: float = 4800.0, lifter: int = 28) -> np.ndarray:
    """Vocal-tract-length perturbation: warp the spectral envelope by ``alpha`` (0.84-1.16 or narrower).

    The envelope of each STFT frame (cepstrum liftered to ``lifter`` coefficients) is warped piecewise
    linearly (Jaitly & Hinton 2013: f -> alpha * f up to a boundary, then a line to Nyquist); the fine
    harmonic structure and the phases are kept, so formants move and pitch and timing do not.
    """
    x = _check(samples)
    spec = _stft(x)
    nyq = sample_rate / 2
    freqs = np.linspace(0, nyq, spec.shape[1])
    fb = boundary_hz * min(alpha, 1.0) / alpha
    warped = np.where(freqs <= fb, alpha * freqs, nyq - (nyq - alpha * fb) / (nyq - fb) * (nyq - freqs))
    src_bin = np.interp(freqs, warped, freqs) / freqs[1]
    lo = np.clip(src_bin.astype(int), 0, spec.shape[1] - 2)
    frac = src_bin - lo
    log_mag = np.log(np.abs(spec) + 1e-7)
    cep = np.fft.irfft(log_mag, axis=1)
    cep[:, lifter:-lifter] = 0.0
    env = np.fft.rfft(cep, axis=1).real
    new_env = (1 - frac) * env[:, lo] + frac * env[:, lo + 1]
    return _istft(np.exp(log_mag - env + new_env) * np.exp(1j * np.angle(spec)), len(x))


def unit_rms(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to an RMS of 1 (same dtype); all zeros stay zeros."""
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples: "white" (flat), "pink" (1/f power) or "brown" (1/f^2)."""
    exponents = {"white": 0.0, "pink": 0.5, "brown": 1.0}
    if colour not in exponents:
        raise ValueError(f"unknown noise colour {colour!r}; known: {list(exponents)}")
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spec / f ** exponents[colour], n=n)
    noise -= noise.mean()
    return unit_rms(noise).astype(np.float32)


def hum(n: int, rng: np.random.Generator, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-RMS mains hum: 50 or 60 Hz and a few random-strength harmonics, random phases."""
    t = np.arange(n) / sample_rate
    base = float(rng.choice([50.0, 60.0]))
    x = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 6))
    return unit_rms(x).astype(np.float32)


def background(n: int, rng: np.random.Generator, *, level_db: tuple[float, float] = (-55.0, -25.0),
               colours: Sequence[str] = ("white", "pink", "brown"), p_hum: float = 0.2) -> np.ndarray:
    """``n`` samples with no speech in them: coloured noise at an RMS level drawn from ``level_db`` (dBFS),
    sometimes with mains hum. Training clips whose translation is nothing are made of this."""
    x = coloured_noise(n, str(rng.choice(list(colours))), rng)
    if rng.random() < p_hum:
        x = unit_rms(x + hum(n, rng) * 10 ** (rng.uniform(-12.0, 6.0) / 20))
    return (x * 10 ** (rng.uniform(*level_db) / 20)).astype(np.float32)


def speech_power(samples: np.ndarray) -> float:
    """Mean power over active 20 ms frames (RMS above 10 % of the loudest), so padding doesn't count."""
    x = _check(samples)
    hop = SAMPLE_RATE // 50
    if len(x) < hop:
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1)
    return float(np.mean(power[power >= 0.01 * power.max()]))


def mix_at_snr(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` (cropped/tiled to length) scaled to ``snr_db`` below the speech power."""
    x = _check(samples)
    noise = np.resize(_check(noise), len(x))
    n_power = float(np.mean(noise**2))
    if n_power <= 0 or len(x) == 0:
        return x
    scale = np.sqrt(speech_power(x) / (n_power * 10 ** (snr_db / 10)))
    return (x + scale * noise).astype(np.float32)


def add_noise(samples: np.ndarray, rng: np.random.Generator, *, snr_db: float, colour: str) -> np.ndarray:
    """Additive coloured noise at ``snr_db`` dB SNR."""
    return mix_at_snr(samples, coloured_noise(len(samples), colour, rng), snr_db)


def add_babble(samples: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator, *,
               snr_db: float, talkers: int) -> np.ndarray:
    """Add a mix of ``talkers`` randomly offset utterances from ``others`` at ``snr_db`` dB SNR."""
    x = _check(samples)
    if not others:
        return x
    babble = np.zeros(len(x), dtype=np.float32)
    for i in rng.choice(len(others), size=talkers, replace=len(others) < talkers):
        o = _check(others[i])
        if len(o) == 0:
            continue
        o = np.resize(np.roll(o, int(rng.integers(len(o)))), len(x))
        babble += o / (np.sqrt(np.mean(o**2)) + 1e-8)
    return mix_at_snr(x, babble, snr_db)


def room_impulse(rng: np.random.Generator, *, rt60_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Synthetic RIR: a direct path then exponentially decaying noise reaching -60 dB at ``rt60_s``."""
    n = max(16, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)
    predelay = int(rng.uniform(0.002, 0.01) * sample_rate)
    tail[:predelay] = 0.0
    drr = 10 ** (rng.uniform(-3, 12) / 20)  # direct-to-reverberant ratio
    tail *= 1.0 / (drr * np.sqrt(np.sum(tail**2)) + 1e-12)
    tail[0] = 1.0
    return (tail / np.sqrt(np.sum(tail**2))).astype(np.float32)


def reverb(samples: np.ndarray, rng: np.random.Generator, *, rt60_s: float) -> np.ndarray:
    """Convolve with a synthetic room (FFT convolution), same length, original peak kept."""
    x = _check(samples)
    h = room_impulse(rng, rt60_s=rt60_s)
    n = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    y = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)[: len(x)]
    peak_x, peak_y = np.max(np.abs(x), initial=0.0), np.max(np.abs(y), initial=0.0)
    return (y * (peak_x / peak_y) if peak_y > 0 else y).astype(np.float32)


def _band_gain(freqs: np.ndarray, lo_hz: float, hi_hz: float, edge_hz: float = 60.0) -> np.ndarray:
    """1 inside [lo + edge, hi - edge], raised-cosine to 0 at ``lo`` and ``hi``, 0 outside."""
    up = np.clip((freqs - lo_hz) / edge_hz, 0, 1)
    down = np.clip((hi_hz - freqs) / edge_hz, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def mu_law(samples: np.ndarray, *, mu: int = 255) -> np.ndarray:
    """8-bit mu-law encode then decode (G.711-like quantisation)."""
    x = np.clip(_check(samples), -1, 1)
    code = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * mu)
    y = code / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def _through_rate(samples: np.ndarray, rate: int, channel: Callable[[np.ndarray], np.ndarray],
                  sample_rate: int) -> np.ndarray:
    """Resample to ``rate``, apply ``channel`` there, come back at the same length."""
    x = _check(samples)
    low = channel(soxr.resample(x, sample_rate, rate).astype(np.float32))
    return _fit(soxr.resample(low, rate, sample_rate).astype(np.float32), len(x))


def telephone_band(samples: np.ndarray, *, mu_law_codec: bool = False, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Deterministic telephone channel: to 8 kHz, 300-3400 Hz band-pass, optional mu-law, back to 16 kHz."""
    def channel(x: np.ndarray) -> np.ndarray:
        x = _freq_filter(x, lambda f: _band_gain(f, 300, 3400), 8000)
        return _freq_filter(mu_law(x), lambda f: _band_gain(f, 300, 3400), 8000) if mu_law_codec else x
    return _through_rate(samples, 8000, channel, sample_rate)


def narrowband(samples: np.ndarray, *, mu_law_codec: bool = False, rate: int = 8000,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A plain recording at ``rate``: nothing above rate / 2, the low band kept (no telephone band-pass).

    Real 8 kHz files reach the model this way once resampled to 16 kHz; models trained with the
    telephone channel alone mishear them (session 8: dev source-phoneme error 0.13 -> 0.38)."""
    return _through_rate(samples, rate, lambda x: mu_law(x) if mu_law_codec else x, sample_rate)


def mic_filter(samples: np.ndarray, *, lowpass_hz: float | None, highpass_hz: float | None,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Microphone-like response: 4th-order low-pass and 2nd-order high-pass magnitudes, zero phase."""
    def response(f: np.ndarray) -> np.ndarray:
        g = np.ones_like(f)
        if lowpass_hz:
            g /= np.sqrt(1 + (f / lowpass_hz) ** 8)
        if highpass_hz:
            g /= np.sqrt(1 + (highpass_hz / np.maximum(f, 1e-3)) ** 4)
        return g
    return _freq_filter(_check(samples), response, sample_rate)


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels."""
    return (_check(samples) * 10 ** (db / 20)).astype(np.float32)


def dc_offset(samples: np.ndarray, offset: float) -> np.ndarray:
    """Add a constant ``offset`` (full scale = 1)."""
    return (_check(samples) + offset).astype(np.float32)


def pad_silence(samples: np.ndarray, *, lead_s: float, trail_s: float) -> np.ndarray:
    """Add ``lead_s`` and ``trail_s`` seconds of digital silence before and after."""
    x = _check(samples)
    return np.pad(x, (int(lead_s * SAMPLE_RATE), int(trail_s * SAMPLE_RATE))).astype(np.float32)


# ---------------------------------------------------------------- the chain
Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (0-1) and ranges of each effect; ranges are (low, high) drawn uniformly."""

    p_silence: float = 0.8
    lead_silence_s: Range = (0.0, 0.5)
    trail_silence_s: Range = (0.0, 0.5)
    p_speed: float = 0.6
    speed: Range = (0.85, 1.15)
    p_vtlp: float = 0.4
    vtlp_alpha: Range = (0.9, 1.1)
    p_pitch: float = 0.3
    pitch_semitones: Range = (-3.0, 3.0)
    p_reverb: float = 0.4
    rt60_s: Range = (0.15, 0.9)
    p_noise: float = 0.5
    noise_colours: tuple[str, ...] = ("white", "pink", "brown")
    p_babble: float = 0.2
    babble_talkers: tuple[int, int] = (3, 6)
    snr_db: Range = (5.0, 30.0)
    p_mic: float = 0.4
    lowpass_hz: Range = (3500.0, 7500.0)
    highpass_hz: Range = (50.0, 300.0)
    p_telephone: float = 0.3
    p_narrowband: float = 0.0  # of the clips not sent through the telephone; 0 keeps older configs' draws
    p_mu_law: float = 0.5
    p_gain: float = 0.8
    gain_db: Range = (-20.0, 3.0)
    p_dc: float = 0.2
    dc_max: float = 0.02

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        """Build from a YAML mapping; unknown keys raise ``ValueError``; lists become tuples."""
        reject_unknown_keys(cls, d, what="augment")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= v <= 1.0:
                raise ValueError(f"{f.name}={v} is not a probability")


class Augmenter:
    """Random chain of effects: ``Augmenter(cfg)(samples, rng, babble=others) -> samples``."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, samples: np.ndarray, rng: np.random.Generator, *,
                 babble: Sequence[np.ndarray] = ()) -> np.ndarray:
        """Augment 16 kHz ``samples`` (T,) -> (T',) float32 in [-1, 1]; T' differs with speed/silence."""
        c, x = self.config, _check(samples)

        def u(r: Range) -> float:
            return float(rng.uniform(*r))

        if rng.random() < c.p_silence:
            x = pad_silence(x, lead_s=u(c.lead_silence_s), trail_s=u(c.trail_silence_s))
        if rng.random() < c.p_speed:
            x = speed(x, u(c.speed))
        if rng.random() < c.p_vtlp:
            x = vtlp(x, u(c.vtlp_alpha))
        if rng.random() < c.p_pitch:
            x = pitch_shift(x, u(c.pitch_semitones))
        if rng.random() < c.p_reverb:
            x = reverb(x, rng, rt60_s=u(c.rt60_s))
        if babble and rng.random() < c.p_babble:
            talkers = int(rng.integers(c.babble_talkers[0], c.babble_talkers[1] + 1))
            x = add_babble(x, babble, rng, snr_db=u(c.snr_db), talkers=talkers)
        if rng.random() < c.p_noise:
            x = add_noise(x, rng, snr_db=u(c.snr_db), colour=str(rng.choice(c.noise_colours)))
        if rng.random() < c.p_mic:
            x = mic_filter(x, lowpass_hz=u(c.lowpass_hz) if rng.random() < 0.7 else None,
                           highpass_hz=u(c.highpass_hz) if rng.random() < 0.7 else None)
        if rng.random() < c.p_telephone:
            x = telephone_band(x, mu_law_codec=bool(rng.random() < c.p_mu_law))
        elif c.p_narrowband and rng.random() < c.p_narrowband:
            x = narrowband(x, mu_law_codec=bool(rng.random() < c.p_mu_law))
        if rng.random() < c.p_gain:
            x = gain(x, u(c.gain_db))
        if rng.random() < c.p_dc:
            x = dc_offset(x, float(rng.uniform(-c.dc_max, c.dc_max)))
        return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0).astype(np.float32)
