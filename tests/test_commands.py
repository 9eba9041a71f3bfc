"""Tests for simclr.commands: the evaluation commands' own checks."""

from __future__ import annotations

import json

import pytest

from simclr.cli import main
from simclr.export import export_encoder
from tests.conftest import tiny_pretrained_run, unreadable_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_from_head_on_a_checkpoint_without_a_head_names_its_kind(tmp_path, capsys):
    train, test, cache = tiny_pretrained_run(tmp_path)
    export_encoder(tmp_path / "pre", tmp_path / "encoder.pt")
    capsys.readouterr()
    assert main(["finetune", "--checkpoint", str(tmp_path / "encoder.pt"), "--train",
                 str(train), "--test", str(test), "--from-head", "--epochs", "1",
                 "--cache-dir", cache, "--workers", "0", "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(this is an encoder one, without the projection " \
        "head); drop --from-head" in err, err
    assert not (tmp_path / "ft").exists()


def test_finetune_from_head_records_the_layer_it_reads(tmp_path, capsys):
    """--from-head: the classifier reads the head's first layer, g1, and finetune.json's
    source says so (it said h, the encoder's output); without it, h."""
    train, test, cache = tiny_pretrained_run(tmp_path)
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(train), "--test",
              str(test), "--epochs", "1", "--batch-size", "4", "--cache-dir", cache,
              "--workers", "0", "--precision", "fp32"]
    for flags, layer in ((["--from-head"], "g1"), ([], "h")):
        out = tmp_path / f"ft-{layer}"
        assert main(["finetune", *common, *flags, "--out", str(out)]) == 0
        assert json.loads((out / "finetune.json").read_text())["source"]["layer"] == layer


def test_evaluations_at_another_image_size_record_it_and_predict_at_it(tmp_path, capsys):
    """--image-size: kNN and the linear classifier at 24 px from an encoder trained at
    16; the results say 24, and predict uses the side its classifier was fitted at."""
    import json

    from simclr.checkpoint import load_checkpoint

    train, test, cache = tiny_pretrained_run(tmp_path)
    run = str(tmp_path / "pre")
    common = ["--checkpoint", run, "--train", str(train), "--test", str(test), "--cache-dir",
              cache, "--workers", "0", "--precision", "fp32", "--image-size", "24"]
    capsys.readouterr()
    assert main(["knn", *common, "--k", "3", "--out", str(tmp_path / "k")]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 24
    assert main(["linear-eval", *common, "--out", str(tmp_path / "lin")]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["image_size"] == 24
    assert main(["predict", "--checkpoint", str(tmp_path / "lin"), "--data", str(test),
                 "--out", str(tmp_path / "p.csv"), "--cache-dir", cache, "--workers", "0",
                 "--precision", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(measured["top1"])
    classifier = load_checkpoint(tmp_path / "lin" / "checkpoints" / "linear.pt")
    assert classifier["config"]["augment"]["size"] == 24  # what predict resizes to
    assert classifier["config"]["model"]["cifar_stem"] is True  # the stem trained at 16
    with pytest.raises(SystemExit) as exited:
        main(["knn", *common[:-1], "4", "--out", str(tmp_path / "k4")])
    assert exited.value.code == 2
    assert "argument --image-size: must be at least 8, got 4" in capsys.readouterr().err


def test_a_classifiers_provenance_names_its_encoders_pretraining_step(tmp_path, capsys):
    """A linear classifier's own step is 0 (L-BFGS): embed's and an export's provenance
    said "step 0" of an encoder of step 2; a fine-tuned one adds its own steps."""
    import json

    import numpy as np

    from simclr.checkpoint import load_checkpoint, save_checkpoint
    from simclr.export import export

    train, test, cache = tiny_pretrained_run(tmp_path)
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(train), "--test",
              str(test), "--cache-dir", cache, "--workers", "0", "--precision", "fp32"]
    assert main(["linear-eval", *common, "--out", str(tmp_path / "lin")]) == 0
    assert main(["finetune", *common, "--epochs", "1", "--labels-per-class", "4",
                 "--out", str(tmp_path / "ft")]) == 0

    def provenance(checkpoint):
        out = tmp_path / f"{checkpoint.name}.npz"
        assert main(["embed", "--checkpoint", str(checkpoint), "--data", str(test), "--out",
                     str(out), "--cache-dir", cache, "--workers", "0", "--overwrite"]) == 0
        with np.load(out) as saved:
            return str(saved["encoder"]).split(" ", 1)[1]

    assert provenance(tmp_path / "lin") == "step 2 layer h"
    assert provenance(tmp_path / "ft").startswith("step 2 fine-tuned ")
    # fine-tuned again from the fine-tuned one: still the pretraining's step 2
    assert main(["finetune", "--checkpoint", str(tmp_path / "ft"), *common[2:], "--epochs", "1",
                 "--labels-per-class", "4", "--out", str(tmp_path / "ft2")]) == 0
    assert provenance(tmp_path / "ft2").startswith("step 2 fine-tuned ")
    card = export(tmp_path / "lin", tmp_path / "lin.pt2", layer="logits")
    assert json.loads((tmp_path / "lin.pt2.json").read_text())["step"] == 2, card
    linear = tmp_path / "lin" / "checkpoints" / "linear.pt"
    older = load_checkpoint(linear)  # saved before the step was recorded: read beside it
    del older["encoder_step"]
    save_checkpoint(older, linear.parent, "linear.pt", None)
    assert provenance(tmp_path / "lin") == "step 2 layer h"


def test_a_test_folder_no_image_of_which_decodes_is_refused_before_training(tmp_path, capsys):
    """finetune (and supervised) read --test after the training: a folder of 70 files
    none of which decodes (more than a batch size's check opens) is named at the start."""
    train, _, cache = tiny_pretrained_run(tmp_path)
    broken = unreadable_folder(tmp_path / "broken", 35)
    capsys.readouterr()
    for command in (["finetune", "--checkpoint", str(tmp_path / "pre"), "--epochs", "1"],
                    ["supervised", "--arch", "resnet18", "--width", "0.125", "--epochs", "1",
                     "--batch-size", "8", "--image-size", "16"]):
        out = tmp_path / command[0]
        assert main([*command, "--train", str(train), "--test", str(broken), "--cache-dir",
                     cache, "--workers", "0", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and \
            f"--test: none of the 70 images in {broken} could be read" in err, err
        assert not out.exists()


def test_a_commands_json_on_stdout_is_standard_json_even_with_a_nan(capsys):
    """A pretraining whose last logged window held a skipped step reports a NaN loss:
    printed as null (a bare NaN is refused by strict JSON readers)."""
    from simclr.commands import report

    assert report({"status": "finished", "loss": float("nan"), "contrast_acc": 0.5}) == 0
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=pytest.fail) == {
        "status": "finished", "loss": None, "contrast_acc": 0.5}


def test_an_evaluation_lists_each_folder_once(tmp_path, monkeypatch, capsys):
    """The folders are listed once, for the checks before the checkpoint is read, and
    opened from that listing (a folder of 200k files takes seconds to list): --train
    and --test each once, and --train once where --test-fraction splits it."""
    import simclr.data
    import simclr.folders

    train, test, cache = tiny_pretrained_run(tmp_path)
    listed: list[str] = []
    scan = simclr.folders.scan_folder

    def counted(path, unlabeled=False):
        listed.append(str(path))
        return scan(path, unlabeled)

    monkeypatch.setattr(simclr.folders, "scan_folder", counted)
    monkeypatch.setattr(simclr.data, "scan_folder", counted)
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(train), "--cache-dir",
              cache, "--workers", "0", "--precision", "fp32", "--batch-size", "4"]
    assert main(["knn", *common, "--test", str(test), "--k", "3",
                 "--out", str(tmp_path / "k")]) == 0
    assert sorted(listed) == sorted([str(train), str(test)])
    for command, flags in (("knn", ["--k", "3"]), ("finetune", ["--epochs", "1"])):
        listed.clear()
        assert main([command, *common, "--test-fraction", "0.5", *flags,
                     "--out", str(tmp_path / command)]) == 0
        assert listed == [str(train)], command
    capsys.readouterr()


def test_a_test_fraction_that_holds_out_no_image_is_refused(tmp_path, capsys):
    """One image per class: --test-fraction holds none of them out (each class stays
    whole in the training part), so there would be no test set: refused in one line."""
    from tests.conftest import make_image_folder

    _, _, cache = tiny_pretrained_run(tmp_path)
    single = make_image_folder(tmp_path / "single", classes=3, per_class=1, side=16)
    capsys.readouterr()
    assert main(["knn", "--checkpoint", str(tmp_path / "pre"), "--train", str(single),
                 "--test-fraction", "0.5", "--k", "1", "--cache-dir", cache, "--workers", "0",
                 "--out", str(tmp_path / "knn")]) == 2
    err = capsys.readouterr().err
    assert err == (f"simclr knn: error: --test-fraction 0.5 holds out no image (every "
                   f"class of {single} has a single image); give --test\n"), err
    assert not (tmp_path / "knn" / "knn.json").exists()


def test_a_held_out_test_set_is_recorded_with_its_fraction_and_seed(tmp_path, capsys):
    """Without --test, the results' source names what the test set was: the folder it
    was held out of, the fraction and the seed that drew it (another seed: other images)."""
    train, _, cache = tiny_pretrained_run(tmp_path)
    assert main(["knn", "--checkpoint", str(tmp_path / "pre"), "--train", str(train),
                 "--test-fraction", "0.25", "--seed", "7", "--k", "1", "--cache-dir", cache,
                 "--workers", "0", "--out", str(tmp_path / "knn")]) == 0
    source = json.loads((tmp_path / "knn" / "knn.json").read_text())["source"]
    assert source["test"] == {"held_out_of": str(train.resolve()), "fraction": 0.25,
                              "seed": 7}
