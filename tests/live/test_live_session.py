"""The whole live path (source -> gate -> translator -> sinks) with a tiny model and fake devices."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer import cli
from streamer.errors import DeviceError
from streamer.live import LiveConfig, LiveSession, is_audio_path, run_live
from streamer.pipeline import Translator

ATOL = 1e-4  # streaming vs offline resampling differ by ~1e-6; the tiny model keeps that small


@pytest.fixture(scope="module")
def translator(tiny_model_dir: Path) -> Translator:
    from streamer.engine import BackendConfig

    return Translator.from_dir(tiny_model_dir, backend=BackendConfig(name="eager", num_threads=1))


def test_fake_mic_and_speaker_record_equals_offline_translation(tmp_path, tiny_model_dir, speech_wav, wav_sd,
                                                                translator) -> None:
    x, rate = sf.read(speech_wav, dtype="float32")
    assert rate == 22050
    sd = wav_sd(x, rate, output_speed=8.0)  # the mic plays in real time; the speaker pulls 8x faster
    cfg = LiveConfig(model=str(tiny_model_dir), threads=1, vad=False, view="off",
                     record_in=str(tmp_path / "in.wav"), record_out=str(tmp_path / "out.wav"))
    stats = run_live(cfg, sd=sd)

    expected = translator.translate_array(x, sample_rate=rate)
    got, out_rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert out_rate == translator.output_sample_rate
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL + 2**-15)  # + one PCM16 step
    # Every chunk the fake mic delivered (1.1 s at 22.05 kHz, resampled to 16 kHz) was translated.
    assert stats.chunks == -(-round(len(x) * 16000 / rate) // translator.chunk_samples)
    assert stats.vad == "off" and stats.skipped_chunks == 0 and not stats.interrupted
    assert stats.overflows == 0 and stats.dropped == 0
    rec_in, in_rate = sf.read(tmp_path / "in.wav", dtype="float32")
    assert in_rate == 16000 and len(rec_in) == stats.chunks * translator.chunk_samples
    # The speaker (pulling 8x too fast, so with gaps of silence) played exactly the output, in order.
    played = sd.outputs[0].output()
    np.testing.assert_allclose(played[played != 0], expected[expected != 0], atol=1e-6)
    assert stats.compute_p50_ms > 0 and stats.latency_ms > 160


def test_vad_on_speech_opens_and_translates(tmp_path, tiny_model_dir, speech_wav, make_noise) -> None:
    import soxr

    x, rate = sf.read(speech_wav, dtype="float32")
    speech = soxr.resample(x, rate, 16000).astype(np.float32)
    lead = 12800  # 0.8 s = 5 chunks of noise before the speech
    mixed = make_noise(lead + len(speech) + 4800, level_dbfs=-29.0)  # 10 dB below the speech
    mixed[lead : lead + len(speech)] += speech
    sf.write(tmp_path / "mixed.wav", mixed, 16000, subtype="FLOAT")
    stats = run_live(LiveConfig(input=str(tmp_path / "mixed.wav"), output=str(tmp_path / "out.wav"),
                                model=str(tiny_model_dir), threads=1, view="off"))
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert stats.utterances == 1 and stats.steps > 0 and stats.skipped_chunks >= 4  # noise first
    first_voice_chunk = np.nonzero(np.abs(y) > 0)[0][0] // 2560
    assert first_voice_chunk >= 4  # nothing came out while only noise went in


def test_vad_on_noise_only_gives_silence_without_model_steps(tmp_path, tiny_model_dir, wav_sd, make_noise) -> None:
    noise = make_noise(24000, level_dbfs=-29.0)  # 1.5 s, 10 dB below espeak speech
    sd = wav_sd(noise, 16000, output_speed=1.0)  # mic and speaker both in real time
    stats = run_live(LiveConfig(model=str(tiny_model_dir), threads=1, view="off", jitter_ms=150,  # slack for a busy CI
                                record_out=str(tmp_path / "out.wav")), sd=sd)
    assert stats.vad in ("silero", "energy")
    assert stats.steps == 0 and stats.utterances == 0  # the model never ran
    assert stats.skipped_chunks == stats.chunks == 10  # 1.5 s / 160 ms, rounded up
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert len(y) == stats.chunks * 2560 + 4096 and np.all(y == 0.0)  # input + the gate's delay, all silence
    played = sd.outputs[0].output()
    assert len(played) >= 16000 and np.all(played == 0.0)
    assert stats.underflows == 0 and stats.overflows == 0 and stats.dropped == 0


def run_with(session: LiveSession, action) -> tuple[object, LiveSession]:
    async def main():
        task = asyncio.create_task(session.run())
        await asyncio.sleep(0.6)
        action(session, task)
        try:
            return await task
        except asyncio.CancelledError as e:
            return e

    return asyncio.run(main()), session


@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_stop_and_cancel_flush_the_translator_and_close_files(tmp_path, translator, speech_wav, how) -> None:
    long = tmp_path / "long.wav"
    x, rate = sf.read(speech_wav, dtype="float32")
    sf.write(long, np.tile(x, 4), rate)  # 4.4 s; stopped after ~0.6 s
    cfg = LiveConfig(input=str(long), output=str(tmp_path / "out.wav"), record_out=str(tmp_path / "rec.wav"),
                     vad=False, view="off")
    session = LiveSession(translator, cfg)
    if how == "stop":
        result, _ = run_with(session, lambda s, t: s.stop())
        assert result.interrupted
    else:
        result, _ = run_with(session, lambda s, t: t.cancel())
        assert isinstance(result, asyncio.CancelledError)
    stats = session.stats()
    assert stats.interrupted and 2 <= stats.chunks <= 8
    # The flush ran: at least the translator's minimum tail of chunks beyond the input.
    assert stats.steps >= stats.chunks + translator.min_flush_chunks
    for name in ("out.wav", "rec.wav"):
        info = sf.info(tmp_path / name)
        y, _ = sf.read(tmp_path / name, dtype="float32")
        assert len(y) == info.frames == stats.steps * translator.chunk_samples
        assert (tmp_path / name).stat().st_size == 44 + 2 * info.frames  # header finalised, nothing cut


def test_duration_stops_early(tmp_path, translator, speech_wav) -> None:
    cfg = LiveConfig(input=str(speech_wav), output=str(tmp_path / "o.wav"), vad=False, view="off", duration_s=0.3)
    stats = asyncio.run(LiveSession(translator, cfg).run())
    assert 2 <= stats.chunks <= 3 and not stats.interrupted  # 3 only if the loop was late to stop


def test_no_device_message_and_exit_code(tiny_model_dir, capsys) -> None:
    with pytest.raises(DeviceError) as err:
        run_live(LiveConfig(model=str(tiny_model_dir), view="off"))  # the real sounddevice: no devices here
    assert "streamer devices" in str(err.value) and "--input file.wav" in str(err.value)
    assert cli.main(["live", "--model", str(tiny_model_dir)]) == 2
    msg = capsys.readouterr().err
    assert "no audio input device" in msg and "streamer devices" in msg and "--input" in msg


def test_file_input_with_no_speaker_points_at_output_file(tiny_model_dir, speech_wav, capsys) -> None:
    assert cli.main(["live", "--model", str(tiny_model_dir), "--input", str(speech_wav)]) == 2
    assert "--output out.wav" in capsys.readouterr().err


def test_audio_paths_and_devices_are_told_apart(tmp_path) -> None:
    assert is_audio_path("x.wav") and is_audio_path("dir/y.FLAC")
    assert not is_audio_path(None) and not is_audio_path("3") and not is_audio_path("USB Mic")


def test_second_cancel_cuts_the_flush_short_and_files_stay_valid(tmp_path, translator, speech_wav,
                                                                 monkeypatch) -> None:
    import time

    step = translator.step

    def slow_step(session) -> None:  # 40 flush steps now take ~0.8 s
        time.sleep(0.02)
        step(session)

    monkeypatch.setattr(translator, "step", slow_step)
    cfg = LiveConfig(input=str(speech_wav), output=str(tmp_path / "out.wav"), vad=False, view="off")
    session = LiveSession(translator, cfg)

    async def main() -> None:
        task = asyncio.create_task(session.run())
        await asyncio.sleep(0.5)
        task.cancel()  # first: stop and flush
        await asyncio.sleep(0.3)
        task.cancel()  # second, during the flush: give up on it
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = session.stats()
    assert stats.interrupted and stats.chunks < stats.steps < stats.chunks + translator.max_flush_chunks
    info = sf.info(tmp_path / "out.wav")
    assert info.frames == stats.steps * translator.chunk_samples
    assert (tmp_path / "out.wav").stat().st_size == 44 + 2 * info.frames


def test_gated_session_skips_silence_closes_after_voice_and_resets_per_utterance(translator) -> None:
    from streamer.vad import GatedSession, VadConfig, VoiceGate

    class Loud:  # voiced where the frame is loud
        name = "loud"

        def prob(self, frame: np.ndarray) -> float:
            return float(np.abs(frame).mean() > 0.1)

        def reset(self) -> None:
            pass

    gated = GatedSession(translator, VoiceGate(Loud(), VadConfig(preroll_ms=0, hangover_ms=0)))
    n = translator.chunk_samples
    voice = np.full(n, 0.3, np.float32)
    quiet = np.zeros(n, np.float32)
    chunks = [quiet] * 3 + [voice] + [quiet] * (translator.max_flush_chunks + 4) + [voice]
    steps = [gated.process(c) for c in chunks]
    assert all(len(s.out) == n for s in steps)  # one chunk out per chunk in (16 kHz in and out here)
    phases = [s.phase for s in steps]
    assert phases[:3] == ["listening"] * 3 and all(not s.compute_ms for s in steps[:3])  # skipped: no model step
    assert all(np.all(s.out == 0) for s in steps[:3])
    assert phases[3] == "speech" and phases[4] in ("speech", "closing")  # the gate delays by one frame
    # The untrained tiny model never falls quiet, so closing ends at the cap, then chunks are skipped again.
    assert phases.index("listening", 4) <= 5 + translator.max_flush_chunks
    assert phases[-2] == "listening" and not steps[-2].compute_ms
    assert phases[-1] == "speech" and gated.utterances == 2
    tail = gated.finish()
    assert tail.compute_ms and gated.phase == "listening"
