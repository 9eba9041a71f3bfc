"""Weighted kNN evaluation of a frozen encoder (Wu et al. 2018).

Like the linear protocols of Chen et al. 2020 (Sec. 2.3), it is applied to the
representation h = f(x) (the encoder's pooled output) by default, or to a head layer
(``simclr knn --layer z``): ``run_knn`` is the ``simclr knn`` command, and the same
code is the online monitor of pretraining (``monitor.knn_monitor`` calls
``extract_features`` and ``knn_accuracy``). Both keep what their results need of each
block of scores (:func:`knn_ranked`), never every test image's scores at once.

Features come from :mod:`simclr.features` (the encoder in eval mode without gradients,
never modified), accuracies and files from :mod:`simclr.results`. Accuracies are
fractions in [0, 1].
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simclr.config import MIN_TEMPERATURE
from simclr.errors import SimCLRError, is_count
from simclr.features import check_labeled, extract_features, resolve_runtime
from simclr.results import (
    RESULTS,
    Ranked,
    accuracy_summary,
    feature_sizes,
    finish_results,
    log,
    prepare_dir,
    rank_rows,
    topk_accuracy,
)

# Elements of one (queries x memory) similarity block of the kNN.
KNN_BLOCK_ELEMENTS = 1 << 24

T = TypeVar("T")  # what each block of scores is reduced to


def _check_settings(k: Any, temperature: Any) -> None:
    """k a positive whole number, the temperature a finite number of at least
    MIN_TEMPERATURE (NaN too is refused: it scored 0.5; below float32's smallest number
    the weights were 0/0 and every query a miss), each named as its flag."""
    if not is_count(k):
        raise SimCLRError(f"--k must be a positive whole number, got {k!r}")
    if not (isinstance(temperature, numbers.Real) and MIN_TEMPERATURE <= temperature < math.inf):  # type: ignore[operator]  # (numbers' stubs)
        raise SimCLRError(f"--temperature must be at least {MIN_TEMPERATURE:g}, got "
                          f"{temperature!r}")


def _check_memory(train_feats: Any, train_labels: Any, test_feats: Any,
                  num_classes: int | None) -> None:
    """The kNN memory's shapes and labels (an embed .npz's unlabeled rows are -1)."""
    labels = np.asarray(train_labels)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):  # (floats were truncated)
        raise SimCLRError(f"kNN labels must be whole class numbers, got {labels.dtype} "
                          f"values such as {labels.flat[0]!r}")
    rows, queries = np.shape(train_feats), np.shape(test_feats)
    if len(rows) != 2 or len(queries) != 2 or rows[1] != queries[1] or rows[0] == 0:
        raise SimCLRError(f"kNN features must be (N, D) and (M, D) with N >= 1, got {rows} "
                          f"and {queries}")
    if labels.shape != (rows[0],):
        raise SimCLRError(f"kNN labels must be one per memory row ({rows[0]},), got "
                          f"{labels.shape}")
    top = num_classes if num_classes is not None else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= top:
        raise SimCLRError(f"kNN labels must lie in 0..{top - 1}, got {int(labels.min())}.."
                          f"{int(labels.max())} (unlabeled images, -1, have no vote: leave "
                          "them out)")


def knn_classify(
    train_feats: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor, k: int = 200, temperature: float = 0.1,
    num_classes: int | None = None, device: str | torch.device | None = None,
    log_probs: bool = False,
) -> torch.Tensor:
    """Every query's weighted-kNN class probabilities (Wu et al. 2018), float32 (M, C) on
    CPU: the whole score matrix, for looking at the votes themselves (a few queries, a
    small memory; the tests check the protocol against it). The commands and the online
    monitor never hold it: they take accuracies and predictions block by block
    (:func:`knn_ranked`, :func:`knn_accuracy`), the same scores.

    train_feats (N, D), train_labels (N,) int, test_feats (M, D). Features are L2
    normalised; each query takes its k most cosine-similar memory items (k clamped to
    N), weighted by exp(sim / T); a class's score is the sum of its neighbours' weights,
    normalised to sum to 1 per query. ``device`` None: the current CUDA device when
    there is one, else the CPU.

    ``log_probs``: their logs instead, float64 (-inf: a class without a vote), what the
    protocol ranks: a neighbour more than ~100 T less similar than the nearest has a
    weight of exactly 0 (T = 1e-4: 0.01 of cosine), so its class tied with the classes
    without a vote, and top-5 counted it a miss. Computed in log space, in float64.
    """
    blocks, n_classes = _knn_blocks(
        train_feats, train_labels, test_feats, k, temperature, num_classes, device,
        lambda rows, scores: scores.cpu() if log_probs else scores.exp().float().cpu())
    if not blocks:
        return torch.zeros(0, n_classes, dtype=torch.float64 if log_probs else torch.float32)
    return torch.cat(blocks)


def knn_ranked(
    train_feats: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor, test_labels: np.ndarray | torch.Tensor,
    k: int = 200, temperature: float = 0.1, num_classes: int | None = None,
    device: str | torch.device | None = None, log_probs: bool = True,
) -> Ranked:
    """Each query's weighted-kNN classes ranked against ``test_labels`` (M,): what the
    accuracies and predictions of ``simclr knn`` need (Wu et al. 2018: features L2
    normalised, each query's k most cosine-similar memory items (k clamped to N) vote
    for their classes with weights exp(sim / T), normalised to sum to 1 per query).

    train_feats (N, D), train_labels (N,) int, test_feats (M, D). Each block of queries'
    class scores is ranked as it is computed: memory O(M + block x C), where all (M, C)
    float64 scores took 2.7 GB at 20k test images x 5,000 classes (more than 20 GB at
    100k x 10k). ``log_probs``: ranks the log-probabilities, the commands' (a class whose
    share underflows to 0 as a probability still ranks above one without a vote);
    else the float32 probabilities (near-equal shares may round to a tie). ``device``
    None: the current CUDA device when there is one, else the CPU."""
    labels = torch.as_tensor(np.asarray(test_labels))
    parts, n_classes = _knn_blocks(
        train_feats, train_labels, test_feats, k, temperature, num_classes, device,
        lambda rows, scores: rank_rows((scores if log_probs else scores.exp().float()).cpu(),
                                       labels[rows]))
    return Ranked.join(parts, n_classes)


def _knn_blocks(
    train_feats: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor, k: int, temperature: float,
    num_classes: int | None, device: str | torch.device | None,
    reduce: Callable[[slice, torch.Tensor], T],
) -> tuple[list[T], int]:
    """(``reduce(rows, log_scores)`` of each block of queries, in order; the number of
    classes C), each block reduced before the next is computed. log_scores: float64
    (block, C) on the device, the log of each class's share of the weights exp(sim / T)
    of the query's k most cosine-similar memory items (-inf: no vote). Blocks keep the
    (block, N) similarities and the (block, C) scores bounded (``KNN_BLOCK_ELEMENTS``)."""
    _check_settings(k, temperature)
    _check_memory(train_feats, train_labels, test_feats, num_classes)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    memory = F.normalize(torch.as_tensor(train_feats, dtype=torch.float32, device=dev), dim=1)
    queries = F.normalize(torch.as_tensor(test_feats, dtype=torch.float32, device=dev), dim=1)
    labels = torch.as_tensor(train_labels, device=dev).long()
    n_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    k = min(k, memory.shape[0])
    # (bounded by the classes too: each query's C class scores are kept in float64)
    block = max(1, KNN_BLOCK_ELEMENTS // max(memory.shape[0], n_classes, 1))
    out = []
    for start in range(0, queries.shape[0], block):
        sim = queries[start:start + block] @ memory.T
        top_sim, top_idx = sim.topk(k, dim=1)
        del sim  # (before the block's scores: one of the two at a time)
        scores = _class_log_scores(top_sim, labels[top_idx], temperature, n_classes)
        out.append(reduce(slice(start, start + block), scores))
    return out, n_classes


def _class_log_scores(top_sim: torch.Tensor, top_class: torch.Tensor, temperature: float,
                      num_classes: int) -> torch.Tensor:
    """log of each class's share of the weights exp(sim / T) of a query's neighbours,
    float64 (B, C) (-inf: no neighbour of the class), from their similarities (B, k)
    and classes (B, k). A class's log-sum-exp is taken about its own nearest neighbour,
    whose weight is 1: no class's sum underflows, however small T."""
    logits = top_sim.double() / temperature
    best = torch.full((len(logits), num_classes), -math.inf, dtype=logits.dtype,
                      device=logits.device).scatter_reduce(1, top_class, logits, "amax")
    sums = torch.zeros_like(best).scatter_add_(
        1, top_class, (logits - best.gather(1, top_class)).exp())
    scores = best + sums.log()
    return scores - scores.logsumexp(1, keepdim=True)


def k_past_memory(k: int, memory: int, flag: str, images: str) -> str | None:
    """The note when ``k`` passes the ``memory`` images: every image votes, a k other
    than the one set, said (``flag``, what ``images`` the memory is), else None."""
    if k <= memory:
        return None
    return (f"note: {flag} {k} is more than the {memory} {images}; each test image takes "
            f"all of them as neighbours (k = {memory})")


def knn_accuracy(
    train_feats: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor, test_labels: np.ndarray | torch.Tensor,
    k: int = 200, temperature: float = 0.1, num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> float:
    """Weighted-kNN top-1 accuracy (fraction in [0, 1]) of ``test_feats`` (M, D) against
    ``test_labels`` (M,), the memory train_feats (N, D) with train_labels (N,) voting
    (Wu et al. 2018): each query's k most cosine-similar memory items (k clamped to N),
    weighted by exp(sim / T), and its class the one of the largest summed weight (the
    float64 log-shares ranked, as `simclr knn` ranks them). What the online monitor of
    pretraining reports; ``num_classes`` None: the largest label of either set + 1."""
    truth = np.asarray(test_labels)
    if truth.shape != (np.shape(test_feats)[0],) or (truth.size and truth.min() < 0):
        raise SimCLRError(f"kNN test labels must be one class (>= 0) per query, "
                          f"({np.shape(test_feats)[0]},); got shape {truth.shape}"
                          + (f", min {truth.min()}" if truth.size else ""))
    if not truth.size:  # (no accuracy: numpy's reduction error, or nan with num_classes)
        raise SimCLRError("kNN accuracy needs at least one query, got none")
    if num_classes is not None and truth.max() >= num_classes:  # (each counted a miss)
        raise SimCLRError(f"kNN test labels must lie in 0..{num_classes - 1}, got "
                          f"{int(truth.max())}")
    if num_classes is None:
        num_classes = int(max(np.max(np.asarray(train_labels)),
                              np.max(np.asarray(test_labels)))) + 1
    ranked = knn_ranked(train_feats, train_labels, test_feats, truth, k, temperature,
                        num_classes, device)  # (float32 shares tie where logs do not)
    return topk_accuracy(ranked, truth, (1,))[0]


def run_knn(
    encoder: nn.Module, train: Any, test: Any, run_dir: str | Path | None, *,
    image_size: int, k: int = 200, temperature: float = 0.1, batch_size: int = 256,
    device: str | torch.device = "auto", precision: str = "auto", workers: int | None = None,
    channels_last: bool = True, verbose: bool = True, source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``simclr knn``: weighted-kNN top-1 (and top-5) of the frozen encoder's h.

    Its flags: ``simclr knn --help`` (k 200, temperature 0.1 by default).
    ``channels_last``: images and weights in that memory format (the faster), the
    encoder's own layout restored after (features.channels_last_weights).

    Writes ``knn.json`` and ``knn_confusion.png`` into ``run_dir`` (when given; those of
    an earlier run there are refused unless ``overwrite``) and returns the same dict;
    ``source`` (what the encoder came from: the checkpoint file, its step, the layer) is
    recorded in it.
    """
    _check_settings(k, temperature)  # (before the features are extracted)
    num_classes = check_labeled(train, test)
    out = prepare_dir(run_dir, RESULTS["knn"], overwrite=overwrite)
    dev, prec = resolve_runtime(device, precision)
    start = time.perf_counter()
    train_x, train_y = extract_features(encoder, train, image_size, batch_size, dev, prec,
                                        channels_last=channels_last, workers=workers,
                                        progress="features of --train" if verbose else None)
    test_x, test_y = extract_features(encoder, test, image_size, batch_size, dev, prec,
                                      channels_last=channels_last, workers=workers,
                                      progress="features of --test" if verbose else None)
    note = k_past_memory(k, len(train_y), "--k", "training images")
    if note:
        log(note, verbose)
    scores = knn_ranked(train_x, train_y, test_x, test_y, k, temperature, num_classes, dev,
                        log_probs=True)  # (the ranking of classes whose weights underflow)
    results = {"command": "knn", "k": min(k, len(train_y)), "temperature": temperature,
               **accuracy_summary(scores, test_y), **feature_sizes(train_x, test_x, num_classes),
               "image_size": image_size, "precision": prec, "channels_last": channels_last,
               "elapsed_s": time.perf_counter() - start}
    finish_results(results, out, "knn", scores, test_y, train, test, source, verbose,
                   overwrite)
    log(f"kNN (k={results['k']}, T={temperature}): top-1 {100 * results['top1']:.2f}%", verbose)
    return results
