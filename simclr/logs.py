"""Where a command's log messages go: simclr's logger on stderr for the command line
(rank 0 speaking for a launch's processes), or for one call from Python without
touching the caller's own logging; and every message's arguments escaped
(:class:`EscapedArguments`), since they are names read from the disk.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import numbers
import sys
from collections.abc import Callable
from typing import Any

from simclr.errors import printable


def _set_up_logging(given: bool, undo: contextlib.ExitStack) -> None:
    """Where simclr's log messages go: data.py reports cache builds and skipped images
    through logging; under torchrun rank 0 speaks for all the processes, the others only
    warn. A caller from Python (``given``) gets its logging and torch's threads back as
    they were after the command (through ``undo``)."""
    from simclr.distributed import launched_rank

    level = logging.INFO if launched_rank() == 0 else logging.WARNING
    if given:
        from simclr.runtime import process_settings_restored

        for put_back in _log_for_the_call(level):
            undo.callback(put_back)
        undo.enter_context(process_settings_restored())
    else:
        logging.basicConfig(level=level, handlers=[_log_handler(sys.stderr)])


class EscapedArguments(logging.Formatter):
    """Log lines whose arguments are written :func:`~simclr.errors.printable`: they are
    the names a message cites, read from the disk or a checkpoint (an image file, a
    class folder, a cache), and an unreadable image named ``x<ESC>[2J<ESC>]0;T<BEL>.png``
    cleared the terminal and set its title when its skip was logged, a newline in a
    name faked a log line. The message's own text (simclr's, its layout deliberate) and
    its numbers (``%d``, ``%.1f``) are left as they are; the record too, for any other
    handler. A caller from Python whose logging is set up already keeps its own
    handlers, and so their formatting (:func:`_log_for_the_call`)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.args:
            shown = copy.copy(record)
            shown.args = _shown_arguments(record.args)
            try:
                shown.getMessage()
            except (TypeError, ValueError):  # an argument no stand-in fits (%d of a
                # tensor): the message made of the arguments themselves, escaped whole
                shown.msg, shown.args = printable(record.getMessage()), ()
            record = shown
        return super().format(record)


class _Shown:
    """An argument of a log message as ``%s`` and ``%r`` show it, escaped."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return printable(str(self.value))

    def __repr__(self) -> str:
        return printable(repr(self.value))


def _shown_arguments(args: Any) -> Any:
    """A log record's ``args`` (a tuple, or one mapping for ``%(name)s``), every one but
    a number behind a :class:`_Shown`."""
    def shown(value: Any) -> Any:  # (a tensor or array: a number to %d and %.1f too)
        plain = isinstance(value, numbers.Number) or (not isinstance(value, (str, bytes)) and (
            hasattr(value, "__float__") or hasattr(value, "__index__")))
        return value if plain else _Shown(value)

    if isinstance(args, dict):
        return {key: shown(value) for key, value in args.items()}
    return tuple(shown(value) for value in args)


def _log_handler(stream: Any) -> logging.Handler:
    """The handler of simclr's log messages, on the command line and for a call from
    Python alike: each message on its line of ``stream``, its arguments escaped
    (:class:`EscapedArguments`)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapedArguments("%(message)s"))
    return handler


def _log_for_the_call(level: int) -> list[Callable[[], None]]:
    """What ``logging.basicConfig`` gives the command line, for one call from Python:
    simclr's messages on stderr where the caller's process configured no logging (where
    it did, its configuration decides), without the root logger's handler and level
    that basicConfig would leave to the caller's own messages. Returns the undo."""
    logger = logging.getLogger("simclr")
    if logging.getLogger().handlers or logger.handlers:  # (simclr's own, configured: the
        return []  # caller's, whose handler printed each message a second time)
    handler = _log_handler(sys.stderr)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    return [lambda: logger.removeHandler(handler), lambda: logger.setLevel(before)]
