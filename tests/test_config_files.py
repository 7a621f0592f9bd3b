"""Every YAML config reader gives its own clear error, naming the file, for a missing, non-YAML or
non-mapping file (never a traceback from deep inside a loader)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.bench import BenchConfig, BenchError
from streamer.errors import StreamerError
from streamer.mqtt.service import ServiceConfigError, load_service_config
from streamer.train.corpus import CorpusConfig, CorpusError
from streamer.train.corpus import main as build_corpus
from streamer.train.recipe_config import RecipeConfig

READERS: list[tuple[str, Callable[[Path], object], type[Exception]]] = [
    ("service config", load_service_config, ServiceConfigError),
    ("bench config", BenchConfig.from_yaml, BenchError),
    ("corpus config", CorpusConfig.from_yaml, CorpusError),
    ("corpus config", build_corpus, CorpusError),
    ("training config", RecipeConfig.from_yaml, StreamerError),
]
BAD_FILES = {"missing": None, "not YAML": "a: [1, 2\n", "a list": "- 1\n- 2\n", "binary": b"\xff\xfe\x00"}


@pytest.mark.parametrize("what, read, error", READERS, ids=[r[1].__qualname__ for r in READERS])
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_config_file_is_a_clear_error(what: str, read: Callable[[Path], object], error: type[Exception],
                                          kind: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    content = BAD_FILES[kind]
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(error, match=what) as caught:
        read(path)
    assert str(path) in str(caught.value) and isinstance(caught.value, StreamerError)


def test_training_config_names_unknown_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("name: x\ncorpus: c.jsonl\nwork_dir: w\nencodr: {dim: 8}\n")
    with pytest.raises(StreamerError, match=r"unknown keys \['encodr'\]; missing keys \['output_dir'\]"):
        RecipeConfig.from_yaml(path)


def test_unknown_service_setting_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("worker: {prefx: a}\n")
    with pytest.raises(ServiceConfigError, match="prefx"):
        load_service_config(path)
