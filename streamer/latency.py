"""SimulEval-style latency metrics for streaming speech output (all times in milliseconds).

One utterance's run is its source duration plus the output speech segments in emission order. Each
`Segment` carries `emission_ms` — the amount of source audio consumed (ms of input heard) when the
segment was emitted, SimulEval's ``delays`` — its `duration_ms`, and optionally `compute_elapsed_ms`,
the wall-clock compute accumulated by then; SimulEval's ``elapsed`` is ``emission_ms + compute_elapsed_ms``.

The definitions follow SimulEval 1.1.4 (``simuleval/evaluator/scorers/latency_scorer.py`` and
``SpeechOutputInstance`` in ``simuleval/evaluator/instance.py``), with these deliberate differences:

- EndOffset_CA: SimulEval builds speech-output intervals from the non-CA delays only, so its CA
  EndOffset equals EndOffset. Here the intervals are rebuilt from ``elapsed`` (playback cannot start
  before the compute is done), so EndOffset_CA >= EndOffset.
- ATD uses SimulEval's speech-output path (300 ms target/source tokens, segment durations). SimulEval's
  CLI scores from its ``instances.log``, whose ``LogInstance`` takes the text-output path (0-length
  tokens), and that log stores ``elapsed: []`` for speech output, so the CLI cannot score any CA metric
  for speech output. We compute what SimulEval's scorers return on the in-memory instance.
- ``reference_ms`` (an extension): a reference/offline output duration is turned into SimulEval's
  ``|Y|`` in segment units, ``len(segments) * reference_ms / output_ms``. ``reference_length`` is
  SimulEval's own ``|Y|`` (it uses the word count of the reference text); give at most one.
- Empty output: SimulEval warns and skips the instance. `compute_latency` returns NaN metrics with
  ``num_utterances == 0``, and `aggregate` averages only over utterances with output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from statistics import mean

import numpy as np

from streamer.errors import AudioError

__all__ = [
    "ComputeStats",
    "LatencyStats",
    "Segment",
    "aggregate",
    "compute_latency",
    "segments_from_chunks",
]

ATD_TOKEN_MS = 300.0  # SimulEval's virtual token length for speech (source and target), ms
_NAMES = {"start_offset": "StartOffset", "end_offset": "EndOffset", "al": "AL", "laal": "LAAL", "atd": "ATD"}


@dataclass(frozen=True)
class Segment:
    """One output speech segment.

    emission_ms: source audio consumed (ms) when the segment was emitted (SimulEval ``delays``).
    duration_ms: duration of the segment's (non-silent) speech, ms; must be > 0.
    compute_elapsed_ms: wall-clock compute (ms) accumulated up to and including this emission, or None.
    """

    emission_ms: float
    duration_ms: float
    compute_elapsed_ms: float | None = None


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one utterance, or the mean over utterances (`aggregate`). All times in ms.

    start_offset_ms: first output emission minus start of input (SimulEval StartOffset).
    end_offset_ms: end of the output timeline minus end of input (EndOffset).
    al_ms / laal_ms: Average Lagging / Length-Adaptive Average Lagging over segments.
    atd_ms: Average Token Delay with 300 ms virtual tokens.
    *_ca_ms: the same, computation-aware (compute time included); NaN without compute times.
    source_ms: source duration; output_ms: total output speech duration.
    num_utterances: utterances with output counted here (0 for an empty output: metrics are NaN).
    """

    start_offset_ms: float
    end_offset_ms: float
    al_ms: float
    laal_ms: float
    atd_ms: float
    start_offset_ca_ms: float
    end_offset_ca_ms: float
    al_ca_ms: float
    laal_ca_ms: float
    atd_ca_ms: float
    source_ms: float
    output_ms: float
    num_utterances: int

    def as_dict(self, unit: str = "ms") -> dict[str, float]:
        """Metrics under SimulEval's names ("AL", "AL_CA", ...) in ``unit`` "ms" or "s"."""
        if unit not in ("ms", "s"):
            raise ValueError(f"unit must be 'ms' or 's', got {unit!r}")
        scale = 1.0 if unit == "ms" else 1e-3
        out: dict[str, float] = {}
        for key, name in _NAMES.items():
            out[name] = getattr(self, f"{key}_ms") * scale
            out[f"{name}_CA"] = getattr(self, f"{key}_ca_ms") * scale
        return out

    def seconds(self, name: str) -> float:
        """One metric in seconds, by SimulEval name ("LAAL_CA") or field name ("laal_ca_ms")."""
        if name.endswith("_ms"):
            return float(getattr(self, name)) * 1e-3
        return self.as_dict("s")[name]


@dataclass(frozen=True)
class ComputeStats:
    """Per-chunk compute time statistics (ms) for one stream or a pooled set of chunks.

    p50_ms, p95_ms, p99_ms: percentiles (numpy's default linear interpolation); mean_ms, max_ms.
    rtf: real-time factor, total compute / total audio duration (< 1 keeps up with real time).
    trend_slope: least-squares slope of compute time against chunk index, ms per chunk; ~0 when the
    cost does not grow with stream length.
    """

    n_chunks: int
    chunk_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    rtf: float
    trend_slope: float

    @classmethod
    def from_times(cls, chunk_times_s: Sequence[float], chunk_ms: float = 160.0) -> ComputeStats:
        """Build from per-chunk compute times in **seconds**, in stream order; chunk_ms is audio per chunk."""
        t = np.asarray(chunk_times_s, dtype=np.float64).ravel() * 1000.0
        if t.size == 0:
            raise ValueError("chunk_times_s is empty")
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise ValueError("chunk_times_s must be finite and >= 0")
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be > 0, got {chunk_ms}")
        p50, p95, p99 = np.percentile(t, [50, 95, 99])
        slope = 0.0
        if t.size > 1:
            x = np.arange(t.size, dtype=np.float64)
            slope = float(np.dot(x - x.mean(), t - t.mean()) / np.dot(x - x.mean(), x - x.mean()))
        return cls(
            n_chunks=int(t.size), chunk_ms=float(chunk_ms), p50_ms=float(p50), p95_ms=float(p95),
            p99_ms=float(p99), mean_ms=float(t.mean()), max_ms=float(t.max()),
            rtf=float(t.sum() / (t.size * chunk_ms)), trend_slope=slope,
        )


def segments_from_chunks(
    chunk_outputs: Sequence[np.ndarray],
    *,
    sample_rate: int,
    source_ms: float,
    chunk_ms: float = 160.0,
    compute_times_s: Sequence[float] | None = None,
    silence_db: float = -40.0,
    frame_ms: float = 10.0,
) -> tuple[Segment, ...]:
    """Turn per-chunk output audio into speech segments, dropping silence.

    Chunk k (0-based) is emitted after ``min((k + 1) * chunk_ms, source_ms)`` ms of source; chunks past
    the input (flush) are emitted at ``source_ms``. Each chunk is cut into ``frame_ms`` frames; a frame is
    speech when its RMS level is >= ``silence_db`` dBFS. Leading and trailing silent frames are trimmed,
    fully silent chunks are skipped. ``compute_times_s`` (seconds, one per chunk, including silent ones)
    is accumulated into ``compute_elapsed_ms``. ``sample_rate`` is the output audio's rate (Hz).
    """
    if sample_rate <= 0 or chunk_ms <= 0 or frame_ms <= 0 or source_ms <= 0:
        raise ValueError("sample_rate, source_ms, chunk_ms and frame_ms must be > 0")
    if compute_times_s is not None and len(compute_times_s) != len(chunk_outputs):
        raise ValueError(f"{len(compute_times_s)} compute times for {len(chunk_outputs)} chunks")
    elapsed = None if compute_times_s is None else np.cumsum(np.asarray(compute_times_s, float)) * 1000.0
    frame = max(1, round(sample_rate * frame_ms / 1000.0))
    threshold = 10.0 ** (silence_db / 20.0)
    segments: list[Segment] = []
    for k, chunk in enumerate(chunk_outputs):
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 1:
            raise AudioError(f"chunk {k}: expected 1-D output audio, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise AudioError(f"chunk {k}: output audio holds NaN or Inf samples")
        starts = np.arange(0, x.size, frame)
        if starts.size == 0:
            continue
        energy = np.add.reduceat(x * x, starts) / np.diff(np.append(starts, x.size))
        voiced = np.flatnonzero(np.sqrt(energy) >= threshold)
        if voiced.size == 0:
            continue
        first, last = starts[voiced[0]], min(starts[voiced[-1]] + frame, x.size)
        segments.append(Segment(
            emission_ms=min((k + 1) * chunk_ms, source_ms),
            duration_ms=1000.0 * (last - first) / sample_rate,
            compute_elapsed_ms=None if elapsed is None else float(elapsed[k]),
        ))
    return tuple(segments)


def _lagging(delays: Sequence[float], source_ms: float, tgt_len: float) -> float:
    """SimulEval's ALScorer.compute loop; LAAL is the same with tgt_len = max(len(delays), |Y|)."""
    if delays[0] > source_ms:
        return delays[0]
    gamma = tgt_len / source_ms
    total, tau = 0.0, 0
    for i, d in enumerate(delays):
        total += d - i / gamma
        tau = i + 1
        if d >= source_ms:
            break
    return total / tau


def _end_offset(times: Sequence[float], durations: Sequence[float], source_ms: float) -> float:
    """SpeechOutputInstance.summarize intervals: start_i = max(end_{i-1}, time_i); last end - source."""
    end = times[0]
    for t, d in zip(times, durations, strict=True):
        end = max(end, t) + d
    return end - source_ms


def _split(duration: float) -> list[float]:
    """Split a duration into 300 ms tokens plus the remainder (SimulEval's divmod)."""
    n, rest = divmod(duration, ATD_TOKEN_MS)
    return [ATD_TOKEN_MS] * int(n) + ([rest] if rest != 0 else [])


def _atd(delays: Sequence[float], durations: Sequence[float], compute: Sequence[float]) -> float:
    """SimulEval's ATDScorer (speech input, speech output path) for one instance.

    ``compute`` holds per-segment compute increments (zeros for the non-CA score).
    """
    chunk_dur: list[float] = []
    chunk_cmp: list[float] = []
    uniq: list[float] = []
    for d, c, dur in zip(delays, compute, durations, strict=True):
        if not uniq or d != uniq[-1]:
            uniq.append(d)
            chunk_dur.append(dur)
            chunk_cmp.append(c)
        else:
            chunk_dur[-1] += dur
            chunk_cmp[-1] += c
    sizes = {"src": [0], "tgt": [0]}
    to_chunk = {"src": [0], "tgt": [0]}
    to_time = {"src": [0.0], "tgt": [0.0]}
    tok_len: list[float] = []
    tok_delay: list[float] = []
    tok_cmp: list[float] = []
    for i, dur in enumerate(chunk_dur, 1):
        lens = _split(dur)
        tok_len += lens
        sizes["tgt"].append(len(lens))
        to_chunk["tgt"] += [i] * len(lens)
        tok_delay += [uniq[i - 1]] * len(lens)
        tok_cmp += [chunk_cmp[i - 1] / len(lens)] * len(lens)
    for i, (d, prev) in enumerate(zip(uniq, [0.0] + uniq[:-1], strict=True), 1):
        lens = _split(d - prev)
        sizes["src"].append(len(lens))
        for n in lens:
            to_time["src"].append(to_time["src"][-1] + n)
            to_chunk["src"].append(i)
    for d, c, n in zip(tok_delay, tok_cmp, tok_len, strict=True):
        to_time["tgt"].append(max(d, to_time["tgt"][-1]) + n + c)
    lags = []
    for t in range(1, len(to_chunk["tgt"])):
        cid = to_chunk["tgt"][t]
        acc_x, acc_y = sum(sizes["src"][:cid]), sum(sizes["tgt"][:cid])
        s = min(t - max(0, acc_y - acc_x), sum(sizes["src"][: cid + 1]))
        lags.append(to_time["tgt"][t] - to_time["src"][s])
    return float(mean(lags))


def compute_latency(
    source_ms: float,
    segments: Sequence[Segment],
    *,
    reference_length: float | None = None,
    reference_ms: float | None = None,
) -> LatencyStats:
    """Latency metrics (ms) of one utterance: ``source_ms`` of input, ``segments`` in emission order.

    ``reference_length`` is SimulEval's ``|Y|`` for AL/LAAL (None: the number of segments, as SimulEval
    without a reference or with ``--no-use-ref-len``); ``reference_ms`` instead gives the reference or
    offline output duration, converted to ``len(segments) * reference_ms / output_ms``. CA metrics need
    ``compute_elapsed_ms`` on every segment, else they are NaN. An empty output gives NaN metrics.
    Note: a reference word count (SimulEval's default) far below the segment count drives AL negative.
    """
    if not source_ms > 0:
        raise ValueError(f"source_ms must be > 0, got {source_ms}")
    if reference_length is not None and reference_ms is not None:
        raise ValueError("give reference_length or reference_ms, not both")
    for name, ref in (("reference_length", reference_length), ("reference_ms", reference_ms)):
        if ref is not None and not ref > 0:
            raise ValueError(f"{name} must be > 0, got {ref}")
    nan = math.nan
    if not segments:
        return LatencyStats(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, float(source_ms), 0.0, 0)
    delays = [float(s.emission_ms) for s in segments]
    durations = [float(s.duration_ms) for s in segments]
    if any(not 0 <= d <= source_ms for d in delays) or any(b < a for a, b in pairwise(delays)):
        raise ValueError("emission_ms must be non-decreasing and within [0, source_ms]")
    if any(not d > 0 for d in durations):
        raise ValueError("duration_ms must be > 0")
    output_ms = sum(durations)
    n = len(segments)
    if reference_ms is not None:
        reference_length = n * reference_ms / output_ms
    tgt_len = n if reference_length is None else reference_length

    def scores(times: list[float], compute: list[float]) -> tuple[float, ...]:
        return (
            times[0],
            _end_offset(times, durations, source_ms),
            _lagging(times, source_ms, tgt_len),
            _lagging(times, source_ms, max(n, tgt_len)),
            _atd(delays, durations, compute),
        )

    plain = scores(delays, [0.0] * n)
    cum = [s.compute_elapsed_ms for s in segments]
    if all(c is None for c in cum):
        ca: tuple[float, ...] = (nan,) * 5
    elif any(c is None for c in cum):
        raise ValueError("compute_elapsed_ms is set on some segments but not all")
    else:
        cumf = [float(c) for c in cum]  # type: ignore[arg-type]
        if any(c < 0 for c in cumf) or any(b < a for a, b in pairwise(cumf)):
            raise ValueError("compute_elapsed_ms must be >= 0 and non-decreasing")
        steps = [b - a for a, b in zip([0.0] + cumf[:-1], cumf, strict=True)]
        ca = scores([d + c for d, c in zip(delays, cumf, strict=True)], steps)
    return LatencyStats(*plain, *ca, source_ms=float(source_ms), output_ms=output_ms, num_utterances=1)


def aggregate(stats: Sequence[LatencyStats]) -> LatencyStats:
    """Mean over utterances, as SimulEval's scorers: empty outputs are skipped, and each metric is
    averaged over the utterances where it is defined (not NaN). ``num_utterances`` is the count used."""
    if not stats:
        raise ValueError("no utterances to aggregate")
    used = [s for s in stats if s.num_utterances > 0]
    values: dict[str, float] = {}
    for f in fields(LatencyStats):
        if f.name == "num_utterances":
            continue
        finite = [float(getattr(s, f.name)) for s in used if not math.isnan(getattr(s, f.name))]
        values[f.name] = float(np.mean(finite)) if finite else math.nan
    return LatencyStats(**values, num_utterances=sum(s.num_utterances for s in used))
