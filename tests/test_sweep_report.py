"""The sweep's tables: CSV beside the markdown, and Fig. 5's square for a --pairs grid."""

import csv
import io
import json

from simclr.sweep import _write_summary
from simclr.sweep_grid import pairs_axis, parse_axis, plan_cells
from simclr.sweep_report import csv_text, pair_matrices


def _scored(cells, scores):
    for cell in cells:
        label = cell.labels["pair"]
        if label in scores:
            cell.result = {"status": "finished", "steps": 5, "knn_top1": scores[label]}


def test_a_pairs_grid_is_laid_out_as_fig5(tmp_path):
    axes = [pairs_axis("crop,color")]
    cells = plan_cells(axes, tmp_path)
    _scored(cells, {"crop": 0.3, "crop+color": 0.5, "color+crop": 0.45, "color": 0.2})
    (square,) = pair_matrices(axes, cells)
    lines = square.splitlines()
    assert lines[0].startswith("Fig. 5, knn_top1: rows the first transformation")
    assert lines[2:] == ["| first \\ then | crop | color | mean |", "|---|---|---|---|",
                         "| **crop** | 30.0% | 50.0% | 40.0% |",
                         "| **color** | 45.0% | 20.0% | 32.5% |"]


def test_an_unfinished_row_has_no_mean_and_says_why(tmp_path):
    axes = [pairs_axis("crop,color")]
    cells = plan_cells(axes, tmp_path)
    _scored(cells, {"crop": 0.3, "color": 0.2})
    cells[1].result = {"status": "diverged at step 7"}  # crop+color
    lines = pair_matrices(axes, cells)[0].splitlines()
    assert lines[-2:] == ["| **crop** | 30.0% | diverged |  |",
                          "| **color** | pending | 20.0% |  |"]


def test_a_finished_cell_this_sweep_did_not_score_is_blank_not_finished(tmp_path):
    """A cell finished before its score existed (--eval none, then knn): an empty entry,
    as a pending or diverged one says why instead."""
    axes = [pairs_axis("crop,color")]
    cells = plan_cells(axes, tmp_path)
    _scored(cells, {"crop": 0.3, "crop+color": 0.5, "color+crop": 0.45})
    cells[3].result = {"status": "finished", "steps": 5}  # color: trained, not scored
    lines = pair_matrices(axes, cells)[0].splitlines()
    assert lines[-1] == "| **color** | 45.0% |  |  |"


def test_a_cell_a_stop_left_unevaluated_says_so(tmp_path):
    """A cell stopped at its last step before its evaluation: finished, not scored yet
    (it read 'preempted', its training as finished as `simclr info` says)."""
    from simclr.sweep_report import NOT_EVALUATED

    axes = [pairs_axis("crop,color")]
    cells = plan_cells(axes, tmp_path)
    _scored(cells, {"crop": 0.3, "crop+color": 0.5, "color+crop": 0.45})
    cells[3].result = {"status": NOT_EVALUATED, "steps": 5}
    lines = pair_matrices(axes, cells)[0].splitlines()
    assert lines[-1] == "| **color** | 45.0% | not evaluated |  |"


def test_one_square_per_value_of_another_axis_and_per_score(tmp_path):
    axes = [parse_axis("temperature=0.1,0.5"), pairs_axis("crop,color")]
    cells = plan_cells(axes, tmp_path)
    for k, cell in enumerate(cells):
        cell.result = {"status": "finished", "knn_top1": k / 10, "knn_z_top1": k / 20}
    titles = [s.splitlines()[0].split(":")[0] for s in pair_matrices(axes, cells)]
    assert titles == ["Fig. 5, knn_top1 (temperature=0.1)", "Fig. 5, knn_z_top1 (temperature=0.1)",
                      "Fig. 5, knn_top1 (temperature=0.5)", "Fig. 5, knn_z_top1 (temperature=0.5)"]
    last = pair_matrices(axes, cells)[2].splitlines()  # temperature 0.5: cells 4..7
    assert last[-2:] == ["| **crop** | 40.0% | 50.0% | 45.0% |",
                         "| **color** | 60.0% | 70.0% | 65.0% |"]


def test_a_grid_without_pairs_has_no_square(tmp_path):
    axes = [parse_axis("temperature=0.1,0.5")]
    assert pair_matrices(axes, plan_cells(axes, tmp_path)) == []


def test_the_summary_is_also_written_as_csv_with_raw_scores(tmp_path):
    axes = [parse_axis("temperature=0.1,0.5"), parse_axis("normalize=true,false")]
    cells = plan_cells(axes, tmp_path)
    cells[0].result = {"status": "finished", "steps": 9, "epochs": 1.5, "knn_top1": 0.4875}
    cells[1].result = {"status": "diverged at step 3"}
    table = _write_summary(tmp_path, axes, cells)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "sweep.csv").read_text())))
    assert (tmp_path / "sweep.csv").read_text() == csv_text(axes, cells)
    assert [r["temperature"] + r["normalize"] for r in rows] == ["0.1true", "0.1false",
                                                                 "0.5true", "0.5false"]
    assert rows[0] == {"temperature": "0.1", "normalize": "true", "status": "finished",
                       "steps": "9", "epochs": "1.5", "knn_top1": "0.4875"}
    assert rows[1]["status"] == "diverged at step 3" and rows[1]["knn_top1"] == ""
    assert rows[3]["status"] == "pending"
    assert "48.8%" in table and "Fig. 5" not in table


def test_the_table_says_what_scored_it_once_a_cell_is_scored(tmp_path):
    """The same top-1 column holds other numbers on other folders or by the SGD protocol:
    sweep.md and the printed table say which scored it (sweep.json's rows record it)."""
    axes = [parse_axis("temperature=0.1,0.5")]
    cells = plan_cells(axes, tmp_path)
    on = {"scores": "linear", "train": "/d/train", "test": "/d/val", "protocol": "sgd",
          "epochs": "90", "batch_size": "4096"}
    assert "Scored by" not in _write_summary(tmp_path, axes, cells, on)  # none scored yet
    cells[0].result = {"status": "finished", "steps": 9, "linear_top1": 0.5}
    table = _write_summary(tmp_path, axes, cells, on)
    assert "Scored by --eval linear on train /d/train, test /d/val (SGD protocol, " \
        "--eval-epochs 90 --eval-batch-size 4096)" in table.splitlines()
    assert (tmp_path / "sweep.md").read_text() == table + "\n"
    rows = json.loads((tmp_path / "sweep.json").read_text())  # a scored row records it
    assert rows[0]["evaluated_on"] == on and "evaluated_on" not in rows[1]
    assert "Scored by" not in _write_summary(tmp_path, axes, cells)  # (unknown: not said)


def test_the_table_lists_the_axes_then_results_in_order_met_each_formatted(tmp_path):
    """Swept values first, then result columns as first met (a result named as an axis
    renamed trained_*), scores as percentages, the contrast entropy to 2 places; what
    scored it, then a --pairs grid's Fig. 5 square."""
    from simclr.sweep_report import render, scored_by_line

    axes = [parse_axis("epochs=1"), pairs_axis("crop,color")]
    cells = plan_cells(axes, tmp_path)
    for cell in cells:
        cell.result = {"status": "finished", "epochs": 1.0, "contrast_entropy": 1.23456,
                       "contrast_acc": 0.5, "knn_top1": 0.25, "knn_top5": 0.75}
    cells[3].result = {**cells[3].result, "knn_top1": "0.5"}  # (a crafted summary's)
    by = scored_by_line({"scores": "knn", "train": "a", "test": "b"})
    assert by == "Scored by --eval knn on train a, test b"  # (no SGD protocol: no epochs)
    parts = render(axes, cells, by).split("\n\n")
    assert parts[0].splitlines()[:3] == [
        "| epochs | pair | status | trained_epochs | contrast_entropy | contrast_acc | "
        "knn_top1 | knn_top5 |", "|" + "---|" * 8,
        "| 1 | crop | finished | 1.0 | 1.23 | 50.0% | 25.0% | 75.0% |"]
    assert parts[1] == by and parts[2].startswith("Fig. 5, knn_top1 (epochs=1): rows")
    assert parts[3].splitlines()[-1] == "| **color** | 25.0% |  |  |"  # no mean
