"""Tests for simclr.inference: embedding a folder and predicting on it (the CSV, its
scores, blocks of rows), outputs whole or kept, the Python API's checks."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.checkpoint import save_checkpoint
from simclr.checkpoint_read import load_checkpoint
from simclr.cli import main
from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.features import extract_features
from simclr.inference import folder_features, predict_folder
from simclr.logistic import logistic_regression
from simclr.models import build_model
from simclr.neighbors import embedded_paths
from simclr.pretrained import representation_from_checkpoint
from simclr.settings import build_config
from tests.conftest import make_image_folder, tiny_pretrained_run
from tests.test_classifiers import classifier_run
from tests.test_pretrained import pretrain_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_linear_eval_saves_a_classifier_that_predicts_what_it_measured(
        tmp_path, image_folder, cache_dir, capsys):
    run, measured = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    assert measured["checkpoint"] == str(run / "checkpoints" / "linear.pt")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(run), "--data", str(image_folder), "--out",
                 str(out), "--top-k", "3", "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", cache_dir]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert summary["images"] == summary["labeled"] == 24 and summary["unknown_class"] == 0
    assert summary["top1"] == measured["top1"]
    assert f"pred.csv: 24 images predicted; top-1 {100 * summary['top1']:.2f}% over the 24 " \
        "in classes the classifier knows" in printed.err
    assert "note: --top-k 3 is more than the classifier's 2 classes: each row ranks all " \
        "of them (top-k 2)" in printed.err
    assert main(["predict", "--checkpoint", str(run), "--data", str(image_folder), "--out",
                 str(tmp_path / "default.csv"), "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", cache_dir]) == 0  # the default 5 of 2 classes: unsaid
    assert "--top-k" not in capsys.readouterr().err
    assert (tmp_path / "default.csv").read_text() == out.read_text()
    # Per image, the probabilities of the fitted model computed afresh from the features.
    source, test = (open_source(str(p), DataConfig(workers=0, cache_dir=cache_dir),
                                train=False, image_size=16) for p in (tmp_path / "train",
                                                                      image_folder))
    encoder, _ = representation_from_checkpoint(pretrain_checkpoint(head_layers=2), "h")
    (train_x, train_y), (test_x, _) = (extract_features(encoder, s, 16) for s in (source, test))
    _, want, _ = logistic_regression(train_x, train_y, test_x, 2, l2=1e-4)
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "prediction", "probability", "top1", "p1", "top2", "p2"]
    assert len(rows) == 25 and rows[1][0].endswith("class_0/000.png")
    for row, p in zip(rows[1:], want.exp().numpy(), strict=True):
        assert row[1] == row[3] and row[2] == row[4] and row[1] in ("class_0", "class_1")
        assert 1.0 >= float(row[4]) >= float(row[6]) >= 0.0
        got = {row[3]: float(row[4]), row[5]: float(row[6])}
        assert got == pytest.approx({"class_0": p[0], "class_1": p[1]}, abs=1e-5)
    assert 0.2 < summary["top1"] < 0.8  # an arbitrary boundary: no easy agreement
    correct = sum(row[1] == Path(row[0]).parent.name for row in rows[1:])
    assert correct / 24 == pytest.approx(summary["top1"])
    # --min-probability: below it the prediction is left empty (the ranking stays).
    ranked = sorted(float(row[2]) for row in rows[1:])
    cut = (ranked[11] + ranked[12]) / 2  # between two rows (the CSV rounds to 1e-6)
    assert main(["predict", "--checkpoint", str(run), "--data", str(image_folder), "--out",
                 str(out), "--overwrite", "--min-probability", str(cut), "--device", "cpu",
                 "--precision", "fp32", "--cache-dir", cache_dir]) == 0
    printed = capsys.readouterr()
    sure = json.loads(printed.out)
    with open(out, newline="") as f:
        again = list(csv.reader(f))[1:]
    kept = [row for row in again if float(row[2]) >= cut]
    assert sure["confident"] == len(kept) == sum(row[1] != "" for row in again)
    assert all(row[1] == (row[3] if float(row[2]) >= cut else "") for row in again)
    right = sum(row[1] == Path(row[0]).parent.name for row in kept)
    assert sure["confident_top1"] == pytest.approx(right / len(kept))
    assert sure["top1"] == summary["top1"]  # the accuracy over all images is unchanged
    assert f"{len(kept)} of 24 images predicted with probability >= {cut!r}" in printed.err


def test_predictions_are_written_row_by_row(tmp_path):
    """The CSV's rows are made as they are written: all of them made first held 5.7 GB
    for --top-k 5000 on 10k images (a Python float per probability)."""
    import tracemalloc

    from simclr.inference import _write_predictions

    n, k = 2000, 250
    probs = torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64), dim=1)
    top_p, top_i = probs.topk(k, dim=1)
    classes = [f"c{i}" for i in range(k)]
    paths = [f"/d/{i}.png" for i in range(n)]
    tracemalloc.start()
    try:
        _write_predictions(tmp_path / "p.csv", paths, top_p, top_i, classes, 0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4e6  # (the rows made first: 17 MB)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == n + 1 and len(rows[0]) == 3 + 2 * k
    for j in (0, 1, 1234, n - 1):
        ps, ids = top_p[j].tolist(), top_i[j].tolist()
        assert rows[j + 1][:5] == [paths[j], classes[ids[0]] if ps[0] >= 0.01 else "",
                                   f"{ps[0]:.6f}", classes[ids[0]], f"{ps[0]:.6f}"]
        assert rows[j + 1][-2:] == [classes[ids[-1]], f"{ps[-1]:.6f}"]


def test_predict_on_a_flat_folder_and_on_unknown_classes(tmp_path, image_folder, cache_dir,
                                                          capsys):
    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(image_folder.glob("*/*.png"))[:5]):
        shutil.copy(f, flat / f"{i}.png")
    result = predict_folder(run, str(flat), tmp_path / "p.csv", device="cpu",
                            precision="fp32", cache_dir=cache_dir)
    assert result["images"] == 5 and "top1" not in result  # no labels, no accuracy
    other = make_image_folder(tmp_path / "other", classes=3, per_class=2)  # class_2: unknown
    result = predict_folder(run, str(other), tmp_path / "q.csv", device="cpu",
                            precision="fp32", cache_dir=cache_dir)
    assert result["labeled"] == 4 and result["unknown_class"] == 2
    # No class the classifier knows (a misspelt folder): counted and said, no accuracy.
    renamed = make_image_folder(tmp_path / "renamed", classes=2, per_class=2)
    for folder in sorted(renamed.iterdir()):
        folder.rename(folder.with_name("cls" + folder.name[-1]))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), "--data", str(renamed), "--out",
                 str(tmp_path / "r.csv"), "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", cache_dir]) == 0
    said = capsys.readouterr()
    result = json.loads(said.out)
    assert (result["labeled"], result["unknown_class"], "top1" in result) == (0, 4, False)
    assert (f"{tmp_path / 'r.csv'}: 4 images predicted; no accuracy: none of the folder's "
            "class names is one of the classifier's 2 (`simclr info") in said.err
    assert "(4 in other classes, not scored)" in said.err


def test_embed_records_its_checkpoint_however_the_shell_spelled_it(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """A relative --checkpoint and an absolute one name the same encoder: both files
    record it alike (absolute), so `simclr neighbors` takes them together."""
    from simclr.inference import embed_folder
    from simclr.neighbors import write_neighbors

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    last = save_checkpoint({**state, "step": 3}, tmp_path / "pre" / "checkpoints")
    monkeypatch.chdir(tmp_path)
    common = {"device": "cpu", "precision": "fp32", "workers": 0, "cache_dir": cache_dir}
    embed_folder("pre", str(image_folder), "rel.npz", **common)
    embed_folder(str(last), str(image_folder), tmp_path / "abs.npz", **common)
    # --image-size at the encoder's own side: the same features, the same record
    embed_folder("pre", str(image_folder), "own.npz", image_size=16, **common)
    embed_folder("pre", str(image_folder), "other.npz", image_size=24, **common)
    encoders = {str(np.load(tmp_path / f"{n}.npz")["encoder"]) for n in ("rel", "abs", "own")}
    assert encoders == {f"{last} step 3 layer h"}
    assert write_neighbors("abs.npz", "n.csv", k=1, queries="rel.npz")["queries"] == 24
    assert write_neighbors("abs.npz", "n2.csv", k=1, queries="own.npz")["queries"] == 24
    assert str(np.load(tmp_path / "other.npz")["encoder"]).endswith("layer h at 24 px")
    # the same weights at another side: other features, not comparable
    with pytest.raises(SimCLRError, match=r"the same weights but at other layers or sides "
                                          r"\(layer h at 24 px against layer h at 16 px\)"):
        write_neighbors("abs.npz", "n3.csv", k=1, queries="other.npz")


def test_neighbors_tells_encoders_apart_by_their_weights_not_their_path(tmp_path, capsys):
    """embed recorded the checkpoint's path and step alone: the same weights embedded from
    a copy of the run (`cp -r`) or its export were refused, and a run pretrained again at
    the same path with another seed, other weights, was taken for the same encoder."""
    train, test, cache = tiny_pretrained_run(tmp_path)
    run = tmp_path / "pre"
    shutil.copytree(run, tmp_path / "copy")
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "enc.pt")]) == 0

    def embed(checkpoint: Path, folder: Path, out: str) -> list[str]:
        assert main(["embed", "--checkpoint", str(checkpoint), "--data", str(folder),
                     "--out", str(tmp_path / out), "--cache-dir", cache, "--workers", "0",
                     "--device", "cpu", "--precision", "fp32", "--overwrite"]) == 0
        return ["--queries", str(tmp_path / out)]

    keys = ["neighbors", "--features", str(tmp_path / "train.npz"), "--k", "2", "--out",
            str(tmp_path / "n.csv"), "--overwrite"]
    embed(run, train, "train.npz")
    for same in (tmp_path / "copy", tmp_path / "enc.pt"):
        assert main([*keys, *embed(same, test, "test.npz")]) == 0
    shutil.rmtree(run)
    assert main(["pretrain", "--data", str(train), "--out", str(run), "--arch", "resnet18",
                 "--width", "0.125", "--image-size", "16", "--batch-size", "8", "--max-steps",
                 "2", "--no-progress", "--workers", "0", "--cache-dir", cache, "--precision",
                 "fp32", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main([*keys, *embed(run, test, "test.npz")]) == 2
    name = f"{(run / 'checkpoints' / 'last.pt').resolve()} step 2 layer h"
    assert capsys.readouterr().err.endswith(
        f"error: --queries and --features were both embedded by {name}, but with other "
        "weights (the checkpoint was replaced between the two embeds): embed both with the "
        "same checkpoint and layer\n")


def test_an_upper_case_npz_out_is_an_npz_and_another_suffix_is_refused(
        tmp_path, image_folder, cache_dir, capsys):
    """embed --out e.NPZ writes the file (as export's and neighbors' outputs, the suffix
    in any case); --out e.txt is one line and status 2, nothing written."""
    last = save_checkpoint(pretrain_checkpoint(), tmp_path / "pre" / "checkpoints")
    flags = ["embed", "--checkpoint", str(last), "--data", str(image_folder), "--cache-dir",
             cache_dir, "--workers", "0", "--device", "cpu", "--precision", "fp32", "--out"]
    assert main([*flags, str(tmp_path / "e.txt")]) == 2
    assert "the output must be a .npz file" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*flags, str(tmp_path / "e.NPZ"), "--image-size", "24"]) == 0
    said = capsys.readouterr()  # the JSON summary is stdout, at the --image-size given
    assert json.loads(said.out)["image_size"] == 24 and said.err == ""
    assert not (tmp_path / "e.txt").exists()
    with np.load(tmp_path / "e.NPZ") as saved:
        assert len(embedded_paths(saved)) == 24


def test_embed_stores_paths_in_the_bytes_they_take(tmp_path, image_folder, cache_dir):
    """embed saved the paths as one fixed-width str array, each as wide as the longest
    at 4 bytes a character: one 3,645-character path made 10,000 images' file 148 MB for
    2.5 MB of features. The file now grows by the paths' own bytes; a path nested deep
    and names in any script come back as they were."""
    from simclr.inference import embed_folder

    deep = image_folder / "class_1"
    for level in range(12):  # (each folder name within the file system's 255 bytes)
        deep = deep / f"{level:02d}{'d' * 238}"
    deep.mkdir(parents=True)
    shutil.copy(image_folder / "class_1" / "000.png", deep / "犬 café.png")
    shutil.copy(image_folder / "class_0" / "000.png", image_folder / "class_0" / "日本.png")
    last = save_checkpoint(pretrain_checkpoint(), tmp_path / "pre" / "checkpoints")
    out = tmp_path / "e.npz"
    embed_folder(last, str(image_folder), out, device="cpu", precision="fp32", workers=0,
                 cache_dir=cache_dir)
    with np.load(out, allow_pickle=False) as saved:
        paths = embedded_paths(saved)
        arrays = sum(saved[k].nbytes for k in ("features", "labels", "classes", "encoder"))
    assert str(deep / "犬 café.png") in paths and str(image_folder / "class_0" / "日本.png") \
        in paths and len(paths) == 26
    assert sorted(paths) == sorted(str(f) for f in image_folder.rglob("*.png"))
    path_bytes = sum(len(p.encode()) + 1 for p in paths)
    assert len(str(deep)) > 2900 and path_bytes < 26 * len(str(deep)) / 4
    assert out.stat().st_size < arrays + path_bytes + 2500  # (+ the archive's headers)


def test_predict_counts_images_beside_the_class_folders_as_unlabeled(
        tmp_path, image_folder, cache_dir, capsys):
    """5 images of a class the classifier knows and 1 beside the class folder: 5 scored,
    the loose one unlabeled, none of an unknown class (the counts add up to the images)."""
    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    part = tmp_path / "part"
    (part / "class_0").mkdir(parents=True)
    files = sorted(image_folder.glob("class_0/*.png"))
    for i, f in enumerate(files[:5]):
        shutil.copy(f, part / "class_0" / f"{i}.png")
    shutil.copy(files[5], part / "loose.png")
    (part / "class_0" / "2a.png").write_bytes(b"not a picture")  # left out, counted
    result = predict_folder(run, str(part), tmp_path / "p.csv", device="cpu",
                            precision="fp32", cache_dir=cache_dir)
    assert (result["images"], result["labeled"], result["unknown_class"],
            result["unlabeled"], result["skipped"]) == (6, 5, 0, 1, 1)
    with open(tmp_path / "p.csv", newline="") as f:
        assert sorted(row[0] for row in list(csv.reader(f))[1:]) == sorted(
            str(p) for p in part.rglob("*.png") if p.name != "2a.png")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), "--data", str(part), "--out",
                 str(tmp_path / "q.csv"), "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", cache_dir]) == 0
    assert ("over the 5 in classes the classifier knows (1 beside the class folders, not "
            "scored)") in capsys.readouterr().err


def test_predict_user_errors_are_one_line(tmp_path, image_folder, capsys):
    ckpt = pretrain_checkpoint()
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    source = save_checkpoint(state, tmp_path / "pre")
    # (--top-k 0 is refused by the parser: tests/test_cli.py)
    for extra, needle in [([], "holds no classifier"),
                          (["--out", str(tmp_path / "p.txt")], ".csv file")]:
        args = ["predict", "--checkpoint", str(source), "--data", str(image_folder),
                "--out", str(tmp_path / "p.csv"), "--device", "cpu", *extra]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("p.*"))


def test_api_counts_are_checked_before_any_work(tmp_path, image_folder, monkeypatch):
    """From Python, top_k=2.5 failed in torch's topk after every feature was made, and
    image_size='32' in a comparison of text with a number."""
    from simclr import inference
    from simclr.inference import embed_folder, predict_folder

    monkeypatch.setattr(inference, "load_checkpoint", lambda *a: pytest.fail("worked"))
    (tmp_path / "old.csv").write_text("an earlier table\n")  # (kept without overwrite)
    for call, needle in [
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv", top_k=2.5),
             "--top-k must be a positive whole number, got 2.5"),
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv", top_k=True),
             "--top-k must be a positive whole number, got True"),
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv",
                                    min_probability="0.5"), "--min-probability must lie"),
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv", min_probability=0),
             "--min-probability must lie in (0, 1], got 0"),
            (lambda: predict_folder("x", image_folder, tmp_path / "old.csv"),
             f"{tmp_path / 'old.csv'} already exists"),
            (lambda: embed_folder("x", image_folder, tmp_path / "e.npz", image_size="32"),
             "--image-size must be a positive whole number, got '32'"),
            (lambda: embed_folder("x", image_folder, tmp_path / "e.npz", batch_size=0),
             "--batch-size must be a positive whole number, got 0")]:
        with pytest.raises(SimCLRError, match=re.escape(needle)):
            call()
    assert not list(tmp_path.glob("[pe].*"))


def test_api_data_arguments_are_checked_like_their_flags(tmp_path, image_folder, cache_dir):
    """From Python, workers=-1 met torch's DataLoader, a text max_pixels made every
    image 'unreadable', layer=3 and cache_dir=None were AttributeError / TypeError; a
    torch.device, which load_encoder takes, failed on .startswith."""
    from simclr.inference import embed_folder

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    save_checkpoint({**state, "step": 3}, tmp_path / "pre" / "checkpoints")
    common = {"device": "cpu", "precision": "fp32", "workers": 0, "cache_dir": cache_dir}
    for change, said in [({"workers": -1}, "--workers must be non-negative, got -1"),
                         ({"workers": 2.5}, "--workers must be a whole number, got 2.5"),
                         ({"max_pixels": "10"}, "--max-pixels must be a whole number"),
                         ({"cache_dir": None}, "--cache-dir must be text, got None"),
                         ({"layer": 3}, "--layer: unknown value 3")]:
        with pytest.raises(SimCLRError, match=re.escape(said)):
            embed_folder(tmp_path / "pre", str(image_folder), tmp_path / "e.npz",
                         **{**common, **change})
    assert not (tmp_path / "e.npz").exists()
    embed_folder(tmp_path / "pre", str(image_folder), tmp_path / "e.npz",
                 **{**common, "device": torch.device("cpu")})
    assert np.load(tmp_path / "e.npz")["features"].shape[0] == 24


def test_embed_and_predict_outputs_are_whole_or_untouched(tmp_path, image_folder, cache_dir,
                                                          monkeypatch):
    """A failed write (a full disk) ends in one line and leaves the earlier file as it
    was: outputs are written beside and renamed over it."""
    import errno

    from simclr.inference import embed_folder

    ckpt = tmp_path / "c.pt"
    save_checkpoint(pretrain_checkpoint(), tmp_path, "c.pt")
    out = tmp_path / "feats.npz"
    out.write_bytes(b"the earlier features")

    def full(file, **arrays):  # writes part of the archive, then the disk is full
        handle = open(file, "wb") if isinstance(file, (str, Path)) else file  # noqa: SIM115
        handle.write(b"PK half an archive")
        handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(SimCLRError, match=r"could not write .*feats.npz: No space left"):
        embed_folder(ckpt, str(image_folder), out, workers=0, cache_dir=cache_dir,
                     overwrite=True)
    assert out.read_bytes() == b"the earlier features"
    assert sorted(p.name for p in tmp_path.iterdir() if "feats" in p.name) == ["feats.npz"]


def test_an_out_whose_new_folder_would_be_made_inside_data_is_refused(
        tmp_path, image_folder, cache_dir, capsys):
    """`embed --data D --out D/feats/f.npz` made D/feats before listing D, which then
    read it as a class folder (classes cat, dog, feats), as every later command did:
    refused before anything is made; an --out in a folder already there is taken."""
    save_checkpoint(pretrain_checkpoint(), tmp_path, "c.pt")
    before = sorted(p.name for p in image_folder.iterdir())
    embed = ["embed", "--checkpoint", str(tmp_path / "c.pt"), "--data", str(image_folder),
             "--cache-dir", cache_dir, "--device", "cpu", "--workers", "0"]
    assert main([*embed, "--out", str(image_folder / "feats" / "f.npz")]) == 2
    assert "its folder would be made inside --data" in capsys.readouterr().err
    assert sorted(p.name for p in image_folder.iterdir()) == before
    assert main([*embed, "--out", str(image_folder / "f.npz")]) == 0
    assert list(np.load(image_folder / "f.npz")["classes"]) == sorted(
        p.name for p in image_folder.iterdir() if p.is_dir())


def test_predictions_and_an_export_written_meanwhile_are_kept(tmp_path, image_folder,
                                                               cache_dir, capsys, monkeypatch):
    """As embed's (below): `simclr predict` and `simclr export` into one file at once, the
    second to finish refused in one line and the first's file kept."""
    import simclr.export as export
    import simclr.inference as inference

    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    csv_out, pt_out = tmp_path / "p.csv", tmp_path / "e.pt"
    features, encoder = inference.folder_features, export.encoder_from_checkpoint

    def predicted_meanwhile(*args, **kwargs):
        csv_out.write_text("theirs\n")
        return features(*args, **kwargs)

    def exported_meanwhile(*args, **kwargs):
        pt_out.write_bytes(b"theirs")
        return encoder(*args, **kwargs)

    monkeypatch.setattr(inference, "folder_features", predicted_meanwhile)
    monkeypatch.setattr(export, "encoder_from_checkpoint", exported_meanwhile)
    for command, out in (["predict", "--data", str(image_folder), "--cache-dir", cache_dir,
                          "--device", "cpu"], csv_out), (["export"], pt_out):
        assert main([command[0], "--checkpoint", str(run), *command[1:], "--out",
                     str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].endswith(f"{out} was written meanwhile by another process (kept; "
                                "this run's was not written): choose another --out, or "
                                "pass --overwrite to replace it"), err
        assert out.read_bytes().strip() == b"theirs"
        assert [p.name for p in tmp_path.glob(out.name + "*")] == [out.name]


def test_an_embedding_written_meanwhile_by_another_embed_is_kept(tmp_path, image_folder,
                                                                 cache_dir, capsys, monkeypatch):
    """Two `simclr embed --out f.npz` at once (each found f.npz free at its start): the
    second to finish is refused in one line, status 2, the first's file kept (both
    exited 0, one replacing the other); with --overwrite it is replaced, as before."""
    import simclr.inference as inference

    last = save_checkpoint(pretrain_checkpoint(), tmp_path / "pre" / "checkpoints")
    out = tmp_path / "f.npz"
    flags = ["embed", "--checkpoint", str(last), "--data", str(image_folder), "--cache-dir",
             cache_dir, "--workers", "0", "--device", "cpu", "--precision", "fp32", "--out",
             str(out)]
    features = inference.folder_features

    def finished_meanwhile(*args, **kwargs):  # the other embed's file, published now
        np.savez(out, features=np.zeros((1, 2), np.float32))
        return features(*args, **kwargs)

    monkeypatch.setattr(inference, "folder_features", finished_meanwhile)
    assert main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(
        f"{out} was written meanwhile by another process (kept; this run's was not "
        "written): choose another --out, or pass --overwrite to replace it"), err
    with np.load(out) as kept:
        assert kept["features"].shape == (1, 2)
    assert [p.name for p in tmp_path.glob("f.npz*")] == ["f.npz"]  # no temporary left
    assert main([*flags, "--overwrite"]) == 0
    with np.load(out) as saved:
        assert len(embedded_paths(saved)) == 24


def test_predictions_name_paths_and_classes_any_locale_cannot_spell(tmp_path, cp1252_locale):
    """Under a locale of one code page (Windows' cp1252) a class or path such as 犬 failed
    the CSV's write (UnicodeEncodeError) after every image was predicted: it is UTF-8."""
    from simclr.inference import _write_predictions

    paths = ["/photos/日本/1.jpg", "/photos/café/2.jpg"]
    _write_predictions(tmp_path / "p.csv", paths, torch.tensor([[0.9, 0.1], [0.6, 0.4]]),
                       torch.tensor([[1, 0], [0, 1]]), ["chat é", "犬"], threshold=0.7)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert [row[:2] for row in table[1:]] == [[paths[0], "犬"], [paths[1], ""]]
    assert table[2][3] == "chat é"


def test_predictions_quote_class_names_and_paths_a_spreadsheet_would_run(tmp_path):
    """A received classifier's class names reach the CSV: one starting a formula gets
    OWASP's leading ', a class named by a number (-1) stays as it is."""
    from simclr.inference import _write_predictions

    _write_predictions(tmp_path / "p.csv", ["@a.jpg", "/b.jpg"],
                       torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([[1, 0], [0, 1]]),
                       ["-1", "=HYPERLINK(\"http://x\")"], threshold=0.0)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[1][:2] == ["'@a.jpg", "'=HYPERLINK(\"http://x\")"]
    assert table[2][:2] == ["/b.jpg", "-1"] and table[2][5] == "'=HYPERLINK(\"http://x\")"


@pytest.mark.parametrize("decoder", ["pil", "device"])  # (device: the CPU stands in)
def test_features_of_large_photos_are_the_evaluation_transform_of_each_file(tmp_path, decoder):
    """embed (and every evaluation) on photos larger than the cache takes: each row is
    the encoder on eval_resize of that file, as an exported model given the documented
    preprocessing computes it; not a reduced whole-picture square resampled again (which
    moved features by 7-8%: simclr.data.open_folder). Non-square photos included."""
    from PIL import Image

    from simclr import load_encoder
    from simclr.augment import eval_resize

    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 40, "model.head_out_dim": 24})
    torch.manual_seed(0)
    model = build_model(cfg.model, 40)
    with torch.no_grad():
        model.train()(torch.rand(8, 3, 40, 40))
    save_checkpoint({"kind": "pretrain", "config": cfg.to_dict(), "model": model.state_dict()},
                    tmp_path, "c.pt")
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (w, h) in enumerate([(300, 200), (200, 300), (160, 160), (241, 157), (130, 400)]):
        smooth = rng.normal(128, 60, (h // 8 + 1, w // 8 + 1, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(smooth).resize((w, h), Image.Resampling.BICUBIC).save(
            folder / f"{i}.jpg", quality=95)
    module, spec = representation_from_checkpoint(load_checkpoint(tmp_path / "c.pt"), "h")
    _, feats, _, paths = folder_features(module, spec["image_size"], str(folder), 4, "cpu",
                                         "fp32", 0, str(tmp_path / "cache"),
                                         decoder=decoder)
    encoder = load_encoder(tmp_path / "c.pt")
    with torch.no_grad():
        ref = torch.stack([encoder(eval_resize(Image.open(p), 40)[None])[0] for p in paths])
    rel = (torch.from_numpy(feats) - ref).norm(dim=1) / ref.norm(dim=1)
    assert len(paths) == 5 and rel.max() < 0.01, rel


def test_the_python_api_takes_paths_keeps_outputs_and_leaves_the_rng(tmp_path, image_folder,
                                                                      cache_dir):
    """embed_folder takes a Path and refuses an existing output unless told (as export);
    a loaded encoder leaves the caller's random stream as it was; an evaluation given a
    folder's path instead of an opened source says what to give."""
    from simclr.inference import embed_folder
    from simclr.knn import run_knn
    from simclr.pretrained import load_encoder

    save_checkpoint(pretrain_checkpoint(), tmp_path, "c.pt")
    out = tmp_path / "feats.npz"
    info = embed_folder(tmp_path / "c.pt", image_folder, out, workers=0, cache_dir=cache_dir)
    assert info["images"] == 24
    with pytest.raises(SimCLRError, match="already exists; choose another --out, or pass "
                                          "--overwrite"):
        embed_folder(tmp_path / "c.pt", image_folder, out, workers=0, cache_dir=cache_dir)
    state = torch.get_rng_state()
    load_encoder(tmp_path / "c.pt")
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(SimCLRError, match=r"--train: give an opened image source, e\.g\. "
                                          r"simclr\.data\.open_source\("):
        run_knn(load_encoder(tmp_path / "c.pt"), str(image_folder), str(image_folder), None,
                image_size=16)


def test_the_digits_by_name_are_embedded_and_predicted_with_rows_named(
        tmp_path, image_folder, cache_dir, capsys, monkeypatch):
    """`--data digits` has no files: embed wrote no paths beside 597 features (neighbors
    then refused its file) and predict failed in zip(); rows are named by their place.
    A folder named `digits` is that folder, as for cifar10 (the 597 digits were used)."""
    import shutil

    from simclr.inference import embed_folder
    from simclr.neighbors import write_neighbors

    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    common = {"device": "cpu", "precision": "fp32", "workers": 0, "cache_dir": cache_dir}
    embed_folder(tmp_path / "pre", "digits", tmp_path / "d.npz", **common)
    saved = np.load(tmp_path / "d.npz")
    assert saved["features"].shape[0] == len(embedded_paths(saved)) == 597
    assert embedded_paths(saved)[:2] == ["digits[test]#0", "digits[test]#1"]
    assert write_neighbors(tmp_path / "d.npz", tmp_path / "n.csv", k=1)["queries"] == 597
    assert main(["predict", "--checkpoint", str(run), "--data", "digits", "--out",
                 str(tmp_path / "p.csv"), "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", cache_dir]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 597
    with open(tmp_path / "p.csv", newline="") as f:
        assert [row[0] for row in list(csv.reader(f))[1:3]] == ["digits[test]#0",
                                                              "digits[test]#1"]
    shutil.copytree(image_folder, tmp_path / "digits")
    monkeypatch.chdir(tmp_path)
    embed_folder(tmp_path / "pre", "digits", tmp_path / "f.npz", **common)
    assert len(embedded_paths(np.load(tmp_path / "f.npz"))) == 24


def identity_fc(classes: int) -> torch.nn.Linear:
    """A float64 linear layer whose logits are its inputs (exactly: x * 1 + 0s)."""
    fc = torch.nn.Linear(classes, classes, dtype=torch.float64)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(classes))
        fc.bias.zero_()
    return fc


def predicted_scores(log_probs: torch.Tensor, labels: np.ndarray, k: int = 1,
                     min_probability: float | None = None) -> dict:
    """predict's result for images whose classifier gives ``log_probs`` (N, C) and whose
    folder's classes are the classifier's, ``labels`` (N,)."""
    from simclr.inference import _known_labels, _ranked_blocks, _scores

    names = [str(c) for c in range(log_probs.shape[1])]
    mapped = _known_labels(names, names, labels)
    top_p, _, ranks = _ranked_blocks(identity_fc(len(names)), log_probs.numpy(), mapped, k)
    return _scores(ranks, top_p, len(names), mapped, labels, min_probability)


def test_predicts_accuracy_ranks_the_scores_in_their_own_dtype():
    """predict's top-5 ranked its float64 scores cast to float32: a label at 1e-60, 2nd
    of 6, became 0, tied with the four classes below it, a miss."""
    log_probs = torch.tensor([[0.0, np.log(1e-60), -1e3, -1e3, -1e3, -1e3],
                              [0.0, -1e3, -1e3, -1e3, -1e3, -1e3]], dtype=torch.float64)
    result = predicted_scores(log_probs, np.array([1, 1]))
    assert (result["top1"], result["top5"]) == (0.0, 0.5)


def test_predicts_accuracy_ranks_log_probabilities_whose_exp_is_zero():
    """A label 800 logits below the best but above four others is 2nd of 6, a top-5 hit:
    its probability and theirs are all 0 in float64, which a ranking by probabilities
    would count as a tie of five, a miss."""
    log_probs = torch.tensor([[0.0, -800.0, -1e3, -1e3, -1e3, -1e3]], dtype=torch.float64)
    result = predicted_scores(log_probs, np.array([1]))
    assert (result["top1"], result["top5"]) == (0.0, 1.0)


def test_predicts_confident_top1_counts_a_tie_against_the_label():
    """confident_top1 compared the first of topk's indices: a tie went to class 0."""
    log_probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64).log()
    result = predicted_scores(log_probs, np.array([0, 1]), min_probability=0.5)
    assert result["confident"] == 2 and result["confident_top1"] == result["top1"] == 0.5


def test_confident_top1_is_none_without_confident_labeled_rows_and_absent_unlabeled():
    """No labeled row reaches --min-probability: its top-1 is unknown (None), not 0%;
    a folder without labels has no such accuracy at all, only the confident count."""
    log_probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64).log()
    result = predicted_scores(log_probs, np.array([0, -1]), min_probability=0.8)
    assert (result["confident"], result["confident_top1"]) == (1, None)
    unlabeled = predicted_scores(log_probs, np.array([-1, -1]), min_probability=0.8)
    assert unlabeled == {"confident": 1}


def test_a_top_probability_equal_to_min_probability_is_confident_and_predicted(tmp_path):
    """--min-probability P rejects rows whose top probability is below P: one of exactly
    P keeps its prediction and counts as confident, in the CSV and the counts alike."""
    from simclr.inference import _scores, _write_predictions
    from simclr.results import label_ranks

    probs = torch.tensor([[0.75, 0.25], [0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    top_p, top_i = probs.topk(1, dim=1)
    labels = np.array([0, 0, 0])
    scores = _scores(label_ranks(probs, labels), top_p, 2, labels, labels, 0.75)
    assert scores["confident"] == 2 and scores["confident_top1"] == 0.5
    _write_predictions(tmp_path / "p.csv", ["x", "y", "z"], top_p, top_i, ["a", "b"], 0.75)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        assert [row["prediction"] for row in csv.DictReader(f)] == ["a", "", "b"]


@pytest.mark.parametrize(("block_elements", "blocks"), [
    (7 * 64, [64, 64, 72]),  # the rows left over (8) join the last block
    (7 * 128, [200]),
    (1, [64, 64, 72]),  # at least one aligned block of rows (_BLOCK_ROWS), whatever C is
])
def test_predict_scores_blocks_of_rows_as_the_whole_matrix_at_once(block_elements, blocks,
                                                                    monkeypatch):
    """predict held every image's score for every class at once (16.9 GB for 100k images
    x 5,000 classes): it scores a block of rows at a time, with the same rankings, ties
    and accuracies as the whole (N, C) matrix of float64 log-probabilities."""
    import simclr.inference as inference
    from simclr.results import accuracy_summary, topk_accuracy

    gen = torch.Generator().manual_seed(0)
    fc = torch.nn.Linear(8, 7, dtype=torch.float64)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(7, 8, generator=gen, dtype=torch.float64))
        fc.weight[3] = fc.weight[2]  # classes 2 and 3 tie on every image
        fc.bias.zero_()
    feats = torch.randn(200, 8, generator=gen).numpy()
    feats[::5] = 0  # every class ties
    labels = np.arange(200) % 9 - 1  # -1 unlabeled; 7: a folder class fc does not know
    folder_classes = [*(str(c) for c in range(7)), "new"]
    classes = [str(c) for c in range(7)]
    shapes = []
    fc.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    monkeypatch.setattr(inference, "PREDICT_BLOCK_ELEMENTS", block_elements)
    mapped = inference._known_labels(classes, folder_classes, labels)
    top_p, top_i, ranks = inference._ranked_blocks(fc, feats, mapped, 3)
    result = inference._scores(ranks, top_p, 7, mapped, labels, 0.3)
    assert shapes == [(rows, 7) for rows in blocks]
    with torch.no_grad():  # what predict computed before, all at once
        log_probs = torch.log_softmax(fc(torch.from_numpy(feats).double()), dim=1)
    want_p, want_i = log_probs.exp().topk(3, dim=1)
    assert torch.equal(top_p, want_p) and torch.equal(top_i, want_i)
    known = np.flatnonzero(mapped >= 0)
    sure = np.flatnonzero((want_p[:, 0] >= 0.3).numpy() & (mapped >= 0))
    assert result == {"labeled": len(known), "unknown_class": 22, "unlabeled": 23,
                      **accuracy_summary(log_probs[known], mapped[known]),
                      "confident": int((want_p[:, 0] >= 0.3).sum()),
                      "confident_top1": topk_accuracy(log_probs[sure], mapped[sure], (1,))[0]}
    assert 0 < result["top1"] < result["top5"] < 1  # (some hits, some misses, some ties)


def test_predict_on_a_folder_reads_blocks_of_rows_with_the_same_results(
        tmp_path, image_folder, cache_dir, capsys, monkeypatch):
    """predict_folder's (images x classes) scores are made a bounded block at a time
    (the whole matrix held 16.9 GB for 100k images x 5,000 classes), and its CSV and
    result are those of one block."""
    import simclr.inference as inference

    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    common = {"device": "cpu", "precision": "fp32", "cache_dir": cache_dir,
              "min_probability": 0.5, "workers": 0}
    whole = predict_folder(run, str(image_folder), tmp_path / "whole.csv", **common)
    shapes = []

    def log_softmax(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return torch.nn.functional.log_softmax(x, *args, **kwargs)

    monkeypatch.setattr(inference, "PREDICT_BLOCK_ELEMENTS", 16)  # 8 rows of 2 classes
    monkeypatch.setattr(inference, "_BLOCK_ROWS", 4)
    monkeypatch.setattr(torch, "log_softmax", log_softmax)
    blocks = predict_folder(run, str(image_folder), tmp_path / "blocks.csv", **common)
    assert shapes == [(8, 2)] * 3  # 24 images
    assert {**blocks, "out": ""} == {**whole, "out": ""} and "confident_top1" in whole
    assert (tmp_path / "blocks.csv").read_text() == (tmp_path / "whole.csv").read_text()


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("function", ["embed_folder", "predict_folder", "export"])
def test_a_python_call_stopped_midway_removes_the_folders_it_made_alone(
        tmp_path, monkeypatch, failure, function):
    """The command line removed the empty --out folders of a failed or interrupted embed,
    predict or export; a caller from Python was left them. Each function now removes
    what it made, never a folder that was there before it."""
    from simclr import export, inference

    last = save_checkpoint(pretrain_checkpoint(), tmp_path / "pre" / "checkpoints")
    kept = tmp_path / "there"
    kept.mkdir()
    (kept / "empty").mkdir()  # (a folder of the caller's, empty too: not ours to remove)

    def stopped(*args, **kwargs):
        assert (kept / "new" / "deeper").is_dir()  # (made before the work)
        raise failure("stopped mid-way")

    out = kept / "new" / "deeper" / "result"
    data = tmp_path / "data"  # (beside --out: a new folder inside it is refused)
    data.mkdir()
    if function == "embed_folder":
        monkeypatch.setattr(inference, "folder_features", stopped)
        call = lambda: inference.embed_folder(last, str(data), out.with_suffix(".npz"),  # noqa: E731
                                              device="cpu", workers=0)
    elif function == "predict_folder":
        monkeypatch.setattr(inference, "classifier_file", stopped)
        call = lambda: inference.predict_folder(last, str(data), out.with_suffix(".csv"),  # noqa: E731
                                                device="cpu", workers=0)
    else:
        monkeypatch.setattr(export, "export_encoder", stopped)
        call = lambda: export.export(last, out.with_suffix(".pt"))  # noqa: E731
    with pytest.raises(failure, match="stopped mid-way"):
        call()
    assert sorted(p.name for p in kept.iterdir()) == ["empty"]


def saved_classifier(folder: Path) -> Path:
    """An untrained linear classifier of a tiny pretrained encoder over image_folder's
    classes, saved in ``folder`` (no training: what predict reads of it is its layout)."""
    from simclr.classifiers import classifier_checkpoint
    from simclr.models import Classifier
    from simclr.pretrained import model_from_checkpoint

    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    blob = classifier_checkpoint("linear", Classifier(model.encoder, 2), ckpt["config"],
                                 ["class_0", "class_1"], 0, 1.0, {})
    return save_checkpoint({k: v for k, v in blob.items() if k not in ("format", "version")},
                           folder, "linear.pt")


def test_a_min_probability_of_one_is_accepted(tmp_path, image_folder, cache_dir):
    """--min-probability lies in (0, 1]: 1 keeps only the rows the classifier is certain
    of (none here: an untrained classifier's top probability stays below 1)."""
    classifier = saved_classifier(tmp_path / "lin")
    result = predict_folder(classifier, str(image_folder), tmp_path / "p.csv", device="cpu",
                            precision="fp32", cache_dir=cache_dir, min_probability=1.0)
    assert result["images"] == 24 and result["confident"] == 0
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        assert {row["prediction"] for row in csv.DictReader(f)} == {""}
    # without one, every row is predicted (its top class), and no confident rows counted
    result = predict_folder(classifier, str(image_folder), tmp_path / "q.csv", device="cpu",
                            precision="fp32", cache_dir=cache_dir)
    assert "confident" not in result
    with open(tmp_path / "q.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 24 and all(row["prediction"] == row["top1"] for row in table)
    assert min(float(row["p1"]) for row in table) < 0.9  # (a default cut would show here)


def test_embedding_with_an_unfinished_training_says_so(tmp_path, image_folder, cache_dir,
                                                       capsys):
    """embed, as the evaluations and predict, notes that the encoder it reads is of a
    training stopped at step 4 of its 9: the features are a half-trained model's."""
    from simclr.inference import embed_folder

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    last = save_checkpoint({**state, "step": 4, "total_steps": 9},
                           tmp_path / "pre" / "checkpoints")
    embed_folder(last, str(image_folder), tmp_path / "e.npz", device="cpu", precision="fp32",
                 workers=0, cache_dir=cache_dir)
    assert f"note: {last} is an unfinished training (step 4 of 9)" in capsys.readouterr().err


def test_embed_rows_pair_each_file_with_its_own_features_label_and_path(tmp_path, cache_dir):
    """An unreadable file is left out, and every later row keeps its own file: its path,
    its features (those of the file embedded alone, unshifted) and its class; an image
    beside the class folders is embedded too, labelled -1; the result counts the skip.
    (Photos too large to cache: each row is a file read as the pass goes.)"""
    from simclr.inference import embed_folder

    data = make_image_folder(tmp_path / "data", classes=2, per_class=3, side=100)
    (data / "class_0" / "000a.png").write_bytes(b"not a picture")  # (sorted 2nd of class_0)
    shutil.copy(data / "class_1" / "002.png", data / "loose.png")
    last = save_checkpoint(pretrain_checkpoint(), tmp_path / "pre" / "checkpoints")
    common = {"device": "cpu", "precision": "fp32", "workers": 0, "cache_dir": cache_dir}
    result = embed_folder(last, str(data), tmp_path / "e.npz", **common)
    with np.load(tmp_path / "e.npz") as saved:
        feats, labels, paths = saved["features"], saved["labels"], embedded_paths(saved)
        assert list(saved["classes"]) == ["class_0", "class_1"] and labels.dtype == np.int64
        assert str(saved["encoder_weights"]).endswith(" layer h at 16 px")
    assert (result["images"], result["dim"], result["skipped"]) == (7, feats.shape[1], 1)
    assert sorted(paths) == sorted(str(p) for p in data.rglob("*.png") if p.name != "000a.png")
    want = {"class_0": 0, "class_1": 1, "data": -1}
    assert [want[Path(p).parent.name] for p in paths] == labels.tolist()
    alone = {}
    for p in (data / "class_0" / "001.png", data / "class_1" / "002.png"):
        one = tmp_path / f"only_{p.parent.name}"  # (a flat folder of that one file)
        one.mkdir()
        shutil.copy(p, one / p.name)
        embed_folder(last, str(one), tmp_path / f"{p.parent.name}.npz", **common)
        alone[str(p)] = np.load(tmp_path / f"{p.parent.name}.npz")["features"][0]
    for p, f in alone.items():
        np.testing.assert_allclose(feats[paths.index(p)], f, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats[paths.index(str(data / "loose.png"))],
                               alone[str(data / "class_1" / "002.png")], rtol=1e-4, atol=1e-5)


def test_predicts_lines_on_stderr_say_top5_what_is_not_scored_and_the_confident_top1(
        tmp_path, monkeypatch, capsys):
    """The human lines beside predict's JSON: top-5 where there is one, both kinds of
    unscored images, and the top-1 of the confident rows (none without labels)."""
    from simclr import inference

    out = str(tmp_path / "p.csv")
    counts = {"images": 9, "labeled": 6, "unknown_class": 2, "unlabeled": 1, "classes": 7,
              "confident": 4}
    results = [{**counts, "top1": 0.5, "top5": 0.75, "confident_top1": 0.25},
               {**counts, "labeled": 0, "unknown_class": 8, "confident_top1": None}]
    monkeypatch.setattr(inference, "predict_folder", lambda *a, **k: results.pop(0))
    flags = ["predict", "--checkpoint", "c", "--data", "d", "--out", out,
             "--min-probability", "0.5"]
    assert main(flags) == 0
    said = capsys.readouterr()
    assert json.loads(said.out)["top5"] == 0.75
    assert said.err.splitlines() == [
        f"{out}: 9 images predicted; top-1 50.00%, top-5 75.00% over the 6 in classes the "
        "classifier knows (2 in other classes and 1 beside the class folders, not scored)",
        f"{out}: 4 of 9 images predicted with probability >= 0.5 (top-1 25.00% of those "
        "labeled); the others' prediction is left empty"]
    assert main(flags) == 0
    assert capsys.readouterr().err.splitlines()[1] == (
        f"{out}: 4 of 9 images predicted with probability >= 0.5; the others' prediction "
        "is left empty")


def test_predicting_with_an_evaluations_unfinished_state_says_so(tmp_path, image_folder,
                                                                 cache_dir, capsys):
    """predict, as embed and the evaluations, notes a classifier of an unfinished
    training: its predictions are a half-trained model's."""
    partial = saved_classifier(tmp_path / "lin")
    partial = partial.rename(partial.with_name("linear-partial.pt"))
    predict_folder(partial, str(image_folder), tmp_path / "p.csv", device="cpu",
                   precision="fp32", cache_dir=cache_dir)
    assert f"note: {partial} is " in capsys.readouterr().err


def test_folder_classes_map_to_the_classifiers_own_order():
    """A folder's class names are looked up in the classifier's list, whatever its order:
    the label of each image is the classifier's index of its folder's name."""
    from simclr.inference import _known_labels

    mapped = _known_labels(["dog", "cat"], ["cat", "dog", "emu"], np.array([0, 1, 2, -1]))
    assert mapped.tolist() == [1, 0, -1, -1]
