"""Live scoring with the KV cache: the offline scores on every backend, with any kind of probe, no hook left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import steerlab
from steerlab.hallucination import generate_and_capture, stream_scores
from steerlab.hallucination import HallucinationProbe
from steerlab.probes import DiffMeans

torch.set_num_threads(1)
PROMPT = "w1 w2 w3 w4"
LAYER = 1


@pytest.fixture(scope="module")
def models(model_dir):
    """The tiny random GPT-2 on the hf backend, a TransformerBridge, nnsight and a HookedTransformer."""
    from conftest import load_objects
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    directory = model_dir("gpt2")
    loaded = {backend: steerlab.load_model(str(directory), backend=backend)
              for backend in ("hf", "transformer_lens", "nnsight")}
    hf_model, tokenizer = load_objects(directory)
    config = HookedTransformerConfig(n_layers=3, d_model=32, n_ctx=64, d_head=16, n_heads=2, d_mlp=128,
                                     d_vocab=hf_model.config.vocab_size, act_fn="gelu_new", normalization_type="LN",
                                     default_prepend_bos=False)
    hooked = HookedTransformer(config, tokenizer=tokenizer)
    hooked.load_state_dict(convert_gpt2_weights(hf_model, config), strict=False)
    loaded["hooked_transformer"] = steerlab.load_model(hooked, tokenizer=tokenizer)
    return loaded


@pytest.fixture(scope="module")
def offline(models):
    return generate_and_capture(models["hf"], [PROMPT], max_new_tokens=5, progress=False)


@pytest.fixture(scope="module")
def mlp_probe():
    rng = np.random.default_rng(0)
    return HallucinationProbe(hidden=(8,), max_epochs=3).fit(rng.normal(size=(60, 32)), [0, 1] * 30)


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight", "hooked_transformer"])
def test_streamed_scores_equal_offline_on_every_backend(models, offline, mlp_probe, backend):
    model = models[backend]
    expected = mlp_probe.predict_proba(offline.layer(LAYER))[:, 1]
    with steerlab.no_leftover_hooks(model):
        streamed = list(stream_scores(model, mlp_probe, PROMPT, layer=LAYER, max_new_tokens=5))
        assert [token for token, _ in streamed] == offline.tokens and len(streamed) == 5
        assert np.allclose([score for _, score in streamed], expected, atol=1e-5, rtol=0)
        next(iter(stream_scores(model, mlp_probe, PROMPT, layer=LAYER)))  # a consumer that stops at once
    # the output-confidence inputs and the detector's odds, streamed the same way (hf only: same code path)
    if backend == "hf":
        both = HallucinationProbe(hidden=(8,), max_epochs=3).fit(np.random.default_rng(1).normal(size=(60, 66)),
                                                                 [0, 1] * 30)
        plus = [s for _, s in stream_scores(model, both, PROMPT, layer=LAYER, state="both", confidence=True,
                                            max_new_tokens=5)]
        assert np.allclose(plus, both.predict_proba(offline.features(LAYER, "both", confidence=True))[:, 1],
                           atol=1e-5, rtol=0)


def test_linear_probes_stream_by_their_recorded_layers(models, offline):
    """Linear probes record ``layers_`` / ``site_``; a per-layer one is narrowed with ``at_layer``."""
    model = models["hf"]
    rng = np.random.default_rng(0)
    labels = [0, 1] * 20
    single = DiffMeans().fit(rng.normal(size=(40, 32)), labels)  # plain arrays: no layer recorded
    with pytest.raises(ValueError, match="records no layer"):
        stream_scores(model, single, PROMPT)
    streamed = [s for _, s in stream_scores(model, single, PROMPT, layer=LAYER, max_new_tokens=5)]
    assert np.allclose(streamed, single.predict_proba(offline.layer(LAYER))[:, 1], atol=1e-5, rtol=0)

    per_layer = DiffMeans().fit(rng.normal(size=(40, 3, 32)), labels)
    per_layer.layers_, per_layer.site_ = [0, 1, 2], "resid_post"  # what a probe fitted on captured activations records
    with pytest.raises(ValueError, match=r"fitted on layers \[0, 1, 2\]: pass layer"):
        stream_scores(model, per_layer, PROMPT)
    streamed = [s for _, s in stream_scores(model, per_layer, PROMPT, layer=LAYER, max_new_tokens=5)]
    expected = per_layer.at_layer(LAYER).predict_proba(offline.layer(LAYER))[:, 1]
    assert np.allclose(streamed, expected, atol=1e-5, rtol=0)
    per_layer.layers_ = [0, 2]
    with pytest.raises(ValueError, match=r"fitted on layers \[0, 2\]"):
        stream_scores(model, per_layer, PROMPT, layer=LAYER)
    with pytest.raises(ValueError, match="fitted on site 'resid_post'"):
        stream_scores(model, per_layer, PROMPT, layer=0, site="mlp_out")


def test_stream_refuses_bad_input_before_generating(models, mlp_probe):
    model = models["hf"]
    with pytest.raises(ValueError, match="has no predict_proba"):
        stream_scores(model, object(), PROMPT, layer=LAYER)
    with pytest.raises(ValueError, match="context"):
        stream_scores(model, mlp_probe, PROMPT, layer=LAYER, max_new_tokens=100)  # a 64-token context
    with pytest.raises(ValueError, match=r"\[1, new\]"):
        model.forward_cached(torch.tensor([[1, 2], [3, 4]]))
