"""Soak benchmark: one ``streamer serve`` worker, N real-time client streams over a real mosquitto, M minutes.

    python benchmarks/soak.py                                   # 4 streams, 10 minutes, shipped en-es model
    python benchmarks/soak.py --streams 16 --minutes 60 --backend onnx --out /tmp/soak
    python benchmarks/soak.py --mode continuous --wav a.wav b.wav

Each client sends a speech file in 20 ms frames paced by the wall clock. Mode ``utterances`` (default): one
claim -> file -> END -> wait for the last output, then again (a push-to-talk device; exercises session
setup and teardown). Mode ``continuous``: one endless stream of the file on repeat (an always-on mic).

Every ``--sample-s`` seconds it records, for the window just past:

- ``held``: streams served without falling behind: output arrived in the window, the worker's last
  ``backlog_ms`` for the stream is at most ``--max-backlog-ms``, and the client round trip p95 is at most
  ``--max-rtt-ms``;
- ``rtt_ms_p50/p99``: client round trip per 160 ms chunk, from sending the frame that completes the chunk
  to receiving that chunk's output frame (out seq k is input chunk k): queueing, compute and broker hops,
  without the chunk's own algorithmic delay;
- ``compute_ms_p50`` (median of the ``latency`` events' ``compute_ms_p50``) and ``compute_ms_p95_max`` (the
  highest ``compute_ms_p95`` any event reported; the events carry p50/p95 of the batched step time);
- the worker's RSS (VmRSS from /proc) and CPU use.

Writes soak.json, soak.md and soak.png (RSS and p99 over time) to ``--out``
(default benchmarks/results/soak-<date>/).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamer.mqtt.broker import MosquittoBroker  # noqa: E402
from streamer.mqtt.client import StreamClient  # noqa: E402
from streamer.mqtt.connection import ConnectionConfig  # noqa: E402
from streamer.mqtt.protocol import AudioFrame  # noqa: E402

FRAME_MS = 20
SENTENCES = (
    "the meeting is on monday at three o'clock",
    "i would like two red apples and a blue cup please",
    "what time does the train leave tomorrow morning",
    "turn off the lights in the kitchen",
)


@dataclass
class StreamStats:
    """One client's figures: the current sampling window, and totals."""

    rtts: list[float] = field(default_factory=list)  # ms, this window
    compute_p50: list[float] = field(default_factory=list)  # from latency events, this window
    compute_p95: list[float] = field(default_factory=list)
    frames_window: int = 0
    backlog_ms: float = 0.0  # latest reported by the worker
    all_rtts: list[float] = field(default_factory=list)
    frames_out: int = 0
    out_missing: int = 0  # out frames lost (seq gaps)
    utterances: int = 0
    errors: int = 0
    claim_failures: int = 0


# -- setup ---------------------------------------------------------------------------------------------------
def default_model() -> Path:
    """The shipped en-es model when present, else a tiny seeded model in a temp folder."""
    shipped = ROOT / "streamer" / "assets" / "en-es"
    if (shipped / "model.safetensors").is_file():
        return shipped
    from streamer.models.checkpoint import save_model
    from streamer.models.presets import tiny_model

    return save_model(tiny_model(), Path(tempfile.mkdtemp(prefix="soak-tiny-")))


def model_rates(model: Path) -> tuple[int, int]:
    """(input sample rate, input samples per chunk) from the config in the weights' metadata."""
    from streamer.models.checkpoint import read_metadata
    from streamer.models.s2st import S2STConfig

    cfg = S2STConfig.from_dict(json.loads(read_metadata(model)["config"]))
    return cfg.sample_rate, cfg.chunk_samples


def load_inputs(wavs: Sequence[str], n: int, rate: int, workdir: Path) -> list[np.ndarray]:
    """One int16 input per stream: the given files in turn, else espeak-ng sentences, else tones."""
    from streamer.audio.io import read_audio

    paths = [Path(w) for w in wavs]
    if not paths:
        for i, text in enumerate(SENTENCES):
            p = workdir / f"say{i}.wav"
            try:
                subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(p), text], check=True, capture_output=True)
                paths.append(p)
            except (OSError, subprocess.CalledProcessError):
                break
    if paths:
        audio = [read_audio(p, sample_rate=rate)[0] for p in paths]
    else:
        t = np.arange(3 * rate) / rate
        audio = [(0.3 * np.sin(2 * np.pi * (150 + 30 * i) * t)).astype(np.float32) for i in range(4)]
    return [AudioFrame.from_float(audio[i % len(audio)], seq=0, sample_rate=rate).samples for i in range(n)]


def start_worker(args: argparse.Namespace, broker: MosquittoBroker, log_path: Path) -> subprocess.Popen[bytes]:
    """``streamer serve`` as a subprocess; returns once it is subscribed to the claim topic."""
    cmd = [sys.executable, "-m", "streamer", "serve", "--model", str(args.model), "--broker", broker.url,
           "--worker-id", "soak", "--threads", str(args.threads), "--max-streams", str(max(16, args.streams))]
    if args.backend:
        cmd += ["--backend", args.backend]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300  # an ONNX or TensorRT export may run first
    while "worker soak: connected to" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"worker did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)
    return proc


def proc_sample(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds used) of a process, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, cpu_s


# -- clients -------------------------------------------------------------------------------------------------
async def read_output(c: StreamClient, sent: list[float], chunk: int, frame: int, st: StreamStats) -> None:
    """Until the END frame: count frames and gaps; round trip of every chunk whose input was all sent."""
    loop = asyncio.get_running_loop()
    expected = 0
    async for f in c.frames():
        now = loop.time()
        st.out_missing += max(0, f.seq - expected)
        expected = f.seq + 1
        st.frames_out += 1
        st.frames_window += 1
        last = ((f.seq + 1) * chunk - 1) // frame  # the in frame that completed chunk f.seq
        if last < len(sent):
            rtt = 1000.0 * (now - sent[last])
            st.rtts.append(rtt)
            st.all_rtts.append(rtt)


async def read_events(c: StreamClient, st: StreamStats) -> None:
    """Latency figures and error counts from the worker's events (until cancelled)."""
    while True:
        ev = await c.next_event(timeout_s=3600)
        if ev.kind == "latency":
            st.compute_p50.append(ev["compute_ms_p50"])
            st.compute_p95.append(ev["compute_ms_p95"])
            st.backlog_ms = ev["backlog_ms"]
        elif ev.kind == "error":
            st.errors += int(ev.get("count", 1))


async def client_loop(
    idx: int, pcm: np.ndarray, rate: int, chunk: int, conn: ConnectionConfig, args: argparse.Namespace,
    st: StreamStats, deadline: float,
) -> None:
    """Send ``pcm`` in real time, as utterances or one continuous stream, until ``deadline``."""
    loop = asyncio.get_running_loop()
    frame = rate * FRAME_MS // 1000
    while loop.time() < deadline:
        async with StreamClient(f"soak{idx}", connection=conn) as c:
            try:
                await c.claim(sample_rate=rate)
            except Exception:  # noqa: BLE001 - count it and try again: a soak must keep going
                st.claim_failures += 1
                await asyncio.sleep(1.0)
                continue
            sent: list[float] = []
            reader = asyncio.create_task(read_output(c, sent, chunk, frame, st))
            events = asyncio.create_task(read_events(c, st))
            start, i = loop.time(), 0
            while (i * frame < len(pcm)) if args.mode == "utterances" else (loop.time() < deadline):
                await asyncio.sleep(max(0.0, start + i * FRAME_MS / 1000 - loop.time()))
                sent.append(loop.time())
                await c.send_frame(np.take(pcm, np.arange(i * frame, (i + 1) * frame), mode="wrap"))
                i += 1
            await c.end()
            try:
                await asyncio.wait_for(reader, 30)
            except TimeoutError:
                st.errors += 1
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)
            st.utterances += 1
        await asyncio.sleep(args.gap_s)


# -- sampling and reports ------------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float | None:
    """Percentile, or None for no values (rounded to 0.1)."""
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def take_sample(t: float, stats: list[StreamStats], pid: int, prev_cpu: float, dt: float,
                args: argparse.Namespace) -> dict[str, Any]:
    """One row for the window just past; clears the window lists."""
    rss, cpu = proc_sample(pid)
    rtts = [x for s in stats for x in s.rtts]
    held = sum(
        1 for s in stats
        if s.frames_window and s.backlog_ms <= args.max_backlog_ms and (pct(s.rtts, 95) or 0) <= args.max_rtt_ms
    )
    row = {
        "t_s": round(t, 1), "held": held, "rtt_ms_p50": pct(rtts, 50), "rtt_ms_p99": pct(rtts, 99),
        "compute_ms_p50": pct([x for s in stats for x in s.compute_p50], 50),
        "compute_ms_p95_max": max((x for s in stats for x in s.compute_p95), default=None),
        "backlog_ms_max": max(s.backlog_ms for s in stats), "rss_mb": round(rss, 1),
        "cpu_pct": round(100 * (cpu - prev_cpu) / dt, 1), "cpu_s": cpu,
    }
    for s in stats:
        s.rtts, s.compute_p50, s.compute_p95, s.frames_window = [], [], [], 0
    return row


def summarise(rows: list[dict[str, Any]], stats: list[StreamStats]) -> dict[str, Any]:
    """Whole-run figures; RSS growth is a least-squares slope over the second half of the samples."""
    rss = np.array([r["rss_mb"] for r in rows])
    t = np.array([r["t_s"] for r in rows]) / 60
    half = len(rows) // 2
    slope = float(np.polyfit(t[half:], rss[half:], 1)[0]) if len(rows) - half >= 2 else None
    held = [r["held"] for r in rows[1:]] or [r["held"] for r in rows]  # the first window includes warm-up
    rtts = [x for s in stats for x in s.all_rtts]
    return {
        "held_min": min(held), "held_median": float(np.median(held)),
        "rtt_ms_p50": pct(rtts, 50), "rtt_ms_p99": pct(rtts, 99), "rtt_ms_max": pct(rtts, 100),
        "compute_ms_p50": pct([r["compute_ms_p50"] for r in rows if r["compute_ms_p50"] is not None], 50),
        "compute_ms_p95_max": max((r["compute_ms_p95_max"] or 0 for r in rows), default=None),
        "rss_mb_first": float(rss[0]), "rss_mb_last": float(rss[-1]), "rss_mb_max": float(rss.max()),
        "rss_mb_per_min_second_half": None if slope is None else round(slope, 2) + 0.0,
        "cpu_pct_mean": round(float(np.mean([r["cpu_pct"] for r in rows])), 1),
        "utterances": sum(s.utterances for s in stats), "frames_out": sum(s.frames_out for s in stats),
        "out_frames_missing": sum(s.out_missing for s in stats), "errors": sum(s.errors for s in stats),
        "claim_failures": sum(s.claim_failures for s in stats),
    }


def write_reports(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """soak.json, soak.md and soak.png in ``out``."""
    (out / "soak.json").write_text(json.dumps({"config": meta, "summary": summary, "samples": rows}, indent=2))
    cols = ["t_s", "held", "rtt_ms_p50", "rtt_ms_p99", "compute_ms_p50", "compute_ms_p95_max", "backlog_ms_max",
            "rss_mb", "cpu_pct"]
    lines = [f"# Soak: {meta['streams']} streams x {meta['minutes']} min ({meta['mode']})", "",
             f"Model `{meta['model']}`, backend {meta['backend'] or 'serve default'}, {meta['threads']} thread(s), "
             f"{meta['cpu']}; started {meta['started']}.", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(t, [r["rss_mb"] for r in rows], marker=".")
    ax1.set_ylabel("worker RSS (MiB)")
    ax1.set_title(f"soak: {meta['streams']} streams, {meta['mode']}")
    ax2.plot(t, [r["rtt_ms_p99"] for r in rows], marker=".", label="client round trip p99")
    ax2.plot(t, [r["compute_ms_p95_max"] for r in rows], marker=".", label="worker step p95 (max)")
    ax2.set_ylabel("ms")
    ax2.set_xlabel("minutes")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)
    plt.close(fig)


async def soak(args: argparse.Namespace, broker: MosquittoBroker, worker: subprocess.Popen[bytes],
               inputs: list[np.ndarray], rate: int, chunk: int) -> tuple[list[dict[str, Any]], list[StreamStats]]:
    """Run the clients until the deadline, sampling as they go; returns (samples, per-stream stats)."""
    loop = asyncio.get_running_loop()
    conn = ConnectionConfig(host=broker.host, port=broker.port)
    stats = [StreamStats() for _ in inputs]
    t0 = loop.time()
    deadline = t0 + 60 * args.minutes
    tasks = [asyncio.create_task(client_loop(i, x, rate, chunk, conn, args, stats[i], deadline))
             for i, x in enumerate(inputs)]
    rows: list[dict[str, Any]] = []
    prev_t, prev_cpu = t0, proc_sample(worker.pid)[1]
    while deadline - prev_t >= 1.0 and not all(task.done() for task in tasks):  # windows up to the deadline
        await asyncio.wait(tasks, timeout=max(0.0, min(prev_t + args.sample_s, deadline) - loop.time()))
        now = loop.time()
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}")
        rows.append(take_sample(now - t0, stats, worker.pid, prev_cpu, now - prev_t, args))
        prev_t, prev_cpu = now, rows[-1].pop("cpu_s")
        print(json.dumps(rows[-1]), flush=True)
    await asyncio.gather(*tasks)  # the last utterances finish (their figures count in the totals only)
    return rows, stats


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=4, help="client streams (default 4)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long to send (default 10)")
    p.add_argument("--model", default=None, help="model folder (default: shipped en-es, else a tiny model)")
    p.add_argument("--out", default=None, help="report folder (default benchmarks/results/soak-<date>)")
    p.add_argument("--backend", default=None, help="worker backend (default: `streamer serve`'s default)")
    p.add_argument("--threads", type=int, default=1, help="worker intra-op threads (default 1)")
    p.add_argument("--mode", choices=["utterances", "continuous"], default="utterances")
    p.add_argument("--wav", nargs="*", default=[], help="input files (default: espeak-ng sentences)")
    p.add_argument("--gap-s", type=float, default=0.3, help="pause between utterances (default 0.3)")
    p.add_argument("--sample-s", type=float, default=5.0, help="sampling period (default 5)")
    p.add_argument("--max-backlog-ms", type=float, default=500.0, help="'held' limit on the worker backlog")
    p.add_argument("--max-rtt-ms", type=float, default=1000.0, help="'held' limit on the round trip p95")
    args = p.parse_args(argv)
    args.model = Path(args.model) if args.model else default_model()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"soak-{datetime.date.today()}"
    out.mkdir(parents=True, exist_ok=True)
    rate, chunk = model_rates(args.model)
    with tempfile.TemporaryDirectory(prefix="soak-say-") as tmp:
        inputs = load_inputs(args.wav, args.streams, rate, Path(tmp))
    meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    meta.update(out=str(out), started=datetime.datetime.now().isoformat(timespec="seconds"),
                cpu=f"{os.cpu_count()} CPUs", input_s=[round(len(x) / rate, 2) for x in inputs],
                load_avg=os.getloadavg())
    with MosquittoBroker() as broker:
        worker = start_worker(args, broker, out / "worker.log")
        try:
            rows, stats = asyncio.run(soak(args, broker, worker, inputs, rate, chunk))
        finally:
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
    summary = summarise(rows, stats)
    write_reports(out, meta, rows, summary)
    print(json.dumps(summary, indent=2))
    print(f"reports in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
