"""Short synthetic utterances for the bench tests: espeak-ng speech, resampled to 16 kHz wav."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from streamer.audio.io import read_audio

TEXTS = ("turn on the light", "good morning to you")


@pytest.fixture(scope="session")
def speech_wavs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Two short espeak-ng utterances (about 1.2 s each) as 16 kHz mono wav files."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("speech")
    paths = []
    for i, text in enumerate(TEXTS):
        raw = out / f"raw{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        samples, _ = read_audio(raw, sample_rate=16_000)
        path = out / f"utt{i}.wav"
        sf.write(path, samples, 16_000)
        paths.append(str(path))
    return tuple(paths)


@pytest.fixture(scope="session")
def speech_dir(speech_wavs: tuple[str, ...]) -> Path:
    return Path(speech_wavs[0]).parent
