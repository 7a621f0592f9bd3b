"""Backend fixtures: one tiny model, one artifact cache and one runner per backend for the session.

Backends under test come from `streamer.engine.available_backends()`; a backend missing here is a
`pytest.skip` with the reason, never a silent pass. torch.compile builds take minutes on a small shared
CPU, so its tests also need `-m slow` (or STREAMER_SLOW_TESTS=1); the TensorRT ones carry the `gpu` marker.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from streamer.engine import BackendConfig, Runner, available_backends
from streamer.models.presets import tiny_model
from streamer.models.s2st import S2STModel


def slow_selected(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr") or ""
    return os.environ.get("STREAMER_SLOW_TESTS") == "1" or ("slow" in expr and "not slow" not in expr)


@pytest.fixture(scope="session")
def tiny() -> S2STModel:
    torch.set_num_threads(1)
    return tiny_model()


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the session, so each backend exports the tiny model once."""
    return tmp_path_factory.mktemp("engine_cache")


@pytest.fixture(scope="session")
def runner_for(tiny: S2STModel, engine_cache: Path, request: pytest.FixtureRequest) -> Callable[[str], Runner]:
    """`runner_for(name)`: the session's runner for a backend, or pytest.skip with the reason.
    "compile-split" is torch.compile warmed for the step's halves (listen, speak)."""
    runners: dict[str, Runner] = {}

    def get(name: str) -> Runner:
        backend = name.removesuffix("-fp16").removesuffix("-split")
        if backend not in available_backends():
            pytest.skip(f"backend {backend!r} is not usable here (available: {available_backends()})")
        if backend == "compile" and not slow_selected(request.config):
            pytest.skip("torch.compile builds take minutes on this CPU; run `pytest tests/engine -m slow` "
                        "or set STREAMER_SLOW_TESTS=1")
        if name not in runners:
            config = BackendConfig(name=backend, num_threads=1, fp16=name.endswith("-fp16"), max_batch=8,
                                   cache_dir=str(engine_cache))
            if backend == "compile":
                from streamer.engine.compiled import CompiledRunner

                runners[name] = CompiledRunner(tiny, num_threads=1, cache_dir=engine_cache, warmup=(1, 3),
                                               split=name.endswith("-split"))
            else:
                from streamer.engine import make_runner

                runners[name] = make_runner(tiny, config)
        return runners[name]

    return get


Step = tuple[torch.Tensor, torch.Tensor]  # (audio, units) of one chunk step


@pytest.fixture(scope="session")
def step_together() -> Callable[[Runner, Runner, int], list[tuple[Step, Step]]]:
    """`step_together(a, b, seed)`: both runners through the same 4 random chunks of a 2-stream batch,
    each from its own initial state; per chunk, the pair of (audio, units)."""

    def run(a: Runner, b: Runner, seed: int) -> list[tuple[Step, Step]]:
        g = torch.Generator().manual_seed(seed)
        sa, sb = a.init_state(2), b.init_state(2)
        pairs = []
        for _ in range(4):
            audio = 0.5 * torch.randn(2, a.config.chunk_samples, generator=g)
            ya, ua, sa = a.step(audio, sa)
            yb, ub, sb = b.step(audio, sb)
            pairs.append(((ya, ua), (yb, ub)))
        return pairs

    return run
