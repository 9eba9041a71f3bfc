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
(:func:`program_card`) is stored inside the file and beside it as ``<out>.json``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simclr import __version__
from simclr.checkpoint import is_run_checkpoint, save_checkpoint
from simclr.checkpoint_read import checkpoint_file, load_checkpoint
from simclr.classifiers import (
    classifier_file,
    classifier_from_checkpoint,
    note_unfinished,
    unfinished_state,
)
from simclr.config import ARCHS
from simclr.decode import eval_side
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
from simclr.results import created_removed_on_failure, output_file, real_folder
from simclr.torchvision_io import assumed_side, torchvision_model

FORMATS = ("checkpoint", "pt2", "onnx", "torchvision")
_SUFFIXES = {".pt": "checkpoint", ".pth": "checkpoint", ".pt2": "pt2", ".onnx": "onnx"}
CARD_FILE = "simclr.json"  # the card's name inside a .pt2 archive and in ONNX metadata
# The traced batch and the checked batch differ, so a program that baked the batch
# size in fails its check instead of failing later in a user's hands.
TRACE_BATCH, CHECK_BATCH = 2, 3
ATOL, RTOL = 1e-4, 1e-3  # fp32 kernels of another runtime; the outputs are O(1)
# torch.onnx's dynamo exporter converts these encoders from torch 2.7 with onnxscript 0.7
# on (checked: torch 2.7.1 and 2.14.1, onnxscript 0.7.2). Before, it took no
# dynamic_shapes (torch 2.4), failed on batch norm (2.5, 2.6) or built a model that
# onnxscript 0.2 could not save (2.6, 2.7): there the TorchScript exporter writes the
# file (checked: torch 2.4.1 and 2.14.1), which torch 2.9 on deprecates.
DYNAMO_ONNX_SINCE = {"torch": (2, 7), "onnxscript": (0, 7)}


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
                              f"use --format pt2 or onnx to export {what}")
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
        # (a linear classifier's unfinished fitting leaves its frozen encoder as it was)
        **({"unfinished": unfinished_state(ckpt)}
           if unfinished and ckpt.get("kind") != "linear" else {}),
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
    written(out, lambda tmp: torch_save(state, tmp), replace=overwrite)
    # The file records no size or preprocessing: its card does (a torchvision pipeline
    # would otherwise feed 224 px with ImageNet's mean/std).
    # (the file's whole path: the code is copied to run from anywhere, as the card is)
    load = f"{code}; m.load_state_dict(torch.load({str(out.resolve())!r})); m.eval()"
    card = {**program_card(spec, "h", encoder.feature_dim, card_origin(ckpt, unfinished),
                           "torchvision", Path(checkpoint)), "usage": load}
    write_json(card_file(out), card, replace=overwrite)
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


def card_origin(ckpt: dict[str, Any], unfinished: bool) -> dict[str, Any]:
    """Where the exported weights come from, for a card: ``step``, the encoder's
    pretraining step (:func:`encoder_trained_step`), and ``total_steps``, the steps that
    training planned (None where the file does not say: a linear or fine-tuned
    classifier records its own plan, not its encoder's); with ``unfinished`` (the
    checkpoint's own training has not finished: :func:`note_unfinished`), its step and
    planned steps, which the half-trained weights do not show. Also the checkpoint's
    ``kind`` and what its weights are (``trained``: :func:`simclr.pretrained.trained_for`,
    a fine-tuned or supervised model's, the random-init baseline's), not only its
    encoder's pretraining step."""
    total = ckpt.get("total_steps")
    own = ckpt.get("kind") not in ("linear", "finetune")  # (their step is the encoder's)
    origin: dict[str, Any] = {"step": encoder_trained_step(ckpt),
                              "total_steps": total if own and isinstance(total, int) else None,
                              "kind": ckpt.get("kind"), "trained": trained_for(ckpt)}
    if unfinished:
        origin["unfinished"] = unfinished_state(ckpt)
    if ckpt.get("features", "pretrained") != "pretrained":  # a random-init baseline's
        origin["features"] = str(ckpt["features"])
    if ckpt.get("imported"):
        origin["imported"] = str(ckpt["imported"])
    return origin


def program_card(spec: dict[str, Any], layer: str, dim: int, origin: dict[str, Any],
                 fmt: str, source: Path, classes: list[str] | None = None) -> dict[str, Any]:
    """What a program computes and what it expects: stored in it and beside it;
    ``origin``: what its weights are and how far they were trained (:func:`card_origin`)."""
    size = spec["image_size"]
    output: dict[str, Any] = {"name": layer, "dtype": "float32", "shape": ["batch", dim]}
    output["what"] = {
        "h": "h, the encoder's pooled output (the representation the paper evaluates)",
        "z": "z = g(h), the projection head's output",
        "logits": "the classifier's logits; softmax gives the class probabilities",
    }.get(layer, f"the output of layer {layer[1:]} of the projection head")
    if classes is not None:
        output["classes"] = classes
    return {
        "format": "simclr-program", "version": 1, "program": fmt,
        "input": {
            "name": "images", "dtype": "float32", "shape": ["batch", 3, size, size],
            "values": "RGB in [0, 1], channels first, no mean/std normalisation",
            "preprocess": f"simclr's evaluation transform: images whose longer side is "
                          f"<= 32 have their central square (a square one: all of it) "
                          f"resized to {size} x {size}; larger ones (a 20 x 40 one too) "
                          f"shorter side to {eval_side(size)} "
                          "(bicubic, antialiased), the central square, then its central "
                          f"{size} x {size}; values clamped to [0, 1] after the resize; the "
                          "file read with its EXIF orientation, transparency on white, "
                          "16-bit values scaled to 8 bits; "
                          f"simclr.augment.eval_resize(PIL.Image.open(file), {size}) does "
                          "it, and "
                          "simclr embed / predict --precision fp32 compute that for each "
                          "file to the rounding of the 8-bit pixels they store (the "
                          "resized image rounded to whole levels of 255 before the crop: "
                          "0.1-0.4% of a feature; JPEGs of more than 4x the decoded side "
                          "read in draft mode, at 1/2 to 1/8 scale)",
        },
        "usage": {"pt2": "torch.export.load(path).module(), in evaluation mode already "
                         "(such programs refuse .eval() and .train()); only the batch "
                         "dimension is dynamic",
                  "onnx": "onnxruntime.InferenceSession(path); only the batch dimension "
                          "is dynamic"}.get(fmt),
        "output": output,
        "encoder": {k: spec[k] for k in ("arch", "width", "cifar_stem", "image_size",
                                         "projection_shortcuts") if k in spec},
        **origin, "checkpoint": str(source.resolve()), "simclr_version": __version__,
    }


def check_room(out: Path, module: nn.Module) -> None:
    """A program holds the weights in float32 and its graph: without room for them, the
    write would fail after the tracing, so the free space is checked first (twice the
    weights, and a MiB)."""
    import shutil

    need = 2 * sum(t.numel() * 4 for t in module.state_dict().values()) + (1 << 20)
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        return
    if free < need:
        raise SimCLRError(f"could not write {out}: No space left on device (about "
                          f"{need / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)")


def export_program(checkpoint: str | Path, out: str | Path, fmt: str,
                   layer: str = "h", image_size: int | None = None,
                   overwrite: bool = True) -> dict[str, Any]:
    """Trace the representation at ``layer`` and write it as a ``pt2`` or ``onnx`` program.

    The file is written to a temporary name, checked (:func:`check_program`) and only
    then renamed over ``out``; the card follows as ``<out>.json``. ``overwrite`` False:
    a file (or card) another process wrote there meanwhile is kept, refused.
    """
    write_program = {"pt2": _write_pt2, "onnx": _write_onnx}[fmt]
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

    written(out, write, replace=overwrite)  # each failure names the file not written
    write_json(card_file(out), card, replace=overwrite)
    return {"out": str(out), "format": fmt, "layer": layer, "dim": card["output"]["shape"][1],
            **spec, **result}


def card_file(export: Path) -> Path:
    """Where an export's card lies: ``<file>.json`` beside it."""
    return export.with_name(export.name + ".json")


def read_card(program: Path) -> dict[str, Any]:
    """The card of an exported ``.pt2`` / ``.onnx`` (what it computes and expects):
    the ``<file>.json`` beside it, else the copy inside it (the ``.pt2`` archive's
    :data:`CARD_FILE`; the ONNX metadata, where the onnx package is installed)."""
    import zipfile

    texts = []
    beside = card_file(program)
    if beside.is_file():
        texts.append(lambda: beside.read_text(encoding="utf-8"))
    if program.suffix.lower() == ".pt2":
        def inside() -> str:
            with zipfile.ZipFile(program) as archive:
                name = next(n for n in archive.namelist() if n.endswith(f"extra/{CARD_FILE}"))
                return archive.read(name).decode()
        texts.append(inside)
    else:
        def inside() -> str:
            import onnx

            model = onnx.load(str(program), load_external_data=False)
            return next(p.value for p in model.metadata_props if p.key == CARD_FILE)
        texts.append(inside)
    unread = "inside it"
    for text in texts:
        try:
            card = json.loads(text())
        except ImportError:  # the ONNX copy: not read, which does not mean it is not there
            unread = 'inside it, which needs the onnx package: pip install "simclr[onnx]"'
            continue
        except Exception:  # (not there, not readable: the next one)
            continue
        if isinstance(card, dict) and card.get("format") == "simclr-program":
            return card
    raise SimCLRError(f"{program}: an exported program without a readable simclr card "
                      f"({beside.name} beside it, or {unread})")


def _trace_error(what: str, exc: Exception) -> SimCLRError:
    return SimCLRError(f"{what} could not trace the encoder: {error_cause(exc)}")


# Colours (ESC [ ... m), also as the escaped text a repr of one leaves in a message
_ANSI = re.compile(r"(?:\x1b|\\x1b|\\033)\[[0-9;]*[A-Za-z]")
# onnxruntime's temporary file, C++ source location and function ahead of its cause
_ORT_SOURCE = re.compile(r"Load model from .*? failed:\s*(?:/\S*onnxruntime_src/\S+:\d+ "
                         r"[\w:~]+\([^)]*\)\s*)?")
# torch.onnx's advice after its first line's cause ("... step 3/3 of exporting the
# model to ONNX. Next steps:" and a list): nothing the user of simclr acts on
_ONNX_ADVICE = re.compile(r"\s*This is step \d+/\d+ of exporting the model to ONNX\."
                          r"|\s*Next steps:\s*$")


def _first_line(exc: BaseException, limit: int) -> str:
    """The first line of ``exc``'s message (its type's name if empty), without colour
    codes or torch.onnx's advice, cut to ``limit`` characters."""
    text = _ANSI.sub("", str(exc)).strip().split("\n")[0]
    text = _ORT_SOURCE.sub("", _ONNX_ADVICE.sub("", text)).strip()
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_cause(exc: BaseException) -> str:
    """One line for a failure of torch.export / torch.onnx: its first line and, where it
    was raised from another exception, the first line of the innermost one, which names
    what went wrong (torch.onnx's own says only which of its steps failed, and
    onnxscript's 'Error calling serialize_model_into with: <the whole model>')."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    if root is exc:
        return _first_line(exc, 200)
    head = _first_line(exc, 120)
    if head.endswith(".") and not head.endswith("..."):  # (a sentence, not a cut)
        head = head[:-1]
    return f"{head}: {_first_line(root, 200)}"


def _batch_free() -> tuple[dict[int, Any]]:
    """dynamic_shapes for one input whose dimension 0 (the batch) is free. Bounded: torch
    2.7's torch.export refused the encoders with an unbounded one ('Constraints violated
    (batch)!', a guard that the batch is not 2**63 - 1)."""
    return ({0: torch.export.Dim("batch", min=1, max=2**62)},)


def _write_pt2(module: nn.Module, example: torch.Tensor, path: Path,
               card: dict[str, Any]) -> None:
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=_batch_free())
    except Exception as exc:  # torch.export's failures have many types
        raise _trace_error("torch.export", exc) from None
    # Into memory, then to the file in Python: torch's archive writer, its write to a file
    # failing (a file-size limit, a full disk), wrote again on closing and aborted the
    # process from C++ (SIGABRT, no exception to catch); a failed write is an OSError here.
    archive = io.BytesIO()  # (a file object: torch.export wants a .pt2 name otherwise)
    torch.export.save(program, archive, extra_files={CARD_FILE: json.dumps(card)})
    path.write_bytes(archive.getbuffer())


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path,
                card: dict[str, Any]) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx's exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise SimCLRError('ONNX export needs the onnx and onnxscript packages: '
                          'pip install "simclr[onnx]"') from None
    for name in ("onnxscript", "onnx_ir"):  # their INFO lines narrate each optimizer pass
        logging.getLogger(name).setLevel(logging.WARNING)
    if dynamo_onnx():
        save = _dynamo_onnx(module, example, card)
    else:
        save = _torchscript_onnx(module, example, card)
    try:
        save(path)  # one self-contained file
    except OSError:
        raise  # (a full disk, a file-size limit: said by written(), as for every file)
    except Exception as exc:  # a model the exporter built but its serializer refuses
        raise SimCLRError(f"torch.onnx could not save the ONNX program: "
                          f"{error_cause(exc)}") from None


def dynamo_onnx() -> bool:
    """Whether torch.onnx's dynamo exporter converts the encoders here: torch and
    onnxscript releases from :data:`DYNAMO_ONNX_SINCE` on."""
    import onnxscript

    versions = {"torch": torch.__version__, "onnxscript": onnxscript.__version__}
    for package, since in DYNAMO_ONNX_SINCE.items():
        release = re.match(r"(\d+)\.(\d+)", str(versions[package]))
        if release is None or tuple(map(int, release.groups())) < since:
            return False
    return True


def _dynamo_onnx(module: nn.Module, example: torch.Tensor,
                 card: dict[str, Any]) -> Callable[[Path], object]:
    """The encoder through torch.export and onnxscript; returns what saves it."""
    try:
        program = torch.onnx.export(
            module, (example,), None, dynamo=True, dynamic_shapes=_batch_free(),
            input_names=["images"], output_names=[card["output"]["name"]], verbose=False)
    except Exception as exc:  # the exporter's failures have many types
        raise _trace_error("torch.onnx", exc) from None
    # (the ignores: with dynamo=True it returns the program)
    program.model.metadata_props[CARD_FILE] = json.dumps(card)  # type: ignore[union-attr]
    return lambda path: program.save(str(path), external_data=False)  # type: ignore[union-attr]


def _torchscript_onnx(module: nn.Module, example: torch.Tensor,
                      card: dict[str, Any]) -> Callable[[Path], object]:
    """The encoder through torch.jit.trace (torch.onnx's older exporter), its batch
    dimension named dynamic; returns what saves it."""
    import onnx

    output = card["output"]["name"]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # its deprecation (torch 2.9 on), tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buffer, dynamo=False,  # type: ignore[arg-type]  # (a file too)
                              input_names=["images"], output_names=[output],
                              dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}})
        model = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:  # the exporter's failures have many types
        raise _trace_error("torch.onnx", exc) from None
    model.metadata_props.add(key=CARD_FILE, value=json.dumps(card))
    return lambda path: path.write_bytes(model.SerializeToString())


def check_program(path: Path, fmt: str, images: torch.Tensor,
                  expected: torch.Tensor) -> dict[str, Any]:
    """Run the written program on ``images`` and compare with the eager ``expected``.

    Raises SimCLRError when they differ beyond ATOL + RTOL |expected|. An ONNX file is
    run with onnxruntime where it is installed (part of the ``onnx`` extra), otherwise
    left unchecked, which the returned ``checked_with`` says.
    """
    run = _runner(path, fmt)
    if run is None:
        return {"checked_with": "nothing (onnxruntime is not installed)"}
    try:  # (a program that baked the traced batch in refuses this one: its guard fails)
        got = torch.as_tensor(np.asarray(run(images)))
    except Exception as exc:  # the runtimes' failures have many types
        raise SimCLRError(f"the exported program failed on {tuple(images.shape)} images "
                          f"(traced with a batch of {TRACE_BATCH}): {error_cause(exc)}; "
                          "nothing was written") from None
    if got.shape != expected.shape:
        raise SimCLRError(f"the exported program returned shape {tuple(got.shape)} for "
                          f"{tuple(images.shape)} images, not {tuple(expected.shape)}")
    err = float((got - expected).abs().max())
    if not torch.allclose(got, expected, atol=ATOL, rtol=RTOL):
        raise SimCLRError(f"the exported program differs from the model by up to {err:.3g}; "
                          "nothing was written")
    return {"checked_with": "torch.export.load" if fmt == "pt2" else "onnxruntime",
            "max_abs_diff": err}


def load_pt2(path: Path) -> Any:
    """``torch.export.load(path)``, without the FutureWarning torch 2.4 prints on each
    load (its loader's own torch.load with weights_only=False: a dozen lines that
    the user can do nothing about)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"You are using `torch\.load` with "
                                "`weights_only=False`", category=FutureWarning)
        with open(path, "rb") as f:
            return torch.export.load(f)


def _runner(path: Path, fmt: str) -> Callable[[torch.Tensor], Any] | None:
    if fmt == "pt2":
        program = load_pt2(path).module()

        def run_pt2(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return program(x)
        return run_pt2
    try:
        import onnxruntime
    except ImportError:
        return None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # e.g. an ONNX IR version newer than this onnxruntime's
        raise SimCLRError("onnxruntime could not load the exported program to check it: "
                          f"{error_cause(exc)}") from None
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]
