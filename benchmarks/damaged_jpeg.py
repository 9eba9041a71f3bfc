"""What each JPEG path does with damaged files: decode them (into damaged pixels) or
refuse them (simclr then skips the file and lists it).

Each of ``--files`` JPEGs gets ``--trials`` copies with ``--bytes`` random bytes
overwritten in the entropy-coded data (past the first quarter of the file, so the
header survives; the end marker is kept, so the truncation check does not apply).
Every copy goes through simclr's PIL path (:func:`simclr.decode.open_image`, used by
the loader workers) and its batched device path (:func:`simclr.decode.decode_jpegs`:
libjpeg-turbo on a CPU, nvJPEG on CUDA)::

    python benchmarks/damaged_jpeg.py [--data ../shared/data/imagenette/train] [--device cuda]
    python benchmarks/damaged_jpeg.py --bytes 20,200   # one row each

Prints one table, a row per ``--bytes`` count: how many copies both paths decoded,
both refused, and only one of them refused.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import warnings
from collections.abc import Iterator
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
    # (beside the repository, wherever this is run from)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                              / "data" / "imagenette" / "train"))
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--bytes", default="20",
                        help="bytes overwritten per copy; a comma-separated list gives a row each")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(Path(args.data).rglob("*.JPEG")) + sorted(Path(args.data).rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEG files under {args.data}")
    files = files[:: max(1, len(files) // args.files)][: args.files]
    device = torch.device(args.device)
    print(f"{len(files)} JPEGs from {args.data} x {args.trials} damaged copies each; "
          f"device path on {device}\n")
    print("| bytes overwritten | both decode | both refuse | only the device path refuses "
          "| only PIL refuses |\n|---|---|---|---|---|")
    for count in (int(b) for b in args.bytes.split(",")):
        c = outcomes(files, count, args.trials, random.Random(args.seed), device)
        print(f"| {count} | {c[True, True]} | {c[False, False]} | {c[True, False]} "
              f"| {c[False, True]} |")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """libjpeg's warnings ("Corrupt JPEG data: ...", one per damaged copy) go to file
    descriptor 2 from C, past Python's warnings: silenced while the copies decode."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def outcomes(files: list[Path], count: int, trials: int, rng: random.Random,
             device: torch.device) -> dict[tuple[bool, bool], int]:
    """How many damaged copies (PIL path decodes, device path decodes) each."""
    counts = {(p, d): 0 for p in (True, False) for d in (True, False)}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), quiet_stderr():
        warnings.simplefilter("ignore")
        scratch = Path(tmp, "damaged.jpg")
        for path in files:
            data = path.read_bytes()
            for _ in range(trials):
                copy = damaged(data, count, rng)
                counts[pil_decodes(copy, scratch), device_decodes(copy, device)] += 1
    return counts


if __name__ == "__main__":
    main()
