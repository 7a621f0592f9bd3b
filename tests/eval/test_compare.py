"""Paired bootstrap of two eval reports: a clearly better model comes out ahead, equal ones do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.errors import StreamerError
from streamer.eval.compare import compare_reports, main

REFERENCES = ["el tren sale a las tres", "nos vemos el lunes", "la camisa es azul", "dame dos manzanas rojas",
              "enciende la luz", "buenas noches pedro", "son las siete y media", "el coche es verde"]


def report(hypotheses: list[str], predictions: list[str], pair: str = "en-es") -> dict:
    sentences = [{"id": f"s{i}", "reference": r, "hypothesis": h}
                 for i, (r, h) in enumerate(zip(REFERENCES, hypotheses, strict=True))]
    digits = [{"id": f"d{i}", "label": str(i % 10), "prediction": p} for i, p in enumerate(predictions)]
    return {"pair": pair, "sets": [{"name": "unseen_voices", "kind": "sentences", "items": sentences},
                                   {"name": "digits", "kind": "digits", "items": digits}]}


def garble(text: str) -> str:
    words = text.split()
    return " ".join(words[: len(words) // 2] + ["mmm"])


def test_a_better_model_is_ahead_on_every_resample() -> None:
    digits = [str(i % 10) for i in range(20)]
    weak = report([garble(r) for r in REFERENCES], ["0"] * 20)
    strong = report(REFERENCES, digits)
    rows = {r.metric: r for r in compare_reports(weak, strong, resamples=50)}
    bleu, wer, acc = rows["ASR-BLEU"], rows["WER %"], rows["digit accuracy"]
    assert bleu.b == pytest.approx(100) and bleu.a < 60 and bleu.low > 0 and bleu.b_ahead == 1.0
    assert wer.b == 0 and wer.a > 30 and wer.high < 0 and wer.b_ahead == 1.0
    assert (acc.a, acc.b, acc.n) == (10.0, 100.0, 20) and acc.b_ahead == 1.0
    same = {r.metric: r for r in compare_reports(strong, strong, resamples=20)}
    assert all(r.b_ahead == 0 and r.low == r.high == 0 for r in same.values())


def test_only_shared_utterances_count_and_mismatches_are_refused(tmp_path: Path) -> None:
    a = report(REFERENCES, ["1"] * 4)
    b = report(REFERENCES, ["1"] * 4)
    b["sets"][0]["items"] = b["sets"][0]["items"][:5]
    assert {r.n for r in compare_reports(a, b, resamples=5) if r.set_name == "unseen_voices"} == {5}
    with pytest.raises(StreamerError, match="different pairs"):
        compare_reports(a, report(REFERENCES, ["1"] * 4, pair="es-en"), resamples=5)
    for s in b["sets"]:
        for item in s["items"]:
            item["id"] += "-other"
    with pytest.raises(StreamerError, match="share no judged utterances"):
        compare_reports(a, b, resamples=5)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, r in zip(paths, (a, report([garble(x) for x in REFERENCES], ["2"] * 4)), strict=True):
        path.write_text(json.dumps(r))
    text = main([str(paths[0]), str(paths[1]), "--resamples", "10", "--out", str(tmp_path / "c.md")])
    assert "| unseen_voices | ASR-BLEU | 8 |" in text and (tmp_path / "c.md").read_text() == text
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read eval report"):
        main([str(paths[0]), str(tmp_path / "bad.json")])
