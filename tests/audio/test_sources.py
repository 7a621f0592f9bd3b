"""Sources: fixed chunks whose concatenation is the input (plus padding); re-chunking and pacing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.audio.io import read_audio
from streamer.audio.resample import resample
from streamer.audio.sources import Chunker, array_source, chunk_samples, file_source, iterator_source
from streamer.errors import AudioError, AudioFileError


def collect(source: AsyncIterator[np.ndarray]) -> list[np.ndarray]:
    async def go() -> list[np.ndarray]:
        return [chunk async for chunk in source]

    return asyncio.run(go())


def padded(x: np.ndarray, n: int) -> np.ndarray:
    """x followed by zeros up to a whole number of n-sample chunks."""
    return np.concatenate([x, np.zeros(-x.size % n, np.float32)])


def noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_chunk_samples() -> None:
    assert chunk_samples(16000, 160) == 2560
    assert chunk_samples(16000, 20) == 320
    for bad in (0, -10, 1.5, True):
        with pytest.raises(AudioError, match="chunk_ms must be a positive integer"):
            chunk_samples(16000, bad)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match="less than one sample"):
        chunk_samples(100, 1)


# --- Chunker ------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=700), max_size=25),
    n=st.integers(min_value=1, max_value=300),
    pad_last=st.booleans(),
)
def test_chunker_rechunks_any_block_sizes(sizes: list[int], n: int, pad_last: bool) -> None:
    x = np.arange(sum(sizes), dtype=np.float32) + 1.0
    c = Chunker(n, pad_last=pad_last)
    out, i = [], 0
    for size in sizes:
        c.push(x[i : i + size])
        i += size
        assert len(c) == c.buffered // n
        out.extend(c.pop_all())
        assert c.buffered < n
    last = c.flush()
    assert all(chunk.shape == (n,) for chunk in out)
    if last is not None:
        out.append(last)
        assert last.size == n if pad_last else 0 < last.size < n
    assert c.buffered == 0 and c.flush() is None
    got = np.concatenate(out) if out else np.zeros(0, np.float32)
    np.testing.assert_array_equal(got, padded(x, n) if pad_last else x)


def test_chunker_pop_returns_owned_copies_and_rejects_misuse() -> None:
    c = Chunker(4)
    block = np.arange(8, dtype=np.float32)
    c.push(block)
    first = c.pop()
    block[:] = -1  # the caller reusing its buffer must not change what was pushed
    assert first.tolist() == [0, 1, 2, 3] and c.pop().tolist() == [4, 5, 6, 7] and c.pop() is None
    c.push(np.ones(5, np.float32))
    with pytest.raises(AudioError, match="pop them first"):
        c.flush()
    with pytest.raises(AudioError, match="1-D block"):
        c.push(np.zeros((2, 2), np.float32))
    with pytest.raises(AudioError, match="positive int"):
        Chunker(0)


# --- array_source / file_source -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2559, 2560, 2561, 16000])
def test_array_source_concatenation_is_input_plus_padding(n: int) -> None:
    x = noise(n)
    chunks = collect(array_source(x, sample_rate=16000))
    assert len(chunks) == -(-n // 2560)
    assert all(c.shape == (2560,) and c.dtype == np.float32 for c in chunks)
    if n:
        np.testing.assert_array_equal(np.concatenate(chunks), padded(x, 2560))


def test_array_source_unpadded_last_chunk_and_other_rates() -> None:
    x = noise(5000)
    chunks = collect(array_source(x, sample_rate=16000, chunk_ms=100, pad_last=False))
    assert [c.size for c in chunks] == [1600, 1600, 1600, 200]
    np.testing.assert_array_equal(np.concatenate(chunks), x)
    y = noise(44100, seed=1)
    chunks = collect(array_source(y, sample_rate=44100))
    np.testing.assert_allclose(np.concatenate(chunks), padded(resample(y, 44100, 16000), 2560), atol=1e-6)


def test_array_source_validates_before_iterating() -> None:
    x = noise(100)
    x[50] = np.nan
    with pytest.raises(AudioError, match="NaN at sample 50"):
        array_source(x, sample_rate=16000)
    with pytest.raises(AudioError, match="sample_rate"):
        array_source(noise(10), sample_rate=0)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (8000, 1)])
def test_file_source_equals_read_audio_chunked(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / "in.wav"
    sf.write(path, noise(rate * 5 // 4 * channels).reshape(-1, channels), rate, subtype="FLOAT")
    chunks = collect(file_source(path))
    offline, sr = read_audio(path)
    assert sr == 16000 and all(c.shape == (2560,) for c in chunks)
    atol = 0.0 if rate == 16000 else 1e-6  # identical samples without resampling
    np.testing.assert_allclose(np.concatenate(chunks), padded(offline, 2560), rtol=0, atol=atol)


def test_file_source_checks_the_file_when_called(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="not found"):
        file_source(tmp_path / "missing.wav")  # no iteration needed
    (tmp_path / "t.wav").write_text("hello\n")
    with pytest.raises(AudioFileError, match="looks like text"):
        file_source(tmp_path / "t.wav")


def test_file_source_reports_nan_with_its_absolute_position(tmp_path: Path) -> None:
    x = noise(100_000)
    x[70_000] = np.nan  # in the second block the source decodes
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"NaN at sample 70000 \(t = 4\.375 s\)"):
        collect(file_source(tmp_path / "nan.wav"))


# --- iterator_source ----------------------------------------------------------------------------------


def test_iterator_source_random_blocks_at_48k_equal_offline_resample_then_chunk() -> None:
    rng = np.random.default_rng(7)
    x = noise(48000 * 2 + 123, seed=3)
    sizes = []
    while sum(sizes) < x.size:
        sizes.append(int(rng.integers(0, 3000)))
    bounds = np.cumsum([0, *sizes])

    async def blocks() -> AsyncIterator[np.ndarray]:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            await asyncio.sleep(0)
            yield x[a:b]

    chunks = collect(iterator_source(blocks(), sample_rate=48000))
    assert all(c.shape == (2560,) for c in chunks)
    # Streaming soxr equals offline soxr; 1e-6 allows float32 rounding differences.
    np.testing.assert_allclose(np.concatenate(chunks), padded(resample(x, 48000, 16000), 2560), atol=1e-6)


def test_iterator_source_accepts_sync_iterables_int16_and_stereo() -> None:
    pcm = (np.arange(3000) % 200 - 100).astype(np.int16)
    chunks = collect(iterator_source([pcm[:1000], pcm[1000:]], sample_rate=16000, chunk_ms=100))
    np.testing.assert_array_equal(np.concatenate(chunks), padded(pcm / 32768.0, 1600).astype(np.float32))
    stereo = np.stack([np.ones(1600), -np.ones(1600)], axis=1)
    (chunk,) = collect(iterator_source([stereo], sample_rate=16000, chunk_ms=100))
    np.testing.assert_array_equal(chunk, np.zeros(1600, np.float32))


def test_iterator_source_bad_block_names_its_stream_position() -> None:
    blocks = [noise(500), noise(500)]
    blocks[1][20] = np.inf
    with pytest.raises(AudioError, match=r"audio block contains 1 non-finite.*\+Inf at sample 520"):
        collect(iterator_source(blocks, sample_rate=16000))


# --- realtime pacing ----------------------------------------------------------------------------------


def test_realtime_array_source_takes_about_the_audio_duration() -> None:
    x = noise(8000)  # 0.5 s at 16 kHz = 5 chunks of 100 ms
    t0 = time.monotonic()
    chunks = collect(array_source(x, sample_rate=16000, chunk_ms=100, realtime=True))
    elapsed = time.monotonic() - t0
    assert len(chunks) == 5
    assert 0.45 <= elapsed < 1.5  # chunk i is released at (i + 1) * 100 ms


def test_realtime_file_source_is_paced(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", noise(4800), 16000)  # 0.3 s
    t0 = time.monotonic()
    chunks = collect(file_source(tmp_path / "a.wav", chunk_ms=100, realtime=True))
    assert len(chunks) == 3 and 0.25 <= time.monotonic() - t0 < 1.2
