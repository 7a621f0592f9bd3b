"""Model files: the same weights and config always give the same bytes, and load back exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from streamer.models.checkpoint import load_model, read_metadata, save_model
from streamer.models.presets import tiny_model


def test_saving_is_byte_stable_and_round_trips(tmp_path: Path) -> None:
    """safetensors writes metadata in hash-map order; ours is sorted, so SHA256SUMS stay put."""
    torch.manual_seed(0)
    model = tiny_model()
    extra = {"name": "tiny", "recipe": "\"tiny\"", "zeta": "ñandú / 1"}
    paths = [save_model(model, tmp_path / f"m{i}.safetensors", extra=extra) for i in range(6)]
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths[1:])
    meta = read_metadata(paths[0])
    assert meta["zeta"] == "ñandú / 1" and meta["name"] == "tiny"
    loaded = load_model(paths[0])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                   strict=True))
