"""What a wheel and a source distribution carry: built here from a copy of the checkout
with setuptools' own backend (no download), then read back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import simclr

ROOT = Path(__file__).resolve().parents[1]
# (the checkout's files a build reads; __pycache__ and egg-info left behind)
SOURCES = ["pyproject.toml", "MANIFEST.in", "LICENSE", "README.md", "simclr", "tests",
           "benchmarks"]


def _setuptools_version() -> tuple[int, ...]:
    try:
        import setuptools
    except ImportError:
        return (0,)
    return tuple(int(p) for p in setuptools.__version__.split(".")[:1])


pytestmark = [
    pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(),
                       reason="no checkout beside these tests (simclr installed from a wheel)"),
    # pyproject.toml's build-system floor; pip's isolated builds fetch it, tests don't
    pytest.mark.skipif(_setuptools_version() < (77,),
                       reason="setuptools>=77 is not installed (pip install -e '.[test]')"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel of a copy of this checkout, as ``{"sdist", "wheel"}``."""
    tree = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, tree / name)
    # a checkout's byte code (left out of the copy above), to be left out of the sdist
    (tree / "tests" / "__pycache__").mkdir()
    (tree / "tests" / "__pycache__" / "conftest.cpython-311.pyc").write_bytes(b"\0")
    out = tree / "dist"
    # (the backend rewrites sys.argv while it builds: the folder is read first)
    script = ("import setuptools.build_meta as b, sys; out = sys.argv[1]; "
              "print(b.build_sdist(out)); print(b.build_wheel(out))")
    done = subprocess.run([sys.executable, "-c", script, str(out)], cwd=tree,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # (the backend logs on stdout too: the names are the lines naming the two archives)
    lines = done.stdout.splitlines()
    sdist = next(line for line in lines if line.endswith(".tar.gz"))
    wheel = next(line for line in lines if line.endswith(".whl"))
    return {"sdist": out / sdist, "wheel": out / wheel}


def test_the_version_is_the_package_s(built: dict[str, Path]) -> None:
    """``simclr --version``, the run records and the export card print ``__version__``; the
    distribution's version is read from it, not written a second time."""
    assert built["sdist"].name == f"simclr-{simclr.__version__}.tar.gz"
    assert built["wheel"].name.startswith(f"simclr-{simclr.__version__}-")


def test_the_wheel_holds_the_package_and_its_licence(built: dict[str, Path]) -> None:
    names = zipfile.ZipFile(built["wheel"]).namelist()
    modules = {n for n in names if n.startswith("simclr/") and n.endswith(".py")}
    assert modules == {f"simclr/{p.name}" for p in Path(simclr.__file__).parent.glob("*.py")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(built["wheel"]).read(
        metadata).decode()


def test_the_sdist_runs_its_tests_and_benchmarks(built: dict[str, Path]) -> None:
    """The tests' shared fixtures and helpers travel with them (only ``test*.py`` did:
    every test module failed to import ``tests.conftest``), and so do the benchmarks the
    ``[bench]`` extra is for."""
    with tarfile.open(built["sdist"]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    shipped = {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    assert shipped <= names
    assert {"tests/conftest.py", "tests/image_files.py", "LICENSE",
            "benchmarks/throughput.py", "benchmarks/README.md"} <= names
    assert not [n for n in names if "__pycache__" in n]
