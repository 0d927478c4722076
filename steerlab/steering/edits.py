"""The edit modes, as pure functions on ``h [batch, pos, d_model]`` and a selection ``[batch, pos]``.

* add: ``h + alpha * direction`` (ActAdd / CAA / ITI-style addition);
* ablate: ``h - (h . u) u`` (directional ablation, as in the refusal-direction work);
* set: the projection on ``u`` set to a value;
* clamp: RAPTOR's minimal edit to reach a target probe probability (Gao et al.,
  "RAPTOR: Ridge-Adaptive Logistic Probes"): with probe logit ``z = b + ||w|| (u . h)``,
  tokens not yet past ``p*`` move along ``u`` by ``(logit(p*) - z) / ||w||``, the
  smallest L2 edit that puts the probe exactly at ``p*`` (RAPTOR writes
  ``eps = logit(p*) - z`` for a unit-norm probe, where the two coincide).

``u`` is always the unit direction; ``sel`` is 1 where a token is edited.
"""

from __future__ import annotations

import math

import torch


# Plain torch ops, not einops.einsum: these run in every hook of every generation step, where
# einops' per-call overhead (~20 us) was most of a steering hook's cost.


def _projection(h: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """``[batch, pos]``: the component of each activation along ``unit``."""
    return h @ unit


def _along(amount: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """``amount [batch, pos]`` times ``unit [d]`` -> ``[batch, pos, d]``."""
    return amount.unsqueeze(-1) * unit


def add(h: torch.Tensor, sel: torch.Tensor, direction: torch.Tensor, alpha: float) -> torch.Tensor:
    return h + _along(sel.to(h.dtype) * alpha, direction)


def ablate(h: torch.Tensor, sel: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    return h - _along(sel.to(h.dtype) * _projection(h, unit), unit)


def set_projection(h: torch.Tensor, sel: torch.Tensor, unit: torch.Tensor, value: float) -> torch.Tensor:
    return h + _along(sel.to(h.dtype) * (value - _projection(h, unit)), unit)


def probe_logit(h: torch.Tensor, unit: torch.Tensor, weight_norm: float, intercept: float) -> torch.Tensor:
    """``[batch, pos]``: the source probe's logit ``b + ||w|| (u . h)``."""
    return intercept + weight_norm * _projection(h, unit)


def clamp(h: torch.Tensor, sel: torch.Tensor, unit: torch.Tensor, weight_norm: float, intercept: float,
          target_probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited activations and the mask ``[batch, pos]`` of tokens actually edited."""
    if not 0.0 < target_probability < 1.0:
        raise ValueError(f"The clamp target is a probability strictly between 0 and 1, got {target_probability}.")
    target_logit = math.log(target_probability / (1.0 - target_probability))
    logit = probe_logit(h, unit, weight_norm, intercept)
    # "Toward" a high probability edits only tokens below it; "away" (p* < 0.5) only those above.
    short = logit < target_logit if target_probability >= 0.5 else logit > target_logit
    edited = sel.bool() & short
    step = torch.where(edited, (target_logit - logit) / weight_norm, torch.zeros_like(logit))
    return h + _along(step, unit), edited
