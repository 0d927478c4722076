"""llama.cpp control vectors: steering vectors as GGUF files that llama.cpp, repeng and EasySteer read.

The format (llama.cpp ``common.cpp: llama_control_vector_load_one``, ``src/llama-adapter.cpp``;
repeng ``ControlVector.export_gguf``)::

    general.architecture      = "controlvector"
    controlvector.model_hint  = the model's architecture, e.g. "llama" (llama.cpp does not check it)
    controlvector.layer_count = the number of direction tensors
    direction.N               float32 [d_model], added to the output of block N (N >= 1)

llama.cpp adds ``strength * direction.N`` to every token's output of block ``N`` (its graph
calls ``build_cvec(cur, il)`` at the end of block ``il``, counted from 0), which is steerlab's
``resid_post`` at layer ``N``. Block 0's output cannot be steered: llama.cpp's loader rejects
``direction.0`` and keeps no tensor for it. repeng numbers its directions by the block they
are added after too, so its files read as they are.

Only ``mode="add"`` at every position fits that format: ablate / set / clamp depend on the
activation itself, and llama.cpp steers every token of prompt and answer alike.
:func:`write_control_vector` refuses anything else with a message naming the fix.

steerlab also writes ``steerlab.*`` keys (model name, typical norm, provenance...), which
llama.cpp ignores, so a vector written with ``alpha=1`` reads back exactly.

Checked against llama.cpp itself (``benchmarks/llamacpp_parity.py``, results in
``benchmarks/results_llamacpp.md``): on SmolLM2-135M's GGUF the control vector changes
llama.cpp's next-token logits as ``steer`` changes steerlab's (cosine 0.999), and clearly
less so with the layer moved one block either way (0.90).
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from steerlab.models.gguf import check_gguf_file, require_gguf_package
from steerlab.sites import resolve_layer
from steerlab.steering.injection import as_finite_float
from steerlab.steering.vector import SteeringVector

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelLike

ARCHITECTURE = "controlvector"
SITE = "resid_post"  # the output of a block: the only place llama.cpp adds a control vector
FIRST_LAYER = 1  # llama.cpp never applies direction.0
_STEERLAB = "steerlab."  # our own metadata keys (llama.cpp and repeng ignore them)


# ---------------------------------------------------------------- writing


def write_control_vector(vectors: SteeringVector | Sequence[SteeringVector], path: str | os.PathLike,
                         alpha: float = 1.0, *, model: ModelLike = None, model_hint: str | None = None,
                         mode: str = "add", positions: Any = "all", norm_units: bool = False,
                         overwrite: bool = False) -> Path:
    """Write ``alpha * vector`` as a llama.cpp control-vector GGUF at ``path``; return the path.

    Args:
        vectors: one :class:`SteeringVector`, or several (summed where they share a layer, as
            llama.cpp sums several ``--control-vector`` files and ``steer`` sums several vectors).
        alpha: the coefficient, baked into the file (``steer(model, v, alpha=a)`` ==
            llama.cpp with this file at strength 1).
        model: optional ModelAdapter: resolves negative layers, checks layers and ``d_model``
            against it, and gives the model hint (its GGUF / transformers architecture).
        model_hint: ``controlvector.model_hint`` (default: the model's architecture, else the
            vector's model name).
        mode, positions: only ``"add"`` and ``"all"`` can be expressed; others are refused.
        norm_units: alpha in units of ``vector.typical_norm`` (as ``steer(..., norm_units=True)``).
        overwrite: replace an existing file.

    Raises:
        ValueError: what llama.cpp cannot apply (another site, layer 0, a layer the model
            lacks, another mode, a position restriction), each naming the fix.
    """
    vector_list = [vectors] if isinstance(vectors, SteeringVector) else list(vectors)
    if not vector_list or not all(isinstance(v, SteeringVector) for v in vector_list):
        raise TypeError("write_control_vector takes a SteeringVector or a list of them.")
    alpha = as_finite_float(alpha, "alpha")
    _check_expressible(vector_list, mode, positions, norm_units)
    n_layers, d_model = (model.n_layers, model.d_model) if model is not None else (None, None)
    directions: dict[int, torch.Tensor] = {}
    for vector in vector_list:
        if model is not None and vector.model_name not in (None, model.name):
            raise ValueError(f"{vector!r} was built on {vector.model_name!r}, not on {model.name!r}: a direction "
                             "means nothing in another model's residual stream. Pass the model it was built on.")
        if d_model is not None and vector.d_model != d_model:
            raise ValueError(f"{vector!r} has d_model {vector.d_model} but the model has {d_model}: it was built on "
                             "another model.")
        scaled = alpha * (vector.unit * vector.typical_norm if norm_units else vector.direction)
        for layer in _llama_cpp_layers(vector, n_layers):
            directions[layer] = directions[layer] + scaled if layer in directions else scaled
    if len({int(t.shape[0]) for t in directions.values()}) > 1:
        raise ValueError("These steering vectors have different d_model: one control vector serves one model.")
    hint = model_hint or _model_hint(model) or vector_list[0].model_name or "unknown"
    metadata = _steerlab_metadata(vector_list[0], alpha, norm_units) if len(vector_list) == 1 else {}
    return _write_gguf(Path(path), directions, hint, metadata, overwrite)


def _check_expressible(vectors: list[SteeringVector], mode: str, positions: Any, norm_units: bool) -> None:
    if mode != "add":
        raise ValueError(f"A llama.cpp control vector is added to the residual stream (h + strength * direction); "
                         f"mode={mode!r} depends on h itself and cannot be written as one. Use mode='add', or steer "
                         "with steerlab.steer(model, vector, mode=...) instead.")
    if positions != "all":
        raise ValueError(f"llama.cpp adds a control vector at every token (prompt and generated alike); "
                         f"positions={positions!r} cannot be expressed in the file. Use positions='all', or steer "
                         "with steerlab.steer(..., positions=...) instead.")
    for vector in vectors:
        if vector.site != SITE:
            raise ValueError(f"{vector!r} is at site {vector.site!r}, but llama.cpp adds control vectors to each "
                             f"block's output only (steerlab's {SITE!r}). Build the vector at site='{SITE}' (e.g. "
                             "capture resid_post activations), or steer with steerlab.steer instead.")
        if norm_units and (vector.typical_norm is None or not vector.typical_norm > 0):
            raise ValueError(f"norm_units=True needs a positive vector.typical_norm (got {vector.typical_norm!r}): "
                             "use vector.with_typical_norm(model, texts).")


def _llama_cpp_layers(vector: SteeringVector, n_layers: int | None) -> list[int]:
    """The vector's layers as llama.cpp block indices (checked: 1..n_layers-1)."""
    layers = []
    for layer in vector.layers:
        if layer < 0:
            if n_layers is None:
                raise ValueError(f"{vector!r} has layer {layer}, counted from the end: pass model= (the model it is "
                                 "for) so the layer can be resolved, or give non-negative layers with vector.at(...).")
            layer = resolve_layer(layer, n_layers)
        elif n_layers is not None and layer >= n_layers:
            raise ValueError(f"Layer {layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1}); "
                             "llama.cpp would silently ignore it.")
        if layer < FIRST_LAYER:
            raise ValueError(f"llama.cpp cannot apply a control vector to the output of block 0 (its loader rejects "
                             f"direction.0): {vector!r} is at layer 0. Use a layer >= 1, e.g. vector.at(1) "
                             "(the direction is then added one block later).")
        layers.append(layer)
    return layers


def _model_hint(model: ModelLike) -> str | None:
    """The model's architecture name as llama.cpp / transformers call it (``llama``, ``gemma3``...)."""
    if model is None:
        return None
    provenance = getattr(model, "provenance", None) or {}
    if provenance.get("architecture"):
        return str(provenance["architecture"])
    config = getattr(getattr(model, "hf_model", None), "config", None)
    return getattr(config, "model_type", None)


def _steerlab_metadata(vector: SteeringVector, alpha: float, norm_units: bool) -> dict[str, Any]:
    """What steerlab needs to read the vector back as it was (probe fields only when the file holds it unscaled)."""
    unscaled = alpha == 1.0 and not norm_units
    return {"model_name": vector.model_name, "typical_norm": vector.typical_norm,
            "probe_weight_norm": vector.probe_weight_norm if unscaled else None,
            "probe_intercept": vector.probe_intercept if unscaled else None,
            "provenance": {**vector.provenance, **({} if unscaled else {"control_vector": {
                "alpha": alpha, "norm_units": norm_units, "source_norm": vector.norm}})}}


def _write_gguf(path: Path, directions: dict[int, torch.Tensor], hint: str, metadata: dict[str, Any],
                overwrite: bool) -> Path:
    """Write the file beside ``path`` under a temporary name, then move it into place (never half-written)."""
    gguf = require_gguf_package()
    if path.is_symlink() or path.parent.is_symlink():
        raise ValueError(f"{path} or its folder is a symbolic link: steerlab does not write through links.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists: choose another name or pass overwrite=True.")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        writer = gguf.GGUFWriter(str(temporary), ARCHITECTURE)
        writer.add_string(f"{ARCHITECTURE}.model_hint", hint)
        writer.add_uint32(f"{ARCHITECTURE}.layer_count", len(directions))
        for key, value in metadata.items():
            if value is None:
                continue
            if isinstance(value, float):
                writer.add_float64(_STEERLAB + key, value)  # float64: typical norms etc. read back exactly
            else:
                writer.add_string(_STEERLAB + key, json.dumps(value) if key == "provenance" else str(value))
        for layer in sorted(directions):
            writer.add_tensor(f"direction.{layer}", directions[layer].to(torch.float32).numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if a file appeared meanwhile: never replaces one
    finally:
        temporary.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- reading


def read_control_vector(path: str | os.PathLike) -> list[SteeringVector]:
    """The steering vectors of a llama.cpp control-vector GGUF (steerlab's, repeng's, llama.cpp's own).

    Layers that carry the same direction become one :class:`SteeringVector` at those layers;
    a file with a different direction per layer (repeng's) gives one vector per layer. Each is
    at ``resid_post`` of layer N for ``direction.N``; ``steerlab.steer(model, vectors)`` (alpha 1)
    then adds what llama.cpp adds at strength 1.
    """
    gguf = require_gguf_package()
    path = check_gguf_file(path)
    reader = gguf.GGUFReader(str(path))
    architecture = _string_field(reader, "general.architecture")
    if architecture != ARCHITECTURE:
        raise ValueError(f"{path} is a GGUF of architecture {architecture!r}, not a control vector "
                         f"({ARCHITECTURE!r}): pass a control-vector file (e.g. one written by "
                         "SteeringVector.to_gguf, repeng's export_gguf or llama.cpp's cvector-generator).")
    directions = _directions(reader, path)
    metadata = _read_steerlab_metadata(reader)
    hint = _string_field(reader, f"{ARCHITECTURE}.model_hint")
    groups: dict[bytes, list[int]] = {}
    for layer, direction in sorted(directions.items()):
        groups.setdefault(direction.tobytes(), []).append(layer)
    vectors = []
    for layers in groups.values():
        direction = torch.from_numpy(directions[layers[0]].copy())
        if len(groups) == 1 and metadata:
            vectors.append(SteeringVector(direction, layers=layers, site=SITE, **metadata))
        else:
            vectors.append(SteeringVector(direction, layers=layers, site=SITE, model_name=None, provenance={
                "method": "llama.cpp control vector", "model_hint": hint, "source": path.name}))
    return vectors


def _directions(reader: Any, path: Path) -> dict[int, np.ndarray]:
    """``{N: float32 [d_model]}`` from the ``direction.N`` tensors, checked as llama.cpp checks them."""
    directions: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        prefix, _, number = tensor.name.partition(".")
        if prefix != "direction":
            warnings.warn(f"{path}: ignoring tensor {tensor.name!r} (llama.cpp reads only direction.N tensors).",
                          stacklevel=3)
            continue
        if not number.isdigit() or int(number) < FIRST_LAYER:
            raise ValueError(f"{path}: tensor {tensor.name!r} is not direction.N with N >= 1 (llama.cpp rejects the "
                             "file): the file is damaged or not a llama.cpp control vector.")
        data = np.asarray(tensor.data)
        if tensor.tensor_type.name != "F32" or data.ndim != 1:
            raise ValueError(f"{path}: {tensor.name} is {tensor.tensor_type.name} of shape {tuple(data.shape)}, but a "
                             "control vector direction is float32 [d_model] (llama.cpp rejects the file).")
        directions[int(number)] = data.astype(np.float32, copy=False)
    if not directions:
        raise ValueError(f"{path} holds no direction.N tensors: it is not a usable control vector.")
    if len({d.shape[0] for d in directions.values()}) > 1:
        raise ValueError(f"{path}: the direction tensors differ in size; llama.cpp rejects the file.")
    return directions


def _string_field(reader: Any, key: str) -> str | None:
    field = reader.get_field(key)
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def _read_steerlab_metadata(reader: Any) -> dict[str, Any]:
    """SteeringVector fields steerlab wrote (``steerlab.*`` keys), as keyword arguments; {} for other writers."""
    fields = {}
    for key in ("model_name", "typical_norm", "probe_weight_norm", "probe_intercept", "provenance"):
        field = reader.get_field(_STEERLAB + key)
        if field is None:
            continue
        if key in ("model_name", "provenance"):
            text = _string_field(reader, _STEERLAB + key)
            fields[key] = json.loads(text) if key == "provenance" else text
        else:
            fields[key] = float(field.parts[field.data[0]][0])
    return fields

