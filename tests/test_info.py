"""``simclr info``: a run folder or checkpoint described from the files simclr wrote."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml

from simclr import train
from simclr.checkpoint_read import load_checkpoint
from simclr.cli import main
from simclr.errors import SimCLRError
from simclr.resume import load_resume_config
from simclr.settings import build_config
from tests.conftest import make_image_folder, tiny_flags, tiny_pretrained_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-step pretraining with a kNN evaluation in its knn/ sub-folder."""
    return evaluated_run_in(tmp_path_factory.mktemp("info"))


def evaluated_run_in(root: Path) -> tuple[Path, Path]:
    """:func:`evaluated_run` made in ``root``: (the run folder, its data folder)."""
    data, test, cache = tiny_pretrained_run(root)
    run = root / "pre"
    assert main(["knn", "--checkpoint", str(run), "--train", str(data), "--test", str(test),
                 "--out", str(run / "knn"), "--cache-dir", cache, "--workers", "0",
                 "--k", "3"]) == 0
    return run, data


def _info(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["info", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_a_run_of_several_processes_says_so_and_how_batchnorm_ran(evaluated_run, tmp_path,
                                                                   capsys):
    """The batch is global: over how many processes it was split, and whether BatchNorm
    saw all of it (sync_bn) or each process's share, are part of the recipe."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["provenance"]["argv"] += ["--processes", "2"]
    saved["model"]["sync_bn"] = False
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    recipe = next(x for x in _info(capsys, run).splitlines() if x.startswith("  recipe: "))
    assert recipe.startswith("  recipe: batch 8 over 2 processes (per-process BatchNorm), ")
    recipe = next(x for x in _info(capsys, evaluated_run[0]).splitlines()
                  if x.startswith("  recipe: "))
    assert recipe.startswith("  recipe: batch 8, ")  # one process: nothing to say


def test_a_finished_run_with_its_evaluation(evaluated_run, capsys):
    run, data = evaluated_run
    lines = _info(capsys, run).splitlines()
    assert lines[0].startswith(f"{run}: SimCLR pretraining, finished at step 2 of 2 (")
    assert "; last loss " in lines[0]
    assert lines[1] == "  encoder: resnet18 x0.125, 16 px, head mlp -> 128"
    assert lines[3] == f"  data: {data}"
    assert lines[4].startswith(f"  started by: simclr pretrain --data {data} --out {run} ")
    assert "  checkpoints/last.pt: SimCLR pretraining, step 2, resnet18 x0.125, 16 px, " \
           "head mlp -> 128" in lines
    top1 = json.loads((run / "knn/knn.json").read_text())["top1"]
    assert lines[-1] == f"  knn/knn.json: kNN, top-1 {100 * top1:.2f}%"
    facts = json.loads(_info(capsys, run, "--json"))
    assert facts["state"]["status"] == "finished" and facts["state"]["step"] == 2
    run_id = load_checkpoint(run / "checkpoints/last.pt")["run_id"]
    assert facts["run_id"] == run_id and f"  run id: {run_id}" in lines
    assert facts["results"] == [{"file": "knn/knn.json", "what": "kNN", "top1": top1,
                                 "of": str(run / "checkpoints/last.pt"), "of_step": 2,
                                 "of_run": run_id, "features": "pretrained", "layer": "h"}]


def test_results_not_of_the_runs_encoder_as_it_is_now_say_so(evaluated_run, tmp_path, capsys):
    """A baseline, an earlier step, another run's checkpoint: never shown as the run's."""
    import shutil

    run, data = evaluated_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)  # its knn/knn.json measured the original's checkpoint:
    assert _info(capsys, copy).splitlines()[-1].endswith("%")  # the same run, same weights
    # (another run's: test_results_are_matched_to_their_run_by_its_id_not_its_path)
    knn = json.loads((copy / "knn/knn.json").read_text())
    del knn["source"]["run_id"]  # written before run ids: judged by its path, as then
    (copy / "knn/knn.json").write_text(json.dumps(knn))
    lines = _info(capsys, copy).splitlines()
    assert lines[-1].endswith(f"(of another run's checkpoint, {run / 'checkpoints/last.pt'})")
    # ... but moved (mv), the run's own evaluations stay its own: the old place is gone
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    shutil.move(run, tmp_path / "elsewhere")
    assert _info(capsys, moved).splitlines()[-1].endswith("%")
    shutil.move(tmp_path / "elsewhere", run)
    knn = json.loads((copy / "knn/knn.json").read_text())
    knn["source"].update(checkpoint=str(copy / "checkpoints/last.pt"), step=1)
    (copy / "knn/knn.json").write_text(json.dumps(knn))
    assert _info(capsys, copy).splitlines()[-1].endswith(
        "(of step 1; the run is now at step 2)")
    common = ["--train", str(data), "--test", str(data), "--workers", "0", "--k", "3"]
    assert main(["knn", "--checkpoint", str(copy), "--random-init", "--out",
                 str(copy / "ri"), *common]) == 0
    assert any(x.startswith("  ri/knn.json: kNN, top-1 ") and x.endswith("% (random init)")
               for x in _info(capsys, copy).splitlines())
    # an evaluation of one run written into another run's folder is refused
    assert main(["knn", "--checkpoint", str(run), "--out", str(copy), *common]) == 2
    assert capsys.readouterr().err == (
        f"simclr knn: error: --out {copy} is the folder of another run (checkpoints/last.pt): "
        "its results would be taken for that run's; choose another --out\n")


def test_results_are_matched_to_their_run_by_its_id_not_its_path(evaluated_run, tmp_path,
                                                                capsys):
    """A run evaluated, moved (mv), and another run started at its old path: the moved
    run's results stay its own, though the checkpoint path they name exists again (the
    other run's). That run's result, listed in a folder of results alone, names its
    checkpoint, step and run; moved into the first run's folder once its own run is
    deleted, it is not taken for the first run's (its path is gone, as a moved run's)."""
    import shutil

    run, data = evaluated_run
    first = tmp_path / "a"
    shutil.copytree(run, first)  # as evaluated in its own folder
    knn = json.loads((first / "knn/knn.json").read_text())
    knn["source"]["checkpoint"] = str(first / "checkpoints/last.pt")
    (first / "knn/knn.json").write_text(json.dumps(knn))
    moved = tmp_path / "b"
    shutil.move(first, moved)
    assert main(["pretrain", "--data", str(data), "--out", str(first), "--arch", "resnet18",
                 "--width", "0.125", "--image-size", "16", "--batch-size", "8",
                 "--max-steps", "1", "--no-progress", "--workers", "0", "--cache-dir",
                 str(run.parent / "cache"), "--precision", "fp32"]) == 0
    assert _info(capsys, moved).splitlines()[-1].endswith("%")  # its own, as before
    results = tmp_path / "results"
    assert main(["knn", "--checkpoint", str(first), "--train", str(data), "--test",
                 str(data), "--out", str(results), "--workers", "0", "--k", "3"]) == 0
    other = load_checkpoint(first / "checkpoints/last.pt")["run_id"]
    assert other != load_checkpoint(moved / "checkpoints/last.pt")["run_id"]
    lines = _info(capsys, results).splitlines()
    assert lines[0] == f"{results}: results of kNN"
    assert lines[1].startswith("  knn.json: kNN, top-1 ")
    assert lines[1].endswith(f"% (of {first / 'checkpoints/last.pt'}, step 1, run {other})")
    facts = json.loads(_info(capsys, results, "--json"))["results"][0]
    assert (facts["of"], facts["of_step"], facts["of_run"]) == (
        str(first / "checkpoints/last.pt"), 1, other)
    shutil.move(results, moved / "other")
    shutil.rmtree(first)
    lines = _info(capsys, moved).splitlines()
    assert lines[-2].endswith("%")  # knn/knn.json: its own
    assert lines[-1].startswith("  other/knn.json: kNN, top-1 ")
    assert lines[-1].endswith(f"(of another run's checkpoint, {first / 'checkpoints/last.pt'})")
    # the moved copy without its checkpoints: config.yaml keeps the id its results name
    # (they were 'of another run's checkpoint', the copy's own path gone)
    own = load_checkpoint(moved / "checkpoints/last.pt")["run_id"]
    shutil.rmtree(moved / "checkpoints")
    lines = _info(capsys, moved).splitlines()
    assert f"  run id: {own}" in lines and lines[-2].endswith("%")


def test_a_supervised_run_that_records_no_folders_says_so(tmp_path, folders, capsys):
    """A supervised run of simclr 11-30 recorded its --train nowhere (config.yaml's
    data.path is a pretraining's, null): info called its data the digits demo."""
    from simclr.supervised import run_supervised

    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16, "device": "cpu", "precision": "fp32",
                              "data.workers": 0, "batch_size": 8, "max_steps": 1,
                              "out": str(tmp_path / "sup")})
    run_supervised(cfg, *folders, tmp_path / "sup", verbose=False)  # (no data: none recorded)
    assert "  data: not recorded (written by an earlier simclr, or started from Python)\n" \
        in _info(capsys, tmp_path / "sup")
    # Its config.yaml's folders (all a run has before its first checkpoint) are its data
    saved = yaml.safe_load((tmp_path / "sup" / "config.yaml").read_text())
    saved["folders"] = {"train": "/data/train", "test": None}
    (tmp_path / "sup" / "config.yaml").write_text(yaml.safe_dump(saved))
    assert "  data: train /data/train\n" in _info(capsys, tmp_path / "sup")
    # its last.pt's record of the folders it trained on is the one shown once it has one
    import torch

    last = tmp_path / "sup" / "checkpoints" / "last.pt"
    torch.save({**torch.load(last, weights_only=True),
                "data": {"train": "/kept/train", "test": "/kept/test"}}, last)
    assert "  data: train /kept/train, test /kept/test\n" in _info(capsys, tmp_path / "sup")


def test_a_preempted_run_says_how_to_continue(tmp_path, capsys):
    flags = tiny_flags(make_image_folder(tmp_path / "images"), tmp_path / "cut",
                       str(tmp_path / "cache"), checkpoint_every=0)

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    assert train.pretrain(build_config(flags=flags), on_step=preempt)["status"] == "preempted"
    out = _info(capsys, tmp_path / "cut")
    assert out.splitlines()[0].startswith(f"{tmp_path / 'cut'}: SimCLR pretraining, preempted "
                                          "at step 1 of 6")
    assert f"  continue with: simclr pretrain --resume {tmp_path / 'cut'}\n" in out
    assert "last checkpoint" not in out  # it is at the step the run stopped
    # Its last.pt unreadable since, and an earlier checkpoint there: --resume goes back
    # to it, which info said nothing of ("preempted at step 2", resumed at 1)
    checkpoints = tmp_path / "cut" / "checkpoints"
    (checkpoints / "ckpt-00000001.pt").write_bytes((checkpoints / "last.pt").read_bytes())
    assert train.pretrain(load_resume_config(tmp_path / "cut", {}), resume=True,
                          on_step=preempt)["steps"] == 2
    (checkpoints / "last.pt").write_bytes(b"cut short")
    out = _info(capsys, tmp_path / "cut")
    assert "preempted at step 2 of 6" in out and "; last checkpoint at step 1" in out, out


def test_a_run_whose_files_nest_deep_is_described_as_damaged(evaluated_run, tmp_path,
                                                             capsys):
    """summary.json, a metrics.jsonl line or config.yaml of `[[[[...` nested deep: a
    RecursionError's traceback; each is a damaged file, said so in a line."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    deep = "[" * 200_000 + "]" * 200_000
    (run / "summary.json").write_text(deep)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(deep + "\n")
    assert "(summary.json: not valid JSON (nested too deep))" in _info(capsys, run)
    (run / "config.yaml").write_text("optim: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "  config.yaml is damaged, what it could not read is left out: not readable " \
        "YAML\n" in _info(capsys, run)


@pytest.mark.parametrize("entry, value, damaged", [
    ("metrics", {"top1": "high"}, "metrics.top1"),
    ("metrics", {"top1": 7.0, "steps": "many", "status": 3},
     "metrics.top1, metrics.status, metrics.steps"),
    ("metrics", "zz", "metrics"),
    ("classes", -3, "classes"),
    ("classes", [1, 2], "classes"),
    ("step", "abc", "step"),
    ("step", -5, "step"),
    ("step", True, "step"),  # (a bool is an int to Python, not a step)
    ("total_steps", 2.5, "total_steps"),
    ("elapsed", float("nan"), "elapsed"),
    ("run_id", [[1] * 3] * 3, "run_id"),
    ("imported", 4, "imported"),
    ("features", ["x"], "features"),
    ("session", "2", "session"),
    ("argv", [["simclr"]], "argv"),
    ("unfinished", {"step": "x", "total_steps": 9}, "unfinished"),
    ("unfinished", [3, 9], "unfinished"),
], ids=lambda v: v if isinstance(v, str) and v.isidentifier() else None)
def test_a_crafted_checkpoints_entries_are_said_damaged_not_a_traceback(
        evaluated_run, tmp_path, capsys, entry, value, damaged):
    """A classifier checkpoint whose descriptive entries are of another type than simclr
    writes (metrics.top1 "high", classes -3, metrics "zz"): a traceback formatting or
    counting them. Each is left out and named, the rest described."""
    import torch

    ckpt = load_checkpoint(evaluated_run[0] / "checkpoints" / "last.pt")
    ckpt.update(kind="linear", classes=["a", "b"], metrics={"top1": 0.5})
    if entry == "metrics" and isinstance(value, dict):
        value = {**ckpt["metrics"], **value}
    ckpt[entry] = value
    path = tmp_path / "classifier.pt"
    torch.save(ckpt, path)
    line = _info(capsys, path).splitlines()[0]
    assert line.startswith(f"{path}: ") and \
        line.endswith(f"; damaged or edited, left out: {damaged}"), line
    assert json.loads(_info(capsys, path, "--json"))["checkpoint"]["damaged"] == \
        damaged.split(", ")


def test_a_run_started_without_git_leaves_its_commit_out(evaluated_run, tmp_path, capsys):
    """git not on PATH: config.yaml records git_sha null, which read '(simclr 0.1.0, git
    None)'."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["provenance"]["git_sha"] = None
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    line = next(x for x in _info(capsys, run).splitlines() if x.startswith("  started by: "))
    assert line.endswith(f" (simclr {saved['provenance']['simclr']})"), line
    saved["provenance"].update(simclr=None, git_sha="0123456789abcdef", git_dirty=False)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    line = next(x for x in _info(capsys, run).splitlines() if x.startswith("  started by: "))
    assert line.endswith(" --precision fp32 (git 0123456)"), line
    saved["provenance"]["git_dirty"] = True  # (the run's code was not the commit's alone)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    line = next(x for x in _info(capsys, run).splitlines() if x.startswith("  started by: "))
    assert line.endswith(" (git 0123456 with uncommitted changes)"), line


def test_a_preempted_sweep_cell_says_to_rerun_its_sweep(tmp_path, capsys, monkeypatch):
    """--resume would train the cell alone; the sweep also scores it and goes on."""
    images = make_image_folder(tmp_path / "images")
    trained = train.pretrain

    def preempted(cfg, resume=False):
        def stop(step, request):
            request.requested = "SIGTERM"
        return trained(cfg, resume=resume, on_step=stop)

    monkeypatch.setattr(train, "pretrain", preempted)
    argv = ["sweep", "--set", "seed=0", "--data", str(images), "--cache-dir",
            str(tmp_path / "cache"), "--arch", "resnet18", "--width", "0.125", "--image-size",
            "16", "--batch-size", "8", "--precision", "fp32", "--device", "cpu",
            "--checkpoint-every", "0", "--eval", "none", "--out", str(tmp_path / "sw")]
    typed_in = tmp_path / "typed here"  # (a space: the cd's folder is quoted)
    typed_in.mkdir()
    monkeypatch.chdir(typed_in)
    assert main(argv) == train.EXIT_PREEMPTED
    out = _info(capsys, tmp_path / "sw" / "seed=0")
    assert "  continue with: simclr sweep --set seed=0 " in out
    assert out.split("continue with: ")[1].splitlines()[0].endswith(
        f"--out {tmp_path / 'sw'} (the sweep that started it)")
    # asked from another folder: from the one it was typed in, as its paths may be
    # relative (it started a new sweep in another folder, or failed on its data's)
    monkeypatch.chdir(tmp_path)
    line = _info(capsys, tmp_path / "sw" / "seed=0").split("continue with: ")[1].splitlines()[0]
    assert line.startswith(f"cd {shlex.quote(str(typed_in))} && simclr sweep --set seed=0 ")
    # a run recorded before the working folder was: where to run it from is unknown
    cell = tmp_path / "sw" / "seed=0"
    saved = yaml.safe_load((cell / "config.yaml").read_text())
    del saved["provenance"]["cwd"]
    (cell / "config.yaml").write_text(yaml.safe_dump(saved))
    line = _info(capsys, cell).split("continue with: ")[1].splitlines()[0]
    assert line.startswith("simclr sweep --set seed=0 ") and line.endswith(
        " (the sweep that started it, from the folder it was started in)")
    # a cell the sweep launched as processes of its own (--processes): its command line
    # is a `pretrain --sweep-cell` the user never typed
    saved = yaml.safe_load((cell / "config.yaml").read_text())
    saved["provenance"].update(argv=["simclr", "pretrain", "--config", "x.yaml",
                                     "--sweep-cell", "--processes", "2"], processes=2)
    (cell / "config.yaml").write_text(yaml.safe_dump(saved))
    assert (f"  continue with: the sweep that started it (in {tmp_path / 'sw'}), or simclr "
            f"pretrain --resume {cell} --processes 2 for this cell alone\n") in _info(capsys, cell)


def test_a_checkpoint_file_and_a_folder_of_runs(evaluated_run, capsys):
    run, _ = evaluated_run
    assert _info(capsys, run / "checkpoints/last.pt") == (
        f"{run / 'checkpoints/last.pt'}: SimCLR pretraining, step 2, resnet18 x0.125, 16 px, "
        "head mlp -> 128\n")
    lines = _info(capsys, run.parent).splitlines()
    assert lines[0] == f"{run.parent}: 1 run"
    from simclr.info_text import _encoder  # a config without its augment section: no "None px"
    assert _encoder({"arch": "resnet18", "width": 1}) == "resnet18 x1, image side not recorded"
    assert lines[1].startswith("  pre: SimCLR pretraining, finished at step 2 of 2")
    assert "; kNN top-1 " in lines[1]


def test_an_evaluations_results_without_checkpoints_are_listed_beside_runs(evaluated_run,
                                                                          tmp_path, capsys):
    """kNN's --out holds knn.json alone: beside a linear evaluation's --out (its
    checkpoints/), or a run, it was left out of the folder's list ('ev: 1 run')."""
    import shutil

    run, _ = evaluated_run
    ev = tmp_path / "ev"
    shutil.copytree(run / "knn", ev / "knn")
    (ev / "lin" / "checkpoints").mkdir(parents=True)  # (as linear-eval --out ev/lin leaves)
    (ev / "lin" / "linear_eval.json").write_text(json.dumps({"top1": 0.5}))
    top1 = json.loads((run / "knn" / "knn.json").read_text())["top1"]
    lines = _info(capsys, ev).splitlines()
    assert lines[0] == f"{ev}: 2 runs", lines
    assert lines[1].startswith(f"  knn: results of kNN; kNN top-1 {100 * top1:.2f}% (of "
                               f"{run / 'checkpoints' / 'last.pt'}, step 2, run "), lines
    assert lines[2] == "  lin: results of linear evaluation; linear evaluation top-1 50.00%"
    shutil.copytree(run, ev / "pre")  # a run beside them (runs/ and its kNN results)
    shutil.rmtree(ev / "lin")
    facts = json.loads(_info(capsys, ev, "--json"))
    assert [Path(r["path"]).name for r in facts["runs"]] == ["knn", "pre"]
    # a folder of results alone keeps its results one level down as its own
    shutil.rmtree(ev / "pre")
    alone = _info(capsys, ev).splitlines()
    assert alone[0] == f"{ev}: results of kNN"
    assert alone[1].startswith(f"  knn/knn.json: kNN, top-1 {100 * top1:.2f}% (of "), alone


def test_a_finished_evaluations_results_are_finished_not_stopped(evaluated_run, tmp_path,
                                                                 capsys):
    """knn / linear-eval / finetune --out: their --json state read 'stopped' (a killed
    training's word), step null, though finetune.json itself says finished."""
    import shutil

    run, _ = evaluated_run
    shutil.copytree(run / "knn", tmp_path / "knn")
    (tmp_path / "ft" / "checkpoints").mkdir(parents=True)  # (as finetune --out ft leaves)
    (tmp_path / "ft" / "finetune.json").write_text(json.dumps({"top1": 0.5,
                                                              "status": "finished"}))
    for out, what in ((tmp_path / "knn", "kNN"), (tmp_path / "ft", "fine-tuning")):
        assert json.loads(_info(capsys, out, "--json"))["state"]["status"] == "finished"
        assert _info(capsys, out).splitlines()[0] == f"{out}: results of {what}"


def test_a_sweeps_cells_not_started_are_listed(evaluated_run, tmp_path, capsys):
    run, _ = evaluated_run
    sweep = tmp_path / "sw"
    sweep.mkdir()
    rows = [{"cell": "temperature=0.2", "status": "pending"},
            {"cell": "temperature=0.5", "status": "pending"}]
    (sweep / "sweep.json").write_text(json.dumps(rows))
    assert _info(capsys, sweep) == (f"{sweep}: 0 runs; 2 sweep cell(s) not started\n"
                                    "  temperature=0.2: not started\n"
                                    "  temperature=0.5: not started\n")
    (sweep / "temperature=0.2").symlink_to(run, target_is_directory=True)
    lines = _info(capsys, sweep).splitlines()
    assert lines[0] == f"{sweep}: 1 run; 1 sweep cell(s) not started"
    assert lines[1].startswith("  temperature=0.2: SimCLR pretraining, finished")
    assert lines[2:] == ["  temperature=0.5: not started"]
    assert main(["info", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == ["temperature=0.5"]


def test_a_reader_that_stops_early_is_no_error(evaluated_run):
    """`simclr info RUNS | head -1`: no BrokenPipeError traceback, the shell's 141."""
    import subprocess
    import sys

    run, _ = evaluated_run
    child = subprocess.Popen([sys.executable, "-m", "simclr", "info", str(run.parent)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # before it prints: its first write meets a closed pipe
    assert child.wait(timeout=120) == 141
    assert child.stderr.read() == b""


def test_what_is_not_a_run_is_one_line_and_status_2(tmp_path, evaluated_run, capsys):
    run, data = evaluated_run
    capsys.readouterr()
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == (f"simclr info: error: {tmp_path / 'missing'}: no such "
                                       "file or folder\n")
    assert main(["info", str(data)]) == 2
    assert capsys.readouterr().err == (f"simclr info: error: {data}: not a simclr run folder "
                                       "(no config.yaml, checkpoints or results)\n")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simclr info: error: ") and str(bad) in err and err.count("\n") == 1


def test_a_runs_other_files_a_pipe_a_link_loop_and_an_unknown_kind_say_what_they_are(
        tmp_path, evaluated_run, capsys):
    import os

    import torch

    run, _ = evaluated_run
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    weird = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    torch.save({**weird, "kind": "weird"}, tmp_path / "weird.pt")
    (tmp_path / "enc.onnx.json").write_text("{}")  # (an export's card: its program named)
    capsys.readouterr()
    for target, problem in (
            (tmp_path / "enc.onnx.json", "is the card of an exported file, not a checkpoint; "
                                         "give the file it describes, enc.onnx"),
            (run / "config.yaml", "is a YAML file, not a checkpoint (give the run folder, or "
                                  "the .pt file in it)"),
            (run / "knn" / "knn.json", "is a JSON file, not a checkpoint (give the run folder, "
                                       "or the .pt file in it)"),
            (tmp_path / "pipe", ": not a regular file (a named pipe, socket or device)"),
            (tmp_path / "loop", ": a symbolic link loop"),
            (tmp_path / "weird.pt", "is a checkpoint of unknown kind 'weird'")):
        assert main(["info", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"simclr info: error: {target}") and problem in err, err
        assert err.count("\n") == 1


def test_a_damaged_checkpoint_in_a_run_is_shown_not_fatal(tmp_path, capsys):
    tiny_pretrained_run(tmp_path)
    (tmp_path / "pre/checkpoints/linear.pt").write_bytes(b"garbage")
    out = _info(capsys, tmp_path / "pre")
    line = next(x for x in out.splitlines() if "checkpoints/linear.pt" in x)
    assert "linear.pt" in line.split(": ", 1)[1]  # the loader's own one-line reason


def test_a_periodic_checkpoint_that_is_the_damaged_last_pt_is_damaged_too(tmp_path, capsys):
    """The final step's periodic checkpoint is last.pt itself (a hard link): listed by
    its name alone it read as sound beside a last.pt found truncated."""
    tiny_pretrained_run(tmp_path)
    folder = tmp_path / "pre/checkpoints"
    last = folder / "last.pt"
    os.link(last, folder / "ckpt-00000002.pt")
    os.truncate(last, last.stat().st_size // 2)
    out = _info(capsys, tmp_path / "pre")
    line = next(x for x in out.splitlines() if "checkpoints/ckpt-00000002.pt" in x)
    assert "periodic, step" not in line and line.endswith("(the same file as last.pt)"), line


def test_an_evaluations_folder_and_an_unfinished_finetuning(evaluated_run, tmp_path, capsys,
                                                          folders, monkeypatch):
    from simclr.finetune import run_finetune
    from tests.conftest import tiny_encoder

    run, data = evaluated_run
    out = tmp_path / "lin"
    assert main(["linear-eval", "--checkpoint", str(run), "--train", str(data), "--test",
                 str(data), "--out", str(out), "--workers", "0"]) == 0
    lines = _info(capsys, out).splitlines()
    assert lines[0] == f"{out}: results of linear evaluation"
    assert json.loads(_info(capsys, out, "--json"))["state"]["status"] == "finished"
    assert lines[1].startswith("  checkpoints/linear.pt: linear classifier, fitted on the "
                               "encoder of step 2, 2 classes, resnet18 x0.125, 16 px, top-1 ")
    train, test = folders

    def stop(step, flag):
        flag.requested = "SIGTERM"

    cut = tmp_path / "cut"
    run_finetune(tiny_encoder(), train, test, cut, image_size=16, batch_size=4, epochs=2,
                 labels_per_class=4, device="cpu", precision="fp32", workers=0,
                 verbose=False, on_step=stop)
    lines = _info(capsys, cut).splitlines()
    assert lines[0] == (
        f"{cut}: fine-tuning, unfinished at step 1 (the command that started it continues it)")
    # its partial file is no fine-tuned classifier yet (it read as one)
    assert lines[1].startswith("  checkpoints/finetune-partial.pt: unfinished fine-tuned "
                               "classifier, 1 training step,"), lines
    partial = cut / "checkpoints" / "finetune-partial.pt"  # named alone: the same
    assert _info(capsys, partial).startswith(
        f"{partial}: unfinished fine-tuned classifier, 1 training step,")
    # stopped in a finished pretraining's own folder (--out RUN): the run stays finished
    import shutil

    shared = tmp_path / "shared"
    shutil.copytree(run, shared)
    shutil.copy(cut / "checkpoints" / "finetune-partial.pt", shared / "checkpoints")
    lines = _info(capsys, shared).splitlines()
    assert lines[0].startswith(f"{shared}: SimCLR pretraining, finished at step ")
    assert ("  fine-tuning, unfinished at step 1 (the command that started it continues it)"
            in lines)
    # started on an earlier step of the run, which trained on since: its command is
    # refused now (other weights), which info offered as what continues it
    run_finetune(tiny_encoder(), train, test, tmp_path / "early", image_size=16, batch_size=4,
                 epochs=2, labels_per_class=4, device="cpu", precision="fp32", workers=0,
                 verbose=False, on_step=stop, source={"checkpoint": str(run), "step": 1})
    shutil.copy(tmp_path / "early" / "checkpoints" / "finetune-partial.pt",
                shared / "checkpoints")
    assert ("  fine-tuning, unfinished at step 1, of step 1 of this run, which has trained on "
            "to step 2: its command is refused now; give it --overwrite to start over on this "
            "step") in _info(capsys, shared).splitlines()
    # started by the simclr command (not as a library): info says which continues it
    from simclr import runtime

    monkeypatch.setattr(runtime, "COMMAND_LINE", ["simclr", "finetune", "--out", "my run"])
    again = tmp_path / "again"
    run_finetune(tiny_encoder(), train, test, again, image_size=16, batch_size=4, epochs=2,
                 labels_per_class=4, device="cpu", precision="fp32", workers=0,
                 verbose=False, on_step=stop)
    assert _info(capsys, again).splitlines()[0] == (
        f"{again}: fine-tuning, unfinished at step 1; continue with: simclr finetune --out "
        "'my run'")
    # ... asked from another folder: from the one it was typed in (its paths are relative)
    typed_in = os.getcwd()  # (where run_finetune ran)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _info(capsys, again).splitlines()[0] == (
        f"{again}: fine-tuning, unfinished at step 1; continue with: cd "
        f"{shlex.quote(typed_in)} && simclr finetune --out 'my run'")
    # a run's checkpoints/ folder stands for the run
    assert _info(capsys, run / "checkpoints") == _info(capsys, run)


def test_a_classifiers_class_names_are_listed_as_predict_promises(evaluated_run, tmp_path,
                                                                 capsys):
    """predict on a folder of none of a classifier's classes says `simclr info CLF` lists
    them: info gave their number only. Text: the first 20 names; --json: all of them."""
    import shutil

    import torch

    run, data = evaluated_run
    out = tmp_path / "lin"
    assert main(["linear-eval", "--checkpoint", str(run), "--train", str(data), "--test",
                 str(data), "--out", str(out), "--workers", "0"]) == 0
    other = tmp_path / "other"  # another task's classes
    shutil.copytree(data / "class_0", other / "cat")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--data", str(other), "--out",
                 str(tmp_path / "pred.csv"), "--workers", "0"]) == 0
    assert f"(`simclr info {out}` lists them)" in capsys.readouterr().err
    lines = _info(capsys, out).splitlines()
    assert lines[1].startswith("  checkpoints/linear.pt: linear classifier, ")
    assert lines[2] == "    classes: class_0, class_1"
    clf = out / "checkpoints" / "linear.pt"
    assert _info(capsys, clf).splitlines()[1:] == ["  classes: class_0, class_1"]
    facts = json.loads(_info(capsys, clf, "--json"))["checkpoint"]
    assert (facts["classes"], facts["class_names"]) == (2, ["class_0", "class_1"])
    many = [f"c{i:02d}" for i in range(25)]  # (info reads the entries, not the weights)
    torch.save({**torch.load(clf, weights_only=True), "classes": many}, tmp_path / "many.pt")
    assert _info(capsys, tmp_path / "many.pt").splitlines()[1] == (
        f"  classes: {', '.join(many[:20])} …and 5 more")
    facts = json.loads(_info(capsys, tmp_path / "many.pt", "--json"))["checkpoint"]
    assert (facts["classes"], facts["class_names"]) == (25, many)
    # a received classifier's names: an escape cleared the terminal, a line break faked
    # a line of info's
    odd = ["a\x1b[2J\x1b]0;title\x07", "b\n  fake: line"]
    torch.save({**torch.load(clf, weights_only=True), "classes": odd}, tmp_path / "odd.pt")
    assert _info(capsys, tmp_path / "odd.pt").splitlines()[1:] == [
        "  classes: a\\x1b[2J\\x1b]0;title\\x07, b\\n  fake: line"]


def test_a_random_init_classifier_and_its_exported_encoder_say_so(evaluated_run, tmp_path,
                                                                  capsys):
    """Both files record `features: random init`: info on the file itself read as a
    classifier (or encoder) of a trained one, where its run folder said the baseline."""
    run, data = evaluated_run
    out = tmp_path / "ri"
    assert main(["linear-eval", "--checkpoint", str(run), "--random-init", "--train",
                 str(data), "--test", str(data), "--out", str(out), "--workers", "0"]) == 0
    baseline = "fitted on the random init encoder (the baseline)"
    assert _info(capsys, out).splitlines()[1].startswith(
        f"  checkpoints/linear.pt: linear classifier, {baseline}, 2 classes, ")
    clf = out / "checkpoints" / "linear.pt"
    assert _info(capsys, clf).startswith(f"{clf}: linear classifier, {baseline}, 2 classes, ")
    assert json.loads(_info(capsys, clf, "--json"))["checkpoint"]["fitted_on"] == "random init"
    encoder = tmp_path / "encoder.pt"
    assert main(["export", "--checkpoint", str(clf), "--out", str(encoder)]) == 0
    assert _info(capsys, encoder) == (f"{encoder}: exported encoder, from a classifier "
                                      f"{baseline}, resnet18 x0.125, 16 px\n")
    facts = json.loads(_info(capsys, encoder, "--json"))["checkpoint"]
    assert facts["kind"] == "encoder" and facts["fitted_on"] == "random init"


def test_the_knn_monitor_is_shown(tmp_path, capsys):
    data = make_image_folder(tmp_path / "images")
    flags = tiny_flags(data, tmp_path / "run", str(tmp_path / "cache"), knn_train=str(data),
                       knn_test=str(data), knn_every=1.0, checkpoint_every=0)
    top1 = train.pretrain(build_config(flags=flags))["knn_top1"]
    assert f"  kNN monitor: top-1 {100 * top1:.2f}% at step 6\n" in _info(capsys, tmp_path / "run")


def test_a_diverged_run_says_where_and_why_and_its_json_is_strict(tmp_path, capsys):
    flags = tiny_flags(make_image_folder(tmp_path / "images"), tmp_path / "dv",
                       str(tmp_path / "cache"), checkpoint_every=0, **{"optim.lr": "1e30",
                                                                      "nan_policy": "skip",
                                                                      "max_bad_steps": 1})
    with pytest.raises(SimCLRError):
        train.pretrain(build_config(flags=flags))
    summary = json.loads((tmp_path / "dv/summary.json").read_text())
    head = _info(capsys, tmp_path / "dv").splitlines()[0]
    assert f"diverged at step {summary['steps']} of 6 ({summary['reason']})" in head
    text = _info(capsys, tmp_path / "dv", "--json")
    facts = json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert facts["state"]["status"] == "diverged"


@pytest.mark.parametrize("every", [0, 4])
def test_a_run_whose_final_checkpoint_could_not_be_written_says_so_and_why(
        tmp_path, capsys, monkeypatch, every):
    """A full disk at the final save ends pretraining with an error: its summary records
    why, and info says which checkpoint is left; without that record (a run killed at its
    last step, or older than the record) info still says the final one is missing."""
    import errno
    import os

    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("last.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    run = tmp_path / "run"
    flags = tiny_flags(make_image_folder(tmp_path / "images"), run, str(tmp_path / "cache"),
                       checkpoint_every=every)
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(SimCLRError, match="No space left on device") as failed:
        train.pretrain(build_config(flags=flags))
    monkeypatch.undo()
    lines = _info(capsys, run).splitlines()
    assert lines[0].startswith(f"{run}: SimCLR pretraining, failed at step 6 of 6 "
                               f"({failed.value}) (")
    facts = json.loads(_info(capsys, run, "--json"))["state"]
    assert (facts["status"], facts["reason"]) == ("failed", str(failed.value))
    if every:  # the periodic checkpoint survives: the run continues from it
        assert "the previous checkpoint" in str(failed.value)
        assert lines[0].endswith("; last checkpoint at step 4")
        assert f"  continue with: simclr pretrain --resume {run}" in lines
    else:
        assert "no earlier checkpoint exists" in str(failed.value)
        assert not any("continue with" in line for line in lines)
    (run / "summary.json").unlink()
    head = _info(capsys, run).splitlines()[0]
    assert ", stopped at step 6 of 6 (" in head
    assert head.endswith("; its final checkpoint was not written" + (
        "; last checkpoint at step 4" if every else "; no checkpoint exists"))


def test_a_closed_checkpoints_folder_is_named(tmp_path, monkeypatch, capsys):
    """A run whose checkpoints/ has no permissions: the run folder was named as the one
    that could not be listed."""
    closed = tmp_path / "run" / "checkpoints"
    closed.mkdir(parents=True)
    is_file = Path.is_file

    def refused(path):  # a stat inside a folder without search permission (as root, none)
        if path.parent == closed:
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", refused)
    assert main(["info", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"simclr info: error: {tmp_path / 'run'}: cannot read "
                                       f"the folder {closed} (Permission denied)\n")
    unlisted, iterdir = tmp_path / "unlisted", Path.iterdir  # (the folder named itself)
    unlisted.mkdir()

    def refused_listing(path):
        if path == unlisted:
            raise PermissionError(13, "Permission denied", str(path))
        return iterdir(path)

    monkeypatch.setattr(Path, "iterdir", refused_listing)
    assert main(["info", str(unlisted)]) == 2
    assert capsys.readouterr().err == (f"simclr info: error: {unlisted}: cannot list the "
                                       "folder (Permission denied)\n")


def test_an_sgd_linear_classifier_says_how_many_steps_it_trained(tmp_path, capsys):
    """Its checkpoint's own step is 0 (an encoder's step there means another thing); the
    steps it trained are in its metrics: 24 images in batches of 8, 2 epochs = 6."""
    from simclr.evaluate import run_linear_eval
    from tests.conftest import colour_source, tiny_encoder

    run_linear_eval(tiny_encoder(), colour_source(seed=0), colour_source(n_per_class=4, seed=1),
                    tmp_path / "lin", image_size=16, protocol="sgd", batch_size=8, epochs=2,
                    device="cpu", precision="fp32", verbose=False)
    facts = json.loads(_info(capsys, tmp_path / "lin" / "checkpoints" / "linear.pt", "--json"))
    assert facts["checkpoint"]["step"] == 2 * (24 // 8)
    assert "checkpoints/linear.pt: linear classifier, 6 training steps, 3 classes, " in \
        _info(capsys, tmp_path / "lin")


def test_a_results_folders_top5_and_a_from_scratch_baseline_are_reported(tmp_path, capsys):
    """A folder of results alone: kNN's top-5 is in the JSON facts, and a fine-tuning
    from scratch (its source names the checkpoint it took the architecture of) is the
    random-init baseline, not a result of that checkpoint's encoder."""
    of = str(tmp_path / "elsewhere" / "checkpoints" / "last.pt")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "knn.json").write_text(json.dumps(
        {"top1": 0.5, "top5": 0.875, "source": {"checkpoint": of, "step": 2}}))
    (tmp_path / "res" / "finetune.json").write_text(json.dumps(
        {"top1": 0.25, "top5": None, "from_scratch": True,
         "source": {"checkpoint": of, "step": 2, "features": "pretrained"}}))
    results = {r["file"]: r for r in
               json.loads(_info(capsys, tmp_path / "res", "--json"))["results"]}
    assert (results["knn.json"]["top1"], results["knn.json"]["top5"]) == (0.5, 0.875)
    assert results["finetune.json"]["features"] == "random init"
    assert "top5" not in results["finetune.json"]
    assert (f"  finetune.json: fine-tuning, top-1 25.00% (random init; of {of}, step 2)\n"
            in _info(capsys, tmp_path / "res"))


def test_a_classifier_in_a_runs_folder_is_no_checkpoint_of_the_run(evaluated_run, tmp_path,
                                                                    capsys):
    """An SGD linear classifier of 6 training steps written into a run of 2 steps (--out
    RUN), the run then without its summary (killed at its end): stopped at step 2 with
    its checkpoint of step 2, not 'last checkpoint at step 6', which --resume lacks."""
    import shutil

    from simclr.evaluate import run_linear_eval
    from tests.conftest import colour_source, tiny_encoder

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    run_linear_eval(tiny_encoder(), colour_source(seed=0), colour_source(n_per_class=4, seed=1),
                    run, image_size=16, protocol="sgd", batch_size=8, epochs=2, device="cpu",
                    precision="fp32", verbose=False)
    (run / "summary.json").unlink()
    state = json.loads(_info(capsys, run, "--json"))["state"]
    assert (state["status"], state["step"], state["saved_step"]) == ("stopped", 2, 2)
    head = _info(capsys, run).splitlines()[0]
    assert head.startswith(f"{run}: SimCLR pretraining, stopped at step 2 of 2 (")
    assert "last checkpoint" not in head, head


def test_a_finished_run_whose_only_checkpoint_cannot_be_read_says_so(evaluated_run, tmp_path,
                                                                     capsys):
    """A finished run whose last.pt is damaged (and no other checkpoint reads) read as
    plain 'finished': an evaluation of it then failed. Its head line, its line in a
    folder of runs and its JSON state say that no checkpoint of it can be read."""
    import shutil

    run = tmp_path / "bad/r1"
    shutil.copytree(evaluated_run[0], run)
    os.truncate(run / "checkpoints/last.pt", 100)
    head = _info(capsys, run).splitlines()[0]
    assert "finished at step 2 of 2" in head and head.endswith(
        "but no checkpoint can be read"), head
    line = next(x for x in _info(capsys, tmp_path / "bad").splitlines() if "r1: " in x)
    assert "but no checkpoint can be read" in line, line
    state = json.loads(_info(capsys, "--json", run))["state"]
    assert state["status"] == "finished" and state["unreadable_checkpoints"] == ["last.pt"]
    assert state["no_readable_checkpoint"] is True and "saved_step" not in state


def test_the_last_readable_checkpoint_beside_a_damaged_last_pt_is_one_that_reads(
        evaluated_run, tmp_path, capsys):
    """Beside a damaged last.pt, info named the newest periodic checkpoint 'the last
    readable' by its file name alone, unread: a damaged one among them too. They are
    read newest first now, as --resume does, until one reads."""
    import shutil

    run = tmp_path / "r3"
    shutil.copytree(evaluated_run[0], run)
    folder = run / "checkpoints"
    shutil.copy(folder / "last.pt", folder / "ckpt-00000001.pt")
    shutil.copy(folder / "last.pt", folder / "ckpt-00000002.pt")
    for name in ("last.pt", "ckpt-00000002.pt"):
        os.truncate(folder / name, 100)
    head = _info(capsys, run).splitlines()[0]
    assert head.endswith("but its last.pt cannot be read: last readable checkpoint at step 1"), \
        head
    state = json.loads(_info(capsys, "--json", run))["state"]
    assert state["unreadable_checkpoints"] == ["last.pt", "ckpt-00000002.pt"]
    os.truncate(folder / "ckpt-00000001.pt", 100)
    head = _info(capsys, run).splitlines()[0]
    assert head.endswith("but no checkpoint can be read"), head


def test_a_stopped_run_whose_checkpoint_cannot_be_read_does_not_say_none_exists(
        evaluated_run, tmp_path, capsys):
    """A killed run with a damaged last.pt: its checkpoint exists, but cannot be read."""
    import shutil

    run = tmp_path / "r2"
    shutil.copytree(evaluated_run[0], run)
    (run / "summary.json").unlink()
    with open(run / "metrics.jsonl", "a") as f:  # logged past its checkpoint
        f.write(json.dumps({"step": 3, "loss": 1.0, "epoch": 1.0, "elapsed": 1.0}) + "\n")
    os.truncate(run / "checkpoints/last.pt", 100)
    head = _info(capsys, run).splitlines()[0]
    assert "no checkpoint exists" not in head and "no checkpoint can be read" in head, head


@pytest.mark.parametrize("name, card, odd", [
    ("p.pt2", {"output": "x"}, "output"),
    ("p.pt2", {"output": {"name": "h", "shape": 5}}, "output.shape"),
    ("p.pt2", {"input": [1]}, "input"),
    ("p.pt2", {"input": {"shape": 5}}, "input.shape"),
    ("p.pt2", {"input": {"shape": []}}, "input.shape"),
    ("p.pt2", {"input": {"shape": ["batch", 3, -5, -5]}}, "input.shape"),
    ("p.pt2", {"output": {"name": "h", "shape": ["batch", [1, 1, 1]]}}, "output.shape"),
    ("p.pt2", {"encoder": [1, 2]}, "encoder"),
    ("p.pt2", {"trained": "x", "kind": [1]}, "kind"),
    ("p.pt2", {"step": "7", "checkpoint": ["a"]}, "step, checkpoint"),
    ("p.pt2", {"unfinished": {"step": "abc", "total_steps": [1]}}, "unfinished"),
    ("w.pt", {"encoder": "resnet18", "input": {"shape": [1, 3, 32, 32]}}, "encoder"),
    ("w.pt", {"input": {"shape": 7}}, "input.shape"),
    # a side below 1; an image side that is a name; a name that is no identifier (a
    # space, a bidi override); a name that is no text; a plan that is no number; a
    # side or step that is a bool (a number to isinstance)
    ("p.pt2", {"output": {"name": "h", "shape": ["batch", -5]}}, "output.shape"),
    ("p.pt2", {"input": {"shape": ["batch", 3, 32, "side"]}}, "input.shape"),
    ("p.pt2", {"output": {"name": "h", "shape": ["batch", "a b\u202e"]}}, "output.shape"),
    ("p.pt2", {"output": {"name": ["x", 1], "shape": ["batch", 128]}}, "output.name"),
    ("p.pt2", {"unfinished": {"step": 3, "total_steps": "abc"}}, "unfinished"),
    ("p.pt2", {"encoder": {"arch": "resnet18", "image_size": True}}, "encoder.image_size"),
    # a side below 1 (what `info` would show as the encoder's image size)
    ("p.pt2", {"encoder": {"arch": "resnet18", "image_size": 0}}, "encoder.image_size"),
    ("p.pt2", {"encoder": {"arch": "resnet18", "image_size": -32}}, "encoder.image_size"),
    ("p.pt2", {"step": True}, "step")])
def test_an_exported_files_odd_card_is_described_without_what_is_odd(tmp_path, capsys,
                                                                      name, card, odd):
    """A card is a received file's: an entry of a type export never writes ("output":
    "x", an input shape of 5 or [], a kind [1]) was a traceback of `simclr info`. It is
    left out and named as damaged, as a checkpoint's odd entries are."""
    import torch

    program = tmp_path / name
    if name.endswith(".pt"):  # a torchvision export: a state dict
        torch.save({"conv1.weight": torch.zeros(1)}, program)
    else:
        program.write_bytes(b"not read")
    card = {"format": "simclr-program",
            "program": "torchvision" if name.endswith(".pt") else "pt2", **card}
    Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
    assert main(["info", str(program)]) == 0
    assert f"damaged or edited, left out: {odd}" in capsys.readouterr().out
    assert main(["info", "--json", str(program)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["damaged"] == odd.split(", ")


@pytest.mark.parametrize("odd", [{"input": {"shape": 5}},
                                 {"input": {"shape": [1, 3, 64, 64]}, "encoder": {
                                     "arch": "resnet18", "cifar_stem": True,
                                     "image_size": "x"}}])
def test_no_image_size_advice_from_a_side_left_out(tmp_path, capsys, odd):
    """A torchvision export's card whose input side or encoder side was left out as
    damaged advised "give --image-size None" (or read the side as 0)."""
    import torch

    program = tmp_path / "w.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, program)
    card = {"format": "simclr-program", "program": "torchvision",
            "encoder": {"arch": "resnet18", "cifar_stem": True, "image_size": 32}, **odd}
    Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
    assert main(["info", "--json", str(program)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["damaged"] and "read_at" not in facts


def test_an_exported_cards_null_entries_stay_in_info_json(tmp_path, capsys):
    """export writes some entries null (a linear classifier's step and plan): info's
    check of a received card left them out of --json as if they were never written."""
    program = tmp_path / "p.pt2"
    program.write_bytes(b"not read")
    card = {"format": "simclr-program", "program": "pt2", "step": None, "total_steps": None}
    Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
    assert main(["info", "--json", str(program)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["program"]["step"] is None and facts["program"]["total_steps"] is None
    assert "damaged" not in facts


def test_a_large_sweeps_cells_not_started_are_counted_past_the_first_ones(tmp_path, capsys):
    """A 500-cell sweep not begun: the first cells and a count of the rest, not 500
    lines (--json keeps every one)."""
    from simclr.info_text import PENDING_SHOWN

    sweep = tmp_path / "sw"
    sweep.mkdir()
    cells = [f"temperature={i}" for i in range(500)]
    (sweep / "sweep.json").write_text(json.dumps([{"cell": c, "status": "pending"}
                                                  for c in cells]))
    lines = _info(capsys, sweep).splitlines()
    assert lines[0] == f"{sweep}: 0 runs; 500 sweep cell(s) not started"
    assert lines[1:-1] == [f"  {c}: not started" for c in cells[:PENDING_SHOWN]]
    assert lines[-1] == f"  ... {500 - PENDING_SHOWN} more not started (--json lists them)"
    assert main(["info", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == cells


def test_a_torchrun_run_is_continued_under_torchrun(tmp_path, image_folder, cache_dir,
                                                    capsys):
    """A run of 2 torchrun processes stopped; info said `simclr pretrain --resume RUN`
    (one process: its global batch and BatchNorm no longer the same), while the run's
    own stop message said `torchrun --nproc_per_node 2 -m simclr pretrain --resume`.
    Now info reads the process count the latest checkpoint records."""

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir))

    def stop(step, request):
        request.requested = "SIGTERM"

    train.pretrain(cfg, on_step=stop)
    run = tmp_path / "run"
    _continued_under_torchrun(capsys, run, "pretrain")
    saved = yaml.safe_load((run / "config.yaml").read_text())  # --processes 2: its own
    saved["provenance"]["argv"] += ["--processes", "2"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert f"  continue with: simclr pretrain --resume {run} --processes 2\n" in \
        _info(capsys, run)


def test_a_torchrun_supervised_run_is_continued_under_torchrun(tmp_path, capsys, monkeypatch):
    """As a pretraining's: a supervised run of 2 torchrun processes, stopped, said
    `simclr supervised --resume RUN` (one process), its checkpoint holding no process
    count; it holds the count now, which info reads."""
    from simclr import supervised

    train_folder = make_image_folder(tmp_path / "train", classes=2, per_class=8)
    run = tmp_path / "run"
    real = supervised.run_supervised

    def stop(step, request):
        request.requested = "SIGTERM"

    def stopped(*args, **kwargs):
        return real(*args, **kwargs, on_step=stop)

    monkeypatch.setattr(supervised, "run_supervised", stopped)
    assert main(["supervised", "--train", str(train_folder), "--out", str(run), "--arch",
                 "resnet18", "--width", "0.125", "--image-size", "16", "--batch-size", "8",
                 "--epochs", "2", "--precision", "fp32", "--workers", "0", "--cache-dir",
                 str(tmp_path / "cache"), "--device", "cpu"]) == 75
    monkeypatch.undo()
    _continued_under_torchrun(capsys, run, "supervised")


def _continued_under_torchrun(capsys, run: Path, command: str) -> None:
    """A stopped one-process run of ``command`` is continued as one; its checkpoint
    rewritten as 2 torchrun processes' says torchrun's command."""
    from simclr.checkpoint import save_checkpoint

    assert f"  continue with: simclr {command} --resume {run}\n" in _info(capsys, run)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["processes"] == 1
    assert ckpt["local_processes"] == 1
    save_checkpoint({**ckpt, "processes": 2, "local_processes": 2},  # as torchrun's ranks
                    run / "checkpoints")
    assert (f"  continue with: torchrun --nproc_per_node 2 -m simclr {command} --resume "
            f"{run}\n") in _info(capsys, run)
    # over 2 machines (one process each): torchrun on each, a machine's share
    save_checkpoint({**ckpt, "processes": 2, "local_processes": 1}, run / "checkpoints")
    assert (f"  continue with: torchrun --nnodes 2 --nproc_per_node 1 --rdzv-backend c10d "
            f"--rdzv-endpoint HOST:PORT -m simclr {command} --resume {run}\n") in _info(capsys, run)


def test_a_stopped_sgd_linear_evaluation_of_an_earlier_step_says_its_command_is_refused(
        evaluated_run, tmp_path, capsys):
    """linear-eval --protocol sgd saves the encoder's step it trains on as text
    (settings.source: [checkpoint, '1', features]), which info took for no step: the run
    trained on since went unnoticed, and the command offered was refused."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    partial = {**ckpt, "kind": "linear-partial", "step": 3, "argv": ["simclr", "linear-eval"],
               "settings": {"source": [str(run / "checkpoints" / "last.pt"), "1",
                                       "pretrained"]}}
    torch.save(partial, run / "checkpoints" / "linear-partial.pt")
    assert ("  linear evaluation (sgd), unfinished at step 3, of step 1 of this run, which has "
            "trained on to step 2: its command is refused now; give it --overwrite to start "
            "over on this step") in _info(capsys, run).splitlines()
    partial["settings"]["source"][1] = "2"  # the run's step now: it continues
    torch.save(partial, run / "checkpoints" / "linear-partial.pt")
    assert "  linear evaluation (sgd), unfinished at step 3; continue with: simclr linear-eval" \
        in _info(capsys, run).splitlines()


def test_a_run_folder_named_like_an_option_is_continued_by_a_command_that_parses(
        evaluated_run, tmp_path, capsys, monkeypatch):
    """A run folder `-r` given as ./-r read `simclr pretrain --resume -r`, an option where
    the folder belongs: a relative path that starts with '-' is written ./-r."""
    import shutil

    shutil.copytree(evaluated_run[0], tmp_path / "-r")
    (tmp_path / "-r" / "summary.json").unlink()  # stopped: info says how to continue it
    monkeypatch.chdir(tmp_path)
    assert "  continue with: simclr pretrain --resume ./-r\n" in _info(capsys, "./-r")


def test_a_run_on_a_split_of_its_folder_names_the_split(evaluated_run, tmp_path, capsys,
                                                        caplog):
    """--data DIR holding train/ and test/ trains on DIR/train: info's data line said DIR
    alone, as if the test images were trained on too. Asked, not read: nothing says
    'DIR holds splits; using DIR/train' (it did, on stderr)."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    data = next(x for x in _info(capsys, run).splitlines() if x.startswith("  data: "))
    assert data == f"  data: {evaluated_run[1]}"  # (no split: the folder itself)
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    torch.save({**ckpt, "data_split": "train"}, last)
    data = next(x for x in _info(capsys, run).splitlines() if x.startswith("  data: "))
    assert data == f"  data: {evaluated_run[1]} (its train/ split)"
    # Saved before data_split was: of a folder holding train/ and test/, its train/ (as
    # this release reads it). Splits in capitals: read whole by releases before
    # 2026-12-06, as DIR/Train by those since (fc273d2), told by the files it listed (the
    # names where saved, else their count) as --resume tells them; it said DIR alone.
    from simclr.folders import scan_folder

    unmarked = {k: v for k, v in ckpt.items() if k not in ("data_split", "files_digest")}
    caplog.set_level("INFO")
    for train_name in ("train", "Train"):
        split = tmp_path / f"split-{train_name}"
        for name in (train_name, train_name.replace("rain", "est")):
            make_image_folder(split / name, classes=1, per_class=1)
        saved = yaml.safe_load((run / "config.yaml").read_text())
        saved["data"]["path"] = str(split)
        (run / "config.yaml").write_text(yaml.safe_dump(saved))
        config = {**ckpt["config"], "data": {**ckpt["config"]["data"], "path": str(split)}}
        whole = scan_folder(split, unlabeled=True).names_digest()
        one = scan_folder(split / train_name, unlabeled=True).names_digest()
        listed = [({"num_files": 2}, train_name == "train"), ({"num_files": 1}, True),
                  ({"num_files": 2, "files_digest": whole}, train_name == "train"),
                  ({"num_files": 2, "files_digest": one}, True)]  # (2: by chance)
        for files, split_read in listed:
            torch.save({**unmarked, "config": config, "all_images": True, **files}, last)
            data = next(x for x in _info(capsys, run).splitlines()
                        if x.startswith("  data: "))
            said = f" (its {train_name}/ split)" if split_read else ""
            assert data == f"  data: {split}{said}", files
    assert "holds splits" not in caplog.text + capsys.readouterr().err


def test_an_empty_path_is_refused_not_read_as_the_working_folder(tmp_path, monkeypatch):
    """describe("") (an unset variable in a script calling it) is no name for the
    working folder, even where that is a run: Path("") is "."."""
    from simclr.info import describe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("batch_size: 8\n")
    for empty in ("", " "):
        with pytest.raises(SimCLRError, match="^give a run folder or checkpoint file, got an "
                                              "empty path$"):
            describe(empty)


def test_an_exported_program_named_in_capitals_is_read_as_one(tmp_path, capsys):
    """A program renamed `MODEL.ONNX` (or copied from a system that writes capitals) is
    still an exported program, described from its card, not refused as no checkpoint."""
    for name, kind in (("MODEL.ONNX", "onnx"), ("MODEL.Pt2", "pt2")):
        program = tmp_path / name
        program.write_bytes(b"not read")
        card = {"format": "simclr-program", "program": kind, "step": 3}
        Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
        assert main(["info", "--json", str(program)]) == 0
        assert json.loads(capsys.readouterr().out)["program"] == card


def test_a_run_started_with_processes_auto_is_described(tmp_path, capsys):
    """`--processes auto` (as many as GPUs) is recorded as typed: its count is not in
    the command, and the run is described without it (not a traceback)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({
        "batch_size": 8, "provenance": {"argv": ["simclr", "pretrain", "--processes", "auto"]}}))
    assert main(["info", "--json", str(run)]) == 0
    assert "processes" not in json.loads(capsys.readouterr().out)["recipe"]
    assert main(["info", str(run)]) == 0
    assert "  recipe: batch 8\n" in capsys.readouterr().out


def test_the_initial_weights_are_named_with_the_step_they_were_resolved_to(tmp_path, capsys):
    """--init-from a run folder: its checkpoint and step as resolved at the start, which
    config.yaml records beside the flag as typed (the run has trained on since)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({
        "batch_size": 8, "init_from": "pre",
        "init_from_resolved": "pre/checkpoints/last.pt (step 5)"}))
    assert main(["info", str(run)]) == 0
    assert "  initial weights: pre/checkpoints/last.pt (step 5)\n" in capsys.readouterr().out


def test_a_commands_folder_with_runs_inside_is_described_as_itself(evaluated_run, tmp_path,
                                                                   capsys):
    """A command's output folder without a config.yaml (an evaluation's --out) holds its
    own checkpoints/: a run folder put inside it leaves it described as itself, its
    checkpoints listed, not as a folder of runs that hides them."""
    import shutil

    outer = tmp_path / "ev"
    (outer / "checkpoints").mkdir(parents=True)
    shutil.copy(evaluated_run[0] / "checkpoints" / "last.pt", outer / "checkpoints")
    shutil.copytree(evaluated_run[0], outer / "inner")
    facts = json.loads(_info(capsys, outer, "--json"))
    assert "runs" not in facts
    assert [c["name"] for c in facts["checkpoints"]] == ["last.pt"]
    # A run folder named checkpoints (its config.yaml there) is the run, not its parent's.
    shutil.copytree(evaluated_run[0], tmp_path / "checkpoints")
    facts = json.loads(_info(capsys, tmp_path / "checkpoints", "--json"))
    assert facts["path"] == str(tmp_path / "checkpoints") and "runs" not in facts


def test_a_run_whose_data_setting_is_damaged_is_not_said_to_be_the_digits_demo(
        evaluated_run, tmp_path, capsys):
    """A config.yaml whose data.path cannot be read names no folder, but it is no
    pretraining without --data either: its data line is left out, not 'the digits demo'."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"]["path"] = [1, 2]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    text = _info(capsys, run)
    assert "config.yaml is damaged" in text and "data.path" in text, text
    assert "  data: " not in text


@pytest.mark.parametrize("count, recorded", [(3, 3), ("three", None), (0, None)])
def test_a_runs_process_count_is_taken_from_its_summary_only_where_a_count(
        evaluated_run, tmp_path, capsys, count, recorded):
    """A torchrun run (no --processes in its command) whose last.pt records no process
    count: its summary.json's is its recipe's, unless it is no count of processes."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    last = run / "checkpoints" / "last.pt"
    torch.save({k: v for k, v in torch.load(last, weights_only=True).items()
                if k != "processes"}, last)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "processes": count}))
    assert json.loads(_info(capsys, run, "--json"))["recipe"].get("processes") == recorded
    if recorded:  # (the count its last.pt's session recorded comes first)
        torch.save({**torch.load(last, weights_only=True), "processes": 2}, last)
        assert json.loads(_info(capsys, run, "--json"))["recipe"]["processes"] == 2


def test_a_killed_run_with_results_in_its_folder_is_stopped_not_finished(evaluated_run,
                                                                          tmp_path, capsys):
    """A run folder (its config.yaml) killed before any checkpoint or summary: results
    beside it (a kNN's --out inside) do not make it an evaluation's finished folder."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    shutil.rmtree(run / "checkpoints")
    (run / "summary.json").unlink()
    head = _info(capsys, run).splitlines()[0]
    assert head.startswith(f"{run}: SimCLR pretraining, stopped at step 2 of 2 "), head
    assert head.endswith("; no checkpoint exists")


def test_a_folder_a_command_holds_before_it_saved_anything_is_said_busy(tmp_path, capsys):
    """A command's --out it holds (its lock) with nothing saved yet (a fine-tuning's
    start) is a command at work, named by its lock, not 'not a simclr run folder'."""
    from simclr.files import lock_folder

    folder = tmp_path / "ev"
    folder.mkdir()
    handle = lock_folder(folder)
    try:
        line = _info(capsys, folder)
    finally:
        handle.close()
    assert line.startswith(f"{folder}: a simclr command is running in it (pid "), line
    assert main(["info", str(folder)]) == 2  # released: nothing there
    assert "not a simclr run folder" in capsys.readouterr().err


def test_a_simclr_checkpoint_written_over_a_torchvision_export_is_the_checkpoint(
        evaluated_run, tmp_path, capsys):
    """A torchvision export's card left beside a file that is a simclr checkpoint now
    (written over since) is not its: the file is described as the checkpoint it is."""
    import shutil

    path = tmp_path / "w.pt"
    shutil.copy(evaluated_run[0] / "checkpoints" / "last.pt", path)
    card = {"format": "simclr-program", "program": "torchvision",
            "encoder": {"arch": "resnet50", "image_size": 224}}
    Path(f"{path}.json").write_text(json.dumps(card), encoding="utf-8")
    assert _info(capsys, path).startswith(f"{path}: SimCLR pretraining, step 2, resnet18")


@pytest.mark.parametrize("side", [32, 64])
def test_image_size_advice_only_where_the_export_is_read_at_another_side(tmp_path, capsys,
                                                                         side):
    """A torchvision export of a CIFAR-stem ResNet is read at 32 px: an export of 32-px
    inputs needs no --image-size advice, one of 64 px does."""
    import torch

    from simclr.torchvision_io import assumed_side

    program = tmp_path / "w.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, program)
    card = {"format": "simclr-program", "program": "torchvision",
            "input": {"shape": [1, 3, side, side]},
            "encoder": {"arch": "resnet18", "cifar_stem": True, "image_size": side}}
    Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
    assert assumed_side(True) == 32
    facts = json.loads(_info(capsys, program, "--json"))
    assert facts.get("read_at") == (None if side == 32 else 32)


def test_an_exported_cards_odd_unfinished_record_is_left_out_not_shown(tmp_path, capsys):
    """A card's `unfinished` that is no step and plan is named damaged and left out: not
    kept in --json, nor worded as an unfinished training."""
    program = tmp_path / "p.pt2"
    program.write_bytes(b"not read")
    card = {"format": "simclr-program", "program": "pt2",
            "unfinished": {"step": 3, "total_steps": "abc"}}
    Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
    facts = json.loads(_info(capsys, program, "--json"))
    assert facts["damaged"] == ["unfinished"] and "unfinished" not in facts["program"]
    assert "an unfinished training" not in _info(capsys, program)


def test_an_exported_unfinished_training_without_a_planned_length_is_no_damage(tmp_path,
                                                                               capsys):
    """A stopped training with no planned last step (a --time-budget run) exports an
    `unfinished` without total_steps: that is a record as export writes it, shown."""
    program = tmp_path / "p.pt2"
    program.write_bytes(b"not read")
    card = {"format": "simclr-program", "program": "pt2",
            "unfinished": {"step": 3, "total_steps": None}}
    Path(f"{program}.json").write_text(json.dumps(card), encoding="utf-8")
    facts = json.loads(_info(capsys, program, "--json"))
    assert "damaged" not in facts and facts["program"]["unfinished"]["step"] == 3


def test_a_checkpoint_with_a_flipped_bit_is_refused_as_every_command_refuses_it(
        tmp_path, capsys):
    """info read the entries alone (mapped): a byte flipped in a weight, which embed,
    export and the evaluations refuse by its checksum, read as a sound checkpoint."""
    from tests.test_checkpoint import _run
    from tests.test_checkpoint_read import _entry_start

    last = _run(tmp_path / "run", step=6)
    raw = bytearray(last.read_bytes())
    raw[_entry_start(last, "data/0") + 1] ^= 0x40
    last.write_bytes(bytes(raw))
    assert main(["info", str(last)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last.pt: corrupt (its entry " in err and \
        "fails its checksum" in err, err
    out = _info(capsys, tmp_path / "run")
    line = next(x for x in out.splitlines() if "checkpoints/last.pt" in x)
    assert "fails its checksum" in line and "step 6" not in line, line


def test_a_runs_split_is_not_shown_beside_data_that_names_no_folder(tmp_path, capsys):
    """A last.pt recording the split it trained on, in a run whose config names no data
    folder (the digits demo): no 'its train/ split' of a folder that is not there."""
    from simclr.checkpoint import save_checkpoint
    from simclr.info import describe
    from tests.test_checkpoint import _state

    run = tmp_path / "run"
    save_checkpoint({**_state(2), "kind": "pretrain", "data_split": "train"},
                    run / "checkpoints")
    (run / "config.yaml").write_text(yaml.safe_dump({"batch_size": 8}))
    facts = describe(run)
    assert facts["data"] is None and "data_split" not in facts
    assert "  data: the digits demo (scikit-learn)\n" in _info(capsys, run)


def test_a_killed_runs_checkpoints_without_config_beside_results_are_stopped(tmp_path):
    """No config.yaml, a pretraining's last.pt and results: the run's checkpoint makes it
    a killed run (stopped), not an evaluation's --out whose results are its end."""
    from simclr.checkpoint import save_checkpoint
    from simclr.info import describe
    from tests.test_checkpoint import _state

    run = tmp_path / "run"
    save_checkpoint({**_state(2), "kind": "pretrain"}, run / "checkpoints")
    (run / "knn.json").write_text(json.dumps({"top1": 0.5}))
    state = describe(run)["state"]
    assert (state["status"], state["saved_step"]) == ("stopped", 2)


def test_a_state_dict_beside_another_programs_card_is_no_torchvision_export(tmp_path):
    """A card beside a bare state dict describes it only where the card is a torchvision
    export's: a .pt2 program's card (renamed beside it) is not its, and the file is no
    checkpoint."""
    import torch

    from simclr.info import describe

    program = tmp_path / "w.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, program)
    card = {"format": "simclr-program", "program": "torchvision", "step": 3}
    for kind, described in (("torchvision", True), ("pt2", False), ("onnx", False)):
        Path(f"{program}.json").write_text(json.dumps({**card, "program": kind}))
        if described:
            assert describe(program)["program"]["step"] == 3
        else:
            with pytest.raises(SimCLRError):
                describe(program)


def test_a_checkpoints_records_are_read_only_as_simclr_writes_them(tmp_path):
    """A classifier's own step beside fewer metrics.steps, a source step that is text
    but no digits, features 'pretrained' (no baseline), an export record's entries that
    are no text: each read as simclr writes them, not shown as something else."""
    from simclr.checkpoint import save_checkpoint
    from simclr.info import checkpoint_facts
    from tests.test_checkpoint import _state

    path = save_checkpoint({
        **_state(5), "kind": "linear", "classes": ["a", "b"], "features": "pretrained",
        "metrics": {"top1": 0.5, "steps": 2},
        "settings": {"source": ["x/checkpoints/last.pt", "abc", "pretrained"]},
        "exported_from": {"trained": "step 2", "kind": None, "file": ["x"]}},
        tmp_path / "checkpoints", "linear.pt")
    facts = checkpoint_facts(path)
    assert facts["step"] == 5 and "started_on" not in facts and "fitted_on" not in facts
    assert facts["exported_from"] == {"trained": "step 2"}


def test_a_run_id_is_read_from_config_yaml_only_as_such_an_id(tmp_path):
    """A copy of a run folder without its checkpoints keeps the id in config.yaml; a
    text file's value that is no run id (32 lower-case hex digits) is never shown."""
    from simclr.config_file import save_yaml
    from simclr.info import describe

    cfg = build_config(flags={"out": str(tmp_path)})
    for recorded, shown in (("0123456789abcdef" * 2, "0123456789abcdef" * 2),
                            ("\x1b[2J not an id", None), ("ABCDEF0123456789" * 2, None),
                            (7, None)):
        save_yaml({**cfg.to_dict(), "run_id": recorded}, tmp_path / "config.yaml")
        assert describe(tmp_path).get("run_id") == shown
