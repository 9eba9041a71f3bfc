"""Tests for simclr.resume: what a pretraining checkpoint holds and how it is restored.
(Resuming whole runs bit-exactly is tested in tests/test_train.py.)"""

from __future__ import annotations

import torch

from simclr.models import build_model
from simclr.optim import build_optimizer
from simclr.plan import plan_schedule
from simclr.resume import RunState, checkpoint_state, restore, restore_cuda_rng
from simclr.settings import build_config


def test_a_checkpoint_restores_weights_optimizer_step_plan_and_rng():
    """Everything that moves: restored into a fresh model, optimizer and state, the
    next update and the next random draw are those the saved run would have made."""
    cfg = build_config(flags={"batch_size": 8, "model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16, "epochs": 3})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    optimizer = build_optimizer(cfg.optim, model, cfg.batch_size)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    plan = plan_schedule(cfg, 80)
    state = RunState(step=7, elapsed=12.5, bad_steps=2)
    _, z = model(torch.rand(8, 3, 16, 16))
    z.square().sum().backward()
    optimizer.step()  # momentum buffers to save
    plan.total_steps, plan.warmup_steps = 33, 4  # as a time budget's refit leaves them
    blob = checkpoint_state(cfg, model, optimizer, scaler, state, plan)
    assert blob["cpu_threads"] == torch.get_num_threads()  # a resume compares its own
    assert blob["processes"] == 1
    assert (blob["step"], blob["epoch"], blob["step_in_epoch"]) == (7, 0, 7)

    torch.manual_seed(1)  # a different start in every respect
    other = build_model(cfg.model, 16)
    other_opt = build_optimizer(cfg.optim, other, cfg.batch_size)
    other_state, other_plan = RunState(), plan_schedule(cfg, 80)
    restore(blob, other, other_opt, scaler, other_state, other_plan)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (other_state.step, other_state.elapsed, other_state.bad_steps) == (7, 12.5, 2)
    assert (other_plan.total_steps, other_plan.warmup_steps) == (33, 4)
    saved_momenta = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    restored = [s["momentum_buffer"] for s in other_opt.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(saved_momenta, restored, strict=True))
    expected = torch.rand(3)  # the draw after the save, in the saved run
    torch.manual_seed(2)
    restore(blob, other, other_opt, scaler, other_state, other_plan)
    assert torch.equal(torch.rand(3), expected)


def test_the_gpu_generator_resumes_on_fewer_gpus_than_it_was_saved_with(monkeypatch):
    """Checkpoints before one-state-per-process saved one state per visible GPU."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    a, b, c = (torch.full((4,), i, dtype=torch.uint8) for i in range(3))
    restore_cuda_rng([a, b])  # saved with 2 GPUs, this process has GPU 2: nothing
    restore_cuda_rng(None)
    assert restored == []
    restore_cuda_rng([a, b, c])
    restore_cuda_rng(a)  # this process's own state
    assert [t[0].item() for t in restored] == [2, 0]




def test_a_run_resumed_with_other_threads_or_processes_is_said_not_exact():
    """The same settings with 1 and 2 threads differ from the first step (CPU sums split
    by thread): such a resume went on without a word, no longer exact."""
    from simclr.resume import check_same_runtime

    cpu = torch.device("cpu")
    now = torch.get_num_threads()
    assert check_same_runtime({"cpu_threads": now}, cpu) == []
    assert check_same_runtime({}, cpu) == []  # checkpoints from before it was recorded
    assert check_same_runtime({"cpu_threads": now + 1}, torch.device("cuda")) == []
    (note,) = check_same_runtime({"cpu_threads": now + 1}, cpu)
    assert note == (f"note: the run saved its checkpoint with {now + 1} CPU threads and "
                    f"continues with {now}: not exactly as it would have (--threads "
                    f"{now + 1} keeps it exact)")
    # Processes: a resume with another number went on without a word, no longer exact.
    assert check_same_runtime({"processes": 1}, cpu) == []
    (note,) = check_same_runtime({"processes": 2}, torch.device("cuda"))
    assert note == ("note: the run saved its checkpoint with 2 processes and continues with "
                    "1: the same global batch, but not exactly as it would have (2 "
                    "processes keep it exact)")
    # Both: the thread note names both (--threads alone cannot make it exact)
    threads, _ = check_same_runtime({"processes": 2, "cpu_threads": now + 1}, cpu)
    assert threads.endswith(f"(--threads {now + 1} and 2 processes keep it exact)")
    # Without global BatchNorm, another count normalises over other batches: said so.
    local_bn = {"processes": 2, "config": {"batch_size": 16, "model": {"sync_bn": False}}}
    (note,) = check_same_runtime(local_bn, torch.device("cuda"))
    assert note == ("note: the run saved its checkpoint with 2 processes and continues with "
                    "1: BatchNorm now normalises over batches of 16 images, not 8 "
                    "(--no-sync-bn: per process) (2 processes keep it exact)")
