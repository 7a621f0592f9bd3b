"""Streaming == offline for every model module, causality, declared latency, the unit queue's contract."""

from __future__ import annotations

import pytest
import torch

from streamer.models.decoder import DecoderConfig, UnitDecoder
from streamer.models.encoder import CausalEncoder, EncoderConfig
from streamer.models.pacing import QueueConfig, UnitQueue
from streamer.models.presets import tiny_model
from streamer.models.vocoder import UnitVocoder, VocoderConfig

ATOL, RTOL = 1e-5, 1e-4


def stream(module, x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    state, outs, start = module.init_state(x.shape[0]), [], 0
    for size in sizes:
        y, state = module.step(x[:, start:start + size], state)
        outs.append(y)
        start += size
    return outs


@pytest.mark.parametrize("frames_per_step", [1, 3, 8])
def test_encoder_streaming_equals_offline(frames_per_step: int) -> None:
    torch.manual_seed(0)
    enc = CausalEncoder(EncoderConfig(n_mels=16, dim=16, num_heads=2, num_layers=2, context_frames=6,
                                      dropout=0.0)).eval()
    audio = 0.3 * torch.randn(2, 320 * 24)
    with torch.no_grad():
        ref = enc(audio)
        sizes = [320 * frames_per_step] * (24 // frames_per_step)
        got = torch.cat(stream(enc, audio, sizes), dim=1)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)
    assert ref.shape == (2, 24, 16)


def test_encoder_is_causal_and_rejects_partial_frames() -> None:
    torch.manual_seed(0)
    enc = CausalEncoder(EncoderConfig(n_mels=16, dim=16, num_heads=2, num_layers=2, dropout=0.0)).eval()
    audio = 0.3 * torch.randn(1, 320 * 10)
    with torch.no_grad():
        longer = torch.cat([audio, torch.randn(1, 320 * 4)], dim=1)
        torch.testing.assert_close(enc(longer)[:, :10], enc(audio), atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="multiple of the stride 320"):
        enc(torch.zeros(1, 500))


def test_decoder_streaming_emits_the_offline_units() -> None:
    torch.manual_seed(1)
    dec = UnitDecoder(DecoderConfig(input_dim=16, dim=16, num_heads=2, num_layers=2, context_frames=5,
                                    num_units=7, dropout=0.0)).eval()
    enc = torch.randn(2, 20, 16)
    with torch.no_grad():
        tokens = dec(enc).argmax(-1)
        streamed = torch.cat(stream(dec, enc, [1, 2, 7, 3, 7]), dim=1)
    # Offline greedy CTC collapse, by hand.
    for b in range(2):
        expected, prev = [], dec.cfg.blank
        for t in tokens[b].tolist():
            if t != dec.cfg.blank and t != prev:
                expected.append(t)
            prev = t
        got = streamed[b][streamed[b] >= 0].tolist()
        assert got == expected


def test_vocoder_streaming_equals_offline_and_declares_its_delay() -> None:
    torch.manual_seed(2)
    voc = UnitVocoder(VocoderConfig(num_units=9, dim=16, num_blocks=2)).eval()
    frames = torch.randint(0, 10, (2, 17))
    with torch.no_grad():
        ref = voc(frames)
        got = torch.cat(stream(voc, frames, [1, 4, 8, 1, 3]), dim=1)
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)
        changed = frames.clone()
        changed[:, 10:] = (changed[:, 10:] + 1) % 10
        assert torch.equal(voc(changed)[:, : 10 * 320], ref[:, : 10 * 320])  # causal
    assert voc.lookahead_frames == 1


def test_pipeline_latency_is_chunk_plus_declared_lookaheads() -> None:
    model = tiny_model()
    frame_ms = 1000 * model.cfg.encoder.frame_samples / model.cfg.sample_rate
    lookaheads = model.encoder.lookahead_frames + model.decoder.lookahead_frames + model.vocoder.lookahead_frames
    assert model.algorithmic_latency_ms == model.cfg.chunk_ms + frame_ms * lookaheads == 180.0


def queue_run(queue: UnitQueue, chunks: list[list[int]]) -> list[int]:
    state, out = queue.init_state(1), []
    s = queue.cfg.frames_per_chunk * 2
    for units in chunks:
        padded = torch.tensor([units + [-1] * (s - len(units))])
        frames, state = queue.step(padded, state)
        out += frames[0].tolist()
    return out


def test_queue_spreads_units_by_duration_and_keeps_order() -> None:
    queue = UnitQueue(QueueConfig(num_units=5, frames_per_chunk=4, capacity_frames=16, backlog_frames=8))
    queue.durations.copy_(torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0]))
    out = queue_run(queue, [[1, 2], [], [0, 4], [], [], []])
    s = 5  # silence: the queue ran dry in chunk 1 and after chunk 2
    assert out == [1, 1, 2, 2] + [2, s, s, s] + [0, 4, 4, s] + [s] * 12


def test_queue_speeds_up_when_backlogged_and_stays_bounded() -> None:
    queue = UnitQueue(QueueConfig(num_units=5, frames_per_chunk=2, capacity_frames=12, backlog_frames=4))
    queue.durations.copy_(torch.full((5,), 3.0))
    state = queue.init_state(1)
    flood = torch.tensor([[1, 2, 3, 1]])
    counts = []
    for _ in range(10):
        _, state = queue.step(flood, state)
        counts.append(int(state.count))
    assert max(counts) <= 12
    first_added = 4 * 3 - 2
    assert counts[-1] - counts[-2] < first_added  # durations shrank under backlog
