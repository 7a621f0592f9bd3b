"""Isolated digits against the unit queue's hold: forced-choice accuracy of the streaming output.

The LM search commits units in bursts, so the queue can run dry inside a word and play silence there. For each
digit clip (clean and telephone band) the translator runs with the queue's `hold_frames` at each given value;
the judge picks one of the ten digit words. `offline` adds the emitted units (of hold 0) voiced offline at their
mean durations: the same units with no gaps at all.

    python benchmarks/digit_hold.py --pair en-es --model streamer/assets/en-es --n 60 --holds 0 4 8 \
        --out benchmarks/results/x
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from vocoder_ceiling import speak

from streamer.eval.judge import JudgeConfig, WhisperJudge, digit_candidates
from streamer.pipeline import Translator
from streamer.train.augment import telephone_band
from streamer.train.data import load_utterances


def offline(translator: Translator, units: np.ndarray) -> np.ndarray:
    """The units voiced at their mean durations (rounded, 1..max frames), with no queue."""
    model = translator.runner.model
    queue = model.queue
    frames = np.repeat(units, np.clip(np.round(queue.durations[units].numpy()), 1, queue.cfg.max_duration_frames)
                       .astype(int))
    return speak(model, frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", default="en-es")
    p.add_argument("--model", required=True, help="a model folder (eager; its LM search)")
    p.add_argument("--manifest", default="data/corpus/default/manifest.jsonl")
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--holds", type=int, nargs="+", default=[0, 4, 8])
    p.add_argument("--channels", nargs="+", default=["clean", "telephone"], choices=["clean", "telephone"])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    src, tgt = args.pair.split("-")
    translator = Translator.from_dir(args.model, decoding="lm")
    queue, sr = translator.runner.model.queue, translator.output_sample_rate
    base = queue.cfg
    judge, candidates = WhisperJudge(JudgeConfig(cpu_threads=1)), digit_candidates(tgt)
    words = {v[0].strip(" .").lower(): k for k, v in candidates.items()}
    utts = load_utterances(args.manifest, splits={"digits"}, src_lang=src, limit=args.n, seed=0)
    rows: dict[str, dict[str, int]] = {}
    for channel in args.channels:
        for u in utts:
            label = words[u.tgt_text.strip(" .").lower()]
            x = u.src if channel == "clean" else telephone_band(u.src)
            for hold in args.holds:
                queue.cfg = dataclasses.replace(base, hold_frames=hold)
                session = translator.translate_whole(x, sample_rate=translator.sample_rate)
                speech = {f"hold {hold}": session.read_output()}
                if hold == args.holds[0]:
                    speech["offline, mean durations"] = offline(translator, session.result().units)
                for name, audio in speech.items():
                    pred = judge.forced_choice(audio, sr, candidates, language=tgt)
                    rows.setdefault(name, {}).setdefault(channel, 0)
                    rows[name][channel] += pred == label
        queue.cfg = base
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "digit_hold.json").write_text(json.dumps({"args": vars(args), "n": len(utts), "correct": rows}, indent=1))
    lines = [f"Digits against the queue's hold, {args.model}, {len(utts)} clips per channel", "",
             "| speech | " + " | ".join(args.channels) + " |", "|---|" + "---:|" * len(args.channels)]
    lines += [f"| {name} | " + " | ".join(f"{100 * c[ch] / len(utts):.0f} %" for ch in args.channels) + " |"
              for name, c in rows.items()]
    (out / "digit_hold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
