"""How intelligible can the translator be with a perfect decoder? The vocoder's ceiling, measured.

For target sentences of a split, the vocoder speaks (a) the true frame units of the target clip and
(b) the same units, deduplicated and re-timed with the queue's mean durations (what it gets at run
time from a decoder that is never wrong). The Whisper judge transcribes both and the target voice
itself (the topline); the table gives ASR-BLEU and WER of each.

    python benchmarks/vocoder_ceiling.py --config configs/train/en-es.yaml --n 40 --out benchmarks/results/x
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from streamer.eval import metrics
from streamer.eval.judge import JudgeConfig, WhisperJudge
from streamer.models.s2st import S2STModel
from streamer.models.units import dedup
from streamer.train.recipe import Recipe, RecipeConfig, unit_durations


def retimed(frame_units: np.ndarray, durations: torch.Tensor) -> np.ndarray:
    """Deduplicated units, each held for its mean duration (rounded, at least one frame)."""
    units, _ = dedup(frame_units)
    reps = np.maximum(1, np.round(durations.numpy()[units]).astype(int))
    return np.repeat(units, reps)


def speak(model: S2STModel, frames: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.vocoder(torch.from_numpy(frames).long()[None])[0].numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--split", default="dev")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = RecipeConfig.from_yaml(args.config)
    recipe = Recipe(replace(cfg, train_limit=None))
    model = S2STModel(cfg.model_config()).eval()
    model.vocoder.load_state_dict(load_file(str(recipe.work / "vocoder.safetensors")))
    path = recipe.work / "durations.safetensors"
    if path.is_file():
        durations = load_file(str(path))["durations"]
    else:  # the vocoder stage writes them when it ends; before that, the same from the training targets
        train = recipe.data("train", src_lang=cfg.source_lang)
        durations = unit_durations(list(recipe.frame_units(train).values()), cfg.units.num_units)
    utts = list({u.tgt_key: u for u in recipe.data(args.split, src_lang=cfg.source_lang)}.values())[: args.n]
    by_key = recipe.frame_units(utts)
    judge = WhisperJudge(JudgeConfig(cpu_threads=1))
    lang, sr = cfg.target_lang, model.cfg.sample_rate
    hyps: dict[str, list[str]] = {"target voice (topline)": [], "true frame units": [], "mean durations": []}
    for u in utts:
        frames = by_key[u.tgt_key]
        hyps["target voice (topline)"].append(judge.transcribe(u.tgt, sr, language=lang))
        hyps["true frame units"].append(judge.transcribe(speak(model, frames), sr, language=lang))
        hyps["mean durations"].append(judge.transcribe(speak(model, retimed(frames, durations)), sr, language=lang))
    refs = [u.tgt_text for u in utts]
    rows = {k: {"asr_bleu": metrics.asr_bleu(v, refs, lang=lang), "wer": metrics.wer(v, refs, lang=lang)}
            for k, v in hyps.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocoder_ceiling.json").write_text(json.dumps(
        {"config": args.config, "split": args.split, "n": len(utts), "scores": rows,
         "items": [{"reference": r, **{k: v[i] for k, v in hyps.items()}} for i, r in enumerate(refs)]},
        indent=1, ensure_ascii=False))
    lines = [f"Vocoder ceiling, {args.config}, {len(utts)} {args.split} targets", "",
             "| speech | ASR-BLEU | WER |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['asr_bleu']:.1f} | {100 * v['wer']:.1f} % |" for k, v in rows.items()]
    (out / "vocoder_ceiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
