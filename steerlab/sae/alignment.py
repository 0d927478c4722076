"""How a probe or steering direction lines up with an SAE's decoder rows.

* :func:`decoder_cosines`: cosine of ``direction`` with every row of ``W_dec`` ``[d_sae, d_in]``;
* :func:`top_aligned`: the features with the largest |cosine|;
* :func:`reconstruction_curve`: for k = 1, 2, 4..., how much of the direction the k
  best-aligned decoder rows reconstruct (least squares on those rows): the share of its
  squared norm explained (R^2 against zero). A direction that one feature captures gives
  R^2 ~ cos^2 at k = 1; a "dense" one needs many.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> W_dec = torch.eye(4)                                  # a toy "SAE" with 4 latents
    >>> sae = SimpleNamespace(W_dec=W_dec)
    >>> top_aligned(sae, torch.tensor([0.0, 3.0, 0.0, 1.0]), k=2)["feature"].tolist()
    [1, 3]
    >>> [round(r["r2"], 2) for r in reconstruction_curve(sae, torch.tensor([0.0, 3.0, 0.0, 1.0]), ks=(1, 2))]
    [0.9, 1.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:
    from sae_lens import SAE

KS = (1, 2, 4, 8, 16, 32, 64)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _direction(direction: Any) -> torch.Tensor:
    """A ``[d_in]`` float tensor from a tensor, array or :class:`SteeringVector`."""
    direction = getattr(direction, "direction", direction)
    direction = torch.as_tensor(direction, dtype=torch.float32).reshape(-1)
    if not torch.isfinite(direction).all() or direction.norm() == 0:
        raise ValueError("The direction is zero or not finite.")
    return direction


def decoder_cosines(sae: SAE, direction: Any) -> torch.Tensor:
    """``[d_sae]``: cosine of ``direction`` ``[d_in]`` with each decoder row ``W_dec[f]``."""
    W_dec = sae.W_dec.detach().float().cpu()
    direction = _direction(direction)
    if direction.shape[0] != W_dec.shape[1]:
        raise ValueError(f"The direction has {direction.shape[0]} entries but the SAE's decoder rows have "
                         f"{W_dec.shape[1]}: they live in different spaces (another model or site).")
    return _unit(W_dec) @ _unit(direction)


def top_aligned(sae: SAE, direction: Any, k: int = 10) -> dict[str, torch.Tensor]:
    """The ``k`` features with the largest |cosine|: ``{"feature": [k], "cosine": [k]}`` (signed cosines)."""
    cosines = decoder_cosines(sae, direction)
    order = cosines.abs().argsort(descending=True)[:k]
    return {"feature": order, "cosine": cosines[order]}


def reconstruction_curve(sae: SAE, direction: Any, ks: Sequence[int] = KS) -> list[dict[str, float]]:
    """Rows ``{k, r2, norm_fraction}``: the direction fit by least squares on its k best-aligned decoder rows.

    ``r2 = 1 - ||v - D_k^T c||^2 / ||v||^2``; ``norm_fraction = ||D_k^T c|| / ||v||`` (the length of
    the projection onto the span of the k rows, which equals sqrt(r2)).
    """
    W_dec = sae.W_dec.detach().double().cpu()
    v = _direction(direction).double()
    order = decoder_cosines(sae, direction).abs().argsort(descending=True)
    rows = []
    for k in ks:
        if k > W_dec.shape[0]:
            break
        rows_k = W_dec[order[:k]]  # [k, d_in]
        coefficients = torch.linalg.lstsq(rows_k.T, v.unsqueeze(1)).solution  # [k, 1]
        fit = (rows_k.T @ coefficients).squeeze(1)
        r2 = 1 - float((v - fit).pow(2).sum() / v.pow(2).sum())
        rows.append({"k": int(k), "r2": r2, "norm_fraction": float(fit.norm() / v.norm())})
    return rows
