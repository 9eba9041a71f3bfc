"""Tests for simclr.pretrained: rebuilding encoder and head; representations at h, z, gK;
another evaluation side; weights that do not fit or are not finite; --init-from."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision

from simclr.checkpoint import save_checkpoint
from simclr.checkpoint_read import load_checkpoint
from simclr.classifiers import classifier_checkpoint, classifier_from_checkpoint, encoder_config
from simclr.cli import main
from simclr.errors import SimCLRError
from simclr.models import Classifier, build_model
from simclr.pretrained import (
    at_image_size,
    encoder_from_checkpoint,
    encoder_spec,
    encoder_trained_step,
    model_from_checkpoint,
    representation_from_checkpoint,
    trained_for,
)
from simclr.settings import build_config

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


def edited_checkpoint(folder: Path, edit: Callable[[dict], None]) -> Path:
    """A pretraining checkpoint saved in ``folder`` after ``edit`` changed its content
    (as a hand edit would: a config that no longer describes the weights, ...)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    edit(ckpt)
    return save_checkpoint({k: v for k, v in ckpt.items() if k not in ("format", "version")},
                           folder)


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


def test_another_image_size_keeps_the_trained_stem_and_weights(capsys):
    """--image-size: the same network on other inputs. An automatic stem stays the one
    the encoder was trained with (at 48 px it would be the ImageNet stem), the weights
    load unchanged, and the checkpoint read is not altered."""
    ckpt = pretrain_checkpoint()
    assert ckpt["config"]["model"]["cifar_stem"] is None  # automatic: CIFAR at 16 px
    trained, spec = encoder_from_checkpoint(ckpt)
    larger = at_image_size(ckpt, 48)
    encoder, larger_spec = encoder_from_checkpoint(larger)
    assert spec == {**larger_spec, "image_size": 16} and larger_spec["cifar_stem"] is True
    assert encoder.image_size == 48 and ckpt["config"]["augment"]["size"] == 16
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), trained.eval()(x), rtol=0, atol=0)
    assert at_image_size(ckpt, None, "run/last.pt") is ckpt
    assert capsys.readouterr().err == ""  # a simclr checkpoint knows its side: no note


def test_image_sizes_a_network_cannot_take_are_refused():
    with pytest.raises(SimCLRError, match=r"--image-size: must be 8 to 4096 pixels, got 4"):
        at_image_size(pretrain_checkpoint(), 4)
    for side in (8, 4096):  # (the bounds themselves are taken)
        read = at_image_size(pretrain_checkpoint(), side)
        assert read["config"]["augment"]["eval_size"] == side
    vit = {"kind": "encoder", "config": {"model": {"arch": "vit_b_16", "width": 1.0,
                                                   "cifar_stem": None},
                                         "augment": {"size": 224}}}
    assert at_image_size(vit, 224)["config"]["augment"]["size"] == 224
    with pytest.raises(SimCLRError, match=r"--image-size 96: a vit_b_16's position "
                                          r"embeddings are for 224 px"):
        at_image_size(vit, 96)


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
    linear = classifier_checkpoint("linear", Classifier(encoder, 2), ckpt["config"],
                                   ["a", "b"], 0, 1.0, {})  # (a classifier's: none either)
    with pytest.raises(SimCLRError, match="no projection head"):
        representation_from_checkpoint(linear, "g1")
    # Pretrained with --head none: h is all there is (z was "the output of layer 0").
    headless = pretrain_checkpoint()
    headless["config"]["model"]["head"] = "none"
    headless["model"] = {k: v for k, v in headless["model"].items() if not k.startswith("head.")}
    with pytest.raises(SimCLRError, match=r"no projection head \(--head none\): its "
                                          r"representation is h only"):
        representation_from_checkpoint(headless, "z")


def test_random_init_rebuilds_the_architecture_only():
    ckpt = pretrain_checkpoint()
    trained, _ = model_from_checkpoint(ckpt)
    fresh, _ = model_from_checkpoint(ckpt, random_init=True)
    name = "head.layers.0.0.weight"
    assert fresh.state_dict()[name].shape == trained.state_dict()[name].shape
    assert not torch.equal(fresh.state_dict()[name], trained.state_dict()[name])


def test_loading_a_checkpoint_leaves_the_callers_random_stream_as_it_was():
    """The loaded weights replace the initial ones: drawing those must not move the
    caller's RNG (a run seeded before it loads an encoder draws the same numbers)."""
    ckpt = pretrain_checkpoint()
    torch.manual_seed(3)
    expected = torch.rand(4)
    for load in (encoder_from_checkpoint, model_from_checkpoint):
        torch.manual_seed(3)
        load(ckpt)
        assert torch.equal(torch.rand(4), expected), load.__name__


def test_random_init_is_one_encoder_whichever_layer_is_read():
    """--random-init on h, gK or z reads one random encoder (the same seed, the same
    network): before, z's came from build_model with the run's zero-initialised last
    BN of each block (its residual branches silent), h's from build_encoder without."""
    ckpt = pretrain_checkpoint()
    assert ckpt["config"]["model"]["zero_init_residual"]  # the run's own start had them at 0
    torch.manual_seed(5)
    on_h, _ = encoder_from_checkpoint(ckpt, random_init=True)
    torch.manual_seed(5)
    on_z, _ = model_from_checkpoint(ckpt, random_init=True)
    h_weights, z_weights = on_h.state_dict(), on_z.encoder.state_dict()
    assert h_weights.keys() == z_weights.keys()
    for key, value in h_weights.items():
        torch.testing.assert_close(z_weights[key], value, rtol=0, atol=0, msg=key)
    assert torch.equal(z_weights["layer1.0.bn2.weight"],
                       torch.ones_like(z_weights["layer1.0.bn2.weight"]))  # (not 0)


def test_results_name_the_checkpoint_file_a_run_folder_resolved_to(
        tmp_path, image_folder, cache_dir, capsys):
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    newest = save_checkpoint({**state, "step": 7}, tmp_path / "pre" / "checkpoints")
    common = ["--train", str(image_folder), "--test", str(image_folder), "--device", "cpu",
              "--precision", "fp32", "--cache-dir", cache_dir]
    assert main(["knn", "--checkpoint", str(tmp_path / "pre"), "--out", str(tmp_path / "k"),
                 "--k", "3", *common]) == 0
    assert main(["linear-eval", "--checkpoint", str(tmp_path / "pre"), "--random-init",
                 "--layer", "z", "--l2", "1e-3", "--out", str(tmp_path / "l"), *common]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    knn = json.loads((tmp_path / "k" / "knn.json").read_text())
    lin = json.loads((tmp_path / "l" / "linear_eval.json").read_text())
    assert knn["source"] == {"checkpoint": str(newest.resolve()), "kind": "pretrain",
                             "step": 7, "features": "pretrained", "layer": "h"}
    assert lin["source"] == {**knn["source"], "features": "random init", "layer": "z"}
    assert [p["source"] for p in printed] == [knn["source"], lin["source"]]


@pytest.mark.parametrize(("setting", "value", "first"), [
    ("arch", "resnet50", "first encoder.layer1.0.conv1.weight: 8x8x3x3 in the file, 8x8x1x1 "
                         "in the network); 238 missing (first encoder.layer1.0.conv3.weight)"),
    ("width", 0.25, "first encoder.stem.0.weight: 8x3x3x3 in the file, 16x3x3x3 in the "
                    "network)"),
])
def test_weights_that_do_not_fit_their_config_are_one_line(
        tmp_path, image_folder, cache_dir, capsys, setting, value, first):
    def edit(ckpt: dict) -> None:
        ckpt["config"]["model"][setting] = value

    source = edited_checkpoint(tmp_path / "pre", edit)
    described = f"{value} width 0.125" if setting == "arch" else f"resnet18 width {value}"
    common = ["--checkpoint", str(source), "--cache-dir", cache_dir, "--device", "cpu"]
    for args in (["embed", "--data", str(image_folder), "--out", str(tmp_path / "e.npz")],
                 ["knn", "--train", str(image_folder), "--test", str(image_folder), "--out",
                  str(tmp_path / "k")], ["embed", "--layer", "z", "--data", str(image_folder),
                                         "--out", str(tmp_path / "e.npz")]):
        assert main([*args, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert (f"checkpoint {source}: its weights do not fit the {described} network its "
                "config describes: ") in err and first in err
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "k").exists()


def test_a_checkpoint_without_weights_is_one_line(tmp_path, image_folder, cache_dir, capsys):
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: ckpt.pop("model"))
    assert main(["embed", "--checkpoint", str(source), "--data", str(image_folder), "--out",
                 str(tmp_path / "e.npz"), "--cache-dir", cache_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f'{source} is not a complete simclr checkpoint: it has no "model" '
                        "entry") and len(err.splitlines()) == 1
    # (the output's suffix is checked first: .NPZ is one, as .ONNX is for export)
    for name, message in (("e.NPZ", "is not a complete simclr checkpoint"),
                          ("e.txt", "the output must be a .npz file")):
        assert main(["embed", "--checkpoint", str(source), "--data", str(image_folder),
                     "--out", str(tmp_path / name), "--cache-dir", cache_dir]) == 2
        assert message in capsys.readouterr().err


def test_weights_of_an_integer_dtype_are_refused_where_the_network_has_floats():
    """An int64 convolution would be cast into the float network (its weights mostly 0)
    and embed without a word; BatchNorm's num_batches_tracked is an integer as it should."""
    ckpt = pretrain_checkpoint(head_layers=2)
    ckpt["model"]["encoder.stem.0.weight"] = ckpt["model"]["encoder.stem.0.weight"].long()
    with pytest.raises(SimCLRError) as info:
        encoder_from_checkpoint(ckpt)
    assert str(info.value).endswith(
        "1 tensors of a dtype that is not floating point (first encoder.stem.0.weight: int64 "
        "in the file, float32 in the network)")
    ckpt["model"]["encoder.stem.0.weight"] = ckpt["model"]["encoder.stem.0.weight"].bool()
    with pytest.raises(SimCLRError, match=r"encoder.stem.0.weight: bool in the file"):
        model_from_checkpoint(ckpt)
    ckpt["model"]["encoder.stem.0.weight"] = ckpt["model"]["encoder.stem.0.weight"].half()
    encoder_from_checkpoint(ckpt)  # half precision is a float: cast as before


def test_rebuilding_checks_every_part_against_the_config():
    """The head and a classifier are loaded strictly too, in one line (here for dicts
    made in code, which name no file)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    ckpt["config"]["model"]["head_out_dim"] = 32
    encoder, _ = encoder_from_checkpoint(ckpt)  # the encoder still fits
    with pytest.raises(SimCLRError) as info:
        model_from_checkpoint(ckpt)
    assert str(info.value) == (
        "checkpoint (in memory): its weights do not fit the resnet18 width 0.125 network its "
        "config describes: 4 tensors of another shape (first head.layers.1.0.weight: 24x64 in "
        "the file, 32x64 in the network)")
    blob = classifier_checkpoint("linear", Classifier(encoder, 2), ckpt["config"], ["a", "b"],
                                 0, 1.0, {})
    blob["model"]["encoder.extra"] = torch.zeros(1)
    with pytest.raises(SimCLRError, match=r"1 unexpected \(first encoder.extra\)$"):
        classifier_from_checkpoint(blob)


def test_an_encoder_with_the_official_shortcuts_is_rebuilt_from_its_checkpoint(tmp_path,
                                                                               capsys):
    """A run with --projection-shortcuts (the official ResNet-18's first-stage projection)
    is rebuilt as such wherever its checkpoint is read (load_encoder, export, fine-tuning
    from scratch); torchvision's resnet18 has no such shortcut: that export is refused."""
    from simclr.finetune import fresh_encoder
    from simclr.pretrained import load_encoder
    from tests.conftest import saved_resnet18

    _, model = saved_resnet18(tmp_path, "official.pt", projection_shortcuts=True)
    encoder = load_encoder(tmp_path / "official.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), model.encoder.eval()(x))
    assert encoder.projection_shortcuts and fresh_encoder(encoder).projection_shortcuts
    assert main(["export", "--checkpoint", str(tmp_path / "official.pt"), "--out",
                 str(tmp_path / "r18.pth"), "--format", "torchvision"]) == 2
    assert "has no shortcut projection in its first stage" in capsys.readouterr().err
    assert not (tmp_path / "r18.pth").exists()
    assert main(["export", "--checkpoint", str(tmp_path / "official.pt"), "--out",
                 str(tmp_path / "enc.pt")]) == 0
    again = load_encoder(tmp_path / "enc.pt")
    with torch.no_grad():
        torch.testing.assert_close(again(x), encoder(x))


def test_a_random_init_classifier_is_recorded_as_such_not_as_the_trained_encoder(
        tmp_path, image_folder, cache_dir, capsys):
    """linear-eval --random-init saved `encoder_step` of the checkpoint it was given:
    `simclr info` and export's card then called the baseline the encoder of that step."""
    from simclr.export import export
    from simclr.pretrained import trained_for

    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_checkpoint({**state, "step": 7}, tmp_path / "pre" / "checkpoints")
    common = ["--checkpoint", str(tmp_path / "pre"), "--train", str(image_folder), "--test",
              str(image_folder), "--device", "cpu", "--precision", "fp32", "--cache-dir",
              cache_dir]
    assert main(["linear-eval", *common, "--l2", "1e-3", "--out", str(tmp_path / "l")]) == 0
    assert main(["linear-eval", *common, "--random-init", "--l2", "1e-3", "--out",
                 str(tmp_path / "r")]) == 0
    capsys.readouterr()
    trained, baseline = (load_checkpoint(tmp_path / run / "checkpoints" / "linear.pt")
                         for run in ("l", "r"))
    assert trained_for(trained) == "step 7" and trained_for(baseline) == "random init"
    for run in ("l", "r"):
        export(tmp_path / run, tmp_path / f"{run}.pt")
    exported = [load_checkpoint(tmp_path / f"{run}.pt") for run in ("l", "r")]
    assert [trained_for(e) for e in exported] == ["step 7", "random init"]
    assert exported[0]["step"] == 7 and "step" not in exported[1]
    for run, says in (("l", "fitted on the encoder of step 7"),
                      ("r", "fitted on the random init encoder (the baseline)")):
        assert main(["info", str(tmp_path / run)]) == 0
        assert says in capsys.readouterr().out


def test_a_fine_tuned_classifier_names_its_encoders_pretraining_step_and_its_own_steps():
    """A fine-tuning's own step counts its fine-tuning, not the pretraining of the
    encoder it started from (recorded as encoder_step)."""
    tuned = {"kind": "finetune", "step": 30, "encoder_step": 100}
    assert trained_for(tuned) == "step 100 fine-tuned 30 steps"
    assert trained_for({**tuned, "step": 1}) == "step 100 fine-tuned 1 step"
    scratch = {"kind": "finetune", "step": 2, "features": "random init"}
    assert trained_for(scratch) == "random init, fine-tuned 2 steps"
    with pytest.raises(SimCLRError, match=r"is damaged: its step is not a whole number"):
        trained_for({"kind": "pretrain", "step": 1.5})
    assert trained_for({"kind": "linear", "step": 0, "encoder_step": 100}) == "step 100"
    with pytest.raises(SimCLRError, match=r"is damaged: its encoder's step is not a whole"):
        trained_for({"kind": "linear", "step": 0, "encoder_step": 2.5})
    assert encoder_trained_step({"kind": "linear", "step": 0, "encoder_step": 7,
                                 "features": "random init"}) is None  # (the baseline's)


def test_a_recorded_eval_size_is_the_side_read_and_the_trained_side_keeps_the_stem():
    """augment.eval_size (--eval-size): evaluations read images at it without
    --image-size. The stem stays the trained side's: an encoder trained at 40 px (the
    ImageNet stem) read at 32 px, which alone would pick the CIFAR stem, loads its
    weights into the ImageNet stem, head included; --image-size still overrides."""
    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 40, "augment.eval_size": 32})
    torch.manual_seed(0)
    model = build_model(cfg.model, 40)
    ckpt = {"kind": "pretrain", "config": cfg.to_dict(), "model": model.state_dict()}
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec["image_size"] == 32 and spec["cifar_stem"] is False
    assert encoder.image_size == 32 and not encoder.cifar_stem
    rebuilt, _ = model_from_checkpoint(ckpt)
    assert rebuilt.encoder.image_size == 32 and not rebuilt.encoder.cifar_stem
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x)[1], model.eval()(x)[1], rtol=0, atol=0)
    other = at_image_size(ckpt, 48)
    assert encoder_spec(other) == {**spec, "image_size": 48}
    # 48 px is the side it is read at; the trained side stays recorded (an export or a
    # classifier of it said '48 px', as if trained there)
    assert (other["config"]["augment"]["size"], other["config"]["augment"]["eval_size"]) \
        == (40, 48)
    assert ckpt["config"]["augment"]["eval_size"] == 32  # the checkpoint read is kept
    # A classifier fitted on it records both sides too, and reads images at 48 px.
    fitted = encoder_config(encoder, 48, other["config"])
    assert (fitted["augment"]["size"], fitted["augment"]["eval_size"]) == (40, 48)
    assert encoder_spec({"config": fitted}) == encoder_spec(other)
    # Its own side given again: no evaluation side of another (the file as it was).
    assert at_image_size(ckpt, 40)["config"]["augment"]["eval_size"] is None


@pytest.mark.parametrize("layer, depth", [("z", None), ("g1", 1), ("g01", 1), ("g12", 12)])
def test_parse_layer_reads_z_and_gk(layer, depth):
    from simclr.pretrained import parse_layer

    assert parse_layer(layer) == depth


@pytest.mark.parametrize("layer", ["g0", "g", "h", "g²", "g١", "gx", "G1", ""])
def test_parse_layer_refuses_anything_else_in_one_line(layer):
    """g² passed str.isdigit and ended in int()'s ValueError: a traceback."""
    from simclr.pretrained import parse_layer

    with pytest.raises(SimCLRError, match="--layer: unknown value"):
        parse_layer(layer)


def test_evaluation_sides_below_what_the_network_takes_are_refused(tmp_path, image_folder,
                                                                   cache_dir, capsys):
    """A DenseNet takes images of 29 px or more: --image-size 8 (and a run's recorded
    evaluation side of 8, as pretraining accepted before) ended every evaluation and
    export in a RuntimeError in the first forward; now one line naming the flag (or the
    file's setting) and the least side, before any image is read."""
    cfg = build_config(flags={"model.arch": "densenet121", "augment.size": 32,
                              "model.head_out_dim": 8})
    torch.manual_seed(0)
    ckpt = {"kind": "pretrain", "config": cfg.to_dict(),
            "model": build_model(cfg.model, 32).state_dict()}
    with pytest.raises(SimCLRError, match=r"^--image-size 16 is too small for densenet121: "
                                          r"it needs at least 29 px$"):
        at_image_size(ckpt, 16)
    assert at_image_size(ckpt, 29)["config"]["augment"]["eval_size"] == 29
    run = save_checkpoint(ckpt, tmp_path / "run")
    ckpt["config"]["augment"]["eval_size"] = 8  # (a run pretrained with --eval-size 8)
    old = save_checkpoint(ckpt, tmp_path / "old")
    common = ["--cache-dir", cache_dir, "--workers", "0", "--device", "cpu"]
    for argv, message in (
            (["knn", "--checkpoint", str(run), "--train", str(image_folder), "--test",
              str(image_folder), "--image-size", "8", *common],
             "--image-size 8 is too small for densenet121: it needs at least 29 px"),
            (["embed", "--checkpoint", str(run), "--data", str(image_folder), "--out",
              str(tmp_path / "e.npz"), "--image-size", "8", *common],
             "--image-size 8 is too small for densenet121: it needs at least 29 px"),
            (["knn", "--checkpoint", str(old), "--train", str(image_folder), "--test",
              str(image_folder), *common],
             "the checkpoint's evaluation side (its --eval-size) 8 is too small for "
             "densenet121: it needs at least 29 px; give --image-size")):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not Path(cache_dir).exists() and not (tmp_path / "e.npz").exists()
    # (such a run, saved before pretrain refused its --eval-size, evaluates at a side
    # given: its checkpoint still loads)
    assert at_image_size(load_checkpoint(old), 40)["config"]["augment"]["eval_size"] == 40


def _diverged(ckpt: dict, part: str = "encoder.", value: float = float("nan")) -> None:
    """One of ``part``'s convolution (or linear) weights turned ``value``, as a diverged
    or damaged run leaves it."""
    name = next(k for k in ckpt["model"] if k.startswith(part) and k.endswith("weight"))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_encoder_weights_are_refused_when_read(tmp_path, value):
    """A diverged encoder's NaN / inf weights gave NaN outputs (refused only after a
    folder was decoded; a fine-tuning stopped at step 1 blaming --lr): refused when
    the encoder is rebuilt, in one line naming the file; the random-init baseline takes
    none of its weights and is built as before."""
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: _diverged(ckpt, value=value))
    ckpt = load_checkpoint(source)
    said = rf"^{re.escape(str(source))}: the weights hold NaN or inf values \(a diverged or " \
           r"damaged checkpoint\?\)$"
    for read in (encoder_from_checkpoint, model_from_checkpoint,
                 lambda c: representation_from_checkpoint(c, "g1")):
        with pytest.raises(SimCLRError, match=said):
            read(ckpt)
    encoder, _ = encoder_from_checkpoint(ckpt, random_init=True)
    assert all(torch.isfinite(p).all() for p in encoder.parameters())


def test_a_non_finite_projection_head_is_refused_where_it_is_read(tmp_path):
    """z and gK read the head: NaN there is refused as the encoder's is; h reads the
    encoder alone, which is sound."""
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: _diverged(ckpt, "head."))
    ckpt = load_checkpoint(source)
    with pytest.raises(SimCLRError, match="the weights hold NaN or inf values"):
        representation_from_checkpoint(ckpt, "z")
    encoder_from_checkpoint(ckpt)


def test_init_from_non_finite_weights_is_refused_before_any_image_is_decoded(
        tmp_path, image_folder, capsys):
    """--init-from a diverged checkpoint started a run that stopped at its first step,
    blaming the learning rate: the file is refused in one line, before the data."""
    source = edited_checkpoint(tmp_path / "pre", _diverged)
    cache = tmp_path / "cache"
    assert main(["pretrain", "--data", str(image_folder), "--out", str(tmp_path / "run"),
                 "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
                 "--batch-size", "8", "--max-steps", "1", "--no-progress", "--workers", "0",
                 "--cache-dir", str(cache), "--precision", "fp32", "--device", "cpu",
                 "--init-from", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: --init-from {source}: the weights hold NaN or inf values "
                        "(a diverged or damaged checkpoint?)\n"), err
    assert len(err.strip().splitlines()) == 1
    assert not cache.exists()  # (nothing decoded)


def test_init_from_a_file_without_encoder_weights_is_refused(tmp_path):
    from simclr.pretrained import initial_weights

    ckpt = pretrain_checkpoint(head_layers=2)
    heads = {k: v for k, v in ckpt["model"].items() if k.startswith("head.")}
    path = save_checkpoint({"kind": "pretrain", "config": ckpt["config"], "model": heads},
                           tmp_path)
    with pytest.raises(SimCLRError, match=rf"^--init-from {re.escape(str(path))}: .* holds no "
                                          "encoder weights$"):
        initial_weights(str(path))


def test_init_from_torchvision_weights_holding_inf_is_refused(tmp_path):
    """A torchvision state dict is read as the encoder's weights: checked alike."""
    from simclr.pretrained import initial_weights

    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(SimCLRError, match=rf"^--init-from {re.escape(str(tmp_path))}.tv\.pth: "
                                          r"the weights hold NaN or inf values"):
        initial_weights(str(tmp_path / "tv.pth"))


def test_init_from_non_resnet_torchvision_weights_holding_inf_is_refused(tmp_path):
    """Another torchvision family's state dict (not read as a ResNet encoder checkpoint:
    its names are the encoder's under net.) is checked as well; that check was guarded by
    no test (the ResNet's above takes the other path)."""
    from simclr.pretrained import initial_weights

    torch.manual_seed(0)
    state = torchvision.models.mobilenet_v3_small().state_dict()  # (a family simclr builds)
    state["features.0.0.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(SimCLRError, match=rf"^--init-from {re.escape(str(tmp_path))}.tv\.pth: "
                                          r"the weights hold NaN or inf values \(a diverged "
                                          r"or damaged checkpoint\?\)"):
        initial_weights(str(tmp_path / "tv.pth"))
    state["features.0.0.weight"][0, 0, 0, 0] = 0.0  # finite: read under the encoder's names
    torch.save(state, tmp_path / "tv.pth")
    weights, what = initial_weights(str(tmp_path / "tv.pth"))
    assert what == f"torchvision weights {tmp_path / 'tv.pth'}"
    assert set(weights) == {f"encoder.{k}" for k in state}


def test_init_from_a_non_finite_projection_head_is_refused(tmp_path):
    """The head is loaded where its shape fits the run's: a file whose head holds NaN is
    a diverged or damaged one, refused as a whole before anything is built."""
    from simclr.pretrained import initial_weights

    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: _diverged(ckpt, "head."))
    with pytest.raises(SimCLRError, match=rf"^--init-from {re.escape(str(source))}: the "
                                          r"weights hold NaN or inf values"):
        initial_weights(str(source))


@pytest.mark.parametrize("command", ["finetune", "linear-eval"])
def test_evaluating_non_finite_weights_is_refused_before_any_image_is_decoded(
        tmp_path, image_folder, capsys, command):
    """finetune --checkpoint of a diverged run stopped at step 1 saying 'Lower --lr';
    linear-eval said the outputs were not finite once --train was decoded: the file is
    refused in one line before either folder is read."""
    source = edited_checkpoint(tmp_path / "pre", _diverged)
    cache = tmp_path / "cache"
    assert main([command, "--checkpoint", str(source), "--train", str(image_folder),
                 "--test-fraction", "0.25", "--out", str(tmp_path / "ev"), "--cache-dir",
                 str(cache), "--workers", "0", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: {source}: the weights hold NaN or inf values (a diverged or "
                        "damaged checkpoint?)\n"), err
    assert len(err.strip().splitlines()) == 1
    assert not cache.exists()


def test_imported_weights_read_at_their_guessed_side_are_noted_where_a_file_is_named(capsys):
    """Imported weights record no side: read at the guess, a note naming the file says so
    (an earlier simclr's unmarked export of them: perhaps given), none without a file; a
    side given replaces the guess as the trained side. A run's own export: no note."""
    ckpt = pretrain_checkpoint()
    imported = {**ckpt, "imported": "ResNet weights", "size_guessed": True}
    assert at_image_size(imported, None) is imported and capsys.readouterr().err == ""
    at_image_size(imported, None, "w.pth")
    assert capsys.readouterr().err == ("note: w.pth records no image size (ResNet weights): "
                                       "read as 16 px images; --image-size S for another "
                                       "side\n")
    older = {**ckpt, "imported": "ResNet weights", "exported_from": {}}
    at_image_size(older, None, "e.pt")
    assert capsys.readouterr().err.startswith("note: e.pt was exported by an earlier simclr, "
                                              "which did not record whether its side was")
    for quiet in ({**older, "size_guessed": False}, {**ckpt, "exported_from": {}}):
        at_image_size(quiet, None, "e.pt")
        assert capsys.readouterr().err == ""
    augment = at_image_size(imported, 32)["config"]["augment"]
    assert (augment["size"], augment["eval_size"]) == (32, None)
    assert encoder_spec(at_image_size(imported, 48))["cifar_stem"] is True  # (16 px's stem)


def test_a_config_of_unusable_values_is_one_line():
    ckpt = pretrain_checkpoint()
    ckpt["config"]["model"]["width"] = "wide"
    with pytest.raises(SimCLRError, match="no usable model config"):
        encoder_spec(ckpt)


def test_non_finite_batchnorm_statistics_are_refused_too():
    """A buffer (BatchNorm's running variance) holding NaN makes every output NaN too."""
    ckpt = pretrain_checkpoint()
    name = next(k for k in ckpt["model"] if k.startswith("encoder.") and k.endswith("running_var"))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    with pytest.raises(SimCLRError, match="the weights hold NaN or inf values"):
        encoder_from_checkpoint(ckpt)


def test_the_weights_digest_tells_each_name_dtype_shape_and_buffer_apart():
    """16 hex digits, equal for the same tensors in another module; another name, dtype
    (of the same bytes), shape (of the same bytes) or buffer value is another digest."""
    from simclr.pretrained import weights_digest

    def module(**buffers):
        m = torch.nn.Linear(2, 2)
        torch.nn.init.zeros_(m.weight)
        torch.nn.init.zeros_(m.bias)
        for name, value in buffers.items():
            m.register_buffer(name, value)
        return m

    digest = weights_digest(module(b=torch.zeros(2, 3)))
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert weights_digest(module(b=torch.zeros(2, 3))) == digest
    others = {weights_digest(module(**b)) for b in (
        {"c": torch.zeros(2, 3)}, {"b": torch.zeros(2, 3, dtype=torch.int32)},
        {"b": torch.zeros(3, 2)}, {"b": torch.ones(2, 3)})}
    assert len(others) == 4 and digest not in others
