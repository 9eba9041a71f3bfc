"""The device kernels of the batched augmentation: resampling, colour and other ops.

Crop + resize + flip is one pair of batched matrix products per view (``Wy @ image @
Wx^T``, matrices built on the device that reproduce ``interpolate`` exactly); the gaussian
blur is a banded matrix; the colour ops work in place on a slice of the batch. Each
in-place op ``name_(x, f, keys)`` takes views x (n, 3, S, S) in [0, 1], their rows f of
the float table (:func:`float_table`) and their noise keys. See :mod:`simclr.augment`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from simclr.augment_params import GRAY_WEIGHTS, ViewParams

# ------------------------------------------------------------ device-side resampling

# Columns of the per-sample float table shipped to the device.
F_TOP, F_LEFT, F_H, F_W, F_FLIP = range(5)
F_BRIGHT, F_CONTRAST, F_SAT, F_HUE, F_SIGMA, F_NOISE, F_CUT_Y, F_CUT_X = range(5, 13)
F_TOP2, F_LEFT2, F_H2, F_W2, F_FLIP2 = range(13, 18)  # the second crop of Fig. 5 orders
N_FLOATS = 18


def _cubic_weights(t: Tensor) -> list[Tensor]:
    """Keys' cubic convolution weights (a = -0.75, as PyTorch's
    bicubic; PIL's uses a = -0.5) of taps -1, 0, 1, 2."""
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
        offsets: tuple[int, ...] = (-1, 0, 1, 2)
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


def crop_resize(images: Tensor, geo: Tensor, size: int, mode: str) -> Tensor:
    """Crop, resize and flip a batch: uint8 (n, 3, H, W) -> float32 (n, 3, S, S) in [0, 1].

    ``geo`` (n, >= 5) float32: columns 0-4 are top, left, height, width, flip (the rest,
    other ops' parameters, unread). The rows are resampled by one
    batched product ``Wy @ image`` with the channels side by side (uint8 permute: cheap),
    then the columns by a second product on the (n, S * 3, W) result; the last pass puts
    the channels first and clamps. Two wide products beat one product per channel
    (small matrices run far below peak).
    """
    n, _, height, width = images.shape
    wy = _resize_matrix(geo[:, F_TOP], geo[:, F_H], height, size, None, mode, 1.0 / 255.0)
    wx = _resize_matrix(geo[:, F_LEFT], geo[:, F_W], width, size, geo[:, F_FLIP] > 0.5, mode)
    rows = torch.empty((n, height, 3, width), device=images.device, dtype=torch.float32)
    rows.copy_(images.permute(0, 2, 1, 3))  # convert and put channels inside rows: one pass
    y = torch.bmm(wy, rows.view(n, height, 3 * width)).view(n, 3 * size, width)  # (n, S, 3, W)
    z = torch.bmm(y, wx.transpose(1, 2)).view(n, size, 3, size)  # (n, S, 3, S)
    out = torch.empty((n, 3, size, size), device=images.device, dtype=torch.float32)
    return torch.clamp(z.permute(0, 2, 1, 3), 0.0, 1.0, out=out)  # bicubic overshoots


def recrop_(x: Tensor, f: Tensor, keys: Tensor, mode: str) -> None:
    """Crop, resize and flip views x (n, 3, S, S) in place by their second box (F_*2):
    the targeted crop of the Fig. 5 protocol when another op comes before it."""
    size = x.shape[-1]
    wy = _resize_matrix(f[:, F_TOP2], f[:, F_H2], size, size, None, mode)
    wx = _resize_matrix(f[:, F_LEFT2], f[:, F_W2], size, size, f[:, F_FLIP2] > 0.5, mode)
    y = torch.matmul(torch.matmul(wy[:, None], x), wx.transpose(1, 2)[:, None])
    x.copy_(y.clamp_(0.0, 1.0))


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


def brightness_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """x (n, 3, S, S) in [0, 1] scaled by each sample's factor f[:, F_BRIGHT], clipped
    (torchvision's ``adjust_brightness``; SimCLRv2's brightness). In place, like every op
    here: f (n, N_FLOATS) per-sample floats, keys the samples' random keys."""
    x.mul_(_col(f, F_BRIGHT)).clamp_(0.0, 1.0)


def brightness_shift_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """The SimCLR v1 code's brightness (App. A: ``tf.image.random_brightness``): a shift
    of every pixel and channel by the sample's delta, then the clip."""
    x.add_(_col(f, F_BRIGHT)).clamp_(0.0, 1.0)


def contrast_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """torchvision's ``adjust_contrast``: a blend of x (n, 3, S, S) with its image's
    mean luma by the factor f[:, F_CONTRAST], clipped."""
    factor = _col(f, F_CONTRAST)
    mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)  # blend with the mean gray level
    x.mul_(factor).add_(mean * (1.0 - factor)).clamp_(0.0, 1.0)


def saturation_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """torchvision's ``adjust_saturation``: a blend of x (n, 3, S, S) with its own
    per-pixel luma by the factor f[:, F_SAT], clipped."""
    factor = _col(f, F_SAT)
    gray = _luma(x) * (1.0 - factor)  # before x changes
    x.mul_(factor).add_(gray).clamp_(0.0, 1.0)


def contrast_channels_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """TensorFlow's ``adjust_contrast`` (the official code's): each channel moves about
    its own mean over the image, ``(x - mean_c) * factor + mean_c``, then the clip."""
    factor = _col(f, F_CONTRAST)
    mean = x.mean(dim=(2, 3), keepdim=True)  # (n, 3, 1, 1)
    x.mul_(factor).add_(mean * (1.0 - factor)).clamp_(0.0, 1.0)


def saturation_hsv_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """TensorFlow's ``adjust_saturation`` (the official code's): S of HSV scaled by the
    factor and clipped to [0, 1], hue and value kept.

    Without materialising HSV: with V = max and m = min over the channels, keeping H
    and V while S = (V - m) / V becomes S' = min(factor * S, 1) maps every channel c
    to ``V - k (V - c)`` with ``k = S' / S = min(factor, V / (V - m))`` (the middle
    channel keeps its place between min and max, which is what fixes H). Gray pixels
    (V = m) stay as they are.
    """
    value = x.amax(dim=1, keepdim=True)
    chroma = value - x.amin(dim=1, keepdim=True)
    k = torch.minimum(_col(f, F_SAT), value / chroma.clamp(min=1e-12))
    # x <- k * x + (1 - k) * V; 0 <= result <= V, so the clip changes nothing.
    x.mul_(k).add_(value * (1.0 - k)).clamp_(0.0, 1.0)


def hue_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """torchvision's ``adjust_hue``: H of HSV rotated by f[:, F_HUE] (turns)."""
    adjust_hue(x, f[:, F_HUE], out=x)  # x is only read before the last op writes it


def grayscale_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """Each pixel's luma (0.2989 R + 0.587 G + 0.114 B) in all three channels."""
    x.copy_(_luma(x).expand_as(x))


def _bands(size: int, radius: int, tile: int = 32) -> list[tuple[int, int, int, int]]:
    """Output tiles [a, b) of a banded matrix and the input window [lo, hi) each reads."""
    tile = size if size <= 2 * tile else tile
    return [(a, min(size, a + tile), max(0, a - radius), min(size, a + tile + radius))
            for a in range(0, size, tile)]


def blur_(x: Tensor, f: Tensor, keys: Tensor, side: int) -> None:
    """Separable gaussian blur of x (n, 3, S, S) in place: columns, then rows.

    The blur matrix is banded (23 taps of 224 for ImageNet views), so large views are
    multiplied tile by tile against the input window each tile reads (4x fewer FLOPs
    than the dense product at 224 px).
    """
    n, _, size, _ = x.shape
    mat = _blur_matrix(f[:, F_SIGMA], size, side)
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


def sobel_(x: Tensor, f: Tensor, keys: Tensor) -> None:
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


def noise_(x: Tensor, f: Tensor, keys: Tensor) -> None:
    """Fig. 5's gaussian noise: x plus f[:, F_NOISE] x a unit normal field drawn from
    each sample's key (:func:`noise_field`), clipped."""
    x.add_(_col(f, F_NOISE) * noise_field(keys, x.shape[-1])).clamp_(0.0, 1.0)


def cutout_(x: Tensor, f: Tensor, keys: Tensor, side: int) -> None:
    """Erase (set to 0) a side x side square at each sample's (y, x) corner."""
    ar = torch.arange(x.shape[-1], device=x.device, dtype=torch.float32)
    y0, x0 = f[:, F_CUT_Y:F_CUT_Y + 1], f[:, F_CUT_X:F_CUT_X + 1]
    in_y = (ar >= y0) & (ar < y0 + side)
    in_x = (ar >= x0) & (ar < x0 + side)
    x.masked_fill_((in_y[:, :, None] & in_x[:, None, :])[:, None], 0.0)


def rotate_(x: Tensor, f: Tensor, keys: Tensor, k: int) -> None:
    """Fig. 5's rotation: every sample of x turned by k x 90 degrees."""
    x.copy_(torch.rot90(x, k, dims=(2, 3)))


def float_table(p: ViewParams) -> np.ndarray:
    """(N, 18) float32: every per-sample number the device ops need (ints < 2^24: exact)."""
    table = np.zeros((len(p), N_FLOATS), dtype=np.float32)
    table[:, F_TOP:F_W + 1] = p.box.numpy()
    flip, recrop = p.flip.numpy(), p.recrop.numpy()
    table[:, F_FLIP] = flip & ~recrop  # a view cropped twice flips with its second crop
    table[:, F_TOP2:F_W2 + 1] = p.box2.numpy()
    table[:, F_FLIP2] = flip & recrop
    table[:, F_BRIGHT:F_HUE + 1] = p.factors.numpy()
    table[:, F_SIGMA] = p.sigma.numpy()
    table[:, F_NOISE] = p.noise_std.numpy()
    table[:, F_CUT_Y:F_CUT_X + 1] = p.cutout_yx.numpy()
    return table
