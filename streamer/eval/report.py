"""What `run_eval` returns (`EvalReport`, `SetResult`, `SilenceResult`) and how it is written out: strict
JSON, a markdown summary and a ratio-to-topline bar chart."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SetResult:
    """One evaluation set. `scores`, `topline` and `ratio` share keys: asr_bleu + wer, or accuracy."""

    name: str
    kind: str                          # "sentences" or "digits"
    source_split: str
    n: int
    scores: dict[str, float]
    topline: dict[str, float]
    ratio: dict[str, float]            # to the topline; 1.0 = as good as the judge on reference speech
    unit_error_rate: float | None
    silent_outputs: int                # outputs with no frame above the silence threshold
    rtf: float                         # model compute time / input audio time
    seconds: float
    items: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SilenceResult:
    """Silence (or quiet noise) in: the loudest 20 ms frame of what came out."""

    name: str
    input_s: float
    output_s: float
    output_peak_db: float
    threshold_db: float
    silent: bool


@dataclass(frozen=True)
class EvalReport:
    """Everything one `run_eval` measured: per-set scores beside their toplines, silence checks, notes."""

    model: str
    pair: str
    judge: str
    sets: tuple[SetResult, ...]
    silence: tuple[SilenceResult, ...]
    seconds: float
    config: dict[str, Any]
    notes: tuple[str, ...] = ()
    model_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Strict JSON: NaN and infinities (a missing ratio, digital silence) become null."""
        return json.dumps(_finite(self.to_dict()), indent=1, ensure_ascii=False, default=_json_default,
                          allow_nan=False)

    def to_markdown(self) -> str:
        """The summary table (every score beside its topline and the ratio), silence checks and notes."""
        return render_markdown(self)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.json, report.md and ratio.png into `out_dir`; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "report.json", "markdown": out / "report.md", "png": out / "ratio.png"}
        paths["json"].write_text(self.to_json() + "\n")
        paths["markdown"].write_text(self.to_markdown())
        plot_ratios(self, paths["png"])
        return paths


def _finite(o: Any) -> Any:
    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _f(x: float | None, digits: int = 1, *, pct: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f} %" if pct else f"{x:.{digits}f}"


def render_markdown(report: EvalReport) -> str:
    """One table row per set: model score, topline, ratio; then the silence checks and notes."""
    lines = [f"# streamer eval — {report.pair}", "",
             f"- model: {report.model}" + (f" (model.safetensors sha256 {report.model_sha256[:16]}...)"
                                            if report.model_sha256 else ""),
             f"- judge: {report.judge}",
             f"- run time: {report.seconds:.0f} s", "",
             "Topline = the same judge on espeak-ng speech of the reference translation in the target voice, "
             "measured in this run. Ratio = model / topline (WER: ratio of word accuracies, 1 - WER).", "",
             "| set | source split | n | ASR-BLEU | topline | ratio | WER | topline | ratio | digit acc. | topline "
             "| ratio | UER | silent out | RTF |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report.sets:
        if s.kind == "digits":
            cells = ["—"] * 6 + [_f(s.scores["accuracy"], pct=True), _f(s.topline["accuracy"], pct=True),
                                 _f(s.ratio["accuracy"], 2)]
        else:
            cells = [_f(s.scores["asr_bleu"]), _f(s.topline["asr_bleu"]), _f(s.ratio["asr_bleu"], 2),
                     _f(s.scores["wer"], pct=True), _f(s.topline["wer"], pct=True), _f(s.ratio["wer"], 2)] + ["—"] * 3
        lines.append(f"| {s.name} | {s.source_split} | {s.n} | " + " | ".join(cells)
                     + f" | {_f(s.unit_error_rate, pct=True)} | {s.silent_outputs} | {_f(s.rtf, 2)} |")
    if report.silence:
        lines += ["", "## Silence in -> silence out", "", "| input | seconds in | seconds out | loudest 20 ms frame "
                  "out | threshold | near-silent |", "|---|---:|---:|---:|---:|---|"]
        for r in report.silence:
            peak = "-inf" if not math.isfinite(r.output_peak_db) else f"{r.output_peak_db:.1f}"
            lines.append(f"| {r.name} | {r.input_s:.1f} | {r.output_s:.2f} | {peak} dBFS | {r.threshold_db:g} dBFS | "
                         f"{'yes' if r.silent else '**no**'} |")
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    examples = [(s.name, it) for s in report.sets if s.kind == "sentences" for it in s.items[:3]]
    if examples:
        lines += ["", "## Examples (first three per set)", "", "| set | reference | model (judge) | topline (judge) |",
                  "|---|---|---|---|"]
        for name, it in examples:
            cells = [str(it.get(k, "")).replace("|", "/") for k in ("reference", "hypothesis", "topline_hypothesis")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_ratios(report: EvalReport, path: str | Path) -> Path:
    """Bar chart of the ratio to the topline per set (ASR-BLEU and word accuracy, or digit accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, bleu, words, digits = [], [], [], []
    for s in report.sets:
        names.append(s.name)
        bleu.append(s.ratio.get("asr_bleu", math.nan))
        words.append(s.ratio.get("wer", math.nan))
        digits.append(s.ratio.get("accuracy", math.nan))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 3.8))
    x = range(len(names))
    width = 0.27
    for off, values, label in ((-width, bleu, "ASR-BLEU"), (0.0, words, "word accuracy (1 - WER)"),
                               (width, digits, "digit accuracy")):
        vals = [0.0 if not math.isfinite(v) else v for v in values]
        if any(math.isfinite(v) for v in values):
            bars = ax.bar([i + off for i in x], vals, width, label=label)
            ax.bar_label(bars, labels=["" if not math.isfinite(v) else f"{v:.2f}" for v in values], fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(list(x), names, rotation=20, ha="right")
    ax.set_ylabel("ratio to topline")
    ax.set_ylim(0, max([1.1] + [v for v in bleu + words + digits if math.isfinite(v)]) + 0.05)
    ax.set_title(f"streamer eval {report.pair}: model / topline (same judge, espeak reference speech)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
