"""The supervised baseline: the same encoder trained on labels with cross-entropy.

Chen et al. 2020 measure SimCLR against supervised training of the same network
(Sec. 3, Table 1's colour-strength comparison), so ``simclr supervised`` takes the
pretraining config: the full augmentation of ``cfg.augment`` (one view per image), the
optimizer of ``cfg.optim`` (LARS by default), warm-up + cosine over the planned steps
(epochs, ``max_steps`` or a time budget, as pretraining plans them).

A supervised run lasts as long as a pretraining one (its length is the pretraining
config's too: 100 epochs by default; the paper's ImageNet baseline trains 90, `--epochs
90`), so it is as resumable: periodic ``ckpt-<step>.pt`` files every
``cfg.checkpoint_every`` steps, a checkpoint and exit status 75 on a stop signal
(SIGTERM, SIGINT, SIGHUP, SIGUSR1), and ``simclr supervised --resume RUN`` continues
exactly (the views and the order depend only on (seed, epoch, index); the step, the
optimizer and the schedule are restored).
Like pretraining, it trains across processes under torchrun (global batch, global BN).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr import distributed as dist
from simclr.checkpoint import (
    CHECKPOINTS,
    checkpoint_files,
    latest_checkpoint,
    new_run_id,
    periodic_name,
    run_dir_of,
    save_checkpoint,
)
from simclr.checkpoint_read import load_scaler, load_weights, readable_state
from simclr.classifier_setup import check_batch_norm_share, check_classifier_step
from simclr.classifiers import classifier_checkpoint
from simclr.classify import (
    Checkpointing,
    evaluate_classifier,
    saved_tally,
    train_classifier,
)
from simclr.config import Config
from simclr.config_file import save_yaml
from simclr.errors import DivergedError, SimCLRError
from simclr.features import check_labeled, resolve_runtime
from simclr.files import folder_holder, in_use, lock_folder, read_json, set_aside
from simclr.models import build_classifier_within_memory
from simclr.optim import build_optimizer, load_optimizer_state, lr_at, lr_notes
from simclr.plan import (
    FIRST_REFIT,
    Plan,
    budget_spent,
    budget_within_warmup,
    check_batch_fits,
    end_if_spent,
    note_first_step,
    plan_schedule,
    refit_to_budget,
    warmup_notes,
)
from simclr.recipe import apply_resume_flags
from simclr.results import (
    accuracy_summary,
    check_out_folder,
    finish_results,
    log,
    prepare_dir,
    write_results,
)
from simclr.resume import session_number, split_read_anew_why, start_record
from simclr.resume_target import (
    RESUME_MARK,
    SUPERVISED_RESULT,
    already_holds_run,
    check_not_continued,
    resume_checkpoint,
)
from simclr.rundir import check_not_above_runs, check_run_length, record_divergence
from simclr.runtime import StopFlag, set_threads
from simclr.settings import config_from_dict

RESULT = SUPERVISED_RESULT
# What a supervised checkpoint holds besides config and weights, so the run continues
# (a pretraining run's are checkpoint.RESUME_ENTRIES).
SUPERVISED_RESUME_ENTRIES = ("optimizer", "scaler", "step", "elapsed", "total_steps",
                             "warmup_steps", "classes", "num_train")
# The settings --resume may change: where and how fast it runs, not what it computes;
# the run's length only to its saved value (rundir.check_run_length).
RESUME_FLAGS = {"device", "threads", "data.workers", "data.decoder", "data.cache_dir",
                "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "memory_check",
                "epochs", "max_steps", "time_budget"}


def check_new_run(run_dir: str | Path | None, held: bool = False) -> None:
    """A new run's folder, before any data is read: writable, not in use by a live run
    (unless ``held``: this process holds it), and never another run's (its checkpoints,
    finished or not) nor another command's model (a classifier of an evaluation would
    be taken for this run's)."""
    if run_dir is None:
        return
    folder = Path(run_dir).expanduser()
    check_out_folder(folder)
    holder = None if held else folder_holder(folder)
    if holder:  # said first: --resume would be refused as well while it runs
        raise in_use(folder, holder)
    if checkpoint_files(folder / CHECKPOINTS):
        raise already_holds_run(folder, str(run_dir), "supervised")
    others = sorted((folder / CHECKPOINTS).glob("*.pt"))
    if others:
        raise SimCLRError(f"{run_dir} already holds {CHECKPOINTS}/{others[0].name} (another "
                          "command's model); choose another --out")
    check_not_above_runs(folder)


# Settings of pretraining that supervised training has no use for: the contrastive
# objective, the projection head, the kNN monitor, the initial weights (it starts from
# random init, the baseline); its data comes from --train, it logs
# a line per epoch and stops at a non-finite loss; one view per image, so no Fig. 5
# two-branch protocol. Neither offered as flags nor taken from a --config file (a
# setting accepted and ignored, or one that means nothing here, misleads).
UNUSED = ("data.path", "out", "nan_policy", "max_bad_steps", "compile", "deterministic",
          "log_every", "progress", "init_from", "augment.asymmetric", "augment.first_op")


def unused_setting(path: str) -> bool:
    """Whether a config path (``loss.temperature``) plays no part in supervised training."""
    return path.startswith(("loss.", "model.head", "knn_")) or path in UNUSED


def note_ignored_settings(path: str | None) -> None:
    """Say which settings of a --config supervised training ignores (a pretraining
    config.yaml holds them all: it stays a valid --config, so this is no error)."""
    if path is None:
        return
    from simclr.config import RECORDED_KEYS
    from simclr.config_file import load_yaml

    def paths(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
        return [q for k, v in tree.items() if str(k) not in RECORDED_KEYS
                for q in (paths(v, f"{prefix}{k}.") if isinstance(v, Mapping) else
                          [f"{prefix}{k}"])]

    ignored = [p for p in paths(load_yaml(path)) if unused_setting(p)]
    if ignored:
        more = f" and {len(ignored) - 3} more" if len(ignored) > 3 else ""
        verb = "plays" if len(ignored) == 1 else "play"
        log(f"--config {path}: {', '.join(ignored[:3])}{more} {verb} no part in supervised "
            "training (ignored)")


def data_specs(train: str, test: str | None) -> dict[str, str | None]:
    """The ``--train``/``--test`` arguments as a resumed run reopens them: absolute paths
    where they are paths (a torchvision name such as ``cifar10`` stays a name)."""
    def absolute(spec: str | None) -> str | None:
        if spec is None or not os.path.exists(os.path.expanduser(spec)):
            return spec
        return os.path.abspath(os.path.expanduser(spec))

    return {"train": absolute(train), "test": absolute(test)}


def config_folders(path: str | None) -> dict[str, str | None]:
    """The ``--train``/``--test`` a supervised run's config.yaml records (``folders``),
    each the default of its flag; {} where it records none. SimCLRError on a ``folders``
    that is not what a run writes (a typo would drop the test quietly)."""
    if path is None:
        return {}
    from simclr.config_file import load_yaml

    folders = load_yaml(path).get("folders")
    if folders is None:
        return {}
    wrong = (["folders"] if not isinstance(folders, Mapping) else
             [f"folders.{k}" for k, v in folders.items() if k not in ("train", "test")
              or not (isinstance(v, str) and v or v is None and k == "test")])
    if wrong or not folders.get("train"):
        raise SimCLRError(f"--config {path}: {(wrong or ['folders.train'])[0]}: a supervised "
                          "run's folders are `train: FOLDER` and `test: FOLDER` (or null)")
    return {"train": folders["train"], "test": folders.get("test")}


def check_not_supervised_config(path: str | None, data: str | None) -> None:
    """A pretraining (or a sweep) given a supervised run's config.yaml and no data
    (``data``: --data, or the YAML's own ``data.path``) would train on the digits demo:
    its ``folders`` are the supervised run's data."""
    train = None if data or path is None else _recorded_train(path)
    if train:
        raise SimCLRError(f"--config {path} is a supervised run's (it trained on "
                          f"{train}); pretraining reads --data: give --data "
                          f"FOLDER, or rerun it with `simclr supervised --config {path}`")


def _recorded_train(path: str) -> str | None:
    """The ``folders.train`` a supervised run's config.yaml records, if it is a folder
    name. Not :func:`config_folders`: a pretraining skips ``folders``, so one of another
    shape there is no error of the pretraining's (it refused the run)."""
    from simclr.config_file import load_yaml

    folders = load_yaml(path).get("folders")
    train = folders.get("train") if isinstance(folders, Mapping) else None
    return train if isinstance(train, str) and train else None


def finished_result(target: str | Path) -> dict[str, Any] | None:
    """The results of the run ``--resume target`` names, if it has finished (None: not,
    or unreadable, left to :func:`resume_config` to say): resumed again, it is done,
    as a finished pretraining resumed is (status 0, for a retry loop around it)."""
    return read_json(run_dir_of(target) / RESULT)


def resume_config(target: str | Path, flags: Mapping[str, Any],
                  finished: bool = False) -> tuple[Config, dict[str, Any]]:
    """(config, checkpoint) of the supervised run to continue (``--resume target``), with
    ``flags`` applied: only :data:`RESUME_FLAGS` may change, and a finished run is
    refused unless ``finished`` (its settings are only shown: ``--print-config``). The
    checkpoint's ``data`` names the folders to reopen."""
    run_dir = run_dir_of(target)
    if not finished and (run_dir / RESULT).exists():  # whichever of its files names it
        if read_json(run_dir / RESULT) is not None:
            raise SimCLRError(f"--resume {target}: the run has finished ({run_dir / RESULT});"
                              f" its model is {run_dir / CHECKPOINTS / 'last.pt'}")
        # Its results cut or damaged (the run could neither resume nor be evaluated): kept
        # aside, and the resumed run, whose steps are done, evaluates its model again
        if dist.launched_rank() == 0:  # (once, under --processes)
            kept = set_aside(run_dir, (RESULT,))
            log(f"{run_dir / RESULT} is unreadable (kept as {kept}): the run's model is "
                "evaluated again")
    run_dir, _, ckpt = resume_checkpoint(target, "supervised", SUPERVISED_RESUME_ENTRIES)
    if not (ckpt.get("data") or {}).get("train"):
        raise SimCLRError(f"--resume {target}: the checkpoint does not name its training "
                          "folder (a run started from Python); continue it with "
                          "simclr.supervised.run_supervised(..., resume=checkpoint)")
    cfg = config_from_dict(ckpt["config"])
    cfg.out = os.path.abspath(run_dir)  # as a new run saves it, from any working directory
    # (its --train/--test, which cfg does not name, are read through cfg.data)
    apply_resume_flags(cfg, dict(flags), RESUME_FLAGS,
                       reads=(ckpt["data"].get("train"), ckpt["data"].get("test")))
    check_run_length(ckpt["config"], cfg, run_dir)  # the same length is no change
    return cfg, ckpt


def check_same_data(ckpt: Mapping[str, Any], train: Any, listed: bool = False) -> None:
    """A resumed run trains on the images it started with: its steps per epoch, order
    and classifier outputs depend on them. ``listed``: ``train`` is the folder's listing
    (an ImageList), checked before it is decoded: its classes, and no fewer image files
    than the run's images."""
    classes, num = list(ckpt["classes"]), int(ckpt["num_train"])
    if list(train.classes) != classes:
        _check_split_read_anew(ckpt, train.classes)
        gone = [c for c in classes if c not in train.classes]
        new = [c for c in train.classes if c not in classes]
        what = "; ".join(part for part in (
            f"classes no longer there: {', '.join(gone[:3])}" if gone else "",
            f"new classes: {', '.join(new[:3])}" if new else "") if part) or "another order"
        raise SimCLRError(f"--resume: the training folder's classes are not those the run "
                          f"started with ({what}), so it cannot continue")
    now = len(train.paths) if listed else train.num_images
    if (now < num) if listed else (now != num):
        raise SimCLRError(f"--resume: the training folder now holds {now} images; "
                          f"the run started with {num}, so it cannot continue exactly")


def _check_split_read_anew(ckpt: Mapping[str, Any], now: list[str]) -> None:
    """Refuse, naming why, a run whose release read its training folder's splits
    (DIR/Train, DIR/Test) as its classes where this release reads DIR as its split
    (resume.split_read_anew_why): 'classes no longer there: Test, Train' would be untrue."""
    folder = (ckpt.get("data") or {}).get("train")
    why = split_read_anew_why(folder, list(ckpt["classes"]), f"classes {', '.join(now[:3])}") \
        if isinstance(folder, str) else None
    if why is not None:
        raise SimCLRError(f"--resume: {why}; the run cannot continue on its images: start a "
                          "new run")


def restore(ckpt: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler, plan: Plan, verbose: bool = True) -> tuple[int, float]:
    """Load a supervised checkpoint into the run; returns (step, training seconds). The
    saved plan is kept: a time budget's refits live there. ``verbose``: a note where the
    run keeps an earlier simclr's parameter grouping (optim.load_optimizer_state)."""
    load_weights(model, ckpt)  # one line, not a traceback, if they do not fit
    with readable_state(ckpt, "optimizer or step state"):
        load_optimizer_state(optimizer, ckpt, model, verbose)
        load_scaler(scaler, ckpt["scaler"])
        plan.total_steps = int(ckpt["total_steps"])
        plan.warmup_steps = int(ckpt["warmup_steps"])
        return int(ckpt["step"]), float(ckpt["elapsed"])


def budget_refit(cfg: Config, plan: Plan, step: int,
                 device: torch.device) -> Callable[[int, float], int] | None:
    """Under a time budget, the cosine re-planned from the measured speed to end on time
    (as pretraining does), every few steps; None without one. The budget spent ends the
    training at that step, on every process alike (rank 0's clock, compared every few
    seconds on ``device``: distributed.StopVote)."""
    if not cfg.time_budget:
        return None
    next_refit = step + FIRST_REFIT
    vote = dist.StopVote(device, step)  # (no signals: train_classifier's own vote's)

    def refit(step: int, elapsed: float) -> int:
        nonlocal next_refit
        note_first_step(plan, step, elapsed)
        if next_refit <= step < plan.total_steps:  # (none after the last step)
            next_refit = refit_to_budget(plan, cfg, step, elapsed)
        vote(step, None, step >= plan.total_steps, budget_spent(plan, elapsed))
        end_if_spent(plan, step, vote.main_flag)  # (as pretraining's)
        return plan.total_steps

    return refit


@dist.process_group()
def run_supervised(
    cfg: Config, train: Any, test: Any | None = None, run_dir: str | Path | None = None, *,
    data: Mapping[str, str | None] | None = None, resume: Mapping[str, Any] | None = None,
    verbose: bool = True, on_step: Callable[[int, StopFlag], None] | None = None,
) -> dict[str, Any]:
    """``simclr supervised``: the encoder of ``cfg.model`` trained with cross-entropy.

    Its flags: ``simclr supervised --help`` (the pretraining settings that apply to a
    cross-entropy training, or ``--resume RUN_DIR``).

    Images (B,3,S,S) -> logits (B,C). Saves ``run_dir/checkpoints/last.pt`` (config =
    cfg.to_dict(), model = 'encoder.*' + 'fc.*', kind 'supervised'), loadable by every
    evaluation command, and ``ckpt-<step>.pt`` every ``cfg.checkpoint_every`` steps;
    with ``test``, reports top-1/top-5 (``supervised.json``,
    ``supervised_confusion.png``). ``data``: the ``--train``/``--test`` specs, stored so
    that ``--resume`` reopens them; ``resume``: the checkpoint to continue from.
    ``on_step(step, stop)`` after every step (tests simulate a preemption with it).
    Returns the results, with ``status`` 'preempted' if a signal stopped the training
    (its checkpoint written, no evaluation).

    Under torchrun the processes train as one, as pretraining does: ``cfg.batch_size`` is
    the global batch, each process takes its share, BatchNorm is global
    (``cfg.model.sync_bn``), DDP averages the gradients; rank 0 writes and evaluates
    (the others return their training results with ``rank``).
    """
    dist.check_divisible(cfg.batch_size)
    return _run(cfg, train, test, run_dir if run_dir is not None else cfg.out, data, resume,
                verbose and dist.is_main(), on_step)


def _run(cfg: Config, train: Any, test: Any | None, run_dir: str | Path | None,
         data: Mapping[str, str | None] | None, resume: Mapping[str, Any] | None,
         verbose: bool, on_step: Callable[[int, StopFlag], None] | None) -> dict[str, Any]:
    """:func:`run_supervised` in one process of the run."""
    num_classes = check_labeled(train, test)
    check_batch_fits(cfg.batch_size, train.num_images)
    check_batch_norm_share(cfg.batch_size, cfg.batch_size, cfg.model.sync_bn)
    if resume is None:
        check_new_run(run_dir)
    else:
        check_same_data(resume, train)
    dev, prec = resolve_runtime(cfg.device, cfg.precision)
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    size, batch = cfg.augment.size, cfg.batch_size
    model = build_classifier_within_memory(cfg.model, size, num_classes, dev, cfg.memory_check)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.model.sync_bn:  # global BN (Sec. 2.2), as pretraining; no-op in one process
        model = dist.convert_sync_batchnorm(model)  # type: ignore[assignment]  # (the same model)
    # Measured on the model that trains: global BN saves more per view than a
    # process's own BN did (1.45x-2.25x the bytes on CPU).
    check_classifier_step(model, size, batch, dev, prec, cfg.channels_last, "supervised",
                          cfg.memory_check, "--no-memory-check")
    # Every input checked, in every process (check_new_run above too: rank 0 would be
    # taken for "another run" in the folder by a process still opening --test): from
    # here on rank 0 writes.
    dist.barrier()
    out = prepare_dir(run_dir, (RESULT,)) if dist.is_main() else None
    held = None if out is None else lock_folder(out)  # no second run writes here meanwhile
    try:
        if out is not None and resume is not None and resume.get(RESUME_MARK) is not None:
            # (a checkpoint resume_config read: another --resume may have gone on since)
            check_not_continued(out, resume[RESUME_MARK], "supervised")
        return _train_and_test(cfg, model, num_classes, train, test, out, run_dir, data,
                               resume, dev, prec, verbose, on_step)
    finally:
        if held is not None:
            held.close()


def _train_and_test(
    cfg: Config, model: torch.nn.Module, num_classes: int, train: Any, test: Any | None,
    out: Path | None, run_dir: str | Path | None, data: Mapping[str, str | None] | None,
    resume: Mapping[str, Any] | None, dev: torch.device, prec: str, verbose: bool,
    on_step: Callable[[int, StopFlag], None] | None,
) -> dict[str, Any]:
    """The training of :func:`_run` (rank 0 writing into ``out``), then the test."""
    batch = cfg.batch_size
    if out is not None and resume is None:
        check_new_run(out, held=True)  # another run may have started here since the first check
    plan = plan_schedule(cfg, train.num_images)
    optimizer = build_optimizer(cfg.optim, model, batch)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    run_id = str((resume or {}).get("run_id") or new_run_id())  # kept when resumed
    step, elapsed = _starting_step(cfg, model, optimizer, scaler, plan, run_dir, resume, verbose)
    session = 1 if out is None else _record_start(out, cfg, data, resume is not None, run_id)
    save = _Saver(out, model, cfg, train, optimizer, scaler, plan, run_id, session, data,
                  saved_tally((resume or {}).get("epoch_tally")))
    budget = f", time budget {cfg.time_budget:g} s" if cfg.time_budget else ""
    steps = f"{plan.total_steps} step{'s' * (plan.total_steps != 1)}"
    log(f"supervised: {train.num_images} images, {steps} of batch {batch} "
        f"({plan.steps_per_epoch}/epoch, warm-up {plan.warmup_steps}{budget})", verbose)
    start = time.perf_counter()
    checkpointing = _checkpointing(cfg, save, out, run_dir, resume, on_step)
    with _divergence_on_record(out, session):
        stats = train_classifier(
            dist.wrap_ddp(model, dev), train, np.arange(train.num_images), cfg.augment,
            total_steps=plan.total_steps, batch_size=batch, optimizer=optimizer,
            lr_fn=lambda s, p: lr_at(s, plan.total_steps, plan.warmup_steps, p,
                                     cfg.optim.final_lr),
            seed=cfg.seed, device=dev, precision=prec, channels_last=cfg.channels_last,
            workers=cfg.data.workers, verbose=verbose, name="supervised",
            refit=budget_refit(cfg, plan, step, dev), start_step=step, elapsed=elapsed,
            scaler=scaler, checkpointing=checkpointing, tally=save.epoch_tally,
            decoder=cfg.data.decoder)
    within = budget_within_warmup(plan, stats["steps"], stats["status"] == "finished")
    if within:
        log(within, verbose)
    if resume is not None and stats["steps"] == step:  # resumed after the last step
        stats.update({k: resume.get("metrics", {}).get(k) for k in ("train_loss", "train_top1")})
    results = _training_results(cfg, train, num_classes, plan, prec, stats)
    if out is not None:  # before the evaluation, so a kill during it keeps the training
        results["checkpoint"] = save(stats["steps"], stats["train_s"], results, periodic=False)
    if stats["status"] == "preempted" or not dist.is_main():
        return results
    return _evaluate(model, test, results, out, train, cfg, dev, prec, elapsed, start, save)


# A diverged run's record, as a pretraining's (rundir.record_divergence): `simclr info`
# reads it, and resume_target.run_state, so that the same command run again (a retry loop,
# torchrun's --max-restarts) does not continue into the blow-up.
SUMMARY = "summary.json"


@contextlib.contextmanager
def _divergence_on_record(out: Path | None, session: int) -> Iterator[None]:
    """A divergence of the training (its DivergedError, raised on) put on record in
    ``out`` (None: another process than rank 0, or no run folder)."""
    try:
        yield
    except DivergedError as exc:
        if out is not None:
            with contextlib.suppress(SimCLRError):  # (a full disk: the divergence is said)
                record_divergence(out, exc, session)
        raise


def _starting_step(cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, plan: Plan, run_dir: str | Path | None,
                   resume: Mapping[str, Any] | None, verbose: bool) -> tuple[int, float]:
    """Where the training starts, (step, training seconds): a resumed run's checkpoint
    restored into it, or a new run's notes on its warm-up; either way a note on AdamW at
    a LARS-sized lr (optim.lr_notes)."""
    # Resumed too: a release before 2026-12-06 gave AdamW a LARS-sized lr, unsaid.
    notes = lr_notes(cfg.optim, cfg.batch_size, resumed=resume is not None)
    if resume is not None:
        step, elapsed = restore(resume, model, optimizer, scaler, plan, verbose)
        log(f"resuming {run_dir} from step {step} of {plan.total_steps}", verbose)
        for note in notes:
            log(note, verbose)
        return step, elapsed
    for note in [*warmup_notes(cfg, plan), *notes]:
        log(note, verbose)
    return 0, 0.0


def _record_start(out: Path, cfg: Config, data: Mapping[str, str | None] | None,
                  resumed: bool, run_id: str) -> int:
    """Write this start into the run's config.yaml (with the ``run_id`` its checkpoints
    carry); returns which start of the run it is (its checkpoints say: :class:`_Saver`)."""
    # The folders too (config.yaml's `folders`): the file says what the run trained
    # and tested on, and `simclr supervised --config` reruns it without --train. Its
    # provenance as a pretraining's: this start's command and versions, and a resumed
    # run's earlier starts, which the rewritten file would otherwise lose.
    started = start_record(out, resumed)
    session = session_number(started)
    # An earlier session's divergence (this start trains on from a checkpoint before it,
    # or anew where none was saved): no longer how the run stands, nor its outcome
    with contextlib.suppress(FileNotFoundError):
        (out / SUMMARY).unlink()
    save_yaml({**cfg.to_dict(), **({"folders": dict(data)} if data else {}),
               "provenance": started, "run_id": run_id}, out / "config.yaml")
    return session


@dataclass
class _Saver:
    """A supervised run's checkpoints, called as ``save(step, seconds, metrics,
    periodic)``: each holds what ``--resume`` restores; rank 0 alone writes them, into
    ``out`` (None: another process, or no run folder; nothing is written)."""

    out: Path | None
    model: torch.nn.Module
    cfg: Config
    train: Any
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    plan: Plan
    run_id: str  # kept when resumed
    session: int  # which start of the run this is
    data: Mapping[str, str | None] | None
    # The running epoch's loss and hits (classify.Checkpointing.keep_tally), saved with
    # each checkpoint: a run stopped inside an epoch reports that whole epoch when resumed.
    epoch_tally: dict[str, float] | None

    def keep_tally(self, tally: dict[str, float]) -> None:
        """The running epoch's tally, for the next checkpoint."""
        self.epoch_tally = tally

    def __call__(self, step: int, seconds: float, metrics: dict[str, Any],
                 periodic: bool) -> str | None:
        """Save a checkpoint after ``step`` steps (``periodic``: a ``ckpt-<step>.pt``
        the oldest of which go past ``keep_checkpoints``; else ``last.pt``); its path."""
        if self.out is None:  # another process than rank 0, or no run folder
            return None
        plan = self.plan
        blob = classifier_checkpoint("supervised", self.model, self.cfg.to_dict(),
                                     list(self.train.classes), step, seconds, metrics,
                                     self.optimizer, run_id=self.run_id)
        if self.epoch_tally is not None:
            blob["epoch_tally"] = self.epoch_tally
        # (a stop's status in last.pt: `simclr info` tells a later start's, killed
        # before its first checkpoint, by the session)
        blob.update(scaler=self.scaler.state_dict(), total_steps=plan.total_steps,
                    session=self.session, warmup_steps=plan.warmup_steps,
                    epoch=step // plan.steps_per_epoch,
                    step_in_epoch=step % plan.steps_per_epoch,
                    num_train=self.train.num_images, data=dict(self.data or {}),
                    # (as a pretraining's: `simclr info` says torchrun's command to go on)
                    processes=dist.world_size(),
                    local_processes=dist.machine_processes() if dist.world_size() > 1 else 1)
        name, keep = ((periodic_name(step), self.cfg.keep_checkpoints) if periodic
                      else ("last.pt", None))
        return str(save_checkpoint(blob, self.out / CHECKPOINTS, name, keep))


def _checkpointing(cfg: Config, save: _Saver, out: Path | None, run_dir: str | Path | None,
                   resume: Mapping[str, Any] | None,
                   on_step: Callable[[int, StopFlag], None] | None) -> Checkpointing | None:
    """When the training saves (every ``cfg.checkpoint_every`` steps or
    ``checkpoint_minutes``, and on a stop request); None without a run folder. Every
    process checks for a stop request (they agree on the step); rank 0 saves."""
    return None if run_dir is None else Checkpointing(
        lambda s, t: save(s, t, {}, periodic=True), cfg.checkpoint_every, on_step,
        every_s=60 * cfg.checkpoint_minutes, keep_tally=save.keep_tally,
        # (the checkpoint resumed from; a new run's folder holds none)
        last=None if out is None or resume is None else latest_checkpoint(out / CHECKPOINTS))


def _training_results(cfg: Config, train: Any, num_classes: int, plan: Plan, prec: str,
                      stats: dict[str, Any]) -> dict[str, Any]:
    """The results of the training alone (the test adds its own): its settings and
    ``stats``; under torchrun, which process's they are."""
    results: dict[str, Any] = {
        "command": "supervised", "num_train": int(train.readable_images),  # (as read)
        "num_classes": num_classes, "batch_size": cfg.batch_size,
        "total_steps": plan.total_steps, "warmup_steps": plan.warmup_steps,
        "optimizer": cfg.optim.name, "image_size": cfg.augment.size, "precision": prec,
        "seed": cfg.seed, "processes": dist.world_size(), **stats,
    }
    if dist.world_size() > 1:
        results["rank"] = dist.rank()
    return results


def _evaluate(model: torch.nn.Module, test: Any | None, results: dict[str, Any],
              out: Path | None, train: Any, cfg: Config, dev: torch.device, prec: str,
              elapsed: float, start: float, save: Callable[..., Any]) -> dict[str, Any]:
    """Test top-1/top-5 (with ``test``), the results files, and the final checkpoint
    carrying them."""
    if test is not None:
        ranked, test_y = evaluate_classifier(model, test, cfg.augment.evaluation_size(),
                                             batch_size=cfg.batch_size, device=dev,
                                             precision=prec, channels_last=cfg.channels_last,
                                             workers=cfg.data.workers,
                                             again="into a new --out: --resume keeps the lr",
                                             decoder=cfg.data.decoder)
        results.update(accuracy_summary(ranked, test_y), num_test=int(len(test_y)),
                       test_image_size=cfg.augment.evaluation_size())  # (--eval-size)
    results["elapsed_s"] = elapsed + time.perf_counter() - start  # every segment + the test
    if out is not None and test is not None:  # the checkpoint carries the test accuracy too
        save(results["steps"], results["train_s"], results, periodic=False)
    if test is not None:
        finish_results(results, out, "supervised", ranked, test_y, train, test)
    elif out is not None:
        write_results(out, RESULT, results)
    return results
