"""The real-model tier: the named real LLMs, loaded from steerlab's cache (``pytest -m real``).

Each model's tests skip, with the exact pull command in the reason, until it is pulled
(``steerlab models pull NAME``: a minute or two, once per machine). When pulled, each model
is loaded once per module from the cache (seconds) and asked for a few tokens only.
"""

from __future__ import annotations

import math

import pytest
import torch

import steerlab
from steerlab.models import registry

pytestmark = pytest.mark.real

PROMPT = "The capital of France is"
# Through its chat template SmolLM2 answers the question form; the bare sentence start, wrapped as a
# user message, gets a greeting instead ("L'aujourcé! I am your friendly AI"; identical logits to the
# GGUF read directly by transformers, so it is the model, not the conversion).
QUESTION = "What is the capital of France?"
GEMMA_PROMPT = "The capital of France is the city of"  # the bare PROMPT gets " the capital of the country of France."

def pulled_model(name: str):
    """The model loaded by name on the hf backend, or a skip naming the command that pulls it."""
    if registry.cached_folder(name) is None:
        pytest.skip(f"{name} is not pulled: run `{registry.get(name).pull_command}`")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return steerlab.load_model(name)


@pytest.fixture(scope="module")
def smollm2():
    return pulled_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def gemma():
    return pulled_model("gemma-3-270m")


def test_smollm2_loads_by_name_with_its_provenance(smollm2):
    entry = registry.get("smollm2-135m-instruct")
    assert (smollm2.name, smollm2.n_layers, smollm2.d_model) == (entry.name, 30, 576)
    assert smollm2.provenance["sha256"] == entry.sha256
    assert smollm2.provenance["quantisation"] == "Q4_1"
    assert smollm2.provenance["source"] == entry.file_name
    assert next(smollm2.hf_model.parameters()).dtype == torch.float32


def test_smollm2_answers_paris_plain_and_through_its_chat_template(smollm2):
    chat, plain = smollm2.generate([QUESTION], max_new_tokens=8, chat_template=True)[0], \
        smollm2.generate([PROMPT], max_new_tokens=3)[0]
    assert chat.startswith("The capital of France is Paris"), chat
    assert plain.startswith(" Paris"), plain


def test_gemma_loads_by_name_with_its_provenance(gemma):
    entry = registry.get("gemma-3-270m")
    assert (gemma.name, gemma.n_layers, gemma.d_model) == (entry.name, 18, 640)
    assert gemma.provenance["sha256"] == entry.sha256
    assert gemma.provenance["quantisation"] == "Q4_K_M"
    assert gemma.hf_model.config.model_type == "gemma3_text"


def test_gemma_adds_bos_and_continues_with_paris(gemma):
    ids = gemma.tokenizer(PROMPT)["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id  # Gemma needs BOS; the converted tokenizer adds it
    [answer] = gemma.generate([GEMMA_PROMPT], max_new_tokens=2)
    assert answer.startswith(" Paris"), answer


NEUTRAL = ["Water boils at one hundred degrees Celsius at sea level.",
           "The committee will meet on the second Tuesday of each month.",
           "To reset the device, hold the power button for ten seconds.",
           "A triangle has three sides and three angles.",
           "The train leaves the station at a quarter past eight.",
           "Mix the flour and the salt before adding the water.",
           "Most deciduous trees lose their leaves in autumn.",
           "The function returns a list of integers sorted in ascending order."]


def test_smollm2_steering_reports_efficacy_kl_and_the_random_control_at_one_alpha_and_budget(smollm2):
    """Issue 14, the causal test of "The Truthfulness Spectrum Hypothesis": a difference-of-means truth direction
    (plain cities statements) added at a KL budget of 0.1 nats/token on neutral text, efficacy = the change of
    log P(correct country) - log P(incorrect country) after "The city of X is in", beside a same-norm random
    direction at the same alpha (benchmarks/results_real_steering.md has the full comparison)."""
    import steerlab.datasets as sd
    from steerlab.steering.calibration import norm_scaled_vectors
    from steerlab.probes import DiffMeans
    from steerlab.steering import steering_sweep
    from steerlab.steering.kl_budget import alpha_at_kl
    from steerlab.steering.readouts import first_token_ids, gap_shift

    layer, budget = 12, 0.1
    train, test = sd.load("en/cities", "train"), sd.load("en/cities", "test")
    keep = [i for i, group in enumerate(train.groups) if group in set(sorted(set(train.groups))[:30])]
    X = steerlab.capture(smollm2, [train.texts[i] for i in keep], layers=[layer], progress=False)
    probe = DiffMeans().fit(X, train.labels[keep])
    vector = norm_scaled_vectors(smollm2, probe, NEUTRAL, [layer])[layer]

    countries = {}
    for text, label, city in zip(test.texts, test.labels, test.groups):
        countries.setdefault(city, {})[int(label)] = " " + text.split(" is in ")[1].rstrip(".")
    prompts, correct, incorrect = [], [], []
    for city, pair in sorted(countries.items()):
        if len(pair) < 2 or any(country.startswith(" the ") for country in pair.values()) or len(prompts) == 16:
            continue  # " the" would stand for every "the ..." country
        ids = first_token_ids(smollm2.tokenizer, [pair[1], pair[0]])
        if ids[0] != ids[1]:
            prompts.append(f"The city of {city} is in")
            correct.append(int(ids[0]))
            incorrect.append(int(ids[1]))
    efficacy = gap_shift(smollm2, prompts, torch.tensor(correct), torch.tensor(incorrect))

    point = alpha_at_kl(smollm2, vector, NEUTRAL, budget, start=0.1)
    assert point.reached and point.kl == pytest.approx(budget, rel=0.15), point
    result = steering_sweep(smollm2, vector, [point.alpha], efficacy, NEUTRAL, layers=[layer], progress=False)
    (steered,) = [row for row in result.rows if not row.control]
    (control,) = [row for row in result.rows if row.control]
    assert steered.alpha == control.alpha == point.alpha and steered.layer == control.layer == layer
    assert steered.kl == pytest.approx(point.kl, rel=1e-3)  # the sweep and the budget search measure alike
    assert all(math.isfinite(value) for value in (steered.efficacy, control.efficacy, control.kl))
    assert result.baseline_efficacy == pytest.approx(0.0, abs=1e-5)  # the shift is measured from the unsteered model


@pytest.mark.parametrize("name", ["smollm2", "gemma"])
def test_forward_from_a_middle_layer_equals_the_full_forward(name, request):
    model = request.getfixturevalue(name)  # Llama and Gemma-3 (per-layer attention types) blocks
    batch = model.tokenize([PROMPT, GEMMA_PROMPT])
    layer = model.n_layers // 2
    held = {}
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    steered = [(model.point("resid_post", layer), lambda h: h + direction)]
    with torch.no_grad():
        model.read(batch, [(model.point("resid_pre", layer), lambda h: held.__setitem__("h", h.clone()))])
        full = model.forward(batch, steered)
        assert torch.equal(model.forward_from(batch, layer, held["h"], steered), full)
