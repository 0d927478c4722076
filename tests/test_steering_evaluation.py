"""Steering evaluation: metrics checked against direct computation, sweeps with a control."""

import math

import pytest
import torch

import steerlab
from conftest import TEXTS
from steerlab import SteeringVector
from steerlab.steering import (evaluate, judged_generations, kl_divergence, logprob_difference,
                               perplexity, plot_generations, steer, steering_sweep, token_logprobs, word_rate)


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
    result = steering_sweep(model, vector, alphas=[0.0, 0.1, 0.5, 2.0], efficacy=efficacy, neutral_texts=TEXTS,
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
    result = steering_sweep(model, per_layer, alphas=[0.5], efficacy=efficacy, neutral_texts=TEXTS, control=False,
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


# ---------------------------------------------------------------- batched evaluation (many alphas per forward)


def assert_rows_match(batched, unbatched, tolerance=1e-5):
    assert [(r.layer, r.alpha, r.control) for r in batched] == [(r.layer, r.alpha, r.control) for r in unbatched]
    for b, u in zip(batched, unbatched):
        assert b.kl == pytest.approx(u.kl, abs=tolerance) and b.perplexity == pytest.approx(u.perplexity, rel=tolerance)
        assert b.efficacy == pytest.approx(u.efficacy, abs=tolerance, nan_ok=True)


@pytest.mark.parametrize("positions", ["all", (1, None)])
def test_a_batched_sweep_gives_the_unbatched_numbers(model, positions):
    from steerlab.steering import flip_rate

    vector = unembedding_vector(model)
    alphas = [0.0, 0.5, 4.0, 30.0]
    for efficacy in (flip_rate(model, TEXTS, "w5", "w6"),  # batched through the forward
                     lambda steered: float(logprob_difference(steered, TEXTS, "w5", "w6").mean())):  # one per setting
        kwargs = dict(alphas=alphas, efficacy=efficacy, neutral_texts=TEXTS, layers=[0, 2], progress=False,
                      positions=positions)
        unbatched = steering_sweep(model, vector, batched=False, **kwargs)
        batched = steering_sweep(model, vector, max_rows=7, **kwargs)  # several forwards, settings split across them
        assert batched.settings["batched"] and not unbatched.settings["batched"]
        assert batched.baseline_perplexity == pytest.approx(unbatched.baseline_perplexity, rel=1e-5)
        assert_rows_match(batched.rows, unbatched.rows)
        assert max(r.kl for r in batched.rows) > 0.01  # the settings do differ (the final LayerNorm bounds KL)
        assert len({round(r.kl, 6) for r in batched.rows}) > len(alphas)  # and are not mixed up across rows


def test_per_row_alphas_steer_each_row_as_its_own_alpha(model):
    vector = unembedding_vector(model)
    control = steerlab.steering.random_control(vector)
    texts = TEXTS[:3]
    alphas = [0.0, 1.5, -3.0]
    expected = []
    for alpha in alphas:
        with steer(model, [vector, control], alpha=[alpha, 2.0 * alpha]):
            expected.append(token_logprobs(model, texts))
    rows = torch.tensor([[a for a in alphas for _ in texts], [2.0 * a for a in alphas for _ in texts]])
    with steer(model, [vector, control], alpha=rows):
        together = token_logprobs(model, texts * len(alphas))
    for index, (row, text_index) in enumerate((a, t) for a in range(len(alphas)) for t in range(len(texts))):
        torch.testing.assert_close(together[index], expected[row][text_index], atol=1e-5, rtol=1e-5)
    with steer(model, [vector, control], alpha=rows):
        with pytest.raises(ValueError, match="Per-row alphas were given for 9 rows, but this forward pass has 3"):
            token_logprobs(model, texts)
    with pytest.raises(ValueError, match="mode='add' only"):
        with steer(model, vector, alpha=torch.ones(1, 3), mode="ablate"):
            pass
    with pytest.raises(ValueError, match=r"shape \(1, 3\) for 2 vectors"):
        with steer(model, [vector, control], alpha=torch.ones(1, 3)):
            pass
    with pytest.raises(ValueError, match="finite"):
        with steer(model, vector, alpha=torch.tensor([[1.0, float("nan")]])):
            pass


def test_evaluate_many_matches_evaluate(model):
    from steerlab.steering import evaluate_many, flip_rate

    vector = unembedding_vector(model)
    efficacy = flip_rate(model, TEXTS, "w5", "w6")
    settings = [(vector, 0.3), (vector.at(1), 4.0), (steerlab.steering.random_control(vector), 4.0)]
    many = evaluate_many(model, settings, efficacy, TEXTS, max_rows=4)
    single = [evaluate(model, v, a, efficacy, TEXTS) for v, a in settings]
    assert_rows_match(many, single)
    assert all(math.isnan(row.efficacy) for row in evaluate_many(model, settings, None, TEXTS))


def test_choose_stays_within_the_kl_budget_and_reports_the_best_within_it(model):
    from steerlab.steering import flip_rate

    vector = unembedding_vector(model)
    result = steering_sweep(model, vector, [0.25, 1.0, 4.0, 16.0], flip_rate(model, TEXTS, "w5", "w6"), TEXTS, layers=[1, 2],
                   progress=False)
    vector_rows = [r for r in result.rows if not r.control]
    budget = sorted(r.kl for r in vector_rows)[3]  # four settings within it
    within = [r for r in vector_rows if r.kl <= budget]
    assert result.choose(target_efficacy=2.0, kl_budget=budget) is None  # a flip rate never reaches 2
    assert result.best is not None and result.best.kl <= budget
    assert result.best.efficacy == max(r.efficacy for r in within)
    assert result.best_within(kl_budget=-1.0) is None
    reachable = max(r.efficacy for r in within)
    chosen = result.choose(target_efficacy=reachable, kl_budget=budget)
    assert chosen is result.best and chosen.kl <= budget and chosen.efficacy >= reachable
    front = result.frontier()
    assert [r.kl for r in front] == sorted(r.kl for r in front)
    assert all(b.efficacy > a.efficacy for a, b in zip(front, front[1:]))
    assert all(any(f.kl <= r.kl and f.efficacy >= r.efficacy for f in front) for r in vector_rows)
    names = [trace.name for trace in result.figure().data]
    assert {"frontier", "frontier (random)", f"KL budget {budget:g}", "chosen"} <= set(names)


def test_word_set_flip_rate_reads_the_word_sets(model):
    from steerlab.steering import word_set_flip_rate
    from steerlab.steering.metrics import last_token_logprobs

    logprobs = last_token_logprobs(model, TEXTS)
    ids = {w: model.tokenizer.convert_tokens_to_ids(w) for w in ("w5", "w9", "w6", "w10")}
    lean = lambda lp, up, down: (torch.logsumexp(lp[:, [ids[w] for w in up]], -1)
                                 - torch.logsumexp(lp[:, [ids[w] for w in down]], -1))
    up, down = ["w5", "w9"], ["w6", "w10"]
    if bool((lean(logprobs, up, down) > 0).all()):  # nothing to flip that way on this random model
        up, down = down, up
    efficacy = word_set_flip_rate(model, TEXTS, up, down)
    margin = lean(logprobs, up, down)
    assert efficacy.candidates.tolist() == (margin <= 0).tolist() and efficacy.candidates.any()
    vector = unembedding_vector(model, positive=up[0], negative=down[0])
    with steer(model, vector, alpha=30.0):
        steered = last_token_logprobs(model, TEXTS)
        rate = efficacy(model)
    expected = float((lean(steered, up, down)[margin <= 0] > 0).float().mean())
    assert rate == pytest.approx(expected) and rate > 0
