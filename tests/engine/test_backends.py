"""Backend parity: every available backend runs the same step graph as eager PyTorch.

Tolerances: fp32 backends reorder float work (fused kernels, other GEMM blockings). Units (argmax ids)
must be identical and audio within ATOL_FP32 absolute (rtol 0). Float states get ATOL_STATE: on exactly
silent input the encoder's per-frame LayerNorm over log-mel normalises a constant vector (variance 0,
divided by sqrt(1e-5)), which amplifies rounding ~300x (measured 3e-4 for torch.compile vs eager, 1e-3
deeper in the encoder caches, with identical units and 1e-7 audio). TensorRT fp16 is checked against
ATOL_FP16 with at least 90% of units agreeing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import Tensor

from streamer.engine import Runner
from streamer.engine.eager import EagerRunner
from streamer.models.ctc_search import CTCBeamSearch, SearchConfig
from streamer.models.s2st import S2STModel, S2STState
from streamer.models.state import flatten_state, stack_states, unstack_states
from streamer.models.unit_lm import UnitLM
from streamer.pipeline import Translator

ATOL_FP32 = 1e-4
ATOL_STATE = 2e-3
ATOL_FP16 = 5e-2
MARKS = {"compile": [pytest.mark.slow], "compile-split": [pytest.mark.slow], "tensorrt": [pytest.mark.gpu],
         "tensorrt-fp16": [pytest.mark.gpu]}


def backends(*names: str) -> list:
    return [pytest.param(n, marks=MARKS.get(n, []), id=n) for n in names]


class Run(NamedTuple):
    audio: Tensor  # (B, chunks * chunk_samples)
    units: Tensor  # (B, chunks * max_units)
    state: dict[str, Tensor]


def stream_chunks(num_chunks: int, batch: int, chunk_samples: int, *, seed: int) -> list[Tensor]:
    """Seeded noise bursts with a silent chunk every fourth, (batch, chunk_samples) each."""
    g = torch.Generator().manual_seed(seed)
    return [(0.0 if i % 4 == 3 else 0.5) * torch.randn(batch, chunk_samples, generator=g) for i in range(num_chunks)]


def run(runner: Runner, chunks: list[Tensor], state: S2STState | None = None) -> Run:
    state = state if state is not None else runner.init_state(chunks[0].shape[0])
    audio, units = [], []
    for chunk in chunks:
        out, u, state = runner.step(chunk, state)
        audio.append(out.cpu())
        units.append(u.cpu())
    flat = {k: v.cpu() for k, v in flatten_state(state).items()}
    return Run(torch.cat(audio, dim=1), torch.cat(units, dim=1), flat)


def assert_same_run(got: Run, ref: Run, *, atol: float) -> None:
    assert torch.equal(got.units, ref.units), "units differ"
    torch.testing.assert_close(got.audio, ref.audio, atol=atol, rtol=0)
    assert list(got.state) == list(ref.state)
    for name, ref_t in ref.state.items():
        assert got.state[name].dtype == ref_t.dtype, name
        if ref_t.is_floating_point():
            err = (got.state[name] - ref_t).abs().max().item()
            assert err <= max(atol, ATOL_STATE), f"state {name} differs by {err:.2e}"
        else:
            assert torch.equal(got.state[name], ref_t), f"integer state {name} differs"


@pytest.mark.parametrize("name", backends("onnx", "compile", "tensorrt", "tensorrt-fp16"))
def test_backend_matches_eager_over_a_stream(name: str, tiny: S2STModel,
                                             runner_for: Callable[[str], Runner]) -> None:
    runner = runner_for(name)
    chunks = stream_chunks(12, 1, tiny.cfg.chunk_samples, seed=1)
    ref = run(EagerRunner(tiny), chunks)
    got = run(runner, chunks)
    assert int((ref.units >= 0).sum()) >= 5, "the reference stream emits too few units to compare"
    assert got.audio.shape == ref.audio.shape and got.units.dtype == torch.int64
    if name.endswith("fp16"):
        assert float((got.units == ref.units).float().mean()) >= 0.9
        torch.testing.assert_close(got.audio, ref.audio, atol=ATOL_FP16, rtol=0)
    else:
        assert_same_run(got, ref, atol=ATOL_FP32)


@pytest.mark.parametrize("name", backends("eager", "onnx", "compile", "tensorrt"))
def test_batched_step_equals_single_steps(name: str, tiny: S2STModel, runner_for: Callable[[str], Runner]) -> None:
    """Three streams with different audio in one batched call == each stream alone (same backend)."""
    runner = runner_for(name)
    chunks = stream_chunks(8, 3, tiny.cfg.chunk_samples, seed=2)
    chunks[0][1] = 0.0  # stream 1 starts one chunk late
    singles = [run(runner, [c[b:b + 1] for c in chunks]) for b in range(3)]
    batched = run(runner, chunks, state=stack_states([runner.init_state(1) for _ in range(3)]))
    for b, single in enumerate(singles):
        row = Run(batched.audio[b:b + 1], batched.units[b:b + 1], {k: v[b:b + 1] for k, v in batched.state.items()})
        assert_same_run(row, single, atol=ATOL_FP32)


@pytest.mark.parametrize("name", backends("onnx", "compile"))
def test_states_keep_structure_and_unstack(name: str, tiny: S2STModel, runner_for: Callable[[str], Runner]) -> None:
    """The runner's state is the eager NamedTuple type, and the pipeline can split and re-stack it."""
    runner = runner_for(name)
    state = runner.init_state(3)
    ref = EagerRunner(tiny).init_state(3)
    assert type(state) is type(ref) and type(state.encoder) is type(ref.encoder)
    for (k, v), (k_ref, v_ref) in zip(flatten_state(state).items(), flatten_state(ref).items(), strict=True):
        assert k == k_ref and v.shape == v_ref.shape and v.dtype == v_ref.dtype and torch.equal(v.cpu(), v_ref)
    _, _, state = runner.step(torch.zeros(3, tiny.cfg.chunk_samples), state)
    parts = unstack_states(state)
    assert [p.queue.count.shape for p in parts] == [torch.Size([1])] * 3
    restacked = stack_states(parts)
    assert all(torch.equal(a, b) for a, b in zip(flatten_state(restacked).values(), flatten_state(state).values(),
                                                  strict=True))


@pytest.mark.parametrize("name", backends("onnx"))
def test_translator_on_backend_matches_eager(name: str, tiny: S2STModel, runner_for: Callable[[str], Runner]) -> None:
    """The pipeline (which reads state.queue.count) gives the same translation through the backend."""
    g = torch.Generator().manual_seed(3)
    samples = (0.5 * torch.randn(16_000 * 2, generator=g)).numpy()
    ref = Translator(EagerRunner(tiny))
    got = Translator(runner_for(name))
    np.testing.assert_allclose(got.translate_array(samples, sample_rate=16_000),
                               ref.translate_array(samples, sample_rate=16_000), atol=ATOL_FP32, rtol=0)
    sessions = [got.create_session(f"s{i}") for i in range(2)]
    ref_sessions = [ref.create_session(f"s{i}") for i in range(2)]
    for i, (s, r) in enumerate(zip(sessions, ref_sessions, strict=True)):
        s.accept_waveform(samples[i * 4000:], sample_rate=16_000)
        r.accept_waveform(samples[i * 4000:], sample_rate=16_000)
    while all(got.is_ready(s) for s in sessions):
        got.step_many(sessions)
        ref.step_many(ref_sessions)
    for s, r in zip(sessions, ref_sessions, strict=True):
        assert np.array_equal(s.result().units, r.result().units)
        np.testing.assert_allclose(s.read_output(), r.read_output(), atol=ATOL_FP32, rtol=0)


def test_runner_rejects_wrong_chunk(tiny: S2STModel, runner_for: Callable[[str], Runner]) -> None:
    runner = runner_for("onnx")
    with pytest.raises(ValueError, match=str(tiny.cfg.chunk_samples)):
        runner.step(torch.zeros(1, 100), runner.init_state(1))


@pytest.mark.parametrize("name", backends("compile-split"))
def test_split_backend_with_lm_search_matches_eager(name: str, tiny: S2STModel,
                                                    runner_for: Callable[[str], Runner]) -> None:
    """The step's halves on the backend, with the unit LM search between them, translate as eager does:
    the same CTC log-probabilities, so the same units, and the same audio."""
    runner = runner_for(name)
    blank = tiny.cfg.decoder.blank
    g = torch.Generator().manual_seed(5)
    lm = UnitLM.fit(torch.randint(0, blank, (200, 12), generator=g).tolist(), order=3, num_units=blank)
    search = CTCBeamSearch(blank, lm, SearchConfig(beam=4, prune=-20.0, max_delay_slots=8))
    chunks = stream_chunks(10, 1, tiny.cfg.chunk_samples, seed=6)
    log_probs, _ = runner.listen(chunks[0], runner.init_state(1))
    ref_log_probs, _ = EagerRunner(tiny).listen(chunks[0], tiny.init_state(1))
    torch.testing.assert_close(log_probs, ref_log_probs, atol=ATOL_FP32, rtol=0)
    samples = torch.cat(chunks, dim=1)[0].numpy()
    ref = Translator(EagerRunner(tiny), search).translate_whole(samples, sample_rate=16_000)
    got = Translator(runner, search).translate_whole(samples, sample_rate=16_000)
    assert len(ref.result().units) >= 5, "the reference emits too few units to compare"
    assert np.array_equal(got.result().units, ref.result().units)
    np.testing.assert_allclose(got.read_output(), ref.read_output(), atol=ATOL_FP32, rtol=0)
