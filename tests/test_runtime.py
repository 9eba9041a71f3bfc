"""Device and precision rules shared by every command."""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from simclr import runtime
from simclr.errors import SimCLRError
from tests.conftest import make_image_folder

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: native)
    assert runtime.resolve_precision("auto", CPU) == expected


@pytest.mark.parametrize("device, has_it, warned, auto", [
    (CPU, "cpu_has_fast_bf16", "_warn_emulated_bf16", "fp32"),
    # a GPU without native bf16 (V100, T4) emulates it too, much slower
    (torch.device("cuda"), "cuda_has_native_bf16", "_warn_emulated_cuda_bf16", "fp16"),
])
def test_forced_bf16_without_native_bf16_warns_once_and_is_kept(
        monkeypatch, caplog, device, has_it, warned, auto):
    """An explicit --precision bf16 where the hardware only emulates it is kept, and
    said once per process, naming what 'auto' picks there (and does pick)."""
    monkeypatch.setattr(runtime, has_it, lambda: False)
    getattr(runtime, warned).cache_clear()
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        assert runtime.resolve_precision("bf16", device) == "bf16"
        assert runtime.resolve_precision("bf16", device) == "bf16"  # said once per process
        assert runtime.resolve_precision("auto", device) == auto
    assert caplog.text.count("no native bf16") == 1 and auto in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, has_it, lambda: True)
    getattr(runtime, warned).cache_clear()  # (native: nothing to say, not said already)
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        assert runtime.resolve_precision("bf16", device) == "bf16"
        assert runtime.resolve_precision("fp32", device) == "fp32"
    assert caplog.text == ""


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(SimCLRError, match="fp16 needs a GPU"):
        runtime.resolve_precision("fp16", CPU)


def test_unknown_device_is_one_line():
    with pytest.raises(SimCLRError, match="--device: unknown device 'gpu0'"):
        runtime.resolve_device("gpu0")


def test_a_stop_names_its_signal_or_another_process():
    from simclr.runtime import stopped_by

    assert stopped_by("SIGTERM") == "stopped by SIGTERM"
    # Under torchrun the signal may have reached another process only.
    assert stopped_by(None) == "stopped by a signal to another process"


def test_a_failed_command_exits_though_its_loader_workers_ignore_sigterm(tmp_path):
    """Loader workers ignore SIGTERM (the scheduler's, sent to the whole group), which
    multiprocessing sends them at exit: a command that failed with workers alive must
    still end, with its one-line error and no traceback."""
    import subprocess
    import sys

    from simclr.cli import main

    for cls in ("a", "b"):
        (tmp_path / "bad" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "bad" / cls / f"{i}.jpg").write_text("not a picture")
    data = make_image_folder(tmp_path / "good")
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "pre"), "--arch",
                 "resnet18", "--width", "0.125", "--image-size", "16", "--batch-size", "8",
                 "--max-steps", "1", "--no-progress", "--workers", "0", "--precision", "fp32",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "simclr", "embed", "--checkpoint", str(tmp_path / "pre"),
         "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "f.npz"), "--workers", "2",
         "--cache-dir", str(tmp_path / "cache"), "--precision", "fp32", "--batch-size", "2"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("simclr embed: error: all 6 images are unreadable")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_a_first_signal_asks_for_a_stop_and_a_second_ctrl_c_interrupts_at_once():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with runtime.StopFlag() as stop:
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, before[signal.SIGTERM])
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # a scheduler that repeats itself: still a request
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    with runtime.StopFlag() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_first_stop_signal_says_once_that_a_checkpoint_is_coming(capsys, monkeypatch):
    """The first Ctrl-C printed nothing: during a slow step a second press, which stops
    at once, threw away everything since the last checkpoint."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with runtime.StopFlag() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested == "SIGINT"
        assert capsys.readouterr().err == (
            "simclr: SIGINT received: stopping after this step to save a checkpoint "
            "(Ctrl-C again stops now, without saving)\n")
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    with runtime.StopFlag() as stop:  # a scheduler's: no keys to press again
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        assert capsys.readouterr().err == (
            "simclr: SIGTERM received: stopping after this step to save a checkpoint\n")
    monkeypatch.setenv("LOCAL_RANK", "1")  # a launch's other processes share the stderr
    with runtime.StopFlag() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested == "SIGTERM" and capsys.readouterr().err == ""


def test_a_stop_signal_with_stderr_closed_is_still_a_stop_request(monkeypatch):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with runtime.StopFlag() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested == "SIGTERM"


def test_a_sigint_inherited_ignored_stays_ignored_during_a_training():
    """A job started with ``&`` by a non-interactive shell inherits SIGINT ignored, as
    ``nohup`` leaves SIGHUP: a training took SIGINT back (SIGHUP it left alone), so a
    Ctrl-C meant for the shell's foreground job stopped it."""
    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with runtime.StopFlag() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
            signal.raise_signal(signal.SIGINT)
            assert stop.requested is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_landing_in_a_weakref_callback_during_a_training_is_not_lost():
    """A first Ctrl-C is a stop request wherever it lands; a second one, raised inside a
    weakref callback (importlib runs one at every import), was printed as 'Exception
    ignored' and lost: the training went on to its end. The hook is put back after."""
    import time

    from tests.conftest import signal_in_a_weakref_callback

    hook = sys.unraisablehook
    with runtime.StopFlag() as stop:
        signal_in_a_weakref_callback(signal.SIGINT)
        assert stop.requested == "SIGINT"
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            signal_in_a_weakref_callback(signal.SIGINT)
            time.sleep(5)  # the training's next steps: never reached to their end
        assert time.monotonic() - started < 4  # (10 s when torch waits for them)
    assert sys.unraisablehook is hook


def test_a_ctrl_c_while_loader_workers_stop_is_delivered_once_they_have():
    """Left to DataLoader.__del__, a Ctrl-C landing while the workers of a finished
    extraction stop was printed as 'Exception ignored' and lost (the command went on)."""
    from torch.utils.data import DataLoader

    def finished_with_a_ctrl_c_in_its_shutdown():
        batches = iter(DataLoader(list(range(8)), batch_size=4, num_workers=1))
        assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        stop = batches._shutdown_workers

        def pressed_meanwhile():
            signal.raise_signal(signal.SIGINT)  # held: nothing raised inside the shutdown
            stop()

        batches._shutdown_workers = pressed_meanwhile
        return batches

    before = signal.getsignal(signal.SIGINT)
    batches = finished_with_a_ctrl_c_in_its_shutdown()
    with pytest.raises(KeyboardInterrupt):
        runtime.close_loader_iterator(batches)
    del batches._shutdown_workers  # (its own again, for its __del__)
    assert signal.getsignal(signal.SIGINT) is before and batches._shutdown
    with runtime.StopFlag() as flag:  # during training a Ctrl-C is a request to stop
        batches = finished_with_a_ctrl_c_in_its_shutdown()
        runtime.close_loader_iterator(batches)
        del batches._shutdown_workers
        assert flag.requested == "SIGINT" and batches._shutdown
    runtime.close_loader_iterator(iter(DataLoader([1, 2])))  # no workers: nothing to stop


def test_closing_a_loader_where_python_holds_no_sigint_handler_stops_its_workers(monkeypatch):
    """At interpreter shutdown (a loader iterator closed from a finalizer) Python has
    cleared its handlers: signal.signal returns None for SIGINT's previous one, which
    cannot be set back ("TypeError: signal handler must be signal.SIG_IGN, ...")."""
    real = signal.signal
    before = signal.getsignal(signal.SIGINT)

    def not_from_python(signum: int, handler: object) -> object:
        real(signum, handler)
        return None  # as for a handler that was not installed from Python

    stopped: list[bool] = []

    class Finished:
        def _shutdown_workers(self) -> None:
            stopped.append(True)

    monkeypatch.setattr(signal, "signal", not_from_python)
    try:
        runtime.close_loader_iterator(Finished())
    finally:
        real(signal.SIGINT, before)
    assert stopped == [True]


class _SlowAfterTwo(torch.utils.data.Dataset):
    """Items 0 and 1 at once, the others each after ``seconds``: a loader's workers,
    once its first batch came, are decoding slow ones (a batch of large photos)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        if i >= 2:
            import time

            time.sleep(self.seconds)
        return i


def _workers_mid_batch(seconds: float) -> tuple[object, list]:
    """A DataLoader iterator whose two workers (ignoring SIGINT/SIGTERM, as simclr's)
    are each decoding an item of ``seconds``; and those workers."""
    from torch.utils.data import DataLoader

    batches = iter(DataLoader(_SlowAfterTwo(seconds), batch_size=1, num_workers=2,
                              worker_init_fn=runtime.ignore_stop_signals))
    assert next(batches).tolist() == [0]
    return batches, list(batches._workers)


def test_loader_workers_are_killed_when_a_ctrl_c_or_sigterm_stops_the_command():
    """A command stopping at once (Ctrl-C, SIGTERM outside a training) waited for each
    worker's batch, 5 s, then 5 s more after the SIGTERM it ignores; a training's stop
    request (no exception) lets the workers finish theirs and exit."""
    import time

    from simclr.interrupts import Terminated

    for interruption in (KeyboardInterrupt, Terminated):
        batches, workers = _workers_mid_batch(30)
        started = time.monotonic()
        try:
            raise interruption
        except KeyboardInterrupt:
            runtime.close_loader_iterator(batches)
        assert time.monotonic() - started < 4  # (10 s when torch waits for them)
        time.sleep(0.1)  # (torch's SIGCHLD handler would have raised on a listed worker)
        assert [w.exitcode for w in workers] == [-signal.SIGKILL] * 2
    try:  # raised over the interruption: a generator closed by it (GeneratorExit)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise GeneratorExit  # noqa: B904 (over the Ctrl-C, as a generator it closes)
    except GeneratorExit:
        batches, workers = _workers_mid_batch(30)
        runtime.close_loader_iterator(batches)
        assert [w.exitcode for w in workers] == [-signal.SIGKILL] * 2
    batches, workers = _workers_mid_batch(0.2)
    runtime.close_loader_iterator(batches)
    assert [w.exitcode for w in workers] == [0, 0]


def test_more_threads_than_cores_are_said(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    with caplog.at_level(logging.WARNING):
        runtime.set_threads(2)
        assert caplog.text == ""
        runtime.set_threads(3)  # one more than the cores: said
        assert "--threads 3 is more than the 2 CPU core(s)" in caplog.text
        runtime.set_threads(1000)
    assert "note: --threads 1000 is more than the 2 CPU core(s) this process may use" in \
        caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # (a sweep's evaluation: its training said it)
        runtime.set_threads(3, quiet=True)
    assert caplog.text == ""


def test_a_second_ctrl_c_during_pretraining_exits_130_without_a_checkpoint(tmp_path,
                                                                           monkeypatch, capsys):
    from simclr import train
    from simclr.cli import main

    seen = []

    def ctrl_c_twice(step, stop):
        signal.raise_signal(signal.SIGINT)
        seen.append(stop.requested)  # the first only asks for a stop
        signal.raise_signal(signal.SIGINT)
        seen.append("not interrupted")

    monkeypatch.setattr(train, "pretrain", functools.partial(train.pretrain,
                                                             on_step=ctrl_c_twice))
    before = signal.getsignal(signal.SIGINT)
    data = make_image_folder(tmp_path / "images")
    try:
        code = main(["pretrain", "--data", str(data), "--out", str(tmp_path / "pre"), "--arch",
                     "resnet18", "--width", "0.125", "--image-size", "16", "--batch-size", "8",
                     "--max-steps", "3", "--no-progress", "--workers", "0", "--precision",
                     "fp32", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    except KeyboardInterrupt:
        pytest.fail("the interruption escaped main()")
    assert code == 130 and seen == ["SIGINT"]
    assert capsys.readouterr().err.endswith(
        "simclr pretrain: interrupted; no checkpoint was saved\n")
    assert not list((tmp_path / "pre" / "checkpoints").glob("*.pt"))
    assert not (tmp_path / "pre" / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_periodic_saves_come_by_step_count_or_by_the_clock(monkeypatch):
    """Every `every` steps (also the last), else once `every_s` seconds passed since the
    last save of either kind (never at the last step); the clock restarts at each."""
    import simclr.runtime as runtime

    now = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: now[0])
    schedule = runtime.SaveSchedule(every=4, every_s=10.0)
    rules = []
    for step, t in ((1, 5.0), (2, 10.0), (3, 15.0), (4, 18.0), (5, 27.0), (6, 28.0),
                    (7, 40.0), (8, 41.0)):
        now[0] = t
        rules.append(schedule.due(step, final=step == 8))
    assert rules == [None, "clock", None, "steps", None, "clock", "clock", "steps"]
    now[0] = 100.0
    assert runtime.SaveSchedule(every=0, every_s=10.0).due(9, final=True) is None
    clock = runtime.SaveSchedule(every=0, every_s=10.0)  # its clock started at 100 s
    now[0] = 130.0  # due by the clock, but the last step's checkpoint is written anyway
    assert clock.due(9, final=True) is None
    assert clock.due(9) == "clock"
    assert runtime.SaveSchedule(every=0, every_s=0.0).due(9) is None


# ---------------------------------------------------- GPU rules (CUDA faked: no GPU here)


def _gpus(monkeypatch, count: int) -> list[torch.device]:
    """``count`` GPUs, as far as torch.cuda says; returns the devices set as current."""
    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


def test_auto_picks_fp16_on_gpus_that_only_emulate_bf16(monkeypatch):
    """torch's is_bf16_supported() counts emulation (V100, T4): slow, so fp16 + scaler."""
    native = {"value": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or native["value"])
    cuda = torch.device("cuda", 0)
    assert runtime.resolve_precision("auto", cuda) == "fp16"
    native["value"] = True
    assert runtime.resolve_precision("auto", cuda) == "bf16"


def test_each_process_takes_its_own_gpu_or_is_told_why_not(monkeypatch):
    current = _gpus(monkeypatch, 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.resolve_device("auto") == torch.device("cuda", 1)
    assert runtime.resolve_device("cuda") == torch.device("cuda", 1)
    assert runtime.resolve_device("cpu") == CPU
    with pytest.raises(SimCLRError, match="--device cuda:0: with several processes each uses "
                                          "its own GPU"):
        runtime.resolve_device("cuda:0")
    # three processes on two GPUs: every process refuses, with the same message as the
    # launcher's check before it starts them
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    for rank in ("0", "2"):
        monkeypatch.setenv("LOCAL_RANK", rank)
        with pytest.raises(SimCLRError, match=r"3 processes on a machine with 2 GPU\(s\)"):
            runtime.resolve_device("auto")
    assert runtime.resolve_device("cpu") == CPU  # CPU processes beside the GPUs
    # one process per machine (multi-node) may name its GPU
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert runtime.resolve_device("cuda:1") == torch.device("cuda", 1)
    # and makes it the current one: nothing lands on GPU 0 (pinned memory, generators)
    assert current == [torch.device("cuda", 1)]
    with pytest.raises(SimCLRError, match=r"--device cuda:2: no such GPU \(2 visible"):
        runtime.resolve_device("cuda:2")


def test_launching_more_processes_than_gpus_is_refused_unless_on_the_cpu(monkeypatch):
    from simclr.runtime import check_gpu_per_process

    _gpus(monkeypatch, 2)
    check_gpu_per_process("auto", 2)
    check_gpu_per_process("cpu", 4)
    check_gpu_per_process("cuda:1", 1)
    with pytest.raises(SimCLRError, match=r"^3 processes on a machine with 2 GPU\(s\): each "
                                          r"needs a GPU of its own; start at most 2, or use "
                                          r"--device cpu$"):
        check_gpu_per_process("cuda", 3)
    with pytest.raises(SimCLRError, match="--device cuda:1: with several processes each"):
        check_gpu_per_process("cuda:1", 2)
    _gpus(monkeypatch, 0)
    check_gpu_per_process("auto", 8)  # no GPU: CPU processes


def test_gpu_allocation_failures_of_cublas_and_cudnn_are_out_of_memory():
    from simclr.memory import is_allocation_failure

    assert is_allocation_failure(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when "
                                              "calling `cublasCreate(handle)`"))
    assert is_allocation_failure(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_allocation_failure(RuntimeError("CUDA error: an illegal memory access"))


def test_an_unknown_precision_is_refused_not_run_in_fp16():
    """The library's callers pass a string the flags would have checked: 'float32' ran
    under fp16 autocast on the CPU, past the fp16-needs-a-GPU check."""
    from simclr.runtime import resolve_precision

    for name in ("float32", "FP32", "fp8", ""):
        with pytest.raises(SimCLRError, match=rf"--precision: unknown value {name!r} \(choose "
                                              r"from auto, fp32, bf16, fp16\)"):
            resolve_precision(name, torch.device("cpu"))


def _cleans_up_on_sigterm(path):
    import sys
    import time

    signal.signal(signal.SIGTERM, lambda *a: (open(path, "w").write("cleaned"), sys.exit(0)))
    while True:
        time.sleep(0.05)


def _turns_deaf_on_sigterm():
    import time

    # as a worker that set SIG_IGN between the exit hook's look and its SIGTERM
    signal.signal(signal.SIGTERM, lambda *a: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    while True:
        time.sleep(0.05)


def test_at_exit_loader_workers_are_killed_and_the_programs_own_children_clean_up(tmp_path):
    """The exit hook SIGKILLed every daemonic child: a program's own process died
    without the SIGTERM clean-up multiprocessing's exit gives it. Only those that
    ignore SIGTERM (simclr's workers; one that just set it is found on a second look)
    are killed: multiprocessing would wait on them forever."""
    import multiprocessing
    import time

    fork = multiprocessing.get_context("fork")
    theirs = fork.Process(target=_cleans_up_on_sigterm, args=(tmp_path / "x",), daemon=True)
    late = fork.Process(target=_turns_deaf_on_sigterm, daemon=True)
    theirs.start()
    late.start()
    loader = torch.utils.data.DataLoader(range(4), num_workers=1,
                                         worker_init_fn=runtime.ignore_stop_signals)
    batches = iter(loader)
    next(batches)
    time.sleep(0.3)  # (the children's handlers in place)
    ours = [c for c in multiprocessing.active_children() if c.pid not in (theirs.pid, late.pid)]
    previous = signal.getsignal(signal.SIGCHLD)
    try:
        assert len(ours) == 1 and runtime._ignores_sigterm(ours[0].pid)
        assert not runtime._ignores_sigterm(theirs.pid)
        runtime._kill_daemons_at_exit()
        for child in (ours[0], theirs, late):
            child.join(10)
        assert (ours[0].exitcode, late.exitcode) == (-signal.SIGKILL, -signal.SIGKILL)
        assert theirs.exitcode == 0 and (tmp_path / "x").read_text() == "cleaned"
    finally:
        signal.signal(signal.SIGCHLD, previous)
        for child in (theirs, late):
            child.kill()
            child.join()
        del batches


def test_the_command_line_is_recorded_as_typed(monkeypatch):
    """The processes of --processes run simclr/__main__.py: their start event read
    '/.../simclr/__main__.py pretrain ...' for `simclr pretrain ...`."""
    monkeypatch.setattr(runtime, "COMMAND_LINE", None)
    for program in ("/work/simclr/simclr/__main__.py", "/venv/bin/simclr"):
        monkeypatch.setattr(sys, "argv", [program, "pretrain", "--processes", "2"])
        assert runtime.provenance()["argv"] == ["simclr", "pretrain", "--processes", "2"]
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pytest", "-x"])  # simclr as a library
    assert runtime.command_line() is None and runtime.provenance()["argv"] == sys.argv


def test_the_settings_restore_never_hides_a_ctrl_c(monkeypatch):
    """A Ctrl-C during a lazy import of torch's compiler stack (while the model is
    built) left it half-imported; the restore's deterministic switch then imported it
    and an AttributeError replaced the interrupt (a traceback instead of 'interrupted').
    A switch the run did not change is not touched; one it did is put back."""
    from simclr.runtime import process_settings_restored

    def broken(*args, **kwargs):
        raise AttributeError("module 'sympy' has no attribute 'logic'")

    before = torch.are_deterministic_algorithms_enabled()
    monkeypatch.setattr(torch, "use_deterministic_algorithms", broken)
    with pytest.raises(KeyboardInterrupt), process_settings_restored():
        raise KeyboardInterrupt  # nothing changed: the switch is not called
    with process_settings_restored():
        pass
    monkeypatch.undo()
    benchmark = torch.backends.cudnn.benchmark
    with pytest.raises(KeyboardInterrupt), process_settings_restored():
        torch.use_deterministic_algorithms(not before)
        torch.backends.cudnn.benchmark = not benchmark
        monkeypatch.setattr(torch, "use_deterministic_algorithms", broken)
        raise KeyboardInterrupt  # changed, and its restore fails: the interrupt still wins
    assert torch.backends.cudnn.benchmark == benchmark  # the others are still put back
    monkeypatch.undo()
    torch.use_deterministic_algorithms(before)
    with process_settings_restored():
        torch.use_deterministic_algorithms(not before, warn_only=True)
    assert torch.are_deterministic_algorithms_enabled() == before


def _commit_all(repo):
    import subprocess

    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_git_commit_is_the_packages_own_and_says_uncommitted_changes(tmp_path):
    """A package installed into a .venv inside a user's own git project recorded that
    project's commit as simclr's; changes not committed were not said."""
    import subprocess

    project = tmp_path / "project"
    package = project / ".venv" / "site-packages" / "simclr"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text(".venv/\n")
    _commit_all(project)
    assert runtime.git_state(package) == (None, None)  # (the project's, not the package's)

    checkout = tmp_path / "checkout"
    (checkout / "simclr").mkdir(parents=True)
    (checkout / "simclr" / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    sha = _commit_all(checkout)
    assert runtime.git_state(checkout / "simclr") == (sha, False)
    (checkout / "simclr" / "__init__.py").write_text("changed = True\n")
    assert runtime.git_state(checkout / "simclr") == (sha, True)
    assert runtime.git_state(tmp_path) == (None, None)  # no repository at all


LEAVES_WORKERS = """
import sys
import numpy as np
from simclr.config import DataConfig
from simclr.data import open_source
from simclr.features import iter_batches

source = open_source(sys.argv[1], DataConfig(cache="off", workers=2), train=False,
                     image_size=16)
batches = iter_batches(source, np.arange(source.num_images), 2, workers=2,
                       keep_workers=sys.argv[2] == "keep")
next(batches), next(batches)  # (each worker has sent a batch, then the program ends)
print("read")
"""


@pytest.mark.parametrize("keep", ["keep", "own"])
def test_loader_workers_killed_at_exit_leave_no_temp_folder(tmp_path, keep):
    """A worker sending its first batch made its own $TMPDIR/pymp-XXXXXXXX (torch shares
    a batch by file descriptor: multiprocessing's resource sharer listens there), which
    only its own exit removed: a command ended (a stop, an error) with its workers
    running SIGKILLs them (_kill_daemons_at_exit), and the empty folders stayed. They
    use the main process's, removed at its exit."""
    import os
    import subprocess

    root = make_image_folder(tmp_path / "data", classes=2, per_class=4)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", LEAVES_WORKERS, str(root), keep], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "read\n", done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_apples_gpu_is_refused_in_one_message_wherever_the_device_is_read():
    """``--device mps`` (a Mac's torch has it) was "unknown device" to pretrain's
    settings and "simclr runs on cpu or cuda" to the evaluation commands: one message
    now, naming MPS as unsupported and what is."""
    from simclr.settings import build_config

    said = "--device mps: Apple's GPU (MPS) is not supported; simclr runs on"
    with pytest.raises(SimCLRError) as evaluation:
        runtime.resolve_device("mps")
    with pytest.raises(SimCLRError) as pretraining:
        build_config(flags={"device": "mps"})
    assert str(evaluation.value) == str(pretraining.value)
    assert str(evaluation.value).startswith(said)
    assert "(auto, cpu, cuda, cuda:N)" in str(evaluation.value)
    with pytest.raises(SimCLRError, match="--eval-device mps:0: Apple's GPU"):
        runtime.resolve_device("mps:0", "--eval-device")


def test_auto_on_a_mac_says_once_that_it_uses_the_cpu(monkeypatch, caplog):
    """Where torch sees Apple's GPU, --device auto still picks the CPU: said once, as a
    note, so the run's speed is no surprise."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    runtime._note_cpu_not_mps.cache_clear()
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        assert runtime.resolve_device("auto") == CPU
        assert runtime.resolve_device("auto") == CPU
        assert runtime.resolve_device("cpu") == CPU  # asked for: nothing to say
    assert caplog.text.count("note: --device auto: this run uses the CPU") == 1
    assert "MPS" in caplog.text and "\n" == caplog.text[-1] and caplog.text.count("\n") == 1
    caplog.clear()
    runtime._note_cpu_not_mps.cache_clear()
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        runtime.resolve_device("auto")
    assert caplog.text == ""


def test_a_device_torch_knows_but_simclr_does_not_run_on_is_refused(monkeypatch):
    """torch's other device names (meta, xpu, ...) are as unknown as a typo: refused in
    one line, never run on the CPU instead."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SimCLRError, match="--device: unknown device 'meta'"):
        runtime.resolve_device("meta")


def test_cpu_with_an_index_is_the_cpu_where_a_gpu_is_present(monkeypatch):
    """--device cpu:0 on a machine with CUDA is the CPU, not the process's GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert runtime.resolve_device("cpu:0") == CPU
    assert runtime.resolve_device("cpu") == CPU


def test_the_cpu_asked_for_on_a_mac_is_not_explained(monkeypatch, caplog):
    """--device cpu is the user's choice: the note that 'auto' passes over Apple's GPU
    is for 'auto' alone (even as the first device resolved in the process)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    runtime._note_cpu_not_mps.cache_clear()
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        assert runtime.resolve_device("cpu") == CPU
    runtime._note_cpu_not_mps.cache_clear()
    assert caplog.text == ""


@pytest.mark.parametrize(("flags", "native"), [
    ("fpu sse avx2", False), ("fpu avx512f avx512_bf16 avx2", True),
    ("fpu avx2 amx_tile amx_bf16", True)])
def test_the_cpus_native_bf16_is_avx512_bf16_or_amx(monkeypatch, flags, native):
    """The CPU flags that make bf16 'auto''s choice: AVX512-BF16 or AMX's bf16."""

    class CpuInfo:
        def __init__(self, _path: str) -> None:
            pass

        def read_text(self, encoding: str) -> str:
            return f"processor\t: 0\nflags\t\t: {flags}\n"

    monkeypatch.setattr(runtime, "Path", CpuInfo)
    runtime.cpu_has_fast_bf16.cache_clear()
    try:
        assert runtime.cpu_has_fast_bf16() is native
    finally:
        runtime.cpu_has_fast_bf16.cache_clear()


@pytest.mark.parametrize(("precision", "dtype"), [
    ("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)])
def test_autocast_runs_a_matmul_in_the_precisions_own_type(precision, dtype):
    """--precision bf16 computes in bfloat16, fp16 in float16, fp32 without autocast."""
    a = torch.ones(4, 4)
    with runtime.autocast(CPU, precision):
        assert (a @ a).dtype == dtype


def test_loader_workers_ignore_ctrl_c_as_well_as_the_stop_signals():
    """A Ctrl-C reaches the whole foreground process group: the workers leave it to the
    main process (which saves a checkpoint), as they do SIGTERM, SIGHUP and SIGUSR1."""
    from simclr.interrupts import STOP_SIGNALS

    taken = (*STOP_SIGNALS, signal.SIGINT)
    before = {sig: signal.getsignal(sig) for sig in taken}
    try:
        runtime.ignore_stop_signals()
        assert all(signal.getsignal(sig) is signal.SIG_IGN for sig in taken)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize(("method", "guard"), [(None, False), ("fork", False), ("spawn", True)])
def test_a_dead_loader_worker_names_the_script_guard_only_under_spawn(monkeypatch, method,
                                                                      guard):
    """A worker's death suggests fewer --workers; the `if __name__ == "__main__":` hint
    comes only where workers import the script (spawn, forkserver), not under fork nor
    before any start method was chosen (Linux's default, fork)."""
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: method)
    error = runtime.worker_death(RuntimeError("DataLoader worker (pid 12) is killed by "
                                              "signal: Killed. "))
    assert error is not None and str(error).startswith(
        "a data-loading worker process (pid 12) is killed by signal: Killed (")
    assert "fewer --workers" in str(error) and (runtime.SCRIPT_GUARD in str(error)) is guard


def test_a_child_whose_signal_mask_cannot_be_read_is_taken_to_ignore_sigterm(monkeypatch):
    """Without /proc (macOS) a daemonic child is taken to ignore SIGTERM, as simclr's
    loader workers do: killed at exit, never waited on."""
    def no_proc(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(runtime, "open", no_proc, raising=False)
    assert runtime._ignores_sigterm(12345) is True


def test_another_packages_main_module_is_no_simclr_command_line(monkeypatch):
    """`python -m otherpackage` (its __main__.py) running simclr as a library records
    its own argv, not a made-up `simclr ...` line."""
    monkeypatch.setattr(runtime, "COMMAND_LINE", None)
    monkeypatch.setattr(sys, "argv", ["/venv/lib/otherpackage/__main__.py", "--fast"])
    assert runtime.command_line() is None
    assert runtime.provenance()["argv"] == ["/venv/lib/otherpackage/__main__.py", "--fast"]


def test_provenance_records_the_command_given_to_main_the_git_state_and_threads(monkeypatch):
    monkeypatch.setattr(runtime, "COMMAND_LINE", ["simclr", "info", "run"])
    monkeypatch.setattr(runtime, "git_state", lambda: ("abc123", True))
    facts = runtime.provenance()
    assert facts["argv"] == ["simclr", "info", "run"] == runtime.command_line()
    assert facts["git_sha"] == "abc123" and facts["git_dirty"] is True
    assert facts["cpu_threads"] == torch.get_num_threads()


def test_no_threads_asked_for_leave_torchs_own(monkeypatch):
    before = torch.get_num_threads()
    runtime.set_threads(0)
    runtime.set_threads(None)
    assert torch.get_num_threads() == before


def test_a_stop_request_on_a_terminal_starts_a_line_of_its_own(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    runtime.say_stop_requested(signal.SIGTERM)
    assert sys.stderr.getvalue() == ("\nsimclr: SIGTERM received: stopping after this step "
                                     "to save a checkpoint\n")


def test_deterministic_cuda_keeps_the_users_cublas_workspace_and_the_restore_puts_it_back(
        monkeypatch):
    for users, during in ((":16:8", ":16:8"), (None, runtime.CUBLAS_WORKSPACE)):
        if users is None:
            monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        else:
            monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", users)
        with runtime.process_settings_restored():
            runtime.use_deterministic_algorithms(torch.device("cuda"))
            assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == during
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":0:0"
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
            flipped = torch.backends.cudnn.benchmark
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == users
        assert torch.backends.cudnn.benchmark is not flipped
        assert not torch.are_deterministic_algorithms_enabled()
