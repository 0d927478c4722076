"""Sharded capture: one corpus cut into N contiguous ranges, captured on N machines, merged without copying tensors.

Every machine runs the same capture with its own ``shard=(i, N)`` (``--shard i/N`` on the
command line) and its own output folder. Shard ``i`` takes texts ``[i*n//N, (i+1)*n//N)`` of
the texts in the order given (so every machine must read the same file: the fingerprint
checks it). Each shard folder is an ordinary, resumable activation store whose manifest
also holds::

    "shard": {"index": i, "count": N, "text_start": a, "text_end": b, "n_texts_total": n,
              "texts_sha256": "<sha256 of all n texts>", "fingerprint": "<sha256 of texts + model + settings>"}

:func:`merge_shards` (``steerlab merge-captures`` / :meth:`Activations.merge`) checks that the
shards share one fingerprint and header and cover every text exactly once, then writes a
store whose shard files are hard links to the shards' files (a copy only where the folders
are on different file systems): no tensor is read or copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from steerlab.capture.store import ShardStore, link_store, texts_sha256
from steerlab.output_folder import check_output, staged_output

SHARD_KEY = "shard"
# Manifest keys that differ from shard to shard (or describe the store, not the capture).
_PER_STORE_KEYS = frozenset({SHARD_KEY, "n_texts", "texts_fingerprint", "shards", "complete"})
_SHARD_TEXT = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class ShardPlan:
    """Which texts shard ``index`` of ``count`` captures: ``[start, end)`` of ``n_texts``."""

    index: int
    count: int
    start: int
    end: int
    n_texts: int
    texts_sha256: str
    spans_sha256: str | None

    def select(self, texts: list[str], metadata: dict[str, list],
               spans: Sequence[tuple[int, int]] | None) -> tuple[list[str], dict[str, list], list | None]:
        """This shard's texts, metadata and spans (slices of the full lists)."""
        return (texts[self.start:self.end], {key: values[self.start:self.end] for key, values in metadata.items()},
                None if spans is None else list(spans)[self.start:self.end])

    def stamp(self, header: dict[str, Any], *, chat_template: bool, strict: bool) -> dict[str, Any]:
        """``header`` plus this shard's section, whose fingerprint covers the texts, the model and the settings."""
        settings = {key: header.get(key) for key in ("model", "model_provenance", "site", "layers", "position",
                                                     "d_model", "dtype")}
        identity = {"texts_sha256": self.texts_sha256, "n_texts": self.n_texts, "spans_sha256": self.spans_sha256,
                    "chat_template": chat_template, "strict": strict, **settings}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()
        return {**header, SHARD_KEY: {"index": self.index, "count": self.count, "text_start": self.start,
                                      "text_end": self.end, "n_texts_total": self.n_texts,
                                      "texts_sha256": self.texts_sha256, "chat_template": chat_template,
                                      "strict": strict, "fingerprint": digest}}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (``--shard``) -> ``(i, N)`` with ``0 <= i < N``; a clear error otherwise."""
    match = _SHARD_TEXT.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"--shard takes i/N (this machine's shard i of N, counted from 0), e.g. --shard 0/4; "
                         f"got {text!r}.")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        last = f" (--shard {count - 1}/{count} is the last of {count})" if count >= 1 else ""
        raise ValueError(f"--shard {text}: shards are numbered from 0, so i/N needs N >= 1 and 0 <= i < N{last}.")
    return index, count


def check_shard(shard: Any) -> tuple[int, int] | None:
    """``shard`` as ``(index, count)`` with ``0 <= index < count``, or None; a clear error otherwise."""
    if shard is None:
        return None
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise TypeError(f"capture: shard must be a pair (i, N), e.g. shard=(0, 4) for the first of 4 shards; "
                        f"got {shard!r}.") from None
    if any(isinstance(v, bool) or not hasattr(v, "__index__") for v in (index, count)):
        raise TypeError(f"capture: shard must be a pair of ints (i, N), got {shard!r}: e.g. shard=(0, 4).")
    index, count = int(index), int(count)
    if count < 1:
        raise ValueError(f"capture: shard=({index}, {count}) asks for {count} shards: N must be at least 1.")
    if not 0 <= index < count:
        raise ValueError(f"capture: shard=({index}, {count}) is out of range: shards are numbered 0..{count - 1}, "
                         f"so use shard=(i, {count}) with 0 <= i < {count} (--shard {count - 1}/{count} is the last).")
    return index, count


def shard_range(index: int, count: int, n_texts: int) -> tuple[int, int]:
    """Texts ``[start, end)`` of shard ``index`` of ``count``: contiguous, sizes differ by at most one."""
    return index * n_texts // count, (index + 1) * n_texts // count


def plan_shard(shard: Any, texts: list[str], spans: Sequence[tuple[int, int]] | None,
               out: Path | None) -> ShardPlan | None:
    """Check ``shard`` against the texts and ``out`` (before any work); None when not sharding."""
    checked = check_shard(shard)
    if checked is None:
        return None
    index, count = checked
    if out is None:
        raise ValueError("capture: shard= needs out=: each shard is written to its own folder, then merged with "
                         "Activations.merge(folders, out) or `steerlab merge-captures`.")
    if count > len(texts):
        raise ValueError(f"capture: {count} shards for {len(texts)} texts would leave shards empty: use at most "
                         f"{len(texts)} shards.")
    start, end = shard_range(index, count, len(texts))
    spans_sha256 = None
    if spans is not None:
        if len(spans) != len(texts):
            raise ValueError(f"Got {len(spans)} spans for {len(texts)} texts: give one (start, end) per text (all "
                             "of them, as the texts: each shard takes its own slice).")
        spans_sha256 = hashlib.sha256(json.dumps([list(span) for span in spans]).encode("utf-8")).hexdigest()
    return ShardPlan(index, count, start, end, len(texts), texts_sha256(texts), spans_sha256)


# ---------------------------------------------------------------- merging


@dataclass(frozen=True)
class _Shard:
    directory: Path
    store: ShardStore
    info: dict[str, Any]

    @property
    def name(self) -> str:
        return f"shard {self.info['index']}/{self.info['count']} ({self.directory})"


def merge_shards(directories: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 overwrite: bool = False) -> Path:
    """Merge the shard folders of one sharded capture into one store at ``out``; return ``out``.

    Checked before anything is written: every folder is a finished shard store; all share
    one fingerprint (texts + model + settings), header and shard count; together they cover
    every text exactly once; their texts are the slices of the texts the fingerprint names.
    The merged store's files are hard links to the shards' files (copies across file
    systems); ``out`` is built aside and swapped in at the end (``overwrite`` replaces a
    previous steerlab output only).
    """
    check_output(out, overwrite)  # a usable --out before reading any shard
    shards = _open_shards(directories)
    first = shards[0]
    _check_same_capture(shards)
    _check_coverage(shards)
    texts, metadata = _joined_texts(shards)
    header = {key: value for key, value in first.store.manifest.items()
              if key not in _PER_STORE_KEYS and key not in ("format", "format_version")}
    header["merged_from"] = {"shards": first.info["count"], "fingerprint": first.info["fingerprint"]}
    offset_rows = header.get("position") == "all"  # rows are tokens: sequence_index must become global
    parts = []
    for shard in shards:
        for entry in shard.store.manifest["shards"]:
            parts.append({"source": shard.directory / entry["file"],
                          "text_start": shard.info["text_start"] + entry["text_start"],
                          "text_end": shard.info["text_start"] + entry["text_end"], "rows": entry["rows"],
                          "sequence_offset": (entry.get("sequence_offset", 0) + shard.info["text_start"]
                                              if offset_rows else None)})
    with staged_output(out, overwrite) as work:
        link_store(work, header, texts, metadata, parts)
    return Path(out)


def _open_shards(directories: Sequence[str | os.PathLike]) -> list[_Shard]:
    if isinstance(directories, (str, bytes, os.PathLike)) or not directories:
        raise ValueError("merge: pass the list of shard folders to merge, e.g. merge(['acts-0', 'acts-1'], out=...).")
    shards, seen = [], {}
    for directory in map(Path, directories):
        store = ShardStore.open(directory)
        info = store.manifest.get(SHARD_KEY)
        if not isinstance(info, dict) or not {"index", "count", "fingerprint", "text_start", "text_end",
                                               "n_texts_total", "texts_sha256"} <= set(info):
            raise ValueError(f"merge: {directory} is not a shard of a sharded capture (it was captured without "
                             "shard=(i, N) / --shard i/N): merge only the folders of one sharded capture.")
        shard = _Shard(directory, store, info)
        if not store.manifest.get("complete"):
            done = sum(end - start for start, end in store.finished_text_ranges())
            raise ValueError(f"merge: {shard.name} is unfinished ({done} of {store.manifest['n_texts']} texts): run "
                             f"the same capture with --shard {info['index']}/{info['count']} (shard=({info['index']}, "
                             f"{info['count']})) and out={str(directory)!r} again to resume it, then merge.")
        if info["index"] in seen:
            raise ValueError(f"merge: shard {info['index']}/{info['count']} is given twice ({seen[info['index']]} and "
                             f"{directory}): pass each shard's folder once.")
        seen[info["index"]] = directory
        shards.append(shard)
    return sorted(shards, key=lambda shard: shard.info["index"])


def _check_same_capture(shards: list[_Shard]) -> None:
    """One fingerprint, one header, one shard count across all shards."""
    first = shards[0]
    reference = {k: v for k, v in first.store.manifest.items() if k not in _PER_STORE_KEYS}
    for shard in shards[1:]:
        if shard.info["count"] != first.info["count"]:
            raise ValueError(f"merge: {shard.name} was cut into {shard.info['count']} shards but {first.name} into "
                             f"{first.info['count']}: merge the shards of one run, all captured with the same N.")
        header = {k: v for k, v in shard.store.manifest.items() if k not in _PER_STORE_KEYS}
        differing = sorted(k for k in reference.keys() | header.keys() if reference.get(k) != header.get(k))
        fingerprint_differs = shard.info["fingerprint"] != first.info["fingerprint"]
        if differing or fingerprint_differs:
            inputs = [k for k in ("texts_sha256", "n_texts_total", "chat_template", "strict")
                      if shard.info.get(k) != first.info.get(k)]
            what = ", ".join(differing + inputs) or "the fingerprint"
            raise ValueError(f"merge: {shard.name} and {first.name} are not shards of the same capture (they differ "
                             f"in: {what}). Capture every shard with the same texts in the same order, model and "
                             "settings (only --shard i/N changing), recapturing the odd one out into a new folder.")


def _check_coverage(shards: list[_Shard]) -> None:
    """The shards' ranges are the planned ones and cover every text exactly once."""
    first = shards[0]
    count, n_texts = first.info["count"], first.info["n_texts_total"]
    present = {shard.info["index"] for shard in shards}
    missing = [index for index in range(count) if index not in present]
    if missing:
        ranges = ", ".join(f"{index}/{count} (texts {'..'.join(map(str, shard_range(index, count, n_texts)))})"
                           for index in missing)
        raise ValueError(f"merge: missing shard(s) {ranges}: capture them with --shard i/N (shard=(i, N)) and pass "
                         "their folders too.")
    for shard in shards:
        expected = shard_range(shard.info["index"], count, n_texts)
        found = (shard.info["text_start"], shard.info["text_end"])
        if found != expected or shard.store.manifest["n_texts"] != expected[1] - expected[0]:
            raise ValueError(f"merge: {shard.name} holds texts {found[0]}..{found[1]} "
                             f"({shard.store.manifest['n_texts']} texts), but shard {shard.info['index']} of {count} "
                             f"covers texts {expected[0]}..{expected[1]}: its manifest was edited or the store is "
                             "damaged. Capture that shard again into a new folder.")


def _joined_texts(shards: list[_Shard]) -> tuple[list[str], dict[str, list]]:
    """All texts and metadata, in order, checked against the texts the fingerprint was made from."""
    texts: list[str] = []
    metadata: dict[str, list] = {}
    keys = None
    for shard in shards:
        shard_texts, shard_metadata = shard.store.texts()
        if keys is not None and set(shard_metadata) != keys:
            raise ValueError(f"merge: {shard.name} has metadata {sorted(shard_metadata)} but the shards before it have "
                             f"{sorted(keys)}: pass the same metadata columns to every shard's capture.")
        keys = set(shard_metadata)
        texts.extend(shard_texts)
        for key, values in shard_metadata.items():
            metadata.setdefault(key, []).extend(values)
    if texts_sha256(texts) != shards[0].info["texts_sha256"]:
        raise ValueError("merge: the shards' texts joined in order are not the texts their fingerprint was made "
                         f"from ({len(texts)} texts): a shard store is damaged. Capture the shards again into new "
                         "folders.")
    return texts, metadata
