"""Training histories: the curves a stage writes beside its checkpoint, and pictures of them.

    python -m streamer.train.history out.png random=runs/a/s2ut_history.json ssl=runs/b/s2ut_history.json

draws several runs' histories on shared axes, one panel per curve they have in common, so that two
recipes (say, two encoder inits) can be compared at a glance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streamer.errors import StreamerError


def earlier_history(path: Path, keys: tuple[str, ...], *, resume: bool) -> dict[str, list[float]]:
    """The curves of the runs a resumed stage goes on from (one curve over every run), else empty ones."""
    history: dict[str, list[float]] = {key: [] for key in keys}
    if resume and path.is_file():
        history.update({k: v for k, v in json.loads(path.read_text()).items() if k in history})
    return history


def write_history(path: Path, history: dict[str, list[float]], title: str) -> None:
    """History as JSON and its curves as a PNG beside it."""
    path.write_text(json.dumps(history))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(history), figsize=(5 * len(history), 3.5), squeeze=False)
    for ax, (name, values) in zip(axes[0], history.items(), strict=True):
        ax.plot(values)
        ax.set_title(f"{title}: {name}")
        ax.set_xlabel(_x_label(name))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=90)
    plt.close(fig)


def read_history(path: Path) -> dict[str, list[float]]:
    try:
        history = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StreamerError(f"cannot read training history {path}: {e}") from e
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise StreamerError(f"{path} is not a training history (a JSON object of curves)")
    return history


def smooth(values: list[float], window: int) -> np.ndarray:
    """Running mean over `window` points (shorter at the start), so noisy per-step losses read as trends."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or len(x) == 0:
        return x
    sums = np.cumsum(np.insert(x, 0, 0.0))
    starts = np.maximum(np.arange(1, len(x) + 1) - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(x) + 1) - starts)


def overlay(runs: dict[str, Path], out: Path, *, window: int = 50) -> list[str]:
    """One panel per curve every run has, each run a line; per-step curves are smoothed over `window`.
    Returns the curves drawn."""
    if not runs:
        raise StreamerError("give at least one history to draw")
    histories = {label: read_history(path) for label, path in runs.items()}
    shared = [k for k in next(iter(histories.values())) if all(k in h for h in histories.values())]
    if not shared:
        raise StreamerError(f"the histories share no curve: {', '.join(map(str, runs.values()))}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(shared), figsize=(5.5 * len(shared), 3.8), squeeze=False)
    for ax, name in zip(axes[0], shared, strict=True):
        per_step = _per_step(name)
        for label, history in histories.items():
            values = smooth(history[name], window) if per_step else np.asarray(history[name])
            ax.plot(values, label=label, marker=None if per_step else "o", markersize=3)
        if per_step and all(min(h[name], default=1.0) > 0 for h in histories.values()):
            ax.set_yscale("log")  # the first steps' loss would flatten the rest of the curve
        ax.set_title(name + (f" (running mean of {window})" if per_step and window > 1 else ""))
        ax.set_xlabel(_x_label(name))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return shared


def _per_step(name: str) -> bool:
    """Curves with a point per training step; dev curves have one per evaluation."""
    return "dev" not in name


def _x_label(name: str) -> str:
    return "step" if _per_step(name) else "dev evaluation (end of each epoch)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m streamer.train.history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("runs", nargs="+", help="LABEL=path/to/history.json, one per run")
    p.add_argument("--window", type=int, default=50, help="running-mean window for per-step curves")
    args = p.parse_args(argv)
    runs: dict[str, Path] = {}
    for item in args.runs:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            p.error(f"expected LABEL=path, got {item!r}")
        runs[label] = Path(path)
    try:
        drawn = overlay(runs, args.out, window=args.window)
    except StreamerError as e:
        raise SystemExit(str(e)) from e
    print(f"wrote {args.out} ({', '.join(drawn)})")


if __name__ == "__main__":
    main()
