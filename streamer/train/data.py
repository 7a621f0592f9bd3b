"""Training data in memory: utterances from a corpus manifest, padded batches, crops.

A manifest row (see streamer/train/corpus.py) has at least `id`, `split`, `src_lang`, `tgt_lang`,
`src_audio`, `tgt_audio` (paths relative to the manifest) and optionally texts and engine/voice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from streamer.audio.io import read_audio

SAMPLE_RATE = 16_000


@dataclass
class Utterance:
    id: str
    split: str
    src: np.ndarray   # (T,) float32 at 16 kHz
    tgt: np.ndarray   # (T',) float32 at 16 kHz, the fixed target voice
    src_text: str = ""
    tgt_text: str = ""
    engine: str = ""
    voice: str = ""
    category: str = ""
    tgt_key: str = ""  # identifies the target clip (its manifest path, or its text when synthesised)


def read_rows(manifest: str | Path) -> list[dict]:
    with open(manifest, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_utterances(manifest: str | Path, *, splits: set[str] | None = None, src_lang: str | None = None,
                    limit: int | None = None, seed: int = 0) -> list[Utterance]:
    """Read the rows of `splits` (all if None) and direction `src_lang` with their audio at 16 kHz."""
    root = Path(manifest).parent
    rows = [r for r in read_rows(manifest)
            if (splits is None or r["split"] in splits) and (src_lang is None or r["src_lang"] == src_lang)]
    if limit is not None and len(rows) > limit:
        idx = np.random.default_rng(seed).choice(len(rows), limit, replace=False)
        rows = [rows[i] for i in sorted(idx)]
    cache: dict[str, np.ndarray] = {}

    def audio(rel: str) -> np.ndarray:
        if rel not in cache:
            cache[rel] = read_audio(root / rel, sample_rate=SAMPLE_RATE)[0]
        return cache[rel]

    def target(r: dict) -> np.ndarray:
        if r.get("tgt_audio"):
            return audio(r["tgt_audio"])
        # A user corpus may give only the target text: speak it in the fixed target voice.
        from streamer.train.synth import synthesize, target_voice

        return synthesize(r["tgt_text"], target_voice(r["tgt_lang"]), cache_dir=root / "tts_cache")[0]

    return [Utterance(r["id"], r["split"], audio(r["src_audio"]), target(r),
                      r.get("src_text", ""), r.get("tgt_text", ""), r.get("src_engine", ""),
                      r.get("src_voice", ""), r.get("category", ""),
                      r.get("tgt_audio") or f"tts:{r['tgt_lang']}:{r.get('tgt_text', '')}") for r in rows]


def pad_batch(clips: list[np.ndarray], *, multiple: int) -> tuple[Tensor, Tensor]:
    """Right-pad clips to a common length that is a multiple of `multiple`: (B, T), lengths (B,)."""
    longest = max(len(c) for c in clips)
    total = -(-max(longest, 1) // multiple) * multiple
    out = np.zeros((len(clips), total), dtype=np.float32)
    for i, c in enumerate(clips):
        out[i, : len(c)] = c
    return torch.from_numpy(out), torch.tensor([len(c) for c in clips])


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= length:
        return x
    start = int(rng.integers(0, len(x) - length + 1))
    return x[start:start + length]


def length_batches(lengths: list[int], *, max_samples: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Batches of similar-length items whose padded size stays under `max_samples`, in random order."""
    order = np.argsort(np.asarray(lengths) + rng.uniform(0, 4000, len(lengths)))
    batches, current, longest = [], [], 0
    for i in order:
        longest_next = max(longest, lengths[i])
        if current and longest_next * (len(current) + 1) > max_samples:
            batches.append(current)
            current, longest_next = [], lengths[i]
        current.append(int(i))
        longest = longest_next
    if current:
        batches.append(current)
    for j in rng.permutation(len(batches)):
        yield batches[j]


def maybe_augment(augment: Callable | None, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if augment is None:
        return x
    y = augment(x, rng)
    return np.asarray(y, dtype=np.float32)
