"""Tests for simclr.train_records: what a pretraining session's records hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from simclr.config import Config
from simclr.plan import Plan
from simclr.resume import RunState
from simclr.train_records import (
    periodic_checkpoint,
    record_late_stop,
    run_summary,
    window_record,
)

# (a run that never compiled: no compile seconds; one resumed without --compile after
# sessions that did: theirs, which its wall-time elapsed holds)
COMPILED = [(False, 0.0), (True, 1.5), (False, 1.5)]


@pytest.mark.parametrize("compile_, compile_s", COMPILED)
def test_a_window_record_holds_the_step_epoch_views_lr_and_plan_of_its_step(compile_,
                                                                           compile_s):
    """Two views of each image a step (views/s over the window's training seconds), the
    lr the schedule set now (not the optimizer's default), the epoch as a fraction, and
    the seconds compiling took (of any session) where some did."""
    cfg = dataclasses.replace(Config(), batch_size=8, compile=compile_)
    seen = []
    meter = SimpleNamespace(
        record=lambda step, views, secs: seen.append((step, views, secs)) or {"loss": 1.0},
        collapse=SimpleNamespace(see=lambda *args: None))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    optimizer.param_groups[0]["lr"] = 0.05  # (as the schedule sets it)
    state = RunState(step=6, elapsed=3.0, compile_s=compile_s)
    plan = Plan(steps_per_epoch=4, total_steps=40, warmup_steps=2)
    record = window_record(cfg, plan, state, meter, optimizer, trained=2.0)
    assert seen == [(6, 16, 2.0)]
    assert record == {"step": 6, "epoch": 1.5, "loss": 1.0, "lr": 0.05, "elapsed": 3.0,
                      **({"compile_s": 1.5} if compile_s else {}), "total_steps": 40}
    meter.collapse = SimpleNamespace(see=lambda *args: f"the loss sits at a collapse's "
                                     f"after {args[-1]} warm-up steps")
    assert window_record(cfg, plan, state, meter, optimizer, 2.0)["note"] == (
        "the loss sits at a collapse's after 2 warm-up steps")  # (the watch's to tell)


@pytest.mark.parametrize("compile_, compile_s", COMPILED)
def test_a_summary_holds_the_sessions_outcome_counts_and_the_last_windows_means(compile_,
                                                                               compile_s):
    """summary.json: the reason and signal, the steps (epochs as a fraction), the last
    checkpoint, the readable images and those skipped, the bad steps, this session's
    number; the compile seconds where some session compiled; of the last window, its
    means alone."""
    cfg = dataclasses.replace(Config(), compile=compile_)
    source = SimpleNamespace(readable_images=23, skipped=[("a/bad.png", "truncated")])
    state = RunState(step=6, elapsed=3.0, compile_s=compile_s, bad_steps=2, session=3)
    plan = Plan(steps_per_epoch=4, total_steps=40, warmup_steps=2)
    logged = {"step": 6, "lr": 0.1, "loss": 4.5, "pos_top1": 0.25}
    summary = run_summary(cfg, source, plan, state, "preempted", "SIGTERM",
                          Path("run/checkpoints/last.pt"), logged)
    assert summary == {
        "status": "preempted", "signal": "SIGTERM", "steps": 6, "epochs": 1.5,
        "elapsed_s": 3.0, "checkpoint": str(Path("run/checkpoints/last.pt")),
        "num_images": 23, "processes": 1, "skipped_images": [["a/bad.png", "truncated"]],
        "bad_steps": 2, "session": 3, **({"compile_s": 1.5} if compile_s else {}),
        "loss": 4.5, "pos_top1": 0.25}


def test_a_stop_after_the_loop_is_recorded_only_in_a_finished_summary_without_one(tmp_path):
    """A late signal is added (and summary.json rewritten) to a finished run's summary
    alone: not to one that ended otherwise, nor over a signal already on record."""
    finished = {"status": "finished", "signal": None, "steps": 6}
    record_late_stop(finished, "SIGTERM", tmp_path)
    assert finished["signal"] == "SIGTERM"
    assert json.loads((tmp_path / "summary.json").read_text()) == finished
    for summary, requested in (({"status": "diverged", "signal": None}, "SIGTERM"),
                               ({"status": "finished", "signal": "SIGINT"}, "SIGTERM"),
                               ({"status": "finished", "signal": None}, None)):
        before = dict(summary)
        record_late_stop(summary, requested, tmp_path / "other")
        assert summary == before and not (tmp_path / "other").exists()


def test_a_periodic_save_not_made_keeps_the_last_good_checkpoint(tmp_path):
    """No save due, or a clock's save left out after a non-finite step (--nan-policy
    stop: the model may be diverged): the last good checkpoint stays the run's."""
    last_good, saved = tmp_path / "ckpt-00000002.pt", tmp_path / "ckpt-00000004.pt"
    cfg = Config()
    fine, bad = torch.tensor(-1), torch.tensor(3)
    assert periodic_checkpoint(None, fine, last_good, cfg, "fp32", lambda: saved) == last_good
    assert periodic_checkpoint("clock", bad, last_good, cfg, "fp32", lambda: saved) == last_good
    assert periodic_checkpoint("clock", fine, last_good, cfg, "fp32", lambda: saved) == saved
