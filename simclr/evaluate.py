"""Evaluation of a frozen encoder: features, weighted kNN and linear classifiers.

Protocols of Chen et al. 2020 (Sec. 4 and App. B.5-B.6), applied to the representation
h = f(x) (the encoder's pooled output, never z = g(h)):

* ``run_knn``: weighted kNN on cosine similarity (Wu et al. 2018), the same code as the
  online monitor of pretraining (``train.knn_monitor`` calls ``extract_features`` and
  ``knn_accuracy``).
* ``run_linear_eval(protocol="lbfgs")``: the paper's transfer protocol (App. B.5):
  center-crop features computed once, L2-regularised multinomial logistic regression
  fitted by L-BFGS, the regularisation chosen on a held-out split of the training set.
* ``run_linear_eval(protocol="sgd")``: the paper's ImageNet protocol (App. B.6): a linear
  layer on the frozen encoder, trained with Nesterov SGD on crop + flip views.

Features come from :mod:`simclr.features`, accuracies and files from :mod:`simclr.results`.
The encoder is never modified: it runs in eval mode (BatchNorm uses its running
statistics and does not update them) without gradients, and its train/eval flags are
restored afterwards. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simclr import distributed as dist
from simclr.backbones import TorchvisionEncoder
from simclr.checkpoint import CHECKPOINTS
from simclr.classify import (
    Checkpointing,
    PartialRun,
    crop_flip_config,
    evaluate_classifier,
    fitted_batch,
    init_linear,
    nesterov_sgd,
    run_folder,
    scheduled_lr,
    total_steps,
    train_classifier,
    weights_digest,
)
from simclr.errors import SimCLRError
from simclr.features import (
    check_labeled,
    extract_features,
    resolve_runtime,
    restore_flags,
    train_flags,
)
from simclr.models import Classifier, LinearProbe, ResNet
from simclr.results import (
    RESULTS,
    accuracy_summary,
    confusion_matrix,
    log,
    prepare_dir,
    save_confusion_figure,
    topk_accuracy,
    write_results,
)

# L-BFGS runs in float64 up to this many feature values (N*D); larger problems use float32.
FLOAT64_MAX_ELEMENTS = 1 << 26
# Elements of one (queries x memory) similarity block of the kNN.
KNN_BLOCK_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------- kNN

def knn_classify(
    train_feats: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor, k: int = 200, temperature: float = 0.1,
    num_classes: int | None = None, device: str | torch.device | None = None,
) -> torch.Tensor:
    """Weighted kNN class probabilities (Wu et al. 2018), float32 (M, C) on CPU.

    train_feats (N, D), train_labels (N,) int, test_feats (M, D). Features are L2
    normalised; each query takes its k most cosine-similar memory items (k clamped to
    N), weighted by exp(sim / T); a class's score is the sum of its neighbours' weights,
    normalised to sum to 1 per query. Queries run in blocks so the (block, N) similarity
    matrix stays bounded (``KNN_BLOCK_ELEMENTS``). ``device`` None: the current CUDA
    device when there is one, else the CPU.
    """
    if temperature <= 0:
        raise SimCLRError(f"--temperature must be positive, got {temperature}")
    if k < 1:
        raise SimCLRError(f"--k must be at least 1, got {k}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    memory = F.normalize(torch.as_tensor(train_feats, dtype=torch.float32, device=dev), dim=1)
    queries = F.normalize(torch.as_tensor(test_feats, dtype=torch.float32, device=dev), dim=1)
    labels = torch.as_tensor(train_labels, device=dev).long()
    n_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    k = min(k, memory.shape[0])
    block = max(1, KNN_BLOCK_ELEMENTS // max(memory.shape[0], 1))
    out = []
    for start in range(0, queries.shape[0], block):
        sim = queries[start:start + block] @ memory.T
        top_sim, top_idx = sim.topk(k, dim=1)
        # Shifting by the best similarity rescales a query's weights by one constant
        # (the ranking is unchanged) and keeps exp() finite for small temperatures.
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
        scores = torch.zeros(top_sim.shape[0], n_classes, device=dev)
        scores.scatter_add_(1, labels[top_idx], weights)
        out.append((scores / scores.sum(1, keepdim=True)).cpu())
    return torch.cat(out) if out else torch.zeros(0, n_classes)


def knn_accuracy(
    train_feats: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor,
    test_feats: np.ndarray | torch.Tensor, test_labels: np.ndarray | torch.Tensor,
    k: int = 200, temperature: float = 0.1, num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> float:
    """Weighted-kNN top-1 accuracy (fraction in [0, 1]); see :func:`knn_classify`."""
    if num_classes is None:
        num_classes = int(max(np.max(np.asarray(train_labels)),
                              np.max(np.asarray(test_labels)))) + 1
    scores = knn_classify(train_feats, train_labels, test_feats, k, temperature, num_classes,
                          device)
    return topk_accuracy(scores, test_labels, (1,))[0]


def run_knn(
    encoder: nn.Module, train: Any, test: Any, run_dir: str | Path | None, *,
    image_size: int, k: int = 200, temperature: float = 0.1, batch_size: int = 256,
    device: str | torch.device = "auto", precision: str = "auto", workers: int | None = None,
    channels_last: bool = False, verbose: bool = True, source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``simclr knn``: weighted-kNN top-1 (and top-5) of the frozen encoder's h.

    CLI flags: ``--checkpoint CKPT --train DIR --test DIR [--out RUN_DIR] [--k 200]
    [--temperature 0.1] [--batch-size 256] [--device auto] [--precision auto]
    [--workers N] [--cache-dir DIR] [--overwrite]``.

    Writes ``knn.json`` and ``knn_confusion.png`` into ``run_dir`` (when given; those of
    an earlier run there are refused unless ``overwrite``) and returns the same dict;
    ``source`` (what the encoder came from: the checkpoint file, its step, the layer) is
    recorded in it.
    """
    if k < 1 or not temperature > 0:
        raise SimCLRError(f"--k must be >= 1 and --temperature positive, got {k}, {temperature}")
    num_classes = check_labeled(train, test)
    out = prepare_dir(run_dir, RESULTS["knn"], overwrite=overwrite)
    dev, prec = resolve_runtime(device, precision)
    start = time.perf_counter()
    train_x, train_y = extract_features(encoder, train, image_size, batch_size, dev, prec,
                                        channels_last=channels_last, workers=workers)
    test_x, test_y = extract_features(encoder, test, image_size, batch_size, dev, prec,
                                      channels_last=channels_last, workers=workers)
    scores = knn_classify(train_x, train_y, test_x, k, temperature, num_classes, dev)
    results = {"command": "knn", "k": min(k, len(train_y)), "temperature": temperature,
               **accuracy_summary(scores, test_y), **_sizes(train_x, test_x, num_classes),
               "image_size": image_size, "precision": prec,
               "elapsed_s": time.perf_counter() - start}
    finish_results(results, out, "knn", scores, test_y, train, test, source)
    log(f"kNN (k={results['k']}, T={temperature}): top-1 {100 * results['top1']:.2f}%", verbose)
    return results


def _sizes(train_x: np.ndarray, test_x: np.ndarray, num_classes: int) -> dict[str, int]:
    return {"num_train": int(train_x.shape[0]), "num_test": int(test_x.shape[0]),
            "num_classes": num_classes, "feature_dim": int(train_x.shape[1])}


def finish_results(results: dict[str, Any], out: Path | None, name: str, scores: torch.Tensor,
                   labels: np.ndarray, train: Any, test: Any,
                   source: dict[str, Any] | None = None) -> None:
    """Confusion-matrix figure + JSON into the run directory. The results record the
    encoder's ``source`` and how many images of ``train`` and ``test`` were unreadable
    and left out, since the accuracy is over the others."""
    results["skipped_images"] = {"train": len(getattr(train, "skipped", ())),
                                 "test": len(getattr(test, "skipped", ()))}
    if source is not None:
        results["source"] = source
    if out is None:
        return
    classes = train.classes
    matrix = confusion_matrix(labels, scores.argmax(1).numpy(), len(classes))
    fig = save_confusion_figure(matrix, classes, out / f"{name}_confusion.png",
                                f"{name}: top-1 {100 * results['top1']:.2f}%")
    results["confusion_figure"] = str(fig)
    write_results(out, f"{name}.json", results)


# ----------------------------------------------------------- L-BFGS logistic regression

def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """(fit indices, held-out indices): ``round(fraction * n_c)`` of each class held out.

    Classes with one example stay whole in the fit part; classes with >= 2 examples give
    at least one held-out example. Deterministic in ``seed``; both parts sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    fit = np.setdiff1d(np.arange(len(labels)), val)
    return fit, val


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, *, max_iter: int = 1000,
    tol: float | None = None, init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Full-batch L-BFGS fit of a multinomial logistic regression (App. B.5).

    Minimises  mean_i CE(W x_i + b, y_i) + (l2 / 2) ||W||^2  (the bias is not penalised)
    over W (C, D), b (C,), with strong-Wolfe line search, in the dtype/device of ``x``
    (N, D); y (N,) int64. ``init`` warm-starts from a previous (W, b). This equals
    scikit-learn's ``LogisticRegression(C=1 / (l2 * N))`` (whose objective is
    C * sum_i CE + ||W||^2 / 2: divide it by C * N) for 3+ classes.

    Stops when the largest gradient entry is below ``tol`` (default 1e-6 in float64,
    1e-5 in float32), when the objective stops changing in floating point, or after
    ``max_iter`` iterations. Returns (W, b, info) with info = {"iterations", "loss"}.
    """
    d = x.shape[1]
    if tol is None:
        tol = 1e-6 if x.dtype == torch.float64 else 1e-5
    if init is None:
        w = torch.zeros(num_classes, d, dtype=x.dtype, device=x.device)
        b = torch.zeros(num_classes, dtype=x.dtype, device=x.device)
    else:
        w, b = (t.detach().clone().to(x) for t in init)
    w.requires_grad_(True)
    b.requires_grad_(True)
    # tolerance_change far below the dtype's resolution: stop only on a real stall,
    # never on a small but genuine improvement near the optimum.
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=tol,
                            tolerance_change=torch.finfo(x.dtype).eps * 1e-2,
                            history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        return F.cross_entropy(torch.addmm(b, x, w.T), y) + 0.5 * l2 * w.pow(2).sum()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        final = objective().item()
    info = {"iterations": int(opt.state[w].get("n_iter", 0)), "loss": final}
    return w.detach(), b.detach(), info


def default_l2_grid(lo: float = 1e-6, hi: float = 1.0, count: int = 13) -> list[float]:
    """Regularisation strengths tried by the transfer protocol: log-spaced in [lo, hi].

    The penalty multiplies the *mean* cross-entropy on standardised features, so a
    strength means the same for any data-set size; the default is two values per
    decade from 1e-6 (nearly unregularised) to 1 (weights nearly zero). The paper
    searched 45 values in 1e-6..1e5 for its own, unstated scaling of the objective.
    """
    if not 1 <= count <= 1000 or not 0 < lo <= hi < math.inf:
        raise SimCLRError(f"--l2-grid: need 0 < min <= max and 1 <= count <= 1000, got "
                          f"{lo},{hi},{count}")
    return np.geomspace(lo, hi, count).tolist() if count > 1 else [lo]


def parse_l2_grid(text: str) -> list[float]:
    """``--l2-grid MIN,MAX,COUNT`` (e.g. ``1e-6,1,13``) -> :func:`default_l2_grid` values."""
    parts = str(text).split(",")
    try:
        lo, hi, count = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise SimCLRError(f"--l2-grid: cannot read {text!r} (use MIN,MAX,COUNT, "
                          "e.g. 1e-6,1,13)") from None
    return default_l2_grid(lo, hi, count)


class _Standardizer:
    """Per-feature mean/std of the fit split, applied to every split (no test leakage)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.mean = x.mean(0)
        std = x.std(0) if x.shape[0] > 1 else torch.ones_like(self.mean)
        self.std = torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std,
                               torch.ones_like(std))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def fold(self, w: torch.Tensor, b: torch.Tensor) -> nn.Linear:
        """x -> standardise -> (w (C, D), b (C,)) as one float32 CPU linear layer on x."""
        scaled = w / self.std
        layer = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(scaled.float().cpu())
            layer.bias.copy_((b - scaled @ self.mean).float().cpu())
        return layer


def logistic_regression(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int, *,
    l2: float | None = None, l2_grid: Sequence[float] | None = None,
    val_fraction: float = 0.1, seed: int = 0, max_iter: int = 1000,
    dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
    verbose: bool = False, tol: float | None = None,
) -> tuple[dict[str, Any], torch.Tensor, nn.Linear]:
    """The transfer protocol's classifier: choose lambda on a held-out split, refit, predict.

    train_x (N, D), train_y (N,), test_x (M, D). Features are standardised with the
    mean/std of the data each model is fitted on. Lambda: ``l2`` if given, else the
    ``l2_grid`` value (default :func:`default_l2_grid`) with the best accuracy on a
    stratified held-out ``val_fraction`` of the training set (ties -> the lower held-out
    cross-entropy); fits run from the strongest penalty down, each warm-started from the
    previous solution. The final model is refitted on the whole training set.
    ``dtype`` None: float64 up to ``FLOAT64_MAX_ELEMENTS`` feature values, else float32.

    Returns (summary dict, test probabilities float32 (M, C) on CPU, the classifier as a
    float32 CPU ``nn.Linear`` on unstandardised features: the standardisation folded
    into its weights, W / std and b - (W / std) mean).
    """
    if not 0 < val_fraction < 1:
        raise SimCLRError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    if dtype is None:
        dtype = torch.float64 if train_x.size <= FLOAT64_MAX_ELEMENTS else torch.float32
    dev = torch.device(device)
    x_all = torch.as_tensor(train_x, device=dev).to(dtype)
    y_all = torch.as_tensor(train_y, device=dev).long()
    summary: dict[str, Any] = {"dtype": str(dtype).replace("torch.", "")}
    fit = partial(fit_logistic_regression, num_classes=num_classes, max_iter=max_iter, tol=tol)
    init = None
    if l2 is None:
        grid = sorted(l2_grid if l2_grid is not None else default_l2_grid(), reverse=True)
        fit_idx, val_idx = stratified_split(train_y, val_fraction, seed)
        if len(val_idx) == 0:
            raise SimCLRError("the training set is too small for a held-out split "
                              "(every class has one image); give --l2 VALUE")
        l2, init, held_out = _choose_l2(x_all, y_all, fit_idx, val_idx, grid, fit, verbose)
        summary.update(held_out)
    # The final model: refitted on the whole training set (warm-started from the chosen fit).
    norm = _Standardizer(x_all)
    x_all = norm(x_all)
    w, b, info = fit(x_all, y_all, l2=float(l2), init=init)
    train_acc = (torch.addmm(b, x_all, w.T).argmax(1) == y_all).double().mean().item()
    del x_all
    x_test = norm(torch.as_tensor(test_x, device=dev).to(dtype))
    probs = torch.softmax(torch.addmm(b, x_test, w.T), dim=1).float().cpu()
    summary.update(l2=float(l2), iterations=info["iterations"], train_top1=train_acc)
    return summary, probs, norm.fold(w, b)


def _choose_l2(
    x_all: torch.Tensor, y_all: torch.Tensor, fit_idx: np.ndarray, val_idx: np.ndarray,
    grid: list[float], fit: Callable[..., tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    verbose: bool,
) -> tuple[float, tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """Lambda chosen on a held-out split (App. B.5): of the ``grid`` (strongest first, each
    fit on the ``fit_idx`` rows warm-started from the previous), the one most accurate
    on the ``val_idx`` rows (ties -> lower held-out cross-entropy). x_all (N, D), y_all
    (N,); ``fit``: :func:`fit_logistic_regression` with the problem's settings.

    Returns (lambda, its fit (W (C, D), b (C,)) to warm-start the refit, the held-out
    accuracies and losses for the summary). Each fit's features are standardised with
    the fit rows' mean/std."""
    dev = x_all.device
    fit_t, val_t = torch.as_tensor(fit_idx, device=dev), torch.as_tensor(val_idx, device=dev)
    norm = _Standardizer(x_all[fit_t])
    x_fit, x_val = norm(x_all[fit_t]), norm(x_all[val_t])
    val_acc, val_loss, best, solutions = {}, {}, (-1.0, 0.0), {}
    init = None
    for lam in grid:
        w, b, _ = fit(x_fit, y_all[fit_t], l2=lam, init=init)
        init = solutions[lam] = (w, b)
        logits = torch.addmm(b, x_val, w.T)
        acc = (logits.argmax(1) == y_all[val_t]).double().mean().item()
        loss = F.cross_entropy(logits, y_all[val_t]).item()
        val_acc[f"{lam:.3g}"], val_loss[f"{lam:.3g}"] = acc, loss
        log(f"  l2 {lam:.3g}: held-out top-1 {100 * acc:.2f}%, loss {loss:.4f}", verbose)
        if (acc, -loss) > best:  # ties in accuracy (common): lower held-out loss
            best, l2 = (acc, -loss), lam
    held_out = {"val_accuracy": val_acc, "val_loss": val_loss, "val_top1": best[0],
                "num_val": int(len(val_idx))}
    if len(grid) > 1 and l2 in (grid[0], grid[-1]):  # the best may lie beyond the grid
        log(f"note: the held-out set ({len(val_idx)} images) chose l2 {l2:.3g}, the "
            f"{'largest' if l2 == grid[0] else 'smallest'} of the grid; widen it "
            "(--l2-grid MIN,MAX,COUNT) or give --l2", verbose)
    # Returning frees the standardised copies: big problems keep one at a time.
    return l2, solutions[l2], held_out


# ------------------------------------------------------------------ linear evaluation

def linear_eval_sgd(
    encoder: nn.Module, train: Any, test: Any, num_classes: int, *, image_size: int,
    epochs: float = 90, batch_size: int = 256, lr: float = 0.1, momentum: float = 0.9,
    crop_scale: tuple[float, float] = (0.08, 1.0), crop_sampler: str = "torchvision",
    seed: int = 0, device: str | torch.device = "cpu", precision: str = "fp32",
    channels_last: bool = False, workers: int | None = None, verbose: bool = True,
    partial_run: PartialRun | None = None, checkpoint_every: int = 0,
    checkpoint_minutes: float = 0.0,
    on_step: Callable[[int, Any], None] | None = None, config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], torch.Tensor | None, np.ndarray | None, nn.Linear]:
    """The ImageNet linear protocol (App. B.6) on a frozen encoder.

    Each step: crop + flip views (B,3,S,S) -> frozen encoder (eval mode, no grad) ->
    h (B,D) -> linear layer (models.LinearProbe), cross-entropy, Nesterov SGD with lr
    ``lr`` x B/256, no weight decay, cosine decay per step without warm-up (the loop of
    classify.train_classifier). Test: center-crop features. ``partial_run``: where the
    unfinished training is kept (every ``checkpoint_every`` steps or
    ``checkpoint_minutes``, and on SIGTERM/SIGINT) and continued from. Returns (summary,
    test logits (M,C) CPU, test labels (M,), the linear layer on CPU); logits and labels
    are None if a signal stopped the training (summary ``status`` 'preempted'). In a
    process group (torchrun) each process takes its share of every batch, DDP averages
    the layer's gradients and rank 0 tests (the others get None logits and labels).
    The summary's ``earlier_s``: the training seconds of earlier sessions (resumed).
    """
    device = torch.device(device)
    batch = fitted_batch(batch_size, train.num_images, "training", verbose)
    total = total_steps(epochs, train.num_images, batch)
    aug_cfg = crop_flip_config(image_size, crop_scale, crop_sampler)
    probe = _new_probe(encoder, num_classes, image_size, seed, device, channels_last)
    optimizer = nesterov_sgd(probe.fc.parameters(), lr, batch, momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    partial_run = partial_run or linear_partial(None)
    step, elapsed = partial_run.resume(probe.fc, optimizer, scaler, verbose, prefix="fc.")
    save_partial = partial(_save_layer, partial_run, probe.fc, optimizer, scaler,
                           config, train.classes)
    with _frozen(encoder):
        stats = train_classifier(
            dist.wrap_ddp(probe, device), train, np.arange(train.num_images), aug_cfg,
            total_steps=total, batch_size=batch, optimizer=optimizer,
            lr_fn=lambda step, p: scheduled_lr(step, total, p), seed=seed, device=device,
            precision=precision, channels_last=channels_last, workers=workers,
            verbose=verbose, name="linear eval", start_step=step, elapsed=elapsed,
            scaler=scaler, checkpointing=None if partial_run.out is None else Checkpointing(
                save_partial, checkpoint_every, on_step, every_s=60 * checkpoint_minutes))
    summary = {"epochs": epochs, "batch_size": batch, "lr": lr,
               "peak_lr": optimizer.param_groups[0]["peak_lr"],
               "processes": dist.world_size(), "earlier_s": elapsed, **stats}
    if stats["signal"]:  # kept, also when the signal came with the last step (see finetune)
        summary["checkpoint"] = save_partial(stats["steps"], stats["train_s"])
    if stats["status"] == "preempted" or not dist.is_main():  # rank 0 tests
        return summary, None, None, probe.fc
    logits, test_y = evaluate_classifier(probe, test, image_size,
                                         batch_size=batch // dist.world_size(),
                                         device=device, precision=precision,
                                         channels_last=channels_last, workers=workers)
    return summary, logits, test_y, probe.fc.float().cpu()


def _new_probe(encoder: nn.Module, num_classes: int, image_size: int, seed: int,
               device: torch.device, channels_last: bool) -> LinearProbe:
    """A new linear layer (:func:`classify.init_linear`, its weights drawn from ``seed``)
    on the frozen encoder's features, on ``device``."""
    probe = LinearProbe(encoder, num_classes, fc=init_linear(
        feature_width(encoder, image_size), num_classes, torch.Generator().manual_seed(seed)))
    probe.to(device)
    if channels_last:
        probe.to(memory_format=torch.channels_last)
    return probe


@contextmanager
def _frozen(encoder: nn.Module) -> Iterator[None]:
    """The encoder frozen while a layer on it trains: its parameters take no gradient (so
    DDP averages the layer's gradients only, never the encoder's: none), and its
    train/eval flags and ``requires_grad`` are restored afterwards."""
    flags = train_flags(encoder)
    frozen = [p for p in encoder.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        yield
    finally:
        restore_flags(flags)
        for p in frozen:
            p.requires_grad_(True)


def _save_layer(partial_run: PartialRun, fc: nn.Linear, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, config: dict[str, Any] | None,
                classes: Sequence[str], step: int, seconds: float) -> str:
    """An unfinished SGD linear evaluation's state (``checkpoints/linear-partial.pt``):
    the layer ``fc`` and its optimizer, after ``step`` steps and ``seconds`` of training;
    returns its path."""
    from simclr.config import Config
    from simclr.pretrained import classifier_checkpoint

    layer = nn.ModuleDict({"fc": fc})  # the frozen encoder comes from --checkpoint
    return partial_run.save(classifier_checkpoint(
        "linear-partial", layer, config or Config().to_dict(), list(classes), step,
        seconds, {}, optimizer), scaler)


def linear_partial(out: Path | None, settings: dict[str, Any] | None = None) -> PartialRun:
    """Where an unfinished SGD linear evaluation is kept: ``out/checkpoints/linear-partial.pt``."""
    return PartialRun(out, "linear", "linear evaluation", settings or {})


def feature_width(encoder: nn.Module, image_size: int) -> int:
    """The width of what ``encoder`` returns for (B,3,S,S) images: its ``feature_dim``, or
    measured on two blank images in eval mode (raw pixels, a head layer)."""
    if hasattr(encoder, "feature_dim"):
        return int(encoder.feature_dim)
    flags = train_flags(encoder)
    encoder.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
            return int(encoder(torch.zeros(2, 3, image_size, image_size, device=device))
                       .flatten(1).shape[1])
    finally:
        restore_flags(flags)


def _check_linear_eval(protocol: str, run_dir: str | Path | None, batch_size: int,
                       val_fraction: float, epochs: float, lr: float, image_size: int,
                       crop_scale: tuple[float, float], crop_sampler: str) -> None:
    """The linear evaluation's settings, checked before any work (one line each)."""
    if protocol not in ("lbfgs", "sgd"):
        raise SimCLRError(f"--protocol: unknown value {protocol!r} (choose from lbfgs, sgd)")
    _positive(batch_size, "batch-size")
    if protocol == "sgd":
        _positive(epochs, "epochs")
        _positive(lr, "lr")
        crop_flip_config(image_size, crop_scale, crop_sampler)
        return
    if not 0 < val_fraction < 1:
        raise SimCLRError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    if dist.world_size() > 1:
        raise SimCLRError("--protocol lbfgs runs in one process; with several use "
                          "--protocol sgd")
    unfinished = linear_partial(None if run_dir is None else Path(run_dir).expanduser()).path
    if unfinished is not None and unfinished.exists():
        raise SimCLRError(f"{run_dir} holds an unfinished linear evaluation --protocol sgd "
                          f"({unfinished.name}); rerun its own command to continue it, or "
                          "choose another --out")


@dist.process_group()
def run_linear_eval(
    encoder: nn.Module, train: Any, test: Any, run_dir: str | Path | None, *,
    image_size: int, protocol: str = "lbfgs", batch_size: int = 256,
    device: str | torch.device = "auto", precision: str = "auto", workers: int | None = None,
    channels_last: bool = False, seed: int = 0,
    # lbfgs protocol
    l2: float | None = None, l2_grid: Sequence[float] | None = None,
    val_fraction: float = 0.1, max_iter: int = 1000,
    # sgd protocol
    epochs: float = 90, lr: float = 0.1, momentum: float = 0.9,
    crop_scale: tuple[float, float] = (0.08, 1.0), crop_sampler: str = "torchvision",
    verbose: bool = True, config: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None, checkpoint_every: int = 500,
    checkpoint_minutes: float = 30.0, on_step: Callable[[int, Any], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``simclr linear-eval``: a linear classifier on the frozen encoder's h.

    CLI flags: ``--checkpoint CKPT --train DIR --test DIR [--out RUN_DIR]
    [--protocol lbfgs|sgd] [--batch-size 256] [--device auto] [--precision auto]
    [--workers N] [--cache-dir DIR] [--seed 0]``; lbfgs: ``[--l2 LAMBDA]
    [--l2-grid MIN,MAX,COUNT (1e-6,1,13)] [--val-fraction 0.1] [--max-iter 1000]``;
    sgd: ``[--epochs 90] [--lr 0.1] [--momentum 0.9] [--crop-scale 0.08,1.0]
    [--crop-sampler torchvision|official] [--checkpoint-every 500]``: 90 epochs of
    ImageNet survive interruptions, as fine-tuning does (an unfinished training is kept
    in ``--out`` and the same command continues it; results ``status`` 'preempted').

    ``lbfgs`` (default): features of the evaluation transform, computed once, then
    :func:`logistic_regression`. ``sgd``: :func:`linear_eval_sgd`. Writes
    ``linear_eval.json``, ``linear_eval_confusion.png`` and the classifier
    (:func:`save_linear_classifier`, ``config``: the source checkpoint's) under
    ``run_dir`` (``overwrite``: replacing those of an earlier run there); returns the
    results dict.
    """
    _check_linear_eval(protocol, run_dir, batch_size, val_fraction, epochs, lr, image_size,
                       crop_scale, crop_sampler)
    verbose = verbose and dist.is_main()  # rank 0 speaks for all the processes
    num_classes = check_labeled(train, test)
    out = run_folder(run_dir, RESULTS["linear-eval"], overwrite)  # rank 0 writes
    dev, prec = resolve_runtime(device, precision)
    run = _LinearEval(encoder=encoder, train=train, test=test, num_classes=num_classes, out=out,
                      image_size=image_size, batch_size=batch_size, device=dev, precision=prec,
                      channels_last=channels_last, workers=workers, seed=seed, verbose=verbose,
                      config=config, source=source)
    start = time.perf_counter()
    if protocol == "lbfgs":
        fitted = _fit_lbfgs(run, l2, l2_grid, val_fraction, max_iter)
    else:
        fitted = _fit_sgd(run, epochs, lr, momentum, crop_scale, crop_sampler,
                          checkpoint_every, checkpoint_minutes, on_step)
        if fitted.details["status"] == "preempted":
            return {"command": "linear-eval", "protocol": protocol, **fitted.details}
        if not dist.is_main():
            return {"command": "linear-eval", "protocol": protocol, **fitted.details,
                    "rank": dist.rank()}
    return _finish_linear_eval(run, protocol, fitted, start)


@dataclass
class _LinearEval:
    """What the two protocols of :func:`run_linear_eval` share, their inputs checked: the
    frozen encoder, the labeled sets, where it runs, and the run folder (``out``; None:
    nothing is written)."""

    encoder: nn.Module
    train: Any
    test: Any
    num_classes: int
    out: Path | None
    image_size: int
    batch_size: int
    device: torch.device
    precision: str
    channels_last: bool
    workers: int | None
    seed: int
    verbose: bool
    config: dict[str, Any] | None  # the source checkpoint's, stored with the classifier
    source: dict[str, Any] | None  # what the encoder came from, recorded in the results

    def features(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """h float32 (N, D) and labels (N,) of ``images``: the evaluation transform."""
        return extract_features(self.encoder, images, self.image_size, self.batch_size,
                                self.device, self.precision, channels_last=self.channels_last,
                                workers=self.workers)


class _Fitted(NamedTuple):
    """A protocol's linear classifier on h and its test (None where nothing was tested:
    a training stopped by a signal, or another process than rank 0)."""

    details: dict[str, Any]  # the protocol's own part of the results
    scores: torch.Tensor | None  # test scores (M, C) on CPU
    test_y: np.ndarray | None  # test labels (M,)
    linear: nn.Linear  # the layer on h
    sizes: dict[str, int] | None  # num_train, num_test, num_classes (, feature_dim)
    earlier_s: float = 0.0  # training seconds of earlier sessions (a continued SGD run)


def _fit_lbfgs(run: _LinearEval, l2: float | None, l2_grid: Sequence[float] | None,
               val_fraction: float, max_iter: int) -> _Fitted:
    """The transfer protocol (App. B.5): features of the evaluation transform, computed
    once, then :func:`logistic_regression` (lambda ``l2``, or chosen on a held-out split)."""
    train_x, train_y = run.features(run.train)
    test_x, test_y = run.features(run.test)
    details, scores, linear = logistic_regression(
        train_x, train_y, test_x, run.num_classes, l2=l2, l2_grid=l2_grid,
        val_fraction=val_fraction, seed=run.seed, max_iter=max_iter, device=run.device,
        verbose=run.verbose)
    return _Fitted(details, scores, test_y, linear, _sizes(train_x, test_x, run.num_classes))


def _fit_sgd(run: _LinearEval, epochs: float, lr: float, momentum: float,
             crop_scale: tuple[float, float], crop_sampler: str, checkpoint_every: int,
             checkpoint_minutes: float, on_step: Callable[[int, Any], None] | None) -> _Fitted:
    """The ImageNet protocol (App. B.6): :func:`linear_eval_sgd`, its unfinished training
    kept in the run folder with the settings a continuation must match."""
    source, train = run.source or {}, run.train
    settings = {"test_fraction": (source.get("test") or {}).get("fraction"),
                "train": [int(train.num_images), list(train.classes)], "epochs": epochs,
                "batch_size": run.batch_size, "lr": lr, "momentum": momentum,
                "crop": [*crop_scale, crop_sampler], "seed": run.seed,
                "image_size": run.image_size,
                "source": [str(source.get(k)) for k in ("checkpoint", "step", "features")],
                "layer": source.get("layer"), "precision": run.precision,
                "weights": weights_digest(run.encoder)}
    details, scores, test_y, linear = linear_eval_sgd(
        run.encoder, train, run.test, run.num_classes, image_size=run.image_size,
        epochs=epochs, batch_size=run.batch_size, lr=lr, momentum=momentum,
        crop_scale=crop_scale, crop_sampler=crop_sampler, seed=run.seed, device=run.device,
        precision=run.precision, channels_last=run.channels_last, workers=run.workers,
        verbose=run.verbose, partial_run=linear_partial(run.out, settings),
        checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
        on_step=on_step, config=run.config)
    earlier_s = details.pop("earlier_s")  # elapsed_s counts the earlier sessions too
    sizes = None if test_y is None else {"num_train": int(train.num_images),
                                         "num_test": int(len(test_y)),
                                         "num_classes": run.num_classes}
    return _Fitted(details, scores, test_y, linear, sizes, earlier_s)


def _finish_linear_eval(run: _LinearEval, protocol: str, fitted: _Fitted,
                        start: float) -> dict[str, Any]:
    """The results of a tested linear classifier (``start``: when this session's work
    began), written with the classifier (:func:`save_linear_classifier`) and the
    confusion figure into the run folder, if any; returns them."""
    results = {"command": "linear-eval", "protocol": protocol,
               **accuracy_summary(fitted.scores, fitted.test_y), **fitted.sizes,
               **fitted.details, "image_size": run.image_size, "precision": run.precision,
               "seed": run.seed, "elapsed_s": time.perf_counter() - (start - fitted.earlier_s)}
    if run.out is not None:
        results["checkpoint"] = save_linear_classifier(run.encoder, fitted.linear,
                                                       run.image_size, run.config,
                                                       run.train.classes, results, run.out)
        linear_partial(run.out).discard()  # (only an sgd run gets here with one)
    finish_results(results, run.out, "linear_eval", fitted.scores, fitted.test_y, run.train,
                   run.test, run.source)
    log(f"linear eval ({protocol}): top-1 {100 * results['top1']:.2f}%", run.verbose)
    return results


def save_linear_classifier(encoder: nn.Module, linear: nn.Linear, image_size: int,
                           config: dict[str, Any] | None, classes: Sequence[str],
                           results: dict[str, Any], out: Path) -> str | None:
    """``out/checkpoints/linear.pt``: the encoder and the fitted layer, a classifier that
    ``simclr predict`` applies to new images. Only classifiers on h are saved (those on
    a head layer or raw pixels are evaluation baselines); returns the path or None."""
    from simclr.pretrained import classifier_checkpoint, encoder_config, save_classifier

    if not isinstance(encoder, (ResNet, TorchvisionEncoder)):
        log("linear eval: classifier not saved (only classifiers on h are)")
        # An earlier run's classifier there (--overwrite) would pass for this one's.
        earlier = out / CHECKPOINTS / "linear.pt"
        try:
            earlier.unlink(missing_ok=True)
        except OSError as exc:
            raise SimCLRError(f"cannot remove the earlier classifier {earlier}: "
                              f"{exc.strerror}") from None
        return None
    model = Classifier(encoder, len(classes), fc=linear)
    blob = classifier_checkpoint("linear", model, encoder_config(encoder, image_size, config),
                                 list(classes), 0, results["elapsed_s"], results)
    return save_classifier(blob, out, "linear.pt")


def _positive(value: float, flag: str) -> None:
    if not value > 0:
        raise SimCLRError(f"--{flag} must be positive, got {value}")
