"""Nearest neighbours and near-duplicates among embedded images (``simclr neighbors``).

What practitioners do with an encoder's representations first: find the images most
like a given one, and the (near-)duplicates of a collection. Both work on the ``.npz``
files of ``simclr embed`` (``features`` (N, D), the paths: :func:`embedded_paths`) with
cosine similarity, the measure the contrastive loss trains (sim(u, v) = u.v / |u||v|,
Sec. 2.1). The similarity matrix is computed in blocks of rows, so memory stays bounded
for large N.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.errors import SimCLRError, unreadable_path
from simclr.files import written
from simclr.progress import Progress

BLOCK_BYTES = 1 << 28  # one block of the similarity matrix: 256 MiB of float32
MAX_PAIRS = 10_000_000  # more "duplicates" than this: the threshold is not one
CSV_ROWS = 100_000  # pairs turned into Python rows at a time (10M at once: ~2 GB)


# The key of an embed file's paths: each path's UTF-8 bytes and a NUL after it (no file
# system allows a NUL in a name), one uint8 array, its size the paths' own. An earlier
# simclr's `paths` (N,) str array gave every path the longest one's width at 4 bytes a
# character: one 3,645-character path made 10,000 images' file 148 MB for 2.5 MB of
# features. (A name's bytes that are not UTF-8, surrogate escapes in Python, are kept.)
PATHS_KEY = "paths_utf8"


# The key of the embedding module's weights (pretrained.weights_digest), layer and side:
# the checkpoint's path and step (`encoder`) named other weights after a run was replaced
# at its path, and not the same ones read from a copy of the run or its export.
WEIGHTS_KEY = "encoder_weights"


class EncoderRecord(NamedTuple):
    """What an embed file records of its encoder: ``name``, the checkpoint's file, step
    and layer (messages name it; None: an earlier simclr's embed recorded nothing), and
    ``weights``, :data:`WEIGHTS_KEY`'s (None: an earlier simclr's embed wrote the file)."""

    name: str | None
    weights: str | None


def paths_array(paths: Sequence[str]) -> np.ndarray:
    """``paths`` as an embed file stores them under :data:`PATHS_KEY`."""
    blob = "".join(f"{p}\0" for p in paths).encode("utf-8", "surrogateescape")
    return np.frombuffer(blob, dtype=np.uint8)


def embedded_paths(data: np.lib.npyio.NpzFile) -> list[str]:
    """The paths of an embed file opened by ``np.load``: :data:`PATHS_KEY`'s, or an
    earlier simclr's fixed-width ``paths``. ValueError where neither is one (damaged)."""
    if PATHS_KEY not in data.files:
        paths = data["paths"]
        if paths.ndim != 1:
            raise ValueError(f"paths of shape {paths.shape}")
        return np.asarray(paths, dtype=str).tolist()
    blob = data[PATHS_KEY]
    if blob.dtype != np.uint8 or blob.ndim != 1 or (len(blob) and blob[-1] != 0):
        raise ValueError(f"{PATHS_KEY} is not NUL-ended bytes")
    return blob.tobytes().decode("utf-8", "surrogateescape").split("\0")[:-1]


def load_embeddings(path: str | Path, flag: str) -> tuple[torch.Tensor, list[str]]:
    """(L2-normalised float32 features (N, D), paths (N,)) of a ``simclr embed`` file."""
    return _load(path, flag)[:2]


def _load(path: str | Path, flag: str) -> tuple[torch.Tensor, list[str], EncoderRecord]:
    """:func:`load_embeddings` and the file's record of its encoder."""
    problem = unreadable_path(Path(path).expanduser())
    if problem:  # (np.load would open a named pipe and wait for a writer forever)
        raise SimCLRError(f"{flag} {path}: {problem}")
    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as data:
            missing = [k for k in ("features", PATHS_KEY) if k not in data.files]
            if "paths" in data.files:  # an earlier simclr's paths
                missing = [k for k in missing if k != PATHS_KEY]
            if missing:
                raise SimCLRError(f"{flag} {path}: no '{missing[0]}' array; give a file "
                                  "written by `simclr embed`")
            features, paths = data["features"], embedded_paths(data)
            encoder = EncoderRecord(*(str(data[k]) if k in data.files else None
                                      for k in ("encoder", WEIGHTS_KEY)))
    except FileNotFoundError:
        raise SimCLRError(f"{flag} {path}: file not found") from None
    except SimCLRError:
        raise
    except OSError as exc:  # a folder, no permission, a read error
        raise SimCLRError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None
    except Exception:  # not an .npz (numpy then guesses a pickle), truncated, objects
        raise SimCLRError(f"{flag} {path}: not a readable .npz file written by `simclr "
                          "embed`") from None
    if features.ndim == 2 and len(features) == len(paths) == 0:
        raise SimCLRError(f"{flag} {path}: the file holds no images")
    if features.ndim != 2 or len(features) != len(paths):  # (no numbers: said below)
        raise SimCLRError(f"{flag} {path}: features {features.shape} {features.dtype} do not "
                          f"match its {len(paths)} paths")
    what = f"{flag} {path}: features {features.shape} {features.dtype}"
    if not (np.issubdtype(features.dtype, np.floating) or
            np.issubdtype(features.dtype, np.integer)):  # (complex: its imaginary part lost)
        raise SimCLRError(f"{what} are no real numbers; give a file written by `simclr embed`")
    if features.shape[1] == 0:  # (every similarity 0: neighbours of nothing)
        raise SimCLRError(f"{what} have no dimension; give a file written by `simclr embed`")
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise SimCLRError(f"{flag} {path}: the features hold NaN or infinite values")
    zero = int((x.abs().sum(dim=1) == 0).sum())
    if zero:  # cosine is undefined there: normalize leaves them at 0
        print(f"note: {flag} {path}: {zero} of {len(x)} images have all-zero features; their "
              "similarity to every image is 0 (their neighbours mean nothing)", file=sys.stderr)
    return torch.nn.functional.normalize(x, dim=1), paths, encoder


def _blocks(queries: torch.Tensor, keys: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, cosine similarities (rows, M)) of ``queries`` (N, D) against ``keys``
    (M, D), a bounded block of rows at a time."""
    rows = max(1, BLOCK_BYTES // (4 * len(keys)))
    for start in range(0, len(queries), rows):
        yield start, queries[start:start + rows] @ keys.T


def _upper_blocks(features: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row s, cosine similarities (rows, N - s) of those rows with images s..N-1)
    of ``features`` (N, D): the similarity matrix on and above its diagonal, where each
    pair lies once, in blocks of bounded size (the full matrix computed it twice)."""
    start, n = 0, len(features)
    while start < n:
        rows = max(1, BLOCK_BYTES // (4 * (n - start)))
        yield start, features[start:start + rows] @ features[start:].T
        start += rows


def nearest(queries: torch.Tensor, keys: torch.Tensor, k: int,
            exclude: tuple[np.ndarray, np.ndarray], progress: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarities (N, k), indices (N, k)) of each query's ``k`` most similar keys,
    most similar first; ``exclude``: (query indices, key indices), pairs never returned
    (a query itself, under each path it has among the keys); ``progress``: the queries
    done shown on stderr (100k of them took minutes)."""
    sims, idx = [], []
    shown = Progress.of_pass(len(queries), "neighbors", progress)
    try:
        for start, block in _blocks(queries, keys):
            here = (exclude[0] >= start) & (exclude[0] < start + len(block))
            block[exclude[0][here] - start, exclude[1][here]] = -float("inf")
            top = block.topk(k, dim=1)
            sims.append(top.values.clamp(-1.0, 1.0))
            idx.append(top.indices)
            shown.advance(len(block))
    finally:
        shown.close()
    return torch.cat(sims), torch.cat(idx)


# float32 cosines of equal vectors land within about 1e-6 of 1: a threshold of 1 (exact
# duplicates) must still find them. Only there: a pair below any other threshold is out.
TOLERANCE = 1e-5


def _higher_threshold(threshold: float) -> str:
    """Advice for a threshold that matched too many pairs: a value halfway to 1 (capped
    at 0.999, rounded to 3 decimals), always above ``threshold``; none at 0.999 or more."""
    higher = round(min(0.999, (1 + threshold) / 2), 3)
    if higher > threshold:
        return f"raise the threshold (e.g. {higher:g})"
    return "they are (near-)identical copies: remove copies first, or use fewer images"


def duplicate_pairs(features: torch.Tensor, threshold: float, progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i (P,) int64, j (P,) int64, similarity (P,) float32) of every pair i < j with
    cosine similarity >= ``threshold``, most similar first; arrays, since 10M pairs as
    Python tuples took ~2 GB. SimCLRError (before the pairs are gathered) past
    ``MAX_PAIRS``. ``progress``: the pairs compared shown on stderr (the blocks shrink
    down the triangle, so pairs, not rows, tell the time left)."""
    n = len(features)
    shown = Progress.of_pass(n * (n - 1) // 2, "duplicates", progress, unit="pair")
    try:
        return _duplicate_pairs(features, threshold, shown)
    finally:
        shown.close()


def _duplicate_pairs(features: torch.Tensor, threshold: float, shown: Progress
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`duplicate_pairs`, its comparisons counted on ``shown``."""
    found_i, found_j, found_s = [], [], []
    count, cut = 0, threshold - TOLERANCE if threshold >= 1 else threshold
    for start, block in _upper_blocks(features):
        # row r and column k are images start + r and start + k: each pair once (k > r),
        # never an image with itself
        above = torch.arange(block.shape[1])[None, :] > torch.arange(len(block))[:, None]
        hit = (block >= cut) & above
        count += int(hit.sum())
        if count > MAX_PAIRS:
            raise SimCLRError(f"--duplicates {threshold:g}: more than {MAX_PAIRS:,} pairs are "
                              f"that similar; {_higher_threshold(threshold)}")
        r, c = torch.nonzero(hit, as_tuple=True)
        found_i.append(r.numpy() + start)
        found_j.append(c.numpy() + start)
        found_s.append(block[r, c].clamp(-1.0, 1.0).numpy())
        rows = len(block)  # pairs of these rows with the later images: k > r in the block
        shown.advance(rows * block.shape[1] - rows * (rows + 1) // 2)
    i, j, sim = (np.concatenate(a) for a in (found_i, found_j, found_s))
    order = np.lexsort((j, i, -sim))
    return i[order], j[order], sim[order]


DEFAULT_K = 5  # neighbours per image where --k is not given (fewer where fewer exist)


def write_neighbors(features: str | Path, out: str | Path, k: int | None = None,
                    queries: str | Path | None = None, overwrite: bool = True
                    ) -> dict[str, Any]:
    """Each query image's ``k`` nearest images as CSV (``path, neighbor1, similarity1,
    ...``); the queries are the images of ``features`` themselves unless given.
    ``k`` None: :data:`DEFAULT_K`, or as many as there are (a folder of 3 images: 2; a
    --k 5 never given was refused). ``overwrite`` False: an ``out`` another process wrote
    meanwhile is kept, refused."""
    keys, key_paths, key_encoder = _load(features, "--features")
    if queries is None:
        query_x, query_paths = keys, key_paths
    else:
        query_x, query_paths, query_encoder = _load(queries, "--queries")
        if query_x.shape[1] != keys.shape[1]:
            raise SimCLRError(f"--queries has {query_x.shape[1]}-d features, --features "
                              f"{keys.shape[1]}-d: embed both with the same checkpoint and layer")
        check_same_encoder(key_encoder, query_encoder)
        _note_unrecorded_encoder(("--features", features, key_encoder.name),
                                 ("--queries", queries, query_encoder.name))
    exclude = self_pairs(query_paths, key_paths)
    counts = np.bincount(exclude[0], minlength=1)
    available = len(keys) - int(counts.max())
    if k is None and available >= 1:
        k = min(DEFAULT_K, available)
    if k is None or not 1 <= k <= available:
        raise SimCLRError(f"--k {k or DEFAULT_K}: there are {available} other images to "
                          "choose from")
    sims, idx = nearest(query_x, keys, k, exclude, progress=True)
    header = ["path"] + [f"{name}{j}" for j in range(1, k + 1)
                         for name in ("neighbor", "similarity")]

    def write(tmp: Path) -> None:
        cells = [spreadsheet_cell(p) for p in key_paths]
        # (a name whose bytes are not UTF-8, kept by embed as surrogate escapes: those bytes)
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = csv.writer(f)
            rows.writerow(header)
            for path, s, i in zip(query_paths, sims.tolist(), idx.tolist(), strict=True):
                rows.writerow([spreadsheet_cell(path), *(v for j in range(k)
                                                         for v in (cells[i[j]], f"{s[j]:.6f}"))])

    out = written(Path(out).expanduser(), write,  # (the file results.output_file checked)
                  replace=overwrite)
    return {"out": str(out), "queries": int(len(query_x)), "images": int(len(keys)), "k": k}


# What a spreadsheet reads as the start of a formula (OWASP's CSV-injection list) ...
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ... except a plain number's sign: a class named -1 or +3 is no formula
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def spreadsheet_cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: one that would start a formula
    (``=HYPERLINK(...)``: a received classifier's class name, an embed file's path) gets
    a leading ``'``, as OWASP advises; plain numbers and other text are left as they are."""
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def check_same_encoder(keys: EncoderRecord, queries: EncoderRecord) -> None:
    """SimCLRError unless --features and --queries come from one encoder: by the weights
    where both files record them, else (an earlier simclr's file) by checkpoint path,
    step and layer; neither recorded: no check (a note says so)."""
    if keys.weights is not None and queries.weights is not None:
        if keys.weights == queries.weights:
            return
        key_sha, _, key_use = keys.weights.partition(" layer ")
        query_sha, _, query_use = queries.weights.partition(" layer ")
        if key_sha == query_sha:  # the same weights, another layer or side
            raise SimCLRError(f"--queries and --features were embedded by the same weights but "
                              f"at other layers or sides (layer {query_use} against layer "
                              f"{key_use}): embed both with the same --layer and --image-size")
        if keys.name == queries.name:  # a run replaced at its path between the embeds
            raise SimCLRError(f"--queries and --features were both embedded by {keys.name}, "
                              "but with other weights (the checkpoint was replaced between "
                              "the two embeds): embed both with the same checkpoint and layer")
    elif None in (keys.name, queries.name) or keys.name == queries.name:
        return
    raise SimCLRError(f"--queries were embedded by {queries.name}, --features by "
                      f"{keys.name}: embed both with the same checkpoint and layer")


def _note_unrecorded_encoder(*files: tuple[str, str | Path, str | None]) -> None:
    """A note on stderr for each (flag, file, encoder) whose encoder is not recorded: an
    earlier simclr's embed wrote it, and similarities between two encoders' features of
    one width would be listed as if they meant something (the check above refuses them)."""
    for flag, path, encoder in files:
        if encoder is None:
            print(f"note: {flag} {path}: no record of the encoder that embedded it (an "
                  "earlier simclr's embed wrote it): whether --features and --queries come "
                  "from the same checkpoint and layer cannot be checked", file=sys.stderr)


def self_pairs(query_paths: Sequence[str], key_paths: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, key indices) of the keys that are the query's own file: a query
    never finds itself, whatever the spelling of its path (--queries naming some of the
    same images; a folder embedded through a link; one file under two names)."""
    where: dict[tuple[Any, ...], list[int]] = {}
    for i, path in enumerate(key_paths):
        where.setdefault(_file_key(path), []).append(i)
    pairs = [(q, i) for q, path in enumerate(query_paths)
             for i in where.get(_file_key(path), ())]
    query_idx, key_idx = zip(*pairs, strict=True) if pairs else ((), ())
    return np.array(query_idx, dtype=np.int64), np.array(key_idx, dtype=np.int64)


def _file_key(path: str) -> tuple[Any, ...]:
    """What names one file, however its path is spelled: its device and inode (a hard
    link is one file under two names, which its real path does not see), or its real
    path where it cannot be read now (features of a folder since moved or removed)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ("path", os.path.realpath(path))
    return ("file", st.st_dev, st.st_ino)


def check_threshold(threshold: float) -> None:
    if not -1.0 <= threshold <= 1.0:
        raise SimCLRError(f"--duplicates {threshold!r}: a cosine similarity lies in [-1, 1]")


def write_duplicates(features: str | Path, out: str | Path, threshold: float,
                     overwrite: bool = True) -> dict[str, Any]:
    """The pairs of images at cosine similarity >= ``threshold`` as CSV (``path_a, path_b,
    similarity``), and how many images have at least one such twin (``overwrite``: as
    :func:`write_neighbors`)."""
    check_threshold(threshold)
    keys, paths = load_embeddings(features, "--features")
    first, second, sims = duplicate_pairs(keys, threshold, progress=True)

    def write(tmp: Path) -> None:
        cells = [spreadsheet_cell(p) for p in paths]
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = csv.writer(f)  # (as write_neighbors': a path's own bytes)
            rows.writerow(["path_a", "path_b", "similarity"])
            for start in range(0, len(sims), CSV_ROWS):
                part = slice(start, start + CSV_ROWS)
                rows.writerows([cells[i], cells[j], f"{s:.6f}"] for i, j, s in zip(
                    first[part].tolist(), second[part].tolist(), sims[part].tolist(),
                    strict=True))

    out = written(Path(out).expanduser(), write, replace=overwrite)
    return {"out": str(out), "images": int(len(keys)), "threshold": threshold,
            "pairs": len(sims), "images_with_a_duplicate": len(np.union1d(first, second))}
