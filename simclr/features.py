"""Features of a frozen encoder over a data set: the input side of every evaluation.

:func:`extract_features` runs the encoder in eval mode over a source with the
evaluation transform (App. B.5) and returns h = f(x) per image; :func:`iter_batches`
is the batch iterator it and the augmented protocols share (cached rows, DataLoader
workers, or JPEGs decoded on the device). Label checks and names for messages live here.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from simclr.data import unreadable_classes
from simclr.decode import DEFAULT_MAX_PIXELS
from simclr.errors import NonFiniteOutputs, SimCLRError, check_counts
from simclr.folders import ImageList, check_folder, list_folder
from simclr.loader import prefetched
from simclr.progress import Progress
from simclr.runtime import (
    autocast,
    close_loader_iterator,
    loader_worker_init,
    refuse_spawned_import,
    resolve_device,
    resolve_precision,
    worker_death,
)
from simclr.source import collate_raw, decode_device, decode_raw_batch, private_generator

log = logging.getLogger(__name__)


class Listings(NamedTuple):
    """A labeled pair's files as :func:`check_labeled_folders` listed them, for the
    command to open the folders without listing them again (None: a named data set, or
    no test folder)."""

    train: ImageList | None
    test: ImageList | None


def check_labeled_folders(train: str | None, test: str | None, flags: tuple[str, str],
                          train_split: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                          draft: Callable[[ImageList, bool], int] | None = None) -> Listings:
    """Fail now, in one line, on labeled folders before the data are decoded (or, for the
    kNN monitor, a sweep's evaluation and a --test read after training, before hours of
    training): missing, without class sub-folders, with other classes than each other,
    or none of whose images (or of a class's) decodes (opened until one does:
    :func:`simclr.data.unreadable_classes`); torchvision's named data sets pass.
    ``train_split``: the training folder is read as training data (a data set root's
    train/ split). ``max_pixels``: the command's --max-pixels; ``draft(files, train)``:
    the side the run decodes a folder's JPEGs at, at least (:func:`simclr.data.reading_draft`:
    the limit is on what is decoded), where known (None: 8 px). Returns both listings,
    for the checks a command makes on them and its opening of the folders (a folder of
    200k files takes seconds to list)."""
    check_folder(flags[0], train)
    check_folder(flags[1], test)
    listed = list_folder(train, train_split) if train else None
    held_out = list_folder(test, False) if test else None
    if listed is not None:
        check_labeled(listed, held_out, flags)
        if held_out is not None and Path(listed.root).resolve() == Path(held_out.root).resolve():
            log.warning("note: %s and %s are the same folder: the top-1 measures images the "
                        "classifier saw, not held-out ones", *flags)
        for flag, files in zip(flags, (listed, held_out), strict=True):
            if files is None:
                continue
            side = 8 if draft is None else draft(files, files is listed)
            try:  # (and none readable at all: said as such)
                empty = unreadable_classes(files, max_pixels, side)
            except SimCLRError as exc:
                raise SimCLRError(f"{flag}: {exc}") from None
            if files is held_out:  # (a test class folder without files: warned of, kept,
                empty = {k: e for k, e in empty.items() if e is not None}  # as before)
            # A class whose files all fail would leave the problem smaller without a
            # word: a kNN monitor's training class, read only after an epoch, measured 2
            # of 3 classes; a --test class, a top-1 of the other classes alone.
            if empty:
                first = next((e for e in empty.values() if e is not None), None)
                why = "" if first is None else f" (first: {first.path}: {first.reason})"
                raise SimCLRError(f"{flag} {files.root}: no readable image in class "
                                  f"folder(s) {_few(list(empty))}{why}")
    return Listings(listed, held_out)


def check_labeled(train: Any, test: Any | None = None,
                  flags: tuple[str, str] = ("--train", "--test")) -> int:
    """Number of classes of a labeled (train, test) pair; SimCLRError when unusable.

    Both sources must carry class labels (ImageFolder layout, not a flat folder), at
    least 2 classes, and the same class names in the same order.
    """
    for flag, source in zip(flags, (train, test), strict=True):
        if source is None:
            continue
        if isinstance(source, (str, os.PathLike)):  # (the library's callers)
            raise SimCLRError(f"{flag}: give an opened image source, e.g. "
                              f"simclr.data.open_source({os.fspath(source)!r}, DataConfig()), "
                              "not a path")
        where = source_name(source)
        labels = np.asarray(source.labels)
        if not source.classes or labels.size == 0 or (labels < 0).any():
            raise SimCLRError(f"{flag} {where}: images have no class labels "
                              "(needs one sub-folder per class)")
        if len(source.classes) < 2:
            raise SimCLRError(f"{flag} {where}: needs at least 2 classes, "
                              f"found {len(source.classes)}")
    present = set(np.asarray(train.labels).tolist())
    empty = [c for i, c in enumerate(train.classes) if i not in present]
    if empty:  # a class never seen in training would be counted wrong without a word
        raise SimCLRError(f"{flags[0]} {source_name(train)}: no readable image in class "
                          f"folder(s) {_few(empty)}")
    if test is not None and list(test.classes) != list(train.classes):
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        detail = ("; ".join(f"only in {flag}: {_few(names)}" for flag, names in
                            ((flags[0], only_train), (flags[1], only_test)) if names)
                  if only_train or only_test
                  else "same names in a different order")
        if _nfc(only_train) == _nfc(only_test) and only_train:  # e.g. copied from macOS
            detail = (f"{_few(only_train)} spelled with other Unicode characters in each "
                      "(NFC / NFD normalisation): rename one set alike")
        raise SimCLRError(f"{flags[0]} and {flags[1]} have different classes ({detail})")
    return len(train.classes)


def _nfc(names: Sequence[str]) -> set[str]:
    return {unicodedata.normalize("NFC", n) for n in names}


def _few(names: Sequence[str], limit: int = 5) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def source_name(source: Any) -> str:
    """A short human name of an ImageSource for messages (its folder when it has one)."""
    for attr in ("root", "path", "spec", "name"):
        value = getattr(source, attr, None)
        if value:
            return str(value)
    return "data"


def iter_batches(
    source: Any, indices: np.ndarray, batch_size: int, *,
    seed: int | Sequence[int] | None = None,
    drop_last: bool = False, workers: int | None = None, pin: bool = False,
    decode_on: torch.device | None = None, skip: int = 0, shard: tuple[int, int] = (0, 1),
    substitute: bool = True, keep_workers: bool = False,
) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor], None, None]:
    """Yield ``(indices (B,) int64, images uint8 (B,3,H,W), aspects float32 (B,))``
    over ``indices`` (aspect: width / height of the picture behind each stored square).

    ``seed`` shuffles the order (a fresh permutation per seed, e.g. ``[seed, epoch]``);
    cached sources slice their decoded array, uncached ones decode in DataLoader workers
    (on the CPU), or with ``decode_on`` read JPEGs there and decode them on that device.
    ``skip``: the first batches of the order not yielded, nor read (a resumed epoch).
    ``shard`` (rank, processes): this process's contiguous share of every global batch
    of ``batch_size`` (``drop_last`` needed), so the processes together see the one
    process's batches; it yields batches of ``batch_size // processes``.
    An unreadable file of an uncached source is recorded as skipped (said once) and, with
    ``substitute`` (training), replaced by the next readable image; without (evaluation,
    where each row stands for its file), left out of its batch.
    ``keep_workers`` (a training's epochs): the source's persistent workers decode, kept
    for its next epoch (the same batches); the caller ends them with
    :func:`close_workers`, or an epoch stopped early does.
    """
    order, batch_size = batch_order(indices, batch_size, seed, drop_last, shard, skip)
    if getattr(source, "cached", True):
        yield from _cached_batches(source, order, batch_size, pin)
        return
    yield from _decoded_batches(source, order, batch_size, workers, pin, decode_on, substitute,
                                keep_workers)


def _cached_batches(source: Any, order: np.ndarray, batch_size: int,
                    pin: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`iter_batches` of a cached source: its rows of ``order``, batch by batch.

    With ``pin`` (a CUDA device) each batch is pinned, in pretraining's prefetch thread
    (:func:`simclr.loader.prefetched`): the caller moves it with ``non_blocking``, and
    from pageable memory that copy first waits for the GPU's previous step; pinned in
    the thread, the gather and the copy into pinned memory overlap that step too.
    """
    def gathered() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for start in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[start:start + batch_size])
            images, aspect = source.batch(idx)
            yield idx, images.pin_memory() if pin else images, aspect

    return prefetched(gathered()) if pin else gathered()  # (a CPU run reads them here)


def close_workers(source: Any) -> None:
    """End now the decoding workers :func:`iter_batches` kept across the epochs of an
    uncached ``source`` (``keep_workers``), Ctrl-C held until they have stopped
    (:meth:`simclr.source.ImageSource.close`); a cached source has none."""
    if not getattr(source, "cached", True):
        source.close()


def batch_order(indices: np.ndarray, batch_size: int, seed: int | Sequence[int] | None,
                drop_last: bool, shard: tuple[int, int], skip: int) -> tuple[np.ndarray, int]:
    """The indices :func:`iter_batches` reads, in order, and its batch size (a shard's
    share of the global batch): shuffled by ``seed``, cut to whole batches with
    ``drop_last``, this rank's columns of every global batch, the first ``skip``
    batches left out."""
    order = np.asarray(indices, dtype=np.int64)
    if seed is not None:
        order = order[np.random.default_rng(seed).permutation(len(order))]
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    rank, processes = shard
    if processes > 1:
        share = batch_size // processes
        order = order[:stop].reshape(-1, batch_size)[:, rank * share:(rank + 1) * share]
        order, batch_size = order.reshape(-1), share
        stop = len(order)
    first = min(skip * batch_size, stop)
    return order[first:stop], batch_size


def _decoded_batches(
    source: Any, order: np.ndarray, batch_size: int, workers: int | None, pin: bool,
    decode_on: torch.device | None, substitute: bool, keep_workers: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`iter_batches` of a source without a decoded cache: the files decoded in
    DataLoader workers (or, with ``decode_on``, read there and decoded on that device),
    the source's persistent ones with ``keep_workers``, else a loader's of its own."""
    n_workers = getattr(source, "workers", 0) if workers is None else workers
    loader = _batch_loader(source, order, batch_size, n_workers, pin and decode_on is None,
                           decode_on is not None, keep_workers)
    wanted = (torch.from_numpy(order[i:i + batch_size]) for i in range(0, len(order), batch_size))
    batches = iter(loader)
    try:
        for (images, idx, aspect, bad, reasons), asked in zip(batches, wanted, strict=True):
            for b, reason in zip(torch.as_tensor(bad).tolist(), reasons, strict=True):
                if b >= 0:
                    source._note_bad(b, reason, substitute)
            if decode_on is not None:
                idx, images, aspect = decode_raw_batch(source, images, idx, aspect, decode_on,
                                                       substitute)
            idx = idx.long()
            if not substitute:  # an unreadable image is left out, not replaced by another
                kept = idx == asked
                if not kept.all():
                    idx, images = idx[kept], images[kept.to(images.device)]
                    aspect = aspect[kept]
            if len(idx):
                yield idx, images, aspect.float()
    except BaseException as exc:  # an error, or the caller stopping early
        close_loader_iterator(batches)  # (a kept pool is left half-read: ended, and
        if keep_workers:  # a later epoch starts new workers)
            source.close()
        died = worker_death(exc)
        if died is None:
            raise
        raise died from None
    if not keep_workers:
        close_loader_iterator(batches)


def _batch_loader(source: Any, order: np.ndarray, batch_size: int, workers: int, pin: bool,
                  raw: bool, keep_workers: bool) -> Iterable[tuple]:
    """A DataLoader of ``order``'s batches of ``batch_size``: the source's persistent one
    (``keep_workers``: under the spawn start method, macOS's and Windows', starting
    workers takes seconds, which a training paid every epoch), else one of its own."""
    from torch.utils.data import DataLoader, Subset

    if workers:
        refuse_spawned_import()  # (a call outside the API's entry points, too)
    if keep_workers:
        loader, sampler = source._worker_loader(workers, pin, raw)
        sampler.batches = [order[i:i + batch_size].tolist()
                           for i in range(0, len(order), batch_size)]
        return loader
    return DataLoader(Subset(source.dataset(raw=raw), order.tolist()),
                      batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=pin, drop_last=False, collate_fn=collate_raw if raw else None,
                      worker_init_fn=loader_worker_init(), generator=private_generator())


def train_flags(module: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in module.modules()]


def restore_flags(flags: list[tuple[nn.Module, bool]]) -> None:
    for m, training in flags:
        m.training = training


@contextmanager
def channels_last_weights(module: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """``module``'s 4-D weights and buffers in the channels_last memory format while the
    block runs (``on``; else unchanged), those it converted made contiguous again after.

    Why: with channels_last images and weights oneDNN's bf16 convolutions run 1.5-2x
    faster on a CPU (tensor cores on CUDA), and an evaluation often runs a module its
    caller passed in (the Python API, the kNN monitor's training model): converting it
    for good would change the layout that caller's own code (or optimizer) then meets.
    A model already in channels_last (a pretraining's) is left as it is. The values are
    the same; only the strides change (module.to keeps the Parameter objects).
    """
    if not on:
        yield module
        return
    converted = {name for name, t in _four_d(module)
                 if not t.is_contiguous(memory_format=torch.channels_last)}
    module.to(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        for name, t in _four_d(module):
            if name in converted:
                t.data = t.data.contiguous()


def _four_d(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``module``'s parameters and buffers that module.to(memory_format=) converts."""
    for name, t in (*module.named_parameters(), *module.named_buffers()):
        if t.dim() == 4:
            yield name, t


def resolve_runtime(device: str | torch.device, precision: str) -> tuple[torch.device, str]:
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return dev, resolve_precision(precision, dev)


def extract_features(
    encoder: nn.Module, source: Any, image_size: int, batch_size: int = 256,
    device: str | torch.device = "cpu", precision: str = "fp32", *,
    channels_last: bool = True, workers: int | None = None,
    indices: np.ndarray | None = None, progress: str | None = None, decoder: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Representations h of a source with the evaluation transform (App. B.5):
    ``(features float32 (N, D), labels int64 (N,))``; see :func:`indexed_features`."""
    feats, labels, _ = indexed_features(encoder, source, image_size, batch_size, device,
                                        precision, channels_last=channels_last,
                                        workers=workers, indices=indices, progress=progress,
                                        decoder=decoder)
    return feats, labels


def encoded_batches(
    encoder: nn.Module, source: Any, image_size: int, batch_size: int = 256,
    device: str | torch.device = "cpu", precision: str = "fp32", *,
    channels_last: bool = True, workers: int | None = None,
    indices: np.ndarray | None = None, progress: str | None = None, decoder: str | None = None,
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """:func:`indexed_features` a batch at a time: ``(image indices int64 (B,), outputs
    float32 (B, D) on CPU)``, for a caller that keeps what it needs of each batch (a
    classifier's test: its logits ranked, not every image's score for every class). The
    encoder's train flags, and with ``channels_last`` its weights' memory format
    (:func:`channels_last_weights`), are restored when the batches end or are closed
    (close it: ``contextlib.closing``); the outputs are not checked finite here.
    ``decoder``: where an uncached source's JPEGs decode (``--decoder``: auto, pil or
    device; None: the one the source was opened with; :func:`simclr.source.decode_device`)."""
    from simclr.augment import eval_resize
    from simclr.decode import eval_store_size

    check_counts({"--batch-size": batch_size})
    dev, prec = resolve_runtime(device, precision)
    order = np.arange(source.num_images) if indices is None else np.asarray(indices)
    # An evaluation source of this size stores the squares around the transform's
    # centre crops (data.py)
    central = eval_store_size(getattr(source, "store", "")) == image_size
    flags = train_flags(encoder)
    encoder.to(dev).eval()
    shown = Progress.of_named_pass(len(order), progress)
    try:
        with channels_last_weights(encoder, channels_last), closing(iter_batches(
                source, order, batch_size, workers=workers, pin=dev.type == "cuda",
                decode_on=decode_device(decoder, dev, source), substitute=False)) as batches:
            while True:
                # Inference mode over each batch's reading and encoding, not across the
                # yield: the caller's own work runs in its own mode.
                with torch.inference_mode():
                    batch = next(batches, None)
                    if batch is None:
                        return
                    idx, images, aspect = batch
                    x = eval_resize(images.to(dev, non_blocking=True), image_size, aspect,
                                    central=central)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with autocast(dev, prec):
                        h = encoder(x)
                    h = h.float().cpu()
                shown.advance(len(idx))
                yield idx, h
    finally:
        shown.close()
        restore_flags(flags)


def indexed_features(
    encoder: nn.Module, source: Any, image_size: int, batch_size: int = 256,
    device: str | torch.device = "cpu", precision: str = "fp32", *,
    channels_last: bool = True, workers: int | None = None,
    indices: np.ndarray | None = None, progress: str | None = None, decoder: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Representations h of a source with the evaluation transform (App. B.5), and the
    image each row stands for.

    Images go through ``augment.eval_resize`` to ``image_size`` (resize + center crop
    0.875, or a plain resize for sides <= 32), the encoder runs in eval mode under
    ``torch.inference_mode`` (optionally bf16/fp16 autocast; ``channels_last``: images
    and weights in that memory format, the faster one, the weights' own restored after).
    The encoder is moved to ``device`` and otherwise unchanged (train flags restored).

    Returns ``(features float32 (N, D), labels int64 (N,), image indices int64 (N,))``
    in source order (or in the order of ``indices``); an unreadable file of an uncached
    source is left out (and recorded in ``source.skipped``), never replaced.
    ``progress``: the pass's name on stderr (:meth:`Progress.of_named_pass`, rank 0 alone);
    None: it runs unseen (the kNN monitor inside a pretraining).
    """
    order = np.arange(source.num_images) if indices is None else np.asarray(indices)
    labels_all = np.asarray(source.labels, dtype=np.int64)
    feats, seen = [], []
    with closing(encoded_batches(encoder, source, image_size, batch_size, device, precision,
                                 channels_last=channels_last, workers=workers, indices=order,
                                 progress=progress, decoder=decoder)) as batches:
        for idx, h in batches:
            feats.append(h)
            seen.append(idx)
    if not feats:
        raise SimCLRError(f"{source_name(source)}: no images to evaluate")
    idx_all = torch.cat(seen).numpy()
    out = torch.cat(feats)
    if not torch.isfinite(out).all():  # any accuracy on them would look plausible and mean nothing
        raise NonFiniteOutputs(f"{source_name(source)}: the encoder's outputs are not finite "
                               "(a diverged or damaged checkpoint?)")
    return out.numpy().astype(np.float32, copy=False), labels_all[idx_all], idx_all
