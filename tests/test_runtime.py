"""Device and precision rules shared by every command."""

from __future__ import annotations

import logging

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


def test_forced_bf16_on_a_cpu_without_it_warns_and_is_kept(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    runtime._warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        assert runtime.resolve_precision("bf16", CPU) == "bf16"
        assert runtime.resolve_precision("bf16", CPU) == "bf16"  # said once per process
    assert caplog.text.count("no native bf16") == 1 and "fp32" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="simclr.runtime"):
        assert runtime.resolve_precision("bf16", CPU) == "bf16"
        assert runtime.resolve_precision("fp32", CPU) == "fp32"
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
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("simclr embed: error: all 6 images are unreadable")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
