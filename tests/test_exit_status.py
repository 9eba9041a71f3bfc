"""How a command ends (simclr.exit_status): its user errors and interruptions said in
one printable line."""

from __future__ import annotations

from simclr.cli import main


def test_printed_errors_escape_what_would_act_on_the_terminal(capsys):
    """A permission error's file name, an unknown argument, and the folder a stopped
    training names were printed raw: an escape in them acted on the terminal."""
    from simclr.exit_status import _interrupted, _user_error

    assert _user_error("simclr embed", PermissionError(13, "Permission denied",
                                                       "a\x1b[2Jb")) == 2
    assert main(["pretrain", "--bo\x1b[2Jgus"]) == 2
    stopped = KeyboardInterrupt()
    stopped.kept_training = "run\x1b]0;T\a"
    _interrupted("simclr linear-eval", stopped)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\a" not in err, err
    assert "permission denied: a\\x1b[2Jb (Permission denied)" in err
    assert "unrecognized arguments: --bo\\x1b[2Jgus" in err
    assert "stays in run\\x1b]0;T\\x07:" in err


def test_a_stopped_training_says_what_continues_it(monkeypatch, tmp_path):
    """A pretraining names the command that resumes it; a sweep's cell, the sweep (the
    same command); a run stopped before its first checkpoint, that none was saved."""
    from simclr import checkpoint
    from simclr.exit_status import _continue_after

    stopped = KeyboardInterrupt()
    stopped.run_dir = tmp_path / "run"
    assert _continue_after(stopped, "simclr pretrain") == "; no checkpoint was saved"
    monkeypatch.setattr(checkpoint, "latest_checkpoint", lambda folder: folder / "last.pt")
    said = _continue_after(stopped, "simclr pretrain")
    assert said.startswith("; its last checkpoint stays: continue with `simclr pretrain "
                           "--resume "), said
    assert _continue_after(stopped, "simclr sweep") == (
        f"; {tmp_path / 'run'}'s last checkpoint stays: the same command continues it")


def test_a_permission_error_without_a_file_name_says_none(capsys):
    """No file name to give: no ": None" in the line."""
    from simclr.exit_status import _user_error

    assert _user_error("simclr knn", PermissionError(13, "Permission denied")) == 2
    assert capsys.readouterr().err == "simclr knn: error: permission denied (Permission denied)\n"


def test_a_user_error_the_launch_reports_is_not_said_twice(monkeypatch, capsys):
    """Under --processes, rank 0 or the launcher says the error once: not each process."""
    from simclr import launch
    from simclr.errors import SimCLRError
    from simclr.exit_status import _user_error

    said = []
    monkeypatch.setattr(launch, "report_error", lambda message: said.append(message) or True)
    assert _user_error("simclr pretrain", SimCLRError("no images")) == 2
    assert said == ["simclr pretrain: error: no images"]
    assert capsys.readouterr().err == ""


def test_a_crash_the_launcher_reports_is_status_1_without_a_second_traceback(monkeypatch):
    """Under --processes the launcher prints the first failing process's traceback: the
    process ends with status 1, its traceback not raised again."""
    from simclr import launch
    from simclr.exit_status import _crash_status

    monkeypatch.setattr(launch, "report_crash", lambda text: True)
    assert _crash_status("simclr pretrain", RuntimeError("a bug")) == 1
