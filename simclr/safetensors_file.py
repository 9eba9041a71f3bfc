"""Reading ``.safetensors`` weight files (Hugging Face's format: timm's and the Hub's
ResNets are stored so) without the ``safetensors`` package.

The format, from its specification (github.com/huggingface/safetensors): an unsigned
little-endian 64-bit header length N, N bytes of JSON mapping each tensor's name to its
``dtype``, ``shape`` and ``data_offsets`` [begin, end) into the byte buffer that follows
(an optional ``__metadata__`` entry holds strings), then that buffer. It holds no code,
so unlike a pickle it is safe to read from anyone; the checks below only make a damaged
file a one-line error instead of a wrong tensor.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from simclr.errors import SimCLRError

SUFFIX = ".safetensors"
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
           "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
_MAX_HEADER = 100_000_000  # the specification's own bound on the JSON header


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` is named as a safetensors file."""
    return path.suffix.lower() == SUFFIX


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file, by name, on the CPU.

    Raises SimCLRError naming the file and the first thing wrong with it (cut short,
    a header that is not the format's, a dtype or offsets that do not fit).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SimCLRError(f"cannot read {path}: {exc.strerror or exc}") from None
    problem, tensors = _parse(data)
    if problem is not None:
        raise SimCLRError(f"cannot read {path}: not a complete safetensors file ({problem})")
    return tensors


def _parse(data: bytes) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(the first problem or None, the tensors) of a safetensors file's bytes."""
    if len(data) < 8:
        return "the file ends early", {}
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        return ("the file ends early" if size <= _MAX_HEADER else "no header"), {}
    try:
        header = json.loads(data[8:8 + size])
    # (ValueError: JSONDecodeError, a number past int()'s digit limit; RecursionError:
    # arrays nested thousands deep, a hostile header's)
    except (ValueError, RecursionError):
        return "its header is not JSON", {}
    if not isinstance(header, dict):
        return "its header is not a mapping", {}
    buffer = memoryview(data)[8 + size:]
    entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for name, entry in entries.items():
        problem = _entry_problem(entry, len(buffer))
        if problem is not None:
            return f"tensor {name!r}: {problem}", {}
    # checked before anything is copied: entries sharing bytes would each copy them
    problem = _layout_problem(entries, len(buffer))
    if problem is not None:
        return problem, {}
    tensors = {}
    for name, entry in entries.items():
        begin, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        flat = torch.frombuffer(bytearray(buffer[begin:end]), dtype=dtype) if end > begin \
            else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"])
    return None, tensors


def _entry_problem(entry: object, buffer_size: int) -> str | None:
    """Why a header entry cannot be a tensor in a buffer of ``buffer_size`` bytes."""
    # (isinstance str first: a JSON list or object as dtype is unhashable to the lookup)
    kind = entry.get("dtype") if isinstance(entry, dict) else entry
    if not isinstance(entry, dict) or not isinstance(kind, str) or kind not in _DTYPES:
        return f"dtype {str(kind)[:20]!r} is not one simclr reads"
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    # (type() is int: JSON's true is a bool, an int to isinstance; a side past int64
    # meets reshape as an overflow, even in an empty tensor)
    if not (isinstance(shape, list) and all(type(n) is int and 0 <= n < 2**63 for n in shape)
            and isinstance(offsets, list) and len(offsets) == 2
            and all(type(n) is int for n in offsets)):
        return "its shape or offsets are not the format's"
    begin, end = offsets
    count = 1
    for n in shape:
        count *= n
    itemsize = torch.empty(0, dtype=_DTYPES[entry["dtype"]]).element_size()
    if not 0 <= begin <= end <= buffer_size:
        return "the file ends early" if end > buffer_size else "its offsets are not the format's"
    if end - begin != count * itemsize:
        return f"{end - begin} bytes for a {entry['dtype']} tensor of shape {tuple(shape)}"
    return None


def _layout_problem(entries: dict[str, dict], buffer_size: int) -> str | None:
    """Why valid entries do not lie back to back over the whole buffer, as the
    specification requires (its library refuses anything else as InvalidOffset)."""
    spans = sorted((entry["data_offsets"][0], entry["data_offsets"][1], name)
                   for name, entry in entries.items())
    position, previous = 0, None
    for begin, end, name in spans:
        if begin < position:
            return f"tensor {name!r}: its bytes overlap tensor {previous!r}'s"
        if begin > position:
            return f"tensor {name!r}: {begin - position} bytes before it belong to no tensor"
        if end > begin:
            position, previous = end, name
    if position != buffer_size:
        return f"{buffer_size - position} bytes after the last tensor belong to no tensor"
    return None
