"""What a model computes on a folder: the representations of every image (``simclr
embed``, :func:`embed_folder`) and a classifier's ranked predictions, scored where the
folder's classes are the classifier's (``simclr predict``, :func:`predict_folder`).
"""

from __future__ import annotations

import csv
import numbers
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simclr.checkpoint_read import load_checkpoint
from simclr.classifiers import classifier_file, classifier_from_checkpoint, note_unfinished
from simclr.config import DataConfig
from simclr.errors import SimCLRError, check_counts
from simclr.files import written
from simclr.neighbors import PATHS_KEY, WEIGHTS_KEY, paths_array, spreadsheet_cell
from simclr.pretrained import (
    at_image_size,
    encoder_spec,
    representation_from_checkpoint,
    trained_for,
    weights_digest,
)
from simclr.results import created_removed_on_failure, output_file
from simclr.runtime import refuse_spawned_import


def folder_features(
    module: nn.Module, image_size: int, data: str, batch_size: int, device: str,
    precision: str, workers: int | None, cache_dir: str, unlabeled: bool = False,
    max_pixels: int = DataConfig.max_pixels, progress: str | None = None,
    channels_last: bool = True, decoder: str = DataConfig.decoder,
) -> tuple[Any, np.ndarray, np.ndarray, list[str]]:
    """``module``'s outputs over a folder with the evaluation transform: (the opened
    source, float32 (N, D) in source order, labels int64 (N,), the N files' paths;
    unreadable files are left out; ``unlabeled``: also the images beside an ImageFolder's
    class folders, labelled -1; ``max_pixels``: larger images are skipped unread;
    ``progress``: the pass's name on stderr, None: unseen; ``channels_last``: images and
    weights in that memory format, the faster, as the evaluations compute them;
    ``decoder``: where uncached JPEGs decode, --decoder)."""
    from simclr.data import open_source
    from simclr.features import indexed_features
    from simclr.runtime import resolve_device, resolve_precision
    from simclr.validate import validate_data

    data_cfg = DataConfig(workers=workers, cache_dir=cache_dir, max_pixels=max_pixels,
                          decoder=decoder)
    validate_data(data_cfg)  # (from Python: -1 workers or a text max_pixels met torch)
    dev = resolve_device(str(device))  # (a torch.device, as load_encoder takes, too)
    source = open_source(data, data_cfg, train=False, image_size=image_size, evaluation=True,
                         unlabeled=unlabeled)
    feats, labels, rows = indexed_features(module, source, image_size, batch_size, dev,
                                           resolve_precision(precision, dev),
                                           channels_last=channels_last, progress=progress)
    # A named data set (the digits, torchvision's) has no files: its rows are named
    # by their place in it, e.g. 'digits[test]#17' (neighbors, predict's CSV name them).
    names = source.paths or [f"{source.name}#{i}" for i in range(source.num_images)]
    return source, feats, labels, [names[i] for i in rows]


# Stopped mid-way (an error, Ctrl-C), each of these removes the empty folders it made
# for --out, as the command line does: a caller from Python is left none either.
@created_removed_on_failure()
def embed_folder(
    checkpoint: str | Path, data: str, out: str | Path, batch_size: int = 256,
    device: str = "auto", precision: str = "auto", workers: int | None = None,
    cache_dir: str = DataConfig.cache_dir, layer: str = "h",
    image_size: int | None = None, overwrite: bool = False,
    max_pixels: int = DataConfig.max_pixels, channels_last: bool = True,
    decoder: str = DataConfig.decoder,
) -> dict[str, Any]:
    """Representations of every image of a folder (evaluation transform), saved as .npz.

    ``layer``: h (default), z or gK (:func:`representation_from_checkpoint`);
    ``image_size``: the side evaluated at, if not the encoder's own
    (:func:`at_image_size`); an existing ``out`` is replaced only with ``overwrite``
    (as :func:`simclr.export.export`); ``channels_last``: images and weights in that
    memory format (the faster, as the evaluations compute them); ``decoder``: where
    uncached JPEGs decode (--decoder: auto, pil or device). Arrays:
    ``features`` float32 (N, D), ``labels`` int64 (N,) (sorted class-name order of an
    ImageFolder, -1 for a flat folder), ``classes`` (C,) str, ``paths_utf8`` uint8
    (each image's path in UTF-8, a NUL after each: :func:`simclr.neighbors.embedded_paths`
    reads them), ``encoder`` () str (checkpoint file, step, layer and another side if
    given), ``encoder_weights`` () str (:func:`weights_digest` of the module that
    embedded, its layer and side: what ``simclr neighbors`` compares).
    """
    refuse_spawned_import()
    # before any work (a float or text failed after the features were made)
    check_counts({"--batch-size": batch_size, "--image-size": image_size})
    out = output_file(out, overwrite, data)  # before the work, and after it by written()
    given = load_checkpoint(checkpoint)
    ckpt = at_image_size(given, image_size, checkpoint)
    module, spec = representation_from_checkpoint(ckpt, layer)
    note_unfinished(Path(given.get("file", checkpoint)), ckpt)  # (as the evaluations say)
    # (before the pass: it may move the module to another device)
    weights = f"sha256 {weights_digest(module)} layer {layer} at {spec['image_size']} px"
    source, feats, labels, paths = folder_features(module, spec["image_size"], data,
                                                   batch_size, device, precision, workers,
                                                   cache_dir, True, max_pixels, "embed",
                                                   channels_last, decoder)
    # another side: other features (the encoder's own, given as --image-size: the same)
    at = f" at {image_size} px" if image_size not in (None, encoder_spec(given)[
        "image_size"]) else ""
    arrays = {"features": feats.astype(np.float32), "labels": labels.astype(np.int64),
              "classes": np.array(source.classes, dtype=str), PATHS_KEY: paths_array(paths),
              # which representation: features of two are not comparable (simclr neighbors;
              # the file resolved, so two shells' spellings of one checkpoint agree)
              "encoder": np.array(f"{Path(ckpt['file']).resolve()} {trained_for(ckpt)} "
                                  f"layer {layer}{at}"),
              # the same weights whatever file held them (a copied run, an export), and
              # other weights at a path and step a replaced run reused: the path cannot tell
              WEIGHTS_KEY: np.array(weights)}

    def write(tmp: Path) -> None:  # whole or not at all (a file object: savez adds no .npz)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # (numpy's stubs: allow_pickle)

    written(out, write, replace=overwrite)  # (another process's meanwhile: kept)
    return {"out": str(out), "layer": layer, "image_size": spec["image_size"],
            "images": int(feats.shape[0]), "dim": int(feats.shape[1]),
            "skipped": len(source.skipped)}


# Probabilities made Python floats at a time, as a few rows: all at once took 3.2 GB for
# --top-k 5000 on 10k images (a float object per probability, an int per class index).
_ROW_VALUES = 1 << 16


def _ranked_rows(top_p: torch.Tensor,
                 top_i: torch.Tensor) -> Iterator[tuple[list[float], list[int]]]:
    """Each row's (probabilities, class indices) of ``top_p``/``top_i`` (N, k), as lists
    made a few rows at a time (:data:`_ROW_VALUES`)."""
    step = max(1, _ROW_VALUES // max(1, top_p.shape[1]))
    for start in range(0, len(top_p), step):
        yield from zip(top_p[start:start + step].tolist(), top_i[start:start + step].tolist(),
                       strict=True)


def _write_predictions(out: Path, paths: list[str], top_p: torch.Tensor, top_i: torch.Tensor,
                       classes: list[str], threshold: float, overwrite: bool = True) -> None:
    """The CSV of :func:`predict_folder`; ``top_p``/``top_i``: (N, k) ranked probabilities
    and class indices. Written whole or not at all: a rerun never meets half a file.
    ``overwrite`` False: one another process wrote meanwhile is kept and refused."""
    k = top_p.shape[1]
    names = [spreadsheet_cell(c) for c in classes]  # a received classifier's: no formulas

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "prediction", "probability",
                             *(f"{c}{j + 1}" for j in range(k) for c in ("top", "p"))])
            for path, (ps, ids) in zip(paths, _ranked_rows(top_p, top_i), strict=True):
                ranked = [x for i, p in zip(ids, ps, strict=True)
                          for x in (names[i], f"{p:.6f}")]
                prediction = names[ids[0]] if ps[0] >= threshold else ""
                writer.writerow([spreadsheet_cell(path), prediction, f"{ps[0]:.6f}", *ranked])

    written(out, write, replace=overwrite)


# Elements of one (images x classes) block of predict's float64 scores: all at once, the
# log-probabilities, their exp and the ranking's copies held 16.9 GB for 100k images x
# 5,000 classes; a block's are freed before the next (32 MiB each).
PREDICT_BLOCK_ELEMENTS = 1 << 22
# A block's rows are a multiple of this, and the last block takes the rows left over
# (fewer than a block): MKL's float64 matmul gives a row the bits the whole matrix's
# product gave it only so; blocks of 37 rows, or a last block of 3, moved some by 1e-15.
_BLOCK_ROWS = 64


def _row_blocks(rows: int, classes: int) -> list[slice]:
    """The blocks of :func:`_ranked_blocks`: about :data:`PREDICT_BLOCK_ELEMENTS` scores
    each (at least :data:`_BLOCK_ROWS` rows), the last up to twice that; one empty
    block for no rows."""
    block = max(1, PREDICT_BLOCK_ELEMENTS // max(1, classes) // _BLOCK_ROWS) * _BLOCK_ROWS
    starts = list(range(0, rows, block)) or [0]
    if len(starts) > 1 and rows - starts[-1] < block:
        starts.pop()  # a short last block joins the one before
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], rows], strict=True)]


def _known_labels(classes: list[str], folder_classes: list[str],
                  labels: np.ndarray) -> np.ndarray:
    """(N,) each image's folder label (``labels``, indices into ``folder_classes``, -1
    unlabeled) as an index into the classifier's ``classes``; -1 where it has none."""
    index = {name: i for i, name in enumerate(classes)}
    known = [index.get(str(name), -1) for name in folder_classes]
    return np.array([known[y] if y >= 0 else -1 for y in labels], dtype=np.int64)


def _ranked_blocks(fc: nn.Linear, feats: np.ndarray, mapped: np.ndarray,
                   k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top_p, top_i, ranks) of the classifier ``fc`` (float64) on ``feats`` (N, D): each
    image's k most probable classes' probabilities and indices (N, k), and how many other
    classes score at least its label ``mapped`` (N,) (:func:`simclr.results.label_ranks`;
    C where -1). Ranked by the float64 log-probabilities, whose exp is 0 ~745 below the
    best: the probabilities tied classes the scores tell apart. Rows run in blocks of
    :data:`PREDICT_BLOCK_ELEMENTS` scores, so only the (N, k) ones are kept."""
    from simclr.results import label_ranks

    n = len(feats)
    # Filled in place: each block's small results kept as tensors of their own, between
    # its large ones, split the heap so that it grew by a block each (4.6 GB for 100k
    # images x 5,000 classes).
    top_p = torch.empty(n, k, dtype=torch.float64)
    top_i = torch.empty(n, k, dtype=torch.int64)
    ranks = torch.empty(n, dtype=torch.int64)
    with torch.no_grad():
        for rows in _row_blocks(n, fc.out_features):
            log_probs = torch.log_softmax(fc(torch.from_numpy(feats[rows]).double()), dim=1)
            top_p[rows], top_i[rows] = log_probs.exp().topk(k, dim=1)
            ranks[rows] = label_ranks(log_probs, mapped[rows])
    return top_p, top_i, ranks


def _scores(ranks: torch.Tensor, top_p: torch.Tensor, num_classes: int, mapped: np.ndarray,
            labels: np.ndarray, min_probability: float | None) -> dict[str, Any]:
    """Accuracy over the images whose folder class the classifier knows, and the counts
    of the others; with ``min_probability``, the confident rows and their top-1.
    ``ranks``, ``top_p``: :func:`_ranked_blocks`'s (float64 log-probabilities ranked:
    float32 probabilities ~100 logits below the best were 0, tied, and top-5 a miss);
    ``mapped``: :func:`_known_labels`; ``labels``: (N,) the folder's, -1 unlabeled."""
    from simclr.results import ranked_accuracy, ranked_summary

    result: dict[str, Any] = {}
    if (labels >= 0).any():  # class folders: the counts, even when none is the classifier's
        result.update(labeled=int((mapped >= 0).sum()),
                      unknown_class=int(((mapped < 0) & (labels >= 0)).sum()),
                      unlabeled=int((labels < 0).sum()))
    if (mapped >= 0).any():
        result.update(ranked_summary(ranks[np.flatnonzero(mapped >= 0)], num_classes))
    if min_probability is not None:
        confident = (top_p[:, 0] >= min_probability).numpy()
        result["confident"] = int(confident.sum())
        if (mapped >= 0).any():
            sure = np.flatnonzero(confident & (mapped >= 0))
            result["confident_top1"] = (ranked_accuracy(ranks[sure], (1,))[0]
                                        if len(sure) else None)  # (a tie: a miss)
    return result


DEFAULT_TOP_K = 5  # classes each row of `simclr predict` ranks, unless told


@created_removed_on_failure()
def predict_folder(
    checkpoint: str | Path, data: str, out: str | Path, top_k: int | None = None,
    batch_size: int = 256, device: str = "auto", precision: str = "auto",
    workers: int | None = None, cache_dir: str = DataConfig.cache_dir,
    min_probability: float | None = None, overwrite: bool = False,
    max_pixels: int = DataConfig.max_pixels, channels_last: bool = True,
    decoder: str = DataConfig.decoder,
) -> dict[str, Any]:
    """Classify every image of a folder; one CSV row per image (an existing ``out`` is
    replaced only with ``overwrite``).

    Columns: ``path``, ``prediction``, ``probability`` (softmax), then ``top<k>`` /
    ``p<k>`` for the k most probable classes (``top_k``: 5 unless given, at most the
    classifier's classes; a larger one given is said). Where the folder is an ImageFolder whose
    class names the classifier knows, the result also holds the top-1 / top-k accuracy
    over those images (``labeled``); the others are counted as ``unknown_class`` (in a
    class folder the classifier does not know) or ``unlabeled`` (beside the class
    folders: no label to score them by).

    ``min_probability``: a row whose top probability is below it has an empty
    ``prediction`` (its ranked classes are still listed): a rejection of images that
    belong to none of the classes, or are doubtful. The result counts the ``confident``
    rows and, on a labeled folder, the top-1 accuracy among those (``confident_top1``).
    ``channels_last``: images and weights in that memory format (the faster);
    ``decoder``: where uncached JPEGs decode (--decoder: auto, pil or device).
    """
    refuse_spawned_import()
    check_counts({"--top-k": top_k, "--batch-size": batch_size})  # (before any work)
    if min_probability is not None and not (isinstance(min_probability, numbers.Real) and
                                            0 < min_probability <= 1):
        raise SimCLRError(f"--min-probability must lie in (0, 1], got {min_probability}")
    threshold = 0.0 if min_probability is None else min_probability
    out = output_file(out, overwrite, data)  # before the work, and after it by written()
    path = classifier_file(checkpoint)
    ckpt = load_checkpoint(path)
    model, spec, classes = classifier_from_checkpoint(ckpt)
    note_unfinished(path, ckpt)
    k = min(DEFAULT_TOP_K if top_k is None else top_k, len(classes))
    # Features under the run's autocast, as the protocols compute them; the linear layer
    # in float64, as linear-eval fits it, so a bf16 rounding never flips a close call.
    source, feats, labels, paths = folder_features(
        nn.Sequential(model.encoder, model.neck), spec["image_size"], data, batch_size,
        device, precision, workers, cache_dir, True, max_pixels, "predict", channels_last,
        decoder)
    if top_k is not None and k < top_k:  # (as `simclr knn` does a --k past its training
        # images: capped, said; the default 5 of a 2-class classifier goes unsaid)
        print(f"note: --top-k {top_k} is more than the classifier's {len(classes)} classes: "
              f"each row ranks all of them (top-k {k})", file=sys.stderr)
    mapped = _known_labels(classes, source.classes, labels)
    top_p, top_i, ranks = _ranked_blocks(model.fc.double(), feats, mapped, k)
    _write_predictions(out, paths, top_p, top_i, classes, threshold, overwrite)
    result: dict[str, Any] = {"out": str(out), "images": int(len(feats)),
                              "skipped": len(source.skipped), "classes": len(classes)}
    result.update(_scores(ranks, top_p, len(classes), mapped, labels, min_probability))
    return result
