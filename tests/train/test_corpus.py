"""Corpus building: the tiny corpus builds in seconds, rows are valid, splits hold what they promise."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml

from streamer.errors import AudioFileError
from streamer.train import grammar, synth
from streamer.train.corpus import (
    ROW_KEYS,
    CorpusConfig,
    CorpusError,
    build_corpus,
    load_manifest,
    load_user_corpus,
    main,
    plan_rows,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "corpus"


def _cfg(name: str, **overrides: Any) -> CorpusConfig:
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    raw.update(overrides)
    return CorpusConfig.from_dict(raw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    if "espeak-ng" not in synth.available_engines():
        pytest.skip("espeak-ng is not installed here")
    out = tmp_path_factory.mktemp("tiny")
    t0 = time.monotonic()
    manifest = main(CONFIGS / "tiny.yaml", out_dir=out)
    return manifest, time.monotonic() - t0


def _by_direction(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[f"{r['src_lang']}-{r['tgt_lang']}"].append(r)
    return out


def test_tiny_builds_in_seconds(tiny: tuple[Path, float]) -> None:
    manifest, seconds = tiny
    assert manifest.name == "manifest.jsonl" and manifest.is_file()
    assert seconds < 60
    assert (manifest.parent / "build.log").read_text().count("wrote") == 1
    summary = json.loads((manifest.parent / "summary.json").read_text())
    assert summary["rows"] == len(load_manifest(manifest)) > 24


def test_manifest_rows_are_valid(tiny: tuple[Path, float]) -> None:
    manifest, _ = tiny
    raw = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len({r["id"] for r in raw}) == len(raw)
    for r in raw:
        assert set(ROW_KEYS) <= set(r)
        assert not Path(r["src_audio"]).is_absolute() and not Path(r["tgt_audio"]).is_absolute()
        assert (r["src_lang"], r["tgt_lang"]) in {("en", "es"), ("es", "en")}
        assert r["src_text"] and r["tgt_text"] and r["src_engine"] == "espeak-ng"
    tgt_paths: dict[str, set[str]] = defaultdict(set)
    for r in load_manifest(manifest):
        for key in ("src_audio", "tgt_audio"):
            audio, sr = sf.read(r[key], dtype="float32")
            assert sr == 16_000 and audio.ndim == 1 and 0.2 < len(audio) / sr < 5
            assert np.sqrt(np.mean(audio**2)) > 0.02
        tgt_paths[r["tgt_text"]].add(r["tgt_audio"])
    assert all(len(p) == 1 for p in tgt_paths.values())  # one fixed target voice
    assert len(load_manifest(manifest, split="digits")) == 30


def test_tiny_splits_are_as_specified(tiny: tuple[Path, float]) -> None:
    rows = load_manifest(tiny[0])
    cfg = _cfg("tiny")
    held = dict(cfg.held_out_voices)["espeak-ng"]
    for direction, mine in _by_direction(rows).items():
        splits = {r["split"] for r in mine}
        assert splits == {"train", "dev", "unseen_voices", "unseen_sentences", "digits"}, direction
        train_voices = {r["src_voice"] for r in mine if r["split"] == "train"}
        for r in mine:
            is_held = any(r["src_voice"] == s or r["src_voice"].endswith(s) or r["src_voice"].split("+")[0] == s
                          for s in held)
            assert is_held == (r["split"] in ("unseen_voices", "digits")), r
        assert not train_voices & {r["src_voice"] for r in mine if r["split"] == "unseen_voices"}
        digits = [r for r in mine if r["split"] == "digits"]
        assert sorted({r["src_text"] for r in digits}) == sorted(p.text(mine[0]["src_lang"])
                                                                 for p in grammar.digit_pairs())


def _check_unseen_sentences(rows: list[dict[str, Any]]) -> None:
    for direction, mine in _by_direction(rows).items():
        train = [r for r in mine if r["split"] == "train"]
        texts = {r["src_text"] for r in train} | {r["tgt_text"] for r in train}
        vocab = {w for r in train for w in grammar.words(r["src_text"]) + grammar.words(r["tgt_text"])}
        unseen = [r for r in mine if r["split"] == "unseen_sentences"]
        assert unseen, direction
        for r in unseen:
            assert r["src_text"] not in texts and r["tgt_text"] not in texts, r
            assert set(grammar.words(r["src_text"]) + grammar.words(r["tgt_text"])) <= vocab, r


def test_unseen_sentences_are_new_combinations_of_train_words(tiny: tuple[Path, float]) -> None:
    _check_unseen_sentences(load_manifest(tiny[0]))


def test_default_plan_holds_out_combinations_engine_and_voices() -> None:
    rows = plan_rows(_cfg("default"))
    flat = [{**r, "src_engine": r["voice"].engine, "src_voice": r["voice"].name} for r in rows]
    _check_unseen_sentences(flat)
    en = [r for r in flat if r["src_lang"] == "en"]
    if "flite" in synth.available_engines():
        assert all(r["src_engine"] == "flite" for r in en if r["split"] in ("unseen_engine", "digits"))
        assert {r["split"] for r in en if r["src_engine"] == "flite"} == {"unseen_engine", "digits"}
        digit_voices = defaultdict(set)
        for r in en:
            if r["split"] == "digits":
                digit_voices[r["src_text"]].add(r["src_voice"])
        assert len(digit_voices) == 10 and all(len(v) >= 3 for v in digit_voices.values())
    es = [r for r in flat if r["src_lang"] == "es"]
    assert {r["src_engine"] for r in es} == {"espeak-ng"}
    assert not any(r["split"] == "unseen_engine" for r in es)
    train_engines = {r["src_engine"] for r in en if r["split"] == "train"}
    assert "espeak-ng" in train_engines and "flite" not in train_engines
    for engine in train_engines & {"espeak-ng", "festival"}:
        train_v = {r["src_voice"] for r in en if r["split"] == "train" and r["src_engine"] == engine}
        held_v = {r["src_voice"] for r in en if r["split"] == "unseen_voices" and r["src_engine"] == engine}
        assert held_v and not held_v & train_v, engine


def test_large_corpus_adds_training_rows_only() -> None:
    """configs/corpus/large.yaml (session 7) differs from the default only in its en->es training rows, so
    models trained on either are judged on the same held-out rows; its training rows never hold a test text."""
    default, large = plan_rows(_cfg("default")), plan_rows(_cfg("large"))

    def held_out(rows: list[dict[str, Any]]) -> list[tuple[str, str, synth.Voice]]:
        return [(r["id"], r["src_text"], r["voice"]) for r in rows if r["split"] != "train"]

    def en_train_texts(rows: list[dict[str, Any]]) -> set[str]:
        return {r["src_text"] for r in rows if r["split"] == "train" and r["src_lang"] == "en"}

    assert held_out(large) == held_out(default)
    assert len(en_train_texts(large)) > 1.5 * len(en_train_texts(default))
    test_texts = {r["src_text"] for r in large if r["split"] in ("dev", "unseen_sentences")}
    assert not test_texts & en_train_texts(large)


def test_plan_is_deterministic() -> None:
    cfg = _cfg("tiny")
    assert plan_rows(cfg) == plan_rows(cfg)
    other = plan_rows(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert [r["voice"] for r in other] != [r["voice"] for r in plan_rows(cfg)]


def test_missing_engines_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "available_engines", lambda: frozenset({"espeak-ng"}))
    synth.engine_voices.cache_clear()
    try:
        rows = plan_rows(_cfg("default"))
    finally:
        synth.engine_voices.cache_clear()
    assert {r["voice"].engine for r in rows} == {"espeak-ng"}
    assert not any(r["split"] == "unseen_engine" for r in rows)


def test_config_errors() -> None:
    with pytest.raises(CorpusError, match="unknown keys"):
        CorpusConfig.from_dict({"out_dir": "x", "sead": 1})
    with pytest.raises(CorpusError, match="directions"):
        CorpusConfig.from_dict({"out_dir": "x", "directions": {"en-fr": {}}})
    with pytest.raises(CorpusError, match="unknown keys"):
        CorpusConfig.from_dict({"out_dir": "x", "directions": {"en-es": {"trian": 3}}})


def _wav(path: Path) -> Path:
    sf.write(path, np.zeros(1600, dtype=np.float32), 16_000)
    return path


def test_user_corpus_jsonl_and_csv(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav")
    (tmp_path / "c.jsonl").write_text(json.dumps({"src_audio": "a.wav", "tgt_audio": "b.wav"}) + "\n\n"
                                      + json.dumps({"src_audio": "a.wav", "tgt_text": "hola", "split": "dev"}))
    rows = load_user_corpus(tmp_path / "c.jsonl")
    assert [r["split"] for r in rows] == ["train", "dev"]
    assert rows[0]["src_audio"] == str(tmp_path / "a.wav") and rows[1]["tgt_audio"] is None
    with (tmp_path / "c.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["src_audio", "src_text", "tgt_text"])
        w.writeheader()
        w.writerow({"src_audio": str(tmp_path / "a.wav"), "src_text": "hello", "tgt_text": "hola"})
    assert load_user_corpus(tmp_path / "c.csv")[0]["tgt_text"] == "hola"


@pytest.mark.parametrize(("content", "error", "match"), [
    ({"tgt_text": "hola"}, CorpusError, "missing column 'src_audio'"),
    ({"src_audio": "a.wav"}, CorpusError, "needs 'tgt_audio' or 'tgt_text'"),
    ({"src_audio": "nope.wav", "tgt_text": "hola"}, AudioFileError, "does not exist"),
    ({"src_audio": "a.wav", "tgt_audio": "junk.wav"}, AudioFileError, "not readable audio"),
])
def test_user_corpus_errors(tmp_path: Path, content: dict[str, str], error: type, match: str) -> None:
    _wav(tmp_path / "a.wav")
    (tmp_path / "junk.wav").write_text("not audio")
    (tmp_path / "c.jsonl").write_text(json.dumps(content) + "\n")
    with pytest.raises(error, match=match):
        load_user_corpus(tmp_path / "c.jsonl")


def test_user_corpus_format_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_user_corpus(tmp_path / "none.jsonl")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(CorpusError, match="unknown corpus format"):
        load_user_corpus(tmp_path / "c.txt")
    (tmp_path / "c.jsonl").write_text("{bad json\n")
    with pytest.raises(CorpusError, match="not JSON"):
        load_user_corpus(tmp_path / "c.jsonl")
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(CorpusError, match="no rows"):
        load_user_corpus(tmp_path / "e.jsonl")


def test_load_manifest_rejects_rows_without_keys(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"id": "x", "split": "train"}) + "\n")
    with pytest.raises(CorpusError, match="lacks"):
        load_manifest(tmp_path / "manifest.jsonl")


def test_build_without_target_engine_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "available_engines", lambda: frozenset())
    with pytest.raises(synth.EngineUnavailableError, match="espeak-ng"):
        build_corpus(_cfg("tiny", out_dir=str(tmp_path)))
