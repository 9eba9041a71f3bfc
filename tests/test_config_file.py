"""YAML files of settings (simclr.config_file): a --config file read as the flags read
their text, its problems one line each, a config written back that reads the same."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from simclr.config import Config
from simclr.config_file import load_yaml, save_yaml, yaml_text
from simclr.errors import SimCLRError
from simclr.settings import build_config


def test_a_results_file_given_as_config_is_named_for_what_it_is(tmp_path, capsys):
    """knn.json or a run's summary.json (JSON is YAML) read as settings failed on their
    first key: "unknown setting 'command'", not saying the file is no config at all."""
    import json

    from simclr.cli import main

    knn = tmp_path / "knn.json"
    knn.write_text(json.dumps({"command": "knn", "k": 200, "top1": 0.5, "num_train": 24}))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"status": "finished", "signal": None, "steps": 6,
                                   "checkpoint": "run/checkpoints/last.pt"}))
    hint = ("not a settings file; give --config a run's config.yaml or a YAML file of "
            "settings (--print-config writes one)")
    for command in (["pretrain"], ["supervised", "--train", str(tmp_path)]):
        assert main([*command, "--config", str(knn), "--print-config"]) == 2
        assert capsys.readouterr().err == (f"simclr {command[0]}: error: config file {knn} is "
                                           f"the results of `simclr knn`, {hint}\n")
    with pytest.raises(SimCLRError, match=r"summary.json is a run's summary \(summary.json\), "
                                          "not a settings file"):
        build_config(config_file=str(summary))
    from simclr.config_file import check_settings_file

    check_settings_file({"command": 5, "status": "x"}, knn)  # (no command's name: not results)
    with pytest.raises(SimCLRError, match="is a run's summary"):  # (an older one: no signal)
        check_settings_file({"status": "finished", "steps": 6, "checkpoint": "c.pt"}, summary)


def test_a_data_folder_named_by_a_dotted_key_is_no_digits_demo(tmp_path):
    """`data.path: DIR` in a --config file (a dotted key, which the settings take) was
    read as no folder named: the digits demo's preset went under the file, and the
    user's folder trained at 16 px, width 0.25, 40 epochs, tau 0.2."""
    from simclr.config_file import names_no_data

    flat = tmp_path / "flat.yaml"
    flat.write_text(f"data.path: {tmp_path}\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text(f"data:\n  path: {tmp_path}\n")
    assert not names_no_data(str(flat), {}) and not names_no_data(str(nested), {})
    flat.write_text("data.path: null\nepochs: 2\n")
    assert names_no_data(str(flat), {})
    # a flag naming the data wins over the file, either way; no file and no flag: the demo
    assert not names_no_data(str(flat), {"data.path": str(tmp_path)})
    assert names_no_data(str(nested), {"data.path": "none"})
    assert names_no_data(None, {}) and not names_no_data(None, {"data.path": str(tmp_path)})
    boolean = tmp_path / "bool.yaml"
    boolean.write_text("optim:\n  lr: true\n")
    with pytest.raises(SimCLRError, match="optim.lr: expected a number, got True"):
        build_config(config_file=str(boolean))
    # ... nor a duration (`time_budget: true` was a 1-second run), nor one of a pair
    for text, message in (("time_budget: true", "time_budget: cannot read True"),
                          ("time_budget: yes", "time_budget: cannot read 'yes'"),
                          ("augment: {crop_scale: [true, 1]}",
                           r"augment.crop_scale: expected two numbers A,B .*got \[True, 1\]")):
        boolean.write_text(text + "\n")
        with pytest.raises(SimCLRError, match=message):
            build_config(config_file=str(boolean))


def test_a_yaml_key_that_is_a_list_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("? [a, b]\n: 3\n")
    with pytest.raises(SimCLRError, match=r"not valid YAML: a key must be a name, not a list "
                                          r"\(line 1, column 3\)$"):
        build_config(config_file=str(path))
    path.write_text("? {a: 1}\n: 3\n")
    with pytest.raises(SimCLRError, match=r"not valid YAML: a key must be a name, not a "
                                          r"mapping \(line 1, column 3\)$"):
        build_config(config_file=str(path))


def test_a_files_plain_values_are_read_as_the_same_text_given_as_a_flag(tmp_path):
    """YAML 1.1 read `on` as True (refused by --cache, whose --help spells on), `off` as
    False (a folder named False), 0123 as octal 83 and 1:30 as 90 seconds: a file's plain
    value now means what the same text means as a flag."""
    path = tmp_path / "run.yaml"

    def read(text: str, flags: dict | None = None) -> Config:
        path.write_text(text)
        return build_config(config_file=str(path), flags=flags)

    assert read("data: {cache: on}\n").data.cache == "on"
    assert read("data: {cache: off, cache_dir: off}\nout: 0123\n").data.cache_dir.endswith(
        os.sep + "off")
    assert os.path.basename(read("out: 0123\n").out) == "0123"
    assert os.path.basename(read("out: off\n").out) == "off"
    assert read("seed: 010\n").seed == build_config(flags={"seed": "010"}).seed == 10
    with pytest.raises(SimCLRError, match=r"run\.yaml: time_budget: cannot read '1:30'"):
        read("time_budget: 1:30\n")
    assert read("model: {cifar_stem: yes, zero_init_residual: TRUE}\n").model.cifar_stem is True
    assert read("model: {zero_init_residual: False}\n").model.zero_init_residual is False
    # numbers as a flag's text reads them: 0x10 is refused as --epochs 0x10 is, 1e3 a
    # folder's name is text (YAML 1.2 made it the float 1000.0, a folder '1000.0')
    cfg = read("epochs: 16\nseed: 1_5\noptim: {weight_decay: 1e-3, lr: .5}\n")
    assert (cfg.epochs, cfg.seed, cfg.optim.weight_decay, cfg.optim.lr) == (16, 15, 1e-3, 0.5)
    assert read("epochs: 2.5e+1\n").epochs == 25.0
    with pytest.raises(SimCLRError, match="epochs: expected a number, got '0x10'"):
        read("epochs: 0x10\n")
    with pytest.raises(SimCLRError, match="--epochs: expected a number, got '0x10'"):
        build_config(flags={"epochs": "0x10"})
    assert os.path.basename(read("out: 1e3\n").out) == "1e3"
    assert load_yaml(path) == {"out": "1e3"}  # (an older provenance's `--out 1e3` too)
    with pytest.raises(SimCLRError, match="expected a number, got True"):
        read("optim: {lr: true}\n")
    assert load_yaml(path) == {"optim": {"lr": True}}  # (true stays a boolean to others)


def test_a_saved_config_reads_back_the_same_through_either_schema(tmp_path):
    """config.yaml is read by simclr (YAML 1.2 plain values) and by any other YAML reader
    (1.1): text that either would take for another value is written quoted."""
    cfg = build_config(flags={"out": str(tmp_path / "on"), "data.path": "1e3",
                              "model.head": "none", "device": "cpu"})
    saved = tmp_path / "config.yaml"
    save_yaml({**cfg.to_dict(), "provenance": {"git_sha": "12e45", "note": "0123"}}, saved)
    assert build_config(config_file=str(saved)) == cfg
    assert load_yaml(saved)["provenance"] == yaml.safe_load(saved.read_text())["provenance"] \
        == {"git_sha": "12e45", "note": "0123"}
    assert yaml.safe_load(saved.read_text())["data"]["path"] == "1e3"
    # (a YAML 1.2 reader takes a plain 1e3 for the number 1000: the docstring promised
    # quotes, the file had none)
    assert "path: '1e3'" in saved.read_text() and "git_sha: '12e45'" in saved.read_text()
    assert yaml_text({"out": "0o17"}) == "out: '0o17'\n"  # (1.2's octal 15)


@pytest.mark.parametrize(("text", "needle"), [
    ("model:\n\tarch: resnet18\n",
     r"found character '\\t' that cannot start any token \(line 2, column 1\)$"),
    ("model: [unclosed\n", r"expected ',' or '\]', but got '<stream end>' \(line 2, column 1\)$"),
    ("a: b: c\n", r"mapping values are not allowed here \(line 1, column 5\)$"),
    ("a: 1\n---\nb: 2\n", r"expected a single document in the stream, but found another "
                         r"document \(line 2, column 1\)$"),
])
def test_a_yaml_syntax_error_says_what_and_where(tmp_path, text, needle):
    """Only the first line of PyYAML's message was kept: 'while scanning for the next
    token' for a tab, without what was found or where."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SimCLRError, match=f"^config file {re.escape(str(path))} is not valid "
                                          f"YAML: {needle}") as info:
        build_config(config_file=str(path))
    assert "\n" not in str(info.value)


def test_a_config_nested_past_any_setting_is_refused_in_one_line(tmp_path):
    """`optim: [[[[...` 5,000 deep: PyYAML composes by recursion, and the file gave a
    RecursionError's traceback; it is refused as a damaged file is. A config as deep as
    simclr writes one (a resumed run's earlier starts' argv) reads."""
    path = tmp_path / "deep.yaml"
    path.write_text("optim: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SimCLRError, match=r"^config file .*deep.yaml is not valid YAML: "
                                          r"nested more than 64 levels deep \(line 1, "):
        load_yaml(path)
    path.write_text("provenance: {earlier: [{argv: [simclr, pretrain]}]}\n")
    assert load_yaml(path)["provenance"]["earlier"][0]["argv"] == ["simclr", "pretrain"]


def test_plain_values_are_yaml_1_2s_and_a_saved_mapping_reads_back_the_same(tmp_path):
    """What any reader of load_yaml gets (a provenance, a results file): true/false in
    any case, floats with a point (exponent, .inf, .nan too), never a date; and what
    save_yaml writes, tuples as lists, reads back as it was."""
    import math

    from simclr.config_file import parse_yaml

    read = parse_yaml("a: TRUE\nb: False\nc: .5e-3\nd: -.inf\ne: .nan\nf: 2024-01-01\n")
    assert {k: read[k] for k in "abcdf"} == {"a": True, "b": False, "c": 0.0005,
                                              "d": -math.inf, "f": "2024-01-01"}
    assert math.isnan(read["e"])
    data = {"inf": math.inf, "pair": (1, 2.5), "words": ["on", "TRUE", "2024-01-01", ".5e-3"],
            "nested": {"z": 1, "a": None}}
    save_yaml(data, tmp_path / "c.yaml")
    back = load_yaml(tmp_path / "c.yaml")
    assert back == {**data, "pair": [1, 2.5]} and list(back["nested"]) == ["z", "a"]


def test_a_config_file_without_settings_is_refused(tmp_path):
    """An empty file, comments alone or {} ran as the defaults without a word."""
    from simclr.config_file import read_config_file

    path = tmp_path / "c.yaml"
    for text in ("", "# lr: 1\n", "{}\n"):
        path.write_text(text)
        with pytest.raises(SimCLRError, match=r"c\.yaml: the file holds no settings"):
            read_config_file(str(path))
        assert load_yaml(path) == {}  # (to the other readers: no settings, not None)
    path.write_text("optim: {lr: 2}\n")
    config = read_config_file(str(path))
    load_yaml(config)["optim"]["lr"] = 5  # (a reader's edit reaches no later reader)
    assert load_yaml(config) == {"optim": {"lr": 2}} == config.settings
