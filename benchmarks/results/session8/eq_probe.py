"""Session-8 probe: would removing a stationary channel help? Each test clip's long-term spectrum is set to
the training clips' mean (smoothed over ~280 Hz, within +-20 dB), then diagnosed like s2ut_diagnosis.py.

    python benchmarks/results/session8/eq_probe.py runs/s7/en-es.yaml   (a work dir with the source head)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from streamer.models.s2st import S2STModel
from streamer.train.augment import _freq_filter
from streamer.train.recipe import Recipe, RecipeConfig

N_FFT = 512
FREQS = np.fft.rfftfreq(N_FFT, 1 / 16_000)


def diagnosis_module():
    path = Path(__file__).resolve().parents[2] / "s2ut_diagnosis.py"
    spec = importlib.util.spec_from_file_location("s2ut_diagnosis", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def long_term_spectrum(x: np.ndarray) -> np.ndarray:
    """Mean log power spectrum of the clip's louder frames (speech, not its silences)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[:: N_FFT // 2] * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    loud = power.sum(1) > 1e-3 * power.sum(1).max()
    return np.log(power[loud].mean(0) + 1e-10)


def equaliser(reference: np.ndarray):
    def equalise(x: np.ndarray) -> np.ndarray:
        diff = np.convolve(np.pad(reference - long_term_spectrum(x), 4, mode="edge"), np.ones(9) / 9, "valid")
        gain = 10 ** (np.clip(diff * 10 / np.log(10), -20, 20) / 20)
        y = _freq_filter(x, lambda f: np.interp(f, FREQS, gain), 16_000)
        return (y * np.abs(x).max() / max(np.abs(y).max(), 1e-6)).astype(np.float32)
    return equalise


def main() -> None:
    diagnosis = diagnosis_module()
    torch.set_num_threads(1)
    recipe = Recipe(RecipeConfig.from_yaml(sys.argv[1]))
    model = S2STModel(recipe.cfg.model_config())
    model.load_state_dict(load_file(str(recipe.work / "s2ut.safetensors")))
    weights = load_file(str(recipe.work / "s2ut_source_head.safetensors"))
    head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
    head.load_state_dict(weights)
    train = recipe.data("train", src_lang=recipe.cfg.source_lang)
    picks = np.random.default_rng(0).choice(len(train), 400, replace=False)
    equalise = equaliser(np.mean([long_term_spectrum(train[i].src) for i in picks], axis=0))
    rows = [diagnosis.diagnose(recipe, model, head, split, 100, channel)
            for split in ("dev", "unseen_voices", "unseen_engine") for channel in (None, equalise)]
    print(diagnosis.markdown(rows, "equalised rows follow their clean rows"))


if __name__ == "__main__":
    main()
