"""The whole per-chunk step graph: encoder -> unit decoder -> unit queue -> vocoder.

One input chunk (B, chunk_samples) of 16 kHz audio in; exactly one chunk of output audio and the units
emitted in this chunk out. This module is what every backend runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from streamer.models.decoder import DecoderConfig, DecoderState, UnitDecoder, ctc_emit
from streamer.models.encoder import CausalEncoder, EncoderConfig, EncoderState
from streamer.models.layers import check_stride
from streamer.models.pacing import QueueConfig, QueueState, UnitQueue
from streamer.models.vocoder import UnitVocoder, VocoderConfig, VocoderState

FORMAT_VERSION = 1


@dataclass(frozen=True)
class S2STConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    chunk_ms: int = 160
    source_lang: str = "en"
    target_lang: str = "es"
    format_version: int = FORMAT_VERSION

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    @property
    def chunk_samples(self) -> int:
        return self.sample_rate * self.chunk_ms // 1000

    @property
    def frames_per_chunk(self) -> int:
        return self.chunk_samples // self.encoder.frame_samples

    @property
    def max_units(self) -> int:
        return self.frames_per_chunk * self.decoder.upsample

    def to_dict(self) -> dict:
        return {"encoder": self.encoder.to_dict(), "decoder": self.decoder.to_dict(),
                "queue": self.queue.to_dict(), "vocoder": self.vocoder.to_dict(), "chunk_ms": self.chunk_ms,
                "source_lang": self.source_lang, "target_lang": self.target_lang,
                "format_version": self.format_version}

    @classmethod
    def from_dict(cls, d: dict) -> S2STConfig:
        version = d.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"model format_version {version} is not supported (expected {FORMAT_VERSION})")
        return cls(EncoderConfig.from_dict(d["encoder"]), DecoderConfig.from_dict(d["decoder"]),
                   QueueConfig.from_dict(d["queue"]), VocoderConfig.from_dict(d["vocoder"]),
                   chunk_ms=d["chunk_ms"], source_lang=d["source_lang"], target_lang=d["target_lang"])

    def validate(self) -> None:
        if self.chunk_samples % self.encoder.frame_samples:
            raise ValueError(f"chunk_ms {self.chunk_ms} is not a multiple of the "
                             f"{self.encoder.frame_samples * 1000 // self.sample_rate} ms encoder frame")
        if self.queue.frames_per_chunk != self.frames_per_chunk:
            raise ValueError("queue.frames_per_chunk must equal the encoder frames per chunk")
        units = {self.decoder.num_units, self.queue.num_units, self.vocoder.num_units}
        if len(units) != 1:
            raise ValueError(f"decoder, queue and vocoder disagree on num_units: {sorted(units)}")
        if self.vocoder.frame_samples != self.encoder.frame_samples:
            raise ValueError("vocoder and encoder frames must have the same length")


class S2STState(NamedTuple):
    encoder: EncoderState
    decoder: DecoderState
    queue: QueueState
    vocoder: VocoderState


class S2STModel(nn.Module):
    """audio chunk (B, chunk_samples) -> (audio out (B, chunk_samples), units (B, max_units), state)."""

    causal = True

    def __init__(self, cfg: S2STConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = CausalEncoder(cfg.encoder)
        self.decoder = UnitDecoder(cfg.decoder)
        self.queue = UnitQueue(cfg.queue)
        self.vocoder = UnitVocoder(cfg.vocoder)
        self.stride = cfg.chunk_samples
        self.lookahead_frames = self.vocoder.lookahead_frames

    @property
    def algorithmic_latency_ms(self) -> float:
        """Chunk plus every declared lookahead: the least delay between speech in and speech out."""
        frame_ms = 1000 * self.cfg.encoder.frame_samples / self.cfg.sample_rate
        return self.cfg.chunk_ms + frame_ms * (self.encoder.lookahead_frames + self.decoder.lookahead_frames
                                               + self.vocoder.lookahead_frames)

    def init_state(self, batch_size: int) -> S2STState:
        return S2STState(self.encoder.init_state(batch_size), self.decoder.init_state(batch_size),
                         self.queue.init_state(batch_size), self.vocoder.init_state(batch_size))

    def step(self, audio: Tensor, state: S2STState) -> tuple[Tensor, Tensor, S2STState]:
        enc, enc_state = self.encoder.step(audio, state.encoder)
        units, dec_state = self.decoder.step(enc, state.decoder)
        frames, queue_state = self.queue.step(units, state.queue)
        out, voc_state = self.vocoder.step(frames, state.vocoder)
        return out, units, S2STState(enc_state, dec_state, queue_state, voc_state)

    def listen(self, audio: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        """The hearing half of `step`, for a unit search on the host: audio chunk -> CTC slot
        log-probabilities (B, max_units, num_units + 1). Only the encoder and decoder state change."""
        enc, enc_state = self.encoder.step(audio, state.encoder)
        log_probs, dec_state = self.decoder.step_log_probs(enc, state.decoder)
        return log_probs, state._replace(encoder=enc_state, decoder=dec_state)

    def speak(self, units: Tensor, state: S2STState) -> tuple[Tensor, S2STState]:
        """The voicing half: units (B, S) int64 (-1 = none) -> one chunk of audio. Only the unit queue
        and vocoder state change."""
        frames, queue_state = self.queue.step(units, state.queue)
        out, voc_state = self.vocoder.step(frames, state.vocoder)
        return out, state._replace(queue=queue_state, vocoder=voc_state)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Offline: whole utterance (B, T), T a multiple of chunk_samples -> (audio (B, T), units (B, T/320*up)).

        The networks run on the whole sequence at once; only the queue, which has no weights and
        whose timing is defined per chunk, is walked chunk by chunk.
        """
        check_stride(audio.shape[-1], self.cfg.chunk_samples, "offline input samples")
        tokens = self.decoder(self.encoder(audio)).argmax(-1)
        blank = torch.full((audio.shape[0],), self.cfg.decoder.blank, dtype=torch.long, device=audio.device)
        units, _ = ctc_emit(tokens, blank, self.cfg.decoder.blank)
        queue_state = self.queue.init_state(audio.shape[0])
        frames = []
        for chunk_units in units.split(self.cfg.max_units, dim=1):
            f, queue_state = self.queue.step(chunk_units, queue_state)
            frames.append(f)
        return self.vocoder(torch.cat(frames, dim=1)), units
