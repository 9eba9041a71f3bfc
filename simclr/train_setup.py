"""What pretraining trains with: the device and precision (and torch's process-wide
settings), the model, and the images, opened once and then fed to the loop batch by
batch, epoch after epoch (a folder decoded per epoch: the unreadable files each process
meets shared with the others, and a run stopped where too few images are left).

Apart from train.py, which calls these as :func:`simclr.train.pretrain` sets a run up
and as its loop takes batches: each builds one input the same way whatever the loop
does with it, and the loop reads in one sitting without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Generator
from typing import Any

import torch

from simclr import distributed as dist
from simclr.config import Config
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.folders import ImageList
from simclr.loader import BatchLoader
from simclr.models import SimCLRModel, build_model_within_memory
from simclr.monitor import log_line
from simclr.plan import Plan
from simclr.resume import RunState
from simclr.runtime import (
    resolve_device,
    resolve_precision,
    set_threads,
    tune_cpu_allocator,
    use_deterministic_algorithms,
)
from simclr.source import ImageSource, decode_device


def setup_model(cfg: Config, device: torch.device) -> SimCLRModel:
    model = build_model_within_memory(cfg.model, cfg.augment.size, device, cfg.memory_check)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.world_size() > 1 and cfg.model.sync_bn:
        # Global BN (Sec. 2.2): per-device statistics let the model cheat on positives.
        model = dist.convert_sync_batchnorm(model)  # type: ignore[assignment]  # (the same model)
    return model



def describe(cfg: Config, precision: str) -> str:
    """'resnet50 x1, 224 px, bf16': what one step computes, for messages."""
    return f"{cfg.model.arch} x{cfg.model.width:g}, {cfg.augment.size} px, {precision}"



def open_data(cfg: Config, all_images: bool = True, saved: dict[str, Any] | None = None,
              files: ImageList | None = None) -> ImageSource:
    """The training images (``all_images``: also those beside class folders; runs
    checkpointed before simclr took them did not); in multi-process runs rank 0 builds
    the decoded cache first (the others then open it without decoding). ``files``: the
    folder's listing (:func:`simclr.folders.list_folder` with ``all_images``), if listed already.

    ``saved``: a resumed run's checkpoint, whose ``--cache auto`` keeps the choice it
    made at the start (cached or not): the folder's images may have changed size since,
    and the two ways count unreadable files differently (the decoded cache leaves them
    out, per-epoch decoding finds them as it goes)."""
    data = cfg.data
    if saved is not None and data.cache == "auto" and isinstance(saved.get("cached"), bool):
        data = dataclasses.replace(data, cache="on" if saved["cached"] else "off")
    return dist.main_first(lambda: open_source(cfg.data.path, data, train=True,
                                               image_size=cfg.augment.size,
                                               unlabeled=all_images, listing=files))



def setup_runtime(cfg: Config) -> tuple[torch.device, str]:
    """The device and precision the run trains with, and torch's process-wide settings
    (threads, the CPU allocator, deterministic kernels or cuDNN's autotuner)."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    set_threads(cfg.threads)
    if device.type == "cpu":
        tune_cpu_allocator()
    if cfg.deterministic:
        use_deterministic_algorithms(device)
    elif device.type == "cuda":  # every step has the same shapes: cuDNN's fastest, once
        torch.backends.cudnn.benchmark = True
    return device, precision



def epoch_batches(
    cfg: Config, source: ImageSource, plan: Plan, state: RunState, device: torch.device,
) -> Generator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor], None, None]:
    """This process's (epoch, indices, images on ``device``, aspects) of every step from
    ``state.step`` on, epoch after epoch while the plan has steps left (its length may
    change as it runs: a time budget's refits). Each epoch's order is fixed by (seed,
    epoch), so a resumed run starts mid-epoch at the very batch it stopped before."""
    # Uncached JPEGs: read in the workers, decoded batched on the GPU (cfg.data.decoder).
    decode_on = None if source.cached else decode_device(cfg.data.decoder, device, source)
    if decode_on is not None:
        log_line(f"JPEGs are decoded on {decode_on}; loader workers only read the files")
    elif cfg.data.decoder == "device" and source.cached:
        # (--cache auto chose the cache at run time, so the flag was not refused up front)
        log_line("note: --decoder device has no effect here: the images are read from "
                 "their decoded cache, decoded once by PIL (--cache off decodes each epoch)")
    elif cfg.data.decoder == "device":  # (asked for, unused: said)
        log_line("note: --decoder device decodes JPEGs, and none of the images is named as "
                 "one (.jpg, .jpeg, .jpe, .jfif): the loader decodes them with PIL")
    world = dist.world_size()
    while state.step < plan.total_steps:
        epoch, in_epoch = divmod(state.step, plan.steps_per_epoch)
        check_enough_readable(source, cfg.batch_size)
        loader = BatchLoader(source, cfg.batch_size // world, seed=cfg.seed, epoch=epoch,
                             rank=dist.rank(), world_size=world, start_step=in_epoch,
                             device=device, workers=cfg.data.workers, decode_device=decode_on)
        # Closed with this generator, so what its close raises reaches train_loop.
        with contextlib.closing(iter(loader)) as batches:
            for indices, images, aspect in batches:
                yield epoch, indices, images.to(device, non_blocking=True), aspect



def check_enough_readable(source: ImageSource, batch_size: int) -> None:
    """Stop (at an epoch's start, every process alike) a run on a folder decoded per
    epoch whose unreadable files, found as it reads them, leave fewer readable images
    than a batch: each batch would hold copies of one image (substitutes for the bad
    files), each other's negatives. (A decoded cache leaves them out before the batch
    size is checked.) Each process meets those of its share of the batches: all learn
    of all (so rank 0's checkpoint lists them), one exchange an epoch."""
    if source.cached:
        return
    share_skipped(source)
    bad = len(source.skipped)
    readable = source.num_images - bad
    if readable < batch_size:
        raise SimCLRError(
            f"{source.name}: at least {bad} of its {source.num_images} image files are "
            f"unreadable (named in the log), which leaves at most {readable} images, fewer than "
            f"--batch-size {batch_size}: batches would repeat images; remove those files "
            "or lower --batch-size")



def share_skipped(source: ImageSource) -> None:
    """Every process learns the unreadable files the others met (each reads its share
    of the batches): rank 0's checkpoint and summary then list them all. A collective:
    every process calls it at the same point."""
    if not source.cached:
        source.remember_skipped([entry for found in dist.all_gather_objects(
            list(source.skipped)) for entry in found])
