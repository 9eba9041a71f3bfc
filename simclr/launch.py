"""``--processes N``: a training command starts its own N processes on this machine.

The same run torchrun would start (``torchrun --nproc_per_node N -m simclr ...``: one
process per GPU, the global batch shared, global BatchNorm, negatives gathered from all;
see :mod:`simclr.distributed`), without its rough edges for a one-machine user:

- the exit status is the run's: 75 when a signal stopped it with a checkpoint written
  (a requeue script can test for it; torchrun exits 1 and lists 75 in a traceback),
  2 for a user error, which is printed once rather than once per process;
- a signal sent to this process (Ctrl-C, ``kill``, a scheduler) reaches every training
  process exactly once: they run in their own session, so a terminal's Ctrl-C is not
  delivered twice (a second SIGINT means "stop now" to a training); on Windows, which
  has no sessions, the console's Ctrl-C reaches them itself and is not sent on;
- when one process fails the others, which would wait for it in a collective until
  the 30-minute timeout, are ended after a few seconds; when this process is killed
  outright they end with it (Linux: the parent-death signal).

This module only starts and watches processes: the processes join their group in
:func:`simclr.distributed.init_from_env` from the variables set here (the torchrun ones).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from simclr.interrupts import STOP_SIGNALS, signals_taken

log = logging.getLogger(__name__)

# Where each process of a launch leaves its one-line user error, for the launcher to
# print once (the processes of a run usually fail alike: the same settings, same files).
ERRORS_ENV = "SIMCLR_LAUNCH_ERRORS"
LAUNCHER_ENV = "SIMCLR_LAUNCHER_PID"
# torchrun gives each worker a file for the error its failure report should quote.
TORCHRUN_ERROR_FILE = "TORCHELASTIC_ERROR_FILE"
# What torchrun sets in each worker's environment, whatever its logging (the error
# file is not set where its logs go to /dev/null).
TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"
GRACE_S = 5.0  # after one process failed: time the others get to end on their own
POLL_S = 0.1


def processes_flag(text: str) -> int:
    """argparse type of ``--processes``: a count >= 1, or ``auto`` (one per GPU, else 1)."""
    if text == "auto":
        import torch

        return max(1, torch.cuda.device_count())
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got "
                                         f"{text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_flag(parser: argparse.ArgumentParser, dest: str = "processes",
             what: str = "train") -> None:
    """``--processes`` on a command that trains across processes (``dest``: the sweep's
    is its cells', not its own). It takes over the hidden one of
    :func:`simclr.cli.add_runtime_flags`, which commands of one process keep."""
    text = (f"{what} with N processes on this machine (one per GPU; auto: as many as GPUs), "
            "as torchrun --nproc_per_node N would; --batch-size stays the global batch")
    for action in parser._actions:
        if "--processes" in action.option_strings:
            action.dest, action.help, action.metavar = dest, text, "N"
            return
    parser.add_argument("--processes", type=processes_flag, default=None, metavar="N",
                        dest=dest, help=text)


# What a Windows argument may hold unquoted: cmd.exe reads & | < > ^ % ( ) as its own
# (PowerShell also ; , ' ` $ @ { } #), so an argument with anything else is put in
# double quotes.
_WINDOWS_PLAIN = re.compile(r"[\w\\/:.=+-]+", re.ASCII)


def shell_quote(arg: str) -> str:
    """``arg`` as the user's shell reads it, in a command simclr prints to be pasted
    (continue with ..., next: ...): shlex's single quotes on POSIX; on Windows, where
    cmd.exe keeps single quotes as part of the argument, double quotes around any
    argument with a character either shell reads as its own (subprocess.list2cmdline's
    escapes inside, as Python's own argv parsing there reads them; a ``$`` or a
    backquote, which PowerShell expands even there, stays the user's to mind)."""
    if sys.platform == "win32":
        if _WINDOWS_PLAIN.fullmatch(arg):
            return arg
        quoted = subprocess.list2cmdline([arg])
        return quoted if quoted.startswith('"') else f'"{quoted}"'
    return shlex.quote(arg)


def path_word(path: str | os.PathLike[str]) -> str:
    """A path as one word of a printed command: :func:`shell_quote`'s, and written
    ``./-r`` where relative and starting with '-' (``--resume -r`` parses as an option
    where the folder belongs)."""
    text = os.fspath(path)
    return shell_quote(f"./{text}" if text.startswith("-") else text)


def working_folder() -> str | None:
    """This process's working folder (None: deleted since the shell entered it)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def typed_in(cwd: object) -> str:
    """``cd CWD && `` before a recorded command that was typed in the folder ``cwd`` (a
    run's provenance), where this process works elsewhere: its relative paths are
    that folder's. Empty where the same, or none is recorded (an older run's)."""
    if not isinstance(cwd, str) or not cwd or cwd == working_folder():
        return ""
    return f"cd {shell_quote(cwd)} && "


def shell_join(args: list[str]) -> str:
    """A printed command line of ``args``, each quoted by :func:`shell_quote`."""
    return " ".join(shell_quote(a) for a in args)


def again(command: str, processes: int | str | None, torchrun: int | None = None,
          per_node: int | None = None) -> str:
    """``command`` (e.g. ``simclr pretrain --resume RUN``) as it is to be run again with
    the same processes: with ``--processes N``, or under torchrun as this run was (by
    ``torchrun`` processes, ``per_node`` of them on each machine: a run's recorded
    counts, read by ``simclr info``; None: as this process's own launch). Over several
    machines, torchrun on each: ``--nproc_per_node`` is a machine's share, not the total
    (16 processes over 2 nodes of 8 GPUs; one node refuses 16), and the rendezvous at
    HOST:PORT, the first machine's, for the user to fill in."""
    from simclr.distributed import launched_processes, machine_processes

    if processes:
        return f"{command} --processes {processes}"
    count = launched_processes() if torchrun is None else torchrun
    if torchrun is None:
        per_node = machine_processes()
    if count > 1 and command.startswith("simclr "):
        if per_node and 0 < per_node < count and count % per_node == 0:
            # (run on each machine: HOST:PORT, the first machine's, as at the start)
            return (f"torchrun --nnodes {count // per_node} --nproc_per_node {per_node} "
                    f"--rdzv-backend c10d --rdzv-endpoint HOST:PORT -m {command}")
        return f"torchrun --nproc_per_node {count} -m {command}"
    return command


def continue_run(run_dir: str | os.PathLike) -> str:
    """The command that continues the pretraining in ``run_dir`` as this process's run
    was started (one process, ``--processes N``, or torchrun): :func:`again`."""
    from simclr.distributed import launched_processes

    processes = launched_processes() if os.environ.get(LAUNCHER_ENV) else None
    return again(f"simclr pretrain --resume {path_word(run_dir)}", processes)


def srun_copies_hint() -> str:
    """A hint for a refusal of a run's folder as in use: `` (srun started N copies ...)``
    where this process is one of N > 1 tasks of a SLURM step and no launcher made them one
    run (no WORLD_SIZE), else "". ``srun -n 2 simclr pretrain`` runs two independent
    copies, the second refused its folder. Never a refusal of its own: a salloc shell has
    SLURM_NTASKS (no step id), and such tasks may be meant as independent commands."""
    if "WORLD_SIZE" in os.environ:
        return ""
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS") or (
        os.environ.get("SLURM_NTASKS") if "SLURM_STEP_ID" in os.environ else None)
    if not tasks or not tasks.isdigit() or int(tasks) < 2:
        return ""
    return (f" (srun started {int(tasks)} copies of the command: start one and give it "
            "--processes, or run torchrun under srun)")


def _torchrun_record(message: Any) -> bool:
    """Write ``message`` where torchrun's failure report reads this worker's error (the
    JSON its ProcessFailure parses); False where there is no such file."""
    error_file = os.environ.get(TORCHRUN_ERROR_FILE)
    if not error_file:  # no torchrun, or torchrun with its logs sent to /dev/null
        return False
    try:
        Path(error_file).write_text(json.dumps({"message": message,
                                                "timestamp": int(time.time())}), encoding="utf-8")
    except OSError:
        return False
    return True


def report_crash(trace: str) -> bool:
    """Leave an unexpected error's traceback for the launcher (True), which prints the
    one of the process that failed first: the others' are mostly its consequences (a
    peer gone mid-collective). False outside a launch (the caller prints it); under
    torchrun also False, the traceback recorded for torchrun's failure report first."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder:
        lines = trace.strip().splitlines()
        _torchrun_record({"message": lines[-1] if lines else "crashed", "extraInfo": {
            "py_callstack": trace, "timestamp": str(int(time.time()))}})
        return False
    try:
        Path(folder, f"rank{os.environ.get('RANK', '0')}.traceback").write_text(
            trace, encoding="utf-8")
    except OSError:
        return False
    return True


def quiet_rank() -> bool:
    """A launched process other than rank 0, under ``--processes`` or torchrun: rank 0
    (or the launcher) speaks for it."""
    launched = bool(os.environ.get(ERRORS_ENV)) or TORCHRUN_ERROR_FILE in os.environ
    return launched and os.environ.get("RANK", "0") != "0"


def report_error(message: str) -> bool:
    """Leave a process's user error for its launcher; False outside a launch (print it).

    Rank 0 prints its own message as well (it is the run's voice); the others are
    printed by the launcher only where they differ from rank 0's. Under torchrun the
    message goes to the worker's error file, which torchrun's failure report quotes (its
    "Root Cause" names the process that failed first), and only rank 0 prints it: the
    processes of a run usually fail alike, and N copies of one line bury it.
    """
    rank = os.environ.get("RANK", "0")
    folder = os.environ.get(ERRORS_ENV)
    if folder:
        try:
            Path(folder, f"rank{rank}.txt").write_text(message, encoding="utf-8")
        except OSError:
            return False
        return rank != "0"
    return _torchrun_record(message) and rank != "0"


def run(argv: list[str], processes: int, command: list[str] | None = None,
        device: str = "auto") -> int:
    """Run ``python -m simclr ARGV`` as ``processes`` processes; the run's exit status.

    ``command`` replaces ``python -m simclr`` (tests); ``device``: the run's --device.
    Each process gets torchrun's
    variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT) and, on
    a CPU, its share of the cores as OMP_NUM_THREADS unless that is set already.
    """
    import torch

    from simclr.distributed import CPU_RUN_ENV
    from simclr.runtime import check_gpu_per_process, usable_cores

    check_gpu_per_process(device, processes)
    cores = usable_cores()
    if processes > cores and (device.startswith("cpu") or not torch.cuda.is_available()):
        # each would get one thread and wait for a core: slower than fewer processes
        log.warning("simclr: %d processes on %d CPU core(s) compete for them; --processes "
                    "%d or fewer trains faster here (the global batch stays the same)",
                    processes, cores, cores)
    command = command or [sys.executable, "-m", "simclr"]
    with tempfile.TemporaryDirectory(prefix="simclr-launch-") as errors:
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                   WORLD_SIZE=str(processes), LOCAL_WORLD_SIZE=str(processes),
                   **{ERRORS_ENV: errors, LAUNCHER_ENV: str(os.getpid()),
                      CPU_RUN_ENV: "1" if device.startswith("cpu") else "0"})
        env.setdefault("OMP_NUM_THREADS", str(max(1, cores // processes)))
        children: list[subprocess.Popen] = []
        forward = _Forwarder(children)
        with forward:
            for rank in range(processes):
                children.append(subprocess.Popen(
                    [*command, *argv], env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
                    start_new_session=True))
            status, first = _wait(children, forward.sent)
        _print_other_errors(Path(errors), processes)
        stopped_by = _unsaid_stop(children, first, forward.sent)
        if stopped_by is not None:
            print(f"{_command_name(argv)}: {_stop_words(stopped_by)}", file=sys.stderr)
        trace = Path(errors, f"rank{first}.traceback")
        if first is not None and status not in (0, 2, 75) and trace.exists():
            # the cause; the rest follow
            print(trace.read_text(encoding="utf-8"), end="", file=sys.stderr)
        elif first is not None and 0 < status < 128 and status not in (2, 75) and \
                not Path(errors, f"rank{first}.txt").exists():
            # An exit without a Python error (a library's exit(), os._exit): the others
            # end quietly (a peer gone), so this line is all there is to say.
            print(f"simclr: process {first} of {processes} exited with status {status}, "
                  "without a simclr error message", file=sys.stderr)
    return status


def _free_port() -> int:
    """A TCP port free now on the loopback interface, for rank 0's rendezvous store."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_launcher() -> None:
    """In a launched process, first thing (Linux): a signal when the launcher dies, so
    that no training runs on without it in its own session. Under ``--processes``
    SIGKILL: its launcher forwards every stop signal, so it dies only killed outright
    (SIGKILL, out of memory), and a launcher already gone by then ends this process at
    once. Under torchrun SIGTERM, which a training turns into a checkpoint and a stop
    (all processes at the same step: the stop vote): torchrun handles TERM, INT, HUP
    and QUIT only, and any other signal (SLURM's ``--signal=USR1@120``) kills it outright.
    (The signal comes when the thread that started the process ends: torchrun's main
    thread starts its workers, and lives as long as torchrun.) Done here rather than
    between fork and exec, where a threaded parent's locks are unsafe. Elsewhere
    nothing: the processes then outlive such a launcher."""
    launcher = os.environ.get(LAUNCHER_ENV)
    torchrun = TORCHRUN_ENV in os.environ
    if not (launcher or torchrun) or not sys.platform.startswith("linux"):
        return
    death = signal.SIGKILL if launcher else signal.SIGTERM
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, death)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if launcher and str(os.getppid()) != launcher:  # it died before the request above
        os._exit(128 + signal.SIGKILL)


def ignore_forwarded_signals() -> None:
    """In a launched process whose command is done (simclr.cli.main, as it returns):
    the first signal a launcher forwards from here on is let pass. Its line and status
    are decided, and a process may still be exiting (torch's atexit finalizers take
    seconds) while rank 0 evaluates: a Ctrl-C forwarded then raised KeyboardInterrupt
    inside an atexit callback, which Python prints as a traceback, and a SIGTERM ended
    a finished process (143). A second one ends it at once (an exit that hangs, e.g.
    on a peer gone: the user's second Ctrl-C means it). Outside a launch nothing: a
    user's Ctrl-C must still stop a slow exit, and a library caller's handlers stay."""
    if not os.environ.get(LAUNCHER_ENV):
        return
    for sig in _Forwarder.SIGNALS:
        try:
            if signal.getsignal(sig) is not _after_command:  # (main calls this twice)
                signal.signal(sig, _after_command)
        except ValueError:  # not the main thread (an embedding caller): theirs to handle
            return


_LET_PASS: list[int] = []  # the forwarded signal let pass after the command, if any


def _after_command(signum: int, _frame: object) -> None:
    """:func:`ignore_forwarded_signals`'s handler: the first signal passes, a second ends
    the process with the status a shell gives a command that signal ended."""
    if _LET_PASS:
        os._exit(128 + signum)
    _LET_PASS.append(signum)


# A terminal's job-control stops (Ctrl-Z; a background job reading or, with `stty
# tostop`, writing the terminal) and the continue after them (fg, bg); none on Windows
_PAUSES = tuple(getattr(signal, name) for name in ("SIGTSTP", "SIGTTIN", "SIGTTOU")
                if hasattr(signal, name))
_RESUME: int = getattr(signal, "SIGCONT", 0)  # (0: none, nor any pause)


class _Forwarder:
    """While active: SIGINT, SIGTERM (and SIGHUP, SIGUSR1) sent to the launcher are sent
    on to every running child, whose trainings turn them into a checkpoint and a stop.
    A job-control stop (:data:`_PAUSES`) stops them and then the launcher, and SIGCONT
    continues them: in their own session, the terminal's reach the launcher alone."""

    SIGNALS = (signal.SIGINT, *STOP_SIGNALS)

    def __init__(self, children: list[subprocess.Popen]) -> None:
        self.children = children
        self.previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
        self.sent: set[int] = set()

    def _send(self, signum: int, _frame: object) -> None:
        self.sent.add(signum)
        if signum == signal.SIGINT and sys.platform == "win32":
            # Windows has no sessions: a console's Ctrl-C reaches every process attached
            # to it, the children included, once already (and Popen.send_signal there
            # refuses SIGINT: a ValueError, whose traceback killed them unsaved)
            return
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def _pause(self, signum: int, _frame: object) -> None:
        """Ctrl-Z: the children stopped (SIGSTOP: theirs cannot be handled), then the
        launcher by the same signal as if it had no handler; once continued, or where
        the kernel discards that stop (a group no shell controls), they go on too."""
        self._signal_all(signal.SIGSTOP)
        signal.signal(signum, signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signum)  # (stopped here until a SIGCONT)
        finally:
            signal.signal(signum, self._pause)
            self._signal_all(_RESUME)

    def _resume(self, signum: int, _frame: object) -> None:
        self._signal_all(signum)  # (stopped with the launcher, or by a SIGSTOP to it)

    def __enter__(self) -> _Forwarder:
        for sig in signals_taken():  # (not one inherited ignored: nohup, `&` in a script)
            self.previous[sig] = signal.signal(sig, self._send)
        for sig in _PAUSES:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # (a job that may not stop)
                self.previous[sig] = signal.signal(sig, self._pause)
        if _PAUSES:
            self.previous[_RESUME] = signal.signal(_RESUME, self._resume)
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:  # an error in the launcher itself: leave nothing behind
            if child.poll() is None:
                child.kill()
                child.wait()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _cause(children: list[subprocess.Popen], sent: set[int]) -> int | None:
    """The rank whose failure to report among those ended by now: a user error first,
    then a stop by a forwarded signal (``sent``; also 128+signal: the others may end
    as peers gone, exit 1, at the same moment), then a death by signal, then any other
    status; None if none failed."""
    failed = [r for r, c in enumerate(children) if c.returncode not in (None, 0, 75)]
    if not failed:
        return None

    def order(r: int) -> int:
        status = children[r].returncode
        stopped = -status in sent if status < 0 else status - 128 in sent
        return 0 if status == 2 else 1 if stopped else 2 if status < 0 else 3

    return min(failed, key=lambda r: (order(r), r))


def _wait(children: list[subprocess.Popen], sent: set[int]) -> tuple[int, int | None]:
    """Wait for every child; (the status to exit with, the rank that caused it): the
    first failure's (or 0, or 75 when a signal stopped the run). Once one has failed,
    the rest get GRACE_S to end, then SIGKILL. ``sent``: the signals forwarded to them
    (filled in while waiting); a child ended by one of those (before its training took
    over the signal) is no failure to explain."""
    first: int | None = None  # the rank that failed first
    deadline = float("inf")
    while [child.poll() for child in children].count(None):  # polls each (any() would stop)
        if first is None:
            first = _cause(children, sent)
            if first is not None:
                deadline = time.monotonic() + GRACE_S
        if time.monotonic() > deadline:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(POLL_S)
    if first is None:
        first = _cause(children, sent)
    if first is None:
        return (75 if any(c.returncode == 75 for c in children) else 0), None
    status = children[first].returncode
    if status < 0 and -status in sent:
        return 128 - status, first  # as the shell reports a command a signal ended
    if status < 0:  # killed by a signal (e.g. SIGKILL from the out-of-memory killer)
        name = signal.Signals(-status).name
        print(f"simclr: process {first} of {len(children)} was killed by {name}"
              + (" (out of memory?)" if name == "SIGKILL" else ""), file=sys.stderr)
        return 128 - status, first
    return status, first


def _unsaid_stop(children: list[subprocess.Popen], first: int | None,
                 sent: set[int]) -> int | None:
    """The forwarded signal that ended the run where no process said so, else None. A
    launched process dies of SIGTERM outside a training (it may be blocked in a
    collective, where no Python handler would run), without a word; or, a quiet rank,
    exits 128+signal after a second Ctrl-C while rank 0, blocked in a collective, ends
    as a peer gone: the launcher says it, as one process would. Rank 0 exiting with
    128+signal or 75 printed its own."""
    status = None if first is None else children[first].returncode
    if status is None:
        return None
    signum = -status if status < 0 else status - 128
    if signum not in sent:
        return None
    return None if children[0].returncode in (75, 128 + signum) else signum


def _command_name(argv: list[str]) -> str:
    """``simclr pretrain``: how a process of ``argv`` names itself in its messages."""
    return f"simclr {argv[0]}" if argv and not argv[0].startswith("-") else "simclr"


def _stop_words(signum: int) -> str:
    """What one process prints after its command's name when a signal ends it
    (:func:`simclr.cli.main`): Ctrl-C interrupts, others stop it."""
    return "interrupted" if signum == signal.SIGINT else \
        f"stopped by {signal.Signals(signum).name}"


# A file path in a message: characters holding a separator, up to a space or what ends a
# path in simclr's messages (':' in "first: /d/a.png: not an image", quotes, brackets).
PATH_IN_MESSAGE = re.compile(r"[^\s'\"():;,]*[/\\][^\s'\"():;,]*")


def _error_kind(message: str) -> str:
    """A user error with its file paths masked: each process meets the same one in the
    files of its own share of the data (all unreadable: each names its first)."""
    return PATH_IN_MESSAGE.sub("PATH", message)


def _print_other_errors(folder: Path, processes: int) -> None:
    """The user errors of ranks > 0 that rank 0 did not print (it printed its own),
    those differing from an error said only in their paths left out."""
    rank0 = folder / "rank0.txt"
    said = {_error_kind(rank0.read_text(encoding="utf-8"))} if rank0.exists() else set()
    for rank in range(1, processes):
        path = folder / f"rank{rank}.txt"
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        if (kind := _error_kind(text)) not in said:
            said.add(kind)
            print(f"(process {rank}) {text}", file=sys.stderr)
