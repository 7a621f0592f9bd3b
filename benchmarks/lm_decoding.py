"""What does a target-unit n-gram LM buy over greedy CTC, and at what delay?

For a recipe's S2UT checkpoint: fits the unit LM on the training targets, tunes its weight and unit bonus
on the dev set (no delay bound), then decodes each held-out set greedily and with the streaming LM search
(streamer/models/ctc_search.py) at several delay bounds, chunk by chunk as the pipeline would. Reports unit
error with a paired bootstrap interval against greedy, and how long units wait to be committed.

    python benchmarks/lm_decoding.py --config configs/train/en-es.yaml --out benchmarks/results/lm-decoding
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from streamer.eval.compare import paired_bootstrap
from streamer.models.ctc_search import CTCBeamSearch
from streamer.models.s2st import S2STModel
from streamer.models.unit_lm import UnitLM
from streamer.models.units import edit_distance
from streamer.train.augment import narrowband, telephone_band
from streamer.train.recipe import Recipe, RecipeConfig
from streamer.train.s2ut import greedy_units
from streamer.train.unit_lm_stage import UnitLMConfig, slot_log_probs, tune

SPLITS = ("dev", "unseen_voices", "unseen_sentences", "unseen_engine")
CHANNELS = {"clean": None, "telephone": telephone_band, "narrowband": narrowband}


def stream(search: CTCBeamSearch, log_probs: np.ndarray, chunk_slots: int) -> tuple[list[int], list[int]]:
    """Decode chunk by chunk; each unit's wait in slots from first hypothesis to the chunk end that commits it."""
    state, units, waits = search.init_state(), [], []
    for start in range(0, len(log_probs), chunk_slots):
        timed, state = search.step_timed(log_probs[start:start + chunk_slots], state)
        units += [u for u, _ in timed]
        waits += [state.slot - s for _, s in timed]
    timed, state = search.finish_timed(state)
    return units + [u for u, _ in timed], waits + [state.slot - s for _, s in timed]


def edits(hyps: list[list[int]], refs: list[np.ndarray]) -> list[dict]:
    return [{"edits": edit_distance(h, list(r)), "length": len(r)} for h, r in zip(hyps, refs, strict=True)]


def rate(items: list[dict]) -> float:
    return sum(i["edits"] for i in items) / max(sum(i["length"] for i in items), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training recipe config (its work_dir holds the checkpoints)")
    p.add_argument("--checkpoint", help="S2UT weights (default: <work_dir>/s2ut.safetensors)")
    p.add_argument("--splits", nargs="+", default=list(SPLITS))
    p.add_argument("--channels", nargs="+", default=["clean"], choices=list(CHANNELS))
    p.add_argument("--limit", type=int, default=100, help="utterances per set")
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.8])
    p.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    p.add_argument("--delays", type=int, nargs="+", default=[8, 16, 32], help="delay bounds in CTC slots")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    recipe = Recipe(RecipeConfig.from_yaml(args.config))
    model = S2STModel(recipe.cfg.model_config())
    model.load_state_dict(load_file(args.checkpoint or str(recipe.work / "s2ut.safetensors")))
    model.eval()
    blank, chunk_slots = model.cfg.decoder.blank, model.cfg.max_units
    slot_ms = model.cfg.chunk_ms / chunk_slots
    lm = UnitLM.fit(recipe.target_units(recipe.data("train", src_lang=recipe.cfg.source_lang))[0],
                    order=args.order, num_units=model.cfg.decoder.num_units)
    tail = int(recipe.cfg.s2ut.tail_silence_s * model.cfg.sample_rate)

    def load(split: str, channel: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        utts = recipe.data(split, src_lang=recipe.cfg.source_lang)[: args.limit]
        if CHANNELS[channel] is not None:
            utts = [replace(u, src=CHANNELS[channel](u.src)) for u in utts]
        refs, _ = recipe.target_units(utts)
        return slot_log_probs(model, [np.pad(u.src, (0, tail)) for u in utts]), refs

    print("tuning on dev:", flush=True)
    tuning = UnitLMConfig(order=args.order, beam=args.beam, alphas=tuple(args.alphas), betas=tuple(args.betas))
    best, grid = tune(blank, lm, *load("dev", "clean"), tuning)
    rows = []
    for channel, split in itertools.product(args.channels, args.splits):
        log_probs, refs = load(split, channel)
        if not refs:  # a set this direction does not have (es-en: no held-out engine)
            continue
        base = edits([greedy_units(torch.from_numpy(x)[None], blank)[0].tolist() for x in log_probs], refs)
        row = {"split": split, "channel": channel, "n": len(refs), "greedy": rate(base), "lm": []}
        for delay in [*args.delays, None]:
            search = CTCBeamSearch(blank, lm, replace(best, max_delay_slots=delay))
            decoded = [stream(search, x, chunk_slots) for x in log_probs]
            items = edits([units for units, _ in decoded], refs)
            waits = np.concatenate([np.asarray(w, dtype=float) for _, w in decoded]) * slot_ms
            _, uer, low, high, _ = paired_bootstrap(base, items, rate, higher_is_better=False, resamples=1000, seed=0)
            row["lm"].append({"max_delay_ms": None if delay is None else delay * slot_ms, "uer": uer,
                              "delta_low": low, "delta_high": high, "wait_ms_mean": float(waits.mean()),
                              "wait_ms_p95": float(np.percentile(waits, 95))})
        rows.append(row)
        print(markdown(rows[-1:], slot_ms), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": args.checkpoint or str(recipe.work / "s2ut.safetensors"), "order": args.order,
              "beam": args.beam, "alpha": best.alpha, "beta": best.beta, "tuning": grid, "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "report.md").write_text(header(result) + markdown(rows, slot_ms))


def header(result: dict) -> str:
    return (f"# Unit LM decoding of `{result['checkpoint']}`\n\n"
            f"Order-{result['order']} unit LM fitted on the training targets; beam {result['beam']}; weight "
            f"{result['alpha']} and unit bonus {result['beta']}, tuned on dev. Unit error (UER) with the "
            "95 % paired bootstrap interval of LM minus greedy; wait: from a unit's first hypothesis to the "
            "end of the chunk that commits it (greedy commits at once).\n\n")


def markdown(rows: list[dict], slot_ms: float) -> str:
    lines = ["| set | channel | n | greedy UER | delay bound | LM UER | LM - greedy | wait mean / p95 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for lm in r["lm"]:
            bound = "none" if lm["max_delay_ms"] is None else f"{lm['max_delay_ms']:.0f} ms"
            lines.append(f"| {r['split']} | {r['channel']} | {r['n']} | {r['greedy']:.3f} | {bound} | {lm['uer']:.3f} "
                         f"| {lm['delta_low']:+.3f} .. {lm['delta_high']:+.3f} | "
                         f"{lm['wait_ms_mean']:.0f} / {lm['wait_ms_p95']:.0f} ms |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
