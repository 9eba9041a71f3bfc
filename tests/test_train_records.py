"""Tests for simclr.train_records: what a pretraining session's records hold."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from simclr.config import Config
from simclr.plan import Plan
from simclr.resume import RunState
from simclr.train_records import window_record


@pytest.mark.parametrize("compile_", [False, True])
def test_a_window_record_holds_the_step_epoch_views_lr_and_plan_of_its_step(compile_):
    """Two views of each image a step (views/s over the window's training seconds), the
    lr the schedule set now (not the optimizer's default), the epoch as a fraction."""
    cfg = dataclasses.replace(Config(), batch_size=8, compile=compile_)
    seen = []
    meter = SimpleNamespace(
        record=lambda step, views, secs: seen.append((step, views, secs)) or {"loss": 1.0},
        collapse=SimpleNamespace(see=lambda *args: None))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    optimizer.param_groups[0]["lr"] = 0.05  # (as the schedule sets it)
    state = RunState(step=6, elapsed=3.0, compile_s=1.5)
    plan = Plan(steps_per_epoch=4, total_steps=40, warmup_steps=2)
    record = window_record(cfg, plan, state, meter, optimizer, trained=2.0)
    assert seen == [(6, 16, 2.0)]
    assert record == {"step": 6, "epoch": 1.5, "loss": 1.0, "lr": 0.05, "elapsed": 3.0,
                      **({"compile_s": 1.5} if compile_ else {}), "total_steps": 40}
    meter.collapse = SimpleNamespace(see=lambda *args: "the loss sits at a collapse's")
    assert window_record(cfg, plan, state, meter, optimizer, 2.0)["note"] == (
        "the loss sits at a collapse's")  # (said once a run: the watch's to tell)
