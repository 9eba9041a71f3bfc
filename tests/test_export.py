"""Tests for simclr.export: encoder checkpoints, and programs (torch.export, ONNX) that
compute what the model computes, with any batch size, without simclr."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch

import simclr.export as exp
import simclr.programs as prog
from simclr.checkpoint import save_checkpoint
from simclr.checkpoint_read import load_checkpoint
from simclr.classifiers import classifier_checkpoint
from simclr.cli import main
from simclr.errors import SimCLRError
from simclr.models import Classifier, build_encoder
from simclr.pretrained import (
    encoder_from_checkpoint,
    load_encoder,
    model_from_checkpoint,
    representation_from_checkpoint,
)
from tests.test_pretrained import edited_checkpoint, pretrain_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def run_dir(tmp_path):
    """A pretraining run folder with one checkpoint (ResNet-18 x0.125, 16 px, BN head)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_checkpoint({**state, "step": 7}, tmp_path / "run" / "checkpoints")
    return tmp_path / "run"


def reference(run_dir, layer, images):
    """The eager model's representation at ``layer``, in eval mode."""
    ckpt = pretrain_checkpoint(head_layers=2)
    module, _ = representation_from_checkpoint(ckpt, layer)
    with torch.no_grad():
        return module.eval()(images)


def images(batch, seed=1):
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layer", ["z", "g1"])
def test_programs_of_head_layers(run_dir, tmp_path, layer):
    out = tmp_path / f"{layer}.pt2"
    summary = exp.export(run_dir, out, layer=layer)
    x = images(4)
    with torch.no_grad():
        got = torch.export.load(out).module()(x)
    want = reference(run_dir, layer, x)
    assert got.shape == want.shape == (4, summary["dim"])
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_encoder_checkpoint_round_trip(run_dir, tmp_path):
    out = tmp_path / "encoder.pt"
    summary = exp.export(run_dir, out)
    assert summary["format"] == "checkpoint"
    x = images(3)
    with torch.no_grad():
        assert torch.equal(load_encoder(out)(x), reference(run_dir, "h", x))
    # An exported encoder exports again, as a program of h.
    again = exp.export(out, tmp_path / "again.pt2")
    assert again["dim"] == 64


def test_a_legal_name_of_255_bytes_is_exported_or_refused_before_the_work(run_dir, tmp_path):
    """An export to a legal name of 250 bytes and more failed after the work ('File name
    too long': its temporary file's name passed 255 bytes); a program's card beside it,
    ``<name>.json``, cannot have such a name: that is said before any work."""
    out = tmp_path / ("e" * 252 + ".pt")
    assert exp.export(run_dir, out)["format"] == "checkpoint"
    assert load_checkpoint(out)["kind"] == "encoder"
    program = tmp_path / ("p" * 247 + ".pt2")
    with pytest.raises(SimCLRError, match=r"--out p+\.pt2: a name too long for the card "
                                          r"written beside it, p+\.pt2\.json \(over 255 bytes"):
        exp.export(run_dir, program)
    assert sorted(tmp_path.iterdir()) == [out, run_dir]


def test_a_program_that_fails_its_check_replaces_nothing(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "encoder.pt2"
    exp.export(run_dir, out)
    before = out.read_bytes()
    write = exp.write_pt2

    def perturbed(module, example, path, card):
        with torch.no_grad():  # a program that computes something else than the model
            next(module.parameters()).add_(1.0)
        write(module, example, path, card)

    monkeypatch.setattr(exp, "write_pt2", perturbed)
    with pytest.raises(SimCLRError, match="differs from the model"):
        exp.export(run_dir, out, overwrite=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.pt2", "encoder.pt2.json",
                                                           "run"]


def test_cli_export_prints_a_summary(run_dir, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "e.pt2"),
                 "--format", "pt2", "--layer", "z"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "pt2" and summary["layer"] == "z" and summary["dim"] == 24


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--out", "{ckpt}"], "is the checkpoint being exported"),
        (["--out", "{tmp}"], "is a folder"),
        (["--out", "{tmp}/e.pt", "--layer", "z"], "holds the encoder only; export a layer of "
         "the head as a program: an --out ending in .pt2 or .onnx"),  # (--format pt2 alone:
        # refused, as not matching --out e.pt)
        (["--out", "{tmp}/e.pt2", "--layer", "g7"], "cannot read the output of layer 7"),
        (["--out", "{tmp}/e.pt2", "--format", "tflite"], "invalid choice"),
        (["--out", "{tmp}/e.onnx", "--no-onnx"], 'pip install "simclr[onnx]"'),
        (["--out", "{tmp}/e.bin"], "end the name in .pt"),
        (["--out", "{tmp}/e.onnx", "--format", "pt2"], "does not match --out "),
        (["--out", "{tmp}/e.onnx", "--format", "checkpoint"], "(an onnx file)"),
        (["--out", "{tmp}/e.pt", "--layer", "foo"], "--layer: unknown value 'foo' (h "),
        # --resume would take these for the run's newest checkpoint
        (["--out", "{ckpt_dir}/ckpt-999.pt"], "a run's checkpoints are named so"),
        (["--out", "{tmp}/checkpoints/last.pt"], "a run's checkpoints are named so"),
    ],
)
def test_export_user_errors_are_one_line(run_dir, tmp_path, capsys, monkeypatch, args, needle):
    ckpt = run_dir / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    files_before = [p.name for p in ckpt.parent.iterdir()]
    if "--no-onnx" in args:
        args = [a for a in args if a != "--no-onnx"]
        monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    (tmp_path / "checkpoints").mkdir()
    args = [a.format(ckpt=ckpt, tmp=tmp_path, ckpt_dir=ckpt.parent) for a in args]
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["export", "--checkpoint", str(run_dir), *args]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert ckpt.read_bytes() == before
    assert not list(tmp_path.glob("e.*")) and not list(tmp_path.glob("checkpoints/*"))
    assert sorted(p.name for p in ckpt.parent.iterdir()) == sorted(files_before)


def test_an_existing_file_is_replaced_only_with_overwrite(run_dir, tmp_path, capsys):
    out = tmp_path / "e.pt"
    out.write_bytes(b"a classifier someone trained")
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == b"a classifier someone trained"
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert load_encoder(out) is not None


def test_a_program_replaced_is_never_left_beside_the_old_card(run_dir, tmp_path, monkeypatch):
    """Killed between the new program's rename and its card's write, the old card (of a
    16 px export) stayed beside the new 32 px program, which info and the readers then
    described by it. The old card goes first: the .pt2 keeps its own card inside."""
    from simclr.programs import card_file, read_card

    out = tmp_path / "e.pt2"
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out)]) == 0
    assert read_card(out)["input"]["shape"][2] == 16 and card_file(out).is_file()

    def killed(*args, **kwargs):  # (as SIGKILL after the rename: nothing after it runs)
        raise SystemExit(137)

    monkeypatch.setattr(exp, "write_json", killed)
    with pytest.raises(SystemExit):
        exp.export_program(run_dir, out, "pt2", image_size=32)
    assert out.is_file() and not card_file(out).exists()
    assert read_card(out)["input"]["shape"][2] == 32  # the card inside it: the new program's



def test_a_torchvision_file_replaced_is_never_left_beside_the_old_card(tmp_path, monkeypatch):
    """As a program's: killed after the new state dict's rename, no card at all (it
    keeps none inside), never the earlier export's."""
    from simclr.programs import card_file
    from tests.conftest import saved_resnet18

    saved_resnet18(tmp_path, "cifar.pt", cifar_stem=True)
    out = tmp_path / "r.pth"
    exp.export_torchvision(tmp_path / "cifar.pt", out)
    assert card_file(out).is_file()

    def killed(*args, **kwargs):  # (as SIGKILL after the rename: nothing after it runs)
        raise SystemExit(137)

    monkeypatch.setattr(exp, "write_json", killed)
    with pytest.raises(SystemExit):
        exp.export_torchvision(tmp_path / "cifar.pt", out, overwrite=True)
    assert out.is_file() and not card_file(out).exists()


def test_overwrite_never_replaces_a_runs_checkpoints(run_dir, tmp_path, capsys):
    """A linear evaluation's classifier sits in its run's checkpoints folder beside its
    results: --overwrite must not turn it into an export (nothing is exported there; a
    folder merely named checkpoints, of no run, is the user's own)."""
    evaluation = tmp_path / "le"
    (evaluation / "checkpoints").mkdir(parents=True)
    (evaluation / "linear_eval.json").write_text("{}")
    classifier = evaluation / "checkpoints" / "linear.pt"
    classifier.write_bytes(b"a classifier someone trained")
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(classifier),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert (f"lies in {classifier.parent}, the checkpoints folder of the run in "
            f"{evaluation}; it holds the run's checkpoints and classifiers alone") in err
    assert len(err.splitlines()) == 1
    assert classifier.read_bytes() == b"a classifier someone trained"
    own = tmp_path / "mine" / "checkpoints" / "enc.pt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"old")
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(own), "--overwrite"]) == 0
    assert load_encoder(own) is not None


def test_a_classifier_exports_its_logits(run_dir, tmp_path):
    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    clf = Classifier(model.encoder, 3)
    with torch.no_grad():
        clf.fc.weight.normal_()
    blob = classifier_checkpoint("linear", clf, ckpt["config"], ["cat", "dog", "fox"], 0, 1.0, {})
    source = save_checkpoint({k: v for k, v in blob.items() if k not in ("format", "version")},
                             tmp_path / "lin")
    out = tmp_path / "clf.pt2"
    summary = exp.export(source, out, layer="logits")
    x = images(4)
    with torch.no_grad():
        got = torch.export.load(out).module()(x)
        want = clf.eval()(x)
    assert summary["dim"] == 3 and torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    card = json.loads((tmp_path / "clf.pt2.json").read_text())
    assert card["output"]["classes"] == ["cat", "dog", "fox"]
    with pytest.raises(SimCLRError, match="holds no classifier"):
        exp.export(run_dir, tmp_path / "h.pt2", layer="logits")  # a pretraining checkpoint
    # Its weights (and standardisation) fit features of its own side: a program at
    # another would not compute the logits `simclr predict` does.
    with pytest.raises(SimCLRError, match="--image-size 32: the classifier was fitted on the "
                                          "features of 16 px images; drop --image-size"):
        exp.export(source, tmp_path / "clf32.pt2", layer="logits", image_size=32)
    assert exp.export(source, tmp_path / "clf16.pt2", layer="logits", image_size=16)["dim"] == 3


def test_an_exported_encoder_says_what_it_was_taken_from(run_dir, tmp_path, capsys):
    """An encoder exported from a fine-tuned (or supervised) model read as the
    pretraining's 'step N' alone, the same line as the pretrained one's, though its
    weights differ (kNN 8% against 21% in the audit): it says what it was taken from."""
    from simclr.pretrained import trained_for

    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    blob = classifier_checkpoint("finetune", Classifier(model.encoder, 3), ckpt["config"],
                                 ["a", "b", "c"], 5, 1.0, {})
    blob["encoder_step"] = 7  # (the pretraining step it started from)
    source = save_checkpoint({k: v for k, v in blob.items() if k not in ("format", "version")},
                             tmp_path / "ft")
    exp.export(source, tmp_path / "ft.pt")
    exp.export(run_dir, tmp_path / "pre.pt")
    assert trained_for(load_checkpoint(tmp_path / "pre.pt")) == "step 7"
    assert trained_for(load_checkpoint(tmp_path / "ft.pt")) == \
        "finetune model, step 7 fine-tuned 5 steps"
    assert load_checkpoint(tmp_path / "ft.pt")["exported_from"]["file"] == str(source.resolve())
    exp.export(tmp_path / "ft.pt", tmp_path / "again.pt")  # (kept through a re-export)
    assert trained_for(load_checkpoint(tmp_path / "again.pt")) == \
        "finetune model, step 7 fine-tuned 5 steps"
    # info says it too (it said 'exported encoder, step 7', as of the pretrained one)
    for name in ("ft.pt", "again.pt"):
        assert main(["info", str(tmp_path / name)]) == 0
        assert capsys.readouterr().out == (
            f"{tmp_path / name}: exported encoder, finetune model, step 7 fine-tuned 5 "
            "steps, resnet18 x0.125, 16 px\n")
    assert main(["info", str(tmp_path / "pre.pt")]) == 0
    assert capsys.readouterr().out == (f"{tmp_path / 'pre.pt'}: exported encoder, step 7, "
                                       "resnet18 x0.125, 16 px\n")
    # A program's card records it (it recorded the step alone), and info says it.
    for src, name, layer in ((source, "ft.pt2", "h"), (source, "lg.pt2", "logits"),
                             (tmp_path / "ft.pt", "enc.pt2", "h")):
        exp.export(src, tmp_path / name, layer=layer)
        card = json.loads((tmp_path / f"{name}.json").read_text())
        assert card["step"] == 7 and card["trained"] == trained_for(load_checkpoint(src))
        assert main(["info", str(tmp_path / name)]) == 0
        what = "fine-tuned classifier" if src == source else "exported encoder"
        assert capsys.readouterr().out.endswith(
            f"input, from {src.resolve()} ({what}), {card['trained']}\n")
    assert card["trained"] == "finetune model, step 7 fine-tuned 5 steps"


def test_a_program_of_the_random_init_baseline_says_so(tmp_path, capsys):
    """A random-init linear classifier's logits program (and its encoder's) read as of
    a trained encoder: its card records the baseline, and info says it."""
    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    blob = classifier_checkpoint("linear", Classifier(model.encoder, 2), ckpt["config"],
                                 ["a", "b"], 0, 1.0, {}, features="random init")
    source = save_checkpoint({k: v for k, v in blob.items() if k not in ("format", "version")},
                             tmp_path / "lin")
    for layer in ("logits", "h"):
        out = tmp_path / f"{layer}.pt2"
        exp.export(source, out, layer=layer)
        card = json.loads((tmp_path / f"{layer}.pt2.json").read_text())
        assert (card["kind"], card["features"], card["step"]) == ("linear", "random init", None)
        assert main(["info", str(out)]) == 0
        assert capsys.readouterr().out.endswith(
            f"from {source.resolve()} (linear classifier), random init (the baseline)\n")
    # An encoder fine-tuned from the random init: neither the baseline's alone nor a
    # pretraining's step.
    blob = classifier_checkpoint("finetune", Classifier(model.encoder, 2), ckpt["config"],
                                 ["a", "b"], 3, 1.0, {}, features="random init")
    source = save_checkpoint({k: v for k, v in blob.items() if k not in ("format", "version")},
                             tmp_path / "ft")
    exp.export(source, tmp_path / "ft.pt")
    assert main(["info", str(tmp_path / "ft.pt")]) == 0
    assert capsys.readouterr().out == (
        f"{tmp_path / 'ft.pt'}: exported encoder, finetune model, random init, fine-tuned 3 "
        "steps (the baseline), resnet18 x0.125, 16 px\n")


def test_an_export_at_another_side_keeps_the_side_it_was_trained_at(run_dir, tmp_path,
                                                                    capsys):
    """--image-size 32 of a 16-px encoder: read at 32 px (its stem the trained one's),
    and info says both sides, where it said '32 px' as if trained there."""
    out = tmp_path / "e32.pt"
    exp.export(run_dir, out, image_size=32)
    assert main(["info", str(out)]) == 0
    assert capsys.readouterr().out == (f"{out}: exported encoder, step 7, resnet18 x0.125, "
                                       "16 px (evaluated at 32)\n")
    encoder = load_encoder(out)
    assert encoder.image_size == 32 and encoder.cifar_stem
    exp.export(out, tmp_path / "e24.pt", image_size=24)  # (the trained side kept on)
    assert load_checkpoint(tmp_path / "e24.pt")["config"]["augment"]["size"] == 16


@pytest.mark.parametrize("out", ["enc.pt", "enc.pt2"])
def test_export_refuses_weights_that_do_not_fit_their_config(tmp_path, capsys, out):
    """A resnet18's weights under a config saying resnet50 were written out labelled
    resnet50; now the weights go through the network the config describes, strictly."""
    def edit(ckpt: dict) -> None:
        ckpt["config"]["model"]["arch"] = "resnet50"

    source = edited_checkpoint(tmp_path / "pre", edit)
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert (f"checkpoint {source}: its weights do not fit the resnet50 width 0.125 network "
            "its config describes: ") in err
    assert not list(tmp_path.glob("enc*"))


@pytest.mark.parametrize("out", ["enc.pt", "enc.pt2"])
def test_a_diverged_encoder_is_refused_in_its_own_words(tmp_path, capsys, out):
    """NaN weights: the small checkpoint was written silently, a program's check said it
    'differs from the model by up to nan'."""
    def diverge(ckpt: dict) -> None:
        name = next(k for k in ckpt["model"] if k.startswith("encoder.") and "conv" in k)
        ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))

    source = edited_checkpoint(tmp_path / "pre", diverge)
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / out)]) == 2
    assert capsys.readouterr().err == (
        f"simclr export: error: {source}: the weights hold NaN or inf values (a diverged "
        "or damaged checkpoint?)\n")
    assert not list(tmp_path.glob("enc*"))


def test_export_of_a_checkpoint_without_weights_is_one_line(tmp_path, capsys):
    source = edited_checkpoint(tmp_path / "pre", lambda ckpt: ckpt.pop("model"))
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "e.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith('is not a complete simclr checkpoint: it has no "model" entry')
    assert len(err.splitlines()) == 1 and not (tmp_path / "e.pt").exists()


def test_a_programs_card_is_never_written_over_unasked(run_dir, tmp_path):
    mine = tmp_path / "encoder.pt2.json"
    mine.write_text('{"mine": 1}')
    with pytest.raises(SimCLRError, match=r"encoder.pt2.json \(the export's card, written "
                                          r"beside --out\) already exists; .* --overwrite"):
        exp.export(run_dir, tmp_path / "encoder.pt2")
    assert mine.read_text() == '{"mine": 1}' and not (tmp_path / "encoder.pt2").exists()
    (tmp_path / "d.pt2.json").mkdir()
    with pytest.raises(SimCLRError, match=r"d.pt2.json .* is a folder; choose another --out$"):
        exp.export(run_dir, tmp_path / "d.pt2", overwrite=True)
    assert not (tmp_path / "d.pt2").exists()
    exp.export(run_dir, tmp_path / "encoder.pt2", overwrite=True)  # asked: replaced
    assert json.loads(mine.read_text())["output"]["name"] == "h"


def test_torchvision_export_loads_into_torchvisions_resnet(tmp_path, run_dir, capsys):
    """--format torchvision: torchvision's resnet18 (fc = Identity) loads the file
    strictly and computes the encoder's h; a width-0.125 CIFAR encoder is refused."""
    import torchvision

    from tests.conftest import saved_resnet18

    saved_resnet18(tmp_path, "wide.pt", cifar_stem=False)
    out = tmp_path / "resnet18.pth"
    assert main(["export", "--checkpoint", str(tmp_path / "wide.pt"), "--out", str(out),
                 "--format", "torchvision"]) == 0
    assert "m.fc = torch.nn.Identity()" in json.loads(capsys.readouterr().out)["load"]
    theirs = torchvision.models.resnet18()
    theirs.fc = torch.nn.Identity()
    theirs.load_state_dict(torch.load(out, weights_only=True))
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(x), load_encoder(tmp_path / "wide.pt")(x))
    # info reads the card beside the file (it said '224 px assumed'), and the side
    # simclr reads the file at, which is another
    assert main(["info", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"{out}: exported weights (torchvision): h (512-d) of resnet18 x1, 32 px input, "
        f"from {(tmp_path / 'wide.pt').resolve()}, step unknown; simclr reads the file at "
        "224 px: give --image-size 32\n")
    card = out.with_name(out.name + ".json")
    card.rename(tmp_path / "card.json")  # without it: the file alone
    assert main(["info", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"{out}: ResNet weights in torchvision's layout, resnet18 x1, 224 px assumed (no "
        "size recorded; --image-size)\n")
    (tmp_path / "card.json").rename(card)
    # another ResNet saved over the file in plain torchvision: the card beside it is not
    # its (it said "resnet18 ... from wide.pt"): the file alone
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "other.pth")
    out.rename(tmp_path / "ours.pth")
    (tmp_path / "other.pth").rename(out)
    assert main(["info", str(out)]) == 0
    assert capsys.readouterr().out.startswith(
        f"{out}: ResNet weights in torchvision's layout, resnet34 x1, 224 px assumed")
    (tmp_path / "ours.pth").rename(out)
    # simclr's own commands read the file back as an encoder (at the side its stem implies)
    with torch.no_grad():
        torch.testing.assert_close(load_encoder(out)(x), load_encoder(tmp_path / "wide.pt")(x))
    # The card is never written over either (without --overwrite), nor the file.
    assert main(["export", "--checkpoint", str(tmp_path / "wide.pt"), "--out",
                 str(tmp_path / "other.pth"), "--format", "torchvision"]) == 0
    capsys.readouterr()
    (tmp_path / "other.pth").unlink()
    assert main(["export", "--checkpoint", str(tmp_path / "wide.pt"), "--out",
                 str(tmp_path / "other.pth"), "--format", "torchvision"]) == 2
    assert "other.pth.json (the export's card, written beside --out) already exists" in \
        capsys.readouterr().err
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "n.pth"),
                 "--format", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no width multiplier (this encoder: width 0.125)" in err
    assert not (tmp_path / "n.pth").exists()
    # A full disk (torch's zip writer says so with a RuntimeError): one line, old file kept.
    import shutil
    from collections import namedtuple

    def full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    usage = namedtuple("usage", "total used free")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", full)
        patch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
        before = out.read_bytes()
        assert main(["export", "--checkpoint", str(tmp_path / "wide.pt"), "--out", str(out),
                     "--format", "torchvision", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert out.read_bytes() == before and not list(tmp_path.glob("resnet18.pth.tmp-*"))


def test_a_cifar_stem_encoder_exports_to_torchvision_with_its_stem(tmp_path, capsys):
    """A width-1 CIFAR-stem ResNet-18 (App. B.9's stem): torchvision's resnet18 with the
    3x3 stride-1 conv1 and no max-pool the `load` code gives computes h to the last bit,
    and simclr reads the file back at 32 px."""
    import torchvision

    from simclr.pretrained import load_encoder
    from tests.conftest import saved_resnet18

    saved_resnet18(tmp_path, "cifar.pt", cifar_stem=True)
    out = tmp_path / "resnet18-cifar.pth"
    assert main(["export", "--checkpoint", str(tmp_path / "cifar.pt"), "--out", str(out),
                 "--format", "torchvision"]) == 0
    said = capsys.readouterr()
    assert "records no image size" not in said.err  # (read back at its own 32 px: no note)
    load = json.loads(said.out)["load"]
    # Its card says what the file does not record: the side, no mean/std, the load code.
    card = json.loads(out.with_name(out.name + ".json").read_text())
    assert card["input"]["shape"] == ["batch", 3, 32, 32] and card["usage"] == load
    assert "no mean/std normalisation" in card["input"]["values"]
    assert card["program"] == "torchvision" and card["output"]["shape"] == ["batch", 512]
    namespace = {"torch": torch, "torchvision": torchvision}
    exec(load, namespace)  # the Python the export prints, as a user would run it
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(namespace["m"](x), load_encoder(tmp_path / "cifar.pt")(x))
    assert main(["info", str(out)]) == 0  # (its card's side, the one simclr reads it at)
    assert capsys.readouterr().out == (
        f"{out}: exported weights (torchvision): h (512-d) of resnet18 x1, 32 px input, "
        f"from {(tmp_path / 'cifar.pt').resolve()}, step unknown\n")


def test_export_format_is_refused_where_the_name_says_another():
    """--format torchvision writes a state dict: a .pt or .pth name, never .pt2 or .onnx
    (a file's suffix says what it holds); auto follows the suffix."""
    assert exp.export_format("m.pth", "torchvision") == "torchvision"
    assert exp.export_format("m.PT", "auto") == "checkpoint"
    assert exp.export_format("m.onnx") == "onnx" and exp.export_format("m.pt2") == "pt2"
    for name in ("m.pt2", "m.onnx"):
        with pytest.raises(SimCLRError, match="does not match --out"):
            exp.export_format(name, "torchvision")
    with pytest.raises(SimCLRError, match="does not match --out"):
        exp.export_format("m.pt", "onnx")
    # A format of no name (the Python API: the CLI's choices refuse it first) is named
    # unknown, not taken for one the file's name disagrees with.
    with pytest.raises(SimCLRError, match=r"^--format: unknown value 'tflite' \(auto, "
                                          r"checkpoint, pt2, onnx, torchvision\)$"):
        exp.export_format("m.pt", "tflite")


def test_nan_in_a_batch_norms_statistics_is_refused_as_nan_weights(tmp_path, capsys):
    """A BatchNorm's running statistics (buffers, not parameters) computed NaN make every
    output NaN in evaluation mode: refused as NaN weights are, nothing written."""
    def diverge(ckpt: dict) -> None:
        name = next(k for k in ckpt["model"] if k.startswith("encoder.") and
                    k.endswith("running_var"))
        ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))

    source = edited_checkpoint(tmp_path / "pre", diverge)
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "e.pt")]) == 2
    assert "the weights hold NaN or inf values" in capsys.readouterr().err
    assert not list(tmp_path.glob("e.*"))


def test_a_link_to_a_runs_checkpoints_folder_is_seen_through(run_dir, tmp_path, capsys):
    """--out LINK/last.pt, LINK a link to a run's checkpoints folder: --overwrite replaced
    the run's pretraining checkpoint (the checks read the path as given, not where it
    leads)."""
    (run_dir / "config.yaml").write_text("epochs: 1\n")  # (a run, as pretrain leaves it)
    last = run_dir / "checkpoints" / "last.pt"
    before = last.read_bytes()
    link = tmp_path / "link"
    link.symlink_to(run_dir / "checkpoints")
    other = edited_checkpoint(tmp_path / "other", lambda ckpt: None)  # another run's
    assert main(["export", "--checkpoint", str(other), "--out", str(link / "last.pt"),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a run's checkpoints are named so" in err, err
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("name", ["linear.pt", "finetune.pt", "linear-partial.pt",
                                  "finetune-partial.pt", "encoder.pt", "encoder.pt2"])
def test_nothing_is_exported_into_a_runs_checkpoints_folder(run_dir, tmp_path, capsys, name):
    """An encoder written there under an evaluation's name was taken for the run's
    classifier (predict: 'holds no classifier', info: 'unfinished linear evaluation'),
    under any other name it made two classifiers of one: any name is refused."""
    (run_dir / "config.yaml").write_text("epochs: 1\n")
    other = edited_checkpoint(tmp_path / "other", lambda ckpt: None)
    folder = run_dir / "checkpoints"
    for out in (folder / name, tmp_path / "link" / name):
        if out.parent.name == "link":
            out.parent.symlink_to(folder)
        assert main(["export", "--checkpoint", str(other), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and (
            f"lies in {folder}, the checkpoints folder of the run in {run_dir}; it holds "
            "the run's checkpoints and classifiers alone: choose another --out") in err, err
        assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]


def test_an_unfinished_classifier_is_said_so_and_its_card_records_its_plan(tmp_path, capsys):
    """A supervised run stopped at step 4 of 9, or an evaluation's partial state: predict
    notes its unfinished training, export said nothing and its card only 'step 4'."""
    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    run = tmp_path / "sup"
    blob = classifier_checkpoint("supervised", Classifier(model.encoder, 3), ckpt["config"],
                                 ["a", "b", "c"], 4, 1.0, {})
    blob = {k: v for k, v in blob.items() if k not in ("format", "version")}
    last = save_checkpoint({**blob, "total_steps": 9}, run / "checkpoints")
    (run / "config.yaml").write_text("epochs: 1\n")
    for out, layer in (("sup.pt2", "logits"), ("sup.pt", "h"), ("sup.onnx", "h")):
        assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / out),
                     "--layer", layer]) == 0
        err = capsys.readouterr().err
        assert f"note: {last} is an unfinished training (step 4 of 9); `simclr supervised " \
               f"--resume {run}` continues it\n" in err, (out, err)
    for card in ("sup.pt2.json", "sup.onnx.json"):
        card = json.loads((tmp_path / card).read_text())
        assert card["step"] == 4 and card["total_steps"] == 9 and card["unfinished"]
    partial = save_checkpoint({**blob, "kind": "finetune", "encoder_step": 7,
                               "total_steps": 20}, tmp_path / "ft" / "checkpoints",
                              "finetune-partial.pt")
    assert main(["export", "--checkpoint", str(partial), "--out", str(tmp_path / "ft.pt")]) == 0
    assert f"note: {partial} is an unfinished training (step 4 of 20); its command " \
           "continues it when run again\n" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(partial), "--out", str(tmp_path / "ft.pt2")]) == 0
    assert f"note: {partial} is an unfinished training" in capsys.readouterr().err
    card = json.loads((tmp_path / "ft.pt2.json").read_text())
    # (its step is its encoder's pretraining step, a plan the file does not record)
    assert card["step"] == 7 and card["total_steps"] is None and card["unfinished"] == {
        "step": 4, "total_steps": 20}
    assert main(["info", str(tmp_path / "ft.pt2")]) == 0  # (it showed the step alone)
    assert capsys.readouterr().out.rstrip().endswith(
        "; an unfinished training (step 4 of 20)")
    # finished: no note, and the card says the plan was carried out
    done = save_checkpoint({**blob, "step": 9, "total_steps": 9}, tmp_path / "done")
    assert main(["export", "--checkpoint", str(done), "--out", str(tmp_path / "done.pt2"),
                 "--layer", "logits"]) == 0
    assert "unfinished" not in capsys.readouterr().err
    card = json.loads((tmp_path / "done.pt2.json").read_text())
    assert card["step"] == 9 and card["total_steps"] == 9 and "unfinished" not in card


def test_a_torchvision_cards_load_code_works_from_any_folder(tmp_path, capsys, monkeypatch):
    """--out given relative: the card's `usage` loaded the file from the folder of the
    export only (its `checkpoint` was absolute already)."""
    import torchvision

    from tests.conftest import saved_resnet18

    saved_resnet18(tmp_path, "cifar.pt", cifar_stem=True)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", "cifar.pt", "--out", "r18.pth",
                 "--format", "torchvision"]) == 0
    load = json.loads(capsys.readouterr().out)["load"]
    card = json.loads((tmp_path / "r18.pth.json").read_text())
    assert card["usage"] == load and repr(str(tmp_path / "r18.pth")) in load
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    namespace = {"torch": torch, "torchvision": torchvision}
    exec(load, namespace)
    assert namespace["m"].fc.__class__ is torch.nn.Identity


@pytest.mark.parametrize("out", ["e.pt", "e.pth"])
def test_logits_are_refused_in_an_encoder_file_in_their_own_words(run_dir, tmp_path, capsys,
                                                                   out):
    """A classifier's logits are its output, not 'a layer of the head'."""
    fmt = ["--format", "torchvision"] if out.endswith(".pth") else []
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / out),
                 "--layer", "logits", *fmt]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(
        "export holds the encoder only; export a classifier's logits as a program: an --out "
        "ending in .pt2 or .onnx"), err
    assert not list(tmp_path.glob("e.*"))


def test_a_torchvision_model_that_does_not_reproduce_the_encoder_is_not_written(
        tmp_path, monkeypatch):
    """The renamed weights are checked through torchvision's model before the file is
    written: one that computes another h (a renaming gone wrong) is refused, nothing left."""
    from tests.conftest import saved_resnet18

    saved_resnet18(tmp_path, "cifar.pt", cifar_stem=True)
    real = exp.torchvision_model

    def renamed_wrong(encoder, size):
        model, state, code = real(encoder, size)
        with torch.no_grad():
            model.conv1.weight.mul_(2.0)
        return model, state, code

    monkeypatch.setattr(exp, "torchvision_model", renamed_wrong)
    out = tmp_path / "r.pth"
    with pytest.raises(SimCLRError, match="does not reproduce the encoder"):
        exp.export(tmp_path / "cifar.pt", out, "torchvision")
    assert not out.exists() and not out.with_name(out.name + ".json").exists()


@pytest.mark.parametrize("entry, value, said", [
    ("step", "x", "its step is not a whole number of steps"),
    ("step", 2.5, "its step is not a whole number of steps"),
    ("step", -1, "its step is not a whole number of steps"),
    ("encoder_step", "abc", "its encoder's step is not a whole number of steps")])
def test_a_checkpoints_step_that_is_no_count_is_one_line(tmp_path, image_folder, capsys,
                                                         entry, value, said):
    """A damaged or hand-edited step ('x'; a classifier's encoder_step 'abc') met int()
    in export (and embed, which records it): a ValueError traceback. It is said to be
    damaged, never printed, and nothing is written."""
    ckpt = pretrain_checkpoint(head_layers=2)
    if entry == "encoder_step":
        encoder, _ = encoder_from_checkpoint(ckpt)
        ckpt = classifier_checkpoint("linear", Classifier(encoder, 2), ckpt["config"],
                                     ["a", "b"], 0, 1.0, {}, encoder_step=7)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    path = save_checkpoint({**state, entry: value}, tmp_path / "r" / "checkpoints")
    for argv in (["export", "--checkpoint", str(path), "--out", str(tmp_path / "o.pt")],
                 ["embed", "--checkpoint", str(path), "--data", str(image_folder),
                  "--out", str(tmp_path / "o.npz"), "--device", "cpu"]):
        capsys.readouterr()
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert err == f"simclr {argv[0]}: error: {path} is damaged: {said}\n", err
        assert not (tmp_path / "o.pt").exists() and not (tmp_path / "o.npz").exists()


def test_a_classifier_fitted_on_an_unfinished_training_says_so(tmp_path, capsys):
    """A linear classifier fitted on a pretraining stopped at step 3 of 9: the evaluation
    said so, but predict and export of the classifier said nothing and its card read as a
    finished training's. The evaluation's source records the stopped training, the
    classifier keeps it (``encoder_unfinished``), and what reads the classifier says it."""
    from simclr.commands import checkpoint_source
    from simclr.evaluate import run_linear_eval
    from tests.test_evaluate import colour_source

    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    last = save_checkpoint({**state, "step": 3, "total_steps": 9}, tmp_path / "run" / "checkpoints")
    stopped = load_checkpoint(last)
    source = checkpoint_source(last, stopped, "pretrained")
    assert source["unfinished"] == {"step": 3, "total_steps": 9}
    assert "unfinished" not in checkpoint_source(last, stopped, "random init")
    encoder, _ = encoder_from_checkpoint(stopped)
    run_linear_eval(encoder, colour_source(seed=0), colour_source(n_per_class=3, seed=1),
                    tmp_path / "lin", image_size=16, device="cpu", precision="fp32",
                    verbose=False, source=source)
    linear = tmp_path / "lin" / "checkpoints" / "linear.pt"
    assert load_checkpoint(linear)["encoder_unfinished"] == {"step": 3, "total_steps": 9}
    capsys.readouterr()
    note = f"note: {linear} is a classifier on an encoder of an unfinished training (step 3 of 9)\n"
    assert main(["export", "--checkpoint", str(linear), "--layer", "logits",
                 "--out", str(tmp_path / "c.pt2")]) == 0
    assert note in capsys.readouterr().err
    card = json.loads((tmp_path / "c.pt2.json").read_text())
    assert card["unfinished"] == {"step": 3, "total_steps": 9} and card["step"] == 3
    assert main(["export", "--checkpoint", str(linear), "--out", str(tmp_path / "e.pt")]) == 0
    assert note in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "e.pt")["unfinished"] == {"step": 3, "total_steps": 9}
    # a classifier of a finished training's encoder: nothing said, nothing recorded
    done = classifier_checkpoint("finetune", Classifier(encoder, 2), ckpt["config"], ["a", "b"],
                                 5, 1.0, {}, encoder_step=9)
    done = save_checkpoint({k: v for k, v in done.items() if k not in ("format", "version")},
                           tmp_path / "ft" / "checkpoints", "finetune.pt")
    assert main(["export", "--checkpoint", str(done), "--out", str(tmp_path / "f.pt")]) == 0
    assert "unfinished" not in capsys.readouterr().err
    assert "unfinished" not in load_checkpoint(tmp_path / "f.pt")


def test_an_export_of_an_unfinished_training_keeps_saying_so(tmp_path, image_folder, capsys):
    """An encoder exported from a run stopped at step 3 of 9 kept its step alone: embed
    with it said nothing, and a program exported from it recorded a finished training.
    The export keeps the stopped training's step and plan (``unfinished``, as a card
    does), which the commands that read it say and a program's card keeps."""
    ckpt = pretrain_checkpoint(head_layers=2)
    state = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    save_checkpoint({**state, "step": 3, "total_steps": 9}, tmp_path / "run" / "checkpoints")
    encoder = tmp_path / "u.pt"
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(encoder)]) == 0
    assert load_checkpoint(encoder)["unfinished"] == {"step": 3, "total_steps": 9}
    assert main(["info", str(encoder)]) == 0  # (it read as a finished training's)
    assert "; an unfinished training (step 3 of 9)" in capsys.readouterr().out
    note = f"note: {encoder} is an export of an unfinished training (step 3 of 9)\n"
    capsys.readouterr()
    assert main(["embed", "--checkpoint", str(encoder), "--data", str(image_folder),
                 "--out", str(tmp_path / "e.npz"), "--device", "cpu"]) == 0
    assert note in capsys.readouterr().err
    for out in ("u.pt2", "u2.pt"):  # (a program's card, an export of the export)
        assert main(["export", "--checkpoint", str(encoder), "--out", str(tmp_path / out)]) == 0
        assert note in capsys.readouterr().err
    assert prog.read_card(tmp_path / "u.pt2")["unfinished"] == {"step": 3, "total_steps": 9}
    assert load_checkpoint(tmp_path / "u2.pt")["unfinished"] == {"step": 3, "total_steps": 9}
    # A finished run's export, or a periodic checkpoint chosen on purpose: no such entry
    save_checkpoint({**state, "step": 9, "total_steps": 9}, tmp_path / "run" / "checkpoints")
    save_checkpoint({**state, "step": 3, "total_steps": 9}, tmp_path / "run" / "checkpoints",
                    "ckpt-00000003.pt")
    for source in ("last.pt", "ckpt-00000003.pt"):
        out = tmp_path / f"f-{source}"
        assert main(["export", "--checkpoint", str(tmp_path / "run" / "checkpoints" / source),
                     "--out", str(out)]) == 0
        assert "unfinished" not in load_checkpoint(out)
        assert main(["embed", "--checkpoint", str(out), "--data", str(image_folder),
                     "--out", str(tmp_path / "e.npz"), "--device", "cpu", "--overwrite"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_a_checkpoint_export_over_a_torchvision_one_removes_its_card(run_dir, tmp_path,
                                                                     capsys):
    """`export --out sw.pth --overwrite` in checkpoint format over an earlier torchvision
    export left its card sw.pth.json beside it, saying program torchvision, with usage
    code that failed on the new file. The card goes once the new file is in place (not
    before: a failed export loses nothing); a JSON file of the user's there stays."""
    ckpt = pretrain_checkpoint(head_layers=2)
    wide = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    wide["config"] = {**ckpt["config"], "model": {**ckpt["config"]["model"], "width": 1.0}}
    wide["model"] = {f"encoder.{k}": v for k, v in build_encoder(
        "resnet18", 1.0, True).state_dict().items()}
    width_one = save_checkpoint(wide, tmp_path / "w" / "checkpoints")
    out, card = tmp_path / "sw.pth", tmp_path / "sw.pth.json"
    assert main(["export", "--checkpoint", str(width_one), "--out", str(out),
                 "--format", "torchvision"]) == 0
    assert json.loads(card.read_text())["program"] == "torchvision"
    # a failed export (its checkpoint unreadable) keeps the file and its card
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["export", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(out),
                 "--overwrite"]) != 0
    assert card.exists() and "format" not in torch.load(out, weights_only=True)
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out),
                 "--overwrite"]) == 0
    assert load_checkpoint(out)["kind"] == "encoder" and not card.exists()
    # (a file of that name that is no card of simclr's is not ours to remove)
    for mine in ('{"mine": 1}', '{"format": "coco"}'):  # (a format, not simclr's)
        card.write_text(mine)
        assert main(["export", "--checkpoint", str(run_dir), "--out", str(out),
                     "--overwrite"]) == 0
        assert card.read_text() == mine


def test_an_imported_files_guessed_side_stays_a_guess_in_its_export(tmp_path, capsys):
    """torchvision weights record no side: 224 px is assumed (``size_guessed``). Their
    export recorded 224 as the encoder's own side, so the .pt read back was taken at 224
    px without a note, and info said 'ResNet weights in torchvision's layout' twice; the
    guess is carried on. With --image-size the side is the one given: no guess."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "enc.pt"
    assert main(["export", "--checkpoint", str(tmp_path / "tv.pth"), "--out", str(out)]) == 0
    assert "records no image size" in capsys.readouterr().err  # (the import's own note)
    assert load_checkpoint(out)["size_guessed"] is True
    assert main(["info", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"{out}: ResNet weights in torchvision's layout, resnet18 x1, 224 px assumed (no "
        "size recorded; --image-size)\n")
    # its readers say which side they assume, as of the imported file
    from simclr.pretrained import at_image_size

    at_image_size(load_checkpoint(out), None, out)
    assert capsys.readouterr().err == (
        f"note: {out} records no image size (ResNet weights in torchvision's layout): read "
        "as 224 px images; --image-size S for another side\n")
    sized = tmp_path / "sized.pt"
    assert main(["export", "--checkpoint", str(tmp_path / "tv.pth"), "--out", str(sized),
                 "--image-size", "64"]) == 0
    assert load_checkpoint(sized)["size_guessed"] is False
    assert load_checkpoint(sized)["config"]["augment"]["size"] == 64
    assert main(["info", str(sized)]) == 0 and "assumed" not in capsys.readouterr().out
    # An export of before 2026-12-06 recorded neither: its side may be a guess, said so
    old = load_checkpoint(sized)
    del old["size_guessed"]
    torch.save(old, tmp_path / "old.pt")
    assert main(["info", str(tmp_path / "old.pt")]) == 0
    assert capsys.readouterr().out.endswith(
        "resnet18 x1, 64 px perhaps assumed (exported by an earlier simclr, which kept no "
        "record of it; --image-size)\n")
    at_image_size(old, None, tmp_path / "old.pt")
    assert "was exported by an earlier simclr, which did not record whether its side was " \
        "given" in capsys.readouterr().err
    # Read at another side, that perhaps-guessed side is replaced as a guess is (not kept
    # as the encoder's trained side, evaluated at 32: '64 px (evaluated at 32)')
    from simclr.pretrained import side_guessed

    assert side_guessed(old) == "perhaps"
    augment = at_image_size(old, 32)["config"]["augment"]
    assert (augment["size"], augment["eval_size"]) == (32, None)
    augment = at_image_size(load_checkpoint(out), 32)["config"]["augment"]  # (guessed)
    assert (augment["size"], augment["eval_size"]) == (32, None)


def test_a_reexport_of_an_earlier_export_of_imported_weights_keeps_its_side_uncertain(
        tmp_path, capsys):
    """An export of imported weights written before 2026-12-06 recorded no size_guessed:
    its side reads as 'perhaps assumed'. Exported again, that caveat was dropped (its
    side read as trained); it is carried on, and a guess stays a guess, unless
    --image-size gives the side."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "tv.pth")
    new = tmp_path / "enc.pt"
    assert main(["export", "--checkpoint", str(tmp_path / "tv.pth"), "--out", str(new)]) == 0
    old = load_checkpoint(new)
    del old["size_guessed"]  # as an earlier simclr wrote it
    torch.save(old, tmp_path / "old.pt")
    again, guess, sized = tmp_path / "again.pt", tmp_path / "guess.pt", tmp_path / "sized.pt"
    for source, out, extra in ((tmp_path / "old.pt", again, []), (new, guess, []),
                               (tmp_path / "old.pt", sized, ["--image-size", "64"])):
        assert main(["export", "--checkpoint", str(source), "--out", str(out), *extra]) == 0
    capsys.readouterr()
    assert main(["info", str(again)]) == 0
    assert capsys.readouterr().out.endswith(
        "resnet18 x1, 224 px perhaps assumed (exported by an earlier simclr, which kept no "
        "record of it; --image-size)\n")
    assert load_checkpoint(guess)["size_guessed"] is True
    assert load_checkpoint(sized)["size_guessed"] is False
    assert main(["info", str(sized)]) == 0 and "assumed" not in capsys.readouterr().out


def test_an_exported_encoder_records_its_source_by_its_absolute_path(run_dir, tmp_path,
                                                                     monkeypatch):
    """exported_from.file was the path as given ('run1/checkpoints/last.pt'), which
    means nothing once the export is moved or read from another folder; it is resolved,
    as a program's card records its checkpoint."""
    monkeypatch.chdir(run_dir.parent)
    exp.export(Path(run_dir.name), tmp_path / "enc.pt")
    recorded = load_checkpoint(tmp_path / "enc.pt")["exported_from"]["file"]
    assert recorded == str((run_dir / "checkpoints" / "last.pt").resolve())


def test_an_export_of_a_stopped_linear_evaluation_is_not_marked_unfinished(tmp_path, capsys):
    """A linear evaluation stopped at step 3 of 9 (checkpoints/linear-partial.pt) fitted
    its classifier alone: its frozen encoder is a trained one, so the exported encoder
    records no ``unfinished`` training (the note on the partial file is still said)."""
    ckpt = pretrain_checkpoint(head_layers=2)
    model, _ = model_from_checkpoint(ckpt)
    blob = classifier_checkpoint("linear", Classifier(model.encoder, 3), ckpt["config"],
                                 ["a", "b", "c"], 3, 1.0, {})
    partial = save_checkpoint({**{k: v for k, v in blob.items()
                                  if k not in ("format", "version")}, "total_steps": 9},
                              tmp_path / "lin" / "checkpoints", "linear-partial.pt")
    out = tmp_path / "enc.pt"
    exp.export_encoder(partial, out)
    assert f"note: {partial} is an unfinished training (step 3 of 9)" in \
        capsys.readouterr().err
    assert "unfinished" not in load_checkpoint(out)


def test_a_program_that_baked_the_traced_batch_in_is_refused_in_one_line(run_dir, tmp_path,
                                                                         monkeypatch):
    """A program is checked on a batch of another size than the one it was traced with
    (CHECK_BATCH != TRACE_BATCH): one whose batch dimension was fixed at the trace fails
    its check, one line naming the batch, instead of failing later in a user's hands
    (it raised torch's AssertionError 'Guard failed', a traceback)."""
    assert prog.CHECK_BATCH != prog.TRACE_BATCH

    def static(module, example, path, card):  # no dynamic_shapes: the batch is fixed
        archive = io.BytesIO()
        torch.export.save(torch.export.export(module, (example,)), archive)
        path.write_bytes(archive.getbuffer())

    monkeypatch.setattr(exp, "write_pt2", static)
    out = tmp_path / "encoder.pt2"
    with pytest.raises(SimCLRError, match=rf"failed on \({prog.CHECK_BATCH}, 3, 16, 16\) "
                                          rf"images \(traced with a batch of "
                                          rf"{prog.TRACE_BATCH}\):.*nothing was written"):
        exp.export(run_dir, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_linked_card_beside_a_checkpoint_export_is_left_alone(run_dir, tmp_path):
    """A checkpoint export written over an earlier file drops simclr's card beside it
    (that export's); a symbolic link of that name, even to a card of simclr's, is the
    user's own: it stays, and the card it points to too."""
    elsewhere = tmp_path / "kept" / "other.pt2.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps({"format": "simclr-program", "program": "pt2"}))
    out = tmp_path / "enc.pt"
    exp.export(run_dir, out)
    link = tmp_path / "enc.pt.json"
    link.symlink_to(elsewhere)
    exp.export(run_dir, out, overwrite=True)
    assert link.is_symlink() and json.loads(link.read_text())["program"] == "pt2"


def test_a_program_whose_card_name_is_255_bytes_is_exported(run_dir, tmp_path):
    """NAME_MAX (255 bytes) is the longest legal name: a program of 250 bytes, whose card
    ``<name>.json`` has 255, is exported with its card (only longer ones are refused)."""
    out = tmp_path / ("p" * 246 + ".pt2")
    card = prog.card_file(out)
    assert len(os.fsencode(card.name)) == exp.NAME_MAX == 255
    assert exp.export(run_dir, out)["format"] == "pt2"
    assert json.loads(card.read_text())["program"] == "pt2"


def test_a_torchvision_exports_side_note_names_the_eval_size():
    """The note on a torchvision export read back at another side names the side the
    export is for: the run's --eval-size where it differs from the trained side."""
    ckpt = {"config": {"augment": {"size": 32, "eval_size": 64}}}
    assert exp._side_named(ckpt, None) == "its --eval-size (it was trained at 32 px)"
    ckpt = {"config": {"augment": {"size": 32, "eval_size": 32}}}
    assert exp._side_named(ckpt, None) == "the side it was trained at"
    assert exp._side_named(ckpt, 48) == "the side it was exported for"


def test_a_cards_origin_says_its_weights_were_imported(run_dir):
    """A program's or torchvision export's card records where its weights come from:
    imported ones (torchvision's layout) say so, as the encoder export does."""
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert "imported" not in exp.card_origin(ckpt, False)
    assert exp.card_origin({**ckpt, "imported": "torchvision"}, False)["imported"] == \
        "torchvision"
