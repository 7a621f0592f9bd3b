"""Metrics on hand-made examples: BLEU, WER, normalisation, accuracy, silence, ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.eval import metrics


def test_normalize_text_drops_punctuation_and_case_keeps_accents() -> None:
    assert metrics.normalize_text("¿Qué HORA es?  Son las siete.") == "qué hora es son las siete"
    assert metrics.normalize_text("Hello, world!") == "hello world"


def test_normalize_text_spells_numbers_in_the_language() -> None:
    assert metrics.normalize_text("Son las 7:30.", lang="es") == "son las siete treinta"
    assert metrics.normalize_text("It costs 342 euros", lang="en") == "it costs three hundred forty two euros"
    assert metrics.normalize_text("at 3:05", lang="en") == "at three oh five"
    assert metrics.normalize_text("in 2024", lang="en") == "in 2024"       # beyond 999: left alone
    assert metrics.normalize_text("7", lang=None) == "7"


def test_bleu_identical_is_100_and_disjoint_is_0() -> None:
    refs = ["el tren sale a las tres y media", "nos vemos el lunes"]
    assert metrics.asr_bleu(refs, refs) == pytest.approx(100.0)
    assert metrics.asr_bleu(["El tren sale a las TRES y media.", "¡Nos vemos el lunes!"], refs) == pytest.approx(100.0)
    assert metrics.asr_bleu(["perro gato", "azul verde"], refs) == pytest.approx(0.0)
    assert 0 < metrics.asr_bleu(["el tren sale a las tres", "nos vemos el lunes"], refs) < 100


def test_wer_known_values() -> None:
    assert metrics.wer(["a b c d"], ["a b c d"]) == 0.0
    assert metrics.wer(["a x c"], ["a b c d"]) == pytest.approx(0.5)          # 1 substitution + 1 deletion
    assert metrics.wer(["a b c d e f"], ["a b"]) == pytest.approx(2.0)        # 4 insertions over 2 words
    assert metrics.wer(["", "one two"], ["one two", "one two"]) == pytest.approx(0.5)  # corpus-level
    assert metrics.wer(["Son las 7."], ["son las siete"], lang="es") == 0.0
    assert metrics.word_errors("hola mundo", "hola") == (1, 1)
    with pytest.raises(ValueError, match="hypotheses"):
        metrics.wer(["a"], ["a", "b"])


def test_accuracy_counts_none_as_wrong() -> None:
    assert metrics.accuracy(["1", None, "3", "4"], ["1", "2", "3", "5"]) == pytest.approx(0.5)
    assert math.isnan(metrics.accuracy([], []))


def test_unit_error_rate() -> None:
    assert metrics.unit_error_rate([[1, 2, 3], [4]], [[1, 2, 3], [4, 5]]) == pytest.approx(1 / 5)


def test_is_silent_and_peak_db() -> None:
    sr = 16_000
    assert metrics.is_silent(np.zeros(sr, dtype=np.float32))
    assert metrics.peak_frame_db(np.zeros(0)) == -math.inf
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)            # RMS 0.0707 = -23 dBFS
    assert metrics.peak_frame_db(tone) == pytest.approx(-23.0, abs=0.1)
    assert not metrics.is_silent(tone, -40.0)
    quiet = np.zeros(sr)
    quiet[8000:8320] = 0.5                                                  # one loud 20 ms frame is enough
    assert not metrics.is_silent(quiet, -40.0)
    assert metrics.is_silent(tone * 1e-3, -40.0)                            # -83 dBFS


def test_ratio_to_topline() -> None:
    assert metrics.ratio(30.0, 60.0) == pytest.approx(0.5)
    assert metrics.ratio(0.6, 0.2, lower_is_better=True) == pytest.approx(0.4 / 0.8)
    assert metrics.ratio(1.5, 0.2, lower_is_better=True) == 0.0             # WER above 1: no words right
    assert math.isnan(metrics.ratio(10.0, 0.0))
    assert math.isnan(metrics.ratio(math.nan, 50.0))
