"""Input and output scores of SAE features (Arad, Mueller & Belinkov, "SAEs Are Good for
Steering - If You Select the Right Features").

* input score: how well a feature's top-activating inputs match the concept. Here: among
  the ``top_n`` tokens where it fires most, the share that come from texts with the
  concept's label.
* output score: how much amplifying the feature raises the concept's tokens. Here: add
  ``strength * unit(W_dec[f])`` at the SAE's site on every token of neutral prompts and
  measure the change of ``log P(concept tokens) - log P(opposite tokens)`` for the next
  token (the model's actual output, not the logit lens), averaged over prompts.

The paper finds that high input and high output scores rarely coincide, and that
selecting features by output score makes SAE steering competitive with supervised
directions. :mod:`steerlab.sae.compare` tests that on the demo model.

Example:
    >>> scores = output_scores(model, sae, ["the food was"] * 4,                 # doctest: +SKIP
    ...                        positive_words=["great"], negative_words=["awful"])
    >>> int(scores.argmax())                  # the feature that most raises "great"  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from steerlab.sae.activations import site_activations
from steerlab.sae.loading import check_sae
from steerlab.steering.metrics import word_token_id

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike


def input_scores(token_latents: Any, token_labels: Any, top_n: int = 20) -> np.ndarray:
    """``[d_sae]``: share of each feature's ``top_n`` most-activating tokens whose text has label 1.

    Args:
        token_latents: ``[n_tokens, d_sae]`` latents of every token of labelled texts.
        token_labels: ``[n_tokens]`` the label of the text each token belongs to.
        top_n: how many top tokens count (fewer if the feature fires on fewer; NaN if never).
    """
    Z = torch.as_tensor(np.asarray(token_latents), dtype=torch.float32) if not torch.is_tensor(token_latents) \
        else token_latents.float()
    labels = torch.as_tensor(np.asarray(token_labels), dtype=torch.float32)
    n = min(top_n, len(Z))
    values, rows = Z.topk(n, dim=0)  # [n, d_sae]
    active = values > 0
    hits = (labels[rows] * active).sum(dim=0)
    count = active.sum(dim=0).float()
    return torch.where(count > 0, hits / count.clamp_min(1), torch.nan).numpy()


def _set_logprob(logprobs: torch.Tensor, ids: list[int]) -> torch.Tensor:
    return torch.logsumexp(logprobs[..., ids], dim=-1)


@torch.no_grad()
def output_scores(model: ModelLike, sae: SAE, prompts: Sequence[str], positive_words: Sequence[str],
                  negative_words: Sequence[str], features: Sequence[int] | None = None, strength: float = 1.0,
                  batch_features: int = 64, batch_size: int = 256, skip_first: bool = True) -> np.ndarray:
    """``[n_features]``: mean rise of ``log P(positive) - log P(negative)`` next-token when each feature is amplified.

    Args:
        prompts: neutral prompts whose next token could be a concept word.
        positive_words, negative_words: single-token words of the concept and of its opposite.
        features: which latents (default: all).
        strength: the added vector's norm, in units of the median token norm at the site on
            ``prompts`` (1.0 doubles a typical token's norm at most).
        batch_features: features steered per round (``batch_features * len(prompts)`` rows).
        batch_size: rows per forward pass (a round is split into forwards of this many rows).
        skip_first: add nothing at each prompt's first token (the attention sink; default), as the
            SAE hooks do; the median norm is taken without it too.
    """
    point = check_sae(sae, model)
    features = list(range(sae.cfg.d_sae)) if features is None else [int(f) for f in features]
    positive = [word_token_id(model.tokenizer, w) for w in positive_words]
    negative = [word_token_id(model.tokenizer, w) for w in negative_words]
    norm = float(site_activations(model, sae, prompts, skip_first=skip_first).norm(dim=-1).median())
    directions = sae.W_dec.detach().float().cpu()
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12) * strength * norm
    first = 1 if skip_first else 0
    baseline = _margin(model, list(prompts), positive, negative, None, point, batch_size, first).mean()
    scores = []
    for start in range(0, len(features), batch_features):
        chunk = features[start:start + batch_features]
        per_row = directions[chunk].repeat_interleave(len(prompts), dim=0)  # [chunk * prompts, d]
        rows = [prompt for _ in chunk for prompt in prompts]  # feature-major, matching per_row
        margins = _margin(model, rows, positive, negative, per_row, point, batch_size, first)
        scores.append(margins.reshape(len(chunk), len(prompts)).mean(dim=1) - baseline)
    return torch.cat(scores).numpy()


def _margin(model: ModelLike, prompts: list[str], positive: list[int], negative: list[int],
            per_row: torch.Tensor | None, point: Any, batch_size: int, first: int = 1) -> torch.Tensor:
    """``[n_prompts]`` next-token ``log P(positive set) - log P(negative set)``, with ``per_row[i]`` added at row i
    from token ``first`` on.

    Runs ``batch_size`` rows per forward pass (``per_row`` is ``[n_prompts, d_model]`` or None).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return torch.cat([_margin_batch(model, prompts[start:start + batch_size], positive, negative,
                                    None if per_row is None else per_row[start:start + batch_size], point, first)
                      for start in range(0, len(prompts), batch_size)])


def _margin_batch(model: ModelLike, prompts: list[str], positive: list[int], negative: list[int],
                  per_row: torch.Tensor | None, point: Any, first: int) -> torch.Tensor:
    """:func:`_margin` for one forward pass."""
    batch = model.tokenize(prompts)
    if per_row is None:
        logits = model.forward(batch)
    else:
        with model.token_positions() as tracker:
            def add(h: torch.Tensor) -> torch.Tensor:
                selected = (tracker.real & (tracker.position >= first)).unsqueeze(-1)  # [batch, pos, 1]
                return h + selected * per_row.to(h.device, h.dtype).unsqueeze(1)
            logits = model.forward(batch, [(model.point(point.site, point.layer), add)])
    last = batch.lengths.to(logits.device) - 1
    logprobs = torch.log_softmax(logits[torch.arange(len(last)), last].float(), dim=-1).cpu()
    return _set_logprob(logprobs, positive) - _set_logprob(logprobs, negative)
