"""TensorRT backend (NVIDIA GPUs): torch.export of the step graph -> torch_tensorrt.dynamo.compile.

The engines are built for a dynamic batch 1..max_batch (fp32, or fp16 through Torch-TensorRT's
rule-based autocast), saved to the streamer cache with `torch_tensorrt.save` (an ExportedProgram, .ep)
plus a JSON sidecar holding the model config, fingerprint and state layout, and reloaded with
`torch_tensorrt.load`, so a worker that finds the cache starts in seconds instead of minutes.

Optional: `pip install 'streamer[tensorrt]'` (torch-tensorrt pinned to the torch release). Without it,
or without CUDA, every entry point raises BackendUnavailableError.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from streamer.engine.export import (
    ARTIFACT_FORMAT_VERSION,
    ArtifactMetadata,
    StepGraph,
    artifact_path,
    build_init_state,
    cache_root,
    check_spec_matches,
    example_inputs,
    state_leaves,
    state_spec,
    state_template,
    write_atomic,
)
from streamer.errors import BackendUnavailableError, ModelError
from streamer.models.checkpoint import model_fingerprint
from streamer.models.s2st import S2STModel, S2STState
from streamer.models.state import unflatten_state

if TYPE_CHECKING:
    from streamer.engine import BackendConfig

log = logging.getLogger(__name__)

INSTALL_HINT = ("install with pip install 'streamer[tensorrt]' on a machine with an NVIDIA GPU, "
                "or use --backend onnx")


def tensorrt_available() -> bool:
    """True when torch_tensorrt is installed and a CUDA device is visible (does not import it)."""
    return importlib.util.find_spec("torch_tensorrt") is not None and torch.cuda.is_available()


def require_tensorrt() -> ModuleType:
    """Import torch_tensorrt, or raise BackendUnavailableError with the install hint."""
    try:
        import torch_tensorrt
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing
        raise BackendUnavailableError(f"the tensorrt backend needs torch-tensorrt ({exc}); {INSTALL_HINT}") from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError(f"the tensorrt backend needs a CUDA GPU and none is visible; {INSTALL_HINT}")
    return torch_tensorrt


def tensorrt_settings(config: BackendConfig, *, opt_batch: int) -> dict[str, Any]:
    """Everything an engine depends on besides the weights: precision, batch range, versions, GPU."""
    trt = require_tensorrt()
    import tensorrt

    major, minor = torch.cuda.get_device_capability()
    return {"format": ARTIFACT_FORMAT_VERSION, "fp16": config.fp16, "max_batch": config.max_batch,
            "opt_batch": opt_batch, "torch": torch.__version__, "torch_tensorrt": trt.__version__,
            "tensorrt": tensorrt.__version__, "gpu": torch.cuda.get_device_name(), "sm": f"{major}.{minor}"}


def build_tensorrt(model: S2STModel, path: str | Path, *, fp16: bool = False, max_batch: int = 64,
                   opt_batch: int | None = None) -> Path:
    """Compile the step graph with TensorRT for batch 1..max_batch and save it to `path` (+ `.json`).

    fp16 uses rule-based autocast (inputs, outputs and states stay float32; layers run in fp16 where
    the rules allow). Ops TensorRT cannot convert stay in PyTorch inside the same program.
    """
    trt = require_tensorrt()
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    opt = opt_batch or min(max_batch, 16)
    path = Path(path)
    device = torch.device("cuda")
    model = copy.deepcopy(model).eval().to(device)  # never move the caller's model
    spec = state_spec(model)
    graph = StepGraph(model).eval()
    args = tuple(a.to(device) for a in example_inputs(model, min(2, max_batch)))
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    # Keyed by tensor identity, so the same spec fits StepGraph (audio, *state) and the flat signature of the
    # TensorRT graph module that torch_tensorrt.save re-exports: one shared batch Dim for every input.
    shapes = torch.export.ShapesCollection()
    for a in args:
        shapes[a] = {0: batch}
    inputs = [trt.Input(min_shape=(1, *a.shape[1:]), opt_shape=(opt, *a.shape[1:]),
                        max_shape=(max_batch, *a.shape[1:]), dtype=a.dtype) for a in args]
    precision: dict[str, Any] = {"enable_autocast": True, "autocast_low_precision_type": torch.float16} if fp16 else {}
    start = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(graph, args, dynamic_shapes=shapes, strict=False)
        engine = trt.dynamo.compile(program, arg_inputs=inputs, min_block_size=1, **precision)
    log.info("TensorRT build (%s, batch 1..%d) took %.0f s", "fp16" if fp16 else "fp32", max_batch,
             time.perf_counter() - start)
    meta = ArtifactMetadata(model.cfg, model_fingerprint(model), ARTIFACT_FORMAT_VERSION, tuple(spec),
                        "torch.export+torch_tensorrt")
    sidecar = path.with_suffix(".json")
    info = {**meta.to_props(), "streamer.fp16": json.dumps(fp16), "streamer.max_batch": str(max_batch)}
    write_atomic(sidecar, lambda tmp: tmp.write_text(json.dumps(info, indent=1)))
    write_atomic(path, lambda tmp: trt.save(engine, str(tmp), output_format="exported_program",
                                            arg_inputs=list(args), dynamic_shapes=shapes, retrace=True))
    return path


def cached_tensorrt(model: S2STModel, config: BackendConfig, *, opt_batch: int | None = None) -> Path:
    """The cached engine program for `model` and `config` (fp16, max_batch), built on first use."""
    opt = opt_batch or min(config.max_batch, 16)
    path = artifact_path(cache_root(config), model_fingerprint(model), "tensorrt",
                         tensorrt_settings(config, opt_batch=opt), ".ep")
    if not path.is_file():
        log.info("no cached TensorRT engine at %s; building (minutes, once per GPU and setting)", path)
        build_tensorrt(model, path, fp16=config.fp16, max_batch=config.max_batch, opt_batch=opt)
    return path


class TensorRTRunner:
    """Runs a saved TensorRT step program on the GPU.

    audio may come from the CPU; returned audio and units are on the CPU (what the pipeline reads),
    the state stays on the GPU between steps. Batch sizes above the built max_batch are refused.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path) -> None:
        trt = require_tensorrt()
        self.path = Path(path)
        sidecar = self.path.with_suffix(".json")
        if not self.path.is_file() or not sidecar.is_file():
            raise ModelError(f"no TensorRT program at {self.path} (or its {sidecar.name}); build it with "
                             "streamer export --backend tensorrt")
        props = json.loads(sidecar.read_text())
        self.metadata = ArtifactMetadata.from_props(props, str(sidecar))
        self.config = self.metadata.config
        self.fingerprint = self.metadata.fingerprint
        self.fp16 = json.loads(props.get("streamer.fp16", "false"))
        self.max_batch = int(props["streamer.max_batch"])
        self._spec = self.metadata.state
        self._template = state_template(self.config)
        check_spec_matches(self._template, self._spec, str(sidecar))
        self.device = torch.device("cuda")
        start = time.perf_counter()
        self.module = trt.load(str(self.path)).module()
        log.info("loaded TensorRT program %s in %.1f s", self.path, time.perf_counter() - start)

    def init_state(self, batch_size: int) -> S2STState:
        return build_init_state(self._template, self._spec, batch_size, device=self.device)

    @torch.inference_mode()
    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]:
        """audio (B, chunk_samples) -> (audio (B, chunk_samples) CPU, units (B, max_units) CPU int64, state)."""
        if audio.dim() != 2 or audio.shape[1] != self.config.chunk_samples:
            raise ValueError(f"audio must be (B, {self.config.chunk_samples}), got {tuple(audio.shape)}")
        if audio.shape[0] > self.max_batch:
            raise ValueError(f"batch {audio.shape[0]} exceeds the max_batch {self.max_batch} this engine was "
                             "built for; rebuild with BackendConfig(max_batch=...)")
        args = [audio.to(self.device, torch.float32, non_blocking=True).contiguous()]
        args += [t.to(self.device, non_blocking=True).contiguous() for t in state_leaves(state)]
        outs = self.module(*args)
        return outs[0].cpu(), outs[1].cpu(), unflatten_state(self._template, list(outs[2:]))


def load_tensorrt_runner(model: S2STModel, config: BackendConfig) -> TensorRTRunner:
    """Build the engine into the cache if needed, then load it from the cache (the fast-start path)."""
    require_tensorrt()
    return TensorRTRunner(cached_tensorrt(model, config))
