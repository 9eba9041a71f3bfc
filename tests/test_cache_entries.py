"""Tests for simclr.cache_entries: the cache folder, its caches listed, described and
cleaned (``simclr cache``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import simclr.cache_entries
from simclr.cache_entries import CacheEntry, cache_entries, cache_folder, superseded
from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from tests.image_files import data_cfg, rgb, save_image
from tests.test_cache import _cifar_like, _sidecar_leftovers

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_cache_command_lists_and_cleans_what_no_run_needs(tmp_path, capsys):
    """`simclr cache --clean` removes the caches of deleted folders and of folders no
    run used for --unused-days (30 by default; a reuse counts as a use); `--clear` removes
    them all."""
    import shutil

    from simclr.cli import main

    for name in ("kept", "gone", "old", "recent"):
        _cifar_like(tmp_path / name)
        open_source(str(tmp_path / name), data_cfg(tmp_path))
    mine = tmp_path / "cache" / "features.npy"  # a user's own files there: never touched
    np.save(mine, np.zeros(3))
    mine.with_suffix(".json").write_text("{}")
    np.save(tmp_path / "cache" / "run-2-64px-deadbeef.npy", np.zeros(3))  # (no 20-digit key)
    entries = {Path(e.root).name: e for e in cache_entries(tmp_path / "cache")}
    assert sorted(entries) == ["gone", "kept", "old", "recent"]
    assert all(e.nbytes == e.npy.stat().st_size + e.meta.stat().st_size  # (both files)
               for e in entries.values())
    at = {k: f"{e.root}  {e.npy.name}" for k, e in entries.items()}  # (and its file)
    shutil.rmtree(tmp_path / "gone")
    month_ago = time.time() - 31 * 86400
    for name in ("old", "kept"):
        os.utime(entries[name].meta, (month_ago, month_ago))
    weeks_ago = time.time() - 29 * 86400  # within the default 30 days: kept
    os.utime(entries["recent"].meta, (weeks_ago, weeks_ago))
    open_source(str(tmp_path / "kept"), data_cfg(tmp_path))  # reused: used today
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert "4 caches" in listed and "removed:" not in listed
    # The listing marks what --clean would remove (nothing is removed by it).
    assert f"{at['gone']}  (its folder is gone: --clean removes it)\n" in listed
    assert f"{at['old']}  (unused for 31 days: --clean removes it)\n" in listed
    assert f"{at['kept']}\n" in listed and f"{at['recent']}\n" in listed
    assert "MiB; --clean would free " in listed
    assert len(cache_entries(tmp_path / "cache")) == 4
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    out = capsys.readouterr().out
    assert f"{at['gone']}  (removed: its folder is gone)" in out
    assert f"{at['old']}  (removed: unused for 31 days)" in out and "MiB freed" in out
    assert sorted(Path(e.root).name for e in cache_entries(tmp_path / "cache")) == [
        "kept", "recent"]
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clear"]) == 0
    assert cache_entries(tmp_path / "cache") == []
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "features.json", "features.npy", "run-2-64px-deadbeef.npy"]
    # A folder changed since its cache was built: the new cache replaces the old one,
    # which the build removes (test below) or, where it could not, --clean.
    open_source(str(tmp_path / "kept"), data_cfg(tmp_path))
    save_image(tmp_path / "kept" / "cat" / "9.png", rgb(16, 16))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simclr.cache_entries, "remove_entry", _cannot_remove)
        open_source(str(tmp_path / "kept"), data_cfg(tmp_path))
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert listed.count("(replaced by a newer cache of its folder: --clean removes it)") == 1
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    capsys.readouterr()
    assert [e.images for e in cache_entries(tmp_path / "cache")] == [7]
    # would remove every cache: a typo
    status = main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean",
                   "--unused-days", "-1"])
    assert status == 2
    capsys.readouterr()
    # A wrong folder, or flags that would be ignored, are errors, not "0 caches".
    (tmp_path / "file").write_text("")
    for args, needle in ((["--cache-dir", str(tmp_path / "nosuch")], "no such folder"),
                         (["--cache-dir", str(tmp_path / "file")], "is a file, not a folder"),
                         (["--clean", "--clear"], "give one of --clean"),
                         (["--unused-days", "3"], "add --clean")):
        assert main(["cache", *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1


def test_the_default_cache_folder_not_made_yet_is_no_error(tmp_path, monkeypatch, capsys):
    """Before any run decoded a folder, ~/.cache/simclr/decoded does not exist: `simclr
    cache` lists no cache (a --cache-dir given and missing is a typo, refused above)."""
    from simclr.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # (~/.cache is the default then)
    assert main(["cache"]) == 0
    assert capsys.readouterr().out == f"{tmp_path}/.cache/simclr/decoded: 0 caches, 0.0 MiB\n"
    assert not (tmp_path / ".cache").exists()


def _cannot_remove(entry: CacheEntry) -> None:
    raise SimCLRError(f"cannot remove the cache {entry.npy}: Permission denied")


def test_the_listing_tells_apart_two_caches_of_one_folder(tmp_path, capsys):
    """Caches of one folder stored another way, or under another --max-pixels, were
    listed as the same line (size, count, folder): which one was which, and which file
    to delete, could not be told."""
    from simclr.cli import main

    _cifar_like(tmp_path / "imgs")
    for extra in ({}, {"store": "center"}, {"max_pixels": 10_000}):
        open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, **extra))
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    lines = capsys.readouterr().out.splitlines()[:-1]
    assert len(lines) == len(set(lines)) == 3
    for entry in cache_entries(tmp_path / "cache"):  # each line names its file
        assert sum(entry.npy.name in line for line in lines) == 1
    kinds = sorted(line.split(" px  ")[1].split("  used ")[0] for line in lines)
    assert kinds == ["central squares", "whole pictures", "whole pictures, --max-pixels 10000"]


def test_a_listing_escapes_a_caches_folder_and_reads_odd_sidecar_values_as_damaged(
        tmp_path, capsys):
    """`simclr cache` printed a cache's source folder as its sidecar said it (a folder
    named with an escape set the terminal's title), and a sidecar's "store": [1] (or a
    list as its --max-pixels) was a TypeError's traceback, unhashable: read as a damaged
    sidecar, as other odd ones are."""
    import json
    import shutil

    from simclr.cli import main

    _cifar_like(tmp_path / "d\x1b]0;PWN\x07x")
    open_source(str(tmp_path / "d\x1b]0;PWN\x07x"), data_cfg(tmp_path))
    (current,) = cache_entries(tmp_path / "cache")
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert "\x1b" not in listed and "d\\x1b]0;PWN\\x07x  " in listed
    meta = json.loads(current.meta.read_text())
    for n, odd in enumerate([{"store": [1]}, {"max_pixels": [1]}, {"loose": {}},
                             {"truncated": [1]}, {"store": "full\x1b[2J"}]):
        npy = current.npy.with_name(f"{current.npy.name[:-24]}{n:020d}.npy")
        shutil.copyfile(current.npy, npy)
        npy.with_suffix(".json").write_text(json.dumps({**meta, **odd}))
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert "\x1b" not in listed and listed.count("  ?  ") == 4, listed
    assert "full\\x1b[2J" in listed
    # A sidecar nested too deep to parse is damaged too (a RecursionError's traceback),
    # and a version that is no number reads as unrecorded (never compared as outdated).
    deep = current.npy.with_name(f"{current.npy.name[:-24]}{7:020d}.npy")
    shutil.copyfile(current.npy, deep)
    deep.with_suffix(".json").write_text("[" * 100_000)
    texty = current.npy.with_name(f"{current.npy.name[:-24]}{8:020d}.npy")
    shutil.copyfile(current.npy, texty)
    texty.with_suffix(".json").write_text(json.dumps({**meta, "version": "5"}))
    assert {e.npy: e.version for e in cache_entries(tmp_path / "cache")}[texty] is None
    for flags in ([], ["--clean"]):
        assert main(["cache", "--cache-dir", str(tmp_path / "cache"), *flags]) == 0
    assert texty.exists() and capsys.readouterr().out.count("  ?  ") == 10


def test_only_an_older_cache_of_the_same_folder_side_and_storage_is_replaced():
    def entry(name, root, side, store, used, variant=(89478485, False, False)):
        return CacheEntry(Path(f"{name}.npy"), Path(f"{name}.json"), 1, root, 4, side,
                          used, store, variant)

    entries = [entry("old", "/a", 32, "full", 1), entry("eval", "/a", 37, "eval", 2),
               entry("other", "/b", 32, "full", 3), entry("legacy", "/a", 32, None, 4),
               entry("loose", "/a", 32, "full", 5, (89478485, True, False)),
               entry("pixels", "/a", 32, "full", 6, (1000, False, False)),
               entry("new", "/a", 32, "full", 7)]
    assert superseded(entries) == {Path("old.npy")}


def test_a_record_without_its_cache_or_a_newer_simclrs_cache_replaces_nothing():
    """A sidecar whose .npy is gone is no cache, and a newer simclr's cache (a higher
    version, sharing the folder) is its own: neither replaces an older cache of theirs."""
    from simclr.cache_entries import cache_version

    def entry(name, root, used, **more):
        return CacheEntry(Path(f"{name}.npy"), Path(f"{name}.json"), 1, root, 4, 32,
                          used, "full", (89478485, False, False), **more)

    now = cache_version("full")
    entries = [entry("a", "/a", 1, version=now), entry("b", "/b", 2, version=now),
               entry("a-record", "/a", 3, orphan=True, version=now),
               entry("b-newer", "/b", 4, version=now + 1)]
    assert superseded(entries) == set()


def test_a_build_replaces_its_folders_older_and_earlier_simclrs_caches_alone():
    """The caches a build removes: its own folder's replaced one and an earlier simclr's,
    each with why, never another folder's; a build that does not read as the newest (a
    clock set back) replaces none but the earlier simclr's."""
    from simclr.cache_entries import cache_version, replaced_caches

    def entry(name, root, used, version=None):
        return CacheEntry(Path(f"{name}.npy"), Path(f"{name}.json"), 1, root, 4, 32, used,
                          "full", (89478485, False, False), version=version or now)

    now = cache_version("full")

    old, early, other = entry("old", "/a", 1), entry("early", "/a", 2, 1), entry("b", "/b", 3, 1)
    built = entry("built", "/a", 4)
    assert replaced_caches([old, early, other, built], built.npy, "/a") == [
        (old, "the cache of this folder before it changed"),
        (early, "a cache of this folder written by an earlier simclr")]
    later = entry("later", "/a", 5)  # (listed after the build: its clock was ahead)
    assert replaced_caches([old, built, later, early], built.npy, "/a") == [
        (early, "a cache of this folder written by an earlier simclr")]


def test_only_the_caches_removed_are_logged_as_removed(tmp_path, caplog, monkeypatch):
    """A cache that cannot be deleted is left for --clean, not logged as removed; a
    record whose .npy is gone, or a killed build's file removed meanwhile, is no error."""
    import logging

    from simclr.cache_entries import remove_entries, remove_entry, remove_leftover

    folder = tmp_path / "cache"
    folder.mkdir()
    record = folder / "imgs-16px-0123456789abcdef0123.json"
    record.write_text("{}")
    (orphan,) = cache_entries(folder)
    assert orphan.orphan
    remove_entry(orphan)
    assert not record.exists()
    remove_leftover(folder / "imgs-16px-0123456789abcdef0123.npy.tmp-1")
    monkeypatch.setattr(simclr.cache_entries, "remove_entry", _cannot_remove)
    with caplog.at_level(logging.INFO, logger="simclr.cache_entries"):
        remove_entries([(orphan, "why")])
    assert "removed" not in caplog.text


def test_a_cache_is_described_by_its_storage_and_reading(tmp_path):
    """`simclr cache` words an evaluation's cache by its side and a library caller's
    truncated-files setting."""
    from simclr.cache_entries import describe_entry
    from simclr.decode import DEFAULT_MAX_PIXELS

    entry = CacheEntry(Path("c.npy"), Path("c.json"), 1, "/a", 4, 36, 1, "eval:32",
                       (DEFAULT_MAX_PIXELS, False, True))
    assert describe_entry(entry) == (
        "for evaluation at 32 px, truncated files read (PIL's LOAD_TRUNCATED_IMAGES)")


def test_a_cache_of_an_older_simclr_is_replaced_by_any_newer_one_of_its_folder():
    """A sidecar from before the variant was recorded reads as (None, None, None): no
    newer cache ever had that variant, so such a cache was never replaced. A cache whose
    variant is recorded is still kept beside another variant's, even a newer old one's."""
    def entry(name, root, side, used, variant):
        return CacheEntry(Path(f"{name}.npy"), Path(f"{name}.json"), 1, root, 4, side,
                          used, "full", variant)

    entries = [entry("old", "/a", 32, 1, (None, None, None)),
               entry("side", "/a", 16, 2, (None, None, None)),
               entry("loose", "/a", 32, 3, (89478485, True, False)),
               entry("new", "/a", 32, 4, (89478485, False, False)),
               entry("eval", "/b", 32, 5, (89478485, False, False)),
               entry("older-simclr", "/b", 32, 6, (None, None, None))]
    assert superseded(entries) == {Path("old.npy")}


def test_an_evaluation_squares_version_outdates_the_evaluation_caches_alone(monkeypatch):
    """An entry is an earlier simclr's by its own store's version (cache_version): a
    change to an evaluation's squares alone (EVAL_CACHE_VERSION) outdates the 'eval:S'
    caches, not a pretraining's 'full' or 'center' ones; one of the layout, decoding or
    key (CACHE_VERSION) outdates them all. A sidecar without a store (an older simclr's)
    goes by CACHE_VERSION; an unreadable one (no version) is never outdated."""
    from simclr.cache_entries import cache_version, outdated

    now = {store: cache_version(store) for store in ("full", "center", "eval:32", None)}
    assert now["full"] == now["center"] == now[None] == simclr.cache_entries.CACHE_VERSION

    def entry(store, version):
        return CacheEntry(Path("c.npy"), Path("c.json"), 1, "/a", 4, 32, 1, store,
                          version=version)

    current = [entry(store, version) for store, version in now.items()]
    unreadable = CacheEntry(Path("u.npy"), Path("u.json"), 1, "?", 0, 0, 1)
    assert not any(outdated(e) for e in [*current, unreadable])
    with monkeypatch.context() as m:
        m.setattr(simclr.cache_entries, "EVAL_CACHE_VERSION",
                  simclr.cache_entries.EVAL_CACHE_VERSION + 1)
        assert cache_version("eval:32") == now["eval:32"] + 1
        assert cache_version("full") == now["full"]
        assert [e.store for e in current if outdated(e)] == ["eval:32"]
        assert not outdated(unreadable)
    with monkeypatch.context() as m:
        m.setattr(simclr.cache_entries, "CACHE_VERSION", simclr.cache_entries.CACHE_VERSION + 1)
        assert all(cache_version(store) == version + 1 for store, version in now.items())
        assert all(outdated(e) for e in current) and not outdated(unreadable)
        assert not outdated(current[0]._replace(orphan=True))  # (a record alone: no cache)
    # A newer simclr's evaluation cache (its squares changed since) is left to it.
    assert not outdated(entry("eval:32", now["eval:32"] + 1))


def test_a_killed_builds_file_is_listed_and_cleaned(tmp_path, capsys):
    """SIGKILL during a build leaves its whole-size temporary file: `simclr cache` names
    it and --clean removes it (an hour untouched, its process gone), not a user's file."""
    from simclr.cli import main
    from tests.test_files import _age, _dead_pid

    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    left = tmp_path / "cache" / f"imgs-16px-0123456789abcdef0123.npy.tmp-ab12-{_dead_pid()}"
    young = tmp_path / "cache" / f"imgs-16px-0123456789abcdef4567.npy.tmp-{_dead_pid()}"
    theirs = tmp_path / "cache" / f"notes.txt.tmp-{_dead_pid()}"
    for path in (left, young, theirs):
        path.write_bytes(bytes(3 << 20))
    for path in (left, theirs):
        _age(path, 2 * 3600)
    _age(young, 30 * 60)  # (half an hour untouched: a build may still be writing it)
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert f"3.0 MiB  {left.name}  (a killed build's file: --clean removes it)\n" in out
    # (within the hour, its process gone from here: named, not removed; it was unseen,
    # a full disk's cause that nothing showed)
    assert (f"3.0 MiB  {young.name}  (a killed build's file, unless another machine sharing "
            "this folder writes it: --clean removes it an hour untouched; delete it now if "
            "none does)\n") in out
    assert theirs.name not in out
    assert "--clean would free 3.0 MiB" in out
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    assert "3.0 MiB freed" in capsys.readouterr().out
    assert not left.exists() and young.exists() and theirs.exists()
    assert len(cache_entries(tmp_path / "cache")) == 1
    left.write_bytes(bytes(3 << 20))  # --clear removes it too, with every cache
    _age(left, 2 * 3600)
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clear"]) == 0
    assert f"{left.name}  (a killed build's file: removed)\n" in capsys.readouterr().out
    assert not left.exists() and cache_entries(tmp_path / "cache") == []


def test_a_killed_builds_sidecar_is_listed_and_cleaned(tmp_path, capsys):
    """The sidecar goes through a temporary name too: a build killed while writing it
    left that file, which neither `simclr cache` nor --clean saw (only the .npy's was)."""
    from simclr.cli import main

    _cifar_like(tmp_path / "imgs")
    open_source(str(tmp_path / "imgs"), data_cfg(tmp_path))
    left = _sidecar_leftovers(tmp_path / "cache")
    assert main(["cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert f"{left['killed'].name}  (a killed build's file: --clean removes it)\n" in out
    assert left["live"].name not in out and left["theirs"].name not in out
    assert main(["cache", "--cache-dir", str(tmp_path / "cache"), "--clean"]) == 0
    assert not left["killed"].exists()
    assert left["live"].exists() and left["theirs"].exists()
    assert len(cache_entries(tmp_path / "cache")) == 1


def test_a_cache_without_its_record_is_a_build_finishing_for_an_hour(tmp_path, capsys):
    """A cache .npy whose sidecar is not there (written last) may be a build finishing:
    half an hour old it is listed, neither counted as freeable nor removed by --clean;
    two hours old it is a build that never finished, which --clean removes and counts."""
    from simclr.cli import main
    from tests.test_files import _age

    folder = tmp_path / "cache"
    folder.mkdir()
    npy = folder / "imgs-16px-0123456789abcdef0123.npy"
    npy.write_bytes(bytes(3 << 20))
    _age(npy, 30 * 60)
    for flags in ([], ["--clean"]):
        assert main(["cache", "--cache-dir", str(folder), *flags]) == 0
        out = capsys.readouterr().out
        assert f"  ?  {npy.name}\n" in out, out
        assert "free" not in out and "never finished" not in out and npy.exists()
    _age(npy, 2 * 3600)
    assert main(["cache", "--cache-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{npy.name}  (a build that never finished: --clean removes it)\n" in out
    assert out.endswith("1 caches, 3.0 MiB; --clean would free 3.0 MiB\n"), out
    assert main(["cache", "--cache-dir", str(folder), "--clean"]) == 0
    # (the summary is of what is left: it said "1 caches, 3.0 MiB; 3.0 MiB freed")
    assert capsys.readouterr().out.endswith(": 0 caches, 0.0 MiB; 3.0 MiB freed\n")
    assert not npy.exists()


def test_the_default_cache_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    """The default cache folder is under $XDG_CACHE_HOME where it is set (as most Linux
    tools keep theirs), else under ~/.cache; a --cache-dir given is used as it is."""
    _cifar_like(tmp_path / "imgs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder(DataConfig.cache_dir) == tmp_path / "xdg/simclr/decoded"
    assert cache_folder(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.chdir(tmp_path)  # (messages name it whole)
    assert cache_folder("mine") == tmp_path / "mine"
    src = open_source(str(tmp_path / "imgs"), DataConfig(workers=0, cache="on"))
    assert src.cached
    assert len(list((tmp_path / "xdg/simclr/decoded").glob("*.npy"))) == 1
    assert not (tmp_path / "home").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # (ignored, as the spec says)
    assert cache_folder(DataConfig.cache_dir) == tmp_path / "home/.cache/simclr/decoded"
