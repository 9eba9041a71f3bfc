"""Tests for simclr.folders: image folders listed (ImageFolder trees, flat folders,
splits, links, odd names), nothing decoded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from simclr.data import open_source
from simclr.errors import SimCLRError
from simclr.folders import class_members, list_folder, scan_folder
from tests.conftest import SHARED_DATA, make_image_folder
from tests.image_files import data_cfg, rgb, save_image


def test_imagefolder_labels_follow_sorted_class_names(tmp_path):
    for cls, count in (("zebra", 2), ("ant", 1), ("Moose", 3)):
        for k in range(count):
            save_image(tmp_path / cls / f"{k}.png")
    save_image(tmp_path / "ant" / ".hidden.png")  # hidden file
    save_image(tmp_path / ".git" / "x.png")  # hidden folder: no class
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    images = scan_folder(tmp_path)
    assert images.classes == ["Moose", "ant", "zebra"]  # plain sorted(), as ImageFolder
    assert images.labels.dtype == np.int64
    assert images.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert [Path(p).parent.name for p in images.paths] == ["Moose"] * 3 + ["ant"] + ["zebra"] * 2


def test_flat_folder_has_labels_minus_one(tmp_path):
    for name in ("b.png", "a.jpg", "c.PNG"):
        save_image(tmp_path / name)
    images = scan_folder(tmp_path)
    assert images.classes == []
    assert images.labels.tolist() == [-1, -1, -1]
    assert [Path(p).name for p in images.paths] == ["a.jpg", "b.png", "c.PNG"]
    save_image(tmp_path / "cls" / "IMG_0001.JPG")  # (a camera's names, in a class folder)
    assert [Path(p).name for p in scan_folder(tmp_path).paths] == ["IMG_0001.JPG"]


def test_images_beside_class_folders_count_where_no_label_is_needed(tmp_path, caplog):
    """A photo folder with some sub-folders: pretraining and embed take every image
    (the loose ones labelled -1); the labeled commands leave them out and say so."""
    for name in ("top1.jpg", "top0.png"):
        save_image(tmp_path / name)
    (tmp_path / "readme.txt").write_text("not an image")
    for cls, count in (("2023", 2), ("old", 1)):
        for k in range(count):
            save_image(tmp_path / cls / f"{k}.png")
    everything = scan_folder(tmp_path, unlabeled=True)
    assert [Path(p).name for p in everything.paths] == ["top0.png", "top1.jpg", "0.png",
                                                       "1.png", "0.png"]
    assert everything.labels.tolist() == [-1, -1, 0, 0, 1]
    assert everything.classes == ["2023", "old"] and not caplog.records
    assert list_folder(str(tmp_path), unlabeled=True).paths == everything.paths
    labeled = scan_folder(tmp_path)
    assert labeled.labels.tolist() == [0, 0, 1] and labeled.classes == ["2023", "old"]
    assert "2 image(s) outside the class folders are ignored" in caplog.text


def test_a_folders_warnings_are_said_once_and_by_the_first_process(tmp_path, monkeypatch,
                                                                    caplog):
    """A command lists a folder more than once (its check, then its read; typed and
    absolute) and every process of a launch lists it: the warning came 4 times."""
    for name in ("data", "other"):
        save_image(tmp_path / name / "loose.png")
        save_image(tmp_path / name / "a" / "0.png")
        (tmp_path / name / "b").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    scan_folder("other")
    assert not caplog.records  # the first process says it
    monkeypatch.setenv("RANK", "0")
    for _ in range(2):
        scan_folder("data")
        scan_folder(tmp_path / "data")
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "1 image(s) outside the class folders are ignored (they have no class)",
        "class folder(s) without images: b"]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(SimCLRError, match=f"not found: {tmp_path / 'nope'}"):
        scan_folder(tmp_path / "nope")


def test_file_instead_of_folder_is_named(tmp_path):
    f = save_image(tmp_path / "a.png")
    with pytest.raises(SimCLRError, match=f"not a folder: {f}"):
        scan_folder(f)


def test_empty_folder_is_named(tmp_path):
    (tmp_path / ".DS_Store").write_text("")  # hidden files do not count
    with pytest.raises(SimCLRError, match=f"empty: {tmp_path}$"):
        scan_folder(tmp_path)
    # pictures all in hidden folders (or named as hidden): 'empty' said why, junk unnamed
    save_image(tmp_path / ".trip" / "a.png", rgb(8, 8))
    save_image(tmp_path / ".b.png", rgb(8, 8))
    (tmp_path / "._a.png").write_text("")
    with pytest.raises(SimCLRError, match=rf"empty: {tmp_path} \(hidden entries are not "
                                          r"read: \.b\.png, \.trip\)$"):
        scan_folder(tmp_path)


def test_an_empty_folder_names_five_hidden_entries_and_counts_the_rest(tmp_path):
    for i in range(7):
        (tmp_path / f".h{i}").mkdir()
    with pytest.raises(SimCLRError, match=r"\(hidden entries are not read: \.h0, \.h1, \.h2, \.h3, "
                                          r"\.h4 and 2 more\)$"):
        scan_folder(tmp_path)


def test_a_macos_zip_layout_reads_as_its_classes(tmp_path):
    """macOS's zip archiver adds __MACOSX/ (the files' resource forks, '._' names): it
    read as a class folder without images, which the labelled evaluations refuse."""
    for cls in ("cat", "dog"):
        save_image(tmp_path / cls / "a.png")
        (tmp_path / "__MACOSX" / cls).mkdir(parents=True)
        (tmp_path / "__MACOSX" / cls / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    images = scan_folder(tmp_path)
    assert images.classes == ["cat", "dog"] and len(images.paths) == 2


def test_a_windows_drive_roots_system_folders_are_not_classes(tmp_path):
    """A data set copied to a USB drive's root sits beside the drive's recycle bin and
    System Volume Information: they read as two more classes (their 'no readable
    image' refused the evaluations, and embed's labels shifted)."""
    for cls in ("cat", "dog"):
        save_image(tmp_path / cls / "a.png")
    save_image(tmp_path / "$RECYCLE.BIN" / "S-1-5-21" / "$RAB12.png")
    (tmp_path / "System Volume Information").mkdir()
    (tmp_path / "System Volume Information" / "IndexerVolumeGuid").write_text("{}")
    images = scan_folder(tmp_path)
    assert images.classes == ["cat", "dog"] and len(images.paths) == 2


def test_a_nas_shares_thumbnail_and_recycle_folders_are_not_images_nor_classes(tmp_path):
    """A Synology NAS keeps thumbnails beside every photo (@eaDir/<file>/SYNOPHOTO_
    THUMB_*.jpg): they were listed as images, and the share's @eaDir as a class, as were
    its #recycle and #snapshot folders and QNAP's @Recycle (.@__thumb is hidden)."""
    for cls in ("cat", "dog"):
        save_image(tmp_path / cls / "a.jpg")
        save_image(tmp_path / cls / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_M.jpg")
        save_image(tmp_path / cls / ".@__thumb" / "s100a.jpg")
    for junk in ("@eaDir", "#recycle", "#snapshot", "@Recycle", "@eadir"):
        save_image(tmp_path / junk / "cat" / "b.jpg")
    images = scan_folder(tmp_path)
    assert images.classes == ["cat", "dog"] and len(images.paths) == 2
    flat = scan_folder(tmp_path / "cat")
    assert [os.path.basename(p) for p in flat.paths] == ["a.jpg"] and flat.classes == []


def test_entries_windows_marks_hidden_are_left_out(tmp_path, monkeypatch):
    """Windows hides by an attribute, not by a leading dot: a hidden folder (a class or
    one inside one) and a hidden image are left out there, as dot-names are."""
    from simclr import folders

    hidden = {"Backup", "old", "b.png"}
    for rel in ("cat/a.png", "cat/b.png", "cat/old/c.png", "dog/a.png", "Backup/a.png"):
        save_image(tmp_path / rel)
    monkeypatch.setattr(folders, "_attributes", lambda path: folders._HIDDEN
                        if os.path.basename(os.fspath(path)) in hidden else 0)
    images = scan_folder(tmp_path)
    assert images.classes == ["cat", "dog"]
    assert sorted(os.path.relpath(p, tmp_path) for p in images.paths) == \
        [os.path.join("cat", "a.png"), os.path.join("dog", "a.png")]


def test_folder_without_images_is_named(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "labels.csv").write_text("a,b")
    with pytest.raises(SimCLRError, match=f"no images found in {tmp_path}"):
        scan_folder(tmp_path)


@pytest.mark.parametrize("others", [("unlabeled",), ("zebra", "runs")])
def test_a_folder_beside_train_and_test_is_left_out_and_named(tmp_path, caplog, others):
    """STL-10's train/, test/ and unlabeled/ (or any folder beside the splits) read as
    one image folder whose classes were the split names: pretraining trained on the
    test split, evaluation evaluated on training images. The splits are taken, the
    others named in a warning."""
    root = tmp_path / "ds"
    for name in ("train", "test", *others):
        save_image(root / name / "a" / "1.png")
    with caplog.at_level("INFO"):
        assert list_folder(str(root), True).root == str(root / "train")
        assert list_folder(str(root), False).root == str(root / "test")
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    left = ", ".join(sorted(others))
    assert said == [("WARNING", f"{root} holds splits; using {root / s} (give {root / o} "
                                f"for the other); left out: {left}")
                    for s, o in (("train", "test"), ("test", "train"))]


def test_a_roboflow_export_reads_train_and_test_leaving_valid_out(tmp_path, caplog):
    """Roboflow's and YOLO's train/, valid/ and test/ read as three classes named after
    the splits: valid is a split too (named in the note), and alone beside train it is
    the held-out one."""
    root = tmp_path / "export"
    for split in ("train", "valid", "test"):
        save_image(root / split / "cat" / "1.png")
    with caplog.at_level("INFO"):
        assert list_folder(str(root), True).root == str(root / "train")
        assert list_folder(str(root), False).root == str(root / "test")
    assert [(r.levelname, r.getMessage()) for r in caplog.records][0] == (
        "INFO", f"{root} holds splits; using {root / 'train'} (give {root / 'test'} for the "
                "other); left out: valid")
    save_image(tmp_path / "two" / "train" / "cat" / "1.png")
    save_image(tmp_path / "two" / "valid" / "cat" / "1.png")
    assert list_folder(str(tmp_path / "two"), False).root == str(tmp_path / "two" / "valid")


def test_folder_with_splits_picks_train_or_test(tmp_path, caplog):
    root = tmp_path / "ds"
    save_image(root / "train" / "cat" / "1.png")
    save_image(root / "train" / "dog" / "1.png")
    save_image(root / "test" / "cat" / "1.png")
    save_image(root / "__MACOSX" / "train" / "._1.png")  # (hidden beside the splits: unsaid)
    (root / ".git").mkdir()
    cfg = data_cfg(tmp_path)
    with caplog.at_level("INFO"):
        assert open_source(str(root), cfg, train=True).num_images == 2
        assert open_source(str(root), cfg, train=False).num_images == 1
        list_folder(str(root), False)  # (listed again: said once, naming the other split)
    said = [r.getMessage() for r in caplog.records if "holds splits" in r.getMessage()]
    assert said == [f"{root} holds splits; using {root / s} (give {root / o} for the other)"
                    for s, o in (("train", "test"), ("test", "train"))]
    # Listed without decoding, the same split: what the early label checks look at.
    assert [len(list_folder(str(root), train).paths) for train in (True, False)] == [2, 1]
    assert list_folder(str(root), True).root == str(root / "train")
    assert list_folder(None) is None and list_folder("digits") is None
    assert list_folder("cifar10") is None  # torchvision's, where no such folder exists


@pytest.mark.skipif(not (SHARED_DATA / "cifar10" / "test").is_dir(),
                    reason="shared CIFAR-10 JPEG folder not available")
def test_shared_cifar10_folder_labels(tmp_path):
    images = scan_folder(str(SHARED_DATA / "cifar10" / "test"))
    assert len(images.paths) == 10_000 and images.classes[0] == "airplane"
    assert np.bincount(images.labels).tolist() == [1000] * 10


def test_linked_folders_are_followed_once_and_loops_not_at_all(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=2, per_class=3)
    extra = make_image_folder(tmp_path / "elsewhere", classes=1, per_class=2)
    (root / "class_0" / "loop").symlink_to(root)  # a link back up the tree
    (root / "class_1" / "more").symlink_to(extra / "class_0")  # a linked folder: read
    (root / "class_1" / "again").symlink_to(extra / "class_0")  # the same one twice
    listing = scan_folder(root)
    assert listing.classes == ["class_0", "class_1"]
    assert len(listing.paths) == 3 + 3 + 2
    assert np.bincount(listing.labels).tolist() == [3, 5]


def test_no_image_is_listed_under_two_classes_through_links(tmp_path, caplog):
    """A link in one class folder to another class's folder (or into it), or a class
    folder that is another's under a second name: those images were listed twice, under
    both labels (an evaluation's train and test could hold one image labelled twice).
    Each is left out, said, and every image keeps its own class."""
    import logging

    root = make_image_folder(tmp_path / "d", classes=3, per_class=2)
    (root / "class_0" / "sub").mkdir()
    save_image(root / "class_0" / "sub" / "deep.png", rgb(8, 8))
    (root / "class_1" / "cats").symlink_to(root / "class_0")  # another class's folder
    (root / "class_2" / "part").symlink_to(root / "class_0" / "sub")  # a folder inside it
    (root / "class_3").symlink_to(root / "class_1")  # a class under a second name
    extra = make_image_folder(tmp_path / "elsewhere", classes=1, per_class=2)
    (root / "class_1" / "shared").symlink_to(extra / "class_0")  # linked by two classes
    (root / "class_2" / "shared").symlink_to(extra / "class_0")
    with caplog.at_level(logging.WARNING, logger="simclr.folders"):
        listing = scan_folder(root)
    assert listing.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert np.bincount(listing.labels, minlength=4).tolist() == [3, 4, 2, 0]
    real = [os.path.realpath(p) for p in listing.paths]
    assert len(set(real)) == len(real)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "cats: a link to the class folder class_0" in said
    assert "part: a link to the class folder class_0" in said
    assert "class_3: the same folder as" in said and "class_1, listed already" in said
    assert "class_2/shared: the same folder as one listed under" in said


def test_no_image_is_listed_under_two_classes_through_linked_files(tmp_path, caplog):
    """Only linked folders were checked: `ln -s ../a/1.png b/` listed a/1.png under
    both labels. A linked file into another class, or one file linked from two classes,
    is listed once, said; a link to a file of no class, or of its own, is kept; a link
    named as no image to a missing folder (a class gone) is said, not dropped unsaid."""
    import logging

    root = make_image_folder(tmp_path / "d", classes=3, per_class=2)
    pool = make_image_folder(tmp_path / "pool", classes=1, per_class=2) / "class_0"
    (root / "class_1" / "from_0.png").symlink_to(root / "class_0" / "000.png")
    (root / "class_1" / "pooled.png").symlink_to(pool / "000.png")
    (root / "class_2" / "pooled.png").symlink_to(pool / "000.png")  # linked by two classes
    (root / "class_2" / "own.png").symlink_to(pool / "001.png")
    (root / "class_0" / "again.png").symlink_to(root / "class_0" / "001.png")  # its own
    (root / "class_9").symlink_to(tmp_path / "gone")
    with caplog.at_level(logging.WARNING, logger="simclr.folders"):
        listing = scan_folder(root)
    assert listing.classes == ["class_0", "class_1", "class_2"]
    names = {(listing.classes[c], Path(p).name)
             for p, c in zip(listing.paths, listing.labels, strict=True)}
    assert ("class_1", "from_0.png") not in names and ("class_2", "pooled.png") not in names
    assert {("class_1", "pooled.png"), ("class_2", "own.png"), ("class_0", "again.png")} <= names
    assert np.bincount(listing.labels).tolist() == [3, 3, 3]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert (f"class_1/from_0.png: a link to {root / 'class_0' / '000.png'}, an image of the "
            "class class_0, is left out") in said
    assert f"class_2/pooled.png: a link to {pool / '000.png'}, an image of the class " \
           "class_1, is left out" in said
    assert f"class_9 is a link to {tmp_path / 'gone'}, which does not exist; left out" in said


def test_files_without_an_extension_are_opened_a_bounded_number_of_times(tmp_path,
                                                                         monkeypatch):
    """Each was opened on every scan (20,000 of them: 0.07 s to 0.30 s, more on a
    network file system): at most SNIFFED_PER_FOLDER a folder."""
    from simclr import folders

    save_image(tmp_path / "d" / "a" / "x.png")
    for k in range(folders.SNIFFED_PER_FOLDER + 10):
        (tmp_path / "d" / "a" / f"blob{k}").write_bytes(b"data")
    opened = []
    real = folders._image_bytes
    monkeypatch.setattr(folders, "_image_bytes", lambda path: opened.append(path) or real(path))
    assert len(scan_folder(tmp_path / "d").paths) == 1
    assert len(opened) == folders.SNIFFED_PER_FOLDER


def test_an_album_of_links_to_other_classes_is_said_in_one_line(tmp_path, caplog):
    """A class folder of links to another class's images (an album) printed one warning
    per link: one line now, with the count and the first."""
    import logging

    root = make_image_folder(tmp_path / "d", classes=2, per_class=5)
    album = root / "class_1" / "album"
    album.mkdir()
    for k in range(5):
        (album / f"{k}.png").symlink_to(root / "class_0" / f"{k:03d}.png")
    with caplog.at_level(logging.WARNING, logger="simclr.folders"):
        listing = scan_folder(root)
    assert np.bincount(listing.labels).tolist() == [5, 5]
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{root / 'class_1'}: 5 links to images of other classes are left out, so "
                    f"that no image has two classes (first: {album / '0.png'}, a link to "
                    f"{root / 'class_0' / '000.png'}, of the class class_0)"]


def test_a_link_to_the_folder_itself_is_no_class(tmp_path, caplog):
    """`ln -s . loop` in a flat folder made a class 'loop' of the folder's own images
    (each then read twice by pretraining); it is left out, said once."""
    import logging

    root = tmp_path / "flat"
    for name in ("a.png", "b.png"):
        save_image(root / name)
    (root / "loop").symlink_to(".")
    (root / "up").symlink_to("..")  # the folder above holds this one: a loop too
    with caplog.at_level(logging.WARNING):
        for unlabeled in (False, True, True):
            listing = scan_folder(root, unlabeled=unlabeled)
            assert listing.classes == [] and [Path(p).name for p in listing.paths] == \
                ["a.png", "b.png"] and listing.labels.tolist() == [-1, -1]
    said = [r.getMessage() for r in caplog.records]
    assert sorted(said) == [f"{root}: loop links back to the folder itself ({root}); left out",
                            f"{root}: up links back to a folder above it ({tmp_path}); left out"]


def test_broken_links_and_pipes_beside_images_are_listed_then_skipped(tmp_path):
    """In a flat folder as in class folders: listed, so that decoding names each among
    the skipped files (a flat folder used to drop them unsaid)."""
    import os

    root = tmp_path / "flat"
    for name in ("a.png", "b.png"):
        save_image(root / name)
    (root / "gone.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(root / "pipe.png")
    assert [Path(p).name for p in scan_folder(root).paths] == \
        ["a.png", "b.png", "gone.png", "pipe.png"]
    source = open_source(str(root), data_cfg(tmp_path), image_size=8)
    assert sorted((Path(p).name, why) for p, why in source.skipped) == [
        ("gone.png", "cannot read the file (No such file or directory)"),
        ("pipe.png", "not a regular file (a named pipe, socket or device)")]
    assert source.num_images == 2


def test_names_that_are_not_utf8_are_left_out_or_refused(tmp_path, caplog):
    """A file system may hold names of any bytes; results, lists and predictions are
    text. Such files are left out (said once), such a class folder is refused."""
    import os
    import shutil

    root = make_image_folder(tmp_path / "data", classes=2, per_class=3)
    good = sorted((root / "class_0").iterdir())[0]
    for folder in ("class_0", "class_1"):  # (counted over all classes: it said 1)
        shutil.copyfile(good, os.path.join(os.fsencode(root / folder), b"odd\xfe.png"))
    with caplog.at_level("WARNING"):
        listing = scan_folder(root)
    assert len(listing.paths) == 6 and all(p.isascii() for p in listing.paths)
    assert "2 file(s) left out, their names not valid UTF-8" in caplog.text
    # A folder above the images with such a name: said of it, in one line (every image
    # was left out, then the folder said to hold none)
    above = os.path.join(os.fsencode(tmp_path), b"par\xff")
    shutil.copytree(os.fsencode(root / "class_1"), os.path.join(above, b"t", b"a"))
    with pytest.raises(SimCLRError, match=r"par\\udcff/t': the data folder's path is not "
                                          "valid UTF-8"):
        scan_folder(os.path.join(above, b"t").decode(errors="surrogateescape"))
    os.mkdir(os.path.join(os.fsencode(root), b"cl\xffass"))
    shutil.copyfile(good, os.path.join(os.fsencode(root), b"cl\xffass", b"a.png"))
    with pytest.raises(SimCLRError, match=r"the class folder 'cl\\udcffass' has a name that is "
                                          "not valid UTF-8"):
        scan_folder(root)


def test_more_photo_extensions_are_read_and_unreadable_photos_are_said(tmp_path, caplog):
    """Chrome's .jfif, .jpe and the portable anymaps are read; camera raw files (and
    HEIC without its plugin) are left out with one warning naming them, not silently."""
    from PIL import Image

    root = tmp_path / "photos"
    root.mkdir()
    for name in ("a.jpg", "b.jfif", "c.JPE", "d.pgm", "e.pnm"):
        image = Image.new("L" if name.endswith(("pgm", "pnm")) else "RGB", (8, 8), 90)
        image.save(root / name, format="JPEG" if "j" in name.lower() else "PPM")
    for name in ("f.dng", "g.CR2", "h.cr2", "notes.txt"):
        (root / name).write_bytes(b"raw")
    with caplog.at_level("WARNING"):
        listed = scan_folder(root)
        scan_folder(root)  # (listed again: said once)
    assert [Path(p).name for p in listed.paths] == ["a.jpg", "b.jfif", "c.JPE", "d.pgm",
                                                    "e.pnm"]
    said = [r.getMessage() for r in caplog.records if "formats not read here" in r.getMessage()]
    assert said == [f"{root}: 3 photo(s) in formats not read here left out (.cr2 x2, .dng "
                    "x1); convert them (e.g. to JPEG) to use them"]
    source = open_source(str(root), data_cfg(tmp_path))
    assert source.num_images == 5 and not source.skipped  # every one decodes
    # In a class folder too, where a hidden one (macOS's ._ resource fork) is no photo
    save_image(tmp_path / "tree" / "cat" / "a.jpg")
    for name in ("._a.dng", "b.dng"):
        (tmp_path / "tree" / "cat" / name).write_bytes(b"raw")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert len(scan_folder(tmp_path / "tree").paths) == 1
    assert "1 photo(s) in formats not read here left out (.dng x1)" in caplog.text


def test_images_named_without_an_extension_are_said(tmp_path, caplog):
    """A download saved without its extension (IMG_0001, a PNG, a WebP) is left out, as
    images are listed by name, but said with its count; a file without an extension that
    is no image (LICENSE), a named pipe (never opened: it would wait) and a hidden one
    are not counted. Loose beside class folders and inside them alike."""
    from PIL import Image

    root = tmp_path / "photos"
    save_image(root / "cat" / "a.jpg")
    Image.new("RGB", (8, 8), 90).save(root / "cat" / "IMG_0001", format="JPEG")
    Image.new("RGB", (8, 8), 90).save(root / "cat" / "download", format="WEBP")
    Image.new("RGB", (8, 8), 90).save(root / "cat" / ".hidden", format="PNG")
    Image.new("RGB", (8, 8), 90).save(root / "loose", format="PNG")
    (root / "cat" / "LICENSE").write_text("MIT")
    (root / "cat" / "NOTES").write_text("BMW notes\n")  # (BM: a BMP's letters, no header)
    Image.new("RGB", (8, 8), 90).save(root / "cat" / "scan", format="BMP")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "cat" / "pipe")
    with caplog.at_level("WARNING"):
        listed = scan_folder(root)
    assert [Path(p).name for p in listed.paths] == ["a.jpg"]
    said = [r.getMessage() for r in caplog.records if "without an extension" in r.getMessage()]
    assert said == [f"{root}: 4 image(s) named without an extension left out (images are "
                    "found by their names); rename them with their format's (.jpg, .png, "
                    "...) to use them"]


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch, caplog):
    """A class folder without read permission read as an empty class ("class folder(s)
    without images"), its images left out without a word of why."""
    for name in ("a/0.png", "b/0.png", "b/deeper/1.png"):
        save_image(tmp_path / "data" / name)
    locked = str(tmp_path / "data" / "b" / "deeper")
    scandir = os.scandir

    def refusing(path="."):  # as a folder without read permission (tests may run as root)
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    found = scan_folder(tmp_path / "data")
    assert [Path(p).relative_to(tmp_path / "data").as_posix() for p in found.paths] == [
        "a/0.png", "b/0.png"]
    assert caplog.messages == [f"cannot list the folder {locked} (Permission denied); its "
                               "images are left out"]


def test_a_folder_read_later_may_be_the_digits_as_the_data_may(tmp_path, monkeypatch):
    """--knn-train/--knn-test digits (the demo's own split) passed --data's check but not
    the kNN monitor's ("folder not found: digits")."""
    from simclr.errors import SimCLRError
    from simclr.folders import check_folder

    monkeypatch.chdir(tmp_path)
    check_folder("--knn-train", "digits")
    check_folder("--knn-test", "cifar10")
    (tmp_path / "labeled").mkdir()
    check_folder("--knn-train", str(tmp_path / "labeled"))  # a folder is one
    with pytest.raises(SimCLRError, match=r"^--knn-train: folder not found: digitz \("):
        check_folder("--knn-train", "digitz")


def test_a_missing_relative_folder_says_the_absolute_path_it_looked_at(tmp_path, monkeypatch):
    """A relative path (one a --config file holds too) is read from the current folder,
    not the file's: the message says which folder that was."""
    from simclr.folders import check_folder

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SimCLRError) as info:
        scan_folder("imgs2")
    assert str(info.value) == f"data folder not found: imgs2 ({tmp_path / 'imgs2'})"
    with pytest.raises(SimCLRError) as info:
        check_folder("--test", "sub/imgs2")
    assert str(info.value) == f"--test: folder not found: sub/imgs2 ({tmp_path / 'sub/imgs2'})"
    with pytest.raises(SimCLRError) as info:  # an absolute path is said once
        scan_folder(tmp_path / "imgs2")
    assert str(info.value) == f"data folder not found: {tmp_path / 'imgs2'}"
    with pytest.raises(SimCLRError) as info:  # (said once with a trailing / or a .. too)
        scan_folder(f"{tmp_path}/sub/../imgs2/")
    assert str(info.value) == f"data folder not found: {tmp_path}/sub/../imgs2"


def test_class_members_are_each_class_s_indices_from_one_sort():
    """The same arrays as a comparison of every label per class (N x C: 4.5 s at 1M
    images x 20k classes), for classes in any order, empty ones and unlabeled images."""
    rng = np.random.default_rng(5)
    labels = rng.choice([-1, 0, 2, 5, 6, 9], 500)  # 1, 3, 4, 7, 8 empty
    classes = [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, -1]
    members = class_members(labels, classes)
    assert len(members) == len(classes)
    for c, got in zip(classes, members, strict=True):
        expected = np.flatnonzero(labels == c)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    assert [len(m) for m in class_members(np.zeros(0, np.int64), [0, 1])] == [0, 0]


def _odd_tree(root: Path) -> Path:
    """Nested classes, loose images, linked files and folders, non-ASCII names."""
    for name in ("ä/0.png", "ä/deep/sub/1.png", "b/2.png", "b/日本/3.png", "loose é.png",
                 "loose.jpg"):
        save_image(root / name)
    save_image(root.parent / "elsewhere" / "x.png")
    (root / "b" / "link.png").symlink_to(root.parent / "elsewhere" / "x.png")
    (root / "b" / "linked").symlink_to(root.parent / "elsewhere")
    (root / "top-link.png").symlink_to(root / "loose.jpg")
    return root


def test_the_names_digest_and_cache_key_name_each_file_below_the_folder(tmp_path,
                                                                        monkeypatch):
    """Both hash each file's path relative to the folder (a run's resume and a cache
    compare them: any other string would refuse a resume or rebuild every cache)."""
    import hashlib

    from simclr.cache import _cache_key, _stat_stamp
    from simclr.cache_entries import CACHE_VERSION

    _odd_tree(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    for typed in ("data", "./data/", str(tmp_path / "data")):
        images = scan_folder(typed, unlabeled=True)
        assert len(images.paths) == 9
        names = [os.fsencode(os.path.relpath(p, images.root)) for p in images.paths]
        digest = hashlib.sha256()
        key = hashlib.sha256(f'[{CACHE_VERSION}, 8, 100, "full", false]'.encode())
        for p, name in zip(images.paths, names, strict=True):
            digest.update(name + b"\0")
            key.update(name + f"\0{_stat_stamp(p)}\n".encode())
        assert images.names_digest() == digest.hexdigest()[:16]
        assert _cache_key(images, 8, 100, "full") == key.hexdigest()[:20]


@pytest.mark.parametrize("flat", [True, False])
def test_listing_a_folder_asks_nothing_of_each_file(tmp_path, monkeypatch, flat):
    """A folder's listing tells files from folders (os.scandir's entry types): no stat
    of every entry, and the names below the folder are its paths less its own (no
    os.path.relpath per file), for the names digest and the cache key, which stats each
    file once. (A flat folder of 200k files: 6.7 s to list, 2.1 s to digest.)"""
    from simclr.cache import _cache_key
    from simclr.folders import split_root

    root = tmp_path / "data"
    for i in range(30):
        save_image(root / ("" if flat else f"c{i % 3}") / f"{i}.png")
    calls: dict[str, int] = {"stat": 0, "relpath": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "stat", counted("stat", os.stat))
    monkeypatch.setattr(os.path, "relpath", counted("relpath", os.path.relpath))
    images = scan_folder(split_root(root, train=True), unlabeled=True)
    images.names_digest()
    assert calls == {"stat": pytest.approx(0, abs=5), "relpath": 0}
    _cache_key(images, 8, 100, "full")
    assert calls == {"stat": pytest.approx(30, abs=5), "relpath": 0}


def test_a_root_with_test_and_val_splits_evaluates_on_test(tmp_path):
    """train/, test/ and val/ side by side: evaluation reads test/ (the held-out split),
    pretraining train/."""
    for split in ("train", "test", "val"):
        save_image(tmp_path / split / "a" / "0.png", rgb(8, 8))
    assert list_folder(str(tmp_path), train=False).root == str(tmp_path / "test")
    assert list_folder(str(tmp_path), train=True).root == str(tmp_path / "train")


def test_a_class_folders_images_are_listed_in_sorted_order(tmp_path):
    """Image i is the same file on every listing (subset lists, caches and results go
    by index), whatever order the file system returns names in."""
    names = [f"{n:03d}.png" for n in np.random.default_rng(0).permutation(40)]
    for name in names:  # (created shuffled: a listing's own order is not the names')
        save_image(tmp_path / "a" / name, rgb(4, 4))
    listed = [Path(p).name for p in scan_folder(tmp_path).paths]
    assert listed == sorted(names)


def test_a_link_to_the_filesystem_root_is_never_walked(tmp_path, monkeypatch, caplog):
    """A link to `/` passed the 'link to the folder itself or above it' checks (their
    prefix was '//'): the scan walked the whole file system. Left out, in a class folder
    and as a class folder. (A regression fails fast: the walk is capped.)"""
    import logging

    from simclr import folders

    walk = folders._walk

    def capped(top, onerror):
        for k, step in enumerate(walk(top, onerror)):
            assert k < 50, f"walked {k} folders below {top}"
            yield step

    monkeypatch.setattr(folders, "_walk", capped)
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        save_image(root / name / "a.png")
    (root / "cat" / "everything").symlink_to("/")
    (root / "everything").symlink_to("/")
    with caplog.at_level(logging.WARNING):
        listing = scan_folder(root)
    assert listing.classes == ["cat", "dog"] and len(listing.paths) == 2
    assert f"{root}: everything links back to a folder above it (/); left out" in [
        r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("names", [("Train", "Test"), ("TRAIN", "VAL"), ("train", "Valid")])
def test_capitalised_split_folders_are_splits(tmp_path, caplog, names):
    """Train/ and Test/ (or VAL/...) were read as two classes named after the splits,
    with no note: pretraining trained on the test images, evaluation learnt 'Train vs
    Test'. Split names are compared case-insensitively."""
    root = tmp_path / "ds"
    train, test = names
    for split in names:
        save_image(root / split / "cat" / "1.png")
        save_image(root / split / "dog" / "1.png")
    with caplog.at_level("INFO"):
        assert list_folder(str(root), True).root == str(root / train)
        assert list_folder(str(root), False).root == str(root / test)
        assert list_folder(str(root), True).classes == ["cat", "dog"]
    said = [r.getMessage() for r in caplog.records if "holds splits" in r.getMessage()]
    assert said == [f"{root} holds splits; using {root / s} (give {root / o} for the other)"
                    for s, o in ((train, test), (test, train))]


def test_a_split_spelled_in_two_cases_is_read_anew_and_its_lower_case_twin_chosen(tmp_path):
    """Releases before 2026-12-06 read split folders in lower case only: train/ beside
    Test/ was two classes then, its train/ split now (split_read_anew says so). Should
    Train/ and train/ both be there, the lower-case one is the split."""
    from simclr.folders import split_read_anew

    for split in ("train", "Test"):
        make_image_folder(tmp_path / "mixed" / split, classes=1, per_class=1)
    assert split_read_anew(str(tmp_path / "mixed")) == tmp_path / "mixed" / "train"
    for split in ("train", "test"):  # as every release read it: nothing anew
        make_image_folder(tmp_path / "lower" / split, classes=1, per_class=1)
    assert split_read_anew(str(tmp_path / "lower")) is None
    for split in ("Train", "train", "test"):
        make_image_folder(tmp_path / "twins" / split, classes=1, per_class=1)
    listed = list_folder(str(tmp_path / "twins"), train=True)
    assert listed is not None and all("/twins/train/" in p for p in listed.paths)


def test_a_third_split_in_capitals_is_left_out_with_a_note_not_a_warning(tmp_path, caplog):
    """Val/ beside Train/ and Test/ is a split too (an INFO note); another folder, a
    warning."""
    import logging

    for split in ("Train", "Test", "Val"):
        make_image_folder(tmp_path / "three" / split, classes=1, per_class=1)
    with caplog.at_level(logging.INFO, logger="simclr"):
        list_folder(str(tmp_path / "three"), train=True)
    said = [r for r in caplog.records if "left out: Val" in r.getMessage()]
    assert said and all(r.levelno == logging.INFO for r in said)


def test_questions_about_a_folders_splits_say_nothing(tmp_path, caplog):
    """split_read_anew and split_name answer a question (`simclr info`, a continued
    evaluation's checks) without reading the folder: they printed 'DIR holds splits;
    using DIR/Train' though nothing read it, or the user named the split. The listing
    that reads it still says so, once."""
    from simclr.folders import split_name, split_read_anew

    root = tmp_path / "ds"
    for split in ("Train", "Test"):
        make_image_folder(root / split, classes=1, per_class=1)
    with caplog.at_level("INFO"):
        assert split_read_anew(str(root)) == root / "Train"
        assert (split_name(str(root), True), split_name(str(root), False)) == ("Train", "Test")
        assert split_name(str(root / "Train"), True) is None  # (no splits: the folder)
        assert not caplog.records
        assert list_folder(str(root), True).root == str(root / "Train")
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{root} holds splits; using {root / 'Train'} (give {root / 'Test'} for "
                    "the other)"]


def test_nested_folders_are_listed_depth_first_in_sorted_order_whatever_the_listing(
        tmp_path, monkeypatch):
    """A class folder's sub-folders are walked in sorted order, each before the next
    (its own files first): image i is the same file whatever order the file system
    lists names in (here: reversed)."""
    root = tmp_path / "data"
    for name in ("a/0.png", "a/b/1.png", "a/b/c/2.png", "a/d/3.png", "a/e.png"):
        save_image(root / name, rgb(4, 4))
    scandir = os.scandir

    class Reversed:
        def __init__(self, path="."):
            with scandir(path) as scan:
                self.entries = sorted(scan, key=lambda e: e.name, reverse=True)

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return iter(self.entries)

    monkeypatch.setattr(os, "scandir", Reversed)
    listed = [Path(p).relative_to(root).as_posix() for p in scan_folder(root).paths]
    assert listed == ["a/0.png", "a/e.png", "a/b/1.png", "a/b/c/2.png", "a/d/3.png"]


def test_a_linked_folder_whose_path_begins_as_the_folders_does_is_no_loop(tmp_path):
    """Only a link to the folder itself or a folder above it is a loop: one to a folder
    whose name is a prefix of it (data/more -> dat, data/cat/linked -> da) is read."""
    root = tmp_path / "data"
    save_image(root / "cat" / "a.png", rgb(4, 4))
    save_image(tmp_path / "dat" / "b.png", rgb(4, 4))
    save_image(tmp_path / "da" / "c.png", rgb(4, 4))
    (root / "more").symlink_to(tmp_path / "dat")
    (root / "cat" / "linked").symlink_to(tmp_path / "da")
    listing = scan_folder(root)
    assert listing.classes == ["cat", "more"]
    assert [(listing.classes[c], Path(p).name) for p, c in
            zip(listing.paths, listing.labels, strict=True)] == [
        ("cat", "a.png"), ("cat", "c.png"), ("more", "b.png")]


@pytest.mark.parametrize("split", ["train", "Test", "val"])
def test_one_split_name_alone_is_a_class_not_a_split(tmp_path, split):
    """train/ without a held-out split beside it (or test/ without train/) is no data
    set's splits: a class of that name, the folder read whole."""
    for name in (split, "zebra"):
        save_image(tmp_path / "ds" / name / "1.png", rgb(4, 4))
    for train in (True, False):
        listed = list_folder(str(tmp_path / "ds"), train)
        assert listed.root == str(tmp_path / "ds") and listed.classes == sorted([split, "zebra"])


def test_a_named_data_set_is_known_in_any_case_unless_a_folder_of_its_name_is_there(
        tmp_path, monkeypatch):
    """'CIFAR10' is torchvision's data set as 'cifar10' is; a folder called cifar10 (or
    digits) in the current folder is that folder, listed as one."""
    from simclr.folders import named_dataset, torchvision_dataset

    monkeypatch.chdir(tmp_path)
    assert torchvision_dataset("CIFAR10") and torchvision_dataset("stl10")
    assert not torchvision_dataset("digits") and named_dataset("digits")
    for name in ("cifar10", "digits"):
        save_image(tmp_path / name / "cat" / "1.png", rgb(4, 4))
        assert not named_dataset(name) and not torchvision_dataset(name)
        assert list_folder(name).classes == ["cat"]


def test_jpegs_are_known_by_their_names_in_any_case():
    """A camera's IMG_0001.JPG is a JPEG (the one format --decoder device decodes)."""
    from simclr.folders import holds_jpegs

    assert holds_jpegs(["a/x.png", "a/IMG_0001.JPG"]) and holds_jpegs(["b.jfif"])
    assert not holds_jpegs(["a/x.png", "a/jpg.gif"]) and not holds_jpegs([])


def test_only_an_image_header_counts_a_file_without_an_extension(tmp_path):
    """RIFF alone is a WAV's or an AVI's start too (WebP: RIFF....WEBP); BM with a header
    size but nonzero reserved bytes is no BMP."""
    from simclr import folders

    (tmp_path / "wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    (tmp_path / "webp").write_bytes(b"RIFF\x24\x00\x00\x00WEBPVP8 ")
    bmp = b"BM" + (70).to_bytes(4, "little") + bytes(4) + (54).to_bytes(4, "little") + \
        (40).to_bytes(4, "little")
    (tmp_path / "bmp").write_bytes(bmp)
    (tmp_path / "notbmp").write_bytes(bmp[:6] + b"text" + bmp[10:])
    assert [folders._image_bytes(str(tmp_path / n)) for n in ("wav", "webp", "bmp", "notbmp")] \
        == [False, True, True, False]
