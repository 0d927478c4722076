"""Activation stores on disk: safetensors shards plus a JSON manifest. No pickle.

Layout of a store directory::

    manifest.json          what was captured (model, site, layers, position, d_model,
                           version), the texts' fingerprint, and the finished shards
    texts.json             the texts and their metadata
    shard-00000.safetensors  {"activations": [rows, n_layers, d_model],
                              "sequence_index", "token_index": [rows] (int64)}

Each manifest entry records the text range ``[text_start, text_end)`` its shard covers, and
optionally a ``sequence_offset`` added to its ``sequence_index`` when read (a store merged from
shards of a sharded capture, :func:`link_store`, keeps the shards' files as they are).
The manifest is the commit point: a shard is written to a temporary name, synced and
renamed, and the manifest lists it only afterwards. So a capture killed at any moment
leaves every listed shard complete, and the next run computes only the texts no listed
shard covers, whatever ``shard_size`` it uses. A creation killed before its first
manifest leaves only files steerlab recreates.

Safety: a writer holds an exclusive lock on the directory (so two processes cannot
interleave shards); nothing is written through a symbolic link; and a manifest entry
may only name a ``shard-N.safetensors`` file inside the store folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

try:  # POSIX advisory locks; released by the kernel when the process dies, even by SIGKILL
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, the rest still holds
    fcntl = None

FORMAT = "steerlab.activations"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TEXTS = "texts.json"
SHARD_FILE = re.compile(r"^shard-(\d{5,})\.safetensors$")
TEMPORARY_SUFFIX = ".tmp"
# What a creation killed before its manifest was written can leave behind.
_CREATION_LEFTOVERS = frozenset({TEXTS, TEXTS + TEMPORARY_SUFFIX, MANIFEST + TEMPORARY_SUFFIX})


class StoreBusyError(RuntimeError):
    """Another process is writing the same store."""


def texts_sha256(texts: list[str]) -> str:
    """The sha256 of the texts in order (each UTF-8 encoded, NUL-terminated)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def fingerprint(texts: list[str]) -> str:
    """A short hash of the texts, to refuse resuming a capture over different inputs."""
    return texts_sha256(texts)[:16]


def remaining_ranges(finished: list[tuple[int, int]], n_texts: int, shard_size: int) -> list[tuple[int, int]]:
    """The text ranges still to capture: the gaps between ``finished`` ranges, cut into ``shard_size`` pieces.

    ``finished`` must be sorted and non-overlapping. Gaps are cut from their own start, so
    a resumed capture never computes a text twice, even with another ``shard_size``.
    """
    gaps, cursor = [], 0
    for start, end in [*finished, (n_texts, n_texts)]:
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    return [(start, min(start + shard_size, gap_end))
            for gap_start, gap_end in gaps for start in range(gap_start, gap_end, shard_size)]


# ---------------------------------------------------------------- safe file writing


def refuse_symlink(path: Path, what: str) -> None:
    """Raise if ``path`` is a symbolic link: stores are never written or read through one."""
    if path.is_symlink():
        raise ValueError(f"{what} {path} is a symbolic link (to {os.readlink(path)}): steerlab does not write or "
                         "read activation stores through links. Pass the real directory, or remove the link.")


def _create_fresh_file(path: Path) -> int:
    """Open a new, empty, regular file at ``path`` for writing (a stale file or link there is removed first)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)


def _sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _replace(temporary: Path, path: Path) -> None:
    """Rename ``temporary`` over ``path`` (the rename replaces a link itself; we refuse links anyway)."""
    refuse_symlink(path, "Store file")
    os.replace(temporary, path)
    _sync_directory(path.parent)


def _write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a fresh temporary file, synced, then renamed over ``path``."""
    data = json.dumps(payload, indent=1).encode("utf-8")
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    descriptor = _create_fresh_file(temporary)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> Any:
    refuse_symlink(path, "Store file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the store is damaged; capture it again "
                         "into a new directory.") from error


# ---------------------------------------------------------------- manifest checks


def _check_manifest(manifest: Any, manifest_path: Path) -> list[dict[str, Any]]:
    """Check the manifest's format and every shard entry; return the entries sorted by text range."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{manifest_path.parent} is not a steerlab activation store (format {found!r}).")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{manifest_path.parent} was written by a newer steerlab (format "
                         f"{manifest['format_version']}); upgrade steerlab.")
    n_texts = manifest.get("n_texts")
    shards = manifest.get("shards")
    if not _is_int(n_texts) or not isinstance(shards, list):
        raise ValueError(f"{manifest_path} lacks a valid 'n_texts' or 'shards' list: the store is damaged.")
    for index, entry in enumerate(shards):
        _check_shard_entry(entry, index, manifest_path, n_texts, rows_are_texts=manifest.get("position") != "all")
    return sorted(shards, key=lambda entry: entry["text_start"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_shard_entry(entry: Any, index: int, manifest_path: Path, n_texts: int, rows_are_texts: bool) -> None:
    """One manifest entry: a shard file name inside the store folder, and a valid text range."""
    where = f"{manifest_path}: shard entry {index} ({entry!r})"
    if not isinstance(entry, dict) or not all(_is_int(entry.get(k)) for k in ("text_start", "text_end", "rows")):
        raise ValueError(f"{where} needs integer 'text_start', 'text_end' and 'rows': the store is damaged.")
    name = entry.get("file")
    if not isinstance(name, str) or not SHARD_FILE.match(name):
        raise ValueError(f"{where} names {name!r}, which is not a shard file inside the store folder (expected "
                         "'shard-NNNNN.safetensors'): refusing to read or write outside the store. Capture again "
                         "into a new directory.")
    if not 0 <= entry["text_start"] < entry["text_end"] <= n_texts:
        raise ValueError(f"{where} covers texts {entry['text_start']}..{entry['text_end']}, outside 0..{n_texts}: "
                         "the store is damaged.")
    if rows_are_texts and entry["rows"] != entry["text_end"] - entry["text_start"]:
        raise ValueError(f"{where} has {entry['rows']} rows for {entry['text_end'] - entry['text_start']} texts: "
                         "the store is damaged.")
    offset = entry.get("sequence_offset", 0)
    if not _is_int(offset) or offset < 0:
        raise ValueError(f"{where} has sequence_offset {offset!r}, not a non-negative int: the store is damaged.")
    path = manifest_path.parent / name
    if path.is_symlink():
        raise ValueError(f"{where} names a symbolic link (to {os.readlink(path)}): refusing to read or write "
                         "outside the store. Capture again into a new directory.")


def _first_overlap(shards: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The first two (sorted) entries whose text ranges overlap, if any."""
    for previous, entry in zip(shards, shards[1:]):
        if entry["text_start"] < previous["text_end"]:
            return previous, entry
    return None


def _without_overlaps(shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep, in text order, each entry that starts where no kept entry has already covered."""
    kept: list[dict[str, Any]] = []
    for entry in shards:
        if not kept or entry["text_start"] >= kept[-1]["text_end"]:
            kept.append(entry)
    return kept


def _check_complete_coverage(shards: list[dict[str, Any]], n_texts: int, manifest_path: Path) -> None:
    """A finished store: its shards cover every text exactly once, in order."""
    cursor = 0
    for entry in shards:
        if entry["text_start"] != cursor:
            problem = "overlap" if entry["text_start"] < cursor else "leave a gap"
            raise ValueError(f"{manifest_path}: shard entries {problem} at text {min(cursor, entry['text_start'])} "
                             f"(entry {entry!r}), so texts would not map to rows one to one. Run the same "
                             "capture(out=...) again to repair the store.")
        cursor = entry["text_end"]
    if cursor != n_texts:
        raise ValueError(f"{manifest_path}: the shards cover texts 0..{cursor} of {n_texts}. Run the same "
                         "capture(out=...) again to finish the store.")


# ---------------------------------------------------------------- the store


class ShardStore:
    """A store directory: open for writing with :meth:`create_or_resume`, for reading with :meth:`open`.

    A store opened for writing holds the directory's lock until :meth:`close` (or the end
    of a ``with`` block).
    """

    def __init__(self, directory: Path, manifest: dict[str, Any], *, writable: bool = False,
                 lock: int | None = None):
        self.directory = directory
        self.manifest = manifest
        self._writable = writable
        self._lock = lock

    def __enter__(self) -> "ShardStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the write lock (a no-op for a store opened for reading)."""
        self._writable = False
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    # ------------------------------------------------------------ writing

    @classmethod
    def create_or_resume(cls, directory: str | os.PathLike, header: dict[str, Any], texts: list[str],
                         metadata: dict[str, list]) -> "ShardStore":
        """Start a store, or reopen an unfinished one with the same header and texts.

        Refuses (FileExistsError) a directory holding anything else, so nothing the user
        saved is overwritten; refuses a symbolic link; raises :class:`StoreBusyError`
        while another process writes the same directory.
        """
        directory = Path(directory)
        refuse_symlink(directory, "Store directory")
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory} is a file, not a directory: choose a new or empty directory.")
        expected = {**header, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "n_texts": len(texts), "texts_fingerprint": fingerprint(texts)}
        if not (directory / MANIFEST).exists() and not _holds_only_creation_leftovers(directory):
            raise _not_a_store(directory)
        directory.mkdir(parents=True, exist_ok=True)
        store = cls(directory, {}, writable=True, lock=_lock_directory(directory))
        try:
            if (directory / MANIFEST).exists():
                store._resume(expected, texts, metadata)
            else:
                store._create(expected, texts, metadata)
        except BaseException:
            store.close()
            raise
        return store

    def _create(self, expected: dict[str, Any], texts: list[str], metadata: dict[str, list]) -> None:
        """Write the texts, then the manifest (the commit point: until then a rerun starts over)."""
        if not _holds_only_creation_leftovers(self.directory):  # re-checked under the lock
            raise _not_a_store(self.directory)
        _write_json(self.directory / TEXTS, {"texts": texts, "metadata": metadata})
        self.manifest = {**expected, "shards": [], "complete": False}
        _write_json(self.manifest_path, self.manifest)

    def _resume(self, expected: dict[str, Any], texts: list[str], metadata: dict[str, list]) -> None:
        """Reopen a store of the same capture; drop what an interrupted run left half-done."""
        manifest = _read_json(self.manifest_path)
        shards = _check_manifest(manifest, self.manifest_path)
        differing = sorted(k for k, v in expected.items() if manifest.get(k) != v)
        if differing:
            raise FileExistsError(
                f"{self.directory} already holds a different capture (differs in: {', '.join(differing)}). "
                "Choose another output directory, or delete this one yourself."
            )
        present = [entry for entry in shards if (self.directory / entry["file"]).is_file()]
        kept = _without_overlaps(present)  # overlaps: stores written before text ranges were reconciled
        self.manifest = {**manifest, "shards": kept}
        if len(kept) != len(shards):
            self.manifest["complete"] = False
            _write_json(self.manifest_path, self.manifest)
        self._remove_temporary_files()
        self._restore_texts({"texts": texts, "metadata": metadata})

    def _restore_texts(self, payload: dict[str, Any]) -> None:
        """Rewrite ``texts.json`` if it is missing or differs (metadata may change: it does not affect activations)."""
        path = self.directory / TEXTS
        refuse_symlink(path, "Store file")
        try:
            current = _read_json(path)
        except (FileNotFoundError, ValueError):
            current = None
        if current != json.loads(json.dumps(payload)):
            _write_json(path, payload)

    def _remove_temporary_files(self) -> None:
        """Half-written files of a killed run (only ours: shard and JSON temporaries)."""
        for path in self.directory.iterdir():
            stem = path.name.removesuffix(TEMPORARY_SUFFIX)
            if path.name.endswith(TEMPORARY_SUFFIX) and (SHARD_FILE.match(stem) or stem in (TEXTS, MANIFEST)):
                path.unlink()

    def finished_text_ranges(self) -> list[tuple[int, int]]:
        """The ``(text_start, text_end)`` of each listed shard, in text order."""
        return [(shard["text_start"], shard["text_end"]) for shard in self.manifest["shards"]]

    def remaining_ranges(self, shard_size: int) -> list[tuple[int, int]]:
        """Text ranges no listed shard covers, cut into pieces of at most ``shard_size`` texts."""
        return remaining_ranges(self.finished_text_ranges(), self.manifest["n_texts"], shard_size)

    def write_shard(self, text_start: int, text_end: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write one shard atomically and durably, then record it in the manifest."""
        if not self._writable:
            raise RuntimeError("This store is not open for writing: use ShardStore.create_or_resume.")
        if any(start < text_end and text_start < end for start, end in self.finished_text_ranges()):
            raise ValueError(f"Texts {text_start}..{text_end} are already (partly) in {self.directory}: "
                             "a store holds each text once.")
        name = self._next_shard_name()
        refuse_symlink(self.directory / name, "Store file")
        temporary = self.directory / (name + TEMPORARY_SUFFIX)
        os.close(_create_fresh_file(temporary))
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(temporary))
        _sync_file(temporary)
        _replace(temporary, self.directory / name)
        self.manifest["shards"].append({"file": name, "text_start": text_start, "text_end": text_end,
                                        "rows": int(tensors["activations"].shape[0])})
        self.manifest["shards"].sort(key=lambda shard: shard["text_start"])
        _write_json(self.manifest_path, self.manifest)

    def _next_shard_name(self) -> str:
        """The lowest-numbered shard name no listed shard uses (an unlisted file there is a leftover)."""
        used = {int(SHARD_FILE.match(shard["file"]).group(1)) for shard in self.manifest["shards"]}
        number = next(n for n in range(len(used) + 1) if n not in used)
        return f"shard-{number:05d}.safetensors"

    def mark_complete(self) -> None:
        """Record that every text is captured (checked: each text exactly once, in order)."""
        if not self._writable:
            raise RuntimeError("This store is not open for writing: use ShardStore.create_or_resume.")
        _check_complete_coverage(self.manifest["shards"], self.manifest["n_texts"], self.manifest_path)
        self.manifest["complete"] = True
        _write_json(self.manifest_path, self.manifest)

    # ------------------------------------------------------------ reading

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "ShardStore":
        """Open a store for reading, checking its manifest (entries, links, and coverage once complete)."""
        directory = Path(directory)
        refuse_symlink(directory, "Store directory")
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"No activation store at {directory} (no {MANIFEST}).")
        manifest = _read_json(manifest_path)
        shards = _check_manifest(manifest, manifest_path)
        missing = [entry for entry in shards if not (directory / entry["file"]).is_file()]
        if missing:
            raise FileNotFoundError(f"{manifest_path}: shard entry {missing[0]!r} names a missing file. Run the same "
                                    "capture(out=...) again to recompute it.")
        if manifest.get("complete"):
            _check_complete_coverage(shards, manifest["n_texts"], manifest_path)
        elif (overlap := _first_overlap(shards)) is not None:
            raise ValueError(f"{manifest_path}: shard entries {overlap[0]!r} and {overlap[1]!r} overlap. Run the "
                             "same capture(out=...) again to repair the store.")
        return cls(directory, {**manifest, "shards": shards})

    def texts(self) -> tuple[list[str], dict[str, list]]:
        """The captured texts and metadata (checked against the manifest's fingerprint)."""
        payload = _read_json(self.directory / TEXTS)
        texts = payload.get("texts") if isinstance(payload, dict) else None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) \
                or fingerprint(texts) != self.manifest.get("texts_fingerprint"):
            raise ValueError(f"{self.directory / TEXTS} does not hold the texts the manifest was captured from: "
                             "the store is damaged. Run the same capture(out=...) again, or capture into a new "
                             "directory.")
        return texts, payload.get("metadata") or {}

    def iter_shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Each finished shard's tensors, in text order: bounded memory however big the store."""
        for index, shard in enumerate(self.manifest["shards"]):
            path = self.directory / shard["file"]
            refuse_symlink(path, "Shard file")
            tensors = load_file(str(path))
            rows = tensors["activations"].shape[0] if "activations" in tensors else None
            if rows != shard["rows"]:
                raise ValueError(f"{path} holds {rows} rows, but {self.manifest_path} (shard entry {index}) "
                                 f"lists {shard['rows']}: the store is damaged.")
            if shard.get("sequence_offset") and "sequence_index" in tensors:  # a merged shard's local text numbers
                tensors["sequence_index"] = tensors["sequence_index"] + shard["sequence_offset"]
            yield tensors


def link_store(directory: Path, header: dict[str, Any], texts: list[str], metadata: dict[str, list],
               parts: list[dict[str, Any]]) -> dict[str, int]:
    """Write a finished store into the empty ``directory`` from existing shard files, without reading them.

    ``parts``: in text order, ``{"source": path, "text_start", "text_end", "rows", "sequence_offset"}``
    (offset None for none). Each source becomes ``shard-NNNNN.safetensors`` through a hard link
    (a byte copy where linking fails, e.g. across file systems); store files are only ever
    replaced by a rename, never rewritten, so the link's other name cannot change under it.
    Returns how many files were linked and copied.
    """
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: a merged store is written into a new folder.")
    entries, counts = [], {"linked": 0, "copied": 0}
    for number, part in enumerate(parts):
        source = Path(part["source"])
        refuse_symlink(source, "Shard file")
        name = f"shard-{number:05d}.safetensors"
        try:
            os.link(source, directory / name)
            counts["linked"] += 1
        except OSError:  # another file system, or links not allowed there
            shutil.copyfile(source, directory / name, follow_symlinks=False)
            _sync_file(directory / name)
            counts["copied"] += 1
        entry = {"file": name, "text_start": part["text_start"], "text_end": part["text_end"], "rows": part["rows"]}
        if part.get("sequence_offset"):
            entry["sequence_offset"] = part["sequence_offset"]
        entries.append(entry)
    manifest = {**header, "format": FORMAT, "format_version": FORMAT_VERSION, "n_texts": len(texts),
                "texts_fingerprint": fingerprint(texts), "shards": entries, "complete": True}
    _check_manifest(manifest, directory / MANIFEST)
    _check_complete_coverage(entries, len(texts), directory / MANIFEST)
    _write_json(directory / TEXTS, {"texts": texts, "metadata": metadata})
    _write_json(directory / MANIFEST, manifest)
    return counts


def _not_a_store(directory: Path) -> FileExistsError:
    return FileExistsError(f"{directory} exists and is not an activation store: choose an empty or new directory.")


def _holds_only_creation_leftovers(directory: Path) -> bool:
    """True if ``directory`` is missing, empty, or holds only what a creation killed before its manifest left.

    A ``texts.json`` counts only if it is one steerlab wrote (a JSON object of texts and
    metadata), so a user's own file of that name is never overwritten.
    """
    if not directory.exists():
        return True
    for path in directory.iterdir():
        if path.name not in _CREATION_LEFTOVERS or path.is_symlink() or not path.is_file():
            return False
        if path.name == TEXTS and not _is_texts_file(path):
            return False
    return True


def _is_texts_file(path: Path) -> bool:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and set(payload) == {"texts", "metadata"}


def _lock_directory(directory: Path) -> int | None:
    """Take the exclusive write lock on ``directory``; the returned descriptor holds it until closed."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreBusyError(f"Another process is writing the activation store {directory}: wait for it to "
                             "finish (then rerun to reuse its work), or choose another out directory.") from None
    return descriptor
