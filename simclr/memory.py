"""Will one training step fit in memory? Measured on a few views, checked before step 0.

The paper's default batch (4096 images, 8192 views of 224 px through a ResNet-50) needs
hundreds of GiB of activations; on a laptop such a run is killed by the kernel after
its data is cached and its model built, with no message. Here the activations a step
keeps for its backward pass are *measured*, not guessed: one forward pass of a copy of
the model on 2 and on 4 views, in train mode and under the run's autocast, counting the
bytes of every tensor autograd saves (``torch.autograd.graph.saved_tensors_hooks``).
The difference is the cost of one more view; a step of B views costs about
``fixed + B x per_view`` plus the optimizer state, the input views and the similarity
matrix of NT-Xent. That sum is a lower bound of the step's peak (backward adds its own
transient buffers), so a run whose lower bound exceeds the free memory cannot fit and
is refused before its first step, with the batch that would.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from simclr.checkpoint import what_is_kept
from simclr.errors import SimCLRError
from simclr.runtime import autocast

log = logging.getLogger(__name__)

GIB = 2.0**30


@dataclass
class StepMemory:
    """A step's lower-bound memory, in bytes, as a function of its images per process."""

    fixed: float  # saved tensors that do not grow with the batch (casted weights, ...)
    per_view: float  # saved activations of one more view
    state: float  # gradients + one optimizer buffer per parameter (weights already exist)
    input_per_view: float  # the fp32 view itself, (3, S, S)
    contrastive: bool = True  # two views per image and NT-Xent; else one (classifiers)

    @property
    def views_per_image(self) -> int:
        return 2 if self.contrastive else 1

    def lower_bound(self, images: int, world: int = 1) -> float:
        """Lower bound for ``images`` (n) images on each of ``world`` processes: 2n
        views here, and NT-Xent's (2n, 2N) logits, their exponentials and their gradient
        in fp32; n views and no logits matrix for a classifier."""
        views = self.views_per_image * images
        similarity = 3 * 4.0 * views * views * world if self.contrastive else 0.0
        return (self.fixed + views * (self.per_view + self.input_per_view)
                + self.state + similarity)


def _saved_bytes(model: torch.nn.Module, views: torch.Tensor, precision: str) -> int:
    """Bytes of the distinct tensors autograd saves in one forward pass of ``views``,
    leaving out the parameters themselves (saved by fp32 layers; they exist already)."""
    seen = {(p.untyped_storage().data_ptr(), p.untyped_storage().nbytes())
            for p in model.parameters()}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            autocast(views.device, precision):
        out = model(views)
    del out
    return total


def measure_step(model: torch.nn.Module, image_size: int, device: torch.device,
                 precision: str, channels_last: bool, contrastive: bool = True) -> StepMemory:
    """Measure a step's memory on a copy of ``model`` (its BatchNorm statistics and
    RNG untouched) with 2 and 4 random views (3, S, S). ``contrastive``: a SimCLR step
    (two views per image, NT-Xent), else a classifier's (one view per image)."""
    probe = copy.deepcopy(model).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    rng = torch.Generator(device="cpu").manual_seed(0)
    saved = []
    for n in (2, 4):
        x = torch.rand(n, 3, image_size, image_size, generator=rng).to(device)
        saved.append(_saved_bytes(probe, x.contiguous(memory_format=fmt), precision))
    del probe
    per_view = max((saved[1] - saved[0]) / 2, 0.0)
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return StepMemory(fixed=max(saved[0] - 2 * per_view, 0.0), per_view=per_view,
                      state=2.0 * params, input_per_view=4.0 * 3 * image_size**2,
                      contrastive=contrastive)


def _cgroup_free() -> float | None:
    """Bytes left under a cgroup v2 memory limit (containers), or None without one."""
    limit, current = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        text = limit.read_text().strip()
        if text == "max":
            return None
        return float(text) - float(current.read_text())
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device) -> float | None:
    """Memory this process can still use: free GPU memory on CUDA; on the CPU the
    kernel's MemAvailable (and a container's limit) shared by the processes of this
    machine. None where it cannot be read (then nothing is checked)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = float(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    cgroup = _cgroup_free()
    if cgroup is not None:
        free = min(free, cgroup)
    return free / max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)


def largest_fitting_batch(mem: StepMemory, free: float, world: int) -> int:
    """The largest global batch, ``world`` x a power of two, whose lower bound stays
    within 70% of ``free`` bytes; 0 when not even one image per process does."""
    per_rank, n = 0, 1
    while mem.lower_bound(n, world) <= 0.7 * free:
        per_rank, n = n, 2 * n
    return per_rank * world


def size_text(n: float) -> str:
    """Bytes as '1.5 GiB' or '340 MiB'."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"


def check_step_memory(mem: StepMemory, batch_size: int, world: int, device: torch.device,
                      what: str, enforce: bool = True,
                      override: str | None = "--no-memory-check") -> float:
    """Log a step's lower-bound memory; refuse (SimCLRError) a batch whose lower bound
    exceeds the memory available, naming a batch that fits. Returns the bound in bytes.
    ``enforce=False`` (``--no-memory-check``, or ``--compile``, which may recompute
    instead of saving) only logs. ``override``: the flag that skips the check, named
    in the message."""
    views = mem.views_per_image * (batch_size // world)
    need = mem.lower_bound(batch_size // world, world)
    free = available_bytes(device)
    where = "GPU" if device.type == "cuda" else "RAM"
    if free is None:
        log.info("memory: one step needs at least %s (%s)", size_text(need), what)
        return need
    if need > free and enforce:
        fits = largest_fitting_batch(mem, free, world)
        hint = f"--batch-size {fits}" if fits else "a smaller --image-size or --width"
        skip = f" ({override} skips this check)" if override else ""
        raise SimCLRError(
            f"--batch-size {batch_size} does not fit: one step of {what} needs at least "
            f"{size_text(need)} ({views} views per process, {mem.per_view / 2**20:.2f} MiB "
            f"each, measured) but {size_text(free)} of {where} is available; try {hint}{skip}")
    log.log(logging.WARNING if need > free else logging.INFO,
            "memory: one step needs at least %s of the %s of %s available (%s, %.2f MiB "
            "per view)", size_text(need), size_text(free), where, what, mem.per_view / 2**20)
    return need


@contextlib.contextmanager
def out_of_memory_is_an_error(batch_size: int, step: int, last_good: Path | None,
                              resumable: bool = True) -> Iterator[None]:
    """Turn an allocation that fails inside the block (CUDA out of memory, or the CPU
    allocator refusing) into a one-line SimCLRError naming the step and the last
    checkpoint; any other exception passes unchanged. Nothing is saved after the
    failure, so that checkpoint stays as it was. ``resumable``: whether the advice may
    name --resume (pretraining) or not (classifier training)."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if not (isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in text
                or "not enough memory" in text):
            raise
        kept = what_is_kept(last_good)
        then = ("free memory and --resume, or start a new run with a smaller --batch-size"
                if resumable else "free memory or use a smaller --batch-size")
        raise SimCLRError(f"out of memory at step {step + 1} with --batch-size {batch_size}: "
                          f"{kept}; {then}") from None
