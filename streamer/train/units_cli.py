"""`streamer units in.wav`: the discrete units of a speech file.

A model folder with k-means units (units.safetensors) gives the file's own units; one with phoneme units
(phonemes.json) gives the phonemes the model says in translation, which is what one wants to look at when
its output is hard to understand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.torch import load_file

from streamer.audio.io import read_audio
from streamer.errors import ModelError
from streamer.models.encoder import CausalEncoder, EncoderConfig
from streamer.models.units import UnitExtractor, dedup


def load_encoder(path: str | Path) -> CausalEncoder:
    """An encoder saved with its EncoderConfig in the safetensors metadata."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no SSL encoder at {path}")
    with safe_open(str(path), framework="pt") as f:
        cfg = EncoderConfig.from_dict(json.loads(f.metadata()["config"]))
    encoder = CausalEncoder(cfg)
    encoder.load_state_dict(load_file(str(path)))
    return encoder.eval()


def file_units(path: str | Path, encoder: CausalEncoder, extractor: UnitExtractor) -> tuple[np.ndarray, np.ndarray]:
    """(deduplicated units, their durations in 20 ms frames) of a speech file at any rate."""
    from streamer.train.targets import layer_features

    samples, _ = read_audio(path, sample_rate=encoder.cfg.sample_rate)
    return dedup(extractor.frame_units(layer_features(encoder, samples, extractor.cfg.layer)).numpy())


def translated_phonemes(path: str | Path, model_dir: Path) -> list[str]:
    """The phonemes a phoneme-unit model emits for a speech file, in order."""
    from streamer.pipeline import Translator
    from streamer.train.phonemes import PhonemeInventory

    names = PhonemeInventory.load(model_dir / "phonemes.json").names
    translator = Translator.from_dir(model_dir)
    samples, rate = read_audio(path)
    session = translator.translate_whole(samples, sample_rate=rate, stream_id="units")
    return [names[u] for u in session.result().units.tolist()]


def print_units(path: str | Path, *, model_dir: str | Path) -> None:
    """Print a file's units (k-means model folder) or its translation's phonemes (phoneme model folder)."""
    model_dir = Path(model_dir)
    if (model_dir / "phonemes.json").is_file():
        phonemes = translated_phonemes(path, model_dir)
        print(" ".join(phonemes))
        print(f"# {len(phonemes)} phonemes said in translation")
        return
    encoder = load_encoder(model_dir / "ssl_encoder.safetensors")
    extractor = UnitExtractor.load(model_dir / "units.safetensors")
    units, durations = file_units(path, encoder, extractor)
    print(" ".join(map(str, units.tolist())))
    print(f"# {len(units)} units over {int(durations.sum())} frames of 20 ms")
