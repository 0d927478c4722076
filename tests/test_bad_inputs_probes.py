"""Every probe-stage entry point refuses bad input at the call, before any fitting, with a message
that names the problem (ProbeInputError, a ValueError; NotFittedError before fit)."""

from __future__ import annotations

import numpy as np
import pytest

from steerlab.hallucination.evaluation import cross_val_scores, detection_metrics, level_metrics
from steerlab.hallucination.layer_search import probe_objective
from steerlab.hallucination import HallucinationProbe, LinearTokenProbe
from steerlab.probes import (LDA, DiffMeans, INLPEraser, LeaceEraser, LogisticDirection, NotFittedError, PairedPCA,
                             ProbeInputError, RaptorProbe, TemperatureScaler, auroc, directional_stability, probe_sweep,
                             recall_at_fpr, transfer_matrix)
from steerlab.probes.metrics import roc_curve

N, D = 40, 4


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Small separable data: ``X [40, 4]``, ``y [40]`` (20 of each class)."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], N // 2)
    X = rng.normal(size=(N, D)) + 2.0 * y[:, None] * np.eye(D)[0]
    return X, y


@pytest.fixture(scope="module")
def fitted(data) -> LogisticDirection:
    return LogisticDirection().fit(*data)


def with_nan(X: np.ndarray, value: float = np.nan) -> np.ndarray:
    bad = X.copy()
    bad[5, 1] = value
    return bad


# ---------------------------------------------------------------- the data: X


@pytest.mark.parametrize("make, X_of, match", [
    (DiffMeans, lambda X: X[:0], "no rows"),  # empty data
    (RaptorProbe, lambda X: with_nan(X), r"NaN or inf values \(first bad rows: \[5\]\)"),
    (LogisticDirection, lambda X: with_nan(X, np.inf), "NaN or inf"),
    (LDA, lambda X: X[:, 0], r"ndim=1.*reshape\(1, -1\)"),  # wrong ndim
    (PairedPCA, lambda X: X[:, None, None], r"got shape \(40, 1, 1, 4\)"),  # 4-D
    (DiffMeans, lambda X: X.astype(str), "holds strings"),  # string features
    (DiffMeans, lambda X: np.array([[1.0, "a"]] * N, dtype=object), "non-numeric"),  # object dtype
    (DiffMeans, lambda X: [[1.0, 2.0]] * (N - 1) + [[1.0]], "ragged"),  # rows of different lengths
    (DiffMeans, lambda X: X + 1j, "complex"),
    (DiffMeans, lambda X: np.zeros((N, 0)), r"no features \(d=0\)"),
])
def test_bad_activations_are_refused(data, make, X_of, match):
    X, y = data
    with pytest.raises(ProbeInputError, match=match):
        make().fit(X_of(X), y)


# ---------------------------------------------------------------- the data: labels and groups


@pytest.mark.parametrize("make, y_of, match", [
    (LDA, lambda y: np.ones_like(y), "only one class"),
    (PairedPCA, lambda y: np.arange(N) % 3, r"3 classes.*binary \(expected two classes"),  # {0, 1, 2}
    (LogisticDirection, lambda y: np.where(y == 1, 0.8, 0.2), "class labels.*non-integer"),  # soft labels
    (DiffMeans, lambda y: np.where(np.arange(N) == 3, np.nan, y), r"y holds NaN or inf values \(first bad rows: \[3\]"),
    (RaptorProbe, lambda y: y[:-1], "40 rows but y has 39"),  # length mismatch
    (DiffMeans, lambda y: y[:, None], r"shape \(40, 1\).*ravel"),
    (DiffMeans, lambda y: np.array([None, "a"] * (N // 2), dtype=object), "mixes label types"),
])
def test_bad_labels_are_refused(data, make, y_of, match):
    X, y = data
    with pytest.raises(ProbeInputError, match=match):
        make().fit(X, y_of(y))


def test_token_probes_expect_0_1_labels_not_strings(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="0/1 ints are expected"):
        LinearTokenProbe(max_epochs=1).fit(X, np.where(y == 1, "hallucinated", "ok"))
    with pytest.raises(ProbeInputError, match=r"0/1 labels.*\[2\]"):
        HallucinationProbe(max_epochs=1).fit(X, y * 2)  # {0, 2}


def test_groups_length_and_nan_are_refused(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="one group per row"):
        RaptorProbe(Cs=3).fit(X, y, groups=np.arange(N - 1))
    with pytest.raises(ProbeInputError, match="groups holds NaN"):
        PairedPCA().fit(X, y, groups=np.where(np.arange(N) == 0, np.nan, np.arange(N) // 2))


def test_validation_split_needs_examples_and_groups(data):
    X, y = data
    rows = np.r_[0, 20:N]  # one example of class 0
    with pytest.raises(ProbeInputError, match="at least 2 examples of each class.*single C"):
        RaptorProbe(Cs=3).fit(X[rows], y[rows])
    with pytest.raises(ProbeInputError, match="groups has 1 distinct value.*groups=None"):
        RaptorProbe(Cs=3).fit(X, y, groups=np.zeros(N))  # a group split with a single group
    with pytest.raises(ProbeInputError, match="one class after the split"):
        RaptorProbe(Cs=3).fit(X, y, groups=y)  # each group holds one class: a split leaves one class per side
    with pytest.raises(ProbeInputError, match=r"Class 0 has 3 examples: too few to split"):
        RaptorProbe(Cs=3, val_fraction=0.9).fit(X[np.r_[0:3, 20:N]], y[np.r_[0:3, 20:N]])
    with pytest.raises(ProbeInputError, match="validation split.*at least 2 examples of each class"):
        HallucinationProbe(max_epochs=1).fit(X[rows], y[rows])


# ---------------------------------------------------------------- parameters: checked at fit, stored by __init__


@pytest.mark.parametrize("value", [1.5, 0, -0.2, float("nan")])
def test_val_fraction_outside_0_1_is_refused_at_fit(data, value):
    probe = RaptorProbe(Cs=3, val_fraction=value)  # __init__ only stores it (scikit-learn's contract)
    assert probe.get_params()["val_fraction"] is value
    with pytest.raises(ProbeInputError, match="val_fraction=.*strictly between 0 and 1"):
        probe.fit(*data)
    with pytest.raises(ProbeInputError, match="val_fraction=.*strictly between 0 and 1"):
        LinearTokenProbe(val_fraction=value).fit(*data)


@pytest.mark.parametrize("Cs, match", [
    ([], "non-empty"), ([0.1, -1.0], "positive"), ([float("nan")], "positive finite"), (0, r"Cs.*>= 1"),
    ("abc", "number of grid points"),
])
def test_bad_C_grid_is_refused(data, Cs, match):
    with pytest.raises(ProbeInputError, match=match):
        RaptorProbe(Cs=Cs).fit(*data)


@pytest.mark.parametrize("make, match", [
    (lambda: LogisticDirection(C=0.0), r"C=0.0 must be a number > 0"),
    (lambda: RaptorProbe(Cs=3, max_iter=0), "max_iter=0 must be an integer >= 1"),
    (lambda: RaptorProbe(Cs=3, tol=-1.0), "tol=-1.0 must be a number > 0"),
    (lambda: LDA(shrinkage=2.0), r"shrinkage=2.0: pass a value in \[0, 1\] or 'auto'"),
    (lambda: LDA(shrinkage="ledoit"), "shrinkage='ledoit'"),
    (lambda: HallucinationProbe(lr=0.0), "lr=0.0 must be a number > 0"),
    (lambda: HallucinationProbe(hidden=(0,)), r"hidden \(each layer width\)=0"),
    (lambda: HallucinationProbe(dropout=1.0), "dropout=1.0 must be a number >= 0 and < 1"),
    (lambda: LinearTokenProbe(batch_size=0), "batch_size=0"),
    (lambda: HallucinationProbe(normalize="zscore"), "normalize='zscore': choose one of"),
])
def test_bad_parameters_are_refused_at_fit(data, make, match):
    with pytest.raises(ProbeInputError, match=match):
        make().fit(*data)


def test_logistic_direction_reads_C_at_fit_time(data):
    probe = LogisticDirection(C=1.0)
    probe.C = -2.0  # set_params-style change after __init__
    with pytest.raises(ProbeInputError, match="C=-2.0"):
        probe.fit(*data)


# ---------------------------------------------------------------- fitted state


def test_predict_before_fit_raises_not_fitted(data):
    X, _ = data
    for probe in (RaptorProbe(), HallucinationProbe(), LeaceEraser(), INLPEraser(), TemperatureScaler()):
        method = probe.transform if hasattr(probe, "transform") else probe.predict_proba
        with pytest.raises(NotFittedError, match=f"This {type(probe).__name__} is not fitted yet: call fit"):
            method(X[:, 0] if isinstance(probe, TemperatureScaler) else X)
    error = NotFittedError("x")  # scikit-learn's bases: caught as ValueError or AttributeError too
    assert isinstance(error, ValueError) and isinstance(error, AttributeError)


def test_wrong_width_or_ndim_at_predict(data, fitted):
    X, y = data
    with pytest.raises(ProbeInputError, match="X has 3 features, but LogisticDirection is expecting 4 features as input"):
        fitted.predict(X[:, :3])
    with pytest.raises(ProbeInputError, match="fitted on one layer, so X must be"):
        fitted.predict(np.stack([X, X], axis=1))
    token = LinearTokenProbe(max_epochs=2).fit(X, y)
    with pytest.raises(ProbeInputError, match="X has 2 features, but LinearTokenProbe is expecting"):
        token.decision_function(X[:, :2])
    eraser = INLPEraser(n_iterations=1).fit(X, y)
    with pytest.raises(ProbeInputError, match="X has 3 features, but INLPEraser is expecting"):
        eraser.transform(X[:, :3])


def test_a_layer_the_probe_was_not_fit_on(data):
    X, y = data
    probe = DiffMeans().fit(np.stack([X, -X], axis=1), y)  # two slots, layer numbers unknown
    with pytest.raises(ProbeInputError, match=r"slot 5 is out of range.*2 layers"):
        probe.at_layer(5)
    probe.layers_ = [3, 7]
    with pytest.raises(ProbeInputError, match=r"Layer 5 is not one the probe was fitted on \(layers \[3, 7\]\)"):
        probe.at_layer(5)
    assert probe.at_layer(7).coef_.shape == (D,)


# ---------------------------------------------------------------- sweep, transfer, stability, erasure


def test_sweep_refuses_bad_methods_and_fractions(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="methods is empty"):
        probe_sweep(X, y, methods=[])
    with pytest.raises(ProbeInputError, match=r"methods lists \['diff_means'\] more than once"):
        probe_sweep(X, y, methods=["diff_means", "diff_means"])
    with pytest.raises(ProbeInputError, match="Unknown method 'svm'"):
        probe_sweep(X, y, methods=["diff_means", "svm"])
    with pytest.raises(ProbeInputError, match="test_fraction=1.0 must be a number strictly between 0 and 1"):
        probe_sweep(X, y, methods=["diff_means"], test_fraction=1.0)
    with pytest.raises(ProbeInputError, match="only one class"):
        probe_sweep(X, np.zeros(N), methods=["diff_means"])


def test_transfer_matrix_refuses_bad_domains(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="at least 2 domains"):
        transfer_matrix({"a": (X, y)})
    with pytest.raises(ProbeInputError, match=r"different widths d \{'a': 4, 'b': 3\}"):
        transfer_matrix({"a": (X, y), "b": (X[:, :3], y)})
    with pytest.raises(ProbeInputError, match="Domain 'b': y has only one class"):
        transfer_matrix({"a": (X, y), "b": (X, np.ones(N))})
    with pytest.raises(ProbeInputError, match=r"must be \(X, y\) or \(X, y, groups\)"):
        transfer_matrix({"a": (X, y), "b": X})
    with pytest.raises(ProbeInputError, match=r"keys 'train' and 'test' \(missing \['test'\]\)"):
        transfer_matrix({"a": (X, y), "b": {"train": (X, y)}})
    with pytest.raises(ProbeInputError, match="probe must be a steerlab probe instance.*a class: call it"):
        transfer_matrix({"a": (X, y), "b": (X, y)}, probe=DiffMeans)


def test_directional_stability_refuses_bad_settings(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="runs=1 must be an integer >= 2"):
        directional_stability(DiffMeans(), X, y, runs=1)
    with pytest.raises(ProbeInputError, match="drop=0 must be a number strictly between 0 and 1"):
        directional_stability(DiffMeans(), X, y, drop=0)
    with pytest.raises(ProbeInputError, match="one group per row"):
        directional_stability(DiffMeans(), X, y, groups=np.arange(3))


def test_erasers_refuse_bad_inputs(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="one layer's rows.*erasure works on one layer"):
        LeaceEraser().fit(np.stack([X, X], axis=1), y)
    with pytest.raises(ProbeInputError, match="only one class"):
        INLPEraser().fit(X, np.zeros(N))
    with pytest.raises(ProbeInputError, match="n_iterations=0 must be an integer >= 1"):
        INLPEraser(n_iterations=0).fit(X, y)


# ---------------------------------------------------------------- metrics and hallucination evaluation


def test_metrics_refuse_bad_scores_and_labels():
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    with pytest.raises(ProbeInputError, match=r"scores holds NaN or inf values \(first bad rows: \[2\]\)"):
        auroc(y, np.array([0.1, 0.4, np.nan, 0.8]))
    with pytest.raises(ProbeInputError, match="labels have 4 entries but scores has 3"):
        recall_at_fpr(y, s[:3], 0.05)
    with pytest.raises(ProbeInputError, match=r"max_fpr=1.5 must be a number >= 0 and <= 1"):
        recall_at_fpr(y, s, 1.5)
    with pytest.raises(ProbeInputError, match=r"y01 must hold 0/1 labels.*\[2\]"):
        auroc(np.array([0, 2, 1, 1]), s)
    with pytest.raises(ProbeInputError, match="y01 holds <U3 values.*0/1 ints are expected"):
        recall_at_fpr(np.array(["yes", "no", "yes", "no"]), s, 0.1)
    with pytest.raises(ProbeInputError, match="scores is empty"):
        roc_curve([], [])
    assert np.isnan(auroc(np.ones(4), s))  # one class: undefined, not an error (documented)


def test_hallucination_evaluation_refuses_bad_inputs(data):
    X, y = data
    y_token, scores, answer = np.array([1, 0, 0, 1]), np.array([0.9, 0.2, 0.1, 0.7]), np.array([0, 0, 1, 1])
    with pytest.raises(ProbeInputError, match="X has 4 rows but answer_index has 3"):
        detection_metrics(y_token, scores, answer[:3])
    with pytest.raises(ProbeInputError, match="scores is empty"):
        level_metrics([], [], threshold=0.5)
    with pytest.raises(ProbeInputError, match="threshold=nan must be a number"):
        level_metrics(y_token, scores, threshold=float("nan"))
    groups = np.arange(N) // 10  # 4 answers
    with pytest.raises(ProbeInputError, match="groups has 4 distinct values: 5-fold cross-validation"):
        cross_val_scores(LinearTokenProbe(), X, y, groups, n_splits=5)
    with pytest.raises(ProbeInputError, match=r"hidden must be \[n_tokens, n_layers=3, d\]"):
        probe_objective(LinearTokenProbe(), np.stack([X, X], axis=1), [0, 1, 2], y, np.arange(N) // 2)
    objective = probe_objective(LinearTokenProbe(max_epochs=1), np.stack([X, X], axis=1), [4, 6], y, np.arange(N) // 2)
    with pytest.raises(ProbeInputError, match=r"Layer 5 is not one the probe was fitted on \(layers \[4, 6\]\)"):
        objective(5)


def test_sweep_checks_every_probe_before_fitting_any(data):
    X, y = data
    with pytest.raises(ProbeInputError, match="val_fraction=2.0"):
        probe_sweep(X, y, methods=["diff_means", RaptorProbe(Cs=3, val_fraction=2.0)], stability_runs=0)
