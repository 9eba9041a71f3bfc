"""Which checkpoint a ``--resume`` continues from, and why none can be.

``--resume`` names a run folder, its ``checkpoints`` folder or a checkpoint file in it:
:func:`resume_checkpoint` finds the checkpoint the run continues from (its latest that
loads), or says in one line why there is none (nothing saved yet, truncated files,
another kind of run's, a loose file outside a run). :func:`run_state` says where a run
stands by what its sessions wrote (finished, diverged, unfinished); from it
:func:`unfinished_step` tells the same command run again that it continues the run in
its folder, and :func:`already_holds_run` why a new run is refused there and what
continues the one found. :class:`RunMark` is the run as a ``--resume`` read it, which
:func:`check_not_continued` compares once the folder is held.

What a checkpoint holds and how a run's state is restored from it is
:mod:`simclr.resume`; the run folder and the checks of a new run's ``--out``,
:mod:`simclr.rundir`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from simclr.errors import SimCLRError, with_article
from simclr.files import folder_holder, read_json
from simclr.launch import path_word, shell_join, typed_in

log = logging.getLogger(__name__)


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


# The runs that continue with --resume: the kind their checkpoints carry, the command.
RESUMABLE = {"pretrain": "simclr pretrain", "supervised": "simclr supervised"}
RUN_NAMES = {"pretrain": "pretraining", "supervised": "supervised"}  # as messages say them


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
            raise SimCLRError(f"--resume {target}: "
                              f"{_loose_file(target, load_checkpoint(given), kind)}")
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
    if found == "supervised" and (run_dir / SUPERVISED_RESULT).exists():
        return (f"{run_dir} is a finished supervised run ({run_dir / SUPERVISED_RESULT}); "
                f"its model is {run_dir / CHECKPOINTS / LAST}")
    if found in RESUMABLE:
        return (f"{run_dir} is a {RUN_NAMES[found]} run (its checkpoint {path.name}); continue "
                f"it with `{RESUMABLE[found]} --resume {path_word(run_dir)}`")
    kind = str(found) if found else "unknown kind of"
    return (f"{run_dir} is not a {RUN_NAMES[wanted]} run (its checkpoint {path.name} is "
            f"{with_article(kind)} checkpoint); only pretraining and supervised runs can be "
            "resumed")


def _loose_file(target: str | os.PathLike, ckpt: dict[str, Any], wanted: str) -> str:
    """Why the checkpoint file ``target`` (content ``ckpt``), outside a run's checkpoints
    folder, continues no run: its folder is no run (its config and logs are not there),
    so the file is named, not that folder ('. is a supervised run ...; continue it with
    `simclr supervised --resume .`' failed too). Where the run that saved it (its
    config's ``out``) still holds checkpoints, the command that continues it is given."""
    found = ckpt.get("kind")
    what = with_article(f"{RUN_NAMES.get(found, found)} checkpoint") if found else \
        "a checkpoint of unknown kind"
    run = _saving_run(ckpt) if found in RESUMABLE else None
    if found == wanted:
        then = (f"its run is {run}: `{RESUMABLE[found]} --resume {path_word(run)}`" if run
                else "pass the directory of the run it was saved in")
    elif found in RESUMABLE:
        then = (f"it is no {RUN_NAMES[wanted]} run's either (`{RESUMABLE[found]} --resume "
                + (f"{path_word(run)}` continues its run)" if run else
                   "` takes the directory of the run it was saved in)"))
    else:
        then = "only pretraining and supervised runs can be resumed"
    return (f"{target} is {what} outside a run folder (not in a run's {CHECKPOINTS} "
            f"folder), so it holds no run to continue; {then}")


def _saving_run(ckpt: dict[str, Any]) -> Path | None:
    """The run folder that saved checkpoint ``ckpt``, where it still holds that run
    unfinished: its config's ``out`` (absolute, as saved since paths were made absolute),
    whose latest checkpoint has ``ckpt``'s kind and run id (another run made at that
    path since, or the run moved away: None), and which --resume would continue (a
    finished run: None). Else None, and the advice stays general."""
    config = ckpt.get("config")
    out = config.get("out") if isinstance(config, dict) else None
    if not isinstance(out, str) or not os.path.isabs(out) or not ckpt.get("run_id"):
        return None
    run = Path(out)
    try:
        latest = latest_checkpoint(run / CHECKPOINTS)
        there = load_checkpoint(latest, mmap=True) if latest is not None else {}
    except (OSError, SimCLRError):  # (unreadable there: the advice stays general)
        return None
    same = there.get("kind") == ckpt.get("kind") and there.get("run_id") == ckpt["run_id"]
    unfinished = same and run_state(run, str(ckpt.get("kind")),
                                    there.get("step")) == "unfinished"
    return run if unfinished else None


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
    if (run_dir / "sweep.json").is_file():  # (sweep.SUMMARY_FILES: written as it starts)
        return (f"{run_dir} is a sweep, not a run: rerun the `simclr sweep` command that "
                f"made it to continue its cells, or --resume one cell's folder "
                f"({path_word(run_dir / 'CELL')})")
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
