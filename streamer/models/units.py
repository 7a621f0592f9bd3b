"""Discrete units: nearest k-means centroid of encoder features, consecutive duplicates merged."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from streamer.errors import ModelError


def assign(x: Tensor, centroids: Tensor, *, block: int = 65536) -> Tensor:
    """Nearest centroid per row: x (N, D), centroids (K, D) -> (N,) int64."""
    c2 = (centroids ** 2).sum(1)
    out = [(c2[None] - 2 * piece @ centroids.T).argmin(1) for piece in x.split(block)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@dataclass(frozen=True)
class UnitConfig:
    num_units: int = 100
    layer: int = 4  # encoder transformer layer (1-based) whose output is clustered
    kind: str = "ssl"  # "ssl": k-means of SSL features; "phoneme": the espeak target voice's phonemes

    def __post_init__(self) -> None:
        if self.kind not in ("ssl", "phoneme"):
            raise ModelError(f"units.kind must be 'ssl' or 'phoneme', not {self.kind!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class UnitExtractor:
    """Encoder features (T, D) -> frame units (T,) by nearest centroid."""

    def __init__(self, centroids: Tensor, cfg: UnitConfig) -> None:
        if centroids.shape[0] != cfg.num_units:
            raise ModelError(f"{centroids.shape[0]} centroids but num_units={cfg.num_units}")
        self.centroids, self.cfg = centroids.float(), cfg

    def frame_units(self, feats: Tensor) -> Tensor:
        """Features of layer `cfg.layer`, (T, D) -> (T,) int64 unit per 20 ms frame."""
        return assign(feats, self.centroids)

    def save(self, path: str | Path) -> None:
        save_file({"centroids": self.centroids.contiguous()}, str(path),
                  metadata={"config": json.dumps(self.cfg.to_dict())})

    @classmethod
    def load(cls, path: str | Path) -> UnitExtractor:
        with safe_open(str(path), framework="pt") as f:
            cfg = UnitConfig(**json.loads(f.metadata()["config"]))
            return cls(f.get_tensor("centroids"), cfg)


def dedup(frame_units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,) frame units -> (units with consecutive duplicates merged, their durations in frames)."""
    if len(frame_units) == 0:
        return frame_units.astype(np.int64), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(np.diff(frame_units)) + 1
    starts = np.concatenate([[0], change])
    durations = np.diff(np.concatenate([starts, [len(frame_units)]]))
    return frame_units[starts].astype(np.int64), durations.astype(np.int64)


def silent_units(frame_units: list[np.ndarray], audios: list[np.ndarray], num_units: int, *,
                 frame_samples: int = 320, threshold_db: float = -40.0, min_share: float = 0.5) -> np.ndarray:
    """Ids of the units that mostly label silence: over `min_share` of their frames below `threshold_db`.

    frame_units[i] (T_i,) labels the 20 ms frames of audios[i] (zero-padded to T_i * frame_samples samples).
    """
    silent, total = np.zeros(num_units), np.zeros(num_units)
    for units, audio in zip(frame_units, audios, strict=True):
        n = len(units) * frame_samples
        frames = np.pad(audio[:n], (0, max(0, n - len(audio)))).reshape(-1, frame_samples)
        db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        np.add.at(total, units[: len(frames)], 1)
        np.add.at(silent, units[: len(frames)], db < threshold_db)
    return np.flatnonzero((total > 0) & (silent > min_share * total))


def edit_ops(hyp: np.ndarray | list, ref: np.ndarray | list) -> tuple[int, int, int]:
    """Levenshtein alignment of `hyp` to `ref`: (substitutions, deletions, insertions) of one best path."""
    ref, hyp = np.asarray(ref).tolist(), np.asarray(hyp).tolist()  # Python values compare faster than numpy scalars
    n, m = len(ref), len(hyp)
    cost = [list(range(m + 1))] + [[i] + [0] * m for i in range(1, n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    subs = dels = ins = 0
    i, j = n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            subs += int(ref[i - 1] != hyp[j - 1])
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            dels, i = dels + 1, i - 1
        else:
            ins, j = ins + 1, j - 1
    return subs, dels, ins


def edit_distance(a: np.ndarray | list, b: np.ndarray | list) -> int:
    """Levenshtein distance between two sequences."""
    return sum(edit_ops(a, b))


def unit_error_rate(hyps: list, refs: list) -> float:
    """Total edit distance over total reference length."""
    total = sum(len(r) for r in refs)
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / max(total, 1)


__all__ = ["UnitConfig", "UnitExtractor", "dedup", "edit_distance", "edit_ops", "unit_error_rate"]
