"""Throughput benchmark: simclr's training pipeline against a lightly loop, and its parts.

One run prints ONE markdown table (see benchmarks/README.md):

1. end-to-end training views/s (data + augmentation + step) of ``simclr.train.pretrain``
   against a training loop written with lightly (SimCLRTransform in DataLoader
   workers, NTXentLoss, SimCLRProjectionHead, SGD), same encoder, same batch;
2. the model-only ceiling (forward + backward + optimizer step on pre-made views) and
   the fraction of it each end-to-end loop reaches;
3. augmentation alone: ``simclr.augment.TwoViewAugment`` on a uint8 batch against
   torchvision's per-image PIL pipeline (and kornia's batched one);
4. NT-Xent forward + backward time, ``simclr.loss.nt_xent`` against lightly's;
5. the peak memory of every case.

Every case runs in a fresh subprocess (same memory conditions, no leftover threads,
peak RSS per case); the parent runs the cases round-robin for ``--rounds`` rounds
and reports medians, so slow drifts of a shared machine hit every case alike.
lightly and kornia are benchmark-only dependencies: the simclr package never imports them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT = "BENCH-RESULT "  # prefix of the one line a case subprocess prints
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"
PRECISIONS = {"fp32": "fp32", "bf16": "bf16 autocast + channels_last"}
LOSS_SIZES = (512, 1024, 2048, 4096, 8192)
PROJ_DIM = 128
PREFETCH_FACTOR = 2  # torch DataLoader's default: batches each worker makes ahead
SIMCLR_PREFETCH = 3  # simclr.loader.BatchLoader's queue of gathered uint8 batches
CIFAR10_IMAGES = 50_000  # the most images generated: the loops cycle epochs after that


# ------------------------------------------------------------------ measuring helpers


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def children_uss_mib() -> float | None:
    """Memory private to this process's children (DataLoader workers), MiB, now.

    USS (private pages) rather than RSS: a forked worker shares the parent's pages,
    which its RSS would count a second time. None where /proc cannot tell.
    """
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    pids: list[str] = []
    for task in tasks.iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            continue
    total_kib = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total_kib += sum(int(x.split()[1]) for x in lines
                         if x.startswith(("Private_Clean:", "Private_Dirty:")))
    return total_kib / 1024


class Memory:
    """Peak memory of one case: RSS increase over a baseline (CPU), allocator peak (CUDA)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        if device.type == "cuda":
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats(device)
        self.base = peak_rss_mib()  # taken after the imports: import cost is not the case's

    def report(self, workers_uss: float | None = None) -> dict[str, float | None]:
        import torch

        gpu = None
        if self.device.type == "cuda":
            gpu = torch.cuda.max_memory_allocated(self.device) / 2**20
        return {"rss_mib": peak_rss_mib() - self.base, "gpu_mib": gpu,
                "workers_uss_mib": workers_uss}


class StepClock:
    """Steady-state views/s over steps warmup+1 .. warmup+steps (the first ones discarded).

    views/s = views of the window / its wall time, on every device: the clock reads
    only at the two ends of the window (on CUDA after a device sync; a sync per step
    would drain the queue the loops keep full). Not a median of per-step gaps: a loop
    fed by DataLoader workers gets its batches in bursts (a wave of workers finishing
    together), and the median gap, taken inside a burst, overstated a data-bound loop.
    """

    def __init__(self, device: Any, warmup: int, steps: int, views_per_step: int) -> None:
        self.device, self.warmup, self.steps = device, warmup, steps
        self.views_per_step = views_per_step
        self.marks: list[float] = []
        self.workers_uss: float | None = None

    def tick(self, step: int) -> None:
        """Call after step ``step`` (1-based) has been issued."""
        last = self.warmup + self.steps
        if step not in (self.warmup, last):
            return
        _sync(self.device)
        self.marks.append(time.perf_counter())
        if step == last:
            self.workers_uss = children_uss_mib()  # the workers are still alive here

    def views_per_s(self) -> float:
        if len(self.marks) < 2:
            raise RuntimeError("the run stopped before the timed window ended")
        return self.views_per_step * self.steps / (self.marks[1] - self.marks[0])


def _autocast(device: Any, precision: str) -> Any:
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _memory_format(precision: str) -> Any:
    import torch

    return torch.channels_last if precision == "bf16" else torch.contiguous_format


# ------------------------------------------------------------------------ the cases


def case_e2e_simclr(spec: dict[str, Any]) -> dict[str, Any]:
    """simclr's real training loop, ``pretrain(cfg)``, timed through its on_step hook."""
    import torch

    from simclr.settings import build_config
    from simclr.train import pretrain

    try:  # imported by the run's metrics log; its import is not training memory
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        pass
    device = torch.device(spec["device"])
    batch, warmup, steps = spec["batch"], spec["warmup"], spec["steps"]
    memory = Memory(device)
    clock = StepClock(device, warmup, steps, 2 * batch)
    with tempfile.TemporaryDirectory(prefix="simclr-bench-run-") as out:
        cfg = build_config(preset="cifar10", flags={
            "data.path": spec["data"], "data.cache_dir": spec["cache_dir"],
            "out": str(Path(out) / "run"), "model.width": spec["width"],
            # The preset's head made lightly's (below): 2 layers, no BN, same compute.
            "model.head_batch_norm": False, "model.head_layers": 2,
            "batch_size": batch, "max_steps": warmup + steps,
            "precision": spec["precision"], "channels_last": spec["precision"] == "bf16",
            "device": spec["device"], "progress": False, "log_every": 10**6,
            "checkpoint_every": 0, "compile": bool(spec.get("compile")),
        })
        pretrain(cfg, on_step=lambda step, _stop: clock.tick(step))
    return {"views_per_s": clock.views_per_s(), **memory.report(clock.workers_uss)}


def _lightly_loader(spec: dict[str, Any], device: Any) -> Any:
    """lightly's input pipeline as its examples write it: SimCLRTransform in DataLoader
    workers over an ImageFolder (torch's default prefetch, no persistent workers)."""
    import torch
    import torchvision
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)
    dataset = torchvision.datasets.ImageFolder(spec["data"], transform=transform)
    return torch.utils.data.DataLoader(
        dataset, batch_size=spec["batch"], shuffle=True, drop_last=True,
        num_workers=spec["workers"], pin_memory=device.type == "cuda")


def _epochs(loader: Any) -> Any:
    """The loader's batches epoch after epoch, as a training loop's ``for epoch`` does
    (one epoch may be shorter than warm-up + timed steps). An epoch of no batch (fewer
    images than the batch, drop_last) is an error: it restarted the workers until the
    case's timeout."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise SystemExit(f"the data set holds fewer images than one batch "
                             f"({loader.batch_size}): no batch to time")


def case_e2e_lightly(spec: dict[str, Any]) -> dict[str, Any]:
    """A SimCLR loop as lightly's examples write it, on simclr's encoder."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from simclr.models import build_encoder
    from simclr.settings import build_config

    device = torch.device(spec["device"])
    if device.type == "cuda":  # as simclr.train_setup.setup_runtime sets it for simclr's run
        torch.backends.cudnn.benchmark = True
    if device.type == "cpu" and spec.get("allocator"):  # the extra row: simclr's setting
        from simclr.runtime import tune_cpu_allocator

        tune_cpu_allocator()
    batch, warmup, steps = spec["batch"], spec["warmup"], spec["steps"]
    fmt = _memory_format(spec["precision"])
    memory = Memory(device)
    loader = _lightly_loader(spec, device)
    # simclr's encoder as the cifar10 preset builds it in simclr's case: its
    # projection_shortcuts (every stage's first block projects) set as the preset sets
    # it (True; without it lightly's encoder had 0.75% fewer FLOPs)
    preset = build_config(preset="cifar10").model
    encoder = build_encoder(preset.arch, spec["width"], cifar_stem=True,
                            projection_shortcuts=preset.projection_shortcuts)
    # The head simclr's case builds (2-layer MLP, hidden = feature dim, no BN).
    head = SimCLRProjectionHead(encoder.feature_dim, encoder.feature_dim, PROJ_DIM,
                                batch_norm=False)
    model = torch.nn.Sequential(encoder, head).to(device).to(memory_format=fmt)
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    model.train()
    clock = StepClock(device, warmup, steps, 2 * batch)
    batches = _epochs(loader)
    for step in range(1, warmup + steps + 1):
        (x0, x1), _ = next(batches)
        x0 = x0.to(device, non_blocking=True).contiguous(memory_format=fmt)
        x1 = x1.to(device, non_blocking=True).contiguous(memory_format=fmt)
        with _autocast(device, spec["precision"]):
            z0, z1 = model(x0), model(x1)  # two forward passes, as lightly's examples
        loss = criterion(z0.float(), z1.float())  # float32 logits, as simclr's loop
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock.tick(step)
    batches.close()  # joins the workers before the memory report
    return {"views_per_s": clock.views_per_s(), **memory.report(clock.workers_uss)}


def case_loader_lightly(spec: dict[str, Any]) -> dict[str, Any]:
    """lightly's DataLoader alone (batches moved to the device, no model): the most its
    end-to-end loop can reach, over the same warm-up and timed window."""
    import torch

    device = torch.device(spec["device"])
    memory = Memory(device)
    clock = StepClock(device, spec["warmup"], spec["steps"], 2 * spec["batch"])
    batches = _epochs(_lightly_loader(spec, device))
    for step in range(1, spec["warmup"] + spec["steps"] + 1):
        (x0, x1), _ = next(batches)
        x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
        clock.tick(step)
    batches.close()
    return {"views_per_s": clock.views_per_s(), **memory.report(clock.workers_uss)}


def case_model(spec: dict[str, Any]) -> dict[str, Any]:
    """simclr's training step (model, NT-Xent, LARS) on pre-made views: the ceiling."""
    import torch

    from simclr.models import build_model
    from simclr.optim import build_optimizer
    from simclr.settings import build_config
    from simclr.train_setup import setup_runtime

    device = torch.device(spec["device"])
    batch, precision = spec["batch"], spec["precision"]
    fmt = _memory_format(precision)
    memory = Memory(device)
    cfg = build_config(preset="cifar10", flags={"model.width": spec["width"],
                                                "model.head_batch_norm": False,
                                                "model.head_layers": 2, "device": spec["device"],
                                                "batch_size": batch, "precision": precision})
    # pretrain's process settings (CPU: the allocator; CUDA: cuDNN's autotuner): the
    # ceiling is the same step in the same process conditions.
    setup_runtime(cfg)
    model = build_model(cfg.model, 32).to(device).to(memory_format=fmt)
    optimizer = build_optimizer(cfg.optim, model, batch)
    views = torch.rand(2 * batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    # Compiled as train.py compiles (the module's forward; the loss and step stay eager).
    forward = torch.compile(model) if spec.get("compile") else model
    views_per_s, _ = timed_steps(forward, optimizer, cfg, views, spec)
    return {"views_per_s": views_per_s, **memory.report()}


def timed_steps(model: Any, optimizer: Any, cfg: Any, views: Any, spec: dict[str, Any]
                ) -> tuple[float, int]:
    """(views/s, dim of h) of simclr's step (model, NT-Xent, optimizer) repeated on the
    same views (2N, 3, S, S): ``spec['warmup']`` steps, then ``spec['steps']`` timed."""
    from simclr.loss import contrastive_loss
    from simclr.runtime import autocast

    batch, device = len(views) // 2, views.device
    model.train()
    clock = StepClock(device, spec["warmup"], spec["steps"], 2 * batch)
    for step in range(1, spec["warmup"] + spec["steps"] + 1):
        with autocast(device, spec["precision"]):
            h, z = model(views)
        loss, _ = contrastive_loss(cfg.loss, z[:batch].float(), z[batch:].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock.tick(step)
    return clock.views_per_s(), int(h.shape[1])


def _augmenter(spec: dict[str, Any], device: Any) -> Callable[[int], Any]:
    """A function r -> two views of the same ``batch`` images, for one implementation."""
    import numpy as np
    import torch

    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.folders import scan_folder
    from simclr.settings import build_config

    batch, impl = spec["batch"], spec["impl"]
    pick = np.random.default_rng(0).permutation(len(scan_folder(spec["data"]).paths))[:batch]
    if impl == "torchvision":
        from PIL import Image
        from torchvision.transforms import v2

        paths = scan_folder(spec["data"]).paths
        images = []
        for i in pick:
            with Image.open(paths[i]) as im:
                images.append(im.convert("RGB"))  # decoded before timing, like the cache
        pipeline = v2.Compose([
            v2.RandomResizedCrop(32), v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
            # v2's ToTensor: ToImage + ToDtype(scale) (v2.ToTensor is deprecated).
            v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        ])
        return lambda r: [pipeline(im) for im in images for _ in range(2)]
    source = open_source(spec["data"], DataConfig(cache_dir=spec["cache_dir"]), train=True,
                         image_size=32)
    uint8 = source.get_batch(pick).to(device)
    if impl == "simclr":
        from simclr.augment import TwoViewAugment

        augment = TwoViewAugment(build_config(preset="cifar10").augment, seed=0)
        indices = torch.as_tensor(pick, dtype=torch.int64)
        return lambda r: augment(uint8, indices, r)  # a new epoch: new parameters
    import kornia.augmentation as K

    pipeline = torch.nn.Sequential(
        K.RandomResizedCrop((32, 32)), K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2))
    return lambda r: (pipeline(uint8.float() / 255), pipeline(uint8.float() / 255))


def case_augment(spec: dict[str, Any]) -> dict[str, Any]:
    """Views/s of one augmentation implementation: ``batch`` images -> 2 x batch views."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"] if spec["impl"] != "torchvision" else "cpu")
    memory = Memory(torch.device(spec["device"]))
    run = _augmenter(spec, device)
    times = []
    with torch.no_grad():
        for r in range(spec["warmup"] + spec["repeats"]):
            start = time.perf_counter()
            run(r)
            _sync(device)
            if r >= spec["warmup"]:
                times.append(time.perf_counter() - start)
    return {"views_per_s": 2 * spec["batch"] / statistics.median(times), **memory.report()}


def case_loss(spec: dict[str, Any]) -> dict[str, Any]:
    """NT-Xent forward + backward, ms, at each 2N (ascending), D = 128, float32.

    On the CPU the peak RSS only grows, so with ascending sizes the peak after size k
    is that of size k (the largest so far).
    """
    import torch

    device = torch.device(spec["device"])
    if spec["impl"] == "simclr":
        from simclr.loss import nt_xent

        loss_fn = lambda a, b: nt_xent(a, b, temperature=0.5)  # noqa: E731
    else:
        from lightly.loss import NTXentLoss

        loss_fn = NTXentLoss(temperature=0.5)
    memory = Memory(device)
    generator = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}
    for size in spec["sizes"]:
        n = size // 2
        z_a, z_b = (torch.randn(n, PROJ_DIM, generator=generator).to(device).requires_grad_()
                    for _ in range(2))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        repeats = loss_repeats(spec["repeats"], size)
        times = []
        for r in range(1 + repeats):  # the first call warms up
            start = time.perf_counter()
            loss_fn(z_a, z_b).backward()
            _sync(device)
            if r:
                times.append((time.perf_counter() - start) * 1e3)
            z_a.grad = z_b.grad = None
        out[str(size)] = {"ms": statistics.median(times), **memory.report()}
        del z_a, z_b
    return {"sizes": out}


def loss_repeats(base: int, size: int) -> int:
    """Fewer repeats for the large (slow, low-noise) sizes: base at 2N <= 1024, >= 3."""
    return max(min(base, 3), min(base, round(base * 1024 / size)))


CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "e2e-simclr": case_e2e_simclr, "e2e-lightly": case_e2e_lightly, "model": case_model,
    "loader-lightly": case_loader_lightly,
    "augment": case_augment, "loss": case_loss,
}


def run_case_here(spec: dict[str, Any]) -> None:
    """Subprocess entry: run one case, print its result as one JSON line."""
    result = CASES[spec["kind"]](spec)
    print(RESULT + json.dumps(result), flush=True)


# ------------------------------------------------------------------ the parent side


def case_key(spec: dict[str, Any]) -> str:
    keep = ("kind", "impl", "width", "precision", "workers", "allocator", "threads",
            "compile")
    return "|".join(f"{k}={spec[k]}" for k in keep if k in spec)


def run_subprocess(spec: dict[str, Any], timeout: float, script: str = __file__
                   ) -> dict[str, Any]:
    """One case in a fresh interpreter (``script --case SPEC``); {'error': ...} instead
    of raising."""
    cmd = [sys.executable, str(Path(script).resolve()), "--case", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail}"}


def describe(result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED " + result["error"]
    if "views_per_s" in result:
        return f"{result['views_per_s']:.0f} views/s"
    if "sizes" in result:
        return ", ".join(f"{s}: {v['ms']:.1f} ms" for s, v in result["sizes"].items())
    # (another script's case, run by run_rounds: its numbers other than memory)
    return ", ".join(f"{k} {v:.4g}" for k, v in result.items()
                     if isinstance(v, float) and not k.endswith("_mib"))


def run_rounds(cases: list[dict[str, Any]], rounds: int, timeout: float,
               results: dict[str, list[dict[str, Any]]], t0: float, script: str = __file__,
               key: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Round-robin: every round runs every case once, each round starting one case later
    (each in ``script``, filed under ``key(spec)``)."""
    key = key or case_key
    for r in range(rounds):
        round_start = time.perf_counter()
        order = cases[r % len(cases):] + cases[:r % len(cases)]
        for spec in order:
            start = time.perf_counter()
            result = run_subprocess(spec, timeout, script)
            results.setdefault(key(spec), []).append(result)
            print(f"[{time.perf_counter() - t0:6.0f} s] round {r + 1}/{rounds} "
                  f"{key(spec)}: {describe(result)} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
        if r == 0 and rounds > 1:
            left = (time.perf_counter() - round_start) * (rounds - 1)
            print(f"  about {left / 60:.1f} min left in this phase", file=sys.stderr, flush=True)


class Stats(tuple):
    """(median, min, max) of a case's rounds, which also knows how many rounds gave a
    value (``ok``) out of how many ran (``ran``): a median over 2 of 3 rounds is said
    as such, not passed off as the footer's 'median over 3'."""

    ok: int
    ran: int

    def __new__(cls, values: tuple[float, float, float], ok: int, ran: int) -> Stats:
        stats = super().__new__(cls, values)
        stats.ok, stats.ran = ok, ran
        return stats


def median_of(runs: list[dict[str, Any]], field: str,
              pick: Callable[[dict[str, Any]], Any] = lambda r: r) -> Stats:
    """(median, min, max) of a field over the successful rounds; NaNs when none succeeded
    (min and max -inf when the case never ran: a run stopped before it). ``.ok`` /
    ``.ran``: the rounds that gave a value / that ran (failed and timed-out ones count)."""
    if not runs:
        return Stats((float("nan"), float("-inf"), float("-inf")), 0, 0)
    values = [pick(r)[field] for r in runs if "error" not in r and pick(r)[field] is not None]
    if not values:
        return Stats((float("nan"),) * 3, 0, len(runs))
    return Stats((statistics.median(values), min(values), max(values)), len(values), len(runs))


def fmt_rate(stats: tuple[float, float, float], digits: int = 0) -> str:
    """'median (min–max)', with 'k/N rounds' where only k of the N rounds that ran gave
    a value (the others failed or timed out: see the notes under the table)."""
    med, lo, hi = stats
    if med != med:  # NaN: every round failed, or none ran
        return "not run" if lo == float("-inf") else "failed"
    text = f"{med:,.{digits}f}" if lo == hi else (
        f"{med:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})")
    ok, ran = getattr(stats, "ok", 0), getattr(stats, "ran", 0)
    return f"{text}, {ok}/{ran} rounds" if ok < ran else text


def failed_rounds(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per case with a failed or timed-out round: 'case: k/N rounds failed
    (first error)'. Empty when every round that ran succeeded."""
    lines = []
    for key, runs in results.items():
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            lines.append(f"{key}: {len(errors)}/{len(runs)} rounds failed ({errors[0]})")
    return lines


def fmt_mem(runs: list[dict[str, Any]], device: str,
            pick: Callable[[dict[str, Any]], Any] = lambda r: r) -> str:
    """Peak memory over the rounds (max): GPU allocator peak on CUDA, RSS increase on CPU."""
    ok = [pick(r) for r in runs if "error" not in r]
    if not ok:
        return "–"
    key = "gpu_mib" if device == "cuda" else "rss_mib"
    text = f"{max(r[key] for r in ok):,.0f}"
    workers = [r["workers_uss_mib"] for r in ok if r.get("workers_uss_mib")]
    if workers:
        text += f" + {max(workers):,.0f} workers"
    return text


# ------------------------------------------------------------------------ the table


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_lines(args: argparse.Namespace) -> list[str]:
    import torch
    import torchvision

    from simclr.runtime import git_state

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]
    for name in ("lightly", "kornia"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            versions.append(f"{name} missing")
    sha, dirty = git_state()
    lines = [
        f"- machine: {cpu}, {os.cpu_count()} cores ({usable_cores()} usable), "
        f"torch threads {torch.get_num_threads()}, python {platform.python_version()}",
        f"- versions: {', '.join(versions)}; simclr git {(sha or 'unknown')[:10]}"
        + (" with uncommitted changes" if dirty else ""),
    ]
    if args.device == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
    return lines


def table_rows(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]]
               ) -> list[list[str]]:
    """| section | case | simclr | reference | ref value | ratio | simclr mem | ref mem | notes |"""
    rows: list[list[str]] = []
    B, dev = args.batch, args.device
    e2e = {}
    for width in args.widths:
        for prec in args.precisions:
            name = f"R18 w{width:g} {prec}"
            s_key = case_key({"kind": "e2e-simclr", "width": width, "precision": prec})
            lk = {w: case_key({"kind": "e2e-lightly", "width": width, "precision": prec,
                               "workers": w}) for w in args.lightly_workers}
            lk = {w: k for w, k in lk.items() if k in res} or lk  # (all, when none ran)
            best = max(lk, key=lambda w: _nan_low(median_of(res[lk[w]], "views_per_s")[0]))
            s, ref = median_of(res[s_key], "views_per_s"), median_of(res[lk[best]], "views_per_s")
            e2e[(width, prec)] = (s, ref, best)
            others = [f"{w} worker(s): {fmt_rate(median_of(res[k], 'views_per_s'))}"
                      for w, k in lk.items() if w != best]
            note = "lightly " + "; ".join(others) if others else (
                f"lightly workers: the faster at w{args.widths[0]:g}")
            note += loader_check(res, best, ref[0])
            rows.append(["1 end-to-end views/s", f"{name}, batch {B}", fmt_rate(s),
                         f"lightly, {best} worker(s)", fmt_rate(ref), _ratio(s[0], ref[0]),
                         fmt_mem(res[s_key], dev), fmt_mem(res[lk[best]], dev), note])
            a_key = case_key({"kind": "e2e-lightly", "width": width, "precision": prec,
                              "workers": best, "allocator": True})
            if a_key in res:
                a = median_of(res[a_key], "views_per_s")
                rows.append(["1 end-to-end views/s", f"{name}, batch {B}", fmt_rate(s),
                             f"lightly + simclr's allocator setting, {best} worker(s)",
                             fmt_rate(a), _ratio(s[0], a[0]), fmt_mem(res[s_key], dev),
                             fmt_mem(res[a_key], dev),
                             f"{_ratio(a[0], ref[0])} the rate of lightly as written"])
            c_key = case_key({"kind": "e2e-simclr", "width": width, "precision": prec,
                              "compile": True})
            if c_key in res:
                c = median_of(res[c_key], "views_per_s")
                rows.append(["1 end-to-end views/s", f"{name} --compile, batch {B}", fmt_rate(c),
                             f"lightly, {best} worker(s)", fmt_rate(ref), _ratio(c[0], ref[0]),
                             fmt_mem(res[c_key], dev), fmt_mem(res[lk[best]], dev),
                             f"{_ratio(c[0], s[0])} simclr eager"])
    for width in args.widths:
        for prec in args.precisions:
            m_key = case_key({"kind": "model", "width": width, "precision": prec})
            ceiling = median_of(res[m_key], "views_per_s")
            s, ref, best = e2e[(width, prec)]
            rows.append(["2 model-only views/s", f"R18 w{width:g} {prec}, {2 * B} views",
                         f"e2e {fmt_rate(s)}", "ceiling", fmt_rate(ceiling),
                         _pct(s[0], ceiling[0]), "", fmt_mem(res[m_key], dev),
                         f"lightly e2e reaches {_pct(ref[0], ceiling[0])}"
                         + ceiling_check({"simclr": s[0], "lightly": ref[0]}, ceiling[0])])
            c_key = case_key({"kind": "model", "width": width, "precision": prec,
                              "compile": True})
            e_key = case_key({"kind": "e2e-simclr", "width": width, "precision": prec,
                              "compile": True})
            if c_key in res:
                ceiling_c, e2e_c = median_of(res[c_key], "views_per_s"), median_of(
                    res[e_key], "views_per_s")
                rows.append(["2 model-only views/s", f"R18 w{width:g} {prec} --compile",
                             f"e2e {fmt_rate(e2e_c)}", "compiled ceiling", fmt_rate(ceiling_c),
                             _pct(e2e_c[0], ceiling_c[0]), "", fmt_mem(res[c_key], dev),
                             f"compiled / eager ceiling {_ratio(ceiling_c[0], ceiling[0])}"
                             + ceiling_check({"simclr --compile": e2e_c[0]}, ceiling_c[0])])
    tv = case_key({"kind": "augment", "impl": "torchvision", "threads": 1})
    tv_rate = median_of(res[tv], "views_per_s")
    augment_keys = [k for k in res if k.startswith("kind=augment") and k != tv]
    for key in sorted(augment_keys, key=lambda k: ("kornia" in k, k)):  # simclr rows first
        rate = median_of(res[key], "views_per_s")
        impl = key.split("impl=")[1].split("|")[0]
        threads = key.split("threads=")[1]
        threads = "all threads" if threads == "None" else f"{threads} thread(s)"
        rows.append(["3 augmentation views/s", f"{impl}, {threads}, {B} img -> {2 * B} views",
                     fmt_rate(rate), "torchvision v2 PIL, 1 process", fmt_rate(tv_rate),
                     _ratio(rate[0], tv_rate[0]), fmt_mem(res[key], dev), fmt_mem(res[tv], dev),
                     "kornia: batched, not simclr" if impl == "kornia" else ""])
    s_key, l_key = "kind=loss|impl=simclr", "kind=loss|impl=lightly"
    for size in args.loss_sizes:
        sub = lambda r, size=size: r["sizes"][str(size)]  # noqa: E731
        s, ref = median_of(res[s_key], "ms", sub), median_of(res[l_key], "ms", sub)
        rows.append(["4 NT-Xent fwd+bwd ms", f"2N={size}, D={PROJ_DIM}, fp32", fmt_rate(s, 1),
                     "lightly NTXentLoss", fmt_rate(ref, 1), _ratio(ref[0], s[0]),
                     fmt_mem(res[s_key], dev, sub), fmt_mem(res[l_key], dev, sub), ""])
    return rows


def loader_check(res: dict[str, list[dict[str, Any]]], workers: int, e2e: float) -> str:
    """Notes' sanity check: lightly's loop cannot train faster than its DataLoader alone
    delivers; if it seems to, its timed window read batches made before it started."""
    key = case_key({"kind": "loader-lightly", "workers": workers})
    if key not in res:
        return ""
    alone = median_of(res[key], "views_per_s")
    text = f"; its DataLoader alone {fmt_rate(alone)}"
    if e2e > 1.05 * alone[0]:
        text += (" (CHECK: end to end above the loader alone: the window read batches "
                 "made ahead; raise --warmup / --steps)")
    return text


def ceiling_check(e2e: dict[str, float], ceiling: float) -> str:
    """Notes' sanity check: a loop cannot train faster end to end than its step alone on
    pre-made views; if one seems to (``e2e``: loop -> views/s, above 1.05 x ``ceiling``),
    its window or the ceiling's was not a steady state (too few steps, a busy machine)."""
    above = [name for name, rate in e2e.items() if rate > 1.05 * ceiling]
    if not above:  # (NaN compares False: a failed case is not flagged here)
        return ""
    return (f" (CHECK: {' and '.join(above)} end to end above the model-only ceiling: "
            "not a steady state; raise --warmup / --steps, or run on a quiet machine)")


def _nan_low(x: float) -> float:
    return -1.0 if x != x else x


def _ratio(a: float, b: float) -> str:
    return "–" if a != a or b != b or b == 0 else f"{a / b:.2f}×"


def _pct(a: float, b: float) -> str:
    return "–" if a != a or b != b or b == 0 else f"{100 * a / b:.0f}%"


def render(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]],
           header: list[str], footer: list[str]) -> str:
    head = ["section", "case", "simclr", "reference", "ref value", "ratio",
            "simclr peak MiB", "ref peak MiB", "notes"]
    rows = table_rows(args, res)
    lines = ["## simclr throughput", "", *header, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    mem = ("peak GPU memory allocated (torch.cuda.max_memory_allocated)" if args.device == "cuda"
           else "peak RSS increase of the case's process over its post-import baseline "
                "(getrusage maxrss)")
    lines += [
        "",
        f"Values: median over {args.rounds} interleaved round(s) (min–max in brackets); each "
        "case in a fresh process. ratio: 1, 3 = simclr / reference views/s; 2 = share of the "
        "model-only ceiling reached end to end; 4 = lightly ms / simclr ms (>1: simclr "
        f"faster). Memory: {mem}; '+ N workers' = private memory (USS) of the DataLoader "
        "workers at the end of the timed window. Section 4 memory on the CPU is the "
        "process peak up to that size (sizes run ascending).",
        *(["'lightly + simclr's allocator setting': the same lightly loop in a process "
           "given what simclr's pretrain sets on the CPU, glibc's mallopt M_MMAP_THRESHOLD "
           "and M_TRIM_THRESHOLD = 1 GiB (simclr.runtime.tune_cpu_allocator: freed "
           "activation buffers stay in the heap instead of being unmapped and faulted in "
           "again every step); the 'lightly' row is the loop as a user writes it, "
           "without it."] if args.device == "cpu" else []),
        *footer,
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- driving


def prepare_data(args: argparse.Namespace) -> str:
    """The image folder to use, generating CIFAR-sized images if none is there."""
    if args.data and Path(args.data).is_dir():
        return str(Path(args.data).resolve())
    if args.data:
        print(f"{args.data} not found: generating CIFAR-sized images", file=sys.stderr)
    count = min(max(args.batch * (e2e_warmup(args) + args.steps + 2), 1024), CIFAR10_IMAGES)
    return cifar_sized_folder("simclr-bench-data", count)


def cifar_sized_folder(name: str, count: int) -> str:
    """A folder ``name-count`` of ``count`` generated 32 px PNGs (a colour each, with
    noise), made once: the stand-in for CIFAR-10 where it is not there."""
    import numpy as np
    from generated import generated_folder
    from PIL import Image

    def draw(rng: np.random.Generator) -> Image.Image:
        base = rng.integers(0, 256, 3)
        return Image.fromarray(np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255)
                               .astype(np.uint8))

    return generated_folder(f"{name}-{count}", count, draw, ".png")


def build_cache(data: str, cache_dir: str) -> None:
    """Decode the folder into simclr's uint8 cache once, before anything is timed."""
    from simclr.config import DataConfig

    open_timed(data, DataConfig(path=data, cache_dir=cache_dir), train=True, image_size=32)


def open_timed(data: str, cfg: Any, **kwargs: Any) -> None:
    """``simclr.data.open_source(data, cfg, **kwargs)`` once, before anything is timed
    (it builds the decoded cache), its time said on stderr."""
    from simclr.data import open_source

    start = time.perf_counter()
    source = open_source(data, cfg, **kwargs)
    print(f"cache ready: {source} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


def e2e_warmup(args: argparse.Namespace) -> int:
    """The steps every end-to-end run discards: at least --warmup, and at least what the
    loaders make ahead at start-up (workers x prefetch factor for lightly's DataLoader,
    the queue for simclr's), which a shorter warm-up would leave in the timed window
    (made in parallel before it started: the window then timed the model, not the input
    pipeline). One value for every end-to-end case: equal windows."""
    return max(args.warmup, PREFETCH_FACTOR * max(args.lightly_workers), SIMCLR_PREFETCH)


def e2e_cases(args: argparse.Namespace, widths: list[float], workers: dict[str, list[int]],
              common: dict[str, Any], loaders: bool = False) -> list[dict[str, Any]]:
    """The end-to-end and model-only cases; with ``loaders``, lightly's DataLoader alone
    at each worker count too (it depends on neither width nor precision)."""
    window = {"warmup": e2e_warmup(args), "steps": args.steps}
    counts = sorted({w for ws in workers.values() for w in ws})
    cases = [{**common, **window, "kind": "loader-lightly", "workers": w}
             for w in counts] if loaders else []
    for width in widths:
        for prec in args.precisions:
            run = {**common, **window, "width": width, "precision": prec}
            cases.append({**run, "kind": "e2e-simclr"})
            cases += [{**run, "kind": "e2e-lightly", "workers": w} for w in workers[prec]]
            if args.device == "cpu":  # lightly's loop again, with simclr's allocator setting
                cases += [{**run, "kind": "e2e-lightly", "workers": w, "allocator": True}
                          for w in workers[prec]]
            cases.append({**run, "kind": "model", "warmup": max(1, args.warmup - 1)})
            if args.compile:  # the same two simclr cases under torch.compile
                cases += [{**run, "kind": "e2e-simclr", "compile": True},
                          {**run, "kind": "model", "compile": True}]
    return cases


def part_cases(args: argparse.Namespace, common: dict[str, Any]) -> list[dict[str, Any]]:
    """Sections 3 and 4."""
    aug = {**common, "kind": "augment", "warmup": 1 if args.quick else 2,
           "repeats": 2 if args.quick else 7}
    threads = [1] + ([None] if usable_cores() > 1 or args.device == "cuda" else [])
    cases = [{**aug, "impl": "simclr", "threads": t} for t in threads]
    cases += [{**aug, "impl": "torchvision", "threads": 1}, {**aug, "impl": "kornia",
                                                             "threads": 1}]
    loss = {**common, "kind": "loss", "sizes": args.loss_sizes, "repeats": 2 if args.quick else 10}
    return cases + [{**loss, "impl": "simclr"}, {**loss, "impl": "lightly"}]


def pick_workers(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]],
                 width: float) -> dict[str, int]:
    """The faster lightly worker count per precision, from the medians at ``width``."""
    chosen = {}
    for prec in args.precisions:
        rates = {w: median_of(res[case_key({"kind": "e2e-lightly", "width": width,
                                            "precision": prec, "workers": w})],
                              "views_per_s")[0] for w in args.lightly_workers}
        chosen[prec] = max(rates, key=lambda w: _nan_low(rates[w]))
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # (the defaults that depend on --quick are named in their help, not by argparse)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, batch 64, width 0.25, 1 warm-up step (raised as "
                        "--warmup says), the fewest timed steps --steps allows, small loss "
                        "sizes")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--widths", default=None, help="ResNet-18 widths (default 0.5,1)")
    p.add_argument("--precisions", default="fp32,bf16",
                   help="fp32 and/or bf16 (bf16 = bf16 autocast + channels_last; "
                        "default %(default)s)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    p.add_argument("--batch", type=int, default=None, help="images per step (default 256)")
    p.add_argument("--warmup", type=int, default=None,
                   help="discarded steps (default 2; end to end raised to 2 x the largest "
                        "--lightly-workers, the batches lightly's DataLoader makes ahead)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per run, at least 2 x the largest --lightly-workers "
                        "(two waves of the workers; default: that, at least 2)")
    p.add_argument("--loss-sizes", default=None, help="2N values (default 512,...,8192)")
    p.add_argument("--lightly-workers", default=None,
                   help="DataLoader worker counts tried for lightly (default: cores/2,cores)")
    p.add_argument("--sweep-all-widths", action="store_true",
                   help="try every lightly worker count at every width (default: only at the "
                        "smallest width; the others use the faster count)")
    p.add_argument("--compile", action="store_true",
                   help="also time simclr's end-to-end and model-only cases under "
                        "torch.compile (--compile of simclr pretrain; compiling takes "
                        "a minute or more per case: raise --warmup and --timeout)")
    add_run_flags(p, SHARED_CIFAR, "CIFAR-10 train image folder", timeout=900)
    args = p.parse_args(argv)
    if args.case is not None:
        return args
    default = quick_or_full(args)
    args.rounds = default(args.rounds, 1, 3)
    args.batch = default(args.batch, 64, 256)
    args.warmup = default(args.warmup, 1, 2)
    args.widths = _numbers("--widths", default(args.widths, "0.25", "0.5,1"), float)
    args.precisions = [x for x in args.precisions.split(",") if x]
    sizes = default(args.loss_sizes, "512,1024", ",".join(map(str, LOSS_SIZES)))
    args.loss_sizes = _numbers("--loss-sizes", sizes, int)
    cores = usable_cores()
    workers = default(args.lightly_workers, *[f"{max(1, cores // 2)},{cores}"] * 2)
    args.lightly_workers = sorted(set(_numbers("--lightly-workers", workers, int)))
    waves = 2 * max(args.lightly_workers)  # (workers finishing together deliver in bursts)
    args.steps = max(2, waves) if args.steps is None else args.steps
    bad = [x for x in args.precisions if x not in PRECISIONS]
    if bad or not args.precisions:
        _fail(f"--precisions: unknown value(s) {bad} (choose from fp32, bf16)")
    if min(args.rounds, args.batch, args.steps) < 1 or args.warmup < 1:
        _fail("--rounds, --batch, --steps and --warmup must be at least 1")
    if any(w <= 0 for w in args.widths):
        _fail("--widths must be positive width multipliers, e.g. 0.5,1")
    if any(s % 2 or s < 4 for s in args.loss_sizes):
        _fail("--loss-sizes must be even numbers of views (2N), at least 4")
    if any(w < 0 for w in args.lightly_workers):
        _fail("--lightly-workers must be worker counts of 0 or more")
    if args.steps < waves:
        _fail(f"--steps {args.steps} is under two waves of the {max(args.lightly_workers)} "
              "lightly workers (2 x the largest --lightly-workers): a shorter window times "
              "batches that arrived together")
    return args


def add_run_flags(p: argparse.ArgumentParser, data: Path, what: str, timeout: float) -> None:
    """The flags every benchmark here ends with: --data (``what``; generated images where
    it is missing), --cache-dir, --timeout per case, --out, and the hidden --case that
    runs one case in its own process."""
    p.add_argument("--data", default=str(data),
                   help=f"{what} (generated images if missing; default %(default)s)")
    p.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "simclr-bench-cache"),
                   help="default %(default)s")
    p.add_argument("--timeout", type=float, default=timeout,
                   help="seconds per case (default %(default)g)")
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # subprocess entry


def quick_or_full(args: argparse.Namespace) -> Callable[[Any, Any, Any], Any]:
    """``default(value, quick, full)``: ``value`` as given, else the --quick or the full
    run's default (None: not given; a 0 given is checked by the caller, not taken for
    the default)."""
    return lambda value, quick, full: (quick if args.quick else full) if value is None \
        else value


def _fail(message: str) -> None:
    """A bad flag: one line on stderr, exit status 2 (as argparse's own errors)."""
    print(f"throughput.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _numbers(flag: str, text: str, kind: type) -> list[Any]:
    """A comma-separated list of ``kind`` values, or a one-line error naming the flag."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"{flag}: {text!r} is not a comma-separated list of "
              f"{'whole numbers' if kind is int else 'numbers'}")
    if not values:
        _fail(f"{flag}: no value given")
    return values


class Stopped(Exception):
    """SIGTERM (e.g. from ``timeout``) arrived: stop measuring, write what finished."""


def _stop(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def early_status(args: argparse.Namespace,
                 run_case: Callable[[dict[str, Any]], None]) -> int | None:
    """What a benchmark's main returns before it measures anything: 0 once ``args.case``
    has run here (this process is one case's subprocess: ``run_case``), 2 where
    ``--device cuda`` names a GPU this machine lacks (said); None to measure, with
    ``args.device`` resolved (None: CUDA where there is one)."""
    if args.case is not None:
        run_case(json.loads(args.case))
        return 0
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    return None


def measure_and_report(
    args: argparse.Namespace, measure: Callable[[dict[str, list[dict[str, Any]]]], None],
    render_table: Callable[..., str], header: Callable[[], list[str]], footer: list[str],
    t0: float, load_before: float,
) -> int:
    """Run ``measure`` (every case, into the results it is given), then print the table
    (``render_table(args, results, header(), footer + the load average)``, also written to
    ``--out``). SIGTERM (``timeout``) or Ctrl-C stops the measuring, and the table of the
    cases finished so far is written all the same (exit status 1), not nothing. A case
    round that failed or timed out is named under the table, and the status is 1 too."""
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    stopped = ""
    signal.signal(signal.SIGTERM, _stop)
    try:
        measure(results)
    except (Stopped, KeyboardInterrupt) as exc:  # the table of what finished, not nothing
        stopped = str(exc) or "Ctrl-C"
        print(f"stopped ({stopped}): writing the table of the cases finished so far",
              file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the writing
    footer = [*footer, f"Load average 1 min: {load_before:.1f} at start, "
              f"{os.getloadavg()[0]:.1f} at end; total {time.perf_counter() - t0:.0f} s."]
    if stopped:
        footer.append(f"STOPPED by {stopped} after {time.perf_counter() - t0:.0f} s: the "
                      "medians are over the rounds finished so far; 'not run' marks cases "
                      "that had not run once.")
    failures = failed_rounds(results)
    if failures:  # (the medians are over the other rounds: 'k/N rounds' in their cells)
        footer.append("FAILED ROUNDS (medians over the rounds that succeeded, said as "
                      "'k/N rounds' in the cell; exit status 1): " + "; ".join(failures))
    text = render_table(args, results, header(), footer)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if stopped or failures else 0


def measure_all(args: argparse.Namespace, common: dict[str, Any],
                results: dict[str, list[dict[str, Any]]], t0: float) -> None:
    """Every case, round-robin, into ``results``: phase 1 tries every lightly worker
    count at the first width (and runs sections 3 and 4), phase 2 the other widths with
    the faster count."""
    all_workers = {prec: args.lightly_workers for prec in args.precisions}
    first = args.widths if args.sweep_all_widths else args.widths[:1]
    # Phase 1: every worker count at the first width, plus sections 3 and 4.
    run_rounds(e2e_cases(args, first, all_workers, common, loaders=True)
               + part_cases(args, common),
               args.rounds, args.timeout, results, t0)
    chosen = pick_workers(args, results, args.widths[0])
    rest = [w for w in args.widths if w not in first]
    if rest:  # Phase 2: the other widths with the faster lightly worker count
        run_rounds(e2e_cases(args, rest, {p: [chosen[p]] for p in args.precisions}, common),
                   args.rounds, args.timeout, results, t0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (status := early_status(args, run_case_here)) is not None:
        return status
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    data = prepare_data(args)
    build_cache(data, args.cache_dir)
    common = {"device": args.device, "batch": args.batch, "data": data,
              "cache_dir": args.cache_dir}

    def header() -> list[str]:
        return machine_lines(args) + [
            f"- device {args.device}; batch {args.batch} images = {2 * args.batch} "
            f"views/step; {e2e_warmup(args)} warm-up + {args.steps} timed steps per "
            f"end-to-end run (the warm-up at least the {PREFETCH_FACTOR} x "
            f"{max(args.lightly_workers)} batches lightly's DataLoader makes ahead at "
            f"start-up); {args.rounds} round(s)" + (" (--quick)" if args.quick else ""),
            f"- data: {data}; precisions: "
            + "; ".join(f"{p} = {PRECISIONS[p]}" for p in args.precisions),
            "- simclr: `simclr.train.pretrain` (cifar10 preset: R18 CIFAR stem, its head "
            "made 2 layers without BN, LARS, NT-Xent tau 0.5, the official crop sampler and "
            "colour ops, batched augmentation from the uint8 cache); lightly: "
            "SimCLRTransform(32, cj_strength=0.5, no blur) in DataLoader workers over "
            "ImageFolder, SimCLRProjectionHead (no BN, as simclr's), NTXentLoss(0.5), "
            "SGD momentum 0.9, same encoder",
        ]

    return measure_and_report(args, lambda results: measure_all(args, common, results, t0),
                              render, header, [], t0, load_before)


if __name__ == "__main__":
    sys.exit(main())
