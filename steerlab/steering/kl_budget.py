"""``alpha_at_kl``: the steering strength whose side effect on neutral text equals a KL budget.

Comparing directions at one alpha favours whichever moves the model least per unit of
norm; comparing them at the same KL on neutral text (nats per token) asks which one buys
the most effect for the same damage. KL grows smoothly with |alpha| (about as alpha^2 while
small), so a secant on log KL against log alpha finds the budget in a few forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.steering import metrics
from steerlab.steering.injection import as_finite_float, steer
from steerlab.steering.vector import SteeringVector

Vectors = Union[SteeringVector, Sequence[SteeringVector]]


@dataclass(frozen=True)
class BudgetPoint:
    """The alpha found, its KL and perplexity on the neutral text, and every (alpha, KL) measured on the way."""

    alpha: float
    kl: float
    perplexity: float
    budget: float
    tolerance: float
    trace: tuple[tuple[float, float], ...]

    @property
    def reached(self) -> bool:
        """Whether the KL is within the tolerance of the budget (False: out of reach in the steps allowed)."""
        return abs(self.kl / self.budget - 1) <= self.tolerance


def side_effects(model: ModelAdapter, vectors: Vectors, alpha: float, neutral_texts: Sequence[str],
                 reference: list[torch.Tensor], **steer_kwargs: Any) -> tuple[float, float]:
    """``(KL, perplexity)`` on ``neutral_texts`` while steered: the mean per-token KL(unsteered || steered)
    (``reference``: the texts' unsteered ``token_logprobs``) and the texts' perplexity under the steered model."""
    with steer(model, vectors, alpha=alpha, **steer_kwargs):
        steered = metrics.token_logprobs(model, neutral_texts)
    return metrics.kl_divergence(reference, steered), math.exp(metrics.mean_nll(model, neutral_texts, steered))


def alpha_at_kl(model: ModelAdapter, vector: Vectors, neutral_texts: Sequence[str], budget: float,
                start: float = 1.0, *, reference: list[torch.Tensor] | None = None, tolerance: float = 0.15,
                max_steps: int = 6, max_alpha: float = 1e4, **steer_kwargs: Any) -> BudgetPoint:
    """The alpha (same sign as ``start``) whose KL on ``neutral_texts`` is ``budget`` within ``tolerance``.

    ``vector`` is one :class:`SteeringVector` or several (e.g. one per layer) sharing the alpha;
    ``steer_kwargs`` (positions, mode...) go to :func:`~steerlab.steering.steer`.

    Args:
        budget: nats per token (e.g. 0.1).
        start: the first alpha tried; its sign is the direction of the push.
        tolerance: relative: stop when ``|KL / budget - 1| <= tolerance``.
        max_steps: forward passes over the neutral text at most.
        reference: the unsteered ``token_logprobs`` of the texts (computed when None).

    Returns:
        A :class:`BudgetPoint`: the measured point with the largest |alpha| whose KL is within
        ``budget * (1 + tolerance)`` (the smallest alpha tried when every one exceeded it), and the trace.
    """
    budget = as_finite_float(budget, "budget")
    start = as_finite_float(start, "start")
    if budget <= 0:
        raise ValueError(f"budget is a KL in nats per token and must be positive, got {budget}.")
    if start == 0:
        raise ValueError("start must be non-zero: its sign is the direction of the push (e.g. 1.0 or -1.0).")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int (forward passes over the neutral text), got {max_steps!r}.")
    if reference is None:
        reference = metrics.token_logprobs(model, neutral_texts)
    sign, alpha, exponent = math.copysign(1.0, start), abs(start), 2.0
    trace: list[tuple[float, float]] = []
    perplexities: dict[float, float] = {}
    for _ in range(max_steps):
        kl, perplexities[sign * alpha] = side_effects(model, vector, sign * alpha, neutral_texts, reference,
                                                      **steer_kwargs)
        trace.append((sign * alpha, kl))
        if abs(kl / budget - 1) <= tolerance or (alpha >= max_alpha and kl < budget):
            break
        if len(trace) >= 2:
            (a0, k0), (a1, k1) = trace[-2], trace[-1]
            if k0 > 0 and k1 > 0 and a0 != a1 and k0 != k1:
                exponent = min(max(math.log(k1 / k0) / math.log(abs(a1) / abs(a0)), 0.5), 4.0)
        following = min(alpha * (budget / max(kl, 1e-12)) ** (1 / exponent), max_alpha)
        if following == alpha:
            break
        alpha = following
    within = [(a, k) for a, k in trace if k <= budget * (1 + tolerance)]
    a, k = max(within, key=lambda point: abs(point[0])) if within else min(trace, key=lambda point: abs(point[0]))
    return BudgetPoint(alpha=a, kl=k, perplexity=perplexities[a], budget=budget, tolerance=tolerance,
                       trace=tuple(trace))
