"""Backend comparison: per-chunk compute p50/p99, RTF and real-time stream capacity per backend and batch.

    python benchmarks/backends.py                                  # eager, compile, onnx at batch 1, 8, 32
    python benchmarks/backends.py --backends onnx --batches 1,32 --threads 1
    python benchmarks/backends.py --device cuda --backends eager,compile,tensorrt,tensorrt-fp16 \
        --batches 1,2,4,8,16,32,64,128,256 --out $OUT

Model: --model DIR, else --pair (a shipped pair), else the shipped en-es if present, else the default
(shipped-size) config with seeded random weights. Compute cost does not depend on the weights' values.
Each row times `runner.step` on a batch of B streams (host->device and device->host copies included)
after a warm-up. streams_rt = floor(B * chunk_ms / p99_ms): streams one process serves in real time
by repeating that batched step; streams_machine multiplies by the processes that fit on the usable
cores at --threads each (an estimate that assumes processes scale linearly; the machine may be shared).
Writes backends.json and backends.md to --out (default benchmarks/results/<date>-<cpu|gpu>-backends).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from streamer.bench_report import machine_info, progress_bar  # noqa: E402
from streamer.engine import BackendConfig, Runner, make_runner  # noqa: E402
from streamer.errors import StreamerError  # noqa: E402
from streamer.latency import ComputeStats  # noqa: E402
from streamer.models.s2st import S2STConfig, S2STModel  # noqa: E402

LABELS = ("eager", "compile", "compile-ro", "onnx", "tensorrt", "tensorrt-fp16")
TARGET_P99_MS = 16.0          # ONNX, 1 thread, batch 1, per 160 ms chunk
TARGET_STREAMS_2_CORES = 32   # with batching


@dataclass(frozen=True)
class Row:
    """One (backend, batch) measurement. Times in ms per batched step (all B streams)."""

    backend: str
    batch: int
    threads: int
    device: str
    chunk_ms: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    rtf: float
    per_stream_p50_ms: float
    streams_rt: int
    streams_machine: int
    trend_slope: float


def load_bench_model(model_dir: str | None, pair: str | None) -> tuple[S2STModel, str]:
    """The model to time and a description of where it came from."""
    from streamer.models.checkpoint import load_model

    if model_dir:
        return load_model(model_dir), model_dir
    from streamer.assets import ASSETS
    from streamer.assets import model_dir as shipped

    if pair:
        return load_model(shipped(pair)), f"shipped {pair}"
    if (ASSETS / "en-es" / "model.safetensors").is_file():
        return load_model(shipped("en-es")), "shipped en-es"
    torch.manual_seed(0)
    return S2STModel(S2STConfig()).eval(), "default config (random weights, seed 0)"


def build_runner(label: str, model: S2STModel, *, threads: int, device: str, max_batch: int,
                 batches: Sequence[int], cache_dir: str | None) -> tuple[Runner, float]:
    """The runner for a label and the seconds it took to build (export / compile / engine build)."""
    start = time.perf_counter()
    name = label.removesuffix("-fp16").removesuffix("-ro")
    if name in ("eager", "compile"):
        model = copy.deepcopy(model).to(device)
    if name == "compile":
        from streamer.engine.compiled import CompiledRunner
        from streamer.engine.export import cache_root

        mode = "reduce-overhead" if label.endswith("-ro") else "default"
        config = BackendConfig(name="compile", cache_dir=cache_dir)
        runner: Runner = CompiledRunner(model, num_threads=threads, mode=mode, cache_dir=cache_root(config),
                                        warmup=batches)
    else:
        config = BackendConfig(name=name, num_threads=threads, fp16=label.endswith("-fp16"), max_batch=max_batch,
                               cache_dir=cache_dir)
        runner = make_runner(model, config)
    return runner, time.perf_counter() - start


def time_runner(runner: Runner, batch: int, *, chunks: int, warmup: int, device: str, tick: Any) -> list[float]:
    """Seconds per batched step for `chunks` steps after `warmup` untimed ones (outputs fetched to host)."""
    g = torch.Generator().manual_seed(batch)
    n = runner.config.chunk_samples
    audio = [0.3 * torch.randn(batch, n, generator=g) for _ in range(8)]
    state = runner.init_state(batch)
    times = []
    for i in range(warmup + chunks):
        x = audio[i % len(audio)]
        start = time.perf_counter()
        # The eager runner does not move tensors; the others take host audio and move it themselves.
        out, units, state = runner.step(x.to(device) if _is_eager(runner) else x, state)
        out, units = out.cpu(), units.cpu()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
        tick()
    return times


def _is_eager(runner: Runner) -> bool:
    return getattr(runner, "name", "") == "eager"


def summarize(label: str, batch: int, times: list[float], *, threads: int, device: str, chunk_ms: int,
              cores: int) -> Row:
    stats = ComputeStats.from_times(times, chunk_ms=chunk_ms)
    streams = math.floor(batch * chunk_ms / stats.p99_ms) if stats.p99_ms > 0 else 0
    processes = max(1, cores // max(1, threads)) if device == "cpu" else 1
    return Row(label, batch, threads, device, chunk_ms, round(stats.p50_ms, 3), round(stats.p99_ms, 3),
               round(stats.mean_ms, 3), round(stats.rtf, 4), round(stats.p50_ms / batch, 3), streams,
               streams * processes, round(stats.trend_slope, 5))


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Backend comparison", "",
        f"Model: {result['model']} ({result['params_m']:.2f} M parameters, chunk {result['chunk_ms']} ms). "
        f"Machine: {m.get('cpu')}, {m.get('usable_cores')} usable cores, GPU {m.get('gpu')}, "
        f"load average {m.get('load_avg_1_5_15')} at start; torch {m.get('torch')}, "
        f"onnxruntime {m.get('onnxruntime')}.", "",
        f"{result['chunks']} timed steps per row after {result['warmup']} warm-up steps. Times are per batched "
        "step (all B streams). streams_rt = floor(B x chunk / p99) for one process; streams_machine x "
        "processes fitting the usable cores (estimate).", "",
        "| backend | device | threads | batch | p50 ms | p99 ms | RTF | per-stream p50 ms | streams_rt "
        "| streams_machine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['backend']} | {r['device']} | {r['threads']} | {r['batch']} | {r['p50_ms']:.2f} "
                     f"| {r['p99_ms']:.2f} | {r['rtf']:.3f} | {r['per_stream_p50_ms']:.2f} | {r['streams_rt']} "
                     f"| {r['streams_machine']} |")
    lines += ["", "Build times (export / compile / engine build, s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in result["build_s"].items()), ""]
    if result.get("targets"):
        lines += ["Targets:", *[f"- {k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items()], ""]
    return "\n".join(lines)


def targets(rows: list[Row]) -> dict[str, bool]:
    out = {}
    onnx1 = [r for r in rows if r.backend == "onnx" and r.batch == 1 and r.threads == 1]
    if onnx1:
        out[f"onnx 1 thread batch 1 p99 <= {TARGET_P99_MS:g} ms"] = onnx1[0].p99_ms <= TARGET_P99_MS
    onnx = [r for r in rows if r.backend == "onnx" and r.device == "cpu"]
    if onnx:
        best = max(r.streams_rt * max(1, 2 // r.threads) for r in onnx)
        out[f">= {TARGET_STREAMS_2_CORES} streams in real time on 2 cores (onnx, batching)"] = (
            best >= TARGET_STREAMS_2_CORES)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    model, source = load_bench_model(args.model, args.pair)
    labels = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in labels if b not in LABELS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; choose from {', '.join(LABELS)}")
    batches = sorted({int(b) for b in args.batches.split(",")})
    cores = len(os.sched_getaffinity(0))
    chunk_ms = model.cfg.chunk_ms
    rows: list[Row] = []
    build_s: dict[str, float] = {}
    machine = machine_info()
    with progress_bar(not args.no_progress) as bar:
        for label in labels:
            runner, build_s[label] = build_runner(label, model, threads=args.threads, device=args.device,
                                                  max_batch=max(batches), batches=batches, cache_dir=args.cache_dir)
            for batch in batches:
                tick = bar(f"{label} B={batch}", args.warmup + args.chunks)
                times = time_runner(runner, batch, chunks=args.chunks, warmup=args.warmup, device=args.device,
                                    tick=tick)
                rows.append(summarize(label, batch, times, threads=args.threads, device=args.device,
                                      chunk_ms=chunk_ms, cores=cores))
            del runner
    return {
        "model": source, "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "chunk_ms": chunk_ms,
        "config": model.cfg.to_dict(), "chunks": args.chunks, "warmup": args.warmup, "machine": machine,
        "build_s": build_s, "rows": [asdict(r) for r in rows], "targets": targets(rows),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: shipped en-es, else random default)")
    parser.add_argument("--pair", default=None, help="a shipped language pair instead of --model")
    parser.add_argument("--backends", default="eager,compile,onnx", help=f"comma list of {', '.join(LABELS)}")
    parser.add_argument("--batches", default="1,8,32", help="comma list of batch sizes")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (torch and ONNX Runtime)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (eager / compile / tensorrt)")
    parser.add_argument("--chunks", type=int, default=200, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per row")
    parser.add_argument("--cache-dir", default=None, help="artifact cache (default ~/.cache/streamer)")
    parser.add_argument("--out", default=None, help="output folder for backends.json and backends.md")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except StreamerError as exc:
        print(f"backends.py: error: {exc}", file=sys.stderr)
        return 2
    kind = "gpu" if args.device != "cpu" else "cpu"
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{datetime.date.today().isoformat()}-{kind}-backends")
    out.mkdir(parents=True, exist_ok=True)
    (out / "backends.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (out / "backends.md").write_text(text + "\n")
    print(text)
    print(f"wrote {out / 'backends.json'} and {out / 'backends.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
