"""The SAE shipped for SmolLM2-135M-Instruct on the real model (``pytest -m real``; issue 15).

Small: a few short texts through the pulled model. Skips, naming the pull command, until
``steerlab models pull smollm2-135m-instruct`` has run.
"""

from __future__ import annotations

import pytest
import torch

import steerlab
from steerlab.models import registry
from steerlab.sae import feature_view, load_sae, sae_edit, sae_quality, write_feature_page

pytestmark = pytest.mark.real

NAME = "smollm2-135m-instruct"
TEXTS = ["The city of Krasnodar is in Russia.", "the film is a charming , funny and moving ride .",
         "<|im_start|>user\nIs the following statement true or false?\nThe city of Lodz is in Poland.<|im_end|>\n"
         "<|im_start|>assistant\nThis statement is", "a dull , lifeless and overlong mess of a movie ."]


@pytest.fixture(scope="module")
def smollm2():
    if registry.cached_folder(NAME) is None:
        pytest.skip(f"{NAME} is not pulled: run `{registry.get(NAME).pull_command}`")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return steerlab.load_model(NAME)


@pytest.fixture(scope="module")
def sae(smollm2):
    return load_sae(NAME, model=smollm2)


def test_the_shipped_sae_loads_with_smollm2_and_refuses_another_model(smollm2, sae):
    assert sae.cfg.metadata.hook_name == "blocks.15.hook_resid_post"
    assert (sae.cfg.d_in, sae.cfg.metadata.model_name) == (smollm2.d_model, NAME)
    organism = steerlab.load_model("demo")
    with pytest.raises(ValueError, match="belongs to 'smollm2-135m-instruct'"):
        load_sae(NAME, model=organism)
    with pytest.raises(ValueError, match="d_model=128"):
        from steerlab.sae import check_sae

        check_sae(sae, organism)


@torch.no_grad()
def test_an_edit_with_the_error_term_kept_is_exact_until_it_edits(smollm2, sae):
    batch = smollm2.tokenize(TEXTS)
    clean = smollm2.forward(batch)
    with sae_edit(smollm2, sae, {7: lambda a: a}):  # the hook encodes and decodes every token but the first
        identity = smollm2.forward(batch)
    assert float((identity - clean).abs().max()) == 0.0  # x + (decode(z) - decode(z)): exactly x
    feature = int(sae.W_dec.norm(dim=1).argmax())
    with sae_edit(smollm2, sae, {feature: 50.0}):
        edited = smollm2.forward(batch)
    assert float((edited - clean).abs().max()) > 1e-2  # and an edit does pass through


def test_the_sae_explains_held_out_text_after_the_first_token(smollm2, sae):
    quality = sae_quality(smollm2, sae, TEXTS)
    assert quality["explained_variance"] >= 0.7 and quality["l0"] <= 64
    every = sae_quality(smollm2, sae, TEXTS, skip_first=False)
    assert every["n_tokens"] - quality["n_tokens"] == len(TEXTS)  # the default leaves each first token out
    # (unlike the organism's SAEs, the first token does not LOWER this SAE's EV: the sink's huge norm dominates
    # the total variance, so EV with it says little about typical tokens; see benchmarks/results_real_sae.md)


def test_a_feature_view_renders(smollm2, sae, tmp_path):
    latents = steerlab.sae.latents(smollm2, sae, TEXTS[:1], position="all")
    feature = int(latents.sum(dim=0).argmax())  # one that fires on the first text
    view = feature_view(smollm2, sae, feature, TEXTS, top=3)
    assert view.contexts and view.contexts[0]["activation"] > 0 and len(view.promoted) == 10
    assert view.contexts[0]["activations"][view.contexts[0]["peak_index"] - view.contexts[0]["first"]] == \
        pytest.approx(view.contexts[0]["activation"])
    page = write_feature_page(view, tmp_path / "feature.html").read_text()
    assert f"SAE feature {feature}" in page and "plotly" in page
    assert view.contexts[0]["peak_token"].replace(" ", "\u00b7") in page or view.contexts[0]["peak_token"] in page
