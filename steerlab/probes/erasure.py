"""Concept erasure: LEACE (closed form) and INLP (iterative nullspace projection).

* LEACE: Belrose et al., "LEACE: Perfect linear concept erasure in closed form", via
  the ``concept-erasure`` package: the smallest edit after which no linear classifier
  beats a constant predictor on the fitting data.
* INLP: Ravfogel et al., "Null It Out: Guarding Protected Attributes by Iterative
  Nullspace Projection": train a linear classifier, project its direction out, repeat.

Ying et al. ("The Truthfulness Spectrum Hypothesis") use both to separate
domain-general from domain-specific truth directions. Check an eraser with
:func:`probe_after_erasure`: a fresh probe fitted on erased data should be at chance
on held-out erased data. :func:`erase_from_domains` erases the direction shared by
several domains and hands the erased data back to ``transfer_matrix``.

Example:
    >>> from steerlab.probes import INLPEraser, make_teacher_student
    >>> X, y, _ = make_teacher_student(400, 6, mean_shift=2.0, seed=0)
    >>> eraser = INLPEraser(n_iterations=2).fit(X, y)
    >>> eraser.directions_.shape, eraser.transform(X).shape
    ((2, 6), (400, 6))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from steerlab.probes.base import LinearProbe
from steerlab.probes.metrics import accuracy, auroc
from steerlab.probes.raptor import LogisticDirection
from steerlab.probes.splits import split
from steerlab.probes.transfer import split_domains
from steerlab.probes.validation import (ProbeInputError, as_activation_matrix, as_groups, check_estimator,
                                        check_fitted, check_fraction, check_labels, check_number, check_width)

_ONE_LAYER = "erasure works on one layer: select it, e.g. X[:, layer_slot] or acts.layer(l)"


class LeaceEraser(TransformerMixin, BaseEstimator):
    """LEACE fitted on ``X [n, d]`` and labels; ``transform(X)`` erases the concept (concept-erasure package).

    A scikit-learn transformer: it goes in a ``Pipeline`` before a probe."""

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
        check_width(values, self.d_model_, None, type(self).__name__)
        return self.eraser_(values).numpy()

    def __repr__(self) -> str:
        return f"LeaceEraser({'fitted' if hasattr(self, 'eraser_') else 'not fitted'})"


class INLPEraser(TransformerMixin, BaseEstimator):
    """INLP: ``n_iterations`` rounds of "fit a linear probe, remove its direction" (a scikit-learn transformer).

    ``probe``: the linear probe refitted each round (default: ``LogisticDirection(C=1.0)``).

    Fitted attributes: ``directions_`` ``[n_iterations, d]`` orthonormal removed directions,
    ``accuracies_`` training accuracy of each round's probe (it falls to chance).
    """

    def __init__(self, n_iterations: int = 10, probe: LinearProbe | None = None):
        self.n_iterations = n_iterations
        self.probe = probe

    def fit(self, X: Any, y: Any) -> "INLPEraser":
        """Fit on one layer's rows ``X [n, d]`` and binary labels ``y [n]``."""
        check_number(self.n_iterations, "n_iterations", minimum=1, integer=True)
        probe = LogisticDirection(C=1.0) if self.probe is None else self.probe
        check_estimator(probe)
        values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
        y01, _ = check_labels(y, len(values))
        current = values.numpy()
        basis: list[np.ndarray] = []
        self.accuracies_ = []
        for _ in range(self.n_iterations):
            fitted = probe.clone().fit(current, y01)
            self.accuracies_.append(accuracy(y01, fitted.decision_function(current)))
            direction = np.asarray(fitted.coef_, dtype=np.float64)
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
        check_width(values, self.directions_.shape[1], None, type(self).__name__)
        return self._project(values.numpy(), self.directions_)

    def __repr__(self) -> str:
        fitted = f", removed {len(self.directions_)} directions" if hasattr(self, "directions_") else ""
        return f"INLPEraser(n_iterations={self.n_iterations}{fitted})"


def probe_after_erasure(eraser: Any, X: Any, y: Any, probe: LinearProbe | None = None, test_fraction: float = 0.3,
                        seed: int = 0, groups: Any = None) -> dict[str, float]:
    """Fit ``eraser`` and a probe on a train split, report held-out accuracy and AUROC before and after erasure.

    ``groups`` (e.g. the entity of each row) makes the split a group split, so no entity is on
    both sides. Returns ``{"accuracy_before", "accuracy_after", "auroc_before", "auroc_after",
    "chance"}`` (chance = majority-class share of the test split).
    """
    check_estimator(eraser, "eraser", ("fit", "transform"))
    if probe is not None:
        check_estimator(probe)
    check_fraction(test_fraction, "test_fraction")
    values = as_activation_matrix(X, torch.float64, _ONE_LAYER)
    y01, _ = check_labels(y, len(values))
    train, test = split(y01, test_fraction, seed, as_groups(groups, len(values)))
    data = values.numpy()
    probe = probe or LogisticDirection(C=1.0)
    before = probe.clone().fit(data[train], y01[train]).decision_function(data[test])
    eraser.fit(data[train], y01[train])
    after = probe.clone().fit(eraser.transform(data[train]), y01[train]).decision_function(eraser.transform(data[test]))
    share = y01[test].mean()
    return {"accuracy_before": accuracy(y01[test], before), "accuracy_after": accuracy(y01[test], after),
            "auroc_before": auroc(y01[test], before), "auroc_after": auroc(y01[test], after),
            "chance": float(max(share, 1 - share))}


def inlp_rounds_curve(X: Any, y: Any, rounds: Sequence[int], probe: LinearProbe | None = None,
                      test_fraction: float = 0.3, seed: int = 0, groups: Any = None) -> list[dict[str, float]]:
    """Held-out AUROC and accuracy of a fresh probe after the first ``k`` INLP rounds, for each ``k`` in ``rounds``.

    One :class:`INLPEraser` of ``max(rounds)`` rounds is fitted on the train split (a group split
    with ``groups``); round ``k`` keeps its first ``k`` removed directions. Where the training rows
    are fewer than the dimension, each round's probe finds another separating direction, so INLP
    can need many rounds before a fresh probe is at chance: this curve shows how many.
    Returns one ``{"rounds", "removed", "auroc_after", "accuracy_after", "train_accuracy"}`` per ``k``.
    """
    check_fraction(test_fraction, "test_fraction")
    counts = [int(check_number(k, "rounds entry", minimum=1, integer=True)) for k in rounds]
    if not counts:
        raise ProbeInputError("rounds is empty: pass the numbers of INLP rounds to measure, e.g. [10, 50, 100].")
    probe = probe or LogisticDirection(C=1.0)
    check_estimator(probe)
    values = as_activation_matrix(X, torch.float64, _ONE_LAYER).numpy()
    y01, _ = check_labels(y, len(values))
    train, test = split(y01, test_fraction, seed, as_groups(groups, len(values)))
    eraser = INLPEraser(n_iterations=max(counts), probe=probe).fit(values[train], y01[train])
    curve = []
    for k in counts:
        basis = eraser.directions_[:k]
        erased_train, erased_test = (INLPEraser._project(values[index], basis) for index in (train, test))
        scores = probe.clone().fit(erased_train, y01[train]).decision_function(erased_test)
        curve.append({"rounds": k, "removed": len(basis), "auroc_after": auroc(y01[test], scores),
                      "accuracy_after": accuracy(y01[test], scores),
                      "train_accuracy": float(eraser.accuracies_[min(k, len(eraser.accuracies_)) - 1])})
    return curve


def erase_from_domains(domains: Mapping[str, Any], eraser: Any, fit_on: Sequence[str] | None = None,
                       test_fraction: float = 0.2, seed: int = 0
                       ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Erase the truth direction shared by ``fit_on`` domains from every domain.

    Each domain is split as :func:`~steerlab.probes.transfer_matrix` splits it; ``eraser`` is fitted on
    the union of the training splits of ``fit_on`` (default: all domains, i.e. the domain-general
    direction of Ying et al., "The Truthfulness Spectrum Hypothesis") and applied to every row.
    The result, ``{name: {"train": (X, y), "test": (X, y)}}``, goes straight back into
    ``transfer_matrix``: its union row is a fresh probe on erased data (at chance when erasure
    worked), its diagonal what is left of each domain's own truth direction.

    Args:
        domains: name -> ``(X [n, d], y [n])`` or ``(X, y, groups)``, or given ``{"train", "test"}`` splits.
        eraser: an unfitted :class:`LeaceEraser` or :class:`INLPEraser` (anything with fit / transform).
        fit_on: the domains whose shared direction is erased.
    """
    check_estimator(eraser, "eraser", ("fit", "transform"))
    data, train_idx, test_idx, _ = split_domains(domains, test_fraction, seed)
    fit_on = list(data) if fit_on is None else list(fit_on)
    unknown = [name for name in fit_on if name not in data]
    if unknown or not fit_on:
        raise ProbeInputError(f"fit_on names {unknown or 'no domain'}; pick from the domains {list(data)}.")
    eraser.fit(np.concatenate([data[n][0][train_idx[n], 0] for n in fit_on]),
               np.concatenate([data[n][1][train_idx[n]] for n in fit_on]))
    return {name: {side: (eraser.transform(X[index, 0]), y01[index])
                   for side, index in (("train", train_idx[name]), ("test", test_idx[name]))}
            for name, (X, y01) in data.items()}
