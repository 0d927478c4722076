"""The command line's torch thread policy (the library itself never changes torch's thread settings).

steerlab's work on small models is many small forward passes. With several intra-op threads on a
machine whose cores are busy, every operation waits at a barrier for a thread that is not running,
and a run slows by up to 10x (issue 16: the demo's SAE comparison 21.6 s on one thread, 207.5 s on
two while other processes used the CPU). So a ``steerlab`` command that runs a model picks the
thread count for its own process, once at start:

* ``STEERLAB_THREADS=N`` in the environment: N threads;
* ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set: torch already follows them; nothing is changed;
* otherwise the cores this process may use minus those other processes keep busy (sampled from
  ``/proc/stat`` over 0.2 s; the 1-minute load average where that file does not exist), at least
  one and at most torch's own default: on a quiet 2-core machine 2 threads, beside a 2-process
  CPU hog 1.

``steerlab demo`` runs its SAE stage in a second process beside the others, each process on half
the threads (at least one; see :func:`steerlab.pipeline.demo.run_demo`).

The previous setting is restored when the command returns, so ``steerlab.cli.main([...])`` called
from Python leaves the caller's torch settings as they were.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Iterator

SAMPLE_SECONDS = 0.2
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many cores other processes keep busy now: ``/proc/stat`` sampled over ``seconds``, else the load average."""
    first = _cpu_times()
    if first is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    time.sleep(seconds)
    second = _cpu_times()
    idle, total = second[0] - first[0], second[1] - first[1]
    return 0.0 if total <= 0 else (1.0 - idle / total) * (os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """``(idle + iowait, total)`` jiffies of all CPUs from ``/proc/stat``; None where it does not exist."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def chosen_threads(default: int) -> int | None:
    """The thread count the policy picks (see the module docstring); None: leave torch as it is."""
    explicit = os.environ.get("STEERLAB_THREADS")
    if explicit:
        try:
            value = int(explicit)
        except ValueError:
            raise ValueError(f"STEERLAB_THREADS={explicit!r} is not a number of threads: set it to e.g. 1 or 2, "
                             "or unset it to let steerlab choose.") from None
        if value < 1:
            raise ValueError(f"STEERLAB_THREADS={value}: it must be at least 1.")
        return value
    if any(os.environ.get(name) for name in ENVIRONMENT):
        return None
    free = usable_cores() - busy_cores()
    return max(1, min(default, math.floor(free + 0.5)))


@contextlib.contextmanager
def command_threads() -> Iterator[int]:
    """Torch's thread count for one command (the policy above), restored on exit; yields the count used.

    The BLAS libraries numpy and scikit-learn call (OpenBLAS, MKL) get the same count: their idle
    threads spin while waiting, which on a busy machine takes CPU from the work (measured: the demo
    beside a 2-process hog used 117 CPU-s with numpy's default 2 BLAS threads, 106 with 1).
    """
    import torch

    before = torch.get_num_threads()
    threads = chosen_threads(before)
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        with blas_threads(None if threads is None else torch.get_num_threads()):
            yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def blas_threads(limit: int | None) -> contextlib.AbstractContextManager:
    """At most ``limit`` threads in the BLAS libraries loaded in this process while open (None: unchanged)."""
    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit, user_api="blas")
