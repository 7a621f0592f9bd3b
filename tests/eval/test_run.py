"""run_eval end to end: a tiny untrained model over a hand-made manifest gives a complete report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.eval.judge import WhisperJudge
from streamer.eval.run import SETS, EvalConfig, EvalReport, run_eval

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "eval"
SENTENCES = [("the meeting is on tuesday", "la reunión es el martes"), ("thank you very much", "muchas gracias")]
DIGITS = [("seven", "siete"), ("two", "dos"), ("zero", "cero")]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, espeak: None) -> Path:
    """en-es rows: two sentences in each held-out split, three digits; espeak-ng sources."""
    from streamer.train.synth import Voice, synthesize, target_voice

    root = tmp_path_factory.mktemp("eval_corpus")
    (root / "audio").mkdir()
    src_voice = Voice.make("espeak-ng", "en-gb+m3", "en", rate=170, pitch=40)
    rows = []

    def wav(text: str, voice: Voice, name: str) -> str:
        audio, rate = synthesize(text, voice)
        sf.write(root / "audio" / f"{name}.wav", audio, rate)
        return f"audio/{name}.wav"

    plan = [(split, s) for split in ("unseen_voices", "unseen_engine", "unseen_sentences") for s in SENTENCES]
    plan += [("digits", d) for d in DIGITS]
    for i, (split, (en, es)) in enumerate(plan):
        rows.append({"id": f"en-es-{split}-{i:05d}", "split": split, "category": "digit" if split == "digits" else "x",
                     "src_lang": "en", "tgt_lang": "es", "src_text": en, "tgt_text": es,
                     "src_audio": wav(en, src_voice, f"src{i}"), "tgt_audio": wav(es, target_voice("es"), f"tgt{i}"),
                     "src_engine": "espeak-ng", "src_voice": src_voice.name})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny untrained model, packaged as the recipe does: weights + SSL encoder + unit centroids."""
    import torch

    from streamer.models.checkpoint import save_model
    from streamer.models.presets import tiny_model
    from streamer.models.units import UnitConfig, UnitExtractor
    from streamer.train.recipe import save_weights

    path = tmp_path_factory.mktemp("tiny_packaged")
    model = tiny_model()
    save_model(model, path)
    save_weights(model.encoder, path / "ssl_encoder.safetensors", config=model.cfg.encoder.to_dict())
    k, dim = model.cfg.decoder.num_units, model.cfg.encoder.dim
    centroids = torch.randn(k, dim, generator=torch.Generator().manual_seed(0))
    extractor = UnitExtractor(centroids, UnitConfig(num_units=k, layer=model.cfg.encoder.num_layers))
    extractor.save(path / "units.safetensors")
    return path


@pytest.fixture(scope="module")
def report(manifest: Path, model_dir: Path, judge: WhisperJudge) -> EvalReport:
    cfg = EvalConfig.from_yaml(CONFIGS / "tiny.yaml")
    cfg = EvalConfig.from_dict({**cfg.to_dict(), "manifest": str(manifest), "model": str(model_dir), "units": True})
    return run_eval(cfg, judge=judge)


def test_report_has_every_set_with_high_toplines(report: EvalReport) -> None:
    assert [s.name for s in report.sets] == list(SETS)
    by_name = {s.name: s for s in report.sets}
    for name in ("unseen_voices", "unseen_engine", "unseen_sentences", "telephone", "narrowband", "noise"):
        s = by_name[name]
        assert s.kind == "sentences" and s.n == 2 and len(s.items) == 2
        assert set(s.scores) == set(s.topline) == set(s.ratio) == {"asr_bleu", "wer"}
        assert s.topline["asr_bleu"] > 50 and s.topline["wer"] < 0.3, s.items
        assert 0 <= s.scores["asr_bleu"] <= 100 and s.scores["wer"] >= 0
        assert math.isfinite(s.rtf) and s.rtf > 0
        assert s.unit_error_rate is not None and s.unit_error_rate >= 0
    assert {by_name[n].source_split for n in ("telephone", "narrowband", "noise")} == {"unseen_engine"}
    for name in ("digits", "digits_telephone"):
        digits = by_name[name]
        assert digits.kind == "digits" and digits.n == 3 and set(digits.scores) == {"accuracy"}
        assert digits.topline["accuracy"] >= 2 / 3
        assert all(it["label"] in {"7", "2", "0"} for it in digits.items)
    assert [it["id"] for it in by_name["digits_telephone"].items] == [it["id"] for it in by_name["digits"].items]


def test_silence_check_ran(report: EvalReport) -> None:
    assert [r.name.split()[0] for r in report.silence] == ["silence", "dither", "pink", "white", "hum"]
    for r in report.silence:
        assert r.input_s == 1.0 and r.output_s > 0
        assert r.silent == (r.output_peak_db < r.threshold_db)


def test_report_saves_json_markdown_and_png(report: EvalReport, tmp_path: Path) -> None:
    paths = report.save(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["pair"] == "en-es" and len(data["sets"]) == len(SETS)
    md = paths["markdown"].read_text()
    assert "| unseen_engine |" in md and "topline" in md and "Silence in" in md
    assert paths["png"].stat().st_size > 1000


def test_config_rejects_unknown_keys_and_sets() -> None:
    with pytest.raises(ValueError, match="unknown eval keys"):
        EvalConfig.from_dict({"limt": 3})
    with pytest.raises(ValueError, match="unknown eval sets"):
        EvalConfig.from_dict({"sets": ["unseen_voices", "podcasts"]})
    with pytest.raises(ValueError, match="unknown judge keys"):
        EvalConfig.from_dict({"judge": {"beam": 3}})
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = EvalConfig.from_yaml(path)
        assert cfg.src_lang in ("en", "es") and cfg.tgt_lang in ("en", "es")


def test_report_json_is_strict_and_markdown_handles_missing_values(tmp_path: Path) -> None:
    from streamer.eval.report import EvalReport, SetResult, SilenceResult

    s = SetResult("digits", "digits", "digits", 0, {"accuracy": math.nan}, {"accuracy": 0.0},
                  {"accuracy": math.nan}, None, 0, math.nan, 0.0)
    quiet = SilenceResult("silence", 5.0, 6.4, -math.inf, -40.0, True)
    report = EvalReport("m", "en-es", "judge", (s,), (quiet,), 1.0, {}, ("a note",))
    data = json.loads(report.to_json())
    assert data["silence"][0]["output_peak_db"] is None and data["sets"][0]["ratio"]["accuracy"] is None
    md = report.to_markdown()
    assert "-inf dBFS" in md and "| digits | digits | 0 |" in md and "- a note" in md
    assert report.save(tmp_path)["png"].is_file()


def test_phoneme_reference_units_are_the_target_phonemes(tmp_path: Path, espeak: None) -> None:
    from types import SimpleNamespace

    from streamer.eval.run import _reference_units
    from streamer.train.phonemes import PhonemeInventory

    names = ("_", "D", "e", "n", "o", "s", "t", "u", "**")
    PhonemeInventory(names).save(tmp_path / "phonemes.json")
    units = _reference_units(tmp_path, "es")
    assert units is not None
    got = units(SimpleNamespace(tgt_text="uno dos tres", tgt=None))
    assert [names[i] for i in got] == ["u", "n", "o", "D", "o", "s", "t", "**", "e", "s"]


def test_silence_inputs_have_their_levels() -> None:
    from streamer.eval.run import silence_inputs

    inputs = silence_inputs(16_000, -35.0, seed=0)
    assert list(inputs) == ["silence", "dither -90 dBFS", "pink noise -35 dBFS", "white noise -35 dBFS",
                            "hum + pink noise -35 dBFS"]
    assert not inputs["silence"].any()
    levels = {k: 10 * np.log10(np.mean(x.astype(np.float64) ** 2)) for k, x in inputs.items() if k != "silence"}
    assert abs(levels.pop("dither -90 dBFS") + 90) < 0.2
    assert all(abs(db + 35) < 0.01 for db in levels.values()), levels
    again = silence_inputs(16_000, -35.0, seed=0)
    assert all(np.array_equal(again[k], x) for k, x in inputs.items())
