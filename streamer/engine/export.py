"""Export the one step graph (`S2STModel.step`) to files a backend loads, and cache them.

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

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from streamer.errors import BackendUnavailableError, ModelError
from streamer.models.checkpoint import load_model, model_fingerprint
from streamer.models.s2st import S2STConfig, S2STModel, S2STState
from streamer.models.state import flatten_state, unflatten_state

if TYPE_CHECKING:
    from streamer.engine import BackendConfig

log = logging.getLogger(__name__)

ARTIFACT_FORMAT_VERSION = 1  # layout of exported graphs: input/output names, metadata keys
ONNX_OPSET = 18
AUDIO_IN, AUDIO_OUT, UNITS_OUT, NEW_PREFIX = "audio", "audio_out", "units", "new."
META_PREFIX = "streamer."


# --------------------------------------------------------------------------- the graph and its state


class StepGraph(nn.Module):
    """`S2STModel.step` as a flat-tensor module: forward(audio, *state) -> (audio_out, units, *new_state).

    Shapes: audio (B, chunk_samples) float32; state tensors in `flatten_state` order, batch on axis 0;
    audio_out (B, chunk_samples) float32; units (B, max_units) int64. No logic of its own: it only
    (un)flattens the NamedTuple state around the model's step.
    """

    def __init__(self, model: S2STModel) -> None:
        super().__init__()
        self.model = model
        self.template = model.init_state(1)

    def forward(self, audio: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, units, new = self.model.step(audio, unflatten_state(self.template, state))
        return (out, units, *state_leaves(new))


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


def state_spec(model: S2STModel) -> list[StateField]:
    """Describe `model.init_state`: every state tensor must start as one constant (zeros, blank, silence)."""
    fields = []
    for name, t in flatten_state(model.init_state(1)).items():
        values = t.detach().cpu().unique()
        if values.numel() != 1:
            raise ModelError(f"initial state {name!r} is not a constant fill; it cannot be described in metadata")
        fill = values.item()
        fields.append(StateField(name, tuple(t.shape[1:]), str(t.dtype).removeprefix("torch."), fill))
    return fields


def state_template(config: S2STConfig) -> S2STState:
    """The nested NamedTuple structure of a model's state (meta tensors: shapes and dtypes, no data)."""
    with torch.device("meta"):
        return S2STModel(config).init_state(1)


def build_init_state(template: S2STState, spec: Sequence[StateField], batch_size: int,
                     device: torch.device | str = "cpu") -> S2STState:
    """Fresh state for `batch_size` streams from a state spec (the loader never guesses shapes)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tensors = [torch.full((batch_size, *f.shape), f.fill, dtype=getattr(torch, f.dtype), device=device)
               for f in spec]
    return unflatten_state(template, tensors)


def check_spec_matches(template: S2STState, spec: Sequence[StateField], where: str) -> None:
    """Raise ModelError unless the spec's names, shapes and dtypes are the config's state."""
    expected = [(n, tuple(t.shape[1:]), str(t.dtype).removeprefix("torch."))
                for n, t in flatten_state(template).items()]
    got = [(f.name, f.shape, f.dtype) for f in spec]
    if expected != got:
        diff = [(e, g) for e, g in zip(expected, got, strict=False) if e != g][:3]
        raise ModelError(f"{where}: state layout does not match the model config "
                         f"({len(got)} fields vs {len(expected)} expected; first differences: {diff})")


def io_names(spec: Sequence[StateField]) -> tuple[list[str], list[str]]:
    """ONNX input and output names: `audio, <state...>` in; `audio_out, units, new.<state...>` out."""
    names = [f.name for f in spec]
    return [AUDIO_IN, *names], [AUDIO_OUT, UNITS_OUT, *(NEW_PREFIX + n for n in names)]


def example_inputs(model: S2STModel, batch_size: int, *, seed: int = 0) -> tuple[Tensor, ...]:
    """(audio, *state) for tracing/verification: random audio, and a state advanced by two steps
    so that caches, counts and the unit queue hold non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    state = model.init_state(batch_size)
    with torch.no_grad():  # not inference_mode: exporters cannot trace inference tensors
        for _ in range(2):
            audio = 0.3 * torch.randn(batch_size, model.cfg.chunk_samples, generator=g).to(device)
            _, _, state = model.step(audio, state)
    audio = 0.3 * torch.randn(batch_size, model.cfg.chunk_samples, generator=g).to(device)
    return (audio, *(t.clone() for t in state_leaves(state)))


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


# --------------------------------------------------------------------------- ONNX


@dataclass(frozen=True)
class ArtifactMetadata:
    """What an exported artifact says about itself (ONNX `metadata_props`, the TensorRT JSON sidecar)."""

    config: S2STConfig
    fingerprint: str
    format_version: int
    state: tuple[StateField, ...]
    exporter: str

    def to_props(self) -> dict[str, str]:
        return {
            META_PREFIX + "format_version": str(self.format_version),
            META_PREFIX + "config": json.dumps(self.config.to_dict(), sort_keys=True),
            META_PREFIX + "fingerprint": self.fingerprint,
            META_PREFIX + "state": json.dumps([f.to_dict() for f in self.state]),
            META_PREFIX + "exporter": self.exporter,
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
        return cls(config, props[META_PREFIX + "fingerprint"], version, state,
                   props.get(META_PREFIX + "exporter", "unknown"))


def read_onnx_metadata(path: str | Path) -> ArtifactMetadata:
    """Read the streamer metadata of an ONNX file (graph weights are not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return ArtifactMetadata.from_props({p.key: p.value for p in proto.metadata_props}, str(path))


def _require_onnx_export() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError("exporting to ONNX needs onnx and onnxscript: pip install 'streamer[onnx]'"
                                      ) from exc


def export_onnx(model: S2STModel, path: str | Path, *, exporter: str = "dynamo", verify: bool = True) -> Path:
    """Write `model.step` as one ONNX graph with a dynamic batch axis (every other axis static).

    exporter: "dynamo" (torch.export based, the default: static non-batch shapes) or "torchscript"
    (the legacy tracer: faster to export, but leaves some output axes symbolic). With `verify`, the
    written graph is run in ONNX Runtime at batch 1 and 2 and compared with eager (units exact,
    audio and state within 1e-4).
    """
    _require_onnx_export()
    import onnx

    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()  # export on the CPU; never move the caller's model
    model = model.eval()
    spec = state_spec(model)
    inputs, outputs = io_names(spec)
    graph = StepGraph(model).eval()
    args = example_inputs(model, 2)
    path = Path(path)
    meta = ArtifactMetadata(model.cfg, model_fingerprint(model), ARTIFACT_FORMAT_VERSION, tuple(spec), exporter)

    def write(tmp: Path) -> None:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Known noise: one shared batch Dim renamed; pytree LeafSpec deprecation inside torch.export.
            warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape")
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            if exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1)
                shapes = {"audio": {0: batch}, "state": tuple({0: batch} for _ in spec)}
                program = torch.onnx.export(graph, args, dynamo=True, input_names=inputs, output_names=outputs,
                                            dynamic_shapes=shapes, opset_version=ONNX_OPSET, verbose=False)
                proto = program.model_proto
            elif exporter == "torchscript":
                import io

                buf = io.BytesIO()
                torch.onnx.export(graph, args, buf, dynamo=False, input_names=inputs, output_names=outputs,
                                  dynamic_axes={n: {0: "batch"} for n in inputs + outputs},
                                  opset_version=ONNX_OPSET)
                proto = onnx.load_from_string(buf.getvalue())
            else:
                raise ValueError(f"unknown ONNX exporter {exporter!r}; use 'dynamo' or 'torchscript'")
        del proto.metadata_props[:]
        for key, value in meta.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        if verify:
            verify_onnx(model, tmp)

    write_atomic(path, write)
    log.info("exported %s (%s exporter, %.1f MB)", path, exporter, path.stat().st_size / 1e6)
    return path


def verify_onnx(model: S2STModel, path: str | Path, *, atol: float = 1e-4) -> None:
    """Run the ONNX graph against eager for two chained steps at batch 1 and 2; raise ModelError on mismatch."""
    from streamer.engine.onnx import OnnxRunner

    runner = OnnxRunner(path, num_threads=1)
    for batch in (1, 2):
        audio, *flat = example_inputs(model, batch, seed=batch)
        state = unflatten_state(model.init_state(batch), flat)
        ref_state, got_state = state, state
        for _ in range(2):
            with torch.inference_mode():
                ref_audio, ref_units, ref_state = model.step(audio, ref_state)
            got_audio, got_units, got_state = runner.step(audio, got_state)
            if not torch.equal(ref_units, got_units):
                raise ModelError(f"{path}: ONNX units differ from eager at batch {batch}")
            err = max((a.float() - b.float()).abs().max().item() for a, b in
                      zip([ref_audio, *state_leaves(ref_state)], [got_audio, *state_leaves(got_state)],
                          strict=True))
            if err > atol:
                raise ModelError(f"{path}: ONNX output differs from eager by {err:.2e} > {atol} at batch {batch}")


def onnx_settings(exporter: str) -> dict[str, Any]:
    return {"format": ARTIFACT_FORMAT_VERSION, "exporter": exporter, "opset": ONNX_OPSET,
            "torch": torch.__version__}


def cached_onnx(model: S2STModel, config: BackendConfig, *, exporter: str = "dynamo") -> Path:
    """The cached ONNX graph for `model`, exported on first use."""
    path = artifact_path(cache_root(config), model_fingerprint(model), "onnx", onnx_settings(exporter), ".onnx")
    if not path.is_file():
        log.info("no cached ONNX graph at %s; exporting (takes a while once)", path)
        export_onnx(model, path, exporter=exporter)
    return path


# --------------------------------------------------------------------------- public entry


def resolve_model(model_or_dir: S2STModel | str | Path) -> S2STModel:
    """An in-memory model as is, or a model folder / .safetensors file loaded with its config."""
    if isinstance(model_or_dir, S2STModel):
        return model_or_dir.eval()
    return load_model(model_or_dir)


def export_model(model_or_dir: S2STModel | str | Path, config: BackendConfig) -> Path:
    """Build (or find in the cache) the artifact `config.name` runs, and return its path.

    onnx -> the .onnx graph; tensorrt -> the serialized engine program (.ep, needs an NVIDIA GPU);
    compile -> torch.compile cache artifacts after a warm-up at batch 1, 2 and `config.max_batch`.
    """
    model = resolve_model(model_or_dir)
    if config.name == "onnx":
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


__all__ = ["StepGraph", "StateField", "ArtifactMetadata", "export_model", "export_onnx", "cached_onnx",
           "read_onnx_metadata", "verify_onnx", "state_spec", "state_template", "build_init_state",
           "cache_root", "artifact_path"]
