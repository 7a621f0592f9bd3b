"""Tiny golden model (moshi style): stored weights, input and outputs; the step graph must reproduce them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from streamer.models.s2st import S2STConfig, S2STModel

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "s2st_golden.safetensors"


def test_golden_model_streaming_reproduces_stored_outputs() -> None:
    with safe_open(str(GOLDEN), framework="pt") as f:
        cfg = S2STConfig.from_dict(json.loads(f.metadata()["config"]))
    tensors = load_file(str(GOLDEN))
    model = S2STModel(cfg).eval()
    missing, unexpected = model.load_state_dict(
        {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    assert sorted(missing) == ["encoder.logmel.fbank", "encoder.logmel.stft.conv.weight"] and not unexpected
    audio = tensors["input.audio"]
    state, outs, units = model.init_state(1), [], []
    with torch.no_grad():
        for chunk in audio.split(cfg.chunk_samples, dim=1):
            out, u, state = model.step(chunk, state)
            outs.append(out)
            units.append(u)
    torch.testing.assert_close(torch.cat(outs, 1), tensors["output.audio"], atol=1e-5, rtol=1e-4)
    assert torch.equal(torch.cat(units, 1), tensors["output.units"])
    assert GOLDEN.stat().st_size < 200_000
