"""Latency benchmark: `streamer bench` driven by a YAML config, writing a dated report folder.

    python benchmarks/latency.py                                   # configs/bench/default.yaml
    python benchmarks/latency.py --config configs/bench/random-default.yaml a.wav b.wav
    python benchmarks/latency.py --config configs/bench/realtime.yaml --out /tmp/rt

Every `streamer bench` option works here and overrides the YAML. Without --out the report goes to
benchmarks/results/<date>-<cpu|gpu>/ (report.json, report.md, PNG plots).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamer.bench import add_bench_args, cmd_bench  # noqa: E402
from streamer.errors import StreamerError  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_args(parser)
    args = parser.parse_args(argv)
    if args.config is None:
        args.config = str(ROOT / "configs" / "bench" / "default.yaml")
    if args.out_dir is None:
        import torch

        device = "gpu" if torch.cuda.is_available() else "cpu"
        args.out_dir = str(ROOT / "benchmarks" / "results" / f"{datetime.date.today().isoformat()}-{device}")
    try:
        return cmd_bench(args)
    except StreamerError as exc:
        print(f"latency.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
