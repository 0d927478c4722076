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

from steerlab.models.tokenization import TokenBatch
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
                  batch_size: int = 256, skip_first: bool = True) -> np.ndarray:
    """``[n_features]``: mean rise of ``log P(positive) - log P(negative)`` next-token when each feature is amplified.

    Args:
        prompts: neutral prompts whose next token could be a concept word.
        positive_words, negative_words: single-token words of the concept and of its opposite.
        features: which latents (default: all).
        strength: the added vector's norm, in units of the median token norm at the site on
            ``prompts`` (1.0 doubles a typical token's norm at most).
        batch_size: rows per forward pass at most (as many features per forward as whole groups of
            ``prompts`` fit; at least one).
        skip_first: add nothing at each prompt's first token (the attention sink; default), as the
            SAE hooks do; the median norm is taken without it too.
    """
    point = check_sae(sae, model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    features = list(range(sae.cfg.d_sae)) if features is None else [int(f) for f in features]
    positive = [word_token_id(model.tokenizer, w) for w in positive_words]
    negative = [word_token_id(model.tokenizer, w) for w in negative_words]
    norm = float(site_activations(model, sae, prompts, skip_first=skip_first).norm(dim=-1).median())
    directions = sae.W_dec.detach().float().cpu()
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12) * strength * norm
    first = 1 if skip_first else 0
    # Every steered row repeats one of the prompts, unchanged before the SAE's layer: its input to that
    # layer is read once, in the unsteered forward, and each steered forward runs only the blocks from there on.
    base = model.tokenize(list(prompts))  # [P, pos], right-padded
    logits, resid_pre = model.forward_keeping_input(base, point.layer)
    baseline = _margins(model, base, logits, positive, negative).mean()
    n_prompts, per_forward = len(prompts), max(1, batch_size // len(prompts))  # whole prompt groups per forward
    scores = []
    for index in range(0, len(features), per_forward):
        chunk = features[index:index + per_forward]
        per_row = directions[chunk].repeat_interleave(n_prompts, dim=0)  # [chunk * P, d]: feature-major rows
        rows = TokenBatch(base.input_ids.repeat(len(chunk), 1), base.attention_mask.repeat(len(chunk), 1),
                          base.padding_side)
        with model.token_positions() as tracker:
            def add(h: torch.Tensor) -> torch.Tensor:
                selected = (tracker.real & (tracker.position >= first)).unsqueeze(-1)  # [rows, pos, 1]
                return h + selected * per_row.to(h.device, h.dtype).unsqueeze(1)
            logits = model.forward_from(rows, point.layer, resid_pre.repeat(len(chunk), 1, 1),
                                        [(model.point(point.site, point.layer), add)])
        margins = _margins(model, rows, logits, positive, negative)
        scores.append(margins.reshape(len(chunk), n_prompts).mean(dim=1) - baseline)
    return torch.cat(scores).numpy()


def _margins(model: ModelLike, batch: TokenBatch, logits: torch.Tensor, positive: list[int], negative: list[int]
             ) -> torch.Tensor:
    """``[rows]`` next-token ``log P(positive set) - log P(negative set)`` after each row's last real token."""
    last = batch.lengths.to(logits.device) - 1
    logprobs = torch.log_softmax(logits[torch.arange(len(last)), last].float(), dim=-1).cpu()
    return _set_logprob(logprobs, positive) - _set_logprob(logprobs, negative)
