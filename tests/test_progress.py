"""Tests for simclr.progress: a bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import io

import pytest

from simclr import train
from simclr.progress import Progress, duration
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


def test_a_terminal_gets_the_bar_and_no_lines():
    screen = Terminal()
    progress = Progress(total=10, start=0, enabled=True, stream=screen, every_s=0.0)
    for step in range(1, 11):
        progress.step()
        progress.record(record(step), seconds=step, last=step == 10)
    progress.close()
    assert "10/10" in screen.getvalue() and "step 10/10 (" not in screen.getvalue()
    assert "epoch=1.0, loss=4.900, lr=0.3, views_s=512" in screen.getvalue()


def test_disabled_shows_nothing():
    log = Terminal()
    progress = Progress(total=10, start=0, enabled=False, stream=log)
    progress.step()
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
