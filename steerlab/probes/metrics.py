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

from steerlab.probes.validation import (as_groups, check_01_labels, check_fitted, check_number, check_scored_labels,
                                        check_scores)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))  # overflow-free logistic


def accuracy(y01: np.ndarray, logits: np.ndarray) -> float:
    """Share of ``logits [n]`` on the right side of 0 for 0/1 labels ``y01 [n]``."""
    y01, logits = check_scored_labels(y01, logits, "logits")
    return float(((logits > 0) == (y01 == 1)).mean())


def auroc(y01: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half) of 0/1 labels; nan with one class (or none)."""
    y01, scores = check_scored_labels(y01, scores, allow_empty=True)
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
    y01, logits = check_scored_labels(y01, logits, "logits")
    check_number(n_bins, "n_bins", minimum=1, integer=True)
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
    y01, z = check_scored_labels(y01, logits, "logits")
    y = y01.astype(np.float64)
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
        check_fitted(self, "temperature_", "fit(y01, logits)")
        return check_scores(logits, name="logits") / self.temperature_

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        p = sigmoid(self.transform(logits))
        return np.stack([1 - p, p], axis=-1)

    def __repr__(self) -> str:
        return f"TemperatureScaler(temperature_={getattr(self, 'temperature_', None)})"


# ---------------------------------------------------------------- detection at low false-positive rate
# (token-level hallucination detection reports recall at a fixed FPR: Liang & Wang, arXiv 2512.20949;
# Obeso et al., arXiv 2509.03531)


def roc_curve(y01: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr [k], tpr [k], thresholds [k])``: flagging ``scores >= threshold``, from the strictest
    threshold (``inf``: nothing flagged) down to the loosest (everything flagged); ties stay together.

    Example:
        >>> fpr, tpr, _ = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    y01, scores = check_scored_labels(y01, scores)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, positive = scores[order], (y01[order] == 1)
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tp = np.cumsum(positive)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    n_pos, n_neg = max(int(positive.sum()), 1), max(len(scores) - int(positive.sum()), 1)
    return (np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, sorted_scores[last_of_tie]])


def recall_at_fpr(y01: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """Best recall (TPR) of any threshold whose false-positive rate is at most ``max_fpr``; nan with one class
    (or none).

    Example:
        >>> y = np.array([0] * 10 + [1] * 4); s = np.r_[np.arange(10) / 10, [0.95, 0.85, 0.5, 0.05]]
        >>> recall_at_fpr(y, s, 0.0), recall_at_fpr(y, s, 0.1), recall_at_fpr(y, s, 0.5)
        (0.25, 0.5, 0.75)
    """
    y01, scores = check_scored_labels(y01, scores, allow_empty=True)
    check_number(max_fpr, "max_fpr", minimum=0, maximum=1)
    if (y01 == 1).all() or (y01 != 1).all():
        return float("nan")
    fpr, tpr, _ = roc_curve(y01, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def detection_counts(y01: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Accuracy, precision and recall of boolean ``flagged [n]`` against ``y01 [n]`` (precision nan if nothing flagged)."""
    y = check_01_labels(y01, name="y01") == 1
    f = check_01_labels(flagged, len(y), name="flagged") == 1
    tp = int((y & f).sum())
    return {"accuracy": float((y == f).mean()), "precision": tp / int(f.sum()) if f.any() else float("nan"),
            "recall": tp / int(y.sum()) if y.any() else float("nan")}


def best_f1_threshold(y01: np.ndarray, scores: np.ndarray) -> float:
    """The threshold (flag ``scores >= t``) with the highest F1 on ``(y01, scores)``; ties go to the strictest.

    Example:
        >>> best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.35
    """
    y01, scores = check_scored_labels(y01, scores)
    fpr, tpr, thresholds = roc_curve(y01, scores)
    n_pos = int((y01 == 1).sum())
    tp, fp = tpr * n_pos, fpr * (len(y01) - n_pos)
    f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (n_pos - tp)), 0.0)
    return float(thresholds[1:][int(np.argmax(f1[1:]))])


def group_max(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(group ids [g], max score per group [g])``, e.g. an answer's score as the max over its tokens.

    Example:
        >>> group_max(np.array([0.1, 0.9, 0.3]), np.array([5, 5, 7]))
        (array([5, 7]), array([0.9, 0.3]))
    """
    scores = check_scores(scores, allow_empty=True)
    ids, inverse = np.unique(as_groups(groups, len(scores)), return_inverse=True)
    out = np.full(len(ids), -np.inf)
    np.maximum.at(out, inverse, scores)
    return ids, out
