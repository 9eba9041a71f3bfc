"""Tests for simclr.results: top-k accuracy and the confusion matrix."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.errors import SimCLRError
from simclr.files import read_json
from simclr.results import (
    accuracy_summary,
    check_not_inside,
    check_results_free,
    confusion_matrix,
    save_confusion_figure,
    topk_accuracy,
)


def test_topk_accuracy_against_a_loop_over_rows():
    """The rule, row by row in plain Python: the label is in the top k when fewer than
    k other classes score at least as much (scores with many ties: kNN's zeros)."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (200, 7), generator=g).float()  # ties everywhere
    labels = torch.randint(0, 7, (200,), generator=g)
    for k in (1, 2, 5, 7):
        expected = sum(sum(1 for c in range(7) if c != y and row[c] >= row[y]) < k
                       for row, y in zip(scores.tolist(), labels.tolist(), strict=True)) / 200
        assert topk_accuracy(scores, labels, (k,)) == [expected]


def test_top5_is_left_out_with_five_classes_and_counted_with_six():
    """Scores rank class k k-th lowest: label 0 is last, label 4 (5 classes) or 5 (6)
    first. With 5 classes every label is in the top 5 (top-5 says nothing: None)."""
    five = accuracy_summary(torch.arange(5.0).repeat(2, 1), np.array([0, 4]))
    assert five == {"top1": 0.5, "top5": None}
    six = accuracy_summary(torch.arange(6.0).repeat(2, 1), np.array([0, 5]))
    assert six == {"top1": 0.5, "top5": 0.5}


def test_topk_accuracy_and_confusion_matrix():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert topk_accuracy(scores, labels, (1, 2, 5)) == pytest.approx([1 / 3, 2 / 3, 1.0])
    # The fraction of a count, exact to float64 (float32's mean wrote 0.550000011920929)
    first = torch.tensor([[1.0, 0.0, 0.0]]).repeat(40, 1)  # class 0 predicted for all
    truth = torch.tensor([0] * 22 + [1] * 18)
    assert topk_accuracy(first, truth, (1,)) == [22 / 40]
    # Ties count against the label; a NaN score or a label outside the scores is a miss.
    tied = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [float("nan"), 0.2, 0.1]])
    assert topk_accuracy(tied, [1, 2, 0], (1, 2, 3)) == pytest.approx([0, 1 / 3, 2 / 3])
    assert topk_accuracy(scores, [2, 0, 3], (3,)) == pytest.approx([2 / 3])
    # No rows: no accuracy (NaN), not 0.0, which would read as every row missed.
    assert all(math.isnan(a) for a in topk_accuracy(torch.zeros(0, 3), [], (1, 2)))
    cm = confusion_matrix(labels, scores.argmax(1).numpy(), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_a_figure_that_cannot_be_written_leaves_the_results_and_a_warning(
        tmp_path, monkeypatch, capsys):
    """A full disk at the figure: the command failed though its results were written,
    and the same command again was refused ("already holds knn.json")."""
    import json
    from types import SimpleNamespace

    import simclr.results as results_module
    from simclr.errors import SimCLRError
    from simclr.results import finish_results

    def full(matrix, classes, path, *args):
        raise SimCLRError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(results_module, "save_confusion_figure", full)
    scores, labels = torch.tensor([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0])
    train = SimpleNamespace(classes=["a", "b"])
    finish_results({"top1": 0.5}, tmp_path, "knn", scores, labels, train, train,
                   source={"checkpoint": "run/checkpoints/last.pt"})
    saved = json.loads((tmp_path / "knn.json").read_text())
    assert saved["top1"] == 0.5 and "confusion_figure" not in saved
    assert saved["source"] == {"checkpoint": "run/checkpoints/last.pt"}  # (what was evaluated)
    assert f"warning: no knn_confusion.png (could not write {tmp_path / 'knn_confusion.png'}: " \
        f"No space left on device); the results are in {tmp_path / 'knn.json'}" \
        in capsys.readouterr().err


def test_the_confusion_matrix_counts_a_tie_as_top1_does(tmp_path, monkeypatch):
    """A row whose label ties for the best score is a top-1 miss, and off the matrix's
    diagonal (argmax put it on the diagonal whenever the label was the lowest tied
    index: a kNN image equal to training images of two classes read 33% top-1 with a
    diagonal of 2/3). The diagonal always sums to top-1's hits."""
    from types import SimpleNamespace

    import simclr.results as results_module
    from simclr.results import finish_results, top1_predictions

    drawn = []
    monkeypatch.setattr(results_module, "save_confusion_figure",
                        lambda matrix, *args: drawn.append(matrix) or tmp_path / "c.png")
    nan = float("nan")
    scores = torch.tensor([[0.5, 0.5, 0.0],  # label 0 tied with 1: to 1
                           [0.4, 0.0, 0.4],  # label 2 tied with 0: to 0
                           [0.2, 0.3, 0.3],  # label 1 tied with 2: to 2
                           [0.1, 0.8, 0.1],  # label 1, a hit
                           [nan, 0.1, 0.3],  # label 0 NaN: a miss, to 2
                           [0.3, 0.3, 0.3]])  # label 2 tied with both: to 0
    labels = np.array([0, 2, 1, 1, 0, 2])
    np.testing.assert_array_equal(top1_predictions(scores, labels), [1, 0, 2, 1, 2, 0])
    train = SimpleNamespace(classes=["a", "b", "c"])
    results = {"top1": topk_accuracy(scores, labels, (1,))[0]}
    finish_results(results, tmp_path, "knn", scores, labels, train, train)
    assert np.trace(drawn[0]) == 1 == round(6 * results["top1"])
    np.testing.assert_array_equal(drawn[0], [[0, 1, 1], [0, 1, 1], [2, 0, 0]])
    g = torch.Generator().manual_seed(0)  # many ties (kNN's zeros): diagonal = hits
    scores = torch.randint(0, 3, (300, 6), generator=g).float()
    labels = torch.randint(0, 6, (300,), generator=g).numpy()
    matrix = confusion_matrix(labels, top1_predictions(scores, labels), 6)
    assert np.trace(matrix) == round(300 * topk_accuracy(scores, labels, (1,))[0])
    assert matrix.sum() == 300


def test_top1_hits_count_as_topk_accuracy_on_the_scores_device():
    """The count a training's tally adds each step: top-1's rule, a 0-d tensor."""
    from simclr.results import top1_hits

    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 3, (200, 5), generator=g).float()  # ties everywhere
    labels = torch.randint(0, 5, (200,), generator=g)
    hits = top1_hits(scores, labels)
    assert hits.shape == () and hits.device == scores.device
    assert int(hits) == round(200 * topk_accuracy(scores, labels, (1,))[0])
    assert int(hits) < int((scores.argmax(1) == labels).sum())  # (argmax's ties: hits)


def test_scores_ranked_block_by_block_give_the_full_matrix_results(tmp_path, monkeypatch):
    """An evaluation keeps what its results need of each block of scores (Ranked), not
    the (M, C) matrix (100k x 10k classes: over 20 GB); accuracies, top-1 predictions,
    the JSON and the confusion matrix are those of the whole matrix, ties (against the
    label), -inf (a class without a vote), NaN and a label outside the classes too."""
    from types import SimpleNamespace

    import simclr.results as results_module
    from simclr.results import Ranked, finish_results, rank_rows, top1_predictions

    drawn = []
    monkeypatch.setattr(results_module, "save_confusion_figure",
                        lambda matrix, *args: drawn.append(matrix) or tmp_path / "c.png")
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (97, 8), generator=g).double().log()  # ties, -inf
    scores[5, 2] = scores[11, :] = float("nan")
    labels = torch.randint(0, 8, (97,), generator=g).numpy()
    labels[7] = 8  # (outside the classes: a miss at every k)
    cuts = [0, 1, 2, 30, 31, 60, 97]  # blocks of 1 row to 37
    ranked = Ranked.join([rank_rows(scores[a:b], labels[a:b])
                          for a, b in zip(cuts, cuts[1:], strict=False)], 8)
    for ks in ((1, 5), (1, 2, 3, 7, 8, 9)):
        assert topk_accuracy(ranked, labels, ks) == topk_accuracy(scores, labels, ks)
    assert accuracy_summary(ranked, labels) == accuracy_summary(scores, labels)
    assert 0 < accuracy_summary(ranked, labels)["top1"] < accuracy_summary(ranked, labels)["top5"]
    np.testing.assert_array_equal(ranked.predictions, top1_predictions(scores, labels))
    assert accuracy_summary(Ranked.join([], 6), labels[:0]) == accuracy_summary(
        torch.zeros(0, 6), labels[:0])
    train = SimpleNamespace(classes=[f"c{k}" for k in range(8)])
    ok = labels < 8  # (the confusion matrix has the classes' rows only)
    written = []
    for given in (scores[ok], Ranked.join([rank_rows(scores[ok][:9], labels[ok][:9]),
                                           rank_rows(scores[ok][9:], labels[ok][9:])], 8)):
        results = accuracy_summary(given, labels[ok])
        finish_results(results, tmp_path, "knn", given, labels[ok], train, train)
        written.append(read_json(tmp_path / "knn.json"))
    assert written[0] == written[1] and np.array_equal(drawn[0], drawn[1])
    assert np.trace(drawn[1]) == round(written[1]["top1"] * ok.sum())


def test_class_names_the_font_cannot_draw_become_their_index(tmp_path):
    """CJK class names were empty boxes in the figure and a matplotlib warning per
    glyph on the terminal; they are drawn as #k (the JSON keeps the names)."""
    import warnings

    matrix = np.array([[2, 0, 0], [0, 1, 1], [0, 0, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph warns
        figure = save_confusion_figure(matrix, ["cat", "猫", "Café"], tmp_path / "c.png")
    assert figure.stat().st_size > 0
    from simclr.results import _tick_labels

    assert _tick_labels(["cat", "猫", "Café", "cat猫"]) == ["cat", "#1", "Café", "#3"]


def test_an_evaluations_sizes_and_inputs_are_recorded(tmp_path, monkeypatch):
    """feature_sizes: train (N, D), test (M, D); record_inputs: a folder as its absolute
    resolved path (given relative), a named data set by its name, a test split held out
    of the training folder as the encoder's source describes it."""
    from types import SimpleNamespace

    from simclr.results import feature_sizes, record_inputs

    assert feature_sizes(np.zeros((5, 3)), np.zeros((2, 3)), 4) == {
        "num_train": 5, "num_test": 2, "num_classes": 4, "feature_dim": 3}
    (tmp_path / "imgs").mkdir()
    monkeypatch.chdir(tmp_path)
    train = SimpleNamespace(name="imgs", skipped=[("imgs/a.png", "not an image")])
    results: dict = {}
    record_inputs(results, train, SimpleNamespace(name="cifar10[test]"))
    assert results["data"] == {"train": str((tmp_path / "imgs").resolve()),
                               "test": "cifar10[test]"}
    assert results["skipped_images"] == {"train": 1, "test": 0}
    held_out = {"held_out": 0.2, "seed": 0}
    results = {"source": {"test": held_out}}
    record_inputs(results, train, SimpleNamespace(name="imgs"))
    assert results["data"]["test"] == held_out


def test_results_written_meanwhile_are_kept_without_overwrite(tmp_path):
    """write_results with overwrite False (no --overwrite): a results file another
    process wrote meanwhile is refused in one line and kept; with it, replaced."""
    from simclr.results import write_results

    (tmp_path / "knn.json").write_text('{"top1": 0.5}')
    with pytest.raises(SimCLRError):
        write_results(tmp_path, "knn.json", {"top1": 0.9}, overwrite=False)
    assert read_json(tmp_path / "knn.json") == {"top1": 0.5}
    write_results(tmp_path, "knn.json", {"top1": 0.9})
    assert read_json(tmp_path / "knn.json") == {"top1": 0.9}
    # finish_results without --overwrite: refused the same way, before any figure
    from types import SimpleNamespace

    from simclr.results import finish_results

    train = SimpleNamespace(classes=["a", "b"])
    with pytest.raises(SimCLRError):
        finish_results({"top1": 0.1}, tmp_path, "knn", torch.eye(2), np.arange(2), train,
                       train, overwrite=False)
    assert read_json(tmp_path / "knn.json") == {"top1": 0.9}
    assert not (tmp_path / "knn_confusion.png").exists()


def test_results_already_there_are_refused_unless_a_stopped_training_left_them(tmp_path):
    """check_results_free: an earlier run's results are refused (naming --overwrite where
    the command has it) or, with --overwrite, replaced; a training stopped while it
    wrote them (its classifier beside the unfinished state, one run_id) finishes them."""
    from simclr.checkpoint import save_checkpoint

    out = tmp_path / "out"
    names = ("checkpoints/linear.pt", "linear.json")

    def saved(name, run_id):
        save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3,
                         "kind": "linear", "run_id": run_id, "config": {},
                         "model": {"w": torch.zeros(2)}}, out / "checkpoints", name)

    saved("linear.pt", "a")
    (out / "linear.json").write_text("{}")
    said = f"{out} already holds checkpoints/linear.pt from an earlier run; choose another --out"
    with pytest.raises(SimCLRError) as info:
        check_results_free(out, names)
    assert str(info.value) == f"{said} (nothing was overwritten)"
    with pytest.raises(SimCLRError) as info:
        check_results_free(out, names, overwrite=False)
    assert str(info.value) == f"{said}, or pass --overwrite to replace it (nothing was " \
        "overwritten)"
    check_results_free(out, names, overwrite=True)
    saved("linear-partial.pt", "b")  # (another training's state: no finishing)
    with pytest.raises(SimCLRError, match="already holds"):
        check_results_free(out, names)
    saved("linear-partial.pt", "a")
    check_results_free(out, names)


def test_a_folder_of_many_runs_names_three(tmp_path):
    """runs_in names the first three runs found and '...' for the rest."""
    from simclr.results import runs_in

    for name in "abcd":
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("")
    assert runs_in(tmp_path) == "a, b, c, ..."
    (tmp_path / "d" / "config.yaml").unlink()
    assert runs_in(tmp_path) == "a, b, c"
    for name in "abc":
        (tmp_path / name / "config.yaml").unlink()
    (tmp_path / "d" / "sweep.json").write_text("{}")  # a sweep's runs: a run folder too
    assert runs_in(tmp_path) == "d"


def test_a_cache_folder_may_hold_a_data_split_but_not_lie_inside_one(tmp_path,
                                                                   monkeypatch):
    """A cache folder holding c10/train (cache files alone there, no images) is
    allowed; an --out holding it, or a cache inside it, is not. The default cache
    folder, which no user named, is not checked; a run under --cache off writes none."""
    from types import SimpleNamespace

    from simclr.cache_entries import DEFAULT_CACHE_DIR
    from simclr.results import check_caches_outside, check_not_inside, written_cache

    train = tmp_path / "c10" / "train"
    train.mkdir(parents=True)
    folders = {"--data": str(train)}
    check_not_inside(tmp_path / "c10", folders, "decoded caches", "--cache-dir",
                     files_only=True)
    with pytest.raises(SimCLRError, match="as a split"):
        check_not_inside(tmp_path / "c10", folders, "results")
    with pytest.raises(SimCLRError, match="lies inside"):
        check_caches_outside({"--cache-dir": str(train / "cache")}, folders)
    monkeypatch.setenv("HOME", str(train))  # (the default cache inside the data)
    check_caches_outside({"--cache-dir": DEFAULT_CACHE_DIR}, folders)
    cfg = SimpleNamespace(data=SimpleNamespace(cache="off", cache_dir="c"))
    assert written_cache(cfg) == {}
    cfg.data.cache = "build"
    assert written_cache(cfg) == {"--cache-dir": "c"}


def test_an_out_folder_that_cannot_be_entered_is_refused(tmp_path, monkeypatch):
    """A folder without search permission (x) cannot hold new files either."""
    from simclr.results import check_out_folder

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if Path(p) == tmp_path and mode & os.X_OK else real(p, mode, **kw)))
    with pytest.raises(SimCLRError, match="cannot write in"):
        check_out_folder(tmp_path / "out")


def test_a_link_to_a_folder_in_a_missing_folder_is_refused(tmp_path):
    """--out a link to a/b where a is missing too: refused in one line (a mistyped link
    would make a tree of folders); a link to a missing folder in an existing one is
    followed."""
    from simclr.results import check_out_folder

    (tmp_path / "deep").symlink_to(tmp_path / "missing" / "b")
    with pytest.raises(SimCLRError, match="a link to missing .*does not exist either"):
        check_out_folder(tmp_path / "deep")
    (tmp_path / "near").symlink_to(tmp_path / "b")
    check_out_folder(tmp_path / "near")


def test_a_folder_made_through_a_link_to_a_missing_folder_is_its_target_made(tmp_path,
                                                                            monkeypatch):
    """prepare_dir of near/run, near a link to the missing b: b/run is made, and the
    folder returned is absolute and resolved (given relative to the shell's folder)."""
    import simclr.results as results_module

    monkeypatch.setattr(results_module, "CREATED", [])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "near").symlink_to(tmp_path / "b")
    made = results_module.prepare_dir("near/run")
    assert made == (tmp_path / "b" / "run").resolve() and made.is_dir()


def test_a_file_is_not_written_into_an_evaluations_checkpoints_folder(tmp_path):
    """An evaluation's --out (its results JSON beside checkpoints/, no config) is a run
    folder too: a file --out in its checkpoints folder is refused."""
    from simclr.results import output_file

    (tmp_path / "ev" / "checkpoints").mkdir(parents=True)
    (tmp_path / "ev" / "linear.json").write_text("{}")
    with pytest.raises(SimCLRError, match="the checkpoints folder of the run"):
        output_file(tmp_path / "ev" / "checkpoints" / "model.pt")


def test_a_file_out_may_lie_in_the_data_folder_but_make_no_folder_there(tmp_path):
    """output_file with --data: a file in a folder already there is written (no new
    class folder); a folder it would make inside the data is refused."""
    from simclr.results import output_file

    data = tmp_path / "imgs"
    (data / "cat").mkdir(parents=True)
    assert output_file(data / "preds.json", data=data) == data / "preds.json"
    with pytest.raises(SimCLRError, match="would be made inside --data"):
        output_file(data / "new" / "preds.json", data=data)
    with pytest.raises(SimCLRError) as info:  # a folder given where a file is written
        output_file(data / "cat")
    assert str(info.value) == f"--out {data / 'cat'} is a folder; name a file"


SKIPPED_NONE = {"skipped_images": {"train": 0, "test": 0},
                "skipped_files": {"train": [], "test": []}}


def _recorded() -> dict:
    """What finish_results records beside the numbers of sources with no folder: no data
    named, and this process's provenance."""
    from simclr.runtime import provenance

    return {"data": {"train": None, "test": None}, "provenance": provenance()}


def _finish(out: Path, num_classes: int, capsys) -> tuple[dict, str]:
    """finish_results of 6 test images over ``num_classes`` classes into ``out``: (the
    JSON written, stderr)."""
    from types import SimpleNamespace

    from simclr.results import finish_results

    scores = torch.eye(num_classes)[torch.arange(6) % num_classes]
    train = SimpleNamespace(classes=[f"c{k}" for k in range(num_classes)])
    results = {"top1": 1.0}
    finish_results(results, out, "knn", scores, np.arange(6) % num_classes, train, train)
    return read_json(out / "knn.json"), capsys.readouterr().err


def test_the_results_json_is_written_before_the_confusion_figure(tmp_path, monkeypatch,
                                                                 capsys):
    """The figure needs memory ~ C^2: killed drawing it, a run lost its knn.json."""
    import simclr.results as results_module

    def failing_figure(*args, **kwargs):
        assert (tmp_path / "knn.json").is_file()  # already there
        raise MemoryError

    monkeypatch.setattr(results_module, "save_confusion_figure", failing_figure)
    with pytest.raises(MemoryError):
        _finish(tmp_path, 3, capsys)
    assert read_json(tmp_path / "knn.json") == {"top1": 1.0, **SKIPPED_NONE, **_recorded()}
    monkeypatch.undo()
    (tmp_path / "knn.json").unlink()
    saved, _ = _finish(tmp_path, 3, capsys)  # drawn: the JSON then names it
    assert saved["confusion_figure"] == str(tmp_path / "knn_confusion.png")
    assert (tmp_path / "knn_confusion.png").is_file()
    # Replaced by a run whose figure fails, or that draws none: the earlier run's figure
    # went with its results (it stayed beside the new knn.json)
    monkeypatch.setattr(results_module, "save_confusion_figure", failing_figure)
    with pytest.raises(MemoryError):
        _finish(tmp_path, 3, capsys)
    assert not (tmp_path / "knn_confusion.png").exists()
    monkeypatch.undo()
    _finish(tmp_path, 3, capsys)
    assert _finish(tmp_path, 1001, capsys)[0] == {"top1": 1.0, **SKIPPED_NONE, **_recorded()}
    assert not (tmp_path / "knn_confusion.png").exists()


def test_no_confusion_figure_past_max_figure_classes(tmp_path, monkeypatch, capsys):
    """Past 1,000 classes a figure is unreadable and costs gigabytes: none, said once."""
    import simclr.results as results_module

    def no_figure(*args, **kwargs):
        raise AssertionError("a figure was drawn")

    monkeypatch.setattr(results_module, "save_confusion_figure", no_figure)
    saved, err = _finish(tmp_path, 1001, capsys)
    assert saved == {"top1": 1.0, **SKIPPED_NONE, **_recorded()}  # (no "confusion_figure")
    assert err.count("\n") == 1 and "no knn_confusion.png: 1,001 classes" in err


def test_a_confusion_figure_is_drawn_at_max_figure_classes(tmp_path, monkeypatch, capsys):
    """MAX_FIGURE_CLASSES classes are drawn; one more are not."""
    import simclr.results as results_module

    monkeypatch.setattr(results_module, "MAX_FIGURE_CLASSES", 3)
    saved, err = _finish(tmp_path, 3, capsys)
    assert saved["confusion_figure"] == str(tmp_path / "knn_confusion.png") and err == ""
    saved, err = _finish(tmp_path / "more", 4, capsys)
    assert "confusion_figure" not in saved and "no knn_confusion.png: 4 classes" in err


def test_a_folder_made_through_dot_dot_records_only_the_folders_it_made(tmp_path,
                                                                       monkeypatch):
    """make_folder(x/a/../b): a and b are made (and removed if left empty), not x, the
    folder 'a/..' names, which was there already."""
    import simclr.results as results_module

    monkeypatch.setattr(results_module, "CREATED", [])
    (tmp_path / "x").mkdir()
    results_module.make_folder(tmp_path / "x" / "a" / ".." / "b")
    assert results_module.CREATED == [(tmp_path / "x" / "a").resolve(),
                                      (tmp_path / "x" / "b").resolve()]
    results_module.remove_empty_created()
    assert (tmp_path / "x").is_dir() and not list((tmp_path / "x").iterdir())


def test_without_matplotlib_the_results_stand_and_one_line_says_why(tmp_path, monkeypatch,
                                                                   capsys):
    """matplotlib gone from the environment: the command ended in a traceback (exit 1)
    after writing its results; now a one-line warning names the package, status 0."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # (import raises ImportError)
    saved, err = _finish(tmp_path, 3, capsys)
    assert saved == {"top1": 1.0, **SKIPPED_NONE, **_recorded()}  # (no "confusion_figure")
    assert err.count("\n") == 1 and "no knn_confusion.png" in err
    assert "pip install matplotlib" in err


def test_the_confusion_figure_normalises_in_float32(tmp_path, monkeypatch):
    """The row-normalised copy drawn is float32 (float64 doubled a C x C array); a class
    with no test images is a row of 0s (not 0/0's NaN, drawn as a hole)."""
    from matplotlib.axes import Axes

    drawn = []
    real = Axes.imshow
    monkeypatch.setattr(Axes, "imshow", lambda self, x, **kw: (drawn.append(x.copy()),
                                                               real(self, x, **kw))[1])
    save_confusion_figure(np.array([[2, 2, 0], [0, 0, 0], [0, 1, 3]]), ["a", "b", "c"],
                          tmp_path / "c.png")
    assert [x.dtype for x in drawn] == [np.float32]
    np.testing.assert_array_equal(drawn[0], [[0.5, 0.5, 0], [0, 0, 0], [0, 0.25, 0.75]])


@pytest.mark.parametrize(("n", "named"), [(40, True), (41, False)])
def test_the_classes_are_named_on_the_axes_up_to_40(tmp_path, monkeypatch, n, named):
    """Up to 40 classes the axes name them; past that the labels would be unreadable."""
    from matplotlib.axes import Axes

    ticked = []
    real = Axes.set_xticks
    monkeypatch.setattr(Axes, "set_xticks", lambda self, ticks, labels=None, **kw: (
        ticked.append(labels), real(self, ticks, labels=labels, **kw))[1])
    save_confusion_figure(np.eye(n, dtype=np.int64), [f"c{k}" for k in range(n)],
                          tmp_path / "c.png")
    assert ([f"c{k}" for k in range(n)] in ticked) == named


# -------------------------------------------------------------- logistic regression


def read_only(monkeypatch, folder):
    """``folder`` unwritable as os.access sees it (chmod cannot show it: tests may run as
    root, for whom every folder is writable)."""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if Path(p) == folder and mode & os.W_OK else real(p, mode, **kw)))


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_work(
        tmp_path, monkeypatch, capsys):
    from simclr.cli import main
    from simclr.errors import SimCLRError
    from simclr.results import check_out_folder, output_file

    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    with pytest.raises(SimCLRError, match=r"--out .*ro/a/b: cannot write in .*ro \(permission"):
        check_out_folder(ro / "a" / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimCLRError, match=r"file/run: .*file is a file, not a folder"):
        check_out_folder(tmp_path / "file" / "run")
    with pytest.raises(SimCLRError) as info:  # --out the file itself: named once
        check_out_folder(tmp_path / "file")
    assert str(info.value) == f"--out {tmp_path / 'file'} is a file, not a folder"
    check_out_folder(tmp_path / "new" / "run")  # a writable parent: nothing to say
    assert not (tmp_path / "new").exists()
    with pytest.raises(SimCLRError, match="cannot write in"):
        output_file(ro / "x.npz")
    # From the command line: one line, before any data (none here) or checkpoint is read.
    for args in (["pretrain", "--out", str(ro / "run"), "--data", "/no/data"],
                 ["knn", "--checkpoint", "/no/c.pt", "--train", str(tmp_path), "--test",
                  str(tmp_path), "--out", str(ro / "k")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot write in" in err, err
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_dangling_link_at_out_is_refused_before_the_work(tmp_path):
    """A link to no file at --out: exists() said free, and export's work ended in "was
    written meanwhile by another process" when its final write met the link."""
    from simclr.errors import SimCLRError
    from simclr.results import output_file

    (tmp_path / "d.pt2").symlink_to(tmp_path / "nowhere.pt2")
    with pytest.raises(SimCLRError, match=r"d.pt2 already exists; choose another --out"):
        output_file(tmp_path / "d.pt2", overwrite=False)
    assert output_file(tmp_path / "d.pt2", overwrite=True) == tmp_path / "d.pt2"


def test_a_folder_that_refuses_new_files_is_found_by_trying(tmp_path, capsys):
    # /proc passes the permission check (tests run as root) yet no file can be made in
    # it: only creating one finds that, before embed computes any feature.
    from simclr.cli import main
    from simclr.errors import SimCLRError
    from simclr.results import check_out_folder, output_file

    with pytest.raises(SimCLRError, match=r"^--out /proc/x.npz: cannot write in /proc \("):
        output_file("/proc/x.npz")
    with pytest.raises(SimCLRError, match=r"^--out /proc/run: cannot write in /proc \("):
        check_out_folder(Path("/proc/run"))
    assert main(["embed", "--checkpoint", "/no/c.pt", "--data", str(tmp_path), "--out",
                 "/proc/x.npz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write in /proc" in err, err


def test_out_is_refused_inside_a_data_folder_or_over_its_splits(tmp_path):
    """Run files inside a data folder would be read as its images; a run's folders beside
    train/ and test/ would stop their parent being read as the data set's splits."""

    for split in ("train", "test"):
        (tmp_path / "c10" / split).mkdir(parents=True)
    data = {"--data": str(tmp_path / "c10" / "train")}
    for out in (tmp_path / "c10" / "train", tmp_path / "c10" / "train" / "run"):
        with pytest.raises(SimCLRError, match="lies inside the --data folder"):
            check_not_inside(out, data, "run")
    with pytest.raises(SimCLRError, match="holds the --data folder .* as a split"):
        check_not_inside(tmp_path / "c10", data, "run")
    check_not_inside(tmp_path / "runs", data, "run")  # elsewhere: fine
    (tmp_path / "photos").mkdir()  # a folder that is not a split may hold its runs
    check_not_inside(tmp_path, {"--data": str(tmp_path / "photos")}, "run")


_SAMEFILE = os.path.samefile  # (the real one, which the case-insensitive one calls)


def _case_insensitive_samefile(a, b) -> bool:
    """os.path.samefile on a file system that ignores case (macOS's, Windows'): each
    name is looked up among its folder's entries whatever its case."""

    def real(path) -> Path:
        found = Path(os.path.abspath(path))
        out = Path(found.anchor)
        for name in found.parts[1:]:
            match = [e for e in os.listdir(out) if e.lower() == name.lower()] \
                if out.is_dir() else []
            out = out / (match[0] if match else name)
        return out

    return _SAMEFILE(real(a), real(b))


def test_out_inside_the_data_folder_spelled_in_another_case_is_refused(tmp_path, monkeypatch):
    """macOS: --data ./Photos --out ./photos/run writes into the data folder on a file
    system that ignores case, but the paths differ, and it was let through."""
    (tmp_path / "Photos").mkdir()
    data = {"--data": str(tmp_path / "Photos")}
    monkeypatch.setattr(os.path, "samefile", _case_insensitive_samefile)
    for out in (tmp_path / "photos", tmp_path / "photos" / "run"):
        with pytest.raises(SimCLRError, match="lies inside the --data folder"):
            check_not_inside(out, data, "run")
    check_not_inside(tmp_path / "photos-runs", data, "run")  # beside it: fine


def test_an_evaluation_into_a_folder_of_runs_is_refused(tmp_path):
    """Its results would make runs/ read as a run (info), no longer as the runs it holds;
    a run's own evaluation folders (no config.yaml) are no runs, and a file's folder
    (embed, predict) is not checked."""
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.yaml").write_text("epochs: 1\n")
    with pytest.raises(SimCLRError, match=rf"^{runs} holds runs \(a, b\); give the results a "
                                          rf"folder of their own, or the run's they are of "
                                          rf"\(--out {runs}/RUN\)$"):
        check_results_free(runs, ("knn.json",))
    check_results_free(runs, (), named=runs / "features.npz")
    (runs / "a" / "lin" / "checkpoints").mkdir(parents=True)  # linear-eval --out runs/a/lin
    check_results_free(runs / "a", ("knn.json",))


def test_a_link_to_a_runs_checkpoints_folder_is_seen_through(tmp_path):
    """--out through a link to a run's checkpoints folder: the checks read the folder it
    leads to (embed/predict --overwrite replaced a run's classifier; an evaluation's
    results went among its checkpoints)."""
    from simclr.results import output_file

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("epochs: 1\n")
    (run / "checkpoints" / "linear.pt").write_bytes(b"a classifier")
    link = tmp_path / "link"
    link.symlink_to(run / "checkpoints")
    with pytest.raises(SimCLRError, match=f"the checkpoints folder of the run in {run};"):
        output_file(link / "linear.pt", overwrite=True)
    assert (run / "checkpoints" / "linear.pt").read_bytes() == b"a classifier"
    with pytest.raises(SimCLRError, match=f"the checkpoints folder of the run in {run};"):
        check_results_free(link / "eval", ("knn.json",))
    assert output_file(tmp_path / "mine" / "linear.pt") == tmp_path / "mine" / "linear.pt"
    # a new file there too (embed's features, predict's table): the folder is the run's
    with pytest.raises(SimCLRError, match=f"the checkpoints folder of the run in {run};"):
        output_file(link / "features.npz", overwrite=False)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["linear.pt"]


def test_a_failed_block_in_one_thread_leaves_the_folders_another_thread_made(tmp_path):
    """Two threads of a caller, each in its own created_removed_on_failure (embed_folder,
    export): the one that fails removes only the empty folders it made itself, not the
    other's, still empty because its work is still going on."""
    import threading

    from simclr.results import created_removed_on_failure, make_folder

    both_in, a_made, b_failed = threading.Barrier(2), threading.Event(), threading.Event()

    def a() -> None:
        with created_removed_on_failure():
            both_in.wait()
            make_folder(tmp_path / "a")
            a_made.set()
            b_failed.wait(10)
            (tmp_path / "a" / "result").write_text("done")

    def b() -> None:
        try:
            with created_removed_on_failure():
                both_in.wait()
                a_made.wait(10)
                make_folder(tmp_path / "b")
                raise RuntimeError("b fails")
        except RuntimeError:
            b_failed.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert (tmp_path / "a" / "result").read_text() == "done"
    assert not (tmp_path / "b").exists()


def test_nested_blocks_each_remove_only_their_own_folders(tmp_path):
    """A block inside a block (export called by a function that is itself one): the
    inner failing removes what it made; the outer's earlier folder stays unless the
    outer fails too, and folders made after the inner block are still the outer's."""
    from simclr.results import created_removed_on_failure, make_folder

    with pytest.raises(RuntimeError), created_removed_on_failure():
        make_folder(tmp_path / "outer")
        with pytest.raises(ValueError), created_removed_on_failure():
            with created_removed_on_failure():  # (an empty block, done: forgotten)
                pass
            make_folder(tmp_path / "inner")
            raise ValueError
        assert (tmp_path / "outer").is_dir() and not (tmp_path / "inner").exists()
        make_folder(tmp_path / "later")
        raise RuntimeError
    assert not (tmp_path / "outer").exists() and not (tmp_path / "later").exists()


def test_an_outer_block_that_fails_removes_an_inner_done_blocks_folders(tmp_path):
    """An inner block that ended well (export inside a function that is itself one)
    hands its folders on: the outer failing after it removes them too where still
    empty, as it would had it made them itself."""
    from simclr.results import created_removed_on_failure, make_folder

    with pytest.raises(RuntimeError), created_removed_on_failure():
        with created_removed_on_failure():
            make_folder(tmp_path / "inner" / "deeper")
        assert (tmp_path / "inner" / "deeper").is_dir()
        raise RuntimeError("outer stopped")
    assert not (tmp_path / "inner").exists()


def test_a_failed_block_never_removes_a_folder_a_live_process_holds(tmp_path):
    """A folder made in the block holding only its lock file is empty only once no one
    holds it: while a run holds it (its lock, taken a moment after the folder was made)
    it is that run's, kept; released, it is removed with the block's failure."""
    from simclr.files import LOCK_NAME, lock_folder
    from simclr.results import created_removed_on_failure, make_folder

    held = None
    try:
        with pytest.raises(RuntimeError), created_removed_on_failure():
            make_folder(tmp_path / "held")
            held = lock_folder(tmp_path / "held")
            if held is None:
                pytest.skip("no advisory file locks on this platform")
            raise RuntimeError("stopped")
        assert [p.name for p in (tmp_path / "held").iterdir()] == [LOCK_NAME]
    finally:
        if held is not None:
            held.close()
    with pytest.raises(RuntimeError), created_removed_on_failure():
        make_folder(tmp_path / "released")
        lock_folder(tmp_path / "released").close()
        raise RuntimeError("stopped")
    assert not (tmp_path / "released").exists()
