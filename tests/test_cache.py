"""Tests for simclr.cache: the decoded uint8 cache of small images."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr.cache_entries
from simclr import cache, decode
from simclr.cache_entries import (
    CACHE_VERSION,
    CacheEntry,
    cache_entries,
    describe_entry,
    remove_entry,
    superseded,
)
from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.runtime import SCRIPT_GUARD
from tests.image_files import data_cfg, rgb, save_image

# ---------------------------------------------------------------------------- cache


def _cifar_like(root: Path, n: int = 6) -> list[np.ndarray]:
    arrays = [rgb(16, 16, seed) for seed in range(n)]
    for k, a in enumerate(arrays):
        save_image(root / ("cat" if k % 2 else "dog") / f"{k}.png", a)
    return arrays


def test_cache_build_stores_exact_pixels(tmp_path):
    arrays = _cifar_like(tmp_path / "imgs")
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert src.cached and src.image_hw == (16, 16)
    order = [1, 3, 5, 0, 2, 4]  # cat (odd seeds) sorts before dog
    expected = np.stack([arrays[k] for k in order]).transpose(0, 3, 1, 2)
    assert (src.get_batch(np.arange(6)).numpy() == expected).all()
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp-*"))


def test_cache_build_with_worker_processes(tmp_path, monkeypatch):
    arrays = _cifar_like(tmp_path / "imgs", n=10)
    monkeypatch.setattr(cache, "_CHUNK", 3)  # 4 tasks for 2 processes
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=2)
    src = open_source(str(tmp_path / "imgs"), cfg)
    names = [int(Path(p).stem) for p in src.paths]
    expected = np.stack([arrays[k] for k in names]).transpose(0, 3, 1, 2)
    assert (src.get_batch(np.arange(10)).numpy() == expected).all()


def test_bad_images_past_the_first_decoding_task_are_named_as_themselves(tmp_path, monkeypatch):
    """Each task decodes rows start.. of the cache: a bad file in a later task is skipped
    as that file (its index in the whole list), not as the file at its place in the
    first task, and the images kept hold their own pixels."""
    arrays = _cifar_like(tmp_path / "imgs", n=10)
    for k in (4, 7):  # dog/4.png, cat/7.png: rows 8 and 3 of 10, in tasks of 3
        (tmp_path / "imgs" / ("cat" if k % 2 else "dog") / f"{k}.png").write_bytes(b"no png")
    monkeypatch.setattr(cache, "_CHUNK", 3)
    src = open_source(str(tmp_path / "imgs"),
                      DataConfig(cache_dir=str(tmp_path / "cache"), workers=2))
    assert sorted(Path(p).name for p, _ in src.skipped) == ["4.png", "7.png"]
    names = [int(Path(p).stem) for p in src.paths]
    assert sorted(names) == [0, 1, 2, 3, 5, 6, 8, 9]
    expected = np.stack([arrays[k] for k in names]).transpose(0, 3, 1, 2)
    assert (src.get_batch(np.arange(8)).numpy() == expected).all()
    from simclr.folders import scan_folder  # square pictures: no aspects kept (a bad
    images = scan_folder(tmp_path / "imgs")  # file's counts as square)
    assert cache.build_cache(images, 16, tmp_path / "cache", 0).aspect is None


def test_a_decoding_process_leaves_ctrl_c_to_the_main_process(monkeypatch):
    """A decoding process ignores SIGINT (Ctrl-C reaches the whole process group: the
    main process stops the build and its pool, not each worker with a traceback) and
    ends on SIGTERM as the pool's shutdown expects, not by the handler it inherited."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", ImageFile.LOAD_TRUNCATED_IMAGES)
    from simclr.interrupts import STOP_SIGNALS

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, *STOP_SIGNALS)}
    signal.signal(signal.SIGTERM, lambda *args: None)  # (a command's handler, inherited)
    try:
        cache._decoding_process(False)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_caches_files_are_named_after_its_folder_and_record_square_images_in_one_word(
        tmp_path):
    """The cache's file names start with its folder's name (letters, digits, - and _
    kept; others as _); a folder of square images records aspect None, not a 1.0 per
    file (ImageNet's sidecar is 1.3M entries)."""
    import json

    _cifar_like(tmp_path / "my-imgs_1 (x)")
    open_source(str(tmp_path / "my-imgs_1 (x)"), data_cfg(tmp_path))
    (meta,) = (tmp_path / "cache").glob("*.json")
    assert meta.name.startswith("my-imgs_1__x_-")
    assert json.loads(meta.read_text())["aspect"] is None


def test_off_linux_the_decoding_processes_are_spawned_not_forked(tmp_path, monkeypatch):
    """macOS has fork too, but a forked copy of a threaded process (torch's, Accelerate's
    pools) can crash or hang there: off Linux the processes are spawned, their tasks
    pickled to them, and the cache holds the same pixels."""
    arrays = _cifar_like(tmp_path / "imgs", n=10)
    monkeypatch.setattr(cache, "_CHUNK", 3)  # 4 tasks for 2 processes
    monkeypatch.setattr(cache, "_FORK_IS_SAFE", False, raising=False)
    methods = []
    executor = cache.ProcessPoolExecutor

    def recorded(*args, mp_context=None, **kwargs):
        methods.append(mp_context.get_start_method())
        return executor(*args, mp_context=mp_context, **kwargs)

    monkeypatch.setattr(cache, "ProcessPoolExecutor", recorded)
    src = open_source(str(tmp_path / "imgs"),
                      DataConfig(cache_dir=str(tmp_path / "cache"), workers=2))
    names = [int(Path(p).stem) for p in src.paths]
    expected = np.stack([arrays[k] for k in names]).transpose(0, 3, 1, 2)
    assert methods == ["spawn"] and (src.get_batch(np.arange(10)).numpy() == expected).all()


def _killed_at_the_second_chunk(task):  # (a decoding process's task: by name)
    if task[1] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return _DECODE_CHUNK(task)


_DECODE_CHUNK = cache._decode_chunk


def test_a_decoding_process_killed_fails_the_build_in_one_line(tmp_path, monkeypatch):
    # The out-of-memory killer's SIGKILL: a multiprocessing.Pool waited forever for the
    # chunk the dead process held; the build fails and leaves nothing.
    _cifar_like(tmp_path / "imgs", n=10)
    monkeypatch.setattr(cache, "_CHUNK", 3)
    monkeypatch.setattr(cache, "_decode_chunk", _killed_at_the_second_chunk)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=2)
    with pytest.raises(SimCLRError, match=r"imgs into the cache: a decoding process ended "
                                          r"\(out of memory\? try fewer --workers\); nothing "
                                          "was kept$"):
        open_source(str(tmp_path / "imgs"), cfg)
    assert list((tmp_path / "cache").iterdir()) == []
    # Where the processes are not forked (macOS, Windows), each imports the calling
    # script: one without the guard calls simclr again in it, which ends it. Said so (it
    # was called out of memory): forked here, under the name of another start method.
    import multiprocessing

    class Spawned(type(multiprocessing.get_context("fork"))):
        def get_start_method(self, allow_none=False):
            return "spawn"

    monkeypatch.setattr(cache.multiprocessing, "get_context", lambda method: Spawned())
    with pytest.raises(SimCLRError, match=re.escape(f"a script must call simclr under "
                                                    f"`{SCRIPT_GUARD}`, as each worker")):
        open_source(str(tmp_path / "imgs"), cfg)


def _forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "open_image", fail)
    monkeypatch.setattr(decode, "_decode_file", fail)  # (load_square's)


def test_cache_is_reused_without_decoding(tmp_path, monkeypatch):
    _cifar_like(tmp_path / "imgs")
    first = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
    _forbid_decoding(monkeypatch)
    again = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
    assert torch.equal(first, again)


def test_cache_is_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    changed = tmp_path / "imgs" / "cat" / "1.png"
    save_image(changed, np.full((16, 16, 3), 7, dtype=np.uint8))
    stamp = time.time() + 5
    os.utime(changed, (stamp, stamp))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert (src.get_batch([0]).numpy() == 7).all()  # cat/1.png is the first image
    _forbid_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded again"):  # a new file -> new key
        save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))


def test_files_swapped_or_rewritten_under_the_same_size_and_mtime_rebuild_it(tmp_path):
    """Unpacked archives give files one mtime and same-sized formats one size: two files
    swapped by name, or one rewritten in place with its mtime set back, are still seen."""
    arrays = _cifar_like(tmp_path / "imgs")
    folder = tmp_path / "imgs" / "cat"
    stamp = 1_700_000_000_000_000_000  # ns: one mtime for every file, as tar leaves them
    for p in (tmp_path / "imgs").rglob("*.png"):
        os.utime(p, ns=(stamp, stamp))
    assert (folder / "1.png").stat().st_size == (folder / "3.png").stat().st_size
    first = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch([0, 1]).numpy()
    assert (first == np.stack([arrays[1], arrays[3]]).transpose(0, 3, 1, 2)).all()
    os.rename(folder / "1.png", folder / "x.png")
    os.rename(folder / "3.png", folder / "1.png")
    os.rename(folder / "x.png", folder / "3.png")
    swapped = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch([0, 1]).numpy()
    assert (swapped == first[::-1]).all()
    same = np.asarray(arrays[1]).copy()
    same[0, 0] = 255 - same[0, 0]  # one pixel: PNG sizes may still differ, so the size too
    save_image(folder / "3.png", same)
    os.utime(folder / "3.png", ns=(stamp, stamp))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert (src.get_batch([1]).numpy()[0] == same.transpose(2, 0, 1)).all()


def test_files_swapped_where_a_rename_leaves_the_ctime_change_the_key(tmp_path, monkeypatch):
    """POSIX lets a rename leave a file's ctime: the inode still tells two swapped files
    of one size and mtime apart."""
    from simclr.folders import scan_folder

    _cifar_like(tmp_path / "imgs")
    folder = tmp_path / "imgs" / "cat"
    real_stat = os.stat

    class RenameKeepsCtime:  # (the stat of a file system whose rename leaves the ctime)
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return 0 if name == "st_ctime_ns" else getattr(self._st, name)

    monkeypatch.setattr(cache.os, "stat",
                        lambda p, *a, **k: RenameKeepsCtime(real_stat(p, *a, **k)))
    for p in (folder / "1.png", folder / "3.png"):
        os.utime(p, ns=(1_700_000_000_000_000_000,) * 2)  # (one mtime, as tar leaves them)
    assert (folder / "1.png").stat().st_size == (folder / "3.png").stat().st_size
    images = scan_folder(tmp_path / "imgs")
    before = cache._cache_key(images, 16, 100, "full")
    os.rename(folder / "1.png", folder / "x.png")
    os.rename(folder / "3.png", folder / "1.png")
    os.rename(folder / "x.png", folder / "3.png")
    assert cache._cache_key(images, 16, 100, "full") != before


def test_a_folder_with_a_very_long_name_is_cached(tmp_path):
    """The cache's file is named after the folder, shortened within the 255-byte limit."""
    folder = tmp_path / ("\u732b" * 80)  # 240 bytes in UTF-8
    _cifar_like(folder)
    src = open_source(str(folder), data_cfg(tmp_path))
    assert src.cached and len(src.paths) == 6
    assert all(len(p.name.encode()) < 255 for p in (tmp_path / "cache").iterdir())


def test_interrupted_cache_build_leaves_nothing(tmp_path, monkeypatch):
    _cifar_like(tmp_path / "imgs")
    real = cache.decode_files

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "decode_files", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(cache, "decode_files", real)
    assert open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).num_images == 6


def test_mixed_sizes_share_one_side_and_the_larger_are_said_to_be_reduced(tmp_path, caplog):
    for k, (h, w) in enumerate([(20, 20), (20, 20), (30, 24), (12, 40)]):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(h, w, k))
    with caplog.at_level(logging.WARNING):
        src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert src.cached and src.image_hw == (20, 20)  # the most common shorter side
    assert src.get_batch(np.arange(4)).shape == (4, 3, 20, 20)
    assert [m for m in caplog.messages if "larger than" in m] == [
        f"{tmp_path / 'imgs'}: 1 of the 4 images are larger than 20 px, the most common "
        "shorter side, at which all are stored (up to 24 px): they are reduced to it "
        "(pretrain --load-size S stores all at S px)"]
    # An evaluation stores each picture by its transform: none is reduced to another's
    # side (embed, predict: it was, and they were offered pretraining's --load-size)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path), train=False,
                          image_size=16, evaluation=True)
    assert src.store == "eval:16" and not [m for m in caplog.messages if "larger than" in m]


def test_a_few_tiny_pictures_never_shrink_the_folder_to_their_side(tmp_path, caplog):
    """Two 1-px spacer GIFs among thumbnails of many sizes were the most common side, so
    every thumbnail was stored as one pixel: a side is shared only by half the files."""
    for k, side in enumerate(range(20, 33, 2)):  # 7 thumbnails, each its own size
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(side, side + 1, k))
    for k in range(2):
        Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "imgs" / f"spacer{k}.gif")
    with caplog.at_level(logging.WARNING):
        src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert src.image_hw == (32, 32)  # the largest: nothing is reduced
    assert not [m for m in caplog.messages if "larger than" in m]
    for k in range(4):  # a side half the files share is still theirs
        save_image(tmp_path / "most" / f"{k}.png", rgb(24, 30, k))
    for k, side in enumerate((28, 30, 32)):
        save_image(tmp_path / "most" / f"big{k}.png", rgb(side, side, k))
    assert open_source(str(tmp_path / "most"), data_cfg(tmp_path)).image_hw == (24, 24)


def test_cache_keeps_each_pictures_aspect_and_the_store_is_part_of_the_key(tmp_path, monkeypatch):
    """Non-square files: the full store keeps every picture's width / height beside its
    square (cached, reused, carried into subsets); the central-square store is another
    cache with all aspects 1."""
    root = tmp_path / "imgs"
    for k, (h, w) in enumerate([(16, 24), (24, 16), (20, 20)]):
        save_image(root / f"{k}.png", rgb(h, w, k))
    cfg = data_cfg(tmp_path, cache="on", load_size=16)
    src = open_source(str(root), cfg)
    images, aspect = src.batch(np.arange(3))
    assert images.shape == (3, 3, 16, 16)
    np.testing.assert_allclose(aspect.numpy(), [24 / 16, 16 / 24, 1.0], rtol=1e-6)
    np.testing.assert_allclose(src.subset([2, 0]).batch([0, 1])[1].numpy(), [1.0, 1.5])
    _forbid_decoding(monkeypatch)
    again = open_source(str(root), cfg)
    assert torch.equal(again.batch(np.arange(3))[1], aspect)
    monkeypatch.undo()
    center = open_source(str(root), data_cfg(tmp_path, cache="on", load_size=16, store="center"))
    assert center.batch(np.arange(3))[1].tolist() == [1.0, 1.0, 1.0]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_a_cache_dir_blocked_by_a_file_says_so(tmp_path):
    _cifar_like(tmp_path / "imgs")
    (tmp_path / "afile").write_text("x")
    for cache_dir in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(SimCLRError, match=f"cannot create the cache folder {cache_dir}: "
                           f"{tmp_path / 'afile'} is a file; pass another --cache-dir"):
            open_source(str(tmp_path / "imgs"), DataConfig(cache_dir=str(cache_dir), workers=0))


def test_pils_truncated_image_setting_is_part_of_the_key(tmp_path, monkeypatch, capsys):
    """A cache built by a library caller whose PIL decodes truncated files (their
    missing part grey) was reused by a later command, which refuses them, and the
    reverse: each setting has its own cache, both current, told apart in the listing."""
    from PIL import ImageFile

    from simclr.cli import main
    from tests.image_files import jpeg_bytes

    root = tmp_path / "imgs"
    save_image(root / "0.png", rgb(64, 64))
    whole = jpeg_bytes(64, 64)
    (root / "1.jpg").write_bytes(whole[:len(whole) * 2 // 3])  # (past its header)
    skipped = {}
    for truncated in (True, False, True):
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", truncated)
        src = open_source(str(root), data_cfg(tmp_path))
        skipped[truncated] = [Path(p).name for p, _ in src.skipped]
        assert src.num_images == (2 if truncated else 1)
    assert skipped == {True: [], False: ["1.jpg"]}
    entries = cache_entries(tmp_path / "cache")
    assert len(entries) == 2 and not superseded(entries)
    assert sorted(describe_entry(e) for e in entries) == [
        "whole pictures", "whole pictures, truncated files read (PIL's LOAD_TRUNCATED_IMAGES)"]
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "replaced by a newer cache" not in capsys.readouterr().out


def test_a_build_removes_the_cache_of_its_folder_before_it_changed(tmp_path, caplog):
    """A file added: the new cache replaces the folder's old one, which is removed at
    once (it would take the disk twice until `simclr cache --clean`); the caches of
    another side or another folder stay."""
    _cifar_like(tmp_path / "imgs")
    _cifar_like(tmp_path / "other")
    for name, side in (("imgs", None), ("imgs", 12), ("other", None)):  # (16 px: own side)
        open_source(str(tmp_path / name), data_cfg(tmp_path, load_size=side))
    before = {e.npy for e in cache_entries(tmp_path / "cache")}
    assert len(before) == 3
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    after = {e.npy: e for e in cache_entries(tmp_path / "cache")}
    (gone,) = before - set(after)
    assert len(after) == 3 and not gone.with_suffix(".json").exists()
    assert sorted(e.images for e in after.values() if Path(e.root).name == "imgs") == [6, 7]
    assert [m for m in caplog.messages if "removed" in m] == [
        f"removed {gone}, the cache of this folder before it changed (0 MiB)"]


def test_a_full_disk_when_the_cache_record_is_written_is_one_line_and_leaves_nothing(
        tmp_path, monkeypatch):
    """The pixels fit, their sidecar does not: one line naming it, and no .npy without
    its record left for `simclr cache` to list as a 0 x 0 px cache."""
    import errno

    from simclr.errors import SimCLRError
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=1, per_class=4)

    def full(target, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "write_atomically", full)
    with pytest.raises(SimCLRError, match=r"^cannot write the decoded cache's record .*\.json: "
                                          "No space left on device; pass another --cache-dir"):
        open_source(str(folder), DataConfig(cache_dir=str(tmp_path / "c"), workers=0),
                    image_size=16)
    assert list((tmp_path / "c").glob("*")) == []


def test_a_full_disk_names_the_files_killed_builds_left(tmp_path, monkeypatch):
    """A build killed outright leaves its whole-size temporary file (removed an hour
    untouched); the rerun found the disk full and said nothing of it: now it is named."""
    import errno

    from simclr.errors import SimCLRError
    from tests.conftest import make_image_folder
    from tests.test_files import _dead_pid

    folder = make_image_folder(tmp_path / "imgs", classes=1, per_class=4)
    (tmp_path / "c").mkdir()
    left = tmp_path / "c" / f"imgs-16px-0123456789abcdef0123.npy.tmp-ab12-{_dead_pid()}"
    left.write_bytes(bytes(2 << 20))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "decode_files", full)
    with pytest.raises(SimCLRError, match=re.escape(
            f": No space left on device (1 unfinished cache file(s) of 2 MiB in {tmp_path / 'c'}, "
            "from commands killed while building: delete them unless another machine sharing "
            "the folder builds there now); pass another --cache-dir")):
        open_source(str(folder), DataConfig(cache_dir=str(tmp_path / "c"), workers=0),
                    image_size=16)
    assert left.exists()  # (not removed: another machine's build may be writing it)


def test_a_record_the_cache_folder_refuses_to_take_is_a_cache_folder_error(tmp_path,
                                                                           monkeypatch):
    """A read-only folder refusing the sidecar is the cache folder's error (--cache auto
    reads without a cache), as one refusing the pixels is; the .npy is not left."""
    import errno

    from simclr.folders import scan_folder

    _cifar_like(tmp_path / "imgs")

    def read_only(target, write):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cache, "write_atomically", read_only)
    with pytest.raises(cache.CacheFolderError, match="Read-only file system"):
        cache.build_cache(scan_folder(tmp_path / "imgs"), 16, tmp_path / "c", 0)
    assert list((tmp_path / "c").glob("*")) == []


def test_a_cache_larger_than_the_free_space_is_refused_before_any_file_is_made(
        tmp_path, monkeypatch):
    """posix_fallocate of the whole size came first: on ext4 a reservation that fails
    part-way may keep the blocks it got, the disk full until the file is deleted. The
    free space is read first, and the refusal is the full disk's line."""
    import types

    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=1, per_class=4)
    (tmp_path / "c").mkdir()
    monkeypatch.setattr(os, "statvfs", lambda path: types.SimpleNamespace(
        f_bavail=1, f_frsize=1024, f_bfree=1, f_blocks=100))  # 1 KiB free of 100
    with pytest.raises(SimCLRError, match=r"^cannot write the decoded cache .*\.npy \(0 MiB\): "
                                          "No space left on device; pass another --cache-dir"):
        open_source(str(folder), DataConfig(cache_dir=str(tmp_path / "c"), workers=0),
                    image_size=16)
    assert list((tmp_path / "c").glob("*")) == []


def test_a_read_only_cache_folder_is_one_line(tmp_path, monkeypatch):
    """On a read-only file system even deleting the (absent) temporary file fails:
    that clean-up must not replace the message with a traceback of its own."""
    import errno

    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=1, per_class=4)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(np.lib.format, "open_memmap", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(SimCLRError, match=r"^cannot write the decoded cache .*\.npy \(0 MiB\): "
                                          "Read-only file system; pass another --cache-dir"):
        open_source(str(folder), DataConfig(cache_dir=str(tmp_path / "c"), workers=0),
                    image_size=16)


def _another_simclrs_cache(entry: CacheEntry, version: int, key: str) -> Path:
    """A copy of ``entry`` under the 20-digit ``key``, its sidecar of format ``version``
    as simclr 11-30 wrote format 3 (no storage, variant nor checksum); returns its .npy."""
    import json
    import shutil

    npy = entry.npy.with_name(f"{entry.npy.name[:-24]}{key}.npy")
    shutil.copyfile(entry.npy, npy)
    meta = json.loads(entry.meta.read_text())
    keep = ("root", "side", "num_files", "kept", "skipped", "aspect")
    npy.with_suffix(".json").write_text(json.dumps(
        {"version": version, **{k: meta[k] for k in keep}}))
    return npy


def test_an_earlier_simclrs_cache_is_removed_by_clean_and_by_a_build(tmp_path, capsys,
                                                                      caplog):
    """A cache of an earlier format is never read again (the key hashes the version: a
    run rebuilds under a new name), but records no storage, so no newer cache replaced
    it: --clean kept it until --unused-days, and a build never removed it. A newer
    simclr's cache, sharing the folder, is left alone."""
    from simclr.cli import main

    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    (current,) = cache_entries(tmp_path / "cache")
    old = _another_simclrs_cache(current, CACHE_VERSION - 1, "0" * 20)
    newer = _another_simclrs_cache(current, CACHE_VERSION + 1, "f" * 20)
    assert len(cache_entries(tmp_path / "cache")) == 3
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert f"{old.name}  (written by an earlier simclr, never read again: --clean " \
           "removes it)\n" in listed and listed.count("--clean removes it") == 1
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    assert f"{old.name}  (removed: written by an earlier simclr" in capsys.readouterr().out
    assert sorted(e.npy for e in cache_entries(tmp_path / "cache")) == \
        sorted([current.npy, newer])
    # A build of the folder removes an earlier simclr's cache of it at once.
    _another_simclrs_cache(current, CACHE_VERSION - 1, "0" * 20)
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert f"removed {old}, a cache of this folder written by an earlier simclr (0 MiB)" \
        in caplog.messages
    left = cache_entries(tmp_path / "cache")
    assert newer in {e.npy for e in left} and old not in {e.npy for e in left}
    assert sorted(e.images for e in left) == [6, 7]


def test_a_newer_simclrs_cache_of_the_same_folder_is_not_taken_for_a_replaced_one(
        tmp_path, capsys):
    """Two releases sharing a cache folder: a build by this one removed the newer one's
    cache of the same folder, side and storage as "the cache of this folder before it
    changed" (and the newer one removed this one's in turn: each run decoded again), and
    --clean did too. A cache of another version is an earlier simclr's (outdated) or a
    newer one's, left to it; only caches of this version replace one another."""
    import json
    import shutil

    from simclr.cli import main

    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    (current,) = cache_entries(tmp_path / "cache")
    newer = current.npy.with_name(f"{current.npy.name[:-24]}{'f' * 20}.npy")
    shutil.copyfile(current.npy, newer)
    meta = json.loads(current.meta.read_text())
    newer.with_suffix(".json").write_text(json.dumps({**meta, "version": meta["version"] + 1}))
    current.npy.unlink()  # (this release builds its own again: its build removes replaced ones)
    current.meta.unlink()
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert newer.exists() and current.npy.exists()
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    assert "removed" not in capsys.readouterr().out
    assert sorted(e.npy for e in cache_entries(tmp_path / "cache")) == \
        sorted([current.npy, newer])


def test_an_evaluation_cache_holding_the_central_square_is_not_read_again(tmp_path,
                                                                          monkeypatch):
    """Format 5 stored an evaluation's squares as the resized picture's central square,
    whose centre crop is a pixel off torchvision's single centre crop for many shapes
    (a 60 x 40 photo at 32 px); the squares are now placed around that crop. The format
    is in the key, so a cache the earlier simclr wrote of the same files is not reused:
    the evaluation gets the new squares, not the shifted ones."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    def central_square(path: str, side: int, max_pixels: int, store: str):
        pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
        x = tvf.resize(pixels.permute(2, 0, 1).float(), [side], antialias=True,
                       interpolation=InterpolationMode.BICUBIC)
        x = tvf.center_crop(x, [side, side]).round().clamp(0, 255).to(torch.uint8)
        return x.permute(1, 2, 0).numpy(), 1.0

    for k in range(2):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(40, 60, k))
    cfg = data_cfg(tmp_path, cache="on")
    with monkeypatch.context() as m:  # the earlier simclr's build of the folder
        m.setattr(simclr.cache_entries, "CACHE_VERSION", 5)
        m.setattr(cache, "load_square", central_square)
        old = open_source(str(tmp_path / "imgs"), cfg, train=False, image_size=32,
                          evaluation=True, unlabeled=True)
    assert old.cached and old.store == "eval:32"
    source = open_source(str(tmp_path / "imgs"), cfg, train=False, image_size=32,
                         evaluation=True, unlabeled=True)
    want = np.stack([decode.load_square(p, 37, store="eval:32")[0] for p in source.paths])
    assert np.array_equal(source.get_batch(np.arange(2)).numpy(), want.transpose(0, 3, 1, 2))
    assert not np.array_equal(old.get_batch(np.arange(2)).numpy(), want.transpose(0, 3, 1, 2))


def _train_and_eval_caches(root: Path, tmp_path: Path) -> dict[str, CacheEntry]:
    """A pretraining's and an evaluation's caches of ``root`` (opened, built where none
    is current), by store: 'full' and 'eval:32'."""
    cfg = data_cfg(tmp_path, cache="on")
    assert open_source(str(root), cfg).cached
    assert open_source(str(root), cfg, train=False, image_size=32, evaluation=True).cached
    return {e.store: e for e in cache_entries(tmp_path / "cache") if e.root == str(root)}


def test_a_change_of_the_evaluation_squares_alone_rebuilds_the_evaluation_caches_alone(
        tmp_path, monkeypatch, capsys, caplog):
    """One format version for every cache: bumped for an evaluation's squares alone (5
    to 6), it threw away every pretraining cache too (an ImageNet-scale one an hour to
    decode), though its bytes were the same. EVAL_CACHE_VERSION now tells an earlier
    simclr's evaluation caches: the pretraining's is read as it is, the same file."""
    from simclr.cli import main

    for k in range(4):
        save_image(tmp_path / "imgs" / ("cat" if k % 2 else "dog") / f"{k}.png",
                   rgb(40, 60, k))
    before = _train_and_eval_caches(tmp_path / "imgs", tmp_path)
    assert sorted(before) == ["eval:32", "full"]
    monkeypatch.setattr(simclr.cache_entries, "EVAL_CACHE_VERSION",
                        simclr.cache_entries.EVAL_CACHE_VERSION + 1)
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert f"{before['eval:32'].npy.name}  (written by an earlier simclr, never read " \
           "again: --clean removes it)\n" in listed
    assert listed.count("--clean removes it") == 1
    decoded, decode_files = [], cache.decode_files
    monkeypatch.setattr(cache, "decode_files",
                        lambda *a, **k: decoded.append(a[5]) or decode_files(*a, **k))
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        after = _train_and_eval_caches(tmp_path / "imgs", tmp_path)
    assert len(decoded) == 1 and "into the cache" in decoded[0]  # the evaluation's alone
    assert after["full"] == before["full"]._replace(last_used=after["full"].last_used)
    assert after["eval:32"].npy != before["eval:32"].npy
    assert f"removed {before['eval:32'].npy}, a cache of this folder written by an " \
           "earlier simclr (0 MiB)" in caplog.messages
    assert len(cache_entries(tmp_path / "cache")) == 2


def test_a_change_of_the_cache_format_rebuilds_every_cache(tmp_path, monkeypatch, caplog):
    """CACHE_VERSION (the layout, the decoding, the key) is every cache's: bumped, a
    pretraining's and an evaluation's caches are both rebuilt, the earlier ones removed."""
    for k in range(4):
        save_image(tmp_path / "imgs" / ("cat" if k % 2 else "dog") / f"{k}.png",
                   rgb(40, 60, k))
    before = _train_and_eval_caches(tmp_path / "imgs", tmp_path)
    monkeypatch.setattr(simclr.cache_entries, "CACHE_VERSION",
                        simclr.cache_entries.CACHE_VERSION + 1)
    assert all(simclr.cache_entries.outdated(e) for e in before.values())
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        after = _train_and_eval_caches(tmp_path / "imgs", tmp_path)
    assert sorted(after) == ["eval:32", "full"]
    assert not {e.npy for e in after.values()} & {e.npy for e in before.values()}
    for entry in before.values():
        assert f"removed {entry.npy}, a cache of this folder written by an earlier " \
               "simclr (0 MiB)" in caplog.messages
    assert len(cache_entries(tmp_path / "cache")) == 2


def test_a_pretraining_and_an_evaluation_of_one_folder_keep_both_their_caches(
        tmp_path, capsys):
    """A pretraining keeps the images beside the class folders, an evaluation leaves
    them out: two current caches of one folder, neither replaced by the other (each
    --clean deleted the one used less recently, each command then decoded again)."""
    from simclr.cli import main

    _cifar_like(tmp_path / "imgs")
    save_image(tmp_path / "imgs" / "loose.png", rgb(16, 16))
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path), unlabeled=True)
    time.sleep(0.01)
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert sorted(e.images for e in cache_entries(tmp_path / "cache")) == [6, 7]
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    assert "removed" not in capsys.readouterr().out
    assert len(cache_entries(tmp_path / "cache")) == 2


def test_a_folder_moved_with_its_files_keeps_its_cache_at_the_new_place(tmp_path, capsys):
    from simclr.cli import main

    _cifar_like(tmp_path / "a" / "imgs")
    open_source(str(tmp_path / "a" / "imgs"), data_cfg(tmp_path))
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "imgs").rename(tmp_path / "b" / "imgs")
    open_source(str(tmp_path / "b" / "imgs"), data_cfg(tmp_path))  # reused, not decoded
    assert [e.root for e in cache_entries(tmp_path / "cache")] == \
        [str(tmp_path / "b" / "imgs")]
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    assert "removed" not in capsys.readouterr().out  # (was: "its folder is gone")
    assert len(cache_entries(tmp_path / "cache")) == 1


@pytest.mark.parametrize("edit", [
    lambda m: {"version": m["version"]}, lambda m: [1, 2], lambda m: None,
    lambda m: {**m, "kept": m["kept"] + [99]}, lambda m: {**m, "kept": m["kept"][1:]},
    lambda m: {**m, "skipped": [[0]]}, lambda m: {**m, "aspect": [1.0]},
    lambda m: {**m, "kept": m["kept"][1:], "skipped": [[0, "bad", "more"]]},
    lambda m: {**m, "kept": ["0"] + m["kept"][1:]},
    lambda m: {**m, "kept": m["kept"][:-1] + [99]},  # as many, but not each file once
    lambda m: {**m, "kept": [0] + m["kept"][:-1]},
    lambda m: {**m, "aspect": [0.0] * 6}, lambda m: {**m, "aspect": [-1.0] * 6},
    lambda m: {**m, "aspect": [float("nan")] * 6}, lambda m: {**m, "aspect": [float("inf")] * 6},
    lambda m: {**m, "kept": m["kept"][1:], "skipped": [[0, 5]]},  # (a reason not as text)
    lambda m: {k: v for k, v in m.items() if k != "aspect"},
    lambda m: {k: v for k, v in m.items() if k != "crc32"},
    lambda m: {**m, "crc32": str(m["crc32"])}, lambda m: {**m, "checked": None},
])
def test_a_sidecar_of_the_right_version_but_not_as_written_is_rebuilt(tmp_path, edit):
    """Valid JSON that simclr did not write (edited, another tool's) was read as a cache
    record: KeyError, AttributeError or IndexError tracebacks. (A zero or negative aspect
    would reach the crop sampler's aspect correction.)"""
    import json

    _cifar_like(tmp_path / "imgs")
    first = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
    (meta,) = (tmp_path / "cache").glob("*.json")
    written = json.loads(meta.read_text())
    meta.write_text(json.dumps(edit(written)))
    again = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert again.num_images == 6 and torch.equal(again.get_batch(np.arange(6)), first)
    rebuilt = json.loads(meta.read_text())
    assert (rebuilt["kept"], rebuilt["aspect"]) == (list(range(6)), written["aspect"])
    assert rebuilt["crc32"] == written["crc32"]


def test_a_record_of_another_version_or_a_pixel_file_of_another_side_is_rebuilt(tmp_path):
    """Files under the cache's name that hold another format's record, or another side's
    pixels with their own record (a side's two files copied over another's), are not
    trusted though their checksum agrees: the cache is rebuilt as this run asks for it."""
    import json
    import shutil

    from simclr.folders import scan_folder

    arrays = _cifar_like(tmp_path / "imgs")
    images, folder = scan_folder(tmp_path / "imgs"), tmp_path / "cache"
    built = cache.build_cache(images, 16, folder, 0)
    want = np.stack([arrays[int(Path(p).stem)] for p in images.paths])
    meta_path = built.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": meta["version"] - 1}))
    assert cache.build_cache(images, 16, folder, 0).rows.shape == (6, 16, 16, 3)
    assert json.loads(meta_path.read_text())["version"] == meta["version"]
    small = cache.build_cache(images, 8, folder, 0).path
    shutil.copyfile(small, built.path)
    shutil.copyfile(small.with_suffix(".json"), meta_path)
    again = cache.build_cache(images, 16, folder, 0)
    assert again.rows.shape == (6, 16, 16, 3)
    assert np.array_equal(np.asarray(again.rows), want)


def test_files_gone_since_the_scan_are_told_apart_by_name_in_the_key(tmp_path):
    """A listed file gone when the cache is built is a bad image, but its name still
    counts: a folder whose first file is gone is not read from the cache of one whose
    last file is (each holds one picture, at another row)."""
    from simclr.folders import scan_folder

    folder = tmp_path / "imgs"
    for k in (0, 1):
        save_image(folder / f"{k}.png", rgb(16, 16, k))
    images = scan_folder(folder)
    (folder / "0.png").unlink()
    assert [Path(p).name for p, _ in
            cache.build_cache(images, 16, tmp_path / "cache", 0).skipped] == ["0.png"]
    save_image(folder / "2.png", rgb(16, 16, 2))
    images = scan_folder(folder)
    (folder / "2.png").unlink()
    built = cache.build_cache(images, 16, tmp_path / "cache", 0)
    assert [Path(p).name for p, _ in built.skipped] == ["2.png"]
    assert np.array_equal(np.asarray(built.rows)[0], rgb(16, 16, 1))


def test_a_cache_built_under_another_pixel_limit_is_not_reused(tmp_path):
    """The pixel limit is part of the key: a folder cached under a generous --max-pixels
    and read again under a lower one skips the images past the new limit."""
    from simclr.folders import scan_folder

    _cifar_like(tmp_path / "imgs", n=2)
    save_image(tmp_path / "imgs" / "cat" / "big.png", rgb(20, 20))  # 400 pixels
    images = scan_folder(tmp_path / "imgs")
    assert cache.build_cache(images, 16, tmp_path / "cache", 0, max_pixels=1000).skipped == []
    strict = cache.build_cache(images, 16, tmp_path / "cache", 0, max_pixels=300)
    assert [Path(p).name for p, _ in strict.skipped] == ["big.png"]


@pytest.mark.parametrize("damage", [lambda raw: b"", lambda raw: raw[:60],
                                    lambda raw: b"not a numpy file at all"])
def test_a_damaged_pixel_file_is_rebuilt(tmp_path, damage, caplog):
    """An emptied .npy raised EOFError from np.load: a traceback on every later run of
    the folder (and `simclr cache --clean` kept it, the newest of its folder)."""
    _cifar_like(tmp_path / "imgs")
    first = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
    (npy,) = (tmp_path / "cache").glob("*.npy")
    npy.write_bytes(damage(npy.read_bytes()))
    with caplog.at_level(logging.WARNING):
        again = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert "ignoring unreadable cache" in caplog.text
    assert torch.equal(again.get_batch(np.arange(6)), first)


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_changed_pixel_is_found_by_the_checksum_and_rebuilt(tmp_path, caplog, keep_mtime,
                                                             monkeypatch):
    """A byte flipped in the .npy was trained on: nothing checked the pixels. (Its mtime
    set back, as a copy with `rsync -t` would: the ctime still says it was written.)
    An unchanged cache is not read whole again on the next open (a large one would cost
    seconds on every run). The checksum covers the whole file, read in chunks (a cache
    may exceed the memory)."""
    monkeypatch.setattr(cache, "_CRC_CHUNK", 64)  # (not 16 MiB: many chunks here too)
    _cifar_like(tmp_path / "imgs")
    first = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
    (npy,) = (tmp_path / "cache").glob("*.npy")
    before = npy.stat()
    raw = bytearray(npy.read_bytes())
    raw[-100] ^= 0x10  # a pixel of the last image
    npy.write_bytes(bytes(raw))
    if keep_mtime:
        os.utime(npy, ns=(before.st_atime_ns, before.st_mtime_ns))
    with caplog.at_level(logging.WARNING):
        again = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert "its pixels changed since it was built" in caplog.text
    assert len([r for r in caplog.records if "pixels changed" in r.getMessage()]) == 1
    assert torch.equal(again.get_batch(np.arange(6)), first)

    def read_whole(path):
        raise AssertionError(f"{path} read whole again")

    monkeypatch.setattr(cache, "_pixel_crc", read_whole)
    assert torch.equal(open_source(str(tmp_path / "imgs"),
                                   data_cfg(tmp_path)).get_batch(np.arange(6)), first)


def _sidecar_leftovers(folder: Path) -> dict[str, Path]:
    """Temporary sidecar names in ``folder``, two hours old: a killed build's (process
    gone), a live process's, and a user's own of another shape (process gone too)."""
    from tests.test_files import _age, _dead_pid

    found = {
        "killed": folder / f"imgs-16px-0123456789abcdef0123.json.tmp-ab12cd34-{_dead_pid()}",
        "live": folder / f"imgs-16px-0123456789abcdef4567.json.tmp-ab12cd34-{os.getpid()}",
        "theirs": folder / f"results.json.tmp-{_dead_pid()}",
    }
    for path in found.values():
        path.write_text("{}")
        _age(path, 2 * 3600)
    return found


def test_a_cache_build_removes_a_killed_builds_sidecar(tmp_path):
    (tmp_path / "cache").mkdir()
    left = _sidecar_leftovers(tmp_path / "cache")
    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert not left["killed"].exists()
    assert left["live"].exists() and left["theirs"].exists()


def _clear_all(folder: Path) -> None:
    """What `simclr cache --clear` does to ``folder`` (another process's, here at once)."""
    for entry in cache_entries(folder):
        remove_entry(entry)


def test_a_clear_while_a_build_writes_its_record_leaves_the_run_its_pixels(
        tmp_path, monkeypatch, capsys):
    """`simclr cache --clear` removing the .npy a build had just renamed into place, before
    it wrote the record: the build then opened its memmap by name, a FileNotFoundError
    traceback, and left a record without its .npy that no listing or --clean saw. The run
    now keeps the pixels it decoded (its memmap, opened first); the lone record is listed
    and removed by --clean."""
    from simclr.cli import main
    from simclr.folders import scan_folder

    arrays = _cifar_like(tmp_path / "imgs")
    folder = tmp_path / "cache"
    real = cache._write_sidecar

    def cleared_first(meta_path: Path, meta: dict) -> None:
        _clear_all(folder)
        real(meta_path, meta)

    monkeypatch.setattr(cache, "_write_sidecar", cleared_first)
    images = scan_folder(tmp_path / "imgs")
    built = cache.build_cache(images, 16, folder, 0)
    monkeypatch.undo()
    names = [int(Path(p).stem) for p in images.paths]
    assert (np.asarray(built.rows) == np.stack([arrays[k] for k in names])).all()
    assert not built.path.exists()
    (entry,) = cache_entries(folder)
    assert entry.orphan and entry.meta == built.path.with_suffix(".json")
    assert entry.root == images.root and entry.nbytes == entry.meta.stat().st_size
    assert superseded([entry]) == set()  # (a record alone replaces no cache)
    assert main(["cache", "--cache-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{entry.meta.name}  (its .npy is gone: --clean removes it)\n" in out, out
    assert main(["cache", "--cache-dir", str(folder), "--clean"]) == 0
    assert f"{entry.meta.name}  (removed: its .npy is gone)\n" in capsys.readouterr().out
    assert list(folder.iterdir()) == []


def test_a_clear_just_after_a_build_renamed_its_npy_is_one_line(tmp_path, monkeypatch):
    """The .npy removed between its rename into place and the opening of its memmap: a
    one-line error saying so (run again), not "cannot write the decoded cache", and no
    record left behind."""
    from simclr.folders import scan_folder

    _cifar_like(tmp_path / "imgs")
    folder = tmp_path / "cache"
    real = os.replace

    def cleared_after(src, dst) -> None:
        real(src, dst)
        if str(dst).endswith(".npy"):
            Path(dst).unlink()

    monkeypatch.setattr(cache.os, "replace", cleared_after)
    with pytest.raises(SimCLRError) as err:
        cache.build_cache(scan_folder(tmp_path / "imgs"), 16, folder, 0)
    monkeypatch.undo()
    assert "was removed while it was being built" in str(err.value)
    assert "run again" in str(err.value) and "\n" not in str(err.value)
    assert list(folder.iterdir()) == []


def test_a_build_whose_folder_changed_while_it_decoded_keeps_the_current_cache(
        tmp_path, monkeypatch, caplog):
    """A build that computed its key, then another run's build after a file was edited
    (the new key, the old cache removed), then the first one's: it rebuilt under the old
    key, read as the folder's newest, and removed the current cache of the other run. Its
    key no longer matches its files: it removes nothing, and keeps no cache under a key
    that does not describe its pixels (the run reads what it decoded)."""
    from simclr.folders import scan_folder

    _cifar_like(tmp_path / "imgs")
    folder = tmp_path / "cache"
    cache.build_cache(scan_folder(tmp_path / "imgs"), 16, folder, 0)
    edited = rgb(16, 16, seed=99)
    real, other = cache._read_cache, []

    def folder_changed_meanwhile(*args, **kwargs):
        if not other:  # (the other run's build calls this too)
            other.append(None)
            save_image(tmp_path / "imgs" / "dog" / "0.png", edited)
            other.append(cache.build_cache(scan_folder(tmp_path / "imgs"), 16, folder, 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "_read_cache", folder_changed_meanwhile)
    images = scan_folder(tmp_path / "imgs")
    with caplog.at_level(logging.INFO, logger="simclr.cache"):
        built = cache.build_cache(images, 16, folder, 0)
    monkeypatch.undo()
    current = other[1].path
    assert [e.npy for e in cache_entries(folder)] == [current]
    assert not built.path.exists() and built.path != current
    assert (np.asarray(built.rows)[images.paths.index(str(tmp_path / "imgs" / "dog" / "0.png"))]
            == edited).all()
    assert any("changed while it was being decoded" in m for m in caplog.messages)
    assert not any(m.startswith("removed") and str(current) in m for m in caplog.messages)


def test_a_cache_rewritten_unchanged_is_checked_once_then_trusted(tmp_path, monkeypatch):
    """A .npy whose stat stamp changed (rewritten with the same bytes, as a copy back
    would) is checksummed once; the check's new stamp is recorded, so the next open does
    not read it whole again (ImageNet at 64 px: 15 GB on every run)."""
    import json

    _cifar_like(tmp_path / "imgs")
    first = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
    (npy,) = (tmp_path / "cache").glob("*.npy")
    npy.write_bytes(npy.read_bytes())  # same pixels, a new ctime
    assert torch.equal(open_source(str(tmp_path / "imgs"),
                                   data_cfg(tmp_path)).get_batch(np.arange(6)), first)
    assert json.loads(npy.with_suffix(".json").read_text())["checked"] == \
        cache._stat_stamp(npy)

    def read_whole(path):
        raise AssertionError(f"{path} read whole again")

    monkeypatch.setattr(cache, "_pixel_crc", read_whole)
    assert torch.equal(open_source(str(tmp_path / "imgs"),
                                   data_cfg(tmp_path)).get_batch(np.arange(6)), first)


def test_a_build_leaves_the_caches_of_other_folders_alone(tmp_path):
    """A build removes what it replaces of its own folder only: another folder's
    caches, even an earlier simclr's (for `simclr cache --clean` to list), stay."""
    import json

    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    (current,) = cache_entries(tmp_path / "cache")
    other = _another_simclrs_cache(current, CACHE_VERSION - 1, "0" * 20)
    meta = json.loads(other.with_suffix(".json").read_text())
    other.with_suffix(".json").write_text(json.dumps(meta | {"root": str(tmp_path / "b")}))
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))  # a new build of imgs
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert other.exists() and other.with_suffix(".json").exists()


def test_a_default_cache_folder_that_cannot_be_made_reads_without_a_cache(tmp_path,
                                                                          monkeypatch, caplog):
    """A read-only or missing HOME failed every command that caches (an evaluation's
    too) unless --cache-dir was given: --cache auto now reads the images without a
    cache, in a note; --cache on, or a --cache-dir given, still fails."""
    _cifar_like(tmp_path / "imgs")
    (tmp_path / "afile").write_text("x")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "afile"))  # (its .cache cannot be made)
    with caplog.at_level(logging.WARNING, logger="simclr.data"):
        for evaluation in (False, True):
            src = open_source(str(tmp_path / "imgs"), DataConfig(workers=0), image_size=16,
                              evaluation=evaluation)
            assert not src.cached and len(src) == 6
    notes = [r.getMessage() for r in caplog.records if "cache folder" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith(  # (said once: --train, then --test)
        f"note: cannot create the cache folder {tmp_path / 'afile/.cache/simclr/decoded'}: "
    ), notes
    assert "reading the images without a cache" in notes[0]
    with pytest.raises(SimCLRError, match="cannot create the cache folder"):
        open_source(str(tmp_path / "imgs"), DataConfig(workers=0, cache="on"))
    with pytest.raises(SimCLRError, match="cannot create the cache folder"):
        open_source(str(tmp_path / "imgs"),
                    DataConfig(workers=0, cache_dir=str(tmp_path / "afile/sub")))


def test_a_default_cache_folder_made_read_only_since_reads_without_a_cache(tmp_path,
                                                                          monkeypatch, caplog):
    """A default cache folder that exists but cannot be written in (a home mounted
    read-only after it was used) failed where one that cannot be made fell back: --cache
    auto reads the images without a cache there too; a full disk stays an error."""
    import errno

    _cifar_like(tmp_path / "imgs")
    (tmp_path / "home/.cache/simclr/decoded").mkdir(parents=True)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    failure = [errno.EROFS]

    def refused(*args, **kwargs):
        raise OSError(failure[0], os.strerror(failure[0]))

    monkeypatch.setattr(np.lib.format, "open_memmap", refused)
    with caplog.at_level(logging.WARNING, logger="simclr.data"):
        src = open_source(str(tmp_path / "imgs"), DataConfig(workers=0), image_size=16)
    assert not src.cached and len(src) == 6
    assert any("cannot write the decoded cache" in r.getMessage()
               and "reading the images without a cache" in r.getMessage()
               for r in caplog.records), caplog.records
    failure[0] = errno.ENOSPC
    with pytest.raises(SimCLRError, match="No space left on device"):
        open_source(str(tmp_path / "imgs"), DataConfig(workers=0), image_size=16)


def _free_space(monkeypatch, free: int) -> None:
    """Make the file system report ``free`` bytes available."""
    import types

    monkeypatch.setattr(os, "statvfs", lambda path: types.SimpleNamespace(
        f_bavail=free, f_frsize=1, f_bfree=free, f_blocks=10**9))


def test_a_changed_folder_whose_old_cache_makes_the_room_gets_its_new_cache(
        tmp_path, monkeypatch, caplog):
    """The free-space check counted the folder's old cache, which the finished build
    removes anyway, as taken: a disk with room for one cache could never rebuild a
    changed folder's. It is counted as free and removed first, said so; a cache of
    another folder is neither counted nor removed."""
    _cifar_like(tmp_path / "imgs")
    _cifar_like(tmp_path / "other")
    for name in ("imgs", "other"):
        open_source(str(tmp_path / name), data_cfg(tmp_path))
    (old,) = [e for e in cache_entries(tmp_path / "cache") if e.root.endswith("imgs")]
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
    new_size = 7 * 16 * 16 * 3
    _free_space(monkeypatch, new_size - old.nbytes + 512)  # (room only with it counted)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        source = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert source.num_images == 7
    after = cache_entries(tmp_path / "cache")
    assert sorted(e.images for e in after) == [6, 7] and old.npy not in {e.npy for e in after}
    assert [m for m in caplog.messages if "removed" in m] == [
        f"removed {old.npy}, the cache of this folder before it changed (0 MiB), to make "
        "room for its new cache"]
    assert not superseded(after)  # (`simclr cache --clean`: nothing left to do)


def test_a_damaged_cache_rebuilt_in_place_still_counts_its_folders_old_cache_as_room(
        tmp_path, monkeypatch):
    """A cache rebuilt under its own name (its pixels changed) is no newer cache that
    makes the build's own look replaced: the folder's old cache still makes the room."""
    import shutil

    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    (old,) = cache_entries(tmp_path / "cache")
    for path in (old.npy, old.meta):
        shutil.copy2(path, tmp_path / path.name)
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    (current,) = cache_entries(tmp_path / "cache")
    for path in (old.npy, old.meta):  # (the old cache back, as a run left it)
        shutil.copy2(tmp_path / path.name, path)
    raw = bytearray(current.npy.read_bytes())
    raw[-100] ^= 0x10
    current.npy.write_bytes(bytes(raw))
    _free_space(monkeypatch, 7 * 16 * 16 * 3 - old.nbytes + 512)
    source = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert source.cached and source.num_images == 7
    assert [e.npy for e in cache_entries(tmp_path / "cache")] == [current.npy]


@pytest.mark.parametrize("room", ["exactly the new cache", "exactly with the old one"])
def test_a_disk_with_exactly_the_room_needed_builds_the_new_cache(tmp_path, monkeypatch,
                                                                   caplog, room):
    """Free space of exactly the new cache's size is enough (the old cache is removed
    after the build, not to make room); exactly enough with the old cache counted is
    enough too (it is removed first)."""
    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    (old,) = cache_entries(tmp_path / "cache")
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
    new_size = 7 * 16 * 16 * 3
    _free_space(monkeypatch, new_size if room == "exactly the new cache"
                else new_size - old.nbytes)
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        assert open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).num_images == 7
    (removed,) = [m for m in caplog.messages if "removed" in m]
    assert removed.startswith(f"removed {old.npy}, the cache of this folder before it changed")
    assert removed.endswith("to make room for its new cache") == (room != "exactly the new cache")


def test_a_file_system_that_cannot_tell_its_free_space_still_gets_its_cache(tmp_path,
                                                                            monkeypatch):
    """statvfs failing (a file system that does not support it) leaves the question to
    the reservation: the cache is built."""
    import errno

    def unsupported(path):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    _cifar_like(tmp_path / "imgs")
    monkeypatch.setattr(os, "statvfs", unsupported)
    assert open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).cached
    assert len(cache_entries(tmp_path / "cache")) == 1


def test_a_build_the_old_cache_cannot_make_room_for_keeps_it(tmp_path, monkeypatch):
    """Too little room even with the folder's old cache counted: the full disk's line,
    and nothing removed."""
    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    before = cache_entries(tmp_path / "cache")
    save_image(tmp_path / "imgs" / "cat" / "9.png", rgb(16, 16))
    _free_space(monkeypatch, 100)
    with pytest.raises(SimCLRError, match="No space left on device"):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    assert cache_entries(tmp_path / "cache") == before


@pytest.mark.parametrize("workers", [0, 2])
def test_a_read_failure_that_may_pass_fails_the_build_and_keeps_nothing(
        tmp_path, monkeypatch, workers):
    """An EIO while a file is read was saved in the cache as a bad image for good (the
    file's stat does not change): the build fails in one line that says running again
    retries it; nothing half-written is kept, another folder's cache is untouched."""
    import errno

    _cifar_like(tmp_path / "other")
    open_source(str(tmp_path / "other"), data_cfg(tmp_path))
    before = cache_entries(tmp_path / "cache")
    _cifar_like(tmp_path / "imgs")
    broken = str(tmp_path / "imgs" / "cat" / "3.png")
    opened = decode._open_header

    def flaky(f):
        if f.name == broken:
            raise OSError(errno.EIO, "Input/output error")
        return opened(f)

    monkeypatch.setattr(decode, "_open_header", flaky)
    monkeypatch.setattr(cache, "_CHUNK", 2)  # (a few tasks: the pool is used)
    monkeypatch.setattr(cache, "_READ_PAUSES", (0.0, 0.0), raising=False)  # (no waiting)
    with pytest.raises(SimCLRError, match=rf"^cannot read {broken}: Input/output error .*"
                                          "run again to retry it") as info:
        open_source(str(tmp_path / "imgs"),
                    DataConfig(cache_dir=str(tmp_path / "cache"), workers=workers))
    assert "\n" not in str(info.value)
    assert cache_entries(tmp_path / "cache") == before
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [before[0].npy.name, before[0].meta.name])


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("failures", [1, 9])
def test_a_read_that_fails_briefly_is_tried_again_before_the_build_fails(
        tmp_path, monkeypatch, workers, failures):
    """One EIO (a network file system's glitch) failed a whole build, an hour of
    decoding thrown away: the file is now tried a few times (pauses _READ_PAUSES); one
    that reads the second time is cached as any other, not recorded as bad; one that
    never reads still fails the build, after every try."""
    import errno

    arrays = _cifar_like(tmp_path / "imgs")
    broken = str(tmp_path / "imgs" / "cat" / "3.png")
    tries = tmp_path / "tries"  # (a file: counted across the decoding processes)
    opened = decode._open_header

    def flaky(f):
        if f.name == broken:
            with open(tries, "a") as out:
                out.write("x")
            if tries.stat().st_size <= failures:
                raise OSError(errno.EIO, "Input/output error")
        return opened(f)

    monkeypatch.setattr(decode, "_open_header", flaky)
    monkeypatch.setattr(cache, "_CHUNK", 2)  # (a few tasks: the pool is used)
    monkeypatch.setattr(cache, "_READ_PAUSES", (0.0, 0.0), raising=False)  # (no waiting)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=workers)
    if failures > len(cache._READ_PAUSES):
        with pytest.raises(SimCLRError, match=rf"^cannot read {broken}: Input/output"):
            open_source(str(tmp_path / "imgs"), cfg)
        assert tries.stat().st_size == 3 and cache_entries(tmp_path / "cache") == []
        return
    src = open_source(str(tmp_path / "imgs"), cfg)
    assert tries.stat().st_size == 2 and src.cached and src.skipped == []
    names = [int(Path(p).stem) for p in src.paths]
    expected = np.stack([arrays[k] for k in names]).transpose(0, 3, 1, 2)
    assert (src.get_batch(np.arange(6)).numpy() == expected).all()
    assert open_source(str(tmp_path / "imgs"), cfg).skipped == []  # (the record too)


_SLOW_BUILD = """
import sys, time
from simclr import cache
from simclr.config import DataConfig
from simclr.data import open_source

def slow(*args, **kwargs):
    time.sleep(120)

cache.load_square = slow  # (forked: the decoding processes wait too)
cache._CHUNK = 1
open_source(sys.argv[1], DataConfig(cache_dir=sys.argv[2], workers=2))
"""


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if entry.name.isdigit() and int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_decoding_processes_end_with_a_build_killed_outright(tmp_path):
    """A build's process killed with SIGKILL (the out-of-memory killer) left its
    decoding processes running for good, their parent init: each now ends with it."""
    import subprocess

    _cifar_like(tmp_path / "imgs")
    script = tmp_path / "build.py"
    script.write_text(_SLOW_BUILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    build = subprocess.Popen([sys.executable, str(script), str(tmp_path / "imgs"),
                              str(tmp_path / "cache")], env=env)
    workers: list[int] = []
    try:
        for _ in range(600):  # (until both decoding processes are started)
            workers = _children(build.pid)
            if len(workers) == 2 or build.poll() is not None:
                break
            time.sleep(0.1)
        assert len(workers) == 2
        build.kill()
        build.wait()
        for _ in range(100):
            if not any(_alive(pid) for pid in workers):
                break
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:  # (a regression: they would sleep on)
        build.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_commands_building_one_cache_build_it_once(tmp_path, caplog, monkeypatch):
    """Two runs of one folder started together (two seeds) decoded it side by side, each
    into a whole-size file (the second failed on a disk with room for one): the second
    waits for the first's build, says so, and reads its cache; no lock file is left."""
    import threading

    _cifar_like(tmp_path / "imgs")
    builds = []
    real_build, real_decode = cache._build_cache_files, cache.decode_files

    def counted(*args, **kwargs):
        builds.append(threading.current_thread().name)
        return real_build(*args, **kwargs)

    def slow(*args, **kwargs):  # (the first build still running when the second starts)
        time.sleep(1.0)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(cache, "_build_cache_files", counted)
    monkeypatch.setattr(cache, "decode_files", slow)
    got = {}
    first = threading.Thread(name="first", target=lambda: got.setdefault(
        "first", open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))))
    with caplog.at_level(logging.WARNING, logger="simclr.cache"):
        first.start()
        deadline = time.monotonic() + 30
        while not list((tmp_path / "cache").glob(".*.lock")) and time.monotonic() < deadline:
            time.sleep(0.01)
        second = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path)).get_batch(np.arange(6))
        first.join()
    assert builds == ["first"]
    assert "waiting for another command that is building the decoded cache" in caplog.text
    assert torch.equal(second, got["first"])
    assert not list((tmp_path / "cache").glob(".*.lock"))
