"""Tests for simclr.data: sources of folders (bad files, caches, stored sides), opened by
name or folder."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.config import DataConfig
from simclr.data import (
    _note_other_sizes,
    cache_choice,
    check_some_readable,
    open_source,
    unreadable_classes,
)
from simclr.errors import SimCLRError
from simclr.folders import ImageList, scan_folder
from simclr.loader import BatchLoader
from tests.conftest import SHARED_DATA, requires_cifar
from tests.image_files import data_cfg, rgb, save_image
from tests.test_source import _mixed_folder

# ---------------------------------------------------------------------------- folder sources


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


def test_an_evaluation_stores_the_transforms_square_unless_pictures_are_equal_squares(
        tmp_path, caplog):
    """An evaluation source of small pictures of several sizes, or all of one size but
    not square, keeps the evaluation transform's side (round(S / 0.875): 37 at 32-px
    views), not their own, without pretraining's note on resampled sizes; equal squares
    (CIFAR's) are stored as they are. --cache auto leaves large pictures uncached."""
    folders = {"mixed": [(28, 28), (28, 28), (30, 40)], "oblong": [(30, 40)] * 3,
               "squares": [(32, 32)] * 3, "large": [(100, 120)] * 2}
    for name, shapes in folders.items():
        for k, (h, w) in enumerate(shapes):
            save_image(tmp_path / name / f"{k}.png", rgb(h, w, k))
    cfg = data_cfg(tmp_path, cache="auto")
    with caplog.at_level(logging.WARNING):
        opened = {name: open_source(str(tmp_path / name), cfg, image_size=32, evaluation=True)
                  for name in folders}
    assert "are reduced to it" not in caplog.text
    for name in ("mixed", "oblong"):
        assert opened[name].cached and opened[name].store == "eval:32", name
        assert opened[name].image_hw == (37, 37), name
    assert opened["squares"].store != "eval:32" and opened["squares"].image_hw == (32, 32)
    # (round(64 / 0.875) = 73 at 64-px views, not pretraining's round(64 x 1.15) = 74)
    assert open_source(str(tmp_path / "mixed"), cfg, image_size=64,
                       evaluation=True).image_hw == (73, 73)
    assert not opened["large"].cached and opened["large"].image_hw == (37, 37)


def test_without_a_majority_side_pictures_are_stored_at_the_largest(tmp_path):
    """The most common shorter side (the larger of two as common) is the stored one only
    where at least half the pictures have it; else the largest, so that no picture is
    reduced to a few's side."""
    for k, side in enumerate((20, 20, 24, 28, 30)):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(side, side + 2, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on"), image_size=16)
    assert src.image_hw == (30, 30)
    for k, side in enumerate((20, 30, 20, 30)):  # (two sides of half each: the larger)
        save_image(tmp_path / "tie" / f"{k}.png", rgb(side, side, k))
    src = open_source(str(tmp_path / "tie"), data_cfg(tmp_path, cache="on"), image_size=16)
    assert src.image_hw == (30, 30)


def test_a_cached_folder_none_of_whose_files_decode_is_refused(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"not an image")
    with pytest.raises(SimCLRError, match=r"none of the 2 images in .*imgs could be read "
                                          r"\(first: .*a.png: "):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on"))


def test_cache_choice_says_what_cache_auto_amounts_to(tmp_path):
    """Named sets are held in memory; --cache on/off are as given; auto caches a folder
    of small pictures (of the split asked for) and not one of large or unreadable ones."""
    for k in range(2):
        save_image(tmp_path / "data" / "train" / "a" / f"{k}.png", rgb(16, 16, k))
        save_image(tmp_path / "data" / "test" / "a" / f"{k}.png", rgb(120, 100, k))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not an image")
    data = str(tmp_path / "data")
    assert cache_choice(None, "off") == cache_choice("cifar10", "auto") == "in memory"
    assert cache_choice(data, "on", train=False) == "on"
    assert cache_choice(data, "off") == "off"
    assert cache_choice(data, "auto") == "on"
    assert cache_choice(data, "auto", train=False) == "off"
    assert cache_choice(str(tmp_path / "broken"), "auto") == "off"


def test_a_folder_is_refused_only_where_none_of_its_files_decodes(tmp_path):
    """check_some_readable: one readable file (first or last) passes; none fails, naming
    the first; a folder above its limit is not opened. unreadable_classes names the
    classes without a readable file, and fails where no class has one."""
    save_image(tmp_path / "f" / "a" / "0.png", rgb(8, 8))
    (tmp_path / "f" / "b").mkdir()
    for name in ("a/1.png", "b/0.png", "b/1.png"):
        (tmp_path / "f" / name).write_bytes(b"not an image")
    files = scan_folder(tmp_path / "f")
    check_some_readable(files)
    empty = unreadable_classes(files)
    assert list(empty) == ["b"] and Path(empty["b"].path).name == "0.png"  # (its first)
    # (class folders without files: no file to blame, no error)
    empty_classes = ImageList([], np.zeros(0, np.int64), ["a", "b"], str(tmp_path / "e"))
    assert unreadable_classes(empty_classes) == {"a": None, "b": None}
    save_image(tmp_path / "g" / "1.png", rgb(8, 8))  # (its readable file last)
    (tmp_path / "g" / "0.png").write_bytes(b"not an image")
    check_some_readable(scan_folder(tmp_path / "g", unlabeled=True))
    (tmp_path / "f" / "a" / "0.png").write_bytes(b"not an image either")
    files = scan_folder(tmp_path / "f")
    with pytest.raises(SimCLRError, match=r"none of the 4 images in .*f could be read "
                                          r"\(first: .*0.png: "):
        check_some_readable(files, limit=4)
    check_some_readable(files, limit=3)  # (too many to open: not checked)
    with pytest.raises(SimCLRError, match="none of the 4 images"):
        unreadable_classes(files)


@pytest.mark.parametrize("shapes, size, evaluation, load_size, side", [
    ({"a": (150, 60), "b": (130, 130)}, 64, False, None, 60),  # (their common side)
    ({"a": (96, 96), "b": (96, 96)}, 16, True, 40, 40),  # (small squares: as stored)
    ({"a": (150, 60), "b": (130, 130)}, 16, True, None, 72),  # (4 x eval_side(16))
])
def test_a_folders_pre_check_decodes_at_the_side_its_source_reads_it_at(
        tmp_path, shapes, size, evaluation, load_size, side):
    """reading_draft is the side open_folder's source decodes JPEGs at, at least: a
    pre-check at it passes every folder the source reads whole and names the class it
    cannot read, with the reason (at round(64 x 1.15) = 74, 130-px JPEGs a source
    stored at 60 read were refused; at 72, 96-px squares stored at --load-size 40)."""
    from simclr.data import open_source, reading_draft
    from simclr.features import check_labeled_folders

    for name, (w, h) in shapes.items():
        for k in range(3 if name == "a" else 2):  # (a's side the most common)
            save_image(tmp_path / "f" / name / f"{k}.jpg", rgb(h, w, seed=k))
    files = scan_folder(tmp_path / "f")
    cfg = DataConfig(cache="on", cache_dir=str(tmp_path / "cache"), workers=0,
                     load_size=load_size)
    assert reading_draft(files, size, cfg, evaluation) == side

    def draft(listed, train):
        return reading_draft(listed, size, cfg, evaluation)

    for limit in (10_000, 4_000):  # (130 px: 65 x 65 at 60, 130 x 130 at 72 or 74)
        cfg.max_pixels = limit
        source = None
        try:
            source = open_source(str(tmp_path / "f"), cfg, image_size=size,
                                 evaluation=evaluation)
        except SimCLRError:  # (none read)
            pass
        unread = {Path(path).parent.name for path, _ in source.skipped} if source else \
            set(shapes)
        if not unread:
            check_labeled_folders(str(tmp_path / "f"), None, ("--train", "--test"),
                                  max_pixels=limit, draft=draft)
            continue
        with pytest.raises(SimCLRError) as refused:
            check_labeled_folders(str(tmp_path / "f"), None, ("--train", "--test"),
                                  max_pixels=limit, draft=draft)
        assert f"exceeds the limit of {limit}" in str(refused.value)
        if unread != set(shapes):
            assert f"no readable image in class folder(s) {', '.join(sorted(unread))} " \
                "(first: " in str(refused.value)


def test_probing_reads_the_first_and_last_files_and_never_opens_a_named_pipe(tmp_path):
    """probe_sizes spreads its reads over the whole listing, its ends included (a
    folder's last pictures were never probed), and skips a named pipe, whose opening
    would wait forever for a writer (here one writes a PNG to it: read, it would count)."""
    import threading

    from simclr.data import probe_sizes

    paths = [str(save_image(tmp_path / f"{k}.png", rgb(8 + k, 10 + k, k))) for k in range(3)]
    assert probe_sizes(paths, count=2) == [(10, 8), (12, 10)]
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    payload = (tmp_path / "0.png").read_bytes()
    writer = threading.Thread(target=lambda: pipe.write_bytes(payload), daemon=True)
    writer.start()
    try:
        assert probe_sizes([str(pipe)]) == []
    finally:  # (lets the writer through, had nothing read the pipe)
        reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
        writer.join(5)
        os.close(reader)


def test_cache_auto_leaves_oblong_pictures_past_96_px_uncached_and_load_size_says_no_note(
        tmp_path, caplog):
    """--cache auto caches pictures whose longer side is at most 96 px (120 x 60 ones are
    not small); pictures of several small sizes stored at --load-size are not 'reduced to
    the most common side', so no note says they are."""
    for k in range(2):
        save_image(tmp_path / "oblong" / f"{k}.png", rgb(60, 120, k))
    assert cache_choice(str(tmp_path / "oblong"), "auto") == "off"
    for k, side in enumerate((20, 20, 30)):
        save_image(tmp_path / "mixed" / f"{k}.png", rgb(side, side, k))
    with caplog.at_level(logging.WARNING):
        src = open_source(str(tmp_path / "mixed"), data_cfg(tmp_path, load_size=24))
    assert src.image_hw == (24, 24) and "are reduced to it" not in caplog.text


def test_a_cached_folder_serves_each_readable_file_not_a_skipped_ones_blank_row(tmp_path):
    """Skipped files keep a row of zeros in the cache: a source whose first file is
    broken gathers the rows of its readable files (index 0: the first readable one)."""
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "0_broken.png").write_bytes(b"not an image")
    for k in (1, 2):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="on"))
    assert src.num_images == 2 and Path(src.paths[0]).name == "1.png"
    expected = [torch.from_numpy(rgb(16, 16, k)).permute(2, 0, 1) for k in (1, 2)]
    assert torch.equal(src.get_batch(np.arange(2)), torch.stack(expected))


@pytest.mark.parametrize("cache", ["on", "off"])
def test_strict_refuses_an_image_past_max_pixels(tmp_path, cache):
    """--strict checks each file against --max-pixels too, cached or not: uncached, a
    picture past it passed the check, to be skipped later by the run."""
    save_image(tmp_path / "imgs" / "a.png", rgb(16, 16))
    save_image(tmp_path / "imgs" / "b_big.png", rgb(60, 60))
    cfg = data_cfg(tmp_path, cache=cache, strict=True, load_size=16, max_pixels=3000)
    with pytest.raises(SimCLRError, match=r"--strict: bad image .*b_big.png: .*decompression"):
        open_source(str(tmp_path / "imgs"), cfg)
