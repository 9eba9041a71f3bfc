"""Using a trained encoder: load it (or its head, or a layer of the head), embed a folder.

Works on every checkpoint this package writes (pretraining, supervised baseline,
fine-tuning, encoder export): each holds the encoder's weights under ``encoder.*`` and the
config that rebuilds its architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr.checkpoint import load_checkpoint
from simclr.config import config_from_dict
from simclr.errors import SimCLRError
from simclr.models import (
    HeadTap,
    ResNet,
    SimCLRModel,
    build_encoder,
    build_model,
    resolve_cifar_stem,
)


def encoder_spec(ckpt: dict[str, Any]) -> dict[str, Any]:
    """(arch, width, cifar_stem, image_size) of the encoder stored in a checkpoint."""
    try:
        model, size = ckpt["config"]["model"], int(ckpt["config"]["augment"]["size"])
        return {
            "arch": model["arch"],
            "width": float(model["width"]),
            "cifar_stem": resolve_cifar_stem(model["cifar_stem"], size),
            "image_size": size,
        }
    except (KeyError, TypeError, ValueError):
        raise SimCLRError("checkpoint has no usable model config (not a simclr checkpoint?)") \
            from None


def encoder_from_checkpoint(
    ckpt: dict[str, Any], random_init: bool = False
) -> tuple[ResNet, dict[str, Any]]:
    """Rebuild the encoder and load its weights; returns (encoder, spec)."""
    spec = encoder_spec(ckpt)
    encoder = build_encoder(spec["arch"], spec["width"], spec["cifar_stem"])
    if not random_init:
        prefix = "encoder."
        state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
        missing, unexpected = encoder.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise SimCLRError(
                f"checkpoint does not match {spec['arch']} width {spec['width']}: "
                f"{len(missing)} missing and {len(unexpected)} unexpected encoder weights"
            )
    encoder.image_size = spec["image_size"]  # the input side the encoder was trained at
    return encoder, spec


def model_from_checkpoint(
    ckpt: dict[str, Any], random_init: bool = False
) -> tuple[SimCLRModel, dict[str, Any]]:
    """Encoder f and projection head g of a pretraining checkpoint; returns (model, spec)."""
    if ckpt.get("kind") != "pretrain":
        raise SimCLRError("this checkpoint has no projection head (only pretraining "
                          "checkpoints do); use the representation h")
    spec = encoder_spec(ckpt)
    model = build_model(config_from_dict(ckpt["config"]).model, spec["image_size"])
    if not random_init:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError:
            raise SimCLRError("checkpoint weights do not match its own model config") from None
    model.encoder.image_size = spec["image_size"]
    return model, spec


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


def parse_layer(layer: str) -> int | None:
    """'z' -> None (the whole head), 'gK' -> K; anything else is a user error."""
    if layer == "z":
        return None
    if layer.startswith("g") and layer[1:].isdigit() and int(layer[1:]) >= 1:
        return int(layer[1:])
    raise SimCLRError(f"--layer: unknown value {layer!r} ({LAYERS_HELP})")


def load_encoder(checkpoint: str | Path, device: str | torch.device = "cpu") -> ResNet:
    """The pretrained encoder f of a checkpoint, in eval mode: images (B,3,S,S) -> h (B,D).

    Inputs are float images in [0, 1] (no mean/std normalisation), S =
    ``encoder.image_size``; ``simclr.augment.eval_resize`` prepares them.
    """
    encoder, _ = encoder_from_checkpoint(load_checkpoint(checkpoint))
    return encoder.to(device).eval()


def embed_folder(
    checkpoint: str | Path, data: str, out: str | Path, batch_size: int = 256,
    device: str = "auto", precision: str = "auto", workers: int | None = None,
    cache_dir: str = "~/.cache/simclr/decoded", layer: str = "h",
) -> dict[str, Any]:
    """Representations of every image of a folder (evaluation transform), saved as .npz.

    ``layer``: h (default), z or gK (:func:`representation_from_checkpoint`). Arrays:
    ``features`` float32 (N, D), ``labels`` int64 (N,) (sorted class-name order of an
    ImageFolder, -1 for a flat folder), ``classes`` (C,) str, ``paths`` (N,) str.
    """
    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.features import extract_features
    from simclr.runtime import resolve_device, resolve_precision

    dev = resolve_device(device)
    module, spec = representation_from_checkpoint(load_checkpoint(checkpoint), layer)
    size = spec["image_size"]
    source = open_source(data, DataConfig(workers=workers, cache_dir=cache_dir), train=False,
                         image_size=size)
    feats, labels = extract_features(module, source, size, batch_size, dev,
                                     resolve_precision(precision, dev))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, features=feats.astype(np.float32), labels=labels.astype(np.int64),
             classes=np.array(source.classes, dtype=str), paths=np.array(source.paths, dtype=str))
    return {"out": str(out), "layer": layer, "images": int(feats.shape[0]),
            "dim": int(feats.shape[1]), "skipped": len(source.skipped)}
