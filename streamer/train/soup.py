"""Model soups: train one phase several ways from the same weights, then keep the average of the results.

Runs fine-tuned from one start sit in one basin of the loss, so the uniform average of their weights is a
model of its own, often better than each (Wortsman et al., 2022, "Model soups"). An S2UT phase's `soup:`
lists the other settings to run it with (each a mapping of changes, e.g. `{augment: {p_vtlp: 0.4}}`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from streamer.errors import StreamerError

# A soup run changes how the phase trains; these would change what it trains, or where it starts.
FIXED_IN_A_SOUP = frozenset({"soup", "resume", "decoder_layers", "tail_silence_s"})

StateDict = dict[str, Tensor]


def check_soup_changes(changes: Sequence[dict], known: set[str]) -> None:
    """Each soup entry is a mapping of known phase settings that a soup run may change."""
    for entry in changes:
        if not isinstance(entry, dict) or not entry:
            raise StreamerError(f"each s2ut soup entry must be a non-empty mapping of settings, not {entry!r}")
        unknown = sorted(set(entry) - known)
        fixed = sorted(set(entry) & FIXED_IN_A_SOUP)
        if unknown:
            raise StreamerError(f"unknown s2ut soup keys {unknown}; known: {sorted(known - FIXED_IN_A_SOUP)}")
        if fixed:
            raise StreamerError(f"a soup run cannot change {fixed}: every run starts from, and ends as, one model")


def average_states(states: Sequence[StateDict]) -> StateDict:
    """The uniform average of state dicts with the same keys; integer buffers must agree and are kept."""
    if not states:
        raise ValueError("nothing to average")
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError("the state dicts to average have different keys")
    out = {}
    for key in keys:
        first = states[0][key]
        if first.is_floating_point():
            out[key] = (sum(s[key].double() for s in states) / len(states)).to(first.dtype)
        elif all(torch.equal(s[key], first) for s in states):
            out[key] = first.clone()
        else:
            raise ValueError(f"integer tensor {key} differs between the runs: it cannot be averaged")
    return out


def snapshot(modules: Sequence[torch.nn.Module]) -> list[StateDict]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def cook(modules: Sequence[torch.nn.Module], runs: Sequence[object],
         train_run: Callable[[object], dict[str, list[float]]]) -> dict[str, list[float]]:
    """Train every run from the modules' present weights; leave the modules holding the runs' average.

    `train_run(run)` trains the modules in place. Returns the first run's history (the phase as written).
    """
    if len(runs) == 1:
        return train_run(runs[0])
    start = snapshot(modules)
    ends, histories = [], []
    for i, run in enumerate(runs):
        if i:
            for module, state in zip(modules, start, strict=True):
                module.load_state_dict(state)
        histories.append(train_run(run))
        ends.append(snapshot(modules))
    for j, module in enumerate(modules):
        module.load_state_dict(average_states([end[j] for end in ends]))
    return histories[0]
