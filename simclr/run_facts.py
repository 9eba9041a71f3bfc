"""What a run folder's own files say of the run (``simclr info``).

Read from the files simclr writes, nothing modified: config.yaml (its settings as a run
reads them back, what is damaged named, :func:`_read_config`; the starts recorded in its
provenance, :func:`_started`), the run's state from summary.json, metrics.jsonl's last
lines and its checkpoints (finished, preempted, running: its folder locked, stopped...,
:func:`run_state`), and the evaluations' results files here or one folder down
(:func:`results_in`). :mod:`simclr.info` gathers these with each file's facts.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from simclr.checkpoint import (
    CHECKPOINTS,
    LAST,
    PARTIAL_SUFFIX,
    is_run_checkpoint,
    periodic_checkpoints,
)
from simclr.checkpoint_read import load_checkpoint
from simclr.config import SECTIONS, Config
from simclr.config_file import parse_yaml
from simclr.errors import SimCLRError, is_amount, with_article
from simclr.files import folder_holder, read_json
from simclr.resume import recorded_argv, recorded_start, session_number
from simclr.resume_target import SUPERVISED_RESULT
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
            processes = data.get("processes")  # (finetune, linear sgd, supervised)
            if isinstance(processes, int) and not isinstance(processes, bool) and processes > 1:
                entry["processes"] = processes
            source = data.get("source") or {}
            # (a checkpoint that is no path was a traceback, read as one)
            if isinstance(source, dict) and source.get("checkpoint") and \
                    isinstance(source["checkpoint"], str):
                entry["of"] = source["checkpoint"]
                entry["of_step"] = source["step"] if is_amount(source.get("step"), whole=True) \
                    else None
                if isinstance(source.get("run_id"), str):  # (none: from before run ids)
                    entry["of_run"] = source["run_id"]
                if source.get("kind") == "finetune":  # (its step: the pretraining's)
                    entry["of_kind"] = "finetune"
            if isinstance(source, dict):
                entry["features"] = "random init" if data.get("from_scratch") else \
                    source.get("features")
                entry["layer"] = source.get("layer")
            found.append(entry)
    return found


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
