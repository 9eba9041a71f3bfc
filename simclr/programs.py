"""Exported programs: the files ``simclr export --format pt2`` and ``onnx`` write, checked
against the model and read back.

A program is written from a module by torch.export (``.pt2``: :func:`write_pt2`) or by
torch.onnx (``.onnx``: :func:`write_onnx`; the dynamo exporter where it converts the
encoders, :func:`dynamo_onnx`, else the TorchScript one), once there is room for it
(:func:`check_room`); the written file is run on a batch of another size than the traced
one and compared with the eager model (:func:`check_program`). A failure of an exporter or
a runtime is said in one line (:func:`error_cause`). A program's card
(:func:`program_card`: what it computes and expects, what its weights are) is stored
inside it (:data:`CARD_FILE`) and beside it (:func:`card_file`), and read back by
:func:`read_card`. What is exported, from which checkpoint, is :mod:`simclr.export`.
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simclr import __version__
from simclr.decode import eval_side
from simclr.errors import SimCLRError

CARD_FILE = "simclr.json"  # the card's name inside a .pt2 archive and in ONNX metadata
# The traced batch and the checked batch differ, so a program that baked the batch
# size in fails its check instead of failing later in a user's hands.
TRACE_BATCH, CHECK_BATCH = 2, 3
ATOL, RTOL = 1e-4, 1e-3  # fp32 kernels of another runtime; the outputs are O(1)
# torch.onnx's dynamo exporter converts these encoders from torch 2.7 with onnxscript 0.7
# on (checked: torch 2.7.1 and 2.14.1, onnxscript 0.7.2). Before, it took no
# dynamic_shapes (torch 2.4), failed on batch norm (2.5, 2.6) or built a model that
# onnxscript 0.2 could not save (2.6, 2.7): there the TorchScript exporter writes the
# file (checked: torch 2.4.1 and 2.14.1), which torch 2.9 on deprecates.
DYNAMO_ONNX_SINCE = {"torch": (2, 7), "onnxscript": (0, 7)}


def program_card(spec: dict[str, Any], layer: str, dim: int, origin: dict[str, Any],
                 fmt: str, source: Path, classes: list[str] | None = None) -> dict[str, Any]:
    """What a program computes and what it expects: stored in it and beside it;
    ``origin``: what its weights are and how far they were trained
    (:func:`simclr.export.card_origin`)."""
    size = spec["image_size"]
    output: dict[str, Any] = {"name": layer, "dtype": "float32", "shape": ["batch", dim]}
    output["what"] = {
        "h": "h, the encoder's pooled output (the representation the paper evaluates)",
        "z": "z = g(h), the projection head's output",
        "logits": "the classifier's logits; softmax gives the class probabilities",
    }.get(layer, f"the output of layer {layer[1:]} of the projection head")
    if classes is not None:
        output["classes"] = classes
    return {
        "format": "simclr-program", "version": 1, "program": fmt,
        "input": {
            "name": "images", "dtype": "float32", "shape": ["batch", 3, size, size],
            "values": "RGB in [0, 1], channels first, no mean/std normalisation",
            "preprocess": f"simclr's evaluation transform: images whose longer side is "
                          f"<= 32 have their central square (a square one: all of it) "
                          f"resized to {size} x {size}; larger ones (a 20 x 40 one too) "
                          f"shorter side to {eval_side(size)} "
                          "(bicubic, antialiased), then its central "
                          f"{size} x {size} (torchvision's Resize + CenterCrop); values "
                          "clamped to [0, 1] after the resize; the "
                          "file read with its EXIF orientation, transparency on white, "
                          "16-bit values scaled to 8 bits; "
                          f"simclr.augment.eval_resize(PIL.Image.open(file), {size}) does "
                          "it, and "
                          "simclr embed / predict --precision fp32 compute that for each "
                          "file to the rounding of the 8-bit pixels they store (the "
                          "resized image rounded to whole levels of 255 before the crop: "
                          "0.1-0.4% of a feature; JPEGs of more than 4x the decoded side "
                          "read in draft mode, at 1/2 to 1/8 scale)",
        },
        "usage": {"pt2": "torch.export.load(path).module(), in evaluation mode already "
                         "(such programs refuse .eval() and .train()); only the batch "
                         "dimension is dynamic",
                  "onnx": "onnxruntime.InferenceSession(path); only the batch dimension "
                          "is dynamic"}.get(fmt),
        "output": output,
        "encoder": {k: spec[k] for k in ("arch", "width", "cifar_stem", "image_size",
                                         "projection_shortcuts") if k in spec},
        **origin, "checkpoint": str(source.resolve()), "simclr_version": __version__,
    }


def check_room(out: Path, module: nn.Module) -> None:
    """A program holds the weights in float32 and its graph: without room for them, the
    write would fail after the tracing, so the free space is checked first (twice the
    weights, and a MiB)."""
    import shutil

    need = 2 * sum(t.numel() * 4 for t in module.state_dict().values()) + (1 << 20)
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        return
    if free < need:
        raise SimCLRError(f"could not write {out}: No space left on device (about "
                          f"{need / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)")


def card_file(export: Path) -> Path:
    """Where an export's card lies: ``<file>.json`` beside it."""
    return export.with_name(export.name + ".json")


def read_card(program: Path) -> dict[str, Any]:
    """The card of an exported ``.pt2`` / ``.onnx`` (what it computes and expects):
    the copy inside it (the ``.pt2`` archive's :data:`CARD_FILE`; the ONNX metadata,
    where the onnx package is installed), else the ``<file>.json`` beside it. Inside
    first: a program copied over another (`cp z.pt2 enc.pt2`) kept the other's card
    beside it, which was read as this one's (h, 64-d, for a 128-d z)."""
    import zipfile

    texts = []
    beside = card_file(program)
    if program.suffix.lower() == ".pt2":
        def inside() -> str:
            with zipfile.ZipFile(program) as archive:
                name = next(n for n in archive.namelist() if n.endswith(f"extra/{CARD_FILE}"))
                return archive.read(name).decode()
        texts.append(inside)
    else:
        def inside() -> str:
            import onnx

            model = onnx.load(str(program), load_external_data=False)
            return next(p.value for p in model.metadata_props if p.key == CARD_FILE)
        texts.append(inside)
    if beside.is_file():
        texts.append(lambda: beside.read_text(encoding="utf-8"))
    unread = "inside it"
    for text in texts:
        try:
            card = json.loads(text())
        except ImportError:  # the ONNX copy: not read, which does not mean it is not there
            unread = 'inside it, which needs the onnx package: pip install "simclr[onnx]"'
            continue
        except Exception:  # (not there, not readable: the next one)
            continue
        if isinstance(card, dict) and card.get("format") == "simclr-program":
            return card
    raise SimCLRError(f"{program}: an exported program without a readable simclr card "
                      f"({beside.name} beside it, or {unread})")


def _trace_error(what: str, exc: Exception) -> SimCLRError:
    return SimCLRError(f"{what} could not trace the encoder: {error_cause(exc)}")


# Colours (ESC [ ... m), also as the escaped text a repr of one leaves in a message
_ANSI = re.compile(r"(?:\x1b|\\x1b|\\033)\[[0-9;]*[A-Za-z]")
# onnxruntime's temporary file, C++ source location and function ahead of its cause
_ORT_SOURCE = re.compile(r"Load model from .*? failed:\s*(?:/\S*onnxruntime_src/\S+:\d+ "
                         r"[\w:~]+\([^)]*\)\s*)?")
# torch.onnx's advice after its first line's cause ("... step 3/3 of exporting the
# model to ONNX. Next steps:" and a list): nothing the user of simclr acts on
_ONNX_ADVICE = re.compile(r"\s*This is step \d+/\d+ of exporting the model to ONNX\."
                          r"|\s*Next steps:\s*$")


def _first_line(exc: BaseException, limit: int) -> str:
    """The first line of ``exc``'s message (its type's name if empty), without colour
    codes or torch.onnx's advice, cut to ``limit`` characters."""
    text = _ANSI.sub("", str(exc)).strip().split("\n")[0]
    text = _ORT_SOURCE.sub("", _ONNX_ADVICE.sub("", text)).strip()
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_cause(exc: BaseException) -> str:
    """One line for a failure of torch.export / torch.onnx: its first line and, where it
    was raised from another exception, the first line of the innermost one, which names
    what went wrong (torch.onnx's own says only which of its steps failed, and
    onnxscript's 'Error calling serialize_model_into with: <the whole model>')."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    if root is exc:
        return _first_line(exc, 200)
    head = _first_line(exc, 120)
    if head.endswith(".") and not head.endswith("..."):  # (a sentence, not a cut)
        head = head[:-1]
    return f"{head}: {_first_line(root, 200)}"


def _batch_free() -> tuple[dict[int, Any]]:
    """dynamic_shapes for one input whose dimension 0 (the batch) is free. Bounded: torch
    2.7's torch.export refused the encoders with an unbounded one ('Constraints violated
    (batch)!', a guard that the batch is not 2**63 - 1)."""
    return ({0: torch.export.Dim("batch", min=1, max=2**62)},)


def write_pt2(module: nn.Module, example: torch.Tensor, path: Path,
               card: dict[str, Any]) -> None:
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=_batch_free())
    except Exception as exc:  # torch.export's failures have many types
        raise _trace_error("torch.export", exc) from None
    # Into memory, then to the file in Python: torch's archive writer, its write to a file
    # failing (a file-size limit, a full disk), wrote again on closing and aborted the
    # process from C++ (SIGABRT, no exception to catch); a failed write is an OSError here.
    archive = io.BytesIO()  # (a file object: torch.export wants a .pt2 name otherwise)
    torch.export.save(program, archive, extra_files={CARD_FILE: json.dumps(card)})
    path.write_bytes(archive.getbuffer())


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path,
                card: dict[str, Any]) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx's exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError:
        raise SimCLRError('ONNX export needs the onnx and onnxscript packages: '
                          'pip install "simclr[onnx]"') from None
    for name in ("onnxscript", "onnx_ir"):  # their INFO lines narrate each optimizer pass
        logging.getLogger(name).setLevel(logging.WARNING)
    if dynamo_onnx():
        save = _dynamo_onnx(module, example, card)
    else:
        save = _torchscript_onnx(module, example, card)
    try:
        save(path)  # one self-contained file
    except OSError:
        raise  # (a full disk, a file-size limit: said by written(), as for every file)
    except Exception as exc:  # a model the exporter built but its serializer refuses
        raise SimCLRError(f"torch.onnx could not save the ONNX program: "
                          f"{error_cause(exc)}") from None


def dynamo_onnx() -> bool:
    """Whether torch.onnx's dynamo exporter converts the encoders here: torch and
    onnxscript releases from :data:`DYNAMO_ONNX_SINCE` on."""
    import onnxscript

    versions = {"torch": torch.__version__, "onnxscript": onnxscript.__version__}
    for package, since in DYNAMO_ONNX_SINCE.items():
        release = re.match(r"(\d+)\.(\d+)", str(versions[package]))
        if release is None or tuple(map(int, release.groups())) < since:
            return False
    return True


def _dynamo_onnx(module: nn.Module, example: torch.Tensor,
                 card: dict[str, Any]) -> Callable[[Path], object]:
    """The encoder through torch.export and onnxscript; returns what saves it."""
    try:
        program = torch.onnx.export(
            module, (example,), None, dynamo=True, dynamic_shapes=_batch_free(),
            input_names=["images"], output_names=[card["output"]["name"]], verbose=False)
    except Exception as exc:  # the exporter's failures have many types
        raise _trace_error("torch.onnx", exc) from None
    # (the ignores: with dynamo=True it returns the program)
    program.model.metadata_props[CARD_FILE] = json.dumps(card)  # type: ignore[union-attr]
    return lambda path: program.save(str(path), external_data=False)  # type: ignore[union-attr]


def _torchscript_onnx(module: nn.Module, example: torch.Tensor,
                      card: dict[str, Any]) -> Callable[[Path], object]:
    """The encoder through torch.jit.trace (torch.onnx's older exporter), its batch
    dimension named dynamic; returns what saves it."""
    import onnx

    output = card["output"]["name"]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # its deprecation (torch 2.9 on), tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buffer, dynamo=False,  # type: ignore[arg-type]  # (a file too)
                              input_names=["images"], output_names=[output],
                              dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}})
        model = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:  # the exporter's failures have many types
        raise _trace_error("torch.onnx", exc) from None
    model.metadata_props.add(key=CARD_FILE, value=json.dumps(card))
    return lambda path: path.write_bytes(model.SerializeToString())


def check_program(path: Path, fmt: str, images: torch.Tensor,
                  expected: torch.Tensor) -> dict[str, Any]:
    """Run the written program on ``images`` and compare with the eager ``expected``.

    Raises SimCLRError when they differ beyond ATOL + RTOL |expected|. An ONNX file is
    run with onnxruntime where it is installed (part of the ``onnx`` extra), otherwise
    left unchecked, which the returned ``checked_with`` says.
    """
    run = _runner(path, fmt)
    if run is None:
        return {"checked_with": "nothing (onnxruntime is not installed)"}
    try:  # (a program that baked the traced batch in refuses this one: its guard fails)
        got = torch.as_tensor(np.asarray(run(images)))
    except Exception as exc:  # the runtimes' failures have many types
        raise SimCLRError(f"the exported program failed on {tuple(images.shape)} images "
                          f"(traced with a batch of {TRACE_BATCH}): {error_cause(exc)}; "
                          "nothing was written") from None
    if got.shape != expected.shape:
        raise SimCLRError(f"the exported program returned shape {tuple(got.shape)} for "
                          f"{tuple(images.shape)} images, not {tuple(expected.shape)}")
    err = float((got - expected).abs().max())
    if not torch.allclose(got, expected, atol=ATOL, rtol=RTOL):
        raise SimCLRError(f"the exported program differs from the model by up to {err:.3g}; "
                          "nothing was written")
    return {"checked_with": "torch.export.load" if fmt == "pt2" else "onnxruntime",
            "max_abs_diff": err}


def load_pt2(path: Path) -> Any:
    """``torch.export.load(path)``, without the FutureWarning torch 2.4 prints on each
    load (its loader's own torch.load with weights_only=False: a dozen lines that
    the user can do nothing about)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"You are using `torch\.load` with "
                                "`weights_only=False`", category=FutureWarning)
        with open(path, "rb") as f:
            return torch.export.load(f)


def _runner(path: Path, fmt: str) -> Callable[[torch.Tensor], Any] | None:
    if fmt == "pt2":
        program = load_pt2(path).module()

        def run_pt2(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return program(x)
        return run_pt2
    try:
        import onnxruntime
    except ImportError:
        return None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # e.g. an ONNX IR version newer than this onnxruntime's
        raise SimCLRError("onnxruntime could not load the exported program to check it: "
                          f"{error_cause(exc)}") from None
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]
