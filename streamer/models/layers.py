"""Explicit-state streaming building blocks.

Every module here follows one contract::

    state = m.init_state(batch_size)   # NamedTuple of tensors, batch on axis 0
    y, state = m.step(x, state)        # fixed shapes in and out
    y_full = m(x_full)                 # offline forward == concatenation of the steps

Caches are fixed-size tensors updated by concatenation and slicing (never by in-place index
writes), so the same `step` graph exports to ONNX and TensorRT.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_stride(num_samples: int, stride: int, what: str) -> None:
    """Raise ValueError unless `num_samples` is a positive multiple of `stride`."""
    if num_samples <= 0 or num_samples % stride:
        raise ValueError(f"{what}: got {num_samples} steps, need a positive multiple of the stride {stride}")


class ConvState(NamedTuple):
    tail: Tensor  # (B, C_in, P) last P input steps, zeros at the start of a stream


class CausalConv1d(nn.Module):
    """Conv1d padded on the left only; streams with a cached input tail.

    Output frame n depends on input steps up to `(n + 1) * stride - 1`, never later.
    Shapes: x (B, C_in, T) with T a multiple of `stride` -> y (B, C_out, T // stride).
    """

    causal = True
    lookahead_frames = 0

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *,
        stride: int = 1, dilation: int = 1, groups: int = 1, bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                              dilation=dilation, groups=groups, bias=bias)
        self.stride = stride
        self.in_channels = in_channels
        self.tail_len = (kernel_size - 1) * dilation + 1 - stride
        if self.tail_len < 1:
            raise ValueError(f"kernel {kernel_size} x dilation {dilation} must exceed stride {stride}")

    def init_state(self, batch_size: int) -> ConvState:
        p = next(self.parameters())
        return ConvState(torch.zeros(batch_size, self.in_channels, self.tail_len, dtype=p.dtype, device=p.device))

    def forward(self, x: Tensor) -> Tensor:
        check_stride(x.shape[-1], self.stride, "CausalConv1d input")
        return self.conv(F.pad(x, (self.tail_len, 0)))

    def step(self, x: Tensor, state: ConvState) -> tuple[Tensor, ConvState]:
        xc = torch.cat([state.tail, x], dim=-1)
        return self.conv(xc), ConvState(xc[..., -self.tail_len:])


class AttentionState(NamedTuple):
    k: Tensor       # (B, H, L, Dh) keys of the last L frames (right-aligned)
    v: Tensor       # (B, H, L, Dh)
    filled: Tensor  # (B,) int64, how many cache slots hold real frames (0..L)


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi head slopes (geometric, as in Press et al.); bias depends only on distance."""
    start = 2.0 ** (-8.0 / num_heads)
    return torch.tensor([start ** (h + 1) for h in range(num_heads)])


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over the current frame and the `context_frames` before it.

    Position enters only as an ALiBi distance bias, so the state never holds an absolute
    position and stays bounded. Shapes: x (B, T, D) -> y (B, T, D).
    """

    causal = True
    stride = 1
    lookahead_frames = 0

    def __init__(self, dim: int, num_heads: int, *, context_frames: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.context = num_heads, dim // num_heads, context_frames
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.register_buffer("slopes", alibi_slopes(num_heads).view(1, num_heads, 1, 1), persistent=False)

    def init_state(self, batch_size: int) -> AttentionState:
        p = self.qkv.weight
        shape = (batch_size, self.num_heads, self.context, self.head_dim)
        zeros = torch.zeros(shape, dtype=p.dtype, device=p.device)
        return AttentionState(zeros, zeros.clone(), torch.zeros(batch_size, dtype=torch.long, device=p.device))

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, distance: Tensor) -> Tensor:
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) - self.slopes * distance
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v  # (B, H, T, Dh)
        b, h, t, d = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * d))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._split(x)
        pos = torch.arange(x.shape[1], device=x.device)
        distance = (pos[:, None] - pos[None, :]).to(x.dtype)  # query minus key
        allowed = (distance >= 0) & (distance <= self.context)
        return self._attend(q, k, v, allowed[None, None], distance)

    def step(self, x: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState]:
        t, cache = x.shape[1], self.context
        q, k_new, v_new = self._split(x)
        k = torch.cat([state.k, k_new], dim=2)
        v = torch.cat([state.v, v_new], dim=2)
        qi = torch.arange(t, device=x.device)[:, None]
        kj = torch.arange(cache + t, device=x.device)[None, :]
        distance = (qi + cache - kj).to(x.dtype)
        in_window = (distance >= 0) & (distance <= cache)
        real = kj[None] >= (cache - state.filled)[:, None, None]  # (B, 1, L+T): unfilled slots masked
        allowed = (in_window[None] & real)[:, None]
        y = self._attend(q, k, v, allowed, distance)
        filled = torch.clamp(state.filled + t, max=cache)
        return y, AttentionState(k[:, :, -cache:], v[:, :, -cache:], filled)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BlockState(NamedTuple):
    attn: AttentionState
    conv: ConvState


class StreamingTransformerBlock(nn.Module):
    """Pre-norm block: causal attention, causal depthwise conv, feed-forward. x (B, T, D)."""

    causal = True
    stride = 1
    lookahead_frames = 0

    def __init__(self, dim: int, num_heads: int, *, context_frames: int, ff_mult: int = 4,
                 conv_kernel: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_attn, self.norm_conv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, num_heads, context_frames=context_frames)
        self.conv = CausalConv1d(dim, dim, conv_kernel, groups=dim)
        self.ff = FeedForward(dim, ff_mult * dim)
        self.drop = nn.Dropout(dropout)

    def init_state(self, batch_size: int) -> BlockState:
        return BlockState(self.attn.init_state(batch_size), self.conv.init_state(batch_size))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm_attn(x)))
        x = x + self.drop(self.conv(self.norm_conv(x).transpose(1, 2)).transpose(1, 2))
        return x + self.drop(self.ff(self.norm_ff(x)))

    def step(self, x: Tensor, state: BlockState) -> tuple[Tensor, BlockState]:
        a, attn_state = self.attn.step(self.norm_attn(x), state.attn)
        x = x + a
        c, conv_state = self.conv.step(self.norm_conv(x).transpose(1, 2), state.conv)
        x = x + c.transpose(1, 2)
        return x + self.ff(self.norm_ff(x)), BlockState(attn_state, conv_state)


class TransformerState(NamedTuple):
    k: Tensor       # (B, N, H, L, Dh) every layer's key cache, stacked on axis 1
    v: Tensor       # (B, N, H, L, Dh)
    filled: Tensor  # (B,) int64, shared: every layer has seen the same frames
    conv: Tensor    # (B, N, D, P) every layer's depthwise-conv tail


class StreamingTransformer(nn.Module):
    """A stack of `StreamingTransformerBlock`s with one stacked state tensor per cache kind."""

    causal = True
    stride = 1
    lookahead_frames = 0

    def __init__(self, dim: int, num_heads: int, num_layers: int, *, context_frames: int,
                 ff_mult: int = 4, conv_kernel: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            StreamingTransformerBlock(dim, num_heads, context_frames=context_frames, ff_mult=ff_mult,
                                      conv_kernel=conv_kernel, dropout=dropout)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def init_state(self, batch_size: int) -> TransformerState:
        states = [layer.init_state(batch_size) for layer in self.layers]
        return TransformerState(
            k=torch.stack([s.attn.k for s in states], dim=1),
            v=torch.stack([s.attn.v for s in states], dim=1),
            filled=states[0].attn.filled,
            conv=torch.stack([s.conv.tail for s in states], dim=1),
        )

    def forward(self, x: Tensor, *, return_layers: bool = False) -> Tensor | list[Tensor]:
        """x (B, T, D) -> (B, T, D); with return_layers, every layer's output (the last normed)."""
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        outs[-1] = self.norm(x)
        return outs if return_layers else outs[-1]

    def step(self, x: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        ks, vs, convs = [], [], []
        for i, layer in enumerate(self.layers):
            layer_state = BlockState(AttentionState(state.k[:, i], state.v[:, i], state.filled),
                                     ConvState(state.conv[:, i]))
            x, new = layer.step(x, layer_state)
            ks.append(new.attn.k)
            vs.append(new.attn.v)
            convs.append(new.conv.tail)
        filled = torch.clamp(state.filled + x.shape[1], max=self.layers[0].attn.context)
        new_state = TransformerState(torch.stack(ks, 1), torch.stack(vs, 1), filled, torch.stack(convs, 1))
        return self.norm(x), new_state
