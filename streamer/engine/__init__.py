"""Backends: ways to run the same step graph. `load_runner(path, BackendConfig(name=...))`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torch import Tensor

from streamer.errors import BackendUnavailableError
from streamer.models.s2st import S2STConfig, S2STModel, S2STState

BACKENDS = ("eager", "compile", "onnx", "tensorrt")


@dataclass(frozen=True)
class BackendConfig:
    name: str = "eager"
    num_threads: int | None = None  # intra-op threads (torch / ONNX Runtime); None = library default
    fp16: bool = False              # tensorrt only
    max_batch: int = 64             # largest batch an exported graph is built for
    cache_dir: str | None = None    # compiled artifacts; default ~/.cache/streamer


class Runner(Protocol):
    """The step graph behind a backend. States are S2STState NamedTuples of batch-first tensors."""

    config: S2STConfig

    def init_state(self, batch_size: int) -> S2STState: ...

    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]: ...


def make_runner(model: S2STModel, config: BackendConfig) -> Runner:
    """Wrap an in-memory model in the runner for `config.name`."""
    if config.name == "eager":
        from streamer.engine.eager import EagerRunner

        return EagerRunner(model, num_threads=config.num_threads)
    raise BackendUnavailableError(f"unknown backend {config.name!r}; choose one of {', '.join(BACKENDS)}")


def load_runner(path: Path, config: BackendConfig) -> Runner:
    from streamer.models.checkpoint import load_model

    return make_runner(load_model(path), config)
