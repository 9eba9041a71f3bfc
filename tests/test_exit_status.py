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
