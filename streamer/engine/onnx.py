"""ONNX Runtime backend: the exported step graph on CPU (the default fast path).

The graph, its model config and its state layout come from one .onnx file (`metadata_props`); the
runner never builds the PyTorch model and never guesses a shape. Plain `session.run` is used: on CPU
it measured as fast as IO binding (binding was slower at batch 8), and numpy <-> torch conversions
are zero-copy, so states cross the Runner protocol as torch tensors at no cost.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from streamer.engine.export import (
    AUDIO_IN,
    AUDIO_OUT,
    LOG_PROBS_OUT,
    NEW_PREFIX,
    UNITS_IN,
    UNITS_OUT,
    ArtifactMetadata,
    build_init_state,
    check_spec_matches,
    graph_leaves,
    io_names,
    state_template,
    with_graph_leaves,
)
from streamer.errors import BackendUnavailableError, ModelError
from streamer.models.decoder import ctc_emit
from streamer.models.s2st import S2STState

if TYPE_CHECKING:
    from streamer.engine import BackendConfig
    from streamer.models.s2st import S2STModel

log = logging.getLogger(__name__)

_ONNX_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}


def _require_ort() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError("the onnx backend needs onnxruntime: pip install 'streamer[onnx]'") from exc
    return onnxruntime


def onnx_available() -> bool:
    """True when onnxruntime (to run) and onnx + onnxscript (to export) are installed; imports nothing."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def _numpy(t: Tensor) -> np.ndarray:
    """A CPU, C-contiguous numpy view of `t` (a copy only when it is on another device or strided)."""
    return np.ascontiguousarray(t.detach().cpu().numpy())


class OnnxRunner:
    """Runs an exported step graph in ONNX Runtime (CPU execution provider).

    Session: `num_threads` intra-op threads (default 1), one inter-op thread, sequential execution,
    all graph optimisations. init_state/step follow the Runner protocol: torch tensors in and out,
    states as the same S2STState NamedTuple the eager model uses.
    """

    name = "onnx"

    def __init__(self, path: str | Path, *, num_threads: int | None = None) -> None:
        ort = _require_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"no ONNX graph at {self.path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads or 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it: {exc}") from exc
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = ArtifactMetadata.from_props(props, str(self.path))
        self.config = self.metadata.config
        self.fingerprint = self.metadata.fingerprint
        self.graph = self.metadata.graph
        self._spec = self.metadata.state
        self._template = state_template(self.config)
        check_spec_matches(self._template, self._spec, str(self.path), self.graph)
        self._inputs, self._outputs = io_names(self._spec, self.graph)
        self._check_graph()

    def _check_graph(self) -> None:
        """The graph's declared inputs/outputs must be exactly what the metadata describes."""
        cfg = self.config
        audio, units = ((cfg.chunk_samples,), "float32"), ((cfg.max_units,), "int64")
        want_in = {AUDIO_IN: audio, UNITS_IN: units, **{f.name: (f.shape, f.dtype) for f in self._spec}}
        want_out = {AUDIO_OUT: audio, UNITS_OUT: units,
                    LOG_PROBS_OUT: ((cfg.max_units, cfg.decoder.num_units + 1), "float32"),
                    **{NEW_PREFIX + f.name: (f.shape, f.dtype) for f in self._spec}}
        for kind, args, want in (("input", self.session.get_inputs(), want_in),
                                 ("output", self.session.get_outputs(), want_out)):
            names = [a.name for a in args]
            expected = self._inputs if kind == "input" else self._outputs
            if names != expected:
                raise ModelError(f"{self.path}: graph {kind}s {names[:4]}... are not {expected[:4]}...")
            for a in args:
                shape, dtype = want[a.name]
                static = tuple(a.shape[1:])
                if _ONNX_TYPES.get(a.type) != dtype or (all(isinstance(d, int) for d in static) and static != shape):
                    raise ModelError(f"{self.path}: {kind} {a.name!r} is {a.type} {a.shape}, "
                                     f"metadata says {dtype} (B, {', '.join(map(str, shape))})")

    def init_state(self, batch_size: int) -> S2STState:
        """Fresh state for `batch_size` streams, built from the graph's state metadata (a step graph's)."""
        if self.graph != "step":
            raise ModelError(f"{self.path}: a {self.graph} graph holds part of the state; use OnnxSplitRunner")
        return build_init_state(self._template, self._spec, batch_size)

    def run(self, first: Tensor, state: S2STState) -> tuple:
        """Run the graph: (its outputs..., `state` with the graph's parts replaced)."""
        dtype = torch.int64 if self.graph == "speak" else torch.float32
        feeds = {self._inputs[0]: _numpy(first.to(dtype))}
        for name, t in zip(self._inputs[1:], graph_leaves(state, self.graph), strict=True):
            feeds[name] = _numpy(t)
        tensors = [torch.from_numpy(o) for o in self.session.run(self._outputs, feeds)]
        outs = 2 if self.graph == "step" else 1
        return (*tensors[:outs], with_graph_leaves(state, self.graph, tensors[outs:]))

    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]:
        """audio (B, chunk_samples) float32 -> (audio (B, chunk_samples), units (B, max_units) int64, state)."""
        if self.graph != "step":
            raise ModelError(f"{self.path} is a {self.graph} graph, not the whole step")
        _check_audio(audio, self.config.chunk_samples)
        return self.run(audio, state)


class OnnxSplitRunner:
    """The listen and speak graphs, for a unit search on the host between them (pipeline `decoding="lm"`).

    `step` runs listen, greedy CTC and speak: the same as the whole step graph, so this runner is a full
    Runner as well.
    """

    name = "onnx"

    def __init__(self, listen: str | Path, speak: str | Path, *, num_threads: int | None = None) -> None:
        self.listener = OnnxRunner(listen, num_threads=num_threads)
        self.speaker = OnnxRunner(speak, num_threads=num_threads)
        if (self.listener.graph, self.speaker.graph) != ("listen", "speak"):
            raise ModelError(f"{listen} and {speak} are {self.listener.graph} and {self.speaker.graph} graphs, "
                             "not listen and speak")
        if self.listener.fingerprint != self.speaker.fingerprint:
            raise ModelError(f"{listen} and {speak} were exported from different models")
        self.config, self.fingerprint = self.listener.config, self.listener.fingerprint
        self._spec = (*self.listener._spec, *self.speaker._spec)
        self._template = self.listener._template
        check_spec_matches(self._template, self._spec, f"{listen} + {speak}")

    def init_state(self, batch_size: int) -> S2STState:
        return build_init_state(self._template, self._spec, batch_size)

    def listen(self, audio: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        _check_audio(audio, self.config.chunk_samples)
        return self.listener.run(audio, state)

    def speak(self, units: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        return self.speaker.run(units, state)

    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]:
        log_probs, state = self.listen(audio, state)
        units, last = ctc_emit(log_probs.argmax(-1), state.decoder.last_token, self.config.decoder.blank)
        state = state._replace(decoder=state.decoder._replace(last_token=last))
        out, state = self.speak(units, state)
        return out, units, state


def _check_audio(audio: Tensor, chunk_samples: int) -> None:
    if audio.dim() != 2 or audio.shape[1] != chunk_samples:
        raise ValueError(f"audio must be (B, {chunk_samples}), got {tuple(audio.shape)}")


def load_onnx_runner(model: S2STModel, config: BackendConfig, *, split: bool = False
                     ) -> OnnxRunner | OnnxSplitRunner:
    """Export `model` to the cache if needed, then open the cached graph (split: the listen and speak graphs)."""
    from streamer.engine.onnx_export import cached_onnx

    _require_ort()
    if split:
        return OnnxSplitRunner(cached_onnx(model, config, graph="listen"), cached_onnx(model, config, graph="speak"),
                               num_threads=config.num_threads)
    return OnnxRunner(cached_onnx(model, config), num_threads=config.num_threads)
