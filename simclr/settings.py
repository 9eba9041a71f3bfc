"""How a :class:`~simclr.config.Config` is built from what the user gives.

Layers, later ones win: dataclass defaults (the paper's ImageNet recipe, Chen et al.
2020, Sec. 2.3 and App. A) -> ``--preset`` -> ``--config FILE.yaml`` -> command-line flags.
The result is then validated (:mod:`simclr.validate`: every value in its range, one line
per problem, named as the flag or the file's key) and a flag that has no effect under
the other settings is refused (:mod:`simclr.inert`). Here too: the flag of every
setting, reading values (durations, ``none``, pairs), and a saved config read back
(checkpoints, ``config.yaml``). The YAML files themselves are read and written by
:mod:`simclr.config_file`; what ``--resume`` may change of a saved recipe is
:mod:`simclr.recipe`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import reprlib
from collections.abc import Callable, Collection
from dataclasses import fields
from typing import Any

from simclr.config import (
    ARCHS,
    MAX_SIDE,
    MIN_SIZE,
    SAVED_BEFORE,
    Config,
    default_of,
    field_type,
    settings_of,
)
from simclr.errors import SimCLRError
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


def _coerce(value: Any, type_text: str, where: str, path: str) -> Any:
    """Convert YAML/flag text to the field's declared type (annotations are strings);
    ``path`` is the dotted setting, whose default a pair's message offers as its example."""
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
        wanted = "true, false or auto" if base == "bool" and optional else wanted_text(base, path)
        raise SimCLRError(f"{where}: expected {wanted}, got {shown(value)}") from None
    return value


WANTED = {"bool": "true or false", "int": "a whole number", "float": "a number",
          "tuple": "two numbers A,B", "str": "text"}


def wanted_text(base: str, path: str) -> str:
    """What a setting of kind ``base`` takes, for its message. A pair's example is the
    setting's own default, a value it takes: one example for all (0.08,1 of --crop-scale)
    was offered for --betas too, which refuses a 1."""
    if base != "tuple":
        return WANTED.get(base, base)
    example = default_of(path)
    if not isinstance(example, tuple):  # (an optional pair, no default to show)
        return WANTED[base]
    return f"{WANTED[base]} (e.g. {typed_pair(example)})"


def typed_pair(pair: tuple[float, ...]) -> str:
    """A pair setting's value as it is typed on the line: ``(0.08, 1.0)`` -> '0.08,1'
    (its messages' examples, ``--help``'s defaults, a sweep's hint)."""
    return ",".join(f"{v:g}" for v in pair)


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
        if source == "flag":  # build_config(flags={"model": {"width": 0.5}}), a Python caller's
            inner = next(iter(value), "NAME") if isinstance(value, dict) else "NAME"
            raise SimCLRError(f"flags name each setting by its dotted path "
                              f"('{path}.{inner}'), not a section {path!r}")
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
    setattr(obj, name, _coerce(value, type_text, where, path))



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
        from simclr.config_file import check_settings_file, load_yaml  # it imports this module

        # A run's own config.yaml is a valid --config: what it only records is skipped.
        filed = load_yaml(config_file)
        check_settings_file(filed, config_file)
        settings = settings_of(filed)
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
