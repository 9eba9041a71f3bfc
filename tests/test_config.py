"""The config's defaults (the paper's ImageNet recipe) and the presets' recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from simclr.config import Config
from simclr.models import build_model
from simclr.presets import PRESETS
from simclr.settings import build_config


def test_defaults_are_the_papers_imagenet_recipe():
    cfg = build_config()
    assert (cfg.model.arch, cfg.batch_size, cfg.loss.temperature) == ("resnet50", 4096, 0.1)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("lars", 0.3, 1e-6)
    assert cfg.augment.jitter() == pytest.approx((0.8, 0.8, 0.8, 0.2))
    assert cfg.augment.blur and cfg.augment.crop_scale == (0.08, 1.0)



def test_an_unset_lr_is_the_papers_base_for_its_scaling_rule():
    # App. B.1: 0.3 x B/256, or 0.075 x sqrt(B); both give 4.8 at the paper's batch 4096.
    from simclr.config import OptimConfig
    from simclr.optim import scaled_lr

    for preset in (None, "imagenet"):
        sqrt = build_config(preset, flags={"optim.lr_scaling": "sqrt"})
        assert sqrt.optim.lr == 0.075
        assert scaled_lr(sqrt.optim.lr, 4096, "sqrt") == pytest.approx(4.8)
    assert build_config(flags={"optim.lr_scaling": "sqrt", "optim.lr": 0.1}).optim.lr == 0.1
    assert OptimConfig(lr_scaling="sqrt").base_lr() == 0.075  # a Config built in Python
    assert OptimConfig().base_lr() == 0.3



def test_cifar_preset_is_the_official_recipe():
    cfg = build_config("cifar10")
    assert (cfg.model.arch, cfg.batch_size, cfg.optim.lr, cfg.optim.weight_decay) == (
        "resnet18", 512, 1.0, 1e-4)
    assert cfg.loss.temperature == 0.5 and not cfg.augment.blur
    assert cfg.augment.jitter() == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert (cfg.optim.name, cfg.optim.lr_scaling, cfg.epochs) == ("lars", "linear", 1000)
    # the head of the official run.py's defaults (num_proj_layers=3), which its README's
    # CIFAR-10 command keeps
    assert (cfg.model.head, cfg.model.head_layers, cfg.model.head_out_dim) == ("mlp", 3, 128)
    # and its ResNet: tf2/resnet.py's BlockGroup projects the shortcut of every stage's
    # first block (use_projection=True), the first stage's too, through the CIFAR stem
    assert cfg.model.projection_shortcuts
    model = build_model(cfg.model, cfg.augment.size)
    assert model.encoder.cifar_stem and isinstance(model.encoder.layer1[0].shortcut[0],
                                                   nn.Conv2d)
    assert model(torch.randn(2, 3, 32, 32))[0].shape == (2, 512)
    # (a torchvision network named on top is built as it is: not recorded as projecting)
    assert not build_config("cifar10", flags={"model.arch": "convnext_tiny"}
                            ).model.projection_shortcuts



def test_imagenet_preset_is_the_papers_recipe():
    """--preset imagenet is the paper's ImageNet settings (Sec. 2.3's default setting), whatever
    the defaults it overrides: its own values, not inherited ones, are checked."""
    cfg = build_config("imagenet")
    assert (cfg.model.arch, cfg.model.width, cfg.batch_size, cfg.epochs) == (
        "resnet50", 1.0, 4096, 100)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.lr_scaling, cfg.optim.weight_decay) == (
        "lars", 0.3, "linear", 1e-6)
    assert cfg.loss.temperature == 0.1
    assert (cfg.augment.size, cfg.augment.color_strength, cfg.augment.blur) == (224, 1.0, True)
    assert (cfg.augment.crop_sampler, cfg.augment.color_ops) == ("official", "official")


@pytest.mark.parametrize("preset", ["imagenet", "cifar10"])
def test_official_recipes_run_as_the_official_code(preset):
    # objective.py optimises loss_a + loss_b (2 L); model_util.py puts BN in every head layer.
    cfg = build_config(preset)
    assert cfg.loss.weight == 2.0 and cfg.model.head_batch_norm
    assert build_config().loss.weight == 1.0  # the default is Alg. 1's L
    if preset == "imagenet":  # crops from about the photos' own pixels, not a 258-px copy
        assert cfg.data.load_size == 384



def test_every_preset_validates():
    for name in PRESETS:
        assert isinstance(build_config(name), Config)


def test_every_default_of_the_reference_recipe():
    """The rest of the paper's recipe (App. A, Sec. 2.3; the official data_util.py), each
    value written here from the reference, not read from the code."""
    cfg = build_config()
    o, a, m = cfg.optim, cfg.augment, cfg.model
    assert (o.lr_scaling, o.momentum, o.eta, o.warmup_epochs, o.final_lr) == (
        "linear", 0.9, 0.001, 10.0, 0.0)
    assert o.exclude_bias_and_norm and o.warmup_fraction is None
    assert a.crop_ratio == pytest.approx((3 / 4, 4 / 3)) and a.interpolation == "bicubic"
    assert (a.flip_p, a.color_p, a.grayscale_p, a.blur_p) == (0.5, 0.8, 0.2, 0.5)
    assert a.blur_sigma == (0.1, 2.0) and a.blur_kernel_frac == 0.1
    assert a.color_random_order and a.grayscale and a.flip and a.color
    assert (m.head, m.head_layers, m.head_out_dim) == ("mlp", 2, 128)
    assert m.zero_init_residual and m.sync_bn and cfg.loss.normalize
    assert cfg.epochs == 100


def test_our_presets_are_the_recipes_their_notes_give():
    """The CPU recipes (README, "Results") and the digits demo: 16-px views of crops of at
    least half the digit, not mirrored (a mirrored digit is another glyph)."""
    digits = build_config("digits")
    assert (digits.augment.size, digits.augment.flip, digits.augment.crop_scale) == (
        16, False, (0.5, 1.0))
    assert (digits.model.width, digits.batch_size, digits.epochs) == (0.25, 256, 40)
    cpu = build_config("cifar10-cpu")
    assert (cpu.model.width, cpu.loss.temperature, cpu.batch_size, cpu.loss.weight) == (
        0.25, 0.2, 512, 1.0)
    assert not cpu.augment.blur and cpu.model.head_batch_norm
    assert (cpu.augment.size, cpu.augment.evaluation_size()) == (24, 32)
    photos = build_config("imagenette-cpu")
    assert (photos.augment.size, photos.model.width, photos.data.cache) == (96, 0.5, "on")
    assert photos.augment.evaluation_size() == 128
    assert photos.augment.blur and photos.augment.jitter() == pytest.approx(
        (0.4, 0.4, 0.4, 0.1))
    assert (photos.loss.temperature, photos.model.head_batch_norm, photos.batch_size) == (
        0.2, True, 512)
    assert not digits.augment.blur and digits.loss.temperature == 0.2
    assert Path(digits.out).parts[-2:] == ("runs", "digits")
    # each the CIFAR recipe's optimiser (LARS, lr 1.0 linear, wd 1e-4) and colour strength
    # 0.5; 100 epochs a time budget cuts short, checkpoints as often as a run's length asks
    for cfg, epochs, every in ((cpu, 100, 1000), (photos, 100, 500), (digits, 40, 0)):
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.lr_scaling, cfg.optim.weight_decay) \
            == ("lars", 1.0, "linear", 1e-4)
        assert cfg.augment.jitter() == pytest.approx((0.4, 0.4, 0.4, 0.1))
        assert (cfg.epochs, cfg.checkpoint_every) == (epochs, every)


def test_the_defaults_train_the_papers_model_with_its_ops_alone():
    """The remaining defaults, written here from the reference (and the config's own
    comments where the paper is silent), not read from the code: the paper's crop + resize
    to 224 px, its 1x ResNet-50 with z = W2 ReLU(W1 h) (no BN in the head, torchvision's
    shortcuts), NT-Xent over both views' negatives, and none of Fig. 5's extra ops."""
    cfg = build_config()
    a, m, loss = cfg.augment, cfg.model, cfg.loss
    assert (a.size, a.eval_size, a.crop, a.crop_resize) == (224, None, True, True)
    assert (a.crop_sampler, a.color_ops) == ("torchvision", "torchvision")
    assert not any((a.cutout, a.rotate, a.noise, a.sobel, a.asymmetric)) and a.first_op == ""
    assert (m.width, m.head_batch_norm, m.projection_shortcuts, m.cifar_stem) == (
        1.0, False, False, None)
    assert m.head_hidden_dim is None  # W1 is square: h's own dimension, whatever the encoder
    assert (loss.name, loss.one_view_negatives, loss.semi_hard) == ("nt_xent", False, False)
    # no scaling: the paper's 0.3 taken as the peak itself; AdamW's betas are torch's
    assert build_config(flags={"optim.lr_scaling": "none"}).optim.lr == 0.3
    assert cfg.optim.betas == (0.9, 0.999)


def test_each_given_jitter_amount_replaces_its_own_derived_one():
    """Table 1's s sets the four amounts (0.8s, 0.8s, 0.8s, 0.2s); an amount given
    replaces that one alone, the others still follow s."""
    from simclr.config import AugmentConfig

    assert AugmentConfig(color_strength=0.5, brightness=0.1, contrast=0.2, saturation=0.3,
                         hue=0.05).jitter() == pytest.approx((0.1, 0.2, 0.3, 0.05))
    assert AugmentConfig(color_strength=0.5, contrast=0.2).jitter() == pytest.approx(
        (0.4, 0.2, 0.4, 0.1))
    assert AugmentConfig(color_strength=0.5, saturation=0.0, hue=0.0).jitter() == \
        pytest.approx((0.4, 0.4, 0.0, 0.0))


def test_the_decompression_bomb_limit_is_pils_own():
    """--max-pixels' default is PIL's default MAX_IMAGE_PIXELS, as its help says: a
    quarter GiB of 32-bit pixels, over 3 (PIL's own expression)."""
    from simclr.config import DataConfig

    assert DataConfig().max_pixels == int(1024 * 1024 * 1024 // 4 // 3)


def test_a_setting_missing_from_an_older_run_reads_as_what_that_run_did():
    """Sweep reuse compares an older config.yaml without data.store as central squares,
    the storage of its time; a setting without such a history reads as its default."""
    from simclr.config import default_of, unsaved_value

    assert unsaved_value("data.store") == "center" != default_of("data.store")
    assert unsaved_value("epochs") == default_of("epochs") == 100.0
