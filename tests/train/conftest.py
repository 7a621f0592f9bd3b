"""The tiny training recipe, trained once per test session and shared by the training tests."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from streamer.train.recipe import Recipe, RecipeConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from streamer.train.corpus import main as build

    return build(ROOT / "configs/corpus/tiny.yaml", out_dir=tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def trained(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RecipeConfig, Path]:
    work = tmp_path_factory.mktemp("run")
    cfg = replace(RecipeConfig.from_yaml(ROOT / "configs/train/tiny.yaml"), corpus=str(tiny_corpus),
                  work_dir=str(work), output_dir=str(work / "model"))
    Recipe(cfg).run(["ssl", "units", "s2ut", "vocoder", "package"])
    return cfg, work
