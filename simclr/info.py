"""``simclr info``: what a run folder or a checkpoint holds, in a few lines.

A run folder is read from the files simclr writes (config.yaml, summary.json,
metrics.jsonl, checkpoints/, the evaluations' JSON files, here or one folder down);
nothing is modified, and a run still training (its folder locked: files.lock_folder) is
reported as running. ``--json`` gives these facts for scripts;
:mod:`simclr.info_text` words them for a person.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from simclr.checkpoint import (
    CHECKPOINTS,
    CLASSIFIER_FILES,
    LAST,
    PARTIAL_SUFFIX,
    checkpoint_files,
    is_run_checkpoint,
    load_checkpoint,
    periodic_checkpoints,
)
from simclr.config import SECTIONS, Config
from simclr.config_file import parse_yaml
from simclr.errors import SimCLRError, is_amount, is_count, unreadable_path, with_article
from simclr.files import folder_holder, read_json
from simclr.resume import recorded_argv, recorded_start, session_number
from simclr.rundir import SUPERVISED_RESULT
from simclr.settings import set_path

# The evaluations' results files (simclr.results.RESULTS) and what each measured.
RESULT_FILES = {"knn.json": "kNN", "linear_eval.json": "linear evaluation",
                "finetune.json": "fine-tuning", "transform_probe.json": "transform probe",
                SUPERVISED_RESULT: "supervised training"}
TAIL_BYTES = 1 << 16  # the end of metrics.jsonl read for the last logged step
CONFIG_FILE = "config.yaml"
# Each section's setting names ("": the run-wide ones, sections among them), which a
# damaged config.yaml is read by
FIELDS = {name: {f.name for f in fields(cls)} for name, cls in SECTIONS.items()}
SECTION_TYPES = tuple(cls for name, cls in SECTIONS.items() if name)
UNREAD = object()  # a setting of a damaged config.yaml that could not be read
# The numbers info reads from a metrics.jsonl line, and the types each may have (or null:
# a step skipped for a NaN loss logs a null loss).
LOGGED_NUMBERS: dict[str, tuple[type, ...]] = {
    "step": (int,), "total_steps": (int,), "loss": (int, float), "epoch": (int, float),
    "elapsed": (int, float), "knn_top1": (int, float)}


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
        from simclr.export import read_card

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
        if config.get("init_from"):  # the file and step it started from, where recorded
            facts["init_from"] = config.get("init_from_resolved") or config["init_from"]
    facts["checkpoints"] = _checkpoints(path / CHECKPOINTS)
    last: dict[str, Any] = next((c for c in facts["checkpoints"] if c["name"] == LAST), {})
    if last.get("run_id"):  # what its evaluations' results record (checkpoint.new_run_id)
        facts["run_id"] = last["run_id"]
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
    from simclr.checkpoint import read_weights_file
    from simclr.config import ARCHS
    from simclr.export import card_file
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
    facts = _program_facts(path, card)
    card = facts["program"]
    encoder, size = card.get("encoder") or {}, ((card.get("input") or {}).get("shape") or [0])[-1]
    # (a side left out as damaged: no advice, which would name it 0 or None)
    if encoder.get("arch") in ARCHS and encoder.get("image_size") and size and \
            assumed_side(bool(encoder.get("cifar_stem"))) != size:
        facts["read_at"] = assumed_side(bool(encoder.get("cifar_stem")))
    return facts


# The entries of an exported file's card (export.program_card) info reads, as export
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
    (:func:`results_in`), as before."""
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
    "data_split": str}


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
    read the lower-case splits as this release does (those in capitals it read whole:
    folders.split_read_anew); None where that folder is gone or holds none."""
    from simclr.folders import split_name, split_read_anew

    if "data_split" in ckpt:
        return _entry(ckpt, "data_split", damaged)
    data = ((ckpt.get("config") or {}).get("data") or {}).get("path")
    if "num_files" not in ckpt or not isinstance(data, str):
        return None
    return None if split_read_anew(data) is not None else split_name(data, True)


def checkpoint_facts(path: Path) -> dict[str, Any]:
    """Kind, progress, encoder and (classifiers) classes and stored top-1 of one file."""
    from simclr.pretrained import side_guessed

    ckpt = load_checkpoint(path, mmap=True)  # the entries, not the tensors' data
    damaged: list[str] = []
    facts = {"kind": _entry(ckpt, "kind", damaged), "imported": _entry(ckpt, "imported", damaged),
             **({"size_guessed": guess} if (guess := side_guessed(ckpt)) else {}),
             "step": _entry(ckpt, "step", damaged), "run_id": _entry(ckpt, "run_id", damaged),
             "total_steps": _entry(ckpt, "total_steps", damaged),
             "elapsed_s": _entry(ckpt, "elapsed", damaged),
             # (the session that saved it: how many processes continue the run as it was)
             "processes": _entry(ckpt, "processes", damaged),
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


def _unfinished(partial: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's stopped training (its partial checkpoint): which, how far, and the
    command that started it."""
    return {"step": partial.get("step"), "command": partial.get("argv"),
            "cwd": partial.get("cwd"),
            "training": str(partial.get("kind")).removesuffix("-partial")}


def run_state(folder: Path, checkpoints: list[dict[str, Any]],
              starts: int | None = None, monitored: bool = False) -> dict[str, Any]:
    """finished / preempted / diverged (summary.json), running (folder locked), or
    stopped (neither: killed, or still starting); the last logged step and loss; the
    run's checkpoints that cannot be read (``unreadable_checkpoints``, and
    ``no_readable_checkpoint`` where none of them can: whatever its status, nothing of
    it can be evaluated or resumed). A run
    that has ended and whose folder is held all the same: ended, with ``busy`` the
    holder (an evaluation writing into it: --out RUN). ``starts``: how many times the
    run was started (config.yaml's provenance), which a summary of an earlier session
    is told by; ``monitored``: whether the run has a kNN monitor, whose final measure a
    stop during the last step skips (``final_knn_skipped``: that stop's signal)."""
    summary = read_json(folder / "summary.json") or read_json(folder / SUPERVISED_RESULT)
    unreadable = None if summary else _unreadable_file(folder / "summary.json")
    logged = _last_logged(folder / "metrics.jsonl")
    last = next((c for c in checkpoints if c["name"] == LAST), {})
    saved = [c["step"] for c in checkpoints
             if isinstance(c.get("step"), int) and not c["name"].endswith(PARTIAL_SUFFIX)
             and c.get("kind") in ("pretrain", "supervised", "periodic")]
    state: dict[str, Any] = {"saved_step": max(saved)} if saved else {}
    # The run's own checkpoints that are there but cannot be read: an evaluation or a
    # --resume of the run fails on them, whatever its status says
    damaged = [c["name"] for c in checkpoints
               if "error" in c and is_run_checkpoint(Path(CHECKPOINTS) / c["name"])]
    if damaged:
        state["unreadable_checkpoints"] = damaged
        if not saved:
            state["no_readable_checkpoint"] = True
    if "total_steps" in last:
        state["total_steps"] = last["total_steps"]
    elif saved and not last and (planned := _planned_steps(folder / CHECKPOINTS)):
        state["total_steps"] = planned  # (before last.pt: a supervised run training)
    # A summary behind the log or the checkpoints is an earlier session's: a resumed run
    # since ended without one (killed), so it says nothing of the run now. (A session's
    # summary is written at its end, at its last step: no step of its own is later.)
    # So is one that records an earlier start than the latest: a resumed session killed
    # before it logged or saved a step.
    behind = summary and isinstance(summary.get("steps"), int) and \
        max(logged.get("logged_step") or 0, max(saved, default=0)) > summary["steps"]
    if behind or _earlier_session(summary, starts):
        summary = None
    partial = [c for c in checkpoints if c["name"].endswith(PARTIAL_SUFFIX)]
    if partial and saved:  # a run's folder that an evaluation's stopped training shares
        state["evaluation"] = _unfinished(partial[0])  # (--out RUN): the run's state stays
        started_on = partial[0].get("started_on")
        if started_on is not None and started_on != max(saved):  # the run trained on since:
            state["evaluation"]["stale"] = [started_on, max(saved)]  # its command is refused
        partial = []
    holder = folder_holder(folder)
    if holder and _ended(summary):  # not the run, which has ended: an evaluation's --out RUN
        state["busy"], holder = holder, None
    if holder:
        state["status"] = "running"
    elif partial:  # an evaluation's training, stopped: its own command continues it
        state.update(status="unfinished", **_unfinished(partial[0]))
    elif summary and summary.get("status"):
        state["status"] = summary["status"]
        if summary["status"] in ("diverged", "failed"):  # failed: an error ended it (a full
            # disk at a save); the summary says why, the log alone could not
            state.update(step=summary.get("steps"), reason=summary.get("reason"))
        elif summary["status"] == "preempted":  # its step, which the log may not show
            state["step"] = summary.get("steps")
        elif summary["status"] == "finished" and summary.get("signal") and monitored \
                and "knn_top1" not in summary:  # the final kNN a stop at the last step
            state["final_knn_skipped"] = summary["signal"]  # skipped: --resume takes it
    elif summary and "top1" in summary:  # a supervised run's results: it finished
        state["status"] = "finished"
    elif unreadable:  # the run's outcome cannot be known
        state.update(status="of unknown outcome", reason=f"summary.json: {unreadable}")
    elif last.get("status") == "preempted" and last.get("step") == state.get("saved_step") \
            and not _earlier_session(last, starts):
        state["status"] = "preempted"  # a supervised run's stop: in its checkpoint
    else:
        state["status"] = "stopped"
    state.update(logged)
    at = logged.get("logged_step")  # the step the epoch and time are of
    if state["status"] == "preempted" and summary:  # at its stop: past the last logged window
        for key, name in (("epoch", "epochs"), ("elapsed_s", "elapsed_s")):
            if isinstance(summary.get(name), (int, float)) and not isinstance(summary[name], bool):
                state[key], at = summary[name], summary.get("steps")
    # The further of the log and the checkpoints: each lags the run by its own interval
    # (--log-every, --checkpoint-every)
    known = [s for s in (logged.get("logged_step"), state.get("saved_step")) if s is not None]
    state.setdefault("step", max(known) if known else None)
    _progress_at_step(state, at, last)
    if state["status"] == "running" and "logged_step" not in logged and saved:
        state["step_from"] = "last checkpoint"  # no log (supervised): the run is further on
    return state


def _progress_at_step(state: dict[str, Any], at: int | None, last: dict[str, Any]) -> None:
    """The epochs and time of ``state`` (those of step ``at``, the log's) made those of
    the step it shows, where that is another (a checkpoint's, ahead of the log): the
    epochs by the log's steps per epoch (a line logs step / steps_per_epoch), the time
    the checkpoint's of that step, else none (they read as the step's own)."""
    step, epoch = state.get("step"), state.get("epoch")
    if step is None or at is None or step == at or epoch is None:
        return
    if isinstance(at, int) and at > 0 and epoch > 0:
        state["epoch"] = epoch * step / at
    else:  # (no steps per epoch to tell it by)
        del state["epoch"]
    if last.get("step") == step and isinstance(last.get("elapsed_s"), (int, float)):
        state["elapsed_s"] = last["elapsed_s"]
    else:
        state.pop("elapsed_s", None)


def _earlier_session(record: dict[str, Any] | None, starts: int | None) -> bool:
    """Whether ``record`` (a summary.json, a supervised run's last.pt) was written by an
    earlier session than the run's latest start (``starts``, config.yaml's count); one
    written before records said their session (no ``session``) is not known to be."""
    session = (record or {}).get("session")
    return isinstance(session, int) and not isinstance(session, bool) and \
        isinstance(starts, int) and session < starts


def _planned_steps(folder: Path) -> int | None:
    """The run's length as its newest periodic checkpoint in ``folder`` planned it (a
    time budget refits it), or None (none readable, or recorded)."""
    found = periodic_checkpoints(folder)
    try:
        total = load_checkpoint(found[-1][1], mmap=True).get("total_steps") if found else None
    except SimCLRError:  # (shown as damaged in its own line)
        return None
    return total if isinstance(total, int) else None


def _ended(summary: dict[str, Any] | None) -> bool:
    """Whether a run's summary (summary.json, or a supervised run's results) says it
    ended for good: finished, diverged or failed (a preempted run may be resumed)."""
    if not summary:
        return False
    status = summary.get("status")
    return status in ("finished", "diverged", "failed") or (status is None and "top1" in summary)


def results_in(folder: Path) -> list[dict[str, Any]]:
    """The evaluations' results files in ``folder`` and its sub-folders (one level)."""
    found = []
    for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        for name, what in RESULT_FILES.items():
            data = read_json(sub / name)
            if not data:
                continue
            entry: dict[str, Any] = {"file": str((sub / name).relative_to(folder)), "what": what}
            damaged: list[str] = []
            for key in ("protocol", "top1", "top5", "status"):
                if data.get(key) is None:
                    continue
                # (a hand-edited NaN or 1e999 printed 'nan%' where --json says null)
                if key in ("top1", "top5") and not is_amount(data[key]):
                    damaged.append(key)
                else:
                    entry[key] = data[key]
            if damaged:
                entry["damaged"] = damaged
            source = data.get("source") or {}
            # (a checkpoint that is no path was a traceback, read as one)
            if isinstance(source, dict) and source.get("checkpoint") and \
                    isinstance(source["checkpoint"], str):
                entry["of"] = source["checkpoint"]
                entry["of_step"] = source["step"] if is_amount(source.get("step"), whole=True) \
                    else None
                if isinstance(source.get("run_id"), str):  # (none: from before run ids)
                    entry["of_run"] = source["run_id"]
            if isinstance(source, dict):
                entry["features"] = "random init" if data.get("from_scratch") else \
                    source.get("features")
                entry["layer"] = source.get("layer")
            found.append(entry)
    return found


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
    return out


def _file_id(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


def _started(provenance: Any) -> dict[str, Any] | None:
    """config.yaml's ``provenance`` as info shows it: the first start's command and
    versions, the run's starts, and the latest start's ``--processes``."""
    if not isinstance(provenance, dict):
        return None
    earlier = provenance.get("earlier") if isinstance(provenance.get("earlier"), list) else []
    first = earlier[0] if earlier else provenance
    # (damaged: its command is unknown; recorded_start leaves out what would not print)
    first = recorded_start(first) if isinstance(first, dict) else {}
    argv = first.get("argv")
    processes = _processes_given(recorded_argv(provenance.get("argv")) or [])
    return {"argv": argv, "git_sha": first.get("git_sha"), "git_dirty": first.get("git_dirty"),
            # (the session the run's latest start records: a damaged entry is no start)
            "simclr": first.get("simclr"), "starts": session_number(provenance),
            "processes": processes,
            # (where its command was typed; None: recorded before simclr kept it)
            "cwd": first["cwd"] if isinstance(first.get("cwd"), str) else None}


def _processes_given(argv: list[str]) -> str | None:
    """The ``--processes`` of a command line, as ``--processes N`` or ``--processes=N``
    (the last given, as argparse takes it); None where it gives none (one process, or
    torchrun's)."""
    given = None
    for i, word in enumerate(argv):
        if word == "--processes" and i + 1 < len(argv):
            given = argv[i + 1]
        elif word.startswith("--processes="):
            given = word.partition("=")[2]
    return given


def _last_logged(path: Path) -> dict[str, Any]:
    """The last training line of metrics.jsonl (read from its end: it can be long)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {}
    found: dict[str, Any] = {}
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(row, dict) or not _well_typed(row):
            continue
        if "knn_top1" in row and "monitor_top1" not in found:  # --knn-every's monitor
            found.update(monitor_top1=row["knn_top1"], monitor_step=row.get("step"))
        if "loss" in row:
            return {"logged_step": row.get("step"), "loss": row.get("loss"),
                    "epoch": row.get("epoch"), "elapsed_s": row.get("elapsed"),
                    "planned_steps": row.get("total_steps"), **found}
    return found


def _well_typed(row: dict[str, Any]) -> bool:
    """Whether each number :func:`_last_logged` reads from a line is one (or null): a
    hand-edited or damaged line is skipped as an unparsable one is, not formatted as a
    number or compared with one (a traceback). A bool is no number here."""
    return all(row.get(key) is None or
               (isinstance(row[key], kinds) and not isinstance(row[key], bool))
               for key, kinds in LOGGED_NUMBERS.items())


def _unreadable_file(path: Path) -> str | None:
    """Why a file that is there cannot be read as a JSON object (None: it reads, or is
    absent)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    except ValueError:
        return "not valid JSON"
    except RecursionError:  # (`[[[[...`: a RecursionError's traceback)
        return "not valid JSON (nested too deep)"
    # (valid JSON, but no summary: read_json reads it as none, which read as stopped)
    return None if isinstance(data, dict) else "not an object"


def _read_config(path: Path) -> tuple[dict[Any, Any] | None, dict[str, str]]:
    """A run's config.yaml: its settings that can be read (None: no file, or no mapping
    at all) and what is damaged in it, in a few words by dotted setting ("": the whole
    file). A damaged or hand-edited file is described without what it could not read,
    not read into a traceback."""
    import yaml

    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))  # (as a run reads it back)
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        return None, {"": f"unreadable ({exc.strerror})"}
    except (yaml.YAMLError, UnicodeDecodeError):
        return None, {"": "not readable YAML"}
    if not isinstance(data, dict):
        return None, {"": "empty" if data is None else
                      f"{with_article(type(data).__name__)}, not a mapping of settings"}
    readable: dict[Any, Any] = {}
    damaged: dict[str, str] = {}
    checked = Config()  # (set_path converts each value as a run's config is read back)
    for key, value in data.items():
        section = getattr(checked, str(key), None) if str(key) in FIELDS[""] else None
        if isinstance(section, SECTION_TYPES) and isinstance(value, dict):
            readable[key] = {name: _readable(checked, f"{key}.{name}", item, damaged)
                             for name, item in value.items()}
            readable[key] = {k: v for k, v in readable[key].items() if v is not UNREAD}
        else:  # a run-wide setting, a section that is no mapping, or no setting at all
            readable[key] = _readable(checked, str(key), value, damaged)
    damaged.update(_damaged_starts(data.get("provenance")))
    return {k: v for k, v in readable.items() if v is not UNREAD}, damaged


def _damaged_starts(provenance: Any) -> dict[str, str]:
    """A provenance whose starts record a command line that is none (recorded_argv: not
    a list of words, or YAML aliases expanding it past any command's size), which
    :func:`_started` leaves out; a record, not a setting, so the rest reads on."""
    if not isinstance(provenance, dict):
        return {}
    earlier = provenance.get("earlier") if isinstance(provenance.get("earlier"), list) else []
    starts = [s for s in (provenance, *earlier) if isinstance(s, dict) and "argv" in s]  # type: ignore[misc]  # (a list)
    if all(recorded_argv(s["argv"]) is not None for s in starts):
        return {}
    return {"provenance": "provenance: a start's argv is not a command line, "
                          "so the command that started the run is unknown"}


def _readable(checked: Config, path: str, value: Any, damaged: dict[str, str]) -> Any:
    """``value`` of the dotted setting ``path`` as its declared type, else
    :data:`UNREAD` with why recorded in ``damaged``; a key that is no setting (a fact the
    run recorded, such as its provenance, or another simclr's) as it is."""
    section, _, name = path.rpartition(".")
    if name not in FIELDS[section]:
        return value
    try:
        set_path(checked, path, value, CONFIG_FILE)
    except SimCLRError as exc:
        damaged[path] = str(exc).removeprefix(f"{CONFIG_FILE}: ")
        return UNREAD
    owner = getattr(checked, section) if section else checked
    return getattr(owner, name)

