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


def check_convertible(arch: str, width: float) -> None:
    """torchvision's ResNets have no width multiplier (its ``width_per_group`` widens a
    bottleneck's middle convolution alone)."""
    if width != 1:
        raise SimCLRError(f"torchvision's {arch} has no width multiplier (this encoder: "
                          f"width {width:g}): only width-1 encoders have a torchvision layout")


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
_DEPTHS: dict[tuple[str, tuple[int, ...]], str]
_DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
           ("bottleneck", (3, 4, 6, 3)): "resnet50",
           ("bottleneck", (3, 4, 23, 3)): "resnet101",
           ("bottleneck", (3, 8, 36, 3)): "resnet152"}
# where a model's weights sit inside a saved dict: e.g. {"state_dict": ...} (the PyTorch
# conversions of the official SimCLR v1 checkpoints, Lightning checkpoints), or
# {"epoch": ..., "model_state_dict": ...} (PyTorch's tutorial on saving), first match
_WRAPPERS = ("state_dict", "model_state_dict", "model", "encoder", "backbone", "net")
_STEM = "conv1.weight"
_OUR_STEM = "stem.0.weight"  # simclr's own name: a bare `encoder.state_dict()`


def _resnet_prefixes(state: Mapping[str, Any]) -> list[str]:
    """The name prefixes P under which a ResNet's stem and first block sit (P + "conv1.weight"
    or simclr's P + "stem.0.weight", and P + "layer1.0.conv1.weight"), shortest first: one
    per ResNet in the file (a block's conv1 has no layer1.0 beneath it)."""
    found = set()
    for key in map(str, state):
        for stem in (_STEM, _OUR_STEM):
            if key.endswith(stem) and f"{key[: -len(stem)]}layer1.0.{_STEM}" in state:
                found.add(key[: -len(stem)])
    return sorted(found, key=lambda p: (len(p), p))


def unwrapped_state(state: Any) -> Any:
    """:func:`_unwrapped`'s state."""
    return _unwrapped(state)[0]


def _unwrapped(state: Any) -> tuple[Any, bool]:
    """(The tensors of a saved state dict: out of a ``{"state_dict": ...}``-style wrapper,
    without DDP's ``module.`` prefix, and, where a ResNet sits inside a larger model
    (``backbone.*`` beside ``projector.*``), that ResNet's tensors alone under its own
    names; a simclr checkpoint or anything else unchanged.

    Of several ResNets the one under the shortest prefix is taken (solo-learn's
    ``backbone.`` beside its ``momentum_backbone.``); two under prefixes of one length
    (MoCo's ``encoder_q.``/``encoder_k.``, a student and a teacher) are refused: which
    one is meant is the user's call. The flag: whether the names were simclr's
    (``stem.0.`` for ``conv1.``), renamed to torchvision's.
    """
    if isinstance(state, Mapping) and "format" not in state:
        key = next((k for k in _WRAPPERS if isinstance(state.get(k), Mapping)), None)
        if key is not None:
            state = state[key]
    if not is_torchvision_state(state):
        return state, False
    state = _children_named(state)
    prefixes = _resnet_prefixes(state)
    if len(prefixes) > 1 and len(prefixes[0]) == len(prefixes[1]):
        tied = [p for p in prefixes if len(p) == len(prefixes[0])]
        raise SimCLRError(
            f"holds {len(tied)} ResNets, under {' and '.join(repr(p) for p in tied)}: save "
            "the one to use alone (its tensors without the prefix) and give that file")
    prefix = prefixes[0] if prefixes else ("module." if all(
        str(k).startswith("module.") for k in state) else "")
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if str(k).startswith(prefix)}
    ours = _OUR_STEM in state and _STEM not in state
    if ours:  # simclr's names, saved without their checkpoint
        state = to_torchvision(state)
    return state, ours


# A torchvision ResNet's children by position, as `nn.Sequential(*list(resnet.children())
# [:-1])` numbers them (lightly's examples' backbone; 2, 3, 8: ReLU, max-pool and pooling
# hold no tensors).
_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
             "7": "layer4"}
_FIRST_BLOCK = "4.0.conv1.weight"  # (its first block's first convolution, by position)


def _children_named(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` with a ResNet saved as a Sequential of its children (``backbone.0.weight``
    for ``conv1.weight``, ``backbone.4.0.conv1.weight`` for ``layer1.0.conv1.weight``)
    under torchvision's names, its prefix kept; any other state unchanged. (Refused
    before, with a remedy that could not work: no --arch reads positions.)"""
    keys = [k for k in state if isinstance(k, str)]
    prefixes = {k[: -len(_FIRST_BLOCK)] for k in keys if k.endswith(_FIRST_BLOCK)
                and f"{k[: -len(_FIRST_BLOCK)]}0.weight" in state}
    if not prefixes:
        return state

    def named(key: Any) -> Any:
        for prefix in prefixes:
            if isinstance(key, str) and key.startswith(prefix):
                index, _, rest = key[len(prefix):].partition(".")
                if index in _CHILDREN and rest:
                    return f"{prefix}{_CHILDREN[index]}.{rest}"
        return key

    return {named(k): v for k, v in state.items()}


def _width(channels: list[int]) -> float | None:
    """The width multiplier that gives the stem and the four stages these channels
    (:func:`simclr.models._channels` rounds each layer's), as the shortest decimal that
    does: 0.3 gives 19, 19, 38, 77, 154, which no ratio of two of them is."""
    bases = (64, 64, 128, 256, 512)
    for digits in range(1, 7):
        for c, base in zip(channels, bases, strict=True):
            width = round(c / base, digits)
            if width > 0 and all(max(1, round(b * width)) == n
                                 for b, n in zip(bases, channels, strict=True)):
                return width
    return None


def resnet_layout(state: Any) -> tuple[str, float, bool] | None:
    """(arch, width, cifar_stem) of a ResNet state dict in torchvision's layout, read
    off its names and shapes; None for anything else.

    The width multiplies every layer's channels, the stem's included, as simclr's and
    the official code's does (the official SimCLR ResNet-50 2x and 4x are such
    ResNets): read off the stem's and each stage's first convolution. A 3x3 first
    convolution means the CIFAR stem (stride 1, no max-pool), 7x7 the ImageNet one. A
    guess from names and a few shapes: :func:`as_encoder` checks that every tensor fits
    it (a ResNeXt has a ResNet-50's names, not its shapes).
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
    firsts = [state.get(f"layer{i}.0.conv1.weight") for i in range(1, 5)]
    if arch is None or not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in firsts):
        return None
    width = _width([stem.shape[0], *(t.shape[0] for t in firsts)])
    return None if width is None else (arch, width, stem.shape[-1] == 3)


def _fills_counters(weights: dict[str, Any], names: Mapping[str, torch.Tensor]) -> None:
    """BatchNorm's ``num_batches_tracked`` counters a file lacks set to 0, as BatchNorm
    itself does for files saved before torch 0.4.1 (torchvision's first ImageNet
    weights): they only count, no output depends on them."""
    for name, like in names.items():
        if name.endswith(".num_batches_tracked") and name not in weights:
            weights[name] = torch.zeros((), dtype=like.dtype)


def assumed_side(cifar_stem: bool) -> int:
    """The side ResNet weights in torchvision's layout are read at, as they record none:
    32 px for the CIFAR stem, 224 for the ImageNet one."""
    return 32 if cifar_stem else 224


def as_encoder(state: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor], str] | None:
    """A ResNet state dict in torchvision's layout (:func:`resnet_layout`), possibly
    wrapped or inside a larger model (:func:`unwrapped_state`), as what an encoder
    checkpoint holds: (its config, its weights under simclr's names with ``encoder.``,
    what it was); None if it is not one. Its classifier ``fc`` is dropped.

    The config: the architecture read off the weights, and the side the stem implies
    (224 px for the ImageNet stem, 32 for the CIFAR one), which evaluations resize to.
    """
    read = _read(state)
    return read if isinstance(read, tuple) else None


def why_not_a_resnet(state: Any) -> str | None:
    """For weights whose names are a ResNet's but whose tensors do not fit one, the
    first misfit (a ResNeXt's grouped convolutions, a missing or extra tensor); None if
    they are a ResNet's, or if their names are not."""
    read = _read(state)
    return read if isinstance(read, str) else None


def _read(state: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor], str] | str | None:
    """:func:`as_encoder`'s result, or :func:`why_not_a_resnet`'s reason, or None.

    A ResNet-18/34 whose extra tensors are exactly the projection shortcuts of its
    first stage (``--projection-shortcuts``, the official code's: torchvision's have
    none) is read as such an encoder; other extras name the first of them."""
    state, ours = _unwrapped(state)
    layout = resnet_layout(state)
    if layout is None:
        return None
    arch, width, cifar_stem = layout
    model = f"a {arch} x{width:g}{' with the CIFAR stem' if cifar_stem else ''}"
    misfit = ""
    for projection_shortcuts in (False, True):
        with torch.device("meta"):  # only its names: no memory even for a ResNet-50 4x
            names = ResNet(arch, width, cifar_stem,
                           projection_shortcuts=projection_shortcuts).state_dict()
        weights = from_torchvision(state, names)
        _fills_counters(weights, names)
        problem = _misfit(weights, names, model)
        if problem is None:
            break
        misfit = misfit or problem  # (as the plain ResNet it names: the first misfit)
    else:
        return misfit
    config = {"model": {"arch": arch, "width": width, "cifar_stem": cifar_stem,
                        **({"projection_shortcuts": True} if projection_shortcuts else {})},
              "augment": {"size": assumed_side(cifar_stem)}}
    return config, {f"encoder.{k}": v for k, v in weights.items()}, \
        f"ResNet weights in {'simclr' if ours else 'torchvision'}'s layout" + \
        (", with projection shortcuts" if projection_shortcuts else "")


def _misfit(weights: Mapping[str, torch.Tensor], names: Mapping[str, torch.Tensor],
            model: str) -> str | None:
    """The first tensor of ``weights`` (simclr's names) that ``names`` (the network
    ``model`` describes) has not, or has of another shape, or lacks; None if they fit."""
    names_in_file = {k: _renamed(k, True) for k in names}
    for k, v in names.items():
        if k not in weights:
            return f"its names are {model}'s but it has no {names_in_file[k]}"
        if weights[k].shape != v.shape:
            return (f"its names are {model}'s but {names_in_file[k]} is "
                    f"{tuple(weights[k].shape)}, not {tuple(v.shape)}")
    extra = sorted(_renamed(k, True) for k in weights.keys() - names.keys())
    if extra:
        return f"its names are {model}'s but it also has {extra[0]}" + (
            f" and {len(extra) - 1} more tensors" if len(extra) > 1 else "")
    return None


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
        state = _under_own_names(state, [k[len("net."):] for k in encoder.state_dict()])
        return {f"net.{k}": v for k, v in state.items() if not k.startswith(drop)}
    # (not a ResNet's file, or it would have been read as one: the caller names the misfit)
    return from_torchvision(state, encoder.state_dict())


def _under_own_names(state: Mapping[str, Any], names: list[str]) -> Mapping[str, Any]:
    """``state`` without the prefix its network's ``names`` sit under when it was saved
    inside a larger model (``backbone.``, ``model.``; the shortest that holds them all),
    else unchanged."""
    if not names or names[0] in state:
        return state
    prefixes = sorted({k[: -len(names[0])] for k in state if k.endswith(names[0])}, key=len)
    for prefix in prefixes:
        if all(prefix + name in state for name in names):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def torchvision_model(encoder: ResNet | TorchvisionEncoder, image_size: int
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
        check_convertible(arch, encoder.width)
        if getattr(encoder, "projection_shortcuts", False) and arch in ("resnet18", "resnet34"):
            raise SimCLRError(f"torchvision's {arch} has no shortcut projection in its first "
                              "stage (this encoder: --projection-shortcuts, the official "
                              "code's): it has no torchvision layout")
        state = to_torchvision(encoder.state_dict())
        model = getattr(torchvision.models, arch)()
        code = f"m = torchvision.models.{arch}(); "
        if encoder.cifar_stem:  # the CIFAR stem (App. B.9): a 3x3 stride-1 conv, no max-pool
            model.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
            model.maxpool = nn.Identity()
            code += ("m.conv1 = torch.nn.Conv2d(3, 64, 3, padding=1, bias=False); "
                     "m.maxpool = torch.nn.Identity(); ")
        model.fc = nn.Identity()
        code += "m.fc = torch.nn.Identity()"
    model.load_state_dict(state)
    return model, state, code
