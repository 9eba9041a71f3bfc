"""Tests for simclr.classifiers: classifiers to and from checkpoints, the classifier a run
folder gives, one of an earlier step refused, the note on an unfinished training."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.checkpoint import save_checkpoint
from simclr.classifiers import classifier_checkpoint, classifier_from_checkpoint
from simclr.cli import main
from simclr.errors import SimCLRError
from simclr.models import Classifier
from simclr.pretrained import encoder_from_checkpoint, model_from_checkpoint
from simclr.settings import build_config
from tests.conftest import make_image_folder, tiny_pretrained_run
from tests.test_pretrained import pretrain_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def shuffled_labels(root: Path, seed: int = 3) -> Path:
    """An image folder whose images sit in random class folders: a classifier fitted to
    it draws an arbitrary boundary, so its test predictions (near chance) move with any
    error in its weights."""
    folder = make_image_folder(root, classes=2, per_class=12, seed=seed)
    rng = np.random.default_rng(seed)
    for f in sorted(folder.glob("*/*.png")):
        f.rename(folder / f"class_{rng.integers(2)}" / f"{f.parent.name}_{f.name}")
    return folder


def classifier_run(tmp_path, image_folder, cache_dir, capsys) -> tuple[Path, dict]:
    """`simclr linear-eval --out` on a saved pretraining checkpoint, fitted to shuffled
    labels and tested on ``image_folder``: (run dir, its JSON)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    source = save_checkpoint(state, tmp_path / "pre" / "checkpoints")
    run = tmp_path / "lin"
    train = shuffled_labels(tmp_path / "train")
    assert main(["linear-eval", "--checkpoint", str(source), "--train", str(train),
                 "--test", str(image_folder), "--out", str(run), "--l2", "1e-4",
                 "--device", "cpu", "--precision", "fp32", "--cache-dir", cache_dir]) == 0
    return run, json.loads(capsys.readouterr().out)


def test_a_run_folder_spelled_from_the_home_folder_gives_its_encoder_and_classifier(
        tmp_path, monkeypatch):
    """load_encoder('~/pre') looked for a folder named '~'; a classifier's --checkpoint
    ~/pre, once found, took the run's own pretraining checkpoint for the classifier beside
    it (the folder test saw '~/pre', no folder)."""
    import simclr
    from simclr.classifiers import classifier_file

    monkeypatch.setenv("HOME", str(tmp_path))
    ckpt = pretrain_checkpoint()
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    folder = tmp_path / "pre" / "checkpoints"
    save_checkpoint(state, folder)
    encoder = simclr.load_encoder("~/pre")
    expected = encoder_from_checkpoint(ckpt)[0].state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in encoder.state_dict().items())
    linear = save_checkpoint({**state, "kind": "linear"}, folder, "linear.pt")
    assert classifier_file("~/pre") == linear


def test_fine_tuned_classifiers_are_rebuilt_with_their_head_layer():
    ckpt = pretrain_checkpoint(head_layers=2)
    model, spec = model_from_checkpoint(ckpt)
    clf = Classifier.from_head(model.encoder, model.head, 3)
    with torch.no_grad():
        clf.fc.weight.normal_()
    classes = ["a", "b", "c"]
    blob = classifier_checkpoint("finetune", clf, ckpt["config"], classes, 5, 1.0, {})
    rebuilt, _, names = classifier_from_checkpoint(blob)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), clf.eval()(x))
    assert names == classes and not rebuilt.training
    # (a list of other things than names: a traceback where a name is unhashable; numbers
    # would be predict's labels as if they were folder names)
    for damaged in (5, [["a"], "b", "c"], [1, 2, 3]):
        with pytest.raises(SimCLRError, match="is damaged: its classes are not a list of names"):
            classifier_from_checkpoint({**blob, "classes": damaged})
    # two outputs of one name: predict's labels would map to only one of them
    with pytest.raises(SimCLRError, match=r"is damaged: its class 'a' is named twice$"):
        classifier_from_checkpoint({**blob, "classes": ["a", "b", "a"]})
    with pytest.raises(SimCLRError, match=r"is damaged: its class 'a' is named twice$"):
        classifier_from_checkpoint({**blob, "classes": ["b", "a", "a"]})  # (the repeated one)
    with pytest.raises(SimCLRError, match=r"^this checkpoint \(pretrain\) holds no classifier; "):
        classifier_from_checkpoint({**blob, "kind": "pretrain"})
    with pytest.raises(SimCLRError, match=r"^the checkpoint's classifier is incomplete \(no fc "
                                          r"weights matching its class list\)$"):
        classifier_from_checkpoint({**blob, "classes": ["a", "b"]})  # (3 outputs)


def test_a_run_folder_holding_an_evaluations_classifier_predicts_with_it(
        tmp_path, image_folder, cache_dir, capsys):
    # simclr linear-eval --checkpoint RUN --out RUN: RUN's last.pt is the pretraining
    # model, its linear.pt the classifier that predict and export --layer logits want.
    run, measured = classifier_run(tmp_path, image_folder, cache_dir, capsys)
    pre = tmp_path / "pre"
    shutil.copy(run / "checkpoints" / "linear.pt", pre / "checkpoints" / "linear.pt")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(pre), "--data", str(image_folder), "--out",
                 str(out), "--device", "cpu", "--precision", "fp32", "--cache-dir",
                 cache_dir]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == measured["top1"]
    assert main(["export", "--checkpoint", str(pre), "--out", str(tmp_path / "c.pt2"),
                 "--layer", "logits"]) == 0
    card = json.loads((tmp_path / "c.pt2.json").read_text())
    assert card["output"]["shape"][1] == len(card["output"]["classes"]) == 2, card
    shutil.copy(run / "checkpoints" / "linear.pt", pre / "checkpoints" / "finetune.pt")
    assert main(["predict", "--checkpoint", str(pre), "--data", str(image_folder), "--out",
                 str(tmp_path / "p2.csv"), "--cache-dir", cache_dir]) == 2
    assert "holds several classifiers (linear.pt, finetune.pt); name one" in \
        capsys.readouterr().err
    # A supervised run's folder holds a classifier of its own: an evaluation's beside it
    # was taken instead, without a word
    (pre / "checkpoints" / "finetune.pt").unlink()
    shutil.copy(run / "checkpoints" / "linear.pt", pre / "checkpoints" / "last.pt")
    assert main(["predict", "--checkpoint", str(pre), "--data", str(image_folder), "--out",
                 str(tmp_path / "p3.csv"), "--cache-dir", cache_dir]) == 2
    assert "holds several classifiers (last.pt, linear.pt); name one" in \
        capsys.readouterr().err
    # Pretraining into the evaluation's folder would put a new encoder beside its classifier.
    assert main(["pretrain", "--data", str(image_folder), "--out", str(run),
                 "--cache-dir", cache_dir]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds checkpoints/linear.pt" in err, err


def test_a_run_folders_classifier_of_an_earlier_step_is_refused(
        tmp_path, image_folder, cache_dir, capsys):
    """linear-eval --out RUN, then the run trains on: RUN's linear.pt is of an encoder
    the run no longer has. predict and export --layer logits on RUN refuse it naming both
    steps (the file itself, named, is used as it is); info says so; a refit clears it."""
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    run = tmp_path / "pre"
    save_checkpoint({**state, "step": 3}, run / "checkpoints")
    common = ["--device", "cpu", "--precision", "fp32", "--cache-dir", cache_dir]
    fit = ["linear-eval", "--checkpoint", str(run), "--train", str(image_folder), "--test",
           str(image_folder), "--out", str(run), "--l2", "1e-3", *common]
    assert main(fit) == 0
    predict = ["predict", "--checkpoint", str(run), "--data", str(image_folder), *common]
    assert main([*predict, "--out", str(tmp_path / "p1.csv")]) == 0  # current: used
    save_checkpoint({**state, "step": 7}, run / "checkpoints")  # the run trained on
    capsys.readouterr()
    for args in ([*predict, "--out", str(tmp_path / "p2.csv")],
                 ["export", "--checkpoint", str(run), "--layer", "logits", "--out",
                  str(tmp_path / "c.pt")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "linear.pt was fitted on step 3 of this run, which " \
            "has trained on to step 7: fit it again (`simclr linear-eval --checkpoint" in err, err
    assert not (tmp_path / "p2.csv").exists() and not (tmp_path / "c.pt").exists()
    assert main(["info", str(run)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "linear.pt" in x][0]
    assert "linear classifier, 2 classes" in line and "step 0" not in line
    assert line.endswith("; it was fitted on step 3 of this run, which has trained on to step "
                         "7 (predict and export refuse the run folder)"), line
    named = [*predict, "--checkpoint", str(run / "checkpoints" / "linear.pt")]
    assert main([*named, "--out", str(tmp_path / "p3.csv")]) == 0
    assert main([*fit, "--overwrite"]) == 0  # fitted again on step 7
    assert main([*predict, "--out", str(tmp_path / "p4.csv")]) == 0
    assert main(["info", str(run)]) == 0
    assert "linear classifier, fitted on the encoder of step 7, 2 classes" in \
        capsys.readouterr().out


def test_evaluating_an_unfinished_pretraining_says_so(tmp_path, capsys):
    """A pretraining stopped early (or still training) evaluated by its run folder: the
    commands that read its encoder said nothing of its being half-trained (predict did
    of a classifier's training); each says so on stderr, its results unchanged."""
    from simclr import train
    from tests.conftest import tiny_flags

    data = make_image_folder(tmp_path / "images")
    test = make_image_folder(tmp_path / "test", per_class=2, seed=1)
    run, cache = tmp_path / "cut", str(tmp_path / "cache")

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(data, run, cache, checkpoint_every=0))
    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    last = run / "checkpoints" / "last.pt"
    note = f"note: {last} is an unfinished training (step 1 of 6); `simclr pretrain " \
        f"--resume {run}` continues it\n"
    common = ["--cache-dir", cache, "--workers", "0"]
    for argv in (["knn", "--checkpoint", str(run), "--train", str(data), "--test", str(test),
                  "--k", "3", *common],
                 ["embed", "--checkpoint", str(run), "--data", str(test),
                  "--out", str(tmp_path / "e.npz"), *common],
                 ["export", "--checkpoint", str(run), "--out", str(tmp_path / "enc.pt")]):
        capsys.readouterr()
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert note in err, (argv[0], err)
        assert "note:" not in out  # (the results as they were)
    # Started with --processes: the command that continues it is the one info names
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["provenance"]["argv"] = [*config["provenance"]["argv"], "--processes", "2"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "enc2.pt")]) == 0
    assert f"`simclr pretrain --resume {run} --processes 2` continues it" \
        in capsys.readouterr().err
    # A periodic checkpoint named (accuracy against steps): a step chosen, no note
    (run / "checkpoints" / "last.pt").rename(run / "checkpoints" / "ckpt-00000001.pt")
    assert main(["export", "--checkpoint", str(run / "checkpoints" / "ckpt-00000001.pt"),
                 "--out", str(tmp_path / "enc3.pt")]) == 0
    assert "note:" not in capsys.readouterr().err
    # A finished run's checkpoint: no note
    train_dir, test_dir, cache = tiny_pretrained_run(tmp_path / "done")
    capsys.readouterr()
    assert main(["knn", "--checkpoint", str(tmp_path / "done/pre"), "--train", str(train_dir),
                 "--test", str(test_dir), "--k", "3", "--cache-dir", cache,
                 "--workers", "0"]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize("step", ["\x1b[2Jstep", [[1]] * 3, True, -1, 2.5])
def test_a_partial_files_odd_step_is_not_printed(tmp_path, capsys, step):
    """An evaluation's -partial.pt is a received file too: its step was printed
    whatever it was ('step <ESC>[2J... of 1'; a list of shared references nested 24
    deep as a 117 MB line). A step that is no count is said to be damaged, not shown."""
    from simclr.classifiers import note_unfinished

    assert note_unfinished(tmp_path / "linear-partial.pt", {"step": step, "total_steps": 1})
    err = capsys.readouterr().err
    assert "an unfinished training (its recorded step is damaged)" in err
    assert f"step {step}" not in err
    note_unfinished(tmp_path / "linear-partial.pt", {"step": 3, "total_steps": [1]})
    assert "(step 3); its command" in capsys.readouterr().err


@pytest.mark.parametrize("damage, said", [
    ("fc.weight", "its classifier's weights are not finite"),
    ("fc.bias", "its classifier's weights are not finite"),
    ("one class", "its classifier has 1 class (it tells 2 or more apart)")])
def test_a_classifier_of_non_finite_weights_or_one_class_is_refused(damage, said):
    """A received classifier whose fc weights are NaN predicted nan probabilities and no
    class, exiting 0 (embed refuses an encoder whose outputs are not finite); one of a
    single class (linear-eval needs two) was taken as it was."""
    ckpt = pretrain_checkpoint()
    encoder, _ = encoder_from_checkpoint(ckpt)
    classes = ["a"] if damage == "one class" else ["a", "b"]
    blob = classifier_checkpoint("linear", Classifier(encoder, len(classes)), ckpt["config"],
                                 classes, 0, 1.0, {})
    if damage != "one class":
        blob["model"][damage].view(-1)[0] = float("nan" if damage == "fc.weight" else "inf")
    with pytest.raises(SimCLRError, match=rf"^the checkpoint is damaged: {re.escape(said)}$"):
        classifier_from_checkpoint(blob)


@pytest.mark.parametrize("kind", ["linear", "finetune"])
def test_a_classifier_reading_another_number_of_features_is_refused_before_any_image(
        tmp_path, image_folder, kind, capsys):
    """A damaged classifier whose fc.weight reads fewer features than its encoder (or
    kept head layer) gives was rebuilt around that width and loaded: predict embedded
    the whole folder, then stopped on 'mat1 and mat2 shapes cannot be multiplied'."""
    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    clf = Classifier.from_head(model.encoder, model.head, 2) if kind == "finetune" \
        else Classifier(model.encoder, 2)
    blob = classifier_checkpoint(kind, clf, ckpt["config"], ["a", "b"], 5, 1.0, {})
    gives = clf.fc.in_features
    blob["model"]["fc.weight"] = blob["model"]["fc.weight"][:, :10].clone()
    said = f"is damaged: its classifier reads 10 features, not the {gives} its " \
        f"{'head layer' if kind == 'finetune' else 'encoder'} gives$"
    with pytest.raises(SimCLRError, match=f"^the checkpoint {said}"):
        classifier_from_checkpoint(blob)
    path = save_checkpoint(blob, tmp_path / "c" / "checkpoints", f"{kind}.pt")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(path), "--data", str(image_folder),
                 "--out", str(tmp_path / "p.csv"), "--device", "cpu"]) != 0
    out, err = capsys.readouterr()
    assert re.search(f"^simclr predict: error: {re.escape(str(path))} {said}", err, re.M), err
    assert "Traceback" not in err and not (tmp_path / "p.csv").exists()
    # (export --layer logits built its program around the same misfit)
    assert main(["export", "--checkpoint", str(path), "--layer", "logits",
                 "--out", str(tmp_path / "l.pt2")]) != 0
    err = capsys.readouterr().err
    assert re.search(f"^simclr export: error: {re.escape(str(path))} {said}", err, re.M), err
    assert not (tmp_path / "l.pt2").exists()


def test_an_out_holding_only_a_fine_tuned_classifier_gives_it(tmp_path):
    """The --out of `simclr finetune` holds checkpoints/finetune.pt alone: that folder
    names the classifier itself, never 'several classifiers' (it and itself)."""
    from simclr.classifiers import classifier_file

    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    blob = classifier_checkpoint("finetune", Classifier(model.encoder, 2), ckpt["config"],
                                 ["a", "b"], 5, 1.0, {})
    done = save_checkpoint({k: v for k, v in blob.items() if k not in ("format", "version")},
                           tmp_path / "ft" / "checkpoints", "finetune.pt")
    assert classifier_file(tmp_path / "ft") == done


def test_the_note_on_an_exported_or_periodic_unfinished_training(tmp_path, capsys):
    """An export of a stopped training says so by its record (``unfinished``); a periodic
    checkpoint of a stopped supervised run is noted without the command that continues
    the run (that is its last.pt's: the run may have finished since)."""
    from simclr.checkpoint import periodic_name
    from simclr.classifiers import note_unfinished

    export = tmp_path / "enc.pt"
    assert note_unfinished(export, {"kind": "encoder",
                                    "unfinished": {"step": 3, "total_steps": 9}})
    assert capsys.readouterr().err == \
        f"note: {export} is an export of an unfinished training (step 3 of 9)\n"
    assert not note_unfinished(export, {"kind": "encoder", "step": 3})
    periodic = tmp_path / "run" / "checkpoints" / periodic_name(4)
    periodic.parent.mkdir(parents=True)
    assert note_unfinished(periodic, {"kind": "supervised", "step": 4, "total_steps": 9})
    assert capsys.readouterr().err == \
        f"note: {periodic} is an unfinished training (step 4 of 9)\n"
    # the words and the numbers are of one training: a fine-tuning's partial state is
    # its own (step 50 of 100), whatever its encoder's record
    state = {"kind": "finetune", "step": 50, "total_steps": 100,
             "encoder_unfinished": {"step": 1000, "total_steps": 5000}}
    assert note_unfinished(tmp_path / "finetune-partial.pt", state) == {
        "step": 50, "total_steps": 100}
    assert "(step 50 of 100)" in capsys.readouterr().err
    assert note_unfinished(tmp_path / "finetune.pt", state) == {"step": 1000,
                                                               "total_steps": 5000}
    assert "a classifier on an encoder of an unfinished training (step 1000 of 5000)" in \
        capsys.readouterr().err


def test_a_classifier_checkpoint_records_its_provenance_and_is_not_overwritten_unasked(
        tmp_path):
    """What a classifier's file records: its classes and their count, its scalar metrics,
    its optimizer (a training continued), the pretraining step its encoder came from or
    else that it started from none, its training's run id; saved without --overwrite, a
    file another process wrote there is kept and refused."""
    from simclr.classifiers import save_classifier

    ckpt = pretrain_checkpoint()
    encoder, _ = encoder_from_checkpoint(ckpt)
    clf = Classifier(encoder, 2)
    optimizer = torch.optim.SGD(clf.parameters(), lr=0.1)
    blob = classifier_checkpoint("linear", clf, ckpt["config"], ["a", "b"], 5, 1.5,
                                 {"top1": 0.5, "split": "test", "curve": [1, 2]},
                                 optimizer=optimizer, encoder_step=7, run_id="r1")
    assert blob["num_classes"] == 2 and blob["metrics"] == {"top1": 0.5, "split": "test"}
    assert blob["optimizer"] == optimizer.state_dict() and blob["run_id"] == "r1"
    assert blob["encoder_step"] == 7 and "features" not in blob
    baseline = classifier_checkpoint("supervised", clf, ckpt["config"], ["a", "b"], 5, 1.5,
                                     {}, encoder_step=7, features="random init")
    assert baseline["features"] == "random init"
    assert not {"encoder_step", "optimizer", "run_id"} & set(baseline)
    path = save_classifier(blob, tmp_path, "linear.pt")
    assert path == str(tmp_path / "checkpoints" / "linear.pt")
    with pytest.raises(SimCLRError):
        save_classifier(baseline, tmp_path, "linear.pt", overwrite=False)
    assert torch.load(path, weights_only=False)["kind"] == "linear"
    save_classifier(baseline, tmp_path, "linear.pt")
    assert torch.load(path, weights_only=False)["kind"] == "supervised"


def test_a_classifier_is_stale_only_by_a_recorded_step_other_than_the_runs(tmp_path):
    """why_stale: the step the results file beside the classifier records, against the
    run's last.pt; a results file that is no object, a source that is none, or no step
    recorded: nothing to say."""
    from simclr.classifiers import classifier_source, why_stale

    ckpt = pretrain_checkpoint()
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    last = save_checkpoint({**state, "step": 7}, tmp_path / "checkpoints")
    linear = tmp_path / "checkpoints" / "linear.pt"
    results = tmp_path / "linear_eval.json"
    for written, source in (("[1]", {}), ('{"source": "pre"}', {}), ("{}", {}),
                            ('{"source": {"checkpoint": "pre"}}', {"checkpoint": "pre"})):
        results.write_text(written)
        assert classifier_source(linear) == source
        assert why_stale(linear, last) is None
    results.write_text('{"source": {"step": 7}}')
    assert why_stale(linear, last) is None
    results.write_text('{"source": {"step": 3}}')
    assert why_stale(linear, last) == \
        "was fitted on step 3 of this run, which has trained on to step 7"
    assert classifier_source(tmp_path / "checkpoints" / "finetune.pt") == {}


def test_the_note_on_a_stopped_runs_last_checkpoint_says_how_its_run_stands(tmp_path, capsys):
    """A run's last.pt short of its steps: a run still training (its folder held) or one
    that diverged is said so, not given a command to continue it; a finished one (step
    = total) gets no note. An export's record of its source's steps keeps whole numbers
    alone."""
    from simclr.classifiers import note_unfinished, unfinished_state
    from simclr.files import lock_folder

    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    ckpt = {"kind": "supervised", "step": 4, "total_steps": 9}
    held = lock_folder(run)
    try:
        assert note_unfinished(last, ckpt)
    finally:
        held.close()
    assert capsys.readouterr().err == \
        f"note: {last} is an unfinished training (step 4 of 9); its run is still training\n"
    (run / "summary.json").write_text('{"status": "diverged"}')
    assert note_unfinished(last, ckpt)
    assert capsys.readouterr().err.endswith("(step 4 of 9); its run diverged\n")
    assert not note_unfinished(last, {**ckpt, "step": 9})
    assert unfinished_state({"kind": "encoder", "unfinished": {"step": "4", "total_steps": 9}}) \
        == {"step": None, "total_steps": 9}
    assert unfinished_state({**ckpt, "step": 2.5}) == {"step": None, "total_steps": 9}


@pytest.mark.parametrize("head, layers, batch_norm", [("mlp", 2, False), ("linear", 1, True)])
def test_a_classifier_of_an_encoder_without_a_config_is_rebuilt_from_its_own(
        head, layers, batch_norm):
    """encoder_config with no source config describes the encoder (arch, width, CIFAR
    stem, side) and the head layer a fine-tuned classifier keeps: its file rebuilds the
    same classifier."""
    from simclr.classifiers import encoder_config
    from simclr.models import build_model

    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "model.cifar_stem": True, "model.head": head,
                              "model.head_batch_norm": batch_norm, "augment.size": 16,
                              **({"model.head_layers": layers} if layers > 1 else {})})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    clf = Classifier.from_head(model.encoder, model.head, 2).eval()
    config = encoder_config(model.encoder, 16, None, model.head)
    assert config["model"]["cifar_stem"] is True and config["augment"]["size"] == 16
    assert (config["model"]["head"], config["model"]["head_layers"]) == (head, layers)
    rebuilt, spec, _ = classifier_from_checkpoint(
        classifier_checkpoint("finetune", clf, config, ["a", "b"], 5, 1.0, {}))
    assert spec["image_size"] == 16
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), clf(x), rtol=0, atol=0)


def test_a_classifier_records_its_encoders_stopped_training_and_a_partial_one_its_own():
    """``encoder_unfinished`` is kept for a classifier on pretrained features alone (a
    random-init baseline's encoder is no training's), read back as its state, and an
    evaluation's own -partial.pt (its kind a classifier's) is noted as the unfinished
    fitting it is (unfinished_of's state; unfinished_state is the file's own)."""
    from simclr.classifiers import unfinished_of, unfinished_state

    ckpt = pretrain_checkpoint()
    encoder, _ = encoder_from_checkpoint(ckpt)
    stopped = {"step": 3, "total_steps": 9}
    blob = classifier_checkpoint("finetune", Classifier(encoder, 2), ckpt["config"],
                                 ["a", "b"], 5, 1.0, {}, encoder_step=3,
                                 encoder_unfinished=stopped)
    assert blob["encoder_unfinished"] == stopped and "unfinished" not in blob
    assert unfinished_state(blob) == {"step": 5, "total_steps": None}  # (its own fitting's)
    assert unfinished_of(Path("finetune.pt"), blob) == (
        "a classifier on an encoder of an unfinished training (step 3 of 9)", stopped)
    baseline = classifier_checkpoint("finetune", Classifier(encoder, 2), ckpt["config"],
                                     ["a", "b"], 5, 1.0, {}, features="random init",
                                     encoder_unfinished=stopped)
    assert "encoder_unfinished" not in baseline
    partial = {"kind": "finetune", "step": 2, "total_steps": 4}  # (as save_partial writes)
    said, state = unfinished_of(Path("finetune-partial.pt"), partial)
    assert said.startswith("an unfinished training (step 2 of 4)") and state == \
        {"step": 2, "total_steps": 4}
