"""One typed configuration for a pretraining run, with the paper's defaults.

The dataclasses below hold every setting with its default (the paper's ImageNet recipe,
Chen et al. 2020, Sec. 2.3 and App. A); the comment beside each is its ``--help`` text.
The resolved config is written to every run directory (``config.yaml``) and into every
checkpoint, so a run can always be reproduced and resumed. How a config is built from
what the user gives is simclr.settings; the presets live in simclr.presets.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


CROP_SAMPLERS = ("torchvision", "official")
# The official sampler's min_object_covered: a crop keeps >= 10% of the picture.
OFFICIAL_MIN_COVERED = 0.1
COLOR_OPS = ("torchvision", "official", "official_v1")


@dataclass
class AugmentConfig:
    """Every op of the paper's augmentation (App. A; official ``data_util.py``).

    Each op can be switched off and every parameter overridden, as the ablations of
    Sec. 3 (Fig. 5, Table 1) need. ``None`` for a jitter amount means "derive it
    from ``color_strength``" (0.8s, 0.8s, 0.8s, 0.2s).
    """

    size: int = 224  # output side of every view, pixels
    # The side evaluations read images at (linear-eval, knn, finetune, embed, predict,
    # export, the --knn-every monitor, a supervised run's test); unset: the views' side
    # (--image-size). Training on smaller views and evaluating larger pays (FixRes,
    # Touvron et al. 2019: random resized crops show objects larger than whole images
    # do); the ResNets end in a global pool.
    eval_size: int | None = None
    crop: bool = True  # random resized crop; off = resize the whole image
    crop_scale: tuple[float, float] = (0.08, 1.0)  # fraction of the image area
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range (log-uniform
    # with the torchvision sampler; the official one draws it uniformly, as TF does)
    crop_resize: bool = True  # off (--no-crop-resize): crop without resize (Fig. 5 ablation)
    # How crops are drawn: "torchvision" (RandomResizedCrop, as App. A describes it) or
    # "official" (TF's sample_distorted_bounding_box, as the official data_util.py:
    # crops of under 10% of the picture never qualify, whatever --crop-scale's min).
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
    # Which definitions of the colour ops: "torchvision" (ColorJitter's contrast and
    # saturation: blend with the mean of the grayscale / with the grayscale image) or
    # "official" (TensorFlow's, as the official data_util.py calls them: each channel
    # about its own mean / S scaled in HSV); both multiply brightness by a factor in
    # U(max(0, 1-a), 1+a), the official code's default (impl='simclrv2'). "official_v1"
    # is "official" with brightness adding U(-a, a) instead, as the paper's App. A and
    # its v1 code (tf.image.random_brightness). Hue and grayscale are alike in all.
    color_ops: str = "torchvision"
    grayscale: bool = True  # random conversion to grayscale
    grayscale_p: float = 0.2  # probability per view
    blur: bool = True  # gaussian blur (the paper: ImageNet only, not CIFAR)
    blur_p: float = 0.5  # probability per view
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma drawn uniformly, pixels of the view
    blur_kernel_frac: float = 0.1  # kernel side as a fraction of the view side (the paper: 10%)
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
    # Fig. 5's ordered compositions: this transformation (one of crop, rotate,
    # color, blur, sobel, noise, cutout) first on view 0, the others after it in the
    # pipeline's order; "" keeps the pipeline's order.
    first_op: str = ""

    def evaluation_size(self) -> int:
        """The side evaluations read images at: ``eval_size``, else the views' ``size``."""
        return self.eval_size or self.size

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
    cifar_stem: bool | None = None  # 3x3 stem, no max-pool; unset (auto): for views <= 32 px
    zero_init_residual: bool = True  # last BN gamma of each block starts at 0 (official)
    # The official resnet.py projects (1x1 conv + BN) the shortcut of every stage's first
    # block; torchvision (the default here, whose weights load) only where the shape
    # changes: ResNet-18/34 differ in their first stage, 50 and deeper not at all.
    projection_shortcuts: bool = False  # every stage's first block projects (official code)
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
    # Negatives from the other view only, as Table 4 compares the losses (App. B.10): for
    # NT-Xent (nt_logistic and margin_triplet always take them so; a sweep over the loss
    # may pass it to all three)
    one_view_negatives: bool = False
    # Multiplies the loss that is optimised (the logged loss stays L of Alg. 1, the mean
    # over the 2N anchors). The official objective.py optimises loss_a + loss_b, the sum
    # of the two directions' means = 2 L; under LARS the factor is not a mere rescale:
    # against weight 1, weight 2 doubles the steps of BN scales and biases (which LARS
    # does not adapt) and halves weight decay's share of the adapted direction, so the
    # presets that reproduce official recipes set 2.
    weight: float = 1.0  # multiplies the optimised loss; 2 = the official code's sum


PAPER_BASE_LR = {"linear": 0.3, "sqrt": 0.075, "none": 0.3}
# AdamW's base lr: the paper's over 300 (1e-3 x B/256). Adam's steps are about the lr's
# size whatever the gradient's (no LARS trust ratio scales them down), so the paper's 0.3
# is a step of 0.3 per weight: the digits demo's lr 1.0 under AdamW collapsed at once
# (loss at ln(2N - 1), kNN below a random network's) where 1e-3 trains.
ADAMW_BASE_LR = {rule: lr / 300 for rule, lr in PAPER_BASE_LR.items()}


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (Sec. 2.2, 2.3; lr scaling App. B.1)."""

    name: str = "lars"  # lars | sgd | adamw
    lr: float | None = None  # base lr, x --lr-scaling; unset: 0.3, or 0.075 with sqrt (AdamW /300)
    lr_scaling: str = "linear"  # linear: lr x B/256; sqrt: lr x sqrt(B); none
    momentum: float = 0.9  # of SGD and LARS
    weight_decay: float = 1e-6  # L2 penalty (decoupled for adamw)
    eta: float = 0.001  # LARS trust coefficient
    exclude_bias_and_norm: bool = True  # from weight decay and LARS adaptation
    warmup_epochs: float = 10.0  # linear warm-up (at most 10% of the run), then cosine
    warmup_fraction: float | None = None  # overrides --warmup-epochs: fraction of all steps
    final_lr: float = 0.0  # cosine decays to this
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only

    def base_lr(self) -> float:
        """``lr``, or the paper's base for ``lr_scaling`` when unset (App. B.1: 0.3 x
        B/256, or 0.075 x sqrt(B), which suits small batches and long runs); AdamW's
        is 300 times smaller (:data:`ADAMW_BASE_LR`)."""
        return self.lr if self.lr is not None else self.default_lr()

    def default_lr(self) -> float:
        """The base lr of this optimizer and ``lr_scaling`` when none is given."""
        bases = ADAMW_BASE_LR if self.name == "adamw" else PAPER_BASE_LR
        return bases.get(self.lr_scaling, bases["linear"])


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
    # Larger images are refused unread (a decompression bomb: a small file that decodes
    # to gigabytes); PIL's own limit, about 0.25 GiB of RGB (1/3 GiB of RGBA). Raise it
    # for scans, panoramas.
    max_pixels: int = 89_478_485  # pixels above which an image is skipped unread


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
    # passes over the data (fractions allowed); under --time-budget only the length's
    # first guess (the budget sets it, --max-steps caps it)
    epochs: float = 100.0
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
    threads: int | None = None  # CPU threads for torch; None: torch's default (one a core;
    # 1 can be faster where another busy program shares the cores: README, Performance)
    log_every: int = 10  # steps between metric lines
    checkpoint_every: int = 500  # steps between periodic checkpoints (0: none by count)
    checkpoint_minutes: float = 30.0  # also one when this long has passed since the last (0: off)
    keep_checkpoints: int = 2  # how many periodic checkpoints to keep
    nan_policy: str = "stop"  # stop | skip (skip non-finite steps, at most --max-bad-steps)
    max_bad_steps: int = 10  # nan_policy skip: give up after this many
    knn_train: str | None = None  # labeled folder: memory of the online kNN monitor
    knn_test: str | None = None  # labeled folder: queries of the online kNN monitor
    knn_every: float = 1.0  # epochs between kNN evaluations
    knn_k: int = 200  # neighbours of the kNN monitor
    knn_temperature: float = 0.1  # temperature of its similarity weights
    progress: bool = True  # a progress bar on a terminal, elsewhere a line every 30 s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    open_field = None  # a field whose inline comment continues below (a '(' not closed)
    for line in lines[start + 1:]:
        if line.strip() and not line[0].isspace():  # the class body has ended
            break
        text = line.strip()
        match = re.fullmatch(r"(\w+):[^#]*?(?:#\s*(.*))?", text)
        if text.startswith("#") and open_field:
            docs[open_field] += " " + text.lstrip("#").strip()
        elif text.startswith("#"):
            above.append(text.lstrip("#").strip())
        elif match and match.group(1) in names:
            doc = match.group(2) or " ".join(above)  # the inline comment, else the block
            if doc:
                docs[match.group(1)] = doc
            above = []
        else:
            above = []
        # Only a field's own inline comment continues, and only on the lines right below.
        name = (match.group(1) if match and match.group(2) and match.group(1) in docs
                else open_field if text.startswith("#") else None)
        open_field = name if name and docs[name].count("(") > docs[name].count(")") else None
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
    return str(field_type(obj, name))


def field_type(obj: Any, name: str) -> Any:
    """The declared type (annotation text) of field ``name`` of dataclass ``obj``."""
    for f in fields(obj):
        if f.name == name:
            return f.type
    raise KeyError(name)


# What `pretrain --resume` may change: where and how fast the run goes, and its length
# (checked against the saved schedule). A sweep's cells may differ by the same, less
# the length (rundir.RUN_LENGTH), which makes another cell.
RESUME_SETTINGS = frozenset({
    "epochs", "max_steps", "time_budget", "progress", "device", "threads", "data.workers",
    "data.decoder", "data.cache_dir", "log_every", "checkpoint_every", "checkpoint_minutes",
    "keep_checkpoints", "knn_every", "memory_check", "compile"})
# What a run's config.yaml records beside its settings (simclr.train writes them): facts
# of that run, not settings, so reading the file as a --config skips them.
# (``folders``: a supervised run's --train/--test, which `simclr supervised --config`
# takes when no --train is given; ``run_id``: the id its checkpoints carry, which a copy
# of the folder keeps without them.)
RECORDED_KEYS = frozenset({"provenance", "precision_resolved", "device_resolved", "num_images",
                           "folders", "init_from_resolved", "run_id"})


def settings_of(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's config.yaml (``saved``, as read) less what it only records
    (:data:`RECORDED_KEYS`): its settings."""
    return {k: v for k, v in saved.items() if k not in RECORDED_KEYS}


MAX_EPOCHS = 1e6  # a million passes over the data; beyond, step counts overflow
MAX_SEED = 2**63 - 1  # torch.manual_seed's range (numpy takes any non-negative integer)
MAX_THREADS = 4096
MAX_WORKERS = 256  # decoding processes: more is a typo (each holds a few hundred MB)
# Rates, strengths and weights: far beyond any useful value, and within what torch
# computes in float32 (1e39 passed as a weight decay, then overflowed mid-run)
MAX_REAL = 1e6
# The pretraining lr alone may go further, within float32 still (huge rates are how a
# run is made to diverge on purpose: sweeps record such cells)
MAX_LR = 1e30
MIN_TEMPERATURE = 1e-4  # NT-Xent's logits 1 / T: 1e-300 made them infinite
MIN_BLUR_SIGMA = 1e-3  # pixels: the kernel's 1 / (2 sigma^2) overflowed at 1e-30
MIN_SIZE = 8  # pixels: smaller crops hold nothing for the augmentation to vary
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # --precision's values
DECODERS = ("auto", "pil", "device")  # --decoder's values (source.decode_device)
DEVICES = "auto, cpu, cuda, cuda:N"  # --device's values, as messages list them
MAX_SIDE = 4096  # pixels a side, views and stored images (one RGB image: 48 MiB)


def mps_refused(device: str) -> str | None:
    """Why ``device`` cannot be used if it is Apple's GPU (MPS), as a message's end after
    the flag and the value (``--device mps: ...``); None for any other. A Mac's torch has
    MPS, so it is what users there try: the settings' check and the evaluation commands'
    said it differently ("unknown device" where torch knows it), now in these words."""
    if device != "mps" and not device.startswith("mps:"):
        return None
    return (": Apple's GPU (MPS) is not supported; simclr runs on the CPU or a CUDA GPU "
            f"({DEVICES})")
