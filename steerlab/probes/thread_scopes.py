"""Process-wide thread settings the probe solvers hold while they run, restored when the last caller leaves.

* :func:`one_blas_thread`: numpy's BLAS on one thread during the L-BFGS loop. Its products are a few
  columns wide, so BLAS threads gain nothing there, and at the default threads BLAS workers waiting
  for a core that torch's OpenMP threads hold spinning made every product wait: RaptorProbe on
  SmolLM2 cities took 56 s instead of 10 (``benchmarks/results_raptor_speed.md``).
* :func:`one_torch_thread`: torch on one thread during LAPACK ``eigh``, which multi-threaded on a busy
  machine measured 40x slower (16.8 s vs 0.43 s for 12 x 768^2).

Both settings belong to the whole process, so overlapping fits from several Python threads share one
hold: the first caller sets it, the last one restores the value it found. (A save-and-restore per call
would leave one thread in place when two calls overlap: the second saves the first one's setting.)

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with one_torch_thread():
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, TypeVar

import torch

Result = TypeVar("Result")


class _SharedHold:
    """A process-wide setting held while any caller is inside :meth:`scope`: ``acquire()`` applies it and
    returns what ``release(token)`` needs to restore the previous value."""

    def __init__(self, acquire: Callable[[], Any], release: Callable[[Any], None]):
        self._acquire, self._release = acquire, release
        self._lock = threading.Lock()
        self._holders = 0
        self._token: Any = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._token = self._acquire()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._release(self._token)
                    self._token = None


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, built once (building it scans them: ~7 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _set_torch_threads(count: int) -> int:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    return before


_BLAS = _SharedHold(lambda: _blas_controller().limit(limits=1, user_api="blas"),
                    lambda limiter: limiter.restore_original_limits())
_TORCH = _SharedHold(lambda: _set_torch_threads(1), _set_torch_threads)


def one_blas_thread(function: Callable[..., Result]) -> Callable[..., Result]:
    """Decorator: ``function`` runs with numpy's BLAS on one thread (see the module docstring)."""

    @functools.wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Result:
        with _BLAS.scope():
            return function(*args, **kwargs)

    return limited


def one_torch_thread() -> contextlib.AbstractContextManager:
    """Context manager: torch on one thread inside (see the module docstring)."""
    return _TORCH.scope()
