"""L2-regularised multinomial logistic regression on fixed features, fitted by L-BFGS.

The classifier of the transfer protocol of Chen et al. 2020 (App. B.8), which
``evaluate.run_linear_eval(protocol="lbfgs")`` applies to center-crop features of the
frozen encoder: full-batch L-BFGS on standardised features, the regularisation chosen
on a stratified held-out split of the training set, then refitted on all of it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simclr.config import MAX_REAL
from simclr.errors import SimCLRError
from simclr.folders import class_members
from simclr.results import Ranked, log, rank_rows, top1_hits

# L-BFGS runs in float64 up to this many feature values (N*D) and logits (N*C); larger
# problems use float32.
FLOAT64_MAX_ELEMENTS = 1 << 26
# Logits computed at once (rows x C): the loss and gradient are summed over blocks of
# rows, since the full batch's logits, softmax and gradient took 2.5 GB at 20k images x
# 5,000 classes in float64 (100k images: ~12 GB). 4M values: 32 MiB a float64 array,
# about three of which the closed-form pass over a block holds (measured: ~100 MB more
# peak memory at any N).
CHUNK_ELEMENTS = 1 << 22


def half_up(fraction: float, count: int, classes: int = 1) -> int:
    """``fraction * count / classes`` rounded half up, computed on the fraction as written
    (0.145 x 100 is 14.5, whose float product 14.4999... would round down)."""
    return math.floor(Fraction(str(fraction)) * count / classes + Fraction(1, 2))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """(fit indices, held-out indices): ``fraction * n_c`` of each class held out, halves
    rounded up in every class (Python's round took 2.5 to 2 and 3.5 to 4: unequal shares).

    Classes with one example stay whole in the fit part; classes with >= 2 examples give
    at least one held-out example. Deterministic in ``seed``; both parts sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for members in class_members(labels, np.unique(labels)):
        if len(members) < 2:
            continue
        n_val = min(len(members) - 1, max(1, half_up(fraction, len(members))))
        held.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    fit = np.ones(len(labels), bool)
    fit[val] = False  # (np.setdiff1d hashed every index: 2 s at 1M images)
    return np.flatnonzero(fit), val


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, *, max_iter: int = 1000,
    tol: float | None = None, init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Full-batch L-BFGS fit of a multinomial logistic regression (App. B.8).

    Minimises  mean_i CE(W x_i + b, y_i) + (l2 / 2) ||W||^2  (the bias is not penalised)
    over W (C, D), b (C,), with strong-Wolfe line search, in the dtype/device of ``x``
    (N, D); y (N,) int64. ``init`` warm-starts from a previous (W, b). This equals
    scikit-learn's ``LogisticRegression(C=1 / (l2 * N))`` (whose objective is
    C * sum_i CE + ||W||^2 / 2: divide it by C * N) for 3+ classes.

    Stops when the largest gradient entry is below ``tol``, when the objective stops
    changing in floating point, or after ``max_iter`` iterations. ``tol`` defaults to
    1e-3 * l2, within [1e-10, 1e-6] in float64 and [1e-7, 1e-5] in float32: the penalty's
    curvature is all that ties a small gradient to a nearby optimum (|W - W*| <= |g| /
    l2), so a fixed 1e-6 stopped a weakly penalised fit of separable features early (at
    l2 = 1e-6: test probabilities 0.08 off the optimum's; 0.001 now). scikit-learn's
    default, 1e-4 on its own scaling of the objective, is 1e-4 * l2 here.
    Returns (W, b, info) with info = {"iterations", "loss", "max_iter", "capped"};
    ``capped``: it stopped at ``max_iter`` iterations (or ``2 * max_iter`` evaluations)
    before either test said it had converged, which L-BFGS does silently.
    """
    d = x.shape[1]
    if tol is None:
        low, high = (1e-10, 1e-6) if x.dtype == torch.float64 else (1e-7, 1e-5)
        tol = min(high, max(low, 1e-3 * l2))
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

    def closure() -> torch.Tensor:
        opt.zero_grad()
        return objective(x, y, w, b, l2, backward=True)

    opt.step(closure)
    with torch.no_grad():
        final = objective(x, y, w, b, l2).item()
    iterations, evals = (int(opt.state[w].get(key, 0)) for key in ("n_iter", "func_evals"))
    info = {"iterations": iterations, "loss": final, "max_iter": max_iter,
            "capped": iterations >= max_iter or evals >= 2 * max_iter}
    return w.detach(), b.detach(), info


def row_blocks(rows: int, num_classes: int) -> list[slice]:
    """Blocks of ``rows`` whose logits (block x ``num_classes``) stay within
    :data:`CHUNK_ELEMENTS` values (at least one row each)."""
    step = max(1, CHUNK_ELEMENTS // max(1, num_classes))
    return [slice(start, start + step) for start in range(0, max(rows, 1), step)]


def objective(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, l2: float,
              backward: bool = False) -> torch.Tensor:
    """mean_i CE(W x_i + b, y_i) + (l2 / 2) ||W||^2 (detached), by
    :func:`loss_and_gradient`; ``backward`` adds its gradient to ``w.grad`` and ``b.grad``
    (set where None), as ``loss.backward()`` did, without an autograd graph."""
    loss, grad_w, grad_b = loss_and_gradient(x, y, w, b, l2, gradient=backward)
    if backward:
        for param, grad in ((w, grad_w), (b, grad_b)):
            param.grad = grad if param.grad is None else param.grad + grad  # type: ignore[operator]  # (computed)
    return loss


def loss_and_gradient(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, l2: float,
    gradient: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(mean_i CE(W x_i + b, y_i) + (l2 / 2) ||W||^2, its gradient in W (C, D) and b (C,)
    or None, None), summed over :func:`row_blocks` so memory stays bounded whatever N x C.

    The gradient in closed form from each block's one forward pass: d loss / d logits =
    (softmax - one-hot) / N, so grad W = sum (P - Y)^T X / N + l2 W, grad b = sum (P - Y)
    / N (the bias is not penalised). Without autograd's graph and backward pass
    (through cross-entropy and addmm) a fit took 7-40% less time (measured 2026-12-05,
    one thread, float32 and float64 fits of 10-45k x 128-512 features). The loss is
    computed as ``F.cross_entropy`` computes it (log-softmax, then NLL), one block (the
    usual sizes) as the one expression it always was: those losses are unchanged to the
    bit."""
    with torch.no_grad():
        w, b = w.detach(), b.detach()
        blocks = row_blocks(len(x), w.shape[0])
        loss = 0.5 * l2 * w.pow(2).sum()
        grad_w, grad_b = torch.mul(w, l2), torch.zeros_like(b)
        for rows in blocks:
            log_probs = torch.log_softmax(torch.addmm(b, x[rows], w.T), dim=1)
            labels = y[rows]
            loss = loss + (F.nll_loss(log_probs, labels) if len(blocks) == 1 else
                           F.nll_loss(log_probs, labels, reduction="sum") / len(x))
            if gradient:
                err = log_probs.exp_()  # (softmax, in place: the log-probabilities are spent)
                err.scatter_add_(1, labels[:, None], err.new_full((len(labels), 1), -1.0))
                err.div_(len(x))
                grad_w.addmm_(err.T, x[rows])
                grad_b.add_(err.sum(0))
    return (loss, grad_w, grad_b) if gradient else (loss, None, None)


def accuracy_and_loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                      b: torch.Tensor) -> tuple[float, float]:
    """(top-1 accuracy as every protocol counts it, a tie against the label; mean
    cross-entropy) of the classifier (W, b) on rows x (N, D), labels y (N,), computed
    over :func:`row_blocks` (no N x C logits at once)."""
    correct, loss = 0, 0.0
    with torch.no_grad():
        for rows in row_blocks(len(x), w.shape[0]):
            logits = torch.addmm(b, x[rows], w.T)
            correct += int(top1_hits(logits, y[rows]))  # (a tie with the label: a miss)
            loss += F.cross_entropy(logits, y[rows], reduction="sum").item()
    return correct / len(x), loss / len(x)


def default_l2_grid(lo: float = 1e-6, hi: float = 1.0, count: int = 13) -> list[float]:
    """Regularisation strengths tried by the transfer protocol: log-spaced in [lo, hi].

    The penalty (l2/2)·||W||² is added to the *mean* cross-entropy on standardised
    features, so a strength means the same for any data-set size; the default is two
    values per decade from 1e-6 (nearly unregularised) to 1 (weights nearly zero). The paper
    searched 45 values in 1e-6..1e5 for its own, unstated scaling of the objective.
    """
    if not 1 <= count <= 1000 or not 0 < lo <= hi <= MAX_REAL:
        raise SimCLRError(f"--l2-grid: need 0 < min <= max <= {MAX_REAL:g} and 1 <= count "
                          f"<= 1000, got {lo},{hi},{count}")
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


class Standardizer:
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
        with torch.random.fork_rng(devices=[]):  # (its default init: not the caller's RNG)
            layer = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(scaled.float().cpu())
            layer.bias.copy_((b - scaled @ self.mean).float().cpu())
        return layer


def check_l2(value: Any, flag: str = "--l2") -> None:
    """An L2 penalty: a finite number >= 0 (l2 -1 was a whole fit that ended 'diverged';
    a bool is no number)."""
    if isinstance(value, bool) or not (isinstance(value, numbers.Real)
                                       and math.isfinite(value) and float(value) >= 0):
        raise SimCLRError(f"{flag} must be a non-negative number, got {value}")


def _checked_inputs(
    train_x: Any, train_y: Any, test_x: Any, test_y: Any, num_classes: int,
    l2: float | None, l2_grid: Sequence[float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`logistic_regression`'s arrays (tensors taken as their numpy arrays; no
    ``test_y``: None), its labels in 0..num_classes - 1 and its penalties checked
    before any fit: a label past the classes was torch's IndexError deep in the fit (a
    test label past them a miss without a word)."""
    arrays = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
              for t in (train_x, train_y, test_x, [] if test_y is None else test_y)]
    for labels in arrays[1], arrays[3]:
        whole = np.issubdtype(labels.dtype, np.integer)
        if labels.size and (not whole or labels.min() < 0 or labels.max() >= num_classes):
            got = f"{labels.min()}..{labels.max()}" if whole else f"{labels.dtype} values"
            raise SimCLRError(f"the labels must be whole class numbers in "
                              f"0..{num_classes - 1}, got {got}")
    if l2 is not None:
        check_l2(l2)
    for value in l2_grid or []:
        check_l2(value, "--l2-grid")
    return arrays[0], arrays[1], arrays[2], None if test_y is None else arrays[3]


def logistic_regression(
    train_x: np.ndarray | torch.Tensor, train_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor, num_classes: int, *,
    l2: float | None = None, l2_grid: Sequence[float] | None = None,
    val_fraction: float = 0.1, seed: int = 0, max_iter: int = 1000,
    dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
    verbose: bool = False, tol: float | None = None, test_y: np.ndarray | None = None,
) -> tuple[dict[str, Any], torch.Tensor | Ranked, nn.Linear]:
    """The transfer protocol's classifier: choose lambda on a held-out split, refit, predict.

    train_x (N, D), train_y (N,), test_x (M, D). Features are standardised with the
    mean/std of the data each model is fitted on. Lambda: ``l2`` if given, else the
    ``l2_grid`` value (default :func:`default_l2_grid`) with the best accuracy on a
    stratified held-out ``val_fraction`` of the training set (ties -> the lower held-out
    cross-entropy); fits run from the strongest penalty down, each warm-started from the
    previous solution. The final model is refitted on the whole training set.
    ``dtype`` None: float64 up to ``FLOAT64_MAX_ELEMENTS`` feature values (N x D) and
    logits (N x C), else float32.

    Returns (summary dict, test log-probabilities (M, C) on CPU in the fit's dtype, the
    classifier as a float32 CPU ``nn.Linear`` on unstandardised features: the
    standardisation folded into its weights, W / std and b - (W / std) mean). Logs, not
    probabilities: a class ~100 logits below the best had a float32 probability of
    exactly 0, tied with every other such class, and top-5 counted it a miss.
    ``test_y`` (M,) given: those log-probabilities ranked against it instead
    (:class:`simclr.results.Ranked`, what the results need of them), each block as it is
    computed: the (M, C) matrix took 2 GB at 100k test images x 5,000 classes.
    """
    if not 0 < val_fraction < 1:
        raise SimCLRError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    train_x, train_y, test_x, test_y = _checked_inputs(train_x, train_y, test_x, test_y,
                                                       num_classes, l2, l2_grid)
    if dtype is None:
        small = max(train_x.size, len(train_x) * num_classes) <= FLOAT64_MAX_ELEMENTS
        dtype = torch.float64 if small else torch.float32
    dev = torch.device(device)
    x_all = torch.as_tensor(train_x, device=dev).to(dtype)
    y_all = torch.as_tensor(train_y, device=dev).long()
    summary: dict[str, Any] = {"dtype": str(dtype).replace("torch.", "")}
    fit = partial(fit_logistic_regression, num_classes=num_classes, max_iter=max_iter, tol=tol)
    init = None
    if l2 is None:
        grid = sorted(l2_grid if l2_grid is not None else default_l2_grid(), reverse=True)
        if not grid:  # (--l2-grid has COUNT >= 1; a Python caller may pass [])
            raise SimCLRError("the l2 grid is empty: give at least one value, or --l2 VALUE")
        fit_idx, val_idx = stratified_split(train_y, val_fraction, seed)
        if len(val_idx) == 0:
            raise SimCLRError("the training set is too small for a held-out split "
                              "(every class has one image); give --l2 VALUE")
        l2, init, held_out = _choose_l2(x_all, y_all, fit_idx, val_idx, grid, fit, verbose)
        summary.update(held_out)
    # The final model: refitted on the whole training set (warm-started from the chosen fit).
    norm = Standardizer(x_all)
    x_all = norm(x_all)
    w, b, info = fit(x_all, y_all, l2=float(l2), init=init)
    if info["capped"]:  # (the held-out fits' are said by _choose_l2)
        log(f"note: the final fit (l2 {l2:.3g}) stopped at --max-iter {max_iter} before "
            "converging; a larger --max-iter fits it further", verbose)
    if not bool(torch.isfinite(w).all() and torch.isfinite(b).all()):  # (a NaN layer saved
        raise SimCLRError(f"the linear classifier's fit at l2 {l2:g} diverged: its "  # with
                          "weights are not finite")  # a top-1 of 0% otherwise)
    train_acc = accuracy_and_loss(x_all, y_all, w, b)[0]
    del x_all
    x_test = norm(torch.as_tensor(test_x, device=dev).to(dtype))

    def test_log_probs(rows: slice) -> torch.Tensor:
        return torch.log_softmax(torch.addmm(b, x_test[rows], w.T), dim=1).cpu()

    blocks = row_blocks(len(x_test), num_classes)
    log_probs: torch.Tensor | Ranked = (
        torch.cat([test_log_probs(rows) for rows in blocks]) if test_y is None else
        Ranked.join([rank_rows(test_log_probs(rows), test_y[rows]) for rows in blocks],
                    num_classes))
    summary.update(l2=float(l2), iterations=info["iterations"], train_top1=train_acc)
    return summary, log_probs, norm.fold(w, b)


def _choose_l2(
    x_all: torch.Tensor, y_all: torch.Tensor, fit_idx: np.ndarray, val_idx: np.ndarray,
    grid: list[float], fit: Callable[..., tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    verbose: bool,
) -> tuple[float, tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """Lambda chosen on a held-out split (App. B.8): of the ``grid`` (strongest first, each
    fit on the ``fit_idx`` rows warm-started from the previous), the one most accurate
    on the ``val_idx`` rows (ties -> lower held-out cross-entropy). x_all (N, D), y_all
    (N,); ``fit``: :func:`fit_logistic_regression` with the problem's settings.

    Returns (lambda, its fit (W (C, D), b (C,)) to warm-start the refit, the held-out
    accuracies and losses for the summary). Each fit's features are standardised with
    the fit rows' mean/std."""
    dev = x_all.device
    fit_t, val_t = torch.as_tensor(fit_idx, device=dev), torch.as_tensor(val_idx, device=dev)
    norm = Standardizer(x_all[fit_t])
    x_fit, x_val = norm(x_all[fit_t]), norm(x_all[val_t])
    val_acc, val_loss, best, solutions = {}, {}, (-1.0, 0.0), {}
    # Keys of 3 significant digits, more where two values of the grid would share one
    digits = next((p for p in range(3, 18) if len({f"{v:.{p}g}" for v in grid}) ==
                   len(set(grid))), 17)
    init, capped = None, []
    for lam in grid:
        w, b, info = fit(x_fit, y_all[fit_t], l2=lam, init=init)
        if info.get("capped"):
            capped.append(info["max_iter"])
        init = solutions[lam] = (w, b)
        acc, loss = accuracy_and_loss(x_val, y_all[val_t], w, b)
        val_acc[f"{lam:.{digits}g}"], val_loss[f"{lam:.{digits}g}"] = acc, loss
        log(f"  l2 {lam:.3g}: held-out top-1 {100 * acc:.2f}%, loss {loss:.4f}", verbose)
        if (acc, -loss) > best:  # ties in accuracy (common): lower held-out loss
            best, l2 = (acc, -loss), lam
    held_out = {"val_accuracy": val_acc, "val_loss": val_loss, "val_top1": best[0],
                "num_val": int(len(val_idx))}
    if len(grid) > 1 and l2 in (grid[0], grid[-1]):  # the best may lie beyond the grid
        log(f"note: the held-out set ({len(val_idx)} images) chose l2 {l2:.3g}, the "
            f"{'largest' if l2 == grid[0] else 'smallest'} of the grid; widen it "
            "(--l2-grid MIN,MAX,COUNT) or give --l2", verbose)
    if capped:  # (their held-out accuracies, hence the choice, may be a cap's)
        log(f"note: {len(capped)} of the {len(grid)} held-out fits stopped at --max-iter "
            f"{capped[0]} before converging; a larger --max-iter fits them further",
            verbose)
    # Returning frees the standardised copies: big problems keep one at a time.
    return l2, solutions[l2], held_out
