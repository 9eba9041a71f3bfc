"""Models from checkpoints: the encoder (or its head, or a layer of the head) and the
representation it computes, and the initial weights a run starts from (``--init-from``);
what a checkpoint's encoder was trained for and to which step (``trained_for``,
``encoder_trained_step``, ``fitted_on``), its weights' digest and their finiteness.

Works on every checkpoint this package writes (pretraining, supervised baseline,
fine-tuning, linear evaluation, encoder export): each holds the encoder's weights under
``encoder.*`` and the config that rebuilds its architecture. Classifiers (``fc.*``) are
:mod:`simclr.classifiers`'; what a model computes on a folder, :mod:`simclr.inference`'s.
"""

from __future__ import annotations

import copy
import hashlib
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.backbones import TorchvisionEncoder, side_problem
from simclr.checkpoint_read import (
    checked_checkpoint,
    imported_checkpoint,
    load_checkpoint,
    load_weights,
    read_weights_file,
    weight_mismatch,
)
from simclr.config import MAX_SIDE, MIN_SIZE, Config
from simclr.errors import SimCLRError, is_amount
from simclr.models import (
    HeadTap,
    ResNet,
    SimCLRModel,
    build_encoder,
    build_model,
    resolve_cifar_stem,
)
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
        other = bare if bare is not None and is_torchvision_state(bare) else None
        ckpt = {} if other is not None else checked_checkpoint(imported or state, file)
    except SimCLRError as exc:
        raise SimCLRError(f"--init-from: {exc} (a simclr checkpoint or run, or a "
                          "torchvision state dict)") from None
    if other is not None:  # another torchvision network: its names are the encoder's,
        # under net. (checked outside the try: the file is read, its weights are wrong)
        check_finite(other, f"--init-from {file}")
        return ({f"encoder.{k}": v for k, v in other.items()},
                f"torchvision weights {file}")
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
    damaged file) is one line saying so, never printed
    (:func:`simclr.classifiers.unfinished_training`) nor met by int() as a traceback."""
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
    from simclr.classifiers import classifier_source  # (here: it imports this module)

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

