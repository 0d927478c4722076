"""``capture``: activations of chosen sites, layers and token positions, on any backend."""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from steerlab.capture.activations import Activations
from steerlab.capture.positions import Position, PositionSelector, validate_position
from steerlab.capture.store import ShardStore
from steerlab.models.adapter import ModelAdapter, load_model
from steerlab.models.tokenization import encode, pad
from steerlab.sites import resolve_layers, validate_site


def capture(
    model: Any,
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
            same capture resumes it; a directory holding anything else is refused.
        spans: ``(start, end)`` character spans per text to pool over (``position="mean"``).
        metadata: per-text lists (labels, domains...) that travel with the activations.
        chat_template: wrap each text in the tokenizer's chat template as a user turn.
        strict: raise instead of truncating texts longer than the context.
        dtype: dtype of the stored activations (float32 by default).
        shard_size: texts per shard when streaming to ``out``.
        progress: show a tqdm progress bar.

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
    adapter = model if isinstance(model, ModelAdapter) else load_model(model)
    validate_site(site)
    position = validate_position(position)
    layer_list = resolve_layers(layers, adapter.n_layers)
    points = [adapter.point(site, layer) for layer in layer_list]
    ids = encode(adapter.tokenizer, texts, max_length=adapter.context_length, strict=strict, chat_template=chat_template)
    texts = list(texts)
    metadata = _check_metadata(metadata, len(texts))
    pool_masks = _span_token_masks(adapter.tokenizer, texts, spans, ids, position, chat_template)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")

    header = {"model": adapter.name, "site": site, "layers": layer_list, "position": position,
              "d_model": adapter.d_model, "dtype": str(dtype).removeprefix("torch.")}
    store = ShardStore.create_or_resume(out, _versioned(header), texts, metadata) if out is not None else None
    chunk = shard_size if store is not None else len(texts)
    ranges = [(start, min(start + chunk, len(texts))) for start in range(0, len(texts), chunk)]
    done = store.finished_text_ranges() if store is not None else set()

    pieces: list[dict[str, torch.Tensor]] = []
    bar = tqdm(total=len(texts), desc=f"capture {site}", unit="text", disable=not progress)
    with torch.no_grad():
        for start, end in ranges:
            if (start, end) in done:
                bar.update(end - start)
                continue
            tensors = _capture_range(adapter, ids, pool_masks, start, end, points, position, batch_size, dtype, bar)
            _warn_non_finite(tensors["activations"], layer_list, start)
            if store is not None:
                store.write_shard(start, end, tensors)
            else:
                pieces.append(tensors)
    bar.close()

    if store is not None:
        store.mark_complete()
        return Activations.load(store.directory)
    tensors = pieces[0]
    return Activations(tensors["activations"], layers=layer_list, site=site, position=position,
                       model_name=adapter.name, d_model=adapter.d_model, texts=texts, metadata=metadata,
                       sequence_index=tensors.get("sequence_index"), token_index=tensors.get("token_index"))


def _warn_non_finite(activations: torch.Tensor, layers: list[int], first_text: int) -> None:
    """NaN/inf usually means a half-precision overflow; say where, since probes will refuse them."""
    finite = torch.isfinite(activations).flatten(start_dim=2).all(dim=2)  # [rows, n_layers]
    if not finite.all():
        bad_layers = [layer for layer, ok in zip(layers, finite.all(dim=0).tolist()) if not ok]
        warnings.warn(f"NaN or inf activations at layer(s) {bad_layers} (texts from index {first_text}): the model "
                      "overflowed. Load it with dtype=torch.float32 or torch.bfloat16.", stacklevel=3)


def _versioned(header: dict[str, Any]) -> dict[str, Any]:
    from steerlab import __version__

    return {**header, "steerlab_version": __version__}


def _capture_range(adapter: ModelAdapter, ids: list[list[int]], pool_masks: list[list[bool]] | None,
                   start: int, end: int, points: list, position: Position, batch_size: int,
                   dtype: torch.dtype, bar: tqdm) -> dict[str, torch.Tensor]:
    """Activations of texts ``start:end`` as a shard's tensors, rows in text order."""
    order = list(range(start, end))
    if position != "all":  # rows are texts: batch by length, restore the order afterwards
        order.sort(key=lambda i: len(ids[i]))
    rows, sequence_index, token_index = [], [], []
    for batch_start in range(0, len(order), batch_size):
        members = order[batch_start:batch_start + batch_size]
        batch = pad([ids[i] for i in members], pad_id=adapter.pad_token_id, side="right")
        pool = None
        if pool_masks is not None:
            pool = pad([[int(flag) for flag in pool_masks[i]] for i in members], pad_id=0, side="right").input_ids
        selector = PositionSelector.for_batch(position, batch.attention_mask, pool)
        buffer = torch.empty((selector.n_rows, len(points), adapter.d_model), dtype=dtype)

        def record(slot: int):
            def fn(activation: torch.Tensor) -> None:
                buffer[:, slot] = selector.select(activation).to("cpu", dtype)
            return fn

        adapter.forward(batch, [(point, record(slot)) for slot, point in enumerate(points)])
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
    checked = {}
    for key, values in (metadata or {}).items():
        values = [v.item() if hasattr(v, "item") else v for v in values]
        if len(values) != n_texts:
            raise ValueError(f"metadata[{key!r}] has {len(values)} entries for {n_texts} texts: give one per text.")
        checked[key] = values
    return checked


def _span_token_masks(tokenizer: Any, texts: list[str], spans: Sequence[tuple[int, int]] | None,
                      ids: list[list[int]], position: Position, chat_template: bool) -> list[list[bool]] | None:
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
    for (span_start, span_end), row_offsets, row_ids in zip(spans, offsets, ids):
        masks.append([a < span_end and b > span_start for a, b in row_offsets[: len(row_ids)]])
    return masks
