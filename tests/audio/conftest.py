"""A fake `sounddevice` module for the audio tests: device lists, settings checks, and Input/Output
streams that run the PortAudio callback on a real thread, as PortAudio does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest


def dev(name: str, ins: int, outs: int, rate: float = 48000.0) -> dict[str, Any]:
    """A device entry shaped like one of `sounddevice.query_devices()`."""
    return {"name": name, "max_input_channels": ins, "max_output_channels": outs, "default_samplerate": rate}


def ramp(start: int, n: int, channels: int = 1) -> np.ndarray:
    """Samples start..start+n-1 as exact float32 values k / 2**20, shape (n, channels)."""
    x = (np.arange(start, start + n, dtype=np.float64) / 2.0**20).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


class FakeInputStream:
    """Calls `callback(indata, frames, time, status)` from a thread for `n_blocks` blocks, then
    `finished_callback()`, like PortAudio after a callback raised CallbackStop."""

    def __init__(
        self, sd: FakeSoundDevice, *, device, samplerate, channels, dtype, blocksize, callback, finished_callback=None
    ) -> None:
        assert dtype == "float32"
        self.sd, self.samplerate, self.channels, self.blocksize = sd, samplerate, channels, blocksize
        self.callback, self.finished_callback = callback, finished_callback
        self.device = device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        sd.streams.append(self)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        cfg = self.sd.input
        for k in range(cfg["n_blocks"]):
            if self._stop.is_set():
                return
            block = cfg["signal"](k * self.blocksize, self.blocksize, self.channels)
            status = SimpleNamespace(input_overflow=k in cfg["overflow_blocks"])
            self.callback(block, self.blocksize, None, status)
            time.sleep(cfg["period_s"])
        if cfg["finish"] and self.finished_callback is not None:
            self.finished_callback()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.closed = True


class FakeOutputStream:
    """Pulls blocks from `callback(outdata, frames, time, status)` on a thread every `period_s` (after
    `gate` is set, if given) and records what it got in `played` (a list of (frames, channels) arrays)."""

    def __init__(self, sd: FakeSoundDevice, *, device, samplerate, channels, dtype, blocksize, callback) -> None:
        assert dtype == "float32"
        self.sd, self.samplerate, self.channels, self.blocksize = sd, samplerate, channels, blocksize
        self.callback, self.device = callback, device
        self.played: list[np.ndarray] = []
        self.pulls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        sd.streams.append(self)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        gate = self.sd.output["gate"]
        if gate is not None:
            gate.wait()
        while not self._stop.is_set():
            out = np.full((self.blocksize, self.channels), np.nan, dtype=np.float32)
            self.callback(out, self.blocksize, None, SimpleNamespace(output_underflow=False))
            self.played.append(out.copy())
            self.pulls += 1
            time.sleep(self.sd.output["period_s"])

    def output(self) -> np.ndarray:
        """Everything played, shape (frames, channels)."""
        return np.concatenate(self.played) if self.played else np.zeros((0, self.channels), np.float32)

    def stop(self) -> None:
        self._stop.set()
        if self.sd.output["gate"] is not None:
            self.sd.output["gate"].set()
        self._thread.join()

    def close(self) -> None:
        self.closed = True


class FakeSoundDevice:
    """Module-like stand-in for `sounddevice`.

    `rates` maps a device index to the sample rates it accepts (absent = any); `channels` likewise for
    channel counts. Stream behaviour is set through the `input` and `output` dicts.
    """

    PortAudioError = RuntimeError

    def __init__(
        self,
        devices: list[dict],
        *,
        default: tuple[int, int] = (-1, -1),
        rates: dict[int, set[int]] | None = None,
        channels: dict[int, set[int]] | None = None,
    ) -> None:
        self.devices = devices
        self.default = SimpleNamespace(device=list(default))
        self.rates = rates or {}
        self.channel_sets = channels or {}
        self.streams: list[Any] = []
        self.input: dict[str, Any] = {
            "n_blocks": 10,
            "signal": ramp,
            "overflow_blocks": set(),
            "period_s": 0.001,
            "finish": True,
        }
        self.output: dict[str, Any] = {"gate": None, "period_s": 0.001}

    def query_devices(self) -> list[dict]:
        return [dict(d) for d in self.devices]

    def _check(self, kind: str, device: int, samplerate: float, channels: int) -> None:
        key = "max_input_channels" if kind == "input" else "max_output_channels"
        if channels > self.devices[device][key]:
            raise self.PortAudioError(f"Invalid number of channels ({channels})")
        if device in self.rates and int(samplerate) not in self.rates[device]:
            raise self.PortAudioError(f"Invalid sample rate ({samplerate})")
        if device in self.channel_sets and channels not in self.channel_sets[device]:
            raise self.PortAudioError(f"Invalid number of channels ({channels})")

    def check_input_settings(self, *, device, samplerate, channels, dtype) -> None:
        self._check("input", device, samplerate, channels)

    def check_output_settings(self, *, device, samplerate, channels, dtype) -> None:
        self._check("output", device, samplerate, channels)

    def InputStream(self, **kw: Any) -> FakeInputStream:  # mirrors sounddevice
        return FakeInputStream(self, **kw)

    def OutputStream(self, **kw: Any) -> FakeOutputStream:  # mirrors sounddevice
        return FakeOutputStream(self, **kw)


@pytest.fixture
def fake_sd() -> Callable[..., FakeSoundDevice]:
    """Factory: ``fake_sd(devices, default=(in, out), rates={index: {...}})``."""
    return FakeSoundDevice


@pytest.fixture
def ramp_fn() -> Callable[..., np.ndarray]:
    return ramp


@pytest.fixture
def make_dev() -> Callable[..., dict]:
    return dev
