"""The scikit-learn base every steerlab probe shares: binary classifiers whose ``__init__`` only stores parameters.

``get_params`` / ``set_params`` come from ``sklearn.base.BaseEstimator``, so ``sklearn.base.clone``,
``GridSearchCV``, ``cross_val_score`` and pipelines work; the tags tell scikit-learn's estimator
checks that the probes are binary (they refuse a third class with an error naming the fix).

Example:
    >>> import numpy as np
    >>> from sklearn.base import clone
    >>> from steerlab.probes import LDA
    >>> probe = clone(LDA(shrinkage=0.1)).set_params(shrinkage=0.2)
    >>> probe.get_params()["shrinkage"]
    0.2
"""

from __future__ import annotations

from typing import Any, TypeVar

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.base import clone as sklearn_clone

Self = TypeVar("Self", bound="BinaryClassifier")


class BinaryClassifier(ClassifierMixin, BaseEstimator):
    """A two-class scikit-learn classifier with a ``clone(**overrides)`` shortcut."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # two classes only: the checks then use two-class data
        return tags

    def clone(self: Self, **overrides: Any) -> Self:
        """An unfitted copy with the same parameters, some replaced (``sklearn.base.clone`` + ``set_params``)."""
        return sklearn_clone(self).set_params(**overrides)
