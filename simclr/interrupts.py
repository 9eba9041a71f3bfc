"""The signals that stop a command (:data:`STOP_SIGNALS`), and the interruptions that
Python would drop: a SIGINT or a stop signal whose handler raises
(Ctrl-C's KeyboardInterrupt, :class:`Terminated`) while Python runs a weakref callback,
a garbage-collector callback or a finalizer. An exception raised there cannot propagate:
Python prints it as "Exception ignored in ..." and goes on, and the command ran to its
end (exit 0) as if the signal had never come. importlib runs such a callback at every
import, so a signal lands in one often enough.

Light (no torch): :func:`simclr.cli.main` installs this before its first import of
the command's modules.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

AGAIN_AFTER_S = 0.05  # long enough for the callback that swallowed it to have returned

# Besides Ctrl-C, the signals that ask a command to stop, each as SIGTERM does: ``kill``
# and a scheduler's stop; SIGHUP, a closed terminal or ssh session; SIGUSR1, a
# scheduler's warning before it stops the job (SLURM's ``--signal=USR1@...``). Left at
# their default, the last two ended a training at once, unsaved. (Windows has SIGTERM only.)
STOP_SIGNALS: tuple[int, ...] = tuple(getattr(signal, name) for name in
                                      ("SIGTERM", "SIGHUP", "SIGUSR1") if hasattr(signal, name))


def stop_signals() -> tuple[int, ...]:
    """:data:`STOP_SIGNALS` that this process takes now: SIGHUP or SIGUSR1 inherited
    ignored (``nohup``, ``trap '' HUP``) stays so, as the user asked (taken all the
    same, a run under nohup stopped at logout). SIGTERM is always taken."""
    return tuple(sig for sig in STOP_SIGNALS
                 if sig == signal.SIGTERM or signal.getsignal(sig) is not signal.SIG_IGN)


def signals_taken() -> tuple[int, ...]:
    """The signals a training (or the --processes launcher) turns into a stop request:
    :func:`stop_signals` and SIGINT, none of them inherited ignored (SIG_IGN: ``nohup``,
    ``trap '' HUP``, a job started with ``&`` by a non-interactive shell, which ignores
    SIGINT): that stays as the user, or the shell, asked. SIGTERM is always taken."""
    sigint = () if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else (signal.SIGINT,)
    return (*stop_signals(), *sigint)


class Terminated(KeyboardInterrupt):
    """A stop signal (:data:`STOP_SIGNALS`: ``kill``, a scheduler, a closed terminal)
    where no training handles it (a training writes a checkpoint first:
    :class:`simclr.runtime.StopFlag`): the command stops as on Ctrl-C, saying so,
    instead of vanishing without a word. ``signum``: the signal, SIGTERM unless said."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


def send_again(signum: int) -> None:
    """Send this process ``signum`` again a moment from now, from another thread: sent at
    once (os.kill runs the handler before it returns) its handler would raise again
    inside the callback or hook that could not raise the first time.

    On Windows os.kill with SIGINT or SIGTERM is TerminateProcess (exit 2, no checkpoint):
    there the signal is raised in the process, which runs its Python handler. Elsewhere
    os.kill stays: raise_signal would deliver it to the timer's thread, and a main thread
    blocked in a system call (a sleep, a wait on the loader) would react only once it
    returns; the process's signal goes to the main thread and interrupts it."""
    if os.name == "nt":
        again = threading.Timer(AGAIN_AFTER_S, signal.raise_signal, (signum,))
    else:
        again = threading.Timer(AGAIN_AFTER_S, os.kill, (os.getpid(), signum))
    again.daemon = True
    again.start()


def deliver_dropped_interruptions() -> Callable[[], None]:
    """Until the returned function is called, an interruption raised where Python
    cannot raise it (a ``sys.unraisablehook`` call) is delivered again, as the signal that
    raised it: a :class:`Terminated`'s own, SIGINT for another KeyboardInterrupt (a
    handler then makes of it what it makes of a signal: a stop request, or the
    interruption raised where it can propagate). Anything else unraisable goes to the
    hook that was there before, which the returned function puts back (a call of
    :func:`simclr.cli.main` from Python leaves its caller's hook as it was)."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        interruption = unraisable.exc_value
        if not isinstance(interruption, KeyboardInterrupt):
            previous(unraisable)
            return
        send_again(interruption.signum if isinstance(interruption, Terminated)
                   else signal.SIGINT)

    sys.unraisablehook = hook

    def put_back() -> None:
        sys.unraisablehook = previous

    return put_back
