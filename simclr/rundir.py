"""The run folder: where a pretraining writes, and the checks that keep it that run's.

A run folder holds ``checkpoints/`` and the logs beside them (:data:`RUN_LOGS`). Before
anything is read, :func:`check_run_dir` says whether ``--out`` is free for a new run (not
a live run's, another run's, a sweep's, another command's, nor inside the data) or
names the checkpoint a ``--resume`` continues, whose length must not change;
:func:`make_run_dir` then creates and holds it once every input is checked.
:class:`MetricsLog` is its JSON-lines metrics log (and TensorBoard events).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simclr import distributed as dist
from simclr.checkpoint import CHECKPOINTS, checkpoint_files, resume_checkpoint
from simclr.config import Config
from simclr.errors import SimCLRError
from simclr.files import folder_holder, in_use, lock_folder, set_aside, write_atomically
from simclr.results import check_not_inside, check_out_folder
from simclr.settings import config_from_dict


class MetricsLog:
    """JSON-lines metrics (always) and TensorBoard events (when the package is present).

    ``resumed_at``: the step of the checkpoint a resumed run continues from. What an
    earlier session logged after it (a run killed between two checkpoints) is dropped,
    since those steps are trained and logged again: the log reads as one run.
    """

    def __init__(self, run_dir: Path, enabled: bool, resumed_at: int | None = None) -> None:
        self.enabled = enabled
        path = run_dir / "metrics.jsonl"
        if enabled and resumed_at is not None and path.exists():
            _drop_after(path, resumed_at)
        self.file = open(path, "a") if enabled else None  # noqa: SIM115
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resumed_at is None else resumed_at + 1  # the same, for TB
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
            except ImportError:  # tensorboard is a dependency, but a broken env must not kill runs
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _drop_after(path: Path, step: int) -> None:
    """Rewrite the JSON-lines ``path`` without the step records past ``step`` (a
    session's start line and unreadable lines are kept as they are)."""
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and "event" not in record
                and isinstance(record.get("step"), int) and record["step"] > step):
            kept.append(line)
    write_atomically(path, lambda tmp: tmp.write_text("".join(kept)))


@dataclass
class RunDir:
    """Where a run writes, and the checkpoint it continues from (None: a new run)."""

    path: Path
    checkpoint: Path | None = None
    saved: dict[str, Any] | None = None  # the checkpoint's content


# What a pretraining writes beside its checkpoints.
RUN_LOGS = ("metrics.jsonl", "tb", "summary.json", "config.yaml")


def check_run_dir(cfg: Config, resume: bool) -> RunDir:
    """Check the run directory without creating anything: a command that fails on its
    inputs must leave no empty run folder behind (:func:`make_run_dir` comes later)."""
    run_dir = Path(cfg.out).expanduser()
    if resume:
        found, path, ckpt = resume_checkpoint(run_dir)
        check_run_length(ckpt["config"], cfg, found)
        return RunDir(found, path, ckpt)
    check_out_folder(run_dir)  # found now, not after decoding
    check_outside_data(cfg, run_dir)
    holder = folder_holder(run_dir)
    if holder:  # said first: --resume would be refused as well while it runs
        raise in_use(run_dir, holder)
    if (run_dir / "sweep.json").is_file():  # its cells' results would read as this run's
        raise SimCLRError(f"{run_dir} is a sweep's folder (sweep.json); choose another --out")
    if checkpoint_files(run_dir / CHECKPOINTS):  # readable or not, never written over
        raise SimCLRError(
            f"{run_dir} already holds a run; use --resume {shlex.quote(str(run_dir))} to "
            "continue it or --out to start a new one"
        )
    others = sorted((run_dir / CHECKPOINTS).glob("*.pt"))  # e.g. linear-eval's linear.pt
    if others:  # a new encoder beside a classifier of another would be taken for its own
        raise SimCLRError(f"{run_dir} already holds {CHECKPOINTS}/{others[0].name} (another "
                          "command's model); choose another --out")
    present = [name for name in RUN_LOGS if (run_dir / name).exists()]
    if present and not _logs_of_a_run(run_dir):  # e.g. --out . in a project folder
        raise SimCLRError(f"{run_dir} holds {present[0]}, not written by a simclr run; "
                          "choose another --out")
    check_not_above_runs(run_dir)
    return RunDir(run_dir)


def check_not_above_runs(run_dir: Path) -> None:
    """Refuse a new run's folder that holds other runs (``--out .`` in runs/): ``simclr
    info`` reads a run's evaluations one folder down, so theirs would pass for this
    run's, and the folder would no longer list as the runs it holds."""
    try:
        runs = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and (
            (p / "config.yaml").is_file() or (p / CHECKPOINTS).is_dir()))
    except OSError:  # (not there yet: nothing inside)
        return
    if runs:
        more = ", ..." if len(runs) > 3 else ""
        raise SimCLRError(f"{run_dir} holds other runs ({', '.join(runs[:3])}{more}); give "
                          f"this run a folder of its own (--out {run_dir / 'NAME'})")


def _logs_of_a_run(run_dir: Path) -> bool:
    """Whether the logs in ``run_dir`` are a simclr pretraining's (one killed before its
    first checkpoint: :func:`make_run_dir` sets them aside)."""
    try:
        with open(run_dir / "metrics.jsonl") as f:
            return json.loads(f.readline()).get("event") == "start"
    except (OSError, ValueError, AttributeError):
        pass
    try:  # killed between writing its config and its first log line
        return "\nprovenance:" in (run_dir / "config.yaml").read_text()
    except (OSError, ValueError):
        return False


def check_outside_data(cfg: Config, run_dir: Path) -> None:
    """Refuse a run directory inside a folder the run reads: its checkpoints and logs
    would become classes (or images) of that data set."""
    check_not_inside(run_dir, {"--data": cfg.data.path, "--knn-train": cfg.knn_train,
                               "--knn-test": cfg.knn_test}, "run")


# The settings that fix a run's length. The schedule (warm-up, cosine to final_lr) is
# a function of the planned total steps, so a resumed run keeps them: a longer or
# shorter run is a new run, and config.yaml never claims a length that was not used.
RUN_LENGTH = ("epochs", "max_steps", "time_budget")


def check_run_length(saved: dict[str, Any], cfg: Config, run_dir: Path) -> None:
    """Refuse a resume (of the run in ``run_dir``, whose config is ``saved``) that asks
    for another length than the saved one (:data:`RUN_LENGTH`)."""
    then = config_from_dict(saved)
    for key in RUN_LENGTH:
        before, now = getattr(then, key), getattr(cfg, key)
        if before != now:
            flag = key.replace("_", "-")
            before, now = (f"{v:g}" if isinstance(v, float) else "not set" if v is None
                           else v for v in (before, now))
            raise SimCLRError(
                f"--resume {run_dir}: cannot change --{flag} ({before} saved, {now} asked): "
                "the learning-rate schedule was planned for the saved run length; start a "
                "new run (--out) to train for another length"
            )


def make_run_dir(run_dir: Path, resume: bool) -> Any:
    """Create the run directory and hold it (rank 0: files.lock_folder) for as long as
    the returned handle stays open. A new run is checked again once held: another run
    may have started into the same folder since :func:`check_run_dir`."""
    try:
        (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimCLRError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    if not dist.is_main():
        return None
    held = lock_folder(run_dir)
    if not resume and checkpoint_files(run_dir / CHECKPOINTS):
        if held is not None:
            held.close()
        raise SimCLRError(f"{run_dir} already holds a run, written by another simclr process "
                          "since this one started; choose another --out")
    if not resume:
        # A run killed before its first checkpoint leaves logs that nothing can continue:
        # kept aside, so the new run's log starts at its own step 0, alone.
        try:
            kept = set_aside(run_dir, RUN_LOGS)
        except OSError as exc:
            if held is not None:
                held.close()
            raise SimCLRError(f"cannot set aside the earlier logs in {run_dir}: "
                              f"{exc.strerror}") from None
        if kept:  # (rank 0 alone gets here: the others returned above)
            print(f"{run_dir} held the logs of a run without a checkpoint; they are kept "
                  f"as {kept}", flush=True)
    return held
