"""Tests for simclr.sweep_reuse: a sweep's earlier runs, which a cell reuses and what is
refused or noted about them."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from simclr.config_file import save_yaml
from simclr.errors import SimCLRError
from simclr.settings import build_config
from simclr.sweep_grid import parse_axis
from simclr.sweep_reuse import (
    _check_same_settings,
    _find_earlier_runs,
    _no_effect,
    _other_images_notes,
    _saved_no_effect,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_earlier_adamw_cells_lr_is_said_to_be_the_old_default(tmp_path):
    """A rerun (--set optimizer=lars,adamw) of a sweep of a release before 2026-12-06,
    whose AdamW cell trained at the preset's LARS lr (1.0), said 'give --lr 1.0', which
    would change the other cells too: it now says the cell trained at that release's
    default and how to train it at this one's. Another lr differing is said as before."""
    cfg = build_config("digits", flags={"optim.name": "adamw"})
    saved = cfg.to_dict()
    saved["optim"]["lr"] = 1.0  # (as that release saved it)
    run_dir = tmp_path / "sw" / "optimizer=adamw"
    run_dir.mkdir(parents=True)
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=re.escape(
            "cell optimizer=adamw already holds a run trained AdamW at --lr 1, a default of "
            "a release before 2026-12-06 (a preset's or file's LARS-sized lr kept for "
            "AdamW); this release's AdamW default is 0.001 x B/256 (LARS-sized rates "
            "collapse AdamW); a cell's own lr cannot be given per cell: use a new --out, or "
            f"remove {run_dir} to train that cell anew at this default") + "$"):
        _check_same_settings(cfg, run_dir, "optimizer=adamw")
    saved["seed"] = 7  # (more than its lr differs: the first difference, as before)
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"other settings \(optim.lr: 1.0 there"):
        _check_same_settings(cfg, run_dir, "optimizer=adamw")


def test_an_earlier_first_op_naming_the_pipelines_own_order_is_the_same_run(tmp_path):
    """A cell of a release that accepted --first-op crop (the pipeline's own first group,
    refused now as having no effect) holds the run that the command without it trains:
    a rerun reuses it rather than asking for the flag this release refuses. A first_op
    that moves another group to the front is another run, as before."""
    cfg = build_config("digits", flags={"augment.asymmetric": True})
    run_dir = tmp_path / "sw" / "temperature=0.1"
    run_dir.mkdir(parents=True)
    saved = cfg.to_dict()
    saved["augment"]["first_op"] = "crop"  # (as that release saved it)
    save_yaml(saved, run_dir / "config.yaml")
    _check_same_settings(cfg, run_dir, "temperature=0.1")
    assert cfg.augment.first_op == "crop"  # (continued as saved: a resume compares it)
    cfg = build_config("digits", flags={"augment.asymmetric": True})
    saved["augment"]["first_op"] = "color"  # (colour before the crop: another order)
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"\(augment.first_op: 'color' there, '' now\)"):
        _check_same_settings(cfg, run_dir, "temperature=0.1")
    # blur first with colour off, or on at --color-p 0 (no effect: left out since colour
    # amounts were compared only where they act): one run, not 'first_op: '' there',
    # which no flag gives
    flags = {"augment.asymmetric": True, "augment.blur": True, "augment.first_op": "blur",
             "augment.size": 32}
    saved = build_config("digits", flags={**flags, "augment.color": False}).to_dict()
    save_yaml(saved, run_dir / "config.yaml")
    _check_same_settings(build_config("digits", flags={**flags, "augment.color_p": 0.0}),
                         run_dir, "temperature=0.1")
    saved["augment"].update(color=True, color_p=0.8, first_op="")  # colour first: another run
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"\(augment.first_op: '' there, 'blur' now\); use "
                                          r"a new --out$"):
        _check_same_settings(build_config("digits", flags={**flags, "augment.color_p": 0.8}),
                             run_dir, "temperature=0.1")
    # a run saved blur-first by a release that took it, its own first group with crop,
    # colour and grayscale off: a cell putting noise first is told no flag (this release
    # refuses --first-op blur there)
    off = {"crop": False, "color": False, "grayscale": False}
    saved["augment"].update(**off, noise=True, first_op="blur")
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"\(augment.first_op: 'blur' there, 'noise' now\); "
                                          r"use a new --out$"):
        _check_same_settings(build_config("digits", flags={
            **flags, **{f"augment.{k}": v for k, v in off.items()}, "augment.noise": True,
            "augment.first_op": "noise"}), run_dir, "temperature=0.1")
    # colour first after a flip alone (--no-crop): the flip is drawn at the shared crop,
    # first whatever the order, so the run is the cell's without --first-op (not another
    # run to continue only with it: the same views under a second label)
    flags = {"augment.asymmetric": True, "augment.crop": False, "augment.flip": True}
    saved = build_config("digits", flags=flags).to_dict()
    saved["augment"]["first_op"] = "color"  # (as a release that took it saved it)
    save_yaml(saved, run_dir / "config.yaml")
    assert _check_same_settings(build_config("digits", flags=flags), run_dir, "t") == (
        "sweep: cell t keeps its run's --first-op color: no effect here")
    # colour first at --color-p 0 with --crop: the view is cropped again after it (other
    # views), not the run without --first-op, though colour itself does nothing
    flags = {"augment.asymmetric": True, "augment.color_p": 0.0, "augment.grayscale": False}
    save_yaml(build_config("digits", flags=flags).to_dict(), run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"\(augment.first_op: '' there, 'color' now\)"):
        _check_same_settings(build_config("digits", flags={**flags, "augment.first_op": "color"}),
                             run_dir, "t")


def test_a_real_runs_config_yaml_is_read_for_its_settings_with_no_effect():
    """A run's config.yaml records its provenance beside its settings: read as a config
    it was refused (unknown section), so no setting was ever found without effect in a
    saved run, and a cell's answer hung on which of the two was run first."""
    cfg = build_config("digits", flags={"loss.name": "nt_logistic"})
    recorded = {**cfg.to_dict(), "provenance": {"git_sha": "abc"}, "num_images": 10}
    assert _saved_no_effect(recorded) == _no_effect(cfg) != set()


@pytest.mark.parametrize("then, all_images, noted", [
    (5, True, False), (4, True, True), (4, False, False), (3, False, True)])
def test_a_run_from_before_images_beside_class_folders_were_kept_is_no_note(
        tmp_path, caplog, then, all_images, noted):
    """A folder of two classes (2 images each) and one image beside them lists 5 images
    now. A run of this release (its checkpoint's all_images) read the one beside them
    too: 4 then is a folder since grown, noted (it was not, the class folders' 4 being
    taken for a run before such images were kept). A run of such a release read the
    class folders alone: 4 is its same folder (no note), 3 is not; told without the
    warning that the image beside them is ignored, which pretraining does not do."""
    import shutil

    from simclr.config import Config
    from simclr.sweep_checks import check_batches
    from simclr.sweep_grid import Cell
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", per_class=2)
    shutil.copy(data / "class_0" / "000.png", data / "beside.png")
    run_dir = tmp_path / "sw" / "temperature=0.2"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(  # (one of them unreadable)
        {"status": "finished", "num_images": then - 1, "skipped_images": [[0, "bad"]]}))
    cfg = Config()
    torch.save({"format": "simclr-checkpoint", "version": 1, "kind": "pretrain",
                "config": cfg.to_dict(), "model": {}, "step": 2,
                **({"all_images": True} if all_images else {})},  # (as each release saved)
               run_dir / "checkpoints" / "last.pt")
    cfg.data.path, cfg.batch_size = str(data), 4  # (a batch the 5 images hold)
    cells = [Cell({}, {}, "temperature=0.2", run_dir)]
    with caplog.at_level("INFO"):
        notes = _other_images_notes(cells, [cfg], check_batches(cells, [cfg]))
    now = 5 if all_images else 4  # (the images it would read now)
    assert notes == ([f"note: cell temperature=0.2 was trained on the {then} image files of "
                      f"{data}, which now holds {now}: its row stands for the images it saw "
                      f"then (remove {run_dir} to train it on these)"] if noted else [])
    assert "outside the class folders" not in caplog.text


def test_runs_are_taken_over_only_where_the_swept_values_are_equal(tmp_path):
    """threads=1 is not threads=2 (a sweep over it measures speed), though threads is a
    runtime setting a rerun may change; a folder a live run holds is never taken."""
    from simclr.files import lock_folder
    from simclr.sweep import cell_configs

    root = tmp_path / "sw"
    # (a hidden folder is not a cell's; a cell holding its own run keeps it, though
    # threads=01 holds the same settings)
    for name, threads, seed in (("threads=1", 1, 0), ("threads=4", 4, 0), ("busy", 2, 1),
                                (".hidden", 2, 0), ("threads=01", 1, 0)):
        save_yaml(build_config("digits", flags={"threads": threads, "seed": seed}).to_dict(),
                  root / name / "config.yaml")
    (root / "broken").mkdir()
    (root / "broken" / "config.yaml").write_text("[: not yaml")  # not a run: passed over
    held = lock_folder(root / "busy")
    try:
        cells, configs = cell_configs([parse_axis("threads=2,04,1")], root, "digits", None,
                                      {})
        assert _find_earlier_runs(root, cells, configs) == [
            "sweep: cell threads=04 is the run in threads=4 (the same settings, written "
            "otherwise); reusing it"]
        assert [c.name for c in cells] == ["threads=2", "threads=4", "threads=1"]
        assert cells[1].run_dir == root / "threads=4"  # trained (resumed) there too:
        assert configs[1].out == str(root / "threads=4")
        (tmp_path / "file").write_text("")  # an --out that is no folder: no earlier runs
        assert _find_earlier_runs(tmp_path / "file", cells, configs) == []
        cells, configs = cell_configs([parse_axis("threads=2")], root, "digits", None,
                                      {"seed": "1"})
        assert _find_earlier_runs(root, cells, configs) == []  # "busy" is in use
    finally:
        held.close()


def test_a_finished_cell_without_a_readable_checkpoint_counts_the_images_beside_classes(
        tmp_path):
    """A finished run whose checkpoint is gone or unreadable is taken for one of this
    release (which reads the image beside the class folders: 5 now, 4 then, noted); a
    diverged cell's row says nothing of its images."""
    import shutil

    from simclr.config import Config
    from simclr.sweep_grid import Cell
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", per_class=2)
    shutil.copy(data / "class_0" / "000.png", data / "beside.png")
    run_dir = tmp_path / "sw" / "seed=0"
    run_dir.mkdir(parents=True)
    cfg = Config()
    cfg.data.path = str(data)
    cells = [Cell({}, {}, "seed=0", run_dir)]
    note = (f"note: cell seed=0 was trained on the 4 image files of {data}, which now holds "
            f"5: its row stands for the images it saw then (remove {run_dir} to train it on "
            "these)")
    for status, checkpoint, notes in (("finished", None, [note]),
                                      ("finished", {"not": "simclr's"}, [note]),
                                      ("diverged", None, [])):
        if checkpoint is not None:
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            torch.save(checkpoint, run_dir / "checkpoints" / "last.pt")
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": status, "num_images": 4, "skipped_images": []}))
        assert _other_images_notes(cells, [cfg], [5]) == notes


def test_a_runs_length_home_paths_and_unresolvable_precision_compare_as_a_run_reads_them():
    """--time-budget is a run's length (another cell), not a runtime setting; '~/d' saved
    is the home folder's d; a precision this machine cannot resolve is compared as
    written, not a traceback."""
    import os

    from simclr.recipe import flatten
    from simclr.sweep_reuse import _first_difference

    wanted = flatten(build_config("digits").to_dict())
    assert _first_difference(wanted, {**wanted, "time_budget": 60.0}) == (
        "time_budget", 60.0, None)
    home = {**wanted, "data.path": os.path.expanduser("~/d")}
    assert _first_difference(home, {**home, "data.path": "~/d"}) is None
    elsewhere = {**wanted, "device": "nonsense", "precision": "fp32"}
    assert _first_difference(elsewhere, {**elsewhere, "precision": "auto"}) == (
        "precision", "auto", "fp32")


def test_a_refusal_gives_the_flag_of_a_setting_saved_as_none():
    from simclr.sweep_reuse import _flag_setting

    assert _flag_setting("data.load_size", None) == "--load-size none"
    assert _flag_setting("data.load_size", 384) == "--load-size 384"


def test_a_setting_with_no_effect_in_the_cell_is_the_cells_run_and_kept(tmp_path):
    """A sweep run with --one-view-negatives (which nt_logistic ignores) and rerun
    without it: its nt_logistic cell was refused as another run ('give
    --one-view-negatives'), which the rerun refused as having no effect in any cell, so
    no command continued the --out. It is the cell's run now, continued with its own
    value (a resume refuses any setting changed); a setting in effect still differs."""
    cfg = build_config("digits", flags={"loss.name": "nt_logistic"})
    run_dir = tmp_path / "sw" / "loss=nt_logistic"
    run_dir.mkdir(parents=True)
    saved = cfg.to_dict()
    saved["loss"]["one_view_negatives"] = True
    save_yaml(saved, run_dir / "config.yaml")
    assert _check_same_settings(cfg, run_dir, "loss=nt_logistic") == (
        "sweep: cell loss=nt_logistic keeps its run's --one-view-negatives: no effect here")
    assert cfg.loss.one_view_negatives is True
    assert _check_same_settings(cfg, run_dir, "loss=nt_logistic") is None  # (nothing taken)
    # values said as flags spell them (Python's None, and an empty text shown as nothing)
    cfg = build_config("digits", flags={"model.head": "linear", "augment.asymmetric": True})
    cfg.augment.first_op = "crop"  # (as a config file may give them: no effect here)
    cfg.model.head_hidden_dim = 64
    linear = tmp_path / "linear"
    linear.mkdir()
    save_yaml(build_config("digits", flags={"model.head": "linear",
                                            "augment.asymmetric": True}).to_dict(),
              linear / "config.yaml")
    assert _check_same_settings(cfg, linear, "loss=nt_logistic") == (
        "sweep: cell loss=nt_logistic keeps its run's augment.first_op '', "
        "--head-hidden-dim none: no effect here")
    saved["loss"]["temperature"] = 0.7
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"\(loss.temperature: 0.7 there"):
        _check_same_settings(build_config("digits", flags={"loss.name": "nt_logistic"}),
                             run_dir, "loss=nt_logistic")
    # --first-op crop has no effect, but a run saved colour-first is another run
    cfg = build_config("digits", flags={"augment.asymmetric": True})
    cfg.augment.first_op = "crop"  # (as a config file may give it, unrefused)
    saved = cfg.to_dict()
    saved["augment"]["first_op"] = "color"
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"\(augment.first_op: 'color' there"):
        _check_same_settings(cfg, run_dir, "loss=nt_logistic")
    # an earlier release's AdamW cell whose momentum (no effect under AdamW) differs too
    cfg = build_config("digits", flags={"optim.name": "adamw"})
    saved = cfg.to_dict()
    saved["optim"].update(lr=1.0, momentum=0.5)
    save_yaml(saved, run_dir / "config.yaml")
    with pytest.raises(SimCLRError, match=r"holds a run trained AdamW at --lr 1, a default"):
        _check_same_settings(cfg, run_dir, "loss=nt_logistic")
    # taken over from another folder: said, with the values it keeps
    from simclr.sweep import cell_configs

    saved = build_config("digits", flags={"loss.name": "nt_logistic"}).to_dict()
    saved["loss"]["margin"] = 0.25
    save_yaml(saved, tmp_path / "sw" / "old" / "config.yaml")
    cells, configs = cell_configs([parse_axis("loss=nt_logistic")], tmp_path / "sw",
                                  "digits", None, {})
    shutil.rmtree(run_dir)
    assert _find_earlier_runs(tmp_path / "sw", cells, configs) == [
        "sweep: cell loss=nt_logistic is the run in old (the same settings, written otherwise; "
        "its --margin 0.25 kept: no effect here); reusing it"]
    assert configs[0].loss.margin == 0.25
