"""Views per second of SimCLR's augmentation: simclr vs kornia vs torchvision (per image).

Same ops in every pipeline (Chen et al. 2020, App. A): random resized crop (bicubic),
horizontal flip, colour jitter with p=0.8, random grayscale p=0.2; two views per image.

* simclr: ``TwoViewAugment`` on a uint8 batch (the training-device path);
* kornia: ``kornia.augmentation`` modules on the float batch (uint8 -> float included);
* torchvision: the classic per-image ``transforms.Compose`` on PIL images, then stacked.

Cases: a batch of CIFAR-like 32-px images -> 32-px views (s=0.5), and 160-px images
(Imagenette) -> 224-px views (s=1.0), plus simclr with the ImageNet blur as an extra row.
Medians over interleaved repeats (the pipelines take turns, so a noisy neighbour hits
them alike). Usage: ``python benchmarks/augment_kornia.py [--threads 2] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from simclr.augment import TwoViewAugment
from simclr.config import AugmentConfig


def _simclr(cfg: AugmentConfig) -> Callable[[torch.Tensor, list[Image.Image]], object]:
    aug = TwoViewAugment(cfg, seed=0)
    epoch = iter(range(1 << 30))  # fresh parameters every call

    def run(batch: torch.Tensor, _pil: list[Image.Image]) -> object:
        return aug(batch, torch.arange(len(batch)), next(epoch))

    return run


def _kornia(cfg: AugmentConfig) -> Callable[[torch.Tensor, list[Image.Image]], object] | str:
    try:
        import kornia.augmentation as K
    except ImportError as exc:  # kornia is an optional benchmark dependency
        return f"kornia not importable ({exc})"
    b, c, s, h = cfg.jitter()
    pipe = torch.nn.Sequential(
        K.RandomResizedCrop((cfg.size, cfg.size), scale=cfg.crop_scale, ratio=cfg.crop_ratio,
                            resample="BICUBIC"),
        K.RandomHorizontalFlip(),
        K.ColorJitter(b, c, s, h, p=cfg.color_p),
        K.RandomGrayscale(p=cfg.grayscale_p),
    )

    def run(batch: torch.Tensor, _pil: list[Image.Image]) -> object:
        x = batch.float().div_(255.0)
        with torch.no_grad():
            return pipe(x), pipe(x)

    return run


def _torchvision(cfg: AugmentConfig) -> Callable[[torch.Tensor, list[Image.Image]], object]:
    import torchvision.transforms as T

    b, c, s, h = cfg.jitter()
    tf = T.Compose([
        T.RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio,
                            interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(b, c, s, h)], p=cfg.color_p),
        T.RandomGrayscale(p=cfg.grayscale_p),
        T.ToTensor(),
    ])

    def run(_batch: torch.Tensor, pil: list[Image.Image]) -> object:
        return torch.stack([tf(im) for im in pil]), torch.stack([tf(im) for im in pil])

    return run


def _images(batch: int, side: int) -> tuple[torch.Tensor, list[Image.Image]]:
    """Smooth random images (content does not change the cost of these ops much)."""
    rng = np.random.default_rng(0)
    coarse = rng.random((batch, 3, side // 8 + 1, side // 8 + 1)).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(coarse), (side, side), mode="bilinear")
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in u8]
    return u8, pil


CASES = {
    "cifar": ("32 px -> 32 (CIFAR, s=0.5)", 32,
              AugmentConfig(size=32, color_strength=0.5, blur=False)),
    "imagenette": ("160 px -> 224 (Imagenette, s=1)", 160, AugmentConfig(size=224, blur=False)),
}


def bench(batch: int, repeats: int, cases: list[str]) -> list[tuple[str, str, float | str]]:
    rows: list[tuple[str, str, float | str]] = []
    for label, side, cfg in (CASES[c] for c in cases):
        u8, pil = _images(batch, side)
        runners = {"simclr TwoViewAugment": _simclr(cfg), "kornia.augmentation": _kornia(cfg),
                   "torchvision per image (PIL)": _torchvision(cfg)}
        if side > 32:
            runners["simclr TwoViewAugment + blur"] = _simclr(
                AugmentConfig(size=cfg.size, blur=True))
        times: dict[str, list[float]] = {name: [] for name in runners}
        for fn in runners.values():  # warm-up
            if callable(fn):
                fn(u8, pil)
        for _ in range(repeats):
            for name, fn in runners.items():
                if callable(fn):
                    start = time.perf_counter()
                    fn(u8, pil)
                    times[name].append(time.perf_counter() - start)
        for name, fn in runners.items():
            rate = 2 * batch / statistics.median(times[name]) if callable(fn) else str(fn)
            rows.append((label, name, rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = bench(args.batch, args.repeats, args.cases)
    print(f"batch {args.batch} images -> {2 * args.batch} views per call, "
          f"{args.threads} torch threads, median of {args.repeats} interleaved repeats; "
          f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(multi-threaded pipelines suffer most when the CPUs are shared)")
    print(f"{'case':34s} {'pipeline':32s} {'views/s':>10s} {'vs torchvision':>15s}")
    for label in dict.fromkeys(r[0] for r in rows):
        base = next(r[2] for r in rows if r[0] == label and r[1].startswith("torchvision"))
        for case, name, rate in rows:
            if case != label:
                continue
            if isinstance(rate, str):
                print(f"{case:34s} {name:32s} {rate}")
            else:
                print(f"{case:34s} {name:32s} {rate:10.0f} {rate / float(base):14.1f}x")


if __name__ == "__main__":
    main()
