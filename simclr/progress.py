"""What a person watching a pretraining run, or a long pass over a data set, sees.

On a terminal, tqdm's bar (with the epoch, latest loss, learning rate and views/s).
Anywhere else (a batch job's log file, ``nohup``, SLURM, a terminal that reports no
width), a bar would write a carriage-return update every second for the whole run;
there a plain line is printed instead, at most every ``PLAIN_EVERY_S`` seconds and at
the last step, with the estimated time left.
The full record of every ``--log-every`` step is in ``metrics.jsonl`` either way.
A pass (an evaluation's features, neighbours' queries: :meth:`Progress.of_pass`) is
shown alike, but only once it lasts: a bar after a second that goes when done, or
plain lines once it has run ``PLAIN_EVERY_S`` seconds.

Whatever reads that output may leave first (``simclr pretrain | head``, a closed ssh
session's pipe, a full disk under ``> log``): :class:`Unfailing` streams keep a command's
work going without its output, rather than end it at its next line.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from simclr.errors import SimCLRError

# The notes a command says once (an evaluation opens --train and --test, a launch has
# several processes), each set registered by the module that keeps it (said_once):
# all cleared when a command starts (forget_said_once), so that a notebook's second
# command on a messy folder says its notes again.
_SAID_ONCE: list[set[Any]] = []


def said_once() -> set[Any]:
    """A new set of what a module has said once per command, registered to be cleared
    at each command's start (:func:`forget_said_once`)."""
    said: set[Any] = set()
    _SAID_ONCE.append(said)
    return said


def forget_said_once() -> None:
    """Clear every set :func:`said_once` made: each command's notes are its own."""
    for said in _SAID_ONCE:
        said.clear()

PLAIN_EVERY_S = 30.0


def duration(seconds: float) -> str:
    """'1h02m', '3m05s' or '12s'."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def on_a_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a bar can be drawn on: one that reports 0 columns
    (`script` without a size, `docker run -t`, some CI runners) is not, tqdm's bar fitted
    to it being carriage returns alone. (A size that cannot be read: a terminal's.)"""
    if not stream.isatty():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):  # (no descriptor: a stand-in's)
        return True


class Progress:
    """Progress of a run of ``total`` steps that starts at step ``start`` (a resumed run
    later than 0). ``enabled=False`` (``--no-progress``, or a process other than rank 0)
    shows nothing. ``desc`` names it and ``unit`` its items on the bar; ``transient``:
    the bar shows after a second and goes when closed (a pass, not a run)."""

    def __init__(self, total: int, start: int, enabled: bool, stream: TextIO | None = None,
                 every_s: float = PLAIN_EVERY_S, desc: str = "pretrain", unit: str = "step",
                 transient: bool = False) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.start, self.every_s = total, start, every_s
        self.enabled = enabled
        self.desc, self.unit = desc, unit
        self.done, self.said = start, False  # (a pass's items, and whether a line said so)
        self.bar = None
        self.began = self.last_line = self.last_beat = time.perf_counter()
        if enabled and on_a_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit=unit, dynamic_ncols=True,
                            desc=desc, mininterval=1.0, file=self.stream,
                            leave=not transient, delay=1.0 if transient else 0.0)

    @classmethod
    def of_pass(cls, total: int, desc: str, enabled: bool, unit: str = "image",
                stream: TextIO | None = None, every_s: float | None = None) -> Progress:
        """A pass over ``total`` items, advanced by :meth:`advance` (a feature pass over
        100k images ran 2 minutes without a word); ``every_s`` None: ``PLAIN_EVERY_S``."""
        every_s = PLAIN_EVERY_S if every_s is None else every_s
        return cls(total, 0, enabled, stream, every_s, desc, unit, transient=True)

    @classmethod
    def of_named_pass(cls, total: int, name: str | None, unit: str = "image") -> Progress:
        """:meth:`of_pass` of a pass a caller names, shown on rank 0 alone; ``name`` None:
        unseen (the kNN monitor inside a pretraining, a caller that asked for quiet)."""
        from simclr.distributed import is_main

        return cls.of_pass(total, name or "", name is not None and is_main(), unit=unit)

    def advance(self, n: int) -> None:
        """``n`` more of a pass's items done: the bar moves; elsewhere a line at most every
        ``every_s`` seconds (the last one is :meth:`close`'s)."""
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.done < self.total and now - self.last_line >= self.every_s:
            self._pass_line(now)

    def _pass_line(self, now: float) -> None:
        self.last_line, self.said = now, True
        seconds, done = now - self.began, self.done - self.start
        left = f", about {duration(seconds / done * (self.total - self.done))} left" \
            if 0 < done and self.done < self.total else ""
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}s, {duration(seconds)}{left}",
              file=self.stream, flush=True)

    def step(self, seconds: float) -> None:
        """One more training step, after its logged line if any (:meth:`record`), after
        ``seconds`` of this process's training (since ``start``, as :meth:`record` is
        given: a --compile step, a resumed run's earlier sessions not among them): the bar
        moves; elsewhere (a log file) a short line once ``every_s`` seconds pass without
        one, so slow steps between --log-every's still show the run goes on (its loss:
        the next logged step's line, which needs no host sync before). The time left is
        the training seconds' per step, said once a step was timed (the wall time since
        the start held a 3-minute compile: 'about 2h53m left' of a 6 s run)."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if not self.enabled or self.bar is not None or self.done >= self.total:
            return
        now = time.perf_counter()
        if now - max(self.last_line, self.last_beat) < self.every_s:
            return
        self.last_beat = now  # (not last_line: the logged lines keep their own spacing)
        done = self.done - self.start
        left = f", about {duration(seconds / done * (self.total - self.done))} left" \
            if seconds > 0 else ""
        print(f"step {self.done}/{self.total}: {duration(seconds)}{left}", file=self.stream,
              flush=True)

    def set_total(self, total: int) -> None:
        """A time budget re-fits the schedule as it measures the speed."""
        self.total = total
        if self.bar is not None:
            self.bar.total = total

    def record(self, record: dict[str, Any], seconds: float, last: bool) -> None:
        """A logged step's ``record`` (step, epoch, loss, lr, views_per_s) after
        ``seconds`` of this process's training (since ``start``)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(epoch=f"{record['epoch']:.1f}", loss=f"{record['loss']:.3f}",
                                 lr=f"{record['lr']:.3g}", views_s=f"{record['views_per_s']:.0f}")
            return
        now = time.perf_counter()
        if not last and now - self.last_line < self.every_s:
            return
        self.last_line = now
        step, done = record["step"], record["step"] - self.start
        left = f", about {duration(seconds / done * (self.total - step))} left" \
            if done > 0 and not last else ""
        print(f"step {step}/{self.total} (epoch {record['epoch']:.1f}): loss "
              f"{record['loss']:.4f}, lr {record['lr']:.3g}, {record['views_per_s']:.0f} "
              f"views/s, {duration(seconds)}{left}", file=self.stream, flush=True)

    def close(self) -> None:
        """The bar closed; a pass that said where it was says where it ended."""
        if self.bar is not None:
            self.bar.close()
        elif self.said:
            self._pass_line(time.perf_counter())
            self.said = False  # (a second close says nothing more)


class Unfailing:
    """``stream`` (stdout or stderr, called ``name``) whose failed write or flush (its
    reader gone, EPIPE; a full disk, ENOSPC) does not fail the command: from then on its
    output goes nowhere (its file descriptor is pointed at /dev/null, so that Python's own
    flush at exit fails no more either), and the other stream says so once, unless the
    reader is merely gone. ``strict``: a command whose output is its work (``simclr
    info``) ends there instead: a gone reader as BrokenPipeError (a quiet exit), another
    error as a one-line SimCLRError."""

    def __init__(self, stream: TextIO | Nowhere, name: str, strict: bool = False) -> None:
        self.stream, self.name, self.strict = stream, name, strict
        self.lost: OSError | None = None
        self.before: tuple[int, int] | None = None  # (descriptor, a copy of what it was)

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self.stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self.stream.flush()
            except OSError as exc:
                self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        self.lost = exc
        with contextlib.suppress(OSError, ValueError, AttributeError):  # (no descriptor)
            fd = self.stream.fileno()
            self.before = (fd, os.dup(fd))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        gone = isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE
        if self.strict:
            if gone:
                raise BrokenPipeError(errno.EPIPE, "the reader is gone") from None
            raise SimCLRError(f"could not write the {self.name}: {exc.strerror or exc}") \
                from None
        if not gone:  # (said on the other stream; nothing, if it is this one)
            logging.getLogger("simclr").warning(
                "note: could not write the %s (%s); the command goes on without it",
                self.name, exc.strerror or exc)

    def put_back(self) -> None:
        """The descriptor pointed at /dev/null as it was (a caller from Python keeps its
        process's output after the command: its disk may have room again)."""
        if self.before is not None:
            fd, copy = self.before
            with contextlib.suppress(OSError):
                os.dup2(copy, fd)
            os.close(copy)
            self.before = None

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's
        return getattr(self.stream, name)


class Nowhere(io.TextIOBase):
    """What a closed stream (``>&-``: Python's sys.stdout None) is written to: nothing."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


CLOSED = "the standard output is closed, and it is this command's result"


def _open(stream: TextIO | None, fd: int, own_process: bool) -> TextIO | Nowhere:
    """``stream``, or where it is closed (None), :class:`Nowhere`; in the command line's
    own process its descriptor ``fd`` then held by /dev/null, so that no file the command
    opens gets it (and with it what C code and child processes print)."""
    if stream is not None:
        return stream
    if own_process:
        with contextlib.suppress(OSError):
            os.fstat(fd)
            return Nowhere()
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    return Nowhere()


@contextlib.contextmanager
def unfailing_output(strict: bool = False, own_process: bool = True) -> Iterator[None]:
    """sys.stdout and sys.stderr as :class:`Unfailing` streams within the block (a
    command's), put back after it; their descriptors too unless ``own_process`` (the
    command line's process, which ends with the command: Python's flush at its exit then
    meets /dev/null, not the pipe or the disk that failed). A closed stream goes nowhere,
    unless it is stdout and ``strict``: the command's result has nowhere to go, and it
    ends before its work, in one line. (``strict`` is stdout's alone: a note refused by
    stderr's full disk does not end a command whose result stdout takes.)"""
    before = sys.stdout, sys.stderr
    streams = (Unfailing(_open(sys.stdout, 1, own_process), "standard output", strict),
               Unfailing(_open(sys.stderr, 2, own_process), "standard error"))
    sys.stdout, sys.stderr = streams  # type: ignore[assignment]
    try:
        if strict and before[0] is None:
            raise SimCLRError(CLOSED)
        yield
    finally:
        sys.stdout, sys.stderr = before
        if not own_process:
            for stream in streams:
                stream.put_back()
