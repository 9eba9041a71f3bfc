"""SimCLR pretraining: the whole training loop, readable in one sitting.

One code path serves the CPU, one GPU and many (torchrun): the batch size is the
global batch, each process takes its shard, and the loss sees negatives from every
process (loss.py via distributed.py). Augmentation runs batched on the training device
(augment.py), fed by uint8 batches from a decoded cache or from decoding workers
(data.py, loader.py), so the input pipeline costs a small fraction of a step. What the
run trains with (the device, the model, the images batch by batch) is train_setup.py's;
what a session starts from and puts on record (a metrics line, a periodic checkpoint,
summary.json), train_records.py's; how many steps the run takes, plan.py's; what a
checkpoint holds and how a run continues, resume.py's; what the run says of itself as
it goes (metrics windows, the NaN guard, the kNN monitor), monitor.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import torch

from simclr import distributed as dist
from simclr.augment import TwoViewAugment
from simclr.checkpoint import latest_checkpoint
from simclr.config import Config
from simclr.config_file import save_yaml
from simclr.errors import DivergedError, NoReadableImageError, SimCLRError, user_message
from simclr.files import write_json
from simclr.folders import list_folder, split_name
from simclr.loss import loss_and_metrics
from simclr.memory import check_step_memory, measure_step, out_of_memory_is_an_error
from simclr.monitor import (
    Meter,
    check_finite,
    check_knn_folders,
    count_skipped,
    final_knn,
    knn_missed,
    knn_within_run,
    log_line,
    logged_knn,
    recipe_notes,
    upsampling_notes,
    window_notes,
)
from simclr.optim import build_optimizer, gradients_finite, lr_notes
from simclr.plan import (
    FIRST_REFIT,
    Plan,
    budget_spent,
    budget_within_warmup,
    check_batch_fits,
    end_if_spent,
    note_first_step,
    refit_to_budget,
    set_lr,
    warmup_notes,
)
from simclr.pretrained import apply_initial_weights, check_initial_weights, initial_weights
from simclr.progress import Progress
from simclr.resume import (
    RunState,
    check_files_listed,
    check_resumed_settings,
    check_same_runtime,
    knn_split_notes,
    knn_splits,
    read_all_images,
    recorded_init_from,
    save,
    session_number,
    skipped_before,
    start_record,
    unwrap,
)
from simclr.rundir import (
    MetricsLog,
    check_run_dir,
    drop_unstarted,
    make_run_dir,
    record_divergence,
    reused_summary,
)
from simclr.runtime import (
    SaveSchedule,
    StopFlag,
    autocast,
    compile_failure_is_an_error,
    compiled,
    process_settings_restored,
)
from simclr.settings import absolute_paths
from simclr.source import ImageSource
from simclr.train_records import (
    finished_summary,
    periodic_checkpoint,
    record_late_stop,
    run_summary,
    start_state,
    window_record,
)
from simclr.train_setup import (
    describe,
    epoch_batches,
    open_data,
    setup_model,
    setup_runtime,
    share_skipped,
)
from simclr.validate import check_scale, validate

EXIT_PREEMPTED = 75  # after a stop signal (SIGTERM...): checkpoint written, resume with --resume


# Under torchrun the processes leave the group together: one that exits while the others
# still write the checkpoint tears down its communication threads under them.
@dist.process_group()
@process_settings_restored()
def pretrain(
    cfg: Config,
    resume: bool = False,
    on_step: Callable[[int, StopFlag], None] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Run (or continue) a pretraining run; returns its summary (also in summary.json).

    ``cfg``: every setting (:func:`simclr.settings.build_config` builds one from a
    preset, a YAML file and flags; checked again here, so one edited after it is held
    to the same rules). ``on_step(step, stop)`` is called after every step (tests use
    it to simulate a preemption by setting ``stop.requested``). ``notes`` are printed
    once every input has been checked, as the run starts.

    SIGTERM or SIGINT (Ctrl-C), or SIGHUP or SIGUSR1 (a closed terminal, a scheduler's
    warning), while it trains (from the main thread, where signals land) end the step,
    write a checkpoint and return the summary with status 'preempted' (no exception:
    check the status before using the encoder); a second
    Ctrl-C raises KeyboardInterrupt at once, the last checkpoint kept. ``resume=True``
    continues the run in ``cfg.out`` with its saved settings
    (``simclr.resume.load_resume_config(run)`` reads them): only those of
    ``config.RESUME_SETTINGS`` may differ; a finished run resumed returns its summary,
    trains nothing.

    Side effects beyond the run folder: ``cfg``'s folders are made absolute (as the run
    records them); torch's global RNG is seeded from ``cfg.seed``
    (each run draws the same), glibc's allocator is tuned for the CPU; the thread
    count, deterministic algorithms (on CUDA with CUBLAS_WORKSPACE_CONFIG, unless set)
    and cuDNN's autotuner are set for the run and restored after it.
    """
    validate(cfg)
    if not resume:  # what build_config holds a new run to, for a cfg edited after it
        check_scale(cfg)
    dist.check_divisible(cfg.batch_size)
    device, precision = setup_runtime(cfg)
    absolute_paths(cfg)  # what config.yaml and the checkpoints record
    run = check_run_dir(cfg, resume)
    if run.saved is not None:  # (a Config built anew, not by load_resume_config)
        check_resumed_settings(run.saved["config"], cfg, run.path, device)
    done = finished_summary(run, cfg)
    if done is not None:  # nothing to train: no start line, no new config record
        # (held a moment: a killed save's leftovers go; refused if another --resume went on)
        held = make_run_dir(run.path, resume, run.mark)
        if held is not None:
            held.close()
        log_line(f"{run.path} finished at step {done['steps']} already: nothing to do")
        # where its checkpoint is now (the folder may have moved since the summary)
        return {**reused_summary(done), "checkpoint": str(run.checkpoint),
                "rank": dist.rank()}
    check_knn_folders(cfg)
    # A run resumed from a checkpoint of before images beside class folders counted
    # keeps the images it was planned on.
    all_images = read_all_images(run.saved)
    # The image files, checked by their names before decoding (None: a named data set)
    files = list_folder(cfg.data.path, train=True, unlabeled=all_images)
    digest = None if files is None else files.names_digest()
    if files is not None:
        if run.saved is not None:  # other images than the run's: said first
            notes = [*notes, *check_files_listed(run.saved, len(files.paths), digest,
                                                 cfg.data.path)]
        check_batch_fits(cfg.batch_size, len(files.paths), files, cfg.data.max_pixels)
    if run.saved is not None:  # (knn: the monitor's images, its curve, not the training)
        notes = [*notes, *knn_split_notes(run.saved, cfg), *check_same_runtime(run.saved, device)]
    # Read now, so a wrong file is named before the data are decoded; loaded below.
    initial = initial_weights(cfg.init_from) if cfg.init_from and not resume else None
    if initial is not None:  # (and whether it fits this run's encoder)
        check_initial_weights(cfg, *initial)
    torch.manual_seed(cfg.seed)

    source = open_data(cfg, all_images, run.saved, files)  # (its checked files: listed once)
    if run.saved is not None:  # the unreadable files met before: counted and listed again
        source.remember_skipped(skipped_before(run.saved, cfg.data.path))  # type: ignore[arg-type]  # (a folder's)
    notes = [*notes, *upsampling_notes(cfg, source), *window_notes(cfg, source),
             *([] if resume else recipe_notes(cfg))]
    model = setup_model(cfg, device)
    started_from = None  # the file and step --init-from named (a run trains on: kept)
    if initial is not None:
        notes = [*notes, apply_initial_weights(unwrap(model), *initial)]  # type: ignore[arg-type]  # (ours)
        started_from, initial = initial[1], None  # the tensors are in the model now
    # Measured before the first step: a batch that cannot fit fails in a second with
    # a message, not when the kernel kills the process. (After the data, so a wrong
    # folder is named first; a decoded cache is kept for the next run.) Not measured at
    # all under --no-memory-check: views too large to measure on would refuse the run.
    if cfg.memory_check:
        check_step_memory(measure_step(model, cfg.augment.size, device, precision,
                                       cfg.channels_last),
                          cfg.batch_size, dist.world_size(), device, describe(cfg, precision),
                          enforce=not cfg.compile)
    optimizer = build_optimizer(cfg.optim, model, cfg.batch_size)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    plan, state = start_state(cfg, run, source.num_images, all_images, model, optimizer, scaler)
    if not resume:  # (a resumed run was told when it started; run.saved: cleared now)
        notes = [*notes, *warmup_notes(cfg, plan)]
    # Resumed too: a release before 2026-12-06 gave AdamW a LARS-sized lr, unsaid.
    notes = [*notes, *lr_notes(cfg.optim, cfg.batch_size, resumed=resume)]
    if files is not None:
        state.num_files, state.files_digest = len(files.paths), digest
        state.data_split = split_name(cfg.data.path, True)  # type: ignore[arg-type]  # (a folder: listed)
    state.knn_splits = knn_splits(cfg)  # (as read this session: what later ones compare)
    state.cached, state.skipped = source.cached, source.skipped  # (a list that grows)

    # Every input checked: from here on the run writes (unless the run went on meanwhile).
    held = make_run_dir(run.path, resume, run.mark)
    try:
        for note in notes:
            log_line(note)
        summary = run_session(cfg, source, model, optimizer, scaler, plan, state, device,
                              precision, run.path, resume, on_step, started_from)
    except BaseException as exc:
        if not resume:  # (stopped before its first line: no folder left to pass for a run)
            drop_unstarted(run.path)
        if isinstance(exc, KeyboardInterrupt):  # a second Ctrl-C: the caller names what
            exc.run_dir = run.path  # type: ignore[attr-defined]  # continues it
        raise
    finally:
        if held is not None:
            held.close()  # the folder is free for a --resume
    return {**summary, "rank": dist.rank()}



def run_session(
    cfg: Config, source: ImageSource, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, plan: Plan, state: RunState, device: torch.device,
    precision: str, run_dir: Path, resume: bool,
    on_step: Callable[[int, StopFlag], None] | None, started_from: str | None = None,
) -> dict[str, Any]:
    """This session of the run (a resumed run has several) in its held folder: its
    config.yaml, a start line in the metrics log, then the loop. A user-facing failure
    (a SimCLRError, a divergence) is put on record in summary.json before it
    propagates. ``started_from``: the file (and step) a new run's --init-from weights
    came from, on record (a run named there may train on: its folder alone would not say
    which step this run started from); a resumed session's config.yaml carries the
    first start's record on."""
    initial = {} if started_from is None else {"init_from_resolved": started_from}
    # DDP averages gradients across processes (identity on one process); compile last.
    forward = dist.wrap_ddp(model, device)
    forward = compiled(forward) if cfg.compile else forward
    # The log first: a resume it refuses (a read-only file) leaves config.yaml as it was,
    # not naming a start that never trained a step.
    log = MetricsLog(run_dir, dist.is_main(), state.step if resume else None)
    try:
        started: dict[str, Any] = {}  # (rank 0 alone writes config.yaml and the log)
        if dist.is_main():
            started = start_record(run_dir, resume)
            state.session = session_number(started)  # (rank 0's: it writes the summary)
            # (a resumed start's: the first start's record, read before it is rewritten)
            kept = recorded_init_from(run_dir) if resume else initial
            save_yaml({**cfg.to_dict(), "provenance": started,
                       "precision_resolved": precision, "device_resolved": str(device),
                       "num_images": source.num_images, **kept, "run_id": state.run_id},
                      run_dir / "config.yaml")
        # This start's provenance, as config.yaml records it (git asked once, not twice)
        this_start = {k: v for k, v in started.items() if k != "earlier"}
        log.write({"step": state.step, "event": "start", **this_start,
                   "precision": precision, "device": str(device),
                   "num_images": source.num_images, "skipped_images": len(source.skipped),
                   "processes": dist.world_size(), **initial})
        with StopFlag() as stop, compile_failure_is_an_error() if cfg.compile else \
                contextlib.nullcontext():
            summary = train_loop(cfg, source, forward, model, optimizer, scaler,
                                 TwoViewAugment(cfg.augment, cfg.seed), plan, state, device,
                                 precision, run_dir, log, stop, on_step)
            record_late_stop(summary, stop.requested, run_dir)
            return summary
    except DivergedError as exc:  # an outcome of the settings: on record (sweeps read it)
        if dist.is_main():
            record_divergence(run_dir, exc, state.session)
        raise
    except SimCLRError as exc:  # e.g. a full disk at the final save: `simclr info` says why
        if dist.is_main():
            if isinstance(exc, NoReadableImageError):  # each file's reason, as with a few
                source.find_unreadable()
            skipped = [list(s) for s in source.skipped]
            with contextlib.suppress(SimCLRError):  # (the disk may refuse this too)
                # The line the CLI prints, not a loader worker's traceback around it.
                write_json(run_dir / "summary.json", {
                    "status": "failed", "reason": user_message(exc), "steps": state.step,
                    "skipped_images": skipped, "session": state.session})
        raise
    finally:
        log.close()



def train_step(
    cfg: Config, forward: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, views: torch.Tensor, per_rank: int, device: torch.device,
    precision: str,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, bool]:
    """One update on views (2n, 3, S, S), view 0 of every image then view 1 (Alg. 1).

    Returns the step's metrics (loss, positive top-1 among all 2N - 1 other views and,
    for NT-Xent, Table 5's contrast entropy and accuracy: :func:`loss_and_metrics`; means
    over the processes) and whether the step was finite (its loss and, unless a gradient
    scaler handles overflow itself, every gradient), as device tensors, and whether the
    update was skipped: under ``nan_policy='skip'`` a non-finite step leaves the weights,
    the optimizer's state and the BatchNorm statistics untouched (that policy's one host
    sync per step).
    """
    # The forward pass alone moves BatchNorm's running statistics: a skipped step puts
    # them back, or NaN activations would reach every later checkpoint.
    stats = ([b.clone() for b in forward.buffers()] if cfg.nan_policy == "skip" else [])
    with autocast(device, precision):
        _, z = forward(views)
    loss, metrics = loss_and_metrics(cfg.loss, z[:per_rank].float(), z[per_rank:].float())
    optimizer.zero_grad(set_to_none=True)
    # Every process runs the backward, a NaN loss's too: one that skipped it alone would
    # leave the others waiting in DDP's gradient all-reduce.
    scaler.scale(loss * cfg.loss.weight).backward()  # weight: see LossConfig
    # A finite loss can still give NaN/inf gradients: checked too, or the update would
    # reach the checkpoint.
    finite = torch.isfinite(loss) & gradients_finite(optimizer, scaler)
    # One device-side reduction, no host sync: whether every process's step is finite,
    # and the metrics' means over the processes (Meter's sums).
    names = ["loss", *metrics]
    reduced = dist.all_reduce_mean(torch.stack(
        [finite.float(), loss.detach().float(),
         *(metrics[name].detach().float() for name in names[1:])]))
    finite = reduced[0] == 1
    # (a step that was not finite has no number, whichever part was not: a null window
    # under --nan-policy stop; skip leaves it out of the window's means, monitor.Meter)
    metrics = dict(zip(names, reduced[1:].masked_fill(~finite, math.nan), strict=True))
    skipped = cfg.nan_policy == "skip" and not bool(finite)
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, before in zip(forward.buffers(), stats, strict=True):
                buffer.copy_(before)
    else:
        scaler.step(optimizer)
        scaler.update()
    return metrics, finite, skipped



@dataclasses.dataclass
class SessionClock:
    """This session's seconds, added to the earlier sessions' (``elapsed_before``): wall
    time since ``start``, and of it the training seconds that a --time-budget and views/s
    count. Under --compile the session's first step compiles (torch.compile, anew each
    session: a minute on a CPU): its seconds are not training time. The kNN monitor's
    measures are, for the budget (a deadline in wall time, whatever fills it), but not
    for views/s (:meth:`unstepped`)."""

    start: float  # (time.perf_counter()'s)
    elapsed_before: float
    compiling: bool  # (the coming step compiles)

    def step_ended(self, state: RunState, meter: Meter, step_start: float) -> float:
        """The step begun at ``step_start`` ended: ``state``'s elapsed (and compile)
        seconds brought up to now; returns the run's training seconds, all sessions."""
        now = time.perf_counter()
        state.elapsed = self.elapsed_before + now - self.start
        if self.compiling:  # (the step's own compute is counted as compiling too: a
            # step's worth of seconds given to the budget, once a session)
            state.compile_s += now - step_start
            meter.untimed_step()  # (its views are left out of the window's views/s)
            self.compiling = False
        return state.elapsed - state.compile_s

    @staticmethod
    @contextlib.contextmanager
    def unstepped(meter: Meter) -> Generator[None, None, None]:
        """The block's seconds, no step's (the kNN monitor's measure, as long as several
        steps on a CPU), left out of the open window's views/s: its start moves on by
        them (a checkpoint saves it so). The budget and ``elapsed`` still count them."""
        began = time.perf_counter()
        try:
            yield
        finally:
            meter.start += time.perf_counter() - began



def train_loop(
    cfg: Config, source: ImageSource, forward: torch.nn.Module, model: torch.nn.Module,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, augment: TwoViewAugment,
    plan: Plan, state: RunState, device: torch.device, precision: str, run_dir: Path,
    log: MetricsLog, stop: StopFlag, on_step: Callable[[int, StopFlag], None] | None,
) -> dict[str, Any]:
    """The loop proper: data -> two views -> h, z -> NT-Xent -> LARS step, per step;
    at their intervals a metrics line (:func:`window_record`), a checkpoint
    (:func:`periodic_checkpoint`) and the kNN monitor (:func:`knn_within_run`); at the
    end the last checkpoint and summary.json (:func:`run_summary`)."""
    world = dist.world_size()
    per_rank = cfg.batch_size // world
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    progress = Progress(plan.total_steps, state.step, cfg.progress and dist.is_main())
    # (a window a stop or a kill cut: continued from the checkpoint, not started anew)
    meter = Meter(state.step, state.elapsed - state.compile_s, state.log_window, device)
    # The first non-finite step, kept on the device and checked at log and save points.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    clock = SessionClock(time.perf_counter(), state.elapsed, compiling=cfg.compile)
    trained_before = state.elapsed - state.compile_s
    saves = SaveSchedule(cfg.checkpoint_every,
                         60 * cfg.checkpoint_minutes if dist.is_main() else 0.0)
    next_refit = state.step + FIRST_REFIT
    knn_every_steps = max(1, round(cfg.knn_every * plan.steps_per_epoch))
    last_good: Path | None = latest_checkpoint(run_dir / "checkpoints")
    # (resumed at its last step, killed before its summary: that step's logged record)
    reason, logged = "finished", log.resumed_record
    vote = dist.StopVote(device, state.step)
    model.train()

    def checkpoint(periodic: bool = True) -> Path | None:
        state.log_window = meter.saved()  # (the open window: a resumed run continues it)
        return save(cfg, model, optimizer, scaler, state, plan, run_dir, periodic)

    batches = epoch_batches(cfg, source, plan, state, device)

    def next_batch() -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        # Loading a batch allocates too (gathering the cache's rows, decoding, the
        # loader's thread): a failure there is the coming step's.
        with out_of_memory_is_an_error(cfg.batch_size, state.step, last_good):
            return next(batches, None)

    try:
        # A resumed session's step: its kNN measure as logged, or, a stop having skipped
        # it, taken now (rank 0 alone, as below; the steps are saved: a failing folder
        # saves nothing)
        monitored: tuple[int, float | None] = logged_knn(log, state.step)  # (step, top-1)
        if knn_missed(cfg, state.step, knn_every_steps, log):
            with clock.unstepped(meter):
                monitored = (state.step, knn_within_run(
                    cfg, model, device, precision, state.step, log, first_bad, last_good,
                    lambda: last_good, run_dir, resumed=True))
        while (batch := next_batch()) is not None:
            epoch, indices, images, aspect = batch
            step_start = time.perf_counter()
            set_lr(optimizer, plan, cfg.optim.final_lr, state.step)
            with out_of_memory_is_an_error(cfg.batch_size, state.step, last_good):
                # Both views go through the encoder as one batch (2N, 3, S, S), as the
                # official code does, so BatchNorm statistics cover all 2N views. Crops
                # are drawn on the whole picture each stored square stands for (its
                # aspect ratio).
                views = augment.stacked(images, indices, epoch, aspect)
                views = views.contiguous(memory_format=memory_format)
                metrics, finite, skipped = train_step(cfg, forward, optimizer, scaler, views,
                                                      per_rank, device, precision)
            if skipped:
                count_skipped(cfg, state, last_good)
            first_bad = torch.where(~finite & (first_bad < 0), state.step, first_bad)
            meter.add(metrics, skipped)  # (a skipped step: out of the window's means)
            state.step += 1
            trained = clock.step_ended(state, meter, step_start)  # (all sessions')
            if on_step is not None:
                on_step(state.step, stop)
            last = state.step >= plan.total_steps  # (logged, and no refit: it ends here)
            # A signal may reach only some processes, and each reads its own clock: they
            # agree on the step to stop at (a spent --time-budget: by rank 0's clock).
            signal_name = vote(state.step, stop.requested, last, budget_spent(plan, trained))
            if end_if_spent(plan, state.step, vote.main_flag):  # (the budget is spent)
                progress.set_total(plan.total_steps)  # (its last line: "N/N", not "N/700")
                last = True

            # Windows end at the same steps as an uninterrupted run's, a stop or not: the
            # checkpoint carries an open window on (the log reads as one run).
            if state.step % cfg.log_every == 0 or last:
                # The window's line first (its loss null where a step was non-finite),
                # then the stop on a non-finite loss: the log keeps how far it got.
                logged = window_record(cfg, plan, state, meter, optimizer, trained)
                log.write(logged)
                progress.record(logged, trained - trained_before, last)
                check_finite(first_bad, last_good, cfg, precision)
            progress.step(trained - trained_before)  # (after the step's logged line)
            note_first_step(plan, state.step, trained)
            if cfg.time_budget is not None and state.step >= next_refit and not last:
                next_refit = refit_to_budget(plan, cfg, state.step, trained)
                progress.set_total(plan.total_steps)
            if signal_name:  # the checkpoint is written after the loop
                stop.requested = signal_name
                if not last:  # (stopped at its last step, the run has finished: it says
                    reason = "preempted"  # so, and its signal, and nothing more is done)
                    break
            # Rank 0 alone saves; the clock is its own (a rule of SaveSchedule).
            last_good = periodic_checkpoint(saves.due(state.step, last), first_bad, last_good,
                                            cfg, precision, checkpoint)
            if cfg.knn_train and state.step % knn_every_steps == 0 and dist.is_main() \
                    and not signal_name:
                # Rank 0 alone: the others wait for it in the next step's collectives, as
                # they would have while each measured the same number.
                with clock.unstepped(meter):
                    monitored = (state.step, knn_within_run(
                        cfg, model, device, precision, state.step, log, first_bad,
                        last_good, checkpoint, run_dir))
            if last:
                break
        progress.close()
        check_finite(first_bad, last_good, cfg, precision)
        share_skipped(source)  # (those met since the epoch's start: in the summary too)
        last_good = checkpoint(periodic=False)
        summary = run_summary(cfg, source, plan, state, reason, stop.requested, last_good,
                              logged)
        within = budget_within_warmup(plan, state.step, reason == "finished")
        if within:
            log_line(within)
        if cfg.knn_train and reason == "finished" and not stop.requested and dist.is_main():
            # the final model's, unless the monitor just measured it; never after a stop
            # request (a kill may follow)
            summary["knn_top1"] = final_knn(cfg, model, device, precision, state.step, log,
                                            monitored, last_good, run_dir)
        if dist.is_main():
            write_json(run_dir / "summary.json", summary)
    finally:
        progress.close()  # (on an error too: a bar left open was redrawn after its message)
        # Closed here, all saved (or on an error), not when collected: a second Ctrl-C
        # while the loader's workers stop is then raised (the "now" it means), not
        # printed as ignored and lost; and the workers end now.
        batches.close()
    return summary
