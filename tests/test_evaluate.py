"""Linear evaluation of a frozen encoder (L-BFGS and SGD protocols), and what the
evaluation commands share: results files, --overwrite, one-line errors, image folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from simclr import evaluate
from simclr.errors import SimCLRError
from simclr.evaluate import run_linear_eval
from simclr.features import check_labeled
from simclr.knn import run_knn
from tests.conftest import (
    check_ranked_test,
    colour_source,
    first_conv_formats,
    in_nchw,
    make_image_folder,
    recorded_test,
    snapshot,
    stop_at,
    stopped_in,
    tiny_encoder,
    warmed_encoder,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------- features and frozen encoder


@pytest.mark.parametrize("protocol", ["lbfgs", "sgd"])
def test_linear_eval_leaves_the_encoder_untouched(protocol, tmp_path):
    enc = warmed_encoder()
    before = snapshot(enc)
    grads_flags = [p.requires_grad for p in enc.parameters()]
    train, test = colour_source(seed=0), colour_source(n_per_class=4, seed=1)
    result = run_linear_eval(enc, train, test, tmp_path / protocol, image_size=16,
                             protocol=protocol, batch_size=8, epochs=2, device="cpu",
                             precision="fp32", l2_grid=[1e-3, 1e-1], verbose=False)
    after = enc.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():  # parameters and buffers (BN running stats, counts)
        assert torch.equal(value, after[key]), key
    assert all(m.training for m in enc.modules())  # train mode given, train mode back
    assert [p.requires_grad for p in enc.parameters()] == grads_flags
    assert all(p.grad is None for p in enc.parameters())
    assert 0.0 <= result["top1"] <= 1.0 and result["top5"] is None  # 3 classes
    saved = json.loads((tmp_path / protocol / "linear_eval.json").read_text())
    assert saved["top1"] == result["top1"] and saved["protocol"] == protocol
    assert Path(saved["confusion_figure"]).is_file()


def test_feature_width_measures_in_eval_mode_and_leaves_the_encoder_as_it_was():
    """An encoder without ``feature_dim`` is measured on two blank images: in eval mode,
    so its BatchNorm running statistics (those of pretraining) are not pulled towards
    the blank images' zeros, and its train mode is given back."""
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with torch.no_grad():  # running statistics away from their init (0, 1)
        enc(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) + 1.0)
    before = snapshot(enc)
    assert evaluate.feature_width(enc, 16) == 5
    for key, value in enc.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(m.training for m in enc.modules())


def test_freezing_gives_back_only_the_gradients_it_took():
    """Parameters the caller froze itself (a partly frozen encoder) stay frozen after the
    linear layer's training: only those that took gradients get them back."""
    enc = tiny_encoder()
    params = list(enc.parameters())
    for p in params[:3]:
        p.requires_grad_(False)
    flags = [p.requires_grad for p in params]
    with evaluate._frozen(enc):
        assert not any(p.requires_grad for p in params)
    assert [p.requires_grad for p in params] == flags


def test_the_lbfgs_held_out_split_is_drawn_from_the_runs_seed(monkeypatch):
    """--seed reaches the L-BFGS protocol: its held-out split (logistic.stratified_split)
    is drawn from it, so two seeds give two splits."""
    from types import SimpleNamespace

    import numpy as np

    seen = {}

    def fake_regression(train_x, train_y, test_x, num_classes, **kwargs):
        seen.update(kwargs)
        return {}, None, None

    monkeypatch.setattr(evaluate, "logistic_regression", fake_regression)
    run = SimpleNamespace(seed=7, num_classes=2, device="cpu", verbose=False,
                          train=None, test=None,
                          features=lambda images, flag: (np.zeros((4, 3), np.float32),
                                                         np.array([0, 1, 0, 1])))
    evaluate._fit_lbfgs(run, None, None, 0.25, 10)
    assert seen["seed"] == 7 and seen["val_fraction"] == 0.25


def test_the_sgd_layer_is_initialised_from_the_runs_seed():
    """The SGD protocol's new linear layer is drawn from --seed: the same seed the same
    layer, another seed another."""
    enc = tiny_encoder()
    cpu = torch.device("cpu")
    a, b = (evaluate._new_probe(enc, 3, 16, s, cpu).fc.weight for s in (3, 4))
    assert torch.equal(a, evaluate._new_probe(enc, 3, 16, 3, cpu).fc.weight)
    assert not torch.equal(a, b)


def test_a_failed_sgd_training_still_unfreezes_the_encoder(monkeypatch):
    """The encoder is frozen only while the layer trains: a training that ends in an
    error (here a stand-in that raises) leaves its flags and requires_grad as they were."""
    enc = warmed_encoder()
    grads_flags = [p.requires_grad for p in enc.parameters()]

    def failing_training(*args, **kwargs):
        assert not any(p.requires_grad for p in enc.parameters())  # frozen meanwhile
        raise SimCLRError("the training failed")

    monkeypatch.setattr(evaluate, "train_classifier", failing_training)
    with pytest.raises(SimCLRError, match="the training failed"):
        run_linear_eval(enc, colour_source(seed=0), colour_source(n_per_class=2, seed=1), None,
                        image_size=16, protocol="sgd", batch_size=8, epochs=1, device="cpu",
                        precision="fp32", verbose=False)
    assert all(m.training for m in enc.modules())
    assert [p.requires_grad for p in enc.parameters()] == grads_flags


def test_sgd_linear_eval_with_a_batch_larger_than_the_data_says_so(capsys):
    train, test = colour_source(seed=0), colour_source(n_per_class=2, seed=1)
    result = run_linear_eval(tiny_encoder(), train, test, None, image_size=16, protocol="sgd",
                             batch_size=4096, epochs=1, device="cpu", precision="fp32")
    assert ("--batch-size 4096 is more than the 24 training images: batches of 24, lr scaled "
            "by 24/256") in capsys.readouterr().err
    assert result["num_train"] == 24
    # what else fixes the result is recorded with it, not in argv alone (and only if typed)
    assert (result["momentum"], result["crop_scale"], result["crop_sampler"]) == \
        (0.9, [0.08, 1.0], "torchvision")


def test_sgd_linear_eval_takes_fractional_epochs(monkeypatch):
    """... and its cosine spans the steps it trains, each step once (no warm-up, App. B.6)."""
    scheduled = []
    real = evaluate.scheduled_lr
    monkeypatch.setattr(evaluate, "scheduled_lr",
                        lambda step, total, p: scheduled.append((step, total)) or real(step,
                                                                                      total, p))
    train, test = colour_source(seed=0), colour_source(n_per_class=2, seed=1)
    result = run_linear_eval(tiny_encoder(), train, test, None, image_size=16, protocol="sgd",
                             batch_size=8, epochs=2.5, device="cpu", precision="fp32",
                             verbose=False)
    assert result["steps"] == 8  # 24 images at batch 8: 3 steps an epoch, x 2.5 rounded
    assert scheduled == [(step, 8) for step in range(8)]
    assert result["peak_lr"] == pytest.approx(0.1 * 8 / 256)  # App. B.6's 0.1 x B/256


def test_lbfgs_linear_eval_separates_easy_classes(tmp_path):
    train, test = colour_source(seed=0), colour_source(n_per_class=5, seed=1)
    result = run_linear_eval(tiny_encoder(), train, test, None, image_size=16,
                             device="cpu", precision="fp32", verbose=False)
    assert result["top1"] == 1.0
    assert result["num_train"] == 24 and result["num_test"] == 15 and result["num_classes"] == 3


def test_results_record_absolute_paths_whatever_the_shells_folder(tmp_path, monkeypatch):
    """--out given relative to the shell's folder: the files the results name are
    recorded as absolute paths, valid from anywhere (as the source checkpoint is)."""
    train, test = colour_source(seed=0), colour_source(n_per_class=3, seed=1)
    monkeypatch.chdir(tmp_path)
    fast = {"image_size": 16, "device": "cpu", "precision": "fp32", "verbose": False}
    run_knn(tiny_encoder(), train, test, "k", k=3, **fast)
    run_linear_eval(tiny_encoder(), train, test, "l", **fast)
    monkeypatch.chdir("/")
    knn = json.loads((tmp_path / "k" / "knn.json").read_text())
    linear = json.loads((tmp_path / "l" / "linear_eval.json").read_text())
    assert knn["confusion_figure"] == str(tmp_path / "k" / "knn_confusion.png")
    assert linear["confusion_figure"] == str(tmp_path / "l" / "linear_eval_confusion.png")
    assert linear["checkpoint"] == str(tmp_path / "l" / "checkpoints" / "linear.pt")
    assert all(Path(p).is_file() for p in (knn["confusion_figure"], linear["checkpoint"]))


def test_overwrite_replaces_the_earlier_results_of_the_same_command(tmp_path):
    """Refused by default (naming --overwrite); with it, the command's own files are
    replaced, and a classifier the new run does not save is not left to pass for its."""
    from simclr.commands import RawPixels

    train, test = colour_source(seed=0), colour_source(n_per_class=3, seed=1)
    fast = {"image_size": 16, "device": "cpu", "precision": "fp32", "verbose": False}
    run_knn(tiny_encoder(), train, test, tmp_path, k=3, **fast)
    with pytest.raises(SimCLRError, match="already holds knn.json from an earlier run; choose "
                       "another --out, or pass --overwrite to replace it"):
        run_knn(tiny_encoder(), train, test, tmp_path, k=5, **fast)
    assert run_knn(tiny_encoder(), train, test, tmp_path, k=5, overwrite=True, **fast)["k"] == 5
    assert json.loads((tmp_path / "knn.json").read_text())["k"] == 5
    classifier = tmp_path / "checkpoints" / "linear.pt"
    run_linear_eval(tiny_encoder(), train, test, tmp_path, **fast)
    assert classifier.is_file()
    with pytest.raises(SimCLRError, match="already holds linear_eval.json"):
        run_linear_eval(RawPixels(), train, test, tmp_path, l2=1e-3, **fast)
    raw = run_linear_eval(RawPixels(), train, test, tmp_path, l2=1e-3, overwrite=True, **fast)
    saved = json.loads((tmp_path / "linear_eval.json").read_text())
    assert saved["top1"] == raw["top1"] and saved["feature_dim"] == 3 * 16 * 16
    assert saved["checkpoint"] is None and not classifier.exists()  # pixels: no classifier
    assert json.loads((tmp_path / "knn.json").read_text())["k"] == 5  # another command's


def test_a_classifier_another_run_wrote_meanwhile_is_kept_without_overwrite(tmp_path):
    """A linear evaluation on raw pixels saves no classifier: with --overwrite it removes
    an earlier run's linear.pt (which would pass for its own); without, one found there
    at the end is another process's, written since this run began: kept, not deleted."""
    from simclr.commands import RawPixels

    classifier = tmp_path / "checkpoints" / "linear.pt"
    classifier.parent.mkdir()
    classifier.write_bytes(b"another run's classifier")
    linear = torch.nn.Linear(3 * 16 * 16, 2)
    args = (RawPixels(), linear, 16, None, ["a", "b"], {"elapsed_s": 1.0}, tmp_path)
    assert evaluate.save_linear_classifier(*args, overwrite=False) is None
    assert classifier.read_bytes() == b"another run's classifier"
    assert evaluate.save_linear_classifier(*args, overwrite=True) is None
    assert not classifier.exists()


def test_a_classifier_on_a_torchvision_encoders_h_is_saved(tmp_path):
    """Like the ResNet's, a torchvision network's h (--arch mobilenet_v3_small...) is a
    representation whose linear classifier ``simclr predict`` applies: it is saved."""
    from simclr.backbones import TorchvisionEncoder
    from simclr.checkpoint_read import load_checkpoint

    encoder = TorchvisionEncoder("mobilenet_v3_small", 32)
    linear = torch.nn.Linear(encoder.feature_dim, 2)
    path = evaluate.save_linear_classifier(encoder, linear, 32, None, ["a", "b"],
                                           {"elapsed_s": 1.0}, tmp_path)
    assert path == str(tmp_path / "checkpoints" / "linear.pt")
    saved = load_checkpoint(path)
    assert saved["kind"] == "linear" and torch.equal(saved["model"]["fc.weight"],
                                                     linear.weight)


def test_the_lbfgs_linear_evaluation_keeps_no_scores_matrix(tmp_path, monkeypatch):
    """The test log-probabilities are reduced block by block as they are computed (the
    (M, C) matrix: 2 GB in float32 at 100k test images x 5,000 classes): what reaches
    the results holds O(M) numbers, and they are the whole matrix's, in blocks of 3
    rows: accuracies, JSON, confusion matrix."""
    import numpy as np

    import simclr.logistic as logistic
    import simclr.results as results_module
    from simclr.results import accuracy_summary, confusion_matrix, top1_predictions

    train, test = colour_source(classes=12, seed=0), colour_source(classes=12, n_per_class=2,
                                                                   seed=1)
    fit, full, given, drawn = evaluate.logistic_regression, [], [], []

    def fit_twice(train_x, train_y, test_x, *args, **kwargs):  # (the same fit, on the CPU)
        whole = {key: value for key, value in kwargs.items() if key != "test_y"}
        full.append(fit(train_x, train_y, test_x, *args, **whole)[1])
        return fit(train_x, train_y, test_x, *args, **kwargs)

    monkeypatch.setattr(evaluate, "logistic_regression", fit_twice)
    finish = evaluate.finish_results
    monkeypatch.setattr(evaluate, "finish_results", lambda r, o, n, scores, labels, *a: (
        given.append((scores, labels)), finish(r, o, n, scores, labels, *a))[1])
    monkeypatch.setattr(results_module, "save_confusion_figure",
                        lambda matrix, *a: drawn.append(matrix) or tmp_path / "c.png")
    monkeypatch.setattr(logistic, "CHUNK_ELEMENTS", 12 * 3)
    result = run_linear_eval(tiny_encoder(), train, test, tmp_path, image_size=16, l2=1e-3,
                             device="cpu", precision="fp32", verbose=False)
    scores, labels = given[0]
    held = (scores.numel() if isinstance(scores, torch.Tensor)
            else sum(torch.as_tensor(v).numel() for v in vars(scores).values()))
    assert held <= 3 * 24 < 24 * 12, held
    assert {key: result[key] for key in ("top1", "top5")} == accuracy_summary(full[0], labels)
    assert json.loads((tmp_path / "linear_eval.json").read_text())["top1"] == result["top1"]
    np.testing.assert_array_equal(drawn[0], confusion_matrix(
        labels, top1_predictions(full[0], labels), 12))


def test_the_sgd_linear_evaluation_keeps_no_logits_matrix(tmp_path, monkeypatch):
    """--protocol sgd's test ranks each batch of logits as it comes (the float32 (M, C)
    logits: 4 GB at 100k test images x 10k classes): what reaches the results holds O(M)
    numbers, and they are the whole matrix's, in batches of 8: accuracies, JSON,
    confusion matrix."""
    train, test = colour_source(classes=12, seed=0), colour_source(classes=12, n_per_class=2,
                                                                   seed=1)
    seen = recorded_test(monkeypatch, evaluate, tmp_path)
    result = run_linear_eval(tiny_encoder(), train, test, tmp_path, image_size=16,
                             protocol="sgd", batch_size=8, epochs=1, device="cpu",
                             precision="fp32", verbose=False)
    check_ranked_test(seen, result, tmp_path / "linear_eval.json", 12)


def test_a_linear_evaluation_finished_meanwhile_in_its_out_is_kept(tmp_path, monkeypatch):
    """Two `simclr linear-eval --out D` (lbfgs: no hold of D) at once: the second to
    finish is refused once it would save its classifier, the first's classifier and
    results kept; the first's unfinished sgd training (there since the second's start)
    is never deleted by the second."""
    train, test = colour_source(seed=0), colour_source(n_per_class=3, seed=1)
    fast = {"image_size": 16, "device": "cpu", "precision": "fp32", "verbose": False}
    fit = evaluate.logistic_regression
    kept = {"checkpoints/linear.pt": "the first's classifier",
            "linear_eval.json": '{"top1": 0.5}',
            "checkpoints/linear-partial.pt": "another's unfinished sgd training"}

    def finished_meanwhile(*args, **kwargs):
        for name, text in kept.items():
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).write_text(text)
        return fit(*args, **kwargs)

    monkeypatch.setattr(evaluate, "logistic_regression", finished_meanwhile)
    with pytest.raises(SimCLRError, match=r"linear.pt was written meanwhile by another process "
                       r"\(kept; this run's was not written\)"):
        run_linear_eval(tiny_encoder(), train, test, tmp_path, l2=1e-3, **fast)
    assert {name: (tmp_path / name).read_text() for name in kept} == kept
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "linear-partial.pt", "linear.pt"]  # (no temporary left)
    # another's unfinished sgd training alone there meanwhile: this one finishes, it stays
    kept = {"checkpoints/linear-partial.pt": "another's unfinished sgd training"}
    out = tmp_path / "alone"
    monkeypatch.setattr(evaluate, "logistic_regression", lambda *a, **kw: [
        (out / name).parent.mkdir(parents=True, exist_ok=True) or (out / name).write_text(text)
        for name, text in kept.items()] and fit(*a, **kw))
    run_linear_eval(tiny_encoder(), train, test, out, l2=1e-3, **fast)
    assert (out / "checkpoints/linear-partial.pt").read_text() == kept[
        "checkpoints/linear-partial.pt"] and (out / "checkpoints/linear.pt").is_file()


def test_user_errors_are_one_line():
    good = colour_source()
    unlabeled = colour_source()
    unlabeled.labels[:] = -1
    unlabeled.classes = []
    with pytest.raises(SimCLRError, match="no class labels"):
        check_labeled(unlabeled, good)
    one = colour_source(classes=1)
    with pytest.raises(SimCLRError, match="at least 2 classes"):
        check_labeled(one)
    other = colour_source()
    other.classes = ["c0", "c1", "zz"]
    with pytest.raises(SimCLRError, match="only in --train: c2; only in --test: zz"):
        check_labeled(good, other)
    with pytest.raises(SimCLRError, match="--protocol"):
        run_linear_eval(tiny_encoder(), good, good, None, image_size=16, protocol="adam")
    with pytest.raises(SimCLRError, match="--crop-scale"):
        run_linear_eval(tiny_encoder(), good, good, None, image_size=16, protocol="sgd",
                        crop_scale=(0.5, 0.2))
    with pytest.raises(SimCLRError, match="--crop-sampler"):
        run_linear_eval(tiny_encoder(), good, good, None, image_size=16, protocol="sgd",
                        crop_sampler="tf")
    with pytest.raises(SimCLRError, match="--k"):
        run_knn(tiny_encoder(), good, good, None, image_size=16, k=0)


# ----------------------------------------------------------------------- image folders


def test_folders_end_to_end_and_class_mismatch(tmp_path):
    from simclr.config import DataConfig
    from simclr.data import open_source

    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0)
    train_dir = make_image_folder(tmp_path / "train", classes=3, per_class=6, side=24)
    test_dir = make_image_folder(tmp_path / "test", classes=3, per_class=3, side=24, seed=1)
    train = open_source(str(train_dir), cfg, train=False, image_size=16)
    test = open_source(str(test_dir), cfg, train=False, image_size=16)
    result = run_linear_eval(tiny_encoder(), train, test, tmp_path / "run", image_size=16,
                             device="cpu", precision="fp32", verbose=False)
    assert result["num_test"] == 9 and (tmp_path / "run" / "linear_eval.json").is_file()
    wrong = make_image_folder(tmp_path / "wrong", classes=2, per_class=3, side=24)
    with pytest.raises(SimCLRError, match="different classes"):
        run_knn(tiny_encoder(), train, open_source(str(wrong), cfg, train=False,
                                                   image_size=16), None, image_size=16)




def test_an_interrupted_sgd_linear_evaluation_continues_exactly(tmp_path, monkeypatch):
    """90 epochs of ImageNet take hours: stopped (a signal at step 4 of 9, inside epoch
    2) and run again, the same command ends with the layer of an uninterrupted run; the
    partial file holds the layer only (the frozen encoder comes from --checkpoint)."""
    from simclr.checkpoint import save_checkpoint
    from simclr.checkpoint_read import load_checkpoint

    train, test = colour_source(seed=0), colour_source(n_per_class=4, seed=1)
    args = {"image_size": 16, "protocol": "sgd", "batch_size": 8, "epochs": 3, "device": "cpu",
            "precision": "fp32", "verbose": False, "checkpoint_every": 2,
            "source": {"checkpoint": "/runs/a/last.pt", "step": 10, "features": "pretrained",
                       "layer": "h"}}
    enc = warmed_encoder()
    whole = run_linear_eval(enc, train, test, tmp_path / "whole", **args)

    run = tmp_path / "cut"
    tested = []
    real = evaluate.evaluate_classifier
    monkeypatch.setattr(evaluate, "evaluate_classifier",
                        lambda *a, **kw: tested.append(1) or real(*a, **kw))
    cut = run_linear_eval(enc, train, test, run, **args, on_step=stop_at(4))
    assert not tested  # (a stop's grace time is not spent on the test pass)
    partial = run / "checkpoints" / "linear-partial.pt"
    assert (cut["status"], cut["steps"], cut["checkpoint"]) == ("preempted", 4, str(partial))
    saved = load_checkpoint(partial)
    assert saved["kind"] == "linear-partial" and set(saved["model"]) == {"fc.weight", "fc.bias"}
    run_id = saved["run_id"]  # the training's, kept by its continuation's classifier (below)
    assert isinstance(run_id, str) and len(run_id) == 32
    assert not (run / "linear_eval.json").exists()
    for change, named in (({"step": 20}, r"source: \[.*'10', .*\] saved, \[.*'20', .*\] now"),
                          ({"layer": "z"}, "layer: 'h' saved, 'z' now"),
                          ({"test": {"fraction": 0.2}}, "test_fraction: None saved, 0.2 now")):
        other = {**args, "source": {**args["source"], **change}}
        with pytest.raises(SimCLRError, match=r"unfinished linear evaluation \(linear-partial"
                                              rf".pt\) with other settings \({named}\)"):
            run_linear_eval(enc, train, test, run, **other)
    with pytest.raises(SimCLRError, match=r"with other settings \(lr: 0.1 saved, 0.2 now\)"):
        run_linear_eval(enc, train, test, run, **{**args, "lr": 0.2})
    # The other protocol into the same folder would end the sgd run for good.
    lbfgs = {k: v for k, v in args.items() if k not in ("protocol", "epochs",
                                                         "checkpoint_every")}
    with pytest.raises(SimCLRError, match=r"holds an unfinished linear evaluation --protocol "
                                          r"sgd \(linear-partial.pt\); rerun its own command "
                                          r"to continue it, pass --overwrite to replace it"):
        run_linear_eval(enc, train, test, run, **lbfgs, protocol="lbfgs")
    assert partial.exists()
    other = tmp_path / "other"  # --overwrite: an lbfgs fit's results replace the sgd run
    shutil.copytree(run, other)
    run_linear_eval(enc, train, test, other, **lbfgs, protocol="lbfgs", overwrite=True)
    assert (other / "linear_eval.json").exists()
    assert not (other / "checkpoints" / "linear-partial.pt").exists()
    saved = load_checkpoint(partial)
    saved["elapsed"] = 1000.0  # as if the first session had trained for 1000 s
    save_checkpoint(saved, partial.parent, partial.name, None)
    done = run_linear_eval(enc, train, test, run, **args)
    assert done["steps"] == whole["steps"] == 9 and done["top1"] == whole["top1"]
    assert 1000 < done["train_s"] < done["elapsed_s"] < 1000 + 60  # both sessions counted
    assert "earlier_s" not in done
    a, b = (load_checkpoint(folder / "checkpoints" / "linear.pt") for folder in
            (tmp_path / "whole", run))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in ("fc.weight", "fc.bias"))
    assert not partial.exists()
    assert b["run_id"] == run_id and isinstance(a["run_id"], str) and a["run_id"] != run_id
    # An L-BFGS fit is a run of its own too
    assert len(load_checkpoint(other / "checkpoints" / "linear.pt")["run_id"]) == 32


def sgd_run_whole(out: Path, **more: Any) -> tuple[Any, Any, Any, dict[str, Any], dict]:
    """(train, test, encoder, the SGD protocol's arguments, its results uninterrupted in
    ``out``): 9 steps over 3 epochs, which the stop-and-continue tests below compare with."""
    train, test = colour_source(seed=0), colour_source(n_per_class=4, seed=1)
    args = {"image_size": 16, "protocol": "sgd", "batch_size": 8, "epochs": 3, "device": "cpu",
            "precision": "fp32", "verbose": False, **more}
    enc = warmed_encoder()
    return train, test, enc, args, run_linear_eval(enc, train, test, out, **args)


def test_a_continued_sgd_linear_evaluation_keeps_the_length_it_started_with(tmp_path):
    """2.2 epochs of 25 batches are 55 steps as written; an earlier simclr counted the
    float product 55.000000000000014 up to 56, and its partial file records no length:
    continued, such a run ends at its own 56 (its cosine schedule is not cut short
    mid-run), and a run saved now at the 55 it records."""
    import torch

    from simclr.checkpoint_read import load_checkpoint

    train, test = colour_source(n_per_class=17, seed=0), colour_source(n_per_class=2, seed=1)
    args = {"image_size": 16, "protocol": "sgd", "batch_size": 2, "epochs": 2.2,
            "device": "cpu", "precision": "fp32", "verbose": False, "checkpoint_every": 2,
            "source": {"checkpoint": "/runs/a/last.pt", "step": 10, "features": "pretrained",
                       "layer": "h"}}
    enc = warmed_encoder()

    for earlier, steps in ((False, 55), (True, 56)):
        run = tmp_path / f"earlier{earlier}"
        assert run_linear_eval(enc, train, test, run, **args, on_step=stop_at(4))["steps"] == 4
        partial = run / "checkpoints" / "linear-partial.pt"
        saved = load_checkpoint(partial)
        assert saved["total_steps"] == 55
        if earlier:  # as the previous release wrote it
            del saved["total_steps"]
            torch.save(saved, partial)
        assert run_linear_eval(enc, train, test, run, **args)["steps"] == steps


def test_an_unfinished_sgd_linear_evaluation_of_a_folder_read_anew_as_its_split_says_so(
        tmp_path):
    """DIR holding Train/ and Test/: releases before 2026-12-06 read it as one folder of
    classes Test and Train, this one as DIR/Train/. Their unfinished sgd training, rerun
    with its own command, was refused as one of 'other settings (train: [16, ['Test',
    'Train']] saved, ...); rerun its own command to continue it' (an lbfgs command into
    its --out said so too): the user had. Both say why it cannot continue."""
    import re

    from simclr.checkpoint import save_checkpoint
    from simclr.checkpoint_read import load_checkpoint
    from tests.conftest import capital_split_sources

    data, train, test = capital_split_sources(tmp_path)
    args = {"image_size": 16, "protocol": "sgd", "batch_size": 4, "epochs": 2, "device": "cpu",
            "precision": "fp32", "verbose": False, "checkpoint_every": 2}
    run = tmp_path / "lin"
    run_linear_eval(tiny_encoder(), train, test, run, **args, on_step=stop_at(2))
    # What the earlier release saved: the whole folder's 16 images in its two classes.
    partial = run / "checkpoints" / "linear-partial.pt"
    saved = load_checkpoint(partial)
    saved["classes"] = ["Test", "Train"]
    saved["settings"]["train"] = [16, ["Test", "Train"]]
    save_checkpoint(saved, partial.parent, partial.name, None)
    why = (f"that cannot continue: this release reads {data} as its split Train/ (12 "
           "images), where the unfinished training's release read its splits as two classes "
           "(Test, Train; the held-out images trained on too); pass --overwrite to ")
    with pytest.raises(SimCLRError, match=re.escape(
            f"{run} holds an unfinished linear evaluation (linear-partial.pt) {why}start this "
            "one over it, or choose another --out")):
        run_linear_eval(tiny_encoder(), train, test, run, **args)
    lbfgs = {k: v for k, v in args.items() if k not in ("protocol", "epochs",
                                                         "checkpoint_every")}
    with pytest.raises(SimCLRError, match=re.escape(
            f"{run} holds an unfinished linear evaluation --protocol sgd (linear-partial.pt) "
            f"{why}replace it, or choose another --out")):
        run_linear_eval(tiny_encoder(), train, test, run, **lbfgs, protocol="lbfgs")
    done = run_linear_eval(tiny_encoder(), train, test, run, **args, overwrite=True)
    assert done["status"] == "finished" and done["steps"] == 6


def test_an_sgd_linear_evaluation_stopped_in_its_last_epoch_reports_the_whole_epoch(
        tmp_path):
    """Stopped at step 8 of 9 (inside the last epoch) and rerun: train_loss and
    train_top1 are the whole last epoch's, as an uninterrupted run's (they were the
    continued steps' alone)."""
    train, test, enc, args, whole = sgd_run_whole(tmp_path / "whole", checkpoint_every=2)

    cut = run_linear_eval(enc, train, test, tmp_path / "cut", **args, on_step=stop_at(8))
    assert (cut["status"], cut["steps"]) == ("preempted", 8)
    done = run_linear_eval(enc, train, test, tmp_path / "cut", **args)
    assert done["steps"] == whole["steps"] == 9 and done["top1"] == whole["top1"]
    saved = json.loads((tmp_path / "cut" / "linear_eval.json").read_text())
    for result in (done, saved):
        assert (result["train_loss"], result["train_top1"]) == (whole["train_loss"],
                                                                whole["train_top1"])


def test_a_stop_during_the_sgd_test_keeps_the_finished_training(tmp_path, monkeypatch):
    """Ctrl-C while the finished sgd layer is tested: the layer stays in
    linear-partial.pt and the same command only tests it again (no step anew), ending
    as an uninterrupted run."""
    from simclr.checkpoint_read import load_checkpoint

    train, test, enc, args, whole = sgd_run_whole(tmp_path / "whole")
    run = tmp_path / "cut"

    stop = stopped_in(monkeypatch, evaluate, "evaluate_classifier", KeyboardInterrupt,
                      lambda: run_linear_eval(enc, train, test, run, **args))
    partial = run / "checkpoints" / "linear-partial.pt"
    assert load_checkpoint(partial)["step"] == whole["steps"] == 9
    assert stop.value.kept_training == str(partial)
    steps: list[int] = []
    done = run_linear_eval(enc, train, test, run, **args,
                           on_step=lambda step, _: steps.append(step))
    assert not steps and done["steps"] == 9 and done["top1"] == whole["top1"]
    assert (done["train_loss"], done["train_top1"]) == (whole["train_loss"], whole["train_top1"])
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "linear.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "linear.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in ("fc.weight", "fc.bias"))
    assert not partial.exists()


def test_a_stop_before_the_sgd_results_are_written_leaves_the_same_command_to_finish(
        tmp_path, monkeypatch):
    """A stop after linear.pt was saved, before linear_eval.json: the same command tests
    the finished layer again and writes the results (it refused the folder: 'already
    holds checkpoints/linear.pt')."""
    from simclr.checkpoint_read import load_checkpoint
    from simclr.interrupts import Terminated

    train, test, enc, args, whole = sgd_run_whole(tmp_path / "whole")
    run = tmp_path / "cut"

    stopped_in(monkeypatch, evaluate, "finish_results", Terminated,
               lambda: run_linear_eval(enc, train, test, run, **args))
    assert (run / "checkpoints" / "linear.pt").exists()
    assert not (run / "linear_eval.json").exists()
    steps: list[int] = []
    done = run_linear_eval(enc, train, test, run, **args,
                           on_step=lambda step, _: steps.append(step))
    assert not steps and done["steps"] == 9 and done["top1"] == whole["top1"]
    saved = json.loads((run / "linear_eval.json").read_text())
    assert (saved["top1"], saved["train_loss"]) == (whole["top1"], whole["train_loss"])
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "linear.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "linear.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in ("fc.weight", "fc.bias"))
    assert not (run / "checkpoints" / "linear-partial.pt").exists()


def test_the_protocols_settings_are_checked_before_any_work(monkeypatch, tmp_path):
    """Before any feature is computed: --val-fraction must leave both parts something
    ((0, 1) open); --l2 0 is plain (unregularised) logistic regression, taken, a
    negative or non-finite one is not; sgd's --epochs and --lr must be positive."""
    train = colour_source(seed=0)
    real = evaluate.extract_features

    def no_work(*args, **kwargs):
        raise AssertionError("features computed before the settings were checked")

    monkeypatch.setattr(evaluate, "extract_features", no_work)
    for setting, flag in (({"epochs": 0}, "epochs"), ({"epochs": -1}, "epochs"),
                          ({"lr": 0.0}, "lr")):
        with pytest.raises(SimCLRError, match=f"--{flag} must be positive"):
            run_linear_eval(tiny_encoder(), train, train, None, image_size=16,
                            protocol="sgd", **setting)
    out = tmp_path / "out"
    with pytest.raises(SimCLRError, match="--crop-scale"):  # (sgd's crops, as pretraining's)
        run_linear_eval(tiny_encoder(), train, train, out, image_size=16, protocol="sgd",
                        crop_scale=(0.9, 0.1))
    assert not out.exists()  # (refused before its --out was made)
    for protocol in ("lbfgs", "sgd"):
        with pytest.raises(SimCLRError, match="--batch-size must be positive, got 0"):
            run_linear_eval(tiny_encoder(), train, train, None, image_size=16,
                            protocol=protocol, batch_size=0)
    for fraction in (0.0, 1.0):
        with pytest.raises(SimCLRError, match=rf"--val-fraction must lie in \(0, 1\), got "
                                              rf"{fraction}"):
            run_linear_eval(tiny_encoder(), train, train, None, image_size=16,
                            val_fraction=fraction)
    for l2 in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(SimCLRError, match="--l2 must be a non-negative number"):
            run_linear_eval(tiny_encoder(), train, train, None, image_size=16, l2=l2)
    monkeypatch.setattr(evaluate, "extract_features", real)
    result = run_linear_eval(tiny_encoder(), train, colour_source(n_per_class=5, seed=1),
                             None, image_size=16, l2=0.0, max_iter=20, device="cpu",
                             precision="fp32", verbose=False)
    assert result["l2"] == 0.0


@pytest.mark.parametrize("protocol", ["lbfgs", "sgd"])
def test_num_train_counts_the_training_images_read(protocol, tmp_path):
    """An uncached folder with one unreadable file: the SGD protocol reported num_train
    12 (the files listed) beside skipped_images.train 1, where L-BFGS (and embed)
    reported the 11 images read; both count the images read."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    root = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    (root / "class_0" / "zz.png").write_bytes(b"not a picture")
    cfg = DataConfig(cache="off", workers=0)
    train, test = (open_source(str(root), cfg, train=False, image_size=16) for _ in "ab")
    result = run_linear_eval(tiny_encoder(), train, test, tmp_path / "run", image_size=16,
                             protocol=protocol, batch_size=13, epochs=1, device="cpu",
                             precision="fp32", l2=1e-3, verbose=False)  # (a batch of all)
    saved = json.loads((tmp_path / "run" / "linear_eval.json").read_text())
    assert saved["skipped_images"] == {"train": 1, "test": 1}
    assert result["num_train"] == saved["num_train"] == 12
    assert result["num_test"] == saved["num_test"] == 12


@pytest.mark.parametrize("protocol", ["lbfgs", "sgd"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_linear_eval_runs_in_channels_last_by_default_and_leaves_the_encoder_as_given(
        protocol, channels_last):
    """The features (lbfgs), the SGD protocol's training steps and its test feed
    channels_last views to channels_last weights unless turned off (1.5x faster in bf16
    on a CPU); the caller's encoder is NCHW again after, and the setting is recorded."""
    enc = tiny_encoder()
    seen = first_conv_formats(enc)
    kwargs = {} if channels_last else {"channels_last": False}
    result = run_linear_eval(enc, colour_source(seed=0), colour_source(n_per_class=2, seed=1),
                             None, image_size=16, protocol=protocol, batch_size=8, epochs=1,
                             device="cpu", precision="fp32", verbose=False, **kwargs)
    assert len(seen) >= 3 and set(seen) == {(channels_last, channels_last)}
    assert in_nchw(enc) and result["channels_last"] is channels_last
