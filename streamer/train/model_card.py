"""MODEL_CARD.md for a packaged model: what it is, what it learned from, how it scores, its limits.

    python -m streamer.train.model_card configs/train/en-es.yaml benchmarks/results/eval-en-es

rewrites a packaged model's card with the summary of its `streamer eval` report.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

from streamer.errors import StreamerError
from streamer.models.s2st import S2STModel


def _last(path: Path, key: str, *, previous_card: str = "", label: str = "") -> str:
    """The last value of `key` in a training history; where the history is gone (a work dir from
    another machine, or a stage that did not run here), the value the previous card gave after `label`."""
    values = (json.loads(path.read_text()).get(key) or []) if path.is_file() else []
    if values:
        return f"{values[-1]:.3f}"
    found = re.search(re.escape(label) + r"\s+([0-9.]+)", previous_card) if label else None
    return found.group(1).rstrip(".") if found else "n/a"


def write_model_card(out_dir: Path, model: S2STModel, *, name: str, work_dir: Path, ssl_dir: Path,
                     corpus: str, metrics_md: str | None = None, noise_only_prob: float = 0.0) -> Path:
    """noise_only_prob: the largest share of S2UT clips swapped for noise alone in any phase (0: none)."""
    cfg = model.cfg
    params = {n: sum(p.numel() for p in getattr(model, n).parameters()) for n in ("encoder", "decoder", "vocoder")}
    phonemes = out_dir / "phonemes.json"
    units = (f"units: the target voice's {len(json.loads(phonemes.read_text())['phonemes'])} espeak-ng phonemes, "
             "timed by espeak itself" if phonemes.is_file() else
             f"{cfg.decoder.num_units} k-means units on layer features of the target voice")
    size_mb = sum(f.stat().st_size for f in out_dir.glob("*.safetensors")) / 1e6
    card = out_dir / "MODEL_CARD.md"
    previous = card.read_text() if card.is_file() else ""
    masked_acc = _last(ssl_dir / "ssl_history.json", "masked_acc", previous_card=previous,
                       label="final masked accuracy")
    dev_uer = _last(work_dir / "s2ut_history.json", "dev_uer", previous_card=previous, label="error rate")
    vocoder_loss = _last(work_dir / "vocoder_history.json", "loss", previous_card=previous, label="vocoder final loss")
    decoding = decoding_paragraph(out_dir, model)
    frame_ms = cfg.encoder.frame_samples * 1000 // cfg.sample_rate
    context = cfg.queue.duration_context
    after = {0: "", 1: " after the phoneme before each"}.get(context, f" after the {context} phonemes before each")
    timing = f"their mean durations{after}, at most {cfg.queue.max_duration_frames * frame_ms} ms"
    hold_ms = cfg.queue.hold_frames * frame_ms
    hold = f" (when the decoder is late, the last one goes on for up to {hold_ms} ms)" if hold_ms else ""
    noise_only = (f"; up to {noise_only_prob:.0%} of the clips of a training phase are noise alone (white, pink, "
                  "brown, mains hum) with nothing as their target, so that noise in gives silence out"
                  ) if noise_only_prob else ""
    noise_limit = "; in noise or on an 8 kHz line, a lone short word can come out as silence" if noise_only_prob else ""
    text = f"""# streamer model card: {name} ({cfg.source_lang} -> {cfg.target_lang})

**What it is.** A streaming speech-to-speech translator: causal SSL encoder -> CTC unit decoder
({cfg.decoder.upsample} slot(s) per 20 ms frame) -> unit queue -> causal iSTFT vocoder. {cfg.chunk_ms} ms chunks
at {cfg.sample_rate} Hz in, the same audio duration out per chunk; algorithmic latency
{model.algorithmic_latency_ms:.0f} ms (chunk + declared lookahead).
Parameters: encoder {params['encoder'] / 1e6:.2f} M, decoder {params['decoder'] / 1e6:.2f} M,
vocoder {params['vocoder'] / 1e6:.2f} M; files here {size_mb:.1f} MB (safetensors, config in the header).

**Data.** Synthetic speech only, from the repo's bilingual grammar (`{corpus}`): English source from
espeak-ng, festival and piper voices (flite held out entirely for testing), Spanish source from espeak-ng
variants; heavy on-the-fly augmentation (speed, VTLP, pitch, noise, reverb, telephone band, gain, DC,
silence){noise_only}. Targets are one fixed espeak-ng voice per target language. No recordings of real people.

**Training** (`configs/train/{name}.yaml`, `streamer train --config ...`): SSL masked prediction of MFCC
clusters, final masked accuracy {masked_acc};
{units}; S2UT CTC training, final dev unit
error rate {dev_uer}; vocoder final loss
{vocoder_loss}.

{decoding}**Limits.** Vocabulary and syntax of the grammar only (numbers, times, days, months, colours, objects with
quantities, short commands, greetings, questions). The output voice is a buzzy neural imitation of
espeak-ng, its phonemes held for {timing}{hold}. Small, and trained in a few hours of one CPU core (the
config lists every phase): expect errors, more of them on unseen voices, in noise and on telephone audio (see
the evaluation){noise_limit}.
"""
    if metrics_md:
        text += "\n## Evaluation\n\n" + metrics_md + "\n"
    card.write_text(text)
    return card


def decoding_paragraph(out_dir: Path, model: S2STModel) -> str:
    """How units are chosen: the folder's unit LM search (its tuned settings), else greedy CTC."""
    from streamer.models.ctc_search import load_search
    from streamer.models.unit_lm import LM_NAME

    if not (out_dir / LM_NAME).is_file():
        return "**Decoding.** Greedy CTC: each unit is voiced in the chunk that emits it.\n\n"
    cfg = model.cfg
    search = load_search(out_dir / LM_NAME, cfg.decoder.blank)
    delay_ms = (search.cfg.max_delay_slots or 0) * cfg.chunk_ms / cfg.max_units
    text = (f"**Decoding.** By default a CTC beam search (beam {search.cfg.beam}) with an order-{search.lm.order} "
            f"n-gram LM over the target units (`{LM_NAME}`, counted on the training targets; weight "
            f"{search.cfg.alpha}, unit bonus {search.cfg.beta}, tuned on dev). A unit is voiced once every "
            f"hypothesis agrees on it, or {delay_ms:.0f} ms after it was first hypothesised: about 0.2-0.3 s "
            "more latency than greedy CTC (`decoding=\"greedy\"`). The eager, torch.compile and ONNX backends run it; "
            "TensorRT decodes greedily.")
    return textwrap.fill(text, width=110) + "\n\n"


def eval_summary(report_dir: Path, eval_config: str) -> str:
    """The card's evaluation section: an eval report's header, table and silence check (no examples)."""
    report = report_dir / "report.md"
    if not report.is_file():
        raise StreamerError(f"no eval report at {report}: run streamer eval first")
    body = report.read_text().split("\n", 1)[1].split("## Examples")[0].strip()
    return f"`streamer eval --config {eval_config}` (full report and examples: `{report_dir}/`)\n\n{body}"


def main(argv: list[str]) -> Path:
    """Rewrite the card of a recipe's packaged model (output_dir) with an eval report's summary."""
    from streamer.models.checkpoint import load_model
    from streamer.train.recipe_config import RecipeConfig

    if len(argv) != 2:
        raise StreamerError("usage: python -m streamer.train.model_card TRAIN_CONFIG EVAL_REPORT_DIR")
    cfg = RecipeConfig.from_yaml(argv[0])
    out = Path(cfg.output_dir)
    metrics = eval_summary(Path(argv[1]), f"configs/eval/{cfg.name}.yaml")
    return write_model_card(out, load_model(out), name=cfg.name, work_dir=Path(cfg.work_dir),
                            ssl_dir=cfg.ssl_path, corpus=cfg.corpus, metrics_md=metrics,
                            noise_only_prob=cfg.noise_only_prob)


if __name__ == "__main__":
    try:
        print(main(sys.argv[1:]))
    except StreamerError as exc:
        sys.exit(f"model card: error: {exc}")
