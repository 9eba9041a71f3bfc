"""Image data for pretraining and evaluation: scanning, robust decoding, cache, loader.

SimCLR (Chen et al. 2020, Sec. 2.1, App. A) draws two random views of every image of
a batch; here the loader only delivers the *stored* images as uint8 tensors
(B, 3, H, W) and ``simclr.augment`` makes the views (on the GPU when there is one).

* :func:`scan_folder` lists an ImageFolder tree (class sub-folders) or a flat folder.
* :func:`open_image` decodes one file into an RGB PIL image, or raises
  :class:`~simclr.errors.BadImageError` with a reason, for every kind of bad file.
* Small images (side <= 96, e.g. CIFAR) are decoded once into a uint8 ``.npy`` memmap
  of shape (N, L, L, 3) under ``cfg.cache_dir``; large ones are decoded per epoch in
  DataLoader workers at reduced size (JPEG draft mode).
* :class:`ImageSource` is the uniform view of a data set; :class:`BatchLoader` iterates
  one epoch of it: deterministic permutation from (seed, epoch), rank shards, exact
  resume at a step, background prefetch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import queue
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from simclr.config import DataConfig
from simclr.errors import BadImageError, SimCLRError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
)
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb limit (~ 0.25 GiB of RGBA)
SMALL_SIDE = 96  # images up to this side are cached decoded (cfg.cache = 'auto')
LOAD_SCALE = 1.15  # uncached images are stored at round(view size * 1.15)
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
CACHE_VERSION = 1  # bump when the cache layout or the decoding changes
NAMED_DATASETS = ("cifar10", "cifar100", "stl10")
MAX_SUBSTITUTES = 64  # next images tried in place of an unreadable one
_CHUNK = 256  # images per decoding task

# Truncated files must fail loudly, never decode into grey bottoms.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def default_workers() -> int:
    """Decoding processes when ``cfg.workers`` is None: the CPUs, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------------------- folders

@dataclass
class ImageList:
    """The files of an image folder. ``labels`` (N,) int64; -1 for a flat folder."""

    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    root: str = ""


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_under(folder: str) -> list[str]:
    """Every image file below ``folder`` (recursive, hidden entries skipped, sorted)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        found.extend(
            os.path.join(dirpath, f) for f in sorted(filenames) if _visible(f) and _is_image_name(f)
        )
    return found


def scan_folder(path: str | os.PathLike) -> ImageList:
    """List the images of an ImageFolder tree or a flat folder.

    ImageFolder: every visible sub-folder is a class, label = position in sorted class
    names (as torchvision's ImageFolder), images searched recursively inside it.
    Flat: images directly in ``path``, labels -1, no classes. Hidden files are ignored.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise SimCLRError(f"data folder not found: {root}")
    if not root.is_dir():
        raise SimCLRError(f"data path is not a folder: {root}")
    entries = sorted(e for e in os.listdir(root) if _visible(e))
    if not entries:
        raise SimCLRError(f"data folder is empty: {root}")
    root_s = os.path.abspath(root)
    subdirs = [e for e in entries if os.path.isdir(os.path.join(root_s, e))]
    loose = [os.path.join(root_s, e) for e in entries
             if _is_image_name(e) and os.path.isfile(os.path.join(root_s, e))]
    per_class = {d: _images_under(os.path.join(root_s, d)) for d in subdirs}
    if any(per_class.values()):
        if loose:
            log.warning("%s: %d image(s) outside the class folders are ignored", root, len(loose))
        empty = [d for d, files in per_class.items() if not files]
        if empty:
            log.warning("%s: class folder(s) without images: %s", root, ", ".join(empty))
        paths = [p for d in subdirs for p in per_class[d]]
        labels = np.concatenate(
            [np.full(len(per_class[d]), k, dtype=np.int64) for k, d in enumerate(subdirs)]
        )
        return ImageList(paths, labels, list(subdirs), root_s)
    if loose:
        return ImageList(loose, np.full(len(loose), -1, dtype=np.int64), [], root_s)
    exts = " ".join(sorted(IMAGE_EXTENSIONS))
    raise SimCLRError(f"no images found in {root} (looked for {exts}, also in sub-folders)")


# ---------------------------------------------------------------------------- decoding

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
        a = a * 255.0 if np.nanmax(a) <= 1.0 else a
        g = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    else:
        g = ((np.clip(a.astype(np.int64), 0, 65535) + 128) // 257).astype(np.uint8)
    return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), "RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB (palette incl. transparency, grey, CMYK, 16-bit...)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    ):
        return _composite(im)
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(im)
    if mode == "1":
        im = im.convert("L")
    return im.convert("RGB")  # L, P, CMYK (PIL honours Adobe's inverted CMYK), YCbCr, ...


def open_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode one file into an RGB PIL image, EXIF orientation applied.

    Raises :class:`BadImageError` (path, reason) for a missing or empty file, a file
    that is no image, a truncated or corrupt one, and an image of more than
    ``max_pixels`` pixels (refused from its header, before any decoding: a
    decompression bomb). ``draft_size`` (w, h): let the JPEG decoder scale by 1/2,
    1/4 or 1/8 while keeping both sides >= the given ones (much faster for photos).
    """
    path = str(path)
    try:
        nbytes = os.path.getsize(path)
    except OSError as exc:
        raise BadImageError(path, f"cannot read the file ({exc.strerror})") from None
    if nbytes == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    try:
        # PIL only *warns* between its limit and twice it; a warning must refuse too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise BadImageError(
                        path, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                        "(decompression-bomb guard)")
                if draft_size is not None and im.format == "JPEG":
                    im.draft(im.mode, draft_size)
                im.load()  # decode now, inside the try: truncation raises here
                ImageOps.exif_transpose(im, in_place=True)
                rgb = _to_rgb(im)
                # Leaving ``with`` closes ``im``; an image returned unchanged needs a copy.
                return im.copy() if rgb is im else rgb
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(path, f"too many pixels (decompression-bomb guard): {exc}") from None
    except Image.UnidentifiedImageError:
        raise BadImageError(path, "not an image file (format not recognised)") from None
    except Exception as exc:  # any decoder failure means "bad file"
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "truncated file" if "truncated" in text.lower() else "cannot decode"
        raise BadImageError(path, f"{kind}: {text}") from None


def fit_square(im: Image.Image, side: int) -> Image.Image:
    """Resize the shorter side to ``side`` (bicubic, antialiased) and center-crop a square."""
    w, h = im.size
    if (w, h) == (side, side):
        return im
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - side) // 2, (nh - side) // 2
    return im.crop((left, top, left + side, top + side))


def load_square(path: str, side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` at reduced size and return it as uint8 (side, side, 3)."""
    im = open_image(path, max_pixels, draft_size=(side, side))
    return np.array(fit_square(im, side), dtype=np.uint8)  # writable, for torch


def _decode_chunk(task: tuple[str | None, int, list[str], int, int]) -> list[tuple[int, str]]:
    """Pool task: decode ``paths`` into rows start.. of the .npy at ``target`` (None:
    only check them). Returns (index, reason) of the bad ones."""
    target, start, paths, side, max_pixels = task
    rows = np.load(target, mmap_mode="r+") if target is not None else None
    bad: list[tuple[int, str]] = []
    for k, path in enumerate(paths):
        try:
            arr = load_square(path, side, max_pixels)
        except BadImageError as exc:
            bad.append((start + k, exc.reason))
            continue
        if rows is not None:
            rows[start + k] = arr
    if rows is not None:
        rows.flush()
    return bad


def _decode_all(
    paths: Sequence[str], side: int, max_pixels: int, workers: int, target: str | None,
    what: str,
) -> list[tuple[int, str]]:
    """Decode every file in parallel processes (PIL decoding is CPU- and GIL-bound for
    small files), logging progress; returns the sorted (index, reason) of bad files."""
    tasks = [(target, s, list(paths[s:s + _CHUNK]), side, max_pixels)
             for s in range(0, len(paths), _CHUNK)]
    bad: list[tuple[int, str]] = []
    start, last_report, done = time.perf_counter(), time.perf_counter(), 0
    log.info("%s: %d images with %d process(es)", what, len(paths), workers)

    def account(result: list[tuple[int, str]], n: int) -> None:
        nonlocal last_report, done
        bad.extend(result)
        done += n
        if time.perf_counter() - last_report > 5.0:
            last_report = time.perf_counter()
            log.info("%s: %d/%d (%.0f s)", what, done, len(paths), last_report - start)

    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            account(_decode_chunk(task), len(task[2]))
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ctx.Pool(min(workers, len(tasks))) as pool:
            for task, result in zip(tasks, pool.imap(_decode_chunk, tasks), strict=True):
                account(result, len(task[2]))
    log.info("%s: done in %.1f s, %d bad", what, time.perf_counter() - start, len(bad))
    return sorted(bad)


# ---------------------------------------------------------------------------- cache

def _cache_key(images: ImageList, side: int, max_pixels: int) -> str:
    """Hash of (relative paths, sizes, mtimes, side, limits, format version)."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, side, max_pixels]).encode())
    for p in images.paths:
        try:
            st = os.stat(p)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{os.path.relpath(p, images.root)}\0{stamp}\n".encode())
    return h.hexdigest()[:20]


def _write_json_atomic(data: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_cache(
    npy: Path, meta_path: Path, shape: tuple[int, ...]
) -> tuple[np.ndarray, dict] | None:
    """The cache if both files exist and agree; None means "build it"."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        rows = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable cache %s (%s); rebuilding", npy, exc)
        return None
    if meta.get("version") != CACHE_VERSION or rows.shape != shape or rows.dtype != np.uint8:
        return None
    return rows, meta


def build_cache(
    images: ImageList, side: int, cache_dir: str | os.PathLike, workers: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], Path]:
    """Decode every image once into a (N, side, side, 3) uint8 memmap, or reuse it.

    Returns (rows memmap (N, side, side, 3), kept indices (K,) int64, skipped
    [(path, reason)], the .npy path). Rows of skipped files stay zero. The .npy is
    written to a temporary name, fsynced and renamed, then the JSON sidecar the same
    way, so an interrupted build never leaves a cache that would be trusted.
    """
    folder = Path(cache_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimCLRError(f"cannot create the cache folder {folder}: {exc.strerror}; "
                          "pass --cache-dir or --cache off") from None
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(images.root).name)
    stem = f"{base or 'images'}-{side}px-{_cache_key(images, side, max_pixels)}"
    npy, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    shape = (len(images.paths), side, side, 3)
    found = _read_cache(npy, meta_path, shape)
    if found is not None:
        rows, meta = found
        log.info("using the decoded cache %s", npy)
    else:
        rows, meta = _build_cache_files(images, side, npy, meta_path, shape, workers, max_pixels)
    skipped = [(images.paths[i], reason) for i, reason in meta["skipped"]]
    return rows, np.asarray(meta["kept"], dtype=np.int64), skipped, npy


def _build_cache_files(
    images: ImageList, side: int, npy: Path, meta_path: Path, shape: tuple[int, ...],
    workers: int, max_pixels: int,
) -> tuple[np.ndarray, dict]:
    tmp = npy.with_name(f"{npy.name}.tmp-{os.getpid()}")
    nbytes = math.prod(shape)
    try:
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        del rows
        # Reserve the blocks now: a full disk then fails here with ENOSPC instead of
        # killing the process with SIGBUS when a memmap page is written.
        with open(tmp, "r+b") as f:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        what = f"decoding {images.root} into the cache"
        bad = _decode_all(images.paths, side, max_pixels, workers, str(tmp), what)
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        os.replace(tmp, npy)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SimCLRError(f"cannot write the decoded cache {npy} ({nbytes / 2**20:.0f} MiB): "
                          f"{exc.strerror or exc}; pass --cache-dir or --cache off") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    bad_set = {i for i, _ in bad}
    meta = {
        "version": CACHE_VERSION, "root": images.root, "side": side, "num_files": shape[0],
        "kept": [i for i in range(shape[0]) if i not in bad_set],
        "skipped": [[i, reason] for i, reason in bad],
    }
    _write_json_atomic(meta, meta_path)
    return np.load(npy, mmap_mode="r"), meta


# ---------------------------------------------------------------------------- sources

class ImageSource:
    """A data set as training and evaluation see it.

    Cached (in-memory or memmap array): ``get_batch`` gathers rows. Uncached (image
    folder of large images): files decoded at ``image_hw`` in DataLoader workers
    (:meth:`dataset`). ``labels`` (N,) int64 (-1 = unlabeled); ``paths`` the files
    (empty for in-memory data sets); ``skipped`` [(path, reason)] of unreadable files.
    """

    def __init__(
        self, name: str, labels: np.ndarray, classes: Sequence[str], *,
        array: np.ndarray | None = None, layout: str = "nhwc", rows: np.ndarray | None = None,
        paths: Sequence[str] = (), side: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
        skipped: list[tuple[str, str]] | None = None,
    ) -> None:
        self.name = name
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.paths = list(paths)
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self.max_pixels = max_pixels
        self.workers = default_workers() if workers is None else workers
        self._array, self._layout, self._rows = array, layout, rows
        if array is not None:
            h, w = array.shape[1:3] if layout == "nhwc" else array.shape[2:4]
            self.image_hw = (int(h), int(w))
        elif side is not None:
            self.image_hw = (side, side)
        else:
            raise ValueError("an uncached ImageSource needs a side")
        self._bad_seen = {p for p, _ in self.skipped}
        self._loaders: dict[tuple, tuple[torch.utils.data.DataLoader, _EpochBatches]] = {}

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return self.num_images

    @property
    def cached(self) -> bool:
        return self._array is not None

    def __repr__(self) -> str:
        kind = "cached" if self.cached else "decoded per epoch"
        h, w = self.image_hw
        return f"ImageSource({self.name}: {self.num_images} images {h}x{w}, {kind})"

    def get_batch(self, indices: np.ndarray | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """uint8 (B, 3, H, W) CPU tensor of the images at ``indices`` (B,)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self._array is None:
            ds = self.dataset(report=True)
            items = [ds[int(i)] for i in idx]
            for _, _, bad, reason in items:
                if bad >= 0:
                    self._note_bad(bad, reason)
            if not items:
                return torch.empty((0, 3, *self.image_hw), dtype=torch.uint8)
            return torch.stack([t for t, *_ in items])
        rows = self._rows[idx] if self._rows is not None else idx
        # Memmaps read fastest in file order: gather sorted rows, then restore order.
        order = np.argsort(rows, kind="stable")
        gathered = np.empty((len(rows), *self._array.shape[1:]), dtype=np.uint8)
        gathered[order] = self._array[rows[order]]
        out = torch.from_numpy(gathered)
        return out.permute(0, 3, 1, 2).contiguous() if self._layout == "nhwc" else out

    def dataset(self, report: bool = False) -> torch.utils.data.Dataset:
        """Map-style dataset of (uint8 (3, H, W), index) for DataLoader workers.

        An unreadable file is replaced by the next readable one ((i + k) mod N,
        deterministic) and the *substitute's* index is returned, so (image, index,
        label) stay consistent. ``report=True`` adds (bad index or -1, reason).
        """
        # A detached copy: the dataset must not point back at this source, whose
        # cached DataLoaders point at the dataset (a cycle would leave the workers to
        # the garbage collector, whose shutdown of them stalls for seconds).
        return _SourceDataset(self._detached(), report)

    def _detached(self) -> ImageSource:
        return ImageSource(
            self.name, self.labels, self.classes, array=self._array, layout=self._layout,
            rows=self._rows, paths=self.paths, side=self.image_hw[0],
            max_pixels=self.max_pixels, workers=self.workers)

    def close(self) -> None:
        """Stop the persistent decoding workers (they also stop when the source is freed)."""
        self._loaders.clear()

    def subset(self, indices: np.ndarray | Sequence[int], name: str | None = None) -> ImageSource:
        """The images at ``indices`` (e.g. a class-balanced subset, a split)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        rows = None
        if self._array is not None:
            rows = self._rows[idx] if self._rows is not None else idx
        return ImageSource(
            name or f"{self.name}[subset]", self.labels[idx], self.classes, array=self._array,
            layout=self._layout, rows=rows,
            paths=[self.paths[i] for i in idx] if self.paths else (),
            side=self.image_hw[0], max_pixels=self.max_pixels, workers=self.workers,
        )

    def skip_summary(self, limit: int = 10) -> str:
        """One line per skipped file (at most ``limit``), for the log and the summary."""
        if not self.skipped:
            return f"{self.name}: no images skipped"
        lines = [f"{self.name}: skipped {len(self.skipped)} unreadable image(s):"]
        lines += [f"  {p}: {r}" for p, r in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)

    def _note_bad(self, index: int, reason: str) -> None:
        path = self.paths[index]
        if path not in self._bad_seen:
            self._bad_seen.add(path)
            self.skipped.append((path, reason))
            log.warning("skipped %s: %s (another image was used in its place)", path, reason)

    def _worker_loader(
        self, workers: int, pin: bool
    ) -> tuple[torch.utils.data.DataLoader, _EpochBatches]:
        """One DataLoader per (workers, pin), kept so its workers persist across epochs."""
        key = (workers, pin)
        if key not in self._loaders:
            sampler = _EpochBatches()
            extra: dict[str, Any] = {}
            if workers > 0:
                extra = {"persistent_workers": True, "prefetch_factor": 4}
            loader = torch.utils.data.DataLoader(
                self.dataset(report=True), batch_sampler=sampler, num_workers=workers,
                pin_memory=pin, **extra)
            self._loaders[key] = (loader, sampler)
        return self._loaders[key]


class _SourceDataset(torch.utils.data.Dataset):
    def __init__(self, source: ImageSource, report: bool) -> None:
        self.source, self.report = source, report

    def __len__(self) -> int:
        return self.source.num_images

    def __getitem__(self, i: int) -> tuple:
        src, n = self.source, self.source.num_images
        if src.cached:
            out: tuple = (src.get_batch([i])[0], i)
            return out + (-1, "") if self.report else out
        first_reason = ""
        for k in range(min(n, MAX_SUBSTITUTES)):
            j = (i + k) % n
            try:
                arr = load_square(src.paths[j], src.image_hw[0], src.max_pixels)
            except BadImageError as exc:
                first_reason = first_reason or exc.reason
                continue
            image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            out = (image, j)
            return out + ((i if k else -1), first_reason) if self.report else out
        raise SimCLRError(f"{MAX_SUBSTITUTES} images in a row from {src.paths[i]} are "
                          f"unreadable (first: {first_reason}); check the data folder")


class _EpochBatches(torch.utils.data.Sampler):
    """A batch sampler whose batches are replaced before each epoch (persistent workers)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _probe_sizes(paths: Sequence[str], count: int = 64) -> list[tuple[int, int]]:
    """(w, h) read from the headers of up to ``count`` evenly spread files."""
    picks = sorted({round(k * (len(paths) - 1) / max(count - 1, 1)) for k in range(count)})
    sizes = []
    for k in picks:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(paths[k]) as im:
                    sizes.append(im.size)
        except Exception:  # a bad file says nothing about the others
            continue
    return sizes


def _split_folder(root: Path, train: bool) -> Path:
    """A data set root holding train/ and test/ (or val/) picks the split."""
    try:
        subdirs = {e.name for e in root.iterdir() if e.is_dir() and _visible(e.name)}
    except OSError:
        return root
    tests = [s for s in ("test", "val", "validation") if s in subdirs]
    if "train" in subdirs and tests and subdirs <= {"train", "test", "val", "validation"}:
        chosen = root / ("train" if train else tests[0])
        log.info("%s holds splits; using %s", root, chosen)
        return chosen
    return root


def open_folder(
    path: str | os.PathLike, cfg: DataConfig, train: bool = True, image_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageSource:
    """An image folder as a cached (small images) or per-epoch decoded source."""
    root = Path(path).expanduser()
    if root.is_dir():
        root = _split_folder(root, train)
    images = scan_folder(root)
    workers = default_workers() if cfg.workers is None else cfg.workers
    sizes = _probe_sizes(images.paths)
    small = bool(sizes) and max(max(s) for s in sizes) <= SMALL_SIDE
    train_side = round(image_size * LOAD_SCALE)
    counts = Counter(min(s) for s in sizes)
    common = max(counts, key=lambda s: (counts[s], s)) if counts else None
    if cfg.cache == "on" or (cfg.cache == "auto" and small):
        side = cfg.load_size or (common if small else min(common or train_side, train_side))
        rows, kept, skipped, _ = build_cache(images, side, cfg.cache_dir, workers, max_pixels)
        if cfg.strict and skipped:
            raise SimCLRError(f"--strict: bad image {skipped[0][0]}: {skipped[0][1]}")
        if len(kept) == 0:
            raise SimCLRError(f"none of the {len(images.paths)} images in {root} could be read "
                              f"(first: {skipped[0][0]}: {skipped[0][1]})")
        return ImageSource(
            str(root), images.labels[kept], images.classes, array=rows,
            rows=None if len(kept) == len(images.paths) else kept,
            paths=[images.paths[i] for i in kept], max_pixels=max_pixels, workers=workers,
            skipped=skipped)
    side = cfg.load_size or train_side
    if cfg.strict:
        what = f"--strict: checking {root}"
        bad = _decode_all(images.paths, side, max_pixels, workers, None, what)
        if bad:
            raise SimCLRError(f"--strict: bad image {images.paths[bad[0][0]]}: {bad[0][1]}")
    return ImageSource(str(root), images.labels, images.classes, paths=images.paths, side=side,
                       max_pixels=max_pixels, workers=workers)


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 (1797, 3, 32, 32) and labels (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x.numpy(), digits.target.astype(np.int64)


def digits_source() -> ImageSource:
    """All 1797 digits (the pretraining set when no data is given)."""
    images, labels = _digits_images()
    return ImageSource("digits", labels, [str(d) for d in range(10)], array=images,
                       layout="nchw")


def digits_split(seed: int = 0, train_size: int = 1200) -> tuple[ImageSource, ImageSource]:
    """Deterministic (train, test) split of the digits for kNN / linear evaluation.

    A permutation of the 1797 images by ``np.random.default_rng(seed)``; the first
    ``train_size`` are the train split, the other 597 the test split (each sorted).
    """
    full = digits_source()
    perm = np.random.default_rng(seed).permutation(full.num_images)
    train_idx, test_idx = np.sort(perm[:train_size]), np.sort(perm[train_size:])
    return (full.subset(train_idx, "digits[train]"), full.subset(test_idx, "digits[test]"))


def _open_named(name: str, cfg: DataConfig, train: bool) -> ImageSource:
    """CIFAR-10/100 or STL-10 through torchvision; downloads only with cfg.download."""
    import torchvision.datasets as tvd

    root = Path(cfg.root).expanduser()
    if name == "stl10":
        split = "train+unlabeled" if train else "test"
        make = functools.partial(tvd.STL10, str(root), split=split)
    else:
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        make = functools.partial(cls, str(root), train=train)
    try:
        ds = make(download=False)
    except RuntimeError:
        if not cfg.download:
            raise SimCLRError(f"{name} not found under {root}; add --download (needs internet) "
                              "or pass an image folder") from None
        try:
            ds = make(download=True)
        except Exception as exc:  # urllib, socket, checksum errors
            raise SimCLRError(f"could not download {name} into {root}: {exc} (offline? copy it "
                              "there by hand or pass an image folder)") from None
    split_name = f"{name}[{'train' if train else 'test'}]"
    if name == "stl10":
        return ImageSource(split_name, np.asarray(ds.labels), ds.classes,
                           array=np.ascontiguousarray(ds.data), layout="nchw")
    return ImageSource(split_name, np.asarray(ds.targets), ds.classes,
                       array=np.ascontiguousarray(ds.data), layout="nhwc")


def open_source(
    spec: str | None, cfg: DataConfig, train: bool = True, image_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageSource:
    """The data set named by ``spec``.

    None or 'digits': scikit-learn digits (train: all 1797; test: the test part of
    :func:`digits_split`). 'cifar10' | 'cifar100' | 'stl10' (unless a folder of that
    name exists): torchvision under cfg.root. Anything else: an image folder (or a
    folder holding train/ and test/ splits). ``image_size`` = the view side S, which
    sets the stored side of uncached folders (round(1.15 S) unless cfg.load_size).
    """
    if spec is None or spec == "digits":
        return digits_source() if train else digits_split()[1]
    if spec.lower() in NAMED_DATASETS and not Path(spec).expanduser().is_dir():
        return _open_named(spec.lower(), cfg, train)
    return open_folder(spec, cfg, train, image_size, max_pixels)


# ---------------------------------------------------------------------------- loader

def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of one epoch, int64 (n,): a pure function of (seed, epoch)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, epoch & 0xFFFFFFFFFFFFFFFF, 0x5EED])
    return rng.permutation(n).astype(np.int64)


_DONE = object()


class BatchLoader:
    """One epoch of ``source`` as (indices int64 (B,), images uint8 (B, 3, H, W)).

    The epoch's order is :func:`epoch_permutation` (seed, epoch) (or 0..N-1 with
    ``shuffle=False``); global batch g = batch_size * world_size, and rank r takes
    rows [r*b, (r+1)*b) of every global batch, so all ranks together see exactly the
    single-process batches (Sec. 2.2: large batches split across devices).
    Iteration starts at ``start_step`` (exact resume). Without ``drop_last`` the final
    partial global batch is split as evenly as possible across ranks. Images are
    pinned when ``device`` is CUDA; moving them (non_blocking) is the caller's job.
    """

    def __init__(
        self, source: ImageSource, batch_size: int, seed: int, epoch: int, rank: int = 0,
        world_size: int = 1, start_step: int = 0, device: str | torch.device = "cpu",
        workers: int | None = None, drop_last: bool = True, shuffle: bool = True,
        prefetch: int = 3,
    ) -> None:
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch_size={batch_size} rank={rank} world_size={world_size}")
        self.source, self.batch_size = source, batch_size
        self.rank, self.world_size = rank, world_size
        n, g = source.num_images, batch_size * world_size
        self.steps = n // g if drop_last else math.ceil(n / g)
        if self.steps == 0:
            raise SimCLRError(f"the global batch ({g} images) is larger than the data set "
                              f"{source.name} ({n} images); lower --batch-size")
        if not 0 <= start_step <= self.steps:
            raise SimCLRError(f"cannot resume at step {start_step} of an epoch of {self.steps} "
                              "steps (was the batch size or the data changed?)")
        self.start_step = start_step
        self.order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n, dtype=np.int64)
        dev = torch.device(device)
        self.pin = dev.type == "cuda" and torch.cuda.is_available()
        self.workers = source.workers if workers is None else workers
        self.prefetch = max(1, prefetch)

    def __len__(self) -> int:
        """Steps per epoch (including those before ``start_step``)."""
        return self.steps

    def batch_indices(self, step: int) -> np.ndarray:
        """This rank's indices (b,) int64 at ``step`` of the epoch."""
        g = self.batch_size * self.world_size
        chunk = self.order[step * g:(step + 1) * g]
        if len(chunk) == g:
            return chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return np.array_split(chunk, self.world_size)[self.rank]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.source.cached:
            return self._iter_cached()
        return self._iter_workers()

    def _iter_cached(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Gather rows in a background thread (numpy copies release the GIL)."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                for step in range(self.start_step, self.steps):
                    if stop.is_set():
                        return
                    idx = self.batch_indices(step)
                    images = self.source.get_batch(idx)
                    put((torch.from_numpy(idx.copy()), images.pin_memory() if self.pin else images))
            except BaseException as exc:  # handed to the consumer
                put(exc)
            put(_DONE)

        thread = threading.Thread(target=produce, name="simclr-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    def _iter_workers(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decode in (persistent) DataLoader worker processes, recording bad files."""
        loader, sampler = self.source._worker_loader(self.workers, self.pin)
        steps = range(self.start_step, self.steps)
        sampler.batches = [self.batch_indices(s).tolist() for s in steps]
        for images, idx, bad, reasons in loader:
            for b, reason in zip(bad.tolist(), reasons, strict=True):
                if b >= 0:
                    self.source._note_bad(b, reason)
            yield idx.to(torch.int64), images
