"""simclr.errors: the one line a user error prints."""

from __future__ import annotations

from simclr.errors import SimCLRError, printable, user_message


def test_printable_escapes_what_a_terminal_acts_on():
    """C0 (newline and tab too), DEL and C1 are written as Python's escapes; printable
    text, accents and CJK included, as it is."""
    assert printable("a\nb\tc\x1b[2J\x7f\x85\x9b") == "a\\nb\\tc\\x1b[2J\\x7f\\x85\\x9b"
    assert printable("日本 café/x.png") == "日本 café/x.png"


def test_user_message_is_one_printable_line():
    assert user_message(SimCLRError("bad image a\x1b]0;T\a\nb.png")) == \
        "bad image a\\x1b]0;T\\x07\\nb.png"
