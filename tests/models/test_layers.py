"""Streaming == offline for every explicit-state layer (moshi conv_test pattern)."""

from __future__ import annotations

import pytest
import torch

from streamer.models.layers import (
    CausalConv1d,
    CausalSelfAttention,
    StreamingTransformer,
    StreamingTransformerBlock,
)
from streamer.models.state import select_rows, stack_states, state_nbytes, unstack_states

ATOL, RTOL = 1e-5, 1e-5


def run_streaming(module, x: torch.Tensor, sizes: list[int], *, time_dim: int) -> torch.Tensor:
    state = module.init_state(x.shape[0])
    outs, start = [], 0
    for size in sizes:
        piece = x.narrow(time_dim, start, size)
        y, state = module.step(piece, state)
        outs.append(y)
        start += size
    assert start == x.shape[time_dim]
    return torch.cat(outs, dim=time_dim)


def chunkings(total: int, unit: int) -> list[list[int]]:
    """Several ways to cut `total` steps into multiples of `unit`: 1 frame, odd sizes, random."""
    frames = total // unit
    gen = torch.Generator().manual_seed(0)
    rand, left = [], frames
    while left:
        n = int(torch.randint(1, min(left, 7) + 1, (1,), generator=gen))
        rand.append(n)
        left -= n
    odd = [3] * (frames // 3) + ([frames % 3] if frames % 3 else [])
    return [[unit * n for n in sizes] for sizes in ([1] * frames, odd, rand, [frames])]


def make_modules():
    torch.manual_seed(0)
    return {
        "conv_k3": (CausalConv1d(4, 6, 3).eval(), 1),
        "conv_dilated": (CausalConv1d(4, 6, 3, dilation=3).eval(), 1),
        "conv_stride2": (CausalConv1d(4, 6, 4, stride=2).eval(), 2),
        "conv_stride160": (CausalConv1d(1, 8, 400, stride=160).eval(), 160),
        "conv_depthwise": (CausalConv1d(6, 6, 5, groups=6).eval(), 1),
    }


@pytest.mark.parametrize("name", list(make_modules()))
def test_conv_streaming_equals_offline(name: str) -> None:
    conv, stride = make_modules()[name]
    total = stride * 23
    x = torch.randn(2, conv.in_channels, total, generator=torch.Generator().manual_seed(1))
    ref = conv(x)
    assert ref.shape[-1] == total // stride
    for sizes in chunkings(total, stride):
        torch.testing.assert_close(run_streaming(conv, x, sizes, time_dim=2), ref, atol=ATOL, rtol=RTOL)


def test_conv_is_causal_and_rejects_bad_chunks() -> None:
    conv = CausalConv1d(2, 3, 4, stride=2).eval()
    x = torch.randn(1, 2, 20)
    longer = torch.cat([x, torch.randn(1, 2, 10)], dim=-1)
    torch.testing.assert_close(conv(longer)[..., :10], conv(x), atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="multiple of the stride 2"):
        conv(torch.randn(1, 2, 7))


def seq_modules():
    torch.manual_seed(0)
    return {
        "attention": CausalSelfAttention(16, 4, context_frames=5).eval(),
        "block": StreamingTransformerBlock(16, 2, context_frames=6).eval(),
        "transformer": StreamingTransformer(16, 2, 3, context_frames=4).eval(),
    }


@pytest.mark.parametrize("name", list(seq_modules()))
def test_sequence_streaming_equals_offline(name: str) -> None:
    module = seq_modules()[name]
    x = torch.randn(2, 29, 16, generator=torch.Generator().manual_seed(2))
    ref = module(x)
    for sizes in chunkings(29, 1):
        torch.testing.assert_close(run_streaming(module, x, sizes, time_dim=1), ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", list(seq_modules()))
def test_sequence_is_causal(name: str) -> None:
    module = seq_modules()[name]
    x = torch.randn(1, 12, 16)
    longer = torch.cat([x, 100 * torch.randn(1, 5, 16)], dim=1)
    torch.testing.assert_close(module(longer)[:, :12], module(x), atol=ATOL, rtol=RTOL)


def test_attention_window_is_bounded() -> None:
    """A frame further back than the context has no influence at all."""
    attn = CausalSelfAttention(8, 2, context_frames=3).eval()
    x = torch.randn(1, 10, 8)
    y = attn(x)
    x2 = x.clone()
    x2[:, 0] += 50.0
    torch.testing.assert_close(attn(x2)[:, 4:], y[:, 4:], atol=ATOL, rtol=RTOL)
    assert not torch.allclose(attn(x2)[:, 3], y[:, 3])


def test_batched_streams_starting_at_different_times() -> None:
    """Stream B joins 7 frames after A; stacked steps equal each stream run alone."""
    model = StreamingTransformer(16, 2, 2, context_frames=5).eval()
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(1, 20, 16, generator=gen), torch.randn(1, 13, 16, generator=gen)
    ref_a, ref_b = model(a), model(b)
    state_a = model.init_state(1)
    outs_a = []
    for t in range(7):
        y, state_a = model.step(a[:, t:t + 1], state_a)
        outs_a.append(y)
    state = stack_states([state_a, model.init_state(1)])
    outs_b = []
    for t in range(13):
        y, state = model.step(torch.cat([a[:, 7 + t:8 + t], b[:, t:t + 1]]), state)
        outs_a.append(y[:1])
        outs_b.append(y[1:])
    torch.testing.assert_close(torch.cat(outs_a, 1), ref_a, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(torch.cat(outs_b, 1), ref_b, atol=ATOL, rtol=RTOL)
    single = unstack_states(state)
    assert len(single) == 2 and single[1].k.shape[0] == 1


def test_reset_halfway_leaves_nothing_behind() -> None:
    model = StreamingTransformer(16, 2, 2, context_frames=5).eval()
    x = torch.randn(2, 8, 16)
    state = model.init_state(2)
    _, state = model.step(x, state)
    state = select_rows(torch.tensor([True, False]), model.init_state(2), state)
    fresh = torch.randn(2, 4, 16)
    y, state = model.step(fresh, state)
    torch.testing.assert_close(y[0:1], model(fresh[0:1]), atol=ATOL, rtol=RTOL)
    assert not torch.allclose(y[1:2], model(fresh[1:2]))


def test_state_size_is_constant() -> None:
    model = StreamingTransformer(16, 2, 2, context_frames=5).eval()
    state = model.init_state(1)
    size = state_nbytes(state)
    for _ in range(30):
        _, state = model.step(torch.randn(1, 3, 16), state)
        assert state_nbytes(state) == size
