"""Tests for simclr.sweep_grid: axes parsed from --set and --pairs (settings that would
train the same run refused), cells in order, and their folder names (distinct, capped,
stable across reruns)."""

from __future__ import annotations

import pytest

from simclr.errors import SimCLRError
from simclr.settings import build_config
from simclr.sweep import run_sweep
from simclr.sweep_grid import _slug, parse_axis, plan_cells
from tests.conftest import tiny_flags

pytestmark = pytest.mark.usefixtures("one_thread")


def test_axes_accept_flag_names_and_dotted_paths():
    assert parse_axis("temperature=0.1,0.5").settings == [{"loss.temperature": "0.1"},
                                                           {"loss.temperature": "0.5"}]
    axis = parse_axis("loss.temperature=0.1, 1")  # named by its flag, however spelled:
    assert (axis.name, axis.labels) == ("temperature", ["0.1", "1"])  # the same folders
    assert parse_axis("color_strength=0.5,1").name == "color-strength"
    assert parse_axis("crop-scale=0.08,1;0.2,1").labels == ["0.08,1", "0.2,1"]
    assert parse_axis("--temperature=0.1,0.5").name == "temperature"  # typed as the flag
    assert parse_axis("color_strength=0.5,1").settings == [{"augment.color_strength": "0.5"},
                                                            {"augment.color_strength": "1"}]
    for bad, needle in [("temperature", "expected"), ("nonsense=1,2", "unknown setting"),
                        ("temperature= ", "expected SETTING=VALUE1,VALUE2"),
                        ("temperature=0.1,,0.5", "empty or repeated"),
                        ("temperature=1,1", "empty or repeated"),
                        # equal as settings: the same run twice
                        ("temperature=0.5,.5", "0.5 and .5 are the same value"),
                        ("normalize=true,1", "true and 1 are the same value"),
                        ("time-budget=60,1m", "60 and 1m are the same value"),
                        ("data=d,./d", "d and ./d are the same value"),
                        # a pair's comma taken for the values' separator: the way said
                        ("crop-scale=0.2,1", r"got '0\.2'; a swept setting whose values "
                                             r"hold commas takes ';' between values")]:
        with pytest.raises(SimCLRError, match=needle):
            parse_axis(bad)


def test_a_pair_settings_comma_hint_gives_a_value_that_setting_takes():
    """A swept pair setting given without ';' is told how to sweep it, with an example
    of its own: 0.08,1 (crop-scale's) was offered for --betas, which refuses a 1."""
    for axis, example in [("betas=-1", "--set 'betas=0.9,0.999;A,B'"),
                          ("crop-scale=0.5", "--set 'crop-scale=0.08,1;A,B'")]:
        with pytest.raises(SimCLRError, match="takes ';' between values") as err:
            parse_axis(axis)
        assert str(err.value).endswith(example)
    # Already split on ';': a bad value is only said to be bad, with no hint to use ';'.
    with pytest.raises(SimCLRError) as err:
        parse_axis("crop-scale=0.2;0.5,1")
    assert str(err.value) == "--crop-scale: expected two numbers A,B (e.g. 0.08,1), got '0.2'"
    build_config(flags={"optim.name": "adamw", "optim.betas": "0.9,0.999"})  # (valid)


def test_cells_are_the_product_in_order(tmp_path):
    cells = plan_cells([parse_axis("temperature=0.1,0.5"), parse_axis("normalize=true,false")],
                       tmp_path)
    assert [c.name for c in cells] == [
        "temperature=0.1_normalize=true", "temperature=0.1_normalize=false",
        "temperature=0.5_normalize=true", "temperature=0.5_normalize=false"]
    assert cells[1].values == {"loss.temperature": "0.1", "loss.normalize": "false"}
    assert cells[1].run_dir == tmp_path / "temperature=0.1_normalize=false"
    with pytest.raises(SimCLRError, match=r"^--set: temperature is swept by two --set; give "
                                          r"all its values in one$"):  # (not "(temperature,
        # temperature)": both spellings are one axis name)
        plan_cells([parse_axis("temperature=1,2"), parse_axis("loss.temperature=3")], tmp_path)


def test_values_that_slug_alike_get_their_own_cell_folders(tmp_path):
    """'data/tr ain' and 'data/tr_ain' both slug to data=data_tr_ain: the second cell used
    to find the first's run and fail after it trained. Only the colliding values get a
    stable hash suffix; every other value keeps its folder, so old sweeps resume."""
    axes = [parse_axis("data=data/tr ain,data/tr_ain,other"), parse_axis("epochs=1,2")]
    names = [c.name for c in plan_cells(axes, tmp_path)]
    assert len(set(names)) == len(names) == 6
    assert names[0].startswith("data=data_tr_ain-") and names[0].endswith("_epochs=1")
    assert names[2].startswith("data=data_tr_ain-") and names[2] != names[0]
    assert names[4:] == ["data=other_epochs=1", "data=other_epochs=2"]  # unchanged
    assert names == [c.name for c in plan_cells(axes, tmp_path)]  # stable: resumable
    # Values that join to the same name across axes are refused up front, naming both.
    axes = [parse_axis("data=p_init-from=q,p"), parse_axis("init-from=r,q_init-from=r")]
    with pytest.raises(SimCLRError) as info:
        run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags={}, evaluate=None)
    assert str(info.value) == (
        "--set: the cells (data='p_init-from=q', init-from='r') and "
        "(data='p', init-from='q_init-from=r') would share the folder "
        "data=p_init-from=q_init-from=r; change one of these values")
    assert not (tmp_path / "sw").exists()


def test_a_cells_folder_name_is_capped(tmp_path, image_folder, cache_dir):
    """Long swept data paths made a folder name over 255 bytes: an OSError traceback in
    the middle of the sweep, and on every rerun. Past 200 bytes a name is cut and ends
    with a hash of the whole; shorter ones stay as they were (old sweeps resume)."""
    long = tmp_path / ("a" * 150) / ("b" * 150)
    long.parent.mkdir()
    long.symlink_to(image_folder)
    axes = [parse_axis(f"data={long},{image_folder}"), parse_axis("temperature=0.2,0.5")]
    names = [c.name for c in plan_cells(axes, tmp_path)]
    assert [len(n) for n in names[:2]] == [200, 200] and names[0] != names[1]
    assert names[0].startswith(f"data={str(long)[:100].replace('/', '_')}")
    assert names == [c.name for c in plan_cells(axes, tmp_path)]  # stable: resumable
    assert names[2:] == [f"{_slug(f'data={image_folder}')}_temperature=0.2",
                         f"{_slug(f'data={image_folder}')}_temperature=0.5"]
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    for key in ("out", "data.path", "loss.temperature"):
        flags.pop(key)
    cells, _ = run_sweep(axes[:1], tmp_path / "sw", preset=None, config=None, flags=flags,
                         evaluate=None)
    assert [c.result["status"] for c in cells] == ["finished", "finished"]
    assert len(cells[0].run_dir.name) == 200 and (cells[0].run_dir / "summary.json").is_file()


def test_a_name_of_200_bytes_is_kept_and_one_of_201_cut():
    """The cap is at 200 bytes inclusive: a folder name of exactly 200 (an old sweep's)
    is kept as it is; one byte more is cut to 191 and the hash of the whole."""
    import hashlib

    from simclr.sweep_grid import _capped

    assert _capped("a" * 200) == "a" * 200
    digest = hashlib.sha256(("a" * 201).encode()).hexdigest()[:8]
    assert _capped("a" * 201) == "a" * 191 + "-" + digest


def test_fig5_pairs_switch_on_exactly_their_transformations(tmp_path):
    from simclr.settings import build_config
    from simclr.sweep_grid import pairs_axis

    axis = pairs_axis("crop,color,rotate")
    assert axis.labels == ["crop", "crop+color", "crop+rotate", "color+crop", "color",
                           "color+rotate", "rotate+crop", "rotate+color", "rotate"]
    cells = plan_cells([axis, parse_axis("temperature=0.5")], tmp_path)

    def augment(k):
        return build_config("cifar10", None, {**cells[k].values, "out": "x"}).augment

    a = augment(1)
    assert a.asymmetric and a.crop and a.flip and a.color and a.grayscale
    assert not (a.rotate or a.blur or a.cutout or a.noise or a.sobel)
    only_color = augment(4)
    assert only_color.color and not only_color.crop and not only_color.flip
    # Ordered: the pipeline's own order needs nothing; the reverse puts its first op first.
    assert [augment(k).first_op for k in (1, 3, 5, 7)] == ["", "color", "color", ""]
    for bad in ("crop,crop", "crop,zoom", "", "crop,,color", "crop,"):  # (empty: as --set)
        with pytest.raises(SimCLRError, match="--pairs"):
            pairs_axis(bad)
    with pytest.raises(SimCLRError, match="swept twice"):
        plan_cells([axis, parse_axis("rotate=true,false")], tmp_path)


def test_settings_that_only_say_where_or_how_visibly_are_not_swept():
    for text, needle in [("out=a,b", "--set out: not an experiment setting (every cell runs "
                                     "in its own folder under the sweep's --out)"),
                         ("cache-dir=x,y", "same decoded images"),
                         ("data.root=x,y", "same data set"), ("progress=true,false", "progress"),
                         ("download=true,false", "same data set"),
                         ("checkpoint-minutes=5,10", "when checkpoints are written"),
                         ("keep-checkpoints=1,3", "how many checkpoints are kept"),
                         ("checkpoint-every=5,10", "when checkpoints are written"),
                         ("memory-check=true,false", "checks the batch fits"),
                         ("knn-every=1,2", "kNN monitor"),
                         # monitored or checked, not learned: the same run, bit for bit
                         ("knn-k=10,20", "--set knn-k: not an experiment setting (it only "
                                         "sets the kNN monitor's scores)"),
                         ("knn-temperature=0.1,0.5", "kNN monitor's scores"),
                         ("knn-train=a,b", "kNN monitor's folders"),
                         ("knn_test=a,b", "kNN monitor's folders"),
                         ("strict=true,false", "whether a bad image stops the run"),
                         ("data.max_pixels=100,1000", "how large an image may be")]:
        with pytest.raises(SimCLRError, match=None) as info:
            parse_axis(text)
        assert needle in str(info.value)
    assert parse_axis("threads=1,2").settings == [{"threads": "1"}, {"threads": "2"}]  # speed
