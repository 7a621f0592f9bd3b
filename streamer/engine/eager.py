"""The reference backend: plain PyTorch, no grad."""

from __future__ import annotations

import torch
from torch import Tensor

from streamer.models.s2st import S2STModel, S2STState


class EagerRunner:
    name = "eager"

    def __init__(self, model: S2STModel, *, num_threads: int | None = None) -> None:
        self.model = model.eval()
        self.config = model.cfg
        if num_threads:
            torch.set_num_threads(num_threads)

    def init_state(self, batch_size: int) -> S2STState:
        return self.model.init_state(batch_size)

    @torch.inference_mode()
    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]:
        return self.model.step(audio, state)

    @torch.inference_mode()
    def listen(self, audio: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        return self.model.listen(audio, state)

    @torch.inference_mode()
    def speak(self, units: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        return self.model.speak(units, state)
