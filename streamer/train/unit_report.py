"""How good are the SSL encoder's units and features? Measured side by side with MFCC and log-mel baselines.

* Unit stability: k-means units (K=100 by default, fitted on English train-split speech of every training
  engine), consecutive duplicates merged, for the same sentence under a change of voice, engine or channel.
  The score is the normalised edit distance (edits / reference length; 0 = identical), mean over pairs with
  a bootstrap 95 % interval. A "different sentence" row gives the chance level of each feature type.
* Linear probe: digit identity (10 classes) from utterance-pooled frozen features by L2-regularised logistic
  regression, trained on the training engines' isolated digits and tested on the `digits` split (the held-out
  engine) clean and telephone band.

Every feature type is standardised (z-score per dimension, train statistics) before k-means and the probe.

    python -m streamer.train.unit_report runs/ssl/encoder.safetensors data/corpus/default/manifest.jsonl \
        benchmarks/results/units
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamer.errors import StreamerError
from streamer.models.encoder import CausalEncoder
from streamer.models.units import assign, dedup, edit_distance
from streamer.train.augment import AugmentConfig, Augmenter, telephone_band
from streamer.train.data import Utterance, load_utterances, pad_batch
from streamer.train.kmeans import kmeans
from streamer.train.ssl import mfcc_frames
from streamer.train.synth import Voice, synthesize
from streamer.train.units_cli import load_encoder

log = logging.getLogger(__name__)

CONDITIONS = {
    "unseen_engine": "training voice vs held-out engine (flite), same sentence",
    "unseen_voice": "training voice vs held-out voice of a training engine, same sentence",
    "augmented": "clean vs augmented (default chain without speed / silence), same clip",
    "telephone": "clean vs telephone band (8 kHz, 300-3400 Hz), same clip",
    "different_sentence": "training voice vs held-out engine, different sentence (chance level)",
}
REF_VOICE = Voice.make("espeak-ng", "en-us", "en")  # a training voice, for sentences the train split lacks
Models = dict[str, tuple[Tensor, Tensor, Tensor]]   # feature name -> (mean, std, centroids)


@dataclass(frozen=True)
class ReportConfig:
    layers: tuple[int, ...] = (2, 4, 6)   # 1-based transformer layers; those beyond the encoder are skipped
    num_units: int = 100
    kmeans_clips: int = 2000
    kmeans_frames: int = 100_000
    bootstrap: int = 1000
    lambdas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)  # probe L2 strengths, picked by grouped CV
    batch_samples: int = 16_000 * 24
    seed: int = 0


def normalised_distance(ref: np.ndarray | list, hyp: np.ndarray | list) -> float:
    """Edit distance between two unit sequences over the reference length (0 when both are empty)."""
    return edit_distance(hyp, ref) / max(len(ref), 1)


def bootstrap_ci(values: np.ndarray | list, *, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), (n, len(v)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def feature_names(encoder: CausalEncoder, layers: tuple[int, ...]) -> list[str]:
    """Names of the compared feature types: `ssl_L<n>` per usable layer, `mfcc`, `logmel`."""
    return [f"ssl_L{n}" for n in layers if 1 <= n <= encoder.cfg.num_layers] + ["mfcc", "logmel"]


@torch.no_grad()
def encode(encoder: CausalEncoder, clips: list[np.ndarray], names: list[str], *,
           batch_samples: int = 16_000 * 24) -> Iterator[tuple[int, dict[str, Tensor]]]:
    """(clip index, {name: (T, D) features at 20 ms}) for every clip, T = ceil(len / 320), in length order.

    Clips are batched by length with right padding, which the causal encoder never sees before a kept frame.
    """
    fs = encoder.cfg.frame_samples
    order = [int(i) for i in np.argsort([len(c) for c in clips], kind="stable")]
    groups: list[list[int]] = [[]]
    for i in order:
        if groups[-1] and (len(groups[-1]) + 1) * len(clips[i]) > batch_samples:
            groups.append([])
        groups[-1].append(i)
    for group in (g for g in groups if g):
        audio, _ = pad_batch([clips[i] for i in group], multiple=fs)
        layers = encoder(audio, return_layers=True)
        feats = {n: layers[int(n[5:]) - 1] for n in names if n.startswith("ssl_L")}
        feats["mfcc"] = mfcc_frames(encoder, audio)
        feats["logmel"] = F.avg_pool1d(encoder.logmel(audio[:, None]), 2).transpose(1, 2)
        for b, i in enumerate(group):
            n = -(-len(clips[i]) // fs)
            yield i, {name: feats[name][b, :n].float() for name in names}


def fit_units(encoder: CausalEncoder, clips: list[np.ndarray], names: list[str], cfg: ReportConfig) -> Models:
    """Standardisation statistics and `num_units` k-means centroids per feature type from `clips`' frames."""
    gen = torch.Generator().manual_seed(cfg.seed)
    per_clip = 2 * cfg.kmeans_frames // max(len(clips), 1) + 1
    frames: dict[str, list[Tensor]] = {n: [] for n in names}
    for _, feats in encode(encoder, clips, names, batch_samples=cfg.batch_samples):
        keep = torch.randperm(len(feats[names[0]]), generator=gen)[:per_clip]
        for n in names:
            frames[n].append(feats[n][keep])
    models: Models = {}
    for n in names:
        x = torch.cat(frames[n])
        x = x[torch.randperm(len(x), generator=gen)[: cfg.kmeans_frames]]
        mean, std = x.mean(0), x.std(0) + 1e-5
        models[n] = (mean, std, kmeans((x - mean) / std, cfg.num_units, seed=cfg.seed))
        log.info("units: %s k-means on %d frames of dim %d", n, len(x), x.shape[1])
    return models


def clip_units(encoder: CausalEncoder, clips: list[np.ndarray], models: Models, *,
               batch_samples: int = 16_000 * 24) -> list[dict[str, np.ndarray]]:
    """Deduplicated unit sequence of every clip for every feature type of `models`."""
    out: list[dict[str, np.ndarray]] = [{} for _ in clips]
    for i, feats in encode(encoder, clips, list(models), batch_samples=batch_samples):
        for n, (mean, std, centroids) in models.items():
            out[i][n] = dedup(assign((feats[n] - mean) / std, centroids).numpy())[0]
    return out


def pooled(encoder: CausalEncoder, clips: list[np.ndarray], names: list[str], *,
           batch_samples: int = 16_000 * 24) -> dict[str, dict[str, Tensor]]:
    """{pooling: {name: (N, D') utterance vectors}} with pooling "mean" and "mean+max" over frames."""
    rows: list[dict[str, Tensor]] = [{} for _ in clips]
    for i, feats in encode(encoder, clips, names, batch_samples=batch_samples):
        rows[i] = {n: torch.cat([f.mean(0), f.max(0).values]) for n, f in feats.items()}
    both = {n: torch.stack([r[n] for r in rows]) for n in names}
    return {"mean": {n: v[:, : v.shape[1] // 2] for n, v in both.items()}, "mean+max": both}


def _logreg(x: Tensor, y: Tensor, n_classes: int, lam: float) -> Tensor:
    """L2-regularised multinomial logistic regression by L-BFGS from zeros; returns weights (D + 1, C)."""
    xb = torch.cat([x, torch.ones(len(x), 1)], 1)
    w = torch.zeros(xb.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + lam * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _predict(w: Tensor, x: Tensor) -> Tensor:
    return (torch.cat([x, torch.ones(len(x), 1)], 1) @ w).argmax(1)


def linear_probe(x_train: Tensor, y_train: Tensor, groups: list[str], tests: dict[str, tuple[Tensor, Tensor]],
                 n_classes: int, cfg: ReportConfig) -> dict:
    """Pick the L2 strength by leave-one-group-out accuracy, refit on all, score each test set (with CI)."""
    torch.manual_seed(cfg.seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-5
    xs = (x_train - mean) / std
    cv: dict[float, float] = {}
    uniq = sorted(set(groups))
    for lam in cfg.lambdas:
        accs = []
        for g in uniq if len(uniq) > 1 else []:
            held = torch.tensor([gi == g for gi in groups])
            w = _logreg(xs[~held], y_train[~held], n_classes, lam)
            accs.append(float((_predict(w, xs[held]) == y_train[held]).float().mean()))
        cv[lam] = float(np.mean(accs)) if accs else 0.0
    lam = max(cv, key=lambda k: (cv[k], -abs(np.log10(k) + 2)))
    w = _logreg(xs, y_train, n_classes, lam)
    out: dict = {"lambda": lam, "cv_acc": cv[lam]}
    for name, (x, y) in tests.items():
        correct = (_predict(w, (x - mean) / std) == y).float().numpy() if len(y) else np.zeros(0)
        lo, hi = bootstrap_ci(correct, n=cfg.bootstrap, seed=cfg.seed)
        out[name] = {"acc": float(correct.mean()) if len(correct) else float("nan"), "lo": lo, "hi": hi,
                     "n": len(correct)}
    return out


def _pick(items: list, limit: int | None, seed: int) -> list:
    if limit is None or len(items) <= limit:
        return items
    return [items[i] for i in sorted(np.random.default_rng(seed).choice(len(items), limit, replace=False))]


def build_pairs(utts: list[Utterance], limit: int | None, cfg: ReportConfig) -> dict[str, list[tuple]]:
    """{condition: [(reference clip, other clip)]}; references of unmatched sentences are synthesised."""
    by_text: dict[str, np.ndarray] = {}
    for u in utts:
        if u.split == "train":
            by_text.setdefault(u.src_text, u.src)
    pairs: dict[str, list[tuple]] = {c: [] for c in CONDITIONS}
    for cond, split in (("unseen_engine", "unseen_engine"), ("unseen_voice", "unseen_voices")):
        for u in _pick([u for u in utts if u.split == split], limit, cfg.seed):
            ref = by_text.get(u.src_text)
            if ref is None:
                try:
                    ref = synthesize(u.src_text, REF_VOICE)[0]
                except StreamerError as e:
                    log.warning("no reference for %r: %s", u.src_text, e)
                    continue
            pairs[cond].append((ref, u.src, u.src_text))
    eng = pairs["unseen_engine"]
    pairs["different_sentence"] = [(r, eng[(i + 1) % len(eng)][1], t) for i, (r, _, t) in enumerate(eng)
                                   if eng[(i + 1) % len(eng)][2] != t]
    augment = Augmenter(AugmentConfig(p_silence=0.0, p_speed=0.0))
    clean = _pick([u.src for u in utts if u.split == "unseen_sentences"], limit, cfg.seed)
    others = [u.src for u in utts if u.split == "train"][:50]
    for i, x in enumerate(clean):
        y = augment(x, np.random.default_rng([cfg.seed, i]), babble=others)
        pairs["augmented"].append((x, np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)], ""))
        pairs["telephone"].append((x, telephone_band(x), ""))
    return pairs


def stability(encoder: CausalEncoder, pairs: dict[str, list[tuple]], models: Models, cfg: ReportConfig) -> dict:
    """{condition: {name: mean / lo / hi / n}} plus the mean dedup unit rate per feature type."""
    clips = [c for cond in pairs.values() for p in cond for c in p[:2]]
    units = clip_units(encoder, clips, models, batch_samples=cfg.batch_samples)
    out: dict = {}
    k = 0
    for cond, plist in pairs.items():
        dists: dict[str, list[float]] = {n: [] for n in models}
        for _ in plist:
            for n in models:
                dists[n].append(normalised_distance(units[k][n], units[k + 1][n]))
            k += 2
        out[cond] = {}
        for n, d in dists.items():
            lo, hi = bootstrap_ci(d, n=cfg.bootstrap, seed=cfg.seed)
            out[cond][n] = {"mean": float(np.mean(d)) if d else float("nan"), "lo": lo, "hi": hi, "n": len(d),
                            "per_pair": d}
    seconds = sum(len(c) for c in clips) / 16_000
    out["units_per_s"] = {n: sum(len(u[n]) for u in units) / max(seconds, 1e-9) for n in models}
    return out


def digit_probe(encoder: CausalEncoder, utts: list[Utterance], names: list[str], cfg: ReportConfig) -> dict:
    """{"probe": {pooling: {name: probe result}}, "probe_data": ...}: train-engine digits -> `digits` split."""
    train = [u for u in utts if u.split == "train"]
    digits = [u for u in train if u.category == "digit" and len(u.src_text.split()) == 1]
    test = [u for u in utts if u.split == "digits" and len(u.src_text.split()) == 1]
    classes = sorted({u.src_text for u in digits})
    test = [u for u in test if u.src_text in classes]
    report: dict = {"probe": {}}
    if digits and test:
        y_tr = torch.tensor([classes.index(u.src_text) for u in digits])
        y_te = torch.tensor([classes.index(u.src_text) for u in test])
        engines = {u.engine for u in digits}
        voices = sorted({u.voice for u in digits})  # one engine: 4 folds of whole voices instead
        groups = [u.engine if len(engines) > 1 else str(voices.index(u.voice) % 4) for u in digits]
        x_tr = pooled(encoder, [u.src for u in digits], names, batch_samples=cfg.batch_samples)
        x_clean = pooled(encoder, [u.src for u in test], names, batch_samples=cfg.batch_samples)
        x_tel = pooled(encoder, [telephone_band(u.src) for u in test], names, batch_samples=cfg.batch_samples)
        for pool in x_tr:
            report["probe"][pool] = {n: linear_probe(x_tr[pool][n], y_tr, groups, {
                "clean": (x_clean[pool][n], y_te), "telephone": (x_tel[pool][n], y_te)}, len(classes), cfg)
                for n in names}
        report["probe_data"] = {"classes": classes, "n_train": len(digits), "n_test": len(test),
                                "train_engines": sorted(engines), "test_engines": sorted({u.engine for u in test})}
    return report


def unit_report(encoder_path: str | Path, manifest: str | Path, out_dir: str | Path, *, limit: int | None = 300,
                config: ReportConfig | None = None) -> dict:
    """Measure unit stability and the digit probe, write report.md / report.json / PNGs; return the report.

    `limit` caps the pairs per condition (None: all); `config.kmeans_clips` caps the k-means fitting clips.
    """
    cfg = config or ReportConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    encoder = load_encoder(encoder_path).eval()
    names = feature_names(encoder, cfg.layers)
    utts = load_utterances(manifest, splits={"train", "unseen_engine", "unseen_voices", "unseen_sentences",
                                             "digits"}, src_lang="en")
    train = [u for u in utts if u.split == "train"]
    fit_clips = [u.src for u in _pick(train, cfg.kmeans_clips, cfg.seed)]
    models = fit_units(encoder, fit_clips, names, cfg)
    pairs = build_pairs(utts, limit, cfg)
    report: dict = {"encoder": str(encoder_path), "manifest": str(manifest), "config": asdict(cfg),
                    "limit": limit, "features": names, "conditions": CONDITIONS,
                    "kmeans_engines": sorted({u.engine for u in train}), "kmeans_clips": len(fit_clips)}
    report["stability"] = stability(encoder, pairs, models, cfg)
    layer_names = [n for n in names if n.startswith("ssl_L")]
    core = ("unseen_engine", "unseen_voice", "augmented", "telephone")
    mean_dist = {n: float(np.nanmean([report["stability"][c][n]["mean"] for c in core])) for n in names}
    report["mean_distance"] = mean_dist
    best = report["best_layer"] = min(layer_names, key=lambda n: mean_dist[n]) if layer_names else None
    report["paired_delta"] = {}  # best SSL layer minus each baseline on the same pairs; < 0: SSL more stable
    for cond, cells in report["stability"].items():
        per_pair = {n: np.asarray(c.pop("per_pair")) for n, c in cells.items()} if cond in CONDITIONS else {}
        for base in ("mfcc", "logmel") if best and per_pair else ():
            diff = per_pair[best] - per_pair[base]
            lo, hi = bootstrap_ci(diff, n=cfg.bootstrap, seed=cfg.seed)
            report["paired_delta"].setdefault(cond, {})[base] = {
                "mean": float(diff.mean()) if len(diff) else float("nan"), "lo": lo, "hi": hi, "n": len(diff)}
    report.update(digit_probe(encoder, utts, names, cfg))
    write_report(report, out_dir)
    return report


def _finite(x: object) -> object:
    """NaN -> None throughout, so report.json is strict JSON."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and np.isnan(x) else x


def _cell(d: dict, key: str = "mean") -> str:
    return "n/a" if d["n"] == 0 or np.isnan(d[key]) else f"{d[key]:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"


def _bars(path: Path, groups: list[str], series: dict[str, list[tuple[float, float, float]]], ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    width = 0.8 / max(len(series), 1)
    for j, (name, vals) in enumerate(series.items()):
        x = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
        m = np.array([v[0] for v in vals])
        err = np.nan_to_num(np.abs(np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]])))
        ax.bar(x, m, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=15)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> None:
    """report.json, report.md and the charts stability.png / probe.png."""
    (out_dir / "report.json").write_text(json.dumps(_finite(report), indent=1))
    names, stab = report["features"], report["stability"]
    lines = ["# Unit and feature quality: SSL encoder vs MFCC and log-mel", "",
             f"Encoder `{report['encoder']}`; corpus `{report['manifest']}`. K-means "
             f"K={report['config']['num_units']} on {report['kmeans_clips']} English train clips "
             f"({', '.join(report['kmeans_engines'])}). Best SSL layer (lowest mean distance over the four "
             f"same-sentence conditions): **{report['best_layer']}**.", "",
             "## Unit stability: normalised edit distance of dedup units (lower is better; mean [95 % CI])", "",
             "| condition | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for cond in CONDITIONS:
        n = stab[cond][names[0]]["n"]
        lines.append(f"| {cond} | {n} | " + " | ".join(_cell(stab[cond][f]) for f in names) + " |")
    lines.append("| mean of the four same-sentence rows | | "
                 + " | ".join(f"{report['mean_distance'][f]:.3f}" for f in names) + " |")
    chance = stab["different_sentence"]
    ratio = [f"{stab['unseen_engine'][f]['mean'] / chance[f]['mean']:.2f}" if chance[f]["n"] else "n/a" for f in names]
    lines.append("| unseen_engine / chance | | " + " | ".join(ratio) + " |")
    lines.append("| dedup units per second | | " + " | ".join(f"{stab['units_per_s'][f]:.1f}" for f in names) + " |")
    lines += ["", *(f"- **{c}**: {d}" for c, d in CONDITIONS.items()), "",
              "Distances can exceed 1 (insertions); compare each row with the chance row and mind the unit rates.",
              "", "![stability](stability.png)", ""]
    if report["paired_delta"]:
        lines += [f"Paired difference, {report['best_layer']} minus baseline on the same pairs (< 0: SSL units "
                  "more stable; mean [95 % CI]):", "", "| condition | vs mfcc | vs logmel |", "|---|---|---|"]
        lines += [f"| {c} | {_cell(d['mfcc'])} | {_cell(d['logmel'])} |" for c, d in report["paired_delta"].items()]
        lines.append("")
    _bars(out_dir / "stability.png", list(CONDITIONS),
          {f: [(stab[c][f]["mean"], stab[c][f]["lo"], stab[c][f]["hi"]) for c in CONDITIONS] for f in names},
          "normalised unit edit distance")
    if report["probe"]:
        pd = report["probe_data"]
        lines += ["## Linear probe: digit identity from pooled frozen features (accuracy [95 % CI])", "",
                  f"Trained on {pd['n_train']} isolated digits ({', '.join(pd['train_engines'])}), tested on "
                  f"{pd['n_test']} of the held-out `digits` split ({', '.join(pd['test_engines'])}); chance "
                  f"{1 / len(pd['classes']):.2f}. L2 strength picked by grouped cross-validation "
                  "(leave one engine out).", "",
                  "| pooling | feature | clean | telephone | lambda | CV acc |", "|---|---|---|---|---|---|"]
        for pool, res in report["probe"].items():
            for f in names:
                r = res[f]
                lines.append(f"| {pool} | {f} | {_cell(r['clean'], 'acc')} | {_cell(r['telephone'], 'acc')} "
                             f"| {r['lambda']:g} | {r['cv_acc']:.3f} |")
        lines += ["", "![probe](probe.png)", ""]
        groups = [f"{pool} {t}" for pool in report["probe"] for t in ("clean", "telephone")]
        _bars(out_dir / "probe.png", groups, {f: [(report["probe"][p][f][t]["acc"], report["probe"][p][f][t]["lo"],
                                                   report["probe"][p][f][t]["hi"]) for p in report["probe"]
                                                  for t in ("clean", "telephone")] for f in names}, "accuracy")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("encoder", help="SSL encoder .safetensors saved with its config")
    p.add_argument("manifest", help="corpus manifest.jsonl")
    p.add_argument("out_dir", nargs="?", default="benchmarks/results/units")
    p.add_argument("--limit", type=int, default=300, help="max pairs per condition")
    p.add_argument("--kmeans-clips", type=int, default=ReportConfig.kmeans_clips)
    p.add_argument("--layers", type=int, nargs="+", default=list(ReportConfig.layers))
    p.add_argument("--num-units", type=int, default=ReportConfig.num_units, help="k-means K")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    cfg = ReportConfig(layers=tuple(a.layers), kmeans_clips=a.kmeans_clips, num_units=a.num_units)
    report = unit_report(a.encoder, a.manifest, a.out_dir, limit=a.limit, config=cfg)
    print(json.dumps({"best_layer": report["best_layer"], "mean_distance": report["mean_distance"]}, indent=1))


if __name__ == "__main__":
    main()
