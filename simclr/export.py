"""Exporting a trained encoder, for use with simclr or without it.

Four formats (``simclr export --format``, by default chosen from the file's suffix):

- ``checkpoint`` (``.pt``): a small simclr checkpoint holding the encoder's weights and
  architecture (no head, optimizer or RNG state); :func:`simclr.load_encoder` and every
  ``simclr`` command read it.
- ``pt2``: a ``torch.export`` program. PyTorch alone runs it, with no simclr and no
  model code: ``torch.export.load(path).module()``.
- ``onnx``: an ONNX graph for onnxruntime, TensorRT, OpenVINO, ... (needs the ``onnx``
  extra: ``pip install "simclr[onnx]"``).
- ``torchvision`` (``.pt``/``.pth``, asked for by name): the encoder's weights as
  ``torchvision.models.resnetXX()`` loads them (its ``fc`` replaced by ``nn.Identity()``),
  for pipelines built on torchvision's models; width-1 encoders (the CIFAR stem as a
  3x3 ``conv1`` and no max-pool, which the printed ``load`` code sets). Its card
  ``<out>.json`` says the image size and preprocessing the file does not record.

A program maps float32 images (B, 3, S, S), RGB in [0, 1] with no mean/std
normalisation (as in the official code), to the representation at ``layer``: h, the
encoder's output, by default, which the paper evaluates (Sec. 4.2), or z = g(h) or a
layer of the head; or, for a classifier's checkpoint (linear-eval, finetune,
supervised), to its ``logits`` (B, C). B is free. Each program is checked before it
replaces anything at ``--out``: run on a batch of another size than the one it was
traced with, it must give the eager model's output. Its description
(:func:`simclr.programs.program_card`) is stored inside the file and beside it as
``<out>.json``. Writing, checking and reading back the programs and their cards is
:mod:`simclr.programs`; this module chooses what is exported, from which checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.checkpoint import is_run_checkpoint, save_checkpoint
from simclr.checkpoint_read import checkpoint_file, load_checkpoint
from simclr.classifiers import (
    classifier_file,
    classifier_from_checkpoint,
    note_unfinished,
)
from simclr.config import ARCHS
from simclr.errors import SimCLRError, with_article
from simclr.files import NAME_MAX, torch_save, write_json, written
from simclr.pretrained import (
    LAYERS_HELP,
    at_image_size,
    check_finite,
    encoder_from_checkpoint,
    encoder_spec,
    encoder_trained_step,
    parse_layer,
    representation_from_checkpoint,
    side_guessed,
    trained_for,
)
from simclr.programs import (
    ATOL,
    CHECK_BATCH,
    RTOL,
    TRACE_BATCH,
    card_file,
    check_program,
    check_room,
    program_card,
    write_onnx,
    write_pt2,
)
from simclr.results import created_removed_on_failure, output_file, real_folder
from simclr.torchvision_io import assumed_side, torchvision_model

FORMATS = ("checkpoint", "pt2", "onnx", "torchvision")
_SUFFIXES = {".pt": "checkpoint", ".pth": "checkpoint", ".pt2": "pt2", ".onnx": "onnx"}


def export_format(out: str | Path, fmt: str = "auto") -> str:
    """``fmt``, or for 'auto' the format ``out``'s suffix names; a suffix that names
    another format (or none) is refused, so a file's name says what it holds."""
    if fmt not in ("auto", *FORMATS):
        raise SimCLRError(f"--format: unknown value {fmt!r} (auto, {', '.join(FORMATS)})")
    named = _SUFFIXES.get(Path(out).suffix.lower())
    if named is None:
        raise SimCLRError(f"--out {out}: end the name in .pt or .pth (checkpoint, "
                          "torchvision), .pt2 (torch.export) or .onnx")
    if fmt == "torchvision" and named == "checkpoint":  # a state dict: .pt / .pth
        return fmt
    if fmt not in ("auto", named):
        raise SimCLRError(f"--format {fmt} does not match --out {out} "
                          f"({with_article(named)} file)")
    return named


@created_removed_on_failure()  # (stopped mid-way: no empty --out folder of its own left)
def export(checkpoint: str | Path, out: str | Path, fmt: str = "auto",
           layer: str = "h", overwrite: bool = False,
           image_size: int | None = None) -> dict[str, Any]:
    """Export the encoder of ``checkpoint`` to ``out``; returns a summary for the CLI.
    An existing ``out`` is refused unless ``overwrite``. ``image_size``: the side the
    export is for, if not the encoder's own (:func:`simclr.pretrained.at_image_size`)."""
    if layer not in ("h", "logits"):
        try:
            parse_layer(layer)
        except SimCLRError:
            raise SimCLRError(f"--layer: unknown value {layer!r} ({LAYERS_HELP}, or logits: "
                              "a classifier's)") from None
    if Path(out).is_dir():
        raise SimCLRError(f"--out {out} is a folder; give a file name")
    fmt = export_format(out, fmt)
    # logits: a run folder's classifier (linear-eval --out RUN), not its pretraining model
    source = classifier_file(checkpoint) if layer == "logits" else checkpoint_file(checkpoint)
    if Path(out).exists() and Path(out).resolve() == source.resolve():
        raise SimCLRError(f"--out {out} is the checkpoint being exported; choose another path")
    if is_run_checkpoint(real_folder(out) / Path(out).name):  # (LINK/last.pt too)
        # --resume would take it for the run's latest checkpoint and refuse the run
        raise SimCLRError(f"--out {out}: a run's checkpoints are named so; give the export "
                          "another name or folder")
    out = output_file(out, overwrite)
    if fmt in ("pt2", "onnx", "torchvision"):  # with a card, which is never lost either
        card = card_file(out)
        if len(os.fsencode(card.name)) > NAME_MAX:  # (after the work, its write would fail)
            raise SimCLRError(f"--out {out.name}: a name too long for the card written beside "
                              f"it, {card.name} (over {NAME_MAX} bytes); choose a name of "
                              f"at most {NAME_MAX - len('.json')} bytes")
        if card.is_dir() or (os.path.lexists(card) and not overwrite):
            what = "is a folder" if card.is_dir() else "already exists"
            raise SimCLRError(f"{card} (the export's card, written beside --out) {what}; "
                              "choose another --out" + ("" if card.is_dir() else
                                                        ", or pass --overwrite"))
    if fmt in ("checkpoint", "torchvision"):
        if layer != "h":
            what = "a classifier's logits" if layer == "logits" else "a layer of the head"
            raise SimCLRError(f"--layer {layer}: a {fmt} export holds the encoder only; "
                              f"export {what} as a program: an --out ending in .pt2 or .onnx")
        if fmt == "torchvision":
            return export_torchvision(source, out, image_size, overwrite)
        result = export_encoder(source, out, image_size, overwrite)
        if overwrite:  # (once the new file is in place: a failure loses nothing)
            drop_replaced_card(out)
        return result
    return export_program(source, out, fmt, layer, image_size, overwrite)


def drop_replaced_card(out: Path) -> None:
    """Remove the card beside ``out`` that an earlier export wrote there (a torchvision
    export's, now written over by a checkpoint): it described that file, with usage code
    that fails on this one. Only simclr's card (its ``format``); a file of the user's
    of that name stays, and one that cannot be removed is said."""
    card = card_file(out)
    if card.is_symlink() or not card.is_file():
        return
    try:
        ours = json.loads(card.read_text(encoding="utf-8")).get("format") == "simclr-program"
    except (OSError, ValueError, AttributeError, RecursionError):
        return  # (unreadable, or JSON of another shape: not known to be simclr's)
    if ours:
        try:
            card.unlink()
        except OSError as exc:
            print(f"note: could not remove {card}, the card of the export written over "
                  f"(it describes that file, not this one): {exc.strerror}", file=sys.stderr)


def export_encoder(checkpoint: str | Path, out: str | Path,
                   image_size: int | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Write a small checkpoint with only the encoder (no head, optimizer or RNG);
    ``overwrite`` False: a file another process wrote there meanwhile is kept, refused.

    The weights go through the encoder the config describes (strictly), so a file whose
    config does not fit its weights is refused, never relabelled.
    """
    ckpt = at_image_size(load_checkpoint(checkpoint), image_size, checkpoint)
    encoder, spec = encoder_from_checkpoint(ckpt)  # (NaN weights refused: check_finite)
    unfinished = note_unfinished(Path(ckpt.get("file", checkpoint)), ckpt)  # (as predict)
    blob = {
        "kind": "encoder",
        "config": {"model": ckpt["config"]["model"], "augment": ckpt["config"]["augment"]},
        "model": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
        # an imported file's origin stays with it; it has no step of simclr's
        **({"step": int(step)} if (step := encoder_trained_step(ckpt)) is not None else {}),
        **({"imported": ckpt["imported"]} if ckpt.get("imported") else {}),
        # its side a guess (imported weights record none): its readers keep saying so;
        # False where --image-size gave it; an earlier export's maybe stays a maybe
        **_size_guessed(ckpt, image_size),
        # a random-init baseline's classifier: its encoder is no trained one
        **({"features": ckpt["features"]} if ckpt.get("features") else {}),
        # a stopped training's weights: said by what reads the export, kept by its cards
        # (a linear classifier's unfinished fitting leaves its frozen encoder as it was;
        # one fitted on a stopped training's encoder records that training)
        **({"unfinished": unfinished} if unfinished and (
            ckpt.get("kind") != "linear" or isinstance(ckpt.get("encoder_unfinished"), dict))
           else {}),
        # what it was taken from: a fine-tuned or supervised encoder read as one of
        # the pretraining's step alone (the same line for other weights)
        "exported_from": {"kind": ckpt.get("kind"), "trained": trained_for(ckpt),
                          # (resolved, as a card's checkpoint: the export is moved)
                          "file": str(Path(ckpt.get("file", checkpoint)).resolve())},
    }
    out = Path(out)
    save_checkpoint(blob, out.parent, out.name, None, replace=overwrite)
    return {"out": str(out), "format": "checkpoint", **spec}


def _size_guessed(ckpt: dict[str, Any], image_size: int | None) -> dict[str, bool]:
    """The ``size_guessed`` record of an export of ``ckpt``: where it holds imported
    weights, True for a guessed side (pretrained.side_guessed), False for one given
    (``image_size``) or recorded; none at all for an export of before 2026-12-06, which
    kept no record (its side 'perhaps' a guess): the new export reads as it did."""
    if not ckpt.get("imported"):
        return {}
    guessed = None if image_size is not None else side_guessed(ckpt)
    return {} if guessed == "perhaps" else {"size_guessed": guessed == "guessed"}


def export_torchvision(checkpoint: str | Path, out: str | Path,
                       image_size: int | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Write the encoder's weights in torchvision's layout (:mod:`simclr.torchvision_io`),
    checked first: torchvision's model loads them strictly and computes the encoder's h.
    The file records no image size: where simclr would read it back at another side
    than the encoder's, a note says which ``--image-size`` to give. ``overwrite`` False:
    a file (or card) another process wrote there meanwhile is kept, refused."""
    ckpt = at_image_size(load_checkpoint(checkpoint), image_size, checkpoint)
    encoder, spec = encoder_from_checkpoint(ckpt)  # (NaN weights refused: check_finite)
    model, state, code = torchvision_model(encoder, spec["image_size"])
    size = spec["image_size"]
    images = torch.rand(CHECK_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = encoder.float().eval()(images), model.eval()(images)
    if not torch.allclose(got, expected, atol=ATOL, rtol=RTOL):  # a renaming gone wrong
        raise SimCLRError(f"torchvision's {spec['arch']} does not reproduce the encoder "
                          f"(max difference {(got - expected).abs().max().item():.3g})")
    unfinished = note_unfinished(Path(ckpt.get("file", checkpoint)), ckpt)
    out = Path(out)
    # The file records no size or preprocessing: its card does (a torchvision pipeline
    # would otherwise feed 224 px with ImageNet's mean/std).
    # (the file's whole path: the code is copied to run from anywhere, as the card is)
    load = f"{code}; m.load_state_dict(torch.load({str(out.resolve())!r})); m.eval()"
    card = {**program_card(spec, "h", encoder.feature_dim, card_origin(ckpt, unfinished),
                           "torchvision", Path(checkpoint)), "usage": load}
    _written_with_card(out, lambda tmp: torch_save(state, tmp), card, overwrite)
    read_back = assumed_side(spec["cifar_stem"])
    if spec["arch"] in ARCHS and size != read_back:  # e.g. an ImageNet stem at 32 px
        print(f"note: {out} records no image size; simclr reads it at {read_back} px: "
              f"give --image-size {size} to evaluate it at {_side_named(ckpt, image_size)}",
              file=sys.stderr)
    return {"out": str(out), "format": "torchvision", **spec, "load": load,
            "card": str(card_file(out))}


def _side_named(ckpt: dict[str, Any], image_size: int | None) -> str:
    """What the side an export is for (:func:`encoder_spec`'s ``image_size``) is, for a
    note: the --image-size given, the run's --eval-size (not the side it was trained
    at, which the note named before), or the trained side."""
    if image_size:
        return "the side it was exported for"
    augment = ckpt["config"]["augment"]
    trained, evaluated = int(augment["size"]), augment.get("eval_size")
    if evaluated and int(evaluated) != trained:
        return f"its --eval-size (it was trained at {trained} px)"
    return "the side it was trained at"


def _written_with_card(out: Path, write: Callable[[Path], Any], card: dict[str, Any],
                       overwrite: bool) -> None:
    """``write(tmp)`` renamed to ``out``, then its card beside it (``<out>.json``). An
    earlier export's card (:func:`drop_replaced_card`) is removed just before the
    rename, so a kill leaves a program without a card beside it (a .pt2 keeps its own
    inside), never beside a card of another model, whose side or source its readers
    would take."""
    def then_without_old_card(tmp: Path) -> None:
        write(tmp)
        if overwrite:  # (without: the command refused an existing --out before)
            drop_replaced_card(out)

    written(out, then_without_old_card, replace=overwrite)
    write_json(card_file(out), card, replace=overwrite)


def card_origin(ckpt: dict[str, Any], unfinished: dict[str, Any] | None) -> dict[str, Any]:
    """Where the exported weights come from, for a card: ``step``, the encoder's
    pretraining step (:func:`encoder_trained_step`), and ``total_steps``, the steps that
    training planned (None where the file does not say: a linear or fine-tuned
    classifier records its own plan, not its encoder's); ``unfinished``: the step and
    planned steps of the unfinished training the weights are from (:func:`note_unfinished`),
    which the half-trained weights do not show. Also the checkpoint's
    ``kind`` and what its weights are (``trained``: :func:`simclr.pretrained.trained_for`,
    a fine-tuned or supervised model's, the random-init baseline's), not only its
    encoder's pretraining step."""
    total = ckpt.get("total_steps")
    own = ckpt.get("kind") not in ("linear", "finetune")  # (their step is the encoder's)
    origin: dict[str, Any] = {"step": encoder_trained_step(ckpt),
                              "total_steps": total if own and isinstance(total, int) else None,
                              "kind": ckpt.get("kind"), "trained": trained_for(ckpt)}
    if unfinished:
        origin["unfinished"] = unfinished
    if ckpt.get("features", "pretrained") != "pretrained":  # a random-init baseline's
        origin["features"] = str(ckpt["features"])
    if ckpt.get("imported"):
        origin["imported"] = str(ckpt["imported"])
    return origin


def export_program(checkpoint: str | Path, out: str | Path, fmt: str,
                   layer: str = "h", image_size: int | None = None,
                   overwrite: bool = True) -> dict[str, Any]:
    """Trace the representation at ``layer`` and write it as a ``pt2`` or ``onnx`` program.

    The file is written to a temporary name, checked
    (:func:`simclr.programs.check_program`) and only then renamed over ``out``; the card
    follows as ``<out>.json``. ``overwrite`` False: a file (or card) another process
    wrote there meanwhile is kept, refused.
    """
    write_program = {"pt2": write_pt2, "onnx": write_onnx}[fmt]
    source = classifier_file(checkpoint) if layer == "logits" else checkpoint_file(checkpoint)
    ckpt = load_checkpoint(source)
    if layer == "logits" and image_size is not None:  # (predict applies it at its own)
        fitted = encoder_spec(ckpt)["image_size"]
        if image_size != fitted:
            raise SimCLRError(f"--image-size {image_size}: the classifier was fitted on the "
                              f"features of {fitted} px images; drop --image-size")
    ckpt = at_image_size(ckpt, image_size, source)
    classes = None
    module: nn.Module
    if layer == "logits":
        module, spec, classes = classifier_from_checkpoint(ckpt)
    else:
        module, spec = representation_from_checkpoint(ckpt, layer)
    module = module.float().eval()
    check_finite(module, source)  # (a classifier's head layer too: the loaders read the rest)
    check_room(Path(out), module)
    unfinished = note_unfinished(source, ckpt)  # (as predict says it)
    size = spec["image_size"]
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(TRACE_BATCH, 3, size, size, generator=gen)
    check = torch.rand(CHECK_BATCH, 3, size, size, generator=gen)
    with torch.no_grad():
        expected = module(check)
    card = program_card(spec, layer, int(expected.shape[1]), card_origin(ckpt, unfinished),
                        fmt, source, classes)
    out = Path(out)
    result: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        write_program(module, example, tmp, card)
        result.update(check_program(tmp, fmt, check, expected))

    _written_with_card(out, write, card, overwrite)  # each failure names the file not written
    return {"out": str(out), "format": fmt, "layer": layer, "dim": card["output"]["shape"][1],
            **spec, **result}


