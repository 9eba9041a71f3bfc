"""Tests for simclr.loader: epoch order, ranks, resume, worker decoding."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.data import open_source
from simclr.decode import load_square
from simclr.errors import SimCLRError
from simclr.loader import BatchLoader, epoch_permutation
from simclr.source import ImageSource
from tests.image_files import corrupt_jpeg_bytes, data_cfg, jpeg_bytes, rgb, save_image, smooth_rgb

# ---------------------------------------------------------------------------- loader


def _indexed_source(n: int = 50) -> ImageSource:
    """Image i is filled with the value i, so every batch can be checked."""
    array = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 3))
    return ImageSource("indexed", np.arange(n) % 3, ["a", "b", "c"], array=np.array(array))


def _epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(i.clone(), im.clone()) for i, im, _ in loader]


def test_loader_is_deterministic_and_covers_the_epoch(tmp_path):
    src = _indexed_source()
    a = _epoch(BatchLoader(src, 8, seed=3, epoch=1))
    b = _epoch(BatchLoader(src, 8, seed=3, epoch=1))
    c = _epoch(BatchLoader(src, 8, seed=3, epoch=2))
    assert len(a) == len(BatchLoader(src, 8, seed=3, epoch=1)) == 50 // 8
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c, strict=True))
    seen = torch.cat([i for i, _ in a])
    assert seen.dtype == torch.int64 and len(set(seen.tolist())) == 48  # drop_last
    assert seen.tolist() == epoch_permutation(50, 3, 1)[:48].tolist()
    for idx, images in a:
        assert images.shape == (8, 3, 4, 4) and images.dtype == torch.uint8
        assert (images[:, :, 0, 0] == idx[:, None].to(torch.uint8)).all()


def test_two_ranks_split_every_global_batch(tmp_path):
    src = _indexed_source()
    whole = _epoch(BatchLoader(src, 12, seed=0, epoch=5))
    r0 = _epoch(BatchLoader(src, 6, seed=0, epoch=5, rank=0, world_size=2))
    r1 = _epoch(BatchLoader(src, 6, seed=0, epoch=5, rank=1, world_size=2))
    assert len(whole) == len(r0) == len(r1) == 4
    for (i, im), (i0, im0), (i1, im1) in zip(whole, r0, r1, strict=True):
        assert torch.equal(torch.cat([i0, i1]), i)
        assert torch.equal(torch.cat([im0, im1]), im)


def test_a_last_partial_global_batch_gives_every_rank_a_share():
    """10 images, 2 ranks of 4, no drop_last: the second global batch holds images 8
    and 9, one for each rank (a rank with an empty batch would stall the others)."""
    src = _indexed_source(10)
    ranks = [BatchLoader(src, 4, 0, 0, rank=r, world_size=2, drop_last=False, shuffle=False)
             for r in range(2)]
    assert [[i.tolist() for i, _ in _epoch(loader)] for loader in ranks] == [
        [[0, 1, 2, 3], [8]], [[4, 5, 6, 7], [9]]]


def test_a_resume_at_the_end_of_an_epoch_yields_nothing_and_past_it_is_refused():
    src = _indexed_source(16)
    done = BatchLoader(src, 8, seed=0, epoch=0, start_step=2)
    assert len(done) == 2 and _epoch(done) == []
    with pytest.raises(SimCLRError, match="cannot resume at step 3 of an epoch of 2 steps"):
        BatchLoader(src, 8, seed=0, epoch=0, start_step=3)
    with pytest.raises(SimCLRError, match="cannot resume at step -1 of an epoch of 2 steps"):
        BatchLoader(src, 8, seed=0, epoch=0, start_step=-1)


def test_resume_yields_the_remaining_batches(tmp_path):
    src = _indexed_source()
    full = _epoch(BatchLoader(src, 4, seed=1, epoch=0))
    rest = _epoch(BatchLoader(src, 4, seed=1, epoch=0, start_step=9))
    assert len(rest) == len(full) - 9
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[9:], rest, strict=True))
    with pytest.raises(SimCLRError, match="cannot resume at step 13"):
        BatchLoader(src, 4, seed=1, epoch=0, start_step=13)


def test_loader_without_drop_last_and_without_shuffle(tmp_path):
    src = _indexed_source(10)
    batches = _epoch(BatchLoader(src, 4, 0, 0, drop_last=False, shuffle=False))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(BatchLoader(_indexed_source(8), 4, 0, 0, drop_last=False)) == 2  # (no empty 3rd)


def test_batch_larger_than_data_is_a_user_error():
    with pytest.raises(SimCLRError, match="larger than the data set"):
        BatchLoader(_indexed_source(10), 8, 0, 0, world_size=2)


def test_loader_stops_its_thread_and_forwards_errors(monkeypatch):
    src = _indexed_source()
    it = iter(BatchLoader(src, 4, 0, 0))
    next(it)
    it.close()
    assert not any(t.name == "simclr-prefetch" for t in threading.enumerate())

    def broken(indices):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(src, "batch", broken)
    with pytest.raises(RuntimeError, match="disk gone"):
        list(BatchLoader(src, 4, 0, 0))


def test_uncached_source_decodes_in_workers_and_survives_bad_files(tmp_path):
    root = tmp_path / "photos"
    for k in range(6):
        save_image(root / f"{k}.jpg", rgb(120, 100, k), quality=90)
    (root / "2.jpg").write_bytes(jpeg_bytes(120, 100)[:900])  # truncated
    src = open_source(str(root), data_cfg(tmp_path), image_size=32)
    assert not src.cached and src.image_hw == (37, 37)  # round(32 * 1.15)
    for epoch in range(2):  # persistent workers: one DataLoader for both epochs
        batches = _epoch(BatchLoader(src, 3, seed=0, epoch=epoch, workers=1))
        idx, images = torch.cat([i for i, _ in batches]), torch.cat([b for _, b in batches])
        assert sorted(idx.tolist()) == list(range(6))  # 2's row: its own index (its views),
        assert torch.equal(images[idx == 2], images[idx == 3])  # image 3 in its place
        assert batches[0][1].shape == (3, 3, 37, 37)
    assert len(src._loaders) == 1
    assert [(Path(p).name, "truncated" in r) for p, r in src.skipped] == [("2.jpg", True)]
    expected, aspect = load_square(str(root / "3.jpg"), 37)
    assert aspect == 100 / 120  # rgb(120, 100) is 120 rows x 100 columns: that picture
    for decode_on in (None, torch.device("cpu")):  # PIL in workers, or bytes decoded here
        loader = BatchLoader(src, 3, seed=0, epoch=0, workers=0, decode_device=decode_on)
        aspects = torch.cat([a for _, _, a in loader])
        assert aspects.dtype == torch.float32 and torch.allclose(aspects, torch.tensor(100 / 120))
    assert (src.get_batch([3])[0].permute(1, 2, 0).numpy() == expected).all()


@pytest.mark.parametrize("decode_on", [None, torch.device("cpu")])
def test_an_unreadable_files_replacement_gets_views_of_its_own(tmp_path, decode_on):
    """An uncached folder's unreadable file is replaced by the next readable image,
    which came with that image's index: views depend only on (seed, epoch, index,
    view), so with the image itself in the batch both rows got bit-identical views (a
    negative identical to its anchor). The row keeps the index asked for: the image in
    its place, views drawn for that index. (A file only the decoder finds corrupt, 4,
    is replaced on the device's path after the workers' read.)"""
    from simclr.augment import TwoViewAugment
    from simclr.config import AugmentConfig

    root = tmp_path / "photos"
    for k in range(6):
        save_image(root / f"{k}.jpg", smooth_rgb(40, 40, k), quality=90)
    (root / "1.jpg").write_bytes(b"not an image")
    (root / "4.jpg").write_bytes(corrupt_jpeg_bytes())
    src = open_source(str(root), data_cfg(tmp_path, cache="off", load_size=16))
    augment = TwoViewAugment(AugmentConfig(size=16), seed=0)
    for epoch in range(2):
        loader = BatchLoader(src, 6, seed=0, epoch=epoch, workers=0, decode_device=decode_on)
        [(idx, images, aspect)] = list(loader)
        assert idx.tolist() == loader.batch_indices(0).tolist()  # (1 and 4 among them)
        views = augment.stacked(images, idx, epoch, aspect)
        for bad, real in ((1, 2), (4, 5)):
            a, b = idx.tolist().index(bad), idx.tolist().index(real)
            assert (images[a].int() - images[b].int()).abs().float().mean() < 2.0
            assert not torch.equal(views[a], views[b])
            assert not torch.equal(views[6 + a], views[6 + b])
    assert sorted(Path(p).name for p, _ in src.skipped) == ["1.jpg", "4.jpg"]
    src.close()


def test_an_epoch_stopped_early_ends_its_workers_and_the_next_starts_new_ones(tmp_path):
    """The run stopping mid-epoch (a signal, its last step) ends the decoding workers
    then, not when the generator is collected; a later epoch of the same source then
    starts new ones (reusing the stopped iterator raised 'Queue is closed')."""
    root = tmp_path / "photos"
    for k in range(6):
        save_image(root / f"{k}.jpg", rgb(120, 100, k), quality=90)  # (not cached)
    src = open_source(str(root), data_cfg(tmp_path), image_size=32)
    batches = iter(BatchLoader(src, 3, seed=0, epoch=0, workers=1))
    next(batches)
    workers = list(src._loaders.values())[0][0]._iterator._workers
    assert all(w.is_alive() for w in workers)
    batches.close()
    assert not any(w.is_alive() for w in workers) and not src._loaders
    assert len(_epoch(BatchLoader(src, 3, seed=0, epoch=1, workers=1))) == 2
    src.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_decoding_on_the_device_gives_the_worker_batches(tmp_path, workers):
    """decode_device: workers only read plain JPEGs; the rest (PNG, CMYK) they decode,
    and files only the decoder finds corrupt go through PIL here. Same indices, same
    substitutions, same skipped list, pixels equal up to resampling."""
    root = tmp_path / "photos"
    for k in range(8):
        save_image(root / f"{k}.jpg", smooth_rgb(120 + 8 * k, 100, k), quality=90)
    save_image(root / "8.png", smooth_rgb(50, 60, 8))
    (root / "3.jpg").write_bytes(jpeg_bytes(120, 100)[:900])  # truncated: refused by a worker
    (root / "5.jpg").write_bytes(corrupt_jpeg_bytes())  # only decoding finds it
    Image.new("CMYK", (90, 70), (0, 255, 255, 0)).save(root / "6.jpg")

    def run(decode_device):
        src = open_source(str(root), data_cfg(tmp_path), image_size=32)
        batches = _epoch(BatchLoader(src, 3, seed=1, epoch=0, workers=workers,
                                     decode_device=decode_device))
        return batches, sorted((Path(p).name, r) for p, r in src.skipped)

    pil, pil_skipped = run(None)
    dev, dev_skipped = run(torch.device("cpu"))
    assert [i.tolist() for i, _ in dev] == [i.tolist() for i, _ in pil]
    assert dev_skipped == pil_skipped and [n for n, _ in dev_skipped] == ["3.jpg", "5.jpg"]
    for (_, a), (_, b) in zip(dev, pil, strict=True):
        assert a.shape == b.shape == (3, 3, 37, 37) and a.dtype == torch.uint8
        assert (a.int() - b.int()).abs().float().mean() < 2.0


@pytest.mark.parametrize("workers", [0, 1])
def test_reading_files_leaves_torchs_global_generator_alone(tmp_path, workers):
    """A DataLoader drew its workers' base seed from torch's global generator at each
    iter(), which stochastic depth (EfficientNet, ConvNeXt, Swin) draws from too: the
    cache, the worker count, a kNN monitor's loader or a resume changed the weights."""
    import numpy as np

    from simclr.features import iter_batches

    for k in range(8):
        save_image(tmp_path / "imgs" / "a" / f"{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for epoch in range(2):  # training batches: a persistent loader, iterated per epoch
        assert len(_epoch(BatchLoader(src, 4, 0, epoch, workers=workers))) == 2
    assert len(list(iter_batches(src, np.arange(8), 4, workers=workers))) == 2  # evaluation
    src.close()
    assert torch.equal(torch.get_rng_state(), before)


def test_the_epoch_order_is_that_of_earlier_versions():
    """A checkpoint saved mid-epoch resumes at its step of (seed, epoch)'s order: an
    order changed between versions would repeat some images of that epoch and skip
    others. Pinned values; a seed is taken modulo 2**64 (a negative one too)."""
    assert epoch_permutation(12, 3, 1).tolist() == [9, 3, 5, 11, 0, 4, 2, 6, 8, 10, 7, 1]
    assert epoch_permutation(12, 2**64 + 3, 1).tolist() == epoch_permutation(12, 3, 1).tolist()
    assert epoch_permutation(12, -1, 7).tolist() == [8, 5, 4, 6, 11, 9, 3, 1, 7, 2, 10, 0]


def test_a_rank_outside_the_processes_is_refused():
    src = _indexed_source(16)
    for rank, world in ((2, 2), (-1, 2), (1, 1)):
        with pytest.raises(ValueError, match="bad batch_size"):
            BatchLoader(src, 4, 0, 0, rank=rank, world_size=world)
    with pytest.raises(ValueError, match="bad batch_size"):
        BatchLoader(src, 0, 0, 0)


def test_an_uncached_epoch_resumed_mid_way_reads_the_rest_and_notes_a_bad_first_file(
        tmp_path):
    """An uncached (worker-decoded) epoch resumed at step 1 yields that epoch's later
    batches, the same images as the whole epoch's; an unreadable file at index 0 is
    recorded as skipped like any other (index 0 is a file, not 'no bad file')."""
    root = tmp_path / "photos"
    for k in range(6):
        save_image(root / f"{k}.jpg", rgb(40, 40, k), quality=90)
    (root / "0.jpg").write_bytes(b"not an image")
    src = open_source(str(root), data_cfg(tmp_path, cache="off", load_size=16))
    assert not src.cached
    whole = _epoch(BatchLoader(src, 2, seed=5, epoch=1, workers=0))
    rest = _epoch(BatchLoader(src, 2, seed=5, epoch=1, workers=0, start_step=1))
    expected = epoch_permutation(6, 5, 1).reshape(3, 2)
    assert [i.tolist() for i, _ in whole] == expected.tolist()
    assert [i.tolist() for i, _ in rest] == expected[1:].tolist()
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, whole[1:], strict=True))
    assert [Path(p).name for p, _ in src.skipped] == ["0.jpg"]
    src.close()


def test_prefetching_loses_no_item_to_a_slow_consumer_and_stops_gathering_when_closed():
    """A step slower than the gathering waits for it (the queue full, nothing dropped);
    closed early, the thread gathers no more of the epoch."""
    import time

    from simclr.loader import prefetched

    slow = []
    for item in prefetched(iter(range(4)), prefetch=1):
        time.sleep(0.15)  # (longer than the producer's wait on a full queue)
        slow.append(item)
    assert slow == [0, 1, 2, 3]
    gathered = []

    def items():
        for i in range(1000):
            gathered.append(i)
            yield i

    stream = prefetched(items(), prefetch=2)
    next(stream)
    stream.close()
    assert len(gathered) <= 5  # (one taken, two queued, one waiting: not the 1000)


def test_a_batchs_indices_changed_by_the_caller_leave_the_epochs_order_alone():
    """The indices handed out are the caller's own tensor: writing into one (in place)
    changed the loader's order for its later iterations."""
    src = _indexed_source(16)
    loader = BatchLoader(src, 4, seed=2, epoch=0)
    for idx, _, _ in loader:
        idx.fill_(0)
    assert [i.tolist() for i, _ in _epoch(loader)] == \
        epoch_permutation(16, 2, 0).reshape(4, 4).tolist()


def test_a_loaders_own_worker_count_overrides_its_sources():
    """workers=N decodes in N processes whatever the source was opened with (None:
    the source's own count)."""
    src = _indexed_source(16)
    src.workers = 3
    assert BatchLoader(src, 4, 0, 0, workers=0).workers == 0
    assert BatchLoader(src, 4, 0, 0).workers == 3


def test_a_decode_device_gets_the_jpegs_the_workers_read(tmp_path, monkeypatch):
    """With decode_device, the epoch's JPEGs are decoded by the device decoder (here
    the CPU's), not in the workers."""
    import torchvision.io

    for k in range(4):
        save_image(tmp_path / "photos" / f"{k}.jpg", smooth_rgb(40, 30, k), quality=90)
    decoded = []
    real = torchvision.io.decode_jpeg

    def decode_jpeg(data, *args, **kwargs):
        decoded.append(len(data) if isinstance(data, list) else 1)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_jpeg)
    src = open_source(str(tmp_path / "photos"), data_cfg(tmp_path, cache="off"), image_size=16)
    assert not src.cached
    _epoch(BatchLoader(src, 2, 0, 0, workers=0, decode_device=torch.device("cpu")))
    assert decoded == [2, 2]
