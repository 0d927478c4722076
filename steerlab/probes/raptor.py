"""RAPTOR ridge-adaptive logistic probes, every layer and every C solved together.

Implements the protocol of Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes"
(arXiv 2602.00158) as their code runs it: stratified train/validation split with a fixed
seed, standardise on the training part, L2 logistic regression over a grid of C
(scikit-learn's objective, ``0.5 ||w||^2 + C * sum(logloss)``, and its stopping test), C
chosen by validation accuracy with ties going to the smallest C (strongest ridge), refit
at that C on train+validation **with the scaler fitted on the training part**
(``refit_scaler="train"``; ``"train+val"`` refits the scaler too), weights folded back to
raw activation space and normalised into the concept vector.

Where the reference code loops over layers and C with scikit-learn, here all
``n_layers x len(Cs)`` problems advance together in one batched L-BFGS loop
(:mod:`steerlab.probes.lbfgs_path`): warm starts along the grid, and, when there are fewer
training rows than dimensions, exact dual coordinates so the work scales with ``n^2``
instead of ``n d`` (:mod:`steerlab.probes.span`). ``benchmarks/raptor_reference.py`` is the
reference implementation; ``benchmarks/bench_raptor_speed.py`` compares the two.

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

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from steerlab.probes.base import LinearProbe
from steerlab.probes.lbfgs_path import solve_path
from steerlab.probes.span import SolverSpace, as_index
from steerlab.probes.splits import split
from steerlab.probes.validation import (as_activation_tensor, check_choice, check_Cs, check_fraction, check_labels,
                                        check_min_per_class, check_number)

REFIT_SCALERS = ("train", "train+val")
SOLVERS = ("auto", "kernel", "primal")


def c_grid(Cs: int | Sequence[float]) -> np.ndarray:
    """``Cs=int`` -> that many log-spaced values from 1e-4 to 1e2 (RAPTOR's grid); a sequence is used as given."""
    if isinstance(Cs, (int, np.integer)) and not isinstance(Cs, bool):
        check_number(Cs, "Cs (number of grid points)", minimum=1, integer=True)
        return np.logspace(-4, 2, int(Cs)) if Cs > 1 else np.array([1.0])
    return check_Cs(Cs)


@dataclass
class _BatchFit:
    """One RAPTOR fit of ``B`` elements: raw-space ``coef [B, d]``, ``intercept [B]``, chosen ``C [B]``,
    ``val_accuracy [B, K]`` (grid order; ``[B, 0]`` for one C), the refit's scaler ``mean``/``scale`` ``[B, d]``,
    ``n_iter [B]`` / ``converged [B]`` of the refit, ``path_unconverged`` (grid fits that did not converge)."""

    coef: torch.Tensor
    intercept: torch.Tensor
    C: np.ndarray
    val_accuracy: np.ndarray
    mean: torch.Tensor
    scale: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    path_unconverged: int


class RaptorProbe(LinearProbe):
    """Ridge-adaptive L2 logistic probe (RAPTOR protocol); sklearn conventions.

    Args:
        Cs: grid size (log-spaced 1e-4..1e2) or a sequence of C values. A single C means
            plain L2 logistic regression on all of X (standardised with X's own mean/std),
            no validation split: the same solution as ``LogisticRegression(C=C)``.
        val_fraction: share of the fitting data held out to choose C (RAPTOR: 0.2).
        random_state: seed of the stratified (or grouped) validation split.
        refit_scaler: ``"train"`` (the authors' code: the refit on train+validation keeps the
            scaler fitted on the training part) or ``"train+val"`` (refit the scaler on
            train+validation first). Measured difference: ``benchmarks/results_probes.md``.
        tol, max_iter: scikit-learn's stopping test (max |gradient| of the mean-scaled objective
            over the standardised coefficients and the intercept) and iteration cap, per fit.
        window: how many values of C of one layer are iterated together; each block of the
            sorted grid starts on the path extrapolated from the values of C before it.
        solver: ``"kernel"`` (dual coordinates in the span of the training rows), ``"primal"``
            (eigenbasis of the features) or ``"auto"`` (kernel when there are fewer training rows
            than dimensions). The same problem and optimum either way.
        device, dtype: where and in what precision to solve (``"cuda"`` works).

    Fitted attributes (besides the :class:`LinearProbe` ones): ``C_`` (float or ``[n_layers]``),
    ``Cs_`` ``[K]`` the grid, ``val_accuracy_`` ``[K]`` / ``[n_layers, K]`` (empty for one C),
    ``mean_``/``scale_`` ``[d]`` / ``[n_layers, d]`` the scaler of the final refit, ``n_iter_``
    (iterations of the refit). A refit that does not converge raises scikit-learn's
    ``ConvergenceWarning`` (as ``LogisticRegression`` does), naming the layers.
    """

    _fitted_arrays = ("C_", "val_accuracy_", "n_iter_")
    _saved_arrays = ("Cs_",)

    def __init__(self, Cs: int | Sequence[float] = 100, *, val_fraction: float = 0.2, random_state: int = 0,
                 refit_scaler: str = "train", tol: float = 1e-4, max_iter: int = 500, window: int = 10,
                 solver: str = "auto", device: str | torch.device = "cpu", dtype: str = "float32"):
        super().__init__(device=device, dtype=dtype)
        self.Cs = Cs
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.refit_scaler = refit_scaler
        self.tol = tol
        self.max_iter = max_iter
        self.window = window
        self.solver = solver

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
        check_choice(self.refit_scaler, "refit_scaler", REFIT_SCALERS)
        check_number(self.tol, "tol", minimum=0, exclusive_min=True)
        check_number(self.max_iter, "max_iter", minimum=1, integer=True)
        check_number(self.window, "window", minimum=1, integer=True)
        check_choice(self.solver, "solver", SOLVERS)

    def _fit_layers(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self._grid()
        self.Cs_ = grid
        n_layers = X.shape[0]
        if len(grid) == 1:
            check_min_per_class(y01, 1, "Logistic regression")
            train, val = np.arange(len(y01)), None
        else:
            check_min_per_class(y01, 2, "RaptorProbe's train/validation split (C is chosen on held-out data)",
                                "add examples of the rarer class, or pass a single C (e.g. Cs=[1.0]) to fit "
                                "without a validation split")
            train, val = split(y01, self.val_fraction, self.random_state, groups)
        y = torch.as_tensor(y01, dtype=X.dtype, device=X.device).expand(n_layers, -1)
        result = self._fit_batch(X, y, train, val, grid)
        self.C_ = result.C
        self.val_accuracy_ = result.val_accuracy
        self.n_iter_ = result.n_iter.cpu().numpy()
        self.mean_, self.scale_ = result.mean.cpu().numpy(), result.scale.cpu().numpy()
        self.metrics_ = {"val_accuracy": result.val_accuracy.max(1) if len(grid) > 1 else np.full(n_layers, np.nan),
                         "train_accuracy": _accuracy(X, torch.as_tensor(y01, dtype=X.dtype, device=X.device),
                                                     result.coef, result.intercept)}
        _warn_unconverged(result, self.max_iter)
        return result.coef, result.intercept

    def _fit_batch(self, X: torch.Tensor, y: torch.Tensor, train: np.ndarray, val: np.ndarray | None,
                   grid: np.ndarray) -> _BatchFit:
        """The protocol on ``X [B, n, d]`` with labels ``y [B, n]`` (0/1): the grid on rows ``train``, C by accuracy
        on rows ``val`` (None for a single C: plain logistic regression), the refit on all ``n`` rows."""
        B, n, _ = X.shape
        device, dtype = X.device, X.dtype
        solve = dict(tol=self.tol, max_iter=self.max_iter)
        train = as_index(train, device)
        space = SolverSpace(X, train, kind=self.solver)
        if len(grid) == 1:
            chosen = np.full(B, grid[0])
            val_accuracy = np.zeros((B, 0))
            start, unconverged = None, 0
            refit_space = space
        else:
            order = np.argsort(grid, kind="stable")  # warm starts run along increasing C
            Cs = torch.as_tensor(grid[order], dtype=dtype, device=device).expand(B, -1)
            path = solve_path(space.train_operator(), y[:, train], Cs, window=self.window, **solve)
            unconverged = int((~path.converged).sum())
            val = as_index(val, device)
            logits = space.train_logits(path.theta, val)  # [B, K, n_val]
            correct = ((logits > 0).to(dtype) == y[:, None, val]).to(torch.float64).mean(-1)
            best = correct.argmax(1)  # first maximum of the ascending grid: ties go to the smallest C
            chosen = grid[order][best.cpu().numpy()]
            val_accuracy = np.empty((B, len(grid)))
            val_accuracy[:, order] = correct.cpu().numpy()
            start = space.lift(path.theta[torch.arange(B, device=device), best])[:, None]  # [B, 1, N+1]
            refit_space = space
            if self.refit_scaler == "train+val":
                refit_space = SolverSpace(X, torch.arange(n, device=device), kind=space.kind)
                start = refit_space.from_raw(*space.raw(start))
        Cs = torch.as_tensor(chosen, dtype=dtype, device=device)[:, None]
        final = solve_path(refit_space.fit_operator(), y, Cs, start=start, window=1, warm_start_grid=False, **solve)
        coef, intercept = refit_space.raw(final.theta)
        return _BatchFit(coef[:, 0], intercept[:, 0], chosen, val_accuracy, refit_space.mean, refit_space.scale,
                         final.n_iter[:, 0], final.converged[:, 0], unconverged)

    def fit_subsets(self, X: Any, y: Any, subsets: Sequence[np.ndarray], random_states: Sequence[int],
                    groups: Any = None, max_batch_bytes: float = 2 ** 28) -> np.ndarray:
        """Concept vectors of refits on row ``subsets`` of ``X`` ``[n, d]`` / ``[n, n_layers, d]``, the i-th with
        validation split seed ``random_states[i]``: ``[runs, d]`` / ``[runs, n_layers, d]``.

        The same as ``clone(random_state=s).fit(X[rows], y[rows]).concept_vector_`` per subset, with every
        subset and layer solved in one batch (layers in chunks of at most ``max_batch_bytes`` of data) when the
        subsets give equal-sized splits (stratified subsets of one size do); else one fit per subset.
        """
        self._check_params()
        values, _ = as_activation_tensor(X, self.dtype)
        y01, _ = check_labels(y, len(values))
        grid = self._grid()
        per_layer = values.ndim == 3
        X3 = (values if per_layer else values[:, None]).to(self.device)  # [n, L, d]
        orders, n_train = [], None  # each subset's rows, its training part first
        for rows, seed in zip(subsets, random_states):
            rows = np.asarray(rows)
            if len(grid) == 1:
                train, val = np.arange(len(rows)), np.arange(0)
            else:
                train, val = split(y01[rows], self.val_fraction, int(seed), None if groups is None else
                                   np.asarray(groups)[rows])
            orders.append(rows[np.concatenate([train, val])])
            n_train = len(train) if n_train in (None, len(train)) else -1
        if n_train == -1 or len({len(o) for o in orders}) > 1:  # unequal splits: one fit per subset
            fits = [self.clone(random_state=int(s)).fit(values[np.asarray(r)], y01[np.asarray(r)],
                                                         None if groups is None else np.asarray(groups)[r])
                    for r, s in zip(subsets, random_states)]
            return np.stack([f.concept_vector_ for f in fits])
        runs, (n_rows, n_layers, d) = len(orders), (len(orders[0]), X3.shape[1], X3.shape[2])
        index = torch.as_tensor(np.stack(orders), device=X3.device)  # [runs, n_rows]
        labels = torch.as_tensor(y01, dtype=X3.dtype, device=X3.device)[index]  # [runs, n_rows]
        chunk = max(1, int(max_batch_bytes // (runs * n_rows * d * X3.element_size())))
        directions = np.empty((runs, n_layers, d), dtype=np.float32)
        for first in range(0, n_layers, chunk):
            layers = range(first, min(first + chunk, n_layers))
            batch = torch.stack([X3[index[r], l] for r in range(runs) for l in layers])  # [runs*c, n_rows, d]
            y_batch = labels.repeat_interleave(len(layers), 0)
            result = self._fit_batch(batch, y_batch, np.arange(n_train), np.arange(n_train, n_rows)
                                     if len(grid) > 1 else None, grid)
            _warn_unconverged(result, self.max_iter)
            unit = torch.nn.functional.normalize(result.coef, dim=-1).cpu().numpy()
            directions[:, first:first + len(layers)] = unit.reshape(runs, len(layers), d)
        return directions if per_layer else directions[:, 0]

    def _repr_fitted(self) -> dict[str, Any]:
        return {"C_": self.C_, **super()._repr_fitted()}


def _warn_unconverged(result: _BatchFit, max_iter: int) -> None:
    """scikit-learn's ``ConvergenceWarning`` when a refit stopped without meeting the tolerance."""
    failed = (~result.converged).cpu().numpy()
    if not failed.any():
        return
    from sklearn.exceptions import ConvergenceWarning

    which = np.flatnonzero(failed).tolist()
    warnings.warn(f"RaptorProbe: the refit did not converge within max_iter={max_iter} iterations on "
                  f"{len(which)} layer slot(s) {which[:10]}{' ...' if len(which) > 10 else ''} "
                  f"({result.path_unconverged} of the grid fits did not either): increase max_iter, or tol.",
                  ConvergenceWarning, stacklevel=4)


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

    # RaptorProbe's other settings, fixed here: one C needs no validation split
    val_fraction, random_state, refit_scaler, window, solver = 0.2, 0, "train", 10, "auto"

    def __init__(self, C: float = 1.0, *, tol: float = 1e-5, max_iter: int = 500,
                 device: str | torch.device = "cpu", dtype: str = "float32"):
        LinearProbe.__init__(self, device=device, dtype=dtype)  # only stores parameters (sklearn's contract)
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def _grid(self) -> np.ndarray:
        """``[C]``, read at fit time (so a changed ``probe.C`` is used), checked as a positive finite number."""
        return np.array([float(check_number(self.C, "C", minimum=0, exclusive_min=True))])


def _accuracy(X: torch.Tensor, y: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor) -> np.ndarray:
    """``[L]`` accuracy of raw-space probes ``coef [L, d]`` on ``X [L, n, d]``."""
    logits = torch.einsum("lnd,ld->ln", X, coef) + intercept[:, None]
    return ((logits > 0).to(X.dtype) == y).to(torch.float64).mean(-1).cpu().numpy()
