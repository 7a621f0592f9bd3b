"""The `streamer` command: translate, units, devices and clean errors (exit code 2, message on stderr)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.cli import main
from streamer.pipeline import Translator

ROOT = Path(__file__).resolve().parents[1]


def test_translate_equals_the_python_api(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(22_050)).astype(np.float32)
    sf.write(src, audio, 22_050)
    assert main(["translate", str(src), str(tmp_path / "out.wav"), "--model", str(tiny_model_dir),
                 "--backend", "eager"]) == 0
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    ref = Translator.from_dir(tiny_model_dir).translate_array(audio, sample_rate=22_050)
    assert rate == 16_000 and len(out) == len(ref)
    np.testing.assert_allclose(out, ref, atol=2 / 32768)


def test_translate_of_a_missing_file_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["translate", str(tmp_path / "nope.wav"), str(tmp_path / "o.wav"), "--model", str(tiny_model_dir)])
    assert code == 2
    assert "nope.wav" in capsys.readouterr().err


def test_units_prints_the_units_of_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = ROOT / "streamer/assets/en-es"
    assert main(["units", str(ROOT / "examples/en_turn_on_the_light.wav")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    if (shipped / "phonemes.json").is_file():  # phoneme units: the phonemes said in translation
        names = set(json.loads((shipped / "phonemes.json").read_text())["phonemes"])
        said = lines[0].split()
        assert said and set(said) <= names and lines[1] == f"# {len(said)} phonemes said in translation"
    else:
        units = [int(u) for u in lines[0].split()]
        assert units and all(0 <= u < 100 for u in units)
        assert lines[1].startswith(f"# {len(units)} units")


def test_devices_says_what_it_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("content", [None, "key: [unclosed", "- a list\n- not a mapping\n"])
def test_eval_with_a_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 content: str | None) -> None:
    config = tmp_path / "eval.yaml"
    if content is not None:
        config.write_text(content)
    assert main(["eval", "--config", str(config)]) == 2
    assert "eval.yaml" in capsys.readouterr().err
