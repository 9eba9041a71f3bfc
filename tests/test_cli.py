"""The command line: one-line errors with exit status 2, and a real tiny run."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simclr.cli import main
from tests.conftest import make_image_folder
from tests.image_files import rgb, save_image

pytestmark = pytest.mark.usefixtures("one_thread")


def simclr(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simclr", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["pretrain", "--data", "/no/such/folder"], "/no/such/folder"),
        (["pretrain", "--width", "-1"], "--width must be positive"),
        (["pretrain", "--temperature", "0"], "--temperature must be positive"),
        (["pretrain", "--lr", "0"], "--lr must be positive"),
        (["pretrain", "--arch", "vgg16"], "--arch"),
        (["pretrain", "--batch-size", "many"], "expected a whole number, got 'many'"),
        (["pretrain", "--time-budget", "forever"], "--time-budget"),
        (["pretrain", "--bogus-flag"], "unrecognized arguments"),
        (["pretrain", "--knn-k", "0"], "--knn-k must be positive"),
        (["pretrain", "--max-pixels", "0"], "--max-pixels must be positive"),
        (["pretrain", "--resume", "/no/such/run"], "no checkpoint"),
        (["embed", "--checkpoint", "/no/ckpt.pt", "--data", ".", "--out", "x.npz"], "/no/ckpt.pt"),
        # the evaluation commands' own flags, refused before any checkpoint is read
        (["embed", "--checkpoint", "c.pt", "--data", ".", "--out", "x.npz", "--batch-size",
          "0"], "--batch-size: must be at least 1"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--device", "foo"],
         "unknown device 'foo'"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--workers", "-1"],
         "--workers: must be at least 0"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--temperature",
          "1e-46"], "--temperature: must be >= 0.0001"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--l2", "-1"],
         "--l2: must be >= 0"),
        # the config's bounds, inclusive: 1e6 passes, the next float up does not
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--l2",
          "1e6"], "--train: folder not found: a"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--l2",
          "1000000.0000000001"], "--l2: must be >= 0 and at most 1e+06, got 1000000.0000000001"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--lr", "1e6"], "--train: folder not found: a"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--momentum", "1"], "--momentum: must be >= 0 and < 1"),
        (["predict", "--checkpoint", "c.pt", "--data", ".", "--out", "p.csv", "--top-k", "0"],
         "--top-k: must be at least 1"),
        # supervised training has no contrastive loss, head or kNN monitor to set
        (["supervised", "--train", "a", "--out", "o", "--temperature", "0.5"],
         "unrecognized arguments: --temperature"),
        (["supervised", "--train", "a", "--out", "o", "--data", "b"], "unrecognized"),
        (["supervised", "--train", "a", "--out", "o", "--log-every", "3"], "unrecognized"),
        (["supervised", "--train", "a", "--out", "o", "--no-progress"], "unrecognized"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--bogus", "3"],
         "simclr knn: error: unrecognized arguments: --bogus 3"),  # named by its command
        # a test set named twice, or not at all: which one was meant is the user's to say
        (["knn", "--checkpoint", "c.pt", "--train", "a"],
         "give --test DIR or --test-fraction F (a held-out part of --train), one of the two"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b",
          "--test-fraction", "0.5"], "give --test DIR or --test-fraction F"),
        (["info", ".", "a\nb\x1b[2J"],
         "simclr info: error: unrecognized arguments: a\\nb\\x1b[2J"),
        (["sweep", "--set", "temperature=0.1", "--out", "o", "--eval", "none",
          "--eval-device", "gpu"], "--eval-device: unknown device 'gpu'"),
        (["sweep", "--set", "temperature=0.1", "--out", "o", "--eval", "none",
          "--eval-test", "t"], "--eval-test: unused with --eval none; drop it or choose "
                               "--eval knn or linear"),
        (["sweep", "--set", "temperature=0.1", "--out", "o", "--eval", "none",
          "--eval-precision", "fp16", "--workers-eval", "2", "--eval-layer", "z"],
         "--eval-precision, --eval-workers, --eval-layer: unused with --eval none"),
        (["sweep", "--set", "temperature=0.1", "--out", "o", "--eval-layer", "x"],
         "--eval-layer: unknown value 'x'"),
        (["transform-probe", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out",
          "o", "--views", "100000000"], "--views: must be at most 100"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--label-fraction", "abc"], "--label-fraction: expected a number, got 'abc'"),
        (["pretrain", "--out", "", "--print-config"], "--out must name a folder, got an empty"),
        # contradicting evaluation flags, refused before the checkpoint is read
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--l2", "0.1",
          "--l2-grid", "1e-3,1,4"], "give one of --l2"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--l2", "0.1",
          "--val-fraction", "0.3"], "--val-fraction: the held-out share of the --l2 search, "
                                    "which a fixed --l2 skips; drop one of them"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b",
          "--raw-pixels", "--layer", "z"], "drop --layer z"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b",
          "--val-fraction", "1"], "--val-fraction: must be > 0 and < 1, got 1"),
        (["pretrain", "--betas", "1,1", "--optimizer", "adamw"], "--betas must lie in [0, 1)"),
        # a missing --test is named before the checkpoint (c.pt: missing too) is read
        (["knn", "--checkpoint", "c.pt", "--train", ".", "--test", "/no/test"],
         "--test: folder not found: /no/test"),
        (["knn", "--checkpoint", "c.pt", "--train", ".", "--test", __file__],
         f"--test: {__file__} is not a folder"),
        # finetune's subset file and flag conflicts, before the checkpoint and --train
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--subset", "/no/list.txt"], "--subset: cannot read /no/list.txt: No such file"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--from-head", "--from-scratch"], "give one of --from-head and --from-scratch"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--from-head", "--random-init"], "give one of --from-head and --random-init"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--batch-size", "1"], "--batch-size must be at least 2, got 1 (BatchNorm in training"),
        (["supervised", "--train", "a", "--out", "o", "--batch-size", "1"],
         "--batch-size must be at least 2, got 1 (BatchNorm in training"),
        (["pretrain", "--momentum", "2"], "--momentum must lie in [0, 1), got 2.0"),
        # an empty path would be the current folder
        (["embed", "--checkpoint", "c.pt", "--data", "", "--out", "x.npz"],
         "simclr embed: error: --data: got an empty value"),
        (["info", " "], "simclr info: error: RUN_OR_CHECKPOINT: got an empty value"),
        (["pretrain", "--data", "", "--out", "o"],
         "--data must name a folder, got an empty value"),
        (["pretrain", "--time-budget", "-5m"], "--time-budget must be positive, got '-5m'"),
        (["pretrain", "--batch-size", "-4"], "--batch-size must be positive, got -4"),
        # a flag of the other linear protocol would be silently unused
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--protocol",
          "sgd", "--l2", "0.1", "--max-iter", "5"],
         "--l2, --max-iter: for --protocol lbfgs, not sgd; drop it or choose --protocol lbfgs"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--epochs", "5",
          "--crop-scale", "0.2,1"], "--epochs, --crop-scale: for --protocol sgd, not lbfgs"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b",
          "--raw-pixels", "--random-init"], "give one of --raw-pixels and --random-init"),
        # flags that act on --out, given none: a run thought safe to stop saved nothing
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--protocol",
          "sgd", "--checkpoint-every", "1", "--checkpoint-minutes", "1"],
         "--checkpoint-every, --checkpoint-minutes: saves of the unfinished training go into "
         "--out, and none is given"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--overwrite"],
         "--overwrite replaces this command's results in --out, and none is given"),
        (["transform-probe", "--checkpoint", "c.pt", "--train", "a", "--test", "b",
          "--overwrite"], "--overwrite replaces this command's results in --out"),
        (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b",
          "--overwrite"], "--overwrite replaces this command's results in --out"),
        # a second --config replaced the first without a word (the same file: one)
        *[([command, "--config", "a.yaml", "--config", "b.yaml", "--print-config"],
           "--config given twice (a.yaml, b.yaml): one file is read; put the settings in "
           "one file") for command in ("pretrain", "sweep", "supervised")],
        # a newline in a path broke the line in two, an escape acted on the terminal
        (["embed", "--checkpoint", "a\nb\x1b[2J", "--data", ".", "--out", "e.npz"],
         "checkpoint not found: a\\nb\\x1b[2J"),
    ],
)
def test_user_errors_are_one_line(args, needle, capsys):
    with pytest.raises(SystemExit) as info:
        code = main(args)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_empty_and_image_less_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    for folder in ("empty", "text"):
        assert main(["pretrain", "--data", str(tmp_path / folder), "--out",
                     str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and folder in err


def test_module_entry_point_runs_pretrain_and_embed(tmp_path, capsys, caplog):
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    common = ["--cache-dir", str(tmp_path / "cache")]
    done = simclr("pretrain", "--data", str(data), "--out", str(out), "--arch", "resnet18",
                  "--width", "0.125", "--image-size", "16", "--batch-size", "8", "--epochs",
                  "1", "--precision", "fp32", "--no-progress", "--workers", "0", *common)
    assert done.returncode == 0, done.stderr
    assert "finished: 2 steps" in done.stdout
    done = simclr("embed", "--checkpoint", str(out / "checkpoints/last.pt"), "--data",
                  str(data), "--out", str(tmp_path / "h.npz"), *common)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["images"] == 16
    # The decompression-bomb limit is the user's to set (a scan was refused, no flag).
    # (in this process: the entry point is run above; a process each added nothing)
    save_image(data / "class_0" / "scan.png", rgb(40, 40))
    said = "40x40 = 1600 pixels exceeds the limit of 1000 (decompression-bomb guard; " \
           "--max-pixels sets it)"
    for limit, images in (("1000", 16), ("1600", 17)):
        assert main(["embed", "--checkpoint", str(out / "checkpoints/last.pt"), "--data",
                     str(data), "--out", str(tmp_path / f"{limit}.npz"), "--max-pixels",
                     limit, *common]) == 0
        told = caplog.text  # (the warning's logger: on stderr from a process)
        caplog.clear()
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["images"] == images
        assert (said in " ".join(told.split())) == (images == 16), told


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--label-fraction", "1.5"], "--label-fraction"),
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--label-fraction", "0"], "--label-fraction"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--k", "0"], "--k"),
        (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--batch-size",
          "2.5"], "--batch-size: expected a whole number, got '2.5'"),  # as pretrain says
        (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out", "o",
          "--crop-scale", "0.5"], "expected two numbers A,B (e.g. 0.08,1), got '0.5'"),
    ],
)
def test_evaluation_flags_are_checked_first(args, needle, capsys):
    status = main(args)
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def _seen_where_checks_start(monkeypatch, observe) -> list:
    """Each command run from now on stops (status 2) where its checks start, once its
    arguments are parsed and its process set up; returns what ``observe()`` gave there."""
    from simclr import cli
    from simclr.errors import SimCLRError

    seen = []

    def record(args):
        seen.append(observe())
        raise SimCLRError("stopped here")

    monkeypatch.setattr(cli, "_check_before_work", record)
    return seen


def test_a_call_from_python_is_the_command_line_its_run_records(monkeypatch, capsys):
    """main(argv) from Python: provenance records `simclr ARGV` while the command runs
    (the pytest or notebook line it would read otherwise says nothing), none after it."""
    from simclr import runtime

    seen = _seen_where_checks_start(monkeypatch, runtime.command_line)
    assert main(["info", "some run"]) == 2
    assert seen == [["simclr", "info", "some run"]] and runtime.command_line() is None


def test_an_evaluations_threads_flag_sets_torchs_threads_for_the_command(monkeypatch, capsys):
    import torch

    asked = 2 if torch.get_num_threads() == 1 else 1
    threads = _seen_where_checks_start(monkeypatch, torch.get_num_threads)
    assert main(["knn", "--checkpoint", "c", "--train", "a", "--test", "b",
                 "--threads", str(asked)]) == 2
    assert threads == [asked]


def test_a_failed_command_keeps_the_empty_folders_its_caller_made_before(tmp_path, capsys):
    """Folders a caller from Python made (through simclr.results) before main() are
    theirs: the command's clean-up of its own empty --out left them alone."""
    from simclr.results import output_file

    output_file(tmp_path / "mine" / "e.npz")
    assert main(["info", str(tmp_path / "no run")]) == 2
    assert (tmp_path / "mine").is_dir()


def test_a_command_ending_in_a_non_zero_status_removes_the_empty_out_it_made(
        tmp_path, monkeypatch, capsys):
    """A non-zero status is a failure too (not only an error raised): the folder it made
    for results that never came is removed."""
    from simclr import cli
    from simclr.results import output_file

    monkeypatch.setattr(cli, "_run_command",
                        lambda args: (output_file(tmp_path / "out" / "e.npz"), 3)[1])
    assert main(["info", "run"]) == 3
    assert not (tmp_path / "out").exists()


def test_under_torchrun_the_callers_sigterm_handler_is_kept(monkeypatch, capsys):
    """A process torchrun started is stopped by its launcher (perhaps blocked in a
    collective): the command does not take SIGTERM over there, as it does alone."""
    import signal

    handlers = _seen_where_checks_start(monkeypatch, lambda: signal.getsignal(signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["info", "run"]) == 2
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(["info", "run"]) == 2
    assert handlers[0] == before and handlers[1] != before


def test_interrupt_while_starting_is_one_line(monkeypatch, capsys):
    # Ctrl-C in the first second lands in the imports of build_parser, not in a command.
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("simclr.cli.build_parser", interrupted)
    assert main(["knn"]) == 130
    assert capsys.readouterr().err == "simclr knn: interrupted\n"  # named from its argv
    assert main(["--help"]) == 130
    assert capsys.readouterr().err == "simclr: interrupted\n"


@pytest.mark.parametrize("flag", [False, True])
@pytest.mark.parametrize("command", ["linear-eval", "knn", "embed", "sweep"])
def test_only_training_runs_under_torchrun(command, flag, monkeypatch, capsys, tmp_path):
    """Other commands would run once per process, each writing the same files. Asked
    with --processes (flag) as with torchrun: not argparse's 'unrecognized arguments'."""
    args = {"linear-eval": ["--checkpoint", "c", "--train", "a", "--test", "b"],
            "knn": ["--checkpoint", "c", "--train", "a", "--test", "b"],
            "embed": ["--checkpoint", "c", "--data", "a", "--out", str(tmp_path / "f.npz")],
            "sweep": ["--out", str(tmp_path / "s"), "--set", "epochs=1,2"]}[command]
    if command == "sweep" and flag:  # (its --processes is its cells')
        return
    if flag:
        args = [*args, "--processes", "4"]
    else:
        monkeypatch.setenv("WORLD_SIZE", "4")
    assert main([command, *args]) == 2
    what = " --protocol lbfgs" if command == "linear-eval" else ""
    assert capsys.readouterr().err == (
        f"simclr {command}: error: `simclr {command}{what}` runs as one process, not "
        "4; only pretrain, supervised, finetune and linear-eval "
        "--protocol sgd train across processes\n")
    assert not any(tmp_path.iterdir())


def test_processes_asked_against_torchruns_or_one_runs_here(monkeypatch, capsys):
    """--processes N under a torchrun of another count is refused naming both; the
    same count, or --processes 1, is no launch: the command's own checks come next."""
    knn = ["knn", "--checkpoint", "c", "--train", "a", "--test", "b"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert main([*knn, "--processes", "2"]) == 2
    assert capsys.readouterr().err == ("simclr knn: error: --processes 2, but the launcher "
                                       "(torchrun) started 4: give one of the two\n")
    assert main([*knn, "--processes", "4"]) == 2
    assert "`simclr knn` runs as one process, not 4;" in capsys.readouterr().err
    monkeypatch.delenv("WORLD_SIZE")
    assert main([*knn, "--processes", "1"]) == 2
    assert capsys.readouterr().err.startswith("simclr knn: error: --train: folder not found: a")


@pytest.mark.parametrize("argv", [
    ["pretrain"], ["supervised", "--train", "a", "--out", "o"],
    ["finetune", "--checkpoint", "c", "--train", "a", "--test", "b", "--out", "o"],
    ["linear-eval", "--checkpoint", "c", "--train", "a", "--test", "b", "--protocol", "sgd"]])
def test_the_training_commands_launch_their_processes(argv, monkeypatch):
    """--processes 2 on a command that trains across processes starts them (the
    launcher: stubbed here), rather than refusing as for the other commands."""
    from simclr import launch

    launched = []
    monkeypatch.setattr(launch, "run",
                        lambda line, n, device: launched.append((n, device)) or 0)
    assert main([*argv, "--processes", "2"]) == 0
    assert launched == [(2, "auto")]  # (no --device, no file's: each process chooses)


def test_a_negative_list_after_a_flag_given_its_value_is_no_value(capsys):
    """`--noise-std=0,0.1 -1,0.1`: the flag has its value; the list is left unknown."""
    assert main(["pretrain", "--noise-std=0,0.1", "-1,0.1"]) == 2
    assert "unrecognized arguments: -1,0.1" in capsys.readouterr().err


def test_embed_and_predict_outputs_are_checked_before_the_images_are_read(tmp_path):
    from simclr.errors import SimCLRError
    from simclr.results import output_file

    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(SimCLRError, match="afile is a file, not a folder"):
        output_file(tmp_path / "afile" / "e.npz")
    with pytest.raises(SimCLRError, match="is a folder"):
        output_file(tmp_path / "dir.npz")
    assert output_file(tmp_path / "new" / "e.npz") == tmp_path / "new" / "e.npz"
    assert (tmp_path / "new").is_dir() and (tmp_path / "afile").read_text() == "not a folder"


def test_every_setting_is_described_in_help(capsys):
    """`simclr pretrain --help` groups the flags by config section and describes each
    with the config's own comment, not just its dotted path."""
    from simclr.config import setting_help
    from simclr.settings import all_flags

    docs = setting_help()
    assert set(all_flags().values()) <= set(docs), "settings without a comment in config.py"
    status = main(["pretrain", "--help"])
    assert status == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for heading in ("data settings", "model settings", "loss settings", "optim settings",
                    "augment settings", "run settings"):
        assert heading in out
    assert "--lr-scaling STR linear: lr x B/256" in out
    assert "--blur-kernel-frac FLOAT kernel side as a fraction of the view side (the " \
           "paper: 10%)" in out
    # a comment continued on the next line is read whole (it was cut at its line's end)
    assert "--crop-ratio A,B aspect ratio range (log-uniform with the torchvision sampler; " \
           "the official one draws it uniformly, as TF does) (default" in out
    assert all(doc.count("(") == doc.count(")") for doc in docs.values())


@pytest.mark.parametrize("command", ["pretrain", "embed", "predict", "knn", "linear-eval",
                                     "finetune", "transform-probe", "supervised", "export",
                                     "sweep"])
def test_every_command_has_help(command, capsys):
    import argparse

    from simclr.cli import build_parser

    status = main([command, "--help"])
    assert status == 0
    assert "usage: simclr " + command in capsys.readouterr().out
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    undescribed = [a.option_strings[0] for a in sub.choices[command]._actions
                   if a.option_strings and not (a.help or "").strip()]
    assert not undescribed, f"flags without help: {undescribed}"


def test_an_optional_switch_is_set_on_off_or_back_to_automatic(tmp_path, capsys, monkeypatch):
    """--cifar-stem is on, off or automatic (None: by the image size): `--cifar-stem
    auto` gives a --config's value back to the automatic choice, which no flag could."""
    monkeypatch.chdir(tmp_path)
    Path("on.yaml").write_text("model:\n  cifar_stem: true\n")

    def stem(*argv: str) -> bool | None:
        capsys.readouterr()
        assert main(["pretrain", "--config", "on.yaml", *argv, "--print-config"]) == 0
        return yaml.safe_load(capsys.readouterr().out)["model"]["cifar_stem"]

    assert stem() is True and stem("--cifar-stem", "auto") is None
    assert stem("--no-cifar-stem") is False and stem("--cifar-stem", "false") is False
    Path("on.yaml").write_text("model:\n  cifar_stem: auto\n")
    assert stem() is None and stem("--cifar-stem") is True
    assert main(["pretrain", "--cifar-stem", "maybe", "--print-config"]) == 2
    assert "--cifar-stem: expected true, false or auto" in capsys.readouterr().err


def test_print_config_is_a_config_file_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from simclr.settings import build_config

    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--preset", "cifar10", "--lr", "2", "--no-blur",
                 "--crop-scale", "0.2,1", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no run directory, no cache
    (tmp_path / "printed.yaml").write_text(text)
    printed = build_config(None, str(tmp_path / "printed.yaml"))
    expected = build_config("cifar10", None, {"optim.lr": 2.0, "augment.blur": False,
                                              "augment.crop_scale": (0.2, 1.0)})
    assert printed == expected
    assert printed.optim.lr == 2.0 and printed.loss.temperature == 0.5


def test_no_data_means_the_digits_demo_however_it_is_said(tmp_path, capsys, monkeypatch):
    """Without a data folder pretrain runs the digits demo with its preset: named by no
    flag, by `--data none`, or by a --config file of a few settings alone; `none` beside a
    folder of that name is refused as ambiguous (it trained on digits)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "few.yaml").write_text("batch_size: 8\nmax_steps: 1\n")
    printed = []
    for argv in ([], ["--data", "none"], ["--config", "few.yaml"]):
        assert main(["pretrain", "--batch-size", "8", *argv, "--print-config"]) == 0
        printed.append(yaml.safe_load(capsys.readouterr().out))
    for cfg in printed:
        assert cfg["data"]["path"] is None and cfg["out"] == str(tmp_path / "runs" / "digits")
        assert (cfg["model"]["arch"], cfg["augment"]["size"]) == ("resnet18", 16)
    for argv in (["--data", "none"], ["--config", "few.yaml"]):  # sweep chooses alike
        assert main(["sweep", "--set", "seed=0,1", *argv, "--out", "sw", "--eval", "none",
                     "--print-config"]) == 0
        cells = list(yaml.safe_load_all(capsys.readouterr().out))
        assert [c["model"]["arch"] for c in cells] == ["resnet18"] * 2
    (tmp_path / "data.yaml").write_text("data: {path: photos}\n")  # a folder: no demo
    assert main(["pretrain", "--config", "data.yaml", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["arch"] == "resnet50"
    make_image_folder(tmp_path / "none", per_class=1)
    assert main(["pretrain", "--data", "none", "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == (
        "simclr pretrain: error: --data: 'none' means none (the digits demo), yet 'none' is also a "
        "path here; write ./none to name it")
    assert main(["pretrain", "--data", "./none", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["path"] == str(tmp_path / "none")
    # The file's other settings are checked over the digits preset (a load side of 24
    # was refused against the ImageNet recipe's 224 view)
    (tmp_path / "load.yaml").write_text("data: {load_size: 24}\n")
    assert main(["pretrain", "--config", "load.yaml", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["load_size"] == 24


def test_the_first_command_resumes_a_digits_run_its_file_named_no_data(tmp_path, capsys,
                                                                       monkeypatch):
    """`--resume RUN --config FILE` of a run whose file named no folder was refused
    ('cannot change --image-size (16 saved, 224 asked ...)'): resumed as it started."""
    from simclr import commands

    monkeypatch.chdir(tmp_path)
    # The demo's closing kNN report (1797 digits embedded twice, each time) is
    # test_commands' business: here it only has to be reached, by both commands.
    reports = []
    monkeypatch.setattr(commands, "digits_knn_report",
                        lambda checkpoint, cfg: reports.append(cfg.out) or "report")
    (tmp_path / "few.yaml").write_text("max_steps: 1\nout: d\nbatch_size: 16\n")
    first = ["pretrain", "--config", "few.yaml", "--workers", "0", "--no-progress"]
    assert main(first) == 0
    capsys.readouterr()
    assert main([*first, "--resume", "d"]) == 0
    assert "error" not in capsys.readouterr().err
    assert reports == [str(tmp_path / "d")] * 2


def test_sweep_and_supervised_print_their_resolved_configs(tmp_path, capsys, monkeypatch):
    """Each sweep cell's config (the preset, the flags, its value on top) and the
    supervised run's, as pretrain prints its own; nothing read or written."""
    from simclr.settings import build_config

    monkeypatch.chdir(tmp_path)
    sweep = ["sweep", "--preset", "cifar10-cpu", "--data", "d", "--lr", "2", "--set",
             "temperature=0.2,0.5", "--out", "sw", "--print-config"]
    # What the run would refuse before training, checking the recipe refuses too (it
    # printed: the run then said "--eval knn needs --eval-train and --eval-test")
    assert main(sweep) == 2
    assert "--eval knn needs --eval-train and --eval-test" in capsys.readouterr().err
    assert main([*sweep, "--eval-train", "t", "--eval-test", "u", "--eval-layer", "g5"]) == 2
    assert "--eval-layer g5: the cell temperature=0.2 has a projection head of" in \
        capsys.readouterr().err
    assert main([*sweep, "--eval", "none"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    for document, value in zip(documents, ("0.2", "0.5"), strict=True):
        (tmp_path / "cell.yaml").write_text(yaml.safe_dump(document))
        expected = build_config("cifar10-cpu", None, {
            "data.path": "d", "optim.lr": 2.0, "loss.temperature": value,
            "out": str(tmp_path / "sw" / f"temperature={value}")})
        assert build_config(None, str(tmp_path / "cell.yaml")) == expected
    assert main(["supervised", "--preset", "cifar10-cpu", "--train", "t", "--out", "sup",
                 "--epochs", "3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 3 and printed["out"] == str(tmp_path / "sup")
    assert {p.name for p in tmp_path.iterdir()} == {"cell.yaml"}


@pytest.mark.parametrize(("command", "name"), [("embed", "feats.npz"), ("predict", "p.csv")])
def test_an_existing_output_is_kept_without_overwrite(command, name, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text("earlier results")
    assert main([command, "--checkpoint", "c.pt", "--data", ".", "--out", name]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (tmp_path / name).read_text() == "earlier results"
    # with --overwrite the command goes on (here to the missing checkpoint)
    assert main([command, "--checkpoint", "c.pt", "--data", ".", "--out", name,
                 "--overwrite"]) == 2
    assert "c.pt" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["knn", "linear-eval", "finetune", "transform-probe"])
def test_an_evaluation_is_refused_a_runs_checkpoints_folder_as_out(command, tmp_path, capsys,
                                                                   monkeypatch):
    """--out RUN/checkpoints (or a folder in it) wrote the results among the run's
    checkpoints, where `simclr info RUN` never looks: refused, naming the run's folder."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "data", classes=2, per_class=2)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text("epochs: 1\n")
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"weights")
    for out in ("run/checkpoints", "run/checkpoints/eval"):
        assert main([command, "--checkpoint", "run", "--train", "data", "--test", "data",
                     "--out", out]) == 2
        assert capsys.readouterr().err == (
            f"simclr {command}: error: --out {out} lies in the checkpoints folder of the run "
            f"in {tmp_path / 'run'}; give the results the run's folder (--out "
            f"{tmp_path / 'run'})\n")
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["last.pt"]


def test_a_config_file_is_read_once_per_command(tmp_path, capsys, monkeypatch):
    """--config was read by each of its readers (the layering, the supervised-run check,
    the ignored-settings note, each sweep cell): a file edited meanwhile gave a config
    mixed of two versions. Read once, the command holds to what it read first."""
    import pathlib

    monkeypatch.chdir(tmp_path)
    config = tmp_path / "recipe.yaml"
    config.write_text("epochs: 3\nloss:\n  temperature: 0.2\n")
    reads = []
    read_text = pathlib.Path.read_text

    def counted(self, *args, **kwargs):
        text = read_text(self, *args, **kwargs)
        if self.name == config.name:
            reads.append(self)
            self.write_text("epochs: 4\nloss:\n  temperature: 0.3\n")  # edited meanwhile
        return text

    monkeypatch.setattr(pathlib.Path, "read_text", counted)
    for argv in (["pretrain"], ["supervised", "--train", "t", "--out", "sup"],
                 ["sweep", "--set", "batch_size=8,16", "--out", "sw", "--eval", "none"]):
        config.write_text("epochs: 3\nloss:\n  temperature: 0.2\n")
        reads.clear()
        assert main([*argv, "--config", str(config), "--print-config"]) == 0, argv
        printed = list(yaml.safe_load_all(capsys.readouterr().out))
        assert len(reads) == 1, (argv, reads)
        assert {(d["epochs"], d["loss"]["temperature"]) for d in printed} == {(3, 0.2)}, argv


def test_what_needs_only_file_names_fails_before_any_image_is_decoded(tmp_path, capsys):
    from simclr.checkpoint import save_checkpoint
    from tests.test_pretrained import pretrain_checkpoint

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    ckpt = str(save_checkpoint({**state, "step": 1}, tmp_path / "pre" / "checkpoints"))
    train = str(make_image_folder(tmp_path / "train", classes=2, per_class=4))
    other = str(make_image_folder(tmp_path / "other", classes=3, per_class=4))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes((tmp_path / "train/class_0/000.png").read_bytes())
    listed = tmp_path / "list.txt"
    listed.write_text("class_0/000.png\nclass_1/005.png\n")
    cache = tmp_path / "cache"
    common = ["--device", "cpu", "--precision", "fp32", "--cache-dir", str(cache)]
    evaluation = ["--checkpoint", ckpt, "--train", train, "--test", train, "--out",
                  str(tmp_path / "ft")]
    cases = [
        (["knn", "--checkpoint", ckpt, "--train", train, "--test", other],
         "--train and --test have different classes (only in --test"),
        (["linear-eval", "--checkpoint", ckpt, "--train", str(tmp_path / "flat"), "--test",
          train], "images have no class labels"),
        (["finetune", *evaluation, "--subset", str(listed)],
         "--subset: 1 of the listed images are not in the folder (first: 'class_1/005.png')"),
        (["finetune", *evaluation, "--labels-per-class", "5"],
         "class 'class_0' has 4 images, fewer than the 5 per class"),
        (["supervised", "--train", train, "--out", str(tmp_path / "sup"), "--batch-size", "16"],
         "--batch-size 16 is larger than the data set (8 images)"),
        (["pretrain", "--data", train, "--out", str(tmp_path / "pre2"), "--batch-size", "16"],
         "--batch-size 16 is larger than the data set (8 images)"),
    ]
    for args, needle in cases:
        assert main([*args, *common]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
        assert not cache.exists() or not any(cache.iterdir()), args[0]  # nothing decoded
    # The same check passes a list whose names are all in the folder (relative or full).
    listed.write_text(f"class_0/000.png\n{train}/class_0/001.png\nclass_1/003.png\n")
    assert main(["finetune", *evaluation, "--subset", str(listed), "--epochs", "1",
                 "--batch-size", "3", *common]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["num_labeled"] == 3


def test_a_class_without_readable_images_is_refused_and_skipped_ones_are_recorded(
        tmp_path, capsys, caplog):
    from simclr.checkpoint import save_checkpoint
    from tests.test_pretrained import pretrain_checkpoint

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    ckpt = str(save_checkpoint({**state, "step": 1}, tmp_path / "pre" / "checkpoints"))
    data = make_image_folder(tmp_path / "data", classes=3, per_class=4)
    for f in (data / "class_1").iterdir():
        f.write_text("not an image")
    common = ["knn", "--checkpoint", ckpt, "--train", str(data), "--test", str(data),
              "--device", "cpu", "--precision", "fp32", "--workers", "0", "--cache-dir",
              str(tmp_path / "cache")]
    assert main(common) == 2  # found after decoding: the listing has four files there
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no readable image in class folder(s) class_1" in err, err
    # One unreadable file in a class that has others: evaluated without it, and said so.
    make_image_folder(tmp_path / "data", classes=3, per_class=4)
    (data / "class_1" / "zz.png").write_text("not an image")
    for run in ("k1", "k2"):  # k2 reads the cache k1 built
        caplog.clear()
        assert main([*common, "--out", str(tmp_path / run)]) == 0
        saved = json.loads((tmp_path / run / "knn.json").read_text())
        assert saved["skipped_images"] == {"train": 1, "test": 1} and saved["num_train"] == 12
        bad = str(data / "class_1" / "zz.png")
        assert [path for path, _ in saved["skipped_files"]["test"]] == [bad]
        # Each named with its reason, whether the cache was built (k1) or reused (k2):
        # a line of the log each
        said = caplog.messages
        head = next(i for i, m in enumerate(said) if m.endswith("skipped 1 unreadable image(s):"))
        assert said[head + 1].startswith(f"  {bad}: "), said


def test_an_evaluations_printed_result_names_the_first_skipped_files(tmp_path, capsys):
    """`simclr knn` over 50k unreadable files printed every path and reason on stdout, one
    6.6 MB line: the printed result names the first 10 of each split and how many more;
    knn.json (and info) keeps them all."""
    from simclr.checkpoint import save_checkpoint
    from tests.test_pretrained import pretrain_checkpoint

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    ckpt = str(save_checkpoint({**state, "step": 1}, tmp_path / "pre" / "checkpoints"))
    data = make_image_folder(tmp_path / "data", classes=3, per_class=2)
    bad = sorted(str(data / "class_1" / f"zz{i:02}.png") for i in range(13))
    for path in bad:
        Path(path).write_text("not an image")
    assert main(["knn", "--checkpoint", ckpt, "--train", str(data), "--test", str(data),
                 "--device", "cpu", "--precision", "fp32", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "k")]) == 0
    shown = json.loads(capsys.readouterr().out.splitlines()[-1])
    saved = json.loads((tmp_path / "k" / "knn.json").read_text())
    assert saved["skipped_images"] == shown["skipped_images"] == {"train": 13, "test": 13}
    for split in ("train", "test"):
        assert sorted(path for path, _ in saved["skipped_files"][split]) == bad
        assert shown["skipped_files"][split] == saved["skipped_files"][split][:10]
    assert shown["skipped_files_more"] == {"train": 3, "test": 3}
    assert "skipped_files_more" not in saved and shown["top1"] == saved["top1"]


def test_a_negative_pair_is_checked_as_a_value(capsys):
    """argparse reads `-1,0.1` as an unknown option ("expected one argument"); the value
    reaches the config's own check instead."""
    from simclr.cli import attach_negative_lists

    assert main(["pretrain", "--noise-std", "-1,0.1", "--print-config"]) == 2
    assert capsys.readouterr().err == ("simclr pretrain: error: --noise-std must satisfy "
                                       "0 <= min <= max, got (-1.0, 0.1)\n")
    assert attach_negative_lists(["--crop-scale", "-.5,1", "--lr", "-1"]) == \
        ["--crop-scale=-.5,1", "--lr", "-1"]
    assert attach_negative_lists(["--l2-grid", "1e-6,1,13", "-x"]) == \
        ["--l2-grid", "1e-6,1,13", "-x"]


@pytest.mark.parametrize("argv, message", [
    (["knn", "--checkpoint", "c", "--train", "a", "--test", "b", "--device", "mps"],
     "--device mps: Apple's GPU (MPS) is not supported"),
    (["pretrain", "--device", "mps", "--print-config"],
     "--device mps: Apple's GPU (MPS) is not supported"),
    (["knn", "--checkpoint", "c", "--train", "a", "--test", "b", "--device", "cpu",
      "--precision", "fp16"], "--precision fp16 needs a GPU; use bf16 or fp32 on the CPU"),
    (["knn", "--checkpoint", "c", "--train", "a", "--test", "b", "--seed", "-5"],
     "argument --seed: must be at least 0, got -5"),
    (["knn", "--checkpoint", "c", "--train", "a", "--test", "b", "--seed", str(2**64)],
     "argument --seed: must be at most 9223372036854775807"),
    (["knn", "--checkpoint", "c", "--train", "a", "--test", "b", "--threads", "99999999999"],
     "argument --threads: must be at most 4096"),
    (["pretrain", "--seed", str(2**64), "--print-config"], "--seed must lie in [0, 2^63 - 1]"),
    (["pretrain", "--threads", "100000", "--print-config"], "--threads must be at most 4096"),
    (["pretrain", "--device", "xla", "--print-config"], "--device: unknown device 'xla'"),
])
def test_values_torch_cannot_take_are_refused_in_one_line(argv, message, capsys):
    """Each once ended in a traceback from torch or numpy (an overflow, a device this
    build lacks, a negative seed); now argparse's usage error or simclr's one line."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse: usage and the error line
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err, err
    if not message.startswith("argument"):
        assert err.count("\n") == 1, err


def test_an_l2_grid_too_large_to_hold_is_refused():
    from simclr.errors import SimCLRError
    from simclr.logistic import parse_l2_grid

    with pytest.raises(SimCLRError, match=r"1 <= count <= 1000"):
        parse_l2_grid("1e-6,1,100000000000000")


def test_an_evaluations_out_never_lies_inside_its_data(tmp_path, capsys):
    """Its figure and checkpoints folder would become images and a class of --train."""
    from tests.conftest import make_image_folder

    train = make_image_folder(tmp_path / "train")
    assert main(["knn", "--checkpoint", "c", "--train", str(train), "--test", str(train),
                 "--out", str(train / "results")]) == 2
    assert (f"--out {train / 'results'} lies inside the --train folder {train}; write the "
            "results elsewhere") in capsys.readouterr().err
    assert not (train / "results").exists()
    assert main(["predict", "--checkpoint", "c", "--data", str(train), "--out",
                 str(tmp_path / "p.CSV")]) == 2  # the suffix is fine, the checkpoint is not
    assert "must be a .csv file" not in capsys.readouterr().err


def test_a_cache_folder_never_lies_inside_a_folder_the_command_reads(tmp_path, capsys):
    """Its cache files made an empty class there: the command went on, and every later
    command on that folder failed ('no readable image in class folder(s) cc')."""
    from tests.conftest import make_image_folder

    train, test = make_image_folder(tmp_path / "train"), make_image_folder(tmp_path / "test")
    for argv, flag, given in [
            (["knn", "--checkpoint", "c", "--train", str(train), "--test", str(test),
              "--cache-dir", str(test / "cc")], "--cache-dir", "--test"),
            (["pretrain", "--data", str(train), "--cache-dir", str(train / "cc"),
              "--out", str(tmp_path / "run")], "--cache-dir", "--data"),
            (["sweep", "--data", str(train), "--set", "seed=0,1", "--eval-train", str(train),
              "--eval-test", str(test), "--eval-cache-dir", str(test / "cc"), "--out",
              str(tmp_path / "sw")], "--eval-cache-dir", "--test")]:
        assert main(argv) == 2
        cache = argv[argv.index(flag) + 1]
        folder = test if given == "--test" else train
        err = capsys.readouterr().err
        assert f"{flag} {cache} lies inside the " in err and f"folder {folder}; write the " \
            "decoded caches elsewhere" in err, err
        assert not Path(cache).exists() and not (tmp_path / "run").exists()
    # beside the splits of a data set root (no image there): as before, accepted
    assert main(["knn", "--checkpoint", str(tmp_path / "none.pt"), "--train", str(train),
                 "--test", str(test), "--cache-dir", str(tmp_path)]) == 2
    assert "lies inside" not in capsys.readouterr().err


def test_a_cache_folder_inside_the_data_is_refused_however_the_folders_are_given(
        tmp_path, capsys, monkeypatch):
    """Refused as a flag, a cache folder inside the data was taken from a config file
    (`--config`) or beside a sweep's data axis (`--set data=...`): its cache files made a
    class there, and the next command on the folder failed. The same refusal, now; and
    for a sweep's cache folder from a config file inside its evaluation folders (cell 0
    trained, cached there, and its scoring failed on the class its cache made)."""
    from tests.conftest import make_image_folder

    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "d1")
    make_image_folder(tmp_path / "d2")
    Path("both.yaml").write_text("data:\n  path: d1\n  cache_dir: d1/cc\n")
    Path("data.yaml").write_text("data:\n  path: d1\n")
    Path("cache.yaml").write_text("data:\n  cache_dir: d1/cc\n")
    tiny = ["--width", "0.125", "--image-size", "16", "--batch-size", "8", "--max-steps",
            "1", "--device", "cpu", "--precision", "fp32", "--workers", "0"]
    for argv, flag, cache, folder in [
            (["pretrain", "--config", "both.yaml", "--out", "r"], "--cache-dir", "d1/cc", "d1"),
            (["pretrain", "--config", "data.yaml", "--cache-dir", "d1/cc", "--out", "r"],
             "--cache-dir", "d1/cc", "d1"),
            (["sweep", "--set", "data=d1,d2", "--cache-dir", "d2/cc", "--eval", "none",
              "--out", "sw"], "--cache-dir", "d2/cc", "d2"),
            (["sweep", "--config", "both.yaml", "--set", "seed=0,1", "--eval", "none",
              "--out", "sw"], "--cache-dir", "d1/cc", "d1"),
            (["sweep", "--set", "data=d1,d2", "--eval-cache-dir", "d2/cc", "--eval-train",
              "d1", "--eval-test", "d1", "--out", "sw"], "--eval-cache-dir", "d2/cc", "d2"),
            (["supervised", "--config", "cache.yaml", "--train", "d1", "--test", "d2",
              "--out", "r"], "--cache-dir", "d1/cc", "d1"),
            (["sweep", "--config", "cache.yaml", "--data", "d2", "--cache", "on", "--eval",
              "knn", "--eval-train", "d1", "--eval-test", "d1", "--set", "seed=0,1", "--out",
              "sw"], "--cache-dir", "d1/cc", "d1")]:
        assert main([*argv, *tiny]) == 2, argv
        err = capsys.readouterr().err
        reads = "--train" if argv[0] == "supervised" else \
            "--eval-train" if "knn" in argv else "--data"  # (the last case: d1 scores)
        assert err.count("\n") == 1 and f"{flag} " in err and f"{cache} lies inside the " \
            f"{reads} folder " in err and "write the decoded caches elsewhere" in err, err
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["class_0", "class_1"]
        assert not Path("r").exists() and not Path("sw").exists()


def test_a_config_files_cache_folder_inside_the_data_is_kept_under_cache_off(
        tmp_path, monkeypatch, capsys):
    """--cache off writes no cache, yet a config file's cache folder inside the data
    (``data: {cache_dir: d1/cc}``) was refused as if it would be written there (release
    a1d9f66 ran it): it trains, and nothing is written there."""
    from tests.conftest import make_image_folder

    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "d1")
    Path("cache.yaml").write_text("data:\n  cache_dir: d1/cc\n")
    tiny = ["--width", "0.125", "--image-size", "16", "--batch-size", "8", "--max-steps",
            "1", "--device", "cpu", "--precision", "fp32", "--workers", "0"]
    assert main(["pretrain", "--config", "cache.yaml", "--data", "d1", "--cache", "off",
                 "--out", "r", *tiny]) == 0
    assert (tmp_path / "r" / "summary.json").exists()
    assert sorted(p.name for p in (tmp_path / "d1").iterdir()) == ["class_0", "class_1"]
    capsys.readouterr()
    assert main(["pretrain", "--config", "cache.yaml", "--data", "d1", "--out", "r2",
                 *tiny]) == 2  # (--cache auto, which may cache: refused, as before)
    assert "d1/cc lies inside the --data folder" in capsys.readouterr().err
    # supervised alike: --cache off passes the check (training faked), --cache auto not
    from simclr import supervised
    monkeypatch.setattr(supervised, "run_supervised", lambda *a, **k: {"status": "finished"})
    sup = ["supervised", "--config", "cache.yaml", "--train", "d1", "--out", "s",
           "--image-size", "16", "--device", "cpu", "--workers", "0"]
    main([*sup, "--cache", "off"])
    assert "lies inside" not in capsys.readouterr().err
    assert main(sup) == 2 and "d1/cc lies inside the --train folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "d1").iterdir()) == ["class_0", "class_1"]


def test_a_bare_pretrain_on_a_folder_names_the_recipe_it_runs(tmp_path, monkeypatch, capsys):
    """No --preset on one's own folder is the paper's ImageNet scale: said as the run
    starts (after the inputs are checked), unless the scale was chosen on the line."""
    from simclr import train

    said = []

    def fake(cfg, resume=False, notes=()):
        said.append(list(notes))
        return {"status": "finished", "steps": 0, "epochs": 0.0, "elapsed_s": 0.0,
                "checkpoint": "last.pt", "rank": 0}

    monkeypatch.setattr(train, "pretrain", fake)
    folder = str(tmp_path / "photos")
    assert main(["pretrain", "--data", folder, "--out", str(tmp_path / "a")]) == 0
    assert main(["pretrain", "--data", folder, "--out", str(tmp_path / "b"), "--arch",
                 "resnet18"]) == 0
    assert main(["pretrain", "--data", folder, "--out", str(tmp_path / "c d"), "--preset",
                 "imagenette-cpu"]) == 0
    assert "no --preset" in said[0][0] and "--preset imagenette-cpu" in said[0][0]
    assert said[1:] == [[], []]
    run = shlex.quote(str(tmp_path / "c d"))  # a command to copy, spaces and all
    assert f"next: `simclr embed --checkpoint {run} --data DIR" in capsys.readouterr().out


def test_overwrite_never_replaces_the_checkpoint_it_reads(tmp_path):
    import argparse

    from simclr.commands import check_not_replacing_input
    from simclr.errors import SimCLRError

    given = tmp_path / "ft" / "checkpoints" / "finetune.pt"
    args = argparse.Namespace(out=str(tmp_path / "ft"), overwrite=True, command="finetune")
    with pytest.raises(SimCLRError, match="--overwrite would replace .*finetune.pt, the "
                                          "--checkpoint this command reads"):
        check_not_replacing_input(args, given)
    check_not_replacing_input(args, tmp_path / "run" / "checkpoints" / "last.pt")  # fine
    args.overwrite = False  # (without it, the earlier results refuse the run anyway)
    check_not_replacing_input(args, given)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGUSR1"])
def test_sigterm_outside_a_training_stops_the_command_with_a_line(monkeypatch, capsys, name):
    """`kill` during an evaluation ended it without a word (the default action); so did
    a closed terminal's SIGHUP and a scheduler's SIGUSR1 (129, 138), their outputs
    half-written. Each stops it as a Ctrl-C does, named, with the shell's status."""
    import os
    import signal

    from simclr import cli

    if not hasattr(signal, name):
        pytest.skip(f"no {name} here")
    signum = getattr(signal, name)
    before = signal.getsignal(signum)
    monkeypatch.setattr(cli, "_check_before_work", lambda args: os.kill(os.getpid(), signum))
    assert main(["info", "."]) == 128 + signum
    assert capsys.readouterr().err == f"simclr info: stopped by {name}\n"
    assert signal.getsignal(signum) == before  # the caller's handler is back


def test_a_stop_signal_while_the_parsers_import_torch_stops_the_command_with_a_line(
        monkeypatch, capsys):
    """The parsers import torch, seconds at a command's start: a SIGTERM then ended the
    process with no word (the default action; here, the caller's handler it reached)."""
    import os
    import signal

    from simclr import cli

    class Reached(BaseException):
        pass

    def reached(signum, frame):
        raise Reached

    parse = cli._parse

    def parse_stopped(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        return parse(argv)

    monkeypatch.setattr(cli, "_parse", parse_stopped)
    before = signal.signal(signal.SIGTERM, reached)
    try:
        assert main(["info", "."]) == 143
        assert signal.getsignal(signal.SIGTERM) is reached  # the caller's handler is back
        assert capsys.readouterr().err == "simclr info: stopped by SIGTERM\n"
        # One of a launcher's processes leaves it to the signal's own action: its
        # launcher says which process it stopped (a rank but 0 exited 143 unsaid)
        monkeypatch.setenv("WORLD_SIZE", "2")
        with pytest.raises(Reached):
            main(["info", "."])
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_landing_in_a_finalizer_still_stops_the_command(monkeypatch, capsys):
    """Raised inside a ``__del__`` (a loader iterator's, as the evaluation drops it)
    the stop was printed as ignored and the command went on to its end."""
    import os
    import signal
    import time

    from simclr import cli

    class Iterator:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here, inside the finalizer

    def work(args):
        Iterator()  # dropped at once: its finalizer receives the signal
        time.sleep(5)  # the rest of the command: never reached to its end
        raise AssertionError("the command went on after SIGTERM")

    monkeypatch.setattr(cli, "_check_before_work", work)
    started = time.monotonic()
    assert main(["info", "."]) == 143
    assert time.monotonic() - started < 2
    err = capsys.readouterr().err
    assert err == "simclr info: stopped by SIGTERM\n", err


@pytest.mark.parametrize(("signum", "status", "said"), [
    (15, 143, "stopped by SIGTERM"), (1, 129, "stopped by SIGHUP"), (2, 130, "interrupted")],
    ids=["SIGTERM", "SIGHUP", "Ctrl-C"])
def test_a_signal_landing_in_a_weakref_callback_still_stops_the_command(
        monkeypatch, capsys, signum, status, said):
    """Raised inside a weakref callback (importlib runs one at every import) the stop
    was printed as 'Exception ignored' and the command went on to exit 0. The caller's
    unraisable hook is back after the call."""
    import time

    from simclr import cli
    from tests.conftest import signal_in_a_weakref_callback

    def work(args):
        signal_in_a_weakref_callback(signum)
        time.sleep(5)  # the rest of the command: never reached to its end
        raise AssertionError("the command went on after the signal")

    monkeypatch.setattr(cli, "_check_before_work", work)
    hook = sys.unraisablehook
    started = time.monotonic()
    assert main(["info", "."]) == status
    assert time.monotonic() - started < 2
    assert capsys.readouterr().err == f"simclr info: {said}\n"
    assert sys.unraisablehook is hook


def test_a_permission_error_no_check_named_is_one_line(monkeypatch, capsys):
    from simclr import cli

    def refused(args):
        raise PermissionError(13, "Permission denied", "/data/private")

    monkeypatch.setattr(cli, "_check_before_work", refused)
    assert main(["info", "."]) == 2
    assert capsys.readouterr().err == ("simclr info: error: permission denied: /data/private "
                                       "(Permission denied)\n")


LONG = "x" * 300  # a file name of over 255 bytes


@pytest.mark.parametrize("bad", ["loop", "loop/inside", LONG])
@pytest.mark.parametrize(("command", "flag", "suffix"), [
    (["pretrain", "--data", "none", "--out"], "--out", ""),
    (["pretrain", "--out", "run", "--data"], "--data", ""),
    (["sweep", "--preset", "cifar10-cpu", "--set", "seed=0,1", "--out"], "--out", ""),
    (["knn", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out"], "--out", ""),
    (["linear-eval", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out"],
     "--out", ""),
    (["finetune", "--checkpoint", "c.pt", "--train", "a", "--test", "b", "--out"],
     "--out", ""),
    (["knn", "--checkpoint", "c.pt", "--test", "b", "--train"], "--train", ""),
    (["export", "--checkpoint", "c.pt", "--out"], "--out", ".pt2"),
    (["embed", "--checkpoint", "c.pt", "--data", ".", "--out"], "--out", ".npz"),
    (["predict", "--checkpoint", "c.pt", "--data", ".", "--out"], "--out", ".csv"),
    (["predict", "--out", "p.csv", "--data", ".", "--checkpoint"], "--checkpoint", ""),
])
def test_a_link_loop_or_a_name_too_long_is_one_line_naming_its_flag(
        tmp_path, monkeypatch, capsys, command, flag, suffix, bad):
    """pathlib raised on such a path (RuntimeError: Symlink loop; OSError: File name too
    long), a traceback; a file in a folder behind a loop was 'cannot create the folder
    loop: File exists'."""
    monkeypatch.chdir(tmp_path)
    path = bad + suffix
    links = {"loop", "loop" + suffix}  # (a file's name a loop of its own: loop.pt2)
    for link in links:
        (tmp_path / link).symlink_to(link)
    assert main([*command, path]) == 2
    problem = ("a name longer than the file system allows" if bad == LONG
               else "a symbolic link loop")
    assert capsys.readouterr().err == f"simclr {command[0]}: error: {flag} {path}: {problem}\n"
    assert {p.name for p in tmp_path.iterdir()} == links  # nothing made


def test_a_link_loop_that_no_flag_names_is_one_line(tmp_path, monkeypatch, capsys):
    """A path given another way (a --config file's out) meets the same errors where it is
    used: said in one line naming the path, not a traceback."""
    import errno

    from simclr import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "run.yaml").write_text("out: loop/run\n")
    data = make_image_folder(tmp_path / "images")
    assert main(["pretrain", "--config", "run.yaml", "--data", str(data)]) == 2
    assert capsys.readouterr().err == (f"simclr pretrain: error: {tmp_path}/loop/run: a "
                                       "symbolic link loop\n")

    def too_long(args):
        raise OSError(errno.ENAMETOOLONG, "File name too long", "a/" + LONG)

    monkeypatch.setattr(cli, "_check_before_work", too_long)
    assert main(["info", "."]) == 2
    assert capsys.readouterr().err == (f"simclr info: error: a/{LONG}: a name longer than "
                                       "the file system allows\n")


def test_an_unreadable_data_folder_or_checkpoints_folder_is_named(tmp_path, monkeypatch,
                                                                   capsys):
    import os
    from pathlib import Path

    from simclr import folders

    make_image_folder(tmp_path / "images")
    real = os.scandir

    def scandir(path="."):
        if Path(path) == tmp_path / "images":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(folders.os, "scandir", scandir)
    assert main(["pretrain", "--data", str(tmp_path / "images"), "--out",
                 str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"simclr pretrain: error: cannot list the data folder "
                                       f"{tmp_path / 'images'} (Permission denied)\n")
    monkeypatch.undo()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self.name == "checkpoints":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert main(["pretrain", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (f"simclr pretrain: error: cannot list {tmp_path / 'run' / 'checkpoints'} "
                   "(Permission denied)\n"), err


def test_a_failed_command_leaves_no_empty_out_folder_it_made(tmp_path, monkeypatch, capsys):
    """`kill` during a kNN evaluation left its new, empty --out behind."""
    from simclr import cli, results
    from simclr.errors import SimCLRError

    (tmp_path / "there").mkdir()

    def fails(args):
        for name in ("new", "written", "there", "deep/er/est", "there/a/../b"):
            results.prepare_dir(tmp_path / name)
        (tmp_path / "written" / "knn.json").write_text('{"top1": 0.5}')
        raise SimCLRError("the inputs were wrong")

    monkeypatch.setattr(cli, "_check_before_work", fails)
    assert main(["info", "."]) == 2
    # every level a command made goes (deep/er/est: all three), never one it did not make
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there", "written"]
    assert list((tmp_path / "there").iterdir()) == []
    monkeypatch.setattr(cli, "_check_before_work",
                        lambda args: results.prepare_dir(tmp_path / "kept"))
    assert main(["info", str(tmp_path / "written")]) == 0  # (a results folder: it reads)
    assert (tmp_path / "kept").is_dir()  # the command succeeded: its folder is kept
    assert results.CREATED == []


@pytest.mark.parametrize(("command", "args"), [
    ("pretrain", ["--out"]), ("pretrain", ["--resume"]), ("supervised", ["--out"]),
    ("sweep", ["--set", "seed=0,1", "--out"]),
    ("knn", ["--checkpoint", "c.pt", "--train", "d", "--out"]),
    ("linear-eval", ["--checkpoint", "c.pt", "--train", "d", "--out"]),
    ("finetune", ["--checkpoint", "c.pt", "--train", "d", "--out"]),
    ("transform-probe", ["--checkpoint", "c.pt", "--train", "d", "--out"]),
    ("export", ["--checkpoint", "c.pt", "--out"]),
    ("embed", ["--checkpoint", "c.pt", "--data", "d", "--out"]),
    ("predict", ["--checkpoint", "c.pt", "--data", "d", "--out"]),
    ("neighbors", ["--features", "f.npz", "--out"]),
])
def test_an_out_whose_name_is_not_utf8_is_refused_first(command, args, tmp_path, capsys):
    """`pretrain --out r$'\\xff\\xfe'` ended in TensorBoard's UnicodeEncodeError
    traceback, leaving a half-made run folder; export's in an onnxruntime TypeError."""
    import os

    out = str(tmp_path / os.fsdecode(b"r\xff\xfe"))  # (as the shell passes such bytes)
    assert main([command, *args, out]) == 2
    flag = args[-1]
    again = "rename the folder" if flag == "--resume" else "choose another --out"
    assert capsys.readouterr().err == (
        f"simclr {command}: error: {flag} {ascii(out)}: the path is not valid UTF-8 (results "
        f"and a run's records name it in text); {again}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_config_files_out_that_is_not_utf8_is_refused_too(tmp_path, capsys, monkeypatch):
    """The flag's check missed `out:` in a --config file (a YAML escape gives any name)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text('out: "r\\udcff"\n')
    assert main(["pretrain", "--config", "run.yaml", "--print-config"]) == 2
    assert capsys.readouterr().err == (
        "simclr pretrain: error: run.yaml: out 'r\\udcff': the path is not valid UTF-8 "
        "(results and a run's records name it in text); choose another\n")


def test_the_summary_line_counts_one_step_in_the_singular(capsys):
    from simclr.pretrain_command import print_summary

    summary = {"status": "finished", "steps": 1, "epochs": 0.5, "elapsed_s": 3.0,
               "checkpoint": "c.pt"}
    print_summary(summary)
    print_summary({**summary, "steps": 2})
    assert capsys.readouterr().out.splitlines() == [
        "finished: 1 step (0.50 epochs) in 3 s; checkpoint c.pt",
        "finished: 2 steps (0.50 epochs) in 3 s; checkpoint c.pt"]


def test_the_summary_escapes_names_and_reads_odd_values_as_missing(capsys):
    """The closing summary printed a skipped image's name as it is (a file named with
    an escape set the terminal's title), and a received finished run's summary.json,
    resumed, printed its checkpoint and skipped names raw and its "epochs": "abc" ended
    in a ValueError formatting it."""
    from simclr.pretrain_command import print_summary

    print_summary({"status": "finished", "steps": 2, "epochs": 1.0, "elapsed_s": 3,
                   "checkpoint": "r/\x1b]0;PWN\x07c.pt",
                   "skipped_images": [["d/\x1b]0;PWNED\x07bad.png", "not an\nimage"]]})
    assert capsys.readouterr().out.splitlines() == [
        "finished: 2 steps (1.00 epochs) in 3 s; checkpoint r/\\x1b]0;PWN\\x07c.pt",
        "skipped 1 unreadable images:",
        "  d/\\x1b]0;PWNED\\x07bad.png: not an\\nimage"]
    print_summary({"status": "finished\x1b[2J", "steps": "3\x1b", "epochs": "abc",
                   "elapsed_s": [1], "checkpoint": 7, "bad_steps": "x",
                   "skipped_images": [["a.png"], 5, ["b.png", 1], ["c.png", "bad"]]})
    assert capsys.readouterr().out.splitlines() == [
        "finished\\x1b[2J", "skipped 1 unreadable images:", "  c.png: bad"]
    print_summary({"status": "finished", "steps": True, "epochs": True,
                   "skipped_images": "abc"})
    assert capsys.readouterr().out.splitlines() == ["finished"]
    # numbers no run writes: read as missing, as the sweep's table reads them damaged
    print_summary({"status": "finished", "steps": -4, "epochs": float("nan"),
                   "elapsed_s": float("inf")})
    assert capsys.readouterr().out.splitlines() == ["finished"]


def test_a_ctrl_c_while_the_command_imports_is_one_line(monkeypatch, capsys):
    """Ctrl-C in the first tenth of a second, while `simclr` imports its command line
    (before main()'s own handler), printed a KeyboardInterrupt traceback."""
    import simclr.__main__ as entry

    class Interrupted:
        def find_spec(self, name, path=None, target=None):
            if name == "simclr.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "simclr.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupted(), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["simclr", "info", "runs/x"])
    assert entry.run() == 130
    assert capsys.readouterr().err == "simclr info: interrupted\n"


def test_output_the_locale_cannot_spell_is_escaped_not_a_traceback(tmp_path, monkeypatch):
    """Under a locale of one code page (Windows' cp1252) with stdout redirected, a path
    such as 日本 in a line printed after the work (a finished training's summary, the
    cache listing) raised UnicodeEncodeError: a traceback and status 1 for a command
    that had done its work. Such characters are written as escapes instead."""
    import io

    streams = {}
    for name in ("stdout", "stderr"):  # strict, as Python's own under that locale
        streams[name] = io.TextIOWrapper(io.BytesIO(), encoding="cp1252", errors="strict")
        monkeypatch.setattr(sys, name, streams[name])
    folder = tmp_path / "caches 日本"
    folder.mkdir()
    assert main(["cache", "--cache-dir", str(folder)]) == 0
    assert main(["info", str(tmp_path / "runs 日本")]) == 2
    said = {}
    for name, stream in streams.items():
        stream.flush()
        said[name] = stream.buffer.getvalue().decode("cp1252")
    assert said["stdout"] == f"{tmp_path}/caches \\u65e5\\u672c: 0 caches, 0.0 MiB\n"
    assert f"{tmp_path}/runs \\u65e5\\u672c" in said["stderr"]


def test_the_training_commands_run_across_processes_on_a_batch_they_share():
    """linear-eval --protocol sgd trains across processes as pretraining does (its
    batch shared equally); every other command runs as one process."""
    from argparse import Namespace

    from simclr.cli import check_processes
    from simclr.errors import SimCLRError

    check_processes(Namespace(command="linear-eval", protocol="sgd", batch_size=8), 4)
    check_processes(Namespace(command="pretrain", **{"cfg:batch_size": "8"}), 4)
    check_processes(Namespace(command="knn"), 1)  # one process: anything runs
    for args in (Namespace(command="linear-eval", protocol="sgd", batch_size=6),
                 Namespace(command="pretrain", **{"cfg:batch_size": "10"})):
        with pytest.raises(SimCLRError, match=r"--batch-size \d+ is not divisible by 4 "
                                              "processes"):
            check_processes(args, 4)
    with pytest.raises(SimCLRError, match="`simclr linear-eval --protocol lbfgs` runs as one "
                                          "process, not 2"):
        check_processes(Namespace(command="linear-eval", protocol="lbfgs", batch_size=8), 2)


def test_the_evaluation_flags_value_types_hold_their_bounds():
    """argparse types of the evaluation commands' flags, at and past each edge."""
    import argparse

    from simclr.arguments import _pair, _probe_epochs, days, epoch_count, folder_name, fraction

    assert _pair("0.5,0.5") == (0.5, 0.5) and _pair("0.08,1") == (0.08, 1.0)
    assert days("0") == 0.0  # --unused-days 0: every cache not in use now
    assert fraction("1") == 1.0 and epoch_count("0.5") == 0.5
    assert epoch_count("1000000") == 1_000_000  # (MAX_EPOCHS, as pretraining's --epochs)
    with pytest.raises(argparse.ArgumentTypeError, match=r"at most 1e\+06, got 1000000.5$"):
        epoch_count("1000000.5")
    assert _probe_epochs("100000") == 100_000 and _probe_epochs("2.5") == 2.5
    for parse, text in ((_pair, "0.5,0.1"), (_pair, "0,1"), (_pair, "0.5,1.5"),
                        (days, "-1"), (days, "inf"), (fraction, "0"), (fraction, "1.01"),
                        (epoch_count, "0"), (_probe_epochs, "100001"), (_probe_epochs, "0"),
                        (folder_name, " ")):  # (a blank --cache-dir: the current folder)
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert type(_probe_epochs("5")) is int  # (a whole number, in its results as given)


_EDGE_ARGS = {"knn": ["--checkpoint", "c", "--train", "a"],
              "linear-eval": ["--checkpoint", "c", "--train", "a"],
              "finetune": ["--checkpoint", "c", "--train", "a", "--out", "o"],
              "transform-probe": ["--checkpoint", "c", "--train", "a"]}


@pytest.mark.parametrize("command, flag, text, value", [
    ("knn", "--temperature", "1e-4", 1e-4), ("knn", "--image-size", "8", 8),
    ("knn", "--image-size", "4096", 4096), ("linear-eval", "--l2", "0", 0.0),
    ("linear-eval", "--momentum", "0", 0.0), ("linear-eval", "--max-iter", "1", 1),
    ("linear-eval", "--checkpoint-every", "0", 0), ("linear-eval", "--checkpoint-minutes", "0", 0),
    ("finetune", "--momentum", "0", 0.0), ("finetune", "--checkpoint-every", "0", 0),
    ("finetune", "--checkpoint-minutes", "0", 0.0), ("finetune", "--labels-per-class", "1", 1),
    ("transform-probe", "--views", "100", 100),
])
def test_each_evaluation_flags_own_edge_is_taken(command, flag, text, value):
    """(0: plain SGD, no L2, no periodic save)"""
    from simclr.cli import build_parser

    args = build_parser().parse_args([command, *_EDGE_ARGS[command], flag, text])
    assert getattr(args, flag[2:].replace("-", "_")) == value


@pytest.mark.parametrize("command, flag, text, message", [
    ("knn", "--temperature", "9e-5", "must be >= 0.0001, got 9e-5"),
    ("knn", "--image-size", "7", "must be at least 8, got 7"),
    ("knn", "--image-size", "4097", "must be at most 4096, got 4097"),
    ("knn", "--test-fraction", "0", "must be > 0 and < 1, got 0"),
    ("linear-eval", "--max-iter", "0", "must be at least 1, got 0"),
    ("linear-eval", "--momentum", "1", "must be >= 0 and < 1, got 1"),
    ("linear-eval", "--lr", "0", "must be > 0 and at most 1e+06, got 0"),
    ("finetune", "--lr", "0", "must be > 0 and at most 1e+06, got 0"),
    ("finetune", "--labels-per-class", "0", "must be at least 1, got 0"),
    ("transform-probe", "--views", "0", "must be at least 1, got 0"),
    ("transform-probe", "--views", "101", "must be at most 100, got 101"),
])
def test_the_first_value_past_each_evaluation_flags_edge_is_refused(command, flag, text,
                                                                     message, capsys):
    from simclr.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *_EDGE_ARGS[command], flag, text])
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"simclr {command}: error: argument {flag}: {message}")


def test_a_call_from_python_leaves_the_callers_threads_and_logging(tmp_path):
    """main(argv) from a script: its --threads stayed the caller's thread count, and
    logging.basicConfig left the root logger a stderr handler at INFO, so the caller's
    own logging.info lines began to print."""
    script = f"""
import logging, torch
from simclr.cli import main
torch.set_num_threads(2)
status = main(["knn", "--checkpoint", {str(tmp_path / 'none.pt')!r}, "--train", ".",
               "--test", ".", "--threads", "1"])
root = logging.getLogger()
print(status, torch.get_num_threads(), root.handlers, root.level,
      logging.getLogger("simclr").handlers, logging.getLogger("simclr").level)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["2", "2", "[]", "30", "[]", "0"], done.stderr
    assert done.stderr.startswith("simclr knn: error: ")


def test_the_command_line_ignores_signals_once_its_command_is_done(tmp_path):
    """A Ctrl-C or SIGTERM in the interpreter's shutdown, after a finished command wrote
    and said everything, ended it 130/143 (a traceback from torch's atexit callbacks), and
    a scheduler retried the finished evaluation into "already holds results". A call
    from Python leaves its caller's handlers as they were."""
    script = f"""
import signal, sys
from simclr.cli import main
main(["cache", "--cache-dir", {str(tmp_path)!r}])
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,
      signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
sys.argv = ["simclr", "cache", "--cache-dir", {str(tmp_path)!r}]
main()
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
      signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    said = [line for line in done.stdout.splitlines()  # (beside the caches' listings)
            if line.split() and set(line.split()) <= {"True", "False"}]
    assert said == ["True True", "True True"], (done.stdout, done.stderr)


def test_supervised_help_says_its_batch_is_one_view_per_image(capsys):
    """`simclr supervised --help` said '(images; 2x views)', pretraining's batch."""
    for command, text in (("supervised", "--batch-size INT global batch (images; one view "
                                         "each) (default: 4096)"),
                          ("pretrain", "--batch-size INT global batch (images; 2x views)")):
        assert main([command, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert text in out
        assert ("2x views" in out) == (command == "pretrain")


def test_random_init_help_says_what_each_command_builds(capsys):
    """finetune's --random-init is its --from-scratch (a fresh encoder whose residual
    blocks' last BN starts at zero): its help said 'no zero-initialised BN', knn's."""
    import torch

    from simclr.finetune import fresh_encoder
    from simclr.models import build_encoder

    fresh = fresh_encoder(build_encoder("resnet18", 0.125, True))
    last = [m.last_bn for m in fresh.modules() if hasattr(m, "last_bn")]
    assert isinstance(fresh, torch.nn.Module) and len(last) == 8  # (2 blocks x 4 stages)
    assert all(float(m.weight.detach().abs().max()) == 0 for m in last)
    for command, text in (("finetune", "--random-init the same as --from-scratch"),
                          ("knn", "no zero-initialised BN")):
        assert main([command, "--help"]) == 0
        assert text in " ".join(capsys.readouterr().out.split())


def test_an_evaluation_out_of_memory_is_one_line_saying_what_to_lower(tmp_path, monkeypatch,
                                                                      capsys):
    import simclr.features
    from simclr.logistic import Standardizer
    from tests.conftest import tiny_pretrained_run

    train, test, cache = tiny_pretrained_run(tmp_path)
    capsys.readouterr()

    def refused(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 1610612736 bytes")

    monkeypatch.setattr(Standardizer, "__call__", refused)
    assert main(["linear-eval", "--checkpoint", str(tmp_path / "pre"), "--train", str(train),
                 "--test", str(test), "--raw-pixels", "--cache-dir", cache]) == 2
    assert capsys.readouterr().err == (
        "simclr linear-eval: error: out of memory (allocating 1.5 GiB failed); free memory or "
        "try a smaller --batch-size or --image-size, or fewer --train or --test images\n")

    def unable(*args, **kwargs):
        raise MemoryError("Unable to allocate 2.00 GiB for an array with shape (16, 512)")

    monkeypatch.setattr(simclr.features, "indexed_features", unable)
    assert main(["embed", "--checkpoint", str(tmp_path / "pre"), "--data", str(train),
                 "--out", str(tmp_path / "h.npz"), "--cache-dir", cache]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory (allocating 2.00 GiB failed)" in err, err
    assert "fewer --data images" in err and not (tmp_path / "h.npz").exists()


@pytest.mark.parametrize("protocol", ["lbfgs", "sgd"])
def test_a_linear_eval_failing_to_save_its_classifier_leaves_no_empty_folder(
        protocol, tmp_path, capsys, monkeypatch):
    """A full disk while the classifier (or the SGD training's state) was written: the
    one-line error, and checkpoints/ (made by the save, not by --out's preparation, so
    not removed with it) was left empty, with --out around it."""
    import errno

    import simclr.checkpoint
    from simclr.checkpoint import save_checkpoint
    from tests.test_pretrained import pretrain_checkpoint

    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    ckpt = str(save_checkpoint({**state, "step": 1}, tmp_path / "pre" / "checkpoints"))
    data = str(make_image_folder(tmp_path / "data", classes=2, per_class=4))

    def full_disk(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(simclr.checkpoint, "torch_save", full_disk)
    own = ["--epochs", "1", "--batch-size", "4"] if protocol == "sgd" else ["--l2", "0.1"]
    assert main(["linear-eval", "--checkpoint", ckpt, "--train", data, "--test", data,
                 "--protocol", protocol, *own, "--device", "cpu", "--precision", "fp32",
                 "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "No space left on device" in err.splitlines()[-1], err
    assert not (tmp_path / "out" / "checkpoints").exists()
    left = [p for p in (tmp_path / "out").rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert left == [], left


def _closed_stdout() -> None:
    """In the child, before its exec: file descriptor 1 closed (`simclr ... >&-`)."""
    import os

    os.close(1)


def test_a_closed_stdout_ends_a_command_whose_output_is_its_result_in_one_line(tmp_path):
    """`simclr info RUN >&-`: Python sets sys.stdout to None, and the first print was a
    traceback (AttributeError: 'NoneType' object has no attribute 'write'), exit 1."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "knn.json").write_text('{"command": "knn", "top1": 0.5}')
    done = subprocess.run([sys.executable, "-m", "simclr", "info", str(tmp_path / "run")],
                          stderr=subprocess.PIPE, text=True, timeout=60,
                          preexec_fn=_closed_stdout)
    assert (done.returncode, done.stderr) == (2, "simclr info: error: the standard output is "
                                                 "closed, and it is this command's result\n")


@pytest.mark.parametrize("argv", [["pretrain", "--print-config"], ["cache"]])
def test_a_closed_or_failing_stdout_is_an_error_where_it_is_the_result(argv, tmp_path,
                                                                        monkeypatch, capsys):
    """`simclr pretrain --print-config > cfg.yaml` on a full disk exited 0 with an empty
    file (a note said the command went on: there was nothing else to go on with)."""
    import errno

    from tests.test_progress import Gone

    argv = [*argv, "--cache-dir", str(tmp_path)] if argv == ["cache"] else argv
    monkeypatch.setattr(sys, "stdout", Gone(error=OSError, code=errno.ENOSPC))
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"simclr {argv[0]}: error: could not write the standard "
                                       "output: No space left on device\n")
    monkeypatch.setattr(sys, "stdout", None)
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"simclr {argv[0]}: error: the standard output is "
                                       "closed, and it is this command's result\n")


@pytest.mark.parametrize(("line", "strict"), [
    ("info RUN", True), ("cache", True), ("cache --clean", False), ("cache --clear", False),
    ("pretrain", False), ("pretrain --print-config", True), ("sweep --out S --print-config",
                                                             True),
    ("supervised --print-config", True), ("supervised --out R", False),
    ("knn --checkpoint C --train T --test T", True),
    ("knn --checkpoint C --train T --test T --out O", False),
    ("linear-eval --checkpoint C --train T --test T", True),
    ("transform-probe --checkpoint C --train T --test T", True),
    ("finetune --checkpoint C --train T --test T --out O", False),
    ("embed --checkpoint C --data D --out E.npz", False),
    ("export --checkpoint C --out E.pt", False)])
def test_the_commands_whose_stdout_is_their_result(line, strict):
    """knn without --out exited 0 under `> /dev/full`, its only result lost."""
    from simclr.cli import build_parser, output_is_the_result

    assert output_is_the_result(build_parser().parse_args(shlex.split(line))) is strict


def test_an_empty_config_file_is_refused(tmp_path, capsys):
    """A --config of no settings (0 bytes, or comments alone: a file not saved yet, the
    wrong one) ran as the defaults without a word."""
    for text in ("", "# lr: 0.5\n\n", "{}\n"):
        (tmp_path / "c.yaml").write_text(text)
        assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--print-config"]) == 2
        assert capsys.readouterr().err == (
            f"simclr pretrain: error: --config {tmp_path / 'c.yaml'}: the file holds no "
            "settings (it is empty, or comments alone, or {})\n")
    # A list is no mapping of settings (it read as none)
    (tmp_path / "c.yaml").write_text("[]\n")
    assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--print-config"]) == 2
    assert capsys.readouterr().err.endswith("must hold a mapping of settings\n")


def test_version_answers_without_importing_torch():
    """``simclr --version`` took as long as importing torch (1.8-3 s): the commands'
    parsers were built first, and they import it. It is the package's version."""
    import subprocess

    from simclr import __version__

    script = ("import sys; from simclr.cli import main; status = main(['--version']); "
              "print(status, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.splitlines() == [f"simclr {__version__}", "0 False"], done.stderr


def test_help_shows_a_values_default_not_a_switchs(capsys):
    """A flag's help ends with its default, as typed: an empty one as "", none for a
    switch (whose help says what it turns on; "(default: False)" said nothing)."""
    assert main(["knn", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE images per forward pass (default: 256)" in out
    assert "never a pretraining run's files) --random-init" in out, out  # --overwrite's
    assert "(default: False)" not in out and "(default: True)" not in out, out
    assert "(default: None)" not in out, out  # (--out, --subset: nothing to say)
    assert main(["pretrain", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "keeps the pipeline's order. (default: \"\")" in out, out
    # an optional switch's None is its automatic choice; a duration's forms are said
    assert "for views <= 32 px (default: auto); `--cifar-stem auto` over a --config's" in out
    assert "--time-budget DURATION training time; the schedule is fitted to it: seconds, " \
           "or e.g. 90s, 20m, 1.5h, 1h30m (default: None)" in out


def test_help_lists_the_exit_statuses(capsys):
    """A script or scheduler tests the status: `simclr --help` did not say them."""
    status = main(["--help"])
    assert status == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done, 1 a bug (a traceback), 2 a user error (one line)" in out
    for said in ("75 stopped with a checkpoint", "130 interrupted (Ctrl-C)",
                 "141 the reader of the standard output gone", "143 stopped by SIGTERM"):
        assert said in out, out


def test_a_call_from_python_gets_its_process_back(monkeypatch, capsys):
    """simclr as a library (a notebook, a search over settings): a mistyped flag raised
    SystemExit past `except Exception`; a caller's ascii stdout came back reconfigured
    to escape; a caller's handler on the simclr logger printed each message twice; and
    a note said once per process was never said to the next command."""
    import io
    import logging

    from simclr import folders
    from simclr.logs import _log_for_the_call

    assert main(["pretrain", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["nosuch"]) == 2
    assert main(["--version"]) == 0
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    assert main(["--version"]) == 0
    assert stream.errors == "strict"
    monkeypatch.undo()
    logger = logging.getLogger("simclr")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        assert _log_for_the_call(logging.INFO) == []
    finally:
        logger.removeHandler(handler)
    folders._SAID.add("a note of an earlier command")
    assert main(["--version"]) == 0
    assert not folders._SAID


@pytest.mark.parametrize("command", ["predict", "neighbors"])
@pytest.mark.parametrize("out", ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_a_table_asked_on_stdout_is_refused_saying_why(command, out, capsys):
    """`--out -` (a script's "to stdout") was refused as "must be a .csv file", which
    did not say that the table has no stream form."""
    given = ["--checkpoint", "c", "--data", "d"] if command == "predict" else ["--features", "f"]
    assert main([command, *given, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the standard output" in err and "give a .csv path" \
        in err, err


def test_the_cli_skips_a_truncated_jpeg_whatever_its_caller_set_pil_to(tmp_path, capsys,
                                                                        monkeypatch):
    """A notebook that set PIL's LOAD_TRUNCATED_IMAGES keeps it (simclr's import no
    longer resets it), but a command still skips a truncated JPEG as a bad image, and
    the caller gets its setting back after the command."""
    from PIL import ImageFile

    from simclr.checkpoint import save_checkpoint
    from tests.image_files import jpeg_bytes
    from tests.test_pretrained import pretrain_checkpoint

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    ckpt = str(save_checkpoint({**state, "step": 1}, tmp_path / "pre" / "checkpoints"))
    data = make_image_folder(tmp_path / "data", classes=2, per_class=2)
    truncated = data / "class_1" / "zz.jpg"
    whole = jpeg_bytes(32, 32)
    truncated.write_bytes(whole[:len(whole) // 2])  # (past its header: PIL's setting decides)
    assert main(["knn", "--checkpoint", ckpt, "--train", str(data), "--test", str(data),
                 "--device", "cpu", "--precision", "fp32", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "k")]) == 0
    saved = json.loads((tmp_path / "k" / "knn.json").read_text())
    assert saved["skipped_images"] == {"train": 1, "test": 1}
    [(path, reason)] = saved["skipped_files"]["test"]
    assert path == str(truncated) and "truncated" in reason, reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_a_note_said_once_in_one_command_is_said_again_in_the_next(monkeypatch, caplog):
    """Each command's notes are its own: a notebook's second main() on a messy folder
    heard nothing of it. Every set of notes said once is registered where it is kept
    (progress.said_once) and cleared at each command's start."""
    from simclr import cli, folders, progress

    own = progress.said_once()  # (a module's own, registered as folders' and data's are)

    def command(args) -> int:
        folders._say_once("a key", "note: a folder's note")
        assert "a key" in folders._SAID and not own
        own.add("said")
        return 0

    monkeypatch.setattr(cli, "_run_command", command)
    with caplog.at_level(logging.WARNING, logger="simclr"):
        for _ in range(2):
            assert main(["cache"]) == 0
    assert caplog.text.count("note: a folder's note") == 2
    assert own == {"said"}  # (cleared at the next command's start, not at the end)


