"""torchvision's other classification networks as the base encoder f.

The paper's encoders are ResNets (:class:`simclr.models.ResNet`, with its width
multiplier and CIFAR stem); SimCLR itself only asks of f a vector h per image (Sec. 2.1:
"our framework allows various choices of the network architecture without any
constraints"). A practitioner may want another network: ``--arch`` also takes the name
of a torchvision network of the families below (``convnext_tiny``, ``efficientnet_b0``,
``mobilenet_v3_large``, ``regnet_y_800mf``, ``resnext50_32x4d``, ``vit_b_16``,
``swin_t``, ...), built with torchvision's own code and initialisation, with its
classifier removed: h is what the classifier received (the pooled features; a ViT's
class token). Its weights keep torchvision's names under ``net.``, so torchvision state
dicts (e.g. ImageNet weights) load into it and it exports back to torchvision
(:mod:`simclr.torchvision_io`).
"""

from __future__ import annotations

import functools

from torch import Tensor, nn

from simclr.errors import SimCLRError

# Family (name prefix) -> the classifier to remove: an attribute, or (attribute, index) for
# a Sequential whose earlier modules (ConvNeXt's LayerNorm + Flatten) belong to h.
_CLASSIFIERS: dict[str, str | tuple[str, int]] = {
    "convnext_": ("classifier", 2),
    "densenet": "classifier",
    "efficientnet_": "classifier",
    "mobilenet_v2": "classifier",
    "mobilenet_v3_": "classifier",
    "regnet_": "fc",
    "resnext": "fc",
    "shufflenet_v2_": "fc",
    "swin_": "head",
    "vit_": "heads",
    "wide_resnet": "fc",
}
FAMILIES = tuple(sorted(p.rstrip("_") for p in _CLASSIFIERS))

# Family -> the smallest image side its networks' forward takes: below it a layer meets a
# map smaller than its kernel (DenseNet's last transition pools a 1x1 map with a 2x2
# window, ConvNeXt's last downsampling is a 2x2 convolution, Swin's patch embedding a 4x4
# one) and the forward stops in a RuntimeError. Measured (torchvision 0.29) for every
# network of each family, and for simclr's ResNets with either stem, by passing one image
# of each side 1..64 through it: it works at this side and at every larger one, and fails
# at every smaller one; training mode with 2 images gives the same sides
# (tests/test_backbones.py repeats the loop's check for each family's smallest network).
# A ViT's is its patch (_patch_size); 1 is any side, which MIN_SIZE (8 px) bounds first.
_MIN_SIDES: dict[str, int] = {
    "convnext_": 32, "densenet": 29, "efficientnet_": 1, "mobilenet_v2": 1,
    "mobilenet_v3_": 1, "regnet_": 1, "resnext": 1, "shufflenet_v2_": 1, "swin_": 4,
    "wide_resnet": 1,
}


def _family(name: str) -> str | None:
    return next((p for p in _CLASSIFIERS if name.startswith(p)), None)


@functools.cache
def torchvision_archs() -> tuple[str, ...]:
    """The torchvision networks ``--arch`` takes besides simclr's ResNets."""
    from torchvision import models

    from simclr.config import ARCHS

    return tuple(n for n in models.list_models(module=models)
                 if _family(n) is not None and n not in ARCHS)


def is_torchvision_arch(arch: str) -> bool:
    from simclr.config import ARCHS

    return arch not in ARCHS and _family(arch) is not None and arch in torchvision_archs()


def arch_problem(arch: str, width: float, cifar_stem: bool | None,
                 image_size: int) -> tuple[str, str] | None:
    """(the setting, what is wrong) when a torchvision network does not fit the settings."""
    if not is_torchvision_arch(arch):
        return "model.arch", (f": unknown architecture {arch!r} (simclr's resnet18, resnet34, "
                              "resnet50, resnet101, resnet152, or a torchvision network of "
                              f"the families {', '.join(FAMILIES)}, e.g. convnext_tiny, "
                              "efficientnet_b0, vit_b_16)")
    if width != 1:
        return "model.width", (f" {width:g}: the width multiplier is for simclr's ResNets; "
                               f"torchvision's {arch} has its own sizes (another --arch)")
    if cifar_stem:
        return "model.cifar_stem", (f" is for simclr's ResNets; torchvision's {arch} keeps "
                                    "its own stem")
    patch = _patch_size(arch)
    if patch and image_size % patch:
        return "augment.size", (f" {image_size}: {arch} cuts images into {patch}-px "
                                f"patches; give a multiple of {patch}")
    return None


def min_side(arch: str) -> int:
    """The smallest image side (px) ``arch``'s forward takes: simclr's ResNets any (1)."""
    family = _family(arch)
    if family is None or not is_torchvision_arch(arch):
        return 1
    return _patch_size(arch) or _MIN_SIDES[family]


def size_problem(arch: str, side: int | None,
                 path: str = "augment.size") -> tuple[str, str] | None:
    """(the setting ``path``, what is wrong) when its ``side`` (the views', or the
    evaluation's) is smaller than ``arch`` takes: refused with the settings, not met as
    a RuntimeError deep in the first forward (pretraining's memory measure, or a later
    evaluation of the run)."""
    problem = side_problem(arch, side)
    return None if problem is None else (path, problem)


def side_problem(arch: str, side: int | None) -> str | None:
    """What follows the flag when ``side`` px is too small for ``arch`` (else None)."""
    least = min_side(arch)
    if side is None or side >= least:
        return None
    return f" {side} is too small for {arch}: it needs at least {least} px"


def check_arch(arch: str, width: float, cifar_stem: bool | None, image_size: int) -> None:
    """:func:`arch_problem` as a one-line SimCLRError naming the flag."""
    from simclr.settings import flag_of

    problem = arch_problem(arch, width, cifar_stem, image_size)
    if problem is not None:
        raise SimCLRError(f"--{flag_of(problem[0])}{problem[1]}")


def _patch_size(arch: str) -> int | None:
    if arch.startswith("vit_"):
        return int(arch.rsplit("_", 1)[1])
    return None


class TorchvisionEncoder(nn.Module):
    """f: images (B, 3, S, S) -> h (B, feature_dim), a torchvision network without its
    classifier (``self.net``, torchvision's modules and names).

    ``arch``, ``width`` (1) and ``cifar_stem`` (False) describe it as
    :class:`simclr.models.ResNet` does its own, for checkpoints and messages.
    """

    arch: str  # (declared: mypy, reaching their users first in an import cycle, cannot
    width: float  # infer them)
    cifar_stem: bool

    def __init__(self, arch: str, image_size: int = 224) -> None:
        super().__init__()
        from torchvision.models import get_model

        check_arch(arch, 1.0, False, image_size)
        self.arch, self.width, self.cifar_stem = arch, 1.0, False
        # A ViT's position embeddings are sized for its input side, the only one it takes.
        self.fixed_size: int | None = image_size if arch.startswith("vit_") else None
        extra = {"image_size": image_size} if self.fixed_size else {}
        self.net = get_model(arch, weights=None, **extra)
        self.feature_dim: int = _remove_classifier(self.net, _CLASSIFIERS[_family(arch)])  # type: ignore[index]  # (arch checked)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, S, S) in [0, 1] -> h (B, feature_dim)."""
        return self.net(x)


def _remove_classifier(net: nn.Module, where: str | tuple[str, int]) -> int:
    """Replace the classifier by the identity; returns the dimension it received."""
    name, index = (where, None) if isinstance(where, str) else where
    parent = getattr(net, name)
    removed = parent if index is None else parent[index]
    first = next(m for m in removed.modules() if isinstance(m, nn.Linear))
    if index is None:
        setattr(net, name, nn.Identity())
    else:
        parent[index] = nn.Identity()
    return int(first.in_features)


def classifier_prefix(arch: str) -> str:
    """The state-dict prefix of the classifier a torchvision network of ``arch`` has and
    its encoder has not (``fc.``, ``classifier.2.``, ``heads.``)."""
    where = _CLASSIFIERS[_family(arch)]  # type: ignore[index]  # (a torchvision arch's)
    return f"{where}." if isinstance(where, str) else f"{where[0]}.{where[1]}."


def classifier_code(arch: str) -> str:
    """How users remove it: ``m.fc``, ``m.classifier[2]`` (to assign nn.Identity())."""
    where = _CLASSIFIERS[_family(arch)]  # type: ignore[index]  # (a torchvision arch's)
    return f"m.{where}" if isinstance(where, str) else f"m.{where[0]}[{where[1]}]"
