"""Truth directions, stability, transfer geometry, erasure, sweeps, metrics and figures."""

from __future__ import annotations

import numpy as np
import pytest

from steerlab.probes import (LDA, DiffMeans, INLPEraser, LeaceEraser, LogisticDirection, PairedPCA, RaptorProbe,
                             TemperatureScaler, auroc, directional_stability, expected_calibration_error,
                             make_teacher_student, mahalanobis_cosine, penalty_path, probe_after_erasure,
                             probe_sweep, projection_figure, transfer_matrix)
from steerlab.probes.transfer import linear_fit_r2


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_diff_means_is_the_normalised_mean_difference_and_calibrated():
    X, y, _ = make_teacher_student(400, 8, mean_shift=1.0, seed=0)
    probe = DiffMeans().fit(X, y)
    expected = X[y == 1].mean(0) - X[y == 0].mean(0)
    np.testing.assert_allclose(probe.concept_vector_, expected / np.linalg.norm(expected), atol=1e-5)
    np.testing.assert_allclose(probe.coef_ / np.linalg.norm(probe.coef_), probe.concept_vector_, atol=1e-6)
    # the 1-D calibration makes decision_function a fitted logit: scale/bias equal a 1-D sklearn fit
    from sklearn.linear_model import LogisticRegression

    s = (X @ probe.concept_vector_).astype(np.float64)
    reference = LogisticRegression(C=1e4, tol=1e-10, max_iter=10_000).fit(((s - s.mean()) / s.std())[:, None], y)
    assert np.linalg.norm(probe.coef_) == pytest.approx(reference.coef_[0, 0] / s.std(), rel=1e-3)
    assert probe.score(X, y) == pytest.approx(reference.score(((s - s.mean()) / s.std())[:, None], y), abs=0.005)


def test_lda_matches_sklearn_shrinkage_lda_direction():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(0)
    X, y, _ = make_teacher_student(300, 12, mean_shift=1.0, seed=1)
    X = X @ rng.standard_normal((12, 12))  # correlated features: LDA differs from the mass mean
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X.astype(np.float64), y)
    probe = LDA().fit(X, y)
    assert cos(probe.concept_vector_, reference.coef_[0]) > 0.999
    from sklearn.covariance import ledoit_wolf_shrinkage

    classes = [X[y == c].astype(np.float64) for c in (0, 1)]
    expected = [ledoit_wolf_shrinkage((part - part.mean(0)) / part.std(0)) for part in classes]
    np.testing.assert_allclose(probe.shrinkage_, expected, rtol=1e-6)
    assert cos(probe.concept_vector_, DiffMeans().fit(X, y).concept_vector_) < 0.99
    fixed = LDA(shrinkage=1.0).fit(X, y)  # full shrinkage: mean difference over per-feature variance
    gap = X[y == 1].mean(0) - X[y == 0].mean(0)
    prior = y.mean()
    assert cos(fixed.concept_vector_, gap / ((1 - prior) * classes[0].var(0) + prior * classes[1].var(0))) > 0.9999


def test_paired_pca_recovers_the_pair_difference_direction():
    rng = np.random.default_rng(0)
    d, n_pairs = 10, 60
    truth = np.eye(d)[0]
    entities = rng.standard_normal((n_pairs, d)) * 3  # large entity variation, shared by each pair
    true = entities + truth * (1 + 0.1 * rng.standard_normal((n_pairs, 1)))
    false = entities - truth * 0.5
    X = np.r_[true, false]
    y = np.r_[np.ones(n_pairs), np.zeros(n_pairs)]
    groups = np.r_[np.arange(n_pairs), np.arange(n_pairs)]
    probe = PairedPCA().fit(X, y, groups=groups)
    assert cos(probe.concept_vector_, truth) > 0.999 and probe.score(X, y) > 0.55
    assert cos(PairedPCA().fit(X, y).concept_vector_, truth) > 0.999  # paired by order


def test_logistic_direction_is_raptor_at_one_C():
    X, y, _ = make_teacher_student(200, 6, seed=0)
    np.testing.assert_allclose(LogisticDirection(C=0.5).fit(X, y).coef_, RaptorProbe(Cs=[0.5], tol=1e-5).fit(X, y).coef_,
                               rtol=1e-4, atol=1e-6)


def test_directional_stability_and_the_penalty_tradeoff():
    X, y, w_star = make_teacher_student(120, 60, signal=3.0, seed=0)  # few-shot, high-dimensional
    easy = directional_stability(DiffMeans(), *make_teacher_student(400, 5, mean_shift=3, seed=1)[:2], runs=4)
    assert easy.stability > 0.99 and easy.directions.shape == (4, 5) and easy.fit_seconds > 0
    path = penalty_path(X, y, Cs=[1e-4, 1e-2, 1e2], runs=4, w_star=w_star)
    # a strong ridge gives stable directions; a weak one fits noise (RAPTOR's trade-off)
    assert path.stability[0] > path.stability[-1] + 0.05
    assert path.stability.shape == path.test_accuracy.shape == (3,)
    assert np.all(path.teacher_cosine > 0.2)
    figure = path.figure()
    assert [trace.name for trace in figure.data][:2] == ["test accuracy", "stability (mean |cos|)"]
    per_layer = directional_stability(RaptorProbe(Cs=5), *make_teacher_student(200, 5, n_layers=2, seed=0)[:2], runs=3)
    assert per_layer.stability.shape == (2,) and np.all((0 <= per_layer.stability) & (per_layer.stability <= 1))


def domains_with_shared_and_specific_truth(seed=0, n=300, d=16):
    """Three domains: label direction = mix of a shared truth axis and a domain-specific one."""
    rng = np.random.default_rng(seed)
    shared = np.eye(d)[0]
    data = {}
    for k, (mix, name) in enumerate([(0.9, "cities"), (0.6, "numbers"), (0.2, "people")]):
        specific = np.eye(d)[k + 1]
        axis = mix * shared + np.sqrt(1 - mix ** 2) * specific
        y = rng.integers(0, 2, n)
        X = rng.standard_normal((n, d)) * (1 + 0.5 * rng.random(d)) + np.outer(2 * y - 1, axis) * 1.5
        data[name] = (X, y)
    return data


def test_transfer_matrix_and_mahalanobis_geometry():
    domains = domains_with_shared_and_specific_truth()
    result = transfer_matrix(domains)
    assert result.auroc.shape == (4, 3) and result.train_domains[-1] == "union"
    assert np.all(np.diag(result.auroc[:3]) > 0.9)  # in-domain
    assert result.auroc[0, 2] < result.auroc[2, 2]  # cities -> people transfers worse than in-domain
    np.testing.assert_allclose(np.diag(result.mahalanobis_cosine), 1, atol=1e-9)
    fits = result.fit_r2()
    assert fits["mahalanobis"]["r2"] > 0.6 and fits["mahalanobis"]["slope"] > 0 and fits["cosine"]["r2"] > 0.6
    assert set(fits) == {"mahalanobis", "cosine"}
    assert len(result.to_records()) == 12 and "R^2" in repr(result)
    assert len(result.figure().data) == 1


def test_mahalanobis_cosine_is_the_formula_and_the_score_correlation():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 5)) @ rng.standard_normal((5, 5))
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    S = np.cov(X, rowvar=False)
    formula = a @ S @ b / np.sqrt((a @ S @ a) * (b @ S @ b))
    assert mahalanobis_cosine(a, b, X) == pytest.approx(formula, rel=1e-9)
    assert mahalanobis_cosine(a, b, X) == pytest.approx(np.corrcoef(X @ a, X @ b)[0, 1], rel=1e-9)
    assert linear_fit_r2([0, 1, 2], [1, 3, 5])["r2"] == pytest.approx(1.0)


@pytest.mark.parametrize("eraser", [LeaceEraser(), INLPEraser(n_iterations=3)])
def test_after_erasure_a_fresh_probe_is_at_chance(eraser):
    X, y, _ = make_teacher_student(1200, 10, mean_shift=1.5, seed=0)
    X = X + np.random.default_rng(1).standard_normal(10) * 2
    result = probe_after_erasure(eraser, X, y)
    assert result["accuracy_before"] > 0.9
    assert 0.4 < result["accuracy_after"] < result["chance"] + 0.04 and result["chance"] == pytest.approx(0.5, abs=0.03)


def test_inlp_directions_are_orthonormal_and_accuracy_falls():
    X, y, _ = make_teacher_student(600, 8, mean_shift=1.5, seed=2)
    eraser = INLPEraser(n_iterations=3).fit(X, y)
    np.testing.assert_allclose(eraser.directions_ @ eraser.directions_.T, np.eye(3), atol=1e-8)
    assert eraser.accuracies_[0] > 0.9 and eraser.accuracies_[-1] < 0.65
    assert "removed 3" in repr(eraser)


def test_sweep_table_best_layers_and_group_split():
    X, y, _ = make_teacher_student(300, 8, n_layers=3, seed=0)
    groups = np.repeat(np.arange(150), 2)
    result = probe_sweep(X, y, methods=["raptor", "diff_means", "lda", "pca", "logistic"], groups=groups, stability_runs=3)
    rows = result.to_records()
    assert len(rows) == 15 and {row["method"] for row in rows} == {"raptor", "diff_means", "lda", "pca", "logistic"}
    assert set(rows[0]) >= {"layer", "method", "accuracy", "auroc", "ece", "stability", "fit_seconds"}
    assert result.best_layers() == {m: 2 for m in ("raptor", "diff_means", "lda", "pca", "logistic")}
    assert not set(groups[result.train_index]) & set(groups[result.test_index])
    raptor_rows = [row for row in rows if row["method"] == "raptor"]
    grid = np.logspace(-4, 2, 100)
    assert all(np.isclose(grid, row["C"]).any() for row in raptor_rows)
    assert all(row["C"] is None for row in rows if row["method"] != "raptor" and row["method"] != "logistic")
    assert raptor_rows[-1]["accuracy"] > 0.85 and raptor_rows[-1]["auroc"] > 0.9
    assert all(0 <= row["stability"] <= 1 for row in rows)
    assert result.probes["raptor"].coef_.shape == (3, 8)
    assert "best layers" in repr(result) and "<table>" in result._repr_html_()
    assert [trace.name for trace in result.figure("auroc").data] == ["raptor", "diff_means", "lda", "pca", "logistic"]


def test_sweep_accepts_activations_and_records_provenance():
    from steerlab.capture.activations import Activations

    import torch

    X, y, _ = make_teacher_student(200, 6, n_layers=2, seed=3)
    acts = Activations(torch.as_tensor(X), layers=[4, 7], site="resid_mid", position="last", model_name="m",
                       d_model=6, texts=[""] * 200)
    result = probe_sweep(acts, y, methods=["diff_means"], stability_runs=0, calibrate=False)
    assert [row["layer"] for row in result.rows] == [4, 7] and np.isnan(result.rows[0]["stability"])
    probe = result.probes["diff_means"]
    assert probe.layers_ == [4, 7] and probe.site_ == "resid_mid" and probe.model_name_ == "m"


def test_metrics_and_temperature_scaling():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.standard_normal(500) + y, 1)  # with ties
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert np.isnan(auroc(np.ones(3), np.arange(3.0)))
    assert expected_calibration_error(np.array([1, 1]), np.array([50.0, 50.0])) == pytest.approx(0, abs=1e-12)
    assert expected_calibration_error(np.array([0, 1]), np.array([50.0, 50.0])) == pytest.approx(0.5, abs=1e-9)
    overconfident = (scores - 0.5) * 8
    scaler = TemperatureScaler().fit(y, overconfident)
    assert scaler.temperature_ > 2
    assert expected_calibration_error(y, scaler.transform(overconfident)) < expected_calibration_error(y, overconfident) / 2
    assert scaler.predict_proba(overconfident).shape == (500, 2)


def test_projection_figure_colours_labels_and_domains():
    X, y, _ = make_teacher_student(60, 5, seed=0)
    figure = projection_figure(X, y, domains=["a"] * 30 + ["b"] * 30, direction=np.eye(5)[0])
    assert len(figure.data) == 4 and figure.layout.xaxis.title.text == "direction"
    assert sum(len(trace.x) for trace in figure.data) == 60


def test_transfer_matrix_accepts_given_splits():
    domains = domains_with_shared_and_specific_truth(n=200)
    given = {name: {"train": (X[:150], y[:150]), "test": (X[150:], y[150:])} for name, (X, y) in domains.items()}
    result = transfer_matrix(given, probe=DiffMeans(), include_union=False)
    assert result.train_domains == list(domains) and result.auroc.shape == (3, 3)
    X, y = domains["cities"]
    expected = auroc(y[150:], DiffMeans().fit(X[:150], y[:150]).decision_function(X[150:]))
    assert result.auroc[0, 0] == pytest.approx(expected)


def test_lda_on_a_rank_deficient_covariance_gives_sklearns_minimum_norm_direction():
    """Fewer examples than dimensions, a dead feature and no shrinkage: a singular covariance (as on real
    activations) must give scikit-learn's lsqr solution, not a linear-algebra error."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from steerlab.probes import LDA

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 20))
    y = np.array([0, 1] * 6)
    X[:, 0] = 3.0
    X[y == 1, 1] += 2.0
    ours = LDA(shrinkage=0.0).fit(X.astype(np.float32), y).coef_.ravel()
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.0).fit(X, y).coef_.ravel()
    assert np.isfinite(ours).all()
    cosine = ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference)
    assert cosine > 0.99
