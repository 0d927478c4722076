"""Scoring hallucination detectors per token and per answer, and the output-confidence baselines.

Liang & Wang (arXiv 2512.20949) report accuracy, recall and detection at a low
false-positive rate; Obeso et al. (arXiv 2509.03531) AUROC per token and per span. Here
every detector gives one score per generated token (higher = more likely hallucinated);
an answer's score is the max over its tokens. Baselines from the outputs alone
(:func:`confidence_scores`): ``1 - max probability`` and the entropy of the next-token
distribution that produced the token.

Example:
    >>> import numpy as np
    >>> y = np.array([1, 0, 0, 0, 1, 0]); answer = np.array([0, 0, 1, 1, 2, 2])
    >>> s = np.array([0.9, 0.2, 0.1, 0.3, 0.6, 0.1])
    >>> m = detection_metrics(y, s, answer, threshold=0.5)
    >>> m["token"]["auroc"], m["answer"]["auroc"], m["answer"]["recall"], m["answer"]["n_positive"]
    (1.0, 1.0, 1.0, 2)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from steerlab.probes.metrics import auroc, detection_counts, group_max, recall_at_fpr, sigmoid
from steerlab.probes.validation import (ProbeInputError, as_activation_matrix, as_groups, check_01_labels,
                                        check_estimator, check_n_groups, check_number, check_scored_labels,
                                        check_scores)

FPR_LEVELS = (0.01, 0.05, 0.10)


def confidence_scores(max_prob: np.ndarray, entropy: np.ndarray) -> dict[str, np.ndarray]:
    """The output-only baselines per token: ``{"max_prob": 1 - max_prob, "entropy": entropy}`` (``[n_tokens]`` each)."""
    max_prob = check_scores(max_prob, name="max_prob")
    return {"max_prob": 1.0 - max_prob, "entropy": check_scores(entropy, len(max_prob), "entropy")}


def with_output_odds(probe_scores: np.ndarray, max_prob: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``[n_tokens]`` P(hallucinated) from a probe and the output together: the probe's log-odds plus
    those of ``1 - max_prob`` (a product of odds). A token is flagged strongly when both agree, and
    the probe can overrule a confident output only by a large margin.

    On the demo model this is what beats output confidence without test data (grouped
    cross-validation on the train split: answer AUROC 0.93 vs 0.91; the probe alone ties it).

    >>> with_output_odds(np.array([0.5, 0.9]), np.array([0.5, 0.5])).round(3).tolist()
    [0.5, 0.9]
    """
    def log_odds(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, eps, 1 - eps)
        return np.log(p) - np.log1p(-p)

    probe_scores = check_scores(probe_scores, name="probe_scores")
    return sigmoid(log_odds(probe_scores) + log_odds(1.0 - check_scores(max_prob, len(probe_scores), "max_prob")))


def level_metrics(y01: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, float]:
    """AUROC, recall at FPR <= 1/5/10 %, and accuracy/precision/recall of ``scores >= threshold``."""
    y01, scores = check_scored_labels(y01, scores)
    if threshold is not None:
        check_number(threshold, "threshold")
    out: dict[str, float] = {"auroc": auroc(y01, scores)}
    out |= {f"recall@{round(level * 100)}%fpr": recall_at_fpr(y01, scores, level) for level in FPR_LEVELS}
    if threshold is not None:
        out |= detection_counts(y01, scores >= threshold)
    out |= {"n": int(len(y01)), "n_positive": int((y01 == 1).sum())}
    return out


def detection_metrics(y_token: np.ndarray, scores: np.ndarray, answer_index: np.ndarray,
                      threshold: float | None = None, answer_threshold: float | None = None) -> dict[str, Any]:
    """``{"token": {...}, "answer": {...}}`` metrics of one detector.

    Args:
        y_token: [n_tokens] 0/1 token labels; an answer is hallucinated when any token is.
        scores: [n_tokens] detector scores (higher = hallucinated).
        answer_index: [n_tokens] answer of each token.
        threshold: flag tokens with ``score >= threshold`` for accuracy/precision/recall
            (None: those three are left out).
        answer_threshold: the same for answer scores (default: ``threshold``).
    """
    y_token, scores = check_scored_labels(y_token, scores)
    answer_index = as_groups(answer_index, len(y_token), "answer_index")
    _, answer_scores = group_max(scores, answer_index)
    _, answer_labels = group_max(y_token, answer_index)
    return {"token": level_metrics(y_token, scores, threshold),
            "answer": level_metrics(answer_labels.astype(np.int64), answer_scores,
                                    threshold if answer_threshold is None else answer_threshold)}


def cross_val_scores(probe: Any, X: Any, y_token: np.ndarray, answer_index: np.ndarray, n_splits: int = 5,
                     seed: int = 0) -> np.ndarray:
    """Out-of-fold P(hallucinated) ``[n_tokens]`` of clones of ``probe``: folds keep whole answers
    together and balance hallucinated answers across folds (sklearn ``StratifiedGroupKFold``).

    Args:
        probe: an unfitted token probe (``clone``, ``fit``, ``predict_proba``).
        X: ``[n_tokens, d]`` one layer's probe inputs (``GeneratedTokens.features(...)``).
        y_token: ``[n_tokens]`` 0/1 token labels; answer_index: ``[n_tokens]`` answer ids (arrays or lists).
        n_splits, seed: the folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    check_estimator(probe, methods=("clone", "fit", "predict_proba"))
    check_number(n_splits, "n_splits", minimum=2, integer=True)
    X = as_activation_matrix(X, hint="select one layer, e.g. GeneratedTokens.features(layer)").cpu().numpy()
    y_token, answer_index = np.asarray(y_token), np.asarray(answer_index)
    if not len(X) == len(y_token) == len(answer_index):
        raise ProbeInputError(f"X has {len(X)} rows, y_token {len(y_token)} and answer_index {len(answer_index)}: "
                              "pass one label and one answer id per token row.")
    y_token = check_01_labels(y_token, len(X), "y_token")
    answer_index = as_groups(answer_index, len(X), "answer_index")
    check_n_groups(answer_index, n_splits, f"{n_splits}-fold cross-validation (n_splits)")
    _, inverse = np.unique(answer_index, return_inverse=True)
    answer_label = group_max(y_token, answer_index)[1][inverse]  # stratify by the answer's label
    out = np.empty(len(X))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(X, answer_label, groups=answer_index):
        fitted = probe.clone().fit(X[fit_rows], y_token[fit_rows], groups=answer_index[fit_rows])
        out[held_rows] = fitted.predict_proba(X[held_rows])[:, 1]
    return out


def method_table(results: dict[str, dict[str, Any]], keys: Sequence[str] = ("auroc", "recall@5%fpr")
                 ) -> list[dict[str, Any]]:
    """Rows ``{method, token auroc, ..., answer auroc, ...}`` from ``{method: detection_metrics(...)}``."""
    rows = []
    for method, metrics in results.items():
        row: dict[str, Any] = {"method": method}
        for level in ("token", "answer"):
            row |= {f"{level} {key}": round(float(metrics[level][key]), 3) for key in keys}
        rows.append(row)
    return rows
