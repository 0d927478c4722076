"""Packages whose public names import on first use, so ``import steerlab`` and ``steerlab --help`` stay fast.

    >>> getattr_, dir_ = lazy_exports("steerlab", {"SITES": "steerlab.sites"})
    >>> getattr_("SITES")[0], dir_()
    ('resid_pre', ['SITES'])
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each name to the module defining it
    (a name that is itself a submodule, like ``steerlab.probes``, returns the module)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        return module if module.__name__ == f"{package}.{name}" else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
