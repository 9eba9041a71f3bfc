"""Where and how tensors run: device, precision, threads, the run's provenance, and
the signals (SIGTERM/SIGINT, SIGHUP, SIGUSR1) that ask a training to stop at the end of
its step.

Shared by pretraining and the evaluation commands, so every command picks the same
device and autocast rules and is preempted the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import multiprocessing
import multiprocessing.util  # noqa: F401  (its exit handler must be registered first)
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simclr.config import DEVICES, PRECISIONS, mps_refused
from simclr.errors import SimCLRError
from simclr.files import interruption_within
from simclr.interrupts import (
    STOP_SIGNALS,
    deliver_dropped_interruptions,
    signals_taken,
)
from simclr.launch import working_folder

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto", flag: str = "--device") -> torch.device:
    """'auto' -> the local CUDA device when present, else the CPU (``flag``: what
    messages call the setting). Under a launcher each process takes cuda:LOCAL_RANK."""
    from simclr.distributed import local_processes, local_rank

    if name != "auto":
        if refused := mps_refused(name):
            raise SimCLRError(f"{flag} {name}{refused}")
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError):
            raise SimCLRError(f"{flag}: unknown device {name!r} ({DEVICES})") from None
        if device.type not in ("cpu", "cuda"):  # the ones simclr is built and tested for
            # (torch's names beyond those: as unknown as to the settings' check)
            raise SimCLRError(f"{flag}: unknown device {name!r} ({DEVICES})")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SimCLRError(f"{flag} {name}: CUDA is not available on this machine")
    if name.startswith("cpu") or not torch.cuda.is_available():
        if name == "auto" and _mps_is_available():
            _note_cpu_not_mps(flag)
        return torch.device("cpu")
    check_gpu_per_process(name, local_processes(), flag)
    if name.startswith("cuda:"):
        if torch.device(name).index >= torch.cuda.device_count():
            raise SimCLRError(f"{flag} {name}: no such GPU ({torch.cuda.device_count()} "
                              "visible: cuda:0 ...)")
        # The current GPU too: what allocates on plain "cuda" (pinned memory's thread,
        # the generator's state, bf16 support) must not open a context on GPU 0.
        torch.cuda.set_device(torch.device(name))
        return torch.device(name)
    return torch.device("cuda", local_rank())


def _mps_is_available() -> bool:
    """Whether torch sees Apple's GPU (a Mac's torch; never on Linux or Windows)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


@functools.cache
def _note_cpu_not_mps(flag: str) -> None:
    """Once per process (the flag's check and the run each resolve it): on a Mac 'auto'
    passes over its GPU, and a run slower than the user expects is explained."""
    log.warning("note: %s auto: this run uses the CPU, as simclr does not run on Apple's "
                "GPU (MPS)", flag)


def check_gpu_per_process(device: str, processes: int, flag: str = "--device") -> None:
    """The rule of several processes on one machine's GPUs: each takes its own,
    cuda:LOCAL_RANK (NCCL needs distinct devices), so neither a fixed cuda:N nor more
    processes than GPUs. ``device``: the --device asked for; ``processes``: how many
    run (or are to be launched) on this machine. Checked by the launcher before it
    starts them and by each process (under torchrun, the only check)."""
    if processes <= 1 or device.startswith("cpu") or not torch.cuda.is_available():
        return
    if device.startswith("cuda:"):
        raise SimCLRError(f"{flag} {device}: with several processes each uses its own GPU "
                          "(cuda:LOCAL_RANK); give --device cuda (or auto)")
    gpus = torch.cuda.device_count()
    if processes > gpus:
        raise SimCLRError(f"{processes} processes on a machine with {gpus} GPU(s): each "
                          f"needs a GPU of its own; start at most {gpus}, or use --device cpu")


def resolve_precision(name: str, device: torch.device, flag: str = "--precision") -> str:
    """'auto' -> bf16 where the hardware runs it natively, else fp16 on CUDA, fp32 on CPU
    (``flag``: what messages call the setting).

    bf16 needs no loss scaling; fp16 is used with a GradScaler (train.py).
    """
    if name not in PRECISIONS:  # (the library's callers: the flags are choices already)
        raise SimCLRError(f"{flag}: unknown value {name!r} (choose from "
                          f"{', '.join(PRECISIONS)})")
    if name != "auto":
        if name == "fp16" and device.type == "cpu":
            raise SimCLRError(f"{flag} fp16 needs a GPU; use bf16 or fp32 on the CPU")
        if name == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
            _warn_emulated_bf16()
        if name == "bf16" and device.type == "cuda" and not cuda_has_native_bf16():
            _warn_emulated_cuda_bf16()
        return name
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def cuda_has_native_bf16() -> bool:
    """bf16 in hardware (Ampere and later). torch's plain is_bf16_supported() also says
    yes where it is emulated (V100, T4: slow), where fp16 with a scaler is the choice."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.3: emulation was not counted
        return torch.cuda.is_bf16_supported()


@functools.cache  # the CPU's flags are fixed; every feature extraction asks
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@functools.cache
def _warn_emulated_bf16() -> None:
    """Once per process: every command that extracts features resolves the precision."""
    # Measured 10x slower than fp32 on an AVX2-only EPYC (44 vs 450 views/s, ResNet-18
    # x0.25, 32 px, training step), with 2-3.5x the memory the autograd graph shows.
    log.warning("--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 "
                "is emulated and much slower than fp32; --precision auto picks fp32 here")


@functools.cache
def _warn_emulated_cuda_bf16() -> None:
    """Once per process, as :func:`_warn_emulated_bf16`: a GPU before Ampere (V100, T4)
    runs bf16 emulated, without its tensor cores, where fp16 runs on them."""
    log.warning("--precision bf16: this GPU has no native bf16 (it needs Ampere or later), "
                "so bf16 is emulated and much slower; --precision auto picks fp16 (with loss "
                "scaling) here")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a precision name ('fp32' -> no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` through torch.compile (``--compile``), what an earlier run of this
    process compiled forgotten first: a sweep's cells then each compile their own graphs,
    alike, not the later cells a shape-generic one (a new --image-size) and, past
    dynamo's limit of recompilations, none at all (eager, said only in a log line)."""
    torch._dynamo.reset()
    return torch.compile(module)  # type: ignore[return-value]  # (a Module's: an OptimizedModule)


@contextlib.contextmanager
def compile_failure_is_an_error() -> Iterator[None]:
    """torch.compile failing to build the model (no C++ compiler for the CPU, no Triton
    for the GPU: its error comes at the first step, ~100 lines deep) as one line."""
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        yield
    except BackendCompilerFailed as exc:
        inner = getattr(exc, "inner_exception", None) or exc
        cause = (str(inner).strip().splitlines() or [""])[0][:200]
        raise SimCLRError(
            f"--compile: torch.compile could not build the model ({type(inner).__name__}"
            f"{': ' + cause if cause else ''}); it needs a C++ compiler on a CPU, Triton on "
            "a GPU: install it, or go on without --compile (--resume RUN --no-compile)"
        ) from None


def _git(here: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """``git args`` run in ``here`` (None: no git, or it hung)."""
    try:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_state(here: Path | None = None) -> tuple[str | None, bool | None]:
    """The commit of the source tree this package runs from, and whether its files differ
    from that commit (uncommitted changes), if it is a git checkout; (None, None) if not.
    A package installed into some other project's repository (a .venv inside it) is not
    that project's commit: the package's own files must be tracked there."""
    here = here or Path(__file__).resolve().parent
    tracked = _git(here, "ls-files", "--error-unmatch", "--", "__init__.py")
    head = _git(here, "rev-parse", "HEAD") if tracked and tracked.returncode == 0 else None
    sha = head.stdout.strip() or None if head and head.returncode == 0 else None
    if sha is None:
        return None, None
    diff = _git(here, "diff", "--quiet", "HEAD", "--", ".")  # (exits 1 where changed)
    return sha, None if diff is None or diff.returncode > 1 else diff.returncode == 1


# The command line provenance() records: sys.argv, unless simclr.cli.main was handed
# its arguments (the Python API, tests), whose command this then is.
COMMAND_LINE: list[str] | None = None


# Set by a sweep for the processes that train a cell (--processes): the sweep's command
# line (JSON), which they record as the one-process cell records it. Their own, a hidden
# file's --config and the internal --sweep-cell, runs nothing once the file is gone.
SWEEP_COMMAND_ENV = "SIMCLR_SWEEP_COMMAND"


def command_line() -> list[str] | None:
    """The simclr command this process runs (argv), or None where simclr is used as a
    library (a script's or pytest's own argv says nothing of how to run simclr again);
    a sweep's cell trained by processes of its own records the sweep's."""
    if COMMAND_LINE:
        return list(COMMAND_LINE)
    swept = os.environ.get(SWEEP_COMMAND_ENV)
    if swept and "--sweep-cell" in sys.argv:
        try:
            line = json.loads(swept)
        except ValueError:
            line = None
        if isinstance(line, list) and all(isinstance(word, str) for word in line):
            return line
    program = Path(sys.argv[0]) if sys.argv else Path()
    if program.name == "simclr" or (program.name == "__main__.py" and
                                    program.parent.name == "simclr"):
        # as typed: the processes of --processes run simclr/__main__.py, the shell's
        # simclr is a path to its entry point
        return ["simclr", *sys.argv[1:]]
    return None


def provenance() -> dict[str, Any]:
    """Versions, git SHA and arguments, logged at the start of every run (as DINO does)."""
    import torchvision

    from simclr import __version__

    sha, dirty = git_state()
    return {
        "simclr": __version__,
        "git_sha": sha,
        "git_dirty": dirty,  # (the run's code is not the commit's alone)
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": command_line() or list(sys.argv),
        # where it was typed: its paths may be relative (info's `cd CWD && ...`)
        "cwd": working_folder(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
    }


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# cuBLAS's workspace, fixed for reproducible matmuls (what torch's message asks for)
CUBLAS_WORKSPACE = ":4096:8"


def use_deterministic_algorithms(device: torch.device) -> None:
    """torch's deterministic kernels for a run on ``device`` (``--deterministic``).

    On CUDA cuBLAS needs a fixed workspace too (CUBLAS_WORKSPACE_CONFIG, read when a
    matmul runs): without it, torch before pytorch#161749 raises at the run's first
    matmul. Set before any CUDA work, unless the user set it (a value of theirs stays);
    :func:`process_settings_restored` puts the environment back after the run.
    """
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)


@contextlib.contextmanager
def process_settings_restored() -> Iterator[None]:
    """torch's thread count, deterministic-algorithms switch (with the cuBLAS workspace
    setting, CUBLAS_WORKSPACE_CONFIG) and cuDNN autotuner as they were before a run set
    them (a library caller's notebook goes on as it was; glibc's allocator tuning,
    :func:`tune_cpu_allocator`, stays). Also a decorator."""
    threads = torch.get_num_threads()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    benchmark = torch.backends.cudnn.benchmark

    def restore(quiet: bool) -> None:  # each setting on its own: one failing stops none
        errors = (Exception,) if quiet else ()
        with contextlib.suppress(*errors):
            torch.set_num_threads(threads)
        with contextlib.suppress(*errors):  # only if changed: the switch may import
            if (torch.are_deterministic_algorithms_enabled(),  # torch's compiler stack
                    torch.is_deterministic_algorithms_warn_only_enabled()) != deterministic:
                torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace
        with contextlib.suppress(*errors):
            torch.backends.cudnn.benchmark = benchmark

    try:
        yield
    except BaseException:
        # A Ctrl-C in the middle of a lazy import (torch._dynamo, while the model is
        # built) leaves modules half-imported, which the restore may trip over: the
        # exception on its way, not that error, is what the caller must see.
        restore(quiet=True)
        raise
    restore(quiet=False)


def set_threads(threads: int | None, quiet: bool = False) -> None:
    """torch's CPU threads for the model (``--threads``; None or 0: torch's choice). More
    threads than usable cores is said (unless ``quiet``: said already): they only take
    turns, and a step slows down."""
    if not threads:
        return
    cores = usable_cores()
    if threads > cores and not quiet:
        log.warning("note: --threads %d is more than the %d CPU core(s) this process may use; "
                    "the extra threads take turns, which slows a step down", threads, cores)
    torch.set_num_threads(threads)


def tune_cpu_allocator() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    A training step frees and reallocates the same activation-sized buffers every
    step; glibc's default hands big blocks back with munmap and page-faults them in
    again, which cost about 25% of a ResNet-18 step on a 2-core CPU (measured: 538-577
    -> 711-718 views/s at width 0.5, bf16, batch 256). Returns False where glibc is not
    the allocator.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30)
        ok &= libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return False
    return bool(ok)


@dataclass
class SaveSchedule:
    """When a training writes a periodic checkpoint: every ``every`` steps (0: never)
    and, between those, once ``every_s`` seconds (0: never) passed since the last one,
    so a slow step (a big model on a CPU) cannot leave hours of training unsaved.

    ``due(step, final)`` names the rule that fires, restarting the clock: "steps"
    (every process decides alike, so the caller may raise on a diverged model: all
    processes do), "clock" (each process's own clock: the caller must not raise, as the
    others would not; it just does not save a diverged model; never at the ``final``
    step, whose checkpoint the caller writes anyway), or None.
    """

    every: int = 0
    every_s: float = 0.0
    last: float = field(default_factory=lambda: time.perf_counter())

    def due(self, step: int, final: bool = False) -> str | None:
        now = time.perf_counter()
        if self.every and step % self.every == 0:
            rule = "steps"
        elif self.every_s and not final and now - self.last >= self.every_s:
            rule = "clock"
        else:
            return None
        self.last = now
        return rule


class StopFlag:
    """Turns SIGTERM/SIGINT, and SIGHUP and SIGUSR1 (:data:`simclr.interrupts.STOP_SIGNALS`:
    a closed session, a scheduler's warning), into a request to stop after the current
    step, named by its signal. The first one says so on stderr (:func:`say_stop_requested`,
    once per machine: its first process), so that a person who pressed Ctrl-C knows a
    checkpoint is coming rather than pressing again. A second Ctrl-C stops at once; one
    raised where Python would drop it (a weakref callback: pretrain called from
    Python has no :func:`simclr.cli.main` around it) is sent again
    (:func:`simclr.interrupts.deliver_dropped_interruptions`)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}
        self._put_back_hook: Callable[[], None] | None = None
        self._says = True

    def __enter__(self) -> StopFlag:
        from simclr.distributed import local_rank

        # decided here, not in the handler: it imports nothing
        self._says = local_rank() == 0  # (the launcher's processes share one stderr)
        for sig in signals_taken():
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        if self._previous:
            self._put_back_hook = deliver_dropped_interruptions()
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if first and self._says:
            say_stop_requested(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._put_back_hook is not None:
            self._put_back_hook()


def say_stop_requested(signum: int) -> None:
    """One line on stderr when a signal asks a training to stop (:class:`StopFlag`): the
    step in progress may take a while, and silence invited a second Ctrl-C, which stops
    at once without the checkpoint. Runs inside a signal handler: a closed, broken or
    busy stderr (a write it interrupted: a reentrant call) loses the line, never the
    request."""
    again = " (Ctrl-C again stops now, without saving)" if signum == signal.SIGINT else ""
    line = (f"simclr: {signal.Signals(signum).name} received: stopping after this step "
            f"to save a checkpoint{again}\n")
    with contextlib.suppress(Exception):  # (a second Ctrl-C's KeyboardInterrupt goes on)
        if sys.stderr.isatty():
            line = "\n" + line  # off a progress bar's line (after the terminal's ^C)
        sys.stderr.write(line)
        sys.stderr.flush()


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """DataLoader workers' ``worker_init_fn``: SIGINT and the stop signals (SIGTERM,
    SIGHUP, SIGUSR1) are the main process's to handle. A scheduler (SLURM), torchrun or
    a closed terminal signals the whole process group; workers that died of it would
    crash the step, and with it the checkpoint the signal asks for. (They still exit
    with the main process: :func:`_kill_daemons_at_exit`.)"""
    for sig in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def loader_worker_init() -> Callable[[int], None]:
    """simclr's DataLoaders' ``worker_init_fn``, made in the main process before its
    workers start: :func:`ignore_stop_signals`, and the workers' multiprocessing temp
    folder is the main process's own. A worker sharing a batch by file descriptor has
    multiprocessing's resource sharer listen in that folder; made by the worker, only
    its own exit removed it, and workers end by SIGKILL at a stopped command's exit
    (:func:`_kill_daemons_at_exit`): an empty ``$TMPDIR/pymp-*`` was left per worker.
    The main process's is removed at its exit, whichever way its workers end. And PIL's
    truncated-image setting is the main process's (:func:`simclr.decode.pil_truncation`)."""
    from simclr.decode import pil_truncation

    return functools.partial(_init_loader_worker, multiprocessing.util.get_temp_dir(),
                             pil_truncation())


def _init_loader_worker(tempdir: str, truncated: bool, worker_id: int) -> None:
    ignore_stop_signals(worker_id)
    # (one set here: multiprocessing.util.get_temp_dir returns it, making no folder of
    # the worker's own, and the worker's exit removes nothing)
    multiprocessing.current_process()._config["tempdir"] = tempdir  # type: ignore[attr-defined]  # (private)
    from simclr.decode import pil_truncation

    pil_truncation(truncated)


SCRIPT_GUARD = 'if __name__ == "__main__":'


def refuse_spawned_import() -> None:
    """Refuse to start work in a process still importing its parent's main script.

    Under the spawn start method (macOS's and Windows' default, forkserver alike) every
    new worker imports the script that started simclr; a call outside
    :data:`SCRIPT_GUARD` would run again in each, which found the run folder held by its
    own parent. (multiprocessing flags such a process with ``_inheriting``, which its
    own 'bootstrapping phase' check reads too.)"""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SimCLRError("simclr was called again by a worker process importing the script "
                          "that started it (the spawn start method imports it in each "
                          f"worker): call simclr under `{SCRIPT_GUARD}` in that script")


def worker_death(exc: BaseException) -> SimCLRError | None:
    """The one line for a DataLoader worker that ended unexpectedly (torch raises a
    RuntimeError 'DataLoader worker (pid N) ...'); None for any other error."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or not text.startswith("DataLoader worker (pid"):
        return None
    what = text.split(". ", 1)[0].removeprefix("DataLoader worker ").rstrip(".")  # (pid N) ...
    return SimCLRError(f"a data-loading worker process {what} "
                       f"({died_why(multiprocessing.get_start_method(allow_none=True))})")


def died_why(start_method: str | None) -> str:
    """Why a worker process of ``start_method`` most likely ended without a word: the
    out-of-memory killer, or (not forked) a script without the guard, which each worker
    imports and which then calls simclr again (:func:`refuse_spawned_import`)."""
    why = "out of memory? try fewer --workers"
    if start_method not in (None, "fork"):
        why = (f"a script must call simclr under `{SCRIPT_GUARD}`, as each worker imports "
               f"it; else {why}")
    return why


def close_loader_iterator(batches: Any) -> None:
    """Stop a finished DataLoader iterator's worker processes now, Ctrl-C held until they
    are stopped. Left to the iterator's ``__del__``, a Ctrl-C landing there (the gap
    between two extractions) is printed as "Exception ignored" and lost: the command
    would go on as if it had not been pressed.

    Called while a Ctrl-C or SIGTERM stops the command (the exception being handled is,
    or was raised over, that interruption: a training's stop request raises none), the
    workers are killed (:func:`_kill_workers`) rather than let finish the batch each is
    decoding: torch waits 5 s for each, then sends the SIGTERM they ignore and waits 5 s
    more, and a batch of large photos takes longer, so a command that "stops at once"
    took 6-10 s to."""
    shutdown = getattr(batches, "_shutdown_workers", None)  # (absent without workers)
    if shutdown is None:
        return
    if interruption_within(sys.exc_info()[1]) is not None:
        shutdown = functools.partial(_killed_then_shut_down, batches, shutdown)
    pressed: list[Any] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *frame: pressed.append(frame))
    except ValueError:  # not the main thread: no signal lands here
        shutdown()
        return
    try:
        shutdown()
    finally:
        # (None: the handler was not installed from Python, as at interpreter shutdown,
        # when a finalizer closes the iterator; None cannot be set back: TypeError)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if pressed and callable(previous):  # delivered now: KeyboardInterrupt, or a StopFlag
        previous(*pressed[0])


def _killed_then_shut_down(batches: Any, shutdown: Callable[[], None]) -> None:
    _kill_workers(batches)
    shutdown()  # (its queues and threads closed as usual; it finds the workers ended)


def _kill_workers(batches: Any) -> None:
    """SIGKILL the worker processes of DataLoader iterator ``batches`` (they hold nothing
    to save: the batches they decode are thrown away), first taken off torch's list of
    workers whose end is an error (its SIGCHLD handler would raise "DataLoader worker
    (pid N) is killed by signal" for them). An iterator already shut down is left as it
    is. (A pinned-memory thread then waits up to 5 s for a worker killed while it held
    the result queue's lock: a moment's window, where before every stop waited.)"""
    if getattr(batches, "_shutdown", True):
        return
    if getattr(batches, "_worker_pids_set", False):
        from torch.utils.data._utils import signal_handling

        signal_handling._remove_worker_pids(id(batches))
        batches._worker_pids_set = False
    for worker in getattr(batches, "_workers", ()):
        if worker.is_alive():
            worker.kill()


def _kill_daemons_at_exit() -> None:
    """At exit, multiprocessing ends the daemonic children (loader workers a loader did
    not shut down itself, e.g. after an error) with SIGTERM and waits for them: ours
    ignore it, so they get SIGKILL. They hold nothing to save. A child that takes
    SIGTERM is left to it (the program's own, which it lets clean up): sent here, as
    multiprocessing would, so that a worker which set SIG_IGN meanwhile (it had just
    started) is found and killed too rather than waited on forever. (torch's SIGCHLD
    handler would report those ends as failed workers: it is uninstalled first.)"""
    daemons = [child for child in multiprocessing.active_children() if child.daemon]
    if not daemons:
        return
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    deaf = [child for child in daemons if _ignores_sigterm(child.pid)]
    hearing = [child for child in daemons if child not in deaf]
    for child in hearing:
        child.terminate()
    deadline = time.monotonic() + 0.5
    for child in hearing:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in deaf + [c for c in hearing if c.is_alive() and _ignores_sigterm(c.pid)]:
        child.kill()


def _ignores_sigterm(pid: int | None) -> bool:
    """Whether process ``pid`` ignores SIGTERM (its SigIgn mask in /proc); True where
    that cannot be read (no /proc: macOS), as simclr's loader workers do."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            mask = next(line for line in f if line.startswith("SigIgn:")).split()[1]
    except (OSError, StopIteration, IndexError):
        return True
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


# atexit runs the last registered first: after multiprocessing's own exit handler is
# registered (by its import), so this one runs before it.
atexit.register(_kill_daemons_at_exit)


def stopped_by(signal_name: str | None) -> str:
    """What stopped a training, for its last line: the signal this process received,
    or, under torchrun, one that reached another process (they stop together)."""
    return f"stopped by {signal_name or 'a signal to another process'}"
