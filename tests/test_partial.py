"""Tests for simclr.partial: an evaluation's unfinished training kept in its --out (or
nothing kept without one), the differing settings named, a damaged saved state refused."""

from __future__ import annotations

import re

import pytest
import torch

from simclr.errors import SimCLRError
from simclr.files import lock_folder
from simclr.models import Classifier
from simclr.partial import PartialRun
from tests.conftest import tiny_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_partial_run_without_a_folder_keeps_nothing(tmp_path):
    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    none = PartialRun(None, "linear", "linear evaluation", {"epochs": 1})
    assert none.path is None and none.resume(model, optimizer, scaler, False) == (0, 0.0)
    none.discard()
    empty = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    assert empty.path == tmp_path / "checkpoints" / "linear-partial.pt"
    assert empty.resume(model, optimizer, scaler, False) == (0, 0.0)


def test_a_differing_source_is_named_by_the_entries_that_differ():
    """A fine-tuning rerun on another checkpoint said 'other settings (source)' alone."""
    from simclr.partial import _difference

    saved = {"file": "/data/runs/first-run/checkpoints/last.pt", "step": 400}
    now = {"file": "/data/runs/a-much-longer-second-run-name/checkpoints/last.pt", "step": 400}
    assert _difference("source", saved, now) == (
        "source file: '/data/runs/first-run/checkpoints/last.pt' saved, "
        "'.../a-much-longer-second-run-name/checkpoints/last.pt' now")
    assert _difference("lr", 0.1, 0.05) == "lr: 0.1 saved, 0.05 now"


def test_a_partial_runs_momentum_of_another_shape_is_one_line_naming_the_file(tmp_path):
    """A linear evaluation's or fine-tuning's saved momentum cut to [:1] (a damaged or
    edited file) loaded without a word and died at its first step inside torch."""
    from simclr.classifiers import classifier_checkpoint

    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 16, 16)).square().sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    saved = optimizer.state_dict()
    saved["state"][0]["momentum_buffer"] = saved["state"][0]["momentum_buffer"][:1]
    partial = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    blob = classifier_checkpoint("linear", model, {}, ["a", "b", "c"], 1, 0.0, {})
    blob["optimizer"] = saved
    path = partial.save(blob, scaler)
    again = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(SimCLRError, match=rf"^{re.escape(path)}: its optimizer or step state "
                                          r"does not fit this run \(damaged or edited\? the "
                                          r"saved momentum_buffer of \S+ has shape \[1"):
        again.resume(model, fresh, scaler, False)
    again.release()


def test_only_a_split_read_anew_is_said_to_be_read_anew(tmp_path):
    """partial.read_anew names the split where the saved run's classes were DIR's split
    folders and this release reads DIR/Train/; lower-case splits (read as splits by the
    earlier releases too), the same classes, or classes that were no split are not."""
    from types import SimpleNamespace

    from simclr.partial import read_anew

    for folder in ("caps/Train", "caps/Test", "lower/train", "lower/test"):
        (tmp_path / folder).mkdir(parents=True)
    caps = SimpleNamespace(name=str(tmp_path / "caps" / "Train"), classes=["cat", "dog"],
                           num_images=12)
    said = read_anew({"classes": ["Test", "Train"]}, caps)
    assert said is not None and said.startswith(
        f"this release reads {tmp_path / 'caps'} as its split Train/ (12 images)")
    assert read_anew({"train": [16, ["Test", "Train"]]}, caps) == said  # (linear's settings)
    assert read_anew({"classes": ["cat", "dog"]}, caps) is None
    assert read_anew({"classes": ["bird", "cat"]}, caps) is None
    lower = SimpleNamespace(name=str(tmp_path / "lower" / "train"), classes=["cat", "dog"],
                            num_images=12)
    assert read_anew({"classes": ["test", "train"]}, lower) is None
    assert read_anew({"classes": ["Test", "Train"]}, None) is None


def test_an_older_run_saved_without_a_weights_digest_is_not_taken_for_a_moved_one(tmp_path):
    """A source checkpoint at another path is accepted only where the weights' digest
    saved matches this run's (a moved run folder); an older unfinished run saved none:
    two missing digests are no match, and the other source is refused."""
    from simclr.classifiers import classifier_checkpoint

    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    first = PartialRun(tmp_path, "finetune", "fine-tuning", {"source": ["/a/last.pt", 5]})
    first.save(classifier_checkpoint("finetune", model, {}, ["a", "b", "c"], 1, 0.0, {},
                                     optimizer), scaler)
    again = PartialRun(tmp_path, "finetune", "fine-tuning", {"source": ["/b/last.pt", 5]})
    with pytest.raises(SimCLRError, match=r"with other settings \(source: "):
        again.resume(model, optimizer, scaler, False)
    again.release()


def _saved_linear_run(tmp_path, settings, step=4, total=9):
    """A linear evaluation's unfinished training saved at ``step`` of ``total`` in
    ``tmp_path``: (model, optimizer, scaler)."""
    from simclr.classifiers import classifier_checkpoint

    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    first = PartialRun(tmp_path, "linear", "linear evaluation", settings)
    first.total = total
    first.save(classifier_checkpoint("linear", model, {}, ["a", "b", "c"], step, 7.5, {},
                                     optimizer), scaler)
    return model, optimizer, scaler


def test_a_continued_run_keeps_the_length_it_was_saved_with(tmp_path):
    """Its steps counted otherwise now (12, not the 9 saved): it ends at its own 9, and
    the folder is let go once released."""
    model, optimizer, scaler = _saved_linear_run(tmp_path, {"epochs": 1}, step=4, total=9)
    again = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    assert again.resume(model, optimizer, scaler, False, total=12) == (4, 7.5)
    again.release()
    assert again.total == 9
    lock_folder(tmp_path).close()  # (released: another command may take the folder)
    # An earlier simclr's file records no length: the one it counted (earlier_total)
    model, optimizer, scaler = _saved_linear_run(tmp_path, {"epochs": 1}, step=4, total=None)
    earlier = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    earlier.resume(model, optimizer, scaler, False, total=12, earlier_total=10)
    earlier.release()
    assert earlier.total == 10


@pytest.mark.parametrize("overwrite", [True, "keep"])
def test_overwrite_starts_over_a_run_of_other_settings_and_it_is_gone(tmp_path, overwrite,
                                                                       capsys):
    """--overwrite deletes the unfinished run it cannot continue ("keep": sets it aside):
    a stop before the new run's first save left the old one to be refused again."""
    model, optimizer, scaler = _saved_linear_run(tmp_path, {"epochs": 1})
    again = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 2},
                       overwrite=overwrite)
    assert again.resume(model, optimizer, scaler, False) == (0, 0.0)
    again.release()
    assert not again.path.exists()
    kept = tmp_path / "checkpoints" / "linear-partial.previous-1.pt"
    assert kept.exists() == (overwrite == "keep")
    assert "epochs: 1 saved, 2 now" in capsys.readouterr().err


def test_its_checkpoints_come_every_so_many_minutes_after_the_state_it_continues(tmp_path):
    """--checkpoint-minutes is minutes (a save every 90 s for 1.5); the latest state kept
    is the saved run's, which the same command continues; each save stores the epoch's
    tally the training hands it."""
    fresh = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    assert fresh.checkpointing(lambda step, s: None, 5, None, minutes=1.5).last is None
    _saved_linear_run(tmp_path, {"epochs": 1})
    run = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    saving = run.checkpointing(lambda step, s: None, 5, None, minutes=1.5)
    assert (saving.every, saving.every_s, saving.last) == (5, 90.0, run.path)
    saving.keep_tally({"loss_sum": 2.0, "steps": 1.0})
    assert run.tally == {"loss_sum": 2.0, "steps": 1.0}


def test_overwrite_continues_the_same_settings_and_starts_over_an_unreadable_state(
        tmp_path, capsys):
    """--overwrite throws away only what cannot continue: a run of the same settings is
    resumed; a saved state that cannot be read is deleted and the run starts at step 0."""
    model, optimizer, scaler = _saved_linear_run(tmp_path, {"epochs": 1})
    same = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1}, overwrite=True)
    assert same.resume(model, optimizer, scaler, False) == (4, 7.5)
    same.release()
    same.path.write_bytes(b"not a checkpoint")
    damaged = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1},
                         overwrite=True)
    assert damaged.resume(model, optimizer, scaler, False) == (0, 0.0)
    damaged.release()
    assert not damaged.path.exists() and "cannot be read" in capsys.readouterr().err


def test_the_weights_digest_is_the_saved_runs_and_names_each_tensor():
    """Its value is saved in unfinished runs and must stay as it was (16 hex digits of
    the sha256); two networks whose tensors hold the same bytes under other names (another
    architecture) are two networks."""
    from torch import nn

    from simclr.partial import partial_weights_digest

    assert partial_weights_digest(None) == "e3b0c44298fc1c14"  # (sha256 of nothing)
    one, other = nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2))
    other.load_state_dict({f"0.{k}": v for k, v in one.state_dict().items()})
    assert len(partial_weights_digest(one)) == 16
    assert partial_weights_digest(one) != partial_weights_digest(other)
    assert partial_weights_digest(one) == partial_weights_digest(one, None)


def test_a_continued_run_takes_back_its_gradient_scale(tmp_path):
    """The GradScaler's scale saved with the state is the continued run's (fp16 training
    would else start again at 65536 and skip steps finding its scale anew)."""
    model, optimizer, _ = _saved_linear_run(tmp_path, {"epochs": 1})
    partial = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    blob = torch.load(partial.path, weights_only=False)
    partial.save(blob, torch.amp.GradScaler("cpu", init_scale=128.0))
    scaler = torch.amp.GradScaler("cpu")
    assert partial.resume(model, optimizer, scaler, False) == (4, 7.5)
    partial.release()
    assert scaler.get_scale() == 128.0


def test_a_run_continued_after_its_last_step_takes_back_all_it_counted(tmp_path, capsys):
    """Resumed, the saved run's epoch tally, metrics, run id and skipped files are this
    one's; saved after its last step (of its own 9, though 12 are counted now) it is only
    tested again, with the saved loss and top-1."""
    from simclr.classifiers import classifier_checkpoint

    model = Classifier(tiny_encoder(), 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    first = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1}, total=9,
                       tally={"loss_sum": 2.5, "hits": 3.0, "seen": 4})
    blob = classifier_checkpoint("linear", model, {}, ["a", "b", "c"], 9, 7.5,
                                 {"train_loss": 0.25, "train_top1": 0.5}, optimizer,
                                 run_id="run-1")
    first.save(dict(blob, skipped_images=[["/d/bad.png", "truncated"]]), scaler)
    again = PartialRun(tmp_path, "linear", "linear evaluation", {"epochs": 1})
    assert again.resume(model, optimizer, scaler, True, total=12) == (9, 7.5)
    again.release()
    assert again.tally == {"loss_sum": 2.5, "hits": 3.0, "seen": 4}
    assert again.skipped == [("/d/bad.png", "truncated")] and again.run_id == "run-1"
    assert "finished its 9 steps before it was stopped: testing it again" in \
        capsys.readouterr().err
    assert again.trained_stats({"steps": 9, "train_loss": None, "train_top1": None}, 9) == \
        {"steps": 9, "train_loss": 0.25, "train_top1": 0.5}


def test_a_moved_run_continues_only_where_all_else_is_the_same(tmp_path):
    """The same weights (digest) under another source path continue; another source step,
    or another setting held in a list, is refused even then."""
    model, optimizer, scaler = _saved_linear_run(
        tmp_path, {"weights": "w1", "source": ["/a/last.pt", 5], "views": [2, 96]})
    for source, views in ((["/b/last.pt", 6], [2, 96]), (["/b/last.pt", 5], [3, 96])):
        again = PartialRun(tmp_path, "linear", "linear evaluation",
                           {"weights": "w1", "source": source, "views": views})
        with pytest.raises(SimCLRError, match=r"with other settings"):
            again.resume(model, optimizer, scaler, False)
        again.release()
    moved = PartialRun(tmp_path, "linear", "linear evaluation",
                       {"weights": "w1", "source": ["/b/last.pt", 5], "views": [2, 96]})
    assert moved.resume(model, optimizer, scaler, False) == (4, 7.5)
    moved.release()


def test_a_run_whose_listed_subset_alone_differs_is_continued_with_the_list(tmp_path):
    """A fine-tuning that listed its labeled subset, refused for its subset alone, is told
    to continue with the list and the epochs saved; other settings differing, its own
    command."""
    model, optimizer, scaler = _saved_linear_run(
        tmp_path, {"subset": ["fraction", 0.1], "epochs": 30})
    (tmp_path / "labeled_subset.txt").write_text("a/1.png\n")
    again = PartialRun(tmp_path, "linear", "linear evaluation",
                       {"subset": ["fraction", 0.2], "epochs": 30})
    with pytest.raises(SimCLRError, match=r"rerun its own command to continue it, with "
                                          r"--subset \S+labeled_subset.txt --epochs 30 \(the "
                                          r"images it trains on\) in place of --label-fr"):
        again.resume(model, optimizer, scaler, False)
    again.release()
    other = PartialRun(tmp_path, "linear", "linear evaluation",
                       {"subset": ["fraction", 0.2], "epochs": 40})
    with pytest.raises(SimCLRError, match=r"rerun its own command to continue it, pass"):
        other.resume(model, optimizer, scaler, False)
    other.release()
