"""Nearest neighbours and near-duplicates among embedded images (``simclr neighbors``).

What practitioners do with an encoder's representations first: find the images most
like a given one, and the (near-)duplicates of a collection. Both work on the ``.npz``
files of ``simclr embed`` (``features`` (N, D), ``paths`` (N,)) with cosine similarity,
the measure the contrastive loss trains (sim(u, v) = u.v / |u||v|, Sec. 2.1). The
similarity matrix is computed in blocks of rows, so memory stays bounded for large N.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr.errors import SimCLRError
from simclr.files import written

BLOCK_BYTES = 1 << 28  # one block of the similarity matrix: 256 MiB of float32
MAX_PAIRS = 10_000_000  # more "duplicates" than this: the threshold is not one


def load_embeddings(path: str | Path, flag: str) -> tuple[torch.Tensor, np.ndarray]:
    """(L2-normalised float32 features (N, D), paths (N,)) of a ``simclr embed`` file."""
    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as data:
            missing = [k for k in ("features", "paths") if k not in data.files]
            if missing:
                raise SimCLRError(f"{flag} {path}: no '{missing[0]}' array; give a file "
                                  "written by `simclr embed`")
            features, paths = data["features"], data["paths"]
    except FileNotFoundError:
        raise SimCLRError(f"{flag} {path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise SimCLRError(f"{flag} {path}: not a readable .npz file ({exc})") from None
    if features.ndim != 2 or len(features) != len(paths) or len(features) == 0:
        raise SimCLRError(f"{flag} {path}: features {features.shape} do not match its "
                          f"{len(paths)} paths")
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise SimCLRError(f"{flag} {path}: the features hold NaN or infinite values")
    return torch.nn.functional.normalize(x, dim=1), np.asarray(paths, dtype=str)


def _blocks(queries: torch.Tensor, keys: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, cosine similarities (rows, M)) of ``queries`` (N, D) against ``keys``
    (M, D), a bounded block of rows at a time."""
    rows = max(1, BLOCK_BYTES // (4 * len(keys)))
    for start in range(0, len(queries), rows):
        yield start, queries[start:start + rows] @ keys.T


def nearest(queries: torch.Tensor, keys: torch.Tensor, k: int,
            exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarities (N, k), indices (N, k)) of each query's ``k`` most similar keys,
    most similar first; ``exclude_self``: queries are the keys, row i never returns i."""
    sims, idx = [], []
    for start, block in _blocks(queries, keys):
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = -float("inf")
        top = block.topk(k, dim=1)
        sims.append(top.values)
        idx.append(top.indices)
    return torch.cat(sims), torch.cat(idx)


def duplicate_pairs(features: torch.Tensor, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of every pair i < j with cosine similarity >= ``threshold``,
    most similar first."""
    pairs = []
    for start, block in _blocks(features, features):
        rows, cols = torch.nonzero(block >= threshold, as_tuple=True)
        keep = cols > rows + start  # each pair once, never an image with itself
        for r, c in zip(rows[keep].tolist(), cols[keep].tolist(), strict=True):
            pairs.append((r + start, c, float(block[r, c])))
        if len(pairs) > MAX_PAIRS:
            raise SimCLRError(f"--duplicates {threshold}: more than {MAX_PAIRS:,} pairs are "
                              "that similar; raise the threshold (e.g. 0.95)")
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def write_neighbors(features: str | Path, out: str | Path, k: int = 5,
                    queries: str | Path | None = None) -> dict[str, Any]:
    """Each query image's ``k`` nearest images as CSV (``path, neighbor1, similarity1,
    ...``); the queries are the images of ``features`` themselves unless given."""
    keys, key_paths = load_embeddings(features, "--features")
    if queries is None:
        query_x, query_paths = keys, key_paths
    else:
        query_x, query_paths = load_embeddings(queries, "--queries")
        if query_x.shape[1] != keys.shape[1]:
            raise SimCLRError(f"--queries has {query_x.shape[1]}-d features, --features "
                              f"{keys.shape[1]}-d: embed both with the same checkpoint and layer")
    available = len(keys) - (1 if queries is None else 0)
    if not 1 <= k <= available:
        raise SimCLRError(f"--k {k}: there are {available} other images to choose from")
    sims, idx = nearest(query_x, keys, k, exclude_self=queries is None)
    header = ["path"] + [f"{name}{j}" for j in range(1, k + 1)
                         for name in ("neighbor", "similarity")]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(header)
            for path, s, i in zip(query_paths, sims.tolist(), idx.tolist(), strict=True):
                rows.writerow([path, *(v for j in range(k)
                                       for v in (key_paths[i[j]], f"{s[j]:.6f}"))])

    written(Path(out), write)
    return {"out": str(out), "queries": int(len(query_x)), "images": int(len(keys)), "k": k}


def write_duplicates(features: str | Path, out: str | Path, threshold: float
                     ) -> dict[str, Any]:
    """The pairs of images at cosine similarity >= ``threshold`` as CSV (``path_a, path_b,
    similarity``), and how many images have at least one such twin."""
    if not -1.0 <= threshold <= 1.0:
        raise SimCLRError(f"--duplicates {threshold}: a cosine similarity lies in [-1, 1]")
    keys, paths = load_embeddings(features, "--features")
    pairs = duplicate_pairs(keys, threshold)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(["path_a", "path_b", "similarity"])
            rows.writerows([paths[i], paths[j], f"{s:.6f}"] for i, j, s in pairs)

    written(Path(out), write)
    twins = {i for i, _, _ in pairs} | {j for _, j, _ in pairs}
    return {"out": str(out), "images": int(len(keys)), "threshold": threshold,
            "pairs": len(pairs), "images_with_a_duplicate": len(twins)}
