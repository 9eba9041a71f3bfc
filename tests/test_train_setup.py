"""Tests for simclr.train_setup: what pretraining trains with (its device and torch's
process-wide settings; the model, the images and their batches are tested through whole
runs in tests/test_train.py)."""

from __future__ import annotations

import os

import pytest
import torch

from simclr import train_setup
from simclr.settings import build_config
from tests.conftest import tiny_flags


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_deterministic_on_cuda_fixes_cublas_workspace_for_the_run(tmp_path, image_folder,
                                                                  cache_dir, monkeypatch,
                                                                  device):
    """``--deterministic`` on CUDA: torch (before pytorch#161749) raises at the first
    cuBLAS matmul in deterministic mode unless CUBLAS_WORKSPACE_CONFIG fixes its
    workspace, so the run sets it (a value of the user's is kept) and, as it does the
    deterministic switch, restores the environment after (the CPU needs none)."""
    from simclr.runtime import process_settings_restored

    monkeypatch.setattr(train_setup, "resolve_device", lambda name: torch.device(device))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        deterministic=True))
    with process_settings_restored():
        train_setup.setup_runtime(cfg)
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == (
            ":4096:8" if device == "cuda" else None)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own: kept
    with process_settings_restored():
        train_setup.setup_runtime(cfg)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
