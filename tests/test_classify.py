"""The classifier training loop shared by fine-tuning, the supervised baseline and the
SGD linear protocol: schedules, periodic saves, preemption, and continuing a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simclr.classifier_setup import (
    crop_flip_config,
    scheduled_lr,
)
from simclr.classify import Checkpointing, train_classifier
from simclr.errors import DivergedError, SimCLRError
from simclr.models import Classifier
from tests.conftest import colour_source, tiny_encoder, worker_pools_started

pytestmark = pytest.mark.usefixtures("one_thread")


def train(model, total, saves, start_step=0, lr=0.05, on_step=None, every=2, every_s=0.0,
          per_class=8, batch=8, checkpointing=True, tally=None, lr_fn=None, refit=None,
          precision="fp32", verbose=False, **kept):
    """``model`` trained ``total`` steps (24 images, batch 8: 3 steps per epoch), each
    periodic save's step appended to ``saves`` (its path: ``ckpt-STEP.pt``); ``kept``:
    Checkpointing's ``last``, ``again`` and ``keep_tally``; ``checkpointing`` False:
    none; ``tally``: the saved tally of the epoch continued; ``lr_fn`` (default: the
    scheduled lr), ``refit`` and ``verbose``: train_classifier's."""
    source = colour_source(n_per_class=per_class)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for group in optimizer.param_groups:
        group["peak_lr"] = lr

    def save(step, seconds):
        saves.append(step)
        return f"ckpt-{step}.pt"

    return train_classifier(
        model, source, np.arange(3 * per_class), crop_flip_config(16), total_steps=total,
        batch_size=batch, optimizer=optimizer,
        lr_fn=lr_fn or (lambda step, p: scheduled_lr(step, total, p)), seed=0,
        device=torch.device("cpu"), precision=precision, verbose=verbose, start_step=start_step,
        tally=tally, refit=refit,
        checkpointing=Checkpointing(save, every, on_step, every_s=every_s, **kept)
        if checkpointing else None)


def test_periodic_saves_and_a_stop_request(capsys):
    saves = []
    stats = train(Classifier(tiny_encoder(), 3), 7, saves)
    # Every 2 steps, not at the last one (the caller writes the final checkpoint).
    assert saves == [2, 4, 6] and stats["status"] == "finished" and stats["steps"] == 7
    by_clock = []  # every step is past the (tiny) time: saved each step, not the last
    train(Classifier(tiny_encoder(), 3), 4, by_clock, every=0, every_s=1e-9)
    assert by_clock == [1, 2, 3]

    def stop_at_5(step, stop):
        if step == 5:
            stop.requested = "SIGINT"

    saves = []
    capsys.readouterr()
    stats = train(Classifier(tiny_encoder(), 3), 7, saves, on_step=stop_at_5, verbose=True)
    assert (stats["status"], stats["signal"], stats["steps"], saves) == \
        ("preempted", "SIGINT", 5, [2, 4])
    # Each epoch's line: its steps, loss and train top-1 in percent; '(stopped)' where a
    # signal ended it early.
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "train epoch 1 (3/7 steps, 3/epoch)", "train epoch 2 (stopped) (5/7 steps, 3/epoch)"]
    assert 0 < stats["train_top1"] < 1 and lines[1].endswith(
        f": loss {stats['train_loss']:.4f}, train top-1 {100 * stats['train_top1']:.2f}%")
    # Asked as the last step ends: the training is finished (the caller keeps it, then
    # tests it), and says which signal came.
    stats = train(Classifier(tiny_encoder(), 3), 7, [],
                  on_step=lambda step, stop: setattr(stop, "requested", "SIGTERM"))
    assert (stats["status"], stats["signal"], stats["steps"]) == ("preempted", "SIGTERM", 1)
    last = train(Classifier(tiny_encoder(), 3), 7, [], start_step=6,
                 on_step=lambda step, stop: setattr(stop, "requested", "SIGTERM"))
    assert (last["status"], last["signal"], last["steps"]) == ("finished", "SIGTERM", 7)
    # A run continued at its last step only returns; one continued mid-epoch trains on.
    after = train(Classifier(tiny_encoder(), 3), 7, [], start_step=7)
    assert after["steps"] == 7 and after["train_loss"] is None  # valid JSON, not NaN
    assert train(Classifier(tiny_encoder(), 3), 7, [], start_step=4)["steps"] == 7


def test_signals_are_caught_only_where_the_training_is_kept():
    """With checkpointing, SIGTERM asks the loop to stop and save; without (no --out),
    it keeps its usual effect: there is nothing a stop could keep."""
    import signal

    before = signal.getsignal(signal.SIGTERM)
    seen = []
    source = colour_source()
    batch = source.batch
    source.batch = lambda idx: (seen.append(signal.getsignal(signal.SIGTERM)), batch(idx))[1]
    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for group in optimizer.param_groups:
        group["peak_lr"] = 0.01
    common = {"total_steps": 2, "batch_size": 8, "optimizer": optimizer,
              "lr_fn": lambda step, p: p, "seed": 0, "device": torch.device("cpu"),
              "precision": "fp32", "verbose": False}
    train_classifier(model, source, np.arange(24), crop_flip_config(16), **common)
    assert seen and all(handler == before for handler in seen)
    seen.clear()
    train_classifier(model, source, np.arange(24), crop_flip_config(16), **common,
                     checkpointing=Checkpointing(lambda step, seconds: None, 0))
    assert seen and all(handler != before for handler in seen)
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_a_diverged_model_is_never_saved():
    saves = []
    with pytest.raises(DivergedError, match=r"^train: the loss or its gradients became "
                       r"non-finite \(NaN/inf\) at step 2 \(epoch 1\); stopping: no "
                       r"checkpoint was written; train it again with a lower --lr \(into a "
                       r"new --out: --resume keeps the lr\)$"):
        train(Classifier(tiny_encoder(), 3), 7, saves, lr=1e30)
    assert saves == []


def nan_at(step):
    """A classifier whose gradients are NaN at ``step`` (counted from 1; its loss
    finite) and a list of the steps it ran (the forwards counted)."""
    model, steps = Classifier(tiny_encoder(), 3), [0]

    def count(module, args):  # (the forward of each step)
        steps[0] += 1

    model.register_forward_pre_hook(count)
    for param in model.parameters():
        param.register_hook(lambda grad: grad * math.nan if steps[0] == step else grad)
    return model, steps


@pytest.mark.parametrize("stop_at", [None, 4, "clock"])
def test_a_finite_loss_with_non_finite_gradients_is_never_saved(stop_at):
    """Step 4's loss is finite, its gradients NaN (bf16 on a CPU gave such): the update
    was applied and saved by the next periodic checkpoint, by a stop's, or as the
    final one of a 'finished' training (supervised, finetune, linear-eval --protocol
    sgd). The step's loss counts as NaN, so the training stops before any save (one
    due by the clock, which each process keeps alone, is left out; the next look stops
    the training)."""
    model, _ = nan_at(4)
    saves = []
    def stop(step, flag):
        if step == stop_at:
            flag.requested = "SIGTERM"

    every, every_s = (0, 1e-9) if stop_at == "clock" else (1, 0.0)
    with pytest.raises(DivergedError, match="non-finite .* at step 4 .*ckpt-3.pt is untouched"):
        train(model, 7, saves, every=every, every_s=every_s, on_step=stop)
    assert saves == [1, 2, 3]


def test_a_diverged_training_stops_soon_not_at_its_epochs_end(monkeypatch):
    """A loss that became NaN in a long epoch (an ImageNet one: hours) was seen only at
    the epoch's end or the next save, the training going on with NaN weights. Now the
    losses are looked at every few seconds or DIVERGENCE_LOOK_STEPS steps (here 5): the
    step-4 NaN of a 30-step epoch stops it by step 6 (a look after step 1, then at
    most 5 steps on), the message naming step 4."""
    from simclr import classify

    # (not raising: without it, a name gone wrong would run the whole epoch and fail)
    monkeypatch.setattr(classify, "DIVERGENCE_LOOK_STEPS", 5, raising=False)
    model, steps = nan_at(4)
    with pytest.raises(DivergedError, match=r"at step 4 \(epoch 1\)") as info:
        train(model, 60, [], every=0, per_class=40, batch=4)  # 30 steps an epoch
    assert 4 <= steps[0] <= 6 and info.value.step == 4


@pytest.mark.parametrize("again", [None, "run the same command again", "no checkpointing"])
def test_a_divergence_names_its_step_what_was_kept_and_how_to_train_again(monkeypatch,
                                                                           again):
    """The one line said 'non-finite in epoch N; lower --lr' alone: now the step it
    was first seen at, the latest checkpoint kept (saved before it: untouched), and how
    to train again with a lower lr, which continuing would not change: the supervised
    baseline into a new --out (its --resume keeps the lr), an evaluation with
    --overwrite (its same command continues the same lr); without a run folder,
    nothing written."""
    from simclr import classify

    monkeypatch.setattr(classify, "DIVERGENCE_LOOK_STEPS", 1)  # a look after every step
    model, steps = nan_at(5)
    how = {None: r" \(into a new --out: --resume keeps the lr\)",
           "run the same command again": r" \(in its --out: with --overwrite\)",
           "no checkpointing": ""}[again]
    kept = ("no checkpoint was written" if again == "no checkpointing" else
            "the last checkpoint ckpt-4.pt is untouched")
    with pytest.raises(DivergedError, match=rf"^train: the loss or its gradients became "
                       rf"non-finite \(NaN/inf\) at step 5 \(epoch 2\); stopping: {kept}; "
                       rf"train it again with a lower --lr{how}$"):
        train(model, 7, [], checkpointing=again != "no checkpointing",
              **({} if again == "no checkpointing" else {"again": again}))
    assert steps[0] == 5  # (looked at after every step here)


def test_the_losses_are_looked_at_every_few_seconds_not_every_step(monkeypatch):
    """A look reads the device's count of finite steps (a host sync: on a GPU, a wait
    for its queue) about every DIVERGENCE_LOOK_S seconds, from the measured step time:
    steps of 0.5 s are looked at after step 1, then every 4 steps (a NaN at step 7 is
    seen at step 9); steps of 1 ms every DIVERGENCE_LOOK_STEPS (50); a forced look
    (an epoch's end, a save) at once, the same step not twice."""
    from simclr import classify

    clock = {"now": 0.0}
    monkeypatch.setattr(classify.time, "perf_counter", lambda: clock["now"])
    reads = []
    watch = classify._DivergenceWatch(torch.device("cpu"), start_step=0)
    first_bad = watch.first_bad_step

    def looked(step, force=False):
        last = watch.last_step
        answer = first_bad(step, force)
        if watch.last_step != last:
            reads.append(step)
        return answer

    answers = []
    for step in range(1, 13):
        clock["now"] = 0.5 * step
        watch.add(torch.tensor(math.nan if step == 7 else 1.0))
        answers.append(looked(step))
    assert reads == [1, 5, 9] and answers == [None] * 8 + [7, None, None, None]
    assert looked(12, force=True) == 7 and looked(12, force=True) is None  # (seen: raised)
    assert reads == [1, 5, 9, 12]
    reads.clear()
    watch = classify._DivergenceWatch(torch.device("cpu"), start_step=100)
    first_bad = watch.first_bad_step
    for step in range(101, 250):
        clock["now"] += 0.001
        watch.add(torch.tensor(1.0))
        assert looked(step) is None
    assert reads == [101, 151, 201]


def _diverging_worker(rank: int, port: int, out_dir: str) -> None:
    """Process 1 alone meets NaN gradients at step 4 (no DDP here: each process trains
    its own classifier), with a save every 3 steps and looks at most 5 steps apart."""
    import json
    import os

    from simclr import classify
    from simclr import distributed as d

    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    d.init_from_env()
    torch.set_num_threads(1)
    classify.DIVERGENCE_LOOK_STEPS = 5
    model, steps = nan_at(4 if rank == 1 else -1)
    saves = []
    try:
        train(model, 60, saves, every=3, per_class=40, batch=4)
        error = None
    except DivergedError as exc:
        error = str(exc)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"error": error, "steps": steps[0], "saves": saves}, f)
    d.cleanup()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_processes_stop_together_where_one_alone_diverged(tmp_path):
    """Under torchrun the look is one all-reduce at steps every process picks alike:
    both processes stop at the same step, with the same message (none waits for the
    other), though only process 1's loss became NaN; nothing is saved after it."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_diverging_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert "non-finite (NaN/inf) at step 4 (epoch 1)" in ranks[0]["error"]
    assert 4 <= ranks[0]["steps"] <= 6 and ranks[0]["saves"] == [3]


def _tally_worker(rank: int, port: int, out_dir: str) -> None:
    """Each of 2 processes trains 6 steps (3 per epoch, 4 of each batch's 8 images its
    share): through; stopped at step 4 (a save every 2 steps: one at 4 too) and
    continued from the stop's tally; stopped at step 4 with a save by the clock at every
    step and continued from rank 0's share there (what an older simclr saved at any
    save). lr 0: each step's loss is the same in every run."""
    import json
    import os

    from simclr import distributed as d
    from simclr.classify import saved_tally

    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    d.init_from_env()
    torch.set_num_threads(1)
    d.STOP_VOTE_EVERY_S = 0.0  # the processes compare stop requests after every step

    def stop(step, flag):
        if step == 4:
            flag.requested = "SIGTERM"

    def run(**how):
        return train(Classifier(tiny_encoder(), 3), 6, [], lr=0.0, **how)

    kept, clocked = [], []
    runs = {"whole": run()}
    status = run(on_step=stop, keep_tally=kept.append)["status"]
    # (what rank 0 saved, read back by every process)
    runs["continued"] = run(start_step=4, tally=saved_tally(d.broadcast_object(kept[-1])))
    run(on_step=stop, every=0, every_s=1e-9, keep_tally=clocked.append)
    share = d.broadcast_object([t for t in clocked if "processes" not in t][-1])
    runs["older"] = run(start_step=4, tally=saved_tally(share))
    # Rank 1 alone asked to stop as the last step ends, no comparison due by the clock:
    # the last step's vote still tells every process (a sweep then stops after the cell).
    d.STOP_VOTE_EVERY_S = 600.0
    last = run(on_step=lambda step, flag: setattr(flag, "requested", "SIGTERM")
               if step == 6 and rank == 1 else None)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"runs": {k: [v["train_loss"], v["train_top1"]] for k, v in runs.items()},
                   "status": status, "kept": kept[-2:], "share": share,
                   "last": [last["status"], last["signal"]]}, f)
    d.cleanup()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_a_continued_epoch_under_processes_reports_the_through_run_loss(tmp_path):
    """Under torchrun each process tallies its own share of every batch: a save kept
    rank 0's running tally, every process took it back and the continued epoch's
    train_loss and train_top1 were another than a run through gave. A save at a step
    all the processes reach (a stop's, every N steps) now keeps their sum, which rank 0
    alone carries on; a save by one process's clock, as an older simclr's file, keeps
    rank 0's share, and still continues."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_tally_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    runs = ranks[0]["runs"]
    assert ranks[1]["runs"] == runs and ranks[0]["status"] == "preempted"
    assert runs["continued"] == pytest.approx(runs["whole"], rel=1e-6, abs=0)
    step_save, stop_save = ranks[0]["kept"]  # (step 4's periodic save, then the stop's)
    assert stop_save == step_save and ranks[1]["kept"] == ranks[0]["kept"]
    assert stop_save["processes"] == 2 and stop_save["seen"] == 8  # (both shares of step 4)
    assert ranks[0]["share"]["seen"] == 4 and all(np.isfinite(runs["older"]))
    assert ranks[0]["last"] == ranks[1]["last"] == ["finished", "SIGTERM"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_classifier_trainings_on_cuda(tmp_path, capsys):
    """The supervised baseline, fine-tuning and the SGD linear protocol on the GPU
    (``--device cuda``: this process's GPU; bf16 or fp16 by --precision auto,
    channels_last): each finishes with a finite loss and a saved classifier."""
    import json

    from simclr.checkpoint_read import load_checkpoint
    from simclr.cli import main
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)
    small = ["--arch", "resnet18", "--width", "0.125", "--image-size", "16", "--batch-size", "8",
             "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--device", "cuda"]
    assert main(["supervised", "--train", str(train), "--test", str(test), "--out",
                 str(tmp_path / "sup"), "--epochs", "2", *small]) == 0
    evaluation = ["--checkpoint", str(tmp_path / "sup"), "--train", str(train), "--test",
                  str(test), "--batch-size", "8", "--workers", "0", "--device", "cuda",
                  "--epochs", "2"]
    assert main(["finetune", *evaluation, "--out", str(tmp_path / "ft")]) == 0
    assert main(["linear-eval", *evaluation, "--protocol", "sgd", "--out",
                 str(tmp_path / "lin")]) == 0
    capsys.readouterr()
    for run, name in (("sup", "supervised"), ("ft", "finetune"), ("lin", "linear_eval")):
        result = json.loads((tmp_path / run / f"{name}.json").read_text())
        assert result["precision"] in ("bf16", "fp16") and np.isfinite(result["train_loss"])
        assert result["steps"] == 4 and 0 <= result["top1"] <= 1
    ckpt = load_checkpoint(tmp_path / "ft/checkpoints/finetune.pt")
    assert all(torch.isfinite(v.float()).all() for v in ckpt["model"].values())


def test_the_training_top1_counts_a_tie_against_the_label():
    """The epoch's train_top1 took argmax: a tie went to the lowest class, a hit for
    its images (half-precision logits tie often). Now top-1's rule, on the device."""
    from simclr.classify import _EpochTally

    tally = _EpochTally(torch.device("cpu"))
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.0, 3.0, 1.0]],
                          requires_grad=True)
    tally.add(torch.tensor(0.5), logits, torch.tensor([0, 1, 1]))
    assert tally.hits.device == logits.device and tally.state()["hits"] == 1
    assert tally.reduced() == (0.5, 1 / 3)


def folder_source(tmp_path, cache="off", workers=1):
    """A folder of 24 pictures of 3 classes (3 steps of 8 an epoch), uncached (decoded
    by ``workers`` DataLoader workers) or cached."""
    from simclr.config import DataConfig
    from simclr.data import open_source
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=3, per_class=8)
    source = open_source(str(folder), DataConfig(cache=cache, cache_dir=str(tmp_path / "cache"),
                                                 workers=workers), image_size=16)
    assert source.cached == (cache == "on")
    return source


def trained(source, total, workers=1, on_step=None):
    """The weights of a classifier trained ``total`` steps on ``source`` (seed 3)."""
    from tests.conftest import snapshot

    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for group in optimizer.param_groups:
        group["peak_lr"] = 0.05
    checkpointing = None if on_step is None else Checkpointing(lambda *_: None, 0, on_step)
    train_classifier(model, source, np.arange(24), crop_flip_config(16), total_steps=total,
                     batch_size=8, optimizer=optimizer, lr_fn=lambda step, p: p, seed=3,
                     device=torch.device("cpu"), precision="fp32", verbose=False,
                     workers=workers, checkpointing=checkpointing)
    return snapshot(model)


@pytest.mark.parametrize("end", ["epoch", "mid-epoch", "ctrl-c"])
def test_an_uncached_training_keeps_one_worker_pool_for_all_its_epochs(tmp_path, monkeypatch,
                                                                        end):
    """Fine-tuning, the supervised baseline and the SGD linear protocol started their
    decoding workers anew every epoch (a DataLoader per epoch: seconds each under the
    spawn start method, macOS's and Windows'): now one pool serves all the epochs, as
    pretraining's does, and its workers end with the training, at an epoch's end, within
    one, or on Ctrl-C (not when collected: none is left running)."""
    started = worker_pools_started(monkeypatch)

    def ctrl_c(step, stop):
        if step == 4:
            raise KeyboardInterrupt

    source = folder_source(tmp_path)
    if end == "ctrl-c":
        with pytest.raises(KeyboardInterrupt):
            trained(source, 9, on_step=ctrl_c)
    else:
        trained(source, 9 if end == "epoch" else 8)
    assert len(started) == 1  # (3 epochs: 3 before, or 2 when stopped in the second)
    assert not any(w.is_alive() for w in started[0]._workers) and not source._loaders


def test_an_uncached_training_with_workers_trains_as_a_cached_one(tmp_path):
    """The same seed gives the same classifier, its pictures decoded by workers that
    persist across the epochs or read from the decoded cache."""
    cached = trained(folder_source(tmp_path, cache="on", workers=0), 7, workers=0)
    decoded = trained(folder_source(tmp_path), 7)
    assert cached.keys() == decoded.keys()
    assert all(torch.equal(cached[k], decoded[k]) for k in cached)


class _TiedLogits(torch.nn.Module):
    """9 classes' logits rounded to whole numbers from the images' mean colour: many
    ties, some of them between the label and the best other class."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 9, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean((2, 3)) @ self.w * 2).round()


def test_a_classifier_test_ranks_each_batch_as_the_whole_logits_would_be():
    """evaluate_classifier keeps what the results need of each batch of test logits as
    it comes (the float32 (M, C) logits took 4 GB at 100k images x 10k classes): O(M)
    numbers, whose top-k accuracies and top-1 predictions (the confusion matrix's) are
    the whole matrix's, ties with the label included, over batches of 4 of 27 images."""
    from simclr.classify import evaluate_classifier
    from simclr.features import extract_features
    from simclr.results import Ranked, accuracy_summary, top1_predictions, topk_accuracy

    model, source = _TiedLogits(), colour_source(n_per_class=3, classes=9)
    full, labels = extract_features(model, source, 16, batch_size=27)
    full = torch.from_numpy(full)
    own = full.gather(1, torch.as_tensor(labels)[:, None])
    assert ((full == own).sum(1) > 1).any() and (full.max(1).values == own[:, 0]).any()
    ranked, test_y = evaluate_classifier(model, source, 16, batch_size=4,
                                         device=torch.device("cpu"), precision="fp32")
    assert isinstance(ranked, Ranked) and ranked.num_classes == 9
    assert len(ranked.ahead) == len(ranked.predictions) == 27
    np.testing.assert_array_equal(test_y, labels)
    assert accuracy_summary(ranked, test_y) == accuracy_summary(full, labels)
    assert topk_accuracy(ranked, test_y, (1, 2, 3)) == topk_accuracy(full, labels, (1, 2, 3))
    np.testing.assert_array_equal(ranked.predictions, top1_predictions(full, labels))


def test_a_classifier_whose_outputs_are_not_finite_is_refused():
    """A diverged training's NaN logits, in any batch: refused in one line, as before."""
    from simclr.classify import evaluate_classifier

    class Diverged(_TiedLogits):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = super().forward(x)
            red = x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))  # (a third of the images)
            return torch.where(red[:, None], torch.nan, logits)

    with pytest.raises(SimCLRError, match=r"outputs are not finite: its training diverged; "
                       r"train it again with a lower --lr \(in its --out: with --overwrite\)"):
        evaluate_classifier(Diverged(), colour_source(n_per_class=3, classes=9), 16,
                            batch_size=4, device=torch.device("cpu"), precision="fp32")
    # (simclr supervised has no --overwrite: its own way to train again)
    with pytest.raises(SimCLRError, match=r"lower --lr \(into a new --out: --resume keeps "):
        evaluate_classifier(Diverged(), colour_source(n_per_class=3, classes=9), 16,
                            batch_size=4, device=torch.device("cpu"), precision="fp32",
                            again="into a new --out: --resume keeps the lr")


@pytest.mark.parametrize("stop_at", [4, 3])
def test_a_stopped_training_continues_with_the_through_runs_loss_and_top1(stop_at):
    """One process, stopped within its second epoch (step 4) or as its first ends (step
    3), with no periodic save: the stop's save keeps the running epoch's tally, which
    reads back as it was kept, and the continued run reports the train_loss and
    train_top1 of a run through (lr 0: every step's loss is the same in each run). A
    tally kept as an epoch ends is not carried into the next one; an older file's
    (none kept) still continues."""
    from simclr.classify import saved_tally

    def stop(step, flag):
        if step == stop_at:
            flag.requested = "SIGTERM"

    def run(**how):
        stats = train(Classifier(tiny_encoder(), 3), 6, [], lr=0.0, every=0, **how)
        return stats["train_loss"], stats["train_top1"]

    kept = []
    whole = run()
    run(on_step=stop, keep_tally=kept.append)
    assert kept and saved_tally(kept[-1]) == kept[-1]
    assert kept[-1]["seen"] == 8 * stop_at - (24 if stop_at > 3 else 0)
    assert run(start_step=stop_at, tally=saved_tally(kept[-1])) == \
        pytest.approx(whole, rel=1e-6, abs=0)
    assert saved_tally(None) is None
    # One process's save by the clock is the whole sum too: continued under torchrun,
    # rank 0 alone carries it on.
    clocked = []
    train(Classifier(tiny_encoder(), 3), 2, [], every=0, every_s=1e-9, keep_tally=clocked.append)
    assert clocked and all(t["processes"] == 1 for t in clocked)
    older = run(start_step=stop_at, tally=saved_tally(None))
    assert all(np.isfinite(older))


def test_too_few_images_for_a_batch_is_one_line():
    with pytest.raises(SimCLRError, match=r"^train: 6 images make no batch of 8$"):
        train(Classifier(tiny_encoder(), 3), 7, [], per_class=2)


def test_each_step_takes_its_lr_and_a_time_budget_ends_the_training():
    """Step s (counted from 0, a continued run's from its start) trains at
    ``lr_fn(s, peak_lr)``; ``refit`` after each step sets the total steps anew (a
    --time-budget): one that says 4 after step 2 ends a 7-step training at step 4."""
    asked = []

    def lr_fn(step, peak):
        asked.append(step)
        return peak

    train(Classifier(tiny_encoder(), 3), 7, [], lr_fn=lr_fn)
    assert asked == list(range(7))
    asked.clear()
    train(Classifier(tiny_encoder(), 3), 7, [], start_step=4, lr_fn=lr_fn)
    assert asked == [4, 5, 6]
    stats = train(Classifier(tiny_encoder(), 3), 7, [],
                  refit=lambda step, seconds: 7 if step < 2 else 4)
    assert (stats["status"], stats["steps"]) == ("finished", 4)


def test_a_bf16_steps_loss_is_the_float32_cross_entropy_of_its_logits():
    """A model whose logits come out of autocast in bf16 (a Classifier's are float32
    already): classifier_step takes their cross-entropy in float32, the loss it returns
    (a train_loss's part) not rounded to bf16's 3 significant digits."""
    from simclr.classify import classifier_step

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    views = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 3
    logits, loss = classifier_step(model, views, labels, optimizer,
                                   torch.amp.GradScaler("cpu", enabled=False),
                                   torch.device("cpu"), "bf16")
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    expected = torch.nn.functional.cross_entropy(logits.detach().float(), labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6, abs=0)


def test_a_test_set_without_images_is_one_line():
    from simclr.classify import evaluate_classifier

    with pytest.raises(SimCLRError, match="no images to evaluate$"):
        evaluate_classifier(_TiedLogits(), colour_source(n_per_class=0), 16, batch_size=4,
                            device=torch.device("cpu"), precision="fp32")


class _SmallGradients(torch.nn.Module):
    """A linear layer whose fp16 output is scaled by 1e-7 in float32: its gradients
    (about 1e-9) are below fp16's smallest number unless the loss is scaled up."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)).float() * 1e-7


def test_an_fp16_training_scales_its_loss():
    """fp16 trains with a GradScaler (made here unless the caller passes its own): a
    step's gradients too small for fp16 still change the weights."""
    model = _SmallGradients()
    before = model.fc.weight.detach().clone()
    stats = train(model, 1, [], lr=1.0, precision="fp16", checkpointing=False)
    assert stats["steps"] == 1 and np.isfinite(stats["train_loss"])
    assert not torch.equal(model.fc.weight.detach(), before)
