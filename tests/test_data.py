"""Tests for simclr.data: folders, sources with bad files, named data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.config import DataConfig
from simclr.data import digits_source, digits_split, list_folder, open_source, scan_folder
from simclr.errors import SimCLRError
from simclr.loader import BatchLoader
from tests.conftest import SHARED_DATA, make_image_folder, requires_cifar
from tests.image_files import data_cfg, jpeg_bytes, rgb, save_image

# ---------------------------------------------------------------------------- folders


def test_imagefolder_labels_follow_sorted_class_names(tmp_path):
    for cls, count in (("zebra", 2), ("ant", 1), ("Moose", 3)):
        for k in range(count):
            save_image(tmp_path / cls / f"{k}.png")
    save_image(tmp_path / "ant" / ".hidden.png")  # hidden file
    save_image(tmp_path / ".git" / "x.png")  # hidden folder: no class
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    images = scan_folder(tmp_path)
    assert images.classes == ["Moose", "ant", "zebra"]  # plain sorted(), as ImageFolder
    assert images.labels.dtype == np.int64
    assert images.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert [Path(p).parent.name for p in images.paths] == ["Moose"] * 3 + ["ant"] + ["zebra"] * 2


def test_flat_folder_has_labels_minus_one(tmp_path):
    for name in ("b.png", "a.jpg", "c.PNG"):
        save_image(tmp_path / name)
    images = scan_folder(tmp_path)
    assert images.classes == []
    assert images.labels.tolist() == [-1, -1, -1]
    assert [Path(p).name for p in images.paths] == ["a.jpg", "b.png", "c.PNG"]


def test_images_beside_class_folders_count_where_no_label_is_needed(tmp_path, caplog):
    """A photo folder with some sub-folders: pretraining and embed take every image
    (the loose ones labelled -1); the labeled commands leave them out and say so."""
    for name in ("top1.jpg", "top0.png"):
        save_image(tmp_path / name)
    for cls, count in (("2023", 2), ("old", 1)):
        for k in range(count):
            save_image(tmp_path / cls / f"{k}.png")
    everything = scan_folder(tmp_path, unlabeled=True)
    assert [Path(p).name for p in everything.paths] == ["top0.png", "top1.jpg", "0.png",
                                                       "1.png", "0.png"]
    assert everything.labels.tolist() == [-1, -1, 0, 0, 1]
    assert everything.classes == ["2023", "old"] and not caplog.records
    labeled = scan_folder(tmp_path)
    assert labeled.labels.tolist() == [0, 0, 1] and labeled.classes == ["2023", "old"]
    assert "2 image(s) outside the class folders are ignored" in caplog.text


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(SimCLRError, match=f"not found: {tmp_path / 'nope'}"):
        scan_folder(tmp_path / "nope")


def test_file_instead_of_folder_is_named(tmp_path):
    f = save_image(tmp_path / "a.png")
    with pytest.raises(SimCLRError, match=f"not a folder: {f}"):
        scan_folder(f)


def test_empty_folder_is_named(tmp_path):
    (tmp_path / ".DS_Store").write_text("")  # hidden files do not count
    with pytest.raises(SimCLRError, match=f"empty: {tmp_path}"):
        scan_folder(tmp_path)


def test_folder_without_images_is_named(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "labels.csv").write_text("a,b")
    with pytest.raises(SimCLRError, match=f"no images found in {tmp_path}"):
        scan_folder(tmp_path)


def test_folder_with_splits_picks_train_or_test(tmp_path):
    root = tmp_path / "ds"
    save_image(root / "train" / "cat" / "1.png")
    save_image(root / "train" / "dog" / "1.png")
    save_image(root / "test" / "cat" / "1.png")
    cfg = data_cfg(tmp_path)
    assert open_source(str(root), cfg, train=True).num_images == 2
    assert open_source(str(root), cfg, train=False).num_images == 1
    # Listed without decoding, the same split: what the early label checks look at.
    assert [len(list_folder(str(root), train).paths) for train in (True, False)] == [2, 1]
    assert list_folder(str(root), True).root == str(root / "train")
    assert list_folder(None) is None and list_folder("digits") is None
    assert list_folder("cifar10") is None  # torchvision's, where no such folder exists


# ---------------------------------------------------------------------------- folder sources


def _mixed_folder(root: Path) -> dict[str, str]:
    """Good and bad files; returns name -> expected reason fragment for the bad ones."""
    save_image(root / "a_good.png", rgb(32, 32, 1))
    save_image(root / "b_gray.png", np.zeros((32, 32), dtype=np.uint8))
    save_image(root / "c_small.png", rgb(8, 8, 2))
    (root / "d_zero.jpg").write_bytes(b"")
    (root / "e_trunc.jpg").write_bytes(jpeg_bytes(32, 32)[:600])
    (root / "f_text.png").write_text("hello")
    save_image(root / "g_big.png", rgb(60, 60, 3))  # over max_pixels=3000 below
    return {"d_zero.jpg": "empty file", "e_trunc.jpg": "truncated",
            "f_text.png": "not an image", "g_big.png": "decompression-bomb"}


@pytest.mark.parametrize("cache", ["on", "off"])
def test_bad_images_are_skipped_and_counted(tmp_path, cache):
    bad = _mixed_folder(tmp_path / "imgs")
    cfg = data_cfg(tmp_path, cache=cache, load_size=32)
    src = open_source(str(tmp_path / "imgs"), cfg, max_pixels=3000)
    if cache == "on":
        assert src.cached and src.num_images == 3
        batch = src.get_batch(np.arange(3))
    else:  # found while iterating; replaced by the next readable image
        assert not src.cached and src.num_images == 7
        batch = torch.cat([im for _, im, _ in BatchLoader(src, 7, 0, 0, workers=0)])
    assert batch.shape[1:] == (3, 32, 32) and batch.dtype == torch.uint8
    skipped = {Path(p).name: reason for p, reason in src.skipped}
    assert skipped.keys() == bad.keys()
    for name, fragment in bad.items():
        assert fragment in skipped[name]
    assert "skipped 4 unreadable image(s)" in src.skip_summary()


@pytest.mark.parametrize("cache", ["on", "off"])
def test_strict_fails_on_first_bad_file(tmp_path, cache):
    _mixed_folder(tmp_path / "imgs")
    cfg = data_cfg(tmp_path, cache=cache, strict=True, load_size=32)
    bad = tmp_path / "imgs" / "d_zero.jpg"
    with pytest.raises(SimCLRError, match=f"--strict: bad image {bad}: empty file"):
        open_source(str(tmp_path / "imgs"), cfg, max_pixels=3000)


def test_strict_on_a_reused_cache_fails_without_first_calling_it_a_skip(tmp_path, caplog):
    """A cache built without --strict recorded the bad files; --strict then reuses it
    and fails on the first, without the "skipped" warning that would contradict it."""
    _mixed_folder(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", load_size=32),
                max_pixels=3000)
    caplog.clear()
    with caplog.at_level("INFO"), pytest.raises(SimCLRError, match="--strict: bad image"):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", strict=True,
                                                      load_size=32), max_pixels=3000)
    assert "using the decoded cache" in caplog.text and "skipped" not in caplog.text


@pytest.mark.parametrize("view", [16, 32])
def test_cache_changes_only_the_speed_not_the_stored_pixels(tmp_path, view):
    """A folder of small images is stored at its own side cached or not: uncached it
    was resampled to round(1.15 x view) (37 px at 32-px views), a different training."""
    root = tmp_path / "small"
    for k, width in enumerate((28, 28, 30, 32)):
        save_image(root / f"{k}.png", rgb(32, width, k))
    on, off = (open_source(str(root), data_cfg(tmp_path, cache=c), image_size=view)
               for c in ("on", "off"))
    assert on.cached and not off.cached
    assert on.image_hw == off.image_hw == (28, 28)  # the most common shorter side
    (a, aspect_a), (b, aspect_b) = on.batch(np.arange(4)), off.batch(np.arange(4))
    assert torch.equal(a, b) and torch.allclose(aspect_a, aspect_b)


# ---------------------------------------------------------------------------- named sources


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


def test_named_dataset_without_download_says_how(tmp_path):
    import shlex

    cfg = DataConfig(root=str(tmp_path / "datasets"))
    with pytest.raises(SimCLRError, match=r"cifar10 not found under .*download=True") as info:
        open_source("cifar10", cfg)
    # the fetch alone, into the root the user gave: a shell command that parses as Python
    command = str(info.value).split("with: ", 1)[1].split("; or pass")[0]
    program, flag, code = shlex.split(command)
    assert (program, flag) == ("python", "-c")
    compile(code, "fetch", "exec")
    assert f"CIFAR10({str(tmp_path / 'datasets')!r}, download=True)" in code


@pytest.mark.skipif(not Path("/work/shared/data/cifar10/test").is_dir(),
                    reason="shared CIFAR-10 JPEG folder not available")
def test_shared_cifar10_folder_labels(tmp_path):
    images = scan_folder("/work/shared/data/cifar10/test")
    assert len(images.paths) == 10_000 and images.classes[0] == "airplane"
    assert np.bincount(images.labels).tolist() == [1000] * 10


@requires_cifar
def test_shared_cifar10_test_split_opens_as_a_cached_labeled_source(tmp_path):
    folder = SHARED_DATA / "cifar10" / "test"
    source = open_source(str(folder), DataConfig(cache_dir=str(tmp_path)), train=False)
    assert source.cached and source.image_hw == (32, 32)
    assert source.num_images == 10_000 and len(source.classes) == 10
    assert np.bincount(source.labels).tolist() == [1000] * 10
    batch = source.get_batch(np.array([0, 9999]))
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 32, 32)


def test_linked_folders_are_followed_once_and_loops_not_at_all(tmp_path):
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "d", classes=2, per_class=3)
    extra = make_image_folder(tmp_path / "elsewhere", classes=1, per_class=2)
    (root / "class_0" / "loop").symlink_to(root)  # a link back up the tree
    (root / "class_1" / "more").symlink_to(extra / "class_0")  # a linked folder: read
    (root / "class_1" / "again").symlink_to(extra / "class_0")  # the same one twice
    listing = scan_folder(root)
    assert listing.classes == ["class_0", "class_1"]
    assert len(listing.paths) == 3 + 3 + 2
    assert np.bincount(listing.labels).tolist() == [3, 5]


def test_a_worker_error_is_one_line():
    """An error raised in a DataLoader worker comes back with the worker's traceback in
    its text; the command line shows only the original message."""
    from torch._utils import ExceptionWrapper

    from simclr.errors import user_message

    try:
        raise SimCLRError("all 8 images are unreadable (first: a/0.jpg: not an image)")
    except SimCLRError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(SimCLRError) as info:
        wrapped.reraise()
    assert "Original Traceback" in str(info.value)
    assert user_message(info.value) == "all 8 images are unreadable (first: a/0.jpg: not an image)"


def test_names_that_are_not_utf8_are_left_out_or_refused(tmp_path, caplog):
    """A file system may hold names of any bytes; results, lists and predictions are
    text. Such files are left out (said once), such a class folder is refused."""
    import os
    import shutil

    root = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    good = sorted((root / "class_0").iterdir())[0]
    odd = os.path.join(os.fsencode(root / "class_0"), b"odd\xfe.png")
    shutil.copyfile(good, odd)
    with caplog.at_level("WARNING"):
        listing = scan_folder(root)
    assert len(listing.paths) == 6 and all(p.isascii() for p in listing.paths)
    assert "1 file(s) left out, their names not valid UTF-8" in caplog.text
    os.mkdir(os.path.join(os.fsencode(root), b"cl\xffass"))
    shutil.copyfile(good, os.path.join(os.fsencode(root), b"cl\xffass", b"a.png"))
    with pytest.raises(SimCLRError, match=r"the class folder 'cl\\udcffass' has a name that is "
                                          "not valid UTF-8"):
        scan_folder(root)
