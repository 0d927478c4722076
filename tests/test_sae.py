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
    assert longer.cfg.metadata.prepend_bos is True  # the demo tokenizer adds <bos>
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



@pytest.mark.parametrize("hook_name", ["blocks.2.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.0.hook_resid_pre"])
def test_ce_losses_equal_full_forwards(model, sae, hook_name):
    """The spliced and ablated forwards start at the SAE's layer (forward_from): the same losses as full
    forwards of every text (token_logprobs and mean_nll, computed independently), to float rounding."""
    from steerlab.sae.editing import sae_splice
    from steerlab.sae.quality import ce_losses
    from steerlab.steering.metrics import mean_nll, token_logprobs

    chosen = sae if hook_name == "blocks.2.hook_resid_post" else planted_sae(model.d_model, 64, hook_name)
    texts = demo_corpus(40, seed=7)
    point = check_sae(chosen, model)
    mean = torch.randn(model.d_model)

    def ablate(h):
        out = mean.to(h.dtype).expand_as(h).clone()
        out[:, 0] = h[:, 0]
        return out

    clean = mean_nll(model, texts, token_logprobs(model, texts))
    with sae_splice(model, chosen):
        spliced = mean_nll(model, texts, token_logprobs(model, texts))
    with model.hooks([(model.point(point.site, point.layer), ablate)]):
        ablated = mean_nll(model, texts, token_logprobs(model, texts))
    with no_leftover_hooks(model):
        losses = ce_losses(model, chosen, texts, site_mean=mean, batch_size=16)
    np.testing.assert_allclose([losses["ce_clean"], losses["ce_spliced"], losses["ce_mean_ablated"]],
                               [clean, spliced, ablated], rtol=1e-5)
    assert spliced != clean

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


# ------------------------------------------------------------------ review fixes: devices, dtypes, inputs


def test_a_bf16_sae_leaves_logits_unchanged_without_an_edit(model):
    sae16 = load_sae("demo", model=model).to(dtype=torch.bfloat16)
    assert sae16.W_enc.dtype == torch.bfloat16
    batch = model.tokenize(demo_corpus(16, seed=999))
    with torch.no_grad():
        clean = model.forward(batch)
        with sae_edit(model, sae16, {}):
            unedited = model.forward(batch)
        with sae_edit(model, sae16, {3: lambda a: a}):  # the hook runs: only the edit's delta (0) is added
            identity = model.forward(batch)
        with sae_edit(model, sae16, {3: 20.0}):
            edited = model.forward(batch)
    assert (unedited - clean).abs().max() <= 1e-5
    assert (identity - clean).abs().max() <= 1e-5  # was ~8e-3 when x went through bf16
    assert (edited - clean).abs().max() > 0.1


def test_numpy_integer_features_are_accepted(model, sae):
    batch = model.tokenize(["the food was great ."])
    with torch.no_grad():
        with sae_edit(model, sae, {3: 20.0}):
            plain = model.forward(batch)
        with sae_edit(model, sae, {np.int64(3): 20.0}):
            numpy_key = model.forward(batch)
    torch.testing.assert_close(numpy_key, plain)
    for bad in (3.0, "3", True):
        with pytest.raises(ValueError, match="not a latent index"):
            with sae_edit(model, sae, {bad: 1.0}):
                pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_with_a_cpu_sae():
    gpu_model = steerlab.load_model("demo", device="cuda")
    assert load_sae("demo", model=gpu_model).W_dec.device.type == "cuda"  # defaults to the model's device
    cpu_sae = load_sae("demo", model=gpu_model, device="cpu")
    batch = gpu_model.tokenize(demo_corpus(8, seed=999))
    with torch.no_grad():
        clean = gpu_model.forward(batch)
        with sae_edit(gpu_model, cpu_sae, {3: lambda a: a}):
            identity = gpu_model.forward(batch)
        with sae_edit(gpu_model, cpu_sae, {3: 20.0}):
            edited = gpu_model.forward(batch)
        with sae_splice(gpu_model, cpu_sae):
            spliced = gpu_model.forward(batch)
    assert (identity - clean).abs().max() <= 1e-5
    assert (edited - clean).abs().max() > 0.1 and (spliced - clean).abs().max() > 1e-2
    quality = sae_quality(gpu_model, cpu_sae, demo_corpus(100, seed=999))
    assert quality["explained_variance"] > 0.8


def test_load_sae_defaults_to_the_models_device(model):
    assert load_sae("demo", model=model).W_dec.device == model.device
    assert load_sae("demo").W_dec.device.type == "cpu"


def test_an_sae_recorded_for_another_model_name_warns(model, sae):
    other = planted_sae(128, 16, "blocks.2.hook_resid_post")
    other.cfg.metadata.model_name = "gpt2"
    with pytest.warns(UserWarning, match="model_name='gpt2'.*'demo'"):
        check_sae(other, model)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sae(sae, model)  # the shipped SAE records model_name "demo": no warning


def test_tokenizer_bos_detection(model):
    from types import SimpleNamespace

    from steerlab.sae.activations import tokenizer_adds_bos

    assert tokenizer_adds_bos(model.tokenizer) is True  # the demo tokenizer prepends <bos>
    gpt2_like = type("GPT2Like", (), {"bos_token_id": 50256, "__call__": lambda self, text: {"input_ids": [64]}})()
    assert tokenizer_adds_bos(gpt2_like) is False  # GPT-2 has a BOS token but does not prepend it
    assert tokenizer_adds_bos(SimpleNamespace(bos_token_id=None)) is False


def test_feature_probe_inputs_are_checked():
    from steerlab.probes.validation import NotFittedError, ProbeInputError

    rng = np.random.default_rng(0)
    Z = rng.exponential(size=(40, 6))
    with pytest.raises(ProbeInputError, match="class labels"):
        latent_aurocs(Z, np.tile([0.2, 0.8], 20))  # soft labels were silently truncated to 0
    bad = Z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ProbeInputError, match="NaN"):
        SparseProbe(k=1).fit(bad, np.repeat([0, 1], 20))
    with pytest.raises(ProbeInputError, match="k=8 but the latents have only 6"):
        SparseProbe(k=8).fit(Z, np.repeat([0, 1], 20))
    with pytest.raises(NotFittedError):
        SparseProbe(k=1).decision_function(Z)


def test_sparse_probe_keeps_its_classes_and_does_not_overflow():
    import warnings

    from steerlab.probes.validation import ProbeInputError

    y = np.repeat(["false", "true"], 20)
    Z = np.zeros((40, 3))
    Z[20:, 1] = 1e4  # huge standardised values: logits far beyond exp's range
    probe = SparseProbe(k=1, C=1e6).fit(Z, y)
    assert probe.classes_.tolist() == ["false", "true"] and probe.features_.tolist() == [1]
    assert probe.predict(Z).tolist() == y.tolist() and probe.score(Z, y) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.exp overflow used to warn
        proba = probe.predict_proba(Z * 1e6)
    assert np.isfinite(proba).all() and proba[-1, 1] == 1.0
    with pytest.raises(ProbeInputError, match="not seen in fit"):
        probe.score(Z, np.repeat(["no", "yes"], 20))
    assert np.isnan(probe.auroc(Z[:20], y[:20]))  # one class: nan, not an exception


def test_k_is_chosen_by_cross_validation_on_train():
    from steerlab.sae.feature_probes import choose_k

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    Z = rng.exponential(size=(200, 30)) * (rng.random((200, 30)) < 0.2)
    Z[:, 5] += 2.0 * y * (rng.random(200) < 0.5)  # two latents, each firing on half the positives
    Z[:, 9] += 2.0 * y * (rng.random(200) < 0.5)
    chosen = choose_k(Z, y, ks=(1, 2))
    assert chosen["k"] == 2 and set(chosen["cv_aurocs"]) == {1, 2}
    assert chosen["cv_aurocs"][2] > chosen["cv_aurocs"][1] + 0.05


@pytest.mark.parametrize(("bits", "grid"), [(1, 2), (3, 7), (7, 1)])
def test_the_batched_alpha_search_ends_where_bisection_does(bits, grid):
    from steerlab.sae.compare import search_alpha_sequential, search_alphas

    curves = [lambda a: 0.1 * a, lambda a: 0.02 * a ** 2, lambda a: 1e-3 * a, lambda a: 5.0 * a, lambda a: 0.3 * a ** 0.5]
    calls = []

    def kl_of(pairs):
        calls.append(len(pairs))
        return [curves[index](alpha) for index, alpha in pairs]

    found = search_alphas(kl_of, len(curves), 0.5, bits_per_round=bits, grid_per_round=grid)
    for curve, (alpha, kl) in zip(curves, found):
        assert alpha == search_alpha_sequential(curve, 0.5)
        assert kl == pytest.approx(curve(alpha)) and (kl < 0.5 or alpha == 16.0)
    # the grid (0.25 .. 16: 7 points, until every curve is bracketed), alpha_max, then one evaluation per round
    assert len(calls) <= -(-7 // grid) + 1 + -(-7 // bits)
    assert sum(calls) <= len(curves) * (7 + 1 + 2 ** bits - 1 + 7 // bits * (2 ** bits - 1))


def test_batched_kls_equal_one_forward_per_setting(model):
    from steerlab.sae.compare import kl_at, kls_at
    from steerlab.steering.metrics import token_logprobs

    texts = ["the team won the match .", "the food was great , we will come back .", "q : where is bakli ? a :"]
    vectors = [SteeringVector(torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed)) * 4.0,
                              layers=layer, site="resid_post") for seed, layer in ((0, 1), (1, 2))]
    settings = [(vector, alpha) for vector in vectors for alpha in (0.25, 1.0, 3.0)]
    reference = token_logprobs(model, texts)
    batched = kls_at(model, settings, texts)
    single = [kl_at(model, vector, alpha, texts, reference) for vector, alpha in settings]
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=1e-5)
    assert len(set(np.round(single, 5))) == len(settings) and min(single) > 0


def test_alpha_search_flags_an_unmatched_kl(model):
    from steerlab.sae.compare import alphas_for_kl

    neutral = ["the team won the match .", "the food was great ."]
    tiny = SteeringVector(torch.ones(model.d_model) * 1e-4, layers=2, site="resid_post", provenance={"method": "toy"})
    with pytest.warns(UserWarning, match="KL not matched"):
        [(alpha, kl, matched)] = alphas_for_kl(model, [tiny], 0.5, neutral, alpha_max=16.0)
    assert (alpha, matched) == (16.0, False) and kl < 0.01


def test_kl_at_raises_on_a_non_finite_kl(model, sae):
    from steerlab.sae.compare import kl_at, kls_at
    from steerlab.steering.metrics import token_logprobs

    texts = ["the food was great ."]
    vector = SteeringVector(torch.ones(model.d_model), layers=2, site="resid_post")
    with pytest.raises(ValueError, match="non-finite"):  # 1e38 overflows float32 in the residual stream
        kl_at(model, vector, 1e38, texts, token_logprobs(model, texts))
    with pytest.raises(ValueError, match="non-finite"):  # the batched path too
        kls_at(model, [(vector, 1.0), (vector, 1e38)], texts)


def test_the_random_control_is_oriented_on_train():
    from steerlab.probes.metrics import auroc
    from steerlab.sae.compare import _oriented_random

    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    raw = torch.randn(16, generator=torch.Generator().manual_seed(0))
    y = (x @ raw < 0).numpy().astype(int)  # the raw random direction detects y backwards (AUROC 0)
    oriented = _oriented_random(16, x, y, seed=0)
    torch.testing.assert_close(oriented, -raw / raw.norm())
    assert auroc(y, (x @ oriented).numpy()) == 1.0
    torch.testing.assert_close(_oriented_random(16, x, 1 - y, seed=0), raw / raw.norm())


def test_detect_vs_steer_summary_comes_from_the_rows():
    from steerlab.sae.compare import detect_vs_steer_summary

    def row(method, auroc, efficacy, matched=True):
        return {"method": method, "detection_auroc": auroc, "efficacy": efficacy, "matched": matched}

    result = {"concept": "truth", "kl_budget": 0.1,
              "methods": [row("diff_means", 0.99, 0.7), row("sae_output", 0.5, 0.6), row("random", 0.9, 0.9, False)]}
    text = detect_vs_steer_summary(result)
    assert "diff_means steers best" in text and "detects it with held-out AUROC 0.990" in text
    assert "left out, KL not matched: random" in text
    result["methods"][1]["efficacy"] = 0.8
    text = detect_vs_steer_summary(result)
    assert "sae_output steers best" in text and "does not detect it (held-out AUROC 0.500" in text


def test_output_scores_are_the_same_in_small_forward_batches(model, sae):
    prompts = ["the food was", "the room was", "we liked the view , it was"]
    kwargs = dict(positive_words=["great"], negative_words=["awful"], features=[1, 3, 7, 11, 42])
    whole = output_scores(model, sae, prompts, **kwargs)
    chunked = output_scores(model, sae, prompts, batch_size=2, **kwargs)  # one feature per forward
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_output_scores_equal_full_forwards_with_the_feature_added(model, sae):
    # output_scores runs only the blocks from the SAE's layer on; here every block runs, one feature at a time
    from steerlab.sae.activations import site_activations
    from steerlab.sae.loading import check_sae
    from steerlab.steering.metrics import word_token_id

    prompts, feature = ["the food was", "we liked the view , it was"], 7
    score = output_scores(model, sae, prompts, ["great"], ["awful"], features=[feature])[0]
    point = check_sae(sae, model)
    norm = float(site_activations(model, sae, prompts).norm(dim=-1).median())
    direction = sae.W_dec[feature].detach().float() / sae.W_dec[feature].float().norm() * norm
    batch = model.tokenize(prompts)
    great, awful = word_token_id(model.tokenizer, "great"), word_token_id(model.tokenizer, "awful")

    def margin(logits):
        last = logits[torch.arange(len(prompts)), batch.lengths - 1].log_softmax(-1)
        return (last[:, great] - last[:, awful]).mean()

    def add(h):
        h = h.clone()
        h[:, 1:] += direction  # not at the first token; pads come after the last token read
        return h

    with torch.no_grad():
        expected = margin(model.forward(batch, [(model.point(point.site, point.layer), add)])) - margin(model.forward(batch))
    assert abs(score - float(expected)) < 1e-4


@pytest.mark.parametrize(("options", "error", "message"), [
    (["--d-sae", "0"], ValueError, r"--d-sae must be at least 1 \(got 0\)"),
    (["--k", "1000"], ValueError, r"--k must be between 1 and --d-sae \(512\)"),
    (["--k", "0"], ValueError, "--k must be between 1 and --d-sae"),
    (["--steps", "0"], ValueError, "--steps must be at least 1"),
    (["--batch-size", "-1"], ValueError, "--batch-size must be at least 1"),
    (["--eval-lines", "0"], ValueError, "--eval-lines must be at least 1"),
    (["--file", "absent.txt"], FileNotFoundError, "--file absent.txt: no such file"),
    (["--out", "a-file"], NotADirectoryError, "is a file: --out must be a directory"),
    (["--out", "a-file/sae"], NotADirectoryError, "inside a-file, which is a file"),
    (["--out", "full"], FileExistsError, "exists and is not empty: choose another --out"),
    (["--out", "old-sae"], FileExistsError, "already holds an SAE"),
])
def test_train_sae_command_refuses_bad_settings_before_loading_the_model(tmp_path, monkeypatch, options, error,
                                                                           message):
    from steerlab.cli.parser import build_parser
    from steerlab.cli.train_sae import run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    (tmp_path / "old-sae").mkdir()
    (tmp_path / "old-sae" / "cfg.json").write_text("{}")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(steerlab, "load_model", no_model)
    args = build_parser().parse_args(["train-sae", "demo", "--layer", "1", "--out", "new-sae", *options])
    with pytest.raises(error, match=message):
        run(args, "test")
    assert (tmp_path / "a-file").read_text() == "not a directory" and not (tmp_path / "new-sae").exists()


def test_train_sae_command_accepts_an_empty_out_directory(tmp_path, monkeypatch):
    from steerlab.cli.parser import build_parser
    from steerlab.cli.train_sae import run

    (tmp_path / "empty").mkdir()

    class Loaded(Exception):
        pass

    def stop(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(steerlab, "load_model", stop)
    args = build_parser().parse_args(["train-sae", "demo", "--layer", "1", "--lines", "5", "--eval-lines", "2",
                                      "--out", str(tmp_path / "empty")])
    with pytest.raises(Loaded):  # every check passed and the model was about to load
        run(args, "test")


def test_a_method_comparison_prints_as_a_short_table():
    """compare_methods' result stays the JSON-ready dict but prints in a few lines (not its arrays)."""
    import numpy as np

    from steerlab.sae import MethodComparison

    rows = [{"method": name, "feature": feature, "detection_auroc": 0.9, "cosine_with_diff_means": 1.0, "alpha": 0.25,
             "kl": 0.099, "matched": matched, "efficacy": 0.8, "control_efficacy": 0.1, "control_kl": 0.1}
            for name, feature, matched in (("diff_means", None, True), ("sae_output", 17, False))]
    result = MethodComparison(concept="truth", efficacy_name="flips", kl_budget=0.1, baseline_efficacy=0.0,
                              median_norm=3.0, layer=2, site="resid_post", methods=rows,
                              features={"scores": np.zeros(4096)})
    text = repr(result)
    assert len(text.splitlines()) == 4 and len(text) < 600 and "KL not matched" in text and "sae_output" in text
    assert result["methods"][1]["feature"] == 17 and isinstance(result, dict)
