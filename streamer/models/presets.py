"""Named model sizes. `tiny` is for tests (trains in seconds); `small` is the shipped default."""

from __future__ import annotations

import torch

from streamer.models.decoder import DecoderConfig
from streamer.models.encoder import EncoderConfig
from streamer.models.pacing import QueueConfig
from streamer.models.s2st import S2STConfig, S2STModel
from streamer.models.vocoder import VocoderConfig


def tiny_config(num_units: int = 12) -> S2STConfig:
    return S2STConfig(
        encoder=EncoderConfig(n_mels=16, dim=16, num_heads=2, num_layers=2, context_frames=12, dropout=0.0),
        decoder=DecoderConfig(input_dim=16, dim=16, num_heads=2, num_layers=1, context_frames=12,
                              num_units=num_units, dropout=0.0),
        queue=QueueConfig(num_units=num_units, capacity_frames=32, backlog_frames=12),
        vocoder=VocoderConfig(num_units=num_units, dim=16, num_blocks=2),
    )


def tiny_model(seed: int = 0) -> S2STModel:
    """A seeded, untrained tiny model: for tests of plumbing (backends, batching, transport)."""
    torch.manual_seed(seed)
    model = S2STModel(tiny_config()).eval()
    model.queue.durations.copy_(1 + torch.arange(model.cfg.queue.num_units) % 3)  # 1-3 frame units
    return model
