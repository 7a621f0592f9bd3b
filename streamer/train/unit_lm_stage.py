"""The recipe's `lm` stage: a target-unit n-gram LM for the streaming CTC search, tuned on dev.

The LM is counted from the training targets (the same unit sequences CTC learns); its weight and unit
bonus are the pair with the lowest dev unit error, searched with no delay bound; the shipped setting then
adds the recipe's delay bound. Dev also holds `noise_clips` clips of pink and white noise whose reference is
nothing, so that a pair that invents units in noise pays for every one (session 16: without them, order 8
picked a unit bonus that said something in most noise clips). Writes <work_dir>/unit_lm.safetensors, which
`package` ships beside the weights. Measured: benchmarks/lm_decoding.py.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from streamer.config import DictConfig
from streamer.models.ctc_search import CTCBeamSearch, SearchConfig, save_search
from streamer.models.s2st import S2STModel
from streamer.models.unit_lm import LM_NAME, UnitLM
from streamer.models.units import unit_error_rate
from streamer.train.data import SAMPLE_RATE, length_batches, pad_batch

if TYPE_CHECKING:
    from pathlib import Path

    from streamer.train.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitLMConfig(DictConfig):
    order: int = 4
    beam: int = 8
    alphas: tuple[float, ...] = (0.3, 0.5, 0.8)   # LM weights tried on dev
    betas: tuple[float, ...] = (0.5, 1.0, 1.5)    # unit bonuses tried on dev
    max_delay_ms: int = 320                        # commit from the best hypothesis after this long undecided
    noise_clips: int = 24                          # 5 s noise clips (reference: nothing) added to dev

    @classmethod
    def from_dict(cls, d: dict) -> UnitLMConfig:
        d = dict(d)
        for key in ("alphas", "betas"):
            if key in d:
                d[key] = tuple(float(x) for x in d[key])
        return super().from_dict(d)


def slot_log_probs(model: S2STModel, clips: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip's CTC slot log-probabilities from a whole-clip forward (the streaming steps give the same)."""
    chunk, out = model.cfg.chunk_samples, {}
    slots_per_sample = model.cfg.decoder.upsample / model.cfg.encoder.frame_samples
    model.eval()
    with torch.no_grad():
        for idx in length_batches([len(c) for c in clips], max_samples=SAMPLE_RATE * 64, rng=np.random.default_rng(0)):
            audio, _ = pad_batch([clips[i] for i in idx], multiple=chunk)
            log_probs = F.log_softmax(model.decoder(model.encoder(audio)), -1).numpy()
            for row, i in enumerate(idx):
                padded = -(-len(clips[i]) // chunk) * chunk
                out[i] = log_probs[row, : int(padded * slots_per_sample)]
    return [out[i] for i in range(len(clips))]


def tune(blank: int, lm: UnitLM, log_probs: list[np.ndarray], refs: list[np.ndarray], cfg: UnitLMConfig
         ) -> tuple[SearchConfig, list[dict]]:
    """The (weight, bonus) pair with the lowest unit error over `log_probs`, and every pair's error."""
    grid = []
    for alpha, beta in itertools.product(cfg.alphas, cfg.betas):
        search = CTCBeamSearch(blank, lm, SearchConfig(beam=cfg.beam, alpha=alpha, beta=beta, max_delay_slots=None))
        uer = unit_error_rate([np.asarray(search.search(x)) for x in log_probs], refs)
        grid.append({"alpha": alpha, "beta": beta, "dev_uer": uer})
        log.info("unit LM weight %.2f bonus %.2f: dev UER %.3f", alpha, beta, uer)
    best = min(grid, key=lambda g: g["dev_uer"])
    return SearchConfig(beam=cfg.beam, alpha=best["alpha"], beta=best["beta"]), grid


def noise_clips(count: int, *, seconds: float = 5.0, seed: int = 0) -> list[np.ndarray]:
    """`count` clips of pink and white noise at -45 to -30 dBFS (seeded): inputs whose translation is nothing."""
    from streamer.train.augment import coloured_noise

    rng = np.random.default_rng([seed, 7])
    n = int(seconds * SAMPLE_RATE)
    return [(coloured_noise(n, ("pink", "white")[i % 2], rng) * 10 ** (rng.uniform(-45, -30) / 20)).astype(np.float32)
            for i in range(count)]


def run_lm_stage(recipe: Recipe, cfg: UnitLMConfig) -> Path:
    model = S2STModel(recipe.cfg.model_config())
    model.load_state_dict(load_file(str(recipe.work / "s2ut.safetensors")))
    train = recipe.data("train", src_lang=recipe.cfg.source_lang)
    lm = UnitLM.fit(recipe.target_units(train)[0], order=cfg.order, num_units=model.cfg.decoder.num_units)
    dev = recipe.data("dev", src_lang=recipe.cfg.source_lang)
    tail = int(recipe.cfg.s2ut.tail_silence_s * model.cfg.sample_rate)
    noise = noise_clips(cfg.noise_clips, seed=recipe.cfg.seed)
    log_probs = slot_log_probs(model, [np.pad(u.src, (0, tail)) for u in dev] + noise)
    refs = recipe.target_units(dev)[0] + [np.zeros(0, dtype=np.int64)] * len(noise)
    search, _ = tune(model.cfg.decoder.blank, lm, log_probs, refs, cfg)
    slot_ms = model.cfg.chunk_ms / model.cfg.max_units
    search = replace(search, max_delay_slots=max(1, round(cfg.max_delay_ms / slot_ms)))
    path = save_search(lm, search, recipe.work / LM_NAME)
    log.info("unit LM (order %d, weight %.2f, bonus %.2f) -> %s", cfg.order, search.alpha, search.beta, path)
    return path
