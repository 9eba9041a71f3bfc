"""The one exception type that means "the user asked for something impossible".

The command line turns a :class:`SimCLRError` into a one-line message and a non-zero
exit status; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import stat
import unicodedata
from pathlib import Path
from typing import Any


class SimCLRError(Exception):
    """A user error: missing path, bad flag value, corrupt checkpoint, ...

    The message must name the problem on one line (no traceback is shown).
    """


def user_message(exc: BaseException) -> str:
    """The one line to show for a user error.

    A SimCLRError raised in a DataLoader worker reaches the main process re-raised with
    the worker's whole traceback in its text (torch's ``ExceptionWrapper``); only the
    original message, the traceback's last line after the exception's name, is kept.
    """
    text = str(exc)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return printable(text)


def printable(text: str) -> str:
    """``text`` with what a terminal would act on written as the escape Python writes
    (``\\x1b``, ``\\n``): the control characters (C0, newline and tab included, DEL,
    C1), the line and paragraph separators and the bidirectional overrides and isolates
    (which reorder what follows). A name simclr did not choose (a path, a class in a
    checkpoint, any text the user gave) cleared the screen, set the window title or,
    with a newline, faked a line of output of its own. The rest of Unicode stays as it
    is, the spaces and joiners real names hold included (macOS's narrow no-break space
    in screenshot names, the zero-width non-joiner of Persian words, emoji sequences):
    escaped, a name pasted back from the output named no file."""
    if text.isprintable():  # (the common case, at C speed)
        return text
    return "".join(repr(c)[1:-1] if _acts(c) else c for c in text)


# The format characters (Cf) that reorder text on display: LRE, RLE, PDF, LRO, RLO and
# LRI, RLI, FSI, PDI (a "Trojan source" name); the other Cf (joiners, soft hyphen) do not
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _acts(c: str) -> bool:
    """Whether a terminal acts on ``c`` rather than drawing it (:func:`printable`)."""
    return unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI


NOT_REGULAR = "not a regular file (a named pipe, socket or device)"
LINK_LOOP = "a symbolic link loop"


def unreadable_path(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be opened as a file although something is there, in a few
    words (:data:`LINK_LOOP`, or :data:`NOT_REGULAR`: opening a named pipe would wait
    for a writer forever); None for a regular file, a folder or nothing at all, which
    callers name their own way."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return LINK_LOOP if exc.errno == errno.ELOOP else None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else NOT_REGULAR


LONG_NAME = "a name longer than the file system allows"
# Why a path names nothing at all, by errno: each folder and file on the way is looked up.
_UNUSABLE = {errno.ELOOP: LINK_LOOP, errno.ENAMETOOLONG: LONG_NAME}
_QUOTES = "'\""


def unusable_path(path: str | os.PathLike) -> str | None:
    """Why ``path`` can be neither read nor written, in a few words: a symbolic link loop
    on the way (:data:`LINK_LOOP`, ``ln -s loop loop``) or a name of over 255 bytes
    (:data:`LONG_NAME`); None for any other path, there or not, which callers check
    their own way. (pathlib's checks raise these, or say a loop is no folder.)"""
    from simclr.files import NAME_MAX

    path = os.path.expanduser(path)
    # (also below a folder not made yet, where the OS would say only 'No such file')
    if any(len(os.fsencode(part)) > NAME_MAX for part in Path(path).parts):
        return LONG_NAME
    try:
        os.stat(path)
    except OSError as exc:
        return _UNUSABLE.get(exc.errno or 0)
    return None


def unusable_path_error(exc: BaseException) -> str | None:
    """The one line for an error that a link loop or a name too long raised where no
    check named the flag (its path and :func:`unusable_path`'s words), None for any
    other error: the OSError of those errnos, or pathlib's RuntimeError ('Symlink loop
    from ...', Python 3.10 and 3.11's ``Path.resolve``)."""
    if isinstance(exc, OSError) and exc.errno in _UNUSABLE:
        name = exc.filename
        where = f"{os.fsdecode(name)}: " if isinstance(name, (str, bytes)) else ""
        return where + _UNUSABLE[exc.errno]
    loop = "Symlink loop from "
    if type(exc) is RuntimeError and str(exc).startswith(loop):
        return f"{str(exc)[len(loop):].strip(_QUOTES)}: {LINK_LOOP}"  # (its path's repr)
    return None


def is_count(value: Any) -> bool:
    """Whether ``value`` is a positive whole number (a bool is none): what a size, a
    batch or a k given from Python must be (flags are parsed as such)."""
    # (typeshed's numbers.Real declares < and <= only)
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1  # type: ignore[operator]


def is_amount(value: Any, whole: bool = False) -> bool:
    """Whether ``value`` is a count (``whole``: an int) or a measure (any real number) as
    simclr writes one into its files: finite, not negative, never a bool. A received
    file's entry of another type or range is damaged: neither printed (a terminal's
    escapes, a list nested deep) nor computed with."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if whole
                                                  else numbers.Real):
        return False
    # (an int is finite, and isfinite would overflow converting one past 1e308; the ignore:
    # as in is_count)
    return value >= 0 and (isinstance(value, numbers.Integral) or math.isfinite(value))  # type: ignore[operator]


def check_counts(values: dict[str, Any]) -> None:
    """Each of ``values`` (its name in messages -> its value; None: not given) a
    positive whole number (:func:`is_count`), else a one-line error naming it."""
    for name, value in values.items():
        if value is not None and not is_count(value):
            raise SimCLRError(f"{name} must be a positive whole number, got {value!r}")


def with_article(word: str) -> str:
    """``word`` after "a" or "an" ("an encoder", "a pretrain")."""
    return f"{'an' if word[:1] and word[0].lower() in 'aeiou' else 'a'} {word}"


class BadImageError(SimCLRError):
    """An image file that cannot be decoded; ``reason`` says why (for skip summaries)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"bad image {path}: {reason}")
        self.path = path
        self.reason = reason


class NoReadableImageError(SimCLRError):
    """Every image of a folder failed to decode, met while training or evaluating (in a
    DataLoader worker: the type comes back, the list of files does not)."""


class NonFiniteOutputs(SimCLRError):
    """A network's outputs on the evaluated images hold NaN or inf: within a pretraining
    (its kNN monitor), the run diverged; of a saved checkpoint, it is damaged or diverged."""


class DivergedError(SimCLRError):
    """Training stopped on a non-finite loss: an outcome of the settings, not a crash
    (a sweep records it for its cell and goes on). ``step``: where it happened."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step
