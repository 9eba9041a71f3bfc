"""Tests for simclr.progress: a bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sys

import pytest

from simclr import progress, train
from simclr.errors import SimCLRError
from simclr.progress import Progress, Unfailing, duration
from simclr.settings import build_config
from tests.conftest import tiny_flags


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(step: int) -> dict:
    return {"step": step, "epoch": step / 10, "loss": 5.0 - step / 100, "lr": 0.3,
            "views_per_s": 512.0}


def test_durations_read_as_a_person_writes_them():
    assert [duration(s) for s in (0, 12.4, 185, 3720, -3)] == ["0s", "12s", "3m05s", "1h02m",
                                                               "0s"]


def test_durations_round_to_the_nearest_second_not_down():
    """59.6 s left reads as a minute, not 59 s; a carry reaches the minutes and hours."""
    assert [duration(s) for s in (12.6, 59.6, 119.7, 7199.6)] == ["13s", "1m00s", "2m00s",
                                                                  "2h00m"]


def test_a_log_file_gets_plain_lines_with_the_time_left():
    log = io.StringIO()
    progress = Progress(total=100, start=20, enabled=True, stream=log, every_s=0.0)
    progress.record(record(40), seconds=10.0, last=False)  # 20 steps in 10 s: 30 s left
    progress.record(record(100), seconds=40.0, last=True)
    progress.close()
    lines = log.getvalue().splitlines()
    assert lines == ["step 40/100 (epoch 4.0): loss 4.6000, lr 0.3, 512 views/s, 10s, "
                     "about 30s left",
                     "step 100/100 (epoch 10.0): loss 4.0000, lr 0.3, 512 views/s, 40s"]
    assert "\r" not in log.getvalue()


def test_plain_lines_are_spaced_but_the_last_step_is_always_shown():
    log = io.StringIO()
    progress = Progress(total=50, start=0, enabled=True, stream=log, every_s=3600.0)
    for step in range(10, 50, 10):
        progress.record(record(step), seconds=step, last=False)
    progress.record(record(50), seconds=50, last=True)
    assert [line.split(" (")[0] for line in log.getvalue().splitlines()] == ["step 50/50"]


def test_slow_steps_between_logged_ones_still_show_the_run_goes_on(monkeypatch):
    """In a log file, 30 s without a line (slow steps between --log-every's) gives a
    short line of the step and the time left; the logged lines keep their own spacing."""
    clock = _fake_clock(monkeypatch)
    log = io.StringIO()
    shown = Progress(total=100, start=0, enabled=True, stream=log)  # (every 30 s)
    for step in range(1, 8):  # a step every 20 s, logged every 5
        clock.now = 20.0 * step
        if step % 5 == 0:
            shown.record(record(step), seconds=clock.now, last=False)
        shown.step(clock.now)
    assert log.getvalue().splitlines() == [
        "step 2/100: 40s, about 32m40s left", "step 4/100: 1m20s, about 32m00s left",
        "step 5/100 (epoch 0.5): loss 4.9500, lr 0.3, 512 views/s, 1m40s, about 31m40s left",
        "step 7/100: 2m20s, about 31m00s left"]


def test_a_terminal_gets_the_bar_and_no_lines():
    screen = Terminal()
    progress = Progress(total=10, start=0, enabled=True, stream=screen, every_s=0.0)
    for step in range(1, 11):
        progress.step(step)
        progress.record(record(step), seconds=step, last=step == 10)
    progress.close()
    assert "10/10" in screen.getvalue() and "step 10/10 (" not in screen.getvalue()
    assert "epoch=1.0, loss=4.900, lr=0.3, views_s=512" in screen.getvalue()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_of_no_width_gets_the_plain_lines():
    """A terminal that reports 0 columns (`script` without a size, `docker run -t`, some
    CI runners): tqdm's bar fitted to it showed nothing but carriage returns."""
    leader, follower = os.openpty()
    screen = os.fdopen(follower, "w")
    try:
        assert os.get_terminal_size(follower).columns == 0  # (a new pty: no size yet)
        progress = Progress(total=3, start=0, enabled=True, stream=screen, every_s=0.0)
        assert progress.bar is None
        progress.record(record(3), seconds=3, last=True)
        progress.close()
        assert os.read(leader, 4096).decode().startswith("step 3/3 (epoch 0.3): loss ")
    finally:
        screen.close()
        os.close(leader)


def test_a_pass_says_where_it_is_only_once_it_lasts():
    """A feature pass (or neighbours' queries) over 100k images ran minutes without a
    word; a short one must not add lines to every evaluation either."""
    quick = io.StringIO()
    progress = Progress.of_pass(10, "features of --train", True, stream=quick, every_s=3600.0)
    for n in (4, 4, 2):
        progress.advance(n)
    progress.close()
    assert quick.getvalue() == ""
    log = io.StringIO()
    progress = Progress.of_pass(10, "features of --train", True, stream=log, every_s=0.0)
    for n in (4, 4, 2):
        progress.advance(n)
    progress.close()
    progress.close()  # (said once)
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "features of --train: 4/10 images", "features of --train: 8/10 images",
        "features of --train: 10/10 images"]
    assert "left" in lines[0] and "left" not in lines[-1]


def test_a_quick_pass_leaves_no_bar_on_a_terminal():
    screen = Terminal()
    progress = Progress.of_pass(10, "neighbors", True, stream=screen, every_s=0.0)
    progress.advance(10)
    progress.close()
    assert screen.getvalue() == ""  # (not even a bar at 0/10 that is then cleared)
    disabled = Terminal()
    progress = Progress.of_pass(10, "neighbors", False, stream=disabled, every_s=0.0)
    progress.advance(4)
    progress.advance(6)
    progress.close()
    assert disabled.getvalue() == ""


def test_disabled_shows_nothing():
    log = Terminal()
    progress = Progress(total=10, start=0, enabled=False, stream=log)
    progress.step(1.0)
    progress.record(record(10), seconds=1.0, last=True)
    progress.close()
    assert log.getvalue() == ""


@pytest.mark.usefixtures("one_thread")
def test_a_pretraining_run_into_a_log_file_ends_with_its_line(tmp_path, image_folder,
                                                              cache_dir, capsys):
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        progress=True))
    train.pretrain(cfg)
    err = capsys.readouterr().err  # not a terminal under pytest
    assert "step 6/6 (epoch 2.0): loss " in err and "\r" not in err, err


class Gone(io.StringIO):
    """An output whose reader has left after ``lines`` writes (EPIPE), or whose disk is
    full (``error``)."""

    def __init__(self, lines: int = 0, error: type[OSError] = BrokenPipeError,
                 code: int = errno.EPIPE) -> None:
        super().__init__()
        self.left, self.error, self.code, self.tries = lines, error, code, 0

    def write(self, text: str) -> int:
        if self.left <= 0:
            self.tries += 1
            raise self.error(self.code, os.strerror(self.code))
        self.left -= 1
        return super().write(text)


def test_a_stream_whose_reader_left_takes_no_more_and_says_nothing(caplog):
    gone = Gone(lines=1)
    out = Unfailing(gone, "standard output")
    print("first", file=out)
    print("second", file=out)  # (raised inside: swallowed)
    print("third", file=out)  # (not tried again)
    assert out.write("fourth") == len("fourth")  # (taken, as far as a writer can tell)
    assert gone.getvalue() == "first" and gone.tries == 1 and out.lost is not None
    assert caplog.records == []  # (a reader that left has nothing to be told)


def test_a_stream_on_a_full_disk_is_said_once_on_the_other(caplog):
    out = Unfailing(Gone(error=OSError, code=errno.ENOSPC), "standard output")
    print("a", file=out)
    print("b", file=out)
    assert [r.getMessage() for r in caplog.records] == [
        "note: could not write the standard output (No space left on device); the command "
        "goes on without it"]


def test_a_strict_stream_ends_the_command(capsys):
    with pytest.raises(BrokenPipeError):
        print("x", file=Unfailing(Gone(), "standard output", strict=True))
    with pytest.raises(SimCLRError, match="^could not write the standard output: No space "
                                          "left on device$"):
        print("x", file=Unfailing(Gone(error=OSError, code=errno.ENOSPC), "standard output",
                                  strict=True))


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_run_whose_reader_leaves_trains_to_its_end(tmp_path, image_folder, cache_dir,
                                                     monkeypatch, stream):
    """`simclr pretrain ... | head -1`: the run died at its next line (the kNN monitor's
    on stdout, the progress line on stderr) with exit 141, no message, no summary and no
    checkpoint since the last periodic one."""
    from simclr.cli import main

    run_dir = tmp_path / stream
    argv = ["pretrain", "--data", str(image_folder), "--out", str(run_dir),
            "--cache-dir", str(cache_dir), "--image-size", "16", "--width", "0.125",
            "--batch-size", "8", "--epochs", "2", "--workers", "0", "--precision", "fp32",
            "--device", "cpu", "--knn-train", str(image_folder), "--knn-test",
            str(image_folder), "--knn-every", "1", "--knn-k", "3"]
    monkeypatch.setattr(sys, stream, Gone(lines=1))
    assert main(argv) == 0
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert isinstance(getattr(sys, stream), Gone)  # (put back after the command)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_closed_stream_is_written_nowhere(monkeypatch, stream):
    """`simclr pretrain ... >&-`: Python sets a closed stream to None, and the run died at
    its first line (monitor.log_line, the progress) with an AttributeError."""
    from simclr.monitor import log_line

    monkeypatch.setattr(sys, stream, None)
    with progress.unfailing_output(own_process=False):
        log_line("a note")
        print("a warning", file=sys.stderr, flush=True)
        shown = Progress(total=2, start=0, enabled=True, every_s=0.0)
        shown.record(record(2), seconds=1, last=True)
        shown.close()
    assert getattr(sys, stream) is None  # (put back after the command)


def test_a_strict_command_goes_on_without_its_stderr(monkeypatch, capsys):
    """`simclr knn ... 2>/dev/full` (no --out: its stdout is its result): a note or a
    progress line refused by the full disk of stderr ended it, its result unprinted."""
    monkeypatch.setattr(sys, "stderr", Gone(error=OSError, code=errno.ENOSPC))
    with progress.unfailing_output(strict=True, own_process=False):
        print("a note", file=sys.stderr, flush=True)
        print("the result")
    assert capsys.readouterr().out == "the result\n"


def test_info_into_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    """`simclr info RUN > /dev/full`: a traceback ending in OSError (its output is its
    work: it ends, in one line)."""
    from simclr.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "knn.json").write_text('{"command": "knn", "top1": 0.5}')
    monkeypatch.setattr(sys, "stdout", Gone(error=OSError, code=errno.ENOSPC))
    assert main(["info", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == ("simclr info: error: could not write the standard "
                                       "output: No space left on device\n")


@pytest.mark.skipif(not os.path.exists("/dev/full") or not os.path.isdir("/proc/self/fd"),
                    reason="needs Linux's /dev/full and /proc")
@pytest.mark.parametrize("own_process", [True, False])
def test_a_caller_from_python_gets_its_output_back_after_the_command(monkeypatch, caplog,
                                                                    own_process):
    """A write refused (a full disk) points the descriptor at /dev/null, so that the
    command line's exit flush fails no more; a script calling main() kept it so for the
    rest of its process, its later output lost."""
    full = open("/dev/full", "w")  # noqa: SIM115
    try:
        monkeypatch.setattr(sys, "stdout", full)
        open_before = len(os.listdir("/proc/self/fd"))
        with progress.unfailing_output(own_process=own_process):
            print("lost", flush=True)
        where = os.readlink(f"/proc/self/fd/{full.fileno()}")
        assert where == ("/dev/null" if own_process else "/dev/full")
        if not own_process:  # (and the copy kept to put it back is closed: no leak)
            assert len(os.listdir("/proc/self/fd")) == open_before
    finally:
        with contextlib.suppress(OSError):
            full.close()


def _fake_clock(monkeypatch):
    """A clock the test sets (``Clock.now``), in place of simclr.progress's ``time``."""
    class Clock:
        now = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            return cls.now

    monkeypatch.setattr(progress, "time", Clock)
    return Clock


def test_a_resumed_runs_heartbeat_times_only_its_own_steps(monkeypatch):
    """A run resumed at step 50 that took 40 s for its first step (51) has 49 left at
    40 s each: the time left counts the steps this process ran, not those before."""
    clock = _fake_clock(monkeypatch)
    log = io.StringIO()
    shown = Progress(total=100, start=50, enabled=True, stream=log, every_s=30)
    clock.now = 40.0
    shown.step(40.0)
    assert log.getvalue().splitlines() == ["step 51/100: 40s, about 32m40s left"]


def test_the_heartbeat_times_training_not_the_compile_step(monkeypatch):
    """--compile: the first step compiles for 3 minutes, no training second of it (as
    record() counts them). The time left was that wall time x the steps left ('step 1/60:
    2m57s, about 2h53m left' of a run that trained 6 s); it is the training seconds', and
    none is said before a step was timed."""
    clock = _fake_clock(monkeypatch)
    log = io.StringIO()
    shown = Progress(total=60, start=0, enabled=True, stream=log, every_s=30)
    clock.now = 177.0
    shown.step(0.0)
    clock.now = 207.0  # (the next step: 30 s of training)
    shown.step(30.0)
    assert log.getvalue().splitlines() == ["step 1/60: 0s",
                                           "step 2/60: 30s, about 14m30s left"]


def test_a_pass_line_says_the_time_its_items_left_take(monkeypatch):
    """Half a pass done in 10 s: the other half takes about 10 s more (not the whole)."""
    clock = _fake_clock(monkeypatch)
    log = io.StringIO()
    shown = Progress.of_pass(100, "x", True, stream=log, every_s=0)
    clock.now = 10.0
    shown.advance(50)
    assert log.getvalue().splitlines() == ["x: 50/100 images, 10s, about 10s left"]


def test_a_refitted_schedule_shows_its_new_length_on_the_bar_and_in_the_lines():
    """A time budget re-fits the run's length as it measures the speed (set_total)."""
    log = io.StringIO()
    shown = Progress(total=100, start=0, enabled=True, stream=log, every_s=0.0)
    shown.set_total(200)
    shown.record(record(40), seconds=10.0, last=False)
    assert log.getvalue().startswith("step 40/200 (epoch 4.0)")
    screen = Terminal()
    bar = Progress(total=100, start=0, enabled=True, stream=screen, every_s=0.0)
    bar.set_total(20)
    bar.step(1.0)
    bar.close()
    assert "| 1/20 [" in screen.getvalue().split("\r")[-1]  # (the bar as it ends)


def test_a_pass_nobody_named_shows_nothing():
    assert not Progress.of_named_pass(10, None).enabled
    assert not Progress.of_named_pass(10, None, unit="query").enabled


def test_a_pass_that_lasts_draws_its_bar_and_clears_it_when_done(monkeypatch):
    """A pass's bar (after a second) goes when the pass ends: it is not left behind."""
    import tqdm.std

    clock = _fake_clock(monkeypatch)
    monkeypatch.setattr(tqdm.std, "time", clock.perf_counter)
    screen = Terminal()
    shown = Progress.of_pass(10, "neighbors", True, stream=screen, every_s=0.0)
    clock.now = 2.0
    shown.advance(4)
    shown.close()
    assert "4/10" in screen.getvalue() and not screen.getvalue().endswith("\n")


def test_the_last_step_gets_no_heartbeat_its_logged_line_says_it(monkeypatch):
    clock = _fake_clock(monkeypatch)
    log = io.StringIO()
    shown = Progress(total=2, start=0, enabled=True, stream=log, every_s=30)
    clock.now = 40.0
    shown.step(40.0)
    clock.now = 80.0
    shown.step(80.0)
    assert log.getvalue().splitlines() == ["step 1/2: 40s, about 40s left"]


def test_a_pass_line_comes_once_every_s_seconds_have_passed(monkeypatch):
    clock = _fake_clock(monkeypatch)
    log = io.StringIO()
    shown = Progress.of_pass(100, "x", True, stream=log, every_s=30)
    clock.now = 29.0
    shown.advance(10)
    clock.now = 30.0
    shown.advance(10)
    assert log.getvalue().splitlines() == ["x: 20/100 images, 30s, about 2m00s left"]


@pytest.mark.skipif(sys.platform == "win32", reason="closes a child's descriptors 0 and 1")
def test_a_closed_stdout_descriptor_is_held_so_no_file_the_command_opens_gets_it():
    """`simclr ... <&- >&-`: /dev/null, opened at descriptor 0, is moved to 1; left
    closed, the command's next file took descriptor 1, and what C code prints went in."""
    import subprocess
    from pathlib import Path

    script = ("import os, sys\nfrom simclr import progress\n"
              "with progress.unfailing_output():\n"
              "    files = [open(os.devnull) for _ in range(3)]\n"
              "    sys.stderr.write(repr(sorted(f.fileno() for f in files)))\n")

    def close_stdin_and_stdout() -> None:
        os.close(0)
        os.close(1)

    done = subprocess.run([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                          preexec_fn=close_stdin_and_stdout, check=True,  # noqa: PLW1509
                          env={**os.environ, "PYTHONPATH": str(Path(progress.__file__).parents[1])})
    assert 1 not in json.loads(done.stderr)


def test_a_named_pass_shows_on_rank_0_alone(monkeypatch):
    """Each process of --processes N runs the evaluation's passes: rank 0 shows them for
    all (N copies of each line buried the run's own)."""
    from simclr import distributed

    for main_rank in (True, False):
        monkeypatch.setattr(distributed, "is_main", lambda main_rank=main_rank: main_rank)
        assert Progress.of_named_pass(10, "features of --train").enabled is main_rank
        assert not Progress.of_named_pass(10, None).enabled


def test_a_pass_on_a_terminal_draws_no_plain_lines_beside_its_bar():
    """The bar alone says where a pass is on a terminal."""
    screen = Terminal()
    shown = Progress.of_pass(10, "neighbors", True, stream=screen, every_s=0.0)
    shown.advance(4)
    shown.advance(6)
    shown.close()
    assert "4/10 images," not in screen.getvalue()
