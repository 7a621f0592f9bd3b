"""Phoneme units: espeak-ng's own phoneme timing labels the target voice's clips frame by frame."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from streamer.errors import StreamerError
from streamer.train import synth
from streamer.train.phonemes import SILENCE, MismatchError, PhonemeInventory, frame_phonemes

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

VOWELS = {"a", "e", "i", "o", "u"}


def _frame_rms(audio: np.ndarray, n: int) -> np.ndarray:
    audio = np.pad(audio, (0, n * 320 - len(audio)))
    return np.sqrt(np.mean(audio.reshape(n, 320) ** 2, axis=1))


def test_labels_fit_the_corpus_clip_and_its_loudness() -> None:
    voice = synth.target_voice("es")
    text = "nos vemos el jueves a las dos en punto"
    audio, _ = synth.synthesize(text, voice)
    n = -(-len(audio) // 320)
    labels = frame_phonemes(text, voice, num_frames=n)
    assert len(labels) == n
    rms = _frame_rms(audio, n)
    vowel = np.array([p in VOWELS for p in labels])
    silent = np.array([p == SILENCE for p in labels])
    assert silent[-3:].all() and not silent[rms > 0.05].any()  # the trailing margin is silence, speech is not
    assert rms[vowel].mean() > 20 * rms[silent].mean()
    assert np.median(rms[vowel]) > 0.05


def test_words_come_out_as_their_phonemes_in_order() -> None:
    voice = synth.target_voice("es")
    spoken = [p for p, _ in itertools.groupby(frame_phonemes("uno dos tres", voice)) if p != SILENCE]
    assert spoken == ["u", "n", "o", "D", "o", "s", "t", "**", "e", "s"]  # ** is a tap r, spoken


def test_default_length_is_the_clip_without_its_trailing_margin() -> None:
    voice = synth.target_voice("en")
    audio, _ = synth.synthesize("turn on the light", voice)
    clip_frames = -(-len(audio) // 320)
    assert 0 <= clip_frames - len(frame_phonemes("turn on the light", voice)) <= 6


def test_a_clip_of_another_voice_is_refused() -> None:
    voice = synth.target_voice("es")
    audio, _ = synth.synthesize("hola", voice)
    with pytest.raises(MismatchError, match="not espeak-ng"):
        frame_phonemes("hola", voice, num_frames=-(-len(audio) // 320) + 40)
    with pytest.raises(StreamerError, match="espeak-ng target voice"):
        frame_phonemes("hola", synth.Voice.make("flite", "slt", "en"))


def test_inventory_round_trip_and_errors(tmp_path) -> None:
    inv = PhonemeInventory.build([["_", "o", "l", "a"], ["a", "s"]], num_units=8)
    assert inv.names[0] == SILENCE and set(inv.names) == {"_", "a", "l", "o", "s"}
    assert inv.ids(["o", "l", "a", "_"]).tolist() == [inv.names.index(p) for p in "ola_"]
    inv.save(tmp_path / "phonemes.json")
    assert PhonemeInventory.load(tmp_path / "phonemes.json") == inv
    with pytest.raises(StreamerError, match="not in the inventory"):
        inv.ids(["x"])
    with pytest.raises(StreamerError, match="do not fit num_units=3"):
        PhonemeInventory.build([["a", "b", "c"]], num_units=3)
