"""Activation stores on disk: safetensors shards plus a JSON manifest. No pickle.

Layout of a store directory::

    manifest.json          what was captured (model, site, layers, position, d_model,
                           version), the texts' fingerprint, and the finished shards
    texts.json             the texts and their metadata
    shard-00000.safetensors  {"activations": [rows, n_layers, d_model],
                              "sequence_index", "token_index": [rows] (int64)}

A shard is written to a temporary name and renamed, and the manifest lists it only
afterwards, so an interrupted capture leaves every listed shard complete and can
resume where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

FORMAT = "steerlab.activations"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TEXTS = "texts.json"


def fingerprint(texts: list[str]) -> str:
    """A short hash of the texts, to refuse resuming a capture over different inputs."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _write_json(path: Path, payload: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)


class ShardStore:
    """A store directory: open for writing with :meth:`create_or_resume`, for reading with :meth:`open`."""

    def __init__(self, directory: Path, manifest: dict[str, Any]):
        self.directory = directory
        self.manifest = manifest

    # ------------------------------------------------------------ writing

    @classmethod
    def create_or_resume(cls, directory: str | os.PathLike, header: dict[str, Any], texts: list[str],
                         metadata: dict[str, list]) -> "ShardStore":
        """Start a store, or reopen an unfinished one with the same header and texts.

        Refuses (FileExistsError) a directory holding anything else, so nothing the user
        saved is overwritten.
        """
        directory = Path(directory)
        expected = {**header, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "n_texts": len(texts), "texts_fingerprint": fingerprint(texts)}
        manifest_path = directory / MANIFEST
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            differing = sorted(k for k, v in expected.items() if manifest.get(k) != v)
            if differing:
                raise FileExistsError(
                    f"{directory} already holds a different capture (differs in: {', '.join(differing)}). "
                    "Choose another output directory, or delete this one yourself."
                )
            return cls(directory, manifest)
        if directory.exists() and any(directory.iterdir()):
            raise FileExistsError(f"{directory} exists and is not an activation store: choose an empty or new directory.")
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(directory / TEXTS, {"texts": texts, "metadata": metadata})
        store = cls(directory, {**expected, "shards": [], "complete": False})
        _write_json(manifest_path, store.manifest)
        return store

    def finished_text_ranges(self) -> set[tuple[int, int]]:
        return {(shard["text_start"], shard["text_end"]) for shard in self.manifest["shards"]}

    def write_shard(self, text_start: int, text_end: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write one shard atomically and record it in the manifest."""
        name = f"shard-{len(self.manifest['shards']):05d}.safetensors"
        temporary = self.directory / (name + ".tmp")
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(temporary))
        os.replace(temporary, self.directory / name)
        self.manifest["shards"].append({"file": name, "text_start": text_start, "text_end": text_end,
                                        "rows": int(tensors["activations"].shape[0])})
        self.manifest["shards"].sort(key=lambda shard: shard["text_start"])
        _write_json(self.directory / MANIFEST, self.manifest)

    def mark_complete(self) -> None:
        self.manifest["complete"] = True
        _write_json(self.directory / MANIFEST, self.manifest)

    # ------------------------------------------------------------ reading

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "ShardStore":
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"No activation store at {directory} (no {MANIFEST}).")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{directory} is not a steerlab activation store (format {manifest.get('format')!r}).")
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{directory} was written by a newer steerlab (format {manifest['format_version']}); upgrade steerlab.")
        return cls(directory, manifest)

    def texts(self) -> tuple[list[str], dict[str, list]]:
        payload = json.loads((self.directory / TEXTS).read_text())
        return payload["texts"], payload["metadata"]

    def iter_shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Each finished shard's tensors, in text order: bounded memory however big the store."""
        for shard in self.manifest["shards"]:
            yield load_file(str(self.directory / shard["file"]))
