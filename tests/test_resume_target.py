"""Tests for simclr.resume_target: which checkpoint a --resume continues from, why none
can be, where a run stands, and a resume another process continued meanwhile."""

from __future__ import annotations

import json

import pytest

from simclr import train
from simclr.errors import SimCLRError
from simclr.resume import load_resume_config
from simclr.settings import build_config
from tests.conftest import tiny_flags
from tests.test_rundir import _preempted_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_resume_another_resume_finished_meanwhile_is_refused_leaving_its_work(
        tmp_path, image_folder, cache_dir, monkeypatch, capsys):
    """Two `--resume` of one run: B read its checkpoint (step 4), then, while it opened the
    data, A resumed and finished the run. B trained on from step 4 over A's finished run
    (its last.pt, summary.json and log replaced). Once B holds the folder it is refused."""
    from simclr.cli import main

    run_dir = tmp_path / "run"
    _preempted_run(build_config(flags=tiny_flags(image_folder, run_dir, cache_dir)))

    def files():
        return {p.name: p.read_bytes() for p in (run_dir, run_dir / "checkpoints")
                for p in p.iterdir() if p.is_file()}

    opened, finished = train.open_data, {}

    def open_while_another_resumes(*args, **kwargs):
        source = opened(*args, **kwargs)
        if not finished:  # (A, run from here, opens the data too)
            finished["A"] = None
            finished["A"] = train.pretrain(load_resume_config(run_dir, {}), resume=True)
            finished["files"] = files()
        return source

    monkeypatch.setattr(train, "open_data", open_while_another_resumes)
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run_dir)]) == 2
    assert finished["A"]["status"] == "finished" and finished["A"]["steps"] == 6
    assert capsys.readouterr().err.strip().splitlines() == [
        f"simclr pretrain: error: --resume {run_dir}: another simclr process continued the "
        "run meanwhile (its latest checkpoint changed since this one read it); nothing was "
        f"written: see where it stands with `simclr info {run_dir}`, or resume it again"]
    assert files() == finished["files"]  # A's run, as A left it
    # resumed again, it finds the run finished: nothing to do
    monkeypatch.setattr(train, "open_data", opened)
    assert main(["pretrain", "--resume", str(run_dir)]) == 0
    assert files() == finished["files"]


def test_a_runs_state_is_read_from_what_its_sessions_wrote(tmp_path):
    """run_state: what RunMark, already_holds_run and unfinished_step read alike. A
    divergence is where the run stands unless its latest checkpoint is at or past it
    (a later session trained on from before it, with other settings)."""
    from simclr.resume_target import SUPERVISED_RESULT, run_state

    def summary(**fields):
        (tmp_path / "summary.json").write_text(json.dumps(fields))

    assert run_state(tmp_path, "pretrain") == run_state(tmp_path, "supervised") == "unfinished"
    summary(status="diverged", steps=3)
    assert run_state(tmp_path, "pretrain", 2) == run_state(tmp_path, "supervised") == "diverged"
    assert run_state(tmp_path, "pretrain", 3) == run_state(tmp_path, "supervised", 4) == \
        "unfinished"
    summary(status="finished", steps=6)
    assert run_state(tmp_path, "pretrain", 6) == "finished"
    assert run_state(tmp_path, "supervised", 6) == "unfinished"  # (its results say it)
    (tmp_path / SUPERVISED_RESULT).write_text("{}")
    assert run_state(tmp_path, "supervised") == "finished"
    summary(status="diverged", steps=3)  # (a supervised run's results: no pretraining's)
    assert run_state(tmp_path, "pretrain", 2) == "diverged"


@pytest.mark.parametrize(("found", "wanted", "says"), [
    ("pretrain", "pretrain", "a pretraining checkpoint outside a run folder"),
    ("supervised", "pretrain", "a supervised checkpoint outside a run folder"),
    ("pretrain", "supervised", "a pretraining checkpoint outside a run folder"),
    ("linear", "pretrain", "a linear checkpoint outside a run folder"),
])
def test_a_loose_checkpoint_file_is_named_itself_not_its_folder(tmp_path, monkeypatch, found,
                                                                 wanted, says):
    """A .pt file outside a run's checkpoints folder was called the run of its folder
    ('. is a supervised run ...; continue it with `simclr supervised --resume .`'), a
    command that fails too: the message names the file and why no run continues."""
    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import resume_checkpoint

    monkeypatch.chdir(tmp_path)
    save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3, "kind": found,
                     "config": {}, "model": {"w": torch.zeros(2)}}, tmp_path, "copy.pt")
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint("copy.pt", wanted)
    message = str(info.value)
    assert message.startswith(f"--resume copy.pt: copy.pt is {says} (not in a run's "
                              "checkpoints folder)"), message
    assert " . " not in message and "--resume .`" not in message and "\n" not in message


@pytest.mark.parametrize(("wanted", "says"), [
    ("pretrain", "; its run is {run}: `simclr pretrain --resume {run}`"),
    ("supervised", "; it is no supervised run's either (`simclr pretrain --resume {run}` "
                   "continues its run)"),
])
def test_a_loose_copy_of_a_runs_checkpoint_names_the_run_that_saved_it(tmp_path, monkeypatch,
                                                                       wanted, says):
    """A copy of a run's checkpoint beside it (run/copy.pt) was told to 'pass the
    directory of the run it was saved in', which its config records: that run, still
    holding it unfinished, is named in the command that continues it; a finished run,
    another run made at that path, or a folder since emptied is not."""
    import shutil

    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import resume_checkpoint

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    def saved(run_id, name="last.pt", folder=run / "checkpoints"):
        save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3,
                         "kind": "pretrain", "run_id": run_id, "config": {"out": str(run)},
                         "model": {"w": torch.zeros(2)}}, folder, name)

    def message():
        with pytest.raises(SimCLRError) as info:
            resume_checkpoint("run/copy.pt", wanted)
        return str(info.value)

    saved("a")
    shutil.copy(run / "checkpoints" / "last.pt", run / "copy.pt")
    assert message().endswith(says.format(run=run)), message()
    general = "the directory of the run it was saved in"
    (run / "summary.json").write_text('{"status": "finished", "steps": 3}')
    assert str(run) not in message() and general in message()  # (nothing to continue)
    (run / "summary.json").unlink()
    saved("b")  # another run made at that path since: not the copy's
    assert str(run) not in message() and general in message()
    shutil.rmtree(run / "checkpoints")  # the run moved away
    assert str(run) not in message() and general in message()
    # Saved before paths were absolute: its 'out' is relative to where that run started,
    # unknown (here, the same folder: still not named)
    save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3,
                     "kind": "pretrain", "run_id": "c", "config": {"out": "run"},
                     "model": {"w": torch.zeros(2)}}, run / "checkpoints", "last.pt")
    shutil.copy(run / "checkpoints" / "last.pt", run / "copy.pt")
    assert general in message() and "--resume run`" not in message(), message()


@pytest.mark.parametrize("summary", [None, {"status": "finished", "steps": 6},
                                     {"status": "diverged", "steps": 7}])
def test_a_run_another_process_saved_or_ended_since_it_was_read_is_continued_meanwhile(
        tmp_path, summary):
    """The run as a --resume read it is its latest checkpoint and where it stood: another
    process that saved a checkpoint since (the run still unfinished), or ended it without
    saving (a run resumed at its last step, whose summary alone was still to write; a
    divergence past its checkpoint), changed it, and the resume, once it holds the
    folder, is refused."""
    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import RunMark, check_not_continued

    folder = tmp_path / "checkpoints"

    def save(step):
        save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": step,
                         "kind": "pretrain", "config": {}, "model": {"w": torch.zeros(2)}},
                        folder, "last.pt")

    save(6)
    mark = RunMark.of(folder, folder / "last.pt", "pretrain")
    check_not_continued(tmp_path, mark, "pretrain")  # (unchanged: goes on)
    if summary is None:
        save(7)
    else:
        (tmp_path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SimCLRError, match="another simclr process continued the run meanwhile"):
        check_not_continued(tmp_path, mark, "pretrain")


def test_a_new_run_over_a_runs_checkpoints_is_told_what_holds_them_and_the_way_on(tmp_path):
    """already_holds_run: an unfinished run of the command's own kind or of the other
    kind is named with the command that continues it; a folder whose checkpoints cannot
    be read holds 'a run' (not 'an unknown kind of checkpoint'), which no command
    continues."""
    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import already_holds_run

    run = tmp_path / "run"

    def save(kind):
        save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3, "kind": kind,
                         "config": {}, "model": {"w": torch.zeros(2)}},
                        run / "checkpoints", "last.pt")

    save("pretrain")
    assert str(already_holds_run(run, "out", "pretrain")) == (
        "out already holds a run (checkpoints/last.pt); choose another --out or continue it "
        "with `simclr pretrain --resume out`")
    assert str(already_holds_run(run, "out", "supervised")) == (
        "out already holds a pretraining run (checkpoints/last.pt); choose another --out or "
        "continue it with `simclr pretrain --resume out`")
    # Where it stands: a divergence its latest checkpoint (step 3) trained past is no
    # refusal; one after it, or the run's end, is said with its step.
    (run / "summary.json").write_text('{"status": "diverged", "steps": 2}')
    assert str(already_holds_run(run, "out", "pretrain")).endswith(
        "or continue it with `simclr pretrain --resume out`")
    (run / "summary.json").write_text('{"status": "diverged", "steps": 4}')
    assert str(already_holds_run(run, "out", "pretrain")) == (
        "out already holds a run (checkpoints/last.pt) that diverged at step 4: continuing "
        "it diverges again; start a new run with a lower --lr in another --out")
    (run / "summary.json").write_text('{"status": "finished", "steps": 3}')
    assert str(already_holds_run(run, "out", "pretrain")) == (
        "out already holds a run (checkpoints/last.pt) that finished at step 3: its results "
        "are there (`simclr info out`); choose another --out for a new run")
    (run / "summary.json").unlink()
    save("supervised")
    assert str(already_holds_run(run, "out", "pretrain")).endswith(
        "or continue it with `simclr supervised --resume out`")
    for unreadable in (lambda f: f.write_bytes(b"not a checkpoint"),  # (incomplete)
                       lambda f: torch.save({"w": torch.zeros(2)}, f)):  # (no simclr one)
        unreadable(run / "checkpoints" / "last.pt")
        assert str(already_holds_run(run, "out", "pretrain")) == (
            "out already holds a run (checkpoints/last.pt); choose another --out")


def test_the_same_command_again_continues_only_an_unfinished_run_of_its_own_kind(tmp_path):
    """unfinished_step: the step a requeued command continues its run from, or None:
    another kind's run, a finished one, one that diverged past its latest checkpoint.
    A divergence at or before that checkpoint a later session trained past: continued."""
    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import unfinished_step

    run = tmp_path / "run"
    save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3, "kind": "pretrain",
                     "config": {}, "model": {"w": torch.zeros(2)}}, run / "checkpoints",
                    "last.pt")
    assert unfinished_step(run, "pretrain") == 3
    assert unfinished_step(run, "supervised") is None  # (a pretraining run's folder)
    (run / "summary.json").write_text('{"status": "diverged", "steps": 2}')
    assert unfinished_step(run, "pretrain") == 3  # (trained on past it)
    (run / "summary.json").write_text('{"status": "diverged", "steps": 4}')
    assert unfinished_step(run, "pretrain") is None
    (run / "summary.json").write_text('{"status": "finished", "steps": 3}')
    assert unfinished_step(run, "pretrain") is None


def test_a_run_folder_named_checkpoints_is_resumed_as_a_run_folder(tmp_path, monkeypatch):
    """--resume X is the run folder X, or X the checkpoints folder of one; a run made
    with --out checkpoints (its checkpoints in checkpoints/checkpoints) is that run."""
    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import resume_checkpoint

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "checkpoints"
    save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3, "kind": "pretrain",
                     "config": {}, "model": {"w": torch.zeros(2)}}, run / "checkpoints",
                    "last.pt")
    for given in ("checkpoints", "checkpoints/checkpoints"):
        found, path, ckpt = resume_checkpoint(given, "pretrain", entries=())
        assert (found.resolve(), path.resolve(), ckpt["step"]) == (
            run, run / "checkpoints" / "last.pt", 3)


def test_a_damaged_checkpoint_of_the_step_resumed_from_is_no_later_one(tmp_path, caplog):
    """A --resume warns of damaged checkpoints after the one it resumes from (the run
    goes back further than asked); a damaged ckpt-6.pt beside last.pt of step 6 is no
    step lost: not said."""
    import logging

    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import resume_checkpoint

    save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 6, "kind": "pretrain",
                     "config": {}, "model": {"w": torch.zeros(2)}}, tmp_path / "checkpoints",
                    "last.pt")
    (tmp_path / "checkpoints" / "ckpt-6.pt").write_bytes(b"cut")
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path, "pretrain", entries=())[2]["step"] == 6
        assert "truncated or corrupt" not in caplog.text
        (tmp_path / "checkpoints" / "ckpt-7.pt").write_bytes(b"cut")
        resume_checkpoint(tmp_path, "pretrain", entries=())
    assert "ckpt-7.pt truncated or corrupt; resuming from last.pt (step 6)" in caplog.text


def test_a_save_while_a_resume_reads_its_checkpoint_is_a_change_once_held(tmp_path,
                                                                         monkeypatch):
    """The run is marked before its checkpoint is read: a training that saved a newer
    one while the resume read the older is seen once the folder is held."""
    import torch

    import simclr.resume_target as rt
    from simclr.checkpoint import save_checkpoint

    def save(step):
        save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": step,
                         "kind": "pretrain", "config": {}, "model": {"w": torch.zeros(2)}},
                        tmp_path / "checkpoints", "last.pt")

    save(3)
    real = rt.load_checkpoint

    def read_then_another_saves(path, *args, **kwargs):
        content = real(path, *args, **kwargs)
        save(4)  # (another process, meanwhile)
        return content

    monkeypatch.setattr(rt, "load_checkpoint", read_then_another_saves)
    run, _path, ckpt = rt.resume_checkpoint(tmp_path, "pretrain", entries=())
    assert ckpt["step"] == 3
    with pytest.raises(SimCLRError, match="another simclr process continued the run meanwhile"):
        rt.check_not_continued(run, ckpt[rt.RESUME_MARK], "pretrain")


def test_a_finished_supervised_run_resumed_as_pretraining_names_its_model(tmp_path):
    """--resume of a finished supervised run by pretrain: its results and its model are
    named, not a command that would continue it."""
    import torch

    from simclr.checkpoint import save_checkpoint
    from simclr.resume_target import SUPERVISED_RESULT, resume_checkpoint

    run = tmp_path / "run"
    save_checkpoint({"format": "simclr-checkpoint", "version": 1, "step": 3,
                     "kind": "supervised", "config": {}, "model": {"w": torch.zeros(2)}},
                    run / "checkpoints", "last.pt")
    (run / SUPERVISED_RESULT).write_text("{}")
    with pytest.raises(SimCLRError) as info:
        resume_checkpoint(run, "pretrain")
    assert str(info.value) == (f"--resume {run}: {run} is a finished supervised run "
                               f"({run / SUPERVISED_RESULT}); its model is "
                               f"{run / 'checkpoints' / 'last.pt'}")
