"""The random parameters of SimCLR's augmentation, drawn on the host (Sec. 3, App. A).

Every uniform is ``splitmix64`` of (seed, epoch, sample index, view, parameter id):
a view's parameters depend on nothing else, not on the batch composition, the number
of data workers or processes, or which other ops are on. :func:`sample_params` turns the
uniforms into :class:`ViewParams` with numpy, vectorised over the batch, following the
distributions of the official ``data_util.py`` and torchvision's ops.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from simclr.config import OFFICIAL_MIN_COVERED, AugmentConfig

# ------------------------------------------------------------------- counter-based RNG

_MASK64 = (1 << 64) - 1
_PARAM_SALT = 0x5EED5EED5EED5EED

_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback
_P_AREA = 0  # 10 uniforms: area fraction of each attempt
_P_RATIO = _P_AREA + _ATTEMPTS  # 10 uniforms: log aspect ratio of each attempt
(
    _P_TOP, _P_LEFT, _P_FLIP, _P_COLOR, _P_BRIGHT, _P_CONTRAST, _P_SAT, _P_HUE, _P_ORDER,
    _P_GRAY, _P_BLUR, _P_SIGMA, _P_CUTOUT, _P_CUT_Y, _P_CUT_X, _P_ROTATE, _P_ROT_K,
    _P_NOISE, _P_NOISE_STD, _P_NOISE_KEY, _P_SOBEL,
) = range(_P_RATIO + _ATTEMPTS, _P_RATIO + _ATTEMPTS + 21)
_N_PARAMS = _P_SOBEL + 1
# The official sampler's uniforms come after every other parameter's, so turning it on
# changes no other draw, and they are only computed when it is on.
_TF_ATTEMPTS = 100  # the official code's max_attempts
_TF_MIN_COVERED = OFFICIAL_MIN_COVERED  # ... and min_object_covered (10% of the image)
_P_TF_RATIO = _N_PARAMS  # 100 uniforms: aspect ratio of each attempt
_P_TF_HEIGHT = _P_TF_RATIO + _TF_ATTEMPTS  # 100 uniforms: height of each attempt
_TF_BLOCK = 8  # attempts drawn at a time, for the samples still without a box

# The 24 orders of (brightness, contrast, saturation, hue) = op ids (0, 1, 2, 3).
PERMUTATIONS = np.array(list(itertools.permutations(range(4))), dtype=np.int64)

# ITU-R 601 luma as used by torchvision and tf.image.rgb_to_grayscale (0.2989, not 0.299).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class Stream:
    """The counters of one view's uniforms, for parameters drawn on demand: the official
    crop sampler's attempts after the first few are only drawn for samples still
    without a box."""

    seed: int
    epoch: int
    indices: np.ndarray  # int64 (B,)
    view: int

    def columns(self, start: int, count: int, rows: np.ndarray | slice) -> np.ndarray:
        """Uniforms (rows of the batch, count) of parameter ids start .. start + count - 1."""
        return uniforms(self.seed, self.epoch, self.indices[rows], self.view, count, start)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (a bijection with good avalanche)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _u64(value: int) -> np.uint64:
    return np.uint64(int(value) & _MASK64)


def uniforms(seed: int, epoch: int, indices: np.ndarray, view: int, count: int,
             start: int = 0) -> np.ndarray:
    """Uniforms in [0, 1), float64 (B, count) of parameter ids start .. start + count - 1.

    Row b, column p depends only on (seed, epoch, indices[b], view, start + p): chained
    splitmix64 (each step a bijection of the previous key xor the next integer) then 53
    mantissa bits.
    """
    idx = np.asarray(indices, dtype=np.int64).view(np.uint64)
    key = _splitmix64(np.full(idx.shape, _u64(seed), dtype=np.uint64))
    key = _splitmix64(key ^ _u64(epoch))
    key = _splitmix64(key ^ idx)
    key = _splitmix64(key ^ _u64(view))
    pid = _splitmix64(np.arange(start, start + count, dtype=np.uint64) ^ np.uint64(_PARAM_SALT))
    bits = _splitmix64(key[:, None] ^ pid[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


# ------------------------------------------------------------------------- parameters

@dataclass
class ViewParams:
    """Per-sample parameters of one view of a batch: CPU tensors whose first dim is B.

    ``box`` is (top, left, height, width) in source pixels: the random resized crop
    (Sec. 3, App. A), the whole image when ``crop`` is off, or an S x S window (possibly
    reaching outside the image: zero padding) for crop without resize (Fig. 5). Boxes
    are drawn on the picture a stored image stands for and mapped onto its pixels
    (:func:`to_stored`; for crop without resize of a non-square picture the window is
    then resampled).
    ``factors`` are the brightness, contrast and saturation factors and the hue shift
    (with ``color_ops="official_v1"`` brightness's column holds a shift, not a factor);
    ``order[b]`` lists op ids (0 brightness, 1 contrast, 2 saturation, 3 hue) in the order
    sample b applies them. Ops switched off in the config have all-False masks. With
    ``recrop`` (the Fig. 5 protocol when another op comes before the crop), ``box`` is
    the crop shared by both views, resampled first without flip, and ``box2`` with
    ``flip`` is the targeted crop, applied to the view in the op order of the config.
    """

    box: Tensor  # int64 (B, 4)
    flip: Tensor  # bool (B,)
    color: Tensor  # bool (B,): colour jitter applied
    factors: Tensor  # float32 (B, 4)
    order: Tensor  # int64 (B, 4)
    gray: Tensor  # bool (B,)
    blur: Tensor  # bool (B,)
    sigma: Tensor  # float32 (B,): blur sigma in output pixels
    cutout: Tensor  # bool (B,)
    cutout_yx: Tensor  # int64 (B, 2): top-left corner of the erased square in the view
    rotate: Tensor  # int64 (B,): quarter turns (counter-clockwise), 0 = none
    noise_std: Tensor  # float32 (B,): 0 = no noise
    noise_key: Tensor  # int64 (B,): 32-bit key of the sample's noise field
    sobel: Tensor  # bool (B,)
    recrop: Tensor  # bool (B,): crop again after the first op (Fig. 5 orders), see box2
    box2: Tensor  # int64 (B, 4): that crop's (top, left, height, width) on the view's grid
    image_hw: tuple[int, int]
    size: int

    def __len__(self) -> int:
        return int(self.flip.shape[0])

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), Tensor)}

    def select(self, rows: Sequence[int] | Tensor | np.ndarray) -> ViewParams:
        """The parameters of the given samples, in that order."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        parts = {k: v.index_select(0, rows) for k, v in self._tensors().items()}
        return ViewParams(**parts, image_hw=self.image_hw, size=self.size)

    @staticmethod
    def cat(parts: Sequence[ViewParams]) -> ViewParams:
        """Concatenate the batches of several ViewParams (same image size and view size)."""
        first = parts[0]
        if any(p.image_hw != first.image_hw or p.size != first.size for p in parts):
            raise ValueError("ViewParams.cat: parts differ in image_hw or size")
        tensors = {k: torch.cat([p._tensors()[k] for p in parts]) for k in first._tensors()}
        return ViewParams(**tensors, image_hw=first.image_hw, size=first.size)


def _offsets(u: np.ndarray, slack: np.ndarray | int) -> np.ndarray:
    """Uniform integer offsets in [min(0, slack), max(0, slack)]."""
    slack = np.asarray(slack, dtype=np.int64)
    span = np.abs(slack) + 1
    return np.minimum(np.floor(u * span), span - 1).astype(np.int64) + np.minimum(slack, 0)


def _crop_boxes(
    u: np.ndarray, cfg: AugmentConfig, hw: tuple[int, int] | tuple[np.ndarray, np.ndarray],
    stream: Stream,
) -> np.ndarray:
    """Crop boxes int64 (B, 4) = (top, left, height, width) from the uniforms u (B, P).

    Random resized crop (App. A) as torchvision's ``RandomResizedCrop.get_params``: up
    to 10 attempts with area ~ U(scale) x image area and log aspect ratio ~ U(log ratio),
    keeping the first that fits (all attempts vectorised); otherwise the central crop with
    the aspect ratio clamped into the range. With ``crop_sampler="official"``, the
    official code's sampler instead (:func:`_official_boxes`), whose attempts are drawn
    from ``stream`` (the counters ``u`` came from). ``hw``: the image's (H, W), or
    per-sample arrays (B,) of them (a crop inside a previous crop, for Fig. 5).
    """
    n, size = len(u), cfg.size
    height = np.broadcast_to(np.asarray(hw[0], dtype=np.int64), (n,))
    width = np.broadcast_to(np.asarray(hw[1], dtype=np.int64), (n,))
    if not cfg.crop:
        return np.stack([np.zeros(n), np.zeros(n), height, width], 1).astype(np.int64)
    if not cfg.crop_resize:  # Fig. 5 "crop" without resize: an S x S window, zero padded
        top = _offsets(u[:, _P_TOP], height - size)
        left = _offsets(u[:, _P_LEFT], width - size)
        return np.stack([top, left, np.full(n, size), np.full(n, size)], 1).astype(np.int64)
    if cfg.crop_sampler == "official":
        return _official_boxes(u, cfg, height, width, stream)
    return _torchvision_boxes(u, cfg, height, width)


def _torchvision_boxes(u: np.ndarray, cfg: AugmentConfig, height: np.ndarray,
                       width: np.ndarray) -> np.ndarray:
    """torchvision's ``RandomResizedCrop.get_params``, vectorised; see :func:`_crop_boxes`."""
    n = len(u)
    lo, hi = cfg.crop_scale
    area = (height * width).astype(np.float64)[:, None]
    target = area * (lo + (hi - lo) * u[:, _P_AREA:_P_AREA + _ATTEMPTS])
    log_lo, log_hi = np.log(cfg.crop_ratio[0]), np.log(cfg.crop_ratio[1])
    ratio = np.exp(log_lo + (log_hi - log_lo) * u[:, _P_RATIO:_P_RATIO + _ATTEMPTS])
    w = np.round(np.sqrt(target * ratio))  # round half to even, like Python's round
    h = np.round(np.sqrt(target / ratio))
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    first = fits.argmax(axis=1)
    found = fits.any(axis=1)
    w = w[np.arange(n), first].astype(np.int64)
    h = h[np.arange(n), first].astype(np.int64)
    # Fallback: the whole image with its aspect ratio clamped into the range, centred.
    in_ratio = width / height
    narrow, wide = in_ratio < cfg.crop_ratio[0], in_ratio > cfg.crop_ratio[1]
    fw = np.where(wide, np.round(height * cfg.crop_ratio[1]), width).astype(np.int64)
    fh = np.where(narrow, np.round(width / cfg.crop_ratio[0]), height).astype(np.int64)
    w, h = np.where(found, w, fw), np.where(found, h, fh)
    top = np.where(found, _offsets(u[:, _P_TOP], height - h), (height - fh) // 2)
    left = np.where(found, _offsets(u[:, _P_LEFT], width - w), (width - fw) // 2)
    return np.stack([top, left, h, w], axis=1).astype(np.int64)


def _official_boxes(u: np.ndarray, cfg: AugmentConfig, height: np.ndarray,
                    width: np.ndarray, stream: Stream) -> np.ndarray:
    """The official code's crop: TensorFlow's ``sample_distorted_bounding_box`` as
    ``data_util.distorted_bounding_box_crop`` calls it (whole-image box, area range
    ``crop_scale``, aspect ratio range ``crop_ratio``, min_object_covered 0.1, 100
    attempts); boxes int64 (B, 4).

    The first attempt that fits (:func:`_tf_attempts`) is kept, at a uniform integer
    offset in [0, H - h) (TF's ``Uniform(H - h)``: the box never touches the bottom or
    right edge unless it spans the image); if none of the 100 does, the whole image.
    Attempts are drawn a block at a time for the samples still without a box (most
    have one after the first block).
    """
    box_h, box_w = height.copy(), width.copy()  # the fallback: the whole image
    pending = np.arange(len(u))
    for first in range(0, _TF_ATTEMPTS, _TF_BLOCK):
        count = min(_TF_BLOCK, _TF_ATTEMPTS - first)
        h, w, found = _tf_attempts(stream.columns(_P_TF_RATIO + first, count, pending),
                                   stream.columns(_P_TF_HEIGHT + first, count, pending),
                                   cfg, height[pending], width[pending])
        box_h[pending[found]], box_w[pending[found]] = h[found], w[found]
        pending = pending[~found]
        if not len(pending):
            break
    top = np.minimum(np.floor(u[:, _P_TOP] * (height - box_h)), np.maximum(height - box_h - 1, 0))
    left = np.minimum(np.floor(u[:, _P_LEFT] * (width - box_w)), np.maximum(width - box_w - 1, 0))
    return np.stack([top, left, box_h, box_w], axis=1).astype(np.int64)


def _tf_attempts(u_ratio: np.ndarray, u_height: np.ndarray, cfg: AugmentConfig,
                 height: np.ndarray, width: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF's ``GenerateRandomCrop`` plus its overlap test for attempts (B, A) at once:
    the (height, width) int64 (B,) of each sample's first box that passes, and whether
    one did (bool (B,)).

    An attempt draws the aspect ratio r = w / h *uniformly* (not log-uniformly), then the
    height as a uniform integer between the heights whose boxes of ratio r have the
    smallest and the largest allowed area, clipped to fit (so the area is not uniform:
    it grows as h^2), w = round(h r), one step of h to repair rounding; it passes if its
    area is in range and covers at least 10% of the image. Arithmetic in float64 where
    TF uses float32, which can only move ties.
    """
    n = len(height)
    big_h = height[:, None].astype(np.float64)
    big_w = width[:, None].astype(np.float64)
    r_lo, r_hi = cfg.crop_ratio
    ratio = r_lo + (r_hi - r_lo) * u_ratio  # (B, A)
    min_area = cfg.crop_scale[0] * big_h * big_w
    max_area = cfg.crop_scale[1] * big_h * big_w
    h_min = np.rint(np.sqrt(min_area / ratio))  # rint: round half to even, like lrintf
    h_max = np.rint(np.sqrt(max_area / ratio))
    h_fit = np.floor((big_w + 0.5 - 1e-7) / ratio)  # the tallest box whose width fits
    h_fit = np.where(np.rint(h_fit * ratio) > big_w, h_fit - 1, h_fit)
    h_max = np.minimum(np.where(np.rint(h_max * ratio) > big_w, h_fit, h_max), big_h)
    h_min = np.minimum(h_min, h_max)
    span = h_max - h_min + 1
    h = h_min + np.minimum(np.floor(u_height * span), span - 1)
    w = np.rint(h * ratio)
    h = np.where(w * h < min_area, h + 1, h)  # rounding left the box too small: one taller
    w = np.rint(h * ratio)
    h = np.where(w * h > max_area, h - 1, h)  # ... or too large: one shorter
    w = np.rint(h * ratio)
    area = w * h
    fits = ((area >= min_area) & (area <= max_area) & (w <= big_w) & (h <= big_h)
            & (w > 0) & (h > 0) & (area >= 1) & (area / (big_h * big_w) >= _TF_MIN_COVERED))
    first = fits.argmax(axis=1)
    rows = np.arange(n)
    return h[rows, first].astype(np.int64), w[rows, first].astype(np.int64), fits.any(axis=1)


def _coin(u: np.ndarray, on: bool, p: float) -> np.ndarray:
    return (u < p) if on else np.zeros(len(u), dtype=bool)


def _jitter_factors(u: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """(B, 4) float32: brightness, contrast, saturation ~ U(max(0, 1-a), 1+a); hue ~ U(-h, h).
    With ``color_ops="official_v1"`` brightness is a shift ~ U(-a, a) (App. A's
    ``tf.image.random_brightness``), not a factor."""
    b, c, s, h = cfg.jitter()
    bounds = [(max(0.0, 1.0 - a), 1.0 + a) for a in (b, c, s)] + [(-h, h)]
    if cfg.color_ops == "official_v1":
        bounds[0] = (-b, b)
    out = np.empty((len(u), 4), dtype=np.float64)
    for col, ((lo, hi), pid) in enumerate(zip(bounds, (_P_BRIGHT, _P_CONTRAST, _P_SAT, _P_HUE),
                                              strict=True)):
        out[:, col] = lo + (hi - lo) * u[:, pid]
    return out.astype(np.float32)


SHARED_CROP_VIEW = 0x5C  # the uniforms of the Fig. 5 protocol's shared crop


def _asymmetric_boxes(
    cfg: AugmentConfig, u: np.ndarray, stream: Stream,
    hw: tuple[int, int] | tuple[np.ndarray, np.ndarray],
) -> tuple[AugmentConfig, np.ndarray, np.ndarray | None]:
    """(config for this view, boxes (B, 4), boxes of a second crop on the view's grid or
    None) under the Fig. 5 protocol (Sec. 3.1): "we always first randomly crop images
    and resize them to the same resolution, and we then apply the targeted
    transformation(s) only to one branch". When the targeted crop comes first it is
    drawn inside the shared crop at the source resolution (one resampling, not two);
    after another op (``cfg.first_op``) it crops the view, a second resampling."""
    shared_cfg = dataclasses.replace(cfg, crop=True)
    shared_stream = dataclasses.replace(stream, view=SHARED_CROP_VIEW)
    shared = _crop_boxes(shared_stream.columns(0, _N_PARAMS, slice(None)), shared_cfg, hw,
                         shared_stream)
    if stream.view != 0:  # the identity branch: t(x) = x
        identity = dataclasses.replace(
            cfg, crop=False, flip=False, color=False, grayscale=False, blur=False,
            cutout=False, rotate=False, noise=False, sobel=False)
        return identity, shared, None
    if not cfg.crop:
        return cfg, shared, None
    if cfg.first_op not in ("", "crop"):
        return cfg, shared, _crop_boxes(u, cfg, (cfg.size, cfg.size), stream)
    inner = _crop_boxes(u, cfg, (shared[:, 2], shared[:, 3]), stream)
    inner[:, :2] += shared[:, :2]
    return cfg, inner, None


def picture_hw(image_hw: tuple[int, int], aspect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (H, W) int64 arrays (B,) of the pictures that stored squares stand for.

    A square stored with ``store='full'`` is a whole picture of width / height ``aspect``
    squeezed to (H, W): the picture is taken at the stored resolution of its shorter
    side, so (H, round(W * a)) for a >= 1 and (round(H / a), W) below.
    """
    a = np.asarray(aspect, dtype=np.float64)
    height, width = image_hw
    ph = np.where(a >= 1.0, height, np.maximum(1, np.round(height / a)))
    pw = np.where(a >= 1.0, np.maximum(1, np.round(width * a)), width)
    return ph.astype(np.int64), pw.astype(np.int64)


def to_stored(boxes: np.ndarray, picture: tuple[np.ndarray, np.ndarray],
              image_hw: tuple[int, int]) -> np.ndarray:
    """Boxes (B, 4) = (top, left, height, width) on the pictures -> on the stored squares.

    Each edge is scaled by stored / picture size and rounded, so a box keeps its place
    and (to one stored pixel) its aspect ratio in the picture; sides stay >= 1.
    """
    sy = image_hw[0] / picture[0].astype(np.float64)
    sx = image_hw[1] / picture[1].astype(np.float64)
    top, left, h, w = (boxes[:, k].astype(np.float64) for k in range(4))
    y0, x0 = np.round(top * sy), np.round(left * sx)
    y1, x1 = np.round((top + h) * sy), np.round((left + w) * sx)
    return np.stack([y0, x0, np.maximum(1, y1 - y0), np.maximum(1, x1 - x0)],
                    axis=1).astype(np.int64)


def _view_boxes(cfg: AugmentConfig, u: np.ndarray, stream: Stream, hw: tuple[int, int],
                aspect: Tensor | np.ndarray | None,
                ) -> tuple[AugmentConfig, np.ndarray, np.ndarray | None]:
    """The crop boxes of one view on the stored (H, W) = ``hw`` pixels: (B, 4) boxes, the
    Fig. 5 second boxes or None, and the config the rest of the view draws from (the
    asymmetric protocol changes it, :func:`_asymmetric_boxes`)."""
    if isinstance(aspect, Tensor):
        aspect = aspect.detach().cpu().numpy()
    # Square pictures (the usual case) take the exact path: no rounding through to_stored.
    picture = None if aspect is None or bool((np.asarray(aspect) == 1.0).all()) \
        else picture_hw(hw, np.asarray(aspect).reshape(-1))
    draw_hw = hw if picture is None else picture
    box2 = None
    if cfg.asymmetric:
        cfg, boxes, box2 = _asymmetric_boxes(cfg, u, stream, draw_hw)
    else:
        boxes = _crop_boxes(u, cfg, draw_hw, stream)
    if picture is not None:
        boxes = to_stored(boxes, picture, hw)
    return cfg, boxes, box2


def _checked_inputs(indices: Tensor | np.ndarray | Sequence[int], epoch: int,
                    aspect: Tensor | np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``indices`` as int64 (B,) and ``aspect`` as float64 (B,) (or None), refused where
    they would silently draw other views: a float index or epoch (1.9 drew index 1's),
    an aspect that is not one positive finite number per sample (-1 gave 1-px crops)."""
    if isinstance(indices, Tensor):
        indices = indices.detach().cpu().numpy()
    given = np.asarray(indices)
    if given.ndim > 1:
        raise ValueError(f"indices must be one per sample, (B,), got shape {given.shape}")
    raw = given.reshape(-1)
    if raw.dtype.kind not in "iu" and raw.size:
        raise TypeError(f"indices must be whole numbers (data-set indices), got {raw.dtype}")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
        raise TypeError(f"epoch must be a whole number, got {epoch!r}")
    # (negative ones wrapped around the 64-bit keys: another sample's or epoch's views)
    if epoch < 0 or (raw.size and raw.min() < 0):
        raise ValueError(f"epoch and indices must be >= 0, got epoch {epoch}, smallest "
                         f"index {raw.min() if raw.size else None}")
    if aspect is None:
        return raw.astype(np.int64), None
    if isinstance(aspect, Tensor):
        aspect = aspect.detach().cpu().numpy()
    a = np.asarray(aspect, dtype=np.float64).reshape(-1)
    if a.size == 1:  # one aspect for every sample (1: the stored images themselves)
        a = np.full(len(raw), a[0])
    if len(a) != len(raw) or not bool(np.all(np.isfinite(a) & (a > 0))):
        raise ValueError(f"aspect must hold one positive width / height per sample "
                         f"({len(raw)}), got {len(a)} values, first {a[:4].tolist()}")
    return raw.astype(np.int64), a


def sample_params(
    cfg: AugmentConfig,
    seed: int,
    epoch: int,
    indices: Tensor | np.ndarray | Sequence[int],
    view: int,
    image_hw: tuple[int, int],
    aspect: Tensor | np.ndarray | None = None,
) -> ViewParams:
    """Draw one view's parameters for a batch of samples (Sec. 3, App. A).

    Args:
        indices: (B,) int64 data-set indices of the samples (CPU; a CUDA tensor syncs).
        view: 0 or 1 for the two views of SimCLR; any int works.
        image_hw: (H, W) of the source images.
        aspect: (B,) width / height of the picture each stored image stands for
            (:func:`simclr.decode.fit_square`); None or 1: the stored image itself. Crops
            are drawn on the picture, as torchvision's RandomResizedCrop on the file,
            then mapped onto the stored pixels (:func:`to_stored`).
    Returns:
        ViewParams of CPU tensors; sample b's values depend only on (seed, epoch,
        indices[b], view) and the config.

    With ``cfg.asymmetric`` (the Fig. 5 protocol) a random resized crop drawn once per
    (seed, epoch, index) is shared by both views; view 1 is that crop and nothing else,
    view 0 applies the configured ops to it, its own crop (if on) taken inside it.
    """
    idx, aspect = _checked_inputs(indices, epoch, aspect)
    stream = Stream(seed, epoch, idx, view)
    u = stream.columns(0, _N_PARAMS, slice(None))
    n, size = len(idx), cfg.size
    cfg, boxes, box2 = _view_boxes(cfg, u, stream, (int(image_hw[0]), int(image_hw[1])), aspect)
    if cfg.color_random_order:
        order = PERMUTATIONS[np.minimum((u[:, _P_ORDER] * 24).astype(np.int64), 23)]
    else:
        order = np.tile(np.arange(4, dtype=np.int64), (n, 1))
    side = cutout_side(cfg)
    cut = np.stack([_offsets(u[:, _P_CUT_Y], size - side),
                    _offsets(u[:, _P_CUT_X], size - side)], axis=1)
    rotate = np.where(_coin(u[:, _P_ROTATE], cfg.rotate, cfg.rotate_p),
                      1 + np.minimum((u[:, _P_ROT_K] * 3).astype(np.int64), 2), 0)
    noisy = _coin(u[:, _P_NOISE], cfg.noise, cfg.noise_p)
    lo, hi = cfg.noise_std
    noise_std = np.where(noisy, lo + (hi - lo) * u[:, _P_NOISE_STD], 0.0)
    lo, hi = cfg.blur_sigma
    t = torch.from_numpy
    return ViewParams(
        box=t(boxes),
        flip=t(_coin(u[:, _P_FLIP], cfg.flip, cfg.flip_p)),
        color=t(_coin(u[:, _P_COLOR], cfg.color, cfg.color_p)),
        factors=t(_jitter_factors(u, cfg)),
        order=t(np.ascontiguousarray(order)),
        gray=t(_coin(u[:, _P_GRAY], cfg.grayscale, cfg.grayscale_p)),
        blur=t(_coin(u[:, _P_BLUR], cfg.blur, cfg.blur_p)),
        sigma=t((lo + (hi - lo) * u[:, _P_SIGMA]).astype(np.float32)),
        cutout=t(_coin(u[:, _P_CUTOUT], cfg.cutout, cfg.cutout_p)),
        cutout_yx=t(cut.astype(np.int64)),
        rotate=t(rotate.astype(np.int64)),
        noise_std=t(noise_std.astype(np.float32)),
        noise_key=t((u[:, _P_NOISE_KEY] * 2.0**32).astype(np.int64)),
        sobel=t(_coin(u[:, _P_SOBEL], cfg.sobel, cfg.sobel_p)),
        recrop=torch.full((n,), box2 is not None, dtype=torch.bool),
        box2=t(np.zeros((n, 4), dtype=np.int64) if box2 is None else box2),
        image_hw=(int(image_hw[0]), int(image_hw[1])),
        size=size,
    )


def blur_kernel_size(size: int, frac: float = 0.1) -> int:
    """Side of the blur kernel for views of side ``size``: 10% of it, made odd.

    As the official code: ``radius = int(size * frac) // 2``, side ``2 * radius + 1``
    (23 for 224-px views, 3 for 32-px views, 1 below 20 px: a single tap, no blur; a
    side of 3 there blurred half the views of 10-19 px that the official code leaves
    as they are).
    """
    return 2 * (int(size * frac) // 2) + 1


def cutout_side(cfg: AugmentConfig) -> int:
    """Side of the square erased by cutout, pixels of the view."""
    return int(min(cfg.size, max(1, round(cfg.cutout_frac * cfg.size))))
