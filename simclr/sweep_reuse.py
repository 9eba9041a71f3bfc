"""A sweep's earlier runs: which runs already in ``--out`` its cells reuse, and what is
refused or noted about them, before the first cell trains.

A cell's folder holding a run made with the command's settings is that cell's run
(reused when finished or diverged, resumed when interrupted); one of other settings is
refused with the flag that would continue it (:func:`_check_same_settings`), an AdamW
cell of a release before 2026-12-06 said to be so. Settings that may differ (the
runtime ones ``--resume`` may change), paths saved relative, ``precision: auto`` as it
resolves here and a saved ``first_op`` naming the pipeline's own order are compared as
the same run (:func:`_first_difference`), and so are settings with no effect in the cell
or in the run (--margin beside NT-Xent), which the cell then keeps as the run saved them
(:func:`_adopt`). A cell whose folder holds no run takes over a
run of the same settings under another name (:func:`_find_earlier_runs`), and a finished
cell whose folder now lists other images is noted (:func:`_other_images_notes`).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simclr.config import RESUME_SETTINGS, Config, settings_of, unsaved_value
from simclr.errors import SimCLRError, printable
from simclr.files import folder_holder, read_json
from simclr.inert import VALUE_INERT, first_op_moves, inert_settings
from simclr.recipe import flatten, value_text

if TYPE_CHECKING:  # (sweep_grid imports this module: the cell's class for annotations only)
    from simclr.sweep_checks import FolderLooks
    from simclr.sweep_grid import Cell

SUMMARY = "summary.json"


def _finished(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a cell that needs no more training (finished or diverged)."""
    summary = read_json(run_dir / SUMMARY) or {}
    return summary if summary.get("status") in ("finished", "diverged") else None


# Settings that may differ between the run found in a cell and the command's: those
# --resume may change, but the run's length (another cell), and the folder.
RUNTIME_ONLY = (RESUME_SETTINGS - {"epochs", "max_steps", "time_budget"}) | {"out"}
# Settings holding paths: runs saved before paths were stored absolute hold them as
# typed, relative to the folder the sweep ran in (this one, when it is continued).
PATHS = {"data.path", "data.root", "data.cache_dir", "knn_train", "knn_test", "init_from"}


def _comparable(key: str, value: Any) -> Any:
    if key in PATHS and isinstance(value, str):
        return os.path.abspath(os.path.expanduser(value))
    return value


def _saved_settings(run_dir: Path) -> dict[str, Any] | None:
    """The config a cell's run was made with: the config.yaml every run writes before
    its first step (no checkpoint has to be loaded, and a run that diverged before its
    first checkpoint has one too)."""
    from simclr.config_file import load_yaml

    if (run_dir / "config.yaml").is_file():
        return load_yaml(run_dir / "config.yaml")
    return None


def _check_same_settings(cfg: Any, run_dir: Path, cell: str) -> str | None:
    """A cell's existing run must have been made with this command's settings, but for
    those with no effect in the cell or in the run (:func:`_no_effect`), which the cell
    takes from the run (:func:`_adopt`). Returns the note naming those it takes, to
    print once the sweep goes ahead (None: none)."""
    found = _saved_settings(run_dir)
    if found is None:
        return None
    inert, saved = (_no_effect(cfg), _saved_no_effect(found)), flatten(found)
    differs = _first_difference(flatten(cfg.to_dict()), saved, inert)
    if differs is not None:
        k, then, now = differs
        _check_earlier_adamw_lr(cfg, found, run_dir, cell, inert)
        # (a first_op naming the run's own first group: the run had none, no flag gives it)
        keep = None if k == FIRST_OP and not _own_order_unnamed(saved, inert[1])[k] \
            else _flag_setting(k, then)
        # (the same command given to a later simclr meets another default: a preset's)
        way = f"give {keep} to continue the sweep, or " if keep else ""
        raise SimCLRError(f"cell {cell} already holds a run with other settings ({k}: "
                          f"{then!r} there, {now!r} now); {way}use a new --out")
    kept = _adopt(cfg, saved, inert, f"cell {cell}: {run_dir / 'config.yaml'}")
    # (else the run goes on with values the command did not give, unexplained)
    return f"sweep: cell {cell} keeps its run's {', '.join(kept)}: no effect here" \
        if kept else None


def _check_earlier_adamw_lr(cfg: Any, found: dict[str, Any], run_dir: Path, cell: str,
                            inert: Inert = ((), ())) -> None:
    """A cell whose run differs only in its AdamW lr, a release before 2026-12-06's
    LARS-sized default (recipe.earlier_adamw_lr): said so, with what trains the cell at
    this release's default. --lr to keep the old one would change every other cell too,
    and a cell's own lr cannot be given per cell."""
    from simclr.recipe import earlier_adamw_default, earlier_adamw_lr

    found = flatten(found)
    then: Any = found.get("optim.lr")  # (a number: earlier_adamw_lr checks)
    if not earlier_adamw_lr(then, cfg) or found.get("optim.name") != "adamw" or \
            _first_difference({**flatten(cfg.to_dict()), "optim.lr": then}, found, inert):
        return
    raise SimCLRError(f"cell {cell} already holds a run trained AdamW at "
                      f"{earlier_adamw_default(then, cfg)}; a cell's own lr cannot be given "
                      f"per cell: use a new --out, or remove {run_dir} to train that cell "
                      "anew at this default")


def _flag_setting(path: str, value: Any) -> str | None:
    """The flag that sets the dotted setting ``path`` to ``value`` (``--no-flip``,
    ``--load-size 384``, ``--load-size none``); None where no flag alone does (a list,
    a setting without a flag)."""
    from simclr.settings import flag_of

    flag = flag_of(path)
    if "." in flag or isinstance(value, (list, tuple, dict)) or value == "":
        return None  # (an empty value: no flag takes one)
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {'none' if value is None else value}"


# The settings with no effect in a cell's config, and in its run's saved one
Inert = tuple[Collection[str], Collection[str]]
FIRST_OP = "augment.first_op"


def _no_effect(cfg: Config) -> set[str]:
    """The settings that change nothing in ``cfg`` (:func:`simclr.inert.inert_settings`:
    --one-view-negatives beside --loss nt_logistic, --margin beside NT-Xent, --color-p
    with colour off, colour at --color-p 0): a cell and a run that differ only in settings
    with no effect in one or the other are one run. How folders are read aside: a sweep
    reads its evaluation folders with them too."""
    return {path for path in inert_settings(cfg) if not path.startswith("data.")}


def _saved_no_effect(found: dict[str, Any]) -> set[str]:
    """:func:`_no_effect` of a run's saved config (none where it cannot be read as one)."""
    from simclr.settings import config_from_dict

    try:  # (what a run's config.yaml records beside its settings: no setting)
        return _no_effect(config_from_dict(settings_of(found)))
    except (SimCLRError, TypeError, ValueError, AttributeError):  # (an odd file: compared whole)
        return set()


def _adopt(cfg: Config, saved: dict[str, Any], inert: Inert, source: str) -> list[str]:
    """The run's own values of the settings with no effect in the cell or the run (and
    its first_op, the same order) put into its ``cfg``: its resume refuses a setting
    changed, in effect or not, and its config.yaml is kept as it was. Returns them as
    the flag that sets each ('--one-view-negatives'), else 'path value', the value as a
    refused resume says it (``source``: the file named by a value it cannot read)."""
    from simclr.settings import set_path

    adopted, now = [], flatten(cfg.to_dict())
    for path in sorted({*inert[0], *inert[1], FIRST_OP}):
        if path in saved and path in now and path not in RUNTIME_ONLY and \
                _comparable(path, saved[path]) != _comparable(path, now[path]):
            set_path(cfg, path, saved[path], source)
            adopted.append(_flag_setting(path, saved[path])
                           or f"{path} {value_text(saved[path])}")
    return adopted


def _first_difference(wanted: dict[str, Any], saved: dict[str, Any],
                      inert: Inert = ((), ())) -> tuple[str, Any, Any] | None:
    """The first setting (path, saved value, wanted value) in which a run's config.yaml
    differs from a cell's config, both flattened, runtime-only ones and those with no
    effect in the cell or in the run (``inert``: :func:`_no_effect` of each) aside; None:
    the same run."""
    # A setting added to simclr after that run was made reads as what that run did.
    raw = {k: saved[k] if k in saved else flatten({"v": unsaved_value(k)})["v"]
           for k in wanted}
    then, now = _own_order_unnamed(raw, inert[1]), _own_order_unnamed(wanted, inert[0])
    # (a first_op naming the pipeline's own first group: compared as none, above)
    skip = ({*inert[0], *inert[1]} - VALUE_INERT) | RUNTIME_ONLY
    changed = sorted(k for k in now if k not in skip
                     and _comparable(k, then[k]) != _comparable(k, now[k]))
    device = now["device"]
    if "precision" in changed and _resolved_precision(then["precision"], device) == \
            _resolved_precision(now["precision"], device):  # auto, as it resolves here
        changed.remove("precision")
    # (said as the file and the command hold them)
    return (changed[0], raw[changed[0]], wanted[changed[0]]) if changed else None


def _own_order_unnamed(settings: dict[str, Any], inert: Collection[str]) -> dict[str, Any]:
    """Flattened ``settings`` with an ``augment.first_op`` that moves nothing (names the
    pipeline's own first group, or one with nothing to move) read as '' (no first_op):
    the same run. A release that accepted ``--first-op crop`` saved it so; this one
    refuses it as having no effect (inert.first_op_moves), so a rerun without it must
    still find that run its own."""
    first = settings.get(FIRST_OP)
    # (among the switches that act: one that never applies, or does nothing, has no
    # place in the order; colour off, or at --color-p 0, put the same group first)
    if first and not first_op_moves(first, lambda name: settings.get(f"augment.{name}") and
                                    f"augment.{name}" not in inert):
        return {**settings, FIRST_OP: ""}
    return settings


def _find_earlier_runs(root: Path, cells: list[Cell], configs: list[Config]) -> list[str]:
    """A cell whose folder holds no run takes over a run of the same settings found in
    another folder of ``root``: the sweep run earlier with its values spelled otherwise
    ('.1' for '0.1', 1e-3 for 0.001) or its axes in another order, whose folder names
    differ. Without this, a rerun would train those runs again beside the old ones. The
    swept settings must be equal as written too (an axis of threads or workers measures
    their speed: its runs differ), and a folder a live run holds is never taken. Returns
    the notes to print once the sweep goes ahead."""
    planned = {c.run_dir.name for c in cells}
    try:
        others = [d for d in root.iterdir() if d.name not in planned
                  and not d.name.startswith(".") and (d / "config.yaml").is_file()
                  and not folder_holder(d)]
    except OSError:  # no --out yet
        return []
    saved: dict[Path, tuple[dict[str, Any], set[str]]] = {}
    for folder in sorted(others):
        try:
            found = _saved_settings(folder) or {}
        except SimCLRError:  # not a readable run's config: not one of ours
            continue
        saved[folder] = (flatten(found), _saved_no_effect(found))
    notes = []
    for cell, cfg in zip(cells, configs, strict=True):
        if (cell.run_dir / "config.yaml").exists():
            continue
        wanted, own = flatten(cfg.to_dict()), _no_effect(cfg)
        for folder, (settings, theirs) in saved.items():
            swept_alike = all(_comparable(p, settings.get(p)) == _comparable(p, wanted[p])
                              for p in cell.values)
            inert = (own, theirs)
            if swept_alike and _first_difference(wanted, settings, inert) is None:
                kept = _adopt(cfg, settings, inert, f"cell {cell.name}: {folder / 'config.yaml'}")
                said = f"; its {', '.join(kept)} kept: no effect here" if kept else ""
                # (a received sweep's folder: its name as found, printed escaped)
                notes.append(f"sweep: cell {cell.name} is the run in "
                             f"{printable(folder.name)} (the same settings, written "
                             f"otherwise{said}); reusing it")
                cell.name, cell.run_dir = folder.name, folder
                cfg.out = str(folder)
                del saved[folder]
                break
    return notes


def _other_images_notes(cells: list[Cell], configs: list[Config], sizes: list[int | None],
                        looks: FolderLooks | None = None) -> list[str]:
    """A note for each finished cell whose training folder now lists another number of
    image files (``sizes``: each cell's, as :func:`check_batches` listed them, images
    beside the class folders too) than its run's (summary.json: the images read and
    those skipped, unreadable): reused as it is, as ``--resume`` of a finished run is,
    its row stands for the images it saw then. A run of a release before images beside
    class folders were kept (its checkpoint's ``all_images``, as train.pretrain reads
    it) is told the class folders' count, without a word of the others. ``looks``: the
    folders as the sweep's checks listed them (None: listed here)."""
    from simclr.folders import named_dataset, split_root
    from simclr.sweep_checks import FolderLooks

    looks = FolderLooks() if looks is None else looks
    in_classes: dict[str, int] = {}  # (a data axis: each folder listed once)
    notes = []
    for cell, cfg, now in zip(cells, configs, sizes, strict=True):
        done = _finished(cell.run_dir) or {}
        then, skipped = done.get("num_images"), done.get("skipped_images") or []
        if done.get("status") != "finished" or not isinstance(then, int) or \
                not isinstance(skipped, list) or now is None or named_dataset(cfg.data.path):
            continue
        then += len(skipped)  # (the files listed then, readable or not)
        path = str(cfg.data.path)
        if now != then and not _counted_loose_images(cell.run_dir):
            if path not in in_classes:  # (a flat folder's images: all read, as then)
                files = looks.listing(path)
                assert files is not None  # (a folder: named_dataset above)
                in_classes[path] = int((files.labels >= 0).sum()) if files.classes \
                    else len(files.paths)
            now = in_classes[path]
        if now != then:
            notes.append(f"note: cell {cell.name} was trained on the {then} image files of "
                         f"{printable(os.path.abspath(split_root(path, True)))}, which now "
                         f"holds {now}: its row stands for the images it saw then (remove "
                         f"{printable(str(cell.run_dir))} to train it on these)")
    return notes


def _counted_loose_images(run_dir: Path) -> bool:
    """Whether a finished cell's run read the images beside its class folders too (its
    checkpoint's ``all_images``, read without its tensors); a run without a readable
    checkpoint is taken for one of this release, which reads them."""
    from simclr.checkpoint import latest_checkpoint
    from simclr.checkpoint_read import load_checkpoint
    from simclr.resume import read_all_images

    try:
        last = latest_checkpoint(run_dir / "checkpoints")
        return last is None or read_all_images(load_checkpoint(last, mmap=True))
    except SimCLRError:
        return True


def _resolved_precision(precision: Any, device: str) -> Any:
    """A precision as it runs on this machine ('auto' is bf16 where that is fast); a
    value that cannot be resolved here stays as written."""
    from simclr.runtime import resolve_device, resolve_precision

    try:
        return resolve_precision(str(precision), resolve_device(device))
    except SimCLRError:
        return precision
