"""Tests for the package's top level: its API names, imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import simclr


def test_the_top_level_names_are_the_modules_own():
    from simclr import errors, inference, loss, optim, settings, train

    assert simclr.pretrain is train.pretrain and simclr.build_config is settings.build_config
    assert simclr.embed_folder is inference.embed_folder and simclr.nt_xent is loss.nt_xent
    assert simclr.LARS is optim.LARS and simclr.SimCLRError is errors.SimCLRError
    assert set(simclr.__all__) == {*simclr._API, "load_encoder", "__version__"}
    assert all(getattr(simclr, name) is not None for name in simclr.__all__)


def test_modules_are_attributes_and_unknown_names_are_attribute_errors():
    assert simclr.augment.TwoViewAugment is not None  # no `import simclr.augment` needed
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        simclr.nonsense  # noqa: B018
    assert not hasattr(simclr, "_private")


def test_importing_the_package_imports_no_torch():
    """`simclr --help` and `import simclr` stay fast: torch loads when first used."""
    code = "import sys, simclr; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
