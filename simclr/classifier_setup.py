"""What a classifier training is set up with, around its loop (:mod:`simclr.classify`):
the pieces fine-tuning (Sec. 6), the supervised baseline and the SGD linear protocol
(App. B.6) each assemble it from.

* ``augmented_batches``: one shuffled epoch of labeled views, each a function of (seed,
  epoch, image index) as in pretraining; ``crop_flip_config``: the evaluations' crop +
  flip.
* ``total_steps``: its length in steps; ``nesterov_sgd`` and ``scheduled_lr``: its
  optimizer and cosine without warm-up; ``fitted_batch``: a batch no larger than a small
  labeled set; ``init_linear``: a new linear head.
* ``check_classifier_step``, ``check_batch_norm_share``: a batch refused before the
  command writes anything; ``run_folder``: an evaluation's ``--out`` (its unfinished
  training, saved there and continued when the same command runs again, is
  :mod:`simclr.partial`'s ``PartialRun``).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simclr import distributed as dist
from simclr.errors import SimCLRError
from simclr.features import batch_order, iter_batches
from simclr.memory import check_step_memory, measure_step
from simclr.plan import epoch_steps
from simclr.results import log, prepare_dir
from simclr.source import decode_device

# ---------------------------------------------------------------------- labeled batches

def crop_flip_config(image_size: int, crop_scale: tuple[float, float] = (0.08, 1.0),
                     crop_sampler: str = "torchvision") -> Any:
    """The paper's evaluation-time training augmentation: random resized crop + flip only
    (``crop_sampler="official"``: drawn as the official code draws them)."""
    from simclr.config import AugmentConfig
    from simclr.validate import check_crops, validate_augment

    cfg = AugmentConfig(size=image_size, crop=True, crop_scale=tuple(crop_scale), flip=True,  # type: ignore[arg-type]  # (validated)
                        crop_sampler=crop_sampler, color=False, grayscale=False, blur=False,
                        cutout=False, rotate=False, noise=False, sobel=False)
    validate_augment(cfg)  # the same one-line messages as pretraining's flags
    check_crops(cfg)
    return cfg


def augmented_batches(
    source: Any, indices: np.ndarray, aug_cfg: Any, *, batch_size: int, epoch: int,
    seed: int, device: torch.device, workers: int | None = None, skip: int = 0,
    shard: tuple[int, int] = (0, 1), decoder: str | None = None,
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """One shuffled epoch of ``(views float (B,3,S,S) on device, labels (B,) on device)``.

    One view per image (view id 0), from ``augment.sample_params``/``apply_params`` (CPU
    parameters, applied batched on the images' device), so a
    view depends only on (seed, epoch, image index) as in pretraining. Incomplete last
    batches are dropped (BatchNorm in fine-tuning needs full batches). ``skip``: the
    epoch's first batches are passed over unread (a resumed run). ``decoder``: where an
    uncached source's JPEGs decode (``--decoder``, None: the source's own;
    :func:`simclr.source.decode_device`).
    An uncached source's decoding workers are kept for the next epoch: the caller ends them
    (:func:`simclr.features.close_workers`). An unreadable file of an uncached source
    is replaced by another image of ``indices`` (:meth:`simclr.source.ImageSource.within`),
    never by one outside them: a labeled subset (Sec. 6) trains on its own images alone.
    That image comes with its label, its views drawn for the unreadable file's index:
    under its own they were bit-identical to its own row's in the same batch.
    """
    from simclr.augment import apply_params, sample_params

    labels_all = torch.as_tensor(np.asarray(source.labels, dtype=np.int64))
    pin = device.type == "cuda"  # a pinned copy goes without waiting for the GPU
    indices = np.asarray(indices, dtype=np.int64)
    read, positions = source, indices
    if not getattr(source, "cached", True) and len(indices) < source.num_images:
        # Positions in the subset's own source, shuffled alike (the same batches); the
        # indices come back as the source's, for the views and labels.
        read, positions = source.within(indices), np.arange(len(indices))
    # What each row asked for, as iter_batches orders it (every row is kept: replaced
    # where unreadable), which the views are drawn for; the labels are the images'.
    asked, share = batch_order(positions, batch_size, [seed, epoch], True, shard, skip)
    for step, (idx, images, aspect) in enumerate(iter_batches(
            read, positions, batch_size, seed=[seed, epoch], drop_last=True, workers=workers,
            pin=pin, decode_on=decode_device(decoder, device, source), skip=skip,
            shard=shard, keep_workers=True)):
        drawn = asked[step * share:(step + 1) * share]
        if read is not source:
            idx, drawn = torch.from_numpy(indices[idx.numpy()]), indices[drawn]
        params = sample_params(aug_cfg, seed, epoch, torch.from_numpy(drawn), 0,
                               tuple(images.shape[-2:]), aspect)  # type: ignore[arg-type]  # (H, W)
        images = images.to(device, non_blocking=True)
        labels = labels_all[idx]
        labels = labels.pin_memory() if pin else labels
        yield apply_params(images, params, aug_cfg), labels.to(device, non_blocking=True)


def total_steps(epochs: float, images: int, batch: int) -> int:
    """A classifier training's length: ``epochs`` (fractions allowed) of full batches,
    rounded up and at least one step, as pretraining counts (plan.epoch_steps: the
    epochs as written, 1.1 x 100 is 110, not the float product's 111)."""
    return epoch_steps(epochs, images // batch)


def earlier_total_steps(epochs: float, images: int, batch: int) -> int:
    """:func:`total_steps` as an earlier simclr counted it (the float product rounded
    up), whose partial files recorded no length: a run it started continues to it."""
    return max(1, math.ceil(epochs * (images // batch)))


def nesterov_sgd(params: Any, lr: float, batch: int, momentum: float) -> torch.optim.SGD:
    """The optimizer of fine-tuning and of the SGD linear protocol (App. B.5, B.6):
    Nesterov momentum, no weight decay (unless ``params`` are groups that set one),
    peak lr ``lr`` x B/256 (kept as each group's ``peak_lr``, which :func:`scheduled_lr`
    decays). Momentum 0 is plain SGD (torch refuses Nesterov without momentum)."""
    peak = lr * batch / 256
    optimizer = torch.optim.SGD(params, lr=peak, momentum=momentum, nesterov=momentum > 0,
                                weight_decay=0.0)
    for group in optimizer.param_groups:
        group["peak_lr"] = peak
    return optimizer


def scheduled_lr(step: int, total: int, peak: float, schedule: str = "cosine") -> float:
    """No warm-up; cosine decay from ``peak`` to 0 over ``total`` steps, or constant."""
    if schedule == "constant":
        return peak
    if schedule != "cosine":
        raise SimCLRError(f"--schedule: unknown value {schedule!r} (choose from cosine, constant)")
    from simclr.optim import lr_at

    return lr_at(step, total, 0, peak)


def fitted_batch(batch_size: int, num_images: int, which: str, verbose: bool) -> int:
    """The batch of a classifier trained on ``num_images`` labeled images: at most all of
    them (a small labeled set is one batch per step, its lr scaled for it), said when so;
    under torchrun a multiple of the processes, which share it equally."""
    dist.check_divisible(batch_size)
    world = dist.world_size()
    batch = min(batch_size, num_images // world * world)
    if batch == 0:
        raise SimCLRError(f"{num_images} {which} images cannot be shared by {world} processes")
    if batch < batch_size:
        shared = f" ({world} processes' equal shares)" if batch < num_images else ""
        log(f"--batch-size {batch_size} is more than the {num_images} {which} images: "
            f"batches of {batch}{shared}, lr scaled by {batch}/256", verbose)
    return batch


def init_linear(dim: int, num_classes: int, gen: torch.Generator) -> nn.Linear:
    """Linear classifier, weights N(0, 0.01^2) and zero bias (official linear head)."""
    with torch.random.fork_rng(devices=[]):  # (its default init: not the caller's RNG)
        layer = nn.Linear(dim, num_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.01)
        layer.bias.zero_()
    return layer


def check_classifier_step(model: nn.Module, image_size: int, batch_size: int,
                          device: torch.device, precision: str, channels_last: bool,
                          name: str, enforce: bool = True,
                          override: str | None = None) -> None:
    """Refuse a batch whose measured step memory cannot fit (simclr.memory), before
    the command writes anything. ``batch_size``: the global batch, each of the
    processes taking its share (the refusal names it, as --batch-size, and a global
    batch that fits, as pretraining's). ``override``: the command's flag that skips the
    check (``simclr supervised --no-memory-check``; fine-tuning has none); skipped
    (``enforce=False``), nothing is measured: views too large to measure on would refuse
    the command."""
    if not enforce:
        return
    step_memory = measure_step(model, image_size, device, precision, channels_last,
                               contrastive=False)
    check_step_memory(step_memory, batch_size, dist.world_size(), device,
                      f"{name}, {image_size} px, {precision}", override=override)


def run_folder(run_dir: str | Path | None, results: tuple[str, ...],
               overwrite: bool = False) -> Path | None:
    """An evaluation's ``--out`` (absolute, resolved): checked and created by rank 0, the
    process that writes (``overwrite``: replacing an earlier run's ``results``); the
    others only name it (they read an unfinished training from it)."""
    if dist.is_main():
        return prepare_dir(run_dir, results, overwrite=overwrite)
    return None if run_dir is None else Path(run_dir).expanduser().resolve()


def check_batch_norm_share(batch: int, requested: int, sync_bn: bool) -> None:
    """Per-process BatchNorm (--no-sync-bn) over one image a process has no statistics
    (a traceback in training at small sizes, silently one image's at larger ones):
    refused. ``batch``: the global batch trained, ``requested``: --batch-size (larger
    when the labeled images are fewer: more of them is then what helps)."""
    world = dist.world_size()
    if sync_bn or world == 1 or batch // world >= 2:
        return
    fix = (f"give a --batch-size of at least {2 * world}" if batch == requested else
           f"the batch is all {batch} labeled images (--batch-size {requested}): label at "
           f"least {2 * world}")
    raise SimCLRError(f"--no-sync-bn: each of the {world} processes would take BatchNorm "
                      f"statistics from {batch // world} image; {fix}, or keep global BN")


def batch_norm_setting(sync_bn: bool) -> str:
    """Where a fine-tuning's BatchNorm takes its statistics from, among its settings."""
    world = dist.world_size()
    return "global" if sync_bn or world == 1 else f"per process ({world} processes)"
