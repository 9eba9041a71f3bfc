"""The per-image reference of the batched augmentation: what :func:`reference_augment`
computes of one image, with torchvision's ops (and TensorFlow's contrast and saturation
written per image), is what ``simclr.augment.apply_params`` must give for it."""

from __future__ import annotations

import torch
from torch import Tensor

from simclr.augment import op_order
from simclr.augment_ops import noise_field, sobel
from simclr.augment_params import ViewParams, blur_kernel_size, cutout_side
from simclr.config import AugmentConfig


def reference_augment(image: Tensor, params: ViewParams, i: int, cfg: AugmentConfig) -> Tensor:
    """Sample i's view of one image with torchvision's per-image ops (the oracle;
    TensorFlow's contrast and saturation, written per image, with ``color_ops="official"``
    and ``"official_v1"``, whose brightness adds the sample's shift).

    image: uint8 (3, H, W) CPU -> float32 (3, S, S). ``resized_crop`` (antialias off,
    as the batched path and the official code) with sample i's box, ``horizontal_flip``,
    then the groups in :func:`op_order`: ``torch.rot90``; ``adjust_brightness/contrast/
    saturation/hue`` (contrast and saturation :func:`tf_contrast` / :func:`tf_saturation`
    with the official ops; brightness ``x + delta`` with official_v1) in the sample's
    order, each clipped, and
    ``rgb_to_grayscale``; ``gaussian_blur``;
    sobel; noise; cutout (and the second ``resized_crop`` + flip of a re-cropped view).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    size, mode = params.size, InterpolationMode(cfg.interpolation)
    x = tvf.to_dtype(image, torch.float32, scale=True)
    top, left, height, width = (int(v) for v in params.box[i])
    if cfg.crop and not cfg.crop_resize:
        x = tvf.crop(x, top, left, size, size)  # zero padding outside the image
    else:
        x = tvf.resized_crop(x, top, left, height, width, [size, size], interpolation=mode,
                             antialias=False)
    x = x.clamp(0.0, 1.0)
    recrop = bool(params.recrop[i])
    if params.flip[i] and not recrop:
        x = tvf.horizontal_flip(x)

    def crop(x: Tensor) -> Tensor:
        if not recrop:
            return x
        y0, x0, h, w = (int(v) for v in params.box2[i])
        x = tvf.resized_crop(x, y0, x0, h, w, [size, size], interpolation=mode, antialias=False)
        return tvf.horizontal_flip(x.clamp(0.0, 1.0)) if params.flip[i] else x.clamp(0.0, 1.0)

    def rotate(x: Tensor) -> Tensor:
        return torch.rot90(x, int(params.rotate[i]), dims=(-2, -1)) if params.rotate[i] else x

    def color(x: Tensor) -> Tensor:
        if params.color[i]:
            ops = (tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation,
                   tvf.adjust_hue)
            if cfg.color_ops == "official":
                ops = (tvf.adjust_brightness, tf_contrast, tf_saturation, tvf.adjust_hue)
            elif cfg.color_ops == "official_v1":  # tf.image.adjust_brightness: x + delta
                ops = (torch.add, tf_contrast, tf_saturation, tvf.adjust_hue)
            for op_id in params.order[i].tolist():
                if cfg.jitter()[op_id] > 0:
                    x = ops[op_id](x, float(params.factors[i, op_id])).clamp(0.0, 1.0)
        return tvf.rgb_to_grayscale(x, num_output_channels=3) if params.gray[i] else x

    def blur(x: Tensor) -> Tensor:
        if not params.blur[i]:
            return x
        side, sigma = blur_kernel_size(size, cfg.blur_kernel_frac), float(params.sigma[i])
        return tvf.gaussian_blur(x, [side, side], [sigma, sigma])

    def sobel_op(x: Tensor) -> Tensor:
        return sobel(x[None])[0] if params.sobel[i] else x

    def noise(x: Tensor) -> Tensor:
        if params.noise_std[i] <= 0:
            return x
        field = noise_field(params.noise_key[i:i + 1], size)[0]
        return (x + float(params.noise_std[i]) * field).clamp(0.0, 1.0)

    def cutout(x: Tensor) -> Tensor:
        if not params.cutout[i]:
            return x
        y0, x0 = (int(v) for v in params.cutout_yx[i])
        side = cutout_side(cfg)
        x = x.clone()
        x[:, y0:y0 + side, x0:x0 + side] = 0.0
        return x

    groups = {"crop": crop, "rotate": rotate, "color": color, "blur": blur, "sobel": sobel_op,
              "noise": noise, "cutout": cutout}
    for name in op_order(cfg):
        x = groups[name](x)
    return x


def tf_contrast(x: Tensor, factor: float) -> Tensor:
    """TensorFlow's ``adjust_contrast`` of one image (3, H, W): each channel about its
    own mean (the reference for ``color_ops="official"``; the official code clips)."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * factor + mean


def tf_saturation(x: Tensor, factor: float) -> Tensor:
    """TensorFlow's ``adjust_saturation`` of one image (3, H, W) in [0, 1], step by step
    as its kernel: RGB -> HSV, S <- clip(S * factor, 0, 1), HSV -> RGB (textbook sector
    formulas, independent of the batched kernel's closed form)."""
    r, g, b = x.unbind(0)
    v = x.amax(dim=0)
    chroma = v - x.amin(dim=0)
    s = torch.where(v > 0, chroma / v.clamp(min=1e-12), torch.zeros_like(v))
    safe = chroma.clamp(min=1e-12)
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2 + (b - r) / safe,
                                                        4 + (r - g) / safe))
    h = torch.where(chroma > 0, (h / 6) % 1.0, torch.zeros_like(h))
    s = (s * factor).clamp(0.0, 1.0)
    sector = torch.floor(h * 6)
    frac = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - s * frac), v * (1 - s * (1 - frac))
    sector = sector.long() % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, rgb in enumerate(table):
        out = torch.where(sector == k, torch.stack(rgb), out)
    return out
