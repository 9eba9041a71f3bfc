"""Settings refused as having no effect: each rule checked against the computation it
claims to skip (the value changed, the output the same), and against a control where
the same change does act (so that the comparison can fail)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from simclr.augment import TwoViewAugment
from simclr.cli import main
from simclr.config import RESUME_SETTINGS, Config
from simclr.errors import SimCLRError
from simclr.inert import FOLDER_READING, inert_settings
from simclr.loss import contrastive_loss
from simclr.models import build_head, build_model
from simclr.optim import build_optimizer, warmup_steps
from simclr.plan import plan_schedule
from simclr.presets import PRESETS
from simclr.recipe import apply_resume_flags
from simclr.settings import build_config, flag_of

pytestmark = pytest.mark.usefixtures("one_thread")

# Another valid value of each setting a rule can call inert.
OTHER: dict[str, Any] = {
    "loss.margin": 0.3, "loss.temperature": 0.7, "loss.one_view_negatives": True,
    "optim.eta": 0.5, "optim.momentum": 0.5, "optim.betas": (0.5, 0.6),
    "optim.warmup_epochs": 3.0,
    "model.head_layers": 3, "model.head_hidden_dim": 17, "model.head_out_dim": 9,
    "model.head_batch_norm": True,
    "augment.flip_p": 0.9, "augment.color_p": 0.3, "augment.color_strength": 0.3,
    "augment.brightness": 0.3, "augment.contrast": 0.3, "augment.saturation": 0.3,
    "augment.hue": 0.1, "augment.color_random_order": False, "augment.grayscale_p": 0.9,
    "augment.blur_p": 0.9, "augment.blur_sigma": (0.5, 0.6), "augment.blur_kernel_frac": 0.3,
    "augment.cutout_p": 0.9, "augment.cutout_frac": 0.2, "augment.rotate_p": 0.9,
    "augment.noise_p": 0.9, "augment.noise_std": (0.2, 0.3), "augment.sobel_p": 0.9,
    "augment.crop_scale": (0.5, 0.6), "augment.crop_ratio": (0.9, 1.1),
    "augment.crop_sampler": "official", "augment.crop_resize": False,
    "augment.color_ops": "official_v1",  # (unlike official, its brightness differs too)
    **{f"augment.{op}": False for op in ("flip", "color", "grayscale", "blur", "cutout",
                                         "rotate", "noise", "sobel")},
    "model.width": 0.5, "model.cifar_stem": False, "model.zero_init_residual": False,
    "model.projection_shortcuts": True,
    "optim.exclude_bias_and_norm": False, "epochs": 3.0, "augment.interpolation": "bilinear",
}
# Bookkeeping rather than computation (the kNN monitor, the NaN policy's counter).
NOT_COMPUTED = {"knn_every", "knn_k", "knn_temperature", "max_bad_steps", "data.root",
                "data.download", "keep_checkpoints",
                *(f"data.{name}" for name in FOLDER_READING)}  # (tests of their own below)
BASE = {"augment.size": 24, "augment.cutout": True, "augment.rotate": True,
        "augment.noise": True, "augment.sobel": True, "model.arch": "resnet18",
        "model.width": 0.125}
GATES: list[dict[str, Any]] = [
    {}, {"loss.name": "margin_triplet"}, {"loss.name": "nt_logistic"}, {"optim.name": "sgd"},
    {"optim.name": "adamw"},
    {"optim.warmup_fraction": 0.1}, {"model.head": "none"}, {"model.head": "linear"},
    {f"augment.{op}": False for op in ("flip", "color", "grayscale", "blur")},
    {"augment.crop": False}, {"augment.brightness": 0.4, "augment.contrast": 0.4,
                              "augment.saturation": 0.4, "augment.hue": 0.1},
    {"augment.crop_resize": False}, {"augment.crop": False, "augment.asymmetric": True},
    {f"augment.{name}": 0.0 for name in ("flip_p", "color_p", "grayscale_p", "blur_p",
                                         "cutout_p", "rotate_p", "noise_p", "sobel_p")},
    {"augment.noise_std": (0.0, 0.0)}, {"augment.color_strength": 0.0},
    {"augment.contrast": 0.0, "augment.saturation": 0.0},
    {"augment.brightness": 0.0, "augment.contrast": 0.0, "augment.saturation": 0.0},
    {"augment.brightness": 0.4, "augment.contrast": 0.0, "augment.saturation": 0.0,
     "augment.hue": 0.0},
    {"init_from": "pretrained.pt"}, {"model.arch": "mobilenet_v3_small", "model.width": 1.0},
    {"optim.name": "sgd", "optim.weight_decay": 0.0},
    {"optim.name": "adamw", "optim.weight_decay": 0.0},
    {"time_budget": 60.0, "max_steps": 50}, {"model.arch": "resnet50"},
    {"augment.size": 16},  # (a 1-tap blur kernel)
]


def _with(cfg: Config, settings: dict[str, Any]) -> Config:
    cfg = copy.deepcopy(cfg)
    for path, value in settings.items():
        *parents, name = path.split(".")
        owner = cfg
        for part in parents:
            owner = getattr(owner, part)
        setattr(owner, name, value)
    return cfg


def _effect(cfg: Config, path: str) -> list[torch.Tensor]:
    """What the setting at ``path`` could change: the views, the loss, the head's output,
    or two optimizer steps (the warm-up's length for warmup_epochs)."""
    torch.manual_seed(0)
    section = path.split(".")[0]
    if section == "augment":
        images = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
        return [TwoViewAugment(cfg.augment, seed=3).stacked(images, torch.arange(6), 0)]
    if section == "loss":
        z_a, z_b = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
        return [contrastive_loss(cfg.loss, z_a, z_b)[0]]
    if path.startswith("model.head"):
        m = cfg.model
        head = build_head(m.head, 16, m.head_hidden_dim, m.head_out_dim, m.head_layers,
                          m.head_batch_norm)
        return [head(torch.randn(4, 16))]
    if section == "model":  # the encoder as built, or as --init-from's weights replace it
        model = build_model(cfg.model, cfg.augment.size)
        if cfg.init_from:  # (pretrained.py loads a checkpoint's encoder strictly)
            g = torch.Generator().manual_seed(1)
            model.encoder.load_state_dict({
                k: torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v
                for k, v in model.encoder.state_dict().items()})
        return [model.encoder.eval()(torch.rand(2, 3, cfg.augment.size, cfg.augment.size))]
    if path == "epochs":
        plan = plan_schedule(cfg, 100_000)
        return [torch.tensor([plan.total_steps, plan.warmup_steps])]
    if path == "optim.warmup_epochs":
        return [torch.tensor(warmup_steps(cfg.optim, 10, 10_000))]
    model = nn.Linear(4, 3)
    optimizer = build_optimizer(cfg.optim, model, 256)
    for _ in range(2):  # two: momentum acts from the second
        optimizer.zero_grad()
        model(torch.randn(5, 4)).square().sum().backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("gate", GATES, ids=lambda g: ",".join(g) or "defaults")
def test_what_is_called_inert_changes_nothing(gate):
    cfg = _with(Config(), {**BASE, **gate})
    inert = set(inert_settings(cfg)) - NOT_COMPUTED
    assert inert <= OTHER.keys()  # a new rule needs a value here, and so a check
    for path in sorted(inert):
        assert _same(_effect(cfg, path), _effect(_with(cfg, {path: OTHER[path]}), path)), path


@pytest.mark.parametrize("path", sorted(OTHER))
def test_the_same_change_acts_where_it_is_not_inert(path):
    """The control: where no rule calls it inert, the same change shows in the output."""
    active = {"loss.margin": {"loss.name": "margin_triplet"},
              "optim.betas": {"optim.name": "adamw"},
              # (the hue left unset still scales with it)
              "augment.color_strength": {f"augment.{name}": 0.4 for name in
                                         ("brightness", "contrast", "saturation")},
              }.get(path, {})
    cfg = _with(Config(), {**BASE, **active})
    assert path not in inert_settings(cfg)
    assert not _same(_effect(cfg, path), _effect(_with(cfg, {path: OTHER[path]}), path))


@pytest.mark.parametrize("flags, message", [
    ({"loss.margin": 0.5}, "--margin has no effect: it is --loss margin_triplet's, and "
                           "--loss is nt_xent; leave it out"),
    ({"loss.name": "margin_triplet", "loss.temperature": 0.2}, "--temperature has no effect"),
    ({"optim.name": "sgd", "optim.eta": 0.01}, "--eta has no effect: it is LARS's"),
    ({"optim.betas": "0.5,0.6"}, "--betas has no effect: they are AdamW's"),
    ({"model.head": "linear", "model.head_layers": 3}, "--head-layers has no effect"),
    ({"model.head": "none", "model.head_out_dim": 64}, "--head-out-dim has no effect"),
    ({"augment.blur": False, "augment.blur_sigma": "0.1,1"}, "--blur-sigma has no effect: "
                                                             r"blur is off \(--blur turns it on\)"),
    ({"knn_k": 20}, "--knn-k has no effect: there is no kNN monitor"),
    ({"loss.name": "nt_logistic", "loss.one_view_negatives": True}, "--one-view-negatives "
     "has no effect: --loss nt_logistic takes its negatives from the other view only"),
    ({"loss.name": "margin_triplet", "loss.one_view_negatives": False},
     "--no-one-view-negatives has no effect: --loss margin_triplet takes"),
    ({"augment.color_ops": "official_v1", "augment.brightness": 0, "augment.contrast": 0,
      "augment.saturation": 0}, "--color-ops has no effect: it defines brightness, "
                                "contrast and saturation, all 0 here"),
    ({"max_bad_steps": 3}, "--max-bad-steps has no effect"),
    ({"augment.asymmetric": True, "augment.first_op": "crop"}, "--first-op has no effect: "
                                                               "crop comes first in the "
                                                               "pipeline's order already"),
    ({"augment.asymmetric": True, "augment.crop": False, "augment.flip": False,
      "augment.first_op": "color"}, "--first-op has no effect: color comes first"),
    ({"augment.asymmetric": True, "augment.crop": False, "augment.flip": True,
      "augment.first_op": "crop"},
     "--first-op has no effect: crop has nothing to move without --crop"),
    ({"data.cache": "on", "data.decoder": "device"}, "--decoder has no effect: --cache on "
                                                     "decodes each image once, into the cache"),
    ({"data.cache": "off", "data.cache_dir": "/elsewhere"}, "--cache-dir has no effect: "
                                                            "--cache off keeps no decoded cache"),
    ({"checkpoint_every": 0, "checkpoint_minutes": 0, "keep_checkpoints": 3},
     "--keep-checkpoints has no effect: --checkpoint-every 0 and --checkpoint-minutes 0 "
     "save no periodic checkpoint"),
])
def test_a_flag_without_effect_is_refused(flags, message, tmp_path):
    with pytest.raises(SimCLRError, match=message):  # (a folder: its data settings act)
        build_config("digits", None, {"data.path": str(tmp_path), **flags})


def test_keep_checkpoints_acts_with_either_periodic_save(tmp_path):
    for every, minutes in ((100, 0), (0, 5)):
        cfg = build_config("digits", None, {"checkpoint_every": every, "checkpoint_minutes":
                                            minutes, "keep_checkpoints": 3})
        assert cfg.keep_checkpoints == 3
    cfg = build_config("digits", None, {"checkpoint_every": 0, "checkpoint_minutes": 0})
    with pytest.raises(SimCLRError, match="--keep-checkpoints has no effect"):
        apply_resume_flags(cfg, {"keep_checkpoints": 1}, RESUME_SETTINGS)


def test_cache_dir_acts_where_a_cache_may_be_kept(tmp_path):
    for cache in ("auto", "on"):
        cfg = build_config(None, None, {"data.path": str(tmp_path), "data.cache": cache,
                                        "data.cache_dir": "/elsewhere"})
        assert cfg.data.cache_dir == "/elsewhere"


# Another value of each setting that says how an image folder is read.
READING: dict[str, Any] = {"data.cache": "on", "data.cache_dir": "/elsewhere",
                           "data.load_size": 400, "data.store": "center", "data.strict": True,
                           "data.max_pixels": 1, "data.decoder": "pil"}


@pytest.mark.parametrize("path", sorted(READING))
def test_folder_reading_settings_need_an_image_folder(path, tmp_path):
    """The digits demo and torchvision's sets are arrays in memory (data.open_source
    returns them before any folder setting is looked at): `--cache on --load-size 4000
    --strict --max-pixels 1` trained on the digits, and config.yaml said they applied.
    They act where --data or the kNN monitor's folders (read through cfg.data) name a
    folder, and for supervised's --train/--test folders."""
    assert {f"data.{name}" for name in FOLDER_READING} == set(READING)
    folder, flag = str(tmp_path), {path: READING[path]}
    for data in ({}, {"data.path": "digits"}, {"data.path": "cifar10"},
                 {"knn_train": "stl10", "knn_test": "stl10"}):
        with pytest.raises(SimCLRError, match=f"^--{flag_of(path)} has no effect: it sets how "
                                              "an image folder is read"):
            build_config(None, None, {**data, **flag})
    build_config(None, None, {"data.path": folder, **flag})
    build_config(None, None, {"knn_train": folder, "knn_test": folder, **flag})
    supervised = ["supervised", "--print-config", f"--{flag_of(path)}",
                  *([] if READING[path] is True else [str(READING[path])])]
    assert main([*supervised, "--train", folder]) == 0
    assert main([*supervised, "--train", "cifar10", "--test", folder]) == 0
    assert main([*supervised, "--train", "cifar10"]) == 2
    saved = build_config(None, None, {})  # a supervised run's config names no folder
    if path in RESUME_SETTINGS:
        with pytest.raises(SimCLRError, match="has no effect"):
            apply_resume_flags(copy.deepcopy(saved), flag, RESUME_SETTINGS)
        apply_resume_flags(saved, flag, RESUME_SETTINGS, reads=[folder])


def test_a_presets_folder_settings_are_not_refused():
    """imagenet's load_size is the preset's, not a flag: without --data it is kept."""
    assert build_config("imagenet", None, {}).data.load_size == 384
    assert main(["pretrain", "--preset", "imagenet", "--print-config"]) == 0


def test_interpolation_under_no_crop_resize(tmp_path):
    """--no-crop-resize takes a window of the view's side from a stored square, resampled
    pixel for pixel: --interpolation changed nothing there, yet was accepted. A picture
    squeezed into its square (--store full, a photo not square) is stretched back, so it
    acts on a folder's photos stored whole."""
    flags = {"augment.crop_resize": False, "augment.interpolation": "bilinear"}
    for data in ({}, {"data.path": str(tmp_path), "data.store": "center"}):
        with pytest.raises(SimCLRError, match="^--interpolation has no effect: "
                                              "--no-crop-resize takes a window"):
            build_config(None, None, {**data, **flags})
    assert build_config(None, None, {"data.path": str(tmp_path), **flags}).augment.\
        interpolation == "bilinear"
    assert build_config(None, None, {"augment.interpolation": "bilinear"})  # (resized crops)
    # The control: pictures 3:2 and 2:3 stored squeezed, where it acts.
    cfg = _with(Config(), {**BASE, "augment.crop_resize": False})
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    views = [TwoViewAugment(_with(cfg, {"augment.interpolation": mode}).augment, seed=3)
             .stacked(images, torch.arange(2), 0, torch.tensor([1.5, 2 / 3]))
             for mode in ("bicubic", "bilinear")]
    assert not torch.equal(*views)


def test_data_root_and_download_are_for_torchvisions_sets(tmp_path):
    """--data-root and --download with a folder were accepted and did nothing (a sweep
    over them: one run under several names); they act where --data, --knn-train/-test
    or supervised's --train/--test name cifar10, cifar100 or stl10."""
    folder = str(tmp_path)
    for name, flag in (("data-root", {"data.root": "/elsewhere"}),
                       ("download", {"data.download": True})):
        with pytest.raises(SimCLRError, match=f"--{name} has no effect: it is for torchvision's"):
            build_config(None, None, {"data.path": folder, **flag})
        build_config(None, None, {"data.path": "cifar10", **flag})
        build_config(None, None, {"data.path": folder, "knn_train": "stl10",
                                  "knn_test": "stl10", **flag})
    assert main(["supervised", "--train", "cifar100", "--data-root", "/elsewhere",
                 "--print-config"]) == 0
    assert main(["supervised", "--train", folder, "--data-root", "/elsewhere",
                 "--print-config"]) == 2


def test_the_same_flags_build_where_they_act():
    cfg = build_config("digits", None, {"loss.name": "margin_triplet", "loss.margin": 0.5,
                                        "nan_policy": "skip", "max_bad_steps": 3})
    assert cfg.loss.margin == 0.5 and cfg.max_bad_steps == 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_no_preset_sets_a_setting_without_effect(preset, tmp_path):
    # (on a folder: imagenet's load_size is for the folder --data names)
    cfg = build_config(preset, None, {"data.path": str(tmp_path)})
    given = {f"{section}.{key}" if isinstance(value, dict) else section
             for section, values in PRESETS[preset].items()
             for key, value in (values.items() if isinstance(values, dict) else [(None, None)])}
    assert not given & set(inert_settings(cfg))


def test_a_config_file_may_hold_every_setting(tmp_path, capsys):
    """--print-config writes every field (margin under NT-Xent too): read back it builds."""
    assert main(["pretrain", "--preset", "digits", "--print-config"]) == 0
    (tmp_path / "all.yaml").write_text(capsys.readouterr().out)
    assert main(["pretrain", "--config", str(tmp_path / "all.yaml"), "--print-config"]) == 0
    assert main(["pretrain", "--config", str(tmp_path / "all.yaml"), "--margin", "2",
                 "--print-config"]) == 2
    assert "--margin has no effect" in capsys.readouterr().err


def test_resume_refuses_a_flag_without_effect():
    cfg = build_config("digits", None, {})
    with pytest.raises(SimCLRError, match="--knn-every has no effect: there is no kNN monitor"):
        apply_resume_flags(cfg, {"knn_every": 2.0}, RESUME_SETTINGS)


def test_epochs_act_beside_max_steps_or_a_time_budget_alone():
    """--max-steps alone caps the epochs (the shorter wins) and a time budget alone starts
    from them (its first guess, plan.plan_schedule): only the two together leave the
    epochs nothing to do."""
    assert build_config("digits", None, {"epochs": 5, "max_steps": 10}).epochs == 5
    assert build_config("digits", None, {"epochs": 5, "time_budget": "20m"}).epochs == 5
    with pytest.raises(SimCLRError, match="--epochs has no effect: --time-budget sets the "
                                          "length, --max-steps caps it"):
        build_config("digits", None, {"epochs": 5, "time_budget": "20m", "max_steps": 10})


@pytest.mark.parametrize("ops, amounts, acting", [
    ("official_v1", (0.4, 0.4, 0.4), "official_v1"),
    ("official_v1", (0.0, 0.4, 0.4), "official"),  # they differ in brightness only
    ("official", (0.4, 0.0, 0.4), "official"),  # TF's saturation still acts
    ("official", (0.4, 0.4, 0.0), "official"),  # and its contrast
    ("official", (0.4, 0.0, 0.0), "torchvision"),
    ("official_v1", (0.0, 0.0, 0.0), "torchvision"),
    ("torchvision", (0.0, 0.0, 0.0), "torchvision"),
])
def test_the_colour_ops_that_act_under_zero_amounts(ops, amounts, acting):
    from simclr.config import AugmentConfig
    from simclr.inert import acting_color_ops

    b, c, s = amounts
    assert acting_color_ops(AugmentConfig(color_ops=ops, brightness=b, contrast=c,
                                          saturation=s)) == acting
    # --color-ops is refused only where all three definitions compute the same
    cfg = build_config("digits", None, {"augment.brightness": 0, "augment.contrast": 0})
    assert "augment.color_ops" not in inert_settings(cfg)  # saturation: TF's vs torchvision's


def test_the_refused_flag_is_named_as_it_was_given(capsys):
    """`--blur --blur-p 0 --blur-sigma 0.1,2` named --blur, which is not what has no
    effect the user would leave out (--blur-sigma is); `--no-zero-init-residual` with
    --init-from was named --zero-init-residual, a flag the user did not give."""
    assert main(["pretrain", "--preset", "digits", "--blur", "--blur-p", "0", "--blur-sigma",
                 "0.1,2", "--print-config"]) == 2
    assert "--blur-sigma has no effect: --blur-p 0 never applies it" in capsys.readouterr().err
    with pytest.raises(SimCLRError, match="^--blur has no effect: --blur-p 0 never"):
        build_config("digits", None, {"augment.blur": True, "augment.blur_p": 0})
    for value, flag in ((False, "--no-zero-init-residual"), (True, "--zero-init-residual")):
        with pytest.raises(SimCLRError, match=f"^{flag} has no effect: --init-from replaces"):
            build_config("digits", None, {"init_from": "pretrained.pt",
                                          "model.zero_init_residual": value})


def test_knn_k_and_temperature_act_for_the_digits_demos_report():
    """The digits demo (no --data) ends with a kNN report on its hold-out split
    (commands.digits_knn_report) at --knn-k and --knn-temperature: they were refused
    there as having no kNN monitor, though a file's knn_k: 10 changed its top-1."""
    cfg = build_config("digits", None, {"knn_k": 10, "knn_temperature": 0.5})
    assert (cfg.knn_k, cfg.knn_temperature) == (10, 0.5)
    with pytest.raises(SimCLRError, match="--knn-every has no effect: there is no kNN"):
        build_config("digits", None, {"knn_every": 2.0})
    for data in ({"data.path": "cifar10"}, {"data.path": "digits"}):  # (no report there)
        with pytest.raises(SimCLRError, match="--knn-k has no effect: there is no kNN"):
            build_config(None, None, {**data, "knn_k": 10})


def test_blur_with_a_one_tap_kernel_is_refused():
    """Below 20-px views the blur kernel is one tap (augment_params.blur_kernel_size): no
    blur, yet --blur and its settings were accepted silently (a sweep --set
    blur=false,true at 16 px trained one run twice). A preset's own blur is no flag."""
    for flags in ({"augment.blur": True}, {"augment.blur": True, "augment.blur_p": 0.9},
                  {"augment.blur_sigma": "0.5,1"}):
        with pytest.raises(SimCLRError, match="has no effect: --blur-kernel-frac 0.1 gives "
                                              "a 1-tap kernel at 16-px views: no blur"):
            build_config(None, None, {"augment.size": 16, **flags})
    assert build_config(None, None, {"augment.size": 16, "augment.blur": True,
                                     "augment.blur_kernel_frac": 0.25}).augment.blur
    assert build_config(None, None, {"augment.size": 20, "augment.blur": True}).augment.blur
    assert build_config(None, None, {"augment.size": 16}).augment.blur  # (the default's)
    for preset in PRESETS:  # (their own sides and blur)
        build_config(preset, None, {})
    assert main(["pretrain", "--print-config"]) == 0  # (the digits demo at 16 px)


def test_blur_taps_as_the_augmentation_counts_them():
    """inert's count of taps (without torch) is augment_params.blur_kernel_size's."""
    from simclr.augment_params import blur_kernel_size
    from simclr.inert import blur_taps

    for size in range(8, 300, 7):
        for frac in (0.01, 0.05, 0.1, 0.13, 0.5, 1.0):
            assert blur_taps(size, frac) == blur_kernel_size(size, frac)


def test_supervised_folders_exempt_only_the_no_folder_reason(tmp_path):
    """supervised's --train/--test folders are read through cfg.data, which names none:
    every folder-reading setting was exempt there, so `--cache on --decoder device` and
    `--cache off --cache-dir X`, inert for another reason, were accepted."""
    folder = str(tmp_path)
    for flags in (["--cache", "on", "--decoder", "device"],
                  ["--cache", "off", "--cache-dir", folder]):
        assert main(["supervised", "--print-config", "--train", folder, *flags]) == 2
    assert main(["supervised", "--print-config", "--train", folder, "--cache", "on"]) == 0
    saved = build_config(None, None, {"data.cache": "off"}, reads=[folder])  # (supervised)
    with pytest.raises(SimCLRError, match="--cache-dir has no effect: --cache off"):
        apply_resume_flags(saved, {"data.cache_dir": folder}, RESUME_SETTINGS, reads=[folder])
    with pytest.raises(SimCLRError, match="--cache-dir has no effect: it sets how an image "
                                          "folder is read"):
        apply_resume_flags(build_config(None, None, {}), {"data.cache_dir": folder},
                           RESUME_SETTINGS, reads=["cifar10"])
    cfg = build_config(None, None, {})
    apply_resume_flags(cfg, {"data.cache_dir": folder}, RESUME_SETTINGS, reads=[folder])
    assert cfg.data.cache_dir == folder


@pytest.mark.parametrize("first, off, inert", [
    ("crop", (), True), ("color", ("crop", "flip", "rotate"), True), ("color", (), False),
    ("blur", ("crop", "flip"), False), ("color", ("crop", "rotate"), True),
    ("crop", ("crop",), True), ("blur", ("crop", "rotate"), False)])
def test_first_op_is_inert_only_where_its_group_comes_first_already(first, off, inert):
    """--first-op moves a Fig. 5 group to the front: where it is the first switched-on
    group already, the views are those without it (checked), and it is refused. The
    flip alone (--no-crop) is drawn at the shared crop every view starts with: no group
    to move, so colour first after it, or crop first, was taken for another run."""
    base = {"augment.asymmetric": True, "augment.blur": True,
            **{f"augment.{s}": False for s in off}}
    cfg = _with(Config(), {**BASE, **base, "augment.first_op": first})
    assert ("augment.first_op" in inert_settings(cfg)) is inert
    without = _with(cfg, {"augment.first_op": ""})
    assert _same(_effect(cfg, "augment.x"), _effect(without, "augment.x")) is inert


@pytest.mark.parametrize("crop, inert", [(False, True), (True, False)])
def test_first_op_naming_a_group_that_does_nothing_acts_only_through_the_crop(crop, inert):
    """Colour at --color-p 0 (grayscale off) does nothing: without --crop, blur first
    after it is the pipeline's own order (was accepted as acting); with --crop, colour
    first crops the view again after it, a second resampling: another run (a sweep took
    it for its run without --first-op, a reviewer found)."""
    base = {"augment.asymmetric": True, "augment.crop": crop, "augment.color_p": 0.0,
            "augment.grayscale": False, "augment.blur": True, "augment.rotate": False}
    first = "color" if crop else "blur"
    cfg = _with(Config(), {**BASE, **base, "augment.first_op": first})
    assert ("augment.first_op" in inert_settings(cfg)) is inert
    without = _with(cfg, {"augment.first_op": ""})
    assert _same(_effect(cfg, "augment.x"), _effect(without, "augment.x")) is inert


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_projection_shortcuts_act_on_the_basic_block_resnets(arch):
    """ResNet-18 and -34 (basic blocks, no 4x widening) keep an identity shortcut in each
    stage's first block unless --projection-shortcuts; ResNet-50 projects there already."""
    cfg = build_config("digits", None, {"model.arch": arch, "model.projection_shortcuts": True})
    assert cfg.model.projection_shortcuts
    assert "model.projection_shortcuts" not in inert_settings(cfg)
    with pytest.raises(SimCLRError, match="--projection-shortcuts has no effect: resnet50's"):
        build_config("digits", None, {"model.arch": "resnet50",
                                      "model.projection_shortcuts": True})


def test_rules_that_depend_on_other_settings_than_the_checked_ones(tmp_path):
    """torchvision's networks take none of the ResNet build settings; a warm-up
    fraction of 0 sets the warm-up as any other does; supervised's --train folder is
    photos read for views, and --asymmetric's shared crop resizes (--interpolation acts
    under --no-crop-resize there)."""
    tv = inert_settings(_with(Config(), {"model.arch": "mobilenet_v3_small"}))
    assert {"model.cifar_stem", "model.zero_init_residual",
            "model.projection_shortcuts"} <= tv.keys()
    assert "optim.warmup_epochs" in inert_settings(_with(Config(),
                                                         {"optim.warmup_fraction": 0.0}))
    window = _with(Config(), {"augment.crop_resize": False})
    assert "augment.interpolation" in inert_settings(window)
    assert "augment.interpolation" not in inert_settings(window, reads=[str(tmp_path)])
    # (a --train folder beside a named --test set: photos still)
    assert "augment.interpolation" not in inert_settings(window,
                                                         reads=[str(tmp_path), "cifar10"])
    shared = _with(window, {"augment.asymmetric": True})  # (its shared crop resizes)
    assert "augment.interpolation" not in inert_settings(shared)


def test_a_setting_given_as_zero_is_named_by_its_flag_not_as_negated(tmp_path):
    """Only a boolean given off is spelled --no-NAME: --max-bad-steps 0 was not."""
    with pytest.raises(SimCLRError, match="^--max-bad-steps has no effect"):
        build_config("digits", None, {"data.path": str(tmp_path), "max_bad_steps": 0})


@pytest.mark.parametrize("gate, owned", [
    ({"model.head": "none"}, ("head_layers", "head_hidden_dim", "head_out_dim",
                              "head_batch_norm")),
    ({"model.head": "linear"}, ("head_layers", "head_hidden_dim")),
    ({"augment.color": False}, ("color_p", "color_strength", "brightness", "contrast",
                                "saturation", "hue", "color_random_order", "color_ops")),
    ({"augment.blur": False}, ("blur_p", "blur_sigma", "blur_kernel_frac")),
    ({"augment.noise": False}, ("noise_p", "noise_std")),
    ({"augment.color_strength": 0.0}, ("color", "color_p", "color_random_order")),
    ({"augment.crop": False}, ("crop_scale", "crop_ratio", "crop_sampler", "crop_resize")),
    ({"augment.cutout": False}, ("cutout_p", "cutout_frac")),
    ({"optim.name": "adamw"}, ("eta", "momentum")),
    ({"optim.name": "sgd", "optim.weight_decay": 0.0}, ("eta", "betas",
                                                        "exclude_bias_and_norm")),
])
def test_every_setting_of_a_part_switched_off_is_called_inert(gate, owned):
    """The other direction of the check above: each setting the switched-off part alone
    reads is called inert (one left out: a sweep over it trains one run under two labels)."""
    section = next(iter(gate)).split(".")[0]
    inert = inert_settings(_with(Config(), gate))
    assert {f"{section}.{name}" for name in owned} <= inert.keys()
