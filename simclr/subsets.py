"""The labeled subsets of semi-supervised fine-tuning (Chen et al. 2020, Sec. 6): a
class-balanced draw of 1% or 10% of the labels (or K per class) from the seed, or the
images a list names; written beside the run as paths relative to the folder, and
fingerprinted so that a continued fine-tuning is known to train on the same images.

The draw ranks each class's images by a keyed hash of their path in the folder (the
seed the key), and takes the first of each, so 1% sits inside 10% (a prefix of the
same ranking) and the pick never depends on the files' positions in the listing. With
K per class, a class's pick depends on its own files alone: an image added or removed
changes it by that image at most. With a fraction, K = fraction x N / C over all N
images: one image that moves K across a rounding step adds or drops the next image of
every class.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simclr.distributed import launched_rank
from simclr.errors import SimCLRError, printable, unreadable_path
from simclr.files import written
from simclr.folders import class_members
from simclr.logistic import half_up

log = logging.getLogger(__name__)

SUBSET_FILE = "labeled_subset.txt"


def class_balanced_subset(
    labels: np.ndarray, fraction: float | None = None, per_class: int | None = None,
    seed: int = 0, classes: list[str] | None = None, names: Sequence[str] | None = None,
) -> np.ndarray:
    """Indices of a class-balanced labeled subset (sorted int64 array).

    Exactly ``per_class`` images of every class, or ``fraction * N / C`` (halves rounded
    up, at least 1) with N labeled images and C classes. Images with label -1 are never
    chosen. Each class takes the first of its images ranked by :func:`rank_keys` of
    ``names`` (N,: each image's path relative to the folder, ``class/file.jpg``; None:
    sources without files, named by class and index), so the choice is deterministic,
    each class's pick is a prefix of its own ranking (before, a permutation drawn from
    ``[seed, class index]`` over the class's positions: a class sorting first, or one
    image more, re-drew them; a fraction's K still follows the total N), and for one seed
    smaller subsets are contained in larger ones (1% inside 10%). A class with too few
    images is an error.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if (fraction is None) == (per_class is None):
        raise SimCLRError("give exactly one of --label-fraction and --labels-per-class")
    present = np.unique(labels[labels >= 0])
    if len(present) == 0:
        raise SimCLRError("no labeled images to draw a labeled subset from")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise SimCLRError(f"--label-fraction must lie in (0, 1], got {fraction}")
        k = max(1, half_up(fraction, int((labels >= 0).sum()), len(present)))
    else:
        if per_class < 1:  # type: ignore[operator]  # (given: one of the two is)
            raise SimCLRError(f"--labels-per-class must be at least 1, got {per_class}")
        k = int(per_class)  # type: ignore[arg-type]
    chosen = []
    for c, members in zip(present, class_members(labels, present), strict=True):
        name = classes[c] if classes is not None and c < len(classes) else str(c)
        if len(members) < k:
            raise SimCLRError(f"class {name!r} has {len(members)} images, fewer than the {k} "
                              "per class asked for (lower --label-fraction/--labels-per-class)")
        keys = rank_keys([names[i] for i in members] if names is not None else
                         [f"{name}/#{i}" for i in members], seed)
        chosen.append(members[sorted(range(len(members)), key=keys.__getitem__)[:k]])
    return np.sort(np.concatenate(chosen).astype(np.int64))


def rank_keys(names: Sequence[str], seed: int) -> list[tuple[bytes, str]]:
    """The draw's order of the images ``names`` (each its path relative to the folder,
    which begins with its class): a keyed BLAKE2b hash of the name, the seed its key
    (then the name, should two hashes meet). A pure function of the seed and the image's
    own name: no other file moves it."""
    key = str(int(seed)).encode()
    return [(hashlib.blake2b(os.fsencode(n), digest_size=16, key=key).digest(), n)
            for n in names]


def subset_from_list(source: Any, path: str | Path,
                     held_out: Sequence[str] = ()) -> np.ndarray:
    """Indices (sorted int64) of the images a list file names, one per line.

    The paper's ImageNet subsets are such lists (the official repository's
    ``imagenet_subsets/1percent.txt`` and ``10percent.txt``: file names like
    ``n01440764_10026.JPEG``), so fine-tuning can use the very images the paper used.
    A line may be a file name, a path relative to the folder (as a run's
    ``labeled_subset.txt`` holds them), or a full path; blank lines and ``#`` comments
    are skipped. A name not in the folder, or a bare file name that two of its images
    share, is an error; one of ``held_out`` (the files ``--test-fraction`` keeps for
    testing, left out of ``source``) is refused as such. A file the source's cache
    could not decode (``source.skipped``) is left out, named in a warning with why: the
    subset trained on and recorded is the rest, as where the folder is read per epoch
    (:meth:`simclr.source.ImageSource.within`).
    """
    lines = read_subset_list(path)
    paths = list(getattr(source, "paths", []) or [])
    if not paths:
        raise SimCLRError("--subset needs an image folder (this data set has no file names)")
    root = _root(source)
    testing = {key for p in held_out for key in _keys(p, root)}
    broken = {key: (p, reason) for p, reason in getattr(source, "skipped", ())
              for key in _keys(p, root)}
    where: dict[str, int] = {}
    shared: set[str] = set()
    for i, p in enumerate(paths):
        name, *others = _keys(p, root)
        # (a test image's or an unreadable file's name too: which is meant?)
        if name in where or name in testing or name in broken:
            shared.add(name)
        where.update(dict.fromkeys((name, *others), i))
    chosen, missing = set(), []
    known = where.keys() | shared | testing | broken.keys()
    for entry in lines:
        key = next((k for k in _spellings(entry, root) if k in known), entry)
        if key in shared:
            raise SimCLRError(f"--subset: {entry!r} names several images of the folder; "
                              "give paths relative to it")
        if key in where:
            chosen.add(where[key])
        else:
            missing.append((entry, key))
    held = [entry for entry, key in missing if key in testing]
    if held:
        raise SimCLRError(f"--subset: {len(held)} of the listed images are among those "
                          f"--test-fraction holds out for testing (first: {held[0]!r}); "
                          "list training images only, or change --seed or --test-fraction")
    unreadable = [broken[key] for _, key in missing if key in broken]
    missing = [(entry, key) for entry, key in missing if key not in broken]
    if missing:
        raise SimCLRError(f"--subset: {len(missing)} of the listed images are not in the "
                          f"folder (first: {missing[0][0]!r})")
    if unreadable and launched_rank() == 0:  # (every process of a launch reads the list)
        log.warning("--subset: %d of the listed images cannot be read, left out (first: "
                    "%s: %s); the labeled subset is the other %d", len(unreadable),
                    printable(unreadable[0][0]), unreadable[0][1], len(chosen))
    indices = np.array(sorted(chosen), dtype=np.int64)
    if (np.asarray(source.labels)[indices] < 0).any():
        raise SimCLRError("--subset lists images without a class folder (labels needed)")
    return indices


def read_subset_list(path: str | Path) -> list[str]:
    """The entries of a ``--subset`` file (blank lines and ``#`` comments dropped);
    checked by the command line before the checkpoint and images are read."""
    path = Path(path).expanduser()
    problem = unreadable_path(path)
    if problem:  # (reading a named pipe would wait for a writer forever)
        raise SimCLRError(f"--subset {path}: {problem}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SimCLRError(f"--subset: cannot read {path}: {reason}") from None
    entries = [e for e in (line.strip() for line in lines) if e and not e.startswith("#")]
    if not entries:
        raise SimCLRError(f"--subset: {path} lists no images")
    return entries


def write_subset_list(source: Any, indices: np.ndarray, path: str | Path) -> Path:
    """The chosen images, one per line, as paths relative to the folder (so the list
    serves a copy of it elsewhere; ``#index N`` for sources without paths)."""
    paths = list(getattr(source, "paths", []) or [])
    root = _root(source)
    lines = [_relative(paths[i], root) if i < len(paths) else f"#index {i}"
             for i in np.asarray(indices)]
    text = "".join(f"{line}\n" for line in lines)
    return written(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _root(source: Any) -> Path | None:
    """The folder of an image source, absolute (None: not a folder). A source is named
    by its path as typed (maybe relative); its listing holds absolute file names
    (folders.scan_folder), so both compare absolute."""
    root = Path(os.path.abspath(Path(getattr(source, "name", "") or "").expanduser()))
    return root if root.is_dir() else None


def _spellings(entry: str, root: Path | None) -> Iterator[str]:
    """A list line as typed, then as the folder's files are named (:func:`_keys`):
    `find . -type f`'s ./class/a.jpg and a full path through `..` normalised, a path
    relative to the working folder made relative to ``root``."""
    yield entry
    yield Path(os.path.normpath(entry)).as_posix()
    yield os.path.abspath(entry)  # (normalised: abspath is normpath of the joined path)
    yield _relative(entry, root)  # (made absolute there the same way)


def _keys(path: str, root: Path | None) -> tuple[str, str, str]:
    """The ways a list line may name the file ``path``: its name, its path, and its path
    relative to the folder ``root``."""
    return Path(path).name, str(Path(path)), _relative(path, root)


def _relative(path: str, root: Path | None) -> str:
    """``path`` relative to ``root`` (POSIX separators), or as it is outside it."""
    if root is not None:
        try:
            return Path(os.path.abspath(path)).relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def subset_digest(indices: np.ndarray, num_images: int) -> str:
    """A short fingerprint of a labeled subset (which of the ``num_images`` images), so a
    continued fine-tuning is known to train on the same images."""
    data = np.asarray(indices, dtype=np.int64).tobytes() + str(num_images).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def labeled_subset(train: Any, subset_file: str | Path | None, label_fraction: float | None,
                    labels_per_class: int | None, seed: int,
                    held_out: Sequence[str] = ()) -> np.ndarray:
    """Indices of the labeled images: those ``subset_file`` lists (none of ``held_out``,
    the test part's files), a class-balanced draw, or (neither given) all of them. The
    draw is over the folder's listing (less ``held_out``): a file a decoded cache could
    not read takes its place in it, and is then left out, as an uncached run leaves it
    out when it meets it (the subset is then the same either way)."""
    if subset_file is not None:
        if label_fraction is not None or labels_per_class is not None:
            raise SimCLRError("give one of --label-fraction, --labels-per-class and --subset")
        return subset_from_list(train, subset_file, held_out)
    if label_fraction is None and labels_per_class is None:
        return np.arange(len(train.labels))
    # Drawn over the folder's listing, whether or not a cache left its unreadable files
    # out of ``train``, then those dropped: a cached folder drew over the rest (one file
    # fewer moved K and put the next-ranked image in the dropped one's place), so the same
    # seed trained other images with --cache on than off.
    unread = unread_listed(train, held_out)
    labels = np.concatenate([np.asarray(train.labels, dtype=np.int64),
                             np.array([c for _, c in unread], dtype=np.int64)])
    names = folder_names(train)
    drawn = class_balanced_subset(labels, label_fraction, labels_per_class, seed,
                                  list(train.classes),
                                  None if names is None else names + [n for n, _ in unread])
    return drawn[drawn < len(train.labels)]


def listed_count(train: Any, held_out: Sequence[str] = ()) -> int:
    """How many files the listing of ``train``'s folder holds (less ``held_out``): its
    images and those a decoded cache left out as unreadable. A labeled subset's share is
    of these, so that it is the same with the folder cached or read per epoch."""
    return len(train.labels) + len(unread_listed(train, held_out))


def unread_listed(source: Any, held_out: Sequence[str] = ()) -> list[tuple[str, int]]:
    """The files of ``source``'s folder that its decoded cache left out as unreadable
    (``source.skipped``), less ``held_out`` (the files --test-fraction keeps for
    testing): each as ``(path relative to the folder, class index)``, -1 outside the
    class folders. None ([]) for an uncached source: its listing keeps its unreadable files
    (found as they are read), and its ``skipped`` may name the test part's."""
    skipped = list(getattr(source, "skipped", ()) or ())
    if not skipped or not getattr(source, "cached", False):
        return []
    root = _root(source)
    testing = {os.path.abspath(p) for p in held_out}
    index = {str(c): i for i, c in enumerate(source.classes)}
    unread = []
    for path, _ in skipped:
        if os.path.abspath(path) not in testing:
            name = _relative(path, root)
            unread.append((name, index.get(name.split("/", 1)[0], -1) if "/" in name else -1))
    return unread


def folder_names(source: Any) -> list[str] | None:
    """Each image's path relative to ``source``'s folder (POSIX separators, as
    ``labeled_subset.txt`` lists them: the same for a folder's listing and for its
    source, cached or not); None for a source without files (an array's)."""
    paths = list(getattr(source, "paths", []) or [])
    if not paths:
        return None
    root = _root(source)
    prefix = os.path.join(str(root), "") if root is not None else None
    # (a listing's paths are the folder's own followed by the names below it: cut off
    # it, as folders.ImageList.relative_paths does; abspath per file took seconds)
    return [Path(p[len(prefix):]).as_posix() if prefix and p.startswith(prefix)
            else _relative(p, root) for p in paths]
