"""Transfer across layers, erasing the domain-general truth direction, and their figures."""

from __future__ import annotations

import numpy as np
import pytest

from steerlab.probes import (DiffMeans, INLPEraser, LeaceEraser, ProbeInputError, erase_from_domains,
                             probe_after_erasure, projection_figure, transfer_by_layer, transfer_matrix,
                             transfer_scatter)


def shared_and_specific(seed=0, n=400, d=16, mixes=(0.9, 0.6, 0.2)):
    """Domains whose truth axis mixes a shared axis (e0) with a domain-specific one (e1, e2, ...)."""
    rng = np.random.default_rng(seed)
    data = {}
    for k, mix in enumerate(mixes):
        axis = mix * np.eye(d)[0] + np.sqrt(1 - mix ** 2) * np.eye(d)[k + 1]
        y = rng.integers(0, 2, n)
        data[f"d{k}"] = (rng.standard_normal((n, d)) + np.outer(2 * y - 1, axis) * 1.5, y)
    return data


def test_transfer_by_layer_matches_transfer_matrix_at_each_layer():
    flat = shared_and_specific()
    rng = np.random.default_rng(5)
    # layer 0: pure noise; layer 1: the domains above
    layered = {name: (np.stack([rng.standard_normal(X.shape), X], axis=1), y) for name, (X, y) in flat.items()}
    result = transfer_by_layer(layered, probe=DiffMeans())
    assert result.auroc.shape == (2, 4, 3) and result.layers == [0, 1]
    one = transfer_matrix({name: (X[:, 1], y) for name, (X, y) in layered.items()}, probe=DiffMeans())
    np.testing.assert_allclose(result.at(1).auroc, one.auroc, atol=1e-9)
    np.testing.assert_allclose(result.at(1).mahalanobis_cosine, one.mahalanobis_cosine, atol=1e-6)
    assert np.all(np.abs(np.diag(result.at(0).auroc[:3]) - 0.5) < 0.12)  # noise layer: chance
    assert np.all(np.diag(result.at(1).auroc[:3]) > 0.85)
    rows = result.to_records()
    assert [row["layer"] for row in rows] == [0, 1] and rows[1]["in_domain"] > rows[0]["in_domain"] + 0.3
    assert {"cross_domain", "union", "r2_mahalanobis", "r2_cosine"} <= set(rows[1])
    assert "R^2 Mahalanobis" in repr(result) and len(result.figure().data) == 5
    with pytest.raises(ProbeInputError, match="Layer 7 is not one"):
        result.at(7)
    with pytest.raises(ProbeInputError, match="different numbers of layers"):
        transfer_by_layer({"a": layered["d0"], "b": (layered["d1"][0][:, :1], layered["d1"][1])})


def test_erasing_the_shared_direction_leaves_domain_specific_truth():
    domains = shared_and_specific()
    erased = erase_from_domains(domains, LeaceEraser())
    after = transfer_matrix(erased, probe=DiffMeans())
    before = transfer_matrix(domains, probe=DiffMeans())
    # a fresh probe on the erased union is at chance on every domain
    assert np.all(np.abs(after.auroc[-1] - 0.5) < 0.1), after.auroc[-1]
    assert before.auroc[-1].min() > 0.8
    # the domain whose truth is mostly its own axis keeps it; the mostly-shared one loses more
    kept = np.diag(after.auroc[:3]) - 0.5
    assert kept[2] > 0.3 and kept[2] > kept[0]
    inlp = transfer_matrix(erase_from_domains(domains, INLPEraser(n_iterations=2), fit_on=["d0"]), probe=DiffMeans())
    assert inlp.auroc[0, 0] < before.auroc[0, 0] - 0.2  # d0's own direction is gone
    with pytest.raises(ProbeInputError, match=r"fit_on names \['nope'\]"):
        erase_from_domains(domains, LeaceEraser(), fit_on=["nope"])


def test_probe_after_erasure_with_groups_reports_auroc():
    X, y = shared_and_specific()["d0"]
    groups = np.repeat(np.arange(len(y) // 2), 2)
    result = probe_after_erasure(LeaceEraser(), X, y, groups=groups)
    assert result["auroc_before"] > 0.9 and abs(result["auroc_after"] - 0.5) < 0.1
    assert set(result) == {"accuracy_before", "accuracy_after", "auroc_before", "auroc_after", "chance"}


def test_transfer_scatter_and_projection_centred_by_domain():
    result = transfer_matrix(shared_and_specific(), probe=DiffMeans())
    figure = transfer_scatter(result)
    assert len(figure.data) == 4 and len(figure.data[0].x) == 6
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles[0].startswith("Mahalanobis cosine: R^2 = ") and titles[1].startswith("plain cosine: R^2 = ")
    X = np.concatenate([shared_and_specific()["d0"][0], shared_and_specific()["d1"][0] + 10])
    y = np.concatenate([shared_and_specific()["d0"][1], shared_and_specific()["d1"][1]])
    domains = ["a"] * 400 + ["b"] * 400
    centred = projection_figure(X, y, domains=domains, center_by_domain=True)
    means = [np.mean(np.concatenate([t.x for t in centred.data if t.name.startswith(d)])) for d in "ab"]
    assert np.allclose(means, 0, atol=1e-6)
    plain = projection_figure(X, y, domains=domains)
    assert abs(np.mean(np.concatenate([t.x for t in plain.data if t.name.startswith("a")]))) > 3


def test_inlp_rounds_curve_falls_to_chance_with_more_rounds():
    from steerlab.probes import inlp_rounds_curve

    # fewer rows than dimensions, truth spread over every axis: one round leaves plenty of truth
    rng = np.random.default_rng(0)
    n, d = 120, 200
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, d)) * np.linspace(0.3, 1.5, d) + np.outer(2 * y - 1, np.ones(d)) * 0.25
    curve = inlp_rounds_curve(X, y, [1, 20, 80])
    assert [point["rounds"] for point in curve] == [1, 20, 80] and curve[-1]["removed"] == 80
    assert curve[0]["auroc_after"] > 0.9
    assert abs(curve[1]["auroc_after"] - 0.5) < 0.1 and abs(curve[2]["auroc_after"] - 0.5) < 0.1
    assert curve[0]["train_accuracy"] == 1.0 and curve[2]["train_accuracy"] < 0.7
    with pytest.raises(ProbeInputError, match="rounds is empty"):
        inlp_rounds_curve(X, y, [])


def test_fit_r2_can_leave_out_pairs():
    result = transfer_matrix(shared_and_specific(), probe=DiffMeans())
    kept = result.fit_r2(exclude=[("d0", "d1")])
    assert set(kept) == {"mahalanobis", "cosine"} and kept["mahalanobis"] != result.fit_r2()["mahalanobis"]
    fewer = transfer_matrix(shared_and_specific(mixes=(0.9, 0.6, 0.2, 0.5)), probe=DiffMeans())
    assert np.isfinite(fewer.fit_r2(exclude=[("d0", "d1"), ("d2", "d3")])["mahalanobis"]["r2"])
    with pytest.raises(ProbeInputError, match=r"exclude names the pair \('d0', 'nope'\)"):
        result.fit_r2(exclude=[("d0", "nope")])
