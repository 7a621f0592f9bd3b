"""Eval fixtures: one Whisper judge per session (skipped with the reason when not installed)."""

from __future__ import annotations

import pytest

from streamer.eval.judge import JudgeConfig, WhisperJudge, judge_available


@pytest.fixture(scope="session")
def judge() -> WhisperJudge:
    ok, why = judge_available()
    if not ok:
        pytest.skip(f"Whisper judge not installed: {why}")
    return WhisperJudge(JudgeConfig(cpu_threads=2, max_new_tokens=48))


@pytest.fixture(scope="session")
def espeak() -> None:
    from streamer.train import synth

    if "espeak-ng" not in synth.available_engines():
        pytest.skip("espeak-ng is not installed here (apt-get install espeak-ng)")
