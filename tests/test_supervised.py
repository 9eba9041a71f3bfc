"""The supervised baseline: training, its checkpoint in every command, time budgets,
periodic checkpoints, preemption and exact resume."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from simclr.checkpoint import periodic_checkpoints, save_checkpoint
from simclr.checkpoint_read import load_checkpoint
from simclr.cli import main
from simclr.config_file import load_yaml
from simclr.errors import SimCLRError
from simclr.finetune import run_finetune
from simclr.pretrained import encoder_from_checkpoint
from simclr.settings import build_config
from simclr.supervised import resume_config, run_supervised
from tests.conftest import check_ranked_test, make_image_folder, recorded_test, stop_at
from tests.image_files import rgb, save_image

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"image_size": 16, "batch_size": 6, "epochs": 2, "device": "cpu", "precision": "fp32",
        "workers": 0, "verbose": False}
TINY = {"model.arch": "resnet18", "model.width": 0.125, "augment.size": 16, "device": "cpu",
        "precision": "fp32", "data.workers": 0, "channels_last": False}


def tiny_command(train: Path, run: Path, tmp_path: Path, *extra: str, test: Path | None = None,
                 batch: int = 8, epochs: int = 2) -> list[str]:
    """`simclr supervised` on ``train`` (and ``test``) into ``run``: a width-1/8 ResNet-18
    on 16-px views for a few steps on the CPU, its cache under ``tmp_path``; ``extra``
    flags last."""
    return ["supervised", "--train", str(train), *(["--test", str(test)] if test else []),
            "--out", str(run), "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
            "--batch-size", str(batch), "--epochs", str(epochs), "--precision", "fp32",
            "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", *extra]


def test_batch_larger_than_the_data_is_refused_before_writing(tmp_path, folders):
    """As pretraining does (fine-tuning a small subset takes it whole: test_finetune)."""
    train, test = folders
    cfg = build_config(flags={**TINY, "batch_size": 32})
    with pytest.raises(SimCLRError, match=r"^--batch-size 32 is larger than the data set "
                                          r"\(24 images\); try --batch-size 16$"):
        run_supervised(cfg, train, test, tmp_path / "sup", verbose=False)
    assert not (tmp_path / "sup").exists()


def test_per_process_batch_norm_over_one_image_is_refused(tmp_path, folders, monkeypatch):
    """`supervised --processes 2 --no-sync-bn --batch-size 2` trained each process's
    BatchNorm on one image (at 8 px a traceback: 'Expected more than 1 value per
    channel'); fine-tuning refused it, and says what to do when the labeled images
    are the limit, not --batch-size."""
    from simclr import distributed
    from simclr.classifier_setup import check_batch_norm_share

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    train, test = folders
    cfg = build_config(flags={**TINY, "batch_size": 2, "model.sync_bn": False})
    with pytest.raises(SimCLRError, match=r"^--no-sync-bn: each of the 2 processes would take "
                                          r"BatchNorm statistics from 1 image; give a "
                                          r"--batch-size of at least 4, or keep global BN$"):
        run_supervised(cfg, train, test, tmp_path / "sup", verbose=False)
    assert not (tmp_path / "sup").exists()
    with pytest.raises(SimCLRError, match=r"the batch is all 2 labeled images \(--batch-size "
                                          r"8\): label at least 4, or keep global BN$"):
        check_batch_norm_share(2, 8, sync_bn=False)
    check_batch_norm_share(2, 2, sync_bn=True)  # global BN: 2 images in all
    check_batch_norm_share(4, 4, sync_bn=False)


class Measured(Exception):
    """Raised by :func:`measured_model` once the step's memory is being measured."""


def measured_model(monkeypatch) -> list:
    """Two processes pretended (``world_size``), and the classifier step's memory
    measurement replaced by one that records whether the model measured has global BN
    (the only BatchNorm the step trains under them), then stops the command."""
    import simclr.classifier_setup
    from simclr import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    seen: list = []

    def measure(model, *args, **kwargs):
        seen.append(any(isinstance(m, distributed.GlobalBatchNorm) for m in model.modules()))
        raise Measured

    monkeypatch.setattr(simclr.classifier_setup, "measure_step", measure)
    return seen


def test_the_step_memory_is_measured_with_global_batch_norm(tmp_path, folders, monkeypatch):
    """Under --processes the step is measured on the model it trains: global BN's
    all-reduces save more per view (1.45x-2.25x on CPU) than a process's own BN did,
    which was measured before the conversion, as pretraining does not."""
    seen = measured_model(monkeypatch)
    train, test = folders
    with pytest.raises(Measured):
        run_supervised(build_config(flags={**TINY, "batch_size": 8}), train, test,
                       tmp_path / "sup", verbose=False)
    assert seen == [True]


def small_memory(monkeypatch) -> None:
    """Two processes pretended (``world_size``), a classifier step of 1 MiB per view,
    and 4 MiB free: 4 images per process are refused, 1 per process fits."""
    import simclr.classifier_setup
    from simclr import distributed, memory
    from simclr.memory import StepMemory

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(memory, "_ram_is_total", lambda: False)  # (refused at 2.5x)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4.0 * 2**20)
    monkeypatch.setattr(simclr.classifier_setup, "measure_step", lambda *a, **k: StepMemory(
        fixed=0.0, per_view=2.0**20, state=0.0, input_per_view=0.0, contrastive=False))


REFUSED_8 = (r"^--batch-size 8 does not fit: .* \(4 views per process, .*; try "
             r"--batch-size 2\b")


def test_a_refused_step_names_the_batch_typed_under_processes(tmp_path, folders, monkeypatch):
    """--batch-size is the global batch: under 2 processes `--batch-size 8` was refused
    as `--batch-size 4`, with a batch 1/2 of the one that fits."""
    small_memory(monkeypatch)
    train, test = folders
    with pytest.raises(SimCLRError, match=REFUSED_8):
        run_supervised(build_config(flags={**TINY, "batch_size": 8}), train, test,
                       tmp_path / "sup", verbose=False)
    assert not (tmp_path / "sup").exists()


def test_supervised_checkpoint_is_accepted_everywhere(tmp_path, folders):
    from simclr.evaluate import run_linear_eval
    from simclr.knn import run_knn

    train, test = folders
    cfg = build_config(flags={
        "model.arch": "resnet18", "model.width": 0.125, "augment.size": 16,
        "augment.color_strength": 0.5, "augment.blur": False, "batch_size": 8, "epochs": 2,
        "optim.name": "lars", "optim.lr": 0.5, "optim.warmup_epochs": 1, "device": "cpu",
        "precision": "fp32", "data.workers": 0, "out": str(tmp_path / "sup"),
        "channels_last": False, "progress": False,
    })
    result = run_supervised(cfg, train, test, verbose=False)
    # Warm-up: 1 epoch (3 steps) asked, capped at 10% of the 6 steps, as in pretraining.
    assert result["steps"] == 6 and result["total_steps"] == 6 and result["warmup_steps"] == 1
    assert 0 <= result["top1"] <= 1 and np.isfinite(result["train_loss"])
    ckpt = load_checkpoint(tmp_path / "sup" / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "supervised" and ckpt["config"] == cfg.to_dict()
    assert {k.split(".")[0] for k in ckpt["model"]} == {"encoder", "fc"}
    assert (tmp_path / "sup" / "config.yaml").is_file()
    assert json.loads((tmp_path / "sup" / "supervised.json").read_text())["top1"] == \
        result["top1"]
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec == {"arch": "resnet18", "width": 0.125, "cifar_stem": True, "image_size": 16}
    knn = run_knn(encoder, train, test, None, image_size=16, k=5, device="cpu",
                  precision="fp32", verbose=False)
    lin = run_linear_eval(encoder, train, test, None, image_size=16, device="cpu",
                          precision="fp32", l2_grid=[1e-2], verbose=False)
    ft = run_finetune(encoder, train, test, None, labels_per_class=2, **FAST)
    for r in (knn, lin, ft):
        assert 0 <= r["top1"] <= 1




def test_the_supervised_test_keeps_no_logits_matrix(tmp_path, folders, monkeypatch):
    """--test ranks each batch of the trained network's logits as it comes (the float32
    (M, C) logits: 4 GB at 100k test images x 10k classes): what reaches the results
    holds O(M) numbers, and they are the whole matrix's: accuracies, JSON, confusion
    matrix."""
    import simclr.supervised

    train, test = folders
    seen = recorded_test(monkeypatch, simclr.supervised, tmp_path)
    cfg = build_config(flags={**TINY, "batch_size": 6, "epochs": 1})
    result = run_supervised(cfg, train, test, tmp_path / "sup", verbose=False)
    check_ranked_test(seen, result, tmp_path / "sup" / "supervised.json", 3)


def test_num_train_counts_the_training_images_read(tmp_path):
    """An uncached folder with one unreadable file (another image takes its place in
    training): num_train counted the 13 files listed beside skipped_images.train 1."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    root = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    (root / "class_0" / "zz.png").write_bytes(b"not a picture")
    train = open_source(str(root), DataConfig(cache="off", workers=0), train=False,
                        image_size=16)
    cfg = build_config(flags={**TINY, "batch_size": 13, "epochs": 1})  # (a batch of all)
    result = run_supervised(cfg, train, None, tmp_path / "sup", verbose=False)
    assert len(train.skipped) == 1 and result["num_train"] == 12, result


def test_supervised_training_learns(tmp_path, folders):
    """Longer supervised training learns the (easy, colour-coded) classes (chance: 1/3)."""
    train, test = folders
    cfg = build_config(flags={
        "model.arch": "resnet18", "model.width": 0.125, "augment.size": 16,
        "augment.color": False, "augment.grayscale": False, "augment.blur": False,
        "batch_size": 12, "epochs": 15, "optim.name": "sgd", "optim.lr": 2.0,
        "optim.weight_decay": 0.0, "optim.warmup_epochs": 0, "device": "cpu",
        "precision": "fp32", "data.workers": 0, "channels_last": False,
    })
    result = run_supervised(cfg, train, test, tmp_path / "sup", verbose=False)
    assert result["train_loss"] < 0.7 and result["top1"] >= 0.75, result


@pytest.mark.parametrize(("decoder", "decode_on"), [("pil", None), ("device", "cpu")])
def test_the_decoder_setting_reaches_the_training_and_test_batches(tmp_path, monkeypatch,
                                                                   decoder, decode_on):
    """`simclr supervised --decoder device` (a flag it takes) decoded by --decoder auto's
    choice all the same (PIL on a CPU), and its --test folder did after the training was
    fixed: both the training and the test batches decode where it says."""
    import simclr.classifier_setup
    import simclr.features

    asked: dict[str, list] = {"train": [], "test": []}

    def spy(module, key):
        real = module.iter_batches

        def iter_batches(*args, **kwargs):
            asked[key].append(kwargs["decode_on"])
            return real(*args, **kwargs)
        monkeypatch.setattr(module, "iter_batches", iter_batches)

    spy(simclr.classifier_setup, "train")
    spy(simclr.features, "test")  # (encoded_batches: the test logits)
    from simclr.config import DataConfig
    from simclr.data import open_source

    data = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0)
    train, test = (open_source(str(make_image_folder(tmp_path / name, classes=3, per_class=n,
                                                     ext="jpg")),
                               data, train=False, image_size=16)
                   for name, n in (("train", 8), ("test", 3)))  # (JPEGs: the device decodes)
    cfg = build_config(flags={**TINY, "batch_size": 12, "epochs": 1, "data.decoder": decoder},
                       reads=[str(tmp_path / "train")])  # (--train: a folder)
    run_supervised(cfg, train, test, tmp_path / "sup", verbose=False)
    for key, devices in asked.items():
        assert devices and {None if d is None else d.type for d in devices} == {decode_on}, key


def test_supervised_training_fits_a_time_budget(tmp_path, folders):
    # As pretraining: the cosine is re-planned from the measured speed to end on time.
    train, test = folders
    cfg = build_config(flags={
        "model.arch": "resnet18", "model.width": 0.125, "augment.size": 16,
        "batch_size": 8, "epochs": 1000, "time_budget": "3s", "device": "cpu",
        "precision": "fp32", "data.workers": 0, "channels_last": False,
    })
    result = run_supervised(cfg, train, None, tmp_path / "sup", verbose=False)
    assert 2.5 <= result["train_s"] <= 5.0, result["train_s"]
    assert result["steps"] == result["total_steps"] < 1000 * 3  # ended by the budget
    assert result["steps"] > 10  # refitted, not stopped at the first estimate


def test_a_supervised_budget_spent_ends_the_training_at_that_step():
    """Between re-plans nothing looked at the deadline: a slowed step ran the training
    past its budget (4 steps, 6.2 s on 3 s); the step that spends it is the last, as in
    pretraining."""
    from simclr.plan import Plan
    from simclr.supervised import budget_refit

    cfg = build_config(flags={**TINY, "time_budget": "3s"})
    plan = Plan(steps_per_epoch=3, total_steps=30, warmup_steps=2, deadline=3.0,
                num_images=24)
    refit = budget_refit(cfg, plan, 0, torch.device("cpu"))
    assert refit(1, 1.0) == 30  # (within the budget, before the first re-plan)
    assert refit(2, 3.5) == 2  # spent at step 2: it ends there


def test_a_supervised_budget_is_not_refitted_once_its_last_step_is_done():
    """A re-plan due at or after the planned last step would lengthen a run whose lr has
    already decayed to its end (and climb it again): the plan is kept, the run ends."""
    from simclr.plan import Plan
    from simclr.supervised import budget_refit

    cfg = build_config(flags={**TINY, "time_budget": "1000s"})
    plan = Plan(steps_per_epoch=3, total_steps=30, warmup_steps=2, deadline=1000.0,
                num_images=24)
    refit = budget_refit(cfg, plan, 0, torch.device("cpu"))
    assert refit(30, 3.0) == 30  # 970 s left at 0.1 s a step: no longer for it
    assert (plan.total_steps, plan.warmup_steps) == (30, 2)


def test_a_resumed_budget_is_first_refitted_a_few_steps_after_it_resumes():
    """Resumed at step 20, the first re-plan waits FIRST_REFIT steps of this session's
    speed (at once, one step's time would re-plan the whole run)."""
    from simclr.plan import FIRST_REFIT, Plan
    from simclr.supervised import budget_refit

    cfg = build_config(flags={**TINY, "time_budget": "1000s"})
    plan = Plan(steps_per_epoch=3, total_steps=30, warmup_steps=2, deadline=1000.0,
                num_images=24)
    refit = budget_refit(cfg, plan, 20, torch.device("cpu"))
    for step in range(21, 20 + FIRST_REFIT):
        assert refit(step, 1.0 + step) == 30


def test_a_supervised_budget_spent_within_the_warmup_is_said(tmp_path, folders, capsys):
    """As pretraining says it: a budget that ended the training before its lr reached
    the peak said only 'finished'."""
    train, _ = folders
    cfg = build_config(flags={**TINY, "batch_size": 8, "epochs": 100,
                              "time_budget": "0.001s"})
    result = run_supervised(cfg, train, None, tmp_path / "sup")
    assert result["status"] == "finished" and result["steps"] == 1
    assert "note: the --time-budget ended within the warm-up (step 1 of its 30)" in \
        capsys.readouterr().err  # (with the training's other lines)


# ------------------------------------------------------ periodic checkpoints and resume

def resumable(tmp_path, name, **extra):
    """3 steps per epoch (24 images, batch 8), 3 epochs, a checkpoint every 2 steps."""
    return build_config(flags={**TINY, "batch_size": 8, "epochs": 3, "optim.name": "lars",
                               "optim.lr": 0.5, "optim.warmup_epochs": 1,
                               "checkpoint_every": 2, "keep_checkpoints": 2,
                               "out": str(tmp_path / name), **extra})


def test_a_preempted_run_resumes_exactly(tmp_path, folders):
    """Stopped mid-epoch (step 4 of 9: epoch 1, one step in) and resumed, the run ends
    with the very weights of an uninterrupted one: order, views, optimizer state and
    schedule all continue."""
    train, test = folders
    data = {"train": "unused here", "test": None}
    whole = run_supervised(resumable(tmp_path, "whole"), train, test, data=data, verbose=False)
    cfg = resumable(tmp_path, "cut")
    cut = run_supervised(cfg, train, test, data=data, verbose=False, on_step=stop_at(4))
    assert cut["status"] == "preempted" and cut["steps"] == 4 and cut["signal"] == "SIGTERM"
    run = tmp_path / "cut"
    assert not (run / "supervised.json").exists()  # no evaluation of a half-trained model
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (saved["step"], saved["epoch"], saved["step_in_epoch"]) == (4, 1, 1)
    assert [s for s, _ in periodic_checkpoints(run / "checkpoints")] == [2, 4]

    cfg2, ckpt = resume_config(run, {})
    assert cfg2.to_dict() == {**cfg.to_dict(), "out": str(run)}
    done = run_supervised(cfg2, train, test, data=data, resume=ckpt, verbose=False)
    assert done["status"] == "finished" and done["steps"] == whole["steps"] == 9
    assert done["top1"] == whole["top1"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Periodic checkpoints were pruned to the newest two; last.pt carries the test result.
    assert [s for s, _ in periodic_checkpoints(run / "checkpoints")] == [6, 8]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["metrics"]["top1"] == done["top1"]
    # which start of the run saved each: the first, then the resumed one
    assert (saved["session"], load_checkpoint(run / "checkpoints" / "last.pt")["session"]) == (1, 2)
    # the run's identity (results name it by) is kept on resume, in every checkpoint
    ids = {load_checkpoint(p)["run_id"] for p in (run / "checkpoints").glob("*.pt")}
    assert ids == {saved["run_id"]}
    assert load_checkpoint(tmp_path / "whole/checkpoints/last.pt")["run_id"] != saved["run_id"]
    assert json.loads((run / "supervised.json").read_text())["steps"] == 9


def test_a_resumed_runs_elapsed_time_counts_its_earlier_sessions(tmp_path, folders):
    """elapsed_s of a resumed run is every session's training and its test, not only the
    last session's: a first session of 1000 s is counted."""
    train, test = folders
    data = {"train": "unused here", "test": None}
    run_supervised(resumable(tmp_path, "cut"), train, test, data=data, verbose=False,
                   on_step=stop_at(4))
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)
    saved["elapsed"] = 1000.0  # as if the first session had trained for 1000 s
    save_checkpoint(saved, last.parent, last.name, None)
    cfg, ckpt = resume_config(tmp_path / "cut", {})
    done = run_supervised(cfg, train, test, data=data, resume=ckpt, verbose=False)
    assert done["status"] == "finished" and done["elapsed_s"] > 1000.0
    assert json.loads((tmp_path / "cut" / "supervised.json").read_text())["elapsed_s"] > 1000


def test_an_adamw_run_at_a_lars_sized_lr_is_told_so_when_it_resumes(tmp_path, folders,
                                                                     capsys):
    """An AdamW run of a release before 2026-12-06 kept a LARS-sized lr (0.3) and had no
    note; resumed on this release, which notes it only when a run starts, it went on
    unsaid: the note is given once when it resumes."""
    train, test = folders
    data = {"train": "unused here", "test": None}
    cfg = resumable(tmp_path, "run", **{"optim.name": "adamw", "optim.lr": 0.3})
    cut = run_supervised(cfg, train, test, data=data, verbose=False, on_step=stop_at(2))
    assert cut["status"] == "preempted"
    capsys.readouterr()
    cfg2, ckpt = resume_config(tmp_path / "run", {})
    run_supervised(cfg2, train, test, data=data, resume=ckpt, on_step=stop_at(4))
    out = capsys.readouterr()
    notes = [x for x in (out.out + out.err).splitlines() if "note: AdamW at a peak lr" in x]
    assert len(notes) == 1 and notes[0].endswith("LARS-sized rates collapse it; a new run "
                                                 "with --lr sets another")  # (not --resume)


def test_a_run_stopped_in_its_last_epoch_reports_the_whole_epoch(tmp_path, folders):
    """Stopped at step 8 (inside the last epoch, steps 7-9) and resumed: the results give
    the whole last epoch's loss and top-1, as an uninterrupted run's (they counted only
    step 9: the epoch's running tally was not saved with the stop)."""
    train, test = folders
    data = {"train": "unused here", "test": None}
    whole = run_supervised(resumable(tmp_path, "whole"), train, test, data=data, verbose=False)
    run_supervised(resumable(tmp_path, "cut"), train, test, data=data, verbose=False,
                   on_step=stop_at(8))
    cfg, ckpt = resume_config(tmp_path / "cut", {})
    done = run_supervised(cfg, train, test, data=data, resume=ckpt, verbose=False)
    assert done["steps"] == 9
    assert (done["train_loss"], done["train_top1"]) == (whole["train_loss"],
                                                        whole["train_top1"])


def test_predict_with_a_stopped_runs_classifier_says_it_is_unfinished(tmp_path, folders,
                                                                       capsys):
    """A supervised run stopped at step 4 of 9: predict used its half-trained classifier
    without a word (the evaluations note an unfinished checkpoint they are given)."""
    train, test = folders
    run = tmp_path / "run"
    run_supervised(resumable(tmp_path, "run"), train, test, data={"train": "x"},
                   verbose=False, on_step=stop_at(4))
    predict = ["predict", "--data", str(tmp_path / "test"), "--cache-dir",
               str(tmp_path / "cache"), "--device", "cpu"]
    capsys.readouterr()
    assert main([*predict, "--checkpoint", str(run), "--out", str(tmp_path / "a.csv")]) == 0
    note = [line for line in capsys.readouterr().err.splitlines() if "unfinished" in line]
    assert note == [f"note: {run / 'checkpoints' / 'last.pt'} is an unfinished training "
                    f"(step 4 of 9); `simclr supervised --resume {run}` continues it"]
    # Finished, it says nothing of the kind; a periodic checkpoint named is still unfinished
    _, ckpt = resume_config(run, {})
    run_supervised(resume_config(run, {})[0], train, test, data={"train": "x"}, resume=ckpt,
                   verbose=False)
    assert main([*predict, "--checkpoint", str(run), "--out", str(tmp_path / "b.csv")]) == 0
    assert "unfinished" not in capsys.readouterr().err
    periodic = run / "checkpoints" / "ckpt-00000008.pt"
    assert main([*predict, "--checkpoint", str(periodic), "--out", str(tmp_path / "c.csv")]) == 0
    assert f"note: {periodic} is an unfinished training (step 8 of 9)\n" in \
        capsys.readouterr().err


def test_a_run_killed_after_training_is_only_evaluated_on_resume(tmp_path, folders):
    train, test = folders
    cfg = resumable(tmp_path, "run")
    cut = run_supervised(cfg, train, None, data={"train": "x"}, verbose=False)  # no test set
    (tmp_path / "run" / "supervised.json").unlink()  # as if killed during the evaluation
    _, ckpt = resume_config(tmp_path / "run", {})
    done = run_supervised(cfg, train, test, data={"train": "x"}, resume=ckpt, verbose=False)
    assert done["steps"] == 9 and done["train_loss"] == cut["train_loss"]
    assert 0 <= done["top1"] <= 1


def test_a_resume_another_resume_continued_meanwhile_is_refused_leaving_its_work(
        tmp_path, folders):
    """Two `--resume` of one run: B read its checkpoint (step 2); A resumed from it and
    went on to step 6 before B held the folder. B trained on from step 2 over A's work;
    now it is refused once it holds the folder, writing nothing."""
    train, test = folders
    run = tmp_path / "run"
    run_supervised(resumable(tmp_path, "run"), train, test, data={"train": "x"},
                   verbose=False, on_step=stop_at(2))
    late_cfg, late = resume_config(run, {})  # B, slow to start
    cfg, ckpt = resume_config(run, {})  # A
    assert run_supervised(cfg, train, test, data={"train": "x"}, resume=ckpt, verbose=False,
                          on_step=stop_at(6))["steps"] == 6
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(SimCLRError, match=rf"^--resume {run}: another simclr process "
                                          r"continued the run meanwhile .*`simclr info "
                                          rf"{run}`, or resume it again$"):
        run_supervised(late_cfg, train, test, data={"train": "x"}, resume=late, verbose=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # resumed again, it continues from A's step 6
    cfg, ckpt = resume_config(run, {})
    assert run_supervised(cfg, train, test, data={"train": "x"}, resume=ckpt,
                          verbose=False)["steps"] == 9


def test_resume_refusals(tmp_path, folders):
    train, test = folders
    cfg = resumable(tmp_path, "run")
    run_supervised(cfg, train, test, data={"train": "x"}, verbose=False, on_step=stop_at(2))
    run = tmp_path / "run"
    with pytest.raises(SimCLRError, match=r"^--resume continues the saved settings; cannot "
                                          r"change --batch-size, --lr$"):
        resume_config(run, {"optim.lr": 0.1, "batch_size": 4, "device": "cpu"})
    # What may change is checked as a new run's flag: the saved config stays valid.
    for path, value, flag in (("threads", 0, "--threads"), ("keep_checkpoints", -1,
                                                            "--keep-checkpoints")):
        with pytest.raises(SimCLRError, match=f"^{flag} must"):
            resume_config(run, {path: value})
    with pytest.raises(SimCLRError, match=r"cannot change --epochs \(3 saved, 4 asked\)"):
        resume_config(run, {"epochs": 4})
    assert resume_config(run, {"epochs": 3.0})[0].epochs == 3  # the saved length
    _, ckpt = resume_config(run, {})
    from simclr.config import DataConfig
    from simclr.data import open_source

    def folder(name, **kwargs):
        path = make_image_folder(tmp_path / name, **kwargs)
        return open_source(str(path), DataConfig(cache="off", workers=0), image_size=16)

    with pytest.raises(SimCLRError, match="now holds 21 images; the run started with 24"):
        run_supervised(cfg, folder("fewer", classes=3, per_class=7), test, resume=ckpt,
                       verbose=False)
    renamed = folder("renamed", classes=3, per_class=8)
    renamed.classes = ["class_0", "class_1", "lion"]
    with pytest.raises(SimCLRError, match=r"classes are not those the run started with "
                                          r"\(classes no longer there: class_2; new classes: "
                                          r"lion\)"):
        run_supervised(cfg, renamed, None, resume=ckpt, verbose=False)
    # A new run never writes over it, and points to --resume.
    with pytest.raises(SimCLRError, match=rf"^{run} already holds a run \(checkpoints/"
                                          rf"last.pt\); .* `simclr supervised --resume {run}`$"):
        run_supervised(cfg, train, test, verbose=False)
    # Started from Python without naming its folders: the command line cannot reopen them.
    run_supervised(resumable(tmp_path, "api"), train, test, verbose=False, on_step=stop_at(2))
    with pytest.raises(SimCLRError, match="does not name its training folder"):
        resume_config(tmp_path / "api", {})
    # Finished: nothing to continue.
    run_supervised(cfg, train, test, data={"train": "x"}, resume=ckpt, verbose=False)
    for target in (run, run / "checkpoints", run / "checkpoints" / "ckpt-00000006.pt"):
        with pytest.raises(SimCLRError, match=r"the run has finished \(.*supervised.json\)"):
            resume_config(target, {})


def test_a_listing_of_more_files_than_the_runs_images_resumes_and_of_fewer_does_not():
    """Checked on the folder's listing before decoding: files unreadable when the run
    started are listed still, so more files than its images is no change; fewer is."""
    from types import SimpleNamespace

    from simclr.supervised import check_same_data

    def listing(files):
        return SimpleNamespace(classes=["a", "b"], paths=[f"{i}.png" for i in range(files)])

    ckpt = {"classes": ["a", "b"], "num_train": 3}
    check_same_data(ckpt, listing(4), listed=True)
    check_same_data(ckpt, listing(3), listed=True)
    with pytest.raises(SimCLRError, match="now holds 2 images; the run started with 3"):
        check_same_data(ckpt, listing(2), listed=True)
    # The images read (not listed) must be the run's own number: more are refused too
    with pytest.raises(SimCLRError, match="now holds 4 images; the run started with 3"):
        check_same_data(ckpt, SimpleNamespace(classes=["a", "b"], num_images=4))
    check_same_data(ckpt, SimpleNamespace(classes=["a", "b"], num_images=3))


def test_a_previous_releases_run_on_a_split_folder_is_refused_naming_the_split(tmp_path):
    """A run of a release before 2026-12-06 on DIR/{Train,Test} read them as two
    classes (Test, Train); its --resume said 'classes no longer there: Test, Train' with
    both on disk: now it says this release reads DIR as its split, as pretraining does."""
    from simclr.folders import list_folder
    from simclr.supervised import check_same_data

    root = tmp_path / "tt"
    for split in ("Train", "Test"):
        for k, name in enumerate(("cat", "dog")):
            save_image(root / split / name / f"{k}.png", rgb(8, 8, k))
    ckpt = {"classes": ["Test", "Train"], "num_train": 4, "data": {"train": str(root)}}
    with pytest.raises(SimCLRError, match=rf"^--resume: this release reads {root} as its "
                                          r"split Train/ \(classes cat, dog\), where the "
                                          r"run's release read its splits as two classes "
                                          r"\(Test, Train.*start a new run$"):
        check_same_data(ckpt, list_folder(str(root), train=True), listed=True)
    ckpt["classes"] = ["ant", "bee"]  # (classes of its own changed: said as before)
    with pytest.raises(SimCLRError, match="classes no longer there: ant, bee; new classes"):
        check_same_data(ckpt, list_folder(str(root), train=True), listed=True)


def test_a_resumed_run_keeps_its_saved_plan_and_steps():
    """A time budget's re-planned length lives in the checkpoint only: the resumed run
    continues with it, not with the plan its config would give afresh."""
    from simclr.plan import Plan
    from simclr.supervised import restore

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ckpt = {"model": model.state_dict(), "config": {}, "optimizer": optimizer.state_dict(),
            "scaler": {}, "total_steps": 37, "warmup_steps": 4, "step": 12, "elapsed": 3.5}
    plan = Plan(steps_per_epoch=5, total_steps=50, warmup_steps=5)
    assert restore(ckpt, model, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                   plan) == (12, 3.5)
    assert (plan.total_steps, plan.warmup_steps) == (37, 4)


def test_a_run_saved_with_the_earlier_parameter_grouping_continues(capsys):
    """A supervised ConvNeXt saved before its layer_scale was excluded by name continues
    with the optimizer grouping it started with (not refused as damaged)."""
    from simclr.config import OptimConfig
    from simclr.optim import build_optimizer
    from simclr.plan import Plan
    from simclr.supervised import restore
    from tests.conftest import ScaledNet, earlier_lars

    model = ScaledNet()
    saved = earlier_lars(model).state_dict()
    ckpt = {"model": model.state_dict(), "config": {}, "optimizer": saved,
            "scaler": {}, "total_steps": 37, "warmup_steps": 4, "step": 12, "elapsed": 3.5}
    optimizer = build_optimizer(OptimConfig(), model, 64)
    plan = Plan(steps_per_epoch=5, total_steps=50, warmup_steps=5)
    assert restore(ckpt, model, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                   plan) == (12, 3.5)
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 1]
    assert "the run keeps the parameter grouping it started with" in capsys.readouterr().err


def test_command_line_resume(tmp_path, capsys, monkeypatch):
    """`simclr supervised --resume RUN` reopens the saved folders; the other kind of run
    is named with the command that continues it."""
    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)
    run = tmp_path / "run"
    common = ["--arch", "resnet18", "--width", "0.125", "--image-size", "16", "--batch-size",
              "8", "--epochs", "2", "--precision", "fp32", "--workers", "0", "--cache-dir",
              str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["supervised", "--train", str(train), "--test", str(test), "--out", str(run),
                 *common]) == 0
    (run / "supervised.json").unlink()
    (run.parent / "runs" / "earlier" / "checkpoints").mkdir(parents=True)
    capsys.readouterr()
    for argv, message in (
            (["--resume", str(run), "--train", str(train)],
             "--resume continues the saved run; cannot give --train"),
            (["--resume", str(run), "--epochs", "5"], "cannot change --epochs (2 saved, 5"),
            (["--resume", str(run), "--lr", "0.1"],
             "--resume continues the saved settings; cannot change --lr"),
            (["--resume", str(run), "--threads", "0"], "--threads must"),
            (["--train", str(train)], "--out is required (or --resume RUN_DIR)"),
            # (no longer its results: an unfinished run, which the same command continues)
            (["--train", str(train), "--out", str(run)],
             f"{run} holds an unfinished run of other settings ("),
            (["--train", str(train), "--out", str(run.parent / "runs")],  # runs' folder
             f"{run.parent / 'runs'} holds other runs (earlier); give this run a folder")):
        assert main(["supervised", *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(run)]) == 2
    assert (f"{run} is a supervised run (its checkpoint last.pt); continue it with `simclr "
            f"supervised --resume {run}`") in capsys.readouterr().err
    # A new run over another kind's: the command that continues it (each named its own)
    assert main(["pretrain", "--data", str(train), "--out", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"simclr pretrain: error: {run} already holds a supervised run (checkpoints/last.pt); "
        f"choose another --out or continue it with `simclr supervised --resume {run}`\n")
    pretrained = tmp_path / "pre"
    (pretrained / "checkpoints").mkdir(parents=True)
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    save_checkpoint({**checkpoint, "kind": "pretrain"}, pretrained / "checkpoints", "last.pt",
                    None)
    assert main(["supervised", "--train", str(train), "--out", str(pretrained)]) == 2
    assert capsys.readouterr().err == (
        f"simclr supervised: error: {pretrained} already holds a pretraining run "
        f"(checkpoints/last.pt); choose another --out or continue it with `simclr pretrain "
        f"--resume {pretrained}`\n")
    (run / "supervised.json").write_text("{}")  # finished: nothing continues it
    assert main(["pretrain", "--data", str(train), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"already holds a supervised run \(checkpoints/last.pt\) that finished at "
                     rf"step \d+: its results are there \(`simclr info {run}`\); choose "
                     r"another --out for a new run\n$", err), err
    (run / "supervised.json").unlink()
    del checkpoint["kind"]  # as an older simclr saved it
    save_checkpoint(checkpoint, pretrained / "checkpoints", "last.pt", None)
    assert main(["supervised", "--train", str(train), "--out", str(pretrained)]) == 2
    assert capsys.readouterr().err.endswith(
        "already holds an unknown kind of checkpoint (checkpoints/last.pt); choose another "
        "--out\n")
    image = sorted(train.rglob("*.png"))[0]
    image.rename(tmp_path / "aside.png")  # an image gone: refused from the names, before
    caches = sorted((tmp_path / "cache").iterdir())  # the folder is decoded again
    assert main(["supervised", "--resume", str(run)]) == 2
    assert "the training folder now holds 15 images; the run started with 16" in \
        capsys.readouterr().err
    assert sorted((tmp_path / "cache").iterdir()) == caches
    (tmp_path / "aside.png").rename(image)
    # From another working directory, by a relative path: the saved paths stay absolute.
    monkeypatch.chdir(tmp_path)
    assert main(["supervised", "--resume", "run", "--workers", "0"]) == 0
    assert json.loads((run / "supervised.json").read_text())["num_test"] == 4
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["out"] == str(run)
    capsys.readouterr()  # resumed again when finished: done, its results (it was rc 2, as
    assert main(["supervised", "--resume", "run"]) == 0  # an error; pretraining says 0)
    out, err = capsys.readouterr()
    assert json.loads(out) == json.loads((run / "supervised.json").read_text())
    assert err.endswith("already: nothing to do\n")
    # ... but not with another setting, which a run still going refuses too
    assert main(["supervised", "--resume", "run", "--lr", "5"]) == 2
    assert "cannot change --lr" in capsys.readouterr().err
    assert main(["supervised", "--resume", "run", "--workers", "0"]) == 0  # (a runtime one)
    capsys.readouterr()
    # --print-config of the finished run: its settings, as of a run still going
    assert main(["supervised", "--resume", "run", "--threads", "1", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    saved = json.loads(json.dumps(load_checkpoint(run / "checkpoints" / "last.pt")["config"]))
    assert shown == {**saved, "threads": 1, "folders": load_yaml(run / "config.yaml")[
        "folders"]} and saved["threads"] != 1
    assert main(["pretrain", "--resume", str(run)]) == 2
    assert (f"{run} is a finished supervised run ({run / 'supervised.json'}); its model is "
            f"{run / 'checkpoints' / 'last.pt'}\n") in capsys.readouterr().err
    # Its results file cut: resumed, the model is evaluated again, the cut file kept (the
    # run could neither resume, "it has finished", nor be re-evaluated)
    results = json.loads((run / "supervised.json").read_text())
    (run / "supervised.json").write_text('{"top1": 0.5')
    assert main(["supervised", "--resume", "run", "--workers", "0"]) == 0
    assert "supervised.json is unreadable (kept as supervised.previous-1.json)" in \
        capsys.readouterr().err
    again = json.loads((run / "supervised.json").read_text())
    assert again["top1"] == results["top1"] and again["steps"] == results["steps"]
    assert (run / "supervised.previous-1.json").read_text() == '{"top1": 0.5'


def test_sigterm_exits_75_and_resume_finishes(tmp_path):
    """A real signal on a real process, as the cluster's scheduler sends it."""
    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    run = tmp_path / "run"
    args = ["--train", str(train), "--out", str(run), "--arch", "resnet18", "--width",
            "0.125", "--image-size", "16", "--batch-size", "8", "--epochs", "50",
            "--precision", "fp32", "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
            "--checkpoint-every", "2", "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "simclr", "supervised", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not periodic_checkpoints(run / "checkpoints") and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert f"continue with: simclr supervised --resume {run}" in err
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert 2 <= step < 100
    done = subprocess.run([sys.executable, "-m", "simclr", "supervised", "--resume", str(run)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming {run} from step {step} of 100" in done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["steps"] == 100


def test_a_run_folder_held_by_a_live_run_is_refused_naming_its_holder(tmp_path):
    """A new run into a folder another live run holds is refused naming that run (its
    lock file's 'pid N on HOST'), before anything else is said; the process that holds
    it (``held``) may start there."""
    import os

    from simclr.files import lock_folder
    from simclr.supervised import check_new_run

    held = lock_folder(tmp_path)
    try:
        with pytest.raises(SimCLRError, match=re.escape(
                f"{tmp_path} is in use by another simclr run (pid {os.getpid()} on ")):
            check_new_run(tmp_path)
        check_new_run(tmp_path, held=True)
    finally:
        held.close()
    check_new_run(tmp_path)  # free once let go


def test_more_than_three_ignored_settings_are_counted_not_listed(tmp_path, capsys):
    """A pretraining config.yaml holds dozens of settings supervised training ignores:
    the first three are named, the rest counted ('and 2 more')."""
    from simclr.supervised import note_ignored_settings

    config = tmp_path / "c.yaml"
    config.write_text("loss: {temperature: 0.5, margin: 0.1}\nknn_k: 5\nknn_every: 2\n"
                      "compile: false\nbatch_size: 8\n")
    note_ignored_settings(str(config))
    assert (f"--config {config}: loss.temperature, loss.margin, knn_k and 2 more play no "
            "part in supervised training (ignored)") in capsys.readouterr().err
    config.write_text("loss: {temperature: 0.5}\nknn_k: 5\ncompile: false\n")  # three: all named
    note_ignored_settings(str(config))
    assert (f"--config {config}: loss.temperature, knn_k, compile play no part in "
            "supervised training (ignored)") in capsys.readouterr().err


def test_a_recorded_run_without_its_training_folder_is_named_first(tmp_path):
    """``folders: {train: null, test: 5}``: the missing training folder, which no run
    lacks, is what the refusal names (a null test folder is a run's record of none)."""
    from simclr.supervised import config_folders

    config = tmp_path / "c.yaml"
    config.write_text("folders: {train: null, test: 5}\n")
    with pytest.raises(SimCLRError, match=r": folders\.train: a supervised run's folders"):
        config_folders(str(config))
    config.write_text("folders: {train: /data/train, test: null}\n")
    assert config_folders(str(config)) == {"train": "/data/train", "test": None}


def test_the_run_folder_is_checked_before_the_data_and_ignored_settings_are_named(
        tmp_path, capsys):
    """--out that is a file, or that holds another command's model, is refused before
    the folders are read; a --config's settings that supervised training ignores (a
    pretraining config.yaml holds them all) are named, not silently dropped."""
    (tmp_path / "afile").write_text("x")
    assert main(["supervised", "--train", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "afile")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err  # not "missing" first
    (tmp_path / "lin" / "checkpoints").mkdir(parents=True)
    (tmp_path / "lin" / "checkpoints" / "linear.pt").write_bytes(b"a classifier")
    assert main(["supervised", "--train", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "lin")]) == 2
    assert "holds checkpoints/linear.pt (another command's model)" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("loss: {temperature: 0.5}\nknn_k: 5\nbatch_size: 8\n")
    train = make_image_folder(tmp_path / "train", classes=2, per_class=4)
    assert main(["supervised", "--config", str(config), "--train", str(train), "--out",
                 str(tmp_path / "run"), "--arch", "resnet18", "--width", "0.125",
                 "--image-size", "16", "--max-steps", "1", "--workers", "0", "--precision",
                 "fp32", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert ("c.yaml: loss.temperature, knn_k play no part in supervised training (ignored)"
            in capsys.readouterr().err)
    # The run's config.yaml records its folders (it held no data at all): given as
    # --config without --train, it trains on them again, to the same weights.
    saved = tmp_path / "run" / "config.yaml"
    assert load_yaml(saved)["folders"] == {"train": str(train), "test": None}
    assert main(["supervised", "--config", str(saved), "--out", str(tmp_path / "again"),
                 "--workers", "0", "--cache-dir", str(tmp_path / "cache")]) == 0
    first, second = (load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")
                     for run in ("run", "again"))
    assert second["data"] == first["data"]
    assert all(torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    # --print-config shows the folders as config.yaml saves them: it reruns the same way
    # (it lacked them: --config of the printed file said "--train is required")
    capsys.readouterr()
    assert main(["supervised", "--config", str(saved), "--out", str(tmp_path / "again"),
                 "--print-config"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert load_yaml(printed)["folders"] == load_yaml(saved)["folders"]
    # Each folder flag overrides its own key of the file (--train dropped the test;
    # --test alone was "--train is required")
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)
    both = tmp_path / "both.yaml"
    both.write_text(saved.read_text().replace("\n  test: null", f"\n  test: {test}"))
    other = make_image_folder(tmp_path / "other", classes=2, per_class=4, seed=2)
    for flags, folders in ((["--train", str(other)], {"train": str(other), "test": str(test)}),
                           (["--test", str(train)], {"train": str(train), "test": str(train)})):
        assert main(["supervised", "--config", str(both), *flags, "--print-config"]) == 0
        # (no --out: a recipe shown needs none, as pretrain's; it was "--out is required")
        shown = yaml.safe_load(capsys.readouterr().out)
        assert shown["folders"] == folders
        assert "out" not in shown  # a run needs its own --out: no folder shown as if used
    # A `folders` not as a run writes it (a typo) is one line, not a test left out quietly
    for text, needle in (("folders: 5", "folders:"), ("folders: {train: 3}", "folders.train:"),
                         (f"folders: {{train: {train}, tset: {test}}}", "folders.tset:"),
                         (f"folders: {{test: {test}}}", "folders.train:")):
        (tmp_path / "typo.yaml").write_text(text)
        assert main(["supervised", "--config", str(tmp_path / "typo.yaml"), "--out",
                     str(tmp_path / "y")]) == 2
        err = capsys.readouterr().err
        assert f"{needle} a supervised run's folders are `train: FOLDER`" in err
        assert err.count("\n") == 1
    # ... and a pretraining (or a sweep) given it without --data trained on the digits
    for command in (["pretrain"], ["sweep", "--set", "seed=0,1", "--eval", "none"]):
        assert main([*command, "--config", str(saved), "--out", str(tmp_path / "p")]) == 2
        assert (f"--config {saved} is a supervised run's (it trained on {train}); "
                "pretraining reads --data") in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    # Fig. 5's two-branch switches mean nothing with one view per image: no such flags
    status = main(["supervised", "--train", str(train), "--out", str(tmp_path / "x"),
                   "--asymmetric"])
    assert status == 2
    assert "unrecognized arguments: --asymmetric" in capsys.readouterr().err


@pytest.mark.parametrize("folders", ["5", "[a, b]", "{train: 3}", "{train: ''}",
                                     "{test: somewhere}", "{train: null, tset: x}"])
def test_a_pretraining_config_with_another_folders_is_left_to_pretraining(
        tmp_path, capsys, folders):
    """A pretraining skips ``folders`` (a supervised run's record): one of another shape
    was refused as a malformed supervised record, though no supervised run wrote it."""
    config = tmp_path / "c.yaml"
    config.write_text(f"folders: {folders}\nbatch_size: 8\n")
    for command in (["pretrain"], ["sweep", "--set", "seed=0,1", "--eval", "none"]):
        capsys.readouterr()
        assert main([*command, "--config", str(config), "--out", str(tmp_path / "p"),
                     "--print-config"]) == 0, capsys.readouterr().err
        assert "batch_size: 8" in capsys.readouterr().out


def test_a_supervised_record_is_still_refused_whatever_else_it_holds(tmp_path, capsys):
    """Only a ``folders.train`` naming a folder marks a supervised run's config."""
    config = tmp_path / "c.yaml"
    config.write_text("folders: {train: /data/train, tset: x}\n")
    assert main(["pretrain", "--config", str(config), "--out", str(tmp_path / "p")]) == 2
    assert (f"--config {config} is a supervised run's (it trained on /data/train); "
            "pretraining reads --data") in capsys.readouterr().err
    from simclr.supervised import check_not_supervised_config

    check_not_supervised_config(str(config), "/data/other")  # with --data: no question


def test_print_config_names_the_ignored_settings_of_a_config_in_one_line(tmp_path, capsys):
    """Checking a recipe with --print-config says what a run would say: a pretraining
    key of the --config (a run's config.yaml holds them all) plays no part here."""
    config = tmp_path / "c.yaml"
    config.write_text("model: {head: mlp}\nbatch_size: 8\n")
    capsys.readouterr()
    assert main(["supervised", "--config", str(config), "--train", str(tmp_path), "--out",
                 str(tmp_path / "run"), "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert err == (f"--config {config}: model.head plays no part in supervised training "
                   "(ignored)\n")
    assert "batch_size: 8" in out and not (tmp_path / "run").exists()


def test_eval_size_sets_the_side_of_the_test(tmp_path, capsys, monkeypatch):
    """--eval-size: the supervised baseline is tested at it (its training views stay at
    --image-size), as a pretrained encoder's evaluations are."""
    import simclr.supervised

    sides, evaluate = [], simclr.supervised.evaluate_classifier

    def recorded(model, test, image_size, **kwargs):
        sides.append(image_size)
        return evaluate(model, test, image_size, **kwargs)

    monkeypatch.setattr(simclr.supervised, "evaluate_classifier", recorded)
    train = make_image_folder(tmp_path / "train", classes=2, per_class=4, side=32)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, side=32, seed=1)
    assert main(["supervised", "--train", str(train), "--test", str(test), "--out",
                 str(tmp_path / "run"), "--arch", "resnet18", "--width", "0.125",
                 "--image-size", "16", "--eval-size", "24", "--batch-size", "8", "--epochs",
                 "1", "--precision", "fp32", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--device", "cpu"]) == 0
    assert sides == [24]
    printed = json.loads(capsys.readouterr().out)
    assert printed["top1"] is not None
    assert (printed["image_size"], printed["test_image_size"]) == (16, 24)  # both recorded
    saved = json.loads((tmp_path / "run" / "supervised.json").read_text())
    assert saved["test_image_size"] == 24


def test_a_run_records_its_provenance_and_each_start(tmp_path, capsys):
    """config.yaml records the versions, git SHA and command of the run as a pretraining's
    does, and a resumed run those of its earlier starts; `simclr info` says which command
    started it (a supervised run recorded none), and the run id of its checkpoints."""
    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    run = tmp_path / "run"
    argv = tiny_command(train, run, tmp_path)
    assert main(argv) == 0
    record = load_yaml(run / "config.yaml")["provenance"]
    assert record["argv"] == ["simclr", *argv] and "earlier" not in record
    assert {"simclr", "git_sha", "torch", "python"} <= record.keys()
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert f"  started by: simclr supervised --train {train} --out {run} " in \
        capsys.readouterr().out
    (run / "supervised.json").unlink()  # (killed before its results: resumed, evaluated)
    assert main(["supervised", "--resume", str(run), "--workers", "0"]) == 0
    record = load_yaml(run / "config.yaml")["provenance"]
    assert record["argv"] == ["simclr", "supervised", "--resume", str(run), "--workers", "0"]
    assert [e["argv"] for e in record["earlier"]] == [["simclr", *argv]]
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"  started by: simclr supervised --train {train} " in out and "; 2 starts" in out
    assert out.startswith(f"{run}: supervised training, finished")
    # (and the run id its checkpoints carry, kept over the resume: a copy without them
    # keeps it)
    own = load_checkpoint(run / "checkpoints" / "last.pt")["run_id"]
    assert load_yaml(run / "config.yaml")["run_id"] == own


def test_the_same_command_again_continues_an_unfinished_run(tmp_path, monkeypatch, capsys):
    """A requeued SLURM job or torchrun's --max-restarts runs the unchanged command line:
    it was refused ("already holds a run ... --resume"); it continues the run now, and a
    command of other settings or folders is refused, naming them."""
    from simclr import supervised

    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)
    run = tmp_path / "run"
    argv = tiny_command(train, run, tmp_path, test=test)
    real = supervised.run_supervised

    def stopped(*args, **kwargs):  # the first start stopped by a signal at step 2
        return real(*args, **kwargs, on_step=stop_at(2))

    monkeypatch.setattr(supervised, "run_supervised", stopped)
    assert main(argv) == 75
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*argv, "--lr", "0.1", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simclr supervised: error: {run} holds an unfinished run of other "
                          "settings (--lr ") and "saved, 0.1 now; --epochs 2 saved, 3 now); " \
        "choose another --out for a new run, or continue this one with its saved " \
        f"settings: `simclr supervised --resume {run}`\n" in err, err
    assert main([*argv[:2], str(test), *argv[3:]]) == 2  # another --train
    err = capsys.readouterr().err
    assert f"(--train {train} saved, {test} now); choose another --out" in err, err
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"continuing the unfinished run in {run} at step 2 (the same command: " \
           "--resume)" in out, out
    assert json.loads((run / "supervised.json").read_text())["steps"] == 4


def test_the_same_command_again_does_not_continue_a_diverged_run(tmp_path, capsys):
    """A diverged supervised run left no record of it: its command run again (a retry
    loop, torchrun's --max-restarts) continued it from its last checkpoint into the same
    blow-up. Its summary.json says it diverged now (as a pretraining's), the command is
    refused naming the divergence and the way on, and `simclr info` says it."""
    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    run = tmp_path / "run"
    argv = tiny_command(train, run, tmp_path, "--checkpoint-every", "1", "--lr", "1e30",
                        epochs=4)
    assert main(argv) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["session"] == 1, summary
    step, kept = summary["steps"], max((run / "checkpoints").glob("ckpt-*.pt"))
    assert "non-finite" in summary["reason"] and load_checkpoint(kept)["step"] < step
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*")}
    capsys.readouterr()
    for lower in ([], ["--lr", "0.1"]):
        assert main([*argv, *lower]) == 2
        captured = capsys.readouterr()
        assert captured.err == (f"simclr supervised: error: {run} already holds a run "
                                f"(checkpoints/{kept.name}) that diverged at step {step}: "
                                "continuing it diverges again; start a new run with a lower "
                                "--lr in another --out\n"), captured
    assert {p.name: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    assert main(["info", str(run)]) == 0
    assert capsys.readouterr().out.startswith(f"{run}: supervised training, diverged")


def test_a_new_run_where_one_diverged_before_its_first_checkpoint_drops_that_summary(
        tmp_path, capsys):
    """The folder of a run that diverged before any checkpoint takes a new run (nothing
    of it to continue); that run's summary.json, of the earlier run, would otherwise be
    read as the new run's outcome (`simclr info` said it stopped once it finished)."""
    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    run = tmp_path / "run"
    argv = tiny_command(train, run, tmp_path)
    assert main([*argv, "--lr", "1e30"]) == 2
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"
    assert not list((run / "checkpoints").glob("*.pt"))
    assert main(argv) == 0
    assert not (run / "summary.json").exists()
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert capsys.readouterr().out.startswith(f"{run}: supervised training, finished")


def test_a_checkpoint_records_how_many_processes_trained_it(tmp_path, folders):
    """`simclr info` on a stopped torchrun run said `simclr supervised --resume RUN` (one
    process: the global batch and BatchNorm no longer the same): the checkpoint did not
    record the process count, as a pretraining's does."""
    train, test = folders
    cfg = build_config(flags={**TINY, "batch_size": 8, "epochs": 1})
    run_supervised(cfg, train, None, tmp_path / "sup", verbose=False, on_step=stop_at(1))
    assert load_checkpoint(tmp_path / "sup" / "checkpoints" / "last.pt")["processes"] == 1


def test_data_specs_record_folders_as_absolute_paths(tmp_path, monkeypatch):
    """--train/--test given relative to the shell's folder are stored absolute, so that
    --resume from another folder reopens them; a torchvision name stays a name."""
    from simclr.supervised import data_specs

    (tmp_path / "train").mkdir()
    monkeypatch.chdir(tmp_path)
    specs = data_specs("train", "cifar10")
    assert specs == {"train": str(tmp_path / "train"), "test": "cifar10"}
    assert data_specs("cifar10", None) == {"train": "cifar10", "test": None}


def test_a_checkpoint_records_the_epoch_and_the_step_within_it(tmp_path, monkeypatch):
    """After step 7 of 4-step epochs a checkpoint is in epoch 1 (0-based), 3 steps in:
    what --resume and `simclr info` read of where the run stands."""
    from types import SimpleNamespace

    from simclr import supervised

    saved = {}
    monkeypatch.setattr(supervised, "classifier_checkpoint", lambda *a, **k: {})
    monkeypatch.setattr(supervised, "save_checkpoint",
                        lambda blob, folder, name, keep: saved.update(blob) or folder / name)
    save = supervised._Saver(
        tmp_path, None, SimpleNamespace(to_dict=dict, keep_checkpoints=None),
        SimpleNamespace(classes=["a"], num_images=16), None,
        torch.amp.GradScaler("cpu", enabled=False),
        SimpleNamespace(total_steps=12, warmup_steps=1, steps_per_epoch=4), "id", 1, None, None)
    save(7, 1.0, {}, periodic=False)
    assert saved["epoch"] == 1 and saved["step_in_epoch"] == 3
    monkeypatch.setattr(supervised.dist, "world_size", lambda: 2)  # (under torchrun)
    save(8, 1.0, {}, periodic=False)  # an epoch's last step: the next epoch, 0 steps in
    assert (saved["epoch"], saved["step_in_epoch"], saved["processes"]) == (2, 0, 2)
