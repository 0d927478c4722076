"""The ``Activations`` object: captured activations with everything needed to use them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from steerlab.capture.shards import merge_shards
from steerlab.capture.store import ShardStore


class Activations:
    """Activations of one site at several layers, one row per text (or per token).

    Attributes:
        values: ``[rows, n_layers, d_model]`` tensor (loaded lazily from disk for a stored capture).
        layers: the layer of each slot along axis 1.
        site, position, model_name, d_model: what was captured.
        texts: the captured texts; ``metadata``: per-text lists passed to ``capture``.
        sequence_index, token_index: ``[rows]`` for ``position="all"`` (which text, which
            real token), else None.

    Example:
        >>> acts = steerlab.capture(model, texts, layers=[1, 2])   # doctest: +SKIP
        >>> acts.numpy().shape                                     # doctest: +SKIP
        (len(texts), 2, model.d_model)
        >>> acts.layer(2).shape                                    # doctest: +SKIP
        torch.Size([len(texts), model.d_model])
    """

    def __init__(self, values: torch.Tensor | None, *, layers: list[int], site: str, position: Any,
                 model_name: str, d_model: int, texts: list[str], metadata: dict[str, list] | None = None,
                 sequence_index: torch.Tensor | None = None, token_index: torch.Tensor | None = None,
                 store: ShardStore | None = None, model_provenance: dict[str, Any] | None = None):
        if values is None and store is None:
            raise ValueError("Activations need values or a store to load them from.")
        self._values = values
        self._store = store
        self.layers = list(layers)
        self.site = site
        self.position = position
        self.model_name = model_name
        self.model_provenance = model_provenance  # a GGUF-converted model: source file, sha256, quantisation
        self.d_model = d_model
        self.texts = texts
        self.metadata = metadata or {}
        self.sequence_index = sequence_index
        self.token_index = token_index

    # ------------------------------------------------------------ access

    @property
    def values(self) -> torch.Tensor:
        """``[rows, n_layers, d_model]``; a stored capture is read from disk on first access."""
        if self._values is None:
            shards = list(self._store.iter_shards())
            self._values = torch.cat([shard["activations"] for shard in shards])
            if "sequence_index" in shards[0]:
                self.sequence_index = torch.cat([shard["sequence_index"] for shard in shards])
                self.token_index = torch.cat([shard["token_index"] for shard in shards])
        return self._values

    def numpy(self) -> np.ndarray:
        """``[rows, n_layers, d_model]`` as a numpy array."""
        return self.values.float().numpy() if self.values.dtype == torch.bfloat16 else self.values.numpy()

    def layer(self, layer: int) -> torch.Tensor:
        """``[rows, d_model]`` at one captured layer (the model's layer number, not the slot)."""
        if layer not in self.layers:
            raise ValueError(f"Layer {layer} was not captured; captured layers: {self.layers}.")
        return self.values[:, self.layers.index(layer)]

    def iter_shards(self) -> Iterator[torch.Tensor]:
        """``[rows_in_shard, n_layers, d_model]`` chunks, streaming from disk when stored."""
        if self._store is None:
            yield self.values
            return
        for shard in self._store.iter_shards():
            yield shard["activations"]

    def __len__(self) -> int:
        if self._values is None:
            return sum(shard["rows"] for shard in self._store.manifest["shards"])
        return int(self._values.shape[0])

    def __repr__(self) -> str:
        where = f", stored at {str(self._store.directory)!r}" if self._store is not None else ""
        return (f"Activations(model={self.model_name!r}, site={self.site!r}, layers={self.layers}, "
                f"position={self.position!r}, rows={len(self)}, d_model={self.d_model}{where})")

    # ------------------------------------------------------------ persistence

    def header(self) -> dict[str, Any]:
        """The JSON metadata saved with the tensors."""
        from steerlab import __version__

        header = {"model": self.model_name, "site": self.site, "layers": self.layers, "position": self.position,
                  "d_model": self.d_model, "steerlab_version": __version__}
        return header | ({"model_provenance": self.model_provenance} if self.model_provenance else {})

    def save(self, directory: str | os.PathLike) -> Path:
        """Write safetensors + JSON to a new (or empty) directory; never overwrites another store."""
        tensors = {"activations": self.values}
        if self.sequence_index is not None:
            tensors |= {"sequence_index": self.sequence_index, "token_index": self.token_index}
        with ShardStore.create_or_resume(directory, self.header(), self.texts, self.metadata) as store:
            if store.manifest["shards"]:
                raise FileExistsError(f"{directory} already holds these activations.")
            store.write_shard(0, len(self.texts), tensors)
            store.mark_complete()
        return store.directory

    @classmethod
    def merge(cls, directories: Sequence[str | os.PathLike], out: str | os.PathLike, *,
              overwrite: bool = False) -> "Activations":
        """Merge the folders of a sharded capture (``capture(..., shard=(i, N))``) into one store at ``out``.

        Checks first that they are the N finished shards of one capture (one fingerprint of
        texts + model + settings, one header) covering every text exactly once; the merged
        store's files are hard links to the shards' files, so no tensor is copied (a byte
        copy only across file systems). See :mod:`steerlab.capture.shards`.

        Example:
            >>> for i in range(3):                                                    # doctest: +SKIP
            ...     steerlab.capture(model, texts, out=f"acts-{i}", shard=(i, 3))     # one per machine
            >>> acts = Activations.merge([f"acts-{i}" for i in range(3)], out="acts")  # doctest: +SKIP
        """
        return cls.load(merge_shards(directories, out, overwrite=overwrite))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Activations":
        """Open a saved or streamed store; tensors are read on first access to ``values``."""
        store = ShardStore.open(directory)
        manifest = store.manifest
        if not manifest.get("complete"):
            raise ValueError(f"The capture in {directory} is unfinished: run the same capture(out=...) again to resume it.")
        texts, metadata = store.texts()
        return cls(None, layers=manifest["layers"], site=manifest["site"], position=manifest["position"],
                   model_name=manifest["model"], d_model=manifest["d_model"], texts=texts, metadata=metadata,
                   store=store, model_provenance=manifest.get("model_provenance"))
