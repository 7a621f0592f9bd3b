"""Regenerate the golden-model files (seeded). Run only when a numeric change is intended:

    python tests/assets/make_golden.py
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from streamer.models.presets import tiny_config
from streamer.models.s2st import S2STModel

HERE = Path(__file__).resolve().parent
# Fixed analysis weights (DFT basis, mel filters): rebuilt at init, not stored (they are 600 KB).
FIXED = ("encoder.logmel.fbank", "encoder.logmel.stft.conv.weight")


def main() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg = replace(cfg, vocoder=replace(cfg.vocoder, n_fft=320))  # a smaller head keeps the file small
    model = S2STModel(cfg).eval()
    model.queue.durations.copy_(1 + torch.arange(cfg.queue.num_units) % 3)
    gen = torch.Generator().manual_seed(1234)
    audio = 0.2 * torch.randn(1, model.cfg.chunk_samples * 3, generator=gen)
    with torch.no_grad():
        out, units = model(audio)
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items() if k not in FIXED}
    tensors.update({"input.audio": audio, "output.audio": out, "output.units": units})
    save_file(tensors, str(HERE / "s2st_golden.safetensors"), metadata={"config": json.dumps(model.cfg.to_dict())})


if __name__ == "__main__":
    main()
