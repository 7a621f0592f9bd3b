"""Noise and silence in must give silence out: replay clips with no speech in them through a translator.

Each clip (5 s, seeded, none of them made with the training seeds) goes through `Translator.translate_whole`,
the path `streamer translate` and the eval take, with no voice gate. A clip *fails* when any 20 ms frame of
the output is louder than the eval's -40 dBFS bound; the number of units the decoder emitted is reported
too. Kinds (levels are RMS dBFS):

- `white`, `pink`, `brown`: stationary coloured noise at -50 .. -25 (the kinds S2UT's `noise_only_prob` trains on);
- `hum+pink`: mains hum over pink noise; `telephone`: pink noise through the telephone channel;
- `bursts`: pink noise switched on and off every 0.1-0.6 s (not a training kind: non-stationary);
- `clicks`: isolated clicks over a low floor (not a training kind); `dither`: silence with -90 dBFS dither.

    python benchmarks/noise_hold.py --model streamer/assets/en-es --per-kind 6 --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamer.eval import metrics
from streamer.pipeline import Translator
from streamer.train.augment import background, coloured_noise, hum, telephone_band, unit_rms

SAMPLE_RATE = 16_000
SECONDS = 5.0
LEVELS = (-50.0, -25.0)


def _level(x: np.ndarray, db: float) -> np.ndarray:
    return (unit_rms(x) * 10 ** (db / 20)).astype(np.float32)


def _bursts(n: int, rng: np.random.Generator) -> np.ndarray:
    gate, i, on = np.zeros(n, dtype=np.float32), 0, bool(rng.random() < 0.5)
    while i < n:
        step = int(rng.uniform(0.1, 0.6) * SAMPLE_RATE)
        gate[i:i + step] = float(on)
        i, on = i + step, not on
    return coloured_noise(n, "pink", rng) * gate


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    x = coloured_noise(n, "pink", rng) * 10 ** (-60 / 20)
    for at in rng.integers(0, n - 64, size=int(rng.integers(3, 12))):
        x[at:at + 64] += rng.uniform(0.05, 0.5) * np.exp(-np.arange(64) / 8.0) * rng.choice([-1.0, 1.0])
    return x.astype(np.float32)


def kinds() -> dict[str, Callable[[int, np.random.Generator], np.ndarray]]:
    def colour(name: str) -> Callable[[int, np.random.Generator], np.ndarray]:
        return lambda n, rng: background(n, rng, level_db=LEVELS, colours=(name,), p_hum=0.0)

    return {
        "white": colour("white"), "pink": colour("pink"), "brown": colour("brown"),
        "hum+pink": lambda n, rng: _level(coloured_noise(n, "pink", rng) + hum(n, rng), rng.uniform(*LEVELS)),
        "telephone": lambda n, rng: _level(telephone_band(coloured_noise(n, "pink", rng)), rng.uniform(*LEVELS)),
        "bursts": lambda n, rng: _level(_bursts(n, rng), rng.uniform(*LEVELS)),
        "clicks": _clicks,
        "dither": lambda n, rng: (rng.standard_normal(n) * 10 ** (-90 / 20)).astype(np.float32),
    }


def clips(per_kind: int, seed: int) -> list[tuple[str, np.ndarray]]:
    n = int(SECONDS * SAMPLE_RATE)
    out = []
    for k, (name, make) in enumerate(kinds().items()):
        rng = np.random.default_rng([seed, 1000 + k])
        out += [(name, np.clip(make(n, rng), -1.0, 1.0).astype(np.float32)) for _ in range(per_kind)]
    return out


def run(translator: Translator, per_kind: int, seed: int, threshold_db: float = -40.0) -> dict:
    rows = []
    for name, x in clips(per_kind, seed):
        session = translator.translate_whole(x, sample_rate=SAMPLE_RATE, stream_id="noise")
        out = session.read_output()
        peak = metrics.peak_frame_db(out, sample_rate=translator.output_sample_rate)
        rows.append({"kind": name, "input_dbfs": round(float(10 * np.log10(np.mean(x**2) + 1e-20)), 1),
                     "units": len(session.result().units),
                     "output_peak_db": round(peak, 1) if np.isfinite(peak) else None,
                     "failed": bool(peak >= threshold_db)})
    by_kind = {}
    for name in kinds():
        mine = [r for r in rows if r["kind"] == name]
        by_kind[name] = {"clips": len(mine), "failed": sum(r["failed"] for r in mine),
                         "units": sum(r["units"] for r in mine)}
    return {"threshold_db": threshold_db, "seconds": SECONDS, "seed": seed, "failed": sum(r["failed"] for r in rows),
            "clips": len(rows), "units": sum(r["units"] for r in rows), "by_kind": by_kind, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model folder (streamer/assets/en-es)")
    p.add_argument("--decoding", default="auto", choices=["auto", "lm", "greedy"])
    p.add_argument("--per-kind", type=int, default=6)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", type=Path, help="write the JSON report here")
    args = p.parse_args()
    report = run(Translator.from_dir(args.model, decoding=args.decoding), args.per_kind, args.seed)
    report["model"] = args.model
    for name, k in report["by_kind"].items():
        print(f"{name:10s} failed {k['failed']}/{k['clips']}  units {k['units']}")
    print(f"all        failed {report['failed']}/{report['clips']}  units {report['units']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
