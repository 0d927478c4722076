"""Which token positions of a padded batch become rows of an activation matrix.

Works for either padding side: real tokens are found from the attention mask.

* ``"last"``: the last real token of each text -> one row per text;
* ``"mean"``: the mean over real tokens, or over a token mask (a character span) -> one row per text;
* ``int`` k: the k-th real token (negative counts from the end) -> one row per text;
* ``"all"``: every real token -> one row per token, sequence by sequence.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Sequence, Union

import einops
import torch

Position = Union[str, int]
CAPTURE_POSITIONS = ("last", "mean", "all")


def validate_position(position: Position) -> Position:
    """``position`` as capture uses it: one of :data:`CAPTURE_POSITIONS`, or a plain int (numpy ints accepted)."""
    if isinstance(position, str) and position in CAPTURE_POSITIONS:
        return position
    if not isinstance(position, (str, bool)) and hasattr(position, "__index__"):
        try:
            return operator.index(position)
        except TypeError:  # e.g. a multi-element array
            pass
    raise ValueError(f"Unknown position {position!r}: use 'last', 'mean', 'all' or an int token index.")


def check_token_index(position: Position, lengths: Sequence[int]) -> None:
    """Before any forward pass: an int ``position`` must be a real token of every text (``lengths`` in tokens)."""
    if isinstance(position, str) or not lengths:
        return
    shortest = min(lengths)
    if not -shortest <= position < shortest:
        text = list(lengths).index(shortest)
        raise ValueError(f"Token index {position} is outside a text of {shortest} tokens (text {text}): "
                         f"use -{shortest}..{shortest - 1}, or position='last'.")


@dataclass
class PositionSelector:
    """Selects rows from ``[batch, pos, d_model]`` activations of one batch.

    Build it once per batch with :meth:`for_batch`; ``select`` is then cheap per layer.
    """

    position: Position
    index: torch.Tensor | None = None  # [batch] token position, for last / int
    weights: torch.Tensor | None = None  # [batch, pos] normalised, for mean
    token_mask: torch.Tensor | None = None  # [batch, pos] bool, for all

    @classmethod
    def for_batch(cls, position: Position, attention_mask: torch.Tensor,
                  pool_mask: torch.Tensor | None = None) -> "PositionSelector":
        """``attention_mask`` ``[batch, pos]``; ``pool_mask`` (optional, for ``"mean"``) marks a span's tokens."""
        mask = attention_mask.bool()
        arange = torch.arange(mask.shape[1], device=mask.device)
        if position == "all":
            return cls(position, token_mask=mask)
        if position == "mean":
            pooled = mask if pool_mask is None else mask & pool_mask.bool()
            counts = pooled.sum(dim=1, keepdim=True)
            if (counts == 0).any():
                raise ValueError("A span covers no tokens of its text: check the character spans.")
            return cls(position, weights=pooled.float() / counts)
        last = torch.where(mask, arange, -1).max(dim=1).values
        if position == "last":
            return cls(position, index=last)
        lengths = mask.sum(dim=1)
        first = last - lengths + 1
        index = first + position if position >= 0 else last + 1 + position
        if (index < first).any() or (index > last).any():
            shortest = int(lengths.min())
            raise ValueError(f"Token index {position} is outside a text of {shortest} tokens: "
                             f"use -{shortest}..{shortest - 1}, or position='last'.")
        return cls(position, index=index)

    @property
    def n_rows(self) -> int:
        if self.token_mask is not None:
            return int(self.token_mask.sum())
        return int((self.index if self.index is not None else self.weights).shape[0])

    def select(self, activation: torch.Tensor) -> torch.Tensor:
        """``[batch, pos, d_model]`` -> ``[rows, d_model]``."""
        if self.token_mask is not None:
            return activation[self.token_mask]
        if self.weights is not None:
            return einops.einsum(activation, self.weights.to(activation.dtype), "b p d, b p -> b d")
        return activation[torch.arange(activation.shape[0], device=activation.device), self.index]

    def row_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``"all"``: (sequence index within the batch, token index among real tokens) per row."""
        assert self.token_mask is not None
        sequence, column = self.token_mask.nonzero(as_tuple=True)
        first = self.token_mask.float().argmax(dim=1)
        return sequence, column - first[sequence]
