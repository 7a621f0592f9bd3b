"""Errors raised by streamer. Every error is a `StreamerError`; catch that to catch them all."""

from __future__ import annotations


class StreamerError(Exception):
    """Base class of every error streamer raises on purpose."""


class AudioError(StreamerError, ValueError):
    """Audio that cannot be used: wrong shape, NaN/Inf samples, bad sample rate."""


class AudioFileError(AudioError):
    """An audio file that is missing, empty, corrupt or not audio at all."""


class DeviceError(StreamerError, RuntimeError):
    """No usable audio device, or a device that cannot be opened."""


class ModelError(StreamerError, RuntimeError):
    """Weights or configs that are missing, mismatched or of an unknown format."""


class BackendUnavailableError(StreamerError, RuntimeError):
    """A backend (onnx, tensorrt, ...) that is not installed or has no hardware here."""


class ProtocolError(StreamerError, ValueError):
    """A malformed, truncated, oversize or out-of-order MQTT frame or payload."""


class StreamIdError(ProtocolError):
    """A stream id that is empty, too long, or holds MQTT wildcard/separator characters."""
