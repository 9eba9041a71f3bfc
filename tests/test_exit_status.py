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


def test_a_call_from_python_gets_its_own_stop_signal_handlers_back():
    """The command takes SIGTERM, SIGHUP and SIGUSR1 while it runs; a caller from Python
    (a notebook, a scheduler's wrapper) gets the handlers it had set back after it."""
    import signal

    from simclr.interrupts import STOP_SIGNALS

    def callers(signum, frame):
        pass

    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, callers)
        assert main(["--version"]) == 0
        assert all(signal.getsignal(sig) is callers for sig in STOP_SIGNALS)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_stop_signal_landing_in_a_finalizer_is_sent_again_not_raised_there(monkeypatch):
    """Raised inside a ``__del__`` (however deep), the stop would be printed as ignored
    and lost: it is sent again a moment later; anywhere else it stops the command."""
    import signal
    import sys

    import pytest

    from simclr import exit_status
    from simclr.interrupts import Terminated

    sent = []
    monkeypatch.setattr(exit_status, "send_again", sent.append)
    put_back = exit_status._stop_on_sigterm()
    try:
        stop = signal.getsignal(signal.SIGTERM)

        def deep_in_clean_up():
            stop(signal.SIGTERM, sys._getframe())

        class Iterator:
            def __del__(self):
                deep_in_clean_up()

        Iterator()
        assert sent == [signal.SIGTERM]
        with pytest.raises(Terminated) as stopped:
            deep_in_clean_up()
        assert stopped.value.signum == signal.SIGTERM and sent == [signal.SIGTERM]
    finally:
        put_back()


def test_every_evaluation_out_of_memory_names_what_to_lower():
    """Each evaluation's failed allocation is one line naming its own flags to lower."""
    import pytest

    from simclr.errors import SimCLRError
    from simclr.exit_status import _out_of_memory

    flags = {"knn": "--test images", "linear-eval": "--test images",
             "transform-probe": "--views", "embed": "fewer --data images",
             "predict": "a smaller --batch-size, or fewer --data images",
             "neighbors": "fewer images in --features or --queries"}
    for command, flag in flags.items():
        with pytest.raises(SimCLRError) as failed, _out_of_memory(command):
            raise MemoryError("Unable to allocate 2.00 GiB for an array with shape (16, 512)")
        assert str(failed.value).startswith("out of memory (allocating 2.00 GiB failed); "
                                            "free memory or try "), command
        assert flag in str(failed.value), command
    with pytest.raises(MemoryError), _out_of_memory("pretrain"):  # (its own: memory.py)
        raise MemoryError("Unable to allocate 2.00 GiB")


def test_a_launched_process_whose_command_failed_lets_a_forwarded_signal_pass(
        monkeypatch, tmp_path, capsys):
    """Its status decided (a user error, 2), a process of `--processes N` still exiting
    is not turned into 143 (or a traceback) by the stop its launcher forwards then."""
    import signal

    from simclr import launch

    monkeypatch.setenv(launch.LAUNCHER_ENV, "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch, "die_with_launcher", lambda: None)  # (pid 1: no launcher)
    before = {sig: signal.getsignal(sig) for sig in launch._Forwarder.SIGNALS}
    try:
        assert main(["info", str(tmp_path / "none")]) == 2
        assert all(signal.getsignal(sig) is launch._after_command for sig in before)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert capsys.readouterr().err.count("\n") == 1
