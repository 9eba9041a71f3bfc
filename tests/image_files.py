"""Image files written by tests: random pixels, JPEG/PNG bytes, hand-made PNG headers."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from simclr.config import DataConfig


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_image(
    path: Path, array: np.ndarray | None = None, fmt: str | None = None, **kwargs
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb(8, 8) if array is None else array).save(path, fmt, **kwargs)
    return path


def jpeg_bytes(h: int = 64, w: int = 64, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb(h, w, seed)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(
    width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None
) -> bytes:
    """A PNG written by hand (PIL cannot write 48-bit RGB or absurd headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + idat + png_chunk(b"IEND", b"")


def data_cfg(tmp_path: Path, **kwargs) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, **kwargs)


def smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like image (smooth colour fields): decoders and resizers agree on it
    to a level or two, where on pure noise they legitimately differ much more."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def corrupt_jpeg_bytes() -> bytes:
    """A JPEG with intact headers and end marker whose scan header is wiped."""
    raw = bytearray(jpeg_bytes())
    sos = raw.find(b"\xff\xda")  # start of scan: wipe the scan header and entropy data
    raw[sos + 2:sos + 60] = bytes(58)
    return bytes(raw)
