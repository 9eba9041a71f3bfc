"""Tests for simclr.files: writes whole and durable or not at all, and what a killed write
leaves is collected by a later one."""

from __future__ import annotations

import ast
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import simclr
from simclr.checkpoint import save_checkpoint
from simclr.errors import SimCLRError
from simclr.files import (
    STALE_AFTER_S,
    remove_stale_temporaries,
    set_aside,
    temporary_name,
    write_atomically,
    write_json,
    written,
)


def _dead_pid() -> str:
    """The pid of a process that has exited."""
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_two_processes_of_one_pid_write_to_two_temporary_names(tmp_path):
    """Containers that share a cache folder may run simclr under one pid (7, say): each
    process draws its own token, so one never truncates the file another is writing."""
    code = ("import os; os.getpid = lambda: 7; from pathlib import Path; "
            "from simclr.files import temporary_name; print(temporary_name(Path('c.npy')))")
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip() for _ in range(2)}
    assert len(names) == 2 and all(n.startswith("c.npy.tmp-") and n.endswith("-7")
                                   for n in names)


def test_a_save_removes_what_a_killed_save_left(tmp_path):
    """SIGKILL during a save leaves ``<name>.tmp-<pid>``; the next checkpoint saved in
    the folder deletes it once its process is gone and it is old, never a live save's."""
    dead = _dead_pid()
    debris = tmp_path / f"last.pt.tmp-{dead}"
    live = tmp_path / f"last.pt.tmp-{os.getppid()}"  # a running process's, however old
    recent = tmp_path / f"last.pt.tmp-{int(dead) + 1}"  # dead or not: written just now
    other = tmp_path / f"ckpt-1.pt.tmp-{dead}"  # a periodic one's (never saved again)
    for path in (debris, live, recent, other):
        path.write_bytes(b"half a checkpoint")
    for path in (debris, live, other):
        _age(path, 2 * STALE_AFTER_S)
    save_checkpoint({"step": 1}, tmp_path)
    assert not debris.exists() and not other.exists()
    assert live.exists() and recent.exists()
    assert torch.load(tmp_path / "last.pt")["step"] == 1




@pytest.mark.parametrize("name", ["a" * 251 + ".npz", "日" * 84 + ".pt"])  # 255 bytes
def test_a_legal_name_of_255_bytes_is_written_and_its_debris_collected(tmp_path, name):
    """``<name>.tmp-<token>-<pid>`` passed a file name's 255 bytes: embed --out or export
    to a legal name of 250 bytes and more failed after all the work ('File name too
    long'). Its temporary file is named by a prefix of it that fits, its extension kept
    (checkpoints' "*.pt.tmp-*" clean-up sees it); a killed write's is still collected."""
    target = tmp_path / name
    assert len(os.fsencode(name)) == 255
    tmp = temporary_name(target)
    assert len(os.fsencode(tmp.name)) <= 255 and tmp.name.startswith(name[:40])
    assert tmp.name.split(".tmp-")[0].endswith(target.suffix)
    # another long name alike at the start gets temporary files of its own
    assert temporary_name(tmp_path / f"b{name[1:]}").name != tmp.name
    assert temporary_name(tmp_path / f"{name[:-5]}x{name[-4:]}").name != tmp.name
    debris = tmp.with_name(f"{tmp.name.rsplit('-', 1)[0]}-{_dead_pid()}")
    debris.write_bytes(b"half a file")
    _age(debris, 2 * STALE_AFTER_S)
    write_atomically(target, lambda path: path.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
    assert sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("name", ["enc[v1].pt", "r*.json", "a?.pt"])
def test_a_killed_writes_leftover_is_collected_whatever_the_name(tmp_path, name):
    """A name holding [, * or ? was taken as a glob pattern: a killed write's leftover of
    ``enc[v1].pt`` (a model's size) stayed for good."""
    target = tmp_path / name
    debris = temporary_name(target)
    debris = debris.with_name(f"{debris.name.rsplit('-', 1)[0]}-{_dead_pid()}")
    debris.write_bytes(b"half a file")
    _age(debris, 2 * STALE_AFTER_S)
    write_atomically(target, lambda path: path.write_bytes(b"whole"))
    assert sorted(tmp_path.iterdir()) == [target]


def test_a_cache_build_frees_what_a_killed_build_left(tmp_path):
    """A killed ImageNet cache build leaves a file of the cache's whole size; the next
    build removes it (untouched for an hour) before reserving the disk again."""
    from simclr.config import DataConfig
    from simclr.data import open_source
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "images", classes=2, per_class=2)
    cache = tmp_path / "cache"
    cache.mkdir()
    debris = cache / f"images-16px-0123.npy.tmp-{_dead_pid()}"
    debris.write_bytes(bytes(1000))
    _age(debris, 2 * 3600)
    young = cache / f"images-16px-4567.npy.tmp-{_dead_pid()}"
    young.write_bytes(bytes(1000))
    _age(young, 600)  # maybe another machine's build, still writing
    theirs = cache / f"thesis.tex.tmp-{_dead_pid()}"  # a file of the user's, however old
    theirs.write_bytes(bytes(10))
    _age(theirs, 2 * 3600)
    source = open_source(str(folder), DataConfig(cache_dir=str(cache), workers=0),
                         train=False, image_size=16)
    assert source.num_images == 4 and not debris.exists() and young.exists()
    assert theirs.exists()
    assert not [p for p in cache.iterdir() if p not in (young, theirs) and ".tmp-" in p.name]


def test_only_matching_names_of_dead_processes_are_removed(tmp_path):
    dead = _dead_pid()
    keep = [tmp_path / "notes.txt", tmp_path / f"a.pt.tmp-{os.getpid()}",
            tmp_path / "a.pt.tmp-x1", tmp_path / f"b.json.tmp-{dead}"]
    gone = tmp_path / f"a.pt.tmp-{dead}"
    for path in (*keep, gone):
        path.write_text("x")
        _age(path, 2 * STALE_AFTER_S)
    assert remove_stale_temporaries(tmp_path, "*.pt.tmp-*") == [gone]
    assert all(p.exists() for p in keep) and not gone.exists()


class _FakeKernel32:
    """kernel32's OpenProcess / GetExitCodeProcess / CloseHandle, as Windows answers them
    for a process that ``exit_code`` describes (None: no such process)."""

    def __init__(self, exit_code: int | None) -> None:
        self.exit_code = exit_code
        self.closed = False

    def OpenProcess(self, access, inherit, pid):  # noqa: N802 (the Windows name)
        return 0 if self.exit_code is None else 42

    def GetExitCodeProcess(self, handle, code):  # noqa: N802
        code._obj.value = self.exit_code
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.closed = True
        return 1


@pytest.mark.parametrize("exit_code, alive, error", [(None, False, 87), (259, True, 87),
                                                     (0, False, 87), (None, True, 5)])
def test_on_windows_a_process_is_asked_after_without_a_signal(monkeypatch, exit_code, alive,
                                                              error):
    """Windows' os.kill(pid, 0) sends CTRL_C_EVENT to the pid's console group (it would
    interrupt another run) rather than asking whether the process exists: kernel32 is
    asked instead, and a process that cannot be asked after counts as alive."""
    import ctypes

    from simclr import files

    def no_kill(*args):
        raise AssertionError("os.kill called on Windows")

    kernel32, pid = _FakeKernel32(exit_code), int(_dead_pid())
    monkeypatch.setattr(os, "kill", no_kill)
    monkeypatch.setattr(ctypes, "WinDLL", lambda *a, **k: kernel32, raising=False)
    # 87: no such pid; 5: access denied (another user's live process)
    monkeypatch.setattr(ctypes, "get_last_error", lambda: error, raising=False)
    monkeypatch.setattr(os, "name", "nt")
    try:
        answer = files._process_alive(pid)
    finally:
        monkeypatch.undo()
    assert answer is alive and kernel32.closed is (exit_code is not None)


def test_on_windows_without_kernel32_every_process_counts_as_alive(monkeypatch):
    """A check that cannot be made never lets a live run's temporary file be deleted."""
    from simclr import files

    def no_kill(*args):
        raise AssertionError("os.kill called on Windows")

    pid = int(_dead_pid())
    monkeypatch.setattr(os, "kill", no_kill)
    monkeypatch.setattr(os, "name", "nt")
    try:
        answer = files._process_alive(pid)
    finally:
        monkeypatch.undo()
    assert answer is True


def test_a_folder_is_held_by_one_run_at_a_time(tmp_path):
    """A second run into a folder in use is refused in one line naming the holder; the
    folder is free again once the first lets go (or its process ends)."""
    import pytest

    from simclr.errors import SimCLRError
    from simclr.files import lock_folder

    held = lock_folder(tmp_path)
    holder = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from simclr.files import lock_folder; lock_folder(Path(sys.argv[1]))", str(tmp_path)],
        capture_output=True, text=True)
    assert holder.returncode != 0
    assert f"{tmp_path} is in use by another simclr run (pid {os.getpid()} on" in holder.stderr
    held.close()
    again = lock_folder(tmp_path)  # free once let go
    again.close()
    with pytest.raises(SimCLRError, match="in use"):
        held = lock_folder(tmp_path)
        lock_folder(tmp_path)  # a second holder in the same process is refused as well


def test_a_folder_asked_about_a_moment_is_not_taken_for_a_run(tmp_path):
    """folder_holder (simclr info, a command's checks) holds a shared lock while it asks:
    a run starting into the folder then was refused, naming another run (10,299 of
    ~96,000 starts refused while a loop of folder_holder ran). It waits for such a
    glance; a run that holds the folder is still refused."""
    import fcntl
    import threading

    import pytest

    from simclr.errors import SimCLRError
    from simclr.files import LOCK_NAME, lock_folder

    lock_folder(tmp_path).close()  # (the lock file a run leaves)
    with open(tmp_path / LOCK_NAME, encoding="utf-8") as glance:
        fcntl.flock(glance.fileno(), fcntl.LOCK_SH)
        released = threading.Timer(0.02, fcntl.flock, (glance.fileno(), fcntl.LOCK_UN))
        released.start()
        held = lock_folder(tmp_path)
        released.join()
    with pytest.raises(SimCLRError, match="in use by another simclr run"):
        lock_folder(tmp_path)
    held.close()


def test_a_full_disk_while_taking_the_lock_is_one_line(tmp_path, monkeypatch):
    """The holder's line cannot be written: one line, and the lock is let go."""
    import errno

    import pytest

    from simclr import files
    from simclr.errors import SimCLRError

    real_open = open

    class FullDisk:
        def __init__(self, *args, **kwargs):
            self.file = real_open(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "open", FullDisk, raising=False)
    with pytest.raises(SimCLRError) as info:
        files.lock_folder(tmp_path)
    assert str(info.value) == f"cannot write in {tmp_path}: No space left on device"
    monkeypatch.undo()
    files.lock_folder(tmp_path).close()  # not held by the failed attempt


def test_a_leftover_temporary_linked_to_another_file_is_never_written_through(tmp_path):
    """A save killed between linking last.pt's temporary name to a periodic checkpoint
    and renaming it leaves that name as a second name of the checkpoint; the next write
    of the same name (the same pid) must not change the checkpoint's bytes."""
    periodic, target = tmp_path / "ckpt-00000012.pt", tmp_path / "last.pt"
    periodic.write_bytes(b"step 12")
    os.link(periodic, temporary_name(target))
    write_atomically(target, lambda tmp: tmp.write_bytes(b"step 13"))
    assert periodic.read_bytes() == b"step 12" and target.read_bytes() == b"step 13"
    assert not temporary_name(target).exists()


def test_the_file_is_made_durable_before_the_rename_and_the_rename_after(tmp_path,
                                                                         monkeypatch):
    """fsync of the temporary file, os.replace, then fsync of the folder: a crash never
    leaves the new name on bytes that were not on the disk."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out" / "summary.json"
    write_atomically(target, lambda tmp: tmp.write_text("{}"))
    file, folder = target.stat().st_ino, target.parent.stat().st_ino
    assert events == [("fsync", file), ("replace", file), ("fsync", folder)]


def _another_process_writes(target):
    """A ``write`` that, once its own bytes are out, sees ``target`` written meanwhile
    (as by a second command that checked the same free name at its start)."""
    def write(tmp):
        tmp.write_text("this one's")
        target.write_text("the other process's")
    return write


@pytest.mark.parametrize("links", [True, False], ids=["hard_links", "no_hard_links"])
def test_a_result_written_meanwhile_by_another_process_is_kept(tmp_path, monkeypatch, links):
    """Without --overwrite a result is published only where its name is free: one that
    another process wrote between the command's check and its rename is kept, and the
    command refused in one line naming it and --overwrite. Where the file system has no
    hard links (EPERM from some FUSE or SMB mounts) the check is made just before the
    rename; the write still goes through where the name is free."""
    if not links:
        def no_links(src, dst):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "knn.json"
    with pytest.raises(SimCLRError) as info:
        written(target, _another_process_writes(target), replace=False)
    assert str(info.value) == (f"{target} was written meanwhile by another process (kept; "
                               "this run's was not written): choose another --out, or pass "
                               "--overwrite to replace it")
    assert [p.name for p in tmp_path.iterdir()] == ["knn.json"]  # (no temporary left)
    assert target.read_text() == "the other process's"
    fresh = tmp_path / "fresh.json"
    written(fresh, lambda tmp: tmp.write_text("new"), replace=False)
    assert fresh.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "fresh.json", "knn.json"]
    written(target, _another_process_writes(target))  # --overwrite: replaced, as before
    assert target.read_text() == "this one's"


def _sweep_table(folder):
    from simclr.sweep import _write_summary
    from simclr.sweep_grid import parse_axis, plan_cells

    axes = [parse_axis("temperature=0.1,0.5")]
    _write_summary(folder, axes, plan_cells(axes, folder))


def _subset_list(folder):
    from simclr.subsets import write_subset_list

    class Source:
        paths = [f"/data/{i}.jpg" for i in range(6)]

    write_subset_list(Source(), np.array([1, 4]), folder / "labeled_subset.txt")


def _config_yaml(folder):
    from simclr.config_file import save_yaml

    save_yaml({"epochs": 2}, folder / "config.yaml")


@pytest.mark.parametrize("write,name", [
    (_config_yaml, "config.yaml"),
    (lambda folder: write_json(folder / "summary.json", {"steps": 2}), "summary.json"),
    (_sweep_table, "sweep.md"),
    (_subset_list, "labeled_subset.txt"),
], ids=["save_yaml", "write_json", "sweep_table", "subset_list"])
def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, write,
                                                             name):
    previous = {n: f"the earlier {n}".encode() for n in (name, "sweep.json")}
    for n, data in previous.items():
        (tmp_path / n).write_bytes(data)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(SimCLRError) as info:
        write(tmp_path)
    assert str(info.value) == f"could not write {tmp_path / name}: No space left on device"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == previous



def _text_mode(call: ast.Call, mode_at: int) -> bool:
    """Whether an ``open`` call opens its file as text (its mode, where written out,
    has no "b")."""
    mode = next((k.value for k in call.keywords if k.arg == "mode"),
                call.args[mode_at] if len(call.args) > mode_at else None)
    return not (isinstance(mode, ast.Constant) and "b" in str(mode.value))


def test_every_text_file_simclr_opens_is_utf8():
    """A text file opened without an encoding takes the locale's (cp1252 on Windows): a
    path or class name such as 日本 failed the write of a CSV or subset list after all
    the work, and a UTF-8 file another tool wrote was misread. Every open, read_text and
    write_text in text mode names its encoding."""
    unnamed = []
    # (the package imported, wherever it lies: an installed wheel has no source tree here)
    sources = sorted(Path(simclr.__file__).parent.glob("*.py"))
    assert len(sources) > 40, "the package's modules were not found"
    for source in sources:
        for call in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(call, ast.Call) or \
                    any(k.arg == "encoding" for k in call.keywords):
                continue
            func = call.func
            if isinstance(func, ast.Name) and func.id == "open":
                text = _text_mode(call, 1)
            elif isinstance(func, ast.Attribute) and func.attr == "open":  # Path.open
                module = isinstance(func.value, ast.Name) and func.value.id in ("os", "Image")
                text = not module and _text_mode(call, 0)
            else:
                text = isinstance(func, ast.Attribute) and \
                    func.attr in ("read_text", "write_text")
            if text:
                unnamed.append(f"{source.name}:{call.lineno}")
    assert unnamed == []


def test_infinite_numbers_are_written_as_null_as_nan_is(tmp_path):
    """A loss that overflowed (inf) must not end the run writing its results: JSON has
    no Infinity, which other readers refuse as they refuse NaN."""
    path = write_json(tmp_path / "r.json", {"loss": float("inf"), "nan": float("nan"),
                                           "losses": [float("-inf"), 1.5]})
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "loss": None, "nan": None, "losses": [None, 1.5]}
    pair = write_json(tmp_path / "t.json", {"range": (float("inf"), 2.0)})  # a tuple too
    assert json.loads(pair.read_text(encoding="utf-8")) == {"range": [None, 2.0]}


def test_files_set_aside_together_share_the_first_number_free_for_all(tmp_path):
    """b.previous-1.json is an earlier session's: a.json goes to a.previous-2.json, so
    that a.previous-1.json and b.previous-1.json are never two sessions' files paired."""
    (tmp_path / "a.json").write_text("a now", encoding="utf-8")
    (tmp_path / "b.previous-1.json").write_text("b then", encoding="utf-8")
    assert str(set_aside(tmp_path, ("a.json", "b.json"))) == "a.previous-2.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.previous-2.json",
                                                         "b.previous-1.json"]
    assert (tmp_path / "a.previous-2.json").read_text(encoding="utf-8") == "a now"


def test_set_aside_says_what_it_renamed_as_data_not_as_a_note_to_parse(tmp_path):
    """set_aside returned the note 'a.previous-1.json, b.previous-1.json', which
    sweep_command parsed back for the K its results file's figure was renamed with: it
    returns the tag and the new names, and the note is written of them where it is
    printed. Nothing there: None."""
    from simclr.files import tagged

    for name in ("a.json", "b.png"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    kept = set_aside(tmp_path, ("a.json", "c.txt", "b.png"))
    assert kept is not None and kept.tag == "previous-1"
    assert kept.names == ("a.previous-1.json", "b.previous-1.png")  # (c.txt: none there)
    assert str(kept) == "a.previous-1.json, b.previous-1.png"
    assert tagged(Path("x/knn.json"), kept.tag) == Path("x/knn.previous-1.json")
    assert tagged(Path("knn.json"), None) == Path("knn.json")
    assert set_aside(tmp_path, ("a.json",)) is None


class FakeMsvcrt:
    """msvcrt's byte-range locks, as Windows keeps them: one holder per byte of a file,
    another handle's attempt refused (EACCES) at once; released on unlock or when the
    holding handle is closed (a closed fd's lock is dropped when next asked about)."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def __init__(self):
        self.held: dict[tuple[int, int, int], int] = {}  # (device, inode, byte) -> fd
        self.bytes_locked: list[int] = []

    def locking(self, fd, mode, nbytes):
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        owner = self.held.get(key)
        if owner is not None and owner != fd:
            try:
                still = os.fstat(owner)
                if (still.st_dev, still.st_ino) != key[:2]:
                    owner = None
            except OSError:  # closed: Windows let its locks go
                owner = None
        if mode == self.LK_UNLCK:
            self.held.pop(key, None)
        elif owner is not None and owner != fd:
            raise PermissionError(errno.EACCES, "Permission denied")
        else:
            self.held[key] = fd
            self.bytes_locked.append(key[2])


def test_a_folder_is_held_on_windows_through_msvcrt(tmp_path, monkeypatch):
    """Windows has no fcntl: a run's folder was not held at all there, and a second run
    wrote into it meanwhile. msvcrt's byte lock holds it, refused in the same one line,
    the holder's line still readable (the byte locked lies past it)."""
    from simclr import files

    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl: ImportError
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    held = files.lock_folder(tmp_path)
    assert held is not None and fake.held
    holder = f"pid {os.getpid()} on"
    assert files.folder_holder(tmp_path).startswith(holder)
    with pytest.raises(SimCLRError, match=f"is in use by another simclr run \\({holder}"):
        files.lock_folder(tmp_path)
    lock_text = (tmp_path / files.LOCK_NAME).read_text(encoding="utf-8")
    assert min(fake.bytes_locked) >= len(lock_text.encode())  # readable by others
    held.close()
    assert files.folder_holder(tmp_path) is None  # let go with its handle
    files.lock_folder(tmp_path).close()


def test_a_results_file_nested_deep_reads_as_damaged(tmp_path):
    """summary.json of `[[[[...` 200,000 deep: json's RecursionError was a traceback
    (`simclr info RUN`); such a file is read as any damaged one: absent."""
    from simclr.files import read_json

    path = tmp_path / "summary.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    assert read_json(path) is None


def test_a_write_interrupted_by_ctrl_c_leaves_the_earlier_file_and_no_debris(tmp_path):
    """A Ctrl-C (or SIGTERM, a KeyboardInterrupt too) while the file is written is no
    Exception, yet its temporary file is removed as a failure's is, and it propagates."""
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"earlier")

    def interrupted(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert target.read_bytes() == b"earlier"


@pytest.mark.parametrize("text", ['[1, 2]', '"done"', '3', 'null', '{"steps": 2', ''])
def test_a_results_file_that_is_no_json_object_reads_as_absent(tmp_path, text):
    """A summary that is a list, a string, a number, cut short or empty is treated as
    absent (callers index it as an object); an object reads as itself."""
    from simclr.files import read_json

    (tmp_path / "summary.json").write_text(text, encoding="utf-8")
    assert read_json(tmp_path / "summary.json") is None
    (tmp_path / "summary.json").write_text('{"steps": 2}', encoding="utf-8")
    assert read_json(tmp_path / "summary.json") == {"steps": 2}
    assert read_json(tmp_path / "missing.json") is None


def test_a_temporary_of_another_users_live_process_is_never_removed(tmp_path, monkeypatch):
    """Signal 0 to another user's process is refused (EPERM): it runs, and its write's
    temporary file is kept however old."""
    def not_yours(pid, sig):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    leftover = tmp_path / "a.pt.tmp-abcd1234-4242"
    leftover.write_text("x")
    _age(leftover, 2 * STALE_AFTER_S)
    monkeypatch.setattr(os, "kill", not_yours)
    assert remove_stale_temporaries(tmp_path, "*.pt.tmp-*") == [] and leftover.exists()


def test_a_runs_holder_line_replaces_a_longer_earlier_one(tmp_path):
    """The lock file a longer-named host's run left is rewritten whole: the holder a
    refused run names is this one, with nothing of the earlier line after it."""
    import socket

    from simclr.files import LOCK_NAME, lock_folder

    (tmp_path / LOCK_NAME).write_text("pid 4000000000 on " + "h" * 200 + "\n", encoding="utf-8")
    lock_folder(tmp_path).close()
    assert (tmp_path / LOCK_NAME).read_text(encoding="utf-8") == \
        f"pid {os.getpid()} on {socket.gethostname()}\n"


def test_on_windows_a_glance_waits_for_another_glance_to_let_go(tmp_path, monkeypatch):
    """msvcrt has no shared lock: two `simclr info` asking at once hold the byte in
    turn, and the second, refused a moment, is not told that a run holds the folder."""
    from simclr import files

    files.lock_folder(tmp_path).close()
    refusals = {"left": 1}

    def busy_once(fd, exclusive):
        if refusals["left"]:
            refusals["left"] -= 1
            raise BlockingIOError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files, "_exclusive_only", lambda: True)
    monkeypatch.setattr(files, "_lock", busy_once)
    monkeypatch.setattr(files, "_unlock", lambda fd: None)
    assert files.folder_holder(tmp_path) is None and refusals["left"] == 0


def test_a_folder_that_cannot_hold_a_lock_file_is_one_line_naming_it(tmp_path):
    """The lock file cannot be opened (no such folder, no permission): one line naming
    the folder and why, not a traceback."""
    from simclr.files import lock_folder

    with pytest.raises(SimCLRError, match=f"^cannot write in {tmp_path / 'gone'}: No such file"):
        lock_folder(tmp_path / "gone")


def test_a_file_system_without_locks_runs_unguarded(tmp_path, monkeypatch):
    """flock refused as unsupported (some network mounts: ENOLCK) is no reason to stop a
    run: it goes on holding the file open, unguarded."""
    from simclr import files

    def no_locks(fd, exclusive):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files, "_lock", no_locks)
    held = files.lock_folder(tmp_path)
    assert held is not None and not held.closed
    held.close()


def test_on_windows_a_lock_refused_as_a_deadlock_is_a_folder_in_use(tmp_path, monkeypatch):
    """msvcrt refuses a byte held by another handle with EACCES or EDEADLOCK: either is
    the folder in use, said in one line."""
    from simclr import files

    class Deadlocking(FakeMsvcrt):
        def locking(self, fd, mode, nbytes):
            if self.held and mode != self.LK_UNLCK:
                raise OSError(errno.EDEADLOCK, "Resource deadlock avoided")
            super().locking(fd, mode, nbytes)

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", Deadlocking())
    held = files.lock_folder(tmp_path)
    with pytest.raises(SimCLRError, match="is in use by another simclr run"):
        files.lock_folder(tmp_path)
    held.close()
