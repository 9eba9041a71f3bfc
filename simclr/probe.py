"""What a representation keeps of the augmentation: the transformation probe (Table 3).

Chen et al. 2020 (Sec. 4.2, Table 3) train an MLP on h and on z = g(h) to predict which
transformation was applied to an image, and find that z loses that information (it is
trained to be invariant to it) while h keeps it: one reason the representation before
the head is the better one. The four tasks of Table 3:

===========  ==========================================================  =======
task         label                                                       classes
===========  ==========================================================  =======
gray         colour (0) vs grayscale (1), grayscale at p = 0.5             2
rotation     quarter turns 0, 90, 180, 270 degrees, uniform                4
noise        original (0) vs gaussian noise, std in [hi/2, hi] (1)         2
sobel        original (0) vs Sobel-filtered (1), p = 0.5                   2
===========  ==========================================================  =======

The views otherwise go through the crop and colour augmentation of the checkpoint's own
pretraining config; the rotation, noise, sobel and cutout extras are switched off except
the probed one. For the last three rows the paper pretrains with rotation, noise and
Sobel added to crop and colour ("additionally and independently"): only then was z
trained to ignore them, so a checkpoint pretrained without the probed op is named.
Labels come from the sampled parameters, so a view's label is exactly what was done.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import closing
from typing import Any

import numpy as np
import torch
from torch import nn

from simclr.augment import apply_params, sample_params
from simclr.config import AugmentConfig
from simclr.errors import SimCLRError
from simclr.features import (
    channels_last_weights,
    close_workers,
    iter_batches,
    resolve_runtime,
    restore_flags,
    train_flags,
)
from simclr.logistic import Standardizer
from simclr.models import SimCLRModel
from simclr.plan import epoch_steps
from simclr.progress import Progress
from simclr.results import log, topk_accuracy
from simclr.runtime import autocast
from simclr.source import decode_device

TASKS = ("gray", "rotation", "noise", "sobel")
# Each task's op among the pretraining augmentations (AugmentConfig field, flag --NAME)
PRETRAINING_OP = {"gray": "grayscale", "rotation": "rotate", "noise": "noise", "sobel": "sobel"}
PROBE_VIEW = 7  # view id of probe views: distinct from pretraining's views 0 and 1


def probe_config(base: AugmentConfig, task: str) -> tuple[AugmentConfig, int]:
    """(augmentation with the probed op on and the other extras off, number of classes).
    Fig. 5's protocol (``asymmetric``, ``first_op``) is off too: it would leave every view
    but view 0 untouched, and the probe's views are others."""
    cfg = dataclasses.replace(base, rotate=False, noise=False, sobel=False, cutout=False,
                              asymmetric=False, first_op="")
    if task == "gray":
        return dataclasses.replace(cfg, grayscale=True, grayscale_p=0.5), 2
    if task == "rotation":  # p 3/4 of a turn in {90, 180, 270}: each of 4 classes at 1/4
        return dataclasses.replace(cfg, rotate=True, rotate_p=0.75), 4
    if task == "noise":  # a clearly visible std, so "corrupted" is a fact, not a coin
        hi = max(base.noise_std[1], 1e-3)
        return dataclasses.replace(cfg, noise=True, noise_p=0.5, noise_std=(hi / 2, hi)), 2
    if task == "sobel":
        return dataclasses.replace(cfg, sobel=True, sobel_p=0.5), 2
    raise ValueError(f"unknown probe task {task!r} (choose from {', '.join(TASKS)})")


def probe_labels(params: Any, task: str) -> torch.Tensor:
    """The class of each view (B,) int64, read off its sampled parameters."""
    if task == "gray":
        return params.gray.long()
    if task == "rotation":
        return params.rotate.long()
    if task == "noise":
        return (params.noise_std > 0).long()
    return params.sobel.long()


def probe_features(
    model: SimCLRModel, source: Any, aug: AugmentConfig, task: str, views: int,
    seed: int, batch_size: int, device: torch.device, precision: str,
    progress: str | None = None, keep_workers: bool = False, channels_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h (V*N, D), z (V*N, out_dim) float32 and labels (V*N,) of ``views`` probe views
    per image, the model in eval mode (flags restored); ``progress``: the pass's name on
    stderr (rank 0 alone), None: unseen. An uncached source's decoding workers serve
    every view (a DataLoader per view started its workers anew: seconds each under
    spawn) and end with the pass, on an error too; with ``keep_workers`` they stay for
    the caller's next pass over ``source``, which ends them (features.close_workers).
    ``channels_last``: views and weights in that memory format (the faster), the
    model's own layout restored after (features.channels_last_weights)."""
    flags = train_flags(model)
    model.to(device).eval()
    hs, zs, ys = [], [], []
    shown = Progress.of_named_pass(views * source.num_images, progress, unit="view")
    try:
        with channels_last_weights(model, channels_last), torch.inference_mode():
            for view in range(views):
                # Closed here, not when collected: a Ctrl-C in the model's forward then
                # reaches the batches, whose workers end at once (runtime's
                # close_loader_iterator), not after the batch each is decoding.
                with closing(iter_batches(
                        source, np.arange(source.num_images), batch_size,
                        pin=device.type == "cuda", decode_on=decode_device(None, device, source),
                        keep_workers=True)) as batches:
                    for idx, images, aspect in batches:
                        params = sample_params(aug, seed, view, idx, PROBE_VIEW,
                                               tuple(images.shape[-2:]), aspect)  # type: ignore[arg-type]  # (H, W)
                        x = apply_params(images.to(device, non_blocking=True), params, aug)
                        if channels_last:
                            x = x.contiguous(memory_format=torch.channels_last)
                        with autocast(device, precision):
                            h, z = model(x)
                        hs.append(h.float().cpu())
                        zs.append(z.float().cpu())
                        ys.append(probe_labels(params, task))
                        shown.advance(len(idx))
    finally:
        shown.close()
        restore_flags(flags)
        if not keep_workers:
            close_workers(source)
    return torch.cat(hs), torch.cat(zs), torch.cat(ys)


def train_mlp_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    classes: int, epochs: float = 50, hidden: int = 512, lr: float = 1e-3, seed: int = 0,
) -> dict[str, float]:
    """An MLP (D -> hidden -> classes, ReLU) on standardised features; Adam, batches of
    256, ``epochs`` passes (a fraction: that share of the last pass's batches, rounded
    up). Returns train and test top-1 (fractions). The paper's "additional MLPs"."""
    gen = torch.Generator().manual_seed(seed)
    # linear evaluation's rule: a feature constant on the training views (a ReLU channel
    # dead there) is left unscaled, not divided by ~0 (alive on a test view, it would
    # reach first-layer weights that never trained ~1e6 times too large)
    norm = Standardizer(train_x)
    xtr, xte = norm(train_x), norm(test_x)
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(xtr.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, classes))
    opt = torch.optim.Adam(mlp.parameters(), lr=lr)
    steps = epoch_steps(epochs, math.ceil(len(xtr) / 256))  # (as written: 1.1 x 390 is 429)
    while steps > 0:  # a fresh permutation per pass, the last pass cut at `steps`
        for rows in torch.randperm(len(xtr), generator=gen).split(256)[:steps]:
            loss = nn.functional.cross_entropy(mlp(xtr[rows]), train_y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps -= 1
    with torch.no_grad():
        (train_acc,), (test_acc,) = (topk_accuracy(mlp(x), y, (1,))
                                     for x, y in ((xtr, train_y), (xte, test_y)))
    return {"train_top1": train_acc, "top1": test_acc}


def run_transform_probe(
    model: SimCLRModel, train: Any, test: Any, aug: AugmentConfig, tasks: tuple[str, ...],
    *, views: int = 2, epochs: float = 50, seed: int = 0, batch_size: int = 256,
    device: str | torch.device = "cpu", precision: str = "auto", verbose: bool = True,
    channels_last: bool = True,
) -> dict[str, Any]:
    """Table 3 for one model: per task, MLP test top-1 from h and from z = g(h) (z is
    None for a model without a head, whose z is h). ``channels_last``: views and
    weights in that memory format (the faster; :func:`probe_features`)."""
    # The MLP standardises h over the training views: a single one has no spread.
    for name, source, least in (("the training set", train, math.ceil(2 / views)),
                                ("the test set", test, 1)):
        if source.num_images < least:
            raise SimCLRError(f"{name} has {source.num_images} readable image(s); the "
                              f"probe needs at least {least}")
    dev, prec = resolve_runtime(device, precision)
    began = time.perf_counter()
    results: dict[str, Any] = {"command": "transform-probe", "views_per_image": views,
                               "epochs": epochs, "image_size": aug.size, "seed": seed,
                               "precision": prec, "channels_last": channels_last,
                               "tasks": {}}
    headless = len(model.head.layers) == 0  # --head none: z = h, one probe says it all
    if headless:
        results["note"] = ("the checkpoint has no projection head (--head none): z = h, "
                           "so only h is probed and z is null")
        log(f"transform probe: {results['note']}", verbose)
    # Table 3 adds rotation, noise and Sobel to pretraining for its last three rows: z
    # can only have learnt to ignore an op the checkpoint was pretrained with.
    unseen = [task for task in tasks if not getattr(aug, PRETRAINING_OP[task])]
    if unseen:
        results["not_in_pretraining"] = unseen
        log(f"transform probe: the checkpoint was pretrained without {', '.join(unseen)}, so "
            f"z was never trained to be invariant to it (Table 3 pretrains with the probed op: "
            f"{' '.join('--' + PRETRAINING_OP[t] for t in unseen)})", verbose)
    try:
        for task in tasks:
            results["tasks"][task] = _probe_task(model, train, test, aug, task, views, epochs,
                                                 seed, batch_size, dev, prec, headless,
                                                 verbose, channels_last)
    finally:
        # Each source's decoding workers serve all its passes (every task's), ended
        # once here, on an error or Ctrl-C too.
        close_workers(train)
        close_workers(test)
    results["elapsed_s"] = time.perf_counter() - began
    return results


def _probe_task(model: SimCLRModel, train: Any, test: Any, aug: AugmentConfig, task: str,
                views: int, epochs: float, seed: int, batch_size: int, device: torch.device,
                precision: str, headless: bool, verbose: bool,
                channels_last: bool) -> dict[str, Any]:
    """:func:`run_transform_probe`'s row of one task: the MLPs' top-1 on h and z (None
    when ``headless``) and the test views' majority share; the sources' decoding
    workers are kept for the next task's passes."""
    start = time.perf_counter()
    cfg, classes = probe_config(aug, task)
    h_tr, z_tr, y_tr = probe_features(model, train, cfg, task, views, seed, batch_size,
                                      device, precision, f"{task} views of --train" if verbose
                                      else None, keep_workers=True,
                                      channels_last=channels_last)
    h_te, z_te, y_te = probe_features(model, test, cfg, task, 1, seed + 1, batch_size,
                                      device, precision, f"{task} views of --test" if verbose
                                      else None, keep_workers=True,
                                      channels_last=channels_last)
    row: dict[str, Any] = {"classes": classes, "num_train": len(y_tr), "num_test": len(y_te),
                           "majority": float(np.bincount(y_te.numpy()).max() / len(y_te))}
    row["h"] = train_mlp_probe(h_tr, y_tr, h_te, y_te, classes, epochs, seed=seed)
    row["z"] = None if headless else train_mlp_probe(z_tr, y_tr, z_te, y_te, classes,
                                                     epochs, seed=seed)
    z = "z = h" if headless else f"z {100 * row['z']['top1']:.1f}%"
    log(f"transform probe {task}: h {100 * row['h']['top1']:.1f}%, "
        f"{z} (majority {100 * row['majority']:.1f}%, "
        f"{time.perf_counter() - start:.0f} s)", verbose)
    return row
