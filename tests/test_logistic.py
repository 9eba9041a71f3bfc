"""L2-regularised logistic regression by L-BFGS: the fit, the held-out choice of lambda."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from simclr import logistic
from simclr.errors import SimCLRError
from simclr.logistic import fit_logistic_regression, logistic_regression, stratified_split

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_a_weakly_penalised_fit_of_separable_features_reaches_its_optimum():
    """At the grid's smallest l2 on separable features (a small transfer set in 2048
    dimensions) the optimum has large weights and the gradient is tiny far from it: the
    default tolerance stopped 0.08 off in test probabilities (found by an audit)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    n, d, c, l2 = 40, 8, 3, 1e-6
    y = np.arange(n) % c
    x = rng.normal(size=(n, d))
    x[np.arange(n), y] += 3
    test = rng.normal(size=(30, d))
    test[np.arange(30), np.arange(30) % c] += 1
    w, b, _ = fit_logistic_regression(torch.as_tensor(x), torch.as_tensor(y), c, l2)
    ref = LogisticRegression(C=1 / (l2 * n), tol=1e-14, max_iter=100_000).fit(x, y)
    probs = torch.softmax(torch.as_tensor(test) @ w.T + b, 1).numpy()
    assert np.abs(probs - ref.predict_proba(test)).max() < 5e-3


def test_logistic_regression_protocol_on_a_separable_problem():
    x, y = blobs(30, 6, 4, spread=0.3, seed=1)
    xt, yt = blobs(10, 6, 4, spread=0.3, seed=1)  # same centers (same seed), new noise
    xt = xt + np.random.default_rng(9).normal(scale=0.01, size=xt.shape)
    before = torch.get_rng_state()
    summary, log_probs, linear = logistic_regression(x, y, xt, 4, l2_grid=[1e-4, 1e-2, 1.0],
                                                     seed=0)
    probs = log_probs.exp().float()
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG left alone
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


def test_the_final_fit_is_scikit_learns_on_features_standardised_by_the_training_set():
    """The refit (l2 given): the whole training set's mean and std (ddof 1) standardise
    it and the test rows alike (a test set of other statistics: no leakage), then the
    penalised fit is scikit-learn's with C = 1 / (l2 N). The penalty is on standardised
    weights, so the std used changes the optimum."""
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(20, 5, 3, spread=3.0, seed=6)
    x = x * np.array([1.0, 10.0, 0.1, 3.0, 1.0])  # features of unequal scale
    xt = x[::3] * 1.5 + 2.0  # test statistics unlike the training ones
    l2 = 0.05
    summary, log_probs, linear = logistic_regression(x, y, xt, 3, l2=l2, tol=1e-12)
    mean, std = x.mean(0), x.std(0, ddof=1)
    ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-12, max_iter=10_000)
    ref.fit((x - mean) / std, y)
    expected = ref.predict_log_proba((xt - mean) / std)
    np.testing.assert_allclose(log_probs.numpy(), expected, atol=1e-6)
    assert summary["train_top1"] == (ref.predict((x - mean) / std) == y).mean()


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
    assert summary["val_top1"] == pytest.approx(best)  # the chosen value's, not the last fit's


def test_grid_values_that_round_alike_keep_a_row_each():
    """The held-out results are keyed by 3 significant digits, more where that would
    merge two values of the grid (4 fits gave one row, the chosen value's not its own)."""
    x, y = blobs(10, 3, 3, spread=1.0, seed=4)
    grid = [1e-3, 1.001e-3, 1.0004e-3, 0.5]
    summary, _, _ = logistic_regression(x, y, x, 3, l2_grid=grid, seed=0)
    assert set(summary["val_accuracy"]) == {"0.001", "0.001001", "0.0010004", "0.5"}
    assert set(summary["val_loss"]) == set(summary["val_accuracy"])


def test_a_fit_that_overflows_is_an_error_not_a_nan_classifier():
    """(The flags stop at l2 = 1e6; the library call takes any: 1e300 overflowed the
    penalty, and a NaN layer was saved with a top-1 of 0%.)"""
    x, y = blobs(10, 3, 3, spread=1.0, seed=4)
    with pytest.raises(SimCLRError, match="fit at l2 1e.300 diverged"):
        logistic_regression(x, y, x, 3, l2=1e300)


def test_accuracy_ties_are_broken_by_held_out_loss():
    x, y = blobs(20, 4, 3, spread=0.2, seed=2)  # separable: every lambda is 100% right
    summary, _, _ = logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1e-1, 10.0], seed=0)
    assert set(summary["val_accuracy"].values()) == {1.0}
    losses = summary["val_loss"]
    assert f"{summary['l2']:.3g}" == min(losses, key=losses.get)
    # a strong penalty is under-confident: the weakest one has the lowest held-out loss
    assert summary["l2"] == 1e-3 and losses["10"] > losses["0.1"] > losses["0.001"]


def test_an_accuracy_tie_goes_to_the_lowest_held_out_loss_wherever_it_lies(monkeypatch):
    """Above, the lowest loss is also the last value fitted: here it lies in the middle of
    the grid, so neither "the last tie wins" nor "the highest loss wins" passes."""
    table = {10.0: (1.0, 0.30), 0.1: (1.0, 0.10), 1e-3: (1.0, 0.20)}  # l2: (top-1, loss)

    def fit(x, y, l2, init=None):  # a "solution" that names its l2, for the table
        return torch.full((1, 1), l2, dtype=torch.float64), torch.zeros(1), {}

    monkeypatch.setattr(logistic, "accuracy_and_loss", lambda x, y, w, b: table[float(w[0, 0])])
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.tensor([0, 1] * 5)
    l2, _, held = logistic._choose_l2(x, y, np.arange(6), np.arange(6, 10),
                                      sorted(table, reverse=True), fit, False)
    assert l2 == 0.1 and held["val_loss"] == {"10": 0.3, "0.1": 0.1, "0.001": 0.2}


def test_a_full_tie_keeps_the_strongest_penalty(monkeypatch):
    """Held-out accuracy and loss equal for every lambda (the same model): the first
    fitted, the strongest penalty, is kept; a later equal one does not displace it."""
    def fit(x, y, l2, init=None):
        return torch.full((1, 1), l2, dtype=torch.float64), torch.zeros(1), {}

    monkeypatch.setattr(logistic, "accuracy_and_loss", lambda x, y, w, b: (0.5, 0.25))
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.tensor([0, 1] * 5)
    l2, _, _ = logistic._choose_l2(x, y, np.arange(6), np.arange(6, 10), [10.0, 0.1, 1e-3],
                                   fit, False)
    assert l2 == 10.0


def test_constant_features_are_standardised_to_zero_not_divided_by_zero():
    """A feature constant over the fit split (a dead ReLU channel) has std 0: it is
    centred and left unscaled (std taken as 1), so it maps to 0 and the fit and the folded
    layer stay finite; nearly constant (std below 1e-6 of the largest) counts as constant."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(30, 2)), np.full((30, 1), 3.0),
                        3.0 + 1e-9 * rng.normal(size=(30, 1))], axis=1)
    norm = logistic.Standardizer(torch.as_tensor(x))
    z = norm(torch.as_tensor(x))
    assert torch.equal(norm.std[2:], torch.ones(2, dtype=torch.float64))
    assert bool(torch.isfinite(z).all()) and z[:, 2:].abs().max() < 1e-8
    with warnings.catch_warnings():  # one row has no std (torch warned of its dof): 1s
        warnings.simplefilter("error")
        one = logistic.Standardizer(torch.as_tensor(x[:1]))
    assert torch.equal(one.std, torch.ones(4, dtype=torch.float64))
    y = (x[:, 0] > 0).astype(np.int64)
    summary, log_probs, linear = logistic_regression(x, y, x, 2, l2=1e-2)
    assert bool(torch.isfinite(log_probs).all())
    assert bool(torch.isfinite(linear.weight).all() and torch.isfinite(linear.bias).all())
    assert summary["train_top1"] > 0.9


def test_a_choice_at_the_edge_of_the_grid_is_pointed_out(capsys):
    x, y = blobs(20, 4, 3, spread=0.2, seed=2)  # the weakest penalty wins (above)
    logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1e-1, 10.0], seed=0, verbose=True)
    assert "chose l2 0.001, the smallest of the grid; widen it" in capsys.readouterr().err
    logistic_regression(x, y, x, 3, l2_grid=[1e-3], seed=0, verbose=True)
    assert "of the grid" not in capsys.readouterr().err  # a grid of one: the user's choice


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_the_held_out_fraction_must_leave_both_parts_something(fraction):
    x, y = blobs(10, 3, 2, spread=1.0, seed=0)
    with pytest.raises(SimCLRError, match=rf"--val-fraction must lie in \(0, 1\), got "
                                          rf"{fraction}"):
        logistic_regression(x, y, x, 2, val_fraction=fraction)


def test_inputs_are_checked_before_any_fit_and_tensors_are_taken():
    """Labels past the classes were torch's IndexError inside the fit, a negative or NaN
    l2 a whole fit ending 'diverged', and torch tensors (as the kNN functions take)
    a TypeError from comparing a method; a float32 numpy l2 is a number."""
    x, y = blobs(10, 4, 3, spread=0.2, seed=0)
    with pytest.raises(SimCLRError, match=r"^the labels must be whole class numbers in 0\.\.1, "
                                          r"got 0\.\.2$"):
        logistic_regression(x, y, x, 2, l2=0.1)
    with pytest.raises(SimCLRError, match=r"^the labels must be whole class numbers in "
                                          r"0\.\.2, got <U1 values$"):  # (numpy's error)
        logistic_regression(x, np.array(list("abc"))[y], x, 3, l2=0.1)
    with pytest.raises(SimCLRError, match=r"^the labels must be whole class numbers in "
                                          r"0\.\.2, got 7\.\.7$"):  # (each a miss, unsaid)
        logistic_regression(x, y, x, 3, l2=0.1, test_y=np.full(len(x), 7))
    # a negative label (the unlabeled -1) and float labels are no class numbers either
    for labels, shown in ((np.where(y == 2, -1, y), r"-1\.\.1"),
                          (y.astype(np.float64), r"float64 values")):
        with pytest.raises(SimCLRError, match=rf"^the labels must be whole class numbers "
                                              rf"in 0\.\.2, got {shown}$"):
            logistic_regression(x, labels, x, 3, l2=0.1)
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(SimCLRError, match=r"^--l2 must be a non-negative number, got "):
            logistic_regression(x, y, x, 3, l2=bad)
        with pytest.raises(SimCLRError, match=r"^--l2-grid must be a non-negative number, "):
            logistic_regression(x, y, x, 3, l2_grid=[0.1, bad])
    summary, log_probs, _ = logistic_regression(torch.as_tensor(x), torch.as_tensor(y),
                                                torch.as_tensor(x), 3, l2=0.1)
    expected = logistic_regression(x, y, x, 3, l2=0.1)
    assert summary == expected[0] and torch.equal(log_probs, expected[1])
    graph = torch.as_tensor(x).requires_grad_()  # (an encoder's output: numpy refuses it)
    assert logistic_regression(graph, y, graph, 3, l2=0.1)[0] == expected[0]
    assert logistic_regression(x, y, x, 3, l2=np.float32(0.1))[0]["l2"] == pytest.approx(0.1)
    assert logistic_regression(x, y, x, 3, l2=0.0)[0]["l2"] == 0.0  # (no penalty: allowed)


def test_an_empty_grid_is_refused():
    """A Python caller's empty grid chose no l2 and met an UnboundLocalError."""
    x, y = blobs(10, 4, 2, spread=0.2, seed=0)
    with pytest.raises(SimCLRError, match="the l2 grid is empty"):
        logistic_regression(x, y, x, 2, l2_grid=[], seed=0)


def test_a_fit_stopped_by_max_iter_is_pointed_out(capsys):
    """L-BFGS stops at --max-iter silently: a run at the cap (results: "iterations":
    1000) read as converged. The final fit and the held-out ones, counted, are said."""
    x, y = blobs(20, 4, 3, spread=2.0, seed=2)
    summary, _, _ = logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1e-1], seed=0, max_iter=2,
                                        verbose=True)
    err = capsys.readouterr().err
    assert summary["iterations"] == 2
    assert "note: 2 of the 2 held-out fits stopped at --max-iter 2 before converging; a " \
        "larger --max-iter fits them further" in err
    assert f"note: the final fit (l2 {summary['l2']:.3g}) stopped at --max-iter 2 before " \
        "converging; a larger --max-iter fits it further" in err
    summary, _, _ = logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1e-1], seed=0, verbose=True)
    assert summary["iterations"] < 1000 and "--max-iter" not in capsys.readouterr().err


def test_a_fit_stopped_by_its_evaluation_budget_is_capped_too():
    """Badly scaled features (unstandardised, x1000) make the line search spend several
    evaluations per step, so L-BFGS runs out of its 2 * max_iter evaluations before
    max_iter steps: stopped, not converged (the gradient, computed here in numpy, is far
    from zero), so ``capped``, as the step cap says it."""
    rng = np.random.default_rng(0)
    x, y, l2, c = rng.normal(size=(30, 4)) * 1000, np.arange(30) % 3, 1e-3, 3
    w, b, info = fit_logistic_regression(torch.as_tensor(x), torch.as_tensor(y), c, l2,
                                         max_iter=3)
    w, b = w.numpy(), b.numpy()
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad_w = (p - np.eye(c)[y]).T @ x / len(y) + l2 * w
    assert np.abs(grad_w).max() > 1e-3  # far from converged
    assert info["capped"] and info["iterations"] < 3  # (the evaluations ran out first)


def test_top5_ranks_classes_whose_probability_underflows():
    """The test scores are log-probabilities: float32 probabilities of classes 106 and
    152 logits below the best were exactly 0, tied with every class below them, and
    top-5 counted labels ranked 4th and 5th as misses (top-5 0 here, not 2/3)."""
    from simclr.results import topk_accuracy

    x = np.repeat(np.arange(8.0), 10)[:, None] + np.random.default_rng(0).normal(
        scale=0.05, size=(80, 1))  # classes 0..7 along a line; tests far left of 0
    y = np.repeat(np.arange(8), 10)
    _, log_probs, _ = logistic_regression(x, y, np.full((3, 1), -3.0), 8, l2=1e-5)
    assert log_probs.dtype == torch.float64  # (the fit's)
    assert log_probs[0].argsort(descending=True).tolist() == list(range(8))
    assert (log_probs[0, 3:5].exp().float() == 0).all()  # (as the probabilities were)
    assert topk_accuracy(log_probs, [3, 4, 5], (1, 5)) == [0.0, 2 / 3]


def test_held_out_and_train_accuracy_count_a_tie_against_the_label():
    """accuracy_and_loss (the held-out accuracy choosing l2, train_top1) took argmax: a
    zero classifier's ties all went to class 0, its images counted hits."""
    x, y = torch.randn(9, 2, dtype=torch.float64), torch.tensor([0, 1, 2] * 3)
    acc, loss = logistic.accuracy_and_loss(x, y, torch.zeros(3, 2, dtype=torch.float64),
                                           torch.zeros(3, dtype=torch.float64))
    assert acc == 0.0 and loss == pytest.approx(math.log(3))


def test_l2_grid_flag():
    assert logistic.parse_l2_grid("1e-6,1,13") == pytest.approx(
        [10 ** (-6 + i / 2) for i in range(13)], rel=1e-9)
    assert logistic.parse_l2_grid("0.01,0.01,1") == [0.01]
    for bad in ("1e-6,1", "a,b,c", "1,1e-6,3", "0,1,3", "1e-6,1,13,5"):
        with pytest.raises(SimCLRError, match="--l2-grid"):
            logistic.parse_l2_grid(bad)
    for bad in ("1e-6,1,1001", "1e-6,2e6,3", "1e-6,1,0"):  # count and max within bounds
        with pytest.raises(SimCLRError, match="--l2-grid: need 0 < min <= max <= 1e"):
            logistic.parse_l2_grid(bad)
    assert len(logistic.parse_l2_grid("1e-6,1e6,1000")) == 1000


def test_stratified_split_is_per_class_and_deterministic():
    labels = np.repeat([0, 1, 2], [20, 10, 1])
    fit, val = stratified_split(labels, 0.1, seed=4)
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == len(labels)
    fit2, val2 = stratified_split(labels, 0.1, seed=4)
    np.testing.assert_array_equal(val, val2)
    _, val3 = stratified_split(labels, 0.1, seed=5)
    assert not np.array_equal(val, val3)
    # A half rounds up in every class (round-half-to-even held out 2 of 10 and 4 of 14)
    _, val = stratified_split(np.repeat([0, 1], [10, 14]), 0.25, seed=0)
    assert np.bincount(np.repeat([0, 1], [10, 14])[val]).tolist() == [3, 4]
    # a class of one image draws no permutation: the other classes' split is unchanged
    _, with_one = stratified_split(np.repeat([0, 1, 2], [1, 10, 14]), 0.25, seed=0)
    np.testing.assert_array_equal(with_one - 1, val)
    # ... as the fraction is written: 0.145 x 100 is 14.5 (the float product 14.4999...)
    _, val = stratified_split(np.repeat([0], [100]), 0.145, seed=0)
    assert len(val) == 15


def test_stratified_split_holds_out_one_of_two_and_keeps_one_in_the_fit():
    """A class of two examples still gives one to the held-out part, and a fraction that
    would hold a whole class out leaves one of its examples to fit on."""
    labels = np.array([0, 0] + [1] * 10)
    _, val = stratified_split(labels, 0.1, seed=0)
    assert sorted(labels[val].tolist()) == [0, 1]
    labels = np.array([0, 0, 1, 1, 1])
    fit, val = stratified_split(labels, 0.9, seed=0)
    assert sorted(labels[fit].tolist()) == [0, 1] and sorted(labels[val].tolist()) == [0, 1, 1]


def test_the_held_out_split_is_that_of_earlier_versions():
    """Pinned (a regularisation chosen on it is reproduced by the seed): classes in no
    order, some without images."""
    import hashlib

    labels = np.abs(np.random.default_rng(11).choice(
        [c for c in range(-1, 40) if c not in (3, 17, 39)], 3000))
    fit, val = stratified_split(labels, 0.15, seed=3)
    digest = [hashlib.sha256(a.astype(np.int64).tobytes()).hexdigest()[:16] for a in (fit, val)]
    assert digest == ["cd0507fe115b7cc1", "402ad074060c5a6f"]

def test_fixed_l2_skips_the_search_and_tiny_sets_need_it():
    x, y = blobs(1, 3, 3, spread=0.1, seed=0)  # one image per class: no held-out split
    with pytest.raises(SimCLRError, match="--l2"):
        logistic_regression(x, y, x, 3)
    summary, probs, _ = logistic_regression(x, y, x, 3, l2=1e-3)
    assert set(summary) == {"dtype", "l2", "iterations", "train_top1"}
    assert summary["l2"] == 1e-3
    assert (probs.argmax(1).numpy() == y).all()
    _, probs, _ = logistic_regression(x, y, x[:0], 3, l2=1e-3)  # no test rows: none scored
    assert probs.shape == (0, 3)


def test_the_objective_summed_over_row_blocks_equals_the_full_batch(monkeypatch):
    """Loss and gradient in blocks of rows (bounded memory for N x C logits) are the
    full batch's to rounding, in float64."""
    x, y = blobs(30, 6, 5, spread=2.0, seed=1)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    g = torch.Generator().manual_seed(0)
    w0, b0 = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, dtype=x.dtype)

    def loss_and_grads(chunk):
        monkeypatch.setattr(logistic, "CHUNK_ELEMENTS", chunk)
        w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        loss = logistic.objective(x, y, w, b, 0.03, backward=True)
        return loss.item(), w.grad, b.grad

    whole = loss_and_grads(1 << 22)
    assert len(logistic.row_blocks(150, 5)) == 1
    expected = (torch.nn.functional.cross_entropy(torch.addmm(b0, x, w0.T), y)
                + 0.015 * w0.pow(2).sum())
    assert whole[0] == expected.item()  # one block: the expression as it always was
    for chunk, count in ((5 * 7, 22), (4, 150)):  # blocks of 7 rows (the last 3), of 1 row
        loss, grad_w, grad_b = loss_and_grads(chunk)
        assert len(logistic.row_blocks(150, 5)) == count
        assert loss == pytest.approx(whole[0], rel=1e-12, abs=0)
        torch.testing.assert_close(grad_w, whole[1], rtol=0, atol=1e-12)
        torch.testing.assert_close(grad_b, whole[2], rtol=0, atol=1e-12)
    # a whole fit in blocks: the same classifier
    monkeypatch.setattr(logistic, "CHUNK_ELEMENTS", 1 << 22)
    summary, probs, _ = logistic_regression(x.numpy(), y.numpy(), x.numpy()[:9], 5)
    monkeypatch.setattr(logistic, "CHUNK_ELEMENTS", 5 * 7)
    blocked, blocked_probs, _ = logistic_regression(x.numpy(), y.numpy(), x.numpy()[:9], 5)
    assert blocked["l2"] == summary["l2"] and blocked["dtype"] == "float64"
    torch.testing.assert_close(blocked_probs, probs, rtol=0, atol=1e-5)


def test_many_classes_choose_float32(monkeypatch):
    """float64 only while both the features (N x D) and the logits (N x C) are small:
    20k images x 5,000 classes of 128-d features took 2.5 GB in float64."""
    x, y = blobs(10, 4, 8, spread=1.0, seed=0)  # N x D = 320, N x C = 640
    monkeypatch.setattr(logistic, "FLOAT64_MAX_ELEMENTS", 500)
    summary, _, _ = logistic_regression(x, y, x[:3], 8, l2=0.1, max_iter=5)
    assert summary["dtype"] == "float32"
    monkeypatch.setattr(logistic, "FLOAT64_MAX_ELEMENTS", 640)
    summary, _, _ = logistic_regression(x, y, x[:3], 8, l2=0.1, max_iter=5)
    assert summary["dtype"] == "float64"


def looped_objective(x, y, w, b, l2):
    """The objective and its gradient written out per sample and per class in float64
    Python: mean_i [log sum_c exp(z_ic) - z_iy] + (l2 / 2) |W|^2, z = W x + b; dz_ic =
    (softmax_ic - [c = y_i]) / N; grad W = sum_i dz_i x_i^T + l2 W, grad b = sum_i dz_i."""
    x, w, b = x.tolist(), w.tolist(), b.tolist()
    n, c, d = len(x), len(w), len(w[0])
    loss = 0.5 * l2 * sum(v * v for row in w for v in row)
    grad_w = [[l2 * w[k][j] for j in range(d)] for k in range(c)]
    grad_b = [0.0] * c
    for i, label in enumerate(y.tolist()):
        z = [sum(w[k][j] * x[i][j] for j in range(d)) + b[k] for k in range(c)]
        top = max(z)
        norm = top + math.log(sum(math.exp(v - top) for v in z))
        loss += (norm - z[label]) / n
        for k in range(c):
            dz = (math.exp(z[k] - norm) - (k == label)) / n
            grad_b[k] += dz
            for j in range(d):
                grad_w[k][j] += dz * x[i][j]
    return loss, torch.tensor(grad_w, dtype=torch.float64), torch.tensor(grad_b,
                                                                         dtype=torch.float64)


@pytest.mark.parametrize("seed, n, d, c, rows", [(0, 23, 4, 3, 5), (1, 40, 7, 5, 1),
                                                 (2, 17, 3, 6, 16), (3, 30, 5, 4, 30)])
def test_the_closed_form_gradient_is_the_objectives(monkeypatch, seed, n, d, c, rows):
    """L-BFGS's loss and gradient, from one forward pass (softmax minus one-hot, without
    autograd's graph), are autograd's on the same objective and a per-sample
    loop's, in blocks of ``rows`` rows (fewer than N but in the last case) and whole;
    l2 on W only, not on the bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, c, (n,), generator=g)
    w0 = torch.randn(c, d, generator=g, dtype=torch.float64)
    b0 = torch.randn(c, generator=g, dtype=torch.float64)
    l2 = 0.1 * (seed + 1)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    reference = (torch.nn.functional.cross_entropy(x @ w.T + b, y)
                 + 0.5 * l2 * w.pow(2).sum())
    reference.backward()
    reference = reference.detach()
    looped = looped_objective(x, y, w0, b0, l2)
    for chunk in (c * rows, 1 << 22):
        monkeypatch.setattr(logistic, "CHUNK_ELEMENTS", chunk)
        loss, grad_w, grad_b = logistic.loss_and_gradient(x, y, w0, b0, l2)
        for expected, expected_w, expected_b in ((reference, w.grad, b.grad), looped):
            assert float(loss) == pytest.approx(float(expected), rel=1e-13, abs=0)
            torch.testing.assert_close(grad_w, expected_w, rtol=0, atol=1e-14)
            torch.testing.assert_close(grad_b, expected_b, rtol=0, atol=1e-14)
        # objective(backward=True) adds the same to .grad, needing no autograd graph
        w1, b1 = w0.clone(), b0.clone()
        w1.grad, b1.grad = torch.ones_like(w1), None
        with torch.no_grad():
            assert logistic.objective(x, y, w1, b1, l2, backward=True) == loss
        torch.testing.assert_close(w1.grad, grad_w + 1, rtol=0, atol=0)
        torch.testing.assert_close(b1.grad, grad_b, rtol=0, atol=0)
        assert logistic.loss_and_gradient(x, y, w0, b0, l2, gradient=False)[1:] == (None, None)
    # float32 (the larger problems' dtype): the same to float32's rounding
    loss32, grad_w32, grad_b32 = logistic.loss_and_gradient(x.float(), y, w0.float(),
                                                            b0.float(), l2)
    assert loss32.dtype == grad_w32.dtype == grad_b32.dtype == torch.float32
    assert float(loss32) == pytest.approx(float(reference), rel=1e-6)
    torch.testing.assert_close(grad_w32.double(), w.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_b32.double(), b.grad, rtol=0, atol=1e-6)


def test_a_grid_of_one_value_is_its_minimum():
    """``count`` 1 of [lo, hi]: the one value log-spaced from lo, lo itself (as
    numpy.geomspace gives it), not hi."""
    assert logistic.parse_l2_grid("0.001,0.1,1") == [0.001]
    assert logistic.default_l2_grid(1e-4, 1.0, 1) == [1e-4]


def test_half_up_rounds_the_written_fraction_of_a_count_per_class():
    """``fraction * count / classes``, a half rounded up: a per-class share (subsets)."""
    assert logistic.half_up(0.145, 100) == 15 and logistic.half_up(0.25, 10) == 3
    assert logistic.half_up(0.1, 30, 4) == 1  # 0.75
    assert logistic.half_up(0.1, 25, 2) == 1  # 1.25
    assert logistic.half_up(0.5, 10, 4) == 1  # 1.25
    assert logistic.half_up(0.3, 10, 2) == 2  # 1.5


def test_the_grid_fits_and_the_refit_are_each_warm_started(monkeypatch):
    """Strongest penalty first, each fit starting from the one before; the final refit on
    the whole training set starts from the chosen lambda's fit."""
    calls, fit = [], logistic.fit_logistic_regression

    def recording(x, y, num_classes, l2, init=None, **kwargs):
        w, b, info = fit(x, y, num_classes, l2, init=init, **kwargs)
        calls.append((l2, init, (w, b)))
        return w, b, info

    monkeypatch.setattr(logistic, "fit_logistic_regression", recording)
    x, y = blobs(20, 4, 3, spread=2.0, seed=2)
    summary, _, _ = logistic_regression(x, y, x, 3, l2_grid=[1e-3, 1.0, 1e-1], seed=0)
    assert [c[0] for c in calls] == [1.0, 1e-1, 1e-3, summary["l2"]]
    assert calls[0][1] is None
    for before, (_, init, _) in zip(calls, calls[1:3], strict=False):
        assert all(torch.equal(a, b) for a, b in zip(init, before[2], strict=True))
    chosen = next(c for c in calls[:3] if c[0] == summary["l2"])
    assert all(torch.equal(a, b) for a, b in zip(calls[3][1], chosen[2], strict=True))
    # and a warm start at the optimum has next to nothing left to do
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w, b, cold = fit(xt, yt, 3, 0.1)
    assert fit(xt, yt, 3, 0.1, init=(w, b))[2]["iterations"] < cold["iterations"] // 2


def test_held_out_rows_keep_three_digits_and_a_win_at_the_strong_end_is_pointed_out(
        monkeypatch, capsys):
    table = {3.162: (0.9, 0.2), 0.3162: (0.8, 0.3), 0.03162: (0.8, 0.1)}  # l2: (top-1, loss)

    def fit(x, y, l2, init=None):
        return torch.full((1, 1), l2, dtype=torch.float64), torch.zeros(1), {}

    monkeypatch.setattr(logistic, "accuracy_and_loss", lambda x, y, w, b: table[float(w[0, 0])])
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.tensor([0, 1] * 5)
    l2, _, held = logistic._choose_l2(x, y, np.arange(6), np.arange(6, 10),
                                      sorted(table, reverse=True), fit, True)
    assert l2 == 3.162 and set(held["val_accuracy"]) == {"3.16", "0.316", "0.0316"}
    assert "chose l2 3.16, the largest of the grid; widen it" in capsys.readouterr().err
