"""Saving and loading steerlab artifacts: safetensors tensors + a JSON metadata file.

Every artifact (probe, direction, steering vector, SAE reference) is two files side
by side, ``NAME.safetensors`` and ``NAME.json``. The JSON records what the tensors
mean (``kind``, model id, site, layer, position, d_model, steerlab version, plus the
artifact's own fields). Nothing is pickled and nothing loaded can execute code.

Example:
    >>> import torch, tempfile, os
    >>> from steerlab.artifacts import save_artifact, load_artifact
    >>> path = os.path.join(tempfile.mkdtemp(), "v")
    >>> _ = save_artifact(path, {"direction": torch.ones(4)}, {"layer": 2}, kind="steering_vector")
    >>> tensors, meta = load_artifact(path, kind="steering_vector")
    >>> meta["layer"], tensors["direction"].shape
    (2, torch.Size([4]))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def artifact_kind(path: str | os.PathLike) -> str | None:
    """The ``kind`` recorded in ``path.json`` ("probe", "steering_vector", ...), without reading the tensors."""
    _, json_path = _paths(path)
    if not json_path.is_file():
        raise FileNotFoundError(f"Missing {json_path}: an artifact is a .safetensors file plus a .json file.")
    return json.loads(json_path.read_text()).get("kind")


def save_artifact(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *,
                  kind: str, overwrite: bool = False) -> Path:
    """Write ``path.safetensors`` + ``path.json``; refuses to replace existing files unless ``overwrite``."""
    from steerlab import __version__

    tensor_path, json_path = _paths(path)
    existing = [p for p in (tensor_path, json_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists: choose another name or pass overwrite=True.")
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}, str(tensor_path))
    payload = {"kind": kind, "steerlab_version": __version__, **metadata}
    json_path.write_text(json.dumps(payload, indent=1, default=_json_default))
    return tensor_path


def load_artifact(path: str | os.PathLike, *, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an artifact back; with ``kind``, refuse a file holding another kind of artifact."""
    tensor_path, json_path = _paths(path)
    for required in (tensor_path, json_path):
        if not required.is_file():
            raise FileNotFoundError(f"Missing {required}: an artifact is a .safetensors file plus a .json file.")
    metadata = json.loads(json_path.read_text())
    if kind is not None and metadata.get("kind") != kind:
        raise ValueError(f"{json_path} holds a {metadata.get('kind')!r}, not a {kind!r}.")
    return load_file(str(tensor_path)), metadata


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Cannot store {type(value).__name__} in artifact metadata.")
