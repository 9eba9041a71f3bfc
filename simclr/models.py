"""Base encoder f (ResNet with a width multiplier) and projection head g.

Chen et al. 2020, Sec. 2.1: h = f(x) is the output of the final average pool, and
z = g(h) feeds the contrastive loss; Sec. 4.2 / Fig. 8 compare heads 'none',
'linear' and the non-linear 'mlp'. Sec. 4.1 / Fig. 7 scale the ResNet in depth
(18..152) and width (1x, 2x, 4x: *every* layer's channels, the stem included, unlike
torchvision's ``wide_resnet`` which widens only the bottleneck's middle conv).

Faithful to the official code (``resnet.py``, ``model_util.py``) in the CIFAR stem
(3x3 conv, stride 1, no max-pool) for images of side <= 32 (App. B.9), the last
BatchNorm of each residual block starting at gamma = 0, and SimCLRv2's head
(Linear without bias + BatchNorm, ReLU except after the last layer). The shortcuts
project (1x1 conv + BN) where the shape changes, as torchvision's (whose weights then
load); ``projection_shortcuts`` (--projection-shortcuts) projects in every stage's first
block, as the official code does, so its ResNet-18/34 hold one more 1x1 conv + BN, in
the first stage (ResNet-50 and deeper are the same either way).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr.backbones import TorchvisionEncoder, check_arch, is_torchvision_arch
from simclr.config import ARCHS, ModelConfig
from simclr.errors import SimCLRError, check_counts, is_count
from simclr.memory import build_within_memory, check_model_memory

# arch -> (block kind, blocks per stage)
_LAYOUT: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
assert tuple(_LAYOUT) == ARCHS


def _channels(base: int, width: float) -> int:
    """Channels of a layer scaled by the width multiplier, rounded, at least 1."""
    return max(1, int(round(base * width)))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    # 'same'-style padding; conv has no bias because a BatchNorm follows.
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]


class _SubsampledConv1x1(nn.Conv2d):
    """A 1x1 convolution of stride s computed at stride 1 on every s-th pixel: the same
    numbers, since a strided 1x1 kernel reads only those pixels; the same parameters.

    Why: oneDNN's weight gradient of a strided 1x1 convolution on channels_last input
    with fewer than 16 channels corrupts the heap on AVX-512 CPUs (torch 2.14.1: a
    ResNet-18 at --width 0.125 aborted with "double free or corruption" from 64-px
    feature maps on), so the narrow shortcuts never call that kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x[:, :, ::self.stride[0], ::self.stride[1]], self.weight, self.bias)


class _Shortcut(nn.Sequential):
    """Projection shortcut (1x1 conv + BN) used when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        conv = _SubsampledConv1x1 if stride != 1 and c_in < 16 else nn.Conv2d
        super().__init__(conv(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). ``out_channels = planes``."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, project: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.shortcut = (  # project: the official code's first block of a stage
            _Shortcut(c_in, planes, stride) if project or stride != 1 or c_in != planes
            else nn.Identity()
        )
        self.last_bn = self.bn2  # zero-initialised when zero_init_residual

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride, as in the official code) -> 1x1 (x4 channels)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, project: bool = False) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, c_out, 1)
        self.shortcut = (
            _Shortcut(c_in, c_out, stride) if project or stride != 1 or c_in != c_out
            else nn.Identity()
        )
        self.last_bn = self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet(nn.Module):
    """ResNet encoder f: images (B, 3, H, W) -> h (B, feature_dim) after global avg pool.

    ``feature_dim`` = round(512 * width) * expansion (512w for ResNet-18/34, 2048w for
    50/101/152). ``cifar_stem``: 3x3 stride-1 conv and no max-pool, so a 32x32 input
    reaches the last stage at 4x4; otherwise the ImageNet stem (7x7 stride 2 +
    3x3 max-pool stride 2), 224 -> 7x7.
    """

    # (declared: mypy, reaching their users first in an import cycle, cannot infer them)
    arch: str
    width: float
    cifar_stem: bool
    stem: nn.Module
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module

    def __init__(
        self,
        arch: str,
        width: float = 1.0,
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
        projection_shortcuts: bool = False,
    ) -> None:
        super().__init__()
        if arch not in _LAYOUT:
            raise SimCLRError(f"--arch: unknown architecture {arch!r} (choose from "
                              f"{', '.join(ARCHS)})")
        if isinstance(width, bool) or not isinstance(width, numbers.Real) or \
                not 0 < width < math.inf:
            raise SimCLRError(f"--width must be a positive number, got {width!r}")
        if cifar_stem not in (True, False):  # ('no' is a true value)
            raise SimCLRError(f"--cifar-stem must be true or false, got {cifar_stem!r}")
        kind, depths = _LAYOUT[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.arch, self.width, self.cifar_stem = arch, width, cifar_stem
        self.projection_shortcuts = bool(projection_shortcuts)
        stem_c = _channels(64, width)
        if cifar_stem:
            self.stem = nn.Sequential(*_conv_bn(3, stem_c, 3), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                *_conv_bn(3, stem_c, 7, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        c_in, stages = stem_c, []
        for i, (base, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            planes = _channels(base, width)
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(c_in, planes, stride, projection_shortcuts and j == 0))
                c_in = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim: int = c_in
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's He init (fan_out). The official TF code draws from a truncated
        # normal with variance 1/fan_in; a BN follows every conv, so the scale does not
        # change what the network computes, only the first steps' relative updates.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each residual branch then outputs 0: every block starts as relu(identity).
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)  # type: ignore[arg-type]  # (a BatchNorm's)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map (B, feature_dim, H', W')."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) -> h (B, feature_dim): global average pool, flattened."""
        return torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1)


def build_encoder(
    arch: str, width: float = 1.0, cifar_stem: bool = False, zero_init_residual: bool = False,
    image_size: int = 224, projection_shortcuts: bool = False,
) -> ResNet | TorchvisionEncoder:
    """ResNet-18/34/50/101/152 with every layer's channels multiplied by ``width``; another
    ``arch`` is a torchvision network without its classifier (:mod:`simclr.backbones`,
    ``image_size``: the input side, which sizes a ViT's position embeddings).
    ``zero_init_residual``: False here (the encoder the --random-init baselines draw);
    a run's (ModelConfig) is True, the official code's; ``cifar_stem`` is given (a run
    resolves its None from the view side)."""
    if arch not in _LAYOUT and is_torchvision_arch(arch):
        check_arch(arch, width, cifar_stem, image_size)
        return TorchvisionEncoder(arch, image_size)
    return ResNet(arch, width, cifar_stem, zero_init_residual, projection_shortcuts)


def resolve_cifar_stem(cifar_stem: bool | None, image_size: int, arch: str = "resnet50") -> bool:
    """``None`` = automatic: the CIFAR stem for images of side <= 32 (official rule), for
    simclr's ResNets (other networks keep their own stem)."""
    if arch not in _LAYOUT:
        return bool(cifar_stem)
    return image_size <= 32 if cifar_stem is None else bool(cifar_stem)


# ---------------------------------------------------------------------------- heads


class _BatchNormNoShift(nn.BatchNorm1d):
    """BatchNorm1d with a scale but no shift (beta).

    The official head's last layer uses BN with ``center=False`` (no bias at all on
    z), see ``linear_layer(use_bias=False, use_bn=True)`` in ``model_util.py``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.register_parameter("bias", None)


class ProjectionHead(nn.Module):
    """Projection head g: h (B, in_dim) -> z (B, out_dim). Sec. 2.1, Sec. 4.2.

    ``layers`` is a ModuleList of blocks, each ``Sequential(Linear[, BN][, ReLU])``;
    every block but the last ends with a ReLU. No layers = identity ('none' head).

    ``batch_norm=False`` (default): the paper's equation z = W2 relu(W1 h), every
    Linear with a bias (as in the common PyTorch ports).
    ``batch_norm=True``: the official code, v1 as well as v2 (``projection_head`` in
    ``model_util.py`` calls ``linear_layer(use_bn=True)`` for *every* head layer):
    Linears without bias, hidden BNs with scale and shift, the last BN with a scale
    only (``center=False``). 2 layers = official v1 head, 3 layers = SimCLRv2.
    Linear weights keep PyTorch's default init (the official N(0, 0.01^2) matters
    little once followed by BN or by the L2 normalisation of the loss).
    """

    def __init__(self, dims: list[int], batch_norm: bool = False) -> None:
        super().__init__()
        blocks = []
        n = len(dims) - 1
        for i in range(n):
            last = i == n - 1
            mods: list[nn.Module] = [nn.Linear(dims[i], dims[i + 1], bias=not batch_norm)]
            if batch_norm:
                mods.append(_BatchNormNoShift(dims[i + 1]) if last else nn.BatchNorm1d(dims[i + 1]))
            if not last:
                mods.append(nn.ReLU(inplace=True))
            blocks.append(nn.Sequential(*mods))
        self.layers = nn.ModuleList(blocks)
        self.in_dim, self.out_dim = dims[0], dims[-1]

    def forward(self, h: Tensor) -> Tensor:
        for block in self.layers:
            h = block(h)
        return h


def head_dims(kind: str, in_dim: int, hidden_dim: int | None, out_dim: int,
              num_layers: int = 2) -> list[int]:
    """The widths of a head's layers, input first: see :func:`build_head`."""
    check_counts({"in_dim": in_dim, "--head-hidden-dim": hidden_dim,
                  "--head-out-dim": out_dim})
    if kind == "none":
        return [in_dim]
    if kind == "linear":
        return [in_dim, out_dim]
    if kind == "mlp":
        if not is_count(num_layers):  # (None too: check_counts takes it as not given)
            raise SimCLRError(f"--head-layers must be a positive whole number, got "
                              f"{num_layers!r}")
        hidden = in_dim if hidden_dim is None else hidden_dim
        return [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
    raise SimCLRError(f"--head: unknown value {kind!r} (choose from none, linear, mlp)")


def build_head(
    kind: str,
    in_dim: int,
    hidden_dim: int | None,
    out_dim: int,
    num_layers: int = 2,
    batch_norm: bool = False,
) -> ProjectionHead:
    """'none' (identity, out_dim = in_dim), 'linear' (one layer) or 'mlp' (num_layers).

    ``hidden_dim`` None = ``in_dim`` (the paper: hidden width = 2048 for ResNet-50).
    """
    return ProjectionHead(head_dims(kind, in_dim, hidden_dim, out_dim, num_layers), batch_norm)


class SimCLRModel(nn.Module):
    """Encoder f and head g: x (B, 3, H, W) -> (h (B, D), z (B, out_dim))."""

    def __init__(self, encoder: ResNet | TorchvisionEncoder, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


def encoder_of(cfg: ModelConfig, image_size: int) -> ResNet | TorchvisionEncoder:
    """A new encoder f of a run's settings, for views of side ``image_size``."""
    return build_encoder(cfg.arch, cfg.width,
                         resolve_cifar_stem(cfg.cifar_stem, image_size, cfg.arch),
                         cfg.zero_init_residual, image_size, cfg.projection_shortcuts)


def build_model(cfg: ModelConfig, image_size: int) -> SimCLRModel:
    """The model of a run; the stem follows ``resolve_cifar_stem(cfg.cifar_stem, size)``.

    Global BatchNorm (cfg.sync_bn) is applied by the training loop after moving the model
    to its device (``simclr.distributed.convert_sync_batchnorm``).
    """
    encoder = encoder_of(cfg, image_size)
    head = build_head(cfg.head, encoder.feature_dim, cfg.head_hidden_dim, cfg.head_out_dim,
                      cfg.head_layers, cfg.head_batch_norm)
    return SimCLRModel(encoder, head)


def describe_model(cfg: ModelConfig) -> str:
    """'resnet50 x1, mlp head 2048-2048-128': what build_model builds, for messages."""
    text = f"{cfg.arch} x{cfg.width:g}"
    if cfg.arch not in _LAYOUT and cfg.head != "none":
        return f"{cfg.arch}, {cfg.head} head"  # (torchvision's: its h known once built)
    if cfg.arch not in _LAYOUT or not cfg.width > 0:
        return cfg.arch if cfg.arch not in _LAYOUT else text  # (refused when built)
    dims = head_dims(cfg.head, feature_dim_of(cfg), cfg.head_hidden_dim, cfg.head_out_dim,
                     cfg.head_layers)
    return f"{text}, " + ("no head" if len(dims) == 1
                          else f"{cfg.head} head {'-'.join(map(str, dims))}")


def feature_dim_of(cfg: ModelConfig) -> int:
    """The dimension of h that one of simclr's ResNets (``cfg.arch`` in its layouts, a
    positive width) gives, without building it: 2048 x width for a ResNet-50."""
    kind, _ = _LAYOUT[cfg.arch]
    return _channels(512, cfg.width) * (Bottleneck if kind == "bottleneck"
                                        else BasicBlock).expansion


def build_model_within_memory(cfg: ModelConfig, image_size: int, device: torch.device,
                              enforce: bool = True) -> SimCLRModel:
    """:func:`build_model` on ``device``, refused with a one-line SimCLRError before
    anything is allocated when it cannot fit (``simclr.memory.build_within_memory``;
    ``enforce=False``: --no-memory-check, only a model whose weights alone do not fit)."""
    model = build_within_memory(lambda: build_model(cfg, image_size), device,
                                *_model_words(cfg), enforce)
    assert isinstance(model, SimCLRModel)
    return model


def check_model_fits(cfg: ModelConfig, image_size: int, device: torch.device,
                     enforce: bool = True) -> None:
    """The refusal of :func:`build_model_within_memory` alone, nothing allocated: a
    sweep's cells are checked so before the first trains."""
    check_model_memory(lambda: build_model(cfg, image_size), device, *_model_words(cfg),
                       enforce)


def _model_words(cfg: ModelConfig) -> tuple[str, str]:
    """The model as memory refusals name it, and their hint."""
    return (f"the model ({describe_model(cfg)})",
            "try a smaller --width, --arch or --head-hidden-dim")


class Classifier(nn.Module):
    """Encoder + (optional kept head layer) + a new linear layer: x -> logits (B, C),
    the layer in float32 outside autocast (:meth:`logits`).

    Used for linear evaluation, fine-tuning and the supervised baseline. The
    linear layer starts as in the official ``linear_layer``: weights N(0, 0.01^2),
    bias 0, unless an already fitted ``fc`` is given. The given modules are used as they
    are (not copied).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, neck: nn.Module | None = None,
                 in_dim: int | None = None, fc: nn.Linear | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.neck = neck if neck is not None else nn.Identity()
        if fc is None:
            dim = in_dim if in_dim is not None else int(encoder.feature_dim)  # type: ignore[arg-type]  # (an int)
            fc = nn.Linear(dim, num_classes)
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)
        elif fc.out_features != num_classes:
            raise ValueError(f"fc has {fc.out_features} outputs for {num_classes} classes")
        self.fc = fc

    @classmethod
    def from_head(cls, encoder: nn.Module, head: ProjectionHead, num_classes: int) -> Classifier:
        """SimCLRv2-style fine-tuning from the head's first layer (Linear[+BN]+ReLU).

        The classifier reads the output of ``head.layers[0]`` instead of h.
        """
        if len(head.layers) == 0:
            raise SimCLRError("cannot fine-tune from the projection head: the head is 'none'")
        first = head.layers[0]
        return cls(encoder, num_classes, neck=first, in_dim=first[0].out_features)  # type: ignore[index]  # (a block)

    def features(self, x: Tensor) -> Tensor:
        """The input of the linear layer (B, in_dim)."""
        return self.neck(self.encoder(x))

    def logits(self, h: Tensor) -> Tensor:
        """The linear layer on features h (B, in_dim) -> (B, C), in float32 outside
        autocast on h cast to float32: the logits are ranked and a tie with the label
        counts as a miss, and bf16 logits (8 bits of mantissa) tie often over many
        classes. The parameters are unchanged, so saved classifiers load as before."""
        with torch.autocast(h.device.type, enabled=False):
            return self.fc(h.float())

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.features(x))


class LinearProbe(Classifier):
    """A linear layer trained on a frozen encoder (the SGD linear protocol, App. B.6):
    x (B,3,S,S) -> logits (B,C). The encoder stays in eval mode even when the probe is
    trained (BatchNorm keeps its running statistics) and gets no gradient; the layer
    runs in float32 outside autocast, on h cast to float32."""

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            h = self.features(x)
        return self.logits(h)


def build_classifier_within_memory(cfg: ModelConfig, image_size: int, num_classes: int,
                                   device: torch.device, enforce: bool = True) -> Classifier:
    """A new encoder of ``cfg`` (no head) and a linear layer of ``num_classes`` on
    ``device`` (the supervised baseline), refused like :func:`build_model_within_memory`."""
    def build() -> Classifier:
        return Classifier(encoder_of(cfg, image_size), num_classes)

    model = build_within_memory(build, device, f"the model ({cfg.arch} x{cfg.width:g}, "
                                f"{num_classes}-class linear layer)",
                                "try a smaller --width or --arch", enforce)
    assert isinstance(model, Classifier)
    return model


class HeadTap(nn.Module):
    """Encoder + the first ``depth`` blocks of the projection head: x -> g_depth(h).

    The representation at a layer of the head, for the paper's h-vs-g(h) comparisons
    (Sec. 4.2, Fig. 8: linear evaluation of h and z = g(h); Table 3: what each retains
    of the transformation) and SimCLRv2's evaluation from a middle layer of the head.
    ``depth`` = len(head.layers) gives z. The modules are used as they are (not copied).
    """

    def __init__(self, encoder: nn.Module, head: ProjectionHead, depth: int) -> None:
        super().__init__()
        if not head.layers:
            raise SimCLRError("this checkpoint has no projection head (--head none): its "
                              "representation is h only (--layer h)")
        if not 1 <= depth <= len(head.layers):
            raise SimCLRError(f"the projection head has {len(head.layers)} layer(s); "
                              f"cannot read the output of layer {depth}")
        self.encoder = encoder
        self.blocks = nn.Sequential(*head.layers[:depth])
        self.feature_dim = int(head.layers[depth - 1][0].out_features)  # type: ignore[index]  # (a block)
        self.image_size = getattr(encoder, "image_size", None)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.encoder(x))
