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


def test_describe_names_what_one_step_computes():
    cfg = build_config(flags={"model.arch": "resnet50", "model.width": 1.0,
                              "augment.size": 224})
    assert train_setup.describe(cfg, "bf16") == "resnet50 x1, 224 px, bf16"


def test_open_data_keeps_a_resumed_runs_cache_choice_and_its_loose_images(tmp_path,
                                                                          image_folder,
                                                                          cache_dir):
    """--cache auto on resume keeps the choice saved at the start (16-px squares, cached
    by auto, read per epoch where the run started so); --cache off given is kept; images
    beside the class folders count only with ``all_images``."""
    from tests.image_files import rgb, save_image

    save_image(image_folder / "loose.png", rgb(16, 16))
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir))
    assert train_setup.open_data(cfg).cached
    assert not train_setup.open_data(cfg, saved={"cached": False}).cached
    assert train_setup.open_data(cfg, saved={"cached": True}).cached
    off = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        **{"data.cache": "off"}))
    assert not train_setup.open_data(off, saved={"cached": True}).cached
    assert train_setup.open_data(cfg).num_images == 25
    assert train_setup.open_data(cfg, all_images=False).num_images == 24


def test_epoch_batches_follow_the_plan_seed_and_epoch_and_resume_mid_epoch(
        tmp_path, image_folder, cache_dir):
    """Every step of the plan (none past it), each epoch in its own order fixed by the
    seed, and a run resumed at a step gets the very batches it would have had."""
    from simclr.plan import Plan
    from simclr.resume import RunState

    def indices(start: int = 0, seed: int = 0) -> list[list[int]]:
        cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                            seed=seed))
        source = train_setup.open_data(cfg)
        state = RunState(step=start)
        got = []
        for _, idx, _, _ in train_setup.epoch_batches(cfg, source, Plan(3, 6, 0), state,
                                                      torch.device("cpu")):
            got.append(idx.tolist())
            state.step += 1
        return got

    run = indices()
    assert len(run) == 6 and all(len(b) == 8 for b in run)
    assert sorted(sum(run[:3], [])) == sorted(sum(run[3:], [])) == list(range(24))
    assert run[:3] != run[3:]  # (each epoch its own order)
    assert indices(start=4) == run[4:]
    assert indices(seed=1) != run


def test_too_few_readable_images_for_a_batch_stop_an_uncached_run(tmp_path, image_folder,
                                                                  cache_dir):
    """Unreadable files met per epoch that leave fewer readable images than a batch stop
    the run (as many as a batch do not); a cache has left them out already."""
    from simclr.errors import SimCLRError
    from simclr.plan import Plan
    from simclr.resume import RunState

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                        **{"data.cache": "off"}))
    source = train_setup.open_data(cfg)
    source.remember_skipped([(p, "not an image") for p in source.paths[:16]])
    train_setup.check_enough_readable(source, 8)
    with pytest.raises(SimCLRError, match="at least 16 of its 24 image files are unreadable"
                                          r".* at most 8 images, fewer than --batch-size 9"):
        train_setup.check_enough_readable(source, 9)
    source.remember_skipped([(source.paths[16], "not an image")])
    with pytest.raises(SimCLRError, match="fewer than --batch-size 8"):  # (each epoch)
        next(train_setup.epoch_batches(cfg, source, Plan(3, 6, 0), RunState(),
                                       torch.device("cpu")))
    for p in (image_folder / "class_0").iterdir():
        p.write_bytes(b"not an image")
    cached = train_setup.open_data(build_config(flags=tiny_flags(
        image_folder, tmp_path / "run", cache_dir, **{"data.cache": "on"})))
    assert cached.num_images == 12 and len(cached.skipped) == 12
    train_setup.check_enough_readable(cached, 12)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_setup_runtime_sets_threads_the_allocator_and_the_autotuner(tmp_path, image_folder,
                                                                   cache_dir, monkeypatch,
                                                                   device):
    """--threads, glibc's allocator tuned on a CPU, cuDNN's autotuner on CUDA alone
    (without --deterministic)."""
    from simclr.runtime import process_settings_restored

    tuned: list[int] = []
    monkeypatch.setattr(train_setup, "resolve_device", lambda name: torch.device(device))
    monkeypatch.setattr(train_setup, "tune_cpu_allocator", lambda: tuned.append(1))
    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir, threads=2))
    with process_settings_restored():
        torch.backends.cudnn.benchmark = False
        torch.set_num_threads(1)
        assert train_setup.setup_runtime(cfg) == (torch.device(device), "fp32")
        assert torch.get_num_threads() == 2
        assert torch.backends.cudnn.benchmark == (device == "cuda")
    assert tuned == ([1] if device == "cpu" else [])


def test_setup_model_lays_out_channels_last_and_syncs_bn_only_when_asked(
        tmp_path, image_folder, cache_dir, monkeypatch):
    cpu = torch.device("cpu")

    def cfg(**extra):
        return build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir,
                                             memory_check=False, **extra))

    model = train_setup.setup_model(cfg(channels_last=True), cpu)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    converted: list[object] = []
    monkeypatch.setattr(train_setup.dist, "world_size", lambda: 2)
    monkeypatch.setattr(train_setup.dist, "convert_sync_batchnorm",
                        lambda m: converted.append(m) or m)
    train_setup.setup_model(cfg(**{"model.sync_bn": False}), cpu)
    assert converted == []
    train_setup.setup_model(cfg(), cpu)
    assert len(converted) == 1


def test_each_process_takes_its_share_of_the_global_batch(tmp_path, image_folder, cache_dir,
                                                          monkeypatch):
    """--batch-size is the global batch: of 2 processes, each gets half of it per step."""
    from simclr.plan import Plan
    from simclr.resume import RunState

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "run", cache_dir))
    source = train_setup.open_data(cfg)
    monkeypatch.setattr(train_setup.dist, "world_size", lambda: 2)
    _, idx, _, _ = next(train_setup.epoch_batches(cfg, source, Plan(3, 6, 0), RunState(),
                                                  torch.device("cpu")))
    assert len(idx) == cfg.batch_size // 2
