"""The model card rewriter: on a machine without the training work dir, the shipped card comes back
byte for byte from the packaged model, the previous card's training figures and the eval report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from streamer.errors import StreamerError
from streamer.train.model_card import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("pair", ["en-es", "es-en"])
def test_shipped_card_is_rebuilt_without_the_work_dir(pair: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the card names the report by its path from the repo root
    shipped = ROOT / "streamer/assets" / pair
    shutil.copytree(shipped, tmp_path / "model")
    d = yaml.safe_load((ROOT / f"configs/train/{pair}.yaml").read_text())
    d.update(output_dir=str(tmp_path / "model"), work_dir=str(tmp_path / "work"), ssl_dir=str(tmp_path / "ssl"))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(d))
    card = main([str(tmp_path / "cfg.yaml"), f"benchmarks/results/eval-{pair}"])
    assert card.read_text() == (shipped / "MODEL_CARD.md").read_text()
    assert "n/a" not in card.read_text()
    with pytest.raises(StreamerError, match="no eval report"):
        main([str(tmp_path / "cfg.yaml"), str(tmp_path / "nowhere")])
