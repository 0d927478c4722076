"""What every pipeline command writes besides the folder itself: stage timings, strict JSON, versions."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


class StageClock:
    """Seconds per stage, for ``metrics["timings"]``: call ``lap(name)`` at the end of each stage.

    ``bar``: an optional :class:`steerlab.pipeline.progress.StepBar` over the coming laps; each lap
    advances it, so the terminal names the step that is running.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()
        self.bar: Any = None

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._start, 2)
        self._start = now
        if self.bar is not None and self.bar.running is not None:
            self.bar.advance()


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Strict JSON (see :func:`json_ready`: numpy / torch values as plain numbers and lists, NaN as null)."""
    path = Path(path)
    path.write_text(json.dumps(json_ready(value), indent=1, allow_nan=False, default=str), encoding="utf-8")
    return path


def json_ready(value: Any) -> Any:
    """Nested dicts / lists with numpy and torch values as plain Python, NaN and inf as None (strict JSON).

    >>> import numpy as np
    >>> json_ready({"auroc": np.float64("nan"), 1: [np.int64(2), np.array([0.5])]})
    {'auroc': None, '1': [2, [0.5]]}
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def versions() -> dict[str, str]:
    """The package versions a result depends on."""
    import torch
    import transformers

    from steerlab._version import __version__

    return {"steerlab": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
