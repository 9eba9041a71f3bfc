"""The evaluation commands: knn, linear-eval, finetune, supervised, export (argparse glue).

Each command loads what it needs, calls the protocol in evaluate.py / finetune.py and
prints its result as JSON on stdout; the protocols themselves know nothing of argparse.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from simclr import distributed as dist
from simclr.checkpoint import (
    CHECKPOINTS,
    LAST,
    PARTIAL_SUFFIX,
    checkpoint_file,
    load_checkpoint,
)
from simclr.config import (
    CROP_SAMPLERS,
    MAX_EPOCHS,
    MAX_SEED,
    Config,
    DataConfig,
    config_from_dict,
)
from simclr.data import ImageList, ImageSource, check_folder, list_folder, open_source
from simclr.errors import SimCLRError
from simclr.export import FORMATS
from simclr.features import check_labeled_folders
from simclr.files import set_aside
from simclr.pretrained import (
    LAYERS_HELP,
    encoder_from_checkpoint,
    model_from_checkpoint,
    parse_layer,
    representation_from_checkpoint,
)
from simclr.results import RESULTS, check_not_inside, check_results_free

RuntimeFlags = Callable[[argparse.ArgumentParser], None]


class RawPixels(nn.Module):
    """The "encoder" of the raw-pixel baseline: (B,3,S,S) -> (B, 3*S*S)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()


def open_eval_source(path: str, image_size: int, workers: int | None,
                     cache_dir: str, evaluation: bool = True, train: bool = False
                     ) -> ImageSource:
    """A labeled folder (or named data set) of an evaluation, stored for ``image_size``;
    ``evaluation=False`` for one it trains on with augmented views (fine-tuning);
    ``train``: a data set's training split (a folder holding train/ and test/, cifar10)."""
    data = DataConfig(workers=workers, cache_dir=cache_dir)
    return open_source(path, data, train=train, image_size=image_size, evaluation=evaluation)


def open_folder(path: str, image_size: int, args: argparse.Namespace,
                evaluation: bool = True, train: bool = False) -> ImageSource:
    return open_eval_source(path, image_size, args.workers, args.cache_dir, evaluation, train)


class EvalInputs(NamedTuple):
    """What an evaluation command reads before its images (:func:`load_for_eval`)."""

    encoder: nn.Module
    spec: dict[str, Any]  # the representation's image_size, dim, layer
    ckpt: dict[str, Any]
    source: dict[str, Any]  # what the features came from, for the results file
    listing: ImageList | None  # --train's files (None: a named data set)


def load_for_eval(args: argparse.Namespace) -> EvalInputs:
    """An evaluation's inputs from --checkpoint, honouring --random-init / --raw-pixels.

    :func:`read_checkpoint`, with --train and --test checked as labeled folders of the
    same classes. ``source`` names the checkpoint file read (a run folder's newest),
    its step and the layer.
    """
    path, ckpt, listing = read_checkpoint(args, labeled=True)
    random_init = getattr(args, "random_init", False)
    if random_init:
        torch.manual_seed(getattr(args, "seed", 0))
    layer = getattr(args, "layer", "h")
    encoder, spec = representation_from_checkpoint(ckpt, layer, random_init=random_init)
    raw = getattr(args, "raw_pixels", False)
    if raw:
        encoder = RawPixels()
    features = "raw pixels" if raw else "random init" if random_init else "pretrained"
    source = {**checkpoint_source(path, ckpt, features), "layer": layer}
    return EvalInputs(encoder, spec, ckpt, source, listing)


def check_not_replacing_input(args: argparse.Namespace, path: Path) -> None:
    """``--overwrite`` replaces what the command writes in ``--out``: never the classifier
    it was given as ``--checkpoint`` (its input would be lost, and the new results would
    name themselves as their source)."""
    out = getattr(args, "out", None)
    if not (out and getattr(args, "overwrite", False)):
        return
    written = {(Path(out).expanduser() / name).resolve()
               for name in RESULTS.get(args.command, ())}
    if path.resolve() in written:
        raise SimCLRError(f"--overwrite would replace {path}, the --checkpoint this "
                          "command reads; choose another --out")


def read_checkpoint(
    args: argparse.Namespace, labeled: bool = False,
) -> tuple[Path, dict[str, Any], ImageList | None]:
    """(file, checkpoint, --train's listing) of an evaluation, read after the command's
    folders and earlier results are checked: a missing --test or an --out that already
    holds results fails now, not after the checkpoint and --train are read. ``labeled``:
    --train and --test are also listed (not decoded) and must be labeled folders of the
    same classes; the listing is None otherwise, or for a named data set."""
    for flag in ("train", "test"):
        check_folder(f"--{flag}", getattr(args, flag, None))
    check_results_free(getattr(args, "out", None), RESULTS.get(args.command, ()),
                       overwrite=getattr(args, "overwrite", None))
    if getattr(args, "out", None):
        check_not_inside(args.out, {"--train": getattr(args, "train", None),
                                    "--test": getattr(args, "test", None)}, "results")
    listing = (check_labeled_folders(args.train, args.test, ("--train", "--test"),
                                     train_split=True) if labeled else None)
    path = checkpoint_file(args.checkpoint)
    check_not_another_run(getattr(args, "out", None), path)
    check_not_replacing_input(args, path)
    ckpt = load_checkpoint(path)
    if path.name.endswith(PARTIAL_SUFFIX):  # named on purpose, still worth a word
        print(f"note: {path} is an unfinished training (step {ckpt.get('step')}); its "
              "command continues it when run again", file=sys.stderr)
    return path, ckpt, listing


def check_not_another_run(out: str | None, checkpoint: Path) -> None:
    """An evaluation's --out may be the run folder of the checkpoint it evaluates (its
    results then sit beside it), never another run's: `simclr info`, `predict` and
    `export` would take them, and a classifier, for that run's."""
    if not out:
        return
    folder = Path(out).expanduser()
    if not (folder / CHECKPOINTS / LAST).is_file():
        return
    if not checkpoint.resolve().is_relative_to(folder.resolve()):
        raise SimCLRError(f"--out {out} is the folder of another run ({CHECKPOINTS}/{LAST}): "
                          "its results would be taken for that run's; choose another --out")


def checkpoint_source(path: Path, ckpt: dict[str, Any], features: str) -> dict[str, Any]:
    """What an evaluation's features came from, as its results file records it."""
    return {"checkpoint": str(path.resolve()), "kind": ckpt.get("kind"),
            "step": ckpt.get("step"), "features": features}


def runtime_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "device": args.device, "precision": args.precision,
            "workers": args.workers}


def cmd_knn(args: argparse.Namespace) -> int:
    from simclr.evaluate import run_knn

    inputs = load_for_eval(args)
    size = inputs.spec["image_size"]
    train, test = open_folders(args, size, augmented=False, listing=inputs.listing)
    result = run_knn(inputs.encoder, train, test, args.out, image_size=size, k=args.k,
                     temperature=args.temperature, source={**inputs.source, **test_split(args)},
                     overwrite=args.overwrite, **runtime_kwargs(args))
    print(json.dumps(result))
    return 0


# The linear protocols' own flags (None unless given; the library's defaults apply).
PROTOCOL_FLAGS = {"lbfgs": ("l2", "l2_grid", "val_fraction", "max_iter"),
                  "sgd": ("epochs", "lr", "momentum", "crop_scale", "crop_sampler",
                          "checkpoint_every", "checkpoint_minutes")}


def given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The flags among ``names`` given on the command line (their default is None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def cmd_linear_eval(args: argparse.Namespace) -> int:
    from simclr.evaluate import parse_l2_grid, run_linear_eval

    # Flags that contradict each other are refused before any checkpoint or image is read.
    if args.l2 is not None and args.l2_grid:
        raise SimCLRError("give one of --l2 (a fixed strength) and --l2-grid (the search)")
    if args.raw_pixels and args.layer != "h":
        raise SimCLRError(f"--raw-pixels uses no encoder; drop --layer {args.layer}")
    if args.raw_pixels and args.random_init:
        raise SimCLRError("--raw-pixels uses no encoder to initialise; give one of "
                          "--raw-pixels and --random-init")
    protocol = given(args, PROTOCOL_FLAGS[args.protocol])
    other = "sgd" if args.protocol == "lbfgs" else "lbfgs"
    ignored = [flag_name(n) for n in given(args, PROTOCOL_FLAGS[other])]
    if ignored:  # a flag the chosen protocol would silently not use
        raise SimCLRError(f"{', '.join(ignored)}: for --protocol {other}, not "
                          f"{args.protocol}; drop it or choose --protocol {other}")
    if args.l2_grid:
        protocol["l2_grid"] = parse_l2_grid(args.l2_grid)
    inputs = load_for_eval(args)
    size = inputs.spec["image_size"]
    with dist.process_group():  # the SGD protocol may train across processes
        train, test = open_folders(args, size, augmented=args.protocol == "sgd",
                                   listing=inputs.listing)
        result = run_linear_eval(
            inputs.encoder, train, test, args.out, image_size=size, protocol=args.protocol,
            seed=args.seed, config=inputs.ckpt["config"],
            source={**inputs.source, **test_split(args)}, overwrite=args.overwrite,
            **protocol, **runtime_kwargs(args))
        return report(result)


def open_folders(args: argparse.Namespace, image_size: int, augmented: bool,
                 augmented_test: bool = False, listing: ImageList | None = None,
                 ) -> tuple[ImageSource, ImageSource]:
    """--train and --test of an evaluation; under torchrun rank 0 decodes them first,
    then the other processes find its caches. ``augmented``: the training set gives
    augmented views (fine-tuning, SGD linear evaluation), not evaluation crops (and
    ``augmented_test`` the test set: the transformation probe).

    Without --test, ``--test-fraction F`` holds out the files :func:`held_out` names as
    the test set, and the rest of --train is the training set (``listing``: --train's,
    if the command already listed it)."""
    def opened(path: str, evaluation: bool, train: bool) -> ImageSource:
        return dist.main_first(lambda: open_folder(path, image_size, args,
                                                   evaluation=evaluation, train=train))

    if args.test is not None:
        return (opened(args.train, not augmented, True),
                opened(args.test, not augmented_test, False))
    listing, held = held_out(args, listing)
    test_files = {listing.paths[i] for i in held}

    def part(source: ImageSource, test: bool) -> ImageSource:
        rows = [i for i, p in enumerate(source.paths) if (p in test_files) == test]
        return source.subset(rows, source.name)  # the folder's name: subset lists use it

    train = opened(args.train, not augmented, True)
    test = (train if augmented == augmented_test else
            opened(args.train, not augmented_test, True))
    train_part = part(train, test=False)
    train_part.skipped = train.skipped  # the folder's unreadable files, said once
    return train_part, part(test, test=True)


def held_out(args: argparse.Namespace,
             listing: ImageList | None = None) -> tuple[ImageList, np.ndarray]:
    """(--train's listing, the indices of the files ``--test-fraction`` holds out): a
    class-balanced part drawn from --seed (:func:`simclr.evaluate.stratified_split`) on
    the file names, so the split is the same whether or not the folder is cached.
    ``listing``: --train's, if already listed."""
    from simclr.evaluate import stratified_split

    listing = list_folder(args.train, train=True) if listing is None else listing
    if listing is None:
        raise SimCLRError(f"--test-fraction splits an image folder; {args.train} has its own "
                          "test split: give --test")
    _, held = stratified_split(listing.labels, args.test_fraction, args.seed)
    if len(held) == 0:
        raise SimCLRError(f"--test-fraction {args.test_fraction:g} holds out no image (every "
                          f"class of {args.train} has a single image); give --test")
    return listing, held


def test_split(args: argparse.Namespace) -> dict[str, Any]:
    """What the test set was, for a results file's ``source``: nothing with --test."""
    if getattr(args, "test", None) is not None:
        return {}
    return {"test": {"held_out_of": str(Path(args.train).expanduser().resolve()),
                     "fraction": args.test_fraction, "seed": args.seed}}


def report(result: dict[str, Any], resume: str | None = None) -> int:
    """Print the results as JSON (rank 0 only: it reports for all processes); the exit
    status: 0, or 75 (``train.EXIT_PREEMPTED``) for a training a signal stopped after
    saving it. ``resume``: the command that continues it (default: the same command)."""
    from simclr.runtime import stopped_by
    from simclr.train import EXIT_PREEMPTED

    preempted = result.get("status") == "preempted"
    if dist.is_main():
        print(json.dumps(result))
        if preempted:
            how = (f"continue with: {resume}" if resume else
                   f"the same command continues it (from {result['checkpoint']})")
            print(f"{stopped_by(result['signal'])}; {how}", file=sys.stderr)
    return EXIT_PREEMPTED if preempted else 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from simclr.finetune import (
        check_batch_size,
        check_start_flags,
        labeled_subset,
        read_subset_list,
        run_finetune,
    )

    # What needs neither the checkpoint nor the images is checked before either is read.
    check_batch_size(args.batch_size)
    check_start_flags(args.from_head, args.from_scratch, args.random_init)
    if args.subset is not None:
        read_subset_list(args.subset)
    encoder, spec, ckpt, source, listing = load_for_eval(args)
    full_listing = listing
    if listing is not None and args.test is None:  # the labels come from the training part
        _, held = held_out(args, listing)  # the listing just checked: not read again
        keep = np.setdiff1d(np.arange(len(listing.paths)), held)
        listing = ImageList([listing.paths[i] for i in keep], listing.labels[keep],
                            listing.classes, listing.root)
    if listing is not None:  # the subset drawn from file names, before --train is decoded
        labeled_subset(listing, args.subset, args.label_fraction, args.labels_per_class,
                       args.seed)
    head = None
    if args.from_head:
        if ckpt.get("kind") != "pretrain":
            raise SimCLRError(f"--from-head needs a pretraining checkpoint (this is a "
                              f"{ckpt.get('kind', 'foreign')} one, without the projection "
                              "head); drop --from-head")
        model, _ = model_from_checkpoint(ckpt)
        encoder, head = model.encoder, model.head
    size = spec["image_size"]
    with dist.process_group():  # under torchrun the processes fine-tune as one
        train, test = open_folders(args, size, augmented=True, listing=full_listing)
        result = run_finetune(
            encoder, train, test, args.out, image_size=size,
            label_fraction=args.label_fraction, labels_per_class=args.labels_per_class,
            subset_file=args.subset, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
            schedule=args.schedule, head=head, **given(args, ("crop_scale", "crop_sampler")),
            # --random-init and --from-scratch: one baseline, recorded alike
            from_head=args.from_head, from_scratch=args.from_scratch or args.random_init,
            sync_bn=args.sync_bn, seed=args.seed, config=ckpt["config"],
            source={**source, **test_split(args), **(
                {"features": "random init"} if args.from_scratch else {})},
            checkpoint_every=args.checkpoint_every,
            checkpoint_minutes=args.checkpoint_minutes, overwrite=args.overwrite,
            **runtime_kwargs(args))
        return report(result)


def cmd_transform_probe(args: argparse.Namespace) -> int:
    from simclr.probe import TASKS, run_transform_probe
    from simclr.results import prepare_dir, write_results

    path, ckpt, _ = read_checkpoint(args)
    if ckpt.get("kind") != "pretrain":  # Table 3 compares h with z = g(h): the head is needed
        raise SimCLRError(f"transform-probe needs a pretraining checkpoint (encoder and "
                          f"projection head); {path} is of kind {ckpt.get('kind', 'unknown')!r}")
    if args.random_init:
        torch.manual_seed(args.seed)
    model, spec = model_from_checkpoint(ckpt, random_init=args.random_init)
    aug = config_from_dict(ckpt["config"]).augment
    size = spec["image_size"]
    tasks = TASKS if args.task == "all" else (args.task,)
    out = prepare_dir(args.out, RESULTS["transform-probe"], overwrite=args.overwrite)
    result = run_transform_probe(
        model, *open_folders(args, size, augmented=True, augmented_test=True), aug,
        tasks, views=args.views, epochs=args.epochs, seed=args.seed,
        batch_size=args.batch_size, device=args.device, precision=args.precision)
    result["source"] = {**test_split(args), **checkpoint_source(
        path, ckpt, "random init" if args.random_init else "pretrained"),
        "layer": "h" if result["tasks"] and all(row["z"] is None for row in
                                                result["tasks"].values()) else "h and z"}
    write_results(out, "transform_probe.json", result)
    print(json.dumps(result))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from simclr.cli import config_flags
    from simclr.sweep import check_not_swept_twice, pairs_axis, parse_axis, run_sweep

    if not args.set and not args.pairs:
        raise SimCLRError("nothing to sweep: give --set SETTING=V1,V2 and/or --pairs OPS")
    if args.eval != "none":  # the evaluations' runtime, before the first cell trains
        from simclr.runtime import resolve_device, resolve_precision

        resolve_precision(args.eval_precision, resolve_device(args.eval_device,
                                                              "--eval-device"),
                          "--eval-precision")
    given = {"--eval-train": args.eval_train, "--eval-test": args.eval_test,
             "--eval-device": args.eval_device != "auto",
             "--eval-precision": args.eval_precision != "auto",
             "--eval-workers": args.workers_eval is not None,
             "--eval-cache-dir": args.eval_cache_dir, "--eval-layer": args.eval_layer != "h"}
    unused = [flag for flag, value in given.items() if value]
    if args.eval == "none" and unused:  # silently unused, a forgotten --eval looks measured
        raise SimCLRError(f"{', '.join(unused)}: unused with --eval none; drop it or choose "
                          "--eval knn or linear")
    axes = ([pairs_axis(args.pairs)] if args.pairs else []) + [parse_axis(t) for t in args.set]
    flags = config_flags(args)
    check_not_swept_twice(axes, flags)
    digits = flags.get("data.path") is None and not args.config
    preset = args.preset or ("digits" if digits else None)  # as `simclr pretrain`
    if args.print_config:  # each cell's resolved settings; nothing is read or written
        from simclr.config import yaml_text
        from simclr.sweep import cell_configs

        cells, configs = cell_configs(axes, Path(args.out).expanduser(), preset, args.config,
                                      flags)
        print("\n".join(f"--- # cell {cell.name}\n{yaml_text(cfg.to_dict())}"
                        for cell, cfg in zip(cells, configs, strict=True)), end="")
        return 0
    if args.eval != "none" and args.eval_layer != "h":
        _check_eval_layer(args.eval_layer, axes, Path(args.out).expanduser(), preset,
                          args.config, flags)
    folders = bool(args.eval_train and args.eval_test)
    if args.eval != "none" and not folders and not digits:
        raise SimCLRError(f"--eval {args.eval} needs --eval-train and --eval-test (labeled "
                          "folders), or pass --eval none")
    if folders:  # before hours of training
        check_labeled_folders(args.eval_train, args.eval_test, ("--eval-train", "--eval-test"),
                              train_split=True)

    def evaluate(run_dir: Path) -> dict[str, Any]:
        return evaluate_run(run_dir, args)

    cells, table = run_sweep(axes, args.out, preset=preset, config=args.config,
                             flags=flags,  # (--out is not a config flag here)
                             evaluate=None if args.eval == "none" else evaluate,
                             processes=args.cell_processes)
    print(table)
    if any(c.result.get("status") == "preempted" for c in cells):
        from simclr.train import EXIT_PREEMPTED

        print("sweep stopped by a signal; the same command continues it", file=sys.stderr)
        return EXIT_PREEMPTED
    return 0


# What a sweep cell's evaluation writes (each protocol's RESULTS, and its figure): all of
# it set aside together when the cell is evaluated again.
EVAL_FILES = {"knn": (*RESULTS["knn"], "knn_confusion.png"),
              "linear": (*RESULTS["linear-eval"], "linear_eval_confusion.png")}
# The key of a sweep cell's results file that says what it was evaluated on.
EVALUATED_ON = "evaluated_on"


def evaluate_run(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """kNN or linear top-1 of a finished sweep cell, cached in the cell's run directory.

    The cached result is reused only when it was computed on the same --eval-train and
    --eval-test (absolute paths) and, where --eval-precision is given, at that
    precision. Otherwise the cell is evaluated again and the earlier files are kept
    beside the new ones as ``NAME.previous-K.EXT`` (nothing is deleted).
    """
    from simclr.evaluate import run_knn, run_linear_eval
    from simclr.results import write_results

    name = "knn.json" if args.eval == "knn" else "linear_eval.json"
    saved = run_dir / name
    wanted = _eval_data(args)
    layer = args.eval_layer
    column = f"{args.eval}_top1" if layer == "h" else f"{args.eval}_{layer}_top1"
    stale = _stale_evaluation(saved, wanted, args.eval_precision, layer)
    if stale is None:
        return {column: json.loads(saved.read_text())["top1"]}
    kept = set_aside(run_dir, EVAL_FILES[args.eval])
    if kept:
        print(f"cell {run_dir.name}: {name} {stale}; evaluating again (the earlier files "
              f"are kept as {kept})", file=sys.stderr, flush=True)
    ckpt_path = run_dir / "checkpoints/last.pt"
    ckpt = load_checkpoint(ckpt_path)
    encoder, spec = representation_from_checkpoint(ckpt, layer)
    size = spec["image_size"]
    runtime = {"device": args.eval_device, "precision": args.eval_precision,
               "workers": args.workers_eval, "verbose": False,
               "source": {**checkpoint_source(ckpt_path, ckpt, "pretrained"), "layer": layer}}
    if args.eval_train and args.eval_test:
        cache = (args.eval_cache_dir or vars(args).get("cfg:data.cache_dir")
                 or DataConfig().cache_dir)
        train, test = (open_eval_source(path, size, args.workers_eval, cache, train=split)
                       for path, split in ((args.eval_train, True), (args.eval_test, False)))
    else:  # the digits demo: its fixed hold-out split
        from simclr.data import digits_split

        train, test = digits_split(seed=0)
    run = run_knn if args.eval == "knn" else run_linear_eval
    run(encoder, train, test, run_dir, image_size=size, **runtime)
    # Recorded once the evaluation is written: a file without it (an evaluation stopped
    # in between, or one cached by an earlier simclr) is never taken for this one.
    result = json.loads(saved.read_text())
    write_results(run_dir, name, {**result, EVALUATED_ON: wanted})
    return {column: result["top1"]}


def _check_eval_layer(layer: str, axes: list[Any], out: Path, preset: str | None,
                      config: str | None, flags: dict[str, Any]) -> None:
    """``sweep --eval-layer`` against every cell's projection head, before the first
    cell trains: a head layer gK needs a head of K layers or more."""
    from simclr.models import head_dims
    from simclr.sweep import cell_configs

    depth = parse_layer(layer, "--eval-layer")  # a typo is named now
    if depth is None:  # z: the head's output, whatever its depth (z = h without a head)
        return
    for cell, cfg in zip(*cell_configs(axes, out, preset, config, flags), strict=True):
        m = cfg.model
        layers = len(head_dims(m.head, 1, m.head_hidden_dim, m.head_out_dim,
                               m.head_layers)) - 1
        if depth > layers:
            raise SimCLRError(f"--eval-layer {layer}: the cell {cell.name} has a projection "
                              f"head of {layers} layer{'' if layers == 1 else 's'}")


def _eval_data(args: argparse.Namespace) -> dict[str, str]:
    """What a sweep evaluates on, as its cells' results record it: the folders' absolute
    paths (a named data set by its name; the digits demo by its split) and the version
    of the evaluation transform (:data:`simclr.augment.EVAL_VERSION`)."""
    if not (args.eval_train and args.eval_test):  # small images: no transform version
        return {"train": "digits[train]", "test": "digits[test]"}

    def identity(spec: str) -> str:
        from os.path import abspath

        from simclr.data import NAMED_DATASETS

        path = Path(spec).expanduser()
        if spec.lower() in NAMED_DATASETS and not path.is_dir():  # as open_source reads it
            return spec.lower()
        return abspath(path)

    from simclr.augment import EVAL_VERSION

    return {"train": identity(args.eval_train), "test": identity(args.eval_test),
            "transform": str(EVAL_VERSION)}


def _stale_evaluation(saved: Path, wanted: dict[str, str], precision: str,
                      layer: str = "h") -> str | None:
    """Why the cached results file ``saved`` is not this evaluation's (None: it is)."""
    try:
        cached = json.loads(saved.read_text())
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError):
        return "is unreadable"
    if not isinstance(cached, dict) or "top1" not in cached:
        return "is unreadable"
    found = cached.get(EVALUATED_ON)
    if not isinstance(found, dict):
        return "does not record its evaluation folders"
    for split in ("train", "test"):
        if found.get(split) != wanted[split]:
            return f"was computed on another {split} set ({found.get(split)})"
    if found.get("transform") != wanted.get("transform"):
        return "was computed with an earlier evaluation transform"
    computed_on = (cached.get("source") or {}).get("layer", "h")
    if computed_on != layer:
        return f"was computed on {computed_on}, not {layer}"
    # 'auto' takes any: a sweep continued on another machine keeps its results.
    if precision != "auto" and cached.get("precision") != precision:
        return f"was computed in {cached.get('precision')}, not {precision}"
    return None


def add_sweep_command(sub: argparse._SubParsersAction) -> None:
    from simclr.cli import add_config_flags
    from simclr.config import PRESETS

    p = sub.add_parser("sweep", help="a grid of pretraining runs, each evaluated (ablations)")
    p.add_argument("--set", action="append", default=[], metavar="SETTING=V1,V2",
                   help="a swept setting (repeat for a grid), e.g. temperature=0.1,0.5,1")
    p.add_argument("--pairs", metavar="OPS",
                   help="Fig. 5: each of these transformations alone and in ordered pairs "
                        "('a+b': a then b), on one branch, e.g. "
                        "crop,cutout,color,sobel,noise,blur,rotate")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--config", help="YAML file of settings shared by every cell")
    add_config_flags(p, exclude={"out"})
    p.add_argument("--out", required=True, help="sweep folder: one run directory per cell")
    p.add_argument("--print-config", action="store_true",
                   help="print each cell's resolved settings as YAML and exit")
    p.add_argument("--eval", choices=["knn", "linear", "none"], default="knn")
    p.add_argument("--eval-layer", default="h", metavar="LAYER",
                   help="the representation each cell is scored on: h (default, the "
                        "paper's), z or gK, a head layer (Sec. 4.2: h against z)")
    p.add_argument("--eval-train", help="labeled folder: kNN memory / linear training set")
    p.add_argument("--eval-test", help="labeled folder the top-1 is measured on")
    p.add_argument("--eval-device", default="auto")
    p.add_argument("--eval-precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--eval-workers", "--workers-eval", type=count_at_least(0), default=None,
                   dest="workers_eval", metavar="N",  # --workers-eval: its earlier name
                   help="decoding processes of the evaluations (default: from the CPU count)")
    p.add_argument("--eval-cache-dir", default=None,
                   help="decoded caches of the evaluation folders (default: --cache-dir)")
    from simclr.launch import add_flag

    add_flag(p, dest="cell_processes", what="train each cell")
    p.set_defaults(func=cmd_sweep)


def cmd_supervised(args: argparse.Namespace) -> int:
    from simclr.cli import config_flags
    from simclr.config import build_config
    from simclr.launch import again
    from simclr.supervised import (
        check_new_run,
        data_specs,
        note_ignored_settings,
        resume_config,
        run_supervised,
    )
    from simclr.train import check_batch_fits

    flags = config_flags(args)
    resume = None
    if args.resume:
        extra = [f"--{n}" for n in ("train", "test", "out", "preset", "config")
                 if getattr(args, n) is not None]
        if extra:
            raise SimCLRError(f"--resume continues the saved run; cannot give {extra[0]}")
        cfg, resume = resume_config(args.resume, flags)
    else:
        for name in ("train", "out"):
            if getattr(args, name) is None:
                raise SimCLRError(f"--{name} is required (or --resume RUN_DIR)")
        cfg = build_config(args.preset, args.config, {**flags, "out": args.out})
    if args.print_config:  # check a recipe before a long run: nothing is read or written
        from simclr.config import yaml_text

        print(yaml_text(cfg.to_dict()), end="")
        return 0
    if resume is not None:
        data = resume["data"]
    else:
        check_not_inside(cfg.out, {"--train": args.train, "--test": args.test}, "run")
        check_new_run(cfg.out)
        note_ignored_settings(args.config)
        listing = check_labeled_folders(args.train, args.test, ("--train", "--test"),
                                        train_split=True)
        if listing is not None:  # before the folder is decoded (run_supervised checks again)
            check_batch_fits(cfg.batch_size, len(listing.paths))
        data = data_specs(args.train, args.test)
    size = cfg.augment.size
    with dist.process_group():  # under torchrun: rank 0 decodes the folders, then the others
        train = dist.main_first(lambda: open_source(data["train"], cfg.data, train=True,
                                                    image_size=size))
        test = (dist.main_first(lambda: open_source(data["test"], cfg.data, train=False,
                                                    image_size=size, evaluation=True))
                if data.get("test") else None)
        result = run_supervised(cfg, train, test, cfg.out, data=data, resume=resume)
        return report(result, again(f"simclr supervised --resume {shlex.quote(str(cfg.out))}",
                                    args.processes))


def cmd_export(args: argparse.Namespace) -> int:
    from simclr.export import export

    print(json.dumps(export(args.checkpoint, args.out, args.format, args.layer,
                            overwrite=args.overwrite)))
    return 0


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def count_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer >= minimum (and <= maximum)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value
    return parse


_positive_int = count_at_least(1)


def _real(minimum: float, inclusive: bool, maximum: float = math.inf) -> Callable[[str], float]:
    """argparse type: a float above ``minimum`` (or equal, if inclusive), below maximum."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value >= minimum if inclusive else value > minimum
        if not (low_ok and value < maximum):
            bound = f"{'>=' if inclusive else '>'} {minimum:g}"
            if maximum < math.inf:
                bound += f" and < {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


# Passes over the labeled images, fractions allowed as in pretraining (steps are rounded).
_epochs = _real(0, False, MAX_EPOCHS + 1)


def _crop_flags(p: argparse.ArgumentParser, which: str = "") -> None:
    """The crops of training steps with labels (linear `sgd`, fine-tuning); None unless
    given, so the protocol's defaults apply."""
    p.add_argument("--crop-scale", type=_pair, default=None, metavar="A,B",
                   help=f"{which}area range of the random crops (default 0.08,1.0)")
    p.add_argument("--crop-sampler", choices=CROP_SAMPLERS, default=None,
                   help=f"{which}how crops are drawn: torchvision's RandomResizedCrop "
                   "(default) or the official code's sample_distorted_bounding_box")


def _pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX, got {text!r}") from None
    if not 0 < lo <= hi <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX <= 1, got {text!r}")
    return lo, hi


def _eval_inputs(p: argparse.ArgumentParser, runtime: RuntimeFlags, out_required: bool) -> None:
    p.add_argument("--checkpoint", required=True, help="any simclr checkpoint")
    p.add_argument("--train", required=True, help="labeled image folder (class sub-folders)")
    p.add_argument("--test", default=None, help="labeled image folder, same classes")
    p.add_argument("--test-fraction", type=_real(0, False, 1), default=None, metavar="F",
                   help="instead of --test: hold out this class-balanced fraction of "
                        "--train (from --seed) as the test set")
    p.add_argument("--out", required=out_required, help="run directory for results")
    p.add_argument("--overwrite", action="store_true",
                   help="replace this command's earlier results in --out (its JSON, figure "
                        "and classifier; never a pretraining run's files)")
    p.add_argument("--random-init", action="store_true",
                   help="the checkpoint's architecture at random initialization (baseline)")
    p.add_argument("--seed", type=count_at_least(0, MAX_SEED), default=0)
    runtime(p)


def add_evaluation_commands(sub: argparse._SubParsersAction, runtime: RuntimeFlags) -> None:
    """knn, linear-eval, finetune, supervised and export subcommands."""
    from simclr.launch import add_flag as add_processes_flag

    p = sub.add_parser("knn", help="weighted kNN top-1/top-5 on frozen features h")
    _eval_inputs(p, runtime, out_required=False)
    p.add_argument("--layer", default="h", help=LAYERS_HELP)
    p.add_argument("--k", type=_positive_int, default=200)
    p.add_argument("--temperature", type=_real(0, False), default=0.1)
    p.set_defaults(func=cmd_knn)

    p = sub.add_parser("linear-eval", help="linear classifier on the frozen encoder")
    _eval_inputs(p, runtime, out_required=False)
    p.add_argument("--layer", default="h", help=LAYERS_HELP + "; Fig. 8 compares h and z")
    p.add_argument("--protocol", choices=["lbfgs", "sgd"], default="lbfgs")
    p.add_argument("--raw-pixels", action="store_true", help="baseline: pixels as features")
    p.add_argument("--l2", type=_real(0, True), default=None, help="fixed L2 strength (lbfgs)")
    p.add_argument("--l2-grid", default=None, metavar="MIN,MAX,COUNT",
                   help="L2 strengths searched on the held-out split (lbfgs)")
    p.add_argument("--val-fraction", type=_real(0, False, 1), default=None,
                   help="held out to choose the L2 strength (lbfgs; default 0.1)")
    p.add_argument("--max-iter", type=_positive_int, default=None,
                   help="L-BFGS iterations at most (lbfgs; default 1000)")
    p.add_argument("--epochs", type=_epochs, default=None,
                   help="sgd; default 90 (fractions allowed)")
    p.add_argument("--lr", type=_real(0, False), default=None,
                   help="sgd: base lr, x batch/256; default 0.1")
    p.add_argument("--momentum", type=_real(0, True, 1), default=None, help="sgd; default 0.9")
    _crop_flags(p, "sgd; ")
    p.add_argument("--checkpoint-every", type=count_at_least(0), default=None, metavar="STEPS",
                   help="sgd: steps between saves of the unfinished training in --out (0: only "
                        "on SIGTERM/SIGINT; default 500); the same command continues it")
    p.add_argument("--checkpoint-minutes", type=_real(0, True), default=None,
                   metavar="MINUTES", help="sgd: also a save when this long has passed since "
                                           "the last (0: off; default 30)")
    add_processes_flag(p)
    p.set_defaults(func=cmd_linear_eval)

    p = sub.add_parser("finetune", help="fine-tune on a class-balanced labeled subset")
    _eval_inputs(p, runtime, out_required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--label-fraction", type=_fraction, default=None)
    group.add_argument("--labels-per-class", type=_positive_int, default=None)
    group.add_argument("--subset", default=None, metavar="FILE",
                       help="the labeled images listed in FILE (one file name or path per "
                       "line, e.g. the paper's imagenet_subsets/1percent.txt)")
    p.add_argument("--epochs", type=_epochs, default=None,
                   help="default: 60 for <= 5%% of the labels, else 30 (paper); fractions "
                        "allowed")
    p.add_argument("--lr", type=_real(0, False), default=0.05, help="base lr, x batch/256")
    p.add_argument("--momentum", type=_real(0, True, 1), default=0.9)
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    _crop_flags(p)
    p.add_argument("--from-head", action="store_true",
                   help="keep the projection head's first layer (SimCLRv2)")
    p.add_argument("--from-scratch", action="store_true",
                   help="baseline: same architecture and budget, no pretraining")
    p.add_argument("--checkpoint-every", type=count_at_least(0), default=500, metavar="STEPS",
                   help="steps between saves of the unfinished fine-tuning (0: only on "
                        "SIGTERM/SIGINT); rerunning the same command continues it")
    p.add_argument("--checkpoint-minutes", type=_real(0, True), default=30.0, metavar="MINUTES",
                   help="also a save when this long has passed since the last (0: off)")
    p.add_argument("--no-sync-bn", dest="sync_bn", action="store_false",
                   help="with several processes: BatchNorm statistics of each process's share of "
                        "the batch (default: of the global batch, as the paper)")
    add_processes_flag(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("transform-probe",
                       help="Table 3: predict the applied transformation from h and from z")
    _eval_inputs(p, runtime, out_required=False)
    for action in p._actions:  # the applied transformation is the target, not a class
        if action.dest in ("train", "test"):
            action.help = "image folder (class sub-folders not needed)"
    p.add_argument("--task", choices=["gray", "rotation", "noise", "sobel", "all"],
                   default="all")
    p.add_argument("--views", type=count_at_least(1, 100), default=2,
                   help="probe views per training image (at most 100: each is kept as "
                        "features)")
    p.add_argument("--epochs", type=count_at_least(1, 100_000), default=50,
                   help="MLP training epochs")
    p.set_defaults(func=cmd_transform_probe)

    from simclr.cli import add_config_flags
    from simclr.config import PRESETS, all_flags

    p = sub.add_parser("supervised", help="the supervised baseline: same encoder, labels, CE")
    p.add_argument("--train", help="labeled image folder (required for a new run)")
    p.add_argument("--test", default=None, help="labeled image folder for the final top-1")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS))
    p.add_argument("--config", default=None)
    # Settings that play no part in supervised training are not offered as flags (a flag
    # offered and ignored misleads): supervised.unused_setting.
    from simclr.supervised import unused_setting

    add_config_flags(p, exclude={flag for flag, path in all_flags().items()
                                 if unused_setting(path)})
    p.add_argument("--out", help="run directory (required for a new run)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as YAML and exit")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the unfinished run saved in RUN_DIR (e.g. after exit 75)")
    add_processes_flag(p)
    p.set_defaults(func=cmd_supervised)

    p = sub.add_parser(
        "export", help="the encoder as a small checkpoint, torchvision ResNet weights, or a "
                       "program that runs without simclr (torch.export .pt2, ONNX)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file or run folder")
    p.add_argument("--out", required=True,
                   help="the file to write (.pt: checkpoint, .pt2: torch.export, .onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="auto (default): from --out's suffix")
    p.add_argument("--layer", default="h",
                   help=f"pt2 / onnx: {LAYERS_HELP}, or logits (classifier checkpoints)")
    p.set_defaults(func=cmd_export)


def digits_knn_report(checkpoint: str, cfg: Config) -> str:
    """kNN top-1 on the digits hold-out split, pretrained vs the same encoder at init."""
    from simclr.data import digits_split
    from simclr.evaluate import knn_accuracy
    from simclr.features import extract_features
    from simclr.runtime import resolve_device, resolve_precision

    dev = resolve_device(cfg.device)
    prec = resolve_precision(cfg.precision, dev)
    memory, queries = digits_split(seed=0)
    ckpt = load_checkpoint(checkpoint)
    lines = []
    for random_init in (False, True):
        torch.manual_seed(cfg.seed)
        encoder, spec = encoder_from_checkpoint(ckpt, random_init)
        size = spec["image_size"]
        train_x, train_y = extract_features(encoder, memory, size, 512, dev, prec)
        test_x, test_y = extract_features(encoder, queries, size, 512, dev, prec)
        top1 = knn_accuracy(train_x, train_y, test_x, test_y, k=cfg.knn_k,
                            temperature=cfg.knn_temperature)
        name = "random init" if random_init else "pretrained"
        lines.append(f"{name:>11}: kNN top-1 {100 * top1:.1f}%")
    return (f"digits hold-out ({memory.num_images} memory / {queries.num_images} queries, "
            f"k={cfg.knn_k}, T={cfg.knn_temperature}):\n" + "\n".join(lines))
