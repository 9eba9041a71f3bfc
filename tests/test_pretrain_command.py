"""``simclr pretrain`` as a command: the same command run again on its --out continues
the unfinished run there (a requeued SLURM job, torchrun's --max-restarts)."""

from __future__ import annotations

import json
import shlex

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


def test_the_same_command_again_takes_its_new_speed_settings_and_a_moved_folder(
        tmp_path, image_folder, cache_dir, monkeypatch, capsys):
    """The continued run takes the flags --resume may change (--log-every), and a moved
    data folder's new place, given relative, as a full path."""
    from simclr.pretrain_command import same_command_again

    cfg, _ = _stopped_run(tmp_path, image_folder, cache_dir)
    image_folder.rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    flags = {**tiny_flags(image_folder, tmp_path / "run", cache_dir), "log_every": 3,
             "data.path": "moved"}
    continued = same_command_again(build_config(flags=flags), flags)
    assert continued.log_every == 3
    assert continued.data.path == str(tmp_path / "moved")
    given = []  # so does --resume with its new place, given relative
    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False, notes=(): given.append(
        (cfg.data.path, resume)) or {"status": "finished", "rank": 0, "checkpoint": "c"})
    assert main(["pretrain", "--resume", "run", "--data", "moved"]) == 0
    assert given == [(str(tmp_path / "moved"), True)]


def test_print_config_on_an_unfinished_run_shows_the_new_recipe(tmp_path, image_folder,
                                                                  cache_dir, capsys):
    """--print-config continues nothing: the command's own recipe, other settings too."""
    _, recipe = _stopped_run(tmp_path, image_folder, cache_dir)
    capsys.readouterr()
    assert main(["pretrain", "--config", str(recipe), "--lr", "0.1", "--print-config"]) == 0
    assert "lr: 0.1\n" in capsys.readouterr().out


def test_a_refusal_names_an_unset_setting_as_not_set():
    from simclr.pretrain_command import other_settings

    said = str(other_settings("pretrain", "r", {"--max-steps": (None, 3),
                                                "--epochs": (2.0, 3.5)}))
    assert "(--max-steps not set saved, 3 now; --epochs 2 saved, 3.5 now)" in said, said
    # a whole number as typed (not 1e+07), a switch as YAML spells it; the way on pastes as is
    said = str(other_settings("pretrain", "my run", {"--seed": (10000000, 7),
                                                     "--blur": (True, False)}))
    assert "(--seed 10000000 saved, 7 now; --blur true saved, false now)" in said, said
    assert said.endswith("`simclr pretrain --resume 'my run'`"), said


def test_only_the_first_process_says_it_continues_the_run(monkeypatch, capsys):
    from simclr.pretrain_command import say_continuing

    monkeypatch.setenv("RANK", "1")
    say_continuing("r", 4)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    say_continuing("r", 4)
    assert capsys.readouterr().out == ("continuing the unfinished run in r at step 4 (the "
                                       "same command: --resume)\n")


def _fake_pretrain(monkeypatch, summary=None, error=None):
    """train.pretrain replaced: it returns ``summary`` or raises ``error``; the notes
    it was given are recorded."""
    noted = []

    def fake(cfg, resume=False, notes=()):
        noted.append(list(notes))
        if error is not None:
            raise error
        return summary

    monkeypatch.setattr(train, "pretrain", fake)
    return noted


def test_a_batch_refusal_blames_the_default_recipe_only_where_none_was_chosen(
        tmp_path, monkeypatch, capsys):
    from simclr.errors import SimCLRError

    noted = _fake_pretrain(monkeypatch, error=SimCLRError("batch 4096 does not fit: "
                                                          "lower --batch-size"))
    folder = str(tmp_path / "photos")
    (tmp_path / "photos.yaml").write_text(f"data:\n  path: {folder}\n")
    assert main(["pretrain", "--data", folder, "--out", str(tmp_path / "a")]) == 2
    assert "lower --batch-size (no --preset was given: the paper's" in capsys.readouterr().err
    for chosen in (["--preset", "imagenette-cpu", "--data", folder],
                   ["--config", str(tmp_path / "photos.yaml")]):
        assert main(["pretrain", *chosen, "--out", str(tmp_path / "b")]) == 2
        assert "no --preset" not in capsys.readouterr().err, chosen
    assert [bool(n) for n in noted] == [True, False, False]
    # another refusal is not the recipe's: said as it is
    _fake_pretrain(monkeypatch, error=SimCLRError("photos holds no images"))
    assert main(["pretrain", "--data", folder, "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.endswith("error: photos holds no images\n")


def test_a_run_that_ends_says_what_comes_next_only_where_it_is_its_own(
        tmp_path, monkeypatch, capsys):
    """Another rank and a sweep's cell print no summary nor next step; a stop signal at
    the last step is a finished run (exit 0), said on stderr."""
    summary = {"status": "finished", "steps": 6, "epochs": 2.0, "elapsed_s": 1.0,
               "checkpoint": "last.pt", "rank": 0}
    argv = ["pretrain", "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "r"),
            "--preset", "cifar10-cpu"]
    _fake_pretrain(monkeypatch, {**summary, "rank": 1})
    assert main(argv) == 0 and capsys.readouterr().out == ""
    _fake_pretrain(monkeypatch, {**summary, "rank": 1, "status": "preempted"})
    assert main(argv) == train.EXIT_PREEMPTED and capsys.readouterr().out == ""
    _fake_pretrain(monkeypatch, summary)
    assert main([*argv, "--sweep-cell"]) == 0
    assert "next:" not in capsys.readouterr().out
    _fake_pretrain(monkeypatch, {**summary, "signal": "SIGTERM"})
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "next:" not in captured.out
    assert "stopped by SIGTERM at the last step: the run has finished" in captured.err
    _fake_pretrain(monkeypatch, summary)  # its own finished run: each next command
    assert main(argv) == 0
    run = shlex.quote(str(tmp_path / "r"))
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"next: `simclr embed --checkpoint {run} --data DIR --out features.npz`, `simclr "
        f"export --checkpoint {run} --out encoder.pt2` or `simclr linear-eval --checkpoint "
        f"{run} --train LABELED --test LABELED_TEST`")
    # stopped before its end: exit 75, a sweep's cell too; its own run says how to go on
    _fake_pretrain(monkeypatch, {**summary, "status": "preempted", "signal": "SIGTERM"})
    assert main([*argv, "--sweep-cell"]) == train.EXIT_PREEMPTED
    assert "continue with" not in capsys.readouterr().err
    assert main(argv) == train.EXIT_PREEMPTED
    assert (f"stopped by SIGTERM; continue with: simclr pretrain --resume "
            f"{shlex.quote(str(tmp_path / 'r'))}\n") in capsys.readouterr().err


def test_a_scale_chosen_by_any_of_its_flags_is_no_default_recipe(tmp_path, monkeypatch):
    """No --preset is noted as the paper's ImageNet scale only where no flag of the
    scale was given: each of them is the user's choice of it."""
    noted = _fake_pretrain(monkeypatch, {"status": "finished", "rank": 0})
    base = ["pretrain", "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "r")]
    for chosen in (["--arch", "resnet18"], ["--width", "0.5"], ["--image-size", "64"],
                   ["--batch-size", "64"], ["--epochs", "3"], ["--max-steps", "9"],
                   ["--time-budget", "20m"]):
        assert main([*base, *chosen]) == 0
        assert noted.pop() == [], chosen


def test_the_summary_lists_twenty_skipped_images_and_counts_the_rest(capsys):
    from simclr.pretrain_command import print_summary

    for count in (20, 21):
        print_summary({"status": "finished",
                       "skipped_images": [[f"{i}.png", "bad"] for i in range(count)]})
        lines = capsys.readouterr().out.splitlines()
        assert lines[1] == f"skipped {count} unreadable images:"
        assert lines[2:22] == [f"  {i}.png: bad" for i in range(20)]
        assert lines[22:] == ([] if count == 20 else ["  ... and 1 more (see summary.json)"])


def test_the_summary_counts_steps_as_written_and_names_a_sessions_own_paths(capsys):
    """A count of 0 is plural, a step count that is no whole number is left out; the
    skipped images of a session's own summary may be Paths (a damaged entry of three
    items is not one)."""
    from pathlib import Path

    from simclr.pretrain_command import print_summary

    print_summary({"status": "finished", "steps": 0, "epochs": 0.0})
    print_summary({"status": "finished", "steps": 2.5, "epochs": "1",
                   "skipped_images": [(Path("d/a.png"), "bad"), ["b.png", "bad", "x"]]})
    assert capsys.readouterr().out.splitlines() == [
        "finished: 0 steps (0.00 epochs)", "finished", "skipped 1 unreadable images:",
        f"  {Path('d/a.png')}: bad"]
