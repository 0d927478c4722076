"""Readouts (verdict prompts, per-prompt answer gaps, the causal test) and alpha at a KL budget, on the organism."""

import copy

import pytest
import torch

import steerlab
from steerlab import SteeringVector
from steerlab.datasets import builtin
from steerlab.steering import steer, token_logprobs
from steerlab.steering.kl_budget import alpha_at_kl, side_effects
from steerlab.steering import logprob_difference
from steerlab.steering.readouts import (VerdictReadout, answer_gap, balanced_threshold, chat_prompt, first_token_ids,
                                        gap_shift, verdict_margins)

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def organism():
    torch.set_num_threads(1)
    return steerlab.load_model("demo")


@pytest.fixture(scope="module")
def located(organism):
    """The demo cities' "CITY is in" prompts with the correct and the incorrect country (first token)."""
    dataset = builtin.load("demo/cities", split="test")
    true_rows = {g: t for t, y, g in zip(dataset.texts, dataset.labels, dataset.groups) if y == 1}
    false_rows = {g: t for t, y, g in zip(dataset.texts, dataset.labels, dataset.groups) if y == 0}
    cities = sorted(set(true_rows) & set(false_rows))[:12]
    prompts = [f"{city} is in" for city in cities]
    country = lambda text: " " + text.split(" is in ")[1].removesuffix(" .")
    correct = first_token_ids(organism.tokenizer, [country(true_rows[c]) for c in cities])
    incorrect = first_token_ids(organism.tokenizer, [country(false_rows[c]) for c in cities])
    return prompts, correct, incorrect


def country_vector(organism, correct, incorrect):
    """Mean W_U[correct] - W_U[incorrect] at the last block: raises the correct country against the other."""
    unembed = organism.hf_model.get_output_embeddings().weight.detach()
    direction = (unembed[correct] - unembed[incorrect]).mean(0)
    return SteeringVector(direction, layers=organism.n_layers - 1, model_name=organism.name)


def test_plain_few_shot_prompts_put_the_shots_before_the_question():
    readout = VerdictReadout("{statement} Is it true? Answer:", " yes", " no",
                             shots=(("a is in b .", True), ("c is in d .", False)))
    assert readout.prompts(None, ["e is in f ."]) == [
        "a is in b . Is it true? Answer: yes\n\nc is in d . Is it true? Answer: no\n\ne is in f . Is it true? Answer:"]


def test_chat_prompts_follow_the_tokenizers_template_with_shots_as_turns(organism):
    tokenizer = copy.deepcopy(organism.tokenizer)
    tokenizer.chat_template = TEMPLATE
    readout = VerdictReadout('Is "{statement}" true?', "True", "False", chat=True, shots=(("a is in b .", False),))
    (prompt,) = readout.prompts(tokenizer, ["e is in f ."])
    assert prompt == ('<user>Is "a is in b ." true?</user>\n<assistant>False</assistant>\n'
                      '<user>Is "e is in f ." true?</user>\n<assistant>')
    assert chat_prompt(tokenizer, [("hi", None)], "The answer is") == "<user>hi</user>\n<assistant>The answer is"


def test_bad_readouts_are_refused_with_the_fix(organism):
    with pytest.raises(ValueError, match="no chat template"):
        VerdictReadout("{statement}?", "True", "False", chat=True).prompts(organism.tokenizer, ["a ."])
    with pytest.raises(ValueError, match="placeholder"):
        VerdictReadout("Is it true?", "True", "False")
    with pytest.raises(TypeError, match="list of strings"):
        VerdictReadout("{statement}?", "True", "False").prompts(None, "a .")
    with pytest.raises(ValueError, match="last turn"):
        tokenizer = copy.deepcopy(organism.tokenizer)
        tokenizer.chat_template = TEMPLATE
        chat_prompt(tokenizer, [("hi", "hello")])


def test_a_calibrated_threshold_makes_a_one_sided_readout_answer_both_ways(organism):
    gaps = torch.tensor([-3.0, -2.5, -2.0, -1.0, -0.8, -0.5])  # says "no" to everything, but ranks well
    labels = [0, 0, 0, 1, 1, 1]
    threshold = balanced_threshold(gaps, labels)
    assert -2.0 < threshold < -1.0
    assert balanced_threshold(torch.tensor([-1.0, 1.0]), [0, 1]) == 0.0  # a readout already right keeps 0
    with pytest.raises(ValueError, match="both labels"):
        balanced_threshold(gaps, [1] * 6)
    dataset = builtin.load("demo/cities", split="test")
    prompts = list(dataset.verdict_prompts[:8])
    readout = VerdictReadout("{statement}", *dataset.verdict_words, threshold=0.75)
    margins = verdict_margins(organism, readout, prompts)
    expected = logprob_difference(organism, prompts, *dataset.verdict_words) - 0.75
    assert torch.allclose(margins, expected, atol=1e-5)


def test_answer_gap_matches_a_direct_forward_and_the_organism_knows_its_cities(organism, located):
    prompts, correct, incorrect = located
    gaps = answer_gap(organism, prompts, correct, incorrect)
    for prompt, c, i, gap in zip(prompts, correct, incorrect, gaps):
        ids = torch.tensor([organism.tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            logprobs = torch.log_softmax(organism.hf_model(ids).logits[0, -1].float(), -1)
        assert float(gap) == pytest.approx(float(logprobs[c] - logprobs[i]), abs=1e-4)
    assert float((gaps > 0).float().mean()) >= 0.75  # the demo world's facts are learned
    with pytest.raises(ValueError, match="one of each per prompt"):
        answer_gap(organism, prompts, correct[:-1], incorrect)


def test_gap_shift_is_zero_unsteered_and_follows_the_sign_of_alpha(organism, located):
    prompts, correct, incorrect = located
    efficacy = gap_shift(organism, prompts, correct, incorrect)
    assert efficacy(organism) == pytest.approx(0.0, abs=1e-5)
    vector = country_vector(organism, correct, incorrect)
    shifts = {}
    for alpha in (-8.0, 8.0):
        with steer(organism, vector, alpha=alpha):
            shifts[alpha] = efficacy(organism)
    assert shifts[8.0] > 0.5 and shifts[-8.0] < -0.5, shifts


def test_alpha_at_kl_lands_on_the_budget_and_reports_its_trace(organism, located):
    prompts, correct, incorrect = located
    neutral = builtin.load("demo/cities", split="train").texts[:24]
    reference = token_logprobs(organism, neutral)
    vector = country_vector(organism, correct, incorrect)
    for start in (0.1, -0.1):
        point = alpha_at_kl(organism, vector, neutral, budget=0.1, start=start, reference=reference)
        assert point.reached and point.alpha * start > 0, point
        assert point.kl == pytest.approx(0.1, rel=0.15)
        assert side_effects(organism, vector, point.alpha, neutral, reference) == pytest.approx(
            (point.kl, point.perplexity), rel=1e-5)
        assert len(point.trace) <= 6
    far = alpha_at_kl(organism, vector, neutral, budget=50.0, start=0.1, reference=reference, max_steps=2)
    assert not far.reached and far.kl < 50.0
    with pytest.raises(ValueError, match="positive"):
        alpha_at_kl(organism, vector, neutral, budget=0.0)
    with pytest.raises(ValueError, match="non-zero"):
        alpha_at_kl(organism, vector, neutral, budget=0.1, start=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        alpha_at_kl(organism, vector, neutral, budget=0.1, max_steps=0)
