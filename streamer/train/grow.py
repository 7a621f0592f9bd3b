"""Deepen a trained model: new transformer blocks on top that start as the identity.

A block is `x + attn(x) + conv(x) + ff(x)` (each on its normed input), so zeroing the three output
projections makes a fresh block pass its input through unchanged: the grown model computes exactly what
the trained one did, and training goes on from there with more capacity (progressive stacking).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import replace

from torch import Tensor, nn

from streamer.errors import StreamerError
from streamer.models.layers import StreamingTransformer
from streamer.models.s2st import S2STModel


def transformer_depth(state: Mapping[str, Tensor], prefix: str) -> int:
    """How many blocks the transformer at `prefix` (e.g. 'decoder.transformer') has in a state dict."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.layers\.(\d+)\.")
    return 1 + max((int(m.group(1)) for key in state if (m := pattern.match(key))), default=-1)


def identity_block(like: nn.Module) -> nn.Module:
    """A freshly initialised copy of block `like` whose residual branches output zero."""
    block = copy.deepcopy(like)
    for module in block.modules():
        if module is not block and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for out in (block.attn.out, block.conv.conv, block.ff.net[-1]):
        nn.init.zeros_(out.weight)
        if out.bias is not None:
            nn.init.zeros_(out.bias)
    return block


def grow(transformer: StreamingTransformer, num_layers: int) -> int:
    """Append identity blocks until `transformer` has `num_layers`; returns how many were added."""
    added = num_layers - len(transformer.layers)
    if added < 0:
        raise StreamerError(f"cannot shrink a transformer from {len(transformer.layers)} to {num_layers} layers")
    for _ in range(added):
        transformer.layers.append(identity_block(transformer.layers[-1]))
    return added


def set_decoder_depth(model: S2STModel, num_layers: int) -> int:
    """Grow the unit decoder of `model` to `num_layers` blocks (its config follows); returns blocks added."""
    added = grow(model.decoder.transformer, num_layers)
    model.decoder.cfg = replace(model.decoder.cfg, num_layers=num_layers)
    model.cfg = replace(model.cfg, decoder=model.decoder.cfg)
    return added
