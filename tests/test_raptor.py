"""RaptorProbe against the authors' protocol (benchmarks/raptor_reference.py): the default refit keeps the
training part's scaler, the dual (kernel) coordinates give the primal solution, convergence is reported,
directional stability batches its refits, and the GCS baseline is the mean of its logistic probes."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from steerlab.probes import GCSProbe, RaptorProbe, directional_stability, load_probe, make_teacher_student
from steerlab.probes.gcs import gcs_subsamples
from steerlab.probes.splits import split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from raptor_reference import fit_reference, raptor_split, reference_protocol  # noqa: E402


def activation_like(n=300, d=30, seed=0):
    """Teacher-student data made anisotropic and off-centre, with uneven feature scales."""
    rng = np.random.default_rng(seed)
    X, y, _ = make_teacher_student(n, d, signal=3.0, seed=seed)
    X = X @ (rng.standard_normal((d, d)) * 0.3) * np.exp(rng.standard_normal(d) * 0.5) + rng.standard_normal(d) * 3
    return X.astype(np.float32), y


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("refit_scaler", ["train", "train+val"])
def test_refit_matches_the_reference_protocol(refit_scaler):
    X, y = activation_like()
    grid = np.logspace(-4, 2, 25)
    probe = RaptorProbe(Cs=grid, tol=1e-6, refit_scaler=refit_scaler, dtype=torch.float64).fit(X, y)
    train, val = split(y, 0.2, 0)  # the probe's own validation split
    reference = fit_reference(X.astype(np.float64), y, train, val, grid, refit_scaler=refit_scaler, tol=1e-8,
                              max_iter=10_000)
    np.testing.assert_allclose(probe.val_accuracy_, reference.val_accuracy, atol=1 / len(val) + 1e-9)
    assert probe.C_ == reference.C
    assert cos(probe.coef_, reference.coef) > 0.9999
    assert probe.intercept_ == pytest.approx(reference.intercept, rel=1e-3, abs=1e-3)
    rows = train if refit_scaler == "train" else np.concatenate([train, val])
    np.testing.assert_allclose(probe.mean_, X[rows].astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)


def test_the_two_refits_differ_only_by_the_scaler():
    X, y = activation_like(seed=2)
    default = RaptorProbe(Cs=20).fit(X, y)
    variant = RaptorProbe(Cs=20, refit_scaler="train+val").fit(X, y)
    assert default.refit_scaler == "train" and default.C_ == variant.C_  # C is chosen before the refit
    assert 0.99 < cos(default.coef_, variant.coef_) < 1 - 1e-7  # close, not the same problem
    assert not np.allclose(default.mean_, variant.mean_)
    with pytest.raises(ValueError, match="refit_scaler"):
        RaptorProbe(refit_scaler="all").fit(X, y)


def test_dual_coordinates_give_the_primal_solution_when_n_is_below_d():
    X, y, _ = make_teacher_student(120, 300, signal=4.0, mean_shift=0.5, seed=3)  # n < d
    grid = np.logspace(-3, 1, 12)
    fits = {solver: RaptorProbe(Cs=grid, solver=solver, tol=1e-7, dtype=torch.float64).fit(X, y)
            for solver in ("kernel", "primal")}
    assert fits["kernel"].C_ == fits["primal"].C_
    np.testing.assert_allclose(fits["kernel"].val_accuracy_, fits["primal"].val_accuracy_)
    assert cos(fits["kernel"].coef_, fits["primal"].coef_) > 0.999999
    # and both are scikit-learn's solution of the same problem (one C, all rows)
    single = RaptorProbe(Cs=[0.05], solver="kernel", tol=1e-8, dtype=torch.float64).fit(X, y)
    standardized = (X - X.mean(0)) / X.std(0)
    sklearn = LogisticRegression(C=0.05, tol=1e-10, max_iter=10_000).fit(standardized.astype(np.float64), y)
    assert cos(single.coef_, sklearn.coef_[0] / X.std(0)) > 0.999999


def test_unconverged_refit_raises_sklearns_convergence_warning():
    X, y = activation_like()
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        RaptorProbe(Cs=[100.0], max_iter=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        RaptorProbe(Cs=10).fit(X, y)  # converges: no warning


def test_directional_stability_batches_the_refits_without_changing_them():
    X, y, _ = make_teacher_student(300, 40, signal=3.0, n_layers=2, seed=1)
    batched = directional_stability(RaptorProbe(Cs=15), X, y, runs=4)
    one_by_one = directional_stability(RaptorProbe(Cs=15), X, y, runs=4, batched=False)
    np.testing.assert_allclose(np.abs((batched.directions * one_by_one.directions).sum(-1)), 1, atol=1e-5)
    np.testing.assert_allclose(batched.stability, one_by_one.stability, atol=1e-5)


def test_reference_protocol_runs_the_papers_split():
    X, y, _ = make_teacher_student(250, 8, n_layers=2, seed=0)
    train, val, test = raptor_split(y, seed=0)
    assert len(train) == 160 and len(val) == 40 and len(test) == 50
    assert abs(y[test].mean() - y.mean()) < 0.03  # stratified
    result = reference_protocol(X, y, Cs=np.logspace(-4, 2, 8))
    assert result.C.shape == (2,) and result.test_accuracy[1] > 0.8  # the deeper layer carries the concept
    assert result.fits[0].score(X[test, 0], y[test]) == result.test_accuracy[0]


def test_gcs_is_the_mean_of_its_logistic_probes():
    X, y, w = make_teacher_student(500, 20, signal=4.0, seed=4)
    probe = GCSProbe(n_probes=30, ring=0.0).fit(X, y)  # ring 0: the Gaussian's mean itself
    standardized = (X - X.mean(0)) / X.std(0)
    subsets = gcs_subsamples(y, 30, 0.1, 0)
    assert subsets.shape == (30, 50) and all(y[rows].sum() == round(0.1 * y.sum()) for rows in subsets)
    mean = np.mean([LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(standardized[rows], y[rows]).coef_[0]
                    for rows in subsets], 0)
    assert cos(probe.concept_vector_, mean / X.std(0)) > 0.9999
    ringed = GCSProbe(n_probes=30).fit(X, y)  # samples within +-1 sigma average close to the mean
    assert 0.9 < cos(ringed.concept_vector_, probe.concept_vector_) < 1 - 1e-9
    assert abs(ringed.concept_vector_ @ w) > 0.8 and ringed.score(X, y) > 0.75


def test_gcs_per_layer_and_save_load(tmp_path):
    X, y, _ = make_teacher_student(300, 12, n_layers=2, seed=5)
    probe = GCSProbe(n_probes=20).fit(X, y)
    assert probe.coef_.shape == (2, 12) and probe.probe_unconverged_.shape == (2,)
    loaded = load_probe(probe.save(tmp_path / "gcs"))
    np.testing.assert_allclose(loaded.decision_function(X), probe.decision_function(X), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="subsample"):
        GCSProbe(subsample=1.5).fit(X, y)


def per_C_sklearn_choice(X, y, train, val, grid):
    """The straightforward protocol: one converged, cold-started scikit-learn fit per C on the training part
    (standardised with its own scaler), C = the first maximum of validation accuracy along the ascending grid."""
    mean, scale = X[train].mean(0), X[train].std(0)
    Z = (X - mean) / scale
    accuracy = [LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(Z[train], y[train]).score(Z[val], y[val])
                for C in grid]
    return grid[int(np.argmax(accuracy))], np.array(accuracy)


@pytest.mark.parametrize("solver, d", [("primal", 12), ("kernel", 12), ("auto", 200)])
def test_batched_path_picks_the_C_of_independent_sklearn_fits(solver, d):
    """All layers and Cs in one batched, warm-started path choose the C (and see the validation curve) of one
    independent scikit-learn fit per layer and C; ``auto`` with n_train < d takes the dual (kernel) form."""
    X, y, _ = make_teacher_student(220, d, signal=2.0, n_layers=3, mean_shift=0.5, seed=7)
    X = X.astype(np.float64) * np.exp(np.random.default_rng(0).standard_normal(d) * 0.5)  # uneven feature scales
    grid = np.logspace(-3, 1, 15)
    probe = RaptorProbe(Cs=grid, solver=solver, tol=1e-8, max_iter=5000, dtype=torch.float64).fit(X, y)
    train, val = split(y, 0.2, 0)
    for layer in range(3):
        C, accuracy = per_C_sklearn_choice(X[:, layer], y, train, val, grid)
        np.testing.assert_allclose(probe.val_accuracy_[layer], accuracy, atol=1e-12)
        assert probe.C_[layer] == C
    assert len(set(np.round(probe.val_accuracy_.ravel(), 6))) > 3  # the curves are not flat: the choice is real


@pytest.mark.parametrize("d", [12, 200])
def test_default_settings_pick_the_C_of_independent_sklearn_fits(d):
    """At the defaults (float32, scikit-learn's tol=1e-4), the batched path still picks the converged per-C choice."""
    X, y, _ = make_teacher_student(220, d, signal=2.0, n_layers=3, mean_shift=0.5, seed=8)
    X = (X * np.exp(np.random.default_rng(0).standard_normal(d) * 0.5)).astype(np.float32)
    grid = np.logspace(-3, 1, 15)
    probe = RaptorProbe(Cs=grid).fit(X, y)
    train, val = split(y, 0.2, 0)
    chosen = [per_C_sklearn_choice(X[:, layer].astype(np.float64), y, train, val, grid)[0] for layer in range(3)]
    np.testing.assert_array_equal(probe.C_, chosen)


def test_the_solver_runs_numpys_blas_on_one_thread_and_restores_it():
    """BLAS threads waiting beside torch's spinning OpenMP threads made every narrow product wait (5x slower
    at the default threads on 2 cores): the solver limits BLAS to one thread while it runs, and only then."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from steerlab.probes.lbfgs_path import solve_path
    from steerlab.probes.logistic_operators import FeatureOperator

    def blas_threads():
        return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    seen = []

    class Recording(FeatureOperator):
        def logits(self, v, rows=None):
            seen.append(blas_threads())
            return super().logits(v, rows)

    Z = torch.randn(1, 40, 5)
    y = (Z[0, :, 0] > 0).double()
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        solve_path(Recording(Z.double()), y, torch.tensor([[0.1, 1.0]], dtype=torch.float64))
        assert blas_threads() == before
    assert seen and all(set(threads.values()) == {1} for threads in seen)


def test_finite_check_takes_huge_finite_values_and_refuses_inf():
    """The finite check sums first (NaN and inf propagate); a sum that overflows on finite values must not
    be taken for a bad value."""
    from steerlab.probes import ProbeInputError
    from steerlab.probes.validation import as_activation_tensor

    huge = np.full((4, 3), 3e38, dtype=np.float32)  # finite, but the sum overflows float32
    assert torch.equal(as_activation_tensor(huge)[0], torch.from_numpy(huge))
    huge[2, 1] = -np.inf
    with pytest.raises(ProbeInputError, match=r"NaN or inf values \(first bad rows: \[2\]\)"):
        as_activation_tensor(huge)


def test_scaler_is_standardscalers_on_the_chosen_rows():
    from sklearn.preprocessing import StandardScaler

    from steerlab.probes.span import rows_scaler, standardized_rows

    X, _ = activation_like(200, 12)
    X[:, 3] = 7.0  # a constant feature gets scale 1, as StandardScaler gives it
    rows = np.arange(0, 200, 3)
    stacked = torch.from_numpy(np.stack([X, 2 * X]))  # [B=2, n, d]
    mean, scale = rows_scaler(stacked, torch.from_numpy(rows))
    reference = StandardScaler().fit(X[rows].astype(np.float64))
    np.testing.assert_allclose(mean[0].numpy(), reference.mean_, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(scale[0].numpy(), reference.scale_, rtol=1e-5)
    np.testing.assert_allclose(scale[1, 3].item(), 1.0)
    np.testing.assert_allclose(standardized_rows(stacked[0], mean[0], scale[0]).numpy(),
                               reference.transform(X.astype(np.float64)), rtol=1e-4, atol=1e-4)


def test_overlapping_thread_holds_restore_the_callers_setting():
    """Two Python threads inside the probes' one-thread hold at once: both see one thread, and the setting
    found before the first is back after the last (a per-call save and restore would leave 1 behind)."""
    import threading

    from steerlab.probes.thread_scopes import one_torch_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def first():
            with one_torch_thread():
                seen["first"] = torch.get_num_threads()
                first_in.set()
                second_in.wait(10)
            first_out.set()

        def second():
            first_in.wait(10)
            with one_torch_thread():
                second_in.set()
                first_out.wait(10)
                seen["second"] = torch.get_num_threads()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert seen == {"first": 1, "second": 1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
