"""How closely does a model's vocoder, fed the true frame units, match the target voice? No judge: seconds.

The mean absolute difference of log STFT magnitudes (400-sample window, 10 ms hop) between the vocoder's audio
for a split's true frame units and the target voice's own audio (shifted by the vocoder's lookahead), over the
whole clip and over the first 160 ms of speech (onsets, where a causal vocoder knows least). Lower is closer.
`timing_ceiling.py`'s "espeak timing" row is the judge's view of the same thing.

    python benchmarks/vocoder_fit.py --config configs/train/es-en.yaml --models streamer/assets/es-en runs/x/model
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from vocoder_ceiling import split_targets

from streamer.models.checkpoint import load_model
from streamer.train.recipe import Recipe, RecipeConfig
from streamer.train.vocoder_train import stft_mag

ONSET_FRAMES = 16  # 10 ms STFT frames: 160 ms


def log_spectrum(audio: torch.Tensor) -> torch.Tensor:
    return stft_mag(audio, 400, 160).log()


def fit(model_dir: str, frames: list[np.ndarray], audios: list[np.ndarray]) -> tuple[float, float]:
    """(whole-clip, onset) log-spectral error of the model's vocoder on these frame units and their audio."""
    vocoder = load_model(model_dir).vocoder
    fs, shift = vocoder.cfg.frame_samples, vocoder.lookahead_frames * vocoder.cfg.frame_samples
    whole, onset = [], []
    for units, audio in zip(frames, audios, strict=True):
        with torch.no_grad():
            spoken = vocoder(torch.from_numpy(units).long()[None])[0]
        target = torch.from_numpy(np.concatenate([np.zeros(shift, np.float32), audio[: len(units) * fs]]))
        error = (log_spectrum(spoken) - log_spectrum(target[: len(spoken)])).abs().mean(0)
        whole.append(error.mean().item())
        first = 2 * int(np.argmax(units != vocoder.cfg.num_units)) + 2  # first speech frame, 10 ms frames
        onset.append(error[first:first + ONSET_FRAMES].mean().item())
    return float(np.mean(whole)), float(np.mean(onset))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the recipe config (its corpus and frame-unit cache)")
    p.add_argument("--models", nargs="+", required=True, help="model folders sharing that config's units")
    p.add_argument("--split", default="dev")
    p.add_argument("--n", type=int, default=120)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = RecipeConfig.from_yaml(args.config)
    recipe = Recipe(replace(cfg, train_limit=None))
    utts = split_targets(recipe, args.split, args.n)
    by_key = recipe.frame_units(utts)
    frames, audios = [by_key[u.tgt_key] for u in utts], [u.tgt for u in utts]
    print(f"Vocoder fit, {len(utts)} {args.split} targets of {args.config}: log-spectral error (lower is closer)\n")
    print("| model | whole clip | first 160 ms of speech |\n|---|---:|---:|")
    for model_dir in args.models:
        whole, onset = fit(model_dir, frames, audios)
        print(f"| {model_dir} | {whole:.3f} | {onset:.3f} |")


if __name__ == "__main__":
    main()
