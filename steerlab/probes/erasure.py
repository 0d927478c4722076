"""Concept erasure: LEACE (closed form) and INLP (iterative nullspace projection).

* LEACE: Belrose et al., "LEACE: Perfect linear concept erasure in closed form", via
  the ``concept-erasure`` package: the smallest edit after which no linear classifier
  beats a constant predictor on the fitting data.
* INLP: Ravfogel et al., "Null It Out: Guarding Protected Attributes by Iterative
  Nullspace Projection": train a linear classifier, project its direction out, repeat.

Ying et al. ("The Truthfulness Spectrum Hypothesis") use both to separate
domain-general from domain-specific truth directions. Check an eraser with
:func:`probe_after_erasure`: a fresh probe fitted on erased data should be at chance
on held-out erased data.

Example:
    >>> from steerlab.probes import INLPEraser, make_teacher_student
    >>> X, y, _ = make_teacher_student(400, 6, mean_shift=2.0, seed=0)
    >>> eraser = INLPEraser(n_iterations=2).fit(X, y)
    >>> eraser.directions_.shape, eraser.transform(X).shape
    ((2, 6), (400, 6))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from steerlab.probes.base import LinearProbe
from steerlab.probes.metrics import accuracy
from steerlab.probes.raptor import LogisticDirection
from steerlab.probes.splits import stratified_split
from steerlab.probes.validation import (as_activation_matrix, check_estimator, check_fitted, check_fraction,
                                        check_labels, check_number, check_width)

_ONE_LAYER = "erasure works on one layer: select it, e.g. X[:, layer_slot] or acts.layer(l)"


class LeaceEraser:
    """LEACE fitted on ``X [n, d]`` and labels; ``transform(X)`` erases the concept (concept-erasure package)."""

    def fit(self, X: Any, y: Any) -> "LeaceEraser":
        """Fit on one layer's rows ``X [n, d]`` and binary labels ``y [n]``."""
        from concept_erasure import LeaceEraser as _Leace

        values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
        y01, _ = check_labels(y, len(values))
        self.eraser_ = _Leace.fit(values, torch.as_tensor(y01))
        self.d_model_ = values.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``X [n, d]`` with the concept erased."""
        check_fitted(self, "eraser_")
        values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
        check_width(values, self.d_model_, None)
        return self.eraser_(values).numpy()

    def __repr__(self) -> str:
        return f"LeaceEraser({'fitted' if hasattr(self, 'eraser_') else 'not fitted'})"


class INLPEraser:
    """INLP: ``n_iterations`` rounds of "fit a linear probe, remove its direction".

    Fitted attributes: ``directions_`` ``[n_iterations, d]`` orthonormal removed directions,
    ``accuracies_`` training accuracy of each round's probe (it falls to chance).
    """

    def __init__(self, n_iterations: int = 10, probe: LinearProbe | None = None):
        self.n_iterations = n_iterations
        self.probe = probe or LogisticDirection(C=1.0)

    def fit(self, X: Any, y: Any) -> "INLPEraser":
        """Fit on one layer's rows ``X [n, d]`` and binary labels ``y [n]``."""
        check_number(self.n_iterations, "n_iterations", minimum=1, integer=True)
        check_estimator(self.probe)
        values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
        y01, _ = check_labels(y, len(values))
        current = values.numpy()
        basis: list[np.ndarray] = []
        self.accuracies_ = []
        for _ in range(self.n_iterations):
            probe = self.probe.clone().fit(current, y01)
            self.accuracies_.append(accuracy(y01, probe.decision_function(current)))
            direction = np.asarray(probe.coef_, dtype=np.float64)
            for previous in basis:  # keep the removed directions orthonormal
                direction = direction - (direction @ previous) * previous
            norm = np.linalg.norm(direction)
            if norm < 1e-8:
                break
            basis.append(direction / norm)
            current = self._project(values.numpy(), np.stack(basis))
        self.directions_ = np.stack(basis) if basis else np.zeros((0, values.shape[1]))
        return self

    @staticmethod
    def _project(X: np.ndarray, basis: np.ndarray) -> np.ndarray:
        return X - (X @ basis.T) @ basis

    def transform(self, X: Any) -> np.ndarray:
        """``X [n, d]`` minus its projection on the removed directions."""
        check_fitted(self, "directions_")
        values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
        check_width(values, self.directions_.shape[1], None)
        return self._project(values.numpy(), self.directions_)

    def __repr__(self) -> str:
        fitted = f", removed {len(self.directions_)} directions" if hasattr(self, "directions_") else ""
        return f"INLPEraser(n_iterations={self.n_iterations}{fitted})"


def probe_after_erasure(eraser: Any, X: Any, y: Any, probe: LinearProbe | None = None, test_fraction: float = 0.3,
                        seed: int = 0) -> dict[str, float]:
    """Fit ``eraser`` and a probe on a train split, report held-out accuracy before and after erasure.

    Returns ``{"accuracy_before", "accuracy_after", "chance"}`` (chance = majority-class share of the test split).
    """
    check_estimator(eraser, "eraser", ("fit", "transform"))
    if probe is not None:
        check_estimator(probe)
    check_fraction(test_fraction, "test_fraction")
    values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
    y01, _ = check_labels(y, len(values))
    train, test = stratified_split(y01, test_fraction, seed)
    data = values.numpy()
    probe = probe or LogisticDirection(C=1.0)
    before = probe.clone().fit(data[train], y01[train]).decision_function(data[test])
    eraser.fit(data[train], y01[train])
    after = probe.clone().fit(eraser.transform(data[train]), y01[train]).decision_function(eraser.transform(data[test]))
    share = y01[test].mean()
    return {"accuracy_before": accuracy(y01[test], before), "accuracy_after": accuracy(y01[test], after),
            "chance": float(max(share, 1 - share))}
