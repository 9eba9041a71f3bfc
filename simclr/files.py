"""Files written whole or not at all: a reader (a resumed run, a scheduler's next job)
sees the old file or the new one, never half of one.

Checkpoints, exported encoders and decoded caches are written to
``<name>.tmp-<token>-<pid>`` beside their target (a long name shortened to fit) and
renamed over it; a process killed mid-write (SIGKILL, the out-of-memory killer) leaves
its temporary file, which a later write removes. A run holds its folder
(:func:`lock_folder`) so that no second run writes into it meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simclr.errors import SimCLRError

# Drawn once a process (forked children share it, not their pid): two containers that
# share a cache folder may both run simclr as pid 7, and must not write one file.
_TOKEN = secrets.token_hex(4)


NAME_MAX = 255  # bytes in a file name (Linux, macOS; Windows: 255 characters, no fewer)
# ".tmp-<token>-<pid>" at its longest: a pid of 10 digits (Windows' are 32-bit numbers)
_TEMPORARY_TAIL = len(f".tmp-{_TOKEN}-") + 10


def temporary_name(target: Path) -> Path:
    """Where this process writes ``target`` before renaming it: ``<name>.tmp-<token>-<pid>``
    (the pid last, which :func:`remove_stale_temporaries` reads), ``<name>`` shortened
    where a long one would pass a file name's limit (:func:`temporary_stem`)."""
    return target.with_name(f"{temporary_stem(target.name)}.tmp-{_TOKEN}-{os.getpid()}")


def temporary_stem(name: str) -> str:
    """What the temporary files of a file ``name`` begin with (``<stem>.tmp-*`` finds
    them): ``name``, or, where the ``.tmp-<token>-<pid>`` after it would pass 255 bytes
    (a legal name was refused after all the work: 'File name too long'), a prefix of it
    that fits, a hash of the whole name (two long names alike at the start get
    temporaries of their own) and its extension (``*.pt.tmp-*`` still finds a
    checkpoint's)."""
    room = NAME_MAX - _TEMPORARY_TAIL
    if len(os.fsencode(name)) <= room:
        return name
    suffix = Path(name).suffix
    if len(os.fsencode(suffix)) > 16:  # (no extension, a dot in a long name)
        suffix = ""
    tail = f"-{hashlib.sha256(os.fsencode(name)).hexdigest()[:8]}{suffix}"
    prefix = name[:room - len(tail)]
    while len(os.fsencode(prefix + tail)) > room:  # (characters of several bytes)
        prefix = prefix[:-1]
    return prefix + tail


def discard(path: Path) -> None:
    """Delete ``path`` if it is there, as a clean-up after a failure: a file that cannot
    be deleted (read-only file system, no permission) must not replace the error being
    reported with its own."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(target: Path, write: Callable[[Path], object],
                     replace: bool = True) -> None:
    """``write(tmp)``, then make ``tmp`` durable and rename it over ``target``.

    ``tmp`` is :func:`temporary_name`'s, in the same folder (same file system, so the rename
    is atomic and a reader sees the old file or the new one, never half of one). On any
    exception, ``write``'s included, the temporary file is removed, ``target`` is left
    untouched and the exception propagates. ``replace`` False: a ``target`` there already
    (another process's, written meanwhile) is kept and :class:`AlreadyWritten` raised
    (:func:`publish`).
    """
    tmp = temporary_name(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A killed write's leftover of the same name may be a hard link to another file
        # (checkpoint.link_same_periodic): writing into it would change that file.
        tmp.unlink(missing_ok=True)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        publish(tmp, target, replace)
        fsync_dir(target.parent)
    except BaseException:
        discard(tmp)
        raise
    # (escaped: a name with [, * or ? would be read as a pattern, matching no leftover)
    remove_stale_temporaries(target.parent, f"{glob.escape(temporary_stem(target.name))}.tmp-*")


class AlreadyWritten(Exception):
    """:func:`publish` found its target there: another process wrote it meanwhile.
    (No OSError: a FileExistsError of the write itself is a failure of another kind.)"""


def publish(tmp: Path, target: Path, replace: bool = True) -> None:
    """Rename the whole file ``tmp`` to ``target``. ``replace`` False: never over an
    existing ``target`` (:class:`AlreadyWritten`, ``tmp`` left to the caller): a hard
    link, which the file system refuses atomically where the name is taken (two
    processes checking first and renaming after would both pass), then ``tmp`` removed.
    Where hard links are not supported (some FUSE and SMB mounts, FAT), a check just
    before the rename: a race left open, rather than a write refused there."""
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise AlreadyWritten(str(target)) from None
    except OSError:  # (EPERM, ENOTSUP, ...: no hard links here)
        if os.path.lexists(target):
            raise AlreadyWritten(str(target)) from None
        os.replace(tmp, target)
        return
    discard(tmp)  # (one left behind is debris that remove_stale_temporaries collects)


def written(path: Path, write: Callable[[Path], Any], replace: bool = True) -> Path:
    """``write(tmp)`` then renamed to ``path`` (:func:`write_atomically`): a full
    disk or a lost permission ends in one line, and an earlier file stays whole.
    ``replace`` False (a command without ``--overwrite``): a ``path`` that another
    process wrote meanwhile is kept, and refused in one line (:func:`taken`)."""
    try:
        write_atomically(path, write, replace)
    except AlreadyWritten:
        raise taken(path) from None
    except OSError as exc:
        raise SimCLRError(f"could not write {path}: {exc.strerror or exc}") from None
    return path


def taken(path: Path) -> SimCLRError:
    """The error of a result ``path`` that another process wrote while this one worked:
    that one is kept, this one's is not written."""
    return SimCLRError(f"{path} was written meanwhile by another process (kept; this "
                       "run's was not written): choose another --out, or pass --overwrite "
                       "to replace it")


def finite_json(data: Any, indent: int | None = None) -> str:
    """``data`` as standard JSON: a non-finite float (a diverged loss) as null, where
    Python's json would write NaN, which other JSON readers refuse."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=indent, allow_nan=False)


def write_json(path: Path, data: Any, replace: bool = True) -> Path:
    """``data`` as indented JSON (:func:`finite_json`), through :func:`written`
    (``replace``: see there)."""
    text = finite_json(data, indent=2) + "\n"
    return written(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), replace)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None: missing, unreadable, or not an object: a
    results or summary file cut or edited is then treated as absent, never a crash)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # (RecursionError: `[[[[...` nested deep)
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class SetAside:
    """What :func:`set_aside` renamed: the ``tag`` its files share (``previous-K``) and
    their new ``names``, relative to the folder, in the order asked."""

    tag: str
    names: tuple[str, ...]

    def __str__(self) -> str:
        """The new names as a note names them: 'a.previous-2.json, b.previous-2.png'."""
        return ", ".join(self.names)


def tagged(name: Path, tag: str | None) -> Path:
    """``STEM.TAG.EXT`` of ``name`` (``tag`` None: ``name``): a file set aside as
    ``previous-K`` (:func:`set_aside`)."""
    return name if tag is None else name.with_name(f"{name.stem}.{tag}{name.suffix}")


def set_aside(run_dir: Path, files: tuple[str, ...]) -> SetAside | None:
    """Rename those of ``files`` in ``run_dir`` to ``STEM.previous-K.EXT`` (the first K
    free for all of them), so that what comes next writes afresh and nothing is lost (a
    sweep's stale evaluation or summary, a dead run's logs); returns what it renamed
    (None: there was nothing to set aside)."""
    present = [run_dir / f for f in files if (run_dir / f).exists()]
    if not present:
        return None
    k = 1
    while any(tagged(run_dir / f, f"previous-{k}").exists() for f in files):
        k += 1
    for path in present:
        path.replace(tagged(path, f"previous-{k}"))
    return SetAside(f"previous-{k}", tuple(tagged(p, f"previous-{k}").relative_to(run_dir)
                                           .as_posix() for p in present))


def torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` into ``path``; a failed write (torch's zip writer reports it as
    a RuntimeError) is an OSError, so :func:`written` and checkpoints make it one line.
    A Ctrl-C or SIGTERM during the write stays that interruption
    (:func:`interruption_within`), never a failed write."""
    import torch

    with open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:
            interrupted = interruption_within(exc)
            if interrupted is not None:
                raise interrupted from None
            raise OSError(_write_failure(path, exc)) from None


def interruption_within(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C; SIGTERM's :class:`simclr.interrupts.Terminated` is one)
    that ``exc`` was raised over, if any. A signal handler raises where Python happens to
    be, also inside the file write that torch's C++ zip writer calls: torch then raises a
    RuntimeError ('unexpected pos 30 vs 0') over it, which, taken for a failed write,
    ended an interrupted run as a failed one (exit 2, 'no earlier checkpoint exists')."""
    return next((c for c in _chain(exc) if isinstance(c, KeyboardInterrupt)), None)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised over (``__cause__``, else ``__context__``),
    each once (a chain may loop)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def _write_failure(tmp: Path, exc: RuntimeError) -> str:
    """Why torch.save could not write ``tmp``: the OS's reason for the file's write that
    failed (a file-size limit: 'File too large'), which torch's zip writer raises its own
    RuntimeError over ('unexpected pos 980224 vs 980112'); else the disk, or torch's
    own words."""
    import shutil

    reason = next((c.strerror for c in _chain(exc) if isinstance(c, OSError) and c.strerror),
                  None)
    if reason:
        return reason
    try:
        if shutil.disk_usage(tmp.parent).free < 1 << 20:
            return "No space left on device"
    except OSError:
        pass
    return (str(exc).strip().splitlines() or ["torch.save failed"])[0][:200]

STALE_AFTER_S = 60.0  # a temporary file untouched this long by a dead process is debris


def remove_stale_temporaries(folder: Path, pattern: str,
                             after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the ``<name>.tmp-[<token>-]<pid>`` files matching ``pattern`` in ``folder`` that a
    killed write left (SIGKILL skips the clean-up above): those whose process is gone
    and that were last written over ``after_s`` seconds ago (so a write still running is
    never touched). Returns what was deleted."""
    removed = []
    for path in stale_temporaries(folder, pattern, after_s):
        try:
            path.unlink()
            removed.append(path)
        except OSError:  # gone meanwhile, or not ours to delete: harmless either way
            pass
    return removed


def stale_temporaries(folder: Path, pattern: str, after_s: float) -> list[Path]:
    """The temporary files :func:`remove_stale_temporaries` would delete."""
    found = []
    for path in folder.glob(pattern):
        pid = path.name.rsplit("-", 1)[1]
        try:
            if pid.isdigit() and not _process_alive(int(pid)) and \
                    time.time() - path.stat().st_mtime >= after_s:
                found.append(path)
        except OSError:  # gone meanwhile
            pass
    return found


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (True when that cannot be told: a live run's
    temporary file must never be deleted)."""
    if os.name == "nt":  # os.kill(pid, 0) there sends CTRL_C_EVENT, asking nothing
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


# kernel32's: the least access that reads an exit code; the answers asked for.
_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_INVALID_PARAMETER = 87  # OpenProcess of a pid that no process has
_STILL_ACTIVE = 259


def _windows_process_alive(pid: int) -> bool:
    """:func:`_process_alive` on Windows: kernel32 asked for the process's exit code."""
    import ctypes

    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]  # Windows-only
    except (AttributeError, OSError):  # not Windows after all
        return True
    handle = kernel32.OpenProcess(_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:  # no such process, or another user's (access denied: alive)
        return ctypes.get_last_error() != _ERROR_INVALID_PARAMETER  # type: ignore[attr-defined]  # Windows-only
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


LOCK_NAME = ".simclr.lock"
# How long lock_folder waits for a folder held a moment: folder_holder's shared lock
# (simclr info, a command's checks) lasts microseconds, a run's for the whole run.
LOCK_PATIENCE_S = 0.2


def in_use(folder: Path, holder: str) -> SimCLRError:
    from simclr.launch import srun_copies_hint

    return SimCLRError(f"{folder} is in use by another simclr run ({holder}); wait for it "
                       f"to end, or choose another --out{srun_copies_hint()}")


def folder_holder(folder: Path) -> str | None:
    """Who holds ``folder`` now (its lock file's 'pid N on HOST'), or None when no simclr
    process does: a shared lock, released at once, is refused while a run holds its
    exclusive one (:func:`lock_folder`)."""
    try:
        with open(folder / LOCK_NAME, encoding="utf-8") as f:
            try:
                # Windows has no shared lock: another glance holds it a moment, waited for
                _retried(lambda: _lock(f.fileno(), exclusive=False),
                         LOCK_PATIENCE_S if _exclusive_only() else 0)
            except BlockingIOError:
                f.seek(0)
                return f.read().strip() or "another process"
            except (ImportError, OSError):  # no locks here: nothing tells
                return None
            _unlock(f.fileno())
    except OSError:  # no lock file: never held
        return None
    return None


def lock_folder(folder: Path) -> Any:
    """Hold ``folder`` for this process: an exclusive lock on ``folder/.simclr.lock``
    (flock, or msvcrt's byte lock on Windows; released when the returned file is closed
    or the process ends, however it ends). A second run started into the same folder
    meanwhile is refused in one line instead of interleaving its checkpoints and logs
    with this one's; a folder held only a moment (:func:`folder_holder` asking) is
    waited for, :data:`LOCK_PATIENCE_S` at most. No-op where the platform has neither."""
    path = folder / LOCK_NAME
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives as long as it)
    except OSError as exc:
        raise SimCLRError(f"cannot write in {folder}: {exc.strerror}") from None
    try:
        _retried(lambda: _lock(handle.fileno(), exclusive=True), LOCK_PATIENCE_S)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise in_use(folder, holder) from None
    except ImportError:  # neither fcntl nor msvcrt: no advisory locks of this kind
        handle.close()
        return None
    except OSError:  # a file system without locks (some network mounts): run unguarded
        return handle
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
    except OSError as exc:  # e.g. a full disk
        with contextlib.suppress(OSError):  # (closing flushes again)
            handle.close()
        raise SimCLRError(f"cannot write in {folder}: {exc.strerror}") from None
    return handle


# The byte msvcrt locks: a byte Windows locks cannot be read by another process, so it
# lies past the holder's line ('pid N on HOST'), which others read to name the holder.
_WINDOWS_LOCK_BYTE = 1 << 20


def _exclusive_only() -> bool:
    """Whether the folder lock is msvcrt's (Windows: no fcntl), which has no shared mode."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return True
    return False


def _lock(fd: int, exclusive: bool) -> None:
    """Lock ``fd``'s file without waiting: BlockingIOError while another handle holds it,
    ImportError where the platform has neither fcntl nor msvcrt, another OSError where
    the file system keeps no locks."""
    try:
        import fcntl
    except ImportError:
        import msvcrt  # Windows

        os.lseek(fd, _WINDOWS_LOCK_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows-only
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLOCK):  # held by another handle
                raise BlockingIOError(exc.errno, exc.strerror) from None
            raise
        return
    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    """Let go of :func:`_lock`'s lock on ``fd`` (the handle stays open)."""
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]  # Windows-only
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def held_in_turn(path: Path, waiting: Callable[[], None]) -> Iterator[bool]:
    """Within: this process holds an exclusive lock on the file ``path`` (made if need
    be), waiting its turn while another holds it (``waiting()`` is called once, then;
    yields whether it waited: what the other did may be there now);
    released when the block ends or the process does, however it ends. Where no lock can
    be taken (a read-only folder, a file system or platform without locks) the block runs
    unguarded, as before any lock. The file is deleted as the block ends (held still: a
    process waiting on it then goes on, one arriving later makes a new one), so none is
    left beside what the block wrote; the block must leave its work there for them to
    find, as a cache's build does."""
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives as long as it)
    except OSError:
        yield False
        return
    waited = False
    with handle:
        try:
            _retried(lambda: _lock(handle.fileno(), exclusive=True), LOCK_PATIENCE_S)
        except BlockingIOError:
            waiting()
            waited = True
            while True:  # (Ctrl-C ends the wait as any other)
                time.sleep(0.5)
                try:
                    _lock(handle.fileno(), exclusive=True)
                    break
                except BlockingIOError:
                    continue
        except (ImportError, OSError):
            pass
        try:
            yield waited
        finally:
            with contextlib.suppress(OSError):  # (Windows: not while open; left, empty)
                path.unlink()


def _retried(attempt: Callable[[], None], seconds: float) -> None:
    """``attempt`` (a non-blocking flock), tried again for up to ``seconds`` while it
    raises BlockingIOError: a shared lock taken to ask who holds the folder is let go at
    once, and a run starting then was refused, naming a pid that had perhaps ended.
    Raises the BlockingIOError if the lock is still held then."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            attempt()
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
