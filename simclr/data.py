"""Image data for pretraining and evaluation: a data set opened by name or folder.

SimCLR (Chen et al. 2020, Sec. 2.1, App. A) draws two random views of every image of
a batch; here the data only deliver the *stored* images as uint8 tensors
(B, 3, H, W) and ``simclr.augment`` makes the views (on the GPU when there is one).

* :mod:`simclr.folders` lists an ImageFolder tree (class sub-folders) or a flat folder.
* Small images (side <= 96, e.g. CIFAR) are decoded once into the uint8 memmap of
  :mod:`simclr.cache`; large ones are decoded per epoch in DataLoader workers at
  reduced size (JPEG draft mode, :mod:`simclr.decode`), or on the training device.
* :func:`open_source` opens a data set by name (:mod:`simclr.named_data`) or folder
  (:func:`open_folder`: the stored side, cached or not); :func:`check_some_readable`
  and :func:`unreadable_classes` refuse folders with nothing to read.
* :class:`simclr.source.ImageSource` is the uniform view of a data set;
  :mod:`simclr.loader` iterates an epoch of it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from simclr.cache import CacheFolderError, DecodedCache, build_cache, decode_files
from simclr.cache_entries import is_default_cache_dir
from simclr.config import DataConfig
from simclr.decode import (
    DEFAULT_MAX_PIXELS,
    draft_side,
    eval_side,
    eval_store,
    is_eval_store,
    is_regular_file,
    open_image,
)
from simclr.distributed import launched_rank
from simclr.errors import BadImageError, SimCLRError
from simclr.folders import (
    ImageList,
    class_members,
    list_folder,
    named_dataset,
    scan_folder,
    split_root,
)
from simclr.named_data import digits_source, digits_split, is_digits, open_named
from simclr.progress import said_once
from simclr.source import ImageSource, default_workers

log = logging.getLogger(__name__)

SMALL_SIDE = 96  # images up to this side are cached decoded (cfg.cache = 'auto')
LOAD_SCALE = 1.15  # larger images are stored at most at round(view size * 1.15) (see open_folder)


def probe_sizes(paths: Sequence[str], count: int = 64) -> list[tuple[int, int]]:
    """(w, h) read from the headers of up to ``count`` evenly spread files."""
    picks = sorted({round(k * (len(paths) - 1) / max(count - 1, 1)) for k in range(count)})
    sizes = []
    for k in picks:
        if not is_regular_file(paths[k]):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(paths[k]) as im:
                    sizes.append(im.size)
        except Exception:  # a bad file says nothing about the others
            continue
    return sizes


def _all_small(sizes: list[tuple[int, int]]) -> bool:
    """Whether probed pictures (w, h) are small enough for ``--cache auto`` to cache."""
    return bool(sizes) and max(max(s) for s in sizes) <= SMALL_SIDE


def _stored_as(sizes: list[tuple[int, int]], image_size: int, cfg: DataConfig,
               evaluation: bool) -> tuple[str, int]:
    """(store, side) :func:`open_folder` keeps pictures of the probed ``sizes`` (w, h)
    as, for views of ``image_size``: an evaluation's photos as the transform's resized
    square (its side, eval_side(S)); small squares of one side as they are (CIFAR's,
    which the pretraining's cache shares); else at --load-size, or the pictures' common
    side, never above round(S x 1.15)."""
    small = _all_small(sizes)
    as_they_are = small and len(set(sizes)) == 1 and sizes[0][0] == sizes[0][1]
    if evaluation and not as_they_are:  # the transform sets the side (not pretraining's)
        return eval_store(image_size), eval_side(image_size)
    train_side = round(image_size * LOAD_SCALE)
    if is_eval_store(cfg.store):
        return cfg.store, train_side
    common = _storage_side(Counter(min(s) for s in sizes))
    # One stored side whether cached or not, so that --cache changes only the speed: small
    # pictures keep their own (shared) side, larger ones are never stored above it.
    return cfg.store, cfg.load_size or (common if small else min(common or train_side,  # type: ignore[return-value]  # (small: probed, so common is a side)
                                                                 train_side))


def reading_draft(files: ImageList, image_size: int, cfg: DataConfig,
                  evaluation: bool, sizes: list[tuple[int, int]] | None = None) -> int:
    """The side :func:`open_folder` (with ``cfg``, for views of ``image_size``) decodes
    the JPEGs of ``files`` at, at least (draft mode: :func:`simclr.decode.load_square`):
    4x an evaluation's side, else the stored side. A folder's pre-check decodes at it:
    ``--max-pixels`` limits what is decoded. ``sizes``: :func:`probe_sizes` of ``files``,
    where the caller has them (a sweep asks for each of its cells of one folder)."""
    if sizes is None:
        sizes = probe_sizes(files.paths)
    store, side = _stored_as(sizes, image_size, cfg, evaluation)
    return draft_side(side, store)


def cache_choice(spec: str | None, cache: str, train: bool = True,
                 sizes: list[tuple[int, int]] | None = None) -> str:
    """What ``--cache`` amounts to for pretraining on ``spec``: 'on' or 'off' ('auto'
    caches a folder of small pictures, as :func:`open_folder` decides), or 'in memory'
    for a named data set (the digits, torchvision's), held as arrays whatever it says.
    ``train``: of its training split (a folder holding train/ and test/), else its test.
    ``sizes``: its files' sides (w, h) as :func:`probe_sizes` reads them, where the
    caller has them (a folder of 200k files takes seconds to list)."""
    if named_dataset(spec):
        return "in memory"
    if cache != "auto":
        return cache
    if sizes is None:
        sizes = probe_sizes(list_folder(spec, train, unlabeled=True).paths)  # type: ignore[union-attr]  # (not named: listed)
    return "on" if _all_small(sizes) else "off"


def open_folder(
    path: str | os.PathLike, cfg: DataConfig, train: bool = True, image_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS, evaluation: bool = False, unlabeled: bool = False,
    listing: ImageList | None = None,
) -> ImageSource:
    """An image folder as a cached (small images) or per-epoch decoded source
    (``unlabeled``: see :func:`scan_folder`; ``listing``: its files, if the caller has
    listed them already with the same ``train`` and ``unlabeled``: a folder of 200k
    files takes seconds to list).

    ``evaluation``: its images only ever go through the evaluation transform
    (:func:`simclr.augment.eval_resize`). They are then stored as that transform's
    resized square around its centre crop (``store='eval:S'``,
    :func:`simclr.decode.eval_store`), so that a
    folder's features are those of the transform applied to each file, not of a reduced
    whole-picture square resampled again (one to a few percent of each feature, 4-28%
    for 64 x 48 thumbnails, measured); but for a folder of small squares of one side
    (CIFAR's), each stored as it is, which its pretraining's cache shares.
    """
    root = split_root(path, train)
    images = scan_folder(root, unlabeled) if listing is None else listing
    workers = default_workers() if cfg.workers is None else cfg.workers
    sizes = probe_sizes(images.paths)
    small = _all_small(sizes)
    # (an evaluation's photos, of any shape, are read with eval_resize(central=True): those
    # smaller than its side upscaled once here rather than at evaluation)
    store, side = _stored_as(sizes, image_size, cfg, evaluation)
    if small and not cfg.load_size and not evaluation:
        _note_other_sizes(root, Counter(min(s) for s in sizes), side)
    cache = _cache_if_any(images, side, cfg, workers, max_pixels, store) \
        if cfg.cache == "on" or (cfg.cache == "auto" and small) else None
    if cache is not None:
        kept, skipped = cache.kept, cache.skipped
        if cfg.strict and skipped:
            raise SimCLRError(f"--strict: bad image {skipped[0][0]}: {skipped[0][1]}")
        if len(kept) == 0:
            raise _none_readable(images, *skipped[0])
        source = ImageSource(
            str(root), images.labels[kept], images.classes, array=cache.rows,
            rows=None if len(kept) == len(images.paths) else kept,
            paths=[images.paths[i] for i in kept], max_pixels=max_pixels, workers=workers,
            skipped=skipped, store=store, aspect=cache.aspect, decoder=cfg.decoder)
        # Each named, from a fresh or a reused cache (a reuse decodes nothing), by the
        # first process of a launch alone (every process opens the same cache).
        if skipped and launched_rank() == 0:
            # A line each: the log escapes a line break inside an argument (the names
            # in them are escaped by skip_summary)
            for line in source.skip_summary().splitlines():
                log.warning("%s", line)
        return source
    if cfg.strict:
        what = f"--strict: checking {root}"
        bad, _ = decode_files(images.paths, side, max_pixels, workers, None, what, store)
        if bad:
            raise SimCLRError(f"--strict: bad image {images.paths[bad[0][0]]}: {bad[0][1]}")
    return ImageSource(str(root), images.labels, images.classes, paths=images.paths, side=side,
                       max_pixels=max_pixels, workers=workers, store=store, decoder=cfg.decoder)


def check_some_readable(files: ImageList, limit: int | None = 64,
                        max_pixels: int = DEFAULT_MAX_PIXELS, draft: int = 8) -> None:
    """Refuse a folder of at most ``limit`` files (None: any) none of which decodes (all
    broken, or no images under image names), naming the first: called where the count
    of files is about to be blamed (a batch larger than the set), which it would be for
    nothing, and for folders a run reads only later. Files are opened until one decodes:
    a readable folder costs one image (a JPEG decoded at reduced size). ``max_pixels``:
    the run's --max-pixels (an image past it is unreadable to the run too); ``draft``:
    the side the run decodes a JPEG at, at least (:func:`_decode_error`)."""
    if limit is not None and len(files.paths) > limit:
        return
    first = None
    for path in files.paths:
        error = _decode_error(path, max_pixels, draft)
        if error is None:
            return
        first = first or error
    if first is not None:
        raise _none_readable(files, first.path, first.reason)


def unreadable_classes(files: ImageList, max_pixels: int = DEFAULT_MAX_PIXELS,
                       draft: int = 8) -> dict[str, BadImageError | None]:
    """The classes of a labeled listing none of whose files decodes, each with its first
    file's error (None: a class folder without files), images past ``max_pixels`` being
    unreadable, a JPEG decoded at ``draft`` (:func:`_decode_error`). Each class's files
    are opened until one does: a readable class costs one image (at reduced size). No
    file decoding at all is :func:`check_some_readable`'s error, raised here (each file
    opened once: the first readable one had been opened by both)."""
    members = class_members(files.labels, range(len(files.classes)))
    empty: dict[str, BadImageError | None] = {}
    for name, indices in zip(files.classes, members, strict=True):
        first = None
        for i in indices:
            error = _decode_error(files.paths[i], max_pixels, draft)
            if error is None:
                break
            first = first or error
        else:
            empty[name] = first
    errors = [error for error in empty.values() if error is not None]
    if errors and len(empty) == len(files.classes):  # (a listing goes class by class)
        raise _none_readable(files, errors[0].path, errors[0].reason)
    return empty


def _decode_error(path: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                  draft: int = 8) -> BadImageError | None:
    """Why ``path`` does not decode (opened at reduced size: a JPEG costs little); None
    if it does. ``draft``: the side a JPEG is decoded at, at least (draft mode: 1/2 to
    1/8 of its own), as the reader that follows will: ``max_pixels`` limits what is
    decoded, so a JPEG that fits at 8 px may not at the 4 x 18 px of an evaluation."""
    try:
        open_image(path, max_pixels, draft_size=(draft, draft))
    except BadImageError as exc:
        return exc
    return None


def _none_readable(files: ImageList, path: str, reason: str) -> SimCLRError:
    return SimCLRError(f"none of the {len(files.paths)} images in {files.root} could be "
                       f"read (first: {path}: {reason})")


def _storage_side(counts: Counter) -> int | None:
    """The side a folder's pictures share (shorter side -> count of the probed files):
    the most common one where at least half the files have it (CIFAR's 32), else the
    largest, so that nothing is reduced to the side of a few (two 1-px spacer GIFs among
    thumbnails of 13 sizes would have shrunk them all to one pixel)."""
    if not counts:
        return None
    common = max(counts, key=lambda s: (counts[s], s))
    return common if 2 * counts[common] >= sum(counts.values()) else max(counts)


_CACHELESS: set[str] = said_once()  # why a default cache folder could not be made


def _cache_if_any(images: ImageList, side: int, cfg: DataConfig, workers: int,
                  max_pixels: int, store: str) -> DecodedCache | None:
    """The decoded cache of ``images`` (:func:`build_cache`); None, in a note, where
    --cache auto cannot make the default cache folder (a read-only or missing HOME): the
    images are read without a cache, as fast to start. A cache asked for (--cache on)
    or a --cache-dir named that cannot be made stays an error."""
    try:
        return build_cache(images, side, cfg.cache_dir, workers, max_pixels, store)
    except CacheFolderError as exc:
        if cfg.cache != "auto" or not is_default_cache_dir(cfg.cache_dir):
            raise
        reason = str(exc).split("; ")[0]
        # (once: an evaluation opens --train and --test; every process of a launch meets it)
        if reason not in _CACHELESS and launched_rank() == 0:
            log.warning("note: %s; reading the images without a cache (--cache-dir names "
                        "a folder to keep one in)", reason)
        _CACHELESS.add(reason)
        return None


def _note_other_sizes(root: Path, counts: Counter, side: int) -> None:
    """A pretraining folder of small images is stored at the side most of them share
    (``side``); those of other sizes are resampled to it, which a user should hear of
    when they are more than a few: larger ones lose detail, and a folder mostly of tiny
    pictures shrinks the rest. (An evaluation stores each by the transform instead.)"""
    total = sum(counts.values())
    larger = sum(n for s, n in counts.items() if s > side)
    if larger > total // 100:  # more than 1% of them
        log.warning("%s: %d of the %d images are larger than %d px, the most common shorter "
                    "side, at which all are stored (up to %d px): they are reduced to it "
                    "(pretrain --load-size S stores all at S px)", root, larger, total, side,
                    max(counts))


def open_source(
    spec: str | os.PathLike | None, cfg: DataConfig, train: bool = True, image_size: int = 32,
    *, evaluation: bool = False, unlabeled: bool = False, listing: ImageList | None = None,
    held_out: bool = False,
) -> ImageSource:
    """The data set named by ``spec`` (a name, or a folder as a str or Path).

    None or 'digits': scikit-learn digits (train: all 1797, pretraining's, which reads no
    label; with ``held_out``, a training split scored on the test split (an evaluation's,
    the kNN monitor's memory, the supervised baseline's), the train part of
    :func:`digits_split`, none of the test images; test: the test part). 'cifar10' |
    'cifar100' | 'stl10': torchvision under cfg.root (each name, 'digits' too, unless a
    folder of that name is there). Anything else: an image folder (or a folder holding
    train/ and test/ splits). ``image_size`` = the view side S, which sets the stored
    side (unless cfg.load_size): round(1.15 S), never above the shorter side half the
    folder shares (else its largest); a folder of small images keeps that side, cached
    or not (``evaluation``, ``unlabeled``: see :func:`open_folder`; ``listing`` too, a
    folder's files as :func:`simclr.folders.list_folder` lists them). The
    decompression-bomb limit is ``cfg.max_pixels`` (its own argument before); the flags
    after ``image_size`` are given by name.
    """
    spec = None if spec is None else os.fspath(spec)
    if is_digits(spec):
        if train and not held_out:
            return digits_source()
        return digits_split()[0 if train else 1]
    # (the ignores: spec is a str past the digits)
    if named_dataset(spec):  # torchvision's
        return open_named(spec.lower(), cfg, train)  # type: ignore[union-attr]
    return open_folder(spec, cfg, train, image_size, cfg.max_pixels, evaluation, unlabeled,  # type: ignore[arg-type]
                       listing)
