"""Generation with hooks on every backend when answers stop (EOS) long before max_new_tokens."""

from pathlib import Path

import pytest
import torch

import steerlab

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "config.json"
pytestmark = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")
PROMPTS = ["bakli is in", "my friend said the food was", "q : where is bakli ? a :"]


@pytest.fixture(scope="module")
def reference():
    """Plain transformers hooks: the unsteered and the steered greedy answers (they end with EOS)."""
    model = steerlab.load_model("demo", backend="hf")
    vector = steerlab.SteeringVector(torch.randn(model.d_model, generator=torch.Generator().manual_seed(0)),
                                     layers=1, model_name="demo")
    with steerlab.steer(model, vector, alpha=8.0):
        steered = model.generate(PROMPTS, max_new_tokens=20)
    return vector, model.generate(PROMPTS, max_new_tokens=20), steered


@pytest.mark.parametrize("backend", ["nnsight", "transformer_lens"])
def test_hooked_generation_that_stops_early_matches_hf(reference, backend):
    vector, plain, steered = reference
    assert all(len(text.split()) < 20 for text in plain)  # every answer stops well before max_new_tokens
    model = steerlab.load_model("demo", backend=backend)
    with steerlab.steer(model, vector, alpha=8.0):
        assert model.generate(PROMPTS, max_new_tokens=20) == steered
    with steerlab.record(model, "resid_post", layers=[1]) as recorded:
        assert model.generate(PROMPTS, max_new_tokens=20) == plain
    assert len(recorded["blocks.1.hook_resid_post"]) >= 2  # the prompt pass and at least one new token
    assert steered != plain


@pytest.mark.parametrize("name", ["demo", "llama"])
def test_the_bridge_fills_the_kv_cache_so_each_step_sees_the_prompt(name, model_dir):
    """transformers >= 5.24 passes the cache to attention as ``cache``; the bridge must still write it.

    Without that, each cached step attends to itself alone and greedy answers drift from hf's.
    """
    source = "demo" if name == "demo" else model_dir(name)
    bridge, plain = steerlab.load_model(source, backend="transformer_lens"), steerlab.load_model(source)
    batch = bridge.tokenize(["bakli is in" if name == "demo" else "w1 w2 w3 w4"], padding_side="left")
    with torch.no_grad():
        output = bridge.hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=True)
    cache = getattr(output, "cache", None) or output.past_key_values
    assert cache.get_seq_length() == batch.input_ids.shape[1]
    prompts = ["bakli is in"] if name == "demo" else ["w1 w2 w3", "w4 w5 w6 w7 w8"]
    assert bridge.generate(prompts, max_new_tokens=6) == plain.generate(prompts, max_new_tokens=6)
