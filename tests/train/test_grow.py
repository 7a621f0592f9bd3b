"""Deepening a trained decoder: the grown model computes exactly what the trained one did, and can learn."""

from __future__ import annotations

import pytest
import torch

from streamer.errors import StreamerError
from streamer.models.presets import tiny_model
from streamer.train.grow import grow, set_decoder_depth, transformer_depth


def _randomise(model: torch.nn.Module) -> None:
    """Give every parameter a non-trivial value, as a trained model has (LayerNorms included)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_grown_decoder_matches_offline_and_streaming() -> None:
    model = tiny_model()
    _randomise(model)
    audio = 0.3 * torch.randn(2, 320 * 20)
    with torch.no_grad():
        enc = model.encoder(audio)
        before = model.decoder(enc)
        state = model.decoder.init_state(2)
        units_before, _ = model.decoder.step(enc, state)
    assert set_decoder_depth(model, 3) == 2 and len(model.decoder.transformer.layers) == 3
    assert model.cfg.decoder.num_layers == model.decoder.cfg.num_layers == 3
    assert transformer_depth(model.state_dict(), "decoder.transformer") == 3
    assert transformer_depth(model.state_dict(), "encoder.transformer") == 2
    with torch.no_grad():
        torch.testing.assert_close(model.decoder(enc), before, atol=0, rtol=0)
        units_after, new_state = model.decoder.step(enc, model.decoder.init_state(2))
    assert torch.equal(units_after, units_before) and new_state.transformer.k.shape[1] == 3
    new = model.decoder.transformer.layers[2]
    assert new.attn.qkv.weight.abs().sum() > 0 and new.attn.out.weight.abs().sum() == 0


def test_grown_blocks_learn() -> None:
    model = tiny_model()
    set_decoder_depth(model, 2)
    enc = torch.randn(2, 10, 16)
    loss = model.decoder(enc).logsumexp(-1).mean()
    loss.backward()
    new = model.decoder.transformer.layers[1]
    assert new.attn.out.weight.grad.abs().sum() > 0 and new.ff.net[-1].weight.grad.abs().sum() > 0


def test_grow_refuses_to_shrink() -> None:
    model = tiny_model()
    assert grow(model.decoder.transformer, 1) == 0
    with pytest.raises(StreamerError, match="shrink"):
        set_decoder_depth(model, 0)
