"""Training targets from a corpus's target clips: frame phonemes of the espeak target voice, SSL layer
features (for k-means units), and each unit's mean duration (the queue's table)."""

from __future__ import annotations

import numpy as np
import torch

from streamer.errors import StreamerError
from streamer.models.encoder import CausalEncoder
from streamer.models.units import dedup
from streamer.train.data import Utterance


def unique_targets(utterances: list[Utterance]) -> dict[str, np.ndarray]:
    return {u.tgt_key: u.tgt for u in utterances}


def phoneme_labels(utterances: list[Utterance], lang: str, frame_samples: int) -> dict[str, list[str]]:
    """Frame phonemes of each distinct target clip, which must be the espeak target voice speaking its text."""
    from streamer.train import synth
    from streamer.train.phonemes import MismatchError, frame_phonemes

    voice = synth.target_voice(lang)
    labels: dict[str, list[str]] = {}
    for u in utterances:
        if u.tgt_key in labels:
            continue
        if not u.tgt_text:
            raise StreamerError(f"{u.id}: phoneme units need the target text; use units.kind: ssl for this corpus")
        try:
            labels[u.tgt_key] = frame_phonemes(u.tgt_text, voice, frame_samples=frame_samples,
                                               num_frames=-(-len(u.tgt) // frame_samples))
        except MismatchError as e:
            raise StreamerError(f"{u.id}: {e}; phoneme units need targets in the target voice (or tgt_text "
                                "alone); use units.kind: ssl for recorded targets") from e
    return labels


WARMUP_FRAMES = 25  # 0.5 s of silence before a clip, dropped after encoding


def layer_features(encoder: CausalEncoder, audio: np.ndarray, layer: int) -> torch.Tensor:
    """Encoder layer output for one clip: (ceil(T / 320), D), the clip zero-padded to a whole frame.

    The causal encoder first hears `WARMUP_FRAMES` of silence, whose outputs are dropped: otherwise its
    start-of-stream transient gives every clip the same first units, and a decoder trained on them learns
    to say them at every stream start, whatever it hears.
    """
    fs = encoder.cfg.frame_samples
    padded = np.pad(audio, (WARMUP_FRAMES * fs, -len(audio) % fs))
    with torch.no_grad():
        layers = encoder(torch.from_numpy(padded.astype(np.float32))[None], return_layers=True)
    return layers[layer - 1][0, WARMUP_FRAMES:]


def unit_durations(frame_units: list[np.ndarray], num_units: int) -> torch.Tensor:
    """Mean run length (frames) of each unit in target speech; 1 for units never seen."""
    total, count = np.zeros(num_units), np.zeros(num_units)
    for fu in frame_units:
        units, durations = dedup(fu)
        np.add.at(total, units, durations)
        np.add.at(count, units, 1)
    return torch.from_numpy(np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32))
