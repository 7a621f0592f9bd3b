"""The training recipe, icefall style: numbered stages driven by one YAML config.

    streamer train --config configs/train/en-es.yaml [--stage ssl|units|s2ut|vocoder|package|all]

Stages read and write files under `work_dir`, so each can be re-run alone. Everything is seeded.
`--stage unpack` (not part of `all`) turns the packaged model in `output_dir` back into a work dir's
checkpoints, so that a `resume: true` phase goes on from the shipped weights on a machine without the
work dir that trained them.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from streamer.errors import StreamerError
from streamer.models.encoder import CausalEncoder
from streamer.models.s2st import S2STModel
from streamer.models.unit_lm import LM_NAME
from streamer.models.units import UnitExtractor, dedup, silent_units
from streamer.train import s2ut, ssl, vocoder_train
from streamer.train.data import Utterance, load_utterances
from streamer.train.grow import set_decoder_depth, transformer_depth
from streamer.train.history import earlier_history, write_history
from streamer.train.kmeans import kmeans
from streamer.train.recipe_config import RecipeConfig
from streamer.train.soup import cook
from streamer.train.targets import context_durations, layer_features, phoneme_labels, unique_targets

if TYPE_CHECKING:
    from streamer.train.phonemes import PhonemeInventory

log = logging.getLogger(__name__)
STAGES = ("ssl", "units", "s2ut", "vocoder", "lm", "package")
EXTRA_STAGES = ("unpack", "durations")


class Recipe:
    def __init__(self, cfg: RecipeConfig) -> None:
        self.cfg = cfg
        self.work = Path(cfg.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.ssl_dir = cfg.ssl_path
        self._data: dict[str, list[Utterance]] = {}

    # -- data ---------------------------------------------------------------------------------
    def data(self, split: str, *, src_lang: str | None = None) -> list[Utterance]:
        key = f"{split}:{src_lang}"
        if key not in self._data:
            limit = self.cfg.train_limit if split == "train" else None
            self._data[key] = load_utterances(self.cfg.corpus, splits={split}, src_lang=src_lang,
                                              limit=limit, seed=self.cfg.seed)
            log.info("loaded %d %s utterances (%s)", len(self._data[key]), split, src_lang or "both")
        return self._data[key]

    def augmenters(self, changes: dict | None = None):
        """(full augmenter, timing-preserving channel augmenter, speed-only augmenter) of the recipe's
        augment settings with `changes` (an S2UT phase's) on top."""
        from streamer.train import augment

        cfg = self.cfg.augment_config(changes)
        full = augment.Augmenter(cfg)
        channel = augment.Augmenter(replace(cfg, p_silence=0.0, p_speed=0.0))

        def channel_only(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            y = channel(x, rng)
            return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]

        def speed_only(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return augment.speed(x, float(rng.uniform(*cfg.speed))) if rng.random() < cfg.p_speed else x

        return full, channel_only, speed_only

    # -- stages -------------------------------------------------------------------------------
    def stage_ssl(self) -> None:
        torch.manual_seed(self.cfg.seed)
        phases = self.cfg.ssl_phases
        if phases[0].teacher_layer and not phases[0].resume:
            raise StreamerError("ssl.teacher_layer (HuBERT iteration 2) needs an encoder to copy as its teacher: "
                                f"a phase before it, or resume: true (the SSL encoder saved in {self.ssl_dir})")
        history_path = self.ssl_dir / "ssl_history.json"
        history = earlier_history(history_path, ("loss", "masked_acc"), resume=phases[0].resume)
        if phases[0].resume:
            log.info("resuming from %s", self.ssl_dir / "encoder.safetensors")
            encoder = self.load_ssl_encoder()
        else:
            encoder = CausalEncoder(self.cfg.encoder)
        _, channel, speed = self.augmenters()
        for n, phase in enumerate(phases, 1):
            if len(phases) > 1:
                log.info("ssl phase %d/%d", n, len(phases))
            done = ssl.pretrain(encoder, self.data("train"), phase, channel_augment=channel, speed_augment=speed)
            for key, values in done.items():
                history[key] += values
        self.ssl_dir.mkdir(parents=True, exist_ok=True)
        save_weights(encoder, self.ssl_dir / "encoder.safetensors", config=self.cfg.encoder.to_dict())
        write_history(history_path, history, "SSL pretraining")

    def load_ssl_encoder(self) -> CausalEncoder:
        if not (self.ssl_dir / "encoder.safetensors").is_file():
            raise StreamerError(f"no SSL encoder in {self.ssl_dir}: run the ssl stage first")
        encoder = CausalEncoder(self.cfg.encoder)
        encoder.load_state_dict(load_file(str(self.ssl_dir / "encoder.safetensors")))
        return encoder.eval()

    def stage_units(self) -> None:
        if self.cfg.units.kind == "phoneme":
            return self.phoneme_units()
        encoder = self.load_ssl_encoder()
        clips = unique_targets(self.data("train", src_lang=self.cfg.source_lang)
                               + self.data("dev", src_lang=self.cfg.source_lang))
        feats = {key: layer_features(encoder, audio, self.cfg.units.layer) for key, audio in clips.items()}
        x = torch.cat(list(feats.values()))
        gen = torch.Generator().manual_seed(self.cfg.seed)
        x = x[torch.randperm(len(x), generator=gen)[:200_000]]
        centroids = kmeans(x, self.cfg.units.num_units, seed=self.cfg.seed)
        extractor = UnitExtractor(centroids, self.cfg.units)
        extractor.save(self.work / "units.safetensors")
        # The target units of every clip, from the features already computed (the cache the later stages read).
        frame_units = {k: extractor.frame_units(f).numpy() for k, f in feats.items()}
        np.savez(self.work / "target_units.npz", **frame_units)
        # Units that stand for silence are left out of the decoder's targets: the queue makes silence by itself
        # when it runs dry, and a decoder taught to open every utterance with them speaks at every stream start.
        keys = list(frame_units)
        silence = silent_units([frame_units[k] for k in keys], [clips[k] for k in keys], self.cfg.units.num_units)
        (self.work / "silence_units.json").write_text(json.dumps(silence.tolist()))
        log.info("units: %d centroids from %d frames of %d target clips", len(centroids), len(x), len(clips))

    def phoneme_units(self) -> None:
        """Units = the espeak target voice's phonemes, frame by frame (`streamer.train.phonemes`)."""
        from streamer.train.phonemes import PhonemeInventory

        utts = self.data("train", src_lang=self.cfg.source_lang) + self.data("dev", src_lang=self.cfg.source_lang)
        labels = phoneme_labels(utts, self.cfg.target_lang, self.cfg.encoder.frame_samples)
        inventory = PhonemeInventory.build(list(labels.values()), self.cfg.units.num_units)
        inventory.save(self.work / "phonemes.json")
        np.savez(self.work / "target_units.npz", **{k: inventory.ids(v) for k, v in labels.items()})
        (self.work / "silence_units.json").write_text(json.dumps([0]))
        log.info("units: %d phonemes over %d target clips", len(inventory.names), len(labels))

    def frame_units(self, utterances: list[Utterance]) -> dict[str, np.ndarray]:
        """Frame units of every target clip of `utterances`, by `tgt_key`, from the on-disk cache."""
        cache_path = self.work / "target_units.npz"
        cache = dict(np.load(cache_path)) if cache_path.is_file() else {}
        todo = [u for u in utterances if u.tgt_key not in cache]
        if todo and self.cfg.units.kind == "phoneme":
            from streamer.train.phonemes import PhonemeInventory

            inventory = PhonemeInventory.load(self.work / "phonemes.json")
            labels = phoneme_labels(todo, self.cfg.target_lang, self.cfg.encoder.frame_samples)
            cache.update({k: inventory.ids(v) for k, v in labels.items()})
        elif todo:
            encoder = self.load_ssl_encoder()
            extractor = UnitExtractor.load(self.work / "units.safetensors")
            for key, audio in unique_targets(todo).items():
                cache[key] = extractor.frame_units(layer_features(encoder, audio, extractor.cfg.layer)).numpy()
        if todo:
            np.savez(cache_path, **cache)
        return {u.tgt_key: cache[u.tgt_key] for u in utterances}

    def target_units(self, utterances: list[Utterance]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per utterance: (deduplicated units without silence units, frame units) of its target audio."""
        by_key = self.frame_units(utterances)
        frames = [by_key[u.tgt_key] for u in utterances]
        silence_path = self.work / "silence_units.json"
        silence = np.asarray(json.loads(silence_path.read_text()) if silence_path.is_file() else [], dtype=np.int64)
        deduped = [dedup(f)[0] for f in frames]
        return [d[~np.isin(d, silence)] for d in deduped], frames

    def stage_s2ut(self) -> None:
        torch.manual_seed(self.cfg.seed)
        (self.work / LM_NAME).unlink(missing_ok=True)  # its weight and bonus were tuned for other weights
        out = self.work / "s2ut.safetensors"
        phases = self.cfg.s2ut_phases
        depths = self.decoder_depths()
        saved = load_file(str(out)) if phases[0].resume and out.is_file() else None
        start = transformer_depth(saved, "decoder.transformer") if saved else depths[0]
        if start > depths[0]:
            raise StreamerError(f"{out} has {start} decoder layers, more than the first phase's {depths[0]}")
        config = self.cfg.model_config()
        model = S2STModel(replace(config, decoder=replace(config.decoder, num_layers=start)))
        if saved:
            model.load_state_dict(saved)
            log.info("resuming from %s", out)
        else:
            model.encoder.load_state_dict(self.load_ssl_encoder().state_dict())
        train = self.data("train", src_lang=self.cfg.source_lang)
        dev = self.data("dev", src_lang=self.cfg.source_lang)
        train_units, _ = self.target_units(train)
        dev_units, _ = self.target_units(dev)
        task = self.source_task(train) if any(r.source_ctc_weight > 0 for r in self.cfg.s2ut_runs) else None
        head_out = self.work / "s2ut_source_head.safetensors"

        history_path = self.work / "s2ut_history.json"
        history = earlier_history(history_path, ("loss", "dev_uer"), resume=saved is not None)

        def save(running: dict[str, list[float]] | None = None) -> None:
            """Weights, and the curve up to them: the finished phases' plus the running phase's so far."""
            save_weights(model, out)
            if task is not None:
                save_weights(task.head, head_out)
            curves = {key: values + (running or {}).get(key, []) for key, values in history.items()}
            write_history(history_path, curves, "S2UT (CTC) training")

        if task is not None:
            resume(task.head, head_out, enabled=phases[0].resume)

        def train_run(run: s2ut.S2UTConfig) -> dict[str, list[float]]:
            source = replace(task, weight=run.source_ctc_weight) if task and run.source_ctc_weight > 0 else None
            return s2ut.train(model, train, train_units, run, dev_set=dev, dev_targets=dev_units,
                              augment=self.augmenters(run.augment)[0], checkpoint=save, source=source)

        for n, phase in enumerate(phases, 1):
            if len(phases) > 1:
                log.info("s2ut phase %d/%d", n, len(phases))
            if added := set_decoder_depth(model, depths[n - 1]):
                log.info("decoder grown by %d identity layers to %d", added, depths[n - 1])
            done = cook([model, *([task.head] if task else [])], phase.soup_runs(), train_run)
            if phase.soup:  # the history is the phase as written; its last point, the soup's dev error
                tail = int(phase.tail_silence_s * config.sample_rate)
                done["dev_uer"].append(s2ut.evaluate(model, dev, dev_units, tail_samples=tail))
                log.info("s2ut soup of %d runs: dev UER %.3f", len(phase.soup) + 1, done["dev_uer"][-1])
            for key, values in done.items():
                history[key] += values
        save()

    def decoder_depths(self) -> list[int]:
        """Each S2UT phase's decoder depth: never shrinking, the last one the recipe's decoder.num_layers."""
        final = self.cfg.decoder.num_layers
        depths = [p.decoder_layers or final for p in self.cfg.s2ut_phases]
        if depths != sorted(depths) or depths[-1] != final:
            raise StreamerError(f"s2ut phase decoder_layers {depths} must not decrease and must end at "
                                f"decoder.num_layers ({final})")
        return depths

    def source_task(self, train: list[Utterance]) -> s2ut.SourceTask:
        """The auxiliary source-phoneme CTC task: espeak-ng's phonemes of each source text (weight: the
        largest of the S2UT runs'; each run trains with its own)."""
        inventory, targets = self.source_targets(train, train)
        with torch.random.fork_rng():  # its init depends on the seed alone, not on what ran before
            torch.manual_seed(self.cfg.seed)
            head = torch.nn.Linear(self.cfg.encoder.dim, len(inventory.names) + 1)  # id 0 (silence) never used
        weight = max(r.source_ctc_weight for r in self.cfg.s2ut_runs)
        log.info("source phoneme CTC: %d phonemes, weight %.2f", len(inventory.names), weight)
        return s2ut.SourceTask(head, targets, weight)

    def source_targets(self, train: list[Utterance], utterances: list[Utterance]
                       ) -> tuple[PhonemeInventory, list[np.ndarray]]:
        """The source-phoneme inventory of `train` (the head's classes) and each utterance's phoneme ids."""
        from streamer.train import synth
        from streamer.train.phonemes import PhonemeInventory, phoneme_sequence

        everyone = [*train, *utterances]
        if any(not u.src_text for u in everyone):
            raise StreamerError("source phonemes need the source text of every utterance")
        voice = synth.target_voice(self.cfg.source_lang)  # any espeak voice of the language: its phonemes
        cache_path = self.work / "source_phonemes.json"
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        texts = sorted({u.src_text for u in everyone} - set(cache))
        if texts:
            cache.update({t: phoneme_sequence(t, voice) for t in texts})
            cache_path.write_text(json.dumps(cache, ensure_ascii=False))
        inventory = PhonemeInventory.build([cache[u.src_text] for u in train], 10_000)
        known = set(inventory.names)  # a held-out sentence may hold a phoneme training never had
        return inventory, [inventory.ids([p for p in cache[u.src_text] if p in known]) for u in utterances]

    def stage_vocoder(self) -> None:
        torch.manual_seed(self.cfg.seed)
        model = S2STModel(self.cfg.model_config())
        train = self.data("train", src_lang=self.cfg.source_lang)
        clips = unique_targets(train)
        by_key = self.frame_units(train)
        frames = [by_key[k] for k in clips]
        fs = self.cfg.vocoder.frame_samples
        audios = [audio[: len(f) * fs] for f, audio in zip(frames, clips.values(), strict=True)]
        out, history_path = self.work / "vocoder.safetensors", self.work / "vocoder_history.json"
        phases = self.cfg.vocoder_phases
        resume(model.vocoder, out, enabled=phases[0].resume)
        history = earlier_history(history_path, ("loss",), resume=phases[0].resume)
        for n, phase in enumerate(phases, 1):
            if len(phases) > 1:
                log.info("vocoder phase %d/%d", n, len(phases))
            done = vocoder_train.train(model.vocoder, frames, audios, phase,
                                       checkpoint=lambda step: save_weights(model.vocoder, out))
            history["loss"] += done["loss"]
        save_weights(model.vocoder, out)
        write_history(history_path, history, "vocoder training")
        self._save_durations(frames)

    def stage_durations(self) -> None:
        """The queue's duration table alone, to re-time a packaged model: `--stage unpack,durations,package`."""
        train = self.data("train", src_lang=self.cfg.source_lang)
        by_key = self.frame_units(train)
        self._save_durations([by_key[k] for k in unique_targets(train)])

    def _save_durations(self, frames: list[np.ndarray]) -> None:
        """The queue's duration table (`queue.duration_context` previous units) from the target frame units."""
        table = context_durations(frames, self.cfg.units.num_units, self.cfg.queue.duration_context)
        save_file({"durations": table}, str(self.work / "durations.safetensors"))

    def stage_lm(self) -> None:
        from streamer.train.unit_lm_stage import run_lm_stage

        run_lm_stage(self, self.cfg.lm)

    def stage_package(self) -> Path:
        from streamer.assets import sha256
        from streamer.models.checkpoint import save_model

        model = S2STModel(self.cfg.model_config())
        weights = load_file(str(self.work / "s2ut.safetensors"))
        weights.update({f"vocoder.{k}": v for k, v in load_file(str(self.work / "vocoder.safetensors")).items()})
        weights["queue.durations"] = load_file(str(self.work / "durations.safetensors"))["durations"]
        model.load_state_dict(weights)
        out = Path(self.cfg.output_dir)
        path = save_model(model.eval(), out, extra={"name": self.cfg.name, "recipe": json.dumps(self.cfg.name)})
        # k-means units need the SSL encoder to be computed; phoneme units are a table of names.
        if self.cfg.units.kind == "phoneme":
            unit_files, stale = {"phonemes.json": self.work / "phonemes.json"}, ["units.safetensors",
                                                                                 "ssl_encoder.safetensors"]
        else:
            unit_files = {"units.safetensors": self.work / "units.safetensors",
                          "ssl_encoder.safetensors": self.ssl_dir / "encoder.safetensors"}
            stale = ["phonemes.json"]
        for name in stale:  # the other kind's files from an earlier package
            (out / name).unlink(missing_ok=True)
        (out / LM_NAME).unlink(missing_ok=True)  # an earlier package's LM belongs to other weights
        if (self.work / LM_NAME).is_file():
            unit_files[LM_NAME] = self.work / LM_NAME
        for name, src in unit_files.items():
            shutil.copy(src, out / name)
        names = [path.name, *unit_files]
        (out / "SHA256SUMS").write_text("".join(f"{sha256(out / n)}  {n}\n" for n in names))
        from streamer.train.model_card import write_model_card

        write_model_card(out, model, name=self.cfg.name, work_dir=self.work, ssl_dir=self.ssl_dir,
                         corpus=self.cfg.corpus, noise_only_prob=self.cfg.noise_only_prob)
        log.info("packaged %s (%.1f MB)", path, path.stat().st_size / 1e6)
        return path

    def stage_unpack(self) -> None:
        """The packaged model (`output_dir`) as this work dir's S2UT, vocoder, durations and phoneme table.

        The auxiliary source-phoneme head is not shipped: a resumed phase starts it afresh.
        """
        from streamer.models.checkpoint import load_model

        package = Path(self.cfg.output_dir)
        if self.cfg.units.kind != "phoneme":  # k-means units also need the silence units the units stage finds
            raise StreamerError("unpack needs a phoneme-unit model; re-run the units stage for k-means units")
        packaged = load_model(package)
        config = self.cfg.model_config()
        # a phase may deepen the decoder, and the durations stage may re-time the queue
        if replace(packaged.cfg, decoder=config.decoder, queue=config.queue) != config:
            raise StreamerError(f"the model in {package} was not built by this recipe's config "
                                "(its encoder, vocoder, units or languages differ)")
        save_weights(packaged, self.work / "s2ut.safetensors")
        save_weights(packaged.vocoder, self.work / "vocoder.safetensors")
        save_file({"durations": packaged.queue.durations.contiguous()}, str(self.work / "durations.safetensors"))
        shutil.copy(package / "phonemes.json", self.work / "phonemes.json")
        if (package / LM_NAME).is_file():  # kept for a re-timed package of the same weights
            shutil.copy(package / LM_NAME, self.work / LM_NAME)
        (self.work / "silence_units.json").write_text(json.dumps([0]))
        (self.work / "s2ut_history.json").unlink(missing_ok=True)  # another run's curves: not these weights'
        log.info("unpacked %s (decoder %d layers) into %s", package, packaged.cfg.decoder.num_layers, self.work)

    def run(self, stages: list[str]) -> None:
        unknown = sorted(set(stages) - set(STAGES) - set(EXTRA_STAGES))
        if unknown:
            raise StreamerError(f"unknown training stage(s) {', '.join(unknown)}: "
                                f"choose from {', '.join(STAGES + EXTRA_STAGES)} or all")
        for stage in stages:
            start = time.time()
            log.info("stage %s: start", stage)
            getattr(self, f"stage_{stage}")()
            log.info("stage %s: done in %.0f s", stage, time.time() - start)


def resume(module: torch.nn.Module, path: Path, *, enabled: bool) -> None:
    """Load a stage's last checkpoint into `module` when resuming is enabled and there is one."""
    if enabled and path.is_file():
        module.load_state_dict(load_file(str(path)))
        log.info("resuming from %s", path)


def save_weights(module: torch.nn.Module, path: Path, *, config: dict | None = None) -> None:
    metadata = {"config": json.dumps(config)} if config else None
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path), metadata=metadata)


def main(config: str | Path, stages: str = "all") -> None:
    cfg = RecipeConfig.from_yaml(config)
    Recipe(cfg).run(list(STAGES) if stages == "all" else stages.split(","))
