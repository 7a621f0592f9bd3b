"""The unit/feature quality report on a tiny random encoder and the tiny corpus: structure and sanity."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from streamer.models.encoder import CausalEncoder, EncoderConfig
from streamer.train.unit_report import (
    CONDITIONS,
    ReportConfig,
    bootstrap_ci,
    clip_units,
    fit_units,
    normalised_distance,
    unit_report,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = EncoderConfig(dim=32, num_heads=2, num_layers=2, context_frames=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: threads only add overhead (and fight other jobs for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = CausalEncoder(TINY)
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(path),
              metadata={"config": json.dumps(TINY.to_dict())})
    return path


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from streamer.train.corpus import main as build

    return build(ROOT / "configs/corpus/tiny.yaml", out_dir=tmp_path_factory.mktemp("corpus"))


def test_distance_and_interval() -> None:
    assert normalised_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert normalised_distance([1, 2, 3, 4], [1, 5, 3]) == 0.5
    assert normalised_distance([], []) == 0.0
    lo, hi = bootstrap_ci([0.2] * 10)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)
    lo, hi = bootstrap_ci(np.random.default_rng(0).uniform(size=200))
    assert lo < 0.5 < hi


def test_identical_inputs_give_identical_units() -> None:
    """Same audio -> same units, whatever else shares its (right-padded) batch."""
    torch.manual_seed(0)
    encoder = CausalEncoder(TINY).eval()
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 12345, 16000, 24000, 5000)]
    models = fit_units(encoder, clips, ["ssl_L2", "mfcc", "logmel"], ReportConfig(num_units=8, kmeans_frames=500))
    together = clip_units(encoder, clips + [clips[1]], models)
    alone = clip_units(encoder, [clips[1]], models)
    for name in models:
        assert normalised_distance(together[1][name], together[-1][name]) == 0.0
        assert normalised_distance(together[1][name], alone[0][name]) == 0.0


def test_report_on_tiny_corpus(encoder_path: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    cfg = ReportConfig(layers=(1, 2, 6), num_units=20, kmeans_frames=2000, bootstrap=100, lambdas=(1e-2,))
    report = unit_report(encoder_path, tiny_corpus, tmp_path, limit=4, config=cfg)
    names = ["ssl_L1", "ssl_L2", "mfcc", "logmel"]  # layer 6 does not exist in a 2-layer encoder
    assert report["features"] == names
    assert report["best_layer"] in ("ssl_L1", "ssl_L2")
    stab = report["stability"]
    assert set(CONDITIONS) <= set(stab)
    assert stab["unseen_engine"]["mfcc"]["n"] == 0  # the tiny corpus has no held-out engine
    for cond in ("unseen_voice", "augmented", "telephone"):
        for name in names:
            cell = stab[cond][name]
            assert cell["n"] > 0 and 0.0 <= cell["lo"] <= cell["mean"] <= cell["hi"], (cond, name, cell)
    assert all(v > 0 for v in stab["units_per_s"].values())
    delta = report["paired_delta"]["telephone"]["mfcc"]
    assert delta["n"] == stab["telephone"]["mfcc"]["n"] and delta["lo"] <= delta["mean"] <= delta["hi"]
    for pool in ("mean", "mean+max"):
        for name in names:
            res = report["probe"][pool][name]
            assert 0.0 <= res["clean"]["acc"] <= 1.0 and res["telephone"]["n"] == res["clean"]["n"] > 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["features"] == names and saved["stability"]["unseen_engine"]["mfcc"]["mean"] is None
    md = (tmp_path / "report.md").read_text()
    assert "Unit stability" in md and "Linear probe" in md
    assert (tmp_path / "stability.png").stat().st_size > 0 and (tmp_path / "probe.png").stat().st_size > 0
