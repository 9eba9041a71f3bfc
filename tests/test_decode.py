"""Tests for simclr.decode: every kind of bad image file, and JPEGs decoded on the device."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from simclr import decode
from simclr.decode import (
    as_rgb,
    decode_jpegs,
    fit_square,
    fit_square_tensor,
    load_square,
    open_image,
    read_jpeg,
)
from simclr.errors import BadImageError
from tests.image_files import corrupt_jpeg_bytes, jpeg_bytes, png_bytes, rgb, save_image, smooth_rgb

# ---------------------------------------------------------------------------- bad images


def test_truncated_jpeg_is_refused(tmp_path):
    p = tmp_path / "t.jpg"
    p.write_bytes(jpeg_bytes()[:2000])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(BadImageError, match="truncated") as info:
        open_image(p)
    assert info.value.path == str(p) and info.value.reason.startswith("truncated file: ")


def test_importing_simclr_leaves_the_callers_pil_truncation_setting_alone():
    """A library caller (a notebook) that lets PIL load truncated images keeps that
    choice: importing any simclr module used to reset it to False."""
    code = ("import importlib, pkgutil, simclr\n"
            "from PIL import ImageFile\n"
            "ImageFile.LOAD_TRUNCATED_IMAGES = True\n"
            "for m in pkgutil.iter_modules(simclr.__path__):\n"
            "    if m.name != '__main__':\n"
            "        importlib.import_module(f'simclr.{m.name}')\n"
            "assert ImageFile.LOAD_TRUNCATED_IMAGES is True\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("setting", [False, True])
def test_worker_processes_take_the_pil_truncation_setting_of_their_starter(setting):
    """A spawned loader worker or cache decoder (macOS, Windows) starts from PIL's
    default or what the caller's script sets at import: a command refusing truncated
    files had its workers decode them grey where that script set True, and a caller's
    True was lost in its workers. Both now take the setting of the process that made
    them (run here in a fresh interpreter, as a spawned worker is)."""
    code = ("import sys, pickle\n"
            "from PIL import ImageFile\n"
            "from simclr.cache import _decoding_process\n"
            "from simclr.runtime import loader_worker_init\n"
            "init, decoder = pickle.loads(sys.stdin.buffer.read())\n"
            "ImageFile.LOAD_TRUNCATED_IMAGES = 'untouched'\n"
            "init(0)\n"
            "print(ImageFile.LOAD_TRUNCATED_IMAGES)\n"
            "ImageFile.LOAD_TRUNCATED_IMAGES = 'untouched'\n"
            "decoder[0](*decoder[1])\n"
            "print(ImageFile.LOAD_TRUNCATED_IMAGES)\n")
    import pickle

    from PIL import ImageFile

    from simclr.cache import _decoding_process
    from simclr.decode import pil_truncation
    from simclr.runtime import loader_worker_init

    before = pil_truncation()
    pil_truncation(setting)
    try:  # (what the DataLoader and the decoding pool pickle for a spawned process)
        sent = pickle.dumps((loader_worker_init(), (_decoding_process, (pil_truncation(),))))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    done = subprocess.run([sys.executable, "-c", code], input=sent, capture_output=True,
                          timeout=120)
    assert done.stdout.decode().split() == [str(setting)] * 2, done.stderr.decode()[-2000:]


def test_corrupt_jpeg_is_refused(tmp_path):
    p = tmp_path / "c.jpg"
    p.write_bytes(corrupt_jpeg_bytes())
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
    p = save_image(tmp_path / "a.png", rgba)
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


@pytest.mark.parametrize("kind", ["RGB", "L", "I;16"])
def test_a_png_colour_key_is_transparent(tmp_path, kind):
    """An RGB, grey or 16-bit grey PNG whose tRNS chunk names one transparent colour:
    those pixels come out white like an alpha channel's (they were kept as the colour,
    magenta or black), the others as without the key."""
    if kind == "RGB":
        pixels, key = rgb(4, 5), (255, 0, 255)
        pixels[0, 0] = key
    else:
        pixels = np.arange(20, dtype=np.uint8 if kind == "L" else np.uint16).reshape(4, 5)
        pixels = pixels * (1 if kind == "L" else 3000)
        key = int(pixels[0, 0])
    Image.fromarray(pixels).save(tmp_path / "key.png", transparency=key)
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    assert Image.open(tmp_path / "key.png").mode == kind
    out = np.asarray(open_image(tmp_path / "key.png"))
    plain = np.asarray(open_image(tmp_path / "plain.png"))
    assert (out[0, 0] == 255).all() and (plain[0, 0] != 255).any()
    assert np.array_equal(out[1:], plain[1:]) and np.array_equal(out[0, 1:], plain[0, 1:])


def test_a_png_with_megabytes_of_metadata_is_read(tmp_path):
    """An editor's 20 MB of (compressed) XMP was over PIL's 1 MiB per text chunk: the
    picture was skipped as 'cannot decode'; PIL's own limit is left as it was."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("XML:com.adobe.xmp", "x" * (20 * 2**20), zip=True)
    Image.fromarray(rgb(8, 9)).save(tmp_path / "meta.png", pnginfo=info)
    before = PngImagePlugin.MAX_TEXT_CHUNK
    assert np.array_equal(np.asarray(decode.open_image(tmp_path / "meta.png")), rgb(8, 9))
    assert PngImagePlugin.MAX_TEXT_CHUNK == before


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
    p.write_bytes(png_bytes(2, 1, 16, 2, rows))
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


# pngtest.png's (libpng's test image): orientation 5 (transpose), then an Exif sub-IFD
# that points past the data, over which PIL warns "Corrupt EXIF data" naming its own file
_CORRUPT_EXIF = (b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x02\x01\x12\x00\x03\x00\x00"
                 b"\x00\x01\x00\x05\x00\x00\x87i\x00\x04\x00\x00\x00\x01\x00\x00\x00&"
                 b"\x00\x00\x00\x00\x00\x01\xa4\x05\x00\x03\x00\x00\x00\x01\x01,\x00\x00")


def test_a_picture_without_exif_is_turned_without_catching_warnings(monkeypatch):
    """The EXIF warnings are caught only where there is an EXIF block: entering
    warnings.catch_warnings for every picture made Python repeat its once-only
    warnings (each exit resets their registry)."""
    from simclr import decode

    def refused(*args, **kwargs):
        raise AssertionError("catch_warnings entered for a picture without EXIF")

    monkeypatch.setattr(decode.warnings, "catch_warnings", refused)
    im = Image.new("RGB", (5, 3), (10, 20, 30))
    assert decode.as_rgb(im).size == (5, 3)


def test_a_damaged_exif_block_is_read_as_far_as_it_goes_without_pils_warning(tmp_path):
    """PIL's warning named its own source file, not the image, in two raw lines (from
    every loader worker); the orientation it could read is still applied."""
    p = tmp_path / "pngtest.png"
    Image.fromarray(rgb(20, 40)).save(p, exif=_CORRUPT_EXIF)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = open_image(p)
        with Image.open(p) as im:
            converted = as_rgb(im)
    assert out.size == converted.size == (20, 40)  # (w, h) of a transposed 40x20
    raw = np.asarray(Image.open(p).convert("RGB"))
    assert (np.asarray(out) == raw.transpose(1, 0, 2)).all()


def _tiff_with_a_tag_past_its_end(orientation: int) -> bytes:
    """A TIFF whose ImageDescription says it is longer than the file (PIL skips it,
    warning "Tag data larger than file"), its orientation tag intact."""
    import io
    import struct

    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270], tags[274] = "d" * 40, orientation  # (a description held at an offset)
    out = io.BytesIO()
    Image.fromarray(rgb(20, 40)).save(out, "TIFF", tiffinfo=tags)
    data = bytearray(out.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        if struct.unpack_from("<H", data, ifd + 2 + 12 * i)[0] == 270:
            struct.pack_into("<I", data, ifd + 2 + 12 * i + 4, 100_000)  # its count
    return bytes(data)


def test_a_tiffs_damaged_tags_are_read_as_far_as_they_go_without_pils_warning(tmp_path):
    """A TIFF keeps its EXIF in its own tags, not in an EXIF block (info["exif"]):
    exif_transpose reads them again from the file, over which PIL warns as over a
    damaged block; the orientation is still applied."""
    p = tmp_path / "t.tif"
    p.write_bytes(_tiff_with_a_tag_past_its_end(6))
    with warnings.catch_warnings():  # (PIL's open warns too: not as_rgb's to catch)
        warnings.simplefilter("ignore")
        im = Image.open(p)
    with im, warnings.catch_warnings():
        warnings.simplefilter("error")
        converted = as_rgb(im)
    assert converted.size == (20, 40)  # (w, h) of a 40x20 turned a quarter
    assert (np.asarray(converted) == np.rot90(rgb(20, 40), k=-1)).all()


def test_a_tiff_with_damaged_tags_decodes_without_pils_warnings(tmp_path):
    """open_image (every loader worker's decode) let PIL's own 'Tag data larger than
    file' warnings through, three raw lines naming PIL's source per image; the tags are
    read as far as they go and the orientation applied."""
    from simclr.decode import open_image

    p = tmp_path / "t.tif"
    p.write_bytes(_tiff_with_a_tag_past_its_end(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im = open_image(p)
    assert im.size == (20, 40) and (np.asarray(im) == np.rot90(rgb(20, 40), k=-1)).all()


def test_image_smaller_than_crop_is_upscaled(tmp_path):
    small = np.zeros((6, 8, 3), dtype=np.uint8)
    small[:, :4] = 255
    p = save_image(tmp_path / "tiny.png", small)
    out, aspect = load_square(str(p), 32, store="center")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and aspect == 1.0
    # shorter side 6 -> 32, width 8 -> 43, centre crop: white left of the middle
    assert (out[:, :8] > 200).all() and (out[:, -8:] < 50).all()
    assert (out[:, 12:14] > 200).all() and (out[:, 20:] < 50).all()  # the edge at 43/2 - 5


def test_full_store_squeezes_the_whole_image_and_keeps_its_aspect(tmp_path):
    """The default store: the whole picture in the square, its shape kept beside it."""
    wide = np.zeros((6, 8, 3), dtype=np.uint8)
    wide[:, :1] = 255  # a white first column, which the central square would drop
    out, aspect = load_square(str(save_image(tmp_path / "wide.png", wide)), 32)
    assert out.shape == (32, 32, 3) and aspect == 8 / 6
    assert (out[:, :3] > 200).all() and (out[:, 6:] < 60).all()  # 1/8 of the width: 4 px
    tall = np.zeros((8, 6, 3), dtype=np.uint8)
    tall[-1] = 255
    out, aspect = load_square(str(save_image(tmp_path / "tall.png", tall)), 32)
    assert aspect == 6 / 8 and (out[-3:] > 200).all() and (out[:-6] < 60).all()
    square, aspect = load_square(str(save_image(tmp_path / "sq.png", rgb(20, 20))), 20)
    assert aspect == 1.0 and (square == rgb(20, 20)).all()  # a fitting square: untouched


@pytest.mark.parametrize("orientation", [1, 3, 6])
def test_a_jpeg_read_in_draft_mode_keeps_the_files_own_aspect(tmp_path, orientation):
    """The aspect was the reduced decode's (each side rounded up at 1/2 to 1/8): 1.3%
    off for a 2000 x 289 JPEG at 37 px, where the device path takes the header's. The
    file's own now, its sides swapped by an EXIF turn (orientations 5-8), not by a half
    turn (3)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    for k, (w, h, side) in enumerate([(2000, 289, 37), (1000, 333, 37), (300, 2000, 37)]):
        path = tmp_path / f"{k}.jpg"
        Image.fromarray(smooth_rgb(h, w, k)).save(path, quality=80, exif=exif.tobytes())
        with Image.open(path) as im:
            im.draft(im.mode, (side, side))
            assert im.size != (w, h)  # (read reduced)
        expected = h / w if orientation in (5, 6, 7, 8) else w / h
        assert load_square(str(path), side)[1] == expected, (w, h)
        if orientation == 1:
            assert read_jpeg(str(path))[1] == expected  # (the device path's, as before)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    p = save_image(tmp_path / "big.png", rgb(120, 100))

    def no_decode(self):
        raise AssertionError("decoded a refused image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(BadImageError, match="decompression-bomb") as info:
        open_image(p, max_pixels=10_000)
    assert "100x120 = 12000 pixels" in info.value.reason


def test_absurd_header_is_refused_with_default_limit(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bytes(100_000, 100_000, 8, 2, None))  # 10^10 pixels, a few bytes on disk
    with pytest.raises(BadImageError, match=r"100000x100000 = 10000000000 pixels exceeds the "
                                            r"limit of 89478485 \(decompression-bomb guard; "
                                            r"--max-pixels sets it\)"):
        open_image(p)  # simclr's limit named, not PIL's (twice it) in PIL's words


def test_pils_global_limits_are_lifted_only_for_a_file_they_refuse(tmp_path, monkeypatch):
    """They were lifted for every file, so another thread's Image.open could run
    without PIL's decompression-bomb guard at any moment of a decode."""
    seen = []
    real = Image.open

    def open_(*args, **kwargs):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return real(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_)
    decode.open_image(save_image(tmp_path / "small.png", rgb(20, 30)))
    assert seen == [Image.MAX_IMAGE_PIXELS] and seen[0] is not None
    seen.clear()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # so that 600 px are "a bomb"
    assert decode.open_image(save_image(tmp_path / "big.png", rgb(20, 30))).size == (30, 20)
    assert seen == [500, None] and Image.MAX_IMAGE_PIXELS == 500  # then put back


def test_a_jpeg_over_the_limit_is_read_where_draft_mode_decodes_it_within(tmp_path):
    """A 108-megapixel phone photo is over PIL's 89M limit, but draft mode decodes it at
    1/2 to 1/8 of its size: JPEGs of up to 4x the limit are read if what is decoded fits
    (here scaled down: a limit of 10,000 pixels, a 150x100 JPEG)."""
    jpeg, png = tmp_path / "phone.jpg", tmp_path / "phone.png"
    Image.fromarray(smooth_rgb(100, 150)).save(jpeg, quality=90)
    Image.fromarray(smooth_rgb(100, 150)).save(png)
    im = open_image(jpeg, max_pixels=10_000, draft_size=(40, 40))
    assert im.size == (75, 50)  # decoded at 1/2: 3,750 pixels
    with pytest.raises(BadImageError, match=r"150x100 = 15000 pixels, decoded at 150x100, "
                                            r"exceeds the limit of 10000"):
        open_image(jpeg, max_pixels=10_000, draft_size=(80, 80))  # no reduction possible
    with pytest.raises(BadImageError, match=r"150x100 = 15000 pixels exceeds the limit of "
                                            r"10000 \(decompression-bomb guard; --max-pixels"):
        open_image(png, max_pixels=10_000, draft_size=(40, 40))  # no draft mode for PNG
    with pytest.raises(BadImageError, match=r"15000 pixels exceeds the limit of 12000 \("
                       r"decompression-bomb guard; 4 x --max-pixels 3000, a JPEG being read "
                       r"at reduced size\)"):  # (said "of 12000" to a --max-pixels 3000)
        open_image(jpeg, max_pixels=3_000, draft_size=(10, 10))  # over 4x: refused outright


def _camera_jpeg(path, h: int, w: int) -> bytes:
    """A JPEG as many cameras and phones write it, with its preview appended (Multi-
    Picture format: PIL names it "MPO"); returns the primary image's bytes."""
    picture = Image.fromarray(smooth_rgb(h, w))
    preview = Image.fromarray(smooth_rgb(h // 4, w // 4, 1))
    picture.save(path, format="MPO", save_all=True, append_images=[preview], quality=90)
    with Image.open(path) as im:
        assert im.format == "MPO" and im.n_frames == 2
        return path.read_bytes()[:im.mpinfo[0xB002][0]["Size"]]


def test_a_camera_jpeg_pil_names_mpo_is_read_in_draft_mode_as_a_jpeg(tmp_path):
    """A JPEG with an embedded preview (PIL's MpoImageFile, a JpegImageFile) was decoded
    at full size, 11x slower for 12 megapixels, and refused as a decompression bomb
    where the same plain JPEG is read in draft mode."""
    _camera_jpeg(tmp_path / "camera.jpg", 100, 150)
    Image.fromarray(smooth_rgb(100, 150)).save(tmp_path / "plain.jpg", quality=90)
    camera = open_image(tmp_path / "camera.jpg", max_pixels=10_000, draft_size=(40, 40))
    plain = open_image(tmp_path / "plain.jpg", max_pixels=10_000, draft_size=(40, 40))
    assert camera.size == (75, 50) and np.array_equal(np.asarray(camera), np.asarray(plain))
    with pytest.raises(BadImageError, match=r"4 x --max-pixels 3000, a JPEG being read"):
        open_image(tmp_path / "camera.jpg", max_pixels=3_000, draft_size=(10, 10))


# ---------------------------------------------------------------------------- JPEG on the device

CPU = torch.device("cpu")  # the device path runs unchanged on the CPU (nvJPEG on CUDA)


def _as_chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1)


def _torchvision_crop(pixels: torch.Tensor, side: int, crop: int) -> torch.Tensor:
    """The independent reference: torchvision's Resize(side) (bicubic, antialiased) then
    CenterCrop(crop) of float ``pixels`` (..., 3, H, W), unrounded and unclamped."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    return tvf.center_crop(tvf.resize(pixels, [side], interpolation=InterpolationMode.BICUBIC,
                                      antialias=True), [crop, crop])


def test_read_jpeg_hands_over_only_what_the_device_decoder_takes(tmp_path):
    plain = tmp_path / "plain.jpg"
    Image.fromarray(smooth_rgb(40, 30)).save(plain, quality=90)
    gray = tmp_path / "gray.jpg"
    Image.fromarray(smooth_rgb(40, 30)[..., 0]).save(gray, quality=90)
    blob, aspect = read_jpeg(str(plain))
    assert blob.dtype == torch.uint8 and blob.dim() == 1 and aspect == 30 / 40
    assert bytes(blob.numpy()) == plain.read_bytes()
    assert read_jpeg(str(plain), store="center")[1] == 1.0
    assert read_jpeg(str(gray)) is not None  # decoded to RGB by the device decoder
    assert read_jpeg(str(plain), max_pixels=40 * 30 - 1) is None  # bomb guard first
    assert read_jpeg(str(plain), max_pixels=40 * 30) is not None  # (exactly the limit)

    png = save_image(tmp_path / "x.png", rgb(8, 8))
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb(20, 40)).save(rotated, exif=exif.tobytes())
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(plain.read_bytes()[:300])
    for refused in (png, cmyk, rotated, truncated, tmp_path / "missing.jpg"):
        assert read_jpeg(str(refused)) is None, refused.name  # the PIL path takes these


def test_a_camera_jpeg_pil_names_mpo_goes_to_the_device_decoder_as_its_primary_image(
        tmp_path):
    """A JPEG with an embedded preview (MPO) was left to PIL in the workers. The device
    decoder gets the primary image's bytes alone, which decode as PIL's frame 0 does;
    the preview cut short leaves the primary whole, one cut short itself is PIL's."""
    primary = _camera_jpeg(tmp_path / "camera.jpg", 60, 80)
    blob, aspect = read_jpeg(str(tmp_path / "camera.jpg"))
    assert bytes(blob.numpy()) == primary and primary.endswith(decode.JPEG_END)
    assert aspect == 80 / 60
    out, failed = decode_jpegs([blob], 60, CPU, "center")
    with Image.open(tmp_path / "camera.jpg") as im:
        frame0 = np.asarray(im.convert("RGB"))
    assert failed == [] and np.array_equal(out[0].permute(1, 2, 0).numpy(), frame0[:, 10:70])
    whole = (tmp_path / "camera.jpg").read_bytes()
    (tmp_path / "preview-cut.jpg").write_bytes(whole[:-20])
    assert bytes(read_jpeg(str(tmp_path / "preview-cut.jpg"))[0].numpy()) == primary
    (tmp_path / "preview-gone.jpg").write_bytes(whole[:len(primary)])  # (ends with it)
    assert bytes(read_jpeg(str(tmp_path / "preview-gone.jpg"))[0].numpy()) == primary
    (tmp_path / "primary-cut.jpg").write_bytes(whole[:len(primary) - 20])
    assert read_jpeg(str(tmp_path / "primary-cut.jpg")) is None


@pytest.mark.parametrize("side,store", [(32, "full"), (40, "full"), (32, "center")])
def test_device_decode_matches_the_pil_path(tmp_path, side, store):
    """Same squares as load_square (draft-mode PIL) up to resampling, either store;
    portrait, landscape, upscaled and gray files."""
    shapes = [(160, 120), (120, 160), (64, 64), (33, 47), (300, 200), (side, side)]
    paths = []
    for k, (h, w) in enumerate(shapes):
        paths.append(tmp_path / f"{k}.jpg")
        Image.fromarray(smooth_rgb(h, w, k)).save(paths[-1], quality=90)
    paths.append(tmp_path / "gray.jpg")
    Image.fromarray(smooth_rgb(100, 90, 9)[..., 0]).save(paths[-1], quality=90)

    blobs = [read_jpeg(str(p), store=store)[0] for p in paths]
    out, failed = decode_jpegs(blobs, side, CPU, store)
    assert failed == [] and out.shape == (len(paths), 3, side, side) and out.dtype == torch.uint8
    for k, p in enumerate(paths):
        ref = _as_chw(load_square(str(p), side, store=store)[0]).int()
        diff = (out[k].int() - ref).abs().float()
        assert diff.mean() < 2.0 and diff.max() <= 16, (p.name, diff.mean(), diff.max())


def test_device_decode_passes_decoded_images_and_reports_failures(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(smooth_rgb(50, 50)).save(good, quality=90)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(corrupt_jpeg_bytes())
    found = read_jpeg(str(bad))
    assert found is not None  # headers and end marker look fine: only decoding tells
    ready = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    out, failed = decode_jpegs([read_jpeg(str(good))[0], ready, found[0]], 24, CPU)
    assert failed == [2]
    assert torch.equal(out[1], ready) and torch.equal(out[2], torch.zeros_like(ready))
    ref = _as_chw(load_square(str(good), 24)[0]).int()
    assert (out[0].int() - ref).abs().float().mean() < 2.0


def test_fit_square_tensor_sizes_agree_with_pil(tmp_path):
    for (h, w), store in itertools.product([(10, 30), (30, 10), (7, 9), (64, 64)],
                                           ["full", "center"]):
        out = fit_square_tensor(torch.zeros((2, 3, h, w), dtype=torch.uint8), 16, store)
        assert out.shape == (2, 3, 16, 16)
        pil = fit_square(Image.new("RGB", (w, h)), 16, store)
        assert pil.size == (16, 16)


@pytest.mark.parametrize(("h", "w"), [(8, 1200), (1200, 8), (1, 500)])
def test_a_picture_of_extreme_shape_is_resized_by_its_central_band(tmp_path, monkeypatch,
                                                                    h, w):
    """The shorter side resized to 256 before the central square was cut: a 1 x 500
    spacer became 256 x 128,000 (393 MB in float32; 1 x 8,000 ran out of memory in a
    traceback). Only the band the square is made of is resized now, to within a level
    or two of the whole picture's square (and bit for bit for ordinary shapes)."""
    from simclr.decode import central_band, eval_side, load_square

    array = smooth_rgb(h, w, seed=3)
    save_image(tmp_path / "thin.png", array)
    side = eval_side(224)
    band = central_band(w, h, side)
    assert band is not None and max(band[2:]) <= min(w, h) + 14
    pixels = torch.from_numpy(array).permute(2, 0, 1)[None].float()
    whole = _torchvision_crop(pixels, side, side).round().clamp(0, 255)
    got, _ = load_square(str(tmp_path / "thin.png"), side, store="eval:224")
    diff = (torch.from_numpy(got).permute(2, 0, 1).float() - whole[0]).abs()
    assert diff.mean() < 0.5 and diff.max() <= 2
    for store in ("center",):  # PIL's path and the device decoder's
        pil = np.asarray(fit_square(Image.fromarray(array), side, store)).astype(int)
        monkeypatch.setattr(decode, "MAX_RESIZED_PIXELS", 2**62)  # (the whole picture)
        reference = np.asarray(fit_square(Image.fromarray(array), side, store)).astype(int)
        tensor = fit_square_tensor(torch.from_numpy(array).permute(2, 0, 1)[None], side, store)
        monkeypatch.undo()
        assert np.abs(pil - reference).mean() < 0.5 and np.abs(pil - reference).max() <= 2
        cut = fit_square_tensor(torch.from_numpy(array).permute(2, 0, 1)[None], side, store)
        assert (cut.int() - tensor.int()).abs().float().mean() < 0.5
    assert central_band(400, 300, side) is None and central_band(5000, 100, side) is None


@pytest.mark.parametrize(("h", "w"), [(3, 2364), (2364, 3)])
def test_an_extreme_pictures_band_is_centred_when_its_margin_is_odd(tmp_path, h, w):
    """The central band of a 3 x 2364 picture (2355 px cut, odd) started half a source
    pixel off centre, 4-5 resized pixels at 64 px views: its evaluation crop was 16-23
    levels off torchvision's Resize + CenterCrop of the file (0.7-1 now: the band's
    rounded scale); 2363 px (an even cut) was 0.25."""
    from simclr.augment import eval_resize
    from simclr.decode import central_band, eval_side, load_square

    side = eval_side(64)
    assert central_band(w, h, side) is not None  # (the band path, not the whole picture)
    rng = np.random.default_rng(0)  # (detail at two source pixels: a shift shows)
    array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    array = array[:, ::2].repeat(2, axis=1)[:, :w] if w > h else \
        array[::2].repeat(2, axis=0)[:h]
    save_image(tmp_path / "thin.png", array)
    pixels = torch.from_numpy(array).permute(2, 0, 1)[None].float()
    expected = _torchvision_crop(pixels, side, 64).clamp(0, 255)[0] / 255
    stored, _ = load_square(str(tmp_path / "thin.png"), side, store="eval:64")
    got = eval_resize(torch.from_numpy(stored).permute(2, 0, 1)[None], 64, central=True)[0]
    assert (got - expected).abs().mean() * 255 < 2.0


@pytest.mark.parametrize(("h", "w"), [(1079, 1918), (3005, 4007)])
def test_a_large_png_reduced_for_evaluation_is_not_stretched(tmp_path, h, w):
    """A picture without draft mode (PNG) is box-reduced before the evaluation's
    resize; Image.reduce's last row and column average a partial box, then taken for a
    full one: a 1918 x 1079 screenshot came out stretched, 1.1 levels off eval_resize
    of the file on average (5.9 at most; 3.4% in features), against 0.26 where the side
    divides (1078)."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_side, load_square

    save_image(tmp_path / "big.png", smooth_rgb(h, w, seed=7))
    got, _ = load_square(str(tmp_path / "big.png"), eval_side(32), store="eval:32")
    views = eval_resize(torch.from_numpy(got).permute(2, 0, 1)[None], 32, central=True)[0]
    diff = 255 * (views - eval_resize(Image.open(tmp_path / "big.png"), 32)).abs()
    assert diff.mean() < 0.5 and diff.max() < 2


def test_device_decode_resizes_large_groups_in_bounded_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "RESIZE_CHUNK_ELEMENTS", 3 * 40 * 50 * 2)  # 2 images a chunk
    blobs = []
    for k in range(5):
        p = tmp_path / f"{k}.jpg"
        Image.fromarray(smooth_rgb(40, 50, k)).save(p, quality=90)
        blobs.append(read_jpeg(str(p))[0])
    sizes = []

    def fit(images, side, store="full"):  # (the chunks resized at once: at most 2)
        sizes.append(len(images))
        return fit_square_tensor(images, side, store)

    monkeypatch.setattr(decode, "fit_square_tensor", fit)
    out, failed = decode_jpegs(blobs, 32, CPU)
    assert failed == [] and sizes == [2, 2, 1]
    for k in range(5):
        ref = _as_chw(load_square(str(tmp_path / f"{k}.jpg"), 32)[0]).int()
        assert (out[k].int() - ref).abs().float().mean() < 2.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_decode_matches_cpu(tmp_path):
    """nvJPEG against libjpeg: same squares up to decoder rounding; failures found."""
    blobs = []
    for k, (h, w) in enumerate([(160, 120), (120, 160), (64, 64), (300, 200)]):
        p = tmp_path / f"{k}.jpg"
        Image.fromarray(smooth_rgb(h, w, k)).save(p, quality=90)
        blobs.append(read_jpeg(str(p))[0])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(corrupt_jpeg_bytes())
    blobs.append(read_jpeg(str(bad))[0])
    cpu, cpu_failed = decode_jpegs(blobs, 32, CPU)
    gpu, gpu_failed = decode_jpegs(blobs, 32, torch.device("cuda"))
    assert gpu.is_cuda and cpu_failed == gpu_failed == [4]
    diff = (gpu.cpu().int() - cpu.int()).abs().float()
    assert diff[:4].mean() < 1.5 and diff[:4].max() <= 12


def test_a_named_pipe_is_a_bad_file_not_a_wait_forever(tmp_path):
    """Opening a FIFO blocks until a writer comes: it is refused by its type first."""
    import os

    from simclr.decode import is_regular_file

    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    assert not is_regular_file(str(pipe))
    assert read_jpeg(str(pipe)) is None
    with pytest.raises(BadImageError, match="not a regular file"):
        load_square(str(pipe), 16)


def test_the_gpu_decoder_waits_for_the_work_queued_on_the_stream(monkeypatch):
    """torchvision's nvJPEG decode writes from a stream of its own into memory allocated
    on the caller's: the caller's queued kernels must be done first (run on the CPU with
    the CUDA calls recorded)."""
    import torchvision.io

    calls = []

    class Stream:
        def synchronize(self):
            calls.append("synchronize")

    def decode_jpeg(blobs, mode, device):
        calls.append("decode")
        return [torch.zeros(3, 2, 2, dtype=torch.uint8) for _ in blobs]

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_jpeg)
    blobs = [torch.frombuffer(bytearray(jpeg_bytes(8, 8)), dtype=torch.uint8)]
    assert len(decode._decode_list(blobs, torch.device("cuda"))) == 1
    assert calls == ["synchronize", "decode"]
    calls.clear()
    decode._decode_list(blobs, CPU)  # no stream to wait for on the CPU
    assert calls == ["decode"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decoding_never_writes_into_memory_queued_kernels_still_read():
    """The check of pytorch/vision PR #9606: tensors freed while kernels that read them
    are still queued (behind a long one) give their blocks to the decoder's output; the
    decoder must not write them before those kernels have run."""
    cuda = torch.device("cuda")
    side = 256
    blobs = [torch.frombuffer(bytearray(jpeg_bytes(side, side)), dtype=torch.uint8)
             for _ in range(8)]
    long_one = torch.randn(4096, 4096, device=cuda)
    wrong = 0
    for _ in range(10):
        held = [torch.full((3, side, side), i, dtype=torch.uint8, device=cuda)
                for i in range(16)]
        torch.cuda.synchronize()
        product = long_one
        for _ in range(8):  # queued: the reductions below wait behind it
            product = product @ long_one / 64
        sums = [t.sum(dtype=torch.int64) for t in held]
        del held  # their blocks are free for the next allocation on this stream
        decode._decode_list(blobs, cuda)
        torch.cuda.synchronize()
        wrong += sum(int(s.item()) != i * 3 * side * side for i, s in enumerate(sums))
    assert wrong == 0


def test_the_pixel_limit_takes_an_image_of_exactly_that_many_pixels(tmp_path):
    """--max-pixels N refuses more than N pixels, not N itself (a 12 x 10 PNG at 120)."""
    p = save_image(tmp_path / "a.png", rgb(10, 12))
    assert open_image(p, max_pixels=120).size == (12, 10)
    with pytest.raises(BadImageError, match="decompression-bomb"):
        open_image(p, max_pixels=119)


def test_the_center_store_scales_the_shorter_side_to_the_square_rounding_the_longer():
    """'center': 50 x 30 -> 27 x 16 (50 * 16 / 30 = 26.67, rounded), then the central
    16 x 16 (from column 5); a 30 x 50 likewise on its height."""
    im = Image.fromarray(rgb(30, 50, 4))
    want = im.resize((27, 16), Image.Resampling.BILINEAR).crop((5, 0, 21, 16))
    assert np.array_equal(np.asarray(fit_square(im, 16, "center")), np.asarray(want))
    tall = Image.fromarray(rgb(50, 30, 5))
    want = tall.resize((16, 27), Image.Resampling.BILINEAR).crop((0, 5, 16, 21))
    assert np.array_equal(np.asarray(fit_square(tall, 16, "center")), np.asarray(want))


@pytest.mark.parametrize("size", [20, 24])
def test_a_small_picture_stored_for_evaluation_sits_where_the_centre_crop_takes_it(
        tmp_path, size):
    """A picture of side <= 32 is stored as eval_resize's S x S result inside the square
    of eval_side(S); where that square is 3 px larger (20 -> 23, 24 -> 27) the centre
    crop starts at round(1.5) = 2 (torchvision's offset), so the result sits there, not
    at 1: a pixel's shift was all of each feature's difference."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_side, eval_store

    side = eval_side(size)
    assert side - size == 3
    p = save_image(tmp_path / "small.png", rgb(20, 12, 6))
    stored, _ = load_square(str(p), side, store=eval_store(size))
    square = torch.from_numpy(stored).permute(2, 0, 1)[None]
    got = eval_resize(square, size, central=True)[0]
    want = eval_resize(Image.open(p), size)
    assert (got - want).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(("size", "w", "h"), [(16, 20, 37), (24, 50, 40), (32, 60, 40),
                                             (96, 110, 100)])
def test_a_picture_stored_for_evaluation_gives_the_single_centre_crop(tmp_path, size, w, h):
    """An evaluation source's square (round(S / 0.875) px, its centre S x S taken at
    evaluation) holds torchvision's single Resize + CenterCrop(S) of the file, as
    eval_resize of the file does, to the 8-bit rounding of the stored pixels (0.5 of a
    level, inherent to a uint8 cache): the square was the central one, and its centre
    crop rounded torchvision's half-pixel offset a second time, a pixel off along the
    long side for these shapes (cached or not: every evaluation source is stored so)."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_side, eval_store

    p = save_image(tmp_path / "photo.png", rgb(h, w, size))
    stored, _ = load_square(str(p), eval_side(size), store=eval_store(size))
    got = eval_resize(torch.from_numpy(stored).permute(2, 0, 1)[None], size, central=True)[0]
    pixels = torch.from_numpy(rgb(h, w, size)).permute(2, 0, 1).float() / 255
    want = _torchvision_crop(pixels, eval_side(size), size).clamp(0, 1)
    assert (got - want).abs().max() <= 0.5 / 255 + 1e-6
    assert (got - eval_resize(Image.open(p), size)).abs().max() <= 0.5 / 255 + 1e-6


def test_a_float_picture_reaching_exactly_one_is_read_as_0_to_1(tmp_path):
    """A float (mode F) picture in 0..1 whose brightest pixel is exactly 1.0 (any white
    in it) is scaled to 0..255, not read as 0..255 (nearly black)."""
    values = np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tiff")
    out = np.asarray(open_image(tmp_path / "f.tiff"))[..., 0]
    assert out.tolist() == [[0, 128], [64, 255]]


def test_a_jpeg_cut_short_of_its_end_marker_is_left_to_the_pil_path(tmp_path):
    """A JPEG whose header reads but whose last bytes are missing (a copy cut short) is
    not handed to the device decoder, which may fill the rest with grey silently: the
    PIL path names it truncated."""
    whole = jpeg_bytes(64, 48)
    (tmp_path / "cut.jpg").write_bytes(whole[:-40])
    with Image.open(tmp_path / "cut.jpg") as im:
        assert im.size == (48, 64)  # (the header still reads: w x h)
    assert read_jpeg(str(tmp_path / "cut.jpg")) is None


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"),
                                     OSError(116, "Stale file handle"), MemoryError()])
def test_a_read_failure_that_may_pass_is_no_bad_image(tmp_path, monkeypatch, failure):
    """A failed read of the disk or the network (EIO, ESTALE...) or a full memory was
    called a bad image, which a cache then recorded for good: it is a one-line error
    naming the file and saying that running again retries it."""
    from simclr.errors import SimCLRError

    path = tmp_path / "a.png"
    save_image(path, rgb(8, 8))

    def fail(f):
        raise failure

    monkeypatch.setattr(decode, "_open_header", fail)
    with pytest.raises(SimCLRError, match="run again to retry it") as info:
        decode.open_image(path)
    assert not isinstance(info.value, BadImageError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pils_own_decoding_errors_stay_bad_images(tmp_path, monkeypatch):
    """PIL's decoding errors are OSErrors without an errno: still a bad image."""
    path = tmp_path / "a.png"
    save_image(path, rgb(8, 8))

    def fail(f):
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(decode, "_open_header", fail)
    with pytest.raises(BadImageError, match="broken data stream"):
        decode.open_image(path)


def test_an_all_nan_float_picture_decodes_black_without_numpys_warning(tmp_path):
    """A float TIFF of NaN only printed numpy's raw 'All-NaN slice encountered' from
    every process that decoded it; it reads as black, said by nothing but the picture."""
    Image.fromarray(np.full((2, 3), np.nan, dtype=np.float32), mode="F").save(tmp_path / "n.tiff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = np.asarray(open_image(tmp_path / "n.tiff"))
    assert out.shape == (2, 3, 3) and not out.any()


# ---------------------------------------------------------------------------- mutation-found gaps


def test_the_eval_store_without_a_view_size_keeps_the_central_square():
    """store 'eval' alone (no view size S): the shorter side resized to the square as
    the evaluation transform resizes (bicubic, antialiased), then its central square
    (eval_square_start of None), not its first."""
    for h, w in ((30, 50), (50, 30)):
        x = torch.from_numpy(rgb(h, w, 7)).permute(2, 0, 1)[None]
        want = _torchvision_crop(x.float(), 16, 16)
        got = fit_square_tensor(x, 16, "eval")
        assert torch.equal(got, want.round().clamp(0, 255).to(torch.uint8))
    assert decode.eval_store_size("eval:32") == 32
    for store in ("eval", "eval:", "eval:x", "full", "center:32"):  # (a foreign record's too)
        assert decode.eval_store_size(store) is None, store


def test_a_picture_resized_to_exactly_the_pixel_budget_is_resized_whole():
    """MAX_RESIZED_PIXELS is the most a picture is resized whole at: 100 x 6400 at 256 px
    is 256 x 16384 = 2**22 pixels, resized whole; a pixel longer is cut to its band."""
    from simclr.decode import MAX_RESIZED_PIXELS, central_band

    assert 256 * 16384 == MAX_RESIZED_PIXELS
    assert central_band(6400, 100, 256) is None and central_band(100, 6400, 256) is None
    assert central_band(6401, 100, 256) is not None


@pytest.mark.parametrize(("h", "w"), [(64, 642), (642, 64)])
@pytest.mark.parametrize("store", ["center", "eval:28"])
def test_a_central_bands_margin_covers_the_resize_filters_reach(monkeypatch, h, w, store):
    """The band cut around the central square keeps the pixels that the antialiased
    resize's filter reaches from the square's edge (2 taps, widened by the reduction:
    here 2x): where the band's scale and centre are the whole picture's (64 x 642 at
    32 px: 74 px resized to 37), its square is the whole picture's bit for bit, not
    some edge columns off by tens of levels (pure noise shows any pixel left out)."""
    from simclr.decode import central_band

    x = torch.from_numpy(rgb(h, w, 9)).permute(2, 0, 1)[None]
    whole = fit_square_tensor(x, 32, store)
    monkeypatch.setattr(decode, "MAX_RESIZED_PIXELS", 2**10)  # (a band at this size)
    assert central_band(w, h, 32) is not None
    assert torch.equal(fit_square_tensor(x, 32, store), whole)


@pytest.mark.parametrize("shape", [(20, 32), (32, 32), (27, 27)])
def test_a_picture_of_longer_side_exactly_32_is_stored_for_evaluation_as_a_small_one(
        tmp_path, shape):
    """Longer side <= 32 (SMALL_PICTURE) is a small picture for the evaluation
    transform (its central square resized to S x S): a 20 x 32 or 32 x 32 picture's
    stored square gives eval_resize of the file, not the large pictures' resize + crop;
    nor is one already the stored square's size (27 x 27 at S = 24) kept as it is."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_side, eval_store

    p = save_image(tmp_path / "small.png", rgb(*shape, 4))
    stored, _ = load_square(str(p), eval_side(24), store=eval_store(24))
    got = eval_resize(torch.from_numpy(stored).permute(2, 0, 1)[None], 24, central=True)[0]
    assert (got - eval_resize(Image.open(p), 24)).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_a_photo_stored_for_evaluation_keeps_enough_pixels_for_its_one_resize(tmp_path, fmt):
    """A JPEG decoded in draft mode, or a PNG box-reduced, for an evaluation source keeps
    >= 4x the stored side (600 x 800 at 32 px: all of it), so the transform's one resize
    sees nearly the file's own pixels: its view is eval_resize of the file to within a
    level (at 1x or 2x, detail at ten source pixels was 1.6-2.7 levels off, 6-12 at most)."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_side, eval_store

    coarse = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    photo = np.array(Image.fromarray(coarse).resize((800, 600), Image.Resampling.BICUBIC))
    p = save_image(tmp_path / f"photo.{fmt}", photo, **({"quality": 95} if fmt == "jpg" else {}))
    stored, _ = load_square(str(p), eval_side(32), store=eval_store(32))
    got = eval_resize(torch.from_numpy(stored).permute(2, 0, 1)[None], 32, central=True)[0]
    diff = 255 * (got - eval_resize(Image.open(p), 32)).abs()
    assert diff.mean() < 0.8 and diff.max() < 3.5


def test_a_small_pictures_stored_square_is_bordered_by_its_edge_pixels():
    """A small picture's evaluation square holds its S x S result where the centre crop
    takes it, bordered by the result's own edge pixels (no black frame for a reader of
    the stored square other than that crop)."""
    from simclr.decode import crop_offset, eval_side

    side = eval_side(24)
    x = torch.from_numpy(rgb(20, 12, 6)).permute(2, 0, 1)[None]
    square = fit_square_tensor(x, side, "eval:24")[0]
    top = crop_offset(side, 24)
    result = square[:, top:top + 24, top:top + 24]
    assert torch.equal(square[:, :top, top:top + 24], result[:, :1].expand(-1, top, -1))
    assert torch.equal(square[:, top + 24:, top:top + 24],
                       result[:, -1:].expand(-1, side - 24 - top, -1))
    assert torch.equal(square[:, top:top + 24, :top], result[:, :, :1].expand(-1, -1, top))


def test_an_evaluation_sources_squares_are_unsqueezed(tmp_path):
    """A square stored for evaluation is cut from the picture, not the picture squeezed:
    its aspect is 1 (what eval_resize(central=True) takes), by either decoder's path."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_side, eval_store

    side = eval_side(24)
    for p in (save_image(tmp_path / "wide.png", rgb(40, 60, 2)),
              save_image(tmp_path / "wide.jpg", rgb(40, 60, 2))):
        stored, aspect = load_square(str(p), side, store=eval_store(24))
        assert aspect == 1.0
        eval_resize(torch.from_numpy(stored).permute(2, 0, 1)[None], 24,
                    aspect=torch.tensor([aspect]), central=True)
    assert read_jpeg(str(tmp_path / "wide.jpg"), store=eval_store(24))[1] == 1.0


def test_device_decode_puts_each_decoded_jpeg_at_its_own_position(tmp_path):
    """A JPEG after an image the worker already decoded lands in its own row of the
    batch, the decoded image left in its row (not the JPEG written over it)."""
    good = tmp_path / "good.jpg"
    Image.fromarray(smooth_rgb(50, 50)).save(good, quality=90)
    ready = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    out, failed = decode_jpegs([ready, read_jpeg(str(good))[0]], 24, CPU)
    assert failed == [] and torch.equal(out[0], ready)
    ref = _as_chw(load_square(str(good), 24)[0]).int()
    assert (out[1].int() - ref).abs().float().mean() < 2.0


def test_a_file_whose_stat_fails_for_a_reason_that_may_pass_is_no_bad_image(tmp_path,
                                                                            monkeypatch):
    """EIO already from the file's stat (a network file system's glitch) is a failure
    that may pass, as it is from its read: not a bad image, recorded for good."""
    import errno
    import os

    path = str(save_image(tmp_path / "a.png", rgb(8, 8)))
    real = os.stat

    def glitch(p, *args, **kwargs):
        if str(p) == path:
            raise OSError(errno.EIO, "Input/output error")
        return real(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", glitch)
    with pytest.raises(decode.ReadFailure, match="Input/output error"):
        open_image(path)


def test_a_missing_file_is_a_bad_image_not_a_failure_that_may_pass(tmp_path):
    """Only the errors of a read that may succeed next time (EIO, ESTALE, ...) are
    ReadFailures; a file that is gone (ENOENT) is a bad image, recorded as one."""
    with pytest.raises(BadImageError, match="cannot read the file") as caught:
        open_image(tmp_path / "gone.png")
    assert not isinstance(caught.value, decode.ReadFailure)


def test_refusing_truncated_images_returns_the_setting_it_replaced():
    """A caller from Python gets its own LOAD_TRUNCATED_IMAGES back from the call that
    made PIL refuse truncated files (True here, not always False)."""
    from simclr.decode import pil_truncation, refuse_truncated_images

    before = pil_truncation()
    try:
        pil_truncation(True)
        assert refuse_truncated_images() is True and pil_truncation() is False
        assert refuse_truncated_images() is False and pil_truncation() is False
    finally:
        pil_truncation(before)


@pytest.mark.parametrize("orientation", [5, 7])
def test_a_transposing_exif_orientation_swaps_the_stored_aspect(tmp_path, orientation):
    """Orientations 5 and 7 (a transpose, a transverse) swap width and height as 6 and
    8 do: a 16 x 8 file so turned stands for an 8 x 16 picture."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "turned.jpg"
    Image.fromarray(smooth_rgb(8, 16)).save(p, quality=90, exif=exif.tobytes())
    assert open_image(p).size == (8, 16)
    assert load_square(str(p), 8)[1] == 8 / 16


def test_a_decoders_error_is_named_in_one_line_or_by_its_type(tmp_path, monkeypatch):
    """A decoder's message of several lines gives its first as the reason (a cache
    records one line per file); one without a message is named by its type."""
    path = save_image(tmp_path / "a.png", rgb(8, 8))
    for error, reason in ((RuntimeError("bad Huffman code\n  at byte 812"),
                           "cannot decode: bad Huffman code"),
                          (RuntimeError(), "cannot decode: RuntimeError")):
        def fail(f, error=error):
            raise error

        monkeypatch.setattr(decode, "_open_header", fail)
        with pytest.raises(BadImageError) as info:
            decode.open_image(path)
        assert info.value.reason == reason


def test_a_small_picture_stored_at_a_training_side_is_resized_as_a_large_one():
    """The S x S result bordered to eval_side(S) is only for that side: under a user's
    'eval:S' store at the training side (round(1.15 S): 28 for 24, not 27), a small
    picture's square is the shorter side resized to the side, around the centre crop."""
    x = torch.from_numpy(rgb(20, 12, 6)).permute(2, 0, 1)[None]
    want = _torchvision_crop(x.float(), 28, 28).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(fit_square_tensor(x, 28, "eval:24"), want)
