"""MODEL_CARD.md for a packaged model: what it is, what it learned from, how it scores, its limits."""

from __future__ import annotations

import json
from pathlib import Path

from streamer.models.s2st import S2STModel


def _last(path: Path, key: str) -> str:
    if not path.is_file():
        return "n/a"
    values = json.loads(path.read_text()).get(key) or []
    return f"{values[-1]:.3f}" if values else "n/a"


def write_model_card(out_dir: Path, model: S2STModel, *, name: str, work_dir: Path, ssl_dir: Path,
                     corpus: str, metrics_md: str | None = None) -> Path:
    cfg = model.cfg
    params = {n: sum(p.numel() for p in getattr(model, n).parameters()) for n in ("encoder", "decoder", "vocoder")}
    phonemes = out_dir / "phonemes.json"
    units = (f"units: the target voice's {len(json.loads(phonemes.read_text())['phonemes'])} espeak-ng phonemes, "
             "timed by espeak itself" if phonemes.is_file() else
             f"{cfg.decoder.num_units} k-means units on layer features of the target voice")
    size_mb = sum(f.stat().st_size for f in out_dir.glob("*.safetensors")) / 1e6
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
silence). Targets are one fixed espeak-ng voice per target language. No recordings of real people.

**Training** (`configs/train/{name}.yaml`, `streamer train --config ...`): SSL masked prediction of MFCC
clusters, final masked accuracy {_last(ssl_dir / 'ssl_history.json', 'masked_acc')};
{units}; S2UT CTC training, final dev unit
error rate {_last(work_dir / 's2ut_history.json', 'dev_uer')}; vocoder final loss
{_last(work_dir / 'vocoder_history.json', 'loss')}.

**Limits.** Vocabulary and syntax of the grammar only (numbers, times, days, months, colours, objects with
quantities, short commands, greetings, questions). The output voice is a buzzy neural imitation of
espeak-ng, its phonemes held for their mean durations. Small, and trained in a few hours of one CPU core (the
config lists every phase): expect errors, more of them on unseen voices, in noise and on telephone audio (see
the evaluation).
"""
    if metrics_md:
        text += "\n## Evaluation\n\n" + metrics_md + "\n"
    path = out_dir / "MODEL_CARD.md"
    path.write_text(text)
    return path
