"""How a :class:`~simclr.config.Config` is built from what the user gives.

Layers, later ones win: dataclass defaults (the paper's ImageNet recipe, Chen et al.
2020, Sec. 2.3 and App. A) -> ``--preset`` -> ``--config FILE.yaml`` -> command-line flags.
The result is then validated (:mod:`simclr.validate`: every value in its range, one line
per problem, named as the flag or the file's key) and a flag that has no effect under
the other settings is refused (:mod:`simclr.inert`). Here too: the flag of every
setting, reading values (durations, ``none``, pairs) and YAML files, and a saved config
read back (checkpoints, ``config.yaml``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import reprlib
from collections.abc import Callable, Collection
from collections.abc import Set as AbstractSet
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from simclr.config import (
    ARCHS,
    MAX_SIDE,
    MIN_SIZE,
    RECORDED_KEYS,
    SAVED_BEFORE,
    Config,
    field_type,
)
from simclr.errors import SimCLRError, unreadable_path
from simclr.files import written
from simclr.presets import PRESETS

# ------------------------------------------------------------------------------ flags

# Flag name -> dotted config path. Booleans get --name / --no-name.
FLAGS: dict[str, str] = {
    "data": "data.path",
    "download": "data.download",
    "data-root": "data.root",
    "cache": "data.cache",
    "cache-dir": "data.cache_dir",
    "load-size": "data.load_size",
    "workers": "data.workers",
    "decoder": "data.decoder",
    "store": "data.store",
    "strict": "data.strict",
    "max-pixels": "data.max_pixels",
    "out": "out",
    "arch": "model.arch",
    "width": "model.width",
    "cifar-stem": "model.cifar_stem",
    "zero-init-residual": "model.zero_init_residual",
    "projection-shortcuts": "model.projection_shortcuts",
    "head": "model.head",
    "head-layers": "model.head_layers",
    "head-hidden-dim": "model.head_hidden_dim",
    "head-out-dim": "model.head_out_dim",
    "head-batch-norm": "model.head_batch_norm",
    "sync-bn": "model.sync_bn",
    "loss": "loss.name",
    "temperature": "loss.temperature",
    "normalize": "loss.normalize",
    "loss-weight": "loss.weight",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "lr-scaling": "optim.lr_scaling",
    "momentum": "optim.momentum",
    "weight-decay": "optim.weight_decay",
    "eta": "optim.eta",
    "exclude-bias-and-norm": "optim.exclude_bias_and_norm",
    "warmup-epochs": "optim.warmup_epochs",
    "warmup-fraction": "optim.warmup_fraction",
    "image-size": "augment.size",
    "crop-scale": "augment.crop_scale",
    "color-strength": "augment.color_strength",
    "blur": "augment.blur",
    "batch-size": "batch_size",
    "epochs": "epochs",
    "max-steps": "max_steps",
    "time-budget": "time_budget",
    "precision": "precision",
    "channels-last": "channels_last",
    "compile": "compile",
    "memory-check": "memory_check",
    "device": "device",
    "seed": "seed",
    "init-from": "init_from",
    "deterministic": "deterministic",
    "threads": "threads",
    "log-every": "log_every",
    "checkpoint-every": "checkpoint_every",
    "checkpoint-minutes": "checkpoint_minutes",
    "keep-checkpoints": "keep_checkpoints",
    "nan-policy": "nan_policy",
    "knn-train": "knn_train",
    "knn-test": "knn_test",
    "knn-every": "knn_every",
    "progress": "progress",
}


def all_flags() -> dict[str, str]:
    """FLAGS plus a flag for every other setting (``--flip-p``, ``--blur-sigma``, ...).

    Every knob of the config is reachable from the command line: the named flags above
    first, then each remaining field under its own name. A field whose name is already
    a flag (a named one, or another section's field) is refused, not renamed: give it a
    named flag in FLAGS.
    """
    flags = dict(FLAGS)
    taken = set(FLAGS.values())
    defaults = Config()
    paths = [f"{section}.{f.name}" for section in ("augment", "model", "loss", "optim", "data")
             for f in fields(getattr(defaults, section))]
    paths += [f.name for f in fields(Config)
              if not dataclasses.is_dataclass(getattr(defaults, f.name))]
    for path in paths:
        if path in taken:
            continue
        name = path.rpartition(".")[2].replace("_", "-")
        if name in flags:
            raise RuntimeError(f"setting {path} would be --{name}, already the flag of "
                               f"{flags[name]}: give it a named flag in FLAGS")
        flags[name] = path
    return flags


def flag_of(path: str) -> str:
    """The command-line flag (without --) of a dotted setting."""
    return _flag_by_path().get(path, path)


@functools.cache
def _flag_by_path() -> dict[str, str]:
    by_path: dict[str, str] = {}
    for flag, path in all_flags().items():
        by_path.setdefault(path, flag)  # the named flag, listed first
    return by_path


class SettingError(SimCLRError):
    """One setting's invalid value. The message names it as the flag (``--epochs must be
    positive, got -5``) unless :func:`build_config` knows it came from a config file,
    where it names the file and the key (``run.yaml: epochs must be positive, ...``).
    ``others``: settings the detail speaks of too, named the same way in its ``{}``
    slots (``--first-op ...: it needs --asymmetric``, or a file's ``augment.asymmetric``).
    """

    def __init__(self, path: str, detail: str, others: tuple[str, ...] = ()) -> None:
        self.path, self.detail, self.others = path, detail, others
        super().__init__(self.named(lambda p: f"--{flag_of(p)}"))

    def named(self, name: Callable[[str], str]) -> str:
        """The message, each setting it speaks of named by ``name`` (a dotted path to its
        flag, or to a file's key)."""
        detail = self.detail.format(*map(name, self.others)) if self.others else self.detail
        return f"{name(self.path)}{detail}"


# ---------------------------------------------------------------------------- parsing

# How a message shows a value: its repr cut short. A few hundred bytes of YAML aliases
# expand to millions of items, whose whole repr took a gigabyte and 15 seconds.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 3, 3, 3


def shown(value: Any) -> str:
    """``value`` as an error message shows it: its repr, at most about 60 characters a
    piece (a long text, a large or deeply nested list or mapping)."""
    return _SHORT.repr(value)


def parse_duration(text: str | float | int, where: str = "--time-budget") -> float:
    """'20m' -> 1200.0, '1h30m' -> 5400.0: h, m and s amounts (in that order), or a plain
    number of seconds. ``where``: how messages name the value (a flag, a file's key)."""
    if isinstance(text, bool):  # YAML's `time_budget: true` (or yes, on) is no duration
        raise SimCLRError(f"{where}: cannot read {shown(text)} (use e.g. 90s, 20m, 1.5h, 1h30m)")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        # a number of seconds, or amounts with units in decreasing order: 1h30m, 2m30s
        num = r"([0-9]*\.?[0-9]+)"
        parts = re.fullmatch(rf"\s*(-?)\s*(?:{num}\s*h)?\s*(?:{num}\s*m)?\s*(?:{num}\s*(s?))?\s*",
                             str(text))
        sign, h, m, sec, unit = parts.groups() if parts else ("",) * 5
        if not (h or m or sec) or (sec and not unit and (h or m)):  # 1h30: 30 what?
            raise SimCLRError(f"{where}: cannot read {shown(text)} (use e.g. 90s, 20m, "
                              "1.5h, 1h30m)")
        seconds = sum(float(v) * k for v, k in ((h, 3600), (m, 60), (sec, 1)) if v)
        seconds = -seconds if sign else seconds
    if not seconds > 0:
        raise SimCLRError(f"{where} must be positive, got {shown(text)}")
    return seconds


def is_null(value: Any) -> bool:
    """None, or the text a user writes for it (YAML's null, a flag's ``none``)."""
    return value is None or (isinstance(value, str) and value.lower() in ("none", "null"))


def field_kind(type_text: Any) -> tuple[str, bool]:
    """A setting's declared kind ('bool', 'int', 'float', 'str' or 'tuple', a pair of
    numbers) and whether it may be None, read from its annotation (a string here)."""
    t = str(type_text).replace(" ", "")
    return t.replace("|None", "").split("[")[0], "None" in t


def _coerce(value: Any, type_text: str, where: str) -> Any:
    """Convert YAML/flag text to the field's declared type (annotations are strings)."""
    base, optional = field_kind(type_text)
    # "none" as text means None only where None is allowed: `--head none` is a head.
    if value is None or (optional and is_null(value)):
        if optional:
            return None
        raise SimCLRError(f"{where}: a value is required")
    if isinstance(value, dict) or (isinstance(value, list) and base != "tuple"):
        raise SimCLRError(f"{where}: expected one {base} value, got {shown(value)}")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if optional and text == "auto":  # (an optional switch's None: automatic)
                return None
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(value, bool) and base != "str":  # YAML's `lr: true` is no number
            raise ValueError
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base == "float":
            return float(value)
        if base == "tuple":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            if len(items) != 2 or any(isinstance(item, bool) for item in items):
                raise ValueError
            return (float(items[0]), float(items[1]))
        if base == "str":
            if isinstance(value, float):  # (YAML's `out: 1.50`: folder 1.5, not 1.50)
                raise SimCLRError(f"{where}: expected text, got the number {value!r}; quote "
                                  "it (e.g. '1.50', which unquoted reads as 1.5) to keep it "
                                  "as written")
            return str(value)
    except (TypeError, ValueError):
        wanted = "true, false or auto" if base == "bool" and optional else WANTED.get(base, base)
        raise SimCLRError(f"{where}: expected {wanted}, got {shown(value)}") from None
    return value


WANTED = {"bool": "true or false", "int": "a whole number", "float": "a number",
          "tuple": "two numbers A,B (e.g. 0.08,1)", "str": "text"}


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> None:
    """Set nested fields from a (possibly nested) mapping; unknown keys are errors, and
    so is a setting given twice, dotted (``loss.temperature: 0.7``) and in its section
    (``loss: {temperature: 0.3}``): the last one won unsaid."""
    given: set[str] = set()

    def put(path: str, value: Any) -> None:
        if path in given:
            raise SimCLRError(f"{source}: setting {shown(path)} is given twice (dotted and "
                              "in its section)")
        given.add(path)
        set_path(cfg, path, value, source)

    for key, value in overrides.items():
        if isinstance(value, dict):
            sub = getattr(cfg, str(key), None)
            if not dataclasses.is_dataclass(sub):
                if any(f.name == key for f in fields(cfg)):
                    raise SimCLRError(f"{source}: setting {shown(key)} takes a value, not a "
                                      "mapping")
                raise SimCLRError(f"{source}: unknown section {shown(key)}")
            for sub_key, sub_value in value.items():
                put(f"{key}.{sub_key}", sub_value)
        else:
            put(str(key), value)


def _nested_hint(path: str) -> str:
    """For a key that is a setting of some section (``arch`` for ``model.arch``, or a
    flag's name), where it belongs; else nothing."""
    dotted = all_flags().get(path.replace("_", "-"))
    if dotted is None or dotted == path:
        return ""
    if "." not in dotted:  # a flag's spelling of a top-level setting ('batch-size')
        return f" (it is {dotted!r})"
    section, name = dotted.split(".", 1)
    return f" (it is {dotted}: in a YAML file under '{section}:', as '  {name}: ...')"


# Settings that name a file or folder, with what their none means.
PATH_SETTINGS = {"data.path": "the digits demo", "knn_train": "no kNN monitor",
                 "knn_test": "no kNN monitor", "init_from": "random weights"}


# Settings whose None is chosen automatically (their help says "None: auto"): `auto`,
# the word a user writes for it, is that None (--workers auto was 'not a whole number').
AUTO_IS_NONE = ("data.load_size", "data.workers")


def set_path(cfg: Config, path: str, value: Any, source: str) -> None:
    """Set ``cfg.a.b = value`` with type conversion; names the bad key on error."""
    *parents, name = path.split(".")
    obj: Any = cfg
    for part in parents:
        obj = getattr(obj, part, None)
        if not dataclasses.is_dataclass(obj):
            raise SimCLRError(f"{source}: unknown setting {shown(path)}")
    try:
        type_text = field_type(obj, name)
    except KeyError:
        raise SimCLRError(f"{source}: unknown setting {shown(path)}{_nested_hint(path)}") from None
    if dataclasses.is_dataclass(getattr(obj, name)):  # e.g. `model: 3` in a YAML file
        raise SimCLRError(f"{source}: section {path!r} must be a mapping of its settings, "
                          f"got {shown(value)}")
    # A flag's problem is named by the flag the user typed, a file's by its key.
    where = f"--{flag_of(path)}" if source == "flag" else f"{source}: {path}"
    if path in AUTO_IS_NONE and isinstance(value, str) and value.strip().lower() == "auto":
        value = None
    if path == "time_budget" and not is_null(value):
        value = parse_duration(value, where)
    if path in PATH_SETTINGS and isinstance(value, str) and is_null(value) \
            and os.path.lexists(value):  # `--data none` beside a folder named none
        raise SimCLRError(f"{where}: {value!r} means none ({PATH_SETTINGS[path]}), yet "
                          f"{value!r} is also a path here; write ./{value} to name it")
    setattr(obj, name, _coerce(value, type_text, where))


# ------------------------------------------------------------------------- YAML files

# Plain values a YAML file's text is read as: booleans only true and false (YAML 1.2),
# whole numbers only in decimal, floats only with a point. PyYAML's YAML 1.1 also reads
# on/off/yes/no as booleans, 0123 as octal, 1:30 as sexagesimal and 2024-01-01 as a
# date, where the same text given as a flag is another value: all other text stays
# text, which _coerce reads by the setting's type exactly as a flag's (a file and a flag
# agree). (prefix characters, tag, pattern)
_PLAIN_VALUES = (
    ("tTfF", "bool", r"(?i:true|false)$"),
    ("-+0123456789", "int", r"[-+]?(?:0|[1-9][0-9]*)$"),
    # (YAML 1.1's floats, which have a point: `1e3` stays text, as an older simclr
    # wrote `--out 1e3` into a provenance unquoted)
    ("-+.0123456789", "float", r"[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?$"
                               r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?$"
                               r"|[-+]?\.(?:inf|Inf|INF)$|\.(?:nan|NaN|NAN)$"),
)
_OTHER_TAGS = tuple(f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp"))


def _resolvers(base: dict[str, list[Any]], extra: bool) -> dict[str, list[Any]]:
    """``base``'s implicit resolvers with those of _PLAIN_VALUES: instead of its bools,
    numbers and dates, or (``extra``) besides them."""
    table = {c: [r for r in rules if extra or r[0] not in _OTHER_TAGS]
             for c, rules in base.items()}
    for first, tag, pattern in _PLAIN_VALUES:
        for c in first:
            table.setdefault(c, []).append((f"tag:yaml.org,2002:{tag}", re.compile(pattern)))
    return table


# How deep a YAML file simclr reads may nest, counted in nodes (its scalars a level
# too): a config.yaml's deepest, a word of a resumed run's provenance.earlier[i].argv,
# is 6; past this it is no file of settings (Python's recursion limit is ~1,000).
MAX_YAML_DEPTH = 64


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but plain values read as _PLAIN_VALUES says, and a
    key given twice in one mapping (e.g. two ``model:`` sections, of which plain YAML
    silently keeps the last) is an error."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeLoader.yaml_implicit_resolvers, False)
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # (PyYAML composes nested collections by recursion: `optim: [[[[...` 5,000 deep
        # was a RecursionError's traceback, here refused as the damaged file it is)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):  # YAML allows them; no setting is named so
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not a "
                    f"{'list' if isinstance(key, list) else 'mapping'}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{shown(key)} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class ConfigFile(str):
    """A ``--config`` path read once, at start-up, with its parsed ``settings``: every
    reader of the file (the layering, the checks of a supervised run's file, the
    launcher's device, each cell of a sweep) takes them from here through
    :func:`load_yaml`, so a file edited while the command starts cannot give it a
    config mixed of two versions. A str, it is the path wherever one is used."""

    settings: dict[str, Any]


def read_config_file(path: str) -> ConfigFile:
    """The ``--config`` file ``path``, read and parsed now (a user error if it cannot be,
    or if it holds no settings: an empty file, or comments alone, ran as the defaults
    without a word, where it was likely not saved yet or the wrong one)."""
    config = ConfigFile(path)
    config.settings = load_yaml(path)
    if not config.settings:
        raise SimCLRError(f"--config {path}: the file holds no settings (it is empty, "
                          "or comments alone, or {})")
    return config


def names_no_data(config_file: str | None, flags: dict[str, Any]) -> bool:
    """Whether neither the flags nor the ``--config`` file name a data folder (`--data
    none` included): then pretrain and sweep run the digits demo, with its preset under
    the file's settings, so a file of a few settings means what the same flags mean. (The
    file's other settings are checked later, over that preset.)"""
    if "data.path" in flags:
        return is_null(flags["data.path"])
    if config_file is None:
        return True
    settings = load_yaml(config_file)
    data = settings.get("data") or {}  # (not a mapping: refused later)
    if not isinstance(data, dict):
        return False
    # (a dotted key names it too: `data.path: DIR` took the demo's preset under the file)
    return is_null(data.get("path")) and is_null(settings.get("data.path"))


def parse_yaml(text: str) -> Any:
    """What a config file's YAML ``text`` holds, its plain values read as the settings
    read them (_UniqueKeyLoader, _PLAIN_VALUES); yaml.YAMLError."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML file holds (a :class:`ConfigFile`: the one read at start-up)."""
    if isinstance(path, ConfigFile):  # (a copy: no reader changes what the next reads)
        return copy.deepcopy(path.settings)
    p = Path(path).expanduser()
    if p.is_dir():
        raise SimCLRError(f"config file {p} is a folder; give the YAML file itself")
    if not p.is_file():
        problem = unreadable_path(p)
        raise SimCLRError(f"config file {p}: {problem}" if problem else
                          f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SimCLRError(f"config file {p} is not UTF-8 text (not a YAML file?)") from None
    except OSError as exc:
        raise SimCLRError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SimCLRError(f"config file {p} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:  # (empty, or comments alone)
        return {}
    if not isinstance(data, dict):  # ([] too: a list, not "no settings")
        raise SimCLRError(f"config file {p} must hold a mapping of settings")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong in a file and where, on one line (its message's first
    line is often the context alone: 'while scanning for the next token')."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:  # (a ReaderError: the character and why, on its first line)
        return str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):  # 'expected a single document in the stream'
        problem = f"{context}, {problem}"
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return " ".join(f"{problem}{where}".split())


# What a command's results file holds that no settings file does: the results of an
# evaluation or a supervised run name their ``command``, a run's summary.json its status.
_SUMMARY_KEYS = {"status", "steps", "checkpoint"}


def check_settings_file(data: dict[str, Any], path: str | Path) -> None:
    """Refuse a ``--config`` file that is a command's results rather than settings (JSON
    is YAML too: ``knn.json`` read as a config was 'unknown setting command')."""
    command = data.get("command")
    if isinstance(command, str):
        what = f"the results of `simclr {command}`"
    elif _SUMMARY_KEYS <= data.keys():
        what = "a run's summary (summary.json)"
    else:
        return
    raise SimCLRError(f"config file {path} is {what}, not a settings file; give --config a "
                      "run's config.yaml or a YAML file of settings (--print-config writes one)")


def yaml_text(data: dict[str, Any]) -> str:
    """A config mapping as YAML text, keys in their order (tuples become lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return yaml.dump(plain(data), Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """YAML's safe dumper, quoting text that YAML 1.1 or 1.2 would read as another value
    (``on``, ``0123``; ``1e3``): a config.yaml reads back the same in simclr
    (_UniqueKeyLoader) and in any other YAML reader."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeDumper.yaml_implicit_resolvers, True)


def save_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write a mapping as YAML (tuples become lists), whole or not at all."""
    text = yaml_text(data)
    written(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------- layering

def build_config(
    preset: str | None = None,
    config_file: str | None = None,
    flags: dict[str, Any] | None = None,
    inert_ok: Collection[str] = (),
    reads: Collection[str | None] = (),
) -> Config:
    """Defaults -> preset -> YAML -> flags (dotted paths), then validate. A flag with
    no effect under the other settings is refused (:mod:`simclr.inert`) unless it is in
    ``inert_ok`` (a sweep's common flags, which may act in some cells only); ``reads``:
    data specs the config does not name, read through its data settings (supervised's
    ``--train`` and ``--test``)."""
    if flags is not None and (not isinstance(flags, dict)
                              or not all(isinstance(k, str) for k in flags)):
        got = type(flags).__name__ if not isinstance(flags, dict) else "a key " + repr(
            next(k for k in flags if not isinstance(k, str)))
        raise SimCLRError(f"flags must be a dict of setting -> value ({{'batch_size': 8}}), "
                          f"got {got}")
    if config_file is not None and not isinstance(config_file, (str, os.PathLike)):
        raise SimCLRError(f"config_file must be a path to a YAML file, got "
                          f"{type(config_file).__name__}")
    cfg = Config()
    lr_origin = None  # (lr, its scaling rule, batch) of the last layer that gave an lr
    lr_source = ""  # that layer, as messages name it
    # The views' side after each layer (defaults, preset, file): see eval_size below.
    sides = [cfg.augment.size]
    optimizers = [cfg.optim.name]  # (likewise the optimizer after each layer)
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise SimCLRError(f"unknown preset {shown(preset)} (choose from {', '.join(PRESETS)})")
        apply_overrides(cfg, PRESETS[preset], f"preset {preset}")
        if "lr" in PRESETS[preset].get("optim", {}):
            lr_origin = (cfg.optim.lr, cfg.optim.lr_scaling, cfg.batch_size)
            lr_source = f"preset {preset}"
    sides.insert(0, cfg.augment.size)
    optimizers.insert(0, cfg.optim.name)
    if config_file is not None:
        # A run's own config.yaml is a valid --config: what it only records is skipped.
        filed = load_yaml(config_file)
        check_settings_file(filed, config_file)
        settings = {k: v for k, v in filed.items() if k not in RECORDED_KEYS}
        apply_overrides(cfg, settings, str(config_file))
        if "optim.lr" in _paths_of(settings):  # (null: the rule's base lr, not the preset's)
            lr_origin = None if cfg.optim.lr is None else (cfg.optim.lr, cfg.optim.lr_scaling,
                                                           cfg.batch_size)
            lr_source = str(config_file)
    sides.insert(0, cfg.augment.size)
    optimizers.insert(0, cfg.optim.name)
    for path, value in (flags or {}).items():
        set_path(cfg, path, value, "flag")
    optimizers.insert(0, cfg.optim.name)  # optimizers[i]: after layer i (3: the defaults)
    flagged = set(flags or {})
    filed_paths = _paths_of(settings) if config_file is not None else set()
    layers = [flagged, filed_paths, _paths_of(PRESETS[preset]) if preset is not None else set()]
    # A preset's or a file's lr is its optimizer's: AdamW chosen at a later layer takes
    # its own base (config.ADAMW_BASE_LR), not LARS's 1.0 (under which the demo collapsed),
    # and LARS or SGD chosen over an AdamW lr (an AdamW run's config.yaml) the paper's,
    # not AdamW's, 300 times smaller. LARS and SGD share their scale: kept between them.
    lr_layer = next((i for i, given in enumerate(layers) if "optim.lr" in given), 3)
    if (cfg.optim.name == "adamw") != (optimizers[lr_layer] == "adamw"):
        cfg.optim.lr, lr_origin = None, None
    if lr_origin is not None and "optim.lr" not in (flags or {}):
        carry_lr(cfg, *lr_origin, origin=lr_source)  # type: ignore[arg-type]
    # A preset's or a file's ResNet width means nothing to another network named after it:
    # width 1 unless given at the arch's own layer or a later one (a printed config holds
    # every setting, its ResNet's width too, which --arch on top then replaces).
    width_given = "model.width" in flagged or ("model.width" in filed_paths
                                               and "model.arch" not in flagged)
    if cfg.model.arch not in ARCHS and not width_given:
        cfg.model.width = 1.0
    if cfg.model.arch not in ARCHS and "model.projection_shortcuts" not in flagged:
        cfg.model.projection_shortcuts = False  # (a preset's ResNet's: torchvision's is as it is)
    # Likewise a preset's or a file's evaluation and stored sides are for its own views:
    # another --image-size given at a later layer (a flag, a sweep's cell) without
    # --eval-size / --load-size evaluates at the views' side and stores at the automatic
    # one (cifar10-cpu's 32 is for its 24-px views, not for 96-px photos; imagenet's 384
    # stored CIFAR's 32-px pictures upscaled 12 times for 32-px views); the same side
    # given again keeps them.
    sides.insert(0, cfg.augment.size)  # sides[i]: after layer i (3: the defaults)
    _drop_for_other_views(cfg, layers, sides, "augment.eval_size", MIN_SIZE)
    _drop_for_other_views(cfg, layers, sides, "data.load_size", 1)
    # An unset lr is the paper's base for the scaling rule chosen (0.075 for sqrt): said
    # explicitly in the resolved config, so config.yaml and --print-config show it.
    cfg.optim.lr = cfg.optim.base_lr()
    from simclr.validate import check_scale, validate  # it imports this module

    try:
        validate(cfg)
        check_scale(cfg)
    except SettingError as exc:
        # Named where the user wrote it: a value from the file (and no flag) by its key,
        # and the other settings it speaks of too (by their flags where flags gave them).
        if config_file is not None and exc.path not in (flags or {}) \
                and exc.path in _paths_of(settings):
            named = exc.named(lambda p: f"--{flag_of(p)}" if p in (flags or {}) else p)
            raise SimCLRError(f"{config_file}: {named}") from None
        if preset is not None and exc.path not in (flags or {}) \
                and exc.path in _paths_of(PRESETS[preset]):  # (the preset's value)
            raise SimCLRError(f"{exc} (set by --preset {preset}; give --{flag_of(exc.path)})"
                              ) from None
        raise
    from simclr.inert import refuse_inert  # it imports this module

    refuse_inert(cfg, set(flags or {}) - set(inert_ok), reads)
    absolute_paths(cfg)
    return cfg


def _drop_for_other_views(cfg: Config, layers: list[set[str]], sides: list[int], path: str,
                          least: int) -> None:
    """Unset the side at ``path`` (``augment.eval_size``, ``data.load_size``) when the
    views' side was given at a later layer than it (``layers``: flags, file, preset;
    lower is later) and differs from the views' side of the layer that gave it
    (``sides[i]``: after layer i). A value no run may have (outside ``least`` ..
    MAX_SIDE) stays, to be refused by validation rather than dropped unsaid."""
    given = [next((i for i, paths in enumerate(layers) if p in paths), len(layers))
             for p in ("augment.size", path)]
    section, name = path.split(".")
    side = getattr(getattr(cfg, section), name)
    if given[0] < given[1] and cfg.augment.size != sides[given[1]] \
            and isinstance(side, int) and least <= side <= MAX_SIDE:
        setattr(getattr(cfg, section), name, None)


def apply_resume_flags(cfg: Config, flags: dict[str, Any], allowed: AbstractSet[str],
                       inert_ok: Collection[str] = (),
                       reads: Collection[str | None] = ()) -> None:
    """The flags given with ``--resume`` onto the saved config: only ``allowed`` settings
    (where and how fast the run goes, not what it computes) may change, and each value
    is checked as a new run's would be, so a resumed run never saves an invalid config.
    Any other flag is refused unless it gives the saved value (the first command with
    ``--resume`` added)."""
    _check_same_out(cfg.out, flags.get("out"))
    trial, unfit = copy.deepcopy(cfg), set()
    for path, value in flags.items():
        try:
            set_path(trial, path, value, "flag")
        except SimCLRError:  # a value it cannot take: a change (said below if allowed)
            unfit.add(path)
    changed = unfit | set(differing(cfg, trial))  # ('16' is 16, a folder its full path)
    refused = sorted(f"--{flag_of(path)}" for path in set(flags) - allowed if path in changed)
    if refused:
        raise SimCLRError(f"--resume continues the saved settings; cannot change "
                          f"{', '.join(refused)}")
    for path, value in flags.items():
        if path in allowed:
            set_path(cfg, path, value, "flag")
    from simclr.inert import refuse_inert
    from simclr.validate import check_knn_every, validate

    validate(cfg)
    if "knn_every" in flags:  # (a new value: held as a new run's)
        check_knn_every(cfg)

    refuse_inert(cfg, set(flags) - set(inert_ok), reads)  # (as build_config's)


def _check_same_out(run_dir: str, out: Any) -> None:
    """``--out`` with ``--resume`` must name the resumed run's folder (``run_dir``, as
    found now): another is most often where the run was before it was moved, given
    again with the first command, and the run continues only where its files are."""
    if out is None or _absolute(str(out)) == _absolute(run_dir):
        return
    raise SimCLRError(f"--out {out} is not the folder of the run --resume names, which is "
                      f"{run_dir} now (moved since it started?); resume it there: drop "
                      f"--out, or give --out {run_dir}")


def check_same_recipe(saved: Config, given: Config, allowed: AbstractSet[str],
                      flags: Collection[str] = ()) -> None:
    """``--resume`` with ``--preset``/``--config`` (the first command again): accepted
    where they, with the flags, give the saved settings (those ``allowed`` to change
    aside), refused naming what they would change: the ``flags`` given first (a setting
    they change, --lr under another --lr-scaling, is not what the user typed), at most
    a few."""
    changed = recipe_changes(saved, given, allowed)
    if set(changed) == {"optim.lr"} and "optim.lr" not in flags \
            and earlier_adamw_lr(changed["optim.lr"][0], given):
        raise SimCLRError(f"--resume continues the saved settings: the run trained AdamW at "
                          f"{earlier_adamw_default(changed['optim.lr'][0], given)}; "
                          f"`simclr pretrain --resume {saved.out}` alone, without "
                          "--preset/--config and the flags, continues the run as it was")
    if changed:
        paths = sorted(changed, key=lambda p: p not in flags)  # (stable: the config's order)
        said = ", ".join(f"--{flag_of(p)} ({_value_text(changed[p][0])} saved, "
                         f"{_value_text(changed[p][1])} asked)" for p in paths[:_MOST_NAMED])
        more = f" and {len(paths) - _MOST_NAMED} more" if len(paths) > _MOST_NAMED else ""
        raise SimCLRError(f"--resume continues the saved settings; cannot change {said}"
                          f"{more} (asked by --preset/--config and the flags)")


def earlier_adamw_lr(saved_lr: Any, given: Config) -> bool:
    """Whether ``saved_lr``, an AdamW run's, is a LARS-sized default of a release before
    2026-12-06 (it gave AdamW a preset's or file's lr) where ``given``, AdamW too, has
    this release's default (config.ADAMW_BASE_LR): a change no --lr asked for."""
    if given.optim.name != "adamw" or not isinstance(saved_lr, (int, float)):
        return False
    default = given.optim.default_lr()
    return given.optim.lr == default and saved_lr > default


def earlier_adamw_default(saved_lr: float, given: Config) -> str:
    """What a message says of an :func:`earlier_adamw_lr`: the run's lr, and the default
    of this release at ``given``'s scaling rule (--lr 1 ...; ... 0.001 x B/256 ...)."""
    rule = given.optim.lr_scaling
    scaled = {"linear": " x B/256", "sqrt": " x sqrt(B)"}.get(rule, "")
    return (f"--lr {_value_text(saved_lr)}, a default of a release before 2026-12-06 (a "
            f"preset's or file's LARS-sized lr kept for AdamW); this release's AdamW default "
            f"is {_value_text(given.optim.lr)}{scaled} (LARS-sized rates collapse AdamW)")


def _value_text(value: Any) -> str:
    """A setting's value in a message: a float to 6 digits (0.0883883), others as is."""
    return f"{value:g}" if isinstance(value, float) else str(value)


_MOST_NAMED = 4  # changes a refusal names (another preset changes dozens)


def recipe_changes(saved: Config, given: Config, allowed: AbstractSet[str]
                   ) -> dict[str, tuple[Any, Any]]:
    """{setting: (saved, given)} of the settings ``given`` changes that continuing the
    ``saved`` run may not (``allowed`` aside; --out neither: the continued run's folder
    is named, and a preset's own --out is no change of it)."""
    return {p: v for p, v in differing(saved, given).items() if p not in allowed and p != "out"}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config's nested dict as {dotted path: value}, tuples as lists (as YAML reads
    them back)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def differing(saved: Config, given: Config) -> dict[str, tuple[Any, Any]]:
    """The settings (dotted path -> (saved value, given value)) in which ``given`` differs
    from ``saved``, its local paths made absolute first as a run's are."""
    absolute_paths(given)
    before, now = flatten(saved.to_dict()), flatten(given.to_dict())
    return {p: (v, now.get(p)) for p, v in before.items() if v != now.get(p)}


def carry_lr(cfg: Config, lr: float, rule: str, batch: int, origin: str = "") -> None:
    """An lr a preset or a config file gives belongs to its scaling rule. Under another
    ``--lr-scaling`` (and no ``--lr``), keep its peak lr at its batch size, expressed in
    the new rule: cifar10-cpu's 1.0 x 512/256 = 2.0 becomes 2.0 / sqrt(512) = 0.088 under
    sqrt, not 1.0 x sqrt(512) = 22.6 (the batch then scales it by the new rule); a run's
    config.yaml (lr 0.3, linear, batch 4096) read with sqrt gets 0.3 x 16 / 64 = 0.075.

    Before validation: the ``origin`` layer's (a preset, a file) ``rule`` and ``batch``
    are checked here, a problem named as that layer's (``run.yaml: batch_size must be
    positive, got 0``); an unknown new rule is left to validation, which names it where
    it was given."""
    from simclr.validate import LR_SCALINGS, check_lr_origin  # it imports this module

    if cfg.optim.lr_scaling == rule or cfg.optim.lr_scaling not in LR_SCALINGS:
        return
    try:
        check_lr_origin(rule, batch)
    except SettingError as exc:  # (a value the later layers replaced, or not)
        raise SimCLRError(f"{origin}: {exc.named(str)}" if origin else str(exc)) from None
    from simclr.optim import scaled_lr  # optim imports torch

    cfg.optim.lr = scaled_lr(lr, batch, rule) / scaled_lr(1.0, batch, cfg.optim.lr_scaling)


def _paths_of(settings: dict[str, Any]) -> set[str]:
    """The dotted settings a (possibly nested) YAML mapping gives."""
    return {f"{key}.{sub}" if isinstance(value, dict) else str(key)
            for key, value in settings.items()
            for sub in (value if isinstance(value, dict) else [None])}


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def absolute_paths(cfg: Config) -> None:
    """Make the run's local paths absolute, so the saved config (resume, ``--config``,
    sweeps) means the same folders from any working directory.

    Data folders only where they exist as paths: ``cifar10`` names a torchvision data
    set unless such a folder is there (as :func:`simclr.data.open_source` reads it), and
    a missing folder keeps the name the user typed for its error message. The cache
    and data-set roots keep a leading ``~`` (it is expanded where they are used).
    """
    for owner, name in ((cfg.data, "path"), (cfg, "knn_train"), (cfg, "knn_test"),
                        (cfg, "init_from")):
        value = getattr(owner, name)
        if value and os.path.exists(os.path.expanduser(value)):
            setattr(owner, name, _absolute(value))
    for owner, name in ((cfg.data, "cache_dir"), (cfg.data, "root")):
        value = getattr(owner, name)
        if not value.startswith("~"):
            setattr(owner, name, _absolute(value))
    cfg.out = _absolute(cfg.out)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config saved with :meth:`Config.to_dict` (checkpoints, config.yaml).

    A setting the saved config predates takes :func:`unsaved_value`, what that run did.
    """
    cfg = Config()
    for path, value in SAVED_BEFORE.items():
        section, _, name = path.rpartition(".")
        if name not in (data.get(section) or {} if section else data):
            set_path(cfg, path, value, "saved config")
    apply_overrides(cfg, data, "saved config")
    return cfg
