"""Safely loadable checkpoints: reading, checking and loading them.

Loading uses ``torch.load(weights_only=True)``: a file carrying pickled Python objects
is refused and its payload never runs (a ``.safetensors`` file holds no pickle at all).
:func:`load_checkpoint` refuses a file without its config and weights, or whose config
is invalid, and adds ``"file"`` (the path it read; never saved) for later messages;
a ResNet's weights in torchvision's layout are read as an encoder checkpoint.
:func:`checkpoint_file` picks the file a run or checkpoint folder names, and
:func:`load_weights` / :func:`readable_state` put what was read into a network or a
run, a misfit one line naming the file. Writing checkpoints (their format, names and
atomic saves) is :mod:`simclr.checkpoint`'s.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.checkpoint import (
    CHECKPOINTS,
    FORMAT,
    KINDS,
    LAST,
    PARTIAL_SUFFIX,
    REQUIRED,
    SET_ASIDE,
    VERSION,
    is_complete,
    latest_checkpoint,
)
from simclr.distributed import launched_rank
from simclr.errors import SimCLRError, printable, unreadable_path, with_article
from simclr.launch import shell_quote
from simclr.safetensors_file import SUFFIX as SAFETENSORS
from simclr.safetensors_file import is_safetensors, read_safetensors
from simclr.settings import SettingError, config_from_dict
from simclr.torchvision_io import (
    as_encoder,
    is_torchvision_state,
    unwrapped_state,
    why_not_a_resnet,
)
from simclr.validate import validate

log = logging.getLogger(__name__)

# What a file of these suffixes is, when it is no checkpoint (`simclr info config.yaml`).
OTHER_FILES = {".yaml": "a YAML file", ".yml": "a YAML file", ".json": "a JSON file",
               ".jsonl": "a JSON-lines file", ".csv": "a CSV file", ".txt": "a text file",
               ".md": "a Markdown file", ".npz": "a NumPy archive", ".npy": "a NumPy array",
               ".png": "an image", ".jpg": "an image", ".jpeg": "an image"}


# Other names of weights files, read from a folder given that holds no .pt or safetensors
WEIGHTS_SUFFIXES = (".pth", ".bin", ".ckpt")


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
            # else a downloaded model folder's weights (the Hub's model.safetensors, else
            # pytorch_model.bin; torchvision's resnet50-0676ba61.pth; a Lightning .ckpt)
            files = files or ([] if unfinished else sorted(p.glob(f"*{SAFETENSORS}")) or
                              sorted(f for f in p.iterdir() if f.is_file()
                                     and f.suffix.lower() in WEIGHTS_SUFFIXES))
            if len(files) > 1:
                raise SimCLRError(f"{p} holds several weights files "
                                  f"({', '.join(f.name for f in files)}); name one")
            if not files and aside:
                raise SimCLRError(f"{p} holds only checkpoints set aside by a rerun "
                                  f"({', '.join(f.name for f in aside)}): name one")
            if not files:  # (every .pt then is truncated or corrupt, if any)
                raise SimCLRError(
                    f"no complete checkpoint in {p}: {pts[0].name} is truncated or corrupt"
                    if pts else f"{p} holds no checkpoint (no .pt, {SAFETENSORS}, "
                    f"{', '.join(WEIGHTS_SUFFIXES)} file); "
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


def _exported_from(program: Path) -> str:
    """' (its card names CHECKPOINT)': the file a program's card records it was
    exported from, where it is readable (else nothing)."""
    from simclr.programs import read_card  # (the export machinery: only for this message)

    try:
        source = read_card(program).get("checkpoint")
    except SimCLRError:
        return ""
    return f" (its card names {printable(source)})" if isinstance(source, str) else ""


def _read_weights_file(path: str | os.PathLike, map_location: Any,
                       mmap: bool) -> tuple[Any, Path]:
    """:func:`read_weights_file` once; :class:`_PickedAndGone` if the file it picked from
    a folder was deleted before it was read."""
    p = checkpoint_file(path)
    if p.suffix.lower() in (".pt2", ".onnx"):  # `simclr export` programs: no weights dict
        raise SimCLRError(f"{p} is an exported program ({p.suffix}), not a checkpoint; give "
                          f"the checkpoint it was exported from{_exported_from(p)}")
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
        program = p.with_name(p.name[: -len(".json")]) if p.suffix.lower() == ".json" else p
        if program != p and program.suffix.lower() in (".pt2", ".onnx", ".pth", ".pt"):
            # (an export's card: `simclr export` writes NAME.json beside NAME)
            raise SimCLRError(f"{p} is the card of an exported file, not a checkpoint; give "
                              f"the file it describes, {program.name}") from None
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
        check_intact(p)  # (a byte flipped in its pickle: the checksum names the entry)
        raise SimCLRError(
            f"cannot read checkpoint {p}: truncated, corrupt or not a checkpoint "
            f"({_why_unreadable(exc, p)})"
        ) from None
    if not mmap:  # (mapped: the tensors are not read; the caller checks where it must)
        check_intact(p)
    return state, p


def _unsafe_global(message: str) -> str | None:
    """The Python object a weights-only unpickler refused, if that was the failure."""
    # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose ..."
    match = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", message)
    if match:
        return match.group(1)
    if re.search(r"Unsupported (global|class)|GLOBAL|REDUCE|BUILD", message):
        return "unknown"
    return None


def check_intact(path: Path) -> None:
    """SimCLRError naming the first entry of checkpoint ``path`` whose bytes fail their
    CRC-32 (:func:`damaged_entry`), if one does."""
    damaged = damaged_entry(path)
    if damaged is not None:
        raise SimCLRError(f"cannot read checkpoint {path}: corrupt (its entry {damaged} fails "
                          "its checksum: the file was damaged after it was written)")


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
    if isinstance(state, dict) and "format" not in state:
        _refuse_several_models(state, p)
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


def _refuse_several_models(state: dict[Any, Any], p: Path) -> None:
    """A file of several models' weights side by side (DINO's ``student`` and
    ``teacher``, each a state dict): which one is meant is the user's call, said as
    such (it was refused as no simclr checkpoint, its models unnamed)."""
    models = [str(k) for k, v in state.items() if isinstance(v, Mapping) and v
              and all(isinstance(t, torch.Tensor) for t in v.values())]
    if len(models) > 1:
        shown = ", ".join(models[:4]) + (", ..." if len(models) > 4 else "")
        raise SimCLRError(f"{p} holds the weights of {len(models)} models ({shown}): save the "
                          f"one to use alone (torch.save(state[{models[0]!r}], FILE)) and give "
                          "that file")


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
