"""Export step graphs to ONNX (with a dynamic batch axis), verify them against eager, and cache them.

`cached_onnx(model, config, graph=...)` is what the ONNX runner loads: the graph exported once per model
fingerprint and setting into the artifact cache (see `streamer.engine.export`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from streamer.engine.export import (
    ARTIFACT_FORMAT_VERSION,
    ONNX_OPSET,
    ArtifactMetadata,
    StepGraph,
    artifact_path,
    cache_root,
    example_inputs,
    graph_leaves,
    io_names,
    state_spec,
    with_graph_leaves,
    write_atomic,
)
from streamer.errors import BackendUnavailableError, ModelError
from streamer.models.checkpoint import model_fingerprint
from streamer.models.s2st import S2STModel, S2STState

if TYPE_CHECKING:
    from streamer.engine import BackendConfig

log = logging.getLogger(__name__)


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


def export_onnx(model: S2STModel, path: str | Path, *, exporter: str = "dynamo", verify: bool = True,
                graph: str = "step") -> Path:
    """Write a step graph of `model` (`graph`: step, listen or speak; see StepGraph) as one ONNX graph with a
    dynamic batch axis (every other axis static).

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
    spec = state_spec(model, graph)
    inputs, outputs = io_names(spec, graph)
    module = StepGraph(model, graph).eval()
    args = example_inputs(model, 2, graph=graph)
    path = Path(path)
    meta = ArtifactMetadata(model.cfg, model_fingerprint(model), ARTIFACT_FORMAT_VERSION, tuple(spec), exporter,
                            graph)

    def write(tmp: Path) -> None:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Known noise: one shared batch Dim renamed; pytree LeafSpec deprecation inside torch.export.
            warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape")
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            if exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1)
                shapes = {"first": {0: batch}, "state": tuple({0: batch} for _ in spec)}
                program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                            dynamic_shapes=shapes, opset_version=ONNX_OPSET, verbose=False)
                proto = program.model_proto
            elif exporter == "torchscript":
                import io

                buf = io.BytesIO()
                torch.onnx.export(module, args, buf, dynamo=False, input_names=inputs, output_names=outputs,
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
            verify_onnx(model, tmp, graph=graph)

    write_atomic(path, write)
    log.info("exported %s (%s exporter, %.1f MB)", path, exporter, path.stat().st_size / 1e6)
    return path


def verify_onnx(model: S2STModel, path: str | Path, *, atol: float = 1e-4, graph: str = "step") -> None:
    """Run the ONNX graph against eager for two chained steps at batch 1 and 2; raise ModelError on mismatch."""
    from streamer.engine.onnx import OnnxRunner

    runner = OnnxRunner(path, num_threads=1)
    for batch in (1, 2):
        first, *flat = example_inputs(model, batch, seed=batch, graph=graph)
        state = with_graph_leaves(model.init_state(batch), graph, flat)
        ref_state, got_state = state, state
        for _ in range(2):
            with torch.inference_mode():
                ref = _run_eager(model, graph, first, ref_state)
            got = runner.run(first, got_state)
            ref_state, got_state = ref[-1], got[-1]
            if graph == "step" and not torch.equal(ref[1], got[1]):
                raise ModelError(f"{path}: ONNX units differ from eager at batch {batch}")
            err = max((a.float() - b.float()).abs().max().item() for a, b in
                      zip([ref[0], *graph_leaves(ref_state, graph)], [got[0], *graph_leaves(got_state, graph)],
                          strict=True))
            if err > atol:
                raise ModelError(f"{path}: ONNX output differs from eager by {err:.2e} > {atol} at batch {batch}")


def _run_eager(model: S2STModel, graph: str, first: Tensor, state: S2STState) -> tuple:
    return {"step": model.step, "listen": model.listen, "speak": model.speak}[graph](first, state)


def onnx_settings(exporter: str, graph: str = "step") -> dict[str, Any]:
    settings = {"format": ARTIFACT_FORMAT_VERSION, "exporter": exporter, "opset": ONNX_OPSET,
                "torch": torch.__version__}
    return settings if graph == "step" else {**settings, "graph": graph}  # step keeps its cache key


def cached_onnx(model: S2STModel, config: BackendConfig, *, exporter: str = "dynamo", graph: str = "step") -> Path:
    """The cached ONNX graph for `model`, exported on first use."""
    path = artifact_path(cache_root(config), model_fingerprint(model), "onnx", onnx_settings(exporter, graph),
                         ".onnx")
    if not path.is_file():
        log.info("no cached ONNX %s graph at %s; exporting (takes a while once)", graph, path)
        export_onnx(model, path, exporter=exporter, graph=graph)
    return path
