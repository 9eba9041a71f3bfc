"""Tests for simclr.checkpoint: atomic writes, pruning, hard-linked copies, and the
checkpoint a run resumes from (its latest complete file)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from simclr import checkpoint as ck
from simclr.checkpoint import latest_checkpoint, periodic_name, save_checkpoint
from simclr.checkpoint_read import checkpoint_file, load_checkpoint
from simclr.errors import SimCLRError
from simclr.resume_target import resume_checkpoint


def _state(step: int) -> dict:
    return {
        "format": "simclr-checkpoint", "version": 1, "step": step, "epoch": 0,
        "config": {"model": {"arch": "resnet18", "width": 0.5}},
        "model": {"w": torch.full((3, 2), float(step)), "b": torch.arange(4)},
        "rng": {"torch": torch.get_rng_state()}, "metrics": {"loss": 1.5}, "elapsed": 2.0,
        "optimizer": {"state": {}}, "scaler": {}, "total_steps": 10, "warmup_steps": 1,
    }


def test_round_trip_and_latest(tmp_path):
    path = save_checkpoint(_state(7), tmp_path / "run")
    assert path == tmp_path / "run" / "last.pt"
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.full((3, 2), 7.0))
    assert latest_checkpoint(tmp_path / "run") == path
    assert load_checkpoint(tmp_path / "run")["step"] == 7  # a checkpoint folder works too
    save_checkpoint(_state(9), tmp_path / "out" / "checkpoints")
    assert load_checkpoint(tmp_path / "out")["step"] == 9  # and a pretraining run's --out
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]  # no tmp left
    assert loaded["file"] == str(path)  # for later messages; a re-save does not keep it
    resaved = save_checkpoint(loaded, tmp_path / "copy")
    assert "file" not in torch.load(resaved, weights_only=True)


@pytest.mark.parametrize("fail_in", ["torch.save", "os.replace"])
def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_in):
    previous = save_checkpoint(_state(1), tmp_path)
    before = previous.read_bytes()
    real_save = torch.save

    def full_disk_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # half-written bytes are already in the tmp file
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_in == "torch.save":
        monkeypatch.setattr(ck.torch, "save", full_disk_save)
    else:
        monkeypatch.setattr(ck.os, "replace", full_disk_replace)
    with pytest.raises(SimCLRError) as info:
        save_checkpoint(_state(2), tmp_path)
    message = str(info.value)
    assert "No space left on device" in message
    assert f"the previous checkpoint {previous} is intact" in message
    assert previous.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    monkeypatch.undo()
    assert load_checkpoint(previous)["step"] == 1


def test_a_failed_save_names_the_checkpoint_a_resume_would_use(tmp_path, monkeypatch):
    """A resumed run's final last.pt failing (disk full) named the old last.pt (step 3)
    'the previous checkpoint', where a resume takes its later ckpt-8."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(_state(3), folder)
    newer = save_checkpoint(_state(8), folder, periodic_name(8), keep_last=2)
    linear = save_checkpoint(_state(1), tmp_path / "eval/checkpoints", "linear.pt")

    def full_disk_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "replace", full_disk_replace)
    with pytest.raises(SimCLRError, match=f"; the previous checkpoint {newer} is intact$"):
        save_checkpoint(_state(10), folder)
    # (a file of no run's, e.g. an evaluation's classifier: that file, as before)
    with pytest.raises(SimCLRError, match=f"; the previous checkpoint {linear} is intact$"):
        save_checkpoint(_state(2), linear.parent, "linear.pt")


def test_failed_first_save_says_there_is_no_earlier_checkpoint(tmp_path, monkeypatch):
    def full_disk_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "replace", full_disk_replace)
    with pytest.raises(SimCLRError, match="no earlier checkpoint exists"):
        save_checkpoint(_state(2), tmp_path / "checkpoints", periodic_name(2))
    assert not (tmp_path / "checkpoints").exists()  # (made by the save: removed, empty)
    with pytest.raises(SimCLRError, match="encoder.pt: No space left on device; nothing was "
                                          "written$"):  # an export: no run there
        save_checkpoint(_state(2), tmp_path / "exports", "encoder.pt")


class _SignalledWriter:
    """A checkpoint's temporary file whose second write receives ``interruption``, as a
    signal handler raises it inside the file write that torch's C++ zip writer calls."""

    def __init__(self, file, interruption: BaseException) -> None:
        self.file, self.interruption, self.writes = file, interruption, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes == 2:
            raise self.interruption
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


@pytest.mark.parametrize("interruption", ["Ctrl-C", "SIGTERM"])
@pytest.mark.parametrize("writer", ["checkpoint", "export"])
def test_a_signal_inside_torch_saves_write_stays_an_interruption(tmp_path, monkeypatch,
                                                                 interruption, writer):
    """torch turned a KeyboardInterrupt (a second Ctrl-C, SIGTERM's interrupts.Terminated) raised
    in its file write into a RuntimeError, which was reported as a failed write ('could
    not write checkpoint ...; no earlier checkpoint exists', exit 2, the run FAILED). It is
    the interruption, with the temporary file removed and the earlier file whole."""
    import builtins

    from simclr import files
    from simclr.interrupts import Terminated

    folder = tmp_path / "checkpoints"
    earlier = save_checkpoint(_state(1), folder)
    before = earlier.read_bytes()
    raised = KeyboardInterrupt() if interruption == "Ctrl-C" else Terminated()

    def signalled_open(path, mode="r", *args, **kwargs):
        file = builtins.open(path, mode, *args, **kwargs)
        return _SignalledWriter(file, raised) if mode == "wb" else file

    monkeypatch.setattr(files, "open", signalled_open, raising=False)
    with pytest.raises(KeyboardInterrupt) as info:
        if writer == "checkpoint":
            save_checkpoint(_state(2), folder, periodic_name(2))
        else:  # (simclr export's write of an encoder)
            files.written(tmp_path / "checkpoints" / "encoder.pt",
                          lambda tmp: files.torch_save(_state(2), tmp))
    assert info.value is raised
    assert [p.name for p in folder.iterdir()] == ["last.pt"]  # no temporary file left
    assert earlier.read_bytes() == before


def test_a_signal_while_a_checkpoint_is_compared_stays_an_interruption(tmp_path, monkeypatch):
    """Before last.pt is linked to its step's periodic checkpoint, torch.save writes the
    payload into a comparison with that file: an interruption raised there was taken
    for a difference (the save went on as if Ctrl-C had not been pressed)."""
    payload = {**_state(3), "kind": "pretrain"}
    path = save_checkpoint(payload, tmp_path, periodic_name(3))

    compare, writes = ck._Comparison.write, []

    def pressed_at_the_second(self, data):  # (torch raises an error of the first as is)
        writes.append(data)
        if len(writes) == 2:
            raise KeyboardInterrupt
        return compare(self, data)

    monkeypatch.setattr(ck._Comparison, "write", pressed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        ck.holds_bytes_of(path, payload)


def test_keep_last_prunes_old_periodic_checkpoints(tmp_path):
    save_checkpoint(_state(0), tmp_path, "last.pt")
    for step in (100, 200, 300, 1000):
        save_checkpoint(_state(step), tmp_path, periodic_name(step), keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt-00000300.pt", "ckpt-00001000.pt", "last.pt"]
    save_checkpoint(_state(2000), tmp_path, periodic_name(2000), keep_last=None)
    assert len(list(tmp_path.glob("ckpt-*.pt"))) == 3
    # by step, not by name: an unpadded name (older runs wrote ckpt-<step>.pt) counts too
    save_checkpoint(_state(3000), tmp_path, "ckpt-3000.pt", keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == [
        "ckpt-00002000.pt", "ckpt-3000.pt"]


def test_checkpoints_of_later_steps_than_the_one_written_are_not_counted(tmp_path):
    """A run resumed from ckpt-3 past a truncated ckpt-6 (the resume says so and goes on)
    counted ckpt-6 among its --keep-checkpoints 1: each new checkpoint was deleted as it
    was written, and a kill then left nothing newer than the start to resume from.
    Later steps' files (the resumed run's stale future, rewritten when it gets there)
    are left out of the count, and kept."""
    for step in (3, 6):
        save_checkpoint(_state(step), tmp_path, periodic_name(step), keep_last=2)
    stale = tmp_path / periodic_name(6)
    stale.write_bytes(stale.read_bytes()[:100])  # (truncated)
    save_checkpoint(_state(4), tmp_path, periodic_name(4), keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        periodic_name(4), periodic_name(6)]
    assert latest_checkpoint(tmp_path) == tmp_path / periodic_name(4)
    save_checkpoint(_state(5), tmp_path, periodic_name(5), keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        periodic_name(5), periodic_name(6)]
    save_checkpoint(_state(6), tmp_path, periodic_name(6), keep_last=1)  # (got there)
    assert sorted(p.name for p in tmp_path.iterdir()) == [periodic_name(6)]
    assert load_checkpoint(stale)["step"] == 6


def test_the_final_last_pt_shares_the_bytes_of_its_steps_periodic_checkpoint(tmp_path):
    """A run's final step saves ckpt-<step>.pt, then last.pt of the same state: one copy
    on disk (a hard link), which every reader and a later save or pruning keep right."""
    folder = tmp_path / "checkpoints"
    state = {**_state(4), "kind": "pretrain"}
    periodic = save_checkpoint(state, folder, periodic_name(4))
    last = save_checkpoint(state, folder)
    assert last.samefile(periodic) and last.stat().st_nlink == 2
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-00000004.pt", "last.pt"]
    assert latest_checkpoint(folder) == last and load_checkpoint(last)["step"] == 4
    assert resume_checkpoint(periodic, entries=())[1] == last  # the same file: accepted
    assert save_checkpoint(state, folder) == last and last.samefile(periodic)  # again: same
    # A pruned periodic name leaves last.pt whole; a new last.pt leaves ckpt-4 whole.
    save_checkpoint(_state(6), folder, periodic_name(6), keep_last=1)
    assert not periodic.exists() and load_checkpoint(last)["step"] == 4
    periodic = save_checkpoint(_state(8), folder, periodic_name(8), keep_last=2)
    other = {**_state(8), "elapsed": 3.0}  # the same step, other bytes: its own file
    save_checkpoint(other, folder)
    assert not last.samefile(periodic) and last.stat().st_nlink == 1
    assert (load_checkpoint(last)["elapsed"], load_checkpoint(periodic)["elapsed"]) == (3.0, 2.0)


def test_without_hard_links_last_pt_is_written_whole(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(ck.os, "link", no_links)
    periodic = save_checkpoint(_state(4), tmp_path, periodic_name(4))
    last = save_checkpoint(_state(4), tmp_path)
    assert not last.samefile(periodic) and last.read_bytes() == periodic.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000004.pt", "last.pt"]


def test_latest_skips_partial_and_truncated_files(tmp_path):
    save_checkpoint(_state(100), tmp_path, periodic_name(100))
    good = save_checkpoint(_state(200), tmp_path, periodic_name(200))
    data = good.read_bytes()
    (tmp_path / periodic_name(300)).write_bytes(data[: len(data) // 2])  # cut short
    (tmp_path / f"{periodic_name(400)}.tmp-123").write_bytes(data)  # interrupted save
    assert latest_checkpoint(tmp_path) == good
    (tmp_path / "last.pt").write_bytes(data[:-50])  # a truncated last.pt is not chosen
    assert latest_checkpoint(tmp_path) == good
    assert latest_checkpoint(tmp_path / "missing") is None


def test_latest_prefers_last_unless_a_periodic_one_is_of_a_later_step(tmp_path):
    """Steps decide, not modification times: a copy of the folder (cp -r, a sync) that
    left an older periodic checkpoint the newest file still resumes from last.pt."""
    periodic = save_checkpoint(_state(100), tmp_path, periodic_name(100))
    last = save_checkpoint(_state(150), tmp_path)
    os.utime(periodic, ns=(10**18, 10**18))  # as a copy may leave it: newer than last.pt
    assert latest_checkpoint(tmp_path) == last
    later = save_checkpoint(_state(200), tmp_path, periodic_name(200))  # then killed
    os.utime(later, ns=(1, 1))
    assert latest_checkpoint(tmp_path) == later
    same = save_checkpoint(_state(150), tmp_path, periodic_name(150))  # last.pt's step
    later.unlink()
    assert latest_checkpoint(tmp_path) == last and same.exists()


def _run(root, kind="pretrain", name="last.pt", step=5):
    """A run directory whose checkpoints folder holds one checkpoint of ``kind``."""
    return save_checkpoint({**_state(step), "kind": kind}, root / "checkpoints", name)


def test_resume_takes_a_run_its_checkpoints_folder_or_its_latest_file(tmp_path):
    run = tmp_path / "run"
    older = _run(run, name=periodic_name(4), step=4)
    last = _run(run)
    os.utime(older, ns=(1, 1))
    for target in (run, run / "checkpoints", last):
        run_dir, path, ckpt = resume_checkpoint(target)
        assert (run_dir, path, ckpt["step"]) == (run, last, 5)
    # An older file would silently continue from last.pt: refused, naming both.
    with pytest.raises(SimCLRError, match=r"latest checkpoint \(last.pt\); pass the run "
                                          f"directory {run}$"):
        resume_checkpoint(older)
    loose = tmp_path / "copy.pt"
    loose.write_bytes(last.read_bytes())
    with pytest.raises(SimCLRError, match="not in a run's checkpoints folder"):
        resume_checkpoint(loose)


@pytest.mark.parametrize(("kind", "name"), [("supervised", "last.pt"), ("linear", "linear.pt"),
                                            ("finetune", "finetune.pt")])
def test_resume_names_the_kind_of_a_run_that_is_not_pretraining(tmp_path, kind, name):
    saved = _run(tmp_path / "run", kind=kind, name=name)
    run = tmp_path / "run"
    for target in (run, saved):
        with pytest.raises(SimCLRError) as info:
            resume_checkpoint(target)
        if kind == "supervised":  # a run that resumes too, with its own command
            expected = (f"{run} is a supervised run (its checkpoint {name}); continue it "
                        f"with `simclr supervised --resume {run}`")
        else:
            expected = (f"{run} is not a pretraining run (its checkpoint {name} is a {kind} "
                        "checkpoint); only pretraining and supervised runs can be resumed")
        assert str(info.value) == f"--resume {target}: {expected}"


def test_resume_reports_a_corrupt_checkpoint_and_falls_back_past_a_truncated_one(tmp_path,
                                                                                    caplog):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.pt").write_text("hello\n")
    with pytest.raises(SimCLRError, match="last.pt in .* is truncated or corrupt; no complete"):
        resume_checkpoint(tmp_path / "run")
    periodic = _run(tmp_path / "run", name=periodic_name(4), step=4)
    data = periodic.read_bytes()
    (folder / "last.pt").write_bytes(data[: len(data) // 2])  # a save cut short
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(tmp_path / "run")[1] == periodic  # the earlier continues
    assert f"{folder}: last.pt truncated or corrupt; resuming from ckpt-00000004.pt " \
        "(step 4)" in caplog.text  # said: the run goes back further than the user may think
    # Said whatever the files' times (a copy that did not keep them): it was said only
    # for files modified after the one resumed from
    os.utime(folder / "last.pt", (0, 0))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(tmp_path / "run")[1] == periodic
        assert resume_checkpoint(tmp_path / "run", quiet=True)[1] == periodic
    assert caplog.text.count("last.pt truncated or corrupt; resuming from") == 1
    with pytest.raises(SimCLRError, match="no checkpoint found: .*missing does not exist"):
        resume_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimCLRError, match="no checkpoint found in .*empty/checkpoints$"):
        resume_checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "sweep.json").write_text("[]")  # a sweep's folder: its cells
    with pytest.raises(SimCLRError, match=r"empty is a sweep, not a run: rerun the `simclr "
                                          r"sweep` command that made it to continue its "
                                          r"cells, or --resume one cell's folder \(.*/empty/"
                                          r"CELL\)$"):
        resume_checkpoint(tmp_path / "empty")


@pytest.mark.parametrize(("code", "reason"), [(errno.EACCES, "Permission denied"),
                                               (errno.EIO, "Input/output error")])
def test_a_checkpoint_that_cannot_be_read_is_not_passed_over_as_corrupt(tmp_path, monkeypatch,
                                                                      caplog, code, reason):
    """A last.pt without read permission (or on a failing disk) read as truncated: the
    run resumed from step 4 and its next save replaced the intact step-6 last.pt, and
    knn or linear-eval used the earlier weights. Nothing is read past it now."""
    import zipfile

    _run(tmp_path / "run", name=periodic_name(4), step=4)
    last = _run(tmp_path / "run", step=6)
    opened, refused = zipfile.ZipFile, [last]

    def unreadable(file, *args, **kwargs):  # (as root, chmod 000 would not bite)
        if Path(file) in refused:
            raise OSError(code, reason, str(file))
        return opened(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", unreadable)
    expected = f"cannot read checkpoint {last}: {reason}"
    with caplog.at_level("WARNING"):
        for read, given in ((resume_checkpoint, tmp_path / "run"),
                            (checkpoint_file, tmp_path / "run"),  # (knn, linear-eval, ...)
                            (latest_checkpoint, last.parent)):
            with pytest.raises(SimCLRError) as info:
                read(given)
            assert str(info.value) == expected
    assert "corrupt" not in caplog.text
    # An older one that cannot be read stops nothing: the newest complete one is used
    older = _run(tmp_path / "run", name=periodic_name(2), step=2)
    refused[:] = [older]
    assert latest_checkpoint(last.parent) == last
    assert checkpoint_file(tmp_path / "run") == last
    (last.parent / periodic_name(8)).mkdir()  # a folder of that name is no file to read
    assert not ck.is_complete(last.parent / periodic_name(8))


def _entry_start(path, suffix: str) -> int:
    """Where the bytes of ``path``'s zip entry ending in ``suffix`` begin."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    raw = path.read_bytes()
    extra = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    return info.header_offset + 30 + len(info.filename.encode()) + extra


def test_a_checkpoint_whole_but_damaged_inside_falls_back_as_a_truncated_one(tmp_path,
                                                                           caplog):
    """A last.pt whose archive is whole but whose pickle is overwritten: the run could
    not resume ('cannot read ... last.pt') though an earlier checkpoint was intact, and
    `simclr info` offered --resume. Unless named by the user, who gets its error. Of
    the intact ones the newest is taken (step 4), not the oldest (step 2)."""
    _run(tmp_path / "run", name=periodic_name(2), step=2)
    periodic = _run(tmp_path / "run", name=periodic_name(4), step=4)
    last = _run(tmp_path / "run", step=6)
    raw = bytearray(last.read_bytes())
    start = _entry_start(last, "data.pkl")
    raw[start + 2:start + 42] = b"\xff" * 40
    last.write_bytes(bytes(raw))
    assert ck.is_complete(last)  # (the structure is whole: only loading tells)
    with caplog.at_level("WARNING"):
        run, path, ckpt = resume_checkpoint(tmp_path / "run")
    assert path == periodic and ckpt["step"] == 4
    assert "last.pt truncated or corrupt; resuming from ckpt-00000004.pt (step 4)" in caplog.text
    with pytest.raises(SimCLRError, match="cannot read checkpoint .*last.pt"):
        resume_checkpoint(last)


def test_resuming_a_run_without_a_checkpoint_says_why(tmp_path):
    """A run still before its first save, or one stopped before it: not 'no checkpoint
    found' but which of the two, and for the stopped one the command that starts it."""
    import yaml

    from simclr.files import lock_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    argv = ["/venv/bin/simclr", "pretrain", "--data", "my images", "--out", str(run)]
    (run / "config.yaml").write_text(yaml.safe_dump({"provenance": {"argv": argv}}))
    held = lock_folder(run)
    try:
        with pytest.raises(SimCLRError, match=rf"^--resume {run}: the run in {run} is still "
                                              r"running \(pid \d+ on .*\) and has saved no "
                                              "checkpoint yet$"):
            resume_checkpoint(run)
    finally:
        held.close()
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(run)
    assert str(info.value) == (
        f"--resume {run}: the run in {run} stopped before its first checkpoint, so there is "
        "nothing to continue; start it again with the command that started it: `simclr "
        f"pretrain --data 'my images' --out {run}`")


@pytest.mark.parametrize("argv", [
    # a YAML alias bomb (a received folder's): 10**6 words, from a few hundred bytes
    "[simclr, pretrain, [&a0 [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)) + "]]",
    "[" * 5000 + "]" * 5000,  # nested past Python's recursion limit
])
def test_a_received_runs_damaged_command_is_not_offered_again(tmp_path, argv):
    """--resume of a run stopped before its first checkpoint offers the command that
    started it, read from config.yaml: an alias bomb there was printed expanded (a line
    of millions of words), a deep nesting ended in a RecursionError's traceback."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"provenance:\n  argv: {argv}\n")
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(run)
    assert str(info.value) == (
        f"--resume {run}: the run in {run} stopped before its first checkpoint, so there is "
        "nothing to continue; start it again with the command that started it")


def test_resume_refuses_a_checkpoint_without_what_the_run_needs(tmp_path):
    last = _run(tmp_path / "run")
    state = {k: v for k, v in torch.load(last, weights_only=True).items()
             if k not in ("optimizer", "warmup_steps")}
    torch.save(state, last)
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(tmp_path / "run")
    assert str(info.value) == (f'--resume {tmp_path / "run"}: {last} is not a complete simclr '
                               'checkpoint: it has no "optimizer" and "warmup_steps" entries')


def test_a_full_disk_during_torch_save_is_one_line_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch):
    """torch's zip writer turns a failed write (ENOSPC) into a RuntimeError, not an
    OSError: it is a user-facing error all the same."""
    save_checkpoint(_state(1), tmp_path)

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2")

    monkeypatch.setattr(ck.torch, "save", full)
    with pytest.raises(SimCLRError, match=r"^could not write checkpoint .*last.pt: \[enforce "
                                          r"fail .*; the previous checkpoint .* is intact$"):
        save_checkpoint(_state(2), tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_failed_write_inside_torch_save_is_said_in_the_os_words(tmp_path, monkeypatch):
    """torch's zip writer raises its own RuntimeError over the OSError of a write that
    failed (a file-size limit): the message said 'unexpected pos 980224 vs 980112' where
    the OS had said 'File too large'."""
    import builtins
    import errno

    from simclr import files

    save_checkpoint(_state(1), tmp_path)
    too_large = OSError(errno.EFBIG, "File too large")

    def limited_open(path, mode="r", *args, **kwargs):
        file = builtins.open(path, mode, *args, **kwargs)
        return _SignalledWriter(file, too_large) if mode == "wb" else file

    monkeypatch.setattr(files, "open", limited_open, raising=False)
    with pytest.raises(SimCLRError, match=r"^could not write checkpoint .*last.pt: File too "
                                          r"large; the previous checkpoint .* is intact$"):
        save_checkpoint(_state(2), tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_file_holds_a_payloads_bytes_only_if_it_ends_with_them(tmp_path):
    """last.pt is linked to a periodic checkpoint only when that file is the payload's
    bytes exactly: one with more after them (appended to, damaged) is not."""
    from simclr.files import torch_save

    payload = {**_state(3), "kind": "pretrain"}
    path = tmp_path / "ckpt.pt"
    torch_save(payload, path)
    assert ck.holds_bytes_of(path, payload)
    assert not ck.holds_bytes_of(path, {**payload, "step": 4})
    path.write_bytes(path.read_bytes() + b"\0")
    assert not ck.holds_bytes_of(path, payload)


def test_keep_last_prunes_only_after_a_periodic_save(tmp_path):
    """``keep_last`` applies to the write of a ckpt-<step>.pt: a last.pt saved with it
    deletes none of the periodic checkpoints."""
    for step in (1, 2, 3):
        save_checkpoint(_state(step), tmp_path, periodic_name(step))
    save_checkpoint(_state(4), tmp_path, keep_last=1)
    assert len(list(tmp_path.glob("ckpt-*.pt"))) == 3


def test_a_last_pt_linked_to_its_periodic_checkpoint_is_made_durable(tmp_path, monkeypatch):
    """The hard link renamed onto last.pt is a directory entry: the folder is fsynced
    after it, as after every checkpoint write, or a power cut could lose the new name."""
    synced = []
    periodic = save_checkpoint(_state(4), tmp_path, periodic_name(4))
    monkeypatch.setattr(ck, "fsync_dir", lambda folder: synced.append(Path(folder)))
    last = save_checkpoint(_state(4), tmp_path)
    assert last.samefile(periodic) and synced == [tmp_path]


def test_a_run_stopped_before_its_first_checkpoint_is_started_again_from_where_it_was(
        tmp_path, monkeypatch):
    """The command offered is the one typed, its paths maybe relative (`--data images`):
    from another folder it is offered with a cd to the folder it was typed in."""
    import shlex

    import yaml

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    typed_in = tmp_path / "typed here"
    typed_in.mkdir()
    argv = ["simclr", "pretrain", "--data", "images", "--out", "run"]
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"provenance": {"argv": argv, "cwd": str(typed_in)}}))
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(run)
    assert str(info.value).endswith(
        f"the command that started it: `cd {shlex.quote(str(typed_in))} && simclr pretrain "
        "--data images --out run`")
    monkeypatch.chdir(typed_in)  # typed here: as it was
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(run)
    assert str(info.value).endswith("`simclr pretrain --data images --out run`")


@pytest.mark.parametrize("path, expected", [
    ("run/checkpoints/last.pt", True), ("run/checkpoints/ckpt-00000005.pt", True),
    ("run/checkpoints/ckpt-5.pt", True), ("run/last.pt", False),
    ("run/checkpoints/linear.pt", False), ("run/checkpoints/ckpt-5.pt.tmp-1", False)])
def test_a_run_checkpoint_is_last_pt_or_a_periodic_one_in_a_checkpoints_folder(path, expected):
    """What ``--resume`` continues from (and what an export refuses to write over): an
    evaluation's or export's file of another name, or in another folder, is not one."""
    assert ck.is_run_checkpoint(path) is expected


def test_the_run_folder_of_a_resume_is_found_from_the_folder_its_checkpoints_or_a_file(
        tmp_path):
    run = tmp_path / "run"
    last = save_checkpoint(_state(1), run / "checkpoints")
    for given in (run, run / "checkpoints", last):
        assert ck.run_dir_of(given) == run


def test_a_folder_named_like_a_periodic_checkpoint_is_none(tmp_path):
    """Only files count: a folder ``ckpt-<step>.pt`` (or ``last.pt``) is neither resumed
    from, nor counted (or deleted) by pruning, nor among a run's checkpoint files."""
    (tmp_path / periodic_name(9)).mkdir()
    (tmp_path / "last.pt").mkdir()
    one = save_checkpoint(_state(1), tmp_path, periodic_name(1))
    assert ck.periodic_checkpoints(tmp_path) == [(1, one)]
    assert ck.checkpoint_files(tmp_path) == [one]
    assert latest_checkpoint(tmp_path) == one


@pytest.mark.parametrize("name", ["", "sub/last.pt", ".last.pt"])
def test_a_checkpoint_name_must_be_a_plain_visible_file_name(tmp_path, name):
    with pytest.raises(ValueError, match="plain file name"):
        save_checkpoint(_state(1), tmp_path, name)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_last_pt_another_process_wrote_is_kept_even_with_the_same_steps_bytes(tmp_path):
    """``replace=False`` refuses a file written meanwhile; that a periodic checkpoint
    holds this save's bytes does not make it link last.pt over the other one."""
    save_checkpoint(_state(4), tmp_path, periodic_name(4))
    theirs = save_checkpoint({**_state(4), "elapsed": 9.0}, tmp_path)
    before = theirs.read_bytes()
    with pytest.raises(SimCLRError, match="written meanwhile by another process"):
        save_checkpoint(_state(4), tmp_path, replace=False)
    assert theirs.read_bytes() == before and theirs.stat().st_nlink == 1


def test_saving_the_linked_last_pt_again_leaves_no_temporary_file(tmp_path):
    save_checkpoint(_state(4), tmp_path, periodic_name(4))
    for _ in range(2):
        save_checkpoint(_state(4), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000004.pt", "last.pt"]


def test_tuples_and_lists_in_a_checkpoint_come_back_as_written(tmp_path):
    state = {**_state(1), "sizes": (1, (2, 3)), "names": ["a", torch.ones(2)]}
    loaded = load_checkpoint(save_checkpoint(state, tmp_path))
    assert loaded["sizes"] == (1, (2, 3)) and isinstance(loaded["names"], list)


def test_keep_last_0_still_keeps_the_checkpoint_just_written(tmp_path):
    for step in (1, 2):
        save_checkpoint(_state(step), tmp_path, periodic_name(step), keep_last=0)
    assert [p.name for p in tmp_path.glob("ckpt-*.pt")] == [periodic_name(2)]
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 2


def test_an_old_checkpoint_that_cannot_be_deleted_is_a_warning_not_a_failed_save(
        tmp_path, monkeypatch, caplog):
    old = save_checkpoint(_state(1), tmp_path, periodic_name(1))
    real_unlink = Path.unlink

    def refuse(self, *args, **kwargs):
        if self == old:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    new = save_checkpoint(_state(2), tmp_path, periodic_name(2), keep_last=1)
    assert new.is_file() and old.is_file()
    assert "could not delete old checkpoint" in caplog.text and "Permission denied" in caplog.text


def test_a_zip_archive_without_a_pickle_is_no_complete_checkpoint(tmp_path):
    """A zip file named like a checkpoint (a download, a cut-off copy's rescue) is not
    resumed from: a torch checkpoint holds its ``data.pkl``."""
    import zipfile

    good = save_checkpoint(_state(1), tmp_path, periodic_name(1))
    with zipfile.ZipFile(tmp_path / periodic_name(2), "w") as archive:
        archive.writestr("archive/readme.txt", "no checkpoint")
    assert not ck.is_complete(tmp_path / periodic_name(2)) and ck.is_complete(good)
    assert latest_checkpoint(tmp_path) == good


def test_a_last_pt_of_unreadable_step_as_new_as_the_periodic_one_is_resumed_from(tmp_path):
    """A whole last.pt whose step cannot be read is placed by its modification time:
    older than the latest periodic checkpoint it is passed over, not older it is kept."""
    periodic = save_checkpoint(_state(5), tmp_path, periodic_name(5))
    no_step = {k: v for k, v in _state(7).items() if k != "step"}
    last = save_checkpoint(no_step, tmp_path)
    then = periodic.stat().st_mtime_ns
    os.utime(last, ns=(then, then))
    assert latest_checkpoint(tmp_path) == last
    os.utime(last, ns=(then - 10**9, then - 10**9))
    assert latest_checkpoint(tmp_path) == periodic


def test_periodic_checkpoints_are_ordered_by_step_whatever_their_names_width(tmp_path):
    """An older run's unpadded ckpt-900.pt sorts after ckpt-00001000.pt by name: by step,
    the run resumes from step 1000, not 900."""
    old = save_checkpoint(_state(900), tmp_path, "ckpt-900.pt")
    new = save_checkpoint(_state(1000), tmp_path, periodic_name(1000))
    assert ck.periodic_checkpoints(tmp_path) == [(900, old), (1000, new)]
    assert latest_checkpoint(tmp_path) == new


def test_a_saved_checkpoint_is_marked_with_the_format_and_version(tmp_path):
    """What any command writes (a classifier's state holds no marks of its own) is
    marked as simclr's checkpoint, so that a later read knows the file."""
    path = save_checkpoint({"config": {}, "model": {"w": torch.ones(1)}}, tmp_path, "linear.pt")
    saved = torch.load(path, weights_only=True)
    assert (saved["format"], saved["version"]) == (ck.FORMAT, ck.VERSION)


def test_a_failed_save_keeps_the_empty_folder_it_did_not_make(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()

    def full_disk_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "replace", full_disk_replace)
    with pytest.raises(SimCLRError, match="no earlier checkpoint exists"):
        save_checkpoint(_state(2), folder, periodic_name(2))
    assert folder.is_dir()


def test_a_save_collects_the_debris_of_a_killed_save(tmp_path):
    """A killed process's temporary file, of any checkpoint name, is deleted by the next
    save; one written a moment ago (a save maybe running elsewhere) is kept."""
    from simclr.files import STALE_AFTER_S

    debris = tmp_path / f"{periodic_name(3)}.tmp-99999999"
    recent = tmp_path / f"{periodic_name(2)}.tmp-99999998"
    for path in (debris, recent):
        path.write_bytes(b"half")
    then = debris.stat().st_mtime - 2 * STALE_AFTER_S
    os.utime(debris, (then, then))
    save_checkpoint(_state(4), tmp_path, periodic_name(4))
    assert not debris.exists() and recent.exists()
