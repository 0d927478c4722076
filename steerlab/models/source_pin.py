"""Keep a module's source, as it was imported, where nnsight and tracebacks look it up.

nnsight runs a ``with model.trace(...)`` block by finding it in the caller's source:
it reads the *file* (through :mod:`linecache`) the first time a trace is entered from it,
and looks for a ``with`` statement at the frame's line number. When the file has changed
on disk since the module was imported (an edit or an upgrade during a long session, or,
as in steerlab's own test runs, another engineer editing ``adapter.py`` while the suite
ran), the line numbers no longer match the running code: nnsight raises
``WithBlockNotFoundError`` (or, worse, captures a different block). Which trace first
reads the file decides whether it happens, so it looked like an order-dependent test
failure. The same lookup serializes functions by source for remote (NDIF) execution.

:func:`pin_source` reads the module's source at import time, when it matches the
compiled code, and stores it in :mod:`linecache` the way IPython stores a cell's source
(no modification time), an entry ``linecache.checkcache`` never discards.
"""

from __future__ import annotations

import linecache
import sys


def pin_source(module_name: str) -> None:
    """Pin ``module_name``'s source (call it from the module itself, at import) in :mod:`linecache`."""
    module = sys.modules[module_name]
    filename = getattr(module, "__file__", None)
    loader = getattr(module, "__loader__", None)
    source = loader.get_source(module_name) if filename and hasattr(loader, "get_source") else None
    if source:
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
