"""The run folder: where a pretraining writes, and the checks that keep it that run's.

A run folder holds ``checkpoints/`` and the logs beside them (:data:`RUN_LOGS`). Before
anything is read, :func:`check_run_dir` says whether ``--out`` is free for a new run (not
a live run's, another run's, a sweep's, another command's, nor inside the data or
another run) or names the checkpoint a ``--resume`` continues (:func:`resume_checkpoint`, which says
why when there is none), whose length must not change;
:func:`make_run_dir` then creates and holds it once every input is checked.
:class:`MetricsLog` is its JSON-lines metrics log (and TensorBoard events).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simclr import distributed as dist
from simclr.checkpoint import (
    CHECKPOINTS,
    LAST,
    RESUME_ENTRIES,
    checkpoint_files,
    is_complete,
    latest_checkpoint,
    periodic_checkpoints,
    stored_step,
)
from simclr.checkpoint_read import load_checkpoint, require_entries
from simclr.config import Config
from simclr.errors import DivergedError, SimCLRError, user_message, with_article
from simclr.files import (
    finite_json,
    folder_holder,
    in_use,
    lock_folder,
    read_json,
    remove_stale_temporaries,
    set_aside,
    write_json,
    written,
)
from simclr.launch import path_word, shell_join, typed_in
from simclr.results import (
    check_config_caches,
    check_not_inside,
    check_out_folder,
    make_folder,
    runs_in,
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


@dataclass(frozen=True)
class RunMark:
    """A run as a ``--resume`` found it: its latest checkpoint as that very file (name,
    inode, size, modification time: every save renames a new file over its target) and
    how the run stood (:func:`run_state`). Another process that continued the run since
    changes it (:func:`check_not_continued`)."""

    latest: tuple[str, int, int, int] | None
    state: str

    @classmethod
    def of(cls, folder: Path, latest: Path | None, kind: str) -> RunMark:
        """The mark of the run whose ``checkpoints`` ``folder`` is, ``latest`` picked there."""
        try:
            found = None if latest is None else latest.stat()
        except OSError:  # pruned meanwhile: said as a change once the folder is held
            found = None
        file = None if found is None else (latest.name, found.st_ino, found.st_size,  # type: ignore[union-attr]  # (found: latest's)
                                           found.st_mtime_ns)
        return cls(file, run_state(folder.parent, kind))


# The entry resume_checkpoint adds to the content it returns (as load_checkpoint's "file").
RESUME_MARK = "resume_mark"


def check_not_continued(run_dir: Path, mark: RunMark, kind: str) -> None:
    """Refuse a ``--resume`` of ``run_dir``, now held, that another process continued
    (or finished) since this one read its checkpoint (``mark``): trained on from there,
    it would write an earlier state over that process's work."""
    folder = run_dir / CHECKPOINTS
    if RunMark.of(folder, latest_checkpoint(folder), kind) != mark:
        raise SimCLRError(f"--resume {run_dir}: another simclr process continued the run "
                          "meanwhile (its latest checkpoint changed since this one read it); "
                          f"nothing was written: see where it stands with `simclr info "
                          f"{path_word(run_dir)}`, or resume it again")


# What a pretraining writes beside its checkpoints.
RUN_LOGS = ("metrics.jsonl", "tb", "summary.json", "config.yaml")


# The runs that continue with --resume: the kind their checkpoints carry, the command.
RESUMABLE = {"pretrain": "simclr pretrain", "supervised": "simclr supervised"}
# The file a supervised run writes at its end: no --resume continues it then.
SUPERVISED_RESULT = "supervised.json"


def run_state(run_dir: Path, kind: str, step: int | None = None) -> str:
    """How the run of ``kind`` in ``run_dir`` stands by what its sessions wrote at their
    end: 'finished' (a supervised run's results are there; a pretraining's summary.json
    says so), 'diverged' (its summary.json says so: continued, it trains into the same
    blow-up), else 'unfinished' (--resume continues it). ``step``: its latest
    checkpoint's, where known; a divergence at or before it is one a later session
    trained past (a --resume of other settings), not where the run stands."""
    if kind == "supervised" and (run_dir / SUPERVISED_RESULT).exists():
        return "finished"
    summary = read_json(run_dir / "summary.json") or {}
    if summary.get("status") == "finished" and kind != "supervised":
        return "finished"
    at = summary.get("steps")
    passed = isinstance(step, int) and isinstance(at, int) and at <= step
    return "diverged" if summary.get("status") == "diverged" and not passed else "unfinished"


def record_divergence(run_dir: Path, exc: DivergedError, session: int) -> None:
    """A diverged training's outcome in ``run_dir``'s summary.json (its one-line reason,
    the step, which session): what :func:`run_state`, sweeps and `simclr info` read, so
    that the same command run again does not continue into the blow-up."""
    write_json(run_dir / "summary.json", {"status": "diverged", "reason": user_message(exc),
                                          "steps": exc.step, "session": session})


def diverged_at(run_dir: Path) -> str:
    """' at step N' of the divergence ``run_dir``'s summary.json records ('' if none)."""
    at = (read_json(run_dir / "summary.json") or {}).get("steps")
    return f" at step {at}" if isinstance(at, int) and not isinstance(at, bool) else ""


def already_holds_run(folder: Path, shown: str, kind: str) -> SimCLRError:
    """A new run of ``kind`` refused over ``folder``'s run checkpoints (``shown``: the
    folder as given), naming the command that continues the run found there (its own
    kind's: a supervised run's folder given to pretrain, or the reverse) where one can:
    not a finished run (said so, with where its results are), nor one whose checkpoints
    cannot be read, nor one that diverged (said instead, with the way on: its command or
    --resume diverges again)."""
    latest, found, step = _latest_run_checkpoint(folder)
    name = (latest or checkpoint_files(folder / CHECKPOINTS)[0]).name
    named: dict[str | None, str] = {"pretrain": "a pretraining run",
                                    "supervised": "a supervised run"}
    if found == kind or latest is None:
        what = "a run"
    else:
        what = named.get(found) or f"{with_article(str(found or 'unknown kind of'))} checkpoint"
    state = run_state(folder, str(found), step) if found in RESUMABLE else None
    if state == "diverged":
        return SimCLRError(f"{shown} already holds {what} ({CHECKPOINTS}/{name}) that "
                           f"diverged{diverged_at(folder)}: continuing it diverges again; "
                           "start a new run with a lower --lr in another --out")
    if state == "finished":  # (its own command again: a rerun, a requeue after the end)
        return SimCLRError(f"{shown} already holds {what} ({CHECKPOINTS}/{name}) that "
                           f"finished{f' at step {step}' if isinstance(step, int) else ''}: "
                           f"its results are there (`simclr info {path_word(shown)}`); choose "
                           "another --out for a new run")
    again = f" or continue it with `{RESUMABLE[str(found)]} --resume {path_word(shown)}`" \
        if state == "unfinished" else ""
    return SimCLRError(f"{shown} already holds {what} ({CHECKPOINTS}/{name}); choose another "
                       f"--out{again}")


def unfinished_step(folder: Path, kind: str) -> int | None:
    """The step of the latest checkpoint of ``folder``'s run where it is an unfinished run
    of ``kind`` (the same command run again continues it: a requeued job, torchrun's
    ``--max-restarts``), else None: no checkpoint to read, another kind's, finished or
    diverged (:func:`already_holds_run` says which, as the refusal of a new run there:
    a diverged run continued by a retry loop would blow up again each time)."""
    _, found, step = _latest_run_checkpoint(folder)
    if found != kind or not isinstance(step, int) \
            or run_state(folder, kind, step) != "unfinished":
        return None
    return step


def _latest_run_checkpoint(folder: Path) -> tuple[Path | None, Any, Any]:
    """(the latest checkpoint of ``folder``'s run, its kind, its step); (None, None,
    None) where none can be read (said by --resume, which may go back to an earlier one)."""
    latest = latest_checkpoint(folder / CHECKPOINTS)
    if latest is not None:
        try:
            ckpt = load_checkpoint(latest, mmap=True)
        except SimCLRError:
            return None, None, None
        return latest, ckpt.get("kind"), ckpt.get("step")
    return None, None, None


def resume_checkpoint(
    target: str | os.PathLike, kind: str = "pretrain",
    entries: tuple[str, ...] = RESUME_ENTRIES, quiet: bool = False,
) -> tuple[Path, Path, dict[str, Any]]:
    """(run directory, checkpoint file, its content) to continue a run of ``kind`` from.
    Later checkpoints that cannot be read are said (unless ``quiet``: a caller that
    looks again later, which says it then).

    ``target`` (``--resume``) is the run directory, its ``checkpoints`` folder or a
    checkpoint file in that folder; the run continues from its
    :func:`latest_checkpoint`, which must hold ``entries``. Every failure is one line
    naming what was found: nothing, a corrupt file, or the checkpoint of another kind
    of run (naming the command that continues it, if one does). The content gets
    :data:`RESUME_MARK`, the run as it stood (:class:`RunMark`), which
    :func:`check_not_continued` compares once the run's folder is held.
    """
    given = Path(target).expanduser()
    if given.is_file():
        folder = given.parent
        if folder.name != CHECKPOINTS:  # (its folder is no run: named as the file)
            found = load_checkpoint(given).get("kind")
            raise SimCLRError(f"--resume {target}: {_loose_file(target, found, kind)}")
    elif given.name == CHECKPOINTS and not (given / CHECKPOINTS).is_dir():
        folder = given
    else:
        folder = given / CHECKPOINTS
    path = latest_checkpoint(folder)
    if path is None:
        raise SimCLRError(f"--resume {target}: {_why_no_checkpoint(folder, kind)}")
    mark = RunMark.of(folder, path, kind)  # before it is read: a save after it is a change
    if given.is_file() and not given.samefile(path):
        raise SimCLRError(f"--resume {target}: a run continues from its latest checkpoint "
                          f"({path.name}); pass the run directory {folder.parent}")
    path, ckpt, damaged = _first_loadable(folder, path, given.is_file())
    skipped = _later_unreadable(folder, ckpt.get("step")) + damaged
    if skipped and not quiet:  # the run goes back further than asked
        log.warning("%s: %s truncated or corrupt; resuming from %s (step %s)", folder,
                    " and ".join(skipped), path.name, ckpt.get("step"))
    if ckpt.get("kind") != kind:
        raise SimCLRError(f"--resume {target}: "
                          f"{_other_kind(folder.parent, path, ckpt.get('kind'), kind)}")
    require_entries(ckpt, path, entries, f"--resume {target}: ")
    ckpt[RESUME_MARK] = mark
    return folder.parent, path, ckpt


def _first_loadable(folder: Path, path: Path, named: bool) -> tuple[Path, dict[str, Any],
                                                                     list[str]]:
    """(checkpoint, content, names of the later ones that failed to load): ``path``, or
    when its content is damaged though its archive is whole (a pickle overwritten in
    place), the newest other checkpoint of the folder that loads, as for a truncated one.
    A checkpoint ``named`` by the user is read or refused, never replaced."""
    try:
        return path, load_checkpoint(path), []
    except SimCLRError:
        others = [p for p in checkpoint_files(folder) if p != path and is_complete(p)]
        if named or not others:
            raise
    for candidate in sorted(others, key=stored_step, reverse=True):  # the newest first
        try:
            return candidate, load_checkpoint(candidate), [path.name]
        except SimCLRError:
            continue
    return path, load_checkpoint(path), []  # (none loads: the newest one's error)


def _later_unreadable(folder: Path, step: Any) -> list[str]:
    """The checkpoints in ``folder`` that cannot be read and may be of a step after
    ``step`` (the one resumed from): ``last.pt`` (its step is inside it) and periodic
    ones of later steps, by their names, not their modification times (a folder copied
    without them resumed from an earlier step without a word)."""
    later = {p for s, p in periodic_checkpoints(folder) if not isinstance(step, int) or s > step}
    return [p.name for p in checkpoint_files(folder)
            if (p.name == LAST or p in later) and not is_complete(p)]


def _other_kind(run_dir: Path, path: Path, found: Any, wanted: str) -> str:
    """Why the run in ``run_dir`` is not one ``wanted``'s command continues."""
    names = {"pretrain": "pretraining", "supervised": "supervised"}
    if found == "supervised" and (run_dir / SUPERVISED_RESULT).exists():
        return (f"{run_dir} is a finished supervised run ({run_dir / SUPERVISED_RESULT}); "
                f"its model is {run_dir / CHECKPOINTS / LAST}")
    if found in RESUMABLE:
        return (f"{run_dir} is a {names[found]} run (its checkpoint {path.name}); continue "
                f"it with `{RESUMABLE[found]} --resume {path_word(run_dir)}`")
    kind = str(found) if found else "unknown kind of"
    return (f"{run_dir} is not a {names[wanted]} run (its checkpoint {path.name} is "
            f"{with_article(kind)} checkpoint); only pretraining and supervised runs can be "
            "resumed")


def _loose_file(target: str | os.PathLike, found: Any, wanted: str) -> str:
    """Why the checkpoint file ``target``, of kind ``found``, outside a run's checkpoints
    folder, continues no run: its folder is no run (its config and logs are not there),
    so the file is named, not that folder ('. is a supervised run ...; continue it with
    `simclr supervised --resume .`' failed too)."""
    names = {"pretrain": "pretraining", "supervised": "supervised"}
    what = with_article(f"{names.get(found, found)} checkpoint") if found else \
        "a checkpoint of unknown kind"
    if found == wanted:
        then = "pass the directory of the run it was saved in"
    elif found in RESUMABLE:
        then = (f"it is no {names[wanted]} run's either (`{RESUMABLE[found]} --resume` "
                "takes the directory of the run it was saved in)")
    else:
        then = "only pretraining and supervised runs can be resumed"
    return (f"{target} is {what} outside a run folder (not in a run's {CHECKPOINTS} "
            f"folder), so it holds no run to continue; {then}")


def _why_no_checkpoint(folder: Path, kind: str) -> str:
    """Why ``folder`` offers nothing to resume, for the one-line error."""
    broken = checkpoint_files(folder)
    if broken:  # latest_checkpoint skips incomplete files: all of these are
        names = ", ".join(p.name for p in broken)
        return (f"{names} in {folder} {'is' if len(broken) == 1 else 'are'} truncated or "
                "corrupt; no complete checkpoint to resume from")
    for other in sorted(folder.glob("*.pt")):  # e.g. linear-eval's linear.pt
        try:
            found = load_checkpoint(other).get("kind")
        except SimCLRError:
            continue
        return _other_kind(folder.parent, other, found, kind)
    run_dir = folder.parent
    if not run_dir.exists():
        return f"no checkpoint found: {run_dir} does not exist"
    holder = folder_holder(run_dir)
    if holder:
        return (f"the run in {run_dir} is still running ({holder}) and has saved no "
                "checkpoint yet")
    if (run_dir / "config.yaml").is_file():  # written at the start, before any step
        argv, cwd = _started_by(run_dir)
        # from where it was typed: its paths may be relative
        where = typed_in(cwd)
        again = f": `{where}{shell_join(['simclr', *argv[1:]])}`" if argv else ""
        return (f"the run in {run_dir} stopped before its first checkpoint, so there is "
                f"nothing to continue; start it again with the command that started it{again}")
    return f"no checkpoint found in {folder}"


def _started_by(run_dir: Path) -> tuple[list[str] | None, str | None]:
    """The command line a run's config.yaml records (its first start's), if any, and the
    folder it was typed in, where recorded: read as a received folder's may be
    (:func:`~simclr.config_file.parse_yaml`, its depth bounded;
    :func:`~simclr.resume.recorded_argv`, a YAML alias bomb refused)."""
    import yaml

    from simclr.config_file import parse_yaml
    from simclr.resume import recorded_argv

    try:
        config = (run_dir / "config.yaml").read_text(encoding="utf-8")
        provenance = parse_yaml(config)["provenance"]
        earlier = provenance.get("earlier") or []
        first = earlier[0] if earlier else provenance
        argv = recorded_argv(first["argv"])
        cwd = first.get("cwd") if isinstance(first.get("cwd"), str) else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError, LookupError, TypeError,
            AttributeError, RecursionError):
        return None, None
    return (argv, cwd) if argv is not None and len(argv) > 1 else (None, None)


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
    too, against its ``mark`` (:func:`check_not_continued`): another ``--resume`` may
    have continued it since."""
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
