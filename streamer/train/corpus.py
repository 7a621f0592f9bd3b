"""Build the synthetic parallel speech corpus: manifest.jsonl plus 16 kHz wavs under one folder.

Splits (per direction, en->es and es->en): ``train``; ``dev`` and ``unseen_sentences`` (held-out word
combinations, training voices); ``unseen_voices`` (held-out voices of the training engines);
``unseen_engine`` (en->es only: every sentence spoken by the one held-out English engine); ``digits``
(zero..nine, each by several voices of the held-out engine, or held-out voices where there is none).
Run: ``python -m streamer.train.corpus configs/corpus/default.yaml``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamer.config import read_yaml_mapping
from streamer.errors import AudioFileError, StreamerError
from streamer.train import grammar, synth
from streamer.train.grammar import Pair

log = logging.getLogger("streamer.train.corpus")

SPLITS = ("train", "dev", "unseen_voices", "unseen_engine", "unseen_sentences", "digits")
ROW_KEYS = ("id", "split", "category", "src_lang", "tgt_lang", "src_text", "tgt_text", "src_audio",
            "src_engine", "src_voice", "tgt_audio")


class CorpusError(StreamerError, ValueError):
    """A corpus config or manifest that is malformed: unknown keys, missing columns, bad values."""


def _known(cls: type, d: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CorpusError(f"unknown keys {unknown} in {where}; known: {sorted(names)}")


@dataclass(frozen=True)
class DirectionConfig:
    """Source utterances per split for one direction; digits = 10 x ``digit_voices`` x ``digit_repeats``."""

    train: int = 0
    dev: int = 0
    unseen_voices: int = 0
    unseen_engine: int = 0
    unseen_sentences: int = 0
    digit_voices: int = 0
    digit_repeats: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DirectionConfig:
        """From a YAML mapping of counts."""
        _known(cls, d, "direction")
        return cls(**{k: int(v) for k, v in d.items()})


@dataclass(frozen=True)
class CorpusConfig:
    """Everything that decides the corpus; the same config and seed give the same corpus."""

    out_dir: str
    seed: int = 0
    workers: int = 2
    categories: tuple[str, ...] = grammar.CATEGORIES
    category_weights: tuple[tuple[str, float], ...] = ()
    n_dev_pairs: int = 300
    n_test_pairs: int = 400
    engine_weights: tuple[tuple[str, float], ...] = (("espeak-ng", 0.4), ("festival", 0.3), ("piper", 0.3))
    unseen_engine: str | None = "flite"
    held_out_voices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    directions: tuple[tuple[str, DirectionConfig], ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorpusConfig:
        """From a YAML mapping (see configs/corpus/default.yaml); unknown keys raise ``CorpusError``."""
        _known(cls, d, "corpus config")
        d = dict(d)
        for key in ("category_weights", "engine_weights"):
            if key in d:
                d[key] = tuple(sorted((str(k), float(v)) for k, v in d[key].items()))
        if "held_out_voices" in d:
            d["held_out_voices"] = tuple(sorted((k, tuple(v or ())) for k, v in d["held_out_voices"].items()))
        if "directions" in d:
            bad = sorted(set(d["directions"]) - {"en-es", "es-en"})
            if bad:
                raise CorpusError(f"unknown directions {bad}; known: ['en-es', 'es-en']")
            d["directions"] = tuple((k, DirectionConfig.from_dict(v)) for k, v in d["directions"].items())
        if "categories" in d:
            d["categories"] = tuple(d["categories"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> CorpusConfig:
        """Read a YAML config file."""
        return cls.from_dict(read_yaml_mapping(path, what="corpus config", error=CorpusError))


# ---------------------------------------------------------------- voices
def _is_held(name: str, specs: Sequence[str]) -> bool:
    """``specs`` items: a full name, a base ("en-029": any variant) or a variant ("+m4": any base)."""
    return any(name == s or (s.startswith("+") and name.endswith(s)) or name.split("+")[0] == s
               for s in specs)


@dataclass(frozen=True)
class VoicePool:
    """Voice names by engine for one source language: training, held out, and the held-out engine's."""

    train: dict[str, tuple[str, ...]]
    held: dict[str, tuple[str, ...]]
    unseen: tuple[str, ...]
    weights: dict[str, float]


def voice_pool(cfg: CorpusConfig, lang: str) -> VoicePool:
    """Split installed voices of ``lang``; engines that are missing here are skipped with a warning."""
    held_specs = dict(cfg.held_out_voices)
    wanted = dict(cfg.engine_weights) if lang == "en" else {"espeak-ng": 1.0}
    train, held, weights = {}, {}, {}
    for engine, weight in wanted.items():
        if engine == cfg.unseen_engine or weight <= 0:
            continue
        names = synth.engine_voices(engine, lang)
        if not names:
            log.warning("engine %s has no %s voices here (not installed?): skipped", engine, lang)
            continue
        train[engine] = tuple(n for n in names if not _is_held(n, held_specs.get(engine, ())))
        held[engine] = tuple(n for n in names if _is_held(n, held_specs.get(engine, ())))
        weights[engine] = weight
    unseen: tuple[str, ...] = ()
    if lang == "en" and cfg.unseen_engine:
        unseen = synth.engine_voices(cfg.unseen_engine, "en")
        if not unseen:
            log.warning("held-out engine %s is not installed: no unseen_engine split", cfg.unseen_engine)
    return VoicePool(train, {e: v for e, v in held.items() if v}, unseen, weights)


def _pick(rng: np.random.Generator, by_engine: dict[str, tuple[str, ...]], weights: dict[str, float],
          lang: str) -> synth.Voice:
    engines = [e for e in by_engine if by_engine[e]]
    p = np.array([weights.get(e, 1.0) for e in engines])
    engine = engines[int(rng.choice(len(engines), p=p / p.sum()))]
    names = by_engine[engine]
    return synth.random_voice(engine, names[int(rng.integers(len(names)))], lang, rng)


# ---------------------------------------------------------------- planning
def _weighted(pairs_by_cat: dict[str, list[Pair]], n: int, weights: dict[str, float]) -> list[Pair]:
    """``n`` pairs with category shares from ``weights``, cycling each category's (cover-first) order."""
    cats = [c for c in pairs_by_cat if pairs_by_cat[c] and weights.get(c, 1.0) > 0]
    if not cats or n <= 0:
        return []
    w = np.array([weights.get(c, 1.0) for c in cats])
    quota = np.floor(n * w / w.sum()).astype(int)
    quota[np.argsort(-w)[: n - quota.sum()]] += 1
    return [pairs_by_cat[c][i % len(pairs_by_cat[c])] for c, q in zip(cats, quota, strict=True) for i in range(q)]


def _group(pairs: Sequence[Pair], seed: int) -> dict[str, list[Pair]]:
    by_cat: dict[str, list[Pair]] = {}
    for p in pairs:
        by_cat.setdefault(p.category, []).append(p)
    return {c: grammar.coverage_order(ps, seed) for c, ps in sorted(by_cat.items())}


def plan_rows(cfg: CorpusConfig) -> list[dict[str, Any]]:
    """Every row's texts and voices (no audio yet), deterministic for ``cfg``."""
    pairs = grammar.enumerate_pairs(cfg.categories)
    split = grammar.split_combinations(pairs, n_dev=cfg.n_dev_pairs, n_test=cfg.n_test_pairs, seed=cfg.seed)
    cw = dict(cfg.category_weights)
    pool = _group(split.train, cfg.seed)
    rows: list[dict[str, Any]] = []
    for d_idx, (direction, dc) in enumerate(cfg.directions):
        src, tgt = direction.split("-")
        voices = voice_pool(cfg, src)
        if not voices.train:
            log.warning("no %s source voices installed: direction %s skipped", src, direction)
            continue
        held_engine = {"h": tuple(n for ns in voices.held.values() for n in ns)}
        plans: dict[str, tuple[list[Pair], dict[str, tuple[str, ...]], dict[str, float]]] = {
            "train": (_weighted(pool, dc.train, cw), voices.train, voices.weights),
            "dev": (_weighted(_group(split.dev, cfg.seed), dc.dev, cw), voices.train, voices.weights),
            "unseen_sentences": (_weighted(_group(split.test, cfg.seed), dc.unseen_sentences, cw),
                                 voices.train, voices.weights),
            "unseen_voices": (_weighted(_group(split.train, cfg.seed + 1), dc.unseen_voices, cw),
                              voices.held, voices.weights),
        }
        if voices.unseen:
            plans["unseen_engine"] = (_weighted(_group(split.train, cfg.seed + 2), dc.unseen_engine, cw),
                                      {str(cfg.unseen_engine): voices.unseen}, {})
        for s_idx, name in enumerate(SPLITS):
            rng = np.random.default_rng([cfg.seed, d_idx, s_idx])
            if name == "digits":
                engine, names = ((str(cfg.unseen_engine), voices.unseen) if voices.unseen
                                 else ("", held_engine["h"]))
                chosen = [names[i] for i in rng.permutation(len(names))[: dc.digit_voices]]
                todo = [(p, engine or _engine_of(n, voices.held), n) for n in chosen
                        for _ in range(dc.digit_repeats) for p in grammar.digit_pairs()]
                items = [(p, synth.random_voice(e, n, src, rng)) for p, e, n in todo]
            elif name in plans and plans[name][1]:
                chosen_pairs, by_engine, weights = plans[name]
                items = [(chosen_pairs[j], _pick(rng, by_engine, weights, src))
                         for j in rng.permutation(len(chosen_pairs))]
            else:
                continue
            for i, (pair, voice) in enumerate(items):
                rows.append({"id": f"{direction}-{name}-{i:05d}", "split": name, "category": pair.category,
                             "src_lang": src, "tgt_lang": tgt, "src_text": pair.text(src),
                             "tgt_text": pair.text(tgt), "pair_id": pair.id, "slots": dict(pair.slots),
                             "voice": voice})
    return _drop_uncovered(rows)


def _engine_of(name: str, by_engine: dict[str, tuple[str, ...]]) -> str:
    return next(e for e, names in by_engine.items() if name in names)


def _row_words(row: dict[str, Any]) -> set[str]:
    return {f"src:{w}" for w in grammar.words(row["src_text"])} | {f"tgt:{w}" for w in grammar.words(row["tgt_text"])}


def _drop_uncovered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop dev/unseen_sentences rows whose text is in train or whose words are not all in train."""
    keep = []
    for direction in sorted({(r["src_lang"], r["tgt_lang"]) for r in rows}):
        mine = [r for r in rows if (r["src_lang"], r["tgt_lang"]) == direction]
        train = [r for r in mine if r["split"] == "train"]
        vocab = set().union(*(_row_words(r) for r in train)) if train else set()
        texts = {r["src_text"] for r in train}
        for r in mine:
            if r["split"] in ("dev", "unseen_sentences") and (r["src_text"] in texts or not _row_words(r) <= vocab):
                log.warning("dropped %s: %r is in train or has words train lacks", r["id"], r["src_text"])
                continue
            keep.append(r)
    return keep


# ---------------------------------------------------------------- building
def build_corpus(cfg: CorpusConfig, *, progress: bool = True) -> Path:
    """Synthesise the corpus of ``cfg`` into ``cfg.out_dir``; returns the manifest.jsonl path.

    Audio lives in ``out_dir/audio`` (also the synthesis cache, so a rebuild only adds what is new).
    Rows whose synthesis failed are left out with a warning. ``summary.json`` holds counts and timings.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "espeak-ng" not in synth.available_engines():
        raise synth.EngineUnavailableError("espeak-ng is needed for the target voices and is not installed")
    t0 = time.monotonic()
    rows = plan_rows(cfg)
    tgt_voices = {lang: synth.target_voice(lang) for lang in ("en", "es")}
    jobs = [(r["src_text"], r["voice"]) for r in rows] + [(r["tgt_text"], tgt_voices[r["tgt_lang"]]) for r in rows]
    log.info("planned %d rows, %d synthesis jobs (%d distinct)", len(rows), len(jobs), len(set(jobs)))
    paths = synth.synthesize_many(jobs, cache_dir=out / "audio", workers=cfg.workers, progress=progress)
    synth_s = time.monotonic() - t0
    written: list[dict[str, Any]] = []
    for r, src_path, tgt_path in zip(rows, paths[: len(rows)], paths[len(rows):], strict=True):
        if src_path is None or tgt_path is None:
            log.warning("row %s left out: synthesis failed", r["id"])
            continue
        voice: synth.Voice = r.pop("voice")
        written.append({**r, "src_audio": str(src_path.relative_to(out)), "src_engine": voice.engine,
                        "src_voice": voice.name, "src_params": dict(voice.params),
                        "tgt_audio": str(tgt_path.relative_to(out))})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in written))
    summary = summarize(written, out)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary.update(synthesis_s=round(synth_s, 1), worker_cpu_s=round(cpu.ru_utime + cpu.ru_stime, 1),
                   config=dataclasses.asdict(cfg))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    log.info("wrote %s: %d rows in %.0f s", manifest, len(written), synth_s)
    return manifest


def summarize(rows: Sequence[dict[str, Any]], root: Path) -> dict[str, Any]:
    """Counts per direction/split/engine/voice, source hours and the audio folder's size in MB."""
    count = Counter(f"{r['src_lang']}-{r['tgt_lang']}/{r['split']}" for r in rows)
    engines = Counter(f"{r['src_lang']}-{r['tgt_lang']}/{r['split']}/{r['src_engine']}" for r in rows)
    voices = Counter(f"{r['src_engine']}:{r['src_voice']}" for r in rows)
    src_s = sum(sf.info(root / r["src_audio"]).duration for r in rows)
    size = sum(p.stat().st_size for p in (root / "audio").rglob("*.wav"))
    return {"rows": len(rows), "by_split": dict(sorted(count.items())), "by_engine": dict(sorted(engines.items())),
            "n_voices": len(voices), "by_voice": dict(voices.most_common()), "source_hours": round(src_s / 3600, 2),
            "audio_mb": round(size / 2**20, 1), "n_wav_files": sum(1 for _ in (root / "audio").rglob("*.wav"))}


def load_manifest(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a manifest.jsonl, audio paths made absolute; only ``split`` when given.

    Raises ``CorpusError`` for a row without the standard keys (``ROW_KEYS``).
    """
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise CorpusError(f"{path}:{n}: row lacks {missing}")
        if split is None or row["split"] == split:
            rows.append({**row, "src_audio": str(path.parent / row["src_audio"]),
                         "tgt_audio": str(path.parent / row["tgt_audio"])})
    return rows


def load_user_corpus(manifest: str | Path) -> list[dict[str, Any]]:
    """Read a user's parallel corpus (.jsonl or .csv): ``src_audio`` plus ``tgt_audio`` and/or ``tgt_text``.

    Optional columns: ``src_text``, ``id``, ``split`` (default "train"), ``src_lang``/``tgt_lang``
    (default en/es). Relative paths are taken from the manifest's folder. Raises ``CorpusError`` for a
    missing file, an unknown format or missing columns and ``AudioFileError`` for an absent or unreadable
    audio file, each naming the line.
    """
    path = Path(manifest)
    if not path.is_file():
        raise CorpusError(f"corpus manifest {path} does not exist")
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            raw = [(n + 2, dict(r)) for n, r in enumerate(csv.DictReader(f))]
    elif path.suffix in (".jsonl", ".json"):
        raw = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    raw.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{path}:{n}: not JSON: {e}") from e
    else:
        raise CorpusError(f"{path}: unknown corpus format {path.suffix!r}; use .jsonl or .csv")
    if not raw:
        raise CorpusError(f"{path}: no rows")
    rows = []
    for n, r in raw:
        r = {k: v for k, v in r.items() if v not in (None, "")}
        if "src_audio" not in r:
            raise CorpusError(f"{path}:{n}: missing column 'src_audio'")
        if "tgt_audio" not in r and "tgt_text" not in r:
            raise CorpusError(f"{path}:{n}: needs 'tgt_audio' or 'tgt_text'")
        row = {"id": str(r.get("id", f"user-{n:06d}")), "split": r.get("split", "train"),
               "src_lang": r.get("src_lang", "en"), "tgt_lang": r.get("tgt_lang", "es"),
               "src_text": r.get("src_text"), "tgt_text": r.get("tgt_text"), "tgt_audio": None}
        for key in ("src_audio", "tgt_audio"):
            if key in r:
                audio = Path(r[key]) if Path(r[key]).is_absolute() else path.parent / r[key]
                if not audio.is_file():
                    raise AudioFileError(f"{path}:{n}: {key} file {audio} does not exist")
                try:
                    sf.info(audio)
                except RuntimeError as e:
                    raise AudioFileError(f"{path}:{n}: {key} file {audio} is not readable audio: {e}") from e
                row[key] = str(audio)
        rows.append(row)
    return rows


def main(config_path: str | Path, *, out_dir: str | Path | None = None) -> Path:
    """Build the corpus of a YAML config, logging to stderr and ``out_dir/build.log``; returns the manifest."""
    raw = read_yaml_mapping(config_path, what="corpus config", error=CorpusError)
    if out_dir is not None:
        raw["out_dir"] = str(out_dir)
    cfg = CorpusConfig.from_dict(raw)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = [logging.FileHandler(Path(cfg.out_dir) / "build.log"), logging.StreamHandler()]
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    try:
        manifest = build_corpus(cfg)
        log.info("summary: %s", json.dumps({k: v for k, v in json.loads(
            (Path(cfg.out_dir) / "summary.json").read_text()).items() if k not in ("by_voice", "config")}))
        return manifest
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m streamer.train.corpus CONFIG.yaml [OUT_DIR]")
    main(sys.argv[1], out_dir=sys.argv[2] if len(sys.argv) == 3 else None)
