"""Export the step graph (`S2STModel.step`, or its listen / speak halves) to files a backend loads, and cache
them. The ONNX exporter itself is `streamer.engine.onnx_export`.

Artifacts live under `BackendConfig.cache_dir` (default `$STREAMER_CACHE` or `~/.cache/streamer`), keyed by
the model fingerprint (config + weights) and every setting that changes the file::

    ~/.cache/streamer/<fingerprint>/onnx-<key>.onnx       ONNX graph, config in metadata_props
    ~/.cache/streamer/<fingerprint>/tensorrt-<key>.ep     TensorRT engines in an ExportedProgram
    ~/.cache/streamer/<fingerprint>/compile-<key>.bin     torch.compile (inductor) cache artifacts

Files are written to a temporary name and renamed into place, so workers that start together never read
a half-written artifact. `export_model(model_or_dir, BackendConfig(name=...)) -> Path` is the public entry
(`streamer export`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from streamer.errors import BackendUnavailableError, ModelError
from streamer.models.checkpoint import load_model
from streamer.models.s2st import S2STConfig, S2STModel, S2STState
from streamer.models.state import flatten_state, map_state, unflatten_state

if TYPE_CHECKING:
    from streamer.engine import BackendConfig

log = logging.getLogger(__name__)

ARTIFACT_FORMAT_VERSION = 1  # layout of exported graphs: input/output names, metadata keys
ONNX_OPSET = 18
AUDIO_IN, AUDIO_OUT, UNITS_OUT, NEW_PREFIX = "audio", "audio_out", "units", "new."
UNITS_IN, LOG_PROBS_OUT = "units_in", "log_probs"
META_PREFIX = "streamer."
# The graphs a model exports: the whole step, or its two halves for a unit search on the host between them
# (listen: audio -> CTC log-probabilities; speak: units -> audio). Each carries only its own state parts.
GRAPH_PARTS = {"step": ("encoder", "decoder", "queue", "vocoder"), "listen": ("encoder", "decoder"),
               "speak": ("queue", "vocoder")}


# --------------------------------------------------------------------------- the graph and its state


class StepGraph(nn.Module):
    """A step graph of `S2STModel` as a flat-tensor module. graph="step": forward(audio, *state) ->
    (audio_out, units, *new_state); "listen": (audio, *state) -> (log_probs, *new_state); "speak":
    (units_in, *state) -> (audio_out, *new_state).

    Shapes: audio (B, chunk_samples) float32; units (B, max_units) int64 (-1 = none); log_probs
    (B, max_units, num_units + 1) float32; state tensors in `flatten_state` order of the graph's parts
    (GRAPH_PARTS), batch on axis 0. No logic of its own: it only (un)flattens the state around the model.
    """

    def __init__(self, model: S2STModel, graph: str = "step") -> None:
        super().__init__()
        check_graph_name(graph)
        self.model, self.graph = model, graph
        self.template = model.init_state(1)

    def forward(self, first: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        full = with_graph_leaves(self.template, self.graph, state)  # the other parts go unread
        if self.graph == "step":
            out, units, new = self.model.step(first, full)
            outs: tuple[Tensor, ...] = (out, units)
        elif self.graph == "listen":
            log_probs, new = self.model.listen(first, full)
            outs = (log_probs,)
        else:
            audio, new = self.model.speak(first, full)
            outs = (audio,)
        return (*outs, *graph_leaves(new, self.graph))


def check_graph_name(graph: str) -> None:
    if graph not in GRAPH_PARTS:
        raise ValueError(f"unknown step graph {graph!r}; choose one of {', '.join(GRAPH_PARTS)}")


def graph_leaves(state: S2STState, graph: str) -> list[Tensor]:
    """The state tensors a graph carries, in its input order."""
    return [t for part in GRAPH_PARTS[graph] for t in state_leaves(getattr(state, part))]


def with_graph_leaves(state: S2STState, graph: str, tensors: Sequence[Tensor]) -> S2STState:
    """`state` with the graph's parts replaced by `tensors` (in `graph_leaves` order)."""
    it = iter(tensors)
    return state._replace(**{part: map_state(lambda _t: next(it), getattr(state, part)) for part in GRAPH_PARTS[graph]})


def state_leaves(state: Any) -> Iterator[Tensor]:
    """The tensors of a nested NamedTuple state, in `flatten_state` order (no names built)."""
    if isinstance(state, Tensor):
        yield state
        return
    for field in state:
        yield from state_leaves(field)


@dataclass(frozen=True)
class StateField:
    """One state tensor: its dotted name, shape without the batch axis, dtype name and initial fill value."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    fill: float | int

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "fill": self.fill}

    @classmethod
    def from_dict(cls, d: dict) -> StateField:
        return cls(str(d["name"]), tuple(int(s) for s in d["shape"]), str(d["dtype"]), d["fill"])


def state_spec(model: S2STModel, graph: str = "step") -> list[StateField]:
    """Describe the graph's part of `model.init_state`: every state tensor must start as one constant."""
    fields = []
    for name, t in _graph_state(model.init_state(1), graph).items():
        values = t.detach().cpu().unique()
        if values.numel() != 1:
            raise ModelError(f"initial state {name!r} is not a constant fill; it cannot be described in metadata")
        fill = values.item()
        fields.append(StateField(name, tuple(t.shape[1:]), str(t.dtype).removeprefix("torch."), fill))
    return fields


def _graph_state(state: S2STState, graph: str) -> dict[str, Tensor]:
    check_graph_name(graph)
    return {n: t for n, t in flatten_state(state).items() if n.split(".")[0] in GRAPH_PARTS[graph]}


def state_template(config: S2STConfig) -> S2STState:
    """The nested NamedTuple structure of a model's state (meta tensors: shapes and dtypes, no data)."""
    with torch.device("meta"):
        return S2STModel(config).init_state(1)


def build_init_state(template: S2STState, spec: Sequence[StateField], batch_size: int,
                     device: torch.device | str = "cpu") -> S2STState:
    """Fresh state for `batch_size` streams from a (whole-step) state spec (the loader never guesses shapes)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tensors = [torch.full((batch_size, *f.shape), f.fill, dtype=getattr(torch, f.dtype), device=device)
               for f in spec]
    return unflatten_state(template, tensors)


def check_spec_matches(template: S2STState, spec: Sequence[StateField], where: str, graph: str = "step") -> None:
    """Raise ModelError unless the spec's names, shapes and dtypes are the config's state (the graph's part)."""
    expected = [(n, tuple(t.shape[1:]), str(t.dtype).removeprefix("torch."))
                for n, t in _graph_state(template, graph).items()]
    got = [(f.name, f.shape, f.dtype) for f in spec]
    if expected != got:
        diff = [(e, g) for e, g in zip(expected, got, strict=False) if e != g][:3]
        raise ModelError(f"{where}: state layout does not match the model config "
                         f"({len(got)} fields vs {len(expected)} expected; first differences: {diff})")


def io_names(spec: Sequence[StateField], graph: str = "step") -> tuple[list[str], list[str]]:
    """ONNX input and output names. step: `audio, <state...>` in, `audio_out, units, new.<state...>` out;
    listen: `audio, <state...>` in, `log_probs, new.<state...>` out; speak: `units_in, <state...>` in,
    `audio_out, new.<state...>` out."""
    names = [f.name for f in spec]
    first, outs = {"step": (AUDIO_IN, [AUDIO_OUT, UNITS_OUT]), "listen": (AUDIO_IN, [LOG_PROBS_OUT]),
                   "speak": (UNITS_IN, [AUDIO_OUT])}[graph]
    return [first, *names], [*outs, *(NEW_PREFIX + n for n in names)]


def example_inputs(model: S2STModel, batch_size: int, *, seed: int = 0, graph: str = "step") -> tuple[Tensor, ...]:
    """(first input, *state) for tracing/verification: random audio (speak: random units, some none), and
    a state advanced by two steps so that caches, counts and the unit queue hold non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    state = model.init_state(batch_size)
    with torch.no_grad():  # not inference_mode: exporters cannot trace inference tensors
        for _ in range(2):
            audio = 0.3 * torch.randn(batch_size, model.cfg.chunk_samples, generator=g).to(device)
            _, _, state = model.step(audio, state)
    if graph == "speak":
        first = torch.randint(-1, model.cfg.decoder.num_units, (batch_size, model.cfg.max_units), generator=g)
    else:
        first = 0.3 * torch.randn(batch_size, model.cfg.chunk_samples, generator=g)
    return (first.to(device), *(t.clone() for t in graph_leaves(state, graph)))


# --------------------------------------------------------------------------- the cache


def cache_root(config: BackendConfig | None = None) -> Path:
    """Where artifacts go: BackendConfig.cache_dir, else $STREAMER_CACHE, else ~/.cache/streamer."""
    if config is not None and config.cache_dir:
        return Path(config.cache_dir).expanduser()
    return Path(os.environ.get("STREAMER_CACHE", "~/.cache/streamer")).expanduser()


def artifact_path(root: Path, fingerprint: str, backend: str, settings: dict[str, Any], suffix: str) -> Path:
    """`root/<fingerprint>/<backend>-<hash of settings><suffix>`; settings hold every input of the build."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return root / fingerprint / f"{backend}-{key}{suffix}"


def write_atomic(path: Path, write: Any) -> Path:
    """Call `write(tmp_path)`, then rename the temporary file onto `path` (same directory, atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------------- artifact metadata


@dataclass(frozen=True)
class ArtifactMetadata:
    """What an exported artifact says about itself (ONNX `metadata_props`, the TensorRT JSON sidecar)."""

    config: S2STConfig
    fingerprint: str
    format_version: int
    state: tuple[StateField, ...]
    exporter: str
    graph: str = "step"  # which graph (GRAPH_PARTS); files written before the split say nothing: "step"

    def to_props(self) -> dict[str, str]:
        return {
            META_PREFIX + "format_version": str(self.format_version),
            META_PREFIX + "config": json.dumps(self.config.to_dict(), sort_keys=True),
            META_PREFIX + "fingerprint": self.fingerprint,
            META_PREFIX + "state": json.dumps([f.to_dict() for f in self.state]),
            META_PREFIX + "exporter": self.exporter,
            META_PREFIX + "graph": self.graph,
        }

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> ArtifactMetadata:
        """Parse metadata_props; raise ModelError when a key is missing or the version is unknown."""
        missing = [k for k in ("format_version", "config", "fingerprint", "state") if META_PREFIX + k not in props]
        if missing:
            raise ModelError(f"{where}: not a streamer ONNX graph (metadata lacks {missing})")
        version = int(props[META_PREFIX + "format_version"])
        if version != ARTIFACT_FORMAT_VERSION:
            raise ModelError(f"{where}: artifact format_version {version} is not supported "
                             f"(expected {ARTIFACT_FORMAT_VERSION}); export it again")
        try:
            config = S2STConfig.from_dict(json.loads(props[META_PREFIX + "config"]))
            state = tuple(StateField.from_dict(d) for d in json.loads(props[META_PREFIX + "state"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: bad metadata: {exc}") from exc
        graph = props.get(META_PREFIX + "graph", "step")
        if graph not in GRAPH_PARTS:
            raise ModelError(f"{where}: unknown graph {graph!r} in metadata")
        return cls(config, props[META_PREFIX + "fingerprint"], version, state,
                   props.get(META_PREFIX + "exporter", "unknown"), graph)


# --------------------------------------------------------------------------- public entry


def resolve_model(model_or_dir: S2STModel | str | Path) -> S2STModel:
    """An in-memory model as is, or a model folder / .safetensors file loaded with its config."""
    if isinstance(model_or_dir, S2STModel):
        return model_or_dir.eval()
    return load_model(model_or_dir)


def export_model(model_or_dir: S2STModel | str | Path, config: BackendConfig) -> Path:
    """Build (or find in the cache) the artifact `config.name` runs, and return its path.

    onnx -> the .onnx step graph (and, for a model folder with a unit LM, the listen and speak graphs its
    LM search runs); tensorrt -> the serialized engine program (.ep, needs an NVIDIA GPU); compile ->
    torch.compile cache artifacts after a warm-up at batch 1, 2 and `config.max_batch`.
    """
    from streamer.models.unit_lm import LM_NAME

    model = resolve_model(model_or_dir)
    if config.name == "onnx":
        from streamer.engine.onnx_export import cached_onnx

        if not isinstance(model_or_dir, S2STModel) and (Path(model_or_dir) / LM_NAME).is_file():
            for half in ("listen", "speak"):
                log.info("exported %s", cached_onnx(model, config, graph=half))
        return cached_onnx(model, config)
    if config.name == "tensorrt":
        from streamer.engine.tensorrt import cached_tensorrt

        return cached_tensorrt(model, config)
    if config.name == "compile":
        from streamer.engine.compiled import CompiledRunner

        runner = CompiledRunner(model, num_threads=config.num_threads, cache_dir=cache_root(config),
                                warmup=(1, 2, config.max_batch))
        return runner.save_cache()
    raise BackendUnavailableError(f"backend {config.name!r} has nothing to export; "
                                  "choose onnx, tensorrt or compile")


__all__ = ["StepGraph", "StateField", "ArtifactMetadata", "export_model", "state_spec", "state_template",
           "build_init_state",
           "cache_root", "artifact_path"]
