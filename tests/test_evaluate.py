"""Evaluation: kNN, L-BFGS logistic regression, features, frozen-encoder linear eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr import evaluate
from simclr.errors import SimCLRError
from simclr.evaluate import (
    fit_logistic_regression,
    knn_accuracy,
    knn_classify,
    logistic_regression,
    run_knn,
    run_linear_eval,
    stratified_split,
)
from simclr.features import check_labeled
from tests.conftest import colour_source, make_image_folder, snapshot, tiny_encoder, warmed_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ kNN


def test_knn_matches_a_hand_computed_case():
    # memory: (1,0) c0, (0,1) c1, (1,1) c1, (-1,0) c0; query (2,1).
    # cosines: 2/sqrt5, 1/sqrt5, 3/sqrt10, -2/sqrt5 -> top 3 = m2 (c1), m0 (c0), m1 (c1).
    memory = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0])
    query = np.array([[2, 1]], dtype=np.float32)
    t = 0.5
    w_m0, w_m1, w_m2 = (math.exp(s / t) for s in (2 / 5**0.5, 1 / 5**0.5, 3 / 10**0.5))
    expected = np.array([w_m0, w_m1 + w_m2]) / (w_m0 + w_m1 + w_m2)
    probs = knn_classify(memory, labels, query, k=3, temperature=t, num_classes=2)
    np.testing.assert_allclose(probs.numpy()[0], expected, rtol=1e-5)
    # k = 1: the single nearest neighbour (m2, class 1) decides alone
    np.testing.assert_allclose(knn_classify(memory, labels, query, k=1, temperature=t,
                                            num_classes=2).numpy()[0], [0, 1])
    # k larger than the memory clamps to all 4 items (m3 adds exp(-2/sqrt5 / t) to c0)
    w_m3 = math.exp(-2 / 5**0.5 / t)
    all4 = knn_classify(memory, labels, query, k=1000, temperature=t, num_classes=2)
    np.testing.assert_allclose(all4.numpy()[0, 0],
                               (w_m0 + w_m3) / (w_m0 + w_m1 + w_m2 + w_m3), rtol=1e-5)
    assert knn_accuracy(memory, labels, query, np.array([1]), k=3, temperature=t) == 1.0
    assert knn_accuracy(memory, labels, query, np.array([0]), k=3, temperature=t) == 0.0


def reference_knn(memory, labels, queries, k, t, num_classes):
    """Float64 loops: the definition, one query at a time."""
    m = memory / np.linalg.norm(memory, axis=1, keepdims=True)
    out = np.zeros((len(queries), num_classes))
    for i, q in enumerate(queries):
        sims = m @ (q / np.linalg.norm(q))
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, labels[j]] += math.exp(sims[j] / t)
        out[i] /= out[i].sum()
    return out


def test_knn_blocks_match_a_float64_reference(monkeypatch):
    rng = np.random.default_rng(0)
    memory, queries = rng.normal(size=(50, 8)), rng.normal(size=(23, 8))
    labels = rng.integers(0, 7, 50)
    monkeypatch.setattr(evaluate, "KNN_BLOCK_ELEMENTS", 50 * 4)  # blocks of 4 queries
    probs = knn_classify(memory, labels, queries, k=10, temperature=0.2, num_classes=7)
    np.testing.assert_allclose(probs.numpy(), reference_knn(memory, labels, queries, 10, 0.2, 7),
                               atol=1e-5)


def test_knn_small_temperature_stays_finite():
    rng = np.random.default_rng(1)
    memory, queries = rng.normal(size=(30, 4)), rng.normal(size=(5, 4))
    probs = knn_classify(memory, rng.integers(0, 3, 30), queries, k=5, temperature=1e-3)
    assert torch.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, rtol=1e-6)


def test_knn_rejects_bad_arguments():
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(SimCLRError, match="temperature"):
        knn_classify(x, [0, 1, 2], x, k=2, temperature=0)
    with pytest.raises(SimCLRError, match="--k"):
        knn_classify(x, [0, 1, 2], x, k=0)


def blobs(n_per_class, dim, classes, spread, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 3
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(20, 5, 3, spread=3.0, seed=0)  # overlapping classes
    n, l2 = len(y), 0.05
    w, b, info = fit_logistic_regression(torch.as_tensor(x), torch.as_tensor(y), 3, l2,
                                         tol=1e-12)
    assert info["iterations"] > 0 and info["loss"] < math.log(3)
    # sklearn minimises C * sum CE + |W|^2 / 2 = C * n * (mean CE + |W|^2 / (2 C n)):
    # the same minimiser when l2 = 1 / (C * n).
    ref = LogisticRegression(C=1 / (l2 * n), tol=1e-12, max_iter=10_000).fit(x, y)
    probs = torch.softmax(torch.as_tensor(x) @ w.T + b, 1).numpy()
    np.testing.assert_allclose(probs, ref.predict_proba(x), atol=1e-6)
    # the softmax parametrisation has one free shift per feature; with an L2 penalty
    # on W the optimum has zero-mean columns, as sklearn's; the bias shift is free
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=1e-5)
    np.testing.assert_allclose(b.numpy() - b.numpy().mean(),
                               ref.intercept_ - ref.intercept_.mean(), atol=1e-5)


def test_logistic_regression_solution_is_stationary():
    """Independent of any library: the gradient of the objective vanishes (float64)."""
    x, y = blobs(15, 4, 4, spread=2.5, seed=3)
    l2 = 0.02
    w, b, _ = fit_logistic_regression(torch.as_tensor(x), torch.as_tensor(y), 4, l2,
                                      tol=1e-12)
    w, b = w.numpy(), b.numpy()
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    err = p - np.eye(4)[y]  # d(mean CE)/d(logits) * n
    grad_w = err.T @ x / len(y) + l2 * w
    grad_b = err.mean(0)
    assert np.abs(grad_w).max() < 1e-8 and np.abs(grad_b).max() < 1e-8


def test_logistic_regression_protocol_on_a_separable_problem():
    x, y = blobs(30, 6, 4, spread=0.3, seed=1)
    xt, yt = blobs(10, 6, 4, spread=0.3, seed=1)  # same centers (same seed), new noise
    xt = xt + np.random.default_rng(9).normal(scale=0.01, size=xt.shape)
    summary, probs, linear = logistic_regression(x, y, xt, 4, l2_grid=[1e-4, 1e-2, 1.0],
                                                 seed=0)
    assert (probs.argmax(1).numpy() == yt).mean() == 1.0
    # The returned layer holds the standardisation: raw features in, the same probabilities.
    with torch.no_grad():
        folded = torch.softmax(linear(torch.as_tensor(xt, dtype=torch.float32)), dim=1)
    assert linear.weight.dtype == torch.float32
    torch.testing.assert_close(folded, probs, atol=1e-5, rtol=1e-4)
    assert summary["train_top1"] == 1.0
    assert set(summary["val_accuracy"]) == {"0.0001", "0.01", "1"}
    assert summary["l2"] in (1e-4, 1e-2, 1.0)
    best = max(summary["val_accuracy"].values())
    assert summary["val_accuracy"][f"{summary['l2']:.3g}"] == best == summary["val_top1"]
    assert summary["dtype"] == "float64"
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, rtol=1e-5)


def test_regularisation_is_chosen_on_the_held_out_split():
    """Held-out accuracies per lambda match scikit-learn fitted on the same split."""
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(30, 8, 3, spread=4.0, seed=5)  # overlapping: accuracies differ by lambda
    grid = [1e-4, 1e-2, 1.0]
    summary, _, _ = logistic_regression(x, y, x[:4], 3, l2_grid=grid, val_fraction=0.3, seed=7,
                                     tol=1e-10)
    fit, val = stratified_split(y, 0.3, seed=7)
    mean, std = x[fit].mean(0), x[fit].std(0, ddof=1)
    xf, xv = (x[fit] - mean) / std, (x[val] - mean) / std
    expected, losses = {}, {}
    for lam in grid:
        ref = LogisticRegression(C=1 / (lam * len(fit)), tol=1e-10, max_iter=10_000)
        ref.fit(xf, y[fit])
        expected[f"{lam:.3g}"] = (ref.predict(xv) == y[val]).mean()
        losses[f"{lam:.3g}"] = -np.log(ref.predict_proba(xv)[np.arange(len(val)), y[val]]).mean()
    assert summary["val_accuracy"] == pytest.approx(expected)
    assert summary["val_loss"] == pytest.approx(losses, rel=1e-5)
    assert summary["num_val"] == len(val) == 27
    best = max(expected.values())
    tied = [lam for lam in grid if expected[f"{lam:.3g}"] == best]
    assert summary["l2"] == min(tied, key=lambda lam: losses[f"{lam:.3g}"])


def test_accuracy_ties_are_broken_by_held_out_loss():
    x, y = blobs(20, 4, 3, spread=0.2, seed=2)  # separable: every lambda is 100% right
    summary, _, _ = logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1e-1, 10.0], seed=0)
    assert set(summary["val_accuracy"].values()) == {1.0}
    losses = summary["val_loss"]
    assert f"{summary['l2']:.3g}" == min(losses, key=losses.get)
    # a strong penalty is under-confident: the weakest one has the lowest held-out loss
    assert summary["l2"] == 1e-3 and losses["10"] > losses["0.1"] > losses["0.001"]


def test_a_choice_at_the_edge_of_the_grid_is_pointed_out(capsys):
    x, y = blobs(20, 4, 3, spread=0.2, seed=2)  # the weakest penalty wins (above)
    logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1e-1, 10.0], seed=0, verbose=True)
    assert "chose l2 0.001, the smallest of the grid; widen it" in capsys.readouterr().err
    logistic_regression(x, y, x, 3, l2_grid=[1e-3], seed=0, verbose=True)
    assert "of the grid" not in capsys.readouterr().err  # a grid of one: the user's choice


def test_l2_grid_flag():
    assert evaluate.parse_l2_grid("1e-6,1,13") == pytest.approx(
        [10 ** (-6 + i / 2) for i in range(13)], rel=1e-9)
    assert evaluate.parse_l2_grid("0.01,0.01,1") == [0.01]
    for bad in ("1e-6,1", "a,b,c", "1,1e-6,3", "0,1,3"):
        with pytest.raises(SimCLRError, match="--l2-grid"):
            evaluate.parse_l2_grid(bad)


def test_stratified_split_is_per_class_and_deterministic():
    labels = np.repeat([0, 1, 2], [20, 10, 1])
    fit, val = stratified_split(labels, 0.1, seed=4)
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == len(labels)
    fit2, val2 = stratified_split(labels, 0.1, seed=4)
    np.testing.assert_array_equal(val, val2)
    _, val3 = stratified_split(labels, 0.1, seed=5)
    assert not np.array_equal(val, val3)


def test_fixed_l2_skips_the_search_and_tiny_sets_need_it():
    x, y = blobs(1, 3, 3, spread=0.1, seed=0)  # one image per class: no held-out split
    with pytest.raises(SimCLRError, match="--l2"):
        logistic_regression(x, y, x, 3)
    summary, probs, _ = logistic_regression(x, y, x, 3, l2=1e-3)
    assert summary["l2"] == 1e-3 and "val_accuracy" not in summary
    assert (probs.argmax(1).numpy() == y).all()


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


def test_sgd_linear_eval_takes_fractional_epochs():
    train, test = colour_source(seed=0), colour_source(n_per_class=2, seed=1)
    result = run_linear_eval(tiny_encoder(), train, test, None, image_size=16, protocol="sgd",
                             batch_size=8, epochs=2.5, device="cpu", precision="fp32",
                             verbose=False)
    assert result["steps"] == 8  # 24 images at batch 8: 3 steps an epoch, x 2.5 rounded


def test_lbfgs_linear_eval_separates_easy_classes(tmp_path):
    train, test = colour_source(seed=0), colour_source(n_per_class=5, seed=1)
    result = run_linear_eval(tiny_encoder(), train, test, None, image_size=16,
                             device="cpu", precision="fp32", verbose=False)
    assert result["top1"] == 1.0
    assert result["num_train"] == 24 and result["num_test"] == 15 and result["num_classes"] == 3


def test_knn_command_writes_results(tmp_path):
    train, test = colour_source(classes=6, seed=0), colour_source(classes=6, n_per_class=3,
                                                                  seed=1)
    result = run_knn(tiny_encoder(), train, test, tmp_path, image_size=16, k=5,
                     device="cpu", precision="fp32", verbose=False)
    saved = json.loads((tmp_path / "knn.json").read_text())
    assert saved["top1"] == result["top1"] and result["top5"] is not None
    assert result["top5"] >= result["top1"] and result["k"] == 5
    assert (tmp_path / "knn_confusion.png").stat().st_size > 0


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




def test_an_interrupted_sgd_linear_evaluation_continues_exactly(tmp_path):
    """90 epochs of ImageNet take hours: stopped (a signal at step 4 of 9, inside epoch
    2) and run again, the same command ends with the layer of an uninterrupted run; the
    partial file holds the layer only (the frozen encoder comes from --checkpoint)."""
    from simclr.checkpoint import load_checkpoint, save_checkpoint

    train, test = colour_source(seed=0), colour_source(n_per_class=4, seed=1)
    args = {"image_size": 16, "protocol": "sgd", "batch_size": 8, "epochs": 3, "device": "cpu",
            "precision": "fp32", "verbose": False, "checkpoint_every": 2,
            "source": {"checkpoint": "/runs/a/last.pt", "step": 10, "features": "pretrained",
                       "layer": "h"}}
    enc = warmed_encoder()
    whole = run_linear_eval(enc, train, test, tmp_path / "whole", **args)

    def stop_at_4(step, stop):
        if step == 4:
            stop.requested = "SIGTERM"

    run = tmp_path / "cut"
    cut = run_linear_eval(enc, train, test, run, **args, on_step=stop_at_4)
    partial = run / "checkpoints" / "linear-partial.pt"
    assert (cut["status"], cut["steps"], cut["checkpoint"]) == ("preempted", 4, str(partial))
    saved = load_checkpoint(partial)
    assert saved["kind"] == "linear-partial" and set(saved["model"]) == {"fc.weight", "fc.bias"}
    assert not (run / "linear_eval.json").exists()
    for change, named in (({"step": 20}, r"source: \[.*'10', .*\] saved, \[.*'20', .*\] now"),
                          ({"layer": "z"}, "layer: 'h' saved, 'z' now"),
                          ({"test": {"fraction": 0.2}}, "test_fraction: None saved, 0.2 now")):
        other = {**args, "source": {**args["source"], **change}}
        with pytest.raises(SimCLRError, match=r"unfinished linear evaluation \(linear-partial"
                                              rf".pt\) with other settings \({named}\)"):
            run_linear_eval(enc, train, test, run, **other)
    # The other protocol into the same folder would end the sgd run for good.
    lbfgs = {k: v for k, v in args.items() if k not in ("protocol", "epochs",
                                                         "checkpoint_every")}
    with pytest.raises(SimCLRError, match=r"holds an unfinished linear evaluation --protocol "
                                          r"sgd \(linear-partial.pt\)"):
        run_linear_eval(enc, train, test, run, **lbfgs, protocol="lbfgs")
    assert partial.exists()
    saved = load_checkpoint(partial)
    saved["elapsed"] = 1000.0  # as if the first session had trained for 1000 s
    save_checkpoint(saved, partial.parent, partial.name, None)
    done = run_linear_eval(enc, train, test, run, **args)
    assert done["steps"] == whole["steps"] == 9 and done["top1"] == whole["top1"]
    assert 1000 < done["train_s"] < done["elapsed_s"] < 1000 + 60  # both sessions counted
    assert "earlier_s" not in done
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "linear.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "linear.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in ("fc.weight", "fc.bias"))
    assert not partial.exists()
