"""How good an SAE is on held-out text: explained variance, L0, dead latents, CE loss when spliced in.

* explained variance: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over tokens;
* L0: mean number of active latents per token;
* dead fraction: latents never active on the evaluation text; dense fraction: latents active
  on more than :data:`DENSE_FREQUENCY` of its tokens (10%, as in SAEBench);
* CE loss: mean next-token loss of the evaluation text clean, with the SAE spliced in
  (reconstruction replaces the site) and with the site mean-ablated; ``ce_increase`` is
  spliced - clean and ``ce_loss_recovered`` is (ablated - spliced) / (ablated - clean).
  The formula is sae-lens' "CE loss score", but sae-lens ablates with zeros and steerlab
  with the site's mean over the evaluation text. Mean ablation usually hurts less than
  zeros, so the same SAE usually scores lower here than in sae-lens' evals (compare
  numbers across the two only with that in mind).

Every token but each text's first is measured by default (``skip_first``: the attention sink,
left out of training too; see :mod:`steerlab.sae.activations`).

Example:
    >>> report = sae_quality(model, sae, demo_corpus(500, seed=999))          # doctest: +SKIP
    >>> report["explained_variance"] > 0.8                                   # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import torch

from steerlab.sae.activations import encode_latents, site_activations
from steerlab.sae.editing import _site_function
from steerlab.sae.loading import check_sae
from steerlab.steering.metrics import next_token_nll

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike

DENSE_FREQUENCY = 0.1  # a latent active on more than this share of tokens counts as dense


@torch.no_grad()
def reconstruction_metrics(sae: SAE, activations: torch.Tensor) -> dict[str, float]:
    """Explained variance, MSE, L0, dead and dense fractions of ``activations`` ``[n_tokens, d_in]``."""
    latents = encode_latents(sae, activations)  # [n_tokens, d_sae]
    reconstruction = torch.cat([sae.decode(latents[i:i + 8192].to(sae.W_dec.device, sae.W_dec.dtype)).float().cpu()
                                for i in range(0, len(latents), 8192)])  # [n_tokens, d_in] on CPU
    x = activations.float()
    residual = (x - reconstruction).pow(2).sum()
    total = (x - x.mean(dim=0)).pow(2).sum()
    active = latents > 0
    frequency = active.float().mean(dim=0)  # [d_sae] share of tokens each latent fires on
    return {"explained_variance": float(1 - residual / total), "mse": float(residual / x.numel()),
            "l0": float(active.sum(dim=1).float().mean()), "dead_fraction": float((frequency == 0).float().mean()),
            "dense_fraction": float((frequency > DENSE_FREQUENCY).float().mean()), "n_tokens": len(x)}


def ce_losses(model: ModelLike, sae: SAE, texts: Sequence[str], skip_first: bool = True,
              site_mean: torch.Tensor | None = None, batch_size: int = 32) -> dict[str, float]:
    """Mean next-token loss (nats) of ``texts``: clean, SAE spliced in, site mean-ablated (the first
    token left as it is in both when ``skip_first``).

    ``site_mean`` ``[d_in]``: the site's mean activation over ``texts`` (the same tokens, averaged in
    float32), if already at hand; computed here otherwise. Per batch of ``batch_size`` texts, the clean
    forward also reads the SAE layer's input, and the spliced and ablated forwards run only the blocks
    from that layer on (:meth:`~steerlab.models.ModelAdapter.forward_from`; the same logits).
    """
    point = check_sae(sae, model)
    texts = list(texts)
    if site_mean is None:
        site_mean = site_activations(model, sae, texts, skip_first=skip_first).float().mean(dim=0)

    def mean_ablate(h: torch.Tensor) -> torch.Tensor:
        ablated = site_mean.to(h.device, h.dtype).expand_as(h).clone()
        if skip_first:  # keep the first token, as the splice does (right padding: column 0 is the first token)
            ablated[:, 0] = h[:, 0]
        return ablated

    site = model.point(point.site, point.layer)
    sums = {"clean": 0.0, "spliced": 0.0, "ablated": 0.0}
    n_tokens = 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = model.tokenize(texts[start:start + batch_size])
            clean, resid_pre = model.forward_keeping_input(batch, point.layer)
            logits = {"clean": clean}
            with model.token_positions() as tracker:  # the splice as a site function, after the given input
                splice = _site_function(sae, {}, False, tracker, "all", skip_first)
                logits["spliced"] = model.forward_from(batch, point.layer, resid_pre, [(site, splice)])
            logits["ablated"] = model.forward_from(batch, point.layer, resid_pre, [(site, mean_ablate)])
            input_ids, attention_mask = batch.input_ids.cpu(), batch.attention_mask.cpu()
            for name, values in logits.items():
                total, count = next_token_nll(torch.log_softmax(values.float(), dim=-1).cpu(), input_ids, attention_mask)
                sums[name] += float(total)
            n_tokens += count
    if n_tokens == 0:
        raise ValueError("The texts need at least two tokens each to measure a next-token loss.")
    clean, spliced, ablated = (sums[name] / n_tokens for name in ("clean", "spliced", "ablated"))
    recovered = (ablated - spliced) / (ablated - clean) if ablated != clean else math.nan
    return {"ce_clean": clean, "ce_spliced": spliced, "ce_mean_ablated": ablated, "ce_increase": spliced - clean,
            "ce_loss_recovered": recovered}


def sae_quality(model: ModelLike, sae: SAE, texts: Sequence[str], skip_first: bool = True) -> dict[str, float]:
    """Every quality number of :mod:`steerlab.sae.quality` on ``texts`` (held-out text, not the training text).

    ``skip_first`` (default): leave each text's first token (the attention sink) out of every number.
    """
    activations = site_activations(model, sae, texts, skip_first=skip_first)  # [n_tokens, d_in], read once
    return {**reconstruction_metrics(sae, activations),
            **ce_losses(model, sae, texts, skip_first=skip_first, site_mean=activations.float().mean(dim=0))}
