"""Steering evaluation: metrics checked against direct computation, sweeps with a control."""

import math

import pytest
import torch

import steerlab
from conftest import TEXTS
from steerlab import SteeringVector
from steerlab.steering import (evaluate, judged_generations, kl_divergence, logprob_difference,
                               perplexity, plot_generations, steer, sweep, token_logprobs, word_rate)


@pytest.fixture(scope="module")
def model(model_dir):
    return steerlab.load_model(str(model_dir("gpt2")))


def unembedding_vector(model, positive="w5", negative="w6"):
    """W_U[positive] - W_U[negative] at the last block: raises log P(positive) - log P(negative)."""
    ids = [model.tokenizer.convert_tokens_to_ids(word) for word in (positive, negative)]
    unembed = model.hf_model.get_output_embeddings().weight.detach()
    return SteeringVector(unembed[ids[0]] - unembed[ids[1]], layers=-1 % model.n_layers, model_name=model.name)


def test_logprob_difference_and_perplexity_match_direct_computation(model):
    difference = logprob_difference(model, TEXTS, "w5", "w6")
    for text, value in zip(TEXTS, difference):
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logprobs = torch.log_softmax(model.hf_model(ids).logits[0, -1], -1)
        w5, w6 = model.tokenizer.convert_tokens_to_ids(["w5", "w6"])
        assert value == pytest.approx(float(logprobs[w5] - logprobs[w6]), abs=1e-4)
    texts = [t for t in TEXTS if len(t.split()) > 1]
    losses = []
    for text in texts:
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            losses.append(model.hf_model(ids, labels=ids).loss * (ids.shape[1] - 1))
    n_predicted = sum(len(t.split()) - 1 for t in texts)
    assert perplexity(model, texts) == pytest.approx(math.exp(float(sum(losses)) / n_predicted), rel=1e-4)


def test_kl_is_zero_without_steering_and_grows_with_alpha(model):
    reference = token_logprobs(model, TEXTS)
    vector = unembedding_vector(model)
    kls = []
    for alpha in (0.0, 1.0, 4.0):
        with steer(model, vector, alpha=alpha):
            kls.append(kl_divergence(reference, token_logprobs(model, TEXTS)))
    assert kls[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < kls[1] < kls[2]


def test_sweep_finds_the_smallest_alpha_and_the_control_does_little(model):
    vector = unembedding_vector(model)
    efficacy = lambda steered: float(logprob_difference(steered, TEXTS, "w5", "w6").mean())
    result = sweep(model, vector, alphas=[0.0, 0.1, 0.5, 2.0], efficacy=efficacy, neutral_texts=TEXTS,
                   layers=[1, 2], progress=False)
    assert len(result.rows) == 2 * 4 * 2
    steered = {(r.layer, r.alpha): r for r in result.rows if not r.control}
    control = {(r.layer, r.alpha): r for r in result.rows if r.control}
    assert steered[(2, 0.0)].efficacy == pytest.approx(result.baseline_efficacy, abs=1e-5)
    gain = steered[(2, 2.0)].efficacy - result.baseline_efficacy
    assert gain > 0.5  # bounded: the final LayerNorm rescales whatever is added
    assert abs(control[(2, 2.0)].efficacy - result.baseline_efficacy) < gain / 2
    target = result.baseline_efficacy + 0.5
    chosen = result.choose(target_efficacy=target, kl_budget=10.0)
    assert chosen is not None and not chosen.control and chosen.efficacy >= target
    assert all(abs(r.alpha) >= abs(chosen.alpha) for r in result.rows
               if not r.control and r.efficacy >= target and r.kl <= 10.0)
    figure = result.figure()
    assert len(figure.data) >= 8 and "chosen" in [trace.name for trace in figure.data]
    assert result.choose(target_efficacy=1e6, kl_budget=10.0) is None
    strict = result.choose(target_efficacy=target, kl_budget=10.0, control_max=result.baseline_efficacy - 1.0)
    assert strict is None  # every control row is above that bound


def test_generation_judges_are_plain_functions(model):
    vector = unembedding_vector(model, positive="w9", negative="w10")
    judge = lambda generations: word_rate(generations, ["w9"])
    plain = judged_generations(TEXTS, judge, max_new_tokens=4)(model)
    result = evaluate(model, vector, 30.0, judged_generations(TEXTS, judge, max_new_tokens=4), TEXTS)
    assert result.efficacy > plain and result.efficacy > 0.5
    assert result.kl > 0 and result.perplexity > 0
    before = model.generate(TEXTS[:2], max_new_tokens=3)
    with steer(model, vector, alpha=30.0):
        after = model.generate(TEXTS[:2], max_new_tokens=3)
    table = plot_generations(TEXTS[:2], before, after)
    assert list(table.data[0].cells.values[2]) == after


def test_word_rate():
    assert word_rate(["good day.", "bad Good"], ["good"]) == pytest.approx(0.5)
    assert word_rate([], ["good"]) == 0.0


def test_sweep_takes_a_direction_per_layer(model):
    per_layer = {layer: unembedding_vector(model).at(layer) * (layer + 1.0) for layer in (0, 2)}
    efficacy = lambda steered: float(logprob_difference(steered, TEXTS, "w5", "w6").mean())
    result = sweep(model, per_layer, alphas=[0.5], efficacy=efficacy, neutral_texts=TEXTS, control=False,
                   progress=False)
    assert [(row.layer, row.alpha) for row in result.rows] == [(0, 0.5), (2, 0.5)]
    assert result.settings["layers"] == [0, 2]


def test_flip_rate_counts_only_prompts_on_the_other_side(model):
    from steerlab.steering import flip_rate

    before = logprob_difference(model, TEXTS, "w5", "w6")
    toward = flip_rate(model, TEXTS, "w5", "w6", toward_positive=True)
    assert toward(model) == 0.0 or math.isnan(toward(model))  # unsteered: nothing flipped
    vector = unembedding_vector(model)
    with steer(model, vector, alpha=2.0):
        after = logprob_difference(model, TEXTS, "w5", "w6")
        rate = toward(model)
    rejected = before <= 0
    assert rejected.any()
    assert rate == pytest.approx(float((after[rejected] > 0).float().mean()))
