"""Training a classifier on labels: the cross-entropy loop of fine-tuning (Sec. 6), the
supervised baseline and the SGD linear protocol (App. B.6), and its test.

* ``train_classifier``: the loop (no host sync per step), which continues exactly from
  any step; ``Checkpointing``: its periodic saves and preemption (SIGTERM/SIGINT/SIGHUP/SIGUSR1);
  a loss that becomes non-finite stops it (``diverged``); ``saved_tally``: the running
  epoch's tally a save kept, read back.
* ``evaluate_classifier``: the trained model's test logits, reduced batch by batch.

What it is set up with (its labeled views, length, optimizer and schedule, batch, the
checks before anything is written, an evaluation's ``--out``) is
:mod:`simclr.classifier_setup`. Under torchrun the loop trains across processes (each its
share of every global batch; the caller wraps the model in DDP); rank 0 alone writes
(``run_folder``, and :mod:`simclr.partial`'s saves).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simclr import distributed as dist
from simclr.checkpoint import what_is_kept
from simclr.classifier_setup import augmented_batches
from simclr.config import AugmentConfig
from simclr.errors import DivergedError, SimCLRError
from simclr.features import (
    close_workers,
    encoded_batches,
    source_name,
)
from simclr.memory import out_of_memory_is_an_error
from simclr.optim import gradients_finite
from simclr.results import Ranked, log, rank_rows, top1_hits
from simclr.runtime import SaveSchedule, StopFlag, autocast

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
        save to store (:attr:`simclr.partial.PartialRun.tally`): summed over the processes
        where they all save at this step (``together``), else this process's
        (:meth:`_EpochTally.state`)."""
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
    decoder: str | None = None,
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
    without, they keep their usual effect (there is nothing to continue). ``decoder``:
    where uncached JPEGs decode (``--decoder``; None: the source's own). Returns
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
                      shard=(dist.rank(), dist.world_size()), decoder=decoder)
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
    again: str = "in its --out: with --overwrite", decoder: str | None = None,
) -> tuple[Ranked, np.ndarray]:
    """The test logits, each batch reduced to what the results need of it as it comes
    (:func:`simclr.results.rank_rows`: O(M) numbers, where the float32 (M, C) logits of
    100k test images x 10k classes took 4 GB), and labels (M,): eval transform, BN in
    eval mode. Outputs that are not finite are the training's divergence (its losses
    were measured before each update: the last one may have diverged unseen), not the
    checkpoint's: the message says to train again, ``again`` how. ``decoder``: where
    uncached JPEGs decode (``--decoder``; None: the source's own)."""
    labels_all = np.asarray(test.labels, dtype=np.int64)
    parts, seen = [], []
    with closing(encoded_batches(model, test, image_size, batch_size, device, precision,
                                 channels_last=channels_last, workers=workers,
                                 decoder=decoder)) as batches:
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


def saved_tally(saved: Any) -> dict[str, float] | None:
    """A partial (or supervised) checkpoint's ``epoch_tally`` as numbers (KeyError, TypeError,
    ValueError where damaged: see checkpoint_read.readable_state); None where absent."""
    if saved is None:
        return None
    tally = {"loss_sum": float(saved["loss_sum"]), "hits": float(saved["hits"]),
             "seen": int(saved["seen"])}
    if "processes" in saved:  # summed over them (an older file's: rank 0's share)
        tally["processes"] = int(saved["processes"])
    return tally


