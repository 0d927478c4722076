"""scikit-learn's estimator contract, for every probe and eraser (issue 18).

The checks are scikit-learn's own (``sklearn.utils.estimator_checks``), the ones about the API
contract: ``__init__`` only stores parameters, ``get_params`` / ``set_params`` / ``clone`` round
trip, fitting returns self and does not touch parameters, unfitted use raises ``NotFittedError``,
``n_features_in_`` is set, results do not depend on row order or batch. Checks about accepting
multi-class targets, sparse matrices or scikit-learn's exact error wording do not apply: the
probes are binary and their errors name steerlab's fix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks

from steerlab.hallucination import HallucinationProbe, LinearTokenProbe, TokenProbe
from steerlab.probes import LDA, DiffMeans, GCSProbe, INLPEraser, LeaceEraser, LogisticDirection, PairedPCA, RaptorProbe
from steerlab.sae.feature_probes import SparseProbe

CONTRACT_CHECKS = {
    "check_no_attributes_set_in_init", "check_parameters_default_constructible", "check_get_params_invariance",
    "check_set_params", "check_estimators_unfitted", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self", "check_fit_score_takes_y",
    "check_n_features_in_after_fitting", "check_fit_check_is_fitted", "check_fit_idempotent",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_dict_unchanged",
    "check_estimators_dtypes", "check_estimator_repr", "check_estimator_cloneable", "check_classifiers_one_label",
}
ERASER_CHECKS = {  # the erasers are binary too, but scikit-learn's transformer checks fit on multi-class y
    "check_no_attributes_set_in_init", "check_parameters_default_constructible", "check_get_params_invariance",
    "check_set_params", "check_estimator_repr", "check_estimator_cloneable",
}
CLASSIFIERS = [DiffMeans(), LDA(), PairedPCA(), LogisticDirection(), RaptorProbe(Cs=4), GCSProbe(n_probes=20, n_samples=50),
               HallucinationProbe(hidden=(8,), max_epochs=3), LinearTokenProbe(max_epochs=3, anneal_epochs=1),
               SparseProbe(k=1)]


def _results(estimator, wanted):
    """Run scikit-learn's checks named in ``wanted`` (each on a fresh clone): (names run, failures)."""
    failed = []
    for name in sorted(wanted):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                getattr(estimator_checks, name)(type(estimator).__name__, clone(estimator))
            except Exception as error:  # noqa: BLE001 - every failure is reported with its check's name
                failed.append((name, f"{type(error).__name__}: {str(error)[:300]}"))
    return set(wanted), failed


TOKEN_LABELS_ONLY_01 = {"check_estimators_dtypes"}  # token probes take 0/1 labels only (1 = hallucinated)


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=lambda e: type(e).__name__)
def test_classifiers_follow_the_sklearn_contract(estimator):
    wanted = CONTRACT_CHECKS - TOKEN_LABELS_ONLY_01 if isinstance(estimator, TokenProbe) else CONTRACT_CHECKS
    ran, failed = _results(estimator, wanted)
    assert not failed, failed
    assert {"check_no_attributes_set_in_init", "check_estimators_unfitted", "check_fit_idempotent"} <= ran


@pytest.mark.parametrize("estimator", [LeaceEraser(), INLPEraser(n_iterations=2)], ids=lambda e: type(e).__name__)
def test_erasers_follow_the_sklearn_contract(estimator):
    ran, failed = _results(estimator, ERASER_CHECKS)
    assert not failed, failed
    assert "check_no_attributes_set_in_init" in ran


def _data(n=80, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return rng.normal(size=(n, d)) + 3.0 * y[:, None] * np.eye(d)[0], y


def test_grid_search_cross_val_and_pipelines_work():
    X, y = _data()
    search = GridSearchCV(LDA(), {"shrinkage": [0.0, 0.5, "auto"]}, cv=StratifiedKFold(3)).fit(X, y)
    assert search.best_params_["shrinkage"] in (0.0, 0.5, "auto") and search.best_score_ > 0.7
    scores = cross_val_score(make_pipeline(StandardScaler(), LogisticDirection(C=0.5)), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7
    erased = cross_val_score(make_pipeline(LeaceEraser(), LogisticDirection()), X, y, cv=3)
    assert erased.mean() < 0.7  # LEACE removes the linear signal the probe needs
    probe = clone(RaptorProbe(Cs=5, val_fraction=0.25)).set_params(Cs=3)
    assert probe.get_params()["Cs"] == 3 and probe.get_params()["val_fraction"] == 0.25


def test_unfitted_use_raises_sklearns_error_and_fitted_attributes_end_in_underscore():
    X, y = _data()
    for probe in (DiffMeans(), RaptorProbe(Cs=3), LinearTokenProbe(max_epochs=2, anneal_epochs=1), SparseProbe()):
        with pytest.raises(NotFittedError):
            probe.predict(X)
        before = set(vars(probe))
        probe.fit(np.abs(X), y)
        assert all(name.endswith("_") for name in set(vars(probe)) - before), set(vars(probe)) - before
    linear = DiffMeans().fit(X, y)
    assert linear.site_ is None and linear.model_name_ is None and linear.layers_ is None


def test_parameters_are_stored_as_given():
    assert HallucinationProbe(hidden=[16, 8]).hidden == [16, 8]  # not rewritten in __init__
    direction = LogisticDirection(C=0.3)
    assert direction.get_params()["C"] == 0.3 and "Cs" not in direction.get_params()
    assert INLPEraser().probe is None
