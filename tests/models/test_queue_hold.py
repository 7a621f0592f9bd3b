"""The unit queue's hold: when it runs dry, the last unit goes on for `hold_frames` instead of silence at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from streamer.engine import BackendConfig, make_runner
from streamer.engine.eager import EagerRunner
from streamer.models.pacing import QueueConfig, UnitQueue
from streamer.models.presets import tiny_config
from streamer.models.s2st import S2STModel

SILENCE = 5
BASE = QueueConfig(num_units=5, frames_per_chunk=4, capacity_frames=16, backlog_frames=8)


def run(queue: UnitQueue, chunks: list[list[int]]) -> list[int]:
    state, out = queue.init_state(1), []
    for units in chunks:
        frames, state = queue.step(torch.tensor([units + [-1] * (8 - len(units))]), state)
        out += frames[0].tolist()
    return out


def reference_hold(frames: list[int], hold: int) -> list[int]:
    """The first `hold` frames of each run of silence after a unit voice that unit; nothing else changes."""
    out, last, held = [], None, 0
    for f in frames:
        if f != SILENCE:
            last, held = f, 0
            out.append(f)
        elif last is not None and held < hold:
            out.append(last)
            held += 1
        else:
            out.append(SILENCE)
    return out


def queues(hold: int) -> tuple[UnitQueue, UnitQueue]:
    plain, held = UnitQueue(BASE), UnitQueue(dataclasses.replace(BASE, hold_frames=hold))
    for queue in (plain, held):
        queue.durations.copy_(torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0]))
    return plain, held


@pytest.mark.parametrize("hold", [1, 3, 6])
def test_hold_fills_gaps_with_the_last_unit_and_keeps_the_timing(hold: int) -> None:
    plain, held = queues(hold)
    # gaps inside a chunk, across chunk boundaries, longer and shorter than the hold, and the end
    chunks = [[1, 2], [], [], [0, 4], [], [3], [2, 1], [], [], [], [4], [], [], []]
    without, with_hold = run(plain, chunks), run(held, chunks)
    assert with_hold == reference_hold(without, hold)
    assert with_hold != without and with_hold[-1] == SILENCE


def test_hold_with_duration_context_holds_the_last_unit_voiced() -> None:
    cfg = dataclasses.replace(BASE, duration_context=1, hold_frames=2)
    queue = UnitQueue(cfg)
    queue.durations.fill_(2.0)
    out = run(queue, [[3, 1], [], []])
    assert out == [3, 3, 1, 1] + [1, 1, SILENCE, SILENCE] + [SILENCE] * 4


def test_hold_never_invents_speech_from_silence() -> None:
    _, held = queues(4)
    assert run(held, [[]] * 5) == [SILENCE] * 20
    state = held.init_state(2)
    assert state.held.shape == (2,) and int(state.held.sum()) == 0


def test_hold_runs_the_same_on_onnx(tmp_path: Path) -> None:
    """The voicing graph with a hold, exported, equals eager, hold state included. The units are given (the
    split runner's `speak`), sparse enough that the queue runs dry between them."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, queue=dataclasses.replace(cfg.queue, hold_frames=5))
    model = S2STModel(cfg).eval()
    model.queue.durations.fill_(5.0)  # two units outlast a chunk: the queue is sometimes full, sometimes dry
    onnx = make_runner(model, BackendConfig(name="onnx", num_threads=1, max_batch=4, cache_dir=str(tmp_path)),
                       split=True)
    eager = EagerRunner(model)
    g = torch.Generator().manual_seed(1)
    a, b = eager.init_state(2), onnx.init_state(2)
    width, held = cfg.max_units, []
    for step in range(12):
        audio = 0.5 * torch.randn(2, cfg.chunk_samples, generator=g)
        _, a = eager.listen(audio, a)
        _, b = onnx.listen(audio, b)
        units = torch.full((2, width), -1, dtype=torch.long)
        if step % 3 == 0:
            units[0, :2] = torch.tensor([3, 5])
        if step % 4 == 1:
            units[1, :1] = 7
        out_a, a = eager.speak(units, a)
        out_b, b = onnx.speak(units, b)
        assert torch.equal(a.queue.held, b.queue.held) and torch.equal(a.queue.frames, b.queue.frames)
        torch.testing.assert_close(out_a, out_b, atol=1e-4, rtol=0)
        held.append(a.queue.held.clone())
    seen = set(torch.stack(held).flatten().tolist())
    assert {0, cfg.queue.hold_frames} <= seen and len(seen) > 2, seen
