"""The commands around a pretrained encoder: ``embed``, ``predict`` and ``neighbors``
apply it (or a classifier) to a folder; ``info`` and ``cache`` say what simclr wrote.

Each has a function adding it to ``simclr``'s parser (:func:`simclr.cli.build_parser`)
and the function it runs; the work itself is in :mod:`simclr.inference`,
:mod:`simclr.neighbors`, :mod:`simclr.info` (:mod:`simclr.info_text`) and
:mod:`simclr.cache_entries`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simclr.arguments import (
    CACHE_DIR,
    ENCODER_SOURCE,
    RuntimeFlags,
    add_image_size_flag,
    count_at_least,
    days,
    folder_name,
    fraction,
)
from simclr.errors import SimCLRError, printable
from simclr.files import finite_json


def add_commands(sub: argparse._SubParsersAction, add_runtime_flags: RuntimeFlags) -> None:
    """``embed``, ``predict``, ``neighbors``, ``cache`` and ``info``, in that order."""
    _add_embed_command(sub, add_runtime_flags)
    _add_predict_command(sub, add_runtime_flags)
    _add_neighbors_command(sub)
    _add_cache_command(sub)
    _add_info_command(sub)


def _add_embed_command(sub: argparse._SubParsersAction, add_runtime_flags: RuntimeFlags) -> None:
    """``simclr embed``."""
    from simclr.pretrained import LAYERS_HELP

    p = sub.add_parser("embed", help="representations (h or --layer) of each image, as .npz")
    p.add_argument("--checkpoint", required=True, help=ENCODER_SOURCE)
    p.add_argument("--data", required=True, help="image folder (ImageFolder or flat)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--layer", default="h", help=LAYERS_HELP)
    add_image_size_flag(p)
    add_runtime_flags(p)
    p.set_defaults(func=cmd_embed)


def _add_predict_command(sub: argparse._SubParsersAction,
                         add_runtime_flags: RuntimeFlags) -> None:
    """``simclr predict``."""

    p = sub.add_parser("predict", help="classify each image of a folder (a linear-eval, "
                                       "finetune or supervised checkpoint), as CSV")
    p.add_argument("--checkpoint", required=True, help="a classifier checkpoint or its run")
    p.add_argument("--data", required=True, help="image folder (ImageFolder or flat)")
    p.add_argument("--out", required=True, help="output .csv file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--top-k", type=count_at_least(1), default=None,
                   help="classes listed per image (default: 5, or all of fewer)")
    p.add_argument("--min-probability", type=fraction, default=None, metavar="P",
                   help="leave the prediction empty where the top class's probability is "
                        "below P (an image of none of the classes, or a doubtful one)")
    add_runtime_flags(p)
    p.set_defaults(func=cmd_predict)


def _add_neighbors_command(sub: argparse._SubParsersAction) -> None:
    """``simclr neighbors``."""

    p = sub.add_parser("neighbors", help="each image's most similar images, or the near-"
                                         "duplicate pairs, from `simclr embed` features (CSV)")
    p.add_argument("--features", required=True, help="an .npz written by simclr embed")
    p.add_argument("--out", required=True, help="output .csv file")
    p.add_argument("--k", type=count_at_least(1), default=None,
                   help="neighbours listed per image (default: 5)")
    p.add_argument("--queries", help="an .npz of other images to find neighbours for "
                                     "(default: every image of --features, among the others)")
    p.add_argument("--duplicates", type=float, metavar="SIMILARITY",
                   help="list instead the pairs at cosine similarity >= this (e.g. 0.95)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_neighbors)


def _add_cache_command(sub: argparse._SubParsersAction) -> None:
    """``simclr cache``."""
    p = sub.add_parser("cache", help="list the decoded caches; --clean removes stale ones")
    p.add_argument("--cache-dir", type=folder_name, default=CACHE_DIR)
    p.add_argument("--clean", action="store_true",
                   help="remove the caches of folders that are gone, those a newer cache "
                        "of their folder replaced or an earlier simclr wrote, and those not "
                        "used for --unused-days")
    p.add_argument("--unused-days", type=days, default=None,
                   help="with --clean: remove caches no run used for this many days (30)")
    p.add_argument("--clear", action="store_true", help="remove every cache")
    p.set_defaults(func=cmd_cache)


def _add_info_command(sub: argparse._SubParsersAction) -> None:
    """``simclr info``."""
    p = sub.add_parser("info", help="what a run folder or checkpoint holds: status, "
                                    "progress, encoder, recipe, results")
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("--json", action="store_true", help="the same facts as JSON")
    p.set_defaults(func=cmd_info)


def cmd_embed(args: argparse.Namespace) -> int:
    from simclr.inference import embed_folder

    out = Path(args.out)
    if out.suffix.lower() != ".npz":  # (.NPZ too, as export's and neighbors' outputs)
        raise SimCLRError(f"--out {out}: the output must be a .npz file")
    info = embed_folder(args.checkpoint, args.data, out, batch_size=args.batch_size,
                        device=args.device, precision=args.precision, workers=args.workers,
                        cache_dir=args.cache_dir, layer=args.layer, image_size=args.image_size,
                        overwrite=args.overwrite, max_pixels=args.max_pixels,
                        channels_last=args.channels_last, decoder=args.decoder)
    print(finite_json(info))
    return 0


# What a script may try for "write it to the standard output" (`--out -`)
STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def check_csv_out(out: str) -> None:
    """``--out`` of predict and neighbors: a .csv file (the table is written atomically
    beside its JSON summary on stdout, so it has no stream form)."""
    if out in STDOUT_NAMES:
        raise SimCLRError(f"--out {out}: the table is written to a file, not the standard "
                          "output (which has its JSON summary); give a .csv path")
    if Path(out).suffix.lower() != ".csv":
        raise SimCLRError(f"--out {out}: the output must be a .csv file")


def cmd_predict(args: argparse.Namespace) -> int:
    from simclr.inference import predict_folder

    check_csv_out(args.out)
    result = predict_folder(
        args.checkpoint, args.data, args.out, top_k=args.top_k, batch_size=args.batch_size,
        device=args.device, precision=args.precision, workers=args.workers,
        cache_dir=args.cache_dir, min_probability=args.min_probability,
        overwrite=args.overwrite, max_pixels=args.max_pixels, channels_last=args.channels_last,
        decoder=args.decoder)
    if "top1" in result:  # a labeled folder: the accuracy in words too (stderr, as knn's)
        top5 = f", top-5 {100 * result['top5']:.2f}%" if result["top5"] is not None else ""
        print(f"{args.out}: {result['images']} images predicted; top-1 "
              f"{100 * result['top1']:.2f}%{top5} over the {result['labeled']} in classes "
              f"the classifier knows{_unscored(result)}", file=sys.stderr)
    elif result.get("unknown_class"):  # a misspelt or another task's class folder
        print(f"{args.out}: {result['images']} images predicted; no accuracy: none of the "
              f"folder's class names is one of the classifier's {result['classes']} "
              f"(`simclr info {args.checkpoint}` lists them){_unscored(result)}",
              file=sys.stderr)
    if args.min_probability is not None:
        top1 = result.get("confident_top1")
        among = "" if top1 is None else f" (top-1 {100 * top1:.2f}% of those labeled)"
        print(f"{args.out}: {result['confident']} of {result['images']} images predicted "
              f"with probability >= {args.min_probability!r}{among}; the others' "
              "prediction is left empty", file=sys.stderr)
    print(finite_json(result))
    return 0


def _unscored(result: dict[str, Any]) -> str:
    """predict's images without a top-1 to count: in a class the classifier does not
    know, or beside the class folders (no label)."""
    parts = [f"{result[key]} {what}" for key, what in (
        ("unknown_class", "in other classes"), ("unlabeled", "beside the class folders"))
        if result.get(key)]
    return f" ({' and '.join(parts)}, not scored)" if parts else ""


def cmd_info(args: argparse.Namespace) -> int:
    from simclr.info import describe
    from simclr.info_text import render

    facts = describe(args.target)
    print(finite_json(facts, indent=1) if args.json
          else render(facts))
    return 0


def cmd_neighbors(args: argparse.Namespace) -> int:
    from simclr.neighbors import check_threshold, write_duplicates, write_neighbors
    from simclr.results import output_file

    check_csv_out(args.out)
    if args.duplicates is not None:
        check_threshold(args.duplicates)
        for flag in ("queries", "k"):  # a flag that would be ignored is refused
            if getattr(args, flag) is not None:
                raise SimCLRError(f"--duplicates looks for pairs within --features; drop --{flag}")
    output_file(args.out, args.overwrite)
    if args.duplicates is not None:
        result = write_duplicates(args.features, args.out, args.duplicates, args.overwrite)
        print(f"{args.out}: {result['pairs']} pairs at similarity >= {args.duplicates:g}; "
              f"{result['images_with_a_duplicate']} of {result['images']} images have a "
              "near-duplicate", file=sys.stderr)
    else:
        result = write_neighbors(args.features, args.out, args.k, args.queries,
                                 args.overwrite)
    print(finite_json(result))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """List the decoded caches; ``--clean`` removes those of folders that are gone, those
    a newer cache of their folder replaced or an earlier simclr wrote (never read again),
    and those no run used for ``--unused-days``; ``--clear`` removes them all."""
    import time

    from simclr.cache_entries import cache_entries, cache_folder, superseded

    unused_days = _check_cache_flags(args)
    entries = cache_entries(args.cache_dir)
    replaced = superseded(entries)
    now = time.time()
    removed, removable = _list_caches(args, entries, replaced, now, unused_days)
    freed, would_free = _list_build_leftovers(args)
    removed, removable = removed + freed, removable + would_free
    if removed:  # the summary is of what is left (it counted the caches just removed)
        entries = cache_entries(args.cache_dir)
    total = sum(e.nbytes for e in entries)
    print(f"{cache_folder(args.cache_dir)}: {len(entries)} caches, "
          f"{total / 2**20:.1f} MiB" + (f"; {removed / 2**20:.1f} MiB freed" if removed else "")
          + (f"; --clean would free {removable / 2**20:.1f} MiB" if removable else ""))
    return 0


def _check_cache_flags(args: argparse.Namespace) -> float:
    """``simclr cache``'s flags and ``--cache-dir`` checked before anything is read or
    removed; returns the days unused after which --clean removes a cache."""
    if args.clean and args.clear:
        raise SimCLRError("give one of --clean (stale caches) and --clear (every cache)")
    if args.unused_days is not None and not args.clean:
        raise SimCLRError("--unused-days is what --clean goes by; add --clean")
    from simclr.cache_entries import cache_folder, is_default_cache_dir

    unused_days = 30.0 if args.unused_days is None else args.unused_days
    folder = cache_folder(args.cache_dir)  # (the default: under $XDG_CACHE_HOME if set)
    if folder.exists() and not folder.is_dir():
        raise SimCLRError(f"--cache-dir {args.cache_dir} is a file, not a folder")
    if not folder.exists() and not is_default_cache_dir(args.cache_dir):  # (no cache yet)
        raise SimCLRError(f"--cache-dir {args.cache_dir}: no such folder")
    return unused_days


def _stale(e: Any, args: argparse.Namespace, replaced: set[Path], now: float,
           unused_days: float) -> str | None:
    """Why --clean (or --clear) removes the cache ``e``; None: it is kept. ``replaced``:
    the .npy files a newer cache of their folder replaced (cache_entries.superseded)."""
    from simclr.cache_entries import outdated

    if args.clear:
        return "cleared"
    if e.orphan:  # (a build renames its .npy into place first: no build is writing it)
        return "its .npy is gone"
    if e.root == "?":  # the sidecar comes last: a build may be finishing
        return "a build that never finished" if now - e.last_used > 3600 else None
    if not Path(e.root).is_dir():
        return "its folder is gone"
    if outdated(e):  # (never read again, nor replaced by a newer one)
        return "written by an earlier simclr, never read again"
    if e.npy in replaced:
        return "replaced by a newer cache of its folder"
    if now - e.last_used > unused_days * 86400:
        return f"unused for {(now - e.last_used) / 86400:.0f} days"
    return None


def _list_caches(args: argparse.Namespace, entries: list[Any], replaced: set[Path], now: float,
                 unused_days: float) -> tuple[int, int]:
    """One line per cache (removing the stale ones under --clean or --clear); returns
    (bytes removed, bytes --clean would remove)."""
    import time

    from simclr.cache_entries import describe_entry, remove_entry

    removed = removable = 0
    for e in entries:
        why = _stale(e, args, replaced, now, unused_days)
        if why is not None and (args.clean or args.clear):
            remove_entry(e)
            removed += e.nbytes
            note = f"  (removed: {why})"
        else:  # a listing marks what --clean would remove, and why (e.g. its folder is gone)
            removable += e.nbytes if why else 0
            note = f"  ({why}: --clean removes it)" if why else ""
        day = time.strftime("%Y-%m-%d", time.localtime(e.last_used))
        # How it was stored and its file's name: caches of one folder told apart
        print(f"{e.nbytes / 2**20:9.1f} MiB  {e.images:7d} x {e.side:3d} px  "
              f"{printable(describe_entry(e))}  used {day}  {printable(e.root)}  "
              f"{(e.meta if e.orphan else e.npy).name}{note}")
    return removed, removable


def _list_build_leftovers(args: argparse.Namespace) -> tuple[int, int]:
    """One line per file a build killed outright left (removed under --clean or
    --clear); returns (bytes removed, bytes --clean would remove)."""
    from simclr.cache_entries import LEFTOVER_S, build_leftovers, remove_leftover

    removed = removable = 0
    for path, size in build_leftovers(args.cache_dir, after_s=0.0):
        if not _untouched_for(path, LEFTOVER_S):  # (another machine may be writing it)
            print(f"{size / 2**20:9.1f} MiB  {path.name}  (a killed build's file, unless "
                  "another machine sharing this folder writes it: --clean removes it an "
                  "hour untouched; delete it now if none does)")
            continue
        if args.clean or args.clear:
            remove_leftover(path)
            removed += size
        else:
            removable += size
        print(f"{size / 2**20:9.1f} MiB  {path.name}  (a killed build's file: "
              f"{'removed' if args.clean or args.clear else '--clean removes it'})")
    return removed, removable


def _untouched_for(path: Path, seconds: float) -> bool:
    """Whether the file ``path`` was last written ``seconds`` ago or more (gone: True)."""
    import time

    try:
        return time.time() - path.stat().st_mtime >= seconds
    except OSError:
        return True
