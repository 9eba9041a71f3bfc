"""``simclr pretrain``: its flags (one per setting of the config) and the command.

The run itself is :func:`simclr.train.pretrain`'s; here the settings are built from a
preset, a YAML file and flags (or a run's saved ones, for ``--resume``), and the run's
summary is reported: what stopped it and how to go on, or what to run next.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from simclr.cli import OneFile, add_config_flags, config_flags
from simclr.config import RESUME_SETTINGS, Config
from simclr.config_file import names_no_data, yaml_text
from simclr.errors import SimCLRError, is_amount, printable
from simclr.presets import PRESETS
from simclr.recipe import apply_resume_flags, check_same_recipe, recipe_changes
from simclr.settings import absolute_paths, build_config, flag_of


def add_pretrain_command(sub: argparse._SubParsersAction) -> None:
    """``simclr pretrain``: every setting of the config as a flag."""
    from simclr import launch

    p = sub.add_parser(
        "pretrain", help="SimCLR pretraining on a folder of images",
        description="Most runs need only: --preset (imagenette-cpu for photos on a CPU, "
                    "cifar10-cpu for small images, imagenet / cifar10 for the paper's "
                    "recipes), --data FOLDER, --out RUN, a length (--time-budget 20m or "
                    "--epochs), perhaps --image-size, --arch/--width and --batch-size; "
                    "--resume RUN continues an interrupted run. Every other setting of "
                    "the paper follows, by section; the defaults shown are those without "
                    "--preset or --config, with --data (without it: the digits demo, whose "
                    "recipe is --preset digits; --print-config shows a run's resolved "
                    "ones).")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a recipe of the paper (or ours)")
    p.add_argument("--config", action=OneFile, help="YAML file of settings (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as YAML (a valid --config) and exit")
    # a sweep's cell run by --processes: the sweep says how to go on, not the cell
    p.add_argument("--sweep-cell", action="store_true", help=argparse.SUPPRESS)
    add_config_flags(p)
    launch.add_flag(p)
    p.set_defaults(func=cmd_pretrain)


PAPER_SCALE = ("the paper's ImageNet recipe (ResNet-50, 224 px, batch 4096, 100 epochs: "
               "days on a CPU); for a CPU or a small folder start from --preset "
               "imagenette-cpu (photos) or --preset cifar10-cpu (small images)")
# Any of these on the command line: the user chose the recipe's scale, not the default.
RECIPE_FLAGS = {"model.arch", "model.width", "augment.size", "batch_size", "epochs",
                "max_steps", "time_budget"}


def cmd_pretrain(args: argparse.Namespace) -> int:
    from simclr import train
    from simclr.resume import load_resume_config, moved_folders
    from simclr.supervised import check_not_supervised_config

    flags = config_flags(args)
    notes: list[str] = []  # said once the run's inputs are checked
    if args.resume:
        cfg = load_resume_config(args.resume, {})
        allowed = RESUME_SETTINGS | moved_folders(cfg, flags, args.resume)
        if args.preset or args.config:  # the first command again: its recipe, or refused
            preset = args.preset or ("digits" if names_no_data(args.config, flags) else None)
            check_same_recipe(cfg, build_config(preset, args.config, flags), allowed, flags)
        apply_resume_flags(cfg, flags, allowed)
        absolute_paths(cfg)  # (a moved folder's new place)
    else:
        preset = args.preset
        if preset is None and names_no_data(args.config, flags):
            preset = "digits"  # the one-minute offline demo on scikit-learn's digits
        elif preset is None and not args.config and not RECIPE_FLAGS & set(flags):
            notes.append(f"note: no --preset, so {PAPER_SCALE}")
        cfg = build_config(preset, args.config, flags)
        check_not_supervised_config(args.config, cfg.data.path)
        if not args.print_config:  # (a recipe shown: the new one, nothing continued)
            continued = same_command_again(cfg, flags)
            if continued is not None:
                cfg, args.resume = continued, continued.out
    if args.print_config:  # check a recipe before a long run: nothing is read or written
        print(yaml_text(cfg.to_dict()), end="")
        return 0
    try:
        summary = train.pretrain(cfg, resume=bool(args.resume), notes=notes)
    except SimCLRError as exc:  # a batch or memory refusal: the recipe is the likely cause
        if notes and "--batch-size" in str(exc):
            raise SimCLRError(f"{exc} (no --preset was given: {PAPER_SCALE})") from None
        raise
    if summary.get("rank", 0) != 0:  # rank 0 reports for the whole run
        return train.EXIT_PREEMPTED if summary["status"] == "preempted" else 0
    print_summary(summary)
    if args.sweep_cell:  # run_sweep reads the summary and tells what comes next
        return train.EXIT_PREEMPTED if summary["status"] == "preempted" else 0
    if summary["status"] == "preempted":
        from simclr.launch import continue_run
        from simclr.runtime import stopped_by

        print(f"{stopped_by(summary['signal'])}; continue with: {continue_run(cfg.out)}",
              file=sys.stderr)
        return train.EXIT_PREEMPTED
    if summary.get("signal"):  # stopped at its last step: finished, but asked to stop now
        from simclr.runtime import stopped_by

        print(f"{stopped_by(summary['signal'])} at the last step: the run has finished",
              file=sys.stderr)
        return 0
    if cfg.data.path is None:
        from simclr.commands import digits_knn_report

        print(digits_knn_report(summary["checkpoint"], cfg))
    else:
        from simclr.launch import shell_quote

        run = shell_quote(str(cfg.out))
        print(f"next: `simclr embed --checkpoint {run} --data DIR --out features.npz`, "
              f"`simclr export --checkpoint {run} --out encoder.pt2` or `simclr linear-eval "
              f"--checkpoint {run} --train LABELED --test LABELED_TEST`")
    return 0


def same_command_again(cfg: Config, flags: dict[str, Any]) -> Config | None:
    """The saved config of the unfinished pretraining in ``cfg.out`` where the command
    that started it is run again (a requeued SLURM job, torchrun's --max-restarts, a
    retry loop: each runs the unchanged command line), its flags applied as
    ``--resume``'s; None where the folder holds no such run (a new one starts, or
    :func:`~simclr.rundir.check_run_dir` refuses the folder). Settings other than those
    ``--resume`` may change are refused, naming them: that is another run."""
    from simclr.resume import load_resume_config, moved_folders
    from simclr.resume_target import unfinished_step
    from simclr.rundir import RUN_LENGTH

    run_dir = Path(cfg.out).expanduser()
    step = unfinished_step(run_dir, "pretrain")
    if step is None:
        return None
    saved = load_resume_config(run_dir, {})
    allowed = (RESUME_SETTINGS - set(RUN_LENGTH)) | moved_folders(saved, flags, run_dir)
    changed = recipe_changes(saved, cfg, allowed)  # (the length too: another schedule)
    if changed:
        raise other_settings("pretrain", cfg.out,
                             {f"--{flag_of(p)}": v for p, v in changed.items()})
    apply_resume_flags(saved, {p: v for p, v in flags.items() if p in allowed}, allowed)
    absolute_paths(saved)  # (a moved folder's new place)
    say_continuing(cfg.out, step)
    return saved


def other_settings(command: str, out: str, changed: dict[str, tuple[Any, Any]]
                   ) -> SimCLRError:
    """The refusal of a command run again on an unfinished run in ``out`` that it did
    not start: each flag of ``changed`` ({"--flag": (saved, now)}) named, and both ways
    on (another --out, or ``--resume`` with the saved settings)."""
    from simclr.launch import path_word

    said = "; ".join(f"{flag} {setting_text(before)} saved, {setting_text(now)} now"
                     for flag, (before, now) in changed.items())
    return SimCLRError(f"{out} holds an unfinished run of other settings ({said}); choose "
                       "another --out for a new run, or continue this one with its saved "
                       f"settings: `simclr {command} --resume {path_word(out)}`")


def say_continuing(out: str, step: int) -> None:
    """The line of a command run again that continues its unfinished run at ``step``
    (once: rank 0's, under --processes or torchrun)."""
    from simclr import distributed as dist

    if dist.launched_rank() == 0:
        print(f"continuing the unfinished run in {out} at step {step} (the same command: "
              "--resume)", flush=True)


def setting_text(value: Any) -> str:
    """A setting's value in a message: 2 for an epochs of 2.0, "not set" for None, a
    switch as YAML and the flags spell it (true, false)."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else "not set" if value is None \
        else str(value)


def print_summary(summary: dict[str, Any]) -> None:
    """The closing lines of a run on stdout: how it ended, where its checkpoint is and
    the images it skipped. A resumed finished run's summary is its summary.json, which
    a received run wrote: a value not of the type simclr writes there is left out, as
    missing (an "epochs": "abc" ended in a ValueError formatting it), and the names,
    print() leaving them as they are, are escaped (a file named with an escape set the
    terminal's title)."""
    steps = _amount(summary, "steps", whole=True)
    epochs, elapsed = _amount(summary, "epochs"), _amount(summary, "elapsed_s")
    checkpoint = summary.get("checkpoint") if isinstance(summary.get("checkpoint"), str) \
        else None
    said = [f"{steps} step{'' if steps == 1 else 's'}"] if steps is not None else []
    said += [f"({epochs:.2f} epochs)"] if epochs is not None else []
    said += [f"in {elapsed:.0f} s"] if elapsed is not None else []
    print(printable(str(summary.get("status"))) + (": " + " ".join(said) if said else "")
          + (f"; checkpoint {printable(checkpoint)}" if checkpoint is not None else ""))
    if _amount(summary, "bad_steps", whole=True):
        print(f"skipped {summary['bad_steps']} step(s) whose loss or gradients were not "
              "finite (--nan-policy skip; left out of their metrics.jsonl windows' means, "
              "each window's window_skipped counts them)")
    skipped = _skipped_images(summary)
    if skipped:
        print(f"skipped {len(skipped)} unreadable images:")
        for path, reason in skipped[:20]:
            print(f"  {printable(path)}: {printable(reason)}")
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more (see summary.json)")


def _amount(summary: dict[str, Any], key: str, whole: bool = False) -> Any:
    """``summary[key]`` where it is a count or measure as simclr writes it
    (:func:`~simclr.errors.is_amount`), else None: missing (a received file's)."""
    value = summary.get(key)
    return value if is_amount(value, whole) else None


def _skipped_images(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The (path, reason) pairs of ``summary``'s skipped_images, each two strings as
    simclr writes them (a session's own may name a Path); any other entry (an edited or
    damaged file's) is left out."""
    found = summary.get("skipped_images")
    return [(str(entry[0]), entry[1]) for entry in (found if isinstance(found, list) else [])
            if isinstance(entry, (list, tuple)) and len(entry) == 2
            and isinstance(entry[0], (str, os.PathLike)) and isinstance(entry[1], str)]
