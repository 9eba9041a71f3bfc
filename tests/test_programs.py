"""Tests for simclr.programs: torch.export and ONNX programs written (the dynamo or the
TorchScript exporter), run without simclr, checked against the model before anything is
replaced, their failures said in one line; their cards, inside them and beside them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import simclr.export as exp
import simclr.programs as prog
from simclr.cli import main
from simclr.errors import SimCLRError
from tests import test_export
from tests.conftest import make_image_folder
from tests.test_export import images, reference

pytestmark = pytest.mark.usefixtures("one_thread")
run_dir = test_export.run_dir  # (its fixture: a pretraining run folder with a checkpoint)


def test_pt2_program_runs_without_simclr(run_dir, tmp_path):
    out = tmp_path / "encoder.pt2"
    summary = exp.export(run_dir, out)
    assert summary["format"] == "pt2" and summary["checked_with"] == "torch.export.load"
    assert summary["dim"] == 64 and summary["max_abs_diff"] < 1e-4
    x = torch.cat([images(1), images(5, seed=2)])
    torch.save(x, tmp_path / "x.pt")
    # A fresh interpreter where importing simclr fails: only PyTorch runs the program.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["simclr"] = None
        import torch
        program = torch.export.load({str(out)!r}).module()
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.no_grad():
            torch.save([program(x[:1]), program(x[1:])], {str(tmp_path / "y.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    one, five = torch.load(tmp_path / "y.pt")
    want = reference(run_dir, "h", x)
    assert one.shape == (1, 64) and five.shape == (5, 64)
    assert torch.allclose(torch.cat([one, five]), want, atol=1e-5, rtol=1e-4)


def test_the_card_is_inside_the_program_and_beside_it(run_dir, tmp_path):
    out = tmp_path / "encoder.pt2"
    exp.export(run_dir, out)
    beside = json.loads((tmp_path / "encoder.pt2.json").read_text())
    inside = {prog.CARD_FILE: ""}
    torch.export.load(out, extra_files=inside)
    assert json.loads(inside[prog.CARD_FILE]) == beside
    assert beside["input"]["shape"] == ["batch", 3, 16, 16]
    assert beside["output"] == {**beside["output"], "name": "h", "shape": ["batch", 64]}
    assert beside["encoder"] == {"arch": "resnet18", "width": 0.125, "cifar_stem": True,
                                 "image_size": 16}
    assert beside["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.pt2", "encoder.pt2.json",
                                                           "run"]
    # Which images are taken whole: those whose longer side is <= 32 (augment's
    # _eval_square keys on max(h, w)); 'of side <= 32' left a 20 x 40 one in doubt.
    assert "images whose longer side is <= 32 have their central square" in \
        beside["input"]["preprocess"]
    # Larger ones: one centre crop of the resized picture (the central square cropped
    # first, as the card said, is a pixel off for half the shapes at 16, 24, 32 px).
    assert "then its central 16 x 16 (torchvision's Resize + CenterCrop)" in \
        beside["input"]["preprocess"]
    assert "central square, then" not in beside["input"]["preprocess"]
    # The card's preprocessing call runs as written (it lacked the size argument).
    call = re.search(r"(simclr\.augment\.eval_resize\(PIL\.Image\.open\(file\), \d+\))",
                     beside["input"]["preprocess"])
    assert call is not None, beside["input"]["preprocess"]
    file = make_image_folder(tmp_path / "one", classes=1, per_class=1, side=40)
    file = next(file.rglob("*.*"))
    import PIL.Image

    import simclr.augment

    scope = {"simclr": simclr, "PIL": PIL, "file": file}
    assert eval(call[1], scope).shape == (3, 16, 16)  # noqa: S307 (the card's own text)


def test_info_reads_a_programs_card_beside_it_or_inside_it(run_dir, tmp_path, capsys):
    from simclr.cli import main

    out = tmp_path / "encoder.pt2"
    exp.export(run_dir, out)
    line = (f"{out}: exported program (pt2): h (64-d) of resnet18 x0.125, 16 px input, from "
            f"{(run_dir / 'checkpoints' / 'last.pt').resolve()}, step 7\n")
    assert main(["info", str(out)]) == 0 and capsys.readouterr().out == line
    (tmp_path / "encoder.pt2.json").unlink()  # the copy inside the archive
    assert main(["info", str(out)]) == 0 and capsys.readouterr().out == line
    out.write_bytes(b"not an archive")
    assert main(["info", str(out)]) == 2
    assert capsys.readouterr().err == (f"simclr info: error: {out}: an exported program "
                                       "without a readable simclr card (encoder.pt2.json "
                                       "beside it, or inside it)\n")


def test_info_of_an_onnx_file_without_the_onnx_package_says_what_its_card_needs(
        tmp_path, capsys, monkeypatch):
    """Without the onnx package the card inside an .onnx cannot be read: said, where it
    read as a file without any card."""
    out = tmp_path / "encoder.onnx"
    out.write_bytes(b"an ONNX graph")
    monkeypatch.setitem(sys.modules, "onnx", None)  # (import onnx raises ImportError)
    assert main(["info", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"simclr info: error: {out}: an exported program without a readable simclr card "
        "(encoder.onnx.json beside it, or inside it, which needs the onnx package: pip "
        'install "simclr[onnx]")\n')


def old_torch(monkeypatch):
    """As on torch 2.4 (the floor), whose torch.onnx has no usable dynamo exporter: the
    TorchScript one must write the file (a dynamo export fails the test)."""
    export = torch.onnx.export

    def torchscript_only(*args, **kwargs):
        assert kwargs.get("dynamo") is False, "the dynamo exporter on torch 2.4"
        return export(*args, **kwargs)

    monkeypatch.setattr(torch, "__version__", "2.4.1+cu121")
    monkeypatch.setattr(torch.onnx, "export", torchscript_only)


@pytest.mark.parametrize("exporter", ["installed", "torchscript"])
def test_onnx_program_matches_the_model(run_dir, tmp_path, monkeypatch, exporter):
    """Both of torch.onnx's exporters: the dynamo one where it converts the encoder
    (torch 2.7 on), else the TorchScript one (on torch 2.4 the dynamo one took no
    dynamic_shapes: every ONNX export failed)."""
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    if exporter == "torchscript":
        old_torch(monkeypatch)
        assert not prog.dynamo_onnx()
    out = tmp_path / "encoder.onnx"
    summary = exp.export(run_dir, out)
    assert summary["format"] == "onnx" and summary["checked_with"] == "onnxruntime"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = images(6)
    got = session.run(None, {"images": x.numpy()})[0]
    assert np.allclose(got, reference(run_dir, "h", x).numpy(), atol=1e-5, rtol=1e-4)
    card = json.loads(session.get_modelmeta().custom_metadata_map[prog.CARD_FILE])
    assert card == json.loads((tmp_path / "encoder.onnx.json").read_text())
    assert not list(tmp_path.glob("*.data"))  # weights inside the one file


@pytest.mark.parametrize(("torch_version", "onnxscript_version", "dynamo"), [
    ("2.4.1+cu121", "0.7.2", False), ("2.6.0", "0.7.2", False), ("2.7.1", "0.2.7", False),
    ("2.7.1+cu126", "0.7.2", True), ("2.14.1+cu130", "0.10.0", True),
    ("2.10.0a0+git1", "0.7", True), ("unknown", "0.7.2", False),
])
def test_the_dynamo_onnx_exporter_is_used_where_it_converts_the_encoder(
        monkeypatch, torch_version, onnxscript_version, dynamo):
    onnxscript = pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    monkeypatch.setattr(torch, "__version__", torch_version)
    monkeypatch.setattr(onnxscript, "__version__", onnxscript_version)
    assert prog.dynamo_onnx() is dynamo


# torch 2.5's failure (step 3 of its dynamo exporter), colours and all
CONVERSION_ERROR = ("Failed to convert the exported program to an ONNX model. \x1b[96mThis "
                    "is step 3/3\x1b[0m of exporting the model to ONNX. Next steps:\n- If "
                    "there is a missing ONNX function, implement it and register it.\n\n"
                    "## Exception summary\n")


def raised_from(message, cause):
    """An exception with ``message`` raised from ``cause`` (as torch.onnx raises them)."""
    try:
        try:
            raise cause
        except Exception as inner:
            raise RuntimeError(message) from inner
    except RuntimeError as exc:
        return exc


def test_torch_onnx_errors_are_one_clean_line_with_their_cause():
    """torch.onnx's messages carry colour codes (ESC [96m, or escaped in a repr) and its
    advice ('Next steps:'); the line said only which step failed, cut at 200 characters
    with its codes, never why."""
    cause = TypeError("batch_norm(): argument 'training' must be bool, not SymBool")
    assert prog.error_cause(raised_from(CONVERSION_ERROR, cause)) == (
        "Failed to convert the exported program to an ONNX model: batch_norm(): argument "
        "'training' must be bool, not SymBool")
    escaped = raised_from(CONVERSION_ERROR.replace("\x1b", "\\x1b"), cause)
    assert "x1b" not in prog.error_cause(escaped) and "[96m" not in prog.error_cause(escaped)
    assert prog.error_cause(ValueError("\x1b[1mbad\x1b[0m shape\nmore")) == "bad shape"
    # (the innermost cause of a longer chain: the one that names what went wrong)
    chained = raised_from("Export failed.", raised_from("Step 2 failed.", cause))
    assert prog.error_cause(chained) == f"Export failed: {cause}"
    assert prog.error_cause(AssertionError()) == "AssertionError"  # (no message: its type)
    long = prog.error_cause(raised_from("Error calling serialize_model_into with: " + "x" * 5000,
                                       TypeError("Expected an int, got a boolean.")))
    assert len(long) < 200 and long.endswith("...: Expected an int, got a boolean.")


def failing_onnx_export(monkeypatch, stage, error):
    """torch.onnx.export raising ``error`` (stage 'trace'), or returning a program whose
    save raises it (stage 'save', as onnxscript 0.2's serializer did on torch 2.6)."""
    export = torch.onnx.export

    def failing(*args, **kwargs):
        if stage == "trace":
            raise error
        program = export(*args, **kwargs)
        program.save = lambda *a, **k: (_ for _ in ()).throw(error)
        return program

    monkeypatch.setattr(torch.onnx, "export", failing)


@pytest.mark.parametrize("stage", ["trace", "save"])
def test_an_onnx_exporters_failure_is_one_clean_line(run_dir, tmp_path, capsys, monkeypatch,
                                                     stage):
    """A failed save was a traceback (onnxscript's SerdeError, outside the try), and a
    failed conversion a line with colour codes cut before its cause."""
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    if stage == "save" and not prog.dynamo_onnx():
        pytest.skip("the dynamo exporter's program.save, which torch does not use here")
    cause = TypeError("Field onnx.AttributeProto.i: Expected an int, got a boolean.")
    failing_onnx_export(monkeypatch, stage, raised_from(CONVERSION_ERROR, cause))
    out = tmp_path / "e.onnx"
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    what = "could not trace the encoder" if stage == "trace" else "could not save the ONNX program"
    assert err == (f"simclr export: error: torch.onnx {what}: Failed to convert the exported "
                   "program to an ONNX model: Field onnx.AttributeProto.i: Expected an int, "
                   "got a boolean.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_onnx_file_that_onnxruntime_cannot_load_is_one_line(run_dir, tmp_path, capsys,
                                                               monkeypatch):
    """onnxruntime older than the exporter's ONNX (IR version 10 on onnxruntime 1.17)
    failed the check with a traceback."""
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

    def too_old(path, providers):
        raise RuntimeError(
            f"[ONNXRuntimeError] : 1 : FAIL : Load model from {path} failed:/onnxruntime_src/"
            "onnxruntime/core/graph/model.cc:179 onnxruntime::Model::Model(onnx::ModelProto&&, "
            "const onnxruntime::PathString&) Unsupported model IR version: 10, max supported "
            "IR version: 9")

    monkeypatch.setattr(ort, "InferenceSession", too_old)
    assert main(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "e.onnx")]) == 2
    err = capsys.readouterr().err
    assert err == ("simclr export: error: onnxruntime could not load the exported program "
                   "to check it: [ONNXRuntimeError] : 1 : FAIL : Unsupported model IR version: "
                   "10, max supported IR version: 9\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_loading_a_pt2_shows_no_weights_only_warning(run_dir, tmp_path, recwarn, monkeypatch):
    """torch 2.4's torch.export.load printed torch.load's weights_only FutureWarning (a
    dozen lines) on each export's check."""
    load = torch.export.load

    def warning_load(*args, **kwargs):  # as torch 2.4's does
        import warnings

        warnings.warn("You are using `torch.load` with `weights_only=False` (the current "
                      "default value), which uses the default pickle module implicitly.",
                      FutureWarning, stacklevel=2)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch.export, "load", warning_load)
    assert exp.export(run_dir, tmp_path / "e.pt2")["checked_with"] == "torch.export.load"
    assert not [w for w in recwarn if "weights_only" in str(w.message)]


def test_a_program_without_room_is_refused_before_torch_writes_it(run_dir, tmp_path,
                                                                 monkeypatch):
    """torch's pt2 writer aborts the whole process (C++) on a full disk: checked first."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(SimCLRError, match=r"could not write .*e.pt2: No space left on device "
                                          r"\(about .* MiB needed, 0.0 MiB free\)"):
        exp.export(run_dir, tmp_path / "e.pt2")
    assert not (tmp_path / "e.pt2").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE as Linux has it")
def test_a_program_over_a_file_size_limit_is_one_line(run_dir, tmp_path):
    """Under a file-size limit (ulimit -f, SIGXFSZ ignored as prlimit leaves it) torch's
    pt2 writer wrote again after the failed write and aborted the process (SIGABRT, a C++
    stack dump)."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        from simclr.cli import main
        sys.exit(main(["export", "--checkpoint", {str(run_dir)!r},
                       "--out", {str(tmp_path / "e.pt2")!r}]))
    """)
    root = str(Path(exp.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.endswith(f"could not write {tmp_path / 'e.pt2'}: File too large\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary file left


def test_room_for_a_program_is_twice_its_weights_and_a_mib(tmp_path, monkeypatch):
    """A program holds its float32 weights and its graph: a disk with room for the
    weights alone would fail after the tracing (pt2's writer aborts the process), so
    twice the weights and a MiB are asked for first."""
    import shutil
    from collections import namedtuple

    module = torch.nn.Linear(1000, 1000)  # 1001000 float32 values: 4004000 bytes
    need = 2 * 4004000 + (1 << 20)
    usage = namedtuple("usage", "total used free")
    for free, refused in ((4004000 + 4096, True), (need - 1, True), (need, False)):
        monkeypatch.setattr(shutil, "disk_usage", lambda path, free=free: usage(10**10, 0, free))
        if refused:
            with pytest.raises(SimCLRError, match="No space left on device"):
                prog.check_room(tmp_path / "e.pt2", module)
        else:
            prog.check_room(tmp_path / "e.pt2", module)

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "disk_usage", unreadable)  # not known: left to the write
    prog.check_room(tmp_path / "e.pt2", module)


def test_a_card_records_an_encoders_projection_shortcuts():
    """An encoder built with projection shortcuts (model.projection_shortcuts) is another
    network: its card says so, as info and the loaders read it."""
    spec = {"arch": "resnet50", "width": 1.0, "cifar_stem": False, "image_size": 224,
            "projection_shortcuts": True}
    card = prog.program_card(spec, "h", 2048, {}, "pt2", Path("x.pt"))
    assert card["encoder"] == spec


def test_the_card_inside_a_program_is_read_before_the_one_beside(run_dir, tmp_path):
    """read_card takes the copy inside the archive first, which travels with what the
    program computes: another program copied over this one (`cp z.pt2 encoder.pt2`)
    was described by the card left beside it. The one beside serves where none is
    inside (an ONNX file without the onnx package)."""
    out = tmp_path / "encoder.pt2"
    exp.export(run_dir, out)
    card = prog.card_file(out)
    card.write_text(json.dumps({**json.loads(card.read_text()), "output": "stale"}))
    assert prog.read_card(out)["output"] != "stale" and prog.read_card(out)["step"] == 7


def test_a_program_of_another_shape_fails_its_check(tmp_path, monkeypatch):
    """A program returning one row for a batch of 3 broadcasts against the model's output
    and could pass the value check: its shape is checked first, in one line."""
    monkeypatch.setattr(prog, "_runner", lambda path, fmt: lambda x: torch.zeros(1, 64))
    expected = torch.zeros(3, 64)
    with pytest.raises(SimCLRError, match=r"returned shape \(1, 64\) for \(3, 3, 16, 16\) "
                                          r"images, not \(3, 64\)"):
        prog.check_program(tmp_path / "p.pt2", "pt2", images(3), expected)


def test_a_cards_output_names_its_layer_and_its_preprocessing_the_eval_side():
    """A head layer's card says which of the head's layers it is ('g1': layer 1), the
    preprocessing names the side larger pictures are resized to (224 px: 256), and its
    usage is its format's."""
    spec = {"arch": "resnet50", "width": 1.0, "cifar_stem": False, "image_size": 224}

    def card(layer):
        return prog.program_card(spec, layer, 8, {}, "pt2", Path("x.pt"))

    assert card("g1")["output"]["what"] == "the output of layer 1 of the projection head"
    assert card("h")["output"]["what"].startswith("h, the encoder's pooled output")
    assert "shorter side to 256 (bicubic" in card("h")["input"]["preprocess"]
    onnx = prog.program_card(spec, "h", 8, {}, "onnx", Path("x.pt"))
    assert card("h")["usage"].startswith("torch.export.load(path).module()")
    assert onnx["usage"].startswith("onnxruntime.InferenceSession(path)")


def test_an_onnx_program_is_left_unchecked_where_onnxruntime_is_not_installed(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # (import onnxruntime raises)
    assert prog.check_program(tmp_path / "e.onnx", "onnx", images(3), torch.zeros(3, 8)) == \
        {"checked_with": "nothing (onnxruntime is not installed)"}


def test_a_card_is_read_from_an_uppercase_pt2_and_only_where_it_is_simclrs(tmp_path):
    """A .PT2 is an archive as a .pt2 is (its card inside it); a JSON file beside a
    program that is no simclr card is not taken for one."""
    import zipfile

    card = {"format": "simclr-program", "program": "pt2", "step": 3}
    upper = tmp_path / "E.PT2"
    with zipfile.ZipFile(upper, "w") as archive:
        archive.writestr(f"E/extra/{prog.CARD_FILE}", json.dumps(card))
    assert prog.read_card(upper) == card
    other = tmp_path / "o.pt2"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("o/data.pkl", b"")
    prog.card_file(other).write_text(json.dumps({"note": "someone else's"}))
    with pytest.raises(SimCLRError, match="without a readable simclr card"):
        prog.read_card(other)


def test_a_program_is_checked_to_atol_and_rtol_of_the_model(tmp_path, monkeypatch):
    """Within ATOL + RTOL |expected| of the eager model it passes (another runtime's
    kernels); a difference of 0.01 on outputs of 1 is refused."""
    expected = torch.ones(3, 8)
    for off, refused in ((prog.ATOL, False), (0.01, True)):
        monkeypatch.setattr(prog, "_runner", lambda path, fmt, off=off: lambda x: expected + off)
        if refused:
            with pytest.raises(SimCLRError, match=r"differs from the model by up to 0.01;"):
                prog.check_program(tmp_path / "p.pt2", "pt2", images(3), expected)
        else:
            assert prog.check_program(tmp_path / "p.pt2", "pt2", images(3), expected)[
                "max_abs_diff"] == pytest.approx(prog.ATOL, rel=1e-3)


def test_a_full_disk_under_an_onnx_save_stays_an_oserror(tmp_path, monkeypatch):
    """An OSError of the save (a full disk, a file-size limit) is said as for every
    file written, not as the exporter's refusal of its model."""
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

    def full(path):
        raise OSError(28, "No space left on device", str(path))

    for exporter in ("_dynamo_onnx", "_torchscript_onnx"):
        monkeypatch.setattr(prog, exporter, lambda module, example, card: full)
    with pytest.raises(OSError, match="No space left on device"):
        prog.write_onnx(torch.nn.Identity(), images(2), tmp_path / "e.onnx", {})
