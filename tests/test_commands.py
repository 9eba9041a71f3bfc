"""Tests for simclr.commands: the evaluation commands' own checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simclr.cli import main
from simclr.export import export_encoder
from tests.conftest import stop_at, tiny_pretrained_run, unreadable_folder

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
    source says so (it said h, the encoder's output); without it, h. (--weight-decay
    given there reaches the fine-tuning.)"""
    train, test, cache = tiny_pretrained_run(tmp_path)
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(train), "--test",
              str(test), "--epochs", "1", "--batch-size", "4", "--cache-dir", cache,
              "--workers", "0", "--precision", "fp32"]
    for flags, layer in ((["--from-head", "--weight-decay", "0.01"], "g1"), ([], "h")):
        out = tmp_path / f"ft-{layer}"
        assert main(["finetune", *common, *flags, "--out", str(out)]) == 0
        result = json.loads((out / "finetune.json").read_text())
        assert result["source"]["layer"] == layer
        # (--weight-decay reaches the fine-tuning: its results record it)
        assert result["weight_decay"] == (0.01 if flags else 0.0)


def test_a_run_trained_with_eval_size_is_evaluated_at_it(tmp_path, capsys, monkeypatch):
    """--eval-size 32 on 40-px views: the online kNN monitor, knn, linear-eval,
    transform-probe and info read 32 px without --image-size; the linear classifier
    keeps the ImageNet stem the encoder was trained with (32 px alone would pick the
    CIFAR stem), and predict reads its side from it; --image-size still overrides."""
    import simclr.features
    from simclr.checkpoint_read import load_checkpoint
    from tests.conftest import make_image_folder

    sides, extract = [], simclr.features.extract_features

    def recorded(encoder, images, image_size, *args, **kwargs):  # the monitor's sides
        sides.append(image_size)
        return extract(encoder, images, image_size, *args, **kwargs)

    monkeypatch.setattr(simclr.features, "extract_features", recorded)
    train = make_image_folder(tmp_path / "train", classes=2, per_class=8, side=48)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1, side=48)
    cache, run = str(tmp_path / "cache"), str(tmp_path / "pre")
    fast = ["--workers", "0", "--cache-dir", cache, "--precision", "fp32"]
    assert main(["pretrain", "--data", str(train), "--out", run, "--arch", "resnet18",
                 "--width", "0.125", "--image-size", "40", "--eval-size", "32",
                 "--batch-size", "8", "--max-steps", "2", "--no-progress", "--knn-train",
                 str(train), "--knn-test", str(test), *fast]) == 0
    assert sides == [32, 32]
    common = ["--checkpoint", run, "--train", str(train), "--test", str(test), *fast]
    capsys.readouterr()
    assert main(["knn", *common, "--k", "3", "--out", str(tmp_path / "k")]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 32
    assert main(["linear-eval", *common, "--out", str(tmp_path / "lin")]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["image_size"] == 32
    classifier = load_checkpoint(tmp_path / "lin" / "checkpoints" / "linear.pt")
    # (both sides: it reads 32 px; the encoder it holds was trained at 40)
    assert (classifier["config"]["augment"]["size"],
            classifier["config"]["augment"]["eval_size"]) == (40, 32)
    assert classifier["config"]["model"]["cifar_stem"] is False
    assert main(["predict", "--checkpoint", str(tmp_path / "lin"), "--data", str(test),
                 "--out", str(tmp_path / "p.csv"), *fast]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(measured["top1"])
    assert main(["knn", *common, "--k", "3", "--image-size", "24", "--out",
                 str(tmp_path / "k24")]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 24
    assert main(["transform-probe", *common, "--task", "gray", "--epochs", "1", "--out",
                 str(tmp_path / "probe")]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 32  # its views' side too
    assert main(["info", run]) == 0
    assert "40 px (evaluated at 32)" in capsys.readouterr().out


def test_a_checkpoint_pruned_after_it_was_picked_is_picked_again(tmp_path, capsys,
                                                                  monkeypatch):
    """An evaluation of a run still saving: the file picked from the folder is replaced
    by a newer one (--keep-checkpoints prunes it) before it is read; the newer one is
    evaluated, and its result names it."""
    import simclr.commands

    train, test, cache = tiny_pretrained_run(tmp_path)
    run = tmp_path / "pre"
    pick = simclr.commands.checkpoint_file

    def picked_then_pruned(spec):
        found = pick(spec)
        if found.name == "last.pt":  # a training saves step 3 and prunes the one picked
            found.rename(found.with_name("ckpt-00000003.pt"))
        return found

    monkeypatch.setattr(simclr.commands, "checkpoint_file", picked_then_pruned)
    capsys.readouterr()
    assert main(["knn", "--checkpoint", str(run), "--train", str(train), "--test", str(test),
                 "--cache-dir", cache, "--workers", "0", "--precision", "fp32", "--k",
                 "3"]) == 0
    source = json.loads(capsys.readouterr().out)["source"]
    assert source["checkpoint"] == str(run / "checkpoints" / "ckpt-00000003.pt")


def test_evaluations_at_another_image_size_record_it_and_predict_at_it(tmp_path, capsys):
    """--image-size: kNN and the linear classifier at 24 px from an encoder trained at
    16; the results say 24, and predict uses the side its classifier was fitted at."""
    import json

    from simclr.checkpoint_read import load_checkpoint

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
    # what predict resizes to: its evaluation side; the trained side is kept beside it
    assert (classifier["config"]["augment"]["eval_size"],
            classifier["config"]["augment"]["size"]) == (24, 16)
    assert classifier["config"]["model"]["cifar_stem"] is True  # the stem trained at 16
    status = main(["knn", *common[:-1], "4", "--out", str(tmp_path / "k4")])
    assert status == 2
    assert "argument --image-size: must be at least 8, got 4" in capsys.readouterr().err


def test_a_classifiers_provenance_names_its_encoders_pretraining_step(tmp_path, capsys):
    """A linear classifier's own step is 0 (L-BFGS): embed's and an export's provenance
    said "step 0" of an encoder of step 2; a fine-tuned one adds its own steps."""
    import json

    import numpy as np

    from simclr.checkpoint import save_checkpoint
    from simclr.checkpoint_read import load_checkpoint
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
    results = json.loads((tmp_path / "knn" / "knn.json").read_text())
    assert results["source"]["test"] == {"held_out_of": str(train.resolve()),
                                         "fraction": 0.25, "seed": 7}
    # what the data were: the folder, and the split of it that was the test set
    assert results["data"] == {"train": str(train.resolve()), "test": results["source"]["test"]}


def test_results_name_their_data_folders_and_the_simclr_that_computed_them(
        tmp_path, capsys, monkeypatch):
    """Each evaluation's results name --train and --test (absolute, from any working
    directory) and the simclr version, git SHA and command line, as a run's config.yaml
    does: they named the checkpoint alone, not what it was evaluated on."""
    from simclr.runtime import git_state

    tiny_pretrained_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = ["--checkpoint", "pre", "--train", "train", "--test", "test", "--cache-dir",
              "cache", "--workers", "0", "--precision", "fp32"]
    for command, flags, name in (("knn", ["--k", "1"], "knn.json"),
                                 ("linear-eval", [], "linear_eval.json"),
                                 ("transform-probe", ["--task", "rotation", "--epochs", "1"],
                                  "transform_probe.json")):
        argv = [command, *common, *flags, "--out", command]
        assert main(argv) == 0
        results = json.loads((tmp_path / command / name).read_text())
        assert results["data"] == {"train": str(tmp_path / "train"),
                                   "test": str(tmp_path / "test")}, command
        # (transform-probe's left them out: a damaged folder's run looked complete)
        assert results["skipped_images"] == {"train": 0, "test": 0}, command
        record = results["provenance"]
        assert record["argv"] == ["simclr", *argv] and record["git_sha"] == git_state()[0]
        assert record["simclr"] and record["torch"]
    capsys.readouterr()
    assert main(["info", "knn"]) == 0  # (an evaluation's folder reads as it did)
    assert capsys.readouterr().out.startswith("knn: results of kNN\n  knn.json: kNN, top-1 ")


def test_classes_too_small_to_give_a_test_image_are_said_and_recorded(tmp_path, capsys):
    """One class of many images beside classes of one: --test-fraction tests the large
    class alone (the single images stay in training), and the top-1 of 100% read as
    that of every class, without a word."""
    import shutil

    from tests.conftest import make_image_folder

    _, _, cache = tiny_pretrained_run(tmp_path)
    unbalanced = make_image_folder(tmp_path / "unbal", classes=4, per_class=1, side=16)
    many = make_image_folder(tmp_path / "many", classes=1, per_class=20, side=16, seed=2)
    for k, picture in enumerate(sorted((many / "class_0").iterdir())):
        shutil.copy(picture, unbalanced / "class_0" / f"more{k}.png")
    capsys.readouterr()
    assert main(["knn", "--checkpoint", str(tmp_path / "pre"), "--train", str(unbalanced),
                 "--test-fraction", "0.1", "--k", "1", "--cache-dir", cache, "--workers",
                 "0", "--out", str(tmp_path / "knn")]) == 0
    err = capsys.readouterr().err
    assert ("note: --test-fraction 0.1: 3 of the 4 classes have no test image (too few "
            "images to hold one out); the top-1 is measured on the other 1") in err, err
    source = json.loads((tmp_path / "knn" / "knn.json").read_text())["source"]
    assert source["test"]["classes_without_test"] == 3


# ------------------------------------------------- gaps a mutation audit left open


def _probe_stub(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """run_transform_probe replaced by one that records what it is given: (model,
    train, test) per call, and returns no task (the command writes its results)."""
    import simclr.probe

    seen: list[tuple] = []

    def recorded(model, train, test, *args, **kwargs):
        seen.append((model, train, test))
        return {"tasks": {}}

    monkeypatch.setattr(simclr.probe, "run_transform_probe", recorded)
    return seen


def _wide_folder(root: Path, per_class: int = 4) -> Path:
    """Two classes of 40 x 24 pictures: not squares, so the evaluation transform would
    store only their central square, where the probe's crops need the whole picture."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


def test_the_probes_test_part_is_stored_for_augmentation_as_its_training_part(
        tmp_path, monkeypatch, capsys):
    """The probe draws its test views with the same crop and colour augmentation as its
    training views (from another seed): the test part, a --test folder or the part
    --test-fraction holds out, is stored as a training source stores the pictures,
    whole, not as the evaluation transform's central square."""
    import torch

    from simclr.config import DataConfig
    from simclr.data import open_source
    from tests.test_pretrained import pretrain_checkpoint

    seen = _probe_stub(monkeypatch)
    ckpt = tmp_path / "pre.pt"
    torch.save(pretrain_checkpoint(), ckpt)  # (16-px views)
    train, test = _wide_folder(tmp_path / "train"), _wide_folder(tmp_path / "test", 2)
    cache = str(tmp_path / "cache")
    common = ["transform-probe", "--checkpoint", str(ckpt), "--train", str(train),
              "--device", "cpu", "--precision", "fp32", "--cache-dir", cache, "--workers", "0"]
    for split in (["--test", str(test)], ["--test-fraction", "0.5"]):
        assert main([*common, *split, "--out", str(tmp_path / f"probe{len(seen)}")]) == 0
    capsys.readouterr()
    data = DataConfig(cache_dir=cache, workers=0)
    for (_, train_part, test_part), folder in zip(seen, (test, train), strict=True):
        augmented = open_source(str(folder), data, train=False, image_size=16,
                                evaluation=False, unlabeled=True)  # as for training
        assert test_part.store == train_part.store == augmented.store
        rows = [augmented.paths.index(p) for p in test_part.paths]
        assert len(rows) == 4  # the --test folder's 2 + 2, or 2 of each class's 4
        assert torch.equal(test_part.get_batch(range(len(rows))), augmented.get_batch(rows))


def test_finetunings_drawn_subset_counts_only_the_files_not_held_out(tmp_path, capsys):
    """--label-fraction with --test-fraction: the draw is a fraction of the training
    part alone. 12 + 2 images, half held out: 6 + 1 to train on, 7 images x 0.4 / 2
    classes = 1.4, one a class. Counted with the held-out files it would be 14 x 0.4 / 2
    = 2.8, three a class, more than the 2 images of class_1 (refused)."""
    import os

    import torch

    from simclr.folders import scan_folder
    from simclr.logistic import stratified_split
    from tests.conftest import make_image_folder
    from tests.test_pretrained import pretrain_checkpoint

    ckpt = tmp_path / "pre.pt"
    torch.save(pretrain_checkpoint(), ckpt)
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=12)
    for extra in sorted((folder / "class_1").iterdir())[2:]:
        extra.unlink()
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(ckpt), "--train", str(folder),
                 "--test-fraction", "0.5", "--label-fraction", "0.4", "--epochs", "1",
                 "--batch-size", "2", "--device", "cpu", "--precision", "fp32",
                 "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    result = json.loads((out / "finetune.json").read_text())
    assert (result["num_labeled"], result["num_test"]) == (2, 7)
    drawn = (out / "labeled_subset.txt").read_text().split()
    assert sorted(p.split("/")[0] for p in drawn) == ["class_0", "class_1"]
    listing = scan_folder(folder)
    _, held = stratified_split(listing.labels, 0.5, 0)  # (the seed's held-out files)
    held_names = {Path(os.path.relpath(listing.paths[i], folder)).as_posix() for i in held}
    assert len(held_names) == 7 and not held_names & set(drawn)


@pytest.mark.parametrize("command", ["knn", "linear-eval", "transform-probe"])
def test_random_init_draws_the_encoder_from_the_seed(command, tmp_path, monkeypatch, capsys):
    """--random-init: the architecture's initial weights drawn from --seed (0 unless
    given), so a baseline repeats; here its drawn weights (convolutions, linear layers)
    checked against the network simclr.models builds after torch.manual_seed(seed)."""
    import torch

    import simclr.evaluate
    import simclr.knn
    from simclr.models import build_model
    from simclr.settings import config_from_dict
    from tests.conftest import make_image_folder
    from tests.test_pretrained import pretrain_checkpoint

    given = []
    for module, name in ((simclr.knn, "run_knn"), (simclr.evaluate, "run_linear_eval")):
        monkeypatch.setattr(module, name, lambda encoder, *a, **k: given.append(encoder)
                            or {"status": "finished"})
    probed = _probe_stub(monkeypatch)
    saved = pretrain_checkpoint()
    torch.save(saved, tmp_path / "pre.pt")
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=2)
    for seed in ("3", None):
        flags = [] if seed is None else ["--seed", seed]
        torch.manual_seed(123)  # (the global stream as a caller may have left it)
        assert main([command, "--checkpoint", str(tmp_path / "pre.pt"), "--random-init",
                     "--train", str(folder), "--test", str(folder), *flags, "--device", "cpu",
                     "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
                     "--out", str(tmp_path / f"out{seed}")]) == 0
        torch.manual_seed(int(seed or 0))
        expected = build_model(config_from_dict(saved["config"]).model, 16)
        if command == "transform-probe":
            got, reference = probed[-1][0].state_dict(), expected.state_dict()
        else:
            got, reference = given[-1].state_dict(), expected.encoder.state_dict()
        drawn = [key for key, value in reference.items() if value.dim() > 1]  # (BN: constants)
        assert got.keys() == reference.keys() and len(drawn) >= 20  # resnet18: 20 convolutions
        for key in drawn:
            torch.testing.assert_close(got[key], reference[key], rtol=0, atol=0, msg=key)
    capsys.readouterr()


@pytest.mark.parametrize("command", ["knn", "linear-eval", "finetune", "transform-probe",
                                     "embed", "predict"])
def test_every_evaluation_takes_channels_last_on_and_off_as_pretraining_does(command):
    """Each command that runs an encoder has pretrain's --channels-last/--no-channels-last
    (on by default: the faster layout), and passes it on."""
    from simclr.cli import build_parser
    from simclr.commands import runtime_kwargs

    base = {"embed": ["--data", "d", "--out", "o.npz"],
            "predict": ["--data", "d", "--out", "o.csv"]}.get(
        command, ["--train", "t", "--test", "u", "--out", "o"])
    line = [command, "--checkpoint", "c", *base]
    parse = build_parser().parse_args
    assert parse(line).channels_last is True
    assert parse([*line, "--no-channels-last"]).channels_last is False
    assert runtime_kwargs(parse([*line, "--no-channels-last"]))["channels_last"] is False


@pytest.mark.parametrize("command", ["embed", "predict"])
def test_embed_and_predict_pass_channels_last_to_their_feature_pass(tmp_path, monkeypatch,
                                                                    command):
    """embed's and predict's features as the evaluations compute them: channels_last by
    default, NCHW with --no-channels-last."""
    import simclr.features

    train, test, cache = tiny_pretrained_run(tmp_path)
    checkpoint = str(tmp_path / "pre")
    if command == "predict":
        checkpoint = str(tmp_path / "lin")
        assert main(["linear-eval", "--checkpoint", str(tmp_path / "pre"), "--train",
                     str(train), "--test", str(test), "--out", checkpoint, "--cache-dir",
                     cache, "--workers", "0", "--precision", "fp32"]) == 0
    formats = []
    passes = simclr.features.indexed_features
    monkeypatch.setattr(simclr.features, "indexed_features", lambda *a, **k: (
        formats.append(k["channels_last"]), passes(*a, **k))[1])
    suffix = ".npz" if command == "embed" else ".csv"
    for i, flags in enumerate(([], ["--no-channels-last"])):
        assert main([command, "--checkpoint", checkpoint, "--data", str(test), "--out",
                     str(tmp_path / f"out{i}{suffix}"), "--cache-dir", cache, "--workers", "0",
                     "--precision", "fp32", *flags]) == 0
    assert formats == [True, False]


@pytest.mark.parametrize("augmented", [False, True])
def test_an_evaluation_on_the_digits_trains_on_none_of_its_test_digits(tmp_path, augmented):
    """`--train digits --test digits` (knn, linear-eval, finetune, the probe): the
    training split was all 1797 digits, the 597 test ones among them (a kNN memory
    holding each query: top-1 93.1% where the 1200 others give 91.5%); it is those 1200,
    the split the digits demo's report uses (``augmented``: the fine-tuning's views)."""
    import argparse

    import numpy as np

    from simclr.commands import open_folders
    from simclr.config import DataConfig
    from simclr.named_data import digits_split

    args = argparse.Namespace(train="digits", test="digits", workers=0,
                              cache_dir=str(tmp_path), max_pixels=DataConfig.max_pixels,
                              decoder="auto")
    train, test = open_folders(args, 32, augmented=augmented, augmented_test=augmented)
    for opened, split in zip((train, test), digits_split(), strict=True):
        every = np.arange(split.num_images)
        assert opened.num_images == split.num_images  # 1200 and 597
        assert (opened.get_batch(every) == split.get_batch(every)).all()
        assert (opened.labels == split.labels).all()


def test_the_digits_demos_report_scores_its_knn_on_the_chosen_device(monkeypatch):
    """The report after `simclr pretrain` on the digits ran its features on --device yet
    its kNN vote on knn_accuracy's own choice (the GPU when there is one, whatever
    --device said); it votes on the same device, as the monitor and `simclr knn` do."""
    import torch

    import simclr.commands
    import simclr.features
    import simclr.knn
    import simclr.runtime
    from simclr.config import Config

    devices, chosen = [], torch.device("meta")  # (no other call would pick it)
    monkeypatch.setattr(simclr.runtime, "resolve_device", lambda name, *a: chosen)
    monkeypatch.setattr(simclr.runtime, "resolve_precision", lambda name, dev: "fp32")
    monkeypatch.setattr(simclr.commands, "load_checkpoint", lambda path: {})
    monkeypatch.setattr(simclr.commands, "encoder_from_checkpoint",
                        lambda ckpt, random_init: (None, {"image_size": 16}))
    monkeypatch.setattr(simclr.features, "extract_features", lambda encoder, source, *a, **k:
                        (torch.zeros(source.num_images, 2), torch.as_tensor(source.labels)))
    monkeypatch.setattr(simclr.knn, "knn_accuracy", lambda *a, **k: (
                        devices.append(k.get("device")), 0.5)[1])
    report = simclr.commands.digits_knn_report("ckpt.pt", Config(device="cuda:1"))
    assert devices == [chosen, chosen]  # pretrained, then at init
    assert "pretrained: kNN top-1 50.0%" in report


def test_runs_an_earlier_simclr_started_on_all_the_digits_continue_on_them(
        tmp_path, monkeypatch, capsys):
    """An unfinished supervised baseline, fine-tuning and SGD linear evaluation on --train
    digits, saved by an earlier simclr, trained on all 1797 digits (the test ones among
    them): continued, they keep that training set, a note says so, where they were
    refused as another one ('the training folder now holds 1200 images'; 'other settings
    (subset: ...)', '(train: [1797, ...] saved, [1200, ...] now)')."""
    from functools import partial

    import simclr.commands
    import simclr.evaluate
    import simclr.finetune
    import simclr.supervised
    import simclr.supervised_command
    from simclr.data import open_source

    tiny_pretrained_run(tmp_path)
    fast = ["--epochs", "1", "--batch-size", "256", "--workers", "0", "--device", "cpu",
            "--precision", "fp32"]
    supervised = ["supervised", "--train", "digits", "--test", "digits", "--arch", "resnet18",
                  "--width", "0.125", "--image-size", "16", "--out", str(tmp_path / "sup"), *fast]
    finetune = ["finetune", "--checkpoint", str(tmp_path / "pre"), "--train", "digits",
                "--test", "digits", "--out", str(tmp_path / "ft"), *fast]
    linear = ["linear-eval", "--protocol", "sgd", *finetune[1:]]
    linear[linear.index(str(tmp_path / "ft"))] = str(tmp_path / "lin")
    # As the earlier simclr trained them: on all the digits, stopped after a step
    with monkeypatch.context() as patched:
        for opener in (simclr.commands, simclr.supervised_command):
            patched.setattr(opener, "open_source",
                            lambda *a, **k: open_source(*a, **{**k, "held_out": False}))
        for module, name in ((simclr.supervised, "run_supervised"),
                             (simclr.finetune, "run_finetune"),
                             (simclr.evaluate, "run_linear_eval")):
            patched.setattr(module, name, partial(getattr(module, name), on_step=stop_at(1)))
        assert main(supervised) == 75
        assert main(finetune) == 75
        assert main(linear) == 75
    capsys.readouterr()
    note = "keeps the training set it started with, all 1797 digits (new runs hold the 597 "
    assert main(["supervised", "--resume", str(tmp_path / "sup")]) == 0
    assert f"note: the supervised training {note}" in capsys.readouterr().err
    assert json.loads((tmp_path / "sup" / "supervised.json").read_text())["num_train"] == 1797
    assert main(finetune) == 0
    assert f"note: the fine-tuning {note}" in capsys.readouterr().err
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text())["num_labeled"] == 1797
    assert main(linear) == 0
    assert f"note: the linear evaluation {note}" in capsys.readouterr().err


def test_a_printed_result_names_at_most_ten_skipped_files_a_split(capsys):
    """stdout's JSON lists the first PRINTED_SKIPPED skipped files of each split and how
    many more; ten of them are printed whole; the result itself keeps them all."""
    from simclr.commands import PRINTED_SKIPPED, printed

    ten = {"train": [f"t{i}.png" for i in range(PRINTED_SKIPPED)], "test": []}
    assert printed({"skipped_files": ten}) == {"skipped_files": ten}
    many = {"train": [f"t{i}.png" for i in range(PRINTED_SKIPPED + 3)], "test": ["x.png"]}
    shown = printed({"top1": 0.5, "skipped_files": many})
    assert shown["skipped_files"] == {"train": many["train"][:PRINTED_SKIPPED],
                                      "test": ["x.png"]}
    assert shown["skipped_files_more"] == {"train": 3, "test": 0}
    assert len(many["train"]) == PRINTED_SKIPPED + 3  # (the caller's, untouched)


def test_a_preempted_training_reports_exit_status_75_and_how_to_continue(capsys):
    from simclr.commands import report
    from simclr.train import EXIT_PREEMPTED

    result = {"status": "preempted", "signal": "SIGTERM", "checkpoint": "run/last.pt"}
    assert report(result) == EXIT_PREEMPTED == 75
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "preempted"
    assert err == "stopped by SIGTERM; the same command continues it (from run/last.pt)\n"
    assert report(result, resume="simclr x --resume run") == 75
    assert capsys.readouterr().err == "stopped by SIGTERM; continue with: simclr x --resume run\n"


def test_an_evaluations_source_names_its_checkpoints_run_id(tmp_path):
    """The run id follows a run folder moved or copied, where the file's path does not."""
    from simclr.commands import checkpoint_source

    ckpt = {"kind": "pretrain", "step": 3, "run_id": "abc123"}
    source = checkpoint_source(tmp_path / "last.pt", ckpt, "pretrained")
    assert source["run_id"] == "abc123" and source["checkpoint"] == str(tmp_path / "last.pt")
    assert "run_id" not in checkpoint_source(tmp_path / "last.pt", {**ckpt, "run_id": None},
                                             "pretrained")
    assert "imported" not in source
    imported = {**ckpt, "imported": "ResNet weights in torchvision's layout"}
    assert checkpoint_source(tmp_path / "w.pth", imported, "pretrained")["imported"] == \
        "ResNet weights in torchvision's layout"


def test_unlabeled_images_are_no_class_with_a_test_image():
    """A probe's images beside the class folders (label -1) give no class a test image."""
    from types import SimpleNamespace

    from simclr.commands import classes_without_test

    test = SimpleNamespace(labels=[-1, -1, 1, 1], classes=["a", "b", "c"])
    assert classes_without_test(test) == 2


def test_overwrite_never_replaces_the_classifier_read_as_checkpoint(tmp_path):
    import argparse

    from simclr.commands import check_not_replacing_input
    from simclr.errors import SimCLRError

    args = argparse.Namespace(command="linear-eval", out=str(tmp_path), overwrite=True)
    read = tmp_path / "checkpoints" / "linear.pt"
    with pytest.raises(SimCLRError, match=r"^--overwrite would replace .*linear\.pt, the "
                                          r"--checkpoint this command reads"):
        check_not_replacing_input(args, read)
    check_not_replacing_input(argparse.Namespace(**{**vars(args), "overwrite": False}), read)
    check_not_replacing_input(args, tmp_path / "other.pt")


def test_out_of_another_run_is_refused_naming_its_last_checkpoint(tmp_path):
    """An --out holding another run's checkpoints is refused (named by its last.pt first);
    the run folder of the checkpoint evaluated is its results' place."""
    from simclr.commands import check_not_another_run
    from simclr.errors import SimCLRError

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("finetune.pt", "last.pt", "linear.pt"):
        (run / "checkpoints" / name).write_bytes(b"")
    elsewhere = tmp_path / "other/checkpoints/last.pt"
    with pytest.raises(SimCLRError, match=r"is the folder of another run "
                                          r"\(checkpoints/last\.pt\)"):
        check_not_another_run(str(run), elsewhere, "linear-eval")
    check_not_another_run(str(run), run / "checkpoints/last.pt", "linear-eval")
    check_not_another_run(str(run), run / "checkpoints/last.pt", "knn")
    # results without a classifier: refused all the same beside another run's last.pt
    with pytest.raises(SimCLRError, match=r"\(checkpoints/last\.pt\)"):
        check_not_another_run(str(run), elsewhere, "knn")
    # the command's own unfinished state (its -partial checkpoint) is no other run's
    ours = tmp_path / "ft" / "checkpoints"
    ours.mkdir(parents=True)
    (ours / "finetune-partial.pt").write_bytes(b"")
    check_not_another_run(str(ours.parent), elsewhere, "finetune")


@pytest.mark.parametrize("argv, message", [
    (["knn", "--overwrite"], "--overwrite replaces this command's results in --out, and "
                             "none is given; give --out or drop --overwrite"),
    (["linear-eval", "--protocol", "sgd", "--checkpoint-every", "5"],
     "--checkpoint-every: saves of the unfinished training go into --out, and none is "
     "given; give --out or drop it"),
])
def test_a_flag_that_writes_into_out_needs_out(tmp_path, capsys, argv, message):
    """Refused before the checkpoint (here missing) is read: without --out nothing would
    be replaced, or saved for a long run thought safe to stop."""
    code = main([*argv, "--checkpoint", str(tmp_path / "c.pt"), "--train", str(tmp_path),
                 "--test", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_finetune_random_init_is_the_from_scratch_baseline(tmp_path, monkeypatch):
    """`finetune --random-init` and `--from-scratch` are one baseline (Table 7's random
    init), trained and recorded alike: no pretrained weight read, features 'random
    init'."""
    import torch

    import simclr.finetune
    from tests.conftest import make_image_folder
    from tests.test_pretrained import pretrain_checkpoint

    called = []
    monkeypatch.setattr(simclr.finetune, "run_finetune", lambda *a, **k: called.append(k)
                        or {"status": "finished"})
    torch.save(pretrain_checkpoint(), tmp_path / "pre.pt")
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=2)
    for flag in ("--random-init", "--from-scratch"):
        assert main(["finetune", "--checkpoint", str(tmp_path / "pre.pt"), flag, "--train",
                     str(folder), "--test", str(folder), "--device", "cpu", "--cache-dir",
                     str(tmp_path / "cache"), "--workers", "0",
                     "--out", str(tmp_path / flag)]) == 0
        assert called[-1]["from_scratch"] is True
        assert called[-1]["source"]["features"] == "random init"


def test_every_evaluation_command_decodes_jpegs_where_decoder_says(tmp_path, monkeypatch,
                                                                    capsys):
    """knn, linear-eval (both protocols), finetune, transform-probe, embed and predict
    take --decoder, and an uncached folder's JPEGs decode where it says: batched on the
    device (here the CPU) or by PIL in the workers. They had no such flag: auto's choice
    decoded (nvJPEG on CUDA) whatever the pretraining had been told."""
    import simclr.source
    from tests.conftest import make_image_folder

    tiny_pretrained_run(tmp_path)
    # Larger than --cache auto caches: decoded per pass
    train = make_image_folder(tmp_path / "jtrain", per_class=4, side=100, ext="jpg")
    test = make_image_folder(tmp_path / "jtest", per_class=2, side=100, seed=1, ext="jpg")
    decoded, real = [], simclr.source.decode_jpegs

    def counted(payloads, *args, **kwargs):
        decoded.append(len(payloads))
        return real(payloads, *args, **kwargs)

    monkeypatch.setattr(simclr.source, "decode_jpegs", counted)
    fast = ["--workers", "0", "--precision", "fp32", "--batch-size", "4"]
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(train), "--test",
              str(test), *fast]
    for decoder in ("pil", "device"):
        out = tmp_path / decoder
        commands = [["knn", *common, "--k", "3"], ["linear-eval", *common],
                    ["linear-eval", *common, "--protocol", "sgd", "--epochs", "1"],
                    ["finetune", *common, "--epochs", "1"],
                    ["transform-probe", *common, "--task", "gray", "--epochs", "1"],
                    ["embed", "--checkpoint", str(tmp_path / "pre"), "--data", str(test),
                     *fast, "--out", str(out / "e.npz")],
                    ["predict", "--checkpoint", str(out / "linear-eval1"), "--data",
                     str(test), *fast, "--out", str(out / "p.csv")]]
        for i, argv in enumerate(commands):
            decoded.clear()
            flags = [] if argv[0] in ("embed", "predict") else ["--out", str(out / f"{argv[0]}{i}")]
            assert main([*argv, *flags, "--decoder", decoder]) == 0, argv
            assert (sum(decoded) > 0) == (decoder == "device"), (decoder, argv[0], decoded)
    capsys.readouterr()


def test_an_sgd_linear_evaluation_without_out_says_a_stop_would_lose_it(tmp_path, capsys):
    """Without --out nothing of an interrupted SGD training is kept (the README's exit 75
    and kept state need --out): said before it trains, not after a stop."""
    tiny_pretrained_run(tmp_path)
    argv = ["linear-eval", "--protocol", "sgd", "--checkpoint", str(tmp_path / "pre"),
            "--train", "digits", "--test", "digits", "--epochs", "1", "--batch-size", "256",
            "--workers", "0", "--device", "cpu", "--precision", "fp32"]
    note = "note: without --out, a stopped --protocol sgd training is not kept"
    assert main(argv) == 0
    assert note in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "lin")]) == 0
    assert note not in capsys.readouterr().err


def test_a_raw_pixels_baseline_names_no_layer_of_the_encoder(tmp_path):
    """--raw-pixels reads no encoder: its results said "layer": "h"."""
    tiny_pretrained_run(tmp_path)
    assert main(["linear-eval", "--checkpoint", str(tmp_path / "pre"), "--train", "digits",
                 "--test", "digits", "--workers", "0", "--device", "cpu", "--precision",
                 "fp32", "--l2", "0.01", "--out", str(tmp_path / "lin"), "--raw-pixels"]) == 0
    source = json.loads((tmp_path / "lin" / "linear_eval.json").read_text())["source"]
    assert (source["features"], source["layer"]) == ("raw pixels", None)


@pytest.mark.parametrize("command", ["knn", "finetune", "linear-eval"])
def test_test_photos_past_the_pixel_limit_at_the_read_side_are_refused_before_the_work(
        command, tmp_path, capsys, monkeypatch):
    """100-px JPEGs fit --max-pixels 5000 decoded at 1/8 (13 px), not at the 100 px an
    evaluation of the checkpoint's 32-px views reads them at: refused before the
    checkpoint's features or a fine-tuning (which reads --test only once it is over);
    under --max-pixels 10000 they fit as read, and the work starts."""
    import simclr.evaluate
    import simclr.finetune
    import simclr.knn
    from tests.conftest import make_image_folder, saved_resnet18

    saved_resnet18(tmp_path / "pre", "last.pt")
    train = make_image_folder(tmp_path / "train", classes=2, per_class=3)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, side=100, ext="jpg")
    class Started(BaseException):
        pass

    def started(*args, **kwargs):
        raise Started

    for module, name in ((simclr.finetune, "run_finetune"), (simclr.knn, "run_knn"),
                         (simclr.evaluate, "run_linear_eval")):
        monkeypatch.setattr(module, name, started)
    flags = [command, "--checkpoint", str(tmp_path / "pre" / "last.pt"), "--train", str(train),
             "--test", str(test), "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
             "--out", str(tmp_path / "out"), "--max-pixels"]
    with pytest.raises(Started):
        main([*flags, "10000"])
    assert main([*flags, "5000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simclr {command}: error: --test: none of the 4 images") and \
        "exceeds the limit of 5000" in err, err
    if command == "knn":
        return
    # Trained on as views of --train (decoded at 1/4 here, 48 px), not as evaluation crops
    # (whole): a training folder is checked as it trains (the first fix took the larger)
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=2, side=190,
                               ext="jpg")
    with pytest.raises(Started):
        main([command, "--checkpoint", str(tmp_path / "pre" / "last.pt"), "--train",
              str(photos), "--test-fraction", "0.5", "--workers", "0", "--cache-dir",
              str(tmp_path / "cache"), "--max-pixels", "10000", "--out", str(tmp_path / "o2"),
              *(["--protocol", "sgd"] if command == "linear-eval" else [])])


def test_a_test_fraction_of_a_named_data_set_asks_for_its_own_test_split():
    import argparse

    from simclr.commands import held_out
    from simclr.errors import SimCLRError

    args = argparse.Namespace(train="digits", test_fraction=0.2, seed=0)
    with pytest.raises(SimCLRError, match=r"^--test-fraction splits an image folder; digits "
                                          r"has its own test split: give --test$"):
        held_out(args)


def test_the_probes_held_out_part_says_nothing_of_classes_without_a_test_image(
        tmp_path, capsys):
    """The probe's labels are not the folder's classes: a class too small to give a test
    image is no note of a top-1 measured on the others."""
    import argparse
    import shutil

    from simclr.commands import open_folders
    from simclr.config import DataConfig
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "unbal", classes=2, per_class=1, side=16)
    many = make_image_folder(tmp_path / "many", classes=1, per_class=9, side=16, seed=2)
    for k, picture in enumerate(sorted((many / "class_0").iterdir())):
        shutil.copy(picture, folder / "class_0" / f"more{k}.png")
    args = argparse.Namespace(train=str(folder), test=None, test_fraction=0.2, seed=0,
                              workers=0, cache_dir=str(tmp_path / "cache"),
                              max_pixels=DataConfig().max_pixels, decoder="pil")
    capsys.readouterr()
    train, test = open_folders(args, 16, augmented=True, augmented_test=True, unlabeled=True)
    assert len(test.paths) > 0 and "note:" not in capsys.readouterr().err
    open_folders(args, 16, augmented=False)  # (labeled: said)
    assert "1 of the 2 classes have no test image" in capsys.readouterr().err


def test_an_unfinished_training_in_out_is_not_continued_with_overwrite(tmp_path):
    """--overwrite starts a new training: the settings of the unfinished one in --out (an
    earlier simclr's, on all the digits) no longer decide its training set."""
    import argparse

    import torch

    from simclr.checkpoint import PARTIAL_SUFFIX
    from simclr.commands import _partial_settings
    from tests.test_pretrained import pretrain_checkpoint

    saved = tmp_path / "out" / "checkpoints"
    saved.mkdir(parents=True)
    torch.save({**pretrain_checkpoint(), "settings": {"train": [1797]}},
               saved / f"linear{PARTIAL_SUFFIX}")
    args = argparse.Namespace(overwrite=False, out=str(saved.parent), train="digits")
    assert _partial_settings(args, "linear") == {"train": [1797]}
    assert _partial_settings(argparse.Namespace(**{**vars(args), "overwrite": True}),
                             "linear") is None


def test_a_baseline_read_from_an_unfinished_state_still_says_it_is_unfinished(tmp_path,
                                                                               capsys):
    """An evaluation's partial state (named on purpose) is noted as unfinished even for a
    baseline, which takes none of its weights."""
    import argparse

    import torch

    from simclr.checkpoint import PARTIAL_SUFFIX
    from simclr.commands import read_checkpoint
    from tests.test_pretrained import pretrain_checkpoint

    partial = tmp_path / f"linear{PARTIAL_SUFFIX}"
    torch.save({**pretrain_checkpoint(), "step": 2, "total_steps": 5}, partial)
    args = argparse.Namespace(command="knn", checkpoint=str(partial), random_init=True)
    capsys.readouterr()
    read_checkpoint(args)
    assert f"note: {partial} is " in capsys.readouterr().err


def test_the_held_out_test_part_is_drawn_from_seed(tmp_path):
    import argparse

    from simclr.commands import held_out
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=12, side=8)

    def drawn(seed: int) -> list[int]:
        args = argparse.Namespace(train=str(folder), test_fraction=0.25, seed=seed)
        return sorted(held_out(args)[1].tolist())

    assert drawn(1) == drawn(1) and len(drawn(1)) == 6
    assert drawn(0) != drawn(1) != drawn(2)


def test_from_head_on_a_checkpoint_of_no_kind_calls_it_foreign(tmp_path, capsys):
    import torch

    from tests.conftest import make_image_folder
    from tests.test_pretrained import pretrain_checkpoint

    torch.save({k: v for k, v in pretrain_checkpoint().items() if k != "kind"},
               tmp_path / "old.pt")
    train = make_image_folder(tmp_path / "train", classes=2, per_class=4, side=16)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, side=16, seed=1)
    assert main(["finetune", "--checkpoint", str(tmp_path / "old.pt"), "--train", str(train),
                 "--test", str(test), "--from-head", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "ft")]) == 2
    assert "(this is a foreign one, without the projection head)" in capsys.readouterr().err
