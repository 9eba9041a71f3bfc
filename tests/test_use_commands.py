"""Tests for simclr.use_commands: what embed and predict pass on and say (the work itself
is tested in test_inference.py, the cache command in test_cache_entries.py)."""

from __future__ import annotations

import json

from simclr.cli import main


def test_embed_passes_its_flags_on_and_takes_an_upper_case_npz(tmp_path, monkeypatch, capsys):
    from simclr import inference

    calls = []
    monkeypatch.setattr(inference, "embed_folder",
                        lambda *a, **k: (calls.append((a, k)), {"images": 3})[1])
    out = str(tmp_path / "e.NPZ")
    assert main(["embed", "--checkpoint", "c", "--data", "d", "--out", out, "--layer", "z",
                 "--image-size", "24", "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out) == {"images": 3}
    ((args, kw),) = calls
    assert [str(a) for a in args] == ["c", "d", out]
    assert (kw["layer"], kw["image_size"], kw["overwrite"]) == ("z", 24, True)
    assert main(["embed", "--checkpoint", "c", "--data", "d", "--out", out]) == 0
    assert (calls[1][1]["layer"], calls[1][1]["overwrite"]) == ("h", False)


def test_predict_passes_its_flags_on_and_says_a_top5_of_zero(tmp_path, monkeypatch, capsys):
    from simclr import inference

    calls = []
    result = {"images": 2, "labeled": 2, "classes": 9, "top1": 0.0, "top5": 0.0,
              "confident": 1, "confident_top1": 0.0}
    monkeypatch.setattr(inference, "predict_folder",
                        lambda *a, **k: (calls.append((a, k)), result)[1])
    out = str(tmp_path / "p.CSV")
    assert main(["predict", "--checkpoint", "c", "--data", "d", "--out", out, "--top-k", "2",
                 "--min-probability", "0.25", "--overwrite"]) == 0
    ((args, kw),) = calls
    assert list(args) == ["c", "d", out]
    assert (kw["top_k"], kw["min_probability"], kw["overwrite"]) == (2, 0.25, True)
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{out}: 2 images predicted; top-1 0.00%, top-5 0.00% over the 2 in classes the "
        "classifier knows")
