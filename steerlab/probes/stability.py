"""Directional stability (RAPTOR's definition) and the penalty trade-off on synthetic data.

Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes": drop a random 20% of the
examples, re-split, refit; repeat K times (K = 20 in the paper) and report the mean
``|cos|`` between the concept vectors of all pairs of runs.

Example:
    >>> from steerlab.probes import DiffMeans, directional_stability, make_teacher_student
    >>> X, y, _ = make_teacher_student(300, 10, seed=0)
    >>> result = directional_stability(DiffMeans(), X, y, runs=5)
    >>> result.stability > 0.9, result.directions.shape
    (True, (5, 10))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from steerlab.probes.base import LinearProbe
from steerlab.probes.logistic_solver import fold_back, solve_l2_logistic, standardize
from steerlab.probes.splits import stratified_split
from steerlab.probes.validation import (ProbeInputError, as_activation_matrix, as_activation_tensor, as_groups,
                                        check_Cs, check_estimator, check_fraction, check_labels, check_number)


@dataclass
class StabilityResult:
    """stability: mean |cos| over pairs of runs (float, or ``[n_layers]``); directions:
    ``[runs, d]`` or ``[runs, n_layers, d]``; fit_seconds: mean wall-clock per fit."""

    stability: float | np.ndarray
    directions: np.ndarray = field(repr=False)
    fit_seconds: float = 0.0


def mean_pairwise_abs_cosine(directions: np.ndarray) -> float | np.ndarray:
    """``directions [runs, ..., d]`` (unit) -> mean |cos| over the ``runs*(runs-1)/2`` pairs."""
    runs = directions.shape[0]
    cosines = np.abs(np.einsum("r...d,s...d->rs...", directions, directions))
    upper = np.triu_indices(runs, k=1)
    result = cosines[upper].mean(0)
    return float(result) if np.ndim(result) == 0 else result


def directional_stability(probe: LinearProbe, X: Any, y: Any, runs: int = 20, drop: float = 0.2, seed: int = 0,
                          groups: Any = None, batched: bool = True) -> StabilityResult:
    """Refit ``probe`` (a fresh clone each run, its split seed changed) on ``runs`` random ``1 - drop``
    subsets (stratified) of ``X`` ``[n, d]`` / ``[n, n_layers, d]``; stability = mean pairwise |cos|.

    A probe with a ``fit_subsets`` method (:class:`~steerlab.probes.RaptorProbe`) solves all runs in one
    batch (``batched=False``: one fit per run, the same directions); ``fit_seconds`` is then the batch's
    time divided by ``runs``.
    """
    check_estimator(probe)
    check_number(runs, "runs", minimum=2, integer=True)
    check_fraction(drop, "drop")
    values, _ = as_activation_tensor(X)
    y01, _ = check_labels(y, len(values))
    groups = as_groups(groups, len(values))
    keeps = [stratified_split(y01, drop, seed + run)[0] for run in range(runs)]
    seeds = [seed + run for run in range(runs)]
    if batched and hasattr(probe, "fit_subsets"):
        start = time.perf_counter()
        stacked = probe.fit_subsets(values, y01, keeps, seeds, groups)
        return StabilityResult(mean_pairwise_abs_cosine(stacked), stacked, (time.perf_counter() - start) / runs)
    directions, seconds = [], []
    for keep, run_seed in zip(keeps, seeds):
        overrides = {"random_state": run_seed} if "random_state" in probe.get_params() else {}
        start = time.perf_counter()
        fitted = probe.clone(**overrides).fit(values[keep], y01[keep], None if groups is None else groups[keep])
        seconds.append(time.perf_counter() - start)
        directions.append(fitted.concept_vector_)
    stacked = np.stack(directions)
    return StabilityResult(mean_pairwise_abs_cosine(stacked), stacked, float(np.mean(seconds)))


@dataclass
class PenaltyPath:
    """Accuracy and stability of L2 logistic probes against C (all runs x all C in one batched solve each).

    Cs: ``[K]``; test_accuracy: ``[K]`` mean over runs; stability: ``[K]`` mean pairwise |cos|;
    teacher_cosine: ``[K]`` mean |cos| with the true direction (nan if unknown).
    """

    Cs: np.ndarray
    test_accuracy: np.ndarray
    stability: np.ndarray
    teacher_cosine: np.ndarray

    def figure(self, title: str = "Ridge penalty: accuracy vs directional stability"):
        from steerlab.probes.figures import penalty_tradeoff_figure

        return penalty_tradeoff_figure(self, title=title)


def penalty_path(X: np.ndarray, y: np.ndarray, Cs: Sequence[float] = tuple(np.logspace(-4, 2, 25)), runs: int = 10,
                 drop: float = 0.2, test_fraction: float = 0.2, w_star: np.ndarray | None = None,
                 seed: int = 0) -> PenaltyPath:
    """For each C: test accuracy and RAPTOR stability of L2 logistic probes on ``X [n, d]``.

    Each run drops ``drop`` of the data (stratified), splits the rest into train/test
    (``test_fraction``), standardises on train and solves every C at once.
    """
    Cs = check_Cs(Cs)
    check_number(runs, "runs", minimum=2, integer=True)
    check_fraction(drop, "drop")
    check_fraction(test_fraction, "test_fraction")
    values = as_activation_matrix(X)
    y01, _ = check_labels(y, len(values))
    if w_star is not None and np.shape(w_star) != (values.shape[1],):
        raise ProbeInputError(f"w_star has shape {np.shape(w_star)} but X has d={values.shape[1]}: pass the "
                              "teacher direction [d] (or None).")
    grid = torch.as_tensor(Cs, dtype=values.dtype)[None]
    directions, accuracies = [], []
    for run in range(runs):
        keep, _ = stratified_split(y01, drop, seed + run)
        train, test = stratified_split(y01[keep], test_fraction, seed + 10_000 + run)
        train, test = keep[train], keep[test]
        X_std, mean, scale = standardize(values[train][None])
        solution = solve_l2_logistic(X_std, torch.as_tensor(y01[train]), grid)
        coef, intercept = fold_back(solution.coef, solution.intercept, mean, scale)  # [1, K, d], [1, K]
        logits = values[test] @ coef[0].T + intercept[0]  # [n_test, K]
        accuracies.append(((logits > 0).numpy() == (y01[test] == 1)[:, None]).mean(0))
        directions.append(torch.nn.functional.normalize(coef[0], dim=-1).numpy())
    stacked = np.stack(directions)  # [runs, K, d]
    teacher = (np.abs(stacked @ (w_star / np.linalg.norm(w_star))).mean(0) if w_star is not None
               else np.full(len(grid[0]), np.nan))
    return PenaltyPath(np.asarray(Cs, dtype=np.float64), np.mean(accuracies, 0), mean_pairwise_abs_cosine(stacked),
                       teacher)
