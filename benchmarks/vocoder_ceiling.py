"""How intelligible can the translator be with a perfect decoder? The vocoder's ceiling, measured.

For target sentences of a split, the vocoder speaks (a) the true frame units of the target clip and
(b) the same units, deduplicated and re-timed with the queue's mean durations (what it gets at run
time from a decoder that is never wrong), and (c) re-timed with each unit's mean duration after the one or
two units before it (a causal context the queue could keep); a Griffin-Lim baseline speaks (a) and (b)
from each unit's mean STFT magnitude in the target voice (`--no-griffin-lim` skips it). The Whisper judge
transcribes all and the target voice itself (the topline); the table gives ASR-BLEU and WER of each.

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
from streamer.eval.compare import paired_bootstrap
from streamer.eval.judge import JudgeConfig, WhisperJudge
from streamer.models.s2st import S2STModel
from streamer.models.units import dedup
from streamer.train.data import Utterance
from streamer.train.recipe import Recipe, RecipeConfig
from streamer.train.targets import context_durations, unique_targets, unit_durations


def retimed(frame_units: np.ndarray, table: torch.Tensor, num_units: int, context: int = 0) -> np.ndarray:
    """Deduplicated units, each held as the queue's duration table says (rounded, at least one frame):
    its mean duration (context 0), or its mean after the `context` units before it (`context_durations`)."""
    units, _ = dedup(frame_units)
    padded = np.concatenate([np.full(context, num_units), units])
    index = units.copy()
    for level in range(context):  # the previous unit, then the one before it
        index += padded[context - 1 - level:context - 1 - level + len(units)] * num_units * (num_units + 1) ** level
    return np.repeat(units, np.maximum(1, np.round(table.numpy()[index]).astype(int)))


N_FFT, HOP = 1024, 320  # one STFT frame per 20 ms unit frame


def unit_spectra(frame_units: list[np.ndarray], audios: list[np.ndarray], num_units: int) -> torch.Tensor:
    """Mean STFT magnitude of each unit over the target voice's frames: (K, N_FFT // 2 + 1)."""
    total, count = torch.zeros(num_units, N_FFT // 2 + 1), torch.zeros(num_units)
    window = torch.hann_window(N_FFT)
    for units, audio in zip(frame_units, audios, strict=True):
        x = torch.from_numpy(np.pad(audio, (0, max(0, len(units) * HOP - len(audio)))))
        mag = torch.stft(x, N_FFT, HOP, window=window, return_complex=True).abs().T[: len(units)]
        ids = torch.from_numpy(units[: len(mag)]).long()
        total.index_add_(0, ids, mag)
        count.index_add_(0, ids, torch.ones(len(ids)))
    return total / count.clamp(min=1)[:, None]


def difference_rows(hyps: dict[str, list[str]], refs: list[str], base: str, lang: str,
                    skip: tuple[str, ...] = ()) -> list[str]:
    """Markdown rows: each kind of speech's ASR-BLEU against `base`'s (paired bootstrap over utterances, 1,000
    resamples): the difference, its 95 % interval and the share of resamples where it is ahead."""
    def score(items: list[dict]) -> float:
        return metrics.asr_bleu([i["hyp"] for i in items], [i["ref"] for i in items], lang=lang)

    pairs = [{"hyp": h, "ref": r} for h, r in zip(hyps[base], refs, strict=True)]
    rows = []
    for k, v in hyps.items():
        if v and k != base and k not in skip:
            items = [{"hyp": h, "ref": r} for h, r in zip(v, refs, strict=True)]
            a, b, low, high, ahead = paired_bootstrap(pairs, items, score, higher_is_better=True, resamples=1000,
                                                      seed=0)
            rows.append(f"| {k} | {b - a:+.1f} | {low:+.1f} .. {high:+.1f} | {100 * ahead:.0f} % |")
    return rows


def griffin_lim(frames: np.ndarray, spectra: torch.Tensor, iterations: int = 32) -> np.ndarray:
    """The baseline vocoder: each frame's unit's mean magnitude, phase by Griffin-Lim."""
    mag = spectra[torch.from_numpy(frames).long()].T  # (F, T)
    window = torch.hann_window(N_FFT)
    length = len(frames) * HOP
    phase = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=torch.Generator().manual_seed(0)))
    for _ in range(iterations):
        audio = torch.istft(mag * phase, N_FFT, HOP, window=window, length=length)
        spec = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)[:, : mag.shape[1]]
        phase = torch.exp(1j * spec.angle())
    audio = torch.istft(mag * phase, N_FFT, HOP, window=window, length=length)
    return (0.9 * audio / audio.abs().max().clamp(min=1e-6)).numpy()


def speak(model: S2STModel, frames: np.ndarray) -> np.ndarray:
    """Frame units -> the vocoder's audio (0.1 s of silence for no frames)."""
    if len(frames) == 0:
        return np.zeros(1600, dtype=np.float32)
    with torch.no_grad():
        return model.vocoder(torch.from_numpy(frames).long()[None])[0].numpy()


def split_targets(recipe: Recipe, split: str, n: int) -> list[Utterance]:
    """The split's first `n` utterances with distinct target clips (the last utterance of each clip)."""
    utterances = recipe.data(split, src_lang=recipe.cfg.source_lang)
    return list({u.tgt_key: u for u in utterances}.values())[:n]


def model_split_args(p: argparse.ArgumentParser, n: int) -> None:
    """The arguments of the benchmarks that voice a model's material for a split's utterances."""
    p.add_argument("--config", required=True, help="the model's recipe config (its corpus and phoneme table)")
    p.add_argument("--model", required=True, help="the model folder")
    p.add_argument("--split", default="unseen_sentences")
    p.add_argument("--n", type=int, default=n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--split", default="dev")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--out", required=True)
    p.add_argument("--vocoder", help="vocoder weights (default: the recipe work dir's vocoder.safetensors); a "
                   "model folder's model.safetensors also works")
    p.add_argument("--no-griffin-lim", action="store_true", help="skip the Griffin-Lim baseline")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = RecipeConfig.from_yaml(args.config)
    recipe = Recipe(replace(cfg, train_limit=None))
    model = S2STModel(cfg.model_config()).eval()
    weights = load_file(args.vocoder or str(recipe.work / "vocoder.safetensors"))
    if any(k.startswith("vocoder.") for k in weights):
        weights = {k.removeprefix("vocoder."): v for k, v in weights.items() if k.startswith("vocoder.")}
    model.vocoder.load_state_dict(weights)
    train = recipe.data("train", src_lang=cfg.source_lang)
    train_units = list(recipe.frame_units(train).values())
    path = recipe.work / "durations.safetensors"
    if path.is_file():
        durations = load_file(str(path))["durations"]
    else:  # the vocoder stage writes them when it ends; before that, the same from the training targets
        durations = unit_durations(train_units, cfg.units.num_units)
    contexts = {n: context_durations(train_units, cfg.units.num_units, n) for n in (1, 2)}
    utts = split_targets(recipe, args.split, args.n)
    by_key = recipe.frame_units(utts)
    clips = unique_targets(train[:600])
    train_frames = recipe.frame_units(train[:600])
    spectra = unit_spectra([train_frames[k] for k in clips], list(clips.values()), cfg.units.num_units)
    judge = WhisperJudge(JudgeConfig(cpu_threads=1))
    lang, sr = cfg.target_lang, model.cfg.sample_rate
    hyps: dict[str, list[str]] = {"target voice (topline)": [], "true frame units": [], "mean durations": [],
                                  "mean durations after the previous unit": [],
                                  "mean durations after the previous two units": [],
                                  "Griffin-Lim baseline, true frame units": [],
                                  "Griffin-Lim baseline, mean durations": []}
    for u in utts:
        frames = by_key[u.tgt_key]
        hyps["target voice (topline)"].append(judge.transcribe(u.tgt, sr, language=lang))
        hyps["true frame units"].append(judge.transcribe(speak(model, frames), sr, language=lang))
        timed = retimed(frames, durations, cfg.units.num_units)
        hyps["mean durations"].append(judge.transcribe(speak(model, timed), sr, language=lang))
        for n, label in ((1, "previous unit"), (2, "previous two units")):
            timed_n = retimed(frames, contexts[n], cfg.units.num_units, n)
            hyps[f"mean durations after the {label}"].append(judge.transcribe(speak(model, timed_n), sr, language=lang))
        if not args.no_griffin_lim:
            hyps["Griffin-Lim baseline, true frame units"].append(
                judge.transcribe(griffin_lim(frames, spectra), sr, language=lang))
            hyps["Griffin-Lim baseline, mean durations"].append(
                judge.transcribe(griffin_lim(timed, spectra), sr, language=lang))
    refs = [u.tgt_text for u in utts]

    rows = {k: {"asr_bleu": metrics.asr_bleu(v, refs, lang=lang), "wer": metrics.wer(v, refs, lang=lang)}
            for k, v in hyps.items() if v}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocoder_ceiling.json").write_text(json.dumps(
        {"config": args.config, "split": args.split, "n": len(utts), "scores": rows,
         "items": [{"reference": r, **{k: v[i] for k, v in hyps.items() if v}} for i, r in enumerate(refs)]},
        indent=1, ensure_ascii=False))
    lines = [f"Vocoder ceiling, {args.config}, {len(utts)} {args.split} targets", "",
             "| speech | ASR-BLEU | WER |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['asr_bleu']:.1f} | {100 * v['wer']:.1f} % |" for k, v in rows.items()]
    lines += ["", "ASR-BLEU against mean durations (paired bootstrap over sentences, 1,000 resamples):", "",
              "| speech | difference | 95 % interval | ahead |", "|---|---:|---|---:|"]
    lines += difference_rows(hyps, refs, "mean durations", lang)
    (out / "vocoder_ceiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
