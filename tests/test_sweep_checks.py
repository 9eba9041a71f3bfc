"""Tests for simclr.sweep_checks: what a sweep refuses before its first cell trains."""

from __future__ import annotations

import re

import pytest
import torch

from simclr.errors import SimCLRError
from simclr.settings import build_config
from simclr.sweep import cell_configs, run_sweep
from simclr.sweep_checks import check_cell_inputs, check_cells_differ, check_settings_act
from simclr.sweep_grid import parse_axis, plan_cells
from tests.conftest import make_image_folder, tiny_flags

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bf16", [False, True])
def test_cells_that_resolve_to_the_same_run_here_are_refused(tmp_path, image_folder, cache_dir,
                                                             monkeypatch, bf16):
    """precision=auto,fp32 trains one run twice on a CPU without bf16 (auto is fp32
    there): refused before anything runs; with bf16, auto is another run (kept)."""
    from simclr import runtime

    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: bf16)
    monkeypatch.setattr(runtime, "_warn_emulated_bf16", lambda: None)
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    for key in ("out", "precision"):
        flags.pop(key)
    cells, configs = cell_configs([parse_axis("precision=auto,fp32,bf16")], tmp_path / "sw",
                                  None, None, flags)
    resolved = [check_cell_inputs(cfg) for cfg in configs]
    assert resolved == [("cpu", "bf16" if bf16 else "fp32"), ("cpu", "fp32"), ("cpu", "bf16")]
    if bf16:  # auto is bf16 here: then auto and bf16 are one run
        message = ("cells precision=auto and precision=bf16 would train the same run on this "
                   "machine (--precision auto and bf16 are both bf16 here)")
    else:
        message = ("cells precision=auto and precision=fp32 would train the same run on this "
                   "machine (--precision auto and fp32 are both fp32 here)")
    with pytest.raises(SimCLRError, match=re.escape(message)):
        check_cells_differ(cells, configs, resolved)
    with pytest.raises(SimCLRError, match=re.escape(message)):  # as the sweep itself says
        run_sweep([parse_axis("precision=auto,fp32,bf16")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None)
    assert not (tmp_path / "sw").exists()
    two = [0, 1] if bf16 else [0, 2]  # auto beside the precision it is not: two runs
    check_cells_differ([cells[i] for i in two], [configs[i] for i in two],
                       [resolved[i] for i in two])


def test_cache_and_decoder_values_alike_here_are_one_run(tmp_path, image_folder, cache_dir):
    """cache=auto,on on a folder of small pictures (auto caches them), decoder=pil,auto on
    a CPU (auto decodes with PIL there), decoder=pil,device on a folder of PNGs (no
    JPEG to decode on a device), or any decoders under a cache (decoded once, by PIL)
    trained two identical runs: refused as precision=auto,fp32 is; values that differ
    here are kept."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    uncached = {k: v for k, v in flags.items() if k != "data.cache_dir"}  # (none kept)
    for axis, given, alike in (
            ("data.cache=auto,on", flags, "--cache auto and on are both on here"),
            ("data.decoder=pil,auto", {**uncached, "data.cache": "off"},
             "--decoder pil and auto are both pil here"),
            ("data.decoder=pil,device", {**uncached, "data.cache": "off"},
             "--decoder pil and device are both pil here")):
        cells, configs = cell_configs([parse_axis(axis)], tmp_path / "sw", None, None, given)
        with pytest.raises(SimCLRError, match=re.escape(alike)):
            check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)
    for axis in ("data.cache=auto,on", "data.decoder=pil,device"):  # (arrays, not files)
        name = axis.split("=")[0].split(".")[1]
        with pytest.raises(SimCLRError, match=rf"^--set {name}: --{name} has no effect in any "
                                              "cell: it sets how an image folder is read"):
            cell_configs([parse_axis(axis)], tmp_path / "sw", None, None,
                         {**uncached, "data.path": "digits"})
    # under --cache on, given in the sweep's flags, --decoder has no effect at all
    with pytest.raises(SimCLRError, match=r"^--set decoder: --decoder has no effect in any "
                                          r"cell: --cache on decodes each image once"):
        cell_configs([parse_axis("data.decoder=pil,device")], tmp_path / "sw", None, None,
                     {**flags, "data.cache": "on"})
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=4, ext="jpg")
    for axis, given in (("data.cache=auto,off", flags),
                        ("data.decoder=pil,device",
                         {**uncached, "data.cache": "off", "data.path": str(photos)})):
        cells, configs = cell_configs([parse_axis(axis)], tmp_path / "sw", None, None, given)
        check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)


def test_global_and_per_process_batch_norm_are_one_run_in_one_process(tmp_path,
                                                                       image_folder, cache_dir):
    """sync-bn=true,false trained by one process each: BatchNorm sees the whole batch
    either way (one run, two labels), refused; launched by two processes, two runs."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    cells, configs = cell_configs([parse_axis("model.sync_bn=true,false")], tmp_path / "sw",
                                  None, None, flags)
    for processes in (None, 1):
        with pytest.raises(SimCLRError, match=re.escape(
                "cells sync-bn=true and sync-bn=false would train the same run on this "
                "machine (--sync-bn true and false are alike in one process, whose BatchNorm "
                "sees the whole batch either way)")):
            check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, processes=processes)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, processes=2)


@pytest.mark.parametrize("axis, alike", [
    ("model.cifar_stem=auto,true", "--cifar-stem auto and true"),  # (auto: <= 32 px)
    ("model.head_hidden_dim=none,64", "--head-hidden-dim none and 64"),  # (h: 64-d)
    ("augment.eval_size=none,16", "--eval-size none and 16"),  # (the views' side)
])
def test_an_automatic_value_and_what_it_resolves_to_are_one_run(tmp_path, image_folder,
                                                                 cache_dir, axis, alike):
    """None resolves by the views' side (16 px) and the network (resnet18 x0.125, h of
    64): beside the value it resolves to, one run under two labels, refused; beside
    another value, two runs."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    assert (flags["augment.size"], flags["model.arch"], flags["model.width"]) == \
        (16, "resnet18", 0.125)
    cells, configs = cell_configs([parse_axis(axis)], tmp_path / "sw", None, None, flags)
    with pytest.raises(SimCLRError, match=re.escape(f"({alike} give the same settings here)")):
        check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)
    other = axis.replace("true", "false").replace("64", "32").replace("16", "24")
    cells, configs = cell_configs([parse_axis(other)], tmp_path / "sw", None, None, flags)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)


def test_a_pairs_grid_is_named_as_given(tmp_path, image_folder, cache_dir):
    """A --pairs cell whose op has no effect (blur at 16 px: a 1-tap kernel) was refused
    as "--set pair: ...", a flag the user never gave."""
    from simclr.sweep_grid import pairs_axis

    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    for key in ("out", "augment.blur"):
        flags.pop(key, None)
    with pytest.raises(SimCLRError, match=r"^--pairs: --blur has no effect in cell pair=blur "):
        cell_configs([pairs_axis("blur,color")], tmp_path / "sw", None, None, flags)


def digits_decoder_cells(tmp_path, cache_dir, monitor, reads=()):
    """Cells of the axis decoder=pil,device training on the digits (arrays in memory),
    their kNN monitor reading the folder ``monitor`` (None: none), the sweep's scoring
    the folders ``reads``."""
    extra = {} if monitor is None else {"knn_train": str(monitor), "knn_test": str(monitor)}
    flags = tiny_flags(tmp_path, tmp_path / "unused", cache_dir, **extra)
    for key in ("out", "data.cache_dir"):
        flags.pop(key)
    flags["data.path"] = "digits"
    return cell_configs([parse_axis("data.decoder=pil,device")], tmp_path / "sw", None, None,
                        flags, reads)


def test_decoders_of_a_named_data_set_held_in_memory_are_one_run(tmp_path, image_folder,
                                                                   cache_dir):
    """The digits are arrays in memory, never decoded: decoder=pil,device (which acts only
    on the kNN monitor's folders, small pictures cached here) trains one run twice."""
    cells, configs = digits_decoder_cells(tmp_path, cache_dir, image_folder)
    with pytest.raises(SimCLRError, match=re.escape(
            "--decoder pil and device are both cached here")):
        check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)


def test_decoders_are_two_runs_where_the_monitors_folders_decode_at_each_pass(tmp_path,
                                                                              cache_dir):
    """Training data cached, the kNN monitor's folders of photos not (--cache auto): the
    monitor decodes them with each cell's --decoder (pixels a level or two apart), so
    decoder=pil,device is two runs (so with the sweep's --eval folders of photos, each
    cell's scoring decodes them alike); it was refused as 'both cached here'."""
    from tests.conftest import make_image_folder

    photos = make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg")
    cells, configs = digits_decoder_cells(tmp_path, cache_dir, photos)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)
    # A monitor reading a data set root: its test/ of photos (its --knn-test's split, not
    # the train/ of small pictures, cached) decodes at each pass too
    make_image_folder(tmp_path / "split" / "train", per_class=2)
    make_image_folder(tmp_path / "split" / "test", per_class=2, side=100, ext="jpg")
    cells, configs = digits_decoder_cells(tmp_path, cache_dir, tmp_path / "split")
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)
    # The sweep's --eval folders of photos alike: each cell's scoring decodes them
    cells, configs = digits_decoder_cells(tmp_path, cache_dir, None, [str(photos)] * 2)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, reads=[(str(photos), False)])
    with pytest.raises(SimCLRError, match="both cached here"):
        check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)


def test_a_reading_setting_acts_on_the_eval_folders_only_if_their_scoring_reads_with_it(
        tmp_path, cache_dir):
    """On the digits (arrays in memory), the sweep's --eval folders are read with the
    cells' --strict (kept: it acts on them), not with their --load-size (the scoring
    stores them by its own transform): sweeping it there is refused as without effect."""
    from tests.conftest import make_image_folder

    photos = str(make_image_folder(tmp_path / "photos", per_class=2))
    flags = tiny_flags(tmp_path, tmp_path / "unused", cache_dir, **{"data.path": "digits"})
    for key in ("out", "data.cache_dir"):
        flags.pop(key)
    seeds = [parse_axis("seed=0,1")]
    cell_configs(seeds, tmp_path / "sw", None, None, {**flags, "data.strict": True}, [photos])
    with pytest.raises(SimCLRError, match=r"^--strict has no effect in any cell"):
        cell_configs(seeds, tmp_path / "sw", None, None, {**flags, "data.strict": True})
    with pytest.raises(SimCLRError, match=r"^--set load-size: --load-size has no effect in "
                                          r"any cell"):
        cell_configs([parse_axis("load-size=20,40")], tmp_path / "sw", None, None, flags,
                     [photos])
    # a reading setting without effect on the --eval folders too (--download: for
    # torchvision's sets) stays refused
    with pytest.raises(SimCLRError, match=r"^--download has no effect in any cell"):
        cell_configs(seeds, tmp_path / "sw", None, None, {**flags, "data.download": True},
                     [photos])


def test_caches_alike_on_the_data_are_two_runs_where_other_folders_decode_otherwise(
        tmp_path, image_folder, cache_dir):
    """cache=auto,on over small training pictures (auto caches them) under --decoder
    device: the folders of photos read beside them (the kNN monitor's, the sweep's --eval
    ones) are decoded by the device under 'auto' (uncached), by PIL under 'on', so the
    cells differ (they were refused as 'both on here'); decoded by PIL either way (cached
    or not: alike), they are one run."""
    from tests.conftest import make_image_folder

    photos = str(make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg"))
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    axis, cpu = [parse_axis("data.cache=auto,on")], [("cpu", "fp32")] * 2
    for decoder, differ in (("device", True), ("auto", False), ("pil", False)):
        given = {**flags, "data.decoder": decoder}
        for reads, monitor in (([(photos, False)], {}),
                               ([], {"knn_train": photos, "knn_test": photos})):
            cells, configs = cell_configs(axis, tmp_path / "sw", None, None,
                                          {**given, **monitor}, [r for r, _ in reads])
            if differ:
                check_cells_differ(cells, configs, cpu, reads=reads)
            else:
                with pytest.raises(SimCLRError, match="--cache auto and on are both on here"):
                    check_cells_differ(cells, configs, cpu, reads=reads)
    cells, configs = cell_configs(axis, tmp_path / "sw", None, None,
                                  {**flags, "data.decoder": "device"})
    with pytest.raises(SimCLRError, match="--cache auto and on are both on here"):
        check_cells_differ(cells, configs, cpu)  # (no other folder read)


def test_the_scorings_folders_are_compared_as_decoded_on_the_evaluation_device(
        tmp_path, image_folder, cache_dir):
    """decoder=pil,auto: the --eval folders of photos are decoded on --eval-device, not
    the cells' training one: two runs where the scoring runs on CUDA (auto: nvJPEG),
    one where it runs on the CPU, whatever device trains (training data cached)."""
    from tests.conftest import make_image_folder

    photos = str(make_image_folder(tmp_path / "photos", per_class=2, side=100, ext="jpg"))
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    cells, configs = cell_configs([parse_axis("data.decoder=pil,auto")], tmp_path / "sw",
                                  None, None, flags, [photos])
    reads = [(photos, False)]
    for trained_on in ("cpu", "cuda"):
        resolved = [(trained_on, "fp32")] * 2
        check_cells_differ(cells, configs, resolved, reads=reads, reads_device="cuda")
        with pytest.raises(SimCLRError, match="--decoder pil and auto are both cached here"):
            check_cells_differ(cells, configs, resolved, reads=reads, reads_device="cpu")


def test_lengths_that_plan_the_same_steps_are_refused(tmp_path, image_folder, cache_dir):
    """epochs=10,20 under --max-steps 2, or warm-up lengths past the 10% cap, train the
    same run (bit for bit) under two labels: refused before anything runs, saying why;
    lengths that plan other steps are kept."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)  # 24 images, batch 8
    for key in ("out", "epochs"):
        flags.pop(key)
    for axis, extra, steps in (("epochs=10,20", {"max_steps": 2}, "2 steps with 0"),
                               ("warmup-epochs=5,10", {"epochs": 10}, "30 steps with 3")):
        with pytest.raises(SimCLRError, match=rf"would train the same run on this machine "
                                              rf"\(both are {steps} of warm-up on these 24 "
                                              r"images\); leave one of the values out"):
            run_sweep([parse_axis(axis)], tmp_path / "sw", preset=None, config=None,
                      flags={**flags, **extra}, evaluate=None)
    assert not (tmp_path / "sw").exists()
    cells, configs = cell_configs([parse_axis("epochs=1,2")], tmp_path / "sw", None, None,
                                  {**flags, "max_steps": 5})  # 3 and 5 steps: two runs
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, [24, 24])
    # the same 30 steps, with 0 and 3 of warm-up: two runs
    cells, configs = cell_configs([parse_axis("warmup-epochs=0,1")], tmp_path / "sw", None,
                                  None, {**flags, "epochs": 10})
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, [24, 24])


def test_values_alike_once_their_defaults_resolve_are_refused_saying_which(
        tmp_path, image_folder, cache_dir):
    """lr=none,X where X is the lr none resolves to: the two configs are equal, and the
    refusal gave no reason ('on this machine ()'): it names the values."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    resolved = build_config(flags={**flags, "out": str(tmp_path / "x"),
                                   "optim.lr": "none"}).optim.lr
    for axes in ([f"lr=none,{resolved}"], ["seed=3", f"lr=none,{resolved}"]):
        cells, configs = cell_configs([parse_axis(a) for a in axes], tmp_path / "sw", None,
                                      None, flags)
        # (the values the cells share, the seed's, are not named)
        with pytest.raises(SimCLRError, match=re.escape(
                f"would train the same run on this machine (--lr none and {resolved} give "
                "the same settings here); leave one of the values out")):
            check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)


def test_cells_of_other_seeds_are_other_runs(tmp_path, image_folder, cache_dir):
    """seed=0,1 (or any setting the cells differ in, that acts) trains two runs: kept."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    cells, configs = cell_configs([parse_axis("seed=0,1")], tmp_path / "sw", None, None, flags)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, [24, 24])


def test_an_epochs_axis_is_refused_where_some_cells_have_a_time_budget(tmp_path,
                                                                      image_folder, cache_dir):
    """epochs=1,2 crossed with time-budget=none,60: the budgeted cells' epochs are only a
    first guess (the budget sets their length): refused, as under a common --time-budget."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    for key in ("out", "epochs"):
        flags.pop(key)
    with pytest.raises(SimCLRError, match=r"^--set epochs: under --time-budget the budget "
                                          r"sets each cell's length"):
        cell_configs([parse_axis("epochs=1,2"), parse_axis("time-budget=none,60")],
                     tmp_path / "sw", None, None, flags)


def test_warm_up_lengths_under_a_time_budget_are_two_runs(tmp_path, image_folder, cache_dir):
    """Under --time-budget the first plan is only a guess (the budget re-plans the length,
    and the warm-up with it): warm-up lengths the 10% cap makes alike in that guess are
    still two runs, kept."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir, epochs=10,
                       time_budget=60.0)  # 24 images, batch 8: a first guess of 30 steps
    flags.pop("out")
    cells, configs = cell_configs([parse_axis("warmup-epochs=5,10")], tmp_path / "sw", None,
                                  None, flags)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, [24, 24])
    # warmup-fraction=0.1,0.2: both first guesses ramp over the default 10 epochs (30 of
    # 31 steps), yet each re-plan ramps over its own share of the budget's length
    cells, configs = cell_configs([parse_axis("warmup-fraction=0.1,0.2")], tmp_path / "sw",
                                  None, None, flags)
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, [24, 24])


def test_colour_ops_alike_under_zero_amounts_are_one_run(tmp_path, image_folder, cache_dir):
    """official differs from torchvision only in contrast and saturation, official_v1
    from official only in brightness: with those amounts 0 two values train one run
    (their views are equal), refused; the third value stays another run."""
    from simclr import augment as A

    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    for zero, same, other in ((("contrast", "saturation"), (0, 1), 2),
                              (("brightness",), (1, 2), 0)):
        extra = {f"augment.{name}": 0.0 for name in zero}
        cells, configs = cell_configs([parse_axis("color-ops=torchvision,official,official_v1")],
                                      tmp_path / "sw", None, None, {**flags, **extra})
        views = [A.TwoViewAugment(cfg.augment, seed=0).stacked(images, torch.arange(16), 0)
                 for cfg in configs]
        assert torch.equal(views[same[0]], views[same[1]])
        assert not torch.equal(views[same[0]], views[other])
        names = [cells[k].name for k in same]
        with pytest.raises(SimCLRError, match=rf"cells {names[0]} and {names[1]} would train "
                                              r"the same run .*compute the same colour"):
            check_cells_differ(cells, configs, [("cpu", "fp32")] * 3)
        kept = sorted({same[0], other})
        check_cells_differ([cells[k] for k in kept], [configs[k] for k in kept],
                           [("cpu", "fp32")] * 2)


def test_cells_a_launch_could_not_share_are_refused_before_any_runs(tmp_path, image_folder,
                                                                    cache_dir):
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    with pytest.raises(SimCLRError, match="cell batch-size=7: --batch-size 7 is not divisible "
                                          "by 2 processes"):
        run_sweep([parse_axis("batch_size=8,7")], tmp_path / "sw", preset=None, config=None,
                  flags=flags, evaluate=None, processes=2)
    assert not (tmp_path / "sw").exists()


def test_only_a_cell_launched_as_processes_has_its_model_checked_against_ram(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """A GPU cell launched as several processes has its weights alone checked against RAM
    (this process never touches those GPUs); one trained alone, in this process, is
    checked on its own device as its pretraining checks it (--memory-check as given)."""
    from simclr import models, runtime

    checked = []
    monkeypatch.setattr(runtime, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(runtime, "check_gpu_per_process", lambda device, processes: None)
    monkeypatch.setattr(models, "check_model_fits",
                        lambda model, size, device, enforce=True: checked.append(
                            (device.type, enforce)))
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    _, configs = cell_configs([parse_axis("temperature=0.2,0.5")], tmp_path / "sw", None,
                              None, flags)
    for processes in (None, 1, 2):
        check_cell_inputs(configs[0], processes)
    assert checked == [("cuda", True), ("cuda", True), ("cpu", False)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is valid on a GPU")
def test_every_cells_inputs_are_checked_before_the_first_trains(tmp_path, image_folder,
                                                                cache_dir):
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    for axis, message in (("precision=fp32,fp16", "cell precision=fp16: --precision fp16 "
                                                  "needs a GPU"),
                          (f"init-from={tmp_path / 'nowhere'}",
                           "--init-from: checkpoint not found: "),
                          ("temperature=0.2,0.5", "--knn-train: folder not found")):
        extra = ({"knn_train": str(tmp_path / "nope"), "knn_test": str(image_folder)}
                 if axis.startswith("temperature") else {})
        with pytest.raises(SimCLRError, match=message):
            run_sweep([parse_axis(axis)], tmp_path / "sw", preset=None, config=None,
                      flags={**flags, **extra}, evaluate=None)
        assert not (tmp_path / "sw").exists()  # nothing trained, nothing written


def test_an_axis_or_flag_without_effect_in_a_cell_is_refused(tmp_path, image_folder,
                                                              cache_dir):
    """Table 4 crossed with temperature: margin_triplet has none, so its two cells would
    be one run under two labels; refused before anything runs."""
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    flags.pop("loss.temperature")
    axes = [parse_axis("loss=nt_xent,margin_triplet"), parse_axis("temperature=0.1,0.5")]
    with pytest.raises(SimCLRError) as info:
        run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags, evaluate=None)
    assert str(info.value) == (
        "--set temperature: --temperature has no effect in cell "
        "loss=margin_triplet_temperature=0.1 (--loss margin_triplet has no temperature), so "
        "its values would train the same run there; sweep those cells separately")
    axes = [parse_axis("loss=nt_xent,nt_logistic")]
    with pytest.raises(SimCLRError, match="--margin has no effect in any cell: it is --loss "
                                          "margin_triplet's, and --loss is nt_xent"):
        run_sweep(axes, tmp_path / "sw", preset=None, config=None,
                  flags={**flags, "loss.margin": 0.5}, evaluate=None)
    assert not (tmp_path / "sw").exists()
    # A common flag that acts in some cells is the point of crossing it with them.
    axes = [parse_axis("loss=nt_xent,margin_triplet")]
    cells = plan_cells(axes, tmp_path / "sw")
    configs = [build_config(None, None, {**flags, "loss.margin": 0.5, **c.values},
                            inert_ok={"loss.margin"}) for c in cells]
    check_settings_act(axes, cells, configs, {**flags, "loss.margin": 0.5})


def test_a_first_op_axis_may_spell_the_pipelines_own_order_as_its_baseline(tmp_path):
    """--set first-op=crop,color (a sweep of a release before --first-op crop was refused
    as without effect): crop is the baseline cell, not another cell's run relabelled;
    an axis of crop alone still has no effect anywhere."""
    flags = {"data.path": str(tmp_path), "augment.asymmetric": True}
    for text, refused in (("first_op=crop,color", False), ("first_op=crop", True)):
        axes = [parse_axis(text)]
        cells = plan_cells(axes, tmp_path / "sw")
        configs = [build_config("digits", None, {**flags, **c.values},
                                inert_ok={"augment.first_op"}) for c in cells]
        if refused:
            with pytest.raises(SimCLRError, match="--first-op has no effect in any cell"):
                check_settings_act(axes, cells, configs, flags)
        else:
            check_settings_act(axes, cells, configs, flags)


def _counted_reads(monkeypatch) -> list:
    """The paths --init-from files are read from (pretrained.initial_weights), in order."""
    from simclr import pretrained

    reads: list = []
    real = pretrained.initial_weights
    monkeypatch.setattr(pretrained, "initial_weights",
                        lambda path: reads.append(path) or real(path))
    return reads


def test_initial_weights_that_do_not_fit_a_cell_are_refused_before_any_trains(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """--init-from of width 0.125 crossed with width=0.125,0.25 was found when the
    second cell started, after the first had trained; the file is read once."""
    from simclr.checkpoint import save_checkpoint
    from simclr.models import build_model

    cfg = build_config(flags={"model.arch": "resnet18", "model.width": 0.125,
                              "augment.size": 16})
    save_checkpoint({"kind": "pretrain", "config": cfg.to_dict(),
                     "model": build_model(cfg.model, 16).state_dict()}, tmp_path, "init.pt")
    reads = _counted_reads(monkeypatch)
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir,
                       init_from=str(tmp_path / "init.pt"))
    flags.pop("out")
    flags.pop("model.width")
    axes = [parse_axis("seed=0,1"), parse_axis("width=0.125,0.25")]
    with pytest.raises(SimCLRError, match=r"cell seed=0_width=0.25: --init-from: the "
                                          r"pretrain checkpoint .* does not fit this run's "
                                          r"resnet18 width 0.25: "):
        run_sweep(axes, tmp_path / "sw", preset=None, config=None, flags=flags,
                  evaluate=None)
    assert not (tmp_path / "sw").exists() and len(reads) == 1
    reads.clear()
    cells, configs = cell_configs(axes[:1], tmp_path / "sw", None, None,
                                  {**flags, "model.width": 0.125})
    read: dict = {}
    for cfg in configs:
        check_cell_inputs(cfg, read=read)
    assert len(reads) == 1  # two cells, one file, one reading


def test_an_unreadable_initial_weights_file_is_read_once_for_all_the_cells(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """--init-from a file that is no checkpoint (a list of tensors) was read once per
    cell before its one error (only a good file's reading was kept, and every cell is
    asked whether it fails alike): 8 readings of a file perhaps gigabytes large for an
    8-cell sweep. Its failure is kept too: read once."""

    torch.save([torch.randn(4, 4)] * 3, tmp_path / "list.pt")
    reads = _counted_reads(monkeypatch)
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir,
                       init_from=str(tmp_path / "list.pt"))
    flags.pop("out")
    with pytest.raises(SimCLRError, match=r"^--init-from: "):  # (every cell's: no cell named)
        run_sweep([parse_axis("seed=0,1,2,3,4,5,6,7")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None)
    assert not (tmp_path / "sw").exists() and len(reads) == 1


def test_a_model_too_large_for_memory_in_any_cell_is_refused_before_the_first_trains(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """--set width=0.125,64 trained cell 1 for hours, then cell 2's pretraining refused
    its model (too large for memory): each cell's model is now counted (on the meta
    device, nothing allocated) before the first cell trains, as its pretraining would."""
    from simclr import memory, train

    monkeypatch.setattr(memory, "available_bytes", lambda device: 8.0 * 2**30)
    trained = []
    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False: trained.append(cfg) or
                        {"status": "preempted", "steps": 1, "epochs": 0.1, "elapsed_s": 1.0})
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    for key in ("out", "model.width"):
        flags.pop(key)
    with pytest.raises(SimCLRError, match=r"^cell width=64: the model \(resnet18 x64.*\) "
                                          r"does not fit in memory"):
        run_sweep([parse_axis("width=0.125,64")], tmp_path / "sw", preset=None, config=None,
                  flags=flags, evaluate=None)
    assert trained == [] and not (tmp_path / "sw").exists()
    flags["memory_check"] = False  # (weights alone checked then, as pretraining does)
    with pytest.raises(SimCLRError, match=r"^cell width=64: .* its weights"):
        run_sweep([parse_axis("width=0.125,64")], tmp_path / "sw", preset=None, config=None,
                  flags=flags, evaluate=None)


def test_a_named_data_set_missing_for_a_cell_is_refused_before_the_first_trains(
        tmp_path, monkeypatch):
    """cifar10 not under --data-root was found only when a cell started (check_batches
    skipped named sets): refused now before anything trains, as pretraining says it."""
    from simclr import train

    trained = []
    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False: trained.append(cfg) or
                        {"status": "preempted", "steps": 1, "epochs": 0.1, "elapsed_s": 1.0})
    flags = {"data.path": "cifar10", "data.root": str(tmp_path / "none"), "device": "cpu",
             "precision": "fp32"}
    # (the data set of every cell: the sweep's, said without a cell's name)
    with pytest.raises(SimCLRError, match=r"^cifar10 not found under "):
        run_sweep([parse_axis("temperature=0.2,0.5")], tmp_path / "sw", preset=None,
                  config=None, flags=flags, evaluate=None)
    assert trained == [] and not (tmp_path / "sw").exists()


def test_lengths_alike_on_the_digits_are_refused_on_the_images_pretraining_reads(
        tmp_path, monkeypatch):
    """--set epochs=1,2 --max-steps 1 on the digits demo trained both cells alike (the
    step plan was compared only for a folder, whose files are counted): the digits'
    1797 images are known, so the cells' plans are compared and the grid refused."""
    from simclr import train
    from simclr.named_data import digits_source

    monkeypatch.setattr(train, "pretrain", lambda cfg, resume=False: pytest.fail("trained"))
    size = digits_source().num_images
    with pytest.raises(SimCLRError, match=re.escape(
            f"(both are 1 steps with 0 of warm-up on these {size} images)")):
        run_sweep([parse_axis("epochs=1,2")], tmp_path / "sw", preset="digits", config=None,
                  flags={"max_steps": "1"}, evaluate=None)
    assert not (tmp_path / "sw").exists()


def test_a_failure_is_the_sweeps_only_where_every_cell_fails_alike():
    """per_cell names the cell where the failure is that cell's (one cell of several,
    or the only cell, unless ``unswept`` says so), and says it once, unnamed, where
    every cell fails with the same message."""
    from types import SimpleNamespace

    from simclr.sweep_checks import per_cell

    cells = [SimpleNamespace(name="lr=0.1"), SimpleNamespace(name="lr=0.2")]

    def fails(which):
        def check(k):
            if k in which:
                raise SimCLRError("boom")
            return k
        return check

    def own_failure(k):
        raise SimCLRError(f"boom {k}")

    assert per_cell(cells, fails(())) == [0, 1]
    with pytest.raises(SimCLRError, match=r"^cell lr=0.1: boom$"):
        per_cell(cells, fails((0,)))
    with pytest.raises(SimCLRError, match=r"^cell lr=0.2: boom$"):
        per_cell(cells, fails((1,)))
    with pytest.raises(SimCLRError, match=r"^boom$"):
        per_cell(cells, fails((0, 1)))
    with pytest.raises(SimCLRError, match=r"^cell lr=0.1: boom 0$"):  # (each its own)
        per_cell(cells, own_failure)
    with pytest.raises(SimCLRError, match=r"^cell lr=0.1: boom$"):
        per_cell(cells[:1], fails((0,)))
    three = [*cells, SimpleNamespace(name="lr=0.3")]  # (the last cell passes: not all fail)
    with pytest.raises(SimCLRError, match=r"^cell lr=0.1: boom$"):
        per_cell(three, fails((0, 1)))
    with pytest.raises(SimCLRError, match=r"^boom$"):
        per_cell(cells[:1], fails((0,)), unswept=lambda message: True)


def test_a_flag_also_set_by_an_axis_is_refused():
    from types import SimpleNamespace

    from simclr.sweep_checks import check_not_swept_twice

    axis = SimpleNamespace(name="lr", settings=[{"optim.lr": 0.1}, {"optim.lr": 0.2}])
    check_not_swept_twice([axis], {"epochs": 3})
    with pytest.raises(SimCLRError, match=r"^--lr is also swept \(by lr\), which would "
                                          r"replace it in every cell; give it once$"):
        check_not_swept_twice([axis], {"optim.lr": 0.5, "epochs": 3})


def test_each_cells_own_data_folder_is_checked_against_its_batch(tmp_path, cache_dir):
    """A data axis: every cell's folder is listed and checked, not the first one's alone;
    the folder too small for the batch is refused naming its cell, and a sweep whose
    folders all hold enough images gets each one's count."""
    from simclr.sweep_checks import check_batches
    from tests.conftest import make_image_folder

    big = make_image_folder(tmp_path / "big", per_class=12)
    small = make_image_folder(tmp_path / "small", per_class=2)
    flags = tiny_flags(big, tmp_path / "unused", cache_dir)
    flags.pop("out")
    for order in ([big, small], [small, big]):
        axes = [parse_axis(f"data={order[0]},{order[1]}")]
        cells, configs = cell_configs(axes, tmp_path / "sw", None, None, flags)
        with pytest.raises(SimCLRError) as info:
            check_batches(cells, configs)
        small_cell = next(c.name for c, cfg in zip(cells, configs, strict=True)
                          if cfg.data.path == str(small))
        assert str(info.value).startswith(f"cell {small_cell}: "), str(info.value)
        assert "batch" in str(info.value) and "\n" not in str(info.value)
    more = make_image_folder(tmp_path / "more", per_class=6)
    cells, configs = cell_configs([parse_axis(f"data={big},{more}")], tmp_path / "sw", None,
                                  None, flags)
    assert check_batches(cells, configs) == [24, 12]
    # a data folder not found is said as the sweep's, naming the folder (not a cell)
    cells, configs = cell_configs([parse_axis(f"data={big},{tmp_path / 'none'}")],
                                  tmp_path / "sw", None, None, flags)
    with pytest.raises(SimCLRError, match=r"^data folder not found: .*none$"):
        check_batches(cells, configs)
    # photos past --max-pixels as the cell decodes them (130 px whole for its 64-px views,
    # stored at 74), fine at 1/8: refused before any cell trains (cell 2 failed once cell
    # 1 had trained)
    photos = make_image_folder(tmp_path / "photos", per_class=4, side=130, ext="jpg")
    cells, configs = cell_configs([parse_axis(f"data={big},{photos}")], tmp_path / "sw",
                                  None, None, {**flags, "data.max_pixels": 10_000,
                                               "augment.size": 64})
    with pytest.raises(SimCLRError, match=r"^cell data=.*photos: none of the 8 images .* "
                                          "exceeds the limit of 10000"):
        check_batches(cells, configs)
    # the same folder at two view sizes, each decoding it at its own side (the 130-px
    # JPEGs at 33 px for 16-px views, whole for 64-px ones): the second cell's refused
    cells, configs = cell_configs([parse_axis("augment.size=16,64")], tmp_path / "sw", None,
                                  None, {**flags, "data.path": str(photos),
                                         "data.max_pixels": 10_000})
    with pytest.raises(SimCLRError, match=r"^cell \S*64: none of the 8 images .* exceeds"):
        check_batches(cells, configs)


def test_a_data_folder_is_read_once_for_all_the_cells_that_read_it_alike(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """Every cell is asked whether it fails as the first did: a folder none of whose
    files decodes is opened whole once, not once per cell; a readable one costs one
    image for all the cells, and one probe of its files' headers (64 header reads per
    cell before)."""
    from simclr import data
    from simclr.sweep_checks import check_batches

    broken = tmp_path / "broken"
    broken.mkdir()
    for k in range(8):
        (broken / f"{k}.png").write_bytes(b"not an image")
    opened = []
    real = data.open_image
    monkeypatch.setattr(data, "open_image",
                        lambda path, *args, **kw: opened.append(path) or real(path, *args, **kw))
    probes = []
    probe = data.probe_sizes
    monkeypatch.setattr(data, "probe_sizes", lambda paths: probes.append(1) or probe(paths))
    flags = tiny_flags(broken, tmp_path / "unused", cache_dir)
    flags.pop("out")
    for folder, count in ((broken, 8), (image_folder, 1)):
        cells, configs = cell_configs([parse_axis("seed=0,1,2")], tmp_path / "sw", None,
                                      None, {**flags, "data.path": str(folder)})
        opened.clear()
        if count == 8:
            with pytest.raises(SimCLRError, match=r"^none of the 8 images"):
                check_batches(cells, configs)
        else:
            probes.clear()
            assert check_batches(cells, configs) == [24] * 3
            assert len(probes) == 1
        assert len(opened) == count


def test_a_cache_axis_lists_and_probes_each_folder_once_for_all_the_checks(
        tmp_path, image_folder, cache_dir, monkeypatch):
    """cache=auto,off: the batch check and the check that the cells differ (what auto
    resolves to) each listed the folder and read 64 of its headers; one listing and
    one probe now serve both."""
    from simclr import data, sweep_checks
    from simclr.sweep_checks import FolderLooks, check_batches

    listed, probes = [], []
    real_list, real_probe = sweep_checks.list_folder, data.probe_sizes
    monkeypatch.setattr(sweep_checks, "list_folder",
                        lambda *a, **kw: listed.append(a) or real_list(*a, **kw))
    monkeypatch.setattr(data, "probe_sizes", lambda paths: probes.append(1) or real_probe(paths))
    flags = tiny_flags(image_folder, tmp_path / "unused", cache_dir)
    flags.pop("out")
    cells, configs = cell_configs([parse_axis("data.cache=auto,off")], tmp_path / "sw", None,
                                  None, flags)
    looks = FolderLooks()
    assert check_batches(cells, configs, looks) == [24, 24]
    check_cells_differ(cells, configs, [("cpu", "fp32")] * 2, looks=looks)  # (auto: on here)
    assert len(listed) == 1 and len(probes) == 1


def test_cache_auto_is_resolved_on_the_folders_spread_of_pictures_not_its_first(
        tmp_path, cache_dir):
    """A folder of photos whose first file is a small picture: --cache auto leaves it
    uncached (not all small), so cache=auto,off is one run, refused; the probe spread
    over its files, not its first alone, tells."""
    from PIL import Image

    photos = make_image_folder(tmp_path / "photos", per_class=4, side=100)
    Image.new("RGB", (16, 16)).save(photos / "class_0" / "000.png")  # the first listed
    flags = tiny_flags(photos, tmp_path / "unused", cache_dir)
    flags.pop("out")
    cells, configs = cell_configs([parse_axis("data.cache=auto,off")], tmp_path / "sw", None,
                                  None, flags)
    with pytest.raises(SimCLRError, match="--cache auto and off are both off here"):
        check_cells_differ(cells, configs, [("cpu", "fp32")] * 2)
