"""torch.compile backend: the same `S2STModel.step`, compiled by TorchInductor, with a dynamic batch axis.
With `split`, its two halves (`listen`, `speak`) are compiled too, for the unit search between them.

Compiling is slow (tens of seconds per graph on a small CPU), so the runner compiles while it warms up,
before the first real chunk, and can persist what inductor built as one cache file
(`torch.compiler.save_cache_artifacts`) in the streamer cache, keyed by model fingerprint and settings.
A later start loads it and only re-traces (seconds). Batch sizes fall into separate graphs: inductor
specialises batch 1 and (on CPU) batches from 16 up, so the default warm-up covers 1, 2 and max_batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from streamer.engine.export import artifact_path, write_atomic
from streamer.models.checkpoint import model_fingerprint
from streamer.models.s2st import S2STModel, S2STState
from streamer.models.state import map_state

if TYPE_CHECKING:
    from streamer.engine import BackendConfig

log = logging.getLogger(__name__)

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledRunner:
    """Runs `torch.compile(model.step, dynamic=True)`; states live on the model's device.

    audio may come from the CPU; the returned audio and units are on the CPU (what the pipeline
    reads), the returned state stays on the model's device. `compile_seconds` is the warm-up time.
    mode "reduce-overhead" uses CUDA graphs on a GPU (outputs are then cloned, because a graph replay
    reuses its output buffers) and is the same as "default" on CPU.
    """

    name = "compile"

    def __init__(self, model: S2STModel, *, num_threads: int | None = None, mode: str = "default",
                 cache_dir: str | Path | None = None, warmup: Sequence[int] = (1,), split: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown torch.compile mode {mode!r}; choose one of {', '.join(MODES)}")
        if num_threads:
            torch.set_num_threads(num_threads)
        self.model = model.eval()
        self.config = model.cfg
        self.mode = mode
        self.split = split
        self.device = next(model.parameters()).device
        self._clone = mode == "reduce-overhead" and self.device.type == "cuda"
        self.cache_file = None if cache_dir is None else artifact_path(
            Path(cache_dir), model_fingerprint(model), "compile", self.settings(), ".bin")
        self.loaded_cache = self._load_cache()
        self._step = torch.compile(model.step, mode=mode, dynamic=True)
        self._listen = torch.compile(model.listen, mode=mode, dynamic=True)
        self._speak = torch.compile(model.speak, mode=mode, dynamic=True)
        self.compile_seconds = self.warmup(warmup)

    def settings(self) -> dict[str, str]:
        """Everything that changes what inductor builds (the cache key besides the fingerprint)."""
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"mode": self.mode, "torch": torch.__version__, "device": device,
                "graphs": "listen+speak" if self.split else "step"}

    def _load_cache(self) -> bool:
        if self.cache_file is None or not self.cache_file.is_file():
            return False
        try:
            torch.compiler.load_cache_artifacts(self.cache_file.read_bytes())
        except Exception as exc:  # a stale or foreign cache only costs a recompile
            log.warning("ignoring unreadable torch.compile cache %s: %s", self.cache_file, exc)
            return False
        log.info("loaded torch.compile cache %s", self.cache_file)
        return True

    def save_cache(self) -> Path:
        """Write what inductor compiled so far to the cache file; returns its path."""
        if self.cache_file is None:
            raise ValueError("this CompiledRunner has no cache_dir")
        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            raise RuntimeError("torch.compile produced no cache artifacts to save")
        data = saved[0]
        write_atomic(self.cache_file, lambda tmp: tmp.write_bytes(data))
        return self.cache_file

    def warmup(self, batch_sizes: Sequence[int]) -> float:
        """Compile (or re-trace) for each batch size by stepping it twice (split: its halves); returns the
        seconds spent."""
        start = time.perf_counter()
        for batch in sorted(set(batch_sizes)):
            state = self.init_state(batch)
            audio = torch.zeros(batch, self.config.chunk_samples)
            no_units = torch.full((batch, self.config.max_units), -1, dtype=torch.long)
            for _ in range(2):
                if self.split:
                    _, state = self.listen(audio, state)
                    _, state = self.speak(no_units, state)
                else:
                    _, _, state = self.step(audio, state)
        elapsed = time.perf_counter() - start
        if batch_sizes:
            log.info("torch.compile warm-up for batch %s took %.1f s", sorted(set(batch_sizes)), elapsed)
        return elapsed

    def init_state(self, batch_size: int) -> S2STState:
        return self.model.init_state(batch_size)

    @torch.inference_mode()
    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]:
        """audio (B, chunk_samples) -> (audio (B, chunk_samples), units (B, max_units) int64, state)."""
        self._check_audio(audio)
        out, units, new = self._run(self._step, audio, state)
        return out.cpu(), units.cpu(), new

    @torch.inference_mode()
    def listen(self, audio: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        """The hearing half: audio (B, chunk_samples) -> (CTC log-probs (B, max_units, num_units + 1), state)."""
        self._check_audio(audio)
        log_probs, new = self._run(self._listen, audio, state)
        return log_probs.cpu(), new

    @torch.inference_mode()
    def speak(self, units: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        """The voicing half: units (B, max_units) int64, -1 = none -> (audio (B, chunk_samples), state)."""
        out, new = self._run(self._speak, units, state)
        return out.cpu(), new

    def _check_audio(self, audio: Tensor) -> None:
        if audio.dim() != 2 or audio.shape[1] != self.config.chunk_samples:
            raise ValueError(f"audio must be (B, {self.config.chunk_samples}), got {tuple(audio.shape)}")

    def _run(self, graph: Callable[..., tuple], inputs: Tensor, state: S2STState) -> tuple:
        """One compiled call with its inputs on the model's device; a CUDA-graph replay's state is cloned."""
        if self.device.type != "cpu":
            inputs = inputs.to(self.device, non_blocking=True)
            state = map_state(lambda t: t.to(self.device, non_blocking=True), state)
        if self._clone:
            torch.compiler.cudagraph_mark_step_begin()
        *outputs, new = graph(inputs, state)
        if self._clone:
            new = map_state(torch.clone, new)
        return (*outputs, new)


def make_compiled_runner(model: S2STModel, config: BackendConfig, *, split: bool = False) -> CompiledRunner:
    """The runner `make_runner` builds: warm for batch 1, 2 and max_batch, cache in the streamer cache."""
    from streamer.engine.export import cache_root

    runner = CompiledRunner(model, num_threads=config.num_threads, cache_dir=cache_root(config),
                            warmup=(1, 2, config.max_batch), split=split)
    if not runner.loaded_cache:
        try:
            runner.save_cache()
        except (OSError, RuntimeError) as exc:
            log.warning("could not save the torch.compile cache: %s", exc)
    return runner
