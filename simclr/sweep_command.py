"""The `sweep` command end to end: its flags, its run, and the evaluation of each cell.

The grid itself (its axes and cells) is :mod:`simclr.sweep_grid`, its runs and table
:mod:`simclr.sweep`; this module checks the command's flags before the first cell trains
and scores each finished cell by kNN or linear evaluation, cached in the cell's run
directory.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from simclr.arguments import count_at_least, epoch_count
from simclr.checkpoint_read import load_checkpoint
from simclr.commands import checkpoint_source
from simclr.config import MAX_WORKERS, PRECISIONS, DataConfig
from simclr.config_file import names_no_data
from simclr.errors import SimCLRError, is_amount, printable
from simclr.features import check_labeled_folders
from simclr.files import SetAside, read_json, set_aside, tagged, write_json
from simclr.folders import check_folder
from simclr.launch import add_flag as add_processes_flag
from simclr.presets import PRESETS
from simclr.pretrained import parse_layer, representation_from_checkpoint
from simclr.results import RESULTS, check_not_inside
from simclr.settings import is_null
from simclr.sweep import EVALUATED_ON, RESULTS_FILE
from simclr.sweep_checks import READING


def add_sweep_command(sub: argparse._SubParsersAction) -> None:
    """The `sweep` subcommand: its flags, run by :func:`cmd_sweep`."""
    from simclr.cli import OneFile, add_config_flags

    p = sub.add_parser("sweep", help="a grid of pretraining runs, each evaluated (ablations)")
    p.add_argument("--set", action="append", default=[], metavar="SETTING=V1,V2",
                   help="a swept setting (repeat for a grid), e.g. temperature=0.1,0.5,1; "
                        "values holding commas take ';': 'crop-scale=0.08,1;0.2,1'")
    p.add_argument("--pairs", metavar="OPS",
                   help="Fig. 5: each of these transformations alone and in ordered pairs "
                        "('a+b': a then b), on one branch, e.g. "
                        "crop,cutout,color,sobel,noise,blur,rotate")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--config", action=OneFile, help="YAML file of settings shared by every cell")
    add_config_flags(p, exclude={"out"})
    p.add_argument("--out", required=True, help="sweep folder: one run directory per cell")
    p.add_argument("--print-config", action="store_true",
                   help="print each cell's resolved settings as YAML and exit")
    p.add_argument("--eval", choices=["knn", "linear", "none"], default="knn",
                   help="each cell's score: kNN top-1, linear top-1 (--eval-protocol), or "
                        "none")
    p.add_argument("--eval-protocol", choices=["lbfgs", "sgd"], default="lbfgs",
                   help="--eval linear's: lbfgs (features once, the transfer protocol) | "
                        "sgd (the paper's: crop + flip each step, Nesterov SGD, lr 0.1 x "
                        "B/256, as `simclr linear-eval --protocol sgd`)")
    p.add_argument("--eval-epochs", type=epoch_count, default=None, metavar="EPOCHS",
                   help="--eval-protocol sgd: passes over --eval-train (default 90)")
    p.add_argument("--eval-batch-size", type=count_at_least(1), default=None, metavar="N",
                   help="--eval-protocol sgd: images per step (default 256)")
    p.add_argument("--eval-layer", default="h", metavar="LAYER",
                   help="the representation each cell is scored on: h (default, the "
                        "paper's), z or gK, a head layer (Sec. 4.2: h against z); a cell "
                        "without a head (head none) scores h in its z column (z = h), "
                        "said in a note")
    p.add_argument("--eval-train", help="labeled folder: kNN memory / linear training set")
    p.add_argument("--eval-test", help="labeled folder the top-1 is measured on")
    p.add_argument("--eval-device", default="auto")
    p.add_argument("--eval-precision", default="auto", choices=PRECISIONS)
    # (--workers-eval: its earlier name)
    p.add_argument("--eval-workers", "--workers-eval", type=count_at_least(0, MAX_WORKERS),
                   default=None, dest="workers_eval", metavar="N",
                   help="decoding processes of the evaluations (default: each process's "
                        "share of the usable CPU cores, at most 8)")
    p.add_argument("--eval-cache-dir", default=None,
                   help="decoded caches of the evaluation folders (default: --cache-dir)")
    add_processes_flag(p, dest="cell_processes", what="train each cell")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train and evaluate every cell of the grid not yet done, then print the table; exit
    status 75 (``train.EXIT_PREEMPTED``) when a signal stopped it."""
    from simclr.cli import config_flags
    from simclr.sweep import run_sweep
    from simclr.sweep_checks import check_not_swept_twice
    from simclr.sweep_grid import pairs_axis, parse_axis

    if not args.set and not args.pairs:
        raise SimCLRError("nothing to sweep: give --set SETTING=V1,V2 and/or --pairs OPS")
    _check_eval_flags(args)
    axes = ([pairs_axis(args.pairs)] if args.pairs else []) + [parse_axis(t) for t in args.set]
    flags = config_flags(args)
    check_not_swept_twice(axes, flags)
    if flags.get("data.path") is None and args.config:  # (its cells would train on digits)
        from simclr.config_file import load_yaml
        from simclr.supervised import check_not_supervised_config

        data = load_yaml(args.config).get("data")
        check_not_supervised_config(args.config,
                                    data.get("path") if isinstance(data, dict) else None)
    # A data axis names the data as --data does: its cells are no digits demo (its
    # preset, its hold-out as their evaluation) unless every value is none
    _check_not_demo_and_data(axes)
    digits = names_no_data(args.config, flags) and not _swept_data(axes)
    preset = args.preset or ("digits" if digits else None)  # as `simclr pretrain`
    headless: list[str] = []
    if args.eval != "none" and args.eval_layer != "h":
        headless = _check_eval_layer(args.eval_layer, axes, Path(args.out).expanduser(),
                                     preset, args.config, flags, _scored_folders(args))
    folders = bool(args.eval_train and args.eval_test)  # (both or neither: _check_eval_flags)
    if args.eval != "none" and not folders and not digits:
        raise SimCLRError(f"--eval {args.eval} needs --eval-train and --eval-test (labeled "
                          "folders), or pass --eval none")
    if args.eval != "none" and not folders:  # the demo's hold-out: in memory, never decoded
        unused = [flag for flag, given in (("--eval-cache-dir", args.eval_cache_dir),
                                           ("--eval-workers", args.workers_eval is not None))
                  if given]
        if unused:
            raise SimCLRError(f"{', '.join(unused)}: unused when the cells are scored on the "
                              "digits hold-out; drop it or give --eval-train and --eval-test")
    # Each cell's resolved settings; no folder is read, nothing written, so the cells alike
    # only on this machine or its data (check_cells_differ) are the sweep's to refuse.
    if args.print_config:
        _print_cell_configs(axes, Path(args.out).expanduser(), preset, args.config, flags,
                            _scored_folders(args), args.eval_cache_dir)
        return 0
    _say_z_is_h(headless, args.eval)  # (once the sweep goes ahead)

    if folders:
        check_folder("--eval-train", args.eval_train)
        check_folder("--eval-test", args.eval_test)
        # The cells' files (a confusion figure) inside a folder the scores read would
        # become its images: each cell then scored on another test set.
        check_not_inside(args.out, {"--eval-train": args.eval_train,
                                    "--eval-test": args.eval_test}, "sweep")

    # Each cell's data settings as this command gives them (a reused cell's saved ones
    # may differ in its runtime settings, --cache-dir and --decoder): its folders'
    # reading. Kept by cell, not folder: a cell that takes over an earlier run of its
    # settings (`sweep_reuse`) is given that run's folder after this check.
    reading: list[tuple[Any, DataConfig]] = []

    scored_folders = folders and args.eval != "none"

    def check_eval_folders(cells: list[Any], configs: list[Any]) -> None:
        reading[:] = [(cell, cfg.data) for cell, cfg in zip(cells, configs, strict=True)]
        if scored_folders:  # before hours of training
            _check_eval_folders(args, configs)

    def decode_eval_folders(configs: list[Any]) -> None:
        if scored_folders:
            _decode_strictly(args, configs)

    wanted = _eval_data(args) if args.eval != "none" else {}  # (listed once, not per cell)

    def evaluate(run_dir: Path) -> dict[str, Any]:
        data = next(data for cell, data in reading if cell.run_dir == run_dir)
        return evaluate_run(run_dir, args, wanted, data)

    def recorded(run_dir: Path) -> dict[str, Any]:
        return recorded_scores(run_dir, args, wanted)

    cells, table = run_sweep(axes, args.out, preset=preset, config=args.config,
                             flags=flags,  # (--out is not a config flag here)
                             evaluate=None if args.eval == "none" else evaluate,
                             processes=args.cell_processes, scores=args.eval,
                             recorded=recorded,
                             # (the rows record it: a rerun scored otherwise keeps them)
                             evaluated_on={"scores": args.eval, **wanted},
                             caches={"--eval-cache-dir": args.eval_cache_dir},
                             folders={"--eval-train": args.eval_train,
                                      "--eval-test": args.eval_test},
                             folders_device=_eval_device(args) if scored_folders else None,
                             check_configs=check_eval_folders,
                             last_check=decode_eval_folders)
    print(table)
    if any(c.result.get("status") == "preempted" or c.stopped_by for c in cells):
        from simclr.train import EXIT_PREEMPTED

        print("sweep stopped by a signal; the same command continues it", file=sys.stderr)
        return EXIT_PREEMPTED
    return 0


def _swept_data(axes: list[Any]) -> bool:
    """Whether an axis names a data folder (or data set) for some cell: ``--set
    data=A,B``; ``data=none`` alone is the digits demo, as ``--data none`` is."""
    return any(not is_null(setting["data.path"]) for axis in axes
               for setting in axis.settings if "data.path" in setting)


def _check_not_demo_and_data(axes: list[Any]) -> None:
    """Refuse a data axis of the digits demo (``none``) and data (``--set
    data=none,DIR``): its demo cell would train 8-px digits with the folders' settings
    (no demo preset: a ResNet-50 for 200 epochs) and be scored on the folders."""
    for axis in axes:
        values = [s["data.path"] for s in axis.settings if "data.path" in s]
        nulls = [is_null(v) for v in values]
        if any(nulls) and not all(nulls):
            raise SimCLRError("--set data: none (the digits demo, with its own preset and "
                              "hold-out) and data in one axis; sweep the demo on its own")


def _check_eval_flags(args: argparse.Namespace) -> None:
    """The evaluations' flags, checked before the first cell trains: their device and
    precision are usable here, none is given with ``--eval none`` (it would be unused),
    and the evaluation folders are given both or neither."""
    if args.eval != "none":  # the evaluations' runtime
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
    if bool(args.eval_train) != bool(args.eval_test):  # (a digits sweep took its hold-out)
        half, missing = ("--eval-train", "--eval-test")[::1 if args.eval_train else -1]
        raise SimCLRError(f"{half} without {missing}: a cell's score needs both labeled "
                          f"folders; give {missing} too")
    sgd = {"--eval-epochs": args.eval_epochs, "--eval-batch-size": args.eval_batch_size}
    if args.eval_protocol == "sgd" and args.eval != "linear":
        raise SimCLRError(f"--eval-protocol sgd: linear evaluation's; --eval is {args.eval} "
                          "(give --eval linear)")
    for flag, value in sgd.items():
        if value is not None and args.eval_protocol != "sgd":  # (unused: refused)
            raise SimCLRError(f"{flag}: a setting of the SGD linear protocol; give --eval "
                              "linear --eval-protocol sgd, or drop it")


def _scored_folders(args: argparse.Namespace) -> list[str]:
    """The --eval-train and --eval-test folders the cells are scored on (read with their
    data settings: --strict, --max-pixels... act there), if any."""
    return [args.eval_train, args.eval_test] if args.eval != "none" and args.eval_train \
        else []


def _print_cell_configs(axes: list[Any], out: Path, preset: str | None,
                        config: str | None, flags: dict[str, Any],
                        reads: list[str], eval_cache_dir: str | None) -> None:
    """``--print-config``: each cell's resolved settings as YAML (refused where the run
    would refuse them: an ``--eval-cache-dir`` no cell caches into)."""
    from simclr.config_file import yaml_text
    from simclr.sweep import cell_configs

    cells, configs = cell_configs(axes, out, preset, config, flags, reads)
    _check_eval_cache_dir(eval_cache_dir, configs)
    print("\n".join(f"--- # cell {cell.name}\n{yaml_text(cfg.to_dict())}"
                    for cell, cfg in zip(cells, configs, strict=True)), end="")


# What a sweep cell's evaluation writes (each protocol's RESULTS, and its figure): all of
# it set aside together when the cell is evaluated again.
EVAL_FILES = {"knn": (*RESULTS["knn"], "knn_confusion.png"),
              "linear": (*RESULTS["linear-eval"], "linear_eval_confusion.png")}
SGD_EPOCHS, SGD_BATCH = 90, 256  # the SGD linear protocol's defaults (App. B.6)


def evaluate_run(run_dir: Path, args: argparse.Namespace, wanted: dict[str, str],
                 data: DataConfig | None = None) -> dict[str, Any]:
    """kNN or linear top-1 of a finished sweep cell, cached in the cell's run directory.

    The cached result is reused only when it was computed on the same --eval-train and
    --eval-test (absolute paths) and, where --eval-precision is given, at that
    precision. Otherwise the cell is evaluated again and the earlier files are kept
    beside the new ones as ``NAME.previous-K.EXT`` (nothing is deleted). Returns a column
    per layer scored on these folders (``--eval-layer`` now, and any kept from a rerun
    with another): Sec. 4.2's h and z side by side after two commands. ``wanted``: what
    the command evaluates on (:func:`_eval_data`, listed once for all its cells);
    ``data``: the cell's data settings, its folders read with them (:func:`_scoring_data`).
    """
    from simclr.evaluate import run_linear_eval
    from simclr.knn import run_knn
    from simclr.results import write_results
    from simclr.runtime import process_settings_restored, set_threads

    name = RESULTS_FILE[args.eval]
    saved = run_dir / name
    layer = args.eval_layer
    # Every layer this cell was scored on, on these folders, by this command or an
    # earlier one with another --eval-layer (kept as NAME.previous-K): one column each.
    on_record = _scored_layers(run_dir, name, wanted, args.eval_precision)
    scored = {key: top1 for key, (top1, _) in on_record.items()}
    if layer in scored:  # this layer's score is on record: nothing to compute
        _make_current(run_dir, name, on_record[layer][1], EVAL_FILES[args.eval])
        return _columns(args.eval, scored)
    stale = _stale_evaluation(saved, wanted, args.eval_precision, layer)
    kept = _set_aside_evaluation(run_dir, EVAL_FILES[args.eval])
    if kept:
        print(printable(f"cell {run_dir.name}: {name} {stale}; evaluating again (the "
                        f"earlier files are kept as {kept})"), file=sys.stderr, flush=True)
    ckpt_path = run_dir / "checkpoints/last.pt"
    ckpt = load_checkpoint(ckpt_path)
    config = ckpt.get("config") or {}
    headless = config.get("model", {}).get("head") == "none"
    # z of a cell without a projection head is h (its column stays z, as asked)
    encoder, spec = representation_from_checkpoint(ckpt, "h" if headless and layer == "z"
                                                   else layer)
    size = spec["image_size"]
    # (in the memory format the cell trained in, as its kNN monitor measured it)
    runtime = {"device": args.eval_device, "precision": args.eval_precision,
               "channels_last": bool(config.get("channels_last", True)),
               "workers": args.workers_eval, "verbose": False,
               "source": {**checkpoint_source(ckpt_path, ckpt, "pretrained"), "layer": layer}}
    sgd = _sgd_protocol(args)
    train, test = _eval_sources(args, size, augmented=sgd, data=data)
    if args.eval == "linear":  # the classifier names its encoder, as linear-eval's does
        # An unfinished sgd evaluation of other settings (stopped by a signal, then the
        # sweep rerun with other --eval flags) is set aside, as stale results are: it
        # was refused, naming an --overwrite the sweep does not have.
        runtime.update(config=ckpt.get("config"), overwrite="keep")
    if sgd:
        runtime.update(protocol="sgd", epochs=args.eval_epochs or SGD_EPOCHS,
                       batch_size=args.eval_batch_size or SGD_BATCH,
                       verbose=True)  # (a training: its progress is worth seeing)
    run = run_knn if args.eval == "knn" else run_linear_eval
    with process_settings_restored():  # (the sweep's own, and its next cell's, come back)
        # (quiet: a --threads above the cores was said where the cells train)
        set_threads(_eval_threads(args), quiet=True)
        done = run(encoder, train, test, run_dir, image_size=size, **runtime)
    if done.get("status") == "preempted":  # its training is kept: the command continues it
        return {"status": "preempted"}
    # Recorded once the evaluation is written: a file without it (an evaluation stopped
    # in between, or one cached by an earlier simclr) is never taken for this one.
    result = json.loads(saved.read_text(encoding="utf-8"))
    write_results(run_dir, name, {**result, EVALUATED_ON: wanted})
    return _columns(args.eval, {**scored, layer: result["top1"]})


def _eval_device(args: argparse.Namespace) -> str:
    """The device the cells' evaluations decode their --eval folders on (--eval-device)."""
    from simclr.runtime import resolve_device

    return str(resolve_device(args.eval_device, "--eval-device"))


def _eval_threads(args: argparse.Namespace) -> int | None:
    """torch's CPU threads for a cell's evaluation: this command's --threads, as its
    training has them; None: torch's choice. (--threads reached the cells' training
    only: their evaluations ran with torch's default, on a busy machine many times
    slower, and recorded that.) Never a cell's saved config's: a runtime setting of the
    command that trained it, not of this one."""
    threads = vars(args).get("cfg:threads")  # (the flag as typed: validated by then)
    try:
        count = int(threads) if threads else None
    except (TypeError, ValueError):
        return None
    return count if count and count > 0 else None


def recorded_scores(run_dir: Path, args: argparse.Namespace,
                    wanted: dict[str, str]) -> dict[str, float]:
    """The columns of a cell's scores on record on these folders (those
    :func:`evaluate_run` would reuse), read only: nothing computed, no file moved. The
    sweep's table before its first cell runs shows them."""
    on_record = _scored_layers(run_dir, RESULTS_FILE[args.eval], wanted,
                               args.eval_precision)
    return _columns(args.eval, {key: top1 for key, (top1, _) in on_record.items()})


def _sgd_protocol(args: argparse.Namespace) -> bool:
    """Whether the cells are scored by the SGD linear protocol (its training folder read
    as augmented views, not an evaluation store)."""
    return args.eval == "linear" and args.eval_protocol == "sgd"


def _eval_sources(args: argparse.Namespace, size: int, augmented: bool,
                  data: DataConfig | None = None) -> tuple[Any, Any]:
    """(train, test) of a cell's evaluation: the --eval folders stored for ``size`` (the
    training one for augmented views with ``augmented``: the SGD protocol's crops, as
    `simclr linear-eval` opens it) and read with the cell's data settings ``data``
    (:func:`_scoring_data`; None: the defaults), or the digits demo's hold-out split."""
    if not (args.eval_train and args.eval_test):
        from simclr.named_data import digits_split

        return digits_split(seed=0)
    from simclr.data import open_source

    cfg = _scoring_data(args, data or DataConfig())
    # (the digits' training split: none of the test digits, as `simclr knn` reads it)
    return (open_source(args.eval_train, cfg, train=True, image_size=size,
                        evaluation=not augmented, held_out=True),
            open_source(args.eval_test, cfg, train=False, image_size=size, evaluation=True))


def _scoring_data(args: argparse.Namespace, data: DataConfig) -> DataConfig:
    """The data settings a cell's --eval folders are read with: those it reads its own
    folders with (--cache, --strict, --decoder, --max-pixels, --cache-dir, --data-root),
    as its kNN monitor does, but --eval-workers and --eval-cache-dir where given. (The
    scoring read them with the defaults but for the cache folder and limit: --cache,
    --strict, --decoder and a named data set's root had no effect on them.)"""
    cfg = DataConfig(**{name: getattr(data, name) for name in READING},
                     workers=args.workers_eval)
    if args.eval_cache_dir:
        cfg.cache_dir = args.eval_cache_dir
    return cfg


def _check_eval_folders(args: argparse.Namespace, configs: list[Any]) -> None:
    """The --eval folders, before any cell trains: labeled alike and readable under the
    smallest --max-pixels of the cells, each JPEG decoded at the largest size a cell's
    scoring decodes it at (the limit is on what is decoded: one that fits in a check at
    reduced size stopped the sweep once a cell had trained)."""
    from simclr.data import reading_draft

    _check_eval_cache_dir(args.eval_cache_dir, configs)
    augmented = _sgd_protocol(args)  # (its training folder: augmented views)
    sizes = {cfg.augment.evaluation_size() for cfg in configs}
    # (the store and load size that set the decoded side: the scoring's own, every cell's)
    data = _scoring_data(args, configs[0].data)

    def draft(files: Any, train: bool) -> int:  # (the largest: the least reduced)
        return max(reading_draft(files, size, data, evaluation=not (train and augmented))
                   for size in sizes)

    check_labeled_folders(args.eval_train, args.eval_test, ("--eval-train", "--eval-test"),
                          train_split=True,
                          max_pixels=min(cfg.data.max_pixels for cfg in configs),
                          draft=draft)


def _check_eval_cache_dir(eval_cache_dir: str | None, configs: list[Any]) -> None:
    """--eval-cache-dir refused where no cell caches (the --eval folders are read with
    each cell's --cache)."""
    if eval_cache_dir and all(cfg.data.cache == "off" for cfg in configs):
        raise SimCLRError("--eval-cache-dir: unused: the cells read the --eval folders as "
                          "their own, with --cache off; drop it or give --cache auto or on")


def _decode_strictly(args: argparse.Namespace, configs: list[Any]) -> None:
    """With a --strict cell, every image of the --eval folders decoded before any cell
    trains (a bad one stopped the sweep once its first cell had trained)."""
    strict = next((cfg for cfg in configs if cfg.data.strict), None)
    if strict is None:
        return
    # (a cache this builds is the scoring's, of the same side)
    for source in _eval_sources(args, strict.augment.evaluation_size(), _sgd_protocol(args),
                                strict.data):
        source.close()


def _columns(protocol: str, scored: dict[str, float]) -> dict[str, float]:
    """A sweep table's columns of each layer's score: knn_top1 (h) first, knn_z_top1..."""
    return {_column(protocol, layer): top1
            for layer, top1 in sorted(scored.items(), key=lambda item: item[0] != "h")}


def _column(protocol: str, layer: str) -> str:
    """The sweep table's column of ``layer``'s score: knn_top1 (h), knn_z_top1, ..."""
    return f"{protocol}_top1" if layer == "h" else f"{protocol}_{layer}_top1"


def _make_current(run_dir: Path, name: str, found: Path, files: tuple[str, ...]) -> None:
    """Bring the evaluation on record in ``found`` (``NAME.previous-K``) back as the
    cell's current files, the current ones set aside in its place: a cell's ``knn.json``
    (its ``linear.pt``) is always the evaluation its sweep table shows last."""
    k = re.fullmatch(r".+\.(previous-\d+)\.[^.]+", found.name)  # STEM.previous-K.EXT
    if found.name == name or k is None:  # (another file the glob matched: left as it is)
        return
    kept = _set_aside_evaluation(run_dir, files)
    for current in files:
        earlier = run_dir / tagged(Path(current), k[1])
        if earlier.exists():
            earlier.replace(run_dir / current)
    _point_at_figure(run_dir, files, None)
    print(printable(f"cell {run_dir.name}: the evaluation on record in {found.name} is "
                    f"current again{f' (the other kept as {kept})' if kept else ''}"),
          file=sys.stderr, flush=True)


def _set_aside_evaluation(run_dir: Path, files: tuple[str, ...]) -> SetAside | None:
    """:func:`simclr.files.set_aside` of a cell's evaluation ``files``, its results
    file's ``confusion_figure`` then naming the figure set aside with it (it named
    ``knn_confusion.png``: the next evaluation's figure). Returns what it renamed."""
    kept = set_aside(run_dir, files)
    if kept is not None:
        _point_at_figure(run_dir, files, kept.tag)
    return kept


def _point_at_figure(run_dir: Path, files: tuple[str, ...], tag: str | None) -> None:
    """The results file among ``files`` renamed ``STEM.TAG.json`` (None: its own name)
    names the figure renamed with it in its ``confusion_figure`` (kept as written:
    absolute or relative, only the file name changes). One naming no figure of
    ``files`` (none was drawn, or an edited file) is left as it is."""
    figures = [Path(f) for f in files if f.endswith(".png")]
    for name in (Path(f) for f in files if f.endswith(".json")):
        path = run_dir / tagged(name, tag)
        found = read_json(path) or {}
        named = found.get("confusion_figure")
        if not figures or not isinstance(named, str) or not re.fullmatch(
                rf"{re.escape(figures[0].stem)}(\.previous-\d+)?\.png", Path(named).name):
            continue
        moved = str(Path(named).with_name(tagged(figures[0], tag).name))
        if moved != named:
            write_json(path, {**found, "confusion_figure": moved})


def _names_a_layer(layer: str) -> bool:
    """Whether ``layer`` is one --eval-layer takes (h, or
    :func:`~simclr.pretrained.parse_layer`'s: z, gK as typed, g01 too)."""
    if layer == "h":
        return True
    try:
        parse_layer(layer)
    except SimCLRError:
        return False
    return True


def _scored_layers(run_dir: Path, name: str, wanted: dict[str, str],
                   precision: str) -> dict[str, tuple[float, Path]]:
    """{layer: (top-1, its file)} of the cell's evaluations ``name`` (and
    ``NAME.previous-K``) made on ``wanted`` (:func:`_stale_evaluation`); the latest one of
    a layer wins."""
    stem, ext = name.rsplit(".", 1)

    def order(path: Path) -> tuple[bool, int]:  # by when written, the current file last
        try:  # (K is the first number free, not a time order)
            return path.name == name, path.stat().st_mtime_ns
        except OSError:
            return path.name == name, 0

    scored: dict[str, tuple[float, Path]] = {}
    for path in sorted([*run_dir.glob(f"{stem}.previous-*.{ext}"), run_dir / name], key=order):
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
            layer = str((found.get("source") or {}).get("layer", "h"))
        except (OSError, ValueError, AttributeError, RecursionError):  # (a deep nesting)
            continue
        # (a layer no evaluation names, a received cell's: no column of its own)
        if _names_a_layer(layer) and _stale_results(found, wanted, precision,
                                                    layer) is None:
            scored[layer] = found["top1"], path
    return scored


def _check_eval_layer(layer: str, axes: list[Any], out: Path, preset: str | None,
                      config: str | None, flags: dict[str, Any],
                      reads: list[str] | tuple[()] = ()) -> list[str]:
    """``sweep --eval-layer`` against every cell's projection head, before the first
    cell trains: a head layer gK needs a head of K layers or more. Returns, for z, the
    cells without a head (z = h there: their z column holds h's score)."""
    from simclr.models import head_dims
    from simclr.sweep import cell_configs

    depth = parse_layer(layer, "--eval-layer")  # a typo is named now
    headless: list[str] = []
    for cell, cfg in zip(*cell_configs(axes, out, preset, config, flags, reads),
                         strict=True):
        m = cfg.model
        layers = len(head_dims(m.head, 1, m.head_hidden_dim, m.head_out_dim,
                               m.head_layers)) - 1
        if depth is None:  # z: the head's output, whatever its depth (h without a head)
            headless += [cell.name] if m.head == "none" else []
        elif depth > layers:
            raise SimCLRError(f"--eval-layer {layer}: the cell {cell.name} has a projection "
                              f"head of {layers} layer{'' if layers == 1 else 's'}")
    return headless


def _say_z_is_h(headless: list[str], scores: str) -> None:
    """One line naming the cells whose ``--eval-layer z`` column holds h: `simclr knn
    --layer z` refuses a headless checkpoint, where the sweep scores its h (z = h)."""
    if headless:
        cells = ", ".join(headless)
        one = len(headless) == 1
        print(printable(f"note: --eval-layer z: the cell{'' if one else 's'} {cells} "
                        f"{'has' if one else 'have'} no projection head; "
                        f"{'its' if one else 'their'} {_column(scores, 'z')} is "
                        f"{'its' if one else 'their'} h's score (z = h without a head)"),
              file=sys.stderr, flush=True)


def _eval_data(args: argparse.Namespace) -> dict[str, str]:
    """What a sweep evaluates on, as its cells' results record it: the folders' absolute
    paths (a named data set by its name; the digits demo by its split) and a digest of
    their files' names (an image added, removed or renamed since: evaluated again), the
    version of the evaluation transform (:data:`simclr.augment.EVAL_VERSION`) and, for
    the SGD linear protocol, the protocol with its epochs and batch."""
    sgd = ({"protocol": "sgd", "epochs": f"{args.eval_epochs or SGD_EPOCHS:g}",
            "batch_size": str(args.eval_batch_size or SGD_BATCH)}
           if args.eval_protocol == "sgd" else {})
    if not (args.eval_train and args.eval_test):  # small images: no transform version
        return {"train": "digits[train]", "test": "digits[test]", **sgd}

    def identity(spec: str, split: str) -> str:
        from os.path import abspath

        from simclr.folders import named_dataset
        from simclr.named_data import is_digits

        if is_digits(spec):  # (its training split holds none of the test digits: a
            return f"digits[{split}]"  # record of all of them, an earlier one's, is stale)
        # a name as open_source reads it, else the folder wherever the sweep is run from
        return spec.lower() if named_dataset(spec) else abspath(Path(spec).expanduser())

    def files(spec: str, train: bool) -> dict[str, str]:
        from simclr.folders import list_folder

        listed = list_folder(spec, train=train)  # (None: a named data set)
        return {} if listed is None else {f"{'train' if train else 'test'}_files":
                                          f"{len(listed.paths)}:{listed.names_digest()}"}

    from simclr.augment import EVAL_VERSION

    return {"train": identity(args.eval_train, "train"),
            "test": identity(args.eval_test, "test"),
            **files(args.eval_train, True), **files(args.eval_test, False),
            "transform": str(EVAL_VERSION), **sgd}


def _stale_evaluation(saved: Path, wanted: dict[str, str], precision: str,
                      layer: str = "h") -> str | None:
    """Why the cached results file ``saved`` is not this evaluation's (None: it is)."""
    try:
        cached = json.loads(saved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, RecursionError):  # (RecursionError: nested too deep)
        return "is unreadable"
    return _stale_results(cached, wanted, precision, layer)


def _stale_results(cached: Any, wanted: dict[str, str], precision: str,
                   layer: str) -> str | None:
    """Why a results file's content ``cached`` is not this evaluation's (None: it is),
    printable: the values it quotes are a received cell's, written as found."""
    why = _why_stale(cached, wanted, precision, layer)
    return None if why is None else printable(why)


def _why_stale(cached: Any, wanted: dict[str, str], precision: str,
               layer: str) -> str | None:
    """:func:`_stale_results`, its values as found. A file whose score is no fraction, or
    that records its folders' files or its layer as no text, is stale (evaluated again),
    never a traceback: a received sweep's cell, or a damaged one."""
    if not isinstance(cached, dict) or "top1" not in cached:
        return "is unreadable"
    top1 = cached["top1"]
    if not (is_amount(top1) and top1 <= 1):
        return "holds no top-1 between 0 and 1"
    found = cached.get(EVALUATED_ON)
    if not isinstance(found, dict):
        return "does not record its evaluation folders"
    for split in ("train", "test"):
        if found.get(split) != wanted[split]:
            return f"was computed on another {split} set ({found.get(split)})"
        # (not recorded before 2026-12-03: such results are taken as they are)
        then, now = found.get(f"{split}_files"), wanted.get(f"{split}_files")
        if then is not None and then != now:
            count_then, count_now = str(then).split(":")[0], (now or "0:").split(":")[0]
            return (f"was computed when the {split} folder held {count_then} images ("
                    + (f"{count_now} now)" if count_then != count_now else
                       "as many now, some of them under other names)"))
    if found.get("transform") != wanted.get("transform"):
        return "was computed with an earlier evaluation transform"
    if found.get("protocol") != wanted.get("protocol"):  # (absent: lbfgs, or kNN)
        return (f"was computed by the {found.get('protocol') or 'lbfgs'} protocol, not "
                f"{wanted.get('protocol') or 'lbfgs'}")
    if [found.get(k) for k in ("epochs", "batch_size")] != \
            [wanted.get(k) for k in ("epochs", "batch_size")]:
        return (f"was computed in {found.get('epochs')} epochs at batch "
                f"{found.get('batch_size')}")
    source = cached.get("source") or {}
    if not isinstance(source, dict):
        return "does not record its layer"
    computed_on = source.get("layer", "h")
    if computed_on != layer:
        return f"was computed on {computed_on}, not {layer}"
    # 'auto' takes any: a sweep continued on another machine keeps its results.
    if precision != "auto" and cached.get("precision") != precision:
        return f"was computed in {cached.get('precision')}, not {precision}"
    return None
