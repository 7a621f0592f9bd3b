"""`streamer bench`: SimulEval latency, per-chunk compute, concurrency and a re-encode-the-prefix baseline.

All times are in milliseconds unless a name says otherwise. One run measures, on one model and one set
of inputs:

- **latency** per utterance (`streamer.latency`): StartOffset, EndOffset, AL, LAAL, ATD and their
  computation-aware (CA) versions, for every backend x chunk size. The model's chunk is fixed at export;
  a larger chunk (320, 640 ms) is emulated by delivering the audio in blocks of k model chunks and
  stepping the k chunks when a block is complete, so the block's output is emitted at the block's end.
  ``simulated`` mode steps as fast as possible: latency on the audio clock, CA per SimulEval (compute
  accumulated since the start of the utterance). ``realtime`` mode paces the input like a microphone
  (asyncio, one block per block duration) and measures wall-clock arrival; its CA figures use the
  measured lag of each block behind the audio clock, as a running maximum (a player never skips audio,
  so once output is late it stays late).
- **time to first audio** (TTFA): from the delivery of the first input block to the moment the step
  returning the first non-silent output sample finishes. Realtime: wall clock. Simulated: a paced clock
  where block j arrives at its audio time and its compute starts once it has arrived and block j-1 is done.
- **compute** per model chunk (wall clock around `Translator.step`, pipeline overhead included):
  p50/p95/p99, RTF and the trend with stream position.
- **peak memory**: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (peak resident set size of the process,
  MiB), and its increase during each measurement (0 when the earlier peak was not exceeded).
- **streams**: N sessions stepped together with `step_many`; a round is one chunk for every stream.
  N keeps up with real time when the p99 round time is <= the chunk duration; the most streams is the
  largest such N. The sweep stops once the median round is over the chunk duration.
- **cost vs stream length**: ours (one long stream, per-chunk step time) against the re-encode-the-prefix
  policy of StreamSpeech / SeamlessStreaming (at a chunk, run the offline encoder + decoder over the
  whole prefix), on the same model and input. The baseline excludes the vocoder, which favours it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.bench_latency import latency_run, rss_mb
from streamer.bench_report import BenchReport, CostCurve, LatencyRun, StreamsPoint, UtteranceRun, write_report
from streamer.config import DECODINGS, read_yaml_mapping
from streamer.errors import StreamerError
from streamer.latency import ComputeStats

if TYPE_CHECKING:
    from streamer.models.s2st import S2STModel
    from streamer.pipeline import Translator

__all__ = ["BenchConfig", "BenchError", "BenchReport", "CostCurve", "LatencyRun", "StreamsPoint", "UtteranceRun",
           "add_bench_args", "cmd_bench", "load_inputs", "run_bench", "write_report"]

MODES = ("simulated", "realtime")
PRESETS = ("tiny", "default")


class BenchError(StreamerError, ValueError):
    """A bench setting or input that cannot be used: unknown mode, no inputs, a chunk size the model can't do."""


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark. Exactly one model source: `model` (folder), `preset` (random weights) or `pair`.

    model: a model folder (model.safetensors); pair: a shipped language pair, used when model and preset
        are None; preset: "tiny" or "default", random-initialised (graph cost only, no translation).
    backends: backend names, or ("all",) for every available one. threads: intra-op threads (None: default).
    mode: "simulated" or "realtime". chunk_ms: emulated chunk sizes, each a multiple of the model chunk.
    streams: concurrent stream counts for the step_many sweep; stream_rounds: timed rounds per count.
    inputs: wav files; manifest: a manifest.jsonl (rows with src_audio), filtered by split and by the
        model's source language; max_inputs: at most this many utterances.
    long_input_s: length (s) of the long input built by concatenating utterances, for cost vs length.
    baseline: run the re-encode-the-prefix baseline; baseline_points: stream positions it is timed at.
    warmup_chunks: untimed steps before every timed run. silence_db: output below this level is silence.
    out_dir: where `write_report` writes (None: do not write). label: a name for the run in the report.
    """

    model: str | None = None
    pair: str = "en-es"
    preset: str | None = None
    decoding: str = "auto"   # "lm" / "greedy" / "auto": the model's unit LM search where a backend runs it
    backends: tuple[str, ...] = ("eager",)
    threads: int | None = 1
    mode: str = "simulated"
    chunk_ms: tuple[int, ...] = (160, 320, 640)
    streams: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    stream_rounds: int = 50
    inputs: tuple[str, ...] = ()
    manifest: str | None = None
    split: str | None = "unseen_engine"
    max_inputs: int = 20
    long_input_s: float = 30.0
    baseline: bool = True
    baseline_points: int = 10
    warmup_chunks: int = 3
    silence_db: float = -40.0
    out_dir: str | None = None
    progress: bool = True
    label: str | None = None

    def __post_init__(self) -> None:
        for name in ("backends", "chunk_ms", "streams", "inputs"):  # YAML and argparse give lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.mode not in MODES:
            raise BenchError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.decoding not in DECODINGS:
            raise BenchError(f"decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise BenchError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.preset is not None and self.model is not None:
            raise BenchError(f"give a model folder or a preset, not both ({self.model!r}, {self.preset!r})")
        if not self.inputs and not self.manifest:
            raise BenchError("give inputs (wav files) or a manifest")
        if not self.backends or not self.chunk_ms:
            raise BenchError("backends and chunk_ms must not be empty")
        if any(c <= 0 for c in self.chunk_ms) or any(n <= 0 for n in self.streams):
            raise BenchError("chunk_ms and streams must be > 0")
        if self.stream_rounds < 2 or self.baseline_points < 2 or self.long_input_s <= 0:
            raise BenchError("stream_rounds and baseline_points must be >= 2, long_input_s > 0")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> BenchConfig:
        """Read a YAML mapping of field names; `overrides` (None values ignored) win over the file, and a
        `model` or `preset` override replaces the file's model source."""
        data = read_yaml_mapping(path, what="bench config", error=BenchError)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BenchError(f"{path}: unknown bench settings {unknown}; known: {sorted(known)}")
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if {"model", "preset"} & set(overrides):
            data.pop("model", None)
            data.pop("preset", None)
        return cls(**{**data, **overrides})


def load_inputs(config: BenchConfig, source_lang: str | None = None, sample_rate: int = 16_000,
                ) -> list[tuple[str, np.ndarray]]:
    """(name, float32 samples at `sample_rate`) for the configured wav files and manifest rows."""
    import json

    from streamer.audio.io import read_audio

    paths = [Path(p) for p in config.inputs]
    if config.manifest:
        root = Path(config.manifest).parent
        for line in Path(config.manifest).read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            if row is None or (config.split and row.get("split") != config.split):
                continue
            if source_lang and row.get("src_lang", source_lang) != source_lang:
                continue
            paths.append(root / row["src_audio"])
    if not paths:
        raise BenchError(f"no inputs: manifest {config.manifest} has no rows for split {config.split!r}")
    return [(p.stem, read_audio(p, sample_rate=sample_rate)[0]) for p in paths[: config.max_inputs]]


def long_input(utterances: Sequence[tuple[str, np.ndarray]], seconds: float, sample_rate: int) -> np.ndarray:
    """Utterances concatenated (cycling, 200 ms of silence between) up to `seconds` of audio."""
    gap = np.zeros(sample_rate // 5, dtype=np.float32)
    parts, total, i = [], 0, 0
    while total < seconds * sample_rate:
        parts += [utterances[i % len(utterances)][1], gap]
        total += len(parts[-2]) + len(gap)
        i += 1
    return np.concatenate(parts)[: int(seconds * sample_rate)]


def load_bench_model(config: BenchConfig) -> tuple[S2STModel, dict[str, Any]]:
    """The model to benchmark and a description of it for the report."""
    import torch

    from streamer.assets import model_dir
    from streamer.models.checkpoint import load_model
    from streamer.models.unit_lm import LM_NAME

    if config.preset:
        from streamer.models.presets import tiny_model
        from streamer.models.s2st import S2STConfig, S2STModel

        torch.manual_seed(0)
        model = tiny_model() if config.preset == "tiny" else S2STModel(S2STConfig()).eval()
        source = f"preset {config.preset!r}, random-initialised: graph cost only, not translation quality"
    elif config.model:
        model, source = load_model(config.model), str(config.model)
    else:
        model, source = load_model(model_dir(config.pair)), f"shipped {config.pair}"
    lm = None if config.preset else Path(config.model or model_dir(config.pair)) / LM_NAME
    info = {"source": source, "random_init": bool(config.preset), "chunk_ms": model.cfg.chunk_ms,
            "unit_lm": str(lm) if lm is not None and lm.is_file() else None,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "algorithmic_latency_ms": model.algorithmic_latency_ms,
            "pair": f"{model.cfg.source_lang}-{model.cfg.target_lang}"}
    return model, info


def resolve_backends(names: Sequence[str]) -> list[str]:
    """Expand "all" to every backend `streamer.engine.available_backends()` reports (eager without it)."""
    from streamer import engine

    if "all" not in names:
        return list(dict.fromkeys(names))
    available = getattr(engine, "available_backends", None)
    if available is None:
        return ["eager"]
    found = available()
    return [k for k, ok in found.items() if ok] if isinstance(found, dict) else list(found)


def _warm(tr: Translator, n: int, batch: int = 1) -> None:
    sessions = [tr.create_session(f"warm{i}") for i in range(batch)]
    for s in sessions:
        s.accept_waveform(np.zeros(n * tr.chunk_samples, np.float32), sample_rate=tr.sample_rate)
    for _ in range(n):
        tr.step_many(sessions)


def streams_sweep(tr: Translator, backend: str, audio: np.ndarray, config: BenchConfig,
                  tick: Callable[[], None]) -> list[StreamsPoint]:
    """Per-round compute for N streams in one `step_many` call, N ascending.

    The sweep stops after the first N whose median round is over the chunk duration (saturated); a p99
    over it alone (a scheduling hiccup on a shared machine) does not stop it.
    """
    chunk, points = tr.chunk_samples, []
    need = (config.stream_rounds + config.warmup_chunks) * chunk
    tiled = np.resize(audio, need + len(audio))
    for n in sorted(config.streams):
        rss0, sessions = rss_mb(), [tr.create_session(f"s{i}") for i in range(n)]
        for i, s in enumerate(sessions):  # each stream starts at a different place in the input
            offset = (i * 37 * chunk) % len(audio)
            s.accept_waveform(tiled[offset:offset + need], sample_rate=tr.sample_rate)
        for _ in range(config.warmup_chunks):
            tr.step_many(sessions)
        times = []
        for _ in range(config.stream_rounds):
            t = time.perf_counter()
            tr.step_many(sessions)
            times.append(time.perf_counter() - t)
        stats = ComputeStats.from_times(times, tr.config.chunk_ms)
        points.append(StreamsPoint(backend, n, stats, stats.p99_ms <= tr.config.chunk_ms, rss_mb() - rss0))
        tick()
        if stats.p50_ms > tr.config.chunk_ms:  # saturated: larger N cannot keep up either
            break
    return points


def stream_cost(tr: Translator, audio: np.ndarray, label: str, tick: Callable[[], None]) -> CostCurve:
    """Ours: one session over the long input, the step time of every chunk against its position."""
    s, chunk = tr.create_session("long"), tr.chunk_samples
    s.accept_waveform(audio, sample_rate=tr.sample_rate)
    pos, cost = [], []
    for i in range(len(audio) // chunk):
        t = time.perf_counter()
        tr.step(s)
        cost.append(1000.0 * (time.perf_counter() - t))
        pos.append((i + 1) * chunk / tr.sample_rate)
        s.read_output()
        tick()
    return CostCurve.build(label, pos, cost)


def reencode_cost(model: S2STModel, audio: np.ndarray, points: int, tick: Callable[[], None]) -> CostCurve:
    """The baseline: at up to `points` stream positions, the offline encoder + decoder over the whole prefix."""
    import torch

    chunk = model.cfg.chunk_samples
    n_chunks = len(audio) // chunk
    half = points // 2  # half the points geometric (where the cost crosses a chunk), half evenly spaced
    spots = np.concatenate([np.geomspace(1, n_chunks, half), np.linspace(1, n_chunks, points - half)])
    positions = sorted({int(round(p)) for p in spots})
    x = torch.from_numpy(np.ascontiguousarray(audio[: n_chunks * chunk]))[None]
    pos, cost = [], []
    with torch.inference_mode():
        model.decoder(model.encoder(x[:, :chunk]))  # warm-up
        for n in positions:
            t = time.perf_counter()
            model.decoder(model.encoder(x[:, : n * chunk]))
            cost.append(1000.0 * (time.perf_counter() - t))
            pos.append(n * chunk / model.cfg.sample_rate)
            tick()
    return CostCurve.build("re-encode prefix (encoder+decoder, eager)", pos, cost)


def run_bench(config: BenchConfig) -> BenchReport:
    """Run every measurement `config` asks for; write the report too when `config.out_dir` is set."""
    import datetime

    import torch

    from streamer.bench_report import machine_info, progress_bar

    started, t_start = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    if config.threads:
        torch.set_num_threads(config.threads)
    model, model_info = load_bench_model(config)
    utterances = load_inputs(config, model.cfg.source_lang, model.cfg.sample_rate)
    long_audio = long_input(utterances, config.long_input_s, model.cfg.sample_rate)
    n_long = len(long_audio) // model.cfg.chunk_samples
    latency, streams, cost, skipped = [], [], [], {}
    backends = resolve_backends(config.backends)
    with progress_bar(config.progress) as bar:
        for backend in backends:
            try:
                tr = bench_translator(model, model_info, backend, config)
                model_info.setdefault("decoding", {})[backend] = "lm" if tr.search else "greedy"
                _warm(tr, config.warmup_chunks)
            except Exception as exc:  # a backend that cannot run here is reported, not fatal
                skipped[backend] = f"{type(exc).__name__}: {exc}"
                continue
            for block_ms in config.chunk_ms:
                if block_ms % tr.config.chunk_ms:
                    raise BenchError(f"chunk size {block_ms} ms is not a multiple of the model's "
                                     f"{tr.config.chunk_ms} ms chunk")
                tick = bar(f"{backend} latency {block_ms} ms ({config.mode})", len(utterances))
                latency.append(latency_run(tr, backend, utterances, block_ms, mode=config.mode,
                                           silence_db=config.silence_db, tick=tick))
            tick = bar(f"{backend} streams", len(config.streams))
            streams += streams_sweep(tr, backend, long_audio, config, tick)
            cost.append(stream_cost(tr, long_audio, f"streamer ({backend})", bar(f"{backend} long stream", n_long)))
        if not latency:
            raise RuntimeError(f"no backend could run: {skipped}")
        if config.baseline:
            cost.append(reencode_cost(model, long_audio, config.baseline_points,
                                      bar("re-encode baseline", config.baseline_points)))
    max_streams = {b: max([p.streams for p in streams if p.backend == b and p.realtime], default=0)
                   for b in backends if b not in skipped}
    machine = {**machine_info(config), "load_avg_start": load_start}
    report = BenchReport(config, model_info, machine, tuple(latency), tuple(streams), max_streams,
                         tuple(cost), skipped, started, time.perf_counter() - t_start)
    if config.out_dir:
        write_report(report, config.out_dir)
    return report


def bench_translator(model: S2STModel, info: dict[str, Any], backend: str, config: BenchConfig) -> Translator:
    """The translator a backend is timed with: the unit LM search between the split graphs where the model has
    an LM and `config.decoding` asks for it ("auto": where the backend runs it), else greedy."""
    from streamer.engine import BackendConfig, make_runner
    from streamer.models.ctc_search import load_search
    from streamer.pipeline import Translator, use_lm_search

    use_lm = use_lm_search(config.decoding, Path(info["unit_lm"]) if info.get("unit_lm") else None, backend)
    runner = make_runner(model, BackendConfig(name=backend, num_threads=config.threads), split=use_lm)
    return Translator(runner, load_search(info["unit_lm"], model.cfg.decoder.blank) if use_lm else None)


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """The `streamer bench` arguments; every one overrides the same setting of --config."""
    p.add_argument("inputs", nargs="*", help="wav files to translate (or --manifest)")
    p.add_argument("--config", default=None, help="a YAML file of BenchConfig settings (configs/bench/*.yaml)")
    p.add_argument("--manifest", default=None, help="a corpus manifest.jsonl; rows of --split are used")
    p.add_argument("--split", default=None, help="manifest split (default: unseen_engine)")
    p.add_argument("--model", default=None, help="a model folder (default: the shipped --pair)")
    p.add_argument("--pair", default=None, help="shipped language pair (default: en-es)")
    p.add_argument("--preset", default=None, choices=PRESETS, help="a random-initialised model size")
    p.add_argument("--backends", nargs="+", default=None, help="backends, or 'all' (default: eager)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: 1)")
    p.add_argument("--decoding", default=None, choices=DECODINGS,
                   help="unit choice: the model's LM search, greedy, or auto (LM where the backend runs it)")
    p.add_argument("--mode", default=None, choices=MODES, help="simulated (default) or realtime (paced)")
    p.add_argument("--chunk-ms", type=int, nargs="+", default=None, help="chunk sizes (default: 160 320 640)")
    p.add_argument("--streams", type=int, nargs="+", default=None, help="stream counts (default: 1 2 4 ... 32)")
    p.add_argument("--max-inputs", type=int, default=None, help="at most this many utterances (default: 20)")
    p.add_argument("--long-input-s", type=float, default=None, help="long input for cost vs length (default 30)")
    p.add_argument("--no-baseline", action="store_true", help="skip the re-encode-the-prefix baseline")
    p.add_argument("--out", dest="out_dir", default=None, help="report folder (default: bench-results)")
    p.add_argument("--label", default=None, help="a name for this run in the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A BenchConfig from `add_bench_args` arguments (over --config when given)."""
    given = {"inputs": tuple(args.inputs) or None, "manifest": args.manifest, "split": args.split,
             "model": args.model, "pair": args.pair, "preset": args.preset, "backends": args.backends,
             "threads": args.threads, "decoding": args.decoding, "mode": args.mode, "chunk_ms": args.chunk_ms,
             "streams": args.streams,
             "max_inputs": args.max_inputs, "long_input_s": args.long_input_s, "out_dir": args.out_dir,
             "label": args.label, "baseline": False if args.no_baseline else None,
             "progress": False if args.no_progress else None}
    if args.config:
        config = BenchConfig.from_yaml(args.config, **given)
    else:
        config = BenchConfig(**{k: v for k, v in given.items() if v is not None})
    return config if config.out_dir else replace(config, out_dir="bench-results")


def cmd_bench(args: argparse.Namespace) -> int:
    """`streamer bench`: run, write the report, print the markdown summary."""
    report = run_bench(config_from_args(args))
    out = Path(report.config.out_dir or "bench-results")
    print((out / "report.md").read_text())
    return 0
