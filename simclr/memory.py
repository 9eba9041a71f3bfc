"""Will one training step fit in memory? Measured on a few views, checked before step 0.

The paper's default batch (4096 images, 8192 views of 224 px through a ResNet-50) needs
hundreds of GiB of activations; on a laptop such a run is killed by the kernel after
its data is cached and its model built, with no message. Here the activations a step
keeps for its backward pass are *measured*, not guessed: one forward pass of a copy of
the model on 2 and on 4 views, in train mode and under the run's autocast, counting the
bytes of every tensor autograd saves (``torch.autograd.graph.saved_tensors_hooks``).
The difference is the cost of one more view; a step of B views costs about
``fixed + B x per_view`` plus the optimizer state, the input views and the similarity
matrix of NT-Xent. That sum is a lower bound of the step's peak: backward adds its
gradients beside the activations, and the CPU heap keeps freed blocks that the next
step's differently sized ones do not all reuse, so a real step's peak RSS grew up to 2x
the bound (a ResNet-18; 1.02-1.27x for other encoders). On a CPU a run whose bound times
STEP_MARGIN exceeds the free memory is refused before its first step, with the largest
batch whose bound times STEP_MARGIN fits (on a GPU: :func:`step_margins`).

Two settings fail even before that: a model whose parameters alone exceed the memory
(``--width 64`` on a small machine) and views too large to measure a step on
(``--image-size 4096`` on 24 GB).
The first is counted on the meta device, without allocating a byte
(:func:`build_within_memory`); the second is estimated from a measurement on small views
(:func:`measure_step`). An allocation that still fails while building or measuring
becomes a one-line SimCLRError too (:func:`fits_in_memory`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from simclr.checkpoint import what_is_kept
from simclr.errors import SimCLRError
from simclr.runtime import autocast

log = logging.getLogger(__name__)

GIB = 2.0**30
# What a real step's peak may take on a CPU, as a multiple of the bound: a ResNet-18's
# peak RSS grew 1.6-2.0x its bound in fp32 and bf16 from 32 to 512 px (once 2.2x on the
# project's CI runner), other encoders' 1.02-1.27x. A batch kept within 70% of the free
# memory (1.43x) was named and then did not fit. (A GPU's caching allocator is not the
# CPU heap and its ratio is unmeasured: there a run is refused past the free memory and
# the batch named keeps 30% of it spare, as before.)
STEP_MARGIN = 2.5


def step_margins(device: torch.device) -> tuple[float, float]:
    """(refuse, name): a batch is refused when its bound times ``refuse`` exceeds the
    free memory, and the batch named is the largest whose bound times ``name`` fits."""
    if device.type != "cpu":
        return 1.0, 1 / 0.7
    # Against the machine's total (no /proc: macOS) only a bound past it, a step that
    # could never fit, is refused; the batch named keeps the usual margin
    return (1.0 if _ram_is_total() else STEP_MARGIN), STEP_MARGIN


@dataclass
class StepMemory:
    """A step's lower-bound memory, in bytes, as a function of its images per process."""

    fixed: float  # saved tensors that do not grow with the batch (casted weights, ...)
    per_view: float  # saved activations of one more view
    state: float  # the last step's gradients + momentum, held during the forward (weights exist)
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
        # Detached: a saved output holding itself (its grad_fn) is a cycle through C++
        # that the garbage collector cannot see, so the probe model and every activation
        # of the pass would outlive the call (backward, which frees them, never runs).
        # Held all the same, so no storage is freed and reused under another key.
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            autocast(views.device, precision):
        out = model(views)
    del out
    return total


PROBE_SIZE = 32  # side of the small views that estimate what measuring large ones needs


def _fit_views(probe: torch.nn.Module, image_size: int, device: torch.device,
               precision: str, channels_last: bool) -> tuple[float, float]:
    """(fixed, per_view) saved bytes of one forward pass, fitted on 2 and 4 random views."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    rng = torch.Generator(device="cpu").manual_seed(0)
    saved = []
    for n in (2, 4):
        x = torch.rand(n, 3, image_size, image_size, generator=rng).to(device)
        saved.append(_saved_bytes(probe, x.contiguous(memory_format=fmt), precision))
        del x
    per_view = max((saved[1] - saved[0]) / 2, 0.0)
    return max(saved[0] - 2 * per_view, 0.0), per_view


def _check_views_fit(probe: torch.nn.Module, image_size: int, device: torch.device,
                     precision: str, channels_last: bool) -> None:
    """Refuse (SimCLRError) an image size whose measuring views cannot fit: their
    activations are extrapolated (x area) from views of PROBE_SIZE px, so a view too
    large is refused in a second instead of being allocated. On a CPU counted as 6
    views: the pass on 2 and the pass on 4 may both stay in the process (the allocator
    keeps up to 1 GiB freed: runtime.tune_cpu_allocator), and an estimate of 4 alone let
    the kernel kill a 4096 px measurement at 15.7 of 21.6 GiB free. CUDA's caching
    allocator reuses the first pass's blocks (and counts them free): 4."""
    if image_size <= 2 * PROBE_SIZE:
        return
    if any(getattr(m, "fixed_size", None) for m in probe.modules()):
        return  # a ViT takes its own side only: measured at it (a view of it fits or fails)
    free = available_bytes(device)
    if free is None:
        return
    fixed, per_view = _fit_views(probe, PROBE_SIZE, device, precision, channels_last)
    one = per_view * (image_size / PROBE_SIZE) ** 2 + 4.0 * 3 * image_size**2
    views = 6 if device.type == "cpu" else 4
    need = fixed + views * one
    if need > free:
        raise SimCLRError(
            f"--image-size {image_size} does not fit in memory: one view of {image_size} px "
            f"keeps about {size_text(one)} for the backward pass and measuring a step takes "
            f"{views} (about {size_text(need)}) but {_have(free, device)}; try a smaller "
            "--image-size")


def measure_step(model: torch.nn.Module, image_size: int, device: torch.device,
                 precision: str, channels_last: bool, contrastive: bool = True) -> StepMemory:
    """Measure a step's memory on a copy of ``model`` (its BatchNorm statistics and
    RNG untouched) with 2 and 4 random views (3, S, S). ``contrastive``: a SimCLR step
    (two views per image, NT-Xent), else a classifier's (one view per image). Views too
    large to measure on are refused first (SimCLRError), and so is an allocation that
    fails while measuring."""
    with fits_in_memory("a copy of the model to measure a training step on",
                        "try a smaller --width", device):
        probe = copy.deepcopy(model).train()
    with fits_in_memory(f"a training step on views of {image_size} px",
                        "try a smaller --image-size", device):
        _check_views_fit(probe, image_size, device, precision, channels_last)
        fixed, per_view = _fit_views(probe, image_size, device, precision, channels_last)
    del probe
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return StepMemory(fixed=fixed, per_view=per_view,
                      state=2.0 * params, input_per_view=4.0 * 3 * image_size**2,
                      contrastive=contrastive)


MEMINFO = Path("/proc/meminfo")  # Linux's; macOS and Windows have no /proc
CGROUP = Path("/sys/fs/cgroup")
NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as the largest page multiple, ~2**63


def _reclaimable(stat: Path, key: str) -> float:
    """Bytes of page cache the kernel can drop (``key`` of a memory.stat: inactive
    files), which the cgroup's usage counts; 0 where it cannot be read."""
    try:
        for line in stat.read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return float(value)
    except (OSError, ValueError):
        pass
    return 0.0


def _cgroup_free(root: Path = CGROUP) -> float | None:
    """Bytes left under a container's memory limit (cgroup v2, else v1, mounted at
    ``root``), or None without one. The limit less the usage, where the usage's
    inactive page cache counts as free: a data set just read fills the cache, which the
    kernel drops before it kills anything."""
    v1 = root / "memory"
    for limit, usage, stat, key in (
            (root / "memory.max", root / "memory.current", root / "memory.stat",
             "inactive_file"),
            # v1's usage includes its children's, so their inactive files go too
            (v1 / "memory.limit_in_bytes", v1 / "memory.usage_in_bytes", v1 / "memory.stat",
             "total_inactive_file")):
        try:
            text = limit.read_text(encoding="utf-8").strip()
            if text == "max" or float(text) >= NO_LIMIT:
                return None
            used = float(usage.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return float(text) - max(used - _reclaimable(stat, key), 0.0)
    return None


def available_bytes(device: torch.device) -> float | None:
    """Memory this process can still use: free GPU memory on CUDA; on the CPU the
    kernel's MemAvailable (and a container's limit) shared by the processes of this
    machine. None where it cannot be read (then nothing is checked)."""
    if device.type == "cuda":  # free, plus what torch's cache holds but no tensor uses
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return float(torch.cuda.mem_get_info(device)[0] + cached)
    if device.type != "cpu":
        return None
    if _ram_is_total():
        free = _physical_ram()
        if free is None:
            return None
    else:
        try:
            with open(MEMINFO, encoding="utf-8") as f:
                info = dict(line.split(":", 1) for line in f)
            free = float(info["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None
    cgroup = _cgroup_free()
    if cgroup is not None:
        free = min(free, cgroup)
    from simclr.distributed import local_processes

    return free / max(local_processes(), 1)


def _ram_is_total() -> bool:
    """Whether the CPU's memory is read as the machine's total (no /proc/meminfo:
    macOS, Windows) rather than Linux's MemAvailable."""
    return not MEMINFO.exists()


def _physical_ram() -> float | None:
    """The machine's physical memory, from sysconf (macOS; None on Windows, which has
    none). A total, not what is free: other programs' share is unknown, so it is used
    only to refuse what could never fit (:func:`step_margins`), and named as a total."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _free_is_total(device: torch.device) -> bool:
    """Whether :func:`available_bytes` of ``device`` is the machine's total RAM
    (:func:`_physical_ram`, the CPU without /proc/meminfo), not what is available: the
    one test of how messages name that figure (:func:`_have`)."""
    return device.type == "cpu" and _ram_is_total()


def _where(device: torch.device) -> str:
    return "GPU memory" if device.type == "cuda" else "RAM"


def _shared(device: torch.device) -> bool:
    """Whether :func:`available_bytes` of ``device`` is this process's share of the
    CPU's memory (processes on this machine), not all that is free."""
    from simclr.distributed import local_processes

    return device.type == "cpu" and local_processes() > 1


def _have(free: float, device: torch.device) -> str:
    """What messages say of ``free`` (:func:`available_bytes`): '12.0 GiB of RAM is
    available' (with processes on this machine's CPU: each one's share of it, said so),
    or, where it is the machine's total (macOS: :func:`_physical_ram`), that
    total, which is not what is available (other programs' share is unknown)."""
    from simclr.distributed import local_processes

    if not _free_is_total(device):
        if _shared(device):  # the share, the figure checked, named as one: not what is free
            return (f"{size_text(free)} of RAM is this process's share ("
                    f"{size_text(free * local_processes())} available, shared by "
                    f"{local_processes()} processes)")
        return f"{size_text(free)} of {_where(device)} is available"
    unread = "(its free memory cannot be read here)"
    if _shared(device):
        return f"{size_text(free)} of RAM is this process's share of this machine's total {unread}"
    return f"this machine has {size_text(free)} of RAM in all {unread}"


def is_allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (CUDA out of memory, the CPU
    allocator refusing, numpy's or Python's MemoryError, a thread whose stack could not
    be allocated), not a bug."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(sign in text for sign in (
        "can't allocate memory", "not enough memory",  # the CPU allocator
        "can't start new thread",  # Python's, a loader thread's stack refused
        "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED"))  # GPU libraries' own


# What failed when Python could not start a thread: its stack's memory, or as likely the
# limit on a user's threads and processes, which no smaller batch lifts.
THREAD_REFUSED = "a new thread was refused: memory, or the limit on threads (ulimit -u), is spent"


def _failed_size(exc: BaseException) -> str:
    """'allocating 137.3 GiB failed' from an allocator's message, :data:`THREAD_REFUSED`,
    or 'an allocation failed'."""
    text = str(exc)
    if "can't start new thread" in text:
        return THREAD_REFUSED
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        return f"allocating {size_text(float(found.group(1)))} failed"
    # (CUDA's 'Tried to allocate 20.00 GiB', numpy's 'Unable to allocate 1.50 GiB')
    found = re.search(r"(?:[Tt]ried to|[Uu]nable to) allocate ([\d.]+ [KMGTP]?i?B)", text)
    return f"allocating {found.group(1)} failed" if found else "an allocation failed"


@contextlib.contextmanager
def allocation_failure_is(message: Callable[[str], str]) -> Iterator[None]:
    """Turn an allocation that fails inside the block (:func:`is_allocation_failure`)
    into a one-line SimCLRError, ``message(what failed)`` ('allocating 1.5 GiB failed',
    or 'an allocation failed'); any other exception passes unchanged."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_allocation_failure(exc):
            raise
        raise SimCLRError(message(_failed_size(exc))) from None


@contextlib.contextmanager
def fits_in_memory(what: str, hint: str, device: torch.device) -> Iterator[None]:
    """Turn an allocation that fails inside the block (building a model, measuring a
    step) into a one-line SimCLRError naming ``what`` did not fit, then ``hint``; any
    other exception passes unchanged."""

    def message(failed: str) -> str:
        free = available_bytes(device)
        if not free:
            have = ""
        elif _free_is_total(device) or _shared(device):  # (said as such)
            have = f" ({_have(free, device)})"
        else:
            have = f" with {size_text(free)} of {_where(device)} available"
        return f"{what} does not fit in memory: {failed}{have}; {hint}"

    with allocation_failure_is(message):
        yield


def count_text(n: float) -> str:
    """A number of parameters as '11.2 million' or '11.4 trillion'."""
    for scale, name in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if n >= scale:
            return f"{n / scale:.1f} {name}"
    return f"{n:.0f}"


@dataclass
class ModelSize:
    """What a model's tensors take, counted on the meta device."""

    parameters: int  # number of parameters
    weights: float  # bytes of every parameter and buffer
    trained: float  # bytes of the parameters that get a gradient


def model_size(build: Callable[[], torch.nn.Module]) -> ModelSize | None:
    """The size of what ``build`` returns, built on the meta device (shapes only,
    nothing allocated, a second even for trillions of parameters); None where the
    builder does not run there (then nothing is checked up front)."""
    try:
        with torch.device("meta"):
            module = build()
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        log.debug("memory: cannot count the model's parameters on the meta device: %s", exc)
        return None
    params = list(module.parameters())
    return ModelSize(
        parameters=sum(p.numel() for p in params),
        weights=float(sum(t.numel() * t.element_size() for t in [*params, *module.buffers()])),
        trained=float(sum(p.numel() * p.element_size() for p in params if p.requires_grad)))


def build_within_memory(build: Callable[[], torch.nn.Module], device: torch.device,
                        what: str, hint: str, enforce: bool = True) -> torch.nn.Module:
    """``build()`` moved to ``device``, once its size, counted on the meta device, is
    known to fit. Refused with a SimCLRError naming ``what`` (e.g. 'the model (resnet18
    x1000, ...)') and ``hint``: a model whose weights, gradients and one optimizer buffer
    per parameter (a lower bound of training's) exceed the memory available on
    ``device``, or, even with ``enforce=False`` (--no-memory-check), whose weights
    alone exceed it (they are built in RAM first, then moved). An allocation that
    fails anyway becomes the same kind of one-line error."""
    check_model_memory(build, device, what, hint, enforce)
    with fits_in_memory(what, hint, device):
        return build().to(device)


def check_model_memory(build: Callable[[], torch.nn.Module], device: torch.device,
                       what: str, hint: str, enforce: bool = True) -> None:
    """The refusal of :func:`build_within_memory` alone, nothing allocated (the model
    counted on the meta device): a sweep checks each cell's before the first trains."""
    size = model_size(build)
    if size is not None:
        train = (size.weights + 2 * size.trained, "its weights, gradients and optimizer state")
        weights = (size.weights, "its weights")
        checks = [(device, *(train if enforce else weights))]
        if device.type != "cpu":
            checks.append((torch.device("cpu"), *weights))
        for where, need, kept in checks:
            free = available_bytes(where)
            if free is not None and need > free:
                skip = " (--no-memory-check skips this check)" if kept != weights[1] else ""
                raise SimCLRError(
                    f"{what} does not fit in memory: {kept} ({count_text(size.parameters)} "
                    f"parameters) need at least {size_text(need)} but {_have(free, where)}; "
                    f"{hint}{skip}")
        log.debug("memory: %s has %s parameters (%s)", what, count_text(size.parameters),
                 size_text(size.weights))


def largest_fitting_batch(mem: StepMemory, free: float, world: int,
                          margin: float = STEP_MARGIN) -> int:
    """The largest global batch, ``world`` x a power of two, whose lower bound times
    ``margin`` stays within ``free`` bytes; 0 when not even one image per process does."""
    per_rank, n = 0, 1
    while margin * mem.lower_bound(n, world) <= free:
        per_rank, n = n, 2 * n
    return per_rank * world


def size_text(n: float) -> str:
    """Bytes as '1.5 GiB' or '340 MiB'."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"


def check_step_memory(mem: StepMemory, batch_size: int, world: int, device: torch.device,
                      what: str, enforce: bool = True,
                      override: str | None = "--no-memory-check") -> float:
    """Log a step's lower-bound memory; refuse (SimCLRError) a batch whose lower bound
    times the device's margin (:func:`step_margins`) exceeds the memory available,
    naming a batch that fits with its margin. Returns the bound in bytes.
    ``enforce=False`` (``--no-memory-check``, or ``--compile``, which may recompute
    instead of saving) only logs. ``override``: the flag that skips the check, named
    in the message."""
    views = mem.views_per_image * (batch_size // world)
    need = mem.lower_bound(batch_size // world, world)
    free = available_bytes(device)
    if free is None:
        unread = ("; the memory check is off: this machine's memory could not be read"
                  if _free_is_total(device) else "")
        log.info("memory: one step needs at least %s (%s)%s", size_text(need), what, unread)
        return need
    refuse, name = step_margins(device)
    short = refuse * need > free
    if short and enforce:
        fits = largest_fitting_batch(mem, free, world, name)
        hint = f"--batch-size {fits}" if fits else "a smaller --image-size or --width"
        if fits and name > refuse and device.type == "cpu":  # (a total: refused at 1x)
            hint += (f", whose step fits in that total with the usual {name:g}x margin "
                     "for its peak")
        skip = f" ({override} skips this check)" if override else ""
        raise SimCLRError(
            f"--batch-size {batch_size} does not fit: one step of {what} needs at least "
            f"{size_text(need)} ({views} views per process, {mem.per_view / 2**20:.2f} MiB "
            f"each, measured){f', its peak up to {refuse:g}x that,' * (refuse > 1)} but "
            f"{_have(free, device)}; try {hint}{skip}")
    log.log(logging.WARNING if short else logging.INFO,
            "memory: one step needs at least %s (%s, %.2f MiB per view); %s",
            size_text(need), what, mem.per_view / 2**20, _have(free, device))
    return need


@contextlib.contextmanager
def out_of_memory_is_an_error(batch_size: int, step: int, last_good: Path | str | None,
                              resumable: bool = True, again: str | None = None,
                              ) -> Iterator[None]:
    """Turn an allocation that fails inside the block (CUDA out of memory, or the CPU
    allocator refusing; a step, or the loading of its batch) into a one-line SimCLRError
    naming the step and the last checkpoint; any other exception passes unchanged.
    Nothing is saved after the failure, so that checkpoint stays as it was.
    ``resumable``: whether the advice may say how to continue from ``last_good``:
    ``again``, the words that do (an evaluation's 'run the same command again'), or by
    default --resume (pretraining, supervised)."""
    def message(failed: str) -> str:  # (worded on a failure only: this wraps every step)
        if not resumable:
            then = "free memory or use a smaller --batch-size"
        elif again is None:
            then = "free memory and --resume, or start a new run with a smaller --batch-size"
        else:  # (another batch is other settings: refused unless it starts over)
            then = (f"free memory and {again}, or start over with a smaller --batch-size "
                    "and --overwrite")
        kept = what_is_kept(None if last_good is None else Path(last_good))
        why = f" ({failed})" if failed == THREAD_REFUSED else ""  # (a size is no help here)
        return (f"out of memory at step {step + 1}{why} with --batch-size {batch_size}: "
                f"{kept}; {then}")

    with allocation_failure_is(message):
        yield
