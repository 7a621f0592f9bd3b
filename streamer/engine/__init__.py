"""Backends: ways to run the same step graph. `load_runner(path, BackendConfig(name=...))`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torch import Tensor

from streamer.errors import BackendUnavailableError
from streamer.models.s2st import S2STConfig, S2STModel, S2STState

BACKENDS = ("eager", "compile", "onnx", "tensorrt")
SPLIT_BACKENDS = ("eager", "compile", "onnx")  # the backends that also run the step's two halves (listen, speak)


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


def available_backends() -> list[str]:
    """Backends usable on this machine, best first: tensorrt (NVIDIA GPU + torch-tensorrt), onnx
    (onnxruntime installed: the CPU default), compile (torch.compile with a C++ compiler or a GPU), eager."""
    import shutil

    import torch

    from streamer.engine.onnx import onnx_available
    from streamer.engine.tensorrt import tensorrt_available

    names = []
    if tensorrt_available():
        names.append("tensorrt")
    if onnx_available():
        names.append("onnx")
    if torch.cuda.is_available() or any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        names.append("compile")
    return [*names, "eager"]


def make_runner(model: S2STModel, config: BackendConfig, *, split: bool = False) -> Runner:
    """Wrap an in-memory model in the runner for `config.name`.

    onnx and tensorrt export the model into the artifact cache on first use (keyed by its
    fingerprint) and load it from there; compile warms up for batch 1, 2 and max_batch. `split`: a runner
    that also has `listen` and `speak` (the halves of the step, for a unit search on the host between them):
    eager, compile and onnx.
    """
    if split and config.name not in SPLIT_BACKENDS:
        raise BackendUnavailableError(f"the {config.name} backend runs greedy decoding only; the unit LM search "
                                      f"needs {' or '.join(SPLIT_BACKENDS)} (or decoding='greedy')")
    if config.name == "eager":
        from streamer.engine.eager import EagerRunner

        return EagerRunner(model, num_threads=config.num_threads)
    if config.name == "onnx":
        from streamer.engine.onnx import load_onnx_runner

        return load_onnx_runner(model, config, split=split)
    if config.name == "compile":
        from streamer.engine.compiled import make_compiled_runner

        return make_compiled_runner(model, config, split=split)
    if config.name == "tensorrt":
        from streamer.engine.tensorrt import load_tensorrt_runner

        return load_tensorrt_runner(model, config)
    raise BackendUnavailableError(f"unknown backend {config.name!r}; choose one of {', '.join(BACKENDS)}")


def load_runner(path: Path, config: BackendConfig, *, split: bool = False) -> Runner:
    from streamer.models.checkpoint import load_model

    return make_runner(load_model(path), config, split=split)
