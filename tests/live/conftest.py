"""Fixtures for `streamer live`: espeak-ng speech files, noise, and a fake sounddevice whose input device
plays a real wav file in real time from a callback thread and whose output device pulls on a thread."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

SPEECH_LEVEL_DBFS = -19.0  # active-speech RMS of espeak-ng's default voice (measured)


def espeak(path: Path, text: str) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it makes the speech these tests use")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'turn on the light', 22.05 kHz mono, about 1.1 s."""
    return espeak(tmp_path_factory.mktemp("speech") / "light.wav", "turn on the light")


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Four espeak-ng utterances at 16 kHz (float32)."""
    import soxr

    folder = tmp_path_factory.mktemp("clips")
    texts = ["turn on the light", "what time is it now", "please open the door and close the window",
             "good morning how are you today"]
    clips = []
    for i, text in enumerate(texts):
        x, sr = sf.read(espeak(folder / f"{i}.wav", text), dtype="float32")
        clips.append(soxr.resample(x, sr, 16000).astype(np.float32))
    return clips


def pink_noise(n: int, *, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """Pink (1/f) noise with the given RMS level in dBFS, float32 (n,)."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(len(spec), dtype=np.float64)
    k[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(k), n)
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (level_dbfs / 20)).astype(np.float32)


@pytest.fixture(scope="session")
def noise_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of pink noise 10 dB below espeak speech level, 16 kHz."""
    path = tmp_path_factory.mktemp("noise") / "noise.wav"
    sf.write(path, pink_noise(32000, level_dbfs=SPEECH_LEVEL_DBFS - 10), 16000, subtype="FLOAT")
    return path


class WavInputStream:
    """Plays `sd.wav` (at the stream's rate) block by block in real time from a thread, then calls
    `finished_callback`, as PortAudio does after the callback raises CallbackStop."""

    def __init__(self, sd: WavSoundDevice, *, device, samplerate, channels, dtype, blocksize, callback,
                 finished_callback=None) -> None:
        assert dtype == "float32" and samplerate == sd.wav_rate, (dtype, samplerate)
        self.sd, self.channels, self.blocksize = sd, channels, blocksize
        self.period_s = blocksize / samplerate
        self.callback, self.finished_callback = callback, finished_callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        x, t0 = self.sd.wav, time.monotonic()
        for k, start in enumerate(range(0, len(x), self.blocksize)):
            if self._stop.is_set():
                return
            block = np.zeros((self.blocksize, self.channels), dtype=np.float32)
            piece = x[start : start + self.blocksize]
            block[: len(piece)] = piece[:, None]
            self.callback(block, self.blocksize, None, SimpleNamespace(input_overflow=False))
            self.sd.blocks_in += 1
            delay = t0 + (k + 1) * self.period_s - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        if self.finished_callback is not None:
            self.finished_callback()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def close(self) -> None:
        pass


class PullOutputStream:
    """Pulls one block from the callback every `blocksize / samplerate / speed` seconds; keeps what it got."""

    def __init__(self, sd: WavSoundDevice, *, device, samplerate, channels, dtype, blocksize, callback) -> None:
        self.sd, self.channels, self.blocksize, self.callback = sd, channels, blocksize, callback
        self.period_s = blocksize / samplerate / sd.output_speed
        self.played: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        sd.outputs.append(self)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        t0, k = time.monotonic(), 0
        while not self._stop.is_set():
            out = np.full((self.blocksize, self.channels), np.nan, dtype=np.float32)
            self.callback(out, self.blocksize, None, SimpleNamespace(output_underflow=False))
            self.played.append(out[:, 0].copy())
            k += 1
            delay = t0 + k * self.period_s - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def output(self) -> np.ndarray:
        return np.concatenate(self.played) if self.played else np.zeros(0, np.float32)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def close(self) -> None:
        pass


class WavSoundDevice:
    """Module-like stand-in for `sounddevice`: device 0 is a microphone that only runs at the wav's rate
    and plays the wav; device 1 a speaker at any rate pulling `output_speed` times faster than real time."""

    PortAudioError = RuntimeError

    def __init__(self, wav: np.ndarray, wav_rate: int, *, output_speed: float = 1.0) -> None:
        self.wav, self.wav_rate, self.output_speed = wav, wav_rate, output_speed
        self.default = SimpleNamespace(device=[0, 1])
        self.outputs: list[PullOutputStream] = []
        self.blocks_in = 0

    def query_devices(self) -> list[dict[str, Any]]:
        return [
            {"name": "Wav Mic", "max_input_channels": 1, "max_output_channels": 0,
             "default_samplerate": float(self.wav_rate)},
            {"name": "Fake Speaker", "max_input_channels": 0, "max_output_channels": 2,
             "default_samplerate": 48000.0},
        ]

    def check_input_settings(self, *, device, samplerate, channels, dtype) -> None:
        if device != 0 or int(samplerate) != self.wav_rate or channels != 1:
            raise self.PortAudioError(f"Invalid input settings ({device}, {samplerate}, {channels})")

    def check_output_settings(self, *, device, samplerate, channels, dtype) -> None:
        if device != 1 or channels > 2:
            raise self.PortAudioError(f"Invalid output settings ({device}, {samplerate}, {channels})")

    def InputStream(self, **kw: Any) -> WavInputStream:  # mirrors sounddevice
        return WavInputStream(self, **kw)

    def OutputStream(self, **kw: Any) -> PullOutputStream:  # mirrors sounddevice
        return PullOutputStream(self, **kw)


@pytest.fixture
def wav_sd() -> type[WavSoundDevice]:
    return WavSoundDevice


@pytest.fixture
def make_noise():
    """`pink_noise(n, level_dbfs=...)`; SPEECH_LEVEL_DBFS is espeak's speech level."""
    return pink_noise
