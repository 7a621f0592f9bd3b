"""The LM stage's tuning: dev error decides the LM weight and unit bonus, and noise clips count against
a bonus that makes the search say units where there is nothing to say."""

from __future__ import annotations

import numpy as np

from streamer.models.unit_lm import UnitLM
from streamer.train.unit_lm_stage import UnitLMConfig, noise_clips, tune

BLANK = 3


def slots(spikes: list[tuple[int, float]], length: int = 12) -> np.ndarray:
    """Log-probabilities of `length` slots, blank everywhere except (slot, p): unit 1 with probability p."""
    p = np.full((length, BLANK + 1), 1e-4)
    p[:, BLANK] = 1.0
    for slot, prob in spikes:
        p[slot] = 1e-4
        p[slot, 1], p[slot, BLANK] = prob, 1.0 - prob
    return np.log(p / p.sum(1, keepdims=True))


def test_noise_clips_with_no_reference_keep_the_bonus_honest() -> None:
    """Speech with a faint unit (p = 0.35) wants a large bonus; noise with the same faint spikes and nothing
    to say wants a small one. Dev alone picks the large bonus, dev with the noise the small one."""
    lm = UnitLM.fit([[0, 1, 2]] * 20, order=2, num_units=BLANK)
    speech = slots([(2, 0.35)])
    noise = [slots([(3, 0.35)]), slots([(5, 0.35)]), slots([(8, 0.35)])]
    cfg = UnitLMConfig(alphas=(0.0,), betas=(0.0, 2.0))
    alone, grid = tune(BLANK, lm, [speech], [np.array([1])], cfg)
    assert alone.beta == 2.0 and grid[0]["dev_uer"] == 1.0 and grid[1]["dev_uer"] == 0.0
    with_noise, _ = tune(BLANK, lm, [speech, *noise], [np.array([1])] + [np.zeros(0, dtype=np.int64)] * 3, cfg)
    assert with_noise.beta == 0.0


def test_noise_clips_are_seeded_and_quiet() -> None:
    clips = noise_clips(4, seconds=1.0, seed=3)
    assert len(clips) == 4 and all(len(c) == 16_000 and c.dtype == np.float32 for c in clips)
    levels = [20 * np.log10(np.sqrt(np.mean(c.astype(np.float64) ** 2))) for c in clips]
    assert all(-45.5 < db < -29.5 for db in levels)
    assert all(np.array_equal(a, b) for a, b in zip(clips, noise_clips(4, seconds=1.0, seed=3), strict=True))
    assert not np.array_equal(clips[0], noise_clips(4, seconds=1.0, seed=4)[0])
