"""Batched L2 logistic regression in torch: many layers x many penalties in one solve.

The objective is scikit-learn's (``LogisticRegression(C=C)``, L2, intercept not
penalised), divided by ``C * n`` so every problem has the same scale::

    f(w, b) = mean_i logloss(y_i, x_i . w + b) + ||w||^2 / (2 C n)

Every (batch element, C) pair is an independent problem; all of them advance together
through one L-BFGS loop (:mod:`steerlab.probes.lbfgs_path`): warm starts along the sorted
grid, products batched over elements and values of C, the line search free of products,
scikit-learn's stopping test. With ``precondition=True`` the features are rotated to the
eigenbasis of ``X^T X``, where Boehning's bound on the logistic Hessian is diagonal, and each
coordinate is scaled by it (the same rotation serves every C). RaptorProbe solves in the
coordinates of :mod:`steerlab.probes.span` (dual ones when ``n < d``) with the same engine.

Example:
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> X = torch.randn(1, 200, 5); y = (X[0, :, 0] > 0).float()
    >>> sol = solve_l2_logistic(X - X.mean(1, keepdim=True), y, torch.tensor([[0.1, 10.0]]))
    >>> sol.coef.shape, bool(sol.converged.all()), bool(sol.coef[0, 1, 0] > sol.coef[0, 0, 0] > 0)
    (torch.Size([1, 2, 5]), True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from steerlab.probes.lbfgs_path import solve_path
from steerlab.probes.logistic_operators import FeatureOperator
from steerlab.probes.span import scaler, standardized_rows, symmetric_eigh


@dataclass
class LogisticSolution:
    """Solutions of a batch of L2 logistic problems (in the coordinates of the X passed in).

    coef: ``[B, K, d]``; intercept: ``[B, K]``; n_iter: ``[B, K]`` iterations used;
    converged: ``[B, K]`` whether the stopping test was met; rotation: ``[B, d, d]`` the
    eigenbasis used (pass it as ``precondition=`` to a similar problem to skip the ``eigh``).
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    rotation: torch.Tensor | None = None


def standardize(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(X_std, mean [B, d], scale [B, d])`` for ``X`` ``[B, n, d]``: StandardScaler's ddof=0, zero std -> 1."""
    mean, scale = scaler(X)
    return standardized_rows(X, mean[:, None], scale[:, None]), mean, scale


def fold_back(coef_std: torch.Tensor, intercept_std: torch.Tensor, mean: torch.Tensor,
              scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised-space weights to raw space: ``w_raw = w_std / sigma``, ``b_raw = b_std - w_raw . mu``.

    Shapes: ``coef_std [B, ..., d]``, ``intercept_std [B, ...]``, ``mean``/``scale`` ``[B, d]``.
    """
    extra = coef_std.ndim - 2
    mu = mean.reshape(mean.shape[0], *([1] * extra), -1)
    sigma = scale.reshape(scale.shape[0], *([1] * extra), -1)
    coef_raw = coef_std / sigma
    return coef_raw, intercept_std - (coef_raw * mu).sum(-1)


def solve_l2_logistic(X: torch.Tensor, y: torch.Tensor, Cs: torch.Tensor, *,
                      coef0: torch.Tensor | None = None, intercept0: torch.Tensor | None = None,
                      tol: float = 1e-5, max_iter: int = 500, history: int = 5,
                      precondition: bool | torch.Tensor = True, window: int | None = 10,
                      warm_start_grid: bool = True) -> LogisticSolution:
    """Solve ``B x K`` L2 logistic regressions at once.

    Args:
        X: ``[B, n, d]`` features (standardised, centred columns work best), one matrix per batch element.
        y: ``[n]`` (or ``[B, n]``) labels in {0, 1}.
        Cs: ``[B, K]`` inverse penalties (sklearn's ``C``) per batch element, any order (solved sorted).
        coef0, intercept0: optional starts ``[B, K, d]``, ``[B, K]`` (with ``warm_start_grid``, only for
            the first block of each element's sorted grid).
        tol: stop a problem when max |gradient of f| <= tol over ``(w, b)`` (scikit-learn's test).
        max_iter: L-BFGS iterations at most.
        history: L-BFGS memory.
        precondition: rotate to the eigenbasis of ``X^T X`` (one ``eigh`` per batch element); a
            ``[B, d, d]`` orthogonal matrix is used as the rotation instead (no ``eigh``); False:
            no rotation, each feature scaled by its own curvature bound.
        window: how many values of C of one element are iterated together (None: all).
        warm_start_grid: False starts every column from ``coef0``/``intercept0`` instead.
    Returns:
        :class:`LogisticSolution` with ``coef [B, K, d]``, ``intercept [B, K]``.
    """
    B, n, d = X.shape
    K = Cs.shape[1]
    if isinstance(precondition, torch.Tensor):
        V = precondition.to(X.dtype)
        Z = X @ V
        curvature = (Z * Z).mean(1)
    elif precondition:
        curvature, V = symmetric_eigh(torch.einsum("bnd,bne->bde", X, X) / n)
        Z = X @ V
    else:
        V, Z, curvature = None, X, (X * X).mean(1)
    order = Cs.argsort(1)
    inverse = order.argsort(1)
    sorted_Cs = Cs.gather(1, order)
    start = None
    if coef0 is not None:
        coef0 = coef0.to(X.dtype)
        start = torch.cat([coef0 if V is None else coef0 @ V, intercept0.to(X.dtype)[..., None]], -1)
        start = start.gather(1, order[..., None].expand_as(start))
    result = solve_path(FeatureOperator(Z, curvature, V), y, sorted_Cs, start=start, tol=tol, max_iter=max_iter,
                        history=history, window=window or K, warm_start_grid=warm_start_grid)
    theta = result.theta.gather(1, inverse[..., None].expand_as(result.theta))
    coef = theta[..., :-1] if V is None else theta[..., :-1] @ V.transpose(1, 2)
    return LogisticSolution(coef, theta[..., -1], result.n_iter.gather(1, inverse),
                            result.converged.gather(1, inverse), V)
