"""Fine-tuning: class-balanced subsets, semi-supervised fine-tuning, the classifier loop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.checkpoint_read import load_checkpoint
from simclr.classify import evaluate_classifier
from simclr.config import ModelConfig
from simclr.errors import SimCLRError
from simclr.finetune import default_epochs, run_finetune
from simclr.inference import predict_folder
from simclr.models import Classifier, build_model
from simclr.pretrained import encoder_from_checkpoint
from simclr.results import accuracy_summary
from simclr.subsets import labeled_subset, subset_from_list
from tests.conftest import (
    check_ranked_test,
    first_conv_formats,
    make_image_folder,
    recorded_test,
    snapshot,
    stop_at,
    stopped_in,
    tiny_encoder,
    tiny_pretrained_run,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------- end to end


FAST = {"image_size": 16, "batch_size": 6, "epochs": 2, "device": "cpu", "precision": "fp32",
        "workers": 0, "verbose": False}

def test_finetune_keeps_no_logits_matrix(tmp_path, folders, monkeypatch):
    """The fine-tuned classifier's test ranks each batch of logits as it comes (the
    float32 (M, C) logits: 4 GB at 100k test images x 10k classes): what reaches the
    results holds O(M) numbers, and they are the whole matrix's: accuracies, JSON,
    confusion matrix."""
    import simclr.finetune

    train, test = folders
    seen = recorded_test(monkeypatch, simclr.finetune, tmp_path)
    result = run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=4,
                          **{**FAST, "epochs": 1})
    check_ranked_test(seen, result, tmp_path / "ft" / "finetune.json", 3)


def test_the_step_memory_is_measured_with_global_batch_norm(tmp_path, folders, monkeypatch):
    """As the supervised baseline's (test_supervised): under --processes the step's
    memory is measured on the global-BN model that trains, not before its conversion."""
    from tests.test_supervised import Measured, measured_model

    seen = measured_model(monkeypatch)
    train, test = folders
    with pytest.raises(Measured):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=4,
                     **{**FAST, "batch_size": 8})
    assert seen == [True]


def test_a_refused_step_names_the_batch_typed_under_processes(tmp_path, folders, monkeypatch):
    """As the supervised baseline's (test_supervised): the refusal names the global
    --batch-size, not each process's share."""
    from tests.test_supervised import REFUSED_8, small_memory

    small_memory(monkeypatch)
    train, test = folders
    with pytest.raises(SimCLRError, match=REFUSED_8):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=4,
                     **{**FAST, "batch_size": 8})


def test_default_budgets():
    assert default_epochs(0.01) == 60 and default_epochs(0.1) == 30
    # (up to 5% of the labels, 5% included, is the 1% regime)
    assert default_epochs(0.05) == 60 and default_epochs(0.06) == 30


def test_fractional_epochs_are_rounded_to_steps(tmp_path, folders):
    """--epochs 1.5 as in pretraining: 12 labeled images at batch 6 are 2 steps an epoch,
    so 3 steps (the command line takes the fraction too)."""
    train, test = folders
    result = run_finetune(tiny_encoder(), train, test, None, labels_per_class=4,
                          **{**FAST, "epochs": 1.5})
    assert result["steps"] == 3 and result["epochs"] == 1.5
    from simclr.cli import build_parser

    args = build_parser().parse_args(["finetune", "--checkpoint", "c", "--train", "t",
                                      "--test", "u", "--out", "o", "--epochs", "0.25"])
    assert args.epochs == 0.25
    # the paper's (App. B.5): 0.05 x B/256, no weight decay
    assert (args.lr, args.momentum, args.weight_decay) == (0.05, 0.9, 0.0)


def test_finetune_end_to_end(tmp_path, folders):
    train, test = folders
    encoder = tiny_encoder()
    before = snapshot(encoder)
    result = run_finetune(encoder, train, test, tmp_path / "ft", labels_per_class=4, seed=1,
                          **FAST)
    # the caller's encoder is copied, never modified
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())
    assert result["num_labeled"] == 12 and result["label_fraction"] == 0.5
    # (no --label-fraction asked; the settings beside the argv, which holds only the typed)
    assert result["label_fraction_asked"] is None
    assert (result["momentum"], result["crop_scale"], result["crop_sampler"]) == \
        (0.9, [0.08, 1.0], "torchvision")
    assert result["steps"] == 4 and result["peak_lr"] == pytest.approx(0.05 * 6 / 256)
    chosen = labeled_subset(train, None, None, 4, seed=1)
    listed = (tmp_path / "ft" / "labeled_subset.txt").read_text().splitlines()
    assert listed == [Path(os.path.relpath(train.paths[i], train.name)).as_posix()
                      for i in chosen]  # relative to the folder: it serves a copy too
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert saved["top1"] == result["top1"] and result["top5"] is None
    # the checkpoint rebuilds the fine-tuned classifier: same test accuracy
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["kind"] == "finetune" and ckpt["classes"] == train.classes
    assert {k.split(".")[0] for k in ckpt["model"]} == {"encoder", "fc"}
    loaded, spec = encoder_from_checkpoint(ckpt)
    assert spec["image_size"] == 16 and spec["arch"] == "resnet18"
    model = Classifier(loaded, 3)
    model.load_state_dict(ckpt["model"])
    ranked, labels = evaluate_classifier(model, test, 16, batch_size=4,
                                         device=torch.device("cpu"), precision="fp32")
    assert accuracy_summary(ranked, labels)["top1"] == pytest.approx(result["top1"])
    # BatchNorm trained in train mode: its running statistics moved; and the whole
    # network was fine-tuned, the encoder's weights too (not the new layer alone)
    assert not torch.equal(ckpt["model"]["encoder.stem.1.running_mean"],
                           before["stem.1.running_mean"])
    assert not torch.equal(ckpt["model"]["encoder.stem.0.weight"], before["stem.0.weight"])


def test_subset_from_a_list_of_file_names(tmp_path, folders):
    train, test = folders
    listing = tmp_path / "few.txt"
    full = train.paths[5]
    listing.write_text(f"# the paper's lists name files\n\nclass_1/002.png\n{full}\n"
                       "class_2/007.png\n")
    chosen = subset_from_list(train, listing)
    named = {train.paths[i].split("/")[-2] + "/" + train.paths[i].split("/")[-1]
             for i in chosen}
    assert len(chosen) == 3 and {"class_1/002.png", "class_2/007.png"} <= named
    assert full in [train.paths[i] for i in chosen]
    # a run's labeled_subset.txt, fed back, gives the same images
    result = run_finetune(tiny_encoder(), train, test, tmp_path / "ft", subset_file=listing,
                          **FAST)
    assert result["num_labeled"] == 3
    again = subset_from_list(train, tmp_path / "ft" / "labeled_subset.txt")
    np.testing.assert_array_equal(again, chosen)
    import shutil
    from types import SimpleNamespace

    from simclr.folders import scan_folder

    copy = shutil.copytree(train.name, tmp_path / "elsewhere")  # the same images, moved
    moved = scan_folder(copy)
    moved = SimpleNamespace(name=str(copy), paths=moved.paths, labels=moved.labels)
    again = subset_from_list(moved, tmp_path / "ft" / "labeled_subset.txt")
    assert [Path(moved.paths[i]).relative_to(copy) for i in again] == \
        [Path(train.paths[i]).relative_to(Path(train.name).resolve()) for i in chosen]
    for text, match in (("001.png\n", "names several images"),
                        ("class_0/999.png\nclass_0/001.png\n", "1 of the listed images"),
                        ("# nothing\n", "lists no images")):
        listing.write_text(text)
        with pytest.raises(SimCLRError, match=match):
            subset_from_list(train, listing)
    with pytest.raises(SimCLRError, match="cannot read"):
        subset_from_list(train, tmp_path / "missing.txt")
    with pytest.raises(SimCLRError, match="give one of"):
        run_finetune(tiny_encoder(), train, test, None, subset_file=listing,
                     labels_per_class=1, **FAST)


def test_results_of_an_earlier_run_are_never_overwritten(tmp_path, folders):
    from simclr.knn import run_knn

    train, test = folders
    run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=1, **FAST)
    saved = (tmp_path / "ft" / "finetune.json").read_text()
    with pytest.raises(SimCLRError, match="already holds finetune.json"):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=1, **FAST)
    assert (tmp_path / "ft" / "finetune.json").read_text() == saved
    fast = {k: FAST[k] for k in ("image_size", "device", "precision", "workers", "verbose")}
    run_knn(tiny_encoder(), train, test, tmp_path / "ft", k=3, **fast)  # another protocol
    with pytest.raises(SimCLRError, match="already holds knn.json"):
        run_knn(tiny_encoder(), train, test, tmp_path / "ft", k=3, **fast)
    with pytest.raises(SimCLRError, match="give one of --from-head and --from-scratch"):
        run_finetune(tiny_encoder(), train, test, None, head=object(), from_head=True,
                     from_scratch=True, **FAST)


def test_overwrite_replaces_an_earlier_finetuning_and_only_at_its_end(tmp_path, folders):
    """With overwrite the earlier results stay whole (their subset list too) until the new
    ones replace them all; a stopped run leaves them as they were."""
    train, test = folders
    run = tmp_path / "ft"
    run_finetune(tiny_encoder(), train, test, run, labels_per_class=1, **FAST)
    earlier = {n: (run / n).read_bytes() for n in ("finetune.json", "labeled_subset.txt")}
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 2, "checkpoint_every": 2}
    cut = run_finetune(tiny_encoder(), train, test, run, overwrite=True, **args,
                       on_step=stop_at(2))
    assert cut["status"] == "preempted"
    assert {n: (run / n).read_bytes() for n in earlier} == earlier
    done = run_finetune(tiny_encoder(), train, test, run, overwrite=True, **args)
    saved = json.loads((run / "finetune.json").read_text())
    assert saved["num_labeled"] == done["num_labeled"] == 6 and saved["top1"] == done["top1"]
    assert len((run / "labeled_subset.txt").read_text().split()) == 6
    assert load_checkpoint(run / "checkpoints" / "finetune.pt")["step"] == done["steps"]
    assert not (run / "checkpoints" / "finetune-partial.pt").exists()


def test_a_finetuning_finished_meanwhile_in_its_out_is_kept(tmp_path, folders, monkeypatch):
    """Two `simclr finetune --out D` at once: both found D free; the second waited for
    the first's hold of D (or took it just after) and is refused once it holds D, the
    first's results kept and nothing trained (it retrained and replaced them); with
    --overwrite it replaces them, as before."""
    import simclr.partial as partial
    from simclr.files import folder_holder

    train, test = folders
    run = tmp_path / "ft"
    first = {"top1": 0.25}
    lock = partial.lock_folder

    def finished_meanwhile(folder):  # the first command ended while this one started
        (folder / "finetune.json").write_text(json.dumps(first))
        return lock(folder)

    monkeypatch.setattr(partial, "lock_folder", finished_meanwhile)
    with pytest.raises(SimCLRError, match=r"ft/finetune.json was written meanwhile by another "
                       r"process \(kept; this run's was not written\): choose another --out, "
                       r"or pass --overwrite to replace it"):
        run_finetune(tiny_encoder(), train, test, run, labels_per_class=1, **FAST)
    assert json.loads((run / "finetune.json").read_text()) == first
    assert [p.name for p in run.iterdir() if p.name != ".simclr.lock"] == ["finetune.json"]
    assert folder_holder(run) is None  # let go
    done = run_finetune(tiny_encoder(), train, test, run, labels_per_class=1, overwrite=True,
                        **FAST)
    assert json.loads((run / "finetune.json").read_text())["top1"] == done["top1"]


def test_result_paths_and_the_resume_hint_are_absolute(tmp_path, folders, monkeypatch, capsys):
    """--out relative to the shell's folder: finetune.json and a stopped run's result name
    absolute paths (the hint printed from them is right from any folder)."""
    from simclr.commands import report

    train, test = folders
    monkeypatch.chdir(tmp_path)
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 2, "checkpoint_every": 2}
    cut = run_finetune(tiny_encoder(), train, test, "ft", **args, on_step=stop_at(2))
    partial = tmp_path / "ft" / "checkpoints" / "finetune-partial.pt"
    assert cut["checkpoint"] == str(partial)
    assert report(cut) == 75
    assert f"the same command continues it (from {partial})" in capsys.readouterr().err
    run_finetune(tiny_encoder(), train, test, "ft", **args)
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    ft = tmp_path / "ft"
    assert (saved["checkpoint"], saved["subset_file"], saved["confusion_figure"]) == (
        str(ft / "checkpoints" / "finetune.pt"), str(ft / "labeled_subset.txt"),
        str(ft / "finetune_confusion.png"))


def test_every_evaluation_command_takes_overwrite_but_never_into_another_run(tmp_path, capsys):
    """knn, linear-eval, finetune and transform-probe: a second run into the same --out is
    refused naming --overwrite, and with it replaces that command's results; into a
    pretraining run's own folder they sit beside its checkpoints, which stay untouched,
    and into another run's folder they are refused all the same."""
    from simclr.cli import main

    train, test, cache = tiny_pretrained_run(tmp_path)
    pre = tmp_path / "pre"
    last = (pre / "checkpoints" / "last.pt").read_bytes()
    common = ["--checkpoint", str(pre), "--train", str(train), "--test", str(test),
              "--workers", "0", "--cache-dir", cache, "--precision", "fp32"]
    commands = {"knn": ["--k", "3"], "linear-eval": ["--l2", "0.001"],
                "finetune": ["--epochs", "1", "--batch-size", "8"],
                "transform-probe": ["--task", "rotation", "--views", "1", "--epochs", "1"]}
    for command, extra in commands.items():
        for out in (tmp_path / f"evals-{command}", pre):
            args = [command, *common, *extra, "--out", str(out)]
            assert main(args) == 0, command
            capsys.readouterr()
            assert main(args) == 2, command
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "or pass --overwrite to replace it" in err, err
            assert main([*args, "--overwrite"]) == 0, command
    assert (pre / "checkpoints" / "last.pt").read_bytes() == last
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "last.pt").write_bytes(last)
    capsys.readouterr()
    assert main(["knn", *common, "--k", "3", "--out", str(other), "--overwrite"]) == 2
    assert "is the folder of another run" in capsys.readouterr().err
    assert sorted(p.name for p in other.rglob("*")) == ["checkpoints", "last.pt"]
    # Nor another evaluation's folder: a linear classifier beside a fine-tuned one made
    # `predict --checkpoint FOLDER` ask which (and they came from other encoders).
    for command, out, held in (("linear-eval", "evals-finetune", "finetune.pt"),
                               ("finetune", "evals-linear-eval", "linear.pt")):
        before = sorted(p.name for p in (tmp_path / out).rglob("*"))
        assert main([command, *common, *commands[command], "--out", str(tmp_path / out),
                     "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"is the folder of another run (checkpoints/{held})" in err, err
        assert sorted(p.name for p in (tmp_path / out).rglob("*")) == before
    # Results without a classifier may sit beside one (the same encoder's, as here)
    assert main(["knn", *common, *commands["knn"], "--out", str(tmp_path / "evals-finetune")]) == 0


def test_finetune_from_head_and_from_scratch(tmp_path, folders):
    train, test = folders
    torch.manual_seed(0)
    simclr = build_model(ModelConfig(arch="resnet18", width=0.125, head_layers=3,
                                     head_batch_norm=True, head_hidden_dim=32), 16)
    head_before = snapshot(simclr.head)
    result = run_finetune(simclr.encoder, train, test, tmp_path / "head", label_fraction=0.5,
                          head=simclr.head, from_head=True, **FAST)
    ckpt = load_checkpoint(result["checkpoint"])
    assert {k.split(".")[0] for k in ckpt["model"]} == {"encoder", "neck", "fc"}
    assert ckpt["model"]["fc.weight"].shape == (3, 32)  # reads the head's first layer
    # The checkpoint describes that head, so predict rebuilds the classifier, neck included.
    test_dir = tmp_path / "test"
    predicted = predict_folder(result["checkpoint"], str(test_dir), tmp_path / "p.csv",
                               device="cpu", precision="fp32", workers=0,
                               cache_dir=str(tmp_path / "cache"))
    assert predicted["labeled"] == 9 and predicted["top1"] == pytest.approx(result["top1"])
    assert all(torch.equal(v, simclr.head.state_dict()[k]) for k, v in head_before.items())

    runs = [run_finetune(simclr.encoder, train, test, None, from_scratch=True, seed=5,
                         labels_per_class=4, **FAST) for _ in range(2)]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]  # deterministic from the seed
    pretrained = run_finetune(simclr.encoder, train, test, None, seed=5, labels_per_class=4,
                              **FAST)
    assert pretrained["train_loss"] != runs[0]["train_loss"]  # a different starting point
    with pytest.raises(SimCLRError, match="--from-head"):
        run_finetune(simclr.encoder, train, test, None, from_head=True, **FAST)
    with pytest.raises(SimCLRError, match="--schedule"):
        run_finetune(simclr.encoder, train, test, None, schedule="step", **FAST)
    with pytest.raises(SimCLRError, match="fewer than the 9"):
        run_finetune(simclr.encoder, train, test, None, labels_per_class=9, **FAST)


def test_from_scratch_starts_a_fresh_encoder_as_pretraining_does():
    """--from-scratch (--random-init): a new encoder of the same architecture, read at
    the same side, each residual block's last BN at zero (as a run's training starts;
    --help says so), never the pretrained weights."""
    from simclr.finetune import finetune_model
    from simclr.models import BasicBlock

    encoder = tiny_encoder()
    encoder.image_size = 24
    fresh = finetune_model(encoder, None, 3, from_scratch=True).encoder
    assert (fresh.arch, fresh.width, fresh.cifar_stem, fresh.image_size) == \
        ("resnet18", 0.125, True, 24)
    blocks = [m for m in fresh.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(not b.last_bn.weight.any() for b in blocks)
    assert not torch.equal(fresh.stem[0].weight, encoder.stem[0].weight)
    # An encoder with --projection-shortcuts: the fresh one has them too (the same layers)
    from simclr.models import build_encoder

    shortcuts = build_encoder("resnet18", 0.125, cifar_stem=True, projection_shortcuts=True)
    fresh = finetune_model(shortcuts, None, 3, from_scratch=True).encoder
    assert fresh.projection_shortcuts and fresh.state_dict().keys() == \
        shortcuts.state_dict().keys()


def test_the_learning_rate_follows_the_schedule_and_the_batch_trained_at(tmp_path, folders):
    """Stopped at step 4 of 9: cosine has decayed the lr below its peak, constant keeps
    it; the peak is lr x B/256 of the batch trained at (3 images: batches of 3, not 6)."""
    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4, "on_step": stop_at(4)}
    lrs = {}
    for schedule in ("cosine", "constant"):
        run = tmp_path / schedule
        run_finetune(tiny_encoder(), train, test, run, schedule=schedule, **args)
        group = load_checkpoint(run / "checkpoints" / "finetune-partial.pt")["optimizer"][
            "param_groups"][0]
        assert group["peak_lr"] == pytest.approx(0.05 * 4 / 256)
        lrs[schedule] = group["lr"]
    assert lrs["cosine"] < lrs["constant"] == pytest.approx(0.05 * 4 / 256)
    small = run_finetune(tiny_encoder(), train, test, None, labels_per_class=1,
                         **{**FAST, "epochs": 1})
    assert small["batch_size"] == 3 and small["peak_lr"] == pytest.approx(0.05 * 3 / 256)


def test_weight_decay_reaches_the_weights_alone_and_fixes_the_training(tmp_path, folders):
    """--weight-decay (transfer fine-tuning, App. B.8): decayed convolution and linear
    weights, biases and BatchNorm not; recorded in the results; a saved fine-tuning
    continues only with its own, and one saved before the flag existed (no such setting)
    continues as 0."""
    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4}
    run = tmp_path / "wd"
    run_finetune(tiny_encoder(), train, test, run, weight_decay=0.01, on_step=stop_at(2),
                 **args)
    partial = run / "checkpoints" / "finetune-partial.pt"
    groups = load_checkpoint(partial)["optimizer"]["param_groups"]
    model = Classifier(tiny_encoder(), 2)
    weights = [p for p in model.parameters() if p.ndim > 1]
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [
        (0.01, len(weights)), (0.0, len(list(model.parameters())) - len(weights))]
    with pytest.raises(SimCLRError, match=r"other settings \(weight_decay: 0.01 saved, 0.0 now"):
        run_finetune(tiny_encoder(), train, test, run, **args)
    assert run_finetune(tiny_encoder(), train, test, run, weight_decay=0.01,
                        **args)["weight_decay"] == 0.01
    older = tmp_path / "older"
    run_finetune(tiny_encoder(), train, test, older, on_step=stop_at(2), **args)
    blob = torch.load(older / "checkpoints" / "finetune-partial.pt", weights_only=False)
    assert len(blob["optimizer"]["param_groups"]) == 1  # no decay: one group, as before
    del blob["settings"]["weight_decay"]
    torch.save(blob, older / "checkpoints" / "finetune-partial.pt")
    continued = run_finetune(tiny_encoder(), train, test, older, **args)
    assert (continued["steps"], continued["weight_decay"]) == (9, 0.0)


def test_run_finetune_defaults_are_the_papers():
    """App. B.5: batch 256 (lr 0.05 x B/256), Nesterov momentum 0.9, cosine decay,
    crop + flip at the usual scales, global BN, seed 0."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(run_finetune).parameters.items()}
    assert {k: defaults[k] for k in ("batch_size", "lr", "momentum", "schedule", "crop_scale",
                                     "sync_bn", "seed", "from_head", "from_scratch")} == {
        "batch_size": 256, "lr": 0.05, "momentum": 0.9, "schedule": "cosine",
        "crop_scale": (0.08, 1.0), "sync_bn": True, "seed": 0, "from_head": False,
        "from_scratch": False}


def test_a_finetuning_leaves_the_callers_random_stream_as_it_was(folders):
    train, test = folders
    torch.manual_seed(3)
    expected = torch.rand(4)
    encoder = tiny_encoder()
    torch.manual_seed(3)
    first = run_finetune(encoder, train, test, None, labels_per_class=2, from_scratch=True,
                         **{**FAST, "epochs": 1})
    assert torch.equal(torch.rand(4), expected)
    # ... nor is it drawn from it: the fresh encoder and new layer come from --seed alone
    torch.manual_seed(4)
    again = run_finetune(encoder, train, test, None, labels_per_class=2, from_scratch=True,
                         **{**FAST, "epochs": 1})
    assert again["train_loss"] == first["train_loss"]


def test_the_fine_tuned_checkpoint_names_what_it_started_from(tmp_path, folders):
    """Its encoder's pretraining step (source), that training's stop where it had not
    finished, and its own steps; from scratch, the random-init baseline, never the
    pretrained encoder's step."""
    from simclr.pretrained import trained_for

    train, test = folders
    source = {"checkpoint": str(tmp_path / "pre" / "last.pt"), "step": 7,
              "unfinished": {"step": 7, "total_steps": 9}}  # (a stopped pretraining's)
    for run, from_scratch, said in (("ft", False, "step 7 fine-tuned 2 steps"),
                                    ("scratch", True, "random init, fine-tuned 2 steps")):
        result = run_finetune(tiny_encoder(), train, test, tmp_path / run, labels_per_class=4,
                              from_scratch=from_scratch, source=source, **{**FAST, "epochs": 1})
        ckpt = load_checkpoint(result["checkpoint"])
        assert trained_for(ckpt) == said
        # (recorded in the file itself: it says so without the results beside it)
        assert ckpt.get("encoder_step") == (None if from_scratch else 7)
        # (and the stopped training it came from, which predict and export then say)
        assert ckpt.get("encoder_unfinished") == (None if from_scratch else source["unfinished"])


def test_a_batch_of_one_and_from_head_with_the_random_init_baseline_are_refused(
        tmp_path, folders):
    """Fine-tuning trains BatchNorm: a batch of one has no statistics. --from-head keeps
    the head's layer trained on the pretrained encoder: --random-init, --from-scratch's
    other name, re-initialises that encoder."""
    from simclr.finetune import check_start_flags

    train, test = folders
    with pytest.raises(SimCLRError, match=r"^--batch-size must be at least 2, got 1 "):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", **{**FAST, "batch_size": 1})
    assert not (tmp_path / "ft").exists()
    for scratch, random_init, flag in ((True, False, "--from-scratch"),
                                       (False, True, "--random-init")):
        with pytest.raises(SimCLRError, match=rf"give one of --from-head and {flag}$"):
            check_start_flags(True, scratch, random_init)
    check_start_flags(False, True, True)  # (the same baseline, named twice)
    with pytest.raises(SimCLRError, match=r"^--from-scratch re-initialises"):
        check_start_flags(True, True, True)  # both names: the first is said


def test_a_head_given_without_from_head_is_not_fine_tuned(tmp_path, folders):
    """The head's first layer joins the network only with --from-head."""
    train, test = folders
    head = build_model(ModelConfig(arch="resnet18", width=0.125), 16).head
    result = run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=2,
                          head=head, **{**FAST, "epochs": 1})
    ckpt = load_checkpoint(result["checkpoint"])
    assert {k.split(".")[0] for k in ckpt["model"]} == {"encoder", "fc"}
    assert result["from_head"] is False


def test_the_classes_a_subset_lacks_are_counted_and_named_up_to_five(capsys):
    from types import SimpleNamespace

    from simclr.finetune import _note_unlabeled_classes

    train = SimpleNamespace(classes=[f"c{i}" for i in range(9)], labels=list(range(9)))
    _note_unlabeled_classes(train, np.array([0, 1]), True)
    said = capsys.readouterr()
    assert "holds no image of 7 classes (c2, c3, c4, c5, c6 and 2 more)" in said.out + said.err
    _note_unlabeled_classes(train, np.arange(8), True)
    said = capsys.readouterr()
    assert "holds no image of 1 class (c8)" in said.out + said.err
    _note_unlabeled_classes(train, np.arange(3), True)  # six: the sixth is "1 more"
    said = capsys.readouterr()
    assert "holds no image of 6 classes (c3, c4, c5, c6, c7 and 1 more)" in said.out + said.err


def test_batch_larger_than_the_data(tmp_path, folders, capsys):
    """Fine-tuning a small labeled subset takes it whole and says so (supervised
    training refuses it: test_supervised)."""
    train, test = folders
    encoder = tiny_encoder()
    run_finetune(encoder, train, test, None, labels_per_class=2, **{**FAST, "epochs": 1,
                                                                     "verbose": True})
    assert "is more than the" not in capsys.readouterr().err  # 6 images: batches of 6
    run_finetune(encoder, train, test, None, labels_per_class=1, **{**FAST, "epochs": 1,
                                                                     "verbose": True})
    assert ("--batch-size 6 is more than the 3 labeled images: batches of 3, lr scaled by "
            "3/256") in capsys.readouterr().err


def test_crop_sampler_reaches_the_training_views(tmp_path, folders, monkeypatch):
    """--crop-sampler official: fine-tuning draws its crops as the official code does."""
    import simclr.classify as classify

    seen = []
    real = classify.augmented_batches

    def spy(source, indices, aug_cfg, **kwargs):
        seen.append(aug_cfg.crop_sampler)
        return real(source, indices, aug_cfg, **kwargs)

    monkeypatch.setattr(classify, "augmented_batches", spy)
    train, test = folders
    run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=2,
                 crop_sampler="official", **FAST)
    assert seen and set(seen) == {"official"}
    with pytest.raises(SimCLRError, match="--crop-sampler"):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft2", crop_sampler="tf", **FAST)


# ----------------------------------------------------- an interrupted fine-tuning continues

@pytest.mark.parametrize("from_head", [False, True])
def test_an_interrupted_finetuning_continues_exactly_with_the_same_command(
        tmp_path, folders, from_head):
    """12 labeled images, batch 4: 3 steps per epoch, 3 epochs. Stopped at step 4 (inside
    epoch 2) and rerun, it ends with the weights of an uninterrupted fine-tuning."""
    train, test = folders
    head = build_model(ModelConfig(arch="resnet18", width=0.125), 16).head if from_head else None
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4, "checkpoint_every": 2,
            "head": head, "from_head": from_head}
    whole = run_finetune(tiny_encoder(), train, test, tmp_path / "whole", **args)
    run = tmp_path / "cut"
    cut = run_finetune(tiny_encoder(), train, test, run, **args, on_step=stop_at(4))
    assert (cut["status"], cut["steps"], cut["signal"]) == ("preempted", 4, "SIGTERM")
    partial = run / "checkpoints" / "finetune-partial.pt"
    assert cut["checkpoint"] == str(partial) and load_checkpoint(partial)["step"] == 4
    run_id = load_checkpoint(partial)["run_id"]  # the fine-tuning's identity: kept
    assert not (run / "finetune.json").exists() and not (run / "checkpoints/finetune.pt").exists()
    done = run_finetune(tiny_encoder(), train, test, run, **args)
    assert done["status"] == "finished" and done["steps"] == whole["steps"] == 9
    assert done["top1"] == whole["top1"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "finetune.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "finetune.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not partial.exists()  # finetune.pt supersedes it
    assert load_checkpoint(run / "checkpoints" / "finetune.pt")["run_id"] == run_id
    assert load_checkpoint(tmp_path / "whole/checkpoints/finetune.pt")["run_id"] != run_id


def test_a_finetuning_stopped_in_its_last_epoch_reports_the_whole_epoch(tmp_path, folders):
    """Stopped at step 8 (inside the last epoch, steps 7-9) and rerun: the results give
    the whole last epoch's loss and top-1, as an uninterrupted run does (they counted
    only step 9, the epoch's running tally lost with the stop); a partial file saved
    without that tally (an older simclr's) still continues."""
    from simclr.checkpoint import save_checkpoint

    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4, "checkpoint_every": 2}
    whole = run_finetune(tiny_encoder(), train, test, tmp_path / "whole", **args)
    for run, older in ((tmp_path / "cut", False), (tmp_path / "older", True)):
        run_finetune(tiny_encoder(), train, test, run, **args, on_step=stop_at(8))
        partial = run / "checkpoints" / "finetune-partial.pt"
        if older:
            saved = load_checkpoint(partial)
            del saved["epoch_tally"]
            save_checkpoint(saved, partial.parent, partial.name, None)
        done = run_finetune(tiny_encoder(), train, test, run, **args)
        assert done["steps"] == 9 and done["top1"] == whole["top1"]
        same = (done["train_loss"], done["train_top1"]) == (whole["train_loss"],
                                                            whole["train_top1"])
        assert same != older  # (an older file's continuation counts its own steps only)
    saved = json.loads((tmp_path / "cut" / "finetune.json").read_text())
    assert (saved["train_loss"], saved["train_top1"]) == (whole["train_loss"],
                                                          whole["train_top1"])


def test_an_interrupted_finetuning_is_never_continued_with_other_settings(tmp_path, folders):
    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4}
    run = tmp_path / "ft"
    run_finetune(tiny_encoder(), train, test, run, **args, on_step=stop_at(2))
    saved = (run / "checkpoints" / "finetune-partial.pt").read_bytes()
    for change, named in (({"epochs": 4}, "epochs: 3 saved, 4 now"),
                          ({"lr": 0.1}, "lr: 0.05 saved, 0.1 now"),
                          ({"momentum": 0.8}, "momentum: 0.9 saved, 0.8 now"),
                          ({"labels_per_class": 3}, "subset: '[0-9a-f]+' saved, '[0-9a-f]+' now"),
                          ({"seed": 1}, "subset: .*; seed: 0 saved, 1 now"),
                          ({"from_scratch": True}, "from_scratch: False saved, True now"),
                          ({"precision": "bf16"}, "precision: 'fp32' saved, 'bf16' now"),
                          ({"source": {"test": {"fraction": 0.5}}},  # another part trains
                           "test_fraction: None saved, 0.5 now")):
        with pytest.raises(SimCLRError, match=rf"^{run} holds an unfinished fine-tuning "
                                              rf"\(finetune-partial.pt\) with other settings "
                                              rf"\({named}\); rerun its own command"):
            run_finetune(tiny_encoder(), train, test, run, **{**args, **change})
    # The subset alone differs (another draw: an earlier simclr's): the list it trains on
    # continues it, where its own command would draw the other subset again.
    # With the epochs saved: --subset's default follows the list's share of the images.
    with pytest.raises(SimCLRError, match=r"rerun its own command to continue it, with --subset "
                                          rf"{run}/labeled_subset.txt --epochs 3 \(the images "
                                          r"it trains on\) in place of --label-fraction / "
                                          r"--labels-per-class, pass --overwrite"):
        run_finetune(tiny_encoder(), train, test, run, **{**args, "labels_per_class": 3})
    import shutil

    copy = shutil.copytree(run, tmp_path / "ft-copy")  # (run stays unfinished below)
    continued = run_finetune(tiny_encoder(), train, test, copy, **{
        **{k: v for k, v in args.items() if k != "labels_per_class"},
        "subset_file": copy / "labeled_subset.txt"})
    assert (continued["num_labeled"], continued["steps"]) == (12, 9)
    # A source without files (the digits) lists `#index N` lines, which --subset cannot
    # read: no hint then.
    (run / "labeled_subset.txt").write_text("#index 0\n#index 5\n")
    with pytest.raises(SimCLRError, match=r"rerun its own command to continue it, pass "):
        run_finetune(tiny_encoder(), train, test, run, **{**args, "labels_per_class": 3})
    # The same checkpoint path and step, other weights (pretrained again in place).
    with pytest.raises(SimCLRError, match=r"with other settings \(weights: '[0-9a-f]+' saved"):
        run_finetune(tiny_encoder(seed=1), train, test, run, **args)
    # Not a result: commands given the folder do not take it for the fine-tuned model.
    from simclr.checkpoint_read import checkpoint_file

    with pytest.raises(SimCLRError, match=r"holds only an unfinished training \(finetune-"
                                          r"partial.pt\): rerun the command that was stopped"):
        checkpoint_file(run)
    assert (run / "checkpoints" / "finetune-partial.pt").read_bytes() == saved
    # A damaged one is kept for the user, with what to do.
    (run / "checkpoints" / "finetune-partial.pt").write_bytes(saved[:100])
    with pytest.raises(SimCLRError, match=r"truncated, corrupt .*; delete it or pass "
                                          r"--overwrite to start the fine-tuning in .* again$"):
        run_finetune(tiny_encoder(), train, test, run, **args)
    assert (run / "checkpoints" / "finetune-partial.pt").read_bytes() == saved[:100]


def test_an_interrupted_finetuning_is_never_continued_with_other_views_or_classes(
        tmp_path, folders):
    """The crops, the batch, the schedule, the side and the classes fix a fine-tuning too."""
    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4}
    run = tmp_path / "ft"
    run_finetune(tiny_encoder(), train, test, run, **args, on_step=stop_at(2))
    for change, named in (({"crop_scale": (0.5, 1.0)}, r"crop: \[0.08, 1.0, 'torchvision'\] "
                                                       r"saved, \[0.5, 1.0, 'torchvision'\] now"),
                          ({"batch_size": 6}, "batch_size: 4 saved, 6 now"),
                          ({"schedule": "constant"}, "schedule: 'cosine' saved, 'constant' now"),
                          ({"image_size": 24}, "image_size: 16 saved, 24 now")):
        with pytest.raises(SimCLRError, match=rf"with other settings \({named}\)"):
            run_finetune(tiny_encoder(), train, test, run, **{**args, **change})
    train.classes = test.classes = ["a", "b", "c"]  # (the same images renamed)
    with pytest.raises(SimCLRError, match=r"with other settings \(classes: "):
        run_finetune(tiny_encoder(), train, test, run, **args)


def test_an_interrupted_finetuning_of_a_moved_run_continues(tmp_path, folders):
    """The run folder moved (or renamed) since: the same encoder, by its weights, under
    another path. It was refused ('source: ...a/last.pt saved, ...b/last.pt now'), and
    --overwrite threw the training away. Another step of the same path stays refused."""
    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4}
    run = tmp_path / "ft"
    was = {"checkpoint": "/runs/a/checkpoints/last.pt", "step": 5}
    run_finetune(tiny_encoder(), train, test, run, **args, source=was, on_step=stop_at(2))
    with pytest.raises(SimCLRError, match=r"with other settings \(source: .* saved"):
        run_finetune(tiny_encoder(), train, test, run, **args, source={**was, "step": 6})
    moved = {"checkpoint": "/runs/b/checkpoints/last.pt", "step": 5}
    done = run_finetune(tiny_encoder(), train, test, run, **args, source=moved)
    assert done["status"] == "finished" and done["steps"] == 9


def test_overwrite_starts_over_an_unfinished_finetuning_it_cannot_continue(
        tmp_path, folders, capsys):
    """--overwrite: an unfinished fine-tuning saved with other settings, or damaged, is
    deleted with a note and this one trains from step 0; one with the same settings is
    continued (an exact resume ends where a new start would)."""
    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 2, "labels_per_class": 4}
    whole = run_finetune(tiny_encoder(), train, test, tmp_path / "whole", **args)
    run = tmp_path / "ft"
    partial = run / "checkpoints" / "finetune-partial.pt"
    run_finetune(tiny_encoder(), train, test, run, **{**args, "lr": 0.1}, on_step=stop_at(2))
    capsys.readouterr()
    done = run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True)
    assert f"note: --overwrite: the unfinished fine-tuning in {run} (finetune-partial.pt) " \
           "has other settings (lr: 0.1 saved, 0.05 now); deleted, starting over" \
           in capsys.readouterr().err
    assert done["steps"] == whole["steps"] and done["top1"] == whole["top1"]
    assert not partial.exists()
    run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True, on_step=stop_at(2))
    partial.write_bytes(partial.read_bytes()[:100])
    done = run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True)
    assert "(finetune-partial.pt) cannot be read; deleted, starting over" in \
        capsys.readouterr().err
    assert done["steps"] == whole["steps"] and done["top1"] == whole["top1"]
    run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True, on_step=stop_at(2))
    steps: list[int] = []
    done = run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True,
                        on_step=lambda step, stop: steps.append(step))
    assert "starting over" not in capsys.readouterr().err and done["steps"] == whole["steps"]
    assert steps[0] == 3 and done["top1"] == whole["top1"]  # continued after step 2


def test_a_stop_during_the_test_keeps_the_finished_training(tmp_path, folders, monkeypatch,
                                                             capsys):
    """SIGTERM (interrupts.Terminated) while the finished fine-tuning is tested: its training
    stays in finetune-partial.pt, the message says so, and the same command only tests
    again (no step trained anew), ending as an uninterrupted run."""
    import simclr.finetune as finetune
    from simclr.exit_status import _continue_after
    from simclr.interrupts import Terminated

    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4}
    whole = run_finetune(tiny_encoder(), train, test, tmp_path / "whole", **args)
    run = tmp_path / "ft"

    stop = stopped_in(monkeypatch, finetune, "evaluate_classifier", Terminated,
                      lambda: run_finetune(tiny_encoder(), train, test, run, **args))
    partial = run / "checkpoints" / "finetune-partial.pt"
    assert load_checkpoint(partial)["step"] == whole["steps"] == 9
    assert _continue_after(stop.value, "simclr finetune") == (
        f"; its finished training stays in {partial}: the same command only tests it")
    steps: list[int] = []
    done = run_finetune(tiny_encoder(), train, test, run, **{**args, "verbose": True},
                        on_step=lambda step, _: steps.append(step))
    assert f"the fine-tuning in {run} finished its 9 steps before it was stopped: testing " \
           "it again" in capsys.readouterr().err
    assert not steps and done["steps"] == 9 and done["top1"] == whole["top1"]
    assert (done["train_loss"], done["train_top1"]) == (whole["train_loss"], whole["train_top1"])
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "finetune.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "finetune.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not partial.exists() and (run / "finetune.json").exists()


@pytest.mark.parametrize("where", ["finish_results", "save_confusion_figure"])
def test_a_stop_while_the_results_are_written_leaves_the_same_command_to_finish(
        tmp_path, folders, monkeypatch, where):
    """A stop (a kill) after finetune.pt was saved but before finetune.json was written,
    or while the confusion figure was drawn: the same command tests the finished
    training again and writes the results (it refused the folder, 'already holds
    checkpoints/finetune.pt', or said nothing was left to do, the figure lost; and
    --overwrite trained anew). A classifier beside another training's unfinished state
    is still an earlier run's, refused."""
    import simclr.finetune as finetune
    import simclr.results as results_module
    from simclr.interrupts import Terminated

    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 4}
    whole = run_finetune(tiny_encoder(), train, test, tmp_path / "whole", **args)
    run = tmp_path / "ft"

    stopped_in(monkeypatch, finetune if where == "finish_results" else results_module, where,
               Terminated, lambda: run_finetune(tiny_encoder(), train, test, run, **args))
    assert (run / "checkpoints" / "finetune.pt").exists()
    assert (run / "finetune.json").exists() == (where == "save_confusion_figure")
    steps: list[int] = []
    done = run_finetune(tiny_encoder(), train, test, run, **args,
                        on_step=lambda step, _: steps.append(step))
    assert not steps and done["steps"] == 9 and done["top1"] == whole["top1"]
    saved = json.loads((run / "finetune.json").read_text())
    assert saved["top1"] == whole["top1"] and saved["train_loss"] == whole["train_loss"]
    assert Path(saved["confusion_figure"]).is_file()
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "finetune.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "finetune.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (run / "checkpoints" / "finetune-partial.pt").exists()
    # Another training stopped beside a finished run's classifier: no licence to replace it.
    (run / "finetune.json").unlink()
    run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True, on_step=stop_at(2))
    with pytest.raises(SimCLRError, match="already holds checkpoints/finetune.pt"):
        run_finetune(tiny_encoder(), train, test, run, **args)


def test_sigterm_exits_75_and_the_same_command_finishes(tmp_path):
    """A real signal on a real `simclr finetune` process."""
    train, test, cache = tiny_pretrained_run(tmp_path)
    run = tmp_path / "ft"
    command = [sys.executable, "-m", "simclr", "finetune", "--checkpoint", str(tmp_path / "pre"),
               "--train", str(train), "--test", str(test), "--out", str(run), "--epochs", "50",
               "--batch-size", "8", "--checkpoint-every", "2", "--workers", "0",
               "--cache-dir", cache, "--precision", "fp32", "--threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = run / "checkpoints" / "finetune-partial.pt"
    deadline = time.monotonic() + 120
    while not partial.exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "stopped by SIGTERM; the same command continues it" in err
    step = load_checkpoint(partial)["step"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming the fine-tuning in {run} from step {step}" in done.stderr
    assert json.loads((run / "finetune.json").read_text())["steps"] == 100


@pytest.mark.parametrize("command", ["finetune", "linear-eval"])
def test_checkpoint_minutes_reach_the_training(tmp_path, monkeypatch, command):
    """--checkpoint-minutes (fine-tuning, SGD linear evaluation) sets the clock of the
    periodic saves (the clock itself: test_classify)."""
    import simclr.partial as partial
    from simclr.cli import main

    seen = []

    class Recorded(partial.Checkpointing):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.every_s)

    monkeypatch.setattr(partial, "Checkpointing", Recorded)  # (PartialRun.checkpointing)
    train, test, cache = tiny_pretrained_run(tmp_path)
    extra = ["--protocol", "sgd"] if command == "linear-eval" else []
    assert main([command, "--checkpoint", str(tmp_path / "pre"), "--train", str(train),
                 "--test", str(test), "--out", str(tmp_path / "out"), "--epochs", "1",
                 "--batch-size", "8", "--workers", "0", "--cache-dir", cache,
                 "--precision", "fp32", "--checkpoint-minutes", "2", *extra]) == 0
    assert seen == [120.0]


def test_one_labeled_folder_split_into_train_and_test(tmp_path, capsys):
    """--test-fraction: a class-balanced held-out part of --train is the test set, never
    trained on (here photos larger than the cache takes: the training part is stored
    for augmentation, the test part for the evaluation transform, the same files)."""
    from simclr.cli import main

    _, _, cache = tiny_pretrained_run(tmp_path)
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=8, side=120,
                               ext="jpg")
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(photos), "--workers", "0",
              "--cache-dir", cache, "--precision", "fp32"]
    assert main(["finetune", *common, "--test-fraction", "0.25", "--out",
                 str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "4"]) == 0
    result = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert result["num_test"] == 4 and result["num_labeled"] == 12
    assert result["source"]["test"] == {"held_out_of": str(photos), "fraction": 0.25,
                                        "seed": 0}
    trained = (tmp_path / "ft" / "labeled_subset.txt").read_text().split()
    from simclr.folders import scan_folder
    from simclr.logistic import stratified_split

    listing = scan_folder(photos)
    fit, _ = stratified_split(listing.labels, 0.25, 0)
    assert sorted(trained) == sorted(Path(os.path.relpath(listing.paths[i], photos)).as_posix()
                                     for i in fit)  # the rest is the test
    assert main(["knn", *common, "--test-fraction", "0.25"]) == 0
    knn = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (knn["num_train"], knn["num_test"]) == (12, 4)
    assert main(["linear-eval", *common, "--test-fraction", "0.25"]) == 0
    linear = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (linear["num_train"], linear["num_test"]) == (12, 4)
    assert linear["source"]["test"] == result["source"]["test"]
    assert main(["transform-probe", *common, "--test-fraction", "0.25", "--task", "rotation",
                 "--epochs", "1", "--out", str(tmp_path / "probe")]) == 0
    probe = json.loads(capsys.readouterr().out.splitlines()[-1])
    rotation = probe["tasks"]["rotation"]  # each image in 4 rotations (2 views: train)
    assert (rotation["num_train"], rotation["num_test"]) == (2 * 12, 4)
    assert probe["source"]["test"] == result["source"]["test"]
    for both_or_neither in (["--test", str(photos), "--test-fraction", "0.5"], []):
        assert main(["knn", *common, *both_or_neither]) == 2
        assert "give --test DIR or --test-fraction F" in capsys.readouterr().err
    # A subset list names files of the training part, relative to the folder; one of
    # the held-out part, or more labels per class than the part has, is refused early.
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in trained[:2]))
    assert main(["finetune", *common, "--test-fraction", "0.25", "--out",
                 str(tmp_path / "ft2"), "--epochs", "1", "--batch-size", "2", "--subset",
                 str(tmp_path / "list.txt")]) == 0
    capsys.readouterr()
    relative = [Path(os.path.relpath(p, photos)).as_posix() for p in listing.paths]
    held = sorted(set(relative) - set(trained))[0]
    (tmp_path / "list.txt").write_text(f"{trained[0]}\n{held}\n")
    for extra, why in ((["--subset", str(tmp_path / "list.txt")],
                        f"1 of the listed images are among those --test-fraction holds out "
                        f"for testing (first: {held!r})"),  # (it said: not in the folder)
                       (["--labels-per-class", "7"], "fewer than the 7 per class")):
        assert main(["finetune", *common, "--test-fraction", "0.25", "--out",
                     str(tmp_path / "ft3"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err
        assert not (tmp_path / "ft3").exists()


def test_a_data_root_with_splits_gives_train_to_train_and_test_to_test(tmp_path, capsys):
    """`--train ROOT --test ROOT` on a folder holding train/ and test/: each its split
    (--train used to read test/ too, evaluating the test split against itself)."""
    from simclr.cli import main

    _, _, cache = tiny_pretrained_run(tmp_path)
    make_image_folder(tmp_path / "root" / "train", classes=2, per_class=6)
    make_image_folder(tmp_path / "root" / "test", classes=2, per_class=3, seed=1)
    root = str(tmp_path / "root")
    assert main(["knn", "--checkpoint", str(tmp_path / "pre"), "--train", root, "--test", root,
                 "--workers", "0", "--cache-dir", cache, "--precision", "fp32"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (result["num_train"], result["num_test"]) == (12, 6)


def test_the_plan_is_said_in_words_that_fit(capsys):
    from simclr.finetune import _say_plan

    _say_plan(10, 0.1, 1, 1, 10, True)
    said = capsys.readouterr()
    assert (said.out + said.err).splitlines() == [
        "fine-tuning on 10 labeled images (10.00%), 1 epoch of 1 step",
        "note: 1 step in all; a smaller --batch-size or more --epochs trains more"]
    _say_plan(13, 0.1, 2, 6, 4, True)
    said = capsys.readouterr()
    assert (said.out + said.err).splitlines()[1] == (
        "note: 6 steps in all, 1 of the 13 labeled images left out of each epoch at batch 4; "
        "a smaller --batch-size or more --epochs trains more")
    # Enough steps (FEW_STEPS): the note only when more than a quarter is left out.
    _say_plan(100, 0.1, 25, 50, 75, True)  # 25 of 100 left out: a quarter
    said = capsys.readouterr()
    assert len((said.out + said.err).splitlines()) == 1
    _say_plan(100, 0.1, 25, 50, 37, True)  # 26 of 100
    said = capsys.readouterr()
    assert (said.out + said.err).splitlines()[1] == (
        "note: 50 steps in all, 26 of the 100 labeled images left out of each epoch at "
        "batch 37; a smaller --batch-size or more --epochs trains more")


def test_a_fraction_rounded_up_to_an_image_per_class_keeps_its_regimes_epochs(folders, capsys):
    """1% of a small set draws one image per class, 12.5% of it here: the paper's budget
    is still the 1% regime's (60 epochs, not 10%'s 30), and the rounding is said."""
    from simclr.finetune import _labeled_budget

    train, _ = folders
    budget = _labeled_budget(train, None, 0.01, None, None, 6, 0, True)
    assert len(budget.subset) == 3 and budget.fraction == 3 / 24 and budget.epochs == 60
    said = capsys.readouterr()
    assert "note: --label-fraction 0.01 rounds to 1 image per class here (3 of 24, 12.50%); " \
           "its epochs are still those of 0.01" in said.out + said.err
    assert _labeled_budget(train, None, 0.5, None, None, 6, 0, True).epochs == 30
    said = capsys.readouterr()
    assert "note" not in said.out + said.err  # 4 of 8 per class: as asked
    assert _labeled_budget(train, None, None, 1, None, 6, 0, True).epochs == 30  # 12.5%
    assert _labeled_budget(train, None, 0.01, None, 5, 6, 0, True).epochs == 5
    said = capsys.readouterr()  # --epochs given: the note says only the rounding
    assert "note: --label-fraction 0.01 rounds to 1 image per class here (3 of 24, " \
           "12.50%)\n" in said.out + said.err
    # Said past 1.5 times the fraction asked: 12.5% is 1.56 x 0.08, 1.45 x 0.086, 1.39 x 0.09.
    for asked, noted in ((0.08, True), (0.086, False), (0.09, False)):
        assert _labeled_budget(train, None, asked, None, None, 6, 0, True).fraction == 3 / 24
        said = capsys.readouterr()
        assert ("note: --label-fraction" in said.out + said.err) == noted


@pytest.mark.parametrize("flag, value", [("lr", 0), ("lr", -0.1), ("epochs", 0)])
def test_a_learning_rate_or_epochs_of_zero_is_refused_before_any_training(tmp_path, folders,
                                                                         flag, value):
    """lr 0 (or epochs 0) would train nothing and report the encoder's top-1 as fine-tuned."""
    train, test = folders
    with pytest.raises(SimCLRError, match=rf"^--{flag} must be positive, got {value}$"):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", **{**FAST, flag: value})
    assert not (tmp_path / "ft").exists()


def test_a_labeled_subset_of_one_image_is_refused_before_any_training(tmp_path, folders):
    """One labeled image is one batch of one, whose BatchNorm has no statistics: refused
    in a line, with nothing written (a --subset list naming a single file)."""
    train, test = folders
    listing = tmp_path / "one.txt"
    listing.write_text("class_1/002.png\n")
    with pytest.raises(SimCLRError, match="the labeled subset has 1 image; fine-tuning "
                                          "needs at least 2"):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", subset_file=listing, **FAST)
    assert not (tmp_path / "ft").exists()


def test_a_divergence_in_the_last_step_is_the_trainings_not_the_checkpoints(tmp_path, folders):
    """The losses are measured before each update: one step at lr 1e6 logged a finite
    loss and the test then blamed "a diverged or damaged checkpoint?"."""
    train, test = folders
    with pytest.raises(SimCLRError, match="the trained model's outputs are not finite: its "
                                          "training diverged; train it again with a lower "
                                          "--lr"):
        run_finetune(tiny_encoder(), train, test, None, labels_per_class=4,
                     **{**FAST, "epochs": 0.5, "lr": 1e6})


def test_a_subset_without_some_classes_is_said(tmp_path, folders, capsys):
    """A --subset list of class_0's images alone trained a 3-class classifier on one
    class, its test counting the other two, without a word."""
    train, test = folders
    listing = tmp_path / "one_class.txt"
    listing.write_text("class_0/000.png\nclass_0/001.png\n")
    run_finetune(tiny_encoder(), train, test, None, subset_file=listing,
                 **{**FAST, "verbose": True})
    assert ("note: the labeled subset holds no image of 2 classes (class_1, class_2): the "
            "classifier never learns them") in capsys.readouterr().err
    listing.write_text("class_0/000.png\nclass_1/001.png\nclass_2/002.png\n")
    run_finetune(tiny_encoder(), train, test, None, subset_file=listing,
                 **{**FAST, "verbose": True})
    assert "holds no image" not in capsys.readouterr().err


@pytest.mark.parametrize("channels_last", [True, False])
def test_finetune_trains_and_tests_in_channels_last_by_default(folders, channels_last):
    """Its copy of the encoder and the views in channels_last unless turned off (the
    faster layout), in the training steps and the test alike; recorded in the results."""
    train, test = folders
    enc = tiny_encoder()
    seen = first_conv_formats(enc)  # (the hook is copied with the encoder)
    kwargs = {} if channels_last else {"channels_last": False}
    result = run_finetune(enc, train, test, None, labels_per_class=4, **FAST, **kwargs)
    assert len(seen) >= 3 and set(seen) == {(channels_last, channels_last)}
    assert result["channels_last"] is channels_last


@pytest.mark.parametrize("cache", ["on", "off"])
def test_an_unreadable_image_of_the_subset_is_left_out_never_replaced_from_outside(
        tmp_path, monkeypatch, caplog, capsys, cache):
    """A --subset file that cannot be decoded: fine-tuning trains on the subset's other
    images alone, cached or decoded per epoch (uncached, an image outside the subset took
    its place, trained with its label: a leak into the 1%/10% protocol; cached, the run
    failed saying the file was "not in the folder"), says which file and why, and
    records the subset it trained on (labeled_subset.txt, num_labeled)."""
    import logging
    from contextlib import closing

    import simclr.classifier_setup
    from simclr.config import DataConfig
    from simclr.data import open_source

    root = make_image_folder(tmp_path / "train", classes=3, per_class=6, side=16)
    (root / "class_1" / "002.png").write_bytes(b"not an image")
    test_dir = make_image_folder(tmp_path / "test", classes=3, per_class=2, side=16, seed=1)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, cache=cache)
    train = open_source(str(root), cfg, train=True, image_size=16)
    test = open_source(str(test_dir), cfg, train=False, image_size=16)
    assert train.cached == (cache == "on")
    names = ["class_0/000.png", "class_0/003.png", "class_1/001.png", "class_1/002.png",
             "class_2/004.png", "class_2/005.png"]
    listing = tmp_path / "subset.txt"
    listing.write_text("".join(f"{n}\n" for n in names))
    readable = {n for n in names if n != "class_1/002.png"}
    seen: set[str] = set()
    real = simclr.classifier_setup.iter_batches

    def spy(source, *args, **kwargs):  # the files of the images trained on
        with closing(real(source, *args, **kwargs)) as batches:
            for idx, images, aspect in batches:
                seen.update(source.paths[i] for i in idx.tolist())
                yield idx, images, aspect

    monkeypatch.setattr(simclr.classifier_setup, "iter_batches", spy)
    with caplog.at_level(logging.WARNING):
        result = run_finetune(tiny_encoder(), train, test, tmp_path / "ft",
                              subset_file=listing, **{**FAST, "epochs": 3})

    def relative(path: str) -> str:
        return Path(path).relative_to(root.resolve()).as_posix()

    assert {relative(p) for p in seen} <= readable and len(seen) >= 4
    listed = (tmp_path / "ft" / "labeled_subset.txt").read_text().split()
    assert set(listed) == readable and result["num_labeled"] == 5
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    # The fraction trained on: 5 of the training folder's 18 files, not the 6 listed (nor
    # of the 17 a decoded cache holds: the share is the same cached or not).
    assert saved["num_labeled"] == 5 and saved["label_fraction"] == result["label_fraction"] \
        == 5 / 18
    said = [line for line in caplog.text.splitlines() + capsys.readouterr().err.splitlines()
            if "class_1/002.png" in line]
    assert said and all("not in the folder" not in line for line in said)
    assert any("unreadable" in line or "cannot" in line for line in said)


def test_a_drawn_subset_with_an_unreadable_file_is_the_same_cached_or_not(tmp_path):
    """--label-fraction with an unreadable file in the folder: the same seed trains the
    same images, and records the same list and share, whether a decoded cache leaves the
    file out (17 images) or the training meets it (18 listed). Before, the cache drew over
    its 17 alone: a smaller K per class (0.25 x 17 / 3 rounds to 1, not 2) and the next in
    rank in the file's place, a subset of other images and another label_fraction."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    root = make_image_folder(tmp_path / "train", classes=3, per_class=6, side=16)
    test_dir = make_image_folder(tmp_path / "test", classes=3, per_class=2, side=16, seed=1)
    cfg = {"cache_dir": str(tmp_path / "cache"), "workers": 0}
    listing = open_source(str(root), DataConfig(**cfg, cache="off"), image_size=16)
    drawn = [listing.paths[i] for i in labeled_subset(listing, None, 0.25, None, 0)]
    Path(drawn[0]).write_bytes(b"not an image")  # one the draw picks
    runs = {}
    for cache in ("off", "on"):
        train = open_source(str(root), DataConfig(**cfg, cache=cache), image_size=16)
        test = open_source(str(test_dir), DataConfig(**cfg, cache=cache), train=False,
                           image_size=16)
        result = run_finetune(tiny_encoder(), train, test, tmp_path / cache, label_fraction=0.25,
                              **{**FAST, "epochs": 1})
        runs[cache] = ((tmp_path / cache / "labeled_subset.txt").read_text().split(),
                       result["num_labeled"], result["label_fraction"])
        assert result["label_fraction_asked"] == 0.25  # (the share trained on: 5/18)
    names = sorted(Path(p).relative_to(root.resolve()).as_posix() for p in drawn[1:])
    assert runs["on"] == runs["off"] == (names, 5, 5 / 18)


@pytest.mark.parametrize("old_file", [False, True])
def test_a_continued_finetuning_records_the_subset_trained_on_as_an_uninterrupted_one(
        tmp_path, monkeypatch, old_file):
    """The files an earlier session found unreadable are kept with the unfinished state
    (finetune-partial.pt's ``skipped_images``, as pretraining's checkpoint keeps them):
    stopped in the test and continued, the run recorded the unreadable subset image as
    trained on (num_labeled 6, labeled_subset.txt naming it), where one run recorded the
    5 it trained on. A partial file saved without the entry still continues."""
    import simclr.finetune as finetune
    from simclr.config import DataConfig
    from simclr.data import open_source

    root = make_image_folder(tmp_path / "train", classes=3, per_class=6, side=16)
    (root / "class_1" / "002.png").write_bytes(b"not an image")
    test_dir = make_image_folder(tmp_path / "test", classes=3, per_class=2, side=16, seed=1)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, cache="off")
    names = ["class_0/000.png", "class_0/003.png", "class_1/001.png", "class_1/002.png",
             "class_2/004.png", "class_2/005.png"]
    listing = tmp_path / "subset.txt"
    listing.write_text("".join(f"{n}\n" for n in names))

    def session() -> dict:  # each session opens the folder anew, as a new command does
        train = open_source(str(root), cfg, train=True, image_size=16)
        test = open_source(str(test_dir), cfg, train=False, image_size=16)
        return run_finetune(tiny_encoder(), train, test, tmp_path / "ft",
                            subset_file=listing, **{**FAST, "epochs": 3})

    stopped_in(monkeypatch, finetune, "evaluate_classifier", KeyboardInterrupt, session)
    partial = tmp_path / "ft" / "checkpoints" / "finetune-partial.pt"
    if old_file:  # saved before the entry was: continues, as before
        saved = torch.load(partial, weights_only=False)
        bad = str((root / "class_1" / "002.png").resolve())
        assert [path for path, _ in saved["skipped_images"]] == [bad]
        del saved["skipped_images"]
        torch.save(saved, partial)
        assert session()["steps"] == saved["step"]
        return
    result = session()
    listed = (tmp_path / "ft" / "labeled_subset.txt").read_text().split()
    assert set(listed) == set(names) - {"class_1/002.png"} and result["num_labeled"] == 5
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text())["num_labeled"] == 5


def test_an_unfinished_finetuning_of_a_folder_read_anew_as_its_split_says_so(tmp_path):
    """DIR holding Train/ and Test/ (split names in capitals): releases before 2026-12-06
    read it as one folder whose classes were Test and Train; this one reads DIR/Train/.
    Their unfinished fine-tuning, rerun with its own command, was refused with 'other
    settings (subset ...; classes: ['Test', 'Train'] saved, ...); rerun its own command
    to continue it': the user had. It says why it cannot continue; --overwrite starts over."""
    from simclr.checkpoint import save_checkpoint
    from simclr.subsets import subset_digest
    from tests.conftest import capital_split_sources

    data, train, test = capital_split_sources(tmp_path)
    args = {**FAST, "batch_size": 4, "epochs": 3, "checkpoint_every": 2}
    run = tmp_path / "ft"
    run_finetune(tiny_encoder(), train, test, run, **args, on_step=stop_at(2))
    # What the earlier release saved: the classes and subset of the whole folder (16 images).
    partial = run / "checkpoints" / "finetune-partial.pt"
    saved = load_checkpoint(partial)
    saved["classes"] = saved["settings"]["classes"] = ["Test", "Train"]
    saved["settings"]["subset"] = subset_digest(np.arange(16), 16)
    save_checkpoint(saved, partial.parent, partial.name, None)
    with pytest.raises(SimCLRError, match=re.escape(
            f"{run} holds an unfinished fine-tuning (finetune-partial.pt) that cannot "
            f"continue: this release reads {data} as its split Train/ (12 images), where the "
            "unfinished training's release read its splits as two classes (Test, Train; the "
            "held-out images trained on too); pass --overwrite to start this one over it, or "
            "choose another --out")):
        run_finetune(tiny_encoder(), train, test, run, **args)
    done = run_finetune(tiny_encoder(), train, test, run, **args, overwrite=True)
    assert done["status"] == "finished" and done["steps"] == 9


def test_a_continued_finetuning_trains_to_the_length_it_was_saved_with(tmp_path, folders):
    """Its steps counted otherwise now (3, where the unfinished run recorded 5): the
    continuation ends at the run's own length, the one it started its schedule with."""
    from simclr.checkpoint import save_checkpoint

    train, test = folders
    args = {**FAST, "batch_size": 4, "epochs": 3, "labels_per_class": 2, "checkpoint_every": 2}
    run = tmp_path / "ft"
    run_finetune(tiny_encoder(), train, test, run, **args, on_step=stop_at(2))
    partial = run / "checkpoints" / "finetune-partial.pt"
    saved = load_checkpoint(partial)
    assert saved["total_steps"] == 3
    saved["total_steps"] = 5
    save_checkpoint(saved, partial.parent, partial.name, None)
    assert run_finetune(tiny_encoder(), train, test, run, **args)["steps"] == 5


def test_per_process_batch_norm_over_one_image_is_refused_before_any_work(
        tmp_path, folders, monkeypatch):
    """--no-sync-bn under 4 processes at --batch-size 4: each process's BatchNorm would
    take its statistics from one image; refused, with nothing written."""
    from simclr import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    train, test = folders
    with pytest.raises(SimCLRError, match="^--no-sync-bn: each of the 4 processes would take "
                                          "BatchNorm statistics from 1 image"):
        run_finetune(tiny_encoder(), train, test, tmp_path / "ft", labels_per_class=4,
                     sync_bn=False, **{**FAST, "batch_size": 4})
    assert not (tmp_path / "ft").exists()
