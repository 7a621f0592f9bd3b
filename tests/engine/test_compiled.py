"""torch.compile runner: settings checks (fast) and its on-disk compile cache (slow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.engine import Runner
from streamer.models.checkpoint import model_fingerprint
from streamer.models.s2st import S2STModel


def test_compile_rejects_unknown_mode(tiny: S2STModel) -> None:
    from streamer.engine.compiled import CompiledRunner

    with pytest.raises(ValueError, match="reduce-overhead"):
        CompiledRunner(tiny, mode="fastest", warmup=())


@pytest.mark.slow
def test_compile_cache_is_saved_under_the_fingerprint(tiny: S2STModel, engine_cache: Path,
                                                      runner_for: Callable[[str], Runner]) -> None:
    runner = runner_for("compile")
    assert runner.compile_seconds > 0
    path = runner.save_cache()
    assert path.is_file() and path.stat().st_size > 0
    assert path.parent == engine_cache / model_fingerprint(tiny) and path.name.startswith("compile-")
