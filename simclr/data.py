"""Image data for pretraining and evaluation: sources of folders and named data sets.

SimCLR (Chen et al. 2020, Sec. 2.1, App. A) draws two random views of every image of
a batch; here the data only deliver the *stored* images as uint8 tensors
(B, 3, H, W) and ``simclr.augment`` makes the views (on the GPU when there is one).

* :mod:`simclr.folders` lists an ImageFolder tree (class sub-folders) or a flat folder.
* Small images (side <= 96, e.g. CIFAR) are decoded once into the uint8 memmap of
  :mod:`simclr.cache`; large ones are decoded per epoch in DataLoader workers at
  reduced size (JPEG draft mode, :mod:`simclr.decode`), or on the training device.
* :class:`ImageSource` is the uniform view of a data set, :func:`open_source` opens
  one by name; :mod:`simclr.loader` iterates an epoch of it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from simclr.cache import (
    CacheFolderError,
    DecodedCache,
    build_cache,
    decode_files,
    is_default_cache_dir,
)
from simclr.config import DataConfig
from simclr.decode import (
    DEFAULT_MAX_PIXELS,
    ReadFailure,
    decode_jpegs,
    eval_side,
    eval_store,
    is_eval_store,
    is_regular_file,
    load_square,
    open_image,
    read_jpeg,
)
from simclr.distributed import launched_rank, local_processes
from simclr.errors import BadImageError, NoReadableImageError, SimCLRError, printable
from simclr.folders import ImageList, class_members, named_dataset, scan_folder, split_root
from simclr.launch import shell_quote
from simclr.progress import PLAIN_EVERY_S, said_once
from simclr.runtime import (
    close_loader_iterator,
    loader_worker_init,
    refuse_spawned_import,
    usable_cores,
)

log = logging.getLogger(__name__)

SMALL_SIDE = 96  # images up to this side are cached decoded (cfg.cache = 'auto')
LOAD_SCALE = 1.15  # larger images are stored at most at round(view size * 1.15) (see open_folder)
MAX_SUBSTITUTES = 64  # next images tried in place of an unreadable one (and as many more)
NAMED_BAD = 10  # unreadable files named one by one as an uncached source meets them


def default_workers() -> int:
    """Decoding processes when ``cfg.workers`` is None: this process's share of the CPU
    cores it may use (its affinity: taskset, a cpuset, SLURM's --cpus-per-task), split
    among the processes launched on this machine (--processes, torchrun), at least 1 and
    at most 8. The machine's core count would overcommit a share, once per process."""
    share = usable_cores() // max(1, local_processes())
    return max(1, min(8, share))


# ---------------------------------------------------------------------------- sources

class ImageSource:
    """A data set as training and evaluation see it.

    Cached (in-memory or memmap array): :meth:`batch` gathers rows. Uncached (image
    folder of large images): files decoded at ``image_hw`` in DataLoader workers
    (:meth:`dataset`). ``labels`` (N,) int64 (-1 = unlabeled); ``paths`` the files
    (empty for in-memory data sets); ``skipped`` [(path, reason)] of unreadable files.
    ``store`` says how files become squares (:func:`simclr.decode.fit_square`) and
    ``aspect`` float32 (rows,) holds the width / height of the picture each cached row
    stands for (None: all 1, square pictures).
    """

    def __init__(
        self, name: str, labels: np.ndarray, classes: Sequence[str], *,
        array: np.ndarray | None = None, layout: str = "nhwc", rows: np.ndarray | None = None,
        paths: Sequence[str] = (), side: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
        skipped: list[tuple[str, str]] | None = None, store: str = "full",
        aspect: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.paths = list(paths)
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self.max_pixels = max_pixels
        self.store, self._aspect = store, aspect
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
        self._found_bad, self._counted_at = 0, -float("inf")  # (this session's, for the log)
        self._loaders: dict[tuple, tuple[torch.utils.data.DataLoader, _EpochBatches]] = {}
        self._within: tuple[bytes, ImageSource] | None = None  # (see within())

    @property
    def num_images(self) -> int:
        return len(self.labels)

    @property
    def readable_images(self) -> int:
        """The images not known to be unreadable: a cache holds only those; an uncached
        folder finds its unreadable files as it reads them (substituted in training)."""
        return self.num_images if self.cached else self.num_images - len(self.skipped)

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
        return self.batch(indices)[0]

    def batch(
        self, indices: np.ndarray | torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images uint8 (B, 3, H, W), aspects float32 (B,)) at ``indices`` (B,), CPU."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self._array is None:
            ds = self.dataset()
            items = [ds[int(i)] for i in idx]
            for _, _, _, bad, reason in items:
                if bad >= 0:
                    self._note_bad(bad, reason)
            if not items:
                return (torch.empty((0, 3, *self.image_hw), dtype=torch.uint8),
                        torch.empty(0, dtype=torch.float32))
            return (torch.stack([t for t, *_ in items]),
                    torch.tensor([a for _, _, a, *_ in items], dtype=torch.float32))
        return self._gather(idx), torch.from_numpy(self.aspect_of(idx))

    def aspect_of(self, indices: np.ndarray) -> np.ndarray:
        """float32 (B,): width / height of the pictures behind cached ``indices``."""
        if self._aspect is None:
            return np.ones(len(indices), dtype=np.float32)
        rows = self._rows[indices] if self._rows is not None else indices
        return self._aspect[rows]

    def _gather(self, idx: np.ndarray) -> torch.Tensor:
        rows = self._rows[idx] if self._rows is not None else idx
        # Memmaps read fastest in file order: gather sorted rows, then restore order.
        order = np.argsort(rows, kind="stable")
        # (the ignores: batch() gathers only from a cached array)
        gathered = np.empty((len(rows), *self._array.shape[1:]), dtype=np.uint8)  # type: ignore[union-attr]
        gathered[order] = self._array[rows[order]]  # type: ignore[index]
        out = torch.from_numpy(gathered)
        return out.permute(0, 3, 1, 2).contiguous() if self._layout == "nhwc" else out

    def dataset(self, raw: bool = False) -> torch.utils.data.Dataset:
        """Map-style dataset of (uint8 (3, H, W), index, aspect, bad index or -1, reason)
        for DataLoader workers.

        An unreadable file is replaced by the next readable one ((i + k) mod N,
        deterministic) and the *substitute's* index is returned, so (image, index,
        label) stay consistent; the replaced file's index and why it was refused come
        along, for the caller to count (a worker's own count would be lost).
        ``raw=True``: plain JPEGs come as their bytes (L,) uint8, for the device
        decoder (batch them with :func:`collate_raw`).
        """
        # A detached copy: the dataset must not point back at this source, whose
        # cached DataLoaders point at the dataset (a cycle would leave the workers to
        # the garbage collector, whose shutdown of them stalls for seconds).
        return _SourceDataset(self._detached(), raw)

    def _detached(self) -> ImageSource:
        return ImageSource(
            self.name, self.labels, self.classes, array=self._array, layout=self._layout,
            rows=self._rows, paths=self.paths, side=self.image_hw[0],
            max_pixels=self.max_pixels, workers=self.workers, store=self.store,
            aspect=self._aspect)

    def close(self) -> None:
        """Stop the persistent decoding workers now, Ctrl-C held until they have stopped
        (they also stop when the source is freed, where a Ctrl-C is lost:
        :func:`simclr.runtime.close_loader_iterator`); :meth:`within`'s too."""
        if self._within is not None:
            self._within[1].close()
        loaders, self._loaders = list(self._loaders.values()), {}
        for loader, _ in loaders:
            close_loader_iterator(loader._iterator)  # (None before its first epoch)

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
            store=self.store, aspect=self._aspect,
        )

    def within(self, indices: np.ndarray) -> ImageSource:
        """The images at ``indices`` (M,) as a source of their own, whose unreadable files
        are replaced by other images of ``indices`` alone (a labeled subset's: one from
        elsewhere in the folder trained with its label, outside the subset recorded).

        Kept for the next call with the same indices (its decoding workers persist across
        a training's epochs) and closed with this source; the unreadable files it meets
        are recorded in this source's ``skipped``, which it shares.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        key = idx.tobytes()
        if self._within is None or self._within[0] != key:
            if self._within is not None:
                self._within[1].close()
            part = self.subset(idx, self.name)  # (the folder's name, for its messages)
            part.skipped, part._bad_seen = self.skipped, self._bad_seen  # the same objects
            self._within = (key, part)
        return self._within[1]

    def remember_skipped(self, found: Sequence[Sequence[str]]) -> None:
        """The unreadable files an earlier session of a run decoding per epoch met
        (its checkpoint's ``skipped_images``): counted and listed again, not said again.
        A cache lists all of its own already."""
        new = [(path, reason) for path, reason in found if path not in self._bad_seen]
        if self.cached or not new:  # (every epoch's exchange: mostly nothing new)
            return
        listed = set(self.paths)
        for path, reason in new:
            if path in listed and path not in self._bad_seen:
                self._bad_seen.add(path)
                self.skipped.append((path, reason))

    def find_unreadable(self) -> None:
        """Record why each file of an uncached source not yet recorded cannot be read,
        after :class:`NoReadableImageError`: load_item tried them all, but met in a
        DataLoader worker, the error alone came back (not the reasons). Not said again
        in the log: the error names the first; a file readable by now is left out."""
        found = []
        for path in () if self.cached else self.paths:  # (a cache lists its own)
            if path in self._bad_seen:
                continue
            try:
                load_square(path, self.image_hw[0], self.max_pixels, self.store)
            except BadImageError as exc:
                found.append((path, exc.reason))
        self.remember_skipped(found)  # (recorded as an earlier session's are)

    def skip_summary(self, limit: int = 10) -> str:
        """One line per skipped file (at most ``limit``), for the log: each name
        :func:`~simclr.errors.printable` (a file's name, any bytes, stays on its line)."""
        if not self.skipped:
            return f"{printable(self.name)}: no images skipped"
        lines = [f"{printable(self.name)}: skipped {len(self.skipped)} unreadable image(s):"]
        lines += [f"  {printable(str(p))}: {printable(r)}" for p, r in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)

    def _note_bad(self, index: int, reason: str, substituted: bool = True) -> None:
        """Record an unreadable file (once): ``substituted`` another image took its place
        (training), else it was left out (evaluation). The first :data:`NAMED_BAD` are
        named in the log; after them a count, at most every ``PLAIN_EVERY_S`` seconds
        (half of a 100k-file folder broken printed a line per file, 50,000 an epoch)."""
        path = self.paths[index]
        if path in self._bad_seen:
            return
        self._bad_seen.add(path)
        self.skipped.append((path, reason))
        self._found_bad += 1
        if self._found_bad <= NAMED_BAD:
            what = "another image was used in its place" if substituted else "left out"
            log.warning("skipped %s: %s (%s)", path, reason, what)
            return
        now = time.monotonic()
        if now - self._counted_at >= PLAIN_EVERY_S:
            self._counted_at = now
            log.warning("%s: skipped %d unreadable image(s) so far; the first %d are named "
                        "above, the others counted here at most every %.0f s",
                        self.name, len(self.skipped), NAMED_BAD, PLAIN_EVERY_S)

    def _worker_loader(
        self, workers: int, pin: bool, raw: bool = False
    ) -> tuple[torch.utils.data.DataLoader, _EpochBatches]:
        """One DataLoader per (workers, pin, raw), kept so its workers persist across epochs."""
        key = (workers, pin, raw)
        if key not in self._loaders:
            refuse_spawned_import()  # (a call outside the API's entry points, too)
            sampler = _EpochBatches()
            extra: dict[str, Any] = {}
            if workers > 0:
                extra = {"persistent_workers": True, "prefetch_factor": 4}
            if raw:
                extra["collate_fn"] = collate_raw
            loader = torch.utils.data.DataLoader(
                self.dataset(raw=raw), batch_sampler=sampler, num_workers=workers,
                pin_memory=pin and not raw, worker_init_fn=loader_worker_init(),
                generator=private_generator(), **extra)
            self._loaders[key] = (loader, sampler)
        return self._loaders[key]


def private_generator() -> torch.Generator:
    """A DataLoader's own generator: each ``iter(loader)`` draws its workers' base seed
    from it, where without one it draws from torch's global generator, which the model
    draws from too (stochastic depth in EfficientNet, ConvNeXt, Swin): then the decoded
    cache, the worker count, a kNN monitor's loader or a resume changed the weights. The
    workers need no seed of their own: a view's randomness is counter-based (augment.py)."""
    return torch.Generator()


class _SourceDataset(torch.utils.data.Dataset):
    def __init__(self, source: ImageSource, raw: bool = False) -> None:
        self.source, self.raw = source, raw

    def __len__(self) -> int:
        return self.source.num_images

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, float, int, str]:
        if self.source.cached:
            images, aspect = self.source.batch([i])
            return images[0], i, float(aspect[0]), -1, ""
        return load_item(self.source, i, self.raw)


def load_item(
    source: ImageSource, i: int, raw: bool = False
) -> tuple[torch.Tensor, int, float, int, str]:
    """Image ``i`` of an uncached source, or the next readable one in its place.

    Returns (image uint8 (3, S, S), or with ``raw`` the JPEG bytes (L,) when the device
    can decode the file; the index j it came from; its stored aspect; i if it was
    substituted else -1; the reason the first file was refused).
    """
    n, first_reason = source.num_images, ""
    tried = substitutes(i, n)
    for k, j in enumerate(tried):
        path = source.paths[j]
        blob = read_jpeg(path, source.max_pixels, source.store) if raw else None
        if blob is not None:
            return blob[0], j, blob[1], (i if k else -1), first_reason
        try:
            arr, aspect = load_square(path, source.image_hw[0], source.max_pixels, source.store)
        except (BadImageError, ReadFailure) as exc:  # (a read that may pass: replaced this
            first_reason = first_reason or exc.reason  # once, tried again next epoch)
            continue
        # A (3, S, S) view of the HWC array: the batch collation's copy transposes it.
        image = torch.from_numpy(arr).permute(2, 0, 1)
        return image, j, aspect, (i if k else -1), first_reason
    what = (f"all {n} images are" if len(tried) == n else
            f"{len(tried)} images tried in its place ({MAX_SUBSTITUTES} after it, the rest "
            "spread over the folder) are")
    error = NoReadableImageError if len(tried) == n else SimCLRError
    raise error(f"{what} unreadable (first: {source.paths[i]}: {first_reason}); "
                f"check the folder {source.name}")


def substitutes(i: int, n: int) -> list[int]:
    """The images tried for image ``i`` of ``n``, in order: ``i`` and the next
    MAX_SUBSTITUTES - 1 in listing order, then as many spread evenly over the rest of
    the folder. A class folder's broken files sit side by side in the listing: with
    neighbours alone, a run of 64 of them among thousands of good images stopped the
    run (and its resume, at the same place). Deterministic: a resumed run substitutes
    alike."""
    near = min(n, MAX_SUBSTITUTES)
    rest = n - near
    far = min(rest, MAX_SUBSTITUTES)
    return [(i + k) % n for k in range(near)] + [
        (i + near + k * rest // far) % n for k in range(far)]


def collate_raw(
    items: list[tuple],
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """Batches of :func:`load_item` results with ``raw``: images and bytes stay a list."""
    images, idx, aspect, bad, reasons = zip(*items, strict=True)
    return (list(images), torch.tensor(idx), torch.tensor(aspect, dtype=torch.float32),
            torch.tensor(bad), list(reasons))


def decode_device(decoder: str, device: torch.device) -> torch.device | None:
    """Where uncached JPEGs are decoded: ``device`` (batched, nvJPEG on CUDA) or None
    (PIL in the workers). 'auto' picks the device only on CUDA: on a CPU the workers'
    reduced-size (draft mode) PIL decode is faster than a full decode in one process."""
    if decoder == "device" or (decoder == "auto" and device.type == "cuda"):
        return device
    return None


def decode_raw_batch(
    source: ImageSource, payloads: list[torch.Tensor], idx: torch.Tensor,
    aspect: torch.Tensor, device: torch.device, substitute: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A worker batch of :func:`collate_raw` decoded on ``device``.

    Returns (indices (B,) int64, images uint8 (B, 3, S, S) on ``device``, aspects
    float32 (B,) CPU). A file the device decoder refuses goes through the PIL path in
    this process (it may decode there, or be replaced by the next readable image,
    recorded as skipped): rare, as the workers already sent unusual files that way.
    """
    images, failed = decode_jpegs(payloads, source.image_hw[0], device, source.store)
    idx, aspect = idx.to(torch.int64).clone(), aspect.clone()
    for k in failed:
        image, j, aspect[k], bad, reason = load_item(source, int(idx[k]))
        if bad >= 0:
            source._note_bad(bad, reason, substitute)
        images[k] = image.to(device)
        idx[k] = j
    return idx, images, aspect


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


def cache_choice(spec: str | None, cache: str) -> str:
    """What ``--cache`` amounts to for pretraining on ``spec``: 'on' or 'off' ('auto'
    caches a folder of small pictures, as :func:`open_folder` decides), or 'in memory'
    for a named data set (the digits, torchvision's), held as arrays whatever it says."""
    if named_dataset(spec):
        return "in memory"
    if cache != "auto":
        return cache
    listed = scan_folder(split_root(spec, train=True), unlabeled=True)  # type: ignore[arg-type]  # (not named: a str)
    return "on" if _all_small(_probe_sizes(listed.paths)) else "off"


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
    central square (``store='eval:S'``, :func:`simclr.decode.eval_store`), so that a
    folder's features are those of the transform applied to each file, not of a reduced
    whole-picture square resampled again (one to a few percent of each feature, 4-28%
    for 64 x 48 thumbnails, measured); but for a folder of small squares of one side
    (CIFAR's), each stored as it is, which its pretraining's cache shares.
    """
    root = split_root(path, train)
    images = scan_folder(root, unlabeled) if listing is None else listing
    workers = default_workers() if cfg.workers is None else cfg.workers
    sizes = _probe_sizes(images.paths)
    small = _all_small(sizes)
    store, train_side, load_size = cfg.store, round(image_size * LOAD_SCALE), cfg.load_size
    as_they_are = small and len({(w, h) for w, h in sizes}) == 1 and sizes[0][0] == sizes[0][1]
    if evaluation and not as_they_are:  # the transform sets the side (not pretraining's)
        # (its squares, of any side, are read with eval_resize(central=True))
        store, train_side = eval_store(image_size), eval_side(image_size)
        load_size = None
    counts = Counter(min(s) for s in sizes)
    common = _storage_side(counts)
    # One stored side whether cached or not, so that --cache changes only the speed: small
    # pictures keep their own (shared) side, larger ones are never stored above it.
    side: int = load_size or (common if small else min(common or train_side, train_side))  # type: ignore[assignment]  # (small: probed, so common is a side)
    if small and not load_size and not evaluation:
        _note_other_sizes(root, counts, side)
    # An evaluation source keeps the transform's own side (eval_side(S)), photos smaller
    # than it upscaled once here rather than at evaluation; its small pictures need it.
    side = train_side if is_eval_store(store) else side
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
            skipped=skipped, store=store, aspect=cache.aspect)
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
                       max_pixels=max_pixels, workers=workers, store=store)


def check_some_readable(files: ImageList, limit: int | None = 64,
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse a folder of at most ``limit`` files (None: any) none of which decodes (all
    broken, or no images under image names), naming the first: called where the count
    of files is about to be blamed (a batch larger than the set), which it would be for
    nothing, and for folders a run reads only later. Files are opened until one decodes:
    a readable folder costs one image (a JPEG decoded at reduced size). ``max_pixels``:
    the run's --max-pixels (an image past it is unreadable to the run too)."""
    if limit is not None and len(files.paths) > limit:
        return
    first = None
    for path in files.paths:
        error = _decode_error(path, max_pixels)
        if error is None:
            return
        first = first or error
    if first is not None:
        raise _none_readable(files, first.path, first.reason)


def unreadable_classes(files: ImageList, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[str]:
    """The classes of a labeled listing none of whose files decodes (images past
    ``max_pixels`` count as unreadable). Each class's files are opened until one does:
    a readable class costs one image (at reduced size). No file decoding at all is
    :func:`check_some_readable`'s error, raised here (each file opened once: the first
    readable one had been opened by both)."""
    members = class_members(files.labels, range(len(files.classes)))
    empty, first = [], None
    for name, indices in zip(files.classes, members, strict=True):
        for i in indices:
            error = _decode_error(files.paths[i], max_pixels)
            if error is None:
                break
            first = first or error  # (a labeled listing goes class by class)
        else:
            empty.append(name)
    if first is not None and len(empty) == len(files.classes):
        raise _none_readable(files, first.path, first.reason)
    return empty


def _decode_error(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> BadImageError | None:
    """Why ``path`` does not decode (opened at reduced size: a JPEG costs little); None
    if it does."""
    try:
        open_image(path, max_pixels, draft_size=(8, 8))
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


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 (1797, 3, 32, 32) and labels (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # (a dependency removed since: not worth a traceback)
        raise SimCLRError(f"the digits demo needs scikit-learn, which cannot be imported "
                          f"({exc}): pip install scikit-learn") from None

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


def is_digits(spec: str | os.PathLike | None) -> bool:
    """Whether a data spec names scikit-learn's digits (None or 'digits', unless a folder
    of that name is there)."""
    spec = None if spec is None else os.fspath(spec)
    return named_dataset(spec) and (spec is None or spec == "digits")


def digits_split(seed: int = 0, train_size: int = 1200) -> tuple[ImageSource, ImageSource]:
    """Deterministic (train, test) split of the digits for kNN / linear evaluation.

    A permutation of the 1797 images by ``np.random.default_rng(seed)``; the first
    ``train_size`` are the train split, the other 597 the test split (each sorted).
    """
    full = digits_source()
    perm = np.random.default_rng(seed).permutation(full.num_images)
    train_idx, test_idx = np.sort(perm[:train_size]), np.sort(perm[train_size:])
    return (full.subset(train_idx, "digits[train]"), full.subset(test_idx, "digits[test]"))


# Images in each named data set's training split as pretraining reads it (torchvision's
# CIFAR-10/100 train, STL-10 train+unlabeled: 5000 + 100000)
NAMED_TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000}
# Each named data set's class in torchvision.datasets
_TORCHVISION_CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "stl10": "STL10"}


def named_train_size(name: str, cfg: DataConfig) -> int:
    """The images a pretraining reads of the named data set ``name`` (a key of
    :data:`NAMED_TRAIN_SIZES`), its files checked present under ``cfg.root`` without
    reading them (a sweep checks every cell's before the first trains: STL-10's are
    2.7 GB); missing, it is opened as pretraining opens it, refused or downloaded."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASSES[name])
    folder = Path(cfg.root).expanduser() / str(getattr(cls, "base_folder", ""))
    files = [entry[0] for entry in getattr(cls, "train_list", [])]
    if files and all((folder / f).is_file() for f in files):
        return NAMED_TRAIN_SIZES[name]
    return _open_named(name, cfg, train=True).num_images


def _open_named(name: str, cfg: DataConfig, train: bool) -> ImageSource:
    """CIFAR-10/100 or STL-10 through torchvision; downloads only with cfg.download."""
    import torchvision.datasets as tvd

    root = Path(cfg.root).expanduser()
    cls_name = _TORCHVISION_CLASSES[name]
    if name == "stl10":
        split = "train+unlabeled" if train else "test"
        make = functools.partial(tvd.STL10, str(root), split=split)
    else:
        make = functools.partial(getattr(tvd, cls_name), str(root), train=train)
    try:
        ds = make(download=False)
    except RuntimeError:
        if not cfg.download:  # the fetch alone (pretrain --download would also train)
            fetch = (f"import torchvision; torchvision.datasets.{cls_name}({str(root)!r}, "
                     "download=True)")
            raise SimCLRError(f"{name} not found under {root}; fetch it once (needs internet) "
                              f"with: python -c {shell_quote(fetch)}; or pass an image "
                              "folder") from None
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
        return _open_named(spec.lower(), cfg, train)  # type: ignore[union-attr]
    return open_folder(spec, cfg, train, image_size, cfg.max_pixels, evaluation, unlabeled,  # type: ignore[arg-type]
                       listing)
