"""Tests for simclr.partial: an evaluation's unfinished training kept in its --out (or
nothing kept without one), the differing settings named, a damaged saved state refused."""

from __future__ import annotations

import re

import pytest
import torch

from simclr.errors import SimCLRError
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
