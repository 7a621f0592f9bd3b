"""Speech-to-unit translation training: encoder (SSL-initialised) + incremental decoder, CTC loss.

Source speech (augmented on the fly) -> target units (k-means of the target voice, duplicates merged).
The CTC alignment is free, so the decoder learns *when* it has heard enough to emit each unit; the
causal encoder and decoder mean that the trained graph is the streaming graph, no retraining.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamer.config import DictConfig
from streamer.models.decoder import ctc_emit
from streamer.models.s2st import S2STModel
from streamer.models.units import unit_error_rate
from streamer.train.augment import background
from streamer.train.data import Utterance, length_batches, pad_batch
from streamer.train.progress import progress
from streamer.train.soup import check_soup_changes
from streamer.train.ssl import lr_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S2UTConfig(DictConfig):
    epochs: int = 10
    max_steps: int | None = None          # cap on optimiser steps (the LR schedule spans min(total, cap))
    stop_step: int | None = None          # end here although the schedule runs on (a run cut short, on record)
    max_batch_samples: int = 16_000 * 48  # padded audio per batch (48 s)
    lr: float = 1e-3
    encoder_lr_scale: float = 0.5         # the pretrained encoder moves slower
    warmup_steps: int = 300
    augment_prob: float = 0.8
    resume: bool = False                  # start from the stage's last checkpoint when there is one
    source_ctc_weight: float = 0.0        # auxiliary CTC of the source phonemes on the encoder (training only)
    # Silence after every clip, as the flush gives at run time: room to say the end of the translation
    # after the last source word is heard (its CTC slots would otherwise lie before the evidence).
    tail_silence_s: float = 0.64
    # Share of training clips swapped for background noise (augment.background, then augmented like speech)
    # whose target is nothing: noise and silence in must give silence out, and speech-only training never
    # shows the model a long stretch of noise (session 16: en-es said units in 27 of 36 noise clips).
    noise_only_prob: float = 0.0
    # Decoder depth for this phase (None: the recipe's decoder.num_layers). A deeper phase after a shallower
    # one adds identity blocks on top (streamer/train/grow.py), so a trained model can be deepened.
    decoder_layers: int | None = None
    # This phase's changes to the recipe's `augment` settings (e.g. {p_narrowband: 0.3}), so that one config
    # records a model whose phases were trained under different augmentation.
    augment: dict | None = None
    seed: int = 0
    # Other settings to run this phase with, from the same start (each a mapping of changes); the phase ends
    # as the average of all its runs' weights, a model soup (streamer/train/soup.py).
    soup: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "soup", tuple(self.soup or ()))
        check_soup_changes(self.soup, {f.name for f in fields(self)})

    def soup_runs(self) -> list[S2UTConfig]:
        """This phase's training runs: itself as written, then one per `soup` entry (its changes on top)."""
        base = replace(self, soup=())
        return [base, *(replace(base, **changes) for changes in self.soup)]


def greedy_units(logits: Tensor, blank: int) -> list[np.ndarray]:
    """CTC logits (B, S, K+1) -> per-utterance emitted units."""
    tokens = logits.argmax(-1)
    start = torch.full((tokens.shape[0],), blank, dtype=torch.long)
    units, _ = ctc_emit(tokens, start, blank)
    return [u[u >= 0].numpy() for u in units]


def ctc(logits: Tensor, slots: Tensor, targets: list[np.ndarray], blank: int) -> Tensor:
    """Mean CTC loss of logits (B, S, V) with `slots` (B,) valid positions each."""
    flat = torch.from_numpy(np.concatenate(targets)).long()
    target_lengths = torch.tensor([len(t) for t in targets])
    log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)  # (S, B, V)
    return F.ctc_loss(log_probs, flat, slots.clamp(max=logits.shape[1]), target_lengths, blank=blank,
                      zero_infinity=True)


@dataclass
class SourceTask:
    """Auxiliary task: the encoder also spells the source phonemes (CTC through `head`, blank = last id)."""

    head: torch.nn.Linear
    targets: list[np.ndarray]   # per training utterance, source phoneme ids
    weight: float


def batch_loss(model: S2STModel, audio: Tensor, lengths: Tensor, targets: list[np.ndarray],
               source: tuple[SourceTask, list[np.ndarray]] | None = None) -> Tensor:
    cfg = model.cfg
    frames = torch.div(lengths, cfg.encoder.frame_samples, rounding_mode="floor")
    encoded = model.encoder(audio)
    loss = ctc(model.decoder(encoded), frames * cfg.decoder.upsample, targets, cfg.decoder.blank)
    if source is not None:
        task, source_targets = source
        loss = loss + task.weight * ctc(task.head(encoded), frames, source_targets, task.head.out_features - 1)
    return loss


def decode(model: S2STModel, utterances: list[Utterance], *, tail_samples: int = 0,
           source_head: torch.nn.Linear | None = None, batch_samples: int = 16_000 * 64
           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Greedy CTC units of each utterance's clean source audio (+ `tail_samples` of silence), in order;
    and, given the training-only `source_head`, the source phonemes it spells (else an empty list)."""
    model.eval()
    units: dict[int, np.ndarray] = {}
    spelled: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for idx in length_batches([len(u.src) for u in utterances], max_samples=batch_samples, rng=rng):
            clips = [np.pad(utterances[i].src, (0, tail_samples)) for i in idx]
            audio, _ = pad_batch(clips, multiple=model.cfg.chunk_samples)
            encoded = model.encoder(audio)
            units.update(zip(idx, greedy_units(model.decoder(encoded), model.cfg.decoder.blank), strict=True))
            if source_head is not None:
                spelled.update(zip(idx, greedy_units(source_head(encoded), source_head.out_features - 1),
                                   strict=True))
    order = range(len(utterances))
    return [units[i] for i in order], [spelled[i] for i in order] if spelled else []


def evaluate(model: S2STModel, utterances: list[Utterance], targets: list[np.ndarray],
             *, batch_samples: int = 16_000 * 64, tail_samples: int = 0) -> float:
    """Unit error rate of greedy decoding on clean source audio (+ `tail_samples` of silence)."""
    hyps, _ = decode(model, utterances, tail_samples=tail_samples, batch_samples=batch_samples)
    return unit_error_rate(hyps, targets)


def swap_in_noise(clips: list[np.ndarray], targets: list[np.ndarray], aux_targets: list[np.ndarray] | None,
                  prob: float, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """Each clip, with probability `prob`, becomes background noise of its length with empty targets.
    With `prob` 0 nothing is drawn from `rng`, so that configs from before this option train as they did."""
    if prob <= 0:
        return clips, targets, aux_targets
    empty = np.zeros(0, dtype=np.int64)
    clips, targets = list(clips), list(targets)
    aux = list(aux_targets) if aux_targets is not None else None
    for i, clip in enumerate(clips):
        if rng.random() < prob:
            clips[i], targets[i] = background(len(clip), rng), empty
            if aux is not None:
                aux[i] = empty
    return clips, targets, aux


def train(model: S2STModel, train_set: list[Utterance], train_targets: list[np.ndarray], cfg: S2UTConfig, *,
          dev_set: list[Utterance] | None = None, dev_targets: list[np.ndarray] | None = None,
          augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
          checkpoint: Callable[[dict[str, list[float]]], None] | None = None, source: SourceTask | None = None
          ) -> dict[str, list[float]]:
    """Train encoder + decoder in place with CTC. Returns history: loss per step, dev UER per epoch.

    `checkpoint(history)` runs after every epoch with the history so far, so a run cut short keeps its curve.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [{"params": enc_params, "scale": cfg.encoder_lr_scale},
              {"params": list(model.decoder.parameters()), "scale": 1.0}]
    if source is not None:
        groups.append({"params": list(source.head.parameters()), "scale": 1.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.01)
    lengths = [len(u.src) for u in train_set]
    steps_per_epoch = sum(1 for _ in length_batches(lengths, max_samples=cfg.max_batch_samples, rng=rng))
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    stop = total if cfg.stop_step is None else min(total, cfg.stop_step)
    history: dict[str, list[float]] = {"loss": [], "dev_uer": []}
    tail = int(cfg.tail_silence_s * model.cfg.sample_rate)
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        batches = list(length_batches(lengths, max_samples=cfg.max_batch_samples, rng=rng))
        if step >= stop:
            break
        for idx in progress(batches, description=f"s2ut epoch {epoch + 1}/{cfg.epochs}"):
            if step >= stop:
                break
            clips = [train_set[i].src for i in idx]
            targets = [train_targets[i] for i in idx]
            aux_targets = [source.targets[i] for i in idx] if source is not None else None
            clips, targets, aux_targets = swap_in_noise(clips, targets, aux_targets, cfg.noise_only_prob, rng)
            if augment is not None:
                clips = [augment(c, rng) if rng.random() < cfg.augment_prob else c for c in clips]
            clips = [np.pad(c, (0, tail)) for c in clips]
            audio, lens = pad_batch(clips, multiple=model.cfg.chunk_samples)
            aux = (source, aux_targets) if source is not None and aux_targets is not None else None
            loss = batch_loss(model, audio, lens, targets, aux)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, total) * group["scale"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            history["loss"].append(loss.item())
            step += 1
            if step % 50 == 0:
                log.info("s2ut step %d/%d loss %.3f", step, total, loss.item())
        if dev_set:
            uer = evaluate(model, dev_set, dev_targets or [], tail_samples=tail)
            history["dev_uer"].append(uer)
            log.info("s2ut epoch %d dev UER %.3f", epoch + 1, uer)
        if checkpoint is not None:
            model.eval()
            checkpoint(history)
    model.eval()
    return history
