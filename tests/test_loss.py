"""Losses against direct float64 loops of the paper's formulas, values and gradients."""

from __future__ import annotations

import math
import re

import pytest
import torch

from simclr.config import LossConfig
from simclr.errors import SimCLRError
from simclr.loss import (
    contrast_stats,
    contrastive_loss,
    loss_and_metrics,
    margin_triplet,
    margin_triplet_with_accuracy,
    nt_logistic,
    nt_logistic_with_accuracy,
    nt_xent,
    nt_xent_with_accuracy,
    nt_xent_with_stats,
)

# ----------------------------------------------------------------- references (loops)


def _sim(u: torch.Tensor, v: torch.Tensor, normalize: bool) -> torch.Tensor:
    dot = torch.dot(u, v)
    return dot / (u.norm() * v.norm()) if normalize else dot


def _ref_nt_xent(z_a, z_b, tau, normalize):
    """Eq. 1: l(i,j) = -log(exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)), mean over 2N."""
    z = list(z_a) + list(z_b)
    if normalize:  # sim(u, v) = u.v / (|u||v|): normalise each vector once
        z = [v / v.norm() for v in z]
    n = len(z_a)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = 0.0
        for k in range(2 * n):
            if k != i:
                denom = denom + torch.exp(torch.dot(z[i], z[k]) / tau)
        total = total - torch.log(torch.exp(torch.dot(z[i], z[j]) / tau) / denom)
    return total / (2 * n)


def _ref_pairs(z_a, z_b, normalize):
    """Per anchor (both views): (s_pos, [s_neg over the other view's other rows])."""
    n = len(z_a)
    out = []
    for anchors, others in ((z_a, z_b), (z_b, z_a)):
        for i in range(n):
            s_pos = _sim(anchors[i], others[i], normalize)
            negs = [_sim(anchors[i], others[k], normalize) for k in range(n) if k != i]
            out.append((s_pos, negs))
    return out


def _ref_semi_hard(s_pos, negs):
    """FaceNet semi-hard: most similar negative less similar than the positive, else
    the least similar negative."""
    semi = [s for s in negs if s.item() < s_pos.item()]
    if semi:
        return max(semi, key=lambda s: s.item())
    return min(negs, key=lambda s: s.item())


def _ref_logistic(z_a, z_b, tau, normalize, semi_hard):
    total = 0.0
    pairs = _ref_pairs(z_a, z_b, normalize)
    for s_pos, negs in pairs:
        chosen = [_ref_semi_hard(s_pos, negs)] if semi_hard else negs
        neg = sum(-torch.log(torch.sigmoid(-s / tau)) for s in chosen) / len(chosen)
        total = total - torch.log(torch.sigmoid(s_pos / tau)) + neg
    return total / len(pairs)


def _ref_triplet(z_a, z_b, margin, normalize, semi_hard):
    total = 0.0
    pairs = _ref_pairs(z_a, z_b, normalize)
    for s_pos, negs in pairs:
        chosen = [_ref_semi_hard(s_pos, negs)] if semi_hard else negs
        total = total + sum(torch.clamp(s - s_pos + margin, min=0) for s in chosen) / len(chosen)
    return total / len(pairs)


def _inputs(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64)
    # Correlated second view so the positives are meaningful and the loss non-trivial.
    z_b = z_a + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z_a, z_b


def _value_and_grads(fn, z_a, z_b):
    a = z_a.clone().requires_grad_(True)
    b = z_b.clone().requires_grad_(True)
    loss = fn(a, b)
    ga, gb = torch.autograd.grad(loss, (a, b))
    return loss.detach(), ga, gb


def _check(fn, ref, z_a, z_b, rtol=1e-9, atol=1e-11):
    value, ga, gb = _value_and_grads(fn, z_a, z_b)
    ref_value, ref_ga, ref_gb = _value_and_grads(ref, z_a, z_b)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, ref_value, rtol=rtol, atol=atol)
    torch.testing.assert_close(ga, ref_ga, rtol=rtol, atol=atol)
    torch.testing.assert_close(gb, ref_gb, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize("n", [2, 8, 33])
@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("normalize", [True, False])
def test_nt_xent_matches_loop_values_and_gradients(n, tau, normalize):
    z_a, z_b = _inputs(n, 5, seed=n)
    if not normalize:
        # Keep raw dot products / tau in a range where exp() is well conditioned.
        z_a, z_b = z_a * 0.5, z_b * 0.5
    _check(lambda a, b: nt_xent(a, b, tau, normalize),
           lambda a, b: _ref_nt_xent(a, b, tau, normalize), z_a, z_b)


def _ref_nt_xent_one_view(z_a, z_b, tau, normalize):
    """App. B.10's NT-Xent with negatives from one view: anchor a_i's softmax over the b
    rows (its positive b_i and the other b_k), b_i's over the a rows; mean over 2N."""
    total = 0.0
    for anchors, others in ((z_a, z_b), (z_b, z_a)):
        for i in range(len(anchors)):
            terms = [torch.exp(_sim(anchors[i], others[k], normalize) / tau)
                     for k in range(len(others))]
            total = total - torch.log(terms[i] / sum(terms))
    return total / (2 * len(z_a))


@pytest.mark.parametrize("n", [2, 8])
@pytest.mark.parametrize(("tau", "normalize"), [(0.1, True), (0.5, True), (1.0, False)])
def test_nt_xent_with_one_views_negatives_matches_loop(n, tau, normalize):
    z_a, z_b = _inputs(n, 5, seed=n + 1)
    _check(lambda a, b: nt_xent_with_accuracy(a, b, tau, normalize, one_view=True)[0],
           lambda a, b: _ref_nt_xent_one_view(a, b, tau, normalize), z_a, z_b)
    cfg = LossConfig(temperature=tau, normalize=normalize, one_view_negatives=True)
    loss, metrics = loss_and_metrics(cfg, z_a, z_b)  # (what training takes and logs)
    assert loss.item() == pytest.approx(_ref_nt_xent_one_view(z_a, z_b, tau, normalize).item())
    assert loss.item() != pytest.approx(nt_xent(z_a, z_b, tau, normalize).item())
    # pos_top1 over the 2N - 1 views as ever; Table 5's columns as contrast_stats reads them
    assert metrics["pos_top1"].item() == nt_xent_with_accuracy(z_a, z_b, tau, normalize)[1]
    assert [metrics["contrast_entropy"].item(), metrics["contrast_acc"].item()] == \
        pytest.approx(contrast_stats(z_a, z_b, tau, normalize).tolist(), rel=1e-6)


def test_nt_xent_float32_close_to_float64():
    z_a, z_b = _inputs(16, 8, seed=1)
    got = nt_xent(z_a.float(), z_b.float(), 0.1)
    assert got.dtype == torch.float32
    assert abs(got.item() - nt_xent(z_a, z_b, 0.1).item()) < 1e-5


@pytest.mark.parametrize("cfg", [
    LossConfig(name="nt_xent", temperature=0.1),
    LossConfig(name="nt_logistic", temperature=0.1),
    LossConfig(name="nt_logistic", temperature=0.1, semi_hard=True),
    LossConfig(name="margin_triplet", margin=0.5),
    LossConfig(name="margin_triplet", margin=0.5, semi_hard=True),
], ids=lambda c: f"{c.name}{'-semi_hard' if c.semi_hard else ''}")
def test_every_loss_is_float32_under_bf16_autocast(cfg):
    z_a, z_b = _inputs(16, 8, seed=2)
    a, b = z_a.bfloat16(), z_b.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = contrastive_loss(cfg, a, b)
    assert got.dtype == torch.float32
    # Same as the float64 loss of the bf16-rounded inputs: no bf16 inside the loss.
    want, _ = contrastive_loss(cfg, a.double(), b.double())
    assert abs(got.item() - want.item()) < 1e-5


def test_nt_xent_gather_flag_is_identity_without_process_group():
    z_a, z_b = _inputs(6, 4, seed=3)
    assert nt_xent(z_a, z_b, 0.2, gather=True).item() == nt_xent(z_a, z_b, 0.2, gather=False).item()


def test_nt_xent_perfect_separation_goes_to_zero():
    # Orthogonal pairs, identical views: l(i,j) = log(1 + (2N-2) exp(-1/tau)) exactly.
    z = torch.eye(4, dtype=torch.float64)
    tau = 0.1
    want = math.log(1 + 6 * math.exp(-1 / tau))
    assert abs(nt_xent(z, z, tau).item() - want) < 1e-12


def test_accuracy_constructed_case():
    # Views are one-hot; swapping b_0 and b_1 makes anchors a_0, a_1, b_0, b_1 pick the
    # wrong candidate with similarity 1 (unique maximum), a_2, a_3, b_2, b_3 stay right.
    z_a = torch.eye(4)
    z_b = torch.eye(4)[[1, 0, 2, 3]]
    for fn in (nt_xent_with_accuracy, nt_logistic_with_accuracy):
        _, top1 = fn(z_a, z_b, 0.5)
        assert top1.item() == pytest.approx(0.5)
    _, top1 = margin_triplet_with_accuracy(z_a, z_b)
    assert top1.item() == pytest.approx(0.5)
    _, top1 = nt_xent_with_accuracy(z_a, torch.eye(4), 0.5)
    assert top1.item() == 1.0


def test_accuracy_matches_loop_on_random_data():
    z_a, z_b = _inputs(12, 3, seed=4)  # low dimension: many anchors get it wrong
    z = torch.cat([z_a, z_b])
    zn = z / z.norm(dim=1, keepdim=True)
    correct = 0
    for i in range(24):
        best_k, best_s = -1, -math.inf
        for k in range(24):
            s = float(zn[i] @ zn[k])
            if k != i and s > best_s:
                best_k, best_s = k, s
        correct += best_k == (i + 12) % 24
    assert 0 < correct < 24
    for with_accuracy in (nt_xent_with_accuracy, nt_logistic_with_accuracy,
                          margin_triplet_with_accuracy):  # (Table 4's cells: one metric)
        _, top1 = with_accuracy(z_a, z_b, 0.5)
        assert top1.item() == pytest.approx(correct / 24), with_accuracy.__name__
    _, top1 = margin_triplet_with_accuracy(z_a, z_b, 0.5, semi_hard=True)
    assert top1.item() == pytest.approx(correct / 24)


@pytest.mark.parametrize("cfg", [
    LossConfig(), LossConfig(name="nt_logistic"), LossConfig(name="margin_triplet"),
    LossConfig(name="margin_triplet", semi_hard=True),
], ids=lambda c: f"{c.name}{'-semi_hard' if c.semi_hard else ''}")
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_the_accuracies_of_non_finite_projections_are_nan_as_the_loss(cfg, bad):
    """An argmax over NaN similarities picks column 0: the anchor whose positive sits
    there counted as a hit, and a skipped step logged pos_top1 1/16 and contrast_acc
    1/8 at batch 8 beside its null loss."""
    z_a, z_b = _inputs(8, 4, seed=7)
    z_a[2, 1] = bad  # (normalised: one bad row; not normalised: +inf similarities)
    for normalize in (True, False):
        loss, metrics = loss_and_metrics(
            LossConfig(**{**vars(cfg), "normalize": normalize}), z_a, z_b)
        assert not math.isfinite(loss.item())
        assert metrics.keys() >= {"pos_top1"}
        assert all(math.isnan(value.item()) for value in metrics.values()), metrics
    _, metrics = loss_and_metrics(cfg, *_inputs(8, 4, seed=7))  # (finite: counted)
    assert all(math.isfinite(value.item()) for value in metrics.values())


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))


# ------------------------------------------------------- Table 4 ablation losses


@pytest.mark.parametrize("n", [2, 8, 13])
@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_nt_logistic_matches_loop(n, semi_hard, normalize):
    z_a, z_b = _inputs(n, 4, seed=10 + n)
    tau = 0.2 if normalize else 1.0
    _check(lambda a, b: nt_logistic(a, b, tau, normalize, semi_hard),
           lambda a, b: _ref_logistic(a, b, tau, normalize, semi_hard), z_a, z_b)


@pytest.mark.parametrize("n", [2, 8, 13])
@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("margin", [0.4, 1.6])
def test_margin_triplet_matches_loop(n, semi_hard, margin):
    z_a, z_b = _inputs(n, 4, seed=20 + n)
    _check(lambda a, b: margin_triplet(a, b, margin, True, semi_hard),
           lambda a, b: _ref_triplet(a, b, margin, True, semi_hard), z_a, z_b)


@pytest.mark.parametrize("negatives,expected", [
    # Semi-hard = the most similar negative less similar than the positive: 0.5.
    ((0.5, 0.1, 0.9), 0.5),
    # None is less similar than the positive: the least similar one, as the loop does.
    ((0.9, 0.8, 0.7), 0.7),
    # A negative as similar as the positive (a duplicate image) is not semi-hard: FaceNet's
    # are strictly less similar.
    ((0.6, 0.5, 0.9), 0.5),
])
def test_semi_hard_selection_by_hand(negatives, expected):
    """Anchor a_0 = e0, its positive b_0 at cos 0.6, the negatives b_1..b_3 at the given
    cosines: the negative chosen, and the loss against the loop reference."""
    def unit(c):
        return [c, math.sqrt(1 - c * c), 0.0]

    z_a = torch.tensor([[1.0, 0.0, 0.0]] + [[0.0, 0.0, 1.0]] * 3, dtype=torch.float64)
    z_b = torch.tensor([unit(0.6), *(unit(c) for c in negatives)], dtype=torch.float64)
    from simclr.loss import _cross_view, _semi_hard

    sim, pos, negative, _ = _cross_view(z_a, z_b, True, False)
    chosen = _semi_hard(sim, sim.gather(1, pos[:, None])[:, 0], negative)
    assert chosen[0].item() == pytest.approx(expected)
    # (Values only: the tied similarities of a_1..a_3 split gradients among the ties.)
    torch.testing.assert_close(margin_triplet(z_a, z_b, 0.5, True, True),
                               _ref_triplet(z_a, z_b, 0.5, True, True), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------- dispatch


def test_contrastive_loss_dispatch():
    z_a, z_b = _inputs(6, 4, seed=5)
    cfg = LossConfig(name="nt_xent", temperature=0.3)
    loss, top1 = contrastive_loss(cfg, z_a, z_b)
    assert loss.item() == nt_xent(z_a, z_b, 0.3).item()
    cfg = LossConfig(name="nt_logistic", temperature=0.3, semi_hard=True)
    assert contrastive_loss(cfg, z_a, z_b)[0].item() == nt_logistic(z_a, z_b, 0.3, True,
                                                                     True).item()
    cfg = LossConfig(name="nt_logistic", temperature=0.3, normalize=False)  # (raw dots)
    assert contrastive_loss(cfg, z_a, z_b)[0].item() == nt_logistic(z_a, z_b, 0.3, False).item()
    assert nt_logistic(z_a, z_b, 0.3, False).item() != nt_logistic(z_a, z_b, 0.3).item()
    cfg = LossConfig(name="margin_triplet", margin=0.8, normalize=False)
    assert contrastive_loss(cfg, z_a, z_b)[0].item() == margin_triplet(z_a, z_b, 0.8,
                                                                        False).item()
    # The triplet's semi_hard and NT-Xent's one-view negatives reach the loss (each
    # setting changes the value on these inputs, so dropping one would show).
    for semi_hard in (True, False):
        cfg = LossConfig(name="margin_triplet", margin=0.8, semi_hard=semi_hard)
        assert contrastive_loss(cfg, z_a, z_b)[0].item() == margin_triplet(
            z_a, z_b, 0.8, True, semi_hard).item()
    assert margin_triplet(z_a, z_b, 0.8, True, True).item() != margin_triplet(
        z_a, z_b, 0.8, True, False).item()
    for one_view in (True, False):
        cfg = LossConfig(name="nt_xent", temperature=0.3, one_view_negatives=one_view)
        assert contrastive_loss(cfg, z_a, z_b)[0].item() == nt_xent_with_accuracy(
            z_a, z_b, 0.3, one_view=one_view)[0].item()
    assert nt_xent_with_accuracy(z_a, z_b, 0.3, one_view=True)[0].item() != nt_xent(
        z_a, z_b, 0.3).item()
    with pytest.raises(SimCLRError, match="semi_hard"):
        contrastive_loss(LossConfig(name="nt_xent", semi_hard=True), z_a, z_b)
    with pytest.raises(SimCLRError, match="bogus"):
        contrastive_loss(LossConfig(name="bogus"), z_a, z_b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect host syncs")
def test_losses_do_not_sync_with_host_on_cuda():
    z_a, z_b = (t.float().cuda().requires_grad_(True) for t in _inputs(64, 16, seed=6))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for cfg in (LossConfig(), LossConfig(name="nt_logistic", semi_hard=True),
                    LossConfig(name="margin_triplet", semi_hard=True)):
            loss, top1 = contrastive_loss(cfg, z_a, z_b)
            loss.backward()
        contrast_stats(z_a, z_b, 0.1)
        loss_and_metrics(LossConfig(), z_a, z_b)[0].backward()  # what a step runs
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("call, message", [
    (lambda z: nt_xent(z, z, temperature=0.0), "temperature must be positive"),
    (lambda z: nt_xent(z, z, temperature=-0.5), "temperature must be positive"),
    (lambda z: nt_xent(z, z, temperature=float("nan")), "temperature must be positive"),
    (lambda z: nt_xent(z, z, temperature=float("inf")), "temperature must be positive and finite"),
    (lambda z: nt_logistic(z, z, temperature=0.0), "temperature must be positive"),
    (lambda z: margin_triplet(z, z, margin=float("inf")), "margin must be non-negative and finite"),
    (lambda z: margin_triplet(z, z, margin=-1.0), "margin must be non-negative"),
    (lambda z: nt_xent(z.long(), z.long()), "must be floating point"),
])
def test_settings_that_would_give_nan_or_a_wrong_loss_are_refused(call, message):
    """Temperature 0 gave nan, a negative one a finite loss pushing positives apart, a
    negative margin 0: refused, as are integer projections."""
    with pytest.raises(ValueError, match=message):
        call(torch.randn(4, 8))
    assert margin_triplet(torch.randn(4, 8), torch.randn(4, 8), margin=0.0).isfinite()


@pytest.mark.parametrize("loss", [nt_xent, nt_logistic, margin_triplet])
def test_inputs_a_library_user_gets_wrong_are_named(loss):
    """A numpy array, an empty batch or a text temperature failed deep inside torch
    (AttributeError, IndexError, '>' between str and int); a single pair gave a loss of
    0 without a word, having no negative."""
    z = torch.randn(4, 8)
    with pytest.raises(TypeError, match="must be torch tensors, got ndarray and ndarray"):
        loss(z.numpy(), z.numpy())
    with pytest.raises(ValueError, match=r"\(n, D\) with n, D >= 1 \(and 2 pairs or more "
                                         r"over all processes\), got \(0, 8\)"):
        loss(z[:0], z[:0])
    with pytest.raises(ValueError, match=r"with n, D >= 1 .*got \(4, 0\) and \(4, 0\)$"):
        loss(z[:, :0], z[:, :0])  # (no feature: it was log(2n - 1), every pair alike)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        loss(z[:1], z[1:2])
    scale = {"margin": "1"} if loss is margin_triplet else {"temperature": "0.5"}
    with pytest.raises(TypeError, match="must be a number, got '"):
        loss(z, z, **scale)


@pytest.mark.parametrize("name", ["nt_xent", "nt_logistic", "margin_triplet"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_loss_follows_its_inputs_dtype_and_top1_is_always_float32(name, dtype):
    """As contrastive_loss's docstring says: the loss float64 for float64 inputs (the
    reference checks), top1 a float32 fraction whatever the inputs (a count of hits)."""
    g = torch.Generator().manual_seed(0)
    z_a, z_b = (torch.randn(6, 4, generator=g, dtype=dtype) for _ in range(2))
    loss, top1 = contrastive_loss(LossConfig(name=name), z_a, z_b)
    assert loss.dtype == dtype and top1.dtype == torch.float32
    assert nt_xent_with_accuracy(z_a, z_b)[1].dtype == torch.float32
    for doc in (contrastive_loss.__doc__, nt_xent_with_accuracy.__doc__):
        assert "top1 float32" in " ".join(doc.split())


def test_nt_xent_computes_in_the_wider_dtype_of_its_inputs():
    """(float32, float64) computed in float32, z_b cast down; (float64, float32) in
    float64: the order of the arguments set the precision."""
    a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    exact = nt_xent(a, b, temperature=0.1)
    for pair in ((a.float(), b), (a, b.float())):
        assert nt_xent(*pair, temperature=0.1).dtype == torch.float64
    assert nt_xent(a.float(), b, temperature=0.1).item() == pytest.approx(exact.item(),
                                                                           rel=1e-6)


def _ref_contrast_stats(z_a, z_b, tau, normalize):
    """Table 5's entropy and contrastive accuracy as the official code measures them:
    anchor a_i's softmax over sim(a_i, b_k)/tau for every k, by hand."""
    n = len(z_a)
    entropy, correct = 0.0, 0
    for i in range(n):
        logits = [_sim(z_a[i], z_b[k], normalize) / tau for k in range(n)]
        denom = sum(math.exp(float(x)) for x in logits)
        probs = [math.exp(float(x)) / denom for x in logits]
        entropy -= sum(p * math.log(p) for p in probs)
        correct += max(range(n), key=lambda k: probs[k]) == i
    return entropy / n, correct / n


@pytest.mark.parametrize(("tau", "normalize"), [(0.1, True), (0.5, True), (1.0, False)])
def test_contrast_stats_match_the_loop(tau, normalize):
    z_a, z_b = _inputs(7, 5, seed=3)
    entropy, accuracy = _ref_contrast_stats(z_a, z_b, tau, normalize)
    for got in (contrast_stats(z_a, z_b, tau, normalize),
                nt_xent_with_stats(z_a, z_b, tau, normalize)[2]):  # (what training logs)
        assert got.dtype == torch.float32 and got.shape == (2,) and not got.requires_grad
        assert got.tolist() == pytest.approx([entropy, accuracy], rel=1e-6)


def test_training_metrics_come_with_the_unchanged_loss():
    """The step's loss and top-1 are NT-Xent's own, its Table 5 columns contrast_stats',
    for float32 inputs under bf16 autocast too; the other losses log top-1 only."""
    z_a, z_b = (t.float().requires_grad_(True) for t in _inputs(9, 6, seed=4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = loss_and_metrics(LossConfig(temperature=0.2), z_a, z_b)
    want, top1 = nt_xent_with_accuracy(z_a, z_b, 0.2)
    assert loss.item() == want.item() and metrics["pos_top1"].item() == top1.item()
    stats = contrast_stats(z_a, z_b, 0.2)
    assert [metrics["contrast_entropy"].item(), metrics["contrast_acc"].item()] == \
        pytest.approx(stats.tolist(), rel=1e-6)
    loss.backward()
    assert z_a.grad is not None and z_b.grad is not None
    _, metrics = loss_and_metrics(LossConfig(name="nt_logistic"), z_a, z_b)
    assert set(metrics) == {"pos_top1"}


def test_contrast_stats_bounds():
    """A uniform distribution has entropy log(n); a perfect match, accuracy 1 and an
    entropy near 0 at a small temperature."""
    z = torch.eye(6, dtype=torch.float64)
    entropy, accuracy = contrast_stats(z, z, 0.01).tolist()
    assert accuracy == 1.0 and entropy < 1e-6
    same = torch.ones(6, 3)
    assert contrast_stats(same, same, 0.5)[0].item() == pytest.approx(math.log(6))


def test_the_default_temperature_is_the_papers():
    """tau 0.1 (LossConfig's, the paper's ImageNet setting) when none is given."""
    a, b = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)).chunk(2)
    for fn in (nt_xent, nt_logistic, contrast_stats):
        torch.testing.assert_close(fn(a, b), fn(a, b, 0.1))
        assert not torch.allclose(fn(a, b), fn(a, b, 0.5))


@pytest.mark.parametrize("loss", [nt_xent, nt_logistic, margin_triplet, contrast_stats])
@pytest.mark.parametrize("shapes", [((4, 3), (5, 3)), ((4, 3), (4, 5)), ((4, 3, 1), (4, 3, 1))])
def test_projections_of_other_shapes_are_named(loss, shapes):
    """Two views of other batch sizes or widths are refused with the shapes named, not
    left to fail (or not) somewhere inside torch."""
    got = re.escape(f"got {shapes[0]} and {shapes[1]}")
    with pytest.raises(ValueError, match=r"must both be \(n, D\) with n, D >= 1 \(and 2 pairs "
                                         r"or more over all processes\), " + got):
        loss(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


def test_the_anchor_itself_is_never_a_candidate_at_any_scale():
    """Unnormalised projections of norm 300 at the corners of a regular simplex: every
    other row's logit is -300^2/3 = -30000, the anchor's self-similarity +90000, which a
    large finite mask value (rather than -inf) would leave dominating the denominator.
    Eq. 1's sum runs over k != i only: 2N - 1 = 3 equal candidates, loss log 3."""
    corners = torch.eye(4, dtype=torch.float64) - 0.25  # pairwise cosine -1/3
    z = 300 * corners / corners.norm(dim=1, keepdim=True)
    got = nt_xent(z[:2], z[2:], temperature=1.0, normalize=False)
    assert got.item() == pytest.approx(math.log(3), rel=1e-12)


def test_contrast_stats_are_float32_maths_under_bf16_autocast():
    """A library caller's contrast_stats inside a bf16 autocast region: the similarities
    are still float32 (bf16 ones divided by tau = 0.1 moved the entropy by ~1e-2)."""
    z_a, z_b = (t.float() for t in _inputs(16, 32, seed=6))
    entropy, accuracy = _ref_contrast_stats(z_a.double(), z_b.double(), 0.1, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = contrast_stats(z_a, z_b, 0.1)
    assert got.tolist() == pytest.approx([entropy, accuracy], rel=1e-5)


def test_the_training_metrics_of_a_semi_hard_nt_xent_are_refused_as_its_loss():
    """semi_hard has no meaning for NT-Xent: refused for the metrics as for the loss,
    not silently ignored."""
    z_a, z_b = _inputs(4, 3, seed=1)
    with pytest.raises(SimCLRError, match="semi_hard applies to nt_logistic"):
        loss_and_metrics(LossConfig(name="nt_xent", semi_hard=True), z_a, z_b)


def test_a_learned_temperature_tensor_is_taken_and_a_bool_or_integer_view_refused():
    """A tensor temperature (a learned one) is the caller's: used as its value, unchecked;
    True is no temperature (a bool is an int: it would have been 1.0); one integer view
    beside a float one is refused as two are (it was cast to float without a word)."""
    z_a, z_b = _inputs(4, 3, seed=2)
    assert nt_xent(z_a, z_b, torch.tensor(0.3, dtype=torch.float64)).item() == \
        pytest.approx(nt_xent(z_a, z_b, 0.3).item(), rel=1e-12)
    with pytest.raises(TypeError, match="temperature must be a number, got True"):
        nt_xent(z_a, z_b, temperature=True)
    for pair in ((z_a, z_b.long()), (z_a.long(), z_b)):
        with pytest.raises(ValueError, match="must be floating point"):
            nt_xent(*pair)
