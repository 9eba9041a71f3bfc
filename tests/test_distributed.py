"""Single-process fallbacks, and 2 CPU processes (gloo) against the single-process losses."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from simclr import distributed
from simclr.errors import SimCLRError
from simclr.loss import (
    contrast_stats,
    margin_triplet,
    margin_triplet_with_accuracy,
    nt_logistic,
    nt_xent,
    nt_xent_with_accuracy,
    nt_xent_with_stats,
)

WORLD, N, D = 2, 4, 6


def test_single_process_fallbacks(monkeypatch):
    assert not distributed.is_initialized()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(t) is t and distributed.all_reduce_max(t) is t
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    distributed.barrier()
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    assert distributed.convert_sync_batchnorm(model) is model
    assert type(model[1]) is nn.BatchNorm2d  # (its BatchNorm kept too)
    distributed.check_divisible(7)  # (one process: any batch)
    distributed.check_divisible(8, 2)
    with pytest.raises(SimCLRError, match="^--batch-size 9 is not divisible by 2 processes$"):
        distributed.check_divisible(9, 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env() is False
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.local_rank() == 3
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)  # at least this one and those before
    assert distributed.local_processes() == 4
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)  # a group joined already
    monkeypatch.setattr(distributed, "world_size", lambda: 1)  # of one process: not distributed
    assert distributed.init_from_env() is False
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert distributed.init_from_env() is True


def test_without_a_launcher_this_is_the_one_process_of_rank_0(monkeypatch):
    """No torchrun variables (or empty ones): one process, rank 0 of it, on its machine."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.launched_processes(), distributed.launched_rank()) == (1, 0)
    assert (distributed.local_rank(), distributed.local_processes()) == (0, 1)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.setenv(name, "")
    assert (distributed.launched_processes(), distributed.launched_rank(),
            distributed.local_rank()) == (1, 0, 0)


def test_a_peer_gone_is_a_connection_another_process_closed():
    """gloo's words for a peer that ended: closed or reset by it, or a broken pipe; a
    timeout, another error, or those words outside a RuntimeError are none."""
    for words in ("Connection closed by peer [127.0.0.1]:1", "Connection reset by peer",
                  "Broken pipe"):
        assert distributed.peer_gone(RuntimeError(f"[gloo/pair.cc:1] {words}"))
    assert not distributed.peer_gone(RuntimeError("Timed out waiting 1800000ms"))
    assert not distributed.peer_gone(OSError("Broken pipe"))


@pytest.mark.parametrize("rank", [0, 1])
def test_main_first_makes_on_rank_0_before_the_others(monkeypatch, rank):
    """Rank 0 makes, then meets the others at the barrier, which they wait at before
    making (so they find what it built); the group's size divides the batch too."""
    events: list[str] = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "barrier", lambda: events.append("barrier"))
    assert distributed.main_first(lambda: events.append("make") or 7) == 7
    assert events == (["make", "barrier"] if rank == 0 else ["barrier", "make"])
    distributed.check_divisible(8)
    with pytest.raises(SimCLRError, match="^--batch-size 7 is not divisible by 2 processes$"):
        distributed.check_divisible(7)


def test_process_group_waits_for_the_others_only_after_a_normal_exit(monkeypatch):
    """An error inside leaves at once: the others may never reach a barrier."""
    barriers = []
    monkeypatch.setattr(distributed, "barrier", lambda: barriers.append(1))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.process_group():
        pass
    assert barriers == [1]
    with pytest.raises(RuntimeError, match="inside"), distributed.process_group():
        raise RuntimeError("inside")
    assert barriers == [1]


def test_process_group_leaves_only_a_group_it_joined(monkeypatch):
    """Inside a group joined before (an entry point called by another, or a library
    caller's own group): the block leaves it up for its owner, who may still use it."""
    destroyed = []
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "barrier", lambda: None)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: destroyed.append(1))
    with distributed.process_group():
        pass
    assert destroyed == []


def test_process_group_leaves_a_group_it_joined(monkeypatch):
    """Joined on entry (torchrun's variables), left at the end: no group's threads
    outlive the run."""
    up, destroyed = [False], []
    monkeypatch.setattr(distributed, "is_initialized", lambda: up[0])
    monkeypatch.setattr(distributed, "init_from_env", lambda: up.__setitem__(0, True))
    monkeypatch.setattr(distributed, "barrier", lambda: None)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: destroyed.append(1))
    with distributed.process_group():
        assert up[0]
    assert destroyed == [1]


@pytest.mark.parametrize("env,message", [
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     "WORLD_SIZE > 1 but RANK is not set: launch with torchrun"),
    ({"WORLD_SIZE": "x"}, "environment variable WORLD_SIZE='x' is not an integer"),
    # (a rank past the world waited the group's 2-hour timeout; a port that is none, or
    # one in use, ended in a traceback)
    ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
     "environment variable RANK=5 is not one of the WORLD_SIZE=2 processes' ranks (0 to 1): "
     "launch with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "-1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
     "environment variable RANK=-1 is not one of the WORLD_SIZE=2 processes' ranks"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
     "environment variable RANK=2 is not one of the WORLD_SIZE=2 processes' ranks"),  # (edge)
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "65536"},
     "environment variable MASTER_PORT='65536' is not a port number (1 to 65535)"),  # (edge)
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "abc"},
     "environment variable MASTER_PORT='abc' is not a port number (1 to 65535)"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"},
     "environment variable MASTER_PORT='70000' is not a port number (1 to 65535)"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "²"},
     "environment variable MASTER_PORT='²' is not a port number (1 to 65535)"),  # (isdigit)
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "IN_USE"},
     "cannot start the process group at MASTER_ADDR:MASTER_PORT 127.0.0.1:IN_USE ("),
])
def test_init_from_env_names_what_is_wrong_with_the_launch(monkeypatch, env, message):
    held = None
    if env.get("MASTER_PORT") == "IN_USE":  # (another run's rendezvous listening there)
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        env = {**env, "MASTER_PORT": port}
        message = message.replace("IN_USE", port)
    try:
        _init_refused(monkeypatch, env, message)
    finally:
        if held is not None:
            held.close()


def test_each_start_of_the_processes_meets_under_keys_of_its_own(monkeypatch):
    """Restarted by torchrun --max-restarts, the processes met in the agent's store
    under the keys the dead ones had written: gloo read a dead peer's address and hung
    for the group's 2 hours (or failed, "Connection refused"). Each start's keys are its
    own now (torchrun's restart count), under the prefix torch's default group uses."""
    from torch import distributed as dist

    shared = dist.HashStore()  # (the agent's store, kept across restarts)
    joined = []
    monkeypatch.setattr(dist, "rendezvous", lambda *args, **kwargs: iter([(shared, 0, 2)]))
    monkeypatch.setattr(dist, "init_process_group",
                        lambda **kwargs: joined.append(kwargs))
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    for attempt in ("0", "1"):
        monkeypatch.setenv(distributed.RESTART_COUNT_ENV, attempt)
        assert distributed.init_from_env() is True
        joined[-1]["store"].set("rank_0", f"address of start {attempt}")
    assert [(j["rank"], j["world_size"]) for j in joined] == [(0, 2), (0, 2)]
    assert shared.get("simclr/attempt_0/default_pg/rank_0") == b"address of start 0"
    assert shared.get("simclr/attempt_1/default_pg/rank_0") == b"address of start 1"


def _init_refused(monkeypatch, env, message):
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SimCLRError) as info:
        distributed.init_from_env()
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value) and not distributed.is_initialized()


def _full_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    z_a = torch.randn(WORLD * N, D, generator=g, dtype=torch.float64)
    z_b = z_a + 0.5 * torch.randn(WORLD * N, D, generator=g, dtype=torch.float64)
    return z_a, z_b


LOSSES = {
    "nt_xent": lambda a, b: nt_xent(a, b, 0.2),
    "nt_xent_raw": lambda a, b: nt_xent(a, b, 1.0, normalize=False),
    "nt_xent_one_view": lambda a, b: nt_xent_with_stats(a, b, 0.2, one_view=True)[0],
    "nt_logistic": lambda a, b: nt_logistic(a, b, 0.5),
    "nt_logistic_sh": lambda a, b: nt_logistic(a, b, 0.5, semi_hard=True),
    "triplet_sh": lambda a, b: margin_triplet(a, b, 0.8, semi_hard=True),
}
TOP1 = {  # (pos_top1: NT-Xent's, and the ablations' from their cross-view pass)
    "nt_xent": lambda a, b: nt_xent_with_accuracy(a, b, 0.2),
    "triplet": lambda a, b: margin_triplet_with_accuracy(a, b, 0.8),
}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        z_a, z_b = _full_inputs()
        rows = slice(rank * N, (rank + 1) * N)
        own, pair = torch.tensor([float(rank)], dtype=torch.float64), torch.tensor(
            [float(rank), -float(rank)])
        result: dict[str, object] = {
            "world": distributed.world_size(), "rank": distributed.rank(),
            "mean": distributed.all_reduce_mean(own), "max": distributed.all_reduce_max(pair),
            "broadcast": distributed.broadcast_object(f"from-{rank}"),
            "objects": distributed.all_gather_objects([f"bad-{rank}.png"]),
        }
        result["inputs"] = (own, pair)  # (new tensors returned: the inputs kept as they were)
        x = z_a[rows].clone().requires_grad_(True)
        gathered = distributed.gather_with_grad(x)
        # d/dx of sum_ranks sum(w * gathered): every rank's w for this rank's rows.
        weights = torch.arange(WORLD * N * D, dtype=torch.float64).view(WORLD * N, D) * (rank + 1)
        (gathered * weights).sum().backward()
        result["gathered"], result["gather_grad"] = gathered.detach(), x.grad
        for name, fn in LOSSES.items():
            a = z_a[rows].clone().requires_grad_(True)
            b = z_b[rows].clone().requires_grad_(True)
            loss = fn(a, b)
            loss.backward()
            result[name] = (loss.detach(), a.grad, b.grad)
        result["contrast_stats"] = contrast_stats(z_a[rows], z_b[rows], 0.2)
        result["step_stats"] = nt_xent_with_stats(z_a[rows], z_b[rows], 0.2)[2]
        result["one_view_stats"] = nt_xent_with_stats(z_a[rows], z_b[rows], 0.2,
                                                      one_view=True)[2]
        result["top1"] = [fn(z_a[rows], z_b[rows])[1] for fn in TOP1.values()]
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_losses_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    z_a, z_b = _full_inputs()
    for r, res in enumerate(results):
        assert res["world"] == WORLD and res["rank"] == r
        assert res["mean"].item() == pytest.approx(0.5)
        assert res["max"].tolist() == [1.0, 0.0]
        assert [t.tolist() for t in res["inputs"]] == [[float(r)], [float(r), -float(r)]]
        assert res["broadcast"] == "from-0"
        assert res["objects"] == [[f"bad-{k}.png"] for k in range(WORLD)]
        torch.testing.assert_close(res["gathered"], z_a)
        # Sum over ranks of (r+1) * weights restricted to this rank's rows.
        base = torch.arange(WORLD * N * D, dtype=torch.float64).view(WORLD * N, D)
        want = base[r * N:(r + 1) * N] * sum(k + 1 for k in range(WORLD))
        torch.testing.assert_close(res["gather_grad"], want)

    # Table 5's metrics: each rank's anchors against the b views of all processes.
    for key in ("contrast_stats", "step_stats", "one_view_stats"):  # (off the loss's logits)
        local = torch.stack([res[key] for res in results]).mean(dim=0)
        torch.testing.assert_close(local, contrast_stats(z_a, z_b, 0.2), rtol=1e-6, atol=1e-7)
    # pos_top1: each rank's anchors find their positive among every process's rows
    for k, fn in enumerate(TOP1.values()):
        local = torch.stack([res["top1"][k] for res in results]).mean()
        assert local.item() == pytest.approx(fn(z_a, z_b)[1].item())
    for name, fn in LOSSES.items():
        a = z_a.clone().requires_grad_(True)
        b = z_b.clone().requires_grad_(True)
        loss = fn(a, b)
        loss.backward()
        # The global loss is the mean of the per-rank losses (equal anchor counts).
        local = torch.stack([res[name][0] for res in results])
        torch.testing.assert_close(local.mean(), loss.detach(), rtol=1e-12, atol=1e-12)
        # Each rank's gradient w.r.t. its own rows is world_size x the single-process
        # gradient (gather sums over ranks); DDP's averaging divides it back.
        for r, res in enumerate(results):
            rows = slice(r * N, (r + 1) * N)
            torch.testing.assert_close(res[name][1], WORLD * a.grad[rows], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(res[name][2], WORLD * b.grad[rows], rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ global BatchNorm

def test_global_batchnorm_replaces_every_name_of_a_batchnorm(monkeypatch):
    """A block's last BatchNorm has a second name (last_bn, for its zero init), which
    the conversion skipped: a plain BatchNorm stayed in the model beside the global one,
    its buffers shared only until a move to another device. One module, converted once,
    under both names; the weights and their names unchanged."""
    from simclr.models import BasicBlock, build_encoder

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    model = build_encoder("resnet18", 0.125)
    before = model.state_dict()
    converted = distributed.convert_sync_batchnorm(model)
    bns = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, distributed.GlobalBatchNorm) for m in bns)
    blocks = [m for m in converted.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(b.last_bn is b.bn2 for b in blocks)
    after = converted.state_dict()
    assert list(after) == list(before)
    assert all(after[k] is before[k] or after[k].data_ptr() == before[k].data_ptr()
               for k in before)


def test_a_batchnorm_in_eval_mode_stays_in_eval_mode_once_global(monkeypatch):
    """A model converted while in eval mode (an evaluation) normalises by its running
    statistics, with no collective, as the BatchNorm did."""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.fill_(1.0)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    want = bn(x)
    converted = distributed.convert_sync_batchnorm(bn)
    assert isinstance(converted, distributed.GlobalBatchNorm) and not converted.training
    torch.testing.assert_close(converted(x), want)


def _bn_worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60))
    try:
        x, w = _bn_inputs()
        model = distributed.convert_sync_batchnorm(_bn_model())
        rows = slice(rank * 3, (rank + 1) * 3)
        xr = x[rows].clone().requires_grad_(True)
        y = model(xr)
        (y * w[rows]).sum().backward()
        bn = model[1]
        result = {"kind": type(bn).__name__, "y": y.detach(), "x_grad": xr.grad,
                  "w_grad": bn.weight.grad, "b_grad": bn.bias.grad, "conv_grad":
                  model[0].weight.grad, "mean": bn.running_mean.clone(),
                  "var": bn.running_var.clone()}
        model.eval()  # (the running statistics, this process's rows alone: no collective)
        with torch.no_grad():
            result["y_eval"] = model(x[rows][:1])
        result["eval_stats"] = (bn.running_mean, bn.running_var)
        for dtype, mean in PRECISION_CASES:  # far from zero, in float32 and bf16
            bn = distributed.convert_sync_batchnorm(nn.BatchNorm2d(3))
            result[f"y_{dtype}"] = bn(_precision_inputs(dtype, mean)[rows]).detach()
            result[f"var_{dtype}"] = bn.running_var
        # momentum None: running statistics as the cumulative mean over the passes
        cumulative = distributed.convert_sync_batchnorm(nn.BatchNorm2d(3, momentum=None))
        for scale in CUMULATIVE_SCALES:
            cumulative(scale * x[rows].float())
        result["cumulative"] = (cumulative.running_mean, cumulative.running_var)
        # The official head: its last BN has no bias, and keeps none.
        head = _bn_head()
        keys = list(head.state_dict())
        head = distributed.convert_sync_batchnorm(head)
        result["head_keys"] = (keys, list(head.state_dict()))
        result["head_bns"] = [(type(m).__name__, m.bias is None) for m in head.modules()
                              if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        h = _head_inputs()[rows].clone().requires_grad_(True)
        z = head(h)
        z.pow(2).sum().backward()
        result["head_z"], result["head_grad"] = z.detach(), h.grad
        torch.save(result, f"{out_dir}/bn{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


CUMULATIVE_SCALES = (1.0, 3.0, 0.5)  # the passes of a BatchNorm whose momentum is None


def _bn_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = 2.0 + 3.0 * torch.randn(WORLD * 3, 3, 5, 5, generator=g, dtype=torch.float64)
    return x, torch.randn(WORLD * 3, 4, 5, 5, generator=g, dtype=torch.float64)


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model


# Means far from zero, a std of 1: a one-pass E[x^2] - E[x]^2 variance cancels to noise
# in float32; bf16 (an ulp of 4 at 1e3) sums to nonsense unless taken up to float32.
PRECISION_CASES = ((torch.float32, 1e4), (torch.bfloat16, 1e3))


def _precision_inputs(dtype: torch.dtype, mean: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return (mean + torch.randn(WORLD * 3, 3, 5, 5, generator=g, dtype=torch.float64)).to(dtype)


def _bn_head() -> nn.Module:
    from simclr.models import build_head

    torch.manual_seed(1)
    return build_head("mlp", 5, 7, 4, num_layers=2, batch_norm=True)


def _head_inputs() -> torch.Tensor:
    return torch.randn(WORLD * 3, 5, generator=torch.Generator().manual_seed(3))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_global_batchnorm_on_cpu_equals_one_batchnorm_over_all_processes(tmp_path):
    """Two processes with half the batch each: outputs, input and parameter gradients
    and running statistics equal those of plain BatchNorm over the whole batch."""
    mp.spawn(_bn_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    x, w = _bn_inputs()
    model = _bn_model()
    xf = x.clone().requires_grad_(True)
    y = model(xf)
    (y * w).sum().backward()
    results = [torch.load(tmp_path / f"bn{r}.pt", weights_only=False) for r in range(WORLD)]
    for r, res in enumerate(results):
        rows = slice(r * 3, (r + 1) * 3)
        assert res["kind"] == "GlobalBatchNorm"
        torch.testing.assert_close(res["y"], y.detach()[rows])
        # The loss is the sum over all processes: each process's input gradient is the
        # single-process one; parameter gradients are each process's share (DDP sums).
        torch.testing.assert_close(res["x_grad"], xf.grad[rows])
        torch.testing.assert_close(res["mean"], model[1].running_mean)
        torch.testing.assert_close(res["var"], model[1].running_var)
        # Eval mode: normalised by the running statistics (the first row of its rows,
        # alone), which it leaves as they were.
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(res["y_eval"], model(x[rows][:1]))
        model.train()
        torch.testing.assert_close(res["eval_stats"], (res["mean"], res["var"]))
    for name, param in (("w_grad", model[1].weight), ("b_grad", model[1].bias),
                        ("conv_grad", model[0].weight)):
        torch.testing.assert_close(sum(res[name] for res in results), param.grad)
    # In at least float32 and two passes: close to float64 over the whole batch.
    for dtype, mean in PRECISION_CASES:
        x = _precision_inputs(dtype, mean).double()
        want = F.batch_norm(x, None, None, training=True)
        y = torch.cat([res[f"y_{dtype}"] for res in results])
        assert y.dtype == dtype
        tol = 3e-3 if dtype == torch.float32 else 2e-2  # (bf16 output: 8 bits)
        torch.testing.assert_close(y.double(), want, rtol=0, atol=tol)
        var = 0.9 + 0.1 * x.var(dim=(0, 2, 3))  # momentum 0.1 from 1, unbiased
        for res in results:
            torch.testing.assert_close(res[f"var_{dtype}"].double(), var, rtol=1e-5, atol=0)
    # momentum None: the cumulative mean of the passes' statistics, as BatchNorm's
    cumulative, whole = nn.BatchNorm2d(3, momentum=None), _bn_inputs()[0].float()
    for scale in CUMULATIVE_SCALES:
        cumulative(scale * whole)
    for res in results:
        torch.testing.assert_close(res["cumulative"][0], cumulative.running_mean)
        torch.testing.assert_close(res["cumulative"][1], cumulative.running_var)
    # The head with BN (its last without bias): same keys, no bias made up, and the
    # output and input gradients of the head over the whole batch.
    head = _bn_head()
    h = _head_inputs().requires_grad_(True)
    z = head(h)
    z.pow(2).sum().backward()
    for r, res in enumerate(results):
        rows = slice(r * 3, (r + 1) * 3)
        keys, converted = res["head_keys"]
        assert converted == keys == list(head.state_dict())
        assert "layers.1.1.weight" in keys and "layers.1.1.bias" not in keys
        assert res["head_bns"] == [("GlobalBatchNorm", False), ("GlobalBatchNorm", True)]
        torch.testing.assert_close(res["head_z"], z.detach()[rows])
        torch.testing.assert_close(res["head_grad"], h.grad[rows])


def _assert_group_threads_ended() -> None:
    """The process group's threads end with the run (Linux: /proc names them). Threads
    left running abort the process at interpreter exit now and then (SIGABRT,
    "terminate called without an active exception"), as a leaked group did."""

    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return
    names = [(t / "comm").read_text().strip() for t in tasks.iterdir()]
    assert not [n for n in names if "gloo" in n or "tcpstore" in n], names


def _run_worker(rank: int, port: int, flags: dict) -> None:
    import os

    from simclr import features, train
    from simclr.settings import build_config

    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    extract, extracted = features.extract_features, []

    def counted(*args, **kwargs):  # which processes extract features (the kNN monitor)
        extracted.append(1)
        return extract(*args, **kwargs)

    features.extract_features = counted
    train.pretrain(build_config(flags=flags))
    Path(flags["out"], f"extracted-rank{rank}").write_text(str(len(extracted)))
    _assert_group_threads_ended()


@pytest.fixture(scope="module")
def one_process_pretraining(tmp_path_factory) -> tuple[Path, dict]:
    """A deterministic 2-epoch pretraining with the global batch in one process (run
    once for the tests below), with the official head (BN in every layer, the last
    without bias): its folder's parent and its flags."""
    from simclr import train
    from simclr.settings import build_config
    from tests.conftest import make_image_folder, tiny_flags

    root = tmp_path_factory.mktemp("pretrain")
    one = tiny_flags(make_image_folder(root / "images"), root / "one", str(root / "cache"),
                     deterministic=True, threads=1, checkpoint_every=0, epochs=2,
                     **{"optim.lr": 0.05, "model.head_batch_norm": True})
    train.pretrain(build_config(flags=one))
    return root, one


def _losses(run: Path) -> list[float]:
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if '"loss"' in x]


def _weights(run: Path) -> dict:
    from simclr.checkpoint_read import load_checkpoint

    return load_checkpoint(run / "checkpoints/last.pt")["model"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_pretraining_follows_the_single_process_run(one_process_pretraining):
    """The whole training step across 2 processes (sharded batches, global BN, negatives
    gathered with gradients, DDP, LARS) against one process with the global batch."""
    root, one = one_process_pretraining
    # Checkpoints by the clock too (at every step but the last): rank 0's clock decides,
    # rank 0 writes, and no collective is involved, so the run neither hangs nor departs.
    # The kNN monitor, after each epoch, is rank 0's alone too, and leaves training as it was.
    two = {**one, "out": str(root / "two"), "checkpoint_minutes": 1e-9,
           "knn_train": str(root / "images"), "knn_test": str(root / "images"),
           "knn_every": 1.0}
    mp.spawn(_run_worker, args=(_free_port(), two), nprocs=WORLD, join=True)
    assert len(_losses(root / "one")) == len(_losses(root / "two")) == 6
    monitored = [x for x in (root / "two/metrics.jsonl").read_text().splitlines()
                 if "knn_top1" in x]
    assert len(monitored) == 2  # epochs 1 and 2: memory and queries extracted each time
    assert [(root / f"two/extracted-rank{r}").read_text() for r in (0, 1)] == ["4", "0"]
    np.testing.assert_allclose(_losses(root / "two"), _losses(root / "one"), rtol=1e-4)
    _same_weights(_weights(root / "one"), _weights(root / "two"))
    saved = sorted(p.name for p in (root / "two/checkpoints").glob("ckpt-*.pt"))
    assert saved[-1] == "ckpt-00000005.pt" and not list((root / "one").glob("**/ckpt-*"))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_pretraining_with_per_process_batchnorm_departs_from_it(
        one_process_pretraining):
    root, one = one_process_pretraining
    local = {**one, "out": str(root / "local"), "model.sync_bn": False}
    mp.spawn(_run_worker, args=(_free_port(), local), nprocs=WORLD, join=True)
    assert len(_losses(root / "local")) == 6
    # Each process normalizes with its own half of the batch: neither the losses nor
    # the learned weights (running statistics aside) are those of one process.
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(_losses(root / "local"), _losses(root / "one"), rtol=1e-4)
    a, c = ({k: v for k, v in _weights(root / run).items() if "running_" not in k
             and "num_batches" not in k} for run in ("one", "local"))
    assert a.keys() == c.keys()
    with pytest.raises(AssertionError):
        _same_weights(a, c)


def _supervised_worker(rank: int, port: int, argv: list, slow_test_s: float = 0.0) -> None:
    """``slow_test_s``: process 1 opens --test that much later (a slower disk), while
    rank 0 goes on to take the run folder."""
    import os
    import time

    from simclr import supervised_command
    from simclr.cli import main

    if rank == 1 and slow_test_s:
        opened = supervised_command.open_source

        def slowly(spec, *args, **kwargs):
            if kwargs.get("evaluation"):
                time.sleep(slow_test_s)
            return opened(spec, *args, **kwargs)

        supervised_command.open_source = slowly
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    assert main(argv) == 0
    _assert_group_threads_ended()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_supervised_training_follows_the_single_process_run(tmp_path):
    """`torchrun ... simclr supervised`: each process takes half of every global batch,
    BatchNorm is global and DDP averages the gradients, so 2 processes train the weights
    of one process with the whole batch; rank 0 alone writes and evaluates."""
    import json

    from simclr.checkpoint_read import load_checkpoint
    from simclr.cli import main
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)

    def argv(out: str) -> list:
        return ["supervised", "--train", str(train), "--test", str(test), "--out",
                str(tmp_path / out), "--arch", "resnet18", "--width", "0.125", "--image-size",
                "16", "--batch-size", "8", "--epochs", "2", "--precision", "fp32",
                "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--threads", "1",
                "--device", "cpu", "--checkpoint-every", "0"]

    assert main(argv("one")) == 0
    # (process 1 late: it took rank 0's hold on the folder for another run's, status 2)
    mp.spawn(_supervised_worker, args=(_free_port(), argv("two"), 3.0), nprocs=WORLD,
             join=True)
    one, two = (json.loads((tmp_path / r / "supervised.json").read_text()) for r in ("one", "two"))
    assert one["steps"] == two["steps"] == 4
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    a = load_checkpoint(tmp_path / "one/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "two/checkpoints/last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)
    # With per-process BatchNorm the processes train another network.
    mp.spawn(_supervised_worker, args=(_free_port(), [*argv("local"), "--no-sync-bn"]),
             nprocs=WORLD, join=True)
    c = load_checkpoint(tmp_path / "local/checkpoints/last.pt")["model"]
    assert max((c[k].float() - a[k].float()).abs().max().item() for k in a) > 1e-2


def _cli_worker(rank: int, port: int, argv: list, status: int, stop_at: int | None) -> None:
    """`simclr <argv>` as process ``rank`` of torchrun; ``stop_at``: a SIGTERM reaches
    only process 1 after that step (the processes must agree on where to stop)."""
    import functools
    import os

    from simclr import distributed, finetune
    from simclr.cli import main

    distributed.STOP_VOTE_EVERY_S = 0.0  # the processes compare requests after every step
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})

    def on_step(step: int, stop) -> None:
        if rank == 1 and step == stop_at:
            stop.requested = "SIGTERM"

    if stop_at is not None:
        finetune.run_finetune = functools.partial(finetune.run_finetune, on_step=on_step)
    assert main(argv) == status


def _spawn(argv: list, status: int = 0, stop_at: int | None = None) -> None:
    mp.spawn(_cli_worker, args=(_free_port(), argv, status, stop_at), nprocs=WORLD, join=True)


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The common evaluation flags of a 2-step pretraining (made once for the tests
    below, which only read it)."""
    from tests.conftest import tiny_pretrained_run

    root = tmp_path_factory.mktemp("pretrained")
    train, test, cache = tiny_pretrained_run(root)
    return ["--checkpoint", str(root / "pre"), "--train", str(train), "--test", str(test),
            "--batch-size", "8", "--workers", "0", "--cache-dir", cache, "--precision", "fp32",
            "--threads", "1", "--device", "cpu"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_finetuning_follows_one_process_and_resumes(tmp_path, pretrained):
    """`torchrun ... simclr finetune`: each process half of every batch, global BN, DDP:
    the weights of one process with the whole batch. A SIGTERM that reaches one process
    stops both at the same step (rank 0 saves); the same command continues exactly."""
    import json

    from simclr.checkpoint_read import load_checkpoint
    from simclr.cli import main

    def argv(out: str) -> list:
        return ["finetune", *pretrained, "--out", str(tmp_path / out), "--epochs", "4",
                "--checkpoint-every", "0"]

    assert main(argv("one")) == 0
    _spawn(argv("two"), status=75, stop_at=3)
    partial = load_checkpoint(tmp_path / "two/checkpoints/finetune-partial.pt")
    assert partial["step"] == 3 and partial["settings"]["batch_norm"] == "global"
    _spawn(argv("two"))
    one, two = (json.loads((tmp_path / r / "finetune.json").read_text()) for r in ("one", "two"))
    assert one["steps"] == two["steps"] == 8 and two["processes"] == 2
    assert two["top1"] == one["top1"]
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    a = load_checkpoint(tmp_path / "one/checkpoints/finetune.pt")["model"]
    _same_weights(a, load_checkpoint(tmp_path / "two/checkpoints/finetune.pt")["model"])
    assert not (tmp_path / "two/checkpoints/finetune-partial.pt").exists()
    # Per-process BatchNorm trains another network (than "one", as many steps).
    _spawn([*argv("local"), "--no-sync-bn"])
    local = json.loads((tmp_path / "local/finetune.json").read_text())
    assert local["batch_norm"] == "per process (2 processes)" and local["steps"] == 8
    c = load_checkpoint(tmp_path / "local/checkpoints/finetune.pt")["model"]
    assert max((c[k].float() - a[k].float()).abs().max().item() for k in a) > 1e-2


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_sgd_linear_evaluation_follows_one_process(tmp_path, pretrained):
    """`torchrun ... simclr linear-eval --protocol sgd`: the frozen encoder's features of
    each process's half batch, the layer's gradients averaged: one process's layer."""
    import json

    from simclr.checkpoint_read import load_checkpoint
    from simclr.classifier_setup import init_linear
    from simclr.cli import main

    def argv(out: str) -> list:
        return ["linear-eval", *pretrained, "--out", str(tmp_path / out), "--protocol", "sgd",
                "--epochs", "3", "--lr", "30"]

    assert main(argv("one")) == 0
    _spawn(argv("two"))
    one, two = (json.loads((tmp_path / r / "linear_eval.json").read_text())
                for r in ("one", "two"))
    assert one["steps"] == two["steps"] == 6
    assert two["top1"] == one["top1"]
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    a = load_checkpoint(tmp_path / "one/checkpoints/linear.pt")["model"]
    b = load_checkpoint(tmp_path / "two/checkpoints/linear.pt")["model"]
    _same_weights(a, b)
    start = init_linear(a["fc.weight"].shape[1], 2, torch.Generator().manual_seed(0))
    assert (a["fc.weight"] - start.weight).abs().max() > 0.05  # the layer did train


def _vote_worker(rank: int, port: int, out_dir: str) -> None:
    """Process 1's steps take 1 s, process 0's 0.5 s (a fake clock); a signal reaches
    process 1 only, after step 4; rank 0 flags from step 6 (its clock: a budget spent),
    rank 1 at steps 2 to 5 (its own clock, which does not count)."""
    import json
    import os

    from simclr import distributed as d

    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    d.init_from_env()
    clock = {"now": 0.0}
    d.time.perf_counter = lambda: clock["now"]
    vote = d.StopVote(torch.device("cpu"), start_step=0, every_s=2.0)
    answers, flags = [], []
    for step in range(1, 9):
        clock["now"] = step * (1.0 if rank == 1 else 0.5)
        asked = "SIGINT" if rank == 1 and step >= 4 else None
        flag = step >= 6 if rank == 0 else 2 <= step <= 5
        answers.append(vote(step, asked, last=step == 8, main_flag=flag))
        flags.append(vote.main_flag)
    with open(os.path.join(out_dir, f"votes{rank}.json"), "w") as f:
        json.dump([answers, flags], f)
    d.cleanup()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_processes_stop_together_at_steps_spaced_by_the_slowest(tmp_path):
    """The processes compare stop requests after step 1, then every every_s / (slowest
    step time) = 2 steps: steps 3, 5 (the request from step 4 is seen there), ... The
    answer is the same on every process, with the signal's name; so is rank 0's flag
    (seen at step 7, from step 6), never another's."""
    import json

    mp.spawn(_vote_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    votes = [json.loads((tmp_path / f"votes{r}.json").read_text()) for r in range(WORLD)]
    assert votes[0][0] == votes[1][0] == [None, None, None, None, "SIGINT", None, "SIGINT",
                                          "SIGINT"]
    assert votes[0][1] == votes[1][1] == [False] * 6 + [True, True]



def test_the_processes_meet_about_every_every_s_seconds_of_the_slowest(monkeypatch):
    """2 s apart at the slowest process's 0.25 s a step: 8 steps; at most max_interval
    steps however fast (0.001 s: 2000 steps, capped to 100; no time measured: 100); at
    least the next step however slow."""
    clock = {"now": 10.0}
    monkeypatch.setattr(distributed.time, "perf_counter", lambda: clock["now"])
    cadence = distributed.Cadence(start_step=0, every_s=2.0, max_interval=100)
    assert cadence.due(1) and not cadence.due(0)
    clock["now"] = 13.0  # (3 steps in 3 s since the start)
    assert cadence.step_time(3) == 1.0
    cadence.met(1, 0.25)
    assert (cadence.next_step, cadence.due(8), cadence.due(9)) == (9, False, True)
    cadence.met(9, 0.001)
    assert cadence.next_step == 109
    cadence.met(109, 0.0)
    assert cadence.next_step == 209
    cadence.met(209, 60.0)
    assert cadence.next_step == 210

def test_one_process_stops_at_once():
    vote = distributed.StopVote(torch.device("cpu"))
    assert [vote(s, n) for s, n in ((1, None), (2, "SIGTERM"))] == [None, "SIGTERM"]
    assert [(vote(3, None, main_flag=f), vote.main_flag)[1] for f in (True, False)] == \
        [True, False]


def _pretrain_budget_worker(rank: int, port: int, flags: dict) -> None:
    """A --time-budget pretraining whose training seconds are a fake clock: 0.1 s a step
    on both processes, but rank 0's step 7 is slow (its clock at 100 s)."""
    import json
    import os

    from simclr import distributed as d
    from simclr import train
    from simclr.settings import build_config

    d.STOP_VOTE_EVERY_S = 0.0  # compare after every step
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    step_ended = train.SessionClock.step_ended

    def fake(self, state, meter, step_start) -> float:
        step_ended(self, state, meter, step_start)
        return 100.0 if rank == 0 and state.step >= 7 else 0.1 * state.step

    train.SessionClock.step_ended = fake
    summary = train.pretrain(build_config(flags=flags))
    with open(os.path.join(flags["out"], f"rank{rank}.json"), "w") as f:
        json.dump({k: summary[k] for k in ("status", "steps")}, f)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_a_spent_budget_stops_every_pretraining_process_at_one_step(tmp_path, image_folder):
    """Rank 0's clock passes the 6-s deadline at step 7, between re-plans (at 6 and 9):
    both processes end there. Before, only one process looked at its clock between
    re-plans: under torchrun the run went on to the re-plan at step 9, and its step 10."""
    import json

    from tests.conftest import tiny_flags

    flags = tiny_flags(image_folder, tmp_path / "run", str(tmp_path / "cache"), threads=1,
                       checkpoint_every=0, epochs=100, time_budget="6s", log_every=100)
    mp.spawn(_pretrain_budget_worker, args=(_free_port(), flags), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1] == {"status": "finished", "steps": 7}
    last = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[-1])
    assert (last["step"], last["total_steps"]) == (7, 7)


def _supervised_budget_worker(rank: int, port: int, out_dir: str) -> None:
    """simclr.supervised.budget_refit after each of 12 steps of 0.1 s, rank 0's step 7
    slow (its clock at 100 s), a 6-s budget; the totals it returned, step by step."""
    import json
    import os

    from simclr import distributed as d
    from simclr.plan import plan_schedule
    from simclr.settings import build_config
    from simclr.supervised import budget_refit

    d.STOP_VOTE_EVERY_S = 0.0  # compare after every step
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    d.init_from_env()
    cfg = build_config(flags={"batch_size": 8, "epochs": 100, "time_budget": "6s"})
    plan = plan_schedule(cfg, 24)
    refit = budget_refit(cfg, plan, 0, torch.device("cpu"))
    totals = []
    for step in range(1, 13):
        totals.append(refit(step, 100.0 if rank == 0 and step >= 7 else 0.1 * step))
        if step >= totals[-1]:
            break
    with open(os.path.join(out_dir, f"totals{rank}.json"), "w") as f:
        json.dump(totals, f)
    d.cleanup()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_a_spent_supervised_budget_ends_every_process_at_one_step(tmp_path):
    """As pretraining: rank 0's clock passes the deadline at step 7, between re-plans;
    both processes end the training there (before: at the re-plan of step 9, and 10)."""
    import json

    mp.spawn(_supervised_budget_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD,
             join=True)
    totals = [json.loads((tmp_path / f"totals{r}.json").read_text()) for r in range(WORLD)]
    assert totals[0] == totals[1]
    assert len(totals[0]) == 7 and totals[0][-1] == 7


def _pretrain_stop_worker(rank: int, port: int, flags: dict) -> None:
    import json
    import os

    from simclr import distributed as d
    from simclr import train
    from simclr.settings import build_config

    d.STOP_VOTE_EVERY_S = 0.0  # compare after every step
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})

    def on_step(step, stop):  # rank 1 alone receives a SIGTERM, during step 3
        if rank == 1 and step == 3:
            stop.requested = "SIGTERM"

    summary = train.pretrain(build_config(flags=flags), on_step=on_step)
    with open(os.path.join(flags["out"], f"rank{rank}.json"), "w") as f:
        json.dump({k: summary[k] for k in ("status", "signal", "steps")}, f)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_a_signal_to_one_pretraining_process_stops_both_at_one_step(tmp_path, image_folder):
    """Neither hangs nor mismatches a collective (the log record averages over processes):
    both stop after step 3, rank 0 writes the checkpoint, both name the signal."""
    import json

    from simclr.checkpoint_read import load_checkpoint
    from tests.conftest import tiny_flags

    flags = tiny_flags(image_folder, tmp_path / "run", str(tmp_path / "cache"), threads=1,
                       checkpoint_every=0, epochs=5, log_every=2)
    mp.spawn(_pretrain_stop_worker, args=(_free_port(), flags), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1] == {"status": "preempted", "signal": "SIGTERM", "steps": 3}
    saved = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert saved["step"] == 3
    # The open log window (step 3 of 3-4), its sums the processes' means, for a resume;
    # no line of the stop's own
    assert (saved["log_window"]["first_step"], saved["log_window"]["steps"]) == (2, 1)
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if '"loss"' in x] == [2]


def test_a_gpu_machine_joins_with_nccl_for_cuda_and_gloo_for_the_rest(monkeypatch):
    """CPU tensors (a --device cpu run), objects and barriers go over gloo; a process
    without a GPU of its own does not take one; waits of 10+ minutes are allowed."""
    import torch.distributed as dist

    calls: dict = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("device", i))
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.update(kw))
    # (the rendezvous's store: rank 1 would wait for a rank 0 that never comes)
    monkeypatch.setattr(dist, "rendezvous", lambda *a, **kw: iter([(dist.HashStore(), 1, 2)]))
    monkeypatch.setattr(distributed, "is_initialized", lambda: False)
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    assert distributed.init_from_env() is True
    assert calls["backend"] == "cpu:gloo,cuda:nccl" and "device" not in calls
    assert calls["timeout"] >= datetime.timedelta(hours=1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    distributed.init_from_env()
    assert calls["device"] == 0


def test_the_training_entry_points_join_the_process_group_themselves():
    """pretrain, run_supervised, run_finetune and run_linear_eval are what a script
    under torchrun calls: each joins the group itself (``@process_group()``), and no
    helper does (a refactor twice left the decorator on the helper inserted above the
    entry point: an API call had no group, and the helper a stray barrier)."""
    import inspect

    from simclr import evaluate, finetune, knn, logistic, supervised, train

    def joins_group(f) -> bool:  # the wrapper @process_group() puts around f holds it
        held = [cell.cell_contents for cell in f.__closure__ or ()]
        return any(getattr(c, "func", None) is distributed.process_group.__wrapped__
                   for c in held)

    joined = {name for module in (train, supervised, finetune, evaluate, knn, logistic)
              for name, f in vars(module).items()
              if inspect.isfunction(f) and f.__module__ == module.__name__ and joins_group(f)}
    assert joined == {"pretrain", "run_supervised", "run_finetune", "run_linear_eval"}


@pytest.mark.parametrize("cpu_run, backend", [("1", "gloo"), ("0", "cpu:gloo,cuda:nccl")])
def test_a_cpu_run_on_a_gpu_machine_joins_with_gloo_alone(monkeypatch, cpu_run, backend):
    """simclr's launcher marks a --device cpu run: no NCCL communicator on a GPU machine
    then (its exit warnings followed a user error's one line, seen on an H200)."""
    from simclr import distributed

    joined: list[str] = []
    monkeypatch.setattr(distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, **kwargs: joined.append(backend))
    monkeypatch.setattr(distributed.dist, "rendezvous",  # (no rank 1 comes)
                        lambda *a, **kw: iter([(distributed.dist.HashStore(), 0, 2)]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0",
                        "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1",
                        distributed.CPU_RUN_ENV: cpu_run}.items():
        monkeypatch.setenv(name, value)
    assert distributed.init_from_env()
    assert joined == [backend]
