"""The README's Python examples run as printed (a missing import once slipped through),
and its shell commands are ones simclr accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.checkpoint import save_checkpoint
from simclr.cli import _parse, main
from tests.conftest import make_image_folder
from tests.test_pretrained import pretrain_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not README.is_file(), reason="no README.md beside these tests "
                                 "(run from a checkout or the source distribution)")]


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def block_with(text: str) -> str:
    found = [b for b in python_blocks() if text in b]
    assert len(found) == 1, f"one README example should contain {text!r}"
    return found[0]


def test_the_python_api_example_trains_one_step():
    scope: dict = {}
    exec(compile(block_with("from simclr.loss import nt_xent"), "README.md", "exec"), scope)
    assert scope["view_a"].shape == (64, 3, 32, 32) and scope["z"].shape == (128, 128)
    assert scope["encoder"].feature_dim == 256 and torch.isfinite(scope["loss"])
    assert any(p.grad is not None for p in scope["head"].parameters())


def test_the_load_encoder_example_embeds_images(tmp_path, monkeypatch):
    state = {k: v for k, v in pretrain_checkpoint().items() if k not in ("format", "version")}
    save_checkpoint({**state, "step": 1}, tmp_path / "runs/c10/checkpoints")
    monkeypatch.chdir(tmp_path)  # the example's path is relative: runs/c10/...
    scope: dict = {}
    exec(compile(block_with('simclr.load_encoder("runs/c10'), "README.md", "exec"), scope)
    assert scope["h"].shape == (8, scope["encoder"].feature_dim)


def test_the_pretrain_from_python_example_runs(tmp_path, monkeypatch):
    """Run as printed but for the length and size (seconds, not 20 minutes)."""
    make_image_folder(tmp_path / "photos", side=32)
    monkeypatch.chdir(tmp_path)  # the example's paths are relative
    block = block_with("simclr.pretrain(cfg)")
    short = '"max_steps": 2, "batch_size": 8, "model.width": 0.125, "device": "cpu"'
    assert '"time_budget": "20m"' in block
    # as a script: under spawn (macOS, Windows) each loader worker imports it again
    assert 'if __name__ == "__main__":' in block
    scope: dict = {"__name__": "__main__"}
    exec(compile(block.replace('"time_budget": "20m"', short), "README.md", "exec"), scope)
    assert scope["summary"]["status"] == "finished" and scope["summary"]["steps"] == 2
    with np.load(tmp_path / "runs/photos/feats.npz") as saved:
        assert saved["features"].shape == (24, scope["encoder"].feature_dim)
    assert not scope["encoder"].training


def bash_commands() -> list[str]:
    """The ``simclr ...`` commands of the README's bash blocks, continued lines joined and
    comments dropped; not the abbreviated ones (``...``) or the synopses (``[--k 200]``,
    ``h|z``)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split(" #")[0].split("&&"):
                part = part.strip()
                if part.startswith("simclr ") and not any(t in part for t in "[|") \
                        and "..." not in part:
                    commands.append(part)
    return commands


def inline_commands() -> list[str]:
    """The whole ``simclr ...`` commands quoted in the README's prose (`...`, across line
    breaks): those of more than four words, not abbreviated or synopses, as above."""
    commands = []
    for quoted in re.findall(r"`(simclr [a-z-]+ [^`]+)`", README.read_text()):
        command = " ".join(quoted.split())
        if len(command.split()) > 4 and not any(t in command for t in "[|") \
                and "..." not in command and "--help" not in command:
            commands.append(command)
    return commands


def test_the_readme_commands_are_accepted(capsys):
    """Each parses (flags renamed or removed since show here; a required --out left
    out), and each pretraining command's settings resolve (``--print-config``: a
    preset, a value out of range)."""
    commands = bash_commands()
    assert len(commands) >= 20
    assert len(inline_commands()) >= 10
    commands += inline_commands()
    for command in commands:
        tokens = shlex.split(command)[1:]
        try:
            args, _ = _parse(tokens)
        except SystemExit:
            pytest.fail(f"README: {command}\n{capsys.readouterr().err}")
        if tokens[0] == "pretrain" and not args.resume:
            assert main([*tokens, "--print-config"]) == 0, (command, capsys.readouterr().err)
