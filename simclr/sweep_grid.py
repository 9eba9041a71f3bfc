"""A sweep's grid: axes parsed from ``--set`` / ``--pairs``, cells and their folder names.

An axis (:class:`Axis`) is one swept setting and its values (:func:`parse_axis`; settings
that would train the same run are refused: :data:`NOT_SWEPT`), or Fig. 5's transformations
alone and in ordered pairs (:func:`pairs_axis`). The grid's cells (:class:`Cell`) are the
Cartesian product of the axes (:func:`plan_cells`), each a run folder under the sweep's
``--out`` named by its values, the same on every rerun so that a sweep finds its cells
again. Running the cells and writing their table is :mod:`simclr.sweep`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simclr.config import FIG5_OPS, Config, default_of
from simclr.errors import SimCLRError
from simclr.settings import WANTED, all_flags, flag_of, set_path, typed_pair
from simclr.sweep_report import PAIR_AXIS, pair_label
from simclr.sweep_reuse import _comparable


@dataclass
class Axis:
    """One swept dimension: its name, and per value a label and the settings it makes."""

    name: str
    labels: list[str]
    settings: list[dict[str, str]]  # dotted config path -> value text, per label


@dataclass
class Cell:
    values: dict[str, str]  # dotted path -> value text
    labels: dict[str, str]  # axis name -> label
    name: str
    run_dir: Path
    result: dict[str, Any] = field(default_factory=dict)
    # The signal that stopped the sweep at this cell's last step: its run has finished
    # (its row says so), but no cell after it starts
    stopped_by: str | None = None


# Settings a sweep refuses as an axis: their cells would train the same run, differing
# only in where or how visibly it is written, or in what is monitored or checked. (Speed
# settings such as threads, device or workers stay: a sweep over them measures their
# train_s.)
NOT_SWEPT = {
    "out": "every cell runs in its own folder under the sweep's --out",
    "progress": "it only shows the progress",
    "log_every": "it only sets how often metrics are written",
    "data.cache_dir": "every cell reads the same decoded images",
    "data.root": "every cell reads the same data set",
    "data.download": "every cell reads the same data set",
    "checkpoint_every": "it only sets when checkpoints are written",
    "checkpoint_minutes": "it only sets when checkpoints are written",
    "keep_checkpoints": "it only sets how many checkpoints are kept",
    "memory_check": "it only checks the batch fits before training",
    "knn_every": "it only sets how often the kNN monitor runs",
    "knn_k": "it only sets the kNN monitor's scores",
    "knn_temperature": "it only sets the kNN monitor's scores",
    "knn_train": "it only sets the kNN monitor's folders",
    "knn_test": "it only sets the kNN monitor's folders",
    "data.strict": "it only sets whether a bad image stops the run",
    # (it sets which images are read at all: sweep data folders instead)
    "data.max_pixels": "it only sets how large an image may be before it is skipped",
}


def parse_axis(text: str) -> Axis:
    """'temperature=0.1,0.5' (a flag name or a dotted path). Values are split on ';'
    when there is one, for settings whose values hold commas ('crop-scale=0.08,1;0.2,1')."""
    key, sep, values = text.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key or not values.strip():
        raise SimCLRError(f"--set {text!r}: expected SETTING=VALUE1,VALUE2,...")
    flags = all_flags()
    if key in flags:
        path = flags[key]
    elif key in flags.values():
        path = key
    elif key.replace("_", "-") in flags:  # color_strength: the flag, as a Python name
        path = flags[key.replace("_", "-")]
    else:
        raise SimCLRError(f"--set: unknown setting {key!r} (any pretrain flag, e.g. "
                          "temperature, or a dotted path such as loss.temperature)")
    if path in NOT_SWEPT:
        raise SimCLRError(f"--set {key}: not an experiment setting ({NOT_SWEPT[path]})")
    parts = [v.strip() for v in values.split(";" if ";" in values else ",")]
    if any(not v for v in parts) or len(set(parts)) != len(parts):
        raise SimCLRError(f"--set {text!r}: empty or repeated values")
    _check_distinct(path, parts, text)
    # Named by its flag however typed (loss.temperature, color_strength): the cells'
    # folders, and so a rerun's reuse of them, must not depend on the spelling.
    return Axis(flag_of(path), parts, [{path: v} for v in parts])


def _check_distinct(path: str, parts: list[str], text: str) -> None:
    """Values spelled differently but equal as settings (0.5 and .5, true and 1) would
    train the same run in two cells."""
    seen: dict[Any, str] = {}
    for part in parts:
        cfg = Config()
        try:  # the value as a run would hold it (and checked)
            set_path(cfg, path, part, "flag")
        except SimCLRError as exc:
            if ";" in text or WANTED["tuple"] not in str(exc):  # (a pair setting's message)
                raise
            # (the example: the setting's own default, valid there: 0.08,1 of --crop-scale
            # was offered for --betas too, which refuses a 1)
            raise SimCLRError(f"{exc}; a swept setting whose values hold commas takes ';' "
                              f"between values: --set '{flag_of(path)}="
                              f"{typed_pair(default_of(path))};A,B'") from None
        value = cfg
        for name in path.split("."):
            value = getattr(value, name)
        value = _comparable(path, value)
        if value in seen:
            raise SimCLRError(f"--set {text!r}: {seen[value]} and {part} are the same "
                              "value (their cells would train the same run)")
        seen[value] = part


def pairs_axis(text: str) -> Axis:
    """Fig. 5: every transformation of ``text`` ('crop,color,blur') alone and every
    ordered pair (a then b, labelled 'a+b'), applied to one branch
    (``augment.asymmetric``), all the others off: n^2 cells, the paper's grid. A pair in
    the pipeline's own order runs as such; the other order sets ``augment.first_op``."""
    ops = [o.strip() for o in text.split(",")]  # (an empty one refused, as --set's are)
    unknown = [o for o in ops if o not in FIG5_OPS]
    if unknown or len(set(ops)) != len(ops):
        raise SimCLRError(f"--pairs {text!r}: expected distinct names from "
                          f"{', '.join(FIG5_OPS)}")
    pipeline = list(FIG5_OPS)
    labels, settings = [], []
    for a in ops:
        for b in ops:
            cell = {"augment.asymmetric": "true"}
            for op, switches in FIG5_OPS.items():
                cell.update({f"augment.{s}": "true" if op in (a, b) else "false"
                             for s in switches})
            if pipeline.index(a) > pipeline.index(b):
                cell["augment.first_op"] = a
            labels.append(pair_label(a, b))
            settings.append(cell)
    return Axis(PAIR_AXIS, labels, settings)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_+-]+", "_", text)


def _value_slugs(axis: Axis) -> list[str]:
    """Each value's part of its cells' folder names: ``name=value`` made file-safe.

    Values that only differ in characters the slug replaces ('data/tr ain' and
    'data/tr_ain') would share their cells' folders, so those, and only those, get a
    short hash of the value: every other value keeps the name earlier versions gave it,
    and an existing sweep resumes into the same folders.
    """
    slugs = [_slug(f"{axis.name}={label}") for label in axis.labels]
    counts = Counter(slugs)
    return [slug if counts[slug] == 1 else f"{slug}-{_short_hash(label)}"
            for slug, label in zip(slugs, axis.labels, strict=True)]


def _short_hash(text: str) -> str:
    """8 hex digits of the text's SHA-256: the same on every machine and Python run
    (``hash()`` is salted per process), so a resumed sweep finds its folders again."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# Bytes of a cell's folder name: under the file systems' 255 with room for what is named
# after it (the hidden .NAME.yaml of a launched cell).
MAX_NAME = 200


def _capped(name: str) -> str:
    """A cell's folder name within :data:`MAX_NAME` bytes: a longer one (long swept
    paths) is cut and ends with a short hash of the whole, so cut names stay apart and
    stable; every shorter name is kept as it was, so existing sweeps resume."""
    if len(name.encode()) <= MAX_NAME:
        return name
    suffix = f"-{_short_hash(name)}"
    return name[:MAX_NAME - len(suffix)] + suffix  # (slugs are ASCII: a byte a letter)


def plan_cells(axes: list[Axis], out: Path) -> list[Cell]:
    """The Cartesian product of the axes, in the order given (last axis fastest).

    Two cells never share a folder: values of an axis that slug alike are told apart
    (:func:`_value_slugs`), and a grid whose joined names still coincide is refused here,
    before any run starts, naming both cells.
    """
    owners: dict[str, str] = {}
    for axis in axes:
        for path in {p for setting in axis.settings for p in setting}:
            if path in owners and owners[path] == axis.name:  # (spelled two ways, maybe)
                raise SimCLRError(f"--set: {axis.name} is swept by two --set; give all its "
                                  "values in one")
            if path in owners:
                raise SimCLRError(f"--set: {path} is swept twice ({owners[path]}, {axis.name})")
            owners[path] = axis.name
    slugs = [_value_slugs(axis) for axis in axes]
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for combo in itertools.product(*(range(len(a.labels)) for a in axes)):
        values: dict[str, str] = {}
        for axis, k in zip(axes, combo, strict=True):
            values.update(axis.settings[k])
        labels = {a.name: a.labels[k] for a, k in zip(axes, combo, strict=True)}
        name = _capped("_".join(s[k] for s, k in zip(slugs, combo, strict=True)))
        cell = Cell(values, labels, name, out / name)
        if name in seen:  # values holding '_' and '=' can join to the same name
            raise SimCLRError(f"--set: the cells {_describe(seen[name])} and "
                              f"{_describe(cell)} would share the folder {name}; change "
                              "one of these values")
        seen[name] = cell
        cells.append(cell)
    return cells


def _describe(cell: Cell) -> str:
    """A cell as its swept values, quoted, for messages: (data='a b', epochs='1')."""
    return "(" + ", ".join(f"{a}={v!r}" for a, v in cell.labels.items()) + ")"
