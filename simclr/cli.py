"""The `simclr` command: pretraining, the evaluation protocols, export and sweeps.

Every user error ends with one line on stderr and exit status 2 (argparse errors
included); SIGTERM/SIGINT (and SIGHUP, SIGUSR1) during pretraining writes a checkpoint
and exits with status 75 (``train.EXIT_PREEMPTED``) so a scheduler can requeue the
job. Here: the parser, the flags every setting gets, and ``main`` (the checks before
any work, then the command run); how it ends (exit statuses, signals, error lines) is
:mod:`simclr.exit_status`, where its log messages go :mod:`simclr.logs`. The commands are in
:mod:`simclr.pretrain_command`, :mod:`simclr.use_commands` (embed, predict, neighbors,
cache, info), :mod:`simclr.arguments` with :mod:`simclr.commands` (the evaluations,
supervised, export) and :mod:`simclr.sweep_command`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Set as AbstractSet
from typing import Any

from simclr.config import (
    DECODERS,
    MAX_THREADS,
    MAX_WORKERS,
    PRECISIONS,
    SECTIONS,
    DataConfig,
    default_of,
    section_of,
    setting_help,
    type_of,
)
from simclr.config_file import read_config_file
from simclr.errors import (
    SimCLRError,
    printable,
    unusable_path,
)
from simclr.exit_status import (
    EXIT_STATUSES,
    EXIT_USER_ERROR,
    _after_the_command,
    _command_done,
    _crash_status,
    _interrupted,
    _out_of_memory,
    _reader_gone,
    _stop_on_sigterm,
    _user_error,
)
from simclr.interrupts import (
    deliver_dropped_interruptions,
)
from simclr.logs import _set_up_logging
from simclr.settings import all_flags, field_kind, typed_pair

# The flags naming a file or folder, checked before any work (_check_before_work), by
# their places in the parsed arguments (pretraining's settings: "cfg:" and their key).
PATH_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "out", "data", "train", "test", "checkpoint", "resume", "eval_train", "eval_test")}
PATH_FLAGS.update({"cfg:out": "--out", "cfg:data.path": "--data"})


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless the text already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text, default = action.help or "", action.default
        if (action.option_strings and "default" not in text and default is not None
                and default is not argparse.SUPPRESS and not isinstance(default, bool)):
            text = f"{text} (default: {shown_default(default)})"
        return text


def shown_default(value: Any) -> str:
    """A default as ``--help`` shows it (a pair as typed, A,B), escaped for argparse."""
    if isinstance(value, tuple):
        return typed_pair(value)
    return '""' if value == "" else str(value).replace("%", "%%")


# Help of the flags several commands share (a command's own text takes precedence).
SHARED_HELP = {
    "--checkpoint": "a checkpoint file or its run folder",
    "--batch-size": "images per forward pass",
    "--precision": "auto | fp32 | bf16 | fp16",
    "--channels-last": "images and weights in the NHWC memory layout, faster convolutions "
                       "(default: on; --no-channels-last: NCHW)",
    "--cache-dir": "where decoded caches are kept",
    "--seed": "every random draw of the command derives from it",
    "--k": "neighbours that vote (at most the training set's size)",
    "--temperature": "T of the vote's weights exp(similarity / T)",
    "--protocol": "lbfgs (features once, the paper's transfer protocol) | sgd (crop + flip "
                  "each step, its ImageNet protocol)",
    "--max-iter": "L-BFGS iterations",
    "--momentum": "of Nesterov SGD",
    "--crop-scale": "area range of the random crop",
    "--label-fraction": "F: F x images / classes (halves up) labeled images from every class "
                        "(the paper: 0.01, 0.1; its exact ImageNet lists: --subset)",
    "--labels-per-class": "labeled images per class",
    "--schedule": "learning rate over the steps: cosine | constant",
    "--task": "gray | rotation | noise | sobel | all",
    "--preset": "a recipe of the paper (or ours)",
    "--config": "YAML file of settings (flags override it)",
    "--eval": "how each cell's encoder is scored: knn | linear | none",
    "--eval-device": "device of the evaluations",
    "--eval-precision": "precision of the evaluations",
}


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage block) as promised to users, and no
    abbreviated flags: with hundreds of settings, ``--data`` must not quietly mean
    ``--data-root`` where a command has no ``--data``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # (an unknown argument as typed: a file name a shell's * gave, say)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {printable(message)}\n")


class OneFile(argparse.Action):
    """A file flag (``--config``) given at most once: a second file silently replaced
    the first (``--config a.yaml --config b.yaml`` read b.yaml alone), so it is refused;
    the same file twice is one file."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None and before != values:
            parser.error(f"{option_string} given twice ({before}, {values}): one file is "
                         "read; put the settings in one file (flags override it)")
        setattr(namespace, self.dest, values)


def add_config_flags(parser: argparse.ArgumentParser, exclude: AbstractSet[str] = frozenset(),
                     described: dict[str, str] | None = None) -> None:
    """A flag for every setting (settings.all_flags), grouped by config section and described
    by the config's own comments, or by ``described`` (dotted setting -> text) where a
    command uses a setting otherwise; only flags given on the line override."""
    docs = {**setting_help(), **(described or {})}
    groups = {section: parser.add_argument_group(_group_title(section, cls))
              for section, cls in SECTIONS.items()}
    for flag, path in all_flags().items():
        if flag in exclude:
            continue
        kind, optional = field_kind(type_of(path))
        dest = "cfg:" + path
        default = shown_default(default_of(path))
        if kind == "bool" and optional and default_of(path) is None:
            default = "auto"  # (an optional switch's None: its automatic choice)
        doc = docs.get(path, "").replace("%", "%%")  # argparse formats help with %
        if path == "time_budget":
            doc += ": seconds, or e.g. 90s, 20m, 1.5h, 1h30m"
        text = f"{doc} (default: {default})" if doc else f"default: {default}"
        group = groups[section_of(path)]
        if kind == "bool" and optional:  # (None: automatic) --flag [auto], --no-flag
            group.add_argument(f"--{flag}", dest=dest, nargs="?", const=True, metavar="auto",
                               default=argparse.SUPPRESS,
                               help=f"{text}; `--{flag} auto` over a --config's value")
            group.add_argument(f"--no-{flag}", dest=dest, action="store_const", const=False,
                               default=argparse.SUPPRESS, help="off, not automatic")
        elif kind == "bool":
            group.add_argument(f"--{flag}", dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        else:
            metavar = "A,B" if kind == "tuple" else kind.upper()
            if path == "time_budget":
                metavar = "DURATION"
            group.add_argument(f"--{flag}", dest=dest, default=argparse.SUPPRESS,
                               metavar=metavar, help=text)


def _group_title(section: str, cls: type) -> str:
    """``--help`` heading of a config section: its name and its class's first doc line."""
    summary = (cls.__doc__ or "").strip().splitlines()[0].rstrip(".").replace("``", "")
    return f"{section or 'run'} settings: {summary}"


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}


def build_parser() -> argparse.ArgumentParser:
    """``simclr`` and its subcommands, in the order ``--help`` lists them."""
    parser = Parser(prog="simclr", description=__doc__.splitlines()[0], epilog=EXIT_STATUSES)
    _version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    from simclr import arguments, pretrain_command, sweep_command, use_commands

    pretrain_command.add_pretrain_command(sub)
    use_commands.add_commands(sub, add_runtime_flags)
    arguments.add_evaluation_commands(sub, add_runtime_flags)
    sweep_command.add_sweep_command(sub)
    for command in sub.choices.values():  # the shared flags' help, where none was given
        for action in command._actions:
            if action.help is None and action.option_strings:
                action.help = SHARED_HELP.get(action.option_strings[0])
    return parser


def _version_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` with ``--version`` (prints ``simclr X.Y.Z`` and exits 0)."""
    from simclr import __version__

    parser.add_argument("--version", action="version", version=f"simclr {__version__}")
    return parser


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    from simclr.arguments import CACHE_DIR, folder_name
    from simclr.arguments import count_at_least as _count
    from simclr.launch import processes_flag

    p.add_argument("--batch-size", type=_count(1), default=256)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--workers", type=_count(0, MAX_WORKERS), default=None,
                   help="decoding processes (default: each process's share of the usable "
                        "CPU cores, at most 8)")
    p.add_argument("--threads", type=_count(1, MAX_THREADS), default=None,
                   help="CPU threads for the model (default: torch's choice)")
    p.add_argument("--cache-dir", type=folder_name, default=CACHE_DIR)
    p.add_argument("--max-pixels", type=_count(1), default=DataConfig.max_pixels,
                   help="larger images are skipped unread (a decompression-bomb guard)")
    p.add_argument("--decoder", default=DataConfig.decoder, choices=DECODERS,
                   help="uncached JPEGs: auto (device on CUDA, else pil) | pil | device")
    # Taken, unsaid, where a command runs as one process, so that `--processes 2` gets
    # check_processes' message, not argparse's "unrecognized arguments" (the commands
    # that train across processes replace it: launch.add_flag).
    p.add_argument("--processes", type=processes_flag, default=None, help=argparse.SUPPRESS)


def launch_here(args: argparse.Namespace) -> bool:
    """Whether this process is to launch the run's processes (``--processes N`` > 1,
    not itself one of them); the request is checked first, as a launched run's would be."""
    from simclr.distributed import launched_processes

    wanted = getattr(args, "processes", None)
    launched = launched_processes()
    if wanted is not None and launched > 1 and wanted != launched:
        raise SimCLRError(f"--processes {wanted}, but the launcher (torchrun) started "
                          f"{launched}: give one of the two")
    if wanted is None or wanted <= 1 or launched > 1 or getattr(args, "print_config", False):
        return False
    check_processes(args, wanted)
    return True


def _launch_device(args: argparse.Namespace) -> str:
    """The run's device, for the launcher's check of one GPU per process: the flag, else
    the resumed run's or the --config file's setting (a run a file puts on the CPU is
    launched on a GPU machine too). A file that cannot be read: each process says why."""
    from simclr.checkpoint import run_dir_of
    from simclr.config_file import load_yaml

    flag = getattr(args, "device", None) or vars(args).get("cfg:device")
    if flag:
        return str(flag)
    resume = getattr(args, "resume", None)
    for path in (run_dir_of(resume) / "config.yaml" if resume else None,
                 getattr(args, "config", None)):
        try:
            value = load_yaml(path).get("device") if path else None
        except SimCLRError:
            continue
        if isinstance(value, str) and value:
            return value
    return "auto"


def check_processes(args: argparse.Namespace, processes: int | None = None) -> None:
    """Pretraining, the supervised baseline, fine-tuning and the SGD linear protocol
    train across processes (sharded batches, global BN). Under torchrun any other
    command would run once per process, each writing the same files: refused before
    any work, as is a --batch-size the processes cannot share equally. ``processes``:
    as many as launched by default."""
    from simclr.distributed import check_divisible, launched_processes

    processes = launched_processes() if processes is None else processes
    if processes <= 1:
        return
    trains = args.command in ("pretrain", "supervised", "finetune") or (
        args.command == "linear-eval" and args.protocol == "sgd")
    if not trains:
        what = " --protocol lbfgs" if args.command == "linear-eval" else ""
        raise SimCLRError(f"`simclr {args.command}{what}` runs as one process, not "
                          f"{processes}; only pretrain, supervised, finetune and linear-eval "
                          "--protocol sgd train across processes")
    batch = getattr(args, "batch_size", None) or vars(args).get("cfg:batch_size")
    if batch is not None and str(batch).isdigit():  # else (a preset's, a file's): checked
        check_divisible(int(batch), processes)      # with the settings, in each process


# A value such as -1,0.1 (a pair or list of numbers, the first negative), or -5m (a
# negative duration).
NEGATIVE_LIST = re.compile(r"-\d*\.?\d+(?:[eE][-+]?\d+)?(?:,[-+\d.eE]*)+|-\d*\.?\d+[smhd]")


def attach_negative_lists(argv: list[str]) -> list[str]:
    """``--flag -1,0.1`` as ``--flag=-1,0.1``: argparse takes a lone negative number for a
    value but a negative list for an unknown option, and would answer "expected one
    argument" instead of checking the value (``--noise-std -1,0.1`` is out of range)."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and \
                NEGATIVE_LIST.fullmatch(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def subcommand(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (``parser`` itself if there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return parser


def check_no_empty_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty path would mean the current folder (``--data ""`` would train on all
    of it): every flag's value must say something. The settings of a run are checked
    by :func:`simclr.validate.validate` (where ``--first-op ""`` is a meaning)."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, str) and not value.strip() and not action.dest.startswith("cfg:"):
            name = action.option_strings[0] if action.option_strings else action.metavar
            parser.error(f"{name or action.dest}: got an empty value")


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The parsed arguments and the argument list they came from (``sys.argv`` unless
    given); an unknown flag is an error of its subcommand."""
    argv = attach_negative_lists(sys.argv[1:] if argv is None else list(argv))
    if argv[:1] == ["--version"]:  # answered before the commands' parsers import torch
        _version_flag(Parser(prog="simclr")).parse_args(argv[:1])
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    command = subcommand(parser, getattr(args, "command", None))
    if unknown:  # said by the subcommand (its usage, its name), not by `simclr`
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    check_no_empty_values(command, args)
    return args, argv


def _check_before_work(args: argparse.Namespace) -> None:
    """What every command's flags must meet before it reads anything: a process count
    the devices allow, one test set, device names that exist, paths that can name a file
    or folder, a folder written to whose name is text (:func:`_check_names_are_text`)."""
    _check_names_are_text(args)
    check_processes(args)
    for name, flag in PATH_FLAGS.items():  # (pathlib's checks raised on these: a traceback)
        value = getattr(args, name, None)
        problem = unusable_path(value) if isinstance(value, str) else None
        if problem:
            raise SimCLRError(f"{flag} {value}: {problem}")
    _check_caches_outside_data(args)
    if hasattr(args, "test_fraction") and (args.test is None) == (args.test_fraction is None):
        raise SimCLRError("give --test DIR or --test-fraction F (a held-out part of --train), "
                          "one of the two")
    for name in ("device", "eval_device"):  # a typo fails now, not after the decoding
        if getattr(args, name, None):
            from simclr.runtime import resolve_device, resolve_precision

            device = resolve_device(getattr(args, name), "--" + name.replace("_", "-"))
            if name == "device" and isinstance(getattr(args, "precision", None), str):
                resolve_precision(args.precision, device)  # fp16 on a CPU, say


# The folders a command reads images from, and where it may write decoded caches (the
# parser's dests: a pretraining flag's is its setting's, cfg:PATH).
DATA_FLAGS = {"data": "--data", "cfg:data.path": "--data", "train": "--train",
              "test": "--test", "eval_train": "--eval-train", "eval_test": "--eval-test",
              "cfg:knn_train": "--knn-train", "cfg:knn_test": "--knn-test"}
CACHE_FLAGS = {"cache_dir": "--cache-dir", "cfg:data.cache_dir": "--cache-dir",
               "eval_cache_dir": "--eval-cache-dir"}


def _check_caches_outside_data(args: argparse.Namespace) -> None:
    """A cache folder given inside a folder the command reads is refused, as --out is
    (:func:`simclr.results.check_caches_outside`, which a pretraining and a sweep run
    again on their resolved settings: a config file's folders, a sweep's axis)."""
    from simclr.results import check_caches_outside

    given = vars(args)
    folders = {flag: given[dest] for dest, flag in DATA_FLAGS.items()
               if isinstance(given.get(dest), str)}
    # (two dests spell --cache-dir: the one given, a str, kept)
    check_caches_outside({flag: given[dest] for dest, flag in CACHE_FLAGS.items()
                          if isinstance(given.get(dest), str)}, folders)


def _check_names_are_text(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` (or ``--resume``) path that is not valid UTF-8, as a data
    folder's is refused (:func:`simclr.folders.is_utf8`): results, config.yaml and
    TensorBoard name it in text, and the command failed after its work with a
    UnicodeEncodeError or an onnxruntime TypeError, leaving a half-made run folder."""
    from simclr.folders import WRITTEN_NOT_UTF8, is_utf8

    for name in ("out", "cfg:out", "resume"):  # (cfg:out: pretrain's)
        flag = PATH_FLAGS[name]
        again = "rename the folder" if name == "resume" else "choose another --out"
        path = getattr(args, name, None)
        if isinstance(path, str) and not is_utf8(path):
            raise SimCLRError(f"{flag} {ascii(path)}: {WRITTEN_NOT_UTF8}; {again}")


def _escape_what_output_cannot_spell() -> list[Any]:
    """Write the characters stdout and stderr cannot encode as backslash escapes: under
    a locale of one code page (Windows' cp1252), output redirected, a path such as 日本
    in a line printed after the work (a finished training's summary) raised
    UnicodeEncodeError, a traceback and status 1 for a command that had done its work.
    Streams that encode everything (UTF-8), or whose errors the user chose, are left.
    Returns the streams changed (a caller from Python gets them back strict)."""
    import codecs

    changed = []
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        if not hasattr(stream, "reconfigure") or getattr(stream, "errors", None) != "strict":
            continue  # (a caller's own stream object, pytest's capture)
        try:
            if not codecs.lookup(encoding or "ascii").name.startswith("utf"):
                stream.reconfigure(errors="backslashreplace")
                changed.append(stream)
        except (LookupError, OSError, ValueError):  # (closed, or its pipe gone: left as is)
            pass
    return changed


def _strict_again(stream: Any) -> None:
    """A caller's stream as it was before :func:`_escape_what_output_cannot_spell`."""
    with contextlib.suppress(OSError, ValueError):  # (closed by its owner since)
        stream.reconfigure(errors="strict")


def main(argv: list[str] | None = None) -> int:
    """The ``simclr`` command line (``argv`` None: this process's own arguments, the
    process being simclr's; a list: a call from Python, whose process gets back what the
    command set); returns the exit status, every user error said in one line."""
    words = sys.argv[1:] if argv is None else argv  # named before parsing: a Ctrl-C may come
    escaping = _escape_what_output_cannot_spell()
    command = f"simclr {words[0]}" if words and not str(words[0]).startswith("-") else "simclr"
    from simclr.launch import die_with_launcher

    die_with_launcher()  # a process of `--processes N` or torchrun: none outlives it
    restore_sigterm = None  # how to put back the caller's SIGTERM (...) handlers, once replaced
    command_line = argv is None  # (the process is simclr's own, and ends with main)
    # What the command set, put back after it (for a caller from Python); first, a signal
    # whose exception Python would drop (raised in importlib's weakref callbacks) is sent again.
    undo = contextlib.ExitStack()
    undo.callback(deliver_dropped_interruptions())
    for stream in escaping if not command_line else ():  # (a caller's own, strict again)
        undo.callback(_strict_again, stream)
    failed = True  # until the command returns (a non-zero status: failed too)
    if "simclr.results" in sys.modules:  # (a caller's earlier main() in this process)
        sys.modules["simclr.results"].CREATED.clear()
    from simclr.progress import forget_said_once

    # Each command's notes its own: a notebook's second run on a messy folder heard
    # nothing of it (every module's set of what it said once, cleared)
    forget_said_once()
    try:  # Ctrl-C while torch is still importing is an interruption too, not a traceback
        given = argv is not None  # a call from Python: provenance records these arguments
        # A stop signal while the parsers import torch (seconds) says so too: before, it
        # ended the process without a word (its default action). Not in a launcher's
        # processes (WORLD_SIZE, read as simclr.distributed does, before torch is
        # imported): their launcher stops them and says which (its rank 0 alone speaks),
        # and one may be blocked in a collective.
        if os.environ.get("WORLD_SIZE", "") in ("", "1"):
            restore_sigterm = _stop_on_sigterm()
        try:
            args, argv = _parse(argv)
        except SystemExit as exc:  # argparse's error, --help, --version: said already
            if command_line:
                raise
            return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
        if given:  # (set here, where the finally below clears it: parsing alone leaves
            # the next caller's record alone)
            _record_command_line(argv)
        command = f"simclr {args.command}"
        # Its reader gone (`| head`), a full disk under `> log`, or closed (`>&-`): a run
        # goes on without its output (its files are its work), a command whose output
        # is its result ends (output_is_the_result).
        from simclr.progress import unfailing_output

        undo.enter_context(unfailing_output(strict=output_is_the_result(args),
                                            own_process=command_line))
        if getattr(args, "config", None):  # read once: its every reader takes this content
            args.config = read_config_file(args.config)
        _set_up_logging(given, undo)
        if getattr(args, "threads", None):  # the evaluation commands' --threads
            from simclr.runtime import set_threads

            set_threads(args.threads)
        if launch_here(args):  # --processes N: this process starts and watches N others
            from simclr.launch import run

            return run(argv, args.processes, device=_launch_device(args))
        # (imported here, torch with it, once --help is past)
        from simclr.decode import pil_truncation, refuse_truncated_images

        # A truncated file is a bad image to every command; a caller's setting, after it
        undo.callback(pil_truncation, refuse_truncated_images())
        status: int | None  # (a crash's, below: None where it is raised)
        status = _run_command(args)
        failed = status != 0
        return status
    except (SimCLRError, PermissionError) as exc:  # (a file or folder the user's rights
        return _user_error(command, exc)  # keep from simclr: theirs to fix, not a bug)
    except KeyboardInterrupt as exc:
        return _interrupted(command, exc)
    except BrokenPipeError:  # `simclr info RUNS | head`: the reader has had enough
        return _reader_gone()
    except Exception as exc:  # a bug, or a peer process gone
        status = _crash_status(command, exc)
        if status is None:
            raise
        return status
    finally:
        _after_the_command(failed, restore_sigterm, undo, command_line)


# The evaluations that print their results, and write them only into an --out given.
PRINTED_RESULTS = ("knn", "linear-eval", "transform-probe")


def output_is_the_result(args: argparse.Namespace) -> bool:
    """Whether the command's stdout is its result (``info``, the cache listing, a
    --print-config, an evaluation without --out): there a stdout that cannot be written
    ends the command with exit status 2, where elsewhere it goes on without it. (Under
    `> /dev/full` such a command exited 0 with its result lost.)"""
    if args.command == "info" or getattr(args, "print_config", False):
        return True
    if args.command == "cache":
        return not (args.clean or args.clear)
    return args.command in PRINTED_RESULTS and getattr(args, "out", None) is None


def _record_command_line(argv: list[str]) -> None:
    """A call from Python: its arguments are the command line its provenance records."""
    from simclr import runtime

    runtime.COMMAND_LINE = ["simclr", *argv]


def _run_command(args: argparse.Namespace) -> int:
    """The command's work, its flags' files and folders checked first; its exit status."""
    _check_before_work(args)
    with _out_of_memory(args.command):
        status = int(args.func(args) or 0)
    sys.stdout.flush()  # (here, where a failure is handled: not in Python's exit)
    _command_done()  # (here too: a signal landing in main's finally would escape main)
    return status


if __name__ == "__main__":
    sys.exit(main())
