"""Tokenisation shared by every backend: the tokenizer's own ids, padded by steerlab.

steerlab pads itself (instead of ``tokenizer(..., padding=True)``) so that it never
mutates the user's tokenizer and controls the padding side per use: forward passes
pad on the RIGHT (causal attention keeps real tokens blind to trailing pads, and
absolute positions stay 0..len-1 on every backend); generation pads on the LEFT.
No backend adds a BOS token that ``tokenizer(texts)`` would not add.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

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


class PackedIds(Sequence):
    """Token id rows stored flat: ids ``[total_tokens]`` (int32) and row ``offsets`` ``[n_rows + 1]``.

    About 4 bytes a token, where a list of Python ints costs ~40 (the ids of 100,000 short
    texts: 6 MB instead of ~65 MB, which a streamed capture's memory would otherwise grow by).
    Row ``i`` reads as a list of ints, as :func:`encode` gives them unpacked.
    """

    def __init__(self, flat: torch.Tensor, lengths: torch.Tensor):
        self.flat = flat
        self.lengths = lengths  # [n_rows] int64
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]]) -> "PackedIds":
        """Pack rows of ids (e.g. one tokenizer call's ``input_ids``)."""
        return cls(torch.tensor(list(itertools.chain.from_iterable(rows)), dtype=torch.int32),
                   torch.tensor([len(row) for row in rows], dtype=torch.long))

    @classmethod
    def concat(cls, parts: Sequence["PackedIds"]) -> "PackedIds":
        """The rows of ``parts``, in order."""
        return cls(torch.cat([part.flat for part in parts]), torch.cat([part.lengths for part in parts]))

    def truncated(self, max_length: int) -> "PackedIds":
        """Every row cut to its first ``max_length`` ids."""
        within = torch.arange(len(self.flat)) - torch.repeat_interleave(self.offsets[:-1], self.lengths)
        return PackedIds(self.flat[within < max_length], self.lengths.clamp(max=max_length))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> list[int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        index %= len(self)
        return self.flat[self.offsets[index]:self.offsets[index + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[index] for index in range(len(self)))

    def __repr__(self) -> str:
        return f"PackedIds(rows={len(self)}, tokens={len(self.flat)})"


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
    packed: bool = False,
) -> list[list[int]] | PackedIds:
    """Token ids per text, as ``tokenizer(text)`` gives them, truncated to ``max_length``.

    Texts longer than the context are truncated with a warning, or raise a ValueError
    when ``strict=True``. ``chat_template=True`` wraps each text as a user message and
    appends the generation prompt (the template supplies its own special tokens).
    ``packed=True`` returns the same rows as a :class:`PackedIds` (a tenth of the memory,
    packed chunk by chunk, so the lists of all texts never exist at once).
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
    chunks = (tokenizer(texts[start:start + _ENCODE_CHUNK], add_special_tokens=not chat_template)["input_ids"]
              for start in range(0, len(texts), _ENCODE_CHUNK))
    if packed:  # each chunk packed as it comes: the lists of all texts never exist at once
        ids = PackedIds.concat([PackedIds.from_rows(chunk) for chunk in chunks])
    else:
        ids = [row for chunk in chunks for row in chunk]
    lengths = ids.lengths.tolist() if packed else [len(row) for row in ids]
    if 0 in lengths:
        raise ValueError("A text tokenised to zero tokens (an empty string?): every text needs at least one token.")
    if max_length is not None:
        too_long = [i for i, length in enumerate(lengths) if length > max_length]
        if too_long:
            message = (
                f"{len(too_long)} text(s) exceed the model's context of {max_length} tokens "
                f"(first: index {too_long[0]}, {lengths[too_long[0]]} tokens)"
            )
            if strict:
                raise ValueError(message + ": shorten them, or pass strict=False to truncate.")
            warnings.warn(message + f"; truncated to the first {max_length} tokens.", stacklevel=3)
            ids = ids.truncated(max_length) if packed else [row[:max_length] for row in ids]
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
