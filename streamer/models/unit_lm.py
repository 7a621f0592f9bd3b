"""An n-gram language model over target units, for CTC beam search (streamer/models/ctc_search.py).

Witten-Bell interpolation: each context's estimate leans on the shorter context's in proportion to how
many different units followed it, so unseen continuations keep some probability and every distribution
sums to one. Unit ids are the decoder's (0..num_units-1); `num_units` itself is the end of a sentence, and
contexts at the start are padded with `START`. Stored as counts in safetensors with the order beside them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from streamer.errors import ModelError

START = -1
LM_NAME = "unit_lm.safetensors"


class UnitLM:
    """P(unit | the `order - 1` units before it). Build with `fit`, or `load` a saved one."""

    # logprob's memo is emptied when it reaches this many entries: a stream that runs for hours meets new
    # contexts for ever (order 8: ~100,000 in 10 minutes of speech), and a process must keep flat memory
    max_cached = 100_000  # about 20 MB

    def __init__(self, order: int, num_units: int, counts: Sequence[dict[tuple[int, ...], dict[int, int]]]) -> None:
        if order < 1 or len(counts) != order:
            raise ModelError(f"a unit LM of order {order} needs {order} count tables, got {len(counts)}")
        self.order, self.num_units = order, num_units
        self.end = num_units
        self.counts = [dict(level) for level in counts]
        # per context: (total count, number of different units seen after it)
        self.totals = [{h: (sum(c.values()), len(c)) for h, c in level.items()} for level in self.counts]
        self._cache: dict[tuple[tuple[int, ...], int], float] = {}
        self.metadata: dict[str, str] = {}  # what a saved LM was stored with (`load`)

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[int]], *, order: int, num_units: int) -> UnitLM:
        """Count every n-gram up to `order` of unit sequences (each one sentence)."""
        counts: list[dict] = [defaultdict(lambda: defaultdict(int)) for _ in range(order)]
        for seq in sequences:
            units = [int(u) for u in seq]
            if any(u < 0 or u >= num_units for u in units):
                raise ModelError(f"unit ids must lie in 0..{num_units - 1}")
            padded = [START] * (order - 1) + units + [num_units]
            for i in range(order - 1, len(padded)):
                for n in range(order):
                    counts[n][tuple(padded[i - n:i])][padded[i]] += 1
        return cls(order, num_units, [{h: dict(c) for h, c in level.items()} for level in counts])

    def context(self, units: Sequence[int]) -> tuple[int, ...]:
        """The context that `units` (the sentence so far) leave: their last order-1, START-padded."""
        keep = self.order - 1
        if keep == 0:
            return ()
        tail = tuple(int(u) for u in units[-keep:])
        return (START,) * (keep - len(tail)) + tail

    def logprob(self, context: tuple[int, ...], unit: int) -> float:
        """log P(unit | context); `context` as `context()` makes it."""
        key = (context, unit)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        p = 1.0 / (self.num_units + 1)
        for n in range(self.order):
            history = context[len(context) - n:] if n else ()
            seen = self.totals[n].get(history)
            if seen is None:
                break  # a longer context is never seen when this one is not
            total, types = seen
            p = (self.counts[n][history].get(unit, 0) + types * p) / (total + types)
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[key] = value = math.log(p)
        return value

    def save(self, path: str | Path, *, metadata: dict[str, str] | None = None) -> Path:
        """Counts per level as int32 rows (context..., unit, count); `metadata` is stored beside them."""
        tensors = {}
        for n, level in enumerate(self.counts):
            rows = [(*h, u, c) for h, after in sorted(level.items()) for u, c in sorted(after.items())]
            tensors[f"level{n}"] = torch.tensor(rows, dtype=torch.int32).reshape(len(rows), n + 2)
        meta = {**(metadata or {}), "config": json.dumps({"order": self.order, "num_units": self.num_units})}
        save_file(tensors, str(path), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> UnitLM:
        try:
            with safe_open(str(path), framework="np") as f:
                metadata = dict(f.metadata() or {})
                cfg = json.loads(metadata["config"])
                levels = [f.get_tensor(f"level{n}") for n in range(cfg["order"])]
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise ModelError(f"cannot read a unit LM from {path}: {e}") from e
        counts: list[dict] = []
        for n, rows in enumerate(levels):
            level: dict[tuple[int, ...], dict[int, int]] = defaultdict(dict)
            for row in np.asarray(rows).tolist():
                level[tuple(row[:n])][row[n]] = row[n + 1]
            counts.append(dict(level))
        lm = cls(cfg["order"], cfg["num_units"], counts)
        lm.metadata = metadata
        return lm
