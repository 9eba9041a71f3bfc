"""The evaluation commands' glue: knn, linear-eval, finetune, transform-probe and export,
each run from its parsed arguments, and what they share with the supervised command
(the result reported, a continued training's digits kept).

Each command loads what it needs, calls the protocol in knn.py / evaluate.py /
finetune.py and prints its result as JSON on stdout; the protocols themselves know
nothing of argparse.
Their flags are defined in :mod:`simclr.arguments`; the supervised command is
:mod:`simclr.supervised_command`, the sweep command :mod:`simclr.sweep_command`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from simclr import distributed as dist
from simclr.checkpoint import CHECKPOINTS, LAST, PARTIAL_SUFFIX
from simclr.checkpoint_read import checkpoint_file, load_checkpoint
from simclr.classifiers import note_unfinished, unfinished_of
from simclr.config import Config, DataConfig
from simclr.data import open_source, reading_draft
from simclr.errors import SimCLRError, with_article
from simclr.features import Listings, check_labeled_folders
from simclr.files import finite_json
from simclr.folders import ImageList, check_folder, list_folder
from simclr.named_data import digits_source, digits_split, is_digits
from simclr.pretrained import (
    at_image_size,
    encoder_from_checkpoint,
    encoder_spec,
    encoder_trained_step,
    model_from_checkpoint,
    representation_from_checkpoint,
)
from simclr.results import RESULTS, check_not_inside, check_results_free
from simclr.settings import config_from_dict
from simclr.source import ImageSource


class RawPixels(nn.Module):
    """The "encoder" of the raw-pixel baseline: (B,3,S,S) -> (B, 3*S*S)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()


def eval_data(args: argparse.Namespace) -> DataConfig:
    """The data settings an evaluation command opens its folders with (its flags), which
    its pre-check reads them with too (:func:`checked_listings`)."""
    return DataConfig(workers=args.workers, cache_dir=args.cache_dir,
                      max_pixels=args.max_pixels, decoder=args.decoder)


def open_folder(path: str, image_size: int, args: argparse.Namespace,
                evaluation: bool = True, train: bool = False,
                unlabeled: bool = False, listing: ImageList | None = None,
                held_out: bool = True) -> ImageSource:
    """A labeled folder (or named data set) of an evaluation, stored for ``image_size``
    with the command's data settings (:func:`eval_data`); ``evaluation=False`` for one
    it trains on with augmented views (fine-tuning); ``train``: a data set's training
    split (a folder holding train/ and test/, cifar10); ``unlabeled``: images beside
    class folders are kept (a probe whose labels are not the folder's); ``listing``: its
    files, if already listed alike. The digits' training split is the one that holds
    none of the test digits (``held_out``; all of them where False: a run continued as
    an earlier simclr started it, :func:`kept_all_digits`)."""
    return open_source(path, eval_data(args), train=train, image_size=image_size,
                       evaluation=evaluation, unlabeled=unlabeled, listing=listing,
                       held_out=held_out)


class EvalInputs(NamedTuple):
    """What an evaluation command reads before its images (:func:`load_for_eval`)."""

    encoder: nn.Module
    spec: dict[str, Any]  # the representation's image_size, dim, layer
    ckpt: dict[str, Any]
    source: dict[str, Any]  # what the features came from, for the results file
    listings: Listings  # --train's and --test's files (None: a named data set)


def load_for_eval(args: argparse.Namespace, augmented: bool = False) -> EvalInputs:
    """An evaluation's inputs from --checkpoint, honouring --random-init / --raw-pixels.

    :func:`read_checkpoint`, with --train and --test checked as labeled folders of the
    same classes. ``source`` names the checkpoint file read (a run folder's newest),
    its step and the layer. ``augmented``: the command trains on augmented views of
    --train (fine-tuning, the SGD protocol), which it reads at their own side.
    """
    path, ckpt, listings = read_checkpoint(args, labeled=True, augmented=augmented)
    random_init = getattr(args, "random_init", False)
    if random_init:
        torch.manual_seed(getattr(args, "seed", 0))
    layer = getattr(args, "layer", "h")
    encoder, spec = representation_from_checkpoint(ckpt, layer, random_init=random_init)
    raw = getattr(args, "raw_pixels", False)
    if raw:
        encoder = RawPixels()
    features = "raw pixels" if raw else "random init" if random_init else "pretrained"
    # (raw pixels are read by no layer of the encoder: none is named)
    source = {**checkpoint_source(path, ckpt, features), "layer": None if raw else layer}
    return EvalInputs(encoder, spec, ckpt, source, listings)


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
    args: argparse.Namespace, labeled: bool = False, augmented: bool = False,
) -> tuple[Path, dict[str, Any], Listings]:
    """(file, checkpoint, --train's and --test's listings) of an evaluation, read after
    the command's folders and earlier results are checked: a missing --test or an --out
    that already holds results fails now, not after the checkpoint and --train are read.
    ``labeled``: --train and --test are then checked as labeled folders of the same
    classes, some of whose images decode at the side the command reads them at (known
    from the checkpoint: :func:`checked_listings`; ``augmented``: --train is read as
    augmented views); the listings are None otherwise, or for a named data set."""
    if getattr(args, "overwrite", False) and not getattr(args, "out", None):
        raise SimCLRError("--overwrite replaces this command's results in --out, and none "
                          "is given; give --out or drop --overwrite")
    for flag in ("train", "test"):
        check_folder(f"--{flag}", getattr(args, flag, None))
    check_results_free(getattr(args, "out", None), RESULTS.get(args.command, ()),
                       overwrite=getattr(args, "overwrite", None))
    if getattr(args, "out", None):
        check_not_inside(args.out, {"--train": getattr(args, "train", None),
                                    "--test": getattr(args, "test", None)}, "results")
    path = checkpoint_file(args.checkpoint)
    check_not_another_run(getattr(args, "out", None), path, args.command)
    check_not_replacing_input(args, path)
    # Read as given, so a folder is picked from again (and once more if need be): a
    # training still saving there may have pruned the file picked above
    # (--keep-checkpoints) for a newer one.
    ckpt = load_checkpoint(args.checkpoint)
    path = Path(ckpt["file"])
    ckpt = at_image_size(ckpt, getattr(args, "image_size", None), path)
    listings = (checked_listings(args, encoder_spec(ckpt)["image_size"], augmented)
                if labeled else Listings(None, None))
    # An evaluation's partial state (named on purpose), a pretraining stopped early or
    # still training: results of a half-trained encoder, which nothing in them shows
    # (a baseline's, --random-init or --raw-pixels, takes none of its weights)
    baseline = getattr(args, "random_init", False) or getattr(args, "raw_pixels", False)
    if path.name.endswith(PARTIAL_SUFFIX) or not baseline:
        note_unfinished(path, ckpt)
    return path, ckpt, listings


def checked_listings(args: argparse.Namespace, image_size: int, augmented: bool) -> Listings:
    """--train's and --test's files, checked as labeled folders of the same classes of
    which some images decode (:func:`check_labeled_folders`) at the side the command
    opens them at for ``image_size`` px views: ``--max-pixels`` limits what is decoded,
    and a fine-tuning reads --test only once its training is over. ``augmented``:
    --train is read as augmented views (without --test, its held-out part is read as
    evaluation crops too, and not checked apart: a file unreadable there is skipped)."""
    data = eval_data(args)

    def draft(files: ImageList, train: bool) -> int:
        return reading_draft(files, image_size, data, evaluation=not (train and augmented))

    return check_labeled_folders(args.train, args.test, ("--train", "--test"),
                                 train_split=True, max_pixels=data.max_pixels, draft=draft)


# The checkpoints an evaluation writes into its --out (names starting so), its own: an
# earlier run of the same command there is replaced only with --overwrite.
OWN_CHECKPOINTS = {"linear-eval": ("linear.", "linear-partial."),
                   "finetune": ("finetune.", "finetune-partial.")}


def check_not_another_run(out: str | None, checkpoint: Path, command: str = "") -> None:
    """An evaluation's --out may be the run folder of the checkpoint it evaluates (its
    results then sit beside it), never another run's: `simclr info`, `predict` and
    `export` would take them, and a classifier, for that run's. Another run is a
    training's last.pt, and for a command that writes a classifier any checkpoint but
    its own (a fine-tuned classifier beside a linear one: predict would not know which)."""
    if not out:
        return
    saved = Path(out).expanduser() / CHECKPOINTS
    own = OWN_CHECKPOINTS.get(command)
    if own is None:  # results without a classifier (knn, a probe): a run's last.pt only
        others = [LAST] if (saved / LAST).is_file() else []
    else:
        try:
            others = sorted(p.name for p in saved.glob("*.pt") if not p.name.startswith(own))
        except OSError:  # not a folder: nothing of a run there
            return
    if others and not checkpoint.resolve().is_relative_to(saved.parent.resolve()):
        name = LAST if LAST in others else others[0]
        raise SimCLRError(f"--out {out} is the folder of another run ({CHECKPOINTS}/{name}): "
                          "its results would be taken for that run's; choose another --out")


def checkpoint_source(path: Path, ckpt: dict[str, Any], features: str) -> dict[str, Any]:
    """What an evaluation's features came from, as its results file records it: the
    file, its step, and the run it is of (its run id: the file's path changes when the
    run folder is moved or copied; none for a checkpoint from before run ids)."""
    imported = {"imported": ckpt["imported"]} if ckpt.get("imported") else {}
    run = {"run_id": ckpt["run_id"]} if isinstance(ckpt.get("run_id"), str) else {}
    # a stopped training's weights (said as the command starts): kept with the results
    # and in a classifier fitted on them, whose predictions and exports say so in turn
    found = unfinished_of(path, ckpt) if features == "pretrained" else None
    unfinished = {"unfinished": found[1]} if found else {}
    return {"checkpoint": str(path.resolve()), "kind": ckpt.get("kind"), **imported,
            "step": encoder_trained_step(ckpt), **run, "features": features, **unfinished}


def runtime_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "device": args.device, "precision": args.precision,
            "workers": args.workers, "channels_last": args.channels_last}


def cmd_knn(args: argparse.Namespace) -> int:
    from simclr.knn import run_knn

    inputs = load_for_eval(args)
    size = inputs.spec["image_size"]
    train, test = open_folders(args, size, augmented=False, listings=inputs.listings)
    result = run_knn(inputs.encoder, train, test, args.out, image_size=size, k=args.k,
                     temperature=args.temperature,
                     source={**inputs.source, **test_split(args, test)},
                     overwrite=args.overwrite, **runtime_kwargs(args))
    print(finite_json(printed(result)))
    return 0


# Skipped files of each split a printed result names; its results file lists them all.
PRINTED_SKIPPED = 10


def printed(result: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's ``result`` as printed on stdout: each split's ``skipped_files`` cut
    to the first :data:`PRINTED_SKIPPED`, how many more in ``skipped_files_more`` (50k
    unreadable images made one 6.6 MB line of every path and reason). Its results file
    (``knn.json``, ...) and the returned dict keep them all; their counts are
    ``skipped_images``."""
    skipped = result.get("skipped_files")
    if not isinstance(skipped, dict) or all(len(files) <= PRINTED_SKIPPED
                                            for files in skipped.values()):
        return result
    return {**result, "skipped_files": {split: files[:PRINTED_SKIPPED]
                                        for split, files in skipped.items()},
            "skipped_files_more": {split: max(0, len(files) - PRINTED_SKIPPED)
                                   for split, files in skipped.items()}}


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
    from simclr.evaluate import run_linear_eval
    from simclr.logistic import parse_l2_grid

    # Flags that contradict each other are refused before any checkpoint or image is read.
    if args.l2 is not None and args.l2_grid:
        raise SimCLRError("give one of --l2 (a fixed strength) and --l2-grid (the search)")
    if args.l2 is not None and args.val_fraction is not None:
        raise SimCLRError("--val-fraction: the held-out share of the --l2 search, which a "
                          "fixed --l2 skips; drop one of them")
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
    saves = [flag_name(n) for n in ("checkpoint_every", "checkpoint_minutes") if n in protocol]
    if saves and not args.out:  # (a long run thought safe to stop would save nothing)
        raise SimCLRError(f"{', '.join(saves)}: saves of the unfinished training go into "
                          "--out, and none is given; give --out or drop it")
    if args.l2_grid:
        protocol["l2_grid"] = parse_l2_grid(args.l2_grid)
    inputs = load_for_eval(args, augmented=args.protocol == "sgd")
    if args.protocol == "sgd" and not args.out and dist.launched_rank() == 0:
        # (a training of minutes to hours: a stop would lose it, unsaid)
        print("note: without --out, a stopped --protocol sgd training is not kept: the "
              "same command starts it again (give --out to continue it)", file=sys.stderr)
    size = inputs.spec["image_size"]
    kept = kept_all_digits(args.train, _linear_started_on(args), "linear evaluation")
    with dist.process_group():  # the SGD protocol may train across processes
        train, test = open_folders(args, size, augmented=args.protocol == "sgd",
                                   listings=inputs.listings, digits_held_out=not kept)
        result = run_linear_eval(
            inputs.encoder, train, test, args.out, image_size=size, protocol=args.protocol,
            seed=args.seed, config=inputs.ckpt["config"],
            source={**inputs.source, **test_split(args, test)}, overwrite=args.overwrite,
            **protocol, **runtime_kwargs(args))
        return report(result)


def open_folders(args: argparse.Namespace, image_size: int, augmented: bool,
                 augmented_test: bool = False, listings: Listings | None = None,
                 unlabeled: bool = False, digits_held_out: bool = True
                 ) -> tuple[ImageSource, ImageSource]:
    """--train and --test of an evaluation; under torchrun rank 0 decodes them first,
    then the other processes find its caches. ``augmented``: the training set gives
    augmented views (fine-tuning, SGD linear evaluation), not evaluation crops (and
    ``augmented_test`` the test set: the transformation probe). ``unlabeled``: a
    command that needs no class (the probe) keeps images beside the class folders.
    ``digits_held_out``: --train digits holds none of the test digits (open_source's
    ``held_out``).

    Without --test, ``--test-fraction F`` holds out the files :func:`held_out` names as
    the test set, and the rest of --train is the training set (``listings``: the
    folders' files, if the command already listed them alike: not listed again)."""
    def opened(path: str, evaluation: bool, train: bool,
               listing: ImageList | None) -> ImageSource:
        return dist.main_first(lambda: open_folder(path, image_size, args, evaluation=evaluation,
                                                   train=train, unlabeled=unlabeled,
                                                   listing=listing,
                                                   held_out=digits_held_out))

    listings = listings or Listings(None, None)
    listing = listings.train
    if args.test is not None:
        return (opened(args.train, not augmented, True, listing),
                opened(args.test, not augmented_test, False, listings.test))
    if unlabeled and listing is None:
        listing = list_folder(args.train, train=True, unlabeled=True)
    listing, held = held_out(args, listing)
    test_files = {listing.paths[i] for i in held}

    def part(source: ImageSource, test: bool) -> ImageSource:
        rows = [i for i, p in enumerate(source.paths) if (p in test_files) == test]
        return source.subset(rows, source.name)  # the folder's name: subset lists use it

    train = opened(args.train, not augmented, True, listing)
    test = (train if augmented == augmented_test else
            opened(args.train, not augmented_test, True, listing))
    train_part = part(train, test=False)
    train_part.skipped = train.skipped  # the folder's unreadable files, said once
    test_part = part(test, test=True)
    missing = classes_without_test(test_part)
    # A class too small to give a test image is measured by nothing: one class of 2,000
    # images beside 999 of one each tested that one class alone (top-1 100%), unsaid.
    if missing and not unlabeled and dist.launched_rank() == 0:  # (the probe: no classes)
        print(f"note: --test-fraction {args.test_fraction:g}: {missing} of the "
              f"{len(test_part.classes)} classes have no test image (too few images to hold "
              f"one out); the top-1 is measured on the other "
              f"{len(test_part.classes) - missing}", file=sys.stderr)
    return train_part, test_part


def classes_without_test(test: ImageSource) -> int:
    """How many of ``test``'s classes none of its images belongs to."""
    labels = np.asarray(test.labels)
    return len(test.classes) - len(np.unique(labels[labels >= 0]))


def held_out(args: argparse.Namespace,
             listing: ImageList | None = None) -> tuple[ImageList, np.ndarray]:
    """(--train's listing, the indices of the files ``--test-fraction`` holds out): a
    class-balanced part drawn from --seed (:func:`simclr.logistic.stratified_split`) on
    the file names, so the split is the same whether or not the folder is cached.
    ``listing``: --train's, if already listed."""
    from simclr.logistic import stratified_split

    listing = list_folder(args.train, train=True) if listing is None else listing
    if listing is None:
        raise SimCLRError(f"--test-fraction splits an image folder; {args.train} has its own "
                          "test split: give --test")
    _, held = stratified_split(listing.labels, args.test_fraction, args.seed)
    if len(held) == 0:
        raise SimCLRError(f"--test-fraction {args.test_fraction:g} holds out no image (every "
                          f"class of {args.train} has a single image); give --test")
    return listing, held


def test_split(args: argparse.Namespace, test: ImageSource | None = None) -> dict[str, Any]:
    """What the test set was, for a results file's ``source``: nothing with --test; with
    the held-out ``test`` source, how many classes it has no image of, if any."""
    if getattr(args, "test", None) is not None:
        return {}
    missing = 0 if test is None else classes_without_test(test)
    return {"test": {"held_out_of": str(Path(args.train).expanduser().resolve()),
                     "fraction": args.test_fraction, "seed": args.seed,
                     **({"classes_without_test": missing} if missing else {})}}


def report(result: dict[str, Any], resume: str | None = None) -> int:
    """Print the results as JSON (rank 0 only: it reports for all processes); the exit
    status: 0, or 75 (``train.EXIT_PREEMPTED``) for a training a signal stopped after
    saving it. ``resume``: the command that continues it (default: the same command)."""
    from simclr.runtime import stopped_by
    from simclr.train import EXIT_PREEMPTED

    preempted = result.get("status") == "preempted"
    if dist.is_main():
        print(finite_json(printed(result)))
        if preempted:
            how = (f"continue with: {resume}" if resume else
                   f"the same command continues it (from {result['checkpoint']})")
            print(f"{stopped_by(result['signal'])}; {how}", file=sys.stderr)
    return EXIT_PREEMPTED if preempted else 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from simclr.finetune import check_batch_size, check_start_flags, run_finetune
    from simclr.subsets import labeled_subset, read_subset_list

    # What needs neither the checkpoint nor the images is checked before either is read.
    check_batch_size(args.batch_size)
    check_start_flags(args.from_head, args.from_scratch, args.random_init)
    if args.subset is not None:
        read_subset_list(args.subset)
    encoder, spec, ckpt, source, listings = load_for_eval(args, augmented=True)
    listing, testing = listings.train, []
    if listing is not None and args.test is None:  # the labels come from the training part
        _, held = held_out(args, listing)  # the listing just checked: not read again
        keep = np.setdiff1d(np.arange(len(listing.paths)), held)
        testing = [listing.paths[i] for i in held]
        listing = ImageList([listing.paths[i] for i in keep], listing.labels[keep],
                            listing.classes, listing.root)
    if listing is not None:  # the subset drawn from file names, before --train is decoded
        labeled_subset(listing, args.subset, args.label_fraction, args.labels_per_class,
                       args.seed, testing)
    head = None
    if args.from_head:
        if ckpt.get("kind") != "pretrain":
            raise SimCLRError("--from-head needs a pretraining checkpoint (this is "
                              f"{with_article(str(ckpt.get('kind') or 'foreign'))} one, "
                              "without the projection head); drop --from-head")
        model, _ = model_from_checkpoint(ckpt)
        encoder, head = model.encoder, model.head
    size = spec["image_size"]
    kept = kept_all_digits(args.train, _finetune_started_on(args), "fine-tuning")
    with dist.process_group():  # under torchrun the processes fine-tune as one
        train, test = open_folders(args, size, augmented=True, listings=listings,
                                   digits_held_out=not kept)
        result = run_finetune(
            encoder, train, test, args.out, image_size=size,
            label_fraction=args.label_fraction, labels_per_class=args.labels_per_class,
            subset_file=args.subset, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule, head=head, **given(args, ("crop_scale", "crop_sampler")),
            # --random-init and --from-scratch: one baseline, recorded alike
            from_head=args.from_head, from_scratch=args.from_scratch or args.random_init,
            sync_bn=args.sync_bn, seed=args.seed, config=ckpt["config"],
            source={**source, **test_split(args, test), **(
                {"features": "random init"} if args.from_scratch else {}), **(
                {"layer": "g1"} if args.from_head else {})},  # (Classifier.from_head's)
            checkpoint_every=args.checkpoint_every,
            checkpoint_minutes=args.checkpoint_minutes, overwrite=args.overwrite,
            held_out=testing, **runtime_kwargs(args))
        return report(result)


def cmd_transform_probe(args: argparse.Namespace) -> int:
    from simclr.probe import TASKS, run_transform_probe
    from simclr.results import prepare_dir, record_inputs, write_results

    path, ckpt, _ = read_checkpoint(args)
    if ckpt.get("kind") != "pretrain":  # Table 3 compares h with z = g(h): the head is needed
        raise SimCLRError(f"transform-probe needs a pretraining checkpoint (encoder and "
                          f"projection head); {path} is of kind {ckpt.get('kind', 'unknown')!r}")
    if args.random_init:
        torch.manual_seed(args.seed)
    model, spec = model_from_checkpoint(ckpt, random_init=args.random_init)
    size = spec["image_size"]  # (the views too: an evaluation's side, as --image-size's)
    aug = dataclasses.replace(config_from_dict(ckpt["config"]).augment, size=size)
    tasks = TASKS if args.task == "all" else (args.task,)
    out = prepare_dir(args.out, RESULTS["transform-probe"], overwrite=args.overwrite)
    train, test = open_folders(args, size, augmented=True, augmented_test=True, unlabeled=True)
    result = run_transform_probe(
        model, train, test, aug,
        tasks, views=args.views, epochs=args.epochs, seed=args.seed,
        batch_size=args.batch_size, device=args.device, precision=args.precision,
        channels_last=args.channels_last)
    result["source"] = {**test_split(args), **checkpoint_source(
        path, ckpt, "random init" if args.random_init else "pretrained"),
        "layer": "h" if result["tasks"] and all(row["z"] is None for row in
                                                result["tasks"].values()) else "h and z"}
    record_inputs(result, train, test)  # (as the other evaluations' finish_results does)
    write_results(out, "transform_probe.json", result, args.overwrite)
    print(finite_json(printed(result)))
    return 0


def kept_all_digits(spec: str | None, started_with: Any, what: str) -> bool:
    """Whether a continued ``what`` on --train digits keeps the training set it started
    with, all the digits (``started_with``: its count of training images; None for a new
    run): an earlier simclr trained on all 1797, new runs hold the test digits out
    (open_source's ``held_out``), which would refuse it as another training set. A note
    says so."""
    if not is_digits(spec) or started_with is None:
        return False
    everything = len(digits_source().labels)
    if started_with != everything:
        return False
    if dist.launched_rank() == 0:
        print(f"note: the {what} keeps the training set it started with, all {everything} "
              f"digits (new runs hold the {len(digits_split()[1].labels)} test digits out "
              "of --train digits)", file=sys.stderr)
    return True


def _partial_settings(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    """The settings of the unfinished ``name`` training (partial.PartialRun's) in
    --out where it is continued on --train digits; None otherwise (--overwrite: a new
    one; an unreadable file: the training itself says what is wrong with it)."""
    if args.overwrite or args.out is None or not is_digits(args.train):
        return None
    path = Path(args.out).expanduser() / CHECKPOINTS / f"{name}{PARTIAL_SUFFIX}"
    if not path.is_file():
        return None
    try:
        settings = load_checkpoint(path).get("settings")
    except SimCLRError:
        return None
    return settings if isinstance(settings, dict) else None


def _finetune_started_on(args: argparse.Namespace) -> int | None:
    """How many digits an unfinished fine-tuning in --out started on, where its labeled
    subset is this command's drawn from all of them (as an earlier simclr's --train
    digits gave it); None otherwise."""
    from simclr.subsets import labeled_subset, subset_digest

    settings = _partial_settings(args, "finetune")
    if settings is None:
        return None
    digits = digits_source()
    try:
        subset = labeled_subset(digits, args.subset, args.label_fraction,
                                args.labels_per_class, args.seed)
    except SimCLRError:  # (a --subset that names no digit: the fine-tuning says so)
        return None
    everything = len(digits.labels)
    return everything if settings.get("subset") == subset_digest(subset, everything) else None


def _linear_started_on(args: argparse.Namespace) -> Any:
    """How many images an unfinished SGD linear evaluation in --out started on (--train
    digits; None otherwise)."""
    settings = _partial_settings(args, "linear") if args.protocol == "sgd" else None
    train = (settings or {}).get("train")
    return train[0] if isinstance(train, list) and train else None


def cmd_export(args: argparse.Namespace) -> int:
    from simclr.export import export

    print(finite_json(export(args.checkpoint, args.out, args.format, args.layer,
                            overwrite=args.overwrite, image_size=args.image_size)))
    return 0


def digits_knn_report(checkpoint: str, cfg: Config) -> str:
    """kNN top-1 on the digits hold-out split, pretrained vs the same encoder at init."""
    from simclr.features import extract_features
    from simclr.knn import knn_accuracy
    from simclr.named_data import digits_split
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
                            temperature=cfg.knn_temperature, device=dev)
        name = "random init" if random_init else "pretrained"
        lines.append(f"{name:>11}: kNN top-1 {100 * top1:.1f}%")
    return (f"digits hold-out ({memory.num_images} memory / {queries.num_images} queries, "
            f"k={cfg.knn_k}, T={cfg.knn_temperature}):\n" + "\n".join(lines))

