"""Tests for simclr.interrupts: an interruption raised where Python drops it (a weakref
or gc callback) is sent again as its signal; anything else there is left to the hook
that was there before."""

from __future__ import annotations

import gc
import signal
import sys
import weakref

import pytest

from simclr import interrupts
from simclr.interrupts import Terminated, deliver_dropped_interruptions


def _raised_in_a_weakref_callback(exc: BaseException) -> None:
    class Referent:
        pass

    def callback(_ref):
        raise exc

    referent = Referent()
    ref = weakref.ref(referent, callback)
    del referent
    assert ref() is None


def _raised_in_a_gc_callback(exc: BaseException) -> None:
    def callback(phase, _info):
        if phase == "stop":
            raise exc

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)


def test_only_interruptions_are_sent_again_and_the_callers_hook_is_put_back(monkeypatch):
    ignored, sent = [], []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    monkeypatch.setattr(interrupts, "send_again", sent.append)
    hook = sys.unraisablehook
    put_back = deliver_dropped_interruptions()
    _raised_in_a_weakref_callback(Terminated())
    _raised_in_a_gc_callback(KeyboardInterrupt())
    assert sent == [signal.SIGTERM, signal.SIGINT] and ignored == []
    _raised_in_a_weakref_callback(ValueError("a bug of its own"))  # printed, as before
    assert sent == [signal.SIGTERM, signal.SIGINT]
    assert [type(u.exc_value) for u in ignored] == [ValueError]
    put_back()
    assert sys.unraisablehook is hook
    _raised_in_a_weakref_callback(KeyboardInterrupt())  # after: the caller's hook has it
    assert len(sent) == 2 and len(ignored) == 2


def test_on_windows_a_dropped_interruption_is_raised_not_killed(monkeypatch):
    """Windows' os.kill with SIGINT or SIGTERM is TerminateProcess: the Ctrl-C sent
    again ended the command at once (exit 2, no checkpoint). There it is raised in the
    process (its handler runs); elsewhere os.kill still sends it, as before."""
    import os
    import threading
    import types

    calls: list[tuple[str, int]] = []
    done = threading.Event()

    def record(how):
        def call(*args):
            calls.append((how, args[-1]))
            done.set()
        return call

    monkeypatch.setattr(signal, "raise_signal", record("raise"))
    for name, how in (("nt", "raise"), ("posix", "kill")):
        # (this module's os only: pytest's own paths must stay POSIX ones)
        monkeypatch.setattr(interrupts, "os", types.SimpleNamespace(
            name=name, getpid=os.getpid, kill=record("kill")))
        calls.clear()
        done.clear()
        interrupts.send_again(signal.SIGINT)
        assert done.wait(5)
        assert calls == [(how, signal.SIGINT)], name


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="SIGHUP: POSIX only")
def test_a_hangup_ignored_by_nohup_stays_ignored():
    """`nohup simclr pretrain ...`: SIGHUP inherited ignored is not taken as a stop (a
    run under nohup stopped at logout), by a command, a training or a cache worker;
    SIGTERM always is."""
    from simclr.cache import _decoding_process
    from simclr.exit_status import _stop_on_sigterm
    from simclr.runtime import StopFlag

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM,
                                                     signal.SIGINT)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert signal.SIGHUP not in interrupts.stop_signals()
        assert signal.SIGTERM in interrupts.stop_signals()
        put_back = _stop_on_sigterm()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, before[signal.SIGTERM])
        with StopFlag():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        put_back()
        _decoding_process(False)  # (PIL's default)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # not ignored: a stop, as SIGTERM
        assert signal.SIGHUP in interrupts.stop_signals()
        with StopFlag():
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_sigterm_is_taken_even_inherited_ignored_and_sigint_ignored_stays_so():
    """`nohup` or a shell's `&` may leave a signal ignored: SIGTERM (a scheduler's stop)
    is a stop all the same; SIGINT ignored (a background job's) is no stop request."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert signal.SIGTERM in interrupts.stop_signals()
        taken = interrupts.signals_taken()
        assert signal.SIGTERM in taken and signal.SIGINT not in taken
        signal.signal(signal.SIGINT, signal.default_int_handler)
        assert signal.SIGINT in interrupts.signals_taken()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
