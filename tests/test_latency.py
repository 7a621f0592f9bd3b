"""Tests for streamer.latency: hand-computed SimulEval metrics, the chunk helper and compute stats."""

from __future__ import annotations

import math
from argparse import Namespace

import numpy as np
import pytest

from streamer.errors import AudioError
from streamer.latency import (
    ComputeStats,
    LatencyStats,
    Segment,
    aggregate,
    compute_latency,
    segments_from_chunks,
)

approx = pytest.approx

# Example A: 1000 ms of source, three 300 ms segments emitted after 200, 600 and 1000 ms of input,
# with cumulative compute 10, 30, 60 ms (per-step compute 10, 20, 30 ms).
SRC_A = 1000.0
SEG_A = (Segment(200, 300, 10), Segment(600, 300, 30), Segment(1000, 300, 60))


def test_example_a_plain_metrics() -> None:
    st = compute_latency(SRC_A, SEG_A)
    # StartOffset = first delay = 200
    assert st.start_offset_ms == 200
    # intervals: [200, 500], [max(500, 600)=600, 900], [max(900, 1000)=1000, 1300]; EndOffset = 1300 - 1000
    assert st.end_offset_ms == 300
    # AL, |Y| = 3 segments, |X|/|Y| = 333.33: (200 - 0) + (600 - 333.33) + (1000 - 666.67) = 800; / tau=3
    assert st.al_ms == approx(800 / 3)
    assert st.laal_ms == approx(800 / 3)  # max(3, 3) = 3: same as AL
    # ATD: target tokens one per segment (300 ms each); source chunks 200, 400, 400 ms -> tokens
    # [200], [300, 100], [300, 100] ending at 200, 500, 600, 900, 1000. Target token ends: 500, 900, 1300.
    # Alignment: t=1 -> s=1 (200), t=2 -> s=2 (500), t=3 -> s=3 (600): lags 300, 400, 700.
    assert st.atd_ms == approx(1400 / 3)
    assert st.source_ms == 1000 and st.output_ms == 900 and st.num_utterances == 1


def test_example_a_computation_aware_adds_compute() -> None:
    st = compute_latency(SRC_A, SEG_A)
    # elapsed = delay + cumulative compute = 210, 630, 1060
    assert st.start_offset_ca_ms == 210 == st.start_offset_ms + 10
    # AL_CA: 210 + (630 - 333.33) + (1060 - 666.67) = 900; / 3 = 300 = AL + mean(10, 30, 60)
    assert st.al_ca_ms == approx(300)
    assert st.al_ca_ms - st.al_ms == approx((10 + 30 + 60) / 3)
    assert st.laal_ca_ms == approx(300)
    # intervals from elapsed: [210, 510], [630, 930], [1060, 1360]; EndOffset_CA = 360 = EndOffset + 60
    assert st.end_offset_ca_ms == approx(360)
    # ATD_CA: target token ends get each step's compute: 510, 920, 1330 -> lags 310, 420, 730
    assert st.atd_ca_ms == approx(1460 / 3)
    assert st.atd_ca_ms - st.atd_ms == approx((10 + 20 + 30) / 3)
    for name in ("start_offset", "end_offset", "al", "laal", "atd"):
        assert getattr(st, f"{name}_ca_ms") > getattr(st, f"{name}_ms")


def test_reference_length_al_vs_laal() -> None:
    # |Y| = 4 (longer reference): |X|/|Y| = 250: 200 + 350 + 500 = 1050; / 3 = 350; LAAL max(3, 4) = 4: same
    st = compute_latency(SRC_A, SEG_A, reference_length=4)
    assert st.al_ms == approx(350) and st.laal_ms == approx(350)
    # |Y| = 2 (over-generation): |X|/|Y| = 500: 200 + 100 + 0 = 300; / 3 = 100. LAAL uses max(3, 2) = 3.
    st = compute_latency(SRC_A, SEG_A, reference_length=2)
    assert st.al_ms == approx(100)
    assert st.laal_ms == approx(800 / 3)


def test_laal_equals_al_when_output_length_equals_reference() -> None:
    plain = compute_latency(SRC_A, SEG_A)
    for kwargs in ({"reference_length": 3}, {"reference_ms": 900.0}):
        st = compute_latency(SRC_A, SEG_A, **kwargs)
        assert st.laal_ms == approx(st.al_ms) == approx(plain.al_ms)
        assert st.laal_ca_ms == approx(st.al_ca_ms)
    # reference_ms = 1800 -> |Y| = 3 * 1800 / 900 = 6, as reference_length=6
    by_ms = compute_latency(SRC_A, SEG_A, reference_ms=1800.0)
    assert by_ms == compute_latency(SRC_A, SEG_A, reference_length=6)


def test_output_starts_after_all_input() -> None:
    # 500 ms of source; two segments (200 ms, 300 ms) both emitted after the whole input.
    st = compute_latency(500, [Segment(500, 200, 20), Segment(500, 300, 50)])
    assert st.start_offset_ms == 500
    # intervals [500, 700], [700, 1000]; EndOffset = 1000 - 500 = 500 (the whole output duration)
    assert st.end_offset_ms == 500
    # AL: first delay 500 >= |X| -> tau = 1, AL = 500
    assert st.al_ms == 500 and st.laal_ms == 500
    # ATD: one merged 500 ms chunk -> target tokens [300, 200] ending 800, 1000;
    # source tokens [300, 200] ending 300, 500: lags 500, 500
    assert st.atd_ms == approx(500)
    # CA: elapsed 520, 550; 520 > |X| -> AL_CA = elapsed[0] = 520 (SimulEval's early return)
    assert st.al_ca_ms == 520 and st.start_offset_ca_ms == 520
    # intervals [520, 720], [720, 1020] -> 520
    assert st.end_offset_ca_ms == approx(520)
    # ATD_CA: compute steps 20 + 30 = 50 spread over 2 tokens (25 each): ends 825, 1050 -> 525, 550
    assert st.atd_ca_ms == approx(537.5)


def test_atd_two_segments() -> None:
    # 600 ms source; segment 1: 450 ms after 300 ms of input; segment 2: 150 ms after 600 ms.
    # Target tokens: [300, 150] (chunk 1), [150] (chunk 2). Source tokens: [300], [300] ending 300, 600.
    # Target ends: 300 + 300 = 600; max(300, 600) + 150 = 750; max(600, 750) + 150 = 900.
    # t=1 -> s=1 (300): 300; t=2 -> s=min(2, 1)=1: 450; t=3: S = 3 - (2 - 1) = 2 -> 600: 300.
    st = compute_latency(600, [Segment(300, 450), Segment(600, 150)])
    assert st.atd_ms == approx((300 + 450 + 300) / 3)
    # equal split: each target token ends 300 ms after its source token
    assert compute_latency(600, [Segment(300, 300), Segment(600, 300)]).atd_ms == approx(300)


def test_empty_output_is_nan_and_skipped_by_aggregate() -> None:
    empty = compute_latency(800, [])
    assert empty.num_utterances == 0 and empty.output_ms == 0
    assert all(math.isnan(v) for v in empty.as_dict().values())
    agg = aggregate([empty, compute_latency(SRC_A, SEG_A)])
    assert agg.num_utterances == 1 and agg.al_ms == approx(800 / 3) and agg.source_ms == 1000
    assert math.isnan(aggregate([empty]).al_ms)
    with pytest.raises(ValueError):
        aggregate([])


def test_without_compute_ca_is_nan_and_aggregate_per_metric() -> None:
    no_cmp = compute_latency(500, [Segment(500, 200), Segment(500, 300)])
    assert math.isnan(no_cmp.al_ca_ms) and no_cmp.al_ms == 500
    a = compute_latency(SRC_A, SEG_A)
    agg = aggregate([a, no_cmp])
    assert agg.num_utterances == 2
    assert agg.al_ms == approx((800 / 3 + 500) / 2)
    assert agg.al_ca_ms == approx(300)  # only the utterance that has compute times
    with pytest.raises(ValueError):
        compute_latency(500, [Segment(400, 200, 1.0), Segment(500, 300)])


def test_invalid_inputs() -> None:
    for segs in ([Segment(600, 100)], [Segment(300, 100), Segment(200, 100)], [Segment(100, 0)]):
        with pytest.raises(ValueError):
            compute_latency(500, segs)
    with pytest.raises(ValueError):
        compute_latency(0, [])
    with pytest.raises(ValueError):
        compute_latency(500, [Segment(100, 100)], reference_length=3, reference_ms=100)
    with pytest.raises(ValueError):
        compute_latency(500, [Segment(100, 100, 5), Segment(200, 100, 4)])  # compute went backwards


def test_as_dict_and_seconds() -> None:
    st = compute_latency(SRC_A, SEG_A)
    d = st.as_dict()
    metrics = ("StartOffset", "EndOffset", "AL", "LAAL", "ATD")
    assert set(d) == {f"{m}{s}" for m in metrics for s in ("", "_CA")}
    assert d["StartOffset_CA"] == 210
    assert st.as_dict("s")["EndOffset"] == approx(0.3)
    assert st.seconds("LAAL_CA") == approx(0.3) and st.seconds("start_offset_ms") == approx(0.2)
    assert isinstance(st, LatencyStats)


def test_segments_from_chunks() -> None:
    sr, n = 1000, 160  # 1 sample per ms: a 160 ms chunk is 160 samples, 10 ms frames are 10 samples
    chunks = [
        np.zeros(n),                                            # silent: skipped
        np.concatenate([np.zeros(40), np.full(80, 0.5), np.zeros(40)]),  # trimmed to 80 ms
        np.full(n, 0.5),                                        # all speech: 160 ms
        np.full(n, 1e-4),                                       # -80 dBFS (flush chunk): skipped
    ]
    times = [0.01, 0.02, 0.03, 0.04]
    segs = segments_from_chunks(chunks, sample_rate=sr, source_ms=400, compute_times_s=times)
    # emission: chunk 1 after 2 * 160 = 320 ms; chunk 2 after min(480, 400) = 400 ms.
    # cumulative compute includes silent chunks: 10 + 20 = 30, + 30 = 60
    assert segs == (Segment(320, 80, 30), Segment(400, 160, 60))
    assert segments_from_chunks(chunks, sample_rate=sr, source_ms=400)[0].compute_elapsed_ms is None
    # a lower threshold keeps the -80 dBFS chunk
    assert len(segments_from_chunks(chunks, sample_rate=sr, source_ms=400, silence_db=-90)) == 3
    with pytest.raises(AudioError):
        segments_from_chunks([np.zeros((2, 80))], sample_rate=sr, source_ms=400)
    with pytest.raises(ValueError):
        segments_from_chunks(chunks, sample_rate=sr, source_ms=400, compute_times_s=[0.01])


def test_compute_stats_known_arrays() -> None:
    cs = ComputeStats.from_times(np.arange(1, 101) / 1000.0, chunk_ms=160)  # 1, 2, ..., 100 ms
    # linear-interpolated percentiles at positions q * 99: 49.5 -> 50.5, 94.05 -> 95.05, 98.01 -> 99.01
    assert (cs.p50_ms, cs.p95_ms, cs.p99_ms) == approx((50.5, 95.05, 99.01))
    assert cs.mean_ms == approx(50.5) and cs.max_ms == approx(100)
    assert cs.rtf == approx(5050 / (100 * 160))  # total compute / total audio
    assert cs.trend_slope == approx(1.0) and cs.n_chunks == 100
    flat = ComputeStats.from_times([0.02] * 50)
    assert flat.trend_slope == approx(0.0, abs=1e-9) and flat.rtf == approx(20 / 160)
    assert ComputeStats.from_times([0.01, 0.02, 0.03, 0.04]).trend_slope == approx(10.0)
    assert ComputeStats.from_times([0.005]).trend_slope == 0.0
    with pytest.raises(ValueError):
        ComputeStats.from_times([])


# ---- cross-check against SimulEval's own scorers (pip install simuleval) ----


def _simuleval_instance(tmp_path, monkeypatch, source_ms: int, segs, reference: str | None):
    """Drive a real SpeechToSpeechInstance through receive_prediction at 1 kHz (1 sample = 1 ms),
    with a fake clock so that SimulEval's elapsed = delay + compute_elapsed_ms."""
    from simuleval.data.segments import SpeechSegment
    from simuleval.evaluator import instance as inst_mod

    clock = {"now": 0.0}
    monkeypatch.setattr(inst_mod, "time", Namespace(time=lambda: clock["now"]))
    ins = inst_mod.SpeechToSpeechInstance(0, None, Namespace(output=str(tmp_path), eval_latency_unit="word"))
    ins.reference = reference
    ins.sample_list, ins.sample_rate_value = [0.0] * source_ms, 1000
    ins.dataloader = Namespace(get_source_audio_path=lambda i: "src.wav")
    ins.start_time = 0.0
    for k, s in enumerate(segs):
        ins.step = int(s.emission_ms)
        clock["now"] = s.compute_elapsed_ms / 1000.0
        ins.receive_prediction(SpeechSegment(content=[0.1] * int(s.duration_ms), sample_rate=1000,
                                             finished=k == len(segs) - 1))
    return ins


@pytest.mark.parametrize(
    ("source_ms", "segs", "reference"),
    [
        (1000, SEG_A, None),
        (1000, SEG_A, "uno dos tres cuatro"),
        (1600, (Segment(320, 80, 30), Segment(480, 160, 55), Segment(480, 500, 90),
                Segment(1280, 160, 130), Segment(1600, 640, 200)), "a b c d e f g"),
    ],
)
def test_matches_simuleval(tmp_path, monkeypatch, source_ms, segs, reference) -> None:
    sc = pytest.importorskip("simuleval.evaluator.scorers.latency_scorer", reason="simuleval not installed")
    ins = _simuleval_instance(tmp_path, monkeypatch, source_ms, segs, reference)
    ref_len = None if reference is None else len(reference.split(" "))
    ours = compute_latency(source_ms, segs, reference_length=ref_len).as_dict()
    names = {"StartOffset": sc.StartOffsetScorer, "EndOffset": sc.EndOffsetScorer, "AL": sc.ALScorer,
             "LAAL": sc.LAALScorer, "ATD": sc.ATDScorer}
    for name, cls in names.items():
        for ca in (False, True):
            theirs = cls(computation_aware=ca, use_ref_len=True)({0: ins})
            if name == "EndOffset" and ca:
                # Deviation: SimulEval builds speech intervals from non-CA delays, so its CA EndOffset
                # equals EndOffset; ours rebuilds them from elapsed.
                assert theirs == approx(ours["EndOffset"])
                assert ours["EndOffset_CA"] >= theirs
                continue
            assert ours[name + ("_CA" if ca else "")] == approx(theirs), (name, ca)
    # SimulEval's instances.log (what its CLI scores) drops elapsed for speech output
    assert ins.summarize()["elapsed"] == []
