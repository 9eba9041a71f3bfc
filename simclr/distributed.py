"""The one module that touches ``torch.distributed``.

Everything here degrades to the single-process behaviour when no process group is
initialised: ``world_size() == 1``, ``rank() == 0``, ``gather_with_grad`` is the
identity, reductions return their input.

SimCLR needs two things across processes (Chen et al. 2020, Sec. 2.2):
negatives from every device's batch, gathered *with* gradients
(:func:`gather_with_grad`), and global BatchNorm (:func:`convert_sync_batchnorm`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from simclr.errors import SimCLRError
from simclr.runtime import refuse_spawned_import

T = TypeVar("T")
GROUP_TIMEOUT = timedelta(hours=2)


def is_initialized() -> bool:
    """Whether a process group is up."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its machine (torchrun's LOCAL_RANK, 0 otherwise)."""
    return _env_int("LOCAL_RANK", 0)


def local_processes() -> int:
    """How many processes the launcher started on this machine (torchrun's
    LOCAL_WORLD_SIZE; without it, at least this one and those ranked below it)."""
    return _env_int("LOCAL_WORLD_SIZE", local_rank() + 1)


def machine_processes() -> int | None:
    """How many processes the launcher started on this machine, where it says
    (LOCAL_WORLD_SIZE: torchrun's, simclr's --processes); None where it does not (a
    launcher of its own that sets WORLD_SIZE and RANK alone): a run over several
    machines continues with torchrun on each, so checkpoints record it."""
    return local_processes() if "LOCAL_WORLD_SIZE" in os.environ else None


def is_main() -> bool:
    """Rank 0: the process that logs and writes checkpoints."""
    return rank() == 0


def launched_processes() -> int:
    """How many processes the launcher started (torchrun's WORLD_SIZE; 1 without one),
    whether or not a process group is up yet."""
    return _env_int("WORLD_SIZE", 1)


def launched_rank() -> int:
    """This process's rank as the launcher numbered it (torchrun's RANK; 0 without one),
    whether or not a process group is up yet."""
    return _env_int("RANK", 0)


def peer_gone(exc: BaseException) -> bool:
    """``exc`` is a collective's failure because another process of the run ended (its
    own error, or a kill): the connection to it closed (gloo's words). Not a timeout or
    a backend's own error, which every process may meet alike."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("closed by peer", "reset by peer", "Broken pipe"))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SimCLRError(f"environment variable {name}={value!r} is not an integer") from None


# Set by simclr's launcher for a --device cpu run: no NCCL communicator then, on a GPU
# machine too (one would only add NCCL's exit warnings after a user error's line).
CPU_RUN_ENV = "SIMCLR_CPU_RUN"


def init_from_env() -> bool:
    """Join the process group described by torchrun's variables; return whether distributed.

    WORLD_SIZE > 1 -> NCCL when CUDA is available (each process on cuda:LOCAL_RANK),
    else (or for simclr's launch of a --device cpu run) gloo alone; rendezvous by
    MASTER_ADDR / MASTER_PORT (``env://``).
    """
    if is_initialized():
        return world_size() > 1
    if launched_processes() <= 1:
        return False
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise SimCLRError(f"WORLD_SIZE > 1 but {name} is not set: launch with torchrun")
    if not dist.is_available():
        raise SimCLRError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    _check_launch_env()
    # DDP imports torch._dynamo; imported after the group is up, it keeps the group
    # alive past destroy_process_group (torch 2.14), so gloo's worker threads outlive
    # the run and can abort the process at interpreter exit ("terminate called without
    # an active exception"). Imported first, the group and its threads end with cleanup().
    import torch._dynamo  # noqa: F401

    backend = "gloo"
    if torch.cuda.is_available() and os.environ.get(CPU_RUN_ENV) != "1":
        # CUDA tensors over NCCL; CPU tensors over gloo: a --device cpu run on a GPU
        # machine, and the object broadcasts and barriers (torch routes those to the CPU
        # backend when there is one, so they need no GPU and use gloo's timeout).
        backend = "cpu:gloo,cuda:nccl"
        if local_rank() < torch.cuda.device_count():
            torch.cuda.set_device(local_rank())
    # Generous: rank 0 alone may decode a folder into the cache, or test a classifier,
    # while the others wait at a barrier (NCCL's default would end them after 10 min).
    # A process that dies is noticed sooner: its launcher ends the others.
    try:
        store = _attempt_store()
        dist.init_process_group(backend=backend, store=store, rank=launched_rank(),
                                world_size=launched_processes(), timeout=GROUP_TIMEOUT)
    except dist.DistNetworkError as exc:  # (a port in use, or an address not reached)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("another run may hold the port: give another MASTER_PORT"
                if "EADDRINUSE" in str(exc) else "is MASTER_ADDR this run's first machine, "
                "reachable from here?")
        raise SimCLRError(f"cannot start the process group at MASTER_ADDR:MASTER_PORT "
                          f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({first}); "
                          f"{hint}") from None
    return True


# torchrun's count of the worker group's restarts (--max-restarts): 0 on its first start.
RESTART_COUNT_ENV = "TORCHELASTIC_RESTART_COUNT"


def _attempt_store() -> dist.Store:
    """The env:// rendezvous's store (MASTER_ADDR:MASTER_PORT), its keys kept apart for
    each start of the processes by torchrun (:data:`RESTART_COUNT_ENV`). Restarted by
    --max-restarts, the processes meet in the agent's same store, which still holds the
    addresses the dead processes published: gloo's connect read a dead peer's address
    and failed ("Connection refused"), or both processes waited on a connection that
    never came, for the group's 2 hours (a restart that hung after "continuing the
    unfinished run")."""
    store, _, _ = next(dist.rendezvous("env://", launched_rank(), launched_processes(),
                                       timeout=GROUP_TIMEOUT))
    store.set_timeout(GROUP_TIMEOUT)
    attempt = _env_int(RESTART_COUNT_ENV, 0)
    return dist.PrefixStore(f"simclr/attempt_{attempt}/default_pg", store)


def _check_launch_env() -> None:
    """The launcher's variables a process group is joined by, checked before it is: a
    RANK past WORLD_SIZE waited the group's 2-hour timeout for a peer that never comes,
    and a MASTER_PORT that is no port ended in a traceback."""
    rank, world = launched_rank(), launched_processes()
    if not 0 <= rank < world:
        raise SimCLRError(f"environment variable RANK={rank} is not one of the WORLD_SIZE="
                          f"{world} processes' ranks (0 to {world - 1}): launch with torchrun")
    port = os.environ["MASTER_PORT"]
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):  # (not '²')
        raise SimCLRError(f"environment variable MASTER_PORT={port!r} is not a port number "
                          "(1 to 65535)")


def cleanup() -> None:
    """Leave the process group (end of a run)."""
    if is_initialized():
        dist.destroy_process_group()


def check_divisible(batch_size: int, processes: int | None = None) -> None:
    """The global batch is shared equally by the processes (``processes``: as many as
    launched, before the group is up; by default the group's)."""
    processes = world_size() if processes is None else processes
    if batch_size % processes:
        raise SimCLRError(f"--batch-size {batch_size} is not divisible by {processes} "
                          "processes")


@contextmanager
def process_group() -> Iterator[None]:
    """Within (a ``with`` block, or a function decorated with ``@process_group()``):
    this process in torchrun's process group, joined here unless it already is (nothing
    without torchrun). At the end the processes wait for each other (rank 0 may still be
    evaluating) and the group is left if joined here. An error inside leaves at once: no
    barrier that the failed process would never reach."""
    refuse_spawned_import()  # (pretrain and the evaluations: before any work)
    owns = not is_initialized()
    init_from_env()
    yield
    barrier()
    if owns:
        cleanup()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of the gathered tensor.

    Forward: x (n, ...) on each rank -> (world*n, ...), rank r's rows at [r*n, (r+1)*n).
    Backward: the gathered tensor's gradient is all-reduced (sum) and this rank keeps
    its slice, i.e. d(sum of all ranks' losses)/dx: each rank's x appears in every
    rank's loss as candidates.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x)
        ctx.rows = (rank() * x.shape[0], (rank() + 1) * x.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        # Clone: all_reduce works in place and autograd may share the incoming buffer.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, stop = ctx.rows
        return grad[start:stop]


def gather_with_grad(x: Tensor) -> Tensor:
    """Autograd-aware all_gather: x (n, ...) -> (world*n, ...); identity on one process.

    Every rank must pass the same n (the loaders drop the last partial batch).
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of a tensor over processes (a new tensor, no gradient); t itself on one process."""
    if world_size() == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def all_reduce_max(t: Tensor) -> Tensor:
    """Elementwise max of a tensor over processes (a new tensor, no gradient); t itself
    on one process."""
    if world_size() == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable object, in rank order, on every rank ([obj] on one)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank src's picklable object on every rank (e.g. the run directory, a resume step)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every process (no-op on one process)."""
    if is_initialized():
        dist.barrier()


def main_first(make: Callable[[], T]) -> T:
    """``make()`` on rank 0, then on the other processes (which then find, e.g., the
    decoded cache rank 0 built instead of all building it at once)."""
    if world_size() > 1 and not is_main():
        barrier()
    made = make()
    if world_size() > 1 and is_main():
        barrier()
    return made


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients over processes too: every
    rank's input reaches every rank's output, as the statistics of global BN do."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the batches of all processes.

    The CPU counterpart of ``nn.SyncBatchNorm`` (whose kernels are CUDA only), for
    multi-process CPU runs and tests: in training mode the per-channel mean and the
    (biased) variance come from two all-reduces over every process's (N, C, ...) input,
    in at least float32 and two passes (no E[x^2] - E[x]^2 cancellation), with gradients flowing
    back through the reductions. Running statistics are updated as ``BatchNorm`` does
    (unbiased variance). Eval mode and single processes use ``F.batch_norm`` unchanged.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected (N, C, ...) input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # bf16/fp16 up
        count = xf.new_tensor([xf.numel() // xf.shape[1]])
        totals = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        # (the buffers are kept together: the other two checks narrow their types only)
        if self.track_running_stats and self.running_mean is not None \
                and self.running_var is not None and self.num_batches_tracked is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        if self.bias is not None:
            y = y + self.bias.view(shape)
        return y.to(x.dtype)


def _to_global_bn(module: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A GlobalBatchNorm sharing a BatchNorm's parameters and buffers (a BN without
    bias, as the head's last, keeps none)."""
    out = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                          module.affine, module.track_running_stats)
    out.weight, out.bias = module.weight, module.bias
    out.running_mean, out.running_var = module.running_mean, module.running_var
    out.num_batches_tracked = module.num_batches_tracked
    out.training = module.training
    return out


def _replace_bns(module: nn.Module, make: Callable[[nn.modules.batchnorm._BatchNorm], nn.Module],
                 made: dict[int, nn.Module]) -> None:
    """Every BatchNorm below ``module`` replaced by ``make(bn)``, in place. Each name is
    visited, aliases too (``named_children`` skips a module's second name, as a block's
    ``last_bn``, which then kept a plain BatchNorm beside the global one): one module
    registered twice stays one module, converted once (``made``, by id)."""
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and \
                not isinstance(child, (GlobalBatchNorm, nn.SyncBatchNorm)):
            if id(child) not in made:
                made[id(child)] = make(child)
            module._modules[name] = made[id(child)]
        else:
            _replace_bns(child, make, made)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Global BatchNorm across processes (Sec. 2.2); the model unchanged on one process.

    Call after moving the model to its device: CUDA models get ``nn.SyncBatchNorm``
    (fused kernels), CPU models :class:`GlobalBatchNorm`; either shares the parameters
    and buffers of the BatchNorm it replaces.
    """
    if world_size() == 1:
        return model
    cpu = any(p.device.type == "cpu" for p in model.parameters())
    make = _to_global_bn if cpu else nn.SyncBatchNorm.convert_sync_batchnorm
    if isinstance(model, nn.modules.batchnorm._BatchNorm):
        return make(model)
    _replace_bns(model, make, {})
    return model


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when several processes train, else ``model``.

    DDP averages gradients over processes; with the loss's gather_with_grad (whose
    backward sums over processes) the averaged gradient equals the single-process
    gradient of the global batch (tests/test_distributed.py).
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


STOP_VOTE_EVERY_S = 2.0  # seconds between the processes' comparisons of stop requests


class Cadence:
    """The steps at which a run's processes do something together (a small all-reduce
    and its host sync), which every process picks alike: about every ``every_s`` seconds
    of the slowest process's measured step time (all-reduced by the caller with its
    other numbers), at most ``max_interval`` steps apart. :class:`StopVote`'s and
    classify's divergence watch's."""

    def __init__(self, start_step: int, every_s: float, max_interval: int) -> None:
        self.every_s, self.max_interval = every_s, max_interval
        self.next_step, self.last_step = start_step + 1, start_step
        self.last_time = self._measured_at = time.perf_counter()

    def due(self, step: int) -> bool:
        """Whether the processes meet after ``step``."""
        return step >= self.next_step

    def step_time(self, step: int) -> float:
        """This process's seconds per step since the last meeting (for the MAX over the
        processes that :meth:`met` takes)."""
        self._measured_at = time.perf_counter()
        return (self._measured_at - self.last_time) / max(step - self.last_step, 1)

    def met(self, step: int, slowest: float) -> None:
        """The processes met after ``step``; ``slowest``: the MAX of their step times."""
        interval = int(self.every_s / slowest) if slowest > 0 else self.max_interval
        self.next_step = step + min(max(interval, 1), self.max_interval)
        self.last_step, self.last_time = step, self._measured_at


class StopVote:
    """Where the processes of a run stop when a signal reached some of them.

    ``vote(step, signal_name, last)`` after every step returns the name of a signal that
    reached any process, or None, identically on every process; each process passes its
    own request (``StopFlag.requested``). One process: its own request, at once. Several:
    they compare requests (one small all-reduce and host sync) only at steps they all
    pick alike: about every ``every_s`` seconds (:data:`STOP_VOTE_EVERY_S`), from the
    slowest process's measured step time, and at the ``last`` step; so a stop comes
    within seconds, well before a launcher's kill (torchrun and SLURM wait 30 s),
    whether a step takes milliseconds or minutes. ``main_flag``: a flag of rank 0's (its
    clock says a --time-budget is spent) told to every process in the same comparison:
    :attr:`main_flag` after the call, True at that step on all of them (False between
    comparisons; one process: its own, at once).
    """

    def __init__(self, device: torch.device, start_step: int = 0,
                 every_s: float | None = None, max_interval: int = 100) -> None:
        self.device = device
        self.cadence = Cadence(start_step, STOP_VOTE_EVERY_S if every_s is None else every_s,
                               max_interval)
        self.main_flag = False

    def __call__(self, step: int, signal_name: str | None, last: bool = False,
                 main_flag: bool = False) -> str | None:
        if world_size() == 1:
            self.main_flag = main_flag
            return signal_name
        self.main_flag = False
        if not self.cadence.due(step) and not last:
            return None
        per_step = self.cadence.step_time(step)
        number = signal.Signals.__members__.get(signal_name, signal.SIGTERM).value \
            if signal_name else 0
        flag = float(main_flag and rank() == 0)  # (the others' clocks do not count)
        votes = torch.tensor([float(number), per_step, flag], device=self.device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        number, per_step, flag = votes.tolist()  # the one host sync
        self.main_flag = bool(flag)
        self.cadence.met(step, per_step)
        return signal.Signals(int(number)).name if number else None
