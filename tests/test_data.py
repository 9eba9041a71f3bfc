"""Tests for simclr.data: sources of folders (bad files, caches), named data sets."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.config import DataConfig
from simclr.data import (
    ImageSource,
    _note_other_sizes,
    default_workers,
    digits_source,
    digits_split,
    open_source,
)
from simclr.errors import SimCLRError
from simclr.loader import BatchLoader
from tests.conftest import SHARED_DATA, requires_cifar
from tests.image_files import data_cfg, jpeg_bytes, rgb, save_image

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
    cfg = data_cfg(tmp_path, cache=cache, load_size=32, max_pixels=3000)
    src = open_source(str(tmp_path / "imgs"), cfg)
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
    assert src.readable_images == 3  # as a run's summary.json counts them, cached or not


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_sources_dataset_says_which_image_it_replaced(tmp_path, cache):
    """Every item of ImageSource.dataset is (image, index, aspect, replaced index or -1,
    reason): what the loaders count a skipped file by, cached or not."""
    bad = _mixed_folder(tmp_path / "imgs")
    cfg = data_cfg(tmp_path, cache=cache, load_size=32, max_pixels=3000)
    src = open_source(str(tmp_path / "imgs"), cfg)
    items = [src.dataset()[i] for i in range(src.num_images)]
    assert all(len(item) == 5 for item in items)
    replaced = {Path(src.paths[i]).name if src.paths else i: reason
                for _, _, _, i, reason in items if i >= 0}
    assert replaced.keys() == (set() if cache == "on" else bad.keys())


def test_a_long_run_of_broken_files_is_substituted_from_across_the_folder(tmp_path):
    """Uncached, a bad image was replaced by one of the next 64 in listing order only: a
    class folder of 70 broken files among readable ones stopped the run (and its
    resume, at the same place) with '64 images in a row are unreadable'."""
    from simclr.data import load_item, substitutes

    for k in range(70):
        (tmp_path / "imgs" / "broken").mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / "broken" / f"{k:03d}.jpg").write_bytes(b"\0" * 100)
    for k in range(10):
        save_image(tmp_path / "imgs" / "good" / f"{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    assert src.num_images == 80 and src.paths[0].endswith("broken/000.jpg")
    image, j, _aspect, replaced, reason = load_item(src, 0)
    assert j >= 70 and replaced == 0 and reason and image.shape == (3, 16, 16)
    assert load_item(src, 0)[1] == j  # (the same one every time: resumes alike)
    batch = torch.cat([im for _, im, _ in BatchLoader(src, 80, 0, 0, workers=0)])
    assert batch.shape == (80, 3, 16, 16)
    # i and the next 63, then 64 spread over the rest; a small folder is tried whole
    assert substitutes(5, 1000)[:64] == list(range(5, 69))
    assert len(set(substitutes(5, 1000))) == 128 and max(substitutes(5, 1000)) > 900
    assert sorted(substitutes(3, 100)) == list(range(100))


@pytest.mark.parametrize("every_s", [None, 0.0])
def test_an_uncached_folder_names_its_first_unreadable_files_then_counts_them(
        tmp_path, monkeypatch, caplog, every_s):
    """Uncached, every unreadable file met was a warning line of its own: half of a 100k
    folder broken printed 166 lines in 5 steps (50,000 an epoch). Now the first 10 are
    named, the rest counted in a line at most every 30 s (``every_s`` 0: each time)."""
    from simclr import data

    if every_s is not None:
        monkeypatch.setattr(data, "PLAIN_EVERY_S", every_s, raising=False)
    for k in range(30):
        (tmp_path / "imgs" / f"bad{k:02d}.png").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / f"bad{k:02d}.png").write_text("garbage")
    for k in range(4):
        save_image(tmp_path / "imgs" / f"good{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    with caplog.at_level(logging.WARNING):
        for _ in BatchLoader(src, 34, 0, 0, workers=0):
            pass
    assert len(src.skipped) == 30  # (every one recorded, for the summary's list)
    lines = caplog.messages
    named = [ln for ln in lines if ln.startswith("skipped ") and "another image" in ln]
    counted = [ln for ln in lines if "unreadable image(s) so far" in ln]
    assert len(named) == 10
    assert len(counted) == (1 if every_s is None else 20), lines
    assert "skipped 11 unreadable image(s) so far; the first 10 are named above" in counted[0]


def test_an_uncached_read_that_may_pass_replaces_the_image_this_once(tmp_path, monkeypatch):
    """An EIO reading one file of an uncached folder (no cache to spoil) stopped the whole
    training: replaced by another image this once, as a bad file is, and read again the
    next time it is drawn."""
    import errno
    import pickle

    from simclr import data, decode
    from simclr.decode import ReadFailure

    for k in range(4):
        save_image(tmp_path / "imgs" / f"good{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    real, flaky = data.load_square, {"left": 1}

    def failing_once(path, *args, **kwargs):
        if path.endswith("good1.png") and flaky["left"]:
            flaky["left"] -= 1
            raise decode._read_failure(path, OSError(errno.EIO, "Input/output error"))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(data, "load_square", failing_once)
    image, j, _, substituted, reason = data.load_item(src, 1)
    assert (j, substituted) == (2, 1) and reason == "Input/output error (EIO)"
    assert data.load_item(src, 1)[1:4:2] == (1, -1)  # (read this time)
    again = pickle.loads(pickle.dumps(ReadFailure("a.png", "Stale file handle (ESTALE)")))
    assert (again.path, again.reason) == ("a.png", "Stale file handle (ESTALE)")
    assert str(again).startswith("cannot read a.png: Stale file handle (ESTALE), a failure")


@pytest.mark.parametrize("rank", [None, "1"])
def test_a_caches_skipped_files_are_said_by_the_first_process_alone(tmp_path, monkeypatch,
                                                                     caplog, rank):
    """Under --processes 2 the block 'skipped N unreadable image(s)' was printed by each
    process (rank 0 built the cache, rank 1 reopened it)."""
    _mixed_folder(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", load_size=32,
                                                 max_pixels=3000))
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    caplog.clear()  # (the build's own)
    with caplog.at_level(logging.WARNING):
        src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", load_size=32,
                                                           max_pixels=3000))
    assert len(src.skipped) == 4
    assert ("skipped 4 unreadable image(s)" in caplog.text) == (rank is None)


def test_a_skipped_file_named_with_terminal_escapes_is_listed_escaped_line_by_line(
        tmp_path, caplog):
    """The block of skipped files is one log line each (the command line's log escapes
    a line break inside a message's argument), each name escaped: an unreadable file
    named x<ESC>[2J.png cleared the terminal when its skip was said."""
    _mixed_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "x\x1b[2J.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", load_size=32,
                                                     max_pixels=3000))
    said = [r.getMessage() for r in caplog.records if "unreadable image" in r.getMessage()
            or r.getMessage().startswith("  ")]
    assert said[0].endswith("skipped 5 unreadable image(s):")
    assert len(said) == 6 and not any("\n" in line or "\x1b" in line for line in said)
    assert any("x\\x1b[2J.png" in line for line in said)


@pytest.mark.parametrize("cache", ["on", "off"])
def test_strict_fails_on_first_bad_file(tmp_path, cache):
    _mixed_folder(tmp_path / "imgs")
    cfg = data_cfg(tmp_path, cache=cache, strict=True, load_size=32, max_pixels=3000)
    bad = tmp_path / "imgs" / "d_zero.jpg"
    with pytest.raises(SimCLRError, match=f"--strict: bad image {bad}: empty file"):
        open_source(str(tmp_path / "imgs"), cfg)


def test_strict_on_a_reused_cache_fails_without_first_calling_it_a_skip(tmp_path, caplog):
    """A cache built without --strict recorded the bad files; --strict then reuses it
    and fails on the first, without the "skipped" warning that would contradict it."""
    _mixed_folder(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", load_size=32,
                                                  max_pixels=3000))
    caplog.clear()
    with caplog.at_level("INFO"), pytest.raises(SimCLRError, match="--strict: bad image"):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on", strict=True,
                                                      load_size=32, max_pixels=3000))
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


def test_the_digits_demo_without_scikit_learn_says_so_in_one_line(monkeypatch):
    from simclr.data import _digits_images

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


@requires_cifar
def test_shared_cifar10_test_split_opens_as_a_cached_labeled_source(tmp_path):
    folder = SHARED_DATA / "cifar10" / "test"
    source = open_source(str(folder), DataConfig(cache_dir=str(tmp_path)), train=False)
    assert source.cached and source.image_hw == (32, 32)
    assert source.num_images == 10_000 and len(source.classes) == 10
    assert np.bincount(source.labels).tolist() == [1000] * 10
    batch = source.get_batch(np.array([0, 9999]))
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 32, 32)


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


def test_reduced_images_are_said_only_when_more_than_one_percent(tmp_path, caplog):
    def warned(counts: dict) -> bool:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _note_other_sizes(tmp_path, Counter(counts), 20)
        return any("are reduced to it" in m for m in caplog.messages)

    assert not warned({20: 99, 24: 1}) and not warned({20: 196, 12: 2, 32: 2})  # 1%
    assert not warned({20: 150, 24: 1}) and not warned({12: 50})
    assert warned({20: 98, 24: 2}) and warned({20: 98, 24: 1})  # 2%, 1.01%


# ---------------------------------------------------------------------------- stored sides


@pytest.mark.parametrize("cache", ["on", "off"])
def test_large_pictures_are_stored_at_1_15_times_the_view_never_above_their_own_side(
        tmp_path, cache):
    """Pictures past 96 px are stored at round(1.15 S) for views of side S (32 -> 37),
    but never above the shorter side the folder shares (100 for S = 100, not 115)."""
    for k in range(3):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(100, 120, k))  # h 100, w 120
    cfg = data_cfg(tmp_path, cache=cache)
    assert open_source(str(tmp_path / "imgs"), cfg, image_size=32).image_hw == (37, 37)
    assert open_source(str(tmp_path / "imgs"), cfg, image_size=20).image_hw == (23, 23)
    assert open_source(str(tmp_path / "imgs"), cfg, image_size=100).image_hw == (100, 100)


def test_pictures_of_96_px_count_as_small_and_keep_their_side(tmp_path):
    """--cache auto caches a folder whose pictures are at most 96 px (96 included), each
    stored at its own side, not reduced to the view's 1.15 S."""
    for k in range(2):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(96, 96, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="auto"), image_size=32)
    assert src.cached and src.image_hw == (96, 96)
    assert torch.equal(src.get_batch([1])[0], torch.from_numpy(rgb(96, 96, 1)).permute(2, 0, 1))


def test_skipped_files_of_an_earlier_session_count_only_if_listed_here(tmp_path):
    """remember_skipped (a checkpoint's skipped_images): a file this source does not
    list (another folder's, or one since removed) is neither counted nor listed."""
    for k in range(3):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(100, 100, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off"), image_size=16)
    listed = src.paths[1]
    src.remember_skipped([(str(tmp_path / "other" / "9.png"), "empty file"),
                          (listed, "truncated file")])
    assert src.skipped == [(listed, "truncated file")] and src.readable_images == 2


@pytest.mark.parametrize("cores, local, expected", [(64, None, 8), (4, None, 4), (6, "2", 3),
                                                    (2, "4", 1), (32, "8", 4)])
def test_default_workers_are_a_share_of_the_usable_cores_per_local_process(
        monkeypatch, cores, local, expected):
    # the machine has more cores than this process may use (taskset, a cpuset, SLURM)
    monkeypatch.setattr("os.cpu_count", lambda: 128)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert default_workers() == expected


def test_a_named_sets_size_is_known_from_its_files_without_reading_them(tmp_path):
    """A sweep counts each cell's named data set before the first trains: opening it
    read the whole split (STL-10's 2.7 GB) once more, on every rerun too. Its files are
    checked present (empty here: reading them would fail) and its size is known."""
    from simclr.data import named_train_size

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


def test_a_cache_subsets_aspects_follow_its_rows():
    """A source over some of a cache's rows (``rows``: image i is row rows[i]) gives the
    aspect of each image's own row, as its pixels are: image 0 is row 2 (aspect 2)."""
    array = np.stack([np.full((4, 4, 3), v, dtype=np.uint8) for v in (0, 1, 2)])
    source = ImageSource("subset", np.zeros(2), ["a"], array=array, rows=np.array([2, 0]),
                         aspect=np.array([1.0, 1.5, 2.0], dtype=np.float32))
    assert source.aspect_of(np.array([0, 1])).tolist() == [2.0, 1.0]
    images, aspects = source.batch(np.array([0, 1]))
    assert images[:, 0, 0, 0].tolist() == [2, 0] and aspects.tolist() == [2.0, 1.0]
