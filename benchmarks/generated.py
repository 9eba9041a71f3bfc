"""Image folders the benchmarks make once, in the temporary folder, when given no data."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def generated_folder(name: str, count: int,
                     draw: Callable[[np.random.Generator], Image.Image], suffix: str,
                     **save_options: object) -> str:
    """``count`` images ``draw(rng)`` in 10 class folders under ``<tmp>/<name>``, saved
    with ``save_options`` (e.g. JPEG quality).

    Made on the first call (seed 0) and reused after: a ``done`` marker is written last,
    so an interrupted generation starts over instead of leaving a short folder.
    """
    root = Path(tempfile.gettempdir()) / name
    if not (root / "done").exists():
        rng = np.random.default_rng(0)
        for i in range(count):
            folder = root / f"class_{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            draw(rng).save(folder / f"{i:05d}{suffix}", **save_options)
        (root / "done").touch()
    return str(root)
