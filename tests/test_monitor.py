"""The run's own monitoring: the metrics log's windows, the notes at a run's start and
the online kNN monitor (the loop that calls them: test_train.py)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from simclr import monitor
from simclr.errors import SimCLRError
from simclr.resume import saved_window
from simclr.settings import build_config
from tests.conftest import make_image_folder, tiny_flags
from tests.image_files import rgb, save_image
from tests.test_train import run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_log_line_holds_the_means_of_its_window():
    """With --log-every 3 the logged loss is the mean of the window's three steps (every
    other test logs each step, where a sum and a mean agree)."""
    meter = monitor.Meter(0, 0.0)
    for value in (1.0, 2.0, 6.0):
        meter.add({"loss": torch.tensor(value)})
    assert meter.record(3, 16, 2.0) == {"loss": pytest.approx(3.0), "views_per_s": 24.0,
                                        "window_steps": 3}



def test_a_compiling_step_is_left_out_of_the_views_per_second():
    """A window of 4 steps, the first of which compiled (its seconds already taken off
    ``elapsed``): 3 timed steps of 16 views in 3 s is 16 views/s; a window of that step
    alone has no speed (NaN)."""
    meter = monitor.Meter(0, 0.0)
    for i in range(4):
        meter.add({"loss": torch.tensor(1.0)})
        if i == 0:
            meter.untimed_step()
    assert meter.record(4, 16, 3.0)["views_per_s"] == 16.0
    meter.add({"loss": torch.tensor(1.0)})
    meter.untimed_step()
    assert math.isnan(meter.record(5, 16, 3.0)["views_per_s"])
    for _ in range(2):  # (the next window's seconds: from the last line's, 3 s)
        meter.add({"loss": torch.tensor(1.0)})
    assert meter.record(7, 16, 7.0)["views_per_s"] == 8.0

def test_a_saved_window_goes_on_as_if_never_cut():
    """A window saved after two of its steps (at 4 s) and continued by a resumed run
    (its sums float32 as they were) logs the uninterrupted window's means and views/s
    over its training seconds (not those since the resumed start)."""
    values = [0.1, 0.7, 1e-3]
    whole, cut = monitor.Meter(5, 1.0), monitor.Meter(5, 1.0)
    for value in values:
        whole.add({"loss": torch.tensor(value)})
    for value in values[:2]:
        cut.add({"loss": torch.tensor(value)})
    saved = copy.deepcopy(cut.saved())
    assert saved == {"sums": {"loss": pytest.approx(0.8)}, "steps": 2, "first_step": 5,
                     "elapsed": 1.0, "untimed": 0, "skipped": 0, "collapse": {
                         "windows": 0, "steps": 0, "since": 0, "said": False}}
    resumed = monitor.Meter(7, 4.0, saved, torch.device("cpu"))
    resumed.add({"loss": torch.tensor(values[2])})
    assert resumed.record(8, 16, 7.0) == whole.record(8, 16, 7.0)
    assert monitor.Meter(7, 4.0, {**saved, "steps": 0}).first_step == 7  # (nothing open)
    # a compiling step's views stay out of the window's views/s across the cut too, as
    # the checkpoint carries it (resume.saved_window once dropped the count)
    whole, cut = monitor.Meter(5, 1.0), monitor.Meter(5, 1.0)
    for meter in (whole, cut):
        meter.add({"loss": torch.tensor(1.0)})
        meter.untimed_step()
        meter.add({"loss": torch.tensor(1.0)})
    resumed = monitor.Meter(7, 4.0, saved_window(copy.deepcopy(cut.saved()), 7),
                            torch.device("cpu"))
    whole.add({"loss": torch.tensor(1.0)})
    resumed.add({"loss": torch.tensor(1.0)})
    assert resumed.record(8, 16, 7.0) == whole.record(8, 16, 7.0)


def test_a_window_averages_its_finite_steps_and_counts_the_skipped_ones():
    """--nan-policy skip: a skipped step's metrics (NaN) made its whole window null (and,
    the run's last window, summary.json's loss); its finite steps are averaged instead,
    and how many it skipped is logged; a window of skipped steps alone is null."""
    meter = monitor.Meter(0, 0.0)
    for value in (1.0, 2.0, math.nan, 6.0):
        metric = {"loss": torch.tensor(value), "pos_top1": torch.tensor(value / 10)}
        meter.add(metric, skipped=math.isnan(value))
    assert meter.record(4, 16, 2.0) == {"loss": pytest.approx(3.0),
                                        "pos_top1": pytest.approx(0.3), "views_per_s": 32.0,
                                        "window_steps": 4, "window_skipped": 1}
    meter.add({"loss": torch.tensor(math.nan), "pos_top1": torch.tensor(math.nan)},
              skipped=True)
    alone = meter.record(5, 16, 3.0)
    assert math.isnan(alone["loss"]) and math.isnan(alone["pos_top1"])
    assert (alone["window_steps"], alone["window_skipped"]) == (1, 1)
    meter.add({"loss": torch.tensor(1.0), "pos_top1": torch.tensor(0.5)})
    assert "window_skipped" not in meter.record(6, 16, 4.0)  # (none skipped: as ever)


def test_a_window_with_a_skipped_step_goes_on_across_a_resume_old_checkpoints_too():
    """The open window's skipped count is checkpointed with its sums: the resumed run
    logs the uninterrupted window's means. A window saved by an earlier simclr (NaN
    sums where a step was skipped, no count) still resumes, its window null as then."""
    whole, cut = monitor.Meter(5, 1.0), monitor.Meter(5, 1.0)
    for meter in (whole, cut):
        meter.add({"loss": torch.tensor(2.0)})
        meter.add({"loss": torch.tensor(math.nan)}, skipped=True)
    saved = saved_window(copy.deepcopy(cut.saved()), 7)
    assert saved["skipped"] == 1 and saved["sums"] == {"loss": 2.0}
    resumed = monitor.Meter(7, 4.0, saved, torch.device("cpu"))
    for meter in (whole, resumed):
        meter.add({"loss": torch.tensor(4.0)})
    line = resumed.record(8, 16, 7.0)
    assert line == whole.record(8, 16, 7.0)
    assert (line["loss"], line["window_steps"], line["window_skipped"]) == (3.0, 3, 1)
    earlier = {"sums": {"loss": math.nan}, "steps": 2, "first_step": 5, "elapsed": 1.0,
               "untimed": 0}
    resumed = monitor.Meter(7, 4.0, saved_window(earlier, 7), torch.device("cpu"))
    resumed.add({"loss": torch.tensor(4.0)})
    line = resumed.record(8, 16, 7.0)
    assert math.isnan(line["loss"]) and line["window_steps"] == 3


def test_views_much_larger_than_small_pictures_are_noted(tmp_path, image_folder, cache_dir,
                                                          capsys):
    """The ImageNet default of 224-px views on a folder of thumbnails is a likely slip:
    said (views 4x the 16-px pictures), not at 1x."""
    run(tmp_path, image_folder, cache_dir, "big", epochs=1, **{"augment.size": 64})
    assert ("note: 64-px views are drawn from pictures of 16 px (each view upsampled 4.0x); "
            "for small images --image-size 16") in capsys.readouterr().out
    run(tmp_path, image_folder, cache_dir, "same", epochs=1)
    assert "upsampled" not in capsys.readouterr().out



def test_views_from_twice_the_pictures_side_up_are_noted():
    """The note's threshold: views of twice the stored side are noted (32 px of 16),
    views below it not (31 px); pictures not cached (decoded at their own size) never."""
    from types import SimpleNamespace

    from simclr.config import Config

    cfg, cached = Config(), SimpleNamespace(image_hw=(16, 12), cached=True)
    cfg.augment.size = 32
    assert "(each view upsampled 2.0x)" in monitor.upsampling_notes(cfg, cached)[0]
    assert monitor.upsampling_notes(cfg, SimpleNamespace(image_hw=(16, 12), cached=False)) == []
    cfg.augment.size = 31
    assert monitor.upsampling_notes(cfg, cached) == []
    tiny = SimpleNamespace(image_hw=(6, 6), cached=True)  # (the side to give: at least 8)
    assert monitor.upsampling_notes(cfg, tiny)[0].endswith("--image-size 8 is likelier what "
                                                           "you want")


def test_the_whole_picture_window_note_needs_a_crop_of_cached_pictures_all_square():
    """--no-crop-resize at the stored side is noted only with a crop, on cached pictures,
    when every one is square: a single wider picture's window moves."""
    from types import SimpleNamespace

    import numpy as np

    from simclr.config import Config

    def source(aspects, cached=True):
        return SimpleNamespace(image_hw=(16, 16), cached=cached, num_images=len(aspects),
                               aspect_of=lambda i: np.asarray(aspects)[i])

    cfg = Config()
    cfg.augment.size, cfg.augment.crop_resize = 16, False
    assert "each is the whole picture" in monitor.window_notes(cfg, source([1.0, 1.0]))[0]
    assert monitor.window_notes(cfg, source([1.0, 1.5])) == []
    assert monitor.window_notes(cfg, source([1.0, 1.0], cached=False)) == []
    cfg.augment.crop = False
    assert monitor.window_notes(cfg, source([1.0, 1.0])) == []

def test_a_crop_without_resize_of_the_whole_picture_is_noted(tmp_path, image_folder,
                                                             cache_dir, capsys):
    """--no-crop-resize at the pictures' own side (16 px stored as they are) takes the
    whole picture each time: said; with room to move (8-px windows), not."""
    run(tmp_path, image_folder, cache_dir, "whole", epochs=1, **{"augment.crop_resize": False})
    assert ("note: --no-crop-resize takes 16-px windows of pictures stored at 16 px: each "
            "is the whole picture") in capsys.readouterr().out
    run(tmp_path, image_folder, cache_dir, "room", epochs=1,
        **{"augment.crop_resize": False, "augment.size": 8})
    assert "--no-crop-resize takes" not in capsys.readouterr().out
    wide = tmp_path / "wide"  # 16-px squares standing for 16x24 pictures: windows move
    for i in range(24):
        save_image(wide / f"class_{i % 2}" / f"{i}.png", rgb(16, 24, seed=i))
    run(tmp_path, wide, cache_dir, "wide_run", epochs=1, **{"augment.crop_resize": False})
    assert "--no-crop-resize takes" not in capsys.readouterr().out


def test_small_views_with_the_imagenet_recipe_are_noted(tmp_path, image_folder, cache_dir,
                                                        capsys):
    """Small views left with the defaults' blur, colour strength 1 and tau 0.1 (a known
    trap: the CIFAR recipe differs) get a note naming the CIFAR presets; the presets
    and any of those set otherwise get none."""
    from simclr import train

    flags = tiny_flags(image_folder, tmp_path / "trap", cache_dir, epochs=1,
                       **{"augment.color_strength": 1.0, "loss.temperature": 0.1})
    del flags["augment.blur"]  # (the defaults' blur: --blur at 16 px is refused as inert)
    train.pretrain(build_config(flags=flags))
    assert ("note: 16-px views with the ImageNet recipe's colour strength 1 and tau 0.1 "
            "(its blur, one tap at this side, does nothing); for small images the official "
            "CIFAR-10 recipe is --preset cifar10") in capsys.readouterr().out
    assert "recipe's blur, colour strength 1 and tau 0.1;" in \
        monitor.recipe_notes(build_config(flags={"augment.size": 20}))[0]
    for preset in ("cifar10", "cifar10-cpu", "digits"):
        assert monitor.recipe_notes(build_config(preset)) == []
    assert monitor.recipe_notes(build_config(flags={"augment.size": 32})) != []
    assert monitor.recipe_notes(build_config(flags={"augment.size": 48})) == []
    assert monitor.recipe_notes(build_config(flags={"augment.size": 32,
                                                    "augment.blur": False})) == []
    for other in ({"augment.color_strength": 0.5}, {"loss.temperature": 0.5}):
        assert monitor.recipe_notes(build_config(flags={"augment.size": 32, **other})) == []


def test_the_knn_monitor_running_out_of_memory_names_the_checkpoint(
        tmp_path, image_folder, cache_dir, monkeypatch):
    import simclr.features

    def extract(*args, **kwargs):
        raise MemoryError("Unable to allocate 2.00 GiB for an array with shape (512, 1048576)")

    monkeypatch.setattr(simclr.features, "extract_features", extract)
    with pytest.raises(SimCLRError) as info:  # (monitored every 3 steps, saved every 2)
        run(tmp_path, image_folder, cache_dir, "run", knn_train=str(image_folder),
            knn_test=str(image_folder), checkpoint_every=2)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("kNN monitor: out of memory at step 3 (allocating 2.00 GiB "
                              "failed): the last checkpoint "), message
    assert "ckpt-00000002.pt is untouched; free memory and --resume" in message
    assert not (tmp_path / "run/checkpoints/ckpt-00000003.pt").exists()  # nothing saved after


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_knn_monitor_feeds_images_in_the_trainings_memory_format(
        tmp_path, image_folder, cache_dir, monkeypatch, channels_last):
    """NCHW images met the channels_last weights of the model it measures: a conversion
    at every layer of every monitor pass."""
    from simclr import features

    formats = []
    real = features.extract_features

    def recorded(*args, **kwargs):
        formats.append(kwargs.get("channels_last", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract_features", recorded)
    run(tmp_path, image_folder, cache_dir, "knn", knn_train=str(image_folder),
        knn_test=str(image_folder), knn_every=1.0, checkpoint_every=0,
        channels_last=channels_last)
    assert formats == [channels_last] * 4  # memory and queries, at steps 3 and 6


def test_the_knn_monitor_on_the_digits_keeps_its_queries_out_of_its_memory(monkeypatch):
    """`--knn-train digits --knn-test digits`: the memory was all 1797 digits, each of the
    597 queries among them (the score inflated); it is the other 1200, the training split
    of :func:`simclr.named_data.digits_split` (pretraining itself still reads all 1797)."""
    from simclr import features
    from simclr.config import Config
    from simclr.named_data import digits_split

    class Opened(Exception):
        pass

    opened = []

    def recorded(encoder, source, *args, **kwargs):
        opened.append(source)
        if len(opened) == 2:
            raise Opened  # (both opened: nothing more to see)
        return torch.zeros(source.num_images, 2), torch.as_tensor(source.labels)

    monkeypatch.setattr(features, "extract_features", recorded)
    model = torch.nn.Module()
    model.encoder = torch.nn.Identity()
    cfg = Config(knn_train="digits", knn_test="digits")
    with pytest.raises(Opened):
        monitor.knn_monitor(cfg, model, torch.device("cpu"), "fp32", 1, None)  # type: ignore[arg-type]
    for source, split in zip(opened, digits_split(), strict=True):
        assert source.num_images == split.num_images  # 1200 and 597
        assert (source.labels == split.labels).all()


@pytest.mark.parametrize(("decoder", "decode_on"), [("pil", None), ("device", "cpu")])
def test_the_knn_monitor_reads_its_folders_with_the_runs_decoder(
        tmp_path, cache_dir, monkeypatch, capsys, decoder, decode_on):
    """`--knn-train`/`--knn-test` folders are read through cfg.data, yet decoded by
    --decoder auto's choice whatever --decoder said (PIL on a CPU, the GPU on CUDA).
    Its --knn-k past the 8 memory images is said once a run, not at every measure."""
    from simclr import features, knn

    asked, real = [], features.iter_batches

    def recorded(*args, **kwargs):
        asked.append(kwargs["decode_on"])
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "iter_batches", recorded)
    model = torch.nn.Module()
    model.encoder = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=4, ext="jpg")
    cfg = build_config(flags={"knn_train": str(photos), "knn_test": str(photos),
                              "data.decoder": decoder, "data.cache": "off",
                              "data.workers": 0, "out": str(tmp_path / "run"),
                              "knn_temperature": 0.5,
                              "augment.size": 16, "channels_last": False})
    log = monitor.MetricsLog(tmp_path, enabled=False)
    measured, real_knn = [], knn.knn_accuracy

    def knn_accuracy(*args, **kwargs):  # (the run's --knn-k and --knn-temperature)
        measured.append((kwargs["k"], kwargs["temperature"]))
        return real_knn(*args, **kwargs)

    monkeypatch.setattr(knn, "knn_accuracy", knn_accuracy)
    monitor.knn_monitor(cfg, model, torch.device("cpu"), "fp32", 1, log)
    assert len(asked) == 2 and measured == [(200, 0.5)]  # memory and queries
    monitor.knn_monitor(cfg, model, torch.device("cpu"), "fp32", 2, log)
    assert capsys.readouterr().out.count("note: --knn-k 200 is more than the 8 ") == 1
    assert {None if d is None else d.type for d in asked} == {decode_on}


def watched(losses, warmup=0, window=1, entropy=None, batch_size=8):
    """The steps at which :class:`monitor.CollapseWatch` speaks, fed windows of
    ``window`` steps whose mean losses are ``losses`` (N = 8: ln 15 when collapsed)."""
    watch, collapsed, said = monitor.CollapseWatch(), math.log(15), []
    for i, loss in enumerate(losses):
        record = {"step": (i + 1) * window, "window_steps": window, "loss": loss}
        if entropy is not None:
            record["contrast_entropy"] = entropy[i]
        if watch.see(record, collapsed, batch_size, warmup) is not None:
            said.append(record["step"])
    return said


def test_a_loss_that_stays_at_ln_2n_minus_1_is_said_collapsed_once():
    """NT-Xent sits at ln(2N - 1) when every embedding is alike: said once, when three
    windows spanning ten steps after the warm-up have stayed there; a healthy run, one
    that recovers before that, and the warm-up's (a random encoder starts near it) are
    not; NaN windows (a skipped step) and an entropy below ln N break a streak."""
    ln15, healthy = math.log(15), [math.log(15) - 0.05 * k for k in range(20)]
    assert watched(healthy) == []
    assert watched([ln15 + 0.004] * 30) == [10]  # ten one-step windows; once
    assert watched([ln15 - 0.012] * 30) == []  # (beyond the 0.01-nat tolerance)
    assert watched([ln15] * 3, window=10) == [30]  # three ten-step windows
    assert watched([ln15] * 2, window=10) == []  # two are not enough
    recovering = [ln15] * 9 + [ln15 - 0.3] + [ln15] * 9 + [ln15 - 0.5] * 10
    assert watched(recovering) == []
    assert watched([ln15] * 9 + [math.nan] + [ln15] * 9) == []
    assert watched([ln15] * 20, warmup=8) == [18]  # steps 9 to 18
    assert watched([ln15] * 5, window=10, warmup=15) == [50]  # (window 11-20 began in it)
    assert watched([ln15] * 12, entropy=[math.log(8) - 0.001] * 12) == [10]
    assert watched([ln15] * 12, entropy=[math.log(8) - 0.5] * 12) == []  # logits differ
    assert monitor.collapsed_loss(build_config().loss, 256) == pytest.approx(math.log(511))
    one_view = build_config(flags={"loss.one_view_negatives": True}).loss
    assert monitor.collapsed_loss(one_view, 256) == pytest.approx(math.log(256))
    for other in ("nt_logistic", "margin_triplet"):  # (not watched)
        assert monitor.collapsed_loss(build_config(flags={"loss.name": other}).loss, 8) is None


def test_a_run_that_learns_nothing_says_so_once(tmp_path, image_folder, cache_dir, capsys):
    """A run whose encoder stays as initialised (an lr of 1e-12 at tau 10: every logit
    alike) is told, once, on stderr and on its metrics line; a healthy one is not."""
    run(tmp_path, image_folder, cache_dir, "dead", epochs=6, **{"optim.lr": 1e-12,
                                                                "loss.temperature": 10.0})
    err = capsys.readouterr().err
    assert err.count("note: the loss has stayed at ln(2N-1) = 2.708 (N = 8) for 10 steps "
                     "(steps 3-12): the embeddings are all alike (collapsed)") == 1, err
    lines = [json.loads(x) for x in (tmp_path / "dead/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "note" in x] == [12]
    run(tmp_path, image_folder, cache_dir, "alive", epochs=6)
    assert "collapsed" not in capsys.readouterr().err
    assert "collapsed" not in (tmp_path / "alive/metrics.jsonl").read_text()


@pytest.mark.parametrize("stop_at", [5, 16])
def test_a_resumed_run_says_collapsed_once_at_the_same_step(tmp_path, image_folder, cache_dir,
                                                           capsys, stop_at):
    """The collapse watch's streak (and whether it spoke) goes into the checkpoint with
    the log window: a run stopped within the streak (step 5) or after the note (step 16)
    and resumed says it once, at step 13, as the uninterrupted run does; it once started
    over, saying it later, or a second time."""
    from simclr import train
    from simclr.resume import load_resume_config

    def stop(step, flag):
        if step == stop_at:
            flag.requested = "SIGTERM"

    cfg = build_config(flags=tiny_flags(image_folder, tmp_path / "dead", cache_dir, epochs=10,
                                        **{"optim.lr": 1e-12, "loss.temperature": 10.0}))
    assert train.pretrain(cfg, on_step=stop)["status"] == "preempted"
    assert train.pretrain(load_resume_config(tmp_path / "dead", {}),
                          resume=True)["status"] == "finished"
    assert capsys.readouterr().err.count("note: the loss has stayed at ln(2N-1)") == 1
    lines = [json.loads(x) for x in (tmp_path / "dead/metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "note" in x] == [13]


def test_a_non_finite_first_step_stops_the_run_naming_step_1():
    """``first_bad`` holds the first non-finite step's index, -1 for none: index 0 (the
    run's very first step) is one too, and under ``--nan-policy stop`` it stops the run
    naming step 1, as any later one does; -1, or ``skip``, goes on."""
    from simclr.config import Config
    from simclr.errors import DivergedError

    with pytest.raises(DivergedError, match=r"non-finite \(NaN/inf\) at step 1;") as info:
        monitor.check_finite(torch.tensor(0), None, Config(nan_policy="stop"), "fp32")
    assert info.value.step == 1
    monitor.check_finite(torch.tensor(-1), None, Config(nan_policy="stop"), "fp32")
    assert str(info.value).endswith("Lower --lr, or pass --nan-policy skip")
    with pytest.raises(DivergedError, match=r"Lower --lr, use --precision fp32, or pass "):
        monitor.check_finite(torch.tensor(4), None, Config(nan_policy="stop"), "bf16")
    monitor.check_finite(torch.tensor(0), None, Config(nan_policy="skip"), "fp32")


def test_skipped_steps_end_the_run_only_past_max_bad_steps():
    """--max-bad-steps 2: two skipped steps go on, the third stops the run at its step."""
    from simclr.config import Config
    from simclr.errors import DivergedError
    from simclr.resume import RunState

    cfg, state = Config(nan_policy="skip", max_bad_steps=2), RunState(step=4)
    monitor.count_skipped(cfg, state, None)
    monitor.count_skipped(cfg, state, None)
    assert state.bad_steps == 2
    with pytest.raises(DivergedError, match="more than 2 non-finite steps") as info:
        monitor.count_skipped(cfg, state, None)
    assert info.value.step == 5


def test_weights_count_as_diverged_from_a_first_step_met_under_stop_alone():
    """``first_bad`` 0 (the first step) is a non-finite step too; -1 is none; under
    ``skip`` no such step changed a weight."""
    from simclr.config import Config

    stop, skip = Config(nan_policy="stop"), Config(nan_policy="skip")
    assert monitor.weights_diverged(torch.tensor(0), stop)
    assert monitor.weights_diverged(torch.tensor(5), stop)
    assert not monitor.weights_diverged(torch.tensor(-1), stop)
    assert not monitor.weights_diverged(torch.tensor(0), skip)


def test_a_knn_measure_is_missed_only_at_a_due_step_the_log_lacks():
    from types import SimpleNamespace

    from simclr.config import Config

    cfg, log = Config(knn_train="memory"), SimpleNamespace(resumed_records=[{"loss": 1.0}])
    assert monitor.knn_missed(cfg, 20, 10, log)
    assert not monitor.knn_missed(cfg, 25, 10, log)  # (not due there)
    assert not monitor.knn_missed(cfg, 0, 10, log)  # (a new run: nothing missed)
    assert not monitor.knn_missed(Config(), 20, 10, log)  # (no monitor)
    measured = SimpleNamespace(resumed_records=[{"step": 20, "knn_top1": 0.5}])
    assert not monitor.knn_missed(cfg, 20, 10, measured)
    # what a resumed session finds logged: the measure at its step, else none
    assert monitor.logged_knn(measured, 20) == (20, 0.5)
    assert monitor.logged_knn(log, 20) == (-1, None)


def test_the_final_knn_measure_is_taken_from_the_monitor_of_the_same_step(monkeypatch):
    """The monitor measured the final step already: its top-1, no second feature pass."""
    from simclr.config import Config

    passes = []
    monkeypatch.setattr(monitor, "knn_monitor", lambda *a: passes.append(a[4]) or 0.25)
    args = (Config(), None, torch.device("cpu"), "fp32")
    assert monitor.final_knn(*args, 30, None, (30, 0.75), None, None) == 0.75
    assert passes == []
    assert monitor.final_knn(*args, 30, None, (20, 0.75), None, None) == 0.25
    assert passes == [30]


def test_diverged_outputs_set_aside_the_checkpoints_of_their_step(tmp_path):
    """The periodic checkpoint of the step, and (``final``) last.pt saved just before:
    both ``*.diverged``, an earlier one named as the last good."""
    from simclr.checkpoint import CHECKPOINTS, LAST, periodic_name

    folder = tmp_path / CHECKPOINTS
    folder.mkdir()
    for name in (periodic_name(10), periodic_name(20), LAST):
        (folder / name).write_bytes(b"")
    err = monitor.outputs_diverged(20, tmp_path, "fp32", final=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [periodic_name(10), f"{periodic_name(20)}.diverged", f"{LAST}.diverged"])
    assert f"set aside: {periodic_name(20)}.diverged, {LAST}.diverged" in str(err)
    assert err.step == 20
    within = tmp_path / "within" / CHECKPOINTS  # (within the run: last.pt is an earlier
    within.mkdir(parents=True)  # step's, a stopped session's, and is kept)
    for name in (periodic_name(30), LAST):
        (within / name).write_bytes(b"")
    monitor.outputs_diverged(30, within.parent, "fp32")
    assert sorted(p.name for p in within.iterdir()) == [f"{periodic_name(30)}.diverged", LAST]


def test_a_knn_folder_failing_keeps_the_steps_unless_a_non_finite_step_may_be_in_them(
        monkeypatch, tmp_path):
    """Its folder failing at the monitor's first read: the steps are saved and the
    message says how to go on; not where the weights may hold a non-finite step's update
    (``first_bad`` under --nan-policy stop)."""
    from simclr.config import Config

    def failing(*args):
        raise SimCLRError("broken/0.png: unreadable")

    monkeypatch.setattr(monitor, "knn_monitor", failing)
    saves = []
    args = (Config(nan_policy="stop"), None, torch.device("cpu"), "fp32", 3, None)
    for first_bad, saved in ((-1, True), (2, False)):
        with pytest.raises(SimCLRError, match="^kNN monitor: broken/0.png: unreadable") as info:
            monitor.knn_within_run(*args, torch.tensor(first_bad), None,
                                   lambda: saves.append(3) or tmp_path / "ckpt.pt", tmp_path)
        assert ("the run is saved at step 3" in str(info.value)) == saved
    assert saves == [3]


def test_the_monitors_photos_are_checked_against_the_pixel_limit_at_their_read_size(tmp_path):
    """100-px JPEGs fit --max-pixels 5000 decoded at 1/8 (13 px), not at the 72 px the
    monitor's 16-px views read them at: refused before training, not after an epoch;
    at an --eval-size of 8 px, its side, they fit."""
    from tests.conftest import make_image_folder

    photos = str(make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg"))
    cfg = build_config(None, flags={"augment.size": 16, "knn_train": photos,
                                    "knn_test": photos, "data.max_pixels": 5000})
    with pytest.raises(SimCLRError, match=r"^--knn-train: none of the 4 images .* exceeds "
                                          "the limit of 5000"):
        monitor.check_knn_folders(cfg)
    cfg.augment.eval_size = 8  # (read at its --eval-size, 8 px: they fit at 1/8 then)
    monitor.check_knn_folders(cfg)
    cfg.augment.eval_size, cfg.data.max_pixels = None, 10_000
    monitor.check_knn_folders(cfg)


def test_the_monitors_memory_is_read_from_a_data_set_roots_train_split(tmp_path):
    """`--knn-train root --knn-test root` of a root holding train/ and test/: the memory
    is train/, checked as such before the first step (a class of it unreadable here)."""
    root = tmp_path / "root"
    for split in ("train", "test"):
        make_image_folder(root / split, per_class=2)
    for image in (root / "train" / "class_1").iterdir():
        image.write_bytes(b"damaged")
    cfg = build_config(None, flags={"augment.size": 16, "knn_train": str(root),
                                    "knn_test": str(root)})
    with pytest.raises(SimCLRError, match=r"^--knn-train \S*train: no readable image in "
                                          r"class folder\(s\) class_1"):
        monitor.check_knn_folders(cfg)

