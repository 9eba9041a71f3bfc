"""SimCLR: contrastive self-supervised pretraining of visual encoders (Chen et al. 2020).

Command line: ``simclr pretrain | embed | predict | export | neighbors | knn |
linear-eval | finetune | supervised | transform-probe | sweep | cache | info``.

Python API, at the top level: :func:`build_config` and :func:`pretrain` (a run as
``simclr pretrain`` makes it), :func:`load_encoder`, :func:`embed_folder`,
:func:`predict_folder`, :func:`eval_resize` (using an encoder), :func:`nt_xent` and
:class:`LARS` (the loss and optimizer alone), :class:`Config` and :class:`SimCLRError`
(every user error). Each is imported on first use, so ``import simclr`` stays light;
every module (``simclr.augment``, ``simclr.models``, ...) is reachable as an attribute.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import torch

    from simclr.augment import eval_resize
    from simclr.config import Config
    from simclr.errors import SimCLRError
    from simclr.inference import embed_folder, predict_folder
    from simclr.loss import nt_xent
    from simclr.optim import LARS
    from simclr.settings import build_config
    from simclr.train import pretrain

# The top-level names and the module each lives in (imported when first used).
_API = {
    "Config": "simclr.config", "build_config": "simclr.settings", "pretrain": "simclr.train",
    "embed_folder": "simclr.inference", "predict_folder": "simclr.inference",
    "eval_resize": "simclr.augment", "nt_xent": "simclr.loss", "LARS": "simclr.optim",
    "SimCLRError": "simclr.errors",
}


def load_encoder(checkpoint: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The encoder f of any simclr checkpoint, in eval mode: images (B,3,S,S) -> h (B,D)."""
    from simclr.pretrained import load_encoder as _load

    return _load(checkpoint, device)


def __getattr__(name: str) -> Any:
    """A top-level name of :data:`_API`, or a module of the package, on first use."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")  # binds the attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


__all__ = ["LARS", "Config", "SimCLRError", "__version__", "build_config", "embed_folder",
           "eval_resize", "load_encoder", "nt_xent", "predict_folder", "pretrain"]
