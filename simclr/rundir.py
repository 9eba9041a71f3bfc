"""The run folder: where a pretraining writes, and the checks that keep it that run's.

A run folder holds ``checkpoints/`` and the logs beside them (:data:`RUN_LOGS`). Before
anything is read, :func:`check_run_dir` says whether ``--out`` is free for a new run (not
a live run's, another run's, a sweep's, another command's, nor inside the data or
another run) or names the checkpoint a ``--resume`` continues, whose length must not
change; :func:`make_run_dir` then creates and holds it once every input is checked.
:class:`MetricsLog` is its JSON-lines metrics log (and TensorBoard events).

Which checkpoint a ``--resume`` continues from, why none can be, and where a run stands
(finished, diverged, unfinished) is :mod:`simclr.resume_target`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simclr import distributed as dist
from simclr.checkpoint import (
    CHECKPOINTS,
    LAST,
    checkpoint_files,
    periodic_checkpoints,
)
from simclr.config import Config
from simclr.errors import DivergedError, SimCLRError, user_message
from simclr.files import (
    finite_json,
    folder_holder,
    in_use,
    lock_folder,
    remove_stale_temporaries,
    set_aside,
    write_json,
    written,
)
from simclr.results import (
    check_config_caches,
    check_not_inside,
    check_out_folder,
    make_folder,
    runs_in,
)
from simclr.resume_target import (
    RESUME_MARK,
    RunMark,
    already_holds_run,
    check_not_continued,
    resume_checkpoint,
)
from simclr.settings import config_from_dict

log = logging.getLogger(__name__)


class MetricsLog:
    """JSON-lines metrics (always) and TensorBoard events (when the package is present).

    ``resumed_at``: the step of the checkpoint a resumed run continues from. What an
    earlier session logged after it (a run killed between two checkpoints) is dropped,
    since those steps are trained and logged again: the log reads as one run.
    """

    def __init__(self, run_dir: Path, enabled: bool, resumed_at: int | None = None) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        # The records logged at the step a resumed run continues from: the last one (a run
        # resumed at its end, killed before its summary, takes its final metrics from it),
        # and whether the kNN monitor due there was measured (a stop skips it)
        self.resumed_records: list[dict[str, Any]] = []
        if enabled and resumed_at is not None and self.path.exists():
            self.resumed_records = _drop_after(self.path, resumed_at)
        # (its metrics line: the kNN monitor's, logged after it at that step, holds no loss)
        self.resumed_record = next((r for r in reversed(self.resumed_records) if "loss" in r),
                                   self.resumed_records[-1] if self.resumed_records else {})
        try:
            self.file = open(self.path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115
        except OSError as exc:  # (a read-only folder or file): one line, as a failed write
            raise SimCLRError(f"could not write {self.path}: {exc.strerror or exc}") from None
        self.tb = None
        self.failed = False  # a write met an error (its SimCLRError says so)
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a broken env must not kill runs
                return
            purge = None if resumed_at is None else resumed_at + 1  # the same, for TB
            # Quiet first: the writer's thread writes the first event as it starts, and a
            # folder it cannot write in (read-only tb/) printed that thread's traceback.
            _quiet_event_writer_threads()
            try:
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
            except OSError as exc:  # (the thread's error, re-raised here: a bytes path)
                self.file.close()  # type: ignore[union-attr]  # (enabled: open)
                raise SimCLRError(f"could not write {run_dir / 'tb'}: "
                                  f"{exc.strerror or exc}") from None

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (and its numbers as TensorBoard scalars). A full disk is a
        SimCLRError naming the file (the run then ends in one line, on record)."""
        if not self.enabled:
            return
        where = self.path
        try:
            self.file.write(finite_json(record) + "\n")  # type: ignore[union-attr]  # (enabled: open; a NaN loss as null)
            self.file.flush()  # type: ignore[union-attr]
            if self.tb is not None:
                where = Path(self.tb.log_dir)
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "step":
                        self.tb.add_scalar(key, value, record["step"])
        except OSError as exc:  # (TensorBoard's writer thread's error surfaces here)
            self.failed = True
            raise SimCLRError(f"could not write {where}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close both; what cannot be written any more (a full disk) is a warning: close
        runs as the run ends, also when it ends on an error already being reported (a
        write that failed: then nothing more is said)."""
        for name, handle in (("metrics.jsonl", self.file), ("tb", self.tb)):
            try:
                if handle is not None:
                    handle.close()
            except OSError as exc:
                if not self.failed:
                    log.warning("could not finish writing %s: %s", name, exc.strerror or exc)


def _quiet_event_writer_threads() -> None:
    """TensorBoard writes events in a thread that, on a full disk, prints its traceback
    as it dies and hands the error to the next call of the writer: where
    :meth:`MetricsLog.write` turns it into one line. Its traceback is left unprinted."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "simclr_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, OSError)
                and type(args.thread).__module__.startswith("tensorboard")):
            previous(args)

    hook.simclr_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _drop_after(path: Path, step: int) -> list[dict[str, Any]]:
    """Rewrite the JSON-lines ``path`` without the step records past ``step`` (a
    session's start line and unreadable lines are kept as they are), nor an unreadable
    last line cut short by a kill (no newline: the next record would join it).
    Returns the step records of ``step`` itself, in order. A file that cannot be read
    or rewritten (a full disk, a quota) is a SimCLRError naming it, left as it was."""
    kept, at_step = [], []
    try:  # (bytes that are no UTF-8, a damaged line's, are kept as they are, as unreadable lines)
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise SimCLRError(f"cannot read {path}: {exc.strerror or exc}") from None
    for line in text.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # (RecursionError: `[[[[...` nested deep)
            record = None
            if not line.endswith("\n"):
                continue
        is_step = isinstance(record, dict) and "event" not in record and \
            isinstance(record.get("step"), int)
        if not (is_step and record["step"] > step):
            kept.append(line if line.endswith("\n") else line + "\n")
        if is_step and record["step"] == step:
            at_step.append(record)
    written(path, lambda tmp: tmp.write_text("".join(kept), encoding="utf-8",
                                             errors="surrogateescape"))
    return at_step


@dataclass
class RunDir:
    """Where a run writes, and the checkpoint it continues from (None: a new run)."""

    path: Path
    checkpoint: Path | None = None
    saved: dict[str, Any] | None = None  # the checkpoint's content
    mark: RunMark | None = None  # the run as it stood when the checkpoint was read


# What a pretraining writes beside its checkpoints.
RUN_LOGS = ("metrics.jsonl", "tb", "summary.json", "config.yaml")


def record_divergence(run_dir: Path, exc: DivergedError, session: int) -> None:
    """A diverged training's outcome in ``run_dir``'s summary.json (its one-line reason,
    the step, which session): what :func:`simclr.resume_target.run_state`, sweeps and
    `simclr info` read, so that the same command run again does not continue into the
    blow-up."""
    write_json(run_dir / "summary.json", {"status": "diverged", "reason": user_message(exc),
                                          "steps": exc.step, "session": session})


def reused_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary of a run that needs no more training, as a session that trains
    nothing returns it (a resumed finished run, a sweep's cell reused): without the
    signal that stopped its last session at its last step. That stop was then; a caller
    reading it would stop again for nothing."""
    return {**summary, "signal": None}


def check_run_dir(cfg: Config, resume: bool) -> RunDir:
    """Check the run directory without creating anything: a command that fails on its
    inputs must leave no empty run folder behind (:func:`make_run_dir` comes later)."""
    run_dir = Path(cfg.out).expanduser()
    if resume:
        found, path, ckpt = resume_checkpoint(run_dir)
        holder = folder_holder(found)
        if holder:  # now, not after the data are opened and "resuming ..." is said
            raise in_use(found, holder)
        check_run_length(ckpt["config"], cfg, found)
        return RunDir(found, path, ckpt, ckpt.pop(RESUME_MARK))
    check_out_folder(run_dir)  # found now, not after decoding
    check_outside_data(cfg, run_dir)
    holder = folder_holder(run_dir)
    if holder:  # said first: --resume would be refused as well while it runs
        raise in_use(run_dir, holder)
    if (run_dir / "sweep.json").is_file():  # its cells' results would read as this run's
        raise SimCLRError(f"{run_dir} is a sweep's folder (sweep.json); choose another --out")
    if checkpoint_files(run_dir / CHECKPOINTS):  # readable or not, never written over
        raise already_holds_run(run_dir, str(run_dir), "pretrain")
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
    run's, and the folder would no longer list as the runs it holds. Nor one inside a
    run (:func:`check_not_inside_run`)."""
    check_not_inside_run(run_dir)
    runs = runs_in(run_dir)
    if runs:
        raise SimCLRError(f"{run_dir} holds other runs ({runs}); give this run a folder of "
                          f"its own (--out {run_dir / 'NAME'})")


def check_not_inside_run(run_dir: Path) -> None:
    """Refuse a new run's folder inside another run's (``--out RUN/checkpoints``,
    ``RUN/tb``): ``RUN/checkpoints/checkpoints`` is what ``--resume RUN/checkpoints`` and
    ``--checkpoint RUN/checkpoints`` take for RUN's own, and `simclr info` reads RUN's
    sub-folders as its evaluations. A run is a folder holding config.yaml and
    checkpoints/ (as a sweep's --out is refused inside one); a sweep's folder, which
    holds runs, is none."""
    run = run_above(run_dir)
    if run is not None:
        raise SimCLRError(f"--out {run_dir} lies inside the run {run}: its checkpoints would "
                          f"be taken for that run's (--resume, --checkpoint "
                          f"{run / CHECKPOINTS}); give this run a folder of its own")


def run_above(folder: str | Path) -> Path | None:
    """The nearest run above ``folder``: a folder holding config.yaml and a checkpoints/
    with simclr's checkpoint files (last.pt, ckpt-<step>.pt) or simclr's logs (a run
    killed before its first checkpoint): a project's own config.yaml and checkpoints/
    are no run; None where there is none (or a folder above it cannot be read)."""
    def is_run(p: Path) -> bool:
        return (p / "config.yaml").is_file() and (p / CHECKPOINTS).is_dir() and (
            (p / CHECKPOINTS / LAST).is_file() or bool(periodic_checkpoints(p / CHECKPOINTS))
            or _logs_of_a_run(p))  # (a run killed before its first checkpoint)

    try:
        return next((p for p in Path(folder).expanduser().resolve().parents if is_run(p)),
                    None)
    except (OSError, SimCLRError):  # (periodic_checkpoints: a folder it cannot list)
        return None


def _logs_of_a_run(run_dir: Path) -> bool:
    """Whether the logs in ``run_dir`` are a simclr pretraining's (one killed before its
    first checkpoint: :func:`make_run_dir` sets them aside)."""
    if _empty_log(run_dir) and not any((run_dir / name).exists()
                                       for name in ("summary.json", "config.yaml")):
        return True  # stopped after opening its log (and tb/), before config.yaml
    try:
        with open(run_dir / "metrics.jsonl", encoding="utf-8") as f:
            return json.loads(f.readline()).get("event") == "start"
    except (OSError, ValueError, AttributeError, RecursionError):  # (`[[[[...` nested deep)
        pass
    try:  # killed between writing its config and its first log line
        return "\nprovenance:" in (run_dir / "config.yaml").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False


def drop_unstarted(run_dir: Path) -> None:
    """What a new run's session wrote before its config.yaml (an empty metrics.jsonl,
    tb/ and its first event) removed, when it stops there (a Ctrl-C as it starts, an
    error before its first line): nothing of a run is in them, and the folder it made is
    then removed as empty (:func:`simclr.results.remove_empty_created`), not left to
    pass for a run that nothing continues. A failure on record (summary.json) stays."""
    if (not dist.is_main() or not _empty_log(run_dir)
            or any((run_dir / name).exists() for name in ("config.yaml", "summary.json"))):
        return
    with contextlib.suppress(OSError):
        (run_dir / "metrics.jsonl").unlink()
        shutil.rmtree(run_dir / "tb")


def _empty_log(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an empty metrics.jsonl: a run stopped (Ctrl-C, a sweep's
    SIGTERM) in the moment between opening its log and writing its config and first line
    leaves nothing else, and nothing in it to keep."""
    try:
        return (run_dir / "metrics.jsonl").stat().st_size == 0
    except OSError:
        return False


def check_outside_data(cfg: Config, run_dir: Path) -> None:
    """Refuse a run directory, or a cache folder, inside a folder the run reads: its
    checkpoints and logs, or cache files, would become classes (or images) of that data
    set. On the resolved settings: a config file's folders too, not the flags' alone."""
    check_not_inside(run_dir, {"--data": cfg.data.path, "--knn-train": cfg.knn_train,
                               "--knn-test": cfg.knn_test}, "run")
    check_config_caches(cfg)


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


def make_run_dir(run_dir: Path, resume: bool, mark: RunMark | None = None) -> Any:
    """Create the run directory and hold it (rank 0: files.lock_folder) for as long as
    the returned handle stays open. A new run is checked again once held: another run
    may have started into the same folder since :func:`check_run_dir`; a resumed one
    too, against its ``mark`` (:func:`simclr.resume_target.check_not_continued`):
    another ``--resume`` may have continued it since."""
    try:  # (the levels it creates recorded: a run stopped before it writes anything, a
        make_folder(run_dir / CHECKPOINTS)  # Ctrl-C as it starts, leaves no empty folder)
    except OSError as exc:
        raise SimCLRError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    if not dist.is_main():
        return None
    held = lock_folder(run_dir)
    if mark is not None:
        try:
            check_not_continued(run_dir, mark, "pretrain")
        except SimCLRError:
            if held is not None:
                held.close()
            raise
    if not resume and checkpoint_files(run_dir / CHECKPOINTS):
        if held is not None:
            held.close()
        raise SimCLRError(f"{run_dir} already holds a run, written by another simclr process "
                          "since this one started; choose another --out")
    if not resume:
        # A run killed before its first checkpoint leaves logs that nothing can continue:
        # kept aside, so the new run's log starts at its own step 0, alone.
        try:
            if _empty_log(run_dir):  # (nothing to keep)
                (run_dir / "metrics.jsonl").unlink()
            kept = set_aside(run_dir, RUN_LOGS)
        except OSError as exc:
            if held is not None:
                held.close()
            raise SimCLRError(f"cannot set aside the earlier logs in {run_dir}: "
                              f"{exc.strerror}") from None
        if kept:  # (rank 0 alone gets here: the others returned above)
            print(f"{run_dir} held the logs of a run without a checkpoint; they are kept "
                  f"as {kept}", flush=True)
    elif held is not None:  # the folder is ours: a write cut by a kill is debris, once
        # untouched a minute (files.STALE_AFTER_S): a process in another container or on
        # another host, whose pid is no process here, may be writing a younger one still
        # (the next save of the same name, a checkpoint's any save, collects the rest).
        for folder in (run_dir, run_dir / CHECKPOINTS):
            remove_stale_temporaries(folder, "*.tmp-*")
    return held
