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


def context_durations(frame_units: list[np.ndarray], num_units: int, context: int, *,
                      min_count: int = 5) -> torch.Tensor:
    """The queue's duration table (`QueueConfig.table_size`): the mean run length of each unit after each
    run of `context` previous units (num_units before the start), flattened oldest context first. A context
    seen fewer than `min_count` times backs off to the shorter one; context 0 is `unit_durations`."""
    shape = (num_units + 1,) * context + (num_units,)
    total, count = np.zeros((context + 1, *shape)), np.zeros((context + 1, *shape))
    for fu in frame_units:
        units, durations = dedup(fu)
        padded = np.concatenate([np.full(context, num_units), units])
        for n in range(context + 1):  # level n: the last n previous units, the older ones set to "none"
            keys = [np.full(len(units), num_units)] * (context - n)
            keys += [padded[context - j:context - j + len(units)] for j in range(n, 0, -1)]
            np.add.at(total[n], (*keys, units), durations)
            np.add.at(count[n], (*keys, units), 1)
    table = np.ones(shape)
    for n in range(context + 1):  # shortest context first, each longer one overriding where seen enough
        level = total[n] / np.maximum(count[n], 1)
        seen = count[n] >= (min_count if n else 1)
        if n < context:  # a shorter context's mean applies to every longer context that ends in it
            level = np.broadcast_to(level[(num_units,) * (context - n)], shape)
            seen = np.broadcast_to(seen[(num_units,) * (context - n)], shape)
        table = np.where(seen, level, table)
    return torch.from_numpy(table.reshape(-1).astype(np.float32))


def unit_durations(frame_units: list[np.ndarray], num_units: int) -> torch.Tensor:
    """Mean run length (frames) of each unit in target speech; 1 for units never seen."""
    return context_durations(frame_units, num_units, 0)
