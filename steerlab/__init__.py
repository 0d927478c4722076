"""steerlab: capture, concept probes, steering and SAE comparison for language models.

The top-level names are imported lazily, so ``import steerlab`` stays fast; the
heavy backends (TransformerLens, nnsight, sae-lens) load only when used.

Example:
    >>> import steerlab
    >>> model = steerlab.load_model("demo")                          # doctest: +SKIP
    >>> acts = steerlab.capture(model, ["q : where is Varo ? a :"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "steerlab.models.adapter",
    "ModelAdapter": "steerlab.models.adapter",
    "capture": "steerlab.capture",  # the callable stage package (see steerlab/capture/__init__.py)
    "Activations": "steerlab.capture.activations",
    "SitePoint": "steerlab.sites",
    "SITES": "steerlab.sites",
    "record": "steerlab.hooks",
    "edit": "steerlab.hooks",
    "no_leftover_hooks": "steerlab.hooks",
    "probes": "steerlab.probes",
    "steering": "steerlab.steering",
    "datasets": "steerlab.datasets",
    "SteeringVector": "steerlab.steering.vector",
    "steer": "steerlab.steering.injection",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__ == f"steerlab.{name}" else getattr(module, name)
    raise AttributeError(f"module 'steerlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
