"""Streaming CTC prefix beam search with a unit n-gram LM, committing units as the beams agree.

Greedy CTC commits each slot's argmax at once. This search keeps `beam` hypotheses of the units not yet
committed, scored by the decoder's CTC probability plus `alpha` * LM log-probability plus `beta` per unit.
After each chunk of slots it commits the prefix every hypothesis shares; so that latency stays bounded, a
unit still undecided `max_delay_slots` after it was first hypothesised is committed from the best one.
The state holds only the uncommitted suffixes and the LM context, never the stream's past.

With no delay bound, stepping chunk by chunk and finishing gives exactly the offline search of the whole
utterance (`search`), because committing a prefix shared by every hypothesis changes none of their scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from streamer.errors import ModelError
from streamer.models.unit_lm import UnitLM

NEG_INF = -math.inf


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    top = max(a, b)
    return top + math.log1p(math.exp(-abs(a - b)))


@dataclass(slots=True)
class Hypothesis:
    """One uncommitted suffix: log P(slots so far, ending in blank / in a unit), and its LM + length score."""

    blank: float = NEG_INF
    unit: float = NEG_INF
    bonus: float = 0.0
    slots: tuple[int, ...] = ()  # the slot at which each suffix unit was first hypothesised
    context: tuple[int, ...] | None = None  # the LM context after the suffix (None: from the history)

    @property
    def ctc(self) -> float:
        return _logadd(self.blank, self.unit)

    @property
    def score(self) -> float:
        return self.ctc + self.bonus


@dataclass
class SearchState:
    """One stream's search: the committed units' tail (LM context and CTC repeat rule), the hypotheses
    keyed by their uncommitted suffix, and the number of slots seen."""

    history: tuple[int, ...] = ()
    beams: dict[tuple[int, ...], Hypothesis] = field(default_factory=lambda: {(): Hypothesis(blank=0.0)})
    slot: int = 0


@dataclass(frozen=True)
class SearchConfig:
    beam: int = 8
    alpha: float = 0.5            # LM weight
    beta: float = 1.0             # score per emitted unit (offsets the LM's preference for short output)
    prune: float = -8.0           # units below this slot log-probability are not tried
    max_delay_slots: int | None = 16  # commit from the best hypothesis after this many slots undecided
    end_floor: float = math.log(0.01)  # least end-of-sentence log-probability the LM is taken to give


class CTCBeamSearch:
    """`step(log_probs, state)` -> (units committed now, state); `finish(state)` commits the rest."""

    def __init__(self, blank: int, lm: UnitLM | None = None, config: SearchConfig = SearchConfig()) -> None:
        self.blank, self.lm, self.cfg = blank, lm, config
        self.keep = max((lm.order - 1) if lm else 1, 1)

    def init_state(self) -> SearchState:
        return SearchState()

    def step(self, log_probs: np.ndarray, state: SearchState) -> tuple[list[int], SearchState]:
        """log_probs (S, num_units + 1): log-softmax CTC slots of one chunk."""
        timed, state = self.step_timed(log_probs, state)
        return [unit for unit, _ in timed], state

    def finish(self, state: SearchState) -> tuple[list[int], SearchState]:
        """End of input: the best hypothesis (with the LM's end-of-sentence score) is committed."""
        timed, state = self.finish_timed(state)
        return [unit for unit, _ in timed], state

    def step_timed(self, log_probs: np.ndarray, state: SearchState) -> tuple[list[tuple[int, int]], SearchState]:
        """As `step`, each committed unit with the slot at which it was first hypothesised."""
        beams = state.beams
        for offset, row in enumerate(np.asarray(log_probs, dtype=np.float64)):
            beams = self._advance(beams, row, state.history, state.slot + offset)
        state = SearchState(state.history, beams, state.slot + len(log_probs))
        committed = self._commit_shared(state)
        if self.cfg.max_delay_slots is not None:
            committed += self._commit_overdue(state)
        return committed, state

    def finish_timed(self, state: SearchState) -> tuple[list[tuple[int, int]], SearchState]:
        def final(item: tuple[tuple[int, ...], Hypothesis]) -> float:
            suffix, hyp = item
            if self.lm is None:
                return hyp.score
            # The LM's end-of-sentence score, floored: it never saw an empty sentence, and an unbounded
            # penalty there would make the search say something after silence rather than nothing.
            end = self.lm.logprob(self._context(hyp, state.history), self.lm.end)
            return hyp.score + self.cfg.alpha * max(end, self.cfg.end_floor)

        suffix, best = max(state.beams.items(), key=final)
        return (list(zip(suffix, best.slots, strict=True)),
                SearchState(history=self._tail(state.history + suffix), slot=state.slot))

    def search(self, log_probs: np.ndarray) -> list[int]:
        """The whole utterance at once: what streaming with no delay bound commits, in one call."""
        unbounded = CTCBeamSearch(self.blank, self.lm, replace(self.cfg, max_delay_slots=None))
        units, state = unbounded.step(log_probs, unbounded.init_state())
        rest, _ = unbounded.finish(state)
        return units + rest

    # -- one slot ---------------------------------------------------------------------------
    def _advance(self, beams: dict[tuple[int, ...], Hypothesis], row: np.ndarray, history: tuple[int, ...],
                 slot: int) -> dict[tuple[int, ...], Hypothesis]:
        tried = [int(k) for k in np.flatnonzero(row > self.cfg.prune)]
        if tried == [self.blank]:  # a blank-only slot (about half of them): no suffix grows or merges
            p = float(row[self.blank])
            new = {suffix: Hypothesis(hyp.ctc + p, NEG_INF, hyp.bonus, hyp.slots, hyp.context)
                   for suffix, hyp in beams.items()}
        else:
            new = self._expand(beams, row, tried, history, slot)
        ranked = sorted(new.items(), key=lambda item: item[1].score, reverse=True)
        return dict(ranked[: self.cfg.beam])

    def _expand(self, beams: dict[tuple[int, ...], Hypothesis], row: np.ndarray, tried: list[int],
                history: tuple[int, ...], slot: int) -> dict[tuple[int, ...], Hypothesis]:
        new: dict[tuple[int, ...], Hypothesis] = {}
        for suffix, hyp in beams.items():
            last = suffix[-1] if suffix else (history[-1] if history else None)
            total = hyp.ctc
            for k in tried:
                p = float(row[k])
                if k == self.blank:
                    stay = new.setdefault(suffix, Hypothesis(bonus=hyp.bonus, slots=hyp.slots, context=hyp.context))
                    stay.blank = _logadd(stay.blank, total + p)
                    continue
                if k == last:  # the same unit again: it collapses unless a blank came between
                    stay = new.setdefault(suffix, Hypothesis(bonus=hyp.bonus, slots=hyp.slots, context=hyp.context))
                    stay.unit = _logadd(stay.unit, hyp.unit + p)
                    reach = hyp.blank + p
                else:
                    reach = total + p
                if reach == NEG_INF:
                    continue
                longer = suffix + (k,)
                ext = new.get(longer)
                if ext is None:
                    ext = new[longer] = self._extend(hyp, history, k, slot)
                ext.unit = _logadd(ext.unit, reach)
        return new

    def _extend(self, hyp: Hypothesis, history: tuple[int, ...], unit: int, slot: int) -> Hypothesis:
        """`hyp` with `unit` appended (no probability yet): its LM and length score, and its new LM context."""
        if self.lm is None:
            return Hypothesis(bonus=hyp.bonus + self.cfg.beta, slots=hyp.slots + (slot,))
        context = self._context(hyp, history)
        bonus = self.cfg.alpha * self.lm.logprob(context, unit) + self.cfg.beta
        return Hypothesis(bonus=hyp.bonus + bonus, slots=hyp.slots + (slot,), context=(context + (unit,))[1:])

    def _context(self, hyp: Hypothesis, history: tuple[int, ...]) -> tuple[int, ...]:
        """The LM context after `hyp`'s suffix: carried since its last unit, or (empty suffix) the history's."""
        assert self.lm is not None
        return hyp.context if hyp.context is not None else self.lm.context(history)

    # -- committing -------------------------------------------------------------------------
    def _tail(self, units: tuple[int, ...]) -> tuple[int, ...]:
        return units[-self.keep:]

    def _commit(self, state: SearchState, count: int) -> list[tuple[int, int]]:
        """Move the first `count` units of every hypothesis (all equal) into the history."""
        if count == 0:
            return []
        suffix, best = next(iter(state.beams.items()))
        state.beams = {s[count:]: _drop(hyp, count) for s, hyp in state.beams.items()}
        state.history = self._tail(state.history + suffix[:count])
        return list(zip(suffix[:count], best.slots[:count], strict=True))

    def _commit_shared(self, state: SearchState) -> list[tuple[int, int]]:
        suffixes = list(state.beams)
        shared = min(len(s) for s in suffixes)
        for i in range(shared):
            if any(s[i] != suffixes[0][i] for s in suffixes[1:]):
                shared = i
                break
        return self._commit(state, shared)

    def _commit_overdue(self, state: SearchState) -> list[tuple[int, int]]:
        """Decide every unit older than the bound: the best hypothesis's are committed, and the hypotheses
        that disagree with that decision (another unit, or one the best does not have) are dropped."""
        committed: list[tuple[int, int]] = []
        while True:
            best_suffix, best = max(state.beams.items(), key=lambda item: item[1].score)
            if not self._overdue(best, state.slot):
                state.beams = {s: h for s, h in state.beams.items() if h is best or not self._overdue(h, state.slot)}
                return committed
            first = best_suffix[0]
            state.beams = {s: h for s, h in state.beams.items() if s and s[0] == first}
            committed += self._commit(state, 1)

    def _overdue(self, hyp: Hypothesis, slot: int) -> bool:
        assert self.cfg.max_delay_slots is not None
        return bool(hyp.slots) and slot - hyp.slots[0] > self.cfg.max_delay_slots


def _drop(hyp: Hypothesis, count: int) -> Hypothesis:
    return Hypothesis(hyp.blank, hyp.unit, hyp.bonus, hyp.slots[count:], hyp.context)


SEARCH_KEY = "search"


def save_search(lm: UnitLM, config: SearchConfig, path: str | Path) -> Path:
    """The LM with the search settings it was tuned with, in one file (a model folder's unit_lm.safetensors)."""
    return lm.save(path, metadata={SEARCH_KEY: json.dumps(asdict(config))})


def load_search(path: str | Path, blank: int) -> CTCBeamSearch:
    lm = UnitLM.load(path)
    if lm.num_units != blank:
        raise ModelError(f"{path}: the unit LM knows {lm.num_units} units, the model's decoder {blank}")
    try:
        config = SearchConfig(**json.loads(lm.metadata.get(SEARCH_KEY, "{}")))
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path}: bad search settings: {e}") from e
    return CTCBeamSearch(blank, lm, config)
