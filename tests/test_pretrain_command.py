"""``simclr pretrain`` as a command: the same command run again on its --out continues
the unfinished run there (a requeued SLURM job, torchrun's --max-restarts)."""

from __future__ import annotations

import json

import pytest

from simclr import train
from simclr.cli import main
from simclr.config_file import yaml_text
from simclr.settings import build_config
from tests.conftest import tiny_flags

pytestmark = pytest.mark.usefixtures("one_thread")


def _stopped_run(tmp_path, image_folder, cache_dir, at_step=2):
    """A run stopped by a signal at ``at_step`` (a checkpoint written), and a --config
    file holding the settings its command gave."""
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml_text(cfg.to_dict()), encoding="utf-8")

    def preempt(step, stop):
        if step == at_step:
            stop.requested = "SIGTERM"

    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    return cfg, recipe


def test_the_same_command_again_continues_an_unfinished_run(tmp_path, image_folder,
                                                            cache_dir, capsys):
    """It was refused ("already holds a run ... --resume"), so a requeued job or a
    torchrun restart, which run the unchanged command line, could not go on."""
    cfg, recipe = _stopped_run(tmp_path, image_folder, cache_dir)
    capsys.readouterr()
    assert main(["pretrain", "--config", str(recipe), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"continuing the unfinished run in {cfg.out} at step 2 (the same command: " \
           "--resume)" in out, out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 6, summary
    # finished now: the same command again is refused, nothing rewritten
    before = (tmp_path / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main(["pretrain", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert (f"already holds a run (checkpoints/last.pt) that finished at step 6: its results "
            f"are there (`simclr info {cfg.out}`); choose another --out for a new run\n"
            in err), err
    assert (tmp_path / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_an_earlier_first_op_of_the_pipelines_own_order_is_the_same_command(
        tmp_path, image_folder, cache_dir, capsys):
    """A run of a release that accepted --first-op crop (the pipeline's own first group;
    refused now as having no effect) saved it: the command without it, which trains the
    same run, continues it rather than calling it another run's settings."""
    flags = {**tiny_flags(image_folder, tmp_path / "run", cache_dir),
             "augment.asymmetric": True}
    cfg = build_config(flags=flags)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml_text(cfg.to_dict()), encoding="utf-8")
    cfg.augment.first_op = "crop"  # (as that release saved it)

    def preempt(step, stop):
        if step == 2:
            stop.requested = "SIGTERM"

    assert train.pretrain(cfg, on_step=preempt)["status"] == "preempted"
    capsys.readouterr()
    assert main(["pretrain", "--config", str(recipe), "--threads", "1"]) == 0
    assert "continuing the unfinished run" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished", summary


def test_another_command_on_an_unfinished_run_is_refused(tmp_path, image_folder, cache_dir,
                                                         capsys):
    """Other settings are another run: refused, naming them and both ways on."""
    cfg, recipe = _stopped_run(tmp_path, image_folder, cache_dir)
    capsys.readouterr()
    assert main(["pretrain", "--config", str(recipe), "--lr", "0.1", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err == (f"simclr pretrain: error: {cfg.out} holds an unfinished run of other "
                   "settings (--lr 0.5 saved, 0.1 now; --epochs 2 saved, 3 now); choose "
                   "another --out for a new run, or continue this one with its saved "
                   f"settings: `simclr pretrain --resume {cfg.out}`\n"), err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2


def test_the_same_command_again_does_not_continue_a_diverged_run(tmp_path, image_folder,
                                                                 cache_dir, capsys):
    """A diverged run was continued by its command run again (a retry loop, torchrun's
    --max-restarts): from its last good checkpoint into the same blow-up, each time; and
    the command with a lower --lr was refused pointing at --resume, which diverges
    again. Both are refused now, naming the divergence and the way on."""
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        **{"optim.lr": 1e30, "checkpoint_every": 1}))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml_text(cfg.to_dict()), encoding="utf-8")
    assert main(["pretrain", "--config", str(recipe), "--threads", "1"]) == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged", summary
    step, kept = summary["steps"], max((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")}
    capsys.readouterr()
    refusal = (f"simclr pretrain: error: {cfg.out} already holds a run "
               f"(checkpoints/{kept.name}) that diverged at step {step}: continuing it "
               "diverges again; start a new run with a lower --lr in another --out\n")
    for lower in ([], ["--lr", "0.1"]):
        assert main(["pretrain", "--config", str(recipe), "--threads", "1", *lower]) == 2
        captured = capsys.readouterr()
        assert captured.err == refusal and "continuing" not in captured.out, captured
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")} == before
