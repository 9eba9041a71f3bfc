"""Tests for simclr.data: folders, every kind of bad image, the cache, the loader."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from simclr import data
from simclr.config import DataConfig
from simclr.data import (
    BatchLoader,
    ImageSource,
    digits_source,
    digits_split,
    epoch_permutation,
    load_square,
    open_image,
    open_source,
    scan_folder,
)
from simclr.errors import BadImageError, SimCLRError
from tests.conftest import SHARED_DATA, requires_cifar

# ---------------------------------------------------------------------------- helpers


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray | None = None, fmt: str | None = None,
          **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(8, 8) if array is None else array).save(path, fmt, **kwargs)
    return path


def _jpeg_bytes(h: int = 64, w: int = 64, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(h, w, seed)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand (PIL cannot write 48-bit RGB or absurd headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")


def _cfg(tmp_path: Path, **kwargs) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, **kwargs)


# ---------------------------------------------------------------------------- folders


def test_imagefolder_labels_follow_sorted_class_names(tmp_path):
    for cls, count in (("zebra", 2), ("ant", 1), ("Moose", 3)):
        for k in range(count):
            _save(tmp_path / cls / f"{k}.png")
    _save(tmp_path / "ant" / ".hidden.png")  # hidden file
    _save(tmp_path / ".git" / "x.png")  # hidden folder: no class
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    images = scan_folder(tmp_path)
    assert images.classes == ["Moose", "ant", "zebra"]  # plain sorted(), as ImageFolder
    assert images.labels.dtype == np.int64
    assert images.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert [Path(p).parent.name for p in images.paths] == ["Moose"] * 3 + ["ant"] + ["zebra"] * 2


def test_flat_folder_has_labels_minus_one(tmp_path):
    for name in ("b.png", "a.jpg", "c.PNG"):
        _save(tmp_path / name)
    images = scan_folder(tmp_path)
    assert images.classes == []
    assert images.labels.tolist() == [-1, -1, -1]
    assert [Path(p).name for p in images.paths] == ["a.jpg", "b.png", "c.PNG"]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(SimCLRError, match=f"not found: {tmp_path / 'nope'}"):
        scan_folder(tmp_path / "nope")


def test_file_instead_of_folder_is_named(tmp_path):
    f = _save(tmp_path / "a.png")
    with pytest.raises(SimCLRError, match=f"not a folder: {f}"):
        scan_folder(f)


def test_empty_folder_is_named(tmp_path):
    (tmp_path / ".DS_Store").write_text("")  # hidden files do not count
    with pytest.raises(SimCLRError, match=f"empty: {tmp_path}"):
        scan_folder(tmp_path)


def test_folder_without_images_is_named(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "labels.csv").write_text("a,b")
    with pytest.raises(SimCLRError, match=f"no images found in {tmp_path}"):
        scan_folder(tmp_path)


def test_folder_with_splits_picks_train_or_test(tmp_path):
    root = tmp_path / "ds"
    _save(root / "train" / "cat" / "1.png")
    _save(root / "train" / "dog" / "1.png")
    _save(root / "test" / "cat" / "1.png")
    cfg = _cfg(tmp_path)
    assert open_source(str(root), cfg, train=True).num_images == 2
    assert open_source(str(root), cfg, train=False).num_images == 1


# ---------------------------------------------------------------------------- bad images


def test_truncated_jpeg_is_refused(tmp_path):
    p = tmp_path / "t.jpg"
    p.write_bytes(_jpeg_bytes()[:2000])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(BadImageError, match="truncated") as info:
        open_image(p)
    assert info.value.path == str(p)


def test_corrupt_jpeg_is_refused(tmp_path):
    raw = bytearray(_jpeg_bytes())
    sos = raw.find(b"\xff\xda")  # start of scan: wipe the scan header and entropy data
    raw[sos + 2:sos + 60] = bytes(58)
    p = tmp_path / "c.jpg"
    p.write_bytes(bytes(raw))
    with pytest.raises(BadImageError, match="cannot decode"):
        open_image(p)


def test_zero_byte_file_is_refused(tmp_path):
    p = tmp_path / "z.png"
    p.write_bytes(b"")
    with pytest.raises(BadImageError, match="empty file"):
        open_image(p)


def test_non_image_with_image_extension_is_refused(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("<html>404 not found</html>")
    with pytest.raises(BadImageError, match="not an image"):
        open_image(p)


def test_png_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = 40
    rgba[..., 2] = 0
    rgba[..., 3] = np.arange(36, dtype=np.uint8).reshape(6, 6) * 7  # 0..245
    p = _save(tmp_path / "a.png", rgba)
    out = np.asarray(open_image(p), dtype=np.float64)
    a = rgba[..., 3:4] / 255.0
    expected = rgba[..., :3] * a + 255.0 * (1 - a)  # "over" a white background
    assert open_image(p).mode == "RGB"
    assert np.abs(out - expected).max() <= 1.0


def test_palette_png_with_transparency(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)  # index 0 black, 1 green
    im.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    p = tmp_path / "p.png"
    im.save(p, transparency=0)
    assert Image.open(p).mode == "P"
    out = np.asarray(open_image(p))
    mask = np.array([0, 1, 0, 1, 1, 1, 0, 0]).reshape(2, 4).astype(bool)
    assert (out[~mask] == 255).all()  # transparent index -> white, not black
    assert (out[mask] == [0, 200, 0]).all()


def test_palette_png_without_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    im.putdata([2, 0, 1])
    p = tmp_path / "p.png"
    im.save(p)
    assert np.asarray(open_image(p)).tolist() == [[[70, 80, 90], [10, 20, 30], [40, 50, 60]]]


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(values).save(p)
    assert Image.open(p).mode.startswith("I")
    out = np.asarray(open_image(p))
    expected = np.round(values / 257.0)  # 0..65535 -> 0..255
    assert out.shape == (1, 5, 3)
    assert (out[..., 0] == expected).all() and (out[..., 0] == out[..., 2]).all()


def test_16bit_rgb_png(tmp_path):
    rgb16 = np.array([[[65535, 0, 32896], [12850, 51400, 257]]], dtype=">u2")  # (1, 2, 3)
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb16)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png(2, 1, 16, 2, rows))
    out = np.asarray(open_image(p)).astype(np.int64)
    assert np.abs(out - np.round(rgb16.astype(np.float64) / 257.0)).max() <= 1


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_grayscale_becomes_rgb(tmp_path, mode):
    grey = np.tile(np.array([0, 60, 200, 255], dtype=np.uint8), (2, 1))
    im = Image.fromarray(grey, "L")
    if mode == "LA":
        im.putalpha(255)
    im = im.convert(mode)
    p = tmp_path / f"g-{mode}.png"
    im.save(p)
    out = np.asarray(open_image(p))
    assert out.shape == (2, 4, 3)
    expected = grey if mode != "1" else np.where(grey >= 128, 255, 0)
    for c in range(3):
        assert (out[..., c] == expected).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, quality=95)  # pure red ink
    assert Image.open(p).mode == "CMYK"
    out = np.asarray(open_image(p)).astype(int)
    assert np.abs(out - [255, 0, 0]).max() <= 8


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # h=20, w=40
    stored[..., 2] = 255
    stored[:10, :10] = [255, 0, 0]  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(p, quality=95, exif=exif.tobytes())
    out = open_image(p)
    assert out.size == (20, 40)  # (w, h): width and height swapped
    raw = np.asarray(Image.open(p).convert("RGB"))
    assert (np.asarray(out) == np.rot90(raw, k=-1)).all()  # exactly a clockwise turn
    top_right = np.asarray(out)[1:9, 11:19].astype(int)
    assert np.abs(top_right - [255, 0, 0]).max() < 40  # the block moved to the top-right


def test_image_smaller_than_crop_is_upscaled(tmp_path):
    small = np.zeros((6, 8, 3), dtype=np.uint8)
    small[:, :4] = 255
    p = _save(tmp_path / "tiny.png", small)
    out = load_square(str(p), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # shorter side 6 -> 32, width 8 -> 43, centre crop: white left of the middle
    assert (out[:, :8] > 200).all() and (out[:, -8:] < 50).all()


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    p = _save(tmp_path / "big.png", _rgb(120, 100))

    def no_decode(self):
        raise AssertionError("decoded a refused image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(BadImageError, match="decompression-bomb") as info:
        open_image(p, max_pixels=10_000)
    assert "100x120 = 12000 pixels" in info.value.reason


def test_absurd_header_is_refused_with_default_limit(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png(100_000, 100_000, 8, 2, None))  # 10^10 pixels, a few bytes on disk
    with pytest.raises(BadImageError, match="decompression-bomb"):
        open_image(p)


# ---------------------------------------------------------------------------- folder sources


def _mixed_folder(root: Path) -> dict[str, str]:
    """Good and bad files; returns name -> expected reason fragment for the bad ones."""
    _save(root / "a_good.png", _rgb(32, 32, 1))
    _save(root / "b_gray.png", np.zeros((32, 32), dtype=np.uint8))
    _save(root / "c_small.png", _rgb(8, 8, 2))
    (root / "d_zero.jpg").write_bytes(b"")
    (root / "e_trunc.jpg").write_bytes(_jpeg_bytes(32, 32)[:600])
    (root / "f_text.png").write_text("hello")
    _save(root / "g_big.png", _rgb(60, 60, 3))  # over max_pixels=3000 below
    return {"d_zero.jpg": "empty file", "e_trunc.jpg": "truncated",
            "f_text.png": "not an image", "g_big.png": "decompression-bomb"}


@pytest.mark.parametrize("cache", ["on", "off"])
def test_bad_images_are_skipped_and_counted(tmp_path, cache):
    bad = _mixed_folder(tmp_path / "imgs")
    cfg = _cfg(tmp_path, cache=cache, load_size=32)
    src = open_source(str(tmp_path / "imgs"), cfg, max_pixels=3000)
    if cache == "on":
        assert src.cached and src.num_images == 3
        batch = src.get_batch(np.arange(3))
    else:  # found while iterating; replaced by the next readable image
        assert not src.cached and src.num_images == 7
        batch = torch.cat([im for _, im in BatchLoader(src, 7, 0, 0, workers=0)])
    assert batch.shape[1:] == (3, 32, 32) and batch.dtype == torch.uint8
    skipped = {Path(p).name: reason for p, reason in src.skipped}
    assert skipped.keys() == bad.keys()
    for name, fragment in bad.items():
        assert fragment in skipped[name]
    assert "skipped 4 unreadable image(s)" in src.skip_summary()


@pytest.mark.parametrize("cache", ["on", "off"])
def test_strict_fails_on_first_bad_file(tmp_path, cache):
    _mixed_folder(tmp_path / "imgs")
    cfg = _cfg(tmp_path, cache=cache, strict=True, load_size=32)
    bad = tmp_path / "imgs" / "d_zero.jpg"
    with pytest.raises(SimCLRError, match=f"--strict: bad image {bad}: empty file"):
        open_source(str(tmp_path / "imgs"), cfg, max_pixels=3000)


# ---------------------------------------------------------------------------- cache


def _cifar_like(root: Path, n: int = 6) -> list[np.ndarray]:
    arrays = [_rgb(16, 16, seed) for seed in range(n)]
    for k, a in enumerate(arrays):
        _save(root / ("cat" if k % 2 else "dog") / f"{k}.png", a)
    return arrays


def test_cache_build_stores_exact_pixels(tmp_path):
    arrays = _cifar_like(tmp_path / "imgs")
    src = open_source(str(tmp_path / "imgs"), _cfg(tmp_path))
    assert src.cached and src.image_hw == (16, 16)
    order = [1, 3, 5, 0, 2, 4]  # cat (odd seeds) sorts before dog
    expected = np.stack([arrays[k] for k in order]).transpose(0, 3, 1, 2)
    assert (src.get_batch(np.arange(6)).numpy() == expected).all()
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp-*"))


def test_cache_build_with_worker_processes(tmp_path, monkeypatch):
    arrays = _cifar_like(tmp_path / "imgs", n=10)
    monkeypatch.setattr(data, "_CHUNK", 3)  # 4 tasks for 2 processes
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=2)
    src = open_source(str(tmp_path / "imgs"), cfg)
    names = [int(Path(p).stem) for p in src.paths]
    expected = np.stack([arrays[k] for k in names]).transpose(0, 3, 1, 2)
    assert (src.get_batch(np.arange(10)).numpy() == expected).all()


def _forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data, "open_image", fail)


def test_cache_is_reused_without_decoding(tmp_path, monkeypatch):
    _cifar_like(tmp_path / "imgs")
    first = open_source(str(tmp_path / "imgs"), _cfg(tmp_path)).get_batch(np.arange(6))
    _forbid_decoding(monkeypatch)
    again = open_source(str(tmp_path / "imgs"), _cfg(tmp_path)).get_batch(np.arange(6))
    assert torch.equal(first, again)


def test_cache_is_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), _cfg(tmp_path))
    changed = tmp_path / "imgs" / "cat" / "1.png"
    _save(changed, np.full((16, 16, 3), 7, dtype=np.uint8))
    stamp = time.time() + 5
    os.utime(changed, (stamp, stamp))
    src = open_source(str(tmp_path / "imgs"), _cfg(tmp_path))
    assert (src.get_batch([0]).numpy() == 7).all()  # cat/1.png is the first image
    _forbid_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded again"):  # a new file -> new key
        _save(tmp_path / "imgs" / "cat" / "9.png", _rgb(16, 16))
        open_source(str(tmp_path / "imgs"), _cfg(tmp_path))


def test_interrupted_cache_build_leaves_nothing(tmp_path, monkeypatch):
    _cifar_like(tmp_path / "imgs")
    real = data._decode_all

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_decode_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_source(str(tmp_path / "imgs"), _cfg(tmp_path))
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(data, "_decode_all", real)
    assert open_source(str(tmp_path / "imgs"), _cfg(tmp_path)).num_images == 6


def test_mixed_sizes_share_one_side(tmp_path):
    for k, (h, w) in enumerate([(20, 20), (20, 20), (30, 24), (12, 40)]):
        _save(tmp_path / "imgs" / f"{k}.png", _rgb(h, w, k))
    src = open_source(str(tmp_path / "imgs"), _cfg(tmp_path))
    assert src.cached and src.image_hw == (20, 20)  # the most common shorter side
    assert src.get_batch(np.arange(4)).shape == (4, 3, 20, 20)


# ---------------------------------------------------------------------------- loader


def _indexed_source(n: int = 50) -> ImageSource:
    """Image i is filled with the value i, so every batch can be checked."""
    array = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 3))
    return ImageSource("indexed", np.arange(n) % 3, ["a", "b", "c"], array=np.array(array))


def _epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(i.clone(), im.clone()) for i, im in loader]


def test_loader_is_deterministic_and_covers_the_epoch(tmp_path):
    src = _indexed_source()
    a = _epoch(BatchLoader(src, 8, seed=3, epoch=1))
    b = _epoch(BatchLoader(src, 8, seed=3, epoch=1))
    c = _epoch(BatchLoader(src, 8, seed=3, epoch=2))
    assert len(a) == len(BatchLoader(src, 8, seed=3, epoch=1)) == 50 // 8
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c, strict=True))
    seen = torch.cat([i for i, _ in a])
    assert seen.dtype == torch.int64 and len(set(seen.tolist())) == 48  # drop_last
    assert seen.tolist() == epoch_permutation(50, 3, 1)[:48].tolist()
    for idx, images in a:
        assert images.shape == (8, 3, 4, 4) and images.dtype == torch.uint8
        assert (images[:, :, 0, 0] == idx[:, None].to(torch.uint8)).all()


def test_two_ranks_split_every_global_batch(tmp_path):
    src = _indexed_source()
    whole = _epoch(BatchLoader(src, 12, seed=0, epoch=5))
    r0 = _epoch(BatchLoader(src, 6, seed=0, epoch=5, rank=0, world_size=2))
    r1 = _epoch(BatchLoader(src, 6, seed=0, epoch=5, rank=1, world_size=2))
    assert len(whole) == len(r0) == len(r1) == 4
    for (i, im), (i0, im0), (i1, im1) in zip(whole, r0, r1, strict=True):
        assert torch.equal(torch.cat([i0, i1]), i)
        assert torch.equal(torch.cat([im0, im1]), im)


def test_resume_yields_the_remaining_batches(tmp_path):
    src = _indexed_source()
    full = _epoch(BatchLoader(src, 4, seed=1, epoch=0))
    rest = _epoch(BatchLoader(src, 4, seed=1, epoch=0, start_step=9))
    assert len(rest) == len(full) - 9
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[9:], rest, strict=True))
    with pytest.raises(SimCLRError, match="cannot resume at step 13"):
        BatchLoader(src, 4, seed=1, epoch=0, start_step=13)


def test_loader_without_drop_last_and_without_shuffle(tmp_path):
    src = _indexed_source(10)
    batches = _epoch(BatchLoader(src, 4, 0, 0, drop_last=False, shuffle=False))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batch_larger_than_data_is_a_user_error():
    with pytest.raises(SimCLRError, match="larger than the data set"):
        BatchLoader(_indexed_source(10), 8, 0, 0, world_size=2)


def test_loader_stops_its_thread_and_forwards_errors(monkeypatch):
    src = _indexed_source()
    it = iter(BatchLoader(src, 4, 0, 0))
    next(it)
    it.close()
    assert not any(t.name == "simclr-prefetch" for t in threading.enumerate())

    def broken(indices):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(src, "get_batch", broken)
    with pytest.raises(RuntimeError, match="disk gone"):
        list(BatchLoader(src, 4, 0, 0))


def test_uncached_source_decodes_in_workers_and_survives_bad_files(tmp_path):
    root = tmp_path / "photos"
    for k in range(6):
        _save(root / f"{k}.jpg", _rgb(120, 100, k), quality=90)
    (root / "2.jpg").write_bytes(_jpeg_bytes(120, 100)[:900])  # truncated
    src = open_source(str(root), _cfg(tmp_path), image_size=32)
    assert not src.cached and src.image_hw == (37, 37)  # round(32 * 1.15)
    for epoch in range(2):  # persistent workers: one DataLoader for both epochs
        batches = _epoch(BatchLoader(src, 3, seed=0, epoch=epoch, workers=1))
        idx = torch.cat([i for i, _ in batches])
        assert 2 not in idx.tolist() and 3 in idx.tolist()  # 2 replaced by 3
        assert batches[0][1].shape == (3, 3, 37, 37)
    assert len(src._loaders) == 1
    assert [(Path(p).name, "truncated" in r) for p, r in src.skipped] == [("2.jpg", True)]
    expected = load_square(str(root / "3.jpg"), 37)
    assert (src.get_batch([3])[0].permute(1, 2, 0).numpy() == expected).all()


# ---------------------------------------------------------------------------- named sources


def test_digits_source_shapes_and_values():
    src = digits_source()
    assert src.num_images == 1797 and src.classes == [str(d) for d in range(10)]
    assert sorted(set(src.labels.tolist())) == list(range(10))
    batch = src.get_batch(np.arange(5))
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == torch.uint8
    assert open_source(None, DataConfig()).num_images == 1797
    # independent bilinear (align_corners=False) upscale of the first digit, float64
    from sklearn.datasets import load_digits

    img = load_digits().images[0] * (255.0 / 16.0)
    pos = np.clip((np.arange(32) + 0.5) * 8 / 32 - 0.5, 0, 7)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, 7)
    f = pos - lo
    rows = img[lo] * (1 - f)[:, None] + img[hi] * f[:, None]
    ref = rows[:, lo] * (1 - f) + rows[:, hi] * f
    assert np.abs(batch[0, 0].numpy() - ref).max() <= 0.51
    assert torch.equal(batch[:, 0], batch[:, 2])


def test_digits_split_is_deterministic_and_disjoint():
    train, test = digits_split()
    assert (train.num_images, test.num_images) == (1200, 597)
    again, _ = digits_split()
    assert torch.equal(train.get_batch(np.arange(20)), again.get_batch(np.arange(20)))
    a = train.get_batch(np.arange(train.num_images)).flatten(1)
    b = test.get_batch(np.arange(test.num_images)).flatten(1)
    assert train.labels.shape == (1200,) and test.labels.shape == (597,)
    assert torch.cat([a, b]).shape[0] == 1797
    assert open_source(None, DataConfig(), train=False).num_images == 597


def test_named_dataset_without_download_says_how(tmp_path):
    cfg = DataConfig(root=str(tmp_path / "datasets"))
    with pytest.raises(SimCLRError, match=r"cifar10 not found under .*--download"):
        open_source("cifar10", cfg)


@pytest.mark.skipif(not Path("/work/shared/data/cifar10/test").is_dir(),
                    reason="shared CIFAR-10 JPEG folder not available")
def test_shared_cifar10_folder_labels(tmp_path):
    images = scan_folder("/work/shared/data/cifar10/test")
    assert len(images.paths) == 10_000 and images.classes[0] == "airplane"
    assert np.bincount(images.labels).tolist() == [1000] * 10


@requires_cifar
def test_shared_cifar10_test_split_opens_as_a_cached_labeled_source(tmp_path):
    folder = SHARED_DATA / "cifar10" / "test"
    source = open_source(str(folder), DataConfig(cache_dir=str(tmp_path)), train=False)
    assert source.cached and source.image_hw == (32, 32)
    assert source.num_images == 10_000 and len(source.classes) == 10
    assert np.bincount(source.labels).tolist() == [1000] * 10
    batch = source.get_batch(np.array([0, 9999]))
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 32, 32)
