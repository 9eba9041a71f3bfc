"""Tests for simclr.subsets: class-balanced labeled subsets and subset lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from simclr.config import DataConfig
from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.subsets import (
    class_balanced_subset,
    labeled_subset,
    read_subset_list,
    subset_digest,
    subset_from_list,
    write_subset_list,
)
from tests.conftest import make_image_folder, named_pipe

LABELS = np.repeat(np.arange(4), [50, 30, 40, 80])  # N = 200, 4 classes, imbalanced


def test_subset_has_exact_counts_per_class():
    for per_class in (1, 7, 30):
        idx = class_balanced_subset(LABELS, per_class=per_class, seed=0)
        assert np.bincount(LABELS[idx], minlength=4).tolist() == [per_class] * 4
        assert len(np.unique(idx)) == len(idx) and (np.diff(idx) > 0).all()
    # fraction: f * N / C per class, halves rounded up, at least 1
    # (0.158: 7.9 rounds up, as ImageNet's 1% of 12.8 a class is 13, not 12)
    # (0.13 and 0.05: 6.5 and 2.5 a class round up, as 3.5 does; Python's round took
    # them down to 6 and 2)
    for fraction, k in ((0.1, 5), (0.01, 1), (0.5, 25), (0.13, 7), (0.158, 8), (0.05, 3)):
        idx = class_balanced_subset(LABELS, fraction=fraction, seed=0)
        assert np.bincount(LABELS[idx], minlength=4).tolist() == [k] * 4
    # unlabeled images (-1) count toward neither N nor a class
    unlabeled = np.concatenate([LABELS, np.full(100, -1)])
    idx = class_balanced_subset(unlabeled, fraction=0.1, seed=0)
    assert np.bincount(unlabeled[idx], minlength=4).tolist() == [5] * 4


def test_subset_is_deterministic_nested_and_per_class_independent():
    a = class_balanced_subset(LABELS, per_class=5, seed=3)
    np.testing.assert_array_equal(a, class_balanced_subset(LABELS, per_class=5, seed=3))
    assert not np.array_equal(a, class_balanced_subset(LABELS, per_class=5, seed=4))
    bigger = class_balanced_subset(LABELS, per_class=20, seed=3)
    assert set(a) <= set(bigger)  # 1%-style subsets sit inside 10%-style ones
    # each class draws its own images: equal-sized classes pick other positions
    equal = np.repeat(np.arange(4), 50)
    picked = class_balanced_subset(equal, per_class=5, seed=3).reshape(4, 5) % 50
    assert len({tuple(row) for row in picked}) == 4
    # removing class 3 does not change the images picked for classes 0..2
    kept = LABELS < 3
    part = class_balanced_subset(LABELS[kept], per_class=5, seed=3)
    np.testing.assert_array_equal(np.flatnonzero(kept)[part], a[LABELS[a] < 3])


def test_subsets_drawn_are_those_of_earlier_versions():
    """Pinned: a continued fine-tuning compares the subset's digest with the one its
    run recorded, so the draw must never change (here with unlabeled images, classes
    without images and labels in no order), by file names and for sources without
    files. (Changed once, on 2026-12-06, to the ranking by a keyed hash of each image's
    name, whose pick no other class or file moves; a fine-tuning left unfinished
    before is refused as of other settings: ``--subset RUN/labeled_subset.txt``, the
    list it wrote first, continues it.)"""
    import hashlib

    labels = np.random.default_rng(11).choice(
        [c for c in range(-1, 40) if c not in (3, 17, 39)], 3000)

    def digest(indices):
        return hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()[:16]

    assert digest(class_balanced_subset(labels, fraction=0.1, seed=7)) == "e095dd1e9dc68a27"
    assert digest(class_balanced_subset(labels, per_class=5, seed=2)) == "098df0afdc64402d"
    names = [f"c{label}/{i:05d}.jpg" for i, label in enumerate(labels)]
    assert digest(class_balanced_subset(labels, fraction=0.1, seed=7, names=names)) == \
        "f0190992ec4f88f5"
    assert digest(class_balanced_subset(labels, per_class=5, seed=2, names=names)) == \
        "0dddbffd578f55fe"

def test_subset_ignores_unlabeled_images_and_reports_errors():
    labels = np.array([0, 0, -1, 1, 1, -1, 1])
    idx = class_balanced_subset(labels, per_class=2, seed=0)
    assert (labels[idx] >= 0).all() and len(idx) == 4
    with pytest.raises(SimCLRError, match="class 'b' has 2 images, fewer than the 3"):
        class_balanced_subset(np.array([0, 0, 0, 1, 1]), per_class=3, classes=["a", "b"])
    with pytest.raises(SimCLRError, match="exactly one"):
        class_balanced_subset(LABELS, fraction=0.1, per_class=2)
    with pytest.raises(SimCLRError, match="exactly one"):
        class_balanced_subset(LABELS)
    for fraction in (1.5, 0, 0.0, -0.1):  # (0 is no labels: refused, not one a class)
        with pytest.raises(SimCLRError, match=r"--label-fraction must lie in \(0, 1\], got"):
            class_balanced_subset(LABELS, fraction=fraction)
    with pytest.raises(SimCLRError, match="--labels-per-class"):
        class_balanced_subset(LABELS, per_class=0)
    with pytest.raises(SimCLRError, match="no labeled"):
        class_balanced_subset(np.full(5, -1), per_class=1)


def test_a_subset_list_names_paths(tmp_path):
    class Source:
        paths = [f"/data/{i}.jpg" for i in range(6)]

    path = write_subset_list(Source(), np.array([1, 4]), tmp_path / "list.txt")
    assert path.read_text().splitlines() == ["/data/1.jpg", "/data/4.jpg"]
    # named by no folder (one gone): full paths; a source without files: its indices
    Source.name = str(tmp_path / "gone")
    Source.paths = [str(tmp_path / "gone" / f"{i}.jpg") for i in range(6)]
    path = write_subset_list(Source(), np.array([1]), tmp_path / "list.txt")
    assert path.read_text().splitlines() == [str(tmp_path / "gone" / "1.jpg")]
    Source.paths = []
    path = write_subset_list(Source(), np.array([1, 4]), tmp_path / "list.txt")
    assert path.read_text().splitlines() == ["#index 1", "#index 4"]


def test_a_subset_list_is_utf8_whatever_the_locale(tmp_path, cp1252_locale):
    """Under a locale of one code page (Windows' cp1252) a list naming 日本/犬.jpg could
    not be written, and a list another tool wrote in UTF-8 was read as that code page
    (its names then matched no image): a list is UTF-8 both ways."""
    class Source:
        paths = ["/data/日本/犬.jpg", "/data/café/1.jpg"]

    path = write_subset_list(Source(), np.array([0, 1]), tmp_path / "list.txt")
    assert path.read_bytes().decode("utf-8").splitlines() == Source.paths
    assert read_subset_list(path) == Source.paths
    (tmp_path / "theirs.txt").write_bytes("犬/2.jpg\nchat é/1.jpg\n".encode())
    assert read_subset_list(tmp_path / "theirs.txt") == ["犬/2.jpg", "chat é/1.jpg"]


def test_a_subset_list_spelled_from_the_home_folder_is_read(tmp_path, monkeypatch):
    """--subset ~/list.txt (quoted, or after =) was 'not found': '~' was taken as a
    folder's name."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "list.txt").write_text("a/1.jpg\n", encoding="utf-8")
    assert read_subset_list("~/list.txt") == ["a/1.jpg"]


def test_a_subset_list_naming_a_held_out_test_image_says_so(tmp_path):
    """With --test-fraction the list is matched against the training part: an image of
    the test part was refused as 'not in the folder', and a bare name a test image shares
    with a training one was taken for the training one."""
    class Source:
        name = ""
        paths = ["/data/a/1.jpg", "/data/a/2.jpg", "/data/b/3.jpg"]
        labels = np.array([0, 0, 1])

    held = ["/data/b/1.jpg", "/data/b/4.jpg"]
    listed = tmp_path / "list.txt"
    listed.write_text("/data/a/2.jpg\n")
    assert subset_from_list(Source(), listed, held).tolist() == [1]
    listed.write_text("/data/a/2.jpg\n4.jpg\n/data/b/1.jpg\n")  # (the first is named)
    with pytest.raises(SimCLRError, match=r"2 of the listed images are among those "
                       r"--test-fraction holds out for testing \(first: '4.jpg'\)"):
        subset_from_list(Source(), listed, held)
    listed.write_text("/data/b/4.jpg\n")  # (by its full path too)
    with pytest.raises(SimCLRError, match=r"among those --test-fraction holds out"):
        subset_from_list(Source(), listed, held)
    with pytest.raises(SimCLRError, match=r"among those --test-fraction holds out"):
        labeled_subset(Source(), listed, None, None, 0, held)  # (as fine-tuning asks)
    listed.write_text("1.jpg\n")
    with pytest.raises(SimCLRError, match="'1.jpg' names several images"):
        subset_from_list(Source(), listed, held)
    listed.write_text("nowhere.jpg\n")
    with pytest.raises(SimCLRError, match="not in the folder"):
        subset_from_list(Source(), listed, held)


def test_a_subset_list_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path, capsys):
    from simclr.cli import main

    with named_pipe(tmp_path / "list.txt") as pipe:
        with pytest.raises(SimCLRError, match=r"^--subset .*list.txt: not a regular file "
                           r"\(a named pipe, socket or device\)$"):
            read_subset_list(pipe)
        make_image_folder(tmp_path / "train", classes=2, per_class=2)
        assert main(["finetune", "--checkpoint", str(tmp_path / "run"), "--train",
                     str(tmp_path / "train"), "--test", str(tmp_path / "train"),
                     "--subset", str(pipe), "--epochs", "1",
                     "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(f"--subset {pipe}: not a regular file "
                                                  "(a named pipe, socket or device)\n"), err


def test_subset_paths_relative_to_a_folder_given_by_a_relative_path(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "train", classes=2, per_class=4)
    monkeypatch.chdir(tmp_path)
    train = open_source("train", DataConfig(cache="off", workers=0), train=False,
                        image_size=16)
    listing = tmp_path / "few.txt"
    listing.write_text("class_0/001.png\nclass_1/002.png\n")
    chosen = subset_from_list(train, listing)
    assert sorted(train.paths[i].split("/")[-1] for i in chosen) == ["001.png", "002.png"]


def test_subset_paths_as_find_and_the_shell_spell_them(tmp_path, monkeypatch):
    """`cd train && find . -type f` writes ./class_0/001.png; a full path may pass
    through `..`, a relative one start from the working folder: each was "not in the
    folder". One outside the folder still is."""
    make_image_folder(tmp_path / "train", classes=2, per_class=4)
    monkeypatch.chdir(tmp_path)
    train = open_source("train", DataConfig(cache="off", workers=0), train=False,
                        image_size=16)
    listing = tmp_path / "few.txt"
    listing.write_text(f"./class_0/001.png\n{tmp_path}/train/../train/class_1/002.png\n"
                       "train/class_1/003.png\n")
    chosen = subset_from_list(train, listing)
    assert sorted(train.paths[i].split("/")[-1] for i in chosen) == \
        ["001.png", "002.png", "003.png"]
    listing.write_text("./class_0/001.png\n../elsewhere/class_0/001.png\n")
    with pytest.raises(SimCLRError, match=r"1 of the listed images are not in the folder "
                                          r"\(first: '../elsewhere/class_0/001.png'\)"):
        subset_from_list(train, listing)


def test_a_list_written_from_relative_file_names_is_relative_to_the_folder(tmp_path,
                                                                          monkeypatch):
    """A source whose files are named relative to the working folder (``train/a/1.jpg``
    for the folder ``train``) lists them as relative to its folder all the same."""
    (tmp_path / "train" / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)

    class Source:
        name = "train"
        paths = ["train/a/1.jpg", "train/a/2.jpg"]

    path = write_subset_list(Source(), np.array([1]), tmp_path / "list.txt")
    assert path.read_text().splitlines() == ["a/2.jpg"]


def test_a_tiny_fraction_still_draws_one_image_a_class():
    """0.001 of 200 images over 4 classes is 0.05 a class, rounded to none: each class
    still gives one image (an empty subset trains nothing)."""
    idx = class_balanced_subset(LABELS, fraction=0.001, seed=0)
    assert np.bincount(LABELS[idx], minlength=4).tolist() == [1, 1, 1, 1]


def test_a_subsets_digest_is_of_its_indices_and_the_images_they_index():
    """The same indices of another number of images are another subset."""
    import hashlib

    idx = np.array([1, 4, 9])
    expected = hashlib.sha256(np.array([1, 4, 9], "<i8").tobytes() + b"12").hexdigest()[:16]
    assert subset_digest(idx, 12) == expected
    assert subset_digest(idx, 13) != subset_digest(idx, 12)


def test_a_subset_list_of_unlabeled_images_or_with_a_fraction_is_refused(tmp_path):
    """Fine-tuning needs labels: a listed image outside the class folders is refused, as
    is a list given together with a drawn subset."""
    class Source:
        name = str(tmp_path)
        paths = [str(tmp_path / "a" / "0.jpg"), str(tmp_path / "loose.jpg")]
        labels = [0, -1]
        classes = ["a"]

    (tmp_path / "list.txt").write_text("a/0.jpg\n")
    assert subset_from_list(Source(), tmp_path / "list.txt").tolist() == [0]
    (tmp_path / "list.txt").write_text("a/0.jpg\nloose.jpg\n")
    with pytest.raises(SimCLRError, match="images without a class folder"):
        subset_from_list(Source(), tmp_path / "list.txt")
    with pytest.raises(SimCLRError, match="give one of --label-fraction, --labels-per-class "
                                          "and --subset"):
        labeled_subset(Source(), tmp_path / "list.txt", 0.5, None, 0)
    with pytest.raises(SimCLRError, match="give one of --label-fraction, --labels-per-class "
                                          "and --subset"):
        labeled_subset(Source(), tmp_path / "list.txt", None, 1, 0)


def test_a_label_fraction_of_one_is_every_labeled_image():
    """--label-fraction 1 (the interval's closed end) is all the labels, not refused."""
    labels = np.repeat(np.arange(3), 4)
    assert class_balanced_subset(labels, fraction=1.0).tolist() == list(range(12))


def test_no_subset_asked_for_is_every_image():
    """Neither a list nor a draw: every image of the training set is labeled."""
    class Source:
        labels = [0, 1, 0, 1, 1]
        classes = ["a", "b"]

    assert labeled_subset(Source(), None, None, None, 0).tolist() == [0, 1, 2, 3, 4]


def test_a_subset_list_skips_comments_and_blank_lines(tmp_path):
    """``#`` lines (a run's ``#index N`` among them) and blank lines name no image."""
    (tmp_path / "list.txt").write_text("# the paper's 1%\n\n  a/0.jpg  \n#index 3\nb/1.jpg\n")
    assert read_subset_list(tmp_path / "list.txt") == ["a/0.jpg", "b/1.jpg"]


def test_a_written_subset_list_is_relative_to_the_folder_and_reads_back(tmp_path):
    """A run's labeled_subset.txt names images relative to the folder, so a copy of the
    folder elsewhere reads the same images from it."""
    make_image_folder(tmp_path / "train", classes=2, per_class=3)
    train = open_source(str(tmp_path / "train"), DataConfig(cache="off", workers=0),
                        train=False, image_size=16)
    path = write_subset_list(train, np.array([1, 4]), tmp_path / "list.txt")
    lines = path.read_text().splitlines()
    assert lines == [f"class_{i // 3}/{i % 3:03d}.png" for i in (1, 4)]
    assert subset_from_list(train, path).tolist() == [1, 4]


def test_a_listed_file_the_cache_cannot_decode_is_left_out_as_unreadable(tmp_path, caplog):
    """A --subset line naming a file of the folder that its cache could not decode: left
    out, in a warning naming it and why (it was refused as "not in the folder", after
    the whole folder was decoded); a name that is in no folder stays an error."""
    import logging

    root = make_image_folder(tmp_path / "f", classes=2, per_class=4, side=16)
    (root / "class_1" / "001.png").write_bytes(b"not an image")
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, cache="on")
    source = open_source(str(root), cfg, train=True, image_size=16)
    assert source.cached and len(source.paths) == 7
    listing = tmp_path / "list.txt"
    listing.write_text("class_0/000.png\nclass_1/001.png\nclass_1/002.png\n")
    with caplog.at_level(logging.WARNING, logger="simclr.subsets"):
        chosen = subset_from_list(source, listing)
    names = [str(source.paths[i]).split("/f/")[1] for i in chosen]
    assert names == ["class_0/000.png", "class_1/002.png"]
    said = [r.getMessage() for r in caplog.records if r.name == "simclr.subsets"]
    assert len(said) == 1 and "cannot be read" in said[0] and "class_1/001.png" in said[0]
    assert "format not recognised" in said[0] and "other 2" in said[0]
    listing.write_text("class_0/000.png\nclass_1/009.png\n")
    with pytest.raises(SimCLRError, match="1 of the listed images are not in the folder"):
        subset_from_list(source, listing)


def _picked(root, cache="off", seed=0, per_class=3, tmp=None):
    """The names (relative to ``root``) of a class-balanced draw from the folder."""
    import os

    from simclr.folders import scan_folder

    source = scan_folder(root) if cache is None else open_source(
        str(root), DataConfig(cache=cache, workers=0, cache_dir=str(tmp)), image_size=16)
    idx = labeled_subset(source, None, None, per_class, seed)
    return sorted(Path(os.path.relpath(source.paths[i], root)).as_posix() for i in idx)


def test_a_classs_pick_depends_on_its_own_files_alone(tmp_path):
    """Each class's images are ranked by a keyed hash of (seed, their path in the
    folder), so its pick survives changes elsewhere. Before (a permutation drawn from
    [seed, class index] over the class's positions): a class that sorts first re-drew
    every class (their indices moved), and one image added to or removed from a class
    re-drew all of that class."""
    root = make_image_folder(tmp_path / "f", classes=3, per_class=12)
    before = _picked(root, None)
    assert _picked(root, None) == before and _picked(root, None, seed=1) != before
    make_image_folder(tmp_path / "g", classes=1, per_class=12)  # a class "a" sorts first
    (tmp_path / "g" / "class_0").rename(root / "a")
    assert [p for p in _picked(root, None) if not p.startswith("a/")] == before
    shutil.rmtree(root / "a")
    # One image more in class_0: its pick changes by that image at most (it may rank in)
    shutil.copy(root / "class_0" / "000.png", root / "class_0" / "100.png")
    grown = _picked(root, None)
    assert set(grown) - set(before) <= {"class_0/100.png"}
    assert len(set(before) - set(grown)) == len(set(grown) - set(before))
    assert [p for p in grown if not p.startswith("class_0/")] == \
        [p for p in before if not p.startswith("class_0/")]
    (root / "class_0" / "100.png").unlink()
    assert _picked(root, None) == before
    kept = next(p for p in before if p.startswith("class_1/"))
    dropped = next(f"class_1/{i:03d}.png" for i in range(12)
                   if f"class_1/{i:03d}.png" not in before)
    (root / dropped).unlink()  # not picked: nothing changes
    assert _picked(root, None) == before
    (root / kept).unlink()  # picked: the next in rank takes its place alone
    after = _picked(root, None)
    assert len(set(before) - set(after)) == 1 and set(before) - set(after) == {kept}
    # 1% inside 10%: a prefix of the same ranking
    assert set(_picked(root, None, per_class=1)) <= set(after)


def test_an_unreadable_file_is_left_out_of_the_same_pick_cached_or_not(tmp_path):
    """A cache leaves an unreadable file out of the source, but the draw is still over
    the folder's listing, the file ranked with the others, then left out: the pick with
    --cache on is that with --cache off (where the file is found unreadable as the
    training reads it) less the file. Before, the cached source ranked the other images
    alone: the next in rank took the file's place, other images for the same seed."""
    root = make_image_folder(tmp_path / "f", classes=2, per_class=12)
    off = _picked(root, "off")
    (root / off[0]).write_bytes(b"not a png")
    assert _picked(root, "off") == off
    on = _picked(root, "on", tmp=tmp_path / "cache")
    assert on == sorted(set(off) - {off[0]})


def test_a_fractions_share_counts_the_files_a_cache_cannot_read(tmp_path):
    """--label-fraction F takes F x N / C images of each class, N the folder's listed
    files, those a cache could not read among them (as the uncached source lists them):
    3 classes of 6 and F 0.25 give 2 per class either way, where the cache's 17 gave 1
    (0.25 x 17 / 3 rounds down), and the share is of 18. A file held out for testing
    is no part of the training listing."""
    import os

    from simclr.subsets import listed_count, unread_listed

    root = make_image_folder(tmp_path / "f", classes=3, per_class=6)

    def picked(cache: str) -> tuple[list[str], int]:
        source = open_source(str(root), DataConfig(cache=cache, workers=0,
                                                   cache_dir=str(tmp_path / "cache")),
                             image_size=16)
        idx = labeled_subset(source, None, 0.25, None, seed=0)
        return (sorted(Path(os.path.relpath(source.paths[i], root)).as_posix() for i in idx),
                listed_count(source))

    off, _ = picked("off")
    assert len(off) == 6
    bad = root / off[0]
    bad.write_bytes(b"not a png")
    assert picked("off") == (off, 18)
    assert picked("on") == (sorted(set(off) - {off[0]}), 18)
    cached = open_source(str(root), DataConfig(cache="on", workers=0,
                                               cache_dir=str(tmp_path / "cache")), image_size=16)
    assert unread_listed(cached) == [(off[0], int(off[0][len("class_")]))]
    assert unread_listed(cached, [str(bad)]) == [] and listed_count(cached, [str(bad)]) == 17
    uncached = open_source(str(root), DataConfig(cache="off", workers=0), image_size=16)
    uncached.remember_skipped([(str(bad), "not an image")])  # (as met while training)
    assert unread_listed(uncached) == [] and listed_count(uncached) == 18


def test_a_class_beyond_the_names_given_is_named_by_its_index():
    """A label past the class names (a listing's extra class) names the class by its
    index in the refusal, not an IndexError."""
    with pytest.raises(SimCLRError, match="class '1' has 1 images, fewer than the 2"):
        class_balanced_subset(np.array([0, 0, 1]), per_class=2, classes=["a"])


def test_a_subset_list_is_refused_where_it_cannot_name_an_image(tmp_path, monkeypatch,
                                                                caplog):
    """A list of comments alone, a list not UTF-8, a data set without file names, and a
    bare name a readable image shares with an unreadable file are refused; an unreadable
    file named is said by the first process of a launch alone."""
    import logging

    class Source:
        name = ""
        paths = ["/data/a/1.jpg", "/data/a/2.jpg"]
        labels = np.array([0, 0])
        skipped = [("/data/b/1.jpg", "not an image"), ("/data/b/3.jpg", "truncated")]

    listed = tmp_path / "list.txt"
    listed.write_text("# nothing\n\n")
    with pytest.raises(SimCLRError, match=r"list.txt lists no images"):
        read_subset_list(listed)
    listed.write_bytes(b"a/\xff.jpg\n")
    with pytest.raises(SimCLRError, match=r"cannot read .*list.txt: not UTF-8 text$"):
        read_subset_list(listed)
    listed.write_text("2.jpg\n")

    class Arrays:
        labels = np.array([0, 1])

    with pytest.raises(SimCLRError, match="--subset needs an image folder"):
        subset_from_list(Arrays(), listed)
    listed.write_text("1.jpg\n")
    with pytest.raises(SimCLRError, match="'1.jpg' names several images"):
        subset_from_list(Source(), listed)
    listed.write_text("2.jpg\n3.jpg\n")
    monkeypatch.setenv("RANK", "1")
    with caplog.at_level(logging.WARNING, logger="simclr.subsets"):
        assert subset_from_list(Source(), listed).tolist() == [1]
    assert "cannot be read" not in caplog.text
