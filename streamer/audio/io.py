"""Audio files in and out (soundfile), and validation of in-memory sample arrays.

Every problem raises `AudioFileError` (files) or `AudioError` (arrays) with a message that names the
file and the problem: missing, empty, no frames, not audio, corrupt, NaN/Inf samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.audio.resample import check_rate, resample
from streamer.errors import AudioError, AudioFileError

__all__ = ["AudioInfo", "audio_info", "check_samples", "open_audio", "read_audio", "write_audio"]

MAX_CHANNELS = 64
_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file holds: its native rate (Hz), length (frames), channels and format names."""

    path: Path
    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def check_samples(
    samples: object, *, name: str = "samples", sample_rate: int | None = None, offset: int = 0
) -> np.ndarray:
    """Validate audio samples and return them as a mono float32 array of shape (T,).

    Accepted: shape (T,) mono, or (T, C) with 1 <= C <= 64 channels, which are averaged to mono (the
    soundfile layout; a (C, T) array is refused with a hint to transpose it). Float dtypes are cast to
    float32 unchanged; int8/int16/int32 PCM is scaled to [-1, 1) (int16 / 32768); uint8 is offset-binary.
    T may be 0. NaN or Inf samples raise AudioError giving their count and the first position (and its
    time when `sample_rate` is given); `offset` is the index of samples[0] in a longer stream, added to
    that position. Values outside [-1, 1] are allowed here; writers clip them.
    """
    x = np.asarray(samples)
    if x.dtype.kind not in "fiu":
        raise AudioError(f"{name} must be a numeric (float or int PCM) array, got dtype {x.dtype}")
    if x.ndim == 2:
        if not 1 <= x.shape[1] <= MAX_CHANNELS:
            raise AudioError(
                f"{name} has shape {x.shape}: expected (T,) or (T, C) with 1 <= C <= {MAX_CHANNELS}; "
                "for a (C, T) array pass its transpose `.T`"
            )
    elif x.ndim != 1:
        raise AudioError(f"{name} must have shape (T,) or (T, C), got {x.ndim}-D shape {x.shape}")
    x = _to_float32(x)
    _check_finite(x, name=name, sample_rate=sample_rate, offset=offset)
    if x.ndim == 2:
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def _to_float32(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    scale = _INT_SCALE.get(x.dtype)
    if scale is None:
        raise AudioError(f"unsupported integer sample dtype {x.dtype}; use int8, int16, int32 or float")
    return (x.astype(np.float64) / scale).astype(np.float32)


def _check_finite(x: np.ndarray, *, name: str, sample_rate: int | None, offset: int) -> None:
    bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    if count == 0:
        return
    first = np.unravel_index(int(np.argmax(bad.ravel())), x.shape)
    value = x[first]
    kind = "NaN" if np.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    index = offset + int(first[0])
    where = f"sample {index}" + (f", channel {first[1]}" if x.ndim == 2 and x.shape[1] > 1 else "")
    if sample_rate:
        where += f" (t = {index / sample_rate:.3f} s)"
    raise AudioError(f"{name} contains {count} non-finite value(s) (NaN/Inf); the first is {kind} at {where}")


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"audio file not found: {p}")
    if p.is_dir():
        raise AudioFileError(f"expected an audio file but {p} is a directory")
    if p.stat().st_size == 0:
        raise AudioFileError(f"audio file is empty (0 bytes): {p}")
    return p


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open an audio file for reading after checking it exists, is not empty and is readable audio.

    Returns an open `soundfile.SoundFile` (the caller closes it). Raises AudioFileError naming the problem.
    """
    p = _check_path(path)
    try:
        f = sf.SoundFile(p)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        with p.open("rb") as fh:
            head = fh.read(512)
        if _looks_like_text(head):
            raise AudioFileError(f"{p} is not an audio file: it looks like text ({e})") from e
        msg = f"cannot read {p}: not a recognised audio format, or the file is corrupt ({e})"
        raise AudioFileError(msg) from e
    if f.frames == 0:
        f.close()
        raise AudioFileError(f"audio file has no samples (0 frames): {p}")
    return f


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Check `path` like `open_audio` and return its `AudioInfo` (nothing is decoded)."""
    with open_audio(path) as f:
        return AudioInfo(Path(path), int(f.samplerate), int(f.frames), int(f.channels), f.format, f.subtype)


def read_audio(path: str | os.PathLike, *, sample_rate: int | None = 16000) -> tuple[np.ndarray, int]:
    """Read a whole audio file as mono float32.

    Any format and rate libsndfile reads (wav, flac, ogg/vorbis, mp3, aiff, ...). Channels are averaged.
    Args:
        path: the file.
        sample_rate: resample to this rate in Hz; None keeps the file's own rate.
    Returns:
        (samples, rate): samples of shape (T,) in [-1, 1], float32, and their rate in Hz.
    """
    if sample_rate is not None:
        sample_rate = check_rate(sample_rate)
    with open_audio(path) as f:
        native_rate = int(f.samplerate)
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as e:
            raise AudioFileError(f"cannot decode {path}: the file is corrupt ({e})") from e
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file has no decodable samples (0 frames read): {path}")
    try:
        mono = check_samples(data, name=str(path), sample_rate=native_rate)
    except AudioError as e:
        raise AudioFileError(str(e)) from e
    if sample_rate is None or sample_rate == native_rate:
        return mono, native_rate
    return resample(mono, native_rate, sample_rate), sample_rate


def write_audio(
    path: str | os.PathLike, samples: np.ndarray, *, sample_rate: int, subtype: str | None = "PCM_16"
) -> Path:
    """Write mono samples, shape (T,) (or (T, C), mixed down), to `path`; return the path.

    The container comes from the extension (.wav, .flac, .ogg, ...). `subtype` defaults to 16-bit PCM
    (None lets soundfile choose, e.g. Vorbis for .ogg); samples are clipped to [-1, 1] for PCM.
    Parent directories are created.
    """
    sample_rate = check_rate(sample_rate)
    x = check_samples(samples, sample_rate=sample_rate)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if subtype is None or subtype.startswith("PCM"):
        x = np.clip(x, -1.0, 1.0)
    try:
        sf.write(p, x, sample_rate, subtype=subtype)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioFileError(f"cannot write {p} (subtype {subtype}): {e}") from e
    return p
