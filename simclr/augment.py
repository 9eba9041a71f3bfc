"""SimCLR's stochastic data augmentation, batched on the training device (Sec. 3, App. A).

Two views of every image (Chen et al. 2020, Sec. 2.1, Fig. 4): random resized crop with
horizontal flip, colour jitter (p=0.8, the four ops in random order), random grayscale
(p=0.2) and gaussian blur (p=0.5, ImageNet only), plus the extra ops of the Fig. 5
ablation (cutout, rotation, gaussian noise, sobel, crop without resize). Semantics follow
the official ``data_util.py`` with torchvision's definitions of the individual ops.

Design:

* **Randomness is counter based.** Every uniform is ``splitmix64`` of (seed, epoch,
  sample index, view, parameter id), so a view depends on nothing else: not on the batch
  composition, the number of data workers or processes, or which other ops are on.
* **Parameters are drawn on the host** (:func:`sample_params`, numpy, vectorised over the
  batch) and shipped to the device in two small pinned tensors; :func:`apply_params` then
  runs without a single host sync, so it can sit on the CUDA stream of the training step.
* **Crop + resize + flip is one pair of batched matrix products.** Resampling is
  separable, so each view is ``Wy @ image @ Wx^T`` with per-sample interpolation matrices
  built on the device. They reproduce ``torch.nn.functional.interpolate`` (the kernel
  behind torchvision's ``resized_crop``) exactly: align_corners=False, bicubic a=-0.75 or
  bilinear, edge pixels of the *crop* replicated, no antialiasing (the official code
  uses ``tf.image.resize_bicubic``, which has none). The flip reverses the rows of ``Wx``,
  the 1/255 scaling is folded into ``Wy``. The gaussian blur is likewise a per-sample
  banded matrix with reflect padding folded in, multiplied tile by tile (on CPU these
  products beat grouped convolutions several times over).
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
sobel -> noise -> cutout; every op clamps to [0, 1].
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from simclr.config import AugmentConfig

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

# The 24 orders of (brightness, contrast, saturation, hue) = op ids (0, 1, 2, 3).
PERMUTATIONS = np.array(list(itertools.permutations(range(4))), dtype=np.int64)

# ITU-R 601 luma as used by torchvision and tf.image.rgb_to_grayscale (0.2989, not 0.299).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (a bijection with good avalanche)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _u64(value: int) -> np.uint64:
    return np.uint64(int(value) & _MASK64)


def uniforms(seed: int, epoch: int, indices: np.ndarray, view: int, count: int) -> np.ndarray:
    """Uniforms in [0, 1), float64 (B, count): a pure function of every argument.

    Row b, column p depends only on (seed, epoch, indices[b], view, p): chained splitmix64
    (each step a bijection of the previous key xor the next integer) then 53 mantissa bits.
    """
    idx = np.asarray(indices, dtype=np.int64).view(np.uint64)
    key = _splitmix64(np.full(idx.shape, _u64(seed), dtype=np.uint64))
    key = _splitmix64(key ^ _u64(epoch))
    key = _splitmix64(key ^ idx)
    key = _splitmix64(key ^ _u64(view))
    pid = _splitmix64(np.arange(count, dtype=np.uint64) ^ np.uint64(_PARAM_SALT))
    bits = _splitmix64(key[:, None] ^ pid[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


# ------------------------------------------------------------------------- parameters

@dataclass
class ViewParams:
    """Per-sample parameters of one view of a batch: CPU tensors whose first dim is B.

    ``box`` is (top, left, height, width) in source pixels: the random resized crop
    (Sec. 3, App. A), the whole image when ``crop`` is off, or an S x S window (possibly
    reaching outside the image: zero padding) for crop without resize (Fig. 5).
    ``factors`` are the brightness, contrast and saturation factors and the hue shift;
    ``order[b]`` lists op ids (0 brightness, 1 contrast, 2 saturation, 3 hue) in the order
    sample b applies them. Ops switched off in the config have all-False masks.
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
    image_hw: tuple[int, int]
    size: int

    def __len__(self) -> int:
        return int(self.flip.shape[0])

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), Tensor)}

    def select(self, rows: Sequence[int] | Tensor) -> ViewParams:
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


def _crop_boxes(u: np.ndarray, cfg: AugmentConfig, hw: tuple[int, int]) -> np.ndarray:
    """Crop boxes int64 (B, 4) = (top, left, height, width) from the uniforms u (B, P).

    Random resized crop as torchvision's ``RandomResizedCrop.get_params`` (App. A): up to
    10 attempts with area ~ U(scale) x image area and log aspect ratio ~ U(log ratio),
    keeping the first that fits (all attempts vectorised); otherwise the central crop with
    the aspect ratio clamped into the range.
    """
    height, width = hw
    n, size = len(u), cfg.size
    if not cfg.crop:
        return np.tile(np.array([0, 0, height, width], dtype=np.int64), (n, 1))
    if not cfg.crop_resize:  # Fig. 5 "crop" without resize: an S x S window, zero padded
        top = _offsets(u[:, _P_TOP], height - size)
        left = _offsets(u[:, _P_LEFT], width - size)
        return np.stack([top, left, np.full(n, size), np.full(n, size)], 1).astype(np.int64)
    lo, hi = cfg.crop_scale
    target = height * width * (lo + (hi - lo) * u[:, _P_AREA:_P_AREA + _ATTEMPTS])
    log_lo, log_hi = np.log(cfg.crop_ratio[0]), np.log(cfg.crop_ratio[1])
    ratio = np.exp(log_lo + (log_hi - log_lo) * u[:, _P_RATIO:_P_RATIO + _ATTEMPTS])
    w = np.round(np.sqrt(target * ratio))  # round half to even, like Python's round
    h = np.round(np.sqrt(target / ratio))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)
    found = fits.any(axis=1)
    w = w[np.arange(n), first].astype(np.int64)
    h = h[np.arange(n), first].astype(np.int64)
    in_ratio = width / height
    if in_ratio < cfg.crop_ratio[0]:
        fw, fh = width, int(round(width / cfg.crop_ratio[0]))
    elif in_ratio > cfg.crop_ratio[1]:
        fw, fh = int(round(height * cfg.crop_ratio[1])), height
    else:
        fw, fh = width, height
    w, h = np.where(found, w, fw), np.where(found, h, fh)
    top = np.where(found, _offsets(u[:, _P_TOP], height - h), (height - fh) // 2)
    left = np.where(found, _offsets(u[:, _P_LEFT], width - w), (width - fw) // 2)
    return np.stack([top, left, h, w], axis=1).astype(np.int64)


def _coin(u: np.ndarray, on: bool, p: float) -> np.ndarray:
    return (u < p) if on else np.zeros(len(u), dtype=bool)


def _jitter_factors(u: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """(B, 4) float32: brightness, contrast, saturation ~ U(max(0, 1-a), 1+a); hue ~ U(-h, h)."""
    b, c, s, h = cfg.jitter()
    out = np.empty((len(u), 4), dtype=np.float64)
    for col, amount, pid in ((0, b, _P_BRIGHT), (1, c, _P_CONTRAST), (2, s, _P_SAT)):
        lo = max(0.0, 1.0 - amount)
        out[:, col] = lo + (1.0 + amount - lo) * u[:, pid]
    out[:, 3] = -h + 2.0 * h * u[:, _P_HUE]
    return out.astype(np.float32)


def sample_params(
    cfg: AugmentConfig,
    seed: int,
    epoch: int,
    indices: Tensor | np.ndarray | Sequence[int],
    view: int,
    image_hw: tuple[int, int],
) -> ViewParams:
    """Draw one view's parameters for a batch of samples (Sec. 3, App. A).

    Args:
        indices: (B,) int64 data-set indices of the samples (CPU; a CUDA tensor syncs).
        view: 0 or 1 for the two views of SimCLR; any int works.
        image_hw: (H, W) of the source images.
    Returns:
        ViewParams of CPU tensors; sample b's values depend only on (seed, epoch,
        indices[b], view) and the config.
    """
    if isinstance(indices, Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    u = uniforms(seed, epoch, idx, view, _N_PARAMS)
    n, size = len(idx), cfg.size
    boxes = _crop_boxes(u, cfg, (int(image_hw[0]), int(image_hw[1])))
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
        image_hw=(int(image_hw[0]), int(image_hw[1])),
        size=size,
    )


def blur_kernel_size(size: int, frac: float = 0.1) -> int:
    """Side of the blur kernel for views of side ``size``: 10% of it, made odd, >= 3.

    As the official code: ``radius = int(size * frac) // 2``, side ``2 * radius + 1``
    (23 for 224-px views, 3 for 32-px views).
    """
    return 2 * max(1, int(size * frac) // 2) + 1


def cutout_side(cfg: AugmentConfig) -> int:
    """Side of the square erased by cutout, pixels of the view."""
    return int(min(cfg.size, max(1, round(cfg.cutout_frac * cfg.size))))


# ------------------------------------------------------------ device-side resampling

# Columns of the per-sample float table shipped to the device.
_F_TOP, _F_LEFT, _F_H, _F_W, _F_FLIP = range(5)
_F_BRIGHT, _F_CONTRAST, _F_SAT, _F_HUE, _F_SIGMA, _F_NOISE, _F_CUT_Y, _F_CUT_X = range(5, 13)
_N_FLOATS = 13


def _cubic_weights(t: Tensor) -> list[Tensor]:
    """Keys' cubic convolution weights (a = -0.75, as PyTorch/PIL) of taps -1, 0, 1, 2."""
    a = -0.75

    def near(d: Tensor) -> Tensor:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: Tensor) -> Tensor:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _resize_matrix(
    start: Tensor, length: Tensor, in_size: int, out_size: int, flip: Tensor | None,
    mode: str, gain: float = 1.0,
) -> Tensor:
    """Per-sample 1-D resampling matrices (n, out_size, in_size), float32.

    Row o of sample b holds the weights with which ``interpolate(crop, out_size,
    align_corners=False)`` mixes the source pixels for output pixel o, where the crop is
    [start, start + length) of the image axis: source coordinate (o + 0.5) * length /
    out_size - 0.5, taps clamped into the crop (edge replication), lower tap index and
    fraction guarded as PyTorch does. Taps outside the image carry zero (the zero padding
    of crop without resize). ``flip`` (n,) bool reverses the output axis.
    """
    n = start.shape[0]
    dev = start.device
    o = torch.arange(out_size, device=dev, dtype=torch.float32).expand(n, out_size)
    if flip is not None:
        o = torch.where(flip[:, None], (out_size - 1) - o, o)
    src = (length / out_size)[:, None] * (o + 0.5) - 0.5  # float32, as interpolate's opmath
    if mode == "bicubic":
        offsets = (-1, 0, 1, 2)
    else:
        offsets = (0, 1)
        src = src.clamp_min(0.0)  # linear modes clamp negative source coordinates to 0
    last = (length - 1)[:, None]
    i0 = torch.minimum(src.floor(), last)
    t = (src - i0).clamp(0.0, 1.0)
    weights = _cubic_weights(t) if mode == "bicubic" else [1.0 - t, t]
    taps = torch.stack([torch.minimum((i0 + d).clamp_min(0.0), last) for d in offsets], -1)
    pos = taps + start[:, None, None]  # (n, out, T) absolute pixel positions
    inside = (pos >= 0) & (pos < in_size)
    w = torch.stack(weights, -1) * inside * gain
    return _scatter_rows(pos.clamp(0, in_size - 1).long(), w, in_size)


def _scatter_rows(index: Tensor, weight: Tensor, width: int) -> Tensor:
    """Matrices (n, rows, width) with ``weight[..., t]`` added at column ``index[..., t]``.

    One ``scatter_add_`` per tap: within a call no two weights share a target (each row
    gets one), so the sums are deterministic on CUDA too, where colliding atomic adds are
    not (clamped taps at the borders do collide).
    """
    n, rows, taps = index.shape
    mat = torch.zeros((n, rows, width), device=index.device, dtype=torch.float32)
    for t in range(taps):
        mat.scatter_add_(2, index[..., t:t + 1], weight[..., t:t + 1])
    return mat


def _crop_resize(images: Tensor, geo: Tensor, size: int, mode: str) -> Tensor:
    """Crop, resize and flip a batch: uint8 (n, 3, H, W) -> float32 (n, 3, S, S) in [0, 1].

    ``geo`` (n, 5) float32 = top, left, height, width, flip. The rows are resampled by one
    batched product ``Wy @ image`` with the channels side by side (uint8 permute: cheap),
    then the columns by a second product on the (n, S * 3, W) result; the last pass puts
    the channels first and clamps. Two wide products beat one product per channel
    (small matrices run far below peak).
    """
    n, _, height, width = images.shape
    wy = _resize_matrix(geo[:, _F_TOP], geo[:, _F_H], height, size, None, mode, 1.0 / 255.0)
    wx = _resize_matrix(geo[:, _F_LEFT], geo[:, _F_W], width, size, geo[:, _F_FLIP] > 0.5, mode)
    rows = torch.empty((n, height, 3, width), device=images.device, dtype=torch.float32)
    rows.copy_(images.permute(0, 2, 1, 3))  # convert and put channels inside rows: one pass
    y = torch.bmm(wy, rows.view(n, height, 3 * width)).view(n, 3 * size, width)  # (n, S, 3, W)
    z = torch.bmm(y, wx.transpose(1, 2)).view(n, size, 3, size)  # (n, S, 3, S)
    out = torch.empty((n, 3, size, size), device=images.device, dtype=torch.float32)
    return torch.clamp(z.permute(0, 2, 1, 3), 0.0, 1.0, out=out)  # bicubic overshoots


def _blur_matrix(sigma: Tensor, size: int, side: int) -> Tensor:
    """Per-sample gaussian blur matrices (n, S, S) with reflect padding folded in.

    Taps at integer offsets d in [-r, r] (r = side // 2) weighted exp(-d^2 / (2 sigma^2)),
    normalised; out-of-range taps reflect about the edge pixel (torch 'reflect').
    """
    radius = min(side // 2, size - 1)
    dev = sigma.device
    d = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)
    w = torch.exp(-(d * d)[None, :] / (2.0 * sigma[:, None] ** 2))
    w = w / w.sum(dim=1, keepdim=True)  # (n, k)
    pos = torch.arange(size, device=dev)[:, None] + d.long()[None, :]  # (S, k)
    pos = torch.where(pos < 0, -pos, pos)
    pos = torch.where(pos > size - 1, 2 * (size - 1) - pos, pos)
    n, k = w.shape
    return _scatter_rows(pos.expand(n, size, k), w[:, None, :].expand(n, size, k), size)


# ------------------------------------------------------------------- colour and others

def _luma(x: Tensor) -> Tensor:
    """(n, 3, S, S) -> (n, 1, S, S) grayscale, torchvision's ``rgb_to_grayscale``."""
    r, g, b = GRAY_WEIGHTS
    return x[:, 0:1].mul(r).add_(x[:, 1:2], alpha=g).add_(x[:, 2:3], alpha=b)


def _hue_sixths(r: Tensor, g: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """HSV hue in sixths of a turn [0, 6), value (max) and chroma (max - min) of r, g, b.

    Branch-free: sort the channels with max/min, tracking the sector offset as 0/1 floats
    (sign of a difference), instead of ``where`` and ``remainder``, which are several
    times slower than arithmetic on CPU.
    """
    hi_gb, lo_gb = torch.maximum(g, b), torch.minimum(g, b)
    swap_gb = (b - g).sign_().clamp_(min=0.0)  # 1 where b > g
    maxc, mid = torch.maximum(r, hi_gb), torch.minimum(r, hi_gb)
    swap_r = (hi_gb - r).sign_().clamp_(min=0.0)  # 1 where max(g, b) > r
    chroma = maxc - torch.minimum(mid, lo_gb)
    # Offset in turns: 0 / -1 (g < b) then -1/3 - offset when r is not the max.
    offset = swap_gb.mul_(-1.0)
    offset = offset.add_(swap_r.mul_(offset.mul(-2.0).sub_(1.0 / 3.0)))
    frac = (mid - lo_gb).div_(chroma.mul(6.0).clamp_(min=1e-20))  # chroma 0: hue 0
    return frac.add_(offset).abs_().mul_(6.0), maxc, chroma


def adjust_hue(x: Tensor, shift: Tensor, out: Tensor | None = None) -> Tensor:
    """Rotate the HSV hue of x (n, 3, ...) in [0, 1] by shift (n,) turns (into ``out``).

    Equal to RGB -> HSV, h <- (h + shift) mod 1, HSV -> RGB (torchvision's
    ``adjust_hue``), computed without materialising HSV: value and chroma are invariant,
    and channel c (centred at 0, 2, 4 sixths for R, G, B) of the result is
    ``max - chroma * clamp(dist(h, centre_c) - 1, 0, 1)`` with the circular distance
    ``dist = min(d, 6 - d)``, ``d = |h - centre_c|``.
    """
    h, maxc, chroma = _hue_sixths(*x.unbind(1))
    shape = (-1,) + (1,) * (h.dim() - 1)
    h = h.add_(6.0 * shift.view(shape))  # [-3, 9)
    h = h.sub_(torch.floor(h * (1.0 / 6.0)), alpha=6.0).unsqueeze(1)  # wrap into [0, 6)
    # R, G, B centres 0, 2, 4; arange, not torch.tensor, which would sync a CUDA stream.
    centres = torch.arange(0.0, 6.0, 2.0, device=x.device).view((1, 3) + (1,) * (x.dim() - 2))
    # clamp(dist - 1, 0, 1) = clamp(2 - ||h - centre| - 3|, 0, 1): 6 in-place passes.
    ramp = torch.rsub((h - centres).abs_().sub_(3.0).abs_(), 2.0).clamp_(0.0, 1.0)
    out = torch.empty_like(x) if out is None else out
    return torch.addcmul(maxc.unsqueeze(1), chroma.unsqueeze(1), ramp, value=-1.0, out=out)


def _col(f: Tensor, column: int) -> Tensor:
    return f[:, column].view(-1, 1, 1, 1)


def _brightness(x: Tensor, f: Tensor, keys: Tensor) -> None:
    x.mul_(_col(f, _F_BRIGHT)).clamp_(0.0, 1.0)


def _contrast(x: Tensor, f: Tensor, keys: Tensor) -> None:
    factor = _col(f, _F_CONTRAST)
    mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)  # blend with the mean gray level
    x.mul_(factor).add_(mean * (1.0 - factor)).clamp_(0.0, 1.0)


def _saturation(x: Tensor, f: Tensor, keys: Tensor) -> None:
    factor = _col(f, _F_SAT)
    gray = _luma(x) * (1.0 - factor)  # before x changes
    x.mul_(factor).add_(gray).clamp_(0.0, 1.0)


def _hue(x: Tensor, f: Tensor, keys: Tensor) -> None:
    adjust_hue(x, f[:, _F_HUE], out=x)  # x is only read before the last op writes it


def _grayscale(x: Tensor, f: Tensor, keys: Tensor) -> None:
    x.copy_(_luma(x).expand_as(x))


def _bands(size: int, radius: int, tile: int = 32) -> list[tuple[int, int, int, int]]:
    """Output tiles [a, b) of a banded matrix and the input window [lo, hi) each reads."""
    tile = size if size <= 2 * tile else tile
    return [(a, min(size, a + tile), max(0, a - radius), min(size, a + tile + radius))
            for a in range(0, size, tile)]


def _blur(x: Tensor, f: Tensor, keys: Tensor, side: int) -> None:
    """Separable gaussian blur of x (n, 3, S, S) in place: columns, then rows.

    The blur matrix is banded (23 taps of 224 for ImageNet views), so large views are
    multiplied tile by tile against the input window each tile reads (4x fewer FLOPs
    than the dense product at 224 px).
    """
    n, _, size, _ = x.shape
    mat = _blur_matrix(f[:, _F_SIGMA], size, side)
    bands = _bands(size, min(side // 2, size - 1))
    flat = x.reshape(n, 3 * size, size)
    y = torch.empty_like(flat)
    for a, b, lo, hi in bands:  # y[..., a:b] = x[..., lo:hi] @ mat[:, a:b, lo:hi]^T
        y[:, :, a:b] = torch.bmm(flat[:, :, lo:hi], mat[:, a:b, lo:hi].transpose(1, 2))
    y = y.view(n, 3, size, size)
    for c in range(3):
        for a, b, lo, hi in bands:
            x[:, c, a:b] = torch.bmm(mat[:, a:b, lo:hi], y[:, c, lo:hi])
    x.clamp_(0.0, 1.0)  # the weights sum to 1 only up to rounding


def sobel(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of the luma, /4 and clamped, on 3 channels (Fig. 5).

    x (n, 3, S, S) -> (n, 3, S, S); edges replicated, so flat borders give 0.
    """
    p = torch.nn.functional.pad(_luma(x), (1, 1, 1, 1), mode="replicate")
    left, mid_x, right = p[..., :, :-2], p[..., :, 1:-1], p[..., :, 2:]
    gx = right[..., :-2, :] + 2 * right[..., 1:-1, :] + right[..., 2:, :]
    gx = gx - (left[..., :-2, :] + 2 * left[..., 1:-1, :] + left[..., 2:, :])
    gy = p[..., 2:, :-2] + 2 * mid_x[..., 2:, :] + p[..., 2:, 2:]
    gy = gy - (p[..., :-2, :-2] + 2 * mid_x[..., :-2, :] + p[..., :-2, 2:])
    return torch.sqrt(gx * gx + gy * gy).mul_(0.25).clamp_(0.0, 1.0).expand_as(x)


def _sobel(x: Tensor, f: Tensor, keys: Tensor) -> None:
    x.copy_(sobel(x))


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2^32 for 0 <= x < 2^32 in int64 without overflow (16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xorshift-multiply, 'lowbias32') on int64 tensors."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def noise_field(keys: Tensor, size: int) -> Tensor:
    """Standard normal noise (n, 3, S, S) float32, a pure function of keys (n,) int64.

    Counter-based like the parameters (hash of key and pixel counter, Box-Muller), so the
    noise of a view does not depend on the batch either.
    """
    ctr = torch.arange(3 * size * size, device=keys.device, dtype=torch.int64)
    k = (keys & 0xFFFFFFFF)[:, None]
    h1 = _hash32(_hash32(2 * ctr)[None, :] ^ k)
    h2 = _hash32(_hash32(2 * ctr + 1)[None, :] ^ k)
    u1 = (h1.to(torch.float32) + 0.5) * 2.0**-32  # (0, 1]
    u2 = h2.to(torch.float32) * 2.0**-32
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * torch.pi) * u2)
    return z.view(-1, 3, size, size)


def _noise(x: Tensor, f: Tensor, keys: Tensor) -> None:
    x.add_(_col(f, _F_NOISE) * noise_field(keys, x.shape[-1])).clamp_(0.0, 1.0)


def _cutout(x: Tensor, f: Tensor, keys: Tensor, side: int) -> None:
    """Erase (set to 0) a side x side square at each sample's (y, x) corner."""
    ar = torch.arange(x.shape[-1], device=x.device, dtype=torch.float32)
    y0, x0 = f[:, _F_CUT_Y:_F_CUT_Y + 1], f[:, _F_CUT_X:_F_CUT_X + 1]
    in_y = (ar >= y0) & (ar < y0 + side)
    in_x = (ar >= x0) & (ar < x0 + side)
    x.masked_fill_((in_y[:, :, None] & in_x[:, None, :])[:, None], 0.0)


def _rotate(x: Tensor, f: Tensor, keys: Tensor, k: int) -> None:
    x.copy_(torch.rot90(x, k, dims=(2, 3)))


# ------------------------------------------------------------------ staged application

_Op = Callable[[Tensor, Tensor, Tensor], None]  # (x slice, floats, noise keys), in place


@dataclass
class _Stage:
    """One step of the pipeline: op ``fn`` runs on the samples with lo <= key < hi."""

    key: np.ndarray  # (N,) int64 group of each sample, original order
    ops: list[tuple[int, int, _Op]]

    def used(self) -> bool:
        return any(bool(((self.key >= lo) & (self.key < hi)).any()) for lo, hi, _ in self.ops)


def _with(op: Callable[..., None], **kwargs: int) -> _Op:
    return lambda x, f, keys: op(x, f, keys, **kwargs)


def _stages(p: ViewParams, cfg: AugmentConfig) -> list[_Stage]:
    """The pipeline after crop/resize/flip as stages; unused ones dropped."""
    stages = [_Stage(p.rotate.numpy(), [(k, k + 1, _with(_rotate, k=k)) for k in (1, 2, 3)])]
    active = np.array([amount > 0 for amount in cfg.jitter()])  # torchvision skips 0 amounts
    color, order = p.color.numpy(), p.order.numpy()
    jitter_ops = [(0, 1, _brightness), (1, 2, _contrast), (2, 3, _saturation), (3, 4, _hue)]
    for position in range(4):  # key 4: no jitter op at this position
        op = order[:, position]
        stages.append(_Stage(np.where(color & active[op], op, 4), list(jitter_ops)))
    side = blur_kernel_size(cfg.size, cfg.blur_kernel_frac)
    key = 2 * p.blur.numpy().astype(np.int64) + p.gray.numpy()  # blurred samples contiguous
    stages.append(_Stage(key, [(1, 2, _grayscale), (3, 4, _grayscale),
                               (2, 4, _with(_blur, side=side))]))
    stages.append(_Stage(p.sobel.numpy().astype(np.int64), [(1, 2, _sobel)]))
    stages.append(_Stage((p.noise_std.numpy() > 0).astype(np.int64), [(1, 2, _noise)]))
    cut = _with(_cutout, side=cutout_side(cfg))
    stages.append(_Stage(p.cutout.numpy().astype(np.int64), [(1, 2, cut)]))
    return [s for s in stages if s.used()]


def _float_table(p: ViewParams) -> np.ndarray:
    """(N, 13) float32: every per-sample number the device ops need (ints < 2^24: exact)."""
    table = np.zeros((len(p), _N_FLOATS), dtype=np.float32)
    table[:, _F_TOP:_F_W + 1] = p.box.numpy()
    table[:, _F_FLIP] = p.flip.numpy()
    table[:, _F_BRIGHT:_F_HUE + 1] = p.factors.numpy()
    table[:, _F_SIGMA] = p.sigma.numpy()
    table[:, _F_NOISE] = p.noise_std.numpy()
    table[:, _F_CUT_Y:_F_CUT_X + 1] = p.cutout_yx.numpy()
    return table


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


def _check_images(images: Tensor, params: ViewParams, rows: np.ndarray) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
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
    floats = _to_device(_float_table(params), device)
    identity = np.arange(n)
    gathered = images if np.array_equal(rows[layout], identity) and len(images) == n \
        else images.index_select(0, ints[0])
    x = _crop_resize(gathered, floats.index_select(0, ints[1]), params.size, cfg.interpolation)
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
    view v of sample i depends only on (seed, epoch, indices[i], v). Both views are
    processed as one batch of 2B (half the kernel launches and python overhead).
    """

    def __init__(self, cfg: AugmentConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = int(seed)

    def params(self, indices: Tensor | np.ndarray, epoch: int, image_hw: tuple[int, int],
               ) -> tuple[ViewParams, ViewParams]:
        """The parameters of both views (CPU)."""
        return (sample_params(self.cfg, self.seed, epoch, indices, 0, image_hw),
                sample_params(self.cfg, self.seed, epoch, indices, 1, image_hw))

    def stacked(self, images: Tensor, indices: Tensor | np.ndarray, epoch: int) -> Tensor:
        """Both views as one float32 (2B, 3, S, S) tensor: view 0 of every image, then view 1.

        The layout the encoder consumes (one batch of 2N views), without a ``torch.cat``.
        """
        b = images.shape[0]
        p0, p1 = self.params(indices, epoch, (images.shape[-2], images.shape[-1]))
        rows = np.concatenate([np.arange(b), np.arange(b)])
        return _apply(images, ViewParams.cat([p0, p1]), self.cfg, rows)

    def __call__(self, images: Tensor, indices: Tensor | np.ndarray, epoch: int,
                 ) -> tuple[Tensor, Tensor]:
        views = self.stacked(images, indices, epoch)
        b = images.shape[0]
        return views[:b], views[b:]


# ------------------------------------------------------------------ per-image reference

def reference_augment(image: Tensor, params: ViewParams, i: int, cfg: AugmentConfig) -> Tensor:
    """Sample i's view of one image with torchvision's per-image ops (the test oracle).

    image: uint8 (3, H, W) CPU -> float32 (3, S, S). ``resized_crop`` (antialias off,
    as the batched path and the official code) with sample i's box, ``horizontal_flip``,
    ``torch.rot90``, ``adjust_brightness/contrast/saturation/hue`` in the sample's order,
    ``rgb_to_grayscale``, ``gaussian_blur``; then sobel, noise, cutout.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    size = params.size
    x = tvf.to_dtype(image, torch.float32, scale=True)
    top, left, height, width = (int(v) for v in params.box[i])
    if cfg.crop and not cfg.crop_resize:
        x = tvf.crop(x, top, left, size, size)  # zero padding outside the image
    else:
        mode = InterpolationMode(cfg.interpolation)
        x = tvf.resized_crop(x, top, left, height, width, [size, size], interpolation=mode,
                             antialias=False)
    x = x.clamp(0.0, 1.0)
    if params.flip[i]:
        x = tvf.horizontal_flip(x)
    if params.rotate[i]:
        x = torch.rot90(x, int(params.rotate[i]), dims=(-2, -1))
    if params.color[i]:
        ops = (tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation, tvf.adjust_hue)
        for op_id in params.order[i].tolist():
            if cfg.jitter()[op_id] > 0:
                x = ops[op_id](x, float(params.factors[i, op_id]))
    if params.gray[i]:
        x = tvf.rgb_to_grayscale(x, num_output_channels=3)
    if params.blur[i]:
        side = blur_kernel_size(size, cfg.blur_kernel_frac)
        sigma = float(params.sigma[i])
        x = tvf.gaussian_blur(x, [side, side], [sigma, sigma])
    if params.sobel[i]:
        x = sobel(x[None])[0]
    if params.noise_std[i] > 0:
        noise = noise_field(params.noise_key[i:i + 1], size)[0]
        x = (x + float(params.noise_std[i]) * noise).clamp(0.0, 1.0)
    if params.cutout[i]:
        y0, x0 = (int(v) for v in params.cutout_yx[i])
        side = cutout_side(cfg)
        x = x.clone()
        x[:, y0:y0 + side, x0:x0 + side] = 0.0
    return x


# ------------------------------------------------------------------------- evaluation

EVAL_CROP_FRACTION = 0.875  # ImageNet evaluation: center crop of 87.5% (App. B)


def eval_resize(images: Tensor | Image.Image, size: int) -> Tensor:
    """The evaluation transform (App. B): deterministic resize (+ center crop).

    Images of side <= 32 are resized to size x size (no crop); larger ones get their
    shorter side resized to round(size / 0.875), then a size x size center crop. Bicubic
    with antialiasing (a one-off per image, so quality over speed), clamped to [0, 1].

    Args:
        images: uint8 (B, 3, H, W) tensor on any device, or one PIL image.
    Returns:
        float32 (B, 3, size, size) in [0, 1]; (3, size, size) for a PIL image.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    if isinstance(images, Image.Image):
        array = np.asarray(images.convert("RGB"), dtype=np.uint8)
        return eval_resize(torch.from_numpy(array.copy()).permute(2, 0, 1)[None], size)[0]
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    x = images.to(torch.float32).div_(255.0)
    height, width = images.shape[-2:]
    bicubic = InterpolationMode.BICUBIC
    if max(height, width) <= 32:
        x = tvf.resize(x, [size, size], interpolation=bicubic, antialias=True)
    else:
        x = tvf.resize(x, [round(size / EVAL_CROP_FRACTION)], interpolation=bicubic,
                       antialias=True)
        x = tvf.center_crop(x, [size, size])
    return x.clamp_(0.0, 1.0).contiguous()
