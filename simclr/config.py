"""One typed configuration for a pretraining run, with the paper's defaults.

Layers, later ones win: dataclass defaults (the paper's ImageNet recipe, Chen et al.
2020, Sec. 3 and App. B) -> ``--preset`` -> ``--config FILE.yaml`` -> command-line flags.
The resolved config is written to every run directory (``config.yaml``) and into
every checkpoint, so a run can always be reproduced and resumed. The presets live in
simclr.presets.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import sys
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from simclr.errors import SimCLRError
from simclr.files import written
from simclr.presets import PRESETS

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


CROP_SAMPLERS = ("torchvision", "official")
COLOR_OPS = ("torchvision", "official")


@dataclass
class AugmentConfig:
    """Every op of the paper's augmentation (App. A; official ``data_util.py``).

    Each op can be switched off and every parameter overridden, as the ablations of
    Sec. 3 (Fig. 5, Table 1) need. ``None`` for a jitter amount means "derive it
    from ``color_strength``" (0.8s, 0.8s, 0.8s, 0.2s).
    """

    size: int = 224  # output side of every view, pixels
    crop: bool = True  # random resized crop; off = resize the whole image
    crop_scale: tuple[float, float] = (0.08, 1.0)  # fraction of the image area
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range (log-uniform
    # with the torchvision sampler; the official one draws it uniformly, as TF does)
    crop_resize: bool = True  # False = crop without resize (Fig. 5 ablation)
    # How crops are drawn: "torchvision" (RandomResizedCrop, as App. A describes it) or
    # "official" (TF's sample_distorted_bounding_box, as the official data_util.py).
    crop_sampler: str = "torchvision"
    interpolation: str = "bicubic"  # bicubic (official) or bilinear
    flip: bool = True  # random horizontal flip
    flip_p: float = 0.5  # probability per view
    color: bool = True  # colour jitter
    color_p: float = 0.8  # colour jitter is applied with this probability
    color_strength: float = 1.0  # s of Table 1: jitter amounts 0.8s, 0.8s, 0.8s, 0.2s
    brightness: float | None = None  # default 0.8 s
    contrast: float | None = None  # default 0.8 s
    saturation: float | None = None  # default 0.8 s
    hue: float | None = None  # default 0.2 s
    color_random_order: bool = True  # the four jitter ops in random order per image
    # Which definitions of contrast and saturation: "torchvision" (ColorJitter's: blend
    # with the mean of the grayscale / with the grayscale image) or "official"
    # (TensorFlow's, as the official data_util.py calls them: each channel about its own
    # mean / S scaled in HSV). Brightness, hue and grayscale are alike in both.
    color_ops: str = "torchvision"
    grayscale: bool = True  # random conversion to grayscale
    grayscale_p: float = 0.2  # probability per view
    blur: bool = True  # gaussian blur (the paper: ImageNet only, not CIFAR)
    blur_p: float = 0.5  # probability per view
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma drawn uniformly, pixels of the view
    blur_kernel_frac: float = 0.1  # kernel side = 10% of the view side
    # The paper's Fig. 5 extra ops, off by default.
    cutout: bool = False  # erase a random square
    cutout_p: float = 0.5  # probability per view
    cutout_frac: float = 0.5  # side of the erased square, fraction of the view side
    rotate: bool = False  # rotation by 90, 180 or 270 degrees
    rotate_p: float = 0.5  # probability per view
    noise: bool = False  # additive gaussian noise
    noise_p: float = 0.5  # probability per view
    noise_std: tuple[float, float] = (0.0, 0.1)  # std drawn uniformly (pixels in [0, 1])
    sobel: bool = False  # sobel filtering (gradient magnitude, replicated to RGB)
    sobel_p: float = 0.5  # probability per view
    # Fig. 5 protocol: a random crop shared by both views, then the ops above on view 0
    # only (its crop taken inside the shared one), view 1 left as the shared crop.
    asymmetric: bool = False
    # Fig. 5's ordered compositions: this transformation (a FIG5_OPS name: crop, rotate,
    # color, blur, sobel, noise, cutout) first on view 0, the others after it in the
    # pipeline's order; "" keeps the pipeline's order.
    first_op: str = ""

    def jitter(self) -> tuple[float, float, float, float]:
        """(brightness, contrast, saturation, hue) amounts after applying strength s."""
        s = self.color_strength
        return (
            0.8 * s if self.brightness is None else self.brightness,
            0.8 * s if self.contrast is None else self.contrast,
            0.8 * s if self.saturation is None else self.saturation,
            0.2 * s if self.hue is None else self.hue,
        )


# The seven transformations of Fig. 5 and the switches that make each (crop includes
# the flip, colour distortion the random grayscale, as in App. A), in the order the
# augmentation pipeline applies them.
FIG5_OPS: dict[str, tuple[str, ...]] = {
    "crop": ("crop", "flip"),
    "rotate": ("rotate",),
    "color": ("color", "grayscale"),
    "blur": ("blur",),
    "sobel": ("sobel",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}


@dataclass
class ModelConfig:
    """Base encoder f and projection head g (Sec. 2.1, Sec. 4.2)."""

    arch: str = "resnet50"  # resnet18 .. resnet152, or a torchvision network (backbones.py)
    width: float = 1.0  # multiplies the channels of every layer
    cifar_stem: bool | None = None  # None: automatic, 3x3 stem without max-pool for side <= 32
    zero_init_residual: bool = True  # last BN gamma of each block starts at 0 (official)
    head: str = "mlp"  # none | linear | mlp
    head_layers: int = 2  # MLP layers (3 with BN = SimCLRv2)
    head_hidden_dim: int | None = None  # None: the encoder's feature dimension
    head_out_dim: int = 128  # dimension of z
    head_batch_norm: bool = False  # BN in every head layer (the official code, v1 and v2)
    sync_bn: bool = True  # global BatchNorm across processes (Sec. 2.2)


@dataclass
class LossConfig:
    """Contrastive objective (Sec. 2.1, eq. 1; Table 4 and 5 ablations)."""

    name: str = "nt_xent"  # nt_xent | nt_logistic | margin_triplet
    temperature: float = 0.1  # tau of NT-Xent / NT-Logistic
    normalize: bool = True  # L2 normalisation of z (Table 5)
    margin: float = 1.0  # margin_triplet only
    semi_hard: bool = False  # semi-hard negative mining (nt_logistic / margin_triplet)
    # Multiplies the loss that is optimised (the logged loss stays L of Alg. 1, the mean
    # over the 2N anchors). The official objective.py optimises loss_a + loss_b, the sum
    # of the two directions' means = 2 L; under LARS the factor is not a mere rescale:
    # against weight 1, weight 2 doubles the steps of BN scales and biases (which LARS
    # does not adapt) and halves weight decay's share of the adapted direction, so the
    # presets that reproduce official recipes set 2.
    weight: float = 1.0  # multiplies the optimised loss; 2 = the official code's sum


PAPER_BASE_LR = {"linear": 0.3, "sqrt": 0.075, "none": 0.3}


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (Sec. 2.2, App. B.1)."""

    name: str = "lars"  # lars | sgd | adamw
    lr: float | None = None  # base lr, scaled by lr_scaling; unset: 0.3, or 0.075 with sqrt
    lr_scaling: str = "linear"  # linear: lr x B/256; sqrt: lr x sqrt(B); none
    momentum: float = 0.9  # of SGD and LARS
    weight_decay: float = 1e-6  # L2 penalty (decoupled for adamw)
    eta: float = 0.001  # LARS trust coefficient
    exclude_bias_and_norm: bool = True  # from weight decay and LARS adaptation
    warmup_epochs: float = 10.0  # linear warm-up, then cosine decay
    warmup_fraction: float | None = None  # overrides warmup_epochs: fraction of all steps
    final_lr: float = 0.0  # cosine decays to this
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only

    def base_lr(self) -> float:
        """``lr``, or the paper's base for ``lr_scaling`` when unset (App. B.1: 0.3 x
        B/256, or 0.075 x sqrt(B), which suits small batches and long runs)."""
        return self.lr if self.lr is not None else PAPER_BASE_LR.get(self.lr_scaling, 0.3)


@dataclass
class DataConfig:
    """Where the images come from and how they are read."""

    path: str | None = None  # image folder, or cifar10 / cifar100 / stl10; none: the digits demo
    download: bool = False  # allow torchvision to download a named data set
    root: str = "~/.cache/simclr/datasets"  # where named data sets live
    cache: str = "auto"  # auto (decode small images once) | on | off
    cache_dir: str = "~/.cache/simclr/decoded"  # where decoded caches are kept
    load_size: int | None = None  # side images are stored at before cropping; None: auto
    store: str = "full"  # full (whole image squeezed, aspect kept) | center (central square)
    workers: int | None = None  # decoding processes for uncached data; None: auto
    decoder: str = "auto"  # uncached JPEGs: auto (device on CUDA, else pil) | pil | device
    strict: bool = False  # check every image up front; fail on the first bad one


@dataclass
class Config:
    """A whole pretraining run."""

    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = "runs/simclr"  # run directory
    batch_size: int = 4096  # global batch (images; 2x views)
    epochs: float = 100.0  # passes over the data (fractions allowed)
    max_steps: int | None = None  # stop after this many steps (schedule fitted to it)
    time_budget: float | None = None  # training time; the schedule is fitted to it
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True  # NHWC memory layout (faster convolutions)
    compile: bool = False  # torch.compile the model
    memory_check: bool = True  # refuse a batch whose measured step memory cannot fit
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # every random draw (init, order, views) derives from it
    init_from: str | None = None  # initial weights (simclr checkpoint or run, torchvision ResNet)
    deterministic: bool = False  # deterministic kernels (bit-exact resume on CPU)
    threads: int | None = None  # CPU threads for torch; None: torch's default
    log_every: int = 10  # steps between metric lines
    checkpoint_every: int = 500  # steps between periodic checkpoints (0: none by count)
    checkpoint_minutes: float = 30.0  # also one when this long has passed since the last (0: off)
    keep_checkpoints: int = 2  # how many periodic checkpoints to keep
    nan_policy: str = "stop"  # stop | skip (skip non-finite steps, at most max_bad_steps)
    max_bad_steps: int = 10  # nan_policy skip: give up after this many
    knn_train: str | None = None  # labeled folder: memory of the online kNN monitor
    knn_test: str | None = None  # labeled folder: queries of the online kNN monitor
    knn_every: float = 1.0  # epochs between kNN evaluations
    knn_k: int = 200  # neighbours of the kNN monitor
    knn_temperature: float = 0.1  # temperature of its similarity weights
    progress: bool = True  # a progress bar on a terminal, elsewhere a line every 30 s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    "out": "out",
    "arch": "model.arch",
    "width": "model.width",
    "cifar-stem": "model.cifar_stem",
    "zero-init-residual": "model.zero_init_residual",
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
    first, then each remaining field under its own name (prefixed by its section when
    the name is taken, e.g. ``--loss-normalize``).
    """
    flags = dict(FLAGS)
    taken = set(FLAGS.values())
    defaults = Config()
    for section in ("augment", "model", "loss", "optim", "data"):
        for f in fields(getattr(defaults, section)):
            path = f"{section}.{f.name}"
            if path in taken:
                continue
            name = f.name.replace("_", "-")
            flags[name if name not in flags else f"{section}-{name}"] = path
    for f in fields(Config):
        if f.name not in taken and not dataclasses.is_dataclass(getattr(defaults, f.name)):
            flags.setdefault(f.name.replace("_", "-"), f.name)
    return flags


def _owner(path: str) -> tuple[Any, str]:
    """(the default dataclass holding a dotted setting, the field's name)."""
    *parents, name = path.split(".")
    obj: Any = Config()
    for part in parents:
        obj = getattr(obj, part)
    return obj, name


def default_of(path: str) -> Any:
    """The default value of a dotted setting, e.g. ``default_of("optim.lr")``."""
    obj, name = _owner(path)
    return getattr(obj, name)


# Settings added after runs were saved whose default is not what those runs did: a
# saved config without them is read with these values (exact resume, sweep reuse).
SAVED_BEFORE: dict[str, Any] = {
    "data.store": "center",  # before whole-picture storage, images were central squares
}


def unsaved_value(path: str) -> Any:
    """What a run saved before ``path`` existed did: :data:`SAVED_BEFORE`, else the default."""
    return SAVED_BEFORE[path] if path in SAVED_BEFORE else default_of(path)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig,
                             "optim": OptimConfig, "augment": AugmentConfig, "": Config}


def _field_comments(cls: type, lines: list[str]) -> dict[str, str]:
    """Field name -> the comment written beside it in ``lines`` (this module's source),
    else the comment block just above it; fields without either are left out."""
    names = {f.name for f in fields(cls)}
    start = next((i for i, line in enumerate(lines) if line.startswith(f"class {cls.__name__}")),
                 len(lines))
    docs: dict[str, str] = {}
    above: list[str] = []
    for line in lines[start + 1:]:
        if line.strip() and not line[0].isspace():  # the class body has ended
            break
        text = line.strip()
        match = re.fullmatch(r"(\w+):[^#]*?(?:#\s*(.*))?", text)
        if text.startswith("#"):
            above.append(text.lstrip("#").strip())
        elif match and match.group(1) in names:
            doc = match.group(2) or " ".join(above)  # the inline comment, else the block
            if doc:
                docs[match.group(1)] = doc
            above = []
        else:
            above = []
    return docs


@functools.cache
def setting_help() -> dict[str, str]:
    """Dotted setting -> its description for ``--help``: the comments of the dataclasses
    above, so the code's readers and the command's users read the same text. Read once
    per process (every command that offers the settings asks)."""
    try:
        lines = inspect.getsourcelines(sys.modules[__name__])[0]
    except (OSError, TypeError):  # no source shipped (e.g. a frozen build): no help texts
        return {}
    docs = {}
    for section, cls in SECTIONS.items():
        for name, text in _field_comments(cls, lines).items():
            docs[f"{section}.{name}" if section else name] = text
    return docs


def section_of(path: str) -> str:
    """The section a dotted setting belongs to ("" for run-wide settings)."""
    return path.rpartition(".")[0]


def type_of(path: str) -> str:
    """The declared type of a dotted setting as text, e.g. ``"float | None"``."""
    obj, name = _owner(path)
    return str(_field_type(obj, name))


# ---------------------------------------------------------------------------- parsing

def parse_duration(text: str | float | int) -> float:
    """'20m' -> 1200.0; accepts s, m, h suffixes or a plain number of seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(-?[0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
        if not match:
            raise SimCLRError(f"--time-budget: cannot read {text!r} (use e.g. 90s, 20m, 1.5h)")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not seconds > 0:
        raise SimCLRError(f"--time-budget must be positive, got {text!r}")
    return seconds


def _field_type(obj: Any, name: str) -> Any:
    for f in fields(obj):
        if f.name == name:
            return f.type
    raise KeyError(name)


def _is_null(value: Any) -> bool:
    """None, or the text a user writes for it (YAML's null, a flag's ``none``)."""
    return value is None or (isinstance(value, str) and value.lower() in ("none", "null"))


def _coerce(value: Any, type_text: str, where: str) -> Any:
    """Convert YAML/flag text to the field's declared type (annotations are strings)."""
    t = str(type_text).replace(" ", "")
    optional = "None" in t
    # "none" as text means None only where None is allowed: `--head none` is a head.
    if value is None or (optional and _is_null(value)):
        if optional:
            return None
        raise SimCLRError(f"{where}: a value is required")
    base = t.replace("|None", "")
    if isinstance(value, dict) or (isinstance(value, list) and not base.startswith("tuple")):
        raise SimCLRError(f"{where}: expected one {base} value, got {value!r}")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
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
        if base.startswith("tuple"):
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            if len(items) != 2:
                raise ValueError
            return (float(items[0]), float(items[1]))
        if base == "str":
            return str(value)
    except (TypeError, ValueError):
        raise SimCLRError(f"{where}: cannot read {value!r} as {base}") from None
    return value


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> None:
    """Set nested fields from a (possibly nested) mapping; unknown keys are errors."""
    for key, value in overrides.items():
        if isinstance(value, dict):
            sub = getattr(cfg, str(key), None)
            if not dataclasses.is_dataclass(sub):
                if any(f.name == key for f in fields(cfg)):
                    raise SimCLRError(f"{source}: setting {key!r} takes a value, not a mapping")
                raise SimCLRError(f"{source}: unknown section {key!r}")
            for sub_key, sub_value in value.items():
                set_path(cfg, f"{key}.{sub_key}", sub_value, source)
        else:
            set_path(cfg, str(key), value, source)


def _nested_hint(path: str) -> str:
    """For a key that is a setting of some section (``arch`` for ``model.arch``, or a
    flag's name), where it belongs; else nothing."""
    dotted = all_flags().get(path.replace("_", "-"))
    if dotted is None or "." not in dotted or dotted == path:
        return ""
    section, name = dotted.split(".", 1)
    return f" (it is {dotted}: in a YAML file under '{section}:', as '  {name}: ...')"


def set_path(cfg: Config, path: str, value: Any, source: str) -> None:
    """Set ``cfg.a.b = value`` with type conversion; names the bad key on error."""
    *parents, name = path.split(".")
    obj: Any = cfg
    for part in parents:
        obj = getattr(obj, part, None)
        if not dataclasses.is_dataclass(obj):
            raise SimCLRError(f"{source}: unknown setting {path!r}")
    try:
        type_text = _field_type(obj, name)
    except KeyError:
        raise SimCLRError(f"{source}: unknown setting {path!r}{_nested_hint(path)}") from None
    if dataclasses.is_dataclass(getattr(obj, name)):  # e.g. `model: 3` in a YAML file
        raise SimCLRError(f"{source}: section {path!r} must be a mapping of its settings, "
                          f"got {value!r}")
    if path == "time_budget" and not _is_null(value):
        value = parse_duration(value)
    # A flag's problem is named by the flag the user typed, a file's by its key.
    where = f"--{flag_of(path)}" if source == "flag" else f"{source}: {path}"
    setattr(obj, name, _coerce(value, type_text, where))


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
    """

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"--{flag_of(path)}{detail}")
        self.path = path
        self.detail = detail


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping (e.g. two ``model:``
    sections, of which plain YAML silently keeps the last) is an error."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):  # YAML allows them; no setting is named so
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not a "
                    f"{'list' if isinstance(key, list) else 'mapping'} (line "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path).expanduser()
    if p.is_dir():
        raise SimCLRError(f"config file {p} is a folder; give the YAML file itself")
    if not p.is_file():
        raise SimCLRError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SimCLRError(f"config file {p} is not UTF-8 text (not a YAML file?)") from None
    except OSError as exc:
        raise SimCLRError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise SimCLRError(f"config file {p} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise SimCLRError(f"config file {p} must hold a mapping of settings")
    return data


def build_config(
    preset: str | None = None,
    config_file: str | None = None,
    flags: dict[str, Any] | None = None,
    inert_ok: Collection[str] = (),
) -> Config:
    """Defaults -> preset -> YAML -> flags (dotted paths), then validate. A flag with
    no effect under the other settings is refused (:mod:`simclr.inert`) unless it is in
    ``inert_ok`` (a sweep's common flags, which may act in some cells only)."""
    cfg = Config()
    lr_origin = None  # (lr, its scaling rule, batch) of the last layer that gave an lr
    if preset is not None:
        if preset not in PRESETS:
            raise SimCLRError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        apply_overrides(cfg, PRESETS[preset], f"preset {preset}")
        if "lr" in PRESETS[preset].get("optim", {}):
            lr_origin = (cfg.optim.lr, cfg.optim.lr_scaling, cfg.batch_size)
    if config_file is not None:
        # A run's own config.yaml is a valid --config: what it only records is skipped.
        settings = {k: v for k, v in load_yaml(config_file).items() if k not in RECORDED_KEYS}
        apply_overrides(cfg, settings, str(config_file))
        if "optim.lr" in _paths_of(settings) and cfg.optim.lr is not None:
            lr_origin = (cfg.optim.lr, cfg.optim.lr_scaling, cfg.batch_size)
    for path, value in (flags or {}).items():
        set_path(cfg, path, value, "flag")
    if lr_origin is not None and "optim.lr" not in (flags or {}):
        carry_lr(cfg, *lr_origin)
    # A preset's or a file's ResNet width means nothing to another network named after it:
    # width 1 unless given at the arch's own layer or a later one (a printed config holds
    # every setting, its ResNet's width too, which --arch on top then replaces).
    flagged = set(flags or {})
    filed = _paths_of(settings) if config_file is not None else set()
    width_given = "model.width" in flagged or ("model.width" in filed
                                               and "model.arch" not in flagged)
    if cfg.model.arch not in ARCHS and not width_given:
        cfg.model.width = 1.0
    # An unset lr is the paper's base for the scaling rule chosen (0.075 for sqrt): said
    # explicitly in the resolved config, so config.yaml and --print-config show it.
    cfg.optim.lr = cfg.optim.base_lr()
    from simclr.validate import check_scale, validate  # it imports this module

    try:
        validate(cfg)
        check_scale(cfg)
    except SettingError as exc:
        # Named where the user wrote it: a value from the file (and no flag) by its key.
        if config_file is not None and exc.path not in (flags or {}) \
                and exc.path in _paths_of(settings):
            raise SimCLRError(f"{config_file}: {exc.path}{exc.detail}") from None
        raise
    from simclr.inert import refuse_inert  # it imports this module

    refuse_inert(cfg, set(flags or {}) - set(inert_ok))
    absolute_paths(cfg)
    return cfg


def apply_resume_flags(cfg: Config, flags: dict[str, Any], allowed: set[str]) -> None:
    """The flags given with ``--resume`` onto the saved config: only ``allowed`` settings
    (where and how fast the run goes, not what it computes) may change, and each value
    is checked as a new run's would be, so a resumed run never saves an invalid config."""
    refused = sorted(f"--{flag_of(path)}" for path in set(flags) - allowed)
    if refused:
        raise SimCLRError(f"--resume continues the saved settings; cannot change "
                          f"{', '.join(refused)}")
    for path, value in flags.items():
        set_path(cfg, path, value, "flag")
    from simclr.inert import refuse_inert
    from simclr.validate import validate

    validate(cfg)

    refuse_inert(cfg, flags)


def carry_lr(cfg: Config, lr: float, rule: str, batch: int) -> None:
    """An lr a preset or a config file gives belongs to its scaling rule. Under another
    ``--lr-scaling`` (and no ``--lr``), keep its peak lr at its batch size, expressed in
    the new rule: cifar10-cpu's 1.0 x 512/256 = 2.0 becomes 2.0 / sqrt(512) = 0.088 under
    sqrt, not 1.0 x sqrt(512) = 22.6 (the batch then scales it by the new rule); a run's
    config.yaml (lr 0.3, linear, batch 4096) read with sqrt gets 0.3 x 16 / 64 = 0.075."""
    if cfg.optim.lr_scaling == rule:
        return
    from simclr.optim import scaled_lr  # optim imports this module

    cfg.optim.lr = scaled_lr(lr, batch, rule) / scaled_lr(1.0, batch, cfg.optim.lr_scaling)


def _paths_of(settings: dict[str, Any]) -> set[str]:
    """The dotted settings a (possibly nested) YAML mapping gives."""
    return {f"{key}.{sub}" if isinstance(value, dict) else str(key)
            for key, value in settings.items()
            for sub in (value if isinstance(value, dict) else [None])}


# What a run's config.yaml records beside its settings (simclr.train writes them): facts
# of that run, not settings, so reading the file as a --config skips them.
# What `pretrain --resume` may change: where and how fast the run goes, and its length
# (checked against the saved schedule). A sweep's cells may differ by the same, less
# the length (rundir.RUN_LENGTH), which makes another cell.
RESUME_SETTINGS = frozenset({
    "epochs", "max_steps", "time_budget", "progress", "device", "threads", "data.workers",
    "data.cache_dir", "log_every", "checkpoint_every", "checkpoint_minutes",
    "keep_checkpoints", "knn_every", "memory_check"})
RECORDED_KEYS = frozenset({"provenance", "precision_resolved", "device_resolved", "num_images"})


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


MAX_EPOCHS = 1e6  # a million passes over the data; beyond, step counts overflow
MAX_SEED = 2**63 - 1  # torch.manual_seed's range (numpy takes any non-negative integer)
MAX_THREADS = 4096
MIN_SIZE = 8  # pixels: smaller crops hold nothing for the augmentation to vary


def yaml_text(data: dict[str, Any]) -> str:
    """A config mapping as YAML text, keys in their order (tuples become lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return yaml.safe_dump(plain(data), sort_keys=False)


def save_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write a mapping as YAML (tuples become lists), whole or not at all."""
    text = yaml_text(data)
    written(Path(path), lambda tmp: tmp.write_text(text))
