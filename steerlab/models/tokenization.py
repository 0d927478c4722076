"""Tokenisation shared by every backend: the tokenizer's own ids, padded by steerlab.

steerlab pads itself (instead of ``tokenizer(..., padding=True)``) so that it never
mutates the user's tokenizer and controls the padding side per use: forward passes
pad on the RIGHT (causal attention keeps real tokens blind to trailing pads, and
absolute positions stay 0..len-1 on every backend); generation pads on the LEFT.
No backend adds a BOS token that ``tokenizer(texts)`` would not add.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

PaddingSide = Literal["left", "right"]
_ENCODE_CHUNK = 1024


@dataclass
class TokenBatch:
    """Padded token ids. ``input_ids`` and ``attention_mask`` are ``[batch, pos]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    padding_side: PaddingSide

    @property
    def lengths(self) -> torch.Tensor:
        """Number of real tokens per row, ``[batch]``."""
        return self.attention_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.padding_side)


def pad_token_id(tokenizer: Any) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS, else UNK.

    Most causal-LM tokenizers (GPT-2, Llama) have no pad token; padding positions are
    masked and never read, so which real token fills them does not matter.
    """
    for attribute in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attribute, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        "The tokenizer has no pad, eos or unk token, so batches cannot be padded. "
        "Set one before loading, e.g. tokenizer.pad_token = '<pad>' (after adding it to the vocabulary)."
    )


def encode(
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int | None,
    strict: bool = False,
    chat_template: bool = False,
) -> list[list[int]]:
    """Token ids per text, as ``tokenizer(text)`` gives them, truncated to ``max_length``.

    Texts longer than the context are truncated with a warning, or raise a ValueError
    when ``strict=True``. ``chat_template=True`` wraps each text as a user message and
    appends the generation prompt (the template supplies its own special tokens).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string: wrap it as [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("The list of texts is empty: pass at least one text.")
    if not all(isinstance(text, str) for text in texts):
        bad = next(type(text).__name__ for text in texts if not isinstance(text, str))
        raise TypeError(f"Every text must be a str, got a {bad}.")
    if chat_template:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("chat_template=True, but this tokenizer has no chat template; pass chat_template=False.")
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
            for text in texts
        ]
    # In chunks: a fast tokenizer's batch output holds rich per-text objects (tokens, offsets),
    # which for 100k texts would dominate a streamed capture's memory.
    ids = [row for start in range(0, len(texts), _ENCODE_CHUNK)
           for row in tokenizer(texts[start:start + _ENCODE_CHUNK], add_special_tokens=not chat_template)["input_ids"]]
    if any(len(row) == 0 for row in ids):
        raise ValueError("A text tokenised to zero tokens (an empty string?): every text needs at least one token.")
    if max_length is not None:
        too_long = [i for i, row in enumerate(ids) if len(row) > max_length]
        if too_long:
            message = (
                f"{len(too_long)} text(s) exceed the model's context of {max_length} tokens "
                f"(first: index {too_long[0]}, {len(ids[too_long[0]])} tokens)"
            )
            if strict:
                raise ValueError(message + ": shorten them, or pass strict=False to truncate.")
            warnings.warn(message + f"; truncated to the first {max_length} tokens.", stacklevel=3)
            ids = [row[:max_length] for row in ids]
    return ids


def pad(ids: Sequence[Sequence[int]], *, pad_id: int, side: PaddingSide) -> TokenBatch:
    """Pad token id lists into a :class:`TokenBatch`, ``[batch, max_len]``."""
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        input_ids[i, span] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, span] = 1
    return TokenBatch(input_ids, attention_mask, side)
