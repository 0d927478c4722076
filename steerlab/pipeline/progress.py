"""A progress bar over a stage's named steps, for stages whose steps have no bar of their own.

The bar names the step that is running and its clock ticks every second, so a step that takes
minutes is visibly alive (a bar only redraws when it is updated, otherwise).

    >>> bar = StepBar("probes", ["sweep", "fit"], enabled=False)
    >>> bar.advance(); bar.running
    'fit'
    >>> bar.advance(); bar.running is None
    True
"""

from __future__ import annotations

import threading
import weakref
from typing import Sequence

from tqdm.auto import tqdm

REFRESH_SECONDS = 1.0


class StepBar:
    """``tqdm`` over ``steps``: :meth:`advance` when one is done; closes itself after the last."""

    def __init__(self, desc: str, steps: Sequence[str], enabled: bool = True) -> None:
        self.steps = list(steps)
        self._done = 0  # tqdm does not count while disabled
        self._bar = tqdm(total=len(self.steps), desc=desc, unit="step", disable=not enabled,
                         bar_format="{desc}: {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]")
        self._show(0)
        if enabled:
            stop = threading.Event()
            self._stop = stop
            threading.Thread(target=_tick, args=(weakref.ref(self._bar), stop), daemon=True).start()
        else:
            self._stop = None

    @property
    def running(self) -> str | None:
        """The step now running (None once all are done)."""
        return self.steps[self._done] if self._done < len(self.steps) else None

    def advance(self) -> None:
        """The running step is done: count it and name the next."""
        self._done += 1
        self._bar.update(1)
        if self._done < len(self.steps):
            self._show(self._done)
        elif self._done == len(self.steps):
            self.close()

    def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        self._bar.set_postfix_str("done", refresh=False)
        self._bar.close()

    def _show(self, index: int) -> None:
        if index < len(self.steps):
            self._bar.set_postfix_str(f"running: {self.steps[index]}")


def _tick(bar_ref: "weakref.ref[tqdm]", stop: threading.Event) -> None:
    """Redraw the bar every second (its elapsed time) until it is closed or gone."""
    while not stop.wait(REFRESH_SECONDS):
        bar = bar_ref()
        if bar is None or bar.disable:
            return
        bar.refresh()
        del bar
