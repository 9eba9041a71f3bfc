"""The weighted kNN protocol: class probabilities, accuracy and the ``simclr knn`` command."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from simclr import knn
from simclr.errors import SimCLRError
from simclr.knn import knn_accuracy, knn_classify, run_knn
from tests.conftest import colour_source, first_conv_formats, in_nchw, tiny_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


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
    # no temperature given: 0.1, the default of Wu et al. 2018 and of `simclr knn`
    w_default = [math.exp(s / 0.1) for s in (2 / 5**0.5, 1 / 5**0.5, 3 / 10**0.5)]
    np.testing.assert_allclose(knn_classify(memory, labels, query, k=3, num_classes=2)[0],
                               np.array([w_default[0], w_default[1] + w_default[2]])
                               / sum(w_default), rtol=1e-5)
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
    monkeypatch.setattr(knn, "KNN_BLOCK_ELEMENTS", 50 * 4)  # blocks of 4 queries
    probs = knn_classify(memory, labels, queries, k=10, temperature=0.2, num_classes=7)
    np.testing.assert_allclose(probs.numpy(), reference_knn(memory, labels, queries, 10, 0.2, 7),
                               atol=1e-5)


def test_knn_blocks_are_bounded_by_the_classes_too(monkeypatch):
    """A small memory of many classes made blocks of KNN_BLOCK_ELEMENTS / N queries,
    each keeping C float64 class scores: blocks of 64 / 50 classes, one query each."""
    rng = np.random.default_rng(0)
    memory, queries = rng.normal(size=(4, 8)), rng.normal(size=(5, 8))
    labels = np.arange(4)
    monkeypatch.setattr(knn, "KNN_BLOCK_ELEMENTS", 64)
    blocks = []
    real = knn._class_log_scores
    monkeypatch.setattr(knn, "_class_log_scores", lambda s, *a: (blocks.append(len(s)),
                                                                 real(s, *a))[1])
    probs = knn_classify(memory, labels, queries, k=2, temperature=0.2, num_classes=50)
    assert blocks == [1] * 5
    np.testing.assert_allclose(probs.numpy(), reference_knn(memory, labels, queries, 2, 0.2, 50),
                               atol=1e-5)


@pytest.mark.parametrize("log_probs", [True, False])
def test_knn_ranked_in_small_blocks_gives_the_full_scores_results(monkeypatch, log_probs):
    """What the commands keep of each block (knn_ranked: 100k test images x 10k classes
    took over 20 GB of scores) counts as the whole (M, C) matrix did: tied class scores
    (copies of a memory row under two classes, queries equal to them), classes without
    a vote (-inf), k above the memory; blocks of one query and more. ``log_probs``
    False: the probabilities, as the kNN monitor counts (knn_accuracy)."""
    from simclr.results import accuracy_summary, top1_predictions, topk_accuracy

    rng = np.random.default_rng(4)
    base = rng.integers(-1, 2, size=(12, 3)).astype(np.float32)
    memory = np.concatenate([base, base, rng.normal(size=(6, 3)).astype(np.float32)])
    labels = np.concatenate([rng.integers(0, 4, 12), rng.integers(4, 9, 12),
                             rng.integers(0, 9, 6)])
    queries = np.concatenate([base[:8], rng.normal(size=(21, 3)).astype(np.float32)])
    truth = rng.integers(0, 12, len(queries))
    ties, unvoted = [], []
    for k in (1, 2, 5, 1000):
        full = knn_classify(memory, labels, queries, k, 0.3, 12, "cpu", log_probs=log_probs)
        for rows in (1, 3, 64):
            monkeypatch.setattr(knn, "KNN_BLOCK_ELEMENTS", 30 * rows)  # (30 memory rows)
            ranked = knn.knn_ranked(memory, labels, queries, truth, k, 0.3, 12, "cpu",
                                    log_probs=log_probs)
            assert accuracy_summary(ranked, truth) == accuracy_summary(full, truth), (k, rows)
            assert topk_accuracy(ranked, truth, (2, 3)) == topk_accuracy(full, truth, (2, 3))
            np.testing.assert_array_equal(ranked.predictions, top1_predictions(full, truth))
            if not log_probs:
                assert knn_accuracy(memory, labels, queries, truth, k, 0.3, 12, "cpu") == (
                    topk_accuracy(full, truth, (1,))[0])
        monkeypatch.undo()
        best = full.sort(1, descending=True).values
        ties.append(int((best[:, 0] == best[:, 1]).sum()))  # (a tie for the best class)
        unvoted.append(int((full == (-math.inf if log_probs else 0)).sum()))
    assert ties[1] > 0 and unvoted[0] > 0, (ties, unvoted)


def test_knn_small_temperature_stays_finite():
    rng = np.random.default_rng(1)
    memory, queries = rng.normal(size=(30, 4)), rng.normal(size=(5, 4))
    probs = knn_classify(memory, rng.integers(0, 3, 30), queries, k=5, temperature=1e-3)
    assert torch.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, rtol=1e-6)


def test_knn_log_probabilities_rank_the_votes_whose_weights_underflow():
    """At T = 1e-4 a neighbour 0.02 of cosine below the nearest had a weight of exactly
    0: its class tied with the classes without a vote, and top-5 counted it a miss.
    The protocol ranks log-probabilities (float64, -inf without a vote), which are the
    logs of the probabilities wherever those do not underflow."""
    from simclr.results import topk_accuracy

    a = math.acos(0.98)
    memory = np.array([[1, 0], [math.cos(a), math.sin(a)], [0, 1], [0, -1]], np.float32)
    query = np.array([[1, 0]], np.float32)
    probs = knn_classify(memory, [0, 1, 2, 3], query, k=2, temperature=1e-4, num_classes=7)
    assert probs[0].tolist() == [1, 0, 0, 0, 0, 0, 0]  # (the weight of class 1: 0)
    logs = knn_classify(memory, [0, 1, 2, 3], query, k=2, temperature=1e-4, num_classes=7,
                        log_probs=True)
    assert logs.dtype == torch.float64 and logs[0, 0] == 0
    assert logs[0, 1] == pytest.approx(-200, abs=0.1) and logs[0, 2:].eq(-math.inf).all()
    assert topk_accuracy(logs, [1], (1, 5)) == [0.0, 1.0]
    rng = np.random.default_rng(0)
    memory, queries = rng.normal(size=(50, 8)), rng.normal(size=(23, 8))
    labels = rng.integers(0, 7, 50)
    logs = knn_classify(memory, labels, queries, k=10, temperature=0.2, num_classes=7,
                        log_probs=True)
    np.testing.assert_allclose(logs.exp().numpy(), reference_knn(memory, labels, queries, 10,
                                                                 0.2, 7), atol=1e-6)


def test_the_monitors_knn_tells_near_equal_shares_apart_at_a_large_temperature():
    """At T = 10 two memory items a query is near-equally close to got shares that round
    to the same float32 probability: a tie, which top-1 counts a miss (the monitor's
    top-1 61% where `simclr knn` gave 100%). knn_accuracy ranks the float64
    log-probabilities too, and counts what `simclr knn` counts."""
    from simclr.results import topk_accuracy

    memory, labels = np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1])
    angles = np.float32(math.pi / 4) + np.random.default_rng(1).uniform(-1e-6, 1e-6, 2000)
    queries = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    sims = queries @ memory.T
    keep = sims[:, 0] != sims[:, 1]  # (the nearer item's class is each one's label)
    queries, truth = queries[keep], (sims[keep, 1] > sims[keep, 0]).astype(int)
    for t in (0.1, 10.0):
        ranked = knn.knn_ranked(memory, labels, queries, truth, 2, t, 2, "cpu")
        assert knn_accuracy(memory, labels, queries, truth, k=2, temperature=t,
                            device="cpu") == topk_accuracy(ranked, truth, (1,))[0] == 1.0


def test_knn_rejects_bad_arguments():
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(SimCLRError, match="temperature"):
        knn_classify(x, [0, 1, 2], x, k=2, temperature=0)
    with pytest.raises(SimCLRError, match="--k"):
        knn_classify(x, [0, 1, 2], x, k=0)
    # From Python: a NaN temperature scored 0.5, k=2.5 and k=True failed inside torch,
    # float labels were truncated to classes.
    with pytest.raises(SimCLRError, match="--temperature must be at least 0.0001, got nan"):
        knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=2, temperature=float("nan"))
    # below float32's smallest number: weights 0/0, every query a miss (top-1 0, exit 0)
    with pytest.raises(SimCLRError, match="--temperature must be at least 0.0001, got 1e-46"):
        knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=2, temperature=1e-46)
    assert knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=2, temperature=1e-4) == 1.0
    # an infinite one weighs every neighbour alike: a plain vote, not the protocol
    with pytest.raises(SimCLRError, match="--temperature must be at least 0.0001, got inf"):
        knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=2, temperature=math.inf)
    with pytest.raises(SimCLRError, match="at least 0.0001, got '0.1'"):  # (a string, shown so)
        knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=2, temperature="0.1")
    for k in (2.5, True, None):
        with pytest.raises(SimCLRError, match="--k must be a positive whole number"):
            knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=k)
    with pytest.raises(SimCLRError, match="kNN labels must be whole class numbers"):
        knn_accuracy(x, [0.0, 1.7, 2.2], x, [0, 1, 2], k=2)
    assert knn_accuracy(x, np.array([0, 1, 2]), x, [0, 1, 2], k=1) == 1.0


def test_knn_command_writes_results(tmp_path):
    train, test = colour_source(classes=6, seed=0), colour_source(classes=6, n_per_class=3,
                                                                  seed=1)
    result = run_knn(tiny_encoder(), train, test, tmp_path, image_size=16, k=5,
                     device="cpu", precision="fp32", verbose=False)
    saved = json.loads((tmp_path / "knn.json").read_text())
    assert saved["top1"] == result["top1"] and result["top5"] is not None
    assert result["top5"] >= result["top1"] and result["k"] == 5
    assert (tmp_path / "knn_confusion.png").stat().st_size > 0


def test_a_single_neighbour_gives_top5_equal_to_top1(tmp_path):
    """With k=1 one class has the vote and the other six score 0: none of those is a
    prediction (a sort put some of them in the top 5 and top-5 read near chance)."""
    train, test = colour_source(classes=7, seed=0), colour_source(classes=7, n_per_class=3,
                                                                  seed=1)
    result = run_knn(tiny_encoder(), train, test, None, image_size=16, k=1,
                     device="cpu", precision="fp32", verbose=False)
    assert result["top5"] == result["top1"] < 1


def test_a_k_above_the_training_set_is_said_and_recorded(tmp_path, capsys):
    train, test = colour_source(classes=2, seed=0), colour_source(classes=2, n_per_class=3,
                                                                  seed=1)
    n = train.num_images
    result = run_knn(tiny_encoder(), train, test, None, image_size=16, k=10 * n,
                     device="cpu", precision="fp32")
    assert result["k"] == n
    assert (f"note: --k {10 * n} is more than the {n} training images; each test image takes "
            f"all of them as neighbours (k = {n})") in capsys.readouterr().err


def test_a_k_of_exactly_the_memory_is_no_note():
    """k equal to the memory's size takes every image as it was set to: nothing to say."""
    assert knn.k_past_memory(5, 5, "--k", "training images") is None
    assert knn.k_past_memory(6, 5, "--k", "training images") == (
        "note: --k 6 is more than the 5 training images; each test image takes all of them "
        "as neighbours (k = 5)")


@pytest.mark.parametrize("verbose", [True, False])
def test_the_feature_passes_show_their_progress_when_verbose(capsys, monkeypatch, verbose):
    """knn's feature extraction over 100k images said nothing for minutes; its lines
    follow --quiet (verbose) as the command's other lines do."""
    from simclr import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # (a line at every batch)
    train, test = colour_source(classes=2, seed=0), colour_source(classes=2, n_per_class=3,
                                                                  seed=1)
    run_knn(tiny_encoder(), train, test, None, image_size=16, k=3, batch_size=4,
            device="cpu", precision="fp32", verbose=verbose)
    err = capsys.readouterr().err
    said = [line.split(",")[0] for line in err.splitlines() if line.startswith("features")]
    assert said == (["features of --train: 4/16 images", "features of --train: 8/16 images",
                     "features of --train: 12/16 images", "features of --train: 16/16 images",
                     "features of --test: 4/6 images", "features of --test: 6/6 images"]
                    if verbose else [])


def test_unlabeled_rows_and_mismatched_shapes_are_named():
    """An embed .npz's unlabeled rows (-1) gave an index error deep in torch, and
    mismatched shapes numpy's or torch's; each is now named."""
    feats, labels = torch.randn(6, 4), np.array([0, 1, 0, 1, -1, 1])
    with pytest.raises(SimCLRError, match=r"kNN labels must lie in 0\.\.1, got -1\.\.1 "
                                          r"\(unlabeled images, -1, have no vote"):
        knn_accuracy(feats, labels, feats, np.abs(labels))
    with pytest.raises(SimCLRError, match=r"kNN test labels must be one class \(>= 0\)"):
        knn_accuracy(feats, np.abs(labels), feats, labels)
    for truth in (np.abs(labels)[:5], np.abs(labels)[:, None]):  # (not one per query)
        with pytest.raises(SimCLRError,
                           match=re.escape(f"per query, (6,); got shape {truth.shape}")):
            knn_accuracy(feats, np.abs(labels), feats, truth)
    with pytest.raises(SimCLRError, match=r"must be \(N, D\) and \(M, D\)"):
        knn_accuracy(feats, np.abs(labels), torch.randn(6, 5), np.abs(labels))
    with pytest.raises(SimCLRError, match=r"one per memory row \(6,\), got \(5,\)"):
        knn_accuracy(feats, np.abs(labels)[:5], feats, np.abs(labels))
    with pytest.raises(SimCLRError, match=r"with N >= 1, got .*\[0, 4\]"):  # (no memory)
        knn_accuracy(feats[:0], np.zeros(0, np.int64), feats, np.abs(labels), num_classes=2)
    # no query (numpy's reduction error, or nan), a query's class past num_classes (a miss)
    with pytest.raises(SimCLRError, match=r"^kNN accuracy needs at least one query, got none$"):
        knn_accuracy(feats, np.abs(labels), feats[:0], np.zeros(0, np.int64))
    with pytest.raises(SimCLRError, match=r"^kNN test labels must lie in 0\.\.1, got 5$"):
        knn_accuracy(feats, np.abs(labels), feats, np.full(6, 5), num_classes=2)
    with pytest.raises(SimCLRError, match=r"^kNN test labels must lie in 0\.\.1, got 2$"):
        knn_accuracy(feats, np.abs(labels), feats, np.full(6, 2), num_classes=2)  # (its edge)
    assert knn_accuracy(feats, np.abs(labels), feats, np.abs(labels), k=1) == 1.0


def test_the_knn_command_keeps_no_scores_matrix(tmp_path, monkeypatch):
    """run_knn's results come from each block of scores reduced as it is computed (the
    float64 scores of every test image for every class took 2.7 GB at 20k images x
    5,000 classes): what reaches its results holds O(M) numbers, not M x C, and they
    are the whole matrix's (accuracies, JSON, confusion matrix), in blocks of 2 queries."""
    import simclr.results as results_module
    from simclr.features import extract_features
    from simclr.results import accuracy_summary, top1_predictions

    train, test = colour_source(classes=30, n_per_class=2), colour_source(classes=30,
                                                                          n_per_class=1)
    given, drawn = [], []
    finish = knn.finish_results
    monkeypatch.setattr(knn, "finish_results", lambda r, o, n, scores, *a: (
        given.append(scores), finish(r, o, n, scores, *a))[1])
    monkeypatch.setattr(results_module, "save_confusion_figure",
                        lambda matrix, *a: drawn.append(matrix) or tmp_path / "c.png")
    monkeypatch.setattr(knn, "KNN_BLOCK_ELEMENTS", 60 * 2)
    encoder = tiny_encoder()
    result = run_knn(encoder, train, test, tmp_path, image_size=16, k=7, device="cpu",
                     precision="fp32", verbose=False)
    held = (given[0].numel() if isinstance(given[0], torch.Tensor)
            else sum(torch.as_tensor(v).numel() for v in vars(given[0]).values()))
    assert held <= 3 * 30 < 30 * 30, held
    train_x, train_y = extract_features(encoder, train, 16)
    test_x, test_y = extract_features(encoder, test, 16)
    full = knn_classify(train_x, train_y, test_x, 7, 0.1, 30, "cpu", log_probs=True)
    assert {key: result[key] for key in ("top1", "top5")} == accuracy_summary(full, test_y)
    assert json.loads((tmp_path / "knn.json").read_text())["top1"] == result["top1"]
    from simclr.results import confusion_matrix

    np.testing.assert_array_equal(drawn[0], confusion_matrix(
        test_y, top1_predictions(full, test_y), 30))


def test_a_knn_result_written_meanwhile_by_another_command_is_kept(tmp_path, monkeypatch):
    """Two `simclr knn --out D` at once: both found D free at their start; the one that
    finishes second is refused in one line, the first's knn.json kept (it replaced it
    silently); with --overwrite it replaces it, as before."""
    train, test = colour_source(seed=0), colour_source(n_per_class=3, seed=1)
    fast = {"image_size": 16, "device": "cpu", "precision": "fp32", "verbose": False}
    first = {"k": 3, "top1": 0.5}
    classify = knn.knn_ranked

    def finished_meanwhile(*args, **kwargs):  # the first command's result, published now
        (tmp_path / "knn.json").write_text(json.dumps(first))
        return classify(*args, **kwargs)

    monkeypatch.setattr(knn, "knn_ranked", finished_meanwhile)
    with pytest.raises(SimCLRError, match=r"knn.json was written meanwhile by another process "
                       r"\(kept; this run's was not written\): choose another --out, or pass "
                       r"--overwrite to replace it"):
        run_knn(tiny_encoder(), train, test, tmp_path, k=5, **fast)
    assert json.loads((tmp_path / "knn.json").read_text()) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knn.json"]  # no figure of ours
    assert run_knn(tiny_encoder(), train, test, tmp_path, k=5, overwrite=True, **fast)["k"] == 5
    assert json.loads((tmp_path / "knn.json").read_text())["k"] == 5


@pytest.mark.parametrize("channels_last", [True, False])
def test_knn_runs_in_channels_last_by_default_and_leaves_the_encoder_as_given(
        tmp_path, channels_last):
    """Both feature passes feed channels_last images to channels_last weights (1.5-2x
    faster in bf16 on a CPU) unless turned off; the caller's encoder is NCHW again after,
    the setting is recorded, and the accuracy is the NCHW one."""
    train, test = colour_source(classes=6, seed=0), colour_source(classes=6, n_per_class=3,
                                                                  seed=1)
    enc = tiny_encoder()
    seen = first_conv_formats(enc)
    kwargs = {} if channels_last else {"channels_last": False}
    result = run_knn(enc, train, test, tmp_path, image_size=16, k=5, device="cpu",
                     precision="fp32", verbose=False, **kwargs)
    assert seen and set(seen) == {(channels_last, channels_last)} and in_nchw(enc)
    assert json.loads((tmp_path / "knn.json").read_text())["channels_last"] is channels_last
    other = run_knn(enc, train, test, None, image_size=16, k=5, device="cpu",
                    precision="fp32", verbose=False, channels_last=not channels_last)
    assert (other["top1"], other["top5"]) == (result["top1"], result["top5"])


def _run_on_features(monkeypatch, memory, train_labels, queries, test_labels, classes,
                     **kw):
    """run_knn on given features (N, D) and (M, D): feature extraction replaced, so the
    command's own ranking and recording are what is tested."""
    from tests.conftest import ArraySource

    def source(labels):
        labels = np.asarray(labels)
        return ArraySource(np.zeros((len(labels), 3, 4, 4), np.uint8), labels,
                           [f"c{c}" for c in range(classes)])

    train, test = source(train_labels), source(test_labels)
    features = {id(train): (np.asarray(memory, np.float32), np.asarray(train_labels)),
                id(test): (np.asarray(queries, np.float32), np.asarray(test_labels))}
    monkeypatch.setattr(knn, "extract_features", lambda enc, src, *a, **k: features[id(src)])
    return run_knn(torch.nn.Identity(), train, test, None, image_size=4, device="cpu",
                   precision="fp32", verbose=False, **kw)


def test_the_knn_command_counts_a_class_whose_weight_underflows_in_its_top5(monkeypatch):
    """At T = 1e-4 the second neighbour's weight is exactly 0 in float32: ranked so, its
    class tied with the unvoted ones and top-5 counted it a miss; `simclr knn` ranks the
    float64 log-probabilities, so the true class (the second neighbour's) is 2nd."""
    a = math.acos(0.98)
    memory = [[1, 0], [math.cos(a), math.sin(a)], [0, 1], [0, -1], [-1, 0], [-1, 0], [-1, 0]]
    result = _run_on_features(monkeypatch, memory, range(7), [[1, 0]], [1], 7, k=2,
                              temperature=1e-4)
    assert (result["top1"], result["top5"]) == (0.0, 1.0)


def test_the_knn_command_takes_200_neighbours_at_temperature_0_1_by_default(monkeypatch):
    """The defaults of Wu et al. 2018 the paper's kNN follows: k 200, T 0.1 (recorded)."""
    rng = np.random.default_rng(0)
    memory, labels = rng.normal(size=(250, 4)), np.arange(250) % 3
    result = _run_on_features(monkeypatch, memory, labels, memory[:5], labels[:5], 3)
    assert (result["k"], result["temperature"]) == (200, 0.1)
    small = _run_on_features(monkeypatch, memory[:30], labels[:30], memory[:5], labels[:5], 3)
    assert small["k"] == 30


def test_a_label_of_num_classes_or_more_is_named_not_an_index_error():
    """With ``num_classes`` given, a memory label of num_classes (one past the last
    class) is out of range like -1: named, not an index error inside torch."""
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(SimCLRError, match=r"kNN labels must lie in 0\.\.1, got 0\.\.2"):
        knn_classify(x, np.array([0, 1, 2]), x, k=1, num_classes=2)
    with pytest.raises(SimCLRError, match=r"kNN labels must lie in 0\.\.1, got 0\.\.5"):
        knn_classify(x, np.array([0, 1, 5]), x, k=1, num_classes=2)


def test_a_test_class_absent_from_the_memory_is_a_miss_of_the_monitors_knn():
    """knn_accuracy's classes (num_classes None) span the test labels too: a query of a
    class with no memory item is a miss (no vote can name it), the others count."""
    memory = np.array([[1, 0], [0, 1]], dtype=np.float32)
    queries = np.array([[1, 0.1], [0.1, 1], [1, 0.2]], dtype=np.float32)
    # by hand: query 0 and 1 nearest their own class; query 2 is of class 2, never voted
    assert knn_accuracy(memory, [0, 1], queries, [0, 1, 2], k=1) == pytest.approx(2 / 3)
    assert knn_accuracy(memory, [0, 1], queries[2:], [2], k=2) == 0.0


def test_no_queries_give_an_empty_matrix_of_the_asked_kind():
    """M = 0 queries: (0, C) probabilities float32, or log-probabilities float64."""
    x = np.eye(3, dtype=np.float32)
    none = np.zeros((0, 3), dtype=np.float32)
    probs = knn_classify(x, [0, 1, 2], none, k=1, num_classes=4)
    logs = knn_classify(x, [0, 1, 2], none, k=1, num_classes=4, log_probs=True)
    assert (probs.shape, probs.dtype) == ((0, 4), torch.float32)
    assert (logs.shape, logs.dtype) == ((0, 4), torch.float64)


@pytest.mark.parametrize("k, temperature", [(0, 0.1), (5, 0.0)])
def test_the_knn_command_refuses_bad_settings_before_extracting_features(
        monkeypatch, tmp_path, k, temperature):
    """A bad --k or --temperature is refused before the features of every image are
    computed (minutes on a large set), and nothing is written."""
    def extract(*args, **kwargs):
        raise AssertionError("features extracted before the settings were checked")

    monkeypatch.setattr(knn, "extract_features", extract)
    train = colour_source(classes=2, seed=0)
    with pytest.raises(SimCLRError, match="--k|--temperature"):
        run_knn(tiny_encoder(), train, train, tmp_path / "out", image_size=16, k=k,
                temperature=temperature, device="cpu", precision="fp32", verbose=False)
    assert not (tmp_path / "out" / "knn.json").exists()
