"""Tests for simclr.torchvision_io: weights in torchvision's ResNet layout, both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from simclr.checkpoint import save_checkpoint
from simclr.checkpoint_read import load_checkpoint
from simclr.cli import main
from simclr.errors import SimCLRError
from simclr.models import ResNet, build_encoder
from simclr.pretrained import encoder_from_checkpoint
from simclr.torchvision_io import (
    as_encoder,
    check_convertible,
    from_torchvision,
    resnet_layout,
    to_torchvision,
    torchvision_model,
    unwrapped_state,
)

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


@pytest.mark.parametrize("cifar_stem", [False, True])
def test_torchvision_model_computes_the_encoder_with_either_stem(cifar_stem):
    """The exported torchvision network (the CIFAR stem: a 3x3 stride-1 conv1, no
    max-pool) computes h exactly, every BatchNorm's scale, shift and statistics random
    and no block zero-initialised: a residual branch then adds to the stem's output, so
    a stem without its ReLU (or another of the encoder's layers) would show."""
    torch.manual_seed(0)
    ours = ResNet("resnet18", 1.0, cifar_stem)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    theirs, _, code = torchvision_model(ours.eval(), 32)
    assert ("maxpool = torch.nn.Identity()" in code) == cifar_stem
    x = torch.rand(2, 3, 32, 32)
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


def test_only_width_one_has_a_torchvision_layout():
    check_convertible("resnet50", 1.0)
    with pytest.raises(SimCLRError, match=r"resnet18 has no width multiplier \(this encoder: "
                                          r"width 0.5\)"):
        check_convertible("resnet18", 0.5)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
@pytest.mark.parametrize(("width", "cifar_stem"), [(1.0, False), (2.0, False), (0.25, True)])
def test_a_resnets_architecture_is_read_off_its_weights(arch, width, cifar_stem):
    """The official SimCLR ResNet-50 2x and 4x multiply every layer's channels, the stem's
    too, as simclr's width does; a 3x3 first convolution is the CIFAR stem."""
    with torch.device("meta"):  # names and shapes only
        state = to_torchvision(build_encoder(arch, width, cifar_stem).state_dict())
    assert resnet_layout(state) == (arch, width, cifar_stem)
    assert resnet_layout({**state, "fc.weight": torch.zeros(1000, 4)}) == (arch, width, cifar_stem)
    fewer = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}
    assert resnet_layout(fewer) is None  # no ResNet of these depths
    assert resnet_layout({k: v for k, v in state.items() if k != "conv1.weight"}) is None


def _wrapped(state: dict) -> dict:
    """How converted official weights and DDP-trained models are often saved."""
    return {"state_dict": {f"module.{k}": v for k, v in state.items()}}


def _in_a_lightning_checkpoint(state: dict) -> dict:
    """A Lightning checkpoint of a model holding the ResNet as ``backbone`` beside a
    projection head (as solo-learn's are laid out)."""
    return {"epoch": 3, "global_step": 120,
            "state_dict": {**{f"backbone.{k}": v for k, v in state.items() if k[:3] != "fc."},
                           "projector.0.weight": torch.zeros(8, 512),
                           "projector.0.bias": torch.zeros(8)}}


def _as_lightlys_backbone(state: dict) -> dict:
    """lightly's examples: ``backbone = nn.Sequential(*list(resnet.children())[:-1])``
    beside a projection head, saved whole: the ResNet's children by position."""
    positions = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6",
                 "layer4": "7"}
    return {**{f"backbone.{positions[k.split('.')[0]]}.{k.split('.', 1)[1]}": v
               for k, v in state.items() if k[:3] != "fc."},
            "projection_head.layers.0.weight": torch.zeros(8, 512)}


@pytest.mark.parametrize("saved", ["bare", "wrapped", "lightning", "lightly"])
def test_torchvision_resnet_weights_are_an_encoder_checkpoint(tmp_path, saved):
    """A torchvision ResNet state dict, bare, wrapped or inside a Lightning checkpoint,
    loads as an exported encoder whose h is torchvision's output with fc = Identity,
    exactly."""
    torch.manual_seed(0)
    theirs = randomised(torchvision.models.resnet18(), seed=3)
    state = theirs.state_dict()
    torch.save({"bare": state, "wrapped": _wrapped(state),
                "lightning": _in_a_lightning_checkpoint(state),
                "lightly": _as_lightlys_backbone(state)}[saved], tmp_path / "r18.pth")
    ckpt = load_checkpoint(tmp_path / "r18.pth")
    assert ckpt["kind"] == "encoder" and "fc.weight" not in str(list(ckpt["model"]))
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec == {"arch": "resnet18", "width": 1.0, "cifar_stem": False, "image_size": 224}
    theirs.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), theirs(x), rtol=0, atol=0)


def test_imported_weights_serve_the_evaluation_commands(tmp_path, image_folder, capsys):
    """A wide CIFAR-stem ResNet's weights (as a conversion of another framework's
    checkpoint would give) through info, kNN and export, like a simclr encoder."""
    torch.manual_seed(0)
    ours = randomised(build_encoder("resnet18", 0.125, True), seed=4)
    weights = tmp_path / "converted.pth"
    torch.save(_wrapped(to_torchvision(ours.state_dict())), weights)
    assert main(["info", str(weights)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{weights}: ResNet weights in torchvision's layout, resnet18 x0.125, 32 px assumed "
        "(no size recorded; --image-size)")
    assert main(["knn", "--checkpoint", str(weights), "--train", str(image_folder),
                 "--test", str(image_folder), "--k", "5", "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["feature_dim"] == 64 and result["image_size"] == 32
    assert result["source"]["imported"] == "ResNet weights in torchvision's layout"
    out = tmp_path / "enc.pt"
    assert main(["export", "--checkpoint", str(weights), "--out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["imported"] == "ResNet weights in torchvision's layout" and "step" not in ckpt
    exported, _ = encoder_from_checkpoint(ckpt)
    assert main(["embed", "--checkpoint", str(weights), "--data", str(image_folder), "--out",
                 str(tmp_path / "e.npz"), "--cache-dir", str(tmp_path / "cache")]) == 0
    with np.load(tmp_path / "e.npz") as embedded:  # which encoder: no "step None"
        assert str(embedded["encoder"]) == (f"{weights.resolve()} ResNet weights in "
                                            "torchvision's layout layer h")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(x), ours(x), rtol=0, atol=0)


def test_another_network_under_a_resnets_names_is_refused_in_one_line(tmp_path):
    """A ResNeXt-50 has a ResNet-50's names and stem, not its channels: not read as one
    (torchvision's resnext50_32x4d can start a run instead)."""
    with torch.device("meta"):
        state = torchvision.models.resnext50_32x4d().state_dict()
    assert resnet_layout(state) is None  # 128 channels in layer1 after a 64-channel stem
    torch.save({k: torch.zeros(v.shape) for k, v in state.items()}, tmp_path / "resnext.pth")
    with pytest.raises(SimCLRError, match=r"resnext.pth holds a state dict .* but not a "
                                          r"ResNet-18/34/50/101/152 in torchvision's layout"):
        load_checkpoint(tmp_path / "resnext.pth")


def _resnet18_state(seed: int = 5) -> dict:
    torch.manual_seed(seed)
    return to_torchvision(randomised(build_encoder("resnet18", 1.0, False), seed).state_dict())


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: {k: v for k, v in s.items() if k != "layer2.1.bn1.running_var"},
     r"its names are a resnet18 x1's but it has no layer2.1.bn1.running_var"),
    (lambda s: {**s, "layer3.0.conv2.weight": torch.zeros(256, 8, 3, 3)},
     r"its names are a resnet18 x1's but layer3.0.conv2.weight is \(256, 8, 3, 3\), not "
     r"\(256, 256, 3, 3\)"),
    (lambda s: {**s, "layer4.1.se.weight": torch.zeros(3), "layer4.1.se.bias": torch.zeros(3)},
     r"its names are a resnet18 x1's but it also has layer4.1.se.bias and 1 more tensors"),
])
def test_a_near_resnet_is_refused_naming_its_first_misfit(tmp_path, change, message):
    torch.save(change(_resnet18_state()), tmp_path / "near.pth")
    with pytest.raises(SimCLRError, match=r"near.pth is not a ResNet's weights in "
                                          r"torchvision's layout: " + message + "$"):
        load_checkpoint(tmp_path / "near.pth")


def test_files_without_batchnorm_counters_load(tmp_path):
    """Files saved before torch 0.4.1 (torchvision's first ImageNet weights) have no
    num_batches_tracked; BatchNorm counts from 0 for them, and so does the import."""
    state = _resnet18_state()
    torch.save({k: v for k, v in state.items() if "num_batches_tracked" not in k},
               tmp_path / "old.pth")
    ckpt = load_checkpoint(tmp_path / "old.pth")
    counters = [v for k, v in ckpt["model"].items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 0 and c.dtype == torch.long for c in counters)
    encoder, _ = encoder_from_checkpoint(ckpt)
    reference = build_encoder("resnet18", 1.0, False)
    reference.load_state_dict(from_torchvision(state, reference.state_dict()))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), reference.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("width", [0.3, 0.1, 0.7, 1.5, 0.125, 0.006, 0.002])
def test_widths_off_the_sixty_fourths_are_read_back(width):
    """Each layer's channels are rounded on their own (0.3: 19, 19, 38, 77, 154), so the
    stem's alone does not give the width; the shortest decimal that gives all does.
    None is rounded below one channel (0.006: 1, 1, 1, 2, 3)."""
    with torch.device("meta"):
        state = to_torchvision(build_encoder("resnet50", width, True).state_dict())
    assert resnet_layout(state) == ("resnet50", width, True)


def test_a_file_of_two_models_side_by_side_names_them(tmp_path):
    """DINO saves {"student": ..., "teacher": ...}: refused as no simclr checkpoint, its
    models unnamed; now named, and the one saved alone loads."""
    state = _resnet18_state(seed=6)
    dino = {"student": {f"module.backbone.{k}": v for k, v in state.items()},
            "teacher": {f"backbone.{k}": v for k, v in state.items()}, "epoch": 100}
    torch.save(dino, tmp_path / "dino.pth")
    with pytest.raises(SimCLRError, match=r"dino.pth holds the weights of 2 models \(student, "
                                          r"teacher\): save the one to use alone "
                                          r"\(torch.save\(state\['student'\], FILE\)\)"):
        load_checkpoint(tmp_path / "dino.pth")
    torch.save(dino["teacher"], tmp_path / "teacher.pth")
    assert load_checkpoint(tmp_path / "teacher.pth")["kind"] == "encoder"


def test_of_several_resnets_the_outermost_is_taken_and_two_alike_are_refused(tmp_path):
    """solo-learn keeps the trained ResNet as backbone.* beside momentum_backbone.*; MoCo
    keeps encoder_q.* beside encoder_k.*, which is the user's to choose."""
    state = _resnet18_state(seed=6)
    other = _resnet18_state(seed=7)
    solo = {"state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                           **{f"momentum_backbone.{k}": v for k, v in other.items()}}}
    torch.save(solo, tmp_path / "solo.ckpt")
    ckpt = load_checkpoint(tmp_path / "solo.ckpt")
    torch.testing.assert_close(ckpt["model"]["encoder.stem.0.weight"], state["conv1.weight"],
                               rtol=0, atol=0)
    moco = {"epoch": 200, "state_dict": {**{f"module.encoder_q.{k}": v for k, v in state.items()},
                                          **{f"module.encoder_k.{k}": v for k, v in other.items()}}}
    torch.save(moco, tmp_path / "moco.pth.tar")
    with pytest.raises(SimCLRError, match=r"moco.pth.tar holds 2 ResNets, under "
                                          r"'module.encoder_k.' and 'module.encoder_q.': save "
                                          r"the one to use alone"):
        load_checkpoint(tmp_path / "moco.pth.tar")
    # a third, under a longer prefix, does not make the two shortest alike a choice
    moco["state_dict"].update({f"module.momentum_encoder.{k}": v for k, v in other.items()})
    torch.save(moco, tmp_path / "moco3.pth.tar")
    with pytest.raises(SimCLRError, match=r"holds 2 ResNets, under 'module.encoder_k.' and "
                                          r"'module.encoder_q.'"):
        load_checkpoint(tmp_path / "moco3.pth.tar")


@pytest.mark.parametrize("saved", ["encoder", "model_state_dict"])
def test_simclr_weights_saved_bare_and_tutorial_wrappers_load(tmp_path, saved):
    """`torch.save(model.encoder.state_dict())` (simclr's names, no config) and PyTorch's
    tutorial layout {"epoch", "model_state_dict", "optimizer_state_dict"} are read too."""
    torch.manual_seed(0)
    ours = randomised(build_encoder("resnet18", 0.25, True), seed=8)
    state = {"encoder": lambda: {f"encoder.{k}": v for k, v in ours.state_dict().items()},
             "model_state_dict": lambda: {"epoch": 9, "model_state_dict": to_torchvision(
                 ours.state_dict()), "optimizer_state_dict": {"state": {}}}}[saved]()
    torch.save(state, tmp_path / "w.pt")
    ckpt = load_checkpoint(tmp_path / "w.pt")
    assert ckpt["imported"] == ("ResNet weights in simclr's layout" if saved == "encoder"
                                else "ResNet weights in torchvision's layout")
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec["width"] == 0.25 and spec["cifar_stem"] and spec["image_size"] == 32
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), ours(x), rtol=0, atol=0)


def test_an_imagenet_stem_trained_at_32_px_is_read_back_at_32_when_told(
        tmp_path, image_folder, capsys):
    """torchvision weights record no image size: simclr reads an ImageNet-stem ResNet's
    at 224 px, and says so. The export of one trained at 32 px names the --image-size
    to give; given, its features are the original checkpoint's, and an encoder export
    with --image-size records the side for good."""
    torch.manual_seed(0)
    encoder = randomised(build_encoder("resnet18", 1.0, cifar_stem=False), seed=5)
    config = {"model": {"arch": "resnet18", "width": 1.0, "cifar_stem": False},
              "augment": {"size": 32}}
    ours = save_checkpoint({"kind": "encoder", "config": config, "model": {
        f"encoder.{k}": v for k, v in encoder.state_dict().items()}}, tmp_path, "ours.pt")
    weights = tmp_path / "r18.pth"
    assert main(["export", "--checkpoint", str(ours), "--out", str(weights),
                 "--format", "torchvision"]) == 0
    assert f"note: {weights} records no image size; simclr reads it at 224 px: give " \
           "--image-size 32 to evaluate it at the side it was trained at" in \
           capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ours), "--out", str(tmp_path / "r18-64.pth"),
                 "--format", "torchvision", "--image-size", "64"]) == 0
    assert "give --image-size 64 to evaluate it at the side it was exported for" in \
        capsys.readouterr().err

    def embed(checkpoint, name, *flags):
        assert main(["embed", "--checkpoint", str(checkpoint), "--data", str(image_folder),
                     "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / "cache"),
                     "--precision", "fp32", *flags]) == 0
        with np.load(tmp_path / name) as saved:
            return saved["features"], str(saved["encoder"]), capsys.readouterr().err

    original, _, _ = embed(ours, "ours.npz")
    at_224, _, note = embed(weights, "224.npz")
    assert json.loads(capsys.readouterr().out or "{}") == {}
    assert f"note: {weights} records no image size (ResNet weights in torchvision's " \
           "layout): read as 224 px images; --image-size S for another side" in note
    told, which, note = embed(weights, "32.npz", "--image-size", "32")
    assert note == "" and which.endswith("layer h at 32 px")
    np.testing.assert_allclose(told, original, rtol=1e-5, atol=1e-5)
    assert np.abs(at_224 - original).max() > 1e-3  # the side changes the features
    recorded = tmp_path / "r18-32px.pt"
    assert main(["export", "--checkpoint", str(weights), "--out", str(recorded),
                 "--image-size", "32"]) == 0
    assert load_checkpoint(recorded)["config"]["augment"]["size"] == 32
    again, _, note = embed(recorded, "again.npz")
    assert note == "" and np.array_equal(again, told)


def test_the_note_of_an_encoder_evaluated_at_another_side_says_which_it_names(tmp_path,
                                                                              capsys):
    """A run trained at 40 px and evaluated at 48 (--eval-size): the note named 48 as
    'the side it was trained at'."""
    encoder = randomised(build_encoder("resnet18", 1.0, cifar_stem=False), seed=5)
    config = {"model": {"arch": "resnet18", "width": 1.0, "cifar_stem": False},
              "augment": {"size": 40, "eval_size": 48}}
    ours = save_checkpoint({"kind": "encoder", "config": config, "model": {
        f"encoder.{k}": v for k, v in encoder.state_dict().items()}}, tmp_path, "ours.pt")
    weights = tmp_path / "r18.pth"
    assert main(["export", "--checkpoint", str(ours), "--out", str(weights),
                 "--format", "torchvision"]) == 0
    err = capsys.readouterr().err
    assert f"note: {weights} records no image size; simclr reads it at 224 px: give " \
           "--image-size 48 to evaluate it at its --eval-size (it was trained at 40 px)\n" \
           in err, err


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_a_bare_encoder_with_projection_shortcuts_is_read_as_one(tmp_path, arch):
    """`torch.save(encoder.state_dict())` of a --projection-shortcuts ResNet-18/34 (the
    official code's shortcuts) was refused as having 'layer1.0.downsample.0.weight and 5
    more tensors', and --init-from took it for torchvision weights. It is read as the
    encoder it is, under its own name; extra tensors of another kind are still refused."""
    from simclr.models import build_model
    from simclr.pretrained import apply_initial_weights, initial_weights
    from simclr.settings import build_config

    torch.manual_seed(0)
    ours = randomised(build_encoder(arch, 0.25, True, projection_shortcuts=True), seed=8)
    torch.save(ours.state_dict(), tmp_path / "w.pt")
    ckpt = load_checkpoint(tmp_path / "w.pt")
    what = "ResNet weights in simclr's layout, with projection shortcuts"
    assert ckpt["imported"] == what
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec["projection_shortcuts"] and encoder.projection_shortcuts
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), ours(x), rtol=0, atol=0)
    weights, said = initial_weights(str(tmp_path / "w.pt"))
    assert said == f"{what} {tmp_path / 'w.pt'}"
    flags = {"model.arch": arch, "model.width": 0.25, "augment.size": 32}
    model = build_model(build_config(flags={**flags, "model.projection_shortcuts": True}).model,
                        32)
    apply_initial_weights(model, weights, said)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.eval()(x), ours(x), rtol=0, atol=0)
    plain = build_model(build_config(flags=flags).model, 32)
    with pytest.raises(SimCLRError, match=rf"^--init-from: the {what} .* does not fit this "
                                          rf"run's {arch} width 0.25: .*layer1.0.shortcut"):
        apply_initial_weights(plain, weights, said)
    # (a projection beside other extra tensors: no encoder of either kind)
    torch.save({**ours.state_dict(), "layer4.1.se.weight": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(SimCLRError, match=r"but it also has layer1.0.downsample.0.weight "
                                          r"and 6 more tensors$"):
        load_checkpoint(tmp_path / "x.pt")


def test_each_wrapper_of_saved_weights_is_opened_but_not_a_simclr_checkpoints():
    """{"state_dict": ...}, {"model": ...}, {"backbone": ...} ... hold the weights; a
    simclr checkpoint (with its "format") is returned as it is, its "model" unopened."""
    state = to_torchvision(build_encoder("resnet18", 0.125, True).state_dict())
    for key in ("state_dict", "model_state_dict", "model", "encoder", "backbone", "net"):
        assert unwrapped_state({"epoch": 1, key: state}).keys() == state.keys(), key
    ddp = {"module.head.weight": state["conv1.weight"], "module.head.bias": state["bn1.bias"]}
    assert unwrapped_state(ddp).keys() == {"head.weight", "head.bias"}  # DDP's, any network
    ours = {"format": "simclr", "model": state}
    assert unwrapped_state(ours) is ours


def test_of_two_resnets_the_shorter_prefix_is_taken_however_they_sort():
    """solo-learn-like `model.` beside `ema_model.`: the shorter prefix is the model,
    though `ema_model.` sorts first."""
    state = to_torchvision(build_encoder("resnet18", 0.125, True).state_dict())
    saved = {**{f"ema_model.{k}": v + 1 for k, v in state.items()},
             **{f"model.{k}": v for k, v in state.items()}}
    got = unwrapped_state(saved)
    assert got.keys() == state.keys() and all(got[k] is v for k, v in state.items())


def test_a_files_batchnorm_counters_are_kept_and_a_stray_key_is_no_resnet():
    """Only a missing counter is set to 0; a dict with a non-name key is not torch's."""
    state = to_torchvision(build_encoder("resnet18", 0.125, True).state_dict())
    state["bn1.num_batches_tracked"] = torch.tensor(7)
    _, weights, _ = as_encoder(state)
    assert weights["encoder.stem.1.num_batches_tracked"] == 7
    assert resnet_layout({**state, 0: torch.zeros(1)}) is None


def test_an_empty_dict_is_no_state_dict(tmp_path):
    """torch.save({}) is not "a state dict but not a ResNet": it holds no tensors, and
    is refused as no simclr checkpoint."""
    from simclr.torchvision_io import is_torchvision_state

    assert not is_torchvision_state({}) and is_torchvision_state({"w": torch.zeros(1)})
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(SimCLRError, match="is not a simclr checkpoint"):
        load_checkpoint(tmp_path / "empty.pt")


def test_another_networks_bare_weights_are_unwrapped_unchanged():
    """Weights of a network that is no ResNet, without DDP's prefix, keep every name
    (not only those under 'module.', which left none)."""
    state = {"features.0.weight": torch.zeros(2), "module.head.weight": torch.ones(2)}
    got = unwrapped_state(state)
    assert got.keys() == state.keys() and all(got[k] is v for k, v in state.items())


def test_a_stem_of_another_input_or_kernel_is_no_resnet_layout():
    """A first convolution of 1 input channel or a 5x5 kernel is neither of simclr's
    stems (3x3 CIFAR, 7x7 ImageNet, on RGB): no ResNet layout is read off it."""
    state = to_torchvision(build_encoder("resnet18", 0.125, True).state_dict())
    for shape in ((8, 1, 3, 3), (8, 3, 5, 5)):
        assert resnet_layout({**state, "conv1.weight": torch.zeros(shape)}) is None, shape
    assert resnet_layout(state) == ("resnet18", 0.125, True)
