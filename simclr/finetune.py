"""Fine-tuning the whole network on labels (the subsets: :mod:`simclr.subsets`).

* ``run_finetune``: the paper's semi-supervised protocol (Chen et al. 2020, Sec. 6,
  App. B.5): fine-tune encoder + a new linear layer on a class-balanced 1% / 10%
  labeled subset with Nesterov SGD (lr 0.05 x B/256, momentum 0.9, no warm-up, no
  weight decay), crop + flip only, 60 epochs for 1% and 30 for 10%; optionally from the
  projection head's first layer (SimCLRv2); ``from_scratch`` gives the no-pretraining
  baseline with the same budget. Also full fine-tuning for transfer (all labels).
The training loop is simclr.classify's, shared with the supervised baseline
(simclr.supervised) and the SGD linear protocol; like them it trains across processes
under torchrun (the paper fine-tunes with batch 4096 and global BN).

BatchNorm is in train mode during these trainings (the network is being trained);
test accuracy always uses the evaluation transform with BatchNorm in eval mode.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from simclr import distributed as dist
from simclr.classifier_setup import (
    batch_norm_setting,
    check_batch_norm_share,
    check_classifier_step,
    crop_flip_config,
    earlier_total_steps,
    fitted_batch,
    nesterov_sgd,
    run_folder,
    scheduled_lr,
    total_steps,
)
from simclr.classifiers import classifier_checkpoint, encoder_config, save_classifier
from simclr.classify import Checkpointing, evaluate_classifier, train_classifier
from simclr.errors import SimCLRError, printable
from simclr.features import check_labeled, resolve_runtime, source_name
from simclr.models import Classifier, ProjectionHead, build_encoder
from simclr.optim import param_groups
from simclr.partial import PartialRun, partial_weights_digest
from simclr.results import RESULTS, Ranked, accuracy_summary, finish_results, log
from simclr.subsets import (
    SUBSET_FILE,
    labeled_subset,
    listed_count,
    subset_digest,
    write_subset_list,
)

FEW_STEPS = 50  # fewer steps than this in all: fine-tuning hardly moves the weights


def default_epochs(fraction: float) -> int:
    """The paper's budgets: 60 epochs for 1% of the labels, 30 for 10% (and more).

    Subsets up to 5% of the labels count as the 1% regime.
    """
    return 60 if fraction <= 0.05 else 30


# ---------------------------------------------------------------------- training loop

def fresh_encoder(encoder: nn.Module, zero_init_residual: bool = True) -> nn.Module:
    """A newly initialised encoder of the same architecture (arch, width, stem)."""
    try:
        fresh = build_encoder(encoder.arch, encoder.width, encoder.cifar_stem,  # type: ignore[arg-type]  # (an encoder's)
                              zero_init_residual, getattr(encoder, "image_size", 224),
                              getattr(encoder, "projection_shortcuts", False))
    except AttributeError:
        raise SimCLRError("--from-scratch needs a simclr encoder") from None
    if hasattr(encoder, "image_size"):
        fresh.image_size = encoder.image_size
    return fresh


# ------------------------------------------------------------------------- fine-tuning

def finetune_model(encoder: nn.Module, head: ProjectionHead | None, num_classes: int,
                   from_scratch: bool) -> Classifier:
    """The network fine-tuned: copies of the encoder (or a fresh one of its architecture)
    and of the head's first layer when ``head`` is given, and a new linear layer."""
    enc = fresh_encoder(encoder) if from_scratch else copy.deepcopy(encoder)
    if head is not None:
        return Classifier.from_head(enc, copy.deepcopy(head), num_classes)
    return Classifier(enc, num_classes)


def _placed(model: Classifier, device: torch.device, precision: str, image_size: int,
            batch: int, requested: int, channels_last: bool, sync_bn: bool) -> Classifier:
    """``model`` on its device, with global BN across processes with ``sync_bn``
    (Sec. 2.2), then its step's memory checked for this process's share of the global
    ``batch`` (--batch-size ``requested``, fitted to the labeled images)."""
    check_batch_norm_share(batch, requested, sync_bn)
    model.to(device)  # (before the conversion: it picks the device's global BN)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if sync_bn:
        model = dist.convert_sync_batchnorm(model)  # type: ignore[assignment]  # (the same model)
    # Measured on the model that trains: global BN saves more per view than a
    # process's own BN did (1.45x-2.25x the bytes on CPU).
    check_classifier_step(model, image_size, batch, device, precision, channels_last,
                          "finetune")
    return model


def _check_finetune_flags(
    batch_size: int, lr: float, epochs: float | None, schedule: str, image_size: int,
    crop_scale: tuple[float, float], crop_sampler: str, head: ProjectionHead | None,
    from_head: bool, from_scratch: bool,
) -> Any:
    """Every ``simclr finetune`` flag checked before any work; returns the crop + flip
    augmentation config."""
    for value, flag in ((batch_size, "batch-size"), (lr, "lr"), (epochs, "epochs")):
        if value is not None and not value > 0:
            raise SimCLRError(f"--{flag} must be positive, got {value}")
    check_batch_size(batch_size)
    if schedule not in ("cosine", "constant"):
        raise SimCLRError(f"--schedule: unknown value {schedule!r} (choose from cosine, constant)")
    if from_head and head is None:
        raise SimCLRError("--from-head needs a checkpoint with a projection head")
    check_start_flags(from_head, from_scratch)
    return crop_flip_config(image_size, crop_scale, crop_sampler)


def check_batch_size(batch_size: int) -> None:
    """Fine-tuning trains BatchNorm too: a batch of one has no statistics."""
    if batch_size < 2:
        raise SimCLRError(f"--batch-size must be at least 2, got {batch_size} (BatchNorm in "
                          "training takes its statistics from the batch)")


def check_start_flags(from_head: bool, from_scratch: bool, random_init: bool = False) -> None:
    """Where fine-tuning starts: ``--from-head`` excludes ``--from-scratch`` and
    ``--random-init`` (the two names of the same baseline)."""
    if from_head and (from_scratch or random_init):
        flag = "--from-scratch" if from_scratch else "--random-init"
        raise SimCLRError(f"{flag} re-initialises the encoder the head's layer was trained "
                          f"on; give one of --from-head and {flag}")


def _say_plan(labeled: int, fraction: float, epochs: float, total: int, batch: int,
              verbose: bool) -> None:
    """The fine-tuning's length, and a note when the batch leaves many images out."""
    steps = labeled // batch
    log(f"fine-tuning on {labeled} labeled images ({100 * fraction:.2f}%), "
        f"{_count(epochs, 'epoch')} of {_count(steps, 'step')}", verbose)
    left_out = labeled % batch  # each epoch's incomplete last batch (reshuffled each epoch)
    if total < FEW_STEPS or left_out > labeled // 4:
        out = (f", {left_out} of the {labeled} labeled images left out of each epoch at "
               f"batch {batch}") if left_out else ""
        log(f"note: {_count(total, 'step')} in all{out}; a smaller --batch-size or "
            "more --epochs trains more", verbose)


def _count(n: float, noun: str) -> str:
    return f"{n:g} {noun}{'' if n == 1 else 's'}"


@dist.process_group()
def run_finetune(
    encoder: nn.Module, train: Any, test: Any, run_dir: str | Path | None, *,
    image_size: int, label_fraction: float | None = None, labels_per_class: int | None = None,
    subset_file: str | Path | None = None, epochs: float | None = None, batch_size: int = 256,
    lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0,
    schedule: str = "cosine",
    crop_scale: tuple[float, float] = (0.08, 1.0), crop_sampler: str = "torchvision",
    head: ProjectionHead | None = None,
    from_head: bool = False, from_scratch: bool = False, seed: int = 0,
    device: str | torch.device = "auto", precision: str = "auto", workers: int | None = None,
    channels_last: bool = True, config: dict[str, Any] | None = None, verbose: bool = True,
    source: dict[str, Any] | None = None, checkpoint_every: int = 500,
    checkpoint_minutes: float = 30.0,
    on_step: Callable[[int, Any], None] | None = None, sync_bn: bool = True,
    overwrite: bool = False, held_out: Sequence[str] = (),
) -> dict[str, Any]:
    """``simclr finetune``: fine-tune the whole encoder on a class-balanced labeled subset.

    Its flags: ``simclr finetune --help`` (the labels: a fraction, K per class, a list,
    or all of them; 60 epochs for <= 5% of the labels, else 30; lr 0.05 x B/256).

    The subset (``class_balanced_subset`` with ``seed``, or the images ``subset_file``
    lists: :func:`simclr.subsets.subset_from_list`) is written to
    ``run_dir/labeled_subset.txt`` (its unreadable files left out: an uncached folder's,
    met in the training, replaced there by other images of the subset); Nesterov SGD, lr
    ``lr`` x B/256, no warm-up, ``weight_decay`` (0, the paper's semi-supervised
    protocol) on the weights but not on biases or norms (App. B.8's transfer fine-tuning
    searches it), ``schedule`` per step; crop + flip views. ``from_head`` needs ``head``
    (the pretrained projection head, models.ProjectionHead) and fine-tunes from its
    first layer; ``from_scratch`` re-initialises the encoder (same architecture). The
    given modules are copied, never modified (``channels_last``: the copy's weights and
    the views in that memory format, the faster). Writes ``finetune.json``,
    ``finetune_confusion.png`` and ``checkpoints/finetune.pt`` (encoder.* + fc.*, and
    neck.* with ``from_head``); returns the results dict. ``config``: the source
    checkpoint's config (stored in the new checkpoint so it rebuilds the encoder).
    ``overwrite``: an earlier fine-tuning's results in ``run_dir`` are replaced (refused
    otherwise); they stay whole until the new ones are written. ``held_out``: the files
    of ``train``'s folder kept for testing (--test-fraction), which are no part of the
    listing the subset is drawn from.

    Long fine-tunings (all of ImageNet's labels for transfer) survive interruptions: every
    ``checkpoint_every`` steps or ``checkpoint_minutes``, and on a stop signal (SIGTERM,
    SIGINT, SIGHUP, SIGUSR1; results ``status`` 'preempted', nothing evaluated), the
    state goes to
    ``checkpoints/finetune-partial.pt``, and the same command (same settings, checkpoint
    and subset) continues from it exactly. The finished training's state is saved there
    too before the test, and kept until the results are all written: stopped during the
    test or while they are written, the same command only tests again and writes them.
    ``on_step(step, stop)`` after every step (tests simulate a preemption).

    Under torchrun the processes fine-tune as one, as pretraining does: the batch is the
    global batch, each process takes its share, BatchNorm is global (``sync_bn``; the
    official code's ``global_bn`` holds for fine-tuning too) and DDP averages the
    gradients; rank 0 writes and tests (the others return their training results with
    ``rank``).
    """
    verbose = verbose and dist.is_main()  # rank 0 speaks for all the processes
    num_classes = check_labeled(train, test)
    dev, prec = resolve_runtime(device, precision)
    aug_cfg = _check_finetune_flags(batch_size, lr, epochs, schedule, image_size,
                                    crop_scale, crop_sampler, head, from_head, from_scratch)
    budget = _labeled_budget(train, subset_file, label_fraction, labels_per_class, epochs,
                             batch_size, seed, verbose, held_out)
    start_layer = head if from_head else None  # the head's first layer, fine-tuned too
    model = _placed(_seeded_model(encoder, start_layer, num_classes, from_scratch, seed),
                    dev, prec, image_size, budget.batch, batch_size, channels_last, sync_bn)
    out = run_folder(run_dir, RESULTS["finetune"], overwrite)  # inputs checked: rank 0 writes
    # Without decay one group, as before it could be set: older saved states still load
    params = param_groups(model, weight_decay) if weight_decay else model.parameters()
    optimizer = nesterov_sgd(params, lr, budget.batch, momentum)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    settings = _continuation_settings(
        train, budget, aug_cfg, source, encoder, start_layer, lr=lr, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, from_head=from_head,
        from_scratch=from_scratch, seed=seed, image_size=image_size, precision=prec,
        sync_bn=sync_bn)
    partial_run = PartialRun(out, "finetune", "fine-tuning", settings, overwrite,
                             results=RESULTS["finetune"], train=train)
    step, elapsed = partial_run.resume(
        model, optimizer, scaler, verbose, total=budget.steps,
        earlier_total=earlier_total_steps(budget.epochs, len(budget.subset), budget.batch))
    budget = budget._replace(kept=partial_run.total)
    if partial_run.skipped and hasattr(train, "remember_skipped"):  # (an uncached folder's)
        train.remember_skipped(partial_run.skipped)  # those earlier sessions found unreadable
    listed = _list_subset_first(train, budget.subset, out)
    run = _FineTuning(model=model, optimizer=optimizer, scaler=scaler, partial_run=partial_run,
                      cfg=encoder_config(model.encoder, image_size, config, start_layer),
                      train=train, budget=budget, listed=listed, device=dev, precision=prec,
                      channels_last=channels_last, workers=workers, verbose=verbose,
                      encoder_unfinished=(source or {}).get("unfinished"))
    _say_plan(len(budget.subset), budget.fraction, budget.epochs, budget.steps, budget.batch,
              verbose)
    start = time.perf_counter()
    stats = _trained(run, aug_cfg, schedule, seed, step, elapsed, checkpoint_every, on_step,
                     checkpoint_minutes)
    if out is not None and stats["steps"] > step:  # the state is kept, a finished one too:
        # a stop (or a kill) during the test then loses no training, only the test
        checkpoint = run.save_partial(stats["steps"], stats["train_s"], stats)
        if stats["status"] == "preempted":
            return {"command": "finetune", **stats, "checkpoint": checkpoint}
    if not dist.is_main():  # rank 0 tests and writes for all the processes
        return {"command": "finetune", **stats, "rank": dist.rank()}
    results = _test_and_write(run, test, image_size, stats, labels_per_class, num_classes,
                              source, overwrite, elapsed, start)
    log(f"finetune: top-1 {100 * results['top1']:.2f}%", verbose)
    return results


def _seeded_model(encoder: nn.Module, start_layer: ProjectionHead | None, num_classes: int,
                  from_scratch: bool, seed: int) -> Classifier:
    """:func:`finetune_model` drawn from ``seed``: the same new layer in every process,
    and the caller's RNG left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return finetune_model(encoder, start_layer, num_classes, from_scratch)


def _continuation_settings(
    train: Any, budget: _Budget, aug_cfg: Any, source: dict[str, Any] | None,
    encoder: nn.Module, start_layer: ProjectionHead | None, *, lr: float, momentum: float,
    weight_decay: float, schedule: str, from_head: bool, from_scratch: bool, seed: int,
    image_size: int, precision: str, sync_bn: bool,
) -> dict[str, Any]:
    """What fixes a fine-tuning (partial.PartialRun's ``settings``): a saved unfinished
    one is continued only where all of them match, so it never mixes two trainings."""
    return {"test_fraction": ((source or {}).get("test") or {}).get("fraction"),
            "subset": subset_digest(budget.subset, len(train.labels)),
            "epochs": budget.epochs, "batch_size": budget.batch, "lr": lr,
            "momentum": momentum, "weight_decay": weight_decay, "schedule": schedule,
            "crop": [*aug_cfg.crop_scale, aug_cfg.crop_sampler],
            "from_head": from_head, "from_scratch": from_scratch, "seed": seed,
            "image_size": image_size, "precision": precision, "classes": list(train.classes),
            "source": [str((source or {}).get("checkpoint")), (source or {}).get("step")],
            "weights": partial_weights_digest(encoder, start_layer),
            "batch_norm": batch_norm_setting(sync_bn)}


def _trained(run: _FineTuning, aug_cfg: Any, schedule: str, seed: int, step: int,
             elapsed: float, checkpoint_every: int,
             on_step: Callable[[int, Any], None] | None,
             checkpoint_minutes: float) -> dict[str, Any]:
    """The training from ``step`` on, its state saved as it goes where there is a run
    folder (none: nothing is written); returns its stats (a run resumed after its last
    step: the saved ones, for its results)."""
    partial_run = run.partial_run
    stats = run.train_steps(aug_cfg, schedule, seed, step, elapsed,
                            None if partial_run.out is None else
                            partial_run.checkpointing(run.save_partial, checkpoint_every,
                                                      on_step, checkpoint_minutes))
    return partial_run.trained_stats(stats, step)


def _test_and_write(run: _FineTuning, test: Any, image_size: int, stats: dict[str, Any],
                    labels_per_class: int | None, num_classes: int,
                    source: dict[str, Any] | None, overwrite: bool, elapsed: float,
                    start: float) -> dict[str, Any]:
    """Rank 0's test and the results files, then the kept state discarded; returns the
    results (``elapsed`` s of earlier sessions, this one's from ``start``, test included)."""
    partial_run = run.partial_run
    # Stopped in the test or while the results are written (the finished state is kept
    # until they all are): the same command only tests again and writes them.
    with partial_run.testing():
        ranked, test_y = run.test(test, image_size)
        results = run.results(ranked, test_y, stats, labels_per_class, num_classes,
                              elapsed + time.perf_counter() - start)
        run.save_results(results)
        finish_results(results, partial_run.out, "finetune", ranked, test_y, run.train, test,
                       source, run.verbose, overwrite or partial_run.finishing)
    partial_run.discard()
    return results


class _Budget(NamedTuple):
    """The labeled images a fine-tuning trains on, and for how long."""

    subset: np.ndarray  # the labeled images' indices in the training set (sorted int64)
    fraction: float  # their share of the training set
    listed: int  # the training set's files, those a cache could not read too (the share's)
    epochs: float
    batch: int  # the global batch: at most the subset (classifier_setup.fitted_batch)
    kept: int | None = None  # a continued run's own length (PartialRun.total)
    # --label-fraction as given (None: a list, a count per class or every image), whose
    # regime sets the epochs where the draw rounds to more (a 1% of a small set: 8%)
    asked: float | None = None

    @property
    def steps(self) -> int:
        """The fine-tuning's length: ``epochs`` of full batches, rounded up (or the
        length a continued run started with)."""
        return self.kept or total_steps(self.epochs, len(self.subset), self.batch)


def _labeled_budget(train: Any, subset_file: str | Path | None, label_fraction: float | None,
                    labels_per_class: int | None, epochs: float | None, batch_size: int,
                    seed: int, verbose: bool, held_out: Sequence[str] = ()) -> _Budget:
    """The labeled subset (:func:`labeled_subset`), its epochs (None: the paper's,
    :func:`default_epochs`) and the batch fitted to it; fewer than 2 images are refused.
    Its share is of the folder's listed files (:func:`listed_count`: those a cache could
    not read too, as an uncached source lists them), the same with --cache on or off."""
    subset = labeled_subset(train, subset_file, label_fraction, labels_per_class, seed,
                            held_out)
    listed = listed_count(train, held_out)
    fraction = len(subset) / listed
    # The paper's budget belongs to the regime asked for: a 1% too small to give every
    # class an image draws one each (maybe 8% of a small set) and still trains as 1%.
    asked = label_fraction if label_fraction is not None and subset_file is None else fraction
    if fraction > 1.5 * asked:  # (rounded to whole images per class, at least one)
        per_class = len(subset) // len(np.unique(np.asarray(train.labels)[subset]))
        budget = "" if epochs is not None else f"; its epochs are still those of {asked:g}"
        log(f"note: --label-fraction {asked:g} rounds to {_count(per_class, 'image')} per "
            f"class here ({len(subset)} of {listed}, {100 * fraction:.2f}%)"
            f"{budget}", verbose)
    epochs = default_epochs(asked) if epochs is None else epochs
    _note_unlabeled_classes(train, subset, verbose)
    if len(subset) < 2:
        raise SimCLRError(f"{source_name(train)}: the labeled subset has {len(subset)} "
                          "image; fine-tuning needs at least 2")
    return _Budget(subset, fraction, listed, epochs,
                   fitted_batch(batch_size, len(subset), "labeled", verbose),
                   asked=label_fraction if subset_file is None else None)


def _note_unlabeled_classes(train: Any, subset: np.ndarray, verbose: bool) -> None:
    """A note when the labeled subset (a --subset list) holds no image of some classes:
    the classifier has their outputs but never learns them, and the test counts them."""
    absent = sorted(set(range(len(train.classes))) - set(np.asarray(train.labels)[subset]
                                                         .tolist()))
    if absent:
        names = ", ".join(str(train.classes[c]) for c in absent[:5])
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        count = "1 class" if len(absent) == 1 else f"{len(absent)} classes"
        log(f"note: the labeled subset holds no image of {count} ({names}{more}): the "
            "classifier never learns them, and the test still counts their images", verbose)


def _list_subset_first(train: Any, subset: np.ndarray, out: Path | None) -> bool:
    """Write the labeled images' list (``labeled_subset.txt``) before the training, to be
    read while it runs; but not over the list of the earlier results an --overwrite
    replaces at its end: they stay whole until then. Returns whether it was written."""
    listed = out is not None and dist.is_main() and not (out / RESULTS["finetune"][0]).exists()
    if listed:
        write_subset_list(train, subset, out / SUBSET_FILE)  # type: ignore[operator]  # (listed: an out)
    return listed


@dataclass
class _FineTuning:
    """A fine-tuning set up, every input checked: what its training, its test and its
    files share. ``partial_run`` keeps its unfinished state in the run folder (``out``;
    None: nothing is written), with the settings a continuation must match."""

    model: Classifier
    optimizer: torch.optim.SGD
    scaler: torch.amp.GradScaler
    partial_run: PartialRun
    cfg: dict[str, Any]  # the encoder's config, stored with the weights to rebuild it
    train: Any
    budget: _Budget
    listed: bool  # labeled_subset.txt was written before the training
    device: torch.device
    precision: str
    channels_last: bool
    workers: int | None
    verbose: bool
    # {step, total_steps} of the stopped training the encoder is from (source's): kept
    # in the fine-tuned checkpoint, which predict and export then say
    encoder_unfinished: dict[str, Any] | None = None
    trained: np.ndarray = field(init=False)  # the labeled images trained on (results())

    def save_partial(self, step: int, seconds: float,
                     stats: dict[str, Any] | None = None) -> str:
        """The unfinished state (``checkpoints/finetune-partial.pt``, with the optimizer)
        after ``step`` steps and ``seconds`` of training (the training's ``stats`` when it
        finished, for its results after a stop in the test); returns its path. With it
        the unreadable files met so far (``skipped_images``: [path, reason], as
        pretraining's checkpoint): a continued run's :meth:`trained_subset` leaves them
        out too. (A periodic save holds rank 0's and those gathered at an earlier end.)"""
        blob = classifier_checkpoint(
            "finetune", self.model, self.cfg, list(self.train.classes), step, seconds,
            stats or {}, self.optimizer, run_id=self.partial_run.run_id)
        blob["skipped_images"] = [list(s) for s in getattr(self.train, "skipped", [])]
        return self.partial_run.save(blob, self.scaler)

    def train_steps(self, aug_cfg: Any, schedule: str, seed: int, start_step: int,
                    elapsed: float, checkpointing: Checkpointing | None) -> dict[str, Any]:
        """The training (classify.train_classifier, App. B.5) on the labeled subset's crop
        + flip views, from ``start_step`` on (after ``elapsed`` seconds: a continued run),
        the lr decayed per ``schedule`` without warm-up; under torchrun DDP averages the
        gradients. Returns the training's stats."""
        total = self.budget.steps
        stats = train_classifier(
            dist.wrap_ddp(self.model, self.device), self.train, self.budget.subset, aug_cfg,
            total_steps=total, batch_size=self.budget.batch, optimizer=self.optimizer,
            lr_fn=lambda step, p: scheduled_lr(step, total, p, schedule), seed=seed,
            device=self.device, precision=self.precision, channels_last=self.channels_last,
            workers=self.workers, verbose=self.verbose, name="finetune",
            start_step=start_step, elapsed=elapsed, scaler=self.scaler,
            checkpointing=checkpointing, tally=self.partial_run.tally)
        # Each process read its share: rank 0, which records the subset, hears of all the
        # unreadable files an uncached folder found as it read them (a cache lists its own).
        if not getattr(self.train, "cached", True):
            for found in dist.all_gather_objects(list(getattr(self.train, "skipped", []))):
                self.train.remember_skipped(found)
        return stats

    def trained_subset(self) -> np.ndarray:
        """The labeled images trained on (sorted int64): the subset less its files found
        unreadable while the training read them (uncached: other images of the subset took
        their place, classifier_setup.augmented_batches), said in a line; the subset as drawn
        otherwise (a cache's unreadable files are never drawn: subsets.subset_from_list)."""
        subset, paths = self.budget.subset, list(getattr(self.train, "paths", []) or [])
        bad = dict(getattr(self.train, "skipped", []))
        unread = [int(i) for i in subset if i < len(paths) and paths[i] in bad]
        if unread:
            first = paths[unread[0]]
            log(f"warning: {len(unread)} of the {len(subset)} labeled images could not be "
                f"read (first: {printable(first)}: {bad[first]}): other images of the "
                f"labeled subset took their place; {SUBSET_FILE} and num_labeled list the "
                f"{len(subset) - len(unread)} trained on")
        return np.setdiff1d(subset, np.asarray(unread, dtype=np.int64))

    def test(self, test: Any, image_size: int) -> tuple[Ranked, np.ndarray]:
        """What the results need of the test logits (M, C), each batch reduced as it
        comes (classify.evaluate_classifier), and labels (M,): the evaluation transform,
        BatchNorm in eval mode, batches of one process's share."""
        return evaluate_classifier(self.model, test, image_size,
                                   batch_size=self.budget.batch // dist.world_size(),
                                   device=self.device, precision=self.precision,
                                   channels_last=self.channels_last, workers=self.workers)

    def results(self, ranked: Ranked, test_y: np.ndarray, stats: dict[str, Any],
                labels_per_class: int | None, num_classes: int,
                elapsed_s: float) -> dict[str, Any]:
        """The results of ``simclr finetune``: the test accuracy (``ranked`` test logits,
        labels (M,)), the labeled subset trained on (:meth:`trained_subset`), the settings
        and the training's ``stats``."""
        settings = self.partial_run.settings
        self.trained = self.trained_subset()
        return {
            "command": "finetune", **accuracy_summary(ranked, test_y),
            "num_labeled": int(len(self.trained)),
            "label_fraction": len(self.trained) / self.budget.listed,
            "label_fraction_asked": self.budget.asked,  # (its regime's epochs)
            "labels_per_class": labels_per_class, "num_classes": num_classes,
            "num_test": int(len(test_y)), "peak_lr": self.optimizer.param_groups[0]["peak_lr"],
            "processes": dist.world_size(),
            **{k: settings[k] for k in ("epochs", "batch_size", "lr", "weight_decay",
                                        "schedule", "from_head",
                                        "from_scratch", "seed", "image_size", "precision",
                                        "batch_norm")},
            "momentum": settings["momentum"], "crop_scale": settings["crop"][:2],
            "crop_sampler": settings["crop"][2],
            "channels_last": self.channels_last, **stats, "elapsed_s": elapsed_s,
        }

    def save_results(self, results: dict[str, Any]) -> None:
        """The labeled images' list and the fine-tuned classifier
        (``checkpoints/finetune.pt``, encoder.* + fc.* (+ neck.*), carrying ``results``)
        into the run folder, if any (over this training's own where it was stopped while it wrote
        them: ``partial_run.finishing``)."""
        out = self.partial_run.out
        if out is None:
            return
        if not self.listed or len(self.trained) < len(self.budget.subset):
            write_subset_list(self.train, self.trained, out / SUBSET_FILE)
        results["subset_file"] = str(out / SUBSET_FILE)
        blob = classifier_checkpoint("finetune", self.model, self.cfg, list(self.train.classes),
                                     results["steps"], results["elapsed_s"], results,
                                     encoder_step=self.partial_run.settings["source"][1],
                                     features="random init" if self.partial_run.settings[
                                         "from_scratch"] else "pretrained",
                                     run_id=self.partial_run.run_id,
                                     encoder_unfinished=self.encoder_unfinished)
        results["checkpoint"] = save_classifier(
            blob, out, "finetune.pt",
            bool(self.partial_run.overwrite) or self.partial_run.finishing)
