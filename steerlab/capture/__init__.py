"""Stage 1: hook-based activation capture, the same on every backend.

``steerlab.capture`` is both this package and the function
:func:`steerlab.capture.capture.capture`: the package is callable, so
``steerlab.capture(model, texts)`` works however it was imported.
"""

import sys
import types

from steerlab.capture.activations import Activations
from steerlab.capture.capture import capture
from steerlab.capture.positions import CAPTURE_POSITIONS

__all__ = ["Activations", "CAPTURE_POSITIONS", "capture"]


class _CallablePackage(types.ModuleType):
    # Python binds `steerlab.capture` to this package on any submodule import, which would
    # shadow the function of the same name; forwarding calls keeps `steerlab.capture(...)` working.
    def __call__(self, *args, **kwargs):
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
