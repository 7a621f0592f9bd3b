"""The SimulEval adapter, run by the real `simuleval` CLI, agrees with `streamer bench` on the same audio."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamer.bench import BenchConfig, run_bench

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "streamer" / "simuleval_agent.py"


def _simuleval() -> list[str]:
    try:
        import simuleval  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"simuleval is not importable ({exc}); pip install simuleval (dev extra)")
    return [sys.executable, "-m", "simuleval.cli"]


def test_speech_span_trims_silence_like_the_latency_segments() -> None:
    pytest.importorskip("simuleval", reason="simuleval is not importable; pip install simuleval")
    from streamer.latency import segments_from_chunks
    from streamer.simuleval_agent import speech_span

    x = np.zeros(2560, np.float32)
    x[700:1500] = 0.3 * np.sin(np.arange(800) / 5.0)
    span = speech_span(x, 16_000)
    seg = segments_from_chunks([x], sample_rate=16_000, source_ms=160.0)
    assert len(span) == 960 and seg[0].duration_ms == pytest.approx(1000 * len(span) / 16_000)
    assert speech_span(np.zeros(2560, np.float32), 16_000).size == 0


def test_simuleval_cli_runs_the_agent_and_agrees_with_the_bench(
        tiny_model_dir: Path, speech_wavs: tuple[str, ...], tmp_path: Path) -> None:
    cmd = _simuleval()
    (tmp_path / "source.txt").write_text("\n".join(speech_wavs) + "\n")
    (tmp_path / "target.txt").write_text("hola\n" * len(speech_wavs))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [*cmd, "--agent", str(AGENT), "--model-dir", str(tiny_model_dir), "--source", str(tmp_path / "source.txt"),
         "--target", str(tmp_path / "target.txt"), "--source-segment-size", "160", "--output", str(out),
         "--latency-metrics", "StartOffset", "EndOffset", "--quality-metrics", "BLEU", "--no-progress-bar"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "scores.tsv") as f:
        scores = next(csv.DictReader(f, delimiter="\t"))
    start, end = float(scores["StartOffset"]), float(scores["EndOffset"])
    assert math.isfinite(start) and math.isfinite(end) and 0 < start < end
    instances = [json.loads(line) for line in (out / "instances.log").read_text().splitlines()]
    assert len(instances) == len(speech_wavs)
    for ins in instances:  # the whole flushed tail went out in the one call after the source finished
        assert ins["delays"][-1] == pytest.approx(ins["source_length"])
        assert len(ins["delays"]) == len(ins["durations"]) >= 2

    ours = run_bench(BenchConfig(model=str(tiny_model_dir), inputs=speech_wavs, chunk_ms=(160,), streams=(),
                                 baseline=False, long_input_s=1.0, progress=False)).latency[0]
    by_source = {Path(ins["source"]).stem: ins for ins in instances}
    for utt in ours.utterances:
        ins = by_source[utt.name]
        last_start, last_duration = ins["intervals"][-1]
        assert ins["delays"][0] == pytest.approx(utt.latency.start_offset_ms, abs=0.5)
        assert last_start + last_duration - ins["source_length"] == pytest.approx(utt.latency.end_offset_ms, abs=0.5)
    assert start == pytest.approx(ours.latency.start_offset_ms, abs=1.0)  # scores.tsv rounds to 3 decimals
    assert end == pytest.approx(ours.latency.end_offset_ms, abs=1.0)
