"""Evaluation benchmark: simclr's frozen-feature pass, kNN and linear fit against peers.

One run prints ONE markdown table (see benchmarks/README.md):

1. the frozen-feature pass (evaluation transform + encoder forward, images/s) over
   CIFAR-10 test images: ``simclr.features.extract_features`` on the decoded cache
   against a loop written the usual way (torchvision ImageFolder + Resize / CenterCrop /
   ToTensor / Normalize in DataLoader workers, the encoder in eval mode under no_grad),
   the same ResNet-18 CIFAR-stem encoder;
2. weighted kNN (Wu et al. 2018, k 200, T 0.1) on precomputed features:
   ``simclr.knn.knn_ranked`` (what ``simclr knn`` runs) against lightly's
   ``knn_predict``, time and top-1 of each;
3. the linear evaluation's fit on precomputed features: ``simclr.logistic.
   logistic_regression`` (one l2, and its default grid) against scikit-learn's
   ``LogisticRegression(solver="lbfgs")`` at the equivalent C = 1 / (l2 N).

Every case runs in a fresh subprocess and the cases run round-robin for ``--rounds``
rounds (medians, min-max), as in ``throughput.py``, whose helpers this script shares.
lightly is a benchmark-only dependency: the simclr package never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from throughput import (
    RESULT,
    Memory,
    _ratio,
    _sync,
    add_run_flags,
    cifar_sized_folder,
    early_status,
    fmt_mem,
    fmt_rate,
    machine_lines,
    median_of,
    open_timed,
    quick_or_full,
    run_rounds,
    usable_cores,
)

SHARED_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "test"
IMAGE_SIZE = 32
CLASSES = 10
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SKLEARN_TOL = 1e-4  # LogisticRegression's default tol (max |gradient| of the mean objective)
# Section 1: (case name, simclr's precision, channels_last) and the peer's precisions.
SIMCLR_PASSES = {"simclr bf16 + channels_last": ("bf16", True),
                 "simclr bf16 NCHW": ("bf16", False),
                 "simclr fp32 (channels_last)": ("fp32", True)}
PEER_PASSES = {"peer fp32 NCHW": "fp32", "peer bf16 autocast NCHW": "bf16"}


# ------------------------------------------------------------------------ features


def gaussian_features(rows: int, dim: int, seed: int) -> tuple[Any, Any]:
    """Generated stand-ins for an encoder's features: (float32 (rows, dim), labels (rows,)).

    Ten Gaussian clusters with overlapping classes (kNN top-1 about 85%, linear about
    97% at 50,000 / 10,000 rows, D 256), every dimension scaled by its own factor as a
    real encoder's are, so the linear fit's standardisation matters. The cluster means
    are the same for every ``seed`` (one problem: train and test draws of it); the rows
    cycle through the classes, so the first rows of a larger draw are a smaller one."""
    import numpy as np

    shape = np.random.default_rng(1234)
    means = shape.normal(size=(CLASSES, dim)) * 0.25
    scale = np.exp(shape.normal(size=dim) * 0.5)
    labels = np.arange(rows) % CLASSES
    noise = np.random.default_rng(seed).normal(size=(rows, dim))
    return ((means[labels] + noise) * scale).astype(np.float32), labels


def _top1(predictions: Any, labels: Any) -> float:
    import numpy as np

    return float((np.asarray(predictions) == np.asarray(labels)).mean())


# ------------------------------------------------------------------ section 1: the pass


def _encoder(spec: dict[str, Any]) -> Any:
    """The encoder both sides run: simclr's ResNet-18 with the CIFAR stem, seed 0."""
    import torch

    from simclr.models import build_encoder

    torch.manual_seed(0)
    return build_encoder("resnet18", spec["width"], cifar_stem=True)


def case_pass_simclr(spec: dict[str, Any]) -> dict[str, Any]:
    """``extract_features`` over the first ``images`` test images of the decoded cache
    (built by the parent before anything was timed), after a one-batch warm-up."""
    import numpy as np
    import torch

    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.features import extract_features

    device = torch.device(spec["device"])
    source = open_source(spec["data"], DataConfig(cache_dir=spec["cache_dir"]), train=False,
                         image_size=IMAGE_SIZE, evaluation=True)
    encoder = _encoder(spec)
    order = np.arange(min(spec["images"], source.num_images))
    run = dict(image_size=IMAGE_SIZE, batch_size=spec["batch"], device=device,
               precision=spec["precision"], channels_last=spec["channels_last"])
    memory = Memory(device)
    extract_features(encoder, source, indices=order[:spec["batch"]], **run)  # warm-up
    start = time.perf_counter()
    feats, _ = extract_features(encoder, source, indices=order, **run)
    seconds = time.perf_counter() - start
    return {"images_per_s": len(feats) / seconds, **memory.report()}


def case_pass_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """The usual loop: ImageFolder + transforms in DataLoader workers, eval mode under
    no_grad, NCHW, fp32 or bf16 autocast; the DataLoader (its workers' start-up
    included) timed over the same images, after a one-batch warm-up of the encoder."""
    import contextlib

    import numpy as np
    import torch
    import torchvision
    from torchvision import transforms as T

    device = torch.device(spec["device"])
    transform = T.Compose([T.Resize(IMAGE_SIZE), T.CenterCrop(IMAGE_SIZE), T.ToTensor(),
                           T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    folder = torchvision.datasets.ImageFolder(spec["data"], transform=transform)
    subset = torch.utils.data.Subset(folder, range(min(spec["images"], len(folder))))
    encoder = _encoder(spec).to(device).eval()
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if spec["precision"] == "bf16" else contextlib.nullcontext())
    memory = Memory(device)
    with torch.no_grad(), autocast:  # warm-up: kernel selection, allocator growth
        encoder(torch.rand(spec["batch"], 3, IMAGE_SIZE, IMAGE_SIZE, device=device))
    _sync(device)
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(subset, batch_size=spec["batch"], shuffle=False,
                                         num_workers=spec["workers"],
                                         pin_memory=device.type == "cuda")
    feats, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            with autocast:
                h = encoder(x.to(device, non_blocking=True))
            feats.append(h.float().cpu().numpy())
            labels.append(y.numpy())
    count = len(np.concatenate(feats))
    seconds = time.perf_counter() - start
    return {"images_per_s": count / seconds, **memory.report()}


# --------------------------------------------------------------------- section 2: kNN


def knn_top1_classes(spec: dict[str, Any], bank: tuple[Any, Any], queries: tuple[Any, Any]
                     ) -> Any:
    """Each query's top-1 class (numpy (M,)) by simclr's ``knn_ranked`` (as ``simclr
    knn`` calls it) or by lightly's ``knn_predict`` in batches of ``batch`` queries (as
    lightly's KNNClassifier runs it per validation batch, on a bank normalised and
    transposed once, each batch of queries normalised)."""
    import torch
    import torch.nn.functional as F
    from lightly.utils.benchmarking import knn_predict

    from simclr.knn import knn_ranked

    device = torch.device(spec["device"])
    (bank_x, bank_y), (query_x, query_y) = bank, queries
    if spec["impl"] == "simclr":
        return knn_ranked(bank_x, bank_y, query_x, query_y, k=spec["k"],
                          temperature=spec["temperature"], num_classes=CLASSES,
                          device=device, log_probs=True).predictions
    memory = F.normalize(torch.as_tensor(bank_x, device=device), dim=1).T.contiguous()
    labels = torch.as_tensor(bank_y, device=device)
    rows = torch.as_tensor(query_x, device=device)
    parts = []
    for i in range(0, len(rows), spec["batch"]):
        q = F.normalize(rows[i:i + spec["batch"]], dim=1)
        parts.append(knn_predict(q, memory, labels, CLASSES, spec["k"],
                                 spec["temperature"])[:, 0])
    return torch.cat(parts).cpu().numpy()


def case_knn(spec: dict[str, Any]) -> dict[str, Any]:
    """kNN top-1 of ``queries`` generated queries against a ``bank`` of generated rows,
    each side's normalisation inside the timing, after a warm-up on a fiftieth of it."""
    import torch

    device = torch.device(spec["device"])
    bank = gaussian_features(spec["bank"], spec["dim"], seed=1)
    queries = gaussian_features(spec["queries"], spec["dim"], seed=2)
    memory = Memory(device)
    small = max(spec["k"], spec["bank"] // 50)  # (lightly's topk needs k bank rows)
    knn_top1_classes(spec, (bank[0][:small], bank[1][:small]),
                     (queries[0][:small], queries[1][:small]))
    start = time.perf_counter()
    predictions = knn_top1_classes(spec, bank, queries)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "top1": _top1(predictions, queries[1]),
            "predictions": [int(p) for p in predictions], **memory.report()}


# ------------------------------------------------------------ section 3: linear fit


def simclr_tol(l2: float) -> float:
    """The tolerance ``fit_logistic_regression`` takes by default in float64 (max
    |gradient| of the mean objective): 1e-3 l2 within [1e-10, 1e-6]."""
    return min(1e-6, max(1e-10, 1e-3 * l2))


def _sklearn_fit(x: Any, y: Any, l2: float, tol: float | None, init: Any = None) -> Any:
    """``LogisticRegression(solver="lbfgs")`` at C = 1 / (l2 N) on standardised ``x``
    (``init``: a previous fit, warm-started from)."""
    from sklearn.linear_model import LogisticRegression

    model = init if init is not None else LogisticRegression(solver="lbfgs", max_iter=1000,
                                                             warm_start=True)
    model.set_params(C=1 / (l2 * len(y)), tol=SKLEARN_TOL if tol is None else tol)
    return model.fit(x, y)


def sklearn_grid(x: Any, y: Any, grid: list[float], tol: str) -> tuple[float, Any]:
    """simclr's held-out choice of l2 done with scikit-learn: the same stratified 10%
    split, the grid from the strongest penalty down, each fit warm-started from the
    previous, the best held-out accuracy (ties: lower held-out log-loss) wins.
    Returns (the chosen l2, its fit: the refit on all rows starts from it, as simclr's)."""
    import copy

    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    from simclr.logistic import stratified_split

    fit_idx, val_idx = stratified_split(y, 0.1, 0)
    scaler = StandardScaler().fit(x[fit_idx])
    x_fit, x_val = scaler.transform(x[fit_idx]), scaler.transform(x[val_idx])
    best, chosen, model = None, (grid[0], None), None
    for l2 in sorted(grid, reverse=True):
        model = _sklearn_fit(x_fit, y[fit_idx], l2, _tol(tol, l2), model)
        score = ((model.predict(x_val) == y[val_idx]).mean(),
                 -log_loss(y[val_idx], model.predict_proba(x_val), labels=model.classes_))
        if best is None or score > best:
            best, chosen = score, (l2, copy.deepcopy(model))
    return chosen


def _tol(mode: str, l2: float) -> float | None:
    """A side's tolerance: ``default`` (its own), ``sklearn`` (1e-4) or ``simclr``'s."""
    return {"default": None, "sklearn": SKLEARN_TOL, "simclr": simclr_tol(l2)}[mode]


def _fit_simclr(spec: dict[str, Any], data: tuple[Any, ...], rows: int) -> dict[str, Any]:
    """simclr's linear evaluation on the first ``rows`` training rows: test top-1 and
    what it chose."""
    from simclr.logistic import logistic_regression

    x, y, test_x, test_y = data
    summary, ranked, _ = logistic_regression(
        x[:rows], y[:rows], test_x, CLASSES, l2=spec["l2"], device=spec["device"],
        tol=SKLEARN_TOL if spec["tol"] == "sklearn" else None, test_y=test_y)
    return {"top1": _top1(ranked.predictions, test_y), "l2": summary["l2"],
            "iterations": summary["iterations"], "dtype": summary["dtype"]}


def _fit_sklearn(spec: dict[str, Any], data: tuple[Any, ...], rows: int) -> dict[str, Any]:
    """The same with scikit-learn, written the usual way: StandardScaler, then
    LogisticRegression at C = 1 / (l2 N) (the grid: :func:`sklearn_grid` first)."""
    from sklearn.preprocessing import StandardScaler

    from simclr.logistic import default_l2_grid

    x, y, test_x, test_y = data
    # The dtype simclr fits in (float64 at these sizes): scikit-learn fits float32 input
    # (gaussian_features') in float32, which compared a float64 fit with a float32 one.
    # Converted inside the timing, as simclr converts its input inside its own.
    dtype = _simclr_dtype(rows, x.shape[1])
    x, y, test_x = x[:rows].astype(dtype), y[:rows], test_x.astype(dtype)
    l2, init = ((spec["l2"], None) if spec["l2"] is not None else
                sklearn_grid(x, y, default_l2_grid(), spec["tol"]))
    scaler = StandardScaler().fit(x)
    model = _sklearn_fit(scaler.transform(x), y, l2, _tol(spec["tol"], l2), init)
    return {"top1": _top1(model.predict(scaler.transform(test_x)), test_y), "l2": l2,
            "iterations": int(model.n_iter_.max()), "dtype": str(model.coef_.dtype)}


def _simclr_dtype(rows: int, dim: int) -> Any:
    """The numpy dtype ``logistic_regression`` fits ``rows`` x ``dim`` features of
    CLASSES classes in: float64 up to FLOAT64_MAX_ELEMENTS values, else float32."""
    import numpy as np

    from simclr.logistic import FLOAT64_MAX_ELEMENTS

    small = max(rows * dim, rows * CLASSES) <= FLOAT64_MAX_ELEMENTS
    return np.float64 if small else np.float32


def case_linear(spec: dict[str, Any]) -> dict[str, Any]:
    """One linear evaluation (``l2`` None: the default grid's held-out choice, then the
    refit) and its test top-1, the test prediction inside the timing on both sides,
    after a warm-up fit on 500 rows (first-call costs: BLAS, allocator, not the fit)."""
    import torch

    device = torch.device(spec["device"])
    data = (*gaussian_features(spec["train"], spec["dim"], seed=1),
            *gaussian_features(spec["test"], spec["dim"], seed=2))
    fit = _fit_simclr if spec["impl"] == "simclr" else _fit_sklearn
    memory = Memory(device)
    with _blas_threads(spec.get("blas_threads")):
        fit(spec, data, min(500, spec["train"]))
        start = time.perf_counter()
        result = fit(spec, data, spec["train"])
        _sync(device)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, **result, **memory.report()}


def _blas_threads(limit: int | None) -> Any:
    """numpy's BLAS held to ``limit`` threads while the block runs (None: as it is).

    Why: scikit-learn's lbfgs objective is numpy matrix products of (N, D) by (D, C),
    C = 10, and OpenBLAS's two threads on them were up to 50x slower than one on this
    project's shared 2-core machine (2.7 s against 0.05 s a fit at load 3.4): the
    notes show scikit-learn as a user who limits them gets it."""
    import contextlib

    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit, user_api="blas")


def case_weights(spec: dict[str, Any]) -> dict[str, Any]:
    """The mapping C = 1 / (l2 N) checked: simclr's and scikit-learn's fitted weights at
    one l2 on a small problem, both fitted to a tolerance of 1e-10.

    The features are standardised beforehand (torch's std, as simclr's), so simclr's
    own standardisation is the identity and both fit the same matrix; sklearn's W has
    zero-mean columns, as the penalised optimum, and the bias's free shift is removed."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from simclr.logistic import logistic_regression

    rows, dim, l2 = spec["rows"], spec["dim"], spec["l2"]
    x, y = gaussian_features(rows, dim, seed=3)
    x = x.astype(np.float64)  # (sklearn fits float32 input in float32: 1e-5 off)
    x = (x - x.mean(0)) / x.std(0, ddof=1)
    _, _, layer = logistic_regression(x, y, x, CLASSES, l2=l2, tol=1e-10, max_iter=10_000)
    ref = LogisticRegression(C=1 / (l2 * rows), tol=1e-10, max_iter=10_000).fit(x, y)
    w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    return {"w_diff": float(np.abs(w - ref.coef_).max()), "w_max": float(np.abs(w).max()),
            "b_diff": float(np.abs((b - b.mean()) - (ref.intercept_ - ref.intercept_.mean()))
                            .max())}


CASES = {"pass-simclr": case_pass_simclr, "pass-peer": case_pass_peer, "knn": case_knn,
         "linear": case_linear, "weights": case_weights}


def run_case_here(spec: dict[str, Any]) -> None:
    """Subprocess entry: run one case, print its result as one JSON line."""
    print(RESULT + json.dumps(CASES[spec["kind"]](spec)), flush=True)


# ------------------------------------------------------------------ the parent side


def build_cases(args: argparse.Namespace, data: str, dim: int) -> list[dict[str, Any]]:
    """Every timed case, each with a unique ``name`` (its key in the results)."""
    common = {"device": args.device, "batch": args.batch}
    image = {**common, "data": data, "cache_dir": args.cache_dir, "images": args.images,
             "width": args.width}
    cases = [{**image, "name": name, "kind": "pass-simclr", "precision": prec,
              "channels_last": cl} for name, (prec, cl) in SIMCLR_PASSES.items()]
    cases += [{**image, "name": name, "kind": "pass-peer", "precision": prec,
               "workers": args.workers} for name, prec in PEER_PASSES.items()]
    knn = {**common, "kind": "knn", "bank": args.bank, "queries": args.queries, "dim": dim,
           "k": args.k, "temperature": args.temperature}
    cases += [{**knn, "name": f"knn {impl}", "impl": impl} for impl in ("simclr", "lightly")]
    linear = {**common, "kind": "linear", "train": args.train, "test": args.queries,
              "dim": dim}
    for l2, what in ((args.l2, "l2"), (None, "grid")):
        cases += [{**linear, "name": f"linear {impl} {what} tol {tol}", "impl": impl,
                   "l2": l2, "tol": tol}
                  for impl, tol in (("simclr", "default"), ("simclr", "sklearn"),
                                    ("sklearn", "default"), ("sklearn", "simclr"))
                  if not (what == "grid" and tol == "simclr")]  # (31 s a round: left out)
        cases += [{**linear, "name": f"linear sklearn {what} tol {tol} blas 1",
                   "impl": "sklearn", "l2": l2, "tol": tol, "blas_threads": 1}
                  for tol in ("default", "simclr") if not (what == "grid" and tol == "simclr")]
    return cases


def _first(runs: list[dict[str, Any]], field: str) -> Any:
    """``field`` of the first successful round (the deterministic outputs: l2 chosen,
    iterations, predictions), None when none succeeded."""
    return next((r.get(field) for r in runs if "error" not in r), None)


def _pct1(stats: tuple[float, float, float]) -> str:
    med = stats[0]
    return "–" if med != med else f"{100 * med:.2f}%"


def _row(section: str, case: str, res: dict[str, list[dict[str, Any]]], mine: str,
         ref_name: str, ref: str, field: str, device: str, notes: str,
         ratio_of_times: bool = False) -> list[str]:
    """One table row: ``mine`` against ``ref`` (result names) on ``field``."""
    digits = 0 if field == "images_per_s" else 2
    a, b = median_of(res[mine], field), median_of(res[ref], field)
    ratio = _ratio(b[0], a[0]) if ratio_of_times else _ratio(a[0], b[0])
    tops = [_pct1(median_of(res[n], "top1")) if field == "seconds" else ""
            for n in (mine, ref)]
    return [section, case, fmt_rate(a, digits), ref_name, fmt_rate(b, digits), ratio, *tops,
            fmt_mem(res[mine], device), fmt_mem(res[ref], device), notes]


def pass_rows(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """Section 1: each simclr pass against the peer loop of its precision (and the
    fastest against the peer as usually written, fp32)."""
    import torch

    from simclr.runtime import resolve_precision

    auto = resolve_precision("auto", torch.device(args.device))
    what = f"{args.images:,} images, batch {args.batch}"
    peer = f"{args.workers} worker(s)"
    section = "1 feature pass images/s"
    pairs = [("simclr bf16 + channels_last", "peer bf16 autocast NCHW",
              f"simclr's default here (--precision auto = {auto}, channels_last)"),
             ("simclr bf16 + channels_last", "peer fp32 NCHW", "against the usual fp32 loop"),
             ("simclr bf16 NCHW", "peer bf16 autocast NCHW",
              "same precision and layout: the input side's difference"),
             ("simclr fp32 (channels_last)", "peer fp32 NCHW", "")]
    return [_row(section, f"{mine.removeprefix('simclr ')}, {what}", res, mine,
                 f"{ref.removeprefix('peer ')}, {peer}", ref, "images_per_s", args.device,
                 note) for mine, ref, note in pairs]


def knn_rows(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """Section 2: simclr's kNN against lightly's, and how often they predict alike."""
    mine, ref = (_first(res[f"knn {impl}"], "predictions") for impl in ("simclr", "lightly"))
    same = ""
    if mine and ref:
        alike = sum(a == b for a, b in zip(mine, ref, strict=True)) / len(mine)
        same = f"same top-1 class for {100 * alike:.2f}% of queries"
    case = (f"{args.queries:,} queries x {args.bank:,} bank, D {args.dim}, k {args.k}, "
            f"T {args.temperature:g}")
    return [_row("2 kNN s", case, res, "knn simclr",
                 f"lightly knn_predict, {args.batch} queries a batch", "knn lightly",
                 "seconds", args.device, same, ratio_of_times=True)]


def linear_rows(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]]
                ) -> list[list[str]]:
    """Section 3: simclr's fit against scikit-learn's, at equal tolerances both ways."""
    rows = []
    size = f"N {args.train:,} x {args.dim}, {CLASSES} classes"
    c = 1 / (args.l2 * args.train)
    tight = f"tol {simclr_tol(args.l2):g}"
    specs = [
        ("l2", "default", "simclr", f"l2 {args.l2:g}, {size}, simclr's default {tight}",
         f"sklearn C {c:g}, same {tight}"),
        ("l2", "sklearn", "default", f"l2 {args.l2:g}, {size}, tol 1e-4",
         f"sklearn C {c:g}, default tol 1e-4"),
        ("grid", "default", "default",
         f"default grid (13 l2, 1e-6..1, 10% held out), {size}, simclr's default tol",
         "sklearn, same grid and split, default tol 1e-4"),
        ("grid", "sklearn", "default", f"default grid, {size}, tol 1e-4",
         "sklearn, same grid and split, default tol 1e-4"),
    ]
    for what, mine_tol, ref_tol, case, ref_name in specs:
        mine = f"linear simclr {what} tol {mine_tol}"
        ref = f"linear sklearn {what} tol {ref_tol}"
        notes = "; ".join(
            f"{side}: {_first(res[name], 'iterations')} iterations (final fit)"
            + (f", chose l2 {_first(res[name], 'l2'):.3g}" if what == "grid" else "")
            + f", {_first(res[name], 'dtype')}"
            for side, name in (("simclr", mine), ("sklearn", ref)) if _first(res[name], "l2"))
        one = median_of(res[f"{ref} blas 1"], "seconds")
        notes += (f"; sklearn with numpy's BLAS at 1 thread: {fmt_rate(one, 2)} s "
                  f"(ratio {_ratio(one[0], median_of(res[mine], 'seconds')[0])})")
        rows.append(_row("3 linear fit s", case, res, mine, ref_name, ref, "seconds",
                         args.device, notes, ratio_of_times=True))
    return rows


# How far apart the two fits may be and still be one optimum: both solve the same
# convex problem to tol 1e-10, simclr's weights returned in float32 (~1e-7 relative).
WEIGHTS_TOLERANCE = 1e-4


def weights_agree(check: dict[str, Any]) -> bool:
    """Whether the C = 1 / (l2 N) check ran and found simclr's and sklearn's weights and
    biases within :data:`WEIGHTS_TOLERANCE` of the largest weight (at least 1)."""
    if "error" in check:
        return False
    scale = max(1.0, check["w_max"])
    return check["w_diff"] <= WEIGHTS_TOLERANCE * scale and \
        check["b_diff"] <= WEIGHTS_TOLERANCE * scale


def weights_line(check: dict[str, Any], args: argparse.Namespace) -> str:
    if "error" in check:
        return f"- C = 1 / (l2 N) check FAILED: {check['error']}"
    verdict = ("the same optimum" if weights_agree(check) else
               f"CHECK FAILED: more than {WEIGHTS_TOLERANCE:g} x max(1, max |W|) apart, "
               "another optimum (a wrong C mapping?)")
    return (f"- C = 1 / (l2 N) checked: at l2 {WEIGHTS_CHECK['l2']:g} on "
            f"{WEIGHTS_CHECK['rows']} x {WEIGHTS_CHECK['dim']} standardised features, "
            f"{CLASSES} classes (C = {1 / (WEIGHTS_CHECK['l2'] * WEIGHTS_CHECK['rows']):g}), "
            f"both fitted to tol 1e-10: max |W_simclr - W_sklearn| = {check['w_diff']:.1e} "
            f"(max |W| {check['w_max']:.2f}; simclr returns a float32 layer), bias (its free "
            f"shift removed) {check['b_diff']:.1e}: {verdict}")


WEIGHTS_CHECK = {"kind": "weights", "rows": 600, "dim": 16, "l2": 1e-2}


def render(args: argparse.Namespace, res: dict[str, list[dict[str, Any]]],
           header: list[str], footer: list[str]) -> str:
    head = ["section", "case", "simclr", "reference", "ref value", "ratio", "simclr top-1",
            "ref top-1", "simclr peak MiB", "ref peak MiB", "notes"]
    rows = pass_rows(args, res) + knn_rows(args, res) + linear_rows(args, res)
    lines = ["## simclr evaluation", "", *header, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    mem = ("peak GPU memory allocated" if args.device == "cuda"
           else "peak RSS increase of the case's process over its baseline, taken after "
                "the imports and the generated features (sections 2, 3)")
    lines += [
        "",
        f"Values: median over {args.rounds} interleaved round(s) (min–max in brackets), "
        "each case in a fresh process after a warm-up (section 1: one batch; 3: a "
        "500-row fit). ratio: section 1 = simclr / peer images/s; 2, 3 = reference s / "
        f"simclr s (> 1: simclr faster). Memory: {mem} (section 1: the peer's "
        "DataLoader workers not counted). Top-1 on the generated test draw (sections 2, 3: "
        "Gaussian clusters, the same for both sides).",
        *footer,
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- driving


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # (the defaults that depend on --quick are named in their help, not by argparse)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, 512 images, a 10,000-row bank, 2,000 queries "
                        "and 2,000 training rows")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    p.add_argument("--batch", type=int, default=256,
                   help="images per batch (section 1), lightly's queries per batch "
                        "(default %(default)s)")
    p.add_argument("--images", type=int, default=None,
                   help="test images per feature pass (default 2048)")
    p.add_argument("--width", type=float, default=0.5,
                   help="ResNet-18 (CIFAR stem) width (default %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="the peer's DataLoader workers (default: cores/2)")
    p.add_argument("--bank", type=int, default=None, help="kNN bank rows (default 50000)")
    p.add_argument("--queries", type=int, default=None,
                   help="kNN queries and linear test rows (default 10000)")
    p.add_argument("--train", type=int, default=None,
                   help="linear training rows (default 10000)")
    p.add_argument("--k", type=int, default=200, help="kNN neighbours (default %(default)s)")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="kNN temperature (default %(default)s)")
    p.add_argument("--l2", type=float, default=1e-4,
                   help="the fixed l2 of section 3 (default %(default)g: sklearn's default "
                        "C = 1 at N = 10,000)")
    add_run_flags(p, SHARED_TEST, "CIFAR-10 test image folder", timeout=600)
    args = p.parse_args(argv)
    if args.case is not None:
        return args
    default = quick_or_full(args)
    args.rounds = default(args.rounds, 1, 3)
    args.images = default(args.images, 512, 2048)
    args.bank = default(args.bank, 10_000, 50_000)
    args.queries = default(args.queries, 2_000, 10_000)
    args.train = default(args.train, 2_000, 10_000)
    if args.workers is None:
        args.workers = max(1, usable_cores() // 2)
    counts = {"--rounds": args.rounds, "--batch": args.batch, "--images": args.images,
              "--bank": args.bank, "--queries": args.queries, "--train": args.train,
              "--k": args.k}
    bad = [flag for flag, value in counts.items() if value < 1]
    if bad or args.workers < 0 or min(args.width, args.temperature, args.l2) <= 0:
        print(f"evaluation.py: error: {', '.join(bad) or 'a value'} out of range (counts at "
              "least 1, --workers 0 or more, --width, --temperature and --l2 positive)",
              file=sys.stderr)
        raise SystemExit(2)
    if args.k > args.bank:  # (lightly's top-k needs k rows of the bank)
        print(f"evaluation.py: error: --k {args.k} is more than the --bank of {args.bank} rows",
              file=sys.stderr)
        raise SystemExit(2)
    if args.train < 20 * CLASSES:
        print(f"evaluation.py: error: --train needs at least {20 * CLASSES} rows (a held-out "
              "split of every class)", file=sys.stderr)
        raise SystemExit(2)
    return args


def prepare_data(args: argparse.Namespace) -> str:
    """The test image folder, generating CIFAR-sized PNGs if it is not there."""
    if Path(args.data).is_dir():
        return str(Path(args.data).resolve())
    print(f"{args.data} not found: generating CIFAR-sized images", file=sys.stderr)
    return cifar_sized_folder("simclr-bench-eval", max(args.images, args.batch))


def build_cache(data: str, cache_dir: str) -> None:
    """Decode the test folder into simclr's evaluation cache once, before timing."""
    from simclr.config import DataConfig

    open_timed(data, DataConfig(cache_dir=cache_dir), train=False, image_size=IMAGE_SIZE,
               evaluation=True)


def header_lines(args: argparse.Namespace, data: str) -> list[str]:
    import sklearn

    return machine_lines(args) + [
        f"- scikit-learn {sklearn.__version__}; device {args.device}; {args.rounds} round(s)"
        + (" (--quick)" if args.quick else ""),
        f"- section 1: {args.images:,} images of {data}, simclr's ResNet-18 CIFAR stem "
        f"width {args.width:g} (D {args.dim}), random init (seed 0), batch {args.batch}; "
        "simclr: `extract_features` on the decoded evaluation cache (built before timing); "
        "peer: ImageFolder + Resize/CenterCrop(32)/ToTensor/Normalize in a DataLoader "
        f"with {args.workers} worker(s), eval mode under torch.no_grad, NCHW",
        f"- sections 2, 3: generated features (10 Gaussian clusters, D {args.dim}, each "
        "dimension its own scale); kNN: `simclr.knn.knn_ranked` (`simclr knn`'s) vs "
        "`lightly.utils.benchmarking.knn_predict` (bank normalised and transposed, "
        "queries normalised, inside the timing); linear: "
        "`simclr.logistic.logistic_regression` (standardised features, mean CE + l2/2 "
        "||W||^2, L-BFGS, float64 at this size) vs StandardScaler + "
        "`LogisticRegression(solver=\"lbfgs\", C = 1 / (l2 N))`, test prediction timed",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (status := early_status(args, run_case_here)) is not None:
        return status
    from throughput import measure_and_report, run_subprocess

    from simclr.models import build_encoder

    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    args.dim = build_encoder("resnet18", args.width, cifar_stem=True).feature_dim
    data = prepare_data(args)
    build_cache(data, args.cache_dir)
    check = run_subprocess(WEIGHTS_CHECK, args.timeout, __file__)

    def measure(results: dict[str, list[dict[str, Any]]]) -> None:
        run_rounds(build_cases(args, data, args.dim), args.rounds, args.timeout, results, t0,
                   __file__, key=lambda spec: spec["name"])

    status = measure_and_report(args, measure, render, lambda: header_lines(args, data),
                                [weights_line(check, args)], t0, load_before)
    return status or (0 if weights_agree(check) else 1)  # (a failed check fails the run)


if __name__ == "__main__":
    sys.exit(main())
