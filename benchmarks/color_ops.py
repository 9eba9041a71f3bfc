"""How far torchvision's contrast and saturation ops (``--color-ops torchvision``, the
default) are from TensorFlow's (``--color-ops official``, the official code's), at equal
factors.

TensorFlow's ``adjust_saturation`` scales S in HSV (clipped to [0, 1]); its
``adjust_contrast`` moves each channel about that channel's own mean (the official
code clips after each op). torchvision blends with the grayscale image (saturation)
or with the mean of the grayscale (contrast). TensorFlow's are simclr's batched
kernels for ``--color-ops official`` (tested against colorsys and TensorFlow itself).

    python benchmarks/color_ops.py [--data ../shared/data/cifar10/test] [--images 200]

Prints the mean absolute difference per pixel and channel (images in [0, 1]).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as tvf

from simclr.augment_ops import F_CONTRAST, F_SAT, N_FLOATS, contrast_channels_, saturation_hsv_


def tf_op(op, x: torch.Tensor, factor: float) -> torch.Tensor:
    table = torch.zeros(len(x), N_FLOATS)
    table[:, F_SAT] = table[:, F_CONTRAST] = factor
    out = x.clone()
    op(out, table, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # (beside the repository, wherever this is run from)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                              / "data" / "cifar10" / "test"))
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
        sat = (tvf.adjust_saturation(x, factor) - tf_op(saturation_hsv_, x, factor)).abs().mean()
        con = (tvf.adjust_contrast(x, factor) - tf_op(contrast_channels_, x, factor)).abs().mean()
        print(f"| {factor} | {float(sat):.4f} | {float(con):.4f} |")


if __name__ == "__main__":
    main()
