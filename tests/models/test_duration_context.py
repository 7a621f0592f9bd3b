"""Durations by context: the queue's table indexed by the units voiced before each one, and its fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.engine import BackendConfig, make_runner
from streamer.engine.eager import EagerRunner
from streamer.models.pacing import QueueConfig, UnitQueue
from streamer.models.presets import tiny_config
from streamer.models.s2st import S2STModel
from streamer.train.targets import context_durations

K = 4  # units; K itself means "none yet" in a context


def reference_frames(units: list[int], table: np.ndarray, max_frames: int) -> list[int]:
    """Each unit held round(table[p2, p1, u]) frames (clamped to 1..max_frames), p2, p1 the units before it."""
    padded, out = [K, K, *units], []
    for i, u in enumerate(units):
        out += [u] * int(np.clip(np.round(table[padded[i], padded[i + 1], u]), 1, max_frames))
    return out


def run(queue: UnitQueue, chunks: list[list[int | None]]) -> list[int]:
    """Chunks of slots (None: no unit in that slot, so units sit where CTC put them, not packed)."""
    state, out = queue.init_state(1), []
    for slots in chunks:
        frames, state = queue.step(torch.tensor([[-1 if u is None else u for u in slots]]), state)
        out += frames[0].tolist()
    return out


def test_queue_times_each_unit_by_the_two_before_it_across_chunks() -> None:
    cfg = QueueConfig(num_units=K, frames_per_chunk=4, capacity_frames=64, backlog_frames=64, max_duration_frames=6,
                      duration_context=2)
    queue = UnitQueue(cfg)
    rng = np.random.default_rng(0)
    table = rng.uniform(0.6, 6.4, (K + 1, K + 1, K))
    queue.durations.copy_(torch.from_numpy(table.reshape(-1)).float())
    slots = [[None, 2, None, 1], [3, None, None, None], [None, None, None, 3], [0, 1, None, 2]] + [[None] * 4] * 12
    units = [u for chunk in slots for u in chunk if u is not None]
    frames = [f for f in run(queue, slots) if f != K]  # K: silence once the queue runs dry
    assert frames == reference_frames(units, table, cfg.max_duration_frames)
    # the same units packed into other chunks: the same durations (context crosses chunk boundaries)
    packed = [[2, 1, 3, 3], [0, 1, 2, None]] + [[None] * 4] * 12
    assert [f for f in run(queue, packed) if f != K] == frames


def test_queue_without_context_keeps_one_mean_per_unit() -> None:
    queue = UnitQueue(QueueConfig(num_units=K, frames_per_chunk=4, capacity_frames=32, backlog_frames=32))
    assert queue.durations.shape == (K,) and queue.init_state(2).recent.shape == (2, 1)
    queue.durations.copy_(torch.tensor([1.0, 2.0, 3.0, 1.0]))
    assert [f for f in run(queue, [[1, None, 2, 0], [None] * 4, [None] * 4]) if f != K] == [1, 1, 2, 2, 2, 0]


def test_context_table_learns_durations_that_depend_on_the_unit_before() -> None:
    """Unit 1 lasts 5 frames after unit 0 and 2 after anything else; a context never seen backs off."""
    rng = np.random.default_rng(1)
    sequences = []
    for _ in range(200):
        units = rng.integers(0, K, 6)
        units = units[np.concatenate([[True], units[1:] != units[:-1]])]  # runs are units, not repeats
        durations = [5 if (u == 1 and i > 0 and units[i - 1] == 0) else 2 for i, u in enumerate(units)]
        sequences.append(np.repeat(units, durations))
    flat = context_durations(sequences, K, 2)
    table = flat.numpy().reshape(K + 1, K + 1, K)
    assert flat.shape == (QueueConfig(num_units=K, duration_context=2).table_size,)
    np.testing.assert_allclose(table[2, 0, 1], 5.0)  # seen often: exact
    np.testing.assert_allclose(table[3, 2, 1], 2.0)
    mean_of_1 = context_durations(sequences, K, 0).numpy()[1]
    assert 2.0 < mean_of_1 < 5.0
    np.testing.assert_allclose(table[K, 1, 1], mean_of_1)  # 1 after 1 never happens: back to its mean
    np.testing.assert_allclose(table[3, 0, 1], 5.0)  # a rarer pair of previous units: the last one decides


def test_context_queue_runs_the_same_on_onnx(tmp_path: Path) -> None:
    """The whole step graph with a context table and its two-unit state, exported, equals eager."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, queue=dataclasses.replace(cfg.queue, duration_context=2))
    model = S2STModel(cfg).eval()
    model.queue.durations.copy_(torch.rand(cfg.queue.table_size) * 5 + 0.6)
    onnx = make_runner(model, BackendConfig(name="onnx", num_threads=1, max_batch=4, cache_dir=str(tmp_path)))
    eager = EagerRunner(model)
    g = torch.Generator().manual_seed(1)
    a, b = eager.init_state(2), onnx.init_state(2)
    emitted = 0
    for _ in range(10):
        audio = 0.5 * torch.randn(2, cfg.chunk_samples, generator=g)
        out_a, units_a, a = eager.step(audio, a)
        out_b, units_b, b = onnx.step(audio, b)
        assert torch.equal(units_a, units_b) and torch.equal(a.queue.recent, b.queue.recent)
        torch.testing.assert_close(out_a, out_b, atol=1e-4, rtol=0)
        emitted += int((units_a >= 0).sum())
    assert emitted >= 5 and bool((a.queue.recent < cfg.queue.num_units).any())
