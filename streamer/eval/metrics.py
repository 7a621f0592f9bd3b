"""Scores for translated speech: ASR-BLEU, WER, forced-choice accuracy, unit error rate, silence.

Texts are compared after one normalisation (`normalize_text`): Unicode NFKC, lower case, numerals
spelled out in the language's words (Whisper writes "7" and "350" where our references say "siete"
and "trescientos cincuenta"), punctuation dropped, whitespace collapsed. Accents are kept.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from streamer.models.units import edit_distance, unit_error_rate

SAMPLE_RATE = 16_000
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3})(?::(\d{2}))?(?![\w])")
_SPACE = re.compile(r"\s+")


def _number_words(n: int, lang: str) -> str:
    from streamer.train.grammar import en_number, es_number

    if lang == "es":
        return es_number(n)
    if lang == "en":
        return en_number(n)
    return str(n)


def _spell_numbers(text: str, lang: str) -> str:
    """Integers 0..999 and clock times ("7:30") -> words in `lang` ("en", "es"); others left alone."""
    def words(m: re.Match[str]) -> str:
        out = _number_words(int(m[1]), lang)
        if m[2] is not None:
            minute = int(m[2])
            if lang == "en" and 0 < minute < 10:
                out += f" oh {_number_words(minute, lang)}"
            elif minute:
                out += f" {_number_words(minute, lang)}"
        return f" {out} "

    return _NUMBER.sub(words, text)


def normalize_text(text: str, *, lang: str | None = None) -> str:
    """Lower-case words separated by single spaces: numerals spelled out (when `lang` is "en"/"es"),
    punctuation (Unicode category P*, plus symbols) removed, accents kept."""
    t = unicodedata.normalize("NFKC", text).lower()
    if lang:
        t = _spell_numbers(t, lang)
    t = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in t)
    return _SPACE.sub(" ", t).strip()


def asr_bleu(hypotheses: Sequence[str], references: Sequence[str], *, lang: str | None = None) -> float:
    """Corpus BLEU (sacreBLEU, 13a tokenisation, lower-cased) of normalised texts, 0..100.

    Raises `ImportError` with an install hint when sacrebleu is missing.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        return math.nan
    try:
        from sacrebleu.metrics import BLEU
    except ImportError as exc:
        raise ImportError('ASR-BLEU needs sacrebleu: pip install "streamer[eval]"') from exc
    hyps = [normalize_text(h, lang=lang) for h in hypotheses]
    refs = [normalize_text(r, lang=lang) for r in references]
    return float(BLEU(tokenize="13a", lowercase=True).corpus_score(hyps, [refs]).score)


def word_errors(hypothesis: str, reference: str, *, lang: str | None = None) -> tuple[int, int]:
    """(word edit distance, reference word count) after `normalize_text`."""
    h = normalize_text(hypothesis, lang=lang).split()
    r = normalize_text(reference, lang=lang).split()
    return edit_distance(h, r), len(r)


def wer(hypotheses: Sequence[str], references: Sequence[str], *, lang: str | None = None) -> float:
    """Corpus word error rate: total word edits over total reference words (can exceed 1)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    pairs = [word_errors(h, r, lang=lang) for h, r in zip(hypotheses, references, strict=True)]
    total = sum(n for _, n in pairs)
    return sum(e for e, _ in pairs) / total if total else math.nan


def accuracy(predictions: Sequence[str | None], labels: Sequence[str]) -> float:
    """Fraction of predictions equal to their label; None (silent or no answer) counts as wrong."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        return math.nan
    return sum(p is not None and p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def peak_frame_db(samples: np.ndarray, *, sample_rate: int = SAMPLE_RATE, frame_ms: float = 20.0) -> float:
    """RMS level in dBFS of the loudest `frame_ms` frame of (T,) samples; -inf for digital silence."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        return -math.inf
    hop = max(1, int(sample_rate * frame_ms / 1000))
    x = np.pad(x, (0, -len(x) % hop))
    rms = float(np.sqrt(np.mean(x.reshape(-1, hop) ** 2, axis=1)).max())
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(samples: np.ndarray, threshold_db: float = -40.0, *, sample_rate: int = SAMPLE_RATE) -> bool:
    """True when no 20 ms frame of (T,) samples is louder than `threshold_db` dBFS (RMS)."""
    return peak_frame_db(samples, sample_rate=sample_rate) < threshold_db


def ratio(value: float, topline: float, *, lower_is_better: bool = False) -> float:
    """How close `value` is to `topline` as a ratio, 1 = as good as the topline.

    Higher-is-better scores (BLEU, accuracy): value / topline. Lower-is-better (WER): the ratio of
    word accuracies, max(0, 1 - value) / max(0, 1 - topline). NaN when the topline is 0 or missing.
    """
    if lower_is_better:
        value, topline = max(0.0, 1.0 - value), max(0.0, 1.0 - topline)
    if not math.isfinite(value) or not math.isfinite(topline) or topline <= 0:
        return math.nan
    return value / topline


__all__ = ["accuracy", "asr_bleu", "edit_distance", "is_silent", "normalize_text", "peak_frame_db", "ratio",
           "unit_error_rate", "wer", "word_errors"]
