"""Where the files steerlab ships (the demo model, the demo SAEs) are on this install.

The repository keeps them in its top-level ``assets/`` folder. The build config
(``pyproject.toml``: ``package-dir`` maps ``steerlab.assets`` to ``assets``, ``package-data``
lists the files) copies that folder into a wheel as ``steerlab/assets/``, found here with
``importlib.resources``. An editable install (``pip install -e .``) or a checkout on
``sys.path`` serves ``steerlab`` straight from the source tree, which has no
``steerlab/assets/`` (setuptools' editable finder cannot serve a data folder mapped inside a
regular package), so there the source tree's ``assets/`` next to ``steerlab/`` is used.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_root() -> Path:
    """The folder holding ``demo-model/`` and ``demo-sae/``: ``<package>/assets`` in a wheel
    install, ``<repo>/assets`` in an editable install or a checkout."""
    packaged = resources.files("steerlab") / "assets"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "assets"


def shipped_path(name: str) -> Path:
    """A shipped asset by name, e.g. ``shipped_path("demo-model")``; it may not exist (a checkout
    whose assets were deleted): callers say how to get it."""
    return shipped_root() / name
