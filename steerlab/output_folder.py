"""Output folders built aside and swapped in at the end: a failed or killed run never loses a previous output.

Every command that writes a folder (``steerlab demo``, ``run``, ``probe``, ``hallucination``,
``train-sae``) goes through :func:`staged_output`; ``--overwrite`` replaces only a previous
steerlab output, and only files steerlab wrote (recorded in :data:`RECORD`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

RECORD = ".steerlab-output.json"  # the files steerlab wrote: all that --overwrite may replace
OUTPUTS = ("metrics.json", "report.html", "artifacts", "sections")  # what outputs written before RECORD held


def check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an unusable ``--out`` before any work: returns it as a Path, writes nothing.

    Usable: a new or empty folder, or with ``overwrite`` a previous steerlab output that holds
    only files steerlab wrote (listed in its :data:`RECORD`). Refused: a file, a symbolic link
    anywhere in the folder, the current, a parent or the home folder, and any folder holding a
    file steerlab did not write (named in the message), so ``overwrite`` can never lose your files.
    """
    out = Path(out)
    if out.is_symlink():
        raise ValueError(f"--out {out} is a symbolic link: steerlab does not write through links. "
                         "Pass the folder it points to, or another --out.")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file: --out must be a directory (new, empty, or a previous output).")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"--out {out} is inside {blocking}, which is a file: choose another --out.")
    if not out.exists() or not any(out.iterdir()):
        return out
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: choose another --out, or pass --overwrite.")
    resolved = out.resolve()
    if resolved in (Path.cwd().resolve(), *Path.cwd().resolve().parents, Path.home().resolve()):
        raise ValueError(f"--out {out} is the current, a parent or the home folder: --overwrite would replace it. "
                         "Choose a dedicated output folder.")
    links = [path for path in _walk(out) if path.is_symlink()]
    if links:
        raise ValueError(f"{out} holds a symbolic link ({links[0].relative_to(out)}): --overwrite does not follow "
                         "links. Remove the link or choose another --out.")
    ours = _written_by_steerlab(out)
    foreign = sorted(str(path.relative_to(out)) for path in _walk(out)
                     if path.is_file() and str(path.relative_to(out)) not in ours)
    if foreign:
        raise FileExistsError(f"{out} holds files steerlab did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): --overwrite only replaces a previous "
                              "steerlab output and never deletes your files. Move them, or choose another --out.")
    return out


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Build an output folder aside and swap it in only when the block succeeds.

    Yields an empty hidden sibling folder (``.NAME.steerlab-partial-PID``) to write into. When the
    block ends without an exception, the files written are recorded in :data:`RECORD` and the
    folder replaces ``out`` in one rename (Linux: an atomic exchange). An exception, a Ctrl-C or a
    killed process leaves ``out`` exactly as it was; the partial folder is removed (or, after a
    kill, by the next run). ``out`` is checked first by :func:`check_output`.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "result"
    >>> with staged_output(out, overwrite=False) as work:
    ...     _ = (work / "metrics.json").write_text("{}")
    >>> sorted(p.name for p in out.iterdir())
    ['.steerlab-output.json', 'metrics.json']
    """
    out = check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    staging = out.parent / f".{out.name}.steerlab-partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
        check_output(out, overwrite)  # nothing of yours appeared in `out` while the run was going
        written = sorted(str(path.relative_to(staging)) for path in _walk(staging) if path.is_file())
        (staging / RECORD).write_text(json.dumps({"written_by": "steerlab", "files": written}, indent=1),
                                      encoding="utf-8")
        _swap_in(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _walk(folder: Path) -> Iterator[Path]:
    """Every file, folder and link under ``folder``; links are listed, never followed."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            yield Path(root) / name


def _written_by_steerlab(out: Path) -> set[str]:
    """Relative paths of the files a previous steerlab run wrote to ``out``."""
    record = out / RECORD
    if record.is_file():
        try:
            return set(json.loads(record.read_text(encoding="utf-8"))["files"]) | {RECORD}
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{record} is unreadable ({error}): cannot tell which files steerlab wrote. "
                             "Choose another --out.") from None
    # An output written before the record existed: its known layout only.
    return {str(path.relative_to(out)) for path in _walk(out)
            if path.relative_to(out).parts[0] in OUTPUTS
            and (len(path.relative_to(out).parts) == 1 or path.suffix in (".json", ".safetensors"))}


def _remove_stale_partials(out: Path) -> None:
    """Partial folders of runs that were killed (their process is gone)."""
    for partial in out.parent.glob(f".{out.name}.steerlab-partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_in(staging: Path, out: Path) -> None:
    """Put ``staging`` at ``out``; a previous ``out`` ends up at ``staging`` (then removed by the caller)."""
    if not out.exists():
        os.rename(staging, out)
        return
    if not _exchange(staging, out):  # no atomic exchange here: two renames, the old folder moved aside first
        aside = out.parent / f".{out.name}.steerlab-previous-{os.getpid()}"
        os.rename(out, aside)
        os.rename(staging, out)
        os.rename(aside, staging)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0
