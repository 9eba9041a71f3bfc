"""Tests for simclr.named_data: scikit-learn's digits and torchvision's named sets."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.named_data import (
    NAMED_TRAIN_SIZES,
    digits_source,
    digits_split,
    is_digits,
    open_named,
)


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
                                ("cifar100", "cifar-100-python", ["train"]),
                                ("stl10", "stl10_binary",
                                 ["train_X.bin", "train_y.bin", "unlabeled_X.bin"])):
        cfg = DataConfig(root=str(tmp_path / name))
        with pytest.raises(SimCLRError, match=f"{name} not found under"):
            named_train_size(name, cfg)
        (tmp_path / name / folder).mkdir(parents=True)
        for f in files[:-1]:  # (all but one: the set is not there, so it is opened)
            (tmp_path / name / folder / f).write_bytes(b"")
        with pytest.raises(SimCLRError, match=f"{name} not found under"):
            named_train_size(name, cfg)
        (tmp_path / name / folder / files[-1]).write_bytes(b"")
        assert named_train_size(name, cfg) == NAMED_TRAIN_SIZES[name]
    assert NAMED_TRAIN_SIZES == {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000}


def test_digits_split_draws_its_parts_from_the_seed_each_in_the_digits_order():
    """The first train_size of a permutation by default_rng(seed) are the train part,
    the others the test part, each sorted (seed 0 by default)."""
    full = digits_source()
    for seed, split in ((0, digits_split()), (1, digits_split(seed=1))):
        perm = np.random.default_rng(seed).permutation(1797)
        for part, idx in zip(split, (np.sort(perm[:1200]), np.sort(perm[1200:])), strict=True):
            assert np.array_equal(part.labels, full.labels[idx])
            assert torch.equal(part.get_batch(np.arange(3)), full.get_batch(idx[:3]))
    assert not np.array_equal(digits_split(seed=1)[0].labels, digits_split()[0].labels)


def test_a_folder_named_digits_is_a_folder_not_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_digits(None) and is_digits("digits") and not is_digits("DIGITS")
    (tmp_path / "digits").mkdir()
    assert is_digits(None) and not is_digits("digits")


class _FakeSet:
    """A torchvision data set class that records how it was made: there (or fetched)
    it holds 4 tiny images, else it raises as torchvision does."""

    def __init__(self, calls: list, there: bool, fails: Exception | None = None) -> None:
        self.calls, self.there, self.fails = calls, there, fails

    def __call__(self, root: str, download: bool, **kw):
        self.calls.append((root, download, kw))
        if not (self.there or download):
            raise RuntimeError("Dataset not found or corrupted.")
        if download and self.fails is not None:
            raise self.fails
        stl = "split" in kw
        rng = np.random.default_rng(0)
        shape = (4, 3, 6, 5) if stl else (4, 6, 5, 3)
        data = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = [2, 0, 1, 2]
        return type("DS", (), {"data": data, "classes": ["a", "b", "c"],
                               "labels" if stl else "targets": labels})()


def test_torchvision_sets_are_opened_at_their_split_in_their_layout(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls: list = []
    monkeypatch.setattr(tvd, "CIFAR100", _FakeSet(calls, there=True))
    monkeypatch.setattr(tvd, "STL10", _FakeSet(calls, there=True))
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = DataConfig(root="~/sets")
    root = str(tmp_path / "sets")
    for name, train in (("cifar100", False), ("cifar100", True), ("stl10", True),
                        ("stl10", False)):
        src = open_named(name, cfg, train=train)
        split = "train" if train else "test"
        assert src.name == f"{name}[{split}]" and src.labels.tolist() == [2, 0, 1, 2]
        assert src.classes == ["a", "b", "c"] and src.image_hw == (6, 5)
        kw = ({"split": "train+unlabeled" if train else "test"} if name == "stl10"
              else {"train": train})
        assert calls.pop() == (root, False, kw)
    ds = _FakeSet([], there=True)(root, False, train=True)
    assert torch.equal(open_named("cifar100", cfg, train=True).get_batch([1]),
                       torch.from_numpy(ds.data[1:2]).permute(0, 3, 1, 2))


def test_a_download_is_tried_only_when_asked_and_its_error_is_said(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls: list = []
    monkeypatch.setattr(tvd, "CIFAR10", _FakeSet(calls, there=False))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SimCLRError, match=f"cifar10 not found under {tmp_path}/sets;"):
        open_named("cifar10", DataConfig(root="~/sets"), train=True)
    assert [c[1] for c in calls] == [False]
    cfg = DataConfig(root=str(tmp_path), download=True)
    assert open_named("cifar10", cfg, train=True).num_images == 4
    assert [c[1] for c in calls] == [False, False, True]
    monkeypatch.setattr(tvd, "CIFAR10", _FakeSet(calls, False, OSError("no route to host")))
    with pytest.raises(SimCLRError, match="could not download cifar10 into .*: no route to "
                                          "host \\(offline"):
        open_named("cifar10", cfg, train=True)
