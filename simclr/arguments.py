"""The evaluation subcommands' flags (argparse), and the argument types they share.

One function adds each subcommand to ``simclr``'s parser (:func:`simclr.cli.build_parser`)
with its flags, their checks and defaults; the command it runs is in
:mod:`simclr.commands` (:mod:`simclr.supervised_command` for ``supervised``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from simclr.commands import (
    cmd_export,
    cmd_finetune,
    cmd_knn,
    cmd_linear_eval,
    cmd_transform_probe,
)
from simclr.config import (
    CROP_SAMPLERS,
    MAX_EPOCHS,
    MAX_REAL,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIZE,
    MIN_TEMPERATURE,
    default_of,
)
from simclr.export import FORMATS
from simclr.launch import add_flag as add_processes_flag
from simclr.presets import PRESETS
from simclr.pretrained import IMAGE_SIZE_HELP, LAYERS_HELP
from simclr.settings import all_flags
from simclr.supervised_command import cmd_supervised

RuntimeFlags = Callable[[argparse.ArgumentParser], None]
CACHE_DIR = default_of("data.cache_dir")  # where the decoded caches are, unless told


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
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
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value
    return parse


_positive_int = count_at_least(1)


def _real(minimum: float, inclusive: bool, maximum: float = math.inf,
          most: float = math.inf) -> Callable[[str], float]:
    """argparse type: a float above ``minimum`` (or equal, if inclusive), below
    ``maximum`` and at most ``most`` (the config's bounds, e.g. MAX_REAL, are inclusive)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value >= minimum if inclusive else value > minimum
        if not (low_ok and value < maximum and value <= most):
            bound = f"{'>=' if inclusive else '>'} {minimum:g}"
            if maximum < math.inf:
                bound += f" and < {maximum:g}"
            if most < math.inf:
                bound += f" and at most {most:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


# Passes over the labeled images, fractions allowed as in pretraining (steps are rounded).
epoch_count = _real(0, False, most=MAX_EPOCHS)


def _probe_epochs(text: str) -> float:
    """argparse type of transform-probe's MLP epochs: a positive number up to 100,000,
    fractions allowed; a whole number stays an integer (in its results as given)."""
    value = _real(0, False, math.inf)(text)
    if value > 100_000:
        raise argparse.ArgumentTypeError(f"must be at most 100000, got {text}")
    return int(value) if value.is_integer() else value


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
        raise argparse.ArgumentTypeError(f"expected two numbers A,B (e.g. 0.08,1), got "
                                         f"{text!r}") from None
    if not 0 < lo <= hi <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 < A <= B <= 1, got {text!r}")
    return lo, hi


# What an encoder's --checkpoint may be (:func:`simclr.pretrained.load_encoder` reads it).
ENCODER_SOURCE = ("a simclr checkpoint or run folder, or a ResNet's weights in torchvision's "
                  "layout (torchvision, timm)")


# What --random-init gives an evaluation of frozen features (knn, linear-eval).
RANDOM_INIT_HELP = ("the checkpoint's architecture at random initialization from --seed "
                    "(baseline; every residual branch live: no zero-initialised BN)")


def _eval_inputs(p: argparse.ArgumentParser, runtime: RuntimeFlags, out_required: bool,
                 random_init_help: str = RANDOM_INIT_HELP) -> None:
    p.add_argument("--checkpoint", required=True, help=ENCODER_SOURCE)
    p.add_argument("--train", required=True, help="labeled image folder (class sub-folders)")
    p.add_argument("--test", default=None, help="labeled image folder, same classes")
    p.add_argument("--test-fraction", type=_real(0, False, 1), default=None, metavar="F",
                   help="instead of --test: hold out this class-balanced fraction of "
                        "--train (from --seed) as the test set")
    p.add_argument("--out", required=out_required, help="run directory for results")
    p.add_argument("--overwrite", action="store_true",
                   help="replace this command's earlier results in --out (its JSON, and the "
                        "figure or classifier it writes; never a pretraining run's files)")
    p.add_argument("--random-init", action="store_true", help=random_init_help)
    p.add_argument("--seed", type=count_at_least(0, MAX_SEED), default=0)
    add_image_size_flag(p)
    runtime(p)


def add_image_size_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=count_at_least(MIN_SIZE, MAX_SIDE), default=None,
                   metavar="S", help=IMAGE_SIZE_HELP)


def add_evaluation_commands(sub: argparse._SubParsersAction, runtime: RuntimeFlags) -> None:
    """knn, linear-eval, finetune, transform-probe, supervised and export subcommands
    (``runtime``: adds the flags of the device, batch and decoding)."""
    add_knn_command(sub, runtime)
    add_linear_eval_command(sub, runtime)
    add_finetune_command(sub, runtime)
    add_transform_probe_command(sub, runtime)
    add_supervised_command(sub)
    add_export_command(sub)


def add_knn_command(sub: argparse._SubParsersAction, runtime: RuntimeFlags) -> None:
    """knn: weighted kNN top-1/top-5 on frozen features."""
    p = sub.add_parser("knn", help="weighted kNN top-1/top-5 on frozen features (h by default)")
    _eval_inputs(p, runtime, out_required=False)
    p.add_argument("--layer", default="h", help=LAYERS_HELP)
    p.add_argument("--k", type=_positive_int, default=200)
    p.add_argument("--temperature", type=_real(MIN_TEMPERATURE, True), default=0.1)
    p.set_defaults(func=cmd_knn)


def _training_batch(p: argparse.ArgumentParser, text: str) -> None:
    """The shared --batch-size's help where the command also trains with it."""
    for action in p._actions:
        if action.dest == "batch_size":
            action.help = text


def add_linear_eval_command(sub: argparse._SubParsersAction, runtime: RuntimeFlags) -> None:
    """linear-eval: a linear classifier on the frozen representation (L-BFGS or SGD)."""
    p = sub.add_parser("linear-eval", help="linear classifier on the frozen encoder")
    _eval_inputs(p, runtime, out_required=False)
    _training_batch(p, "sgd: images per training step, the global batch across "
                       "--processes (the paper's: 4096); and per pass that extracts features "
                       "(default: 256)")
    p.add_argument("--layer", default="h", help=LAYERS_HELP + "; Fig. 8 compares h and z")
    p.add_argument("--protocol", choices=["lbfgs", "sgd"], default="lbfgs")
    p.add_argument("--raw-pixels", action="store_true", help="baseline: pixels as features")
    p.add_argument("--l2", type=_real(0, True, most=MAX_REAL), default=None,
                   help="fixed L2 strength (lbfgs)")
    p.add_argument("--l2-grid", default=None, metavar="MIN,MAX,COUNT",
                   help="L2 strengths searched on the held-out split (lbfgs)")
    p.add_argument("--val-fraction", type=_real(0, False, 1), default=None,
                   help="held out to choose the L2 strength (lbfgs; default 0.1)")
    p.add_argument("--max-iter", type=_positive_int, default=None,
                   help="L-BFGS iterations at most (lbfgs; default 1000)")
    p.add_argument("--epochs", type=epoch_count, default=None,
                   help="sgd; default 90 (fractions allowed)")
    p.add_argument("--lr", type=_real(0, False, most=MAX_REAL), default=None,
                   help="sgd: base lr, x batch/256; default 0.1")
    p.add_argument("--momentum", type=_real(0, True, 1), default=None, help="sgd; default 0.9")
    _crop_flags(p, "sgd; ")
    p.add_argument("--checkpoint-every", type=count_at_least(0), default=None, metavar="STEPS",
                   help="sgd: steps between saves of the unfinished training in --out (0: only "
                        "when a signal stops it; default 500); the same command continues it")
    p.add_argument("--checkpoint-minutes", type=_real(0, True), default=None,
                   metavar="MINUTES", help="sgd: also a save when this long has passed since "
                                           "the last (0: off; default 30)")
    add_processes_flag(p)
    p.set_defaults(func=cmd_linear_eval)


def add_finetune_command(sub: argparse._SubParsersAction, runtime: RuntimeFlags) -> None:
    """finetune: the encoder fine-tuned on a class-balanced labeled subset."""
    p = sub.add_parser("finetune", help="fine-tune on a class-balanced labeled subset")
    # (trained, a fresh encoder starts as pretraining's does: each residual block's last
    # BN at zero, Goyal et al. 2017; finetune.fresh_encoder)
    _eval_inputs(p, runtime, out_required=True,
                 random_init_help="the same as --from-scratch (a fresh encoder from --seed, "
                                  "each residual block's last BN at zero as pretraining "
                                  "starts)")
    _training_batch(p, "images per training step (the lr scales with it), the global batch "
                       "across --processes (the paper's: 4096); and per pass of the test set "
                       "(default: 256)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--label-fraction", type=fraction, default=None, metavar="F")
    group.add_argument("--labels-per-class", type=_positive_int, default=None)
    group.add_argument("--subset", default=None, metavar="FILE",
                       help="the labeled images listed in FILE (one file name or path per "
                       "line, e.g. the paper's imagenet_subsets/1percent.txt)")
    p.add_argument("--epochs", type=epoch_count, default=None,
                   help="default: 60 for <= 5%% of the labels, else 30 (paper); fractions "
                        "allowed")
    p.add_argument("--lr", type=_real(0, False, most=MAX_REAL), default=0.05,
                   help="base lr, x batch/256")
    p.add_argument("--momentum", type=_real(0, True, 1), default=0.9)
    p.add_argument("--weight-decay", type=_real(0, True, most=MAX_REAL), default=0.0,
                   help="L2 penalty on the weights, not on biases or BatchNorm (default: 0, "
                        "the semi-supervised protocol; transfer fine-tuning (App. B.8) "
                        "chooses it with the lr on held-out data)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    _crop_flags(p)
    p.add_argument("--from-head", action="store_true",
                   help="keep the projection head's first layer (SimCLRv2)")
    p.add_argument("--from-scratch", action="store_true",
                   help="baseline: same architecture and budget, no pretraining")
    p.add_argument("--checkpoint-every", type=count_at_least(0), default=500, metavar="STEPS",
                   help="steps between saves of the unfinished fine-tuning (0: only on "
                        "a signal stopping it); rerunning the same command continues it")
    p.add_argument("--checkpoint-minutes", type=_real(0, True), default=30.0, metavar="MINUTES",
                   help="also a save when this long has passed since the last (0: off)")
    p.add_argument("--no-sync-bn", dest="sync_bn", action="store_false",
                   help="with several processes: BatchNorm statistics of each process's share of "
                        "the batch (default: of the global batch, as the paper)")
    add_processes_flag(p)
    p.set_defaults(func=cmd_finetune)


def add_transform_probe_command(sub: argparse._SubParsersAction, runtime: RuntimeFlags) -> None:
    """transform-probe (Table 3): the applied transformation predicted from h and z."""
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
    p.add_argument("--epochs", type=_probe_epochs, default=50,
                   help="MLP training epochs (fractions allowed)")
    p.set_defaults(func=cmd_transform_probe)


def add_supervised_command(sub: argparse._SubParsersAction) -> None:
    """supervised: the supervised baseline, a training run with its settings' flags."""
    from simclr.cli import OneFile, add_config_flags

    p = sub.add_parser("supervised", help="the supervised baseline: same encoder, labels, CE")
    p.add_argument("--train", help="labeled image folder (required for a new run)")
    p.add_argument("--test", default=None, help="labeled image folder for the final top-1")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS))
    p.add_argument("--config", default=None, action=OneFile)
    # Settings that play no part in supervised training are not offered as flags (a flag
    # offered and ignored misleads): supervised.unused_setting.
    from simclr.supervised import unused_setting

    add_config_flags(p, exclude={flag for flag, path in all_flags().items()
                                 if unused_setting(path)},
                     described={"batch_size": "global batch (images; one view each)"})
    p.add_argument("--out", help="run directory (required for a new run)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as YAML and exit")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the unfinished run saved in RUN_DIR (e.g. after exit 75)")
    add_processes_flag(p)
    p.set_defaults(func=cmd_supervised)


def add_export_command(sub: argparse._SubParsersAction) -> None:
    """export: the encoder as a small checkpoint, torchvision weights or a program."""
    p = sub.add_parser(
        "export", help="the encoder as a small checkpoint, torchvision ResNet weights, or a "
                       "program that runs without simclr (torch.export .pt2, ONNX)")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file or run folder, or a ResNet's weights in "
                        "torchvision's layout")
    p.add_argument("--out", required=True,
                   help="the file to write (.pt: checkpoint, .pt / .pth with --format "
                        "torchvision, .pt2: torch.export, .onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="auto (default): from --out's suffix")
    p.add_argument("--layer", default="h",
                   help=f"pt2 / onnx: {LAYERS_HELP}, or logits (classifier checkpoints)")
    add_image_size_flag(p)
    p.set_defaults(func=cmd_export)


def days(text: str) -> float:
    """argparse type: a non-negative, finite number of days."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number of days, got {text}")
    return value


def folder_name(text: str) -> str:
    """argparse type: a folder path, not empty (which would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty value")
    return text
