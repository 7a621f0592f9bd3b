"""TensorRT: a clear error where it cannot run; on a GPU (`-m gpu`), a cached engine reloads identically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from streamer.engine import BackendConfig, Runner, make_runner
from streamer.engine.tensorrt import INSTALL_HINT, tensorrt_available
from streamer.errors import BackendUnavailableError
from streamer.models.s2st import S2STModel


def test_tensorrt_unavailable_raises_with_install_hint(tiny: S2STModel, tmp_path: Path) -> None:
    if tensorrt_available():
        pytest.skip("torch-tensorrt and a CUDA GPU are present: the backend is available here")
    with pytest.raises(BackendUnavailableError) as info:
        make_runner(tiny, BackendConfig(name="tensorrt", cache_dir=str(tmp_path)))
    message = str(info.value)
    assert "pip install 'streamer[tensorrt]'" in message and "--backend onnx" in message
    assert INSTALL_HINT in message
    assert not any(tmp_path.iterdir()), "nothing may be written to the cache when the backend is missing"


def test_export_model_tensorrt_unavailable(tiny: S2STModel, tmp_path: Path) -> None:
    if tensorrt_available():
        pytest.skip("torch-tensorrt and a CUDA GPU are present: the backend is available here")
    from streamer.engine.export import export_model

    with pytest.raises(BackendUnavailableError, match="NVIDIA GPU"):
        export_model(tiny, BackendConfig(name="tensorrt", cache_dir=str(tmp_path)))


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_tensorrt_cache_reload_is_identical(fp16: bool, tiny: S2STModel, engine_cache: Path,
                                            runner_for: Callable[[str], Runner], step_together) -> None:
    first = runner_for("tensorrt-fp16" if fp16 else "tensorrt")  # builds into engine_cache (or skips)
    path = first.path
    mtime = path.stat().st_mtime_ns
    again = make_runner(tiny, BackendConfig(name="tensorrt", fp16=fp16, max_batch=8, cache_dir=str(engine_cache)))
    assert again.path == path and path.stat().st_mtime_ns == mtime, "a cached engine must not be rebuilt"
    for (a1, u1), (a2, u2) in step_together(first, again, 5):
        assert torch.equal(u1, u2)
        torch.testing.assert_close(a1, a2, atol=1e-6, rtol=0)  # same engine file; kernels are deterministic
    with pytest.raises(ValueError, match="max_batch"):
        again.step(torch.zeros(9, tiny.cfg.chunk_samples), again.init_state(9))
