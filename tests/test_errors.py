"""simclr.errors: the one line a user error prints."""

from __future__ import annotations

from simclr.errors import SimCLRError, printable, user_message


def test_printable_escapes_what_a_terminal_acts_on():
    """C0 (newline and tab too), DEL and C1 are written as Python's escapes; printable
    text, accents and CJK included, as it is."""
    assert printable("a\nb\tc\x1b[2J\x7f\x85\x9b") == "a\\nb\\tc\\x1b[2J\\x7f\\x85\\x9b"
    assert printable("日本 café/x.png") == "日本 café/x.png"
    assert printable("a\u2028b\u202eexe.png") == "a\\u2028b\\u202eexe.png"  # (a line; reordered)
    # the paragraph separator breaks a line too; the isolates (LRI, RLI, FSI, PDI)
    # reorder what follows as the overrides do
    assert printable("a\u2029b") == "a\\u2029b"
    for isolate in "\u2066\u2067\u2068\u2069":
        assert printable(f"x{isolate}gnp.exe") == f"x\\u{ord(isolate):04x}gnp.exe"


def test_printable_leaves_the_spaces_and_joiners_of_real_names():
    """Not printable to str.isprintable, yet drawn, and part of real file names: escaped,
    a path pasted back from a printed command (info's "continue with") named no file."""
    for name in ("Screenshot 2026-12-06 at 9.41.22\u202fAM.png",  # macOS since Ventura
                 "a\u00a0b", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",  # NBSP, ZWNJ
                 "\U0001f469\u200d\U0001f4bb.jpg", "soft\u00adhyphen"):  # ZWJ emoji, SHY
        assert printable(name) == name


def test_user_message_is_one_printable_line():
    assert user_message(SimCLRError("bad image a\x1b]0;T\a\nb.png")) == \
        "bad image a\\x1b]0;T\\x07\\nb.png"


def test_is_amount_takes_counts_and_measures_as_simclr_writes_them():
    """The one check of a count or measure read back from a (perhaps received) file."""
    from simclr.errors import is_amount

    for value in (0, 7, 10**400):
        assert is_amount(value, whole=True) and is_amount(value)
    for value in (0.0, 2.5):
        assert is_amount(value) and not is_amount(value, whole=True)
    for value in (-1, -0.5, float("nan"), float("inf"), True, "3", [3], None):
        assert not is_amount(value) and not is_amount(value, whole=True)
