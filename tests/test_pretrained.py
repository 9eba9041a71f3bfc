"""Tests for simclr.pretrained: rebuilding encoder and head, representations at h, z, gK."""

from __future__ import annotations

import pytest
import torch

from simclr.config import build_config
from simclr.errors import SimCLRError
from simclr.models import build_model
from simclr.pretrained import (
    encoder_from_checkpoint,
    model_from_checkpoint,
    representation_from_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def pretrain_checkpoint(head_layers: int = 3, batch_norm: bool = True) -> dict:
    """A pretraining checkpoint as train.py writes it (model weights and config)."""
    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16, "model.head_layers": head_layers,
                              "model.head_batch_norm": batch_norm, "model.head_out_dim": 24})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        model.train()(torch.rand(8, 3, 16, 16))
    return {"format": "simclr-checkpoint", "version": 1, "kind": "pretrain",
            "config": cfg.to_dict(), "model": model.state_dict()}


def test_representations_read_the_right_layer():
    ckpt = pretrain_checkpoint()
    model, spec = model_from_checkpoint(ckpt)
    model.eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        h, z = model(x)
        g1 = model.head.layers[0](h)
        g2 = model.head.layers[1](g1)
        expected = {"h": h, "g1": g1, "g2": g2, "g3": z, "z": z}
        for layer, want in expected.items():
            module, _ = representation_from_checkpoint(ckpt, layer)
            got = module.eval()(x)
            assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6), layer
            assert module.feature_dim == want.shape[1]
    assert spec["image_size"] == 16 and z.shape == (5, 24) and h.shape == (5, 64)


@pytest.mark.parametrize("layer", ["g4", "g0", "q", "z1", ""])
def test_bad_layers_are_user_errors(layer):
    with pytest.raises(SimCLRError, match="layer"):
        representation_from_checkpoint(pretrain_checkpoint(), layer)


def test_checkpoints_without_a_head_only_offer_h():
    ckpt = pretrain_checkpoint()
    encoder_only = {"kind": "encoder", "config": ckpt["config"],
                    "model": {k: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}}
    encoder, _ = encoder_from_checkpoint(encoder_only)
    assert encoder.feature_dim == 64
    with pytest.raises(SimCLRError, match="no projection head"):
        representation_from_checkpoint(encoder_only, "z")


def test_random_init_rebuilds_the_architecture_only():
    ckpt = pretrain_checkpoint()
    trained, _ = model_from_checkpoint(ckpt)
    fresh, _ = model_from_checkpoint(ckpt, random_init=True)
    name = "head.layers.0.0.weight"
    assert fresh.state_dict()[name].shape == trained.state_dict()[name].shape
    assert not torch.equal(fresh.state_dict()[name], trained.state_dict()[name])
