"""Tests for simclr.commands: the evaluation commands' own checks."""

from __future__ import annotations

import pytest

from simclr.cli import main
from simclr.export import export_encoder
from tests.conftest import tiny_pretrained_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_from_head_on_a_checkpoint_without_a_head_names_its_kind(tmp_path, capsys):
    train, test, cache = tiny_pretrained_run(tmp_path)
    export_encoder(tmp_path / "pre", tmp_path / "encoder.pt")
    capsys.readouterr()
    assert main(["finetune", "--checkpoint", str(tmp_path / "encoder.pt"), "--train",
                 str(train), "--test", str(test), "--from-head", "--epochs", "1",
                 "--cache-dir", cache, "--workers", "0", "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(this is an encoder one, without the projection " \
        "head); drop --from-head" in err, err
    assert not (tmp_path / "ft").exists()
