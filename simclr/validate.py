"""Checking a run's settings before any work starts: the first problem, in one line.

:func:`validate` holds every value of a :class:`~simclr.config.Config` to its range and
its choices (a checkpoint's stored config too: a value no run could have saved is
refused when it is read); :func:`check_scale` adds what only a new run must meet. Each
problem raises :class:`~simclr.settings.SettingError`, named as the flag or, when it came
from a config file, as the file's key (:func:`simclr.settings.build_config`). Settings
that are valid but do nothing under the others are :mod:`simclr.inert`'s concern.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from simclr.config import (
    ARCHS,
    COLOR_OPS,
    CROP_SAMPLERS,
    DECODERS,
    DEVICES,
    FIG5_OPS,
    MAX_EPOCHS,
    MAX_LR,
    MAX_REAL,
    MAX_SEED,
    MAX_SIDE,
    MAX_THREADS,
    MAX_WORKERS,
    MIN_BLUR_SIGMA,
    MIN_SIZE,
    MIN_TEMPERATURE,
    OFFICIAL_MIN_COVERED,
    PRECISIONS,
    AugmentConfig,
    Config,
    DataConfig,
    mps_refused,
)
from simclr.errors import SimCLRError
from simclr.folders import WRITTEN_NOT_UTF8, is_utf8
from simclr.settings import SettingError, field_kind, shown, wanted_text

MAX_WIDTH = 64  # a width multiplier; 64 x ResNet-50 would hold about 100 billion weights
# The projection head's bounds: Fig. 8 tries z of 32-2048 dimensions and SimCLRv2 3
# layers; far past these a head is a typo (1e20 overflowed torch with a traceback, a
# million layers took minutes to build).
MAX_HEAD_DIM, MAX_HEAD_LAYERS = 65536, 16
LR_SCALINGS = ("linear", "sqrt", "none")  # optim.scaled_lr's rules (App. B.1)
# No run's batch may be larger than its data (plan.check_batch_fits), and no set holds
# 2^31 images: past it a batch is a typo (1 and 400 zeros overflowed the lr's float).
MAX_BATCH = 2**31 - 1


def _get(cfg: Config, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# What each declared type of a setting takes (a bool is no number, a number no text),
# and the plain Python value it is kept as (what YAML can save)
_TAKES: dict[str, tuple[Any, Callable[[Any], Any]]]
_TAKES = {"int": (numbers.Integral, int), "float": (numbers.Real, float),
          "bool": (bool, bool), "str": ((str, os.PathLike), os.fspath)}


def _check_types(obj: Any, prefix: str = "") -> None:
    """Every setting of its declared type. A config edited from Python is not coerced
    as flags and YAML are (``cfg.batch_size = '16'``): it met a comparison of text with
    a number deep inside, as a bare TypeError. A value of the right kind in another
    form (a Path for a folder, a numpy number) is kept as the plain value it stands for."""
    for f in fields(obj):
        value, path = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_types(value, f"{path}.")
            continue
        base, optional = field_kind(f.type)
        if value is None and optional:
            continue
        if base not in _TAKES and base != "tuple":  # a section replaced by another value
            raise SimCLRError(f"section {path!r} of the config must be a {base}, got "
                              f"{type(value).__name__}")
        if base == "tuple":
            ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
                isinstance(x, numbers.Real) and not isinstance(x, bool) for x in value)
            if ok:
                setattr(obj, f.name, (float(value[0]), float(value[1])))
        else:
            kinds, plain = _TAKES[base]
            ok = isinstance(value, kinds) and (base == "bool" or not isinstance(value, bool))
            if ok:
                setattr(obj, f.name, plain(value))
        if not ok:
            raise SettingError(path, f" must be {wanted_text(base, path)}, got {shown(value)}")


def _check_finite(obj: Any, prefix: str = "") -> None:
    """No setting may be infinite or NaN (a float, or a number of a pair): each would
    pass a range check and fail later, deep in the run."""
    for f in fields(obj):
        value, path = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{path}.")
            continue
        numbers = value if isinstance(value, (tuple, list)) else (value,)
        for x in numbers:
            if isinstance(x, float) and not math.isfinite(x):
                raise SettingError(path, f" must be a finite number, got {value}")


def _choice(value: str, choices: tuple[str, ...], path: str) -> None:
    if value not in choices:
        raise SettingError(path, f": unknown value {shown(value)} (choose from "
                                 f"{', '.join(choices)})")


def _positive(value: float | int | None, path: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    ok = value >= 0 if allow_zero else value > 0
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        bound = "non-negative" if allow_zero else "positive"
        raise SettingError(path, f" must be {bound}, got {value}")


def _bounded(value: float | None, path: str, most: float = MAX_REAL) -> None:
    """At most ``most`` (:data:`~simclr.config.MAX_REAL`: far past any useful rate or
    strength, within float32, in which torch applies it)."""
    if value is not None and value > most:
        got = value if isinstance(value, int) else f"{value:g}"
        raise SettingError(path, f" must be at most {most:g}, got {got}")


def _check(ok: bool, path: str, detail: str) -> None:
    if not ok:
        raise SettingError(path, " " + detail)




def check_crops(a: AugmentConfig) -> None:
    """New crops that can be drawn (a new run's, an evaluation's flags; a saved run that
    trained on whole pictures this way still loads): the official sampler keeps >= 10%
    of the picture (min_object_covered), so below it no crop qualifies and every view
    would silently be the whole picture."""
    hi = a.crop_scale[1]
    _check(a.crop_sampler != "official" or hi >= OFFICIAL_MIN_COVERED, "augment.crop_scale",
           f"max {hi:g} is below what --crop-sampler official keeps of a picture "
           f"({OFFICIAL_MIN_COVERED:g}, as the official code's min_object_covered): no crop "
           "would qualify; raise it or use --crop-sampler torchvision")


def check_knn_every(cfg: Config) -> None:
    """A new --knn-every (a new run's, a resumed run's flag) within the epochs' bound:
    1e308 passed and the run crashed on its interval in steps, round(inf), once started.
    (A saved run's larger one ran, never evaluating: :func:`validate` keeps it.)"""
    _check(cfg.knn_every <= MAX_EPOCHS, "knn_every", f"must be at most {MAX_EPOCHS:g} "
           f"epochs, got {cfg.knn_every:g}")


def check_scale(cfg: Config) -> None:
    """A new run's model and views large enough to mean something (saved configs are
    not held to it: :func:`validate` alone decides whether a checkpoint loads)."""
    check_crops(cfg.augment)
    check_knn_every(cfg)
    # (a sweep of head=linear,mlp trained one run under two labels; a run saved so still
    # loads: the same module as the linear head)
    if cfg.model.head == "mlp" and cfg.model.head_layers == 1:
        raise SettingError("model.head_layers", " 1 makes the mlp head one layer without a "
                           "ReLU, which is {} linear (Fig. 8's linear projection); give that",
                           ("model.head",))
    if cfg.loss.normalize and cfg.model.head != "none" and cfg.model.head_out_dim == 1:
        raise SettingError("model.head_out_dim", " 1 with z L2-normalised ({}): every z is "
                           "+1 or -1, whose gradient is zero, so nothing would train; give 2 "
                           "or more", ("loss.normalize",))
    _check(cfg.model.width * 64 >= 1, "model.width", f"must be at least 1/64 (the first "
           f"layers' 64 channels: below it they would keep fewer than one), got "
           f"{cfg.model.width}")
    _check(cfg.augment.size >= MIN_SIZE, "augment.size", f"must be at least {MIN_SIZE} "
           f"pixels, got {cfg.augment.size}")
    side = cfg.augment.eval_size
    _check(side is None or MIN_SIZE <= side <= MAX_SIDE, "augment.eval_size",
           f"must be {MIN_SIZE} to {MAX_SIDE} pixels, got {side}")
    if cfg.model.arch not in ARCHS:  # (a run saved before this check still evaluates at
        from simclr.backbones import size_problem  # another --image-size)

        # (the views' side: validate's, for a saved run too)
        problem = size_problem(cfg.model.arch, side, "augment.eval_size")
        if problem is not None:
            raise SettingError(*problem)
    # Below the view's side every crop would be upscaled from the stored picture.
    _check(cfg.data.load_size is None or cfg.data.load_size >= cfg.augment.size,
           "data.load_size", f"must be at least the view's side (--image-size "
           f"{cfg.augment.size}), got {cfg.data.load_size}: every crop would be upscaled "
           "from it")


def validate(cfg: Config) -> None:
    """Check every setting before any work starts; one-line message per problem."""
    _check_types(cfg)
    _check_finite(cfg)
    for path in ("out", "data.path", "knn_train", "knn_test", "init_from"):
        value = _get(cfg, path)  # '' would be the current folder
        if value is not None and not str(value).strip():
            what = "a file or folder" if path == "init_from" else "a folder"
            raise SettingError(path, f" must name {what}, got an empty value")
    if not is_utf8(cfg.out):  # (a file's or the API's: the flag's is refused at once)
        raise SettingError("out", f" {ascii(cfg.out)}: {WRITTEN_NOT_UTF8}; choose another")
    _validate_model(cfg)
    _validate_loss(cfg)
    _check_batch(cfg.batch_size)  # (before the optimizer's peak lr, computed from it)
    _validate_optim(cfg)
    _validate_run(cfg)
    validate_augment(cfg.augment)


def _validate_model(cfg: Config) -> None:
    _positive(cfg.model.width, "model.width")
    _check(cfg.model.width <= MAX_WIDTH, "model.width", f"must be at most {MAX_WIDTH} (the "
           f"paper's widest is 4), got {cfg.model.width}")
    if cfg.model.arch not in ARCHS:  # a torchvision network (simclr.backbones), or none
        from simclr.backbones import arch_problem, size_problem

        problem = arch_problem(cfg.model.arch, cfg.model.width, cfg.model.cifar_stem,
                               cfg.augment.size) or size_problem(cfg.model.arch,
                                                                 cfg.augment.size)
        if problem is not None:
            raise SettingError(*problem)
        side = cfg.augment.eval_size
        if cfg.model.arch.startswith("vit_") and side not in (None, cfg.augment.size):
            raise SettingError("augment.eval_size", f" {side}: a {cfg.model.arch}'s position "
                               f"embeddings are for its training side ({cfg.augment.size} "
                               "px); drop it")
    _choice(cfg.model.head, ("none", "linear", "mlp"), "model.head")
    for path, most in (("head_layers", MAX_HEAD_LAYERS), ("head_out_dim", MAX_HEAD_DIM),
                       ("head_hidden_dim", MAX_HEAD_DIM)):
        value = getattr(cfg.model, path)
        _positive(value, f"model.{path}")
        _check(value is None or value <= most, f"model.{path}",
               f"must be at most {most}, got {value}")


def _validate_loss(cfg: Config) -> None:
    _choice(cfg.loss.name, ("nt_xent", "nt_logistic", "margin_triplet"), "loss.name")
    for name in ("temperature", "margin", "weight"):  # (a margin of 0: App. B.10's grid)
        _positive(getattr(cfg.loss, name), f"loss.{name}", allow_zero=name == "margin")
        _bounded(getattr(cfg.loss, name), f"loss.{name}")
    _check(cfg.loss.temperature >= MIN_TEMPERATURE, "loss.temperature",
           f"must be at least {MIN_TEMPERATURE:g}, got {cfg.loss.temperature:g}")
    if cfg.loss.semi_hard and cfg.loss.name == "nt_xent":  # it would be silently ignored
        raise SettingError("loss.semi_hard", " applies to {} nt_logistic and margin_triplet "
                           "(NT-Xent weighs every negative by its softmax)", ("loss.name",))


def _validate_optim(cfg: Config) -> None:
    """The optimizer and its schedule (Sec. 2.3, App. B.1); epochs too, as a count of steps."""
    _choice(cfg.optim.name, ("lars", "sgd", "adamw"), "optim.name")
    _positive(cfg.optim.lr, "optim.lr")
    _choice(cfg.optim.lr_scaling, LR_SCALINGS, "optim.lr_scaling")
    _positive(cfg.optim.weight_decay, "optim.weight_decay", allow_zero=True)
    _check(0 <= cfg.optim.momentum < 1, "optim.momentum",
           f"must lie in [0, 1), got {cfg.optim.momentum}")
    _positive(cfg.optim.eta, "optim.eta")
    _positive(cfg.optim.warmup_epochs, "optim.warmup_epochs", allow_zero=True)
    _positive(cfg.optim.final_lr, "optim.final_lr", allow_zero=True)
    for name in ("weight_decay", "eta"):
        _bounded(getattr(cfg.optim, name), f"optim.{name}")
    for name in ("lr", "final_lr"):
        _bounded(getattr(cfg.optim, name), f"optim.{name}", MAX_LR)
    lr, batch = cfg.optim.lr, cfg.batch_size  # (None in an encoder's stored config)
    if lr is not None and batch is not None and batch > 0 and cfg.optim.final_lr is not None:
        scale = {"linear": batch / 256, "sqrt": math.sqrt(batch), "none": 1.0}
        peak = lr * scale[cfg.optim.lr_scaling]  # optim.scaled_lr (App. B.1)
        if cfg.optim.final_lr > peak:
            _check(False, "optim.final_lr", f"must be at most the peak lr the cosine decays "
                   f"from ({peak:g}: --lr {lr:g} scaled for batch {batch}), got "
                   f"{cfg.optim.final_lr:g}")
    for path in ("epochs", "optim.warmup_epochs"):  # counted in steps, which must fit
        value = _get(cfg, path)
        _check(value is None or value <= MAX_EPOCHS, path,
               f"must be at most {MAX_EPOCHS:g}, got {value}")
    wf = cfg.optim.warmup_fraction
    _check(wf is None or 0 <= wf < 1, "optim.warmup_fraction", f"must lie in [0, 1), got {wf}")
    _check(all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas",
           f"must lie in [0, 1), got {cfg.optim.betas}")


def check_lr_origin(rule: str, batch: int) -> None:
    """The scaling rule and batch a preset's or a file's lr was given for, which
    settings.carry_lr expresses in another --lr-scaling before :func:`validate` runs
    (batch 0 divided by zero there)."""
    _choice(rule, LR_SCALINGS, "optim.lr_scaling")
    _positive(batch, "batch_size")
    _check(batch <= MAX_BATCH, "batch_size", f"must be at most {MAX_BATCH}, got {shown(batch)}")


def _check_batch(batch: int) -> None:
    _positive(batch, "batch_size")
    _check(batch >= 2, "batch_size", f"must be at least 2, got {batch} (BatchNorm in "
           "training takes its statistics from the batch)")
    _check(batch <= MAX_BATCH, "batch_size", f"must be at most {MAX_BATCH}, got {shown(batch)}")


def _validate_run(cfg: Config) -> None:
    """The run's length, devices, data, bookkeeping and kNN monitor."""
    _positive(cfg.epochs, "epochs")
    _positive(cfg.max_steps, "max_steps")
    _positive(cfg.time_budget, "time_budget")
    _choice(cfg.precision, PRECISIONS, "precision")
    if refused := mps_refused(cfg.device):
        raise SettingError("device", f" {cfg.device}{refused}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        raise SettingError("device", f": unknown device {shown(cfg.device)} ({DEVICES})")
    validate_data(cfg.data)
    _positive(cfg.threads, "threads")
    _check(cfg.threads is None or cfg.threads <= MAX_THREADS, "threads",
           f"must be at most {MAX_THREADS}, got {cfg.threads}")
    _check(0 <= cfg.seed <= MAX_SEED, "seed", f"must lie in [0, 2^63 - 1], got {cfg.seed}")
    _positive(cfg.log_every, "log_every")
    _positive(cfg.checkpoint_every, "checkpoint_every", allow_zero=True)
    _positive(cfg.checkpoint_minutes, "checkpoint_minutes", allow_zero=True)
    _positive(cfg.keep_checkpoints, "keep_checkpoints")
    _choice(cfg.nan_policy, ("stop", "skip"), "nan_policy")
    _positive(cfg.max_bad_steps, "max_bad_steps", allow_zero=True)
    _positive(cfg.knn_every, "knn_every")
    _positive(cfg.knn_k, "knn_k")
    _check(cfg.knn_temperature >= MIN_TEMPERATURE, "knn_temperature",
           f"must be at least {MIN_TEMPERATURE:g}, got {cfg.knn_temperature:g}")
    if (cfg.knn_train is None) != (cfg.knn_test is None):
        given, other = (("knn_train", "knn_test") if cfg.knn_test is None
                        else ("knn_test", "knn_train"))
        raise SettingError(given, " and {} go together", (other,))


def validate_data(d: DataConfig) -> None:
    """Check the data settings (also those an evaluation from Python builds from its
    arguments: their types too)."""
    _check_types(d, "data.")
    _choice(d.cache, ("auto", "on", "off"), "data.cache")
    _choice(d.decoder, DECODERS, "data.decoder")
    _choice(d.store, ("full", "center"), "data.store")
    _positive(d.load_size, "data.load_size")
    _check(d.load_size is None or d.load_size <= MAX_SIDE, "data.load_size",
           f"must be at most {MAX_SIDE} pixels, got {d.load_size}")
    _positive(d.workers, "data.workers", allow_zero=True)
    _bounded(d.workers, "data.workers", MAX_WORKERS)
    _positive(d.max_pixels, "data.max_pixels")
    for name in ("cache_dir", "root"):
        _check(bool(str(getattr(d, name)).strip()), f"data.{name}",
               "must name a folder, got an empty value")


def validate_augment(a: AugmentConfig) -> None:
    """Check the augmentation settings (also those the evaluation commands build, and
    a TwoViewAugment's config built by hand: its types too)."""
    _check_types(a, "augment.")
    _check_finite(a, "augment.")
    _positive(a.size, "augment.size")
    _positive(a.eval_size, "augment.eval_size")
    # (no run could save a larger one; a TwoViewAugment of one would exhaust memory)
    _check(a.size <= MAX_SIDE, "augment.size", f"must be at most {MAX_SIDE} pixels, got "
           f"{a.size}")
    _choice(a.interpolation, ("bilinear", "bicubic"), "augment.interpolation")
    _choice(a.crop_sampler, CROP_SAMPLERS, "augment.crop_sampler")
    _choice(a.color_ops, COLOR_OPS, "augment.color_ops")
    _positive(a.color_strength, "augment.color_strength", allow_zero=True)
    lo, hi = a.crop_scale
    _check(0 < lo <= hi <= 1, "augment.crop_scale",
           f"must satisfy 0 < min <= max <= 1, got {a.crop_scale}")
    _check(0 < a.crop_ratio[0] <= a.crop_ratio[1], "augment.crop_ratio",
           f"must satisfy 0 < min <= max, got {a.crop_ratio}")
    _check(0 < a.cutout_frac <= 1, "augment.cutout_frac",
           f"must lie in (0, 1], got {a.cutout_frac}")
    _check(0 < a.blur_kernel_frac <= 1, "augment.blur_kernel_frac",
           f"must lie in (0, 1], got {a.blur_kernel_frac}")
    _check(0 <= a.noise_std[0] <= a.noise_std[1], "augment.noise_std",
           f"must satisfy 0 <= min <= max, got {a.noise_std}")
    _check(0 < a.blur_sigma[0] <= a.blur_sigma[1], "augment.blur_sigma",
           f"must satisfy 0 < min <= max, got {a.blur_sigma}")
    _check(a.blur_sigma[0] >= MIN_BLUR_SIGMA, "augment.blur_sigma",
           f"must be at least {MIN_BLUR_SIGMA:g} pixels, got {a.blur_sigma}")
    _bounded(a.blur_sigma[1], "augment.blur_sigma")
    _bounded(a.noise_std[1], "augment.noise_std")
    for name in ("flip_p", "color_p", "grayscale_p", "blur_p", "cutout_p", "rotate_p", "noise_p",
                 "sobel_p"):
        p = getattr(a, name)
        _check(0.0 <= p <= 1.0, f"augment.{name}", f"must lie in [0, 1], got {p}")
    for name, amount in zip(("brightness", "contrast", "saturation"), a.jitter()[:3], strict=True):
        # Explicit, or 0.8 s: a negative colour strength is caught above.
        _positive(amount, f"augment.{name}", allow_zero=True)
        if getattr(a, name) is not None:
            _bounded(amount, f"augment.{name}")
        else:  # (named by the value typed: 0.8 s is no value the user gave)
            _check(amount <= MAX_REAL, "augment.color_strength", f"{a.color_strength:g} "
                   f"gives {name} jitter {amount:g}, which must be at most {MAX_REAL:g}")
    hue = a.jitter()[3]
    _check(0 <= hue <= 0.5, "augment.hue" if a.hue is not None else "augment.color_strength",
           f"gives hue jitter {hue:g}, which must lie in [0, 0.5]")
    if a.asymmetric and not a.crop_resize:
        raise SettingError("augment.asymmetric", " needs {} (the Fig. 5 crop is crop + resize)",
                           ("augment.crop_resize",))
    if a.first_op:
        _choice(a.first_op, tuple(FIG5_OPS), "augment.first_op")
        if not a.asymmetric:
            raise SettingError("augment.first_op", " orders the Fig. 5 protocol's ops: it needs "
                               "{}", ("augment.asymmetric",))
        if not any(getattr(a, switch) for switch in FIG5_OPS[a.first_op]):
            raise SettingError("augment.first_op", f" {a.first_op}: that transformation is "
                               "switched off")
