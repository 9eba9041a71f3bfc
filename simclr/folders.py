"""Image folders listed, no image decoded: an ImageFolder tree (class sub-folders) or
a flat folder, and a data set's root holding its train/test splits (any other folder
there left out, named).

What needs only names and labels (classes, subset lists, the batch against the set)
is checked from these lists before anything is decoded (:mod:`simclr.data` opens them).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simclr.errors import SimCLRError, printable
from simclr.progress import said_once

log = logging.getLogger(__name__)


def _readable_by_pil(extensions: set[str]) -> set[str]:
    """Those of ``extensions`` this PIL opens (a plugin installed: AVIF in Pillow 11.3+,
    HEIC with pillow-heif)."""
    from PIL import Image

    registered = Image.registered_extensions()
    return {e for e in extensions if registered.get(e) in Image.OPEN}


# Photo formats a camera or browser writes; some only where a PIL plugin reads them.
_PLUGIN_FORMATS = {".avif", ".heic", ".heif", ".jxl"}
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".webp", ".tif", ".tiff",
     ".gif", ".ppm", ".pgm", ".pbm", ".pnm"} | _readable_by_pil(_PLUGIN_FORMATS)
)
# The names of JPEG files, the one format a device decodes (--decoder).
JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")
# Photos simclr cannot read here (no plugin, camera raw): left out, but said.
OTHER_PHOTO_FORMATS = frozenset(
    (_PLUGIN_FORMATS | {".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".rw2", ".orf"})
    - IMAGE_EXTENSIONS)
# A folder holding train/ and one of the held-out splits (the first of these there:
# test, else a validation split) is a data set's splits (:func:`split_root`).
HELD_OUT_SPLITS = ("test", "val", "valid", "validation")
SPLITS = frozenset({"train", *HELD_OUT_SPLITS})
NAMED_DATASETS = ("cifar10", "cifar100", "stl10")  # torchvision's, by name (data.py)


@dataclass
class ImageList:
    """The files of an image folder. ``labels`` (N,) int64; -1 for a flat folder."""

    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    root: str = ""

    @property
    def name(self) -> str:
        """The folder, as :attr:`ImageSource.name` names it (for the checks both take)."""
        return self.root

    def names_digest(self) -> str:
        """A digest of the files' names below the folder (in listing order), which a
        copy of the folder elsewhere keeps and a renamed or swapped file changes."""
        h = hashlib.sha256()
        for name in self.relative_paths():  # (fsencode: a name need not be valid UTF-8)
            h.update(os.fsencode(name) + b"\0")
        return h.hexdigest()[:16]

    def relative_paths(self) -> Iterator[str]:
        """Each file's path relative to the folder, as ``os.path.relpath`` gives it:
        the listing's paths are the folder's own followed by the names below it, so
        they are cut off it (relpath per file took 2 s for 200k files)."""
        prefix = os.path.join(self.root, "")
        for p in self.paths:
            yield p[len(prefix):] if self.root and p.startswith(prefix) else \
                os.path.relpath(p, self.root)


def class_members(labels: np.ndarray, classes: Any) -> list[np.ndarray]:
    """The indices of each of ``classes`` (labels) in ``labels`` (N,), ascending; empty
    for a class without images: ``np.flatnonzero(labels == c)`` for each ``c``, found by
    one stable sort (those N x C comparisons took 4.5 s at 1M images x 20k classes)."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")  # (stable: a class's indices ascending)
    ordered = labels[order]
    classes = np.asarray(classes)
    starts = np.searchsorted(ordered, classes, side="left")
    ends = np.searchsorted(ordered, classes, side="right")
    return [order[start:end] for start, end in zip(starts, ends, strict=True)]


# Folders other tools leave beside the data: macOS's zip archiver puts every file's
# resource fork (._NAME, hidden already) in __MACOSX/, Windows gives each drive's root
# a recycle bin and System Volume Information, a Synology NAS keeps every photo's
# thumbnails in an @eaDir/ beside it (SYNOPHOTO_THUMB_*.jpg: images) and a share's
# recycle bin and snapshots in #recycle/ and #snapshot/, a QNAP NAS its recycle bin in
# @Recycle/ (its thumbnails in .@__thumb/, hidden already); each would read as a class
# or its images as data. (By name, any case, at any depth: Windows' own names differ in
# case between drives.)
JUNK_FOLDERS = frozenset({"__MACOSX", "$RECYCLE.BIN", "System Volume Information",
                          "@eaDir", "#recycle", "#snapshot", "@Recycle"})
_JUNK_CASEFOLDED = frozenset(n.casefold() for n in JUNK_FOLDERS)

# Windows hides by an attribute, not a leading dot (its drive folders above are hidden).
# Not by the system attribute alone: Windows sets that on a folder given its own icon.
_WINDOWS_ATTRIBUTES = hasattr(os.stat_result, "st_file_attributes")
_HIDDEN = 0x2  # FILE_ATTRIBUTE_HIDDEN


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.casefold() not in _JUNK_CASEFOLDED


def _hidden_said(root: str) -> str:
    """' (hidden entries are not read: .trip, .x.jpg)': the folders and images of
    ``root`` whose names start with a dot, which a folder that holds nothing else is
    'empty' for (its pictures all in .trip/); junk (.DS_Store, ._*) not named."""
    with contextlib.suppress(OSError), os.scandir(root) as scan:
        # (JUNK_FOLDERS: none starts with a dot; ._*: macOS's resource forks)
        names = sorted(e.name for e in scan if e.name.startswith(".")
                       and not e.name.startswith("._")
                       and (_is_dir(e) or _extension(e.name) in IMAGE_EXTENSIONS))
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            return f" (hidden entries are not read: {', '.join(map(printable, names[:5]))}{more})"
    return ""


def _attributes(path: str | os.DirEntry[str]) -> int:
    """Windows' attributes of ``path`` (not of a link's target); 0 elsewhere, where no
    file is stat'ed for them, and for a file that cannot be."""
    if not _WINDOWS_ATTRIBUTES:
        return 0
    try:  # (a DirEntry's stat is the listing's own there: no system call)
        st = path.stat(follow_symlinks=False) if isinstance(path, os.DirEntry) \
            else os.stat(path, follow_symlinks=False)
    except OSError:
        return 0
    return getattr(st, "st_file_attributes", 0)


def _shown(path: str | os.DirEntry[str]) -> bool:
    """Whether ``path`` is not hidden by Windows' attribute (a visible name's check)."""
    return not _attributes(path) & _HIDDEN


def _is_image_name(name: str) -> bool:
    return _extension(name) in IMAGE_EXTENSIONS


def _images_under(folder: str, others: Counter[str], seen: dict[str, str],
                  classes: dict[str, str]) -> list[str]:
    """Every image file below ``folder`` (recursive, hidden entries skipped, sorted);
    photos left out (:func:`_other_formats`) are counted into ``others`` by kind.

    ``seen``: the real folders listed so far -> the class folder that listed them (each
    is listed once), and the real files of linked files likewise; ``classes``: every
    class folder's real path -> its name. A linked folder or file that is, or lies in,
    another class's folder is left out, as is a class folder listed already and a file
    linked from another class already (all said): their images would have two labels,
    and a split could put one image in train and test."""
    found: list[str] = []
    own = os.path.realpath(folder)
    if own in seen:
        _say_once(f"twice {own}", "%s: the same folder as %s, listed already; its images "
                  "are left out here, so that no image has two classes", folder, seen[own])
        return found
    seen[own] = folder

    def unlisted(exc: OSError) -> None:  # its images cannot be found: never silently
        _say_once(f"unlisted {exc.filename}", "cannot list the folder %s (%s); its images "
                  "are left out", exc.filename, exc.strerror)

    left: list[tuple[str, str, str]] = []  # (linked files left out: _own_file)
    for dirpath, dirnames, filenames, linked in _walk(folder, unlisted):
        # Linked folders are followed, but each real folder once, and never a link back
        # up the tree (a loop would list the same files forever, under other classes).
        here = os.path.realpath(dirpath)
        keep = []
        for d in sorted(d for d in dirnames if _visible(d)):
            real = os.path.realpath(os.path.join(dirpath, d))
            other = _class_holding(real, classes)
            if other is not None and other != classes.get(own):
                _say_once(f"twice {real}", "%s: a link to the class folder %s (or into it) "
                          "is left out, so that no image has two classes",
                          os.path.join(dirpath, d), other)
            elif real in seen:  # (listed by this class: a second link, said by none)
                if seen[real] != folder:
                    _say_once(f"twice {real}", "%s: the same folder as one listed under %s; "
                              "left out here, so that no image has two classes",
                              os.path.join(dirpath, d), seen[real])
            elif not _within(here, real):
                seen[real] = folder
                keep.append(d)
        dirnames[:] = keep
        found.extend(
            os.path.join(dirpath, f) for f in sorted(filenames) if _visible(f) and
            _is_image_name(f) and (f not in linked or _own_file(os.path.join(dirpath, f),
                                                                 folder, own, seen, classes,
                                                                 left))
        )
        others.update(_other_formats(dirpath, filenames))
    _say_links_left(folder, left)
    return found


def _within(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies below it (``folder`` `/`
    too: its name with a separator added is '//', which no path starts with)."""
    return (path + os.sep).startswith(os.path.join(folder, ""))


def _own_file(path: str, folder: str, own: str, seen: dict[str, str],
              classes: dict[str, str], left: list[tuple[str, str, str]]) -> bool:
    """Whether the linked file ``path`` of class folder ``folder`` (real path ``own``)
    is listed: not when its real file lies in another class's folder, or is linked from
    another class already (``seen`` records it; appended to ``left`` as (link, its real
    file, that class), for :func:`_say_links_left`). A broken link is listed (decoding
    says so)."""
    real = os.path.realpath(path)
    other = _class_holding(real, classes)
    if other is None or other == classes.get(own):
        if seen.setdefault(real, folder) == folder:
            return True
        other = os.path.basename(seen[real])
    left.append((path, real, other))
    return False


def _say_links_left(folder: str, left: list[tuple[str, str, str]]) -> None:
    """The linked files of ``folder`` left out by :func:`_own_file`: one warning for the
    class folder (an album of links to the other classes' images: one line, not one per
    link)."""
    if len(left) == 1:
        _say_once(f"file {left[0][1]}", "%s: a link to %s, an image of the class %s, is "
                  "left out, so that no image has two classes", *left[0])
    elif left:
        _say_once(f"files {folder}", "%s: %d links to images of other classes are left out, "
                  "so that no image has two classes (first: %s, a link to %s, of the class "
                  "%s)", folder, len(left), *left[0])


def _walk(top: str, onerror: Any) -> Iterator[tuple[str, list[str], list[str], set[str]]]:
    """``os.walk(top, followlinks=True)`` (top-down: the caller prunes ``dirnames`` in
    place), also naming the files that are links, which scandir knows without a system
    call per file: (dirpath, dirnames, filenames, the linked ones of filenames)."""
    stack = [top]
    while stack:
        dirpath = stack.pop()
        try:
            with os.scandir(dirpath) as scan:
                entries = list(scan)
        except OSError as exc:
            onerror(exc)
            continue
        dirnames: list[str]
        filenames: list[str]
        dirnames, filenames, linked = [], [], set()
        for entry in entries:
            if not _shown(entry):
                continue
            try:
                is_dir = entry.is_dir()  # (through a link, as os.walk with followlinks)
                link = not is_dir and entry.is_symlink()
            except OSError:  # (gone since it was listed: decoding says so)
                is_dir, link = False, False
            (dirnames if is_dir else filenames).append(entry.name)
            if link:
                linked.add(entry.name)
        yield dirpath, dirnames, filenames, linked
        stack.extend(os.path.join(dirpath, d) for d in reversed(dirnames))


def _class_holding(real: str, classes: dict[str, str]) -> str | None:
    """The class whose real folder is ``real`` or holds it (by its parents: a lookup per
    level, not a scan of every class per folder), or None."""
    while True:
        if real in classes:
            return classes[real]
        parent = os.path.dirname(real)
        if parent == real:
            return None
        real = parent


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _other_formats(folder: str, names: list[str]) -> list[str]:
    """The kinds of the visible ``names`` in ``folder`` left out though they are photos:
    those in :data:`OTHER_PHOTO_FORMATS` (by extension) and, as :data:`NO_EXTENSION`,
    images named without an extension (a browser's or a tool's download), found by their
    first bytes: images are listed by their names alone, so these are never read."""
    kinds = []
    looked = 0  # (files without an extension opened: a bounded cost per folder)
    for n in names:
        ext = _extension(n)
        if not _visible(n):
            continue
        if ext in OTHER_PHOTO_FORMATS:
            kinds.append(ext)
        elif not ext and looked < SNIFFED_PER_FOLDER:
            looked += 1
            if _image_bytes(os.path.join(folder, n)):
                kinds.append(NO_EXTENSION)
    return kinds


NO_EXTENSION = "no extension"
# Files without an extension opened per folder listed, at most: a folder of a million
# (on a network file system) would cost minutes a scan; a download's few are all seen.
SNIFFED_PER_FOLDER = 64
# The first bytes of the formats a camera, phone or browser saves most (JPEG, PNG, GIF,
# WebP, TIFF both byte orders; BMP's two letters alone are a text's too: its header below).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*")
_BMP_HEADER_SIZES = (12, 40, 52, 56, 108, 124)  # (BITMAPCOREHEADER ... BITMAPV5HEADER)


def _image_bytes(path: str) -> bool:
    """Whether the file at ``path`` starts as an image does (False if unreadable, or not
    a regular file: opening a named pipe would wait for a writer)."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    bmp = head[:2] == b"BM" and len(head) == 18 and head[6:10] == bytes(4) and \
        int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    return bmp or head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and
                                                    head[8:12] == b"WEBP")


def _say_other_formats(root: Path, others: Counter[str]) -> None:
    """One warning for the photos a folder holds that no decoder here reads (an iPhone's
    HEIC, camera raw): left out by their names, never silently."""
    unnamed = others.pop(NO_EXTENSION, 0)
    if others:
        kinds = ", ".join(f"{ext} x{n}" for ext, n in sorted(others.items()))
        _say_once(f"formats {os.path.abspath(root)}", "%s: %d photo(s) in formats not read "
                  "here left out (%s); convert them (e.g. to JPEG) to use them", root,
                  sum(others.values()), kinds)
    if unnamed:
        _say_once(f"unnamed {os.path.abspath(root)}", "%s: %d image(s) named without an "
                  "extension left out (images are found by their names); rename them with "
                  "their format's (.jpg, .png, ...) to use them", root, unnamed)


def _say_once(key: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """A warning (or note) about a folder's listing, once per process under ``key`` (a
    command lists a folder more than once, as typed and as an absolute path) and by the
    first process of a launch alone (every process lists the same folder)."""
    from simclr.distributed import launched_rank

    if key not in _SAID and launched_rank() == 0:
        log.log(level, message, *args)
    _SAID.add(key)


_SAID: set[str] = said_once()  # the keys of what _say_once has said (in this command)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether a listed entry is a folder, through a link (as ``os.path.isdir``), told
    by the listing's entry type without a system call per file (but for links)."""
    try:
        return entry.is_dir()
    except OSError:  # (gone since it was listed: decoding says so)
        return False


def _class_folders(root: str, entries: list[os.DirEntry[str]]) -> list[str]:
    """The names of the sub-folders of ``root`` among ``entries``, less links back to
    ``root`` or a folder above it (``ln -s . loop``): their images are the folder's own,
    not a class."""
    real_root = os.path.realpath(root)
    found = []
    for entry in entries:
        e, path = entry.name, entry.path
        if not _is_dir(entry):
            if entry.is_symlink() and not _is_image_name(e) and not os.path.exists(path):
                _say_once(path, "%s: %s is a link to %s, which does not exist; left out (a "
                          "class folder of it would be missing)", root, e, os.readlink(path))
            continue
        real = os.path.realpath(path)
        if _within(real_root, real):
            to = "the folder itself" if real == real_root else "a folder above it"
            _say_once(path, "%s: %s links back to %s (%s); left out", root, e, to, real)
            continue
        found.append(e)
    return found


def check_folder(flag: str, path: str | None) -> None:
    """Fail now, in one line, on a folder that a command reads only later (an evaluation
    after hours of training); torchvision's named data sets pass."""
    if path and not Path(path).expanduser().is_dir() and not named_dataset(path):
        if Path(path).expanduser().exists():
            raise SimCLRError(f"{flag}: {path} is not a folder")
        raise SimCLRError(f"{flag}: folder not found: {_looked_at(path)}")


def _looked_at(path: str | os.PathLike) -> str:
    """``path`` as given, followed where it is relative by the absolute path it was read
    as: a --config file's relative paths are the current folder's, not the file's (a
    run's saved config.yaml is read from anywhere), so say which folder that was."""
    given = os.fspath(path)
    if os.path.isabs(os.path.expanduser(given)):  # (one with a trailing / or a .. too)
        return given
    return f"{given} ({os.path.abspath(os.path.expanduser(given))})"


def holds_jpegs(paths: Sequence[str]) -> bool:
    """Whether any of ``paths`` is named as a JPEG (:data:`JPEG_EXTENSIONS`)."""
    return any(path.lower().endswith(JPEG_EXTENSIONS) for path in paths)


def scan_folder(path: str | os.PathLike, unlabeled: bool = False) -> ImageList:
    """List the images of an ImageFolder tree or a flat folder.

    ImageFolder: every visible sub-folder is a class, label = position in sorted class
    names (as torchvision's ImageFolder), images searched recursively inside it.
    Flat: images directly in ``path``, labels -1, no classes. Hidden files are ignored.
    Images beside the class folders are left out with a warning, unless ``unlabeled``
    (pretraining, embed: no label is needed), which keeps them, labelled -1.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise SimCLRError(f"data folder not found: {_looked_at(root)}")
    if not root.is_dir():
        raise SimCLRError(f"data path is not a folder: {root}")
    root_s = os.path.abspath(root)
    try:
        with os.scandir(root_s) as scan:
            listed = sorted((e for e in scan if _visible(e.name) and _shown(e)),
                            key=lambda e: e.name)
    except OSError as exc:  # e.g. a folder without read permission
        raise SimCLRError(f"cannot list the data folder {root} ({exc.strerror})") from None
    if not listed:
        raise SimCLRError(f"data folder is empty: {root}{_hidden_said(root_s)}")
    if not is_utf8(root_s):  # (every image's name below would be left out for it)
        raise SimCLRError(f"{ascii(root_s)}: the data folder's path is not valid UTF-8 "
                          "(results name each image by its path, in text); rename it or "
                          "reach it through a link whose path is")
    subdirs = _class_folders(root_s, listed)
    files = [(e.path, _extension(e.name)) for e in listed if not _is_dir(e)]
    # Every other entry with an image's name is listed, a broken link or a named pipe
    # too: decoding then reports it among the skipped files, as it does in sub-folders.
    dropped: list[str] = []
    loose = _utf8_names([p for p, ext in files if ext in IMAGE_EXTENSIONS], dropped)
    others = Counter(_other_formats(root_s, [os.path.basename(p) for p, _ in files]))
    classes = {os.path.realpath(os.path.join(root_s, d)): d for d in subdirs}
    seen: dict[str, str] = {}
    per_class = {d: _images_under(os.path.join(root_s, d), others, seen, classes)
                 for d in subdirs}
    _say_other_formats(root, others)
    if any(per_class.values()):
        bad = next((d for d in subdirs if not is_utf8(d)), None)
        if bad is not None:
            raise SimCLRError(f"{root}: the class folder {ascii(bad)} has a name that is not "
                              "valid UTF-8 (results name every class in text); rename it")
        per_class = {d: _utf8_names(files, dropped) for d, files in per_class.items()}
    if dropped:  # results, lists and predictions name every image in text
        _say_once(f"utf8 {root_s}", "%s: %d file(s) left out, their names not valid UTF-8 "
                  "(first: %s); rename them to use them", root, len(dropped), ascii(dropped[0]))
    if any(per_class.values()):
        if loose and unlabeled:
            subdirs = ["", *subdirs]  # label 0 for a moment: -1 below
            per_class[""] = loose
        elif loose:
            _say_once(f"loose {root_s}", "%s: %d image(s) outside the class folders are "
                      "ignored (they have no class)", root, len(loose))
        empty = [d for d, files in per_class.items() if not files]
        if empty:
            _say_once(f"empty {root_s}", "%s: class folder(s) without images: %s", root,
                      ", ".join(empty))
        paths = [p for d in subdirs for p in per_class[d]]
        labels = np.concatenate(
            [np.full(len(per_class[d]), k, dtype=np.int64) for k, d in enumerate(subdirs)]
        )
        if subdirs[0] == "":  # the loose images: no class
            labels -= 1
            subdirs = subdirs[1:]
        return ImageList(paths, labels, list(subdirs), root_s)
    if loose:
        return ImageList(loose, np.full(len(loose), -1, dtype=np.int64), [], root_s)
    exts = " ".join(sorted(IMAGE_EXTENSIONS))
    raise SimCLRError(f"no images found in {root} (looked for {exts}, also in sub-folders)")


# Why a written path must be valid UTF-8 (--out, --resume: cli and validate refuse one)
WRITTEN_NOT_UTF8 = "the path is not valid UTF-8 (results and a run's records name it in text)"


def is_utf8(name: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (undecodable bytes come
    back as surrogate escapes, which no text file can hold)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8_names(paths: list[str], dropped: list[str]) -> list[str]:
    """``paths`` without the files whose names are not valid UTF-8 (added to
    ``dropped``)."""
    kept: list[str] = []
    for p in paths:  # (each name encoded once: a class may hold a million)
        (kept if is_utf8(p) else dropped).append(p)
    return kept


def _split_folder(root: Path, train: bool, quiet: bool = False) -> Path:
    """A data set root holding train/ and test/ (or a validation split) picks the split.

    Its other folders are left out, named: a third split (Roboflow's and YOLO's valid/
    beside test/) in the note, any other (STL-10's unlabeled/) in a warning (``quiet``:
    none, a question about the folder that does not read it). Read as
    one image folder, the split names were its classes: pretraining read the test
    split, evaluation the training images."""
    try:  # (the entries' types, from the listing: no stat of each of 200k files)
        with os.scandir(root) as scan:
            subdirs = {e.name for e in scan if _visible(e.name) and _is_dir(e) and _shown(e)}
    except OSError:
        return root
    # Split names in any case (Train/ and Test/, VAL/): read as classes, they were
    # trained on as one folder. The lower-case one, should two differ only in case.
    named = {s: sorted(d for d in subdirs if d.lower() == s) for s in SPLITS}
    found = {s: s if s in names else names[0] for s, names in named.items() if names}
    tests = [found[s] for s in HELD_OUT_SPLITS if s in found]
    if "train" not in found or not tests:
        return root
    chosen, other = (root / found["train"], root / tests[0]) if train else \
        (root / tests[0], root / found["train"])
    left = sorted(subdirs - {found["train"], tests[0]})
    if quiet:  # (not said once either: the command that reads it says so)
        return chosen
    _say_once(str(chosen), "%s holds splits; using %s (give %s for the other)%s", root,
              chosen, other, f"; left out: {', '.join(left)}" if left else "",
              level=logging.INFO if {d.lower() for d in left} <= SPLITS else logging.WARNING)
    return chosen


def split_root(path: str | os.PathLike, train: bool, quiet: bool = False) -> Path:
    """The folder read of ``path`` for training (``train``) or testing: its split, if it
    holds splits (:func:`_split_folder`, said unless ``quiet``), else itself."""
    root = Path(path).expanduser()
    return _split_folder(root, train, quiet) if root.is_dir() else root


def split_name(folder: str, train: bool) -> str | None:
    """The name of the split :func:`split_root` reads of ``folder`` for training
    (``train``) or testing, None where it reads the folder itself; a question, asked
    quietly (the listing that reads the folder says which split it reads)."""
    chosen = split_root(folder, train, quiet=True)
    return None if chosen == Path(folder).expanduser() else chosen.name


def split_read_anew(folder: str) -> Path | None:
    """The split this release reads of ``folder`` (:func:`_split_folder`) where releases
    before 2026-12-06 read the whole folder (their split names in lower case only), else
    None: a run they saved on it cannot continue on its images. Asked quietly, as
    :func:`split_name`."""
    root = Path(folder).expanduser()
    chosen = split_root(folder, train=True, quiet=True)
    if chosen == root or not root.is_dir():
        return None
    names = {entry.name for entry in os.scandir(root)}  # (as written: macOS is case-blind)
    return None if "train" in names and any(n in names for n in HELD_OUT_SPLITS) else chosen


def list_folder(spec: str | None, train: bool = True,
                unlabeled: bool = False) -> ImageList | None:
    """The files :func:`open_source` reads for ``spec``, listed without decoding any, so
    that what needs only names and labels (classes, a subset list, the batch against
    the set) is checked before a folder is decoded; None for the digits and
    torchvision's named data sets."""
    # (the ignore: named_dataset is True for None)
    return None if named_dataset(spec) else scan_folder(split_root(spec, train), unlabeled)  # type: ignore[arg-type]


def torchvision_dataset(spec: str | None) -> bool:
    """Whether a data spec names one of torchvision's data sets (``--data-root`` and
    ``--download`` are theirs)."""
    return spec is not None and spec.lower() in NAMED_DATASETS and named_dataset(spec)


def named_dataset(spec: str | None) -> bool:
    """Whether a data spec names the digits or a torchvision data set (unless a folder
    of that name is there), read as arrays, not as a folder of files."""
    return spec is None or (spec == "digits" or spec.lower() in NAMED_DATASETS) and \
        not Path(spec).expanduser().is_dir()
