"""What --resume may change of a saved recipe (simclr.recipe): its own flags onto the
saved config, and the first command given again compared with it."""

from __future__ import annotations

import re

import pytest

from simclr.errors import SimCLRError
from simclr.settings import build_config, config_from_dict


def test_resume_flags_change_only_where_and_how_fast_and_are_checked():
    """--resume takes the resumable settings (each checked as a new run's: a resumed run
    never saves an invalid config) and refuses a change of what the run computes."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import apply_resume_flags

    saved = build_config(flags={"loss.temperature": 0.5})
    cfg = config_from_dict(saved.to_dict())
    apply_resume_flags(cfg, {"memory_check": False, "epochs": 300, "threads": 2,
                             "keep_checkpoints": 5, "loss.temperature": "0.5"},
                       set(RESUME_SETTINGS))
    assert (cfg.memory_check, cfg.epochs, cfg.threads, cfg.keep_checkpoints) == (
        False, 300.0, 2, 5)
    for flags, message in (({"epochs": -1}, "--epochs must be positive, got -1"),
                           ({"threads": 5000}, "--threads must be at most 4096"),
                           ({"loss.temperature": 0.3}, "cannot change --temperature"),
                           # (a value the setting cannot take is a change too)
                           ({"loss.temperature": "warm"}, "cannot change --temperature")):
        with pytest.raises(SimCLRError, match=re.escape(message)):
            apply_resume_flags(config_from_dict(saved.to_dict()), flags, set(RESUME_SETTINGS))


@pytest.mark.parametrize("command", ["pretrain", "supervised"])
def test_resume_takes_another_decoder(tmp_path, command):
    """--decoder says where JPEGs decode (a GPU's nvJPEG, or PIL in the workers), as
    --device says where the run goes: `--resume RUN --decoder pil` (a GPU decoder that
    fails on the new machine) was refused as a change of what the run computes."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import apply_resume_flags
    from simclr.supervised import RESUME_FLAGS

    cfg = build_config(flags={"data.path": str(tmp_path), "data.decoder": "device"})
    allowed = set(RESUME_SETTINGS if command == "pretrain" else RESUME_FLAGS)
    apply_resume_flags(cfg, {"data.decoder": "pil"}, allowed, reads=[str(tmp_path)])
    assert cfg.data.decoder == "pil"
    with pytest.raises(SimCLRError, match=r"--decoder: unknown value .gpu. \(choose from auto"):
        apply_resume_flags(cfg, {"data.decoder": "gpu"}, allowed, reads=[str(tmp_path)])


def test_the_first_commands_recipe_with_its_own_out_is_the_same_recipe(tmp_path):
    """--resume names the run's folder: a preset's or a file's --out is not a change."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import check_same_recipe

    saved = build_config("cifar10-cpu", flags={"out": str(tmp_path / "moved")})
    check_same_recipe(saved, build_config("cifar10-cpu"), set(RESUME_SETTINGS))
    with pytest.raises(SimCLRError, match=re.escape("cannot change --temperature (0.2 saved, "
                                                    "0.3 asked")):
        check_same_recipe(saved, build_config("cifar10-cpu", flags={"loss.temperature": 0.3}),
                          set(RESUME_SETTINGS))
    # an empty value shown, not as nothing ('color saved,  asked'), and None as flags spell it
    flags = {"augment.asymmetric": True, "augment.first_op": "color"}
    with pytest.raises(SimCLRError, match=re.escape("cannot change --first-op (color saved, "
                                                    "'' asked)")):
        check_same_recipe(build_config("digits", flags=flags),
                          build_config("digits", flags={"augment.asymmetric": True}),
                          set(RESUME_SETTINGS))
    with pytest.raises(SimCLRError, match=re.escape("(64 saved, none asked)")):
        check_same_recipe(build_config("digits", flags={"model.head_hidden_dim": 64}),
                          build_config("digits"), set(RESUME_SETTINGS))


def test_a_recipe_change_names_the_flags_given_first():
    """`--resume RUN --preset cifar10-cpu --lr-scaling sqrt` named only --lr (the first
    setting changed in the config's order), which the user did not give: the flags
    given are named first, then the settings they change."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import check_same_recipe

    saved = build_config("cifar10-cpu")
    flags = {"optim.lr_scaling": "sqrt"}
    with pytest.raises(SimCLRError, match=re.escape(
            "cannot change --lr-scaling (linear saved, sqrt asked), --lr (1 saved, "
            "0.0883883 asked) (asked by --preset/--config and the flags)")):
        check_same_recipe(saved, build_config("cifar10-cpu", flags=flags),
                          set(RESUME_SETTINGS), flags)


def test_an_earlier_adamw_runs_lr_is_no_change_the_user_asked_for(tmp_path):
    """`--resume RUN --preset digits --optimizer adamw` of a run of a release before
    2026-12-06 (AdamW at the preset's LARS lr, 1.0) said 'cannot change --lr (1 saved,
    0.001 asked)', an --lr never given: it now says AdamW's default changed and that
    --resume RUN alone continues the run as it was. An --lr given is refused as before."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import check_same_recipe

    flags = {"optim.name": "adamw", "out": str(tmp_path / "run")}
    saved = build_config("digits", flags=flags)
    saved.optim.lr = 1.0  # (as that release saved it)
    with pytest.raises(SimCLRError, match=re.escape(
            "--resume continues the saved settings: the run trained AdamW at --lr 1, a "
            "default of a release before 2026-12-06 (a preset's or file's LARS-sized lr "
            "kept for AdamW); this release's AdamW default is 0.001 x B/256 (LARS-sized "
            f"rates collapse AdamW); `simclr pretrain --resume {tmp_path / 'run'}` alone, "
            "without --preset/--config and the flags, continues the run as it was")):
        check_same_recipe(saved, build_config("digits", flags=flags), set(RESUME_SETTINGS),
                          flags)
    given = {**flags, "optim.lr": 0.002}
    with pytest.raises(SimCLRError, match=re.escape("cannot change --lr (1 saved, 0.002 asked")):
        check_same_recipe(saved, build_config("digits", flags=given), set(RESUME_SETTINGS),
                          given)


def test_resume_takes_the_runs_own_out_and_refuses_another(tmp_path, monkeypatch):
    """--out with --resume must name the run's folder (here as a relative path): another
    is where the run was before it moved."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import apply_resume_flags

    saved = build_config(flags={"out": str(tmp_path / "run")})
    monkeypatch.chdir(tmp_path)
    apply_resume_flags(config_from_dict(saved.to_dict()), {"out": "run"}, set(RESUME_SETTINGS))
    with pytest.raises(SimCLRError, match=r"--out .*elsewhere is not the folder of the run "
                                          r"--resume names"):
        apply_resume_flags(config_from_dict(saved.to_dict()),
                           {"out": str(tmp_path / "elsewhere")}, set(RESUME_SETTINGS))


def test_resume_flags_without_effect_are_refused_unless_exempt(tmp_path):
    """A resumable flag is still refused where it has no effect (--knn-every without a
    kNN monitor; --cache-dir on the digits unless a folder read names one), except
    those ``inert_ok`` exempts; a new --knn-every is held to a new run's bound."""
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import apply_resume_flags

    allowed = set(RESUME_SETTINGS)
    with pytest.raises(SimCLRError, match="--knn-every has no effect"):
        apply_resume_flags(build_config(), {"knn_every": 5}, allowed)
    apply_resume_flags(build_config(), {"knn_every": 5}, allowed, inert_ok=["knn_every"])
    with pytest.raises(SimCLRError, match="--knn-every must be at most"):
        apply_resume_flags(build_config(), {"knn_every": 1e300}, allowed,
                           inert_ok=["knn_every"])
    with pytest.raises(SimCLRError, match="--cache-dir has no effect"):
        apply_resume_flags(build_config(), {"data.cache_dir": str(tmp_path)}, allowed)
    apply_resume_flags(build_config(), {"data.cache_dir": str(tmp_path)}, allowed,
                       reads=[str(tmp_path)])


def test_a_recipe_change_names_at_most_four_settings_and_counts_the_rest():
    from simclr.config import RESUME_SETTINGS
    from simclr.recipe import check_same_recipe

    saved = build_config("cifar10-cpu")
    four = {"loss.temperature": 0.3, "optim.weight_decay": 0.0, "augment.flip_p": 0.2,
            "model.head_out_dim": 32}
    with pytest.raises(SimCLRError) as info:
        check_same_recipe(saved, build_config("cifar10-cpu", flags=four), set(RESUME_SETTINGS),
                          ["model.head_out_dim"])
    assert str(info.value).count(" asked)") == 4 and " more" not in str(info.value)
    assert "cannot change --head-out-dim (" in str(info.value)
    five = {**four, "augment.grayscale_p": 0.5}
    with pytest.raises(SimCLRError, match=r"asked\) and 1 more \(asked by --preset/--config"
                       ) as info:
        check_same_recipe(saved, build_config("cifar10-cpu", flags=five), set(RESUME_SETTINGS))
    assert str(info.value).count(" asked)") == 4


def test_an_earlier_adamw_lr_is_only_a_lars_sized_default_under_adamws_own(tmp_path):
    """earlier_adamw_lr: an AdamW run given this release's default, saved with a larger
    number; not under another optimizer, an --lr of the user's, or a saved value that is
    no number. Its message names the default's scaling rule."""
    from simclr.recipe import earlier_adamw_default, earlier_adamw_lr

    adamw = build_config("digits", flags={"optim.name": "adamw"})
    assert earlier_adamw_lr(1.0, adamw) and not earlier_adamw_lr("1.0", adamw)
    assert not earlier_adamw_lr(100.0, build_config("digits", flags={"optim.name": "sgd"}))
    assert not earlier_adamw_lr(1.0, build_config("digits", flags={"optim.name": "adamw",
                                                                   "optim.lr": 0.002}))
    sqrt = build_config("digits", flags={"optim.name": "adamw", "optim.lr_scaling": "sqrt"})
    assert "AdamW default is " in earlier_adamw_default(1.0, sqrt)
    assert earlier_adamw_default(1.0, sqrt).endswith(" x sqrt(B) (LARS-sized rates "
                                                     "collapse AdamW)")


def test_a_saved_first_op_of_the_pipelines_own_order_is_no_change():
    """A release that accepted --first-op crop saved it: the same run as none, but not
    as another --first-op asked now."""
    from simclr.recipe import recipe_changes

    saved = build_config(flags={"augment.asymmetric": True})
    saved.augment.first_op = "crop"
    assert recipe_changes(saved, build_config(flags={"augment.asymmetric": True}), set()) == {}
    given = build_config(flags={"augment.asymmetric": True})
    given.augment.first_op = "color"
    assert recipe_changes(saved, given, set()) == {"augment.first_op": ("crop", "color")}


def test_differing_compares_paths_made_absolute_and_flatten_nests(tmp_path, monkeypatch):
    from simclr.recipe import differing, flatten

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    saved = build_config(flags={"data.path": str(tmp_path / "data")})
    given = build_config(flags={"data.path": "data"})
    given.data.path = "data"  # (as typed: differing makes it absolute, as a run's)
    assert differing(saved, given) == {}
    assert flatten({"a": {"b": {"c": (1, 2)}}, "d": 3}) == {"a.b.c": [1, 2], "d": 3}


def test_a_switch_is_said_as_flags_and_yaml_spell_it():
    """A bool is an int: without its own branch it read True/False (Python's spelling)."""
    from simclr.recipe import value_text

    assert [value_text(True), value_text(False)] == ["true", "false"]
    assert [value_text(1), value_text(0.5), value_text(None), value_text("")] == \
        ["1", "0.5", "none", "''"]
