"""steerlab.sae: loading checks, training with SAETrainer, quality, error-term editing, alignment, probes, scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steerlab
from steerlab.hooks import no_leftover_hooks
from steerlab.sae import (SparseProbe, check_sae, decoder_cosines, demo_corpus, k_sparse_curve, latent_aurocs,
                          latents, load_sae, output_scores, reconstruction_curve, sae_edit, sae_quality, sae_splice,
                          shipped_demo_saes, top_aligned, train_sae)
from steerlab.steering import SteeringVector, steer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


@pytest.fixture(scope="module")
def sae(model):
    return load_sae("demo", model=model)


def planted_sae(d_in: int, d_sae: int, hook_name: str, rows: dict[int, torch.Tensor] | None = None, seed: int = 0):
    """A real sae-lens TopKSAE with random weights and chosen decoder rows."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=4, metadata=SAEMetadata(hook_name=hook_name)))
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(d_sae, d_in))
        sae.W_enc.copy_(sae.W_dec.T)
        for feature, row in (rows or {}).items():
            sae.W_dec[feature] = row
    return sae


# ------------------------------------------------------------------ loading


def test_shipped_sae_loads_and_matches_the_demo_model(model, sae):
    assert "topk-blocks.2.hook_resid_post" in shipped_demo_saes()
    assert sae.cfg.metadata.hook_name == "blocks.2.hook_resid_post"
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (model.d_model, 512)
    assert check_sae(sae, model, site="resid_post", layer=2).hook_name == "blocks.2.hook_resid_post"


def test_mismatches_are_refused_with_clear_errors(model, sae, tmp_path):
    with pytest.raises(ValueError, match="d_model=128"):
        check_sae(planted_sae(64, 16, "blocks.2.hook_resid_post"), model)
    with pytest.raises(ValueError, match="not on site 'mlp_out'"):
        load_sae("demo", model=model, site="mlp_out")
    with pytest.raises(ValueError, match="not layer 1"):
        load_sae("demo", model=model, layer=1)
    with pytest.raises(ValueError, match="only 4 layers"):
        check_sae(planted_sae(128, 16, "blocks.7.hook_resid_post"), model)
    with pytest.raises(ValueError, match="Cannot parse hook name"):
        check_sae(planted_sae(128, 16, "model.layers.2"), model)
    with pytest.raises(FileNotFoundError, match="no cfg.json"):
        load_sae(tmp_path / "nothing")
    planted_sae(64, 16, "blocks.2.hook_resid_post").save_model(tmp_path / "small")
    with pytest.raises(ValueError, match="another model"):
        load_sae(tmp_path / "small", model=model)


# ------------------------------------------------------------------ training and quality


def test_training_a_tiny_sae_with_sae_trainer(model, tmp_path):
    texts = demo_corpus(300, seed=2000)
    held_out = demo_corpus(100, seed=999)
    short = train_sae(model, texts, layer=2, architecture="topk", d_sae=64, k=4, steps=5, batch_size=128)
    longer = train_sae(model, texts, layer=2, architecture="topk", d_sae=64, k=4, steps=150, batch_size=128)
    ev_short = sae_quality(model, short, held_out)["explained_variance"]
    quality = sae_quality(model, longer, held_out)
    assert quality["explained_variance"] > max(ev_short + 0.1, 0.6)
    assert quality["l0"] == pytest.approx(4.0)
    assert longer.cfg.metadata.hook_name == "blocks.2.hook_resid_post"
    assert longer.cfg.metadata.steerlab_training["steps"] == 150
    longer.save_model(tmp_path / "tiny")
    reloaded = load_sae(tmp_path / "tiny", model=model, site="resid_post", layer=2)
    assert torch.equal(reloaded.W_dec, longer.W_dec)
    l1 = train_sae(model, texts, layer=2, architecture="standard", d_sae=64, steps=150, batch_size=128)
    assert type(l1).__name__ == "StandardSAE"
    assert sae_quality(model, l1, held_out)["explained_variance"] > 0.5


@pytest.mark.parametrize("name", shipped_demo_saes())
def test_shipped_saes_explain_held_out_text(model, name):
    quality = sae_quality(model, load_sae(f"demo/{name}", model=model), demo_corpus(200, seed=999))
    assert quality["explained_variance"] >= 0.8
    assert quality["ce_loss_recovered"] > 0.8
    assert 0 <= quality["dead_fraction"] < 0.6
    assert quality["ce_clean"] < quality["ce_spliced"] < quality["ce_mean_ablated"]


# ------------------------------------------------------------------ editing with the error term


def test_unedited_splice_with_error_term_leaves_logits_unchanged(model, sae):
    batch = model.tokenize(demo_corpus(16, seed=999))
    with torch.no_grad():
        clean = model.forward(batch)
        with sae_edit(model, sae, {}):
            kept = model.forward(batch)
        with sae_splice(model, sae):
            spliced = model.forward(batch)
        with sae_edit(model, sae, {3: 20.0}):
            edited = model.forward(batch)
        with sae_edit(model, sae, {3: lambda a: a * 1.0}):
            identity = model.forward(batch)
    assert (kept - clean).abs().max() < 1e-4
    assert (identity - clean).abs().max() < 1e-4
    assert (spliced - clean).abs().max() > 1e-2  # the reconstruction error matters
    assert (edited - clean).abs().max() > 0.1    # an edit changes outputs
    torch.testing.assert_close(model.forward(batch), clean)  # hooks gone afterwards


def test_edit_hooks_are_removed_after_an_exception(model, sae):
    with no_leftover_hooks(model):
        with pytest.raises(RuntimeError, match="boom"):
            with sae_edit(model, sae, {0: 1.0}):
                raise RuntimeError("boom")
    with pytest.raises(ValueError, match="not a latent index"):
        with sae_edit(model, sae, {10_000: 1.0}):
            pass


def test_feature_steering_vector_and_latent_edit_both_move_generation(model, sae):
    prompts = ["the food was", "the hotel was"]
    plain = model.generate(prompts, max_new_tokens=2)
    vector = SteeringVector.from_sae_feature(sae, 3, model_name=model.name)
    assert vector.layers == (2,) and vector.site == "resid_post"
    with steer(model, vector, alpha=60.0):
        added = model.generate(prompts, max_new_tokens=2)
    assert added != plain


# ------------------------------------------------------------------ alignment, probes, scores


def test_alignment_recovers_a_planted_direction():
    direction = torch.randn(128, generator=torch.Generator().manual_seed(1))
    sae = planted_sae(128, 64, "blocks.2.hook_resid_post", rows={7: 3 * direction})
    top = top_aligned(sae, direction, k=3)
    assert top["feature"][0] == 7 and top["cosine"][0] == pytest.approx(1.0, abs=1e-5)
    assert decoder_cosines(sae, -direction)[7] == pytest.approx(-1.0, abs=1e-5)
    curve = reconstruction_curve(sae, direction, ks=(1, 2, 64))
    assert curve[0]["r2"] == pytest.approx(1.0, abs=1e-6)
    mixed = direction + 0.5 * sae.W_dec[11].detach()
    r2 = [row["r2"] for row in reconstruction_curve(sae, mixed, ks=(1, 2, 4))]
    assert r2[0] < 0.99 and r2[2] == pytest.approx(1.0, abs=1e-6) and r2 == sorted(r2)
    with pytest.raises(ValueError, match="different spaces"):
        decoder_cosines(sae, torch.ones(10))


def test_latent_aurocs_and_sparse_probe_on_planted_latents():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 150)
    Z = rng.exponential(size=(300, 40)) * (rng.random((300, 40)) < 0.2)
    Z[:, 5] += 3.0 * y
    Z[:, 9] += 3.0 * (1 - y)
    aurocs = latent_aurocs(Z, y)
    assert aurocs[5] > 0.97 and aurocs[9] < 0.03 and abs(aurocs[0] - 0.5) < 0.15
    probe = SparseProbe(k=2, selection="auroc").fit(Z[::2], y[::2])
    assert sorted(probe.features_.tolist()) == [5, 9]
    assert probe.auroc(Z[1::2], y[1::2]) > 0.99 and probe.score(Z[1::2], y[1::2]) > 0.95
    rows = k_sparse_curve(Z[::2], y[::2], Z[1::2], y[1::2], ks=(1, 2, 4))
    assert [r["k"] for r in rows] == [1, 2, 4] and rows[1]["auroc"] > rows[0]["auroc"] - 0.02


def test_truth_is_readable_from_demo_sae_latents(model, sae):
    from steerlab.datasets import load

    train, test = load("demo/cities", "train"), load("demo/cities", "test")
    rows = k_sparse_curve(latents(model, sae, train.texts), train.labels, latents(model, sae, test.texts),
                          test.labels, ks=(1, 64))
    assert rows[-1]["auroc"] > 0.9


def test_output_score_ranks_a_feature_that_raises_a_token(model):
    unembedding = model.hf_model.get_output_embeddings().weight.detach()
    great = model.tokenizer.convert_tokens_to_ids("great")
    awful = model.tokenizer.convert_tokens_to_ids("awful")
    sae = planted_sae(model.d_model, 32, "blocks.3.hook_resid_post",
                      rows={13: unembedding[great] - unembedding[awful]})
    scores = output_scores(model, sae, ["the food was", "the room was", "we liked the view , it was"],
                           positive_words=["great"], negative_words=["awful"], strength=1.0)
    assert scores.shape == (32,)
    assert int(np.argmax(scores)) == 13 and scores[13] > 1.0
