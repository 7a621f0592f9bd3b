"""Audio in and out for streamer: files, arrays, microphone and speaker; resampling and chunking.

Model input is 16 kHz mono float32 in fixed chunks (160 ms = 2560 samples by default). Sources are
async iterators of such chunks; sinks take float32 arrays through ``write(samples)`` / ``close()``.
Bad audio raises `streamer.errors.AudioError` / `AudioFileError`, device trouble `DeviceError`.
"""

from streamer.audio.devices import DeviceInfo, describe_devices, find_device, list_devices
from streamer.audio.io import AudioInfo, audio_info, check_samples, read_audio, write_audio
from streamer.audio.mic import MicrophoneSource
from streamer.audio.resample import StreamingResampler, resample
from streamer.audio.sinks import AudioSink, QueueSink, SpeakerSink, WavSink
from streamer.audio.sources import Chunker, array_source, chunk_samples, file_source, iterator_source

__all__ = [
    "AudioInfo",
    "AudioSink",
    "Chunker",
    "DeviceInfo",
    "MicrophoneSource",
    "QueueSink",
    "SpeakerSink",
    "StreamingResampler",
    "WavSink",
    "array_source",
    "audio_info",
    "check_samples",
    "chunk_samples",
    "describe_devices",
    "file_source",
    "find_device",
    "iterator_source",
    "list_devices",
    "read_audio",
    "resample",
    "write_audio",
]
