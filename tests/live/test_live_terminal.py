"""`streamer live` in a real pseudo-terminal: the status view draws, Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pexpect = pytest.importorskip("pexpect")

REPO = Path(__file__).resolve().parents[2]


def test_view_renders_and_ctrl_c_leaves_a_complete_wav(tmp_path, tiny_model_dir, speech_wav) -> None:
    x, rate = sf.read(speech_wav, dtype="float32")
    long = tmp_path / "talk.wav"
    sf.write(long, np.tile(x, 6), rate)  # 6.6 s: Ctrl-C comes long before the end
    out = tmp_path / "out.wav"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "110", "LINES": "30", "TERM": "xterm-256color"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "streamer", "live", "--model", str(tiny_model_dir), "--threads", "1",
         "--input", str(long), "--output", str(out)],
        cwd=str(tmp_path), env=env, dimensions=(30, 110), encoding="utf-8", timeout=60,
    )
    try:
        child.expect("streamer live")  # the panel title: the view is on because stdout is a terminal
        child.expect(["compute", "latency"])
        child.expect(r"00:01\.\d")  # a second of input went through while the view kept redrawing
        child.sendintr()  # Ctrl-C: SIGINT to the foreground process group, as a terminal sends it
        child.expect("stopped by user", timeout=60)
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    info = sf.info(out)
    y, out_rate = sf.read(out, dtype="float32")
    assert info.format == "WAV" and out_rate == 16000 and len(y) == info.frames
    assert out.stat().st_size == 44 + 2 * info.frames  # header finalised; nothing cut off
    # Input heard before Ctrl-C (>= 1 s) plus the gate delay and the flushed tail, but not the whole file.
    assert 1.0 <= len(y) / out_rate <= 6.0 + 0.256 + 40 * 0.16
