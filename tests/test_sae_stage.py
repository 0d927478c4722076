"""The SAE stage of the demo: keys, sane values, JSON-able, within its time budget."""

from __future__ import annotations

import json

import pytest
import torch

import steerlab
from steerlab.pipeline.demo_sae_stage import run_demo_sae_stage
from steerlab.report import Section


@pytest.fixture(scope="module")
def stage():
    torch.set_num_threads(1)
    return run_demo_sae_stage(steerlab.load_model("demo"), progress=False)


def test_stage_metrics_have_the_expected_keys_and_sane_values(stage):
    metrics, sections = stage
    json.dumps(metrics, allow_nan=False)
    assert metrics["hook_name"] == "blocks.2.hook_resid_post"
    assert {"quality", "concepts", "world_variables", "edit_examples", "timings", "error_term_max_logit_diff"} <= set(metrics)
    assert all(row["explained_variance"] >= 0.8 for row in metrics["quality"])
    assert metrics["error_term_max_logit_diff"] < 1e-4
    for name in ("truth", "sentiment"):
        concept = metrics["concepts"][name]
        rows = {row["method"]: row for row in concept["comparison"]}
        assert set(rows) == {"raptor", "diff_means", "sae_aligned", "sae_auroc", "sae_output", "random"}
        assert all(abs(row["kl"] - concept["kl_budget"]) < 0.02 for row in rows.values())  # matched KL
        assert all(row["matched"] is True for row in rows.values())
        assert rows["random"]["detection_auroc"] >= 0.4  # oriented on train: not a flipped detector
        chosen = concept["k_sparse_chosen"]
        assert chosen["k"] in [row["k"] for row in concept["k_sparse"]] and chosen["cv_folds"] == 5
        # the held-out score sits beside the CV score, and a disagreement is flagged in the report
        assert chosen["cv_held_out_agree"] == (abs(chosen["test_auroc"] - chosen["train_cv_auroc"]) <= 0.05)
        assert (chosen["flag"] == "") == chosen["cv_held_out_agree"]
        assert concept["detect_vs_steer"].startswith(name)
        best_efficacy = max(row["efficacy"] for row in rows.values())
        assert rows["random"]["efficacy"] < best_efficacy - 0.5  # the control (sign set on train) steers far less
        assert rows["raptor"]["detection_auroc"] > 0.75
        assert rows["sae_output"]["efficacy"] > rows["random"]["efficacy"] + 0.5
        assert [row["k"] for row in concept["k_sparse"]] == [1, 2, 4, 8, 16, 32, 64]
        recon = [row["r2"] for row in concept["alignment"]["diff-means"]["reconstruction"]]
        assert recon == sorted(recon) and recon[-1] > 0.9
    assert metrics["concepts"]["truth"]["raptor_test_auroc"] > 0.95
    summary = {row["variable"]: row for row in metrics["world_variables"]["summary"]}
    assert summary["country (answer slot)"]["mean best in-sample AUROC"] > 0.85
    assert summary["topic"]["mean best in-sample AUROC"] > 0.85
    assert all(seconds >= 0 for seconds in metrics["timings"].values())  # speed: benchmarks/, never asserted
    text = " ".join(p for section in sections for p in section.paragraphs)
    assert "steers best but does not fire on the concept's texts" not in text  # no hard-coded conclusion
    for name in ("truth", "sentiment"):
        assert metrics["concepts"][name]["detect_vs_steer"][1:] in text
        flag = metrics["concepts"][name]["k_sparse_chosen"]["flag"]
        assert not flag or f"FLAG: {flag}" in text
    assert all(isinstance(section, Section) and section.title for section in sections)
    assert sum(len(section.figures) for section in sections) >= 5
