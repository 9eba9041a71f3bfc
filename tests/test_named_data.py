"""Tests for simclr.named_data: scikit-learn's digits and torchvision's named sets."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.named_data import digits_source, digits_split


def test_digits_source_shapes_and_values():
    src = digits_source()
    assert src.num_images == 1797 and src.classes == [str(d) for d in range(10)]
    assert sorted(set(src.labels.tolist())) == list(range(10))
    batch = src.get_batch(np.arange(5))
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == torch.uint8
    assert open_source(None, DataConfig()).num_images == 1797
    # independent bilinear (align_corners=False) upscale of the first digit, float64
    from sklearn.datasets import load_digits

    img = load_digits().images[0] * (255.0 / 16.0)
    pos = np.clip((np.arange(32) + 0.5) * 8 / 32 - 0.5, 0, 7)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, 7)
    f = pos - lo
    rows = img[lo] * (1 - f)[:, None] + img[hi] * f[:, None]
    ref = rows[:, lo] * (1 - f) + rows[:, hi] * f
    assert np.abs(batch[0, 0].numpy() - ref).max() <= 0.51
    assert torch.equal(batch[:, 0], batch[:, 2])


def test_the_digits_demo_without_scikit_learn_says_so_in_one_line(monkeypatch):
    from simclr.named_data import _digits_images

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # (import raises ImportError)
    with pytest.raises(SimCLRError, match="needs scikit-learn.*pip install scikit-learn"):
        _digits_images()


def test_digits_split_is_deterministic_and_disjoint():
    train, test = digits_split()
    assert (train.num_images, test.num_images) == (1200, 597)
    again, _ = digits_split()
    assert torch.equal(train.get_batch(np.arange(20)), again.get_batch(np.arange(20)))
    a = train.get_batch(np.arange(train.num_images)).flatten(1)
    b = test.get_batch(np.arange(test.num_images)).flatten(1)
    assert train.labels.shape == (1200,) and test.labels.shape == (597,)
    assert torch.cat([a, b]).shape[0] == 1797
    assert open_source(None, DataConfig(), train=False).num_images == 597
    # held out: a training split scored on the test split trains on the train part alone
    assert open_source(None, DataConfig(), held_out=True).num_images == 1200


def test_named_dataset_without_download_says_how(tmp_path):
    import shlex

    cfg = DataConfig(root=str(tmp_path / "datasets"))
    with pytest.raises(SimCLRError, match=r"cifar10 not found under .*download=True") as info:
        open_source("cifar10", cfg)
    with pytest.raises(SimCLRError, match=r"cifar10 not found under"):  # (any case)
        open_source("CIFAR10", cfg)
    # the fetch alone, into the root the user gave: a shell command that parses as Python
    command = str(info.value).split("with: ", 1)[1].split("; or pass")[0]
    program, flag, code = shlex.split(command)
    assert (program, flag) == ("python", "-c")
    compile(code, "fetch", "exec")
    assert f"CIFAR10({str(tmp_path / 'datasets')!r}, download=True)" in code


def test_a_named_sets_size_is_known_from_its_files_without_reading_them(tmp_path):
    """A sweep counts each cell's named data set before the first trains: opening it
    read the whole split (STL-10's 2.7 GB) once more, on every rerun too. Its files are
    checked present (empty here: reading them would fail) and its size is known."""
    from simclr.named_data import named_train_size

    for name, folder, files in (("cifar10", "cifar-10-batches-py",
                                 [f"data_batch_{k}" for k in range(1, 6)]),
                                ("stl10", "stl10_binary",
                                 ["train_X.bin", "train_y.bin", "unlabeled_X.bin"])):
        cfg = DataConfig(root=str(tmp_path / name))
        with pytest.raises(SimCLRError, match=f"{name} not found under"):
            named_train_size(name, cfg)
        (tmp_path / name / folder).mkdir(parents=True)
        for f in files:
            (tmp_path / name / folder / f).write_bytes(b"")
        assert named_train_size(name, cfg) == {"cifar10": 50_000, "stl10": 105_000}[name]
