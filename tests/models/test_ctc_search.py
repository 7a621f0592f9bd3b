"""The unit n-gram LM and the streaming CTC beam search."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from streamer.errors import ModelError
from streamer.models.ctc_search import CTCBeamSearch, SearchConfig
from streamer.models.unit_lm import START, UnitLM


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _sentences(rng: np.random.Generator, num_units: int, count: int) -> list[list[int]]:
    """Sentences from a few fixed 'words', so that the LM has structure to learn."""
    words = [list(rng.integers(0, num_units, rng.integers(2, 5))) for _ in range(6)]
    return [sum((words[i] for i in rng.integers(0, len(words), rng.integers(2, 6))), []) for _ in range(count)]


def test_lm_distributions_sum_to_one_and_survive_saving(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lm = UnitLM.fit(_sentences(rng, 7, 50), order=3, num_units=7)
    contexts = [(START, START), (START, 3), (2, 5), (6, 6), lm.context([1, 2, 3, 4])]
    for context in contexts:
        total = sum(math.exp(lm.logprob(context, u)) for u in range(lm.num_units + 1))
        assert total == pytest.approx(1.0, abs=1e-9)
    loaded = UnitLM.load(lm.save(tmp_path / "lm.safetensors"))
    assert (loaded.order, loaded.num_units) == (3, 7)
    assert all(loaded.logprob(c, u) == lm.logprob(c, u) for c in contexts for u in range(8))
    # rows are stored as int32 (half the size); files written before that hold int64 and still load
    with safe_open(str(tmp_path / "lm.safetensors"), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    assert {t.dtype for t in tensors.values()} == {torch.int32}
    save_file({k: t.long() for k, t in tensors.items()}, str(tmp_path / "old.safetensors"), metadata=metadata)
    old = UnitLM.load(tmp_path / "old.safetensors")
    assert all(old.logprob(c, u) == lm.logprob(c, u) for c in contexts for u in range(8))
    with pytest.raises(ModelError, match="unit ids"):
        UnitLM.fit([[0, 7]], order=2, num_units=7)
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot read a unit LM"):
        UnitLM.load(tmp_path / "bad.safetensors")


def test_lm_memo_is_bounded_and_changes_nothing() -> None:
    """logprob's memo empties itself at `max_cached` entries (a stream meets new contexts for ever), and
    the values stay exactly those of an unbounded memo."""
    rng = np.random.default_rng(2)
    lm = UnitLM.fit(_sentences(rng, 7, 50), order=4, num_units=7)
    bounded = UnitLM.fit(_sentences(np.random.default_rng(2), 7, 50), order=4, num_units=7)
    bounded.max_cached = 10
    queries = [(tuple(int(x) for x in rng.integers(0, 7, 3)), int(rng.integers(0, 8))) for _ in range(200)]
    for context, unit in queries + queries:
        assert bounded.logprob(context, unit) == lm.logprob(context, unit)
        assert len(bounded._cache) <= 10
    assert len(lm._cache) > 10


def test_lm_prefers_what_it_was_trained_on() -> None:
    lm = UnitLM.fit([[0, 1, 2]] * 20 + [[2, 1, 0]], order=3, num_units=4)
    assert lm.logprob(lm.context([0, 1]), 2) > math.log(0.8)
    assert lm.logprob(lm.context([0, 1]), 3) < lm.logprob(lm.context([0, 1]), 2) - 3


def _exact_best(log_probs: np.ndarray, blank: int) -> list[int]:
    """The most probable labelling, summing every CTC path (brute force, tiny inputs only)."""
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=len(log_probs)):
        labels = tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or path[i - 1] != k))
        totals[labels] = totals.get(labels, 0.0) + math.exp(sum(log_probs[i, k] for i, k in enumerate(path)))
    return list(max(totals, key=totals.__getitem__))


def test_wide_search_without_lm_finds_the_most_probable_labelling() -> None:
    rng = np.random.default_rng(1)
    search = CTCBeamSearch(blank=3, config=SearchConfig(beam=10_000, alpha=0.0, beta=0.0, prune=-math.inf))
    for _ in range(5):
        log_probs = _log_softmax(rng.normal(0, 1.5, (6, 4)))
        assert search.search(log_probs) == _exact_best(log_probs, blank=3)


def _noisy_slots(rng: np.random.Generator, units: list[int], num_units: int) -> np.ndarray:
    """CTC slots that say `units` (each over 2 slots, then a blank), blurred with noise."""
    slots = []
    for u in units:
        slots += [u, u, num_units]
    logits = rng.normal(0, 1.0, (len(slots), num_units + 1))
    logits[np.arange(len(slots)), slots] += 2.5
    return _log_softmax(logits)


def test_streaming_search_equals_offline_search() -> None:
    rng = np.random.default_rng(2)
    sentences = _sentences(rng, 9, 80)
    lm = UnitLM.fit(sentences, order=4, num_units=9)
    unbounded = CTCBeamSearch(9, lm, SearchConfig(max_delay_slots=None))
    for sentence in sentences[:6]:
        log_probs = _noisy_slots(rng, sentence, 9)
        offline = unbounded.search(log_probs)
        for chunk in (1, 8, 17):
            state, units = unbounded.init_state(), []
            for start in range(0, len(log_probs), chunk):
                new, state = unbounded.step(log_probs[start:start + chunk], state)
                units += new
            rest, _ = unbounded.finish(state)
            assert units + rest == offline


def test_the_delay_bound_holds_on_a_long_stream() -> None:
    """Hours of undecidable slots: units are still committed within the bound, the state stays small."""
    rng = np.random.default_rng(3)
    lm = UnitLM.fit(_sentences(rng, 9, 80), order=4, num_units=9)
    search = CTCBeamSearch(9, lm, SearchConfig(beam=6, max_delay_slots=12))
    state, committed, chunk = search.init_state(), 0, 8
    for _ in range(400):
        new, state = search.step(_log_softmax(rng.normal(0, 0.3, (chunk, 10))), state)
        committed += len(new)
        oldest = min((h.slots[0] for h in state.beams.values() if h.slots), default=state.slot)
        assert state.slot - oldest <= 12 + chunk
        assert len(state.history) <= 3 and len(state.beams) <= 6
    assert committed > 100


def test_lm_search_repairs_what_greedy_gets_wrong() -> None:
    """Slots that favour a wrong unit by a little: greedy takes it, the LM-weighted search does not."""
    lm = UnitLM.fit([[0, 1, 2, 3]] * 30, order=3, num_units=5)
    slots = np.full((9, 6), -6.0)
    for i, (u, p) in enumerate([(0, 0), (0, 0), (5, 0), (4, 0), (1, -0.3), (5, 0), (2, 0), (5, 0), (3, 0)]):
        slots[i, u] = p
    slots[4, 1], slots[3, 1] = -0.3, -0.4  # slot 3: 4 barely beats 1
    log_probs = _log_softmax(slots)
    tokens = log_probs.argmax(-1)
    greedy = [int(k) for i, k in enumerate(tokens) if k != 5 and (i == 0 or tokens[i - 1] != k)]
    assert greedy == [0, 4, 1, 2, 3]
    assert CTCBeamSearch(5, lm, SearchConfig(alpha=1.0, beta=0.5)).search(log_probs) == [0, 1, 2, 3]


class _NoShortcut(CTCBeamSearch):
    """The search with every slot expanded in full, blank-only ones too (the reference for the shortcut)."""

    def _advance(self, beams, row, history, slot):  # type: ignore[no-untyped-def]
        tried = [int(k) for k in np.flatnonzero(row > self.cfg.prune)]
        new = self._expand(beams, row, tried, history, slot)
        return dict(sorted(new.items(), key=lambda item: item[1].score, reverse=True)[: self.cfg.beam])


def test_blank_only_slots_shortcut_changes_nothing() -> None:
    """Slots where only blank clears the pruning floor skip the expansion; units, the slots they were first
    hypothesised at and every score stay exactly those of the full expansion."""
    rng = np.random.default_rng(4)
    num_units = 6
    lm = UnitLM.fit(_sentences(rng, num_units, 60), order=3, num_units=num_units)
    rows = _log_softmax(rng.normal(0, 2.5, (60, num_units + 1)))
    quiet = rng.random(60) < 0.5
    rows[quiet] = -20.0
    rows[quiet, num_units] = 0.0  # blank-only slots
    config = SearchConfig(beam=4, prune=-8.0, max_delay_slots=6)
    fast, full = CTCBeamSearch(num_units, lm, config), _NoShortcut(num_units, lm, config)
    state_fast, state_full = fast.init_state(), full.init_state()
    for start in range(0, 60, 8):
        got, state_fast = fast.step_timed(rows[start:start + 8], state_fast)
        want, state_full = full.step_timed(rows[start:start + 8], state_full)
        assert got == want
        assert [(s, h.blank, h.unit, h.bonus) for s, h in state_fast.beams.items()] == \
            [(s, h.blank, h.unit, h.bonus) for s, h in state_full.beams.items()]
    assert fast.finish_timed(state_fast)[0] == full.finish_timed(state_full)[0]
