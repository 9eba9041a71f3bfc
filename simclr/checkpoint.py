"""Crash-safe checkpoints: writing them, and a run's checkpoint files.

Pretraining runs for hours (Chen et al. 2020, Sec. 5.2: 100-1000 epochs), so a run must
survive being killed at any instant: every checkpoint is written to a temporary file
in the run folder, flushed, fsynced and renamed into place (``os.replace`` is atomic),
so ``last.pt`` / ``ckpt-<step>.pt`` are always either the old or the new complete file.
This module holds the format's constants, the files' names, :func:`save_checkpoint`,
the periodic checkpoints and their pruning, and which file a run resumes from
(:func:`latest_checkpoint`); reading and checking a checkpoint is
:mod:`simclr.checkpoint_read`'s.

A pretraining checkpoint's content (built by :func:`simclr.resume.checkpoint_state`):
{"format": "simclr-checkpoint", "version": 1, "kind": "pretrain", "config", "model",
"optimizer", "scaler", "step", "epoch", "step_in_epoch", "total_steps", "warmup_steps",
"elapsed", "compile_s", "bad_steps", "rng", "run_id", "num_images", ...}: tensors and
plain Python values only. Other kinds (:data:`KINDS`: classifiers, encoders) hold their
own entries beside "format", "version", "kind", "config" and "model".
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from simclr.errors import SimCLRError
from simclr.files import (
    AlreadyWritten,
    discard,
    fsync_dir,
    interruption_within,
    remove_stale_temporaries,
    taken,
    temporary_name,
    torch_save,
    write_atomically,
)

log = logging.getLogger(__name__)

FORMAT = "simclr-checkpoint"
VERSION = 1
LAST = "last.pt"
CHECKPOINTS = "checkpoints"  # a pretraining run directory's checkpoint folder
_PERIODIC = re.compile(r"ckpt-(\d+)\.pt")
# What every checkpoint holds (the settings and the weights they describe), and what
# a pretraining run needs besides to continue (simclr.resume.restore reads them).
REQUIRED = ("config", "model")
RESUME_ENTRIES = ("optimizer", "scaler", "step", "elapsed", "total_steps", "warmup_steps",
                  "rng")
# The "kind" entries simclr writes: the runs, the evaluations' classifiers (an unfinished
# SGD linear evaluation's own), an exported encoder. A file without one is from an
# earlier simclr; one of another kind is not something any command knows how to read.
KINDS = ("pretrain", "supervised", "linear", "linear-partial", "finetune", "encoder")


def new_run_id() -> str:
    """A new run's identity (uuid4 hex): a pretraining, supervised or fine-tuning run
    stores it in every checkpoint it writes and keeps it when continued, and an
    evaluation's results record it with the checkpoint's path, which a moved or copied
    run folder no longer matches (``simclr info`` matches results to runs by it)."""
    return uuid.uuid4().hex


def periodic_name(step: int) -> str:
    """File name of the periodic checkpoint at ``step``: ``ckpt-<step>.pt``, the step
    zero-padded to 8 digits so that a listing sorts by step (any width is read)."""
    return f"ckpt-{int(step):08d}.pt"


def is_run_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a file ``--resume`` continues from: ``last.pt`` or
    ``ckpt-<step>.pt`` in a ``checkpoints`` folder."""
    path = Path(path)
    return path.parent.name == CHECKPOINTS and (
        path.name == LAST or _PERIODIC.fullmatch(path.name) is not None)


def run_dir_of(target: str | os.PathLike) -> Path:
    """The run folder ``--resume`` names: the folder, its checkpoints folder or a file there."""
    given = Path(target).expanduser()
    return (given.parent.parent if given.is_file() else
            given.parent if given.name == CHECKPOINTS else given)


def periodic_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the ``ckpt-<step>.pt`` files in ``run_dir``, by increasing step."""
    folder = Path(run_dir)
    if not folder.is_dir():
        return []
    try:
        entries = list(folder.iterdir())
    except OSError as exc:  # e.g. a folder without read permission
        raise SimCLRError(f"cannot list {folder} ({exc.strerror})") from None
    found = []
    for entry in entries:
        match = _PERIODIC.fullmatch(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_checkpoint(
    state: Mapping[str, Any], run_dir: str | os.PathLike, name: str = LAST,
    keep_last: int | None = None, replace: bool = True,
) -> Path:
    """Write ``state`` atomically to ``run_dir/name``; returns the path.

    See :func:`simclr.files.write_atomically`. On any OSError (disk full, quota, permissions) the
    previous file is left untouched and a :class:`SimCLRError` says so. ``keep_last``:
    after writing a periodic ``ckpt-<step>.pt``, delete all but the newest ``keep_last``
    of them up to its step (:func:`prune_checkpoints`). A ``last.pt`` whose bytes the
    periodic checkpoint of its step already holds (a run's final step) is a hard link
    to it, not a second copy (:func:`link_same_periodic`). ``replace`` False (a
    command's result without ``--overwrite``: a classifier, an exported encoder): a file
    another process wrote there meanwhile is kept, and refused in one line
    (:func:`simclr.files.taken`).
    """
    folder = Path(run_dir)
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"checkpoint name must be a plain file name, got {name!r}")
    target = folder / name
    payload = on_cpu({"format": FORMAT, "version": VERSION,
                      **{k: v for k, v in state.items() if k != "file"}})  # (where it was read)

    made = not folder.exists()  # (by this write: removed again if it fails, left empty)
    try:
        if name != LAST or not replace or not link_same_periodic(payload, folder, target):
            write_atomically(target, lambda tmp: torch_save(payload, tmp), replace)
    except AlreadyWritten:
        raise taken(target) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        # A run's: the one its resume would take (a later ckpt-<step>.pt than an old
        # last.pt being replaced), not the file of this name.
        previous = latest_checkpoint(folder) if is_run_checkpoint(target) else None
        previous = previous or (target if target.is_file() else latest_checkpoint(folder))
        kept = (f"the previous checkpoint {previous} is intact" if previous is not None
                else "no earlier checkpoint exists" if folder.name == CHECKPOINTS
                else "nothing was written")  # (an export, not a run's checkpoints)
        if made:  # (an --out's own levels are its command's to remove: results.CREATED)
            with contextlib.suppress(OSError):
                folder.rmdir()  # (fails on a folder with anything in it: kept)
        raise SimCLRError(f"could not write checkpoint {target}: {reason}; {kept}") from None
    periodic = _PERIODIC.fullmatch(name)
    if keep_last is not None and periodic:
        prune_checkpoints(folder, keep_last, int(periodic.group(1)))
    # A periodic checkpoint's name is never written again: its killed saves' debris is
    # collected here, whatever their name.
    remove_stale_temporaries(folder, "*.pt.tmp-*")
    return target


def link_same_periodic(payload: Mapping[str, Any], folder: Path, target: Path) -> bool:
    """Make ``target`` (``last.pt``) a hard link to the periodic checkpoint of the same
    step when that file holds exactly the bytes ``payload`` would be written as: a run
    whose ``--checkpoint-every`` divides its length saves its final state twice, and a
    second copy would double the disk the run's end takes. Both names stay ordinary
    files: pruning or a later save replaces a name, never the shared content. False
    (nothing done) without such a file, when it differs, or on a file system without
    hard links; the caller then writes ``target`` itself."""
    step = payload.get("step")
    same = [p for s, p in periodic_checkpoints(folder) if s == step] if isinstance(
        step, int) else []
    if not same or not holds_bytes_of(same[0], payload):
        return False
    if target.is_file() and target.samefile(same[0]):  # (a rename onto the same file
        return True  # would leave the temporary name behind)
    tmp = temporary_name(target)
    try:
        tmp.unlink(missing_ok=True)
        os.link(same[0], tmp)
        os.replace(tmp, target)  # atomic, as every checkpoint write
    except OSError:
        discard(tmp)
        return False
    fsync_dir(folder)
    return True


class _Differs(Exception):
    """Raised by :class:`_Comparison` at the first byte that differs."""


class _Comparison:
    """A write-only stream that compares what is written with an open file."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def write(self, data: bytes) -> int:
        if self.file.read(len(data)) != data:
            raise _Differs
        return len(data)

    def flush(self) -> None:
        """(torch.save flushes its stream)"""


def holds_bytes_of(path: Path, payload: Mapping[str, Any]) -> bool:
    """Whether the file ``path`` is byte for byte what :func:`torch_save` writes for
    ``payload`` (serialised into a comparison, never into memory or onto disk; it stops
    at the first difference). A Ctrl-C or SIGTERM meanwhile is raised, not taken for a
    difference (torch wraps it as it wraps _Differs)."""
    try:
        with open(path, "rb") as f:
            torch.save(payload, _Comparison(f))  # type: ignore[arg-type]  # (a writer, as torch takes)
            return f.read(1) == b""
    except Exception as exc:  # a difference (torch wraps _Differs), or an unreadable file
        interrupted = interruption_within(exc)
        if interrupted is not None:
            raise interrupted from None
        return False


def on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) on the CPU: a
    checkpoint of a GPU run then loads anywhere, also with a plain ``torch.load``."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int,
                      written: int | None = None) -> None:
    """Delete all but the ``keep_last`` highest-step ``ckpt-<step>.pt`` (never last.pt).

    ``written``: the step of the checkpoint just written, which is always kept; files
    of later steps are neither counted nor deleted: a resumed run's stale future (one
    the resume passed over, unreadable, as :func:`latest_checkpoint` does), rewritten
    when the run reaches its step. Counted, each new save was deleted as it was written,
    and a kill left nothing newer than the resumed checkpoint."""
    periodic = [(step, path) for step, path in periodic_checkpoints(run_dir)
                if written is None or step <= written]
    for _, path in periodic[: max(0, len(periodic) - max(keep_last, 1))]:
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not delete old checkpoint %s: %s", path, exc.strerror)


def is_complete(path: str | os.PathLike) -> bool:
    """Cheap structural check: a whole torch zip archive (its central directory sits at
    the end, so a truncated file fails) holding a pickle. Reads no tensor data.

    A file that cannot be read at all (permission denied, an I/O error) is a
    SimCLRError, not incomplete: taken for a corrupt one, a run resumed from an earlier
    checkpoint and its next save replaced the later one, intact though unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist())
    except (FileNotFoundError, IsADirectoryError):  # (pruned meanwhile; a folder named *.pt)
        return False
    except OSError as exc:
        raise SimCLRError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except (zipfile.BadZipFile, ValueError, NotImplementedError):  # (a damaged header's
        return False  # "zip file version 16.3", a compression method that is none)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from, or None.

    ``last.pt`` if it is complete, unless a complete periodic checkpoint is of a later
    step (a run killed outright after it; periodic saves leave ``last.pt`` as it was);
    otherwise the highest-step complete ``ckpt-<step>.pt``. Steps, not modification
    times, decide: a copied run folder (``cp -r``, a sync) keeps its answer. Temporary
    ``*.tmp-*`` files of interrupted saves are never candidates.
    """
    folder = Path(run_dir)
    # The newest complete one alone is read: an older one that cannot be read (its
    # permissions) stops nothing (is_complete raises on it).
    newest = next(((step, p) for step, p in reversed(periodic_checkpoints(folder))
                   if is_complete(p)), None)
    last = folder / LAST
    if last.is_file() and is_complete(last):
        if newest and newest[0] > _stored_step(last, newest[1]):
            return newest[1]
        return last
    return newest[1] if newest else None


def stored_step(path: Path) -> int:
    """The step ``path`` holds, read without its tensors (-1: unreadable)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # (any unreadable content: the loaders say what is wrong later)
        return -1


def _stored_step(last: Path, periodic: Path) -> int:
    """The step ``last`` holds (its tensors left on disk); if it cannot be read, its
    place by modification time against ``periodic``: older counts as no step."""
    step = stored_step(last)
    if step >= 0:
        return step
    newer = last.stat().st_mtime_ns >= periodic.stat().st_mtime_ns
    return sys.maxsize if newer else -1


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """``last.pt`` and the ``ckpt-<step>.pt`` files present in ``folder``, readable or not
    (a new run must not write over them, even over a corrupt one)."""
    last = Path(folder) / LAST
    return ([last] if last.is_file() else []) + [p for _, p in periodic_checkpoints(folder)]


def what_is_kept(last: Path | None) -> str:
    """The clause a run's fatal error ends with: which checkpoint survives it."""
    return f"the last checkpoint {last} is untouched" if last else "no checkpoint was written"


CLASSIFIER_FILES = ("linear.pt", "finetune.pt")  # what evaluations write into --out
PARTIAL_SUFFIX = "-partial.pt"  # an evaluation's unfinished training (simclr.partial)
SET_ASIDE = re.compile(r".+\.previous-\d+\.pt")  # kept by a rerun (files.set_aside)

