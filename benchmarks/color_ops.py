"""How far torchvision's contrast and saturation ops (which simclr's batched jitter
implements) are from TensorFlow's, which the official code calls, at equal factors.

TensorFlow's ``adjust_saturation`` scales S in HSV (clipped to [0, 1]); its
``adjust_contrast`` moves each channel about that channel's own mean (the official
code clips after each op). torchvision blends with the grayscale image (saturation)
or with the mean of the grayscale (contrast). TensorFlow is not needed: its two ops
are written here from their documented definitions.

    python benchmarks/color_ops.py [--data ../shared/data/cifar10/test] [--images 200]

Prints the mean absolute difference per pixel and channel (images in [0, 1]).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from torchvision.transforms.v2 import functional as tvf


def tf_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    hsv = rgb_to_hsv(x.permute(0, 2, 3, 1).numpy())
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0.0, 1.0)
    return torch.from_numpy(hsv_to_rgb(hsv)).permute(0, 3, 1, 2)


def tf_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10/test")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    files = sorted(p for p in Path(args.data).rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no images under {args.data}")
    files = files[::max(1, len(files) // args.images)][:args.images]
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy())
                     .permute(2, 0, 1) for f in files]).float() / 255
    print(f"{len(files)} images of {args.data}, {tuple(x.shape[-2:])} px")
    print("| factor | saturation mean abs diff | contrast mean abs diff |")
    print("|---|---|---|")
    for factor in (0.2, 0.6, 1.4, 1.8):  # s = 1: factors in [0.2, 1.8]
        sat = (tvf.adjust_saturation(x, factor) - tf_saturation(x, factor)).abs().mean()
        con = (tvf.adjust_contrast(x, factor) - tf_contrast(x, factor)).abs().mean()
        print(f"| {factor} | {float(sat):.4f} | {float(con):.4f} |")


if __name__ == "__main__":
    main()
