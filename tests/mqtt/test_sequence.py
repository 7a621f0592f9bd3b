"""SequenceTracker: in order, gaps (counted and filled), duplicates and late frames (dropped), wrap-around."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.mqtt.protocol import AudioFrame, FrameFlags
from streamer.mqtt.sequence import SequenceTracker, SeqVerdict

V = SeqVerdict


def verdicts(tracker: SequenceTracker, seqs: list[int], n: int = 160) -> list[SeqVerdict]:
    return [tracker.observe_seq(s, num_samples=n).verdict for s in seqs]


def test_in_order_stream() -> None:
    t = SequenceTracker()
    assert t.expected is None
    assert verdicts(t, [10, 11, 12]) == [V.FIRST, V.IN_ORDER, V.IN_ORDER]
    assert t.expected == 13
    assert t.stats.accepted == 3 and t.stats.dropped == 0


def test_gap_is_accepted_counted_and_filled() -> None:
    t = SequenceTracker(max_fill_samples=10_000)
    t.observe_seq(0, num_samples=320)
    d = t.observe_seq(4, num_samples=320)
    assert d.verdict is V.GAP and d.accept
    assert (d.missing, d.fill_samples, d.expected) == (3, 960, 1)
    assert "3 frames lost" in d.message
    assert t.stats.gaps == 1 and t.stats.missing == 3 and t.stats.filled_samples == 960


def test_gap_fill_is_capped() -> None:
    t = SequenceTracker(max_fill_samples=1000)
    t.observe_seq(0)
    assert t.observe_seq(1_000_000, num_samples=320).fill_samples == 1000
    no_fill = SequenceTracker(max_fill_samples=0)
    no_fill.observe_seq(0)
    assert no_fill.observe_seq(5, num_samples=320).fill_samples == 0


def test_duplicates_and_late_frames_are_dropped() -> None:
    t = SequenceTracker()
    assert verdicts(t, [0, 1, 3]) == [V.FIRST, V.IN_ORDER, V.GAP]
    d = t.observe_seq(3)
    assert d.verdict is V.DUPLICATE and not d.accept and "duplicate frame seq 3" in d.message
    assert t.observe_seq(1).verdict is V.DUPLICATE
    late = t.observe_seq(2)  # lost in the gap, then arrives after seq 3: too late to splice in
    assert late.verdict is V.OUT_OF_ORDER and not late.accept and "out-of-order" in late.message
    assert t.observe_seq(4).verdict is V.IN_ORDER  # the stream carries on
    assert t.stats.duplicates == 2 and t.stats.out_of_order == 1 and t.stats.dropped == 3


def test_frames_older_than_the_window_are_out_of_order() -> None:
    t = SequenceTracker(window=4)
    verdicts(t, list(range(10)))
    assert t.observe_seq(9).verdict is V.DUPLICATE
    assert t.observe_seq(6).verdict is V.DUPLICATE
    assert t.observe_seq(5).verdict is V.OUT_OF_ORDER  # beyond the window: cannot tell, refuse anyway


def test_wrap_around_uint32() -> None:
    t = SequenceTracker()
    top = 2**32 - 1
    assert verdicts(t, [top - 1, top, 0, 1]) == [V.FIRST, V.IN_ORDER, V.IN_ORDER, V.IN_ORDER]
    assert t.observe_seq(top).verdict is V.DUPLICATE
    d = t.observe_seq(4)
    assert d.verdict is V.GAP and d.missing == 2


def test_start_and_discontinuity_restart_tracking() -> None:
    t = SequenceTracker()
    verdicts(t, [100, 101])
    assert t.observe_seq(0, FrameFlags.START).verdict is V.FIRST
    assert t.observe_seq(1).verdict is V.IN_ORDER
    d = t.observe_seq(500, FrameFlags.DISCONTINUITY)
    assert d.verdict is V.FIRST and d.missing == 0
    assert t.stats.gaps == 0


def test_end_then_after_end_then_start() -> None:
    t = SequenceTracker()
    end = AudioFrame(seq=1, sample_rate=16000, samples=np.zeros(0, np.int16), flags=FrameFlags.END)
    t.observe_seq(0)
    assert t.observe(end).verdict is V.IN_ORDER and t.ended
    d = t.observe_seq(2)
    assert d.verdict is V.AFTER_END and "after the END" in d.message
    assert t.observe_seq(3, FrameFlags.DISCONTINUITY).verdict is V.AFTER_END
    assert t.observe_seq(0, FrameFlags.START).verdict is V.FIRST and not t.ended


def test_reset_and_bad_arguments() -> None:
    t = SequenceTracker()
    verdicts(t, [5, 6])
    t.reset()
    assert t.observe_seq(0).verdict is V.FIRST and t.stats.received == 3
    with pytest.raises(ValueError, match="window"):
        SequenceTracker(window=0)
    with pytest.raises(ValueError, match="max_fill_samples"):
        SequenceTracker(max_fill_samples=-1)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 2**32 - 1),
    ops=st.lists(st.tuples(st.sampled_from(["next", "skip", "dup", "swap"]), st.integers(1, 5)), max_size=60),
)
def test_fuzz_accepted_frames_are_strictly_increasing_and_unique(
    start: int, ops: list[tuple[str, int]]
) -> None:
    """Whatever loss, duplication and reordering the network does, the pipeline sees each seq at most once,
    in increasing order, and lost = span - accepted."""
    sent: list[int] = []
    pos = 0
    for op, k in ops:
        if op == "next":
            sent += [start + pos + i for i in range(k)]
            pos += k
        elif op == "skip":
            pos += k
        elif op == "dup" and sent:
            sent.append(sent[-min(k, len(sent))])
        elif op == "swap" and len(sent) >= 2:
            sent[-1], sent[-2] = sent[-2], sent[-1]
    t = SequenceTracker(window=8)
    accepted: list[int] = []
    for s in sent:
        if t.observe_seq(s % 2**32).accept:
            accepted.append(s)
    assert accepted == sorted(set(accepted))
    st_ = t.stats
    assert st_.received == len(sent) == st_.accepted + st_.dropped
    if accepted:
        assert st_.missing == (accepted[-1] - accepted[0] + 1) - len(accepted)
