"""``simclr info``: what a run folder or a checkpoint holds, in a few lines.

A run folder is read from the files simclr writes (config.yaml, summary.json,
metrics.jsonl, checkpoints/, the evaluations' JSON files, here or one folder down);
nothing is modified, and a run still training (its folder locked: files.lock_folder) is
reported as running. ``--json`` gives the same facts for scripts.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

from simclr.checkpoint import (
    CHECKPOINTS,
    CLASSIFIER_FILES,
    LAST,
    PARTIAL_SUFFIX,
    checkpoint_files,
    load_checkpoint,
    periodic_checkpoints,
)
from simclr.config import SECTIONS, Config
from simclr.errors import SimCLRError, unreadable_path, with_article
from simclr.files import folder_holder, read_json
from simclr.resume import session_number
from simclr.rundir import SUPERVISED_RESULT
from simclr.settings import parse_yaml, set_path

# The evaluations' results files (simclr.results.RESULTS) and what each measured.
RESULT_FILES = {"knn.json": "kNN", "linear_eval.json": "linear evaluation",
                "finetune.json": "fine-tuning", "transform_probe.json": "transform probe",
                SUPERVISED_RESULT: "supervised training"}
KIND_NAMES = {"pretrain": "SimCLR pretraining", "supervised": "supervised training",
              "linear": "linear classifier", "finetune": "fine-tuned classifier",
              "encoder": "exported encoder"}
TAIL_BYTES = 1 << 16  # the end of metrics.jsonl read for the last logged step
NAMES_SHOWN = 20  # a classifier's class names listed as text; the rest counted (ImageNet: 1000)
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

        return {"path": str(path), "program": read_card(path)}
    if path.is_file():
        return _torchvision_export(path) or {"path": str(path),
                                              "checkpoint": checkpoint_facts(path)}
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
            facts["recipe"]["processes"] = int(processes)
        if not {"data", "data.path"} & damaged.keys():  # (unread: not the digits demo)
            # (a supervised run's --train/--test: its `folders`, before its last.pt has them)
            facts["data"] = (config.get("data") or {}).get("path") or config.get("folders")
        if config.get("init_from"):  # the file and step it started from, where recorded
            facts["init_from"] = config.get("init_from_resolved") or config["init_from"]
    facts["checkpoints"] = _checkpoints(path / CHECKPOINTS)
    last = next((c for c in facts["checkpoints"] if c["name"] == LAST), {})
    if last.get("run_id"):  # what its evaluations' results record (checkpoint.new_run_id)
        facts["run_id"] = last["run_id"]
    if last.get("data"):  # a supervised run keeps its --train/--test there
        facts["data"] = last["data"]
    started = (config or {}).get("provenance")  # (its starts tell an earlier session's summary)
    facts["state"] = run_state(path, facts["checkpoints"],
                               session_number(started) if isinstance(started, dict) else None)
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
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or card.get("format") != "simclr-program" or \
            card.get("program") != "torchvision":
        return None
    state, _ = read_weights_file(path, mmap=True)  # (a damaged file: its own error)
    if not isinstance(state, dict) or "format" in state:
        return None
    facts: dict[str, Any] = {"path": str(path), "program": card}
    encoder, size = card.get("encoder") or {}, (card.get("input") or {}).get("shape", [0])[-1]
    if encoder.get("arch") in ARCHS and assumed_side(bool(encoder.get("cifar_stem"))) != size:
        facts["read_at"] = assumed_side(bool(encoder.get("cifar_stem")))
    return facts


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
    except (OSError, ValueError):
        return []
    if not isinstance(rows, list):
        return []
    return [row["cell"] for row in rows if isinstance(row, dict) and
            isinstance(row.get("cell"), str) and row["cell"] not in runs]


def checkpoint_facts(path: Path) -> dict[str, Any]:
    """Kind, progress, encoder and (classifiers) classes and stored top-1 of one file."""
    ckpt = load_checkpoint(path, mmap=True)  # the entries, not the tensors' data
    facts = {"kind": ckpt.get("kind"), "imported": ckpt.get("imported"),
             **({"size_guessed": True} if ckpt.get("size_guessed") else {}),
             "step": ckpt.get("step"), "run_id": ckpt.get("run_id"),
             "total_steps": ckpt.get("total_steps"), "elapsed_s": ckpt.get("elapsed")}
    if isinstance(ckpt.get("config"), dict):
        facts["encoder"] = encoder_facts(ckpt["config"])
    if isinstance(ckpt.get("data"), dict):
        facts["data"] = ckpt["data"]
    if ckpt.get("features", "pretrained") != "pretrained":  # a random-init baseline's
        facts["fitted_on"] = str(ckpt["features"])  # classifier, or its exported encoder
    origin = ckpt.get("exported_from")  # (simclr export: what the encoder was taken from)
    if isinstance(origin, dict) and isinstance(origin.get("trained"), str):
        from simclr.pretrained import trained_for

        facts["exported_from"] = {k: str(origin[k]) for k in ("kind", "trained", "file")
                                  if origin.get(k) is not None}
        facts["trained"] = trained_for(ckpt)  # (as `simclr embed` records it)
    if ckpt.get("classes") is not None:  # the count, as ever; the names: predict's
        facts["classes"] = len(ckpt["classes"])  # unknown class folders point here
        facts["class_names"] = [str(c) for c in ckpt["classes"]]
    metrics = ckpt.get("metrics") or {}
    if "top1" in metrics:
        facts["top1"] = metrics["top1"]
    if metrics.get("status"):
        facts["status"] = metrics["status"]
    if isinstance(ckpt.get("session"), int):  # which start of its run saved it (supervised)
        facts["session"] = ckpt["session"]
    if isinstance(ckpt.get("argv"), list):  # an unfinished evaluation's training: its command
        facts["argv"] = [str(a) for a in ckpt["argv"]]
        facts["cwd"] = ckpt.get("cwd") if isinstance(ckpt.get("cwd"), str) else None
    source = (ckpt.get("settings") or {}).get("source")  # (unfinished: [checkpoint, step, ..])
    if isinstance(source, list) and len(source) > 1 and isinstance(source[1], int):
        facts["started_on"] = source[1]  # the step of the encoder it trains on
    if isinstance(metrics.get("steps"), int) and metrics["steps"] > (facts.get("step") or 0):
        facts["step"] = metrics["steps"]  # (an SGD linear classifier records its steps here)
    return {k: v for k, v in facts.items() if v is not None}


def encoder_facts(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture, width, image size and head of a saved config."""
    model, augment = config.get("model") or {}, config.get("augment") or {}
    return {"arch": model.get("arch"), "width": model.get("width"),
            "image_size": augment.get("size"), "eval_size": augment.get("eval_size"),
            "head": model.get("head"), "head_out_dim": model.get("head_out_dim")}


def recipe_facts(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a reader compares runs by (Sec. B of the paper: batch, lr, tau)."""
    optim, loss = config.get("optim") or {}, config.get("loss") or {}
    return {"batch_size": config.get("batch_size"), "optimizer": optim.get("name"),
            "sync_bn": (config.get("model") or {}).get("sync_bn"),
            "lr": optim.get("lr"), "lr_scaling": optim.get("lr_scaling"),
            "temperature": loss.get("temperature"), "loss": loss.get("name"),
            "margin": loss.get("margin"), "semi_hard": loss.get("semi_hard"),
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
              starts: int | None = None) -> dict[str, Any]:
    """finished / preempted / diverged (summary.json), running (folder locked), or
    stopped (neither: killed, or still starting); the last logged step and loss. A run
    that has ended and whose folder is held all the same: ended, with ``busy`` the
    holder (an evaluation writing into it: --out RUN). ``starts``: how many times the
    run was started (config.yaml's provenance), which a summary of an earlier session
    is told by."""
    summary = read_json(folder / "summary.json") or read_json(folder / SUPERVISED_RESULT)
    unreadable = None if summary else _unreadable_file(folder / "summary.json")
    logged = _last_logged(folder / "metrics.jsonl")
    last = next((c for c in checkpoints if c["name"] == LAST), {})
    saved = [c["step"] for c in checkpoints
             if isinstance(c.get("step"), int) and not c["name"].endswith(PARTIAL_SUFFIX)
             and c.get("kind") in ("pretrain", "supervised", "periodic")]
    state: dict[str, Any] = {"saved_step": max(saved)} if saved else {}
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
    if state["status"] == "preempted" and summary:  # at its stop: past the last logged window
        for key, name in (("epoch", "epochs"), ("elapsed_s", "elapsed_s")):
            if isinstance(summary.get(name), (int, float)) and not isinstance(summary[name], bool):
                state[key] = summary[name]
    # The further of the log and the checkpoints: each lags the run by its own interval
    # (--log-every, --checkpoint-every)
    known = [s for s in (logged.get("logged_step"), state.get("saved_step")) if s is not None]
    state.setdefault("step", max(known) if known else None)
    if state["status"] == "running" and "logged_step" not in logged and saved:
        state["step_from"] = "last checkpoint"  # no log (supervised): the run is further on
    return state


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
            entry = {"file": str((sub / name).relative_to(folder)), "what": what}
            for key in ("protocol", "top1", "top5", "status"):
                if data.get(key) is not None:
                    entry[key] = data[key]
            source = data.get("source") or {}
            if isinstance(source, dict) and source.get("checkpoint"):
                entry["of"] = source["checkpoint"]
                entry["of_step"] = source.get("step")
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
    out = []
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
            from simclr.pretrained import classifier_source, why_stale

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
    if not isinstance(provenance, dict):
        return None
    earlier = provenance.get("earlier") if isinstance(provenance.get("earlier"), list) else []
    first = earlier[0] if earlier else provenance
    first = first if isinstance(first, dict) else {}  # (damaged: its command is unknown)
    argv = first.get("argv") if isinstance(first.get("argv"), list) else None
    latest = [str(a) for a in provenance.get("argv") or []] \
        if isinstance(provenance.get("argv"), list) else []
    processes = latest[latest.index("--processes") + 1] \
        if "--processes" in latest[:-1] else None  # (a --processes=N form is not read)
    return {"argv": argv, "git_sha": first.get("git_sha"), "git_dirty": first.get("git_dirty"),
            "simclr": first.get("simclr"), "starts": len(earlier) + 1,
            "processes": processes}


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
        except ValueError:
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
    """Why a file that is there cannot be read as JSON (None: it reads, or is absent)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    except ValueError:
        return "not valid JSON"
    return None


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
    return {k: v for k, v in readable.items() if v is not UNREAD}, damaged


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


# ------------------------------------------------------------------------ as text


def render(facts: dict[str, Any]) -> str:
    """The facts of :func:`describe` as a few lines for a person."""
    if "checkpoint" in facts:
        return f"{facts['path']}: {_checkpoint_line(facts['checkpoint'])}" + \
            "".join(f"\n  {line}" for line in _class_names(facts["checkpoint"]))
    if "program" in facts:
        read_at = f"; simclr reads the file at {facts['read_at']} px: give --image-size " \
            f"{facts['program']['encoder'].get('image_size')}" if facts.get("read_at") else ""
        return f"{facts['path']}: {_program_line(facts['program'])}{read_at}"
    if "busy" in facts:
        return f"{facts['path']}: {_run_line(facts)}"
    if "runs" in facts:
        count, pending = len(facts["runs"]), facts.get("pending", [])
        waiting = f"; {len(pending)} sweep cell(s) not started" if pending else ""
        return "\n".join([f"{facts['path']}: {count} run{'s' * (count != 1)}{waiting}"] + [
            f"  {Path(run['path']).name}: {_run_line(run)}"
            + "".join(
                f"; {r['what']} top-1 {100 * r['top1']:.2f}%{_source_note(r, run)}"
                for r in run.get("results", []) if isinstance(r.get("top1"), (int, float)))
            for run in facts["runs"]] + [f"  {cell}: not started" for cell in pending])
    lines = [f"{facts['path']}: {_head_line(facts)}"]
    if facts.get("config_damaged"):
        lines.append(f"  {CONFIG_FILE} is damaged, what it could not read is left out: "
                     f"{'; '.join(facts['config_damaged'])}")
    kind = _kind(facts)
    contrastive = kind != "supervised"  # its config's head and loss play no part
    if facts.get("encoder"):
        lines.append(f"  encoder: {_encoder(facts['encoder'], head=contrastive)}")
    recipe = _recipe(facts["recipe"], loss=contrastive) if facts.get("recipe") else ""
    if recipe:  # (none: a damaged config.yaml gave none of its settings)
        lines.append(f"  recipe: {recipe}")
    if "data" in facts:
        data = facts["data"] or _unnamed_data(kind)
        if isinstance(data, dict):
            data = ", ".join(f"{k} {v}" for k, v in data.items() if v)
        lines.append(f"  data: {data}")
    if facts.get("init_from"):
        lines.append(f"  initial weights: {facts['init_from']}")
    started = facts.get("provenance")
    if started and started.get("argv"):
        command = shlex.join(["simclr", *[str(a) for a in started["argv"][1:]]])
        again = f"; {started['starts']} starts" if started["starts"] > 1 else ""
        lines.append(f"  started by: {command}{_versions(started)}{again}")
    if facts.get("run_id"):  # what the results of its evaluations name it by
        lines.append(f"  run id: {facts['run_id']}")
    for c in facts["checkpoints"]:
        lines.append(f"  {CHECKPOINTS}/{c['name']}: {_checkpoint_line(c)}")
        lines += [f"    {line}" for line in _class_names(c)]
    if facts["state"].get("evaluation"):  # one stopped in this run's folder (--out RUN)
        lines.append(f"  {_unfinished_line(facts['state']['evaluation'])}")
    if isinstance(facts["state"].get("monitor_top1"), (int, float)):
        lines.append(f"  kNN monitor: top-1 {100 * facts['state']['monitor_top1']:.2f}% at "
                     f"step {facts['state']['monitor_step']}")
    if facts["state"]["status"] in ("preempted", "stopped", "failed") and \
            kind in ("pretrain", "supervised") and facts["state"].get("saved_step"):
        lines.append("  continue with: " + _continue_with(facts, kind, started or {}))
    for r in facts["results"]:
        what = r["what"] + (f" ({r['protocol']})" if r.get("protocol") else "")
        top = (f"top-1 {100 * r['top1']:.2f}%" if isinstance(r.get("top1"), (int, float))
               else r.get("status", "no top-1"))
        lines.append(f"  {r['file']}: {what}, {top}{_source_note(r, facts)}")
    return "\n".join(lines)


def _versions(started: dict[str, Any]) -> str:
    """' (simclr 0.1.0, git 1a2b3c4)' of a run's start, each where recorded (no git: a
    null git_sha, which read 'git None'), and whether its code had uncommitted changes."""
    parts = [f"{name} {str(started[key])[:width]}" for name, key, width in (
        ("simclr", "simclr", None), ("git", "git_sha", 7)) if started.get(key)]
    if started.get("git_sha") and started.get("git_dirty") is True:
        parts[-1] += " with uncommitted changes"
    return f" ({', '.join(parts)})" if parts else ""


def _continue_with(facts: dict[str, Any], kind: str, started: dict[str, Any]) -> str:
    """The command that continues a stopped run: a sweep's cell by its sweep (which
    evaluates it and goes on to the next cells), any other run by ``--resume``."""
    from simclr.launch import again

    argv = [str(a) for a in started.get("argv") or []]
    if argv[1:2] == ["sweep"]:  # the cell trained in the sweep's own process
        return shlex.join(["simclr", *argv[1:]]) + " (the sweep that started it)"
    resume = again(f"simclr {kind} --resume {shlex.quote(facts['path'])}",
                   started.get("processes"))
    if "--sweep-cell" in argv:  # launched by a sweep as processes of its own
        return (f"the sweep that started it (in {Path(facts['path']).parent}), or {resume} "
                "for this cell alone")
    return resume


def _source_note(result: dict[str, Any], facts: dict[str, Any]) -> str:
    """What a result was measured on where it is not this run's encoder as it is now:
    a baseline (random init, raw pixels), another layer than h, another run's
    checkpoint, or an earlier step of this one; in a folder of results alone (no run's
    own), the checkpoint, step and run each came from."""
    notes = []
    if result.get("features") not in (None, "pretrained"):
        notes.append(str(result["features"]))
    if result.get("layer") not in (None, "h"):
        notes.append(f"layer {result['layer']}")
    of = result.get("of")
    steps = [c.get("step") for c in facts.get("checkpoints", []) if c.get("name") == LAST]
    if of and facts.get("encoder") and not _of_this_run(result, facts):
        notes.append(f"of another run's checkpoint, {of}")
    elif of and steps and result.get("of_step") not in (None, steps[0]):
        notes.append(f"of step {result['of_step']}; the run is now at step {steps[0]}")
    elif of and not facts.get("encoder") and not steps:  # no run here to be of
        run = f", run {result['of_run']}" if result.get("of_run") else ""
        notes.append(f"of {of}, step {result.get('of_step')}{run}")
    return f" ({'; '.join(notes)})" if notes else ""


def _of_this_run(result: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether the checkpoint a result was measured on is this run's: by the run id both
    record (a copy of the run folder shares it, and its weights), else (either written
    before run ids) by the checkpoint's path: inside the run folder, or moved with it."""
    if result.get("of_run") and facts.get("run_id"):
        return result["of_run"] == facts["run_id"]
    run = Path(facts["path"]).resolve()
    return Path(result["of"]).is_relative_to(run) or _moved_here(Path(result["of"]), run)


def _moved_here(of: Path, run: Path) -> bool:
    """Whether the checkpoint ``of`` an evaluation names is ``run``'s own, moved with it
    (`mv` of the run folder): gone from its old place, and ``run`` holds one of its name."""
    return (of.parent.name == CHECKPOINTS and not of.exists()
            and (run / CHECKPOINTS / of.name).is_file())


def _unnamed_data(kind: str | None) -> str:
    """What a run trained on that names no folder: a pretraining without --data, the
    digits demo; a supervised run (always given folders) records none where an earlier
    simclr wrote it, or where it was started from Python."""
    if kind == "supervised":
        return "not recorded (written by an earlier simclr, or started from Python)"
    return "the digits demo (scikit-learn)"


def _kind(facts: dict[str, Any]) -> str | None:
    """The kind of a run folder's model: its last.pt's; before the first checkpoint, a
    config.yaml recording the precision it resolved to is a pretraining's (a supervised
    run's records its provenance too, since 2026-12-05, but not that)."""
    kind = next((c.get("kind") for c in facts["checkpoints"] if c["name"] == LAST), None)
    if kind is None and facts.get("recipe"):
        kind = "pretrain" if facts["recipe"].get("precision") else "supervised"
    return kind


def _unfinished_line(training: dict[str, Any]) -> str:
    """'fine-tuning, unfinished at step N; continue with: ...' (see :func:`_unfinished`)."""
    what = {"finetune": "fine-tuning", "linear": "linear evaluation (sgd)"}
    argv, cwd = training.get("command") or [], training.get("cwd")
    # From where it was typed: its paths may be relative (it failed from anywhere else)
    where = f"cd {shlex.quote(cwd)} && " if isinstance(cwd, str) and cwd != os.getcwd() else ""
    again = (f"; continue with: {where}{shlex.join(['simclr', *argv[1:]])}" if len(argv) > 1
             else " (the command that started it continues it)")
    if training.get("stale"):  # (its command would be refused: other weights now)
        was, now = training["stale"]
        again = (f", of step {was} of this run, which has trained on to step {now}: its "
                 "command is refused now; give it --overwrite to start over on this step")
    return (f"{what.get(training['training'], training['training'])}, unfinished at step "
            f"{training.get('step')}{again}")


def _head_line(facts: dict[str, Any]) -> str:
    """What a run is, how far it went and its last loss."""
    state = facts["state"]
    kind = _kind(facts)
    if kind is None and state.get("training"):
        return _unfinished_line(state)
    if kind is None and facts["results"]:  # an evaluation's --out: its results
        whats = sorted({r["what"] for r in facts["results"]})
        # (no training of its own left unfinished)
        done = state["status"] in ("finished", "stopped")
        return f"results of {', '.join(whats)}" + ("" if done else f", {state['status']}") + \
            (f" at step {state['step']}" if not done and state.get("step") is not None else "")
    head = f"{KIND_NAMES.get(kind, 'a run')}, {state['status']}"
    if state.get("step") is not None:
        head += f"; {state['step_from']}" if state.get("step_from") else ""
        head += f" at step {state['step']}"
        if state.get("planned_steps") or state.get("total_steps"):
            head += f" of {state.get('planned_steps') or state.get('total_steps')}"
    if state.get("reason"):
        head += f" ({state['reason']})"
    if state.get("epoch") is not None:
        head += f" ({state['epoch']:.2f} epochs, {_duration(state.get('elapsed_s'))})"
    if state.get("loss") is not None:
        head += f"; last loss {state['loss']:.4g} (step {state['logged_step']})"
    if state.get("busy"):
        head += f"; a simclr command (an evaluation) is running in its folder now ({state['busy']})"
    return head + _saved_note(state)


def _run_line(run: dict[str, Any]) -> str:
    """A run of a folder of runs on one line: its head line, or why there is none."""
    if "error" in run:
        return run["error"]
    if "busy" in run:
        return f"a simclr command is running in it ({run['busy']}); nothing saved yet"
    return _head_line(run)


def _saved_note(state: dict[str, Any]) -> str:
    """Where the checkpoints lag the run: the last one's step, and for a run that ended
    without a record (killed, or older than the failure record) at its planned last step
    without its final checkpoint, that it was not written."""
    saved, step, status = state.get("saved_step"), state.get("step"), state["status"]
    # (preempted: its checkpoint at that step, unless it cannot be read since)
    if status not in ("running", "stopped", "failed", "preempted") or step is None or \
            saved == step:
        return ""
    note = ""
    planned = state.get("planned_steps") or state.get("total_steps")
    if status == "stopped" and step == planned:
        note = "; its final checkpoint was not written"
    if saved is not None:
        return f"{note}; last checkpoint at step {saved}"
    # (a failure's reason already says whether an earlier checkpoint exists)
    return note if status == "running" or state.get("reason") else f"{note}; no checkpoint exists"


def _checkpoint_line(c: dict[str, Any]) -> str:
    if "error" in c:
        return c["error"]
    if c.get("kind") == "periodic":
        return f"periodic, step {c['step']}"
    kind = str(c.get("kind") or "").removesuffix("-partial")  # (linear's saves say so)
    parts = [c.get("imported") or KIND_NAMES.get(kind, f"{kind or 'unknown'} checkpoint")]
    if str(c.get("name", "")).endswith(PARTIAL_SUFFIX):  # not a result: its command goes on
        parts[0] = f"unfinished {parts[0]}"
    origin = _exported_origin(c)
    if origin is not None:  # (in place of its pretraining step alone)
        parts.append(origin)
    elif c.get("step") and kind in ("linear", "finetune"):
        parts.append(f"{c['step']} training step{'s' * (c['step'] != 1)}")  # (L-BFGS: none)
    elif c.get("step") is not None and kind not in ("linear", "finetune"):
        parts.append(f"step {c['step']}")
    if c.get("fitted_on_step") is not None and not c.get("stale"):
        parts.append(f"fitted on the encoder of step {c['fitted_on_step']}")
    elif c.get("fitted_on") and origin is None:
        parts.append(_baseline_note(c))
    if c.get("classes") is not None:
        parts.append(f"{c['classes']} classes")
    if c.get("encoder"):  # the head only where it is kept (a classifier has its own)
        parts.append(_encoder(c["encoder"], head=c.get("kind") == "pretrain") +
                     (" assumed (no size recorded; --image-size)" if c.get("size_guessed")
                      else ""))
    if c.get("top1") is not None:
        parts.append(f"top-1 {100 * c['top1']:.2f}%")
    stale = f"; it {c['stale']} (predict and export refuse the run folder)" \
        if c.get("stale") else ""
    return ", ".join(parts) + stale


def _exported_origin(c: dict[str, Any]) -> str | None:
    """What an exported encoder's weights are, where the file records what it was taken
    from: 'finetune model, step 3 fine-tuned 1 step', 'supervised model, step 3', the
    pretraining's 'step 3' (it read as 'step 3' alone for all of them). None where it
    records nothing (exported before the record), or for the random-init encoder of a
    linear classifier, whose baseline note says it all."""
    trained = c.get("trained")
    if c.get("kind") != "encoder" or not isinstance(trained, str):
        return None
    if c.get("fitted_on"):  # the baseline: fine-tuned on from the random init, or not
        return None if trained == c["fitted_on"] else f"{trained} (the baseline)"
    return trained


def _baseline_note(c: dict[str, Any]) -> str:
    """A classifier of the baseline ('fitted on the random init encoder'); an exported
    encoder keeps its classifier's record: it is no pretrained encoder either."""
    note = f"fitted on the {c['fitted_on']} encoder (the baseline)"
    return f"from a classifier {note}" if c.get("kind") == "encoder" else note


def _class_names(c: dict[str, Any]) -> list[str]:
    """A classifier's class names as a line ('classes: a, b, ...'; none: no line), the
    first :data:`NAMES_SHOWN` of a long list: the names predict compares folders with."""
    names = c.get("class_names") or []
    if not names:
        return []
    more = f" …and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return [f"classes: {', '.join(names[:NAMES_SHOWN])}{more}"]


def _program_line(card: dict[str, Any]) -> str:
    """An exported program's card in a line: what it computes, of which encoder."""
    out, size = card.get("output") or {}, (card.get("input") or {}).get("shape", [0])[-1]
    dim = (out.get("shape") or [None, "?"])[-1]
    what = "exported weights" if card.get("program") == "torchvision" else "exported program"
    return (f"{what} ({card.get('program')}): {out.get('name')} ({dim}-d) of "
            f"{_encoder({**(card.get('encoder') or {}), 'image_size': size}, head=False)} "
            f"input, from {card.get('checkpoint')}{_program_origin(card)}"
            f"{_unfinished_card(card.get('unfinished'))}")


def _unfinished_card(at: Any) -> str:
    """'; an unfinished training (step 4 of 9)' where a card records that its weights
    are a stopped training's (export notes it as predict does)."""
    if not isinstance(at, dict):
        return ""
    from simclr.pretrained import unfinished_training

    return f"; {unfinished_training(at.get('step'), at.get('total_steps'))}"


def _program_origin(card: dict[str, Any]) -> str:
    """', step 7' of a program's card; where it records them, the kind of checkpoint it
    was taken from but a pretraining's (' (fine-tuned classifier)') and what its weights
    are ('step 3 fine-tuned 1 step', 'random init (the baseline)'), which the step alone
    did not say."""
    trained = card.get("trained")
    if not isinstance(trained, str):  # (a card written before these were recorded)
        return f", step {card['step']}" if card.get("step") is not None else ""
    kind = card.get("kind")
    what = None if kind in (None, "pretrain") or card.get("imported") else \
        KIND_NAMES.get(kind, str(kind))
    baseline = " (the baseline)" if card.get("features") else ""
    return f"{f' ({what})' if what else ''}, {trained}{baseline}"


def _encoder(e: dict[str, Any], head: bool = True) -> str:
    width = f" x{e['width']:g}" if isinstance(e.get("width"), (int, float)) else ""
    side = e.get("image_size")
    text = f"{e.get('arch') or 'network not recorded'}{width}, " + \
        (f"{side} px" if side else "image side not recorded")
    if side and e.get("eval_size") not in (None, side):
        text += f" (evaluated at {e['eval_size']})"
    if head and e.get("head"):
        text += f", head {e['head']}"
        if e["head"] != "none" and e.get("head_out_dim"):
            text += f" -> {e['head_out_dim']}"
    return text


def _recipe(r: dict[str, Any], loss: bool = True) -> str:
    length = (f"{_duration(r['time_budget'])} budget" if r.get("time_budget")
              else f"{r['epochs']:g} epoch{'' if r['epochs'] == 1 else 's'}"
              if isinstance(r.get("epochs"), (int, float)) else "")
    if r.get("max_steps"):  # a cap on the schedule: at most that many steps
        length += f"{', ' if length else ''}at most {r['max_steps']} steps"
    batch = f"batch {r['batch_size']}" if r.get("batch_size") is not None else ""
    if batch and isinstance(r.get("processes"), int) and r["processes"] > 1:
        batch += (f" over {r['processes']} processes ("
                  f"{'per-process' if r.get('sync_bn') is False else 'global'} BatchNorm)")
    # (a setting a damaged config.yaml did not give is left out, not written 'None')
    optim = " ".join(x for x in (
        str(r.get("optimizer") or "").upper(),
        f"lr {_number(r['lr'])}" if r.get("lr") is not None else "",
        f"({r['lr_scaling']} scaling)" if r.get("lr_scaling") else "") if x)
    return ", ".join(x for x in (
        batch, optim, _loss(r) if loss else "", str(r.get("precision") or ""),
        f"seed {r['seed']}" if r.get("seed") is not None else "", length) if x)


def _loss(r: dict[str, Any]) -> str:
    """The loss and the settings that act on it (loss.contrastive_loss): NT-Xent's and
    NT-Logistic's temperature, the margin triplet's margin (each inert under the other
    losses: inert.py), and where set, semi-hard negatives, z not normalised, a weight."""
    if not r.get("loss"):
        return ""
    name, value = ("margin", r.get("margin")) if r["loss"] == "margin_triplet" else \
        ("tau", r.get("temperature"))
    notes = ", ".join(x for x in (
        "semi-hard negatives" if r.get("semi_hard") else "",
        "z not normalised" if r.get("normalize") is False else "",
        f"weight {_number(r['loss_weight'])}" if r.get("loss_weight") not in (None, 1) else "")
        if x)
    text = r["loss"] + (f" {name} {_number(value)}" if value is not None else "")
    return text + (f" ({notes})" if notes else "")


def _number(value: Any) -> str:
    """A setting's number as :g writes it (lr 0.0883883, not 0.08838834764831843)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else str(value)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
