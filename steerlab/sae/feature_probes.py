"""Probing concepts with SAE latents: each latent's AUROC, and k-sparse probes.

* :func:`latent_aurocs`: every latent's activation used alone as a detector
  (AUROC > 0.5: fires more on the positive class).
* :class:`SparseProbe`: "Finding Neurons in a Haystack" (Gurnee et al.): choose k latents
  on the training split (by standardised mean difference or by |AUROC - 0.5|), then
  fit an L2 logistic regression on those k only. k = 1 localises the concept in one latent.
* :func:`k_sparse_curve`: held-out AUROC and accuracy of the sparse probe for k = 1..64.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 100)
    >>> Z = rng.exponential(size=(200, 50)) * (rng.random((200, 50)) < 0.2)   # sparse latents
    >>> Z[:, 7] += 2.0 * y                                                  # latent 7 carries the concept
    >>> probe = SparseProbe(k=1).fit(Z, y)
    >>> probe.features_.tolist(), probe.score(Z, y) > 0.9
    ([7], True)
    >>> int(latent_aurocs(Z, y).argmax()), bool(latent_aurocs(Z, y)[7] > 0.95)
    (7, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

KS = (1, 2, 4, 8, 16, 32, 64)
SELECTIONS = ("mean_diff", "auroc")


def _as_numpy(values: Any) -> np.ndarray:
    return values.detach().cpu().float().numpy() if hasattr(values, "detach") else np.asarray(values, dtype=np.float32)


def _check_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"Got {len(y)} labels for {n} rows of latents.")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError("Labels must be binary 0/1 with both classes present.")
    return y


def latent_aurocs(latents: Any, labels: Any) -> np.ndarray:
    """``[d_sae]``: AUROC of each latent ``[n, d_sae]`` for ``labels`` ``[n]`` (ties averaged; Mann-Whitney)."""
    Z = _as_numpy(latents)
    y = _check_labels(labels, len(Z)).astype(bool)
    ranks = rankdata(Z, axis=0)  # [n, d_sae], average ranks on ties (many zeros)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def selection_scores(latents: Any, labels: Any, selection: str = "mean_diff") -> np.ndarray:
    """``[d_sae]`` how strongly each latent separates the classes (higher = better; sign-free)."""
    Z = _as_numpy(latents)
    y = _check_labels(labels, len(Z)).astype(bool)
    if selection == "mean_diff":
        return np.abs(Z[y].mean(axis=0) - Z[~y].mean(axis=0)) / (Z.std(axis=0) + 1e-6)
    if selection == "auroc":
        return np.abs(latent_aurocs(Z, y) - 0.5)
    raise ValueError(f"Unknown selection {selection!r}: choose one of {', '.join(SELECTIONS)}.")


class SparseProbe:
    """A logistic probe on the ``k`` latents chosen on the training data (sklearn conventions).

    Args:
        k: number of latents kept.
        selection: ``"mean_diff"`` (|mean difference| / std) or ``"auroc"`` (|AUROC - 0.5|).
        C: inverse L2 strength of the logistic regression on the standardised k latents.

    Fitted attributes: ``features_`` ``[k]`` (best first), ``coef_`` ``[k]``, ``intercept_``,
    ``mean_`` / ``scale_`` ``[k]`` (the standardisation).
    """

    def __init__(self, k: int = 1, selection: str = "mean_diff", C: float = 1.0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        if selection not in SELECTIONS:
            raise ValueError(f"Unknown selection {selection!r}: choose one of {', '.join(SELECTIONS)}.")
        self.k, self.selection, self.C = k, selection, C

    def fit(self, latents: Any, labels: Any) -> "SparseProbe":
        Z = _as_numpy(latents)
        y = _check_labels(labels, len(Z))
        self.features_ = np.argsort(-selection_scores(Z, y, self.selection), kind="stable")[: self.k]
        chosen = Z[:, self.features_]
        self.mean_, self.scale_ = chosen.mean(axis=0), chosen.std(axis=0) + 1e-6
        model = LogisticRegression(C=self.C, max_iter=1000).fit((chosen - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = model.coef_[0], float(model.intercept_[0])
        return self

    def decision_function(self, latents: Any) -> np.ndarray:
        """``[n]`` logits."""
        if not hasattr(self, "features_"):
            raise ValueError("This SparseProbe is not fitted: call fit(latents, labels) first.")
        chosen = _as_numpy(latents)[:, self.features_]
        return ((chosen - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_proba(self, latents: Any) -> np.ndarray:
        """``[n, 2]`` class probabilities."""
        p = 1 / (1 + np.exp(-self.decision_function(latents)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, latents: Any) -> np.ndarray:
        return (self.decision_function(latents) > 0).astype(np.int64)

    def score(self, latents: Any, labels: Any) -> float:
        """Accuracy."""
        return float((self.predict(latents) == np.asarray(labels)).mean())

    def auroc(self, latents: Any, labels: Any) -> float:
        return float(roc_auc_score(np.asarray(labels), self.decision_function(latents)))


def k_sparse_curve(train_latents: Any, train_labels: Any, test_latents: Any, test_labels: Any,
                   ks: Sequence[int] = KS, selection: str = "mean_diff") -> list[dict[str, Any]]:
    """Rows ``{k, selection, auroc, accuracy, features}`` of sparse probes fit on train, scored on test."""
    rows = []
    for k in ks:
        probe = SparseProbe(k=k, selection=selection).fit(train_latents, train_labels)
        rows.append({"k": int(k), "selection": selection, "auroc": probe.auroc(test_latents, test_labels),
                     "accuracy": probe.score(test_latents, test_labels),
                     "features": probe.features_[:8].tolist()})
    return rows
