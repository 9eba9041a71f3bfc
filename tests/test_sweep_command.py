"""Tests for simclr.sweep_command: the `simclr sweep` command's flags checked before the
first cell trains, and each cell's evaluation (its folders, cache, layer)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from simclr.augment import EVAL_VERSION
from simclr.cli import main
from simclr.errors import SimCLRError
from tests.conftest import make_image_folder, unreadable_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cell(tmp_path, data, protocol="knn"):
    """A sweep's flags for cells that train in a second and are scored on the CPU."""
    return ["--data", str(data), "--arch", "resnet18", "--width", "0.125", "--image-size",
            "16", "--batch-size", "8", "--epochs", "1", "--precision", "fp32", "--device",
            "cpu", "--no-progress", "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
            "--eval", protocol, "--eval-device", "cpu", "--eval-precision", "fp32",
            "--eval-workers", "0", "--out", str(tmp_path / "sw")]


def test_sweep_command_needs_evaluation_folders_for_image_data(tmp_path, image_folder, capsys):
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--eval-train" in err


def test_sweep_checks_evaluation_folders_before_training(tmp_path, image_folder, capsys):
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--eval-train", str(tmp_path / "missing"), "--eval-test", str(image_folder),
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--eval-train: folder not found" in err
    assert not (tmp_path / "sw").exists()
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--eval-train", str(image_folder), "--eval-test", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--eval-test: folder not found" in err
    assert not (tmp_path / "sw").exists()
    other = make_image_folder(tmp_path / "other", classes=3, per_class=2)
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--eval-train", str(image_folder), "--eval-test", str(other),
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and "--eval-train and --eval-test have different classes" in err
    assert not (tmp_path / "sw").exists()
    broken = unreadable_folder(tmp_path / "broken", 1)  # met after the first cell's training
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--eval-train", str(image_folder), "--eval-test", str(broken),
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"--eval-test: none of the 2 images in {broken} could be read" in err
    assert not (tmp_path / "sw").exists()


def test_sweep_evaluation_decodes_into_the_pretraining_cache_dir(tmp_path, image_folder,
                                                                  monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = tmp_path / "cache"
    code = main(["sweep", "--set", "temperature=0.5", *tiny_cell(tmp_path, image_folder),
                 "--eval-train", str(image_folder), "--eval-test", str(image_folder)])
    assert code == 0, capsys.readouterr().err
    assert "knn_top1" in capsys.readouterr().out
    assert list(cache.iterdir()) and not (tmp_path / "home/.cache/simclr").exists()


@pytest.mark.parametrize("flags, channels_last", [([], True), (["--no-channels-last"], False)])
def test_a_cells_evaluation_runs_in_the_memory_format_it_trained_in(
        tmp_path, image_folder, flags, channels_last):
    """A sweep's --no-channels-last cells were scored in channels_last all the same (the
    evaluations' default), their kNN monitor in NCHW."""
    assert main(["sweep", "--set", "temperature=0.5", *tiny_cell(tmp_path, image_folder),
                 *flags, "--eval-train", str(image_folder),
                 "--eval-test", str(image_folder)]) == 0
    knn = json.loads((tmp_path / "sw/temperature=0.5/knn.json").read_text())
    assert knn["channels_last"] is channels_last


def test_a_cached_evaluation_is_reused_only_on_the_same_folders(tmp_path, image_folder,
                                                                monkeypatch, capsys):
    """A sweep rerun with another --eval-test used to report the old cell's knn.json."""
    monkeypatch.chdir(tmp_path)
    other = make_image_folder(tmp_path / "other", classes=2, per_class=3, seed=1)

    def sweep(train, test):
        code = main(["sweep", "--set", "temperature=0.5", *tiny_cell(tmp_path, image_folder),
                     "--eval-train", str(train), "--eval-test", str(test)])
        assert code == 0
        return json.loads((tmp_path / "sw/temperature=0.5/knn.json").read_text())

    first = sweep(image_folder, image_folder)
    assert first["num_test"] == 24
    files = first["evaluated_on"]["train_files"]
    assert first["evaluated_on"] == {"train": str(image_folder), "test": str(image_folder),
                                     "train_files": files, "test_files": files,
                                     "transform": str(EVAL_VERSION)}
    assert files.startswith("24:")
    summary = tmp_path / "sw/sweep.json"
    rows = json.loads(summary.read_text())
    for row in rows:  # as written before rows recorded their evaluation (the cell's did)
        del row["evaluated_on"]
    summary.write_text(json.dumps(rows))
    assert sweep(image_folder, image_folder) == first  # the same command: its table kept
    assert not (tmp_path / "sw/sweep.previous-1.json").exists()
    capsys.readouterr()
    second = sweep(image_folder, other)  # evaluated again, the earlier result kept
    assert second["num_test"] == 6 and second["evaluated_on"]["test"] == str(other)
    # and the earlier table too (it was overwritten: knn_top1 of another test set)
    rows = [json.loads((tmp_path / f"sw/sweep{k}.json").read_text())[0]
            for k in ("", ".previous-1")]
    assert [row["evaluated_on"] for row in rows] == [{"scores": "knn", **second[
        "evaluated_on"]}, {"scores": "knn", **first["evaluated_on"]}]
    cell = tmp_path / "sw/temperature=0.5"
    # (its figure set aside with it, and named so)
    assert json.loads((cell / "knn.previous-1.json").read_text()) == {
        **first, "confusion_figure": str(cell / "knn_confusion.previous-1.png")}
    assert (cell / "knn_confusion.previous-1.png").is_file()
    err = capsys.readouterr().err
    assert f"knn.json was computed on another test set ({image_folder}); evaluating again" in err
    stamp = (cell / "knn.json").stat().st_mtime_ns
    assert sweep(image_folder, "other") == second  # the same folder, typed relative: reused
    assert (cell / "knn.json").stat().st_mtime_ns == stamp
    del second["evaluated_on"]  # as cached before the folders were recorded: not trusted
    (cell / "knn.json").write_text(json.dumps(second))
    assert sweep(image_folder, other)["evaluated_on"]["test"] == str(other)
    assert (cell / "knn.previous-2.json").is_file()
    third = json.loads((cell / "knn.json").read_text())
    del third["evaluated_on"]["transform"]  # computed before the evaluation transform changed
    (cell / "knn.json").write_text(json.dumps(third))
    capsys.readouterr()
    sweep(image_folder, other)
    assert (cell / "knn.previous-3.json").is_file()
    assert "knn.json was computed with an earlier evaluation transform" in capsys.readouterr().err


def test_a_cached_evaluation_is_not_reused_once_its_folder_changed(tmp_path, image_folder,
                                                                   monkeypatch, capsys):
    """A test folder that gained images (or had one renamed) since a cell's evaluation
    is evaluated again; results that did not record the files (before they were) stay."""
    monkeypatch.chdir(tmp_path)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=3, seed=1)
    cell = tmp_path / "sw/temperature=0.5"

    def sweep():
        code = main(["sweep", "--set", "temperature=0.5", *tiny_cell(tmp_path, image_folder),
                     "--eval-train", str(image_folder), "--eval-test", str(test)])
        assert code == 0
        return json.loads((cell / "knn.json").read_text())

    assert sweep()["num_test"] == 6
    extra = sorted((test / "class_0").iterdir())[0]
    shutil.copy(extra, extra.with_name("added" + extra.suffix))
    capsys.readouterr()
    assert sweep()["num_test"] == 7
    assert "knn.json was computed when the test folder held 6 images (7 now)" in \
        capsys.readouterr().err
    extra.rename(extra.with_name("renamed" + extra.suffix))
    renamed = sweep()
    assert renamed["num_test"] == 7 and (cell / "knn.previous-2.json").is_file()
    assert "held 7 images (as many now, some of them under other names)" in \
        capsys.readouterr().err
    del renamed["evaluated_on"]["test_files"]  # recorded before the files were
    (cell / "knn.json").write_text(json.dumps(renamed))
    shutil.copy(extra.with_name("renamed" + extra.suffix), extra)
    assert sweep() == renamed and not (cell / "knn.previous-3.json").exists()


def test_a_data_axis_names_the_data_not_the_digits_demo(tmp_path, image_folder, capsys):
    """`--set data=A,B` trained every cell with the digits demo's preset (no flip,
    temperature 0.2, LARS, 40 epochs) and scored it on the digits hold-out: swept data
    is named data, as --data is."""
    other = make_image_folder(tmp_path / "other", classes=2, per_class=3, seed=1)
    axis = ["--set", f"data={image_folder},{other}", "--out", str(tmp_path / "sw")]
    code = main(["sweep", *axis])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--eval knn needs --eval-train and --eval-test" in err
    assert not (tmp_path / "sw").exists()
    assert main(["sweep", *axis, "--eval", "none", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- # cell") == 2
    assert "temperature: 0.2\n" not in out and "flip: false" not in out
    assert "epochs: 40.0" not in out and "  lr: 1.0\n" not in out
    assert f"path: {image_folder}\n" in out and f"path: {other}\n" in out


def test_a_data_axis_of_the_digits_demo_alone_is_the_demo(tmp_path, capsys):
    """`--set data=none` (one value: the demo) keeps the demo's preset and hold-out."""
    assert main(["sweep", "--set", "data=none", "--out", str(tmp_path / "sw"),
                 "--print-config"]) == 0
    assert "temperature: 0.2\n" in capsys.readouterr().out


def test_a_data_axis_of_the_demo_and_data_is_refused(tmp_path, image_folder, capsys):
    """`--set data=none,DIR` trained its demo cell on 8-px digits with the folder's
    settings (no demo preset) and scored it on the folders: refused, nothing written."""
    code = main(["sweep", "--set", f"data=none,{image_folder}", "--eval", "none",
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--set data: none (the digits demo" in err and not (tmp_path / "sw").exists()


# A digits sweep's cells trained in a second (should a check let them train at all)
TINY_DIGITS = ["--width", "0.125", "--batch-size", "32", "--max-steps", "1", "--precision",
               "fp32", "--device", "cpu", "--no-progress", "--workers", "0",
               "--eval-device", "cpu"]


@pytest.mark.parametrize("data", ["digits", "folder"])
@pytest.mark.parametrize("half", ["--eval-train", "--eval-test"])
def test_one_evaluation_folder_alone_is_refused(tmp_path, image_folder, capsys, data, half):
    """A digits sweep given --eval-train alone scored its cells on the digits hold-out,
    the folder silently unused; one folder alone is refused whatever the data."""
    other = "--eval-test" if half == "--eval-train" else "--eval-train"
    code = main(["sweep", "--set", "temperature=0.2,0.5", *TINY_DIGITS, half,
                 str(image_folder),
                 *(["--data", str(image_folder)] if data == "folder" else []),
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{half} without {other}: " in err and f"give {other} too" in err
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("flag, value", [("--eval-cache-dir", "cache"),
                                         ("--eval-workers", "2"), ("--eval-workers", "0")])
def test_eval_folder_flags_unused_by_the_digits_hold_out_are_refused(tmp_path, capsys, flag,
                                                                     value):
    """The digits demo's hold-out is in memory: no folder decoded, nothing cached."""
    code = main(["sweep", "--set", "temperature=0.2,0.5", *TINY_DIGITS, flag, value,
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{flag}: unused when the cells are scored on the digits hold-out" in err
    assert not (tmp_path / "sw").exists()


def test_a_digits_sweep_given_both_folders_is_scored_on_them(tmp_path, image_folder,
                                                            monkeypatch):
    """The demo's encoders scored on the folders asked for, as `simclr knn` would, decoded
    into --eval-cache-dir."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["sweep", "--set", "temperature=0.2", *TINY_DIGITS,
                 "--eval-train", str(image_folder), "--eval-test", str(image_folder),
                 "--eval-cache-dir", str(tmp_path / "cache"), "--eval-workers", "0",
                 "--out", str(tmp_path / "sw")]) == 0
    knn = json.loads((tmp_path / "sw/temperature=0.2/knn.json").read_text())
    assert knn["evaluated_on"]["test"] == str(image_folder) and knn["num_test"] == 24
    assert list((tmp_path / "cache").iterdir())
    assert not (tmp_path / "home/.cache/simclr").exists()
    # the table says what scored its column (other folders give other numbers there)
    assert f"Scored by --eval knn on train {image_folder}, test {image_folder}\n" in \
        (tmp_path / "sw/sweep.md").read_text()


def test_the_cells_evaluations_run_with_the_sweeps_threads(tmp_path):
    """`sweep --threads 1` reached each cell's training only: its evaluation ran with
    torch's default threads (on a busy 2-core machine 8-13x slower) and recorded them.
    Now it runs with the sweep's, as `simclr knn --threads` does; the caller's setting
    comes back after."""
    import torch

    torch.set_num_threads(2)  # (one_thread puts its own back after the test)
    assert main(["sweep", "--set", "temperature=0.2", *TINY_DIGITS, "--threads", "1",
                 "--out", str(tmp_path / "sw")]) == 0
    knn = json.loads((tmp_path / "sw/temperature=0.2/knn.json").read_text())
    assert knn["provenance"]["cpu_threads"] == 1
    assert torch.get_num_threads() == 2
    # A later command's evaluation runs with its own threads, not those saved with the
    # cells by the command that trained them (a runtime setting of that command).
    (tmp_path / "sw/temperature=0.2/knn.json").unlink()
    assert main(["sweep", "--set", "temperature=0.2", *TINY_DIGITS,
                 "--out", str(tmp_path / "sw")]) == 0
    knn = json.loads((tmp_path / "sw/temperature=0.2/knn.json").read_text())
    assert knn["provenance"]["cpu_threads"] == 2


def test_a_flag_also_swept_is_refused(tmp_path, image_folder, capsys):
    code = main(["sweep", "--temperature", "0.3", "--set", "temperature=0.1,0.2", "--data",
                 str(image_folder), "--out", str(tmp_path / "sw"), "--eval", "none"])
    assert code == 2 and not (tmp_path / "sw").exists()
    assert capsys.readouterr().err == ("simclr sweep: error: --temperature is also swept (by "
                                       "temperature), which would replace it in every cell; "
                                       "give it once\n")


def test_cells_are_scored_on_the_layer_asked_for(tmp_path, image_folder, capsys):
    """Sec. 4.2's h against z: --eval-layer z scores each cell's z, as `simclr knn --layer
    z` of that cell does; a rerun on h evaluates again and shows both layers; one on z
    again reuses z's score; a head layer a cell lacks is refused before anything trains."""
    common = [*tiny_cell(tmp_path, image_folder), "--eval-train", str(image_folder),
              "--eval-test", str(image_folder)]
    assert main(["sweep", "--set", "head=mlp,linear", *common, "--eval-layer", "g3"]) == 2
    assert "--eval-layer g3: the cell head=mlp has a projection head of 2 layers" in \
        capsys.readouterr().err and not (tmp_path / "sw").exists()
    assert main(["sweep", "--set", "head=mlp,linear", *common, "--eval-layer", "z"]) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    capsys.readouterr()
    for row in rows:
        cell = tmp_path / "sw" / row["cell"]
        assert json.loads((cell / "knn.json").read_text())["source"]["layer"] == "z"
        assert main(["knn", "--checkpoint", str(cell), "--layer", "z", "--train",
                     str(image_folder), "--test", str(image_folder), "--device", "cpu",
                     "--precision", "fp32", "--workers", "0", "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(tmp_path / f"z-{row['head']}")]) == 0
        alone = json.loads((tmp_path / f"z-{row['head']}" / "knn.json").read_text())
        assert row["knn_z_top1"] == alone["top1"]
    capsys.readouterr()
    assert main(["sweep", "--set", "head=mlp,linear", *common]) == 0
    said = capsys.readouterr()
    assert "knn.json was computed on z, not h; evaluating again" in said.err
    again = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    # both layers' columns: z's score kept (knn.previous-1.json), h's beside it
    assert [(row["knn_top1"], row["knn_z_top1"]) for row in again] == [
        (json.loads((tmp_path / "sw" / row["cell"] / "knn.json").read_text())["top1"],
         row["knn_z_top1"]) for row in rows]
    assert ("| head | status | steps | epochs | train_s | contrast_entropy | contrast_acc | "
            "knn_top1 | knn_z_top1 |") in said.out
    cells = [tmp_path / "sw" / row["cell"] for row in rows]
    def results(cell, name, figure):  # (each naming the figure beside it)
        found = json.loads((cell / name).read_text())
        assert found.pop("confusion_figure") == str(cell / figure)
        return found

    on_h = [results(cell, "knn.json", "knn_confusion.png") for cell in cells]
    on_z = [results(cell, "knn.previous-1.json", "knn_confusion.previous-1.png")
            for cell in cells]
    assert main(["sweep", "--set", "head=mlp,linear", *common, "--eval-layer", "z"]) == 0
    err = capsys.readouterr().err
    assert "evaluating again" not in err  # z is on record: reused, and current again
    assert "the evaluation on record in knn.previous-1.json is current again (the other " \
        "kept as knn.previous-2.json, knn_confusion.previous-2.png)" in err
    assert [results(cell, "knn.json", "knn_confusion.png") for cell in cells] == on_z
    assert [results(cell, "knn.previous-2.json", "knn_confusion.previous-2.png")
            for cell in cells] == on_h
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text()) == again


def test_a_sweep_is_refused_over_what_it_reads_and_over_a_budgets_epochs(tmp_path, capsys):
    """Nothing written: not inside the data folder, not beside its train/ and test/ (the
    parent would stop reading as splits); an epochs axis under a time budget (the budget
    sets the length) and an axis with no effect in any cell are refused."""
    for split in ("train", "test"):
        make_image_folder(tmp_path / "d" / split, classes=2, per_class=4)
    common = ["--data", str(tmp_path / "d" / "train"), "--batch-size", "8", "--eval", "none"]
    for out, needle in ((tmp_path / "d", "as a split"),
                        (tmp_path / "d" / "train" / "sw", "lies inside the --data folder")):
        assert main(["sweep", "--set", "temperature=0.2,0.5", *common, "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "d" / "sweep.json").exists()
    assert not (tmp_path / "d" / "train" / "sw").exists()
    out = ["--out", str(tmp_path / "sw")]
    assert main(["sweep", "--set", "epochs=1,2", "--time-budget", "60", *common, *out]) == 2
    assert "--set epochs: under --time-budget the budget sets" in capsys.readouterr().err
    assert main(["sweep", "--set", "margin=0.5,1", *common, *out]) == 2
    assert capsys.readouterr().err.endswith(
        "--set margin: --margin has no effect in any cell: it is --loss margin_triplet's, "
        "and --loss is nt_xent; leave it out\n")
    assert not (tmp_path / "sw").exists()


def test_a_headless_cells_z_is_its_h_and_out_inside_an_eval_folder_is_refused(
        tmp_path, image_folder, capsys):
    """--eval-layer z over head=none,linear: the headless cell is scored on h (z = h
    there), not stopped after training. An --out inside --eval-test is refused before
    any cell trains (the cells' figures would become test images)."""
    common = ["--data", str(image_folder), "--arch", "resnet18", "--width", "0.125",
              "--image-size", "16", "--batch-size", "8", "--max-steps", "2", "--precision",
              "fp32", "--device", "cpu", "--no-progress", "--workers", "0", "--cache-dir",
              str(tmp_path / "cache"), "--eval-train", str(image_folder), "--eval-test",
              str(image_folder), "--eval-device", "cpu", "--eval-precision", "fp32",
              "--eval-workers", "0"]
    inside = image_folder / "class_0" / "sw"
    assert main(["sweep", "--set", "head=none,linear", *common, "--out", str(inside)]) == 2
    assert "lies inside the --eval-train folder" in capsys.readouterr().err
    assert not inside.exists()
    out = tmp_path / "sw"
    assert main(["sweep", "--set", "head=none,linear", *common, "--eval-layer", "z",
                 "--out", str(out)]) == 0
    rows = {row["head"]: row for row in json.loads((out / "sweep.json").read_text())}
    # said, as `simclr knn --layer z` of that cell refuses it: its z column holds h
    notes = [line for line in capsys.readouterr().err.splitlines() if "z = h" in line]
    assert notes == ["note: --eval-layer z: the cell head=none has no projection head; "
                     "its knn_z_top1 is its h's score (z = h without a head)"]
    cell = out / rows["none"]["cell"]
    assert main(["knn", "--checkpoint", str(cell), "--train", str(image_folder), "--test",
                 str(image_folder), "--device", "cpu", "--precision", "fp32", "--workers", "0",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "h")]) == 0
    assert rows["none"]["knn_z_top1"] == json.loads((tmp_path / "h" / "knn.json").read_text()
                                                    )["top1"]


def test_an_evaluation_on_record_is_made_current_again(tmp_path, image_folder, capsys):
    """A rerun on the folders (or layer) of an earlier evaluation reuses its score and
    brings its files back: the cell's linear_eval.json and linear.pt were those of the
    other test set (or of z) while the table showed this one's score."""
    other = make_image_folder(tmp_path / "other", classes=2, per_class=3, seed=1)
    cell = tmp_path / "sw/temperature=0.5"

    def sweep(test, *extra):
        code = main(["sweep", "--set", "temperature=0.5",
                     *tiny_cell(tmp_path, image_folder, "linear"),
                     "--eval-train", str(image_folder), "--eval-test", str(test), *extra])
        assert code == 0
        row, = json.loads((tmp_path / "sw/sweep.json").read_text())
        classifier = cell / "checkpoints/linear.pt"  # (only one on h is saved)
        return row, (cell / "linear_eval.json").read_text(), \
            classifier.read_bytes() if classifier.exists() else None

    first = sweep(image_folder)
    assert json.loads(first[1])["num_test"] == 24
    assert json.loads(sweep(other)[1])["num_test"] == 6
    capsys.readouterr()
    assert sweep(image_folder) == first  # the same row, and its files current again
    err = capsys.readouterr().err
    assert "evaluating again" not in err and "linear_eval.previous-1.json is current" in err
    assert json.loads((cell / "linear_eval.previous-2.json").read_text())["num_test"] == 6
    assert (cell / "checkpoints/linear.previous-2.pt").is_file()
    on_z = sweep(image_folder, "--eval-layer", "z")
    assert json.loads(on_z[1])["source"]["layer"] == "z" and on_z[2] is None
    row, current, classifier = sweep(image_folder)  # back to h: h's linear.pt again
    assert (current, classifier) == first[1:]
    assert row["linear_top1"] == first[0]["linear_top1"] and "linear_z_top1" in row


def test_a_rerun_with_more_values_shows_its_finished_cells_from_the_start(
        tmp_path, image_folder, monkeypatch, capsys):
    """A rerun wrote every cell 'pending' before the first ran: stopped before it reached
    the finished ones, its sweep.md/csv/json had lost their results."""
    from simclr import train

    flags = [*tiny_cell(tmp_path, image_folder), "--eval-train", str(image_folder),
             "--eval-test", str(image_folder)]
    assert main(["sweep", "--set", "temperature=0.5", *flags]) == 0
    done, = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert done["status"] == "finished" and isinstance(done["knn_top1"], float)

    def interrupted(cfg, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "pretrain", interrupted)  # the new cell, first: cut
    assert main(["sweep", "--set", "temperature=0.2,0.5", *flags]) == 130
    new, kept = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert new["status"] == "interrupted" and kept == done
    assert "0.5,finished," in (tmp_path / "sw/sweep.csv").read_text()
    assert "| 0.5 | finished |" in (tmp_path / "sw/sweep.md").read_text()


def test_sigterm_during_a_cells_evaluation_stops_the_sweep_as_a_preemption(
        tmp_path, image_folder, monkeypatch, capsys):
    """SIGTERM during a cell's kNN evaluation exited 143 with the cell 'pending'; a
    stopped sweep exits 75, the cell 'preempted', and the same command evaluates it."""
    import os
    import signal
    import time

    from simclr import knn

    flags = ["sweep", "--set", "temperature=0.2,0.5", *tiny_cell(tmp_path, image_folder),
             "--eval-train", str(image_folder), "--eval-test", str(image_folder)]

    def terminated(*args, **kwargs):  # a scheduler's SIGTERM while the kNN runs
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # (the command's handler raises here)
        raise AssertionError("SIGTERM was not handled")

    real = knn.run_knn
    monkeypatch.setattr(knn, "run_knn", terminated)
    assert main(flags) == 75
    assert "the same command continues it" in capsys.readouterr().err
    rows = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert [(r["status"], r["steps"]) for r in rows[:1]] == [("preempted", 3)]
    assert rows[1]["status"] == "pending" and "knn_top1" not in rows[0]
    last = tmp_path / "sw/temperature=0.2/checkpoints/last.pt"
    stamp = last.stat().st_mtime_ns
    monkeypatch.setattr(knn, "run_knn", real)
    assert main(flags) == 0
    rows = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert all(isinstance(r["knn_top1"], float) for r in rows)
    assert last.stat().st_mtime_ns == stamp  # evaluated, not trained again


def test_an_evaluation_set_aside_names_its_own_figure(tmp_path, capsys):
    """knn.json set aside as knn.previous-K.json (its figure as knn_confusion.previous-K.png)
    still named knn_confusion.png, the next evaluation's figure: its confusion_figure now
    follows the figure, both when set aside and when brought back as current."""
    from simclr.sweep_command import EVAL_FILES, _make_current, _set_aside_evaluation

    def evaluation(top1):
        (tmp_path / "knn_confusion.png").write_text(f"figure {top1}")
        (tmp_path / "knn.json").write_text(json.dumps(
            {"top1": top1, "confusion_figure": str(tmp_path / "knn_confusion.png")}))

    def figure(name):  # (the figure a results file names, read)
        return Path(json.loads((tmp_path / name).read_text())["confusion_figure"]).read_text()

    evaluation(0.5)
    assert str(_set_aside_evaluation(tmp_path, EVAL_FILES["knn"])) == \
        "knn.previous-1.json, knn_confusion.previous-1.png"
    assert figure("knn.previous-1.json") == "figure 0.5"
    evaluation(0.7)
    _make_current(tmp_path, "knn.json", tmp_path / "knn.previous-1.json", EVAL_FILES["knn"])
    assert figure("knn.json") == "figure 0.5"  # brought back: its figure, current again
    assert figure("knn.previous-2.json") == "figure 0.7"
    assert json.loads((tmp_path / "knn.json").read_text())["confusion_figure"] == \
        str(tmp_path / "knn_confusion.png")
    (tmp_path / "knn.json").write_text(json.dumps({"top1": 0.1}))  # (no figure drawn)
    _set_aside_evaluation(tmp_path, EVAL_FILES["knn"])
    assert json.loads((tmp_path / "knn.previous-1.json").read_text()) == {"top1": 0.1}


def test_only_an_evaluation_set_aside_is_brought_back(tmp_path, capsys):
    """A file the glob NAME.previous-* also matches (a user's knn.previous-1.bak.json)
    set the current evaluation aside and brought nothing back."""
    from simclr.sweep_command import EVAL_FILES, _make_current

    (tmp_path / "knn.json").write_text("{}")
    _make_current(tmp_path, "knn.json", tmp_path / "knn.previous-1.bak.json", EVAL_FILES["knn"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knn.json"]
    assert capsys.readouterr().err == ""



def test_the_sgd_linear_protocol_scores_each_cell(tmp_path, image_folder, monkeypatch,
                                                  capsys):
    """--eval linear --eval-protocol sgd: the paper's protocol on each cell (its peak lr
    0.1 x B/256 recorded); a rerun reuses it, another protocol or length evaluates again;
    a signal during its training stops the sweep with 75 and the cell 'preempted', and
    the same command continues that training from its step."""
    from simclr import evaluate

    cell = tmp_path / "sw/temperature=0.5"
    sgd = ["--eval-protocol", "sgd", "--eval-epochs", "1", "--eval-batch-size", "8"]

    def sweep(*extra):
        return main(["sweep", "--set", "temperature=0.5",
                     *tiny_cell(tmp_path, image_folder, "linear"), "--eval-train",
                     str(image_folder), "--eval-test", str(image_folder), *extra])

    assert sweep(*sgd) == 0, capsys.readouterr().err
    result = json.loads((cell / "linear_eval.json").read_text())
    assert result["protocol"] == "sgd" and result["steps"] == 3  # 24 images at batch 8
    assert result["peak_lr"] == pytest.approx(0.1 * 8 / 256)
    row, = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert row["linear_top1"] == result["top1"]
    assert f"test {image_folder} (SGD protocol, --eval-epochs 1 --eval-batch-size 8)" \
        in capsys.readouterr().out
    assert sweep(*sgd) == 0 and "evaluating again" not in capsys.readouterr().err
    assert sweep() == 0  # lbfgs now: evaluated again, the SGD one kept beside
    assert "was computed by the sgd protocol, not lbfgs" in capsys.readouterr().err
    assert json.loads((cell / "linear_eval.json").read_text())["protocol"] == "lbfgs"
    assert sweep(*sgd[:2], "--eval-epochs", "2", *sgd[4:]) == 0  # not the 1-epoch one
    assert "was computed by the lbfgs protocol, not sgd" in capsys.readouterr().err
    assert json.loads((cell / "linear_eval.json").read_text())["steps"] == 6

    real = evaluate.run_linear_eval

    def stopped_at_step_4(*args, **kwargs):  # as SIGTERM would, at step 4 of 9
        def stop(step, flag):
            if step == 4:
                flag.requested = "SIGTERM"
        return real(*args, **kwargs, on_step=stop)

    monkeypatch.setattr(evaluate, "run_linear_eval", stopped_at_step_4)
    assert sweep(*sgd[:2], "--eval-epochs", "3", *sgd[4:]) == 75
    assert json.loads((tmp_path / "sw/sweep.json").read_text())[0]["status"] == "preempted"
    err = capsys.readouterr().err
    assert "was computed in 2 epochs at batch 8" in err
    assert "the same command continues it" in err
    assert main(["info", str(cell)]) == 0  # the unfinished classifier names its encoder
    assert "linear-partial.pt: unfinished linear classifier, 4 training steps, 2 classes, " \
        "resnet18 x0.125, 16 px" in capsys.readouterr().out
    monkeypatch.setattr(evaluate, "run_linear_eval", real)
    assert sweep(*sgd[:2], "--eval-epochs", "3", *sgd[4:]) == 0  # continued, not restarted
    assert "from step 4" in capsys.readouterr().err
    result = json.loads((cell / "linear_eval.json").read_text())
    assert result["steps"] == 9 and result["status"] == "finished"
    row, = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert row["status"] == "finished" and row["linear_top1"] == result["top1"]


def test_an_unfinished_sgd_evaluation_is_set_aside_for_other_eval_flags(
        tmp_path, image_folder, monkeypatch, capsys):
    """A sweep whose sgd evaluation a signal stopped, rerun with another --eval-epochs or
    with the L-BFGS protocol, was refused at that cell ('pass --overwrite', which a sweep
    does not take): the unfinished training is kept aside, as stale results are."""
    from simclr import evaluate

    cell = tmp_path / "sw/temperature=0.5"
    real = evaluate.run_linear_eval

    def sweep(*extra):
        return main(["sweep", "--set", "temperature=0.5",
                     *tiny_cell(tmp_path, image_folder, "linear"), "--eval-train",
                     str(image_folder), "--eval-test", str(image_folder), *extra])

    def stopped_at_step_2(*args, **kwargs):
        def stop(step, flag):
            if step == 2:
                flag.requested = "SIGTERM"
        return real(*args, **kwargs, on_step=stop)

    sgd = ["--eval-protocol", "sgd", "--eval-batch-size", "8", "--eval-epochs"]
    for k, rerun in enumerate(([*sgd, "2"], []), start=1):
        monkeypatch.setattr(evaluate, "run_linear_eval", stopped_at_step_2)
        assert sweep(*sgd, "3") == 75
        monkeypatch.setattr(evaluate, "run_linear_eval", real)
        capsys.readouterr()
        assert sweep(*rerun) == 0
        assert f"kept as checkpoints/linear-partial.previous-{k}.pt" in \
            capsys.readouterr().err
        assert (cell / f"checkpoints/linear-partial.previous-{k}.pt").is_file()
        assert not (cell / "checkpoints/linear-partial.pt").exists()
        result = json.loads((cell / "linear_eval.json").read_text())
        assert result["protocol"] == ("sgd" if rerun else "lbfgs")
        assert not rerun or result["steps"] == 6  # started over: 2 epochs of 3 steps


@pytest.mark.parametrize("flags, message", [
    (["--eval-protocol", "sgd"], "--eval-protocol sgd: linear evaluation's; --eval is knn"),
    (["--eval", "linear", "--eval-epochs", "5"], "--eval-epochs: a setting of the SGD linear "
                                                 "protocol"),
    (["--eval-batch-size", "64"], "--eval-batch-size: a setting of the SGD linear protocol"),
])
def test_sgd_protocol_flags_without_it_are_refused(tmp_path, image_folder, capsys, flags,
                                                   message):
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--eval-train", str(image_folder), "--eval-test", str(image_folder),
                 *flags, "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "sw").exists()


def test_an_evaluation_on_another_training_set_alone_is_not_reused():
    """The kNN memory (the linear classifier's training set) changed, the test set the
    same: another score, so the cached one is stale; the same folders, it is current."""
    from simclr.sweep_command import _stale_results

    wanted = {"train": "/data/train", "test": "/data/test", "transform": "1"}
    cached = {"top1": 0.5, "precision": "fp32", "source": {"layer": "h"},
              "evaluated_on": {**wanted, "train": "/data/other"}}
    assert _stale_results(cached, wanted, "fp32", "h") == \
        "was computed on another train set (/data/other)"
    assert _stale_results({**cached, "evaluated_on": wanted}, wanted, "fp32", "h") is None


def test_a_head_layer_is_checked_against_each_cells_head_depth(tmp_path):
    """--eval-layer gK is refused only for a cell whose head has fewer than K layers:
    g1 is every head's first layer (a linear head's only one), g2 is past it."""
    from simclr.sweep_command import _check_eval_layer
    from simclr.sweep_grid import parse_axis

    axes = [parse_axis("head=mlp,linear")]
    _check_eval_layer("g1", axes, tmp_path / "sw", "digits", None, {})
    _check_eval_layer("g2", [parse_axis("head=mlp")], tmp_path / "sw", "digits", None, {})
    with pytest.raises(SimCLRError, match=r"^--eval-layer g2: the cell head=linear has a "
                                          r"projection head of 1 layer$"):
        _check_eval_layer("g2", axes, tmp_path / "sw", "digits", None, {})
    assert not (tmp_path / "sw").exists()


def test_a_cached_evaluation_is_reused_at_any_precision_unless_one_is_given():
    """--eval-precision auto takes the score on record whatever its precision (a sweep
    continued on another machine); a precision given takes only its own."""
    from simclr.sweep_command import _stale_results

    wanted = {"train": "/data/train", "test": "/data/test", "transform": "1"}
    cached = {"top1": 0.5, "precision": "bf16", "source": {"layer": "h"},
              "evaluated_on": wanted}
    assert _stale_results(cached, wanted, "auto", "h") is None
    assert _stale_results(cached, wanted, "bf16", "h") is None
    assert _stale_results(cached, wanted, "fp32", "h") == "was computed in bf16, not fp32"


def test_of_two_scores_of_a_layer_on_record_the_current_files_is_shown(tmp_path):
    """An h score set aside (another precision) and the current h score, both valid under
    --eval-precision auto: the table shows the current one, written last."""
    import argparse

    from simclr.sweep_command import recorded_scores

    wanted = {"train": "/data/train", "test": "/data/test", "transform": "1"}
    for name, top1, precision in (("knn.previous-1.json", 0.4, "fp32"),
                                  ("knn.json", 0.6, "bf16")):
        (tmp_path / name).write_text(json.dumps({
            "top1": top1, "precision": precision, "source": {"layer": "h"},
            "evaluated_on": wanted}))
    args = argparse.Namespace(eval="knn", eval_precision="auto")
    assert recorded_scores(tmp_path, args, wanted) == {"knn_top1": 0.6}


def test_the_current_file_wins_over_a_set_aside_one_written_later_on_disk(tmp_path):
    """knn.previous-1.json newer than knn.json by its mtime (a copy, `touch`): the current
    file is still the one shown (K is the first number free, the mtime a copy's)."""
    import argparse
    import os

    from simclr.sweep_command import recorded_scores

    wanted = {"train": "/data/train", "test": "/data/test", "transform": "1"}
    for name, top1 in (("knn.json", 0.5), ("knn.previous-1.json", 0.3)):
        (tmp_path / name).write_text(json.dumps({
            "top1": top1, "source": {"layer": "h"}, "evaluated_on": wanted}))
    later = (tmp_path / "knn.json").stat().st_mtime_ns + 10**9
    os.utime(tmp_path / "knn.previous-1.json", ns=(later, later))
    args = argparse.Namespace(eval="knn", eval_precision="auto")
    assert recorded_scores(tmp_path, args, wanted) == {"knn_top1": 0.5}


WANTED = {"train": "/data/train", "test": "/data/test", "train_files": "3:ab",
          "test_files": "2:cd", "transform": "1"}
CURRENT = {"top1": 0.5, "precision": "fp32", "source": {"layer": "h"}, "evaluated_on": WANTED}


@pytest.mark.parametrize("changed, reason", [
    ({"top1": "0.9"}, "holds no top-1 between 0 and 1"),
    ({"top1": 1.5}, "holds no top-1 between 0 and 1"),
    ({"top1": float("nan")}, "holds no top-1 between 0 and 1"),
    ({"top1": True}, "holds no top-1 between 0 and 1"),
    ({"source": [1]}, "does not record its layer"),
    ({"source": {"layer": ["h"]}}, "was computed on ['h'], not h"),
    ({"evaluated_on": {**WANTED, "train_files": 5}}, "was computed when the train folder "
                                                     "held 5 images (3 now)"),
    ({"evaluated_on": {**WANTED, "test_files": "\x1b[2J:x"}},
     "was computed when the test folder held \\x1b[2J images (2 now)"),
    ({"evaluated_on": {**WANTED, "train": "\x1b]0;PWNED\x07"}},
     "was computed on another train set (\\x1b]0;PWNED\\x07)"),
    ({"evaluated_on": {**WANTED, "protocol": "\x1b[2J"}},
     "was computed by the \\x1b[2J protocol, not lbfgs"),
    ({"evaluated_on": {**WANTED, "epochs": "\x1b[2J"}},
     "was computed in \\x1b[2J epochs at batch None"),
    ({"evaluated_on": {**WANTED, "batch_size": "128"}}, "was computed in None epochs at "
                                                        "batch 128"),
    ({"precision": "\x1b[2J"}, "was computed in \\x1b[2J, not fp32"),
    ({"evaluated_on": {**WANTED, "transform": "0"}},
     "was computed with an earlier evaluation transform"),
])
def test_a_damaged_or_crafted_evaluation_is_stale_and_said_printably(tmp_path, changed,
                                                                      reason):
    """A received cell's knn.json whose score is no fraction, whose layer or folders'
    files are recorded as no text, is not current (evaluated again, with this note),
    never a traceback; what it records is quoted escaped; its score is never shown."""
    import argparse

    from simclr.sweep_command import _stale_results, recorded_scores

    assert _stale_results(CURRENT, WANTED, "fp32", "h") is None
    assert _stale_results({**CURRENT, **changed}, WANTED, "fp32", "h") == reason
    (tmp_path / "knn.json").write_text(json.dumps({**CURRENT, **changed}))
    args = argparse.Namespace(eval="knn", eval_precision="fp32")
    assert recorded_scores(tmp_path, args, WANTED) == {}


def test_a_score_on_any_layer_eval_layer_takes_is_read_back(tmp_path):
    """--eval-layer g01 (parse_layer's g1) was evaluated and recorded, then read back as
    no layer at all: every rerun evaluated the cell again."""
    import argparse

    from simclr.sweep_command import recorded_scores

    (tmp_path / "knn.json").write_text(json.dumps({**CURRENT, "source": {"layer": "g01"}}))
    args = argparse.Namespace(eval="knn", eval_precision="fp32")
    assert list(recorded_scores(tmp_path, args, WANTED).values()) == [0.5]


def test_a_results_file_nested_too_deep_is_unreadable_not_a_traceback(tmp_path):
    import argparse

    from simclr.sweep_command import _stale_evaluation, recorded_scores

    (tmp_path / "knn.json").write_text("[" * 100000 + "]" * 100000)
    args = argparse.Namespace(eval="knn", eval_precision="fp32")
    assert recorded_scores(tmp_path, args, WANTED) == {}
    assert _stale_evaluation(tmp_path / "knn.json", WANTED, "fp32") == "is unreadable"


@pytest.mark.parametrize("layer", ["\x1b[2J", "g0", "x", "g²", ""])
def test_a_score_on_record_of_no_layer_simclr_names_is_no_column(tmp_path, layer):
    """A received cell's knn.previous-K.json scored on a 'layer' no evaluation names
    (text a terminal acts on, above all) gives the table no column of its own."""
    import argparse

    from simclr.sweep_command import recorded_scores

    (tmp_path / "knn.json").write_text(json.dumps(CURRENT))
    (tmp_path / "knn.previous-1.json").write_text(json.dumps(
        {**CURRENT, "top1": 0.7, "source": {"layer": layer}}))
    args = argparse.Namespace(eval="knn", eval_precision="fp32")
    assert recorded_scores(tmp_path, args, WANTED) == {"knn_top1": 0.5}


def test_a_sweep_of_no_axis_is_refused(tmp_path, capsys):
    """Neither --set nor --pairs: no grid, refused before anything (the digits demo's
    one cell) trains or is written."""
    code = main(["sweep", *TINY_DIGITS, "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "nothing to sweep: give --set SETTING=V1,V2 and/or --pairs OPS" in err
    assert not (tmp_path / "sw").exists()


def test_a_supervised_runs_config_without_data_is_refused(tmp_path, image_folder, capsys):
    """A supervised run's config.yaml records its folders under ``folders``, which a
    pretraining skips: its cells would have trained on the digits demo instead (with
    --data they train on it: its settings serve)."""
    config = tmp_path / "config.yaml"
    config.write_text("folders: {train: /data/train}\n")
    argv = ["sweep", "--set", "seed=0,1", "--eval", "none", *TINY_DIGITS[:-2],
            "--config", str(config), "--out", str(tmp_path / "sw")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"--config {config} is a supervised run's (it trained on /data/train)" in err
    assert not (tmp_path / "sw").exists()
    assert main([*argv, "--data", str(image_folder), "--print-config"]) == 0
    assert f"path: {image_folder}" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--eval-layer", "z"], "--eval-layer: unused with --eval none; drop it or choose "
                            "--eval knn or linear"),
    (["--eval-protocol", "sgd"], "--eval-protocol sgd: linear evaluation's; --eval is none"),
    (["--eval-device", "cpu", "--eval-precision", "fp32", "--eval-workers", "0",
      "--eval-cache-dir", "c"], "--eval-device, --eval-precision, --eval-workers, "
                                "--eval-cache-dir: unused with --eval none"),
])
def test_evaluation_flags_with_eval_none_are_refused(tmp_path, capsys, flags, message):
    """--eval none scores no cell: an evaluation's layer or protocol would be unused, and
    a forgotten --eval look measured."""
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--eval", "none",
                 *TINY_DIGITS[:-2], *flags, "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert message in err and not (tmp_path / "sw").exists()


@pytest.mark.parametrize("flags, message", [
    (["--eval-device", "bogus"], "--eval-device: unknown device 'bogus'"),
    (["--eval-device", "cpu", "--eval-precision", "fp16"], "--eval-precision fp16 needs a GPU"),
])
def test_an_unusable_evaluation_device_or_precision_is_refused_before_any_cell_trains(
        tmp_path, capsys, flags, message):
    """Scored on the digits' hold-out (no folder opened on the device first), a cell's
    evaluation device and precision are still checked before it trains."""
    code = main(["sweep", "--set", "temperature=0.2,0.5", *TINY_DIGITS[:-2], *flags,
                 "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "sw").exists()


def test_a_cell_stopped_at_its_last_step_exits_as_a_preemption(tmp_path, image_folder,
                                                                monkeypatch, capsys):
    """A signal at a cell's last step: its run finished, the sweep stopped; the command
    exits 75 (``train.EXIT_PREEMPTED``), as for a cell stopped mid-training, so that a
    retry loop around it runs it again."""
    from simclr import sweep as sweep_module
    from simclr import train

    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False: {
        "status": "finished", "signal": "SIGTERM", "steps": 6, "epochs": 2.0,
        "elapsed_s": 1.0})
    monkeypatch.setattr(sweep_module, "_finished", lambda run_dir: None)
    assert main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--batch-size", "8", "--eval", "none", "--out", str(tmp_path / "sw")]) == \
        train.EXIT_PREEMPTED
    assert "sweep stopped by a signal; the same command continues it" in \
        capsys.readouterr().err


def test_a_score_on_record_is_current_only_for_its_own_layer():
    """A perfect score (top-1 1.0) is a score like any other; a score of z is no score
    of h (Sec. 4.2 compares them): h is evaluated again."""
    from simclr.sweep_command import _stale_results

    assert _stale_results({**CURRENT, "top1": 1.0}, WANTED, "fp32", "h") is None
    z = {**CURRENT, "source": {"layer": "z"}}
    assert _stale_results(z, WANTED, "fp32", "h") == "was computed on z, not h"
    assert _stale_results(z, WANTED, "fp32", "z") is None


def test_the_h_column_comes_first_whatever_the_other_layers(tmp_path):
    """The table's columns of a cell's scores: h's (the paper's) first, then the other
    layers' (g1 sorts before h by name: it is still second)."""
    import argparse

    from simclr.sweep_command import recorded_scores

    (tmp_path / "knn.json").write_text(json.dumps(CURRENT))
    (tmp_path / "knn.previous-1.json").write_text(json.dumps(
        {**CURRENT, "top1": 0.7, "source": {"layer": "g1"}}))
    args = argparse.Namespace(eval="knn", eval_precision="fp32")
    assert list(recorded_scores(tmp_path, args, WANTED).items()) == \
        [("knn_top1", 0.5), ("knn_g1_top1", 0.7)]


def test_the_sgd_protocols_training_folder_is_stored_for_its_augmented_views(tmp_path):
    """--eval-protocol sgd trains on random crops of each --eval-train picture, as
    `simclr linear-eval --protocol sgd` does: the folder is stored whole, not as the
    evaluation transform's central square (the test folder, only ever evaluated, is)."""
    import argparse

    import numpy as np
    from PIL import Image

    from simclr.decode import is_eval_store
    from simclr.sweep_command import _eval_sources

    rng = np.random.default_rng(0)
    for c in range(2):  # (40 x 24 pictures: an evaluation would keep their centre only)
        (tmp_path / "wide" / f"class_{c}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(
                tmp_path / "wide" / f"class_{c}" / f"{i}.png")
    folder = str(tmp_path / "wide")
    args = argparse.Namespace(eval_train=folder, eval_test=folder, workers_eval=0,
                              eval_cache_dir=str(tmp_path / "cache"), config=None)
    for augmented in (True, False):
        train, test = _eval_sources(args, 16, augmented=augmented)
        assert is_eval_store(train.store) is not augmented and is_eval_store(test.store)


def test_the_evaluation_folders_are_read_with_the_cells_data_settings(tmp_path, image_folder,
                                                                    capsys, monkeypatch):
    """`--max-pixels N` reached the evaluations as the flag's text, compared with pixel
    counts: every --eval-train image 'could not be read' ('>' between int and str); and a
    --config file's cache folder and limit were not theirs. They are the cells' now."""
    from PIL import Image

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    cached = tmp_path / "c0.yaml"
    cached.write_text(f"data:\n  cache_dir: {tmp_path / 'cache'}\n")
    argv = ["sweep", "--set", "temperature=0.2", *TINY_DIGITS, "--batch-size", "8",
            "--data", str(image_folder), "--eval-train", str(image_folder),
            "--eval-test", str(image_folder), "--eval-workers", "0"]
    assert main([*argv, "--config", str(cached), "--max-pixels", "1000000",
                 "--out", str(tmp_path / "sw")]) == 0
    knn = json.loads((tmp_path / "sw/temperature=0.2/knn.json").read_text())
    assert knn["num_test"] == 24
    assert list((tmp_path / "cache").glob("*.npy"))  # (the cells' and the evaluations')
    assert not (tmp_path / "home/.cache/simclr").exists()  # (the default folder: unused)
    capsys.readouterr()
    side = Image.open(next(image_folder.rglob("*.png"))).size[0]  # (all alike)
    limited = tmp_path / "c1.yaml"
    limited.write_text(f"data:\n  max_pixels: {side * side - 1}\n")
    for limit in (["--max-pixels", str(side * side - 1)], ["--config", str(limited)]):
        assert main([*argv, *limit, "--out", str(tmp_path / "sw2")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("simclr sweep: error: --eval-train: none of the 24 images") and \
            f"pixels exceeds the limit of {side * side - 1} " in err, err


def test_the_evaluation_folders_are_read_as_the_cell_reads_its_own(tmp_path, image_folder):
    """A cell's --eval folders are read with its data settings as this command gives them
    (--cache, --strict, --decoder, --max-pixels, --cache-dir, --data-root), as its kNN
    monitor reads its own; --eval-workers and --eval-cache-dir where given. --cache off
    still cached them, on left them uncached, --decoder pil decoded with nvJPEG."""
    import argparse

    from simclr.config import DataConfig
    from simclr.sweep_command import _eval_sources, _scoring_data

    folder = str(image_folder)
    cell = DataConfig(cache="off", strict=True, decoder="device", max_pixels=10 ** 6,
                      cache_dir=str(tmp_path / "cells"), path="elsewhere", workers=3,
                      root=str(tmp_path / "sets"), download=True, load_size=40)
    for eval_cache in (None, str(tmp_path / "eval")):
        args = argparse.Namespace(eval_train=folder, eval_test=folder, workers_eval=0,
                                  eval_cache_dir=eval_cache)
        read = _scoring_data(args, cell)
        assert (read.root, read.download, read.path, read.load_size) == (
            str(tmp_path / "sets"), True, None, None)
        assert read.cache_dir == (eval_cache or str(tmp_path / "cells"))
        for source in _eval_sources(args, 16, augmented=False, data=cell):
            assert (source.cached, source.decoder, source.max_pixels, source.workers) == \
                (False, "device", 10 ** 6, 0)
    args.eval_cache_dir = None
    for source in _eval_sources(args, 16, augmented=False, data=DataConfig(cache="on")):
        assert source.cached and source.decoder == "auto"
    assert list((tmp_path / "cache").glob("*.npy")) == []  # (the cells': none read there)


def test_a_bad_evaluation_image_of_a_strict_sweep_is_named_before_any_cell_trains(
        tmp_path, image_folder, capsys):
    """--strict reaches the --eval folders: their images are all decoded before the first
    cell trains (a bad one stopped the sweep after it had, and a rerun without --strict
    was refused as a cell of other settings); without it the scores skip the file."""
    import shutil

    scored = shutil.copytree(image_folder, tmp_path / "scored")  # (the cells' data: sound)
    (scored / "class_0" / "bad.png").write_bytes(b"not an image")
    argv = ["sweep", "--set", "temperature=0.2", *tiny_cell(tmp_path, image_folder),
            "--eval-train", str(scored), "--eval-test", str(scored)]
    assert main([*argv, "--strict", "--batch-size", "64"]) == 2  # (said before decoding)
    assert "--batch-size 64 is larger than" in capsys.readouterr().err
    assert main([*argv, "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simclr sweep: error: --strict: bad image ") and "bad.png" in err
    assert not (tmp_path / "sw/temperature=0.2").exists()
    assert main(argv) == 0
    assert json.loads((tmp_path / "sw/temperature=0.2/knn.json").read_text())["num_test"] == 24


def test_the_evaluation_folders_data_settings_act_whatever_the_cells_train_on(
        tmp_path, image_folder, capsys):
    """--strict (or --max-pixels, --decoder...) reads the --eval folders too: with the
    cells training on the digits it was refused as having no effect in any cell."""
    argv = ["sweep", "--set", "temperature=0.2,0.5", *TINY_DIGITS, "--strict",
            "--out", str(tmp_path / "sw"), "--print-config"]
    assert main([*argv, "--eval-train", str(image_folder), "--eval-test",
                 str(image_folder)]) == 0
    assert main(argv) == 2  # (scored on the digits' hold-out: nothing reads a folder)
    assert "--strict has no effect in any cell" in capsys.readouterr().err
    # ... but the scoring reads them with none of the cells' storage or augmentation
    for flags in (["--set", "store=center,full"], ["--load-size", "40"]):
        assert main(["sweep", "--set", "temperature=0.2,0.5", *TINY_DIGITS, *flags,
                     "--out", str(tmp_path / "sw"), "--print-config", "--eval-train",
                     str(image_folder), "--eval-test", str(image_folder)]) == 2
        assert "has no effect in any cell" in capsys.readouterr().err


def test_an_evaluation_cache_folder_the_cells_never_cache_into_is_refused(tmp_path,
                                                                          image_folder, capsys):
    cell = tiny_cell(tmp_path, image_folder)
    at = cell.index("--cache-dir")  # (refused under --cache off for the cells' own data)
    argv = ["sweep", "--set", "temperature=0.2", *cell[:at], *cell[at + 2:],
            "--eval-train", str(image_folder), "--eval-test", str(image_folder),
            "--eval-cache-dir", str(tmp_path / "ec")]
    for printed in ([], ["--print-config"]):  # (--print-config refuses what the run would)
        assert main([*argv, "--cache", "off", *printed]) == 2
        assert capsys.readouterr().err == ("simclr sweep: error: --eval-cache-dir: unused: "
                                           "the cells read the --eval folders as their own, "
                                           "with --cache off; drop it or give --cache auto "
                                           "or on\n")
    assert not (tmp_path / "sw").exists()
    assert main([*argv, "--cache", "on", "--print-config"]) == 0
    assert "--- # cell temperature=0.2" in capsys.readouterr().out


def test_a_sweep_scored_on_the_digits_keeps_its_test_digits_out_of_the_training_split():
    """--eval-train digits --eval-test digits: the kNN memory held all 1797 digits, the
    597 queries among them (a top-1 of 47% against 40% held out), unlike `simclr knn`."""
    import argparse

    from simclr.named_data import digits_split
    from simclr.sweep_command import _eval_data, _eval_sources

    args = argparse.Namespace(eval_train="digits", eval_test="digits", workers_eval=0,
                              eval_cache_dir=None, eval_protocol="lbfgs")
    # (recorded as the demo's split: a score of the whole set on record is stale)
    assert {k: _eval_data(args)[k] for k in ("train", "test")} == {
        "train": "digits[train]", "test": "digits[test]"}
    for augmented in (False, True):
        train, test = _eval_sources(args, 8, augmented=augmented)
        held_out = digits_split()
        assert (train.num_images, test.num_images) == (1200, 597)
        assert (train.labels == held_out[0].labels).all()
        assert (test.labels == held_out[1].labels).all()


def test_a_rerun_sweep_scores_its_cells_with_the_cache_folder_it_is_given(tmp_path,
                                                                           image_folder):
    """--cache-dir, as --decoder, may differ on a rerun (the cells are reused): the
    scoring read the --eval folders into the cache folder the cell was trained with."""
    argv = ["sweep", "--set", "temperature=0.2", *tiny_cell(tmp_path, image_folder),
            "--eval-train", str(image_folder), "--eval-test", str(image_folder)]
    assert main(argv) == 0
    assert main([*argv, "--eval-layer", "z", "--cache-dir", str(tmp_path / "new")]) == 0
    assert list((tmp_path / "new").rglob("*.npy"))  # (the evaluation's, stored there)


def test_a_config_file_valid_with_the_sweeps_flags_is_not_checked_alone(tmp_path,
                                                                        image_folder):
    """The evaluation folders' settings were read by building the --config file alone
    (no preset, no other flag): a load_size below the default 224-px view, or knn_train
    with --knn-test given as a flag, refused a sweep `simclr pretrain` runs."""
    (tmp_path / "c.yaml").write_text(f"data:\n  load_size: 20\nknn_train: {image_folder}\n")
    assert main(["sweep", "--set", "temperature=0.2", *tiny_cell(tmp_path, image_folder),
                 "--config", str(tmp_path / "c.yaml"), "--knn-test", str(image_folder),
                 "--eval-train", str(image_folder), "--eval-test", str(image_folder)]) == 0
    assert json.loads((tmp_path / "sw/temperature=0.2/knn.json").read_text())["num_test"] == 24


def test_a_cell_saved_before_channels_last_existed_is_scored_in_channels_last(
        tmp_path, image_folder):
    """A cell whose checkpoint predates the channels_last setting trained in it (then the
    only layout): its evaluation runs in channels_last too, as the setting's default."""
    import torch

    flags = ["sweep", "--set", "temperature=0.5", *tiny_cell(tmp_path, image_folder),
             "--eval-train", str(image_folder), "--eval-test", str(image_folder)]
    assert main([*flags, "--no-channels-last"]) == 0
    cell = tmp_path / "sw/temperature=0.5"
    ckpt = torch.load(cell / "checkpoints/last.pt", weights_only=False)
    del ckpt["config"]["channels_last"]
    torch.save(ckpt, cell / "checkpoints/last.pt")
    saved = cell / "config.yaml"  # (as that older simclr wrote it)
    saved.write_text("".join(line for line in saved.read_text().splitlines(keepends=True)
                             if not line.startswith("channels_last:")))
    (cell / "knn.json").unlink()
    assert main(flags) == 0
    assert json.loads((cell / "knn.json").read_text())["channels_last"] is True


def test_a_cell_that_takes_over_an_earlier_run_is_scored_with_its_own_data_settings(
        tmp_path, image_folder, monkeypatch, capsys):
    """temperature=0.20 reuses the run in temperature=0.2: its --eval folders are read with
    its --cache-dir and --decoder, not the defaults (its settings were looked up by the
    folder it had before it took the run over)."""
    argv = ["sweep", *tiny_cell(tmp_path, image_folder), "--decoder", "pil"]
    untrained = argv[:argv.index("--eval")]  # (its --eval flags: unused with --eval none)
    assert main([*untrained, "--out", str(tmp_path / "sw"), "--decoder", "pil", "--eval",
                 "none", "--set", "temperature=0.2"]) == 0
    read = []
    monkeypatch.setattr("simclr.sweep_command.evaluate_run",
                        lambda run_dir, args, wanted, data: read.append((run_dir.name, data))
                        or {"knn_top1": 0.5})
    assert main([*argv, "--set", "temperature=0.20", "--eval-train", str(image_folder),
                 "--eval-test", str(image_folder)]) == 0
    assert "cell temperature=0.20 is the run in temperature=0.2" in capsys.readouterr().err
    [(name, data)] = read
    assert (name, data.cache_dir, data.decoder) == ("temperature=0.2", str(tmp_path / "cache"),
                                                    "pil")


def test_evaluation_photos_past_the_pixel_limit_as_scored_are_refused_before_training(
        tmp_path, image_folder, capsys):
    """100-px JPEGs under --max-pixels 5000 fit when decoded at 1/8 (the check's 13 px),
    not at the 72 px the scoring of 16-px views decodes them at: the check decodes at the
    scoring's size now (the cell trained, then its scoring failed)."""
    from tests.conftest import make_image_folder

    photos = str(make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg"))
    argv = ["sweep", "--set", "temperature=0.2", *tiny_cell(tmp_path, image_folder),
            "--eval-train", photos, "--eval-test", photos, "--max-pixels", "5000"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("simclr sweep: error: --eval-train: none of the 4 images") and \
        "exceeds the limit of 5000" in err, err
    assert not (tmp_path / "sw/temperature=0.2").exists()


def test_the_eval_folders_are_checked_at_the_largest_size_any_cell_scores_them_at(
        tmp_path):
    """Cells of two image sizes: 100-px JPEGs fit --max-pixels 5000 decoded for the
    small cell's scoring (a reduced draft), not for the large one's: refused."""
    import argparse
    from types import SimpleNamespace

    from simclr.config import DataConfig
    from simclr.sweep_command import _check_eval_folders

    photos = str(make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg"))
    args = argparse.Namespace(eval="knn", eval_protocol="lbfgs", eval_train=photos,
                              eval_test=photos, eval_cache_dir=None, workers_eval=0)

    def cell(size):
        return SimpleNamespace(data=DataConfig(max_pixels=5000),
                               augment=SimpleNamespace(evaluation_size=lambda: size))

    _check_eval_folders(args, [cell(4)])
    with pytest.raises(SimCLRError, match="exceeds the limit of 5000"):
        _check_eval_folders(args, [cell(4), cell(16)])


def test_the_eval_folders_checks_read_as_every_cell_would(tmp_path, image_folder,
                                                          monkeypatch, capsys):
    """--pairs alone is a grid; the --eval folders are checked under the smallest
    --max-pixels of the cells, decoded strictly where any cell (not only the first) is
    --strict, --eval-cache-dir refused only where no cell caches, and read into it; a
    results file recording its folder's files is stale where none are listed now."""
    import argparse
    from types import SimpleNamespace

    from simclr import sweep_command
    from simclr.config import DataConfig
    from simclr.sweep_command import (
        _check_eval_folders,
        _decode_strictly,
        _scoring_data,
        _stale_results,
    )

    assert main(["sweep", "--pairs", "crop,color", "--eval", "none", "--print-config",
                 "--out", str(tmp_path / "sw")]) == 0
    assert "--- # cell " in capsys.readouterr().out
    args = argparse.Namespace(eval="knn", eval_protocol="lbfgs", eval_train=str(image_folder),
                              eval_test=str(image_folder), eval_cache_dir=str(tmp_path / "c"),
                              workers_eval=None)
    size = SimpleNamespace(evaluation_size=lambda: 16)
    cells = [SimpleNamespace(data=DataConfig(cache="off", max_pixels=100), augment=size),
             SimpleNamespace(data=DataConfig(strict=True), augment=size)]
    with pytest.raises(SimCLRError, match="--max-pixels"):
        _check_eval_folders(args, cells)
    assert _scoring_data(args, DataConfig()).cache_dir == str(tmp_path / "c")
    opened = []
    monkeypatch.setattr(sweep_command, "_eval_sources", lambda *a, **k: opened.append(a) or [])
    _decode_strictly(args, cells)
    assert len(opened) == 1
    cached = {"top1": 0.5, "evaluated_on": {"train": "t", "test": "v", "train_files": "3:ab"}}
    assert _stale_results(cached, {"train": "t", "test": "v"}, "auto", "h") == \
        "was computed when the train folder held 3 images (0 now)"
