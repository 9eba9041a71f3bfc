"""SimCLR: contrastive self-supervised pretraining of visual encoders (Chen et al. 2020).

Command line: ``simclr pretrain | embed | predict | export | neighbors | knn |
linear-eval | finetune | supervised | transform-probe | sweep | cache | info``.
Python API: ``simclr.loss.nt_xent``, ``simclr.optim.LARS``, ``simclr.augment``,
``simclr.models.build_encoder`` / ``build_head``, and :func:`load_encoder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    import torch


def load_encoder(checkpoint: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The encoder f of any simclr checkpoint, in eval mode: images (B,3,S,S) -> h (B,D)."""
    from simclr.pretrained import load_encoder as _load

    return _load(checkpoint, device)


__all__ = ["__version__", "load_encoder"]
