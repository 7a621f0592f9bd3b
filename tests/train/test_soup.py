"""Model soups: an S2UT phase run several ways from one start ends as the average of its runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from streamer.errors import StreamerError
from streamer.train.recipe import Recipe, RecipeConfig
from streamer.train.s2ut import S2UTConfig
from streamer.train.soup import average_states, cook

ROOT = Path(__file__).resolve().parents[2]


def test_average_states_means_floats_and_keeps_agreeing_integers() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([3])}
    mean = average_states([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and torch.equal(mean["n"], torch.tensor([3]))
    with pytest.raises(ValueError, match="n differs"):
        average_states([a, {**b, "n": torch.tensor([4])}])
    with pytest.raises(ValueError, match="different keys"):
        average_states([a, {"w": b["w"]}])


def test_cook_starts_every_run_from_the_same_weights() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    start = layer.weight.detach().clone()
    seen = []

    def train_run(shift: float) -> dict[str, list[float]]:
        seen.append(layer.weight.detach().clone())
        with torch.no_grad():
            layer.weight.add_(shift)
        return {"loss": [shift]}

    history = cook([layer], [1.0, 3.0, 5.0], train_run)
    assert history == {"loss": [1.0]}  # the phase as written: its first run
    assert all(torch.equal(s, start) for s in seen)
    assert torch.allclose(layer.weight, start + 3.0)


def test_soup_entries_are_checked_when_the_config_loads() -> None:
    phase = S2UTConfig.from_dict({"seed": 1, "soup": [{"seed": 2, "augment": {"p_vtlp": 0.7}}]})
    runs = phase.soup_runs()
    assert [r.seed for r in runs] == [1, 2] and runs[1].augment == {"p_vtlp": 0.7}
    assert all(r.soup == () for r in runs)
    for bad, message in (({"resume": True}, "cannot change"), ({"sed": 2}, "unknown s2ut soup keys"),
                         ({}, "non-empty mapping")):
        with pytest.raises(StreamerError, match=message):
            S2UTConfig.from_dict({"soup": [bad]})


def test_soup_phase_is_the_average_of_its_runs_trained_alone(trained: tuple[RecipeConfig, Path],
                                                              tmp_path: Path) -> None:
    """The recipe with a two-run soup gives the average of the two runs made as separate recipes; its
    history is the first run's with the soup's dev error last; a bad augment key in a run fails at load."""
    import yaml

    cfg, work = trained
    d = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    d.update(corpus=cfg.corpus, ssl_dir=str(work))
    first = {**d["s2ut"], "max_steps": 3}
    changes = {"seed": 1, "augment": {"p_narrowband": 0.5}}

    def run(name: str, phase: dict) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**d, "s2ut": phase}))
        out = tmp_path / name
        out.mkdir()
        for f in ("target_units.npz", "silence_units.json"):
            shutil.copy(work / f, out)
        Recipe(replace(RecipeConfig.from_yaml(path), work_dir=str(out))).run(["s2ut"])
        return out

    soup = run("soup", {**first, "soup": [changes]})
    alone = [run("a", first), run("b", {**first, **changes})]
    for name in ("s2ut.safetensors", "s2ut_source_head.safetensors"):
        expected = average_states([load_file(str(w / name)) for w in alone])
        got = load_file(str(soup / name))
        assert all(torch.equal(got[k], expected[k]) for k in expected), name
    a, b = (load_file(str(w / "s2ut.safetensors")) for w in alone)
    assert not all(torch.equal(a[k], b[k]) for k in a)  # the runs did differ
    history = json.loads((soup / "s2ut_history.json").read_text())
    first_run = json.loads((alone[0] / "s2ut_history.json").read_text())
    assert history["loss"] == first_run["loss"] and history["dev_uer"][:-1] == first_run["dev_uer"]
    assert len(history["dev_uer"]) == len(first_run["dev_uer"]) + 1

    # a soup run's own source-CTC weight counts when the recipe decides whether to build the source task
    only_soup = tmp_path / "only-soup.yaml"
    only_soup.write_text(yaml.safe_dump({**d, "s2ut": {**first, "source_ctc_weight": 0.0,
                                                       "soup": [{"source_ctc_weight": 0.5}]}}))
    assert [r.source_ctc_weight for r in RecipeConfig.from_yaml(only_soup).s2ut_runs] == [0.0, 0.5]

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**d, "s2ut": {**first, "soup": [{"augment": {"p_narowband": 0.5}}]}}))
    with pytest.raises(StreamerError, match="p_narowband"):
        RecipeConfig.from_yaml(bad)
