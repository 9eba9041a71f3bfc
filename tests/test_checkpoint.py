"""Tests for simclr.checkpoint: atomic writes, pruning, safe loading, architecture checks."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch

from simclr import checkpoint as ck
from simclr.checkpoint import (
    checkpoint_file,
    latest_checkpoint,
    load_checkpoint,
    periodic_name,
    save_checkpoint,
)
from simclr.errors import SimCLRError
from simclr.rundir import resume_checkpoint


def _state(step: int) -> dict:
    return {
        "format": "simclr-checkpoint", "version": 1, "step": step, "epoch": 0,
        "config": {"model": {"arch": "resnet18", "width": 0.5}},
        "model": {"w": torch.full((3, 2), float(step)), "b": torch.arange(4)},
        "rng": {"torch": torch.get_rng_state()}, "metrics": {"loss": 1.5}, "elapsed": 2.0,
        "optimizer": {"state": {}}, "scaler": {}, "total_steps": 10, "warmup_steps": 1,
    }


class Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if the payload runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


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


def test_a_folder_whose_last_checkpoint_is_broken_says_which_file_it_reads(tmp_path, caplog,
                                                                          monkeypatch):
    from simclr.checkpoint import checkpoint_file

    good = save_checkpoint(_state(200), tmp_path, periodic_name(200))
    assert checkpoint_file(tmp_path) == good and not caplog.records  # nothing to say
    (tmp_path / "last.pt").write_bytes(good.read_bytes()[:-50])
    with caplog.at_level("WARNING"):
        assert checkpoint_file(tmp_path) == good
    assert f"last.pt is truncated or corrupt; using {good.name}" in caplog.text
    caplog.clear()  # the other processes of a run (--processes 2 said it twice) read it
    monkeypatch.setenv("RANK", "1")  # quietly
    with caplog.at_level("WARNING"):
        assert checkpoint_file(tmp_path) == good
    assert not caplog.records


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


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    control = tmp_path / "control-marker"
    marker = tmp_path / "marker"
    # Control: the planted payload really runs code when loaded unsafely.
    torch.save({"x": Payload(str(control))}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()
    evil = tmp_path / "evil.pt"
    state = _state(5)
    state["metrics"] = {"loss": Payload(str(marker))}
    torch.save(state, evil)
    with pytest.raises(SimCLRError, match="refusing to load .*evil.pt: it contains pickled "
                                          r"Python objects \((io|builtins)\.open\)"):
        load_checkpoint(evil)
    assert not marker.exists()


class ShellPayload:
    """Unpickling this runs a shell command that creates the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_a_shell_command_payload_is_named(tmp_path):
    """torch words this refusal "unsupported GLOBAL posix.system whose module ...": the
    culprit is still named."""
    marker = tmp_path / "marker"
    torch.save({"format": "simclr-checkpoint", "p": ShellPayload(str(marker))},
               tmp_path / "shell.pt")
    with pytest.raises(SimCLRError, match=r"pickled Python objects \((posix|nt|os)\.system\)"):
        load_checkpoint(tmp_path / "shell.pt")
    assert not marker.exists()


def test_legacy_format_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "legacy.pt"
    torch.save({"format": "simclr-checkpoint", "p": Payload(str(marker))}, evil,
               _use_new_zipfile_serialization=False)
    with pytest.raises(SimCLRError, match="pickled Python objects"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    good = save_checkpoint(_state(3), tmp_path)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 20):
        bad = tmp_path / f"cut-{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(SimCLRError, match=f"cannot read checkpoint {bad}: truncated") as e:
            load_checkpoint(bad)
        assert "weights_only" not in str(e.value) and len(str(e.value).splitlines()) == 1
        assert str(e.value).endswith(("(the file ends early)",
                                      "(not a PyTorch checkpoint archive)"))


def test_garbage_and_missing_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 20)
    with pytest.raises(SimCLRError, match=f"cannot read checkpoint {junk}.*not a PyTorch"):
        load_checkpoint(junk)
    with pytest.raises(SimCLRError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(SimCLRError, match=f"^no complete checkpoint in {tmp_path}: junk.pt is "
                                          "truncated or corrupt$"):
        load_checkpoint(tmp_path)
    images = tmp_path / "images"  # an image folder passed as --checkpoint by mistake
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    with pytest.raises(SimCLRError, match=f"^{images} holds no checkpoint \\(no .pt or "
                                          ".safetensors file\\); pass a run folder or a "
                                          "checkpoint file$"):
        load_checkpoint(images)


def test_foreign_torch_file_is_refused(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2)}, other)  # e.g. a torchvision state_dict
    with pytest.raises(SimCLRError, match="holds a state dict .* but not a ResNet-18/34/50/101/"
                                          "152 in torchvision's layout.* --init-from"):
        load_checkpoint(other)
    torch.save({"weights": [0, 1], "epoch": 3}, other)
    with pytest.raises(SimCLRError, match='not a simclr checkpoint .*"format"'):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "simclr-checkpoint", "version": 99}, newer)
    with pytest.raises(SimCLRError, match="newer simclr"):
        load_checkpoint(newer)


def _run(root, kind="pretrain", name="last.pt", step=5):
    """A run directory whose checkpoints folder holds one checkpoint of ``kind``."""
    return save_checkpoint({**_state(step), "kind": kind}, root / "checkpoints", name)


def test_a_checkpoint_spelled_from_the_home_folder_is_found(tmp_path, monkeypatch):
    """--checkpoint ~/run (quoted, or after = where no shell expands it) and the Python
    API's load_encoder('~/run') looked for a folder named '~': 'checkpoint not found'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    last = save_checkpoint(_state(5), tmp_path / "run" / "checkpoints")
    for spelled in ("~/run", "~/run/checkpoints", "~/run/checkpoints/last.pt"):
        assert checkpoint_file(spelled) == last
    assert load_checkpoint("~/run")["step"] == 5


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


def test_a_flipped_byte_in_a_tensor_is_found_by_its_checksum(tmp_path, caplog):
    """torch.load checks no CRC: a byte flipped in a weight's data loaded silently as a
    wrong weight (the resumed run diverged). The archive's CRC-32 now tells, and a run
    resumes from its intact earlier checkpoint instead."""
    periodic = _run(tmp_path / "run", name=periodic_name(4), step=4)
    last = _run(tmp_path / "run", step=6)
    raw = bytearray(last.read_bytes())
    raw[_entry_start(last, "data/0") + 1] ^= 0x40
    last.write_bytes(bytes(raw))
    assert ck.is_complete(last)
    assert torch.load(last, weights_only=True)["step"] == 6  # (torch alone sees nothing)
    with pytest.raises(SimCLRError, match=r"^cannot read checkpoint .*last.pt: corrupt \(its "
                                          r"entry \S+/data/0 fails its checksum"):
        load_checkpoint(last)
    with caplog.at_level("WARNING"):
        _run_dir, path, ckpt = resume_checkpoint(tmp_path / "run")
    assert path == periodic and ckpt["step"] == 4
    assert load_checkpoint(last, mmap=True)["step"] == 6  # (mapped: not read, not judged)


def test_an_archive_written_without_checksums_still_loads(tmp_path):
    torch.serialization.set_crc32_options(False)
    try:
        path = _run(tmp_path / "run", step=3)
    finally:
        torch.serialization.set_crc32_options(True)
    assert load_checkpoint(path)["step"] == 3


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


@pytest.mark.parametrize("drop", ["model", "config"])
def test_a_checkpoint_without_its_weights_or_config_is_one_line(tmp_path, drop):
    state = {k: v for k, v in _state(3).items() if k != drop}
    torch.save(state, tmp_path / "part.pt")  # e.g. edited by hand and re-saved
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "part.pt")
    assert str(info.value) == (f'{tmp_path / "part.pt"} is not a complete simclr checkpoint: '
                               f'it has no "{drop}" entry')



@pytest.mark.parametrize(("entry", "what"), [("config", "settings"), ("model", "weights")])
def test_a_config_or_weights_entry_that_is_no_mapping_is_called_damaged_not_missing(
        tmp_path, entry, what):
    torch.save({**_state(3), entry: "resnet18"}, tmp_path / "odd.pt")
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "odd.pt")
    assert str(info.value) == (f'{tmp_path / "odd.pt"} is damaged: its "{entry}" entry is '
                               f"a str, not a mapping of {what}")


def test_a_checkpoint_of_an_unknown_kind_is_refused_naming_the_known_ones(tmp_path):
    for kind in (*ck.KINDS, None):  # (None: written before checkpoints had a kind)
        torch.save({**_state(3), "kind": kind}, tmp_path / "known.pt")
        assert load_checkpoint(tmp_path / "known.pt")["kind"] == kind
    for kind in ("weird", 7):
        torch.save({**_state(3), "kind": kind}, tmp_path / "weird.pt")
        with pytest.raises(SimCLRError) as info:
            load_checkpoint(tmp_path / "weird.pt")
        assert str(info.value).startswith(
            f"{tmp_path / 'weird.pt'} is a checkpoint of unknown kind {str(kind)!r} (simclr "
            "writes pretrain, supervised, linear, linear-partial, finetune, encoder)")


@pytest.mark.parametrize(("name", "content", "what"), [
    ("config.yaml", b"model:\n  arch: resnet18\n", "a YAML file"),
    ("summary.json", b'{"top1": 0.5}\n', "a JSON file"),
    ("predictions.csv", b"path,class\n", "a CSV file"),
    ("labeled_subset.txt", b"a/1.png\n", "a text file"),
    ("README.md", b"# a run\n", "a Markdown file"),
    ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "an image"),
])
def test_another_file_given_as_a_checkpoint_is_named_for_what_it_is(tmp_path, name, content,
                                                                    what):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / name)
    assert str(info.value) == (f"{tmp_path / name} is {what}, not a checkpoint (give the run "
                               "folder, or the .pt file in it)")


def test_an_embed_archive_given_as_a_checkpoint_is_named_for_what_it_is(tmp_path):
    import numpy as np

    np.savez(tmp_path / "features.npz", features=np.eye(3), paths=np.array(["a", "b", "c"]))
    with pytest.raises(SimCLRError, match=r"features.npz is a NumPy archive, not a checkpoint"):
        load_checkpoint(tmp_path / "features.npz")


def test_a_named_pipe_or_a_link_loop_given_as_a_checkpoint_says_so(tmp_path):
    os.mkfifo(tmp_path / "pipe.pt")
    os.symlink(tmp_path / "loop.pt", tmp_path / "loop.pt")
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "pipe.pt")
    assert str(info.value) == (f"checkpoint {tmp_path / 'pipe.pt'}: not a regular file (a "
                               "named pipe, socket or device)")
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(tmp_path / "loop.pt")
    assert str(info.value) == f"checkpoint {tmp_path / 'loop.pt'}: a symbolic link loop"


def test_resume_refuses_a_checkpoint_without_what_the_run_needs(tmp_path):
    last = _run(tmp_path / "run")
    state = {k: v for k, v in torch.load(last, weights_only=True).items()
             if k not in ("optimizer", "warmup_steps")}
    torch.save(state, last)
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(tmp_path / "run")
    assert str(info.value) == (f'--resume {tmp_path / "run"}: {last} is not a complete simclr '
                               'checkpoint: it has no "optimizer" and "warmup_steps" entries')


def test_a_plain_pickle_is_one_line_without_torch_warnings(tmp_path, recwarn):
    path = tmp_path / "p.pt"
    with open(path, "wb") as f:
        pickle.dump({"a": 1}, f)  # protocol 4: torch.load warns about it
    with pytest.raises(SimCLRError, match="cannot read checkpoint .*p.pt: truncated, corrupt"):
        load_checkpoint(path)
    assert not [str(w.message) for w in recwarn]


def test_a_checkpoint_without_read_permission_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    torch.save({"step": 1}, path)

    def refused(*args, **kwargs):  # as torch.load meets a file without read permission
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", refused)
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"cannot read checkpoint {path}: permission denied"


@pytest.mark.parametrize(("model", "problem"), [
    ({"arch": "vgg16"}, "model.arch: unknown architecture 'vgg16' (simclr's resnet18, "),
    ({"width": -1.0}, "model.width must be positive, got -1.0"),
    ({"depth": 3}, "unknown setting 'model.depth'"),
])
def test_an_invalid_stored_config_names_the_checkpoint_not_a_flag(tmp_path, model, problem):
    state = _state(1)
    state["config"]["model"].update(model)
    path = save_checkpoint(state, tmp_path)
    with pytest.raises(SimCLRError) as info:
        load_checkpoint(path)
    prefix = f"checkpoint {path}: its config is invalid: "
    assert str(info.value).startswith(prefix + problem)
    assert "--" not in str(info.value)[len(prefix):]  # not worded as a flag the user gave


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


def test_damaged_entries_are_one_line_naming_the_file(tmp_path):
    from simclr.checkpoint import readable_state

    path = save_checkpoint(_state(1), tmp_path)
    data = torch.load(path, weights_only=True)
    data["version"] = "abc"
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(SimCLRError, match=r"edited.pt is damaged: its version is 'abc'"):
        load_checkpoint(tmp_path / "edited.pt")
    ckpt = load_checkpoint(path)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(SimCLRError, match=r"last.pt: its optimizer state does not fit this "
                                          r"run \(damaged or edited\? .*parameter group"):
        with readable_state(ckpt, "optimizer state"):
            optimizer.load_state_dict({"state": {}, "param_groups": []})


def test_a_scaler_saved_off_resumes_where_fp16_now_needs_it():
    """A run saved in bf16 or fp32 holds the disabled scaler's {}, which an enabled
    GradScaler refuses; resumed in fp16 (a GPU without bf16) it starts at its defaults."""
    from simclr.checkpoint import load_scaler

    saved_off = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    assert saved_off == {}
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with pytest.raises(RuntimeError):
        scaler.load_state_dict(saved_off)
    load_scaler(scaler, saved_off)
    assert scaler.get_scale() == 1024.0
    load_scaler(scaler, torch.amp.GradScaler("cpu", init_scale=8.0).state_dict())
    assert scaler.get_scale() == 8.0


def test_a_checkpoint_of_a_newer_format_is_refused_naming_the_versions(tmp_path):
    path = save_checkpoint({**_state(3), "version": 2}, tmp_path)
    assert torch.load(path, weights_only=True)["version"] == 2  # (the state's own wins)
    with pytest.raises(SimCLRError, match=r"written by a newer simclr \(checkpoint version "
                                          r"2 > 1\); upgrade to load it$"):
        load_checkpoint(path)


def test_an_empty_tensor_does_not_hide_a_flipped_byte_in_another(tmp_path):
    """An empty tensor's entry holds no bytes (its CRC-32 is 0, as in an archive written
    without checksums): the other entries are still checked."""
    import zipfile

    path = save_checkpoint({**_state(3), "model": {"w": torch.arange(64.0),
                                                   "none": torch.zeros(0)}}, tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert any(i.CRC == 0 for i in archive.infolist())  # the premise
    raw = bytearray(path.read_bytes())
    raw[_entry_start(path, "data/0") + 5] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(SimCLRError, match=r"corrupt \(its entry \S+/data/0 fails its checksum"):
        load_checkpoint(path)


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


def _pruned_once_at(when: str, folder, monkeypatch) -> None:
    """A training still saving in ``folder`` (--keep-checkpoints 1): its next periodic
    checkpoint written and the one a reader picked pruned, once, between the pick and
    ``when``: the file's check, or its read."""
    pruned = []

    def prune(picked) -> None:
        if not pruned and picked.name == periodic_name(1):
            pruned.append(picked)
            save_checkpoint(_state(2), folder, periodic_name(2), keep_last=1)
            assert not picked.exists()

    if when == "check":
        real_latest = ck.latest_checkpoint

        def picked_then_pruned(run_dir):
            found = real_latest(run_dir)
            if found is not None:
                prune(found)
            return found

        monkeypatch.setattr(ck, "latest_checkpoint", picked_then_pruned)
    else:
        real_load = torch.load

        def pruned_then_read(f, *args, **kwargs):
            if not kwargs.get("mmap"):  # (the read, not latest_checkpoint's step lookup)
                prune(Path(f))
            return real_load(f, *args, **kwargs)

        monkeypatch.setattr(ck.torch, "load", pruned_then_read)


@pytest.mark.parametrize("when", ["check", "read"])
def test_a_checkpoint_pruned_after_it_was_picked_from_a_run_folder_is_picked_again(
        tmp_path, monkeypatch, when):
    """Evaluating a run folder while its training prunes old checkpoints: the file picked
    was deleted before it was read, "checkpoint not found" (3 loads in 914). The folder's
    latest checkpoint is picked again and read, once."""
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(_state(1), folder, periodic_name(1), keep_last=1)
    _pruned_once_at(when, folder, monkeypatch)
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded["step"] == 2 and loaded["file"] == str(folder / periodic_name(2))


def test_a_checkpoint_file_named_and_removed_before_its_read_is_not_replaced(tmp_path,
                                                                           monkeypatch):
    """A file the user named is read or refused, never exchanged for another."""
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(_state(1), folder, periodic_name(1), keep_last=1)
    _pruned_once_at("read", folder, monkeypatch)
    with pytest.raises(SimCLRError, match=f"^checkpoint not found: {folder / periodic_name(1)}$"):
        load_checkpoint(folder / periodic_name(1))


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


def test_an_evaluations_folder_is_read_past_the_checkpoints_a_sweep_set_aside(tmp_path):
    """A sweep's re-evaluation keeps an earlier classifier or an unfinished one as
    NAME.previous-K.pt (files.set_aside): `predict --checkpoint FOLDER` then said the
    folder 'holds several checkpoints (linear-partial.previous-1.pt, linear.pt)'. The
    current one is read; a folder holding only set-aside ones says so."""
    from simclr.checkpoint import checkpoint_file

    folder = tmp_path / "le" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("linear-partial.previous-1.pt", "linear.previous-2.pt"):
        torch.save(_state(3), folder / name)
    with pytest.raises(SimCLRError, match=r"holds only checkpoints set aside by a rerun "
                       r"\(linear-partial.previous-1.pt, linear.previous-2.pt\): name one"):
        checkpoint_file(tmp_path / "le")
    torch.save(_state(5), folder / "linear.pt")
    assert checkpoint_file(tmp_path / "le") == folder / "linear.pt"


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


@pytest.mark.parametrize(("ids", "finishing"), [
    ((None, None), False),  # (no training named: an earlier run's results, maybe)
    (("r1", "r1"), True),
    (("r1", "r2"), False),
])
def test_results_are_a_stopped_finish_only_beside_the_state_of_the_same_run(tmp_path, ids,
                                                                           finishing):
    """checkpoints/finetune.pt beside finetune-partial.pt is a training stopped while it
    wrote its results only where both name the same run_id; two files naming none are
    not known to be one training's."""
    from simclr.checkpoint import stopped_while_finishing

    folder = tmp_path / "checkpoints"
    for name, run_id in zip(("finetune.pt", "finetune-partial.pt"), ids, strict=True):
        save_checkpoint({**_state(5), **({"run_id": run_id} if run_id else {})}, folder, name)
    assert stopped_while_finishing(tmp_path, ("checkpoints/finetune.pt",)) is finishing


def test_a_folder_of_an_unfinished_evaluation_alone_names_no_checkpoint(tmp_path):
    """An evaluation's -partial.pt is a half-trained state, never a folder's checkpoint:
    alone it is refused; beside the finished classifier, the classifier is chosen."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(_state(3), folder, "linear-partial.pt")
    with pytest.raises(SimCLRError, match=r"holds only an unfinished training "
                                          r"\(linear-partial\.pt\)"):
        checkpoint_file(tmp_path)
    other = tmp_path / "ft" / "checkpoints"
    done = save_checkpoint(_state(9), other, "finetune.pt")
    save_checkpoint(_state(4), other, "finetune-partial.pt")
    assert checkpoint_file(tmp_path / "ft") == done
