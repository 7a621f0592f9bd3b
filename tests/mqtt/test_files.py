"""send_file / record_stream: whole files through a worker and a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamer.mqtt.broker import MosquittoBroker
from streamer.mqtt.client import ClientConfig
from streamer.mqtt.connection import ConnectionConfig
from streamer.mqtt.files import record_stream, send_file
from streamer.mqtt.worker import Worker, WorkerConfig

pytestmark = pytest.mark.mqtt


@pytest.mark.parametrize(("rate", "realtime"), [(48000, False), (11025, True)])
def test_send_file_and_record_stream(
    tiny_model_dir: Path,
    broker: MosquittoBroker,
    arun: Callable[..., Any],
    tmp_path: Path,
    rate: int,
    realtime: bool,
) -> None:
    from streamer.pipeline import Translator

    translator = Translator.from_dir(tiny_model_dir)
    src = tmp_path / "in.wav"
    t = np.arange(int(0.6 * rate)) / rate
    sf.write(src, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate)
    conn = ConnectionConfig(host=broker.host, port=broker.port)
    sid = f"file{rate}"

    async def main() -> Any:
        worker = Worker(translator, connection=conn, config=WorkerConfig(worker_id="wf"))
        task = asyncio.create_task(worker.run())
        await worker.connected.wait()
        listener = asyncio.create_task(
            record_stream(sid, tmp_path / "rec.wav", connection=conn, timeout_s=10)
        )
        await asyncio.sleep(0.3)  # the listener subscribes first
        report = await send_file(
            src,
            stream_id=sid,
            out_path=tmp_path / "out.wav",
            connection=conn,
            config=ClientConfig(frame_ms=20),
            realtime=realtime,
        )
        recorded = await listener
        worker.stop()
        await task
        return report, recorded

    report, recorded = arun(main(), timeout_s=60)
    sent_rate = rate if rate != 11025 else 16000  # 11025 Hz is not a wire rate: resampled to 16 kHz
    assert report.input_ms == pytest.approx(600, abs=1)
    assert report.frames_sent == 30 + 1  # 20 ms frames plus the END frame
    assert report.worker_id == "wf" and report.ended_reason in (None, "end_of_stream")
    assert report.output_sample_rate == translator.output_sample_rate and report.output_ms >= 600
    assert report.first_output_ms is not None and report.first_output_ms > 0
    out, out_rate = sf.read(tmp_path / "out.wav")
    assert out_rate == translator.output_sample_rate and len(out) == len(report.output)
    assert recorded.frames_received == report.frames_received and recorded.worker_id is None
    rec, _ = sf.read(tmp_path / "rec.wav")
    assert len(rec) == len(out)
    started = next(e for e in report.events if e.kind == "started")
    assert started["sample_rate"] == sent_rate
