"""``simclr info``'s facts of a run from its own files (simclr.run_facts): its state
(finished, preempted, running, stopped), its log, its config.yaml read as far as it
reads, its starts, and its evaluations' results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from simclr import train
from simclr.checkpoint_read import load_checkpoint
from simclr.cli import main
from simclr.files import lock_folder
from simclr.resume import load_resume_config
from simclr.settings import build_config
from tests.conftest import make_image_folder, tiny_flags
from tests.test_info import _info, evaluated_run_in

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-step pretraining with a kNN evaluation in its knn/ sub-folder."""
    return evaluated_run_in(tmp_path_factory.mktemp("info"))


def test_a_run_being_trained_is_running(evaluated_run, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    (run / "summary.json").unlink()  # (as before the run's end)
    held = lock_folder(run)  # as a training holds its folder
    try:
        assert ", running at step 2" in _info(capsys, run).splitlines()[0]
    finally:
        held.close()
    assert ", stopped at step 2" in _info(capsys, run).splitlines()[0]
    # A command that has saved nothing yet (a fine-tuning's first 500 steps): running,
    # not "not a simclr run folder"
    starting = tmp_path / "runs" / "starting"  # (not beside the shared run: its own)
    (starting / "checkpoints").mkdir(parents=True)  # (as a fine-tuning --overwrite leaves)
    (starting / "labeled_subset.txt").write_text("a.png\n")
    held = lock_folder(starting)
    try:
        out = _info(capsys, starting)
        listed = _info(capsys, starting.parent)  # among runs: a line, not a KeyError
    finally:
        held.close()
    assert out.startswith(f"{starting}: a simclr command is running in it (pid "), out
    assert out.rstrip().endswith("; nothing saved yet")
    assert "\n  starting: a simclr command is running in it (pid " in listed, listed


def test_a_finished_run_whose_folder_an_evaluation_writes_into_stays_finished(
        evaluated_run, capsys, tmp_path):
    """linear-eval / finetune --out RUN hold the run's folder while they work: the run is
    still finished (or diverged), with a note of the command at work in its folder."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    held = lock_folder(run)  # as a fine-tuning into the run's folder holds it
    try:
        head = _info(capsys, run).splitlines()[0]
        listed = _info(capsys, tmp_path)
        facts = json.loads(_info(capsys, run, "--json"))
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "status": "diverged",
                                                      "reason": "loss nan"}))
        diverged = _info(capsys, run).splitlines()[0]
    finally:
        held.close()
    assert head.startswith(f"{run}: SimCLR pretraining, finished at step 2 of 2 ("), head
    assert f"; a simclr command (an evaluation) is running in its folder now (pid {os.getpid()}" \
        in head
    assert "finished at step 2 of 2" in listed and "is running in its folder now" in listed
    assert facts["state"]["status"] == "finished" and facts["state"]["busy"].startswith("pid ")
    assert ", diverged at step 2 of 2 (loss nan)" in diverged and "running in its" in diverged


def test_a_supervised_run_being_trained_says_its_last_checkpoints_step_of_all(
        tmp_path, folders, capsys):
    """A supervised run logs no steps (no metrics.jsonl): while it trains, the step shown
    is its last checkpoint's, said so, of the steps planned (it said 'running at step
    2', of no total)."""
    from simclr.supervised import run_supervised

    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16, "device": "cpu", "precision": "fp32",
                              "data.workers": 0, "batch_size": 8, "epochs": 3,
                              "checkpoint_every": 2, "out": str(tmp_path / "sup")})
    seen: list[str] = []

    def look(step, _stop):
        if step == 3:  # after the checkpoint of step 2
            seen.append(_info(capsys, tmp_path / "sup").splitlines()[0])

    run_supervised(cfg, *folders, tmp_path / "sup", verbose=False, on_step=look)
    assert seen[0] == f"{tmp_path / 'sup'}: supervised training, running; last checkpoint " \
                      "at step 2 of 9", seen


def test_a_supervised_run_resumed_past_its_preemption_and_killed_is_stopped(tmp_path,
                                                                             folders, capsys):
    """Preempted at step 1 (its last.pt says so), resumed, and killed after the periodic
    checkpoint of step 2: stopped at step 2, not preempted (last.pt is the older stop)."""
    from simclr.supervised import resume_config, run_supervised
    from tests.conftest import stop_at
    from tests.test_supervised import resumable

    run, data = tmp_path / "run", {"train": "x", "test": None}
    assert run_supervised(resumable(tmp_path, "run"), *folders, data=data, verbose=False,
                          on_step=stop_at(1))["status"] == "preempted"
    assert _info(capsys, run).startswith(f"{run}: supervised training, preempted at step 1 ")

    def killed(step, _stop):
        if step == 3:
            raise RuntimeError("killed")

    cfg, ckpt = resume_config(run, {})
    with pytest.raises(RuntimeError):
        run_supervised(cfg, *folders, data=data, resume=ckpt, verbose=False, on_step=killed)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1  # (as it was)
    state = json.loads(_info(capsys, run, "--json"))["state"]
    assert (state["status"], state["step"]) == ("stopped", 2)
    assert f"  continue with: simclr supervised --resume {run}\n" in _info(capsys, run)


def test_a_run_whose_summary_cannot_be_read_is_not_called_stopped(evaluated_run, tmp_path,
                                                                   capsys, monkeypatch):
    """It read as stopped, and `continue with: --resume` was offered for a finished run."""
    import shutil

    run = tmp_path / "pre"
    shutil.copytree(evaluated_run[0], run)
    (run / "summary.json").write_text('{"status": "fini')
    out = _info(capsys, run)
    assert ", of unknown outcome at step 2 of 2 (summary.json: not valid JSON)" in out
    assert "continue with" not in out
    (run / "summary.json").write_text("[1, 2]")  # JSON, but no summary (it read as stopped)
    out = _info(capsys, run)
    assert ", of unknown outcome at step 2 of 2 (summary.json: not an object)" in out
    assert "continue with" not in out
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "summary.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert "(summary.json: cannot read it (Permission denied))" in _info(capsys, run)


@pytest.mark.parametrize("damaged", [
    '{"step": "x", "loss": 1.5}', '{"step": true, "loss": 1.5}', '{"step": 3, "loss": "oops"}',
    '{"step": 3, "loss": 1.5, "epoch": "x"}', '{"step": 3, "loss": 1.5, "total_steps": "6"}',
    '{"step": 3, "loss": 1.5, "knn_top1": "high"}'])
def test_wrongly_typed_values_in_the_log_are_skipped_as_unparsable_lines(
        evaluated_run, tmp_path, capsys, damaged):
    """A hand-edited or damaged metrics.jsonl: a line whose step, loss, epoch... is no
    number was compared or formatted as one (a traceback), in a folder of runs too."""
    import shutil

    run = tmp_path / "runs" / "bad"
    shutil.copytree(evaluated_run[0], run)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n' + damaged + "\n")
    # (its last.pt's step 2, past the last line read: the run's)
    head = "SimCLR pretraining, finished at step 2 of 2; last loss 2 (step 1)"
    assert _info(capsys, run).splitlines()[0] == f"{run}: {head}"
    assert _info(capsys, run.parent).splitlines()[1].startswith(f"  bad: {head}; kNN top-1 ")
    state = json.loads(_info(capsys, run, "--json"))["state"]
    assert (state["logged_step"], state["loss"], state.get("monitor_top1")) == (1, 2.0, None)


_DAMAGED_CONFIGS = [  # (what is written over the config's section or whole; the line)
    ("model", 3, "section 'model' must be a mapping of its settings, got 3"),
    ("optim", 5, "section 'optim' must be a mapping of its settings, got 5"),
    ("data", [1], "section 'data' must be a mapping of its settings, got [1]"),
    ("model", {"arch": "resnet18", "width": "x"}, "model.width: expected a number, got 'x'"),
    ("epochs", True, "epochs: expected a number, got True"),
    ("provenance", {"argv": 3, "earlier": [1]},  # (a record: no "started by" line)
     "provenance: a start's argv is not a command line, so the command that started "
     "the run is unknown"),
    ("provenance", {"argv": ["simclr", "pretrain"], "earlier": [1]}, None),
    (None, [1, 2], "a list, not a mapping of settings"),
    (None, "text", "a str, not a mapping of settings"),
    (None, None, "empty")]


def test_a_hand_edited_config_is_read_as_a_run_reads_it(evaluated_run, tmp_path, capsys):
    """info read config.yaml as YAML 1.1 (`seed: 010` octal 8) where a run, reading it
    back as a --config, takes YAML 1.2's 10."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    text = (run / "config.yaml").read_text()
    assert "\nseed: 0\n" in text
    (run / "config.yaml").write_text(text.replace("\nseed: 0\n", "\nseed: 010\n"))
    assert json.loads(_info(capsys, run, "--json"))["recipe"]["seed"] == 10


@pytest.mark.parametrize("key, value, problem", _DAMAGED_CONFIGS, ids=[
    "model", "optim", "data", "width", "epochs", "provenance", "earlier", "list", "text",
    "empty"])
def test_a_damaged_config_is_shown_as_far_as_it_reads_and_said_damaged(
        evaluated_run, tmp_path, capsys, key, value, problem):
    """A config.yaml with a section that is no mapping (`model: 3`), a setting of the
    wrong type, or no mapping at all: a traceback (AttributeError in encoder_facts),
    or silently shown without its settings. Now the rest of it is shown, and a line
    says what is damaged."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    if key is not None:
        saved[key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(saved if key is not None else value)
                                     if value is not None else "")
    lines = _info(capsys, run).splitlines()
    assert lines[0].startswith(f"{run}: SimCLR pretraining, finished at step 2 of 2 (")
    damaged = [x for x in lines if x.startswith("  config.yaml is damaged")]
    assert damaged == ([f"  config.yaml is damaged, what it could not read is left out: "
                        f"{problem}"] if problem else [])
    if key not in (None, "optim"):  # the other sections are shown
        assert "  recipe: batch 8, LARS lr 0.3 (linear scaling), nt_xent tau 0.1, " \
            "fp32, seed 0, " in "\n".join(lines)
    assert (f"  data: {evaluated_run[1]}" in lines) == (key not in (None, "data")), lines
    facts = json.loads(_info(capsys, run, "--json"))
    assert facts.get("config_damaged") == ([problem] if problem else None)
    assert f"  {run.name}: SimCLR pretraining, finished" in _info(capsys, tmp_path)
    (run / "summary.json").unlink()  # config.yaml alone: not a run folder, in one line
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "knn")
    (run / "metrics.jsonl").unlink()
    if key is None:
        assert main(["info", str(run)]) == 2
        assert capsys.readouterr().err == (f"simclr info: error: {run}: not a simclr run "
                                           f"folder (its config.yaml is {problem})\n")
    else:  # a run before its first checkpoint: described from its config.yaml
        assert _info(capsys, run).startswith(f"{run}: SimCLR pretraining, stopped")


def test_a_run_preempted_inside_a_log_window_shows_its_stops_epoch(tmp_path, capsys):
    """A stop logs no window line of its own: the run's epochs and time are its
    summary's (step 4), the last loss the last window's (step 3)."""
    flags = tiny_flags(make_image_folder(tmp_path / "images"), tmp_path / "cut",
                       str(tmp_path / "cache"), checkpoint_every=0, log_every=3)

    def preempt(step, stop):
        if step == 4:
            stop.requested = "SIGTERM"

    assert train.pretrain(build_config(flags=flags), on_step=preempt)["status"] == "preempted"
    head = _info(capsys, tmp_path / "cut").splitlines()[0]
    assert "preempted at step 4 of 6 (1.33 epochs, " in head and "(step 3)" in head, head


def test_a_preempted_runs_step_is_its_summarys_where_the_log_does_not_show_it(tmp_path,
                                                                                capsys):
    """A run folder kept without its metrics.jsonl, whose last.pt (step 2) is unreadable
    since: the step it stopped at is its summary's (2), not the earlier checkpoint's (1)."""
    run = tmp_path / "cut"
    flags = tiny_flags(make_image_folder(tmp_path / "images"), run, str(tmp_path / "cache"),
                       checkpoint_every=0)

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    train.pretrain(build_config(flags=flags), on_step=preempt)
    checkpoints = run / "checkpoints"
    (checkpoints / "ckpt-00000001.pt").write_bytes((checkpoints / "last.pt").read_bytes())
    assert train.pretrain(load_resume_config(run, {}), resume=True,
                          on_step=preempt)["steps"] == 2
    (checkpoints / "last.pt").write_bytes(b"cut short")
    (run / "metrics.jsonl").unlink()
    state = json.loads(_info(capsys, run, "--json"))["state"]
    assert (state["status"], state["step"], state["saved_step"]) == ("preempted", 2, 1)
    head = _info(capsys, run).splitlines()[0]
    assert ", preempted at step 2" in head and head.endswith("; last checkpoint at step 1")


def test_a_resumed_run_is_started_by_its_first_command_and_counts_its_starts(
        tmp_path, capsys, monkeypatch):
    """Preempted twice, then resumed to its end: three starts; the command shown is the
    first one (the resumes' only name the folder)."""
    run = tmp_path / "run"
    flags = tiny_flags(make_image_folder(tmp_path / "images"), run, str(tmp_path / "cache"))

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    monkeypatch.setattr("sys.argv", ["simclr", "pretrain", "--out", "first-start"])
    train.pretrain(build_config(flags=flags), on_step=preempt)
    monkeypatch.setattr("sys.argv", ["simclr", "pretrain", "--resume", "again"])
    train.pretrain(load_resume_config(run, {}), resume=True, on_step=preempt)
    train.pretrain(load_resume_config(run, {}), resume=True)
    started = json.loads(_info(capsys, run, "--json"))["provenance"]
    assert (started["argv"], started["starts"]) == (
        ["simclr", "pretrain", "--out", "first-start"], 3)
    line = next(x for x in _info(capsys, run).splitlines() if x.startswith("  started by: "))
    assert line.startswith("  started by: simclr pretrain --out first-start (simclr ")
    assert line.endswith("; 3 starts")


def test_a_damaged_earlier_start_is_not_counted_as_the_run_counts_its_sessions(
        evaluated_run, tmp_path, capsys):
    """A hand-damaged entry among config.yaml's earlier starts is no start to the run
    (resume.session_number: its summary.json's session), but info counted it: '3
    starts' of a run whose summary said session 2."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    first = {k: v for k, v in saved["provenance"].items() if k != "earlier"}
    saved["provenance"]["earlier"] = [first, "damaged by hand"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "session": 2}))
    facts = json.loads(_info(capsys, run, "--json"))
    assert (facts["provenance"]["starts"], facts["state"]["status"]) == (2, "finished")
    line = next(x for x in _info(capsys, run).splitlines() if x.startswith("  started by: "))
    assert line.endswith("; 2 starts"), line


def test_a_received_run_whose_command_is_an_alias_bomb_is_said_damaged(
        evaluated_run, tmp_path, capsys):
    """A run folder from elsewhere whose config.yaml's argv nests lists of YAML aliases:
    a 2 KB file took info 42 s and 4.8 GB to print. Its command is damaged: not shown,
    said so in one line, the rest of the run described."""
    import shutil

    from tests.test_resume import _alias_bomb

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["provenance"]["argv"] = "BOMB"
    (run / "config.yaml").write_text(
        yaml.safe_dump(saved).replace("argv: BOMB", f"argv: {_alias_bomb(5)}"))
    out = _info(capsys, run)
    assert len(out) < 4000 and "started by" not in out
    assert "  config.yaml is damaged, what it could not read is left out: provenance: " \
        "a start's argv is not a command line" in out
    assert json.loads(_info(capsys, run, "--json"))["provenance"]["argv"] is None


def test_a_run_stopped_during_its_last_step_says_its_final_knn_is_missing(tmp_path, capsys):
    """Finished, but the final kNN skipped (a kill may follow the signal): info said only
    "finished", and nothing told that `--resume` measures it; once measured, it is shown."""
    data = make_image_folder(tmp_path / "images")
    flags = tiny_flags(data, tmp_path / "run", str(tmp_path / "cache"), knn_train=str(data),
                       knn_test=str(data), checkpoint_every=0)

    def stop_at_the_last(step, stop):
        if step == 6:
            stop.requested = "SIGTERM"

    train.pretrain(build_config(flags=flags), on_step=stop_at_the_last)
    text = _info(capsys, tmp_path / "run")
    assert "finished at step 6 of 6" in text.splitlines()[0]
    assert (f"  final kNN: not measured (stopped by SIGTERM during the last step); measure "
            f"it with: simclr pretrain --resume {tmp_path / 'run'}\n") in text
    assert json.loads(_info(capsys, tmp_path / "run", "--json"))["state"][
        "final_knn_skipped"] == "SIGTERM"
    top1 = train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True)["knn_top1"]
    text = _info(capsys, tmp_path / "run")
    assert "final kNN" not in text and f"kNN monitor: top-1 {100 * top1:.2f}% at step 6" in text


def test_a_run_resumed_and_killed_before_its_first_step_logged_is_stopped(tmp_path, capsys):
    """Preempted at step 1 (its summary), resumed, and killed before any new checkpoint
    or log line: neither is past the summary's step, which is an earlier session's all
    the same (its start count): stopped, not "preempted at step 1". A summary.json
    written before it recorded its session reads as before."""
    run = tmp_path / "run"
    flags = tiny_flags(make_image_folder(tmp_path / "images"), run, str(tmp_path / "cache"),
                       checkpoint_every=0, log_every=10)

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    def killed(step, stop):
        raise RuntimeError("killed")

    train.pretrain(build_config(flags=flags), on_step=preempt)
    assert json.loads((run / "summary.json").read_text())["session"] == 1
    with pytest.raises(RuntimeError):
        train.pretrain(load_resume_config(run, {}), resume=True, on_step=killed)
    out = _info(capsys, run)
    assert out.startswith(f"{run}: SimCLR pretraining, stopped at step 1 of 6"), out
    assert f"  continue with: simclr pretrain --resume {run}\n" in out
    summary = json.loads((run / "summary.json").read_text())
    del summary["session"]  # (an earlier simclr's)
    (run / "summary.json").write_text(json.dumps(summary))
    assert _info(capsys, run).startswith(f"{run}: SimCLR pretraining, preempted at step 1 ")


def test_a_supervised_run_resumed_and_killed_before_a_checkpoint_is_stopped(tmp_path,
                                                                           folders, capsys):
    """Preempted at step 1 (its last.pt says so), resumed, and killed before its next
    checkpoint: last.pt's stop is an earlier session's, so the run is stopped."""
    from simclr.supervised import resume_config, run_supervised
    from tests.conftest import stop_at
    from tests.test_supervised import resumable

    run, data = tmp_path / "run", {"train": "x", "test": None}
    run_supervised(resumable(tmp_path, "run"), *folders, data=data, verbose=False,
                   on_step=stop_at(1))

    def killed(step, _stop):
        raise RuntimeError("killed")

    cfg, ckpt = resume_config(run, {})
    with pytest.raises(RuntimeError):
        run_supervised(cfg, *folders, data=data, resume=ckpt, verbose=False, on_step=killed)
    out = _info(capsys, run)
    assert out.startswith(f"{run}: supervised training, stopped at step 1 "), out
    assert f"  continue with: simclr supervised --resume {run}\n" in out


def test_a_summary_older_than_the_log_is_not_the_runs_status(tmp_path, capsys):
    """Preempted at step 1, then resumed and killed after step 2 was logged (no summary of
    its own): stopped there, not preempted."""
    flags = tiny_flags(make_image_folder(tmp_path / "images"), tmp_path / "run",
                       str(tmp_path / "cache"), checkpoint_every=1)

    def preempt(step, stop):
        stop.requested = "SIGTERM"

    def killed(step, stop):
        if step == 3:
            raise RuntimeError("killed")

    train.pretrain(build_config(flags=flags), on_step=preempt)
    with pytest.raises(RuntimeError):
        train.pretrain(load_resume_config(tmp_path / "run", {}), resume=True,
                       on_step=killed)
    out = _info(capsys, tmp_path / "run")
    assert out.startswith(f"{tmp_path / 'run'}: SimCLR pretraining, stopped at step 2 of 6")
    assert f"  continue with: simclr pretrain --resume {tmp_path / 'run'}\n" in out


def _logged_to_step_1(run: Path, resumed: bool) -> None:
    """``run``'s metrics.jsonl as a run whose log reached step 1 leaves it (its last.pt
    is at step 2: --log-every lags behind --checkpoint-every); ``resumed``: with the
    start line of a session resumed at step 1 after it."""
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    rows = [start, {"step": 1, "epoch": 0.5, "loss": 2.5, "elapsed": 1.0, "total_steps": 2}]
    rows += [{**start, "step": 1}] if resumed else []
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_summary_behind_the_checkpoints_is_not_the_runs_status(evaluated_run, tmp_path,
                                                                 capsys):
    """Preempted at step 1 (its summary), resumed, and killed after saving step 2 but
    before logging past step 1: it read 'preempted at step 1 ...; last checkpoint at
    step 2', though the run went on (the log alone was compared with the summary)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    _logged_to_step_1(run, resumed=True)
    (run / "summary.json").write_text(json.dumps(
        {"status": "preempted", "signal": "SIGTERM", "steps": 1, "epochs": 0.5,
         "elapsed_s": 1.0}))
    out = _info(capsys, run)
    assert out.startswith(f"{run}: SimCLR pretraining, stopped at step 2 of 2 ("), out
    assert "last checkpoint" not in out.splitlines()[0]
    assert f"  continue with: simclr pretrain --resume {run}\n" in out
    state = json.loads(_info(capsys, run, "--json"))["state"]
    assert (state["status"], state["step"], state["saved_step"]) == ("stopped", 2, 2)


def test_a_running_runs_step_is_its_logs_or_its_checkpoints_whichever_is_further(
        evaluated_run, tmp_path, capsys):
    """--log-every 10 and a checkpoint at step 15: 'running at step 10 ...; last
    checkpoint at step 15' (the step was the log's alone)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    (run / "summary.json").unlink()  # (as before the run's end)
    _logged_to_step_1(run, resumed=False)
    held = lock_folder(run)
    try:
        head = _info(capsys, run).splitlines()[0]
    finally:
        held.close()
    # its epochs and time are those of the step shown (the log's 0.5 epochs and 1 s were
    # step 1's): the epochs from the log's steps per epoch, the time the checkpoint's
    from simclr.info_text import _duration

    elapsed = load_checkpoint(run / "checkpoints" / "last.pt")["elapsed"]
    assert head == f"{run}: SimCLR pretraining, running at step 2 of 2 (1.00 epochs, " \
                   f"{_duration(elapsed)}); last loss 2.5 (step 1)", head
    # a step whose time nothing records (a periodic checkpoint's, last.pt unreadable):
    # its epochs alone
    shutil.copy(run / "checkpoints" / "last.pt", run / "checkpoints" / "ckpt-00000002.pt")
    (run / "checkpoints" / "last.pt").write_bytes(b"cut short")
    state = json.loads(_info(capsys, run, "--json"))["state"]
    assert (state["step"], state["epoch"], state.get("elapsed_s")) == (2, 1.0, None)
    assert _info(capsys, run).splitlines()[0].startswith(
        f"{run}: SimCLR pretraining, stopped at step 2 of 2 (1.00 epochs); last loss 2.5")


def test_a_resumed_runs_first_start_keeps_the_folder_it_was_typed_in():
    """The command info offers is the first start's: a resume copies that start's working
    folder forward with it, or a resumed sweep cell lost where its sweep was typed."""
    from simclr.resume import recorded_start
    from simclr.run_facts import _started

    first = recorded_start({"argv": ["simclr", "sweep", "--data", "d"], "cwd": "/typed"})
    started = _started({"argv": ["simclr", "pretrain", "--resume", "c"], "cwd": "/later",
                        "earlier": [first]})
    assert started is not None and started["cwd"] == "/typed"


@pytest.mark.parametrize("edit, damaged", [
    ({"source": {"checkpoint": 5}}, None),  # (a traceback: Path(5))
    ({"source": {"checkpoint": ["a"], "step": "2"}}, None),
    ({"top1": float("nan")}, "top1"), ({"top1": float("inf"), "top5": "high"}, "top1, top5")])
def test_a_hand_edited_results_file_is_described_as_json_says_it(evaluated_run, tmp_path,
                                                                 capsys, edit, damaged):
    """A results file whose source.checkpoint is no path was a TypeError's traceback; a
    top-1 of NaN or 1e999 printed 'nan%' / 'inf%' where --json says null. What is not as
    simclr writes it is left out of both, and the text names it."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    knn = json.loads((run / "knn/knn.json").read_text())
    (run / "knn/knn.json").write_text(json.dumps({**knn, **edit}))
    line = _info(capsys, run).splitlines()[-1]
    result = json.loads(_info(capsys, run, "--json"))["results"][0]
    if damaged is None:  # the source's checkpoint is unknown: nothing said of it
        assert line.startswith("  knn/knn.json: kNN, top-1 ") and line.endswith("%"), line
        assert "of" not in result and "of_step" not in result
    else:
        assert line == f"  knn/knn.json: kNN, no top-1; damaged or edited, left out: {damaged}"
        assert "top1" not in result and result["damaged"] == damaged.split(", ")


def test_a_run_of_processes_given_with_an_equals_sign_is_no_torchrun_run(evaluated_run,
                                                                        tmp_path, capsys):
    """`--processes=2` was not read: the recipe left out its 2 processes, and the run
    was continued under torchrun (its checkpoint's count). Where the command does not
    say (torchrun's), the recipe's count is the checkpoint's."""
    import shutil

    from simclr.checkpoint import save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(evaluated_run[0], run)
    (run / "summary.json").unlink()  # stopped: info says how to continue it
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    save_checkpoint({**ckpt, "processes": 2, "local_processes": 2}, run / "checkpoints")
    out = _info(capsys, run)
    assert "  recipe: batch 8 over 2 processes (global BatchNorm), " in out  # torchrun's
    assert f"  continue with: torchrun --nproc_per_node 2 -m simclr pretrain --resume {run}\n" \
        in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["provenance"]["argv"] += ["--processes=2"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    out = _info(capsys, run)
    assert "  recipe: batch 8 over 2 processes (global BatchNorm), " in out
    assert f"  continue with: simclr pretrain --resume {run} --processes 2\n" in out


def _state(run: Path, checkpoints: list[dict] | None = None, summary: dict | None = None,
           log: list[dict] | None = None, results: dict | None = None, **kwargs) -> dict:
    """run_state of a folder holding only the summary.json, supervised results and
    metrics.jsonl lines given, with ``checkpoints`` as info lists them."""
    from simclr.resume_target import SUPERVISED_RESULT
    from simclr.run_facts import run_state

    run.mkdir(parents=True, exist_ok=True)
    for name, data in (("summary.json", summary), (SUPERVISED_RESULT, results)):
        if data is not None:
            (run / name).write_text(json.dumps(data))
    if log is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    return run_state(run, checkpoints or [], **kwargs)


def test_a_held_folder_is_a_run_at_work_unless_its_summary_says_it_ended(tmp_path):
    """A preempted run resumed: running (its summary is no end); a supervised run's
    results (top-1, no status) are its end: finished, its folder held by an evaluation;
    so is a failed run's summary (an error ended it)."""
    preempted, supervised = tmp_path / "preempted", tmp_path / "supervised"
    failed = tmp_path / "failed"
    for run in (preempted, supervised, failed):
        run.mkdir()
    held = [lock_folder(preempted), lock_folder(supervised), lock_folder(failed)]
    try:
        resumed = _state(preempted, summary={"status": "preempted", "steps": 1})
        ended = _state(supervised, results={"top1": 0.5})
        gone = _state(failed, summary={"status": "failed", "steps": 2, "reason": "disk full"})
    finally:
        for h in held:
            h.close()
    assert resumed["status"] == "running" and "busy" not in resumed
    assert ended["status"] == "finished" and ended["busy"].startswith("pid ")
    assert (gone["status"], gone["step"], gone["reason"]) == ("failed", 2, "disk full")
    assert "busy" in gone
    assert _state(supervised)["status"] == "finished"  # (no longer held)


def test_the_final_knn_is_said_skipped_only_of_a_monitored_run_that_lacks_it(tmp_path):
    stopped = {"status": "finished", "signal": "SIGTERM", "steps": 6}
    assert _state(tmp_path / "a", summary=stopped, monitored=True)[
        "final_knn_skipped"] == "SIGTERM"
    assert "final_knn_skipped" not in _state(tmp_path / "b", summary=stopped)  # no monitor
    assert "final_knn_skipped" not in _state(tmp_path / "c", summary={
        **stopped, "knn_top1": 0.5}, monitored=True)  # measured since (--resume)


def test_a_supervised_stop_behind_a_later_checkpoint_is_not_the_runs_status(tmp_path):
    """last.pt preempted at step 1 (no session recorded: an earlier simclr's), a periodic
    checkpoint of step 2 since: the run went on past that stop, and was stopped."""
    last = {"name": "last.pt", "kind": "supervised", "step": 1, "status": "preempted"}
    later = {"name": "ckpt-00000002.pt", "kind": "periodic", "step": 2}
    assert _state(tmp_path / "a", [last])["status"] == "preempted"
    state = _state(tmp_path / "b", [last, later])
    assert (state["status"], state["step"]) == ("stopped", 2)


def test_a_preempted_runs_epochs_and_time_are_its_summarys_at_its_stop(tmp_path):
    """Logged at step 3, stopped at step 4: the epochs and time are the summary's
    (not the log's scaled to step 4, nor none)."""
    state = _state(tmp_path, summary={"status": "preempted", "steps": 4, "epochs": 1.5,
                                      "elapsed_s": 100.0},
                   log=[{"step": 3, "loss": 1.0, "epoch": 1.0, "elapsed": 50.0}])
    assert (state["step"], state["epoch"], state["elapsed_s"]) == (4, 1.5, 100.0)


def test_a_checkpoint_ahead_of_the_log_shows_no_epochs_or_time_it_cannot_tell(tmp_path):
    """The step shown is a periodic checkpoint's (3), past the log and last.pt (1): its
    epochs by the log's steps per epoch, no time (last.pt's is step 1's); a log at step
    0 (or one of epoch 0) tells no steps per epoch, so no epochs either."""
    last = {"name": "last.pt", "kind": "pretrain", "step": 1, "elapsed_s": 10.0}
    later = {"name": "ckpt-00000003.pt", "kind": "periodic", "step": 3}
    state = _state(tmp_path / "a", [last, later],
                   log=[{"step": 1, "loss": 2.0, "epoch": 0.5, "elapsed": 10.0}])
    assert (state["step"], state["epoch"], state.get("elapsed_s")) == (3, 1.5, None)
    state = _state(tmp_path / "b", [{**later, "step": 2}],
                   log=[{"step": 0, "loss": 2.0, "epoch": 0.0, "elapsed": 1.0}])
    assert (state["step"], state.get("epoch")) == (2, None)
    state = _state(tmp_path / "c", [{**later, "step": 2}],  # (an epoch of 0 at step 1)
                   log=[{"step": 1, "loss": 2.0, "epoch": 0.0, "elapsed": 1.0}])
    assert (state["step"], state.get("epoch")) == (2, None)


def test_a_summary_whose_session_is_no_number_is_not_an_earlier_sessions(tmp_path):
    """A hand-edited `"session": true` (1 to Python) is no session: the summary stands."""
    summary = {"status": "finished", "steps": 2}
    assert _state(tmp_path / "a", summary={**summary, "session": True},
                  starts=2)["status"] == "finished"
    assert _state(tmp_path / "b", summary={**summary, "session": 1},
                  starts=2)["status"] == "stopped"


def test_a_damaged_last_checkpoint_takes_no_length_from_an_older_periodic_one(tmp_path):
    """The steps planned are a periodic checkpoint's only before last.pt is written (a
    supervised run training); a last.pt there, unreadable, has the run's length, not the
    older plan (a --time-budget refits it)."""
    from simclr.checkpoint import save_checkpoint

    periodic = {"name": "ckpt-00000002.pt", "kind": "periodic", "step": 2}
    for run in (tmp_path / "a", tmp_path / "b"):
        save_checkpoint({"kind": "supervised", "step": 2, "total_steps": 9, "config": {},
                         "model": {}},
                        run / "checkpoints", periodic["name"])
    assert _state(tmp_path / "a", [periodic])["total_steps"] == 9
    damaged = {"name": "last.pt", "error": "not a checkpoint"}
    state = _state(tmp_path / "b", [damaged, periodic])
    assert state["unreadable_checkpoints"] == ["last.pt"] and "total_steps" not in state


def test_a_command_ending_in_a_bare_processes_flag_gives_no_processes():
    """`--processes` as the last word (argparse refused it: no value) is none given, not
    an error reading the provenance; the last value given counts."""
    from simclr.run_facts import _started

    argv = ["simclr", "pretrain", "--processes", "2", "--processes"]
    assert _started({"argv": argv})["processes"] == "2"
    assert _started({"argv": ["simclr", "pretrain", "--processes"]})["processes"] is None


def test_the_monitors_measure_is_the_newest_knn_line(tmp_path):
    """Two kNN lines after the last training line (a stop's measure taken again as the
    run resumed): the newest is the monitor's."""
    state = _state(tmp_path, log=[{"step": 3, "loss": 2.0, "epoch": 1.0, "elapsed": 1.0},
                                  {"step": 3, "knn_top1": 0.25},
                                  {"step": 3, "knn_top1": 0.5}])
    assert (state["monitor_top1"], state["monitor_step"]) == (0.5, 3)


def test_a_config_whose_earlier_start_records_no_command_line_is_said_damaged(tmp_path):
    """The latest start's argv a command line, an earlier one's not (3): still damaged,
    which start's command info shows being the first's."""
    from simclr.run_facts import _read_config

    provenance = {"argv": ["simclr", "pretrain"], "earlier": [{"argv": 3}]}
    (tmp_path / "config.yaml").write_text(json.dumps({"seed": 0, "provenance": provenance}))
    assert _read_config(tmp_path / "config.yaml")[1] == {
        "provenance": "provenance: a start's argv is not a command line, so the command "
                      "that started the run is unknown"}


def test_a_results_files_run_id_that_is_no_text_names_no_run(tmp_path):
    """A hand-edited `run_id: 7` is no run's id: the result names none (it is judged by
    its checkpoint's path, as one from before run ids). A from-scratch baseline's
    features are the random init, whatever its source says."""
    from simclr.run_facts import results_in

    source = {"checkpoint": "run/checkpoints/last.pt", "step": 2, "run_id": 7}
    (tmp_path / "knn.json").write_text(json.dumps({"top1": 0.5, "source": source}))
    scratch = {**source, "features": "pretrained"}  # (a baseline: no pretrained features)
    (tmp_path / "b").mkdir()
    (tmp_path / "b/knn.json").write_text(json.dumps({"top1": 0.1, "source": scratch,
                                                     "from_scratch": True}))
    entry, baseline = results_in(tmp_path)
    assert (entry["of"], entry["of_step"], entry.get("of_run")) == (source["checkpoint"], 2, None)
    assert baseline["features"] == "random init"
