"""Is checkpoint B's unit error lower than A's? Paired bootstrap over two S2UT diagnoses' utterances.

    python benchmarks/diagnosis_compare.py runs/a/results.json runs/b/results.json --out compare.md

Both diagnoses must come from `benchmarks/s2ut_diagnosis.py` on the same sets (it keeps each utterance's
edit count). Per set, for the target units and, where both have it, the source phonemes: the error of A and
B over the utterances both scored, the 95 % interval of B - A over resamples of those utterances (the same
draw for both), and the share of resamples where B is ahead (its error lower): the table of
`python -m streamer.eval.compare`, for unit error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamer.eval.compare import Comparison, markdown, paired_bootstrap


def error(items: list[list[int]]) -> float:
    """Edits over reference length, pooled as the diagnosis pools them, in percent."""
    return 100 * sum(e for e, _ in items) / max(sum(n for _, n in items), 1)


def compare(a: dict, b: dict, *, resamples: int, seed: int) -> list[Comparison]:
    b_rows = {r["split"]: r for r in b["rows"]}
    out = []
    for row_a in a["rows"]:
        row_b = b_rows.get(row_a["split"])
        if row_b is None or "utterances" not in row_a or "utterances" not in row_b:
            continue
        by_id = {u["id"]: u for u in row_b["utterances"]}
        pairs = [(u, by_id[u["id"]]) for u in row_a["utterances"] if u["id"] in by_id]
        for task in ("target", "source"):
            if not pairs or task not in pairs[0][0] or task not in pairs[0][1]:
                continue
            stats = paired_bootstrap([p[0][task] for p in pairs], [p[1][task] for p in pairs], error,
                                     higher_is_better=False, resamples=resamples, seed=seed)
            out.append(Comparison(row_a["split"], f"{task} unit error %", len(pairs), *stats))
    if not out:
        raise SystemExit("the diagnoses share no scored utterances (re-run them: older ones lack per-utterance counts)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="results.json of the reference checkpoint (A)")
    p.add_argument("b", type=Path, help="results.json of the candidate (B)")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args()
    a, b = (json.loads(path.read_text()) for path in (args.a, args.b))
    text = markdown(compare(a, b, resamples=args.resamples, seed=args.seed), str(args.a), str(args.b), args.resamples)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
