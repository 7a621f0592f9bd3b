"""Phoneme units: the target voice's own phonemes, timed by espeak-ng as it speaks them.

The target voice is espeak-ng, so its phonemes and their timing come for free and exactly: libespeak-ng
reports a phoneme event, with its sample position, for every phoneme it synthesises. Its audio is the
same, sample for sample, as the `espeak-ng` command's that made the corpus, so the events label the
corpus's target clips frame by frame once `synth`'s trim is replayed.

Why phonemes rather than k-means units for the target: a target sentence then has one short, exact
unit sequence (about 12 units/s instead of ~30 jittery k-means units/s), which a small CTC decoder can
learn from a few hours of speech; the vocoder learns the voice from the same frame labels.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from streamer.errors import StreamerError
from streamer.train import synth

SILENCE = "_"  # every espeak pause phoneme (_, _:, _!, ...) is this one unit, id 0


class MismatchError(StreamerError):
    """A target clip that is not the espeak target voice saying its text."""


_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_RETRIEVAL, _PHONEME_EVENTS = 1, 1
_RATE, _PITCH, _WORDGAP = 1, 3, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """libespeak-ng in retrieval mode; one per process (the library is a singleton and not thread-safe)."""

    _instance: _Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as e:
            raise synth.EngineUnavailableError(
                "libespeak-ng is not installed (apt-get install espeak-ng); phoneme units need it") from e
        self.sample_rate = self.lib.espeak_Initialize(_RETRIEVAL, 0, None, _PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise synth.EngineUnavailableError("libespeak-ng failed to initialise")
        self._pcm: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._collect)  # kept alive as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Espeak()
            return cls._instance

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self._pcm.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].id.string.decode("utf-8", "replace"), events[i].sample))
            i += 1
        return 0

    def speak(self, text: str, voice: synth.Voice) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """(int16 audio at `sample_rate`, [(phoneme, start sample)]) for `text` in an espeak-ng `voice`."""
        if voice.engine != "espeak-ng":
            raise StreamerError(f"phoneme timing needs an espeak-ng target voice, not {voice.engine}")
        with self._lock:
            self._pcm, self._events = [], []
            if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise StreamerError(f"espeak-ng has no voice {voice.name!r}")
            self.lib.espeak_SetParameter(_RATE, int(voice.param("rate", 175)), 0)
            self.lib.espeak_SetParameter(_PITCH, int(voice.param("pitch", 50)), 0)
            self.lib.espeak_SetParameter(_WORDGAP, int(voice.param("gap", 0)), 0)
            data = text.encode()
            self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
            self.lib.espeak_Synchronize()
            pcm = np.concatenate(self._pcm) if self._pcm else np.zeros(0, np.int16)
            return pcm, list(self._events)


def unit_name(phoneme: str) -> str:
    return SILENCE if phoneme.startswith("_") or not phoneme.strip() else phoneme


def phoneme_sequence(text: str, voice: synth.Voice) -> list[str]:
    """The phonemes espeak-ng speaks for `text`, pauses left out."""
    _, events = _Espeak.get().speak(text, voice)
    return [name for name in (unit_name(p) for p, _ in events) if name != SILENCE]


def frame_phonemes(text: str, voice: synth.Voice, *, frame_samples: int = 320,
                   num_frames: int | None = None) -> list[str]:
    """The phoneme heard at the centre of each 20 ms frame of `synth.synthesize(text, voice)`'s audio.

    `num_frames` defaults to the frames of that (trimmed) audio; frames beyond the speech are silence.
    """
    espeak = _Espeak.get()
    pcm, events = espeak.speak(text, voice)
    if not events or not pcm.any():
        raise synth.SynthesisError(f"espeak-ng said nothing for {text!r}")
    sr = espeak.sample_rate
    audio = soxr.resample(pcm.astype(np.float32) / 32768, sr, synth.SAMPLE_RATE, quality="HQ")
    peak = float(np.max(np.abs(audio)))
    start, end = synth.trim_bounds(audio, peak)
    natural = -(-(min(end, len(audio)) - start) // frame_samples)
    # The corpus clip also keeps the trim's trailing margin (espeak's command pads with silence): ~4 frames.
    if num_frames is not None and not -2 <= num_frames - natural <= synth.TRIM_MARGIN // frame_samples + 2:
        raise MismatchError(f"a clip of {num_frames} frames is not espeak-ng {voice.name!r} saying {text!r} "
                            f"({natural} frames + margin)")
    num_frames = natural if num_frames is None else num_frames
    starts = np.array([s for _, s in events], dtype=np.float64) * synth.SAMPLE_RATE / sr - start
    names = [unit_name(p) for p, _ in events]
    centres = (np.arange(num_frames) + 0.5) * frame_samples
    index = np.searchsorted(starts, centres, side="right") - 1
    # Speech starts where the audio gets loud (espeak opens with a little silence) and ends with its audio.
    speech_start = synth.loud_bounds(audio, peak)[0] - start
    speech_end = len(pcm) * synth.SAMPLE_RATE / sr - start
    return [names[i] if i >= 0 and speech_start <= c < speech_end else SILENCE
            for i, c in zip(index, centres, strict=True)]


@dataclass(frozen=True)
class PhonemeInventory:
    """Phoneme names <-> unit ids; id 0 is silence."""

    names: tuple[str, ...]

    @staticmethod
    def build(sequences: list[list[str]], num_units: int) -> PhonemeInventory:
        seen = sorted({p for seq in sequences for p in seq} - {SILENCE})
        if len(seen) + 1 > num_units:
            raise StreamerError(f"{len(seen) + 1} phonemes do not fit num_units={num_units}: raise it in the config")
        return PhonemeInventory((SILENCE, *seen))

    def ids(self, phonemes: list[str]) -> np.ndarray:
        index = {p: i for i, p in enumerate(self.names)}
        unknown = sorted({p for p in phonemes if p not in index})
        if unknown:
            raise StreamerError(f"phonemes {unknown} are not in the inventory")
        return np.array([index[p] for p in phonemes], dtype=np.int64)

    def spoken(self, text: str, voice: synth.Voice) -> np.ndarray:
        """The units a decoder trained on `voice` should say for `text`: its frame phonemes, consecutive
        duplicates merged and silence left out, exactly as the recipe makes decoder targets."""
        from streamer.models.units import dedup

        units = dedup(self.ids(frame_phonemes(text, voice)))[0]
        return units[units != 0]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"silence": SILENCE, "phonemes": list(self.names)}, ensure_ascii=False))

    @staticmethod
    def load(path: str | Path) -> PhonemeInventory:
        return PhonemeInventory(tuple(json.loads(Path(path).read_text())["phonemes"]))
