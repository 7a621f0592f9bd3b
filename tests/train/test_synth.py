"""Speech engines: each installed one speaks plausible 16 kHz audio; cache and batch are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.train import synth
from streamer.train.synth import ENGINES, Voice, synthesize, synthesize_many, target_voice

TEXT = "where is the train station"


def _first_voice(engine: str, lang: str = "en") -> Voice:
    if engine not in synth.available_engines():
        pytest.skip(f"{engine} is not installed here")
    names = synth.engine_voices(engine, lang)
    if not names:
        pytest.skip(f"{engine} has no {lang} voices here")
    return synth.random_voice(engine, names[-1], lang, np.random.default_rng(0))


def _check_speech(audio: np.ndarray, sr: int, min_s: float = 0.6, max_s: float = 5.0) -> None:
    assert sr == 16_000
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    assert min_s < len(audio) / sr < max_s, len(audio) / sr
    assert np.sqrt(np.mean(audio**2)) > 0.02


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_speaks_plausible_audio(engine: str) -> None:
    voice = _first_voice(engine)
    audio, sr = synthesize(TEXT, voice)
    _check_speech(audio, sr)
    longer, _ = synthesize(f"{TEXT} at three thirty in the afternoon please", voice)
    assert len(longer) > 1.4 * len(audio)


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_is_deterministic(engine: str) -> None:
    voice = _first_voice(engine)
    a, _ = synthesize("two red cups", voice)
    b, _ = synthesize("two red cups", voice)
    np.testing.assert_array_equal(a, b)


def test_spanish_voices() -> None:
    voice = _first_voice("espeak-ng", "es")
    _check_speech(*synthesize("¿dónde está la estación?", voice))
    assert {"es", "es-419", "es+m3", "es-419+f2"} <= set(synth.engine_voices("espeak-ng", "es"))


def test_espeak_catalogue_has_accents_and_variants() -> None:
    if "espeak-ng" not in synth.available_engines():
        pytest.skip("espeak-ng is not installed here")
    names = set(synth.engine_voices("espeak-ng", "en"))
    assert {"en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+m7", "en-gb+f5",
            "en-us+croak", "en-us+whisper"} <= names


def test_params_change_the_audio() -> None:
    _first_voice("espeak-ng")
    slow, _ = synthesize(TEXT, Voice.make("espeak-ng", "en-us", "en", rate=120, pitch=50))
    fast, _ = synthesize(TEXT, Voice.make("espeak-ng", "en-us", "en", rate=210, pitch=50))
    assert len(slow) > 1.3 * len(fast)


def test_cache_hit_returns_identical_audio(tmp_path: Path) -> None:
    voice = _first_voice("espeak-ng")
    first, _ = synthesize(TEXT, voice, cache_dir=tmp_path)
    path = synth.cache_path(tmp_path, TEXT, voice)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    second, _ = synthesize(TEXT, voice, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, second)
    assert path.stat().st_mtime_ns == mtime
    uncached, _ = synthesize(TEXT, voice)
    np.testing.assert_array_equal(first, uncached)
    assert synth.cache_path(tmp_path, TEXT + " now", voice) != path


def test_batch_matches_single_calls(tmp_path: Path) -> None:
    voices = [_first_voice("espeak-ng")] + [
        synth.random_voice(e, synth.engine_voices(e, "en")[0], "en", np.random.default_rng(1))
        for e in ("flite", "festival") if e in synth.available_engines()]
    jobs = [(text, v) for v in voices for text in ("hello", "turn on the light", "hello")]
    jobs.append(("hello", Voice.make("espeak-ng", "es", "es", rate=150, pitch=50)))
    paths = synthesize_many(jobs, cache_dir=tmp_path, workers=2, progress=False)
    assert all(p is not None and p.is_file() for p in paths)
    assert paths[0] == paths[2]
    for (text, voice), path in zip(jobs, paths, strict=True):
        np.testing.assert_array_equal(synthesize(text, voice, cache_dir=tmp_path)[0], synthesize(text, voice)[0])
        assert path == synth.cache_path(tmp_path, text, voice)


def test_missing_engine_is_skipped_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "available_engines", lambda: frozenset({"espeak-ng"}))
    with pytest.raises(synth.EngineUnavailableError):
        synthesize("hello", Voice.make("piper", "en_US-joe-medium", "en"))
    paths = synthesize_many([("hello", Voice.make("piper", "en_US-joe-medium", "en"))], cache_dir=tmp_path,
                            progress=False)
    assert paths == [None]


def test_target_voices_are_fixed() -> None:
    assert target_voice("es") == target_voice("es")
    assert target_voice("es").engine == "espeak-ng" and target_voice("es").name == "es"
    assert target_voice("en").name == "en-us"
    with pytest.raises(ValueError):
        target_voice("fr")


def test_voice_round_trip_and_random_voice_seeded() -> None:
    v = synth.random_voice("piper", "en_US-joe-medium", "en", np.random.default_rng(5))
    assert v == synth.random_voice("piper", "en_US-joe-medium", "en", np.random.default_rng(5))
    assert Voice.from_dict(v.to_dict()) == v
    assert 0.8 <= v.param("length_scale", 0) <= 1.25
    with pytest.raises(ValueError):
        synthesize("", v)
