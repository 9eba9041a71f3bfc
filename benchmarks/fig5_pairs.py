"""How often a Fig. 5 cell of one transformation alone gives two identical views.

Under ``--pairs`` view 1 is the shared crop and view 0 that crop with the targeted
transformation, which keeps its pipeline probability (blur, rotate, noise, Sobel,
cutout 0.5; colour jitter 0.8 and grayscale 0.2): a pair whose draw skipped it is two
copies of one view. Counted on random uint8 images, each cell's settings as the sweep
builds them, optionally with one probability raised (``--p 1``).

    python benchmarks/fig5_pairs.py [--images 512] [--p 1]

Prints a markdown table: cell, share of identical pairs.
"""

from __future__ import annotations

import argparse

import torch

from simclr.augment import TwoViewAugment
from simclr.config import FIG5_OPS
from simclr.inert import GATED_BY
from simclr.settings import build_config, set_path
from simclr.sweep_grid import pairs_axis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--p", type=float, default=None,
                        help="set the targeted transformation's probability to this")
    args = parser.parse_args()
    ops = [op for op in FIG5_OPS if op != "crop"]
    axis = pairs_axis(",".join(ops))
    images = torch.randint(0, 256, (args.images, 3, 37, 37), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    print("| cell | identical pairs |\n|---|---|")
    for label, cell in zip(axis.labels, axis.settings, strict=True):
        if "+" in label:
            continue
        cfg = build_config(preset="cifar10-cpu", flags={})
        for path, value in cell.items():
            set_path(cfg, path, value, "flag")
        if args.p is not None:  # the op's own switch's probability (colour: color_p)
            setattr(cfg.augment, GATED_BY[label][0], args.p)
        view0, view1 = TwoViewAugment(cfg.augment, seed=0)(images, torch.arange(args.images), 0)
        same = (view0 - view1).flatten(1).abs().amax(1) == 0
        print(f"| {label} | {same.float().mean().item():.1%} |")


if __name__ == "__main__":
    main()
