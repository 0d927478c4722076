"""SAE helpers and the first token (the attention sink), and the CV vs held-out flag of k-sparse probes (issue 15).

On the organism, fast: the demo SAE, the demo model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steerlab
from steerlab.sae import chosen_k_held_out, demo_corpus, load_sae, sae_quality, sae_splice
from steerlab.sae.activations import site_activations
from steerlab.sae.feature_probes import cv_held_out_flag

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


@pytest.fixture(scope="module")
def sae(model):
    return load_sae("demo", model=model)


def test_the_first_token_is_skipped_by_default_and_can_be_kept(model, sae):
    texts = demo_corpus(60, seed=999)
    later = site_activations(model, sae, texts, position="all")
    every = site_activations(model, sae, texts, position="all", skip_first=False)
    assert len(every) - len(later) == len(texts)  # one first token per text
    skipped = sae_quality(model, sae, texts)
    kept = sae_quality(model, sae, texts, skip_first=False)
    assert skipped["n_tokens"] == len(later) and kept["n_tokens"] == len(every)
    # the attention sink dominates the variance: the SAE, trained without it, explains far less with it
    assert skipped["explained_variance"] > 0.9
    assert kept["explained_variance"] < skipped["explained_variance"] - 0.05
    assert 0 <= skipped["dense_fraction"] <= 1


@torch.no_grad()
def test_the_splice_leaves_the_first_token_alone_unless_told(model, sae):
    batch = model.tokenize(["bakli is in sokdrouk .", "the team won the match"])
    clean = model.forward(batch)
    with sae_splice(model, sae):
        spliced = model.forward(batch)
    with sae_splice(model, sae, skip_first=False):
        every = model.forward(batch)
    assert torch.equal(spliced[:, 0], clean[:, 0])  # causal: position 0 sees only itself, left as it is
    assert not torch.allclose(every[:, 0], clean[:, 0], atol=1e-3)
    assert not torch.allclose(spliced[:, 1:], clean[:, 1:], atol=1e-3)


def test_a_cv_score_the_held_out_split_does_not_confirm_is_flagged():
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat([0, 1], 60), np.repeat([0, 1], 40)
    Z_train = rng.exponential(size=(120, 20)) * (rng.random((120, 20)) < 0.3)
    Z_test = rng.exponential(size=(80, 20)) * (rng.random((80, 20)) < 0.3)
    Z_train[:, 3] += 3.0 * y_train  # latent 3 separates the train entities only (memorised, not the concept)
    with pytest.warns(UserWarning, match="CV and held-out disagree"):
        flagged = chosen_k_held_out(Z_train, y_train, Z_test, y_test, ks=(1, 2))
    assert flagged["cv_auroc"] > 0.95 and flagged["test_auroc"] < 0.75
    assert not flagged["agrees"] and "held-out split is the honest number" in flagged["flag"]
    Z_test[:, 3] += 3.0 * y_test  # now it carries to the held-out rows too
    agreeing = chosen_k_held_out(Z_train, y_train, Z_test, y_test, ks=(1, 2))
    assert agreeing["agrees"] and agreeing["flag"] == "" and agreeing["gap"] == pytest.approx(
        agreeing["test_auroc"] - agreeing["cv_auroc"])


def test_the_organisms_cv_one_against_held_out_chance_is_flagged():
    # benchmarks/results_sae.md, topk SAE, sentiment: k=1 with CV AUROC 1.000 but held-out 0.507
    flag = cv_held_out_flag(1, 1.0, 0.507)
    assert "CV and held-out disagree" in flag and "gap -0.493" in flag and "honest number" in flag
    assert cv_held_out_flag(64, 0.996, 0.983) == ""  # within the 0.05 tolerance
    assert "easier" in cv_held_out_flag(2, 0.70, 0.90)  # the other direction says so too
    assert cv_held_out_flag(1, 1.0, float("nan")) != ""  # an undefined held-out AUROC never passes silently


def test_the_sae_shipped_for_a_real_model_refuses_another_model(model):
    with pytest.raises(ValueError, match="belongs to 'smollm2-135m-instruct', not to 'demo'"):
        load_sae("smollm2-135m-instruct", model=model)
