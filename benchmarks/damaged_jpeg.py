"""What each JPEG path does with damaged files: decode them (into damaged pixels) or
refuse them (simclr then skips the file and lists it).

Each of ``--files`` JPEGs gets ``--trials`` copies with ``--bytes`` random bytes
overwritten in the entropy-coded data (past the first quarter of the file, so the
header survives; the end marker is kept, so the truncation check does not apply).
Every copy goes through simclr's PIL path (:func:`simclr.decode.open_image`, used by
the loader workers) and its batched device path (:func:`simclr.decode.decode_jpegs`:
libjpeg-turbo on a CPU, nvJPEG on CUDA)::

    python benchmarks/damaged_jpeg.py [--data ../shared/data/imagenette/train] [--device cuda]

Prints one table: how many copies each path decoded or refused, and how often the two
agree.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import warnings
from pathlib import Path

import torch

from simclr.decode import JPEG_END, decode_jpegs, open_image
from simclr.errors import BadImageError


def damaged(data: bytes, count: int, rng: random.Random) -> bytes:
    """``data`` with ``count`` bytes of its last three quarters (before the end marker)
    replaced by random values."""
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(len(out) // 4, len(out) - len(JPEG_END))] = rng.randrange(256)
    return bytes(out)


def pil_decodes(data: bytes, scratch: Path) -> bool:
    scratch.write_bytes(data)
    try:
        open_image(str(scratch))
    except BadImageError:
        return False
    return True


def device_decodes(data: bytes, device: torch.device) -> bool:
    blob = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    _, failed = decode_jpegs([blob], 32, device)
    return not failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/imagenette/train")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--bytes", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(Path(args.data).rglob("*.JPEG")) + sorted(Path(args.data).rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEG files under {args.data}")
    rng, device = random.Random(args.seed), torch.device(args.device)
    counts = {(p, d): 0 for p in (True, False) for d in (True, False)}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scratch = Path(tmp, "damaged.jpg")
        for path in files[:: max(1, len(files) // args.files)][: args.files]:
            data = path.read_bytes()
            for _ in range(args.trials):
                copy = damaged(data, args.bytes, rng)
                counts[pil_decodes(copy, scratch), device_decodes(copy, device)] += 1
    total = sum(counts.values())
    print(f"{total} damaged copies ({args.bytes} random bytes each) of {total // args.trials} "
          f"JPEGs from {args.data}; device path on {device}\n")
    print("| | device path decodes | device path refuses |\n|---|---|---|")
    for pil, name in ((True, "PIL path decodes"), (False, "PIL path refuses")):
        print(f"| {name} | {counts[pil, True]} | {counts[pil, False]} |")


if __name__ == "__main__":
    main()
