"""Scale-out over MQTT with real processes: ``streamer serve`` workers sharing one ``$share`` group, one of
them SIGKILLed mid-stream, and the CLI end to end (``streamer mqtt-send`` against ``streamer serve``, compared
with ``streamer translate``).

Every worker is a subprocess (``python -m streamer serve --backend eager --threads 1``) on the session
broker. Output audio is checked against ``Translator.translate_array`` of the same int16 input: same
length, and every sample within a few PCM16 steps (the worker quantises its frames to int16 and batches
streams, which moves results by about 1e-7; a real divergence moves them by orders of magnitude more).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
import soundfile as sf

from streamer.mqtt.broker import MosquittoBroker
from streamer.mqtt.client import ClientConfig, StreamClient
from streamer.mqtt.connection import ConnectionConfig
from streamer.mqtt.events import Event, parse_event
from streamer.mqtt.protocol import AudioFrame, FrameFlags

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).resolve().parents[2]
RATE = 16000
FRAME = 320  # 20 ms per `in` frame
TOL = 3 / 32768  # three PCM16 steps
STALL_S = 1.2  # no output for this long while sending: the client gives up on its worker and re-claims


# -- worker processes ------------------------------------------------------------------------------------------
@dataclass
class WorkerProc:
    """A ``streamer serve`` subprocess whose stderr goes to ``log_path``."""

    worker_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Everything the worker logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_connected(self, timeout_s: float = 15.0) -> None:
        """Block until the worker logged that it subscribed to the claim topic (it then takes claims)."""
        needle = f"worker {self.worker_id}: connected to"
        deadline = time.monotonic() + timeout_s
        while needle not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.worker_id} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.worker_id} not connected after {timeout_s} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (the worker drains), then SIGKILL if it lingers. Only this process is signalled."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def streamer_cmd(*args: str) -> list[str]:
    """``python -m streamer ARGS`` with the interpreter running the tests."""
    return [sys.executable, "-m", "streamer", *args]


def child_env() -> dict[str, str]:
    """The repo on PYTHONPATH; one math thread (two spinning threads crawl on a busy machine)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def spawn_worker(tiny_model_dir: Path, broker: MosquittoBroker, tmp_path: Path) -> Iterator[Callable[..., WorkerProc]]:
    """``spawn_worker(worker_id, prefix=None)`` starts a ``streamer serve`` process; all are stopped after."""
    procs: list[WorkerProc] = []

    def spawn(worker_id: str, *, prefix: str | None = None) -> WorkerProc:
        cmd = streamer_cmd(
            "serve",
            "--model",
            str(tiny_model_dir),
            "--broker",
            broker.url,
            "--worker-id",
            worker_id,
            "--backend",
            "eager",
            "--threads",
            "1",
        )
        if prefix is not None:
            cmd += ["--prefix", prefix]
        log_path = tmp_path / f"{worker_id}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, env=child_env(), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(WorkerProc(worker_id, proc, log_path))
        return procs[-1]

    yield spawn
    for p in procs:
        p.stop()


# -- audio and references --------------------------------------------------------------------------------------
def speechy(seconds: float, seed: int) -> np.ndarray:
    """Deterministic int16 test input, different per seed: a tone with vibrato, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140.0 + 25.0 * seed
    x = 0.3 * np.sin(2 * np.pi * f0 * t + 3.0 * np.sin(2 * np.pi * 3.0 * t)) + 0.03 * rng.standard_normal(len(t))
    return AudioFrame.from_float(x.astype(np.float32), seq=0, sample_rate=RATE).samples


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``reference(pcm16)``: the offline translation (``translate_array``, eager, one thread)."""
    import torch

    from streamer.pipeline import Translator

    translator = Translator.from_dir(tiny_model_dir)

    def translate(pcm: np.ndarray) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return translator.translate_array(pcm.astype(np.float32) / 32768, sample_rate=RATE)
        finally:
            torch.set_num_threads(before)

    return translate


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Same length and every sample within ``TOL``."""
    assert len(got) == len(want), f"{what}: {len(got)} samples, expected {len(want)}"
    diff = float(np.max(np.abs(got - want))) if len(want) else 0.0
    assert diff <= TOL, f"{what}: max |diff| {diff:.2e} > {TOL:.2e}"


# -- streaming helpers -----------------------------------------------------------------------------------------
@dataclass
class StreamRun:
    """What one client saw: out frames with arrival times, and where (if at all) it re-claimed."""

    pcm: np.ndarray
    frames: list[tuple[float, AudioFrame]] = field(default_factory=list)
    last_out: float = 0.0
    resumed_at: int | None = None  # index of the first frame sent after the re-claim
    reclaimed_by: str | None = None

    def segments(self) -> list[np.ndarray]:
        """Output split into sessions (a START frame opens one); checks seqs are gap-free in each."""
        segs: list[list[AudioFrame]] = []
        for _, f in self.frames:
            if f.flags & FrameFlags.START or not segs:
                segs.append([])
            segs[-1].append(f)
        for seg in segs:
            assert [f.seq for f in seg] == list(range(len(seg))), "out frames lost or reordered"
        return [np.concatenate([f.to_float32() for f in seg]) for seg in segs]

    def max_out_gap(self) -> float:
        """Longest wait between two consecutive out frames, seconds."""
        times = [t for t, _ in self.frames]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


async def stream(c: StreamClient, run: StreamRun, *, stall_s: float | None = None) -> None:
    """Send ``run.pcm`` in real time in 20 ms frames, then END, and read the output until its END frame.

    With ``stall_s``: if no output arrived for that long while sending, re-claim the stream once (a new
    claim id, which the broker hands to a live worker) and go on with the rest of the audio.
    """
    loop = asyncio.get_running_loop()

    async def read() -> None:
        async for f in c.frames():
            run.last_out = loop.time()
            run.frames.append((run.last_out, f))

    reader = asyncio.create_task(read())
    n = -(-len(run.pcm) // FRAME)
    start = run.last_out = loop.time()
    i = 0
    while i < n:
        await asyncio.sleep(max(0.0, start + i * FRAME / RATE - loop.time()))
        if stall_s is not None and run.resumed_at is None and loop.time() - run.last_out > stall_s:
            claimed = await c.claim(sample_rate=RATE)
            run.resumed_at, run.reclaimed_by = i, claimed["worker_id"]
            start = loop.time() - i * FRAME / RATE
            run.last_out = loop.time()
        await c.send_frame(run.pcm[i * FRAME : (i + 1) * FRAME])
        i += 1
    await c.end()
    await reader


@contextlib.asynccontextmanager
async def observer(broker: MosquittoBroker, prefix: str) -> Any:
    """Collect every event of every stream under ``prefix`` (what the broker carried, not one client's view)."""
    seen: list[Event] = []
    async with aiomqtt.Client(**broker.client_kwargs()) as raw:
        await raw.subscribe(f"{prefix}/+/events", qos=1)

        async def collect() -> None:
            async for msg in raw.messages:
                seen.append(parse_event(msg.payload))  # type: ignore[arg-type]

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            await asyncio.sleep(0.2)  # the last events in flight
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def claims_by_stream(events: list[Event]) -> dict[str, list[str]]:
    """stream id -> worker ids of its ``claimed`` events, in order."""
    out: dict[str, list[str]] = {}
    for e in events:
        if e.kind == "claimed":
            out.setdefault(e.stream_id, []).append(e["worker_id"])
    return out


def clients(broker: MosquittoBroker, prefix: str, sids: list[str]) -> list[StreamClient]:
    """One (not yet connected) client per stream id, under ``prefix``."""
    conn = ConnectionConfig(host=broker.host, port=broker.port, keepalive_s=2, timeout_s=5)
    return [StreamClient(s, connection=conn, config=ClientConfig(prefix=prefix)) for s in sids]


# -- tests ---------------------------------------------------------------------------------------------------
def test_two_worker_processes_share_the_streams(
    spawn_worker: Callable[..., WorkerProc],
    broker: MosquittoBroker,
    reference: Callable[[np.ndarray], np.ndarray],
    arun: Callable[..., Any],
) -> None:
    prefix = f"scale-{secrets.token_hex(3)}/v1"
    workers = [spawn_worker(w, prefix=prefix) for w in ("wA", "wB")]
    sids = [f"s{i}" for i in range(8)]
    runs = {sid: StreamRun(speechy(1.5, seed=i)) for i, sid in enumerate(sids)}
    wants = {sid: reference(r.pcm) for sid, r in runs.items()}
    for w in workers:
        w.wait_connected()

    async def main() -> tuple[list[Event], dict[str, str], list[StreamClient]]:
        async with observer(broker, prefix) as seen, contextlib.AsyncExitStack() as stack:
            cs = [await stack.enter_async_context(c) for c in clients(broker, prefix, sids)]
            claimed = await asyncio.gather(*(c.claim(sample_rate=RATE) for c in cs))
            await asyncio.gather(*(stream(c, runs[c.stream_id]) for c in cs))
            await asyncio.gather(*(c.next_event(kinds=("ended",), timeout_s=5) for c in cs))
        return seen, {c.stream_id: ev["worker_id"] for c, ev in zip(cs, claimed, strict=True)}, cs

    seen, owners, cs = arun(main(), timeout_s=30)
    assert claims_by_stream(seen) == {sid: [owners[sid]] for sid in sids}  # each claimed once, by one worker
    assert set(owners.values()) == {"wA", "wB"}, owners  # the $share group spread the streams
    for c in cs:
        sid = c.stream_id
        assert {e.get("worker_id") for e in seen if e.stream_id == sid} - {None} == {owners[sid]}
        ended = next(e for e in c.events if e.kind == "ended")
        n_in = -(-len(runs[sid].pcm) // FRAME) + 1  # audio frames plus the END frame
        assert ended["reason"] == "end_of_stream" and ended["frames_in"] == n_in
        assert ended["gaps"] == 0 and ended["dropped"] == 0
        (out,) = runs[sid].segments()
        assert_close(out, wants[sid], f"stream {sid} ({owners[sid]})")
    assert all(w.proc.poll() is None for w in workers)


def test_killed_worker_streams_are_reclaimed_and_the_others_keep_flowing(
    spawn_worker: Callable[..., WorkerProc],
    broker: MosquittoBroker,
    reference: Callable[[np.ndarray], np.ndarray],
    arun: Callable[..., Any],
) -> None:
    prefix = f"kill-{secrets.token_hex(3)}/v1"
    survivor, victim = spawn_worker("wA", prefix=prefix), spawn_worker("wB", prefix=prefix)
    sids = [f"k{i}" for i in range(6)]
    runs = {sid: StreamRun(speechy(3.5, seed=10 + i)) for i, sid in enumerate(sids)}
    wants = {sid: reference(r.pcm) for sid, r in runs.items()}
    survivor.wait_connected()
    victim.wait_connected()

    async def main() -> tuple[list[Event], dict[str, str], list[StreamClient]]:
        async with observer(broker, prefix) as seen, contextlib.AsyncExitStack() as stack:
            cs = [await stack.enter_async_context(c) for c in clients(broker, prefix, sids)]
            claimed = await asyncio.gather(*(c.claim(sample_rate=RATE) for c in cs))
            tasks = [asyncio.create_task(stream(c, runs[c.stream_id], stall_s=STALL_S)) for c in cs]
            async with asyncio.timeout(5):  # every stream is flowing: now kill wB mid-stream
                while not all(len(r.frames) >= 3 for r in runs.values()):
                    await asyncio.sleep(0.02)
            victim.proc.send_signal(signal.SIGKILL)
            await asyncio.gather(*tasks)
            await asyncio.gather(*(c.next_event(kinds=("ended",), timeout_s=5) for c in cs))
        return seen, {c.stream_id: ev["worker_id"] for c, ev in zip(cs, claimed, strict=True)}, cs

    seen, owners, cs = arun(main(), timeout_s=40)
    assert victim.proc.wait(5) == -signal.SIGKILL and survivor.proc.poll() is None
    lost = sorted(s for s, w in owners.items() if w == "wB")
    kept = sorted(s for s, w in owners.items() if w == "wA")
    assert lost and kept, owners
    assert claims_by_stream(seen) == {**{s: ["wA"] for s in kept}, **{s: ["wB", "wA"] for s in lost}}
    for c in cs:
        sid, run = c.stream_id, runs[c.stream_id]
        ended = [e for e in c.events if e.kind == "ended"]
        assert [e["reason"] for e in ended] == ["end_of_stream"]  # one session ended; wB's never did
        assert ended[0]["gaps"] == 0 and ended[0]["dropped"] == 0
        segs = run.segments()
        if sid in kept:  # never stalled, never re-claimed, full output
            assert run.resumed_at is None and len(segs) == 1, (sid, run.resumed_at)
            assert run.max_out_gap() < STALL_S
            assert_close(segs[0], wants[sid], f"surviving stream {sid}")
        else:  # stalled, re-claimed by wA, and the rest of the audio translated in full
            assert run.resumed_at is not None and run.reclaimed_by == "wA" and len(segs) == 2, (sid, run)
            assert 0 < len(segs[0]) < len(wants[sid])
            assert_close(segs[0], wants[sid][: len(segs[0])], f"stream {sid} before the kill")
            rest = run.pcm[run.resumed_at * FRAME :]
            assert ended[0]["frames_in"] == -(-len(rest) // FRAME) + 1
            assert_close(segs[1], reference(rest), f"stream {sid} after the re-claim")


def test_cli_mqtt_send_matches_cli_translate(
    spawn_worker: Callable[..., WorkerProc], broker: MosquittoBroker, tiny_model_dir: Path, tmp_path: Path
) -> None:
    src, ref, out = tmp_path / "x.wav", tmp_path / "ref.wav", tmp_path / "out.wav"
    sf.write(src, speechy(1.2, seed=3), RATE, subtype="PCM_16")
    worker = spawn_worker("wcli")
    translate = subprocess.Popen(
        streamer_cmd(
            "translate", str(src), str(ref), "--model", str(tiny_model_dir), "--backend", "eager", "--threads", "1"
        ),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        worker.wait_connected()
        sent = subprocess.run(
            streamer_cmd(
                "mqtt-send", str(src), "--stream", "s1", "--output", str(out), "--broker", broker.url, "--fast"
            ),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "worker_id='wcli'" in sent.stdout and "out_gaps=0" in sent.stdout, sent.stdout
        log, _ = translate.communicate(timeout=30)
        assert translate.returncode == 0, log
    finally:
        if translate.poll() is None:
            translate.kill()
            translate.wait(5)
    got, got_rate = sf.read(out, dtype="float32")
    want, want_rate = sf.read(ref, dtype="float32")
    assert got_rate == want_rate
    assert len(want) > 0 and np.abs(want).max() > 0.01  # a real signal, not silence
    assert_close(got, want, "mqtt-send vs translate")
    assert "claimed stream s1" in worker.log()
