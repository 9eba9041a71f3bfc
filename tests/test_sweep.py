"""Tests for simclr.sweep: grids of runs, reuse and resume, settings checked up front."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.cli import main
from simclr.config_file import load_yaml, save_yaml
from simclr.errors import SimCLRError
from simclr.settings import build_config
from simclr.sweep import run_sweep, runtime_flags
from simclr.sweep_grid import parse_axis, plan_cells
from tests.conftest import tiny_flags, unreadable_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sweep_runs_every_cell_once_and_reuses_finished_ones(tmp_path, image_folder, cache_dir):
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    axes = [parse_axis("temperature=0.2,0.5"), parse_axis("normalize=true,false")]
    scored = []

    def evaluate(run_dir):
        scored.append(run_dir.name)
        return {"knn_top1": 0.5}

    cells, table = run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags,
                             evaluate=evaluate)
    assert [c.result["status"] for c in cells] == ["finished"] * 4 and len(scored) == 4
    # Table 5's columns: the contrast entropy and accuracy as each run ended, then top-1
    assert table.splitlines()[0] == ("| temperature | normalize | status | steps | epochs | "
                                     "train_s | contrast_entropy | contrast_acc | knn_top1 |")
    assert "| 0.5 | false | finished | 3 | 1.0 |" in table and "50.0%" in table
    for cell in cells:
        logged = [json.loads(line) for line in
                  (cell.run_dir / "metrics.jsonl").read_text().splitlines()][-1]
        assert logged["step"] == 3 and 0 <= logged["contrast_acc"] <= 1
        assert 0 < logged["contrast_entropy"] <= math.log(8)  # 8 candidates at batch 8
        assert cell.result["contrast_acc"] == round(logged["contrast_acc"], 4)
        assert cell.result["contrast_entropy"] == round(logged["contrast_entropy"], 4)
        assert f"| {cell.result['contrast_entropy']:.2f} | " \
               f"{100 * cell.result['contrast_acc']:.1f}% |" in table
    saved = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert saved[3]["normalize"] == "false" and saved[3]["knn_top1"] == 0.5
    assert saved[3]["settings"] == {"loss.temperature": "0.5", "loss.normalize": "false"}
    last = tmp_path / "sw" / cells[0].name / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns
    run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags, evaluate=evaluate)
    assert last.stat().st_mtime_ns == stamp  # reused, not trained again
    saved_cfg = last.parent.parent / "config.yaml"  # a run made before a setting existed
    older = load_yaml(saved_cfg)
    del older["augment"]["asymmetric"]
    save_yaml(older, saved_cfg)
    run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags, evaluate=evaluate)
    assert last.stat().st_mtime_ns == stamp  # the missing setting reads as its default
    store = older["data"].pop("store")  # ... or as what runs did before it, where that differs
    save_yaml(older, saved_cfg)
    with pytest.raises(SimCLRError, match="data.store: 'center' there, 'full' now"):
        run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags,
                  evaluate=evaluate)
    save_yaml({**older, "data": {**older["data"], "store": store}}, saved_cfg)
    with pytest.raises(SimCLRError, match="other settings .*epochs"):
        run_sweep(axes, tmp_path / "sw", preset=None, config=None,
                  flags={**flags, "epochs": 2}, evaluate=evaluate)
    # what --resume may change (where and how fast), a rerun may too: the cells are reused
    runtime = {"keep_checkpoints": 5, "checkpoint_minutes": 5.0, "memory_check": False,
               "data.cache_dir": str(tmp_path / "other-cache")}
    run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags={**flags, **runtime},
              evaluate=evaluate)
    assert last.stat().st_mtime_ns == stamp
    # A rerun over a smaller grid: its summary lists its cells, the earlier one is kept.
    before = (tmp_path / "sw" / "sweep.json").read_text()
    run_sweep(axes[:1], tmp_path / "sw", preset=None, config=None,
              flags={**flags, "loss.normalize": "true"}, evaluate=evaluate)
    assert len(json.loads((tmp_path / "sw" / "sweep.json").read_text())) == 2
    assert (tmp_path / "sw" / "sweep.previous-1.json").read_text() == before
    assert (tmp_path / "sw" / "sweep.previous-1.md").exists()
    # A summary.json holding no object (edited, cut) reads as absent: the cell's run is
    # continued, which has nothing left to train and writes its summary again.
    summary = last.parent.parent / "summary.json"
    summary.write_text("[]")
    cells, _ = run_sweep(axes[:1], tmp_path / "sw", preset=None, config=None,
                         flags={**flags, "loss.normalize": "true"}, evaluate=evaluate)
    assert cells[0].result["status"] == "finished" and cells[0].result["steps"] == 3
    assert json.loads(summary.read_text())["status"] == "finished"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_rerun_compares_precision_as_it_resolves_here(tmp_path, image_folder, cache_dir):
    """A sweep made with --precision auto and rerun naming what auto is on this machine
    reuses its cells (the same runs); another precision is refused."""
    import torch

    from simclr.runtime import resolve_precision

    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1,
                       precision="auto")
    flags.pop("out")
    out = tmp_path / "sw"
    run_sweep([parse_axis("seed=0")], out, preset=None, config=None, flags=flags,
              evaluate=None)
    here = resolve_precision("auto", torch.device("cpu"))
    cells, _ = run_sweep([parse_axis("seed=0")], out, preset=None, config=None,
                         flags={**flags, "precision": here}, evaluate=None)
    assert cells[0].result["status"] == "finished"
    other = "fp32" if here == "bf16" else "bf16"
    with pytest.raises(SimCLRError, match=rf"\(precision: 'auto' there, '{other}' now\)"):
        run_sweep([parse_axis("seed=0")], out, preset=None, config=None,
                  flags={**flags, "precision": other}, evaluate=None)


def test_a_rerun_refused_for_other_settings_leaves_out_as_it_was(tmp_path, image_folder,
                                                                  cache_dir):
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    flags.pop("loss.temperature")
    out = tmp_path / "sw"
    run_sweep([parse_axis("temperature=0.1,0.5")], out, preset=None, config=None,
              flags=flags, evaluate=None)
    before = _files(out)
    assert [row["status"] for row in json.loads(before["sweep.json"])] == ["finished"] * 2
    for axis in ("temperature=0.1,0.5", "temperature=0.1,0.5,1"):  # the same grid; a larger
        with pytest.raises(SimCLRError, match=r"cell temperature=0\.1 already holds a run "
                                              r"with other settings \(seed: 0 there, 3 now\); "
                                              r"give --seed 0 to continue the sweep, or use "
                                              r"a new --out$"):
            run_sweep([parse_axis(axis)], out, preset=None, config=None,
                      flags={**flags, "seed": 3}, evaluate=None)
        assert _files(out) == before  # no summary set aside, none rewritten as pending
    # A default changed since (a preset's): the flag of the setting saved, as a bool's
    with pytest.raises(SimCLRError, match=r"\(model.projection_shortcuts: False there, True "
                                          r"now\); give --no-projection-shortcuts to "):
        run_sweep([parse_axis("temperature=0.1,0.5")], out, preset=None, config=None,
                  flags={**flags, "model.projection_shortcuts": True}, evaluate=None)
    assert _files(out) == before


def test_a_sweep_over_an_adamw_config_gives_each_optimizer_its_own_lr(tmp_path):
    """`--config adamw.yaml --set optimizer=lars,adamw`: the LARS cell trains at LARS's
    base, not the file's AdamW lr (1/300 of it); the AdamW cell keeps the file's."""
    from simclr.sweep import cell_configs

    (tmp_path / "adamw.yaml").write_text("optim:\n  name: adamw\n  lr: 0.001\n")
    cells, configs = cell_configs([parse_axis("optimizer=lars,adamw")], tmp_path / "sw",
                                  None, str(tmp_path / "adamw.yaml"), {})
    lrs = {cell.name: cfg.optim.lr for cell, cfg in zip(cells, configs, strict=True)}
    assert lrs == {"optimizer=lars": 0.3, "optimizer=adamw": 0.001}


def test_a_bad_cell_fails_before_anything_runs(tmp_path, image_folder, cache_dir):
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    with pytest.raises(SimCLRError, match="cell temperature=-1: .*--temperature"):
        run_sweep([parse_axis("temperature=0.5,-1")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None)
    assert not (tmp_path / "sw").exists()
    # A batch larger than the folder (24 images), from its file names: nothing decoded.
    with pytest.raises(SimCLRError, match=r"cell batch-size=32: --batch-size 32 is larger "
                       r"than the data set \(24 images\)"):
        run_sweep([parse_axis("batch_size=8,32")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None)
    assert not (tmp_path / "sw").exists() and not Path(cache_dir).exists()
    # A data folder none of whose images decodes (or none within --max-pixels) was met
    # only when its cell started, after the others had trained.
    broken = unreadable_folder(tmp_path / "broken", 12)
    with pytest.raises(SimCLRError, match=rf"cell data=\S+broken: none of the 24 images in "
                                          rf"{broken} could be read"):
        run_sweep([parse_axis(f"data={image_folder},{broken}")], tmp_path / "sw",
                  preset=None, config=None, flags=flags, evaluate=None)
    # (no image within --max-pixels, unswept: in every cell, said once without a cell)
    with pytest.raises(SimCLRError, match=r"^none of the 24 images"):
        run_sweep([parse_axis("temperature=0.2,0.5")], tmp_path / "sw", preset=None,
                  config=None, flags={**flags, "data.max_pixels": 100}, evaluate=None)
    assert not (tmp_path / "sw").exists() and not Path(cache_dir).exists()


def test_a_bad_unswept_setting_is_the_sweeps_not_its_first_cells(tmp_path, image_folder,
                                                                cache_dir):
    """A flag wrong in every cell (not swept) was said as the first cell's ('cell
    seed=0: --temperature must be positive'): it is said once, without a cell's name,
    before anything runs; a swept value's error keeps its cell's name."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    for axes, bad, message in [
            (["seed=0,1"], {"loss.temperature": -1}, "--temperature must be positive"),
            (["seed=0"], {"loss.temperature": -1}, "--temperature must be positive"),
            (["seed=0,1", "width=0.125,0.25"], {"optim.name": "adamw", "optim.betas": "0.9,1.5"},
             "--betas must lie in [0, 1)"),
            (["seed=0,1"], {"knn_train": str(tmp_path / "none"),
                            "knn_test": str(tmp_path / "none")}, "--knn-train: folder not found"),
            (["seed=0,1"], {"batch_size": 32}, "--batch-size 32 is larger than the data set")]:
        cell_flags = {k: v for k, v in flags.items() if k != "model.width" or len(axes) == 1}
        with pytest.raises(SimCLRError) as info:
            run_sweep([parse_axis(a) for a in axes], tmp_path / "sw", preset=None,
                      config=None, flags={**cell_flags, **bad}, evaluate=None)
        assert str(info.value).startswith(message), info.value
        assert not (tmp_path / "sw").exists()
    # the same value swept: the cell's own
    with pytest.raises(SimCLRError, match=r"^cell temperature=-1: --temperature must be"):
        run_sweep([parse_axis("temperature=-1,0.5")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None)
    # An unswept flag wrong only in some cells (--semi-hard beside nt_xent) is theirs,
    # whatever the axes' order: the settings without the swept values (defaults, which
    # fail like the first cell) do not make it the sweep's where other cells pass.
    for axes in (["loss=nt_xent,nt_logistic"], ["loss=nt_logistic,nt_xent"],
                 ["loss=nt_xent,nt_logistic", "seed=0,1"],
                 ["seed=0,1", "loss=nt_logistic,nt_xent"]):
        with pytest.raises(SimCLRError, match=r"^cell (seed=\d_)?loss=nt_xent(_seed=\d)?: "
                           r"--semi-hard applies to --loss nt_logistic"):
            run_sweep([parse_axis(a) for a in axes], tmp_path / "sw", preset=None,
                      config=None, flags={**flags, "loss.semi_hard": True}, evaluate=None)
        assert not (tmp_path / "sw").exists()
    # One cell: its value's error stays its own where the settings without the value
    # fail otherwise (a flag wrong in every cell, checked later)
    with pytest.raises(SimCLRError, match=r"^cell temperature=-1: --temperature must be"):
        run_sweep([parse_axis("temperature=-1")], tmp_path / "sw", preset=None, config=None,
                  flags={**flags, "optim.name": "adamw", "optim.betas": "0.9,1.5"},
                  evaluate=None)


class _Checked(Exception):
    """Raised by :func:`_stop_checked`: every other check of the sweep passed."""


def _stop_checked(configs):
    raise _Checked  # (the sweep's last check: nothing trains here)


def test_the_eval_test_folder_is_read_as_a_test_split_by_the_decoder_check(
        tmp_path, image_folder, cache_dir):
    """decoder=pil,device on small pictures (cached) is two runs where the sweep's
    scoring decodes a folder at each pass: --eval-test's test/ of photos (not cached),
    though its train/ of small pictures would be cached."""
    from tests.conftest import make_image_folder

    small = make_image_folder(tmp_path / "split" / "train", per_class=2)
    make_image_folder(tmp_path / "split" / "test", per_class=2, side=100, ext="jpg")
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, memory_check=False)
    flags.pop("out")

    with pytest.raises(_Checked):
        run_sweep([parse_axis("data.decoder=pil,device")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None,
                  folders={"--eval-train": str(small), "--eval-test": str(tmp_path / "split")},
                  last_check=_stop_checked)


def test_the_eval_folders_are_compared_as_decoded_on_the_scorings_device(
        tmp_path, image_folder, cache_dir):
    """decoder=pil,auto on cached training data: two runs where the scoring decodes the
    --eval folder of photos on CUDA (auto: nvJPEG), one where it decodes them on the
    cells' CPU (folders_device None)."""
    from tests.conftest import make_image_folder

    photos = str(make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg"))
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, memory_check=False)
    flags.pop("out")

    def sweep(device):
        run_sweep([parse_axis("data.decoder=pil,auto")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None, folders={"--eval-test": photos},
                  folders_device=device, last_check=_stop_checked)

    with pytest.raises(_Checked):
        sweep("cuda")
    with pytest.raises(SimCLRError, match="--decoder pil and auto are both cached here"):
        sweep(None)


def test_a_diverging_cell_is_recorded_and_the_sweep_goes_on(tmp_path, image_folder, cache_dir,
                                                            monkeypatch):
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    flags["optim.lr"] = "1e30"  # the first update blows the weights up: non-finite loss
    cells, table = run_sweep([parse_axis("temperature=0.5")], tmp_path / "a", preset=None,
                             config=None, flags=flags, evaluate=None)
    assert cells[0].result["status"].startswith("diverged at step")
    flags["optim.lr"] = 0.5
    axes = [parse_axis("optim.lr=1e30,0.5")]
    flags.pop("optim.lr")
    cells, table = run_sweep(axes, tmp_path / "b", preset=None, config=None, flags=flags,
                             evaluate=None)
    assert cells[0].result["status"].startswith("diverged") and cells[1].result["status"] == \
        "finished"
    summary = json.loads((tmp_path / "b" / cells[0].name / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["reason"]
    from simclr import train

    def no_training(*args, **kwargs):
        raise AssertionError("a recorded cell was trained again")

    monkeypatch.setattr(train, "pretrain", no_training)
    again, _ = run_sweep(axes, tmp_path / "b", preset=None, config=None, flags=flags,
                         evaluate=None)  # recorded: not trained again
    assert again[0].result == cells[0].result


def test_a_finished_cell_on_a_folder_that_changed_is_reused_with_a_note(
        tmp_path, image_folder, cache_dir, capsys):
    """A finished cell is reused as --resume of a finished run is, but a folder that now
    lists other images is said: the cell's row stands for the images it trained on."""
    import shutil

    (image_folder / "class_0" / "bad.png").write_bytes(b"not an image")  # (read: skipped)
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    axes = [parse_axis("temperature=0.2")]
    cells, _ = run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags,
                         evaluate=None)
    last = cells[0].run_dir / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns
    capsys.readouterr()
    run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags, evaluate=None)
    assert "note:" not in capsys.readouterr().err  # the same folder: nothing to say
    first = sorted((image_folder / "class_0").iterdir())[0]
    shutil.copy(first, first.with_name("added" + first.suffix))
    run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags, evaluate=None)
    err = capsys.readouterr().err
    assert f"note: cell {cells[0].name} was trained on the 25 image files of " \
           f"{image_folder}, which now holds 26" in err
    assert last.stat().st_mtime_ns == stamp  # reused, not trained again


def test_a_rerun_written_otherwise_reuses_the_runs_of_the_same_settings(
        tmp_path, image_folder, cache_dir, capsys):
    """'.2' for '0.2', or the axes in another order, name other folders: the runs of the
    same settings already in --out are found and reused, not trained again beside them."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    flags.pop("loss.temperature")
    out = tmp_path / "sw"
    first, _ = run_sweep([parse_axis("temperature=0.2,0.5"), parse_axis("seed=0")], out,
                         preset=None, config=None, flags=flags, evaluate=None)
    stamps = {c.name: (c.run_dir / "checkpoints/last.pt").stat().st_mtime_ns for c in first}
    capsys.readouterr()
    cells, table = run_sweep([parse_axis("seed=0"), parse_axis("temperature=.2,0.5,1")], out,
                             preset=None, config=None, flags=flags, evaluate=None)
    assert [c.name for c in cells] == ["temperature=0.2_seed=0", "temperature=0.5_seed=0",
                                       "seed=0_temperature=1"]
    assert {c.name: (c.run_dir / "checkpoints/last.pt").stat().st_mtime_ns
            for c in cells[:2]} == stamps  # reused, not trained again
    assert cells[2].result["status"] == "finished"  # the new value: trained
    assert "cell seed=0_temperature=.2 is the run in temperature=0.2_seed=0" in \
        capsys.readouterr().err
    assert "| 0 | .2 | finished |" in table
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(c.name for c in cells)
    assert json.loads((out / "sweep.json").read_text())[0]["cell"] == "temperature=0.2_seed=0"


def test_a_preempted_sweep_stops_and_exits_75(tmp_path, image_folder, monkeypatch, capsys):
    from simclr import train

    calls = []

    def statuses():
        return [r["status"] for r in json.loads((tmp_path / "sw/sweep.json").read_text())]

    def preempted(cfg, resume=False):
        calls.append(statuses())  # the plan is written before the first cell runs
        return {"status": "preempted", "steps": 1, "epochs": 0.1, "elapsed_s": 1.0}

    monkeypatch.setattr(train, "pretrain", preempted)
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--batch-size", "8", "--eval", "none", "--out", str(tmp_path / "sw")])
    assert code == train.EXIT_PREEMPTED
    assert calls == [["pending", "pending"]]  # the second cell never started
    assert statuses() == ["preempted", "pending"]
    assert "| 0.5 | pending |" in (tmp_path / "sw/sweep.md").read_text()
    assert "the same command continues it" in capsys.readouterr().err


def test_a_sigterm_during_a_cells_final_knn_stops_the_sweep(tmp_path, image_folder,
                                                           cache_dir, monkeypatch):
    """A SIGTERM during a cell's final kNN measure (minutes on real data: the loop has
    ended) was lost: the sweep trained the next cell and exited 0. The cell has
    finished, its signal on record: the sweep exits 75, and the same command goes on
    to the next cell."""
    import os

    from simclr import train

    real, signalled = train.final_knn, []

    def final_knn(*args, **kwargs):
        result = real(*args, **kwargs)
        if not signalled:  # (once: the rerun's cell is not stopped)
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # (the run's StopFlag takes it)
        return result

    monkeypatch.setattr(train, "final_knn", final_knn)

    def sweep() -> int:
        return main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                     "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
                     "--batch-size", "8", "--epochs", "1", "--precision", "fp32",
                     "--device", "cpu", "--no-progress", "--workers", "0", "--cache-dir",
                     cache_dir, "--knn-train", str(image_folder), "--knn-test",
                     str(image_folder), "--eval", "none", "--out", str(tmp_path / "sw")])

    def statuses():
        return [r["status"] for r in json.loads((tmp_path / "sw/sweep.json").read_text())]

    assert sweep() == train.EXIT_PREEMPTED
    assert statuses() == ["finished", "pending"]
    assert not (tmp_path / "sw/temperature=0.5").exists()
    assert sweep() == 0 and statuses() == ["finished", "finished"]
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_signal_while_a_cell_starts_stops_the_sweep_as_a_preemption(
        tmp_path, image_folder, monkeypatch, capsys, stop):
    """A SIGTERM while a cell starts up (config written, decoding, the model built: no
    StopFlag yet, :class:`simclr.interrupts.Terminated` raised) stopped the sweep with 143 and
    the row 'interrupted', though a signal-stopped sweep exits 75: now its row says
    'preempted' and the sweep exits 75 (the same command continues). A Ctrl-C stays one."""
    from simclr import train
    from simclr.interrupts import Terminated

    def starting(cfg, resume=False):
        if stop == "SIGTERM":
            raise Terminated(signal.SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "pretrain", starting)
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--batch-size", "8", "--eval", "none", "--out", str(tmp_path / "sw")])
    rows = [r["status"] for r in json.loads((tmp_path / "sw/sweep.json").read_text())]
    if stop == "SIGTERM":
        printed = capsys.readouterr()
        assert code == train.EXIT_PREEMPTED and rows == ["preempted", "pending"]
        assert "| 0.2 | preempted |" in printed.out
        assert "the same command continues it" in printed.err
    else:
        assert code == 130 and rows == ["interrupted", "pending"]


@pytest.mark.parametrize("evaluated", [False, True])
def test_a_stop_at_a_cells_last_step_stops_the_sweep(tmp_path, image_folder, monkeypatch,
                                                    capsys, evaluated):
    """The cell's run has finished (stopped at its last step), but the sweep was asked
    to stop: it does (before evaluating it), its row 'finished' as the run's summary and
    `simclr info` say (it read 'preempted'), and where the sweep evaluates its cells,
    not evaluated yet; the same command reuses it, evaluates it and goes on."""
    from simclr import sweep as sweep_module
    from simclr import train

    calls = []

    def stopped_at_the_end(cfg, resume=False):
        calls.append(Path(cfg.out).name)
        return {"status": "finished", "signal": "SIGTERM", "steps": 6, "epochs": 2.0,
                "elapsed_s": 1.0}

    monkeypatch.setattr(train, "pretrain", stopped_at_the_end)
    monkeypatch.setattr(sweep_module, "_finished", lambda run_dir: None)
    scored = []
    monkeypatch.setattr("simclr.sweep_command.evaluate_run",
                        lambda run_dir, *_: scored.append(run_dir.name) or
                        {"knn_top1": 0.5})
    argv = ["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
            "--batch-size", "8", "--out", str(tmp_path / "sw"),
            *(["--eval-train", str(image_folder), "--eval-test", str(image_folder)]
              if evaluated else ["--eval", "none"])]
    assert main(argv) == train.EXIT_PREEMPTED
    assert calls == ["temperature=0.2"] and scored == []
    assert "sweep stopped by a signal" in capsys.readouterr().err
    rows = json.loads((tmp_path / "sw/sweep.json").read_text())
    first = "finished, not evaluated: rerun the sweep to evaluate it" if evaluated \
        else "finished"
    assert [r["status"] for r in rows] == [first, "pending"]
    assert f"| {first} |" in (tmp_path / "sw/sweep.md").read_text()
    # rerun: the finished cell is reused (its old stop no reason to stop again)
    done = {"status": "finished", "signal": "SIGTERM", "steps": 6, "epochs": 2.0,
            "elapsed_s": 1.0}
    monkeypatch.setattr(sweep_module, "_finished",
                        lambda run_dir: done if run_dir.name == "temperature=0.2" else None)
    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False: {
        "status": "finished", "signal": None, "steps": 6, "epochs": 2.0, "elapsed_s": 1.0})
    assert main(argv) == 0
    rows = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert scored == (["temperature=0.2", "temperature=0.5"] if evaluated else [])


def test_an_out_inside_a_run_is_refused(tmp_path, image_folder, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("epochs: 1\nprovenance:\n  simclr: 0.1.0\n")
    for out in (run / "sub", run / "checkpoints"):
        assert main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                     "--batch-size", "8", "--eval", "none", "--out", str(out)]) == 2
        assert f"--out {out} lies inside the run {run}; give the sweep a folder" in \
            capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
    # (a project's own config.yaml and checkpoints/ are no run: rundir.run_above)


def test_an_out_that_links_to_a_missing_folder_gets_that_folder(tmp_path, image_folder,
                                                                cache_dir):
    """`ln -s /scratch/sw runs/sw` before /scratch/sw exists: the sweep's mkdir stopped
    at the link ('File exists', a traceback) after every cell had been checked."""
    (tmp_path / "scratch").mkdir()
    link = tmp_path / "sw"
    link.symlink_to(tmp_path / "scratch" / "sw")
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    for key in ("out", "loss.temperature"):
        flags.pop(key)
    cells, _ = run_sweep([parse_axis("temperature=0.2,0.5")], link, preset=None, config=None,
                         flags=flags, evaluate=None)
    assert [c.result["status"] for c in cells] == ["finished", "finished"]
    assert (tmp_path / "scratch" / "sw" / cells[0].run_dir.name / "summary.json").is_file()


def test_a_sweep_cut_by_a_second_ctrl_c_says_so_in_its_files(tmp_path, image_folder,
                                                            monkeypatch, capsys):
    """The interrupted cell stayed 'pending' in sweep.md/csv/json, as if never started."""
    from simclr import train

    def interrupted(cfg, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "pretrain", interrupted)
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--batch-size", "8", "--eval", "none", "--out", str(tmp_path / "sw")])
    assert code == 130
    rows = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert [r["status"] for r in rows] == ["interrupted", "pending"]
    assert "temperature,status\n0.2,interrupted\n0.5,pending\n" == \
        (tmp_path / "sw/sweep.csv").read_text()


def test_a_failed_cell_says_so_in_the_sweeps_files(tmp_path, image_folder, monkeypatch,
                                                  capsys):
    """A cell whose pretraining failed (unreadable images met once it ran) stayed
    'pending' in sweep.md/csv/json, as if never started."""
    from simclr import train

    def failed(cfg, resume=False):
        raise SimCLRError("none of the images could be read")

    monkeypatch.setattr(train, "pretrain", failed)
    code = main(["sweep", "--set", "temperature=0.2,0.5", "--data", str(image_folder),
                 "--batch-size", "8", "--eval", "none", "--out", str(tmp_path / "sw")])
    assert code == 2 and "none of the images could be read" in capsys.readouterr().err
    rows = json.loads((tmp_path / "sw/sweep.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "pending"]
    assert "| 0.2 | failed |" in (tmp_path / "sw/sweep.md").read_text()


def test_a_cell_saved_with_relative_paths_is_reused(tmp_path, image_folder, cache_dir,
                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    flags.update({"data.path": "images", "data.cache_dir": "cache"})
    axes = [parse_axis("temperature=0.5")]
    cells, _ = run_sweep(axes, "sw", preset=None, config=None, flags=flags, evaluate=None)
    saved_cfg = tmp_path / "sw" / cells[0].name / "config.yaml"
    saved = load_yaml(saved_cfg)
    assert saved["data"]["path"] == str(image_folder)
    saved["data"].update({"path": "images", "cache_dir": "cache"})  # as older runs saved them
    save_yaml(saved, saved_cfg)
    last = saved_cfg.parent / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns
    run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags, evaluate=None)
    assert last.stat().st_mtime_ns == stamp  # the same folders: reused
    (tmp_path / "other").symlink_to(image_folder)
    with pytest.raises(SimCLRError, match="other settings .*data.path"):
        run_sweep(axes, tmp_path / "sw", preset=None, config=None,
                  flags={**flags, "data.path": "other"}, evaluate=None)


def test_a_rerun_resumes_the_interrupted_cell_from_its_checkpoint(tmp_path, image_folder,
                                                                  cache_dir, monkeypatch):
    """Cell 2 is stopped after step 4 of 6 (as by a SIGTERM); the same command then
    reuses cell 1, trains cell 2's steps 5-6 only, and ends with the weights of a run
    never interrupted."""

    from simclr import train
    from simclr.checkpoint_read import load_checkpoint

    real, trained, stop_at = train.pretrain, [], {"temperature=0.5": 4}

    def pretrain(cfg, resume=False):
        cell = Path(cfg.out).name

        def on_step(step, stop):
            trained.append((cell, step))
            if stop_at.get(cell) == step:
                stop.requested = "SIGTERM"

        return real(cfg, resume=resume, on_step=on_step)

    monkeypatch.setattr(train, "pretrain", pretrain)

    def sweep(values: str, out: str) -> int:
        return main(["sweep", "--set", f"temperature={values}", "--data", str(image_folder),
                     "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
                     "--batch-size", "8", "--epochs", "2", "--precision", "fp32",
                     "--device", "cpu", "--no-progress", "--workers", "0", "--cache-dir",
                     cache_dir, "--deterministic", "--log-every", "1", "--checkpoint-every",
                     "0", "--eval", "none", "--out", str(tmp_path / out)])

    assert sweep("0.2,0.5", "sw") == train.EXIT_PREEMPTED
    first = [("temperature=0.2", s) for s in range(1, 7)] + \
        [("temperature=0.5", s) for s in range(1, 5)]
    assert trained == first
    cell = tmp_path / "sw" / "temperature=0.5"
    assert json.loads((cell / "summary.json").read_text())["status"] == "preempted"
    assert load_checkpoint(cell / "checkpoints/last.pt")["step"] == 4
    done = tmp_path / "sw" / "temperature=0.2" / "checkpoints" / "last.pt"
    stamp = done.stat().st_mtime_ns
    stop_at.clear()
    assert sweep("0.2,0.5", "sw") == 0
    assert trained[len(first):] == [("temperature=0.5", 5), ("temperature=0.5", 6)]
    assert done.stat().st_mtime_ns == stamp  # the finished cell: reused
    lines = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x.get("event") == "start"] == [0, 4]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4, 5, 6]
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [(r["status"], r["steps"]) for r in rows] == [("finished", 6)] * 2
    assert sweep("0.5", "full") == 0  # the same cell, never interrupted
    a = load_checkpoint(tmp_path / "full/temperature=0.5/checkpoints/last.pt")["model"]
    b = load_checkpoint(cell / "checkpoints/last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cells_trained_by_two_processes_follow_one_and_record_divergence(
        tmp_path, image_folder, cache_dir, capfd):
    """--processes 2: each cell is `simclr pretrain --processes 2` (global batch shared,
    global BN), a diverged cell recorded as in one process, the sweep going on."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, deterministic=True,
                       threads=1, checkpoint_every=0)
    flags.pop("out")
    axes = [parse_axis("optim.lr=1e30,0.05")]
    two, _ = run_sweep(axes, tmp_path / "two", preset=None, config=None, flags=flags,
                       evaluate=None, processes=2)
    assert two[0].result["status"].startswith("diverged at step")
    assert two[1].result["status"] == "finished"
    printed = capfd.readouterr()
    assert "finished: 6 steps" in printed.out  # the cell's summary line, not its hints
    assert "next:" not in printed.out and "continue with" not in printed.err
    one, _ = run_sweep([parse_axis("optim.lr=0.05")], tmp_path / "one",
                       preset=None, config=None, flags=flags, evaluate=None)

    def losses(cell):
        lines = (cell.run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines if '"loss"' in x]

    assert len(losses(two[1])) == 6
    np.testing.assert_allclose(losses(two[1]), losses(one[0]), rtol=1e-4)


def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, image_folder):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimCLRError, match=r"^--out .*file/sw: .*file is a file, not a folder$"):
        run_sweep([parse_axis("temperature=0.2,0.5")], tmp_path / "file" / "sw", preset=None,
                  config=None, flags={"data.path": str(image_folder)}, evaluate=None)


def test_a_file_in_a_cells_place_is_refused_before_any_cell_trains(tmp_path, image_folder,
                                                                     cache_dir):
    """The second cell's folder a file: the sweep trained the first, then stopped there;
    refused now before anything is written."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, max_steps=1)
    flags.pop("out")
    out = tmp_path / "sw"
    out.mkdir()
    (out / "temperature=0.5").write_text("x")
    with pytest.raises(SimCLRError, match=r"^--out .*sw: .*sw/temperature=0.5 is a file, not a "
                                          r"folder$"):
        run_sweep([parse_axis("temperature=0.2,0.5")], out, preset=None, config=None,
                  flags=flags, evaluate=None)
    assert sorted(p.name for p in out.iterdir()) == ["temperature=0.5"]


def test_a_rerun_that_scores_less_keeps_the_earlier_summary(tmp_path, image_folder, cache_dir,
                                                            capsys):
    """A rerun with --eval none (or the other protocol) rewrote sweep.json/.md without
    the earlier scores; that summary is now kept beside the new one."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, max_steps=1)
    flags.pop("out")
    out, axes = tmp_path / "sw", [parse_axis("seed=0")]

    def score(run_dir):
        return {"knn_top1": 0.5}

    run_sweep(axes, out, preset=None, config=None, flags=flags, evaluate=score, scores="knn")
    scored = (out / "sweep.json").read_text()
    run_sweep(axes, out, preset=None, config=None, flags=flags, evaluate=score, scores="knn")
    assert not (out / "sweep.previous-1.json").exists()  # the same scores: rewritten
    capsys.readouterr()
    run_sweep(axes, out, preset=None, config=None, flags=flags, evaluate=None)
    assert (out / "sweep.previous-1.json").read_text() == scored
    assert "(knn_top1 not scored by this sweep) is kept as sweep.previous-1.json" in \
        capsys.readouterr().err
    run_sweep(axes, out, preset=None, config=None, flags=flags,
              evaluate=lambda run_dir: {"linear_top1": 0.4},
              scores="linear")  # nothing scored in the summary now: nothing to keep
    assert not (out / "sweep.previous-2.json").exists()
    run_sweep(axes, out, preset=None, config=None, flags=flags, evaluate=score, scores="knn")
    assert "linear_top1" in (out / "sweep.previous-2.json").read_text()  # the other protocol


def test_a_rerun_scored_by_another_evaluation_keeps_the_earlier_summary(
        tmp_path, image_folder, cache_dir, capsys):
    """A rerun with only --eval-protocol or the evaluation folders changed rewrote the
    summary's top-1 columns, same names, other meaning: its rows now record what scored
    them, and a summary scored by another evaluation is kept as sweep.previous-K."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, max_steps=1)
    flags.pop("out")
    out, axes = tmp_path / "sw", [parse_axis("seed=0")]
    lbfgs = {"scores": "linear", "train": "/a/train", "test": "/a/test"}
    sgd = {**lbfgs, "protocol": "sgd", "epochs": "90", "batch_size": "256"}

    def sweep(evaluated_on, top1=0.5):
        run_sweep(axes, out, preset=None, config=None, flags=flags,
                  evaluate=lambda run_dir: {"linear_top1": top1}, scores="linear",
                  evaluated_on=evaluated_on)
        return json.loads((out / "sweep.json").read_text())

    assert sweep(lbfgs)[0]["evaluated_on"] == lbfgs
    first = (out / "sweep.json").read_text()
    sweep(lbfgs)  # the same evaluation: rewritten
    assert not (out / "sweep.previous-1.json").exists()
    capsys.readouterr()
    assert sweep(sgd, 0.3)[0]["evaluated_on"] == sgd
    assert (out / "sweep.previous-1.json").read_text() == first
    err = capsys.readouterr().err
    assert ("the earlier summary (linear_top1 scored by another evaluation: protocol none, "
            "not 'sgd')") in err
    assert "is kept as sweep.previous-1.json" in err
    sweep({**sgd, "test": "/b/test"})
    assert "test '/a/test', not '/b/test'" in capsys.readouterr().err
    assert (out / "sweep.previous-2.json").exists()
    rows = json.loads((out / "sweep.json").read_text())
    del rows[0]["evaluated_on"]  # a summary written before rows recorded it, its cell's
    (out / "sweep.json").write_text(json.dumps(rows))  # file none: unknown, the same
    sweep({**sgd, "test": "/b/test"})
    assert not (out / "sweep.previous-3.json").exists() and not capsys.readouterr().err


def test_a_runs_folder_is_refused_as_a_sweeps_out(tmp_path, image_folder, cache_dir):
    flags = tiny_flags(image_folder, tmp_path / "run", cache_dir, max_steps=1)
    run_sweep([parse_axis("seed=0")], tmp_path / "sw", preset=None, config=None,
              flags={k: v for k, v in flags.items() if k != "out"}, evaluate=None)
    cell = tmp_path / "sw" / "seed=0"
    before = _files(cell)
    with pytest.raises(SimCLRError, match=rf"^--out {cell} is the folder of a run "
                                          r"\(config.yaml\); give the sweep a folder"):
        run_sweep([parse_axis("seed=1")], cell, preset=None, config=None,
                  flags={k: v for k, v in flags.items() if k != "out"}, evaluate=None)
    assert _files(cell) == before


def test_a_result_named_as_an_axis_never_hides_the_swept_value(tmp_path):
    from simclr.sweep import _write_summary

    axes = [parse_axis("epochs=1,2")]
    cells = plan_cells(axes, tmp_path)
    cells[0].result = {"status": "finished", "steps": 3, "epochs": 0.33}
    table = _write_summary(tmp_path, axes, cells)
    assert table.splitlines()[0] == "| epochs | status | steps | trained_epochs |"
    assert table.splitlines()[2:] == ["| 1 | finished | 3 | 0.33 |", "| 2 | pending |  |  |"]
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["epochs"], r.get("trained_epochs")) for r in rows] == [("1", 0.33), ("2", None)]


def test_only_a_scored_row_records_what_scored_it(tmp_path):
    """sweep.json's rows record ``evaluated_on`` where they hold scores, not a pending or
    unscored cell's row (nothing scored it)."""
    from simclr.sweep import _write_summary

    axes = [parse_axis("seed=0,1")]
    cells = plan_cells(axes, tmp_path)
    cells[0].result = {"status": "finished", "steps": 3, "knn_top1": 0.5}
    _write_summary(tmp_path, axes, cells, {"scores": "knn"})
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [row.get("evaluated_on") for row in rows] == [{"scores": "knn"}, None]


def test_a_cell_resumed_by_other_processes_gets_the_reruns_runtime_settings(tmp_path):
    """What a rerun may change (where and how fast a cell runs) reaches a cell that
    `pretrain --resume --processes N` continues: as flags its parser takes."""
    from simclr.cli import build_parser, config_flags
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import apply_resume_flags
    from simclr.settings import config_from_dict

    saved = build_config("digits", None, {"out": str(tmp_path / "cell"), "threads": 2})
    (tmp_path / "cell").mkdir()
    save_yaml(saved.to_dict(), tmp_path / "cell" / "config.yaml")
    assert runtime_flags(saved, tmp_path / "cell") == []
    now = build_config("digits", None, {"out": str(tmp_path / "cell"), "keep_checkpoints": 5,
                                        "memory_check": False, "checkpoint_minutes": 2.5})
    argv = runtime_flags(now, tmp_path / "cell")
    assert argv == ["--checkpoint-minutes", "2.5", "--keep-checkpoints", "5",
                    "--no-memory-check", "--threads", "none"]
    args = build_parser().parse_args(["pretrain", "--resume", str(tmp_path / "cell"), *argv])
    resumed = config_from_dict(saved.to_dict())
    apply_resume_flags(resumed, config_flags(args), RESUME_SETTINGS)
    assert resumed == now


def test_a_cell_resumed_by_other_processes_is_told_only_what_changed(tmp_path, image_folder,
                                                                     monkeypatch):
    """`pretrain --resume --processes N` of a cell gets the rerun's runtime flags; a
    path saved relative (an older run's) is the same folder, and a setting the saved run
    lacks (made before it existed) is passed."""
    from simclr import launch
    from simclr.sweep import _launched

    monkeypatch.chdir(tmp_path)
    cell = tmp_path / "sw" / "cell"
    cell.mkdir(parents=True)
    now = build_config(None, None, {"out": str(cell), "keep_checkpoints": 5,
                                    "data.path": str(image_folder),
                                    "data.cache_dir": str(tmp_path / "cache")})
    saved = now.to_dict()
    saved["data"]["cache_dir"] = "cache"  # as typed, relative to where the sweep ran
    del saved["keep_checkpoints"]
    save_yaml(saved, cell / "config.yaml")
    assert runtime_flags(now, cell) == ["--keep-checkpoints", "5"]
    argvs = []
    monkeypatch.setattr(launch, "run", lambda argv, processes, command=None, device="auto":
                        argvs.append(argv) or 0)
    _launched(now, cell, "cell", 2, resume=True)
    assert argvs == [["pretrain", "--resume", str(cell), "--keep-checkpoints", "5",
                      "--sweep-cell", "--processes", "2"]]


def test_a_cell_trained_by_processes_of_its_own_records_the_sweeps_command(
        tmp_path, image_folder, monkeypatch):
    """Its processes recorded their own command (a hidden --config file, gone once read,
    and the internal --sweep-cell), which info showed as the run's and nothing could run
    again: they record the sweep's, as a cell trained in the sweep's process does; the
    sweep's environment is left as it was."""
    import json
    import os
    import sys

    from simclr import launch, runtime
    from simclr.sweep import _launched

    sweep = ["simclr", "sweep", "--data", "d", "--set", "seed=0,1", "--processes", "2"]
    monkeypatch.setattr(runtime, "COMMAND_LINE", sweep)
    monkeypatch.delenv(runtime.SWEEP_COMMAND_ENV, raising=False)
    cfg = build_config(None, None, {"out": str(tmp_path / "sw" / "cell"),
                                    "data.path": str(image_folder)})
    recorded = []

    def cell_process(argv, processes, command=None, device="auto"):
        # (what the cell's process finds: its own argv, the sweep's in its environment)
        with monkeypatch.context() as inside:
            inside.setattr(runtime, "COMMAND_LINE", None)
            inside.setattr(sys, "argv", ["simclr/__main__.py", *argv])
            recorded.append((runtime.command_line(), os.environ[runtime.SWEEP_COMMAND_ENV]))
        return 0

    monkeypatch.setattr(launch, "run", cell_process)
    _launched(cfg, tmp_path / "sw" / "cell", "cell", 2, resume=False)
    assert recorded == [(sweep, json.dumps(sweep))]
    assert runtime.SWEEP_COMMAND_ENV not in os.environ
    # a process that is no sweep's cell records its own command, whatever the environment
    monkeypatch.setenv(runtime.SWEEP_COMMAND_ENV, json.dumps(sweep))
    monkeypatch.setattr(runtime, "COMMAND_LINE", None)
    monkeypatch.setattr(sys, "argv", ["simclr/__main__.py", "pretrain", "--data", "d"])
    assert runtime.command_line() == ["simclr", "pretrain", "--data", "d"]


def test_a_second_sweep_into_a_folder_in_use_is_refused_before_it_writes(
        tmp_path, image_folder, cache_dir):
    """While a sweep runs, another into the same --out is refused in one line, before it
    sets the summary aside or rewrites it as pending under the first."""
    from simclr.files import lock_folder

    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    out = tmp_path / "sw"
    run_sweep([parse_axis("seed=0")], out, preset=None, config=None, flags=flags,
              evaluate=None)
    before = _files(out)
    held = lock_folder(out)  # as the first sweep holds it while it runs
    try:
        with pytest.raises(SimCLRError, match=r"is in use by another simclr run \(pid "):
            run_sweep([parse_axis("seed=1,2")], out, preset=None, config=None, flags=flags,
                      evaluate=None)
    finally:
        held.close()
    assert {k: v for k, v in _files(out).items() if ".simclr.lock" not in k} == \
        {k: v for k, v in before.items() if ".simclr.lock" not in k}


@pytest.mark.parametrize("name, stop", [("SIGTERM", "Terminated"), ("SIGHUP", "Terminated"),
                                        ("SIGUSR1", "Terminated"), ("SIGINT", "KeyboardInterrupt")])
def test_a_cell_whose_processes_a_forwarded_signal_ended_stops_the_sweep_as_they_did(
        tmp_path, monkeypatch, name, stop):
    """`pretrain --processes N` ended by the SIGTERM (SIGHUP, SIGUSR1) / Ctrl-C forwarded
    to it outside training (the launcher has said so): the sweep stops as on that
    signal, not with "failed (exit status 143)"; the cell's hidden first-start config
    is not left behind."""
    if not hasattr(signal, name):
        pytest.skip(f"no {name} here")
    status = 128 + getattr(signal, name)
    from simclr import launch
    from simclr.sweep import _launched

    cfg = build_config("digits", None, {"out": str(tmp_path / "sw" / "cell")})
    seen: list[bool] = []

    def ended(argv, processes, command=None, device="auto"):
        seen.append(Path(argv[argv.index("--config") + 1]).is_file())
        return status

    monkeypatch.setattr(launch, "run", ended)
    with pytest.raises(KeyboardInterrupt) as raised:
        _launched(cfg, tmp_path / "sw" / "cell", "cell", 2, resume=False)
    assert type(raised.value).__name__ == stop and seen == [True]
    assert not (tmp_path / "sw" / ".cell.yaml").exists()


def test_a_launched_cell_returns_its_summary_unless_its_processes_failed(tmp_path,
                                                                          monkeypatch):
    """`pretrain --processes N` exits 0 (finished) or 75 (preempted: the sweep stops,
    resumable), or fails after its run diverged (recorded, the sweep goes on): the
    cell's summary is its row. Any other failure stops the sweep, saying how to go on."""
    from simclr import launch
    from simclr.sweep import _launched

    run_dir = tmp_path / "sw" / "cell"
    run_dir.mkdir(parents=True)
    cfg = build_config("digits", None, {"out": str(run_dir)})
    exit_status = []
    monkeypatch.setattr(launch, "run", lambda argv, processes, command=None, device="auto":
                        exit_status[-1])
    for status, summary in ((0, "finished"), (75, "preempted"), (1, "diverged")):
        (run_dir / "summary.json").write_text(json.dumps({"status": summary, "steps": 3}))
        exit_status.append(status)
        assert _launched(cfg, run_dir, "cell", 2, resume=False) == {"status": summary,
                                                                    "steps": 3}
    (run_dir / "summary.json").write_text(json.dumps({"status": "preempted", "steps": 3}))
    exit_status.append(1)
    with pytest.raises(SimCLRError, match=r"cell cell: `simclr pretrain --config .* "
                                          r"--processes 2` failed \(exit status 1\); the same "
                                          r"sweep command continues"):
        _launched(cfg, run_dir, "cell", 2, resume=False)


def test_a_cells_row_is_its_runs_summary_rounded():
    """Epochs to 2 decimals (7 steps of 3 an epoch: 2.33), seconds whole, Table 5's
    columns to 4 (a NaN one, from a skipped step, left out); a run stopped at its last
    step has finished; a diverged one names its step."""
    from simclr.sweep import _trained

    summary = {"status": "finished", "steps": 7, "epochs": 7 / 3, "elapsed_s": 12.6,
               "contrast_entropy": 1.234567, "contrast_acc": float("nan")}
    assert _trained(summary) == {"status": "finished", "steps": 7, "epochs": 2.33,
                                 "train_s": 13, "contrast_entropy": 1.2346}
    assert _trained({**summary, "signal": "SIGTERM"})["status"] == "finished"
    assert _trained({"status": "diverged", "steps": 4}) == {"status": "diverged at step 4"}


def test_scores_on_record_show_only_for_finished_cells_of_a_scoring_sweep(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """The table written before anything runs shows a finished cell's scores on record,
    but not a diverged cell's, nor any of a sweep that scores nothing (--eval none); a
    cell whose scoring failed says so in its row."""
    from simclr import train

    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=1)
    flags.pop("out")
    out, axes = tmp_path / "sw", [parse_axis("seed=0,1,2")]
    for name, summary in (("seed=1", {"status": "finished", "steps": 3, "epochs": 1.0,
                                      "elapsed_s": 1.0}),
                          ("seed=2", {"status": "diverged", "steps": 2})):
        (out / name).mkdir(parents=True)
        (out / name / "summary.json").write_text(json.dumps(summary))

    def failed(*args, **kwargs):
        raise SimCLRError("it failed")

    def rows():
        return [(r["status"], r.get("knn_top1"))
                for r in json.loads((out / "sweep.json").read_text())]

    monkeypatch.setattr(train, "pretrain", failed)  # the first cell stops the sweep
    for evaluate, on_record in ((lambda run_dir: {"knn_top1": 0.5}, 0.9), (None, None)):
        with pytest.raises(SimCLRError, match="it failed"):
            run_sweep(axes, out, preset=None, config=None, flags=flags, evaluate=evaluate,
                      recorded=lambda run_dir: {"knn_top1": 0.9})
        assert rows() == [("failed", None), ("finished", on_record),
                          ("diverged at step 2", None)]
    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False: {
        "status": "finished", "steps": 3, "epochs": 1.0, "elapsed_s": 1.0})
    with pytest.raises(SimCLRError, match="it failed"):
        run_sweep(axes, out, preset=None, config=None, flags=flags, evaluate=failed)
    assert rows()[0] == ("failed", None)

ESCAPE = "\x1b]0;PWNED\x07evil"  # a name that sets a terminal's title, as received


def test_a_received_folders_name_is_printed_escaped(tmp_path, monkeypatch, capsys):
    """A cell taken over from a folder of a received sweep is named as printable text
    in the note, the cell's line and a diverged cell's line: its name, as found, set the
    terminal's title."""
    from simclr import train
    from simclr.errors import DivergedError
    from simclr.sweep import _run_cells, cell_configs
    from simclr.sweep_reuse import _find_earlier_runs

    root = tmp_path / "sw"
    save_yaml(build_config("digits", flags={"seed": 0}).to_dict(), root / ESCAPE / "config.yaml")
    axes = [parse_axis("seed=00")]
    cells, configs = cell_configs(axes, root, "digits", None, {})
    notes = _find_earlier_runs(root, cells, configs)
    assert cells[0].name == ESCAPE and "\x1b" not in notes[0]
    assert "is the run in \\x1b]0;PWNED\\x07evil (the same" in notes[0]

    def diverged(cfg, resume=False):
        raise DivergedError("the loss is NaN", 3)

    monkeypatch.setattr(train, "pretrain", diverged)
    _, table = _run_cells(root, axes, cells, configs, None, None)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "sweep cell 1/1: \\x1b]0;PWNED\\x07evil" in out
    assert "cell \\x1b]0;PWNED\\x07evil: the loss is NaN" in out
    assert "diverged at step 3" in table


@pytest.mark.parametrize("rows, kept", [
    ([{"cell": 1}], None),  # a damaged row: skipped, as `simclr info` skips it
    ([1, "x", None], None),
    ({"cell": "other"}, None),  # not a list of rows
    ([{"cell": ["other"]}, {"cell": "seed=0"}], None),
    ([{"cell": 1}, {"cell": "other"}], "cells other not in this grid"),
    ([{"cell": ESCAPE}], "cells \\x1b]0;PWNED\\x07evil not in this grid"),
    ([{"cell": "seed=0", "\x1b[2Jknn_top1": 0.5}], "\\x1b[2Jknn_top1 not scored"),
])
def test_a_damaged_or_crafted_earlier_summary_is_no_traceback(tmp_path, capsys, rows, kept):
    """An earlier sweep.json's damaged rows are skipped (a row that is no dict, a cell
    that is no name), never a traceback once the summary was set aside; the names of
    the ones kept are printed escaped."""
    from simclr.sweep import _keep_other_grid

    (tmp_path / "sweep.json").write_text(json.dumps(rows))
    _keep_other_grid(tmp_path, {"seed=0"}, "")
    err = capsys.readouterr().err
    assert (tmp_path / "sweep.previous-1.json").exists() == bool(kept)
    assert "\x1b" not in err and (kept or "") in err


def test_an_earlier_summarys_scores_are_rewritten_when_this_sweeps_are_unknown(tmp_path,
                                                                                capsys):
    """run_sweep called with an ``evaluate`` but no ``scores`` (the Python API): which
    top-1 columns it writes is unknown, so none counts as lost and the summary of the
    same cells is rewritten, not set aside; without evaluation ('') they would be lost."""
    from simclr.sweep import _keep_other_grid

    (tmp_path / "sweep.json").write_text(json.dumps([{"cell": "seed=0", "knn_top1": 0.5}]))
    _keep_other_grid(tmp_path, {"seed=0"}, None)
    assert not (tmp_path / "sweep.previous-1.json").exists() and not capsys.readouterr().err
    _keep_other_grid(tmp_path, {"seed=0"}, "")
    assert (tmp_path / "sweep.previous-1.json").exists()
    assert "knn_top1 not scored by this sweep" in capsys.readouterr().err


DIGITS = {"train": "digits[train]", "test": "digits[test]"}
# What a cell's results file records, as sweep_command wrote it before the summary's rows
# recorded their evaluation: folders (and, on folders, the transform; since 2026-12-03
# their files' digest); the SGD protocol with its epochs and batch.
FOLDERS = {"train": "/a/train", "test": "/a/test", "transform": "2"}
FILES = {"train_files": "24:ab", "test_files": "6:cd"}
SGD = {"protocol": "sgd", "epochs": "90", "batch_size": "256"}


@pytest.mark.parametrize("columns, files, now, why", [
    ({"knn_top1": 0.9}, {"knn.json": DIGITS}, {"scores": "knn", **DIGITS}, None),
    ({"knn_top1": 0.9, "knn_z_top1": 0.8}, {"knn.json": DIGITS, "knn.previous-1.json":
                                            DIGITS}, {"scores": "knn", **DIGITS}, None),
    # recorded before the folders' files were: the cell's cache takes it as it is
    ({"linear_top1": 0.9}, {"linear_eval.json": FOLDERS},
     {"scores": "linear", **FOLDERS, **FILES}, None),
    ({"linear_top1": 0.9}, {"linear_eval.json": {**FOLDERS, **FILES, **SGD}},
     {"scores": "linear", **FOLDERS, **FILES, **SGD}, None),
    ({"linear_top1": 0.9}, {"linear_eval.json": FOLDERS},
     {"scores": "linear", **FOLDERS, **SGD}, "protocol none, not 'sgd'"),
    ({"linear_top1": 0.9}, {"linear_eval.json": {**FOLDERS, **SGD}},
     {"scores": "linear", **FOLDERS}, "protocol 'sgd', not none"),
    ({"knn_top1": 0.9}, {"knn.json": {**FOLDERS, **FILES}},
     {"scores": "knn", **FOLDERS, **FILES, "test": "/b/test"}, "test '/a/test', not '/b/test'"),
    ({"knn_top1": 0.9}, {"knn.json": {**FOLDERS, **FILES}},
     {"scores": "knn", **FOLDERS, **FILES, "test_files": "7:ef"}, "test_files '6:cd', not"),
    ({"knn_top1": 0.9}, {"knn.json": DIGITS}, DIGITS, None),  # (the Python API's)
    # a row of two protocols: no one results file tells
    ({"knn_top1": 0.9, "linear_top1": 0.8}, {"knn.json": FOLDERS, "linear_eval.json": FOLDERS},
     DIGITS, None),
    # neither the row nor the cell's file tells (no file; one of an older simclr): unknown
    ({"knn_top1": 0.9}, {}, {"scores": "knn", **DIGITS}, None),
    ({"knn_top1": 0.9}, {"knn.json": None}, {"scores": "knn", **DIGITS}, None),
])
def test_a_summary_written_before_rows_recorded_their_evaluation_is_read_from_its_cells(
        tmp_path, capsys, columns, files, now, why):
    """A sweep.json written before its rows recorded what scored them was set aside on
    the first rerun, even of the same command ('scored by an evaluation it does not
    record'): what scored such a row is read from its cell's results file, and only
    another evaluation sets it aside; where neither tells, it is rewritten, as before."""
    from simclr.sweep import _keep_other_grid

    (tmp_path / "sweep.json").write_text(json.dumps([
        {"cell": "temperature=0.1", "temperature": "0.1", "status": "finished", **columns},
        {"cell": "temperature=0.5", "temperature": "0.5", "status": "pending"}]))
    cell = tmp_path / "temperature=0.1"
    cell.mkdir()
    for name, evaluated_on in files.items():
        result = {"top1": 0.9, "precision": "fp32", "source": {"layer": "h"}}
        if evaluated_on is not None:
            result["evaluated_on"] = evaluated_on
        (cell / name).write_text(json.dumps(result))
    _keep_other_grid(tmp_path, {"temperature=0.1", "temperature=0.5"}, now.get("scores"),
                     now)
    err = capsys.readouterr().err
    assert (tmp_path / "sweep.previous-1.json").exists() == bool(why), err
    if why:
        assert f"scored by another evaluation: {why}" in err
    else:
        assert not err


@pytest.mark.parametrize("summary", [
    {"status": "finished", "steps": 1, "epochs": "abc", "elapsed_s": 1.0},
    {"status": "finished", "epochs": 1.0, "elapsed_s": 1.0},
    {"status": "finished", "steps": 1, "epochs": 1.0, "elapsed_s": float("nan")},
    {"status": "finished", "steps": -1, "epochs": 1.0, "elapsed_s": 1.0},
    {"status": "finished", "steps": True, "epochs": 1.0, "elapsed_s": 1.0},
    {"status": "finished", "steps": 2.5, "epochs": 1.0, "elapsed_s": 1.0},  # (no count)
    {"status": "finished", "steps": 1, "epochs": float("inf"), "elapsed_s": 1.0},
    {"status": "\x1b[2Jfinished", "steps": 1, "epochs": 1.0, "elapsed_s": 1.0},
    {"status": "diverged"},
    {"status": "diverged", "steps": "\x1b[2J"},
    {"steps": 1},
])
def test_a_cells_damaged_summary_is_shown_as_damaged(tmp_path, summary):
    """A received cell's summary.json holding a count that is no count (or none), a
    NaN time or an unknown status: its row says the cell is damaged, no traceback."""
    from simclr.sweep import _trained
    from simclr.sweep_grid import Cell
    from simclr.sweep_report import render

    row = _trained(summary)
    assert row == {"status": "damaged (its summary.json cannot be read as a run's; remove "
                             "the cell's folder to train it again)"}
    axes = [parse_axis("seed=0")]
    cell = Cell({"seed": "0"}, {"seed": "0"}, "seed=0", tmp_path, row)
    assert "| 0 | damaged (its summary.json" in render(axes, [cell])
