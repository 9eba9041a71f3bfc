"""Tests for simclr.pretrained: rebuilding encoder, head and classifiers; representations at
h, z, gK; predictions on a folder."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from simclr.checkpoint import load_checkpoint, save_checkpoint
from simclr.cli import main
from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.features import extract_features
from simclr.logistic import logistic_regression
from simclr.models import Classifier, build_model
from simclr.neighbors import embedded_paths
from simclr.pretrained import (
    at_image_size,
    classifier_checkpoint,
    classifier_from_checkpoint,
    encoder_config,
    encoder_from_checkpoint,
    encoder_spec,
    folder_features,
    model_from_checkpoint,
    predict_folder,
    representation_from_checkpoint,
    trained_for,
)
from simclr.settings import build_config
from tests.conftest import make_image_folder, tiny_pretrained_run

pytestmark = pytest.mark.usefixtures("one_thread")


def pretrain_checkpoint(head_layers: int = 3, batch_norm: bool = True) -> dict:
    """A pretraining checkpoint as train.py writes it (model weights and config)."""
    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16, "model.head_layers": head_layers,
                              "model.head_batch_norm": batch_norm, "model.head_out_dim": 24})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        model.train()(torch.rand(8, 3, 16, 16))
    return {"format": "simclr-checkpoint", "version": 1, "kind": "pretrain",
            "config": cfg.to_dict(), "model": model.state_dict()}


def edited_checkpoint(folder: Path, edit: Callable[[dict], None]) -> Path:
    """A pretraining checkpoint saved in ``folder`` after ``edit`` changed its content
    (as a hand edit would: a config that no longer describes the weights, ...)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    edit(ckpt)
    return save_checkpoint({k: v for k, v in ckpt.items() if k not in ("format", "version")},
                           folder)


def test_representations_read_the_right_layer():
    ckpt = pretrain_checkpoint()
    model, spec = model_from_checkpoint(ckpt)
    model.eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        h, z = model(x)
        g1 = model.head.layers[0](h)
        g2 = model.head.layers[1](g1)
        expected = {"h": h, "g1": g1, "g2": g2, "g3": z, "z": z}
        for layer, want in expected.items():
            module, _ = representation_from_checkpoint(ckpt, layer)
            got = module.eval()(x)
            assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6), layer
            assert module.feature_dim == want.shape[1]
    assert spec["image_size"] == 16 and z.shape == (5, 24) and h.shape == (5, 64)


def test_another_image_size_keeps_the_trained_stem_and_weights(capsys):
    """--image-size: the same network on other inputs. An automatic stem stays the one
    the encoder was trained with (at 48 px it would be the ImageNet stem), the weights
    load unchanged, and the checkpoint read is not altered."""
    ckpt = pretrain_checkpoint()
    assert ckpt["config"]["model"]["cifar_stem"] is None  # automatic: CIFAR at 16 px
    trained, spec = encoder_from_checkpoint(ckpt)
    larger = at_image_size(ckpt, 48)
    encoder, larger_spec = encoder_from_checkpoint(larger)
    assert spec == {**larger_spec, "image_size": 16} and larger_spec["cifar_stem"] is True
    assert encoder.image_size == 48 and ckpt["config"]["augment"]["size"] == 16
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), trained.eval()(x), rtol=0, atol=0)
    assert at_image_size(ckpt, None, "run/last.pt") is ckpt
    assert capsys.readouterr().err == ""  # a simclr checkpoint knows its side: no note


def test_image_sizes_a_network_cannot_take_are_refused():
    with pytest.raises(SimCLRError, match=r"--image-size: must be 8 to 4096 pixels, got 4"):
        at_image_size(pretrain_checkpoint(), 4)
    vit = {"kind": "encoder", "config": {"model": {"arch": "vit_b_16", "width": 1.0,
                                                   "cifar_stem": None},
                                         "augment": {"size": 224}}}
    assert at_image_size(vit, 224)["config"]["augment"]["size"] == 224
    with pytest.raises(SimCLRError, match=r"--image-size 96: a vit_b_16's position "
                                          r"embeddings are for 224 px"):
        at_image_size(vit, 96)


@pytest.mark.parametrize("layer", ["g4", "g0", "q", "z1", ""])
def test_bad_layers_are_user_errors(layer):
    with pytest.raises(SimCLRError, match="layer"):
        representation_from_checkpoint(pretrain_checkpoint(), layer)


def test_checkpoints_without_a_head_only_offer_h():
    ckpt = pretrain_checkpoint()
    encoder_only = {"kind": "encoder", "config": ckpt["config"],
                    "model": {k: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}}
    encoder, _ = encoder_from_checkpoint(encoder_only)
    assert encoder.feature_dim == 64
    with pytest.raises(SimCLRError, match="no projection head"):
        representation_from_checkpoint(encoder_only, "z")
    # Pretrained with --head none: h is all there is (z was "the output of layer 0").
    headless = pretrain_checkpoint()
    headless["config"]["model"]["head"] = "none"
    headless["model"] = {k: v for k, v in headless["model"].items() if not k.startswith("head.")}
    with pytest.raises(SimCLRError, match=r"no projection head \(--head none\): its "
                                          r"representation is h only"):
        representation_from_checkpoint(headless, "z")


def test_random_init_rebuilds_the_architecture_only():
    ckpt = pretrain_checkpoint()
    trained, _ = model_from_checkpoint(ckpt)
    fresh, _ = model_from_checkpoint(ckpt, random_init=True)
    name = "head.layers.0.0.weight"
    assert fresh.state_dict()[name].shape == trained.state_dict()[name].shape
    assert not torch.equal(fresh.state_dict()[name], trained.state_dict()[name])


def test_random_init_is_one_encoder_whichever_layer_is_read():
    """--random-init on h, gK or z reads one random encoder (the same seed, the same
    network): before, z's came from build_model with the run's zero-initialised last
    BN of each block (its residual branches silent), h's from build_encoder without."""
    ckpt = pretrain_checkpoint()
    assert ckpt["config"]["model"]["zero_init_residual"]  # the run's own start had them at 0
    torch.manual_seed(5)
    on_h, _ = encoder_from_checkpoint(ckpt, random_init=True)
    torch.manual_seed(5)
    on_z, _ = model_from_checkpoint(ckpt, random_init=True)
    h_weights, z_weights = on_h.state_dict(), on_z.encoder.state_dict()
    assert h_weights.keys() == z_weights.keys()
    for key, value in h_weights.items():
        torch.testing.assert_close(z_weights[key], value, rtol=0, atol=0, msg=key)
    assert torch.equal(z_weights["layer1.0.bn2.weight"],
                       torch.ones_like(z_weights["layer1.0.bn2.weight"]))  # (not 0)


# ----------------------------------------------------------------- classifiers, predict


def shuffled_labels(root: Path, seed: int = 3) -> Path:
    """An image folder whose images sit in random class folders: a classifier fitted to
    it draws an arbitrary boundary, so its test predictions (near chance) move with any
    error in its weights."""
    folder = make_image_folder(root, classes=2, per_class=12, seed=seed)
    rng = np.random.default_rng(seed)
    for f in sorted(folder.glob("*/*.png")):
        f.rename(folder / f"class_{rng.integers(2)}" / f"{f.parent.name}_{f.name}")
    return folder


def classifier_run(tmp_path, image_folder, cache_dir, capsys) -> tuple[Path, dict]:
    """`simclr linear-eval --out` on a saved pretraining checkpoint, fitted to shuffled
    labels and tested on ``image_folder``: (run dir, its JSON)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    source = save_checkpoint(state, tmp_path / "pre" / "checkpoints")
    run = tmp_path / "lin"
    train = shuffled_labels(tmp_path / "train")
    assert main(["linear-eval", "--checkpoint", str(source), "--train", str(train),
                 "--test", str(image_folder), "--out", str(run), "--l2", "1e-4",
                 "--device", "cpu", "--precision", "fp32", "--cache-dir", cache_dir]) == 0
    return run, json.loads(capsys.readouterr().out)


def test_results_name_the_checkpoint_file_a_run_folder_resolved_to(
        tmp_path, image_folder, cache_dir, capsys):
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    newest = save_checkpoint({**state, "step": 7}, tmp_path / "pre" / "checkpoints")
    common = ["--train", str(image_folder), "--test", str(image_folder), "--device", "cpu",
              "--precision", "fp32", "--cache-dir", cache_dir]
    assert main(["knn", "--checkpoint", str(tmp_path / "pre"), "--out", str(tmp_path / "k"),
                 "--k", "3", *common]) == 0
    assert main(["linear-eval", "--checkpoint", str(tmp_path / "pre"), "--random-init",
                 "--layer", "z", "--l2", "1e-3", "--out", str(tmp_path / "l"), *common]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    knn = json.loads((tmp_path / "k" / "knn.json").read_text())
    lin = json.loads((tmp_path / "l" / "linear_eval.json").read_text())
    assert knn["source"] == {"checkpoint": str(newest.resolve()), "kind": "pretrain",
                             "step": 7, "features": "pretrained", "layer": "h"}
    assert lin["source"] == {**knn["source"], "features": "random init", "layer": "z"}
    assert [p["source"] for p in printed] == [knn["source"], lin["source"]]


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

    from simclr.pretrained import _write_predictions

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
    from simclr.neighbors import write_neighbors
    from simclr.pretrained import embed_folder

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
    assert main([*flags, str(tmp_path / "e.NPZ")]) == 0
    assert not (tmp_path / "e.txt").exists()
    with np.load(tmp_path / "e.NPZ") as saved:
        assert len(embedded_paths(saved)) == 24


def test_embed_stores_paths_in_the_bytes_they_take(tmp_path, image_folder, cache_dir):
    """embed saved the paths as one fixed-width str array, each as wide as the longest
    at 4 bytes a character: one 3,645-character path made 10,000 images' file 148 MB for
    2.5 MB of features. The file now grows by the paths' own bytes; a path nested deep
    and names in any script come back as they were."""
    from simclr.pretrained import embed_folder

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


def test_a_run_folder_spelled_from_the_home_folder_gives_its_encoder_and_classifier(
        tmp_path, monkeypatch):
    """load_encoder('~/pre') looked for a folder named '~'; a classifier's --checkpoint
    ~/pre, once found, took the run's own pretraining checkpoint for the classifier beside
    it (the folder test saw '~/pre', no folder)."""
    import simclr
    from simclr.pretrained import classifier_file

    monkeypatch.setenv("HOME", str(tmp_path))
    ckpt = pretrain_checkpoint()
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    folder = tmp_path / "pre" / "checkpoints"
    save_checkpoint(state, folder)
    encoder = simclr.load_encoder("~/pre")
    expected = encoder_from_checkpoint(ckpt)[0].state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in encoder.state_dict().items())
    linear = save_checkpoint({**state, "kind": "linear"}, folder, "linear.pt")
    assert classifier_file("~/pre") == linear


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
    result = predict_folder(run, str(part), tmp_path / "p.csv", device="cpu",
                            precision="fp32", cache_dir=cache_dir)
    assert (result["images"], result["labeled"], result["unknown_class"],
            result["unlabeled"]) == (6, 5, 0, 1)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), "--data", str(part), "--out",
                 str(tmp_path / "q.csv"), "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", cache_dir]) == 0
    assert ("over the 5 in classes the classifier knows (1 beside the class folders, not "
            "scored)") in capsys.readouterr().err


def test_fine_tuned_classifiers_are_rebuilt_with_their_head_layer():
    ckpt = pretrain_checkpoint(head_layers=2)
    model, spec = model_from_checkpoint(ckpt)
    clf = Classifier.from_head(model.encoder, model.head, 3)
    with torch.no_grad():
        clf.fc.weight.normal_()
    classes = ["a", "b", "c"]
    blob = classifier_checkpoint("finetune", clf, ckpt["config"], classes, 5, 1.0, {})
    rebuilt, _, names = classifier_from_checkpoint(blob)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), clf.eval()(x))
    assert names == classes and not rebuilt.training
    # (a list of other things than names: a traceback where a name is unhashable; numbers
    # would be predict's labels as if they were folder names)
    for damaged in (5, [["a"], "b", "c"], [1, 2, 3]):
        with pytest.raises(SimCLRError, match="is damaged: its classes are not a list of names"):
            classifier_from_checkpoint({**blob, "classes": damaged})
    # two outputs of one name: predict's labels would map to only one of them
    with pytest.raises(SimCLRError, match=r"is damaged: its class 'a' is named twice$"):
        classifier_from_checkpoint({**blob, "classes": ["a", "b", "a"]})


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
    from simclr import pretrained
    from simclr.pretrained import embed_folder, predict_folder

    monkeypatch.setattr(pretrained, "load_checkpoint", lambda *a: pytest.fail("worked"))
    for call, needle in [
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv", top_k=2.5),
             "--top-k must be a positive whole number, got 2.5"),
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv", top_k=True),
             "--top-k must be a positive whole number, got True"),
            (lambda: predict_folder("x", image_folder, tmp_path / "p.csv",
                                    min_probability="0.5"), "--min-probability must lie"),
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
    from simclr.pretrained import embed_folder

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


@pytest.mark.parametrize(("setting", "value", "first"), [
    ("arch", "resnet50", "first encoder.layer1.0.conv1.weight: 8x8x3x3 in the file, 8x8x1x1 "
                         "in the network); 238 missing (first encoder.layer1.0.conv3.weight)"),
    ("width", 0.25, "first encoder.stem.0.weight: 8x3x3x3 in the file, 16x3x3x3 in the "
                    "network)"),
])
def test_weights_that_do_not_fit_their_config_are_one_line(
        tmp_path, image_folder, cache_dir, capsys, setting, value, first):
    def edit(ckpt: dict) -> None:
        ckpt["config"]["model"][setting] = value

    source = edited_checkpoint(tmp_path / "pre", edit)
    described = f"{value} width 0.125" if setting == "arch" else f"resnet18 width {value}"
    common = ["--checkpoint", str(source), "--cache-dir", cache_dir, "--device", "cpu"]
    for args in (["embed", "--data", str(image_folder), "--out", str(tmp_path / "e.npz")],
                 ["knn", "--train", str(image_folder), "--test", str(image_folder), "--out",
                  str(tmp_path / "k")], ["embed", "--layer", "z", "--data", str(image_folder),
                                         "--out", str(tmp_path / "e.npz")]):
        assert main([*args, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert (f"checkpoint {source}: its weights do not fit the {described} network its "
                "config describes: ") in err and first in err
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "k").exists()


def test_a_checkpoint_without_weights_is_one_line(tmp_path, image_folder, cache_dir, capsys):
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: ckpt.pop("model"))
    assert main(["embed", "--checkpoint", str(source), "--data", str(image_folder), "--out",
                 str(tmp_path / "e.npz"), "--cache-dir", cache_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f'{source} is not a complete simclr checkpoint: it has no "model" '
                        "entry") and len(err.splitlines()) == 1
    # (the output's suffix is checked first: .NPZ is one, as .ONNX is for export)
    for name, message in (("e.NPZ", "is not a complete simclr checkpoint"),
                          ("e.txt", "the output must be a .npz file")):
        assert main(["embed", "--checkpoint", str(source), "--data", str(image_folder),
                     "--out", str(tmp_path / name), "--cache-dir", cache_dir]) == 2
        assert message in capsys.readouterr().err


def test_weights_of_an_integer_dtype_are_refused_where_the_network_has_floats():
    """An int64 convolution would be cast into the float network (its weights mostly 0)
    and embed without a word; BatchNorm's num_batches_tracked is an integer as it should."""
    ckpt = pretrain_checkpoint(head_layers=2)
    ckpt["model"]["encoder.stem.0.weight"] = ckpt["model"]["encoder.stem.0.weight"].long()
    with pytest.raises(SimCLRError) as info:
        encoder_from_checkpoint(ckpt)
    assert str(info.value).endswith(
        "1 tensors of a dtype that is not floating point (first encoder.stem.0.weight: int64 "
        "in the file, float32 in the network)")
    ckpt["model"]["encoder.stem.0.weight"] = ckpt["model"]["encoder.stem.0.weight"].bool()
    with pytest.raises(SimCLRError, match=r"encoder.stem.0.weight: bool in the file"):
        model_from_checkpoint(ckpt)
    ckpt["model"]["encoder.stem.0.weight"] = ckpt["model"]["encoder.stem.0.weight"].half()
    encoder_from_checkpoint(ckpt)  # half precision is a float: cast as before


def test_rebuilding_checks_every_part_against_the_config():
    """The head and a classifier are loaded strictly too, in one line (here for dicts
    made in code, which name no file)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    ckpt["config"]["model"]["head_out_dim"] = 32
    encoder, _ = encoder_from_checkpoint(ckpt)  # the encoder still fits
    with pytest.raises(SimCLRError) as info:
        model_from_checkpoint(ckpt)
    assert str(info.value) == (
        "checkpoint (in memory): its weights do not fit the resnet18 width 0.125 network its "
        "config describes: 4 tensors of another shape (first head.layers.1.0.weight: 24x64 in "
        "the file, 32x64 in the network)")
    blob = classifier_checkpoint("linear", Classifier(encoder, 2), ckpt["config"], ["a", "b"],
                                 0, 1.0, {})
    blob["model"]["encoder.extra"] = torch.zeros(1)
    with pytest.raises(SimCLRError, match=r"1 unexpected \(first encoder.extra\)$"):
        classifier_from_checkpoint(blob)


def test_a_run_folder_holding_an_evaluations_classifier_predicts_with_it(
        tmp_path, image_folder, cache_dir, capsys):
    # simclr linear-eval --checkpoint RUN --out RUN: RUN's last.pt is the pretraining
    # model, its linear.pt the classifier that predict and export --layer logits want.
    run, measured = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    pre = tmp_path / "pre"
    shutil.copy(run / "checkpoints" / "linear.pt", pre / "checkpoints" / "linear.pt")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(pre), "--data", str(image_folder), "--out",
                 str(out), "--device", "cpu", "--precision", "fp32", "--cache-dir",
                 cache_dir]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == measured["top1"]
    assert main(["export", "--checkpoint", str(pre), "--out", str(tmp_path / "c.pt2"),
                 "--layer", "logits"]) == 0
    card = json.loads((tmp_path / "c.pt2.json").read_text())
    assert card["output"]["shape"][1] == len(card["output"]["classes"]) == 2, card
    shutil.copy(run / "checkpoints" / "linear.pt", pre / "checkpoints" / "finetune.pt")
    assert main(["predict", "--checkpoint", str(pre), "--data", str(image_folder), "--out",
                 str(tmp_path / "p2.csv"), "--cache-dir", cache_dir]) == 2
    assert "holds several classifiers (linear.pt, finetune.pt); name one" in \
        capsys.readouterr().err
    # A supervised run's folder holds a classifier of its own: an evaluation's beside it
    # was taken instead, without a word
    (pre / "checkpoints" / "finetune.pt").unlink()
    shutil.copy(run / "checkpoints" / "linear.pt", pre / "checkpoints" / "last.pt")
    assert main(["predict", "--checkpoint", str(pre), "--data", str(image_folder), "--out",
                 str(tmp_path / "p3.csv"), "--cache-dir", cache_dir]) == 2
    assert "holds several classifiers (last.pt, linear.pt); name one" in \
        capsys.readouterr().err
    # Pretraining into the evaluation's folder would put a new encoder beside its classifier.
    assert main(["pretrain", "--data", str(image_folder), "--out", str(run),
                 "--cache-dir", cache_dir]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds checkpoints/linear.pt" in err, err


def test_a_run_folders_classifier_of_an_earlier_step_is_refused(
        tmp_path, image_folder, cache_dir, capsys):
    """linear-eval --out RUN, then the run trains on: RUN's linear.pt is of an encoder
    the run no longer has. predict and export --layer logits on RUN refuse it naming both
    steps (the file itself, named, is used as it is); info says so; a refit clears it."""
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    run = tmp_path / "pre"
    save_checkpoint({**state, "step": 3}, run / "checkpoints")
    common = ["--device", "cpu", "--precision", "fp32", "--cache-dir", cache_dir]
    fit = ["linear-eval", "--checkpoint", str(run), "--train", str(image_folder), "--test",
           str(image_folder), "--out", str(run), "--l2", "1e-3", *common]
    assert main(fit) == 0
    predict = ["predict", "--checkpoint", str(run), "--data", str(image_folder), *common]
    assert main([*predict, "--out", str(tmp_path / "p1.csv")]) == 0  # current: used
    save_checkpoint({**state, "step": 7}, run / "checkpoints")  # the run trained on
    capsys.readouterr()
    for args in ([*predict, "--out", str(tmp_path / "p2.csv")],
                 ["export", "--checkpoint", str(run), "--layer", "logits", "--out",
                  str(tmp_path / "c.pt")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "linear.pt was fitted on step 3 of this run, which " \
            "has trained on to step 7: fit it again (`simclr linear-eval --checkpoint" in err, err
    assert not (tmp_path / "p2.csv").exists() and not (tmp_path / "c.pt").exists()
    assert main(["info", str(run)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "linear.pt" in x][0]
    assert "linear classifier, 2 classes" in line and "step 0" not in line
    assert line.endswith("; it was fitted on step 3 of this run, which has trained on to step "
                         "7 (predict and export refuse the run folder)"), line
    named = [*predict, "--checkpoint", str(run / "checkpoints" / "linear.pt")]
    assert main([*named, "--out", str(tmp_path / "p3.csv")]) == 0
    assert main([*fit, "--overwrite"]) == 0  # fitted again on step 7
    assert main([*predict, "--out", str(tmp_path / "p4.csv")]) == 0
    assert main(["info", str(run)]) == 0
    assert "linear classifier, fitted on the encoder of step 7, 2 classes" in \
        capsys.readouterr().out


def test_embed_and_predict_outputs_are_whole_or_untouched(tmp_path, image_folder, cache_dir,
                                                          monkeypatch):
    """A failed write (a full disk) ends in one line and leaves the earlier file as it
    was: outputs are written beside and renamed over it."""
    import errno

    from simclr.pretrained import embed_folder

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
    import simclr.pretrained as pretrained

    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    csv_out, pt_out = tmp_path / "p.csv", tmp_path / "e.pt"
    features, encoder = pretrained.folder_features, export.encoder_from_checkpoint

    def predicted_meanwhile(*args, **kwargs):
        csv_out.write_text("theirs\n")
        return features(*args, **kwargs)

    def exported_meanwhile(*args, **kwargs):
        pt_out.write_bytes(b"theirs")
        return encoder(*args, **kwargs)

    monkeypatch.setattr(pretrained, "folder_features", predicted_meanwhile)
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
    import simclr.pretrained as pretrained

    last = save_checkpoint(pretrain_checkpoint(), tmp_path / "pre" / "checkpoints")
    out = tmp_path / "f.npz"
    flags = ["embed", "--checkpoint", str(last), "--data", str(image_folder), "--cache-dir",
             cache_dir, "--workers", "0", "--device", "cpu", "--precision", "fp32", "--out",
             str(out)]
    features = pretrained.folder_features

    def finished_meanwhile(*args, **kwargs):  # the other embed's file, published now
        np.savez(out, features=np.zeros((1, 2), np.float32))
        return features(*args, **kwargs)

    monkeypatch.setattr(pretrained, "folder_features", finished_meanwhile)
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
    from simclr.pretrained import _write_predictions

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
    from simclr.pretrained import _write_predictions

    _write_predictions(tmp_path / "p.csv", ["@a.jpg", "/b.jpg"],
                       torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([[1, 0], [0, 1]]),
                       ["-1", "=HYPERLINK(\"http://x\")"], threshold=0.0)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[1][:2] == ["'@a.jpg", "'=HYPERLINK(\"http://x\")"]
    assert table[2][:2] == ["/b.jpg", "-1"] and table[2][5] == "'=HYPERLINK(\"http://x\")"


@pytest.mark.parametrize("decoder", ["cpu", "device"])
def test_features_of_large_photos_are_the_evaluation_transform_of_each_file(
        tmp_path, decoder, monkeypatch):
    """embed (and every evaluation) on photos larger than the cache takes: each row is
    the encoder on eval_resize of that file, as an exported model given the documented
    preprocessing computes it; not a reduced whole-picture square resampled again (which
    moved features by 7-8%: simclr.data.open_folder). Non-square photos included."""
    from PIL import Image

    import simclr.features as features
    from simclr import load_encoder
    from simclr.augment import eval_resize
    from simclr.data import decode_device as real_decode_device

    if decoder == "device":  # JPEGs handed to the device decoder (the CPU stands in)
        monkeypatch.setattr(features, "decode_device",
                            lambda choice, device: real_decode_device("device", device))
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
                                         "fp32", 0, str(tmp_path / "cache"))
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
    from simclr.knn import run_knn
    from simclr.pretrained import embed_folder, load_encoder

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


def test_an_encoder_with_the_official_shortcuts_is_rebuilt_from_its_checkpoint(tmp_path,
                                                                               capsys):
    """A run with --projection-shortcuts (the official ResNet-18's first-stage projection)
    is rebuilt as such wherever its checkpoint is read (load_encoder, export, fine-tuning
    from scratch); torchvision's resnet18 has no such shortcut: that export is refused."""
    from simclr.finetune import fresh_encoder
    from simclr.pretrained import load_encoder
    from tests.conftest import saved_resnet18

    _, model = saved_resnet18(tmp_path, "official.pt", projection_shortcuts=True)
    encoder = load_encoder(tmp_path / "official.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), model.encoder.eval()(x))
    assert encoder.projection_shortcuts and fresh_encoder(encoder).projection_shortcuts
    assert main(["export", "--checkpoint", str(tmp_path / "official.pt"), "--out",
                 str(tmp_path / "r18.pth"), "--format", "torchvision"]) == 2
    assert "has no shortcut projection in its first stage" in capsys.readouterr().err
    assert not (tmp_path / "r18.pth").exists()
    assert main(["export", "--checkpoint", str(tmp_path / "official.pt"), "--out",
                 str(tmp_path / "enc.pt")]) == 0
    again = load_encoder(tmp_path / "enc.pt")
    with torch.no_grad():
        torch.testing.assert_close(again(x), encoder(x))


def test_the_digits_by_name_are_embedded_and_predicted_with_rows_named(
        tmp_path, image_folder, cache_dir, capsys, monkeypatch):
    """`--data digits` has no files: embed wrote no paths beside 597 features (neighbors
    then refused its file) and predict failed in zip(); rows are named by their place.
    A folder named `digits` is that folder, as for cifar10 (the 597 digits were used)."""
    import shutil

    from simclr.neighbors import write_neighbors
    from simclr.pretrained import embed_folder

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


def test_a_random_init_classifier_is_recorded_as_such_not_as_the_trained_encoder(
        tmp_path, image_folder, cache_dir, capsys):
    """linear-eval --random-init saved `encoder_step` of the checkpoint it was given:
    `simclr info` and export's card then called the baseline the encoder of that step."""
    from simclr.export import export
    from simclr.pretrained import trained_for

    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_checkpoint({**state, "step": 7}, tmp_path / "pre" / "checkpoints")
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(image_folder), "--test",
              str(image_folder), "--device", "cpu", "--precision", "fp32", "--cache-dir",
              cache_dir]
    assert main(["linear-eval", *common, "--l2", "1e-3", "--out", str(tmp_path / "l")]) == 0
    assert main(["linear-eval", *common, "--random-init", "--l2", "1e-3", "--out",
                 str(tmp_path / "r")]) == 0
    capsys.readouterr()
    trained, baseline = (load_checkpoint(tmp_path / run / "checkpoints" / "linear.pt")
                         for run in ("l", "r"))
    assert trained_for(trained) == "step 7" and trained_for(baseline) == "random init"
    for run in ("l", "r"):
        export(tmp_path / run, tmp_path / f"{run}.pt")
    exported = [load_checkpoint(tmp_path / f"{run}.pt") for run in ("l", "r")]
    assert [trained_for(e) for e in exported] == ["step 7", "random init"]
    assert exported[0]["step"] == 7 and "step" not in exported[1]
    for run, says in (("l", "fitted on the encoder of step 7"),
                      ("r", "fitted on the random init encoder (the baseline)")):
        assert main(["info", str(tmp_path / run)]) == 0
        assert says in capsys.readouterr().out


def test_a_fine_tuned_classifier_names_its_encoders_pretraining_step_and_its_own_steps():
    """A fine-tuning's own step counts its fine-tuning, not the pretraining of the
    encoder it started from (recorded as encoder_step)."""
    tuned = {"kind": "finetune", "step": 30, "encoder_step": 100}
    assert trained_for(tuned) == "step 100 fine-tuned 30 steps"
    assert trained_for({"kind": "linear", "step": 0, "encoder_step": 100}) == "step 100"


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
    from simclr.pretrained import _known_labels, _ranked_blocks, _scores

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


def test_predicts_confident_top1_counts_a_tie_against_the_label():
    """confident_top1 compared the first of topk's indices: a tie went to class 0."""
    log_probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64).log()
    result = predicted_scores(log_probs, np.array([0, 1]), min_probability=0.5)
    assert result["confident"] == 2 and result["confident_top1"] == result["top1"] == 0.5


def test_a_top_probability_equal_to_min_probability_is_confident_and_predicted(tmp_path):
    """--min-probability P rejects rows whose top probability is below P: one of exactly
    P keeps its prediction and counts as confident, in the CSV and the counts alike."""
    from simclr.pretrained import _scores, _write_predictions
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
    import simclr.pretrained as pretrained
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
    monkeypatch.setattr(pretrained, "PREDICT_BLOCK_ELEMENTS", block_elements)
    mapped = pretrained._known_labels(classes, folder_classes, labels)
    top_p, top_i, ranks = pretrained._ranked_blocks(fc, feats, mapped, 3)
    result = pretrained._scores(ranks, top_p, 7, mapped, labels, 0.3)
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
    import simclr.pretrained as pretrained

    run, _ = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    common = {"device": "cpu", "precision": "fp32", "cache_dir": cache_dir,
              "min_probability": 0.5, "workers": 0}
    whole = predict_folder(run, str(image_folder), tmp_path / "whole.csv", **common)
    shapes = []

    def log_softmax(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return torch.nn.functional.log_softmax(x, *args, **kwargs)

    monkeypatch.setattr(pretrained, "PREDICT_BLOCK_ELEMENTS", 16)  # 8 rows of 2 classes
    monkeypatch.setattr(pretrained, "_BLOCK_ROWS", 4)
    monkeypatch.setattr(torch, "log_softmax", log_softmax)
    blocks = predict_folder(run, str(image_folder), tmp_path / "blocks.csv", **common)
    assert shapes == [(8, 2)] * 3  # 24 images
    assert {**blocks, "out": ""} == {**whole, "out": ""} and "confident_top1" in whole
    assert (tmp_path / "blocks.csv").read_text() == (tmp_path / "whole.csv").read_text()


def test_a_recorded_eval_size_is_the_side_read_and_the_trained_side_keeps_the_stem():
    """augment.eval_size (--eval-size): evaluations read images at it without
    --image-size. The stem stays the trained side's: an encoder trained at 40 px (the
    ImageNet stem) read at 32 px, which alone would pick the CIFAR stem, loads its
    weights into the ImageNet stem, head included; --image-size still overrides."""
    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 40, "augment.eval_size": 32})
    torch.manual_seed(0)
    model = build_model(cfg.model, 40)
    ckpt = {"kind": "pretrain", "config": cfg.to_dict(), "model": model.state_dict()}
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec["image_size"] == 32 and spec["cifar_stem"] is False
    assert encoder.image_size == 32 and not encoder.cifar_stem
    rebuilt, _ = model_from_checkpoint(ckpt)
    assert rebuilt.encoder.image_size == 32 and not rebuilt.encoder.cifar_stem
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x)[1], model.eval()(x)[1], rtol=0, atol=0)
    other = at_image_size(ckpt, 48)
    assert encoder_spec(other) == {**spec, "image_size": 48}
    # 48 px is the side it is read at; the trained side stays recorded (an export or a
    # classifier of it said '48 px', as if trained there)
    assert (other["config"]["augment"]["size"], other["config"]["augment"]["eval_size"]) \
        == (40, 48)
    assert ckpt["config"]["augment"]["eval_size"] == 32  # the checkpoint read is kept
    # A classifier fitted on it records both sides too, and reads images at 48 px.
    fitted = encoder_config(encoder, 48, other["config"])
    assert (fitted["augment"]["size"], fitted["augment"]["eval_size"]) == (40, 48)
    assert encoder_spec({"config": fitted}) == encoder_spec(other)
    # Its own side given again: no evaluation side of another (the file as it was).
    assert at_image_size(ckpt, 40)["config"]["augment"]["eval_size"] is None


def test_evaluating_an_unfinished_pretraining_says_so(tmp_path, capsys):
    """A pretraining stopped early (or still training) evaluated by its run folder: the
    commands that read its encoder said nothing of its being half-trained (predict did
    of a classifier's training); each says so on stderr, its results unchanged."""
    from simclr import train
    from tests.conftest import tiny_flags

    data = make_image_folder(tmp_path / "images")
    test = make_image_folder(tmp_path / "test", per_class=2, seed=1)
    run, cache = tmp_path / "cut", str(tmp_path / "cache")

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(data, run, cache, checkpoint_every=0))
    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    last = run / "checkpoints" / "last.pt"
    note = f"note: {last} is an unfinished training (step 1 of 6); `simclr pretrain " \
        f"--resume {run}` continues it\n"
    common = ["--cache-dir", cache, "--workers", "0"]
    for argv in (["knn", "--checkpoint", str(run), "--train", str(data), "--test", str(test),
                  "--k", "3", *common],
                 ["embed", "--checkpoint", str(run), "--data", str(test),
                  "--out", str(tmp_path / "e.npz"), *common],
                 ["export", "--checkpoint", str(run), "--out", str(tmp_path / "enc.pt")]):
        capsys.readouterr()
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert note in err, (argv[0], err)
        assert "note:" not in out  # (the results as they were)
    # Started with --processes: the command that continues it is the one info names
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["provenance"]["argv"] = [*config["provenance"]["argv"], "--processes", "2"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "enc2.pt")]) == 0
    assert f"`simclr pretrain --resume {run} --processes 2` continues it" \
        in capsys.readouterr().err
    # A periodic checkpoint named (accuracy against steps): a step chosen, no note
    (run / "checkpoints" / "last.pt").rename(run / "checkpoints" / "ckpt-00000001.pt")
    assert main(["export", "--checkpoint", str(run / "checkpoints" / "ckpt-00000001.pt"),
                 "--out", str(tmp_path / "enc3.pt")]) == 0
    assert "note:" not in capsys.readouterr().err
    # A finished run's checkpoint: no note
    train_dir, test_dir, cache = tiny_pretrained_run(tmp_path / "done")
    capsys.readouterr()
    assert main(["knn", "--checkpoint", str(tmp_path / "done/pre"), "--train", str(train_dir),
                 "--test", str(test_dir), "--k", "3", "--cache-dir", cache,
                 "--workers", "0"]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("function", ["embed_folder", "predict_folder", "export"])
def test_a_python_call_stopped_midway_removes_the_folders_it_made_alone(
        tmp_path, monkeypatch, failure, function):
    """The command line removed the empty --out folders of a failed or interrupted embed,
    predict or export; a caller from Python was left them. Each function now removes
    what it made, never a folder that was there before it."""
    from simclr import export, pretrained

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
        monkeypatch.setattr(pretrained, "folder_features", stopped)
        call = lambda: pretrained.embed_folder(last, str(data), out.with_suffix(".npz"),  # noqa: E731
                                               device="cpu", workers=0)
    elif function == "predict_folder":
        monkeypatch.setattr(pretrained, "classifier_file", stopped)
        call = lambda: pretrained.predict_folder(last, str(data), out.with_suffix(".csv"),  # noqa: E731
                                                 device="cpu", workers=0)
    else:
        monkeypatch.setattr(export, "export_encoder", stopped)
        call = lambda: export.export(last, out.with_suffix(".pt"))  # noqa: E731
    with pytest.raises(failure, match="stopped mid-way"):
        call()
    assert sorted(p.name for p in kept.iterdir()) == ["empty"]


@pytest.mark.parametrize("step", ["\x1b[2Jstep", [[1]] * 3, True, -1, 2.5])
def test_a_partial_files_odd_step_is_not_printed(tmp_path, capsys, step):
    """An evaluation's -partial.pt is a received file too: its step was printed
    whatever it was ('step <ESC>[2J... of 1'; a list of shared references nested 24
    deep as a 117 MB line). A step that is no count is said to be damaged, not shown."""
    from simclr.pretrained import note_unfinished

    assert note_unfinished(tmp_path / "linear-partial.pt", {"step": step, "total_steps": 1})
    err = capsys.readouterr().err
    assert "an unfinished training (its recorded step is damaged)" in err
    assert f"step {step}" not in err
    note_unfinished(tmp_path / "linear-partial.pt", {"step": 3, "total_steps": [1]})
    assert "(step 3); its command" in capsys.readouterr().err


@pytest.mark.parametrize("damage, said", [
    ("fc.weight", "its classifier's weights are not finite"),
    ("fc.bias", "its classifier's weights are not finite"),
    ("one class", "its classifier has 1 class (it tells 2 or more apart)")])
def test_a_classifier_of_non_finite_weights_or_one_class_is_refused(damage, said):
    """A received classifier whose fc weights are NaN predicted nan probabilities and no
    class, exiting 0 (embed refuses an encoder whose outputs are not finite); one of a
    single class (linear-eval needs two) was taken as it was."""
    ckpt = pretrain_checkpoint()
    encoder, _ = encoder_from_checkpoint(ckpt)
    classes = ["a"] if damage == "one class" else ["a", "b"]
    blob = classifier_checkpoint("linear", Classifier(encoder, len(classes)), ckpt["config"],
                                 classes, 0, 1.0, {})
    if damage != "one class":
        blob["model"][damage].view(-1)[0] = float("nan" if damage == "fc.weight" else "inf")
    with pytest.raises(SimCLRError, match=rf"^the checkpoint is damaged: {re.escape(said)}$"):
        classifier_from_checkpoint(blob)


@pytest.mark.parametrize("layer, depth", [("z", None), ("g1", 1), ("g01", 1), ("g12", 12)])
def test_parse_layer_reads_z_and_gk(layer, depth):
    from simclr.pretrained import parse_layer

    assert parse_layer(layer) == depth


@pytest.mark.parametrize("layer", ["g0", "g", "h", "g²", "g١", "gx", "G1", ""])
def test_parse_layer_refuses_anything_else_in_one_line(layer):
    """g² passed str.isdigit and ended in int()'s ValueError: a traceback."""
    from simclr.pretrained import parse_layer

    with pytest.raises(SimCLRError, match="--layer: unknown value"):
        parse_layer(layer)


def test_evaluation_sides_below_what_the_network_takes_are_refused(tmp_path, image_folder,
                                                                   cache_dir, capsys):
    """A DenseNet takes images of 29 px or more: --image-size 8 (and a run's recorded
    evaluation side of 8, as pretraining accepted before) ended every evaluation and
    export in a RuntimeError in the first forward; now one line naming the flag (or the
    file's setting) and the least side, before any image is read."""
    cfg = build_config(flags={"model.arch": "densenet121", "augment.size": 32,
                              "model.head_out_dim": 8})
    torch.manual_seed(0)
    ckpt = {"kind": "pretrain", "config": cfg.to_dict(),
            "model": build_model(cfg.model, 32).state_dict()}
    with pytest.raises(SimCLRError, match=r"^--image-size 16 is too small for densenet121: "
                                          r"it needs at least 29 px$"):
        at_image_size(ckpt, 16)
    assert at_image_size(ckpt, 29)["config"]["augment"]["eval_size"] == 29
    run = save_checkpoint(ckpt, tmp_path / "run")
    ckpt["config"]["augment"]["eval_size"] = 8  # (a run pretrained with --eval-size 8)
    old = save_checkpoint(ckpt, tmp_path / "old")
    common = ["--cache-dir", cache_dir, "--workers", "0", "--device", "cpu"]
    for argv, message in (
            (["knn", "--checkpoint", str(run), "--train", str(image_folder), "--test",
              str(image_folder), "--image-size", "8", *common],
             "--image-size 8 is too small for densenet121: it needs at least 29 px"),
            (["embed", "--checkpoint", str(run), "--data", str(image_folder), "--out",
              str(tmp_path / "e.npz"), "--image-size", "8", *common],
             "--image-size 8 is too small for densenet121: it needs at least 29 px"),
            (["knn", "--checkpoint", str(old), "--train", str(image_folder), "--test",
              str(image_folder), *common],
             "the checkpoint's evaluation side (its --eval-size) 8 is too small for "
             "densenet121: it needs at least 29 px; give --image-size")):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not Path(cache_dir).exists() and not (tmp_path / "e.npz").exists()
    # (such a run, saved before pretrain refused its --eval-size, evaluates at a side
    # given: its checkpoint still loads)
    assert at_image_size(load_checkpoint(old), 40)["config"]["augment"]["eval_size"] == 40


@pytest.mark.parametrize("kind", ["linear", "finetune"])
def test_a_classifier_reading_another_number_of_features_is_refused_before_any_image(
        tmp_path, image_folder, kind, capsys):
    """A damaged classifier whose fc.weight reads fewer features than its encoder (or
    kept head layer) gives was rebuilt around that width and loaded: predict embedded
    the whole folder, then stopped on 'mat1 and mat2 shapes cannot be multiplied'."""
    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    clf = Classifier.from_head(model.encoder, model.head, 2) if kind == "finetune" \
        else Classifier(model.encoder, 2)
    blob = classifier_checkpoint(kind, clf, ckpt["config"], ["a", "b"], 5, 1.0, {})
    gives = clf.fc.in_features
    blob["model"]["fc.weight"] = blob["model"]["fc.weight"][:, :10].clone()
    said = f"is damaged: its classifier reads 10 features, not the {gives} its " \
        f"{'head layer' if kind == 'finetune' else 'encoder'} gives$"
    with pytest.raises(SimCLRError, match=f"^the checkpoint {said}"):
        classifier_from_checkpoint(blob)
    path = save_checkpoint(blob, tmp_path / "c" / "checkpoints", f"{kind}.pt")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(path), "--data", str(image_folder),
                 "--out", str(tmp_path / "p.csv"), "--device", "cpu"]) != 0
    out, err = capsys.readouterr()
    assert re.search(f"^simclr predict: error: {re.escape(str(path))} {said}", err, re.M), err
    assert "Traceback" not in err and not (tmp_path / "p.csv").exists()
    # (export --layer logits built its program around the same misfit)
    assert main(["export", "--checkpoint", str(path), "--layer", "logits",
                 "--out", str(tmp_path / "l.pt2")]) != 0
    err = capsys.readouterr().err
    assert re.search(f"^simclr export: error: {re.escape(str(path))} {said}", err, re.M), err
    assert not (tmp_path / "l.pt2").exists()


def _diverged(ckpt: dict, part: str = "encoder.", value: float = float("nan")) -> None:
    """One of ``part``'s convolution (or linear) weights turned ``value``, as a diverged
    or damaged run leaves it."""
    name = next(k for k in ckpt["model"] if k.startswith(part) and k.endswith("weight"))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_encoder_weights_are_refused_when_read(tmp_path, value):
    """A diverged encoder's NaN / inf weights gave NaN outputs (refused only after a
    folder was decoded; a fine-tuning stopped at step 1 blaming --lr): refused when
    the encoder is rebuilt, in one line naming the file; the random-init baseline takes
    none of its weights and is built as before."""
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: _diverged(ckpt, value=value))
    ckpt = load_checkpoint(source)
    said = rf"^{re.escape(str(source))}: the weights hold NaN or inf values \(a diverged or " \
           r"damaged checkpoint\?\)$"
    for read in (encoder_from_checkpoint, model_from_checkpoint,
                 lambda c: representation_from_checkpoint(c, "g1")):
        with pytest.raises(SimCLRError, match=said):
            read(ckpt)
    encoder, _ = encoder_from_checkpoint(ckpt, random_init=True)
    assert all(torch.isfinite(p).all() for p in encoder.parameters())


def test_a_non_finite_projection_head_is_refused_where_it_is_read(tmp_path):
    """z and gK read the head: NaN there is refused as the encoder's is; h reads the
    encoder alone, which is sound."""
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: _diverged(ckpt, "head."))
    ckpt = load_checkpoint(source)
    with pytest.raises(SimCLRError, match="the weights hold NaN or inf values"):
        representation_from_checkpoint(ckpt, "z")
    encoder_from_checkpoint(ckpt)


def test_init_from_non_finite_weights_is_refused_before_any_image_is_decoded(
        tmp_path, image_folder, capsys):
    """--init-from a diverged checkpoint started a run that stopped at its first step,
    blaming the learning rate: the file is refused in one line, before the data."""
    source = edited_checkpoint(tmp_path / "pre", _diverged)
    cache = tmp_path / "cache"
    assert main(["pretrain", "--data", str(image_folder), "--out", str(tmp_path / "run"),
                 "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
                 "--batch-size", "8", "--max-steps", "1", "--no-progress", "--workers", "0",
                 "--cache-dir", str(cache), "--precision", "fp32", "--device", "cpu",
                 "--init-from", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: --init-from {source}: the weights hold NaN or inf values "
                        "(a diverged or damaged checkpoint?)\n"), err
    assert len(err.strip().splitlines()) == 1
    assert not cache.exists()  # (nothing decoded)


def test_init_from_torchvision_weights_holding_inf_is_refused(tmp_path):
    """A torchvision state dict is read as the encoder's weights: checked alike."""
    from simclr.pretrained import initial_weights

    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(SimCLRError, match=rf"^--init-from {re.escape(str(tmp_path))}.tv\.pth: "
                                          r"the weights hold NaN or inf values"):
        initial_weights(str(tmp_path / "tv.pth"))


def test_init_from_a_non_finite_projection_head_is_refused(tmp_path):
    """The head is loaded where its shape fits the run's: a file whose head holds NaN is
    a diverged or damaged one, refused as a whole before anything is built."""
    from simclr.pretrained import initial_weights

    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: _diverged(ckpt, "head."))
    with pytest.raises(SimCLRError, match=rf"^--init-from {re.escape(str(source))}: the "
                                          r"weights hold NaN or inf values"):
        initial_weights(str(source))


@pytest.mark.parametrize("command", ["finetune", "linear-eval"])
def test_evaluating_non_finite_weights_is_refused_before_any_image_is_decoded(
        tmp_path, image_folder, capsys, command):
    """finetune --checkpoint of a diverged run stopped at step 1 saying 'Lower --lr';
    linear-eval said the outputs were not finite once --train was decoded: the file is
    refused in one line before either folder is read."""
    source = edited_checkpoint(tmp_path / "pre", _diverged)
    cache = tmp_path / "cache"
    assert main([command, "--checkpoint", str(source), "--train", str(image_folder),
                 "--test-fraction", "0.25", "--out", str(tmp_path / "ev"), "--cache-dir",
                 str(cache), "--workers", "0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: {source}: the weights hold NaN or inf values (a diverged or "
                        "damaged checkpoint?)\n"), err
    assert len(err.strip().splitlines()) == 1
    assert not cache.exists()
