"""Real signals on a real `simclr pretrain` process: SIGTERM exits 75 after a checkpoint,
SIGKILL at any moment leaves a run that `--resume` finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simclr.checkpoint import latest_checkpoint
from simclr.checkpoint_read import load_checkpoint
from tests.conftest import make_image_folder


def start(data: Path, out: Path, cache: Path, *extra: str, **popen) -> subprocess.Popen:
    args = ["--data", str(data), "--out", str(out), "--arch", "resnet18", "--width", "0.125",
            "--image-size", "16", "--batch-size", "8", "--epochs", "200", "--precision",
            "fp32", "--no-progress", "--workers", "0",
            *(["--cache-dir", str(cache)] if "off" not in extra else []),  # (--cache off)
            "--checkpoint-every", "2", "--log-every", "1", *extra]
    return subprocess.Popen([sys.executable, "-m", "simclr", "pretrain", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    metrics = out / "metrics.jsonl"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if metrics.exists():
            steps = [json.loads(x).get("step", 0) for x in metrics.read_text().splitlines() if x]
            if steps and max(steps) >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def test_sigterm_writes_a_checkpoint_and_exits_75(tmp_path):
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    proc = start(data, out, tmp_path / "cache")
    wait_for_step(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "--resume" in err
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] >= 3


def test_sigterm_to_the_whole_process_group_spares_the_loader_workers(tmp_path):
    """SLURM and torchrun signal the process group, loader workers included: the step in
    flight must still get its images, and the checkpoint be written."""
    import os

    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    proc = start(data, out, tmp_path / "cache", "--cache", "off", "--workers", "2",
                 start_new_session=True)  # its own group, as a scheduler's job
    wait_for_step(out, 3, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "DataLoader worker" not in err and "Traceback" not in err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] >= 3


def test_sigkill_then_resume_finishes_the_run(tmp_path):
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    proc = start(data, out, tmp_path / "cache", "--max-steps", "14")
    wait_for_step(out, 5, proc)
    proc.kill()  # SIGKILL: no handler runs, a checkpoint may be half written
    proc.wait(timeout=60)
    saved = latest_checkpoint(out / "checkpoints")
    assert saved is not None
    done = subprocess.run([sys.executable, "-m", "simclr", "pretrain", "--resume", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 14
    # the steps logged after the checkpoint before the kill are not in the log twice
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == list(range(1, 15))


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    """Both used to run, interleaving their logs; the later one's checkpoint won."""
    from simclr.cli import main

    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    proc = start(data, out, tmp_path / "cache", "--checkpoint-every", "0")
    try:
        wait_for_step(out, 2, proc)  # running, no checkpoint written yet
        assert main(["pretrain", "--data", str(data), "--out", str(out), "--max-steps", "1",
                     "--no-progress", "--workers", "0", "--cache-dir", str(tmp_path / "cache"),
                     "--arch", "resnet18", "--width", "0.125", "--image-size", "16",
                     "--batch-size", "8", "--precision", "fp32"]) == 2
        err = capsys.readouterr().err
        assert f"{out} is in use by another simclr run (pid {proc.pid} on" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 75


def test_a_ctrl_c_before_training_starts_leaves_no_empty_run_folder(tmp_path, monkeypatch,
                                                                    capsys):
    """A Ctrl-C between creating the run folder and the first write (before the signal
    handler that checkpoints is in place) left `runs/new/checkpoints/` and a lock file:
    a folder that `simclr info` called "not a simclr run folder". A folder that was
    there already is kept (with the lock file, released)."""
    from simclr import distributed
    from simclr.cli import main

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "wrap_ddp", interrupted)
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    argv = ["pretrain", "--data", str(data), "--max-steps", "1", "--no-progress",
            "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--arch", "resnet18",
            "--width", "0.125", "--image-size", "16", "--batch-size", "8",
            "--precision", "fp32"]
    assert main([*argv, "--out", str(tmp_path / "runs" / "new")]) == 130
    assert "interrupted; no checkpoint was saved" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    (tmp_path / "mine").mkdir()
    assert main([*argv, "--out", str(tmp_path / "mine")]) == 130
    assert [p.name for p in (tmp_path / "mine").iterdir()] == [".simclr.lock"]


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGHUP or SIGUSR1 on Windows")
@pytest.mark.parametrize("name", ["SIGHUP", "SIGUSR1"])
def test_a_hangup_or_a_schedulers_warning_checkpoints_as_sigterm_does(tmp_path, name):
    """A closed ssh session (SIGHUP to the session's group) and SLURM's
    ``--signal=USR1@...`` warning ended the run at once (129, 138) with no checkpoint,
    the loader workers too: they stop it as SIGTERM does, after the step, saved."""
    import os

    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    proc = start(data, out, tmp_path / "cache", "--cache", "off", "--workers", "2",
                 "--checkpoint-every", "0", start_new_session=True)  # its own group
    wait_for_step(out, 3, proc)
    os.killpg(proc.pid, getattr(signal, name))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert f"stopped by {name}; continue with: simclr pretrain --resume" in err
    assert "DataLoader worker" not in err and "Traceback" not in err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] >= 3
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["signal"]) == ("preempted", name)
