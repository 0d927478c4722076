"""Where steerlab keeps converted models, and how entries are keyed (a file's sha256).

Layout::

    $STEERLAB_CACHE/                      # default: the platform's user cache dir + /steerlab
        gguf/<sha256 of the .gguf>/       # one save_pretrained folder per converted GGUF
            config.json, model.safetensors, tokenizer.json, ...
            steerlab-source.json          # provenance, written last (see steerlab.models.gguf)

An entry exists only once its folder has been renamed into place, so a killed
conversion never leaves a half entry (see :func:`steerlab.models.gguf.convert_gguf`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_ENV_VAR = "STEERLAB_CACHE"
PROVENANCE_FILE = "steerlab-source.json"
_CHUNK = 8 << 20  # bytes read per step while hashing
_PROGRESS_FROM = 64 << 20  # files at least this big show a progress bar while hashed


def cache_root() -> Path:
    """``$STEERLAB_CACHE``, else ``<user cache dir>/steerlab`` (``~/.cache/steerlab`` on Linux)."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs is nearly always present (pulled in by several deps); fall back to XDG
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "steerlab"
    return Path(user_cache_dir("steerlab", appauthor=False))


def gguf_entry(sha256: str) -> Path:
    """The cache folder a GGUF with this sha256 converts into (it may not exist yet)."""
    return cache_root() / "gguf" / sha256


def is_complete(entry: Path) -> bool:
    """True for a finished cache entry (its provenance file is written just before it is renamed in)."""
    return (entry / PROVENANCE_FILE).is_file() and (entry / "config.json").is_file()


def read_provenance(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``steerlab-source.json`` of a converted folder as a dict, or None if the folder has none."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def folder_size(folder: Path) -> int:
    """Total size in bytes of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def file_sha256(path: str | os.PathLike, *, progress: bool = True) -> str:
    """Hex sha256 of a file, read in 8 MB chunks (a tqdm bar for files of 64 MB or more)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    bar = None
    if progress and size >= _PROGRESS_FROM:
        from tqdm.auto import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return digest.hexdigest()
