"""RAPTOR ridge-adaptive logistic probes, every layer and every C solved together.

Implements the protocol of Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes"
(arXiv 2602.00158): stratified train/validation split with a fixed seed, standardise
on the training part, L2 logistic regression over a grid of C (sklearn's convention,
``0.5 ||w||^2 + C * sum(logloss)``), C chosen by validation accuracy with ties going
to the smallest C (strongest ridge), refit at that C on train+validation, weights
folded back to raw activation space and normalised into the concept vector.

Where the reference code loops over layers and C with scikit-learn, here all
``n_layers x len(Cs)`` problems are one batched torch solve
(:mod:`steerlab.probes.logistic_solver`), on CPU or GPU.

Example:
    >>> import numpy as np
    >>> from steerlab.probes import RaptorProbe, make_teacher_student
    >>> X, y, _ = make_teacher_student(400, 20, seed=0)
    >>> probe = RaptorProbe(Cs=20).fit(X, y)
    >>> probe.coef_.shape, 1e-4 <= probe.C_ <= 1e2, probe.score(X, y) > 0.8
    ((20,), True, True)
    >>> X3 = np.stack([X, -X], axis=1)               # [n, n_layers=2, d]
    >>> RaptorProbe(Cs=20).fit(X3, y).predict_proba(X3).shape
    (400, 2, 2)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from steerlab.probes.base import LinearProbe
from steerlab.probes.logistic_solver import fold_back, solve_l2_logistic, standardize
from steerlab.probes.splits import split
from steerlab.probes.validation import check_Cs, check_fraction, check_min_per_class, check_number


def c_grid(Cs: int | Sequence[float]) -> np.ndarray:
    """``Cs=int`` -> that many log-spaced values from 1e-4 to 1e2 (RAPTOR's grid); a sequence is used as given."""
    if isinstance(Cs, (int, np.integer)) and not isinstance(Cs, bool):
        check_number(Cs, "Cs (number of grid points)", minimum=1, integer=True)
        return np.logspace(-4, 2, int(Cs)) if Cs > 1 else np.array([1.0])
    return check_Cs(Cs)


class RaptorProbe(LinearProbe):
    """Ridge-adaptive L2 logistic probe (RAPTOR protocol); sklearn conventions.

    Args:
        Cs: grid size (log-spaced 1e-4..1e2) or a sequence of C values. A single C means
            plain L2 logistic regression on all of X (standardised with X's own mean/std),
            no validation split: the same solution as ``LogisticRegression(C=C)``.
        val_fraction: share of the fitting data held out to choose C (RAPTOR: 0.2).
        random_state: seed of the stratified (or grouped) validation split.
        tol, max_iter: stopping rule of the batched solver (max |gradient| of the mean-scaled objective).
        window: how many values of C are iterated together; the window slides along the sorted
            grid, each entering C warm-started from the path of the smaller ones.
        device, dtype: where and in what precision to solve (``"cuda"`` works).

    Fitted attributes (besides the :class:`LinearProbe` ones): ``C_`` (float or ``[n_layers]``),
    ``Cs_`` ``[K]`` the grid, ``val_accuracy_`` ``[K]`` / ``[n_layers, K]`` (empty for one C),
    ``mean_``/``scale_`` ``[d]`` / ``[n_layers, d]`` the scaler of the final refit, ``n_iter_``.
    """

    _fitted_arrays = ("C_", "val_accuracy_", "n_iter_")
    _saved_arrays = ("Cs_",)

    def __init__(self, Cs: int | Sequence[float] = 100, *, val_fraction: float = 0.2, random_state: int = 0,
                 tol: float = 1e-4, max_iter: int = 500, window: int = 10, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        super().__init__(device=device, dtype=dtype)
        self.Cs = Cs
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter
        self.window = window

    def fit(self, X: Any, y: Any, groups: Any = None) -> "RaptorProbe":
        """Fit on ``[n, d]`` or ``[n, n_layers, d]``; ``groups`` makes the validation split a group split."""
        return super().fit(X, y, groups)

    def _grid(self) -> np.ndarray:
        """The checked grid of C values."""
        return c_grid(self.Cs)

    def _check_params(self) -> None:
        self._grid()
        check_fraction(self.val_fraction, "val_fraction")
        check_number(self.random_state, "random_state", minimum=0, integer=True)
        check_number(self.tol, "tol", minimum=0, exclusive_min=True)
        check_number(self.max_iter, "max_iter", minimum=1, integer=True)
        check_number(self.window, "window", minimum=1, integer=True)

    def _fit_layers(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self._grid()
        n_layers = X.shape[0]
        y = torch.as_tensor(y01, dtype=X.dtype, device=X.device)
        self.Cs_ = grid
        coef0 = intercept0 = None
        rotation: torch.Tensor | bool = True
        if len(grid) == 1:
            chosen = np.full(n_layers, grid[0])
            self.val_accuracy_ = np.zeros((n_layers, 0))
            check_min_per_class(y01, 1, "Logistic regression")
        else:
            check_min_per_class(y01, 2, "RaptorProbe's train/validation split (C is chosen on held-out data)",
                                "add examples of the rarer class, or pass a single C (e.g. Cs=[1.0]) to fit "
                                "without a validation split")
            train, val = split(y01, self.val_fraction, self.random_state, groups)
            val_accuracy, coef0, intercept0, rotation = self._validation_curve(X, y, train, val, grid)
            # ties go to the smallest C (strongest ridge): argmax returns the first maximum of an ascending grid
            best = val_accuracy.argmax(1)
            chosen = grid[best]
            self.val_accuracy_ = val_accuracy
            rows = torch.arange(n_layers)
            coef0, intercept0 = coef0[rows, best], intercept0[rows, best]  # raw space, warm start of the refit
        X_std, mean, scale = standardize(X)
        if coef0 is not None:  # raw-space warm start expressed in the refit's standardised coordinates
            intercept0 = (intercept0 + (coef0 * mean).sum(-1))[:, None]
            coef0 = (coef0 * scale)[:, None]
        Cs = torch.as_tensor(chosen, dtype=X.dtype, device=X.device)[:, None]
        # the refit reuses the training part's eigenbasis (train+validation has nearly the same)
        solution = solve_l2_logistic(X_std, y, Cs, coef0=coef0, intercept0=intercept0, tol=self.tol,
                                     max_iter=self.max_iter, precondition=rotation)
        coef, intercept = fold_back(solution.coef[:, 0], solution.intercept[:, 0], mean, scale)
        self.C_ = chosen
        self.n_iter_ = solution.n_iter[:, 0].cpu().numpy()
        self.mean_, self.scale_ = mean.cpu().numpy(), scale.cpu().numpy()
        self.metrics_ = {"val_accuracy": self.val_accuracy_.max(1) if len(grid) > 1 else np.full(n_layers, np.nan),
                         "train_accuracy": _accuracy(X, y, coef, intercept)}
        return coef, intercept

    def _validation_curve(self, X: torch.Tensor, y: torch.Tensor, train: np.ndarray, val: np.ndarray,
                          grid: np.ndarray) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fit the whole grid on the training part: ``(val_accuracy [L, K], coef [L, K, d], intercept [L, K],
        rotation [L, d, d])``, weights in raw space."""
        train_t = torch.as_tensor(train, device=X.device)
        val_t = torch.as_tensor(val, device=X.device)
        X_std, mean, scale = standardize(X[:, train_t])
        Cs = torch.as_tensor(grid, dtype=X.dtype, device=X.device).expand(X.shape[0], -1)
        order = np.argsort(grid)  # warm starts run along increasing C
        Cs = Cs[:, torch.as_tensor(order, device=X.device)]
        solution = solve_l2_logistic(X_std, y[train_t], Cs, tol=self.tol, max_iter=self.max_iter,
                                     window=self.window)
        inverse = torch.as_tensor(np.argsort(order), device=X.device)
        solution.coef, solution.intercept = solution.coef[:, inverse], solution.intercept[:, inverse]
        coef, intercept = fold_back(solution.coef, solution.intercept, mean, scale)
        logits = torch.einsum("lnd,lkd->lkn", X[:, val_t], coef) + intercept[..., None]
        val_accuracy = ((logits > 0).to(X.dtype) == y[val_t]).to(torch.float64).mean(-1)
        return val_accuracy.cpu().numpy(), coef, intercept, solution.rotation

    def _repr_fitted(self) -> dict[str, Any]:
        return {"C_": self.C_, **super()._repr_fitted()}


class LogisticDirection(RaptorProbe):
    """Plain L2 logistic regression at one C on standardised activations: the "LR" truth
    probe of Marks & Tegmark, "The Geometry of Truth", and Ying et al., "The Truthfulness
    Spectrum Hypothesis". Equivalent to ``RaptorProbe(Cs=[C])``.

    Example:
        >>> import numpy as np
        >>> from steerlab.probes import LogisticDirection
        >>> LogisticDirection(C=1.0).fit(np.eye(4), [0, 0, 1, 1]).predict(np.eye(4)).tolist()
        [0, 0, 1, 1]
    """

    def __init__(self, C: float = 1.0, *, tol: float = 1e-5, max_iter: int = 500,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__(Cs=[C], tol=tol, max_iter=max_iter, device=device, dtype=dtype)
        self.C = C

    def _grid(self) -> np.ndarray:
        """``[C]``, read at fit time (so a changed ``probe.C`` is used), checked as a positive finite number."""
        return np.array([float(check_number(self.C, "C", minimum=0, exclusive_min=True))])


def _accuracy(X: torch.Tensor, y: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor) -> np.ndarray:
    """``[L]`` accuracy of raw-space probes ``coef [L, d]`` on ``X [L, n, d]``."""
    logits = torch.einsum("lnd,ld->ln", X, coef) + intercept[:, None]
    return ((logits > 0).to(X.dtype) == y).to(torch.float64).mean(-1).cpu().numpy()
