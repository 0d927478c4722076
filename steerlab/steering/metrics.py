"""Measurements of a model's behaviour, run inside or outside a ``steer`` block.

Each function runs plain forward passes through the adapter, so whatever steering
is active applies. No LLM judge: judges are plain functions ``list[str] -> list[float]``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from steerlab.models.adapter import ModelAdapter

Judge = Callable[[list[str]], Sequence[float]]


def word_token_id(tokenizer: Any, word: str, *, exact: bool = False) -> int:
    """The single token id of ``word`` as the next token after a prompt.

    * ``word`` starting with whitespace (``" true"``), or ``exact=True``: exactly that string,
      which must be one token (use ``exact=True`` for a token with no leading space, e.g. the
      first token of a chat answer, ``"True"`` after ``"<|im_start|>assistant\\n"``).
    * a bare word (``"true"``): the token that follows a prompt not ending in a space
      (``"... This statement is"``), i.e. the space-prefixed form ``" true"`` (GPT-2 and
      SentencePiece tokenizers: SmolLM2 " true" is 2629, "true" is 10469). Only when that form
      is not one token is the bare word itself used.
    """
    candidates = (word,) if exact or word[:1].isspace() else (" " + word, word)
    for candidate in candidates:
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return ids[0]
    raise ValueError(f"{word!r} is not a single token for this tokenizer (tried {list(candidates)!r}); "
                     "choose single-token verdict words.")


def last_token_logprobs(model: ModelAdapter, prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """``[n_prompts, vocab]`` log-probabilities of the next token after each prompt."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = model.tokenize(prompts[start:start + batch_size])
            logits = model.forward(batch).float()
            last = batch.lengths.to(logits.device) - 1  # right padding: last real token
            rows.append(torch.log_softmax(logits[torch.arange(len(last)), last], dim=-1).cpu())
    return torch.cat(rows)


def logprob_difference(model: ModelAdapter, prompts: Sequence[str], positive_word: str, negative_word: str,
                       batch_size: int = 32, *, exact: bool = False) -> torch.Tensor:
    """``[n_prompts]``: log P(positive_word) - log P(negative_word) as the next token.

    For truth: prompts are verdict prompts and the words the true/false verdict words. Each word
    maps to a token as :func:`word_token_id` says (``exact`` passed on).
    """
    logprobs = last_token_logprobs(model, prompts, batch_size)
    positive = word_token_id(model.tokenizer, positive_word, exact=exact)
    negative = word_token_id(model.tokenizer, negative_word, exact=exact)
    return logprobs[:, positive] - logprobs[:, negative]


def token_logprobs(model: ModelAdapter, texts: Sequence[str], batch_size: int = 32) -> list[torch.Tensor]:
    """Per text, ``[n_tokens - 1, vocab]`` next-token log-probabilities at its real tokens."""
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = model.tokenize(texts[start:start + batch_size])
            logprobs = torch.log_softmax(model.forward(batch).float(), dim=-1).cpu()
            for row, length in zip(logprobs, batch.lengths.tolist()):
                out.append(row[: length - 1])
    return out


def kl_divergence(reference: list[torch.Tensor], steered: list[torch.Tensor]) -> float:
    """Mean over tokens of KL(reference || steered) between next-token distributions."""
    reference_all, steered_all = torch.cat(reference), torch.cat(steered)
    if reference_all.numel() == 0:
        raise ValueError("The neutral texts need at least two tokens each to compare next-token distributions.")
    kl = (reference_all.exp() * (reference_all - steered_all)).sum(dim=-1)
    return float(kl.mean())


def next_token_sums(logprobs: torch.Tensor, reference: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per setting, sums over the predicted tokens of a right-padded batch: ``(kl [k], nll [k], n_tokens)``.

    ``logprobs`` ``[k, n, pos, vocab]`` are next-token log-probs of the ``n`` texts under ``k``
    settings, ``reference`` ``[n, pos, vocab]`` the unsteered ones; ``input_ids`` and
    ``attention_mask`` are ``[n, pos]``. Dividing by ``n_tokens`` (summed over chunks) gives
    :func:`kl_divergence` and :func:`mean_nll` of each setting. One setting at a time, so that
    no temporary is larger than ``[n, pos, vocab]``.
    """
    predicted = attention_mask[:, 1:].bool()  # position p predicts token p + 1, a real token
    reference = reference[:, :-1]
    probabilities = reference.exp()
    zero = torch.zeros((), dtype=reference.dtype)  # padding may hold anything, NaN included: never read
    kl, nll = torch.empty(logprobs.shape[0]), torch.empty(logprobs.shape[0])
    for setting, steered in enumerate(logprobs):
        kl[setting] = torch.where(predicted, (probabilities * (reference - steered[:, :-1])).sum(dim=-1), zero).sum()
        nll[setting] = next_token_nll(steered, input_ids, attention_mask)[0]
    return kl, nll, int(predicted.sum())


def next_token_nll(logprobs: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, int]:
    """``(sum, n_tokens)``: negative log-likelihood summed over the predicted tokens of a right-padded batch,
    from its next-token ``logprobs`` ``[n, pos, vocab]`` (``input_ids``, ``attention_mask`` ``[n, pos]``)."""
    predicted = attention_mask[:, 1:].bool()  # position p predicts token p + 1, a real token
    picked = -logprobs[:, :-1].gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [n, pos - 1]
    return torch.where(predicted, picked, torch.zeros((), dtype=picked.dtype)).sum(), int(predicted.sum())


def last_token_columns(logits: torch.Tensor, attention_mask: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
    """``[k, n, len(token_ids)]``: log-probs of ``token_ids`` after each text's last real token.

    ``logits`` ``[k, n, pos, vocab]`` of ``n`` right-padded texts under ``k`` settings.
    """
    last = attention_mask.sum(dim=1) - 1  # [n]
    at_last = logits[:, torch.arange(len(last)), last]  # [k, n, vocab]
    return torch.log_softmax(at_last, dim=-1)[..., list(token_ids)]


def mean_nll(model: ModelAdapter, texts: Sequence[str], logprobs: list[torch.Tensor]) -> float:
    """Mean next-token negative log-likelihood of ``texts`` from their ``token_logprobs``."""
    ids = [model.tokenizer(text)["input_ids"] for text in texts]
    return float(torch.cat([-row[torch.arange(len(row)), torch.tensor(row_ids[1:len(row) + 1], dtype=torch.long)]
                            for row, row_ids in zip(logprobs, ids)]).mean())


def perplexity(model: ModelAdapter, texts: Sequence[str], batch_size: int = 32) -> float:
    """Perplexity of the texts under the model (as currently steered)."""
    return math.exp(mean_nll(model, texts, token_logprobs(model, texts, batch_size)))


def word_rate(generations: Sequence[str], words: Sequence[str]) -> float:
    """Fraction of generated words that are in ``words`` (a lexicon judge)."""
    vocabulary = {word.lower() for word in words}
    tokens = [token.strip(".,!?;:").lower() for text in generations for token in text.split()]
    return sum(token in vocabulary for token in tokens) / max(len(tokens), 1)


def probe_scores(model: ModelAdapter, probe: Any, texts: Sequence[str], layer: int | None = None,
                 batch_size: int = 32) -> torch.Tensor:
    """``[n_texts]``: a probe's logit on the activations it was trained on (site, layer, position)."""
    from steerlab.capture import capture

    layers = list(getattr(probe, "layers_", None) or [])
    layer = layer if layer is not None else (layers[0] if len(layers) == 1 else None)
    if layer is None:
        raise ValueError("Pass layer=: the probe does not record a single layer.")
    acts = capture(model, texts, layers=[layer], site=getattr(probe, "site", None) or "resid_post",
                   position=getattr(probe, "position", None) or "last", batch_size=batch_size, progress=False)
    scores = probe.decision_function(acts.values[:, 0].numpy())
    scores = torch.as_tensor(scores, dtype=torch.float32)
    if scores.ndim == 2:  # a per-layer probe: take the column of this layer
        scores = scores[:, layers.index(layer)]
    return scores
