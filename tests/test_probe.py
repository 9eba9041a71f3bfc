"""Tests for simclr.probe: the transformation probe of Table 3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simclr.augment import sample_params
from simclr.cli import main
from simclr.config import AugmentConfig
from simclr.probe import (
    TASKS,
    probe_config,
    probe_labels,
    run_transform_probe,
    train_mlp_probe,
)
from tests.conftest import (
    ArraySource,
    colour_source,
    first_conv_formats,
    in_nchw,
    worker_pools_started,
)
from tests.test_pretrained import pretrain_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_probes_accuracies_count_a_tie_against_the_label(monkeypatch):
    """An MLP whose every output is equal (zero weights, no step: lr 0) is right on no
    image; argmax gave each tie to class 0, its images hits."""
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters",
                        lambda self: (torch.nn.init.zeros_(self.weight),
                                      torch.nn.init.zeros_(self.bias)))
    x, y = torch.randn(12, 4), torch.tensor([0, 1, 2] * 4)
    assert train_mlp_probe(x, y, x, y, classes=3, epochs=1, hidden=8, lr=0.0) == {
        "train_top1": 0.0, "top1": 0.0}


@pytest.mark.parametrize(("task", "shares"), [
    ("gray", [0.5, 0.5]), ("rotation", [0.25] * 4), ("noise", [0.5, 0.5]),
    ("sobel", [0.5, 0.5]),
])
@pytest.mark.parametrize("fig5", [False, True])
def test_probe_labels_are_balanced_and_only_the_probed_op_is_on(task, shares, fig5):
    """Also for a checkpoint of a Fig. 5 --pairs cell (--asymmetric, --first-op): its
    protocol leaves every view but view 0 untouched, the probe's views included (all
    labels 0 and a 100% majority, before)."""
    base = AugmentConfig(size=16, rotate=True, noise=True, sobel=True, cutout=True,
                         asymmetric=fig5, first_op="rotate" if fig5 else "")
    cfg, classes = probe_config(base, task)
    assert classes == len(shares)
    params = sample_params(cfg, 0, 0, np.arange(8000), 7, (20, 20))
    labels = probe_labels(params, task).numpy()
    np.testing.assert_allclose(np.bincount(labels, minlength=classes) / 8000, shares, atol=0.02)
    assert not params.cutout.any()
    assert (params.rotate > 0).any() == (task == "rotation")
    assert (params.noise_std > 0).any() == (task == "noise")
    assert params.sobel.any() == (task == "sobel")
    if task == "noise":  # every corrupted view is visibly so
        assert params.noise_std[labels == 1].min() >= base.noise_std[1] / 2


def test_an_unknown_probe_task_is_refused_naming_the_tasks():
    with pytest.raises(ValueError, match="unknown probe task 'hue' "
                                         r"\(choose from gray, rotation, noise, sobel\)"):
        probe_config(AugmentConfig(size=16), "hue")


def test_mlp_probe_results_do_not_depend_on_the_features_units():
    """The features are standardised with the training views' statistics: the same
    features in other units and about another origin (x 100 + 50) train the same MLP."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (600,), generator=gen)
    x = torch.randn(600, 8, generator=gen)
    x[:, 0] += 3.0 * y
    far = x * 100 + 50
    a, b = (train_mlp_probe(f[:400], y[:400], f[400:], y[400:], classes=2, epochs=20,
                            hidden=16) for f in (x, far))
    assert b == pytest.approx(a, abs=0.01)


def test_mlp_probe_learns_what_is_there_and_nothing_else():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (1200,), generator=gen)
    x = torch.randn(1200, 16, generator=gen)
    x[:, 0] += 6.0 * y  # class information in one feature (Bayes top-1 ~ 0.98)
    result = train_mlp_probe(x[:900], y[:900], x[900:], y[900:], classes=3, epochs=20)
    assert result["top1"] > 0.93
    noise = torch.randn(1200, 16, generator=gen)  # no class information at all
    chance = train_mlp_probe(noise[:900], y[:900], noise[900:], y[900:], classes=3, epochs=20)
    assert chance["top1"] < 0.5


def test_mlp_probe_a_feature_constant_on_training_views_does_not_swamp_the_test():
    """A channel zero on every training view (a dead ReLU there) but slightly alive on
    test views: left unscaled, as linear evaluation standardises, not divided by ~0."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (600,), generator=gen)
    x = torch.randn(600, 16, generator=gen)
    x[:, 1] += 4.0 * y
    x[:400, 0] = 0.0
    x[400:, 0] = torch.rand(200, generator=gen) * 0.01
    result = train_mlp_probe(x[:400], y[:400], x[400:], y[400:], classes=2, epochs=20)
    assert result["top1"] > 0.9


def test_mlp_probe_the_test_rows_neither_train_nor_standardise_one_another():
    """Features are standardised with the training views' statistics alone: the MLP
    (same seed) is the same whatever the test set, and each test row is scored on its
    own, so the top-1 on A + B is the row-weighted mean of those on A and on B, even
    for a B of other statistics (mean and std from the test rows moved every row)."""
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (500,), generator=gen)
    x = torch.randn(500, 6, generator=gen)
    x[:, :2] += 0.8 * y[:, None]  # overlapping classes: many rows near the boundary
    xa, ya, xb, yb = x[300:400], y[300:400], x[400:] * 4 + 3, y[400:]
    run = {name: train_mlp_probe(x[:300], y[:300], xt, yt, classes=2, epochs=3, hidden=16)
           for name, (xt, yt) in {"a": (xa, ya), "b": (xb, yb),
                                  "ab": (torch.cat([xa, xb]), torch.cat([ya, yb]))}.items()}
    assert run["a"]["train_top1"] == run["b"]["train_top1"] == run["ab"]["train_top1"]
    assert run["ab"]["top1"] == pytest.approx((run["a"]["top1"] + run["b"]["top1"]) / 2)


def test_mlp_probe_batches_are_drawn_from_the_whole_shuffled_training_set():
    """Views arrive grouped (all of view 0, then view 1; here all of class 0 first): half
    an epoch of batches in that order would show the MLP class 0 alone."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat_interleave(256 * 10)  # sorted by class
    x = torch.randn(len(y), 4, generator=gen)
    x[:, 0] += 4.0 * (2 * y - 1)
    result = train_mlp_probe(x, y, x, y, classes=2, epochs=0.5, hidden=16, lr=1e-2)
    assert result["train_top1"] > 0.8  # (class 0 alone: ~0.5)


def test_mlp_probe_batches_are_shuffled_from_its_seed(monkeypatch):
    """The order of the training batches is drawn from ``seed`` too (as the MLP's
    weights are): two seeds, two orders; the same seed, the same."""
    seeds = []
    randperm = torch.randperm
    monkeypatch.setattr(torch, "randperm", lambda n, generator=None, **k: (
        seeds.append(generator.initial_seed()), randperm(n, generator=generator, **k))[1])
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    for seed in (3, 4):
        train_mlp_probe(x, y, x, y, classes=2, epochs=1, hidden=4, seed=seed)
    assert seeds == [3, 4]


@pytest.mark.parametrize("epochs, steps", [(0.1, 1), (0.5, 2), (1, 3), (1.5, 5), (2, 6)])
def test_mlp_probe_epochs_count_batches_and_fractions_round_up(monkeypatch, epochs, steps):
    """600 rows are 3 batches of 256 (the last short): an epoch is 3 Adam steps, a
    fraction of one its share of them rounded up, as pretraining counts its steps."""
    taken = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (taken.append(1),
                                                                         step(self, *a, **k))[1])
    x, y = torch.randn(600, 4), torch.randint(0, 2, (600,))
    train_mlp_probe(x, y, x[:10], y[:10], classes=2, epochs=epochs, hidden=8)
    assert len(taken) == steps


def test_mlp_probe_epochs_count_as_written(monkeypatch):
    """1.1 epochs of 390 batches are 429 steps; the float product 429.00000000000006
    rounded up to 430."""
    taken = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (taken.append(1),
                                                                         step(self, *a, **k))[1])
    x, y = torch.randn(390 * 256, 2), torch.randint(0, 2, (390 * 256,))
    train_mlp_probe(x, y, x[:10], y[:10], classes=2, epochs=1.1, hidden=4)
    assert len(taken) == 429


def test_transform_probe_end_to_end_and_deterministic():
    from simclr.pretrained import model_from_checkpoint

    model, _ = model_from_checkpoint(pretrain_checkpoint())
    train, test = colour_source(n_per_class=10, seed=0), colour_source(n_per_class=4, seed=1)
    aug = AugmentConfig(size=16, blur=False)
    runs = [run_transform_probe(model, train, test, aug, TASKS, views=2, epochs=3,
                                batch_size=16, precision="fp32", verbose=False)
            for _ in range(2)]
    assert [r.pop("elapsed_s") > 0 for r in runs] == [True, True]
    assert runs[0] == runs[1] and model.training  # flags restored
    assert {k: runs[0][k] for k in ("command", "image_size", "seed", "precision")} == {
        "command": "transform-probe", "image_size": 16, "seed": 0, "precision": "fp32"}
    for task in TASKS:
        row = runs[0]["tasks"][task]
        assert row["num_train"] == 60 and row["num_test"] == 12
        assert 0.0 <= row["h"]["top1"] <= 1.0 and 0.0 <= row["z"]["top1"] <= 1.0


def _fitted_inputs(monkeypatch) -> list:
    """What each train_mlp_probe call is given, (h_train, y_train, h_test, y_test),
    recorded as the probe runs."""
    import simclr.probe

    fitted: list = []
    fit = simclr.probe.train_mlp_probe
    monkeypatch.setattr(simclr.probe, "train_mlp_probe",
                        lambda *a, **k: (fitted.append(a[:4]), fit(*a, **k))[1])
    return fitted


def test_test_views_are_others_than_the_training_ones_and_the_majority_is_the_tests(
        monkeypatch):
    """Image 0 is in both sets: its test view is drawn afresh, not its training view
    again (the MLP would be scored on what it was fitted to). The majority share is the
    test labels': a single test view is a majority of 1 (the training views' is not)."""
    from simclr.pretrained import model_from_checkpoint

    fitted = _fitted_inputs(monkeypatch)
    model, _ = model_from_checkpoint(pretrain_checkpoint())
    train = colour_source(n_per_class=4, seed=0)
    test = ArraySource(train.images[:1].numpy(), train.labels[:1], train.classes)
    result = run_transform_probe(model, train, test, AugmentConfig(size=16, blur=False),
                                 ("gray",), views=1, epochs=1, batch_size=16,
                                 precision="fp32", verbose=False)
    h_train, y_train, h_test, _ = fitted[0]
    assert h_test.shape == (1, h_train.shape[1])
    assert not torch.allclose(h_train[0], h_test[0])
    row = result["tasks"]["gray"]
    assert row["num_test"] == 1 and row["majority"] == 1.0
    assert np.bincount(y_train.numpy()).max() < len(y_train)  # (both labels drawn)


def test_each_training_view_of_an_image_is_drawn_afresh(monkeypatch):
    """--views 2: an image's two training views are two draws of the augmentation (the
    same draw twice would add no example), their labels independent."""
    from simclr.pretrained import model_from_checkpoint

    fitted = _fitted_inputs(monkeypatch)
    model, _ = model_from_checkpoint(pretrain_checkpoint())
    train = colour_source(n_per_class=4, seed=0)
    n = train.num_images
    run_transform_probe(model, train, train, AugmentConfig(size=16, blur=False),
                        ("rotation",), views=2, epochs=1, batch_size=16, precision="fp32",
                        verbose=False)
    h_train, y_train, _, _ = fitted[0]
    assert h_train.shape[0] == 2 * n
    differ = [not torch.allclose(h_train[i], h_train[n + i]) for i in range(n)]
    assert all(differ)
    assert (y_train[:n] != y_train[n:]).any()
    # the second MLP is z's: the head's output, of its own width
    with torch.no_grad():
        h, z = model.eval()(torch.rand(1, 3, 16, 16))
    z_train = fitted[1][0]
    assert len(fitted) == 2 and z_train.shape == (2 * n, z.shape[1])
    assert not torch.equal(z_train[:, :h.shape[1]], h_train[:, :z.shape[1]])


def test_a_model_without_a_head_is_probed_once_and_says_so():
    from simclr.models import build_model
    from simclr.settings import build_config

    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "model.head": "none"})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    train, test = colour_source(n_per_class=6, seed=0), colour_source(n_per_class=2, seed=1)
    result = run_transform_probe(model, train, test, AugmentConfig(size=16, blur=False),
                                 ("gray",), views=1, epochs=2, batch_size=16,
                                 precision="fp32", verbose=False)
    row = result["tasks"]["gray"]
    assert row["z"] is None and 0.0 <= row["h"]["top1"] <= 1.0
    assert "no projection head" in result["note"]


def test_transform_probe_command(tmp_path, capsys):
    from tests.conftest import make_image_folder

    ckpt = tmp_path / "pre.pt"
    torch.save(pretrain_checkpoint(), ckpt)
    folder = make_image_folder(tmp_path / "imgs", per_class=6)
    args = ["transform-probe", "--checkpoint", str(ckpt), "--train", str(folder), "--test",
            str(folder), "--task", "rotation", "--epochs", "2", "--device", "cpu",
            "--precision", "fp32", "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
            "--out", str(tmp_path / "probe")]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    saved = json.loads((tmp_path / "probe" / "transform_probe.json").read_text())
    # (pretrained without rotation: z never learnt to ignore it, unlike Table 3's rows)
    assert saved["not_in_pretraining"] == ["rotation"]
    assert "pretrained without rotation, so z was never trained to be invariant to it " \
        "(Table 3 pretrains with the probed op: --rotate)" in captured.err
    assert printed["tasks"]["rotation"]["classes"] == 4 and saved["tasks"] == printed["tasks"]
    assert saved["epochs"] == 2 and isinstance(saved["epochs"], int)  # as given: no 2.0
    assert saved["source"] == {"checkpoint": str(ckpt.resolve()), "kind": "pretrain",
                               "step": None, "features": "pretrained",
                               "layer": "h and z"}  # a step-less file
    encoder_only = pretrain_checkpoint()
    encoder_only["kind"] = "encoder"
    torch.save(encoder_only, ckpt)
    assert main(args) == 2  # the earlier results are checked first, before any reading
    assert "already holds transform_probe.json" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "probe2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a pretraining checkpoint (encoder and projection " \
        f"head); {ckpt} is of kind 'encoder'" in err, err


def test_the_probe_keeps_images_beside_class_folders_and_needs_two(tmp_path, capsys):
    """Its labels are the transformations, not the folders: a folder of loose images with
    one sub-folder is probed on all of them (it was probed on the sub-folder's alone);
    a set too small to standardise over is refused in one line."""
    from tests.conftest import make_image_folder

    ckpt = tmp_path / "pre.pt"
    torch.save(pretrain_checkpoint(), ckpt)
    folder = make_image_folder(tmp_path / "imgs", classes=1, per_class=1)
    for i, f in enumerate(make_image_folder(tmp_path / "more", per_class=3).rglob("*.png")):
        f.rename(folder / f"loose_{i}.png")
    args = ["transform-probe", "--checkpoint", str(ckpt), "--train", str(folder), "--test",
            str(folder), "--task", "gray", "--epochs", "1", "--device", "cpu", "--precision",
            "fp32", "--cache-dir", str(tmp_path / "cache"), "--workers", "0"]
    assert main([*args, "--out", str(tmp_path / "p1")]) == 0
    row = json.loads(capsys.readouterr().out)["tasks"]["gray"]
    assert row["num_test"] == 7 and row["num_train"] == 2 * 7  # 6 loose + 1 in the folder
    single = make_image_folder(tmp_path / "single", classes=1, per_class=1)
    args[args.index("--train") + 1] = str(single)
    assert main([*args, "--views", "1", "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: the training set has 1 readable image(s); the " \
        "probe needs at least 2" in err, err


@pytest.mark.parametrize("value, message", [("0", "must be > 0"), ("-1", "must be > 0"),
                                            ("200000", "must be at most 100000"),
                                            ("abc", "expected a number")])
def test_transform_probe_epochs_are_checked(value, message, capsys):
    status = main(["transform-probe", "--checkpoint", "x", "--train", "x", "--test", "x",
                   "--epochs", value])
    assert status == 2 and message in capsys.readouterr().err


def test_transform_probe_epochs_take_fractions():
    from simclr.cli import build_parser

    args = build_parser().parse_args(["transform-probe", "--checkpoint", "x", "--train", "x",
                                      "--test", "x", "--epochs", "0.5"])
    assert args.epochs == 0.5


def probe_sources(tmp_path, cache="off", workers=1):
    """Uncached folders of 3 classes (decoded by ``workers`` DataLoader workers), or
    cached: 18 training and 6 test pictures."""
    from simclr.config import DataConfig
    from simclr.data import open_source
    from tests.conftest import make_image_folder

    cfg = DataConfig(cache=cache, cache_dir=str(tmp_path / "cache"), workers=workers)
    return tuple(open_source(str(make_image_folder(tmp_path / name, classes=3, per_class=n,
                                                   seed=seed)), cfg, image_size=16)
                 for name, n, seed in (("train", 6, 0), ("test", 2, 1)))


@pytest.mark.parametrize("end", ["finished", "ctrl-c"])
def test_the_probe_keeps_one_worker_pool_per_source_for_all_its_passes(tmp_path, monkeypatch,
                                                                       end):
    """The probe started a DataLoader's workers for every view of every task (seconds
    each under the spawn start method, macOS's and Windows'): now each source's one pool
    serves all its passes, and ends with the probe, on Ctrl-C too (none left running);
    the results are those of the decoded cache."""
    import simclr.probe
    from simclr.pretrained import model_from_checkpoint

    started = worker_pools_started(monkeypatch)
    model, _ = model_from_checkpoint(pretrain_checkpoint())
    aug, tasks = AugmentConfig(size=16, blur=False), ("gray", "rotation")
    probe = {"views": 2, "epochs": 1, "batch_size": 4, "precision": "fp32", "verbose": False}
    train, test = probe_sources(tmp_path)
    if end == "ctrl-c":
        fit = simclr.probe.train_mlp_probe
        fits = []

        def stopped(*args, **kwargs):  # Ctrl-C in the second task's MLP
            fits.append(1)
            if len(fits) == 3:
                raise KeyboardInterrupt
            return fit(*args, **kwargs)

        monkeypatch.setattr(simclr.probe, "train_mlp_probe", stopped)
        with pytest.raises(KeyboardInterrupt):
            run_transform_probe(model, train, test, aug, tasks, **probe)
    else:
        result = run_transform_probe(model, train, test, aug, tasks, **probe)
        cached = run_transform_probe(model, *probe_sources(tmp_path, "on", 0), aug, tasks,
                                     **probe)
        assert result.pop("elapsed_s") > 0 and cached.pop("elapsed_s") > 0
        assert result == cached
    assert len(started) == 2  # (one per source: 6 before, 2 per task's views + 1 test)
    assert not any(w.is_alive() for it in started for w in it._workers)
    assert not train._loaders and not test._loaders


def test_a_single_pass_of_probe_views_ends_its_workers(tmp_path, monkeypatch):
    """probe_features called alone (keep_workers False): the decoding workers it
    started end with its pass, none left running or kept by the source. Its views are
    drawn from streams of their own, not pretraining's views 0 and 1."""
    import simclr.probe
    from simclr.pretrained import model_from_checkpoint
    from simclr.probe import probe_features

    started, streams = worker_pools_started(monkeypatch), set()
    draw = simclr.probe.sample_params
    monkeypatch.setattr(simclr.probe, "sample_params",
                        lambda *a, **k: (streams.add(a[4]), draw(*a, **k))[1])
    model, _ = model_from_checkpoint(pretrain_checkpoint())
    train, _ = probe_sources(tmp_path)
    cfg, _ = probe_config(AugmentConfig(size=16, blur=False), "gray")
    h, z, y = probe_features(model, train, cfg, "gray", 1, 0, 8, torch.device("cpu"), "fp32")
    assert len(h) == len(z) == len(y) == train.num_images
    assert len(started) == 1 and not any(w.is_alive() for w in started[0]._workers)
    assert not train._loaders
    assert streams and not streams & {0, 1}


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_probe_runs_in_channels_last_by_default_and_leaves_the_model_as_given(
        channels_last):
    """Probe views and weights in channels_last unless turned off (the faster layout);
    the caller's model is NCHW again after, and the setting is recorded."""
    from simclr.pretrained import model_from_checkpoint

    model, _ = model_from_checkpoint(pretrain_checkpoint())
    seen = first_conv_formats(model)
    kwargs = {} if channels_last else {"channels_last": False}
    result = run_transform_probe(model, colour_source(n_per_class=4, seed=0),
                                 colour_source(n_per_class=2, seed=1),
                                 AugmentConfig(size=16, blur=False), ("gray",), views=1,
                                 epochs=1, batch_size=16, precision="fp32", verbose=False,
                                 **kwargs)
    assert seen and set(seen) == {(channels_last, channels_last)} and in_nchw(model)
    assert result["channels_last"] is channels_last
