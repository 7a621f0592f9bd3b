"""The latency benchmark runner on the tiny model: metrics, modes, sweeps, baseline and report files."""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import fields
from pathlib import Path

import pytest

from streamer.bench import (
    BenchConfig,
    BenchError,
    BenchReport,
    add_bench_args,
    cmd_bench,
    config_from_args,
    run_bench,
    write_report,
)
from streamer.latency import LatencyStats

ROOT = Path(__file__).resolve().parents[2]
# Metrics whose computation-aware version can never be below the plain one. AL and LAAL can be: see
# test_computation_aware_al_can_be_lower.
MONOTONE = ("start_offset", "end_offset", "atd")


@pytest.fixture(scope="module")
def report(tiny_model_dir: Path, speech_wavs: tuple[str, ...]) -> BenchReport:
    """One simulated run: 2 utterances x 2 chunk sizes, a 4-point stream sweep, a 20 s cost comparison."""
    config = BenchConfig(model=str(tiny_model_dir), inputs=speech_wavs, chunk_ms=(160, 320), streams=(1, 4, 16, 64),
                         stream_rounds=20, long_input_s=20.0, baseline_points=6, progress=False)
    return run_bench(config)


def _finite(stats: LatencyStats) -> None:
    for f in fields(LatencyStats):
        assert math.isfinite(getattr(stats, f.name)), f.name


def test_metrics_finite_and_computation_aware_not_below(report: BenchReport) -> None:
    assert [(r.backend, r.block_ms) for r in report.latency] == [("eager", 160), ("eager", 320)]
    for run in report.latency:
        assert run.latency.num_utterances == 2 and len(run.utterances) == 2
        for stats in [run.latency] + [u.latency for u in run.utterances]:
            _finite(stats)
            for m in MONOTONE:
                assert getattr(stats, f"{m}_ca_ms") >= getattr(stats, f"{m}_ms"), m
        c = run.compute
        assert 0 < c.p50_ms <= c.p95_ms <= c.p99_ms <= c.max_ms and c.rtf > 0
        assert c.n_chunks == len(run.chunk_compute_ms) == sum(u.compute.n_chunks for u in run.utterances)
        assert all(0 < u.ttfa_ms < 10_000 for u in run.utterances)
        assert run.peak_rss_mb > 0 and run.rss_delta_mb >= 0
    small, large = report.latency
    # a larger chunk emits its first output no earlier: the first block ends later
    assert large.latency.start_offset_ms >= small.latency.start_offset_ms + 100
    assert report.model["chunk_ms"] == 160 and not report.model["random_init"]
    assert report.machine["cpu"] and report.machine["torch"]


def test_computation_aware_al_can_be_lower() -> None:
    """SimulEval's AL averages the lags up to the first output at or after the end of the source. Compute
    time moves that point earlier, which can drop a large late term: AL_CA < AL while ATD_CA > ATD."""
    from streamer.latency import Segment, compute_latency

    segments = [Segment(100, 100, 0), Segment(950, 100, 60), Segment(1000, 100, 60), Segment(1000, 100, 60)]
    stats = compute_latency(1000, segments)
    assert stats.al_ms == pytest.approx(1300 / 3) and stats.al_ca_ms == pytest.approx(430)
    assert stats.atd_ca_ms > stats.atd_ms and stats.start_offset_ca_ms >= stats.start_offset_ms


def test_our_cost_is_flat_while_reencoding_grows(report: BenchReport) -> None:
    ours = next(c for c in report.cost if c.label.startswith("streamer"))
    base = next(c for c in report.cost if c.label.startswith("re-encode"))
    assert len(ours.position_s) == 125 and ours.position_s[-1] == pytest.approx(20.0)
    assert 4 <= len(base.position_s) <= 6 and base.position_s[-1] == pytest.approx(20.0)
    # Our own growth is wall-clock noise around 0 on a shared CI machine (it read -0.65 once, with the first third
    # the slow one), so its bound lives in benchmarks/latency.py's report, not here; only the 10x gap is asserted.
    assert base.growth > 1.0 and base.slope_ms_per_s > 0, (base.growth, base.slope_ms_per_s)
    assert ours.slope_ms_per_s < 0.1 * base.slope_ms_per_s
    assert base.compute_ms[-1] > 3 * base.compute_ms[0]


def test_stream_sweep_p99_grows_with_streams(report: BenchReport) -> None:
    points = [p for p in report.streams if p.backend == "eager"]
    counts = [p.streams for p in points]
    # The sweep stops at the first count that is not real time (how far it gets depends on the machine's load).
    assert counts == [1, 4, 16, 64][: len(counts)] and len(counts) >= 2
    assert len(counts) == 4 or not points[-1].realtime
    p99 = [p.rounds.p99_ms for p in points]
    assert p99[-1] > p99[0]
    # monotone-ish: at most one step down by more than half (a scheduling hiccup on a shared machine)
    assert sum(b < 0.5 * a for a, b in zip(p99, p99[1:], strict=False)) <= 1, p99
    assert report.max_streams["eager"] == max((p.streams for p in points if p.realtime), default=0)
    assert all(p.realtime == (p.rounds.p99_ms <= 160) for p in points)


def test_report_files_are_written(report: BenchReport, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "md", "compute_cdf", "latency_vs_chunk", "streams_p99", "cost_vs_length"}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    for name in ("compute_cdf", "latency_vs_chunk", "streams_p99", "cost_vs_length"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN would have been written as null
    assert data["latency"][0]["latency"]["start_offset_ms"] == report.latency[0].latency.start_offset_ms
    assert data["references_s"]["StreamSpeech (published)"]["StartOffset_CA"] == 2.21
    assert set(data["targets_met"]) == {"eager@160", "eager@320"}
    md = paths["md"].read_text()
    for needle in ("StartOffset", "StreamSpeech", "re-encode prefix", "Concurrent streams", report.machine["cpu"]):
        assert needle in md


def test_realtime_mode_is_paced_and_measures_wall_clock(speech_wavs: tuple[str, ...]) -> None:
    config = BenchConfig(preset="tiny", inputs=speech_wavs[:1], mode="realtime", chunk_ms=(160,), streams=(),
                         baseline=False, long_input_s=1.0, progress=False)
    start = time.perf_counter()
    run = run_bench(config).latency[0]
    utt = run.utterances[0]
    assert time.perf_counter() - start >= utt.source_ms / 1000.0  # the input really was paced
    assert run.mode == "realtime"
    _finite(utt.latency)
    for m in MONOTONE:
        assert getattr(utt.latency, f"{m}_ca_ms") >= getattr(utt.latency, f"{m}_ms")
    assert 0 < utt.ttfa_ms < 2000


def test_config_checks() -> None:
    with pytest.raises(BenchError, match="mode"):
        BenchConfig(inputs=("x.wav",), mode="fast")
    with pytest.raises(BenchError, match="inputs"):
        BenchConfig()
    with pytest.raises(BenchError, match="preset"):
        BenchConfig(inputs=("x.wav",), preset="huge")
    assert BenchConfig(inputs=["x.wav"], chunk_ms=[160]).chunk_ms == (160,)  # lists (YAML) become tuples


def test_chunk_size_must_be_a_multiple_of_the_model_chunk(speech_wavs: tuple[str, ...]) -> None:
    config = BenchConfig(preset="tiny", inputs=speech_wavs[:1], chunk_ms=(200,), streams=(), baseline=False,
                         long_input_s=1.0, progress=False)
    with pytest.raises(BenchError, match="multiple"):
        run_bench(config)


def test_shipped_yaml_configs_load(tmp_path: Path) -> None:
    configs = sorted((ROOT / "configs" / "bench").glob("*.yaml"))
    assert configs
    for path in configs:
        assert isinstance(BenchConfig.from_yaml(path, inputs=("x.wav",)), BenchConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [x.wav]\nchunks: [160]\n")
    with pytest.raises(BenchError, match="unknown bench settings"):
        BenchConfig.from_yaml(bad)


def test_cli_arguments_run_the_bench(speech_wavs: tuple[str, ...], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_bench_args(parser)
    args = parser.parse_args([*speech_wavs, "--preset", "tiny", "--chunk-ms", "160", "--streams", "1",
                              "--long-input-s", "2", "--no-baseline", "--no-progress", "--out", str(tmp_path)])
    config = config_from_args(args)
    assert config.inputs == speech_wavs and config.preset == "tiny" and not config.baseline
    assert cmd_bench(args) == 0
    assert "StartOffset" in capsys.readouterr().out
    assert (tmp_path / "report.json").is_file() and (tmp_path / "cost_vs_length.png").is_file()


def test_cost_curve_slope_growth_and_crossing() -> None:
    from streamer.bench import CostCurve

    flat = CostCurve.build("flat", [1, 2, 3, 4, 5, 6], [10, 11, 10, 10, 11, 10])
    assert abs(flat.slope_ms_per_s) < 0.2 and abs(flat.growth) < 0.2 and flat.crossing_s(160) is None
    steep = CostCurve.build("steep", [1, 2, 3, 4, 5, 6], [40, 80, 120, 200, 240, 280])
    assert steep.slope_ms_per_s == pytest.approx(880 / 17.5) and steep.growth > 1
    assert steep.crossing_s(160) == pytest.approx(3.5)


def test_yaml_overrides_and_model_sources(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("preset: default\ninputs: [a.wav]\nchunk_ms: [160, 320]\n")
    assert BenchConfig.from_yaml(path).preset == "default"
    config = BenchConfig.from_yaml(path, model="m", chunk_ms=[640], mode=None)
    assert (config.model, config.preset, config.chunk_ms, config.mode) == ("m", None, (640,), "simulated")
    with pytest.raises(BenchError, match="not both"):
        BenchConfig(inputs=("a.wav",), model="m", preset="tiny")


def test_lm_decoding_is_benchmarked_and_its_delay_stays_bounded() -> None:
    """The shipped en-es model with its unit LM search and greedy, on the example speech: the report says
    which decoding ran, and the search delays speech by no more than its bound plus one chunk."""
    from streamer.models.ctc_search import load_search
    from streamer.models.unit_lm import LM_NAME

    inputs = tuple(str(p) for p in sorted((ROOT / "examples").glob("*.wav")))
    runs = {}
    for decoding in ("lm", "greedy"):
        config = BenchConfig(pair="en-es", inputs=inputs, chunk_ms=(160,), streams=(), baseline=False,
                             long_input_s=3.0, decoding=decoding, progress=False)
        report = run_bench(config)
        assert report.model["decoding"] == {"eager": decoding}
        runs[decoding] = report.latency[0].latency
    search = load_search(ROOT / "streamer/assets/en-es" / LM_NAME, 48)
    bound_ms = (search.cfg.max_delay_slots + 8) * 20  # the bound plus one 160 ms chunk of 8 slots
    for metric in ("start_offset_ms", "al_ms"):
        delay = getattr(runs["lm"], metric) - getattr(runs["greedy"], metric)
        assert -200 < delay <= bound_ms, (metric, delay)
    with pytest.raises(BenchError, match="decoding must be one of"):
        BenchConfig(inputs=inputs, decoding="beam")
