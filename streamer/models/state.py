"""Helpers for explicit streaming states: nested NamedTuples of batch-first tensors.

Stacking and unstacking per-stream states is how many streams share one batched `step`
(the icefall `stack_states` idea, with named fields instead of positional lists).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

State = Any  # a NamedTuple whose fields are Tensors or nested NamedTuples


def map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    """Apply `fn` to every tensor of a nested NamedTuple state."""
    if isinstance(state, Tensor):
        return fn(state)
    return type(state)(*(map_state(fn, f) for f in state))


def zip_states(fn: Callable[[list[Tensor]], Tensor], states: Sequence[State]) -> State:
    """Combine same-typed states field by field with `fn(list_of_tensors)`."""
    first = states[0]
    if isinstance(first, Tensor):
        return fn(list(states))
    return type(first)(*(zip_states(fn, [s[i] for s in states]) for i in range(len(first))))


def stack_states(states: Sequence[State]) -> State:
    """Concatenate per-stream states (each batch B_i) on axis 0 into one batched state."""
    return zip_states(lambda ts: torch.cat(ts, dim=0), states)


def unstack_states(state: State, sizes: Sequence[int] | None = None) -> list[State]:
    """Split a batched state on axis 0 into per-stream states (batch 1 each unless `sizes`)."""
    sizes = list(sizes) if sizes is not None else [1] * batch_size(state)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [map_state(lambda t, a=a, n=n: t[a:a + n], state) for a, n in zip(starts, sizes, strict=True)]


def flatten_state(state: State, prefix: str = "") -> dict[str, Tensor]:
    """Nested state -> {"encoder.k": tensor, ...} in field order (names for ONNX inputs)."""
    if isinstance(state, Tensor):
        return {prefix: state}
    out: dict[str, Tensor] = {}
    for name, value in zip(state._fields, state, strict=True):
        out.update(flatten_state(value, f"{prefix}.{name}" if prefix else name))
    return out


def unflatten_state(template: State, tensors: Sequence[Tensor]) -> State:
    """Inverse of `flatten_state(...).values()` given a state of the same structure."""
    it = iter(tensors)
    return map_state(lambda _t: next(it), template)


def state_nbytes(state: State) -> int:
    """Total bytes of every tensor in a state (bounded-latency checks compare these)."""
    return sum(t.numel() * t.element_size() for t in flatten_state(state).values())


def batch_size(state: State) -> int:
    return next(iter(flatten_state(state).values())).shape[0]


def select_rows(mask: Tensor, new: State, old: State) -> State:
    """Per stream row: take `new` where mask[b] is True, else `old` (moshi-style reset)."""
    return zip_states(lambda ts: torch.where(mask.view(-1, *[1] * (ts[0].dim() - 1)), ts[0], ts[1]),
                      [new, old])
