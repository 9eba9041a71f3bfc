"""Contrastive objectives: NT-Xent (Chen et al. 2020, eq. 1) and the Table 4 ablations.

Every loss takes the two views' projections z_a, z_b of shape (n, D) on this process
(row i of both is the same image) and returns a scalar, the mean over the 2n local
anchors: float32, also under autocast (logits are computed in float32), or float64 for
float64 inputs.

Across processes (``torch.distributed`` initialised and ``gather=True``) the
candidates (positives and negatives) are the projections of *all* processes,
gathered with gradients (``gather_with_grad``); only the 2n local anchors are scored
here, so the local loss is this process's share of the global loss and

    mean over ranks of the local losses == the single-process loss on the global batch.

Gradient scaling: ``gather_with_grad`` sums the candidate gradients of all ranks,
so the gradient of the *local* loss w.r.t. the local z equals world_size x the
gradient of the global mean loss w.r.t. those rows. DistributedDataParallel then
averages parameter gradients over ranks (divides by world_size), so the parameter
gradients equal those of the single-process loss on the global batch: no manual
rescaling is needed with DDP.

Scale: the mean over the 2N anchors, as the reference PyTorch ports; the official TF
code sums the two directions (each a mean over N), i.e. 2x this value.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr import distributed
from simclr.config import LossConfig
from simclr.errors import SimCLRError

# The functions' default temperature: the configuration's (the paper's ImageNet value).
TAU = LossConfig.temperature


def _check_scale(name: str, value: float | Tensor, zero_allowed: bool = False) -> None:
    """A temperature (> 0) or margin (>= 0) given as a number: checked here, where a
    wrong one would give nan, inf, or a loss that pushes the positives apart. (A tensor,
    e.g. a learned temperature, is the caller's: checking it would sync the device.)"""
    if isinstance(value, Tensor):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (value >= 0 if zero_allowed else value > 0) or value == float("inf"):
        raise ValueError(f"{name} must be {'non-negative' if zero_allowed else 'positive'} "
                         f"and finite, got {value!r}")


def _check_pair(z_a: Tensor, z_b: Tensor) -> None:
    """Two (n, D) float tensors of at least one row and one feature, checked before
    anything else touches them (a numpy array or an empty batch failed deep inside
    torch; no feature gave every pair the same similarity, log(2n - 1) as the loss)."""
    if not (isinstance(z_a, Tensor) and isinstance(z_b, Tensor)):
        raise TypeError(f"z_a and z_b must be torch tensors, got {type(z_a).__name__} and "
                        f"{type(z_b).__name__}")
    if z_a.ndim != 2 or z_a.shape != z_b.shape or 0 in z_a.shape:
        raise ValueError(f"z_a and z_b must both be (n, D) with n, D >= 1 (and 2 pairs or more "
                         f"over all processes), got "
                         f"{tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if not (z_a.is_floating_point() and z_b.is_floating_point()):
        raise ValueError(f"z_a and z_b must be floating point, got {z_a.dtype} and "
                         f"{z_b.dtype}")


def _check_negatives(keys: Tensor) -> None:
    """``keys`` (2 x pairs of all processes, D): a single pair has no negative, so its
    loss is a constant (0 for NT-Xent) that learns nothing."""
    if keys.shape[0] <= 2:
        raise ValueError("a contrastive loss needs at least 2 pairs (n >= 2 over all "
                         "processes): one pair has no negative")


def _prepare(z_a: Tensor, z_b: Tensor, normalize: bool) -> tuple[Tensor, Tensor]:
    # (inputs checked by the caller: _check_pair) bf16/fp16 -> float32; float64 (either)
    # -> float64 (reference checks).
    dtype = torch.promote_types(torch.promote_types(z_a.dtype, z_b.dtype), torch.float32)
    z_a, z_b = z_a.to(dtype), z_b.to(dtype)
    if normalize:
        z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    return z_a, z_b


def _candidates(z: Tensor, gather: bool) -> tuple[Tensor, int]:
    """All processes' rows of z (world*m, D) and the offset of this process's rows."""
    if gather and distributed.world_size() > 1:
        return distributed.gather_with_grad(z), distributed.rank() * z.shape[0]
    return z, 0


def _no_autocast(device: torch.device) -> torch.autocast:
    # Logits in float32 whatever the surrounding autocast: bf16 similarities divided
    # by tau = 0.1 lose the precision the softmax needs.
    return torch.autocast(device_type=device.type, enabled=False)


def nt_xent_with_accuracy(
    z_a: Tensor, z_b: Tensor, temperature: float = TAU, normalize: bool = True,
    gather: bool = True, one_view: bool = False,
) -> tuple[Tensor, Tensor]:
    """NT-Xent (eq. 1) over the 2n local anchors and its top-1 pair accuracy.

    z = cat(z_a, z_b) (2n, D); anchor i's positive is row (i + n) mod 2n; the logits
    sim(z_i, z_k)/tau (2n, world*2n) against every candidate except z_i itself
    (filled with -inf in place on the diagonal: no boolean indexing, no host sync).
    ``one_view``: the negatives of the other view only, (2n, world*n) logits, as Table
    4 compares the losses (App. B.10: "negatives from one augmentation view").

    Returns (loss, top1): scalars, the loss float32 (float64 for float64 inputs), top1
    float32 whatever the inputs: the fraction of local anchors whose most similar other
    view is their positive (detached).
    """
    loss, top1, _ = _nt_xent(z_a, z_b, temperature, normalize, gather, stats=False,
                             one_view=one_view)
    return loss, top1


def nt_xent_with_stats(
    z_a: Tensor, z_b: Tensor, temperature: float = TAU, normalize: bool = True,
    gather: bool = True, one_view: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`nt_xent_with_accuracy` plus Table 5's (entropy, accuracy), a (2,) float32
    tensor equal to :func:`contrast_stats`, read off the loss's own logits: the view-a
    anchors' columns of the b views (the -inf diagonal lies in a-columns only), so
    training logs them with no second normalisation, gather or matmul."""
    return _nt_xent(z_a, z_b, temperature, normalize, gather, stats=True, one_view=one_view)  # type: ignore[return-value]  # (stats=True: a tensor)


def _nt_xent(z_a: Tensor, z_b: Tensor, temperature: float, normalize: bool, gather: bool,
             stats: bool, one_view: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    _check_scale("temperature", temperature)
    _check_pair(z_a, z_b)
    if one_view:
        return _nt_xent_one_view(z_a, z_b, temperature, normalize, gather, stats)
    with _no_autocast(z_a.device):
        z_a, z_b = _prepare(z_a, z_b, normalize)
        n = z_a.shape[0]
        z = torch.cat([z_a, z_b], dim=0)
        keys, offset = _candidates(z, gather)
        _check_negatives(keys)
        # Scale the (2n, D) anchors rather than the (2n, world * 2n) logits: cheaper.
        logits = (z / temperature) @ keys.t()
        # Self-similarity of local anchor i sits at column offset + i: an in-place fill
        # of that diagonal view masks it like masked_fill(eye) without building a mask
        # (measured ~10% faster on CPU at 2N = 2048..8192).
        logits.diagonal(offset=offset).fill_(float("-inf"))
        idx = torch.arange(2 * n, device=z.device)
        labels = offset + (idx + n) % (2 * n)
        loss = F.cross_entropy(logits, labels)
        top1 = _top1(logits.detach(), labels)
        table5 = None
        if stats:
            # keys are [a_0, b_0, a_1, b_1, ...] by process, n rows each: the a anchors'
            # logits against every process's b block, (n, world*n), positive at
            # offset/2 + i (this process's block).
            a_vs_b = logits.detach()[:n].unflatten(1, (-1, 2, n))[:, :, 1].flatten(1)
            table5 = _entropy_and_accuracy(a_vs_b, offset // 2 + idx[:n])
    return loss, top1, table5


def _nt_xent_one_view(z_a: Tensor, z_b: Tensor, temperature: float, normalize: bool,
                      gather: bool, stats: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """NT-Xent with the other view's negatives only (App. B.10): anchor a_i's softmax
    over b_k of every process, b_i's over a_k; (loss, pos_top1 over all 2N - 1 views,
    Table 5's stats: the a anchors' rows, which are those the official metric reads)."""
    with _no_autocast(z_a.device):
        sim, pos, _, top1 = _cross_view(z_a, z_b, normalize, gather)
        logits = sim / temperature
        loss = F.cross_entropy(logits, pos)
        n = z_a.shape[0]
        table5 = _entropy_and_accuracy(logits.detach()[:n], pos[:n]) if stats else None
    return loss, top1, table5


def _entropy_and_accuracy(logits: Tensor, positive: Tensor) -> Tensor:
    """(n, K) logits whose row i's positive is column positive[i] -> (2,) float32
    (mean entropy of the softmax in nats, fraction of rows whose argmax is the positive)."""
    log_p = torch.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    return torch.stack([entropy, _top1(logits, positive)]).float()


def _top1(logits: Tensor, positive: Tensor) -> Tensor:
    """The fraction of rows of (m, K) ``logits`` whose largest entry is their
    ``positive`` column (m,), float32; NaN where a logit is NaN or +inf, as the loss then
    is (-inf: a masked entry). argmax over such a row picks its first such entry, so an
    anchor whose positive sat there counted as a hit: a step skipped for its NaN loss
    logged pos_top1 1/16 and contrast_acc 1/8 at batch 8. Device-side: no host sync."""
    hits = (logits.argmax(dim=1) == positive).float().mean()
    return hits.masked_fill(~(logits < math.inf).all(), math.nan)


@torch.no_grad()
def contrast_stats(z_a: Tensor, z_b: Tensor, temperature: float = TAU,
                   normalize: bool = True, gather: bool = True) -> Tensor:
    """Table 5's "Entropy" and "Contrastive acc." of one step, measured as the official
    code's metrics are: each view-a anchor's softmax over the view-b projections of every
    process (its positive and the other world*n - 1 images' b views: sim/tau, no view-a
    negatives), the entropy of that distribution (nats; log(world*n) when uniform) and
    whether its most probable entry is the positive, both averaged over the n anchors.

    z_a, z_b: (n, D) this process's projections. Returns a (2,) float32 tensor
    (entropy, accuracy), on z's device, without gradient and without a host sync. (For
    a library caller; training gets the same from :func:`nt_xent_with_stats`'s pass.)
    """
    _check_scale("temperature", temperature)
    _check_pair(z_a, z_b)
    with _no_autocast(z_a.device):
        z_a, z_b = _prepare(z_a.detach(), z_b.detach(), normalize)
        keys, offset = _candidates(z_b, gather)
        logits = (z_a / temperature) @ keys.t()  # (n, world*n)
        return _entropy_and_accuracy(logits, offset + torch.arange(
            logits.shape[0], device=logits.device))


def nt_xent(
    z_a: Tensor, z_b: Tensor, temperature: float = TAU, normalize: bool = True,
    gather: bool = True,
) -> Tensor:
    """NT-Xent loss (eq. 1), mean over the 2n anchors: z_a, z_b (n, D), the two views'
    projections (row i of each: one image), any float dtype; a scalar (float32, or
    float64 for float64 inputs). See :func:`nt_xent_with_accuracy`."""
    return nt_xent_with_accuracy(z_a, z_b, temperature, normalize, gather)[0]


# ------------------------------------------------------- Table 4 ablation losses


def _cross_view(z_a: Tensor, z_b: Tensor, normalize: bool, gather: bool
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Similarities of every anchor to the *other* view's rows of all processes.

    The paper (footnote of Table 4, App. B.10) uses "negatives from one augmentation
    view" for these losses: anchor a_i is compared with b_k and anchor b_i with a_k.
    Returns (sim (2n, world*n), positive column (2n,), negative mask (2n, world*n),
    pos_top1): the last over all 2N - 1 other views, as NT-Xent's, so that Table 4's
    cells log one metric (over the other view alone it ran higher: N candidates).
    """
    z_a, z_b = _prepare(z_a, z_b, normalize)
    n = z_a.shape[0]
    z = torch.cat([z_a, z_b], dim=0)
    keys, offset = _candidates(z, gather)
    _check_negatives(keys)
    # One matmul against every candidate, as NT-Xent's: keys are [a_0, b_0, a_1, b_1,
    # ...] by process, n rows each, so the a anchors' columns of the b blocks and the b
    # anchors' of the a blocks are the cross-view similarities (2n, world*n).
    every = z @ keys.t()
    blocks = every.unflatten(1, (-1, 2, n))
    sim = torch.cat([blocks[:n, :, 1].flatten(1), blocks[n:, :, 0].flatten(1)], dim=0)
    with torch.no_grad():  # (a metric: a copy, its self-similarity masked)
        others = every.detach().clone()
        others.diagonal(offset=offset).fill_(float("-inf"))
        idx = torch.arange(2 * n, device=z.device)
        top1 = _top1(others, offset + (idx + n) % (2 * n))
    pos = offset // 2 + torch.arange(n, device=z_a.device).repeat(2)
    cols = torch.arange(sim.shape[1], device=z_a.device)
    negative = cols.unsqueeze(0) != pos.unsqueeze(1)
    return sim, pos, negative, top1


def _semi_hard(sim: Tensor, s_pos: Tensor, negative: Tensor) -> Tensor:
    """One negative similarity per anchor, semi-hard as in FaceNet (Schroff et al. 2015).

    Sec. 5.1: "those that are within the loss margin and closest in distance, but
    farther than positive examples": the most similar negative among those less
    similar than the positive (s_neg < s_pos). If an anchor has none (every negative
    is harder than the positive) it falls back, as TF's ``triplet_semihard_loss``
    does, to the least similar negative, the one nearest to the semi-hard region.
    The margin itself is enforced by the hinge of the loss. Shape (2n,).
    """
    inf = float("inf")  # a Python scalar: a tensor made here would be a copy to the device
    semi = negative & (sim < s_pos.unsqueeze(1))
    best_semi = torch.where(semi, sim, -inf).amax(dim=1)
    easiest = torch.where(negative, sim, inf).amin(dim=1)
    return torch.where(semi.any(dim=1), best_semi, easiest)


def nt_logistic_with_accuracy(
    z_a: Tensor, z_b: Tensor, temperature: float = TAU, normalize: bool = True,
    semi_hard: bool = False, gather: bool = True,
) -> tuple[Tensor, Tensor]:
    """NT-Logistic (Table 2): -log sig(s+/tau) - log sig(-s-/tau), mean over anchors.

    The negative term is averaged over the anchor's negatives (all of the other view,
    or the single semi-hard one), so positive and negative terms weigh alike whatever
    the batch size (the paper does not specify the aggregation; Table 2 is per pair).
    """
    _check_scale("temperature", temperature)
    _check_pair(z_a, z_b)
    with _no_autocast(z_a.device):
        sim, pos, negative, top1 = _cross_view(z_a, z_b, normalize, gather)
        s_pos = sim.gather(1, pos.unsqueeze(1)).squeeze(1)
        pos_term = F.softplus(-s_pos / temperature)  # -log sigmoid(x) = softplus(-x)
        if semi_hard:
            neg_term = F.softplus(_semi_hard(sim, s_pos, negative) / temperature)
        else:
            per_pair = F.softplus(sim / temperature).masked_fill(~negative, 0.0)
            neg_term = per_pair.sum(dim=1) / negative.sum(dim=1).clamp(min=1)
        loss = (pos_term + neg_term).mean()
        return loss, top1


def margin_triplet_with_accuracy(
    z_a: Tensor, z_b: Tensor, margin: float = 1.0, normalize: bool = True,
    semi_hard: bool = False, gather: bool = True,
) -> tuple[Tensor, Tensor]:
    """Margin triplet (Table 2): max(s- - s+ + m, 0) on similarities, mean over anchors.

    Averaged over the anchor's negatives (or the semi-hard one). No temperature.
    """
    _check_scale("margin", margin, zero_allowed=True)
    _check_pair(z_a, z_b)
    with _no_autocast(z_a.device):
        sim, pos, negative, top1 = _cross_view(z_a, z_b, normalize, gather)
        s_pos = sim.gather(1, pos.unsqueeze(1)).squeeze(1)
        if semi_hard:
            per_anchor = F.relu(_semi_hard(sim, s_pos, negative) - s_pos + margin)
        else:
            hinge = F.relu(sim - s_pos.unsqueeze(1) + margin).masked_fill(~negative, 0.0)
            per_anchor = hinge.sum(dim=1) / negative.sum(dim=1).clamp(min=1)
        return per_anchor.mean(), top1


def nt_logistic(
    z_a: Tensor, z_b: Tensor, temperature: float = TAU, normalize: bool = True,
    semi_hard: bool = False, gather: bool = True,
) -> Tensor:
    """NT-Logistic loss (scalar). See :func:`nt_logistic_with_accuracy`."""
    return nt_logistic_with_accuracy(z_a, z_b, temperature, normalize, semi_hard, gather)[0]


def margin_triplet(
    z_a: Tensor, z_b: Tensor, margin: float = 1.0, normalize: bool = True,
    semi_hard: bool = False, gather: bool = True,
) -> Tensor:
    """Margin triplet loss (scalar). See :func:`margin_triplet_with_accuracy`."""
    return margin_triplet_with_accuracy(z_a, z_b, margin, normalize, semi_hard, gather)[0]


def contrastive_loss(cfg: LossConfig, z_a: Tensor, z_b: Tensor) -> tuple[Tensor, Tensor]:
    """The configured loss on (n, D) projections -> (loss, top1), scalars: the loss
    float32 (float64 for float64 inputs), top1 float32 whatever the inputs."""
    if cfg.name == "nt_xent":
        if cfg.semi_hard:
            raise SimCLRError("loss.semi_hard applies to nt_logistic and margin_triplet only, "
                              "not nt_xent")
        return nt_xent_with_accuracy(z_a, z_b, cfg.temperature, cfg.normalize,
                                     one_view=cfg.one_view_negatives)
    if cfg.name == "nt_logistic":
        return nt_logistic_with_accuracy(z_a, z_b, cfg.temperature, cfg.normalize,
                                         cfg.semi_hard)
    if cfg.name == "margin_triplet":
        return margin_triplet_with_accuracy(z_a, z_b, cfg.margin, cfg.normalize, cfg.semi_hard)
    raise SimCLRError(f"--loss: unknown value {cfg.name!r} "
                      "(choose from nt_xent, nt_logistic, margin_triplet)")


def loss_and_metrics(cfg: LossConfig, z_a: Tensor, z_b: Tensor
                     ) -> tuple[Tensor, dict[str, Tensor]]:
    """What a training step logs: the configured loss on (n, D) projections and its
    metrics, device scalars: ``pos_top1`` and, for NT-Xent, Table 5's
    ``contrast_entropy`` and ``contrast_acc`` (:func:`nt_xent_with_stats`)."""
    if cfg.name == "nt_xent" and not cfg.semi_hard:
        loss, top1, stats = nt_xent_with_stats(z_a, z_b, cfg.temperature, cfg.normalize,
                                               one_view=cfg.one_view_negatives)
        return loss, {"pos_top1": top1, "contrast_entropy": stats[0],
                      "contrast_acc": stats[1]}
    loss, top1 = contrastive_loss(cfg, z_a, z_b)
    return loss, {"pos_top1": top1}
