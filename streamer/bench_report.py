"""The `streamer bench` report: its result types, and what is written (report.json, report.md, PNG plots
with matplotlib Agg), plus the machine description and rich progress bars. Times in ms unless named s."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.latency import ComputeStats, LatencyStats

if TYPE_CHECKING:
    from streamer.bench import BenchConfig

@dataclass(frozen=True)
class UtteranceRun:
    """One utterance through one backend at one chunk size.

    ttfa_ms: time to first audio (NaN if all output is silent); compute: its per-model-chunk step times.
    """

    name: str
    source_ms: float
    latency: LatencyStats
    ttfa_ms: float
    compute: ComputeStats


@dataclass(frozen=True)
class LatencyRun:
    """All utterances for one (backend, chunk size): mean latency, pooled per-model-chunk compute.

    block_ms: emulated chunk size; chunk_compute_ms: every step time, in order, utterance after utterance.
    peak_rss_mb: process peak RSS after the run; rss_delta_mb: its increase during the run.
    """

    backend: str
    block_ms: int
    mode: str
    latency: LatencyStats
    compute: ComputeStats
    ttfa_ms: float
    peak_rss_mb: float
    rss_delta_mb: float
    utterances: tuple[UtteranceRun, ...]
    chunk_compute_ms: tuple[float, ...] = field(repr=False)


@dataclass(frozen=True)
class StreamsPoint:
    """N streams stepped together; `rounds` holds per-round compute (ms) and RTF of the whole round."""

    backend: str
    streams: int
    rounds: ComputeStats
    realtime: bool
    rss_delta_mb: float


@dataclass(frozen=True)
class CostCurve:
    """Per-chunk compute (ms) against stream position (s).

    slope_ms_per_s: least-squares slope. growth: (median of the last third - median of the first third)
    / overall median, a robust relative growth over the stream (~0 for a bounded cost).
    """

    label: str
    position_s: tuple[float, ...]
    compute_ms: tuple[float, ...]
    slope_ms_per_s: float
    growth: float

    @classmethod
    def build(cls, label: str, position_s: Sequence[float], compute_ms: Sequence[float]) -> CostCurve:
        x, y = np.asarray(position_s, float), np.asarray(compute_ms, float)
        slope = float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else 0.0
        third = max(1, len(y) // 3)
        growth = float((np.median(y[-third:]) - np.median(y[:third])) / max(np.median(y), 1e-9))
        return cls(label, tuple(map(float, x)), tuple(map(float, y)), slope, growth)

    def crossing_s(self, limit_ms: float) -> float | None:
        """Stream position (s) where the cost first passes `limit_ms`, interpolated; None if it never does."""
        for i, (x, y) in enumerate(zip(self.position_s, self.compute_ms, strict=True)):
            if y > limit_ms:
                if i == 0:
                    return x
                x0, y0 = self.position_s[i - 1], self.compute_ms[i - 1]
                return x0 + (x - x0) * (limit_ms - y0) / (y - y0)
        return None


@dataclass(frozen=True)
class BenchReport:
    """Everything one `run_bench` measured. `model` and `machine` describe what ran where."""

    config: BenchConfig
    model: dict[str, Any]
    machine: dict[str, Any]
    latency: tuple[LatencyRun, ...]
    streams: tuple[StreamsPoint, ...]
    max_streams: dict[str, int]
    cost: tuple[CostCurve, ...]
    skipped_backends: dict[str, str]
    started: str
    wall_s: float


# Published StreamSpeech simultaneous S2ST figures (seconds), shown next to ours; not measured here.
REFERENCES = {"StreamSpeech (published)": {"StartOffset": 1.28, "StartOffset_CA": 2.21, "EndOffset": 1.37}}
# Our targets (seconds): the computation-aware penalty on StartOffset, and the offsets themselves.
TARGETS = {"CA_penalty": 0.1, "StartOffset": 0.8, "EndOffset": 0.8}


def machine_info(config: BenchConfig | None = None) -> dict[str, Any]:
    """CPU model, cores, memory, load, library versions and threads: what the numbers were measured on."""
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "unknown")
    mem_gb = math.nan
    with contextlib.suppress(OSError, StopIteration, ValueError):
        kib = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        mem_gb = round(int(kib.split()[1]) / 2**20, 1)
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": mem_gb, "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "onnxruntime": ort,
        "bench_threads": None if config is None else config.threads,
    }


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int], Callable[[], None]]]:
    """Yields `bar(description, total) -> tick`; each tick advances that bar by one. No-op when disabled."""
    if not enabled:
        yield lambda description, total: lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        def bar(description: str, total: int) -> Callable[[], None]:
            task = progress.add_task(description, total=total)
            return lambda: progress.advance(task)

        yield bar


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/Inf -> None, tuples -> lists, numpy scalars -> floats."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def report_dict(report: BenchReport) -> dict[str, Any]:
    """The whole report as plain JSON-able data, with the references and targets beside it."""
    data = dataclasses.asdict(report)
    data["references_s"], data["targets_s"] = REFERENCES, TARGETS
    data["targets_met"] = {f"{r.backend}@{r.block_ms}": _targets(r) for r in report.latency}
    return _clean(data)


def _targets(run: LatencyRun) -> dict[str, bool]:
    lat = run.latency
    penalty = (lat.start_offset_ca_ms - lat.start_offset_ms) / 1000.0
    return {"CA_penalty": penalty <= TARGETS["CA_penalty"],
            "StartOffset": lat.start_offset_ms / 1000.0 <= TARGETS["StartOffset"],
            "EndOffset": lat.end_offset_ms / 1000.0 <= TARGETS["EndOffset"]}


def _s(ms: float, digits: int = 3) -> str:
    return "n/a" if ms is None or math.isnan(ms) else f"{ms / 1000.0:.{digits}f}"


def _ms(ms: float, digits: int = 1) -> str:
    return "n/a" if ms is None or math.isnan(ms) else f"{ms:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                            for r in rows]


def markdown(report: BenchReport) -> str:
    """The human summary: machine, model, latency, targets, compute, streams and cost vs stream length."""
    cfg, m, hw = report.config, report.model, report.machine
    lines = [f"# streamer latency benchmark{' — ' + cfg.label if cfg.label else ''}", "",
             f"Run {report.started} ({report.wall_s:.0f} s), mode **{cfg.mode}**, "
             f"{report.latency[0].latency.num_utterances if report.latency else 0} utterances.", "",
             f"- Model: {m['source']} ({m['pair']}, {m['params_m']} M parameters, {m['chunk_ms']} ms chunk, "
             f"algorithmic latency {m['algorithmic_latency_ms']:.0f} ms)"]
    if m["random_init"]:
        lines.append("- **Random-initialised weights**: these figures are the compute and latency of the graph, "
                     "not of a trained model's translation (an untrained decoder rarely falls quiet, so the "
                     "flushed tail and EndOffset are long).")
    lines += [f"- Machine: {hw['cpu']}, {hw['usable_cores']} usable cores of {hw['cpu_count']}, "
              f"{hw['memory_gb']} GB; load average (1/5/15 min) {hw.get('load_avg_start')} at the start, "
              f"{hw['load_avg_1_5_15']} at the end",
              f"- torch {hw['torch']} ({hw['torch_threads']} threads), onnxruntime {hw['onnxruntime']}, "
              f"Python {hw['python']}, GPU {hw['gpu']}", ""]
    if report.skipped_backends:
        lines += [f"- Skipped backends: {report.skipped_backends}", ""]
    lines += ["## Latency (s, mean over utterances)", ""]
    rows = []
    for r in report.latency:
        d = r.latency.as_dict("ms")
        rows.append([r.backend, str(r.block_ms)] + [_s(d[k]) for k in (
            "StartOffset", "StartOffset_CA", "EndOffset", "EndOffset_CA", "AL", "AL_CA", "LAAL", "LAAL_CA",
            "ATD", "ATD_CA")] + [_s(r.ttfa_ms)])
    lines += _table(["backend", "chunk ms", "StartOffset", "StartOffset CA", "EndOffset", "EndOffset CA", "AL",
                     "AL CA", "LAAL", "LAAL CA", "ATD", "ATD CA", "TTFA"], rows)
    lines += ["", "## Against published figures and our targets (s)", ""]
    rows = [[name, _s(1000 * v["StartOffset"], 2), _s(1000 * v["StartOffset_CA"], 2),
             _s(1000 * (v["StartOffset_CA"] - v["StartOffset"]), 2), _s(1000 * v["EndOffset"], 2), ""]
            for name, v in REFERENCES.items()]
    for r in report.latency:
        lat, met = r.latency, _targets(r)
        rows.append([f"streamer {r.backend} @ {r.block_ms} ms", _s(lat.start_offset_ms), _s(lat.start_offset_ca_ms),
                     _s(lat.start_offset_ca_ms - lat.start_offset_ms), _s(lat.end_offset_ms),
                     ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in met.items())])
    rows.append(["target", f"<= {TARGETS['StartOffset']}", "", f"<= {TARGETS['CA_penalty']}",
                 f"<= {TARGETS['EndOffset']}", ""])
    lines += _table(["system", "StartOffset", "StartOffset CA", "CA penalty", "EndOffset", "targets"], rows)
    lines += ["", "## Compute per model chunk (ms, wall clock of one `Translator.step`)", ""]
    rows = [[r.backend, str(r.block_ms), _ms(r.compute.p50_ms), _ms(r.compute.p95_ms), _ms(r.compute.p99_ms),
             _ms(r.compute.max_ms), f"{r.compute.rtf:.3f}", _ms(r.peak_rss_mb, 0), _ms(r.rss_delta_mb, 1)]
            for r in report.latency]
    lines += _table(["backend", "chunk ms", "p50", "p95", "p99", "max", "RTF", "peak RSS MiB", "RSS +MiB"], rows)
    lines.append("")
    if report.streams:
        lines += ["## Concurrent streams (one `step_many` round = one chunk for every stream)", ""]
        rows = [[p.backend, str(p.streams), _ms(p.rounds.p50_ms), _ms(p.rounds.p95_ms), _ms(p.rounds.p99_ms),
                 f"{p.rounds.rtf:.3f}", "yes" if p.realtime else "no"] for p in report.streams]
        lines += _table(["backend", "streams", "round p50", "round p95", "round p99", "RTF", "real time"], rows)
        lines += ["", "Most streams that stay real time (p99 round <= chunk): "
                  + ", ".join(f"{b}: {n}" for b, n in report.max_streams.items()), ""]
    lines += ["## Per-chunk cost against stream length", ""]
    rows = []
    for c in report.cost:
        over = c.crossing_s(m["chunk_ms"])
        rows.append([c.label, f"{c.position_s[-1]:.1f}", _ms(c.compute_ms[0]), _ms(c.compute_ms[-1]),
                     f"{c.slope_ms_per_s:.3f}", f"{c.growth:+.2f}", "never" if over is None else f"{over:.1f}"])
    lines += _table(["policy", "stream s", "first chunk", "last chunk", "slope ms/s", "growth",
                     "over a chunk's duration from s"], rows)
    lines += ["", "![compute CDF](compute_cdf.png) ![latency vs chunk](latency_vs_chunk.png)",
              ("![streams vs p99](streams_p99.png) " if report.streams else "")
              + "![cost vs stream length](cost_vs_length.png)", "",
              "## How these were measured", "",
              "- Chunk sizes above the model's chunk are emulated: audio is delivered in blocks of k model chunks "
              "and the k chunks are stepped when the block is complete; the block's output is emitted at its end.",
              "- Simulated mode: SimulEval conventions (`streamer.latency`), CA adds the compute accumulated since "
              "the start. Realtime mode: input paced like a microphone; CA uses the measured lag behind the audio "
              "clock (running maximum). TTFA: first input block delivered -> first non-silent output returned.",
              "- Memory: `ru_maxrss` (process peak RSS); +MiB is its rise during that measurement.",
              "- Baseline: at each sampled position, the offline encoder + decoder over the whole prefix "
              "(the StreamSpeech / SeamlessStreaming policy); the vocoder is left out, which favours it.", ""]
    return "\n".join(lines)


def _plots(report: BenchReport, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths, chunk_ms = {}, report.model["chunk_ms"]

    def save(name: str, fig: Any) -> None:
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        paths[name] = out / f"{name}.png"

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in report.latency:
        if r.block_ms == min(x.block_ms for x in report.latency if x.backend == r.backend):
            t = np.sort(r.chunk_compute_ms)
            ax.plot(t, np.arange(1, len(t) + 1) / len(t), label=r.backend)
    ax.axvline(chunk_ms, color="grey", ls="--", label=f"chunk {chunk_ms} ms")
    ax.set(xscale="log", xlabel="compute per chunk (ms)", ylabel="fraction of chunks", title="Per-chunk compute CDF")
    ax.legend()
    save("compute_cdf", fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for backend in dict.fromkeys(r.backend for r in report.latency):
        runs = [r for r in report.latency if r.backend == backend]
        x = [r.block_ms for r in runs]
        for key, style in (("start_offset", "o-"), ("start_offset_ca", "o--"), ("end_offset", "s-"),
                           ("end_offset_ca", "s--")):
            ax.plot(x, [getattr(r.latency, f"{key}_ms") / 1000 for r in runs], style, label=f"{backend} {key}")
    ax.set(xlabel="chunk (ms)", ylabel="seconds", title="Latency vs chunk size")
    ax.legend(fontsize=7)
    save("latency_vs_chunk", fig)

    if report.streams:
        fig, ax = plt.subplots(figsize=(6, 4))
        for backend in dict.fromkeys(p.backend for p in report.streams):
            pts = [p for p in report.streams if p.backend == backend]
            ax.plot([p.streams for p in pts], [p.rounds.p99_ms for p in pts], "o-", label=backend)
        ax.axhline(chunk_ms, color="grey", ls="--", label="real-time limit")
        ax.set(xscale="log", yscale="log", xlabel="concurrent streams", ylabel="p99 round compute (ms)",
               title="Streams vs p99 round time")
        ax.legend()
        save("streams_p99", fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in report.cost:
        ax.plot(c.position_s, c.compute_ms, "o-" if len(c.position_s) < 50 else "-", ms=3, lw=1, label=c.label)
    ax.axhline(chunk_ms, color="grey", ls="--", label="chunk duration")
    ax.set(yscale="log", xlabel="stream position (s)", ylabel="compute per chunk (ms)", title="Cost vs stream length")
    ax.legend(fontsize=7)
    save("cost_vs_length", fig)
    return paths


def write_report(report: BenchReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and the plots into `out_dir` (created); returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md"}
    paths["json"].write_text(json.dumps(report_dict(report), indent=1) + "\n")
    paths["md"].write_text(markdown(report))
    paths.update(_plots(report, out))
    return paths
