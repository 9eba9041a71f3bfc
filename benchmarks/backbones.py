"""Encoders side by side: training views/s of simclr's step for each ``--arch``.

The model-only step of ``throughput.py`` (forward + backward of encoder and head,
NT-Xent, LARS, on pre-made 2N views) for simclr's ResNets and torchvision networks
(``simclr.backbones``), to choose an encoder for a machine. Every case runs in a fresh
subprocess; the cases run round-robin for ``--rounds`` rounds and the table gives
medians (min-max), so a shared machine's drifts hit every case alike.

    python benchmarks/backbones.py [--batch 128] [--size 32] [--rounds 3]
        [--precision fp32|bf16] [--archs resnet18:0.5,mobilenet_v3_small,...]
        [--threads 2,1] [--busy 1]

``--threads``: each encoder at each of these torch thread counts; ``--busy N``: N other
processes spin on the CPU all along, as another program sharing the cores would.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from typing import Any

from throughput import (
    RESULT,
    Memory,
    _memory_format,
    fmt_rate,
    median_of,
    run_rounds,
    timed_steps,
    usable_cores,
)

DEFAULT_ARCHS = ("resnet18:0.5,resnet18:1,resnet50:1,mobilenet_v3_small,mobilenet_v3_large,"
                 "shufflenet_v2_x1_0,efficientnet_b0,regnet_y_400mf,convnext_tiny")


def case_step(spec: dict[str, Any]) -> dict[str, Any]:
    """simclr's training step for one encoder on pre-made views (as throughput.case_model)."""
    import torch

    from simclr.models import build_model
    from simclr.optim import build_optimizer
    from simclr.settings import build_config
    from simclr.train_setup import setup_runtime

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    batch, size, precision = spec["batch"], spec["size"], spec["precision"]
    fmt = _memory_format(precision)
    memory = Memory(device)
    flags = {"model.arch": spec["arch"], "augment.size": size, "batch_size": batch,
             "precision": precision, "device": spec["device"]}
    if spec["width"] is not None:
        flags["model.width"] = spec["width"]
    cfg = build_config(preset="cifar10", flags=flags)
    setup_runtime(cfg)  # pretrain's process settings: CPU allocator, cuDNN's autotuner
    model = build_model(cfg.model, size).to(device).to(memory_format=fmt)
    optimizer = build_optimizer(cfg.optim, model, batch)
    views = torch.rand(2 * batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    views_per_s, dim = timed_steps(model, optimizer, cfg, views, spec)
    params = sum(p.numel() for p in model.encoder.parameters())
    return {"views_per_s": views_per_s, "params": params, "dim": dim,
            **memory.report()}


def case_key(spec: dict[str, Any]) -> str:
    return f"{spec['arch']}" + (f" x{spec['width']:g}" if spec["width"] is not None else "") \
        + (f", {spec['threads']} thread(s)" if spec.get("threads") else "")


def _spin() -> None:
    while True:
        pass


def busy_processes(count: int) -> list[multiprocessing.Process]:
    """``count`` processes that keep a core each busy until terminated (another program
    sharing the machine: what torch's default thread count meets on a shared box)."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for p in spinners:
        p.start()
    return spinners


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=DEFAULT_ARCHS,
                   help="comma-separated ARCH or ARCH:WIDTH (width: simclr's ResNets)")
    p.add_argument("--batch", type=int, default=128, help="images per step (2N views)")
    p.add_argument("--size", type=int, default=32, help="view side in pixels")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--threads", default="",
                   help="comma-separated torch thread counts to compare (default: torch's)")
    p.add_argument("--busy", type=int, default=0,
                   help="processes that spin on the CPU while the cases run")
    p.add_argument("--case", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.case:  # a subprocess: one case, one result line
        print(RESULT + json.dumps(case_step(json.loads(args.case))), flush=True)
        return 0
    cases = []
    threads = [int(t) for t in args.threads.split(",") if t] or [None]
    for item in args.archs.split(","):
        arch, _, width = item.partition(":")
        cases += [{"kind": "step", "arch": arch, "width": float(width) if width else None,
                   "batch": args.batch, "size": args.size, "precision": args.precision,
                   "device": args.device, "warmup": args.warmup, "steps": args.steps,
                   "threads": count} for count in threads]
    results: dict[str, list[dict[str, Any]]] = {}
    spinners = busy_processes(args.busy)
    try:
        run_rounds(cases, args.rounds, args.timeout, results, time.perf_counter(), __file__,
                   case_key)
    finally:
        for p in spinners:
            p.terminate()
    busy = f"; {args.busy} other process(es) spinning on the CPU" if args.busy else ""
    print(f"Machine: {platform.processor() or platform.machine()}, {usable_cores()} cores; "
          f"{args.precision}, batch {args.batch} ({2 * args.batch} views of {args.size} px), "
          f"medians of {args.rounds} rounds (min-max){busy}\n")
    print("| encoder | parameters | dim h | training views/s | vs first | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    first = None
    for spec in cases:
        runs = results[case_key(spec)]
        rate = median_of(runs, "views_per_s")
        first = rate[0] if first is None else first
        ok = [r for r in runs if "error" not in r]
        params = f"{ok[0]['params'] / 1e6:.1f} M" if ok else "-"
        dim = str(ok[0]["dim"]) if ok else "-"
        rss = median_of(runs, "rss_mib")[0]
        print(f"| {case_key(spec)} | {params} | {dim} | {fmt_rate(rate)} | "
              f"{rate[0] / first:.2f}x | {rss:.0f} |")
    failed = [f"{case_key(s)}: {r['error']}" for s in cases for r in results[case_key(s)]
              if "error" in r]
    for line in failed:
        print(f"\nFAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
