"""Which part of the target voice's timing does the listener need? The true units, timed part by part.

`vocoder_ceiling.py` found that the true units at espeak's own timing are as intelligible as the target voice,
and at the queue's mean durations lose about a third of the ASR-BLEU. This script splits that loss: it voices
the true units of a split's target sentences with the mean durations everywhere except one class of units,
which keeps espeak's timing (vowels; consonants; pauses); with each vowel at one of two means, short or long,
as the target voice's run was (what a decoder that marked long vowels would give); with each unit's mean after
the previous two units (a causal table the queue can keep) and between the previous and the next unit (one unit
of lookahead, which a queue with a backlog often has); and with the mean
durations scaled (a slower or faster voice). The judge transcribes each; the report gives ASR-BLEU and WER,
and each against the mean durations with paired-bootstrap intervals. Pauses are only at the ends: the grammar's
target sentences have none inside.

    python benchmarks/timing_ceiling.py --config configs/train/en-es.yaml --model streamer/assets/en-es \
        --split unseen_sentences --n 80 --out benchmarks/results/x
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from vocoder_ceiling import difference_rows, model_split_args, retimed, speak, split_targets

from streamer.eval import metrics
from streamer.eval.judge import JudgeConfig, WhisperJudge
from streamer.models.checkpoint import load_model
from streamer.models.units import dedup
from streamer.train.phonemes import SILENCE, PhonemeInventory
from streamer.train.recipe import Recipe, RecipeConfig
from streamer.train.targets import context_durations, unit_durations

TOPLINE, TRUE, MEAN = "target voice (topline)", "espeak timing", "mean durations"
VOWELS, CONSONANTS, PAUSES = "vowels timed by espeak", "consonants timed by espeak", "pauses timed by espeak"
TWO = "vowels at a short or a long mean"
AFTER_TWO, BETWEEN = "mean after the previous two units", "mean between the previous and the next unit"
VOWEL_START = set("aeiouAEIOUV@03")  # espeak-ng's vowel names begin with one of these


def timed(frame_units: np.ndarray, table: np.ndarray, keep: set[int], scale: float = 1.0) -> np.ndarray:
    """Deduplicated units, those in `keep` for as long as the target voice held them and the rest for their
    mean duration times `scale` (rounded, at least one frame)."""
    units, lengths = dedup(frame_units)
    mean = np.maximum(1, np.round(table[units] * scale)).astype(int)
    return np.repeat(units, np.where(np.isin(units, list(keep)), lengths, mean))


def two_lengths(train_frames: list[np.ndarray], table: np.ndarray, units: set[int]) -> dict[int, tuple]:
    """For each of `units`: (threshold, mean of its runs up to it, mean of its runs beyond it), the threshold
    being its mean duration (what a decoder that says 'long' or 'short' for each of them could be timed by)."""
    runs: dict[int, list[int]] = {u: [] for u in units}
    for frames in train_frames:
        for u, n in zip(*dedup(frames), strict=True):
            if int(u) in runs:
                runs[int(u)].append(int(n))
    out = {}
    for u, lengths in runs.items():
        x, thr = np.asarray(lengths, dtype=float), float(table[u])
        if len(x) and (x <= thr).any() and (x > thr).any():
            out[u] = (thr, x[x <= thr].mean(), x[x > thr].mean())
    return out


def two_timed(frame_units: np.ndarray, table: np.ndarray, lengths: dict[int, tuple]) -> np.ndarray:
    """Deduplicated units at their mean durations, except the units of `lengths` at their short or long mean,
    whichever side of the threshold the target voice's run is on."""
    units, true = dedup(frame_units)
    frames = [max(1, round(float(lengths[u][1 + (n > lengths[u][0])] if u in lengths else table[u])))
              for u, n in zip(units.tolist(), true.tolist(), strict=True)]
    return np.repeat(units, frames)


def neighbour_durations(train_frames: list[np.ndarray], num_units: int, min_count: int = 5) -> np.ndarray:
    """Mean run length of each unit between each previous and next unit, (K + 1, K, K + 1) with K = none (the
    ends); a pair seen fewer than `min_count` times backs off to the mean after the previous unit."""
    k = num_units
    total, count = np.zeros((k + 1, k, k + 1)), np.zeros((k + 1, k, k + 1))
    for frames in train_frames:
        units, lengths = dedup(frames)
        prev, nxt = np.concatenate([[k], units[:-1]]), np.concatenate([units[1:], [k]])
        np.add.at(total, (prev, units, nxt), lengths)
        np.add.at(count, (prev, units, nxt), 1)
    after_prev = context_durations(train_frames, k, 1).numpy().reshape(k + 1, k)
    return np.where(count >= min_count, total / np.maximum(count, 1), after_prev[:, :, None])


def between_timed(frame_units: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Deduplicated units, each at its mean between the unit before it and the unit after it."""
    units, _ = dedup(frame_units)
    k = table.shape[1]
    prev, nxt = np.concatenate([[k], units[:-1]]), np.concatenate([units[1:], [k]])
    return np.repeat(units, np.maximum(1, np.round(table[prev, units, nxt])).astype(int))


def unit_classes(names: tuple[str, ...]) -> dict[str, set[int]]:
    """Unit ids of the vowels, the consonants and the pause (silence)."""
    vowels = {i for i, n in enumerate(names) if n[0] in VOWEL_START}
    pause = {names.index(SILENCE)}
    return {VOWELS: vowels, PAUSES: pause, CONSONANTS: set(range(len(names))) - vowels - pause}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_split_args(p, n=80)
    p.add_argument("--scales", type=float, nargs="*", default=[0.85, 1.2], help="mean durations times these")
    p.add_argument("--only", nargs="+", help="voice only these kinds (default: all), e.g. 'mean durations'")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = RecipeConfig.from_yaml(args.config)
    recipe = Recipe(replace(cfg, train_limit=None))
    model = load_model(args.model).eval()
    names = PhonemeInventory.load(Path(args.model) / "phonemes.json").names
    classes = unit_classes(names)
    train = list(recipe.frame_units(recipe.data("train", src_lang=cfg.source_lang)[:1500]).values())
    # one mean per unit: the queue's own table, or (a queue that times by context) the same from the targets
    context = model.cfg.queue.duration_context
    table = (unit_durations(train, len(names)) if context else model.queue.durations).numpy()
    lengths = two_lengths(train, table, classes[VOWELS])
    after_two, between = context_durations(train, len(names), 2), neighbour_durations(train, len(names))
    variants = {TRUE: lambda f: f, MEAN: lambda f: timed(f, table, set()),
                AFTER_TWO: lambda f: retimed(f, after_two, len(names), 2),
                BETWEEN: lambda f: between_timed(f, between),
                TWO: lambda f: two_timed(f, table, lengths),
                **{k: (lambda f, keep=v: timed(f, table, keep)) for k, v in classes.items()},
                **{f"mean durations x{s:g}": (lambda f, s=s: timed(f, table, set(), s)) for s in args.scales}}
    if args.only:
        unknown = set(args.only) - set(variants)
        if unknown or MEAN not in args.only:
            p.error(f"--only: unknown kinds {sorted(unknown)} (known: {list(variants)}); 'mean durations' is needed")
        variants = {k: v for k, v in variants.items() if k in args.only}
    utts = split_targets(recipe, args.split, args.n)
    by_key = recipe.frame_units(utts)
    judge = WhisperJudge(JudgeConfig(cpu_threads=1))
    lang, sr = cfg.target_lang, model.cfg.sample_rate
    hyps: dict[str, list[str]] = {TOPLINE: [], **{k: [] for k in variants}}
    seconds, error, runs = {k: 0.0 for k in variants}, {k: 0.0 for k in variants}, 0
    for i, u in enumerate(utts):
        hyps[TOPLINE].append(judge.transcribe(u.tgt, sr, language=lang))
        true_lengths = dedup(by_key[u.tgt_key])[1]
        runs += len(true_lengths)
        for name, make in variants.items():
            frames = make(by_key[u.tgt_key])
            seconds[name] += len(frames) * model.cfg.encoder.frame_samples / sr
            error[name] += float(np.abs(dedup(frames)[1] - true_lengths).sum())
            hyps[name].append(judge.transcribe(speak(model, frames), model.cfg.vocoder.sample_rate, language=lang))
        print(f"{i + 1}/{len(utts)}", flush=True)
    error = {k: v / max(1, runs) for k, v in error.items()}
    write_report(Path(args.out), args, utts, hyps, seconds, error, lang, names, classes)


def write_report(out: Path, args: argparse.Namespace, utts: list, hyps: dict[str, list[str]],
                 seconds: dict[str, float], error: dict[str, float], lang: str, names: tuple[str, ...],
                 classes: dict[str, set[int]]) -> None:
    refs = [u.tgt_text for u in utts]
    rows = {k: {"asr_bleu": metrics.asr_bleu(v, refs, lang=lang), "wer": metrics.wer(v, refs, lang=lang)}
            for k, v in hyps.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing_ceiling.json").write_text(json.dumps(
        {"args": vars(args), "n": len(utts), "scores": rows, "seconds": seconds, "duration_error_frames": error,
         "classes": {k: sorted(names[i] for i in v) for k, v in classes.items()},
         "items": [{"reference": r, **{k: v[i] for k, v in hyps.items()}} for i, r in enumerate(refs)]},
        indent=1, ensure_ascii=False))
    top = rows[TOPLINE]["asr_bleu"]
    lines = [f"Timing ceiling, {args.model}, {len(utts)} {args.split} target sentences (true units)", "",
             "| speech | ASR-BLEU | of topline | WER | seconds | duration error (frames per unit) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['asr_bleu']:.1f} | {v['asr_bleu'] / max(top, 1e-9):.2f} | {100 * v['wer']:.1f} % | "
              f"{seconds.get(k, float('nan')):.0f} | {error.get(k, float('nan')):.2f} |" for k, v in rows.items()]
    lines += ["", "ASR-BLEU against the mean durations (paired bootstrap over utterances, 1,000 resamples):", "",
              "| speech | difference | 95 % interval | ahead |", "|---|---:|---|---:|"]
    lines += difference_rows(hyps, refs, MEAN, lang, skip=(TOPLINE,))
    lines += ["", "Classes: " + "; ".join(f"{k.split()[0]}: {' '.join(sorted(names[i] for i in v))}"
                                          for k, v in classes.items())]
    (out / "timing_ceiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
