"""A training recipe's config: one YAML file, its stages' settings as dataclasses.

`ssl:`, `s2ut:` and `vocoder_train:` may each be a list of phases, run in order on one model, so that a
shipped model's whole training, across sessions, is one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from streamer.config import DictConfig, read_yaml_mapping
from streamer.errors import StreamerError
from streamer.models.decoder import DecoderConfig
from streamer.models.encoder import EncoderConfig
from streamer.models.pacing import QueueConfig
from streamer.models.s2st import S2STConfig
from streamer.models.units import UnitConfig
from streamer.models.vocoder import VocoderConfig
from streamer.train import s2ut, ssl, vocoder_train
from streamer.train.augment import AugmentConfig
from streamer.train.unit_lm_stage import UnitLMConfig

T = TypeVar("T", bound=DictConfig)


YAML_KEYS = ("name", "corpus", "work_dir", "output_dir", "source_lang", "target_lang", "ssl_dir", "train_limit",
             "seed", "encoder", "decoder", "queue", "vocoder", "units", "ssl", "s2ut", "vocoder_train", "augment",
             "lm")


@dataclass(frozen=True)
class RecipeConfig:
    name: str
    corpus: str
    work_dir: str
    output_dir: str
    source_lang: str = "en"
    target_lang: str = "es"
    ssl_dir: str | None = None          # share one SSL encoder between directions
    train_limit: int | None = None
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    units: UnitConfig = field(default_factory=UnitConfig)
    # SSL phases (HuBERT iterations), run in order on one encoder; a YAML mapping is one phase, a list many
    ssl_phases: tuple[ssl.SSLConfig, ...] = (ssl.SSLConfig(),)
    # S2UT phases, run in order, each continuing from the last (a YAML mapping is one phase, a list many)
    s2ut_phases: tuple[s2ut.S2UTConfig, ...] = (s2ut.S2UTConfig(),)
    # vocoder phases, run in order on one vocoder, each continuing from the last (only the first's `resume` counts)
    vocoder_phases: tuple[vocoder_train.VocoderTrainConfig, ...] = (vocoder_train.VocoderTrainConfig(),)
    augment: dict = field(default_factory=dict)
    seed: int = 0
    lm: UnitLMConfig = field(default_factory=UnitLMConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RecipeConfig:
        d = read_yaml_mapping(path, what="training config", error=StreamerError)
        unknown = sorted(set(d) - set(YAML_KEYS))
        missing = [k for k in ("name", "corpus", "work_dir", "output_dir") if k not in d]
        problems = ([f"unknown keys {unknown}"] if unknown else []) + ([f"missing keys {missing}"] if missing else [])
        if problems:
            raise StreamerError(f"training config {path}: {'; '.join(problems)} (known: {', '.join(YAML_KEYS)})")
        k = d.get("units", {}).get("num_units", UnitConfig().num_units)
        cfg = cls(
            name=d["name"], corpus=d["corpus"], work_dir=d["work_dir"], output_dir=d["output_dir"],
            source_lang=d.get("source_lang", "en"), target_lang=d.get("target_lang", "es"),
            ssl_dir=d.get("ssl_dir"), train_limit=d.get("train_limit"),
            encoder=EncoderConfig.from_dict(d.get("encoder", {})),
            decoder=DecoderConfig.from_dict({**d.get("decoder", {}), "num_units": k}),
            queue=QueueConfig.from_dict({**d.get("queue", {}), "num_units": k}),
            vocoder=VocoderConfig.from_dict({**d.get("vocoder", {}), "num_units": k}),
            units=UnitConfig(**d.get("units", {})),
            ssl_phases=phases_of(d.get("ssl", {}), ssl.SSLConfig, "ssl"),
            s2ut_phases=phases_of(d.get("s2ut", {}), s2ut.S2UTConfig, "s2ut"),
            vocoder_phases=phases_of(d.get("vocoder_train", {}), vocoder_train.VocoderTrainConfig, "vocoder_train"),
            augment=d.get("augment", {}), seed=d.get("seed", 0), lm=UnitLMConfig.from_dict(d.get("lm", {})),
        )
        for run in cfg.s2ut_runs:  # a bad augment key fails here, not hours into training
            try:
                cfg.augment_config(run.augment)
            except (TypeError, ValueError) as e:
                raise StreamerError(f"training config {path}: augment: {e}") from e
        return cfg

    def augment_config(self, changes: dict | None = None) -> AugmentConfig:
        """The recipe's augment settings with `changes` (an S2UT phase's) on top."""
        return AugmentConfig.from_dict({**self.augment, **(changes or {})})

    @property
    def ssl_path(self) -> Path:
        """Where the SSL encoder lives: ssl_dir when directions share one, else work_dir."""
        return Path(self.ssl_dir or self.work_dir)

    @property
    def ssl(self) -> ssl.SSLConfig:
        """The last SSL phase."""
        return self.ssl_phases[-1]

    @property
    def s2ut_runs(self) -> list[s2ut.S2UTConfig]:
        """Every S2UT training run, in order: each phase as written, then its soup's other runs."""
        return [run for phase in self.s2ut_phases for run in phase.soup_runs()]

    @property
    def noise_only_prob(self) -> float:
        """The largest share of clips any S2UT run swapped for noise alone (0: none); the model card tells it."""
        return max(run.noise_only_prob for run in self.s2ut_runs)

    @property
    def s2ut(self) -> s2ut.S2UTConfig:
        """The last S2UT phase: the settings the trained model was left with (tail silence, ...)."""
        return self.s2ut_phases[-1]

    @property
    def vocoder_train(self) -> vocoder_train.VocoderTrainConfig:
        """The last vocoder phase."""
        return self.vocoder_phases[-1]

    def model_config(self) -> S2STConfig:
        decoder = replace(self.decoder, input_dim=self.encoder.dim)
        return S2STConfig(self.encoder, decoder, self.queue, self.vocoder,
                          source_lang=self.source_lang, target_lang=self.target_lang)


def phases_of(raw: dict | list[dict], config: type[T], stage: str) -> tuple[T, ...]:
    """A stage's settings in a recipe YAML: one mapping, or a non-empty list of them (phases)."""
    phases = raw if isinstance(raw, list) else [raw]
    if not phases or not all(isinstance(p, dict) for p in phases):
        raise StreamerError(f"{stage} must be a mapping of settings or a non-empty list of them (phases)")
    return tuple(config.from_dict(p) for p in phases)
