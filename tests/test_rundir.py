"""The run folder: a new run never takes another's folder, a resumed run keeps its
length, and the metrics log reads as one run across sessions."""

from __future__ import annotations

import errno
import json
import os
import re
import time

import pytest

from simclr import train, train_records
from simclr.checkpoint_read import load_checkpoint
from simclr.errors import SimCLRError
from simclr.files import STALE_AFTER_S
from simclr.resume import load_resume_config
from simclr.rundir import MetricsLog
from simclr.settings import build_config, config_from_dict
from tests.conftest import tiny_flags

pytestmark = pytest.mark.usefixtures("one_thread")


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def run(tmp_path, image_folder, cache_dir, name, **extra):
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / name, cache_dir, **extra))
    return cfg, train.pretrain(cfg)


def _preempted_run(cfg, at_step=4):
    def preempt(step, stop):
        if step == at_step:
            stop.requested = "SIGTERM"

    assert train.pretrain(cfg, on_step=preempt)["steps"] == at_step


def test_existing_run_is_not_overwritten(tmp_path, image_folder, cache_dir, monkeypatch):
    run(tmp_path, image_folder, cache_dir, "once", epochs=1)
    with pytest.raises(SimCLRError, match="already holds a run"):
        run(tmp_path, image_folder, cache_dir, "once", epochs=1)
    from simclr.files import lock_folder

    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("[]")
    with pytest.raises(SimCLRError, match=r"sweep is a sweep's folder \(sweep.json\); choose "
                                          "another --out"):
        run(tmp_path, image_folder, cache_dir, "sweep", epochs=1)
    held = lock_folder(tmp_path / "once")  # as a live run would (--resume refused too)
    try:
        with pytest.raises(SimCLRError, match=r"once is in use by another simclr run \(pid "):
            run(tmp_path, image_folder, cache_dir, "once", epochs=1)
        # before its data are opened and "resuming ... from step" said (it was after)
        logs = []
        monkeypatch.setattr(train, "open_data", lambda *a: logs.append("opened"))
        monkeypatch.setattr(train, "log_line", logs.append)
        monkeypatch.setattr(train_records, "log_line", logs.append)  # (start_state's)
        with pytest.raises(SimCLRError, match=r"once is in use by another simclr run \(pid "):
            train.pretrain(load_resume_config(tmp_path / "once", {"epochs": 2}), resume=True)
        assert logs == []
    finally:
        held.close()


def test_a_new_run_sets_aside_the_logs_of_a_run_killed_before_its_first_checkpoint(
        tmp_path, image_folder, cache_dir, capsys):
    dead = tmp_path / "dead"
    (dead / "tb").mkdir(parents=True)
    (dead / "metrics.jsonl").write_text('{"step": 0, "event": "start"}\n{"step": 10}\n')
    (dead / "config.yaml").write_text("epochs: 100\n")
    run(tmp_path, image_folder, cache_dir, "dead", epochs=1)
    assert "held the logs of a run without a checkpoint; they are kept as " \
        "metrics.previous-1.jsonl, tb.previous-1" in capsys.readouterr().out
    lines = [json.loads(x) for x in (dead / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and [x["step"] for x in lines] == [0, 1, 2, 3]
    assert (dead / "metrics.previous-1.jsonl").read_text().endswith('{"step": 10}\n')
    assert (dead / "config.previous-1.yaml").read_text() == "epochs: 100\n"
    assert (dead / "tb.previous-1").is_dir() and (dead / "tb").is_dir()


def test_a_run_stopped_before_its_first_log_line_does_not_block_its_folder(
        tmp_path, image_folder, cache_dir, capsys):
    """A Ctrl-C (or a sweep's SIGTERM) between the log's opening and config.yaml left an
    empty metrics.jsonl beside the lock: every later run into the folder (the sweep's
    own cell, on the same command) was refused, "not written by a simclr run"."""
    stopped = tmp_path / "stopped"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / ".simclr.lock").touch()
    (stopped / "metrics.jsonl").touch()
    _, summary = run(tmp_path, image_folder, cache_dir, "stopped", epochs=1)
    assert summary["status"] == "finished"
    assert "held the logs" not in capsys.readouterr().out  # (nothing was kept aside)
    assert not list(stopped.glob("*.previous-*"))
    (tmp_path / "other").mkdir()  # a file of that name with content stays refused
    (tmp_path / "other/metrics.jsonl").write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(SimCLRError, match="holds metrics.jsonl, not written by a simclr run"):
        run(tmp_path, image_folder, cache_dir, "other", epochs=1)
    (tmp_path / "mine").mkdir()  # an empty log vouches for no file of a user's beside it
    (tmp_path / "mine/metrics.jsonl").touch()
    (tmp_path / "mine/config.yaml").write_text("mysetting: 1\n")
    with pytest.raises(SimCLRError, match="holds metrics.jsonl, not written by a simclr run"):
        run(tmp_path, image_folder, cache_dir, "mine", epochs=1)


def test_resume_keeps_the_planned_run_length(tmp_path, image_folder, cache_dir, capsys):
    from simclr.cli import main

    run_dir = tmp_path / "run"
    _preempted_run(build_config(flags=tiny_flags(image_folder, run_dir, cache_dir)))
    saved_yaml = (run_dir / "config.yaml").read_text()
    for flag, value, said in (("--max-steps", "3", "not set saved, 3 asked"),
                              ("--epochs", "4", "2 saved, 4 asked"),
                              ("--time-budget", "1h", "not set saved, 3600 asked")):
        assert main(["pretrain", "--resume", str(run_dir), flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot change {flag} ({said})" in err, err
    # Flags it may change are checked as a new run's: the saved config stays valid.
    for flag, value, message in (("--threads", "0", "--threads must be positive, got 0"),
                                 ("--keep-checkpoints", "-1", "--keep-checkpoints must"),
                                 ("--temperature", "0.3", "cannot change --temperature"),
                                 ("--arch", "resnet34", "cannot change --arch"),
                                 ("--width", "0.25", "cannot change --width")):
        assert main(["pretrain", "--resume", str(run_dir), flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert (run_dir / "config.yaml").read_text() == saved_yaml  # no length it did not use
    assert load_checkpoint(run_dir / "checkpoints/last.pt")["step"] == 4
    # The same length is no change; the checkpoint file itself names the run too. So are
    # the first command's other settings given again (--resume added to it), a folder
    # given relative to here included.
    first = config_from_dict(load_checkpoint(run_dir / "checkpoints/last.pt")["config"])
    again = ["--batch-size", str(first.batch_size), "--temperature",
             str(first.loss.temperature), "--arch", first.model.arch, "--seed",
             str(first.seed), "--data", os.path.relpath(first.data.path)]
    assert main(["pretrain", "--resume", str(run_dir / "checkpoints/last.pt"), "--epochs", "2",
                 "--no-progress", *again]) == 0
    saved = load_checkpoint(run_dir / "checkpoints/last.pt")
    assert saved["step"] == saved["total_steps"] == 6
    # A run's own config.yaml is a valid --config (its recorded-only keys are skipped).
    assert build_config(config_file=str(run_dir / "config.yaml")) == \
        config_from_dict(saved["config"])


def test_resume_with_the_first_commands_recipe_is_accepted_and_another_refused(
        tmp_path, image_folder, cache_dir, capsys):
    """--preset/--config were refused with --resume whatever they gave: the first
    command with --resume added could not run."""
    from simclr.cli import main

    run_dir = tmp_path / "run"
    _preempted_run(build_config(flags=tiny_flags(image_folder, run_dir, cache_dir)))
    recipe = tmp_path / "recipe.yaml"  # the run's recipe, as its first command gave it,
    recipe.write_text("".join(  # without --out: --resume names the folder
        line for line in (run_dir / "config.yaml").read_text().splitlines(keepends=True)
        if not line.startswith("out:")))
    assert main(["pretrain", "--resume", str(run_dir), "--preset", "cifar10-cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "asked by --preset/--config and the flags)" in err, err
    assert main(["pretrain", "--resume", str(run_dir), "--config", str(recipe),
                 "--temperature", "0.3"]) == 2
    assert "cannot change --temperature (0.5 saved, 0.3 asked" in capsys.readouterr().err
    # A kill during a save leaves its temporary file: a resume, holding the folder,
    # removes it (the next save of a periodic one's name never comes). Not one written
    # under a minute ago: a process in another container or on another host, its pid no
    # process here, may be writing it still (a resume deleted it under that process).
    cut = [run_dir / "checkpoints" / "ckpt-00000004.pt.tmp-99999999",
           run_dir / "summary.json.tmp-99999999"]
    writing = [run_dir / "checkpoints" / "ckpt-00000002.pt.tmp-99999998",
               run_dir / "summary.json.tmp-99999998"]
    for path in (*cut, *writing):
        path.write_bytes(b"half")
    for path in cut:
        _age(path, 2 * STALE_AFTER_S)
    assert main(["pretrain", "--resume", str(run_dir), "--config", str(recipe),
                 "--no-progress"]) == 0
    assert load_checkpoint(run_dir / "checkpoints/last.pt")["step"] == 6  # run to its end
    assert not any(path.exists() for path in cut)
    assert all(path.read_bytes() == b"half" for path in writing)
    for path in writing:
        path.unlink()
    # Resumed again, finished: nothing to do, nothing written (a start line and a
    # config record were added for a session that trained nothing)
    logs = {name: (run_dir / name).read_bytes() for name in ("metrics.jsonl", "config.yaml",
                                                              "summary.json")}
    leftover = run_dir / "checkpoints" / "last.pt.tmp-99999999"  # (a kill during a save)
    leftover.write_bytes(b"half")
    _age(leftover, 2 * STALE_AFTER_S)
    assert main(["pretrain", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "finished at step 6 already: nothing to do" in capsys.readouterr().out
    assert {name: (run_dir / name).read_bytes() for name in logs} == logs
    assert not leftover.exists()
    # Moved since: the summary returned names where its checkpoint is now
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    summary = train.pretrain(load_resume_config(moved, {}), resume=True)
    assert summary["checkpoint"] == str(moved / "checkpoints" / "last.pt")


def test_a_moved_run_resumed_with_its_old_out_is_told_where_to_resume(
        tmp_path, image_folder, cache_dir, capsys, monkeypatch):
    """The first command again after `mv runA runB` (--out runA kept): the refusal names
    both folders and the way on (it said "cannot change --out", no more)."""
    from simclr.cli import main

    _preempted_run(build_config(flags=tiny_flags(image_folder, tmp_path / "runA", cache_dir)),
                   at_step=2)
    (tmp_path / "runA").rename(tmp_path / "runB")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for target in ("runB", "runB/checkpoints/last.pt"):
        assert main(["pretrain", "--resume", target, "--out", "runA"]) == 2
        assert capsys.readouterr().err == (
            f"simclr pretrain: error: --out runA is not the folder of the run --resume "
            f"names, which is {tmp_path / 'runB'} now (moved since it started?); resume it "
            f"there: drop --out, or give --out {tmp_path / 'runB'}\n")
    # --out naming where it is now (as typed, relative) is no change
    assert main(["pretrain", "--resume", "runB", "--out", "runB", "--print-config"]) == 0
    assert f"out: {tmp_path / 'runB'}" in capsys.readouterr().out


def test_a_resume_on_files_renamed_since_says_it_is_no_longer_exact(tmp_path, capsys):
    """The same number of image files under other names (one renamed): the run goes on
    (its plan holds), with a note that it no longer continues exactly."""
    from simclr.cli import main
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "photos", classes=2, per_class=8)
    run_dir = tmp_path / "run"
    _preempted_run(build_config(flags=tiny_flags(data, run_dir, str(tmp_path / "cache"))),
                   at_step=2)
    assert load_checkpoint(run_dir / "checkpoints/last.pt")["num_files"] == 16
    (data / "class_0" / "003.png").rename(data / "class_0" / "zzz.png")
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run_dir)]) == 0
    assert ("note: the data folder's files are not the ones the run started with (the same "
            "number, 16, under other names): it continues on them, but not exactly as it "
            "would have") in capsys.readouterr().out


def test_a_run_whose_data_folder_moved_resumes_from_its_new_place(tmp_path, capsys):
    """The saved --data is gone: refused before anything is read, naming the way on;
    --data NEW then continues the run there (held to the same number of images)."""
    import shutil

    from simclr.cli import main
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "photos", classes=2, per_class=8)
    run_dir = tmp_path / "run"
    _preempted_run(build_config(flags=tiny_flags(data, run_dir, str(tmp_path / "cache"))),
                   at_step=2)
    shutil.move(data, tmp_path / "moved")
    assert main(["pretrain", "--resume", str(run_dir)]) == 2
    assert capsys.readouterr().err == (
        f"simclr pretrain: error: --resume {run_dir}: the run's --data folder {data} is gone "
        f"(moved or deleted); put it back, or give its new place (simclr pretrain --resume "
        f"{run_dir} --data NEW_FOLDER)\n")
    # info's command, and an evaluation's note, say so too (`--resume RUN` alone failed)
    assert main(["info", str(run_dir)]) == 0
    assert (f"  continue with: simclr pretrain --resume {run_dir} --data NEW_FOLDER (its "
            f"--data folder {data} is gone)\n") in capsys.readouterr().out
    from simclr.info_text import resume_command

    assert resume_command(run_dir, "pretrain").endswith(f"(its --data folder {data} is gone)")
    fewer = make_image_folder(tmp_path / "fewer", classes=2, per_class=7)
    assert main(["pretrain", "--resume", str(run_dir), "--data", str(fewer)]) == 2
    assert "the data folder now holds 14 images; the run started with 16" in \
        capsys.readouterr().err
    assert not list((tmp_path / "cache").glob("fewer*"))  # told from its names: not decoded
    two = make_image_folder(tmp_path / "two", classes=1, per_class=2)  # below the batch: the
    assert main(["pretrain", "--resume", str(run_dir), "--data", str(two)]) == 2  # images
    assert "now holds 2 images; the run started with 16" in capsys.readouterr().err  # said
    more = make_image_folder(tmp_path / "more", classes=2, per_class=9)
    assert main(["pretrain", "--resume", str(run_dir), "--data", str(more)]) == 2
    assert "now holds 18 images; the run started with 16" in capsys.readouterr().err
    assert not list((tmp_path / "cache").glob("more*"))  # the run recorded its 16 files
    assert main(["pretrain", "--resume", str(run_dir), "--data", str(tmp_path / "moved")]) == 0
    assert "not the ones the run started with" not in capsys.readouterr().out  # same names
    assert load_checkpoint(run_dir / "checkpoints/last.pt")["step"] == 4
    assert config_from_dict(load_checkpoint(run_dir / "checkpoints/last.pt")["config"]
                            ).data.path == str(tmp_path / "moved")
    assert main(["pretrain", "--resume", str(run_dir), "--data", str(fewer)]) == 2  # present:
    assert "--resume continues the saved settings; cannot change --data" in \
        capsys.readouterr().err  # not a folder that moved
    # finished (step 4 of 4), its folder gone again: nothing to do, no folder asked for
    shutil.move(tmp_path / "moved", tmp_path / "gone")
    assert main(["pretrain", "--resume", str(run_dir)]) == 0
    assert "finished at step 4 already: nothing to do" in capsys.readouterr().out


def test_a_folder_holding_someone_elses_config_is_not_a_run_folder(tmp_path, image_folder,
                                                                    cache_dir):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.yaml").write_text("my: settings\n")
    with pytest.raises(SimCLRError, match="holds config.yaml, not written by a simclr run"):
        run(tmp_path, image_folder, cache_dir, "project", epochs=1)
    assert (tmp_path / "project" / "config.yaml").read_text() == "my: settings\n"


def test_a_folder_holding_another_commands_model_is_not_a_new_runs_folder(tmp_path):
    """An evaluation's folder (checkpoints/linear.pt): a new encoder beside it would be
    taken for the one its classifier was trained on. Refused, before anything is made."""
    from simclr.rundir import check_run_dir

    out, data = tmp_path / "eval", tmp_path / "data"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "linear.pt").write_bytes(b"a classifier")
    data.mkdir()
    cfg = build_config(flags={"data.path": str(data), "out": str(out)})
    with pytest.raises(SimCLRError, match=r"eval already holds checkpoints/linear.pt \(another "
                                          r"command's model\); choose another --out"):
        check_run_dir(cfg, resume=False)
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints", "linear.pt"]


def test_a_folder_holding_other_runs_is_not_a_new_runs_folder(tmp_path, image_folder,
                                                              cache_dir):
    """`--out .` in runs/: `simclr info` would read the other runs' evaluations (one
    folder down) as this run's, and runs/ would stop listing as runs."""
    runs = tmp_path / "runs"
    for name in ("a", "b", "c", "d"):
        (runs / name / "checkpoints").mkdir(parents=True)
    (runs / "b" / "config.yaml").write_text("x: 1\n")
    with pytest.raises(SimCLRError, match=r"^.*runs holds other runs \(a, b, c, \.\.\.\); "
                                          r"give this run a folder of its own "
                                          r"\(--out .*runs/NAME\)$"):
        run(tmp_path, image_folder, cache_dir, "runs", epochs=1)
    assert sorted(p.name for p in runs.iterdir()) == ["a", "b", "c", "d"]  # nothing written
    sweeps = tmp_path / "sweeps"  # runs two levels down, in a sweep's cells
    (sweeps / "t5" / "temperature=0.1").mkdir(parents=True)
    (sweeps / "t5" / "sweep.json").write_text("[]\n")
    with pytest.raises(SimCLRError, match=r"sweeps holds other runs \(t5\)"):
        run(tmp_path, image_folder, cache_dir, "sweeps", epochs=1)


def test_a_link_to_a_missing_folder_as_out_trains_into_its_target(tmp_path, image_folder,
                                                                  cache_dir):
    """`ln -s /scratch/runs/a runs/a` made before /scratch/runs/a: the run failed after
    decoding its data ('cannot create run directory ...: File exists'); its target is
    made instead, and removed again if the run writes nothing."""
    (tmp_path / "scratch").mkdir()
    (tmp_path / "a").symlink_to(tmp_path / "scratch" / "a")
    _, summary = run(tmp_path, image_folder, cache_dir, "a", epochs=1)
    assert summary["steps"] > 0 and (tmp_path / "scratch" / "a" / "checkpoints").is_dir()
    assert (tmp_path / "a").is_symlink()


def test_a_link_to_a_missing_folder_in_a_missing_folder_is_refused_first(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """Its target's folder is not made (a typo in the link would make a tree of them):
    one line, before the data are opened."""
    (tmp_path / "a").symlink_to(tmp_path / "nowhere" / "a")
    opened = []
    monkeypatch.setattr(train, "open_data", lambda *a: opened.append(a))
    with pytest.raises(SimCLRError, match=rf"^--out {re.escape(str(tmp_path / 'a'))} is a link "
                                          rf"to missing {re.escape(str(tmp_path / 'nowhere'))}"):
        run(tmp_path, image_folder, cache_dir, "a", epochs=1)
    assert opened == [] and not (tmp_path / "nowhere").exists()


def test_a_resumed_runs_log_drops_what_was_logged_after_its_checkpoint(tmp_path):
    """Killed at step 6 with its checkpoint at step 4: steps 5 and 6 are trained and
    logged again, so the earlier session's lines for them go (the start line stays)."""
    lines = [{"step": 0, "event": "start"}] + [{"step": k, "loss": 1.0 / k} for k in range(1, 7)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = MetricsLog(tmp_path, True, resumed_at=4)
    log.write({"step": 4, "event": "start"})
    log.write({"step": 5, "loss": 0.5})
    log.close()
    kept = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], "event" in x) for x in kept] == [
        (0, True), (1, False), (2, False), (3, False), (4, False), (4, True), (5, False)]


def test_a_run_resumed_at_its_end_takes_its_final_metrics_from_the_metrics_line(tmp_path):
    """Killed after its last step's kNN line, before summary.json: resumed at that
    step, its summary's means came from the last record there, the kNN line (no loss)."""
    lines = [{"step": 0, "event": "start"}, {"step": 6, "loss": 0.5, "pos_top1": 0.25},
             {"step": 6, "knn_top1": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = MetricsLog(tmp_path, True, resumed_at=6)
    log.close()
    assert log.resumed_record == {"step": 6, "loss": 0.5, "pos_top1": 0.25}
    assert [r.get("knn_top1") for r in log.resumed_records] == [None, 0.4]


def test_a_non_finite_metric_is_logged_as_null_which_every_json_reader_reads(tmp_path):
    """A skipped step's NaN loss was written as a bare NaN (not JSON: refused by
    JSON.parse and strict readers); summaries are written the same way."""
    from simclr.files import write_json

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text}"))

    log = MetricsLog(tmp_path, True)
    log.write({"step": 3, "loss": float("nan"), "pos_top1": 0.5, "lr": float("inf")})
    log.close()
    assert strict((tmp_path / "metrics.jsonl").read_text()) == {
        "step": 3, "loss": None, "pos_top1": 0.5, "lr": None}
    write_json(tmp_path / "s.json", {"knn": [float("-inf"), 1.0], "x": {"y": float("nan")}})
    assert strict((tmp_path / "s.json").read_text()) == {"knn": [None, 1.0], "x": {"y": None}}


def test_a_log_line_cut_by_a_kill_does_not_swallow_the_next_record(tmp_path):
    """Killed while writing a line (a full disk, a power loss): the resumed session's
    start record was appended to the cut line, which no JSON-lines reader can read."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "event": "start"}\nnot json\n'
                                            '{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    log = MetricsLog(tmp_path, True, resumed_at=1)
    log.write({"step": 1, "event": "start"})
    log.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines == ['{"step": 0, "event": "start"}', "not json", '{"step": 1, "loss": 2.0}',
                     '{"step": 1, "event": "start"}']


def _closed(log: MetricsLog) -> MetricsLog:
    log.close()
    return log


def test_a_resumed_logs_records_are_those_of_its_step_and_later_sessions_start_lines_stay(
        tmp_path):
    """Resumed at step 4 of a run whose later session (resumed at 5) was killed at 6:
    the records of steps 5 and 6 go, that session's start line stays, and the records
    taken as the step resumed from are step 4's alone (not steps 1-3's, nor a start
    line's), which say whether its kNN monitor was measured."""
    lines = [{"step": 0, "event": "start"}, {"step": 2, "loss": 2.0}, {"step": 4, "loss": 1.0},
             {"step": 4, "knn_top1": 0.5}, {"step": 5, "event": "start"},
             {"step": 6, "loss": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = MetricsLog(tmp_path, True, resumed_at=4)
    log.close()
    assert log.resumed_records == [{"step": 4, "loss": 1.0}, {"step": 4, "knn_top1": 0.5}]
    assert [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] \
        == lines[:5]
    # Its metrics line gone (a damaged line), the last record of that step stands for it
    (tmp_path / "metrics.jsonl").write_text('{"step": 4, "knn_top1": 0.5}\n')
    assert _closed(MetricsLog(tmp_path, True, resumed_at=4)).resumed_record == {
        "step": 4, "knn_top1": 0.5}


def test_a_whole_last_record_without_its_newline_is_kept_on_a_line_of_its_own(tmp_path):
    """Killed after a record's text but before its newline: the record is whole and
    kept, and the resumed session's first record starts a line of its own after it (it
    was appended to that line, which no JSON-lines reader can read)."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}')
    log = MetricsLog(tmp_path, True, resumed_at=2)
    log.write({"step": 2, "event": "start"})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == [
        '{"step": 1, "loss": 2.0}', '{"step": 2, "loss": 1.0}', '{"step": 2, "event": "start"}']


def test_bytes_that_are_no_utf8_in_the_log_do_not_stop_a_resume(tmp_path):
    """A damaged line of undecodable bytes was a UnicodeDecodeError traceback at
    --resume (simclr info read the folder): kept as it is, as unreadable lines are."""
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 2.0}\n\xff\xfe\n'
                                             b'{"step": 2, "loss": 1.0}\n')
    log = MetricsLog(tmp_path, True, resumed_at=1)
    log.write({"step": 1, "event": "start"})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_bytes() == (
        b'{"step": 1, "loss": 2.0}\n\xff\xfe\n{"step": 1, "event": "start"}\n')


def test_a_log_line_nested_too_deep_is_a_damaged_line_not_a_traceback(tmp_path):
    """A metrics.jsonl line of `[[[[...]]]]` nested past Python's recursion limit (a
    received run's) was a RecursionError's traceback at --resume and at a new run into
    its folder: it is an unreadable line, kept as it is, and a first line of it is no
    simclr run's."""
    from simclr.rundir import check_run_dir

    deep = "[" * 100000 + "]" * 100000 + "\n"
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n' + deep
                                            + '{"step": 2, "loss": 1.0}\n')
    log = MetricsLog(tmp_path, True, resumed_at=1)
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n' + deep
    other, data = tmp_path / "runs/other", tmp_path / "data"
    other.mkdir(parents=True)
    data.mkdir()
    (other / "metrics.jsonl").write_text(deep)
    cfg = build_config(flags={"data.path": str(data), "out": str(other)})
    with pytest.raises(SimCLRError, match="holds metrics.jsonl, not written by a simclr run"):
        check_run_dir(cfg, resume=False)


def test_a_full_disk_under_the_log_is_one_line_naming_it(tmp_path, caplog):
    """No space for a metrics line (or TensorBoard's events, whose writer thread hands
    its error to the next call): a SimCLRError naming the file, so the run ends in one
    line (it was an OSError traceback); closing says nothing more."""
    import errno

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    log = MetricsLog(tmp_path, True)
    log.file.close()
    log.file = FullDisk()
    with pytest.raises(SimCLRError, match=rf"could not write {re.escape(str(tmp_path))}"
                                          r"/metrics.jsonl: No space left on device$"):
        log.write({"step": 1, "loss": 2.0})
    log.close()
    assert "could not finish" not in caplog.text
    # A close that fails by itself is a warning, not an error over the run's own end
    (tmp_path / "b").mkdir()
    log = MetricsLog(tmp_path / "b", True)
    log.file.close()
    log.file = FullDisk()
    log.close()
    assert "could not finish writing metrics.jsonl: No space left on device" in caplog.text


@pytest.mark.parametrize(("code", "reason"), [(errno.ENOSPC, "No space left on device"),
                                               (errno.EFBIG, "File too large")])
def test_a_resume_that_cannot_rewrite_its_log_is_one_line_naming_it(tmp_path, monkeypatch,
                                                                  code, reason):
    """A --resume on a full disk (a quota, a file-size limit) ended in an OSError
    traceback from dropping the log's later lines; the log is left as it was."""
    from pathlib import Path

    from simclr import rundir

    before = '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n'
    (tmp_path / "metrics.jsonl").write_text(before)

    def full(self, *args, **kwargs):
        raise OSError(code, reason)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "write_text", full)
        with pytest.raises(SimCLRError) as info:
            MetricsLog(tmp_path, True, resumed_at=1)
    assert str(info.value) == f"could not write {tmp_path / 'metrics.jsonl'}: {reason}"
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # (no temporary)

    def refused(path, *args, **kwargs):  # (a read-only log file, as root could not make)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rundir, "open", refused, raising=False)
    with pytest.raises(SimCLRError, match=r"^could not write .*metrics.jsonl: Permission "
                                          r"denied$"):
        MetricsLog(tmp_path, True)


def test_a_resume_refused_by_its_log_leaves_config_yaml_as_it_was(tmp_path, image_folder,
                                                                   cache_dir, monkeypatch):
    """A --resume whose metrics log could not be opened (a read-only file) had already
    rewritten config.yaml: its provenance named a start that never trained a step."""
    from simclr import rundir

    run_dir = tmp_path / "run"
    cfg = build_config(flags=tiny_flags(image_folder, run_dir, cache_dir))
    _preempted_run(cfg)
    before = (run_dir / "config.yaml").read_bytes()

    def refused(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rundir, "open", refused, raising=False)
    with pytest.raises(SimCLRError, match="could not write .*metrics.jsonl: Permission denied"):
        train.pretrain(cfg, resume=True)
    assert (run_dir / "config.yaml").read_bytes() == before


def test_a_tb_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path, monkeypatch,
                                                                  capfd):
    """A read-only tb/ at --resume: the one-line error showed the path as b'...' and
    the writer thread's traceback came with it."""
    import threading

    from tensorboard.summary.writer.record_writer import RecordWriter

    def refused(self, data):  # (in TensorBoard's writer thread, as a read-only folder)
        raise PermissionError(errno.EACCES, "Permission denied",
                              str(tmp_path / "tb" / "events").encode())

    monkeypatch.setattr(RecordWriter, "write", refused)
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)  # (as a new process)
    with pytest.raises(SimCLRError) as info:
        MetricsLog(tmp_path, True, resumed_at=3)
    assert str(info.value) == f"could not write {tmp_path / 'tb'}: Permission denied"
    time.sleep(0.2)  # (the thread ends after handing its error over)
    assert "Traceback" not in capfd.readouterr().err


def test_a_second_ctrl_c_names_the_command_that_continues(tmp_path, image_folder, cache_dir,
                                                          capsys, monkeypatch):
    """Ctrl-C twice ends the step at once: it said 'interrupted' alone, though the last
    checkpoint stays and --resume continues from it."""
    from simclr.cli import main

    run_dir = tmp_path / "run"
    _preempted_run(build_config(flags=tiny_flags(image_folder, run_dir, cache_dir)))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run_session", interrupted)
    assert main(["pretrain", "--resume", str(run_dir)]) == 130
    assert capsys.readouterr().err == (
        f"simclr pretrain: interrupted; its last checkpoint stays: continue with `simclr "
        f"pretrain --resume {run_dir}`\n")
    # A sweep's cell: the sweep has no --resume; its own command goes on
    from simclr.exit_status import _continue_after

    exc = KeyboardInterrupt()
    exc.run_dir = run_dir
    assert _continue_after(exc, "simclr sweep") == (
        f"; {run_dir}'s last checkpoint stays: the same command continues it")
    assert main(["pretrain", "--out", str(tmp_path / "fresh"), "--data", str(image_folder),
                 "--batch-size", "8", "--image-size", "16", "--cache-dir", cache_dir]) == 130
    assert capsys.readouterr().err.endswith("interrupted; no checkpoint was saved\n")


def test_each_metrics_line_is_on_disk_once_written(tmp_path):
    """A line is flushed as it is written: `simclr info`, `tail -f` or a killed run's
    resume read the log of a run still training (or killed outright) to its last line."""
    log = MetricsLog(tmp_path, True)
    log.write({"step": 1, "loss": 2.5})
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5}
    log.close()


def test_a_resumed_runs_tensorboard_keeps_the_step_it_continues_from(tmp_path, monkeypatch):
    """TensorBoard drops the events after the checkpoint's step, as metrics.jsonl does,
    and keeps those of that step (not trained nor logged again)."""
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, True)
    for step in range(1, 7):
        log.write({"step": step, "loss": float(step)})
    log.close()
    # The resumed session's event file is named a minute later, as a later process's is:
    # within one second, the files of one process sort by its writer count, as text
    # ('10' before '9'), and TensorBoard reads them in that order
    later = time.time() + 60
    monkeypatch.setattr(time, "time", lambda: later)
    log = MetricsLog(tmp_path, True, resumed_at=4)
    log.write({"step": 5, "loss": 50.0})
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0)]
    # The step is each scalar's step, not a scalar of its own (a "step" chart of y = x)
    assert events.Tags()["scalars"] == ["loss"]


def test_a_reused_summary_drops_the_signal_that_stopped_its_last_session():
    """A finished run's summary, reused by a session that trains nothing, does not say
    the signal that ended its last session (its caller would stop again for nothing)."""
    from simclr.rundir import reused_summary

    summary = {"step": 9, "signal": "SIGTERM"}
    assert reused_summary(summary) == {"step": 9, "signal": None}
    assert summary["signal"] == "SIGTERM"  # (the saved one left as it was)


def test_a_new_run_inside_another_runs_folder_is_refused(tmp_path, image_folder, cache_dir):
    """`--out RUN/checkpoints` made RUN/checkpoints/checkpoints/last.pt, which
    `--resume RUN/checkpoints` and `--checkpoint RUN/checkpoints` then took for RUN's
    own: the nested run's encoder evaluated as RUN's, without a word."""
    from simclr.supervised import check_new_run

    run(tmp_path, image_folder, cache_dir, "a", max_steps=2)
    before = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*"))
    for inside in ("a/checkpoints", "a/tb", "a/sub/new"):
        with pytest.raises(SimCLRError, match=r"^--out .*a/\S+ lies inside the run .*a: .*; "
                                              r"give this run a folder of its own"):
            run(tmp_path, image_folder, cache_dir, inside, max_steps=2)
        with pytest.raises(SimCLRError, match=r"lies inside the run .*a: "):
            check_new_run(tmp_path / inside)  # a supervised run's folder as well
    after = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*"))
    assert after == before  # nothing written there
    # beside it, and the run itself continued, as before
    assert run(tmp_path, image_folder, cache_dir, "b", max_steps=2)[1]["steps"] == 2
    # a project's own config.yaml and checkpoints/ above the run make no run of simclr's
    (tmp_path / "proj" / "checkpoints").mkdir(parents=True)
    (tmp_path / "proj" / "config.yaml").write_text("model: bert\n")
    assert run(tmp_path, image_folder, cache_dir, "proj/runs/c", max_steps=2)[1]["steps"] == 2
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "a", cache_dir, max_steps=2))
    assert train.pretrain(cfg, resume=True)["steps"] == 2


def test_a_run_killed_before_its_first_checkpoint_is_found_above_a_folder(tmp_path):
    """run_above: config.yaml, an empty checkpoints/ and simclr's logs (a run killed
    before its first checkpoint) are a run; the same without the logs, a project's."""
    from simclr.rundir import run_above

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "sub").mkdir()
    assert run_above(run / "sub") is None  # a project's config.yaml and checkpoints/
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "event": "start"}) + "\n")
    assert run_above(run / "sub") == run.resolve()


@pytest.mark.parametrize("saved", ["last.pt", "ckpt-00000004.pt"])
def test_a_run_is_found_above_a_folder_by_its_checkpoint_files_alone(tmp_path, saved):
    """run_above: config.yaml beside a checkpoints/ holding simclr's last.pt or a periodic
    checkpoint is a run, its logs gone or never read (a config.yaml of an earlier simclr,
    without provenance); another file there (a project's model.pt) makes none."""
    from simclr.rundir import run_above

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "checkpoints" / "model.pt").write_bytes(b"a project's")
    assert run_above(run / "checkpoints" / "sub") is None
    (run / "checkpoints" / saved).write_bytes(b"a checkpoint")
    assert run_above(run / "checkpoints" / "sub") == run.resolve()
    (run / "config.yaml").unlink()  # (checkpoint files alone, with no config.yaml: none)
    assert run_above(run / "checkpoints" / "sub") is None


@pytest.mark.parametrize("first", ['{"event": "epoch_end", "loss": 1.0}', '{"step": 3}', "[]", ""])
def test_another_tools_metrics_log_is_not_a_simclr_runs(tmp_path, first):
    """A metrics.jsonl whose first line is not simclr's start record (another tool's
    log, JSON lines of its own events) is refused as a new run's folder: the run's log
    would be set aside as if simclr had written it. Nor is a lone newline an empty log
    (which a new run deletes)."""
    from simclr.rundir import check_run_dir

    out, data = tmp_path / "project", tmp_path / "data"
    out.mkdir()
    data.mkdir()
    (out / "metrics.jsonl").write_text(first + "\n")
    cfg = build_config(flags={"data.path": str(data), "out": str(out)})
    with pytest.raises(SimCLRError, match="holds metrics.jsonl, not written by a simclr run"):
        check_run_dir(cfg, resume=False)
    assert (out / "metrics.jsonl").read_text() == first + "\n"


@pytest.mark.parametrize("log", [None, ""])
def test_a_run_killed_between_its_config_and_its_first_log_line_does_not_block_its_folder(
        tmp_path, log):
    """Killed after writing config.yaml (its provenance: simclr's) and before its first
    log line: the folder is a simclr run's, not refused as someone else's files (a new
    run there sets those logs aside); a config.yaml without provenance is refused."""
    from simclr.rundir import check_run_dir

    out, data = tmp_path / "run", tmp_path / "data"
    out.mkdir()
    data.mkdir()
    if log is not None:
        (out / "metrics.jsonl").write_text(log)
    (out / "config.yaml").write_text("seed: 0\nprovenance:\n  argv: [simclr, pretrain]\n")
    cfg = build_config(flags={"data.path": str(data), "out": str(out)})
    assert check_run_dir(cfg, resume=False).path == out
    (out / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(SimCLRError, match="not written by a simclr run"):
        check_run_dir(cfg, resume=False)


@pytest.mark.parametrize("flag", ["knn_train", "knn_test"])
def test_a_run_folder_inside_a_knn_monitor_folder_is_refused(tmp_path, flag):
    """The kNN monitor's folders are read as labelled images: a run folder inside one
    would become a class of it (its checkpoints and logs read as images)."""
    from simclr.rundir import check_run_dir

    data, knn, other = tmp_path / "data", tmp_path / "labelled", tmp_path / "other"
    for folder in (data, knn, other):
        folder.mkdir()
    pair = {"knn_train": str(other), "knn_test": str(other), flag: str(knn)}
    cfg = build_config(flags={"data.path": str(data), "out": str(knn / "run"), **pair})
    given = "--" + flag.replace("_", "-")
    with pytest.raises(SimCLRError, match=f"lies inside the {given} folder"):
        check_run_dir(cfg, resume=False)
    assert not (knn / "run").exists()


def test_only_tensorboards_write_errors_are_left_unprinted_in_its_threads(monkeypatch):
    """The hook that quiets TensorBoard's writer thread on a full disk (its error is said
    in one line by the next write) quiets that alone: another error in that thread (a
    bug), or an OSError in any other thread, is printed as before."""
    import threading
    from types import SimpleNamespace

    from simclr.rundir import _quiet_event_writer_threads

    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    _quiet_event_writer_threads()
    writer = type("EventFileWriter", (threading.Thread,), {"__module__": "tensorboard.writer"})
    full, bug, other = OSError(28, "No space left on device"), ValueError("bug"), OSError(5, "x")
    for thread, exc in ((writer(), full), (writer(), bug), (threading.Thread(), other)):
        threading.excepthook(SimpleNamespace(exc_type=type(exc), exc_value=exc,
                                             exc_traceback=None, thread=thread))
    assert seen == [bug, other]


def test_a_run_written_into_the_folder_since_it_was_checked_is_refused_once_held(tmp_path):
    """Another process started a run into the same --out between check_run_dir and
    make_run_dir: once this one holds the folder, it is refused (and lets go of the
    folder), never trained over that run's checkpoints."""
    from simclr.files import folder_holder
    from simclr.rundir import make_run_dir

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"another run's")
    with pytest.raises(SimCLRError, match="already holds a run, written by another simclr "
                                          "process since this one started"):
        make_run_dir(run_dir, resume=False)
    assert folder_holder(run_dir) is None
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == b"another run's"
