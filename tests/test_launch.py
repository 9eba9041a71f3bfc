"""``--processes N``: simclr starts and watches its own training processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr import launch, runtime
from simclr.cli import main

needs_dist = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="no torch.distributed")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="the parent-death signal is Linux's")


def run_cpu(processes: int, command: list[str]) -> int:
    """launch.run of plain Python children as a --device cpu run: on a GPU machine the
    default (auto) would refuse more processes than GPUs."""
    return launch.run([], processes, command, device="cpu")


def _child(code: str) -> list[str]:
    """A stand-in for `python -m simclr`: a Python snippet run by each launched process."""
    return [sys.executable, "-c", "import os, sys, time, signal\n" + code]


def _wait_for(paths: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {paths}"
        time.sleep(0.05)


def _launched_pids(tmp_path: Path) -> list[int]:
    """The pids the two launched processes wrote, each into its RANK.pid."""
    pids = [tmp_path / "0.pid", tmp_path / "1.pid"]
    _wait_for(pids)
    time.sleep(0.2)  # the pid is written before the file is closed
    return [int(p.read_text()) for p in pids]


def test_each_process_gets_torchruns_variables_and_a_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 6)
    keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
            "MASTER_PORT", "OMP_NUM_THREADS", "SIMCLR_CPU_RUN"]
    code = (f"import json; json.dump({{k: os.environ[k] for k in {keys}}}, "
            f"open(r'{tmp_path}/' + os.environ['RANK'] + '.json', 'w')); "
            "print(sys.argv[1:])")
    assert launch.run(["pretrain", "--x"], 2, _child(code), device="cpu") == 0
    envs = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    for rank, env in enumerate(envs):
        assert env["RANK"] == env["LOCAL_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == env["LOCAL_WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"] == envs[0]["MASTER_PORT"]
        assert env["OMP_NUM_THREADS"] == "3"
        assert env["SIMCLR_CPU_RUN"] == "1"  # a --device cpu run: gloo alone


def test_more_cpu_processes_than_cores_are_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    with caplog.at_level(logging.WARNING):
        assert launch.run(["x"], 2, _child("pass"), device="cpu") == 0
        assert not caplog.records
        assert launch.run(["x"], 3, _child("pass"), device="cpu") == 0
    assert caplog.messages == ["simclr: 3 processes on 2 CPU core(s) compete for them; "
                               "--processes 2 or fewer trains faster here (the global batch "
                               "stays the same)"]


def test_an_auto_device_without_a_gpu_warns_too_and_still_gives_each_process_a_thread(
        tmp_path, monkeypatch, caplog):
    """--device auto on a machine without a GPU trains on its cores: more processes than
    cores are warned about as for --device cpu, each gets one thread at least, and the
    run is not marked a --device cpu one (that is for a GPU machine's cpu run)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime, "check_gpu_per_process", lambda device, processes: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = (f"open(r'{tmp_path}/' + os.environ['RANK'], 'w').write("
            "os.environ['OMP_NUM_THREADS'] + ' ' + os.environ['SIMCLR_CPU_RUN'])")
    with caplog.at_level(logging.WARNING):
        assert launch.run([], 3, _child(code), device="auto") == 0
    assert [(tmp_path / str(r)).read_text() for r in range(3)] == ["1 0"] * 3
    assert caplog.messages[0].startswith("simclr: 3 processes on 2 CPU core(s) compete")


def test_a_failed_process_ends_the_others_and_gives_the_status(monkeypatch):
    """Rank 0 would wait for rank 1 in a collective for 30 minutes: it is ended."""
    monkeypatch.setattr(launch, "GRACE_S", 0.5)
    start = time.monotonic()
    code = "time.sleep(120) if os.environ['RANK'] == '0' else sys.exit(3)"
    assert run_cpu(2, _child(code)) == 3
    assert time.monotonic() - start < 30


def test_a_process_that_exits_without_an_error_is_named(capfd, monkeypatch):
    """A library's exit(3) or os._exit in one process: the run failed with status 3 and
    not a word (the others end quietly, their peer gone)."""
    monkeypatch.setattr(launch, "GRACE_S", 0.5)
    code = "time.sleep(120) if os.environ['RANK'] == '0' else os._exit(3)"
    assert run_cpu(2, _child(code)) == 3
    assert capfd.readouterr().err == ("simclr: process 1 of 2 exited with status 3, without "
                                      "a simclr error message\n")
    # one that left its error for the launcher said it: not called wordless
    code = ("time.sleep(120) if os.environ['RANK'] == '0' else (open(os.path.join("
            "os.environ['SIMCLR_LAUNCH_ERRORS'], 'rank1.txt'), 'w').close(), os._exit(3))")
    assert run_cpu(2, _child(code)) == 3
    assert "without a simclr error message" not in capfd.readouterr().err


def test_a_process_killed_by_a_signal_is_named(capfd, monkeypatch):
    monkeypatch.setattr(launch, "GRACE_S", 0.5)
    code = "os.kill(os.getpid(), signal.SIGKILL) if os.environ['RANK'] == '1' else time.sleep(120)"
    assert run_cpu(2, _child(code)) == 128 + signal.SIGKILL
    assert "simclr: process 1 of 2 was killed by SIGKILL (out of memory?)" in capfd.readouterr().err


def test_all_preempted_is_75_and_all_finished_is_0():
    assert run_cpu(2, _child("sys.exit(75)")) == 75
    assert run_cpu(2, _child("sys.exit(75 if os.environ['RANK'] == '0' else 0)")) == 75
    assert run_cpu(3, _child("pass")) == 0


def test_user_errors_are_said_once(capfd):
    """Rank 0 prints its own; the launcher adds only the others' different ones, each
    once."""
    code = ("from simclr.launch import report_error\n"
            "m = {'0': 'same', '1': 'same', '2': 'other', '3': 'other'}[os.environ['RANK']]\n"
            "report_error(m) or print(m, file=sys.stderr); sys.exit(2)")
    assert run_cpu(4, _child(code)) == 2
    assert capfd.readouterr().err.splitlines() == ["same", "(process 2) other"]


def test_a_user_error_each_process_meets_in_its_own_file_is_said_once(capfd):
    """Each process names the first bad image of its own share: the same error, told
    with another path, is rank 0's line alone."""
    code = ("from simclr.launch import report_error\n"
            "m = ('simclr pretrain: error: all 10 images are unreadable (first: /d/img'\n"
            "     + os.environ['RANK'] + '.png: not an image file); check the folder /d')\n"
            "report_error(m) or print(m, file=sys.stderr); sys.exit(2)")
    assert run_cpu(2, _child(code)) == 2
    assert capfd.readouterr().err == ("simclr pretrain: error: all 10 images are unreadable "
                                      "(first: /d/img0.png: not an image file); check the "
                                      "folder /d\n")


def test_another_processs_own_user_error_is_still_said(capfd, monkeypatch):
    """Rank 0 fine (it ended early, or was ended) and rank 1 failed: rank 1's line, once."""
    monkeypatch.setattr(launch, "GRACE_S", 0.5)
    code = ("from simclr.launch import report_error\n"
            "if os.environ['RANK'] == '0': time.sleep(60)\n"
            "m = 'simclr pretrain: error: cannot read /d/img1.png'\n"
            "report_error(m) or print(m, file=sys.stderr); sys.exit(2)")
    assert run_cpu(2, _child(code)) == 2
    assert capfd.readouterr().err == ("(process 1) simclr pretrain: error: cannot read "
                                      "/d/img1.png\n")


@needs_dist
def test_unreadable_images_under_processes_are_one_line(tmp_path, capfd):
    """The real run: 10 files that are no images, two processes."""
    from simclr.config_file import yaml_text
    from simclr.settings import build_config
    from tests.conftest import tiny_flags

    data = tmp_path / "garbage"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        (data / f"img{i}.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    flags = tiny_flags(data, tmp_path / "run", str(tmp_path / "cache"), threads=1,
                       batch_size=4, max_steps=1)
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text(build_config(flags=flags).to_dict()))
    assert main(["pretrain", "--config", str(config), "--processes", "2"]) == 2
    errors = [x for x in capfd.readouterr().err.splitlines() if "error" in x]
    assert len(errors) == 1 and errors[0].startswith("simclr pretrain: error: all 10 images "
                                                      "are unreadable (first: ")


@needs_dist
def test_unreadable_images_any_process_met_are_all_in_the_summary(tmp_path):
    """Uncached, each process meets the bad files of its share of the batches; they were
    exchanged only at an epoch's start, so those of the last epoch (all, in a one-epoch
    run) that rank 1 met were missing from summary.json and the checkpoint."""
    from simclr.config_file import yaml_text
    from simclr.settings import build_config
    from tests.conftest import make_image_folder, tiny_flags

    data = make_image_folder(tmp_path / "imgs", classes=2, per_class=12)
    for k in range(6):  # spread over the epoch's order: both processes meet some
        (data / f"class_{k % 2}" / f"bad{k}.png").write_text("no image")
    flags = tiny_flags(data, tmp_path / "run", str(tmp_path / "cache"), threads=1,
                       batch_size=30, max_steps=1, **{"data.cache": "off"})
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text(build_config(flags=flags).to_dict()))
    assert main(["pretrain", "--config", str(config), "--processes", "2"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sorted(Path(p).name for p, _ in summary["skipped_images"]) == [
        f"bad{k}.png" for k in range(6)]
    assert summary["num_images"] == 24


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_a_user_error_goes_to_its_error_file_and_rank_0_says_it(
        rank, tmp_path, monkeypatch, capsys):
    """torchrun quotes a worker's error file in its failure report; printing the same
    line from every process as well would repeat it N times."""
    error_file = tmp_path / "error.json"
    monkeypatch.delenv(launch.ERRORS_ENV, raising=False)
    monkeypatch.setenv(launch.TORCHRUN_ERROR_FILE, str(error_file))
    monkeypatch.setenv("RANK", rank)
    missing = tmp_path / "missing"
    assert main(["pretrain", "--data", str(missing), "--out", str(tmp_path / "run")]) == 2
    message = f"simclr pretrain: error: data folder not found: {missing}"
    assert json.loads(error_file.read_text())["message"] == message
    # as torchrun's failure report reads it: the message, and when (not 1970)
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    failure = ProcessFailure(local_rank=int(rank), pid=1, exitcode=2, error_file=str(error_file))
    assert failure.message == message and failure.timestamp > 1e9
    assert capsys.readouterr().err.strip() == (message if rank == "0" else "")
    assert launch.quiet_rank() == (rank != "0")


def test_under_torchrun_without_an_error_file_every_process_prints(tmp_path, monkeypatch,
                                                                  capsys):
    """torchrun's ``--log-dir /dev/null`` gives workers an empty error file name: the
    message would be lost, so each process prints it."""
    monkeypatch.delenv(launch.ERRORS_ENV, raising=False)
    monkeypatch.setenv(launch.TORCHRUN_ERROR_FILE, "")
    monkeypatch.setenv("RANK", "1")
    assert main(["pretrain", "--data", str(tmp_path / "missing")]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_under_torchrun_a_crash_is_recorded_for_its_report_and_still_printed(
        tmp_path, monkeypatch):
    """torchrun's report quotes the recorded traceback instead of "To enable traceback
    see ..."; the process still prints its own (report_crash returns False)."""
    error_file = tmp_path / "error.json"
    monkeypatch.delenv(launch.ERRORS_ENV, raising=False)
    monkeypatch.setenv(launch.TORCHRUN_ERROR_FILE, str(error_file))
    trace = "Traceback (most recent call last):\n  ...\nZeroDivisionError: division by zero\n"
    assert launch.report_crash(trace) is False
    message = json.loads(error_file.read_text())["message"]
    assert message["message"] == "ZeroDivisionError: division by zero"
    assert message["extraInfo"]["py_callstack"] == trace
    # under simclr's own launch: left for the launcher, which prints it (True)
    monkeypatch.setenv(launch.ERRORS_ENV, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    assert launch.report_crash(trace) is True
    assert (tmp_path / "rank1.traceback").read_text() == trace


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_a_peer_gone_mid_collective_is_one_line(rank, tmp_path, monkeypatch,
                                                               capsys):
    """A process whose peer ended first (rank 0's one-line user error, a kill) printed
    a 30-line traceback under the cause; a bug of its own still raises."""
    import simclr.cli

    error_file = tmp_path / "error.json"
    monkeypatch.delenv(launch.ERRORS_ENV, raising=False)
    monkeypatch.setenv(launch.TORCHRUN_ERROR_FILE, str(error_file))
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    gone = RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                        "[127.0.0.1]:25745. This is typically caused by a remote worker "
                        "crashing.")

    def collective(args):
        raise gone

    monkeypatch.setattr(simclr.cli, "_check_before_work", collective)
    assert main(["pretrain", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == (
        f"simclr pretrain: process {rank} of 2 stopped: another process of the run ended "
        "first (its error is above, or in torchrun's report)\n")
    assert "Connection closed by peer" in json.loads(error_file.read_text())["message"][
        "extraInfo"]["py_callstack"]  # still in torchrun's report
    for gone in (RuntimeError("a bug"), torch.distributed.DistStoreError("timed out")):  # noqa: B007 (raised by collective)
        with pytest.raises(RuntimeError, match="a bug|timed out"):  # not another's end
            main(["pretrain", "--out", str(tmp_path / "run")])


def _launcher(tmp_path: Path, code: str, argv: tuple[str, ...] = (),
              **popen: object) -> subprocess.Popen:
    """A launcher of two snippet processes, run as its own program (to signal or kill),
    leading its own process group as a command run from a terminal does (as a --device
    cpu run: on a GPU machine the default would refuse more processes than GPUs)."""
    script = (f"import sys; from simclr.launch import run\n"
              f"sys.exit(run({list(argv)!r}, 2, {_child(code)!r}, device='cpu'))")
    return subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path,
                            start_new_session=True, **popen)


def test_a_signal_to_the_launcher_reaches_each_process_exactly_once(tmp_path):
    """The processes run in their own session: a terminal's Ctrl-C (sent to the
    foreground group) would otherwise come twice, and a second SIGINT means "now"."""
    code = ("n = []\n"
            "signal.signal(signal.SIGINT, lambda *a: n.append(1))\n"
            "open(os.environ['RANK'] + '.up', 'w').write(str(os.getsid(0) == os.getpid()))\n"
            "end = time.monotonic() + 1.0\n"
            "while not n or time.monotonic() < end: time.sleep(0.05)\n"
            "open(os.environ['RANK'] + '.got', 'w').write(str(len(n))); sys.exit(75)")
    proc = _launcher(tmp_path, code)
    _wait_for([tmp_path / "0.up", tmp_path / "1.up"])
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the foreground group
    assert proc.wait(60) == 75
    assert [(tmp_path / f"{r}.got").read_text() for r in range(2)] == ["1", "1"]
    # (two Ctrl-Cs close together may reach Python's handler as one: each process
    # leads a session of its own, out of the terminal's reach)
    assert [(tmp_path / f"{r}.up").read_text() for r in range(2)] == ["True", "True"]


def test_a_signal_reaching_a_process_on_its_way_out_is_no_traceback(tmp_path):
    """Rank 1 of a finished run exits (torch's atexit finalizers take a while) as rank 0
    still writes its report: a Ctrl-C forwarded then raised KeyboardInterrupt inside an
    atexit callback, printed as "Exception ignored ..." with a traceback. Its command
    is done, so the signal is no longer its to act on."""
    code = ("import atexit\n"
            "from simclr.cli import main\n"
            "def finalizer():\n"  # a finalizer that takes its time, as torch's may
            "    open(os.environ['RANK'] + '.exiting', 'w').close(); time.sleep(3)\n"
            "atexit.register(finalizer)\n"
            "sys.exit(main(['pretrain', '--print-config']))")  # a command done at once
    proc = _launcher(tmp_path, code, ("pretrain",), stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
    _wait_for([tmp_path / "0.exiting", tmp_path / "1.exiting"])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")  # the run had finished: nothing was stopped
    # An exit that hangs (a finalizer waiting on a peer gone): a second Ctrl-C ends it.
    for name in ("0.exiting", "1.exiting"):
        (tmp_path / name).unlink()
    proc = _launcher(tmp_path, code.replace("time.sleep(3)", "time.sleep(600)"), ("pretrain",),
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for([tmp_path / "0.exiting", tmp_path / "1.exiting"])
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    for _ in range(6):  # (two signals close together may reach a process as one: a
        proc.send_signal(signal.SIGINT)  # second is sent again, late enough not to
        try:  # come as a third while the launcher ends, which ends it at once)
            proc.wait(10)
            break
        except subprocess.TimeoutExpired:
            pass
    proc.communicate(timeout=60)
    assert proc.returncode == 130


@pytest.mark.parametrize("name, words", [("SIGTERM", "stopped by SIGTERM"),
                                         ("SIGINT", "interrupted")])
def test_processes_ended_by_a_forwarded_signal_are_said_stopped_once(tmp_path, name, words):
    """A launched process takes SIGTERM as the default does (it may be blocked in a
    collective, where no Python handler runs): it dies of it, silently. One process
    says `simclr pretrain: stopped by SIGTERM`; --processes 2 said nothing at all."""
    sig = getattr(signal, name)
    code = (f"signal.signal({int(sig)}, signal.SIG_DFL)\n"  # as in C code: ended by it
            "open(os.environ['RANK'] + '.up', 'w').close(); time.sleep(60)")
    proc = _launcher(tmp_path, code, ("pretrain", "--x"), stderr=subprocess.PIPE, text=True)
    _wait_for([tmp_path / "0.up", tmp_path / "1.up"])
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (128 + sig, f"simclr pretrain: {words}\n")


def test_a_signal_rank_0_reported_itself_is_not_said_again(tmp_path):
    """Rank 0 out of any training turns Ctrl-C into its own line (and status 130);
    another process ended by the signal adds no second one."""
    code = ("if os.environ['RANK'] == '1': signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
            "try:\n"  # (up only once a Ctrl-C is caught)
            "    open(os.environ['RANK'] + '.up', 'w').close(); time.sleep(60)\n"
            "except KeyboardInterrupt:\n"
            "    print('simclr pretrain: interrupted', file=sys.stderr); sys.exit(130)")
    proc = _launcher(tmp_path, code, ("pretrain",), stderr=subprocess.PIPE, text=True)
    _wait_for([tmp_path / "0.up", tmp_path / "1.up"])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "simclr pretrain: interrupted\n")


def test_a_quiet_process_exiting_130_while_rank_0_ends_as_a_peer_gone_is_said(tmp_path):
    """A second Ctrl-C: rank 1, still in Python, exits 130 unsaid (rank 0 speaks for
    all), while rank 0, blocked in a collective, ends as a peer gone (its traceback kept
    for the launcher, exit 1): the run ended with status 130 and no word at all."""
    code = ("if os.environ['RANK'] == '1':\n"  # (up only once the signal is taken care of)
            "    try: open('1.up', 'w').close(); time.sleep(60)\n"
            "    except KeyboardInterrupt: sys.exit(130)\n"
            "else:\n"
            "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "    open('0.up', 'w').close()\n"
            "    while not os.path.exists('1.gone'): time.sleep(0.05)\n"
            "    sys.exit(1)")
    code = code.replace("sys.exit(130)", "open('1.gone', 'w').close(); sys.exit(130)")
    proc = _launcher(tmp_path, code, ("pretrain",), stderr=subprocess.PIPE, text=True)
    _wait_for([tmp_path / "0.up", tmp_path / "1.up"])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "simclr pretrain: interrupted\n")


@linux
def test_the_processes_end_with_a_killed_launcher(tmp_path):
    """Even a process that handles SIGTERM (a training: a checkpoint, then on to the
    next step's collective) ends: the launcher's death is a SIGKILL to it."""
    code = ("from simclr.launch import die_with_launcher; die_with_launcher()\n"  # as main()
            "signal.signal(signal.SIGTERM, lambda *a: None)\n"
            "open(os.environ['RANK'] + '.pid', 'w').write(str(os.getpid())); time.sleep(120)")
    proc = _launcher(tmp_path, code)
    children = _launched_pids(tmp_path)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in children):
        assert time.monotonic() < deadline, "a launched process outlived its launcher"
        time.sleep(0.05)


@linux
def test_a_torchrun_worker_is_sent_sigterm_when_torchrun_dies(tmp_path):
    """torchrun handles TERM, INT, HUP and QUIT; the SIGUSR1 a SLURM --signal sends by
    default killed it outright, and its workers (in sessions of their own) trained on
    with no parent, never saving. Now a worker gets SIGTERM when torchrun dies, which a
    training turns into a checkpoint and a stop."""
    worker = ("import os, signal, sys, time\n"
              "from simclr.launch import die_with_launcher; die_with_launcher()\n"
              "signal.signal(signal.SIGTERM, lambda *a: (open('term', 'w').close(), "
              "sys.exit(75)))\n"
              "open('up', 'w').close(); time.sleep(60)")
    torchrun = ("import os, subprocess, sys, time\n"  # as torchrun starts its workers
                "env = dict(os.environ, TORCHELASTIC_RUN_ID='none', RANK='0')\n"
                "env.pop('SIMCLR_LAUNCHER_PID', None)\n"
                f"subprocess.Popen([sys.executable, '-c', {worker!r}], env=env, "
                "start_new_session=True)\n"
                "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", torchrun], cwd=tmp_path,
                            start_new_session=True)
    _wait_for([tmp_path / "up"])
    proc.send_signal(signal.SIGUSR1)  # (torchrun's default action: it dies)
    proc.wait()
    _wait_for([tmp_path / "term"])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _states(pids: list[int], want: str, timeout: float = 30) -> list[str]:
    """The /proc states of ``pids`` once all are ``want`` ('T': stopped; ''
    : none stopped), or as they are when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        states = [_state(pid) for pid in pids]
        if (all(s == want for s in states) if want else "T" not in states) or \
                time.monotonic() > deadline:
            return states
        time.sleep(0.05)


def _kill_left(proc: subprocess.Popen, children: list[int]) -> None:
    """The launcher and its processes killed where a failed test left them running."""
    for pid in (proc.pid, *children):
        if _state(pid) != "Z":
            os.kill(pid, signal.SIGKILL)
    proc.wait()


@linux
def test_ctrl_z_pauses_the_processes_with_the_launcher_and_fg_resumes_them(tmp_path):
    """The processes run in their own session, so a terminal's Ctrl-Z (SIGTSTP) stopped
    the launcher alone: the shell said "Stopped" while they trained on. The launcher
    stops them (SIGSTOP) and then itself; SIGCONT (fg, bg) continues them with it."""
    code = ("open(os.environ['RANK'] + '.pid', 'w').write(str(os.getpid()))\n"
            "while not os.path.exists('done'): time.sleep(0.02)")
    script = (f"import sys; from simclr.launch import run\n"
              f"sys.exit(run([], 2, {_child(code)!r}, device='cpu'))")
    # (its own group in this session, as a shell's job: a stop sent to a group with no
    # parent outside it in the session, an orphan, is discarded by the kernel)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path,
                            preexec_fn=os.setpgrp)
    children: list[int] = []
    try:
        children = _launched_pids(tmp_path)
        os.kill(proc.pid, signal.SIGTSTP)
        assert _states([proc.pid, *children], "T") == ["T"] * 3
        os.kill(proc.pid, signal.SIGCONT)
        assert "T" not in _states([proc.pid, *children], "")
        (tmp_path / "done").touch()
        assert proc.wait(60) == 0
    finally:
        _kill_left(proc, children)


# ------------------------------------------------------------------ the real commands


def _config_file(tmp_path: Path, out: Path) -> Path:
    """A 2-epoch deterministic pretraining as a --config file (one thread a process)."""
    from simclr.config_file import yaml_text
    from simclr.settings import build_config
    from tests.conftest import make_image_folder, tiny_flags

    data = tmp_path / "images"
    if not data.exists():
        make_image_folder(data)
    flags = tiny_flags(data, out, str(tmp_path / "cache"), deterministic=True, threads=1,
                       checkpoint_every=0, epochs=2, **{"optim.lr": 0.05})
    path = out.with_suffix(".yaml")
    path.write_text(yaml_text(build_config(flags=flags).to_dict()))
    return path


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if '"loss"' in x]


@needs_dist
def test_processes_2_trains_as_one_process_with_the_global_batch(tmp_path, capfd):
    assert main(["pretrain", "--config", str(_config_file(tmp_path, tmp_path / "one"))]) == 0
    two = _config_file(tmp_path, tmp_path / "two")
    assert main(["pretrain", "--config", str(two), "--processes", "2"]) == 0
    assert len(_losses(tmp_path / "two")) == 6
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-4)
    runs = [json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two")]
    assert [r["processes"] for r in runs] == [1, 2]
    err = capfd.readouterr().err
    assert err.count("memory: one step needs") == 1  # rank 0 speaks for the run


@needs_dist
def test_a_user_error_in_the_processes_is_one_line_and_status_2(tmp_path, capfd):
    out = tmp_path / "run"
    code = main(["pretrain", "--data", str(tmp_path / "missing"), "--out", str(out),
                 "--processes", "2", "--device", "cpu"])
    assert code == 2
    assert capfd.readouterr().err == f"simclr pretrain: error: data folder not found: " \
                                     f"{tmp_path / 'missing'}\n"
    assert not out.exists()


def test_processes_is_checked_before_anything_starts(tmp_path, capsys, monkeypatch):
    assert main(["pretrain", "--processes", "3", "--batch-size", "256",
                 "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == ("simclr pretrain: error: --batch-size 256 is not "
                                       "divisible by 3 processes\n")
    assert main(["linear-eval", "--checkpoint", "c", "--train", "a", "--test", "b",
                 "--processes", "2"]) == 2
    assert "runs as one process, not 2" in capsys.readouterr().err
    status = main(["pretrain", "--processes", "0"])
    assert status == 2
    assert "--processes: must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["pretrain", "--processes", "3", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == ("simclr pretrain: error: --processes 3, but the launcher "
                                       "(torchrun) started 2: give one of the two\n")
    assert not any(tmp_path.iterdir())


@needs_dist
def test_sigterm_to_the_launcher_checkpoints_exits_75_and_the_run_resumes(tmp_path):
    """SIGTERM reaches both processes, they stop at the same step with a checkpoint,
    the launcher exits 75 (a requeue script can test it) and says how to continue."""
    out = tmp_path / "run"
    returncode, err = _signalled_in_training(tmp_path, out, signal.SIGTERM)
    assert returncode == 75, err
    assert (out / "checkpoints/last.pt").exists()
    assert f"continue with: simclr pretrain --resume {out} --processes 2" in err
    stopped = _steps(out)[-1]
    assert 1 <= stopped < 24  # 3 epochs of 8 steps
    assert main(["pretrain", "--resume", str(out), "--processes", "2"]) == 0
    assert _steps(out)[-1] == 24 and _steps(out)[:stopped] == list(range(1, stopped + 1))


@needs_dist
@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")
def test_a_hangup_to_the_launcher_checkpoints_and_exits_75(tmp_path):
    """The launcher forwards SIGHUP (a closed ssh session): its trainings ended at once,
    129 and no checkpoint; they stop as on SIGTERM, saved, and say which signal."""
    out = tmp_path / "run"
    returncode, err = _signalled_in_training(tmp_path, out, signal.SIGHUP)
    assert returncode == 75, err
    assert (out / "checkpoints/last.pt").exists()
    assert f"stopped by SIGHUP; continue with: simclr pretrain --resume {out} " \
           "--processes 2" in err


def _signalled_in_training(tmp_path: Path, out: Path, signum: int) -> tuple[int, str]:
    """(exit status, stderr) of a 3-epoch `pretrain --processes 2` into ``out`` sent
    ``signum`` once its first step is logged (the processes in the training loop)."""
    from simclr.config_file import yaml_text
    from simclr.settings import build_config
    from tests.conftest import make_image_folder, tiny_flags

    flags = tiny_flags(make_image_folder(tmp_path / "images", per_class=32), out,
                       str(tmp_path / "cache"), threads=1, checkpoint_every=0, epochs=3)
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text(build_config(flags=flags).to_dict()))
    # The processes compare stop requests after every step (as the in-process tests
    # do): about every 2 s they would, and on a machine where a step takes 0.06 s the
    # comparison after the signal came at the last step, a finished run (exit 0).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import simclr.distributed\nsimclr.distributed.STOP_VOTE_EVERY_S = 0.0\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([sys.executable, "-m", "simclr", "pretrain", "--config",
                             str(config), "--processes", "2"],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or not _steps(out):
        assert time.monotonic() < deadline and proc.poll() is None, "no step was logged"
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["step"] for x in lines if '"loss"' in x]


def test_only_the_first_failures_traceback_is_shown(capfd):
    """A peer gone mid-collective fails too; its traceback is a consequence, not shown.
    After a user error no traceback at all."""
    after_error = ("from simclr.launch import report_error, report_crash\n"
                   "if os.environ['RANK'] == '0':\n"
                   "    m = 'simclr pretrain: error: bad'\n"
                   "    report_error(m) or print(m, file=sys.stderr); sys.exit(2)\n"
                   "time.sleep(0.3); report_crash('Traceback: peer gone\\n'); sys.exit(1)")
    assert run_cpu(2, _child(after_error)) == 2
    assert capfd.readouterr().err == "simclr pretrain: error: bad\n"
    crash = ("from simclr.launch import report_crash\n"
             "if os.environ['RANK'] == '1':\n"
             "    report_crash('Traceback: the bug\\n'); sys.exit(1)\n"
             "time.sleep(0.5); report_crash('Traceback: peer gone\\n'); sys.exit(1)")
    assert run_cpu(2, _child(crash)) == 1
    assert capfd.readouterr().err == "Traceback: the bug\n"


def test_print_config_with_processes_prints_once_here(capsys):
    assert main(["pretrain", "--print-config", "--processes", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("batch_size:") == 1 and out.count("provenance") == 0


def test_the_launcher_checks_the_device_a_config_file_or_resumed_run_sets(tmp_path, monkeypatch):
    """A --config (or resumed run) on the CPU, launched on a GPU machine: the launcher's
    one-GPU-per-process check is about the run's device, not the flag's default."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    asked: list[str] = []
    monkeypatch.setattr(launch, "run", lambda argv, n, command=None, device="auto":
                        asked.append(device) or 0)
    config = _config_file(tmp_path, tmp_path / "one")  # device: cpu
    assert main(["pretrain", "--config", str(config), "--processes", "2"]) == 0
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "config.yaml").write_text(config.read_text())
    assert main(["pretrain", "--resume", str(tmp_path / "one"), "--processes", "2"]) == 0
    (tmp_path / "one" / "checkpoints").mkdir()  # --resume may name its checkpoint file
    (tmp_path / "one" / "checkpoints" / "last.pt").write_bytes(b"")
    assert main(["pretrain", "--resume", str(tmp_path / "one" / "checkpoints" / "last.pt"),
                 "--processes", "2"]) == 0
    assert main(["pretrain", "--config", str(config), "--device", "cuda",
                 "--processes", "2"]) == 0
    assert asked == ["cpu", "cpu", "cpu", "cuda"]


def test_the_command_to_continue_is_given_with_the_same_processes(monkeypatch):
    """The resume line said after a stop: --processes N under simclr's own launch,
    torchrun's for a run torchrun started (two processes are enough), the plain
    command for one process."""
    monkeypatch.delenv(launch.LAUNCHER_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch.continue_run("runs/a") == \
        "torchrun --nproc_per_node 2 -m simclr pretrain --resume runs/a"
    assert launch.again("simclr pretrain --resume runs/a", 3) == \
        "simclr pretrain --resume runs/a --processes 3"
    monkeypatch.setenv(launch.LAUNCHER_ENV, "1")
    assert launch.continue_run("runs/a") == "simclr pretrain --resume runs/a --processes 2"
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.delenv(launch.LAUNCHER_ENV)
    assert launch.continue_run("runs/a") == "simclr pretrain --resume runs/a"


def test_a_run_over_several_machines_continues_with_torchrun_on_each(monkeypatch):
    """2 nodes x 1 process said `torchrun --nproc_per_node 2` (both on one machine; 2 x 8
    GPUs said 16, which an 8-GPU node refuses): a machine's share, on each machine. The
    counts a checkpoint records give info the same line."""
    monkeypatch.delenv(launch.LAUNCHER_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    multi = ("torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint "
             "HOST:PORT -m simclr pretrain --resume runs/a")  # (a command: no prose inside)
    assert launch.continue_run("runs/a") == multi
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")  # (one machine)
    assert launch.continue_run("runs/a") == \
        "torchrun --nproc_per_node 16 -m simclr pretrain --resume runs/a"
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert launch.again("simclr pretrain --resume runs/a", None, 16, 8) == multi
    assert launch.again("simclr pretrain --resume runs/a", None, 16, None) == \
        "torchrun --nproc_per_node 16 -m simclr pretrain --resume runs/a"  # (recorded before)
    # a launcher of its own that sets no LOCAL_WORLD_SIZE: no machine count is guessed
    # (the fallback, this rank's local rank + 1, is 1 on rank 0: "2 machines" of 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    from simclr import distributed

    assert distributed.machine_processes() is None
    assert launch.continue_run("runs/a") == \
        "torchrun --nproc_per_node 2 -m simclr pretrain --resume runs/a"


# ---------------------------------------- the launcher's own bookkeeping, unit by unit


class _Process:
    """A stand-in for a launched process (subprocess.Popen): its exit status (None:
    running) and the signals sent to it."""

    def __init__(self, returncode: int | None = None) -> None:
        self.returncode = returncode
        self.got: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.got.append(signum)

    def kill(self) -> None:
        self.returncode = -signal.SIGKILL

    def wait(self) -> int | None:
        return self.returncode


FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1")


class _WindowsProcess(_Process):
    """Popen on Windows: send_signal knows SIGTERM (TerminateProcess) and the console's
    CTRL_C_EVENT / CTRL_BREAK_EVENT only; SIGINT is a ValueError."""

    def send_signal(self, signum: int) -> None:
        if signum not in (signal.SIGTERM, getattr(signal, "CTRL_C_EVENT", 0),
                          getattr(signal, "CTRL_BREAK_EVENT", 1)):
            raise ValueError(f"Unsupported signal: {signum}")
        super().send_signal(signum)


def test_a_ctrl_c_on_windows_is_not_forwarded_and_raises_nothing(monkeypatch):
    """Windows: the launcher's Ctrl-C handler sent SIGINT on with Popen.send_signal,
    which raises ValueError there: a traceback, and the launcher's exit killed the
    processes before their checkpoint. The console's Ctrl-C reaches every process
    attached to it already (no sessions there), so it is only remembered as sent; a
    SIGTERM is still sent on (terminate)."""
    monkeypatch.setattr(launch.sys, "platform", "win32")
    processes = [_WindowsProcess(), _WindowsProcess()]
    forward = launch._Forwarder(processes)
    forward._send(signal.SIGINT, None)
    forward._send(signal.SIGTERM, None)
    assert forward.sent == {signal.SIGINT, signal.SIGTERM}
    assert [p.got for p in processes] == [[signal.SIGTERM], [signal.SIGTERM]]


@linux
def test_each_signal_reaches_every_running_process_and_the_handlers_come_back():
    """SIGINT, SIGTERM, SIGHUP and SIGUSR1 (a scheduler's warning before a stop) sent
    to the launcher go to every process still running, each once, and are remembered
    as sent; one already ended gets none; after the launch the launcher's own handlers
    are back (a later Ctrl-C is its own again)."""
    sigs = [getattr(signal, name) for name in FORWARDED]
    own: list[int] = []

    def handler(signum, _frame):
        own.append(signum)

    before = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        processes = [_Process(), _Process(0), _Process()]
        with launch._Forwarder(processes) as forward:
            for sig in sigs:
                os.kill(os.getpid(), sig)
                deadline = time.monotonic() + 5  # (Python runs a handler between bytecodes)
                while sig not in forward.sent and sig not in own:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
        assert (processes[0].got, processes[1].got, processes[2].got) == (sigs, [], sigs)
        assert forward.sent == set(sigs) and own == []
        assert all(signal.getsignal(sig) is handler for sig in sigs)
    finally:
        for sig, previous in before.items():
            signal.signal(sig, previous)


def test_an_error_in_the_launcher_itself_leaves_no_process_running():
    """The launcher itself failing while its processes run (e.g. starting the next one
    failed): those still running are killed, not left training alone."""
    processes = [_Process(), _Process(0)]
    with pytest.raises(RuntimeError, match="launcher"), launch._Forwarder(processes):
        raise RuntimeError("launcher")
    assert [p.returncode for p in processes] == [-signal.SIGKILL, 0]


@linux
def test_a_sigint_the_launcher_inherited_ignored_stays_ignored():
    """A launch started with ``&`` by a script inherits SIGINT ignored: the launcher took
    it back and sent a Ctrl-C meant for the foreground job on to its processes (their
    own session otherwise keeps the terminal's away), as a training alone no longer does."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        processes = [_Process(), _Process()]
        with launch._Forwarder(processes) as forward:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert forward.sent == set() and [p.got for p in processes] == [[], []]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_failure_reported_is_a_user_error_then_a_stop_then_a_kill_then_any_other():
    """_cause's order (each worked out from its docstring): 2 before a stop by a
    forwarded signal (died of it, or exited 128 + it) before a death by another signal
    before any other status; the lowest rank among equals; done (0), preempted (75)
    and running processes are no failure."""
    def cause(statuses, sent=()):
        return launch._cause([_Process(s) for s in statuses], set(sent))

    assert cause([0, 75, None]) is None
    assert cause([1, -signal.SIGKILL, 130, 2], {signal.SIGINT}) == 3
    assert cause([1, -signal.SIGKILL, 130], {signal.SIGINT}) == 2
    assert cause([1, -signal.SIGKILL, -signal.SIGTERM], {signal.SIGTERM}) == 2
    assert cause([1, -signal.SIGKILL, 130]) == 1  # 130 without a Ctrl-C: any status
    assert cause([3, 1, -signal.SIGKILL, 0]) == 2
    assert cause([0, 3, 1]) == 1
    assert cause([75, 1, 3]) == 1


def test_the_exit_status_is_the_one_a_shell_gives(capsys):
    """A death by signal N is 128 + N (a forwarded one said by no line here, another
    named), a process's own status as it is, 75 when any process was preempted and
    none failed, else 0."""
    def wait(statuses, sent=()):
        return launch._wait([_Process(s) for s in statuses], set(sent))

    assert wait([-signal.SIGTERM, 0], {signal.SIGTERM}) == (128 + 15, 0)
    assert wait([-signal.SIGINT, -signal.SIGINT], {signal.SIGINT}) == (128 + 2, 0)
    assert capsys.readouterr().err == ""
    assert wait([0, -signal.SIGKILL]) == (128 + 9, 1)
    assert wait([-signal.SIGTERM, 0]) == (128 + 15, 0)
    assert capsys.readouterr().err == ("simclr: process 1 of 2 was killed by SIGKILL (out of "
                                       "memory?)\nsimclr: process 0 of 2 was killed by "
                                       "SIGTERM\n")
    assert wait([130, 1], {signal.SIGINT}) == (130, 0)
    assert wait([0, 4, 3]) == (4, 1)
    assert wait([0, 75, 0]) == (75, None) and wait([0, 0]) == (0, None)


def test_a_stop_is_said_for_the_processes_that_did_not_say_it():
    """The forwarded signal that ended the run, unless rank 0 said it itself (it exited
    75 with its checkpoint, or 128 + the signal after its own line)."""
    def unsaid(statuses, first, sent):
        return launch._unsaid_stop([_Process(s) for s in statuses], first, set(sent))

    term, sigint = int(signal.SIGTERM), int(signal.SIGINT)
    assert unsaid([-term, -term], 0, {term}) == term
    assert unsaid([1, 130], 1, {sigint}) == sigint
    assert unsaid([75, -term], 1, {term}) is None
    assert unsaid([128 + term, -term], 1, {term}) is None
    assert unsaid([1, -term], 1, set()) is None  # a kill from elsewhere: named already
    assert unsaid([0, 0], None, {term}) is None


def test_the_words_of_a_stop():
    assert [launch._stop_words(getattr(signal, n)) for n in FORWARDED] == [
        "interrupted", "stopped by SIGTERM", "stopped by SIGHUP", "stopped by SIGUSR1"]
    assert [launch._command_name(a) for a in (["pretrain", "--x"], ["--help"], [])] == [
        "simclr pretrain", "simclr", "simclr"]


def test_a_process_done_or_preempted_early_leaves_the_others_running(tmp_path, monkeypatch):
    """Only a failure ends the other processes after the grace time: rank 0 ending
    first, finished (0) or with its checkpoint (75), is not one; rank 1 still saves."""
    monkeypatch.setattr(launch, "GRACE_S", 0.2)
    for status in (0, 75):
        saved = tmp_path / f"saved{status}"
        code = (f"if os.environ['RANK'] == '0': sys.exit({status})\n"
                f"time.sleep(1.5); open(r'{saved}', 'w').close(); sys.exit({status})")
        assert run_cpu(2, _child(code)) == status
        assert saved.exists()


def test_a_printed_command_is_quoted_for_the_users_shell(monkeypatch, tmp_path):
    """A command simclr prints to paste (continue with ..., next: ...) was quoted with
    POSIX single quotes, which cmd.exe and PowerShell keep as part of the path: on
    Windows an argument is put in double quotes where it needs them."""
    monkeypatch.delenv(launch.LAUNCHER_ENV, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert launch.shell_quote("my run") == "'my run'"
    assert launch.shell_quote("runs/a") == "runs/a"
    assert launch.shell_join(["simclr", "info", "it's"]) == "simclr info 'it'\"'\"'s'"
    monkeypatch.setattr(sys, "platform", "win32")
    assert launch.shell_quote("my run") == '"my run"'
    assert launch.shell_quote(r"C:\runs\a") == r"C:\runs\a"
    assert launch.shell_quote("") == '""'
    assert launch.shell_join(["simclr", "knn", r"C:\my runs\"q"]) == \
        r'simclr knn "C:\my runs\\\"q"'
    assert launch.continue_run(r"C:\my runs\r1") == r'simclr pretrain --resume "C:\my runs\r1"'
    # cmd.exe's and PowerShell's own characters: quoted too (a & split the command)
    for special in (r"C:\runs\a&b", r"runs\exp(1)", r"C:\runs\50%off", "a;b", "a,b", "x'y"):
        assert launch.shell_quote(special) == f'"{special}"'
    assert launch.shell_quote("--resume") == "--resume"


def test_a_stopped_evaluations_command_is_quoted_for_windows(monkeypatch):
    """One real message: `simclr info`'s line for an unfinished fine-tuning."""
    from simclr.info_text import _unfinished_line

    monkeypatch.setattr(sys, "platform", "win32")
    line = _unfinished_line({"training": "finetune", "step": 3,
                             "command": ["simclr", "finetune", "--out", "my run"],
                             "cwd": r"C:\Users\me\some where"})
    assert line.endswith(r'; continue with: cd "C:\Users\me\some where" && '
                         'simclr finetune --out "my run"'), line


def test_a_folder_in_use_under_srun_of_several_tasks_says_srun_started_copies(
        tmp_path, monkeypatch):
    """`srun -n 2 simclr pretrain` without torchrun started two independent runs; the
    second was refused 'in use by another simclr run' without a word of why. Only a
    hint in that refusal: a salloc shell has SLURM_NTASKS too, and nothing is refused on
    the SLURM variables alone."""
    from simclr.files import in_use

    for name in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_STEP_ID", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    plain = f"{tmp_path} is in use by another simclr run (pid 1 on h); wait for it to end, " \
            "or choose another --out"
    monkeypatch.setenv("SLURM_NTASKS", "2")  # a salloc shell: no step, no hint
    assert str(in_use(tmp_path, "pid 1 on h")) == plain
    monkeypatch.setenv("SLURM_STEP_ID", "0")  # within srun's step of 2 tasks
    hint = " (srun started 2 copies of the command: start one and give it --processes, " \
           "or run torchrun under srun)"
    assert str(in_use(tmp_path, "pid 1 on h")) == plain + hint
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "3")
    assert str(in_use(tmp_path, "pid 1 on h")).endswith("srun started 3 copies of the "
                                                       "command: start one and give it "
                                                       "--processes, or run torchrun under srun)")
    monkeypatch.setenv("WORLD_SIZE", "3")  # the tasks are one run's processes: no hint
    assert str(in_use(tmp_path, "pid 1 on h")) == plain


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX quoting")
@pytest.mark.parametrize(("path", "word"), [
    ("-r", "./-r"), ("--out", "./--out"), ("runs/-r", "runs/-r"), ("/abs/-r", "/abs/-r"),
    ("my run", "'my run'"), ("-my run", "'./-my run'")])
def test_a_path_in_a_printed_command_never_reads_as_an_option(path, word):
    """`simclr pretrain --resume -r` parses -r as an option where the folder belongs:
    a relative path that starts with '-' is written ./-r in every printed command."""
    assert launch.path_word(path) == word
    assert launch.path_word(Path(path)) == word


@pytest.mark.parametrize(("gpus", "want"), [(0, 1), (3, 3)])
def test_processes_auto_is_one_per_gpu_and_one_without(monkeypatch, gpus, want):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert launch.processes_flag("auto") == want


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX quoting")
def test_a_recorded_command_is_given_a_cd_only_where_typed_elsewhere(tmp_path, monkeypatch):
    """``cd FOLDER && `` precedes a recorded command typed in another folder (its
    relative paths are that folder's); none where typed here or not recorded."""
    elsewhere = tmp_path / "typed there"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    assert launch.typed_in(str(elsewhere)) == f"cd '{elsewhere}' && "
    assert launch.typed_in(os.getcwd()) == ""
    assert launch.typed_in(None) == launch.typed_in("") == ""


def test_one_srun_task_is_no_copies_to_hint_at(monkeypatch):
    """`srun -n 1` (or a step of one task) started one command: no hint."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert launch.srun_copies_hint() == ""
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    assert launch.srun_copies_hint().startswith(" (srun started 2 copies")


def test_processes_on_a_command_with_the_hidden_flag_goes_where_asked():
    """add_flag takes over the hidden --processes of the runtime flags: shown in the
    help, and its value stored under the ``dest`` asked for (a sweep's cells')."""
    import argparse

    from simclr.cli import add_runtime_flags

    parser = argparse.ArgumentParser()
    add_runtime_flags(parser)
    launch.add_flag(parser, dest="cell_processes", what="train each cell")
    args = parser.parse_args(["--processes", "2"])
    assert args.cell_processes == 2 and not hasattr(args, "processes")
    assert "train each cell with N processes" in parser.format_help()


def test_the_users_own_omp_num_threads_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setattr(runtime, "usable_cores", lambda: 6)
    code = f"open(r'{tmp_path}/' + os.environ['RANK'], 'w').write(os.environ['OMP_NUM_THREADS'])"
    assert run_cpu(2, _child(code)) == 0
    assert [(tmp_path / str(r)).read_text() for r in range(2)] == ["5", "5"]


def test_a_rank_variable_outside_a_launch_is_no_quiet_rank(monkeypatch):
    """RANK set by something else than --processes or torchrun: the process speaks."""
    monkeypatch.delenv(launch.ERRORS_ENV, raising=False)
    monkeypatch.delenv(launch.TORCHRUN_ERROR_FILE, raising=False)
    monkeypatch.setenv("RANK", "1")
    assert not launch.quiet_rank()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_after_its_command_a_launched_process_lets_one_signal_pass_and_ends_on_a_second():
    code = ("import os, signal, sys\n"
            "from simclr.launch import ignore_forwarded_signals\n"
            "ignore_forwarded_signals()\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "print('passed', flush=True)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "print('not reached', flush=True)\n")
    env = dict(os.environ, **{launch.LAUNCHER_ENV: str(os.getpid())})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (128 + signal.SIGTERM, "passed\n")


def test_outside_a_launch_a_finished_command_keeps_its_signal_handlers(monkeypatch):
    """A library caller's (or a user's Ctrl-C to a slow exit) handlers stay as they were:
    only a launched process lets a forwarded signal pass."""
    monkeypatch.delenv(launch.LAUNCHER_ENV, raising=False)
    before = {sig: signal.getsignal(sig) for sig in launch._Forwarder.SIGNALS}
    try:
        launch.ignore_forwarded_signals()
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.skipif(not launch._PAUSES, reason="no job-control signals here")
def test_a_pause_the_launcher_inherited_ignored_stays_ignored():
    """A job that may not stop (its Ctrl-Z ignored, as a shell does for a background
    job without job control) is not made stoppable by the launch."""
    sig = launch._PAUSES[0]
    before = signal.signal(sig, signal.SIG_IGN)
    try:
        with launch._Forwarder([_Process()]):
            assert signal.getsignal(sig) is signal.SIG_IGN
        assert signal.getsignal(sig) is signal.SIG_IGN
    finally:
        signal.signal(sig, before)


@linux
def test_a_launched_process_whose_launcher_is_already_gone_ends_at_once():
    """The launcher died before the parent-death signal was asked for (none would
    come): the process ends as if killed with it, and never trains alone."""
    code = "from simclr.launch import die_with_launcher; die_with_launcher(); print('trained')"
    env = dict(os.environ, **{launch.LAUNCHER_ENV: str(os.getpid() + 10**6)})  # not its parent
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (128 + signal.SIGKILL, "")


@linux
def test_a_ctrl_z_the_kernel_discards_leaves_no_process_stopped(tmp_path):
    """A launcher whose group no shell controls (an orphan: here its own session) is
    not stopped by SIGTSTP, the kernel discarding it: the processes it stopped first
    go on with it, not stopped for good while it waits for them."""
    code = ("open(os.environ['RANK'] + '.pid', 'w').write(str(os.getpid()))\n"
            "while not os.path.exists('done'): time.sleep(0.02)")
    proc = _launcher(tmp_path, code)
    children: list[int] = []
    try:
        children = _launched_pids(tmp_path)
        os.kill(proc.pid, signal.SIGTSTP)
        time.sleep(0.5)  # (the launcher's handler has run by now)
        assert "T" not in _states([proc.pid, *children], "", timeout=10)
        (tmp_path / "done").touch()
        assert proc.wait(60) == 0
    finally:
        _kill_left(proc, children)


def test_processes_that_do_not_share_evenly_over_machines_are_one_torchrun():
    """12 processes recorded with 8 on a machine are no whole number of machines: no
    --nnodes is guessed (it would say 1 machine of 8, 4 processes short)."""
    line = launch.again("simclr pretrain --resume runs/a", None, 12, 8)
    assert line == "torchrun --nproc_per_node 12 -m simclr pretrain --resume runs/a"
