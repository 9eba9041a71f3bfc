"""simclr's log messages (simclr.logs): their arguments, names read from the disk,
written escaped on one line."""

from __future__ import annotations

import logging
from pathlib import Path


def test_log_messages_show_names_from_files_escaped(monkeypatch):
    """An unreadable image named ``x<ESC>[2J<ESC>]0;TITLE<BEL>.png`` in --data cleared
    the terminal and set its title when its skip was logged, and a newline in a name
    faked a log line of its own: the arguments of a message (the names) are written
    escaped, on one line; the message's own text and numbers as they are."""
    import io

    from simclr.logs import _log_handler, _set_up_logging

    stream = io.StringIO()
    handler = _log_handler(stream)
    logger = logging.getLogger("simclr.test_escape")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("skipped %s: %s (%d, %.1f s, %r)", "/d/x\x1b[2J\x1b]0;TITLE\a.png",
                       "bad\nFAKE LINE", 3, 2.25, "q\x1b")
        logger.warning("%(name)s", {"name": Path("a\x9bb\x7f")})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert stream.getvalue() == (
        "skipped /d/x\\x1b[2J\\x1b]0;TITLE\\x07.png: bad\\nFAKE LINE (3, 2.2 s, 'q\\x1b')\n"
        "a\\x9bb\\x7f\n")
    given = {}  # the command line's own process: the same handler, through basicConfig
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: given.update(kwargs))
    import contextlib

    _set_up_logging(False, contextlib.ExitStack())
    [handler] = given["handlers"]
    assert isinstance(handler.formatter, type(_log_handler(io.StringIO()).formatter))


def test_log_message_whose_arguments_do_not_fit_is_escaped_whole():
    """A message whose argument an escaping stand-in cannot fit (``%d`` of a whole
    number that is no Python number: a tensor's) is shown whole, escaped, rather than as
    logging's own error; the record itself is left to other handlers as it was."""
    import io

    from simclr.logs import _log_handler

    class Index:  # (what %d takes of torch.tensor(4): its __index__)
        def __index__(self) -> int:
            return 4

    record = logging.LogRecord("simclr", logging.WARNING, __file__, 1, "%d files in %s",
                               (Index(), "a\x1b"), None)
    assert _log_handler(io.StringIO()).format(record) == "4 files in a\\x1b"
    assert record.getMessage() == "4 files in a\x1b"
    # a tensor's %d, in a message of simclr's own lines: the lines kept, the name escaped
    import torch

    record = logging.LogRecord("simclr", logging.WARNING, __file__, 1,
                               "step %d, loss %.2f:\n  %s", (torch.tensor(3),
                                                           torch.tensor(0.5), "a\x1b"), None)
    assert _log_handler(io.StringIO()).format(record) == "step 3, loss 0.50:\n  a\\x1b"


def test_rank_0_says_its_notes_and_the_other_processes_only_warn(monkeypatch):
    """Under --processes or torchrun rank 0 speaks for the run (cache builds, skipped
    images); the others' notes would repeat it N times, their warnings stay."""
    import contextlib

    from simclr.logs import _set_up_logging

    given = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: given.update(kwargs))
    levels = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        _set_up_logging(False, contextlib.ExitStack())
        levels.append(given["level"])
    assert levels == [logging.INFO, logging.WARNING]


def test_a_message_whose_arguments_only_fit_raw_is_escaped_whole_its_lines_kept_apart():
    """``%c`` of a name's character, or ``%d`` of a number-like value (a tensor's
    ``__index__``) in a message of several lines; and an object whose repr is raw."""
    import io

    from simclr.logs import _log_handler

    class Index:
        def __index__(self) -> int:
            return 4

    class Raw:
        def __repr__(self) -> str:
            return "x\x1b[2J"

    handler = _log_handler(io.StringIO())

    def shown(msg, *args):
        return handler.format(logging.LogRecord("simclr", logging.WARNING, __file__, 1, msg,
                                                args, None))

    assert shown("%d files:\n  %s", Index(), "a\x1b") == "4 files:\n  a\\x1b"
    assert shown("mark %c", "\x1b") == "mark \\x1b"
    assert shown("got %r", Raw()) == "got x\\x1b[2J"


def test_a_call_from_python_logs_on_stderr_only_where_its_caller_set_up_none(monkeypatch):
    """Nothing configured: simclr's notes (INFO) reach stderr for the call, and the
    logger's level is put back after it; a caller's handler on simclr's own logger
    decides alone (a second handler printed each message twice)."""
    from simclr.logs import _log_for_the_call

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # (pytest's own, set aside)
    logger = logging.getLogger("simclr")
    before = logger.level
    undo = _log_for_the_call(logging.INFO)
    try:
        assert logger.level == logging.INFO and len(logger.handlers) == 1
    finally:
        for step in undo:
            step()
    assert logger.level == before and logger.handlers == []
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        assert _log_for_the_call(logging.INFO) == [] and logger.handlers == [handler]
    finally:
        logger.removeHandler(handler)
