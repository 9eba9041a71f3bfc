"""Config layering (defaults -> preset -> YAML -> flags), reading values and files."""

from __future__ import annotations

import os
import re
import time

import pytest
import yaml

from simclr.config import Config
from simclr.config_file import load_yaml, save_yaml
from simclr.errors import SimCLRError
from simclr.settings import build_config, config_from_dict, parse_duration


def test_a_presets_lr_keeps_its_peak_under_another_scaling_rule(tmp_path):
    """cifar10-cpu tunes lr 1.0 for the linear rule at batch 512 (peak 2.0): switching
    the rule keeps that peak at batch 512, instead of 1.0 x sqrt(512) = 22.6."""
    from simclr.optim import scaled_lr

    for rule in ("sqrt", "none", "linear"):
        cfg = build_config("cifar10-cpu", flags={"optim.lr_scaling": rule})
        assert scaled_lr(cfg.optim.lr, 512, rule) == pytest.approx(2.0)
    sqrt = build_config("cifar10-cpu", flags={"optim.lr_scaling": "sqrt", "batch_size": 2048})
    assert scaled_lr(sqrt.optim.lr, 2048, "sqrt") == pytest.approx(2.0 * 2)  # then sqrt(B)
    # An lr the user gives, by flag or file, is taken as given.
    given = build_config("cifar10-cpu", flags={"optim.lr_scaling": "sqrt", "optim.lr": 0.2})
    assert given.optim.lr == 0.2
    (tmp_path / "run.yaml").write_text("optim:\n  lr: 0.3\n  lr_scaling: sqrt\n")
    assert build_config("cifar10-cpu", str(tmp_path / "run.yaml")).optim.lr == 0.3
    (tmp_path / "rule.yaml").write_text("optim:\n  lr_scaling: sqrt\n")
    assert build_config("cifar10-cpu", str(tmp_path / "rule.yaml")).optim.lr == \
        pytest.approx(2.0 / 512 ** 0.5)


def test_adamw_chosen_over_a_lars_lr_takes_its_own_base(tmp_path):
    """The digits demo's LARS lr 1.0 under --optimizer adamw collapsed the run (loss at
    ln(2N - 1), kNN below a random network's): AdamW chosen at a later layer than the lr
    takes its own base, 1/300 of the paper's; an lr given with it is taken as given."""
    assert build_config(flags={"optim.name": "adamw"}).optim.lr == pytest.approx(1e-3)
    assert build_config("digits", flags={"optim.name": "adamw"}).optim.lr == \
        pytest.approx(1e-3)
    assert build_config("cifar10", flags={"optim.name": "adamw", "optim.lr_scaling": "sqrt"}
                        ).optim.lr == pytest.approx(0.075 / 300)
    assert build_config("digits", flags={"optim.name": "adamw", "optim.lr": 0.01}
                        ).optim.lr == 0.01
    (tmp_path / "lars.yaml").write_text("optim:\n  lr: 2.0\n")
    assert build_config(None, str(tmp_path / "lars.yaml"), {"optim.name": "adamw"}
                        ).optim.lr == pytest.approx(1e-3)
    (tmp_path / "adamw.yaml").write_text("optim:\n  name: adamw\n  lr: 0.004\n")
    for flags in ({}, {"optim.name": "adamw"}, {"batch_size": 64}):  # (a resume's file too)
        assert build_config("digits", str(tmp_path / "adamw.yaml"), flags).optim.lr == 0.004
    assert build_config(flags={"optim.name": "sgd"}).optim.lr == 0.3  # (the paper's)


def test_lars_or_sgd_chosen_over_an_adamw_lr_takes_its_own_base(tmp_path):
    """An AdamW run's config.yaml (lr 0.001, AdamW's base) reused with --optimizer lars
    trained LARS at 1/300 of its base, unsaid: LARS or SGD chosen at a later layer than
    an AdamW lr takes the paper's base under the config's rule; an --lr given with it,
    or a file's lr that was LARS's already, is kept."""
    (tmp_path / "adamw.yaml").write_text("optim:\n  name: adamw\n  lr: 0.001\n")
    adamw = str(tmp_path / "adamw.yaml")
    for name in ("lars", "sgd"):
        assert build_config("cifar10-cpu", adamw, {"optim.name": name}).optim.lr == 0.3
        assert build_config("cifar10-cpu", adamw, {"optim.name": name, "optim.lr": 0.002}
                            ).optim.lr == 0.002
    assert build_config(None, adamw, {"optim.name": "lars", "optim.lr_scaling": "sqrt"}
                        ).optim.lr == pytest.approx(0.075)
    assert build_config(None, adamw).optim.lr == 0.001  # (AdamW still: as filed)
    (tmp_path / "sgd.yaml").write_text("optim:\n  name: sgd\n  lr: 0.5\n")
    assert build_config(None, str(tmp_path / "sgd.yaml"), {"optim.name": "lars"}
                        ).optim.lr == 0.5  # (a LARS-sized lr: the same scale)


def test_a_config_files_lr_keeps_its_peak_under_another_scaling_rule(tmp_path):
    """A run's config.yaml records its resolved lr (0.3 for the linear rule): read again
    with --lr-scaling sqrt it keeps the run's peak at the run's batch (the paper's 0.075
    at 4096: both rules give 4.8), not 0.3 x sqrt(4096) = 19.2."""
    from simclr.config_file import yaml_text
    from simclr.optim import scaled_lr

    saved = tmp_path / "config.yaml"
    saved.write_text(yaml_text(build_config(flags={"batch_size": 4096}).to_dict()))
    sqrt = build_config(config_file=str(saved), flags={"optim.lr_scaling": "sqrt"})
    assert sqrt.optim.lr == pytest.approx(0.075)
    assert scaled_lr(sqrt.optim.lr, 4096, "sqrt") == pytest.approx(4.8)
    assert build_config(config_file=str(saved), flags={"optim.lr_scaling": "sqrt",
                                                       "optim.lr": 0.1}).optim.lr == 0.1
    assert build_config(config_file=str(saved)).optim.lr == 0.3


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"batch_size": 64, "model": {"width": 0.5}, "epochs": 3}))
    cfg = build_config("cifar10", str(path), {"model.width": "2", "time_budget": "20m"})
    assert cfg.batch_size == 64 and cfg.epochs == 3.0
    assert cfg.model.width == 2.0 and cfg.time_budget == 1200.0


def test_a_presets_eval_size_is_for_its_own_views(tmp_path):
    """cifar10-cpu evaluates its 24-px views at 32 px; another --image-size given later
    (a flag, a sweep's cell) without --eval-size evaluates at that side, while an
    --eval-size given with it, or at a later layer, holds."""
    def sides(flags=None, config_file=None):
        a = build_config("cifar10-cpu", config_file, flags).augment
        return a.size, a.eval_size

    assert sides() == (24, 32)
    assert sides({"augment.size": 96}) == (96, None)
    assert sides({"augment.size": 24}) == (24, 32)  # the preset's own side, given again
    assert sides({"augment.size": "24"}) == (24, 32)
    assert sides({"augment.size": 96, "augment.eval_size": 128}) == (96, 128)
    assert sides({"augment.eval_size": 40}) == (24, 40)
    both = tmp_path / "both.yaml"
    both.write_text("augment:\n  size: 48\n  eval_size: 64\n")
    assert sides(config_file=str(both)) == (48, 64)
    assert sides({"augment.size": 56}, str(both)) == (56, None)
    assert sides({"augment.size": 48}, str(both)) == (48, 64)
    bad = tmp_path / "bad.yaml"  # a value no run may have is refused, not dropped unsaid
    bad.write_text("augment:\n  eval_size: 0\n")
    with pytest.raises(SimCLRError, match="bad.yaml: augment.eval_size must be positive, got 0"):
        sides({"augment.size": 56}, str(bad))
    again = tmp_path / "again.yaml"  # the file repeats the preset's side: not another
    again.write_text("augment:\n  size: 24\n")
    assert sides(config_file=str(again)) == (24, 32)
    size_only = tmp_path / "size.yaml"
    size_only.write_text("augment:\n  size: 48\n")
    assert sides(config_file=str(size_only)) == (48, None)
    assert sides({"augment.eval_size": 64}, str(size_only)) == (48, 64)
    saved = tmp_path / "saved.yaml"  # a run's own config.yaml: both, as it ran
    save_yaml(build_config("cifar10-cpu").to_dict(), saved)
    assert build_config(config_file=str(saved)).augment.eval_size == 32


def test_a_presets_stored_side_is_for_its_own_views(tmp_path):
    """imagenet stores its photos at 384 px for its 224-px views; another --image-size
    given later drops it, as the preset's eval_size (the automatic 1.15 x the views'
    side): kept, CIFAR's 32-px pictures were stored upscaled to 384 for 32-px views (a
    cache 144 times as large). A --load-size given with it, or the same side again,
    holds."""
    def stored(flags=None, config_file=None):
        cfg = build_config("imagenet", config_file, {"data.path": str(tmp_path), **(flags or {})})
        return cfg.augment.size, cfg.data.load_size

    assert stored() == (224, 384)
    assert stored({"augment.size": 32}) == (32, None)
    assert stored({"augment.size": 512}) == (512, None)  # (not refused as below the views)
    assert stored({"augment.size": 224}) == (224, 384)
    assert stored({"augment.size": 160, "data.load_size": 200}) == (160, 200)
    assert stored({"data.load_size": 256}) == (224, 256)
    size_only = tmp_path / "size.yaml"
    size_only.write_text("augment:\n  size: 96\n")
    assert stored(config_file=str(size_only)) == (96, None)
    saved = tmp_path / "saved.yaml"  # a run's own config.yaml: both, as it ran
    save_yaml(build_config("imagenet").to_dict(), saved)
    assert build_config(config_file=str(saved)).data.load_size == 384
    assert build_config(config_file=str(saved),
                        flags={"augment.size": 64}).data.load_size is None


def test_round_trip_through_dict():
    cfg = build_config("cifar10", flags={"augment.crop_scale": "0.2,1"})
    again = config_from_dict(cfg.to_dict())
    assert again == cfg and isinstance(again.augment.crop_scale, tuple)
    older = cfg.to_dict()
    del older["data"]["store"]  # saved before whole-picture storage existed
    assert config_from_dict(older).data.store == "center"  # what that run did
    assert config_from_dict({}).data.store == "center" and Config().data.store == "full"


def test_every_setting_has_one_flag_of_its_own_name(monkeypatch):
    """Each setting is reachable from the command line by exactly one flag: a named one,
    or its field's own name (``--flip-p``; ``loss.normalize`` is ``--normalize``). A new
    field whose name is already a flag is a mistake caught here, not a flag quietly
    renamed or lost."""
    import dataclasses

    from simclr import settings

    defaults = Config()
    leaves = set()
    for f in dataclasses.fields(Config):
        value = getattr(defaults, f.name)
        leaves |= ({f"{f.name}.{g.name}" for g in dataclasses.fields(value)}
                   if dataclasses.is_dataclass(value) else {f.name})
    flags = settings.all_flags()
    assert sorted(flags.values()) == sorted(leaves)
    assert flags["normalize"] == "loss.normalize" and flags["flip-p"] == "augment.flip_p"
    monkeypatch.setattr(settings, "FLAGS", {**settings.FLAGS, "flip-p": "epochs"})
    with pytest.raises(RuntimeError, match="augment.flip_p.*--flip-p.*epochs"):
        settings.all_flags()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"batch_size": "abc"}, "--batch-size: expected a whole number, got 'abc'"),
        ({"batch_size": "2.5"}, "--batch-size: expected a whole number, got '2.5'"),
        ({"augment.crop_scale": "0.5"},
         "--crop-scale: expected two numbers A,B (e.g. 0.08,1), got '0.5'"),
        ({"model.cifar_stem": "maybe"},
         "--cifar-stem: expected true, false or auto, got 'maybe'"),
        ({"model.zero_init_residual": "auto"},  # (not optional: no automatic value)
         "--zero-init-residual: expected true or false, got 'auto'"),
        ({"time_budget": "soon"}, "--time-budget"),
        ({"nonsense": 1}, "unknown setting 'nonsense'"),
        # (a Python caller's section as a mapping: it was 'section 'model' must be a
        # mapping of its settings, got {'width': 0.5}')
        ({"model": {"width": 0.5}},
         "flags name each setting by its dotted path ('model.width'), not a section 'model'"),
    ],
)
def test_unreadable_values_name_the_setting(flags, needle):
    with pytest.raises(SimCLRError, match=None) as info:
        build_config(flags=flags)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("flags", "needle"), [
    ({"optim.betas": "0.9"}, "--betas: expected two numbers A,B (e.g. 0.9,0.999), got '0.9'"),
    ({"augment.blur_sigma": "x"}, "--blur-sigma: expected two numbers A,B (e.g. 0.1,2), got"),
    ({"augment.noise_std": "1,2,3"}, "--noise-std: expected two numbers A,B (e.g. 0,0.1), got"),
])
def test_a_pair_settings_example_is_its_own_default(flags, needle):
    """Every pair setting offered --crop-scale's 0.08,1 as its example (--betas refuses
    a 1); each now shows its own default, a value it takes."""
    with pytest.raises(SimCLRError) as info:
        build_config(flags=flags)
    assert needle in str(info.value)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(SimCLRError, match="not found"):
        build_config(config_file=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(SimCLRError, match="not valid YAML"):
        build_config(config_file=str(bad))
    with pytest.raises(SimCLRError, match="unknown preset"):
        build_config("imagenet21k")


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("20m") == 1200 and parse_duration(30) == 30
    assert parse_duration("1h30m") == parse_duration("1h 30m") == 5400
    assert parse_duration("2m30s") == 150 and parse_duration(" 45 ") == 45
    for zero in ("0m", "-5m"):
        with pytest.raises(SimCLRError, match="--time-budget must be positive"):
            parse_duration(zero)
    for unread in ("1h30", "30m1h", "h", "1h-5m", "soon", True):  # 1h30: 30 of which unit?
        # (True: YAML's `time_budget: yes`, no 1-second budget)
        with pytest.raises(SimCLRError, match=r"cannot read .* \(use e.g. 90s, 20m, 1.5h, "
                                              r"1h30m\)$"):
            parse_duration(unread)


def test_a_config_files_bad_duration_is_named_by_its_key(tmp_path):
    """It was blamed on --time-budget, a flag the user had not given."""
    path = tmp_path / "run.yaml"
    for value, needle in (("20 minutes", "cannot read '20 minutes'"),
                          ("-3", "time_budget must be positive")):
        path.write_text(f"time_budget: {value}\n")
        with pytest.raises(SimCLRError) as info:
            build_config(config_file=str(path))
        assert str(info.value).startswith(f"{path}: time_budget") and needle in str(info.value)


def test_config_file_errors_are_one_line(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00x")
    os.mkfifo(tmp_path / "pipe.yaml")
    os.symlink(tmp_path / "loop.yaml", tmp_path / "loop.yaml")
    cases = [(binary, "is not UTF-8 text"), (tmp_path, "is a folder; give the YAML file"),
             (tmp_path / "pipe.yaml", "pipe.yaml: not a regular file (a named pipe"),
             (tmp_path / "loop.yaml", "loop.yaml: a symbolic link loop")]
    for text, needle in [("model: 3\n", "section 'model' must be a mapping of its settings, "
                                        "got 3"),
                         ("out: {a: 1}\n", "setting 'out' takes a value, not a mapping"),
                         ("model: {arch: [a, b]}\n", "model.arch: expected one str value"),
                         ("1: 2\n", "unknown setting '1'")]:
        path = tmp_path / f"case{len(cases)}.yaml"
        path.write_text(text)
        cases.append((path, needle))
    for path, needle in cases:
        with pytest.raises(SimCLRError) as info:
            build_config(config_file=str(path))
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_bad_value_from_a_config_file_is_named_by_its_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: -5\nloss:\n  temperature: 0\n")
    with pytest.raises(SimCLRError, match=r"run\.yaml: loss\.temperature must be positive, got 0"):
        build_config(config_file=str(path), flags={"epochs": 3})
    with pytest.raises(SimCLRError, match=r"run\.yaml: epochs must be positive, got -5\.0$"):
        build_config(config_file=str(path), flags={"loss.temperature": 0.5})
    # A flag given over the file's value is named as the flag the user typed.
    with pytest.raises(SimCLRError, match=r"^--epochs must be positive, got -1\.0$"):
        build_config(config_file=str(path), flags={"epochs": -1, "loss.temperature": 0.5})
    path.write_text("batch_size: 1\n")
    with pytest.raises(SimCLRError, match=r"run\.yaml: batch_size must be at least 2"):
        build_config(config_file=str(path))


def test_a_saved_config_is_a_config_file_but_unknown_keys_are_still_refused(tmp_path):
    cfg = build_config("cifar10-cpu", flags={"augment.crop_scale": "0.2,1", "max_steps": 7,
                                             "time_budget": "20m"})
    saved = tmp_path / "config.yaml"  # as simclr.train writes it
    save_yaml({**cfg.to_dict(), "provenance": {"git_sha": "abc"}, "precision_resolved": "bf16",
               "device_resolved": "cpu", "num_images": 40}, saved)
    assert build_config(config_file=str(saved)) == cfg
    save_yaml({**load_yaml(saved), "provenence": {}}, saved)  # a typo is still an error
    with pytest.raises(SimCLRError, match="unknown section 'provenence'"):
        build_config(config_file=str(saved))


def test_local_paths_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "train").mkdir(parents=True)
    cfg = build_config(flags={"data.path": "data/train", "out": "runs/a", "knn_train": "data",
                              "knn_test": "data/../data/train", "data.cache_dir": "cache"})
    assert cfg.data.path == str(tmp_path / "data" / "train")
    assert (cfg.knn_train, cfg.knn_test) == (str(tmp_path / "data"),
                                              str(tmp_path / "data" / "train"))
    assert (cfg.out, cfg.data.cache_dir) == (str(tmp_path / "runs/a"), str(tmp_path / "cache"))
    assert cfg.data.root == "~/.cache/simclr/datasets"  # expanded where it is used
    # A torchvision name stays a name; a missing folder keeps what was typed for its error.
    assert build_config(flags={"data.path": "cifar10"}).data.path == "cifar10"
    assert build_config(flags={"data.path": "nowhere"}).data.path == "nowhere"


def test_a_key_given_twice_and_a_boolean_number_are_refused(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("model:\n  head_out_dim: 64\nepochs: 3\nmodel:\n  head_layers: 3\n")
    with pytest.raises(SimCLRError, match=r"'model' is given twice \(line 4, column 1\)$"):
        build_config(config_file=str(twice))
    # dotted and in its section: the last one won, unsaid
    twice.write_text("loss:\n  temperature: 0.3\nloss.temperature: 0.7\n")
    with pytest.raises(SimCLRError, match=r"'loss.temperature' is given twice \(dotted and "
                                          r"in its section\)$"):
        build_config(config_file=str(twice))
    with pytest.raises(SimCLRError, match="^--lr: expected a number, got True$"):
        build_config(flags={"optim.lr": True})  # (not an lr of 1.0)


def test_yaml_merge_keys_are_read_as_yaml_reads_them(tmp_path):
    """`<<: *anchor` was "not valid YAML" (the loader's own key check knew no merge):
    merged, the mapping's own keys winning; its own key twice is still refused."""
    from simclr.config_file import parse_yaml

    assert parse_yaml("a: &x {t: 0.5, n: false}\nb:\n  <<: *x\n  t: 0.3\n") == \
        {"a": {"t": 0.5, "n": False}, "b": {"t": 0.3, "n": False}}
    merged = tmp_path / "merged.yaml"
    merged.write_text("augment: &views\n  size: 24\n  eval_size: 32\nknn_k: 10\n"
                      "sweep_base:\n  <<: *views\n")
    with pytest.raises(SimCLRError, match="unknown section 'sweep_base'"):  # (read, then checked)
        build_config(config_file=str(merged))
    twice = tmp_path / "twice.yaml"
    twice.write_text("base: &b {temperature: 0.5}\nloss:\n  <<: *b\n  margin: 1\n  margin: 2\n")
    with pytest.raises(SimCLRError, match=r"'margin' is given twice"):
        build_config(config_file=str(twice))


def test_none_is_a_value_of_text_settings_and_null_of_optional_ones(tmp_path, monkeypatch):
    """`--head none` (Fig. 8's identity head) is the text "none", not a missing value."""
    assert build_config("cifar10-cpu", flags={"model.head": "none"}).model.head == "none"
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  head: none\nmax_steps: null\n")
    cfg = build_config(config_file=str(path), flags={"time_budget": "none"})
    assert cfg.model.head == "none" and cfg.max_steps is None and cfg.time_budget is None
    with pytest.raises(SimCLRError, match="--batch-size: expected a whole number, got .none."):
        build_config(flags={"batch_size": "none"})
    monkeypatch.chdir(tmp_path)  # (no folder named none here: --data none is the digits)
    assert build_config(flags={"data.path": "none"}).data.path is None


def test_a_sections_setting_at_the_top_of_a_file_says_where_it_belongs(tmp_path):
    (tmp_path / "flat.yaml").write_text("arch: resnet18\n")
    with pytest.raises(SimCLRError, match=r"flat.yaml: unknown setting 'arch' \(it is "
                                          r"model.arch: in a YAML file under 'model:'"):
        build_config(config_file=str(tmp_path / "flat.yaml"))
    (tmp_path / "bogus.yaml").write_text("bogus_key: 3\n")
    with pytest.raises(SimCLRError, match=r"unknown setting 'bogus_key'$"):
        build_config(config_file=str(tmp_path / "bogus.yaml"))


def test_build_config_names_arguments_of_the_wrong_kind():
    """From Python, flags as a list of pairs failed with "'list' object has no attribute
    'items'"."""
    with pytest.raises(SimCLRError, match=r"flags must be a dict of setting -> value .* "
                                          r"got list"):
        build_config(flags=[("batch_size", 8)])
    with pytest.raises(SimCLRError, match="unknown preset 3"):
        build_config(3)
    # a key not text, a file not a path: AttributeError ('split') and pathlib's TypeError
    with pytest.raises(SimCLRError, match=r"flags must be a dict .* got a key 1$"):
        build_config(flags={1: 2})
    with pytest.raises(SimCLRError, match="config_file must be a path to a YAML file, got int"):
        build_config(None, 5)
    # a flag's spelling of a top-level setting said only "unknown setting 'batch-size'"
    with pytest.raises(SimCLRError, match=r"unknown setting 'batch-size' \(it is 'batch_size'\)$"):
        build_config(flags={"batch-size": 8})


@pytest.mark.parametrize("flags", [{"batch_size": 8.5}, {"log_every": 2.5}])
def test_a_fractional_number_for_a_whole_setting_is_refused_not_truncated(flags, tmp_path):
    """A float from Python or YAML (``batch_size: 8.5``) was cut to 8, another run than
    the one asked for, without a word."""
    path, value = next(iter(flags.items()))
    with pytest.raises(SimCLRError, match="expected a whole number, got " + str(value)):
        build_config(flags=flags)
    (tmp_path / "run.yaml").write_text(f"{path}: {value}\n")
    with pytest.raises(SimCLRError, match=f"{path}: expected a whole number"):
        build_config(config_file=str(tmp_path / "run.yaml"))
    assert getattr(build_config(flags={path: 8.0}), path) == 8  # a whole float is one


def test_a_value_in_a_message_is_shown_short_however_large(tmp_path):
    """A 470-byte file of nested aliases (a list of ten million items) took 15 s and
    1.25 GB to print a 72 MB "one-line" error holding the list's whole repr."""
    lines = ['provenance:', '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "model:", "  arch: *a5", ""]))
    started = time.monotonic()
    with pytest.raises(SimCLRError, match=r"bomb\.yaml: model\.arch: expected one str value, "
                                          r"got \[\[\[\.\.\.\], ") as info:
        build_config(config_file=str(path))
    assert len(str(info.value)) < 300 and time.monotonic() - started < 5
    for text, needle in ((f"model: {{head: {'x' * 100_000}}}\n", "unknown value 'xxx"),
                         (f"time_budget: {'x' * 100_000}\n", "cannot read 'xxx"),
                         (f"augment: {{crop_scale: [{'[1, 2], ' * 1000} 3]}}\n",
                          "expected two numbers A,B (e.g. 0.08,1), got [[1")):
        path.write_text(text)
        with pytest.raises(SimCLRError) as info:
            build_config(config_file=str(path))
        assert needle in str(info.value) and len(str(info.value)) < 300


def test_a_files_null_lr_is_the_base_lr_of_the_rule_not_the_presets(tmp_path):
    """`optim: {lr: null}` over cifar10-cpu with --lr-scaling sqrt kept the preset's
    lr 1.0 carried to sqrt (0.088), not the paper's base for sqrt (0.075)."""
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: null\n")
    cfg = build_config("cifar10-cpu", str(path), {"optim.lr_scaling": "sqrt"})
    assert cfg.optim.lr == pytest.approx(0.075)
    assert build_config("cifar10-cpu", str(path)).optim.lr == pytest.approx(0.3)


@pytest.mark.parametrize("text, flags, message", [
    ("batch_size: 0\noptim:\n  lr: 1.0\n", {}, "batch_size must be positive, got 0"),
    ("batch_size: -4\noptim:\n  lr: 1.0\n", {}, "batch_size must be positive, got -4"),
    ("batch_size: 0\noptim:\n  lr: 1.0\n", {"batch_size": 8},
     "batch_size must be positive, got 0"),
    ("optim:\n  lr: 1.0\n  lr_scaling: foo\n", {},
     "optim.lr_scaling: unknown value 'foo' (choose from linear, sqrt, none)"),
])
def test_a_files_lr_is_carried_only_from_its_valid_batch_and_rule(tmp_path, text, flags,
                                                                   message):
    """A file's lr is carried to another --lr-scaling at the file's batch and rule
    (settings.carry_lr), before validation: batch 0 was a ZeroDivisionError's traceback
    (-4: a math domain error), and a file's unknown rule was blamed on the flag
    (`--lr-scaling: unknown value 'foo'`). Each is named as the file's."""
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SimCLRError) as info:
        build_config(config_file=str(path), flags={"optim.lr_scaling": "sqrt", **flags})
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize("key, section", [("out", None), ("path", "data"),
                                          ("cache_dir", "data"), ("root", "data")])
def test_a_yaml_number_for_a_text_setting_is_refused(tmp_path, key, section):
    """YAML reads `out: 1.50` as the number 1.5: the run went to folder 1.5 where
    `--out 1.50` writes 1.50. A number with a point is refused, asking to quote it; a
    quoted one (as config.yaml saves it) is the text as written."""
    path = tmp_path / "run.yaml"
    setting = f"{section}.{key}" if section else key
    for value, quoted in (("1.50", "'1.50'"), ("2.0", '"2.0"')):
        text = f"{section}:\n  {key}: {{}}\n" if section else f"{key}: {{}}\n"
        path.write_text(text.format(value))
        with pytest.raises(SimCLRError, match=re.escape(
                f"{path}: {setting}: expected text, got the number {float(value)!r}; "
                "quote it (e.g. '1.50', which unquoted reads as 1.5) to keep it as "
                "written")):
            build_config(config_file=str(path))
        path.write_text(text.format(quoted))
        cfg = build_config(config_file=str(path))
        got = getattr(cfg.data, key) if section else cfg.out
        assert os.path.basename(got) == value
    saved = tmp_path / "saved.yaml"
    save_yaml(Config(out="1.50").to_dict(), saved)  # (a run's config.yaml reads back)
    assert os.path.basename(build_config(config_file=str(saved)).out) == "1.50"


def test_auto_is_the_none_of_settings_whose_none_is_automatic(tmp_path):
    """--help shows --workers and --load-size as 'None: auto', yet `--workers auto` was
    refused ('expected a whole number, got 'auto''): auto now means their None, there
    alone (--max-steps auto is still no number)."""
    from simclr.config import setting_help
    from simclr.settings import AUTO_IS_NONE

    assert set(AUTO_IS_NONE) == {p for p, text in setting_help().items() if "None: auto" in text}
    cfg = build_config(flags={"data.path": str(tmp_path), "data.workers": "auto",
                              "data.load_size": "AUTO"})
    assert (cfg.data.workers, cfg.data.load_size) == (None, None)
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  workers: auto\n")
    assert build_config(config_file=str(path)).data.workers is None
    with pytest.raises(SimCLRError, match="--max-steps: expected a whole number, got 'auto'"):
        build_config(flags={"max_steps": "auto"})


def test_an_amount_without_its_unit_after_minutes_is_refused_too():
    """'1m30' is as ambiguous as '1h30' (30 seconds? minutes?): refused, not 90 s."""
    for unread in ("1m30", "2h5m30"):
        with pytest.raises(SimCLRError, match=r"cannot read"):
            parse_duration(unread)
    assert parse_duration("1m30s") == 90 and parse_duration("2h5m30s") == 7530


def test_a_flags_text_for_none_and_for_true_or_false():
    """A flag's 'null' (YAML's word) and 'None' mean None where None is allowed, as
    'none' does; a switch reads 1/true/yes/on and 0/false/no/off, in any case."""
    for text in ("none", "null", "None", "NULL"):
        assert build_config(flags={"max_steps": text}).max_steps is None
    for text, value in (("on", True), ("ON", True), ("yes", True), ("1", True), ("true", True),
                        ("off", False), ("No", False), ("0", False), ("false", False)):
        assert build_config(flags={"model.zero_init_residual": text}
                            ).model.zero_init_residual is value


def test_a_files_resnet_width_is_dropped_for_another_network_flagged_on_top(tmp_path):
    """A printed config holds its ResNet's width; --arch convnext_tiny given on top
    replaces the network, whose width is its own (1), not the file's 2."""
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  arch: resnet50\n  width: 2\n")
    assert build_config(config_file=str(path)).model.width == 2
    cfg = build_config(config_file=str(path), flags={"model.arch": "convnext_tiny"})
    assert cfg.model.arch == "convnext_tiny" and cfg.model.width == 1.0


def test_a_files_smallest_eval_size_is_dropped_for_other_views_flagged_on_top(tmp_path):
    """The file's evaluation side is for its own views, at the smallest side allowed
    too: --image-size 64 on top evaluates at the views' side (eval_size unset)."""
    from simclr.config import MIN_SIZE

    path = tmp_path / "run.yaml"
    path.write_text(f"augment:\n  size: 32\n  eval_size: {MIN_SIZE}\n")
    assert build_config(config_file=str(path)).augment.eval_size == MIN_SIZE
    assert build_config(config_file=str(path),
                        flags={"augment.size": 64}).augment.eval_size is None


def test_a_flags_bad_value_over_a_presets_is_named_as_the_flag_alone():
    """cifar10-cpu sets the batch; a bad --batch-size on top is the flag's problem, not
    '(set by --preset ...)'."""
    with pytest.raises(SimCLRError, match=r"^--batch-size must be positive, got -5$"):
        build_config("cifar10-cpu", flags={"batch_size": -5})


def test_a_files_unknown_scaling_rule_under_a_presets_lr_is_named_by_its_key(tmp_path):
    """The preset's lr is carried to the file's rule only when that rule is known: an
    unknown one is left to validation, which names the file's key, not --lr-scaling (a
    flag the user had not given)."""
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr_scaling: foo\n")
    with pytest.raises(SimCLRError) as info:
        build_config("cifar10-cpu", str(path))
    assert str(info.value) == (f"{path}: optim.lr_scaling: unknown value 'foo' (choose from "
                               "linear, sqrt, none)")


def test_a_projection_shortcuts_flag_over_a_torchvision_network_is_refused_as_typed():
    """A flag given over another network is kept as typed, so its refusal names it:
    --projection-shortcuts, not the --no-projection-shortcuts the user never wrote."""
    with pytest.raises(SimCLRError, match=r"^--projection-shortcuts has no effect: "
                                          "convnext_tiny is torchvision's network"):
        build_config(flags={"model.arch": "convnext_tiny", "model.projection_shortcuts": True})


def test_a_flag_without_effect_is_kept_where_inert_ok_names_it():
    """A sweep's common flags may act in some cells only: inert_ok lets them through."""
    with pytest.raises(SimCLRError, match="--margin has no effect"):
        build_config("digits", None, {"loss.margin": 0.5})
    assert build_config("digits", None, {"loss.margin": 0.5},
                        inert_ok={"loss.margin"}).loss.margin == 0.5
