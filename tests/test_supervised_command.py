"""Tests for simclr.supervised_command: `simclr supervised` from its parsed arguments."""

from __future__ import annotations

import json

import pytest

from simclr.cli import main
from tests.test_supervised import tiny_command

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_received_finished_supervised_runs_steps_are_checked_and_escaped(tmp_path,
                                                                          capsys,
                                                                          monkeypatch):
    """`supervised --resume` of a finished run said its supervised.json's "steps" as it
    was: a received run's escape sequence reached the terminal ("finished at step
    <ESC>]0;... already")."""
    from simclr.cli import main

    run = tmp_path / "r\x1b[2Jun"
    run.mkdir()
    (run / "supervised.json").write_text('{"steps": "\\u001b]0;PWN\\u0007", "top1": 0.5}')
    assert main(["supervised", "--resume", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and json.loads(out)["top1"] == 0.5
    assert err == f"{str(run)!r}"[1:-1] + " finished already: nothing to do\n"
    (run / "supervised.json").write_text('{"steps": 12, "top1": 0.5}')
    assert main(["supervised", "--resume", str(run)]) == 0
    assert capsys.readouterr().err.endswith(" finished at step 12 already: nothing to do\n")
    (run / "supervised.json").write_text('{"steps": 12.5, "top1": 0.5}')  # no step count
    assert main(["supervised", "--resume", str(run)]) == 0
    assert capsys.readouterr().err.endswith("Jun finished already: nothing to do\n")
    monkeypatch.setenv("RANK", "1")  # (under --processes: said by rank 0 alone)
    assert main(["supervised", "--resume", str(run)]) == 0
    assert capsys.readouterr() == ("", "")


def test_the_supervised_baseline_on_the_digits_trains_on_none_of_its_test_digits(
        tmp_path, monkeypatch):
    """`supervised --train digits --test digits` trained on all 1797 digits, the 597 it
    is tested on among them; it trains on the other 1200."""
    import simclr.supervised

    sizes = []

    def recorded(cfg, train, test, out, **kwargs):
        sizes.append((train.num_images, test.num_images))
        return {"top1": 0.5}

    monkeypatch.setattr(simclr.supervised, "run_supervised", recorded)
    assert main(["supervised", "--train", "digits", "--test", "digits", "--out",
                 str(tmp_path / "s"), "--epochs", "1", "--workers", "0"]) == 0
    assert sizes == [(1200, 597)]


def test_a_command_over_an_unfinished_run_its_print_config_and_another_test_folder(
        tmp_path, monkeypatch, capsys):
    """Where --out holds the unfinished run the same command started: `--print-config`
    shows the command's recipe as typed (a changed --lr too, which running it refuses),
    nothing read from the run nor said to be continued; the command with another
    --test folder is refused naming it, as another --train is."""
    import yaml

    from simclr import supervised
    from tests.conftest import make_image_folder, stop_at

    train = make_image_folder(tmp_path / "train", classes=2, per_class=4)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)
    other = make_image_folder(tmp_path / "other", classes=2, per_class=2, seed=2)
    run = tmp_path / "run"
    argv = tiny_command(train, run, tmp_path, "--lr", "0.2", test=test, batch=4)
    real = supervised.run_supervised
    monkeypatch.setattr(supervised, "run_supervised",
                        lambda *a, **k: real(*a, **k, on_step=stop_at(1)))
    assert main(argv) == 75
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*argv, "--lr", "0.1", "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["optim"]["lr"] == 0.1 and "continuing" not in out + err
    argv[argv.index(str(test))] = str(other)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"holds an unfinished run of other settings (--test {test} saved, {other} now)" \
        in err, err


def test_the_test_folder_is_stored_as_the_evaluation_transform_reads_it(tmp_path,
                                                                        monkeypatch):
    """The supervised baseline's --test images only ever go through the evaluation
    transform: stored as its centre crop at --eval-size's side (as a pretrained encoder's
    evaluations store them), not as a training folder's whole-picture squares."""
    from PIL import Image

    import simclr.supervised
    from simclr.decode import eval_store
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=4)
    for c in range(2):  # photos of another shape than a square
        (tmp_path / "test" / f"class_{c}").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 30), (120 * c, 60 * i, 90)).save(
                tmp_path / "test" / f"class_{c}" / f"{i}.png")
    stores = []

    def recorded(cfg, train, test, out, **kwargs):
        stores.append(test.store)
        return {"top1": 0.5}

    monkeypatch.setattr(simclr.supervised, "run_supervised", recorded)
    assert main(["supervised", "--train", str(train), "--test", str(tmp_path / "test"),
                 "--out", str(tmp_path / "s"), "--image-size", "16", "--eval-size", "24",
                 "--batch-size", "4", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    assert stores == [eval_store(24)]


def test_resume_refuses_a_preset_or_a_config_file(tmp_path, capsys):
    """`--resume` continues the saved recipe: a --preset or --config beside it would be
    silently unused, so it is refused before the run is read, as --train is."""
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: 8\n")
    for flag, value in (("--preset", "cifar10-cpu"), ("--config", str(config)),
                        ("--out", str(tmp_path / "other")), ("--test", str(tmp_path))):
        assert main(["supervised", "--resume", str(tmp_path / "run"), flag, value]) == 2
        assert capsys.readouterr().err.endswith(
            f"--resume continues the saved run; cannot give {flag}\n")


def test_the_same_command_continues_its_unfinished_run_but_not_at_another_length(
        tmp_path, monkeypatch, capsys):
    """The command that started an unfinished run, run again (a requeued job), continues
    it from its checkpoint and says so; the same command with another --epochs is
    another schedule, refused naming it, not that run continued to another length."""
    from simclr import supervised
    from tests.conftest import make_image_folder, stop_at

    train = make_image_folder(tmp_path / "train", classes=2, per_class=4)
    run = tmp_path / "run"
    argv = tiny_command(train, run, tmp_path, batch=4)
    real = supervised.run_supervised
    monkeypatch.setattr(supervised, "run_supervised",
                        lambda *a, **k: real(*a, **k, on_step=stop_at(1)))
    assert main(argv) == 75
    capsys.readouterr()
    assert main([*argv, "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run of other settings" in err and "--epochs" in err, err
    continued = []

    def recorded(cfg, train, test, out, **kwargs):
        continued.append((cfg.epochs, cfg.checkpoint_every, kwargs["resume"]["step"]))
        return {"top1": 0.5}

    monkeypatch.setattr(supervised, "run_supervised", recorded)
    assert main([*argv, "--checkpoint-every", "7"]) == 0  # (a flag --resume may change)
    assert continued == [(2, 7, 1)]
    assert f"continuing the unfinished run in {run} at step 1 " in capsys.readouterr().out


def test_a_torchvision_test_set_takes_its_data_root_and_download_flags(tmp_path, capsys):
    """--data-root and --download are for torchvision's sets: one named by --test alone
    (a folder --train) reads them, so they are kept in the recipe, not refused as unused
    by the data flags."""
    import yaml

    train = tmp_path / "train"
    assert main(["supervised", "--train", str(train), "--test", "cifar10", "--data-root",
                 str(tmp_path / "sets"), "--download", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["data"]["root"] == str(tmp_path / "sets") and shown["data"]["download"]
    assert shown["folders"] == {"train": str(train), "test": "cifar10"}
    assert "out" not in shown  # (no --out: no run folder, not the default's "runs/...")


def test_a_run_or_its_cache_inside_a_folder_it_reads_is_refused(tmp_path, capsys):
    """A new run's --out, or its decoded caches' folder (a flag's or a config file's),
    inside its --train or --test folder would become images or an empty class of it:
    refused before anything is written there."""
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=4)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, seed=1)
    before = sorted(p.name for p in [*train.rglob("*"), *test.rglob("*")])
    base = ["supervised", "--train", str(train), "--test", str(test), "--image-size", "16",
            "--batch-size", "4", "--workers", "0"]
    assert main([*base, "--out", str(test / "run"), "--cache-dir",
                 str(tmp_path / "cache")]) == 2
    assert f"--out {test / 'run'} lies inside the --test folder {test}; write the run " \
           "elsewhere" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  cache_dir: {train / 'cache'}\n")
    beside = tmp_path / "t.yaml"  # (a config file's, inside --test)
    beside.write_text(f"data:\n  cache_dir: {test / 'cache'}\n")
    for cache in (["--cache-dir", str(test / "cache")], ["--config", str(config)],
                  ["--config", str(beside)]):
        assert main([*base, "--out", str(tmp_path / "run"), *cache]) == 2
        err = capsys.readouterr().err
        assert "lies inside the --" in err and "write the decoded caches elsewhere" in err, err
    assert sorted(p.name for p in [*train.rglob("*"), *test.rglob("*")]) == before
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_training_folder_is_refused_before_it_is_decoded(
        tmp_path, capsys, monkeypatch):
    """A --batch-size above the --train folder's image count (an epoch without a step) is
    refused from its listing, before any image is decoded into the cache."""
    import simclr.supervised
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=3)
    monkeypatch.setattr(simclr.supervised, "run_supervised",
                        lambda *a, **k: pytest.fail("the folder was opened"))
    assert main(["supervised", "--train", str(train), "--out", str(tmp_path / "run"),
                 "--image-size", "16", "--batch-size", "16", "--workers", "0",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "--batch-size 16 is larger than the data set (6 images); try --batch-size 4" \
        in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
    # A data set root as --train is counted by its train/ split, not by its larger test/.
    root = tmp_path / "root"
    make_image_folder(root / "train", classes=2, per_class=3)
    make_image_folder(root / "test", classes=2, per_class=10)
    assert main(["supervised", "--train", str(root), "--out", str(tmp_path / "run"),
                 "--image-size", "16", "--batch-size", "16", "--workers", "0",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "larger than the data set (6 images)" in capsys.readouterr().err


def test_test_photos_past_the_pixel_limit_as_evaluated_are_refused_before_training(
        tmp_path, capsys, monkeypatch):
    """100-px JPEGs fit --max-pixels 5000 decoded at 1/8 (the check's 13 px), not at the
    72 px the evaluation of 16-px views decodes them at, after the whole training."""
    import simclr.supervised
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=3)
    test = make_image_folder(tmp_path / "test", classes=2, per_class=2, side=100, ext="jpg")
    monkeypatch.setattr(simclr.supervised, "run_supervised",
                        lambda *a, **k: pytest.fail("the run started"))
    assert main(["supervised", "--train", str(train), "--test", str(test), "--out",
                 str(tmp_path / "run"), "--image-size", "16", "--batch-size", "4",
                 "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
                 "--max-pixels", "5000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simclr supervised: error: --test: none of the 4 images") and \
        "exceeds the limit of 5000" in err, err


def test_a_stopped_run_says_the_command_that_continues_it_pasteable(tmp_path, monkeypatch,
                                                                     capsys):
    import shlex

    import simclr.supervised
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train", classes=2, per_class=4)
    monkeypatch.setattr(simclr.supervised, "run_supervised", lambda *a, **k: {
        "status": "preempted", "signal": "SIGTERM", "checkpoint": "last.pt"})
    run = tmp_path / "my run"
    assert main(["supervised", "--train", str(train), "--out", str(run), "--image-size", "16",
                 "--batch-size", "4", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--processes", "1"]) == 75
    assert capsys.readouterr().err.endswith(  # (with the processes it ran as)
        f"continue with: simclr supervised --resume {shlex.quote(str(run))} --processes 1\n")
