"""Voice activity detection and the gate: onsets found fast, noise 10 dB below speech rejected."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.errors import StreamerError
from streamer.vad import FRAME_SAMPLES, EnergyVAD, VadConfig, VoiceGate, load_vad, silero_model_path

SPEECH_DBFS = -19.0
MAX_ONSET_DELAY_MS = 110  # measured: silero 24-70 ms, energy 14-70 ms (clean and 10 dB SNR); docs/live.md


@pytest.fixture(params=["silero", "energy"])
def vad(request):
    if request.param == "silero" and silero_model_path() is None:
        pytest.skip("silero-vad is not installed (`pip install silero-vad onnxruntime`)")
    return load_vad(request.param)


def frame_probs(vad, x: np.ndarray) -> np.ndarray:
    vad.reset()
    return np.array([vad.prob(x[i : i + FRAME_SAMPLES]) for i in range(0, len(x) - FRAME_SAMPLES + 1, FRAME_SAMPLES)])


def loud_span(clip: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) sample of the 10 ms frames within 30 dB of the clip's loudest frame."""
    e = (clip[: len(clip) // 160 * 160].reshape(-1, 160) ** 2).mean(1)
    loud = np.nonzero(e > e.max() * 1e-3)[0]
    return 160 * int(loud[0]), 160 * int(loud[-1] + 1)


def onset_of(clip: np.ndarray) -> int:
    return loud_span(clip)[0]


@pytest.mark.parametrize("snr_db", [None, 20, 10])
def test_speech_onset_is_detected_within_110_ms(vad, speech_clips, make_noise, snr_db) -> None:
    for k, clip in enumerate(speech_clips):
        lead = 8000
        x = np.concatenate([np.zeros(lead, np.float32), clip, np.zeros(4800, np.float32)])
        if snr_db is not None:
            x += make_noise(len(x), level_dbfs=SPEECH_DBFS - snr_db, seed=k)
        p = frame_probs(vad, x)
        first = int(np.argmax(p >= 0.5))
        assert p[first] >= 0.5, f"clip {k}: no speech detected (max p {p.max():.2f})"
        delay_ms = ((first + 1) * FRAME_SAMPLES - (lead + onset_of(clip))) / 16
        assert -32 <= delay_ms <= MAX_ONSET_DELAY_MS, f"clip {k} at SNR {snr_db}: onset found after {delay_ms} ms"


@pytest.mark.parametrize("color", ["white", "pink"])
def test_noise_10_db_below_speech_is_rejected(vad, make_noise, color) -> None:
    n = 16000 * 5
    if color == "pink":
        x = make_noise(n, level_dbfs=SPEECH_DBFS - 10, seed=1)
    else:
        x = np.random.default_rng(1).standard_normal(n).astype(np.float32) * 10 ** ((SPEECH_DBFS - 10) / 20)
    p = frame_probs(vad, x)
    assert (p >= 0.5).mean() <= 0.02, f"{100 * (p >= 0.5).mean():.1f}% of noise frames taken for speech"
    gate = VoiceGate(vad)
    out = np.concatenate([gate.process(x).samples, gate.flush().samples])
    assert (out != 0).mean() <= 0.05


def test_gate_keeps_word_starts_and_silences_the_noise_around_them(vad, speech_clips, make_noise) -> None:
    lead, clip = 16000, speech_clips[0]
    x = make_noise(lead + len(clip) + 16000, level_dbfs=SPEECH_DBFS - 20, seed=2)
    x[lead : lead + len(clip)] += clip
    gate = VoiceGate(vad, VadConfig(preroll_ms=224, hangover_ms=256))
    pieces = [gate.process(x[i : i + 1000]) for i in range(0, len(x), 1000)]  # blocks unrelated to frames
    out = np.concatenate([r.samples for r in pieces] + [gate.flush().samples])
    assert len(out) == len(x) + gate.delay_samples == len(x) + 4096
    y = out[gate.delay_samples :]  # aligned with x
    passed = y != 0
    np.testing.assert_array_equal(y[passed], x[passed])  # the gate passes samples unchanged, or zeros
    start, end = (lead + t for t in loud_span(clip))
    assert passed[start - 16 * 150 : end].all()  # the whole utterance, with at least 150 ms of pre-roll
    assert not passed[: start - 16 * 400].any() and not passed[end + 16 * 600 :].any()  # noise far from it: zeros


class ScriptedVAD:
    """Voiced where the frame's mean is above 0.5: the gate's logic without a classifier."""

    name = "scripted"

    def prob(self, frame: np.ndarray) -> float:
        return float(frame.mean() > 0.5)

    def reset(self) -> None:
        pass


@pytest.mark.parametrize("block", [7, 333, 512, 2560, 5000])
def test_gate_opens_preroll_before_and_hangover_after_voice(block) -> None:
    frames = np.zeros(40)
    frames[[15, 16, 17, 25]] = 1.0  # voiced frames
    x = np.repeat(frames, FRAME_SAMPLES).astype(np.float32) + 0.01
    gate = VoiceGate(ScriptedVAD(), VadConfig(preroll_ms=96, hangover_ms=64))  # P = 3, H = 2 frames
    assert (gate.preroll_frames, gate.hangover_frames, gate.delay_samples) == (3, 2, 4 * FRAME_SAMPLES)
    results = [gate.process(x[i : i + block]) for i in range(0, len(x), block)]
    assert [len(r.samples) for r in results] == [len(x[i : i + block]) for i in range(0, len(x), block)]
    out = np.concatenate([r.samples for r in results] + [gate.flush().samples])[gate.delay_samples :]
    open_frames = [f for f in range(40) if out[f * FRAME_SAMPLES] != 0]
    assert open_frames == list(range(12, 20)) + list(range(22, 28))  # [15-3, 17+2] and [25-3, 25+2]
    span = slice(12 * FRAME_SAMPLES, 20 * FRAME_SAMPLES)
    np.testing.assert_array_equal(out[span], x[span])


def test_gate_hysteresis_keeps_voice_between_thresholds() -> None:
    probs = iter([0.6, 0.4, 0.4, 0.3, 0.0, 0.0, 0.4, 0.0] + [0.0] * 10)

    class Seq:
        name = "seq"

        def prob(self, frame: np.ndarray) -> float:
            return next(probs)

        def reset(self) -> None:
            pass

    gate = VoiceGate(Seq(), VadConfig(threshold=0.5, neg_threshold=0.35, preroll_ms=0, hangover_ms=0))
    ones = np.ones(8 * FRAME_SAMPLES, np.float32)
    out = np.concatenate([gate.process(ones).samples, gate.flush().samples])[gate.delay_samples :]
    # 0.6 opens, 0.4 and 0.4 hold, 0.3 closes; a later 0.4 alone does not reopen.
    assert [bool(out[f * FRAME_SAMPLES]) for f in range(8)] == [True, True, True, False, False, False, False, False]


def test_silero_loads_offline_without_touching_torch_threads() -> None:
    if silero_model_path() is None:
        pytest.skip("silero-vad is not installed")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vad = load_vad("silero")
        assert vad.name == "silero" and torch.get_num_threads() == 2  # importing silero_vad would set 1
    finally:
        torch.set_num_threads(before)


def test_auto_falls_back_to_energy_when_silero_is_missing(monkeypatch) -> None:
    monkeypatch.setattr("streamer.vad.silero_model_path", lambda: None)
    assert isinstance(load_vad("auto"), EnergyVAD)
    with pytest.raises(StreamerError, match="pip install silero-vad"):
        load_vad("silero")


def test_vad_config_is_checked() -> None:
    with pytest.raises(ValueError, match="backend"):
        VadConfig(backend="webrtc")
    with pytest.raises(ValueError, match="neg_threshold"):
        VadConfig(threshold=0.3, neg_threshold=0.5)
