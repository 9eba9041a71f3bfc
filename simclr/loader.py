"""The training loader: one epoch of a source as batches, in a fixed order.

The order is a pure function of (seed, epoch), every rank takes its rows of each global
batch, and iteration can start at any step (exact resume). Cached sources are gathered
in a background thread; uncached ones are decoded in DataLoader worker processes, or,
with a decode device, only *read* there and decoded batched on that device (nvJPEG on
CUDA; :mod:`simclr.decode`).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from simclr.errors import SimCLRError
from simclr.runtime import close_loader_iterator, worker_death
from simclr.source import decode_raw_batch

if TYPE_CHECKING:
    from simclr.source import ImageSource


T = TypeVar("T")


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of one epoch, int64 (n,): a pure function of (seed, epoch)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, epoch & 0xFFFFFFFFFFFFFFFF, 0x5EED])
    return rng.permutation(n).astype(np.int64)


_DONE = object()


def prefetched(items: Iterator[T], prefetch: int = 3) -> Generator[T, None, None]:
    """``items`` produced in a background thread, up to ``prefetch`` ahead of the
    caller: a cached source's rows gathered (and pinned, for CUDA) while the step runs.

    An error of ``items`` is raised here, at the batch it stopped at; closing this
    generator (the caller stopping early) stops the thread and joins it before it
    returns, so no thread outlives the epoch it read.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
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
            for item in items:
                put(item)
                if stop.is_set():  # (before gathering another)
                    return
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


class BatchLoader:
    """One epoch of ``source`` as (indices int64 (B,), images uint8 (B, 3, H, W),
    aspects float32 (B,): width / height of the picture behind each stored square).
    The indices are those of the epoch's order, the images' own but for an uncached
    source's unreadable file: its row holds another image (recorded as skipped), views
    drawn for the row's index.

    The epoch's order is :func:`epoch_permutation` (seed, epoch) (or 0..N-1 with
    ``shuffle=False``); global batch g = batch_size * world_size, and rank r takes
    rows [r*b, (r+1)*b) of every global batch, so all ranks together see exactly the
    single-process batches (Sec. 2.2: large batches split across devices).
    Iteration starts at ``start_step`` (exact resume). Without ``drop_last`` the final
    partial global batch is split as evenly as possible across ranks. Images are
    pinned when ``device`` is CUDA; moving them (non_blocking) is the caller's job.
    With ``decode_device`` (see :func:`simclr.source.decode_device`), the JPEGs of an
    uncached source are decoded there and the images come already on it.
    """

    def __init__(
        self, source: ImageSource, batch_size: int, seed: int, epoch: int, rank: int = 0,
        world_size: int = 1, start_step: int = 0, device: str | torch.device = "cpu",
        workers: int | None = None, drop_last: bool = True, shuffle: bool = True,
        prefetch: int = 3, decode_device: torch.device | None = None,
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
        self.decode_device = decode_device

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

    def __iter__(self) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor], None, None]:
        if self.source.cached:
            return self._iter_cached()
        return self._iter_workers()

    def _iter_cached(
        self,
    ) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor], None, None]:
        """Gather rows in a background thread (numpy copies release the GIL)."""
        def gathered() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            for step in range(self.start_step, self.steps):
                idx = self.batch_indices(step)
                images, aspect = self.source.batch(idx)
                images = images.pin_memory() if self.pin else images
                yield torch.from_numpy(idx.copy()), images, aspect

        return prefetched(gathered(), self.prefetch)

    def _iter_workers(
        self,
    ) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor], None, None]:
        """Decode in (persistent) DataLoader worker processes, recording bad files.

        With a decode device, workers only read plain JPEGs (and decode the rest), and
        the batch is decoded here on that device, which the images then already are on.
        An unreadable file's row holds the next readable image (simclr.source.load_item)
        under the index asked for: views depend only on (seed, epoch, index, view)
        (augment_params), so under that image's own index they were bit-identical to
        its own row's where both were in the batch, a negative identical to its anchor.
        """
        raw = self.decode_device is not None
        loader, sampler = self.source._worker_loader(self.workers, self.pin, raw)
        steps = range(self.start_step, self.steps)
        sampler.batches = [self.batch_indices(s).tolist() for s in steps]
        asked = (torch.tensor(b, dtype=torch.int64) for b in sampler.batches)
        batches = iter(loader)
        try:
            for (images, idx, aspect, bad, reasons), idx_asked in zip(batches, asked, strict=True):
                for b, reason in zip(bad.tolist(), reasons, strict=True):
                    if b >= 0:
                        self.source._note_bad(b, reason)
                if raw:
                    _, images, aspect = decode_raw_batch(
                        self.source, images, idx, aspect,
                        self.decode_device)  # type: ignore[arg-type]  # (raw: one)
                yield idx_asked, images, aspect.to(torch.float32)
        except BaseException as exc:  # an error, or the run stopping early: the workers end
            close_loader_iterator(batches)  # now, not whenever the traceback holding them
            self.source.close()  # goes, and a later epoch of this source starts new ones
            died = worker_death(exc)
            if died is None:
                raise
            raise died from None
