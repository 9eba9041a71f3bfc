"""Tests for simclr.backbones: torchvision networks as the encoder f, checked against
torchvision's own network (the input its classifier receives), and through the run's
life: pretraining, torchvision weights in and out, the settings that do not apply."""

from __future__ import annotations

import pytest
import torch
import torchvision

from simclr.backbones import (
    FAMILIES,
    TorchvisionEncoder,
    classifier_code,
    classifier_prefix,
    min_side,
    side_problem,
    torchvision_archs,
)
from simclr.cli import main
from simclr.config_file import save_yaml
from simclr.errors import SimCLRError
from simclr.models import ResNet
from simclr.optim import param_groups
from simclr.settings import build_config

pytestmark = pytest.mark.usefixtures("one_thread")

# The smallest network of every family, at the side it is built for in the test.
SMALLEST = {"convnext_tiny": 32, "densenet121": 32, "efficientnet_b0": 32,
            "mobilenet_v2": 32, "mobilenet_v3_small": 32, "regnet_x_400mf": 32,
            "resnext50_32x4d": 32, "shufflenet_v2_x0_5": 32, "swin_t": 32, "vit_b_32": 64,
            "wide_resnet50_2": 32}


def test_every_family_is_tested_and_offered():
    assert sorted({next(f for f in FAMILIES if a.startswith(f)) for a in SMALLEST}) == \
        sorted(FAMILIES)
    assert set(SMALLEST) <= set(torchvision_archs())
    assert "resnet50" not in torchvision_archs()  # simclr's own ResNets keep the name
    # A family is the name's start: MaxViT is no ViT (its classifier is no `heads`)
    assert "maxvit_t" not in torchvision_archs() and "vit_b_16" in torchvision_archs()
    # ... and said by its name, as --arch's refusal lists them
    assert "convnext" in FAMILIES and not any(f.endswith("_") for f in FAMILIES)


@pytest.mark.parametrize(("arch", "size"), SMALLEST.items())
def test_h_is_what_torchvisions_classifier_receives(arch, size):
    """The encoder's output equals the input of the classifier in torchvision's own
    network holding the same weights (a forward hook on it), for a batch of 2."""
    torch.manual_seed(0)
    encoder = TorchvisionEncoder(arch, size).eval()
    extra = {"image_size": size} if arch.startswith("vit_") else {}
    reference = torchvision.models.get_model(arch, weights=None, **extra).eval()
    missing, unexpected = reference.load_state_dict(
        {k[len("net."):]: v for k, v in encoder.state_dict().items()}, strict=False)
    assert not unexpected and missing  # only the classifier is the reference's own
    # ... and those are the names torchvision weights are read without (classifier_prefix)
    prefix = classifier_prefix(arch)
    assert set(missing) == {k for k in reference.state_dict() if k.startswith(prefix)}
    name = {"convnext_": "classifier.2", "swin_": "head", "vit_": "heads"}
    target = next((v for k, v in name.items() if arch.startswith(k)),
                  "fc" if hasattr(reference, "fc") else "classifier")
    seen = []
    reference.get_submodule(target).register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        h = encoder(x)
        reference(x)
    assert h.shape == (2, encoder.feature_dim)
    torch.testing.assert_close(h, seen[0])


def test_the_classifiers_state_dict_prefix_is_torchvisions_module_name():
    """The names of torchvision's classifier modules (ConvNeXt's is the last of its
    Sequential: LayerNorm2d and Flatten before it belong to h); a name alone is no
    prefix: "head" without its dot would also take a "heads." or "header." module."""
    assert {arch: classifier_prefix(arch) for arch in (
        "convnext_tiny", "mobilenet_v3_small", "regnet_x_400mf", "swin_t", "vit_b_32")} == {
        "convnext_tiny": "classifier.2.", "mobilenet_v3_small": "classifier.",
        "regnet_x_400mf": "fc.", "swin_t": "head.", "vit_b_32": "heads."}


def test_vit_position_embeddings_and_tokens_are_not_decayed():
    encoder = TorchvisionEncoder("vit_b_32", 64)
    groups = param_groups(encoder, weight_decay=1e-6)
    excluded = {id(p) for g in groups if g["lars_exclude"] for p in g["params"]}
    for name in ("net.class_token", "net.encoder.pos_embedding"):
        assert id(encoder.get_parameter(name)) in excluded
    assert id(encoder.get_parameter("net.conv_proj.weight")) not in excluded


def test_swin_relative_position_biases_are_not_decayed():
    """Swin's relative position bias tables are 2-D (169, heads) but added to the
    attention logits, like biases: no weight decay, no LARS adaptation."""
    encoder = TorchvisionEncoder("swin_t", 64)
    groups = param_groups(encoder, weight_decay=1e-6)
    excluded = {id(p) for g in groups if g["lars_exclude"] for p in g["params"]}
    tables = [p for n, p in encoder.named_parameters()
              if n.endswith("relative_position_bias_table")]
    assert len(tables) == 12 and all(p.ndim == 2 for p in tables)
    assert all(id(p) in excluded for p in tables)
    assert id(encoder.get_parameter("net.features.0.0.weight")) not in excluded


@pytest.mark.parametrize(("flags", "message"), [
    (["--arch", "vgg16"], "--arch: unknown architecture 'vgg16' (simclr's resnet18"),
    (["--arch", "convnext_tiny", "--width", "2"], "--width 2: the width multiplier is for"),
    (["--arch", "swin_t", "--cifar-stem"], "--cifar-stem is for simclr's ResNets"),
    (["--arch", "vit_b_16", "--image-size", "40"], "--image-size 40: vit_b_16 cuts images "
                                                   "into 16-px patches; give a multiple of 16"),
])
def test_settings_that_do_not_apply_are_one_line(tmp_path, capsys, flags, message):
    assert main(["pretrain", *flags, "--out", str(tmp_path / "run"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def _sides_that_work(arch: str, sides: tuple[int, ...], cifar_stem: bool = False) -> set[int]:
    """Those of ``sides`` one image of which goes through ``arch`` (simclr's ResNets at
    width 1/8: the strides, not the channels, decide the sides)."""
    def network(side: int) -> torch.nn.Module:
        if arch.startswith("resnet"):
            return ResNet(arch, 0.125, cifar_stem)
        extra = {"image_size": side} if arch.startswith("vit_") else {}
        return torchvision.models.get_model(arch, weights=None, **extra)

    works, net = set(), None
    for side in sides:
        try:  # (a ViT is built for its side, which must be a multiple of its patch)
            net = network(side) if net is None or arch.startswith("vit_") else net
            with torch.no_grad():
                net.eval()(torch.rand(1, 3, side, side))
        except (RuntimeError, ValueError, AssertionError):
            continue
        works.add(side)
    return works


@pytest.mark.parametrize(("arch", "cifar_stem"), [
    *((arch, False) for arch in SMALLEST), ("resnet18", False), ("resnet18", True),
    ("resnet50", False), ("resnet50", True)])
def test_the_recorded_smallest_side_is_the_smallest_the_forward_takes(arch, cifar_stem):
    """min_side (measured for every network of each family by this loop over sides 1..64)
    works and the side below it does not; below 8 px (MIN_SIZE) only for the record."""
    torch.manual_seed(0)
    least = min_side(arch)
    assert least == {"convnext_tiny": 32, "densenet121": 29, "swin_t": 4,
                     "vit_b_32": 32}.get(arch, 1)
    tried = (least - 1, least) if least > 1 else (least,)
    assert _sides_that_work(arch, tried, cifar_stem) == {least}


@pytest.mark.parametrize(("flags", "message"), [
    (["--arch", "densenet121", "--image-size", "16"],
     "--image-size 16 is too small for densenet121: it needs at least 29 px"),
    (["--arch", "convnext_tiny", "--image-size", "24"],
     "--image-size 24 is too small for convnext_tiny: it needs at least 32 px"),
    (["--arch", "densenet121", "--image-size", "32", "--eval-size", "8"],
     "--eval-size 8 is too small for densenet121: it needs at least 29 px"),
])
def test_sides_below_what_the_network_takes_are_refused_before_any_work(
        tmp_path, image_folder, cache_dir, capsys, flags, message):
    """Refused in one line naming the flag, before the data is read (the pretraining
    measured its memory on a tiny batch and stopped there in a RuntimeError; or trained
    at a good side and left an evaluation side no evaluation could read)."""
    assert main(["pretrain", "--data", str(image_folder), *flags, "--batch-size", "2",
                 "--max-steps", "1", "--workers", "0", "--precision", "fp32", "--device",
                 "cpu", "--cache-dir", cache_dir, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    assert main(["pretrain", *flags, "--out", str(tmp_path / "run"), "--print-config"]) == 2
    assert message in capsys.readouterr().err


def test_a_presets_resnet_width_is_not_applied_to_another_network():
    cfg = build_config("cifar10-cpu", flags={"model.arch": "mobilenet_v3_small"})
    assert cfg.model.width == 1.0  # the preset's 0.25 is a ResNet width
    with pytest.raises(SimCLRError, match="--width 0.5: the width multiplier"):
        build_config("cifar10-cpu", flags={"model.arch": "mobilenet_v3_small",
                                           "model.width": 0.5})


def test_a_printed_configs_resnet_width_is_not_applied_to_another_network(tmp_path):
    """A printed config holds its ResNet's width: --arch on top of it is then the preset
    plus --arch (width 1); a file naming both the network and a width is refused."""
    printed = tmp_path / "printed.yaml"
    save_yaml(build_config("cifar10-cpu").to_dict(), printed)
    cfg = build_config(None, str(printed), {"model.arch": "mobilenet_v3_small"})
    assert cfg == build_config("cifar10-cpu", flags={"model.arch": "mobilenet_v3_small",
                                                     "out": cfg.out})
    both = build_config("cifar10-cpu").to_dict()
    both["model"]["arch"] = "mobilenet_v3_small"
    save_yaml(both, printed)
    with pytest.raises(SimCLRError, match="model.width 0.25: the width multiplier"):
        build_config(None, str(printed))


def test_pretraining_and_torchvision_weights_in_and_out(tmp_path, image_folder, cache_dir,
                                                       capsys):
    """A 2-step pretraining of mobilenet_v3_small; its encoder exported in torchvision's
    layout computes h in torchvision's network; torchvision weights (with their
    classifier, as ImageNet files have it) start a new run."""
    common = ["--data", str(image_folder), "--arch", "mobilenet_v3_small", "--image-size",
              "32", "--batch-size", "8", "--max-steps", "2", "--workers", "0", "--precision",
              "fp32", "--device", "cpu", "--cache-dir", cache_dir]
    assert main(["pretrain", *common, "--out", str(tmp_path / "run")]) == 0
    import simclr

    encoder = simclr.load_encoder(tmp_path / "run/checkpoints/last.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out",
                 str(tmp_path / "tv.pth"), "--format", "torchvision"]) == 0
    network = torchvision.models.get_model("mobilenet_v3_small")
    network.classifier = torch.nn.Identity()
    network.load_state_dict(torch.load(tmp_path / "tv.pth"))
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(network.eval()(x), encoder(x))
    # info reads its card (it said the file was no ResNet's, and stopped there)
    capsys.readouterr()
    assert main(["info", str(tmp_path / "tv.pth")]) == 0
    last = (tmp_path / "run/checkpoints/last.pt").resolve()
    assert capsys.readouterr().out == (
        f"{tmp_path / 'tv.pth'}: exported weights (torchvision): h (576-d) of "
        f"mobilenet_v3_small x1, 32 px input, from {last}, step 2\n")
    torch.manual_seed(1)
    weights = torchvision.models.get_model("mobilenet_v3_small").state_dict()
    torch.save(weights, tmp_path / "imagenet-like.pth")
    assert main(["pretrain", *common, "--out", str(tmp_path / "init"), "--init-from",
                 str(tmp_path / "imagenet-like.pth"), "--lr", "1e-30"]) == 0
    started = simclr.load_encoder(tmp_path / "init/checkpoints/last.pt").state_dict()
    for name, value in weights.items():
        if not name.startswith("classifier.") and "running_" not in name \
                and "num_batches" not in name:
            torch.testing.assert_close(started[f"net.{name}"], value, msg=name)


def test_the_supervised_baselines_classifier_builds_on_them():
    from simclr.config import ModelConfig
    from simclr.models import build_classifier_within_memory

    model = build_classifier_within_memory(ModelConfig(arch="mobilenet_v3_small"), 32, 3,
                                           torch.device("cpu"))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)


def test_torchvision_weights_inside_a_larger_model_are_found_under_their_prefix():
    """--init-from with a Lightning-style file (backbone.* beside projector.*): the
    network's own tensors are found under backbone., the rest left out; a shorter
    prefix holding some of them is passed over, and of two holding them all (a MoCo
    file's momentum copy) the shortest is read."""
    from simclr.backbones import TorchvisionEncoder
    from simclr.torchvision_io import torchvision_weights

    encoder = TorchvisionEncoder("mobilenet_v3_small", 32)
    torch.manual_seed(2)
    weights = torchvision.models.get_model("mobilenet_v3_small").state_dict()
    saved = {**{f"model.backbone.{k}": v for k, v in weights.items()},
             "model.projector.0.weight": torch.zeros(4, 4),
             "ema.features.0.0.weight": torch.zeros_like(weights["features.0.0.weight"]),
             **{f"model.momentum_backbone.{k}": torch.zeros_like(v)
                for k, v in weights.items()}}
    encoder.load_state_dict(torchvision_weights(saved, encoder))  # strict
    assert torch.equal(encoder.state_dict()["net.features.0.0.weight"],
                       weights["features.0.0.weight"])


@pytest.mark.parametrize(("arch", "name", "count"), [("convnext_tiny", "layer_scale", 18),
                                                     ("swin_v2_t", "logit_scale", 12)])
def test_per_channel_scales_shaped_like_weights_are_not_decayed(arch, name, count):
    """ConvNeXt's layer_scale and Swin V2's logit_scale are (C, 1, 1): not 1-D, yet
    scales, which their papers' code leaves out of weight decay (and LARS would hold
    layer_scale near its 1e-6 start)."""
    encoder = TorchvisionEncoder(arch, 64)
    groups = param_groups(encoder, weight_decay=1e-6)
    excluded = {id(p) for g in groups if g["lars_exclude"] for p in g["params"]}
    scales = [p for n, p in encoder.named_parameters() if n.endswith(name)]
    assert len(scales) == count and all(p.ndim == 3 for p in scales)
    assert all(id(p) in excluded for p in scales)


def test_the_classifiers_code_removes_torchvisions_classifier():
    """The code a torchvision export's card prints (``m.classifier[2] =
    torch.nn.Identity()``) indexes ConvNeXt's Sequential: ``m.classifier.2`` is no Python,
    and ``m.classifier`` would drop the LayerNorm2d and Flatten that belong to h."""
    assert {arch: classifier_code(arch) for arch in ("convnext_tiny", "regnet_x_400mf",
                                                     "vit_b_32")} == {
        "convnext_tiny": "m.classifier[2]", "regnet_x_400mf": "m.fc", "vit_b_32": "m.heads"}
    m = torchvision.models.get_model("convnext_tiny", weights=None)
    exec(f"{classifier_code('convnext_tiny')} = torch.nn.Identity()")  # noqa: S102
    assert isinstance(m.classifier[2], torch.nn.Identity) and len(m.classifier) == 3
    with torch.no_grad():
        assert m.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 768)


def test_the_smallest_side_itself_is_taken():
    """side_problem refuses only sides below min_side: densenet121 at 29 px, vit_b_32 at
    its patch (32 px), which their forwards take, are no problem; one px less is."""
    for arch, least in (("densenet121", 29), ("vit_b_32", 32), ("convnext_tiny", 32)):
        assert side_problem(arch, least) is None
        assert side_problem(arch, least - 1) == (f" {least - 1} is too small for {arch}: "
                                                 f"it needs at least {least} px")


def test_an_encoder_built_directly_checks_its_settings():
    """TorchvisionEncoder itself refuses what --arch would (a name outside its families;
    a ViT side that is no multiple of its patch) in one SimCLRError line, before
    torchvision builds anything (it met a KeyError or torchvision's AssertionError)."""
    with pytest.raises(SimCLRError, match="unknown architecture 'resnet50'"):
        TorchvisionEncoder("resnet50", 32)
    with pytest.raises(SimCLRError, match="vit_b_32 cuts images into 32-px patches"):
        TorchvisionEncoder("vit_b_32", 40)


def test_a_name_of_a_family_that_torchvision_lacks_is_unknown(tmp_path, capsys):
    """convnext_huge starts like a ConvNeXt but torchvision has none: it is refused as an
    unknown architecture (not taken as one, nor refused for a side it would need)."""
    assert main(["pretrain", "--arch", "convnext_huge", "--image-size", "16", "--out",
                 str(tmp_path / "run"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "--arch: unknown architecture 'convnext_huge'" in err, err
    assert len(err.strip().splitlines()) == 1 and min_side("convnext_huge") == 1


def test_only_a_vit_is_built_for_one_side():
    """fixed_size (the side a ViT's position embeddings are sized for: memory measures
    it at that side alone) is None for a network that takes any side."""
    assert TorchvisionEncoder("vit_b_32", 64).fixed_size == 64
    encoder = TorchvisionEncoder("mobilenet_v3_small", 32).eval()
    assert encoder.fixed_size is None
    with torch.no_grad():
        assert encoder(torch.rand(1, 3, 64, 64)).shape == (1, encoder.feature_dim)
