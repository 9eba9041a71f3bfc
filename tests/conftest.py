"""Shared fixtures: tiny generated image folders, so no test needs downloaded data."""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

# The signal tests need the default dispositions: a suite started in the background by a
# script (`pytest &`: SIGINT ignored) or under nohup (SIGHUP ignored) hands those on to
# every command it starts, which simclr then rightly leaves ignored
# (interrupts.signals_taken), and 17 tests of Ctrl-C and hangups failed.
signal.signal(signal.SIGINT, signal.default_int_handler)
if hasattr(signal, "SIGHUP"):
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

# simclr.knn binds simclr.features.extract_features when first imported: a test that
# patches that function (the kNN monitor's) while the monitor imports knn the first time
# left knn holding the patch, and a later test's kNN ran out of memory on purpose.
import simclr.knn  # noqa: E402, F401

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def _default_cache_in_tmp(_cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default decoded cache (``$XDG_CACHE_HOME``, else ``~/.cache``) in a folder of
    this test session: a command given no --cache-dir wrote into the user's own, which
    grew with every run of the suite and was shared by suites running at once; and a
    machine's XDG_CACHE_HOME changed what the tests of the default folder read."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))


def make_image_folder(root: Path, classes: int = 2, per_class: int = 12, side: int = 16,
                      seed: int = 0, ext: str = "png") -> Path:
    """An ImageFolder of coloured squares: class c is a distinct hue, with a random patch."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([255 * (c % 2), 127 * (c % 3), 255 * ((c + 1) % 2)], dtype=np.float64)
        for i in range(per_class):
            img = np.clip(base + rng.normal(0, 30, (side, side, 3)), 0, 255)
            y, x = rng.integers(0, side // 2, 2)
            img[y:y + side // 2, x:x + side // 2] = rng.integers(0, 256, 3)
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:03d}.{ext}")
    return root


def capital_split_sources(tmp_path: Path) -> tuple[Path, Any, Any]:
    """DIR holding Train/ (2 classes x 6) and Test/ (2 x 2) in capitals, read as its
    splits since 2026-12-06 (one folder of classes Test and Train before): (DIR, its
    training source, its test source) at 16 px, uncached decoding in this process."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    data = tmp_path / "data"
    make_image_folder(data / "Train", classes=2, per_class=6)
    make_image_folder(data / "Test", classes=2, per_class=2, seed=1)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0)
    return (data, open_source(str(data), cfg, train=True, image_size=16),
            open_source(str(data), cfg, train=False, image_size=16))


def unreadable_folder(root: Path, per_class: int, classes: int = 2) -> Path:
    """An ImageFolder layout whose files ``class_c/{i}.png`` are not images at all."""
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / f"class_{c}" / f"{i}.png").write_text("garbage")
    return root


@pytest.fixture
def one_thread():
    """The CPU is shared: one thread is faster than oversubscribed ones for tiny tensors."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cp1252_locale(monkeypatch):
    """Text files opened without an encoding get cp1252, Windows' default (here the
    locale's UTF-8 would hide such a file): as under that locale, ``open``,
    ``Path.read_text`` and ``Path.write_text`` use it where no encoding is named."""
    real = io.open

    def open_cp1252(file, mode="r", buffering=-1, encoding=None, *args, **kwargs):
        if "b" not in mode and encoding in (None, "locale"):
            encoding = "cp1252"
        return real(file, mode, buffering, encoding, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_cp1252)
    monkeypatch.setattr(io, "open", open_cp1252)  # (what pathlib calls)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture
def folders(tmp_path: Path):
    """(train, test) sources: 3 classes of 16-px squares, 8 and 3 images per class."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0)
    train_dir = make_image_folder(tmp_path / "train", classes=3, per_class=8, side=16)
    test_dir = make_image_folder(tmp_path / "test", classes=3, per_class=3, side=16, seed=1)
    return (open_source(str(train_dir), cfg, train=False, image_size=16),
            open_source(str(test_dir), cfg, train=False, image_size=16))


def tiny_flags(data: Path, out: Path, cache: str, **extra: object) -> dict[str, object]:
    """Settings of a pretraining run that takes seconds on a CPU."""
    flags: dict[str, object] = {
        "data.path": str(data), "data.cache_dir": cache, "out": str(out),
        "model.arch": "resnet18", "model.width": 0.125, "augment.size": 16,
        "augment.color_strength": 0.5, "augment.blur": False, "batch_size": 8,
        "epochs": 2, "precision": "fp32", "device": "cpu", "progress": False,
        "log_every": 1, "checkpoint_every": 2, "loss.temperature": 0.5,
        "optim.lr": 0.5, "data.workers": 0,
    }
    flags.update(extra)
    if flags.get("data.cache") == "off":  # (no cache kept: --cache-dir would be refused)
        del flags["data.cache_dir"]
    return flags


# ------------------------------------------------------------- encoders and sources


class ArraySource:
    """A minimal cached ImageSource over an in-memory uint8 array."""

    cached = True

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str]):
        self.images = torch.from_numpy(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = classes
        self.num_images = self.readable_images = len(images)  # (cached: all readable)
        self.paths = [f"img{i}.png" for i in range(len(images))]
        self.image_hw = tuple(images.shape[-2:])
        self.skipped = []

    def get_batch(self, indices):
        return self.images[torch.as_tensor(indices)]

    def batch(self, indices):
        images = self.get_batch(indices)
        return images, torch.ones(len(images))


def colour_source(n_per_class=8, classes=3, side=16, seed=0):
    """Class c = a distinct dominant colour channel plus noise (easy to separate)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    images = rng.integers(0, 60, (len(labels), 3, side, side))
    for i, c in enumerate(labels):
        images[i, c % 3] += 150 + 40 * (c // 3)
    return ArraySource(images.astype(np.uint8), labels, [f"c{c}" for c in range(classes)])


def tiny_encoder(seed=0):
    from simclr.models import build_encoder

    torch.manual_seed(seed)
    return build_encoder("resnet18", 0.125, cifar_stem=True)


def warmed_encoder():
    """Non-trivial BN running statistics and train mode, as after pretraining steps."""
    enc = tiny_encoder()
    enc.train()
    with torch.no_grad():
        for s in range(3):
            enc(torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(s)))
    return enc


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


requires_cifar = pytest.mark.skipif(
    not (SHARED_DATA / "cifar10" / "train").is_dir(),
    reason="CIFAR-10 image folder not found at ../shared/data/cifar10 (not shipped with the repo)",
)


def saved_resnet18(folder: Path, name: str, **model: object) -> tuple[Path, torch.nn.Module]:
    """A width-1 ResNet-18 pretraining checkpoint for 32-px views (``model``: further
    model settings, e.g. cifar_stem=True), its BatchNorm statistics non-trivial, saved
    as ``folder/name``; and the model it holds."""
    from simclr.checkpoint import save_checkpoint
    from simclr.models import build_model
    from simclr.settings import build_config

    flags = {"model.arch": "resnet18", "model.width": 1.0, "augment.size": 32,
             **{f"model.{key}": value for key, value in model.items()}}
    cfg = build_config(flags=flags)
    torch.manual_seed(0)
    net = build_model(cfg.model, 32)
    with torch.no_grad():
        net.train()(torch.rand(4, 3, 32, 32))
    save_checkpoint({"kind": "pretrain", "config": cfg.to_dict(), "model": net.state_dict()},
                    folder, name)
    return folder / name, net


def tiny_pretrained_run(root: Path) -> tuple[Path, Path, str]:
    """A 2-step pretraining saved in ``root/pre`` on a labeled folder of 2 x 8 images;
    returns (that train folder, a test folder of 2 x 2 images, the cache folder)."""
    from simclr.cli import main

    train = make_image_folder(root / "train", classes=2, per_class=8)
    test = make_image_folder(root / "test", classes=2, per_class=2, seed=1)
    cache = str(root / "cache")
    assert main(["pretrain", "--data", str(train), "--out", str(root / "pre"), "--arch",
                 "resnet18", "--width", "0.125", "--image-size", "16", "--batch-size", "8",
                 "--max-steps", "2", "--no-progress", "--workers", "0", "--cache-dir", cache,
                 "--precision", "fp32"]) == 0
    return train, test, cache


@contextmanager
def named_pipe(path):
    """A named pipe at ``path``. Should a reader wait on it (the bug this guards
    against), a writer comes after a few seconds and leaves at once: the reader sees an
    empty file and the test fails instead of hanging."""
    os.mkfifo(path)
    done = threading.Event()

    def rescue():
        while not done.wait(3):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting yet
                pass

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()


def signal_in_a_weakref_callback(signum: int) -> None:
    """Send this process ``signum`` from inside a weakref callback (importlib runs one
    at every import): os.kill runs the handler before it returns, so an exception the
    handler raises is raised there, where Python can only print it as ignored."""
    import weakref

    class Referent:
        pass

    referent = Referent()
    ref = weakref.ref(referent, lambda _ref: os.kill(os.getpid(), signum))
    del referent  # the callback runs now
    assert ref() is None


def stop_at(step: int):
    """An ``on_step`` hook of a training that asks it to stop (as a SIGTERM would) at
    ``step``."""
    def on_step(current, stop):
        if current == step:
            stop.requested = "SIGTERM"
    return on_step


def stopped_in(monkeypatch, module, name: str, signal: type[BaseException], call):
    """Run ``call()`` with ``module.name`` replaced by a stop (``signal``: KeyboardInterrupt
    for Ctrl-C, interrupts.Terminated for SIGTERM) at the moment it is called; returns the
    ExceptionInfo of that stop, which ``call`` must let through."""
    import pytest

    def stop(*_args, **_kwargs):
        raise signal

    with monkeypatch.context() as patched:
        patched.setattr(module, name, stop)
        with pytest.raises(signal) as info:
            call()
    return info


def recorded_test(monkeypatch, module, tmp_path: Path) -> dict[str, list]:
    """What a classifier's test (classify.evaluate_classifier) hands ``module``'s
    finish_results, recorded as ``given`` (scores, labels); ``blocks``: each batch of
    logits it ranked (joined: the whole (M, C) matrix); ``drawn``: the confusion matrix
    of the figure (not drawn)."""
    import simclr.classify as classify
    import simclr.results as results_module

    seen: dict[str, list] = {"given": [], "blocks": [], "drawn": []}
    finish, rank = module.finish_results, getattr(classify, "rank_rows", None)
    monkeypatch.setattr(module, "finish_results", lambda r, o, n, scores, labels, *a, **k: (
        seen["given"].append((scores, labels)), finish(r, o, n, scores, labels, *a, **k))[1])
    monkeypatch.setattr(classify, "rank_rows", lambda logits, labels: (
        seen["blocks"].append(logits.clone()), rank(logits, labels))[1], raising=False)
    monkeypatch.setattr(results_module, "save_confusion_figure",
                        lambda matrix, *a: seen["drawn"].append(matrix) or tmp_path / "c.png")
    return seen


def check_ranked_test(seen: dict[str, list], result: dict, results_file: Path,
                      classes: int) -> None:
    """What reached the results (:func:`recorded_test`) holds O(M) numbers, not the
    M x C logits, and gives what the whole matrix gives: accuracies, JSON, confusion."""
    from simclr.results import accuracy_summary, confusion_matrix, top1_predictions

    (scores, labels), = seen["given"]
    held = (scores.numel() if isinstance(scores, torch.Tensor)
            else sum(torch.as_tensor(v).numel() for v in vars(scores).values()))
    assert held <= 2 * len(labels) + 1 < len(labels) * classes, held
    full = torch.cat(seen["blocks"])
    assert len(seen["blocks"]) > 1 and full.shape == (len(labels), classes)
    assert {key: result[key] for key in ("top1", "top5")} == accuracy_summary(full, labels)
    assert json.loads(results_file.read_text())["top1"] == result["top1"]
    np.testing.assert_array_equal(seen["drawn"][0], confusion_matrix(
        labels, top1_predictions(full, labels), classes))


def worker_pools_started(monkeypatch) -> list:
    """The DataLoader iterators with workers started from here on (each one a pool of
    worker processes), recorded as they are made: how many times a code path started
    its decoding workers, and whether they are still alive."""
    from torch.utils.data import dataloader

    started: list = []
    init = dataloader._MultiProcessingDataLoaderIter.__init__

    def counted(self, loader):
        started.append(self)
        init(self, loader)

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__", counted)
    return started


def first_conv_formats(module: torch.nn.Module) -> list[tuple[bool, bool]]:
    """A record, filled as ``module`` runs, of (input, weight) channels_last-contiguous
    at each call of its first convolution (an evaluation's memory format)."""
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[tuple[bool, bool]] = []

    def hook(mod: torch.nn.Module, inputs: tuple) -> None:
        fmt = torch.channels_last
        seen.append((inputs[0].is_contiguous(memory_format=fmt),
                     mod.weight.is_contiguous(memory_format=fmt)))
    conv.register_forward_pre_hook(hook)
    return seen


def in_nchw(module: torch.nn.Module) -> bool:
    """Every 4-D weight of ``module`` in the default (NCHW) layout, as built."""
    return all(p.is_contiguous() for p in module.parameters() if p.dim() == 4)


class ScaledNet(torch.nn.Module):
    """A convolution and a ConvNeXt-style (C, 1, 1) layer_scale (torchvision's name)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer_scale = torch.nn.Parameter(torch.full((4, 1, 1), 1e-6))
        self.conv = torch.nn.Conv2d(2, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.layer_scale


def earlier_lars(model: ScaledNet) -> torch.optim.Optimizer:
    """The optimizer an earlier simclr built for ``model``, one step taken (momenta to
    save): layer_scale decayed and adapted with the weights (its grouping by hand)."""
    from simclr.optim import LARS

    opt = LARS([{"params": [model.layer_scale, model.conv.weight], "weight_decay": 1e-6,
                 "lars_exclude": False},
                {"params": [model.conv.bias], "weight_decay": 0.0, "lars_exclude": True}],
               lr=0.3, momentum=0.9, weight_decay=1e-6)
    for group in opt.param_groups:
        group["peak_lr"] = 0.3
    model(torch.rand(3, 2, 5, 5)).square().sum().backward()
    opt.step()
    return opt

