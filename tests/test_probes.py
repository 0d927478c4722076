"""RaptorProbe and the shared probe interface: exactness against scikit-learn, the RAPTOR
protocol, per-layer batching, save/load, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from steerlab.probes import (DiffMeans, LinearProbe, LogisticDirection, NotFittedError, ProbeInputError, RaptorProbe,
                             load_probe, make_teacher_student)
from steerlab.probes.splits import group_split, stratified_split


def correlated_data(n=300, d=30, seed=0):
    """Teacher-student data made anisotropic and off-centre, like real activations."""
    rng = np.random.default_rng(seed)
    X, y, _ = make_teacher_student(n, d, seed=seed)
    return (X @ rng.standard_normal((d, d)) * 0.3 + rng.standard_normal(d) * 3).astype(np.float32), y


def sklearn_raw(X, y, C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = X.astype(np.float64)
    scaler = StandardScaler().fit(X)
    model = LogisticRegression(C=C, tol=1e-10, max_iter=100_000).fit(scaler.transform(X), y)
    w_raw = model.coef_[0] / scaler.scale_
    return w_raw, model.intercept_[0]


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("C", [1e-3, 0.1, 1.0, 10.0])
def test_single_C_is_sklearns_l2_logistic_regression(C):
    X, y = correlated_data()
    probe = RaptorProbe(Cs=[C]).fit(X, y)  # default tolerance (sklearn's 1e-4)
    w_raw, b_std = sklearn_raw(X, y, C)
    assert cos(probe.coef_, w_raw) >= 0.9999
    tight = RaptorProbe(Cs=[C], tol=1e-8, dtype=torch.float64).fit(X, y)
    assert cos(tight.coef_, w_raw) >= 0.999999
    # intercepts compared in standardised space (raw-space ones amplify tiny w errors by |mu|)
    assert tight.intercept_ + tight.coef_ @ tight.mean_ == pytest.approx(b_std, rel=1e-4, abs=1e-4)
    assert probe.C_ == C and probe.val_accuracy_.shape == (0,)
    assert np.linalg.norm(probe.concept_vector_) == pytest.approx(1, abs=1e-6)
    # fold-back: raw-space logit equals the standardised model's logit
    standardized = (X - probe.mean_) / probe.scale_
    np.testing.assert_allclose(probe.decision_function(X), standardized @ (probe.coef_ * probe.scale_)
                               + probe.intercept_ + probe.coef_ @ probe.mean_, rtol=1e-4, atol=1e-3)


def test_float64_and_per_layer_batch_match_separate_fits():
    X, y = correlated_data(d=12)
    X3 = np.stack([X, X[:, ::-1] * 2 + 1, np.sin(X)], axis=1)  # [n, 3, d]
    batched = RaptorProbe(Cs=[0.5], dtype=torch.float64).fit(X3, y)
    assert batched.coef_.shape == (3, 12) and batched.intercept_.shape == (3,) and batched.C_.shape == (3,)
    for slot in range(3):
        alone = RaptorProbe(Cs=[0.5], dtype=torch.float64).fit(X3[:, slot], y)
        assert cos(batched.coef_[slot], alone.coef_) > 0.999999
        assert cos(batched.coef_[slot], sklearn_raw(X3[:, slot], y, 0.5)[0]) > 0.99999


def test_raptor_protocol_matches_a_sklearn_reference_loop():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = correlated_data(n=250, d=20, seed=3)
    grid = np.logspace(-4, 2, 12)
    probe = RaptorProbe(Cs=grid, tol=1e-6).fit(X, y)
    train, val = stratified_split(y, 0.2, 0)  # the probe's own split (same seed)
    scaler = StandardScaler().fit(X[train])
    model = LogisticRegression(warm_start=True, tol=1e-8, max_iter=10_000)
    reference = []
    for C in grid:
        model.set_params(C=C).fit(scaler.transform(X[train]), y[train])
        reference.append(model.score(scaler.transform(X[val]), y[val]))
    # validation curves agree to within one validation example per C
    assert np.abs(np.array(reference) - probe.val_accuracy_).max() <= 1 / len(val) + 1e-9
    best = np.flatnonzero(np.array(reference) == max(reference))[0]
    assert probe.val_accuracy_.max() == pytest.approx(max(reference), abs=1 / len(val) + 1e-9)
    assert probe.C_ == grid[probe.val_accuracy_.argmax()]
    # with the scaler refitted on train+validation, the refit at the chosen C is exactly the single-C fit
    refitted = RaptorProbe(Cs=grid, tol=1e-6, refit_scaler="train+val").fit(X, y)
    assert refitted.C_ == probe.C_
    assert cos(refitted.coef_, RaptorProbe(Cs=[probe.C_], tol=1e-6).fit(X, y).coef_) > 0.99999
    assert abs(np.log10(probe.C_) - np.log10(grid[best])) <= 2 * np.diff(np.log10(grid))[0] + 1e-9


def test_default_grid_and_ties_go_to_the_strongest_ridge():
    assert len(RaptorProbe().get_params()) and np.allclose(
        __import__("steerlab.probes").probes.c_grid(100), np.logspace(-4, 2, 100))
    X, y, _ = make_teacher_student(200, 5, mean_shift=6.0, seed=0)  # separable: every C is perfect on validation
    probe = RaptorProbe(Cs=np.logspace(-2, 2, 10)).fit(X, y)
    assert probe.val_accuracy_.min() == 1.0
    assert probe.C_ == pytest.approx(1e-2)


def test_per_layer_shapes_and_decision_function():
    X, y, _ = make_teacher_student(240, 10, n_layers=4, seed=1)
    probe = RaptorProbe(Cs=15).fit(X, y)
    assert probe.coef_.shape == (4, 10) and probe.C_.shape == (4,) and probe.mean_.shape == (4, 10)
    assert probe.predict_proba(X).shape == (240, 4, 2) and probe.predict(X).shape == (240, 4)
    expected = np.einsum("nld,ld->nl", X.astype(np.float64), probe.coef_) + probe.intercept_
    np.testing.assert_allclose(probe.decision_function(X), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(probe.concept_vector_, axis=1), 1, atol=1e-6)
    accuracy = probe.score(X, y)
    assert accuracy.shape == (4,) and accuracy[-1] > accuracy[0]  # the signal grows with depth
    single = probe.at_layer(3)
    np.testing.assert_allclose(single.decision_function(X[:, 3]), probe.decision_function(X)[:, 3], rtol=1e-6)


def test_group_validation_split_keeps_groups_whole():
    y = np.array([0, 1] * 30)
    groups = np.repeat(np.arange(30), 2)
    train, test = group_split(y, groups, 0.2, seed=0)
    assert not set(groups[train]) & set(groups[test]) and len(test) == 12
    X, yy, _ = make_teacher_student(60, 4, mean_shift=2, seed=0)
    RaptorProbe(Cs=5).fit(X, y, groups=groups)  # runs with a grouped validation split


def fake_activations(values, layers):
    from steerlab.capture.activations import Activations

    return Activations(torch.as_tensor(values), layers=layers, site="resid_post", position="last",
                       model_name="tiny-demo", d_model=values.shape[-1], texts=[""] * len(values))


@pytest.mark.parametrize("make", [lambda: RaptorProbe(Cs=8), lambda: LogisticDirection(C=0.3), DiffMeans])
def test_save_load_roundtrip_with_metadata(tmp_path, make):
    X, y, _ = make_teacher_student(120, 6, n_layers=2, seed=2)
    probe = make().fit(fake_activations(X, [3, 5]), y)
    assert probe.layers_ == [3, 5] and probe.site_ == "resid_post" and probe.model_name_ == "tiny-demo"
    path = probe.save(tmp_path / "probe")
    loaded = load_probe(path)
    assert type(loaded) is type(probe) and loaded.layers_ == [3, 5] and loaded.position_ == "last"
    np.testing.assert_allclose(loaded.decision_function(X), probe.decision_function(X), rtol=1e-6)
    assert loaded.get_params() == probe.get_params()
    import json

    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model"] == "tiny-demo" and meta["d_model"] == 6 and meta["layers"] == [3, 5]
    if isinstance(probe, RaptorProbe):
        assert meta["chosen_C"] == pytest.approx(probe.C_.tolist()) and meta["standardized"]
        assert np.allclose(loaded.scale_, probe.scale_)
    with pytest.raises(FileExistsError):
        probe.save(tmp_path / "probe")
    with pytest.raises(ValueError, match="holds a"):
        RaptorProbe.load(path) if not isinstance(probe, RaptorProbe) else DiffMeans.load(path)


def test_one_layer_probe_scores_2d_input_like_the_steering_stage_does():
    X, y, _ = make_teacher_student(100, 4, n_layers=1, seed=0)
    probe = DiffMeans().fit(fake_activations(X, [2]), y)
    assert probe.coef_.shape == (1, 4)
    np.testing.assert_allclose(probe.decision_function(X[:, 0]), probe.decision_function(X)[:, 0])


def test_clear_errors():
    X, y, _ = make_teacher_student(50, 4, seed=0)
    with pytest.raises(ProbeInputError, match="only one class"):
        RaptorProbe().fit(X, np.ones(50))
    with pytest.raises(ProbeInputError, match="50 rows but y has 49"):
        RaptorProbe().fit(X, y[:-1])
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ProbeInputError, match="NaN or inf.*7"):
        DiffMeans().fit(bad, y)
    bad[7, 2] = np.inf
    with pytest.raises(ProbeInputError, match="NaN or inf"):
        RaptorProbe(Cs=[1.0]).fit(bad, y)
    with pytest.raises(ProbeInputError, match="at least 2 examples of each class"):
        RaptorProbe().fit(X[:5], np.array([0, 1, 1, 1, 1]))
    with pytest.raises(NotFittedError, match="call fit"):
        RaptorProbe().predict(X)
    probe = RaptorProbe(Cs=[1.0]).fit(X, y)
    with pytest.raises(ProbeInputError, match="X has 3 features, but RaptorProbe is expecting 4 features as input"):
        probe.predict(X[:, :3])
    with pytest.raises(ProbeInputError, match="3 classes"):
        RaptorProbe().fit(X, np.arange(50) % 3)
    with pytest.raises(ProbeInputError, match="positive"):
        RaptorProbe(Cs=[0.0, 1.0]).fit(X, y)


def test_repr_shows_params_and_fit():
    probe = RaptorProbe(Cs=5)
    assert "not fitted" in repr(probe)
    X, y, _ = make_teacher_student(80, 4, seed=0)
    text = repr(probe.fit(X, y))
    assert text.startswith("RaptorProbe(Cs=5") and "C_=" in text and "d=4" in text
    assert isinstance(probe, LinearProbe)


def test_import_is_light():
    # scikit-learn is imported (the probes are its estimators); the model libraries and plotly are not
    code = ("import sys, steerlab.probes; heavy = [m for m in ('transformers', 'transformer_lens', 'nnsight', "
            "'plotly', 'concept_erasure') if m in sys.modules]; print(heavy)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
