"""Decoding image files: one file on the CPU (PIL), or a batch of JPEGs on the device.

* :func:`open_image` decodes one file into an RGB PIL image, or raises
  :class:`~simclr.errors.BadImageError` with a reason, for every kind of bad file;
  :func:`load_square` adds the reduced-size decode (JPEG draft mode) and the square
  fit that every stored image goes through (the whole image squeezed, its aspect kept
  beside it, or its central square: :func:`fit_square`).
* :func:`read_jpeg` (in a loader worker) hands over the raw bytes of a plain JPEG, and
  :func:`decode_jpegs` decodes a batch of them on the training device (nvJPEG on CUDA,
  through ``torchvision.io.decode_jpeg``) and fits them to the same squares: the CPU then
  only reads files, which keeps large-image pipelines off the host (issue 3, item 2).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from simclr.config import DataConfig
from simclr.errors import NOT_REGULAR, BadImageError, SimCLRError

DEFAULT_MAX_PIXELS = DataConfig.max_pixels  # PIL's own decompression-bomb limit
# A JPEG read in draft mode is decoded at 1/2 to 1/8 of its size: one of up to 4x the
# limit is taken (108- and 200-megapixel phone photos) if what is decoded fits the limit.
JPEG_DRAFT_FACTOR = 4
# What PIL names a JPEG file: "MPO" is one with more pictures appended (Multi-Picture
# format: many cameras' and phones' photos carry their preview so), a JpegImageFile
# whose first picture, the photo, is what is read, with draft mode as any JPEG's.
JPEG_FORMATS = ("JPEG", "MPO")
EVAL_CROP_FRACTION = 0.875  # evaluation: the central 87.5% of the picture (App. B)
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
JPEG_END = b"\xff\xd9"  # EOI marker: a file without it at the end is truncated
EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # the orientations that swap width and height
RESIZE_CHUNK_ELEMENTS = 2**26  # float32 elements resized at once on the device (256 MiB)


# The errors of a read that may succeed next time (a disk's or a network file system's
# failure, a full memory or file table): no verdict on the file. PIL's own decoding
# errors are OSErrors without an errno.
PASSING_ERRNOS = frozenset(getattr(errno, name) for name in (
    "EIO", "ESTALE", "ENOMEM", "ETIMEDOUT", "EAGAIN", "EINTR", "EBUSY", "ENOBUFS",
    "EMFILE", "ENFILE", "ENOLCK", "ECONNRESET", "ECONNABORTED", "ENETDOWN",
    "ENETUNREACH", "EHOSTDOWN", "EHOSTUNREACH", "EREMOTEIO") if hasattr(errno, name))


class ReadFailure(SimCLRError):
    """A file could not be read for a reason that may pass (:data:`PASSING_ERRNOS`, a
    MemoryError): not a bad image, which a cache would record for good; a cache build
    tries the file again a few times (:data:`simclr.cache._READ_PAUSES`), then fails,
    and running it again retries the file (an uncached pass replaces the image
    this once: :func:`simclr.source.load_item`). ``reason`` says why, without the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}, a failure that may pass (not a bad "
                         "image: nothing is recorded for it); run again to retry it")
        self.path, self.reason = path, reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # (from a decoding process)
        return type(self), (self.path, self.reason)


def _read_failure(path: str, exc: BaseException) -> ReadFailure | None:
    """The :class:`ReadFailure` ``exc`` (met reading ``path``) is, or None: a bad file."""
    if isinstance(exc, MemoryError):
        what = "out of memory"
    elif isinstance(exc, OSError) and exc.errno is not None and exc.errno in PASSING_ERRNOS:
        what = f"{exc.strerror or os.strerror(exc.errno)} ({errno.errorcode[exc.errno]})"
    else:
        return None
    return ReadFailure(path, what)


def pil_truncation(truncated: bool | None = None) -> bool:
    """PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` (set to ``truncated`` where given). A
    worker process takes it from the process that starts it: a spawned one (macOS's and
    Windows' default) starts from PIL's default or whatever the caller's script sets at
    import, not from what the command (False: :func:`refuse_truncated_images`) or a
    caller from Python chose."""
    if truncated is not None:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    return bool(ImageFile.LOAD_TRUNCATED_IMAGES)


def refuse_truncated_images() -> bool:
    """Make PIL refuse truncated files (a truncated file must fail loudly, never decode
    into a grey bottom), as the command line does for each command; returns the
    setting it replaced, for a caller from Python to get back. Not done at import:
    a library caller's own ``ImageFile.LOAD_TRUNCATED_IMAGES`` is the caller's."""
    before = pil_truncation()
    pil_truncation(False)
    return before


def _composite(im: Image.Image) -> Image.Image:
    """Alpha-composite onto :data:`BACKGROUND` (how such images are meant to be seen)."""
    rgba = im.convert("RGBA")
    out = Image.new("RGB", rgba.size, BACKGROUND)
    out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return out


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float grey to 8 bit by *scaling*, not clipping.

    PIL's ``convert('L')`` clips I;16 values above 255 (a white image), so integer
    modes are read as the 16-bit range 0..65535 -> 0..255 (round(v / 257)); float
    images are taken as 0..1 when they fit, else as 0..255.
    """
    a = np.asarray(im)
    if im.mode == "F":
        a = a.astype(np.float64)
        # (all NaN: black, without numpy's raw 'All-NaN slice' warning from each worker)
        peak = 0.0 if np.isnan(a).all() else np.nanmax(a)
        a = a * 255.0 if peak <= 1.0 else a
        g = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    else:
        g = ((np.clip(a.astype(np.int64), 0, 65535) + 128) // 257).astype(np.uint8)
    return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), "RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB (palette incl. transparency, grey, CMYK, 16-bit...)."""
    mode = im.mode
    # A PNG's tRNS chunk: a palette's alphas, or the one colour of an RGB or grey image
    # that is transparent (PIL keeps it in info, not as an alpha channel).
    keyed = "transparency" in im.info
    if mode == "RGB" and not keyed:
        return im
    if mode.startswith("I") or mode == "F":
        rgb = _high_depth_to_rgb(im)
        if keyed and not isinstance(im.info["transparency"], bytes):
            clear = np.asarray(im) == im.info["transparency"]  # (before the scaling)
            pixels = np.array(rgb)
            pixels[clear] = BACKGROUND
            rgb = Image.fromarray(pixels, "RGB")
        return rgb
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or keyed:
        return _composite(im)  # (PIL's RGBA conversion turns the key into alpha 0)
    if mode == "1":
        im = im.convert("L")
    return im.convert("RGB")  # L, P, CMYK (PIL honours Adobe's inverted CMYK), YCbCr, ...


def as_rgb(im: Image.Image) -> Image.Image:
    """An opened PIL image as :func:`open_image` decodes a file: EXIF orientation
    applied, transparency composited on white, 16-bit and float scaled, any mode to
    8-bit RGB (a new image; ``im`` is left as it was)."""
    return _to_rgb(_exif_transposed(im))


@overload
def _exif_transposed(im: Image.Image, in_place: Literal[False] = ...) -> Image.Image: ...
@overload
def _exif_transposed(im: Image.Image, in_place: Literal[True]) -> None: ...
def _exif_transposed(im: Image.Image, in_place: bool = False) -> Image.Image | None:
    """``ImageOps.exif_transpose`` without PIL's warnings over a damaged EXIF block
    ("Corrupt EXIF data ...", from its TIFF reader): they name PIL's source file, not
    the image, and come in two raw lines from every loader worker. PIL reads such a
    block as far as it goes, so an orientation it holds is still applied."""
    if not im.info.get("exif") and im.format != "TIFF":  # (no EXIF block: nothing to warn
        # of, and catch_warnings would make Python repeat its once-only warnings; the
        # ignores: PIL's stubs take in_place as a Literal only)
        return ImageOps.exif_transpose(im, in_place=in_place)  # type: ignore[call-overload]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
        return ImageOps.exif_transpose(im, in_place=in_place)  # type: ignore[call-overload]


def open_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode one file into an RGB PIL image, EXIF orientation applied.

    Raises :class:`BadImageError` (path, reason) for a missing or empty file, a file
    that is no image, a truncated (see below) or corrupt one, and an image of more than
    ``max_pixels`` pixels (refused from its header, before any decoding: a
    decompression bomb). ``draft_size`` (w, h): let the JPEG decoder scale by 1/2,
    1/4 or 1/8 while keeping both sides >= the given ones (much faster for photos).

    A truncated file is refused under PIL's default (``ImageFile.LOAD_TRUNCATED_IMAGES``
    False, which every ``simclr`` command sets: :func:`refuse_truncated_images`); the
    library honours a caller's own setting, which PIL shares process-wide: where the
    caller set it True, a truncated file past its header decodes, its missing part grey.
    """
    return _decode_file(path, max_pixels, draft_size)[0]


def _decode_file(
    path: str | os.PathLike, max_pixels: int, draft_size: tuple[int, int] | None
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`open_image`'s image, and the picture's (w, h) as its header gives it, EXIF
    orientation applied: a JPEG read in draft mode is decoded with each side rounded up
    at 1/2 to 1/8, whose shape is up to a few percent off the file's."""
    path = str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _read_failure(path, exc) or BadImageError(
            path, f"cannot read the file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):  # opening a named pipe would wait forever
        raise BadImageError(path, NOT_REGULAR)
    nbytes = info.st_size
    if nbytes == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    try:
        # PIL only *warns* between its limit and twice it; a warning must refuse too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # A TIFF's damaged tags ('Tag data larger than file'), read as far as they go:
            # PIL's warnings name its own source, in raw lines from every worker.
            warnings.filterwarnings("ignore", category=UserWarning,
                                    module=r"PIL\.TiffImagePlugin")
            # The file object is ours: closing it leaves the loaded image usable, where
            # ``with Image.open(path)`` would close the image too and force a copy.
            with open(path, "rb") as f:
                im = _open_header(f)
                size = im.size
                _check_pixels(path, im, max_pixels, draft_size)
                im.load()  # decode now, inside the try: truncation raises here
                if im.getexif().get(EXIF_ORIENTATION, 1) in TURNED:  # (before the turn,
                    size = size[::-1]  # which removes the tag)
                _exif_transposed(im, in_place=True)
                return _to_rgb(im), size
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(path, f"too many pixels (decompression-bomb guard): {exc}") from None
    except Image.UnidentifiedImageError:
        raise BadImageError(path, "not an image file, or one with a damaged header (format "
                                  "not recognised)") from None
    except Exception as exc:  # any decoder failure means "bad file", but a failed read
        # or a full memory (MemoryError), which say nothing of the file
        if (failure := _read_failure(path, exc)) is not None:
            raise failure from None
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "truncated file" if "truncated" in text.lower() else "cannot decode"
        raise BadImageError(path, f"{kind}: {text}") from None


_PIL_LIMIT = threading.Lock()  # PIL's limits below are its globals

# A PNG text chunk (metadata: some editors write megabytes of XMP) that PIL reads with
# the header: up to PIL's whole-text budget (64 MiB), not its 1 MiB per chunk, so that
# a picture is never refused for its metadata.
PNG_TEXT_CHUNK = 64 * 2**20


def _open_header(f: Any) -> Image.Image:
    """``Image.open`` (the header only) without PIL's own pixel limit (simclr's, in
    :func:`_check_pixels`, is the user's to set and names the file's size) nor its
    1 MiB per PNG text chunk. PIL's limits are process globals: they are lifted, under
    a lock, only to open again a file they refused, so that any other thread's
    ``Image.open`` keeps them all but in those rare moments."""
    try:
        return Image.open(f)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, ValueError):
        f.seek(0)  # (the caller makes PIL's warning an error: it is refused here too)
    with _PIL_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK
        Image.MAX_IMAGE_PIXELS = None
        PngImagePlugin.MAX_TEXT_CHUNK = max(saved[1], PNG_TEXT_CHUNK)
        try:
            return Image.open(f)
        finally:
            Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK = saved


def _check_pixels(path: str, im: Image.Image, max_pixels: int,
                  draft_size: tuple[int, int] | None) -> None:
    """Refuse, from the header, an image whose decoding would hold more than
    ``max_pixels`` pixels; a JPEG is first put in draft mode (``draft_size``), which
    decodes a large one at a fraction of its size (:data:`JPEG_DRAFT_FACTOR`)."""
    w, h = im.size
    drafted = draft_size is not None and im.format in JPEG_FORMATS
    limit = max_pixels * (JPEG_DRAFT_FACTOR if drafted else 1)
    if w * h > limit:  # (a JPEG's limit: the most that draft mode brings within it)
        which = (f"{JPEG_DRAFT_FACTOR} x --max-pixels {max_pixels}, a JPEG being read at "
                 "reduced size" if drafted else "--max-pixels sets it")
        raise BadImageError(path, f"{w}x{h} = {w * h} pixels exceeds the limit of {limit} "
                                  f"(decompression-bomb guard; {which})")
    if drafted:
        im.draft(im.mode, draft_size)
        dw, dh = im.size
        if dw * dh > max_pixels:  # too few pixels asked for to shrink it enough
            raise BadImageError(path, f"{w}x{h} = {w * h} pixels, decoded at {dw}x{dh}, "
                                      f"exceeds the limit of {max_pixels} "
                                      "(decompression-bomb guard; --max-pixels sets it)")


def is_regular_file(path: str) -> bool:
    """A plain file (after links), not a named pipe, socket or device, whose opening
    could block forever."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def fitted_size(w: int, h: int, side: int) -> tuple[int, int]:
    """(w, h) scaled so that the shorter side is ``side`` (the square is cropped from it)."""
    scale = side / min(w, h)
    return max(side, round(w * scale)), max(side, round(h * scale))


# Past this many pixels in a picture resized before its central square is cropped
# (a 1 x 500 spacer at 256 px: 256 x 128,000, 393 MB in float32), only the central band
# of its long side is resized (:func:`central_band`).
MAX_RESIZED_PIXELS = 2**22


def central_band(w: int, h: int, side: int) -> tuple[int, int, int, int] | None:
    """(left, top, width, height) of the part of a w x h picture that its central square
    at ``side`` (shorter side resized to ``side``, then cropped) is made of, with a
    margin for the resize filter's reach; None where resizing it whole stays under
    MAX_RESIZED_PIXELS. Only pictures of extreme shape (aspect past 64 at 256 px) are
    cut: their square then matches the whole picture's to within a fraction of a pixel
    of position (the long side's scale is rounded on the band), not bit for bit."""
    short, long = min(w, h), max(w, h)
    if side * long / short <= MAX_RESIZED_PIXELS / side:
        return None
    margin = 2 * max(1, -(-short // side)) + 1  # (bicubic: 2 taps, widened when reducing)
    keep = min(long, short + 2 * margin)
    keep += (long - keep) % 2  # (an even margin each side: a band centred on the picture,
    # as the crop taken from it assumes; half a source pixel off was a few resized ones)
    start = (long - keep) // 2
    return (start, 0, keep, h) if w > h else (0, start, w, keep)


def stored_aspect(w: int, h: int, store: str) -> float:
    """Width / height of the picture a stored square stands for: the image's own with
    ``store='full'`` (the square is the whole image, squeezed), 1 with 'center' and
    'eval' (the square is cut from the picture, unsqueezed)."""
    return w / h if store == "full" else 1.0


# The evaluation transform resizes a picture of side <= this to the view side with no
# centre crop (its central square; all of a CIFAR image: simclr.augment.eval_resize).
SMALL_PICTURE = 32


def eval_store(size: int) -> str:
    """The ``store`` of an evaluation source for views of side ``size``: each picture
    kept as that transform's first steps leave it (:func:`fit_square_tensor`)."""
    return f"eval:{size}"


def eval_store_size(store: str) -> int | None:
    """The view side of an :func:`eval_store` (None: another store, or 'eval' alone)."""
    kind, _, size = store.partition(":")
    return int(size) if kind == "eval" and size.isdigit() else None


def is_eval_store(store: str) -> bool:
    return store.partition(":")[0] == "eval"


def eval_side(size: int) -> int:
    """Shorter side the evaluation transform resizes a picture to before its centre crop
    of ``size`` x ``size``: round(size / 0.875) (App. B: 224 from 256)."""
    return round(size / EVAL_CROP_FRACTION)


def crop_offset(length: int, crop: int) -> int:
    """torchvision's centre-crop start along a side of ``length`` px for a crop of
    ``crop``: int(round((length - crop) / 2.0)), half-pixel offsets rounded to even."""
    return int(round((length - crop) / 2.0))


def eval_square_start(length: int, side: int, size: int | None) -> int:
    """Start, along a side of ``length`` px of a picture resized to shorter side ``side``,
    of an evaluation source's stored square (side x side): where its centre crop of
    ``size`` (at crop_offset(side, size)) is the picture's single centre crop of ``size``
    (at crop_offset(length, size): App. B's resize + centre crop, as torchvision's
    CenterCrop on the resized file). The central square, then its centre crop, rounds
    the half-pixel offset twice: a pixel off along the long side for half the shapes
    wherever side - size is not a multiple of 4 (32 px views: 37 - 32). ``size`` None
    (store 'eval' alone): the central square. In [0, length - side] for length >= side."""
    if size is None:
        return crop_offset(length, side)
    return crop_offset(length, size) - crop_offset(side, size)


def fit_square(im: Image.Image, side: int, store: str = "full") -> Image.Image:
    """The stored square (side x side) of an image.

    ``store='full'``: the whole image resized to the square (non-square images
    squeezed; :func:`stored_aspect` keeps their shape, so the augmentation draws its
    crops on the whole picture with their true aspect, as RandomResizedCrop on the
    file would). 'center': the shorter side resized to ``side``, the central square
    cropped (what many pipelines store; crops then never reach the long side's ends).
    Bilinear with antialiasing (PIL's resize always filters over the whole footprint),
    as torchvision's Resize: this is the storage step before the augmentation's own
    crop and resize, and bicubic here cost 1.6x the time for no visible difference.
    """
    w, h = im.size
    if (w, h) == (side, side):
        return im
    if store == "full":
        return im.resize((side, side), Image.Resampling.BILINEAR)
    band = central_band(w, h, side)
    if band is not None:
        left, top, bw, bh = band
        im, (w, h) = im.crop((left, top, left + bw, top + bh)), (bw, bh)
    nw, nh = fitted_size(w, h, side)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - side) // 2, (nh - side) // 2
    return im.crop((left, top, left + side, top + side))


# An evaluation store's JPEGs are decoded at this many times its side, at least (below)
EVAL_DRAFT = 4


def draft_side(side: int, store: str) -> int:
    """The side :func:`load_square` decodes a JPEG at, at least (draft mode), for a
    square of ``side`` in ``store``: 4x an evaluation store's, the side itself else."""
    return EVAL_DRAFT * side if is_eval_store(store) else side


def load_square(
    path: str, side: int, max_pixels: int = DEFAULT_MAX_PIXELS, store: str = "full"
) -> tuple[np.ndarray, float]:
    """Decode ``path`` at reduced size: (uint8 (side, side, 3), its :func:`stored_aspect`)."""
    # Draft mode keeps both sides >= side: enough for training's squares. Evaluation's
    # decodes at 4x that, so its one resize sees nearly the file's own pixels (features
    # 0.1-0.2% from the transform of the fully decoded file, as without draft; 0.5% at 2x).
    draft = draft_side(side, store)
    im, size = _decode_file(path, max_pixels, draft_size=(draft, draft))
    aspect = stored_aspect(*size, store)  # (the file's, not its reduced decode's)
    if is_eval_store(store):
        factor = min(im.size) // (EVAL_DRAFT * side)  # PNG, TIFF, ...: no draft mode; a box
        if factor >= 2:  # reduction keeps >= 4x side and bounds the float copy below
            # The whole picture onto the whole reduced one (Image.reduce's last row and
            # column average a partial box, then taken for a full one: the picture came
            # out stretched, 4.9 levels off eval_resize of a 1918 x 1079 PNG at 32 px)
            w, h = im.size
            im = im.resize((round(w / factor), round(h / factor)), Image.Resampling.BOX)
        array = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
        return fit_square_tensor(array[None], side, store)[0].permute(1, 2, 0).numpy(), aspect
    return np.array(fit_square(im, side, store), dtype=np.uint8), aspect  # writable, for torch


# ---------------------------------------------------------------------------- JPEG on the device

def read_jpeg(
    path: str, max_pixels: int = DEFAULT_MAX_PIXELS, store: str = "full"
) -> tuple[torch.Tensor, float] | None:
    """(raw bytes (L,) uint8, :func:`stored_aspect`) of a JPEG the device decoder can
    take as it is (a camera's Multi-Picture file: its photo's, :func:`_primary_image`),
    or None.

    None (decode with :func:`load_square` instead, which also names what is wrong) for
    anything else: not a JPEG, CMYK or other unusual modes, an EXIF rotation (the device
    decoder ignores it), more than ``max_pixels`` pixels, a missing end marker
    (truncated), an unreadable header. Only the header is parsed here: cheap in a worker.
    """
    if not is_regular_file(path):  # load_square names what it is
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if im.format not in JPEG_FORMATS or im.mode not in ("RGB", "L"):
                    return None
                w, h = im.size
                if w * h > max_pixels or im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                    return None
                data = _primary_image(im, data)
        if not data.endswith(JPEG_END):
            return None
    except Exception:  # whatever it is, the PIL path will say it properly
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), stored_aspect(w, h, store)


def _primary_image(im: Image.Image, data: bytes) -> bytes:
    """The bytes of the picture PIL reads of a JPEG file: all of them, or a Multi-Picture
    file's first picture (:data:`JPEG_FORMATS`), which ends where its index says (b""
    where the index says nonsense). The device decoder gets that alone: libjpeg stops at
    the first picture's end, but what nvJPEG makes of the bytes after is not known; and
    the end marker checked is the photo's, not the preview's (one cut short is PIL's)."""
    if im.format != "MPO":
        return data
    size = im.mpinfo[0xB002][0]["Size"]  # type: ignore[attr-defined]  # (the first entry's)
    return data[:size] if 0 < size <= len(data) else b""


def _decode_list(blobs: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG bytes into RGB uint8 (3, h, w) on ``device``; None where one fails.

    One batched call (what nvJPEG is fast at); if it fails, which it does as a whole
    for a single bad file, each file again on its own to find the culprits.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    if not blobs:
        return []
    if device.type == "cuda":
        # torchvision allocates the output on this stream but decodes on a stream of its
        # own that does not wait for this one: a block freed by kernels still queued here
        # (the last step's) could be written under them (pytorch/vision PR #9606). The
        # decoder syncs the host itself; this sync adds the wait for the queued step.
        torch.cuda.current_stream(device).synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision >= 0.29 flags its decoders deprecated
        try:
            return list(decode_jpeg(list(blobs), mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out: list[torch.Tensor | None] = []
            for blob in blobs:
                try:
                    out.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out


def fit_square_tensor(images: torch.Tensor, side: int, store: str = "full") -> torch.Tensor:
    """:func:`fit_square` for a batch of equal-sized uint8 (B, 3, h, w): (B, 3, side, side).

    ``store='eval:S'`` (:func:`eval_store`): the first steps of the evaluation transform
    (:func:`simclr.augment.eval_resize`, with the same torchvision calls): the shorter
    side resized to ``side`` (bicubic, antialiased), then the square around the
    transform's single centre crop of S (:func:`eval_square_start`). A small
    picture (side <= :data:`SMALL_PICTURE`), whose central square that transform resizes
    to S x S and no more, is stored so: that S x S square where the evaluation's centre
    crop takes it from ``side`` = eval_side(S), the border its edge pixels (cropped
    away), so that its features are those of ``eval_resize`` of the file whatever else
    the folder holds.
    """
    h, w = images.shape[-2:]
    small = max(h, w) <= SMALL_PICTURE  # (of the whole picture, not of a band cut below)
    if (h, w) == (side, side) and not (is_eval_store(store) and small):
        return images  # (a small picture's square is its S x S result, bordered: below)
    band = None if store == "full" or small else central_band(w, h, side)
    if band is not None:
        left, top, bw, bh = band
        images, (h, w) = images[..., top:top + bh, left:left + bw], (bh, bw)
    if is_eval_store(store):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as tvf

        size = eval_store_size(store)
        if size is not None and small and side == eval_side(size):
            short = min(h, w)
            x = tvf.resize(tvf.center_crop(images.float(), [short, short]), [size, size],
                           interpolation=InterpolationMode.BICUBIC,
                           antialias=True).round_().clamp_(0, 255)
            top = crop_offset(side, size)  # (where the centre crop takes it from)
            x = F.pad(x, (top, side - size - top, top, side - size - top), mode="replicate")
            return x.to(torch.uint8)
        x = tvf.resize(images.float(), [side], interpolation=InterpolationMode.BICUBIC,
                       antialias=True)
        top, left = (eval_square_start(n, side, size) for n in x.shape[-2:])
        x = x[..., top:top + side, left:left + side]
        return x.round_().clamp_(0, 255).to(torch.uint8)
    nw, nh = (side, side) if store == "full" else fitted_size(w, h, side)
    if (nw, nh) != (w, h):
        resized = F.interpolate(images.float(), size=(nh, nw), mode="bilinear",
                                align_corners=False, antialias=True)
        images = resized.round_().clamp_(0, 255).to(torch.uint8)
    top, left = (nh - side) // 2, (nw - side) // 2
    return images[:, :, top:top + side, left:left + side]


def decode_jpegs(
    payloads: Sequence[torch.Tensor], side: int, device: torch.device, store: str = "full"
) -> tuple[torch.Tensor, list[int]]:
    """A batch for training: uint8 (B, 3, side, side) on ``device``, and the failures.

    ``payloads[k]`` is JPEG bytes (L,) from :func:`read_jpeg` or an image the worker
    already decoded, uint8 (3, side, side). Equal-sized images are resized together.
    Positions whose bytes did not decode are returned (their rows are left zero) for
    the caller to replace through the PIL path.
    """
    out = torch.zeros((len(payloads), 3, side, side), dtype=torch.uint8, device=device)
    raw = [k for k, p in enumerate(payloads) if p.dim() == 1]
    for k, p in enumerate(payloads):
        if p.dim() == 3:
            out[k] = p.to(device, non_blocking=True)
    decoded = _decode_list([payloads[k] for k in raw], device)
    failed = [k for k, im in zip(raw, decoded, strict=True) if im is None]
    by_size: dict[tuple[int, ...], list[int]] = {}
    for pos, im in enumerate(decoded):
        if im is not None:
            by_size.setdefault(tuple(im.shape[-2:]), []).append(pos)
    for (h, w), members in by_size.items():
        # Bounded chunks: a batch of equal-sized 12-megapixel photos in float32 would
        # otherwise take tens of GiB at once.
        step = max(1, RESIZE_CHUNK_ELEMENTS // (3 * h * w))
        for c in range(0, len(members), step):
            chunk = members[c:c + step]
            # (by_size holds only the positions that decoded)
            fitted = fit_square_tensor(torch.stack([decoded[m] for m in chunk]), side, store)  # type: ignore[misc]
            out[[raw[m] for m in chunk]] = fitted
    return out, failed
