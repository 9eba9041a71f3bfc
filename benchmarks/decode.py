"""Input benchmark for large images: JPEG files to uint8 batches, three ways.

One run prints ONE markdown table of images/s (medians over interleaved rounds):

1. ``simclr pil``: simclr's CPU path, PIL in DataLoader workers with JPEG draft mode
   (the decoder scales by 1/2..1/8 when the stored side allows), fit to a square;
2. ``simclr device``: workers only read the files, the batch is decoded on ``--device``
   with ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA) and fit there
   (``--decoder device``, the default on CUDA);
3. ``full-size PIL``: the usual peer input path (lightly's and torchvision's image
   folders): ``Image.open(...).convert("RGB")`` at full size, then resize + centre
   crop, in the same number of workers.

All three deliver the same thing, uint8 (B, 3, S, S) with S = round(1.15 * --size), on
the training device. Run it on a quiet machine (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SHARED_IMAGENETTE = (Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette"
                     / "train")
# Batches each loader worker makes ahead once its epoch starts: simclr's worker loader
# (simclr.data) sets prefetch_factor 4, torch's DataLoader default (the peer path) is 2.
PREFETCH_FACTOR = 4


def synthetic_folder(count: int, width: int, height: int) -> str:
    """``count`` photo-like JPEGs (smooth colour fields) of width x height, made once."""
    from generated import generated_folder
    from PIL import Image

    def draw(rng: Any) -> Image.Image:
        small = rng.integers(0, 256, (12, 12, 3), dtype="uint8")
        return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)

    return generated_folder(f"simclr-bench-jpeg-{count}-{width}x{height}", count, draw, ".jpg",
                            quality=90)


class FullSizePIL:
    """The peer path: a full decode per image, then torchvision's resize + centre crop."""

    def __init__(self, paths: list[str], side: int) -> None:
        from torchvision import transforms

        self.paths = paths
        self.transform = transforms.Compose([
            transforms.Resize(side), transforms.CenterCrop(side), transforms.PILToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB"))


CASES = ("simclr pil", "simclr device", "full-size PIL")  # (make_iterator's)


def make_iterator(case: str, source: Any, args: argparse.Namespace, epoch: int) -> Any:
    """An iterator of uint8 image batches (on the device for 'simclr device')."""
    import torch

    from simclr.loader import BatchLoader

    device = torch.device(args.device)
    if case == "full-size PIL":
        order = torch.randperm(source.num_images, generator=torch.Generator().manual_seed(epoch))
        batches = order[: len(order) // args.batch * args.batch].view(-1, args.batch).tolist()
        loader = torch.utils.data.DataLoader(
            FullSizePIL(source.paths, source.image_hw[0]), batch_sampler=batches,
            num_workers=args.workers, pin_memory=device.type == "cuda")
        return (images for images in loader)
    decode_on = device if case == "simclr device" else None
    loader = BatchLoader(source, args.batch, seed=0, epoch=epoch, device=device,
                         workers=args.workers, decode_device=decode_on)
    return (images for _, images, _ in loader)


def warmup_batches(args: argparse.Namespace) -> int:
    """Batches discarded before the window: the first batch (worker start-up, first decoder
    calls) and the wave the workers make ahead in parallel at the epoch's start
    (workers x prefetch factor, simclr's 4 for every case: equal windows). Timing that
    wave measured how fast made batches are handed over, not how fast they are made."""
    return 1 + max(1, args.workers) * PREFETCH_FACTOR


def measure(case: str, source: Any, args: argparse.Namespace, epoch: int) -> float:
    """Images/s over ``args.batches`` batches after :func:`warmup_batches`, on the device."""
    import torch

    device = torch.device(args.device)
    it = make_iterator(case, source, args, epoch)
    for _ in range(warmup_batches(args)):
        next(it).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, count = time.perf_counter(), 0
    for _ in range(args.batches):
        images = next(it).to(device, non_blocking=True)
        count += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = count / (time.perf_counter() - start)
    for _ in it:  # drain, so the next case starts with idle workers
        pass
    return rate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None,
                   help="JPEG image folder, or 'synthetic' (default: "
                        "../shared/data/imagenette/train if present, else synthetic)")
    p.add_argument("--synthetic", default="500x375",
                   help="WxH of generated JPEGs when no folder is given (ImageNet-like)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=224, help="view side; images stored at 1.15x")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=None,
                   help="timed batches per case and round, at least 2 x --workers (default: "
                        "3 x --workers, three waves of the workers; after 1 + 4 x --workers "
                        "discarded ones)")
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: cores)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, of: {', '.join(CASES)}")
    args = p.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:  # (any other name was timed as simclr's PIL path, under the name given)
        p.exit(2, f"decode.py: --cases: unknown case {unknown[0]!r} (choose from "
                  f"{', '.join(CASES)})\n")
    # (checked before any JPEG is generated: else a traceback after minutes of it)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.exit(2, f"decode.py: --device {args.device}: torch sees no GPU "
                  "(torch.cuda.is_available() is False); use --device cpu\n")
    return args


def main(argv: list[str] | None = None) -> None:
    import os

    import torch

    from simclr.config import DataConfig
    from simclr.data import open_source

    args = parse_args(argv)
    args.workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if args.batches is None:
        args.batches = 3 * max(1, args.workers)
    if min(args.batch, args.batches, args.rounds) < 1 or args.workers < 0:
        sys.exit("decode.py: --batch, --batches and --rounds must be at least 1, "
                 "--workers 0 or more")
    if args.batches < 2 * args.workers:  # workers finishing together deliver in bursts
        sys.exit(f"decode.py: --batches {args.batches} is under two waves of the "
                 f"{args.workers} workers (2 x --workers): a shorter window times batches "
                 "that arrived together")
    count = args.batch * (warmup_batches(args) + args.batches)
    if args.data and args.data != "synthetic":
        data = args.data
    elif SHARED_IMAGENETTE.is_dir() and args.data is None:
        data = str(SHARED_IMAGENETTE)
    else:
        w, h = (int(x) for x in args.synthetic.split("x"))
        data = synthetic_folder(count, w, h)
    cfg = DataConfig(cache="off", workers=args.workers)
    source = open_source(data, cfg, train=True, image_size=args.size)
    if source.num_images < count:
        sys.exit(f"{data}: {source.num_images} images, need {count} (--batch x (--batches "
                 f"+ {warmup_batches(args)} warm-up batches: 1 + 4 x --workers)); lower "
                 "--batch or --workers")
    cases = [c.strip() for c in args.cases.split(",")]
    rates: dict[str, list[float]] = {c: [] for c in cases}
    for r in range(args.rounds):
        for case in cases[r % len(cases):] + cases[:r % len(cases)]:  # each round shifted
            rates[case].append(measure(case, source, args, epoch=r))
            print(f"round {r + 1} {case}: {rates[case][-1]:.0f} images/s", file=sys.stderr)
    side = source.image_hw[0]
    print(f"Input path, {data} -> uint8 batches of {args.batch} x 3 x {side} x {side} on "
          f"{args.device}; {args.workers} loader processes, torch {torch.__version__}, "
          f"{os.cpu_count()} cores; {args.batches} timed batches after "
          f"{warmup_batches(args)} discarded (the workers' first wave); medians of "
          f"{args.rounds} interleaved rounds.\n")
    base = statistics.median(rates[cases[-1]])
    print(f"| path | images/s (median) | min-max | vs {cases[-1]} |")
    print("|---|---:|---:|---:|")
    for case in cases:
        med = statistics.median(rates[case])
        print(f"| {case} | {med:,.0f} | {min(rates[case]):,.0f}-{max(rates[case]):,.0f} | "
              f"{med / base:.2f}x |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
