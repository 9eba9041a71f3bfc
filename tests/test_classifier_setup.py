"""Tests for simclr.classifier_setup: what a classifier training is set up with (its
optimizer, schedule, length, crop + flip views and the labeled batches drawn from them,
a new linear head, the memory check of its batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simclr.classifier_setup import (
    augmented_batches,
    crop_flip_config,
    nesterov_sgd,
    scheduled_lr,
)
from simclr.errors import SimCLRError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nesterov_sgd_against_two_steps_by_hand():
    """Fine-tuning's and the SGD linear protocol's optimizer (App. B.5, B.6): Nesterov
    momentum, no weight decay, lr x B/256. Two steps computed by hand in float64:
    buf = m buf + g; w -= peak (g + m buf)."""
    w0 = np.array([3.0, -2.0, 0.5])
    grads = [np.array([0.1, -0.4, 0.2]), np.array([-0.3, 0.05, 0.6])]
    lr, batch, m = 0.05, 1024, 0.9
    peak = lr * batch / 256  # 0.2
    w = torch.nn.Parameter(torch.tensor(w0))
    optimizer = nesterov_sgd([w], lr, batch, m)
    expect, buf = w0.copy(), np.zeros(3)
    for g in grads:
        w.grad = torch.tensor(g)
        optimizer.step()
        buf = m * buf + g
        expect = expect - peak * (g + m * buf)
        np.testing.assert_allclose(w.detach().numpy(), expect, rtol=0, atol=1e-12)
    assert optimizer.param_groups[0]["peak_lr"] == pytest.approx(0.2)
    assert optimizer.param_groups[0]["weight_decay"] == 0.0  # large weights: no pull
    # --momentum 0: plain SGD (torch refuses Nesterov without momentum: a traceback)
    w = torch.nn.Parameter(torch.tensor(w0))
    optimizer = nesterov_sgd([w], lr, batch, 0.0)
    w.grad = torch.tensor(grads[0])
    optimizer.step()
    np.testing.assert_allclose(w.detach().numpy(), w0 - peak * grads[0], rtol=0, atol=1e-12)


def test_crop_flip_views_keep_every_colour():
    """The evaluations' training views are crop + flip only: a one-colour picture comes
    out that colour in every view (colour jitter or grayscale would change it), and
    neither blur nor the Fig. 5 extras are on."""
    from simclr.augment import TwoViewAugment

    cfg = crop_flip_config(16)
    assert not (cfg.color or cfg.grayscale or cfg.blur or cfg.cutout or cfg.rotate
                or cfg.noise or cfg.sobel) and cfg.crop and cfg.flip
    colour = torch.tensor([200, 40, 90], dtype=torch.uint8)
    images = colour.view(1, 3, 1, 1).expand(64, 3, 24, 24).contiguous()
    views = TwoViewAugment(cfg, seed=0).stacked(images, np.arange(64), epoch=0)
    assert views.shape == (128, 3, 16, 16)
    expected = (colour.float() / 255).view(1, 3, 1, 1).expand_as(views)
    torch.testing.assert_close(views, expected, rtol=0, atol=1e-5)


def test_schedules_have_no_warm_up():
    cosine = [scheduled_lr(s, 10, 0.4) for s in range(11)]
    assert cosine[0] == 0.4 and cosine[5] == pytest.approx(0.2) and cosine[10] == 0.0
    assert cosine[3] == pytest.approx(0.2 * (1 + np.cos(np.pi * 0.3)))
    assert [scheduled_lr(s, 10, 0.4, "constant") for s in (0, 9)] == [0.4, 0.4]


def test_a_refused_step_names_the_global_batch_of_all_processes(monkeypatch):
    """--batch-size is the global batch: under 2 processes the refusal named each
    process's share (`--batch-size 32` for a typed 64) and a batch 1/2 of the one that
    fits. Now the batch typed, each process's views, and a global batch that fits, as
    pretraining's."""
    import simclr.classifier_setup
    from simclr import distributed, memory
    from simclr.classifier_setup import check_classifier_step
    from simclr.memory import StepMemory

    mib = 2.0**20
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(memory, "_ram_is_total", lambda: False)  # (refused at 2.5x)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 40 * mib)
    monkeypatch.setattr(simclr.classifier_setup, "measure_step", lambda *a, **k: StepMemory(
        fixed=0.0, per_view=mib, state=0.0, input_per_view=0.0, contrastive=False))
    # 32 views of 1 MiB per process, 2.5x over 40 MiB; 16 per process fit: 32 in all.
    with pytest.raises(SimCLRError, match=r"^--batch-size 64 does not fit: one step of "
                                          r"supervised, 32 px, fp32 needs at least 32 MiB "
                                          r"\(32 views per process, 1\.00 MiB each, .*; try "
                                          r"--batch-size 32 \(--no-memory-check skips"):
        check_classifier_step(torch.nn.Identity(), 32, 64, torch.device("cpu"), "fp32",
                              False, "supervised", override="--no-memory-check")


def test_a_new_classifier_leaves_the_callers_rng_alone():
    """nn.Linear's default init drew from torch's global RNG before its weights were
    overwritten from the protocol's own generator: a linear evaluation moved the
    caller's random state (kNN, embedding and loading leave it alone)."""
    from simclr.classifier_setup import init_linear

    before = torch.get_rng_state()
    layer = init_linear(8, 3, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)
    again = init_linear(8, 3, torch.Generator().manual_seed(0))
    assert torch.equal(layer.weight, again.weight) and not layer.bias.any()


def test_total_steps_rounds_a_fraction_of_an_epoch_up():
    """epochs x (full batches per epoch), rounded up, at least one step: 0.3 epoch of 12
    batches is 4 steps (3.6), 2.5 epochs of 2 batches 5, a sliver of an epoch 1."""
    from simclr.classifier_setup import total_steps

    assert total_steps(0.3, 100, 8) == 4 and total_steps(2.5, 10, 4) == 5
    assert total_steps(30, 100, 8) == 360 and total_steps(0.01, 10, 4) == 1
    # the epochs as written, not their float product (1.1 x 100 = 110.00000000000001:
    # 111 steps before)
    assert total_steps(1.1, 12800, 128) == 110 and total_steps(2.2, 200, 8) == 55


def test_a_subsets_unreadable_image_is_replaced_from_the_subset_alone(tmp_path, monkeypatch):
    """augmented_batches over some images of an uncached folder: an unreadable one among
    them is replaced by another of them (the next file of the whole folder, outside them,
    trained with its label before), with that image's label, recorded in the folder's
    ``skipped``; its row's views are drawn for its own index; a readable subset's views
    are of the batches iter_batches gives over the folder (as before)."""
    import simclr.augment
    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.features import close_workers, iter_batches
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "f", classes=2, per_class=6, side=16)
    (root / "class_0" / "002.png").write_bytes(b"not an image")
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, cache="off")
    source = open_source(str(root), cfg, train=True, image_size=16)
    bad = source.paths.index(str((root / "class_0" / "002.png").resolve()))
    seen: list[list[int]] = []
    real = simclr.augment.sample_params

    def spy(cfg, seed, epoch, idx, *args, **kwargs):
        seen.append(np.asarray(idx).tolist())  # the indices the views are drawn for
        return real(cfg, seed, epoch, idx, *args, **kwargs)

    monkeypatch.setattr(simclr.augment, "sample_params", spy)

    def epochs(indices: np.ndarray) -> tuple[list[int], list[int]]:
        seen.clear()
        labels = [y for epoch in range(3) for _, y in augmented_batches(
            source, indices, crop_flip_config(16), batch_size=2, epoch=epoch, seed=0,
            device=torch.device("cpu"), workers=0)]
        close_workers(source)
        return sum(seen, []), torch.cat(labels).tolist()

    drawn, labels = epochs(np.array([0, bad, 7, 8]))
    assert sorted(drawn) == sorted([0, bad, 7, 8] * 3)
    # bad's row: image 7, the subset's next (the folder's next, 3, is of bad's class)
    assert labels == [int(source.labels[7 if i == bad else i]) for i in drawn]
    assert source.labels[bad] == source.labels[3] != source.labels[7]
    assert [p for p, _ in source.skipped] == [source.paths[bad]]
    good = np.array([0, 1, 7, 8])
    want = [idx.tolist() for epoch in range(3) for idx, _, _ in iter_batches(
        source, good, 2, seed=[0, epoch], drop_last=True, workers=0)]
    assert epochs(good)[0] == sum(want, [])


def test_an_unreadable_images_replacement_gets_views_of_its_own(tmp_path, monkeypatch):
    """An uncached folder's unreadable file is replaced by the next readable image,
    which came with that image's index: views depend only on (seed, epoch, index), so
    with the image itself in the batch both rows got bit-identical views. Now the row's
    views are drawn for the unreadable file's index, its label the image's own."""
    import simclr.augment
    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.features import close_workers
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "f", classes=2, per_class=2, side=16)
    (root / "class_0" / "001.png").write_bytes(b"not an image")  # (index 1; next: 2)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, cache="off")
    source = open_source(str(root), cfg, train=True, image_size=16)
    seen: list[list[int]] = []
    real = simclr.augment.sample_params

    def spy(cfg, seed, epoch, idx, *args, **kwargs):
        seen.append(np.asarray(idx).tolist())
        return real(cfg, seed, epoch, idx, *args, **kwargs)

    monkeypatch.setattr(simclr.augment, "sample_params", spy)
    [(views, labels)] = list(augmented_batches(
        source, np.arange(4), crop_flip_config(16), batch_size=4, epoch=0, seed=0,
        device=torch.device("cpu"), workers=0))
    close_workers(source)
    [drawn] = seen
    assert sorted(drawn) == [0, 1, 2, 3]
    bad, real_row = drawn.index(1), drawn.index(2)
    assert not torch.equal(views[bad], views[real_row])
    assert labels[bad] == labels[real_row] == source.labels[2] == 1


def test_the_evaluations_crops_are_drawn_by_the_sampler_asked_for_and_checked():
    """--crop-sampler official reaches the views' config, and a --crop-scale that sampler
    can draw no crop from is refused in one line (every view the whole picture, else)."""
    assert crop_flip_config(16, (0.2, 1.0), "official").crop_sampler == "official"
    with pytest.raises(SimCLRError, match=r"--crop-scale max 0\.05 is below what "
                                          r"--crop-sampler official keeps"):
        crop_flip_config(16, (0.01, 0.05), "official")


def test_an_unknown_schedule_is_one_line():
    with pytest.raises(SimCLRError, match=r"^--schedule: unknown value 'step' \(choose from "
                                          r"cosine, constant\)$"):
        scheduled_lr(0, 10, 0.1, "step")


def test_an_earlier_simclrs_length_is_the_float_product_rounded_up():
    """What a run an earlier simclr started (no length in its partial file) continues to:
    1.1 x 100 batches was 111 steps (110.00000000000001 rounded up), at least 1."""
    from simclr.classifier_setup import earlier_total_steps

    assert earlier_total_steps(1.1, 12800, 128) == 111
    assert earlier_total_steps(0.25, 10, 4) == 1 and earlier_total_steps(2.5, 10, 4) == 5


def test_a_new_linear_head_is_drawn_with_std_0_01():
    from simclr.classifier_setup import init_linear

    layer = init_linear(512, 200, torch.Generator().manual_seed(0))
    assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_the_batch_is_at_most_the_labeled_images_and_said_so(capsys, monkeypatch):
    """A 1% subset smaller than --batch-size trains one batch of all of it per step;
    under torchrun a multiple of the processes, each its equal share."""
    from simclr import distributed
    from simclr.classifier_setup import fitted_batch

    assert fitted_batch(256, 1000, "labeled", verbose=True) == 256
    assert capsys.readouterr().err == ""
    assert fitted_batch(256, 100, "labeled", verbose=True) == 100
    out = capsys.readouterr().err
    assert "--batch-size 256 is more than the 100 labeled images: batches of 100, lr " \
           "scaled by 100/256" in out and "equal shares" not in out
    assert fitted_batch(256, 255, "labeled", verbose=True) == 255  # (one short: said too)
    assert "batches of 255, lr scaled by 255/256" in capsys.readouterr().err
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert fitted_batch(256, 102, "labeled", verbose=True) == 100
    assert "batches of 100 (4 processes' equal shares)" in capsys.readouterr().err
    assert fitted_batch(256, 100, "labeled", verbose=True) == 100  # all of them: no shares
    assert "batches of 100, lr" in capsys.readouterr().err
    with pytest.raises(SimCLRError, match=r"^--batch-size 250 is not divisible by 4 processes$"):
        fitted_batch(250, 1000, "labeled", verbose=False)
    with pytest.raises(SimCLRError, match=r"^3 labeled images cannot be shared by 4 processes$"):
        fitted_batch(256, 3, "labeled", verbose=False)


def test_per_process_batch_norm_over_one_image_is_refused(monkeypatch):
    from simclr import distributed
    from simclr.classifier_setup import batch_norm_setting, check_batch_norm_share

    check_batch_norm_share(1, 1, sync_bn=False)  # one process: its batch is the whole
    assert batch_norm_setting(sync_bn=False) == "global"
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert batch_norm_setting(sync_bn=True) == "global"
    assert batch_norm_setting(sync_bn=False) == "per process (4 processes)"
    check_batch_norm_share(4, 4, sync_bn=True)  # global BN: fine
    check_batch_norm_share(8, 8, sync_bn=False)  # two images each: fine
    with pytest.raises(SimCLRError, match=r"^--no-sync-bn: each of the 4 processes would "
                       r"take BatchNorm statistics from 1 image; give a --batch-size of at "
                       r"least 8, or keep global BN$"):
        check_batch_norm_share(4, 4, sync_bn=False)
    with pytest.raises(SimCLRError, match=r"the batch is all 4 labeled images \(--batch-size "
                                          r"256\): label at least 8, or keep global BN$"):
        check_batch_norm_share(4, 256, sync_bn=False)


def test_an_evaluations_out_is_made_absolute_and_refuses_an_earlier_runs_results(
        tmp_path, monkeypatch):
    from simclr import distributed
    from simclr.classifier_setup import run_folder

    monkeypatch.chdir(tmp_path)
    out = run_folder("le", ("results.json",))
    assert out == tmp_path / "le" and out.is_dir()
    (out / "results.json").write_text("{}")
    with pytest.raises(SimCLRError):
        run_folder("le", ("results.json",))
    assert run_folder("le", ("results.json",), overwrite=True) == out
    assert run_folder(None, ("results.json",)) is None
    monkeypatch.setattr(distributed, "rank", lambda: 1)  # another process: only names it
    assert run_folder("other", ("results.json",)) == tmp_path / "other"
    assert not (tmp_path / "other").exists()


def test_a_skipped_memory_check_measures_nothing(monkeypatch):
    """``enforce=False``: views too large to measure on would refuse the command."""
    import simclr.classifier_setup
    from simclr.classifier_setup import check_classifier_step

    def measure(*args, **kwargs):
        raise AssertionError("measured")

    monkeypatch.setattr(simclr.classifier_setup, "measure_step", measure)
    check_classifier_step(torch.nn.Identity(), 32, 64, torch.device("cpu"), "fp32", False,
                          "supervised", enforce=False)


def test_labeled_views_are_new_each_epoch_and_a_resumed_epoch_skips_its_read_batches(
        tmp_path):
    """An image's views depend on (seed, epoch, index): another epoch draws new ones, the
    same epoch again the same; ``skip`` passes the epoch's first batches over and gives
    the rest as the whole epoch gives them (views drawn for the images read)."""
    from simclr.config import DataConfig
    from simclr.data import open_source
    from simclr.features import close_workers
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "f", classes=2, per_class=1, side=16)
    cfg = DataConfig(cache_dir=str(tmp_path / "cache"), workers=0, cache="off")
    source = open_source(str(root), cfg, train=True, image_size=16)

    def epoch(number: int, skip: int = 0) -> list[tuple[torch.Tensor, int]]:
        # one image a batch: its label (one image a class) tells which image it is
        batches = [(v[0], int(y)) for v, y in augmented_batches(
            source, np.arange(2), crop_flip_config(16), batch_size=1, epoch=number,
            seed=0, device=torch.device("cpu"), workers=0, skip=skip)]
        close_workers(source)
        return batches

    first, again, second = epoch(0), epoch(0), epoch(1)
    for label in (0, 1):
        view = {y: v for v, y in first}[label]
        assert torch.equal(view, {y: v for v, y in again}[label])
        assert not torch.equal(view, {y: v for v, y in second}[label])
    [(view, label)] = epoch(0, skip=1)
    assert label == first[1][1] and torch.equal(view, first[1][0])


def test_the_evaluations_crop_flags_are_checked_as_pretrainings():
    with pytest.raises(SimCLRError, match=r"^--crop-scale must satisfy 0 < min <= max <= 1, "
                                          r"got \(0\.5, 0\.2\)"):
        crop_flip_config(16, (0.5, 0.2))
    with pytest.raises(SimCLRError, match=r"^--crop-sampler: unknown value 'tf'"):
        crop_flip_config(16, crop_sampler="tf")
