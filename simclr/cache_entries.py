"""The cache folder and the decoded caches in it (``simclr cache``).

Where the folder is (:func:`cache_folder`: ``--cache-dir``, the default one under
``$XDG_CACHE_HOME`` or ``~/.cache``); each cache listed as a :class:`CacheEntry`
(:func:`cache_entries`, its sidecar's record: folder, side, storage, variant, version),
described, and removed: those a newer cache of the same folder replaced
(:func:`superseded`, :func:`replaced_caches`, removed after a build), an earlier simclr's
(:func:`outdated`), and the files of builds killed outright (:func:`build_leftovers`).
:mod:`simclr.cache` builds and reads the caches.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from simclr.config import DataConfig
from simclr.decode import DEFAULT_MAX_PIXELS, is_eval_store
from simclr.errors import SimCLRError
from simclr.files import stale_temporaries

log = logging.getLogger(__name__)

# A cache's format version (:func:`cache_version`) is in its key and its sidecar: an
# earlier version's caches are never read again, :func:`outdated`, removed by the next
# build of their folder. Bump CACHE_VERSION when the layout, the decoding or the key
# changes (every store: pretraining caches too, an ImageNet-scale one an hour to decode
# again); bump EVAL_CACHE_VERSION alone when only an evaluation's squares change
# (stores 'eval:S', simclr.decode.is_eval_store): the 'full' and 'center' caches, their
# bytes the same, are then kept. An evaluation cache's version is their sum, so that
# either bump reaches it; neither is ever set back (no reset of one when the other is
# bumped: a sum that fell back would read an earlier simclr's cache again).
# CACHE_VERSION: 5, PIL's truncated-image setting in the key and the sidecar; 6, an
# evaluation's squares placed around torchvision's single centre crop, not the central
# square, a pixel off it for many shapes (simclr.decode.eval_square_start), before
# EVAL_CACHE_VERSION, which began at 0 to keep every cache's version (and key) at 6.
CACHE_VERSION = 6
EVAL_CACHE_VERSION = 0
DEFAULT_CACHE_DIR = DataConfig.cache_dir  # (~/.cache/simclr/decoded)


def cache_folder(cache_dir: str | os.PathLike) -> Path:
    """The folder ``cache_dir`` names, whole; the default one under ``$XDG_CACHE_HOME``
    where that is set (an absolute path, as the XDG spec has it), as most Linux tools
    keep their caches, else under ``~/.cache``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if is_default_cache_dir(cache_dir) and os.path.isabs(xdg):
        return Path(xdg) / Path(DEFAULT_CACHE_DIR).relative_to("~/.cache")
    return Path(cache_dir).expanduser().absolute()  # (messages name it whole)


def is_default_cache_dir(cache_dir: str | os.PathLike) -> bool:
    """Whether ``cache_dir`` is the default, not one the user named (the command line
    gives the default as it is written, its ``~`` unexpanded)."""
    return str(cache_dir) == DEFAULT_CACHE_DIR


class CacheEntry(NamedTuple):
    """One decoded cache in the cache folder (``simclr cache``)."""

    npy: Path
    meta: Path
    nbytes: int  # the .npy and its sidecar
    root: str  # the image folder it was decoded from ('?' if the sidecar is unreadable)
    images: int
    side: int
    last_used: float  # the sidecar's mtime: a build writes it, a reuse touches it
    store: str | None = None  # how it was stored (None: a cache from before it was kept)
    variant: tuple = ()  # the rest of what sets its contents (:func:`simclr.cache._variant`)
    orphan: bool = False  # a record whose .npy is gone (``nbytes``: the record's)
    version: int | None = None  # its sidecar's cache_version (None: unreadable)


# What build_cache names its files: <folder>-<side>px-<key>.npy. Nothing else in the
# cache folder is ever listed or deleted (it may hold a user's own .npy files).
_CACHE_NAME = re.compile(r"[\w-]*-\d+px-[0-9a-f]{20}\.npy")


# What a build killed outright (SIGKILL, the out-of-memory killer) leaves: its .npy's
# temporary name, or its sidecar's (written last, but through a temporary name too, as
# is a reused cache's new place). Only names of this shape: a user's own *.tmp-* files
# in the cache folder are theirs.
BUILD_LEFTOVERS = ("*-*px-*.npy.tmp-*", "*-*px-*.json.tmp-*")


LEFTOVER_S = 3600.0  # an hour untouched: no build is writing it


def _stale_leftovers(folder: Path, after_s: float = LEFTOVER_S) -> list[Path]:
    """The :data:`BUILD_LEFTOVERS` in ``folder`` whose process is gone (here), ``after_s``
    untouched."""
    return [path for pattern in BUILD_LEFTOVERS
            for path in stale_temporaries(folder, pattern, after_s)]


def cache_entries(cache_dir: str | os.PathLike) -> list[CacheEntry]:
    """The caches in ``cache_dir``, least recently used first, and the records whose .npy
    is gone (``orphan``): a `simclr cache --clear` from another process removed it while
    a build wrote its record, and nothing else would ever list or remove them."""
    folder = cache_folder(cache_dir)
    if not folder.is_dir():
        return []
    found = [_entry(npy, npy.with_suffix(".json"), orphan=False)
             for npy in folder.glob("*.npy") if _CACHE_NAME.fullmatch(npy.name)]
    listed = {e.meta for e in found if e is not None}
    found += [_entry(meta.with_suffix(".npy"), meta, orphan=True)
              for meta in folder.glob("*.json") if meta not in listed and
              _CACHE_NAME.fullmatch(meta.with_suffix(".npy").name) and
              not meta.with_suffix(".npy").exists()]
    return sorted((e for e in found if e is not None), key=lambda e: e.last_used)


def _entry(npy: Path, meta_path: Path, orphan: bool) -> CacheEntry | None:
    """The :class:`CacheEntry` of a cache's files (of its record alone: ``orphan``); None
    if they were removed meanwhile (another clean)."""
    there = meta_path if orphan else npy
    try:
        size = there.stat().st_size
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            root, images, side = str(meta["root"]), int(meta["num_files"]), int(meta["side"])
            used = meta_path.stat().st_mtime
            size += 0 if orphan else meta_path.stat().st_size
            store = meta.get("store")
            variant: tuple = (meta.get("max_pixels"), meta.get("loose"),
                              meta.get("truncated"))
            version = meta.get("version")
            _check_recorded(store, variant)
        # (RecursionError: `[[[[...` nested deep)
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            root, images, side, used, store = "?", 0, 0, there.stat().st_mtime, None
            variant, version = (), None
    except OSError:
        return None
    return CacheEntry(npy, meta_path, size, root, images, side, used, store, variant, orphan,
                      version if isinstance(version, int) else None)


def _check_recorded(store: Any, variant: tuple[Any, Any, Any]) -> None:
    """Raise TypeError unless a sidecar's storage and variant are of the types simclr
    writes (a string; a number and two bools; None where not recorded): an edited or
    damaged sidecar's list is no key to tell caches apart by (unhashable, a TypeError's
    traceback listing them), so the sidecar reads as damaged."""
    max_pixels, loose, truncated = variant
    if not (store is None or isinstance(store, str)) or not (
            max_pixels is None or type(max_pixels) in (int, float)) or \
            not all(flag is None or isinstance(flag, bool) for flag in (loose, truncated)):
        raise TypeError("not a sidecar simclr wrote")


def cache_version(store: str | None) -> int:
    """The format version of a cache of ``store`` (its key, its sidecar's "version"):
    :data:`CACHE_VERSION`, and for an evaluation's ('eval:S') :data:`EVAL_CACHE_VERSION`
    added. A sidecar without a store (an older simclr's) goes by CACHE_VERSION."""
    evaluation = isinstance(store, str) and is_eval_store(store)
    return CACHE_VERSION + (EVAL_CACHE_VERSION if evaluation else 0)


def outdated(entry: CacheEntry) -> bool:
    """Whether a cache was written by an earlier simclr (an older :func:`cache_version`
    of its store): no run reads it again (:func:`simclr.cache._read_cache` rebuilds under
    a new name), and no newer cache replaces it (:func:`superseded` goes by what its
    sidecar may not record). A newer simclr's cache, sharing the folder, is left to that
    simclr; one whose sidecar is unreadable (no version) to its own rules."""
    return entry.version is not None and not entry.orphan and \
        entry.version < cache_version(entry.store)


# The variant a sidecar from before it was recorded reads as (:func:`cache_entries`).
_UNRECORDED = (None, None, None)


def describe_entry(entry: CacheEntry) -> str:
    """What sets a cache apart from another of its folder and side, in a few words
    (``simclr cache``): how its squares were stored, and a --max-pixels, the images
    beside the class folders (a pretraining's) or truncated files read (a library
    caller's PIL setting) where it has them."""
    store = entry.store or ""
    if store in ("full", "center"):
        words = ["whole pictures" if store == "full" else "central squares"]
    elif store.startswith("eval:"):
        words = [f"for evaluation at {store.partition(':')[2]} px"]
    else:
        words = [store or "storage not recorded"]
    max_pixels, loose, truncated = entry.variant or _UNRECORDED
    if max_pixels is not None and max_pixels != DEFAULT_MAX_PIXELS:
        words.append(f"--max-pixels {max_pixels}")
    if loose:
        words.append("with the images beside the class folders")
    if truncated:
        words.append("truncated files read (PIL's LOAD_TRUNCATED_IMAGES)")
    return ", ".join(words)


def superseded(entries: list[CacheEntry]) -> set[Path]:
    """The caches (their .npy) that a newer one of the same folder, side, storage and
    :func:`simclr.cache._variant` replaced: built before the folder changed (a file
    added, removed or edited), and never read again. A cache whose variant is not recorded (an older
    simclr's) is replaced by any newer one of its folder, side and storage: it cannot be
    told apart, and kept, it would never be replaced (at worst a run decodes it again);
    one whose variant is recorded only by a newer one of that same variant. (Caches from
    before the storage was recorded are an earlier simclr's: :func:`outdated`; a newer
    simclr's, sharing the cache folder, are its own: neither replaces nor is replaced.)"""
    # (a record without its .npy replaces nothing: it is no cache)
    known = [e for e in entries if e.store is not None and e.root != "?" and not e.orphan
             and e.version in (None, cache_version(e.store))]
    # (entries come least recently used first: the last one of a kind is the newest)
    newest = {(e.root, e.side, e.store, e.variant): e for e in known}
    newest_of_folder = {(e.root, e.side, e.store): e for e in known}
    return {e.npy for e in known
            if newest[(e.root, e.side, e.store, e.variant)] is not e or
            (e.variant == _UNRECORDED and newest_of_folder[(e.root, e.side, e.store)] is not e)}


def remove_replaced(folder: Path, built: Path, root: str) -> None:
    """After a build, the caches of the same folder it replaces (:func:`replaced_caches`) are
    deleted, so that a changed folder (or a new simclr) does not take its disk twice
    until `simclr cache --clean`. A run still reading one keeps its open memmap; one
    that cannot be deleted (a file held open on Windows, a read-only folder) is left
    for --clean."""
    remove_entries(replaced_caches(cache_entries(folder), built, root))


def replaced_caches(entries: list[CacheEntry], built: Path,
                    root: str) -> list[tuple[CacheEntry, str]]:
    """The caches among ``entries`` (and why) of the folder ``root`` that the cache
    ``built`` (one of them) replaces: :func:`superseded` (built before a file was added,
    removed or edited, never read again) or :func:`outdated` (an earlier simclr's).
    (Nothing is superseded should ``built`` not read as the newest: a clock set back.)"""
    replaced = superseded(entries)
    if built in replaced:  # (cache_entries names each file in ``folder``, as ``built`` is)
        replaced = set()  # (an earlier simclr's caches are still never read again)
    found = []
    for entry in entries:
        if entry.root != root or entry.npy == built:
            continue
        if outdated(entry):
            found.append((entry, "a cache of this folder written by an earlier simclr"))
        elif entry.npy in replaced:
            found.append((entry, "the cache of this folder before it changed"))
    return found


def remove_entries(entries: Sequence[tuple[CacheEntry, str]], purpose: str = "") -> None:
    """Delete each cache, logging it and why (``purpose``: added to the line); one that
    cannot be deleted is left for `simclr cache --clean`."""
    for entry, why in entries:
        try:
            remove_entry(entry)
        except SimCLRError:
            continue
        log.info("removed %s, %s (%.0f MiB)%s", entry.npy, why, entry.nbytes / 2**20, purpose)


def build_leftovers(cache_dir: str | os.PathLike,
                    after_s: float = LEFTOVER_S) -> list[tuple[Path, int]]:
    """The files (path, bytes) of builds killed outright, an hour untouched (what the
    next build removes): ``simclr cache --clean`` removes them too. ``after_s`` 0: those
    younger too, whose process is gone from this machine (another machine sharing the
    folder may still be writing one: not removed, but named where room runs out)."""
    folder = cache_folder(cache_dir)
    found = []
    for path in _stale_leftovers(folder, after_s) if folder.is_dir() else ():
        try:
            found.append((path, path.stat().st_size))
        except OSError:  # removed meanwhile
            pass
    return found


def remove_leftover(path: Path) -> None:
    """Delete a :func:`build_leftovers` file; SimCLRError if it cannot be deleted."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise SimCLRError(f"cannot remove {path}: {exc.strerror}") from None


def remove_entry(entry: CacheEntry) -> None:
    """Delete a cache (sidecar first: a half-deleted cache is never trusted). A run still
    reading it keeps its open memmap; the next run decodes again. SimCLRError if the
    files cannot be deleted."""
    try:
        entry.meta.unlink(missing_ok=True)
        entry.npy.unlink(missing_ok=True)
    except OSError as exc:
        raise SimCLRError(f"cannot remove the cache {entry.npy}: {exc.strerror}") from None
