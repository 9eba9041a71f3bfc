"""Tests for simclr.supervised_command: `simclr supervised` from its parsed arguments."""

from __future__ import annotations

import json

import pytest

from simclr.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_received_finished_supervised_runs_steps_are_checked_and_escaped(tmp_path,
                                                                          capsys):
    """`supervised --resume` of a finished run said its supervised.json's "steps" as it
    was: a received run's escape sequence reached the terminal ("finished at step
    <ESC>]0;... already")."""
    from simclr.cli import main

    run = tmp_path / "r\x1b[2Jun"
    run.mkdir()
    (run / "supervised.json").write_text('{"steps": "\\u001b]0;PWN\\u0007", "top1": 0.5}')
    assert main(["supervised", "--resume", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and json.loads(out)["top1"] == 0.5
    assert err == f"{str(run)!r}"[1:-1] + " finished already: nothing to do\n"
    (run / "supervised.json").write_text('{"steps": 12, "top1": 0.5}')
    assert main(["supervised", "--resume", str(run)]) == 0
    assert capsys.readouterr().err.endswith(" finished at step 12 already: nothing to do\n")


def test_the_supervised_baseline_on_the_digits_trains_on_none_of_its_test_digits(
        tmp_path, monkeypatch):
    """`supervised --train digits --test digits` trained on all 1797 digits, the 597 it
    is tested on among them; it trains on the other 1200."""
    import simclr.supervised

    sizes = []

    def recorded(cfg, train, test, out, **kwargs):
        sizes.append((train.num_images, test.num_images))
        return {"top1": 0.5}

    monkeypatch.setattr(simclr.supervised, "run_supervised", recorded)
    assert main(["supervised", "--train", "digits", "--test", "digits", "--out",
                 str(tmp_path / "s"), "--epochs", "1", "--workers", "0"]) == 0
    assert sizes == [(1200, 597)]
