"""How a ``simclr`` command ends: its exit status (:data:`EXIT_STATUSES`), a user error
said in one line, Ctrl-C and the stop signals (SIGTERM, SIGHUP, SIGUSR1) as an
interruption that says what continues the work, an evaluation out of memory as what
to lower, a crash under ``--processes``, and the process put back as the command found
it. :func:`simclr.cli.main` calls these around the command's work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from simclr.errors import SimCLRError, printable, unusable_path_error, user_message
from simclr.interrupts import STOP_SIGNALS, Terminated, send_again, stop_signals

EXIT_USER_ERROR = 2


# What a script or scheduler can tell from the status (`simclr --help` ends with it).
EXIT_STATUSES = (
    "exit status: 0 done, 1 a bug (a traceback), 2 a user error (one line), 75 stopped "
    "with a checkpoint (SIGTERM, SIGHUP, SIGUSR1 or Ctrl-C in a training: --resume, or "
    "the same command, continues it), 130 interrupted (Ctrl-C), 141 the reader of the "
    "standard output gone (`| head`), 143 stopped by SIGTERM (another signal: 128 + its number)")


def _interrupted(command: str, exc: KeyboardInterrupt) -> int:
    """Say that Ctrl-C or a stop signal (SIGTERM, SIGHUP, SIGUSR1) stopped ``command``
    (and what continues it, where something does); the exit status a shell gives a
    process the signal killed."""
    from simclr.launch import quiet_rank

    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    if not quiet_rank():  # a launch: rank 0 says it for all
        words = "interrupted" if signum == signal.SIGINT else \
            f"stopped by {signal.Signals(signum).name}"
        # (the folder it names: the user's --out, any name)
        print(printable(f"{command}: {words}{_continue_after(exc, command)}"),
              file=sys.stderr)
    return 128 + signum


def _reader_gone() -> int:
    """stdout's reader closed it: the exit status of a shell tool stopped by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)  # Python's flush at exit fails quietly
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _crash_status(command: str, exc: Exception) -> int | None:
    """The exit status of an unexpected exception handled here (a path no check named
    is a user error; under --processes the launcher prints the traceback of the process
    that failed first; a peer process gone is one line); None: raise it, a bug."""
    import traceback

    if unusable_path_error(exc):  # a link loop or a name too long that no check named
        return _user_error(command, exc)
    from simclr.distributed import launched_processes, launched_rank, peer_gone
    from simclr.launch import report_crash

    if report_crash(traceback.format_exc()):
        return 1
    if launched_processes() > 1 and peer_gone(exc):  # torchrun: a consequence, whose
        # traceback (recorded for its report) would bury the cause printed above it
        print(f"{command}: process {launched_rank()} of {launched_processes()} stopped: "
              "another process of the run ended first (its error is above, or in "
              "torchrun's report)", file=sys.stderr)
        return 1
    return None


def _after_the_command(failed: bool, restore_sigterm: Callable[[], Any] | None,
                       undo: contextlib.ExitStack, command_line: bool) -> None:
    """What every ending of :func:`main` does: the process as the command found it (for
    a caller from Python), an --out made for results that never came removed."""
    _command_done()
    if "simclr.runtime" in sys.modules:  # not this call's arguments after it
        sys.modules["simclr.runtime"].COMMAND_LINE = None  # type: ignore[attr-defined]
    if "simclr.results" in sys.modules:  # an --out made for results that never came
        results = sys.modules["simclr.results"]
        if failed:
            results.remove_empty_created()
        results.CREATED.clear()
    if restore_sigterm is not None:
        restore_sigterm()
    undo.close()
    if command_line:  # everything is written and said: a Ctrl-C or SIGTERM in the
        # interpreter's shutdown (a second long) made a finished command exit 130/143
        # with a traceback, and a scheduler retry it into "already holds results"
        _ignore_interruptions()


def _ignore_interruptions() -> None:
    """SIGINT and the stop signals ignored from now on (where signals can be set at all)."""
    with contextlib.suppress(ValueError):  # (not the main thread)
        for sig in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(sig, signal.SIG_IGN)


def _command_done() -> None:
    """The command's outcome is decided: a launched process stops acting on the signals
    its launcher forwards (:func:`simclr.launch.ignore_forwarded_signals`)."""
    from simclr.launch import ignore_forwarded_signals

    ignore_forwarded_signals()


def _stop_on_sigterm() -> Any:
    """SIGTERM, SIGHUP and SIGUSR1 (:data:`STOP_SIGNALS`) raise :class:`Terminated` in
    this command; returns the function that puts back the handlers they replaced (None
    where signals cannot be set: not the main thread). One that lands in a finalizer (a
    loader iterator's ``__del__``) is sent again a moment later: raised there, Python
    would print it as ignored and go on."""
    def stop(signum: int, frame: Any) -> None:
        if _in_finalizer(frame):  # (not raised there: the finalizer's clean-up completes)
            send_again(signum)
            return
        raise Terminated(signum)

    try:
        previous = {sig: signal.signal(sig, stop) for sig in stop_signals()}
    except ValueError:
        return None

    def put_back() -> None:
        for sig, handler in previous.items():
            # (None: a handler set from C, which Python cannot put back; the default then)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    return put_back


def _in_finalizer(frame: Any) -> bool:
    """Whether the code ``frame`` runs was called by an object's ``__del__``."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


# What an evaluation that runs out of memory can lower: the images held at once (a
# pass's), the features or pixels held for all the images, the views of each. (The
# training commands name the step and the checkpoint kept: memory.out_of_memory_is_an_error.)
LOWER_FOR_MEMORY = {
    "knn": "a smaller --batch-size or --image-size, or fewer --train or --test images",
    "linear-eval": "a smaller --batch-size or --image-size, or fewer --train or --test images",
    "transform-probe": "a smaller --batch-size, --image-size or --views, or fewer --train or "
                       "--test images",
    "embed": "a smaller --batch-size or --image-size, or fewer --data images",
    "predict": "a smaller --batch-size, or fewer --data images",
    "neighbors": "fewer images in --features or --queries",
}


def _out_of_memory(command: str) -> contextlib.AbstractContextManager[None]:
    """For an evaluation ``command``: an allocation that fails in its work is one line
    saying what to lower (:data:`LOWER_FOR_MEMORY`), not a traceback."""
    lower = LOWER_FOR_MEMORY.get(command)
    if lower is None:
        return contextlib.nullcontext()
    from simclr.memory import allocation_failure_is

    return allocation_failure_is(
        lambda failed: f"out of memory ({failed}); free memory or try {lower}")


def _continue_after(exc: BaseException, command: str) -> str:
    """What continues a training a second Ctrl-C cut short (its run folder, set by
    :func:`simclr.train.pretrain` on the exception), where a checkpoint was saved; or
    the finished training an evaluation was testing (partial.PartialRun.testing)."""
    kept = getattr(exc, "kept_training", None)
    if kept is not None:
        return f"; its finished training stays in {kept}: the same command only tests it"
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is None:
        return ""
    from simclr.checkpoint import CHECKPOINTS, latest_checkpoint

    if latest_checkpoint(run_dir / CHECKPOINTS) is None:
        return "; no checkpoint was saved"
    if command != "simclr pretrain":  # a sweep's cell: the same sweep command goes on
        return f"; {run_dir}'s last checkpoint stays: the same command continues it"
    from simclr.launch import continue_run

    return f"; its last checkpoint stays: continue with `{continue_run(run_dir)}`"


def _user_error(command: str, exc: Exception) -> int:
    """Say the user error ``exc`` in one line (:func:`_user_message`); the exit status."""
    from simclr.launch import report_error

    message = f"{command}: error: {_user_message(exc)}"
    if not report_error(message):  # a launch: rank 0 or the launcher says it once
        print(message, file=sys.stderr)
    return EXIT_USER_ERROR


def _user_message(exc: Exception) -> str:
    """The one line a user error prints; a PermissionError that no check named earlier
    (a file or folder without the rights to read or write it) by its path, and a link
    loop or a name too long by theirs (:func:`simclr.errors.unusable_path_error`)."""
    unusable = unusable_path_error(exc)
    if unusable:
        return user_message(SimCLRError(unusable))
    if isinstance(exc, PermissionError):
        where = f": {exc.filename}" if exc.filename else ""  # (any name: escaped)
        return printable(f"permission denied{where} ({exc.strerror or exc})")
    return user_message(exc)
