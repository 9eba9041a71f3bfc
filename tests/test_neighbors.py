"""Tests for simclr.neighbors: nearest images and near-duplicates from embed files,
checked against a direct float64 loop over every pair."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch

import simclr.neighbors as nb
from simclr.cli import main
from tests.conftest import named_pipe

pytestmark = pytest.mark.usefixtures("one_thread")


def embed_file(path, features, names=None, encoder=None, old_layout=False, weights=None):
    """An embed file as `simclr embed` writes it; ``old_layout``: as an earlier simclr
    wrote it (the paths one fixed-width str array); ``weights``: its record of them."""
    names = names or [f"/photos/{i:03d}.jpg" for i in range(len(features))]
    extra = {} if encoder is None else {"encoder": np.array(encoder)}
    extra |= {} if weights is None else {nb.WEIGHTS_KEY: np.array(weights)}
    paths = {"paths": np.array(names)} if old_layout else {nb.PATHS_KEY: nb.paths_array(names)}
    np.savez(path, features=np.asarray(features, dtype=np.float32),
             labels=np.full(len(features), -1), classes=np.array([], dtype=str),
             **paths, **extra)
    return path


def cosine64(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("block_bytes", [1 << 28, 4 * 7 * 3])  # one block; 3 rows a block
def test_nearest_images_match_a_loop_over_every_pair(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(nb, "BLOCK_BYTES", block_bytes)
    feats = np.random.default_rng(0).normal(size=(7, 5)) * np.arange(1, 8)[:, None]
    embed_file(tmp_path / "f.npz", feats)
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "n.csv"), "--k", "3"]) == 0
    table = rows(tmp_path / "n.csv")
    assert table[0] == ["path", "neighbor1", "similarity1", "neighbor2", "similarity2",
                        "neighbor3", "similarity3"]
    for i, row in enumerate(table[1:]):
        sims = {j: cosine64(feats[i], feats[j]) for j in range(7) if j != i}  # never itself
        best = sorted(sims, key=sims.get, reverse=True)[:3]
        assert row[0] == f"/photos/{i:03d}.jpg"
        assert row[1::2] == [f"/photos/{j:03d}.jpg" for j in best]
        assert [float(s) for s in row[2::2]] == pytest.approx([sims[j] for j in best], abs=1e-5)


def test_a_long_search_shows_its_progress(tmp_path, monkeypatch, capsys):
    """neighbors over 100k embeddings ran 148 s without a word: the blocks done are shown
    (here a line at each of them), the duplicates' as pairs compared."""
    from simclr import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.setattr(nb, "BLOCK_BYTES", 4 * 7 * 3)  # 3 rows a block
    embed_file(tmp_path / "f.npz", np.random.default_rng(0).normal(size=(7, 5)))
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "n.csv"), "--k", "3"]) == 0
    err = capsys.readouterr().err
    assert [line.split(",")[0] for line in err.splitlines()] == [
        "neighbors: 3/7 images", "neighbors: 6/7 images", "neighbors: 7/7 images"]
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "d.csv"), "--duplicates", "0.9"]) == 0
    err = capsys.readouterr().err
    said = [line.split(",")[0] for line in err.splitlines() if line.startswith("duplicates")]
    assert said == ["duplicates: 15/21 pairs", "duplicates: 21/21 pairs"]  # (6 + 5 + 4, then 6)


def test_exact_duplicates_at_threshold_one_and_queries_that_are_keys(tmp_path):
    """float32 puts the cosine of equal vectors within ~1e-6 of 1: --duplicates 1 still
    finds them; a query that is also a key (same path) never finds itself."""
    feats = np.random.default_rng(3).normal(size=(40, 16))
    feats[25] = feats[7]
    embed_file(tmp_path / "f.npz", feats)
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "d.csv"), "--duplicates", "1"]) == 0
    assert [r[:3] for r in rows(tmp_path / "d.csv")[1:]] == [
        ["/photos/007.jpg", "/photos/025.jpg", "1.000000"]]
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--queries",
                 str(tmp_path / "f.npz"), "--out", str(tmp_path / "n.csv"), "--k", "39"]) == 0
    table = rows(tmp_path / "n.csv")[1:]
    assert all(row[0] not in row[1::2] for row in table)  # k = N - 1: every other image
    assert table[7][1] == "/photos/025.jpg" and table[25][1] == "/photos/007.jpg"


def test_queries_from_another_file(tmp_path, capsys):
    keys = np.eye(4)
    embed_file(tmp_path / "k.npz", keys)
    embed_file(tmp_path / "q.npz", [[0.1, 0.0, 2.0, 0.0]], ["/new/q.jpg"])
    assert main(["neighbors", "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "q.npz"), "--out", str(tmp_path / "n.csv"), "--k", "4"]) == 0
    row = rows(tmp_path / "n.csv")[1]
    assert row[0] == "/new/q.jpg" and row[1] == "/photos/002.jpg"  # itself is no key here
    assert float(row[2]) == pytest.approx(2 / np.hypot(0.1, 2.0), abs=1e-6)
    result = nb.write_neighbors(tmp_path / "k.npz", tmp_path / "n2.csv", 2, tmp_path / "q.npz")
    assert (result["queries"], result["images"], result["k"]) == (1, 4, 2)
    # The keys' own files embedded through a link to their folder: still never themselves
    (tmp_path / "real").mkdir()
    names = [str(tmp_path / "real" / f"{i}.jpg") for i in range(4)]
    for name in names:
        open(name, "w").close()
    os.symlink(tmp_path / "real", tmp_path / "link")
    embed_file(tmp_path / "k.npz", keys, names)
    embed_file(tmp_path / "q.npz", keys[2:3], [str(tmp_path / "link" / "2.jpg")])
    assert main(["neighbors", "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "q.npz"), "--out", str(tmp_path / "s.csv"), "--k", "3"]) == 0
    assert names[2] not in rows(tmp_path / "s.csv")[1][1::2]  # (it was first, at 1.000000)
    capsys.readouterr()  # (the notes above: those files record no encoder)
    # features of two encoders of the same width are not comparable: refused
    embed_file(tmp_path / "k.npz", keys, encoder="/runs/a/last.pt step 10 layer h")
    embed_file(tmp_path / "q.npz", [[0.1, 0.0, 2.0, 0.0]], ["/new/q.jpg"],
               encoder="/runs/b/last.pt step 10 layer h")
    assert main(["neighbors", "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "q.npz"), "--out", str(tmp_path / "m.csv"), "--k", "4"]) == 2
    assert capsys.readouterr().err == (
        "simclr neighbors: error: --queries were embedded by /runs/b/last.pt step 10 layer h, "
        "--features by /runs/a/last.pt step 10 layer h: embed both with the same checkpoint "
        "and layer\n")


def test_a_file_without_its_encoder_says_the_check_cannot_be_made(tmp_path, capsys):
    """An earlier simclr's embed recorded no encoder: the same-encoder check was skipped
    in silence, and similarities between two encoders' features listed, exit 0."""
    keys = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    embed_file(tmp_path / "k.npz", keys, encoder="/runs/a/last.pt step 10 layer h")
    embed_file(tmp_path / "old.npz", [[1.0, 0.5]], ["/new/q.jpg"], old_layout=True)
    args = ["neighbors", "--out", str(tmp_path / "n.csv"), "--k", "2"]
    assert main([*args, "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "old.npz")]) == 0
    err = capsys.readouterr().err
    assert err == (f"note: --queries {tmp_path / 'old.npz'}: no record of the encoder that "
                   "embedded it (an earlier simclr's embed wrote it): whether --features "
                   "and --queries come from the same checkpoint and layer cannot be "
                   "checked\n")
    assert len(rows(tmp_path / "n.csv")) == 2  # (still written: a note, not a refusal)
    # Both recorded and equal: no note
    embed_file(tmp_path / "q.npz", [[1.0, 0.5]], ["/new/q.jpg"],
               encoder="/runs/a/last.pt step 10 layer h")
    assert main([*args, "--overwrite", "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "q.npz")]) == 0
    assert capsys.readouterr().err == ""


def test_the_same_encoder_is_the_same_weights_where_both_files_record_them(tmp_path, capsys):
    """The check compared checkpoint paths alone: a copy of a run (or its export) was
    refused, another run pretrained at the same path accepted. A file without the
    weights' record (an earlier simclr's) is still checked by path."""
    keys = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    a, b = "sha256 0123456789abcdef layer h at 32 px", "sha256 fedcba9876543210 layer h at 32 px"
    args = ["neighbors", "--out", str(tmp_path / "n.csv"), "--k", "2", "--overwrite",
            "--features", str(tmp_path / "k.npz"), "--queries", str(tmp_path / "q.npz")]
    embed_file(tmp_path / "k.npz", keys, encoder="/runs/a/last.pt step 10 layer h", weights=a)
    embed_file(tmp_path / "q.npz", [[1.0, 0.5]], ["/new/q.jpg"],
               encoder="/runs/copy/last.pt step 10 layer h", weights=a)
    assert main(args) == 0 and capsys.readouterr().err == ""
    embed_file(tmp_path / "q.npz", [[1.0, 0.5]], ["/new/q.jpg"],
               encoder="/runs/a/last.pt step 10 layer h", weights=b)
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "simclr neighbors: error: --queries and --features were both embedded by "
        "/runs/a/last.pt step 10 layer h, but with other weights (the checkpoint was replaced "
        "between the two embeds): embed both with the same checkpoint and layer\n")
    embed_file(tmp_path / "q.npz", [[1.0, 0.5]], ["/new/q.jpg"],
               encoder="/runs/b/last.pt step 10 layer h", weights=b)
    assert main(args) == 2
    assert "--queries were embedded by /runs/b/last.pt" in capsys.readouterr().err
    embed_file(tmp_path / "q.npz", [[1.0, 0.5]], ["/new/q.jpg"],  # (a torchvision export
               encoder="/runs/a.pt step 10 layer h at 224 px",  # embeds at 224 px)
               weights="sha256 0123456789abcdef layer h at 224 px")
    assert main(args) == 2
    assert capsys.readouterr().err.endswith(
        "the same weights but at other layers or sides (layer h at 224 px against layer h at "
        "32 px): embed both with the same --layer and --image-size\n")
    # an earlier simclr's file (no weights recorded): the paths decide, as before
    for name, status in (("/runs/a/last.pt step 10 layer h", 0),
                         ("/runs/copy/last.pt step 10 layer h", 2)):
        embed_file(tmp_path / "q.npz", [[1.0, 0.5]], ["/new/q.jpg"], encoder=name)
        assert main(args) == status
    assert "--queries were embedded by /runs/copy/last.pt" in capsys.readouterr().err


def test_a_file_under_two_paths_never_finds_itself_under_either(tmp_path):
    """Only the last of a file's paths among the keys was excluded: embedded as a.jpg
    and through a link as b.jpg, a query of it found its other name at 1.000000 first."""
    (tmp_path / "real").mkdir()
    names = [str(tmp_path / "real" / f"{i}.jpg") for i in range(4)]
    for name in names:
        open(name, "w").close()
    os.symlink(names[1], tmp_path / "real" / "also1.jpg")
    os.symlink(tmp_path / "real", tmp_path / "link")
    feats = np.random.default_rng(5).normal(size=(5, 8))
    feats[4] = feats[1]  # the same file, embedded twice
    embed_file(tmp_path / "k.npz", feats, [*names, str(tmp_path / "real" / "also1.jpg")])
    assert main(["neighbors", "--features", str(tmp_path / "k.npz"), "--out",
                 str(tmp_path / "n.csv"), "--k", "3"]) == 0
    table = rows(tmp_path / "n.csv")[1:]
    for q in (1, 4):
        assert {names[1], str(tmp_path / "real" / "also1.jpg")}.isdisjoint(table[q][1::2])
    assert len(table[0][1::2]) == 3  # (the others: 4 keys to choose from)
    embed_file(tmp_path / "q.npz", feats[1:2], [str(tmp_path / "link" / "1.jpg")])
    assert main(["neighbors", "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "q.npz"), "--out", str(tmp_path / "q.csv"), "--k", "3"]) == 0
    found = rows(tmp_path / "q.csv")[1][1::2]
    assert sorted(found) == sorted([names[0], names[2], names[3]])
    assert main(["neighbors", "--features", str(tmp_path / "k.npz"), "--queries",
                 str(tmp_path / "q.npz"), "--out", str(tmp_path / "r.csv"), "--k", "4"]) == 2


@pytest.mark.skipif(not hasattr(os, "link"), reason="no hard links here")
def test_a_hard_linked_file_never_finds_itself_under_its_other_name(tmp_path):
    """A hard link is one file under two names, which its real path does not tell: each
    name was the other's nearest neighbour at similarity 1."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [str(folder / f"{i}.jpg") for i in range(3)]
    for name in names:
        open(name, "wb").close()
    os.link(names[1], folder / "1b.jpg")
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.0, 1.0]])
    embed_file(tmp_path / "f.npz", feats, [*names, str(folder / "1b.jpg")])
    nb.write_neighbors(tmp_path / "f.npz", tmp_path / "n.csv", k=1)
    table = {r[0]: r[1] for r in rows(tmp_path / "n.csv")[1:]}
    assert table[names[1]] != str(folder / "1b.jpg")
    assert table[str(folder / "1b.jpg")] != names[1]


def test_without_k_a_small_folder_lists_every_other_image(tmp_path, capsys):
    """The default 5 neighbours of a folder of 3 images was refused as "--k 5: there are
    2 other images", a flag never given; it lists the 2. A --k given is still checked."""
    embed_file(tmp_path / "f.npz", np.eye(3), [f"/p/{i}.jpg" for i in range(3)])
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "n.csv")]) == 0
    assert [len(r) for r in rows(tmp_path / "n.csv")] == [5, 5, 5, 5]  # 2 neighbours each
    capsys.readouterr()
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "m.csv"), "--k", "3"]) == 2
    assert "--k 3: there are 2 other images to choose from" in capsys.readouterr().err
    embed_file(tmp_path / "two.npz", np.eye(2))  # one other image: it, not a refusal
    assert nb.write_neighbors(tmp_path / "two.npz", tmp_path / "t.csv")["k"] == 1
    embed_file(tmp_path / "eight.npz", np.eye(8))  # more than 5 others: the default 5
    assert nb.write_neighbors(tmp_path / "eight.npz", tmp_path / "e.csv")["k"] == 5
    assert [len(r) for r in rows(tmp_path / "e.csv")] == [11] * 9


def test_duplicates_of_one_similarity_are_listed_in_pair_order(tmp_path):
    """Pairs tied at one similarity come in order of their first image, then second."""
    i, j, _ = nb.duplicate_pairs(torch.ones(4, 3) / 3 ** 0.5, 0.9)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [
        (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("duplicates", [False, True])
def test_a_table_written_meanwhile_is_kept_without_overwrite(tmp_path, monkeypatch,
                                                             duplicates):
    """Two `simclr neighbors --out n.csv` at once: the second to finish is refused and
    the first's table kept (with overwrite, the Python default, it is replaced)."""
    embed_file(tmp_path / "f.npz", np.eye(3))
    out = tmp_path / "n.csv"
    search = nb.duplicate_pairs if duplicates else nb.nearest

    def meanwhile(*args, **kwargs):
        out.write_text("theirs\n")
        return search(*args, **kwargs)

    monkeypatch.setattr(nb, "duplicate_pairs" if duplicates else "nearest", meanwhile)
    write = (lambda **kw: nb.write_duplicates(tmp_path / "f.npz", out, 0.5, **kw)) \
        if duplicates else (lambda **kw: nb.write_neighbors(tmp_path / "f.npz", out, **kw))
    with pytest.raises(nb.SimCLRError, match="was written meanwhile by another process"):
        write(overwrite=False)
    assert out.read_text() == "theirs\n"
    write()
    assert rows(out)[0][0] in ("path", "path_a")


def test_paths_any_locale_cannot_spell_are_written_as_utf8(tmp_path, cp1252_locale):
    """Under a locale of one code page (Windows' cp1252) a path such as 日本/犬.jpg
    failed the write (UnicodeEncodeError) after every similarity was computed: the
    CSV files are UTF-8, whatever the locale."""
    names = ["/photos/日本/犬.jpg", "/photos/café.jpg", "/photos/日本/猫.jpg"]
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.001]])
    embed_file(tmp_path / "f.npz", feats, names)
    nb.write_neighbors(tmp_path / "f.npz", tmp_path / "n.csv", k=1)
    assert [r[:2] for r in rows(tmp_path / "n.csv")[1:]] == [
        [names[0], names[2]], [names[1], names[2]], [names[2], names[0]]]
    nb.write_duplicates(tmp_path / "f.npz", tmp_path / "d.csv", 0.99)
    assert [r[:2] for r in rows(tmp_path / "d.csv")[1:]] == [[names[0], names[2]]]


@pytest.mark.parametrize("duplicates", [[], ["--duplicates", "0.5"]])
def test_a_path_whose_bytes_are_not_utf8_is_written_as_those_bytes(tmp_path, capsys,
                                                                  duplicates):
    """A file name that is not UTF-8 (read as surrogate escapes: an earlier simclr's
    file, or the Python API's) failed the CSV write with a UnicodeEncodeError traceback
    after every similarity was computed; its own bytes are written, the others' UTF-8."""
    names = ["/photos/a\udcff.jpg", "/photos/日本.jpg", "/photos/b.jpg"]
    embed_file(tmp_path / "f.npz", [[1.0, 0.0], [1.0, 0.001], [0.0, 1.0]], names)
    out = tmp_path / "n.csv"
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out", str(out),
                 *(duplicates or ["--k", "1"])]) == 0
    capsys.readouterr()
    assert b"/photos/a\xff.jpg" in out.read_bytes()
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
        written = [row[:2] for row in csv.reader(f)][1:]
    assert written == ([names[:2]] if duplicates else
                       [names[:2], names[1::-1], [names[2], names[1]]])


@pytest.mark.parametrize("duplicates", [[], ["--duplicates", "0.5"]])
def test_an_out_spelled_from_the_home_folder_is_written_there(tmp_path, monkeypatch, capsys,
                                                               duplicates):
    """--out ~/n.csv was checked (the overwrite guard) at HOME/n.csv but written to
    ./~/n.csv: a file there was overwritten without a word, and HOME's never written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    (tmp_path / "~" / "n.csv").write_text("theirs\n")
    embed_file(tmp_path / "f.npz", np.random.default_rng(0).normal(size=(8, 3)))
    argv = ["neighbors", "--features", "f.npz", "--out", "~/n.csv", *duplicates]
    assert main(argv) == 0
    assert rows(home / "n.csv")[0][0] in ("path", "path_a")
    assert (tmp_path / "~" / "n.csv").read_text() == "theirs\n"
    capsys.readouterr()
    assert main(argv) == 2  # now there: the guard sees the file the write would replace
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(("cell", "written"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+SUM(1)", "'+SUM(1)"),
    ("-cmd", "'-cmd"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("-", "'-"),
    ("-1", "-1"), ("+3", "+3"),
    ("-1+2", "'-1+2"), ("+3*A1", "'+3*A1"),  # (a number followed by more: a formula)
    ("-2.5e-3", "-2.5e-3"), ("a=b", "a=b"), ("/p/=x.jpg", "/p/=x.jpg"),
    ("", ""),
    # digits of other scripts (Arabic-Indic, Devanagari): no number a spreadsheet reads,
    # quoted as any other text after - or +
    ("-\u0661\u0662", "'-\u0661\u0662"), ("+\u0967", "'+\u0967"),
])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(cell, written):
    """OWASP's advice against CSV injection: a leading ' keeps = + - @ tab CR from
    starting a formula; a plain number (a class named -1) is no formula and stays."""
    assert nb.spreadsheet_cell(cell) == written


def test_paths_starting_a_formula_are_quoted_in_both_tables(tmp_path):
    """A received embed file's paths reach the tables: none starts a formula there."""
    feats = np.random.default_rng(3).normal(size=(3, 8))
    feats[2] = feats[0]
    embed_file(tmp_path / "f.npz", feats, names=["=1+1", "-2", "@a"])
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "n.csv"), "--k", "2"]) == 0
    assert {row[0] for row in rows(tmp_path / "n.csv")[1:]} == {"'=1+1", "-2", "'@a"}
    assert {row[1] for row in rows(tmp_path / "n.csv")[1:]} <= {"'=1+1", "-2", "'@a"}
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "d.csv"), "--duplicates", "1"]) == 0
    assert rows(tmp_path / "d.csv")[1][:2] == ["'=1+1", "'@a"]


def test_duplicates_are_every_pair_above_the_threshold(tmp_path, capsys):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(6, 8))
    feats = np.concatenate([base, base[[0, 0, 3]] + 0.01 * rng.normal(size=(3, 8))])
    embed_file(tmp_path / "f.npz", feats)
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "d.csv"), "--duplicates", "0.99"]) == 0
    found = [(r[0], r[1], float(r[2])) for r in rows(tmp_path / "d.csv")[1:]]
    expected = sorted(((f"/photos/{i:03d}.jpg", f"/photos/{j:03d}.jpg",
                        cosine64(feats[i], feats[j])) for i in range(9) for j in range(i + 1, 9)
                       if cosine64(feats[i], feats[j]) >= 0.99), key=lambda p: -p[2])
    assert [p[:2] for p in found] == [p[:2] for p in expected]
    assert {p[:2] for p in found} == {("/photos/000.jpg", "/photos/006.jpg"),
                                      ("/photos/000.jpg", "/photos/007.jpg"),
                                      ("/photos/006.jpg", "/photos/007.jpg"),
                                      ("/photos/003.jpg", "/photos/008.jpg")}
    assert [p[2] for p in found] == pytest.approx([p[2] for p in expected], abs=1e-5)
    assert "4 pairs at similarity >= 0.99; 5 of 9 images have a near-duplicate" in \
        capsys.readouterr().err


@pytest.mark.parametrize("block_bytes", [1 << 28, 4 * 40 * 3])  # one block; 3 rows & up
def test_duplicate_pairs_match_every_pair_computing_half_the_matrix(monkeypatch, block_bytes):
    """Arrays (i, j, similarity) of every pair i < j at >= the threshold, as a float64
    loop over every pair finds them (at 1: the exact duplicates, within float32's
    rounding), most similar first; only the blocks on and above the diagonal of the
    similarity matrix are computed (the full matrix did all the work twice)."""
    import torch

    monkeypatch.setattr(nb, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(40, 8))
    feats[30:35] = feats[[1, 1, 4, 9, 20]]  # exact duplicates
    feats[35:] = feats[[2, 5, 5, 11, 30]] + 0.03 * rng.normal(size=(5, 8))  # near ones
    x = torch.nn.functional.normalize(torch.as_tensor(feats, dtype=torch.float32), dim=1)
    cos = {(i, j): cosine64(feats[i], feats[j]) for i in range(40) for j in range(i + 1, 40)}
    computed = []
    real = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: (
        computed.append(a.shape[0] * b.shape[1]), real(a, b))[1])
    found = []
    for threshold, cut in ((1.0, 1 - 1e-5), (0.99, 0.99)):  # at 1: float32's tolerance
        # (no pair within float32's reach of the cut: the loop's answer is the answer)
        assert not any(abs(c - cut) < 5e-6 for c in cos.values())
        i, j, sims = nb.duplicate_pairs(x, threshold)
        assert [a.dtype for a in (i, j, sims)] == [np.int64, np.int64, np.float32]
        pairs = list(zip(i.tolist(), j.tolist(), strict=True))
        assert set(pairs) == {p for p, c in cos.items() if c >= cut}
        np.testing.assert_array_equal(np.lexsort((j, i, -sims)), np.arange(len(sims)))
        np.testing.assert_allclose(sims, [cos[p] for p in pairs], atol=1e-6)
        found.append(len(pairs))
    assert found[0] == 6 and found[1] > 6  # the exact duplicates; the near ones too
    if block_bytes < 1 << 28:  # (one block is the whole matrix)
        assert sum(computed) < 2 * 0.6 * 40 * 40, computed  # ~ the upper half, twice

@pytest.mark.parametrize(("args", "needle"), [
    (["--features", "{tmp}/missing.npz"], "--features {tmp}/missing.npz: file not found"),
    (["--features", "{tmp}/other.npz"], "no 'features' array; give a file written by"),
    (["--features", "{tmp}/f.npz", "--k", "3"], "--k 3: there are 2 other images"),
    (["--features", "{tmp}/f.npz", "--duplicates", "1.5"], "a cosine similarity lies in"),
    # the threshold is checked first: its range, not the flag that would be ignored
    (["--features", "{tmp}/f.npz", "--duplicates", "1.5", "--k", "2"], "lies in [-1, 1]"),
    (["--features", "{tmp}/f.npz", "--queries", "{tmp}/wide.npz"], "4-d features, --features"),
    (["--features", "{tmp}/wide.npz", "--queries", "{tmp}/f.npz"], "3-d features, --features"),
    (["--features", "{tmp}/f.npz", "--duplicates", "0.9", "--queries", "{tmp}/f.npz"],
     "drop --queries"),
    (["--features", "{tmp}/f.npz", "--duplicates", "0.9", "--k", "2"], "drop --k"),
    (["--features", "{tmp}/f.npy"], "not a readable .npz file"),
    (["--features", "{tmp}/cut.npz"], "not a readable .npz file"),
    (["--features", "{tmp}/text.txt"], "text.txt: not a readable .npz file written by "
                                       "`simclr embed`\n"),  # (no advice about pickles)
    (["--features", "{tmp}/empty.npz"], "empty.npz: the file holds no images"),
    (["--features", "{tmp}/nopaths.npz"], "no 'paths_utf8' array; give a file written by"),
    (["--features", "{tmp}/unended.npz"], "unended.npz: not a readable .npz file"),
    (["--features", "{tmp}/paths2d.npz"], "paths2d.npz: not a readable .npz file"),
    (["--features", "{tmp}/fewer.npz"], "features (3, 3) float32 do not match its 2 paths"),
    # a received file's: a complex array lost its imaginary part, D=0 gave neighbours of
    # nothing (all similarities 0), both silently
    (["--features", "{tmp}/complex.npz"], "features (3, 3) complex64 are no real numbers"),
    (["--features", "{tmp}/nodim.npz"], "features (3, 0) float32 have no dimension"),
    # as many rows as paths, but no numbers: said so, not that they "do not match" the paths
    (["--features", "{tmp}/bool.npz"], "features (3, 3) bool are no real numbers"),
    (["--features", "{tmp}/text.npz"], "features (3, 3) <U1 are no real numbers"),
])
def test_user_errors_are_one_line(tmp_path, capsys, args, needle):
    embed_file(tmp_path / "f.npz", np.eye(3))
    embed_file(tmp_path / "wide.npz", np.eye(4))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    np.save(tmp_path / "f.npy", np.eye(3))  # an array, not an embed archive
    (tmp_path / "cut.npz").write_bytes((tmp_path / "f.npz").read_bytes()[:100])  # truncated
    (tmp_path / "text.txt").write_text("a text file\n")
    embed_file(tmp_path / "empty.npz", np.zeros((0, 3)), [])
    np.savez(tmp_path / "nopaths.npz", features=np.eye(3, dtype=np.float32))
    np.savez(tmp_path / "unended.npz", features=np.eye(3, dtype=np.float32),
             paths_utf8=np.frombuffer(b"a\0b\0c", np.uint8))  # (damaged: cut short)
    np.savez(tmp_path / "paths2d.npz", features=np.eye(3, dtype=np.float32),
             paths=np.array([["a"], ["b"], ["c"]]))
    embed_file(tmp_path / "fewer.npz", np.eye(3), ["a", "b"])
    names = nb.paths_array(["a", "b", "c"])
    np.savez(tmp_path / "complex.npz", features=np.eye(3, dtype=np.complex64),
             **{nb.PATHS_KEY: names})
    np.savez(tmp_path / "nodim.npz", features=np.zeros((3, 0), np.float32),
             **{nb.PATHS_KEY: names})
    np.savez(tmp_path / "bool.npz", features=np.eye(3, dtype=bool), **{nb.PATHS_KEY: names})
    np.savez(tmp_path / "text.npz", features=np.full((3, 3), "x"), **{nb.PATHS_KEY: names})
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["neighbors", *args, "--out", str(tmp_path / "n.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "n.csv").exists()


@pytest.mark.parametrize(("threshold", "advice"), [
    ("0.5", "raise the threshold (e.g. 0.75)"),
    ("0.99", "raise the threshold (e.g. 0.995)"),  # once advised 0.95, a lower one
    ("0.9995", "they are (near-)identical copies"),  # nothing below 1 to raise it to
    ("0.999", "they are (near-)identical copies"),  # (0.999 itself: no higher advice)
    ("1", "they are (near-)identical copies"),
])
def test_too_many_pairs_is_said_before_they_are_gathered(tmp_path, capsys, monkeypatch,
                                                         threshold, advice):
    monkeypatch.setattr(nb, "MAX_PAIRS", 2)
    embed_file(tmp_path / "f.npz", np.ones((4, 3)))  # 6 identical pairs
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "d.csv"), "--duplicates", threshold]) == 2
    err = capsys.readouterr().err
    assert f"--duplicates {threshold}: more than 2 pairs are that similar; {advice}" in err, err
    assert not (tmp_path / "d.csv").exists()


def test_all_zero_features_are_said_and_similar_to_nothing(tmp_path, capsys):
    feats = np.random.default_rng(5).normal(size=(5, 3))
    feats[2] = 0.0
    feats[4] = [1.0, -1.0, 0.0]  # (its values sum to 0, but they are not all 0)
    embed_file(tmp_path / "f.npz", feats)
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "n.csv"), "--k", "4"]) == 0
    assert "1 of 5 images have all-zero features" in capsys.readouterr().err
    table = rows(tmp_path / "n.csv")[1:]
    assert [float(s) for s in table[2][2::2]] == [0.0] * 4
    assert all(float(row[row.index("/photos/002.jpg") + 1]) == 0.0 for i, row in
               enumerate(table) if i != 2)


def test_a_named_pipe_or_a_link_loop_is_refused_not_waited_on(tmp_path, capsys):
    """np.load would open a FIFO and wait for a writer forever."""
    embed_file(tmp_path / "f.npz", np.eye(3))
    os.symlink(tmp_path / "loop.npz", tmp_path / "loop.npz")
    with named_pipe(tmp_path / "pipe.npz") as pipe:
        for flag, path, needle in (
                ("--features", pipe, "not a regular file (a named pipe, socket or device)"),
                ("--queries", pipe, "not a regular file (a named pipe, socket or device)"),
                ("--features", tmp_path / "loop.npz", "a symbolic link loop")):
            args = [flag, str(path)] if flag == "--features" else \
                ["--features", str(tmp_path / "f.npz"), flag, str(path)]
            assert main(["neighbors", *args, "--out", str(tmp_path / "n.csv")]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.endswith(f": {flag} {path}: {needle}\n"), err
    assert not (tmp_path / "n.csv").exists()


def test_the_tolerance_for_float32_rounding_applies_at_one_only(tmp_path, capsys):
    """A pair at 0.989996 was listed at --duplicates 0.99 (the 1e-5 that lets a threshold
    of 1 find equal vectors was taken off every threshold)."""
    c = 0.989996
    feats = [[1.0, 0.0], [c, np.sqrt(1 - c * c)], [1.0, 0.0]]
    embed_file(tmp_path / "f.npz", feats)
    for threshold, pairs in (("0.99", [("000", "002")]), ("1", [("000", "002")]),

                             ("0.98", [("000", "002"), ("000", "001"), ("001", "002")])):
        assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                     str(tmp_path / f"{threshold}.csv"), "--duplicates", threshold]) == 0
        found = [(r[0][8:11], r[1][8:11]) for r in rows(tmp_path / f"{threshold}.csv")[1:]]
        assert found == pairs, threshold
    c = 0.999991  # near 1 but not at it: no tolerance either
    embed_file(tmp_path / "g.npz", [[1.0, 0.0], [c, np.sqrt(1 - c * c)]])
    for threshold, pairs in (("0.999995", []), ("0.99999", [("000", "001")])):
        assert main(["neighbors", "--features", str(tmp_path / "g.npz"), "--out",
                     str(tmp_path / f"g{threshold}.csv"), "--duplicates", threshold]) == 0
        found = [(r[0][8:11], r[1][8:11]) for r in rows(tmp_path / f"g{threshold}.csv")[1:]]
        assert found == pairs, threshold


def test_a_negative_threshold_is_a_similarity_too(tmp_path, capsys):
    """Cosine similarity lies in [-1, 1]: --duplicates -0.5 lists the pairs at or above
    it (opposite vectors, at -1, are not), -1 every pair; outside [-1, 1] is refused."""
    embed_file(tmp_path / "f.npz", [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    for threshold, pairs in (("-0.5", [("000", "001"), ("001", "002")]),
                             ("-1", [("000", "001"), ("001", "002"), ("000", "002")])):
        assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                     str(tmp_path / f"{threshold}.csv"), "--duplicates", threshold]) == 0
        found = [(r[0][8:11], r[1][8:11]) for r in rows(tmp_path / f"{threshold}.csv")[1:]]
        assert found == pairs, threshold
    with pytest.raises(nb.SimCLRError, match="a cosine similarity lies in"):
        nb.check_threshold(-1.01)


def test_paths_take_their_own_bytes_and_an_earlier_simclrs_files_still_read(tmp_path):
    """embed's paths were one fixed-width str array, every path as wide as the longest
    at 4 bytes a character (one 3,645-character path: 148 MB for 10,000 images). They
    are one UTF-8 array now, its size their own; a name in any script, one whose bytes
    are not UTF-8 (surrogate escapes) and an earlier simclr's layout read as written."""
    names = ["/photos/a.jpg", "/photos/日本/犬.jpg", "/photos/\udcff\udcfe.jpg",
             "/" + "deep/" * 700 + "x.jpg"]
    feats = np.random.default_rng(0).normal(size=(len(names), 3))
    for i in range(60):  # beside the long one, many short ones
        names.append(f"/photos/{i}.jpg")
        feats = np.vstack([feats, feats[:1] + i])
    new = embed_file(tmp_path / "new.npz", feats, names)
    old = embed_file(tmp_path / "old.npz", feats, names, old_layout=True)
    path_bytes = sum(len(n.encode("utf-8", "surrogateescape")) + 1 for n in names)
    assert new.stat().st_size < feats.size * 4 + 8 * len(names) + path_bytes + 2500
    assert old.stat().st_size > 4 * len(names) * len(names[3])  # (what it was)
    for path in (new, old):
        x, paths = nb.load_embeddings(path, "--features")
        assert paths == names and x.shape == (len(names), 3)
        with np.load(path, allow_pickle=False) as data:
            assert nb.embedded_paths(data) == names


def test_exactly_max_pairs_duplicates_are_still_listed(tmp_path, monkeypatch):
    """MAX_PAIRS is the most pairs listed, not one past them: 3 identical images make
    3 pairs, listed under a limit of 3 (refused at 2: the test above)."""
    monkeypatch.setattr(nb, "MAX_PAIRS", 3)
    monkeypatch.setattr(nb, "CSV_ROWS", 2)  # (the rows written 2 at a time: none lost)
    embed_file(tmp_path / "f.npz", np.ones((3, 4)))
    assert main(["neighbors", "--features", str(tmp_path / "f.npz"), "--out",
                 str(tmp_path / "d.csv"), "--duplicates", "0.9"]) == 0
    assert len(rows(tmp_path / "d.csv")) == 1 + 3


def test_nearest_similarities_stay_within_minus_one_and_one():
    """float32 rounding puts the cosine of equal unit vectors a hair above 1 (or below
    -1): nearest clamps them, so a similarity is never reported outside [-1, 1]."""
    rng = np.random.default_rng(0)
    x = torch.nn.functional.normalize(torch.from_numpy(
        rng.normal(size=(200, 16)).astype(np.float32)), dim=1)
    assert (x @ x.T).abs().max() > 1  # some pair rounds past 1: the case clamped
    keys = torch.cat([x, -x])
    sims, _ = nb.nearest(x, keys, 2, (np.array([], np.int64), np.array([], np.int64)))
    assert float(sims.max()) <= 1.0
    far, _ = nb.nearest(-x, keys, 1, (np.array([], np.int64), np.array([], np.int64)))
    assert float(far.min()) >= -1.0


def test_a_query_excluded_from_its_keys_is_never_found_even_below_minus_one():
    """An excluded pair (a query itself) ranks below every key: an opposite vector's
    float32 cosine a hair under -1 still comes before it."""
    x = torch.nn.functional.normalize(torch.from_numpy(
        np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)), dim=1)
    u = x[59:60]
    keys = torch.cat([u, -u])
    assert float((keys @ keys.T)[0, 1]) < -1  # (the case: below -1 before the clamp)
    sims, idx = nb.nearest(keys, keys, 1, (np.array([0, 1]), np.array([0, 1])))
    assert idx.flatten().tolist() == [1, 0] and sims.flatten().tolist() == [-1.0, -1.0]


def test_duplicate_similarities_stay_within_minus_one_and_one():
    """As nearest's: equal unit vectors' float32 cosine a hair above 1 is reported as 1."""
    x = torch.nn.functional.normalize(torch.from_numpy(
        np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)), dim=1)
    assert (x @ x.T).max() > 1  # (the case clamped)
    _, _, sims = nb.duplicate_pairs(torch.cat([x, x]), 0.9999)
    assert len(sims) == 200 and float(sims.max()) <= 1.0


def test_a_path_no_longer_there_is_one_file_however_spelled():
    """Features of a folder since moved: a query spelled /gone/x/../a.jpg is the key
    /gone/a.jpg (its real path), so it is never its own neighbour."""
    q, k = nb.self_pairs(["/gone/x/../a.jpg"], ["/gone/b.jpg", "/gone/a.jpg"])
    assert (q.tolist(), k.tolist()) == ([0], [1])


def test_the_python_api_refuses_what_the_command_line_does(tmp_path):
    """write_duplicates checks its threshold (a 1.5 listed no pairs, silently), and
    features holding NaN are refused (no similarity means anything there)."""
    embed_file(tmp_path / "f.npz", np.eye(3))
    with pytest.raises(nb.SimCLRError, match=r"--duplicates 1\.5: a cosine similarity"):
        nb.write_duplicates(tmp_path / "f.npz", tmp_path / "d.csv", 1.5)
    embed_file(tmp_path / "nan.npz", [[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(nb.SimCLRError, match="the features hold NaN or infinite values"):
        nb.write_neighbors(tmp_path / "nan.npz", tmp_path / "n.csv", k=1)
    assert not (tmp_path / "d.csv").exists() and not (tmp_path / "n.csv").exists()
