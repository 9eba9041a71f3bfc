"""A pretraining session's records, read and written: what a session starts from (a
finished run's summary, so nothing is trained again; the plan and state a checkpoint
restores) and what it puts on record as it goes and at its end (the metrics line that
closes a --log-every window, the periodic checkpoint, summary.json, a stop signal that
came after the loop).

Apart from train.py, whose loop calls them at their steps: the loop reads as the steps
it takes, these say what each record holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from simclr import distributed as dist
from simclr.checkpoint_read import readable_state
from simclr.config import Config
from simclr.errors import with_article
from simclr.files import read_json, write_json
from simclr.monitor import (
    FINAL_METRICS,
    Meter,
    check_finite,
    collapse_note,
    log_line,
    weights_diverged,
)
from simclr.plan import Plan, plan_schedule
from simclr.resume import RunState, check_same_images, restore, summary_finished
from simclr.rundir import RunDir
from simclr.source import ImageSource


def finished_summary(run: RunDir, cfg: Config) -> dict[str, Any] | None:
    """The summary of a resumed run that has nothing left to do: its checkpoint at its
    last step and its summary.json saying it finished, with the final kNN measure where
    ``cfg`` asks for one. Otherwise the session goes through the loop, which trains no
    step and writes the summary: a session killed between the two, or one stopped at
    its last step, which skips the final kNN (a kill may follow the signal)."""
    if run.saved is None or _saved_step(run.saved) < run.saved["total_steps"]:
        return None
    summary = read_json(run.path / "summary.json") or {}
    return summary if summary_finished(summary, cfg, run.saved["step"]) else None



def _saved_step(saved: dict[str, Any]) -> int:
    """A resumed checkpoint's step, checked a whole number as its total_steps is (a
    damaged or edited file's "abc" is refused in one line, as a step that does not fit
    the run is when it is restored, never a TypeError's traceback comparing them)."""
    with readable_state(saved, "step"):
        for key in ("step", "total_steps"):
            if isinstance(saved[key], bool) or not isinstance(saved[key], int):
                raise TypeError(f"its {key} is {with_article(type(saved[key]).__name__)}, "
                                "not a whole number")
    return saved["step"]



def start_state(
    cfg: Config, run: RunDir, num_images: int, all_images: bool, model: torch.nn.Module,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
) -> tuple[Plan, RunState]:
    """The plan and state the run starts from: step 0 of a new plan, or, resuming, the
    saved ones (with the model's, optimizer's and RNG state) of ``run``'s checkpoint."""
    plan = plan_schedule(cfg, num_images)
    state = RunState(all_images=all_images)
    if run.saved is not None:
        check_same_images(run.saved, plan)
        restore(run.saved, model, optimizer, scaler, state, plan)
        log_line(f"resuming {run.path} from step {state.step} ({run.checkpoint.name})")  # type: ignore[union-attr]  # (saved: read from it)
        run.saved = None  # the tensors are in the model now; free the copy
    return plan, state



def record_late_stop(summary: dict[str, Any], requested: str | None, run_dir: Path) -> None:
    """A stop signal that came after the loop built ``summary`` (during the final kNN,
    minutes on real data, or its write) is recorded as one during the last step is: the
    run has finished, its signal on record (rewritten in summary.json), so the command
    says so and a sweep stops before its next cell (it was lost: the sweep went on)."""
    if requested and summary.get("status") == "finished" and not summary.get("signal"):
        summary["signal"] = requested
        if dist.is_main():
            write_json(run_dir / "summary.json", summary)



def run_summary(
    cfg: Config, source: ImageSource, plan: Plan, state: RunState, reason: str,
    signal: str | None, checkpoint: Path | None, logged: dict[str, Any],
) -> dict[str, Any]:
    """What summary.json says of a session that ended (``reason``: 'finished' or
    'preempted', by ``signal``), with ``checkpoint`` its last, and which start of the
    run the session was (``session``: a later start killed before its own summary leaves
    this one, which `simclr info` then reads as an earlier session's); with the means of
    ``logged``, the last metrics line (the kNN monitor's final top-1 is added after)."""
    summary = {
        "status": reason, "signal": signal, "steps": state.step,
        "epochs": state.step / plan.steps_per_epoch, "elapsed_s": state.elapsed,
        "checkpoint": str(checkpoint), "num_images": source.readable_images,
        "processes": dist.world_size(), "skipped_images": [list(s) for s in source.skipped],
        "bad_steps": state.bad_steps,  # (--nan-policy skip: non-finite steps, not applied)
        "session": state.session,
        **_compiling(cfg, state),
    }
    # The last logged window's means (a sweep's table shows them: Table 5's columns).
    summary.update({k: logged[k] for k in FINAL_METRICS if k in logged})
    return summary



def window_record(
    cfg: Config, plan: Plan, state: RunState, meter: Meter, optimizer: torch.optim.Optimizer,
    trained: float,
) -> dict[str, Any]:
    """The metrics line that closes a --log-every window at ``state.step``: the window's
    means (read back from the device now, the step's one host sync of a log line) and
    views/s over ``trained`` seconds, the lr, the wall-clock time (and the seconds spent
    compiling: :func:`_compiling`) and the plan's length as it stands; and, once, a note
    that the loss sits at a collapsed representation's (:func:`collapse_note`)."""
    record = {"step": state.step, "epoch": state.step / plan.steps_per_epoch,
              **meter.record(state.step, 2 * cfg.batch_size, trained),
              "lr": optimizer.param_groups[0]["lr"], "elapsed": state.elapsed,
              **_compiling(cfg, state), "total_steps": plan.total_steps}
    return collapse_note(meter.collapse, cfg, record, plan.warmup_steps)  # (once a run)


def _compiling(cfg: Config, state: RunState) -> dict[str, float]:
    """``{"compile_s": seconds}`` where a session of the run compiled (this one under
    --compile, or an earlier one of a run resumed without it), else nothing: the logged
    elapsed is wall time, and the compiling seconds within it are no training time."""
    return {"compile_s": state.compile_s} if cfg.compile or state.compile_s else {}



def periodic_checkpoint(
    rule: str | None, first_bad: torch.Tensor, last_good: Path | None, cfg: Config,
    precision: str, save_periodic: Callable[[], Path | None],
) -> Path | None:
    """The periodic save (``save_periodic``) a rule of
    :class:`simclr.runtime.SaveSchedule` calls for (None: none), and the last good
    checkpoint after it. Every --checkpoint-every steps the run first stops if a loss
    was non-finite (:func:`simclr.monitor.check_finite`: never a diverged
    model saved); a save by the clock (rank 0's alone) is left out instead, as the
    others go on (under --nan-policy skip a non-finite step changed nothing: saved)."""
    if rule == "steps":
        check_finite(first_bad, last_good, cfg, precision)
        return save_periodic()
    if rule == "clock" and not weights_diverged(first_bad, cfg):  # never a diverged model
        return save_periodic()
    return last_good
