"""Validation: every bad value refused before work starts, in one line naming its flag."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from simclr.cli import main
from simclr.errors import SimCLRError
from simclr.settings import SettingError, build_config, config_from_dict
from simclr.validate import check_scale, validate


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"model.arch": "resnet17"}, "--arch"),
        ({"model.width": "0"}, "--width must be positive"),
        ({"model.width": "-1"}, "--width must be positive"),
        ({"model.width": "0.01"}, "--width must be at least 1/64 (the first layers' 64 "),
        ({"model.width": "1e300"}, "--width must be at most 64"),
        ({"model.head_out_dim": "99999999999999999999"},
         "--head-out-dim must be at most 65536, got 99999999999999999999"),
        ({"model.head_hidden_dim": "100000"}, "--head-hidden-dim must be at most 65536"),
        ({"model.head_layers": "1000000"}, "--head-layers must be at most 16, got 1000000"),
        ({"batch_size": "-4"}, "--batch-size must be positive, got -4"),
        ({"knn_train": " ", "knn_test": "b"}, "--knn-train must name a folder, got an empty value"),
        ({"augment.size": "7"}, "--image-size must be at least 8 pixels, got 7"),
        ({"augment.size": "100000"}, "--image-size must be at most 4096 pixels, got 100000"),
        ({"data.load_size": "100000"}, "--load-size must be at most 4096 pixels, got 100000"),
        ({"augment.eval_size": "4"}, "--eval-size must be 8 to 4096 pixels, got 4"),
        ({"augment.eval_size": "0"}, "--eval-size must be positive, got 0"),
        ({"model.arch": "vit_b_16", "augment.size": "224", "augment.eval_size": "256"},
         "--eval-size 256: a vit_b_16's position embeddings are for its training side "
         "(224 px); drop it"),
        ({"data.load_size": "100", "augment.size": "128"},
         "--load-size must be at least the view's side (--image-size 128), got 100"),
        ({"loss.temperature": "0"}, "--temperature must be positive"),
        ({"loss.margin": "-0.1"}, "--margin must be non-negative"),
        ({"loss.semi_hard": True}, "--semi-hard applies to --loss nt_logistic"),
        # (the linear head under another name: a Fig. 8 sweep trained it twice)
        ({"model.head_layers": "1"}, "--head-layers 1 makes the mlp head one layer without "
         "a ReLU, which is --head linear (Fig. 8's linear projection); give that"),
        ({"model.head_out_dim": "1"}, "--head-out-dim 1 with z L2-normalised (--normalize): "
         "every z is +1 or -1, whose gradient is zero, so nothing would train; give 2 or more"),
        ({"optim.lr": "-0.1"}, "--lr must be positive"),
        ({"batch_size": "1"}, "--batch-size"),
        ({"precision": "fp8"}, "--precision"),
        ({"data.decoder": "gpu"}, "--decoder"),
        ({"data.store": "crop"}, "--store"),
        ({"augment.asymmetric": True, "augment.crop_resize": False}, "--asymmetric"),
        ({"augment.crop_scale": "0.5,0.1"}, "--crop-scale"),
        ({"augment.crop_sampler": "official", "augment.crop_scale": "0.01,0.09"},
         "--crop-scale max 0.09 is below what --crop-sampler official keeps of a picture "
         "(0.1, as the official code's min_object_covered): no crop would qualify"),
        ({"optim.betas": "1,1"}, "--betas must lie in [0, 1)"),
        ({"augment.cutout_frac": "2"}, "--cutout-frac"),
        ({"augment.blur_kernel_frac": "0"}, "--blur-kernel-frac"),
        ({"augment.noise_std": "-1,-0.5"}, "--noise-std"),
        ({"max_bad_steps": "-1"}, "--max-bad-steps must be non-negative"),
        ({"augment.flip_p": "2"}, "--flip-p must lie in [0, 1], got 2.0"),
        ({"augment.crop_ratio": "2,1"}, "--crop-ratio must satisfy 0 < min <= max"),
        ({"augment.hue": "0.6"}, "--hue gives hue jitter 0.6, which must lie in [0, 0.5]"),
        ({"augment.color_strength": "3"},
         "--color-strength gives hue jitter 0.6, which"),  # (0.2 x 3, shown as 0.6)
        ({"loss.weight": "0"}, "--loss-weight must be positive"),
    ],
)
def test_bad_values_name_the_setting(flags, needle):
    with pytest.raises(SimCLRError, match=None) as info:
        build_config(flags=flags)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("flags, message", [
    ({"optim.warmup_epochs": 1e308}, "--warmup-epochs must be at most 1e+06"),
    ({"epochs": 1e308}, "--epochs must be at most 1e+06"),
    ({"optim.final_lr": -5.0}, "--final-lr must be non-negative"),
    ({"optim.final_lr": float("nan")}, "--final-lr must be a finite number, got nan"),
    ({"optim.final_lr": 0.3, "optim.lr": 0.1, "batch_size": 512},  # a cosine that rises
     "--final-lr must be at most the peak lr the cosine decays from (0.2: --lr 0.1 "
     "scaled for batch 512), got 0.3"),
    ({"augment.crop_ratio": (1.0, float("inf"))}, "--crop-ratio must be a finite number"),
    ({"augment.blur_sigma": (0.1, float("inf"))}, "--blur-sigma must be a finite number"),
    # Finite, but past float32 (torch applies them in it: a traceback after the first
    # step) or making infinite logits or views (blamed on --lr as a diverged loss)
    ({"optim.weight_decay": 1e39}, "--weight-decay must be at most 1e+06, got 1e+39"),
    ({"optim.lr": 1e41, "optim.name": "sgd"}, "--lr must be at most 1e+30, got 1e+41"),
    ({"optim.eta": 1e7}, "--eta must be at most 1e+06"),
    ({"loss.temperature": 1e-300}, "--temperature must be at least 0.0001, got 1e-300"),
    ({"knn_temperature": 1e-46}, "--knn-temperature must be at least 0.0001, got 1e-46"),
    ({"loss.weight": 1e300}, "--loss-weight must be at most 1e+06"),
    ({"augment.brightness": 1e300}, "--brightness must be at most 1e+06"),
    ({"augment.color_strength": 1e300, "augment.hue": 0.1},  # (the value typed, not 0.8 s)
     "--color-strength 1e+300 gives brightness jitter 8e+299, which must be at most 1e+06"),
    ({"augment.color_strength": "1e308"},
     "--color-strength 1e+308 gives brightness jitter 8e+307, which must be at most 1e+06"),
    ({"augment.blur_sigma": (1e-30, 1e-30)}, "--blur-sigma must be at least 0.001 pixels"),
    ({"augment.noise_std": (0.0, 1e300)}, "--noise-std must be at most 1e+06"),
    ({"data.workers": 1000000}, "--workers must be at most 256, got 1000000"),
    ({"data.root": " "}, "--data-root must name a folder, got an empty value"),
])
def test_values_that_pass_a_range_check_but_break_the_run_are_refused(flags, message):
    """Each passed validation and then overflowed a step count, ran with a negative lr,
    or filled the augmentation with NaN."""
    with pytest.raises(SimCLRError, match=re.escape(message)):
        build_config(flags=flags)


def test_a_stored_config_is_held_to_validity_but_not_to_a_new_runs_scale():
    """A checkpoint's config is read through validate alone: a width below 1/64 that an
    older run saved still loads, an impossible value does not."""
    small = build_config(flags={"model.width": 0.25})
    small.model.width = 0.01
    validate(config_from_dict(small.to_dict()))  # loads
    one_layer = build_config(flags={"model.head": "linear"})  # (a run saved before the
    one_layer.model.head, one_layer.model.head_layers = "mlp", 1  # refusal: still loads)
    validate(config_from_dict(one_layer.to_dict()))
    with pytest.raises(SettingError, match="at least 1/64"):
        check_scale(small)  # but a new run is refused it
    # A classifier records its encoder's config at the evaluation's side, maybe above the
    # pretraining's stored side (and runs before the rule saved such pairs): they load.
    small.model.width, small.data.load_size, small.augment.size = 0.25, 24, 32
    validate(config_from_dict(small.to_dict()))
    with pytest.raises(SettingError, match="--load-size must be at least the view's side"):
        check_scale(small)
    # A run saved with official crops of at most 9% trained on whole pictures: it loads
    # (info, evaluations), while a new run or evaluation is refused such crops.
    small.data.load_size = None
    small.augment.crop_sampler, small.augment.crop_scale = "official", (0.01, 0.09)
    validate(config_from_dict(small.to_dict()))
    with pytest.raises(SettingError, match="--crop-scale max 0.09 is below what"):
        check_scale(small)
    from simclr.classifier_setup import crop_flip_config

    with pytest.raises(SettingError, match="--crop-scale max 0.09 is below what"):
        crop_flip_config(32, (0.01, 0.09), "official")
    small.augment.crop_sampler = "torchvision"
    small.loss.temperature = -1.0
    with pytest.raises(SettingError, match="--temperature must be positive") as info:
        validate(small)
    assert info.value.path == "loss.temperature"


def test_a_presets_value_refused_for_a_new_run_names_the_preset():
    with pytest.raises(SimCLRError) as info:
        build_config(preset="cifar10-cpu", flags={"model.arch": "vit_b_16"})
    assert str(info.value) == (
        "--image-size 24: vit_b_16 cuts images into 16-px patches; give a multiple of 16 "
        "(set by --preset cifar10-cpu; give --image-size)")
    # (imagenet's --load-size 384 is for its 224-px views: another --image-size drops it,
    # where it was refused below 448 px, settings.build_config)
    assert build_config(preset="imagenet", flags={"augment.size": 448}).data.load_size is None
    assert build_config(preset="imagenet", flags={  # (a folder: --load-size acts on one)
        "augment.size": 448, "data.load_size": 512, "data.path": "photos"}).data.load_size == 512


@pytest.mark.parametrize("path,value,message", [
    ("batch_size", "16", "--batch-size must be a whole number, got '16'"),
    ("batch_size", True, "--batch-size must be a whole number, got True"),
    ("augment.size", 32.0, "--image-size must be a whole number, got 32.0"),
    ("loss.temperature", "0.5", "--temperature must be a number, got '0.5'"),
    ("augment.crop_scale", (0.08, "1"), "--crop-scale must be two numbers A,B"),
    ("augment.crop_scale", (0.08,), "--crop-scale must be two numbers A,B"),
    ("model.cifar_stem", "no", "--cifar-stem must be true or false, got 'no'"),
    ("data.path", 3, "--data must be text, got 3"),
])
def test_a_config_edited_from_python_is_held_to_its_types(path, value, message):
    """Flags and YAML are coerced; a value set from Python is not, and met a bare
    TypeError ('>' between str and int) deep inside pretrain."""
    cfg = build_config("cifar10-cpu", None, {"out": "x"})
    *parents, name = path.split(".")
    holder = cfg
    for part in parents:
        holder = getattr(holder, part)
    setattr(holder, name, value)
    with pytest.raises(SettingError, match=re.escape(message)):
        validate(cfg)
    cfg = build_config("cifar10-cpu", None, {"out": "x"})
    cfg.model = {"arch": "resnet18"}  # a section replaced: KeyError 'ModelConfig' before
    with pytest.raises(SimCLRError, match="section 'model' of the config must be a "
                                          "ModelConfig, got dict$"):
        validate(cfg)
    cfg = build_config("cifar10-cpu", None, {"out": "x"})
    cfg.loss.temperature = 1  # a whole number is a number
    cfg.augment.crop_scale = [0.2, 1]  # (as YAML gives it)
    cfg.out, cfg.batch_size = Path("runs") / "a", np.int64(16)  # the right kind, otherwise
    cfg.optim.lr = np.float32(0.5)
    validate(cfg)  # ... kept as the plain values they stand for (YAML saves those)
    assert (cfg.out, cfg.augment.crop_scale) == (str(Path("runs") / "a"), (0.2, 1.0))
    assert [type(v) for v in (cfg.batch_size, cfg.optim.lr)] == [int, float]


@pytest.mark.parametrize("flags, message", [
    ({"optim.momentum": 1.0}, "--momentum must lie in [0, 1), got 1.0"),
    ({"optim.warmup_fraction": 1.0}, "--warmup-fraction must lie in [0, 1), got 1.0"),
    ({"seed": 2**63}, "--seed must lie in [0, 2^63 - 1], got 9223372036854775808"),
    ({"seed": -1}, "--seed must lie in [0, 2^63 - 1], got -1"),
    ({"augment.crop_scale": (0.0, 1.0)}, "--crop-scale must satisfy 0 < min <= max <= 1"),
    ({"model.width": 0.99 / 64}, "--width must be at least 1/64"),
    ({"data.load_size": 31, "augment.size": 32}, "--load-size must be at least the view's"),
    # every other bound's first value outside it (each passed when its check was dropped
    # or its edge moved)
    ({"optim.eta": 0.0}, "--eta must be positive, got 0.0"),
    ({"optim.betas": (0.9, 1.0)}, "--betas must lie in [0, 1), got (0.9, 1.0)"),
    ({"optim.final_lr": 0.15, "optim.lr": 0.1, "optim.lr_scaling": "none", "batch_size": 512},
     "--final-lr must be at most the peak lr the cosine decays from (0.1: --lr 0.1 scaled "
     "for batch 512), got 0.15"),
    ({"device": "cuda:"}, "--device: unknown device 'cuda:'"),
    ({"threads": 0}, "--threads must be positive, got 0"),
    ({"log_every": 0}, "--log-every must be positive, got 0"),
    ({"keep_checkpoints": 0}, "--keep-checkpoints must be positive, got 0"),
    ({"knn_k": 0}, "--knn-k must be positive, got 0"),
    ({"data.max_pixels": 0}, "--max-pixels must be positive, got 0"),
    ({"augment.crop_scale": (0.5, 1.5)}, "--crop-scale must satisfy 0 < min <= max <= 1"),
    ({"augment.crop_ratio": (0.0, 1.0)}, "--crop-ratio must satisfy 0 < min <= max"),
    ({"augment.noise_std": (0.2, 0.1)}, "--noise-std must satisfy 0 <= min <= max"),
    ({"augment.blur_sigma": (2.0, 1.0)}, "--blur-sigma must satisfy 0 < min <= max"),
    ({"augment.blur_sigma": (0.1, 1e7)}, "--blur-sigma must be at most 1e+06, got 1e+07"),
    ({"init_from": " "}, "--init-from must name a file or folder, got an empty value"),
    ({"data.cache_dir": " "}, "--cache-dir must name a folder, got an empty value"),
    ({"epochs": 0}, "--epochs must be positive, got 0"),
    ({"max_steps": 0}, "--max-steps must be positive, got 0"),
    ({"knn_every": 0}, "--knn-every must be positive, got 0"),
    ({"optim.weight_decay": -0.1}, "--weight-decay must be non-negative, got -0.1"),
    ({"optim.warmup_epochs": -0.5}, "--warmup-epochs must be non-negative, got -0.5"),
    ({"checkpoint_minutes": -0.5}, "--checkpoint-minutes must be non-negative, got -0.5"),
    # named by the value typed, not by the brightness jitter 0.8 s it would give
    ({"augment.color_strength": -0.5}, "--color-strength must be non-negative, got -0.5"),
    ({"augment.interpolation": "nearest"}, "--interpolation: unknown value 'nearest'"),
    ({"augment.grayscale_p": -0.1}, "--grayscale-p must lie in [0, 1], got -0.1"),
    ({"augment.rotate_p": 1.5}, "--rotate-p must lie in [0, 1], got 1.5"),
    ({"augment.noise_p": 1.5}, "--noise-p must lie in [0, 1], got 1.5"),
    ({"augment.sobel_p": 1.5}, "--sobel-p must lie in [0, 1], got 1.5"),
    # sqrt scaling: 0.1 x sqrt(256) = 1.6 (linear would give 0.1, none 0.1)
    ({"optim.final_lr": 1.7, "optim.lr": 0.1, "optim.lr_scaling": "sqrt", "batch_size": 256},
     "--final-lr must be at most the peak lr the cosine decays from (1.6: --lr 0.1 scaled "
     "for batch 256), got 1.7"),
])
def test_the_last_value_past_each_bound_is_refused(flags, message):
    """Each bound's own edge: momentum 1 never lets a gradient fade, a warm-up over the
    whole run never decays, a seed past 2^63 - 1 overflows torch.manual_seed (which takes
    -1 as 2^64 - 1; numpy refuses it), a crop of area 0 is empty."""
    with pytest.raises(SimCLRError, match=re.escape(message)):
        build_config(flags=flags)


@pytest.mark.parametrize("flags", [
    {"optim.momentum": 0.0}, {"optim.momentum": 0.999},
    {"optim.warmup_fraction": 0.0}, {"optim.warmup_fraction": 0.999},
    {"seed": 0}, {"seed": 2**63 - 1}, {"batch_size": 2},
    {"model.width": 1 / 64},  # the first layers' 64 channels become exactly one
    # stored at the view's side: no upscaling (of a folder's images: --load-size acts there)
    {"data.load_size": 32, "augment.size": 32, "data.path": "photos"},
    {"data.workers": 0},  # decoding in the main process
    {"augment.crop_scale": (1.0, 1.0)}, {"augment.hue": 0.5},
    # a cosine that decays to its own peak: flat, but not rising
    {"optim.final_lr": 0.2, "optim.lr": 0.1, "batch_size": 512},
    {"optim.final_lr": 1.0, "optim.lr": 0.1, "optim.lr_scaling": "sqrt", "batch_size": 256},
    {"optim.final_lr": 1.6, "optim.lr": 0.1, "optim.lr_scaling": "sqrt", "batch_size": 256},
    # each "at most" and "at least" bound's own edge
    {"data.workers": 256}, {"model.width": 64.0}, {"model.head_layers": 16},
    {"model.head_out_dim": 65536}, {"model.head_hidden_dim": 65536},
    {"loss.temperature": 1e-4}, {"knn_temperature": 1e-4, "knn_train": "a", "knn_test": "b"},
    {"knn_every": 1e6, "knn_train": "a", "knn_test": "b"}, {"epochs": 1e6},
    {"augment.size": 8}, {"augment.size": 4096}, {"augment.eval_size": 8},
    {"augment.eval_size": 4096}, {"data.load_size": 4096, "data.path": "photos"},
    {"threads": 4096}, {"augment.blur_sigma": (1e-3, 1e-3)}, {"augment.blur_kernel_frac": 1.0},
    {"augment.cutout": True, "augment.cutout_frac": 1.0}, {"augment.blur_p": 1.0},
    {"augment.blur_p": 0.0},
    {"augment.crop_sampler": "official", "augment.crop_scale": (0.05, 0.1)},
    # zeros that mean something: no warm-up, no periodic checkpoints, no colour jitter,
    # no bad step forgiven
    {"optim.warmup_epochs": 0.0}, {"checkpoint_every": 0}, {"checkpoint_minutes": 0.0},
    {"optim.weight_decay": 0.0}, {"augment.crop_ratio": (1.0, 1.0)},  # (one aspect ratio)
    {"max_bad_steps": 0, "nan_policy": "skip"}, {"augment.color_strength": 0.0},
    {"optim.name": "adamw", "optim.betas": (0.0, 0.0)},
    {"loss.name": "nt_logistic", "loss.semi_hard": True},  # (semi-hard: not NT-Xent's)
    {"loss.normalize": False, "model.head_out_dim": 1},  # (unnormalised z: one dim trains)
])
def test_the_values_at_each_bound_are_taken(flags):
    cfg = build_config(flags=flags)
    for path, value in flags.items():
        section, _, name = path.rpartition(".")
        assert getattr(getattr(cfg, section) if section else cfg, name) == value


@pytest.mark.parametrize(("text", "flags", "message"), [
    ("augment:\n  first_op: color\n", {},
     "augment.first_op orders the Fig. 5 protocol's ops: it needs augment.asymmetric"),
    ("augment:\n  first_op: sobel\n  asymmetric: true\n", {},
     "augment.first_op sobel: that transformation is switched off"),
    ("augment:\n  asymmetric: true\n  crop_resize: false\n", {},
     "augment.asymmetric needs augment.crop_resize (the Fig. 5 crop"),
    ("knn_test: somewhere\n", {}, "knn_test and knn_train go together"),
    ("loss:\n  semi_hard: true\n", {},
     "loss.semi_hard applies to loss.name nt_logistic and margin_triplet"),
    ("loss:\n  semi_hard: true\n  name: nt_logistic\n", {"loss.name": "nt_xent"},
     "loss.semi_hard applies to --loss nt_logistic and margin_triplet"),  # (a flag's)
])
def test_a_files_setting_that_needs_another_names_both_as_the_user_gave_them(
        tmp_path, text, flags, message):
    """README: a value from a file is named by the file and its key; these named flags
    the user had not given (`--first-op ... it needs --asymmetric` for a file's keys)."""
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SimCLRError) as info:
        build_config(config_file=str(path), flags=flags)
    assert str(info.value).startswith(f"{path}: {message}")


def test_one_views_negatives_are_taken_with_every_loss_of_a_sweep(capsys, tmp_path):
    """Table 4 as one sweep over the loss with --one-view-negatives: NT-Xent takes it,
    the other two always have it (no refusal that would split the sweep in two); alone,
    with one of those two, it changes nothing and is refused (simclr.inert)."""
    assert build_config(flags={"loss.one_view_negatives": True}).loss.one_view_negatives
    for name in ("nt_logistic", "margin_triplet"):
        with pytest.raises(SimCLRError, match="--one-view-negatives has no effect"):
            build_config(flags={"loss.name": name, "loss.one_view_negatives": True})
    assert main(["sweep", "--set", "loss=nt_xent,nt_logistic,margin_triplet",
                 "--one-view-negatives", "--print-config", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("one_view_negatives: true") == 3


def test_a_margin_of_zero_is_a_setting_of_the_papers_grid():
    """App. B.10 tunes the triplet margin over {0, 0.4, 0.8, 1.6}: 0 is taken."""
    cfg = build_config(flags={"loss.name": "margin_triplet", "loss.margin": "0"})
    assert cfg.loss.margin == 0.0


def test_batch_size_and_knn_every_are_bounded(tmp_path):
    """A batch of 1 followed by 400 zeros was an OverflowError's traceback (the peak lr
    computed from it); --knn-every 1e308 passed, and the run crashed on round(inf) after
    writing config.yaml. Both are refused in one line; a saved run's knn_every is kept
    (it ran), a new one's or a resumed run's --knn-every held to the epochs' bound."""
    from simclr.config import MAX_EPOCHS, RESUME_SETTINGS
    from simclr.recipe import apply_resume_flags
    from simclr.validate import MAX_BATCH

    huge = "1" + "0" * 400
    for flags in ({"batch_size": huge}, {"batch_size": huge, "optim.lr_scaling": "sqrt"}):
        with pytest.raises(SimCLRError, match=f"^--batch-size must be at most {MAX_BATCH}, "
                                              "got 1000"):
            build_config(flags=flags)
    path = tmp_path / "run.yaml"
    path.write_text(f"batch_size: {huge}\noptim: {{lr: 1.0}}\n")
    with pytest.raises(SimCLRError, match=f"run.yaml: batch_size must be at most {MAX_BATCH}"):
        build_config(config_file=str(path), flags={"optim.lr_scaling": "sqrt"})
    assert build_config(flags={"batch_size": MAX_BATCH}).batch_size == MAX_BATCH
    knn = {"knn_train": str(tmp_path), "knn_test": str(tmp_path)}
    with pytest.raises(SimCLRError, match=re.escape(f"--knn-every must be at most "
                                                    f"{MAX_EPOCHS:g} epochs, got 1e+308")):
        build_config(flags={**knn, "knn_every": "1e308"})
    cfg = build_config(flags=knn)
    with pytest.raises(SimCLRError, match="^--knn-every must be at most"):
        apply_resume_flags(cfg, {"knn_every": "1e308"}, RESUME_SETTINGS)
    cfg.knn_every = 1e7  # (a saved run's: it ran, never evaluating)
    validate(cfg)


def test_a_config_edited_from_python_is_held_to_the_ranges_flags_are():
    """A duration from Python is not read by --time-budget's parser: validate alone
    refuses a negative one. A one-dimensional z is refused only where it is normalised
    and projected: without a head z is h, of the encoder's width."""
    from simclr.config import Config

    cfg = Config()
    cfg.time_budget = -5.0
    with pytest.raises(SettingError, match=r"^--time-budget must be positive, got -5.0$"):
        validate(cfg)
    cfg = Config()
    cfg.model.head, cfg.model.head_out_dim = "none", 1
    validate(cfg)
    check_scale(cfg)
