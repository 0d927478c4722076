"""steerlab: capture, concept probes, steering and SAE comparison for language models.

The top-level names are imported lazily, so ``import steerlab`` stays fast; the
heavy backends (TransformerLens, nnsight, sae-lens) load only when used.

Example:
    >>> import steerlab
    >>> model = steerlab.load_model("demo")                          # doctest: +SKIP
    >>> acts = steerlab.capture(model, ["q : where is Varo ? a :"])  # doctest: +SKIP
"""

from __future__ import annotations

from steerlab.lazy_exports import lazy_exports

from steerlab._version import __version__

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


__getattr__, __dir__ = lazy_exports("steerlab", _LAZY)
