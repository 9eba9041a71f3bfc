"""SimCLR's stochastic data augmentation, batched on the training device (Sec. 3, App. A).

Two views of every image (Chen et al. 2020, Sec. 2.1, Fig. 4): random resized crop with
horizontal flip, colour jitter (p=0.8, the four ops in random order), random grayscale
(p=0.2) and gaussian blur (p=0.5, ImageNet only), plus the extra ops of the Fig. 5
ablation (cutout, rotation, gaussian noise, sobel, crop without resize). Semantics follow
the official ``data_util.py`` with torchvision's definitions of the individual ops
(TensorFlow's contrast and saturation, the official code's, with ``color_ops="official"``,
and also the v1 code's additive brightness with ``color_ops="official_v1"``).

Three modules: :mod:`simclr.augment_params` draws the parameters on the host,
:mod:`simclr.augment_ops` holds the device kernels, and this one stages them over the
batch (:func:`apply_params`, :class:`TwoViewAugment`), with the evaluation resize; the
names callers use of the other two are re-exported here. (The per-image torchvision
reference the tests compare the batched path against is ``tests/reference_augment.py``.)

Design:

* **Randomness is counter based.** Every uniform is ``splitmix64`` of (seed, epoch,
  sample index, view, parameter id), so a view depends on nothing else: not on the batch
  composition, the number of data workers or processes, or which other ops are on (up
  to float rounding: with several CPU threads a batch's per-image contrast mean is
  summed in another order than one image's, 4e-7 apart at 224 px).
* **Parameters are drawn on the host** (:func:`sample_params`, numpy, vectorised over the
  batch) and shipped to the device in two small pinned tensors; :func:`apply_params` then
  runs without a single host sync, so it can sit on the CUDA stream of the training step.
* **Crop + resize + flip is one pair of batched matrix products.** Resampling is
  separable, so each view is ``Wy @ image @ Wx^T`` with per-sample interpolation matrices
  built on the device. They reproduce ``torch.nn.functional.interpolate`` (the kernel
  behind torchvision's ``resized_crop``) exactly: align_corners=False, bicubic a=-0.75 or
  bilinear, edge pixels of the *crop* replicated, no antialiasing (the official TF1 code
  uses ``tf.image.resize_bicubic``, which has none; TF2's ``tf.image.resize`` is another
  kernel). The flip reverses the rows of ``Wx``,
  the 1/255 scaling is folded into ``Wy``. The gaussian blur is likewise a per-sample
  banded matrix with reflect padding folded in (torchvision's; the official code's
  'SAME' convolution pads with zeros, darkening the border), multiplied tile by tile
  (on CPU these products beat grouped convolutions several times over).
* **Per-sample op order without masks.** For each stage (each of the four jitter
  positions, then grayscale/blur, ...) the batch is permuted so that the samples needing
  the same op are contiguous; each op then runs once on its slice, on the samples that
  need it only. The permutations are known on the host, so this costs one gather per
  stage and no sync; the last stage restores the original order.
* On CPU, large batches are processed in chunks of ~24 MB of views (see
  ``CPU_CHUNK_BYTES``); on CUDA the whole batch is one chunk.
* Everything runs in float32 (bf16 is too coarse for the colour ops). On CUDA with TF32
  matmuls enabled by the caller, resize and blur run in TF32: errors ~5e-4, below the
  1/255 step of the uint8 input.

Pipeline order: crop/resize -> flip -> rotate -> colour jitter -> grayscale -> blur ->
sobel -> noise -> cutout; every op clamps to [0, 1]. For the ordered compositions of
Fig. 5, ``first_op`` moves one group to the front; a targeted crop that comes after
another op then resamples the view a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from simclr.augment_ops import (
    adjust_hue,
    blur_,
    brightness_,
    brightness_shift_,
    contrast_,
    contrast_channels_,
    crop_resize,
    cutout_,
    float_table,
    grayscale_,
    hue_,
    noise_,
    noise_field,
    recrop_,
    rotate_,
    saturation_,
    saturation_hsv_,
    sobel,
    sobel_,
)
from simclr.augment_params import (
    ViewParams,
    blur_kernel_size,
    cutout_side,
    sample_params,
)
from simclr.config import FIG5_OPS, MAX_SEED, AugmentConfig
from simclr.decode import EVAL_CROP_FRACTION, as_rgb, eval_side
from simclr.errors import is_count

__all__ = [
    "TwoViewAugment", "adjust_hue", "apply_params", "blur_kernel_size", "cutout_side",
    "eval_resize", "noise_field", "op_order", "sample_params", "sobel",
]

# ------------------------------------------------------------------ staged application

_Op = Callable[[Tensor, Tensor, Tensor], None]  # (x slice, floats, noise keys), in place


@dataclass
class _Stage:
    """One step of the pipeline: each (lo, hi, op) of ``ops`` runs on the samples with
    lo <= key < hi."""

    key: np.ndarray  # (N,) int64 group of each sample, original order
    ops: list[tuple[int, int, _Op]]

    def used(self) -> bool:
        return any(bool(((self.key >= lo) & (self.key < hi)).any()) for lo, hi, _ in self.ops)


def _with(op: Callable[..., None], **kwargs: int | str) -> _Op:
    return lambda x, f, keys: op(x, f, keys, **kwargs)


def op_order(cfg: AugmentConfig) -> list[str]:
    """The Fig. 5 transformation groups in the order a view gets them: the pipeline's
    (:data:`~simclr.config.FIG5_OPS`), with ``cfg.first_op`` moved to the front."""
    order = list(FIG5_OPS)
    if cfg.first_op:
        order.remove(cfg.first_op)
        order.insert(0, cfg.first_op)
    return order


def _stages(p: ViewParams, cfg: AugmentConfig) -> list[_Stage]:
    """The pipeline after the first crop/resize/flip as stages; unused ones dropped."""
    active = np.array([amount > 0 for amount in cfg.jitter()])  # torchvision skips 0 amounts
    color, order = p.color.numpy(), p.order.numpy()
    tf_ops = cfg.color_ops != "torchvision"  # TensorFlow's contrast and saturation
    shift = cfg.color_ops == "official_v1"  # App. A's additive brightness
    jitter_ops = [(0, 1, brightness_shift_ if shift else brightness_),
                  (1, 2, contrast_channels_ if tf_ops else contrast_),
                  (2, 3, saturation_hsv_ if tf_ops else saturation_), (3, 4, hue_)]
    jitter = [_Stage(np.where(color & active[order[:, k]], order[:, k], 4), list(jitter_ops))
              for k in range(4)]  # key 4: no jitter op at this position
    gray, blur = p.gray.numpy().astype(np.int64), p.blur.numpy().astype(np.int64)
    side = blur_kernel_size(cfg.size, cfg.blur_kernel_frac)
    if side == 1:  # a one-tap kernel leaves the view as it is: no stage to run
        blur = np.zeros_like(blur)
    blur_op = _with(blur_, side=side)
    groups = {
        "crop": [_Stage(p.recrop.numpy().astype(np.int64),
                        [(1, 2, _with(recrop_, mode=cfg.interpolation))])],
        "rotate": [_Stage(p.rotate.numpy(), [(k, k + 1, _with(rotate_, k=k)) for k in (1, 2, 3)])],
        "color": [*jitter, _Stage(gray, [(1, 2, grayscale_)])],
        "blur": [_Stage(blur, [(1, 2, blur_op)])],
        "sobel": [_Stage(p.sobel.numpy().astype(np.int64), [(1, 2, sobel_)])],
        "noise": [_Stage((p.noise_std.numpy() > 0).astype(np.int64), [(1, 2, noise_)])],
        "cutout": [_Stage(p.cutout.numpy().astype(np.int64),
                          [(1, 2, _with(cutout_, side=cutout_side(cfg)))])],
    }
    names = op_order(cfg)
    if names.index("blur") == names.index("color") + 1:
        # Grayscale then blur as one stage (blurred samples contiguous): one gather less.
        groups["color"][-1] = _Stage(2 * blur + gray, [(1, 2, grayscale_), (3, 4, grayscale_),
                                                       (2, 4, blur_op)])
        groups["blur"] = []
    return [s for name in names for s in groups[name] if s.used()]


def _to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """Host array -> device tensor; pinned + non_blocking on CUDA (no host sync)."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _inverse(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    return inv


def _check_uint8_batch(images: Tensor, also: str = "") -> None:
    """``images`` a uint8 (B, 3, H, W) tensor (``also``: what else the caller takes, for
    the message)."""
    if not isinstance(images, Tensor):  # (a numpy array read as "uint8, not uint8")
        raise TypeError(f"images must be a torch uint8 tensor (B, 3, H, W){also}, got "
                        f"{type(images).__name__}")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")


def _check_images(images: Tensor, params: ViewParams, rows: np.ndarray) -> None:
    _check_uint8_batch(images)
    if tuple(images.shape[-2:]) != tuple(params.image_hw):
        raise ValueError(f"images are {tuple(images.shape[-2:])} but the parameters were "
                         f"drawn for {params.image_hw}")
    if len(rows) != len(params) or (len(rows) and not 0 <= rows.min() <= rows.max() < len(images)):
        raise ValueError("parameters and images do not match in batch size")


# On CPU the batch is processed in chunks whose float views take at most this many bytes:
# glibc serves bigger blocks with fresh mmaps that page-fault on every use (measured: 2.4x
# slower at 224 px), while chunk-sized temporaries are recycled from the heap.
CPU_CHUNK_BYTES = 24 << 20


def _apply(images: Tensor, params: ViewParams, cfg: AugmentConfig, rows: np.ndarray) -> Tensor:
    """Views (N, 3, S, S) of ``images[rows]`` with ``params``; see :func:`apply_params`."""
    _check_images(images, params, rows)
    n, size = len(params), params.size
    chunk = max(1, CPU_CHUNK_BYTES // (3 * size * size * 4))
    if images.device.type != "cpu" or n <= chunk:
        return _apply_chunk(images, params, cfg, rows)
    out = torch.empty((n, 3, size, size), dtype=torch.float32)
    for start in range(0, n, chunk):
        sel = np.arange(start, min(n, start + chunk))
        out[start:start + len(sel)] = _apply_chunk(images, params.select(sel), cfg, rows[sel])
    return out


def _apply_chunk(images: Tensor, params: ViewParams, cfg: AugmentConfig,
                 rows: np.ndarray) -> Tensor:
    """:func:`_apply` on one chunk: resize, then the stages in per-stage sample order."""
    n, device = len(params), images.device
    if n == 0:
        return torch.empty((0, 3, params.size, params.size), device=device)
    stages = _stages(params, cfg)
    orders = [np.argsort(s.key, kind="stable") for s in stages]
    layout = orders[0] if orders else np.arange(n)  # resize straight into stage 0's order
    segments, cur = [rows[layout], layout, params.noise_key.numpy()], layout
    for order in orders:  # per stage: its order, and the gather from the previous layout
        segments += [order, _inverse(cur)[order]]
        cur = order
    segments.append(_inverse(cur))
    ints = _to_device(np.stack(segments).astype(np.int64), device)
    floats = _to_device(float_table(params), device)
    identity = np.arange(n)
    gathered = images if np.array_equal(rows[layout], identity) and len(images) == n \
        else images.index_select(0, ints[0])
    x = crop_resize(gathered, floats.index_select(0, ints[1]), params.size, cfg.interpolation)
    spare = None  # gathers ping-pong between two buffers: fewer fresh allocations
    for s, (stage, order) in enumerate(zip(stages, orders, strict=True)):
        order_dev, rel = ints[3 + 2 * s], segments[4 + 2 * s]
        if not np.array_equal(rel, identity):
            spare = torch.empty_like(x) if spare is None else spare
            x, spare = torch.index_select(x, 0, ints[4 + 2 * s], out=spare), x
        f, keys = floats.index_select(0, order_dev), ints[2].index_select(0, order_dev)
        sorted_key = stage.key[order]
        for lo, hi, op in stage.ops:
            a, b = np.searchsorted(sorted_key, lo), np.searchsorted(sorted_key, hi)
            if b > a:
                op(x[a:b], f[a:b], keys[a:b])
    if not np.array_equal(segments[-1], identity):  # back to the original order
        x = torch.index_select(x, 0, ints[-1], out=torch.empty_like(x) if spare is None else spare)
    return x


def apply_params(images: Tensor, params: ViewParams, cfg: AugmentConfig) -> Tensor:
    """Apply one view's parameters to a batch (Sec. 3, App. A), batched on images' device.

    Args:
        images: uint8 (B, 3, H, W), CPU or CUDA, values 0..255.
        params: from :func:`sample_params` for the same B and (H, W).
    Returns:
        float32 (B, 3, S, S) in [0, 1] on the images' device (no normalisation, as the
        official code). No python loop over samples, no host sync on CUDA.
    """
    return _apply(images, params, cfg, np.arange(len(params)))


class TwoViewAugment:
    """SimCLR's two correlated views of every image (Sec. 2.1): ``t ~ T`` and ``t' ~ T``.

    ``TwoViewAugment(cfg, seed)(images uint8 (B, 3, H, W), indices (B,) int64, epoch)``
    returns (view0, view1), each float32 (B, 3, S, S) in [0, 1] on the images' device;
    view v of sample i depends only on (seed, epoch, indices[i], v) (and the picture's
    aspect ratio, ``aspect`` (B,), when stored squares stand for non-square pictures).
    Both views are processed as one batch of 2B (half the kernel launches and python
    overhead).
    """

    def __init__(self, cfg: AugmentConfig, seed: int) -> None:
        from simclr.validate import validate_augment

        validate_augment(cfg)  # a config built by hand gets the flags' checks too
        # (--seed's range: a float was truncated, 2**64 drew seed 0's views)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
                not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be a whole number in [0, {MAX_SEED}], got {seed!r}")
        self.cfg = cfg
        self.seed = int(seed)

    def params(self, indices: Tensor | np.ndarray, epoch: int, image_hw: tuple[int, int],
               aspect: Tensor | np.ndarray | None = None) -> tuple[ViewParams, ViewParams]:
        """The parameters of both views (CPU)."""
        return (sample_params(self.cfg, self.seed, epoch, indices, 0, image_hw, aspect),
                sample_params(self.cfg, self.seed, epoch, indices, 1, image_hw, aspect))

    def stacked(self, images: Tensor, indices: Tensor | np.ndarray, epoch: int,
                aspect: Tensor | np.ndarray | None = None) -> Tensor:
        """Both views as one float32 (2B, 3, S, S) tensor: view 0 of every image, then view 1.

        The layout the encoder consumes (one batch of 2N views), without a ``torch.cat``.
        """
        _check_uint8_batch(images)  # (before its first dim is read as the batch)
        b = images.shape[0]
        n = indices.numel() if isinstance(indices, Tensor) else np.size(indices)  # (or one int)
        if n != b:  # (else said of the parameters drawn for them, which the caller never gave)
            raise ValueError(f"indices name {n} images and the batch holds {b}: one index per "
                             "image")
        p0, p1 = self.params(indices, epoch, (images.shape[-2], images.shape[-1]), aspect)
        rows = np.concatenate([np.arange(b), np.arange(b)])
        return _apply(images, ViewParams.cat([p0, p1]), self.cfg, rows)

    def __call__(self, images: Tensor, indices: Tensor | np.ndarray, epoch: int,
                 aspect: Tensor | np.ndarray | None = None) -> tuple[Tensor, Tensor]:
        views = self.stacked(images, indices, epoch, aspect)
        b = images.shape[0]
        return views[:b], views[b:]


# ------------------------------------------------------------------------- evaluation

# What the evaluation computes of a file, for results cached across versions (sweeps):
# 2 since large photos are read as this transform's central square (data.open_folder);
# 3 since a small picture is its central square resized, wherever it is read (in a
# folder of large photos it was their crop of it; eval_resize squeezed a non-square one);
# 4 since views of side <= 28 of a folder holding large photos are cropped from squares
# of the transform's own side (they were resampled from 33 px: a small picture was not
# its central square resized, a photo was resized twice); 5 since a folder of small
# pictures is read so too, unless all are squares of one side (thumbnails of 64 x 48
# were squeezed to 48 x 48 and their crop located on that square: 4-28% off); 6 since
# a picture larger than 32 px gets one centre crop of its resized self, as torchvision's
# (its central square cropped first rounded the offset twice: a pixel off along the long
# side for half the shapes at sizes 16, 24, 32, 96, ...; not 28, 56, 224).
EVAL_VERSION = 6


def eval_resize(images: Tensor | Image.Image, size: int,
                aspect: Tensor | np.ndarray | None = None, *, central: bool = False) -> Tensor:
    """The evaluation transform (App. B): deterministic resize (+ center crop).

    Images whose longer side is <= 32 have their central square (all of a square one:
    CIFAR's) resized to size x size, no further crop; larger ones (a 20 x 40 image too)
    get their shorter side resized to round(size / 0.875), then a size x size center
    crop. Bicubic with antialiasing (a one-off per image, so quality over speed),
    clamped to [0, 1]. A stored square standing for a non-square picture (``aspect`` =
    width / height != 1, see :func:`simclr.decode.fit_square`) gets the same crop of
    that picture: the central square's central 87.5% (or all of it), located on the
    stored pixels.

    Args:
        images: uint8 (B, 3, H, W) tensor on any device, or one PIL image (``Image.open``
            of a file: read as :func:`simclr.decode.as_rgb` reads it).
        aspect: (B,) or None (all 1).
        central: the images are an evaluation source's squares (store
            :func:`simclr.decode.eval_store` of ``size``): each the square of side
            round(size / 0.875) of the resized picture around the transform's centre
            crop (:func:`simclr.decode.eval_square_start`; a small picture: its result,
            bordered; see :func:`simclr.decode.fit_square_tensor`), so only the centre
            crop is left, whatever the side (at most 32 for sizes up to 28, which would
            otherwise be taken for whole small pictures).
    Returns:
        float32 (B, 3, size, size) in [0, 1]; (3, size, size) for a PIL image.
    """
    if isinstance(images, Image.Image):  # as simclr reads a file (EXIF, alpha, 16-bit)
        array = np.asarray(as_rgb(images), dtype=np.uint8)
        return eval_resize(torch.from_numpy(array.copy()).permute(2, 0, 1)[None], size)[0]
    _check_uint8_batch(images, " or a PIL image")
    if not is_count(size):
        raise ValueError(f"size must be a positive whole number of pixels, got {size!r}")
    a = None if aspect is None else torch.as_tensor(aspect).detach().cpu().double().numpy()
    if a is not None and (a.shape != (len(images),) or not bool((a > 0).all())):
        raise ValueError(f"aspect must hold one positive width / height per image, "
                         f"shape ({len(images)},), got {a.shape} {a[:4].tolist()}")
    if central:
        side = eval_side(size)
        if tuple(images.shape[-2:]) != (side, side) or not (a is None or bool((a == 1.0).all())):
            raise ValueError(f"central=True takes squares of side {side} (eval_side({size})), "
                             f"aspect 1; got {tuple(images.shape[-2:])}")
        from torchvision.transforms.v2 import functional as tvf

        return tvf.center_crop(images, [size, size]).to(torch.float32).div_(255.0).contiguous()
    if a is None or bool((a == 1.0).all()):
        return _eval_square(images, size)
    out = torch.empty((len(images), 3, size, size), device=images.device)
    boxes = _eval_boxes(tuple(images.shape[-2:]), a)
    square = a == 1.0
    if square.any():
        rows = torch.from_numpy(np.flatnonzero(square)).to(images.device)
        out[rows] = _eval_square(images[rows], size)
    groups: dict[tuple[int, ...], list[int]] = {}
    for k in np.flatnonzero(~square):  # photos share few sizes: one resize per box
        groups.setdefault(tuple(int(v) for v in boxes[k]), []).append(int(k))
    for (top, left, h, w), members in groups.items():
        rows = torch.tensor(members, device=images.device)
        crop = images[rows][:, :, top:top + h, left:left + w]
        out[rows] = _eval_resize_to(crop, [size, size]).clamp_(0.0, 1.0)
    return out


def _eval_resize_to(images: Tensor, target: list[int]) -> Tensor:
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    x = images.to(torch.float32).div_(255.0)
    return tvf.resize(x, target, interpolation=InterpolationMode.BICUBIC, antialias=True)


def _eval_square(images: Tensor, size: int) -> Tensor:
    """:func:`eval_resize` of stored squares that are the whole picture."""
    from torchvision.transforms.v2 import functional as tvf

    height, width = images.shape[-2:]
    if max(height, width) <= 32:  # (its central square: a non-square small file's)
        short = min(height, width)
        x = _eval_resize_to(tvf.center_crop(images, [short, short]), [size, size])
    else:  # one centre crop of the resized picture (App. B; torchvision's Resize +
        # CenterCrop), which the squares evaluation sources store hold at their centre
        # (decode.eval_square_start): cropping the central square first rounded the
        # half-pixel offset twice, a pixel off for half the shapes at 16, 24, 32 px
        x = tvf.center_crop(_eval_resize_to(images, [eval_side(size)]), [size, size])
    return x.clamp_(0.0, 1.0).contiguous()


def _eval_boxes(image_hw: tuple[int, ...], aspect: np.ndarray) -> np.ndarray:
    """(B, 4) int64 (top, left, height, width) on the stored pixels of the picture's
    central square (side <= 32: all of it; else its central 87.5%)."""
    height, width = image_hw
    frac = 1.0 if max(height, width) <= 32 else EVAL_CROP_FRACTION
    h = np.where(aspect >= 1.0, height, height * aspect) * frac
    w = np.where(aspect >= 1.0, width / aspect, width) * frac
    h, w = np.maximum(1, np.round(h)).astype(np.int64), np.maximum(1, np.round(w)).astype(np.int64)
    return np.stack([(height - h) // 2, (width - w) // 2, h, w], axis=1)
