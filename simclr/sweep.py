"""Grids of pretraining runs, each evaluated: the paper's ablations as one command.

``simclr sweep --set temperature=0.05,0.1,0.5,1 --set normalize=true,false ...`` runs
one pretraining per cell of the Cartesian product (Table 5: temperature x L2
normalisation; Table 1: ``color-strength``; Fig. 9: ``batch-size`` x ``epochs``; Fig. 7:
``arch`` x ``width``; Fig. 8: ``head`` x ``head-out-dim``; Table 4: ``loss``), evaluates
each encoder (kNN or linear, on h) and prints one table (:mod:`simclr.sweep_report`;
Fig. 5's square for ``--pairs``). Every cell is a normal run
directory under ``--out``: a finished cell is reused, an interrupted one resumed, so the
same command continues a sweep after a preemption (which earlier runs a cell takes, and
what is refused or noted about them: :mod:`simclr.sweep_reuse`). Every cell's config is
built and checked before the first run starts (:mod:`simclr.sweep_checks`). The grid itself
(its axes, cells and their folder names) is :mod:`simclr.sweep_grid`; this module runs it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from simclr.config import Config
from simclr.config_file import save_yaml
from simclr.errors import DivergedError, SimCLRError, is_amount, printable, user_message
from simclr.files import (
    discard,
    lock_folder,
    read_json,
    set_aside,
    write_json,
    written,
)
from simclr.recipe import flatten
from simclr.results import check_config_caches, check_not_inside, check_out_folder, make_folder
from simclr.settings import build_config, flag_of
from simclr.sweep_checks import (
    FolderLooks,
    check_batches,
    check_cell_inputs,
    check_cells_differ,
    check_settings_act,
    per_cell,
)
from simclr.sweep_grid import Axis, Cell, plan_cells
from simclr.sweep_report import (
    NOT_EVALUATED,
    csv_text,
    render,
    result_of,
    scored_by_line,
)
from simclr.sweep_reuse import (
    RUNTIME_ONLY,
    SUMMARY,
    _check_same_settings,
    _comparable,
    _find_earlier_runs,
    _finished,
    _other_images_notes,
    _saved_settings,
)

SUMMARY_FILES = ("sweep.json", "sweep.md", "sweep.csv")  # the sweep's own, per grid


def _pretrain(cfg: Any, run_dir: Path, cell: str, processes: int | None) -> dict[str, Any]:
    """Reuse a finished run, resume an interrupted one, or start it (in this process, or
    as ``processes`` processes: :func:`_launched`); the run found in ``run_dir`` is one of
    ``cfg``'s settings (:func:`_check_same_settings`)."""
    from simclr import train
    from simclr.checkpoint import latest_checkpoint
    from simclr.rundir import reused_summary

    done = _finished(run_dir)  # (its settings checked by run_sweep, before any cell)
    if done is not None:
        return reused_summary(done)
    resume = latest_checkpoint(run_dir / "checkpoints") is not None
    if processes and processes > 1:
        return _launched(cfg, run_dir, cell, processes, resume)
    try:
        return train.pretrain(cfg, resume=resume)
    except DivergedError as exc:  # a result of these settings: recorded, the sweep goes on
        print(printable(f"cell {cell}: {exc}"), flush=True)
        return {"status": "diverged", "reason": str(exc), "steps": exc.step}


def _launched(cfg: Any, run_dir: Path, cell: str, processes: int,
              resume: bool) -> dict[str, Any]:
    """A cell trained by ``simclr pretrain --processes N`` (one process per GPU), its
    settings passed as a config file beside the cell; its summary as the run wrote it
    (finished, preempted or diverged). Any other failure stops the sweep."""
    from simclr.interrupts import STOP_SIGNALS, Terminated
    from simclr.launch import run
    from simclr.runtime import SWEEP_COMMAND_ENV, command_line

    spec = run_dir.parent / f".{run_dir.name}.yaml"  # hidden: not a cell of the grid
    if resume:
        argv = ["pretrain", "--resume", str(run_dir), *runtime_flags(cfg, run_dir)]
    else:
        spec.parent.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg.to_dict(), spec)
        argv = ["pretrain", "--config", str(spec)]
    swept = command_line()  # (what the cell's processes record as their command)
    before = os.environ.get(SWEEP_COMMAND_ENV)
    if swept:
        os.environ[SWEEP_COMMAND_ENV] = json.dumps(swept)
    try:
        status = run([*argv, "--sweep-cell", "--processes", str(processes)], processes,
                     device=cfg.device)
    finally:  # read by the first start alone: the run keeps its own config.yaml
        discard(spec)
        if before is None:
            os.environ.pop(SWEEP_COMMAND_ENV, None)
        else:
            os.environ[SWEEP_COMMAND_ENV] = before
    summary = read_json(run_dir / SUMMARY) or {}
    if status in (0, 75) or summary.get("status") == "diverged":
        return summary
    # Ended by the signal forwarded to them outside training (the launcher said so):
    # the sweep stops as they did, not as a failed cell.
    if status - 128 in STOP_SIGNALS:
        raise Terminated(status - 128)
    if status == 128 + signal.SIGINT:
        raise KeyboardInterrupt
    raise SimCLRError(f"cell {cell}: `simclr {' '.join(argv)} --processes {processes}` "
                      f"failed (exit status {status}); the same sweep command continues")


def runtime_flags(cfg: Config, run_dir: Path) -> list[str]:
    """``simclr pretrain`` flags for the runtime settings (:data:`RUNTIME_ONLY`) in which
    ``cfg`` differs from the cell's saved run: a rerun may change them, as ``pretrain
    --resume`` may, and a cell resumed by other processes hears of them only so."""
    saved = flatten(_saved_settings(run_dir) or {})
    wanted = flatten(cfg.to_dict())
    argv: list[str] = []
    for path in sorted(RUNTIME_ONLY - {"out"}):
        value = wanted[path]
        if path in saved and _comparable(path, saved[path]) == _comparable(path, value):
            continue
        flag = flag_of(path)
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            argv += [f"--{flag}", "none" if value is None else str(value)]
    return argv


def run_sweep(
    axes: list[Axis], out: str | Path, *, preset: str | None, config: str | None,
    flags: dict[str, Any], evaluate: Any, processes: int | None = None,
    scores: str | None = None, recorded: Any = None,
    evaluated_on: dict[str, str] | None = None, caches: dict[str, str | None] | None = None,
    folders: dict[str, str | None] | None = None, folders_device: str | None = None,
    check_configs: Callable[[list[Cell], list[Config]], None] | None = None,
    last_check: Callable[[list[Config]], None] | None = None,
) -> tuple[list[Cell], str]:
    """Run every cell; ``evaluate(run_dir) -> dict`` scores a finished one (None: skip).
    ``processes``: each cell trained by that many processes (``--processes``).
    ``scores``: the protocol ``evaluate`` scores by ('knn': knn_top1, knn_z_top1, ...):
    an earlier summary holding other top-1 columns (or any, without ``evaluate``) is kept
    as ``sweep.previous-K.*`` rather than rewritten without them.
    ``recorded(run_dir) -> dict``: a finished cell's scores on record, shown in the table
    written before the first cell runs (nothing computed).
    ``evaluated_on``: what ``evaluate`` scores on (protocol, folders; None: unknown),
    recorded in each scored row of sweep.json; an earlier summary scored otherwise is
    kept as ``sweep.previous-K.*`` too, its top-1 columns being of the same names.
    ``caches``: other cache folders the sweep writes (flag -> folder: its evaluation's
    --eval-cache-dir), refused inside a cell's data as its --cache-dir is.
    ``folders``: other folders the sweep reads (flag -> folder: its evaluation's
    --eval-train and --eval-test), no cache folder of which may lie inside them: cell 0's
    cache there made a class its scoring failed on, once it had trained;
    ``folders_device``: the device they are decoded on (the scoring's; None: each cell's).
    ``check_configs(cells, configs)``: the caller's look at the cells' resolved settings
    before any trains (the evaluation folders, read as the cells read theirs);
    ``last_check(configs)``: one that may decode for long (--strict), once every other
    check has passed.

    Returns the cells (with their results) and the markdown table, also written to
    ``out/sweep.md``, ``out/sweep.csv`` and ``out/sweep.json``. Stops early, leaving the
    sweep resumable, when a run is preempted (its summary's status is 'preempted'), or
    stopped at its last step (finished, its signal on record: the cell's ``stopped_by``).
    """
    root = Path(out).expanduser()
    check_out_folder(root)  # before any cell: a sweep's summary must be writable
    held_by = next((name for name in ("config.yaml", "checkpoints") if (root / name).exists()),
                   None)
    if held_by:  # its cells would be taken for that run's evaluations (`simclr info`)
        raise SimCLRError(f"--out {root} is the folder of a run ({held_by}); give the sweep "
                          "a folder of its own")
    from simclr.rundir import run_above

    run = run_above(root)
    if run is not None:  # (in its checkpoints/, or a folder its evaluations read as theirs)
        raise SimCLRError(f"--out {root} lies inside the run {run}; give the sweep a folder "
                          "of its own")
    cells, configs = cell_configs(axes, root, preset, config, flags, (folders or {}).values())
    for cell in cells:  # (a file in a cell's place stopped the sweep at that cell)
        check_out_folder(cell.run_dir, root)
    if check_configs is not None:
        check_configs(cells, configs)
    for cfg in configs:  # the sweep's own files: not inside, or over, a folder it reads
        check_not_inside(root, {"--data": cfg.data.path, "--knn-train": cfg.knn_train,
                                "--knn-test": cfg.knn_test}, "sweep")
        # (a data axis, a config file: no flag checked)
        check_config_caches(cfg, caches, folders)
    looks = FolderLooks()  # (each folder listed and probed once, for all the checks)
    sizes = check_batches(cells, configs, looks)
    read: dict[str, Any] = {}  # (each --init-from file read once for all the cells)
    resolved = per_cell(cells, lambda k: check_cell_inputs(configs[k], processes, read))
    read.clear()  # (the weights: not held while the cells train)
    # (--eval-test is read as a test split: the test/ of a folder holding two)
    splits = [(spec, flag != "--eval-test") for flag, spec in (folders or {}).items()]
    check_cells_differ(cells, configs, resolved, sizes, splits, folders_device, looks,
                       processes)
    reused = _find_earlier_runs(root, cells, configs)
    # A cell's earlier run of other settings is refused now, before the earlier summary
    # is set aside or rewritten: a refused command leaves --out as it found it.
    for cell, cfg in zip(cells, configs, strict=True):
        kept = _check_same_settings(cfg, cell.run_dir, cell.name)
        reused += [kept] if kept else []
    if last_check is not None:  # (it may decode for long, the checks above need not)
        last_check(configs)
    reused += _other_images_notes(cells, configs, sizes, looks)
    make_folder(root)  # (through a link to a missing folder: its target)
    # Held for the whole sweep: a second sweep into --out is refused before it sets the
    # summary aside or rewrites it as pending under the first one.
    held = lock_folder(root)
    try:
        for note in reused:
            print(note, file=sys.stderr)
        evaluated_on = None if evaluate is None else evaluated_on
        _keep_other_grid(root, {c.name for c in cells},
                         "" if evaluate is None else scores, evaluated_on)
        return _run_cells(root, axes, cells, configs, evaluate, processes,
                          None if evaluate is None else recorded, evaluated_on)
    finally:
        if held is not None:
            held.close()


def _run_cells(root: Path, axes: list[Axis], cells: list[Cell], configs: list[Config],
               evaluate: Any, processes: int | None, recorded: Any = None,
               evaluated_on: dict[str, str] | None = None) -> tuple[list[Cell], str]:
    """Train (or reuse) and score each cell in turn, the summary rewritten after each;
    a preempted cell ends the sweep (the same command continues it)."""
    from simclr.interrupts import Terminated

    _fill_on_record(cells, recorded)
    # (the plan: cells not done yet pending)
    table = _write_summary(root, axes, cells, evaluated_on)
    for k, (cell, cfg) in enumerate(zip(cells, configs, strict=True)):
        print(f"sweep cell {k + 1}/{len(cells)}: {printable(cell.name)}", flush=True)
        try:
            summary = _pretrain(cfg, cell.run_dir, cell.name, processes)
        except Terminated:  # a stop signal while the cell starts (before its StopFlag):
            cell.result = {"status": "preempted"}  # as in _score, the sweep exits 75
            table = _write_summary(root, axes, cells, evaluated_on)
            break
        except KeyboardInterrupt:  # a second Ctrl-C: the files say so, not 'pending'
            cell.result = {"status": "interrupted"}
            _write_summary(root, axes, cells, evaluated_on)
            raise
        except SimCLRError:  # (said by the command): the files say so, not 'pending'
            cell.result = {"status": "failed"}
            _write_summary(root, axes, cells, evaluated_on)
            raise
        cell.result = _trained(summary)
        # Stopped at its last step: finished, as its summary and `simclr info` say, but
        # the sweep was asked to stop, and does (an evaluation is no prompt stop).
        cell.stopped_by = summary.get("signal") if cell.result["status"] == "finished" \
            else None
        if cell.stopped_by and evaluate is not None:
            cell.result["status"] = NOT_EVALUATED
        elif cell.result["status"] == "finished" and evaluate is not None:
            try:
                _score(cell, evaluate)
            except (KeyboardInterrupt, SimCLRError):  # recorded by _score
                _write_summary(root, axes, cells, evaluated_on)
                raise
        # (a long sweep's table as it grows)
        table = _write_summary(root, axes, cells, evaluated_on)
        if cell.result["status"] == "preempted" or cell.stopped_by:  # (its training or
            break  # evaluation, or at its end): rerun the command to go on
    return cells, table


def _score(cell: Cell, evaluate: Any) -> None:
    """Add a finished cell's evaluation to its row. A stop signal during it (a kNN or
    L-BFGS fit: no StopFlag there, :class:`simclr.interrupts.Terminated` is raised) ends it as a
    preemption: the sweep stops with status 75 and the same command evaluates the cell
    again. A Ctrl-C or a failure is recorded in the row, then raised."""
    from simclr.interrupts import Terminated

    try:
        cell.result.update(evaluate(cell.run_dir))
    except Terminated:  # (nothing of it cached: a results file records its folders last)
        cell.result["status"] = "preempted"
    except KeyboardInterrupt:
        cell.result["status"] = "interrupted"
        raise
    except SimCLRError:
        cell.result["status"] = "failed"
        raise


# A cell's row when its summary.json (a received sweep's, or one damaged) holds no
# status simclr writes, or a count or time that is none: shown so, never a traceback.
DAMAGED = {"status": "damaged (its summary.json cannot be read as a run's; remove the "
                     "cell's folder to train it again)"}


def _trained(summary: dict[str, Any]) -> dict[str, Any]:
    """A cell's row from its run's summary: its status, length and time, and Table 5's
    contrast columns; a diverged run's step; :data:`DAMAGED` for a summary simclr did not
    write so. (A run stopped at its last step has finished: :func:`_run_cells` stops the
    sweep there.)"""
    status, steps = summary.get("status"), summary.get("steps")
    if not is_amount(steps, whole=True):
        return dict(DAMAGED)
    if status == "diverged":
        return {"status": f"diverged at step {steps}"}
    if status not in ("finished", "preempted") or not all(
            is_amount(summary.get(k)) for k in ("epochs", "elapsed_s")):
        return dict(DAMAGED)
    result = {"status": status, "steps": steps, "epochs": round(summary["epochs"], 2),
              "train_s": round(summary["elapsed_s"])}
    # Table 5's "Entropy" and "Contrastive acc." (NT-Xent), as the run ended
    result.update({k: round(summary[k], 4) for k in ("contrast_entropy", "contrast_acc")
                   if isinstance(summary.get(k), float)
                   and math.isfinite(summary[k])})  # (a skipped step's: NaN)
    return result


def _fill_on_record(cells: list[Cell], recorded: Any) -> None:
    """Each cell whose run needs no more training (:func:`_finished`) gets its row as
    the sweep will find it, before the first summary is written: a rerun with more
    values, stopped before it reaches them, keeps their results in its table.
    ``recorded(run_dir) -> dict``: a finished cell's scores on record (None: none)."""
    from simclr.rundir import reused_summary

    for cell in cells:
        done = _finished(cell.run_dir)
        if done is None:
            continue
        cell.result = _trained(reused_summary(done))  # (as _pretrain reuses it)
        if cell.result["status"] == "finished" and recorded is not None:
            cell.result.update(recorded(cell.run_dir))


def cell_configs(axes: list[Axis], root: Path, preset: str | None, config: str | None,
                 flags: dict[str, Any], reads: Iterable[str | None] = (),
                 ) -> tuple[list[Cell], list[Config]]:
    """Every cell of the grid under ``root`` and its resolved, checked config: the layers
    of ``simclr pretrain`` (preset, file, flags) with the cell's values on top.
    ``reads``: other folders the cells' data settings read (the sweep's evaluation ones:
    --strict acts there, whatever the cells train on)."""
    cells = plan_cells(axes, root)

    def built(k: int, swept: bool = True) -> Config:
        cell_flags = {**flags, **(cells[k].values if swept else {}),
                      "out": str(cells[k].run_dir)}
        return build_config(preset, config, cell_flags, inert_ok=cell_flags)

    def unswept(message: str) -> bool:  # (the settings without the swept values fail so)
        try:
            built(0, swept=False)
        except SimCLRError as exc:
            return user_message(exc) == message
        return False

    configs = per_cell(cells, built, unswept)  # every cell checked before anything runs
    check_settings_act(axes, cells, configs, flags, reads)
    return cells, configs


def _write_summary(root: Path, axes: list[Axis], cells: list[Cell],
                   evaluated_on: dict[str, str] | None = None) -> str:
    """``root/sweep.md`` (the table, returned), ``root/sweep.csv`` (the same, for
    plotting) and ``root/sweep.json`` (a row per cell); cells not run yet are 'pending'.
    A scored row of sweep.json records ``evaluated_on``, what scored it, when known."""
    table = render(axes, cells, None if evaluated_on is None else
                   scored_by_line(evaluated_on))
    written(root / "sweep.md", lambda tmp: tmp.write_text(table + "\n", encoding="utf-8"))
    text = csv_text(axes, cells)
    written(root / "sweep.csv", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    rows = [{"cell": c.name, **c.labels, "settings": c.values, **result_of(c)} for c in cells]
    if evaluated_on is not None:
        rows = [{**row, EVALUATED_ON: evaluated_on} if _top1_columns([row]) else row
                for row in rows]
    write_json(root / "sweep.json", rows)
    return table


# The key of a scored row of sweep.json, and of a cell's results file, that says which
# evaluation scored it: folders, transform, SGD protocol (sweep_command's _eval_data);
# a row adds ``scores``, the protocol of --eval
EVALUATED_ON = "evaluated_on"
# A cell's results file of each protocol of ``sweep --eval`` (its columns' prefix)
RESULTS_FILE = {"knn": "knn.json", "linear": "linear_eval.json"}
# What a cell's results file records only since 2026-12-03: one without them is taken as
# it is (as the cell's cached evaluation is), these not compared
RECORDED_LATER = ("train_files", "test_files")


def _top1_columns(rows: list[dict[str, Any]]) -> set[str]:
    """The score columns (knn_top1, linear_z_top1...) of summary rows."""
    return {key for row in rows for key in row if key.endswith("_top1")}


def _keep_other_grid(root: Path, names: set[str], scores: str | None,
                     evaluated_on: dict[str, str] | None = None) -> None:
    """An earlier summary in ``root`` of another grid (a sweep rerun with other axes),
    with top-1 columns this sweep will not write (a rerun with ``--eval none``, or with
    the other protocol; ``scores``: this one's, '' for none, None: unknown), or scored by
    another evaluation than ``evaluated_on`` (other folders or SGD protocol: the same
    columns, other numbers; None: unknown) is kept as ``sweep.previous-K.*`` rather
    than overwritten; its cells' runs stay too."""
    try:
        rows = json.loads((root / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return  # no summary yet (or not ours): nothing to keep
    # A damaged row (no dict, its cell no name) is skipped, as `simclr info` skips it
    rows = [row for row in rows if isinstance(row, dict) and
            isinstance(row.get("cell"), str)] if isinstance(rows, list) else []
    earlier = {row["cell"] for row in rows}
    columns = _top1_columns(rows)
    lost = sorted(c for c in columns if scores is not None and
                  not (scores and c.startswith(f"{scores}_")))
    # (rows of other cells: set aside anyway, their folders never read)
    other = None if lost or not earlier <= names else \
        _other_evaluation(root, rows, evaluated_on)
    if earlier <= names and not lost and other is None:
        return
    kept = set_aside(root, SUMMARY_FILES)
    if not earlier <= names:
        why = f"cells {', '.join(sorted(earlier - names))} not in this grid"
    else:
        why = f"{', '.join(lost)} not scored by this sweep" if lost else str(other)
    # (the names a received summary holds: printed escaped)
    print(f"sweep: the earlier summary ({printable(why)}) is kept as {kept}", file=sys.stderr)


def _other_evaluation(root: Path, rows: list[dict[str, Any]],
                      evaluated_on: dict[str, str] | None) -> str | None:
    """Why the scored ``rows`` of an earlier summary in ``root`` were scored by another
    evaluation than ``evaluated_on`` (None: the same, or either unknown): the first
    setting that differs. A row written before rows recorded it is taken as its cell's
    results file records it (:func:`_cell_evaluation`); the rows' cells are this grid's
    (folders under ``root``)."""
    if evaluated_on is None:
        return None
    for row in rows:
        columns = sorted(_top1_columns([row]))
        if not columns:  # (pending, diverged, or not evaluated: nothing scored)
            continue
        then = row.get(EVALUATED_ON)
        unrecorded: tuple[str, ...] = ()
        if not isinstance(then, dict):
            then = _cell_evaluation(root / row["cell"], columns, "scores" in evaluated_on)
            if then is None:  # unknown: the same, as before rows recorded it
                continue
            unrecorded = tuple(k for k in RECORDED_LATER if k not in then)
        for key in [*evaluated_on, *(k for k in then if k not in evaluated_on)]:
            if key in unrecorded:  # (a cell's file of before: taken as it is)
                continue
            if then.get(key) != evaluated_on.get(key):  # (none: not part of that one)
                was, now = (repr(v) if v is not None else "none"
                            for v in (then.get(key), evaluated_on.get(key)))
                return (f"{', '.join(columns)} scored by another evaluation: {key} {was}, "
                        f"not {now}")
    return None


def _cell_evaluation(run_dir: Path, columns: list[str],
                     scores: bool) -> dict[str, Any] | None:
    """What scored a cell's ``columns`` (knn_top1, knn_z_top1...), as its results file
    records it (every layer of a row is scored on the same evaluation: the current file
    tells), with the protocol as ``scores`` where ``scores``; None where it does not
    tell (no such file, one unreadable, or one of an earlier simclr)."""
    protocols = {c.split("_", 1)[0] for c in columns}
    protocol = protocols.pop() if len(protocols) == 1 else None
    if protocol not in RESULTS_FILE:  # (the Python API's own columns)
        return None
    try:
        found = json.loads((run_dir / RESULTS_FILE[protocol]).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    then = found.get(EVALUATED_ON) if isinstance(found, dict) else None
    if not isinstance(then, dict):
        return None
    return {**then, **({"scores": protocol} if scores else {})}
