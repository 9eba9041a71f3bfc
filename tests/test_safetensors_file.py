"""Tests for simclr.safetensors_file: Hugging Face's weight files, read without the package."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
import torchvision

from simclr.checkpoint_read import load_checkpoint
from simclr.errors import SimCLRError
from simclr.pretrained import encoder_from_checkpoint
from simclr.safetensors_file import is_safetensors, read_safetensors

# names the specification gives each dtype, and numpy's spelling of its bytes
_NAMES = {torch.float32: ("F32", "<f4"), torch.float16: ("F16", "<f2"),
          torch.int64: ("I64", "<i8"), torch.uint8: ("U8", "u1")}


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """The format as its specification lays it out, written here independently of the
    reader: header length, JSON header, the tensors' bytes back to back."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    chunks, offset = [], 0
    for name, t in tensors.items():
        dtype, np_dtype = _NAMES[t.dtype]
        raw = t.numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the specification pads the header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def test_tensors_round_trip_exactly(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(3, 4, generator=gen), "b": torch.arange(5),
               "c": torch.randn(2, generator=gen).half(), "d": torch.tensor(7, dtype=torch.uint8),
               "empty": torch.zeros(0, 3)}
    write_safetensors(tmp_path / "t.safetensors", tensors, {"format": "pt"})
    read = read_safetensors(tmp_path / "t.safetensors")
    assert read.keys() == tensors.keys()
    for name, t in tensors.items():
        assert read[name].dtype == t.dtype and torch.equal(read[name], t), name


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda b: b[:-3], r"tensor 'w': the file ends early"),
    (lambda b: b[:6], r"the file ends early"),
    (lambda b: b[:7], r"the file ends early"),  # (a header length one byte short)
    # (cut within the header: not the header's damage)
    (lambda b: b[:8 + struct.unpack("<Q", b[:8])[0] - 3], r"the file ends early"),
    (lambda b: struct.pack("<Q", 10**12) + b[8:], r"no header"),
    (lambda b: b[:8] + b"[" + b[9:], r"its header is not JSON"),
    (lambda b: struct.pack("<Q", 8) + b"[1, 2] \n", r"its header is not a mapping"),
    (lambda b: b.replace(b'"F32"', b'"F99"'), r"tensor 'w': dtype 'F99' is not one simclr reads"),
    (lambda b: b.replace(b"[2, 3]", b"[2, 2]"),
     r"tensor 'w': 24 bytes for a F32 tensor of shape \(2, 2\)"),
])
def test_a_damaged_file_is_one_line_naming_the_problem(tmp_path, damage, problem):
    write_safetensors(tmp_path / "w.safetensors", {"w": torch.ones(2, 3)})
    path = tmp_path / "w.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SimCLRError, match=r"cannot read .*w.safetensors: not a complete "
                                          r"safetensors file \(" + problem + r"\)$"):
        read_safetensors(path)


def _write_raw(path, header: dict, buffer: bytes) -> None:
    """A safetensors file with exactly this header and buffer, offsets as given."""
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + buffer)


@pytest.mark.parametrize(("offsets", "size", "problem"), [
    # 250 entries on the same 4 MB would otherwise copy it 250 times
    ({"a": [0, 8], "b": [0, 8]}, 8, r"tensor 'b': its bytes overlap tensor 'a''s"),
    ({"a": [0, 8], "b": [4, 12]}, 12, r"tensor 'b': its bytes overlap tensor 'a''s"),
    ({"a": [0, 8], "b": [12, 20]}, 20, r"tensor 'b': 4 bytes before it belong to no tensor"),
    ({"a": [8, 16]}, 16, r"tensor 'a': 8 bytes before it belong to no tensor"),
    ({"a": [0, 8]}, 12, r"4 bytes after the last tensor belong to no tensor"),
])
def test_overlapping_offsets_or_holes_are_refused(tmp_path, offsets, size, problem):
    """The specification wants the tensors' byte ranges back to back, covering the buffer
    (its library refuses anything else as InvalidOffset): refused before any is copied."""
    header = {name: {"dtype": "F32", "shape": [2], "data_offsets": span}
              for name, span in offsets.items()}
    path = tmp_path / "w.safetensors"
    _write_raw(path, header, bytes(size))
    with pytest.raises(SimCLRError, match=r"cannot read .*w.safetensors: not a complete "
                                          r"safetensors file \(" + problem + r"\)$"):
        read_safetensors(path)


def test_empty_tensors_may_share_an_offset(tmp_path):
    """Zero-byte tensors take no room, so several may sit at the same offset."""
    header = {"e1": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
              "e2": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
              "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
              "e3": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}
    _write_raw(tmp_path / "w.safetensors", header, struct.pack("<f", 2.5))
    read = read_safetensors(tmp_path / "w.safetensors")
    assert read["w"].tolist() == [2.5] and read["e2"].shape == (0, 3)


def test_a_resnet_in_a_model_folder_is_an_encoder_checkpoint(tmp_path):
    """A folder as the Hub downloads it (config.json beside model.safetensors), timm's
    ResNet names being torchvision's: read as an encoder whose h is torchvision's."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18().eval()
    state = {k: v for k, v in theirs.state_dict().items() if "num_batches" not in k}
    folder = tmp_path / "resnet18.tv_in1k"
    folder.mkdir()
    (folder / "config.json").write_text('{"architecture": "resnet18"}')
    write_safetensors(folder / "model.safetensors", state, {"format": "pt"})
    ckpt = load_checkpoint(folder)
    assert ckpt["file"].endswith("model.safetensors")
    encoder, spec = encoder_from_checkpoint(ckpt)
    assert spec["arch"] == "resnet18" and spec["image_size"] == 224
    theirs.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(encoder.eval()(x).numpy(), theirs(x).numpy())
    # `simclr info FOLDER` describes the file the commands read (it was 'not a simclr
    # run folder'); two weights files: which is meant is asked, as --checkpoint asks
    from simclr.info import describe

    assert describe(folder) == describe(folder / "model.safetensors")
    assert describe(folder)["path"].endswith("model.safetensors")
    (folder / "other.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(SimCLRError, match=r"holds several weights files \(model.safetensors, "
                                          r"other.safetensors\); name one$"):
        describe(folder)
    (folder / "other.safetensors").unlink()
    torch.save(state, folder / "weights.pt")  # (a .pt first, as --checkpoint takes it)
    assert describe(folder)["path"].endswith("weights.pt")


@pytest.mark.parametrize("header", [b"[" * 100_000, b'{"w": ' + b"9" * 5000 + b"}"],
                         ids=["nested", "long-number"])
def test_a_header_json_cannot_parse_is_one_line(tmp_path, header):
    """Arrays nested past the recursion limit, a number past int()'s digit limit: each
    the header's damage, not a RecursionError / ValueError traceback."""
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(SimCLRError, match=r"\(its header is not JSON\)$"):
        read_safetensors(path)


@pytest.mark.parametrize(("shape", "offsets", "size"), [
    ([-2, -2], [0, 16], 16),  # (-2 * -2 * 4 bytes: the size fits, the shape does not)
    ([1], [0, 4, 9], 4),  # (a third offset: not a [begin, end) span)
    ([True], [0, 4], 4),  # (JSON's true: a bool, an int to isinstance)
    ([0, 2**70], [0, 0], 0),  # (no bytes, but a side reshape overflows on)
    ([1], [False, 4], 4),
])
def test_a_shape_or_offsets_not_the_formats_are_one_line(tmp_path, shape, offsets, size):
    """Negative sides, or offsets that are not two, would meet a reshape or an unpacking as
    a traceback; they are the header's damage, said in one line."""
    path = tmp_path / "w.safetensors"
    _write_raw(path, {"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}},
               bytes(size))
    with pytest.raises(SimCLRError, match=r"cannot read .*w.safetensors: not a complete "
                                          r"safetensors file \(tensor 'w': its shape or offsets "
                                          r"are not the format's\)$"):
        read_safetensors(path)


@pytest.mark.parametrize("dtype", [["F32"], {"F32": 1}, None, 4], ids=["list", "object", "null",
                                                                     "number"])
def test_a_dtype_that_is_not_a_string_is_one_line(tmp_path, dtype):
    """A dtype given as a JSON list or object cannot be looked up among the format's names
    (unhashable): it is the header's damage, said in one line, not a TypeError."""
    path = tmp_path / "w.safetensors"
    _write_raw(path, {"w": {"dtype": dtype, "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    with pytest.raises(SimCLRError, match=r"cannot read .*w.safetensors: not a complete "
                                          r"safetensors file \(tensor 'w': dtype .* is not one "
                                          r"simclr reads\)$"):
        read_safetensors(path)


def test_a_safetensors_file_is_known_by_its_suffix_in_any_case():
    """model.SAFETENSORS (a copy from a case-blind file system) is read as one too."""
    from pathlib import Path

    assert all(is_safetensors(Path(name)) for name in ("m.safetensors", "d/m.SafeTensors"))
    assert not any(is_safetensors(Path(name)) for name in ("m.pt", "m.safetensors.pt",
                                                           "safetensors"))


@pytest.mark.parametrize(("header", "size", "problem"), [
    ({"w": ("F32", [1], [-4, 4])}, 4, r"tensor 'w': its offsets are not the format's"),
    ({"w": ("F32", [0], [8, 0])}, 8, r"tensor 'w': its offsets are not the format's"),
    # an empty tensor among another's bytes: the specification's library refuses it too
    ({"a": ("F32", [2], [0, 8]), "e": ("F32", [0], [4, 4])}, 8,
     r"tensor 'e': its bytes overlap tensor 'a''s"),
    ({"a": ("U8", [1], [0, 1]), "b": ("U8", [1], [2, 3])}, 3,
     r"tensor 'b': 1 bytes before it belong to no tensor"),
], ids=["negative-begin", "begin-past-end", "empty-among-anothers", "one-byte-hole"])
def test_offsets_out_of_order_or_among_anothers_bytes_are_refused(tmp_path, header, size,
                                                                 problem):
    """A begin below 0 or past its end is not a span (it was refused as an overlap, or as
    the file ending early); a zero-byte tensor inside another's bytes, or a one-byte hole,
    is not the back-to-back layout."""
    path = tmp_path / "w.safetensors"
    _write_raw(path, {name: {"dtype": d, "shape": s, "data_offsets": o}
                      for name, (d, s, o) in header.items()}, bytes(size))
    with pytest.raises(SimCLRError, match=r"safetensors file \(" + problem + r"\)$"):
        read_safetensors(path)


def test_a_file_that_cannot_be_read_is_one_line(tmp_path):
    """A missing file, or a folder of that name, is said in one line, not an OSError."""
    (tmp_path / "dir.safetensors").mkdir()
    for name, why in (("gone.safetensors", "No such file"), ("dir.safetensors", "directory")):
        with pytest.raises(SimCLRError, match=rf"^cannot read .*{name}: .*{why}"):
            read_safetensors(tmp_path / name)
