"""Tests for simclr.features: the frozen encoder's features and the batch iterator."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from simclr.features import close_workers, extract_features, indexed_features, iter_batches
from tests.conftest import (
    colour_source,
    first_conv_formats,
    in_nchw,
    make_image_folder,
    tiny_encoder,
    warmed_encoder,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_extract_features_uses_eval_mode_and_restores_flags():
    from simclr.augment import eval_resize

    enc = warmed_encoder()
    enc.layer1.eval()  # mixed flags must come back as they were
    flags = [m.training for m in enc.modules()]
    source = colour_source()
    feats, labels = extract_features(enc, source, 16, batch_size=5)
    assert feats.dtype == np.float32 and feats.shape == (24, enc.feature_dim)
    np.testing.assert_array_equal(labels, source.labels)
    assert [m.training for m in enc.modules()] == flags
    enc.eval()
    with torch.no_grad():
        direct = enc(eval_resize(source.images, 16))
    np.testing.assert_allclose(feats, direct.numpy(), rtol=1e-5, atol=1e-6)


def test_cached_and_uncached_folders_give_the_same_features(tmp_path):
    from simclr.config import DataConfig
    from simclr.data import open_source

    folder = make_image_folder(tmp_path / "imgs", classes=3, per_class=4, side=20)
    enc = tiny_encoder()
    feats = {}
    for cache in ("on", "off"):
        cfg = DataConfig(cache=cache, cache_dir=str(tmp_path / "cache"), workers=0,
                         load_size=20)  # both store the images at their own side
        source = open_source(str(folder), cfg, train=False, image_size=16)
        assert source.cached == (cache == "on")
        feats[cache] = extract_features(enc, source, 16, batch_size=5, workers=0)
    np.testing.assert_allclose(feats["on"][0], feats["off"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(feats["on"][1], feats["off"][1])


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("decode_on", [None, torch.device("cpu")])
@pytest.mark.parametrize(("size", "photo"), [(32, (300, 200)), (128, (120, 100)),
                                             (16, (300, 200)), (28, (100, 90)),
                                             (32, (48, 64)), (64, (48, 64))])
def test_a_small_picture_among_large_ones_is_evaluated_as_alone(tmp_path, cache, decode_on,
                                                                size, photo):
    """The evaluation takes a picture of side <= 32 whole (its central square resized:
    eval_resize of the file, the exported model's documented input); in a folder that
    also held larger photos it was stored as their central square and cropped: 7-12% off
    in features, another prediction for the same file by what else its folder held. Now
    the same to the 8-bit rounding every stored pixel has, cached or not, JPEG decoded
    on a device or not, photos larger than the transform's side or smaller (120 x 100 at
    128 px: stored at that side, 146, rather than at their own 100). Also at views of
    side <= 28, whose transform side (round(S / 0.875) <= 32) was stored at 33 px and
    resampled again: 4-9% off in features (a 32-px file at S = 28 was even cropped, not
    resized). And in a folder of small pictures alone (64 x 48 thumbnails), which were
    squeezed to 48 x 48 squares and cropped from them: 4-28% off."""
    from PIL import Image

    from simclr.augment import eval_resize
    from simclr.config import DataConfig
    from simclr.data import open_source
    from tests.image_files import rgb, save_image

    folder = tmp_path / "mixed"
    save_image(folder / "a_small.jpg", rgb(20, 12, 1))  # non-square, <= 32
    save_image(folder / "b_cifar.png", rgb(32, 32, 2))
    for k in range(3):
        save_image(folder / f"c_photo{k}.jpg", rgb(*photo, 3 + k))
    cfg = DataConfig(cache=cache, cache_dir=str(tmp_path / "cache"), workers=0)
    source = open_source(str(folder), cfg, train=False, image_size=size, evaluation=True,
                         unlabeled=True)
    side = round(size / 0.875)
    assert source.store == f"eval:{size}" and source.image_hw == (side, side)
    if decode_on is None:  # the features themselves, of an encoder that returns its input
        views, _, idx = indexed_features(nn.Flatten(), source, size, batch_size=8)
        by_name = {Path(source.paths[i]).name: torch.from_numpy(v)
                   for i, v in zip(idx.tolist(), views, strict=True)}
    else:  # (indexed_features decodes on its device; here on the one given)
        by_name = {}
        for idx, images, aspect in iter_batches(source, np.arange(source.num_images), 8,
                                                decode_on=decode_on, substitute=False):
            views = eval_resize(images, size, aspect, central=True)  # as indexed_features
            by_name.update({Path(source.paths[i]).name: v.flatten()
                            for i, v in zip(idx.tolist(), views, strict=True)})
    thumbnails = max(photo) <= 96  # (photos are decoded at reduced size: 1-2 levels off)
    for name in ("a_small.jpg", "b_cifar.png", *(("c_photo0.jpg",) if thumbnails else ())):
        want = eval_resize(Image.open(folder / name), size).flatten()
        assert (by_name[name] - want).abs().max() <= 0.5 / 255 + 1e-6, name


def test_a_feature_workers_death_is_one_line(tmp_path, monkeypatch):
    """A DataLoader worker that dies while features are extracted (torch's RuntimeError
    with its traceback) is a SimCLRError naming it."""
    import os

    import simclr.source
    from simclr.config import DataConfig
    from simclr.errors import SimCLRError

    parent, load_item = os.getpid(), simclr.source.load_item

    def load(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(3)
        return load_item(*args, **kwargs)

    folder = make_image_folder(tmp_path / "imgs", per_class=3)
    cfg = DataConfig(cache="off", cache_dir=str(tmp_path / "cache"), workers=1)
    from simclr.data import open_source

    source = open_source(str(folder), cfg, train=False, image_size=16)
    monkeypatch.setattr(simclr.source, "load_item", load)
    with pytest.raises(SimCLRError, match=r"^a data-loading worker process \(pid\S* \d+\) "
                                          "exited unexpectedly"):
        list(iter_batches(source, np.arange(source.num_images), 4))


def test_iter_batches_decodes_jpegs_on_a_device(tmp_path):
    """Evaluation reads uncached JPEGs the same way with the device decoder (nvJPEG on
    CUDA, chosen automatically there; the CPU stands in for it here)."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    folder = make_image_folder(tmp_path / "jpegs", per_class=5, side=40, ext="jpg")
    cfg = DataConfig(cache="off", cache_dir=str(tmp_path / "cache"), workers=0)
    source = open_source(str(folder), cfg, train=False, image_size=32)
    order = np.arange(source.num_images)[::-1].copy()
    plain = list(iter_batches(source, order, 4))
    on_device = list(iter_batches(source, order, 4, decode_on=torch.device("cpu")))
    assert [i.tolist() for i, _, _ in on_device] == [i.tolist() for i, _, _ in plain]
    for (_, a, aspect_a), (_, b, aspect_b) in zip(on_device, plain, strict=True):
        assert a.shape == b.shape and (a.int() - b.int()).abs().float().mean() < 3.0
        assert torch.equal(aspect_a, aspect_b)


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("decode_on", [None, torch.device("cpu")])
def test_iter_batches_skips_the_batches_a_resumed_epoch_has_done(tmp_path, cache, decode_on):
    """``skip``: the same shuffled epoch from its k-th batch, the earlier ones unread."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    folder = make_image_folder(tmp_path / "jpegs", per_class=5, side=20, ext="jpg")
    cfg = DataConfig(cache=cache, cache_dir=str(tmp_path / "cache"), workers=0)
    source = open_source(str(folder), cfg, train=False, image_size=16)
    order = np.arange(source.num_images)

    def batches(skip):
        return [(i.tolist(), x) for i, x, _ in iter_batches(
            source, order, 3, seed=[0, 2], drop_last=True, skip=skip, decode_on=decode_on)]

    whole = batches(0)
    assert len(whole) == 3  # 10 images: 3 whole batches of 3
    for skip in (1, 3, 5):
        later = batches(skip)
        assert [i for i, _ in later] == [i for i, _ in whole[skip:]]
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(later, whole[skip:], strict=True))


@pytest.mark.parametrize("shard", [(0, 1), (1, 2)])
def test_batch_order_is_the_order_iter_batches_reads(shard):
    """classifier_setup.augmented_batches draws each row's views for the index batch_order asked
    for (a replaced unreadable file comes back as another): it is iter_batches' own
    order, shuffled, cut to whole batches, a rank's share, the first ``skip`` left out."""
    from simclr.features import batch_order

    source = colour_source()  # 24 cached images
    indices = np.arange(3, source.num_images)  # 21: 3 whole batches of 6, 3 cut
    for skip in (0, 2):
        order, share = batch_order(indices, 6, [0, 1], True, shard, skip)
        read = [idx for idx, _, _ in iter_batches(source, indices, 6, seed=[0, 1],
                                                  drop_last=True, shard=shard, skip=skip)]
        assert share == 6 // shard[1] and all(len(idx) == share for idx in read)
        assert order.tolist() == torch.cat(read).tolist()
        assert len(order) == (3 - skip) * share and set(order) <= set(indices)


def test_batch_order_is_shuffled_by_its_seed_alone():
    """A seed shuffles the order (a pass without it reads the indices as given), the
    same seed alike on every call (a resumed epoch reads the batches it left off), and
    another seed otherwise (the next epoch's order)."""
    from simclr.features import batch_order

    indices = np.arange(5, 45)
    kept, _ = batch_order(indices, 8, None, False, (0, 1), 0)
    assert kept.tolist() == indices.tolist()
    first, _ = batch_order(indices, 8, [0, 0], False, (0, 1), 0)
    assert sorted(first.tolist()) == indices.tolist() and first.tolist() != indices.tolist()
    assert batch_order(indices, 8, [0, 0], False, (0, 1), 0)[0].tolist() == first.tolist()
    assert batch_order(indices, 8, [0, 1], False, (0, 1), 0)[0].tolist() != first.tolist()


@pytest.mark.parametrize("pin", [True, False])
def test_cached_batches_are_pinned_off_the_main_thread_when_asked(monkeypatch, pin):
    """A classifier training on CUDA (``pin``) moves each batch with ``non_blocking``:
    from pageable memory that copy waits for the GPU's previous step, so the cached
    rows are pinned too, as pretraining's loader pins them, in a background thread
    (pinning is a copy the step need not wait for). (A CPU-only torch cannot pin:
    ``pin_memory`` is counted instead.)"""
    import threading

    pinned = []

    def fake_pin(self, *args, **kwargs):
        pinned.append((tuple(self.shape), threading.current_thread()))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    source = colour_source()  # 24 cached images
    batches = list(iter_batches(source, np.arange(source.num_images), 5, seed=[0, 1],
                                drop_last=True, pin=pin))
    assert [tuple(x.shape) for _, x, _ in batches] == [(5, 3, 16, 16)] * 4
    assert [shape for shape, _ in pinned] == ([(5, 3, 16, 16)] * 4 if pin else [])
    assert all(thread is not threading.main_thread() for _, thread in pinned)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_file_is_left_out_of_the_features_not_replaced(tmp_path, workers):
    """Uncached folders (photos) replace an unreadable file by the next readable one in
    training; in evaluation each row stands for its file, so it is left out and said."""
    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.features import indexed_features

    root = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    (root / "class_0" / "broken.png").write_bytes(b"not a picture")
    (root / "class_0" / "-first.png").write_bytes(b"not a picture")  # (image 0 too)
    source = open_source(str(root), DataConfig(cache="off", workers=workers), train=False,
                         image_size=16)
    broken = source.paths.index(str(root / "class_0" / "broken.png"))
    assert source.paths.index(str(root / "class_0" / "-first.png")) == 0
    feats, labels, rows = indexed_features(tiny_encoder(), source, 16, batch_size=4)
    assert len(feats) == len(labels) == len(rows) == 6
    assert {0, broken}.isdisjoint(rows.tolist()) and len(set(rows.tolist())) == 6
    np.testing.assert_array_equal(labels, np.asarray(source.labels)[rows])
    assert [p for p, _ in source.skipped] == [source.paths[0], source.paths[broken]]


def test_features_that_are_not_finite_are_an_error_not_a_result():
    """A checkpoint with NaN weights gave a plausible-looking accuracy."""
    from simclr.errors import SimCLRError

    encoder = tiny_encoder()
    with torch.no_grad():
        next(encoder.parameters()).fill_(float("nan"))
    with pytest.raises(SimCLRError, match="the encoder's outputs are not finite"):
        extract_features(encoder, colour_source(), 16, batch_size=8)


def test_class_names_differing_only_in_unicode_normalisation_are_named_so(tmp_path):
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled_folders
    from tests.conftest import make_image_folder

    for split, form in (("train", "NFC"), ("test", "NFD")):
        folder = make_image_folder(tmp_path / split, classes=2, per_class=1)
        (folder / "class_0").rename(folder / unicodedata.normalize(form, "café"))
    with pytest.raises(SimCLRError, match=r"^--train and --test have different classes "
                                          r"\(café spelled with other Unicode characters in "
                                          r"each \(NFC / NFD normalisation\): rename one set "
                                          r"alike\)$"):
        check_labeled_folders(str(tmp_path / "train"), str(tmp_path / "test"),
                              ("--train", "--test"))


def test_a_test_folder_that_is_the_training_folder_is_noted(tmp_path, caplog):
    import logging

    from simclr.features import check_labeled_folders
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=1)
    (tmp_path / "link").symlink_to(folder)  # (the same folder under another name)
    for test in (tmp_path / "photos" / ".", tmp_path / "link"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            check_labeled_folders(str(folder), str(test), ("--train", "--test"))
        assert caplog.messages == ["note: --train and --test are the same folder: the top-1 "
                                   "measures images the classifier saw, not held-out ones"]


def test_a_test_folder_none_of_whose_images_decodes_is_refused_as_test(tmp_path):
    """--test is read after training (kNN monitor, linear-eval): a folder of corrupt
    files is refused before, named by its flag."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled_folders

    train = make_image_folder(tmp_path / "train", classes=2, per_class=1)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=40)  # (any count)
    for png in test.glob("*/*.png"):
        png.write_text("not an image")
    with pytest.raises(SimCLRError, match=r"^--test: none of the 80 images in .* could be "
                                          "read"):
        check_labeled_folders(str(train), str(test), ("--train", "--test"))


def test_each_folder_is_pre_checked_at_the_side_its_own_reading_decodes_it_at(tmp_path):
    """``draft(files, train)``: the test folder's JPEGs checked at the side its reading
    decodes them at (here whole 130-px ones, past --max-pixels), not the training one's."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled_folders

    train = make_image_folder(tmp_path / "train", classes=2, per_class=1)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=1, side=130, ext="jpg")
    with pytest.raises(SimCLRError, match=r"^--test: none of the 2 images .* exceeds the "
                                          "limit of 10000"):
        check_labeled_folders(str(train), str(test), ("--train", "--test"), max_pixels=10_000,
                              draft=lambda files, training: 8 if training else 130)


def test_labels_a_source_gives_are_checked_against_its_classes():
    """A label of -1 (an image without a class) and a class no image is labeled with
    (counted wrong in the top-1) are refused, whichever the caller's source."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled

    source = colour_source(n_per_class=2, classes=3)
    assert check_labeled(source) == 3
    source.labels = np.array([0, 0, 1, 1, 2, -1])
    with pytest.raises(SimCLRError, match=r"^--train data: images have no class labels "
                                          r"\(needs one sub-folder per class\)$"):
        check_labeled(source)
    source.labels = np.array([0, 0, 1, 1, 0, 1])
    with pytest.raises(SimCLRError, match=r"^--train data: no readable image in class "
                                          r"folder\(s\) c2$"):
        check_labeled(source)


def test_the_readability_checks_use_the_commands_max_pixels(tmp_path):
    """They opened every file at the default limit: a folder of scans that the user's
    --max-pixels lets through was refused as unreadable before knn, linear-eval and the
    kNN monitor ('exceeds the limit ... --max-pixels sets it', with it set), and one
    that it does not let through passed them, to fail later."""
    import shutil

    from simclr.errors import SimCLRError
    from simclr.features import check_labeled_folders

    big = make_image_folder(tmp_path / "big", classes=2, per_class=2, side=40)  # 1,600 px
    small = make_image_folder(tmp_path / "mixed", classes=2, per_class=2, side=16)  # 256 px
    for k in range(2):  # class_1 of "mixed" holds only 40 x 40 images
        shutil.copyfile(big / "class_1" / f"{k:03d}.png", small / "class_1" / f"{k:03d}.png")
    flags = ("--train", "--test")
    check_labeled_folders(str(big), str(big), flags, max_pixels=1600)
    with pytest.raises(SimCLRError, match=r"^--train: none of the 4 images in .* could be "
                                          r"read \(first: .*40x40 = 1600 pixels exceeds the "
                                          r"limit of 1000"):
        check_labeled_folders(str(big), str(big), flags, max_pixels=1000)
    check_labeled_folders(str(small), str(small), flags, max_pixels=1600)
    with pytest.raises(SimCLRError, match=r"no readable image in class folder\(s\) class_1 "
                                          r"\(first: .*000.png: 40x40 = 1600 pixels exceeds "
                                          r"the limit of 1000 .*\)$"):
        check_labeled_folders(str(small), str(small), flags, max_pixels=1000)
    # A --test class none of whose images reads: a top-1 of the other class alone, unsaid
    fine = make_image_folder(tmp_path / "fine", classes=2, per_class=2, side=16, seed=2)
    with pytest.raises(SimCLRError, match=r"^--test .*mixed: no readable image in class "
                                          r"folder\(s\) class_1 \(first: .*000.png: 40x40"):
        check_labeled_folders(str(fine), str(small), flags, max_pixels=1000)
    for file in (small / "class_1").iterdir():  # a class folder without files: warned
        file.unlink()  # of by the listing and kept, as before (a split lacking a class)
    check_labeled_folders(str(fine), str(small), flags, max_pixels=1000)


def test_the_readability_checks_open_each_training_file_once(tmp_path, monkeypatch):
    """The first readable training image was opened twice: by the check that some file
    decodes, then by the one that each class has one."""
    from collections import Counter

    from simclr import data
    from simclr.features import check_labeled_folders

    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=2)
    (folder / "class_0" / "000.png").write_text("not an image")  # opened, then the next
    opened: Counter = Counter()
    real = data.open_image

    def counted(path, *args, **kwargs):
        opened[path] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(data, "open_image", counted)
    check_labeled_folders(str(folder), None, ("--train", "--test"))
    assert sorted(Path(p).relative_to(folder).as_posix() for p in opened) == [
        "class_0/000.png", "class_0/001.png", "class_1/000.png", "class_2/000.png"]
    assert set(opened.values()) == {1}


def test_an_evaluation_source_gives_features_at_another_view_side(tmp_path):
    """A source stored for views of side 32 (squares of eval_side(32) = 37) still gives
    features at 24: the whole evaluation transform on its squares, close to the file's
    own (the centre crop of the stored squares alone would be 32 px, not 24)."""
    from PIL import Image

    from simclr.augment import eval_resize
    from simclr.config import DataConfig
    from simclr.data import open_source
    from tests.image_files import save_image, smooth_rgb

    for k in range(3):
        save_image(tmp_path / "photos" / f"{k}.png", smooth_rgb(60, 80, k))
    cfg = DataConfig(cache="off", cache_dir=str(tmp_path / "cache"), workers=0)
    source = open_source(str(tmp_path / "photos"), cfg, train=False, image_size=32,
                         evaluation=True, unlabeled=True)
    assert source.store == "eval:32" and source.image_hw == (37, 37)
    views, _, idx = indexed_features(nn.Flatten(), source, 24, batch_size=8)
    assert views.shape == (3, 3 * 24 * 24)
    for row, i in zip(views, idx.tolist(), strict=True):
        want = eval_resize(Image.open(source.paths[i]), 24).flatten().numpy()
        assert np.abs(row - want).mean() < 0.05  # (resampled twice: 37 px, then 27)


@pytest.mark.parametrize("decode_on", [None, torch.device("cpu")])
def test_kept_workers_give_the_batches_of_a_loader_per_epoch(tmp_path, decode_on):
    """``keep_workers`` (a classifier's training: one worker pool for all its epochs)
    yields each epoch's batches exactly as a DataLoader of its own did, a resumed
    epoch's (``skip``) and an unreadable file's substitute included."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    folder = make_image_folder(tmp_path / "jpegs", per_class=5, side=20, ext="jpg")
    (folder / "class_0" / "001.jpg").write_bytes(b"not a picture")
    cfg = DataConfig(cache="off", cache_dir=str(tmp_path / "cache"), workers=0)
    source = open_source(str(folder), cfg, image_size=16)
    order = np.arange(source.num_images)

    def epochs(keep):
        return [list(iter_batches(source, order, 3, seed=[0, epoch], drop_last=True,
                                  workers=2, skip=epoch % 2, decode_on=decode_on,
                                  keep_workers=keep))
                for epoch in range(3)]

    fresh, kept = epochs(False), epochs(True)
    assert len(source._loaders) == 1 and [len(e) for e in kept] == [3, 2, 3]
    for new, old in zip(kept, fresh, strict=True):
        assert len(new) == len(old)
        for a, b in zip(new, old, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert [Path(p).name for p, _ in source.skipped] == ["001.jpg"]
    close_workers(source)  # (the caller's end of the kept pool)
    assert not source._loaders
    close_workers(colour_source())  # a cached source has none to end


def _children(pid: int) -> list[int]:
    """The running processes whose parent is ``pid``."""
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _status(int(entry.name))[1:] == (str(pid),)]


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (not ended, nor a zombie: ended, not yet reaped)."""
    return _status(pid) != ()


def _status(pid: int) -> tuple[str, ...]:
    """(state, parent pid) of process ``pid`` from /proc; () where it ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ()
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return () if state == "Z" else (state, ppid)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_ctrl_c_ends_an_evaluation_pass_without_waiting_for_its_workers_batches(tmp_path):
    """A command that stops at once must not wait for its loader workers (which ignore
    SIGINT, for a training's checkpoint) to finish decoding a batch of large photos:
    torch waited up to 5 s for each, then sent the SIGTERM they ignore and waited 5 s
    more. Here each worker's batch is 32 photos of 6 megapixels (seconds to decode)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import saved_resnet18
    from tests.image_files import rgb, save_image

    checkpoint, _ = saved_resnet18(tmp_path, "pre.pt", width=0.125)
    photo = save_image(tmp_path / "photo.jpg", rgb(2000, 3000), quality=90)
    (tmp_path / "photos").mkdir()
    for i in range(64):  # one file's decoding, 64 times (links: no disk for each)
        os.link(photo, tmp_path / "photos" / f"{i:03d}.jpg")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simclr", "embed", "--checkpoint", str(checkpoint), "--data",
         str(tmp_path / "photos"), "--out", str(tmp_path / "f.npz"), "--workers", "2",
         "--batch-size", "32", "--cache-dir", str(tmp_path / "cache"), "--precision", "fp32",
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(workers := _children(proc.pid)) < 2:  # the pass has started its workers
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)  # each is decoding its first batch
    pressed = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - pressed
    assert proc.returncode == 130 and err.endswith("simclr embed: interrupted\n"), err
    assert took < 8, f"{took:.1f} s to stop"  # (it took 10 s or more: 5 s per worker)
    assert not [pid for pid in workers if _running(pid)]  # (none left behind)
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_feature_pass_runs_in_channels_last_and_leaves_the_encoder_as_given(channels_last):
    """channels_last images met channels_last weights by default (1.5-2x faster bf16 on
    a CPU), and the caller's NCHW encoder is NCHW again afterwards; the features are the
    same up to float rounding either way."""
    enc, source = tiny_encoder(), colour_source(n_per_class=3)
    seen = first_conv_formats(enc)
    kwargs = {} if channels_last else {"channels_last": False}
    feats, _ = extract_features(enc, source, 16, batch_size=4, **kwargs)
    assert seen and set(seen) == {(channels_last, channels_last)}
    assert in_nchw(enc)
    other, _ = extract_features(enc, source, 16, batch_size=4, channels_last=not channels_last)
    np.testing.assert_allclose(feats, other, rtol=1e-4, atol=1e-5)  # (fp32: rounding only)


def test_a_channels_last_model_stays_in_channels_last():
    """A training's model (already channels_last, as the kNN monitor's) is not changed."""
    enc = tiny_encoder().to(memory_format=torch.channels_last)
    extract_features(enc, colour_source(n_per_class=2), 16, batch_size=4)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in enc.parameters() if p.dim() == 4)


def test_a_bf16_pass_over_chosen_indices_gives_their_float32_features_and_labels():
    """``precision`` autocasts the encoder (App. B.5's eval transform unchanged) and the
    features come back float32; ``indices`` picks the images and their order, each row
    keeping its own image's label. Reference: the encoder run by hand under bf16
    autocast on the same images."""
    from simclr.augment import eval_resize

    enc, source = warmed_encoder(), colour_source()
    order = np.array([17, 2, 9, 5, 22])
    feats, labels, idx = indexed_features(enc, source, 16, batch_size=len(order),
                                          precision="bf16", channels_last=False,
                                          indices=order)
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(labels, np.asarray(source.labels)[order])
    assert feats.dtype == np.float32 and feats.shape == (len(order), enc.feature_dim)
    enc.eval()
    x = eval_resize(source.images[torch.from_numpy(order)], 16)
    with torch.no_grad():
        exact = enc(x).numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = enc(x).float().numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)
    assert np.abs(exact - ref).max() > 1e-3  # (bf16 is told apart from fp32 here)


@pytest.mark.parametrize("processes", [2, 3])
def test_the_shards_of_all_ranks_side_by_side_are_the_one_process_order(processes):
    """``shard`` (rank, processes): rank r takes columns [r*b, (r+1)*b) of every global
    batch of 6 (b = 6 / processes), so the ranks' shares laid side by side, batch by
    batch, are the one process's batches (Sec. 2.2: a large batch split across devices)."""
    from simclr.features import batch_order

    indices = np.arange(3, 27)  # 24: 4 global batches of 6
    whole, _ = batch_order(indices, 6, [4, 1], True, (0, 1), 1)
    shares = [batch_order(indices, 6, [4, 1], True, (r, processes), 1) for r in range(processes)]
    assert all(share == 6 // processes for _, share in shares)
    side_by_side = np.hstack([order.reshape(-1, share) for order, share in shares])
    assert side_by_side.tolist() == whole.reshape(-1, 6).tolist()


def test_one_image_whose_features_are_not_finite_is_an_error_too():
    """One image's infinite output (an overflow on that image alone), in the last
    batch after finite ones, is refused as all-NaN weights are: its row would be ranked
    and averaged into a plausible accuracy."""
    from simclr.errors import SimCLRError

    class Overflowing(nn.Module):
        """h = the image's mean per channel (B, 3); inf where every channel is white."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.mean(dim=(2, 3))
            return torch.where((h > 0.99).all(dim=1, keepdim=True), torch.inf, h)

    source = colour_source()
    feats, _ = extract_features(Overflowing(), source, 16, batch_size=8)
    assert np.isfinite(feats).all()
    source.images[-1] = 255  # (the only all-white image: the last batch's last row)
    with pytest.raises(SimCLRError, match="the encoder's outputs are not finite"):
        extract_features(Overflowing(), source, 16, batch_size=8)


def test_a_labeled_pair_needs_two_classes_named_alike_in_the_same_order():
    """One class is no classification (refused; two pass); a test set with the same
    names in another order would map labels to other classes (refused, said so)."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled

    with pytest.raises(SimCLRError, match=r"^--train data: needs at least 2 classes, found 1$"):
        check_labeled(colour_source(n_per_class=2, classes=1))
    assert check_labeled(colour_source(n_per_class=2, classes=2)) == 2
    train, test = colour_source(n_per_class=2), colour_source(n_per_class=2)
    test.classes = ["c1", "c0", "c2"]
    with pytest.raises(SimCLRError, match=r"^--train and --test have different classes "
                                          r"\(same names in a different order\)$"):
        check_labeled(train, test)
    for classes, detail in ((["c0", "c1"], "only in --train: c2"),
                            (["c0", "c1", "x"], "only in --train: c2; only in --test: x")):
        test.classes = classes
        with pytest.raises(SimCLRError, match=rf"^--train and --test have different classes "
                                              rf"\({detail}\)$"):
            check_labeled(train, test)


def test_a_message_lists_five_names_and_counts_the_rest():
    """Five classes without a readable image are named in full; a sixth is counted."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled

    source = colour_source(n_per_class=1, classes=7)
    source.labels = np.array([0, 0, 0, 1, 1, 1, 1])  # c2..c6 without images
    with pytest.raises(SimCLRError, match=r"folder\(s\) c2, c3, c4, c5, c6$"):
        check_labeled(source)
    source.labels = np.array([0, 0, 0, 0, 0, 0, 0])  # c1..c6
    with pytest.raises(SimCLRError, match=r"folder\(s\) c1, c2, c3, c4, c5 and 1 more$"):
        check_labeled(source)


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_test_folder_that_is_not_there_is_named_by_its_flag(tmp_path, kind):
    """A --test folder that is missing (or a file) is refused under its flag before any
    training, as the --train one is."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled_folders

    train = make_image_folder(tmp_path / "train", classes=2, per_class=1)
    test = tmp_path / "held_out"
    if kind == "a file":
        test.write_text("not a folder")
    words = "is not a folder" if kind == "a file" else "folder not found"
    with pytest.raises(SimCLRError, match=rf"^--knn-test: .*{words}"):
        check_labeled_folders(str(train), str(test), ("--knn-train", "--knn-test"))


def test_a_data_set_root_given_for_both_reads_its_train_and_its_test_split(tmp_path, caplog):
    """``train_split``: the training folder's train/ split is read for training, and the
    same root given as the test folder is read for its test/ split, not train/ again."""
    import logging

    from simclr.features import check_labeled_folders

    make_image_folder(tmp_path / "root" / "train", classes=2, per_class=1)
    make_image_folder(tmp_path / "root" / "test", classes=2, per_class=1, seed=1)
    root = str(tmp_path / "root")
    with caplog.at_level(logging.WARNING):
        listings = check_labeled_folders(root, root, ("--train", "--test"), train_split=True)
    assert Path(listings.train.root).name == "train"
    assert Path(listings.test.root).name == "test"
    assert not [m for m in caplog.messages if "same folder" in m]


def test_a_path_or_a_source_without_classes_is_refused_in_one_line(tmp_path):
    """The library's callers: a folder's path where an opened source belongs, or a
    source whose images carry no class names, are one-line errors, not tracebacks."""
    from simclr.errors import SimCLRError
    from simclr.features import check_labeled

    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=1)
    for given in (str(folder), folder):
        with pytest.raises(SimCLRError, match=r"^--train: give an opened image source, "
                                              r"e\.g\. simclr\.data\.open_source\("):
            check_labeled(given)
    with pytest.raises(SimCLRError, match=r"^--test: give an opened image source"):
        check_labeled(colour_source(), folder)
    source = colour_source(n_per_class=1, classes=2)
    source.classes = None
    with pytest.raises(SimCLRError, match=r"^--train data: images have no class labels"):
        check_labeled(source)
    source = colour_source(n_per_class=1, classes=2)
    source.labels = np.array([], dtype=np.int64)  # (classes, but no image labeled)
    with pytest.raises(SimCLRError, match=r"^--train data: images have no class labels"):
        check_labeled(source)


def test_a_source_without_a_cached_flag_is_read_as_a_cached_one():
    """A library caller's own source that only gathers rows (``batch``) is read
    batch by batch through it, as a cached one."""
    rows = colour_source(n_per_class=2, classes=2)

    class Rows:
        num_images, labels, classes = rows.num_images, rows.labels, rows.classes

        def batch(self, idx):
            return rows.batch(idx)

    got = list(iter_batches(Rows(), np.arange(4), 3))
    assert [b[0].tolist() for b in got] == [[0, 1, 2], [3]]
    assert torch.equal(torch.cat([b[1] for b in got]), rows.images)


def test_a_batch_of_only_unreadable_files_is_not_yielded_empty(tmp_path):
    """In evaluation (no ``substitute``) a batch all of whose files fail to decode
    yields nothing, not a batch of no images for the encoder."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    root = make_image_folder(tmp_path / "data", classes=2, per_class=2)
    (root / "class_0" / "broken.png").write_bytes(b"not a picture")
    source = open_source(str(root), DataConfig(cache="off", workers=0), train=False,
                         image_size=16)
    broken = source.paths.index(str(root / "class_0" / "broken.png"))
    got = [idx.tolist() for idx, _, _ in iter_batches(source, np.arange(5), 1, workers=0,
                                                      substitute=False)]
    assert got == [[i] for i in range(5) if i != broken]


@pytest.mark.parametrize("size", [0, 2.5])
def test_a_batch_size_that_is_no_count_is_a_one_line_error(size):
    from simclr.errors import SimCLRError

    with pytest.raises(SimCLRError, match=rf"^--batch-size must be a positive whole number, "
                                          rf"got {size}$"):
        extract_features(tiny_encoder(), colour_source(), 16, batch_size=size)


def test_an_epoch_stopped_early_ends_the_kept_workers_and_the_next_reads_whole(tmp_path):
    """``keep_workers``: an epoch its caller stops early (an error, Ctrl-C) ends the
    half-read pool; the next epoch starts new workers and reads all its batches."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    folder = make_image_folder(tmp_path / "photos", per_class=4, side=20)
    source = open_source(str(folder), DataConfig(cache="off", workers=0), image_size=16)
    order = np.arange(source.num_images)

    def epoch():
        return iter_batches(source, order, 2, seed=0, workers=2, keep_workers=True)

    stopped = epoch()
    next(stopped)
    stopped.close()
    assert not source._loaders
    whole = [idx.tolist() for idx, _, _ in epoch()]
    fresh = [idx.tolist() for idx, _, _ in iter_batches(source, order, 2, seed=0, workers=0)]
    assert whole == fresh
    close_workers(source)


def test_a_named_pass_says_how_far_it_got(monkeypatch, capsys):
    """``progress``: off a terminal the pass says its count of images done, the last
    line the whole pass's."""
    from simclr import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # (a line per batch)
    extract_features(tiny_encoder(), colour_source(), 16, batch_size=8, progress="features")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "features: 8/24 images", "features: 16/24 images", "features: 24/24 images"]


def test_a_pass_over_no_images_is_a_one_line_error():
    from simclr.errors import SimCLRError

    with pytest.raises(SimCLRError, match=r"^data: no images to evaluate$"):
        indexed_features(tiny_encoder(), colour_source(), 16, indices=np.array([], np.int64))


def test_decoding_workers_are_refused_in_a_process_importing_its_parents_script(
        tmp_path, monkeypatch):
    """Under the spawn start method a script calling simclr outside its main guard runs
    again in each worker: a batch pass that would start workers there is a one-line
    error, not an endless chain of processes."""
    import multiprocessing

    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.errors import SimCLRError

    folder = make_image_folder(tmp_path / "photos", per_class=2)
    source = open_source(str(folder), DataConfig(cache="off", workers=0), image_size=16)
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(SimCLRError, match="called again by a worker process"):
        next(iter_batches(source, np.arange(4), 2, workers=2))


def test_a_decoder_that_is_none_of_the_three_is_refused(tmp_path):
    """`decoder=` of the Python API (as --decoder's auto, pil or device): 'gpu' decoded
    with PIL in silence, since only 'device' and 'auto' were looked for."""
    from simclr.config import DataConfig
    from simclr.data import open_source

    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=2)
    source = open_source(str(folder), DataConfig(cache="off", workers=0), train=False,
                         image_size=16)
    encoder = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for decoder in ("auto", "pil", "device"):
        assert extract_features(encoder, source, 16, decoder=decoder)[0].shape == (4, 3)
    with pytest.raises(ValueError, match="^decoder must be one of auto, pil, device, got 'gpu'$"):
        extract_features(encoder, source, 16, decoder="gpu")


def test_a_stored_square_of_a_wide_picture_is_evaluated_as_that_picture():
    """A source storing whole pictures squeezed into squares (store 'full', e.g. a
    training folder the kNN monitor reads) gets each picture's own centre crop: its
    aspect is passed on to the evaluation transform, not taken for 1."""
    from simclr.augment import eval_resize
    from simclr.source import ImageSource

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    aspect = np.array([2.0, 1.0, 0.5, 1.5], dtype=np.float32)
    source = ImageSource("wide", np.array([0, 1, 0, 1]), ["a", "b"], array=array, aspect=aspect)
    feats, _ = extract_features(nn.Flatten(), source, 40, batch_size=3)
    images = torch.from_numpy(array).permute(0, 3, 1, 2)
    want = eval_resize(images, 40, torch.from_numpy(aspect)).flatten(1).numpy()
    np.testing.assert_allclose(feats, want, atol=1e-6)
    assert not np.allclose(feats[0], eval_resize(images[:1], 40).flatten(1).numpy()[0], atol=1e-2)
