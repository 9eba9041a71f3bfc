"""Weights in torchvision's layout, both ways.

simclr's encoder (:class:`simclr.models.ResNet`) computes what torchvision's
``resnet18`` .. ``resnet152`` compute at width 1 with the ImageNet stem (the same
layers, strides on the 3x3 convs as in torchvision's "v1.5", the same padding), under
other names: ``stem.0``/``stem.1`` are ``conv1``/``bn1``, a block's ``shortcut`` is its
``downsample``, and ``last_bn`` is only a second name for the block's last BatchNorm.

- :func:`to_torchvision`: an encoder's weights as ``torchvision.models.resnetXX()``
  loads them once its ``fc`` is ``nn.Identity()`` (h is then the model's output).
- :func:`from_torchvision`: a torchvision state dict (e.g. ImageNet weights saved with
  ``torch.save(model.state_dict(), path)``) as an encoder's weights, its ``fc`` dropped.

The other torchvision networks (:mod:`simclr.backbones`) keep torchvision's names under
``net.``: :func:`torchvision_model` and :func:`torchvision_weights` only add or remove
that prefix (and the classifier the encoder has not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from simclr.backbones import TorchvisionEncoder, classifier_code, classifier_prefix
from simclr.errors import SimCLRError
from simclr.models import ResNet

# (simclr's, torchvision's): name prefixes of the stem, and the shortcut's infix.
_PREFIXES = (("stem.0.", "conv1."), ("stem.1.", "bn1."))
_INFIX = (".shortcut.", ".downsample.")


def check_convertible(arch: str, width: float, cifar_stem: bool) -> None:
    """torchvision's ResNets have neither a width multiplier nor a CIFAR stem."""
    if width != 1 or cifar_stem:
        what = (f"width multiplier (this encoder: width {width:g})" if width != 1
                else "CIFAR stem (3x3 conv, no max-pool)")
        raise SimCLRError(f"torchvision's {arch} has no {what}: only width-1 encoders with "
                          "the ImageNet stem have a torchvision layout")


def _renamed(name: str, to_torchvision: bool) -> str:
    for ours, theirs in _PREFIXES:
        old, new = (ours, theirs) if to_torchvision else (theirs, ours)
        if name.startswith(old):
            return new + name[len(old):]
    old, new = _INFIX if to_torchvision else _INFIX[::-1]
    return name.replace(old, new)


def to_torchvision(encoder_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An encoder's state dict (simclr names) -> torchvision's names, ``fc`` excluded."""
    return {_renamed(k, True): v for k, v in encoder_state.items()
            if ".last_bn." not in f".{k}"}


def from_torchvision(state: Mapping[str, Any], encoder_state: Mapping[str, torch.Tensor]
                     ) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict -> the names of ``encoder_state`` (the network
    it is for, whose ``last_bn`` aliases get their block's tensors); ``fc`` dropped."""
    renamed = {_renamed(k, False): v for k, v in state.items()
               if not k.startswith("fc.")}
    for name in encoder_state:  # the aliases: last_bn is bn2 (basic) or bn3 (bottleneck)
        if ".last_bn." in name:
            block, field = name.split(".last_bn.")
            last = "bn3" if f"{block}.bn3.{field}" in encoder_state else "bn2"
            if f"{block}.{last}.{field}" in renamed:
                renamed[name] = renamed[f"{block}.{last}.{field}"]
    return renamed


# (block kind, blocks per stage) -> simclr's (and torchvision's) name of the ResNet
_DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
           ("bottleneck", (3, 4, 6, 3)): "resnet50",
           ("bottleneck", (3, 4, 23, 3)): "resnet101",
           ("bottleneck", (3, 8, 36, 3)): "resnet152"}
# where converted weights sit inside a saved dict: e.g. {"state_dict": ...} (the PyTorch
# conversions of the official SimCLR v1 checkpoints, and Lightning checkpoints)
_WRAPPERS = ("state_dict", "model", "encoder", "backbone")
_STEM = "conv1.weight"


def unwrapped_state(state: Any) -> Any:
    """The tensors of a saved state dict: out of a ``{"state_dict": ...}``-style wrapper,
    without DDP's ``module.`` prefix, and, where a torchvision-layout ResNet sits inside
    a larger model (``backbone.*`` beside ``projector.*``), that ResNet's tensors alone
    under its own names; anything else unchanged."""
    if isinstance(state, Mapping):  # a wrapper: "state_dict" beside others, or alone
        key = "state_dict" if "state_dict" in state else next(iter(state)) if len(state) == 1 \
            else None
        if key in _WRAPPERS and isinstance(state[key], Mapping):
            state = state[key]
    if not is_torchvision_state(state):
        return state
    # The shortest prefix P with P + "conv1.weight" and P + "layer1.0.conv1.weight": the
    # ResNet's own stem (a block's conv1 has no layer1.0 beneath it).
    prefixes = sorted((str(k)[: -len(_STEM)] for k in state if str(k).endswith(_STEM)
                       and f"{str(k)[: -len(_STEM)]}layer1.0.{_STEM}" in state), key=len)
    prefix = prefixes[0] if prefixes else ("module." if all(
        str(k).startswith("module.") for k in state) else "")
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if str(k).startswith(prefix)}
    return state


def resnet_layout(state: Any) -> tuple[str, float, bool] | None:
    """(arch, width, cifar_stem) of a ResNet state dict in torchvision's layout, read
    off its names and shapes; None for anything else.

    The width is the stem's channels over 64 (simclr's and the official code's width
    multiplies every layer: the official SimCLR ResNet-50 2x and 4x are such ResNets);
    a 3x3 first convolution means the CIFAR stem (stride 1, no max-pool), 7x7 the
    ImageNet one. A guess from names and the stem only: :func:`as_encoder` checks that
    every tensor fits it (a ResNeXt has a ResNet-50's names, not its shapes).
    """
    if not is_torchvision_state(state) or not isinstance(state.get(_STEM), torch.Tensor) \
            or not all(isinstance(k, str) for k in state):  # (a stray int key: not torch's)
        return None
    stem = state[_STEM]
    if stem.dim() != 4 or stem.shape[1] != 3 or stem.shape[-1] not in (3, 7):
        return None
    kind = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    depths = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")})
                   for i in range(1, 5))
    arch = _DEPTHS.get((kind, depths))
    if arch is None:
        return None
    return arch, stem.shape[0] / 64, stem.shape[-1] == 3


def as_encoder(state: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor], str] | None:
    """A ResNet state dict in torchvision's layout (:func:`resnet_layout`), possibly
    wrapped (:func:`unwrapped_state`), as what an encoder checkpoint holds: (its config,
    its weights under simclr's names with ``encoder.``, what it was); None if it is not
    one. Its classifier ``fc`` is dropped.

    The config: the architecture read off the weights, and the side the stem implies
    (224 px for the ImageNet stem, 32 for the CIFAR one), which evaluations resize to.
    """
    state = unwrapped_state(state)
    layout = resnet_layout(state)
    if layout is None:
        return None
    arch, width, cifar_stem = layout
    with torch.device("meta"):  # only its names: no memory even for a ResNet-50 4x
        names = ResNet(arch, width, cifar_stem).state_dict()
    config = {"model": {"arch": arch, "width": width, "cifar_stem": cifar_stem},
              "augment": {"size": 32 if cifar_stem else 224}}
    weights = from_torchvision(state, names)
    if weights.keys() != names.keys() or any(weights[k].shape != v.shape
                                             for k, v in names.items()):
        return None  # another network under a ResNet's names
    return config, {f"encoder.{k}": v for k, v in weights.items()}, \
        "ResNet weights in torchvision's layout"


def is_torchvision_state(state: Any) -> bool:
    """Whether a loaded file is a bare state dict (tensors by name, as
    ``torch.save(model.state_dict(), path)`` writes), not a simclr checkpoint."""
    return (isinstance(state, Mapping) and len(state) > 0
            and all(isinstance(v, torch.Tensor) for v in state.values()))


def torchvision_weights(state: Mapping[str, Any], encoder: nn.Module) -> dict[str, Any]:
    """A torchvision state dict (keys without ``encoder.``) under ``encoder``'s names,
    the classifier dropped (checked against the encoder by the caller)."""
    if isinstance(encoder, TorchvisionEncoder):
        drop = classifier_prefix(encoder.arch)
        return {f"net.{k}": v for k, v in state.items() if not k.startswith(drop)}
    check_convertible(encoder.arch, encoder.width, encoder.cifar_stem)
    return from_torchvision(state, encoder.state_dict())


def torchvision_model(encoder: nn.Module, image_size: int
                      ) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    """(torchvision's network holding ``encoder``'s weights, its classifier the identity;
    the state dict it loads; the Python that rebuilds it, ``m``, before loading)."""
    import torchvision

    arch = encoder.arch
    if isinstance(encoder, TorchvisionEncoder):
        state = {k[len("net."):]: v for k, v in encoder.state_dict().items()}
        model = TorchvisionEncoder(arch, image_size).net
        size = f", image_size={image_size}" if arch.startswith("vit_") else ""
        code = (f"m = torchvision.models.get_model({arch!r}{size}); "
                f"{classifier_code(arch)} = torch.nn.Identity()")
    else:
        check_convertible(arch, encoder.width, encoder.cifar_stem)
        state = to_torchvision(encoder.state_dict())
        model = getattr(torchvision.models, arch)()
        model.fc = nn.Identity()
        code = f"m = torchvision.models.{arch}(); m.fc = torch.nn.Identity()"
    model.load_state_dict(state)
    return model, state, code
