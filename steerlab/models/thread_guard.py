"""One thread at a time per model: steerlab's hooks live on the model object, not on a thread.

While a thread has steering or recording hooks open on a model, a forward pass of that model
from another thread would run them too (coming out steered, or recorded into the wrong block).
:class:`ThreadGuard` refuses such calls with an error that names the fix instead.

Torch's own threads (the thread policy): the library does not change torch's global settings
(``torch.set_num_threads``, interop threads, flush-denormal) behind a user's back, so a user's
choices stay as they are (two exceptions, both restored when the call returns: the probes' solvers
run LAPACK ``eigh`` on one torch thread and their L-BFGS loop with numpy's BLAS on one thread,
``steerlab.probes.thread_scopes``). Its speed on a busy
machine comes from doing fewer, larger forwards (sweeps and KL searches run many alphas in one
batched forward, :mod:`steerlab.steering.batching`), not from process-wide state. Only the
``steerlab`` command line chooses, for its own process and for the duration of a command
(restored afterwards): ``STEERLAB_THREADS=N``, else whatever ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` say, else the cores not kept busy by other processes (one thread beside a
CPU hog on 2 cores, both on a quiet machine); see :mod:`steerlab.cli.threads`. In your own
scripts on a shared machine with a small model, call ``torch.set_num_threads(1)`` yourself.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import torch


class ThreadGuard:
    """Which thread holds steerlab hooks on one model; forwards from other threads are refused meanwhile.

    Hooks are attributes of the model object, so a forward pass from another thread would run
    them too (steered, or recorded into the wrong block). While a thread holds a claim, a
    forward pre-hook on the model's root refuses every other thread, and so do claims and
    adapter calls from other threads; a claim is refused while another thread's adapter call
    is running. A deep copy of the adapter gets a fresh guard.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._owner_name = ""
        self._depth = 0
        self._handle: Any = None
        self._running: dict[int, tuple[str, int]] = {}  # thread id -> (name, adapter calls in flight)

    def __deepcopy__(self, memo: dict) -> "ThreadGuard":
        return ThreadGuard()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def _busy(self) -> str | None:
        """A message if a thread other than the caller holds the model (call under the lock)."""
        if self._owner is None or self._owner == threading.get_ident():
            return None
        return (f"This model is being steered by thread {self._owner_name!r} (steer, record, edit or "
                f"adapter.hooks is open there), so this call from thread {threading.current_thread().name!r} is "
                "refused: steering hooks are per model, not per thread, and would apply here too. Use one model "
                "object per thread (copy.deepcopy(model) before steering, or load it again), or serialize the "
                "calls (e.g. a threading.Lock around each block).")

    def check(self) -> None:
        """Raise a RuntimeError if another thread holds the model."""
        with self._lock:
            message = self._busy()
        if message:
            raise RuntimeError(message)

    def _refuse_other_threads(self, module: torch.nn.Module, args: tuple) -> None:
        self.check()

    @contextlib.contextmanager
    def claim(self, root: torch.nn.Module) -> Iterator[None]:
        """Hold the model for this thread inside the block (re-entrant in the same thread)."""
        me = threading.get_ident()
        with self._lock:
            message = self._busy()
            others = [name for thread, (name, count) in self._running.items() if thread != me and count]
            if message is None and others:
                message = (f"Thread {others[0]!r} is running a forward pass or generation of this model, so it "
                           f"cannot be steered from thread {threading.current_thread().name!r} now: steering hooks "
                           "are per model and would apply to that call too. Use one model object per thread "
                           "(copy.deepcopy(model) or load it again), or serialize the calls.")
            if message is None and self._depth == 0:
                self._owner, self._owner_name = me, threading.current_thread().name
                self._handle = root.register_forward_pre_hook(self._refuse_other_threads, prepend=True)
            if message is None:
                self._depth += 1
        if message:
            raise RuntimeError(message)
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._handle.remove()
                    self._owner, self._owner_name, self._handle = None, "", None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Mark an adapter call (forward, generate) in flight in this thread; refused if another holds the model."""
        me = threading.get_ident()
        with self._lock:
            message = self._busy()
            if message is None:
                name, count = self._running.get(me, (threading.current_thread().name, 0))
                self._running[me] = (name, count + 1)
        if message:
            raise RuntimeError(message)
        try:
            yield
        finally:
            with self._lock:
                name, count = self._running[me]
                if count == 1:
                    del self._running[me]
                else:
                    self._running[me] = (name, count - 1)
