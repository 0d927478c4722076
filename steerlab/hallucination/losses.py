"""The training objectives of token-level hallucination probes, on logits ``z [n_tokens]``.

Spans are given as ``span [n_tokens]`` (int64, 0..n_spans-1: which span each token is
in) and ``span_label [n_spans]`` (0/1: does the span contain a hallucination).

* Liang & Wang (arXiv 2512.20949, "Neural Probe-Based Hallucination Detection for Large
  Language Models"), "multi-objective joint loss": :func:`focal_loss` on tokens +
  :func:`soft_span_loss` (a smooth max over a span's logits against the span label) +
  :func:`sparsity_loss` (few flagged tokens per span) + a KL term, weights configurable (the
  paper publishes neither the weights nor the KL term's form). The language model is frozen,
  so a KL between its output distributions with and without the probe (the LoRA regulariser
  of Obeso et al.) would be zero; steerlab's KL term is :func:`dropout_kl`, the consistency of
  the probe's own predictions under dropout (R-Drop: Liang et al., "R-Drop: Regularized
  Dropout for Neural Networks"), which serves the paper's stated aim of detection stability.
* Obeso et al. (arXiv 2509.03531): token BCE + BCE of the span's max logit
  (:func:`max_span_loss`), the span weight annealed from 0 to 1 (:func:`annealed_weight`).

Example:
    >>> import torch
    >>> z = torch.tensor([3.0, -3.0, -3.0]); y = torch.tensor([1.0, 0.0, 0.0])
    >>> span = torch.tensor([0, 0, 1]); span_label = torch.tensor([1.0, 0.0])
    >>> round(float(focal_loss(z, y)), 4) < round(float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)), 4)
    True
    >>> segment_max(z, span, 2).tolist(), round(float(soft_span_loss(z, span, span_label)), 3)
    ([3.0, -3.0], 0.049)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(z: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """Mean focal loss (Lin et al.) of logits ``z [n]`` for labels ``y [n]`` in {0, 1}.

    ``alpha_t * (1 - p_t)^gamma * BCE``: ``alpha`` weighs the positive class (``1 - alpha``
    the negative one; 0.5 = equal), ``gamma = 0`` gives plain (alpha-weighted) BCE.
    """
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_true = torch.exp(-bce)  # probability given to the right class
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return (2 * alpha_t * (1 - p_true) ** gamma * bce).mean()  # x2: alpha=0.5, gamma=0 is plain BCE


def segment_max(z: torch.Tensor, span: torch.Tensor, n_spans: int) -> torch.Tensor:
    """Max of ``z [n]`` within each span: ``[n_spans]`` (differentiable)."""
    out = torch.full((n_spans,), float("-inf"), dtype=z.dtype, device=z.device)
    return out.scatter_reduce(0, span, z, reduce="amax", include_self=False)


def segment_logsumexp(z: torch.Tensor, span: torch.Tensor, n_spans: int, temperature: float = 1.0) -> torch.Tensor:
    """Smooth max ``t * log(sum_i exp(z_i / t))`` within each span: ``[n_spans]``.

    Tends to the max as ``t -> 0``; exceeds it by at most ``t * log(span length)``.
    """
    top = segment_max(z.detach(), span, n_spans)  # a constant shift: the gradient is softmax(z / t) either way
    total = torch.zeros(n_spans, dtype=z.dtype, device=z.device).index_add(0, span, torch.exp((z - top[span]) / temperature))
    return top + temperature * torch.log(total)


def soft_span_loss(z: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor, temperature: float = 1.0
                   ) -> torch.Tensor:
    """BCE of each span's smooth max logit against its label (Liang & Wang's soft span loss), mean over spans."""
    smooth = segment_logsumexp(z, span, len(span_label), temperature)
    return F.binary_cross_entropy_with_logits(smooth, span_label)


def max_span_loss(z: torch.Tensor, span: torch.Tensor, span_label: torch.Tensor) -> torch.Tensor:
    """BCE of each span's max logit against its label (Obeso et al.), mean over spans."""
    return F.binary_cross_entropy_with_logits(segment_max(z, span, len(span_label)), span_label)


def sparsity_loss(z: torch.Tensor, span: torch.Tensor, n_spans: int) -> torch.Tensor:
    """L1 of the token probabilities in each span except its top token, per token, mean over spans.

    Lets the span loss raise one token of a hallucinated span while keeping the others
    low: few flagged tokens per span.
    """
    p = torch.sigmoid(z)
    total = torch.zeros(n_spans, dtype=z.dtype, device=z.device).index_add(0, span, p)
    length = torch.zeros(n_spans, dtype=z.dtype, device=z.device).index_add(0, span, torch.ones_like(p))
    rest = (total - segment_max(p, span, n_spans)) / (length - 1).clamp(min=1)
    return rest.mean()


def dropout_kl(z: torch.Tensor, z_other: torch.Tensor) -> torch.Tensor:
    """Symmetric KL between the Bernoulli predictions of two passes over the same tokens, mean per token.

    ``z`` and ``z_other`` ``[n]`` are logits of two forward passes with different dropout masks
    (R-Drop); ``(KL(p || q) + KL(q || p)) / 2`` with ``p = sigmoid(z)``, ``q = sigmoid(z_other)``,
    computed from log-sigmoids (stable for large logits). Zero when the passes agree.
    """
    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(a) * (F.logsigmoid(a) - F.logsigmoid(b)) + torch.sigmoid(-a) * (
            F.logsigmoid(-a) - F.logsigmoid(-b))

    return ((kl(z, z_other) + kl(z_other, z)) / 2).mean()


def annealed_weight(epoch: int, anneal_epochs: int) -> float:
    """Span-loss weight of Obeso et al.: linear from 0 (first epoch) to 1 (after ``anneal_epochs``)."""
    return 1.0 if anneal_epochs <= 0 else min(1.0, epoch / anneal_epochs)
