"""Where does the end-to-end gap come from? The streaming output against the same units voiced offline.

`vocoder_ceiling.py` voices the true units with the queue's mean durations (what a decoder that is never
wrong would get). This script takes the streaming translator's own output for a split's utterances and
voices, offline with the same vocoder:

- the emitted units with their mean durations (no queue: no speed-up under backlog, no gaps when it runs dry);
- the streaming queue's own frames with the gaps closed (queue silence between the first and the last voiced
  frame dropped: what the decoder's lateness adds);
- the streaming queue's own frames with the first `--hold` frames of each gap voicing the unit before it
  (a queue that holds its last unit when it runs dry, instead of falling silent mid-word), and the same
  holding only vowels and continuants (a held stop or tap sounds like another sound);
- the true units with mean durations, with and without the silence units (the decoder is trained to emit no
  silence units, so the second is the fair ceiling).

The judge transcribes each, the streaming output itself and the target voice (the topline). The report also
counts the queue's gaps and how much it sped the units up.

    python benchmarks/pipeline_gap.py --config configs/train/en-es.yaml --model streamer/assets/en-es \
        --n 60 --out benchmarks/results/x
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from vocoder_ceiling import difference_rows, model_split_args, retimed, speak, split_targets

from streamer.engine import BackendConfig
from streamer.eval import metrics
from streamer.eval.judge import JudgeConfig, WhisperJudge
from streamer.models.s2st import S2STModel
from streamer.pipeline import TranslationResult, Translator
from streamer.train.phonemes import SILENCE, PhonemeInventory
from streamer.train.recipe import Recipe, RecipeConfig

STREAMING, CEILING, FAIR = "streaming output", "true units, mean durations", "true units without silence units"
OFFLINE, CLOSED, TOPLINE = "emitted units, mean durations", "queue frames, gaps closed", "target voice (topline)"
HELD, HELD_SOUNDS = "queue frames, gaps held", "queue frames, gaps held on vowels and continuants"
# espeak-ng phonemes (both languages) that are over at once: stops, affricates, taps and trills. Drawn out,
# they sound like another sound, so the HELD_SOUNDS kind does not hold them.
SHORT_PHONEMES = frozenset({"p", "b", "t", "d", "k", "g", "c", "J", "q", "?", "t#", "t2", "tS", "dZ", "J^",
                            "r", "r-", "R", "R2", "*"})


def holdable(names: tuple[str, ...]) -> set[int]:
    """Ids of the sounds that can be drawn out: vowels and continuants (not silence, marks or SHORT_PHONEMES)."""
    return {i for i, p in enumerate(names)
            if p != SILENCE and p not in SHORT_PHONEMES and (p[0].isalnum() or p[0] == "@")}


def queue_frames(model: S2STModel, result: TranslationResult, chunks: int, width: int) -> np.ndarray:
    """The unit queue replayed on the units each chunk emitted: (chunks * frames_per_chunk,) frame ids."""
    state = model.queue.init_state(1)
    out = []
    for c in range(chunks):
        units = result.units[result.unit_chunks == c]
        row = torch.full((1, width), -1, dtype=torch.long)
        row[0, : len(units)] = torch.from_numpy(units)
        frames, state = model.queue.step(row, state)
        out.append(frames[0].numpy())
    return np.concatenate(out)


def close_gaps(frames: np.ndarray, silence: int) -> tuple[np.ndarray, int, int]:
    """Frames with the queue's silence inside the voiced span dropped: (frames, gap frames, gaps)."""
    voiced = np.flatnonzero(frames != silence)
    if len(voiced) == 0:
        return frames[:0], 0, 0
    span = frames[voiced[0]: voiced[-1] + 1]
    inside = span == silence
    gaps = int(np.sum(np.diff(np.concatenate([[0], inside.astype(int)])) == 1))
    return span[~inside], int(inside.sum()), gaps


def hold_gaps(frames: np.ndarray, silence: int, hold: int, holdable: set[int] | None = None) -> np.ndarray:
    """Frames with the first `hold` frames of each run of queue silence after speech voicing the unit before it
    (what a queue that holds its last unit when it runs dry would play; the timing is unchanged), where that
    unit is in `holdable` (default: any)."""
    out, last, held = frames.copy(), None, 0
    for i, f in enumerate(frames):
        if f != silence:
            last, held = f, 0
        elif last is not None and held < hold and (holdable is None or last in holdable):
            out[i], held = last, held + 1
    return out


def voiced(kind: str, model: S2STModel, utt, out: np.ndarray, frames: np.ndarray, closed: np.ndarray,
           emitted: np.ndarray, true: np.ndarray, silence_units: np.ndarray, hold: int,
           holdable: set[int]) -> np.ndarray:
    """The speech of one `kind` for an utterance: its streaming output, or units voiced offline."""
    durations, k, silence = model.queue.durations, model.queue.cfg.num_units, model.queue.cfg.silence
    if kind == TOPLINE:
        return utt.tgt
    if kind == STREAMING:
        return out
    timed = {CEILING: lambda: retimed(true, durations, k),
             FAIR: lambda: retimed(true[~np.isin(true, silence_units)], durations, k),
             OFFLINE: lambda: np.repeat(emitted, np.maximum(1, np.round(durations[emitted].numpy()).astype(int))),
             CLOSED: lambda: closed,
             HELD: lambda: hold_gaps(frames, silence, hold),
             HELD_SOUNDS: lambda: hold_gaps(frames, silence, hold, holdable)}[kind]
    return speak(model, timed())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_split_args(p, n=60)
    p.add_argument("--decoding", default="lm")
    p.add_argument("--hold", type=int, default=4, help="frames of each gap the held variant voices")
    p.add_argument("--only", nargs="+", help="judge only these kinds of speech (default: all), e.g. "
                   "'streaming output' 'queue frames, gaps held'")
    p.add_argument("--backlog-frames", type=int, help="translate with this queue backlog instead of the model's")
    p.add_argument("--queue-hold", type=int, help="translate with this queue hold instead of the model's (0: the "
                   "streaming output is the unheld baseline that the held kinds build on)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = RecipeConfig.from_yaml(args.config)
    recipe = Recipe(replace(cfg, train_limit=None))
    translator = Translator.from_dir(args.model, backend=BackendConfig(name="eager", num_threads=1),
                                     decoding=args.decoding)
    model = translator.runner.model  # eager: the translator's own model, to replay its queue and vocoder
    if args.backlog_frames is not None:
        model.queue.cfg = replace(model.queue.cfg, backlog_frames=args.backlog_frames)
    if args.queue_hold is not None:
        model.queue.cfg = replace(model.queue.cfg, hold_frames=args.queue_hold)
    sounds = holdable(PhonemeInventory.load(Path(args.model) / "phonemes.json").names)
    durations = model.queue.durations
    silence_units = np.asarray(json.loads((recipe.work / "silence_units.json").read_text()), dtype=np.int64)
    utts = split_targets(recipe, args.split, args.n)
    by_key = recipe.frame_units(utts)
    judge = WhisperJudge(JudgeConfig(cpu_threads=1))
    lang, sr, out_sr = cfg.target_lang, translator.sample_rate, translator.output_sample_rate
    every = [TOPLINE, CEILING, FAIR, OFFLINE, CLOSED, HELD, HELD_SOUNDS, STREAMING]
    kinds = args.only or every
    unknown = set(kinds) - set(every)
    if unknown:
        p.error(f"unknown kinds of speech: {sorted(unknown)}")
    if model.queue.cfg.duration_context and {CEILING, FAIR, OFFLINE} & set(kinds):
        p.error(f"the model's queue times units by context; '{CEILING}', '{FAIR}' and '{OFFLINE}' assume one "
                "mean per unit: leave them out with --only")
    hyps: dict[str, list[str]] = {k: [] for k in kinds}
    stats = []
    for u in utts:
        session = translator.translate_whole(u.src, sample_rate=sr)
        out, result = session.read_output(), session.result()
        frames = queue_frames(model, result, session.chunks_done, translator.config.max_units)
        closed, gap_frames, gaps = close_gaps(frames, model.queue.cfg.silence)
        # the units at one mean each (a queue that times by context has no such table: not counted)
        mean_frames = (math.nan if model.queue.cfg.duration_context else
                       float(np.clip(np.round(durations[result.units].numpy()), 1, None).sum()))
        stats.append({"units": len(result.units), "voiced_frames": len(closed), "mean_frames": mean_frames,
                      "gap_frames": gap_frames, "gaps": gaps})
        for name in kinds:  # the corpus's clips are at the model's input rate
            audio = voiced(name, model, u, out, frames, closed, result.units, by_key[u.tgt_key], silence_units,
                           args.hold, sounds)
            hyps[name].append(judge.transcribe(audio, sr if name == TOPLINE else out_sr, language=lang))
    write_report(Path(args.out), args, utts, hyps, stats, lang)


def write_report(out: Path, args: argparse.Namespace, utts: list, hyps: dict[str, list[str]], stats: list[dict],
                 lang: str) -> None:
    refs = [u.tgt_text for u in utts]

    rows = {k: {"asr_bleu": metrics.asr_bleu(v, refs, lang=lang), "wer": metrics.wer(v, refs, lang=lang)}
            for k, v in hyps.items()}
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_gap.json").write_text(json.dumps(
        {"args": vars(args), "n": len(utts), "scores": rows, "queue": total, "per_utterance": stats,
         "items": [{"reference": r, **{k: v[i] for k, v in hyps.items()}} for i, r in enumerate(refs)]},
        indent=1, ensure_ascii=False))
    lines = [f"Pipeline gap, {args.model}, {len(utts)} {args.split} utterances, decoding {args.decoding}"
             + (f", backlog {args.backlog_frames} frames" if args.backlog_frames is not None else "")
             + (f", queue hold {args.queue_hold} frames" if args.queue_hold is not None else "")
             + (f", gaps held for {args.hold} frames" if HELD in hyps else ""), "",
             "| speech | ASR-BLEU | of topline | WER |", "|---|---:|---:|---:|"]
    top = rows[TOPLINE]["asr_bleu"] if TOPLINE in rows else math.nan
    lines += [f"| {k} | {v['asr_bleu']:.1f} | {v['asr_bleu'] / max(top, 1e-9):.2f} | {100 * v['wer']:.1f} % |"
              for k, v in rows.items()]
    speed = total["mean_frames"] / max(1, total["voiced_frames"])
    against = ("" if math.isnan(speed) else
               f" against {total['mean_frames']:.0f} at their mean durations (speed {speed:.2f}x)")
    lines += ["", f"Queue: {total['units']} units emitted; {total['voiced_frames']} voiced frames{against}; "
              f"{total['gaps']} gaps of {total['gap_frames']} frames ({20 * total['gap_frames'] / len(utts):.0f} ms "
              "per utterance) inside the voiced span.", "",
              "ASR-BLEU against the streaming output (paired bootstrap over utterances, 1,000 resamples):", "",
              "| speech | difference | 95 % interval | ahead |", "|---|---:|---|---:|"]
    if STREAMING in hyps:
        lines += difference_rows(hyps, refs, STREAMING, lang, skip=(TOPLINE,))
    (out / "pipeline_gap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
