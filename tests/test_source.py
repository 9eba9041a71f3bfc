"""Tests for simclr.source: a source's items, unreadable files substituted and counted,
subsets and decoding workers."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from simclr.data import open_source
from simclr.loader import BatchLoader
from simclr.source import ImageSource, default_workers
from tests.image_files import data_cfg, jpeg_bytes, rgb, save_image


def _mixed_folder(root: Path) -> dict[str, str]:
    """Good and bad files; returns name -> expected reason fragment for the bad ones."""
    save_image(root / "a_good.png", rgb(32, 32, 1))
    save_image(root / "b_gray.png", np.zeros((32, 32), dtype=np.uint8))
    save_image(root / "c_small.png", rgb(8, 8, 2))
    (root / "d_zero.jpg").write_bytes(b"")
    (root / "e_trunc.jpg").write_bytes(jpeg_bytes(32, 32)[:600])
    (root / "f_text.png").write_text("hello")
    save_image(root / "g_big.png", rgb(60, 60, 3))  # over max_pixels=3000 below
    return {"d_zero.jpg": "empty file", "e_trunc.jpg": "truncated",
            "f_text.png": "not an image", "g_big.png": "decompression-bomb"}


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_sources_dataset_says_which_image_it_replaced(tmp_path, cache):
    """Every item of ImageSource.dataset is (image, index, aspect, replaced index or -1,
    reason): what the loaders count a skipped file by, cached or not."""
    bad = _mixed_folder(tmp_path / "imgs")
    cfg = data_cfg(tmp_path, cache=cache, load_size=32, max_pixels=3000)
    src = open_source(str(tmp_path / "imgs"), cfg)
    items = [src.dataset()[i] for i in range(src.num_images)]
    assert all(len(item) == 5 for item in items)
    replaced = {Path(src.paths[i]).name if src.paths else i: reason
                for _, _, _, i, reason in items if i >= 0}
    assert replaced.keys() == (set() if cache == "on" else bad.keys())


def test_a_long_run_of_broken_files_is_substituted_from_across_the_folder(tmp_path):
    """Uncached, a bad image was replaced by one of the next 64 in listing order only: a
    class folder of 70 broken files among readable ones stopped the run (and its
    resume, at the same place) with '64 images in a row are unreadable'."""
    from simclr.source import load_item, substitutes

    for k in range(70):
        (tmp_path / "imgs" / "broken").mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / "broken" / f"{k:03d}.jpg").write_bytes(b"\0" * 100)
    for k in range(10):
        save_image(tmp_path / "imgs" / "good" / f"{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    assert src.num_images == 80 and src.paths[0].endswith("broken/000.jpg")
    image, j, _aspect, replaced, reason = load_item(src, 0)
    assert j >= 70 and replaced == 0 and reason and image.shape == (3, 16, 16)
    assert load_item(src, 0)[1] == j  # (the same one every time: resumes alike)
    batch = torch.cat([im for _, im, _ in BatchLoader(src, 80, 0, 0, workers=0)])
    assert batch.shape == (80, 3, 16, 16)
    # i and the next 63, then 64 spread over the rest; a small folder is tried whole
    assert substitutes(5, 1000)[:64] == list(range(5, 69))
    assert len(set(substitutes(5, 1000))) == 128 and max(substitutes(5, 1000)) > 900
    assert sorted(substitutes(3, 100)) == list(range(100))


@pytest.mark.parametrize("every_s", [None, 0.0])
def test_an_uncached_folder_names_its_first_unreadable_files_then_counts_them(
        tmp_path, monkeypatch, caplog, every_s):
    """Uncached, every unreadable file met was a warning line of its own: half of a 100k
    folder broken printed 166 lines in 5 steps (50,000 an epoch). Now the first 10 are
    named, the rest counted in a line at most every 30 s (``every_s`` 0: each time)."""
    from simclr import source

    if every_s is not None:
        monkeypatch.setattr(source, "PLAIN_EVERY_S", every_s, raising=False)
    for k in range(30):
        (tmp_path / "imgs" / f"bad{k:02d}.png").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / f"bad{k:02d}.png").write_text("garbage")
    for k in range(4):
        save_image(tmp_path / "imgs" / f"good{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    with caplog.at_level(logging.WARNING):
        for _ in BatchLoader(src, 34, 0, 0, workers=0):
            pass
    assert len(src.skipped) == 30  # (every one recorded, for the summary's list)
    lines = caplog.messages
    named = [ln for ln in lines if ln.startswith("skipped ") and "another image" in ln]
    counted = [ln for ln in lines if "unreadable image(s) so far" in ln]
    assert len(named) == 10
    assert len(counted) == (1 if every_s is None else 20), lines
    assert "skipped 11 unreadable image(s) so far; the first 10 are named above" in counted[0]


def test_an_uncached_read_that_may_pass_replaces_the_image_this_once(tmp_path, monkeypatch):
    """An EIO reading one file of an uncached folder (no cache to spoil) stopped the whole
    training: replaced by another image this once, as a bad file is, and read again the
    next time it is drawn."""
    import errno
    import pickle

    from simclr import decode, source
    from simclr.decode import ReadFailure

    for k in range(4):
        save_image(tmp_path / "imgs" / f"good{k}.png", rgb(16, 16, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    real, flaky = source.load_square, {"left": 1}

    def failing_once(path, *args, **kwargs):
        if path.endswith("good1.png") and flaky["left"]:
            flaky["left"] -= 1
            raise decode._read_failure(path, OSError(errno.EIO, "Input/output error"))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(source, "load_square", failing_once)
    image, j, _, substituted, reason = source.load_item(src, 1)
    assert (j, substituted) == (2, 1) and reason == "Input/output error (EIO)"
    assert source.load_item(src, 1)[1:4:2] == (1, -1)  # (read this time)
    again = pickle.loads(pickle.dumps(ReadFailure("a.png", "Stale file handle (ESTALE)")))
    assert (again.path, again.reason) == ("a.png", "Stale file handle (ESTALE)")
    assert str(again).startswith("cannot read a.png: Stale file handle (ESTALE), a failure")


def test_skipped_files_of_an_earlier_session_count_only_if_listed_here(tmp_path):
    """remember_skipped (a checkpoint's skipped_images): a file this source does not
    list (another folder's, or one since removed) is neither counted nor listed."""
    for k in range(3):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(100, 100, k))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off"), image_size=16)
    listed = src.paths[1]
    src.remember_skipped([(str(tmp_path / "other" / "9.png"), "empty file"),
                          (listed, "truncated file")])
    assert src.skipped == [(listed, "truncated file")] and src.readable_images == 2


@pytest.mark.parametrize("cores, local, expected", [(64, None, 8), (4, None, 4), (6, "2", 3),
                                                    (2, "4", 1), (32, "8", 4)])
def test_default_workers_are_a_share_of_the_usable_cores_per_local_process(
        monkeypatch, cores, local, expected):
    # the machine has more cores than this process may use (taskset, a cpuset, SLURM)
    monkeypatch.setattr("os.cpu_count", lambda: 128)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert default_workers() == expected


def test_a_cache_subsets_aspects_follow_its_rows():
    """A source over some of a cache's rows (``rows``: image i is row rows[i]) gives the
    aspect of each image's own row, as its pixels are: image 0 is row 2 (aspect 2)."""
    array = np.stack([np.full((4, 4, 3), v, dtype=np.uint8) for v in (0, 1, 2)])
    source = ImageSource("subset", np.zeros(2), ["a"], array=array, rows=np.array([2, 0]),
                         aspect=np.array([1.0, 1.5, 2.0], dtype=np.float32))
    assert source.aspect_of(np.array([0, 1])).tolist() == [2.0, 1.0]
    images, aspects = source.batch(np.array([0, 1]))
    assert images[:, 0, 0, 0].tolist() == [2, 0] and aspects.tolist() == [2.0, 1.0]
    part = source.subset([0])  # (a subset of it keeps its pictures' aspects too)
    assert part.batch(np.array([0]))[1].tolist() == [2.0]


def test_a_cached_sources_images_are_all_readable_whatever_it_skipped():
    """A cache holds only the files it could read: those it skipped are no rows of it,
    so every image counts as readable (an uncached folder's are not, once met)."""
    array = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    cached = ImageSource("c", np.zeros(3), ["a"], array=array, skipped=[("bad.png", "empty")])
    assert cached.readable_images == 3 and cached.skipped == [("bad.png", "empty")]
    folder = ImageSource("f", np.zeros(3), ["a"], paths=["0", "1", "bad.png"], side=4,
                         skipped=[("bad.png", "empty")])
    assert folder.readable_images == 2


def test_channels_first_arrays_and_subsets_of_subsets_give_their_own_rows():
    """An array stored (N, 3, H, W) (the digits, STL-10) comes out as it is stored; a
    subset of a subset of a cache reads the rows its images stand for."""
    array = np.stack([np.full((3, 2, 5), v, dtype=np.uint8) for v in (0, 1, 2, 3)])
    array[:, 1] += 10  # (channel 1 tells channels from rows)
    source = ImageSource("chw", np.arange(4), list("abcd"), array=array, layout="nchw")
    assert source.image_hw == (2, 5)
    images = source.get_batch([3, 1])
    assert images.shape == (2, 3, 2, 5) and images[:, :, 0, 0].tolist() == [[3, 13, 3],
                                                                            [1, 11, 1]]
    part = source.subset([3, 1, 2]).subset([2, 0])  # images 2 and 3 of the whole
    assert part.labels.tolist() == [2, 3]
    assert part.get_batch([0, 1])[:, 0, 0, 0].tolist() == [2, 3]


def test_a_part_within_a_source_is_kept_and_shares_its_skipped_files(tmp_path):
    """within(indices): the same part for the same indices (its workers persist over a
    training's epochs), a new one for others; the unreadable files it meets are this
    source's skipped files. A cache records no earlier session's skipped files."""
    for k in range(4):
        save_image(tmp_path / "imgs" / f"{k}.png", rgb(16, 16, k))
    (tmp_path / "imgs" / "4.png").write_text("garbage")
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    part = src.within(np.array([4, 0]))
    assert src.within(np.array([4, 0])) is part and src.within(np.array([0, 4])) is not part
    part = src.within(np.array([4, 0]))
    assert part.batch([0])[0].shape == (1, 3, 16, 16)  # 4.png, replaced by 0.png
    assert [Path(p).name for p, _ in src.skipped] == ["4.png"]
    array = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    cached = ImageSource("c", np.zeros(2), ["a"], array=array, paths=["x.png", "y.png"])
    cached.remember_skipped([("x.png", "empty file")])
    assert cached.skipped == []


def test_the_skip_summary_names_ten_files_then_counts_the_rest():
    """One line per skipped file up to the limit, then how many more: a folder of
    thousands of broken files is not a log of thousands of lines."""
    skipped = [(f"{k:02d}.png", "empty file") for k in range(12)]
    source = ImageSource("imgs", np.zeros(12), [], paths=[p for p, _ in skipped], side=4,
                         skipped=skipped)
    lines = source.skip_summary().splitlines()
    assert lines[0] == "imgs: skipped 12 unreadable image(s):"
    assert lines[1:] == [f"  {k:02d}.png: empty file" for k in range(10)] + ["  ... and 2 more"]
    assert source.skip_summary(limit=12).splitlines()[-1] == "  11.png: empty file"


def test_the_decoder_is_the_device_only_where_asked_or_on_cuda():
    """'auto' decodes JPEGs on the device on CUDA only; 'pil' never; a typo is refused."""
    from simclr.source import decode_device

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert decode_device("auto", cpu) is None and decode_device("pil", cuda) is None
    assert decode_device("auto", cuda) == cuda and decode_device("device", cpu) == cpu
    with pytest.raises(ValueError, match="one of auto, pil, device, got 'gpu'"):
        decode_device("gpu", cpu)
    # A folder of no JPEG (by name) is PIL's whatever the decoder: its workers opened
    # each file to find no JPEG in it, then decoded it with PIL all the same.
    pngs = SimpleNamespace(paths=["a.png", "b.PNG"])
    mixed = SimpleNamespace(paths=["a.png", "b.JPG"])
    assert decode_device("device", cpu, pngs) is None and decode_device("auto", cuda, pngs) is None
    assert decode_device("device", cpu, mixed) == cpu and decode_device("auto", cuda, mixed) == cuda


def test_a_folder_of_unreadable_files_names_the_first_and_why(tmp_path):
    """The reason a replaced image carries is its own file's, not a later one's; a
    folder with no readable image is NoReadableImageError naming the file and folder."""
    from simclr.errors import NoReadableImageError
    from simclr.source import load_item

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"")
    (tmp_path / "imgs" / "b.png").write_text("garbage")
    save_image(tmp_path / "imgs" / "c.png", rgb(16, 16, 1))
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    assert load_item(src, 0)[1:] == (2, 1.0, 0, "empty file (0 bytes)")
    (tmp_path / "imgs" / "c.png").write_text("garbage")
    folder = tmp_path / "imgs"
    with pytest.raises(NoReadableImageError, match=r"^all 3 images are unreadable \(first: "
                       f".*a.png: empty file \\(0 bytes\\)\\); check the folder {folder}"):
        load_item(src, 0)


def test_an_unreadable_file_met_again_is_recorded_once(tmp_path):
    """An uncached file that fails every epoch is one entry of ``skipped`` (and one line
    of the summary), not one per time it was met."""
    for k in range(2):
        save_image(tmp_path / "imgs" / f"good{k}.png", rgb(16, 16, k))
    (tmp_path / "imgs" / "bad.png").write_text("garbage")
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    for _ in range(2):
        src.batch(np.arange(src.num_images))
    assert [p for p, _ in src.skipped] == [str(tmp_path / "imgs" / "bad.png")]


def test_a_cached_sources_dataset_gives_each_image_its_own_index():
    array = np.stack([np.full((4, 4, 3), v, dtype=np.uint8) for v in range(3)])
    ds = ImageSource("rows", np.zeros(3), ["a"], array=array).dataset()
    assert [(int(ds[i][0][0, 0, 0]), ds[i][1]) for i in range(3)] == [(0, 0), (1, 1), (2, 2)]


def test_a_broken_jpeg_decoded_on_a_device_is_replaced_with_its_substitutes_index(tmp_path):
    """Training with JPEGs decoded on the device: a broken file's row is the next
    readable image, labelled by that image's index, and the broken file is recorded."""
    import torch

    from simclr.features import iter_batches

    for k in range(3):
        save_image(tmp_path / "imgs" / f"{k}.jpg", rgb(16, 16, k))
    (tmp_path / "imgs" / "0b.jpg").write_bytes(b"\xff\xd8\xff garbage")
    src = open_source(str(tmp_path / "imgs"), data_cfg(tmp_path, cache="off", load_size=16))
    bad = src.paths.index(str(tmp_path / "imgs" / "0b.jpg"))
    (idx, images, _), = iter_batches(src, np.arange(4), 4, workers=0,
                                     decode_on=torch.device("cpu"))
    assert bad not in idx.tolist() and idx.tolist()[bad] == bad + 1
    assert torch.equal(images[bad], images[bad + 1])
    assert [p for p, _ in src.skipped] == [src.paths[bad]]
