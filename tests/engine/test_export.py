"""Exported artifacts: ONNX metadata round trip, the fingerprint-keyed cache, and loader checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from streamer.engine import BACKENDS, BackendConfig, Runner, available_backends, make_runner
from streamer.engine.export import ARTIFACT_FORMAT_VERSION, cache_root, export_model, state_spec
from streamer.engine.onnx_export import cached_onnx, read_onnx_metadata
from streamer.errors import BackendUnavailableError, ModelError
from streamer.models.checkpoint import model_fingerprint
from streamer.models.presets import tiny_model
from streamer.models.s2st import S2STModel
from streamer.models.state import flatten_state


@pytest.fixture(scope="module")
def onnx_path(tiny: S2STModel, engine_cache: Path, runner_for: Callable[[str], Runner]) -> Path:
    runner_for("onnx")  # skips when onnxruntime is missing; exports into engine_cache once
    return cached_onnx(tiny, BackendConfig(name="onnx", cache_dir=str(engine_cache)))


def test_available_backends_order() -> None:
    names = available_backends()
    assert names[-1] == "eager" and set(names) <= set(BACKENDS)
    if "onnx" in names:  # the CPU default comes before compile and eager
        assert names.index("onnx") < names.index("eager")
        assert "compile" not in names or names.index("onnx") < names.index("compile")


def test_onnx_metadata_round_trip(tiny: S2STModel, onnx_path: Path) -> None:
    import onnx

    meta = read_onnx_metadata(onnx_path)
    assert meta.config == tiny.cfg
    assert meta.fingerprint == model_fingerprint(tiny)
    assert meta.format_version == ARTIFACT_FORMAT_VERSION
    assert meta.exporter == "dynamo"
    assert list(meta.state) == state_spec(tiny)
    names = list(flatten_state(tiny.init_state(1)))
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["audio", *names]
    assert [o.name for o in graph.output] == ["audio_out", "units", *(f"new.{n}" for n in names)]
    for value in [*graph.input, *graph.output]:  # only the batch axis is dynamic
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].HasField("dim_value"), value.name
        assert all(d.HasField("dim_value") for d in dims[1:]), f"{value.name} has a dynamic non-batch axis"


def test_onnx_cache_reload_is_identical(tiny: S2STModel, engine_cache: Path, onnx_path: Path,
                                        runner_for: Callable[[str], Runner], step_together) -> None:
    first = runner_for("onnx")
    mtime = onnx_path.stat().st_mtime_ns
    again = make_runner(tiny, BackendConfig(name="onnx", num_threads=1, cache_dir=str(engine_cache)))
    assert onnx_path.stat().st_mtime_ns == mtime, "a cached graph must not be exported again"
    assert again.path == onnx_path and onnx_path.parent.name == model_fingerprint(tiny)
    for (a1, u1), (a2, u2) in step_together(first, again, 4):
        assert torch.equal(a1, a2) and torch.equal(u1, u2)  # same file, same runtime: bit-identical


def test_cache_key_follows_weights(engine_cache: Path, onnx_path: Path) -> None:
    other = tiny_model(seed=1)
    assert model_fingerprint(other) != onnx_path.parent.name
    # A different model never resolves to the cached graph of another (no export needed to see that).
    from streamer.engine.export import artifact_path
    from streamer.engine.onnx_export import onnx_settings

    path = artifact_path(engine_cache, model_fingerprint(other), "onnx", onnx_settings("dynamo"), ".onnx")
    assert path != onnx_path and path.name == onnx_path.name


def test_export_model_from_a_model_dir(tiny_model_dir: Path, engine_cache: Path, onnx_path: Path) -> None:
    """`streamer export --backend onnx --model DIR` resolves to the same cached graph (same weights)."""
    path = export_model(tiny_model_dir, BackendConfig(name="onnx", cache_dir=str(engine_cache)))
    assert path == onnx_path


def test_export_model_rejects_eager(tiny: S2STModel, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="nothing to export"):
        export_model(tiny, BackendConfig(name="eager", cache_dir=str(tmp_path)))


def test_cache_root_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_root(BackendConfig(cache_dir=str(tmp_path))) == tmp_path
    monkeypatch.setenv("STREAMER_CACHE", str(tmp_path / "env"))
    assert cache_root(BackendConfig()) == tmp_path / "env"
    monkeypatch.delenv("STREAMER_CACHE")
    assert cache_root(None) == Path("~/.cache/streamer").expanduser()


def test_onnx_loader_refuses_a_foreign_graph(tmp_path: Path, runner_for: Callable[[str], Runner]) -> None:
    runner_for("onnx")
    import onnx
    from onnx import TensorProto, helper

    from streamer.engine.onnx import OnnxRunner

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="not a streamer ONNX graph"):
        OnnxRunner(path)


def test_onnx_loader_refuses_newer_format(tmp_path: Path, onnx_path: Path) -> None:
    import onnx

    from streamer.engine.onnx import OnnxRunner

    proto = onnx.load(str(onnx_path))
    for prop in proto.metadata_props:
        if prop.key == "streamer.format_version":
            prop.value = str(ARTIFACT_FORMAT_VERSION + 1)
    path = tmp_path / "newer.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match="format_version"):
        OnnxRunner(path)


def test_split_graphs_carry_their_half_of_the_state(tiny: S2STModel, engine_cache: Path,
                                                     runner_for: Callable[[str], Runner]) -> None:
    """listen and speak: each graph names its own inputs, outputs and state part; together they are a
    full runner whose step equals the whole step graph's; a half alone is refused where it cannot serve."""
    from streamer.engine.onnx import OnnxRunner, OnnxSplitRunner

    whole = runner_for("onnx")
    config = BackendConfig(name="onnx", cache_dir=str(engine_cache))
    listen, speak = (cached_onnx(tiny, config, graph=g) for g in ("listen", "speak"))
    names = list(flatten_state(tiny.init_state(1)))
    for path, graph, first, outs, parts in ((listen, "listen", "audio", ["log_probs"], ("encoder", "decoder")),
                                            (speak, "speak", "units_in", ["audio_out"], ("queue", "vocoder"))):
        meta = read_onnx_metadata(path)
        mine = [n for n in names if n.split(".")[0] in parts]
        assert meta.graph == graph and [f.name for f in meta.state] == mine
        runner = OnnxRunner(path)
        assert runner._inputs == [first, *mine] and runner._outputs == [*outs, *(f"new.{n}" for n in mine)]
        with pytest.raises(ModelError, match=f"is a {graph} graph"):
            runner.step(torch.zeros(1, tiny.cfg.chunk_samples), whole.init_state(1))
    assert read_onnx_metadata(cached_onnx(tiny, config)).graph == "step"
    split = OnnxSplitRunner(listen, speak)
    a, b = whole.init_state(2), split.init_state(2)
    for _ in range(3):
        audio = 0.3 * torch.randn(2, tiny.cfg.chunk_samples)
        out_a, units_a, a = whole.step(audio, a)
        out_b, units_b, b = split.step(audio, b)
        assert torch.equal(units_a, units_b)
        torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelError, match="not listen and speak"):
        OnnxSplitRunner(speak, listen)
    with pytest.raises(BackendUnavailableError, match="greedy decoding only"):
        make_runner(tiny, BackendConfig(name="tensorrt"), split=True)
