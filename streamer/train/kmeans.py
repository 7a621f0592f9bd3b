"""Seeded k-means in torch (k-means++ init, Lloyd iterations) for SSL targets and discrete units."""

from __future__ import annotations

import torch
from torch import Tensor

from streamer.models.units import assign


def kmeans(x: Tensor, k: int, *, iters: int = 25, seed: int = 0, max_init: int = 20000) -> Tensor:
    """Fit k centroids to x (N, D) float32. Returns (k, D)."""
    if len(x) < k:
        raise ValueError(f"k-means needs at least k={k} points, got {len(x)}")
    gen = torch.Generator().manual_seed(seed)
    sample = x[torch.randperm(len(x), generator=gen)[:max_init]]
    centroids = sample[torch.randint(len(sample), (1,), generator=gen)]
    dist = ((sample - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):  # k-means++: next centre drawn in proportion to squared distance
        idx = torch.multinomial(dist / dist.sum(), 1, generator=gen)
        centroids = torch.cat([centroids, sample[idx]])
        dist = torch.minimum(dist, ((sample - sample[idx]) ** 2).sum(1))
    for _ in range(iters):
        labels = assign(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
    return centroids


def inertia(x: Tensor, centroids: Tensor) -> float:
    """Mean squared distance to the nearest centroid."""
    labels = assign(x, centroids)
    return float(((x - centroids[labels]) ** 2).sum(1).mean())
