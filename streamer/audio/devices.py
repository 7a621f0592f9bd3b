"""Audio devices through sounddevice (PortAudio): list them, describe them, pick one.

Every function takes `sd=None`: a module-like object with sounddevice's `query_devices()`,
`default.device`, `check_input_settings`, `check_output_settings`, `InputStream` and `OutputStream`.
None means the real `sounddevice`, imported lazily so that `streamer.audio` imports without PortAudio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from streamer.errors import DeviceError

__all__ = ["DeviceInfo", "describe_devices", "find_device", "list_devices", "negotiate_settings"]

Kind = Literal["input", "output"]

NO_INPUT_HINT = (
    "no audio input device found; run `streamer devices` to list devices, "
    "or use `--input file.wav` to simulate a microphone from a file"
)
NO_OUTPUT_HINT = (
    "no audio output device found; run `streamer devices` to list devices, "
    "or use `--output out.wav` to write the audio to a file"
)
NO_DEVICES_MESSAGE = (
    "No audio devices found: PortAudio sees no microphone or speaker on this machine. "
    "Connect one (or check the OS audio permissions), or work with files instead: "
    "`--input file.wav` simulates a microphone and `--output out.wav` replaces the speaker."
)


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device: its index, name, channel counts and default sample rate in Hz."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


def sounddevice_module(sd: Any = None) -> Any:
    """Return `sd`, or import the real sounddevice; DeviceError if PortAudio is missing."""
    if sd is not None:
        return sd
    try:
        import sounddevice
    except OSError as e:  # the PortAudio shared library is missing
        raise DeviceError(
            f"cannot load PortAudio ({e}); install it (e.g. `apt install libportaudio2`), "
            "or use `--input file.wav` / `--output out.wav` instead of audio devices"
        ) from e
    return sounddevice


def list_devices(sd: Any = None) -> list[DeviceInfo]:
    """All devices PortAudio reports, in index order (an empty list when there are none)."""
    sd = sounddevice_module(sd)
    try:
        raw = sd.query_devices()
    except Exception as e:  # PortAudioError, or a broken host API
        raise DeviceError(f"cannot query audio devices: {e}") from e
    if isinstance(raw, dict):
        raw = [raw]
    return [
        DeviceInfo(
            index=int(d.get("index", i)),
            name=str(d["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
        )
        for i, d in enumerate(raw)
    ]


def _default_index(sd: Any, kind: Kind) -> int | None:
    """sd.default.device is an (input, output) pair, or one value for both; -1 means none."""
    pair = getattr(getattr(sd, "default", None), "device", None)
    if isinstance(pair, int | str) or pair is None:
        idx = pair
    else:
        try:
            idx = pair[0 if kind == "input" else 1]
        except (IndexError, KeyError, TypeError):
            return None
    return int(idx) if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0 else None


def describe_devices(sd: Any = None) -> str:
    """A table of the devices (`>` marks the default input, `<` the default output), or a sentence
    saying none were found and what to do instead."""
    sd = sounddevice_module(sd)
    devices = list_devices(sd)
    if not devices:
        return NO_DEVICES_MESSAGE
    din, dout = _default_index(sd, "input"), _default_index(sd, "output")
    width = max(len("name"), *(len(d.name) for d in devices))
    lines = [f"    {'index':>5}  {'name':<{width}}  {'in':>3}  {'out':>3}  {'rate (Hz)':>9}"]
    for d in devices:
        mark = (">" if d.index == din else " ") + ("<" if d.index == dout else " ")
        lines.append(
            f"{mark}  {d.index:>5}  {d.name:<{width}}  {d.max_input_channels:>3}  "
            f"{d.max_output_channels:>3}  {d.default_samplerate:>9.0f}"
        )
    lines.append("(> default input, < default output)")
    return "\n".join(lines)


def find_device(spec: int | str | None, *, kind: Kind, sd: Any = None) -> DeviceInfo:
    """Pick a device with channels of `kind` ("input" or "output").

    `spec` is None (the default device, else the first one of that kind), an index (int or digit
    string), or a case-insensitive substring of the name; an exact name match wins over substrings.
    Raises DeviceError when there is none, the index is unknown or lacks `kind` channels, or a name
    matches nothing or several devices.
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    sd = sounddevice_module(sd)
    devices = list_devices(sd)
    usable = [d for d in devices if d.channels(kind) > 0]
    if not usable:
        raise DeviceError(NO_INPUT_HINT if kind == "input" else NO_OUTPUT_HINT)
    if spec is None:
        default = _default_index(sd, kind)
        return next((d for d in usable if d.index == default), usable[0])
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise DeviceError(f"audio device must be an index or a name, got {spec!r}")
    if isinstance(spec, int) or spec.strip().isdigit():
        return _by_index(devices, int(spec), kind)
    return _by_name(usable, spec, kind)


def _by_index(devices: list[DeviceInfo], index: int, kind: Kind) -> DeviceInfo:
    dev = next((d for d in devices if d.index == index), None)
    if dev is None:
        raise DeviceError(f"no audio device with index {index}; run `streamer devices` to list devices")
    if dev.channels(kind) == 0:
        raise DeviceError(f"audio device {index} ({dev.name!r}) has no {kind} channels")
    return dev


def _by_name(usable: list[DeviceInfo], name: str, kind: Kind) -> DeviceInfo:
    needle = name.strip().lower()
    exact = [d for d in usable if d.name.lower() == needle]
    matches = exact or [d for d in usable if needle in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        names = ", ".join(repr(d.name) for d in usable)
        raise DeviceError(f"no {kind} device matches {name!r}; {kind} devices are: {names}")
    found = ", ".join(f"{d.index}: {d.name!r}" for d in matches)
    raise DeviceError(f"{kind} device name {name!r} is ambiguous, it matches {found}; use the index")


def negotiate_settings(sd: Any, device: DeviceInfo, *, kind: Kind, sample_rate: int) -> tuple[int, int]:
    """Choose (rate_hz, channels) to open `device` with, trying in order: `sample_rate` mono, the
    device's default rate mono, the default rate with min(2, max channels). DeviceError if none works."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    default_rate = int(round(device.default_samplerate)) or sample_rate
    tries = [(sample_rate, 1), (default_rate, 1), (default_rate, min(2, device.channels(kind)))]
    errors = []
    for rate, channels in dict.fromkeys(tries):
        try:
            check(device=device.index, samplerate=rate, channels=channels, dtype="float32")
        except Exception as e:  # sounddevice raises PortAudioError or ValueError
            errors.append(f"{rate} Hz x{channels}: {e}")
            continue
        return rate, channels
    raise DeviceError(f"cannot open {kind} device {device.index} ({device.name!r}): " + "; ".join(errors))
