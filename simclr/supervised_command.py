"""``simclr supervised``: the supervised baseline's command, run from its parsed
arguments. A new run (its recipe from ``--preset``, ``--config`` and the flags; the
same command again continues the run it started), a saved one continued with
``--resume``, or its recipe shown (``--print-config``); its ``--train`` and ``--test``
folders checked before any is decoded. The training itself is
:func:`simclr.supervised.run_supervised`; the flags are defined in
:mod:`simclr.arguments`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simclr import distributed as dist
from simclr.commands import kept_all_digits, report
from simclr.config import Config
from simclr.data import open_source
from simclr.errors import SimCLRError, is_amount, printable
from simclr.features import check_labeled_folders
from simclr.files import finite_json
from simclr.folders import list_folder
from simclr.launch import path_word
from simclr.results import check_caches_outside, check_not_inside, written_cache


def cmd_supervised(args: argparse.Namespace) -> int:
    """``simclr supervised``: a new run (``--train``, ``--out``) or a saved one continued
    (``--resume``); ``--print-config`` shows the recipe without reading or writing."""
    from simclr.cli import config_flags
    from simclr.launch import again
    from simclr.supervised import resume_config, run_supervised

    flags = config_flags(args)
    resume = None
    if args.resume:
        if _supervised_finished(args, flags):
            return 0
        cfg, resume = resume_config(args.resume, flags, finished=args.print_config)
    else:
        cfg = _new_supervised_config(args, flags)
        if not args.print_config:  # (a recipe shown: the new one, nothing continued)
            cfg, resume = _same_supervised_command(args, cfg, flags)
    if args.print_config:  # check a recipe before a long run: nothing is read or written
        _print_supervised_config(args, cfg, resume)
        return 0
    data = _supervised_data(args, cfg, resume)
    size = cfg.augment.size
    kept = kept_all_digits(data["train"], None if resume is None else resume.get("num_train"),
                           "supervised training")
    with dist.process_group():  # under torchrun: rank 0 decodes the folders, then the others
        train = dist.main_first(lambda: open_source(data["train"], cfg.data, train=True,
                                                    image_size=size, held_out=not kept))
        test = (dist.main_first(lambda: open_source(data["test"], cfg.data, train=False,
                                                    image_size=cfg.augment.evaluation_size(),
                                                    evaluation=True))
                if data.get("test") else None)
        result = run_supervised(cfg, train, test, cfg.out, data=data, resume=resume)
        return report(result, again(f"simclr supervised --resume {path_word(cfg.out)}",
                                    args.processes))


def _same_supervised_command(args: argparse.Namespace, cfg: Config, flags: dict[str, Any]
                             ) -> tuple[Config, dict[str, Any] | None]:
    """(config, checkpoint to continue) of a new supervised run's command: where its
    --out holds the unfinished supervised run this same command started (a requeued
    SLURM job, torchrun's --max-restarts: each runs the unchanged command line), that
    run's, as ``--resume`` continues it; else ``cfg`` and None (a new run, or the folder
    refused by check_new_run). Other settings or folders are refused, naming them."""
    from simclr.pretrain_command import other_settings, say_continuing
    from simclr.recipe import recipe_changes
    from simclr.resume_target import unfinished_step
    from simclr.rundir import RUN_LENGTH
    from simclr.settings import flag_of
    from simclr.supervised import RESUME_FLAGS, data_specs, resume_config

    run_dir = Path(cfg.out).expanduser()
    step = unfinished_step(run_dir, "supervised")
    if step is None:
        return cfg, None
    allowed = RESUME_FLAGS - set(RUN_LENGTH)  # (another length: another schedule)
    saved, ckpt = resume_config(run_dir, {p: v for p, v in flags.items() if p in allowed})
    changed = {f"--{flag_of(p)}": v for p, v in recipe_changes(saved, cfg, allowed).items()}
    given = data_specs(args.train, args.test)
    changed.update({f"--{name}": (ckpt["data"].get(name), given[name])
                    for name in ("train", "test") if ckpt["data"].get(name) != given[name]})
    if changed:
        raise other_settings("supervised", cfg.out, changed)
    say_continuing(cfg.out, step)
    return saved, ckpt


def _supervised_finished(args: argparse.Namespace, flags: dict[str, Any]) -> bool:
    """``--resume``'s flags checked; a run that finished already has its results printed
    (as a finished pretraining's): True, nothing to do."""
    from simclr.supervised import finished_result, resume_config

    extra = [f"--{n}" for n in ("train", "test", "out", "preset", "config")
             if getattr(args, n) is not None]
    if extra:
        raise SimCLRError(f"--resume continues the saved run; cannot give {extra[0]}")
    done = None if args.print_config else finished_result(args.resume)
    if done is None:
        return False
    if flags:  # (but a changed setting is refused, as for a run still going)
        resume_config(args.resume, flags, finished=True)
    if dist.launched_rank() == 0:  # (under --processes: said once)
        print(finite_json(done))
        # (a received run's supervised.json: its steps said only if a whole number)
        steps = done.get("steps")
        at = f" at step {steps}" if is_amount(steps, whole=True) else ""
        print(f"{printable(str(args.resume))} finished{at} already: nothing to do",
              file=sys.stderr)
    return True


def _new_supervised_config(args: argparse.Namespace, flags: dict[str, Any]) -> Config:
    """A new run's config: the preset, ``--config`` and the flags; ``--train`` and
    ``--test`` default to the folders a supervised run's config.yaml names."""
    from simclr.settings import build_config
    from simclr.supervised import config_folders

    folders = config_folders(args.config)  # a supervised run's config.yaml names
    for name in ("train", "test"):  # them: each flag given overrides its own
        if getattr(args, name) is None:
            setattr(args, name, folders.get(name))
    for name in ("train", "out")[:1 if args.print_config else 2]:  # (as pretrain's,
        if getattr(args, name) is None:  # a recipe shown needs no --out)
            raise SimCLRError(f"--{name} is required (or --resume RUN_DIR)")
    out = {} if args.out is None else {"out": args.out}
    # (--data-root, --download, --cache...: for --train/--test, not the unused --data)
    return build_config(args.preset, args.config, {**flags, **out},
                        reads=(args.train, args.test))


def _print_supervised_config(args: argparse.Namespace, cfg: Config,
                             resume: dict[str, Any] | None) -> None:
    """``--print-config``: the run's config.yaml as it would be saved, on stdout."""
    from simclr.config_file import yaml_text
    from simclr.supervised import data_specs, note_ignored_settings

    note_ignored_settings(args.config)  # (said on stderr: the YAML stays valid)
    data = resume["data"] if resume is not None else data_specs(args.train, args.test)
    shown = cfg.to_dict()
    if resume is None and args.out is None:  # no run folder yet: not the default's
        del shown["out"]
    print(yaml_text({**shown, "folders": dict(data)}), end="")  # as saved


def _supervised_data(args: argparse.Namespace, cfg: Config,
                     resume: dict[str, Any] | None) -> dict[str, str | None]:
    """The ``--train``/``--test`` specs of the run (a resumed one's saved ones), their
    folders checked before any is decoded: a continued run's images and classes as
    saved, a new run's folder new and its batch within its images."""
    from simclr.data import reading_draft
    from simclr.plan import check_batch_fits
    from simclr.supervised import check_new_run, check_same_data, data_specs, note_ignored_settings

    if resume is not None:
        data = resume["data"]
        listing = list_folder(data["train"], train=True)
        if listing is not None:  # images gone or classes changed: said before decoding
            check_same_data(resume, listing, listed=True)
        return data
    check_not_inside(cfg.out, {"--train": args.train, "--test": args.test}, "run")
    # (a config file's cache folder too, which the flags' check never saw)
    check_caches_outside(written_cache(cfg), {"--train": args.train, "--test": args.test})
    check_new_run(cfg.out)
    note_ignored_settings(args.config)
    # (each JPEG decoded at the size the run decodes it at: the limit is on what is
    # decoded, and --test is decoded only once the training is over)
    def draft(files: Any, train: bool) -> int:  # (as cmd_supervised opens them)
        size = cfg.augment.size if train else cfg.augment.evaluation_size()
        return reading_draft(files, size, cfg.data, evaluation=not train)

    listings = check_labeled_folders(args.train, args.test, ("--train", "--test"),
                                     train_split=True, max_pixels=cfg.data.max_pixels,
                                     draft=draft)
    listing = listings.train
    if listing is not None:  # before the folder is decoded (run_supervised checks again)
        check_batch_fits(cfg.batch_size, len(listing.paths), listing, cfg.data.max_pixels)
    return data_specs(args.train, args.test)
