"""``simclr info``: what a run folder, a folder of runs or a checkpoint holds.

:func:`describe` reads a run folder from the files simclr writes (config.yaml,
summary.json, metrics.jsonl and the evaluations' JSON files, here or one folder down,
read by :mod:`simclr.run_facts`; checkpoints/, each file's facts here), a folder of runs
or a sweep's, a checkpoint file (:func:`checkpoint_facts`) or an exported program (its
card). Nothing is modified, and a run still training (its folder locked:
files.lock_folder) is reported as running. ``--json`` gives these facts for scripts;
:mod:`simclr.info_text` words them for a person.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from simclr.checkpoint import (
    CHECKPOINTS,
    CLASSIFIER_FILES,
    LAST,
    checkpoint_files,
    periodic_checkpoints,
)
from simclr.checkpoint_read import check_intact, checkpoint_file, load_checkpoint
from simclr.errors import SimCLRError, is_amount, is_count, unreadable_path
from simclr.files import folder_holder, read_json
from simclr.resume import gone_folders, recorded_argv, session_number
from simclr.run_facts import (
    CONFIG_FILE,
    RESULT_FILES,
    _read_config,
    _started,
    results_in,
    run_state,
)
from simclr.safetensors_file import SUFFIX as SAFETENSORS


def describe(target: str | os.PathLike) -> dict[str, Any]:
    """The facts of a run folder or checkpoint file ``target`` (a JSON-ready dict)."""
    if not str(target).strip():
        raise SimCLRError("give a run folder or checkpoint file, got an empty path")
    path = Path(target).expanduser()
    problem = unreadable_path(path)  # (a named pipe would be waited on forever)
    if problem:
        raise SimCLRError(f"{target}: {problem}")
    if not path.exists():
        raise SimCLRError(f"{target}: no such file or folder")
    if path.is_file() and path.suffix.lower() in (".pt2", ".onnx"):  # `simclr export`'s
        from simclr.programs import read_card

        return _program_facts(path, read_card(path))
    if path.is_file():
        # (its name: a partial file, an unfinished training's, reads as one)
        return _torchvision_export(path) or {
            "path": str(path), "checkpoint": {"name": path.name, **checkpoint_facts(path)}}
    if path.name == CHECKPOINTS and not (path / "config.yaml").exists():
        return describe(path.parent)  # a run's checkpoints/ folder: the run
    facts: dict[str, Any] = {"path": str(path)}
    try:
        runs = _runs_in(path)
    except OSError as exc:
        # (a stat refused inside the folder: the sub-folder holding the entry is closed)
        what = f"cannot read the folder {Path(exc.filename).parent}" if exc.filename and \
            Path(exc.filename) != path else "cannot list the folder"
        raise SimCLRError(f"{target}: {what} ({exc.strerror})") from None
    pending = _pending_cells(path, {run.name for run in runs})
    if (runs or pending) and not (path / "config.yaml").exists() and \
            not (path / CHECKPOINTS).is_dir():  # e.g. runs/, a sweep
        return {**facts, "runs": [_described(run) for run in runs], "pending": pending}
    config, damaged = _read_config(path / CONFIG_FILE)
    if damaged:  # shown without what could not be read, and said so
        facts["config_damaged"] = list(damaged.values())
    if config:
        facts["encoder"] = encoder_facts(config)
        facts["recipe"] = recipe_facts(config)
        facts["provenance"] = _started(config.get("provenance"))
        processes = (facts["provenance"] or {}).get("processes")
        if str(processes).isdigit():  # the batch is global: over how many, how normalised
            facts["recipe"]["processes"] = int(processes)  # type: ignore[arg-type]  # (digits)
        if not {"data", "data.path"} & damaged.keys():  # (unread: not the digits demo)
            # (a supervised run's --train/--test: its `folders`, before its last.pt has them)
            facts["data"] = (config.get("data") or {}).get("path") or config.get("folders")
        facts["folders_gone"] = gone_folders(config)  # (its --resume asks for their places)
        if config.get("init_from"):  # the file and step it started from, where recorded
            facts["init_from"] = config.get("init_from_resolved") or config["init_from"]
    facts["checkpoints"] = _checkpoints(path / CHECKPOINTS)
    last: dict[str, Any] = next((c for c in facts["checkpoints"] if c["name"] == LAST), {})
    # what its evaluations' results record (checkpoint.new_run_id); config.yaml's too,
    # which a copy of the folder keeps without its checkpoints (a text file: read only
    # as such an id, never printed as whatever it holds)
    recorded = (config or {}).get("run_id")
    if last.get("run_id"):
        facts["run_id"] = last["run_id"]
    elif isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{32}", recorded):
        facts["run_id"] = recorded
    if last.get("data"):  # a supervised run keeps its --train/--test there
        facts["data"] = last["data"]
    elif last.get("data_split") and isinstance(facts.get("data"), str):
        facts["data_split"] = last["data_split"]  # (DIR's split that trained: DIR/train)
    if facts.get("recipe") is not None and "processes" not in facts["recipe"]:
        # no --processes in its command (torchrun's): the count its session recorded
        count = last.get("processes") or (read_json(path / "summary.json") or {}).get("processes")
        if is_count(count):
            facts["recipe"]["processes"] = count
    started = (config or {}).get("provenance")  # (its starts tell an earlier session's summary)
    facts["state"] = run_state(path, facts["checkpoints"],
                               session_number(started) if isinstance(started, dict) else None,
                               bool((config or {}).get("knn_train")))
    facts["results"] = results_in(path)
    if facts["state"]["status"] == "stopped" and facts["results"] and not config and \
            "saved_step" not in facts["state"]:  # an evaluation's --out: its results are its
        facts["state"]["status"] = "finished"  # end ("stopped" is a killed training's)
    if not (config or facts["checkpoints"] or facts["results"]):
        if any(path.glob("*.pt")) or any(path.glob(f"*{SAFETENSORS}")):
            # a folder of weights (a downloaded model's model.safetensors, an exported
            # encoder.pt): the file --checkpoint reads from it, by its rule and messages
            return describe(checkpoint_file(path))
        holder = folder_holder(path)
        if holder:  # a command at work that has saved nothing yet (a fine-tuning's start)
            return {"path": str(path), "busy": holder}
        what = (f"its {CONFIG_FILE} is {next(iter(damaged.values()))}" if damaged
                else "no config.yaml, checkpoints or results")
        raise SimCLRError(f"{target}: not a simclr run folder ({what})")
    return facts


def _torchvision_export(path: Path) -> dict[str, Any] | None:
    """The facts of a ``simclr export --format torchvision`` file from the card written
    beside it (``<file>.json``: the side, preprocessing and provenance the state dict
    does not record; another network's than a ResNet's reads as no checkpoint at all),
    and for a ResNet the side simclr reads the file at (``read_at``) where it is
    another. None where no such card is beside it, or the file is a simclr checkpoint
    now (written over since: the card is not its)."""
    from simclr.checkpoint_read import read_weights_file
    from simclr.config import ARCHS
    from simclr.programs import card_file
    from simclr.torchvision_io import assumed_side

    try:
        card = json.loads(card_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # (RecursionError: nested too deep)
        return None
    if not isinstance(card, dict) or card.get("format") != "simclr-program" or \
            card.get("program") != "torchvision":
        return None
    state, _ = read_weights_file(path, mmap=True)  # (a damaged file: its own error)
    if not isinstance(state, dict) or "format" in state:
        return None
    check_intact(path)  # (a flipped bit: as checkpoint_facts)
    if not _card_fits(card, state):  # (written over since: the card is another file's)
        return None
    facts = _program_facts(path, card)
    card = facts["program"]
    encoder, size = card.get("encoder") or {}, ((card.get("input") or {}).get("shape") or [0])[-1]
    # (a side left out as damaged: no advice, which would name it 0 or None)
    if encoder.get("arch") in ARCHS and encoder.get("image_size") and size and \
            assumed_side(bool(encoder.get("cifar_stem"))) != size:
        facts["read_at"] = assumed_side(bool(encoder.get("cifar_stem")))
    return facts


def _card_fits(card: dict[str, Any], state: dict[str, Any]) -> bool:
    """Whether the ResNet a torchvision export's ``card`` describes is the one its file
    holds (arch, width, stem, read off the tensors): a file saved over it since (another
    ResNet, fine-tuned in plain torchvision) was described by the card left beside it.
    A card of another network, or a state of no ResNet's layout, is not judged."""
    from simclr.torchvision_io import resnet_layout, unwrapped_state

    encoder: dict[str, Any] = card["encoder"] if isinstance(card.get("encoder"), dict) else {}
    layout = resnet_layout(unwrapped_state(state))
    if layout is None or not {"arch", "width", "cifar_stem"} <= encoder.keys():
        return True
    arch, width, cifar_stem = layout
    return (arch, float(width), bool(cifar_stem)) == (
        encoder["arch"], float(encoder["width"]) if is_amount(encoder["width"]) else None,
        bool(encoder["cifar_stem"]))


# The entries of an exported file's card (programs.program_card) info reads, as export
# writes them; the card is a received file's, and an entry of another type ("output":
# "x", an input shape of 5, a kind [1]) was a traceback: left out and named as damaged.
_CARD_TYPES: dict[str, type | tuple[type, ...]] = {
    "program": str, "checkpoint": str, "step": int, "total_steps": int, "kind": str,
    "trained": str, "features": str, "imported": str, "input": dict, "output": dict,
    "encoder": dict, "unfinished": dict}


def _program_facts(path: Path, card: dict[Any, Any]) -> dict[str, Any]:
    """The facts of an exported file ``path`` from its ``card``: the card without the
    entries info reads that are not as export writes them, which ``damaged`` names."""
    damaged: list[str] = []
    kept: dict[str, Any] = {}
    for key, value in card.items():
        if key in _CARD_TYPES and value is not None and \
                _entry(card, key, damaged, _CARD_TYPES[key]) is None:
            continue  # (a null is kept: export writes some, e.g. a classifier's step)
        kept[str(key)] = value
    for key, checks in (("input", _card_input), ("output", _card_output),
                        ("encoder", _card_encoder)):
        if key in kept:
            kept[key] = checks(kept[key], damaged)
    if kept.get("unfinished") is not None and not _is_unfinished(kept["unfinished"]):
        del kept["unfinished"]
        damaged.append("unfinished")
    return {"path": str(path), "program": kept, **({"damaged": damaged} if damaged else {})}


def _is_unfinished(value: Any) -> bool:
    """Whether ``value`` is a stopped training's step and plan as export writes them
    (a card's or an exported encoder's ``unfinished``): its step a count, its
    total_steps a count or none."""
    return isinstance(value, dict) and _entry(value, "step", [], int) is not None and (
        value.get("total_steps") is None or _entry(value, "total_steps", [], int) is not None)


def _card_input(entry: dict[str, Any], damaged: list[str]) -> dict[str, Any]:
    """A card's ``input`` without a ``shape`` that is no list ending in the image side."""
    shape = entry.get("shape")
    if shape is None or _is_shape(shape) and is_count(shape[-1]):
        return entry
    damaged.append("input.shape")
    return {k: v for k, v in entry.items() if k != "shape"}


def _is_shape(value: Any) -> bool:
    """Whether ``value`` is a tensor shape as export writes one: a list of sides (whole
    numbers >= 1) and names of free ones ("batch")."""
    return isinstance(value, list) and bool(value) and all(
        is_count(side) or isinstance(side, str) and side.isidentifier() for side in value)


def _card_output(entry: dict[str, Any], damaged: list[str]) -> dict[str, Any]:
    """A card's ``output`` without a ``shape`` that is none, a ``name`` no text."""
    odd = [k for k, ok in (("name", lambda v: isinstance(v, str)), ("shape", _is_shape))
           if entry.get(k) is not None and not ok(entry[k])]
    damaged += [f"output.{k}" for k in odd]
    return {k: v for k, v in entry.items() if k not in odd}


def _card_encoder(entry: dict[str, Any], damaged: list[str]) -> dict[str, Any]:
    """A card's ``encoder`` without an ``arch`` that is no name, an ``image_size`` no
    side (a whole number >= 1: :mod:`simclr.info_text` shows it as the input's side)."""
    odd = [k for k, ok in (("arch", lambda v: isinstance(v, str)), ("image_size", is_count))
           if entry.get(k) is not None and not ok(entry[k])]
    damaged += [f"encoder.{k}" for k in odd]
    return {k: v for k, v in entry.items() if k not in odd}


def _runs_in(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that are runs (a config.yaml) or a command's output
    (a checkpoints/ folder), and beside those, an evaluation's results alone (kNN's
    --out holds no checkpoint: it was left out beside a linear evaluation's). Results
    folders alone are the results one level down of a folder of results
    (:func:`simclr.run_facts.results_in`), as before."""
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir()]
    runs = [p for p in subs if (p / CONFIG_FILE).is_file() or (p / CHECKPOINTS).is_dir()]
    return [p for p in subs if p in runs or _holds_results(p)] if runs else runs


def _holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds one of the evaluations' results files."""
    return any((folder / name).is_file() for name in RESULT_FILES)


def _described(run: Path) -> dict[str, Any]:
    """One run of a folder of runs; one that cannot be read is a line, not a stop."""
    try:
        return describe(run)
    except SimCLRError as exc:
        return {"path": str(run), "error": str(exc)}


def _pending_cells(folder: Path, runs: set[str]) -> list[str]:
    """The cells of a sweep in ``folder`` (its sweep.json) that have no run folder yet."""
    try:
        rows = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(rows, list):
        return []
    return [row["cell"] for row in rows if isinstance(row, dict) and
            isinstance(row.get("cell"), str) and row["cell"] not in runs]


# A checkpoint's descriptive entries info shows, as simclr writes them (a crafted or
# damaged file's other values are left out and named in ``damaged``, never formatted:
# `top1: "high"` was a traceback, and pickle's shared references nest a list as YAML's
# aliases do).
_ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "kind": str, "imported": str, "step": int, "run_id": str, "total_steps": int,
    "elapsed": (int, float), "features": str, "session": int, "processes": int,
    "local_processes": int, "data_split": str}


def _entry(entries: dict[Any, Any], key: str, damaged: list[str],
           types: type | tuple[type, ...] | None = None) -> Any:
    """``entries[key]`` where of its type (:data:`_ENTRY_TYPES`; a number finite and not
    negative), else None, with ``key`` added to ``damaged`` where it is there."""
    value = entries.get(key)
    if value is None:
        return None
    types = types or _ENTRY_TYPES[key]
    if isinstance(value, types) and not isinstance(value, bool) and (
            not isinstance(value, (int, float)) or is_amount(value)):
        return value
    damaged.append(key)
    return None


def _data_split(ckpt: dict[str, Any], damaged: list[str]) -> str | None:
    """The split of its --data a pretraining trained on (DIR/train), None for the whole
    folder. A checkpoint saved before ``data_split`` was, of a folder (``num_files``),
    read the splits as this release does, unless its release read splits in capitals
    whole (Train/, Test/ as two classes, before 2026-12-06), told by the files it listed
    as ``--resume`` tells it (resume.read_splits_as_classes: a release between read
    DIR/Train); None where that folder is gone or holds none."""
    from simclr.folders import split_name, split_read_anew
    from simclr.resume import read_splits_as_classes

    if "data_split" in ckpt:
        return _entry(ckpt, "data_split", damaged)
    data = ((ckpt.get("config") or {}).get("data") or {}).get("path")
    if "num_files" not in ckpt or not isinstance(data, str):
        return None
    if split_read_anew(data) is not None and \
            read_splits_as_classes(ckpt, data, ckpt["num_files"]):
        return None
    return split_name(data, True)


def checkpoint_facts(path: Path) -> dict[str, Any]:
    """Kind, progress, encoder and (classifiers) classes and stored top-1 of one file."""
    from simclr.pretrained import side_guessed

    ckpt = load_checkpoint(path, mmap=True)  # the entries, not the tensors' data
    # Each byte read once, though (about 1 GB/s): a flipped bit in a tensor loads as a
    # wrong weight, and the file every other command refuses would read as healthy here.
    check_intact(Path(ckpt["file"]))
    damaged: list[str] = []
    facts = {"kind": _entry(ckpt, "kind", damaged), "imported": _entry(ckpt, "imported", damaged),
             **({"size_guessed": guess} if (guess := side_guessed(ckpt)) else {}),
             "step": _entry(ckpt, "step", damaged), "run_id": _entry(ckpt, "run_id", damaged),
             "total_steps": _entry(ckpt, "total_steps", damaged),
             "elapsed_s": _entry(ckpt, "elapsed", damaged),
             # (the session that saved it: how many processes continue the run as it was)
             "processes": _entry(ckpt, "processes", damaged),
             "local_processes": _entry(ckpt, "local_processes", damaged),
             # (the split of --data trained on: DIR holding train/ and test/)
             **({"data_split": split} if (split := _data_split(ckpt, damaged)) else {})}
    if isinstance(ckpt.get("config"), dict):
        facts["encoder"] = encoder_facts(ckpt["config"])
    if isinstance(ckpt.get("data"), dict):  # (its plain values: what info prints)
        facts["data"] = {str(k): v for k, v in ckpt["data"].items()
                         if v is None or isinstance(v, (str, int, float))}
    features = _entry(ckpt, "features", damaged)
    if features not in (None, "pretrained"):  # a random-init baseline's
        facts["fitted_on"] = features  # classifier, or its exported encoder
    facts.update(_exported_facts(ckpt))
    if ckpt.get("unfinished") is not None:  # an export of a stopped training's encoder
        if _is_unfinished(ckpt["unfinished"]):
            facts["unfinished"] = ckpt["unfinished"]
        else:
            damaged.append("unfinished")
    facts.update(_classifier_facts(ckpt, damaged))
    facts["session"] = _entry(ckpt, "session", damaged)  # which start saved it (supervised)
    argv = recorded_argv(ckpt.get("argv"))
    if argv is not None:  # an unfinished evaluation's training: its command
        facts["argv"] = argv
        facts["cwd"] = ckpt.get("cwd") if isinstance(ckpt.get("cwd"), str) else None
    elif ckpt.get("argv") is not None:
        damaged.append("argv")
    settings = ckpt.get("settings") if isinstance(ckpt.get("settings"), dict) else {}
    source = settings.get("source")  # type: ignore[union-attr]  # (a dict; unfinished: [checkpoint, step, ..])
    step = source[1] if isinstance(source, list) and len(source) > 1 else None
    # the step of the encoder it trains on (linear-eval --protocol sgd saves it as text,
    # as its refusal compares it: digits are a step too)
    if isinstance(step, int) and not isinstance(step, bool):
        facts["started_on"] = step
    elif isinstance(step, str) and step.isascii() and step.isdigit():
        facts["started_on"] = int(step)
    if damaged:
        facts["damaged"] = damaged
    return {k: v for k, v in facts.items() if v is not None}


def _exported_facts(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What an encoder ``simclr export`` wrote was taken from, where it says."""
    origin = ckpt.get("exported_from")
    if not isinstance(origin, dict) or not isinstance(origin.get("trained"), str):
        return {}
    from simclr.pretrained import trained_for

    return {"exported_from": {k: origin[k] for k in ("kind", "trained", "file")
                              if isinstance(origin.get(k), str)},
            "trained": trained_for(ckpt)}  # (as `simclr embed` records it)


def _classifier_facts(ckpt: dict[str, Any], damaged: list[str]) -> dict[str, Any]:
    """A classifier's classes (the count; the names: predict's unknown class folders
    point here), stored top-1, status and (an SGD linear classifier's) steps."""
    facts: dict[str, Any] = {}
    classes = ckpt.get("classes")
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        facts["classes"], facts["class_names"] = len(classes), list(classes)
    elif classes is not None:
        damaged.append("classes")
    metrics = ckpt.get("metrics") or {}
    if not isinstance(metrics, dict):
        damaged.append("metrics")
        return facts
    odd: list[str] = []  # (named as metrics.top1, ...)
    top1 = _entry(metrics, "top1", odd, (int, float))
    if top1 is not None and top1 <= 1:
        facts["top1"] = top1
    elif top1 is not None:
        odd.append("top1")
    status = _entry(metrics, "status", odd, str)
    if status:
        facts["status"] = status
    steps = _entry(metrics, "steps", odd, int)
    damaged += [f"metrics.{k}" for k in odd]
    if steps is not None and steps > (_entry(ckpt, "step", []) or 0):
        facts["step"] = steps  # (an SGD linear classifier records its steps here)
    return facts


def encoder_facts(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture, width, image size and head of a saved config."""
    model, augment = config.get("model") or {}, config.get("augment") or {}
    return {"arch": model.get("arch"), "width": model.get("width"),
            "image_size": augment.get("size"), "eval_size": augment.get("eval_size"),
            "head": model.get("head"), "head_out_dim": model.get("head_out_dim")}


def recipe_facts(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a reader compares runs by (the paper's: batch size, lr and its scaling,
    Sec. 2.3 and App. B.1; the loss and its temperature, Sec. 5.1)."""
    optim, loss = config.get("optim") or {}, config.get("loss") or {}
    return {"batch_size": config.get("batch_size"), "optimizer": optim.get("name"),
            "sync_bn": (config.get("model") or {}).get("sync_bn"),
            "lr": optim.get("lr"), "lr_scaling": optim.get("lr_scaling"),
            "temperature": loss.get("temperature"), "loss": loss.get("name"),
            "margin": loss.get("margin"), "semi_hard": loss.get("semi_hard"),
            "one_view_negatives": loss.get("one_view_negatives"),
            "normalize": loss.get("normalize"), "loss_weight": loss.get("weight"),
            "epochs": config.get("epochs"), "time_budget": config.get("time_budget"),
            "max_steps": config.get("max_steps"), "seed": config.get("seed"),
            "precision": config.get("precision_resolved")}


def _checkpoints(folder: Path) -> list[dict[str, Any]]:
    """Each checkpoint with its kind and step; periodic ones by name (read on demand:
    a run keeps several, each as large as the model and its optimizer state)."""
    periodic = {path: step for step, path in periodic_checkpoints(folder)}
    others = sorted(set(folder.glob("*.pt")) - set(checkpoint_files(folder)))
    out: list[dict[str, Any]] = []
    damaged: dict[tuple[int, int], str] = {}  # (device, inode) of a file read and refused
    for path in [*checkpoint_files(folder), *others]:  # last.pt, ckpt-*, then classifiers
        if path in periodic:  # (the final step's is last.pt itself, a hard link: as damaged)
            error = damaged.get(_file_id(path))
            out.append({"name": path.name, "kind": "periodic", "step": periodic[path]}
                       if error is None else {"name": path.name,
                                              "error": f"{error} (the same file as {LAST})"})
            continue
        try:
            out.append({"name": path.name, **checkpoint_facts(path)})
        except SimCLRError as exc:  # a damaged file is a fact worth showing, not a stop
            out.append({"name": path.name, "error": str(exc)})
            damaged[_file_id(path)] = str(exc)
            continue
        if path.name in CLASSIFIER_FILES:  # an evaluation's --out RUN: of which encoder
            from simclr.classifiers import classifier_source, why_stale

            source = classifier_source(path)
            # (the classifier's own record first: its results file may be gone or older)
            features = out[-1].get("fitted_on") or source.get("features", "pretrained")
            if features == "pretrained":
                out[-1]["fitted_on_step"] = source.get("step")
            else:  # the baseline (--random-init): no encoder step of the run's
                out[-1]["fitted_on"] = features
            out[-1]["stale"] = why_stale(path, folder / LAST) if (folder / LAST).is_file() \
                else None
    if any(c["name"] == LAST and "error" in c for c in out):
        _read_fallback(folder, out)
    return out


def _read_fallback(folder: Path, out: list[dict[str, Any]]) -> None:
    """Beside a damaged last.pt, the newest periodic checkpoint that reads is the run's
    last readable one (what --resume goes back to): the periodic files are read, newest
    first, until one does; those that do not are shown damaged, not by their names."""
    entries = {c["name"]: c for c in out}
    for _, path in reversed(periodic_checkpoints(folder)):
        entry = entries.get(path.name)
        if entry is None or "error" in entry:  # (saved since; last.pt itself, a hard link)
            continue
        try:
            checkpoint_facts(path)
            return
        except SimCLRError as exc:
            entry.clear()
            entry.update({"name": path.name, "error": str(exc)})


def _file_id(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)
