"""Tests for simclr.torchvision_io: weights in torchvision's ResNet layout, both ways."""

from __future__ import annotations

import pytest
import torch
import torchvision

from simclr.errors import SimCLRError
from simclr.models import build_encoder
from simclr.torchvision_io import check_convertible, from_torchvision, to_torchvision

pytestmark = pytest.mark.usefixtures("one_thread")


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm parameters and statistics: a renamed or swapped tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def torchvision_resnet(arch: str) -> torch.nn.Module:
    model = getattr(torchvision.models, arch)()
    model.fc = torch.nn.Identity()
    return model


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_computes_the_encoder_from_its_exported_weights(arch):
    torch.manual_seed(0)
    ours = randomised(build_encoder(arch, 1.0, False), seed=1)
    theirs = torchvision_resnet(arch)
    theirs.load_state_dict(to_torchvision(ours.state_dict()))  # strict: every name maps
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(x), ours(x), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet34", "resnet101"])
def test_the_encoder_computes_torchvision_from_its_weights(arch):
    torch.manual_seed(0)
    theirs = randomised(torchvision_resnet(arch), seed=2)
    ours = build_encoder(arch, 1.0, False)
    state = {**theirs.state_dict(), "fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}
    ours.load_state_dict(from_torchvision(state, ours.state_dict()))  # strict, fc dropped
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x), rtol=0, atol=0)


def test_only_width_one_with_the_imagenet_stem_has_a_torchvision_layout():
    check_convertible("resnet50", 1.0, False)
    with pytest.raises(SimCLRError, match=r"resnet18 has no width multiplier \(this encoder: "
                                          r"width 0.5\)"):
        check_convertible("resnet18", 0.5, False)
    with pytest.raises(SimCLRError, match="resnet18 has no CIFAR stem"):
        check_convertible("resnet18", 1.0, True)
