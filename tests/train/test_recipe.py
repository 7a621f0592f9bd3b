"""The whole training recipe, every stage, on the tiny corpus: a real (if tiny) model comes out."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from streamer.models.checkpoint import load_model
from streamer.models.units import dedup, edit_distance, edit_ops, silent_units
from streamer.pipeline import Translator
from streamer.train import augment
from streamer.train.recipe import Recipe, RecipeConfig

ROOT = Path(__file__).resolve().parents[2]


def test_every_stage_writes_its_outputs(trained: tuple[RecipeConfig, Path]) -> None:
    _, work = trained
    for name in ["encoder.safetensors", "ssl_history.json", "ssl_history.png", "units.safetensors",
                 "s2ut.safetensors", "s2ut_history.png", "vocoder.safetensors", "durations.safetensors",
                 "s2ut_source_head.safetensors", "source_phonemes.json",
                 "model/model.safetensors", "model/units.safetensors", "model/SHA256SUMS"]:
        assert (work / name).is_file() and (work / name).stat().st_size > 0, name


def test_packaged_model_translates_and_streams_like_offline(trained: tuple[RecipeConfig, Path]) -> None:
    _, work = trained
    model = load_model(work / "model")
    assert model.queue.durations.min() >= 1.0 and not torch.allclose(model.queue.durations, torch.ones(16))
    tr = Translator.from_dir(work / "model")
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(16_000)).astype(np.float32)
    out = tr.translate_array(speech, sample_rate=16_000)
    assert len(out) >= len(speech) and np.isfinite(out).all()


def test_training_is_reproducible(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """The same config and seed give bit-identical SSL weights (checked on the cheapest stage)."""
    cfg, work = trained
    again = replace(cfg, work_dir=str(tmp_path), ssl_dir=None)
    Recipe(again).run(["ssl"])
    a = (work / "encoder.safetensors").read_bytes()
    b = (tmp_path / "encoder.safetensors").read_bytes()
    assert a == b


def test_silence_units_are_left_out_of_decoder_targets(trained: tuple[RecipeConfig, Path]) -> None:
    cfg, work = trained
    silence = json.loads((work / "silence_units.json").read_text())
    recipe = Recipe(cfg)
    targets, frames = recipe.target_units(recipe.data("train", src_lang=cfg.source_lang))
    assert all(not set(t.tolist()) & set(silence) for t in targets)
    assert sum(len(t) for t in targets) > 0


def test_silent_units_by_energy() -> None:
    loud, quiet = 0.5 * np.ones(320, dtype=np.float32), np.zeros(320, dtype=np.float32)
    audio = np.concatenate([quiet, quiet, loud, loud, quiet, loud])
    units = np.array([0, 0, 1, 2, 2, 2])  # unit 0: always silent; unit 2: silent 1 frame of 3
    assert silent_units([units], [audio], 4).tolist() == [0]


def test_layer_features_cover_the_clip_after_a_silent_warmup() -> None:
    from streamer.models.encoder import CausalEncoder, EncoderConfig
    from streamer.train.targets import WARMUP_FRAMES, layer_features

    torch.manual_seed(0)
    enc = CausalEncoder(EncoderConfig(n_mels=16, dim=16, num_heads=2, num_layers=2, dropout=0.0)).eval()
    clip = (0.1 * np.random.default_rng(0).standard_normal(320 * 7 + 100)).astype(np.float32)
    feats = layer_features(enc, clip, 2)
    assert feats.shape == (8, 16)
    with torch.no_grad():
        padded = np.pad(clip, (320 * WARMUP_FRAMES, 220)).astype(np.float32)
        full = enc(torch.from_numpy(padded)[None], return_layers=True)[1][0]
    torch.testing.assert_close(feats, full[WARMUP_FRAMES:], atol=1e-6, rtol=1e-6)


def test_dedup_and_edit_distance() -> None:
    units, durations = dedup(np.array([3, 3, 5, 5, 5, 1, 3]))
    assert units.tolist() == [3, 5, 1, 3] and durations.tolist() == [2, 3, 1, 1]
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [4, 4]) == 2


def test_edit_ops_split_the_distance() -> None:
    """(substitutions, deletions, insertions) of hyp against ref; they always sum to the edit distance."""
    assert edit_ops([1, 3], [1, 2, 3]) == (0, 1, 0)
    assert edit_ops([1, 2, 9, 3], [1, 2, 3]) == (0, 0, 1)
    assert edit_ops([1, 7, 3], [1, 2, 3]) == (1, 0, 0)
    assert edit_ops([], [4, 4]) == (0, 2, 0) and edit_ops([5], []) == (0, 0, 1)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.integers(0, 4, rng.integers(0, 9)), rng.integers(0, 4, rng.integers(0, 9))
        assert sum(edit_ops(a, b)) == edit_distance(a, b)


@pytest.fixture(scope="module")
def trained_phonemes(trained: tuple[RecipeConfig, Path], tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[RecipeConfig, Path]:
    """The same tiny recipe with phoneme units, reusing the first run's SSL encoder."""
    import yaml

    base_cfg, base_work = trained
    work = tmp_path_factory.mktemp("run_phonemes")
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    d.update(corpus=base_cfg.corpus, work_dir=str(work), output_dir=str(work / "model"), ssl_dir=str(base_work),
             units={"kind": "phoneme", "num_units": 48})
    (work / "tiny-phonemes.yaml").write_text(yaml.safe_dump(d))
    cfg = RecipeConfig.from_yaml(work / "tiny-phonemes.yaml")
    Recipe(cfg).run(["units", "s2ut", "vocoder", "package"])
    return cfg, work


def test_phoneme_units_label_every_frame_and_package(trained_phonemes: tuple[RecipeConfig, Path]) -> None:
    from streamer.train.phonemes import PhonemeInventory

    cfg, work = trained_phonemes
    inventory = PhonemeInventory.load(work / "model/phonemes.json")
    assert inventory.names[0] == "_" and 20 < len(inventory.names) <= 48
    assert "phonemes.json" in (work / "model/SHA256SUMS").read_text()
    recipe = Recipe(cfg)
    train = recipe.data("train", src_lang=cfg.source_lang)
    targets, frames = recipe.target_units(train)
    for u, t, f in zip(train, targets, frames, strict=True):
        assert len(f) == -(-len(u.tgt) // 320) and 0 not in t.tolist()
        assert len(t) >= len(u.tgt_text.replace(" ", "")) // 2  # about one unit per letter
    tr = Translator.from_dir(work / "model")
    out = tr.translate_array(train[0].src, sample_rate=16_000)
    assert len(out) >= len(train[0].src) and np.isfinite(out).all()


def test_phoneme_units_refuse_targets_in_another_voice(trained_phonemes: tuple[RecipeConfig, Path]) -> None:
    from streamer.errors import StreamerError
    from streamer.train.targets import phoneme_labels

    cfg, _ = trained_phonemes
    u = Recipe(cfg).data("train", src_lang=cfg.source_lang)[0]
    other = replace(u, tgt=np.concatenate([u.tgt, u.tgt]), tgt_key="doubled")
    with pytest.raises(StreamerError, match="units.kind: ssl"):
        phoneme_labels([other], cfg.target_lang, 320)


def test_source_task_spells_each_source_text(trained: tuple[RecipeConfig, Path]) -> None:
    """The auxiliary CTC targets are espeak-ng's phonemes of each source text, one id per phoneme."""
    from streamer.train import synth
    from streamer.train.phonemes import phoneme_sequence

    cfg, work = trained
    recipe = Recipe(cfg)
    train = recipe.data("train", src_lang=cfg.source_lang)
    task = recipe.source_task(train)
    assert task.weight == 0.5 and task.head.in_features == cfg.encoder.dim
    voice = synth.target_voice(cfg.source_lang)
    for u, t in list(zip(train, task.targets, strict=True))[:5]:
        assert len(t) == len(phoneme_sequence(u.src_text, voice)) >= 2
        assert t.min() >= 1 and t.max() < task.head.out_features - 1  # never silence, never the blank


def test_diagnosis_separates_hearing_from_translating(trained: tuple[RecipeConfig, Path]) -> None:
    """benchmarks/s2ut_diagnosis.py on the tiny model: both heads decode every utterance; the rates add up."""
    import importlib.util

    from streamer.train.s2ut import decode

    spec = importlib.util.spec_from_file_location("s2ut_diagnosis", ROOT / "benchmarks/s2ut_diagnosis.py")
    diagnosis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnosis)
    cfg, work = trained
    recipe = Recipe(cfg)
    model = load_model(work / "model")
    head = recipe.source_task(recipe.data("train", src_lang=cfg.source_lang)).head
    head.load_state_dict(load_file(str(work / "s2ut_source_head.safetensors")))
    dev = recipe.data("dev", src_lang=cfg.source_lang)
    units, spelled = decode(model, dev, source_head=head)
    assert len(units) == len(spelled) == len(dev)
    assert decode(model, dev)[1] == []
    row = diagnosis.diagnose(recipe, model, head, "dev", 10)
    for part in ("target", "source"):
        r = row[part]
        assert r["error"] == pytest.approx(r["sub"] + r["del"] + r["ins"]) and r["error"] >= 0
    voices = row["voices"]
    assert sum(v["n"] for v in voices.values()) == row["n"] == len(dev[:10])
    assert {f"{u.engine}/{u.voice}" for u in dev[:10]} == set(voices)
    assert "| dev |" in diagnosis.markdown([row], "x")
    heard: list[int] = []
    same = diagnosis.diagnose(recipe, model, head, "dev", 10, lambda x: heard.append(len(x)) or x)
    assert heard == [len(u.src) for u in dev[:10]] and same == row  # every clip goes through the channel
    assert diagnosis.CHANNELS["narrowband"] is augment.narrowband
    _check_paired_comparison(row)


def _check_paired_comparison(row: dict) -> None:
    """Per-utterance counts pool to the set's rates, and benchmarks/diagnosis_compare.py reads them paired."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("diagnosis_compare", ROOT / "benchmarks/diagnosis_compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    utts = row["utterances"]
    assert len({u["id"] for u in utts}) == len(utts) == row["n"]
    for part in ("target", "source"):
        assert compare.error([u[part] for u in utts]) == pytest.approx(100 * row[part]["error"])
    same = compare.compare({"rows": [row]}, {"rows": [row]}, resamples=50, seed=0)
    assert [(r.metric, r.b - r.a, r.low, r.high, r.b_ahead) for r in same] == [
        ("target unit error %", 0, 0, 0, 0), ("source unit error %", 0, 0, 0, 0)]
    worse = {**row, "utterances": [{**u, "target": [u["target"][0] + 1, u["target"][1]]} for u in utts]}
    rows = compare.compare({"rows": [row]}, {"rows": [worse]}, resamples=50, seed=0)
    assert rows[0].b > rows[0].a and rows[0].low > 0 and rows[0].b_ahead == 0
    assert "| dev | target unit error % |" in compare.markdown(rows, "a", "b", 50)
    with pytest.raises(SystemExit, match="share no scored utterances"):
        compare.compare({"rows": [row]}, {"rows": [{**row, "split": "other"}]}, resamples=5, seed=0)


def test_s2ut_phases_continue_one_another(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """A list under `s2ut:` runs its phases in order on one model: a phase cut short by `stop_step`, then
    one with the source task; the history is both phases', and the weights and history equal running them
    one by one (the second run resuming)."""
    import yaml

    from streamer.errors import StreamerError
    from streamer.train.recipe_config import phases_of
    from streamer.train.s2ut import S2UTConfig

    cfg, work = trained
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    first = {"epochs": 3, "max_steps": 20, "stop_step": 2, "warmup_steps": 1, "max_batch_samples": 320000}
    second = {**d["s2ut"], "seed": 1}
    d.update(corpus=cfg.corpus, ssl_dir=str(work), s2ut=[first, second])
    chained_dir, stepwise_dir = tmp_path / "chained", tmp_path / "stepwise"
    chained = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "chain.yaml", d)), work_dir=str(chained_dir))
    assert [p.stop_step for p in chained.s2ut_phases] == [2, None] and chained.s2ut.seed == 1
    chained_dir.mkdir()
    shutil.copy(work / "target_units.npz", chained_dir)
    shutil.copy(work / "silence_units.json", chained_dir)
    Recipe(chained).run(["s2ut"])
    history = json.loads((chained_dir / "s2ut_history.json").read_text())
    assert len(history["dev_uer"]) == 2 and len(history["loss"]) > 2

    stepwise_dir.mkdir()
    for name in ("target_units.npz", "silence_units.json"):
        shutil.copy(work / name, stepwise_dir)
    for phase in (first, {**second, "resume": True}):
        one = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "one.yaml", {**d, "s2ut": phase})),
                      work_dir=str(stepwise_dir))
        Recipe(one).run(["s2ut"])
    a = load_file(str(chained_dir / "s2ut.safetensors"))
    b = load_file(str(stepwise_dir / "s2ut.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run appends to the first run's curves: one history, the same as the chained run's
    assert json.loads((stepwise_dir / "s2ut_history.json").read_text()) == history
    with pytest.raises(StreamerError, match="non-empty list"):
        phases_of([], S2UTConfig, "s2ut")


def test_s2ut_run_cut_short_keeps_its_curve(trained: tuple[RecipeConfig, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed mid-phase (a session's end) leaves the weights of its last epoch and the curve up to
    them; resuming appends to that curve."""
    import yaml

    from streamer.train import s2ut

    cfg, work = trained
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    d.update(corpus=cfg.corpus, ssl_dir=str(work), s2ut={**d["s2ut"], "epochs": 3})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("target_units.npz", "silence_units.json"):
        shutil.copy(work / name, run_dir)
    three_epochs = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "cut.yaml", d)), work_dir=str(run_dir))
    evaluate, calls = s2ut.evaluate, []

    def killed_in_epoch_two(*args, **kwargs) -> float:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(s2ut, "evaluate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        Recipe(three_epochs).run(["s2ut"])
    cut = json.loads((run_dir / "s2ut_history.json").read_text())
    steps_per_epoch = len(cut["loss"])
    assert len(cut["dev_uer"]) == 1 and steps_per_epoch > 0
    assert (run_dir / "s2ut_history.png").is_file() and (run_dir / "s2ut.safetensors").is_file()

    monkeypatch.setattr(s2ut, "evaluate", evaluate)
    resumed = replace(three_epochs, s2ut_phases=(replace(three_epochs.s2ut, epochs=1, resume=True),))
    Recipe(resumed).run(["s2ut"])
    history = json.loads((run_dir / "s2ut_history.json").read_text())
    assert history["loss"][:steps_per_epoch] == cut["loss"] and len(history["loss"]) == 2 * steps_per_epoch
    assert history["dev_uer"][0] == cut["dev_uer"][0] and len(history["dev_uer"]) == 2


def test_s2ut_phase_changes_the_augmentation(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """A phase's `augment` goes over the recipe's settings for that phase alone; a bad key fails at load."""
    import yaml

    from streamer.errors import StreamerError

    cfg, _ = trained
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    d.update(augment={"p_telephone": 0.1}, s2ut=[d["s2ut"], {**d["s2ut"], "augment": {"p_narrowband": 0.3}}])
    loaded = RecipeConfig.from_yaml(_write_yaml(tmp_path / "aug.yaml", d))
    recipe = Recipe(replace(loaded, corpus=cfg.corpus))
    first, second = (recipe.augmenters(p.augment)[0].config for p in loaded.s2ut_phases)
    assert (first.p_narrowband, first.p_telephone) == (0.0, 0.1)
    assert (second.p_narrowband, second.p_telephone) == (0.3, 0.1)
    d["s2ut"][1]["augment"] = {"p_narowband": 0.3}
    with pytest.raises(StreamerError, match="p_narowband"):
        RecipeConfig.from_yaml(_write_yaml(tmp_path / "bad.yaml", d))


def test_vocoder_phases_continue_one_another(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """A list under `vocoder_train:` runs its phases in order on one vocoder, like running them one by one
    with the second resuming: the same weights, and one history over both."""
    import yaml

    cfg, work = trained
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    first = {**d["vocoder_train"], "steps": 6}
    second = {**d["vocoder_train"], "steps": 4, "lr": 1e-3, "seed": 1}
    d.update(corpus=cfg.corpus, ssl_dir=str(work), vocoder_train=[first, second])
    dirs = {name: tmp_path / name for name in ("chained", "stepwise")}
    for folder in dirs.values():
        folder.mkdir()
        shutil.copy(work / "target_units.npz", folder)
    chained = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "chain.yaml", d)), work_dir=str(dirs["chained"]))
    assert [p.steps for p in chained.vocoder_phases] == [6, 4] and chained.vocoder_train.seed == 1
    Recipe(chained).run(["vocoder"])
    for phase in (first, {**second, "resume": True}):
        one = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "one.yaml", {**d, "vocoder_train": phase})),
                      work_dir=str(dirs["stepwise"]))
        Recipe(one).run(["vocoder"])
    a, b = (load_file(str(folder / "vocoder.safetensors")) for folder in dirs.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads((folder / "vocoder_history.json").read_text()) for folder in dirs.values()]
    assert len(history[0]["loss"]) == 10 and history[0] == history[1]
    trained_alone = load_file(str(work / "vocoder.safetensors"))  # the fixture's one 10-step phase differs
    assert not all(torch.equal(a[k], trained_alone[k]) for k in a)


def _write_yaml(path: Path, d: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(d))
    return path


def test_ssl_iteration_two_learns_the_teachers_clusters(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """HuBERT iteration 2: targets are k-means clusters of a layer of a frozen copy of the encoder so far.
    As a second SSL phase it gives the same weights as resuming the first phase's saved encoder; the loss
    curve covers both; a first phase with a teacher but nothing to copy is refused."""
    from streamer.errors import StreamerError
    from streamer.models.encoder import CausalEncoder
    from streamer.train import ssl

    cfg, work = trained
    iteration_two = replace(cfg.ssl, teacher_layer=2, seed=1)
    chained = replace(cfg, work_dir=str(tmp_path / "chained"), ssl_dir=None, ssl_phases=(cfg.ssl, iteration_two))
    Recipe(chained).run(["ssl"])
    (tmp_path / "stepwise").mkdir()
    shutil.copy(work / "encoder.safetensors", tmp_path / "stepwise")
    shutil.copy(work / "ssl_history.json", tmp_path / "stepwise")
    first = load_file(str(work / "encoder.safetensors"))
    stepwise = replace(cfg, work_dir=str(tmp_path / "stepwise"), ssl_dir=None,
                       ssl_phases=(replace(iteration_two, resume=True),))
    Recipe(stepwise).run(["ssl"])
    a = load_file(str(tmp_path / "chained/encoder.safetensors"))
    b = load_file(str(tmp_path / "stepwise/encoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a) and any(not torch.equal(a[k], first[k]) for k in a)
    for run in ("chained", "stepwise"):
        history = json.loads((tmp_path / run / "ssl_history.json").read_text())
        assert len(history["loss"]) == len(history["masked_acc"]) == 2 * cfg.ssl.steps
    with pytest.raises(StreamerError, match="teacher"):
        Recipe(replace(chained, ssl_phases=(iteration_two,))).run(["ssl"])

    encoder = CausalEncoder(cfg.encoder)
    encoder.load_state_dict(first)
    features = ssl.teacher_features(encoder, 2)
    clips = [u.src for u in Recipe(cfg).data("train")[:8]]
    targets = ssl.Targets(features, clips, iteration_two)
    audio = torch.from_numpy(clips[0][: len(clips[0]) // 320 * 320])[None]
    labels = targets(audio)
    assert labels.shape == (1, audio.shape[1] // 320)
    used = {k for c in clips for k in targets(torch.from_numpy(c[: len(c) // 320 * 320])[None])[0].tolist()}
    assert len(used) > cfg.ssl.num_clusters // 2
    encoder.load_state_dict(b)  # the teacher is a frozen copy: training the student leaves it alone
    assert torch.equal(labels, targets(audio))


def test_s2ut_phase_deepens_the_decoder(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """A phase with `decoder_layers: 1` then one at the recipe's 2 layers: the decoder grows between them
    and the packaged model has 2; resuming a 1-layer checkpoint at 2 layers grows it too; depths that
    shrink, or end below decoder.num_layers, are refused."""
    import yaml
    from safetensors.torch import save_file

    from streamer.errors import StreamerError
    from streamer.train.grow import transformer_depth

    cfg, work = trained
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    base = d["s2ut"]
    shallow = {**base, "decoder_layers": 1}
    d.update(corpus=cfg.corpus, ssl_dir=str(work), decoder={**d["decoder"], "num_layers": 2},
             s2ut=[shallow, {**base, "seed": 1}])
    for name in ("target_units.npz", "silence_units.json", "units.safetensors", "vocoder.safetensors",
                 "durations.safetensors"):
        shutil.copy(work / name, tmp_path)
    deep = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "deep.yaml", d)), work_dir=str(tmp_path),
                   output_dir=str(tmp_path / "model"))
    Recipe(deep).run(["s2ut", "package"])
    assert transformer_depth(load_file(str(tmp_path / "s2ut.safetensors")), "decoder.transformer") == 2
    assert len(json.loads((tmp_path / "s2ut_history.json").read_text())["dev_uer"]) == 2
    assert load_model(tmp_path / "model").cfg.decoder.num_layers == 2

    one_layer = {k: v for k, v in load_file(str(tmp_path / "s2ut.safetensors")).items()
                 if not k.startswith("decoder.transformer.layers.1.")}
    save_file(one_layer, str(tmp_path / "s2ut.safetensors"))
    d["s2ut"] = {**base, "resume": True, "max_steps": 1}
    resumed = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "resume.yaml", d)), work_dir=str(tmp_path))
    Recipe(resumed).run(["s2ut"])
    after = load_file(str(tmp_path / "s2ut.safetensors"))
    assert transformer_depth(after, "decoder.transformer") == 2
    key = "decoder.transformer.layers.0.attn.qkv.weight"  # one short step from the saved weights, not a fresh init
    assert torch.allclose(after[key], one_layer[key], atol=1e-2)
    for phases in ([{**shallow, "decoder_layers": 2}, shallow], [shallow]):
        d["s2ut"] = phases
        bad = replace(RecipeConfig.from_yaml(_write_yaml(tmp_path / "bad.yaml", d)), work_dir=str(tmp_path))
        with pytest.raises(StreamerError, match="decoder_layers"):
            Recipe(bad).run(["s2ut"])


def test_unpack_goes_on_from_a_packaged_model(trained_phonemes: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """On a machine without the work dir that trained it, `unpack` turns the packaged model back into
    checkpoints: packaging them again gives the same weights, and a resumed S2UT phase starts from them
    (no SSL encoder needed), deepening the decoder if asked, with a history of its own. A model of another
    shape and unknown stage names are refused."""
    from streamer.errors import StreamerError
    from streamer.train.grow import transformer_depth

    cfg, work = trained_phonemes
    shipped = tmp_path / "shipped"
    shutil.copytree(work / "model", shipped)
    before = load_file(str(shipped / "model.safetensors"))
    fresh = replace(cfg, work_dir=str(tmp_path / "work"), ssl_dir=str(tmp_path / "no-ssl"), output_dir=str(shipped))
    Recipe(fresh).run(["unpack", "package"])
    after = load_file(str(shipped / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    phase = replace(cfg.s2ut, resume=True, max_steps=1, warmup_steps=1)
    deeper = replace(cfg.decoder, num_layers=cfg.decoder.num_layers + 1)
    stale = {"loss": [9.0] * 5, "dev_uer": [0.9]}   # a history left by another run in this work dir
    (tmp_path / "work/s2ut_history.json").write_text(json.dumps(stale))
    Recipe(replace(fresh, decoder=deeper, s2ut_phases=(phase,))).run(["unpack", "s2ut"])
    resumed = load_file(str(tmp_path / "work/s2ut.safetensors"))
    assert len(json.loads((tmp_path / "work/s2ut_history.json").read_text())["loss"]) == 1  # unpack dropped it
    key = "decoder.transformer.layers.0.attn.qkv.weight"
    assert not torch.equal(resumed[key], before[key]) and torch.allclose(resumed[key], before[key], atol=1e-2)
    assert transformer_depth(resumed, "decoder.transformer") == deeper.num_layers
    assert not (tmp_path / "no-ssl").exists()

    other = replace(fresh, encoder=replace(cfg.encoder, num_layers=cfg.encoder.num_layers + 1))
    with pytest.raises(StreamerError, match="not built by this recipe"):
        Recipe(other).run(["unpack"])
    with pytest.raises(StreamerError, match="unknown training stage"):
        Recipe(fresh).run(["unpakc"])


def test_durations_stage_retimes_a_packaged_model(trained_phonemes: tuple[RecipeConfig, Path],
                                                  tmp_path: Path) -> None:
    """`unpack,durations,package` with `queue.duration_context: 2` gives the same weights with a context
    duration table fitted on the training targets; a unit LM in the package stays with it."""
    from streamer.models.checkpoint import load_model
    from streamer.models.unit_lm import LM_NAME, UnitLM
    from streamer.train.targets import context_durations, unique_targets

    cfg, work = trained_phonemes
    shipped = tmp_path / "shipped"
    shutil.copytree(work / "model", shipped)
    UnitLM.fit([[0, 1, 2]], order=2, num_units=cfg.units.num_units).save(shipped / LM_NAME)
    before = load_file(str(shipped / "model.safetensors"))
    retimed = replace(cfg, work_dir=str(tmp_path / "work"), output_dir=str(shipped),
                      queue=replace(cfg.queue, duration_context=2))
    recipe = Recipe(retimed)
    recipe.run(["unpack", "durations", "package"])
    model = load_model(shipped)
    assert model.cfg.queue.duration_context == 2 and (shipped / LM_NAME).is_file()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "queue.durations")
    train = recipe.data("train", src_lang=cfg.source_lang)
    by_key = recipe.frame_units(train)
    want = context_durations([by_key[k] for k in unique_targets(train)], cfg.units.num_units, 2)
    assert want.shape == (retimed.queue.table_size,) and torch.equal(model.queue.durations, want)


def test_lm_stage_tunes_an_lm_and_package_ships_it(trained: tuple[RecipeConfig, Path], tmp_path: Path) -> None:
    """`lm` counts the unit LM on the training targets and picks its weight and bonus on dev; `package` ships
    it (checksummed), the translator then searches with it by default; a later package without one drops it."""
    from streamer.models.ctc_search import load_search
    from streamer.models.unit_lm import LM_NAME

    cfg, work = trained
    copy = tmp_path / "work"
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns("model"))
    lm_cfg = replace(cfg.lm, alphas=(0.3, 0.8), betas=(0.5, 1.5), max_delay_ms=160)
    again = replace(cfg, work_dir=str(copy), output_dir=str(tmp_path / "model"), lm=lm_cfg)
    Recipe(again).run(["lm", "package"])
    shipped = tmp_path / "model" / LM_NAME
    assert shipped.is_file() and LM_NAME in (tmp_path / "model/SHA256SUMS").read_text()
    model = load_model(tmp_path / "model")
    search = load_search(shipped, model.cfg.decoder.blank)
    assert (search.cfg.alpha, search.cfg.beta) in {(a, b) for a in (0.3, 0.8) for b in (0.5, 1.5)}
    assert search.cfg.max_delay_slots == 160 * model.cfg.max_units // model.cfg.chunk_ms
    assert search.lm.order == cfg.lm.order and search.lm.num_units == model.cfg.decoder.num_units
    tr = Translator.from_dir(tmp_path / "model")
    assert tr.search is not None
    speech = (0.1 * np.random.default_rng(0).standard_normal(16_000)).astype(np.float32)
    assert np.isfinite(tr.translate_array(speech, sample_rate=16_000)).all()
    (copy / LM_NAME).unlink()
    Recipe(again).run(["package"])
    assert not shipped.exists() and LM_NAME not in (tmp_path / "model/SHA256SUMS").read_text()
