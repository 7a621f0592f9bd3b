"""Session / Translator: streaming equals offline, batching equals single streams, reset, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamer.audio.resample import resample
from streamer.engine.eager import EagerRunner
from streamer.errors import AudioError
from streamer.models.presets import tiny_model
from streamer.models.state import state_nbytes
from streamer.pipeline import Translator


def speechlike(seconds: float, seed: int, sample_rate: int = 16_000) -> np.ndarray:
    """Noise shaped by a slow random envelope: bursts and pauses, deterministic per seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    envelope = np.repeat(rng.uniform(0, 1, n // 800 + 1), 800)[:n] ** 2
    return (0.3 * envelope * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator(EagerRunner(tiny_model()))


def test_streaming_equals_offline_model(translator: Translator) -> None:
    x = speechlike(1.6, seed=1)
    session = translator.create_session()
    for block in np.array_split(x, 7):  # odd block sizes
        session.accept_waveform(block, sample_rate=16_000)
        while translator.is_ready(session):
            translator.step(session)
    session.input_finished()
    translator.flush(session)
    out = session.read_output()
    n_chunks = len(out) // translator.chunk_samples
    padded = np.zeros(n_chunks * translator.chunk_samples, dtype=np.float32)
    padded[: len(x)] = x
    with torch.no_grad():
        ref_audio, ref_units = translator.runner.model(torch.from_numpy(padded)[None])
    np.testing.assert_allclose(out, ref_audio[0].numpy(), atol=1e-5, rtol=1e-4)
    ref = ref_units[0].numpy()
    np.testing.assert_array_equal(session.result().units, ref[ref >= 0])
    assert session.done


def test_step_many_equals_single_sessions(translator: Translator) -> None:
    clips = [speechlike(s, seed=i) for i, s in enumerate([0.8, 1.3, 0.5])]
    singles = [translator.translate_array(c, sample_rate=16_000) for c in clips]
    sessions = [translator.create_session(f"s{i}") for i in range(3)]
    sessions[0].accept_waveform(clips[0], sample_rate=16_000)
    translator.step_many([sessions[0]])  # stream 0 starts one chunk early
    for s, c in zip(sessions[1:], clips[1:], strict=True):
        s.accept_waveform(c, sample_rate=16_000)
    for s in sessions:
        s.input_finished()
    while ready := [s for s in sessions if translator.is_ready(s)]:
        translator.step_many(ready)
    for s, ref in zip(sessions, singles, strict=True):
        np.testing.assert_allclose(s.read_output(), ref, atol=1e-5, rtol=1e-4)
        assert s.done


def test_any_input_rate(translator: Translator) -> None:
    x16 = speechlike(1.0, seed=5)
    x48 = resample(x16, 16_000, 48_000)
    out16 = translator.translate_array(x16, sample_rate=16_000)
    out48 = translator.translate_array(x48, sample_rate=48_000)
    assert len(out48) == len(out16)
    assert np.corrcoef(out16, out48)[0, 1] > 0.9


def test_reset_leaves_nothing_behind(translator: Translator) -> None:
    a, b = speechlike(0.9, seed=7), speechlike(0.7, seed=8)
    session = translator.create_session()
    session.accept_waveform(a, sample_rate=16_000)
    session.input_finished()
    translator.flush(session)
    session.reset()
    session.accept_waveform(b, sample_rate=16_000)
    session.input_finished()
    translator.flush(session)
    np.testing.assert_array_equal(session.read_output(), translator.translate_array(b, sample_rate=16_000))


def test_state_is_bounded_on_long_streams(translator: Translator) -> None:
    session = translator.create_session()
    size = state_nbytes(session.state)
    session.accept_waveform(speechlike(20.0, seed=9), sample_rate=16_000)
    while translator.is_ready(session):
        translator.step(session)
        assert state_nbytes(session.state) == size


def test_bad_input_is_refused_and_stream_survives(translator: Translator) -> None:
    session = translator.create_session("bad")
    bad = speechlike(0.3, seed=3)
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        session.accept_waveform(bad, sample_rate=16_000)
    session.accept_waveform(speechlike(0.3, seed=3), sample_rate=16_000)
    with pytest.raises(AudioError, match="sample rate changed"):
        session.accept_waveform(speechlike(0.3, seed=3), sample_rate=8_000)
    session.input_finished()
    translator.flush(session)
    assert len(session.read_output()) > 0
    with pytest.raises(AudioError, match="after input_finished"):
        session.accept_waveform(speechlike(0.1, seed=3), sample_rate=16_000)
