"""Probe metrics (accuracy, AUROC, ECE) and temperature scaling, in numpy.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1]); s = np.array([-2.0, 0.5, 0.1, 3.0])
    >>> accuracy(y, s), auroc(y, s)
    (0.75, 0.75)
    >>> t = fit_temperature(y, s); round(expected_calibration_error(y, s / t), 3) <= round(expected_calibration_error(y, s), 3)
    True
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))  # overflow-free logistic


def accuracy(y01: np.ndarray, logits: np.ndarray) -> float:
    """Share of ``logits [n]`` on the right side of 0 for labels ``y01 [n]``."""
    return float(((np.asarray(logits) > 0) == (np.asarray(y01) == 1)).mean())


def auroc(y01: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); nan with one class."""
    y01, scores = np.asarray(y01), np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int((y01 == 1).sum()), int((y01 == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.r_[0, boundaries]
    ends = np.r_[boundaries, len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[y01 == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(y01: np.ndarray, logits: np.ndarray, n_bins: int = 10) -> float:
    """ECE of ``P(class 1) = sigmoid(logits)``: equal-width bins of the predicted class's confidence."""
    p = sigmoid(logits)
    predicted = p > 0.5
    confidence = np.where(predicted, p, 1 - p)
    correct = predicted == (np.asarray(y01) == 1)
    bins = np.minimum(((confidence - 0.5) * 2 * n_bins).astype(int), n_bins - 1)  # confidence in [0.5, 1]
    ece = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def fit_temperature(y01: np.ndarray, logits: np.ndarray, iterations: int = 50) -> float:
    """Temperature ``T`` minimising the log loss of ``sigmoid(logits / T)`` (Guo et al., "On Calibration
    of Modern Neural Networks"); Newton's method on ``log(1/T)``, which is convex in ``1/T``."""
    z = np.asarray(logits, dtype=np.float64)
    y = (np.asarray(y01) == 1).astype(np.float64)
    inverse = 1.0
    for _ in range(iterations):
        p = sigmoid(inverse * z)
        gradient = ((p - y) * z).sum()
        hessian = (p * (1 - p) * z * z).sum() + 1e-12
        step = gradient / hessian
        inverse = max(inverse - step, 1e-6)
        if abs(step) < 1e-10 * max(inverse, 1.0):
            break
    return float(1.0 / inverse)


class TemperatureScaler:
    """Calibrate a probe's logits: ``fit(y, logits)`` then ``transform(logits) = logits / T``.

    Example:
        >>> import numpy as np
        >>> ts = TemperatureScaler().fit(np.array([0, 1, 0, 1]), np.array([-9.0, 9.0, 8.0, -8.0]))
        >>> ts.temperature_ > 1
        True
    """

    def fit(self, y01: np.ndarray, logits: np.ndarray) -> "TemperatureScaler":
        self.temperature_ = fit_temperature(y01, logits)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits) / self.temperature_

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        p = sigmoid(self.transform(logits))
        return np.stack([1 - p, p], axis=-1)

    def __repr__(self) -> str:
        return f"TemperatureScaler(temperature_={getattr(self, 'temperature_', None)})"
