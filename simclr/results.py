"""Results of an evaluation: top-k accuracies, confusion matrices, JSON and figures.

Every protocol (kNN, linear, fine-tuning) reports through these, so its ``NAME.json``
(``knn.json``, ``linear_eval.json``, ...: :data:`RESULTS`) and ``NAME_confusion.png``
mean the same thing in every run directory. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr.checkpoint import CHECKPOINTS
from simclr.checkpoint_read import stopped_while_finishing
from simclr.errors import SimCLRError
from simclr.files import LOCK_NAME, folder_holder, write_json, written
from simclr.folders import SPLITS
from simclr.runtime import provenance


@dataclass(frozen=True)
class Ranked:
    """What the results need of test scores (M, C), reduced row by row as each block of
    them is computed (:func:`rank_rows`): an evaluation then keeps O(M) numbers, not the
    matrix of every test image's score for every class (100k images x 10k classes, kNN's
    float64: 8 GB, twice that while its blocks were joined). Every function here that
    takes scores takes these too, with the same results."""

    ahead: torch.Tensor  # (M,) int64 on CPU: how many other classes score at least the label
    predictions: np.ndarray  # (M,) top-1 as counted (:func:`top1_predictions`)
    num_classes: int  # C

    @staticmethod
    def join(parts: Sequence[Ranked], num_classes: int) -> Ranked:
        """The rows of ``parts`` (consecutive blocks) as one; none: zero rows."""
        if not parts:
            return Ranked(torch.zeros(0, dtype=torch.int64), np.zeros(0, np.int64),
                          num_classes)
        return Ranked(torch.cat([p.ahead for p in parts]),
                      np.concatenate([p.predictions for p in parts]), num_classes)


def rank_rows(scores: torch.Tensor, labels: torch.Tensor | np.ndarray) -> Ranked:
    """A block of scores (B, C) with its labels (B,) reduced to :class:`Ranked`."""
    ahead = label_ranks(scores, labels)
    return Ranked(ahead.cpu(), _predictions(scores, labels, (ahead < 1).cpu().numpy()),
                  scores.shape[1])


def topk_accuracy(scores: torch.Tensor | Ranked, labels: torch.Tensor | np.ndarray,
                  ks: Sequence[int] = (1, 5)) -> list[float]:
    """Fraction of rows whose label is among the k highest scores, for each k.

    scores (M, C), labels (M,). A tie counts against the label: it is among the top k
    only when fewer than k other classes score as much or more. (A kNN query's classes
    without a vote all score 0: with k=1 neighbour, top-5 is top-1, not top-1 plus
    whichever unvoted classes a sort happens to put first.) A NaN score is a miss.
    """
    ranks = scores.ahead if isinstance(scores, Ranked) else label_ranks(scores, labels)
    return ranked_accuracy(ranks, ks)


def ranked_accuracy(ranks: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """:func:`topk_accuracy` of rows whose :func:`label_ranks` are ``ranks`` (M,): what
    scores computed a block of rows at a time count (predict's) without all of them."""
    # Counted, then divided in float64: 22/40 is 0.55, not float32's 0.550000011920929.
    rows = len(ranks)
    return [int((ranks < k).sum()) / rows if rows else math.nan for k in ks]


def top1_hits(scores: torch.Tensor, labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """How many rows :func:`topk_accuracy` counts as top-1 hits, as a 0-d tensor on the
    device of ``scores``: a training's tally adds it each step without a host sync (an
    argmax there counted a tie with the label as a hit whenever the label came first)."""
    return (label_ranks(scores, labels) < 1).sum()


def label_ranks(scores: torch.Tensor, labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(M,) how many other classes score at least each row's label (C for a NaN score
    or a label outside 0..C-1: a miss at every k), on the device of ``scores``: the
    label is among the top k where this is below k (:func:`topk_accuracy`)."""
    labels = torch.as_tensor(labels, device=scores.device).long()
    known = (labels >= 0) & (labels < scores.shape[1])  # (another label is a miss)
    own = scores.gather(1, torch.where(known, labels, 0)[:, None])
    ahead = (scores >= own).sum(1) - 1  # the other classes scoring at least the label's
    return torch.where(own[:, 0].isnan() | ~known, scores.shape[1], ahead)


def top1_predictions(scores: torch.Tensor, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(M,) each row's predicted class as top-1 counts it (:func:`topk_accuracy`): the
    label where it is a hit, else the best-scoring other class (the lowest index of
    those tied), so a tie with the label is predicted off the diagonal. argmax gave a
    tie to the lowest index: the confusion matrix's diagonal counted hits top-1 did not."""
    return _predictions(scores, labels, (label_ranks(scores, labels) < 1).cpu().numpy())


def _predictions(scores: torch.Tensor, labels: torch.Tensor | np.ndarray,
                 hit: np.ndarray) -> np.ndarray:
    """:func:`top1_predictions`, given which rows are top-1 hits (``hit`` (M,) bool)."""
    labels = np.asarray(torch.as_tensor(labels).cpu(), np.int64)
    others = scores.clone()
    known = np.flatnonzero((labels >= 0) & (labels < scores.shape[1]))
    others[known, labels[known]] = -math.inf  # (a NaN elsewhere is argmax's: not the label)
    return np.where(hit, labels, others.argmax(1).cpu().numpy())


def accuracy_summary(scores: torch.Tensor | Ranked,
                     labels: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """``{"top1", "top5"}``; top-5 is None with 5 classes or fewer (it would be 1.0)."""
    if isinstance(scores, Ranked):
        return ranked_summary(scores.ahead, scores.num_classes)
    return ranked_summary(label_ranks(scores, labels), scores.shape[1])


def ranked_summary(ranks: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """:func:`accuracy_summary` of rows whose :func:`label_ranks` among ``num_classes``
    are ``ranks``."""
    top1, top5 = ranked_accuracy(ranks, (1, 5))
    return {"top1": top1, "top5": top5 if num_classes > 5 else None}


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class (the protocols' from
    :func:`top1_predictions`: the diagonal holds top-1's hits, a tie counted off it)."""
    flat = np.asarray(labels, np.int64) * num_classes + np.asarray(preds, np.int64)
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def save_confusion_figure(matrix: np.ndarray, classes: Sequence[str], path: str | Path,
                          title: str = "") -> Path:
    """A row-normalised confusion-matrix heat map as PNG (matplotlib Agg, no GUI).
    Raises :class:`SimCLRError` where matplotlib is missing (the results it goes with
    are written before it: the caller says so, in one line)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # (a dependency removed since: not worth a traceback)
        raise SimCLRError(f"matplotlib cannot be imported ({exc}): pip install matplotlib") \
            from None

    rows = matrix.sum(1, keepdims=True)
    norm = matrix.astype(np.float32)  # (float64 doubled the C x C copy a figure cannot use)
    norm /= np.maximum(rows, 1)
    n = len(classes)
    side = min(4 + 0.35 * n, 20)
    fig = Figure(figsize=(side, side * 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 40:  # beyond that, tick labels are unreadable
        labels = _tick_labels(classes)
        ax.set_xticks(range(n), labels=labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels=labels, fontsize=7)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                            color="w" if norm[i, j] < 0.5 else "k", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    written(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return path


def _tick_labels(classes: Sequence[str]) -> list[str]:
    """The class names, each that matplotlib's font cannot draw (CJK, say: empty boxes
    and a warning per glyph) replaced by its index '#k' (the JSON holds the names)."""
    from matplotlib import font_manager

    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
    return [name if all(font.get_char_index(ord(c)) for c in name) else f"#{k}"
            for k, name in enumerate(classes)]


def write_results(run_dir: str | Path | None, name: str, results: dict[str, Any],
                  overwrite: bool = True) -> None:
    """Write ``results`` as ``run_dir/name`` (indented JSON); no-op without a run dir.
    ``overwrite`` False (a command without --overwrite): one that another process wrote
    meanwhile is kept, and refused in one line (:func:`simclr.files.written`)."""
    if run_dir is None:
        return
    write_json(Path(run_dir) / name, results, replace=overwrite)


def feature_sizes(train_x: np.ndarray, test_x: np.ndarray, num_classes: int) -> dict[str, int]:
    """What the results of a protocol on features (N, D) and (M, D) record of their sizes."""
    return {"num_train": int(train_x.shape[0]), "num_test": int(test_x.shape[0]),
            "num_classes": num_classes, "feature_dim": int(train_x.shape[1])}


def record_inputs(results: dict[str, Any], train: Any, test: Any) -> None:
    """Put what identifies an evaluation into its ``results``, beside the encoder's
    ``source`` (already there): its ``data``, the training and test sets (a folder as
    an absolute, resolved path; a named data set by its name; a test set held out of
    the training folder as ``source``'s ``test`` describes the split), and the
    ``provenance`` of this simclr (version, git SHA, command line), as a run's
    config.yaml records its own: results compared later need both to be comparable;
    and how many images of each were unreadable and left out, which and why (the
    accuracy is over the others)."""
    results["skipped_images"] = {"train": len(getattr(train, "skipped", ())),
                                 "test": len(getattr(test, "skipped", ()))}
    results["skipped_files"] = {split: [list(s) for s in getattr(data, "skipped", ())]
                                for split, data in (("train", train), ("test", test))}
    split = (results.get("source") or {}).get("test")
    results["data"] = {"train": _data_name(train),
                       "test": split if isinstance(split, dict) else _data_name(test)}
    results["provenance"] = provenance()


def _data_name(data: Any) -> str | None:
    """A source's folder, absolute and resolved (its ``name``: the folder it was opened
    from, as given), or its name where it is none (``cifar10[test]``, ``digits``); None
    for a source without one (arrays in memory)."""
    name = getattr(data, "name", None)
    if not isinstance(name, str):
        return None
    return str(Path(name).resolve()) if Path(name).is_dir() else name


# More classes than this: no confusion-matrix figure. Its cells would be under a pixel
# (tick labels stop at 40 classes), and its C x C matrices cost memory: 10,000 classes
# took 9 GB, 20,000 would have been killed after the whole evaluation.
MAX_FIGURE_CLASSES = 1000


def finish_results(results: dict[str, Any], out: Path | None, name: str,
                   scores: torch.Tensor | Ranked,
                   labels: np.ndarray, train: Any, test: Any,
                   source: dict[str, Any] | None = None, verbose: bool = True,
                   overwrite: bool = True) -> None:
    """JSON + confusion-matrix figure into the run directory. The results record the
    encoder's ``source``, the data and this simclr (:func:`record_inputs`), and how many
    images of ``train`` and ``test`` were unreadable and left out (and which, with the
    reason), since the accuracy is over the others.
    The JSON is written first, so a figure that fails (or runs out of memory) loses no
    result (one that cannot be written, a full disk, is a warning: the command is done);
    it is written again naming the figure (an earlier run's figure is removed
    first: never beside these results). No figure past
    :data:`MAX_FIGURE_CLASSES` classes (a note says so). ``overwrite`` False: a JSON
    another process wrote there meanwhile is kept and refused (:func:`write_results`),
    before the figure."""
    if source is not None:
        results["source"] = source
    record_inputs(results, train, test)
    if out is None:
        return
    write_results(out, f"{name}.json", results, overwrite)
    # An earlier run's figure goes with its results: one that fails now (or is not
    # drawn) leaves these results without a figure, not beside another run's.
    (out / f"{name}_confusion.png").unlink(missing_ok=True)
    classes = train.classes
    if len(classes) > MAX_FIGURE_CLASSES:
        log(f"note: no {name}_confusion.png: {len(classes):,} classes are more than a "
            f"figure can show ({MAX_FIGURE_CLASSES:,} at most)", verbose)
        return
    preds = (scores.predictions if isinstance(scores, Ranked)
             else top1_predictions(scores, labels))
    matrix = confusion_matrix(labels, preds, len(classes))
    try:
        fig = save_confusion_figure(matrix, classes, out / f"{name}_confusion.png",
                                    f"{name}: top-1 {100 * results['top1']:.2f}%")
    except SimCLRError as exc:  # (a full disk): the results are written, the command done;
        # an error here told a failure, and its retry met "already holds {name}.json"
        log(f"warning: no {name}_confusion.png ({exc}); the results are in "
            f"{out / f'{name}.json'}", True)
        return
    results["confusion_figure"] = str(fig)
    write_results(out, f"{name}.json", results)  # (over this run's own)


# What each evaluation command writes under its --out, never overwritten: checked up
# front by the command line and again where the command writes.
RESULTS: dict[str, tuple[str, ...]] = {
    "knn": ("knn.json",),
    "linear-eval": ("linear_eval.json", "checkpoints/linear.pt"),
    "finetune": ("finetune.json", "checkpoints/finetune.pt"),
    "transform-probe": ("transform_probe.json",),
}


def prepare_dir(run_dir: str | Path | None, results: Sequence[str] = (),
                named: Path | None = None, overwrite: bool | None = None) -> Path | None:
    """Create ``run_dir`` (None: no directory, nothing written) for a command whose
    output files are ``results``; one of them already there from an earlier run is
    refused (unless ``overwrite``: see :func:`check_results_free`), so re-running a
    command never overwrites what it wrote before. ``named``: see
    :func:`check_out_folder`. Returns the folder as an absolute, resolved path: the
    paths results files record under it must not depend on the shell's folder."""
    if run_dir is None:
        return None
    path = Path(run_dir).expanduser()
    check_results_free(path, results, named, overwrite)
    try:
        make_folder(path)
    except OSError as exc:
        raise SimCLRError(f"cannot create the folder {path}: {exc.strerror}") from None
    return path.resolve()


# The --out folders this process created (prepare_dir): a command that fails or is
# stopped before writing anything in one removes it (remove_empty_created), so no
# empty folder is left to pass for a result.
CREATED: list[Path] = []
_CREATED_LOCK = threading.Lock()  # (a caller's threads may each make folders)
# Per thread, the folders made inside each created_removed_on_failure block open in it
# (innermost last): a block that fails removes its own, never another thread's.
_BLOCKS = threading.local()


def make_folder(path: Path) -> None:
    """``mkdir -p path``, every level it creates (a/b/c with only a there: b and c)
    recorded in :data:`CREATED`, outermost first (a/../b: b and a, not 'a/..', the
    folder there already). A link to a missing folder on the way (:func:`check_out_folder`
    let it pass) is followed: its target is made. Raises OSError."""
    link = _missing_link(path)
    if link is not None:  # (mkdir would stop at the link: 'File exists')
        path = Path(os.path.realpath(link)) / path.relative_to(link)
    new = [p for p in (path, *path.parents) if p.name != ".." and not p.exists()][::-1]
    path.mkdir(parents=True, exist_ok=True)
    made = [p.resolve() for p in new]
    with _CREATED_LOCK:
        CREATED.extend(made)
    for block in getattr(_BLOCKS, "open", ()):
        block.extend(made)


def remove_empty_created() -> None:
    """Remove the folders of :data:`CREATED` that are still empty (never one holding
    anything), and forget them all. A run folder holding only its lock file, released
    (a run stopped before it wrote anything), counts as empty."""
    with _CREATED_LOCK:
        made = list(CREATED)
    _remove_empty(made)


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders of ``made`` (outermost first) that are still empty, innermost
    first, and forget them (in :data:`CREATED`)."""
    for path in reversed(made):
        try:
            if [p.name for p in path.iterdir()] == [LOCK_NAME] and folder_holder(path) is None:
                (path / LOCK_NAME).unlink()
            path.rmdir()  # fails on a folder with anything in it: kept
        except OSError:
            pass
    with _CREATED_LOCK:
        gone = set(made)
        CREATED[:] = [p for p in CREATED if p not in gone]


@contextlib.contextmanager
def created_removed_on_failure() -> Iterator[None]:
    """The folders :func:`make_folder` makes inside the block, removed where still empty
    if it raises (an error, Ctrl-C): a function of the Python API (embed_folder,
    predict_folder, export: a decorator) leaves its caller what the command line's main
    leaves a failed command. Only those folders, made by this thread: neither one that
    was there before, nor one made before the block, nor another thread's."""
    block: list[Path] = []
    if not hasattr(_BLOCKS, "open"):
        _BLOCKS.open = []
    _BLOCKS.open.append(block)
    try:
        yield
    except BaseException:
        _remove_empty(block)
        raise
    finally:  # (by identity: two empty lists are equal)
        _BLOCKS.open[:] = [b for b in _BLOCKS.open if b is not block]


def check_results_free(run_dir: str | Path | None, results: Sequence[str],
                       named: Path | None = None, overwrite: bool | None = None) -> None:
    """Refuse a ``run_dir`` that already holds one of ``results`` (nothing is created).
    ``overwrite``: True lets the command replace them (an evaluation's ``--overwrite``),
    False refuses them naming that flag, None refuses them (a command without it).
    Those of a training stopped while it wrote them are its command's to finish
    (:func:`simclr.checkpoint_read.stopped_while_finishing`), not refused."""
    if run_dir is None:
        return
    path = Path(run_dir).expanduser()
    check_out_folder(path, named)
    run = run_of_checkpoints(path) if results and named is None else None
    if run is not None:  # its results would lie among the checkpoints, unseen by info
        raise SimCLRError(f"--out {run_dir} lies in the checkpoints folder of the run in "
                          f"{run}; give the results the run's folder (--out {run})")
    # An evaluation's results (not a file's folder): a run's own evaluations' folders
    # are no runs, but a folder of runs would read as a run, no longer as the runs.
    runs = runs_in(path, outputs=False) if results and named is None else ""
    if runs:
        raise SimCLRError(f"{path} holds runs ({runs}); give the results a folder of their "
                          f"own, or the run's they are of (--out {path / 'RUN'})")
    if overwrite or stopped_while_finishing(path, results):  # (that run's: its command
        return  # finishes them)
    flag = ", or pass --overwrite to replace it" if overwrite is False else ""
    for name in results:
        if (path / name).exists():
            raise SimCLRError(f"{path} already holds {name} from an earlier run; choose "
                              f"another --out{flag} (nothing was overwritten)")


def runs_in(folder: Path, outputs: bool = True) -> str:
    """The sub-folders of ``folder`` that hold a training run (its config.yaml) or a
    sweep's runs (its sweep.json), and with ``outputs`` any command's output (a
    checkpoints/ folder), named for a message ('a, b, c, ...'); '' for none."""
    try:
        runs = sorted(p.name for p in folder.iterdir() if p.is_dir() and (
            (p / "config.yaml").is_file() or (p / "sweep.json").is_file() or
            (outputs and (p / "checkpoints").is_dir())))
    except OSError:  # (not there yet: nothing inside)
        return ""
    return ", ".join(runs[:3]) + (", ..." if len(runs) > 3 else "")


def check_not_inside(out: str | Path, folders: dict[str, str | None], what: str,
                     flag: str = "--out", files_only: bool = False) -> None:
    """``out`` (given as ``flag``: --out, a --cache-dir) lies inside none of the data
    ``folders`` (flag -> folder) a command reads: what it writes there (checkpoints,
    figures, cache files) would become images or classes of them. Nor does it hold one
    of them as a split (c10/ holding c10/train: run folders there would be read as more
    splits), unless what it writes there are files alone (``files_only``: a cache's,
    no images beside the splits)."""
    where = Path(out).expanduser().resolve()
    for given, folder in folders.items():
        if folder and Path(folder).expanduser().is_dir():
            data = Path(folder).expanduser().resolve()
            if any(_same_folder(p, data) for p in (where, *where.parents)):
                raise SimCLRError(f"{flag} {out} lies inside the {given} folder {folder}; "
                                  f"write the {what} elsewhere")
            if not files_only and data.name in SPLITS and _same_folder(where, data.parent):
                raise SimCLRError(f"{flag} {out} holds the {given} folder {folder} as a split: "
                                  f"what is written there would stop {out} reading as "
                                  f"train/test splits; write the {what} elsewhere")


def check_caches_outside(caches: dict[str, Any], folders: dict[str, Any]) -> None:
    """Each cache folder (flag -> folder) lies inside none of the data ``folders`` (flag
    -> folder) a command reads: its cache files would make an empty class there, and
    every later command on that folder fail ('no readable image in class folder(s)
    cc'). The one check for folders given as flags, in a config file or by a sweep's
    cells (:func:`check_config_caches`). The default cache folder, which no user named,
    is not checked (``--data ~`` holds it)."""
    from simclr.cache_entries import DEFAULT_CACHE_DIR

    default = os.path.expanduser(DEFAULT_CACHE_DIR)
    for flag, cache in caches.items():
        if isinstance(cache, str) and cache and os.path.expanduser(cache) != default:
            check_not_inside(cache, folders, "decoded caches", flag, files_only=True)


def check_config_caches(cfg: Any, caches: dict[str, Any] | None = None,
                        folders: dict[str, Any] | None = None) -> None:
    """:func:`check_caches_outside` on a resolved pretraining config (``cfg``: a
    :class:`simclr.config.Config`): its --cache-dir, and ``caches`` (flag -> folder,
    e.g. a sweep's --eval-cache-dir), outside its --data and kNN monitor folders and
    ``folders`` (flag -> folder: others read, e.g. a sweep's --eval-train and
    --eval-test), wherever they were set (a flag, a config file, a sweep's axis). Its
    --cache-dir is not checked under ``--cache off``, which writes no cache there (its
    kNN monitor folders' neither: they are read by ``cfg.data`` too)."""
    check_caches_outside({**written_cache(cfg), **(caches or {})},
                         {"--data": cfg.data.path, "--knn-train": cfg.knn_train,
                          "--knn-test": cfg.knn_test, **(folders or {})})


def written_cache(cfg: Any) -> dict[str, Any]:
    """The cache folder a run of ``cfg`` may write (flag -> folder): its --cache-dir, none
    under ``--cache off``, which writes no cache there."""
    return {} if cfg.data.cache == "off" else {"--cache-dir": cfg.data.cache_dir}


def _same_folder(path: Path, folder: Path) -> bool:
    """Whether ``path`` names ``folder``: the same path, or (existing) the same folder on
    disk. macOS's and Windows' file systems ignore case, so ./photos there is ./Photos,
    which no comparison of resolved paths tells (resolve keeps the case as typed)."""
    if path == folder:
        return True
    try:
        return os.path.samefile(path, folder)
    except OSError:  # (not there yet)
        return False


def check_out_folder(path: Path, named: Path | None = None) -> None:
    """An ``--out`` folder that can be made and written, checked without creating it:
    neither it nor a folder above it a file, and the nearest existing one writable.
    ``named``: what the messages call ``--out`` (a file to be written in ``path``)."""
    shown = named or path
    path = _through_missing_link(path, shown)
    if path.exists() and not path.is_dir():
        raise SimCLRError(f"--out {shown}: {path} is a file, not a folder" if named
                          else f"--out {path} is a file, not a folder")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise SimCLRError(f"--out {shown}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SimCLRError(f"--out {shown}: cannot write in {existing} "
                          "(permission denied or a read-only file system)")
    refused = _write_refused(existing)
    if refused:
        raise SimCLRError(f"--out {shown}: cannot write in {existing} ({refused})")


def _missing_link(path: Path) -> Path | None:
    """The nearest of ``path`` and the folders above it that is a link to nothing."""
    return next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()),
                None)


def _through_missing_link(path: Path, shown: Path) -> Path:
    """``path`` through a link to a missing folder (``ln -s /scratch/a runs/a`` before
    /scratch/a exists): the link's target, which :func:`make_folder` makes, if the folder
    it lies in exists (a mistyped link would make a tree of folders). ``path`` itself
    when it passes through no such link."""
    link = _missing_link(path)
    if link is None:
        return path
    target = Path(os.path.realpath(link))
    if not target.parent.is_dir():
        where = f"--out {shown} is" if link == shown else f"--out {shown}: {link} is"
        raise SimCLRError(f"{where} a link to missing {target}, whose folder "
                          f"{target.parent} does not exist either; create that folder or "
                          "choose another --out")
    return target / path.relative_to(link)


def _write_refused(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (None: it can), found by creating an
    unnamed temporary one: permissions alone miss /proc-like and full file systems."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def output_file(out: str | Path, overwrite: bool = True, data: str | Path | None = None
                ) -> Path:
    """``--out`` of a command that writes one file (embed, predict, export), checked
    before any work: not a folder, nor in a run's checkpoints folder, its folder created
    (not inside ``data``, the image folder the command then lists: a new folder there
    was read as a class of its images), and an existing file refused unless
    ``overwrite`` (the commands' ``--overwrite``; the Python API overwrites)."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise SimCLRError(f"--out {path} is a folder; name a file")
    if data is not None and Path(data).expanduser().is_dir() and not path.parent.exists() \
            and real_folder(path).is_relative_to(os.path.realpath(Path(data).expanduser())):
        raise SimCLRError(f"--out {path}: its folder would be made inside --data {data}, "
                          "where it would read as a class folder of the images; choose an "
                          "--out outside it")
    # Whatever its name, new or not, --overwrite or not: --resume, predict and info read
    # that folder's files as the run's (an export named linear.pt as its classifier).
    if in_run_checkpoints(path):
        folder = real_folder(path)
        raise SimCLRError(f"--out {path} lies in {folder}, the checkpoints folder of the run "
                          f"in {folder.parent}; it holds the run's checkpoints and "
                          "classifiers alone: choose another --out")
    if os.path.lexists(path) and not overwrite:  # (a dangling link: the write would meet it)
        raise SimCLRError(f"--out {path} already exists; choose another --out, or pass "
                          "--overwrite to replace it (nothing was overwritten)")
    prepare_dir(path.parent, named=path)
    return path


def in_run_checkpoints(path: Path) -> bool:
    """Whether ``path`` lies in the ``checkpoints`` folder of a simclr run (one that
    pretraining or an evaluation wrote: its lock file, config or results beside it),
    its folder read where links lead (a link to that folder is that folder)."""
    return _is_run_checkpoints(real_folder(path))


def run_of_checkpoints(folder: Path) -> Path | None:
    """The run whose ``checkpoints`` folder is ``folder`` or holds it (None: none),
    read where links lead."""
    real = Path(os.path.realpath(folder.expanduser()))
    return next((p.parent for p in (real, *real.parents) if _is_run_checkpoints(p)), None)


def real_folder(path: str | Path) -> Path:
    """The folder a file at ``path`` lands in, links on the way followed: the checks of
    what an --out may overwrite are made there (LINK/last.pt, LINK a link to a run's
    checkpoints folder, is that run's last.pt). The file itself is not followed: a new
    file is renamed over ``path``, replacing a link there, not its target."""
    return Path(os.path.realpath(Path(path).expanduser().absolute().parent))


def _is_run_checkpoints(folder: Path) -> bool:
    """Whether ``folder`` (absolute) is the ``checkpoints`` folder of a simclr run."""
    run = folder.parent
    return folder.name == CHECKPOINTS and (
        (run / LOCK_NAME).exists() or (run / "config.yaml").exists()
        or any(run.glob("*.json")))


def log(message: str, verbose: bool = True) -> None:
    """Progress goes to stderr: stdout is kept for the JSON result."""
    if verbose:
        print(message, file=sys.stderr, flush=True)
