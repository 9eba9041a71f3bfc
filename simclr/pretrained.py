"""Models from checkpoints and back: the encoder (or its head, or a layer of the head),
classifiers, and what they compute on a folder (embed, predict).

Works on every checkpoint this package writes (pretraining, supervised baseline,
fine-tuning, linear evaluation, encoder export): each holds the encoder's weights under
``encoder.*`` and the config that rebuilds its architecture; classifiers add ``fc.*``
(and ``neck.*``, a head layer kept by fine-tuning) and their ``classes``.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import numbers
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simclr.backbones import TorchvisionEncoder, side_problem
from simclr.checkpoint import (
    CLASSIFIER_FILES,
    LAST,
    PARTIAL_SUFFIX,
    checked_checkpoint,
    checkpoint_file,
    imported_checkpoint,
    is_complete,
    load_checkpoint,
    load_weights,
    read_weights_file,
    save_checkpoint,
    weight_mismatch,
)
from simclr.config import MAX_SIDE, MIN_SIZE, Config, DataConfig
from simclr.errors import SimCLRError, check_counts, is_amount
from simclr.files import written
from simclr.launch import shell_quote
from simclr.models import (
    Classifier,
    HeadTap,
    ProjectionHead,
    ResNet,
    SimCLRModel,
    build_encoder,
    build_model,
    resolve_cifar_stem,
)
from simclr.neighbors import PATHS_KEY, WEIGHTS_KEY, paths_array, spreadsheet_cell
from simclr.results import created_removed_on_failure, output_file
from simclr.runtime import refuse_spawned_import
from simclr.settings import config_from_dict
from simclr.torchvision_io import is_torchvision_state, torchvision_weights, unwrapped_state


def encoder_spec(ckpt: dict[str, Any]) -> dict[str, Any]:
    """(arch, width, cifar_stem, image_size) of the encoder stored in a checkpoint.

    ``image_size`` is the side evaluations read images at: the config's
    ``augment.eval_size`` where set, else the training side (which alone decides an
    automatic CIFAR stem)."""
    try:
        model, augment = ckpt["config"]["model"], ckpt["config"]["augment"]
        size = int(augment["size"])
        return {
            "arch": model["arch"],
            "width": float(model["width"]),
            "cifar_stem": resolve_cifar_stem(model["cifar_stem"], size, model["arch"]),
            "image_size": int(augment.get("eval_size") or size),
            # only where set (runs from before the option: torchvision's shortcuts)
            **({"projection_shortcuts": True} if model.get("projection_shortcuts") else {}),
        }
    except (KeyError, TypeError, ValueError):
        raise SimCLRError("checkpoint has no usable model config (not a simclr checkpoint?)") \
            from None


IMAGE_SIZE_HELP = ("evaluate at this side in pixels instead of the checkpoint's (default: "
                   "its --eval-size, else the side it was trained at; imported ResNet "
                   "weights: 224, CIFAR stem 32)")


def at_image_size(ckpt: dict[str, Any], image_size: int | None,
                  path: str | Path | None = None) -> dict[str, Any]:
    """``ckpt`` as evaluated at ``image_size`` px (``--image-size``; None: its own).

    The encoder's stem is fixed first (an automatic CIFAR stem follows the trained
    side, not the new one), so the same weights run on larger or smaller inputs: the
    ResNets end in a global average pool (App. B.9 evaluates CIFAR encoders at 32 px,
    ImageNet ones at 224). A ViT's position embeddings fix its side. Imported weights
    record no side (``size_guessed``): without ``image_size`` a note naming ``path``
    says which is used.
    """
    spec = encoder_spec(ckpt)
    if image_size is None:
        guessed = side_guessed(ckpt)
        if guessed and path is not None:
            how = "records no image size" if guessed == "guessed" else \
                "was exported by an earlier simclr, which did not record whether its side was given"
            print(f"note: {path} {how} ({ckpt['imported']}): read as "
                  f"{spec['image_size']} px images; --image-size S for another side",
                  file=sys.stderr)
        problem = side_problem(spec["arch"], spec["image_size"])  # (a run's --eval-size,
        if problem is not None:  # recorded before pretrain checked it: a new run's only)
            raise SimCLRError(f"the checkpoint's evaluation side (its --eval-size){problem}; "
                              "give --image-size")
        return ckpt
    if not MIN_SIZE <= image_size <= MAX_SIDE:
        raise SimCLRError(f"--image-size: must be {MIN_SIZE} to {MAX_SIDE} pixels, "
                          f"got {image_size}")
    if spec["arch"].startswith("vit_") and image_size != spec["image_size"]:
        raise SimCLRError(f"--image-size {image_size}: a {spec['arch']}'s position "
                          f"embeddings are for {spec['image_size']} px, the side it was "
                          "trained at; drop --image-size")
    problem = side_problem(spec["arch"], image_size)  # (not a RuntimeError in the forward)
    if problem is not None:
        raise SimCLRError(f"--image-size{problem}")
    return {**ckpt, "config": config_at_side(ckpt["config"], spec["cifar_stem"], image_size,
                                             trained=side_guessed(ckpt) is None)}


def side_guessed(ckpt: dict[str, Any]) -> str | None:
    """'guessed' where ``ckpt``'s image side is a guess (imported weights record none:
    ``size_guessed``), 'perhaps' for an export of imported weights an earlier simclr
    wrote (before 2026-12-06 it kept the guess or the --image-size given alike, unmarked),
    None where the side is the trained one."""
    if ckpt.get("size_guessed"):
        return "guessed"
    if ckpt.get("imported") and "exported_from" in ckpt and "size_guessed" not in ckpt:
        return "perhaps"
    return None


def config_at_side(config: dict[str, Any], cifar_stem: bool, image_size: int,
                   trained: bool = True) -> dict[str, Any]:
    """A copy of a saved ``config`` that reads ``image_size`` px images: the stem fixed
    first (an automatic one follows the trained side, not the new one; a 40-px encoder
    read at 32 keeps its ImageNet stem), then ``image_size`` as its evaluation side
    (``augment.eval_size``, which :func:`encoder_spec` reads). The trained side
    (``augment.size``) stays: what was exported or fitted at another side still says
    the side its encoder was trained at ('24 px (evaluated at 40)', not '40 px').
    ``trained`` False: the recorded side is no trained one but a guess (imported
    weights), replaced by ``image_size``."""
    config = copy.deepcopy(config)
    config.setdefault("model", {})["cifar_stem"] = bool(cifar_stem)
    augment = config.setdefault("augment", {})
    if not trained or not augment.get("size"):
        augment["size"] = image_size
    augment["eval_size"] = image_size if image_size != augment["size"] else None
    return config


def encoder_from_checkpoint(
    ckpt: dict[str, Any], random_init: bool = False
) -> tuple[ResNet | TorchvisionEncoder, dict[str, Any]]:
    """Rebuild the encoder and load its weights; returns (encoder, spec)."""
    spec = encoder_spec(ckpt)
    # The initial weights are drawn from the global RNG only where they are kept: a
    # loaded encoder leaves the caller's random stream as it was.
    with torch.random.fork_rng(devices=[], enabled=not random_init):
        encoder = build_encoder(spec["arch"], spec["width"], spec["cifar_stem"],
                                image_size=spec["image_size"],
                                projection_shortcuts=spec.get("projection_shortcuts", False))
    if not random_init:  # (the file's other parts, a head or classifier, are not read)
        load_weights(encoder, ckpt, "encoder.")
        check_finite(encoder, ckpt.get("file", "the checkpoint"))
    encoder.image_size = spec["image_size"]  # the input side to evaluate it at
    return encoder, spec


def model_from_checkpoint(
    ckpt: dict[str, Any], random_init: bool = False
) -> tuple[SimCLRModel, dict[str, Any]]:
    """Encoder f and projection head g of a pretraining checkpoint; returns (model, spec)."""
    if ckpt.get("kind") != "pretrain":
        raise SimCLRError("this checkpoint has no projection head (only pretraining "
                          "checkpoints do): only the representation h can be read from it")
    spec = encoder_spec(ckpt)
    cfg = config_from_dict(ckpt["config"]).model
    cfg.cifar_stem = spec["cifar_stem"]  # the trained side's, whatever side it reads
    if random_init:  # the encoder of --random-init on h (build_encoder's): every layer's
        cfg.zero_init_residual = False  # baseline, h, gK, z, reads one random network
    with torch.random.fork_rng(devices=[], enabled=not random_init):  # as above
        model = build_model(cfg, spec["image_size"])
    if not random_init:
        load_weights(model, ckpt)
        check_finite(model, ckpt.get("file", "the checkpoint"))
    model.encoder.image_size = spec["image_size"]
    return model, spec


def check_finite(weights: nn.Module | dict[str, Any], where: str | Path) -> None:
    """Refuse weights or statistics holding NaN or inf (a diverged or damaged run's), in
    one line naming ``where`` they come from: every output of such a network is NaN,
    which an evaluation met only once a folder was decoded, a training as a diverged
    first step, an exported program as a check that 'differs by up to nan'.

    ``weights``: a module (its parameters and buffers: BatchNorm's running statistics
    too) or a state dict's tensors by name.
    """
    tensors = ([*weights.parameters(), *weights.buffers()] if isinstance(weights, nn.Module)
               else list(weights.values()))
    if not all(bool(torch.isfinite(t).all()) for t in tensors
               if isinstance(t, torch.Tensor) and t.is_floating_point()):
        raise SimCLRError(f"{where}: the weights hold NaN or inf values (a diverged or "
                          "damaged checkpoint?)")


LAYERS_HELP = "h (encoder output, default), z (head output g(h)), or gK (head layer K)"


def representation_from_checkpoint(
    ckpt: dict[str, Any], layer: str = "h", random_init: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The module x -> representation at ``layer`` ('h', 'z' or 'g1', 'g2', ...)."""
    if layer == "h":
        return encoder_from_checkpoint(ckpt, random_init)
    depth = parse_layer(layer)
    model, spec = model_from_checkpoint(ckpt, random_init)
    return HeadTap(model.encoder, model.head, depth or len(model.head.layers)), spec


def parse_layer(layer: str, flag: str = "--layer") -> int | None:
    """'z' -> None (the whole head), 'gK' -> K; anything else is a user error (named
    as ``flag``)."""
    if layer == "z":
        return None
    if isinstance(layer, str) and layer.startswith("g") and layer[1:].isascii() \
            and layer[1:].isdigit() and int(layer[1:]) >= 1:  # (not g²: int() refuses it)
        return int(layer[1:])
    raise SimCLRError(f"{flag}: unknown value {layer!r} ({LAYERS_HELP})")


def load_encoder(checkpoint: str | Path, device: str | torch.device = "cpu"
                 ) -> ResNet | TorchvisionEncoder:
    """The pretrained encoder f of a checkpoint, in eval mode: images (B,3,S,S) -> h (B,D).

    Inputs are float images in [0, 1] (no mean/std normalisation), S =
    ``encoder.image_size``; ``simclr.augment.eval_resize`` prepares them.
    """
    from simclr.runtime import resolve_device

    encoder, _ = encoder_from_checkpoint(load_checkpoint(checkpoint))
    if not isinstance(device, torch.device):  # a name: a missing GPU is named as such
        device = resolve_device(device)
    return encoder.to(device).eval()


def initial_weights(path: str) -> tuple[dict[str, Any], str]:
    """``--init-from``: (the file's weights under the model's names, what the file is).

    A simclr checkpoint or run (pretraining, supervised, fine-tuned, exported encoder):
    its ``encoder.*`` weights, and its ``head.*`` ones if it has a projection head;
    or a torchvision state dict (``torch.save(model.state_dict(), path)``, e.g. ImageNet
    weights, also wrapped as ``{"state_dict": ...}``): a ResNet's read as an encoder
    checkpoint (:func:`simclr.torchvision_io.as_encoder`), its ``fc`` dropped.
    Read with ``weights_only=True`` like every checkpoint.
    """
    try:
        state, file = read_weights_file(path)
        # A ResNet's is read as an encoder's, unwrapped as `--checkpoint` unwraps it.
        imported = imported_checkpoint(state, file)
        bare = unwrapped_state(state) if imported is None else None
        if bare is not None and is_torchvision_state(bare):
            # another torchvision network: its names are the encoder's, under net.
            check_finite(bare, f"--init-from {file}")
            return ({f"encoder.{k}": v for k, v in bare.items()},
                    f"torchvision weights {file}")
        ckpt = checked_checkpoint(imported or state, file)
    except SimCLRError as exc:
        raise SimCLRError(f"--init-from: {exc} (a simclr checkpoint or run, or a "
                          "torchvision state dict)") from None
    kept = {k: v for k, v in ckpt["model"].items() if k.startswith(("encoder.", "head."))}
    if not any(k.startswith("encoder.") for k in kept):
        raise SimCLRError(f"--init-from {path}: {file} holds no encoder weights")
    # (the head's too, though a head of another shape is not loaded: such a file is a
    # diverged or damaged one, and said so before the data are decoded)
    check_finite(kept, f"--init-from {file}")
    if ckpt.get("imported"):
        return kept, f"{ckpt['imported']} {file}"
    return kept, f"{ckpt.get('kind', 'simclr')} checkpoint {file} ({trained_for(ckpt)})"


def trained_for(ckpt: dict[str, Any]) -> str:
    """"step N" for a checkpoint simclr trained (a linear classifier: its encoder's
    pretraining step; a fine-tuned one adds its own steps), else where its weights came
    from."""
    origin = ckpt.get("exported_from")  # (simclr export: what it was taken from)
    if isinstance(origin, dict) and isinstance(origin.get("trained"), str):
        kind = origin.get("kind")
        # (a linear classifier's encoder is the frozen one it was fitted on)
        return origin["trained"] if kind in (None, "pretrain", "encoder", "linear") else \
            f"{kind} model, {origin['trained']}"
    step = encoder_trained_step(ckpt)
    if ckpt.get("features", "pretrained") != "pretrained":  # (a classifier's baseline)
        n = recorded_step(ckpt)
        return f"{ckpt['features']}" + (f", fine-tuned {n} step{'' if n == 1 else 's'}"
                                        if ckpt.get("kind") == "finetune" else "")
    if ckpt.get("kind") == "finetune":
        n = recorded_step(ckpt)
        own = f"fine-tuned {n} step{'' if n == 1 else 's'}"
        return f"step {step} {own}" if step is not None else own
    return f"step {step}" if step is not None else \
        str(ckpt.get("imported") or "step unknown")


def encoder_trained_step(ckpt: dict[str, Any]) -> int | None:
    """The pretraining step of a checkpoint's encoder: its own step, but a classifier's
    (linear: its own is 0; fine-tuned: its own counts the fine-tuning) is that of the
    encoder it started from, so that a chain of them keeps the pretraining's."""
    return fitted_on(ckpt) if ckpt.get("kind") in ("linear", "finetune") else \
        recorded_step(ckpt)


def recorded_step(ckpt: dict[str, Any], key: str = "step") -> int | None:
    """A checkpoint's ``key`` ('step'; 'encoder_step', a classifier's encoder's): None
    where it has none, else a whole number of steps. Any other value (a hand edit, a
    damaged file) is one line saying so, never printed (:func:`unfinished_training`)
    nor met by int() as a traceback."""
    value = ckpt.get(key)
    if value is None:
        return None
    if not is_amount(value, whole=True):
        whose = "encoder's step" if key == "encoder_step" else key
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its {whose} is "
                          "not a whole number of steps")
    return int(value)


def fitted_on(ckpt: dict[str, Any]) -> int | None:
    """The pretraining step of the encoder a classifier (linear, finetune) started from:
    recorded in it, or (files saved before it was) in the results file beside it; None
    for a classifier of the random-init baseline."""
    if ckpt.get("features", "pretrained") != "pretrained":
        return None
    if ckpt.get("encoder_step") is not None:
        return recorded_step(ckpt, "encoder_step")
    step = classifier_source(Path(ckpt["file"])).get("step") if ckpt.get("file") else None
    return step if isinstance(step, int) else None


def _fitting_encoder_weights(model: SimCLRModel, weights: dict[str, Any], what: str
                             ) -> dict[str, Any]:
    """The encoder's part of :func:`initial_weights` under ``model.encoder``'s names;
    a mismatch is one line naming the first differing tensor."""
    found = {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
    if what.startswith("torchvision"):  # torchvision's layout
        found = torchvision_weights(found, model.encoder)
    expected = model.encoder.state_dict()
    problem = weight_mismatch(expected, found, "encoder.")
    if problem is not None:
        raise SimCLRError(f"--init-from: the {what} does not fit this run's "
                          f"{model.encoder.arch} width {model.encoder.width:g}: {problem}"
                          f"{_shortcuts_hint(expected, found)}")
    return found


def _shortcuts_hint(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """Where the encoders differ in projection shortcuts alone (a cifar10 preset run of
    an earlier simclr has none in the blocks that keep their width), the flag that fits
    the file."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if not missing + unexpected or any(".shortcut." not in k for k in missing + unexpected):
        return ""
    flag = "--no-projection-shortcuts" if missing else "--projection-shortcuts"
    return f" (the file's encoder was built with{'out' if missing else ''} them: give {flag})"


def check_initial_weights(cfg: Config, weights: dict[str, Any], what: str) -> None:
    """:func:`apply_initial_weights`' refusal, before any image is decoded: against the
    run's model built on the meta device (no memory, no random numbers drawn). The few
    torchvision networks that read their own tensors while being built (RegNets) cannot
    be built there: theirs is checked when loaded, after the data."""
    try:
        with torch.device("meta"):
            model = build_model(cfg.model, cfg.augment.size)
    except NotImplementedError:  # "Cannot copy out of meta tensor"
        return
    _fitting_encoder_weights(model, weights, what)


def apply_initial_weights(model: SimCLRModel, weights: dict[str, Any], what: str) -> str:
    """Load :func:`initial_weights` into a pretraining model: the encoder strictly (a
    mismatch is one line naming the first differing tensor), the head where the file
    has one of the same shape (else it keeps its fresh init). Returns a log line."""
    model.encoder.load_state_dict(_fitting_encoder_weights(model, weights, what))
    head = {k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")}
    same_head = bool(head) and weight_mismatch(model.head.state_dict(), head) is None
    if same_head:
        model.head.load_state_dict(head)
    return (f"initial weights: the {what}; encoder loaded, projection head "
            f"{'loaded' if same_head else 'freshly initialised'}")


def folder_features(
    module: nn.Module, image_size: int, data: str, batch_size: int, device: str,
    precision: str, workers: int | None, cache_dir: str, unlabeled: bool = False,
    max_pixels: int = DataConfig.max_pixels, progress: str | None = None,
    channels_last: bool = True,
) -> tuple[Any, np.ndarray, np.ndarray, list[str]]:
    """``module``'s outputs over a folder with the evaluation transform: (the opened
    source, float32 (N, D) in source order, labels int64 (N,), the N files' paths;
    unreadable files are left out; ``unlabeled``: also the images beside an ImageFolder's
    class folders, labelled -1; ``max_pixels``: larger images are skipped unread;
    ``progress``: the pass's name on stderr, None: unseen; ``channels_last``: images and
    weights in that memory format, the faster, as the evaluations compute them)."""
    from simclr.data import open_source
    from simclr.features import indexed_features
    from simclr.runtime import resolve_device, resolve_precision
    from simclr.validate import validate_data

    data_cfg = DataConfig(workers=workers, cache_dir=cache_dir, max_pixels=max_pixels)
    validate_data(data_cfg)  # (from Python: -1 workers or a text max_pixels met torch)
    dev = resolve_device(str(device))  # (a torch.device, as load_encoder takes, too)
    source = open_source(data, data_cfg, train=False, image_size=image_size, evaluation=True,
                         unlabeled=unlabeled)
    feats, labels, rows = indexed_features(module, source, image_size, batch_size, dev,
                                           resolve_precision(precision, dev),
                                           channels_last=channels_last, progress=progress)
    # A named data set (the digits, torchvision's) has no files: its rows are named
    # by their place in it, e.g. 'digits[test]#17' (neighbors, predict's CSV name them).
    names = source.paths or [f"{source.name}#{i}" for i in range(source.num_images)]
    return source, feats, labels, [names[i] for i in rows]


# Stopped mid-way (an error, Ctrl-C), each of these removes the empty folders it made
# for --out, as the command line does: a caller from Python is left none either.
@created_removed_on_failure()
def embed_folder(
    checkpoint: str | Path, data: str, out: str | Path, batch_size: int = 256,
    device: str = "auto", precision: str = "auto", workers: int | None = None,
    cache_dir: str = DataConfig.cache_dir, layer: str = "h",
    image_size: int | None = None, overwrite: bool = False,
    max_pixels: int = DataConfig.max_pixels, channels_last: bool = True,
) -> dict[str, Any]:
    """Representations of every image of a folder (evaluation transform), saved as .npz.

    ``layer``: h (default), z or gK (:func:`representation_from_checkpoint`);
    ``image_size``: the side evaluated at, if not the encoder's own
    (:func:`at_image_size`); an existing ``out`` is replaced only with ``overwrite``
    (as :func:`simclr.export.export`); ``channels_last``: images and weights in that
    memory format (the faster, as the evaluations compute them). Arrays:
    ``features`` float32 (N, D), ``labels`` int64 (N,) (sorted class-name order of an
    ImageFolder, -1 for a flat folder), ``classes`` (C,) str, ``paths_utf8`` uint8
    (each image's path in UTF-8, a NUL after each: :func:`simclr.neighbors.embedded_paths`
    reads them), ``encoder`` () str (checkpoint file, step, layer and another side if
    given), ``encoder_weights`` () str (:func:`weights_digest` of the module that
    embedded, its layer and side: what ``simclr neighbors`` compares).
    """
    refuse_spawned_import()
    # before any work (a float or text failed after the features were made)
    check_counts({"--batch-size": batch_size, "--image-size": image_size})
    out = output_file(out, overwrite, data)  # before the work, and after it by written()
    given = load_checkpoint(checkpoint)
    ckpt = at_image_size(given, image_size, checkpoint)
    module, spec = representation_from_checkpoint(ckpt, layer)
    note_unfinished(Path(given.get("file", checkpoint)), ckpt)  # (as the evaluations say)
    # (before the pass: it may move the module to another device)
    weights = f"sha256 {weights_digest(module)} layer {layer} at {spec['image_size']} px"
    source, feats, labels, paths = folder_features(module, spec["image_size"], data,
                                                   batch_size, device, precision, workers,
                                                   cache_dir, True, max_pixels, "embed",
                                                   channels_last)
    # another side: other features (the encoder's own, given as --image-size: the same)
    at = f" at {image_size} px" if image_size not in (None, encoder_spec(given)[
        "image_size"]) else ""
    arrays = {"features": feats.astype(np.float32), "labels": labels.astype(np.int64),
              "classes": np.array(source.classes, dtype=str), PATHS_KEY: paths_array(paths),
              # which representation: features of two are not comparable (simclr neighbors;
              # the file resolved, so two shells' spellings of one checkpoint agree)
              "encoder": np.array(f"{Path(ckpt['file']).resolve()} {trained_for(ckpt)} "
                                  f"layer {layer}{at}"),
              # the same weights whatever file held them (a copied run, an export), and
              # other weights at a path and step a replaced run reused: the path cannot tell
              WEIGHTS_KEY: np.array(weights)}

    def write(tmp: Path) -> None:  # whole or not at all (a file object: savez adds no .npz)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # (numpy's stubs: allow_pickle)

    written(out, write, replace=overwrite)  # (another process's meanwhile: kept)
    return {"out": str(out), "layer": layer, "image_size": spec["image_size"],
            "images": int(feats.shape[0]), "dim": int(feats.shape[1]),
            "skipped": len(source.skipped)}


def weights_digest(module: nn.Module) -> str:
    """The first 16 hex digits of SHA-256 over ``module``'s state dict (each entry's
    name, dtype, shape and bytes, in the module's own order): equal for the same weights
    read from any file that holds them, a run's checkpoint, its copy or its export."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name} {flat.dtype} {tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy())  # (bf16 has no numpy dtype: bytes)
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------- classifiers

def encoder_config(encoder: nn.Module, image_size: int, base: dict[str, Any] | None,
                   head: ProjectionHead | None = None) -> dict:
    """The ``config`` of a checkpoint: ``base`` (the source checkpoint's) or one that
    describes the encoder (and ``head``, whose first layer a classifier may keep), so
    :func:`encoder_from_checkpoint` and :func:`classifier_from_checkpoint` rebuild them."""
    if base is not None:  # at the side it runs at now
        # (the ignores: an encoder's attributes, which nn.Module's typing cannot name)
        return config_at_side(base, encoder.cifar_stem, image_size)  # type: ignore[arg-type]
    cfg = Config()
    cfg.model.arch, cfg.model.width = encoder.arch, float(encoder.width)  # type: ignore[assignment, arg-type]
    cfg.model.cifar_stem = bool(encoder.cifar_stem)
    if head is not None and len(head.layers) > 0:
        first = head.layers[0]
        cfg.model.head = "mlp" if len(head.layers) > 1 else "linear"
        cfg.model.head_layers = len(head.layers)
        cfg.model.head_hidden_dim = int(first[0].out_features)  # type: ignore[index]  # (a block)
        cfg.model.head_out_dim = int(head.out_dim)
        cfg.model.head_batch_norm = first[0].bias is None  # type: ignore[index]  # BN heads have bias-free Linears
    cfg.augment.size = image_size
    return cfg.to_dict()


def classifier_checkpoint(
    kind: str, model: nn.Module, config: dict[str, Any], classes: list[str], step: int,
    elapsed: float, metrics: dict[str, Any], optimizer: torch.optim.Optimizer | None = None,
    encoder_step: int | None = None, features: str = "pretrained", run_id: str | None = None,
) -> dict[str, Any]:
    """A simclr-checkpoint holding a Classifier: 'encoder.*' (+ 'neck.*') and 'fc.*';
    ``step``: its own training's, ``encoder_step``: the pretraining step of the encoder
    it started from (the provenance of what it computes), unless ``features`` says it
    started from none ('random init': the baseline, recorded as such); ``run_id``: the
    training's (supervised, fine-tuning: checkpoint.new_run_id)."""
    blob = {
        "format": "simclr-checkpoint", "version": 1, "kind": kind, "config": config,
        "model": model.state_dict(),  # save_checkpoint moves it to the CPU
        "classes": list(classes), "num_classes": len(classes), "step": step,
        "elapsed": elapsed, "rng": {"torch": torch.get_rng_state()},
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
    }
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    if features != "pretrained":
        blob["features"] = features
    elif encoder_step is not None:
        blob["encoder_step"] = int(encoder_step)
    if run_id is not None:
        blob["run_id"] = run_id
    return blob


def save_classifier(blob: dict[str, Any], out: Path, name: str, overwrite: bool = True) -> str:
    """Write a :func:`classifier_checkpoint` as ``out/checkpoints/name``; returns its path
    (``overwrite`` False: one another process wrote meanwhile is kept, refused:
    :func:`simclr.checkpoint.save_checkpoint`'s ``replace``)."""
    return str(save_checkpoint(blob, out / "checkpoints", name, None, replace=overwrite))


CLASSIFIER_KINDS = ("linear", "finetune", "supervised")
# The results file each classifier's evaluation writes into the same --out, recording
# the checkpoint (and step) the classifier's encoder came from.
_RESULTS_BESIDE = {"linear.pt": ("linear_eval.json", "simclr linear-eval"),
                   "finetune.pt": ("finetune.json", "simclr finetune")}


def classifier_file(path: str | os.PathLike) -> Path:
    """The file a classifier's ``--checkpoint`` names: :func:`checkpoint_file`, except
    that a run folder that also holds the classifier an evaluation wrote into it
    (``simclr linear-eval --checkpoint RUN --out RUN``) gives that classifier, not the
    pretraining run's own last checkpoint. Such a classifier must be of the run's encoder
    as it is now: one fitted on an earlier step (the run trained on since) is refused,
    naming both steps; naming the file itself uses it as it is."""
    found = checkpoint_file(path)
    if not Path(path).expanduser().is_dir() or found.name in CLASSIFIER_FILES:
        return found
    beside = [found.parent / n for n in CLASSIFIER_FILES if is_complete(found.parent / n)]
    if beside and _kind(found) in CLASSIFIER_KINDS:  # a supervised run's: its own model
        beside.insert(0, found)  # (it was passed over for the evaluation's, unsaid)
    if len(beside) > 1:
        raise SimCLRError(f"{found.parent} holds several classifiers "
                          f"({', '.join(f.name for f in beside)}); name one")
    if beside:
        stale = why_stale(beside[0], found)
        if stale:
            run = shell_quote(str(Path(path)))
            raise SimCLRError(
                f"{beside[0]} {stale}: fit it again (`{_RESULTS_BESIDE[beside[0].name][1]} "
                f"--checkpoint {run} --out {run} --overwrite` with the data flags it was "
                "fitted with) or pass that file as --checkpoint to use it as it is")
    return beside[0] if beside else found


def _kind(path: Path) -> str | None:
    """The kind of checkpoint ``path`` is, read without its tensors (None: unreadable,
    which its loading says)."""
    try:
        return load_checkpoint(path, mmap=True).get("kind")
    except SimCLRError:
        return None


def classifier_source(classifier: Path) -> dict[str, Any]:
    """The ``source`` (checkpoint, step) that the results file written with the
    classifier ``RUN/checkpoints/{linear,finetune}.pt`` records; {} where there is none."""
    name = _RESULTS_BESIDE.get(classifier.name, ("", ""))[0]
    try:
        results = (classifier.parent.parent / name).read_text(encoding="utf-8")
        source = json.loads(results).get("source")
    except (OSError, ValueError, AttributeError):
        return {}
    return source if isinstance(source, dict) else {}


def why_stale(classifier: Path, run_checkpoint: Path) -> str | None:
    """Why the classifier a run folder holds is not of the run's encoder as it is now
    (``run_checkpoint``, its last.pt): 'was fitted on step S of this run, which has
    trained on to step N'; None when it is, or when nothing records its step. (Another
    run's encoder is never evaluated into a run's folder: the commands refuse that.)"""
    step = classifier_source(classifier).get("step")
    try:
        now = load_checkpoint(run_checkpoint, mmap=True).get("step")
    except SimCLRError:
        return None
    if isinstance(step, int) and isinstance(now, int) and step != now:
        return f"was fitted on step {step} of this run, which has trained on to step {now}"
    return None


def classifier_from_checkpoint(ckpt: dict[str, Any]) -> tuple[Classifier, dict[str, Any],
                                                               list[str]]:
    """The classifier of a linear-eval, fine-tuning or supervised checkpoint, in eval mode.

    Returns (model: images (B,3,S,S) -> logits (B,C), encoder spec, the C class names).
    """
    kind = ckpt.get("kind")
    if kind not in CLASSIFIER_KINDS:
        raise SimCLRError(f"this checkpoint ({kind or 'unknown kind'}) holds no classifier; "
                          "train one with `simclr linear-eval --out RUN` or `simclr finetune`")
    classes = ckpt.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its classes are "
                          "not a list of names")
    if len(classes) < 2:  # (linear-eval and fine-tuning need two classes to tell apart)
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its classifier "
                          f"has {len(classes)} class{'es' * (len(classes) != 1)} (it tells "
                          "2 or more apart)")
    # one name on two outputs: predict would score a folder's class against one of them
    repeated = next((c for i, c in enumerate(classes) if c in classes[:i]), None) \
        if len(set(classes)) < len(classes) else None
    if repeated is not None:
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its class "
                          f"{repeated!r} is named twice")
    encoder, spec = encoder_from_checkpoint(ckpt)
    state = ckpt["model"]
    neck = None
    if any(k.startswith("neck.") for k in state):  # fine-tuned from the head's first layer
        head = build_model(config_from_dict(ckpt["config"]).model, spec["image_size"]).head
        neck = head.layers[0]
    weight = state.get("fc.weight")
    classes = [str(c) for c in ckpt.get("classes", [])]
    if weight is None or weight.dim() != 2 or len(classes) != weight.shape[0]:
        raise SimCLRError("the checkpoint's classifier is incomplete (no fc weights matching "
                          "its class list)")
    if not all(torch.isfinite(state[k]).all() for k in ("fc.weight", "fc.bias")
               if isinstance(state.get(k), torch.Tensor)):
        # (nan probabilities and no class predicted, as embed refuses non-finite features)
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its "
                          "classifier's weights are not finite")
    # (a narrower fc built around the file's width loaded strictly, and predict failed
    # on the first matrix product only after embedding the whole folder)
    gives = int(encoder.feature_dim) if neck is None else \
        int(neck[0].out_features)  # type: ignore[index]  # (the head's block: a Linear first)
    if weight.shape[1] != gives:
        raise SimCLRError(f"{ckpt.get('file', 'the checkpoint')} is damaged: its classifier "
                          f"reads {weight.shape[1]} features, not the {gives} its "
                          f"{'head layer' if neck is not None else 'encoder'} gives")
    model = Classifier(encoder, len(classes), neck=neck, in_dim=gives)
    load_weights(model, ckpt)
    return model.eval(), spec, classes


def note_unfinished(path: Path, ckpt: dict[str, Any]) -> bool:
    """Say on stderr that the model ``path`` holds is from a training that has not
    finished (a pretraining or supervised run stopped or still training, an
    evaluation's partial state): the results of the evaluations, predict's predictions
    and an export's weights are those of a half-trained model, which nothing else in
    them shows. Returns whether it said so."""
    step, total = ckpt.get("step"), ckpt.get("total_steps")
    if ckpt.get("kind") == "encoder":  # an export: its source's stopped training, if any
        if not isinstance(ckpt.get("unfinished"), dict):
            return False
        at = unfinished_state(ckpt)
        print(f"note: {path} is an export of "
              f"{unfinished_training(at['step'], at['total_steps'])}", file=sys.stderr)
        return True
    if path.name.endswith(PARTIAL_SUFFIX):
        then = "; its command continues it when run again"
    elif ckpt.get("kind") == "pretrain" and path.name != LAST:
        return False  # a step of a run chosen on purpose (accuracy against steps)
    elif ckpt.get("kind") in ("supervised", "pretrain") and isinstance(step, int) \
            and isinstance(total, int) and step < total:
        # (the run's state: a periodic checkpoint named may be of a run finished since)
        then = _how_it_goes_on(path, ckpt["kind"]) if path.name == LAST else ""
    else:
        return False
    print(f"note: {path} is {unfinished_training(step, total)}{then}", file=sys.stderr)
    return True


def unfinished_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """{step, total_steps} of the unfinished training whose weights ``ckpt`` holds (where
    :func:`note_unfinished` says it is one): its own, or an exported encoder's record of
    its source's (``unfinished``; each None where not a whole number)."""
    at = ckpt.get("unfinished") if ckpt.get("kind") == "encoder" else ckpt
    at = at if isinstance(at, dict) else {}
    return {k: at.get(k) if is_amount(at.get(k), whole=True) else None
            for k in ("step", "total_steps")}


def _how_it_goes_on(last: Path, kind: str) -> str:
    """'; its run is still training' (its folder held), '; its run diverged' (its
    summary says so: resuming trains into the same blow-up), else the command that
    continues the run whose ``last.pt`` is ``last``."""
    from simclr.files import folder_holder, read_json

    run = last.parent.parent
    if folder_holder(run):
        return "; its run is still training"
    if (read_json(run / "summary.json") or {}).get("status") == "diverged":
        return "; its run diverged"
    from simclr.info_text import resume_command

    how = resume_command(run, kind)  # (as info says it: --processes, a sweep's cell)
    if how.startswith(("simclr sweep", "the sweep")):
        return f"; continue it with: {how}"
    return f"; `{how}` continues it"


def unfinished_training(step: Any, total: Any) -> str:
    """'an unfinished training (step 4 of 9)', as predict and export say it and info
    shows a program's (the planned steps where known)."""
    # A received file's step of another kind is never printed as it is: a terminal's
    # escapes, or a list nested 24 deep that printed as a 117 MB line.
    if not is_amount(step, whole=True):
        return "an unfinished training (its recorded step is damaged)"
    of = f" of {total}" if is_amount(total, whole=True) else ""
    return f"an unfinished training (step {step}{of})"


# Probabilities made Python floats at a time, as a few rows: all at once took 3.2 GB for
# --top-k 5000 on 10k images (a float object per probability, an int per class index).
_ROW_VALUES = 1 << 16


def _ranked_rows(top_p: torch.Tensor,
                 top_i: torch.Tensor) -> Iterator[tuple[list[float], list[int]]]:
    """Each row's (probabilities, class indices) of ``top_p``/``top_i`` (N, k), as lists
    made a few rows at a time (:data:`_ROW_VALUES`)."""
    step = max(1, _ROW_VALUES // max(1, top_p.shape[1]))
    for start in range(0, len(top_p), step):
        yield from zip(top_p[start:start + step].tolist(), top_i[start:start + step].tolist(),
                       strict=True)


def _write_predictions(out: Path, paths: list[str], top_p: torch.Tensor, top_i: torch.Tensor,
                       classes: list[str], threshold: float, overwrite: bool = True) -> None:
    """The CSV of :func:`predict_folder`; ``top_p``/``top_i``: (N, k) ranked probabilities
    and class indices. Written whole or not at all: a rerun never meets half a file.
    ``overwrite`` False: one another process wrote meanwhile is kept and refused."""
    k = top_p.shape[1]
    names = [spreadsheet_cell(c) for c in classes]  # a received classifier's: no formulas

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "prediction", "probability",
                             *(f"{c}{j + 1}" for j in range(k) for c in ("top", "p"))])
            for path, (ps, ids) in zip(paths, _ranked_rows(top_p, top_i), strict=True):
                ranked = [x for i, p in zip(ids, ps, strict=True)
                          for x in (names[i], f"{p:.6f}")]
                prediction = names[ids[0]] if ps[0] >= threshold else ""
                writer.writerow([spreadsheet_cell(path), prediction, f"{ps[0]:.6f}", *ranked])

    written(out, write, replace=overwrite)


# Elements of one (images x classes) block of predict's float64 scores: all at once, the
# log-probabilities, their exp and the ranking's copies held 16.9 GB for 100k images x
# 5,000 classes; a block's are freed before the next (32 MiB each).
PREDICT_BLOCK_ELEMENTS = 1 << 22
# A block's rows are a multiple of this, and the last block takes the rows left over
# (fewer than a block): MKL's float64 matmul gives a row the bits the whole matrix's
# product gave it only so; blocks of 37 rows, or a last block of 3, moved some by 1e-15.
_BLOCK_ROWS = 64


def _row_blocks(rows: int, classes: int) -> list[slice]:
    """The blocks of :func:`_ranked_blocks`: about :data:`PREDICT_BLOCK_ELEMENTS` scores
    each (at least :data:`_BLOCK_ROWS` rows), the last up to twice that; one empty
    block for no rows."""
    block = max(1, PREDICT_BLOCK_ELEMENTS // max(1, classes) // _BLOCK_ROWS) * _BLOCK_ROWS
    starts = list(range(0, rows, block)) or [0]
    if len(starts) > 1 and rows - starts[-1] < block:
        starts.pop()  # a short last block joins the one before
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], rows], strict=True)]


def _known_labels(classes: list[str], folder_classes: list[str],
                  labels: np.ndarray) -> np.ndarray:
    """(N,) each image's folder label (``labels``, indices into ``folder_classes``, -1
    unlabeled) as an index into the classifier's ``classes``; -1 where it has none."""
    index = {name: i for i, name in enumerate(classes)}
    known = [index.get(str(name), -1) for name in folder_classes]
    return np.array([known[y] if y >= 0 else -1 for y in labels], dtype=np.int64)


def _ranked_blocks(fc: nn.Linear, feats: np.ndarray, mapped: np.ndarray,
                   k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top_p, top_i, ranks) of the classifier ``fc`` (float64) on ``feats`` (N, D): each
    image's k most probable classes' probabilities and indices (N, k), and how many other
    classes score at least its label ``mapped`` (N,) (:func:`simclr.results.label_ranks`;
    C where -1). Ranked by the float64 log-probabilities, whose exp is 0 ~745 below the
    best: the probabilities tied classes the scores tell apart. Rows run in blocks of
    :data:`PREDICT_BLOCK_ELEMENTS` scores, so only the (N, k) ones are kept."""
    from simclr.results import label_ranks

    n = len(feats)
    # Filled in place: each block's small results kept as tensors of their own, between
    # its large ones, split the heap so that it grew by a block each (4.6 GB for 100k
    # images x 5,000 classes).
    top_p = torch.empty(n, k, dtype=torch.float64)
    top_i = torch.empty(n, k, dtype=torch.int64)
    ranks = torch.empty(n, dtype=torch.int64)
    with torch.no_grad():
        for rows in _row_blocks(n, fc.out_features):
            log_probs = torch.log_softmax(fc(torch.from_numpy(feats[rows]).double()), dim=1)
            top_p[rows], top_i[rows] = log_probs.exp().topk(k, dim=1)
            ranks[rows] = label_ranks(log_probs, mapped[rows])
    return top_p, top_i, ranks


def _scores(ranks: torch.Tensor, top_p: torch.Tensor, num_classes: int, mapped: np.ndarray,
            labels: np.ndarray, min_probability: float | None) -> dict[str, Any]:
    """Accuracy over the images whose folder class the classifier knows, and the counts
    of the others; with ``min_probability``, the confident rows and their top-1.
    ``ranks``, ``top_p``: :func:`_ranked_blocks`'s (float64 log-probabilities ranked:
    float32 probabilities ~100 logits below the best were 0, tied, and top-5 a miss);
    ``mapped``: :func:`_known_labels`; ``labels``: (N,) the folder's, -1 unlabeled."""
    from simclr.results import ranked_accuracy, ranked_summary

    result: dict[str, Any] = {}
    if (labels >= 0).any():  # class folders: the counts, even when none is the classifier's
        result.update(labeled=int((mapped >= 0).sum()),
                      unknown_class=int(((mapped < 0) & (labels >= 0)).sum()),
                      unlabeled=int((labels < 0).sum()))
    if (mapped >= 0).any():
        result.update(ranked_summary(ranks[np.flatnonzero(mapped >= 0)], num_classes))
    if min_probability is not None:
        confident = (top_p[:, 0] >= min_probability).numpy()
        result["confident"] = int(confident.sum())
        if (mapped >= 0).any():
            sure = np.flatnonzero(confident & (mapped >= 0))
            result["confident_top1"] = (ranked_accuracy(ranks[sure], (1,))[0]
                                        if len(sure) else None)  # (a tie: a miss)
    return result


DEFAULT_TOP_K = 5  # classes each row of `simclr predict` ranks, unless told


@created_removed_on_failure()
def predict_folder(
    checkpoint: str | Path, data: str, out: str | Path, top_k: int | None = None,
    batch_size: int = 256, device: str = "auto", precision: str = "auto",
    workers: int | None = None, cache_dir: str = DataConfig.cache_dir,
    min_probability: float | None = None, overwrite: bool = False,
    max_pixels: int = DataConfig.max_pixels, channels_last: bool = True,
) -> dict[str, Any]:
    """Classify every image of a folder; one CSV row per image (an existing ``out`` is
    replaced only with ``overwrite``).

    Columns: ``path``, ``prediction``, ``probability`` (softmax), then ``top<k>`` /
    ``p<k>`` for the k most probable classes (``top_k``: 5 unless given, at most the
    classifier's classes; a larger one given is said). Where the folder is an ImageFolder whose
    class names the classifier knows, the result also holds the top-1 / top-k accuracy
    over those images (``labeled``); the others are counted as ``unknown_class`` (in a
    class folder the classifier does not know) or ``unlabeled`` (beside the class
    folders: no label to score them by).

    ``min_probability``: a row whose top probability is below it has an empty
    ``prediction`` (its ranked classes are still listed): a rejection of images that
    belong to none of the classes, or are doubtful. The result counts the ``confident``
    rows and, on a labeled folder, the top-1 accuracy among those (``confident_top1``).
    ``channels_last``: images and weights in that memory format (the faster).
    """
    refuse_spawned_import()
    check_counts({"--top-k": top_k, "--batch-size": batch_size})  # (before any work)
    if min_probability is not None and not (isinstance(min_probability, numbers.Real) and
                                            0 < min_probability <= 1):
        raise SimCLRError(f"--min-probability must lie in (0, 1], got {min_probability}")
    threshold = 0.0 if min_probability is None else min_probability
    out = output_file(out, overwrite, data)  # before the work, and after it by written()
    path = classifier_file(checkpoint)
    ckpt = load_checkpoint(path)
    model, spec, classes = classifier_from_checkpoint(ckpt)
    note_unfinished(path, ckpt)
    k = min(DEFAULT_TOP_K if top_k is None else top_k, len(classes))
    # Features under the run's autocast, as the protocols compute them; the linear layer
    # in float64, as linear-eval fits it, so a bf16 rounding never flips a close call.
    source, feats, labels, paths = folder_features(
        nn.Sequential(model.encoder, model.neck), spec["image_size"], data, batch_size,
        device, precision, workers, cache_dir, True, max_pixels, "predict", channels_last)
    if top_k is not None and k < top_k:  # (as `simclr knn` does a --k past its training
        # images: capped, said; the default 5 of a 2-class classifier goes unsaid)
        print(f"note: --top-k {top_k} is more than the classifier's {len(classes)} classes: "
              f"each row ranks all of them (top-k {k})", file=sys.stderr)
    mapped = _known_labels(classes, source.classes, labels)
    top_p, top_i, ranks = _ranked_blocks(model.fc.double(), feats, mapped, k)
    _write_predictions(out, paths, top_p, top_i, classes, threshold, overwrite)
    result: dict[str, Any] = {"out": str(out), "images": int(len(feats)),
                              "skipped": len(source.skipped), "classes": len(classes)}
    result.update(_scores(ranks, top_p, len(classes), mapped, labels, min_probability))
    return result
