"""Training a classifier on labels: the cross-entropy loop of fine-tuning (Sec. 6), the
supervised baseline and the SGD linear protocol (App. B.6), and what they share.

* ``augmented_batches``: one shuffled epoch of labeled views, each a function of (seed,
  epoch, image index) as in pretraining; ``crop_flip_config``: the evaluations' crop +
  flip; ``scheduled_lr``: cosine without warm-up; ``fitted_batch``: a batch no larger
  than a small labeled set.
* ``train_classifier``: the loop (no host sync per step), which continues exactly from
  any step; ``Checkpointing``: its periodic saves and preemption (SIGTERM/SIGINT/SIGHUP/SIGUSR1).
* ``PartialRun``: an evaluation's unfinished training, saved in its ``--out`` and
  continued when the same command runs again (other settings are refused).

Under torchrun the loop trains across processes (each its share of every global batch;
the caller wraps the model in DDP); rank 0 alone writes (``run_folder``, ``PartialRun``).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simclr import distributed as dist
from simclr.checkpoint import (
    CHECKPOINTS,
    PARTIAL_SUFFIX,
    load_checkpoint,
    load_scaler,
    load_weights,
    new_run_id,
    readable_state,
    save_checkpoint,
    stopped_while_finishing,
    what_is_kept,
)
from simclr.config import AugmentConfig
from simclr.data import decode_device
from simclr.errors import DivergedError, SimCLRError
from simclr.features import _batch_order as batch_order
from simclr.features import close_workers, encoded_batches, iter_batches, source_name
from simclr.files import lock_folder, set_aside, taken
from simclr.launch import path_word, working_folder
from simclr.memory import check_step_memory, measure_step, out_of_memory_is_an_error
from simclr.optim import check_state_shapes, gradients_finite
from simclr.plan import epoch_steps
from simclr.results import Ranked, log, prepare_dir, rank_rows, top1_hits
from simclr.runtime import SaveSchedule, StopFlag, autocast, command_line

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
    shard: tuple[int, int] = (0, 1),
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """One shuffled epoch of ``(views float (B,3,S,S) on device, labels (B,) on device)``.

    One view per image (view id 0), from ``augment.sample_params``/``apply_params`` (CPU
    parameters, applied batched on the images' device), so a
    view depends only on (seed, epoch, image index) as in pretraining. Incomplete last
    batches are dropped (BatchNorm in fine-tuning needs full batches). ``skip``: the
    epoch's first batches are passed over unread (a resumed run). An uncached source's
    decoding workers are kept for the next epoch: the caller ends them
    (:func:`simclr.features.close_workers`). An unreadable file of an uncached source
    is replaced by another image of ``indices`` (:meth:`simclr.data.ImageSource.within`),
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
            pin=pin, decode_on=decode_device("auto", device), skip=skip,
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
    Nesterov momentum, no weight decay, peak lr ``lr`` x B/256 (kept as each group's
    ``peak_lr``, which :func:`scheduled_lr` decays). Momentum 0 is plain SGD (torch
    refuses Nesterov without momentum)."""
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


# ------------------------------------------------------------------------ training loop

@dataclass
class Checkpointing:
    """Periodic checkpoints and preemption during a classifier's training.

    ``save(step, seconds)`` writes a periodic checkpoint; ``every``: steps between them
    (0: none); ``every_s``: also one when this many seconds passed since the last (0:
    off). While the training runs, SIGTERM/SIGINT/SIGHUP/SIGUSR1 ask it to stop at the end of the
    step (:class:`simclr.runtime.StopFlag`); ``on_step(step, stop)`` is called after
    every step with that flag (tests use it to simulate a preemption).
    """

    save: Callable[[int, float], Any]
    every: int
    on_step: Callable[[int, StopFlag], None] | None = None
    every_s: float = 0.0
    keep_tally: Callable[[dict[str, float]], None] | None = None
    # The latest checkpoint kept (a resumed run's to start with; each save's after), which
    # running out of memory names, and the words that continue the training from it
    # (None: --resume).
    last: str | Path | None = None
    again: str | None = None
    schedule: SaveSchedule = field(init=False)

    def __post_init__(self) -> None:
        self.schedule = SaveSchedule(self.every, self.every_s)

    def write(self, step: int, seconds: float, tally: _EpochTally, together: bool = True) -> None:
        """A periodic save; ``keep_tally`` is given the running epoch's tally first, for the
        save to store (:attr:`PartialRun.tally`): summed over the processes where they
        all save at this step (``together``), else this process's (:meth:`_EpochTally.state`)."""
        if self.keep_tally is not None:
            self.keep_tally(tally.state(together))
        self.last = self.save(step, seconds) or self.last


def train_classifier(
    model: nn.Module, source: Any, indices: np.ndarray, aug_cfg: AugmentConfig, *,
    total_steps: int, batch_size: int, optimizer: torch.optim.Optimizer,
    lr_fn: Callable[[int, float], float], seed: int, device: torch.device, precision: str,
    channels_last: bool = True, workers: int | None = None, verbose: bool = True,
    name: str = "train", refit: Callable[[int, float], int] | None = None,
    start_step: int = 0, elapsed: float = 0.0, scaler: torch.amp.GradScaler | None = None,
    checkpointing: Checkpointing | None = None, tally: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Cross-entropy training of ``model`` (x (B,3,S,S) -> logits (B,C)) for some steps.

    One augmented view per image and step (augment.sample_params/apply_params, view 0),
    shuffled epochs over ``indices``, incomplete batches dropped; every step sets each
    group's lr to ``lr_fn(step, group["peak_lr"])``. BatchNorm in train mode; fp16 uses
    a GradScaler, bf16 plain autocast. Running out of memory ends with a one-line error
    (the step's memory is checked up front by the caller: :func:`check_classifier_step`).
    ``refit(step, seconds so far)``, after every step, returns the total steps anew (a
    time budget). A resumed run passes its ``start_step``, the training seconds
    ``elapsed`` before and its ``scaler``: views and order depend only on (seed, epoch,
    index), so it continues exactly; with the saved ``tally`` of the epoch it continues
    (:meth:`_EpochTally.state`), so do that epoch's loss and top-1. With
    ``checkpointing``, SIGTERM/SIGINT/SIGHUP/SIGUSR1 stop the
    training after the step (every process at the same one: distributed.StopVote);
    without, they keep their usual effect (there is nothing to continue). Returns
    {"status": "finished" | "preempted", "signal" (the signal that asked to stop, or
    None; a run asked as its last step ended has finished), "steps", "train_loss",
    "train_top1" (of the last epoch; without its ``tally``, a continued epoch's part
    since the start; None if no step was left to run), "train_s" (all segments)}.
    ``checkpointing.keep_tally`` is given each epoch's tally as it ends too (the last:
    for the caller's final save). A loss (or gradient) that becomes non-finite stops the
    training soon after (:class:`_DivergenceWatch`: seconds, or at most 50 steps), before
    any save, with a one-line DivergedError naming its step and the checkpoint kept.
    """
    model.to(device).train()
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    steps_per_epoch = len(indices) // batch_size
    if steps_per_epoch == 0:
        raise SimCLRError(f"{name}: {len(indices)} images make no batch of {batch_size}")
    # Each process takes its share of every global batch (one process: all of it).
    batches = partial(augmented_batches, source, indices, aug_cfg, batch_size=batch_size,
                      seed=seed, device=device, workers=workers,
                      shard=(dist.rank(), dist.world_size()))
    training = _Training(model=model, optimizer=optimizer, scaler=scaler, lr_fn=lr_fn,
                         device=device, precision=precision, channels_last=channels_last,
                         batch_size=batch_size, name=name, total_steps=total_steps,
                         refit=refit, checkpointing=checkpointing, step=start_step,
                         elapsed=elapsed)
    epoch, skip = divmod(start_step, steps_per_epoch)
    mean_loss = top1 = None  # no step in this segment (continued after its last step)
    # A stop inside an epoch saved its tally: the continued epoch counts every step.
    epoch_tally = _EpochTally(device, tally if skip else None)
    try:
        # Stop signals (SIGTERM, SIGINT, SIGHUP, SIGUSR1) become a request to stop after
        # the step only where the training is kept (with checkpointing); otherwise they
        # keep their usual effect.
        with StopFlag() if checkpointing is not None else nullcontext() as stop:
            while training.step < training.total_steps and training.status == "finished":
                # Closed here (an epoch stopped early: its workers end), so what that
                # raises reaches the caller rather than being printed as ignored.
                with closing(batches(epoch=epoch, skip=skip)) as epoch_batches:
                    epoch_tally = training.run_epoch(epoch_batches, epoch, stop, epoch_tally)
                training.look(epoch, force=True)  # (the last steps, since the last look)
                epoch, skip = epoch + 1, 0
                summed = epoch_tally.state()  # (every process at this step)
                mean_loss, top1 = _EpochTally.means(summed)
                stopped = " (stopped)" if training.status != "finished" else ""
                log(f"{name} epoch {epoch}{stopped} ({training.step}/{training.total_steps} "
                    f"steps, {steps_per_epoch}/epoch): loss {mean_loss:.4f}, train top-1 "
                    f"{100 * top1:.2f}%", verbose)
                if checkpointing is not None and checkpointing.keep_tally is not None:
                    checkpointing.keep_tally(summed)
                epoch_tally = _EpochTally(device)
    finally:
        # The decoding workers, kept across the epochs, end with the training (on an
        # error or Ctrl-C too), out of the StopFlag: a Ctrl-C while they stop is raised.
        close_workers(source)
    return {"status": training.status, "signal": training.signal, "steps": training.step,
            "train_loss": mean_loss, "train_top1": top1, "train_s": training.seconds()}


@dataclass
class _Training:
    """One :func:`train_classifier` run: what every step needs, and how far the training
    got (``step``; ``total_steps``, which a time budget's ``refit`` changes; ``status``
    and the ``signal`` that asked to stop), kept together rather than passed around."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    lr_fn: Callable[[int, float], float]
    device: torch.device
    precision: str
    channels_last: bool
    batch_size: int  # named in an out-of-memory error
    name: str
    total_steps: int
    refit: Callable[[int, float], int] | None
    checkpointing: Checkpointing | None
    step: int
    elapsed: float  # training seconds of the earlier segments (a resumed run)
    status: str = "finished"
    signal: str | None = None
    start: float = field(init=False)
    vote: dist.StopVote = field(init=False)
    watch: _DivergenceWatch = field(init=False)

    def __post_init__(self) -> None:
        self.start = time.perf_counter()
        self.vote = dist.StopVote(self.device, self.step)
        self.watch = _DivergenceWatch(self.device, self.step)

    def seconds(self) -> float:
        """Training seconds so far, the earlier segments' included."""
        return self.elapsed + time.perf_counter() - self.start

    def run_epoch(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], epoch: int,
                  stop: StopFlag | None, tally: _EpochTally) -> _EpochTally:
        """Steps on ``batches`` (what is left of epoch ``epoch``, counted from 0: views
        (B,3,S,S) and labels (B,) on the device) until they run out, the last step is
        done or a signal asks to stop; returns the epoch's ``tally`` (its steps before
        these: a continued epoch's), added to."""
        batches = iter(batches)
        while (batch := self._next_batch(batches)) is not None:
            views, labels = batch
            if self.channels_last:
                views = views.contiguous(memory_format=torch.channels_last)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_fn(self.step, group["peak_lr"])
            with self._out_of_memory():
                logits, loss = classifier_step(self.model, views, labels, self.optimizer,
                                               self.scaler, self.device, self.precision)
            tally.add(loss, logits, labels)
            self.watch.add(loss)
            self.step += 1
            self._after_step(stop, tally, epoch)
            if self.step >= self.total_steps or self.signal:
                break
        return tally

    def _next_batch(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next of ``batches``, None after the last. Loading it allocates too (its
        images, their views): a failure there is the coming step's."""
        with self._out_of_memory():
            return next(batches, None)

    def _out_of_memory(self) -> AbstractContextManager[None]:
        """An allocation that fails in this step: one line naming the latest checkpoint
        and what continues the training from it (nothing, without checkpointing)."""
        kept = None if self.checkpointing is None else self.checkpointing.last
        return out_of_memory_is_an_error(self.batch_size, self.step, kept, kept is not None,
                                         None if kept is None else self.checkpointing.again)  # type: ignore[union-attr]

    def _after_step(self, stop: StopFlag | None, tally: _EpochTally, epoch: int) -> None:
        """A look at the loss when due (a diverged training stops within seconds, not at
        the epoch's end); the length anew (a time budget's ``refit``); with checkpointing,
        a save when due (of a model whose loss is still finite) and the processes' vote
        on a stop. ``epoch``: counted from 0."""
        self.look(epoch)
        seconds = self.seconds()
        if self.refit is not None:
            self.total_steps = self.refit(self.step, seconds)
        if self.checkpointing is not None:
            # (the ignore: a training that checkpoints has a StopFlag)
            self.signal = _checkpoint_and_vote(self.checkpointing, stop, self.vote, self.step,  # type: ignore[arg-type]
                                               self.total_steps, seconds, tally,
                                               partial(self.look, epoch, force=True),
                                               self.watch.finite_here)
            self.status = ("preempted" if self.signal and self.step < self.total_steps
                           else "finished")

    def look(self, epoch: int, force: bool = False) -> None:
        """Stop a training whose loss (or gradients) became non-finite in ``epoch``
        (counted from 0), where a look is due or ``force``d: see :class:`_DivergenceWatch`
        (``force`` only at a step every process forces alike)."""
        bad = self.watch.first_bad_step(self.step, force)
        if bad is not None:
            raise diverged(self.name, bad, epoch + 1, self.checkpointing)


class _EpochTally:
    """An epoch's summed loss, hits and image count, kept on the device: no host sync per
    step (one at the epoch's end). ``saved``: the :meth:`state` of the epoch's steps
    before a stop (a continued epoch). One summed over the processes (``processes`` in
    it) is rank 0's to carry on, the others start from zero, so the epoch's sum is the
    uninterrupted one's; one without (an older simclr's, or a save by one process's
    clock: rank 0's own share) is each process's, the others' shares taken as like it."""

    def __init__(self, device: torch.device, saved: dict[str, float] | None = None) -> None:
        saved = saved or {}
        if "processes" in saved and dist.rank() != 0:
            saved = {}
        self.device = device
        self.loss_sum = torch.tensor(float(saved.get("loss_sum", 0.0)), device=device)
        self.hits = torch.tensor(float(saved.get("hits", 0.0)), device=device)
        self.seen = int(saved.get("seen", 0))

    def state(self, together: bool = True) -> dict[str, float]:
        """The tally as plain numbers (a host sync), kept with a saved state: summed over
        the processes with their number as ``processes`` (``together``: an all-reduce,
        so every process calls it at the same step), else this process's own share (a
        save by one process's clock under torchrun: rank 0's is saved, the others' are
        not known to it). Under torchrun each process tallies its own share of every
        batch, so rank 0's alone gave a continued epoch another loss and top-1."""
        values = torch.stack([self.loss_sum.float(), self.hits.float(),
                              torch.tensor(float(self.seen), device=self.device)])
        world = dist.world_size()
        if not together and world > 1:
            loss_sum, hits, seen = values.tolist()
            return {"loss_sum": loss_sum, "hits": hits, "seen": int(seen)}
        loss_sum, hits, seen = (dist.all_reduce_mean(values) * world).tolist()
        return {"loss_sum": loss_sum, "hits": hits, "seen": round(seen), "processes": world}

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One step: its mean loss (a scalar), logits (B, C) and labels (B,)."""
        self.loss_sum += loss.detach() * len(labels)
        self.hits += top1_hits(logits.detach(), labels)  # (a tie is a miss, as in the test)
        self.seen += len(labels)

    def reduced(self) -> tuple[float, float]:
        """(mean loss, train top-1) of the epoch over all the processes (its loss checked
        finite before: :class:`_DivergenceWatch`); every process calls it at the same step."""
        return self.means(self.state())

    @staticmethod
    def means(summed: dict[str, float]) -> tuple[float, float]:
        """(mean loss, top-1) of a :meth:`state` summed over the processes."""
        seen = max(summed["seen"], 1)
        return summed["loss_sum"] / seen, summed["hits"] / seen


DIVERGENCE_LOOK_S = 2.0  # about the seconds between looks at the loss (a host sync each)
DIVERGENCE_LOOK_STEPS = 50  # the most steps between them (fast steps: a look still costs nothing)


class _DivergenceWatch:
    """Whether a step's loss became non-finite (or its gradients: :func:`classifier_step`
    masks the loss then), read soon after: a diverged training stops within seconds or
    ``max_interval`` steps, not at its epoch's end or next save (an ImageNet epoch's
    steps on NaN weights).

    ``add(loss)`` after every step counts the steps before the first non-finite loss on
    the device (no host sync). :meth:`first_bad_step` reads that count (one host sync;
    under torchrun one small all-reduce, so every process stops at the same step even
    where one alone saw the NaN) at steps every process picks alike
    (:class:`simclr.distributed.Cadence`, as the stop vote's: about every ``every_s``
    seconds of the slowest process's step time, at most ``max_interval`` steps apart),
    and where forced (an epoch's end, a periodic save: steps all the processes reach
    together).
    """

    def __init__(self, device: torch.device, start_step: int, every_s: float | None = None,
                 max_interval: int | None = None) -> None:
        self.device, self.start_step = device, start_step
        self.cadence = dist.Cadence(
            start_step, DIVERGENCE_LOOK_S if every_s is None else every_s,
            DIVERGENCE_LOOK_STEPS if max_interval is None else max_interval)
        self.finite = torch.ones((), dtype=torch.bool, device=device)  # every step's so far
        self.finite_steps = torch.zeros((), dtype=torch.int64, device=device)

    @property
    def last_step(self) -> int:
        """The step of the last look (``start_step`` before any)."""
        return self.cadence.last_step

    def add(self, loss: torch.Tensor) -> None:
        """One step's loss (a scalar on the device)."""
        torch.logical_and(self.finite, torch.isfinite(loss.detach()), out=self.finite)
        self.finite_steps += self.finite

    def finite_here(self) -> bool:
        """Whether this process's losses are all finite so far (a host sync; no look:
        for a save at a step the processes do not pick alike)."""
        return bool(self.finite.item())

    def first_bad_step(self, step: int, force: bool = False) -> int | None:
        """At a look (after ``step`` steps; ``force``: this one), the step (counted from
        1) whose loss was the first non-finite one of any process, if any; else None."""
        if (not self.cadence.due(step) and not force) or step == self.last_step:
            return None
        per_step = self.cadence.step_time(step)
        # (each process's count negated: the MAX is the fewest; float64: counts exact)
        looked = torch.stack([-self.finite_steps.double(),
                              torch.tensor(per_step, dtype=torch.float64, device=self.device)])
        fewest, per_step = dist.all_reduce_max(looked).tolist()  # the one host sync
        self.cadence.met(step, per_step)
        first_bad = self.start_step + int(-fewest) + 1
        return first_bad if first_bad <= step else None


def diverged(name: str, step: int, epoch: int,
             checkpointing: Checkpointing | None) -> DivergedError:
    """The one-line error of a training whose loss (or gradients) became non-finite at
    ``step`` of ``epoch`` (both counted from 1): the checkpoint kept (nothing is saved
    after it) and how to train again with a lower lr (--resume and a continued
    evaluation keep the lr; as :func:`evaluate_classifier` words it)."""
    kept = what_is_kept(None if checkpointing is None or checkpointing.last is None
                        else Path(checkpointing.last))
    how = ("" if checkpointing is None else " (into a new --out: --resume keeps the lr)"
           if checkpointing.again is None else " (in its --out: with --overwrite)")
    return DivergedError(f"{name}: the loss or its gradients became non-finite (NaN/inf) at "
                         f"step {step} (epoch {epoch}); stopping: {kept}; train it again "
                         f"with a lower --lr{how}", step)


def _checkpoint_and_vote(checkpointing: Checkpointing, stop: StopFlag, vote: dist.StopVote,
                         step: int, total_steps: int, seconds: float, tally: _EpochTally,
                         look: Callable[[], None], finite_here: Callable[[], bool],
                         ) -> str | None:
    """A periodic checkpoint when due (never of a diverged model), with the epoch's
    ``tally``; the name of a signal that asked to stop, else None. A signal may reach
    only some processes: ``vote`` makes every process stop at the same step. ``look``
    raises where the loss became non-finite (every process alike: at a save by steps);
    ``finite_here`` says whether this process's is (at a save by its own clock)."""
    if checkpointing.on_step is not None:
        checkpointing.on_step(step, stop)
    # (At the last step nothing: the caller writes the final checkpoint.)
    rule = checkpointing.schedule.due(step) if step < total_steps else None
    if rule == "steps":
        look()
        checkpointing.write(step, seconds, tally)
    elif rule == "clock" and finite_here():  # (diverged: nothing saved, no raise: see
        # SaveSchedule; the next look raises. Each process's own clock: no all-reduce.)
        checkpointing.write(step, seconds, tally, together=False)
    return vote(step, stop.requested, last=step >= total_steps)


def classifier_step(
    model: nn.Module, views: torch.Tensor, labels: torch.Tensor,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, device: torch.device,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One cross-entropy update on views (B, 3, S, S); returns (logits (B, C), loss).
    The loss is NaN where a gradient was not finite (a finite loss can have such: bf16
    on a CPU did), so the training's look at its losses (:class:`_DivergenceWatch`:
    within seconds, and before every save) stops it before that update reaches a
    checkpoint (no host sync here)."""
    with autocast(device, precision):
        logits = model(views)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    loss = loss.masked_fill(~gradients_finite(optimizer, scaler), math.nan)
    scaler.step(optimizer)
    scaler.update()
    return logits, loss


def evaluate_classifier(
    model: nn.Module, test: Any, image_size: int, *, batch_size: int, device: torch.device,
    precision: str, channels_last: bool = True, workers: int | None = None,
    again: str = "in its --out: with --overwrite",
) -> tuple[Ranked, np.ndarray]:
    """The test logits, each batch reduced to what the results need of it as it comes
    (:func:`simclr.results.rank_rows`: O(M) numbers, where the float32 (M, C) logits of
    100k test images x 10k classes took 4 GB), and labels (M,): eval transform, BN in
    eval mode. Outputs that are not finite are the training's divergence (its losses
    were measured before each update: the last one may have diverged unseen), not the
    checkpoint's: the message says to train again, ``again`` how."""
    labels_all = np.asarray(test.labels, dtype=np.int64)
    parts, seen = [], []
    with closing(encoded_batches(model, test, image_size, batch_size, device, precision,
                                 channels_last=channels_last, workers=workers)) as batches:
        for idx, logits in batches:
            if not torch.isfinite(logits).all():
                raise SimCLRError(f"{source_name(test)}: the trained model's outputs are not "
                                  "finite: its training diverged; train it again with a lower "
                                  f"--lr ({again})")
            labels = labels_all[idx.numpy()]
            parts.append(rank_rows(logits, labels))
            seen.append(labels)
    if not parts:
        raise SimCLRError(f"{source_name(test)}: no images to evaluate")
    return Ranked.join(parts, parts[0].num_classes), np.concatenate(seen)


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



# ------------------------------------------------------- continuing an evaluation's training

def partial_weights_digest(*modules: nn.Module | None) -> str:
    """A short fingerprint of the modules' weights and buffers, kept in a
    :class:`PartialRun`'s settings so an unfinished run is never continued on another
    network (e.g. a checkpoint pretrained again in place). Not
    :func:`simclr.pretrained.weights_digest` (the embeddings' key: dtypes and shapes
    too): its value, saved in partial runs, stays as it was."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in ([] if module is None else module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
                          .numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class PartialRun:
    """An evaluation's unfinished training, kept in its ``--out`` as
    ``checkpoints/<name>-partial.pt`` and continued by the same command.

    ``settings`` (plain data) fix the run: the training set, subset, budget, optimizer,
    views and source checkpoint. A saved run whose settings differ (or that cannot be
    read) is refused, never continued, and written over only with ``overwrite`` (the
    command's --overwrite; "keep": set aside as ``NAME-partial.previous-K.pt``, as a
    sweep keeps what it evaluates anew); ``out`` None keeps nothing.
    """

    out: Path | None
    name: str  # "finetune", "linear"
    what: str  # in messages: "fine-tuning", "linear evaluation"
    settings: dict[str, Any]
    overwrite: bool | str = False
    held: Any = None  # the lock on ``out`` while the training runs (files.lock_folder)
    metrics: dict[str, Any] = field(default_factory=dict)  # those saved with the state
    run_id: str = field(default_factory=new_run_id)  # the training's: the saved one's, continued
    results: tuple[str, ...] = ()  # what the finished run writes in ``out`` (results.RESULTS)
    # The running epoch's tally (_EpochTally.state) at the state saved or resumed: a
    # continued epoch's loss and top-1 count its steps before the stop too.
    tally: dict[str, float] | None = None
    # ``out``'s results are this training's, stopped while it wrote them (resumed: see
    # checkpoint.stopped_while_finishing): they are written anew, without --overwrite.
    finishing: bool = False
    # The unreadable files (path, reason) the saved sessions met (the state's
    # ``skipped_images``, as pretraining's; an older file has none): the caller's source
    # remembers them, so what it records trained on is an uninterrupted run's.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # The training's length in steps: the caller's, or the saved one's where continued
    # (saved with the state: a rule of counting changed since cannot move it mid-run).
    total: int | None = None

    @property
    def path(self) -> Path | None:
        return None if self.out is None else self.out / CHECKPOINTS / f"{self.name}{PARTIAL_SUFFIX}"

    def _listed_subset_hint(self, differ_keys: list[str], saved: dict[str, Any]) -> str:
        """How to continue a run whose labeled subset alone differs, where it listed it
        (fine-tuning's labeled_subset.txt): its own command draws another subset where
        the draw changed since (an earlier simclr's draw by class index); the list, with
        the epochs saved (--subset's default follows the list's share, not the fraction
        asked), continues it. Else rerunning its own command does."""
        from simclr.subsets import SUBSET_FILE, read_subset_list

        own = "rerun its own command to continue it"
        listed = None if self.out is None else Path(self.out) / SUBSET_FILE
        if differ_keys != ["subset"] or listed is None or not listed.is_file():
            return own
        try:  # (a source without files, the digits, lists `#index N` lines: no --subset)
            read_subset_list(listed)
        except SimCLRError:
            return own
        epochs = f" --epochs {saved['epochs']}" if saved.get("epochs") is not None else ""
        return (f"{own}, with --subset {path_word(listed)}{epochs} (the images it trains "
                "on) in place of --label-fraction / --labels-per-class")

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, verbose: bool,
               prefix: str = "", total: int | None = None,
               earlier_total: int | None = None) -> tuple[int, float]:
        """Load the saved state into the run (``model`` from the weights under
        ``prefix``): (step, training seconds); (0, 0.0) if nothing was saved. A state
        saved after the last of ``total`` steps (a run stopped in its test) is only
        tested again; one stopped while its results were written (:attr:`finishing`)
        writes them again. Rank 0 holds ``out`` from here on: a second command training
        into it is refused, and so is this one where another finished there meanwhile
        (its ``results``, unless ``overwrite``). :attr:`total` is ``total``, or the
        saved run's length (``earlier_total`` for a file that recorded none: an earlier
        simclr's count)."""
        self.total = total
        if self.out is not None and dist.is_main() and self.out.is_dir():
            self.held = lock_folder(self.out)
            self.finishing = stopped_while_finishing(self.out, self.results)
            self._check_results_free()
        if self.path is None or not self.path.exists():
            return 0, 0.0
        try:
            ckpt = load_checkpoint(self.path)
        except SimCLRError as exc:  # kept for the user to look at, unless told otherwise
            if self.overwrite:
                return self.start_over("cannot be read")
            raise SimCLRError(f"{exc}; delete it or pass --overwrite to start the "
                              f"{self.what} in {self.out} again") from None
        saved = ckpt.get("settings") or {}
        # The same weights under another path: the run folder was moved or renamed since
        moved = saved.get("weights") is not None and saved.get("weights") == \
            self.settings.get("weights")
        differ_keys = [k for k, v in self.settings.items()
                       if not _same_setting(k, saved.get(k), v, moved)]
        differ = [_difference(k, saved.get(k), self.settings[k]) for k in differ_keys]
        if differ and self.overwrite:
            return self.start_over(f"has other settings ({'; '.join(differ)})")
        if differ:
            way = self._listed_subset_hint(differ_keys, saved)
            raise SimCLRError(f"{self.out} holds an unfinished {self.what} ({self.path.name}) "
                              f"with other settings ({'; '.join(differ)}); {way}, pass "
                              "--overwrite to start this one over it, or choose another --out")
        load_weights(model, ckpt, prefix)
        with readable_state(ckpt, "optimizer or step state"):
            check_state_shapes(optimizer, ckpt["optimizer"], model)  # (torch does not)
            optimizer.load_state_dict(ckpt["optimizer"])
            load_scaler(scaler, ckpt["scaler"])
            step, elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
            self.tally = saved_tally(ckpt.get("epoch_tally"))  # (None: an older file's)
            self.skipped = [(str(path), str(reason))
                            for path, reason in ckpt.get("skipped_images") or []]
        self.metrics = dict(ckpt.get("metrics") or {})
        self.run_id = str(ckpt.get("run_id") or self.run_id)
        saved_total = ckpt.get("total_steps", earlier_total)
        if total is not None and isinstance(saved_total, int) and saved_total != total:
            log(f"note: the {self.what} keeps the length it started with, {saved_total} "
                f"steps ({total} as counted now)", verbose)
            self.total = total = saved_total
        if total is not None and step >= total:
            log(f"the {self.what} in {self.out} finished its {step} steps before it was "
                "stopped: testing it again", verbose)
        else:
            log(f"resuming the {self.what} in {self.out} from step {step}", verbose)
        return step, elapsed

    def _check_results_free(self) -> None:
        """The command checked ``results`` free before it took ``out``; another one that
        held it meanwhile may have finished there: refused, its results kept."""
        # (the ignores here and below: called only for a run with an out)
        found = next((self.out / name for name in self.results  # type: ignore[operator]
                      if os.path.lexists(self.out / name)), None)  # type: ignore[operator]
        if found is not None and not self.overwrite and not self.finishing:
            self.release()
            raise taken(found)

    def trained_stats(self, stats: dict[str, Any], start_step: int) -> dict[str, Any]:
        """``stats`` of :func:`train_classifier` from ``start_step``; a run resumed after
        its last step trained nothing now: its loss and top-1 are the saved ones."""
        if start_step > 0 and stats["steps"] == start_step:
            stats.update({k: self.metrics.get(k) for k in ("train_loss", "train_top1")})
        return stats

    @contextmanager
    def testing(self) -> Iterator[None]:
        """The test of a finished training, saved before it (:meth:`save`), and the
        writing of its results: a stop during them (Ctrl-C; SIGTERM, cli.Terminated)
        leaves that state for the same command to test again and write the results
        (:attr:`finishing`), and the exception names it (``kept_training``: the cli
        says so); ``out`` is let go."""
        try:
            yield
        except KeyboardInterrupt as exc:
            if self.path is not None and self.path.exists():
                exc.kept_training = str(self.path)  # type: ignore[attr-defined]
            self.release()
            raise

    def start_over(self, why: str) -> tuple[int, float]:
        """--overwrite: the saved unfinished run, which ``why`` says cannot be
        continued, is deleted (set aside with ``overwrite`` "keep") and this one starts
        at step 0. (The same settings are
        continued even then: an exact resume ends where a new start would.)"""
        if dist.is_main() and self.overwrite == "keep":
            kept = set_aside(self.out, (self.path.relative_to(self.out).as_posix(),))  # type: ignore[arg-type, union-attr]
            print(f"note: the unfinished {self.what} in {self.out} ({self.path.name}) {why}; "  # type: ignore[union-attr]
                  f"kept as {kept}, starting over", file=sys.stderr)
        elif dist.is_main():
            print(f"note: --overwrite: the unfinished {self.what} in {self.out} "
                  f"({self.path.name}) {why}; deleted, starting over", file=sys.stderr)  # type: ignore[union-attr]
            self.path.unlink(missing_ok=True)  # type: ignore[union-attr]
        self.finishing = False  # (the results there are then another run's)
        return 0, 0.0

    def checkpointing(self, save: Callable[[int, float], Any], every: int,
                      on_step: Callable[[int, StopFlag], None] | None,
                      minutes: float) -> Checkpointing:
        """The training's :class:`Checkpointing`: ``save`` every ``every`` steps or
        ``minutes``, each with the running epoch's tally; the state it continues from, if
        any, is the latest kept, and the same command continues from it."""
        kept = self.path if self.path is not None and self.path.exists() else None
        return Checkpointing(save, every, on_step, every_s=60 * minutes,
                             keep_tally=self.keep_tally, last=kept,
                             again="run the same command again")

    def keep_tally(self, tally: dict[str, float]) -> None:
        """The running epoch's tally, stored by the next :meth:`save`
        (:attr:`Checkpointing.keep_tally`)."""
        self.tally = tally

    def save(self, blob: dict[str, Any], scaler: torch.amp.GradScaler) -> str:
        """Write a classifier checkpoint (classifiers.classifier_checkpoint, with its
        optimizer) as the partial run, with the running epoch's :attr:`tally` (rank 0
        only: every process holds the same state); returns its path."""
        if dist.is_main():  # argv: the command that continues it (simclr info shows it)
            blob.update(scaler=scaler.state_dict(), settings=self.settings,
                        argv=command_line(), cwd=working_folder())  # (its paths may be relative)
            if self.total is not None:
                blob["total_steps"] = self.total
            if self.tally is not None:
                blob["epoch_tally"] = self.tally
            save_checkpoint(blob, self.path.parent, self.path.name)  # type: ignore[union-attr]
        return str(self.path)

    def discard(self) -> None:
        """The finished run's own files, all written, supersede the partial one (kept
        until then: see :attr:`finishing`); ``out`` is let go."""
        if self.path is not None and dist.is_main():
            self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """``out`` is let go (a second command may write into it)."""
        if self.held is not None:
            self.held.close()
            self.held = None


def saved_tally(saved: Any) -> dict[str, float] | None:
    """A partial (or supervised) checkpoint's ``epoch_tally`` as numbers (KeyError, TypeError,
    ValueError where damaged: see checkpoint.readable_state); None where absent."""
    if saved is None:
        return None
    tally = {"loss_sum": float(saved["loss_sum"]), "hits": float(saved["hits"]),
             "seen": int(saved["seen"])}
    if "processes" in saved:  # summed over them (an older file's: rank 0's share)
        tally["processes"] = int(saved["processes"])
    return tally


def _same_setting(key: str, saved: Any, now: Any, moved: bool) -> bool:
    """Whether a continuation's setting matches the saved one; ``moved``: the encoder's
    weights are the same (its digest), so its checkpoint's path may differ (a moved run:
    it was refused, and --overwrite threw the training away)."""
    if key == "source" and moved and isinstance(saved, list) and isinstance(now, list):
        return saved[1:] == now[1:]  # (source: [checkpoint path, step, ...])
    return saved == now


def _difference(key: str, saved: Any, now: Any) -> str:
    """A setting that differs, with both values (a mapping's differing entries, each;
    a long value by its end, where a path differs: 'source file: '...a/last.pt' saved,
    '...b/last.pt' now'); a key alone said nothing of which encoder was which."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return "; ".join(_difference(f"{key} {k}", saved.get(k), now.get(k))
                         for k in sorted({*saved, *now}, key=str) if saved.get(k) != now.get(k))

    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else repr("..." + str(value)[-50:])

    return f"{key}: {shown(saved)} saved, {shown(now)} now"


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
