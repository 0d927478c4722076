"""Token labels for hallucination probes: from a reference answer, or from annotated character spans.

Liang & Wang (arXiv 2512.20949) and Obeso et al. (arXiv 2509.03531) turn annotated
entity spans into token labels: a token is hallucinated (1) when it lies in a span
judged wrong, else 0; an answer is hallucinated when any of its tokens is.

* :func:`reference_labels`: the demo world's checker. The answer's entity is its
  leading tokens up to the first stop word ("."); when it differs from the reference
  answer (the fact table), the entity's tokens are 1. Pass ``tokenizer=model.tokenizer``
  for subword tokenizers (``"ĠPar", "is"`` is the text ``" Paris"``).
* :func:`spans_to_token_labels`: for your own data, character spans
  ``(start, end, label)`` on an answer text mapped to its tokens through the fast
  tokenizer's offset mapping (a token is in a span when their characters overlap).

Example:
    >>> from steerlab.world.tokenizer import build_tokenizer
    >>> from steerlab.world.world import generate_world
    >>> tokenizer = build_tokenizer(generate_world(seed=0))
    >>> labels, answer = spans_to_token_labels("the food was great .", [(13, 18, 1)], tokenizer)
    >>> labels.tolist(), answer
    ([0, 0, 0, 1, 0], 1)
    >>> reference_labels(["draimmir", ".", "teshan", "."], [0, 0, 1, 1], ["draimmir", "sokdrouk"])
    TokenLabels(token=array([0, 0, 1, 0]), answer=array([0, 1]))
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np


class TokenLabels(NamedTuple):
    """``token [n_tokens]`` 0/1 per generated token and ``answer [n_answers]`` 0/1 per answer."""

    token: np.ndarray
    answer: np.ndarray


def reference_labels(tokens: Sequence[str], answer_index: np.ndarray, references: Sequence[str],
                     stop_words: Sequence[str] = (".",), tokenizer: Any = None) -> TokenLabels:
    """Label each answer's entity tokens against its reference answer (demo world checker).

    Args:
        tokens: [n_tokens] token strings (``GeneratedTokens.tokens``).
        answer_index: [n_tokens] answer of each token (``GeneratedTokens.answer_index``).
        references: [n_answers] the right answer of each question (``QADataset.answers``).
        stop_words: the texts of tokens that end the entity span.
        tokenizer: the model's tokenizer (``model.tokenizer``), to turn token strings into text
            (``convert_tokens_to_string``: ``["ĠPar", "is"]`` -> ``" Paris"``). Required when the tokens
            carry subword markers (``Ġ`` of byte-level BPE, ``▁`` of SentencePiece); without it, the
            entity is its tokens joined by spaces (word-level tokenizers such as the demo world's).

    An answer whose entity span is empty (it starts with a stop word) or that produced no
    token at all is wrong: every one of its tokens is labelled 1. Texts are compared
    case-insensitively, surrounding whitespace stripped.
    """
    answer_index = np.asarray(answer_index)
    if len(tokens) != len(answer_index):
        raise ValueError(f"tokens has {len(tokens)} entries but answer_index has {len(answer_index)}.")
    if len(answer_index) and answer_index.max() >= len(references):
        raise ValueError(f"answer_index goes up to {answer_index.max()} but there are {len(references)} references: "
                         "pass one reference per prompt.")
    to_text = _token_text(tokens, tokenizer)
    token_labels = np.zeros(len(tokens), dtype=np.int64)
    answer_labels = np.ones(len(references), dtype=np.int64)  # no token at all: wrong
    for answer, reference in enumerate(references):
        rows = np.flatnonzero(answer_index == answer)
        if len(rows) == 0:
            continue
        words = [tokens[i] for i in rows]
        end = next((j for j, word in enumerate(words) if to_text([word]).strip() in stop_words), len(words))
        entity = to_text(words[:end]).strip().lower()
        wrong = entity != reference.strip().lower()
        answer_labels[answer] = int(wrong)
        if wrong:
            token_labels[rows[:end] if end > 0 else rows] = 1
    return TokenLabels(token_labels, answer_labels)


SUBWORD_MARKERS = ("Ġ", "▁")  # byte-level BPE (GPT-2, Llama 3) and SentencePiece (Llama 2, Gemma) word starts


def _token_text(tokens: Sequence[str], tokenizer: Any) -> Callable[[Sequence[str]], str]:
    """A function from a run of token strings to its text: the tokenizer's own, else joined by spaces."""
    if tokenizer is not None:
        return tokenizer.convert_tokens_to_string
    marked = next((token for token in tokens if any(marker in token for marker in SUBWORD_MARKERS)), None)
    if marked is not None:
        raise ValueError(f"Token {marked!r} carries a subword marker: joining token strings with spaces would mark "
                         "every answer wrong. Pass tokenizer=model.tokenizer to reference_labels.")
    return " ".join


def spans_to_token_labels(text: str, spans: Sequence[tuple[int, int, int]], tokenizer: Any, *,
                          add_special_tokens: bool = False) -> tuple[np.ndarray, int]:
    """Token labels ``[n_tokens]`` of ``tokenizer(text)`` from character spans, and the whole-answer label.

    Args:
        text: the answer text.
        spans: ``(start_char, end_char, label)`` with label 1 = hallucinated, 0 = checked
            and right; characters outside every span are 0. Overlapping spans: 1 wins.
        tokenizer: a fast (Rust-backed) Hugging Face tokenizer, for the offset mapping.
        add_special_tokens: tokenise as ``tokenizer(text, add_special_tokens=...)``. False
            (the default) matches :func:`~steerlab.hallucination.generation.capture_answers`;
            special tokens (empty offsets) are always 0.

    Returns:
        ``(labels [n_tokens] int64, answer_label)`` where ``answer_label = max(labels)``
        (0 for a text without tokens).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("spans_to_token_labels needs a fast tokenizer (offset mapping): load it with use_fast=True.")
    for span in spans:
        if len(span) != 3:
            raise ValueError(f"Each span must be (start_char, end_char, label), got {span!r}.")
        start, end, label = span
        if not 0 <= start < end <= len(text):
            raise ValueError(f"Span {span!r} is outside the text (length {len(text)}) or empty: "
                             "use 0 <= start < end <= len(text).")
        if label not in (0, 1):
            raise ValueError(f"Span label must be 0 or 1, got {label!r} in {span!r}.")
    offsets = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)["offset_mapping"]
    labels = np.zeros(len(offsets), dtype=np.int64)
    for i, (a, b) in enumerate(offsets):
        if b > a:  # special tokens have empty offsets
            labels[i] = max((label for start, end, label in spans if a < end and b > start), default=0)
    return labels, int(labels.max()) if len(labels) else 0
