"""Is model B better than model A? Paired bootstrap over the utterances of two `streamer eval` reports.

Judge scores on 100 sentences move by a few BLEU between models with the same unit error, so a change is
read with its spread: resample the utterances (the same draw for both models), score both on every
resample, and report the 95 % interval of B - A and how often B came out ahead (Koehn, 2004).

    python -m streamer.eval.compare old/report.json new/report.json --out compare.md
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.errors import StreamerError
from streamer.eval.metrics import accuracy, asr_bleu, wer

Score = Callable[[list[dict]], float]


@dataclass(frozen=True)
class Comparison:
    set_name: str
    metric: str
    n: int
    a: float
    b: float
    low: float           # 2.5th percentile of B - A over the resamples
    high: float          # 97.5th percentile
    b_ahead: float       # share of resamples where B scored better (WER: lower)


def metrics_for(kind: str, lang: str) -> dict[str, tuple[Score, bool]]:
    """A set kind's scores over items, each with whether higher is better."""
    if kind == "digits":
        return {"digit accuracy": (lambda items: 100 * accuracy([i["prediction"] for i in items],
                                                                 [i["label"] for i in items]), True)}
    return {"ASR-BLEU": (lambda items: asr_bleu([i["hypothesis"] for i in items],
                                                [i["reference"] for i in items], lang=lang), True),
            "WER %": (lambda items: 100 * wer([i["hypothesis"] for i in items],
                                              [i["reference"] for i in items], lang=lang), False)}


def paired_bootstrap(a: Sequence[dict], b: Sequence[dict], score: Score, *, higher_is_better: bool,
                     resamples: int, seed: int) -> tuple[float, float, float, float, float]:
    """(score A, score B, low, high, share of resamples with B ahead) over the same utterance draws."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), len(a))
        diffs.append(score([b[i] for i in idx]) - score([a[i] for i in idx]))
    d = np.array(diffs)
    ahead = float(np.mean(d > 0 if higher_is_better else d < 0))
    low, high = np.percentile(d, [2.5, 97.5])
    return score(list(a)), score(list(b)), float(low), float(high), ahead


def compare_reports(a: dict, b: dict, *, resamples: int = 1000, seed: int = 0) -> list[Comparison]:
    """Every set the two reports share, on the utterances both judged (matched by id)."""
    if a["pair"] != b["pair"]:
        raise StreamerError(f"the reports are for different pairs: {a['pair']} and {b['pair']}")
    lang = a["pair"].split("-")[1]
    b_sets = {s["name"]: s for s in b["sets"]}
    rows = []
    for set_a in a["sets"]:
        set_b = b_sets.get(set_a["name"])
        if set_b is None or not set_a.get("items"):
            continue
        by_id = {i["id"]: i for i in set_b["items"]}
        pairs = [(i, by_id[i["id"]]) for i in set_a["items"] if i["id"] in by_id]
        if not pairs:
            continue
        items_a, items_b = [p[0] for p in pairs], [p[1] for p in pairs]
        for metric, (score, higher) in metrics_for(set_a["kind"], lang).items():
            stats = paired_bootstrap(items_a, items_b, score, higher_is_better=higher, resamples=resamples,
                                     seed=seed)
            rows.append(Comparison(set_a["name"], metric, len(pairs), *stats))
    if not rows:
        raise StreamerError("the two reports share no judged utterances")
    return rows


def markdown(rows: list[Comparison], a: str, b: str, resamples: int) -> str:
    lines = [f"# {b} against {a}", "",
             f"Paired bootstrap over utterances, {resamples} resamples: the 95 % interval of B - A, and the "
             "share of resamples where B is ahead (for WER and error rates: lower).", "",
             "| set | metric | n | A | B | B - A | 95 % interval | B ahead |", "|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r.set_name} | {r.metric} | {r.n} | {r.a:.1f} | {r.b:.1f} | {r.b - r.a:+.1f} | "
                     f"{r.low:+.1f} .. {r.high:+.1f} | {100 * r.b_ahead:.0f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m streamer.eval.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="report.json of the reference model (A)")
    p.add_argument("b", type=Path, help="report.json of the candidate (B)")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    reports = []
    for path in (args.a, args.b):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"cannot read eval report {path}: {e}") from e
    rows = compare_reports(*reports, resamples=args.resamples, seed=args.seed)
    text = markdown(rows, str(args.a), str(args.b), args.resamples)
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
