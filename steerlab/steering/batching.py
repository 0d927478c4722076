"""Many steering settings in one batched forward: the texts repeated once per (vector, alpha).

A sweep or an alpha search evaluates the same texts under many settings. One forward per
setting is thousands of tiny passes on a small model, where per-call overhead and thread
synchronisation cost more than the arithmetic (issue 16: 21.6 s on one thread, 207 s on two
on a busy machine). Here a forward holds ``k`` settings x ``n`` texts (rows ``s * n + t``):
every vector of the group is attached once with per-row alphas (:func:`steer` with a
``[n_vectors, rows]`` tensor), zero on the rows of the other settings, which adds exactly
nothing there. The numbers equal one forward per setting up to float summation order (~1e-6).
The blocks before the first steered layer are the same under every setting: they run once per
group of texts, and each batched forward starts from their output (``adapter.forward_from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.models.tokenization import TokenBatch, encode, pad
from steerlab.steering.injection import steer
from steerlab.steering.vector import SteeringVector

MAX_ROWS = 512  # rows (settings x texts) per forward at most
LOGIT_BUDGET = 2 ** 25  # logit elements (rows x positions x vocabulary) per forward at most: 128 MB in float32


@dataclass(frozen=True)
class Setting:
    """One steering setting: ``vector`` added with coefficient ``alpha`` (None: unsteered)."""

    vector: SteeringVector | None
    alpha: float = 0.0


@dataclass
class Chunk:
    """One batched forward: ``settings`` (indices into the caller's list) x the texts ``texts``.

    ``logits`` is ``[k, n, pos, vocab]`` (float32; setting, text, position); ``batch`` is the
    right-padded batch of the ``n`` texts (``input_ids`` / ``attention_mask`` ``[n, pos]``);
    ``reference`` (when asked for) the unsteered next-token log-probs ``[n, pos, vocab]``.
    """

    settings: range
    texts: slice
    logits: torch.Tensor
    batch: TokenBatch
    reference: torch.Tensor | None = None


def steered_chunks(model: ModelAdapter, texts: Sequence[str], settings: Sequence[Setting], *,
                   reference: bool = False, max_rows: int = MAX_ROWS, **steer_kwargs: Any) -> Iterator[Chunk]:
    """The logits of every text under every setting, a chunk (group of settings x group of texts) at a time.

    ``steer_kwargs`` (positions, norm_units) apply to every setting; mode is always 'add'.
    With ``reference``, each chunk also carries the unsteered log-probs of its texts (one plain
    forward per group of texts). Texts longer than the model's context are truncated with a
    warning, as by ``capture``.
    """
    ids = encode(model.tokenizer, list(texts), max_length=model.context_length)
    first = _first_steered_layer(model, settings)
    for text_slice, per_forward in _text_groups(ids, len(model.tokenizer), max_rows):
        batch = pad(ids[text_slice], pad_id=model.pad_token_id, side="right")
        unsteered, resid_pre = None, None
        # Every setting leaves the blocks before `first` as they are: their output is read once per group
        # of texts (beside the reference when there is one) and the steered forwards start from it.
        with torch.no_grad():
            if reference and first > 0:
                logits, resid_pre = model.forward_keeping_input(batch, first)
                unsteered = torch.log_softmax(logits.float(), dim=-1)
            elif reference:
                unsteered = torch.log_softmax(model.forward(batch).float(), dim=-1)
            elif first > 0:
                resid_pre = model.layer_input(batch, first)
        for start in range(0, len(settings), per_forward):
            group = range(start, min(start + per_forward, len(settings)))
            logits = _forward_group(model, batch, [settings[i] for i in group], steer_kwargs, first, resid_pre)
            yield Chunk(group, text_slice, logits, batch, unsteered)


def _first_steered_layer(model: ModelAdapter, settings: Sequence[Setting]) -> int:
    """The first block any setting's vector changes (every site of a layer is in its block; 0 with none)."""
    layers = [point.layer for setting in settings if setting.vector is not None
              for point in setting.vector.points(model.n_layers)]
    return min(layers, default=0)


def _text_groups(ids: list[list[int]], vocabulary: int, max_rows: int) -> Iterator[tuple[slice, int]]:
    """``(texts, settings per forward)``: as many texts as fit one forward, then as many settings of them."""
    start = 0
    while start < len(ids):
        end, width = start, 0
        while end < len(ids):
            wider = max(width, len(ids[end]))
            if end > start and ((end + 1 - start) > max_rows or (end + 1 - start) * wider * vocabulary > LOGIT_BUDGET):
                break
            end, width = end + 1, wider
        rows_cap = max(1, min(max_rows, LOGIT_BUDGET // max(1, width * vocabulary)))
        yield slice(start, end), max(1, rows_cap // (end - start))
        start = end


def _forward_group(model: ModelAdapter, batch: TokenBatch, group: list[Setting], steer_kwargs: dict, first: int = 0,
                   resid_pre: torch.Tensor | None = None) -> torch.Tensor:
    """``[k, n, pos, vocab]`` float32 logits of the ``n`` texts under each of the ``k`` settings (from block ``first``
    on, with ``resid_pre`` ``[n, pos, d_model]`` its unsteered input, when given)."""
    k, n = len(group), batch.input_ids.shape[0]
    repeated = TokenBatch(batch.input_ids.repeat(k, 1), batch.attention_mask.repeat(k, 1), batch.padding_side)
    vectors: list[SteeringVector] = []
    for setting in group:  # one entry per distinct vector object, in order
        if setting.vector is not None and not any(setting.vector is seen for seen in vectors):
            vectors.append(setting.vector)
    def forward() -> torch.Tensor:
        if resid_pre is None:
            return model.forward(repeated)
        return model.forward_from(repeated, first, resid_pre.repeat(k, 1, 1))

    with torch.no_grad():
        if not vectors:
            logits = forward()
        else:
            alphas = torch.zeros(len(vectors), k * n, dtype=torch.float32)
            for slot, setting in enumerate(group):
                if setting.vector is not None:
                    index = next(i for i, seen in enumerate(vectors) if seen is setting.vector)
                    alphas[index, slot * n:(slot + 1) * n] = float(setting.alpha)
            with steer(model, vectors, alpha=alphas, **steer_kwargs):
                logits = forward()
    return logits.float().reshape(k, n, *logits.shape[1:])
