"""Training histories: reading, smoothing and the overlay of several runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from streamer.errors import StreamerError
from streamer.train.history import earlier_history, main, overlay, smooth, write_history


def test_smooth_is_a_running_mean_shorter_at_the_start():
    np.testing.assert_allclose(smooth([1, 3, 5, 7], 2), [1, 2, 4, 6])
    np.testing.assert_allclose(smooth([1, 3, 5], 1), [1, 3, 5])


def test_write_then_resume_appends_to_the_same_curves(tmp_path):
    path = tmp_path / "s2ut_history.json"
    write_history(path, {"loss": [3.0, 2.0], "dev_uer": [0.9]}, "S2UT")
    assert path.with_suffix(".png").is_file()
    assert earlier_history(path, ("loss", "dev_uer"), resume=True) == {"loss": [3.0, 2.0], "dev_uer": [0.9]}
    assert earlier_history(path, ("loss", "dev_uer"), resume=False) == {"loss": [], "dev_uer": []}


def test_overlay_draws_the_curves_the_runs_share(tmp_path, trained):
    _, work = trained
    other = tmp_path / "other.json"
    history = json.loads((work / "s2ut_history.json").read_text())
    other.write_text(json.dumps({k: [v * 1.1 for v in vals] for k, vals in history.items()} | {"extra": [1.0]}))
    out = tmp_path / "plots" / "runs.png"
    drawn = overlay({"trained": work / "s2ut_history.json", "other": other}, out, window=3)
    assert drawn == ["loss", "dev_uer"]
    with Image.open(out) as image:
        assert image.size[0] > 2 * image.size[1]


def test_overlay_rejects_unreadable_and_unrelated_histories(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StreamerError, match="cannot read training history"):
        overlay({"bad": bad}, tmp_path / "x.png")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"loss": [1.0]}))
    b.write_text(json.dumps({"dev_uer": [1.0]}))
    with pytest.raises(StreamerError, match="share no curve"):
        overlay({"a": a, "b": b}, tmp_path / "x.png")
    b.write_text(json.dumps([1.0, 2.0]))
    with pytest.raises(StreamerError, match="not a training history"):
        overlay({"b": b}, tmp_path / "x.png")


def test_cli_needs_labelled_runs(tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"loss": [2.0, 1.0, 0.5]}))
    main([str(tmp_path / "a.png"), f"run={a}"])
    assert "wrote" in capsys.readouterr().out and (tmp_path / "a.png").is_file()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "b.png"), str(a)])
    with pytest.raises(SystemExit, match="cannot read"):
        main([str(tmp_path / "b.png"), f"run={tmp_path / 'missing.json'}"])
