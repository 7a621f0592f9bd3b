"""Train the streaming unit vocoder on the target voice: frame units -> waveform.

Loss: multi-resolution STFT (spectral convergence + log magnitude) and a waveform-domain L1 to anchor
phase. No discriminator: it keeps CPU training short; the price is some buzz (see the model card).
The target is the voice's audio shifted by the vocoder's declared lookahead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamer.config import DictConfig
from streamer.models.vocoder import UnitVocoder
from streamer.train.progress import progress
from streamer.train.ssl import lr_at

log = logging.getLogger(__name__)

RESOLUTIONS = ((512, 128), (1024, 256), (256, 64), (128, 32))


@dataclass(frozen=True)
class VocoderTrainConfig(DictConfig):
    steps: int = 3000
    batch_size: int = 16
    crop_frames: int = 50
    warm_frames: int = 6       # loss ignored while a crop's causal receptive field fills
    silence_prob: float = 0.3  # add a run of silence-id frames with zero audio
    lr: float = 2e-3
    warmup_steps: int = 200
    wave_l1_weight: float = 1.0
    resume: bool = False       # start from the stage's last checkpoint when there is one
    seed: int = 0


def stft_mag(x: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, device=x.device)
    return torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-5)


def multires_stft_loss(pred: Tensor, target: Tensor) -> Tensor:
    total = pred.new_zeros(())
    for n_fft, hop in RESOLUTIONS:
        p, t = stft_mag(pred, n_fft, hop), stft_mag(target, n_fft, hop)
        sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-5)
        total = total + sc + (p.log() - t.log()).abs().mean()
    return total / len(RESOLUTIONS)


def make_crop(units: np.ndarray, audio: np.ndarray, vocoder: UnitVocoder, cfg: VocoderTrainConfig,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """A crop of `crop_frames` unit frames and the audio the vocoder should produce for them.

    Returns (frames (F,), audio (F * frame_samples,), first frame counted in the loss).
    """
    fs, la, n = vocoder.cfg.frame_samples, vocoder.lookahead_frames, cfg.crop_frames
    silence = vocoder.cfg.num_units
    padded_units = np.concatenate([units, np.full(n, silence)])
    padded_audio = np.concatenate([audio, np.zeros(n * fs + la * fs, dtype=np.float32)])
    from_start = rng.random() < 0.3 or len(units) <= n
    start = 0 if from_start else int(rng.integers(0, len(units) - n + 1))
    frames = padded_units[start:start + n].copy()
    lo = (start - la) * fs
    target = np.concatenate([np.zeros(max(0, -lo), dtype=np.float32), padded_audio[max(lo, 0):lo + n * fs]])
    if rng.random() < cfg.silence_prob:  # a run of the silence id: the vocoder must output silence
        k = int(rng.integers(2, n // 2))
        frames[-k:] = silence
        target[(n - k + la) * fs:] = 0.0
    return frames, target[: n * fs], 0 if from_start else cfg.warm_frames


def train(vocoder: UnitVocoder, frame_units: list[np.ndarray], audios: list[np.ndarray],
          cfg: VocoderTrainConfig, *, checkpoint: Callable[[int], None] | None = None,
          checkpoint_every: int = 500) -> dict[str, list[float]]:
    """Train in place on (frame units (T,), audio (T * frame_samples,)) pairs of the target voice.

    `checkpoint(step)` is called every `checkpoint_every` steps (the caller saves what it needs).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(vocoder.parameters(), lr=cfg.lr, weight_decay=0.0)
    fs = vocoder.cfg.frame_samples
    history: dict[str, list[float]] = {"loss": []}
    vocoder.train()
    for step in progress(range(cfg.steps), description="vocoder training"):
        crops = [make_crop(frame_units[i], audios[i], vocoder, cfg, rng)
                 for i in rng.integers(0, len(audios), cfg.batch_size)]
        frames = torch.from_numpy(np.stack([c[0] for c in crops])).long()
        target = torch.from_numpy(np.stack([c[1] for c in crops]))
        pred = vocoder(frames)
        skip = max(c[2] for c in crops) * fs
        pred, target = pred[:, skip:], target[:, skip:]
        loss = multires_stft_loss(pred, target) + cfg.wave_l1_weight * (pred - target).abs().mean()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vocoder.parameters(), 5.0)
        opt.step()
        history["loss"].append(loss.item())
        if step % 100 == 0:
            log.info("vocoder step %d loss %.4f", step, loss.item())
        if checkpoint is not None and step and step % checkpoint_every == 0:
            vocoder.eval()
            checkpoint(step)
            vocoder.train()
    vocoder.eval()
    return history
