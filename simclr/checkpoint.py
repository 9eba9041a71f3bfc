"""Crash-safe, safely loadable checkpoints.

Pretraining runs for hours (Chen et al. 2020, Sec. 5.2: 100-1000 epochs), so a run must
survive being killed at any instant: every checkpoint is written to a temporary file
in the run folder, flushed, fsynced and renamed into place (``os.replace`` is atomic),
so ``last.pt`` / ``ckpt-<step>.pt`` are always either the old or the new complete file.
Loading uses ``torch.load(weights_only=True)``: a file carrying pickled Python objects
is refused and its payload never runs.

Content (written by ``simclr.train``): {"format": "simclr-checkpoint", "version": 1,
"config", "model", "optimizer", "scaler", "step", "epoch", "step_in_epoch", "rng",
"total_steps", "elapsed", "metrics", "run_id"}: tensors and plain Python values only.
:func:`load_checkpoint` refuses a file without its config and weights, or whose config
is invalid, and adds ``"file"`` (the path it read; never saved) for later messages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import sys
import uuid
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.distributed import launched_rank
from simclr.errors import SimCLRError, unreadable_path, with_article
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
from simclr.launch import shell_quote
from simclr.safetensors_file import SUFFIX as SAFETENSORS
from simclr.safetensors_file import is_safetensors, read_safetensors
from simclr.settings import SettingError, config_from_dict
from simclr.validate import validate

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
# What a file of these suffixes is, when it is no checkpoint (`simclr info config.yaml`).
OTHER_FILES = {".yaml": "a YAML file", ".yml": "a YAML file", ".json": "a JSON file",
               ".jsonl": "a JSON-lines file", ".csv": "a CSV file", ".txt": "a text file",
               ".md": "a Markdown file", ".npz": "a NumPy archive", ".npy": "a NumPy array",
               ".png": "an image", ".jpg": "an image", ".jpeg": "an image"}


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


@contextmanager
def readable_state(ckpt: Mapping[str, Any], what: str) -> Iterator[None]:
    """Loading a checkpoint's ``what`` (optimizer, RNG, step counts) into a run: an entry
    of the wrong shape or type (a damaged or hand-edited file) is one line naming the
    file, never a traceback from deep inside torch."""
    try:
        yield
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')}: its {what} does not fit this "
                          f"run (damaged or edited? {first})") from None


def load_scaler(scaler: torch.amp.GradScaler, saved: dict[str, Any]) -> None:
    """A GradScaler's saved state. A run saved with the scaler off (bf16 or fp32) saved
    ``{}``, which an enabled scaler refuses: resumed where it now trains in fp16 (auto
    precision on a GPU without bf16), its scaler starts at its defaults."""
    if saved:
        scaler.load_state_dict(saved)


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


def _unsafe_global(message: str) -> str | None:
    """The Python object a weights-only unpickler refused, if that was the failure."""
    # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose ..."
    match = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", message)
    if match:
        return match.group(1)
    if re.search(r"Unsupported (global|class)|GLOBAL|REDUCE|BUILD", message):
        return "unknown"
    return None


def what_is_kept(last: Path | None) -> str:
    """The clause a run's fatal error ends with: which checkpoint survives it."""
    return f"the last checkpoint {last} is untouched" if last else "no checkpoint was written"


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The file a ``--checkpoint`` argument names: the file itself, or for a run folder
    (``--out`` of a command) or a checkpoint folder its :func:`latest_checkpoint`, else
    its only complete ``.pt`` file (``finetune.pt``, ``linear.pt``). A leading ``~`` is the
    home folder (the Python API's ``load_encoder('~/run')``, a quoted ``--checkpoint``)."""
    p = Path(path).expanduser()
    picked = p.is_dir()
    if picked:
        if (p / "checkpoints").is_dir():
            p = p / "checkpoints"
        found = latest_checkpoint(p)
        if found is None:
            pts = sorted(p.glob("*.pt"))  # (the folder listed once)
            # (NAME.previous-K.pt: what a rerun set aside, files.set_aside; not the current)
            aside = [f for f in pts if SET_ASIDE.fullmatch(f.name)]
            files = [f for f in pts if not SET_ASIDE.fullmatch(f.name) and is_complete(f)]
            unfinished = [f for f in files if f.name.endswith(PARTIAL_SUFFIX)]
            files = [f for f in files if f not in unfinished]
            if len(files) > 1:
                raise SimCLRError(f"{p} holds several checkpoints "
                                  f"({', '.join(f.name for f in files)}); name one")
            if not files and unfinished:  # an evaluation's half-trained state, not a result
                raise SimCLRError(f"{p} holds only an unfinished training "
                                  f"({unfinished[0].name}): rerun the command that was "
                                  "stopped to finish it")
            # else a downloaded model folder's weights (the Hub's model.safetensors)
            files = files or ([] if unfinished else sorted(p.glob(f"*{SAFETENSORS}")))
            if len(files) > 1:
                raise SimCLRError(f"{p} holds several weights files "
                                  f"({', '.join(f.name for f in files)}); name one")
            if not files and aside:
                raise SimCLRError(f"{p} holds only checkpoints set aside by a rerun "
                                  f"({', '.join(f.name for f in aside)}): name one")
            if not files:  # (every .pt then is truncated or corrupt, if any)
                raise SimCLRError(
                    f"no complete checkpoint in {p}: {pts[0].name} is truncated or corrupt"
                    if pts else f"{p} holds no checkpoint (no .pt or {SAFETENSORS} file); "
                    "pass a run folder or a checkpoint file")
            found = files[0]
        elif (p / LAST).is_file() and not is_complete(p / LAST) and launched_rank() == 0:
            # say so (an older model), once for the processes of a run
            log.warning("%s is truncated or corrupt; using %s", p / LAST, found.name)
        p = found
    if not p.is_file():
        problem = unreadable_path(p)  # (a named pipe would be waited on forever)
        if problem:
            raise SimCLRError(f"checkpoint {p}: {problem}")
        raise (_PickedAndGone if picked else SimCLRError)(f"checkpoint not found: {p}")
    return p


class _PickedAndGone(SimCLRError):
    """The checkpoint :func:`checkpoint_file` picked from a folder was deleted before it
    was read: a training still saving there pruned it (``--keep-checkpoints``) after
    writing a newer one. :func:`read_weights_file` picks again, once."""


CLASSIFIER_FILES = ("linear.pt", "finetune.pt")  # what evaluations write into --out
PARTIAL_SUFFIX = "-partial.pt"  # an evaluation's unfinished training (simclr.partial)
SET_ASIDE = re.compile(r".+\.previous-\d+\.pt")  # kept by a rerun (files.set_aside)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``; ``mmap``: the tensors
    memory-mapped, read only where used (``simclr info`` reads a run's entries alone).

    ``path`` may also be a run or checkpoint folder (:func:`checkpoint_file`). Raises
    SimCLRError for a missing, truncated or foreign file, for one carrying pickled
    Python objects (refused by the weights-only unpickler before anything runs), and for
    one without its config and weights or whose config is invalid. The content gets
    ``"file"``, the path read, so later messages (:func:`load_weights`) can name it.
    """
    return checked_checkpoint(*read_weights_file(path, map_location, mmap))


def stopped_while_finishing(folder: Path, results: Sequence[str]) -> bool:
    """Whether ``folder``'s ``results`` (results.RESULTS) are those of a training stopped
    while it wrote them: a classifier among them (``checkpoints/NAME.pt``) beside the
    unfinished state it was saved from (``checkpoints/NAME-partial.pt``, deleted only
    once every result is written), of the same training (its run_id). They are no
    earlier run's: the same command tests that state again and writes them anew."""
    for name in results:
        classifier = folder / name
        if classifier.parent.name != CHECKPOINTS or classifier.suffix != ".pt":
            continue
        unfinished = classifier.with_name(classifier.stem + PARTIAL_SUFFIX)
        if classifier.is_file() and unfinished.is_file():
            ids = {_run_id(classifier), _run_id(unfinished)}
            return len(ids) == 1 and None not in ids
    return False


def _run_id(path: Path) -> str | None:
    """The run_id of the checkpoint ``path``, read without its tensors (None: none, or
    unreadable)."""
    try:
        return load_checkpoint(path, mmap=True).get("run_id")
    except SimCLRError:
        return None


def read_weights_file(path: str | os.PathLike, map_location: Any = "cpu",
                      mmap: bool = False) -> tuple[Any, Path]:
    """(the content, the file) of a weights file read safely, unchecked: the first half
    of :func:`load_checkpoint`, for callers that also take other layouts (a torchvision
    state dict: :func:`simclr.pretrained.initial_weights`)."""
    try:
        return _read_weights_file(path, map_location, mmap)
    except _PickedAndGone:  # (a second time: that SimCLRError, "checkpoint not found")
        return _read_weights_file(path, map_location, mmap)


def _read_weights_file(path: str | os.PathLike, map_location: Any,
                       mmap: bool) -> tuple[Any, Path]:
    """:func:`read_weights_file` once; :class:`_PickedAndGone` if the file it picked from
    a folder was deleted before it was read."""
    p = checkpoint_file(path)
    if p.suffix.lower() in (".pt2", ".onnx"):  # `simclr export` programs: no weights dict
        raise SimCLRError(f"{p} is an exported program ({p.suffix}), not a checkpoint; give "
                          "the checkpoint it was exported from")
    if is_safetensors(p):  # no pickle at all: read by its own rules
        return read_safetensors(p), p
    try:
        with warnings.catch_warnings():  # e.g. torch's "Detected pickle protocol 4"
            warnings.simplefilter("ignore")
            try:
                state = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
            except Exception:
                if not mmap:
                    raise
                # e.g. torch's legacy (non-zip) format cannot be mapped: read it whole
                state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip, EOF and I/O errors alike mean "unusable"
        if p.suffix.lower() in OTHER_FILES:  # e.g. a run's config.yaml, an embed .npz
            raise SimCLRError(f"{p} is {OTHER_FILES[p.suffix.lower()]}, not a checkpoint "
                              "(give the run folder, or the .pt file in it)") from None
        if isinstance(exc, FileNotFoundError):  # deleted since checkpoint_file saw it
            gone = SimCLRError if p == Path(path).expanduser() else _PickedAndGone
            raise gone(f"checkpoint not found: {p}") from None
        if isinstance(exc, PermissionError):  # a whole file, not ours to read
            raise SimCLRError(f"cannot read checkpoint {p}: permission denied") from None
        message = str(exc)
        culprit = _unsafe_global(message) if isinstance(exc, pickle.UnpicklingError) else None
        if culprit is not None:
            raise SimCLRError(
                f"refusing to load {p}: it contains pickled Python objects ({culprit}); only "
                "tensors and plain data are accepted, and the file may run code if unpickled"
            ) from None
        raise SimCLRError(
            f"cannot read checkpoint {p}: truncated, corrupt or not a checkpoint "
            f"({_why_unreadable(exc, p)})"
        ) from None
    damaged = None if mmap else damaged_entry(p)  # (mapped: the tensors are not read)
    if damaged is not None:
        raise SimCLRError(f"cannot read checkpoint {p}: corrupt (its entry {damaged} fails "
                          "its checksum: the file was damaged after it was written)")
    return state, p


def damaged_entry(path: Path) -> str | None:
    """The first entry of torch zip archive ``path`` whose bytes fail their CRC-32, or
    None. ``torch.load`` checks no checksum: a flipped byte in a tensor's data loads
    as a silently wrong weight (a resumed run then diverges, an encoder is just worse).
    An archive written without checksums (``torch.serialization.set_crc32_options``:
    every CRC 0) and a file that is no zip archive are not judged here."""
    try:
        with zipfile.ZipFile(path) as archive:
            if all(entry.CRC == 0 for entry in archive.infolist()):
                return None
            return archive.testzip()  # reads every entry once (about 1 GB/s)
    except (OSError, ValueError, zipfile.BadZipFile):  # (a legacy torch file: it loaded)
        return None


def imported_checkpoint(state: Any, p: Path) -> dict[str, Any] | None:
    """A ResNet's weights in torchvision's layout (``export --format torchvision``, the
    converted official weights, ...), read from file ``p``, as an encoder checkpoint;
    None for anything else (:func:`simclr.torchvision_io.as_encoder`)."""
    # (imported here: torchvision_io imports models, which import this module)
    from simclr.torchvision_io import as_encoder

    try:
        imported = as_encoder(state) if isinstance(state, dict) and "format" not in state \
            else None
    except SimCLRError as exc:  # e.g. two ResNets: the message names them, not the file
        raise SimCLRError(f"{p} {exc}") from None
    if imported is None:
        return None
    config, weights, what = imported
    return {"format": FORMAT, "version": VERSION, "kind": "encoder", "config": config,
            "model": weights, "imported": what, "size_guessed": True}


def checked_checkpoint(state: Any, p: Path) -> dict[str, Any]:
    """:func:`load_checkpoint`'s checks of what :func:`read_weights_file` read."""
    from simclr.torchvision_io import is_torchvision_state, unwrapped_state, why_not_a_resnet

    if isinstance(state, dict) and "format" not in state:
        state = imported_checkpoint(state, p) or state
        misfit = why_not_a_resnet(state) if "format" not in state else None
        if misfit is not None:
            raise SimCLRError(f"{p} is not a ResNet's weights in torchvision's layout: {misfit}")
        if "format" not in state and is_torchvision_state(unwrapped_state(state)):
            raise SimCLRError(
                f"{p} holds a state dict (tensors by name) but not a ResNet-18/34/50/101/152 "
                "in torchvision's layout, the one kind of bare weights read as an encoder; "
                "another torchvision network's weights can start a run: `simclr pretrain "
                f"--arch NAME --init-from {shell_quote(str(p))}`")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SimCLRError(f"{p} is not a simclr checkpoint (no \"format\": \"{FORMAT}\" entry)")
    version = state.get("version", 0)
    if not isinstance(version, int):
        raise SimCLRError(f"{p} is damaged: its version is {version!r}, not a number")
    if version > VERSION:
        raise SimCLRError(f"{p} was written by a newer simclr (checkpoint version "
                          f"{state['version']} > {VERSION}); upgrade to load it")
    kind = state.get("kind")
    if kind is not None and kind not in KINDS:
        raise SimCLRError(f"{p} is a checkpoint of unknown kind {str(kind)[:40]!r} (simclr "
                          f"writes {', '.join(KINDS)}); damaged, edited or from another "
                          "program?")
    require_entries(state, p, REQUIRED)
    check_config(state["config"], p)
    state["file"] = str(p)
    return state


def require_entries(state: Mapping[str, Any], path: Path, keys: tuple[str, ...],
                    prefix: str = "") -> None:
    """Refuse a checkpoint without ``keys`` in one line, instead of a later KeyError."""
    missing = [k for k in keys if k not in state]
    wrong = [k for k in keys if k in REQUIRED and k in state and not isinstance(state[k],
                                                                              Mapping)]
    if wrong and not missing:
        k = wrong[0]
        raise SimCLRError(f"{prefix}{path} is damaged: its \"{k}\" entry is "
                          f"{with_article(type(state[k]).__name__)}, not a mapping of "
                          f"{'settings' if k == 'config' else 'weights'}")
    if missing:
        quoted = [f'"{k}"' for k in missing]
        names = f"{', '.join(quoted[:-1])} and {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        raise SimCLRError(f"{prefix}{path} is not a complete simclr checkpoint: it has no "
                          f"{names} {'entry' if len(missing) == 1 else 'entries'}")


def check_config(config: Mapping[str, Any], path: Path) -> None:
    """Refuse a stored config that does not validate, naming the file: its setting is
    not a flag the user passed, so the flag-worded message would mislead."""
    try:
        validate(config_from_dict(dict(config)))
    except SettingError as exc:
        problem = exc.named(str)
    except (SimCLRError, TypeError, ValueError) as exc:
        problem = str(exc).removeprefix("saved config: ")
    else:
        return
    raise SimCLRError(f"checkpoint {path}: its config is invalid: {problem}")


def load_weights(module: nn.Module, ckpt: Mapping[str, Any], prefix: str = "") -> None:
    """Load ``ckpt``'s weights under ``prefix`` into ``module`` (built from its config),
    strictly. Weights that do not fit are one line naming the file and the first
    mismatch, not load_state_dict's page of errors."""
    weights = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    problem = weight_mismatch(module.state_dict(), weights, prefix)
    if problem is not None:
        model = ckpt["config"].get("model", {})
        raise SimCLRError(
            f"checkpoint {ckpt.get('file', '(in memory)')}: its weights do not fit the "
            f"{model.get('arch', '?')} width {model.get('width', '?')} network its config "
            f"describes: {problem}")
    module.load_state_dict(weights)


def weight_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any],
                    prefix: str = "") -> str | None:
    """What differs between two state dicts' names and shapes, in a few words; None if
    nothing does. A tensor not of floating point where the network's is (an int64 or
    bool convolution) differs too: loading would cast it into the network, its weights
    rounded to whole numbers, mostly 0, without a word. (Integers where the network
    has them, BatchNorm's num_batches_tracked, and half precision are loaded as ever.)"""
    def shape(v: Any) -> str:
        return "x".join(map(str, v.shape)) if isinstance(v, torch.Tensor) else type(v).__name__

    def not_float(k: str) -> bool:
        mine, theirs = expected[k], found[k]
        return (isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor)
                and mine.is_floating_point() and not theirs.is_floating_point())

    wrong = [k for k in expected if k in found and shape(found[k]) != shape(expected[k])]
    integer = [k for k in expected if k in found and k not in wrong and not_float(k)]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} tensors of another shape (first {prefix}{k}: {shape(found[k])} "
                     f"in the file, {shape(expected[k])} in the network)")
    if integer:
        k = integer[0]
        parts.append(f"{len(integer)} tensors of a dtype that is not floating point (first "
                     f"{prefix}{k}: {str(found[k].dtype).removeprefix('torch.')} in the file, "
                     f"{str(expected[k].dtype).removeprefix('torch.')} in the network)")
    parts += [f"{len(names)} {what} (first {prefix}{names[0]})"
              for names, what in ((missing, "missing"), (unexpected, "unexpected")) if names]
    return "; ".join(parts) or None


def _why_unreadable(exc: Exception, path: Path | None = None) -> str:
    """A short reason for a failed ``torch.load``, in our words: torch's own messages
    run to paragraphs (one advises ``weights_only=False``, unsafe for a foreign file)."""
    text = str(exc)
    if isinstance(exc, PermissionError):
        return exc.strerror or "permission denied"
    # Seeks past the end of a cut archive raise OSError; torch's zip reader says the rest.
    if (isinstance(exc, (EOFError, OSError)) or "unexpected EOF" in text
            or "failed finding central" in text):
        return "the file ends early"
    if isinstance(exc, pickle.UnpicklingError) or "PytorchStreamReader" in text or (
            "inline_container" in text):
        return "not a PyTorch checkpoint archive"
    if path is not None and not zipfile.is_zipfile(path):  # e.g. a text file: KeyError(101)
        return "not a PyTorch checkpoint archive"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:120]

