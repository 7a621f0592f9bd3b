"""Where does a speech-to-unit model go wrong: hearing the source, or saying the translation?

For each held-out set of a recipe, on clean source audio (or through `--channel`: the telephone band, a plain
8 kHz recording), per set and per source voice: the target unit error of greedy CTC decoding,
split into substitutions / deletions / insertions, and the source-phoneme error of the training-only
auxiliary head (`s2ut.source_ctc_weight`) on the same encoder states. A source error close to the target
error says the encoder is the bottleneck; a low source error with a high target error says the decoder
is. No judge is needed: this runs in a couple of minutes on one CPU thread.

    python benchmarks/s2ut_diagnosis.py --config configs/train/en-es.yaml --out benchmarks/results/x
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from streamer.models.s2st import S2STModel
from streamer.models.units import edit_ops
from streamer.train.augment import narrowband, telephone_band
from streamer.train.recipe import Recipe, RecipeConfig
from streamer.train.s2ut import decode

SPLITS = ("dev", "unseen_voices", "unseen_sentences", "unseen_engine")
CHANNELS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "clean": None, "telephone": telephone_band, "narrowband": narrowband}


Scored = dict[str, tuple[list[tuple[int, int, int]], list[int]]]  # task -> (each utterance's edits, ref lengths)


def error_rates(ops: list[tuple[int, int, int]], ref_lengths: list[int]) -> dict[str, float]:
    """Error rate and its substitution / deletion / insertion parts, over the total reference length."""
    subs, dels, ins = (float(x) / max(sum(ref_lengths), 1) for x in np.array(ops).reshape(-1, 3).sum(0))
    return {"error": subs + dels + ins, "sub": subs, "del": dels, "ins": ins}


def diagnose(recipe: Recipe, model: S2STModel, head: torch.nn.Linear | None, split: str, limit: int,
             channel: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    utts = recipe.data(split, src_lang=recipe.cfg.source_lang)[:limit]
    if not utts:
        return {}
    if channel is not None:
        utts = [replace(u, src=channel(u.src)) for u in utts]
    refs, _ = recipe.target_units(utts)
    tail = int(recipe.cfg.s2ut.tail_silence_s * recipe.cfg.encoder.sample_rate)
    hyps, spelled = decode(model, utts, tail_samples=tail, source_head=head)
    scored: Scored = {"target": score(hyps, refs)}
    if head is not None:
        _, source_refs = recipe.source_targets(recipe.data("train", src_lang=recipe.cfg.source_lang), utts)
        scored["source"] = score(spelled, source_refs)
    row: dict = {"split": split, "n": len(utts)}
    row |= {task: error_rates(ops, lengths) for task, (ops, lengths) in scored.items()}
    row["utterances"] = per_utterance(utts, scored)
    row["voices"] = by_voice(utts, scored)
    return row


def score(hyps: list, refs: list) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Each utterance's (substitutions, deletions, insertions), and its reference length."""
    return [edit_ops(h, r) for h, r in zip(hyps, refs, strict=True)], [len(r) for r in refs]


def per_utterance(utts: list, scored: Scored) -> list[dict]:
    """Each utterance's edit count and reference length, so that two checkpoints can be compared paired
    (benchmarks/diagnosis_compare.py)."""
    return [{"id": u.id, "voice": f"{u.engine}/{u.voice}",
             **{task: [sum(ops[i]), lengths[i]] for task, (ops, lengths) in scored.items()}}
            for i, u in enumerate(utts)]


def by_voice(utts: list, scored: Scored) -> dict[str, dict]:
    """The same rates per source voice (`engine/voice`): is a set hard for every voice, or for a few?"""
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        groups.setdefault(f"{u.engine}/{u.voice}", []).append(i)
    return {name: {"n": len(idx), **{task: error_rates([ops[i] for i in idx], [lengths[i] for i in idx])
                                     for task, (ops, lengths) in scored.items()}}
            for name, idx in sorted(groups.items())}


def markdown(rows: list[dict], checkpoint: str, channel: str = "clean") -> str:
    lines = [f"# S2UT diagnosis of `{checkpoint}`", "",
             f"Source audio: {channel}; greedy CTC. Rates over the reference length (sub + del + ins = error).", "",
             "| set | n | target error | sub | del | ins | source phoneme error | sub | del | ins |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, s = r["target"], r.get("source")
        src = f"{s['error']:.3f} | {s['sub']:.3f} | {s['del']:.3f} | {s['ins']:.3f}" if s else "n/a | | |"
        lines.append(f"| {r['split']} | {r['n']} | {t['error']:.3f} | {t['sub']:.3f} | {t['del']:.3f} | "
                     f"{t['ins']:.3f} | {src} |")
    lines += ["", "Per source voice (voices with at least 5 utterances in the set):", "",
              "| set | voice | n | target error | source phoneme error |", "|---|---|---|---|---|"]
    for r in rows:
        for voice, v in r.get("voices", {}).items():
            if v["n"] >= 5:
                src = f"{v['source']['error']:.3f}" if "source" in v else "n/a"
                lines.append(f"| {r['split']} | {voice} | {v['n']} | {v['target']['error']:.3f} | {src} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, [r["target"]["error"] for r in rows], 0.4, label="target units (translation)")
    ax.bar(x + 0.2, [r["source"]["error"] if "source" in r else 0 for r in rows], 0.4, label="source phonemes")
    ax.set_xticks(x, [r["split"] for r in rows])
    ax.set_ylabel("error rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training recipe config (its work_dir holds the checkpoints)")
    p.add_argument("--checkpoint", help="S2UT weights (default: <work_dir>/s2ut.safetensors)")
    p.add_argument("--head", help="source-phoneme head (default: <work_dir>/s2ut_source_head.safetensors if present)")
    p.add_argument("--splits", nargs="+", default=list(SPLITS))
    p.add_argument("--limit", type=int, default=100, help="utterances per set")
    p.add_argument("--channel", choices=list(CHANNELS), default="clean",
                   help="what the source audio goes through first (narrowband: a plain 8 kHz recording)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="folder for report.md, results.json, errors.png")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe = Recipe(RecipeConfig.from_yaml(args.config))
    checkpoint = Path(args.checkpoint or recipe.work / "s2ut.safetensors")
    model = S2STModel(recipe.cfg.model_config())
    model.load_state_dict(load_file(str(checkpoint)))
    head_path = Path(args.head or recipe.work / "s2ut_source_head.safetensors")
    head = None
    if head_path.is_file():
        weights = load_file(str(head_path))
        head = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        head.load_state_dict(weights)
    channel = CHANNELS[args.channel]
    rows = [row for split in args.splits if (row := diagnose(recipe, model, head, split, args.limit, channel))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"checkpoint": str(checkpoint), "channel": args.channel,
                                                  "rows": rows}, indent=1))
    (out / "report.md").write_text(markdown(rows, str(checkpoint), args.channel))
    plot(rows, out / "errors.png")
    print(markdown(rows, str(checkpoint), args.channel))


if __name__ == "__main__":
    main()
