"""SAE latents of texts: capture the SAE's own site with steerlab, then ``sae.encode``.

The first token of every text (BOS where the tokenizer adds one, as the demo model's does,
else the first word: steerlab adds no BOS to GPT-2-style tokenizers) is an attention sink
with a norm several times the others' (3x on the demo model, ~130x on SmolLM2-135M's layer 15).
It dominates any statistic it enters: the shipped demo SAEs explain 0.43-0.86 of the variance
with it and 0.96-0.98 without. So every SAE helper takes ``skip_first`` (default True): training
(:func:`~steerlab.sae.training.train_sae`), quality (:func:`~steerlab.sae.quality.sae_quality`),
the splice and edit hooks (:mod:`steerlab.sae.editing`: the first token is left untouched),
output scores and the functions here (as sae-lens' ``exclude_special_tokens`` does for BOS).
Pass ``skip_first=False`` only for an SAE trained on every position.
:func:`tokenizer_adds_bos` says which case a tokenizer is.

Example:
    >>> acts = site_activations(model, sae, ["the food was great ."])          # doctest: +SKIP
    >>> acts.shape, encode_latents(sae, acts).shape                                   # doctest: +SKIP
    (torch.Size([5, 128]), torch.Size([5, 512]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from steerlab.capture import capture
from steerlab.sae.loading import sae_point
from steerlab.sites import SitePoint

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike


def site_activations(model: ModelLike, sae: SAE, texts: Sequence[str], position: str | int = "all",
                     skip_first: bool = True, batch_size: int = 64) -> torch.Tensor:
    """Activations at the SAE's hook: ``[n_texts, d_model]``, or ``[n_tokens, d_model]`` for ``"all"``.

    With ``position="all"`` and ``skip_first`` (default) the first token of each text is dropped
    (BOS where the tokenizer adds one, else the first word; either way the attention sink).
    """
    return _capture(model, sae, texts, position, skip_first, batch_size)[0]


def token_rows(model: ModelLike, sae: SAE, texts: Sequence[str], skip_first: bool = True, batch_size: int = 64
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every token's activation with where it came from (``sae`` may also be a :class:`SitePoint`).

    Returns ``(activations [n_tokens, d_model], text index [n_tokens], token index [n_tokens])``.
    """
    return _capture(model, sae, texts, "all", skip_first, batch_size)


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether ``tokenizer(text)`` starts with the BOS token (demo tokenizer: yes; GPT-2's: no)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def _capture(model: ModelLike, sae: SAE, texts: Sequence[str], position: str | int, skip_first: bool, batch_size: int):
    point = sae if isinstance(sae, SitePoint) else sae_point(sae)
    acts = capture(model, list(texts), layers=[point.layer], site=point.site, position=position,
                   batch_size=batch_size, progress=False)
    values = acts.values[:, 0]
    if position != "all":
        return values, None, None
    keep = acts.token_index >= 1 if skip_first else torch.ones(len(values), dtype=torch.bool)
    return values[keep], acts.sequence_index[keep], acts.token_index[keep]


@torch.no_grad()
def encode_latents(sae: SAE, activations: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """``sae.encode`` in chunks: ``[n, d_in]`` -> ``[n, d_sae]`` latents (no gradient)."""
    weight = sae.W_enc
    chunks = [sae.encode(activations[start:start + batch_size].to(weight.device, weight.dtype)).float().cpu()
              for start in range(0, len(activations), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, sae.cfg.d_sae)


def latents(model: ModelLike, sae: SAE, texts: Sequence[str], position: str | int = "last",
            skip_first: bool = True) -> torch.Tensor:
    """SAE latents of each text at ``position``: ``[n_texts, d_sae]`` (``[n_tokens, d_sae]`` for ``"all"``,
    without each text's first token when ``skip_first``)."""
    return encode_latents(sae, site_activations(model, sae, texts, position=position, skip_first=skip_first))
