"""``capture``: activations of chosen sites, layers and token positions, on any backend."""

from __future__ import annotations

import json
import operator
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from steerlab.capture.activations import Activations
from steerlab.capture.positions import Position, PositionSelector, check_token_index, validate_position
from steerlab.capture.shards import plan_shard
from steerlab.capture.store import ShardStore
from steerlab.models.adapter import ModelAdapter, load_model
from steerlab.models.tokenization import PackedIds, encode, pad
from steerlab.sites import resolve_layers, validate_site

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelLike


def capture(
    model: ModelLike,
    texts: Sequence[str],
    layers: int | Sequence[int] | None = None,
    site: str = "resid_post",
    position: Position = "last",
    batch_size: int = 32,
    out: str | os.PathLike | None = None,
    *,
    spans: Sequence[tuple[int, int]] | None = None,
    metadata: dict[str, Sequence] | None = None,
    chat_template: bool = False,
    strict: bool = False,
    dtype: torch.dtype = torch.float32,
    shard_size: int = 2048,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> Activations:
    """Capture activations of ``site`` at ``layers`` for each text.

    Args:
        model: a :class:`~steerlab.models.ModelAdapter`, or anything ``load_model`` takes.
        texts: the inputs, tokenised with the tokenizer's own rules (no extra BOS).
        layers: layer indices (negative count from the end); None means every layer.
        site: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out`` or ``mlp_out``.
        position: ``"last"`` (last real token), ``"mean"`` (over real tokens, or over
            ``spans``), an int (k-th real token, negative from the end) or ``"all"``.
        batch_size: texts per forward pass. Texts are batched by length to save padding;
            a text's activations never depend on its batch-mates.
        out: a directory to stream safetensors shards to (bounded memory). Rerunning the
            same capture resumes it, even after a kill, computing only the texts no finished
            shard covers; a directory holding anything else, or a symbolic link, is refused.
        spans: ``(start, end)`` character spans per text to pool over (``position="mean"``).
        metadata: per-text lists (labels, domains...) that travel with the activations.
        chat_template: wrap each text in the tokenizer's chat template as a user turn.
        strict: raise instead of truncating texts longer than the context.
        dtype: dtype of the stored activations (float32 by default).
        shard_size: texts per shard when streaming to ``out`` (a resume may use another).
        progress: show a tqdm progress bar.
        shard: ``(i, N)``: capture only shard i of N, texts ``[i*n//N, (i+1)*n//N)`` of the
            texts as given, into ``out``; merge the N folders with :meth:`Activations.merge`
            (see :mod:`steerlab.capture.shards`).

    Every argument is checked before the model runs: bad ones raise a TypeError or
    ValueError naming the problem and the fix.

    Returns:
        :class:`Activations` with ``values`` ``[n_texts, n_layers, d_model]``
        (``[n_tokens, n_layers, d_model]`` for ``"all"``).

    Example:
        >>> import steerlab
        >>> model = steerlab.load_model("demo")                        # doctest: +SKIP
        >>> acts = steerlab.capture(model, ["a b c", "d e"], layers=[-1])  # doctest: +SKIP
        >>> acts.numpy().shape                                         # doctest: +SKIP
        (2, 1, 128)
    """
    texts = _check_texts(texts)
    _check_dtype(dtype)
    batch_size = _check_count("batch_size", batch_size)
    shard_size = _check_count("shard_size", shard_size)
    validate_site(site)
    position = validate_position(position)
    layer_indices = _layer_indices(layers)
    metadata = _check_metadata(metadata, len(texts))
    out = _check_out(out)
    plan = plan_shard(shard, texts, spans, out)
    if plan is not None:  # this machine's slice of the texts; the store's header records which
        texts, metadata, spans = plan.select(texts, metadata, spans)

    adapter = model if isinstance(model, ModelAdapter) else load_model(model)
    layer_list = resolve_layers(layer_indices, adapter.n_layers)
    # Packed (4 bytes a token): a 100,000-text capture's memory must not grow with lists of Python ints.
    ids = encode(adapter.tokenizer, texts, max_length=adapter.context_length, strict=strict,
                 chat_template=chat_template, packed=True)
    check_token_index(position, ids.lengths.tolist())
    job = _Job(adapter, ids, _span_token_masks(adapter.tokenizer, texts, spans, ids, position, chat_template),
               [adapter.point(site, layer) for layer in layer_list], layer_list, position, batch_size, dtype)

    if out is not None:
        header = {"model": adapter.name, "site": site, "layers": layer_list, "position": position,
                  "d_model": adapter.d_model, "dtype": str(dtype).removeprefix("torch.")}
        if adapter.provenance:  # only GGUF-converted models have one; other stores keep their identity
            header["model_provenance"] = adapter.provenance
        if plan is not None:
            header = plan.stamp(header, chat_template=chat_template, strict=strict)
        directory = _capture_to_store(job, ShardStore.create_or_resume(out, _versioned(header), texts, metadata),
                                      shard_size, progress, site)
        return Activations.load(directory)
    with _progress_bar(len(texts), site, progress) as bar, torch.no_grad():
        tensors = _capture_range(job, 0, len(texts), bar)
    _warn_non_finite(tensors["activations"], layer_list, 0)
    return Activations(tensors["activations"], layers=layer_list, site=site, position=position,
                       model_name=adapter.name, d_model=adapter.d_model, texts=texts, metadata=metadata,
                       sequence_index=tensors.get("sequence_index"), token_index=tensors.get("token_index"),
                       model_provenance=adapter.provenance)


@dataclass
class _Job:
    """What every shard of one capture call shares."""

    adapter: ModelAdapter
    ids: PackedIds
    pool_masks: list[list[bool]] | None
    points: list
    layers: list[int]
    position: Position
    batch_size: int
    dtype: torch.dtype


def _capture_to_store(job: _Job, store: ShardStore, shard_size: int, progress: bool, site: str) -> Path:
    """Capture the texts no finished shard covers, one shard at a time; return the store directory."""
    n_texts = len(job.ids)
    with store, _progress_bar(n_texts, site, progress) as bar, torch.no_grad():
        remaining = store.remaining_ranges(shard_size)
        bar.update(n_texts - sum(end - start for start, end in remaining))
        for start, end in remaining:
            tensors = _capture_range(job, start, end, bar)
            _warn_non_finite(tensors["activations"], job.layers, start, stacklevel=4)
            store.write_shard(start, end, tensors)
        store.mark_complete()
    return store.directory


def _progress_bar(total: int, site: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=f"capture {site}", unit="text", disable=not progress)


# ---------------------------------------------------------------- argument checks (before any forward pass)


def _check_texts(texts: Any) -> list[str]:
    """A non-empty list of valid-Unicode strings (any iterable of them is read once)."""
    if isinstance(texts, (str, bytes)):
        single = "string" if isinstance(texts, str) else "bytes object"
        raise TypeError(f"capture: texts must be a list of strings, not a single {single}: wrap it as [text].")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"capture: texts must be a list of strings, got {type(texts).__name__}.") from None
    if not texts:
        raise ValueError("capture: the list of texts is empty: pass at least one text.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"capture: texts[{index}] is a {type(text).__name__} ({text!r:.60}), not a str: "
                            "pass a list of strings (decode bytes, str() numbers).")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"capture: texts[{index}] contains a lone surrogate {text[error.start]!r} at character "
                             f"{error.start}, which is not valid Unicode: remove it, or clean the text with "
                             "text.encode('utf-8', 'replace').decode('utf-8').") from None
    return texts


def _check_dtype(dtype: Any) -> None:
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"capture: dtype must be a torch.dtype, got {type(dtype).__name__} ({dtype!r}): "
                        "pass dtype=torch.float32 or torch.bfloat16.")
    if not dtype.is_floating_point:
        raise ValueError(f"capture: dtype {dtype} is not a floating type: pass dtype=torch.float32 or torch.bfloat16.")


def _check_count(name: str, value: Any) -> int:
    """A positive int (numpy ints accepted) for ``batch_size`` or ``shard_size``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"capture: {name} must be a positive int, got {type(value).__name__} ({value!r}): "
                        f"pass e.g. {name}=32.")
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"capture: {name} must be >= 1, got {value}: pass e.g. {name}=32.")
    return value


def _layer_indices(layers: Any) -> list[int] | None:
    """``layers`` as plain ints (numpy ints accepted); ranges are checked against the model later."""
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not (hasattr(layers, "__index__") or hasattr(layers, "__iter__")):
        raise TypeError(f"capture: layers must be an int or a list of ints, got {type(layers).__name__} "
                        f"({layers!r}): pass e.g. layers=[0, -1], or None for every layer.")
    if hasattr(layers, "__index__") and not isinstance(layers, bool) and getattr(layers, "ndim", 0) == 0:
        return [operator.index(layers)]
    indices = []
    for slot, layer in enumerate(layers):
        if isinstance(layer, bool) or not hasattr(layer, "__index__"):
            raise TypeError(f"capture: layers[{slot}] is a {type(layer).__name__} ({layer!r}), not an int: "
                            "pass layer indices such as layers=[0, -1].")
        indices.append(operator.index(layer))
    return indices


def _check_out(out: str | os.PathLike | None) -> Path | None:
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"capture: out must be a directory path, got {type(out).__name__} ({out!r}).")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"capture: out={str(out)!r} is a file: pass a new or empty directory (or an unfinished "
                         "capture's directory to resume it).")
    return out


def _warn_non_finite(activations: torch.Tensor, layers: list[int], first_text: int, stacklevel: int = 3) -> None:
    """NaN/inf usually means a half-precision overflow; say where, since probes will refuse them."""
    finite = torch.isfinite(activations).flatten(start_dim=2).all(dim=2)  # [rows, n_layers]
    if not finite.all():
        bad_layers = [layer for layer, ok in zip(layers, finite.all(dim=0).tolist()) if not ok]
        warnings.warn(f"NaN or inf activations at layer(s) {bad_layers} (texts from index {first_text}): the model "
                      "overflowed. Load it with dtype=torch.float32 or torch.bfloat16.", stacklevel=stacklevel)


def _versioned(header: dict[str, Any]) -> dict[str, Any]:
    from steerlab import __version__

    return {**header, "steerlab_version": __version__}


def _capture_range(job: _Job, start: int, end: int, bar: tqdm) -> dict[str, torch.Tensor]:
    """Activations of texts ``start:end`` as a shard's tensors, rows in text order."""
    adapter, ids, position = job.adapter, job.ids, job.position
    order = list(range(start, end))
    if position != "all":  # rows are texts: batch by length, restore the order afterwards
        lengths = ids.lengths[start:end].tolist()
        order.sort(key=lambda i: lengths[i - start])
    rows, sequence_index, token_index = [], [], []
    for batch_start in range(0, len(order), job.batch_size):
        members = order[batch_start:batch_start + job.batch_size]
        batch = pad([ids[i] for i in members], pad_id=adapter.pad_token_id, side="right")
        pool = None
        if job.pool_masks is not None:
            pool = pad([[int(flag) for flag in job.pool_masks[i]] for i in members], pad_id=0, side="right").input_ids
        selector = PositionSelector.for_batch(position, batch.attention_mask, pool)
        buffer = torch.empty((selector.n_rows, len(job.points), adapter.d_model), dtype=job.dtype)

        def record(slot: int):
            def fn(activation: torch.Tensor) -> None:
                buffer[:, slot] = selector.select(activation).to("cpu", job.dtype)
            return fn

        # Only as far as the deepest requested site: no later blocks, no logits.
        adapter.read(batch, [(point, record(slot)) for slot, point in enumerate(job.points)])
        rows.append(buffer)
        if position == "all":
            sequence, token = selector.row_indices()
            sequence_index.append(torch.tensor(members)[sequence])
            token_index.append(token)
        bar.update(len(members))
    activations = torch.cat(rows)
    if position != "all":
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order) - start] = torch.arange(len(order))
        return {"activations": activations[inverse]}
    return {"activations": activations, "sequence_index": torch.cat(sequence_index),
            "token_index": torch.cat(token_index)}


def _check_metadata(metadata: dict[str, Sequence] | None, n_texts: int) -> dict[str, list]:
    """Per-text lists of JSON values (numpy scalars become Python ones), one entry per text."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"capture: metadata must be a dict of per-text lists, got {type(metadata).__name__}: "
                        "pass e.g. metadata={'label': labels}.")
    checked = {}
    for key, values in (metadata or {}).items():
        if not isinstance(key, str) or isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"capture: metadata[{key!r}] must be a list with one entry per text, keyed by a str.")
        values = [v.item() if hasattr(v, "item") else v for v in values]
        if len(values) != n_texts:
            raise ValueError(f"metadata[{key!r}] has {len(values)} entries for {n_texts} texts: give one per text.")
        try:
            json.dumps(values)
        except (TypeError, ValueError) as error:
            raise TypeError(f"capture: metadata[{key!r}] cannot be saved as JSON ({error}): use str, int, float, "
                            "bool or None entries.") from None
        checked[key] = values
    return checked


def _span_token_masks(tokenizer: Any, texts: list[str], spans: Sequence[tuple[int, int]] | None,
                      ids: PackedIds, position: Position, chat_template: bool) -> list[list[bool]] | None:
    """Per text, which tokens overlap its character span (for ``position="mean"``)."""
    if spans is None:
        return None
    if position != "mean":
        raise ValueError("spans only apply to position='mean'.")
    if chat_template:
        raise ValueError("spans index the raw texts, so they cannot be combined with chat_template=True.")
    if len(spans) != len(texts):
        raise ValueError(f"Got {len(spans)} spans for {len(texts)} texts: give one (start, end) per text.")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Character spans need a fast tokenizer (offset mapping); load the tokenizer with use_fast=True.")
    offsets = tokenizer(texts, return_offsets_mapping=True)["offset_mapping"]
    masks = []
    for index, ((span_start, span_end), row_offsets, row_ids) in enumerate(zip(spans, offsets, ids)):
        masks.append([a < span_end and b > span_start for a, b in row_offsets[: len(row_ids)]])
        if not any(masks[-1]):
            raise ValueError(f"capture: span ({span_start}, {span_end}) of text {index} covers no tokens of it: "
                             "give (start, end) character offsets inside the text.")
    return masks
