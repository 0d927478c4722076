"""Probing concepts with SAE latents: each latent's AUROC, and k-sparse probes.

* :func:`latent_aurocs`: every latent's activation used alone as a detector
  (AUROC > 0.5: fires more on the positive class).
* :class:`SparseProbe`: "Finding Neurons in a Haystack" (Gurnee et al.): choose k latents
  on the training split (by standardised mean difference or by |AUROC - 0.5|), then
  fit an L2 logistic regression on those k only. k = 1 localises the concept in one latent.
* :func:`k_sparse_curve`: held-out AUROC and accuracy of the sparse probe for k = 1..64;
* :func:`choose_k`: the k to report, chosen by cross-validation on the training split only
  (picking the best k on the held-out split would report an optimistic number);
* :func:`chosen_k_held_out`: that k's held-out score beside its CV score, FLAGGED (and warned
  about) when they disagree by more than :data:`CV_HELD_OUT_TOLERANCE`: a CV AUROC of 1.00 with
  a held-out 0.51 means the latents that separate the training entities do not carry the
  concept to new ones, and the CV number must not be read as the probe's quality.

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

import warnings
from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from steerlab.probes.estimator import BinaryClassifier
from steerlab.probes.metrics import auroc, sigmoid
from steerlab.probes.validation import NotFittedError, ProbeInputError, as_activation_tensor, check_labels

KS = (1, 2, 4, 8, 16, 32, 64)
SELECTIONS = ("mean_diff", "auroc")
CV_FOLDS = 5
CV_HELD_OUT_TOLERANCE = 0.05  # |CV AUROC - held-out AUROC| above this is flagged as a disagreement


def _latent_matrix(latents: Any) -> np.ndarray:
    """Latents ``[n, d_sae]`` (tensor or array) as a finite float32 array; clear errors otherwise."""
    tensor, _ = as_activation_tensor(latents)
    if tensor.ndim != 2:
        raise ProbeInputError(f"Latents must be [n, d_sae], got shape {tuple(tensor.shape)}: encode one "
                              "layer's activations (steerlab.sae.encode_latents) per call.")
    return tensor.numpy()


def _binary_labels(labels: Any, n: int, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(y01 [n] int64, classes [2])`` via :func:`check_labels`; soft labels (probabilities) are refused."""
    values = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        raise ProbeInputError(f"Labels must be class labels (e.g. 0/1), got non-integer values such as "
                              f"{values[values != np.round(values)][:3].tolist()}: threshold soft labels "
                              "first, e.g. (p > 0.5).astype(int).")
    return check_labels(values, n, classes)


def latent_aurocs(latents: Any, labels: Any) -> np.ndarray:
    """``[d_sae]``: AUROC of each latent ``[n, d_sae]`` for ``labels`` ``[n]`` (ties averaged; Mann-Whitney).

    The positive class is the larger label (1 for 0/1 labels).
    """
    Z = _latent_matrix(latents)
    y = _binary_labels(labels, len(Z))[0].astype(bool)
    ranks = rankdata(Z, axis=0)  # [n, d_sae], average ranks on ties (many zeros)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return (ranks[y].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def selection_scores(latents: Any, labels: Any, selection: str = "mean_diff") -> np.ndarray:
    """``[d_sae]`` how strongly each latent separates the classes (higher = better; sign-free)."""
    Z = _latent_matrix(latents)
    y = _binary_labels(labels, len(Z))[0].astype(bool)
    if selection == "mean_diff":
        return np.abs(Z[y].mean(axis=0) - Z[~y].mean(axis=0)) / (Z.std(axis=0) + 1e-6)
    if selection == "auroc":
        return np.abs(latent_aurocs(Z, y) - 0.5)
    raise ValueError(f"Unknown selection {selection!r}: choose one of {', '.join(SELECTIONS)}.")


class SparseProbe(BinaryClassifier):
    """A logistic probe on the ``k`` latents chosen on the training data (sklearn conventions).

    Args:
        k: number of latents kept (at most the number of latents).
        selection: ``"mean_diff"`` (|mean difference| / std) or ``"auroc"`` (|AUROC - 0.5|).
        C: inverse L2 strength of the logistic regression on the standardised k latents.

    Fitted attributes: ``classes_`` ``[2]`` (``predict`` returns these; the second is the
    positive class), ``features_`` ``[k]`` (best first), ``coef_`` ``[k]``, ``intercept_``,
    ``mean_`` / ``scale_`` ``[k]`` (the standardisation).
    """

    def __init__(self, k: int = 1, selection: str = "mean_diff", C: float = 1.0):
        self.k = k
        self.selection = selection
        self.C = C

    def fit(self, X: Any, y: Any) -> "SparseProbe":
        """Choose the ``k`` latents on the SAE latents ``X [n, d_sae]`` and fit a logistic regression on them."""
        if not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}.")
        if self.selection not in SELECTIONS:
            raise ValueError(f"Unknown selection {self.selection!r}: choose one of {', '.join(SELECTIONS)}.")
        Z = _latent_matrix(X)
        self.n_features_in_ = Z.shape[1]
        if self.k > Z.shape[1]:
            raise ProbeInputError(f"k={self.k} but the latents have only {Z.shape[1]} columns: "
                                  f"pass k <= {Z.shape[1]}.")
        y, self.classes_ = _binary_labels(y, len(Z))
        self.features_ = np.argsort(-selection_scores(Z, y, self.selection), kind="stable")[: self.k]
        chosen = Z[:, self.features_]  # [n, k]
        self.mean_, self.scale_ = chosen.mean(axis=0), chosen.std(axis=0) + 1e-6
        model = LogisticRegression(C=self.C, max_iter=1000).fit((chosen - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = model.coef_[0], float(model.intercept_[0])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "features_"):
            raise NotFittedError("This SparseProbe is not fitted: call fit(latents, labels) first.")

    def decision_function(self, latents: Any) -> np.ndarray:
        """``[n]`` logits (positive: ``classes_[1]``)."""
        self._check_fitted()
        Z = _latent_matrix(latents)
        if Z.shape[1] != self.n_features_in_:
            raise ProbeInputError(f"X has {Z.shape[1]} features, but SparseProbe is expecting {self.n_features_in_} "
                                  "features as input (latents of the SAE it was fitted on): encode with the same SAE.")
        chosen = Z[:, self.features_]
        return ((chosen - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_proba(self, latents: Any) -> np.ndarray:
        """``[n, 2]`` class probabilities (columns in ``classes_`` order)."""
        p = sigmoid(self.decision_function(latents))
        return np.stack([1 - p, p], axis=1)

    def predict(self, latents: Any) -> np.ndarray:
        """``[n]`` predicted labels, from ``classes_``."""
        self._check_fitted()
        return self.classes_[(self.decision_function(latents) > 0).astype(np.int64)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on latents ``X [n, d_sae]`` (labels ``y`` checked against ``classes_``)."""
        logits = self.decision_function(X)
        y = _binary_labels(y, len(logits), self.classes_)[0]
        return float(((logits > 0) == (y == 1)).mean())

    def auroc(self, latents: Any, labels: Any) -> float:
        """Held-out AUROC of the logits (nan if ``labels`` hold one class only)."""
        logits = self.decision_function(latents)
        y = _binary_labels(labels, len(logits), self.classes_)[0]
        return auroc(y, logits)


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


def choose_k(train_latents: Any, train_labels: Any, ks: Sequence[int] = KS, selection: str = "mean_diff",
             folds: int = CV_FOLDS, seed: int = 0, groups: Any = None) -> dict[str, Any]:
    """``{k, cv_auroc, folds, cv_aurocs}``: the k with the best mean AUROC over stratified folds of the TRAIN split.

    Latent selection and the logistic fit are redone inside every fold, so the held-out
    split never influences k (ties go to the smaller k). Pass ``groups`` ``[n]`` (e.g. the
    entity of each row) to keep a group inside one fold: without it, rows about an entity
    the model memorised land on both sides and k=1 looks perfect.
    """
    Z = _latent_matrix(train_latents)
    y = _binary_labels(train_labels, len(Z))[0]
    if groups is None:
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(Z, y))
    else:
        splits = list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(Z, y, np.asarray(groups)))
    means = {}
    for k in ks:
        scores = [SparseProbe(k=k, selection=selection).fit(Z[fit], y[fit]).auroc(Z[held], y[held])
                  for fit, held in splits]
        means[int(k)] = float(np.mean(scores))
    best = max(means, key=lambda k: (means[k], -k))
    return {"k": best, "cv_auroc": means[best], "folds": folds, "cv_aurocs": means}


def chosen_k_held_out(train_latents: Any, train_labels: Any, test_latents: Any, test_labels: Any,
                      ks: Sequence[int] = KS, selection: str = "mean_diff", folds: int = CV_FOLDS, seed: int = 0,
                      groups: Any = None, tolerance: float = CV_HELD_OUT_TOLERANCE) -> dict[str, Any]:
    """k chosen by :func:`choose_k` on train, then scored on the held-out split, with a disagreement flag.

    Returns ``{k, folds, cv_auroc, test_auroc, test_accuracy, gap, agrees, flag}``: ``gap`` is
    ``test_auroc - cv_auroc``; ``agrees`` is ``|gap| <= tolerance``; ``flag`` is ``""`` when they
    agree, else a sentence saying which number to believe (also raised as a UserWarning).
    """
    chosen = choose_k(train_latents, train_labels, ks=ks, selection=selection, folds=folds, seed=seed, groups=groups)
    probe = SparseProbe(k=chosen["k"], selection=selection).fit(train_latents, train_labels)
    test_auroc, test_accuracy = probe.auroc(test_latents, test_labels), probe.score(test_latents, test_labels)
    gap = test_auroc - chosen["cv_auroc"]
    agrees = bool(abs(gap) <= tolerance)
    flag = cv_held_out_flag(chosen["k"], chosen["cv_auroc"], test_auroc, tolerance)
    if flag:
        warnings.warn(flag, UserWarning, stacklevel=2)
    return {"k": chosen["k"], "folds": chosen["folds"], "cv_auroc": chosen["cv_auroc"], "test_auroc": test_auroc,
            "test_accuracy": test_accuracy, "gap": gap, "agrees": agrees, "flag": flag}


def cv_held_out_flag(k: int, cv_auroc: float, test_auroc: float, tolerance: float = CV_HELD_OUT_TOLERANCE) -> str:
    """``""`` when ``|test_auroc - cv_auroc| <= tolerance``, else the sentence that flags the disagreement.

    The check behind :func:`chosen_k_held_out`, for results computed elsewhere (e.g. a saved benchmark's
    chosen k and the held-out AUROC of that k).
    """
    gap = test_auroc - cv_auroc
    if abs(gap) <= tolerance:
        return ""
    return (f"CV and held-out disagree: k={k} has CV AUROC {cv_auroc:.3f} on the train split but "
            f"{test_auroc:.3f} held out (gap {gap:+.3f}, tolerance {tolerance}): "
            + ("the held-out split is the honest number (the train folds share something the held-out rows do not: "
               "entities, templates, or a memorised fact)." if gap < 0 else
               "the held-out split is easier than the train folds; read both with their sizes in mind."))
