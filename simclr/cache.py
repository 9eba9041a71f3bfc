"""The decoded cache: small images decoded once into a uint8 memmap (issue 3, item 2).

An epoch of CIFAR-sized images then costs a gather of rows, no decoding. The cache
(N, side, side, 3) lives under ``cfg.cache_dir`` as ``<folder>-<side>px-<key>.npy``
with a JSON sidecar (which also holds each image's aspect ratio, see
:func:`simclr.decode.fit_square`); the key hashes every file's path, size and mtime,
so a changed folder gets a new cache. Writes go to temporary names renamed into place,
so an interrupted build leaves nothing that would be trusted; the sidecar's crc32 of the
.npy finds pixels changed since (checked when the file's stat stamp changed). A build
removes the caches of its folder it replaces; ``simclr cache`` lists the caches and
removes those of folders that are gone or long unused (:mod:`simclr.cache_entries`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from simclr.cache_entries import (
    BUILD_LEFTOVERS,
    LEFTOVER_S,
    CacheEntry,
    build_leftovers,
    cache_entries,
    cache_folder,
    cache_version,
    remove_entries,
    remove_entry,
    remove_replaced,
    replaced_caches,
)
from simclr.decode import DEFAULT_MAX_PIXELS, ReadFailure, load_square, pil_truncation
from simclr.errors import BadImageError, SimCLRError
from simclr.files import (
    discard,
    held_in_turn,
    remove_stale_temporaries,
    temporary_name,
    write_atomically,
)
from simclr.interrupts import stop_signals
from simclr.runtime import died_why, refuse_spawned_import

if TYPE_CHECKING:
    from simclr.folders import ImageList

log = logging.getLogger(__name__)

_CHUNK = 256  # images per decoding task
_CRC_CHUNK = 16 << 20  # bytes of the .npy checksummed at a time
# A read that may pass (EIO, ESTALE...: a network file system's glitch) is tried again
# after each of these pauses (seconds) before it fails the build: one glitch must not
# throw away an hour of decoding.
_READ_PAUSES = (0.1, 0.5)


# Forking starts the decoding processes at once, but a forked copy of a threaded process
# (torch's and Accelerate's thread pools) can crash or hang on macOS, which has fork
# too; elsewhere they are spawned (their tasks and initializer pickled by name).
_FORK_IS_SAFE = sys.platform.startswith("linux")

_Task = tuple[str | None, int, list[str], int, int, str]


def _decode_chunk(task: _Task) -> tuple[list[tuple[int, str]], list[float]]:
    """Pool task: decode ``paths`` into rows start.. of the .npy at ``target`` (None:
    only check them). Returns (index, reason) of the bad ones and every file's stored
    aspect (1.0 for a bad one)."""
    target, start, paths, side, max_pixels, store = task
    rows = np.load(target, mmap_mode="r+") if target is not None else None
    bad: list[tuple[int, str]] = []
    aspects = [1.0] * len(paths)
    for k, path in enumerate(paths):
        try:
            arr, aspects[k] = _load_retrying(path, side, max_pixels, store)
        except BadImageError as exc:
            bad.append((start + k, exc.reason))
            continue
        if rows is not None:
            rows[start + k] = arr
    if rows is not None:
        rows.flush()
    return bad, aspects


def _load_retrying(path: str, side: int, max_pixels: int, store: str) -> tuple[np.ndarray, float]:
    """:func:`~simclr.decode.load_square`, a read that may pass (:class:`ReadFailure`)
    tried again after each of :data:`_READ_PAUSES`; the last failure is raised (the
    build fails, nothing kept). A bad image (:class:`BadImageError`) is not retried."""
    for pause in _READ_PAUSES:
        try:
            return load_square(path, side, max_pixels, store)
        except ReadFailure as exc:
            log.debug("%s; trying again in %.1f s", exc, pause)
            time.sleep(pause)
    return load_square(path, side, max_pixels, store)


def decode_files(
    paths: Sequence[str], side: int, max_pixels: int, workers: int, target: str | None,
    what: str, store: str = "full",
) -> tuple[list[tuple[int, str]], np.ndarray]:
    """Decode every file in parallel processes (PIL decoding is CPU- and GIL-bound for
    small files), logging progress; returns the sorted (index, reason) of bad files and
    the stored aspects float32 (N,) (see :func:`simclr.decode.stored_aspect`)."""
    tasks: list[_Task] = [(target, s, list(paths[s:s + _CHUNK]), side, max_pixels, store)
                          for s in range(0, len(paths), _CHUNK)]
    bad: list[tuple[int, str]] = []
    aspects: list[float] = []
    start, last_report, done = time.perf_counter(), time.perf_counter(), 0
    log.info("%s: %d images with %d process(es)", what, len(paths), workers)

    def account(result: tuple[list[tuple[int, str]], list[float]], n: int) -> None:
        nonlocal last_report, done
        bad.extend(result[0])
        aspects.extend(result[1])
        done += n
        if time.perf_counter() - last_report > 5.0:
            last_report = time.perf_counter()
            log.info("%s: %d/%d (%.0f s)", what, done, len(paths), last_report - start)

    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            account(_decode_chunk(task), len(task[2]))
    else:
        refuse_spawned_import()  # (a spawned process imports the script that called)
        ctx = multiprocessing.get_context("fork" if _FORK_IS_SAFE else "spawn")
        # Ctrl-C reaches the whole process group: the workers leave it to this process,
        # which stops them (each would otherwise print its own KeyboardInterrupt). An
        # executor, not multiprocessing.Pool: a worker killed outright (the out-of-memory
        # killer) breaks it, where a Pool would wait forever for the chunk it held.
        pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx,
                                   initializer=_decoding_process,
                                   initargs=(pil_truncation(), os.getpid()))
        try:
            for task, result in zip(tasks, pool.map(_decode_chunk, tasks), strict=True):
                account(result, len(task[2]))
        except BrokenProcessPool:
            raise SimCLRError(f"{what}: a decoding process ended "
                              f"({died_why(ctx.get_start_method())}); nothing was kept") from None
        except BaseException:  # Ctrl-C, SIGTERM: stop the chunks in hand too, as a Pool
            running = getattr(pool, "_processes", None) or {}  # did (a private attribute,
            for process in list(running.values()):  # there since Python 3.2)
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    log.info("%s: done in %.1f s, %d bad", what, time.perf_counter() - start, len(bad))
    return sorted(bad), np.asarray(aspects, dtype=np.float32)


def _decoding_process(truncated: bool, parent: int | None = None) -> None:
    """A decoding process's signals: Ctrl-C is the main process's to handle, SIGTERM
    ends it (as the pool's own shutdown expects), as SIGHUP and SIGUSR1 do, not the
    command's handler it inherits; and it ends with the main process (``parent``), even
    one killed outright (:func:`_end_with_parent`; None: tied to none, as when called
    in a process of its own). PIL's truncated-image setting: the main process's
    (:func:`~simclr.decode.pil_truncation`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in stop_signals():  # (one nohup ignores stays ignored)
        signal.signal(sig, signal.SIG_DFL)
    if parent is not None:
        _end_with_parent(parent)
    pil_truncation(truncated)


_PR_SET_PDEATHSIG = 1  # (linux/prctl.h)


def _end_with_parent(parent: int) -> None:
    """On Linux, have the kernel send this process SIGTERM when ``parent`` dies: a main
    process killed with SIGKILL (the out-of-memory killer) runs no shutdown, and its
    decoding processes would run on for good, their parent init. (The kernel goes by
    the thread that started this one: the pool starts its processes from the thread
    that builds.) Best effort: elsewhere, or where prctl fails, nothing is done. A
    parent gone before the request was made: this process ends now."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # (no libc to load, no prctl in it)
        return
    if os.getppid() != parent:
        os._exit(1)


def _cache_key(images: ImageList, side: int, max_pixels: int, store: str) -> str:
    """Hash of (relative paths, each file's size, mtime, inode and ctime, side, limits,
    store, PIL's truncated-image setting, format version). A truncated file is a grey-
    bottomed picture under a library caller's ``LOAD_TRUNCATED_IMAGES`` and a skipped one
    under every command's (:func:`~simclr.decode.refuse_truncated_images`). Unpacked
    archives and ``rsync -t`` copies give files one mtime, and same-sized formats one
    size: the inode follows a file through renames (two files swapped) and the ctime,
    which no tool sets back, changes with any write (an EXIF tag edited in place under
    ``exiftool -P``)."""
    h = hashlib.sha256(json.dumps([cache_version(store), side, max_pixels, store,
                                   pil_truncation()]).encode())
    for p, name in zip(images.paths, images.relative_paths(), strict=True):
        try:
            stamp = _stat_stamp(p)
        except OSError:
            stamp = "missing"
        # fsencode: a file name need not be valid UTF-8 (its bytes are kept as escapes)
        h.update(os.fsencode(name) + f"\0{stamp}\n".encode())
    return h.hexdigest()[:20]


def _stat_stamp(path: str | os.PathLike) -> str:
    """A file's size, mtime, inode and ctime: any write to it changes the ctime, which
    no tool sets back. OSError if it cannot be read."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def _write_sidecar(meta_path: Path, meta: dict) -> None:
    """Write a cache's JSON record, whole or not at all. Raises OSError."""
    write_atomically(meta_path, lambda tmp: tmp.write_text(json.dumps(meta), encoding="utf-8"))


def _pixel_crc(npy: Path) -> int:
    """zlib.crc32 of the whole .npy, read in chunks (a cache may exceed the memory)."""
    crc = 0
    with open(npy, "rb") as f:
        while chunk := f.read(_CRC_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _pixels_intact(npy: Path, meta_path: Path, meta: dict) -> bool:
    """Whether the .npy holds the pixels it was built with (a flipped byte was trained
    on). Read whole only when its stamp differs from the one of the last check (a
    write, a copy): ImageNet at 64 px is 15 GB, too much to read on every open. A
    check that passes records the new stamp (a read-only cache folder: next time too)."""
    stamp = _stat_stamp(npy)
    if stamp == meta["checked"]:
        return True
    if _pixel_crc(npy) != meta["crc32"]:
        log.warning("ignoring the cache %s: its pixels changed since it was built (its "
                    "checksum differs); rebuilding", npy)
        return False
    meta["checked"] = stamp
    with contextlib.suppress(OSError):
        _write_sidecar(meta_path, meta)
    return True


def _read_cache(
    npy: Path, meta_path: Path, shape: tuple[int, ...], store: str
) -> tuple[np.ndarray, dict] | None:
    """The cache of ``store`` if both files exist and agree (its sidecar of the current
    :func:`~simclr.cache_entries.cache_version`); None means "build it"."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        rows = np.load(npy, mmap_mode="r")
        if not isinstance(meta, dict) or meta.get("version") != cache_version(store) or \
                rows.shape != shape or rows.dtype != np.uint8:
            return None
        if not _well_formed(meta, shape[0]):  # an edited or foreign sidecar: not trusted
            log.warning("ignoring the cache %s: its record %s is not one simclr wrote; "
                        "rebuilding", npy, meta_path)
            return None
        intact = _pixels_intact(npy, meta_path, meta)
    except (OSError, ValueError, EOFError) as exc:  # (EOFError: an emptied .npy)
        log.warning("ignoring unreadable cache %s (%s); rebuilding", npy, exc)
        return None
    return (rows, meta) if intact else None


def _well_formed(meta: dict, n: int) -> bool:
    """Whether a sidecar's entries are what :func:`_build_cache_files` writes for ``n``
    files: the kept and skipped indices (together each file once, reasons as text), and
    None or one positive aspect a file. (In numpy: ImageNet's sidecar is 1.3M entries.)"""
    kept, skipped, aspect = meta.get("kept"), meta.get("skipped"), meta.get("aspect", 0)
    if not (isinstance(meta.get("crc32"), int) and isinstance(meta.get("checked"), str)):
        return False
    if not (isinstance(kept, list) and isinstance(skipped, list) and all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[1], str) for e in skipped)):
        return False
    indices = np.array(kept + [e[0] for e in skipped])
    if indices.size != n or n and (indices.dtype.kind != "i" or
                                   not np.array_equal(np.sort(indices), np.arange(n))):
        return False
    if aspect is None:
        return True
    values = np.array(aspect) if isinstance(aspect, list) else np.array([])
    return values.shape == (n,) and values.dtype.kind in "if" and bool(
        (np.isfinite(values) & (values > 0)).all())


class DecodedCache(NamedTuple):
    """What :func:`build_cache` returns."""

    rows: np.ndarray  # uint8 memmap (N, side, side, 3); rows of skipped files stay zero
    kept: np.ndarray  # int64 (K,): indices of the readable files
    skipped: list[tuple[str, str]]  # (path, reason) of the others
    path: Path  # the .npy
    aspect: np.ndarray | None  # float32 (N,) stored aspects; None when all are 1


# What to do when the cache cannot be written (only pretraining and the supervised
# baseline have a --cache flag).
ELSEWHERE = "pass another --cache-dir (pretrain and supervised: or --cache off)"


class CacheFolderError(SimCLRError):
    """The cache folder cannot be made or written in (a read-only home, one made
    read-only since it was used): a default one is done without (--cache auto)."""


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # what CacheFolderError covers


def build_cache(
    images: ImageList, side: int, cache_dir: str | os.PathLike, workers: int,
    max_pixels: int = DEFAULT_MAX_PIXELS, store: str = "full",
) -> DecodedCache:
    """Decode every image once into a (N, side, side, 3) uint8 memmap, or reuse it (the
    caller names the skipped files, built or reused: :meth:`ImageSource.skip_summary`).

    ``store``: how each image becomes its square (:func:`simclr.decode.fit_square`);
    the aspect ratio of what each square stands for is kept in the JSON sidecar. The
    .npy is written to a temporary name, fsynced and renamed, then the sidecar the
    same way, so an interrupted build never leaves a cache that would be trusted.
    """
    folder = cache_folder(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocked = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        reason = f"{blocked} is a file" if blocked else exc.strerror
        raise CacheFolderError(f"cannot create the cache folder {folder}: {reason}; "
                               f"{ELSEWHERE}") from None
    # The folder's name, shortened: the file name must stay within NAME_MAX (255 bytes)
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(images.root).name)
    base = base[:48]  # (even 48 CJK characters are 144 bytes)
    key = _cache_key(images, side, max_pixels, store)
    stem = f"{base or 'images'}-{side}px-{key}"
    npy, meta_path = folder / f"{stem}.npy", folder / f"{stem}.json"
    shape = (len(images.paths), side, side, 3)
    found = _read_cache(npy, meta_path, shape, store)
    if found is not None:
        rows, meta = found
        log.info("using the decoded cache %s", npy)
        try:  # its last use, which `simclr cache --clean` goes by; a folder moved with its
            if meta.get("root") == images.root:  # files unchanged: its new place, which
                os.utime(meta_path)  # `simclr cache` checks is still there
            else:
                meta["root"] = images.root
                _write_sidecar(meta_path, meta)
        except OSError:  # a read-only cache folder is still a cache
            pass
    else:
        def doomed() -> list[tuple[CacheEntry, str]]:  # (what the finished build removes
            new = _new_entry(npy, meta_path, images, side, max_pixels, store)  # anyway)
            return replaced_caches([e for e in cache_entries(folder) if e.npy != npy] + [new],
                                   npy, str(images.root))

        # One build of a cache at a time: two runs of one folder started together (two
        # seeds) decoded it twice, side by side (twice the disk: the second failed on a
        # disk with room for one); the second now waits, then reads the first's.
        with held_in_turn(folder / f".{stem}.lock", lambda: log.warning(
                "waiting for another command that is building the decoded cache %s",
                npy)) as waited:
            found = _read_cache(npy, meta_path, shape, store) if waited else None
            if found is None:
                found = _build_cache_files(images, side, npy, meta_path, shape, workers,
                                           max_pixels, store, doomed)
                if _cache_key(images, side, max_pixels, store) == key:
                    remove_replaced(folder, npy, str(images.root))
                else:
                    _drop_stale_build(npy, meta_path, images.root)
        rows, meta = found
    skipped = [(images.paths[i], reason) for i, reason in meta["skipped"]]
    aspect = None if meta["aspect"] is None else np.asarray(meta["aspect"], dtype=np.float32)
    return DecodedCache(rows, np.asarray(meta["kept"], dtype=np.int64), skipped, npy, aspect)


def _variant(images: ImageList, max_pixels: int) -> dict[str, object]:
    """What besides the folder's files sets a cache's contents, recorded in its sidecar:
    two caches of one folder that differ in these are both current (a pretraining keeps
    the images beside the class folders, an evaluation leaves them out; a library
    caller's PIL reads truncated files, a command's refuses them)."""
    loose = bool(images.classes) and bool((np.asarray(images.labels) < 0).any())
    return {"max_pixels": max_pixels, "loose": loose, "truncated": pil_truncation()}


def _build_cache_files(
    images: ImageList, side: int, npy: Path, meta_path: Path, shape: tuple[int, ...],
    workers: int, max_pixels: int, store: str,
    doomed: Callable[[], Sequence[tuple[CacheEntry, str]]] = tuple,
) -> tuple[np.ndarray, dict]:
    """Decode the folder into ``npy`` and write its record ``meta_path``; ``doomed()``:
    the caches (and why) that this build replaces (:func:`replaced_caches`), removed first
    only where the disk has room for the new one with theirs alone."""
    # A build killed outright (SIGKILL, out of memory) left its whole-size file: free
    # the disk before reserving it again. An hour untouched: no build is writing it.
    for pattern in BUILD_LEFTOVERS:
        remove_stale_temporaries(npy.parent, pattern, after_s=LEFTOVER_S)
    tmp = temporary_name(npy)
    nbytes = math.prod(shape)
    try:
        _make_room(npy.parent, nbytes, doomed)
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        del rows
        # Reserve the blocks now: a full disk then fails here with ENOSPC instead of
        # killing the process with SIGBUS when a memmap page is written.
        with open(tmp, "r+b") as f:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        what = f"decoding {images.root} into the cache"
        bad, aspect = decode_files(images.paths, side, max_pixels, workers, str(tmp), what,
                                   store)
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        crc = _pixel_crc(tmp)  # (just written: read from the page cache)
        os.replace(tmp, npy)
    except OSError as exc:
        discard(tmp)
        # (a folder this process may not write: --cache auto does without, as where the
        # folder cannot be made; a full disk stays an error, which a user should hear of)
        error = CacheFolderError if exc.errno in NOT_WRITABLE else SimCLRError
        raise error(f"cannot write the decoded cache {npy} ({nbytes / 2**20:.0f} MiB): "
                    f"{exc.strerror or exc}{_killed_builds(npy.parent, exc)}; {ELSEWHERE}"
                    ) from None
    except BaseException:
        discard(tmp)
        raise
    rows, checked = _open_built(npy)
    bad_set = {i for i, _ in bad}
    meta = {
        "version": cache_version(store), "root": images.root, "side": side, "store": store,
        "num_files": shape[0], **_variant(images, max_pixels), "crc32": crc,
        "checked": checked,
        "kept": [i for i in range(shape[0]) if i not in bad_set],
        "skipped": [[i, reason] for i, reason in bad],
        # float32 values, written exactly (a float32 round-trips through its repr)
        "aspect": None if bool((aspect == 1.0).all()) else [float(a) for a in aspect],
    }
    try:
        _write_sidecar(meta_path, meta)
    except OSError as exc:  # a cache without its sidecar is no cache: not left behind
        discard(npy)
        error = CacheFolderError if exc.errno in NOT_WRITABLE else SimCLRError
        raise error(f"cannot write the decoded cache's record {meta_path}: "
                    f"{exc.strerror or exc}; {ELSEWHERE}") from None
    return rows, meta


def _killed_builds(folder: Path, exc: OSError) -> str:
    """Where a disk is full: the unfinished files of builds killed outright in ``folder``
    (their process gone from here), which the full disk may be owed to; a build removes
    them only an hour untouched (another machine's may be writing one)."""
    if exc.errno != errno.ENOSPC:
        return ""
    left = build_leftovers(folder, after_s=0.0)
    if not left:
        return ""
    return (f" ({len(left)} unfinished cache file(s) of {sum(n for _, n in left) / 2**20:.0f} "
            f"MiB in {folder}, from commands killed while building: delete them unless "
            "another machine sharing the folder builds there now)")


def _make_room(folder: Path, nbytes: int,
               doomed: Callable[[], Sequence[tuple[CacheEntry, str]]]) -> None:
    """OSError ENOSPC, before any file is made, when ``folder``'s file system has fewer
    than ``nbytes`` free, counting the ``doomed()`` caches (and why; listed only then:
    ImageNet's sidecar is megabytes), which the finished build would remove anyway, as
    free: those are then removed first (a disk with room for one cache could otherwise
    never rebuild a changed folder's). Checked before the
    reservation: posix_fallocate on ext4 may reserve part of the file before it fails,
    and leave the disk full until the file is deleted (for every other process too).
    A file system that cannot say (statvfs fails) is left to the reservation."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # (AttributeError: Windows has no statvfs)
        return
    free = stats.f_bavail * stats.f_frsize
    if free >= nbytes:
        return  # (the doomed ones go after the build, should it succeed)
    replaced = doomed()
    if free + sum(entry.nbytes for entry, _ in replaced) < nbytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    remove_entries(replaced, ", to make room for its new cache")


def _open_built(npy: Path) -> tuple[np.memmap, str]:
    """The memmap of a .npy just renamed into place, and its stat stamp (after the rename,
    which sets the ctime). Opened before the record is written: a `simclr cache --clear`
    (or --clean) from another process that removes the .npy from now on leaves this run
    its pixels, and at worst a record alone, which
    :func:`~simclr.cache_entries.cache_entries` lists and removes; one that removed it
    already is a one-line error, not a traceback."""
    try:
        return np.load(npy, mmap_mode="r"), _stat_stamp(npy)
    except FileNotFoundError:
        raise SimCLRError(f"the decoded cache {npy} was removed while it was being built "
                          "(simclr cache --clear or --clean?); run again") from None
    except OSError as exc:
        raise SimCLRError(f"cannot read the decoded cache {npy} just written: "
                          f"{exc.strerror or exc}; {ELSEWHERE}") from None


def _new_entry(npy: Path, meta_path: Path, images: ImageList, side: int, max_pixels: int,
               store: str) -> CacheEntry:
    """The :class:`CacheEntry` a build of ``npy`` will list as, the newest (for
    :func:`replaced_caches` before the build)."""
    variant = _variant(images, max_pixels)
    return CacheEntry(npy, meta_path, 0, str(images.root), len(images.paths), side,
                      math.inf, store, (variant["max_pixels"], variant["loose"],
                                        variant["truncated"]), False,
                      cache_version(store))


def _drop_stale_build(npy: Path, meta_path: Path, root: str) -> None:
    """A build whose files changed while it decoded them (an image edited, replaced or
    removed): its pixels may be those of the new contents, its name the key of the old
    ones. Kept, it would read as the folder's newest cache and take the current one (a
    run's that started after the change) for one it replaced, which this build, --clean
    or the next build would delete; and it would never be reused (no file's ctime goes
    back to its old key), nor under the new key, which its pixels read before the change
    need not match. So nothing is removed for it, and it is deleted at once: this run
    reads the pixels it decoded from its open memmap (as it would have read the files
    uncached), the next run decodes the folder again."""
    log.warning("the folder %s changed while it was being decoded: this run uses the "
                "pictures as they were read; its cache is not kept", root)
    try:
        remove_entry(CacheEntry(npy, meta_path, 0, root, 0, 0, 0.0))
    except SimCLRError:  # (a mapped file on Windows: the sidecar, removed first, is gone
        pass  # and a .npy alone replaces nothing; --clean removes it an hour later)
