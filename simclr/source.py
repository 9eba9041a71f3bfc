"""A data set as training and evaluation see it: :class:`ImageSource`.

SimCLR (Chen et al. 2020, Sec. 2.1, App. A) draws two random views of every image of
a batch; a source only delivers the *stored* images as uint8 tensors (B, 3, H, W) and
``simclr.augment`` makes the views. A cached source (an in-memory array or the memmap of
:mod:`simclr.cache`) gathers rows; an uncached one decodes its files in DataLoader
workers (:func:`load_item`, an unreadable file replaced by the next readable one,
:func:`substitutes`) or its JPEGs on the training device (:func:`decode_raw_batch`).
:mod:`simclr.data` opens a source by name; :mod:`simclr.loader` iterates an epoch of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from simclr.config import DECODERS
from simclr.decode import (
    DEFAULT_MAX_PIXELS,
    ReadFailure,
    decode_jpegs,
    load_square,
    read_jpeg,
)
from simclr.distributed import local_processes
from simclr.errors import BadImageError, NoReadableImageError, SimCLRError, printable
from simclr.folders import holds_jpegs
from simclr.progress import PLAIN_EVERY_S
from simclr.runtime import (
    close_loader_iterator,
    loader_worker_init,
    refuse_spawned_import,
    usable_cores,
)

log = logging.getLogger(__name__)

MAX_SUBSTITUTES = 64  # next images tried in place of an unreadable one (and as many more)
NAMED_BAD = 10  # unreadable files named one by one as an uncached source meets them


def default_workers() -> int:
    """Decoding processes when ``cfg.workers`` is None: this process's share of the CPU
    cores it may use (its affinity: taskset, a cpuset, SLURM's --cpus-per-task), split
    among the processes launched on this machine (--processes, torchrun), at least 1 and
    at most 8. The machine's core count would overcommit a share, once per process."""
    share = usable_cores() // max(1, local_processes())
    return max(1, min(8, share))


class ImageSource:
    """A data set as training and evaluation see it.

    Cached (in-memory or memmap array): :meth:`batch` gathers rows. Uncached (image
    folder of large images): files decoded at ``image_hw`` in DataLoader workers
    (:meth:`dataset`). ``labels`` (N,) int64 (-1 = unlabeled); ``paths`` the files
    (empty for in-memory data sets); ``skipped`` [(path, reason)] of unreadable files.
    ``store`` says how files become squares (:func:`simclr.decode.fit_square`) and
    ``aspect`` float32 (rows,) holds the width / height of the picture each cached row
    stands for (None: all 1, square pictures). ``decoder``: where an uncached folder's
    JPEGs decode when a pass names none (the --decoder it was opened with:
    :func:`decode_device`).
    """

    def __init__(
        self, name: str, labels: np.ndarray, classes: Sequence[str], *,
        array: np.ndarray | None = None, layout: str = "nhwc", rows: np.ndarray | None = None,
        paths: Sequence[str] = (), side: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
        skipped: list[tuple[str, str]] | None = None, store: str = "full",
        aspect: np.ndarray | None = None, decoder: str = "auto",
    ) -> None:
        self.name = name
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.paths = list(paths)
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self.max_pixels = max_pixels
        self.store, self._aspect = store, aspect
        self.workers = default_workers() if workers is None else workers
        self.decoder = decoder  # (--decoder of the settings it was opened with)
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
            aspect=self._aspect, decoder=self.decoder)

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
            store=self.store, aspect=self._aspect, decoder=self.decoder,
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


def decode_device(decoder: str | None, device: torch.device,
                  source: Any = None) -> torch.device | None:
    """Where uncached JPEGs are decoded: ``device`` (batched, nvJPEG on CUDA) or None
    (PIL in the workers). 'auto' picks the device only on CUDA: on a CPU the workers'
    reduced-size (draft mode) PIL decode is faster than a full decode in one process.
    ``decoder`` None: ``source``'s own (the --decoder it was opened with), else auto.
    A ``source`` of files none of which is named as a JPEG (PNGs): None, whatever the
    decoder (each worker would open a file to find no JPEG in it, then decode it with
    PIL all the same). Another ``decoder`` (a caller's typo: 'gpu') is a ValueError,
    not PIL in silence."""
    if decoder is None:
        decoder = getattr(source, "decoder", "auto")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if source is not None and not holds_jpegs(source.paths):
        return None
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
