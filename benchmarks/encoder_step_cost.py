"""Step cost of the causal (SSL) encoder alone, per chunk, on one CPU thread: the #11 figure.

    python benchmarks/encoder_step_cost.py [--encoder runs/s8/ssl/encoder.safetensors] [--chunks-ms 160 320 640]

Without --encoder it times the shipped en-es model's encoder (the same architecture as the SSL encoder).
Reports the median and 90th percentile over the steps of a 30 s stream, and its real-time factor.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from safetensors.torch import load_file

from streamer.assets import model_dir
from streamer.models.checkpoint import load_model
from streamer.models.encoder import CausalEncoder


def load_encoder(path: str | None) -> CausalEncoder:
    encoder = load_model(model_dir("en-es")).encoder
    if path:
        encoder.load_state_dict(load_file(path))
    return encoder.eval()


def time_steps(encoder: CausalEncoder, chunk_ms: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    rate = encoder.cfg.sample_rate
    chunk_samples = chunk_ms * rate // 1000
    audio = torch.from_numpy(0.1 * rng.standard_normal((1, int(seconds * rate)), dtype=np.float32))
    state, costs = encoder.init_state(1), []
    with torch.inference_mode():
        for start in range(0, audio.shape[1] - chunk_samples + 1, chunk_samples):
            t0 = time.perf_counter()
            _, state = encoder.step(audio[:, start:start + chunk_samples], state)
            costs.append(time.perf_counter() - t0)
    return np.array(costs[2:]) * 1000  # the first steps warm up allocators


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", help="encoder weights (an SSL stage's encoder.safetensors)")
    p.add_argument("--chunks-ms", type=int, nargs="+", default=[160, 320, 640])
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    encoder = load_encoder(args.encoder)
    params = sum(x.numel() for x in encoder.parameters())
    print(f"encoder: {params / 1e6:.2f} M parameters, 1 thread\n")
    print("| chunk | steps | median ms | p90 ms | real-time factor |\n|---|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for ms in args.chunks_ms:
        cost = time_steps(encoder, ms, args.seconds, rng)
        print(f"| {ms} ms | {len(cost)} | {np.median(cost):.2f} | {np.percentile(cost, 90):.2f} | "
              f"{np.median(cost) / ms:.3f} |")


if __name__ == "__main__":
    main()
