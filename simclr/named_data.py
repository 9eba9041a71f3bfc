"""The data sets named rather than given as a folder: scikit-learn's digits (the demo,
pretraining's set when no data is given) and torchvision's CIFAR-10/100 and STL-10,
each as an in-memory :class:`~simclr.source.ImageSource` (:mod:`simclr.data` opens
them by name, unless a folder of that name is there).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from simclr.config import DataConfig
from simclr.errors import SimCLRError
from simclr.folders import named_dataset
from simclr.launch import shell_quote
from simclr.source import ImageSource


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as uint8 (1797, 3, 32, 32) and labels (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # (a dependency removed since: not worth a traceback)
        raise SimCLRError(f"the digits demo needs scikit-learn, which cannot be imported "
                          f"({exc}): pip install scikit-learn") from None

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x.numpy(), digits.target.astype(np.int64)


def digits_source() -> ImageSource:
    """All 1797 digits (the pretraining set when no data is given)."""
    images, labels = _digits_images()
    return ImageSource("digits", labels, [str(d) for d in range(10)], array=images,
                       layout="nchw")


def is_digits(spec: str | os.PathLike | None) -> bool:
    """Whether a data spec names scikit-learn's digits (None or 'digits', unless a folder
    of that name is there)."""
    spec = None if spec is None else os.fspath(spec)
    return named_dataset(spec) and (spec is None or spec == "digits")


def digits_split(seed: int = 0, train_size: int = 1200) -> tuple[ImageSource, ImageSource]:
    """Deterministic (train, test) split of the digits for kNN / linear evaluation.

    A permutation of the 1797 images by ``np.random.default_rng(seed)``; the first
    ``train_size`` are the train split, the other 597 the test split (each sorted).
    """
    full = digits_source()
    perm = np.random.default_rng(seed).permutation(full.num_images)
    train_idx, test_idx = np.sort(perm[:train_size]), np.sort(perm[train_size:])
    return (full.subset(train_idx, "digits[train]"), full.subset(test_idx, "digits[test]"))


# Images in each named data set's training split as pretraining reads it (torchvision's
# CIFAR-10/100 train, STL-10 train+unlabeled: 5000 + 100000)
NAMED_TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000}


# Each named data set's class in torchvision.datasets
_TORCHVISION_CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "stl10": "STL10"}


def named_train_size(name: str, cfg: DataConfig) -> int:
    """The images a pretraining reads of the named data set ``name`` (a key of
    :data:`NAMED_TRAIN_SIZES`), its files checked present under ``cfg.root`` without
    reading them (a sweep checks every cell's before the first trains: STL-10's are
    2.7 GB); missing, it is opened as pretraining opens it, refused or downloaded."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASSES[name])
    folder = Path(cfg.root).expanduser() / str(getattr(cls, "base_folder", ""))
    files = [entry[0] for entry in getattr(cls, "train_list", [])]
    if files and all((folder / f).is_file() for f in files):
        return NAMED_TRAIN_SIZES[name]
    return open_named(name, cfg, train=True).num_images


def open_named(name: str, cfg: DataConfig, train: bool) -> ImageSource:
    """CIFAR-10/100 or STL-10 through torchvision; downloads only with cfg.download."""
    import torchvision.datasets as tvd

    root = Path(cfg.root).expanduser()
    cls_name = _TORCHVISION_CLASSES[name]
    if name == "stl10":
        split = "train+unlabeled" if train else "test"
        make = functools.partial(tvd.STL10, str(root), split=split)
    else:
        make = functools.partial(getattr(tvd, cls_name), str(root), train=train)
    try:
        ds = make(download=False)
    except RuntimeError:
        if not cfg.download:  # the fetch alone (pretrain --download would also train)
            fetch = (f"import torchvision; torchvision.datasets.{cls_name}({str(root)!r}, "
                     "download=True)")
            raise SimCLRError(f"{name} not found under {root}; fetch it once (needs internet) "
                              f"with: python -c {shell_quote(fetch)}; or pass an image "
                              "folder") from None
        try:
            ds = make(download=True)
        except Exception as exc:  # urllib, socket, checksum errors
            raise SimCLRError(f"could not download {name} into {root}: {exc} (offline? copy it "
                              "there by hand or pass an image folder)") from None
    split_name = f"{name}[{'train' if train else 'test'}]"
    if name == "stl10":
        return ImageSource(split_name, np.asarray(ds.labels), ds.classes,
                           array=np.ascontiguousarray(ds.data), layout="nchw")
    return ImageSource(split_name, np.asarray(ds.targets), ds.classes,
                       array=np.ascontiguousarray(ds.data), layout="nhwc")
