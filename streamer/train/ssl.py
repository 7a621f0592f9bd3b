"""Self-supervised pretraining of the causal encoder: HuBERT-style masked prediction of cluster targets.

Iteration 1 clusters MFCCs of clean speech; the encoder sees an augmented copy of the same audio (noise,
reverb, telephone band, ... but the same timing) with spans of frames masked, and predicts the clean
frames' clusters. Targets from clean audio under an augmented input teach augmentation invariance.
Because the encoder is causal, a masked frame is predicted from its past only (predictive coding).

Iteration 2 (`teacher_layer` > 0) clusters a layer of the encoder it starts from instead of MFCCs: a frozen
copy of that encoder (the teacher) hears the clean audio and its layer features, k-means'd, are the targets.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamer.config import DictConfig
from streamer.models.encoder import CausalEncoder
from streamer.train.data import Utterance, random_crop
from streamer.train.kmeans import kmeans
from streamer.train.progress import progress
from streamer.train.targets import WARMUP_FRAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSLConfig(DictConfig):
    num_clusters: int = 100
    steps: int = 3000
    batch_size: int = 16
    crop_seconds: float = 2.0
    lr: float = 1e-3
    warmup_steps: int = 300
    mask_prob: float = 0.065   # chance that a frame starts a masked span (HuBERT)
    mask_span: int = 10
    unmasked_weight: float = 0.1
    kmeans_frames: int = 100_000
    teacher_layer: int = 0     # 0: MFCC targets (iteration 1); n: clusters of layer n of the starting encoder
    resume: bool = False       # start from the SSL encoder already saved (required for teacher_layer > 0)
    seed: int = 0


def mfcc_frames(encoder: CausalEncoder, audio: Tensor, n_mfcc: int = 13) -> Tensor:
    """Audio (B, T) -> MFCC + deltas at the 20 ms encoder frame rate, (B, T // 320, 2 * n_mfcc)."""
    with torch.no_grad():
        mel = encoder.logmel(audio[:, None])                       # (B, n_mels, T // 160)
        mel = F.avg_pool1d(mel, 2)                                 # 20 ms frames
        n_mels = mel.shape[1]
        k = torch.arange(n_mfcc, dtype=mel.dtype)[:, None]
        m = torch.arange(n_mels, dtype=mel.dtype)[None]
        dct = torch.cos(math.pi / n_mels * (m + 0.5) * k)          # DCT-II basis (n_mfcc, n_mels)
        mfcc = torch.einsum("km,bmt->btk", dct, mel)
        delta = torch.diff(mfcc, dim=1, prepend=mfcc[:, :1])
        return torch.cat([mfcc, delta], dim=-1)


class Targets:
    """Frame cluster targets of clean audio: nearest centroid of normalised MFCC or teacher-layer features."""

    def __init__(self, features: Callable[[Tensor], Tensor], clips: list[np.ndarray], cfg: SSLConfig) -> None:
        self.features = features
        x = torch.cat([features(torch.from_numpy(c[: len(c) // 320 * 320])[None])[0] for c in clips
                       if len(c) >= 320])
        self.stats = torch.stack([x.mean(0), x.std(0) + 1e-5])
        x = (x - self.stats[0]) / self.stats[1]
        if len(x) > cfg.kmeans_frames:
            x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.kmeans_frames]]
        self.centroids = kmeans(x, cfg.num_clusters, seed=cfg.seed)

    def __call__(self, clean: Tensor) -> Tensor:
        feats = (self.features(clean) - self.stats[0]) / self.stats[1]
        b, t, d = feats.shape
        return ((feats.reshape(-1, d)[:, None] - self.centroids[None]) ** 2).sum(-1).argmin(-1).view(b, t)


def teacher_features(encoder: CausalEncoder, layer: int) -> Callable[[Tensor], Tensor]:
    """Layer `layer` of a frozen copy of `encoder` on (B, T) audio, after `WARMUP_FRAMES` of silence."""
    teacher = copy.deepcopy(encoder).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    fs = encoder.cfg.frame_samples

    def features(audio: Tensor) -> Tensor:
        with torch.no_grad():
            layers = teacher(F.pad(audio, (WARMUP_FRAMES * fs, 0)), return_layers=True)
        return layers[layer - 1][:, WARMUP_FRAMES:]
    return features


def span_mask(batch: int, frames: int, cfg: SSLConfig, gen: torch.Generator) -> Tensor:
    """(B, T) bool: spans of `mask_span` frames starting with probability `mask_prob`."""
    starts = torch.rand(batch, frames, generator=gen) < cfg.mask_prob
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    for offset in range(cfg.mask_span):
        mask[:, offset:] |= starts[:, : frames - offset]
    return mask


class SSLHead(nn.Module):
    """Mask embedding and the projection from encoder features to cluster logits."""

    def __init__(self, dim: int, num_clusters: int) -> None:
        super().__init__()
        self.mask_embed = nn.Parameter(torch.randn(dim) * 0.02)
        self.proj = nn.Linear(dim, num_clusters)


def masked_forward(encoder: CausalEncoder, head: SSLHead, audio: Tensor, mask: Tensor) -> Tensor:
    x = encoder.frontend(audio)
    x = torch.where(mask[..., None], head.mask_embed.expand_as(x), x)
    return head.proj(encoder.transformer(x))


def lr_at(step: int, cfg_lr: float, warmup: int, total: int) -> float:
    if step < warmup:
        return cfg_lr * (step + 1) / warmup
    return cfg_lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pretrain(encoder: CausalEncoder, utterances: list[Utterance], cfg: SSLConfig, *,
             channel_augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
             speed_augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
             ) -> dict[str, list[float]]:
    """Pretrain `encoder` in place. Returns the loss/accuracy history (one entry per step)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    clips = [u.src for u in utterances] + [u.tgt for u in utterances[: len(utterances) // 3]]
    t0 = time.time()
    subset = rng.choice(len(clips), min(len(clips), 3000), replace=False)
    if cfg.teacher_layer:
        features, source = teacher_features(encoder, cfg.teacher_layer), f"teacher layer {cfg.teacher_layer}"
    else:
        features, source = (lambda audio: mfcc_frames(encoder, audio)), "MFCC"
    targets_of = Targets(features, [clips[i] for i in subset], cfg)
    log.info("ssl: %d %s clusters fitted in %.1f s", cfg.num_clusters, source, time.time() - t0)
    head = SSLHead(encoder.cfg.dim, cfg.num_clusters)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=0.01)
    crop = int(cfg.crop_seconds * 16_000) // 320 * 320
    history: dict[str, list[float]] = {"loss": [], "masked_acc": []}
    encoder.train()
    for step in progress(range(cfg.steps), description="ssl pretraining"):
        clean, noisy = [], []
        for i in rng.integers(0, len(clips), cfg.batch_size):
            x = random_crop(clips[i], crop, rng)
            x = speed_augment(x, rng) if speed_augment else x
            x = np.pad(x, (0, max(0, crop - len(x))))[:crop]
            clean.append(x)
            noisy.append(channel_augment(x, rng)[:crop] if channel_augment else x)
        clean_t = torch.from_numpy(np.stack(clean).astype(np.float32))
        noisy_t = torch.from_numpy(np.stack(noisy).astype(np.float32))
        targets = targets_of(clean_t)
        mask = span_mask(*targets.shape, cfg, gen)
        logits = masked_forward(encoder, head, noisy_t, mask)
        ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        loss = ce[mask].mean() + cfg.unmasked_weight * ce[~mask].mean()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        history["loss"].append(loss.item())
        history["masked_acc"].append(float((logits.argmax(-1) == targets)[mask].float().mean()))
        if step % 100 == 0:
            log.info("ssl step %d loss %.3f masked acc %.3f", step, history["loss"][-1], history["masked_acc"][-1])
    encoder.eval()
    return history
