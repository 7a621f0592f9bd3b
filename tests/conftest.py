"""Shared fixtures: a tiny seeded step-graph model so pipeline tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.models.presets import tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model saved as safetensors with its config, as a shipped model would be."""
    from streamer.models.checkpoint import save_model

    path = tmp_path_factory.mktemp("tiny_model")
    save_model(tiny_model(), path)
    return path
